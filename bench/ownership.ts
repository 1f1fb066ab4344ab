/**
 * Checked-runner throughput: operations per second with every ownership check after every step
 * (refinement of return value and state, error atomicity, host CPU isolation, well-formed tables,
 * pool accounting), on generated sequences with a fixed seed.
 */
import fc from 'fast-check';
import { operationsArbitrary } from '../properties/arbitraries.js';
import { type MachineConfig } from '../properties/machine.js';
import { runOperations } from '../properties/runner.js';

export function benchCheckedOps(machine: MachineConfig, sequences = 300): number {
  const samples = fc.sample(operationsArbitrary(machine, 40), { seed: 7, numRuns: sequences });
  // Warm up on a few sequences first.
  for (const ops of samples.slice(0, 20)) runOperations(machine, ops);
  let steps = 0;
  const start = performance.now();
  for (const ops of samples) {
    const r = runOperations(machine, ops);
    if (r.failure !== undefined) throw new Error('benchmark sequence failed a check: the system or the model is broken');
    steps += r.steps.length;
  }
  return steps / ((performance.now() - start) / 1000);
}
