/**
 * One machine description for both sides: the model's config and the concrete system's config
 * are derived from the same plain JSON, so a corpus file names a machine once.
 */
import { type ModelConfig, defaultConfig } from '../model/index.js';
import { type SystemConfig } from '../impl/system.js';

export interface MachineConfig {
  readonly physShift: number;
  readonly memory: readonly { readonly base: number; readonly size: number; readonly nomap?: boolean }[];
  readonly poolPages: number;
  readonly maxVms: number;
  readonly vmStructPages: number;
}

/** The model's default machine: 2 GiB + 16 MiB NOMAP + 1 GiB of RAM, 40-bit PA, 4K granule. */
export function defaultMachine(): MachineConfig {
  const c = defaultConfig();
  return { physShift: c.layout.physShift, memory: c.layout.memory.map((r) => ({ ...r })), poolPages: c.poolPages, maxVms: c.maxVms, vmStructPages: c.vmStructPages };
}

/** A small machine for fast property runs: 8 MiB + 2 MiB NOMAP + 4 MiB with MMIO gaps around. */
export function smallMachine(): MachineConfig {
  return {
    physShift: 36,
    memory: [
      { base: 0x4000_0000, size: 0x80_0000 },
      { base: 0x4080_0000, size: 0x20_0000, nomap: true },
      { base: 0x8000_0000, size: 0x40_0000 },
    ],
    poolPages: 10,
    maxVms: 3,
    vmStructPages: 2,
  };
}

export function toModelConfig(m: MachineConfig): ModelConfig {
  return { layout: { physShift: m.physShift, memory: m.memory.map((r) => ({ ...r })) }, poolPages: m.poolPages, maxVms: m.maxVms, vmStructPages: m.vmStructPages };
}

export function toSystemConfig(m: MachineConfig): SystemConfig {
  return { physShift: m.physShift, memory: m.memory.map((r) => ({ base: r.base, size: r.size, nomap: r.nomap === true })), poolPages: m.poolPages, maxVms: m.maxVms, vmStructPages: m.vmStructPages };
}
