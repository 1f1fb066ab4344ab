/**
 * A campaign: generated operation sequences run with every check, one per run number, for a
 * number of runs or a time budget (ARCHITECTURE §8). Run r of a campaign with base seed b always
 * generates the same sequence (seed `runSeed(b, r)`), whichever shard runs it: shard i of n
 * (1-based) takes the run numbers ≡ i−1 (mod n), so a CI matrix splits a campaign without
 * coordination and the merged result does not depend on how it was split.
 *
 * The first time a check fires, the failing sequence is shrunk by fast-check (same seed, so
 * fast-check regenerates the very same sequence and then shrinks it) and then made 1-minimal by
 * minimizeOperations. Later runs that fire the same check are only counted.
 */
import fc from 'fast-check';
import { type ModelState, OPERATION_KINDS, guestState, initialState } from '../model/index.js';
import { operationsArbitrary, scheduleArbitrary } from '../properties/arbitraries.js';
import { type InjectedBug } from '../properties/bugs/ownership-bugs.js';
import { findInjectedBug } from '../properties/bugs/index.js';
import { type CheckName } from '../properties/checks.js';
import { type DriverOptions } from '../impl/hyp/smmu-driver/driver.js';
import { type MachineConfig, toModelConfig } from '../properties/machine.js';
import { minimizeOperations } from '../properties/minimize.js';
import { type RunOptions, type RunResult, type ScheduledHardware, runOperations } from '../properties/runner.js';
import { type CampaignResult, type Counterexample, RESULT_FORMAT, sortKeys } from './campaign-result.js';
import { findDesign } from './designs.js';
import { type StepOp, allRecords, rederiveModel } from './trace.js';
import { checkNames, compareRetNames, retName } from './names.js';
import { runSeed } from './seeds.js';
import { CoverageTracker, forEachTransition } from './coverage.js';

export interface CampaignSpec {
  readonly design: string;
  /** A name for the machine ("default", "small", "custom"). */
  readonly machineName: string;
  readonly machine: MachineConfig;
  readonly maxOps: number;
  readonly baseSeed: number;
  /** 1-based. */
  readonly shard: { readonly index: number; readonly count: number };
  /** Total runs across all shards; this shard runs its share of them. */
  readonly runs?: number;
  readonly timeSeconds?: number;
  /** Name of a test-only bug from properties/bugs/ (ALL_BUGS) to inject. */
  readonly bug?: string;
  /**
   * Each run also gets a schedule of hardware actions at the yield points of its steps
   * (`scheduleForRun`), so races inside hypercalls and trapped accesses can be found.
   */
  readonly interleave?: boolean;
  /** Generation includes host DMA-domain steps (nested streams; GenerationOptions.hostDomains). */
  readonly hostDomains?: boolean;
  /**
   * Coverage-guided generation (issue 15 item 3): runs that reached a new coverage key
   * (conformance/coverage.ts) join a corpus, and about half of the later runs are a corpus run's
   * prefix (with one step dropped at times) extended by the run's own generated steps. Deterministic
   * for a given shard layout; the corpus is per shard, so shards do not merge to the unsharded
   * guided campaign.
   */
  readonly guided?: boolean;
  /**
   * WARN sites whose panic is a known finding (properties/known-findings.ts knownPanicSites):
   * a run that reaches one ends there silently (RunOptions.knownPanicSites), and is counted in
   * `panics` and in the progress' `knownPanics` (`verify --skip-known-findings`).
   */
  readonly knownPanicSites?: ReadonlySet<string>;
  /**
   * Driver knobs laid over the design's (an `undefined` value turns a knob back to the posted
   * behaviour): the report's known-finding searches run a variant without the knobs that remove
   * the finding. The result JSON names only the design, so whoever sets it must say so.
   */
  readonly driver?: DriverOptions;
}

export interface CampaignProgress {
  readonly runs: number;
  readonly operations: number;
  readonly failedRuns: number;
  /** Runs that ended at a known panic site (only with `knownPanicSites`). */
  readonly knownPanics: number;
  readonly counterexamples: number;
  readonly elapsedMs: number;
  /** Distinct coverage keys reached so far (conformance/coverage.ts). */
  readonly coverageKeys?: number;
  /**
   * The keys' hashes first reached since the previous progress report: `verify --workers` unions
   * them across its threads, whose own counts overlap.
   */
  readonly newKeyHashes?: readonly string[];
}

/** What a found counterexample looks like before it is written anywhere. */
export interface FoundCounterexample {
  readonly check: string;
  readonly run: number;
  readonly seed: number;
  readonly path: string;
  readonly originalLength: number;
  readonly operations: readonly StepOp[];
  /** With `interleave`: the schedule, made 1-minimal after the operations were. */
  readonly schedule?: readonly ScheduledHardware[];
}

export interface CampaignHooks {
  /** Which checks get a shrunk counterexample: all (default), none, or a list. */
  readonly shrink?: 'all' | 'none' | readonly string[];
  readonly onProgress?: (p: CampaignProgress) => void;
  readonly progressEveryMs?: number;
  /** Polled between runs; true stops the campaign cleanly (SIGINT). */
  readonly shouldStop?: () => boolean;
  /** Called as soon as a counterexample is shrunk; returns where it was written, if anywhere. */
  readonly onCounterexample?: (c: FoundCounterexample) => string | null;
  /** Milliseconds; injectable so tests can run a "timed" campaign without waiting. */
  readonly clock?: () => number;
  /**
   * Steps kept in every generated sequence (default: all). The report leaves out the steps that
   * reach a known finding, so a detection on an SMMU machine is not that finding's; whoever sets
   * it must say so, since the result JSON does not record it.
   */
  readonly keep?: (step: StepOp) => boolean;
}

export function findBug(name: string): InjectedBug | undefined {
  return findInjectedBug(name);
}

/** The run options of a campaign's runs (its design, plus its test-only bug and its known panic sites). */
export function campaignRunOptions(spec: CampaignSpec, base: RunOptions): RunOptions {
  const design = findDesign(spec.design);
  if (design === undefined) throw new Error(`unknown design ${spec.design}`);
  const bug = spec.bug === undefined ? undefined : findBug(spec.bug);
  if (spec.bug !== undefined && bug === undefined) throw new Error(`unknown bug ${spec.bug}`);
  const options = design.runOptions({
    ...base,
    ...(bug === undefined ? {} : { inject: bug.inject, ...(bug.afterBoot === undefined ? {} : { afterBoot: bug.afterBoot }) }),
    ...(spec.knownPanicSites === undefined ? {} : { knownPanicSites: spec.knownPanicSites }),
  });
  return spec.driver === undefined ? options : { ...options, driver: { ...options.driver, ...spec.driver } };
}

/**
 * fast-check biases generation by run index (small values early). A campaign run r replays
 * fast-check's run `r mod 100` of its own seed, so campaigns see the same mix of biases as a
 * 100-run property test, and the (seed, path) pair reproduces it with `fc.assert`.
 */
export function biasIndex(run: number): number {
  return run % 100;
}

/** The sequence fast-check generates for `seed` at `path` (a run index): the one shrinking starts from. */
export function generateRun(arb: fc.Arbitrary<StepOp[]>, seed: number, path: string): StepOp[] {
  let value: StepOp[] | undefined;
  fc.check(
    fc.property(arb, (ops) => {
      value = ops;
    }),
    { seed, path, numRuns: 1 },
  );
  if (value === undefined) throw new Error('fast-check generated nothing');
  return value;
}

/** Does a run of `ops` report `check` at some step? (Checking `check` alone is the same question, faster.) */
export function firesCheck(machine: MachineConfig, ops: readonly StepOp[], check: string, options: RunOptions): boolean {
  const r = runOperations(machine, ops, { ...options, checks: new Set([check as CheckName]), continueAfterViolation: false });
  return allRecords(r).some((s) => s.violations.some((v) => v.check === check));
}

/** fast-check's shrink from the same seed, then the flat 1-minimal pass. */
export function shrinkCounterexample(machine: MachineConfig, arb: fc.Arbitrary<StepOp[]>, seed: number, path: string, check: string, options: RunOptions): { operations: StepOp[]; path: string; originalLength: number } | undefined {
  const out = fc.check(
    fc.property(arb, (ops) => !firesCheck(machine, ops, check, options)),
    { seed, path, numRuns: 1 },
  );
  if (!out.failed || out.counterexample === null) return undefined;
  const shrunk = out.counterexample[0];
  const operations = minimizeOperations(shrunk, (candidate) => firesCheck(machine, candidate, check, options));
  return { operations, path: out.counterexamplePath ?? path, originalLength: generateRun(arb, seed, path).length };
}

/**
 * The schedule of the run with fast-check seed `seed` in an interleaving campaign: a function of
 * the seed, and kept fixed while fast-check shrinks the operations.
 */
export function scheduleForRun(machine: MachineConfig, seed: number): ScheduledHardware[] {
  return fc.sample(scheduleArbitrary(machine), { seed, numRuns: 1 })[0] ?? [];
}

/** The schedule made 1-minimal for a shrunk counterexample (what is left still fires `check`). */
export function minimizeSchedule(machine: MachineConfig, ops: readonly StepOp[], schedule: readonly ScheduledHardware[], check: string, options: RunOptions): ScheduledHardware[] {
  return minimizeOperations(schedule, (candidate) => firesCheck(machine, ops, check, { ...options, schedule: candidate }));
}

type Stats = Pick<CampaignResult, 'kinds' | 'returns' | 'transitions'>;

function guestLeafStates(s: ModelState, handle: number): Map<number, string> {
  const vm = s.vms.get(handle);
  const out = new Map<number, string>();
  if (vm === undefined) return out;
  for (const gfn of vm.leaves.keys()) out.set(gfn, guestState(vm, gfn));
  return out;
}

function countMapTransitions<V extends string>(a: ReadonlyMap<number, V>, b: ReadonlyMap<number, V>, absent: string, into: Record<string, number>): void {
  forEachTransition(a, b, absent, (from, to) => {
    into[`${from}>${to}`] = (into[`${from}>${to}`] ?? 0) + 1;
  });
}

/** Per-page state changes of one step, per component (guest: per stage-2 leaf). */
export function countTransitions(before: ModelState, after: ModelState, into: Stats['transitions']): void {
  if (before === after) return;
  countMapTransitions(before.host, after.host, 'OWNED', into.host);
  countMapTransitions(before.hyp, after.hyp, 'NOPAGE', into.hyp);
  if (before.vms === after.vms) return;
  for (const handle of new Set([...before.vms.keys(), ...after.vms.keys()])) {
    if (before.vms.get(handle) === after.vms.get(handle)) continue;
    countMapTransitions(guestLeafStates(before, handle), guestLeafStates(after, handle), 'NOPAGE', into.guest);
  }
}

/**
 * Model states are re-derived from the operations (the runner does not hand them out); calls the
 * hypervisor makes on its own (an SMMU driver) are therefore not in the transition counts.
 */
function record(stats: Stats, machine: MachineConfig, result: RunResult): void {
  const initial = initialState(toModelConfig(machine));
  const model = rederiveModel(initial, result.steps.map((s) => s.op));
  let before = initial;
  for (const [i, step] of result.steps.entries()) {
    const kind = step.op.kind;
    stats.kinds[kind] = (stats.kinds[kind] ?? 0) + 1;
    const byRet = (stats.returns[kind] ??= {});
    const name = retName(kind, step.modelRet);
    byRet[name] = (byRet[name] ?? 0) + 1;
    const after = model[i] ?? before;
    countTransitions(before, after, stats.transitions);
    before = after;
  }
}

/** Runs kept for mutation by a guided campaign (the first ones to reach a new coverage key). */
const GUIDED_CORPUS_MAX = 512;

/**
 * A guided run: a prefix of `parent` (cut where the seed says), with one of its steps dropped
 * when the seed says so, then the run's own generated steps, at most `maxOps` in all.
 */
export function mutateRun(parent: readonly StepOp[], generated: readonly StepOp[], seed: number, maxOps: number): StepOp[] {
  // Bit 0 (corpus run or not) is the caller's; bits 8..15 the cut, 16..17
  // whether to drop a step (1 in 4), 18..25 which.
  const cut = ((seed >>> 8) & 0xff) % (parent.length + 1);
  const prefix = parent.slice(0, cut);
  if (((seed >>> 16) & 3) === 0 && prefix.length > 1) prefix.splice(((seed >>> 18) & 0xff) % prefix.length, 1);
  return [...prefix, ...generated].slice(0, maxOps);
}

/**
 * A campaign's runs, one after another (issue 15 item 3): run r is what fast-check generates for
 * the run's seed at its bias path, or — guided, for about half of the runs once some run reached a
 * new coverage key — a kept run's prefix extended by it (`mutateRun`). The campaign and the zoo's
 * guided comparison (properties/zoo.ts) both generate through it.
 */
export class RunGenerator {
  private readonly corpus: StepOp[][] = [];

  constructor(
    private readonly arb: fc.Arbitrary<StepOp[]>,
    private readonly baseSeed: number,
    private readonly maxOps: number,
    private readonly guided: boolean,
  ) {}

  /** The seed of run `run` (its schedule is drawn from it too). */
  seed(run: number): number {
    return runSeed(this.baseSeed, run);
  }

  /** Run `run`'s steps; `mutated`: extended from a kept run (fast-check cannot shrink it from its seed). */
  ops(run: number): { readonly ops: StepOp[]; readonly mutated: boolean } {
    const seed = this.seed(run);
    const generated = generateRun(this.arb, seed, String(biasIndex(run)));
    const parent = this.guided && this.corpus.length > 0 && seed % 2 === 0 ? this.corpus[runSeed(seed, 1) % this.corpus.length] : undefined;
    return parent === undefined ? { ops: generated, mutated: false } : { ops: mutateRun(parent, generated, seed, this.maxOps), mutated: true };
  }

  /** After a run: kept for later runs to extend when it reached `newKeys` new coverage keys. */
  ran(ops: StepOp[], newKeys: number): void {
    if (newKeys > 0 && this.guided && this.corpus.length < GUIDED_CORPUS_MAX) this.corpus.push(ops);
  }
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Runs a campaign (or one shard of it). Async only so that SIGINT and progress get a turn. */
export async function runCampaign(spec: CampaignSpec, hooks: CampaignHooks = {}): Promise<CampaignResult> {
  if (spec.runs === undefined && spec.timeSeconds === undefined) throw new Error('a campaign needs a number of runs or a time budget');
  const clock = hooks.clock ?? (() => performance.now());
  const start = clock();
  const deadline = spec.timeSeconds === undefined ? undefined : start + spec.timeSeconds * 1000;
  const coverage = new CoverageTracker();
  const options = campaignRunOptions(spec, { continueAfterViolation: true, steps: coverage, reuseBoot: true });
  const keep = hooks.keep;
  const generated = operationsArbitrary(spec.machine, spec.maxOps, spec.hostDomains === true ? { hostDomains: true } : {});
  // Filtering after generation keeps fast-check's shrinking (map shrinks through its source).
  const arb = keep === undefined ? generated : generated.map((ops) => ops.filter(keep));
  const runsOf = new RunGenerator(arb, spec.baseSeed, spec.maxOps, spec.guided === true);
  const shrinkSet = hooks.shrink ?? 'all';
  const wantsShrink = (check: string) => (shrinkSet === 'all' ? true : shrinkSet === 'none' ? false : shrinkSet.includes(check));
  const stats: Stats = { kinds: {}, returns: {}, transitions: { host: {}, hyp: {}, guest: {} } };
  const checks: CampaignResult['checks'] = {};
  for (const c of checkNames()) checks[c] = { runs: 0, first: null };
  const counterexamples: Counterexample[] = [];
  const shrunkKeys = new Set<string>();
  let runs = 0, operations = 0, failedRuns = 0, panics = 0, knownPanics = 0, shrinkMs = 0;
  let stoppedBy: CampaignResult['stoppedBy'] = 'runs';
  let lastYield = start;
  let lastProgress = start;
  const progressEvery = hooks.progressEveryMs ?? 250;
  let hashesReported = 0;
  const progress = () => {
    if (hooks.onProgress === undefined) return;
    // The set keeps insertion order: what came after the last report is the tail.
    const newKeyHashes = coverage.hashes.size === hashesReported ? [] : [...coverage.hashes].slice(hashesReported);
    hashesReported = coverage.hashes.size;
    hooks.onProgress({ runs, operations, failedRuns, knownPanics, counterexamples: counterexamples.length, elapsedMs: clock() - start, coverageKeys: coverage.hashes.size, newKeyHashes });
  };
  for (let k = 0; ; k++) {
    const run = spec.shard.index - 1 + k * spec.shard.count;
    if (spec.runs !== undefined && run >= spec.runs) {
      stoppedBy = 'runs';
      break;
    }
    if (deadline !== undefined && clock() >= deadline) {
      stoppedBy = 'time';
      break;
    }
    if (hooks.shouldStop?.() === true) {
      stoppedBy = 'interrupt';
      break;
    }
    const seed = runsOf.seed(run);
    const path = String(biasIndex(run));
    const { ops, mutated } = runsOf.ops(run);
    const schedule = spec.interleave === true ? scheduleForRun(spec.machine, seed) : undefined;
    const runOptions = schedule === undefined ? options : { ...options, schedule };
    const result = runOperations(spec.machine, ops, runOptions);
    const opsBefore = operations;
    runs++;
    operations += result.steps.length;
    runsOf.ran(ops, coverage.takeNew());
    record(stats, spec.machine, result);
    const panicked = result.steps.find((s) => s.systemRet === 'panic');
    if (panicked !== undefined) {
      panics++;
      // Silenced by RunOptions.knownPanicSites: the run ended at a known finding's WARN site.
      if (spec.knownPanicSites !== undefined && !panicked.violations.some((v) => v.check === 'no_host_triggered_panic')) knownPanics++;
    }
    const firedHere = new Map<string, number>();
    for (const s of allRecords(result)) for (const v of s.violations) if (!firedHere.has(v.check)) firedHere.set(v.check, Math.max(0, s.index));
    if (firedHere.size > 0) failedRuns++;
    for (const [check, step] of firedHere) {
      const c = (checks[check] ??= { runs: 0, first: null });
      c.runs++;
      c.first ??= { run, seed, step, runsToDetection: runs, opsToDetection: opsBefore + step + 1 };
      // Every distinct failure is shrunk and kept: one per check × the kind of the step it fired at.
      const stepKind = (result.steps.find((st) => st.index === step)?.op.kind ?? 'boot') as string;
      const key = `${check}\u0000${stepKind}`;
      if (shrunkKeys.has(key)) continue;
      shrunkKeys.add(key);
      if (!wantsShrink(check)) continue;
      const t0 = clock();
      // A mutated run is not fast-check's: it is minimised from its own steps.
      const shrunk = !mutated ? shrinkCounterexample(spec.machine, arb, seed, path, check, runOptions) : { operations: minimizeOperations(ops, (c) => firesCheck(spec.machine, c, check, runOptions)), path: 'guided', originalLength: ops.length };
      const minimalSchedule = shrunk === undefined || schedule === undefined ? undefined : minimizeSchedule(spec.machine, shrunk.operations, schedule, check, options);
      shrinkMs += clock() - t0;
      if (shrunk === undefined) continue; // flaky only if the system is nondeterministic: then say nothing
      const found: FoundCounterexample = { check, run, seed, path: shrunk.path, originalLength: shrunk.originalLength, operations: shrunk.operations, ...(minimalSchedule === undefined || minimalSchedule.length === 0 ? {} : { schedule: minimalSchedule }) };
      const file = hooks.onCounterexample?.(found) ?? null;
      const { schedule: foundSchedule, ...rest } = found;
      counterexamples.push({ ...rest, stepKind, operations: shrunk.operations as unknown as Record<string, unknown>[], ...(foundSchedule === undefined ? {} : { schedule: [...foundSchedule] as unknown as Record<string, unknown>[] }), file });
    }
    const now = clock();
    if (now - lastProgress >= progressEvery) {
      lastProgress = now;
      progress();
    }
    if (now - lastYield >= 50) {
      await yieldToEventLoop();
      lastYield = clock();
    }
  }
  progress();
  const wallMs = clock() - start;
  const kinds: Record<string, number> = {};
  for (const kind of OPERATION_KINDS) kinds[kind] = stats.kinds[kind] ?? 0;
  for (const [kind, n] of Object.entries(stats.kinds)) kinds[kind] = n;
  return {
    format: RESULT_FORMAT,
    design: spec.design,
    bug: spec.bug ?? null,
    machine: spec.machineName,
    maxOps: spec.maxOps,
    baseSeed: spec.baseSeed,
    shard: { index: spec.shard.index, count: spec.shard.count },
    ...(spec.interleave === true ? { interleave: true } : {}),
    ...(spec.hostDomains === true ? { hostDomains: true } : {}),
    budget: { runs: spec.runs ?? null, timeSeconds: spec.timeSeconds ?? null },
    stoppedBy,
    runs,
    operations,
    failedRuns,
    panics,
    kinds: sortKeys(kinds),
    returns: sortKeys(Object.fromEntries(Object.entries(stats.returns).map(([k, v]) => [k, sortKeys(v, compareRetNames)]))),
    transitions: { host: sortKeys(stats.transitions.host), hyp: sortKeys(stats.transitions.hyp), guest: sortKeys(stats.transitions.guest) },
    checks,
    counterexamples,
    ...(spec.guided === true ? { guided: true } : {}),
    coverage: { keys: coverage.hashes.size, hashes: [...coverage.hashes].sort() },
    timings: { wallMs: Math.round(wallMs), shrinkMs: Math.round(shrinkMs), opsPerSecond: wallMs > 0 ? Math.round((operations / wallMs) * 1000) : 0 },
  };
}
