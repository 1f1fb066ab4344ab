/**
 * Abstract-state coverage (issue 15 item 3): one key per step — the operation kind × its return
 * code × the page-state transitions it made (component:from>to, sorted) × whether an SMMU TLB,
 * combined S1+S2 or ATC entry still covers a page the step changed or the host may not access ×
 * which structure the step acts on. A campaign counts the distinct keys it reaches
 * (`CampaignResult.coverage`), and `verify --guided` keeps the runs that reached new ones to
 * mutate (conformance/campaign.ts).
 */
import { type System } from '../impl/system.js';
import { type ModelState, dmaMayAccess } from '../model/index.js';
import { type StepObserver, type StepRecord } from '../properties/runner.js';
import { retName } from './names.js';
import { fnv1a } from './seeds.js';

const PAGE = 4096;

/** Which structure a step acts on, by its kind. */
export function stepStructure(kind: string): string {
  if (kind.startsWith('host_domain_')) return 'host-domain';
  if (kind === 'host_write_ste' || kind === 'host_attach_identity') return 'ste';
  if (kind === 'host_write_cmd') return 'cmdq';
  if (kind === 'host_mmio_write' || kind === 'host_mmio_read') return 'smmu-registers';
  if (kind === 'smmu_evict' || kind === 'smmu_speculative_fill') return 'smmu-caches';
  if (kind === 'smmu_consume') return 'cmdq';
  if (kind === 'ats_translate' || kind === 'dma_translated' || kind === 'dma_forged_translated') return 'atc';
  if (kind === 'dma') return 'dma';
  if (kind.includes('guest') || kind.endsWith('_vm')) return 'guest-s2';
  if (kind.includes('hyp')) return 'hyp';
  return 'host-s2';
}

/**
 * Calls `visit` for every key whose state differs between `a` and `b` (a missing key has state
 * `absent`); the campaign's transition counts use it too.
 */
export function forEachTransition<V extends string>(a: ReadonlyMap<number, V>, b: ReadonlyMap<number, V>, absent: string, visit: (from: string, to: string, key: number) => void): void {
  if (a === b) return;
  for (const [k, v] of a) {
    const w = b.get(k) ?? absent;
    if (v !== w) visit(v, w, k);
  }
  for (const [k, w] of b) if (!a.has(k) && w !== absent) visit(absent, w, k);
}

function transitions(pre: ModelState, post: ModelState): { readonly names: string[]; readonly pfns: number[] } {
  const names = new Set<string>();
  const pfns: number[] = [];
  const diff = (component: string, a: ReadonlyMap<number, string>, b: ReadonlyMap<number, string>, absent: string) =>
    forEachTransition(a, b, absent, (from, to, pfn) => {
      names.add(`${component}:${from}>${to}`);
      pfns.push(pfn);
    });
  diff('host', pre.host, post.host, 'OWNED');
  diff('hyp', pre.hyp, post.hyp, 'NOPAGE');
  if (pre.vms !== post.vms) names.add('guest');
  return { names: [...names].sort(), pfns };
}

/** 'stale' (an entry reaches a page the host may not access), 'cached' (one covers a changed page), or 'none'. */
function cacheState(system: System, post: ModelState, changed: readonly number[]): 'stale' | 'cached' | 'none' {
  const parts = system.iommu;
  if (parts === undefined) return 'none';
  const spans: { pa: number; size: number }[] = [...parts.smmu.cachedTranslations(), ...parts.smmu.cachedS1Translations()];
  for (const d of parts.devices.values()) spans.push(...d.atcEntries());
  if (spans.length === 0) return 'none';
  let cached = false;
  for (const e of spans) {
    for (let pfn = Math.floor(e.pa / PAGE); pfn < Math.min(Math.ceil((e.pa + e.size) / PAGE), Math.floor(e.pa / PAGE) + 512); pfn++) {
      if (!dmaMayAccess(post, pfn, 'read')) return 'stale';
    }
    if (!cached) for (const pfn of changed) if (pfn * PAGE >= e.pa && pfn * PAGE < e.pa + e.size) cached = true;
  }
  return cached ? 'cached' : 'none';
}

export function coverageKey(record: StepRecord, pre: ModelState, post: ModelState, system: System): string {
  const kind = record.op.kind;
  const t = transitions(pre, post);
  const ret = record.systemRet === 'panic' ? 'PANIC' : retName(kind, record.modelRet);
  return `${kind}|${ret}|${t.names.join(',')}|${cacheState(system, post, t.pfns)}|${stepStructure(kind)}`;
}

/** A StepObserver that collects the coverage keys of the runs it watches (hashed, 8 hex digits). */
export class CoverageTracker implements StepObserver {
  readonly hashes = new Set<string>();
  /** Keys first reached since the last `takeNew()`. */
  private fresh = 0;
  private pre: ModelState | undefined;

  before(_index: number, _system: System, model: ModelState): void {
    this.pre = model;
  }

  after(record: StepRecord, system: System, model: ModelState): void {
    const h = fnv1a(coverageKey(record, this.pre ?? model, model, system));
    if (!this.hashes.has(h)) {
      this.hashes.add(h);
      this.fresh++;
    }
  }

  /** How many new keys were reached since the last call. */
  takeNew(): number {
    const n = this.fresh;
    this.fresh = 0;
    return n;
  }
}
