/**
 * Issue 15 item 1: the incremental checks must say what the full checks say. On random runs of
 * every zoo bug (so violations do occur) and of clean designs, a run checked incrementally and
 * the same run checked in full after every step stop at the same step with the same violations.
 * The table index must equal a rebuilt one after every step, and its lookup a table walk.
 */
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { namedMachine } from '../conformance/machines.js';
import { findDesign } from '../conformance/designs.js';
import { scheduleArbitrary } from './arbitraries.js';
import { ALL_BUGS } from './bugs/index.js';
import { DMA_BUGS } from './bugs/dma-bugs.js';
import { IncrementalChecks } from './incremental.js';
import { type MachineConfig, smallMachine } from './machine.js';
import { type RunOptions, type RunResult, type Step, bootPair, runOperations } from './runner.js';
import { StepLog } from './step-log.js';
import { TableIndex } from './table-index.js';
import { dumpTable } from '../impl/pgtable/table-dump.js';
import { arbitraryFor, designOptions } from './zoo.js';
import { ALL_CHECKS } from './runner.js';
import { type ScheduledHardware } from './dma.js';
import { executeOnSystem } from './execute.js';
import { operationsArbitrary } from './arbitraries.js';
import { isHardwareOperation, protectedPages } from './dma.js';

/** What a run concluded: where it stopped and why (violations sorted, so order within a step does not matter). */
function verdict(r: RunResult): unknown {
  const f = r.failure;
  return { steps: r.steps.length, failure: f === undefined ? null : { index: f.index, violations: f.violations.map((v) => `${v.check}: ${v.message}`).sort() } };
}

interface Sampled {
  readonly ops: Step[];
  readonly schedule: ScheduledHardware[];
}

function samples(machine: MachineConfig, seed: number, n: number, interleave: boolean, generation = {}): Sampled[] {
  const arb = fc.record({ ops: arbitraryFor(machine, 30, generation), schedule: interleave ? scheduleArbitrary(machine) : fc.constant([] as ScheduledHardware[]) });
  return fc.sample(arb, { seed, numRuns: n });
}

/** Runs each sample both ways; returns the first disagreement (undefined: none). */
function firstDisagreement(machine: MachineConfig, base: RunOptions, runs: readonly Sampled[]): string | undefined {
  for (const [i, run] of runs.entries()) {
    const options = run.schedule.length === 0 ? base : { ...base, schedule: run.schedule };
    const inc = verdict(runOperations(machine, run.ops, options));
    const full = verdict(runOperations(machine, run.ops, { ...options, fullCheckEvery: 1 }));
    if (JSON.stringify(inc) !== JSON.stringify(full)) return `run ${i}: incremental ${JSON.stringify(inc)}, full ${JSON.stringify(full)}`;
  }
  return undefined;
}

function bugRuns(name: string, n: number): { machine: MachineConfig; base: RunOptions; runs: Sampled[] } {
  const bug = ALL_BUGS.find((b) => b.name === name);
  if (bug === undefined) throw new Error(name);
  const machine = namedMachine(bug.machine ?? 'small') as MachineConfig;
  const generation = DMA_BUGS.find((b) => b.name === name)?.generation ?? {};
  const base = designOptions(bug, ALL_CHECKS, true);
  return { machine, base, runs: samples(machine, 20261204, n, machine.smmu !== undefined, generation) };
}

describe('incremental checks equal the full checks', () => {
  it.each(ALL_BUGS.map((b) => b.name))('on random runs with the injected bug %s', (name) => {
    const { machine, base, runs } = bugRuns(name, 12);
    expect(firstDisagreement(machine, base, runs)).toBeUndefined();
  });

  it.each(['v6-posted', 'v6-hardened', 'shared-cpu-s2', 'block-idmap-with-split'])('on random interleaved runs of the clean design %s', (design) => {
    const machine = namedMachine('small-smmu') as MachineConfig;
    const base = (findDesign(design) as NonNullable<ReturnType<typeof findDesign>>).runOptions({});
    expect(firstDisagreement(machine, base, samples(machine, 7, 25, true))).toBeUndefined();
    // With boot reuse the boot state is checked once and the first step is incremental too.
    expect(firstDisagreement(machine, { ...base, reuseBoot: true }, samples(machine, 8, 25, true))).toBeUndefined();
  });

  it('on the small machine without an SMMU', () => {
    const machine = smallMachine();
    expect(firstDisagreement(machine, {}, samples(machine, 11, 60, false))).toBeUndefined();
    expect(firstDisagreement(machine, { reuseBoot: true }, samples(machine, 12, 60, false))).toBeUndefined();
  });

  it('the comparison can fail: an incremental well-formedness predicate that never fires is caught', () => {
    const spy = vi.spyOn(IncrementalChecks.prototype, 'wellFormedMayFail').mockReturnValue(false);
    try {
      const failing = ALL_BUGS.filter((b) => b.caughtBy === 'well_formed_tables').map((b) => bugRuns(b.name, 12));
      expect(failing.length).toBeGreaterThan(0);
      expect(failing.some(({ machine, base, runs }) => firstDisagreement(machine, { ...base, checks: new Set(['well_formed_tables']) }, runs) !== undefined)).toBe(true);
    } finally {
      spy.mockRestore();
    }
  });
});

/** Runs the ownership steps of `ops` on the system alone, yielding after each, until one panics. */
function* executedOwnershipSteps(system: ReturnType<typeof bootPair>['system'], ops: readonly Step[]): Generator<Step> {
  for (const op of ops) {
    if (isHardwareOperation(op)) continue;
    try {
      executeOnSystem(system, op, (point) => system.stepHardware(point));
    } catch {
      return;
    }
    yield op;
  }
}

describe('the table index', () => {
  it('follows the host and guest stage-2 trees step by step, and its lookup ends where a table walk does', () => {
    const machine = smallMachine();
    for (const ops of fc.sample(operationsArbitrary(machine, 30), { seed: 5, numRuns: 30 })) {
      const { system } = bootPair(machine);
      const log = new StepLog(system);
      const host = new TableIndex(system.memory, system.hostS2.pgt.root());
      for (const _ of executedOwnershipSteps(system, ops)) {
        host.update(log.words);
        log.clear();
        const fresh = new TableIndex(system.memory, system.hostS2.pgt.root());
        expect([...host.tablePages()].sort()).toEqual([...fresh.tablePages()].sort());
        for (const pfn of [0x40000, 0x40001, 0x40200, 0x80000, 0x803ff]) {
          const walk = system.hostS2.pgt.getLeaf(pfn * 4096);
          const mine = host.lookup(pfn * 4096);
          expect([mine.lo, mine.hi, mine.level]).toEqual([walk.lo, walk.hi, walk.level]);
        }
      }
      log.detach();
    }
  });

  it('reindexes a tree as one update from nothing: every entry, every table page, the pages below the root', () => {
    const machine = smallMachine();
    for (const ops of fc.sample(operationsArbitrary(machine, 30), { seed: 6, numRuns: 20 })) {
      const { system } = bootPair(machine);
      for (const _ of executedOwnershipSteps(system, ops));
      const roots = [system.hostS2.pgt.root(), ...[...system.hyp.vms.values()].map((g) => g.pgt.root())];
      for (const root of roots) {
        const dump = dumpTable(system.memory, root);
        const index = new TableIndex(system.memory, root);
        const whole = index.reindex();
        expect(whole.changes.map((c) => `${c.ia}:${c.level}:${c.lo}:${c.hi}`)).toEqual(dump.entries.map((e) => `${e.ia}:${e.level}:${e.lo}:${e.hi}`));
        expect([...whole.dirtyPages].sort()).toEqual(dump.tables.map((t) => t.pa).sort());
        expect([...index.childPages()].sort()).toEqual(dump.tables.filter((t) => t.level !== root.startLevel).map((t) => t.pa).sort());
        expect(whole.faults).toEqual(dump.faults);
      }
    }
  });

  it('a reused boot gives each run its own copy of the boot indexes: a run that moves its copy leaves the next run the boot state', () => {
    const machine = namedMachine('small-smmu-no-ats') as MachineConfig;
    const { system } = bootPair(machine);
    const pagesOf = (checks: IncrementalChecks): unknown => {
      const parts = checks as unknown as { host: TableIndex; dma: TableIndex | undefined };
      return [[...parts.host.tablePages()].sort(), [...(parts.dma?.tablePages() ?? [])].sort()];
    };
    const fresh = pagesOf(new IncrementalChecks(system, protectedPages));
    // The first run at the boot state keeps its indexes as the template; the second copies them.
    expect(pagesOf(new IncrementalChecks(system, protectedPages, true))).toEqual(fresh);
    const first = new IncrementalChecks(system, protectedPages, true);
    expect(pagesOf(first)).toEqual(fresh);
    // That run donates memory: its host and DMA indexes change (tables split, idmap unmapped).
    const log = new StepLog(system);
    const pre = bootPair(machine).model;
    for (const op of [{ kind: 'host_donate_hyp', pfn: 0x40010, nrPages: 3 }, { kind: 'host_access', addr: 0x4001_0000 + 0x8000, access: 'read' }] as const) executeOnSystem(system, op, (p) => system.stepHardware(p));
    first.delta(log, pre, pre);
    log.detach();
    expect(pagesOf(first)).not.toEqual(fresh);
    // A later run at the same (reset) boot state starts from the boot indexes, not the first run's.
    expect(pagesOf(new IncrementalChecks(system, protectedPages, true))).toEqual(fresh);
  });
});
