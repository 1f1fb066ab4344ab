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
  // The known findings' steps are left out (properties/known-findings.ts).
  const samples = fc.sample(operationsArbitrary(machine, 40), { seed: 7, numRuns: sequences }).map((ops) => ops.filter(notAKnownFinding));
  const schedule = interleave
    ? Array.from({ length: 256 }, (_, i) => (i % 3 === 0 ? { kind: 'smmu_speculative_fill' as const, smmu: 0, sid: 1, addr: 0x4000_0000 + (i % 16) * 4096 } : { kind: 'dma' as const, sid: 1, addr: 0x4000_0000 + (i % 16) * 4096, access: 'read' as const }))
    : undefined;
  const driver = machine.smmu === undefined ? { reuseBoot: true } : { driver: HARDENED_KNOBS, reuseBoot: true };
  const withChecks = checks === undefined ? driver : { ...driver, checks };
  const options = schedule === undefined ? withChecks : { ...withChecks, schedule };
  // Warm up on a few sequences first.
  for (const ops of samples.slice(0, 20)) runOperations(machine, ops, options);
  let steps = 0;
  const start = performance.now();
  for (const ops of samples) {
    const r = runOperations(machine, ops, options);
    if (r.failure !== undefined) throw new Error(`benchmark sequence failed a check: ${describeFailure(r)}`);
    steps += r.steps.length;
  }
  return steps / ((performance.now() - start) / 1000);
}
