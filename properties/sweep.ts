/**
 * The fail-the-k-th sweep (issue 16 item 2, after iommufd's `fail_nth` selftest): for a
 * known-good operation sequence on a machine, and for each injection point of
 * impl/fault-injection.ts, fail the k-th event of that point for every k = 1.. up to the last one
 * the sequence reaches. Each trial boots afresh, runs the prefix, snapshots the concrete state
 * before the step in which the k-th event falls, runs that step with the fault, compares, and
 * then runs the rest of the sequence under the runner's checks (properties/runner.ts).
 *
 * Outcomes (`Outcome`):
 *  - `clean`: the step returned the kernel's errno for the point and the concrete state equals
 *    the state before the step;
 *  - `absorbed`: the step returned what the model expects (the kernel recovers, e.g. -ENOMEM
 *    recovery then a retry) and every check held;
 *  - `partial`: the step left a state the kernel documents (`PARTIAL_RULES`, each with its source);
 *  - `panic`: a HypervisorPanic at a WARN/BUG site (the site is kept);
 *  - `finding`: anything else — a wrong errno, an inexact rollback, a leak, a check violated at
 *    or after the fault, or a simulator error.
 */
import { match } from 'ts-pattern';
import { ENOMEM, EPERM, errnoName } from '../model/index.js';
import { FAULT_POINTS, type FaultPoint, FaultPlan, attachFaultPlan } from '../impl/fault-injection.js';
import { type PhysicalMemory } from '../impl/arch/physical-memory.js';
import { type PagePool } from '../impl/pgtable/page-allocator.js';
import { dumpTable } from '../impl/pgtable/table-dump.js';
import { type System } from '../impl/system.js';
import { type MachineConfig } from './machine.js';
import { type RunOptions, type Step, type StepRecord, describeFailure, runOperations } from './runner.js';

const PAGE = 4096;
/** HOST_ACCESS_ABORT (model/operations.ts): what a host access returns when the host is refused. */
const HOST_ACCESS_ABORT = 1;

export type Outcome = 'clean' | 'absorbed' | 'partial' | 'panic' | 'finding';
export const OUTCOMES: readonly Outcome[] = ['clean', 'absorbed', 'partial', 'panic', 'finding'];

export interface SweepSequence {
  readonly name: string;
  readonly machineName: string;
  readonly machine: MachineConfig;
  readonly ops: readonly Step[];
}

export interface TrialResult {
  readonly sequence: string;
  readonly machine: string;
  readonly point: FaultPoint;
  readonly k: number;
  /** The step during which the k-th event fell, and that step. */
  readonly stepIndex: number;
  readonly op: Step;
  readonly outcome: Outcome;
  /** What the step returned ('panic', a number, or 'error' for a simulator exception). */
  readonly ret: string;
  /** Why: the partial rule, the panic site, or the finding. */
  readonly detail: string;
}

export interface SweepCell {
  readonly machine: string;
  readonly point: FaultPoint;
  /** Injection points reached (trials run): the sum over sequences of the last k reached. */
  reached: number;
  clean: number;
  absorbed: number;
  partial: number;
  panic: number;
  finding: number;
}

export interface SweepResult {
  readonly trials: TrialResult[];
  readonly cells: SweepCell[];
  /** Sequences skipped because they do not pass without faults on their machine. */
  readonly notKnownGood: { readonly sequence: string; readonly machine: string; readonly why: string }[];
  /** Injection points per sequence in the fault-free run. */
  readonly reachedBySequence: { readonly sequence: string; readonly machine: string; readonly counts: Record<FaultPoint, number> }[];
}

export interface SweepOptions {
  readonly points?: readonly FaultPoint[];
  /** Only k ≤ maxK per point and sequence (bounded runs); default every k reached. */
  readonly maxK?: number;
  /** Test-only: replaces components of the booted system (a deliberately broken rollback). */
  readonly afterBoot?: (sys: System) => void;
}

// --- concrete snapshot ---

/** The concrete state a failed step must restore, by component (so a diff names the part). */
export interface Snapshot {
  readonly parts: ReadonlyMap<string, string>;
  /** Host stage-2: leaf entries by IA and table pages with their non-zero entry counts. */
  readonly hostLeaves: ReadonlyMap<number, string>;
  readonly hostTables: ReadonlyMap<number, number>;
}

function hashPage(memory: PhysicalMemory, pa: number): string {
  // FNV-1a over the page's 64-bit words (as two halves); enough to see any changed descriptor.
  let h = 0x811c9dc5;
  for (let off = 0; off < PAGE; off += 8) {
    const w = memory.peek64(pa + off);
    h = Math.imul(h ^ w.lo, 0x01000193) >>> 0;
    h = Math.imul(h ^ w.hi, 0x01000193) >>> 0;
  }
  return h.toString(16);
}

export function takeSnapshot(sys: System): Snapshot {
  const parts = new Map<string, string>();
  parts.set('vmemmap', sys.vmemmap.snapshot());
  parts.set('hyp_s1', [...sys.hyp.hypS1].map(([p, how]) => `${p}:${how}`).join(','));
  parts.set('memcache', String(sys.memcache.available));
  parts.set('host_s2_pool', String(sys.hostS2Pool.allocatedBytes / PAGE));
  parts.set('hyp_pool', String((sys.hyp.pgdCarveout as PagePool).allocatedBytes / PAGE));
  parts.set('vms', [...sys.hyp.vms.keys()].join(','));
  const host = dumpTable(sys.memory, sys.hostS2.pgt.root());
  const hostLeaves = new Map(host.entries.map((e) => [e.ia, `${e.level}:${e.lo}:${e.hi}`]));
  const hostTables = new Map(host.tables.map((t) => [t.pa, t.nonZero]));
  for (const [vm, guest] of sys.hyp.vms) {
    const dump = dumpTable(sys.memory, guest.pgt.root());
    parts.set(`vm${vm}.leaves`, dump.entries.map((e) => `${e.ia}:${e.level}:${e.lo}:${e.hi}`).join(';'));
    parts.set(`vm${vm}.tables`, dump.tables.map((t) => t.pa).join(','));
    parts.set(`vm${vm}.pool`, `owned ${guest.pool.owned.length} free ${guest.pool.freePages} metadata ${guest.metadataPages.join(',')}`);
  }
  const iommu = sys.iommu;
  if (iommu !== undefined) {
    parts.set('iommu_pool', String(iommu.pool.allocatedBytes / PAGE));
    if (iommu.idmap !== undefined) {
      const pages = [...iommu.idmap.tablePages()].sort((a, b) => a - b);
      parts.set('idmap', pages.map((pa) => `${pa}:${hashPage(sys.memory, pa)}`).join(','));
    }
    parts.set('strtab_l2', [...iommu.driver.strtab.l2].map(([i, pa]) => `${i}:${pa}`).join(','));
  }
  return { parts, hostLeaves, hostTables };
}

/** The components that differ, with the host stage-2 compared entry by entry. */
export function diffSnapshots(a: Snapshot, b: Snapshot): string[] {
  const out: string[] = [];
  for (const key of new Set([...a.parts.keys(), ...b.parts.keys()])) if (a.parts.get(key) !== b.parts.get(key)) out.push(key);
  if (!sameMap(a.hostLeaves, b.hostLeaves)) out.push('host_s2.leaves');
  if (!sameMap(a.hostTables, b.hostTables)) out.push('host_s2.tables');
  return out;
}

function sameMap<K, V>(a: ReadonlyMap<K, V>, b: ReadonlyMap<K, V>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

// --- documented partial states ---

interface PartialRule {
  readonly name: string;
  /** Whether the difference between `before` and `after` is exactly what the kernel leaves. */
  readonly holds: (before: Snapshot, after: Snapshot, sys: System) => boolean;
}

/** Host stage-2 leaves removed: only valid ones, only outside memory. */
function onlyMmioMappingsRemoved(before: Snapshot, after: Snapshot, sys: System): boolean {
  for (const [ia, v] of after.hostLeaves) if (before.hostLeaves.get(ia) !== v) return false;
  for (const [ia, v] of before.hostLeaves) {
    if (after.hostLeaves.has(ia)) continue;
    const lo = Number(v.split(':')[1]);
    if ((lo & 1) === 0 || sys.hyp.memoryMap.addrIsMemory(ia)) return false;
  }
  return true;
}

/** Host stage-2 tables: those that stayed are unchanged in count only if their entries are. */
function tablesOnlyShrankOrGrewEmpty(before: Snapshot, after: Snapshot): boolean {
  for (const [pa, n] of after.hostTables) {
    const old = before.hostTables.get(pa);
    // A new table must hold nothing but (at most) the chain to another new table.
    if (old === undefined && n > 1) return false;
  }
  return true;
}

const OTHER_PARTS_EQUAL = (before: Snapshot, after: Snapshot, allowed: ReadonlySet<string>): boolean => diffSnapshots(before, after).every((d) => allowed.has(d));

const HOST_S2_PARTS: ReadonlySet<string> = new Set(['host_s2.leaves', 'host_s2.tables', 'host_s2_pool']);

function noNewTables(before: Snapshot, after: Snapshot): boolean {
  for (const pa of after.hostTables.keys()) if (!before.hostTables.has(pa)) return false;
  return true;
}

/**
 * What the kernel leaves behind on the error paths the sweep reaches, each with its source.
 * Checked in order; the first that holds names the outcome.
 */
export const PARTIAL_RULES: readonly PartialRule[] = [
  {
    // UP-2026 mem_protect.c `host_stage2_try` → `host_stage2_unmap_dev_all`: on -ENOMEM every
    // MMIO range of the host stage-2 is unmapped (its tables freed) before the retry; the unmap
    // stops at the first gap that fails (with the series' stage2_unmap_walker change, an
    // annotated MMIO page, -EPERM: series-as-posted.md §2.2). The MMIO gaps are mapped again
    // lazily by the host's next fault.
    name: 'host_stage2_unmap_dev_all: MMIO mappings dropped by the -ENOMEM recovery',
    holds: (b, a, sys) => onlyMmioMappingsRemoved(b, a, sys) && noNewTables(b, a) && OTHER_PARTS_EQUAL(b, a, HOST_S2_PARTS),
  },
  {
    // UP-2026 hyp/pgtable.c `stage2_map_walk_leaf` / `stage2_set_owner` walkers: a table installed
    // on the way down is not freed when a deeper allocation fails; it stays, empty (refcount 1),
    // for the next map.
    name: 'kvm_pgtable_stage2_map: empty tables installed before the failing allocation stay',
    holds: (b, a) => sameMap(b.hostLeaves, a.hostLeaves) && tablesOnlyShrankOrGrewEmpty(b, a) && OTHER_PARTS_EQUAL(b, a, HOST_S2_PARTS),
  },
  {
    name: 'host_stage2_unmap_dev_all after a partial walk: MMIO mappings dropped, empty tables left',
    holds: (b, a, sys) => onlyMmioMappingsRemoved(b, a, sys) && tablesOnlyShrankOrGrewEmpty(b, a) && OTHER_PARTS_EQUAL(b, a, HOST_S2_PARTS),
  },
];

// --- panic sites ---

/**
 * Where the kernel has the WARN_ON/BUG that a panic of the simulator stands for. Hypervisor.warnOn
 * sites are named after the hypercall ("<what> failed with <errno> after its checks passed");
 * the driver's carry the kernel statement. A panic at a site not listed here is a finding.
 */
export const PANIC_SOURCES: readonly { readonly site: RegExp; readonly source: string }[] = [
  { site: /^(host_share_hyp|host_unshare_hyp|host_share_ffa|host_unshare_ffa|guest_share_host) failed/, source: 'UP-2026 mem_protect.c: WARN_ON(__host_set_page_state_range(...))' },
  { site: /^(host_donate_hyp|hyp_donate_host) failed/, source: 'UP-2026 mem_protect.c __pkvm_host_donate_hyp/__pkvm_hyp_donate_host: WARN_ON(host_stage2_set_owner_locked(...))' },
  { site: /^(host_donate_guest set_owner|guest_unshare_host set_owner) failed/, source: 'UP-2026 mem_protect.c: WARN_ON(host_stage2_set_owner_metadata_locked(...))' },
  { site: /^guest (map|remap) failed/, source: 'UP-2026 mem_protect.c __pkvm_host_share_guest/__pkvm_host_donate_guest/__pkvm_guest_*: WARN_ON(kvm_pgtable_stage2_map(...))' },
  { site: /^(guest unmap|guest poison annotation|reclaim set_owner|force reclaim set_owner|teardown reclaim) failed/, source: 'UP-2026 mem_protect.c reclaim paths: WARN_ON(...)' },
  { site: /^(host_donate_hyp_mmio annotate|hyp_donate_host_mmio) failed/, source: 'inferred: SER-T&E v4 __pkvm_host_donate_hyp_mmio (the WARN placement is not in the posted mail)' },
  { site: /^host_stage2_idmap returned/, source: 'UP-2026 handle_host_mem_abort: BUG_ON(ret && ret != -EAGAIN)' },
  { site: /WARN_ON|WARN \(/, source: 'posted v6-era driver / io-pgtable WARN site (named in the site)' },
];

export function panicSource(site: string): string | undefined {
  return PANIC_SOURCES.find((p) => p.site.test(site))?.source;
}

// --- running ---

function countingRun(seq: SweepSequence, options: SweepOptions): { counts: Record<FaultPoint, number>; perStep: Record<FaultPoint, number>[]; failure: string | undefined } {
  const plan = new FaultPlan();
  const perStep: Record<FaultPoint, number>[] = [];
  const run = runOperations(seq.machine, seq.ops, {
    afterBoot: (sys) => {
      options.afterBoot?.(sys);
      attachFaultPlan(sys, plan);
    },
    faults: { firedDuring: () => false, after: () => void perStep.push({ ...plan.counts }) },
  });
  const failure = run.failure !== undefined ? describeFailure(run) : run.steps.length < seq.ops.length ? `stopped at step ${run.steps.length - 1} (panic)` : undefined;
  return { counts: { ...plan.counts }, perStep, failure };
}

/** The expected errno of a failed step, by point: allocation → -ENOMEM. */
function errnoAccepted(point: FaultPoint, ret: number, op: Step, sys: System): { ok: boolean; rule?: string } {
  return match(point)
    .with('cmd_sync', () => ({ ok: false }))
    .with('host_s2_pool', () => {
      if (ret === -ENOMEM) return { ok: true };
      // With the hypervisor owning MMIO (the SMMU frame) the recovery itself fails with -EPERM,
      // which host_stage2_try returns; a host fault then injects an abort (series-as-posted.md
      // §2.2, README "Bug zoo": annotation-erased-by-enomem-recovery).
      const refused = sys.iommu !== undefined && (ret === -EPERM || (op.kind === 'host_access' && ret === HOST_ACCESS_ABORT));
      return refused ? { ok: true, rule: 'host_stage2_try: -ENOMEM recovery refused (-EPERM) while the hypervisor owns MMIO' } : { ok: false };
    })
    .with('hyp_pool', 'memcache', 'vm_pool_topup', 'iommu_pool', () => ({ ok: ret === -ENOMEM }))
    .exhaustive();
}

function runTrial(seq: SweepSequence, point: FaultPoint, k: number, stepIndex: number, baselineRet: number | 'panic', options: SweepOptions): TrialResult {
  const plan = new FaultPlan({ point, k });
  let before: Snapshot | undefined;
  let after: Snapshot | undefined;
  let firedBefore = false;
  let sysRef: System | undefined;
  const base = { sequence: seq.name, machine: seq.machineName, point, k, stepIndex, op: seq.ops[stepIndex] as Step };
  const runOptions: RunOptions = {
    continueAfterViolation: true,
    afterBoot: (sys) => {
      options.afterBoot?.(sys);
      attachFaultPlan(sys, plan);
      sysRef = sys;
    },
    faults: {
      before: (index, sys) => {
        firedBefore = plan.fired;
        if (index === stepIndex) before = takeSnapshot(sys);
      },
      firedDuring: () => plan.fired && !firedBefore,
      after: (record, sys) => {
        if (record.index === stepIndex && record.systemRet !== 'panic') after = takeSnapshot(sys);
      },
    },
  };
  let result: ReturnType<typeof runOperations>;
  try {
    result = runOperations(seq.machine, seq.ops, runOptions);
  } catch (e) {
    return { ...base, outcome: 'finding', ret: 'error', detail: `simulator error (not an errno, not a panic): ${e instanceof Error ? e.message : String(e)}` };
  }
  const record = result.steps[stepIndex];
  if (!plan.fired || record === undefined) return { ...base, outcome: 'finding', ret: 'none', detail: `the fault did not fire at step ${stepIndex} (non-deterministic run?)` };
  const later = result.steps.filter((s) => s.index > stepIndex && s.violations.length > 0);
  const laterText = later.length === 0 ? '' : `; after the fault, step ${later[0]?.index} ${later[0]?.op.kind}: ${later[0]?.violations.map((v) => `[${v.check}] ${v.message}`).join(' ')}`;
  if (record.systemRet === 'panic') {
    const site = record.panicSite ?? 'panic';
    if (panicSource(site) === undefined) return { ...base, outcome: 'finding', ret: 'panic', detail: `panic at a site with no kernel WARN/BUG: ${site}` };
    return { ...base, outcome: 'panic', ret: 'panic', detail: site };
  }
  const ret = record.systemRet;
  const violationsAt = record.violations.map((v) => `[${v.check}] ${v.message}`);
  const sys = sysRef as System;
  if (ret === baselineRet) {
    if (violationsAt.length === 0 && later.length === 0) return { ...base, outcome: 'absorbed', ret: String(ret), detail: 'returned what the model expects; every check held' };
    return { ...base, outcome: 'finding', ret: String(ret), detail: `the fault was absorbed but checks failed: ${violationsAt.join(' ')}${laterText}` };
  }
  const retText = isHostAccess(record) ? `host access ${ret}` : errnoName(ret);
  const errno = errnoAccepted(point, ret, record.op, sys);
  if (!errno.ok) return { ...base, outcome: 'finding', ret: retText, detail: `wrong errno: ${retText} for a ${point} fault${violationsAt.length > 0 ? `; ${violationsAt.join(' ')}` : ''}${laterText}` };
  const diffs = diffSnapshots(before as Snapshot, after as Snapshot);
  let rule: string | undefined = errno.rule;
  if (diffs.length > 0) {
    const partial = PARTIAL_RULES.find((r) => r.holds(before as Snapshot, after as Snapshot, sys));
    if (partial === undefined) return { ...base, outcome: 'finding', ret: retText, detail: `INEXACT ROLLBACK: ${retText} but ${diffs.join(', ')} changed${diffs.some((d) => d.endsWith('pool') || d === 'memcache') ? ' (LEAK)' : ''}${laterText}` };
    rule = rule === undefined ? partial.name : `${rule}; ${partial.name}`;
  }
  if (violationsAt.length > 0 || later.length > 0) return { ...base, outcome: 'finding', ret: retText, detail: `checks failed after ${retText}: ${violationsAt.join(' ')}${laterText}` };
  return rule === undefined ? { ...base, outcome: 'clean', ret: retText, detail: 'errno returned, state restored exactly' } : { ...base, outcome: 'partial', ret: retText, detail: rule };
}

function isHostAccess(record: StepRecord): boolean {
  return record.op.kind === 'host_access';
}

/** Runs the sweep over `sequences`; deterministic (no randomness, no clock). */
export function sweep(sequences: readonly SweepSequence[], options: SweepOptions = {}): SweepResult {
  const points = options.points ?? FAULT_POINTS;
  const trials: TrialResult[] = [];
  const notKnownGood: SweepResult['notKnownGood'] = [];
  const reachedBySequence: SweepResult['reachedBySequence'] = [];
  const cells = new Map<string, SweepCell>();
  const cell = (machine: string, point: FaultPoint): SweepCell => {
    const key = `${machine}|${point}`;
    let c = cells.get(key);
    if (c === undefined) {
      c = { machine, point, reached: 0, clean: 0, absorbed: 0, partial: 0, panic: 0, finding: 0 };
      cells.set(key, c);
    }
    return c;
  };
  for (const seq of sequences) {
    const baseline = countingRun(seq, {});
    if (baseline.failure !== undefined) {
      notKnownGood.push({ sequence: seq.name, machine: seq.machineName, why: baseline.failure });
      continue;
    }
    const counting = options.afterBoot === undefined ? baseline : countingRun(seq, options);
    const baselineRets = runOperations(seq.machine, seq.ops).steps.map((s) => s.systemRet);
    reachedBySequence.push({ sequence: seq.name, machine: seq.machineName, counts: counting.counts });
    for (const point of points) {
      const c = cell(seq.machineName, point);
      const last = Math.min(counting.counts[point], options.maxK ?? Infinity);
      for (let k = 1; k <= last; k++) {
        const stepIndex = counting.perStep.findIndex((counts) => counts[point] >= k);
        const trial = runTrial(seq, point, k, stepIndex, baselineRets[stepIndex] ?? 'panic', options);
        trials.push(trial);
        c.reached++;
        c[trial.outcome]++;
      }
    }
  }
  return { trials, cells: [...cells.values()], notKnownGood, reachedBySequence };
}

/**
 * Findings of the sweep on the current impl/, reported and not fixed (issue 16: report, do not
 * silently fix). A finding matching none of these is new: the CLI exits 1, the test fails.
 */
export const KNOWN_SWEEP_FINDINGS: readonly { readonly name: string; readonly point: FaultPoint; readonly detail: RegExp; readonly description: string }[] = [
  {
    name: 'init-vm-pgd-alloc-throws',
    point: 'hyp_pool',
    detail: /simulator error .*no memory for the stage-2 PGD/,
    description:
      'init_vm: a failed PGD allocation throws out of the GuestVm constructor (KvmPgtable: "no memory for the stage-2 PGD") after the memcache pages for the VM were already popped — no errno, no rollback. UP-2026 __pkvm_init_vm: kvm_guest_prepare_stage2 → __kvm_pgtable_stage2_init returns -ENOMEM and the function unwinds (unmap_donated_memory) before returning it.',
  },
  {
    name: 'init-vm-memcache-pop-unchecked',
    point: 'memcache',
    detail: /hypervisor page budget|budget: /,
    description:
      'init_vm pops its metadata pages with `this.memcache.pop() as number` after checking `available`: a pop that fails records `undefined` as a metadata page and init_vm returns 0 — the budget is off by one from then on (pool_accounting and refinement_state fire). Unreachable without injection (the count is checked first); the kernel takes the VM structures from host-donated memory, not the memcache (UP-2026 __pkvm_init_vm, map_donated_memory → -ENOMEM/-EPERM with unwinding).',
  },
];

export function knownFinding(t: TrialResult): string | undefined {
  return KNOWN_SWEEP_FINDINGS.find((f) => f.point === t.point && f.detail.test(t.detail))?.name;
}

/** The findings, one per (sequence, point, detail), with the smallest k that shows it. */
export function findings(result: SweepResult): TrialResult[] {
  const seen = new Set<string>();
  const out: TrialResult[] = [];
  for (const t of result.trials) {
    if (t.outcome !== 'finding') continue;
    const key = `${t.machine}|${t.sequence}|${t.point}|${t.detail.replace(/0x[0-9a-f]+/g, 'ADDR')}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(t);
  }
  return out;
}

/** The counts table as Markdown: machine × point → reached, clean, absorbed, partial, panic, findings. */
export function formatTable(result: SweepResult): string {
  const lines = ['| machine | injection point | reached | clean | absorbed | partial | panic | findings |', '|---|---|--:|--:|--:|--:|--:|--:|'];
  for (const c of result.cells) lines.push(`| ${c.machine} | ${c.point} | ${c.reached} | ${c.clean} | ${c.absorbed} | ${c.partial} | ${c.panic} | ${c.finding} |`);
  const total = result.cells.reduce((t, c) => ({ reached: t.reached + c.reached, clean: t.clean + c.clean, absorbed: t.absorbed + c.absorbed, partial: t.partial + c.partial, panic: t.panic + c.panic, finding: t.finding + c.finding }), { reached: 0, clean: 0, absorbed: 0, partial: 0, panic: 0, finding: 0 });
  lines.push(`| **total** | | ${total.reached} | ${total.clean} | ${total.absorbed} | ${total.partial} | ${total.panic} | ${total.finding} |`);
  return lines.join('\n');
}
