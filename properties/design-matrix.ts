/**
 * The design verdict matrix (issue 6 items 1–2): every built design variant on the representative
 * hardware set, explored on one generated workload (fixed seed, bounded runs), with the checks
 * each run violated and the costs each variant pays per donation. Shared by
 * properties/designs.test.ts (which asserts the declared verdicts) and cli/verdicts.ts (which
 * prints the table kept in README).
 */
import fc from 'fast-check';
import { DESIGN_VARIANTS, type DesignVariant, declaredVerdicts } from '../impl/hyp/design.js';
import { type System } from '../impl/system.js';
import { operationsArbitrary, scheduleArbitrary } from './arbitraries.js';
import { COMBINED_ENTRY_TRIGGER } from './host-domains.js';
import { type CheckName } from './checks.js';
import { knownFindingTrigger, knownPanicSites, notAKnownFinding } from './known-findings.js';
import { type MachineConfig, representativeHardware, verdictHardware } from './machine.js';
import { ALL_CHECKS, type ScheduledHardware, type Step, runOperations } from './runner.js';


export interface MatrixBudget {
  readonly seed: number;
  readonly runs: number;
  readonly maxOps: number;
}

export const DEFAULT_BUDGET: MatrixBudget = { seed: 20261122, runs: 40, maxOps: 30 };

/**
 * One run of the workload: the operations, and DMA the devices issue while the hypervisor waits
 * inside those operations (RunOptions.schedule) — so dma_during_hypercall and availability inside
 * a call (break-before-make windows) are exercised, not only the state between calls.
 */
export interface WorkloadRun {
  readonly ops: readonly Step[];
  readonly schedule: readonly ScheduledHardware[];
}

/** The fixed workload: the same runs for every variant on one machine. */
export function workload(machine: MachineConfig, budget: MatrixBudget): WorkloadRun[] {
  const arb = fc.record({ ops: operationsArbitrary(machine, budget.maxOps).map((ops) => ops.filter(notAKnownFinding)), schedule: scheduleArbitrary(machine) });
  return fc.sample(arb, { seed: budget.seed, numRuns: budget.runs });
}

export interface CheckOutcome {
  /** 'workload' when a run of the workload broke the check, 'trigger' for VERDICT_TRIGGERS. */
  readonly foundBy?: 'workload' | 'trigger';
  /** Runs (of the workload) in which the check was violated. */
  readonly violatedRuns: number;
  /** Index of the first such run, and its operations up to the violating step. */
  readonly firstRun: number | undefined;
  readonly counterexample: readonly Step[] | undefined;
  readonly message: string | undefined;
}

export interface Exploration {
  readonly checks: ReadonlyMap<CheckName, CheckOutcome>;
  readonly runs: number;
  readonly operations: number;
  readonly millis: number;
}


/**
 * Runs the workload under a variant with every check, continuing after violations so one pass
 * yields a verdict for every check (a run is cut at a hypervisor panic, which
 * no_host_triggered_panic reports).
 */
export function explore(variant: DesignVariant, machine: MachineConfig, ops: readonly WorkloadRun[], inject?: (sys: System) => void): Exploration {
  const found = new Map<CheckName, { foundBy?: 'workload'; violatedRuns: number; firstRun: number | undefined; counterexample: Step[] | undefined; message: string | undefined }>();
  for (const c of ALL_CHECKS) found.set(c, { violatedRuns: 0, firstRun: undefined, counterexample: undefined, message: undefined });
  let operations = 0;
  const start = performance.now();
  ops.forEach((run, runIndex) => {
    const r = runOperations(machine, run.ops, { driver: variant.knobs, continueAfterViolation: true, schedule: run.schedule, ...(inject === undefined ? {} : { inject }) });
    operations += r.steps.length;
    const seen = new Set<CheckName>();
    for (const s of r.steps) {
      for (const v of s.violations) {
        const entry = found.get(v.check);
        if (entry === undefined || seen.has(v.check)) continue;
        seen.add(v.check);
        entry.violatedRuns++;
        if (entry.firstRun === undefined) {
          entry.foundBy = 'workload';
          entry.firstRun = runIndex;
          entry.counterexample = run.ops.slice(0, s.index + 1);
          entry.message = v.message;
        }
      }
    }
  });
  return { checks: found, runs: ops.length, operations, millis: performance.now() - start };
}

export interface Costs {
  readonly donations: number;
  /** Pages those donations moved (one 512-page donation dominates a mean per donation). */
  readonly donatedPages: number;
  readonly commandsPerPage: number;
  readonly commandsPerDonation: number;
  readonly syncsPerDonation: number;
  readonly tlbRemovedPerDonation: number;
  readonly walkRemovedPerDonation: number;
  /** Removed entries that did not translate (or lead to) a donated page. */
  readonly collateralPerDonation: number;
  /** Table pages of the idmap after boot (io-pgtable heldTables, PGD included). */
  readonly idmapTablePages: number;
  readonly checkedOpsPerSecond: number;
}

interface DonationTally {
  donations: number;
  pages: number;
  commands: number;
  syncs: number;
  tlb: number;
  walk: number;
  collateral: number;
}

/**
 * Wraps the two donating hypercalls so that every donation the workload makes is measured: the
 * hypervisor's commands and CMD_SYNCs issued during it, and the SMMU TLB / walk-cache entries
 * present before and gone after (collateral: those not overlapping the donated pages).
 */
function measureDonations(tally: DonationTally): (sys: System) => void {
  return (sys) => {
    const hyp = sys.hyp;
    const around = function* <T>(first: number, pages: number, call: Generator<T, number, void>): Generator<T, number, void> {
      const parts = sys.iommu;
      const cmdq = parts?.driver.cmdq;
      const c0 = cmdq?.commandsIssued ?? 0;
      const s0 = cmdq?.syncsIssued ?? 0;
      const tlb0 = parts?.smmu.cachedTranslations() ?? [];
      const walk0 = parts?.smmu.walkCacheEntries() ?? [];
      const r = yield* call;
      // Boot-time donations (the IOMMU pool, the driver's queue and table) are not the workload's.
      if (r !== 0 || parts === undefined || parts.dmaStage2 === undefined) return r;
      const lo = first * 4096;
      const hi = (first + pages) * 4096;
      const tlb1 = new Set(parts.smmu.cachedTranslations().map((e) => e.seq));
      const walk1 = new Set(parts.smmu.walkCacheEntries().map((e) => e.seq));
      const goneTlb = tlb0.filter((e) => !tlb1.has(e.seq));
      const goneWalk = walk0.filter((e) => !walk1.has(e.seq));
      tally.donations++;
      tally.pages += pages;
      tally.commands += (parts.driver.cmdq?.commandsIssued ?? 0) - c0;
      tally.syncs += (parts.driver.cmdq?.syncsIssued ?? 0) - s0;
      tally.tlb += goneTlb.length;
      tally.walk += goneWalk.length;
      tally.collateral += [...goneTlb, ...goneWalk].filter((e) => e.ipa + e.size <= lo || e.ipa >= hi).length;
      return r;
    };
    const donateHyp = hyp.hostDonateHyp.bind(hyp);
    const donateGuest = hyp.hostDonateGuest.bind(hyp);
    hyp.hostDonateHyp = (pfn, nrPages) => around(pfn, nrPages, donateHyp(pfn, nrPages));
    hyp.hostDonateGuest = (pfn, gfn, vm) => around(pfn, 1, donateGuest(pfn, gfn, vm));
  };
}

/**
 * One pass over the workload for both the verdicts and the costs: every check runs, and every
 * donation is measured in the same runs (so ops/s is the checked rate).
 */
export function exploreWithCosts(variant: DesignVariant, machine: MachineConfig, ops: readonly WorkloadRun[]): { exploration: Exploration; costs: Costs } {
  const tally: DonationTally = { donations: 0, pages: 0, commands: 0, syncs: 0, tlb: 0, walk: 0, collateral: 0 };
  const exploration = explore(variant, machine, ops, measureDonations(tally));
  const seconds = exploration.millis / 1000;
  const idmapTablePages = runOperations(machine, [], { driver: variant.knobs }).system.iommu?.idmap?.pgtable.heldTables().length ?? 0;
  const per = (n: number) => (tally.donations === 0 ? 0 : n / tally.donations);
  const costs: Costs = {
    donations: tally.donations,
    donatedPages: tally.pages,
    commandsPerPage: tally.pages === 0 ? 0 : tally.commands / tally.pages,
    commandsPerDonation: per(tally.commands),
    syncsPerDonation: per(tally.syncs),
    tlbRemovedPerDonation: per(tally.tlb),
    walkRemovedPerDonation: per(tally.walk),
    collateralPerDonation: per(tally.collateral),
    idmapTablePages,
    checkedOpsPerSecond: seconds === 0 ? 0 : exploration.operations / seconds,
  };
  return { exploration, costs };
}

/** Costs of a variant on the workload. */
export function measureCosts(variant: DesignVariant, machine: MachineConfig, ops: readonly WorkloadRun[]): Costs {
  return exploreWithCosts(variant, machine, ops).costs;
}

export interface VerdictCell {
  readonly check: CheckName;
  readonly declared: 'holds' | 'breaks' | undefined;
  readonly observed: 'holds' | 'breaks';
  readonly outcome: CheckOutcome;
}

export interface MatrixRow {
  readonly variant: string;
  readonly hardware: string;
  readonly ats: boolean;
  readonly ril: boolean;
  readonly cells: readonly VerdictCell[];
  readonly exploration: Exploration;
}

/**
 * Hand-written counterexamples for declared "breaks" verdicts that need a hardware step the
 * workload rarely lines up (as the zoo's triggers): run only when the workload did not break the
 * check, and reported as found by 'trigger'. Variant → check → steps (and schedule).
 */
export const VERDICT_TRIGGERS: Readonly<Record<string, Partial<Record<CheckName, WorkloadRun>>>> = {
  // The posted design's findings are known findings, whose steps the workload leaves out: their
  // triggers (properties/known-findings.ts) stand in for them.
  'v6-posted': {
    dma_isolation: { ops: [...knownFindingTrigger('v4-hook-placement-misses-guest-donation'), { kind: 'dma', sid: 1, addr: 0x4000_5000, access: 'read' }], schedule: [] },
    no_host_triggered_panic: { ops: knownFindingTrigger('host-register-access-panics'), schedule: [] },
    smmu_config_coherent: { ops: knownFindingTrigger('posted-ste-writer-not-hitless'), schedule: [] },
    smmu_write_isolation: { ops: knownFindingTrigger('irq-cfg-msi-write-to-protected'), schedule: [] },
  },
  // A forged Translated transaction to a page the hypervisor took: a known finding, whose step
  // the workload leaves out (conformance/corpus/findings/hidden-ats-leaves-atschk-clear.json).
  'v6-atc-inv': { dma_isolation: { ops: knownFindingTrigger('forged-translated-dma'), schedule: [] } },
  'v6-hide-ats-host-atschk': { dma_isolation: { ops: knownFindingTrigger('forged-translated-dma'), schedule: [] } },
  // The workload has no host DMA domains (GenerationOptions.hostDomains): a stale combined entry.
  'no-tlbi-nh-after-s2': { dma_isolation: { ops: COMBINED_ENTRY_TRIGGER, schedule: [] } },
  // The DMA caches the 2 MiB block; the donation splits it without break-before-make, and while
  // its TLBI is still queued a speculative walk caches the level-3 entry of P+2 from the new
  // table: the DMA to P+2 then hits both entries, a TLB conflict.
  'block-idmap-with-split': {
    dma_availability: {
      ops: [
        { kind: 'dma', sid: 1, addr: 0x4000_1000, access: 'read' },
        { kind: 'host_donate_hyp', pfn: 0x40001, nrPages: 1 },
      ],
      schedule: [
        { kind: 'smmu_speculative_fill', smmu: 0, sid: 1, addr: 0x4000_2000 },
        { kind: 'dma', sid: 1, addr: 0x4000_2000, access: 'read' },
      ],
    },
  },
};

function triggerOutcome(variant: DesignVariant, machine: MachineConfig, check: CheckName): CheckOutcome | undefined {
  const trigger = VERDICT_TRIGGERS[variant.name]?.[check];
  if (trigger === undefined) return undefined;
  const r = runOperations(machine, trigger.ops, { driver: variant.knobs, checks: new Set([check]), schedule: trigger.schedule });
  if (r.failure === undefined) return undefined;
  return { foundBy: 'trigger', violatedRuns: 0, firstRun: undefined, counterexample: trigger.ops.slice(0, r.failure.index + 1), message: r.failure.violations[0]?.message };
}

/**
 * A witness that `variant` breaks `check` on `machine`, for a campaign whose small budget missed a
 * declared break (the report's fallback): the VERDICT_TRIGGERS entry, else the first run of the
 * fixed workload of `npm run verdicts` that breaks the check (only that check enabled). The same
 * evidence the verdict table in README rests on; undefined when neither breaks it. `workloadOnly`:
 * evidence beyond the known findings (whose steps the workload leaves out, and which the
 * triggers of the posted design are).
 */
export function declaredBreakWitness(variant: DesignVariant, machine: MachineConfig, check: CheckName, ops: readonly WorkloadRun[], options: { readonly workloadOnly?: boolean } = {}): CheckOutcome | undefined {
  const byTrigger = options.workloadOnly === true ? undefined : triggerOutcome(variant, machine, check);
  if (byTrigger !== undefined) return byTrigger;
  for (const [index, run] of ops.entries()) {
    // Beyond the known findings: their WARN sites end a run silently, as their steps are left out.
    const r = runOperations(machine, run.ops, { driver: variant.knobs, checks: new Set([check]), schedule: run.schedule, ...(options.workloadOnly === true ? { knownPanicSites: knownPanicSites() } : {}) });
    const v = r.failure?.violations.find((x) => x.check === check);
    if (r.failure !== undefined && v !== undefined) return { foundBy: 'workload', violatedRuns: 1, firstRun: index, counterexample: run.ops.slice(0, r.failure.index + 1), message: v.message };
  }
  return undefined;
}

/** One variant on one machine: declared vs observed per check. */
export function verdictRow(variant: DesignVariant, hardware: { name: string; machine: MachineConfig }, ops: readonly WorkloadRun[], exploration: Exploration = explore(variant, hardware.machine, ops)): MatrixRow {
  const hw = verdictHardware(hardware.machine);
  const declared = declaredVerdicts(variant, hw);
  const cells: VerdictCell[] = [];
  for (const [check, explored] of exploration.checks) {
    const expected = declared.find((d) => d.check === check)?.verdict;
    const outcome = explored.violatedRuns === 0 && expected === 'breaks' ? (triggerOutcome(variant, hardware.machine, check) ?? explored) : explored;
    cells.push({ check, declared: expected, observed: outcome.foundBy === undefined ? 'holds' : 'breaks', outcome });
  }
  return { variant: variant.name, hardware: hardware.name, ats: hw.ats, ril: hw.ril, cells, exploration };
}

export function fullMatrix(budget: MatrixBudget = DEFAULT_BUDGET, variants: readonly DesignVariant[] = DESIGN_VARIANTS): MatrixRow[] {
  const rows: MatrixRow[] = [];
  for (const hw of representativeHardware()) {
    const ops = workload(hw.machine, budget);
    for (const v of variants) rows.push(verdictRow(v, hw, ops));
  }
  return rows;
}
