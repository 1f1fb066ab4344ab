/**
 * Boot cost per run on the SMMU machine (issue 15 item 1, goal ≤ 0.3 ms): a fresh boot (the
 * hypervisor's SMMU driver init, the shadow idmap snapshot of all memory, the host driver's
 * probe and identity attaches), and the reuse of a booted system reset to its boot state
 * (properties/boot-cache.ts), as `runOperations` does with `reuseBoot`. An empty run is a boot.
 */
import { HARDENED_KNOBS } from '../impl/hyp/design.js';
import { type MachineConfig } from '../properties/machine.js';
import { runOperations } from '../properties/runner.js';

export function benchBootMillis(machine: MachineConfig, runs: number, reuse: boolean): number {
  const options = { driver: HARDENED_KNOBS, reuseBoot: reuse };
  for (let i = 0; i < Math.min(20, runs); i++) runOperations(machine, [], options);
  const start = performance.now();
  for (let i = 0; i < runs; i++) runOperations(machine, [], options);
  return (performance.now() - start) / runs;
}
