/**
 * Reuse with reset (properties/boot-cache.ts) must be invisible: a run on a reused, reset system
 * records exactly what the same run records on a freshly booted one, whatever ran before it.
 */
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { namedMachine } from '../conformance/machines.js';
import { findDesign, designNames } from '../conformance/designs.js';
import { scheduleArbitrary } from './arbitraries.js';
import { abstractState } from './abstraction.js';
import { GraphSnapshot, bootStatePasses, clearBootCache, reusableBoot } from './boot-cache.js';
import { type ScheduledHardware } from './dma.js';
import { type MachineConfig, representativeHardware, smallMachine } from './machine.js';
import { type RunOptions, type RunResult, type Step, bootPair, runOperations } from './runner.js';
import { arbitraryFor } from './zoo.js';

/** Everything a run reports, and the abstract state it ends in. */
function outcome(r: RunResult): string {
  return JSON.stringify({ steps: r.steps, failure: r.failure ?? null, end: abstractState(r.system, r.model.config) }, (_k, v: unknown) => (v instanceof Map ? [...v] : v));
}

function runs(machine: MachineConfig, seed: number, n: number): { ops: Step[]; schedule: ScheduledHardware[] }[] {
  const arb = fc.record({ ops: arbitraryFor(machine, 25), schedule: machine.smmu === undefined ? fc.constant([] as ScheduledHardware[]) : scheduleArbitrary(machine) });
  return fc.sample(arb, { seed, numRuns: n });
}

/** Runs each sample on a reused system (after whatever ran before) and on a fresh boot; the first difference. */
function firstDifference(machine: MachineConfig, base: RunOptions, samples: ReturnType<typeof runs>): string | undefined {
  for (const [i, s] of samples.entries()) {
    const options = s.schedule.length === 0 ? base : { ...base, schedule: s.schedule };
    const reused = outcome(runOperations(machine, s.ops, { ...options, reuseBoot: true }));
    const fresh = outcome(runOperations(machine, s.ops, options));
    if (reused !== fresh) return `run ${i} differs`;
  }
  return undefined;
}

describe('booting once and resetting before every run', () => {
  it.each(representativeHardware().map((h) => h.name))('gives the records of a fresh boot on %s, for every design', (name) => {
    const machine = (representativeHardware().find((h) => h.name === name) as { machine: MachineConfig }).machine;
    clearBootCache();
    for (const design of designNames()) {
      const base = (findDesign(design) as NonNullable<ReturnType<typeof findDesign>>).runOptions({});
      expect(firstDifference(machine, base, runs(machine, 20261204, 6)), design).toBeUndefined();
    }
  });

  it('gives the records of a fresh boot on the small machine and on small-smmu, over many runs in a row', () => {
    clearBootCache();
    for (const machine of [smallMachine(), namedMachine('small-smmu') as MachineConfig]) expect(firstDifference(machine, {}, runs(machine, 3, 40))).toBeUndefined();
  });

  it('the comparison can fail: a reset that leaves memory as the last run left it is caught', () => {
    clearBootCache();
    const machine = namedMachine('small-smmu') as MachineConfig;
    const restore = GraphSnapshot.prototype.restore;
    // A broken reset: everything but the typed arrays (RAM frames, vmemmap) is put back.
    const spy = vi.spyOn(GraphSnapshot.prototype, 'restore').mockImplementation(function (this: GraphSnapshot) {
      const records = (this as unknown as { records: { kind: string }[] }).records;
      const kept = records.splice(0);
      records.push(...kept.filter((r) => r.kind !== 'typed'));
      restore.call(this);
      records.splice(0, records.length, ...kept);
    });
    try {
      expect(firstDifference(machine, {}, runs(machine, 3, 40))).toBeDefined();
    } finally {
      spy.mockRestore();
      clearBootCache();
    }
  });

  it('remembers a boot state that passed its checks, per check set, and never one that failed', () => {
    clearBootCache();
    const machine = smallMachine();
    expect(bootStatePasses('small', 'a', () => true)).toBe(false); // nothing cached: never assumed
    reusableBoot('small', () => bootPair(machine));
    let asked = 0;
    const failing = (): boolean => (asked++, false);
    expect(bootStatePasses('small', 'a', failing)).toBe(false);
    expect(bootStatePasses('small', 'a', failing)).toBe(false);
    expect(asked).toBe(2);
    expect(bootStatePasses('small', 'a', () => true)).toBe(true);
    expect(bootStatePasses('small', 'a', failing)).toBe(true);
    expect(bootStatePasses('small', 'b', failing)).toBe(false);
    expect(asked).toBe(3);
    clearBootCache();
  });

  it('refuses what it cannot put back', () => {
    expect(() => new GraphSnapshot({ cache: new WeakMap() })).toThrow(/WeakMap/);
    const o = {};
    Object.defineProperty(o, 'x', { get: () => 1, enumerable: true });
    expect(() => new GraphSnapshot({ o })).toThrow(/accessor property x/);
  });
});
