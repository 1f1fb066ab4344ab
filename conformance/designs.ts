/**
 * Design variants by name (ARCHITECTURE §6). Files and command lines name a variant by string, so
 * adding the variants of impl/hyp/design.ts later changes this table, not the formats. Today the
 * only variant is the system in impl/ as it stands.
 */
import { type RunOptions } from '../properties/runner.js';

export interface DesignVariant {
  readonly name: string;
  readonly description: string;
  /**
   * Checks this variant is expected to break: the suite must tell a safe design from an unsafe
   * one, so a variant's expected violations are asserted like its expected passes.
   */
  readonly expectedToBreak: readonly string[];
  /** How the variant is composed into a run (a system option later; nothing to change yet). */
  readonly runOptions: (base: RunOptions) => RunOptions;
}

export const DEFAULT_DESIGN = 'v6';

const VARIANTS: readonly DesignVariant[] = [
  {
    name: 'v6',
    description: 'SER-T&E trap-and-emulate series over the UP-2026 ownership hypercalls: the hypervisor in impl/ as it stands',
    expectedToBreak: [],
    runOptions: (base) => base,
  },
];

export const DESIGNS: ReadonlyMap<string, DesignVariant> = new Map(VARIANTS.map((v) => [v.name, v]));

export function findDesign(name: string): DesignVariant | undefined {
  return DESIGNS.get(name);
}

export function designNames(): string[] {
  return [...DESIGNS.keys()];
}
