/**
 * Design variants by name (ARCHITECTURE §6). Files and command lines name a variant by string;
 * the variants themselves are plain data in impl/hyp/design.ts, and a variant is composed into a
 * run by laying its driver knobs over the machine's `smmu.driver` (RunOptions.driver), so corpus
 * files keep naming a machine and a design separately and stay replayable.
 */
import { DEFAULT_DESIGN, DESIGN_VARIANTS, type DesignVariant as DesignData, declaredVerdicts } from '../impl/hyp/design.js';
import { type MachineConfig, verdictHardware } from '../properties/machine.js';
import { type RunOptions } from '../properties/runner.js';

export interface DesignVariant {
  readonly name: string;
  readonly description: string;
  /**
   * Checks this variant is expected to break on every machine (none today): the suite must tell a
   * safe design from an unsafe one, so a variant's expected violations are asserted like its
   * expected passes. Most verdicts depend on the hardware (an ATS device, RIL): see
   * `expectedToBreakOn` and properties/designs.test.ts.
   */
  readonly expectedToBreak: readonly string[];
  /** The checks this variant is expected to break on `machine` (its SMMU features and devices). */
  readonly expectedToBreakOn: (machine: MachineConfig) => readonly string[];
  /** The variant's data (knobs, declared verdicts per hardware). */
  readonly data: DesignData;
  /** How the variant is composed into a run: its driver knobs over the machine's. */
  readonly runOptions: (base: RunOptions) => RunOptions;
}

export { DEFAULT_DESIGN };

const VARIANTS: readonly DesignVariant[] = DESIGN_VARIANTS.map((d) => ({
  name: d.name,
  description: d.rationale,
  expectedToBreak: [...new Set(d.verdicts.filter((v) => v.verdict === 'breaks' && Object.keys(v.when).length === 0).map((v) => v.check))],
  expectedToBreakOn: (machine) => {
    // Without an SMMU no DMA check has anything to find.
    if (machine.smmu === undefined) return [];
    return [...new Set(declaredVerdicts(d, verdictHardware(machine)).filter((v) => v.verdict === 'breaks').map((v) => v.check))];
  },
  data: d,
  // v6-posted sets no knob, so the machine's own driver options (e.g. small-smmu-hide-ats) stand.
  runOptions: (base) => (Object.keys(d.knobs).length === 0 ? base : { ...base, driver: { ...base.driver, ...d.knobs } }),
}));

export const DESIGNS: ReadonlyMap<string, DesignVariant> = new Map(VARIANTS.map((v) => [v.name, v]));

export function findDesign(name: string): DesignVariant | undefined {
  return DESIGNS.get(name);
}

export function designNames(): string[] {
  return [...DESIGNS.keys()];
}
