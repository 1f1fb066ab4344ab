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
