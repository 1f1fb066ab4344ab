/**
 * One machine description for both sides: the model's config and the concrete system's config
 * are derived from the same plain JSON, so a corpus file names a machine once.
 */
import { type ModelConfig, defaultConfig } from '../model/index.js';
import { type SmmuConfig, type SystemConfig } from '../impl/system.js';
import { type DriverOptions } from '../impl/hyp/smmu-driver/driver.js';
import { DEFAULT_FEATURES, type SmmuFeatures as SmmuHwFeatures } from '../impl/hw/smmu/features.js';
import { type VerdictHardware } from '../impl/hyp/design.js';

export interface MachineConfig {
  readonly physShift: number;
  readonly memory: readonly { readonly base: number; readonly size: number; readonly nomap?: boolean }[];
  readonly poolPages: number;
  readonly maxVms: number;
  readonly vmStructPages: number;
  /**
   * Table pages of the host stage-2 pool (`host_s2_pool`); absent: enough to map all memory with
   * pages (`hostS2PgtablePages`), so `-ENOMEM` recovery never runs. The model has no such
   * budget: a pool the run exhausts can make the system diverge from it (README "Bug zoo").
   */
  readonly hostS2PoolPages?: number;
  /** An SMMUv3 with devices (DMA isolation runs); absent for ownership-only runs. */
  readonly smmu?: SmmuConfig;
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
  return {
    physShift: m.physShift,
    memory: m.memory.map((r) => ({ base: r.base, size: r.size, nomap: r.nomap === true })),
    poolPages: m.poolPages,
    maxVms: m.maxVms,
    vmStructPages: m.vmStructPages,
    ...(m.hostS2PoolPages === undefined ? {} : { hostS2PoolPages: m.hostS2PoolPages }),
    ...(m.smmu === undefined ? {} : { smmu: m.smmu }),
  };
}

/**
 * The small machine with an SMMU at 0x0c00_0000 (an MMIO gap) and two devices: sid 1 plain,
 * sid 2 ATS-capable. The host driver keeps its queue and stream table in the last two pages of
 * the first RAM region.
 */
export function smallMachineWithSmmu(options: { ats?: boolean; ril?: boolean; hideAts?: boolean; hookPlacement?: 'set-owner-only' | 'every-owner-change'; features?: Partial<SmmuHwFeatures> } = {}): MachineConfig {
  const m = smallMachine();
  const first = m.memory[0] as { base: number; size: number };
  const end = first.base + first.size;
  return {
    ...m,
    smmu: {
      // Away from the MMIO pages the generators donate (0x9000, 0x9001).
      base: 0xc00_0000,
      // RIL only when asked for, so the JSON of the existing named machines is unchanged.
      features: { ats: options.ats ?? true, ...(options.ril === undefined ? {} : { ril: options.ril }), ...options.features },
      devices: [
        { sid: 1, ats: false },
        { sid: 2, ats: options.ats ?? true },
      ],
      hostPages: [end - 0x2000, end - 0x1000],
      driver: { hideAts: options.hideAts ?? false },
      // The hook placement is the design's (DriverOptions.hookPlacement) unless a machine fixes it.
      ...(options.hookPlacement === undefined ? {} : { hookPlacement: options.hookPlacement }),
    },
  };
}

/** What a design verdict can depend on (impl/hyp/design.ts VerdictCondition), from a machine's SMMU. */
export function verdictHardware(m: MachineConfig): VerdictHardware {
  const f = m.smmu?.features;
  return {
    ats: m.smmu !== undefined && f?.ats !== false && m.smmu.devices.some((d) => d.ats),
    ril: f?.ril !== false,
    bbml2: (f?.bbml ?? DEFAULT_FEATURES.bbml) === 2,
    msi: m.smmu !== undefined && (f?.msi ?? DEFAULT_FEATURES.msi),
  };
}

/** `m` with `driver` laid over its SMMU's driver options (a design variant's knobs). */
export function withDriverOptions(m: MachineConfig, driver: DriverOptions | undefined): MachineConfig {
  if (driver === undefined || m.smmu === undefined || Object.keys(driver).length === 0) return m;
  return { ...m, smmu: { ...m.smmu, driver: { ...m.smmu.driver, ...driver } } };
}

/**
 * The representative hardware set of the design matrix (issue 6): range invalidation on/off ×
 * an ATS-capable device or not, on the small SMMU machine, plus a minimal SMMU — 4K granule only,
 * 40-bit OAS, BBML0, no RIL, no ATS, a 2-level stream table (16-bit SIDs) — so that the verdicts
 * do not depend on the generous defaults (48-bit OAS, all granules, BBML1, linear table).
 * Everything else stays configurable through `smmu.features` (impl/hw/smmu/features.ts).
 */
export function representativeHardware(): { readonly name: string; readonly machine: MachineConfig }[] {
  const out: { name: string; machine: MachineConfig }[] = [];
  for (const ril of [true, false]) for (const ats of [true, false]) out.push({ name: `${ril ? 'ril' : 'no-ril'}/${ats ? 'ats' : 'no-ats'}`, machine: smallMachineWithSmmu({ ats, ril }) });
  out.push({
    name: 'minimal',
    // The one SMMU without IDR0.MSI: its interrupts are wired, so it makes no MSI writes.
    machine: smallMachineWithSmmu({ ats: false, ril: false, features: { granules: ['4K'], oasBits: 40, bbml: 0, twoLevelStrtab: true, sidBits: 16, msi: false } }),
  });
  return out;
}
