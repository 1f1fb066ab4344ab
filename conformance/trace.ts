/**
 * A replay that also records, for every step, the model state and the abstracted system state
 * before and after, so a trace can show what happened to the pages an operation touched.
 *
 * The runner has no per-step hook, and properties/runner.ts is not ours to change: the system is
 * observed through the runner's `inject` hook, by wrapping `hyp.run` (every operation is exactly
 * one hypercall driven by it, see properties/execute.ts). If that ever stops holding, the count of
 * snapshots no longer matches the steps and the trace says the system states are unavailable
 * rather than pairing them with the wrong steps. Model states are re-derived with `apply`.
 */
import { P, match } from 'ts-pattern';
import { type ModelState, type Operation, OPERATION_KINDS, apply, guestState, hostState, hypState, initialState, leafAt, pinCount, shareCountOf } from '../model/index.js';
import { abstractState, diffStates } from '../properties/abstraction.js';
import { type MachineConfig, toModelConfig } from '../properties/machine.js';
import { type RunOptions, type RunResult, type StepRecord, runOperations } from '../properties/runner.js';
import { type System } from '../impl/system.js';

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

export interface TraceStep {
  readonly record: StepRecord;
  /** Pages to show: named by the operation, changed by it, or named by a violation. */
  readonly pages: readonly number[];
  /** Pages the step changed or named beyond those shown. */
  readonly morePages: number;
  /** Pages named by this step's violation messages, per check. */
  readonly violationPages: readonly { readonly check: string; readonly pfn: number }[];
  readonly model: StatePair;
  readonly system: StatePair | undefined;
}

export interface Trace {
  readonly machine: MachineConfig;
  readonly steps: readonly TraceStep[];
  readonly result: RunResult;
  /** False when the system could not be observed step by step (see the file comment). */
  readonly systemStates: boolean;
  /**
   * False when re-applying the operations to the model does not end where the runner's model
   * ended (the hypervisor made ownership calls of its own, e.g. an SMMU driver at boot): the
   * model columns then leave those calls out.
   */
  readonly modelStatesExact: boolean;
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

function replace<T extends object, K extends keyof T>(target: T, key: K, value: T[K]): void {
  Object.defineProperty(target, key, { value, configurable: true, writable: true });
}

/** Runs like `npm run replay` (every check, continuing after violations) and records states. */
export function traceOperations(machine: MachineConfig, ops: readonly StepOp[], options: RunOptions = {}): Trace {
  const config = toModelConfig(machine);
  const snapshots: (ModelState | undefined)[] = [];
  const snap = (sys: System) => {
    try {
      return abstractState(sys, config);
    } catch {
      return undefined; // a half-written table after a panic: no view of that step
    }
  };
  const inject = (sys: System) => {
    options.inject?.(sys);
    snapshots.push(snap(sys));
    const run = sys.hyp.run.bind(sys.hyp);
    replace(sys.hyp, 'run', (call: Parameters<typeof run>[0], onYield?: Parameters<typeof run>[1]) => {
      try {
        return run(call, onYield);
      } finally {
        snapshots.push(snap(sys));
      }
    });
  };
  const result = runOperations(machine, ops, { ...options, inject, continueAfterViolation: true });
  const modelAfter = rederiveModel(initialState(config), result.steps.map((s) => s.op));
  const modelStatesExact = diffStates(modelAfter.at(-1) ?? initialState(config), result.model).length === 0;
  const systemStates = snapshots.length === result.steps.length + 1;
  let modelBefore = initialState(config);
  const steps = result.steps.map((record, i): TraceStep => {
    const model = { before: modelBefore, after: modelAfter[i] ?? modelBefore };
    modelBefore = model.after;
    const sb = systemStates ? snapshots[i] : undefined;
    const sa = systemStates ? snapshots[i + 1] : undefined;
    const system = sb !== undefined && sa !== undefined ? { before: sb, after: sa } : undefined;
    const violationPages = record.violations.flatMap((v) => pagesInMessage(v.message).map((pfn) => ({ check: v.check, pfn })));
    const changed = changedPages(model);
    const systemChanged = system === undefined ? [] : changedPages(system);
    const all = [...new Set([...violationPages.map((v) => v.pfn), ...namedPages(record.op, model), ...changed, ...systemChanged])];
    const limit = Math.max(MAX_PAGES_PER_STEP, new Set(violationPages.map((v) => v.pfn)).size);
    return { record, pages: all.slice(0, limit), morePages: Math.max(0, all.length - limit), violationPages, model, system };
  });
  return { machine, steps, result, systemStates, modelStatesExact };
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
    lines.push(`        ${mark} ${tag} ${showViews(mb, ma, views)}${hit.length > 0 ? `   ← ${[...new Set(hit)].join(', ')}` : ''}`);
    if (sb !== undefined && sa !== undefined && (!sameView(mb, sb) || !sameView(ma, sa))) {
      lines.push(`          ${'≠ impl'.padEnd(18)} ${showViews(sb, sa, views)}`);
    }
  }
  if (step.morePages > 0) lines.push(`          (+${step.morePages} more page${step.morePages === 1 ? '' : 's'})`);
  return lines;
}
