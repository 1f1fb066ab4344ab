/** Shared fixtures for the model's tests (not a test file itself). */
import { expect } from 'vitest';
import { apply } from './apply.js';
import { errnoName } from './errno.js';
import { checkInvariants } from './invariants.js';
import type { Operation } from './operations.js';
import type { ModelConfig, ModelState } from './state.js';
import { initialState } from './state.js';

/**
 * A tiny machine, in pages: RAM A [0x200, 0x600) (two 2 MiB blocks at 0x200 and 0x400), NOMAP
 * [0x600, 0x610) right after it, an MMIO gap [0x610, 0x800), RAM B [0x800, 0x840), and MMIO above.
 */
export const A = 0x200;
export const A_END = 0x600;
export const NOMAP = 0x600;
export const NOMAP_END = 0x610;
export const GAP = 0x700;
export const B = 0x800;
export const B_END = 0x840;

export function smallConfig(overrides: Partial<ModelConfig> = {}): ModelConfig {
  return {
    layout: {
      physShift: 40,
      memory: [
        { base: A * 4096, size: (A_END - A) * 4096 },
        { base: NOMAP * 4096, size: (NOMAP_END - NOMAP) * 4096, nomap: true },
        { base: B * 4096, size: (B_END - B) * 4096 },
      ],
    },
    poolPages: 16,
    maxVms: 3,
    vmStructPages: 2,
    ...overrides,
  };
}

export function fresh(overrides: Partial<ModelConfig> = {}): ModelState {
  return initialState(smallConfig(overrides));
}

/** Applies `op`, expects success and intact invariants, returns the new state. */
export function ok(s: ModelState, op: Operation): ModelState {
  const r = apply(s, op);
  expect(errnoName(r.ret), JSON.stringify(op)).toBe('0');
  expect(checkInvariants(r.state)).toEqual([]);
  return r.state;
}

/** Applies `ops` in order, each expected to succeed. */
export function run(s: ModelState, ops: readonly Operation[]): ModelState {
  return ops.reduce(ok, s);
}

/** Expects `op` to fail with `-errno` and to return the very same state object. */
export function fails(s: ModelState, op: Operation, errno: number): void {
  const r = apply(s, op);
  expect(errnoName(r.ret), JSON.stringify(op)).toBe(errnoName(-errno));
  expect(r.state).toBe(s);
}
