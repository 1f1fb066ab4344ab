/**
 * Checked-runner throughput: operations per second with every ownership check after every step
 * (refinement of return value and state, error atomicity, host CPU isolation, well-formed tables,
 * pool accounting), on generated sequences with a fixed seed.
 */
import fc from 'fast-check';
import { notAKnownFinding } from '../properties/known-findings.js';
import { HARDENED_KNOBS } from '../impl/hyp/design.js';
import { operationsArbitrary } from '../properties/arbitraries.js';
import { type MachineConfig } from '../properties/machine.js';
import { describeFailure, runOperations } from '../properties/runner.js';
import { type CheckName } from '../properties/checks.js';

/** The same workload with no check selected: the simulation's own cost (model + system), the "bare" figure. */
export const NO_CHECKS: ReadonlySet<CheckName> = new Set();

/** A machine of one RAM region of `bytes` at 1 GiB, 40-bit PA: the memory-size scaling figures (64 MiB against 64 GiB). */
export function flatMachine(bytes: number): MachineConfig {
  return { physShift: 40, memory: [{ base: 0x4000_0000, size: bytes }], poolPages: 10, maxVms: 3, vmStructPages: 2 };
}

/**
 * With an SMMU machine, the DMA checks run too, and `interleave` adds a schedule of DMAs and
 * SMMU fills executed at the hypercalls' yield points. The known findings' steps are left out and
 * the SMMU machine runs the v6-hardened driver (the posted one panics on host misuse), so every
 * benchmark run is clean.
 */
export function benchCheckedOps(machine: MachineConfig, sequences = 300, interleave = false, checks?: ReadonlySet<CheckName>): number {
  return checkedWorkload(machine, sequences, interleave, checks).measure(true);
}

/** Checked and bare throughput of one workload, and the median of their ratio (issue 15 item 1). */
export interface CheckedAgainstBare {
  readonly checked: number;
  readonly bare: number;
  readonly checkedOverBare: number;
}

/**
 * The checked and the bare figure measured in the same run (`measureAlternating`).
 */
export function benchCheckedAgainstBare(machine: MachineConfig, sequences: number, interleave: boolean, rounds = 3): CheckedAgainstBare {
  const r = measureAlternating(checkedWorkload(machine, sequences, interleave, undefined), checkedWorkload(machine, sequences, interleave, NO_CHECKS), rounds);
  return { checked: r.first, bare: r.second, checkedOverBare: r.firstCostOverSecond };
}

/** Checked throughput at two sizes of RAM, and the median ratio of the cost per op (big over small). */
export function benchMemorySizes(smallBytes: number, bigBytes: number, sequences: number, rounds = 3): { readonly small: number; readonly big: number; readonly bigOverSmall: number } {
  const r = measureAlternating(checkedWorkload(flatMachine(bigBytes), sequences, false, undefined), checkedWorkload(flatMachine(smallBytes), sequences, false, undefined), rounds);
  return { small: r.second, big: r.first, bigOverSmall: r.firstCostOverSecond };
}

/**
 * Two workloads compared in one run: both are first run once in full (a campaign runs warm:
 * the JIT's tiers settle over the first thousands of steps), then measured in `rounds`
 * alternating rounds so that a slower stretch of a shared machine hits both alike; each figure is
 * the median of its rounds (steps per second), the ratio the median of the rounds' ratios of the
 * first's cost per step over the second's.
 */
function measureAlternating(first: Workload, second: Workload, rounds: number): { readonly first: number; readonly second: number; readonly firstCostOverSecond: number } {
  first.measure(false);
  second.measure(false);
  const a: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < rounds; i++) {
    a.push(first.measure(false));
    b.push(second.measure(false));
  }
  return { first: median(a), second: median(b), firstCostOverSecond: median(a.map((x, i) => (b[i] as number) / x)) };
}

function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** A fixed workload; `measure(warmUp)` runs it (after 20 sequences of warm-up if asked) and gives steps per second. */
interface Workload {
  measure(warmUp: boolean): number;
}

function checkedWorkload(machine: MachineConfig, sequences: number, interleave: boolean, checks: ReadonlySet<CheckName> | undefined): Workload {
  // The known findings' steps are left out (properties/known-findings.ts).
  const samples = fc.sample(operationsArbitrary(machine, 40), { seed: 7, numRuns: sequences }).map((ops) => ops.filter(notAKnownFinding));
  const schedule = interleave
    ? Array.from({ length: 256 }, (_, i) => (i % 3 === 0 ? { kind: 'smmu_speculative_fill' as const, smmu: 0, sid: 1, addr: 0x4000_0000 + (i % 16) * 4096 } : { kind: 'dma' as const, sid: 1, addr: 0x4000_0000 + (i % 16) * 4096, access: 'read' as const }))
    : undefined;
  const driver = machine.smmu === undefined ? { reuseBoot: true } : { driver: HARDENED_KNOBS, reuseBoot: true };
  const withChecks = checks === undefined ? driver : { ...driver, checks };
  const options = schedule === undefined ? withChecks : { ...withChecks, schedule };
  const measure = (warmUp: boolean): number => {
    if (warmUp) for (const ops of samples.slice(0, 20)) runOperations(machine, ops, options);
    let steps = 0;
    const start = performance.now();
    for (const ops of samples) {
      const r = runOperations(machine, ops, options);
      if (r.failure !== undefined) throw new Error(`benchmark sequence failed a check: ${describeFailure(r)}`);
      steps += r.steps.length;
    }
    return steps / ((performance.now() - start) / 1000);
  };
  return { measure };
}
