/**
 * A replay that also records, for every step, the model state and the abstracted system state
 * before and after, so a trace can show what happened to the pages an operation touched; on a
 * machine with an SMMU also the SMMU's registers and cached configuration, how the DMA stage-2
 * maps each page, and the life of every cache and ATC entry (conformance/cache-history.ts).
 *
 * The states come from the runner's step observer (RunOptions.steps): the runner's own model
 * (ownership calls the hypervisor made itself included) and the system it ran, around every step,
 * hardware and host-driver steps included.
 */
import { P, match } from 'ts-pattern';
import { type ModelState, type Operation, OPERATION_KINDS, apply, guestState, hostState, hypState, initialState, leafAt, pinCount, shareCountOf } from '../model/index.js';
import { abstractState } from '../properties/abstraction.js';
import { type MachineConfig, toModelConfig } from '../properties/machine.js';
import { type RunOptions, type RunResult, type StepObserver, type StepRecord, runOperations } from '../properties/runner.js';
import { type RegName } from '../impl/arch/smmu/registers.js';
import { type System } from '../impl/system.js';
import { CacheHistory, type EntryHistory } from './cache-history.js';

/** Pages a trace line lists per step; a 512-page block share shows its first pages. */
export const MAX_PAGES_PER_STEP = 4;
const PFN_SPACE = 2 ** 52;

export interface PageView {
  readonly host: string;
  readonly hyp: string;
  readonly pins: number;
  readonly shares: number;
  /** Guest leaves mapping the page: "vm1@0x7 OWNED rwx", "vm0@0x200 SHARED_BORROWED r". */
  readonly guests: readonly string[];
}

export type Owner = 'host' | 'hyp' | 'guest' | 'none';

export interface StatePair {
  readonly before: ModelState;
  readonly after: ModelState;
}

/** What the SMMU acts on after a step (machines with an SMMU). */
export interface SmmuState {
  /** Registers, the host's view of the emulated SMMU and the cached STEs, one "name: value" line each. */
  readonly lines: readonly string[];
  /** How the DMA stage-2 (shadow idmap or shared host stage-2) maps each page watched so far: "rw", "r-", "-w" or "unmapped". */
  readonly dma: ReadonlyMap<number, string>;
}

export interface TraceStep {
  readonly record: StepRecord;
  /** Pages to show: named by the operation, changed by it, or named by a violation. */
  readonly pages: readonly number[];
  /** Pages the step changed or named beyond those shown. */
  readonly morePages: number;
  /** Pages named by this step's violation messages, per check. */
  readonly violationPages: readonly { readonly check: string; readonly pfn: number }[];
  readonly model: StatePair;
  /** Undefined when the abstraction could not read the system (a half-written table after a panic). */
  readonly system: StatePair | undefined;
  readonly smmu: { readonly before: SmmuState; readonly after: SmmuState } | undefined;
}

export interface Trace {
  readonly machine: MachineConfig;
  readonly steps: readonly TraceStep[];
  readonly result: RunResult;
  /** Every SMMU cache and ATC entry of the run, fill to removal (machines with an SMMU). */
  readonly caches: CacheHistory | undefined;
}

/** A step of a run: an ownership operation, or (with an SMMU) a hardware or host-driver action. */
export type StepOp = StepRecord['op'];

export function isOwnershipOperation(op: StepOp | Operation): op is Operation {
  return (OPERATION_KINDS as readonly string[]).includes(op.kind);
}

/** The model state after each step; steps that are not ownership operations leave it alone. */
export function rederiveModel(initial: ModelState, ops: readonly StepOp[]): ModelState[] {
  let s = initial;
  return ops.map((op) => {
    if (isOwnershipOperation(op)) s = apply(s, op).state;
    return s;
  });
}

/** The run's records, with a failure outside the steps (at boot) first. */
export function allRecords(result: RunResult): readonly StepRecord[] {
  return result.failure !== undefined && !result.steps.includes(result.failure) ? [result.failure, ...result.steps] : result.steps;
}

export function pageView(s: ModelState, pfn: number): PageView {
  const guests: string[] = [];
  for (const [handle, vm] of [...s.vms].sort(([a], [b]) => a - b)) {
    for (const [gfn, leaf] of vm.leaves) {
      if (leaf.kind !== 'map' || pfn < leaf.pfn || pfn >= leaf.pfn + leaf.nrPages) continue;
      const g = gfn + (pfn - leaf.pfn);
      guests.push(`vm${handle}@0x${g.toString(16)} ${guestState(vm, g)} ${leaf.prot === '' ? '-' : leaf.prot}`);
    }
  }
  return { host: hostState(s, pfn), hyp: hypState(s, pfn), pins: pinCount(s, pfn), shares: shareCountOf(s, pfn), guests: guests.sort() };
}

/** Who holds the page, for colouring: the host while it may access it, else hyp, else a guest. */
export function pageOwner(v: PageView): { owner: Owner; shared: boolean } {
  const shared = v.host === 'SHARED_OWNED' || v.host === 'SHARED_BORROWED';
  if (v.host === 'OWNED' || v.host === 'SHARED_OWNED') return { owner: 'host', shared };
  if (v.hyp === 'OWNED' || v.hyp === 'SHARED_OWNED') return { owner: 'hyp', shared };
  if (v.guests.some((g) => / (OWNED|SHARED_OWNED) /.test(g))) return { owner: 'guest', shared };
  return { owner: 'none', shared };
}

export function sameView(a: PageView, b: PageView): boolean {
  return a.host === b.host && a.hyp === b.hyp && a.pins === b.pins && a.shares === b.shares && a.guests.join('|') === b.guests.join('|');
}

function range(pfn: number, nrPages: number): number[] {
  const out: number[] = [];
  const n = Math.min(nrPages, MAX_PAGES_PER_STEP);
  for (let i = 0; i < n; i++) out.push((pfn + i) % PFN_SPACE);
  return out;
}

/** The pfn a guest frame maps, before or after the operation. */
function guestPages(m: StatePair, vm: number, gfn: number): number[] {
  const out: number[] = [];
  for (const s of [m.before, m.after]) {
    const rec = s.vms.get(vm);
    const found = rec === undefined ? undefined : leafAt(rec, gfn % PFN_SPACE);
    if (found !== undefined && found.leaf.kind === 'map') out.push(found.leaf.pfn + ((gfn % PFN_SPACE) - found.gfn));
  }
  return out;
}

/** Pages the operation names (page ranges shortened to their first pages). */
export function namedPages(op: StepOp, m: StatePair): number[] {
  if (!isOwnershipOperation(op)) {
    // Hardware steps: a page frame or an (identity-mapped) address, if they carry one.
    const o = op as unknown as Record<string, unknown>;
    if (typeof o.pfn === 'number') return [o.pfn % PFN_SPACE];
    if (typeof o.addr === 'number') return [Math.floor(o.addr / 4096) % PFN_SPACE];
    return [];
  }
  return match(op)
    .with({ kind: P.union('host_share_hyp', 'host_unshare_hyp', 'host_force_reclaim_page_guest', 'host_donate_hyp_mmio', 'hyp_donate_host_mmio') }, (o) => [o.pfn % PFN_SPACE])
    .with(
      { kind: P.union('host_donate_hyp', 'hyp_donate_host', 'hyp_pin_shared_mem', 'hyp_unpin_shared_mem', 'host_share_ffa', 'host_unshare_ffa', 'host_share_guest') },
      (o) => range(o.pfn, Math.max(1, o.nrPages)),
    )
    .with({ kind: 'host_donate_guest' }, (o) => [o.pfn % PFN_SPACE, ...guestPages(m, o.vm, o.gfn)])
    .with(
      { kind: P.union('host_unshare_guest', 'host_relax_perms_guest', 'host_wrprotect_guest', 'host_reclaim_page_guest', 'guest_share_host', 'guest_unshare_host') },
      (o) => guestPages(m, o.vm, o.gfn),
    )
    .with({ kind: 'init_vm' }, () => [])
    .with({ kind: 'teardown_vm' }, (o) => {
      const vm = m.before.vms.get(o.vm);
      if (vm === undefined) return [];
      return [...vm.leaves.values()].flatMap((l) => (l.kind === 'map' ? [l.pfn] : []));
    })
    .with({ kind: 'host_access' }, (o) => [Math.floor(o.addr / 4096) % PFN_SPACE])
    .exhaustive();
}

/** Pages whose host, hyp, pin, share or guest state differs between the two states. */
export function changedPages(m: StatePair): number[] {
  const { before, after } = m;
  if (before === after) return [];
  const out = new Set<number>();
  const diff = <V>(a: ReadonlyMap<number, V>, b: ReadonlyMap<number, V>) => {
    if (a === b) return;
    for (const [k, v] of a) if (b.get(k) !== v) out.add(k);
    for (const [k, v] of b) if (a.get(k) !== v) out.add(k);
  };
  diff(before.host, after.host);
  diff(before.hyp, after.hyp);
  diff(before.pins, after.pins);
  diff(before.shareCount, after.shareCount);
  if (before.vms !== after.vms) {
    for (const handle of new Set([...before.vms.keys(), ...after.vms.keys()])) {
      const a = before.vms.get(handle);
      const b = after.vms.get(handle);
      if (a === b) continue;
      for (const rec of [a, b]) {
        for (const [gfn, leaf] of rec?.leaves ?? []) {
          if (leaf.kind !== 'map') continue;
          const other = rec === a ? b : a;
          const same = other?.leaves.get(gfn);
          if (same === undefined || JSON.stringify(same) !== JSON.stringify(leaf)) out.add(leaf.pfn);
        }
      }
    }
  }
  return [...out].sort((x, y) => x - y);
}

/** "pfn 0x40000" in a violation message names the page it is about. */
export function pagesInMessage(message: string): number[] {
  return [...message.matchAll(/pfn 0x([0-9a-f]+)/gi)].map((m) => Number.parseInt(m[1] as string, 16));
}

const REGISTERS_SHOWN: readonly RegName[] = ['CR0', 'CR0ACK', 'CR2', 'GBPA', 'IRQ_CTRL', 'GERROR', 'GERRORN', 'STRTAB_BASE', 'STRTAB_BASE_CFG', 'CMDQ_BASE', 'CMDQ_PROD', 'CMDQ_CONS', 'EVTQ_BASE', 'EVTQ_PROD', 'EVTQ_CONS', 'EVTQ_IRQ_CFG0', 'GERROR_IRQ_CFG0'];
const CR0_BITS = ['SMMUEN', 'PRIQEN', 'EVTQEN', 'CMDQEN', 'ATSCHK'] as const;

function cr0Text(v: number): string {
  const names = CR0_BITS.filter((_, i) => (v & (1 << i)) !== 0);
  return `0x${v.toString(16)}${names.length === 0 ? '' : ` (${names.join('|')})`}`;
}

function dmaText(t: { read: boolean; write: boolean } | undefined): string {
  return t === undefined ? 'unmapped' : `${t.read ? 'r' : '-'}${t.write ? 'w' : '-'}`;
}

/** The SMMU's state a reviewer needs next to the page states: registers, the host's CR0, cached STEs, and the DMA stage-2 at `pages`. */
export function smmuState(sys: System, pages: Iterable<number>): SmmuState | undefined {
  const parts = sys.iommu;
  if (parts === undefined) return undefined;
  const smmu = parts.smmu;
  const lines = REGISTERS_SHOWN.map((r) => `${r}: ${r === 'CR0' || r === 'CR0ACK' ? cr0Text(smmu.readRegister(r)) : `0x${smmu.readRegister(r).toString(16)}`}`);
  lines.push(`host's CR0 (emulated): ${cr0Text(parts.driver.host.cr0)}`);
  const stale = new Set(smmu.staleConfigEntries().map((e) => e.seq));
  for (const e of smmu.configCacheEntries()) {
    const old = stale.has(e.seq) ? ' — STALE: memory changed without CFGI' : '';
    if (e.kind === 'ste') lines.push(`cached STE sid ${e.sid}: ${e.steKind}${e.s2 === undefined ? '' : ` vmid ${e.s2.vmid} S2TTB 0x${e.s2.ttb.toString(16)}`}${e.illegal === undefined ? '' : ` (ILLEGAL: ${e.illegal})`}${old}`);
    else lines.push(`cached L1STD ${e.l1Index}: sids ${e.sidBase}–${e.sidBase + e.sidCount - 1} → 0x${e.l2ptr.toString(16)}${old}`);
  }
  lines.push(`cached translations: ${smmu.cachedTranslations().length} TLB, ${smmu.walkCacheEntries().length} walk cache, ${smmu.cachedS1Translations().length} stage-1 TLB; ATC ${[...parts.devices.values()].map((d) => `sid ${d.sid}: ${d.atcEntries().length}`).join(', ')}`);
  const dma = new Map<number, string>();
  const table = parts.dmaStage2;
  for (const pfn of pages) dma.set(pfn, table === undefined ? 'no DMA stage-2' : dmaText(table.translate(pfn * 4096)));
  return { lines, dma };
}

/** Runs like `npm run replay` (every check, continuing after violations) and records states. */
export function traceOperations(machine: MachineConfig, ops: readonly StepOp[], options: RunOptions = {}): Trace {
  const config = toModelConfig(machine);
  const snap = (sys: System): ModelState | undefined => {
    try {
      return abstractState(sys, config);
    } catch {
      return undefined; // a half-written table after a panic: no view of that step
    }
  };
  // states[0]: before step 0; states[i + 1]: after step i.
  const states: { model: ModelState; system: ModelState | undefined; smmu: SmmuState | undefined }[] = [];
  // Pages whose DMA mapping is recorded: every page a step named, changed or a violation named so far.
  const watched = new Set<number>();
  let caches: CacheHistory | undefined;
  const inject = (sys: System) => {
    options.inject?.(sys);
    caches = CacheHistory.attach(sys);
  };
  const steps: StepObserver = {
    before: (index, system, model) => {
      options.steps?.before?.(index, system, model);
      if (caches !== undefined) caches.step = index;
      if (states.length === 0) states.push({ model, system: snap(system), smmu: smmuState(system, watched) });
    },
    after: (record, system, model) => {
      options.steps?.after?.(record, system, model);
      const prev = states.at(-1);
      const now = snap(system);
      const pair = { before: prev?.model ?? model, after: model };
      for (const pfn of [...namedPages(record.op, pair), ...changedPages(pair), ...(prev?.system !== undefined && now !== undefined ? changedPages({ before: prev.system, after: now }) : [])]) watched.add(pfn);
      for (const v of record.violations) for (const pfn of pagesInMessage(v.message)) watched.add(pfn);
      states.push({ model, system: now, smmu: smmuState(system, watched) });
    },
  };
  const result = runOperations(machine, ops, { ...options, inject, steps, continueAfterViolation: true });
  const traced = result.steps.map((record, i): TraceStep => {
    const b = states[i];
    const a = states[i + 1] ?? b;
    const model = { before: b?.model ?? initialState(config), after: a?.model ?? initialState(config) };
    const system = b?.system !== undefined && a?.system !== undefined ? { before: b.system, after: a.system } : undefined;
    const smmu = b?.smmu !== undefined && a?.smmu !== undefined ? { before: b.smmu, after: a.smmu } : undefined;
    const violationPages = record.violations.flatMap((v) => pagesInMessage(v.message).map((pfn) => ({ check: v.check, pfn })));
    const changed = changedPages(model);
    const systemChanged = system === undefined ? [] : changedPages(system);
    const all = [...new Set([...violationPages.map((v) => v.pfn), ...namedPages(record.op, model), ...changed, ...systemChanged])];
    const limit = Math.max(MAX_PAGES_PER_STEP, new Set(violationPages.map((v) => v.pfn)).size);
    return { record, pages: all.slice(0, limit), morePages: Math.max(0, all.length - limit), violationPages, model, system, smmu };
  });
  return { machine, steps: traced, result, caches };
}

function showField(label: string, a: string | number, b: string | number): string {
  return a === b ? `${label} ${a}` : `${label} ${a}→${b}`;
}

function showViews(before: PageView, after: PageView, all: readonly PageView[]): string {
  const parts = [showField('host', before.host, after.host), showField('hyp', before.hyp, after.hyp)];
  if (all.some((v) => v.pins !== 0)) parts.push(showField('pins', before.pins, after.pins));
  if (all.some((v) => v.shares !== 0)) parts.push(showField('shares', before.shares, after.shares));
  if (all.some((v) => v.guests.length > 0)) {
    const g = (v: PageView) => (v.guests.length === 0 ? '-' : v.guests.join(', '));
    parts.push(g(before) === g(after) ? `guest ${g(before)}` : `guest ${g(before)} → ${g(after)}`);
  }
  return parts.join('  ');
}

/** Streams a violation message names ("sid 3"): its configuration entries explain a coherence violation. */
export function sidsInMessage(message: string): number[] {
  return [...new Set([...message.matchAll(/\bsid (\d+)/g)].map((m) => Number(m[1])))];
}

/** Checks whose violations cached translations or configuration can explain. */
const CACHE_EXPLAINED_CHECKS: ReadonlySet<string> = new Set(['dma_isolation', 'dma_during_hypercall', 'dma_availability', 'smmu_config_coherent']);

export interface ViolationCaches {
  readonly step: number;
  readonly check: string;
  /** "pfn 0x40001" or "sid 1": what the entries reach or belong to. */
  readonly subject: string;
  readonly entries: readonly EntryHistory[];
}

/**
 * For each violation of the step, the SMMU cache and ATC entries that reach the page it names
 * (and the configuration entries of a stream it names, for a coherence violation), cached at
 * some point of the step, with their histories.
 */
export function violationCaches(trace: Trace, step: TraceStep): ViolationCaches[] {
  const caches = trace.caches;
  if (caches === undefined) return [];
  const at = step.record.index;
  const out = new Map<string, ViolationCaches>();
  for (const v of step.record.violations) {
    if (!CACHE_EXPLAINED_CHECKS.has(v.check)) continue;
    const subjects = [
      ...pagesInMessage(v.message).map((pfn) => ({ subject: `pfn 0x${pfn.toString(16)}`, entries: () => caches.reaching(pfn, at) })),
      ...(v.check === 'smmu_config_coherent' ? sidsInMessage(v.message).map((sid) => ({ subject: `sid ${sid}`, entries: () => caches.ofStream(sid, at) })) : []),
    ];
    // Several messages of one check about one page (a TLB and an ATC entry) share one explanation.
    for (const { subject, entries } of subjects) if (!out.has(`${v.check} ${subject}`)) out.set(`${v.check} ${subject}`, { step: at, check: v.check, subject, entries: entries() });
  }
  return [...out.values()];
}

/** SMMU state lines that changed in the step (queue pointers left out: they move on every command). */
export function smmuChanges(step: TraceStep): string[] {
  if (step.smmu === undefined) return [];
  const key = (line: string) => line.slice(0, line.indexOf(':'));
  const before = new Map(step.smmu.before.lines.map((l) => [key(l), l]));
  const after = new Map(step.smmu.after.lines.map((l) => [key(l), l]));
  const out: string[] = [];
  for (const k of new Set([...before.keys(), ...after.keys()])) {
    if (/_(PROD|CONS)$|^cached translations/.test(k)) continue;
    const b = before.get(k);
    const a = after.get(k);
    if (b === a) continue;
    out.push(a === undefined ? `${b} → gone` : b === undefined ? `${a} (new)` : `${k}: ${b.slice(k.length + 2)} → ${a.slice(k.length + 2)}`);
  }
  return out;
}

/**
 * Text lines under a step: each page with its states before→after; a second line when the
 * abstracted system disagrees with the model; a ✗ on pages a violation names.
 */
export function formatPageLines(step: TraceStep): string[] {
  const lines: string[] = [];
  for (const pfn of step.pages) {
    const mb = pageView(step.model.before, pfn);
    const ma = pageView(step.model.after, pfn);
    const sb = step.system === undefined ? undefined : pageView(step.system.before, pfn);
    const sa = step.system === undefined ? undefined : pageView(step.system.after, pfn);
    const views = [mb, ma, ...(sb === undefined ? [] : [sb]), ...(sa === undefined ? [] : [sa])];
    const hit = step.violationPages.filter((v) => v.pfn === pfn).map((v) => v.check);
    const mark = hit.length > 0 ? '✗' : '·';
    const tag = `pfn 0x${pfn.toString(16)}`.padEnd(18);
    // On an SMMU machine: how the DMA stage-2 maps the page, where that is known.
    const db = step.smmu?.before.dma.get(pfn);
    const da = step.smmu?.after.dma.get(pfn);
    const dma = da === undefined ? '' : `  dma ${db === undefined || db === da ? da : `${db}→${da}`}`;
    lines.push(`        ${mark} ${tag} ${showViews(mb, ma, views)}${dma}${hit.length > 0 ? `   ← ${[...new Set(hit)].join(', ')}` : ''}`);
    if (sb !== undefined && sa !== undefined && (!sameView(mb, sb) || !sameView(ma, sa))) {
      lines.push(`          ${'≠ impl'.padEnd(18)} ${showViews(sb, sa, views)}`);
    }
  }
  if (step.morePages > 0) lines.push(`          (+${step.morePages} more page${step.morePages === 1 ? '' : 's'})`);
  return lines;
}
