/**
 * The checked runner: executes an operation list on the model and on a freshly booted system
 * together, and after every operation runs the checks (refinement of return value and state,
 * "an error changes nothing", host CPU isolation, well-formed tables, pool accounting).
 */
import { type ModelState, type Operation, apply, dmaMayAccess, dmaMustReach, errnoName, initialState } from '../model/index.js';
import { bootIommu, createSystem, type System } from '../impl/system.js';
import { HypervisorPanic } from '../impl/hyp/hypervisor.js';
import { abstractState, diffStates } from './abstraction.js';
import { type CheckName, type TablesView, type Violation, checkHostCpuIsolation, checkPools, checkWellFormed, concreteFingerprint, viewGuestTables, viewTables } from './checks.js';
import { decodeOperation } from './codecs.js';
import { type HardwareOperation, IdentityStreams, type ScheduledHardware, checkDmaAvailability, checkDmaIsolation, checkDmaMappings, checkDmaOutcome, checkLastDma, checkSmmuConfigCoherent, checkSmmuWrites, executeHardware, isHardwareOperation, protectedPages } from './dma.js';
import { IncrementalChecks } from './incremental.js';
import { bootStatePasses, reusableBoot } from './boot-cache.js';
import { StepLog } from './step-log.js';
import { decodeCommand, describeCommand } from '../impl/arch/smmu/commands.js';
import { u64 } from '../impl/arch/u64.js';
import { DataLabels } from './confidentiality.js';
import { executeOnSystem } from './execute.js';
import { SteUpdateMonitor } from './protocol/ste-update.js';
import { type MachineConfig, toModelConfig, toSystemConfig, withDriverOptions } from './machine.js';
import { type DriverOptions } from '../impl/hyp/smmu-driver/driver.js';

/** One step of a run: an ownership operation (the model's) or a hardware / host-SMMU action. */
export type Step = Operation | HardwareOperation;

export interface StepRecord {
  readonly index: number;
  readonly op: Step;
  readonly modelRet: number;
  readonly systemRet: number | 'panic';
  readonly violations: readonly Violation[];
  /** The WARN/BUG site (HypervisorPanic.site) when the step panicked. */
  readonly panicSite?: string;
  /** The commands the hypervisor wrote into its SMMU queue during the step (RunOptions.traceCommands), decoded. */
  readonly commands?: readonly string[];
  /** The scheduled hardware actions that ran at the step's yield points (RunOptions.schedule), in order. */
  readonly interleaved?: readonly { readonly at: string; readonly hw: ScheduledHardware; readonly detail: string }[];
}

/**
 * Called around every step: `before` with the model and system the step starts from, `after`
 * with its record and the states it left (a panic's record included). Traces take their per-step
 * states here (conformance/trace.ts); a run without one pays nothing.
 */
export interface StepObserver {
  before?(index: number, system: System, model: ModelState): void;
  after?(record: StepRecord, system: System, model: ModelState): void;
}

/**
 * Test-only fault injection (properties/sweep.ts, impl/fault-injection.ts). `firedDuring` says
 * whether the injected fault fired during the step just run; if it did and the step returned an
 * errno other than the model's, that errno is taken as the step's result and the model state is
 * left as it was (an error must change nothing; the sweep compares the concrete state itself,
 * so `error_changes_nothing` is not run on that step).
 */
export interface FaultObserver extends StepObserver {
  firedDuring(index: number): boolean;
}

export interface RunResult {
  readonly steps: StepRecord[];
  /** The first step with a violation, if any (the run stops there). */
  readonly failure: StepRecord | undefined;
  readonly model: ModelState;
  readonly system: System;
}

export interface RunOptions {
  /** Replaces components of the booted system (test-only bug injection, properties/bugs/). */
  readonly inject?: (sys: System) => void;
  /**
   * Replaces components that only exist once the IOMMU is booted (the shadow idmap, the driver's
   * queue, the host stage-2 idmap hook): called after bootIommu, before the first operation.
   */
  readonly afterBoot?: (sys: System) => void;
  /**
   * Driver knobs of a design variant (conformance/designs.ts, impl/hyp/design.ts), laid over the
   * machine's `smmu.driver` before the system is composed; the machine JSON itself is unchanged.
   */
  readonly driver?: DriverOptions;
  /** Which checks to run; all by default. */
  readonly checks?: ReadonlySet<CheckName>;
  /** Keep going after a violation (for traces); default stops at the first. */
  readonly continueAfterViolation?: boolean;
  /**
   * WARN/BUG sites (HypervisorPanic.site) whose panic is a known finding: a run that reaches one
   * ends there without a violation (`verify --skip-known-findings`), as a dead hypervisor would.
   */
  readonly knownPanicSites?: ReadonlySet<string>;
  /**
   * Hardware actions interleaved with hypervisor code (ARCHITECTURE §4): at each yield point of a
   * hypercall or of a trapped host access to the emulated SMMU, the next scheduled action runs
   * (then the SMMU consumes what is queued). A DMA that completes inside a step may reach what the
   * model allows before or after it; one to a page the host owns before and after must not fault.
   */
  readonly schedule?: readonly ScheduledHardware[];
  /** Fault injection observer (the fail-the-k-th sweep); absent in every other run. */
  readonly faults?: FaultObserver;
  /** Record the commands the hypervisor issues in each step (StepRecord.commands): traces only. */
  readonly traceCommands?: boolean;
  /** Told of every step with the states around it (traces). */
  readonly steps?: StepObserver;
  /**
   * Run every full check on the first step, every this many steps and on the last step; in between, a check runs
   * only when the step's write log says it could fail (properties/incremental.ts). 1: full checks
   * after every step. Fault sweeps always check in full, and runs that continue after a
   * violation (traces, campaigns) check in full from then on.
   */
  readonly fullCheckEvery?: number;
  /**
   * Reuse a booted system of this machine, reset to its boot state (properties/boot-cache.ts),
   * instead of booting again; ignored with `inject` or `afterBoot`. The returned `system` is then
   * reset by the next such run: for callers that are done with it by then (campaigns, searches).
   */
  readonly reuseBoot?: boolean;
}

/** The default period of the full checks between incremental ones (issue 15 item 1). */
export const FULL_CHECK_EVERY = 32;

/** Hardware steps that run hypervisor code (the emulation of a trapped host access). */
const HYPERVISOR_HARDWARE_STEPS: ReadonlySet<string> = new Set<HardwareOperation['kind']>(['host_attach_identity', 'host_mmio_write', 'host_mmio_read', 'host_write_ste', 'host_write_cmd', 'host_domain_attach', 'host_domain_detach', 'host_domain_map', 'host_domain_unmap']);

export type { ScheduledHardware } from './dma.js';

export const ALL_CHECKS: ReadonlySet<CheckName> = new Set<CheckName>([
  'refinement_ret',
  'refinement_state',
  'error_changes_nothing',
  'host_cpu_isolation',
  'well_formed_tables',
  'pool_accounting',
  'confidentiality',
  'dma_isolation',
  'dma_during_hypercall',
  'dma_availability',
  'smmu_config_coherent',
  'smmu_write_isolation',
  'no_host_triggered_panic',
]);

/**
 * Replays on the model the ownership hypercalls the hypervisor made on its own (the SMMU driver
 * donating its MMIO frame, sharing and pinning the host's queue and stream table), comparing
 * their return values.
 */
function applyInternalCalls(system: System, model: ModelState, violations: Violation[]): ModelState {
  for (const call of system.hyp.internalCalls.splice(0)) {
    const decoded = decodeOperation(call.op);
    if (!decoded.ok) {
      violations.push({ check: 'refinement_ret', message: `internal call ${JSON.stringify(call.op)} is not an operation: ${decoded.errors.join('; ')}` });
      continue;
    }
    const r = apply(model, decoded.value);
    if (r.ret !== call.ret) violations.push({ check: 'refinement_ret', message: `internal ${call.op.kind} returned ${errnoName(call.ret)}, model expects ${errnoName(r.ret)}` });
    model = r.state;
  }
  return model;
}

export function bootPair(machine: MachineConfig, inject?: (sys: System) => void, afterBoot?: (sys: System) => void): { model: ModelState; system: System; bootViolations: Violation[] } {
  const system = createSystem(toSystemConfig(machine));
  inject?.(system);
  let model = initialState(toModelConfig(machine));
  const bootViolations: Violation[] = [];
  if (system.iommu !== undefined) {
    let r: number;
    try {
      r = bootIommu(system);
    } catch (e) {
      if (!(e instanceof HypervisorPanic)) throw e;
      // The host is still trusted at boot: a panic there is a defect of the system, not a finding.
      bootViolations.push({ check: 'refinement_ret', message: `the hypervisor panicked at boot: ${e.message}` });
      r = 0;
    }
    if (r !== 0) bootViolations.push({ check: 'refinement_ret', message: `IOMMU boot failed with ${errnoName(r)}` });
    model = applyInternalCalls(system, model, bootViolations);
    // The host driver's reset at boot makes the SMMU write too (a GERROR MSI, say): checked on the
    // boot state. The queues' pins are checked from the first step on (a boot-time defect then
    // shows on a one-step run, as the other protection checks do).
    bootViolations.push(...checkSmmuWrites(system, model, model, { pins: false }));
  }
  afterBoot?.(system);
  return { model, system, bootViolations };
}

/**
 * A panic reached from a step: the untrusted host (or a guest, or a device through the host's
 * configuration) took the hypervisor down — the `no_host_triggered_panic` finding, reported
 * apart from isolation. Known sites (RunOptions.knownPanicSites) end the run silently.
 */
function panicViolations(e: HypervisorPanic, step: Step, options: RunOptions): Violation[] {
  if (options.knownPanicSites?.has(e.site) === true) return [];
  const actor = step.kind.startsWith('guest_') ? 'a guest' : 'the host';
  return [{ check: 'no_host_triggered_panic', message: `${actor} panics the hypervisor with ${step.kind}: ${e.message}` }];
}

/** Streams attached for identity DMA at boot. */
function initialIdentity(system: System): IdentityStreams {
  return new IdentityStreams(system.iommu === undefined ? [] : [...system.iommu.devices.keys()]);
}

/** A scheduled hardware action that ran at a yield point inside a step, and what it did. */
interface InterleavedAction {
  readonly at: string;
  readonly hw: ScheduledHardware;
  readonly outcome: ReturnType<typeof executeHardware>;
  /** Whether the stream was attached for identity DMA when the action ran. */
  readonly identityAttached: boolean;
}

/**
 * While a step runs hypervisor code (a hypercall, or a trapped host access to the emulated
 * SMMU), the next scheduled hardware action runs at each yield point, before the SMMU gets its
 * turn. Returns what ran, and a function that puts the default hardware step back.
 */
function interleaveSchedule(system: System, schedule: readonly ScheduledHardware[], cursor: { next: number }, identity: IdentityStreams): { readonly ran: InterleavedAction[]; readonly restore: () => void } {
  const ran: InterleavedAction[] = [];
  const defaultStep = system.stepHardware;
  system.stepHardware = (point) => {
    const hw = schedule[cursor.next];
    if (hw !== undefined) {
      cursor.next++;
      const identityAttached = identity.has('sid' in hw ? hw.sid : -1);
      ran.push({ at: point.at, hw, outcome: executeHardware(system, hw, identity), identityAttached });
    }
    defaultStep(point);
  };
  return { ran, restore: () => (system.stepHardware = defaultStep) };
}

/**
 * The checks on actions that ran inside a step: a DMA may reach what the model allows before or
 * after the step (dma_during_hypercall), and a page the host owns before and after must not fault
 * in between (dma_availability: a break-before-make window on a table the SMMU walks).
 */
function checkInterleaved(ran: readonly InterleavedAction[], pre: ModelState, post: ModelState, checks: ReadonlySet<CheckName>): Violation[] {
  const out: Violation[] = [];
  for (const { at, hw, outcome, identityAttached } of ran) {
    if (checks.has('dma_during_hypercall') && (hw.kind === 'dma' || hw.kind === 'dma_translated' || hw.kind === 'dma_forged_translated') && outcome.reachedPfn !== undefined) {
      const pfn = outcome.reachedPfn;
      if (!dmaMayAccess(pre, pfn, hw.access) && !dmaMayAccess(post, pfn, hw.access)) {
        out.push({ check: 'dma_during_hypercall', message: `during the hypercall (at ${at}), ${JSON.stringify(hw)} ${outcome.detail}: pfn 0x${pfn.toString(16)} is allowed neither before nor after` });
      }
    }
    if (checks.has('dma_availability') && hw.kind === 'dma' && outcome.ret !== 0 && identityAttached) {
      const pfn = Math.floor(hw.addr / 4096);
      if (dmaMustReach(pre, pfn) && dmaMustReach(post, pfn)) {
        out.push({ check: 'dma_availability', message: `during the hypercall (at ${at}), DMA from identity-attached sid ${hw.sid} to 0x${hw.addr.toString(16)} faulted (${outcome.detail}) although the host owns the page before and after` });
      }
    }
  }
  return out;
}

/** What a step's schedule ran, for traces (absent when nothing ran). */
function interleavedOf(interleaving: { readonly ran: readonly InterleavedAction[] } | undefined): Pick<StepRecord, 'interleaved'> {
  if (interleaving === undefined || interleaving.ran.length === 0) return {};
  return { interleaved: interleaving.ran.map((a) => ({ at: a.at, hw: a.hw, detail: a.outcome.detail })) };
}

/** The SMMU's writes of a step, checked against the model before and after it (drained even when not checked). */
function smmuWriteViolations(system: System, pre: ModelState, post: ModelState, checks: ReadonlySet<CheckName>): Violation[] {
  if (system.iommu === undefined) return [];
  if (!checks.has('smmu_write_isolation')) {
    system.iommu.smmu.writes.drain();
    return [];
  }
  return checkSmmuWrites(system, pre, post);
}

/** The table dump, taken once and only for a check that reads it (within one step: the tables move). */
function lazyTables(system: System): () => TablesView {
  let view: TablesView | undefined;
  return () => (view ??= viewTables(system));
}

/** What the full checks of a state read. */
interface FullCheckInputs {
  readonly system: System;
  readonly model: ModelState;
  readonly checks: ReadonlySet<CheckName>;
  readonly poolPages: number;
  readonly hotPfns: readonly number[];
  readonly identity: IdentityStreams;
  readonly tables: () => TablesView;
}

/** The state checks of a full step (after an ownership operation, or on a reused boot state). */
function fullStateViolations(s: FullCheckInputs): Violation[] {
  const { system, model, checks } = s;
  const out: Violation[] = [];
  if (checks.has('refinement_state')) {
    for (const d of diffStates(model, abstractState(system, model.config, s.tables().guests))) out.push({ check: 'refinement_state', message: d });
  }
  if (checks.has('host_cpu_isolation')) out.push(...checkHostCpuIsolation(system, model));
  if (checks.has('well_formed_tables')) out.push(...checkWellFormed(system, s.tables()));
  if (checks.has('pool_accounting')) out.push(...checkPools(system, s.poolPages, s.tables()));
  if (checks.has('dma_isolation')) out.push(...checkDmaIsolation(system, model));
  if (checks.has('dma_availability')) out.push(...checkDmaAvailability(system, model, s.hotPfns, s.identity));
  return out;
}

/** The checks the incremental predicates serve (properties/incremental.ts): they need the step log. */
const INDEXED_CHECKS: ReadonlySet<CheckName> = new Set<CheckName>(['refinement_state', 'error_changes_nothing', 'host_cpu_isolation', 'well_formed_tables', 'pool_accounting', 'dma_isolation', 'dma_availability']);

export function runOperations(machine: MachineConfig, ops: readonly Step[], options: RunOptions = {}): RunResult {
  const checks = options.checks ?? ALL_CHECKS;
  const configured = withDriverOptions(machine, options.driver);
  const reuse = options.reuseBoot === true && options.inject === undefined && options.afterBoot === undefined;
  const bootKey = JSON.stringify(configured);
  const booted = reuse ? reusableBoot(bootKey, () => bootPair(configured)) : bootPair(configured, options.inject, options.afterBoot);
  let { model } = booted;
  const { system } = booted;
  const identity = initialIdentity(system);
  const steps: StepRecord[] = [];
  let failure: StepRecord | undefined;
  const scheduleCursor = { next: 0 };
  if (booted.bootViolations.length > 0) {
    failure = { index: -1, op: { kind: 'smmu_consume', smmu: 0 }, modelRet: 0, systemRet: 'panic', violations: booted.bootViolations };
    return { steps, failure, model, system };
  }
  const steUpdates = system.iommu !== undefined && checks.has('smmu_config_coherent') ? new SteUpdateMonitor(system.memory, system.iommu.driver) : undefined;
  const hotPfns = machine.memory.flatMap((r) => [r.base / 4096, r.base / 4096 + 1, (r.base + r.size) / 4096 - 1]);
  const labels = checks.has('confidentiality') ? new DataLabels(system.memory) : undefined;
  let issued: string[] = [];
  const cmdq = options.traceCommands === true ? system.iommu?.driver.cmdq : undefined;
  if (cmdq !== undefined) cmdq.observer = (words) => issued.push(describeCommand(decodeCommand([words[0] ?? u64(0, 0), words[1] ?? u64(0, 0)])));
  const commandsOf = (): Pick<StepRecord, 'commands'> => {
    const out = issued;
    issued = [];
    return out.length === 0 ? {} : { commands: out };
  };
  // Incremental checks (issue 15 item 1): off where a run must see every check every step.
  const every = options.fullCheckEvery ?? FULL_CHECK_EVERY;
  // The fault sweep compares states itself; after a violation (runs that continue: campaigns,
  // traces) every step is checked in full, since the incremental checks reason from a clean state.
  const checkInFull = every <= 1 || options.faults !== undefined;
  // With none of the checks that read the indexes selected (a bare run), nothing is logged.
  const indexed = [...checks].some((c) => INDEXED_CHECKS.has(c));
  const log = checkInFull || !indexed ? undefined : new StepLog(system);
  const incremental = log === undefined ? undefined : new IncrementalChecks(system, protectedPages, reuse);
  // The incremental checks reason from a state that passed. A reused boot state is the same every
  // run, so it is checked in full once (per check set) and the first step can be incremental;
  // after a fresh boot, the first step is checked in full.
  const bootPassed =
    incremental !== undefined &&
    reuse &&
    bootStatePasses(bootKey, [...checks].sort().join(','), () => fullStateViolations({ system, model, checks, poolPages: machine.poolPages, hotPfns, identity, tables: lazyTables(system) }).length === 0);
  const isFullStep = (index: number): boolean => incremental === undefined || failure !== undefined || (index === 0 ? !bootPassed : index % every === 0) || index === ops.length - 1;
  /** After a step's checks: the log starts afresh. */
  const endStep = (): void => {
    log?.clear();
  };
  for (let index = 0; index < ops.length; index++) {
    const step = ops[index] as Step;
    options.faults?.before?.(index, system, model);
    options.steps?.before?.(index, system, model);
    if (isHardwareOperation(step)) {
      const violations: Violation[] = [];
      const pre = model;
      // Trapped host accesses run hypervisor code with yield points: the schedule applies there too.
      const interleaving = options.schedule !== undefined && system.iommu !== undefined && HYPERVISOR_HARDWARE_STEPS.has(step.kind) ? interleaveSchedule(system, options.schedule, scheduleCursor, identity) : undefined;
      let outcome: ReturnType<typeof executeHardware>;
      labels?.beginStep(model);
      try {
        outcome = executeHardware(system, step, identity);
      } catch (e) {
        if (!(e instanceof HypervisorPanic)) throw e;
        const record: StepRecord = { index, op: step, modelRet: 0, systemRet: 'panic', violations: checks.has('no_host_triggered_panic') ? panicViolations(e, step, options) : [], panicSite: e.site };
        steps.push(record);
        options.faults?.after?.(record, system, model);
        options.steps?.after?.(record, system, model);
        if (record.violations.length > 0) failure ??= record;
        break;
      } finally {
        interleaving?.restore();
      }
      model = applyInternalCalls(system, model, violations);
      if (interleaving !== undefined) violations.push(...checkInterleaved(interleaving.ran, pre, model, checks));
      const full = isFullStep(index);
      // The indexes follow every step; on a full step the delta is only bookkeeping.
      const stepDelta = incremental !== undefined && log !== undefined ? incremental.delta(log, pre, model) : undefined;
      const delta = full ? undefined : stepDelta;
      const lastDma = step.kind === 'dma' ? { sid: step.sid, addr: step.addr, outcome } : undefined;
      if (checks.has('dma_isolation') && (step.kind === 'dma' || step.kind === 'dma_translated' || step.kind === 'dma_forged_translated')) violations.push(...checkDmaOutcome(model, outcome, step.access));
      if (checks.has('dma_isolation') && (delta === undefined || (incremental as IncrementalChecks).dmaIsolationMayFail(log as StepLog, delta, model))) violations.push(...checkDmaIsolation(system, model));
      if (checks.has('dma_availability')) {
        if (delta === undefined) violations.push(...checkDmaAvailability(system, model, hotPfns, identity, lastDma));
        else if (system.iommu?.dmaStage2 !== undefined) {
          if ((incremental as IncrementalChecks).dmaAvailabilityMayFail(delta, model, hotPfns)) violations.push(...checkDmaMappings(system, model, hotPfns));
          violations.push(...checkLastDma(model, identity, lastDma));
        }
      }
      if (checks.has('smmu_config_coherent')) violations.push(...checkSmmuConfigCoherent(system, steUpdates));
      violations.push(...smmuWriteViolations(system, pre, model, checks));
      if (labels !== undefined) violations.push(...labels.endStep(system, pre, model));
      if (checks.has('refinement_state') && (delta === undefined || (incremental as IncrementalChecks).refinementMayFail(delta, pre, model))) {
        for (const d of diffStates(model, abstractState(system, model.config))) violations.push({ check: 'refinement_state', message: d });
      }
      endStep();
      const record: StepRecord = { index, op: step, modelRet: outcome.ret, systemRet: outcome.ret, violations, ...interleavedOf(interleaving), ...commandsOf() };
      steps.push(record);
      options.faults?.after?.(record, system, model);
      options.steps?.after?.(record, system, model);
      if (violations.length > 0 && failure === undefined) {
        failure = record;
        if (options.continueAfterViolation !== true) break;
      }
      continue;
    }
    const op = step;
    let expected = apply(model, op);
    const interleaving = options.schedule !== undefined && system.iommu !== undefined ? interleaveSchedule(system, options.schedule, scheduleCursor, identity) : undefined;
    // The fingerprint costs a walk of every table: take it only when the model expects an error
    // (if the system then succeeds instead, the return-value check reports it).
    const full = isFullStep(index);
    const wantsFingerprint = checks.has('error_changes_nothing') && expected.ret < 0 && op.kind !== 'host_access';
    const before = wantsFingerprint && full ? concreteFingerprint(system, viewTables(system)) : '';
    const budgetBefore = system.memcache.available;
    const violations: Violation[] = [];
    let systemRet: number | 'panic';
    let panicSite: string | undefined;
    labels?.beginStep(model);
    try {
      systemRet = executeOnSystem(system, op, (point) => system.stepHardware(point));
    } catch (e) {
      if (!(e instanceof HypervisorPanic)) throw e;
      systemRet = 'panic';
      panicSite = e.site;
      if (checks.has('no_host_triggered_panic')) violations.push(...panicViolations(e, op, options));
    }
    interleaving?.restore();
    const pre = model;
    // An injected fault made the step fail: its errno stands, and the abstract state must not move.
    const injected = options.faults?.firedDuring(index) === true && systemRet !== 'panic' && systemRet !== expected.ret;
    if (injected) expected = { state: pre, ret: systemRet as number };
    model = expected.state;
    model = applyInternalCalls(system, model, violations);
    if (interleaving !== undefined) violations.push(...checkInterleaved(interleaving.ran, pre, model, checks));
    if (checks.has('refinement_ret') && systemRet !== 'panic' && systemRet !== expected.ret) {
      violations.push({ check: 'refinement_ret', message: `returned ${typeof systemRet === 'number' ? errnoName(systemRet) : systemRet}, model expects ${errnoName(expected.ret)}` });
    }
    // The error check reads the indexes as they were before the step: before the delta moves them.
    const errorChanged = !full && wantsFingerprint && !injected && systemRet !== 'panic' && incremental !== undefined && log !== undefined && incremental.errorChangedState(log, budgetBefore);
    const stepDelta = systemRet !== 'panic' && incremental !== undefined && log !== undefined ? incremental.delta(log, pre, model) : undefined;
    if (systemRet !== 'panic' && full) {
      const tables = lazyTables(system);
      if (wantsFingerprint && !injected && concreteFingerprint(system, tables()) !== before) {
        violations.push({ check: 'error_changes_nothing', message: `${errnoName(expected.ret)} expected and the system state changed` });
      }
      violations.push(...fullStateViolations({ system, model, checks, poolPages: machine.poolPages, hotPfns, identity, tables }));
      if (checks.has('smmu_config_coherent')) violations.push(...checkSmmuConfigCoherent(system, steUpdates));
    } else if (stepDelta !== undefined && incremental !== undefined && log !== undefined) {
      // Incremental: a check runs (in full) only where the step's changes say it could fail.
      if (errorChanged) violations.push({ check: 'error_changes_nothing', message: `${errnoName(expected.ret)} expected and the system state changed` });
      const delta = stepDelta;
      let view: TablesView | undefined;
      const tables = (): TablesView => (view ??= viewTables(system));
      if (checks.has('refinement_state') && incremental.refinementMayFail(delta, pre, model)) {
        for (const d of diffStates(model, abstractState(system, model.config, viewGuestTables(system)))) violations.push({ check: 'refinement_state', message: d });
      }
      if (checks.has('host_cpu_isolation') && incremental.hostCpuMayFail(log, delta, model)) violations.push(...checkHostCpuIsolation(system, model));
      if (checks.has('well_formed_tables') && incremental.wellFormedMayFail(delta)) violations.push(...checkWellFormed(system, tables()));
      if (checks.has('pool_accounting') && incremental.poolsMayFail(delta, machine.poolPages)) violations.push(...checkPools(system, machine.poolPages, tables()));
      if (checks.has('dma_isolation') && incremental.dmaIsolationMayFail(log, delta, model)) violations.push(...checkDmaIsolation(system, model));
      if (checks.has('dma_availability') && incremental.dmaAvailabilityMayFail(delta, model, hotPfns)) violations.push(...checkDmaMappings(system, model, hotPfns));
      if (checks.has('smmu_config_coherent')) violations.push(...checkSmmuConfigCoherent(system, steUpdates));
    }
    violations.push(...smmuWriteViolations(system, pre, model, checks));
    if (labels !== undefined && systemRet !== 'panic') violations.push(...labels.endStep(system, pre, model));
    endStep();
    const record: StepRecord = { index, op, modelRet: expected.ret, systemRet, violations, ...(panicSite === undefined ? {} : { panicSite }), ...interleavedOf(interleaving), ...commandsOf() };
    steps.push(record);
    options.faults?.after?.(record, system, model);
    options.steps?.after?.(record, system, model);
    if (violations.length > 0 && failure === undefined) {
      failure = record;
      if (options.continueAfterViolation !== true) break;
    }
    if (systemRet === 'panic') break;
  }
  log?.detach();
  labels?.detach();
  steUpdates?.detach();
  if (cmdq !== undefined) cmdq.observer = null;
  return { steps, failure, model, system };
}

export function describeFailure(result: RunResult): string {
  const f = result.failure;
  if (f === undefined) return 'no violation';
  return [`step ${f.index}: ${JSON.stringify(f.op)}`, ...f.violations.map((v) => `  [${v.check}] ${v.message}`)].join('\n');
}
