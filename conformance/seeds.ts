/**
 * Seeds for campaigns. A campaign has one base seed (printed, so any run can be reproduced);
 * run number r gets `runSeed(base, r)`, a pure hash, so a run's operations do not depend on which
 * machine, shard or order ran it (ARCHITECTURE §8). Nothing here may use Math.random.
 */

/**
 * fast-check takes 32-bit seeds (it prints them signed: 4294967280 shows as -16, the same seed).
 * Ours are unsigned 32-bit.
 */
export const SEED_LIMIT = 2 ** 32;

/** murmur3's 32-bit finaliser: every input bit flips about half of the output bits. */
function fmix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The fast-check seed of run `index` of a campaign with base seed `base`. For a fixed base this
 * is a bijection of the index (fmix32 is one), so no two runs below 2^32 share a seed.
 */
export function runSeed(base: number, index: number): number {
  const key = fmix32(base ^ 0x9e3779b9);
  return fmix32((key ^ index ^ Math.imul(Math.floor(index / 2 ** 32), 0x632be5ab)) >>> 0);
}

/** A seed typed by a person: decimal or 0x-hex, in [0, 2^32). */
export function parseSeed(text: string): number | undefined {
  const n = /^\d+$/.test(text) ? Number(text) : /^0x[0-9a-f]+$/i.test(text) ? Number.parseInt(text.slice(2), 16) : Number.NaN;
  return Number.isSafeInteger(n) && n >= 0 && n < SEED_LIMIT ? n : undefined;
}

/** The base seed when none is given: the clock (then printed), never Math.random. */
export function clockSeed(nowMs: number = Date.now()): number {
  return fmix32(Math.floor(nowMs) ^ Math.floor(nowMs / 2 ** 32));
}

/** FNV-1a over a string, 8 hex digits: content-derived file names, stable across runs. */
export function fnv1a(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}
