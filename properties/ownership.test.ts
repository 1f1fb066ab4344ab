import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { E2BIG, EAGAIN, EBUSY, EFAULT, EINVAL, ENOENT, ENOMEM, EPERM, ERANGE, OPERATION_KINDS, type Operation } from '../model/index.js';
import { operationsArbitrary } from './arbitraries.js';
import { bugTrigger, lifeCycle } from './known-good.js';
import { OWNERSHIP_BUGS } from './bugs/ownership-bugs.js';
import { type CheckName } from './checks.js';
import { smallMachine } from './machine.js';
import { minimizeOperations } from './minimize.js';
import { describeFailure, runOperations } from './runner.js';

const machine = smallMachine();
const P = machine.memory[0]!.base / 4096;

/** Fixed seeds: CI runs are reproducible; `npm run verify` explores with random ones. */
const SEED = 20261121;

describe('ownership: the system refines the model', () => {
  it('random operation sequences pass every check, and every operation kind runs and succeeds', () => {
    const executed = new Map<string, number>();
    const errnos = new Set<number>();
    const succeeded = new Map<string, number>();
    fc.assert(
      fc.property(operationsArbitrary(machine, 40), (ops) => {
        const result = runOperations(machine, ops);
        for (const s of result.steps) {
          executed.set(s.op.kind, (executed.get(s.op.kind) ?? 0) + 1);
          if (s.modelRet === 0) succeeded.set(s.op.kind, (succeeded.get(s.op.kind) ?? 0) + 1);
          if (s.op.kind !== 'host_access') errnos.add(s.modelRet);
        }
        if (result.failure !== undefined) throw new Error(describeFailure(result));
      }),
      { seed: SEED, numRuns: 250 },
    );
    // Every error class of the reference shows up, -ENOMEM from the finite budget included.
    for (const errno of [-EPERM, -EINVAL, -EBUSY, -ENOMEM, -ENOENT, -E2BIG, -ERANGE, -EFAULT, -EAGAIN]) {
      expect(errnos.has(errno), `errno ${errno} returned at least once`).toBe(true);
    }
    for (const kind of OPERATION_KINDS) {
      expect(executed.get(kind) ?? 0, `${kind} executed`).toBeGreaterThanOrEqual(20);
      expect(succeeded.get(kind) ?? 0, `${kind} succeeded`).toBeGreaterThanOrEqual(3);
    }
  });

  it('a hand-written life cycle through every operation kind', () => {
    const ops: Operation[] = [
      ...lifeCycle(P),
      { kind: 'host_share_ffa', pfn: P + 100, nrPages: 2 ** 64 - 2 ** 12 },
    ];
    const result = runOperations(machine, ops);
    expect(describeFailure(result)).toBe('no violation');
    expect(new Set(ops.map((o) => o.kind)).size).toBe(OPERATION_KINDS.length);
    expect(result.steps.map((s) => s.systemRet)).toEqual(result.steps.map((s) => s.modelRet));
    expect(result.steps.filter((s) => s.modelRet === 0).length).toBeGreaterThan(25);
  });
});

/** A sequence that exercises every injected bug below: access, donate, pin/unshare, a VM life, a protected guest's page given back. */
const BUG_TRIGGER: Operation[] = [
  ...bugTrigger(P),
  // A protected guest's page given back by teardown (poisoned first: confidentiality).
  { kind: 'init_vm', vm: 1, protected: true },
  { kind: 'host_donate_guest', pfn: P + 5, gfn: 3, vm: 1 },
  { kind: 'teardown_vm', vm: 1 },
];

describe('every ownership check fails on an injected bug', () => {
  it('the trigger sequence is clean without bugs', () => {
    expect(describeFailure(runOperations(machine, BUG_TRIGGER))).toBe('no violation');
  });

  for (const bug of OWNERSHIP_BUGS) {
    it(`${bug.name} is caught by ${bug.caughtBy} alone`, () => {
      const result = runOperations(machine, BUG_TRIGGER, { inject: bug.inject, checks: new Set<CheckName>([bug.caughtBy]) });
      expect(result.failure, bug.description).toBeDefined();
      expect(result.failure?.violations.map((v) => v.check)).toContain(bug.caughtBy);
    });
  }

  it('random sequences find the forgotten TLBI and shrink it to a short counterexample', () => {
    const bug = OWNERSHIP_BUGS.find((b) => b.name === 'no-host-tlbi-on-donation')!;
    const out = fc.check(
      fc.property(operationsArbitrary(machine, 40), (ops) => runOperations(machine, ops, { inject: bug.inject }).failure === undefined),
      { seed: SEED, numRuns: 300 },
    );
    expect(out.failed).toBe(true);
    const shrunk = minimizeOperations(out.counterexample?.[0] as Operation[], (ops) => runOperations(machine, ops, { inject: bug.inject }).failure !== undefined);
    // A host access fills the TLB, then some transition takes the page away without a TLBI;
    // the result is 1-minimal: dropping any single step makes the run pass.
    expect(shrunk.length, JSON.stringify(shrunk)).toBeLessThanOrEqual(5);
    expect(shrunk.some((o) => o.kind === 'host_access')).toBe(true);
    for (let i = 0; i < shrunk.length; i++) {
      const without = [...shrunk.slice(0, i), ...shrunk.slice(i + 1)];
      expect(runOperations(machine, without, { inject: bug.inject }).failure).toBeUndefined();
    }
  });
});
