/** Machines by name for command lines; files carry the full machine description instead. */
import { type MachineConfig, defaultMachine, smallMachine, smallMachineWithSmmu } from '../properties/machine.js';

const MACHINES: ReadonlyMap<string, () => MachineConfig> = new Map([
  ['default', defaultMachine],
  ['small', smallMachine],
  // The small machine with an SMMUv3, a plain device (sid 1) and an ATS-capable one (sid 2),
  // driven by the series as read (ATS neither hidden nor invalidated).
  ['small-smmu', () => smallMachineWithSmmu({ ats: true })],
  ['small-smmu-no-ats', () => smallMachineWithSmmu({ ats: false })],
  ['small-smmu-hide-ats', () => smallMachineWithSmmu({ ats: true, hideAts: true })],
  // The no-ATS SMMU machine with its host stage-2 pool cut to 9 table pages, so that -ENOMEM
  // recovery (host_stage2_try → unmap_dev_all) runs: the zoo machine of
  // annotation-erased-by-enomem-recovery. The model has no pool, and with the fix the recovery
  // refuses (-EPERM) as soon as the hypervisor owns MMIO — always here, the SMMU frame — so a
  // run that exhausts the pool diverges from it (an abort on the host's own page, or a WARN_ON
  // panic in a donation). 9 is the smallest pool that the generated workloads never exhausted:
  // their peak use over 18,000 runs of up to 40 operations (12 seeds; MMIO donation and CR0
  // writes left out, as in the zoo) was 9 pages — with 8 pages 2 of them would have diverged,
  // with 7 pages 20; with those steps kept, 1 run in 18,000 reached 10. Boot takes 3 (PGD, level-2 and level-3 tables under the
  // SMMU frame); a donation of all of the first RAM region but the host driver's two pages
  // takes 5 and an MMIO donation in a new 2 MiB block 1: the trigger's first host fault on the
  // second region then needs a tenth.
  ['small-smmu-tight-s2-pool', () => ({ ...smallMachineWithSmmu({ ats: false }), hostS2PoolPages: 9 })],
]);

export function machineNames(): string[] {
  return [...MACHINES.keys()];
}

export function namedMachine(name: string): MachineConfig | undefined {
  return MACHINES.get(name)?.();
}

/** The name of a known machine equal to `m`, else "custom". */
export function machineLabel(m: MachineConfig): string {
  const text = JSON.stringify(m);
  for (const [name, make] of MACHINES) if (JSON.stringify(make()) === text) return name;
  return 'custom';
}
