/**
 * The checked runner: executes an operation list on the model and on a freshly booted system
 * together, and after every operation runs the checks (refinement of return value and state,
 * "an error changes nothing", host CPU isolation, well-formed tables, pool accounting).
 */
import { type ModelState, type Operation, apply, errnoName, initialState } from '../model/index.js';
import { createSystem, type System } from '../impl/system.js';
import { HypervisorPanic } from '../impl/hyp/hypervisor.js';
import { abstractState, diffStates } from './abstraction.js';
import { type CheckName, type Violation, checkHostCpuIsolation, checkPools, checkWellFormed, concreteFingerprint, viewTables } from './checks.js';
import { executeOnSystem } from './execute.js';
import { type MachineConfig, toModelConfig, toSystemConfig } from './machine.js';

export interface StepRecord {
  readonly index: number;
  readonly op: Operation;
  readonly modelRet: number;
  readonly systemRet: number | 'panic';
  readonly violations: readonly Violation[];
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
  /** Which checks to run; all by default. */
  readonly checks?: ReadonlySet<CheckName>;
  /** Keep going after a violation (for traces); default stops at the first. */
  readonly continueAfterViolation?: boolean;
}

export const ALL_CHECKS: ReadonlySet<CheckName> = new Set<CheckName>([
  'refinement_ret',
  'refinement_state',
  'error_changes_nothing',
  'host_cpu_isolation',
  'well_formed_tables',
  'pool_accounting',
]);

export function bootPair(machine: MachineConfig, inject?: (sys: System) => void): { model: ModelState; system: System } {
  const system = createSystem(toSystemConfig(machine));
  inject?.(system);
  return { model: initialState(toModelConfig(machine)), system };
}

export function runOperations(machine: MachineConfig, ops: readonly Operation[], options: RunOptions = {}): RunResult {
  const checks = options.checks ?? ALL_CHECKS;
  let { model, system } = bootPair(machine, options.inject);
  const steps: StepRecord[] = [];
  let failure: StepRecord | undefined;
  for (let index = 0; index < ops.length; index++) {
    const op = ops[index] as Operation;
    const expected = apply(model, op);
    // The fingerprint costs a walk of every table: take it only when the model expects an error
    // (if the system then succeeds instead, the return-value check reports it).
    const wantsFingerprint = checks.has('error_changes_nothing') && expected.ret < 0 && op.kind !== 'host_access';
    const before = wantsFingerprint ? concreteFingerprint(system, viewTables(system)) : '';
    const violations: Violation[] = [];
    let systemRet: number | 'panic';
    try {
      systemRet = executeOnSystem(system, op);
    } catch (e) {
      if (!(e instanceof HypervisorPanic)) throw e;
      systemRet = 'panic';
      violations.push({ check: 'refinement_ret', message: `hypervisor panic: ${e.message}` });
    }
    model = expected.state;
    if (checks.has('refinement_ret') && systemRet !== expected.ret) {
      violations.push({ check: 'refinement_ret', message: `returned ${typeof systemRet === 'number' ? errnoName(systemRet) : systemRet}, model expects ${errnoName(expected.ret)}` });
    }
    if (systemRet !== 'panic') {
      const view = viewTables(system);
      if (checks.has('refinement_state')) {
        for (const d of diffStates(model, abstractState(system, model.config, view.guests))) violations.push({ check: 'refinement_state', message: d });
      }
      if (wantsFingerprint && concreteFingerprint(system, view) !== before) {
        violations.push({ check: 'error_changes_nothing', message: `${errnoName(expected.ret)} expected and the system state changed` });
      }
      if (checks.has('host_cpu_isolation')) violations.push(...checkHostCpuIsolation(system, model));
      if (checks.has('well_formed_tables')) violations.push(...checkWellFormed(system, view));
      if (checks.has('pool_accounting')) violations.push(...checkPools(system, machine.poolPages, view));
    }
    const record: StepRecord = { index, op, modelRet: expected.ret, systemRet, violations };
    steps.push(record);
    if (violations.length > 0 && failure === undefined) {
      failure = record;
      if (options.continueAfterViolation !== true) break;
    }
    if (systemRet === 'panic') break;
  }
  return { steps, failure, model, system };
}

export function describeFailure(result: RunResult): string {
  const f = result.failure;
  if (f === undefined) return 'no violation';
  return [`step ${f.index}: ${JSON.stringify(f.op)}`, ...f.violations.map((v) => `  [${v.check}] ${v.message}`)].join('\n');
}
