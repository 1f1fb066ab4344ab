/**
 * Test helpers for the SMMU codec tests (arbitraries and hex helpers). Not used by the codecs.
 */
import fc from 'fast-check';
import { type U64, u64, u64And, u64FromHex, u64ToHex } from '../u64.js';

export const arbU32 = fc.integer({ min: 0, max: 0xffff_ffff });

export const arbU64: fc.Arbitrary<U64> = fc.tuple(arbU32, arbU32).map(([lo, hi]) => u64(lo, hi));

export function arbWords(n: number): fc.Arbitrary<U64[]> {
  return fc.array(arbU64, { minLength: n, maxLength: n });
}

/** Unsigned integer of `width` bits (width ≤ 53). */
export function arbBits(width: number): fc.Arbitrary<number> {
  return fc.integer({ min: 0, max: 2 ** width - 1 });
}

/** Address with bits [msb:lsb] random and all others zero. */
export function arbAddr(msb: number, lsb: number): fc.Arbitrary<number> {
  return arbBits(msb - lsb + 1).map((v) => v * 2 ** lsb);
}

/** U64 with only bits [63:lsb] random. */
export function arbHighU64(lsb: number): fc.Arbitrary<U64> {
  return arbU64.map((w) => {
    if (lsb >= 32) return u64(0, (w.hi >>> (lsb - 32)) << (lsb - 32));
    return u64(lsb === 0 ? w.lo : (w.lo >>> lsb) << lsb, w.hi);
  });
}

export function hex(words: readonly U64[]): string[] {
  return words.map(u64ToHex);
}

/** Parses 16-hex-digit strings (with or without `0x`, `_` separators allowed). */
export function w(text: string): U64 {
  const clean = '0x' + text.replace(/^0x/, '').replace(/_/g, '');
  const v = u64FromHex(clean);
  if (v === undefined) throw new Error(`bad hex ${text}`);
  return v;
}

export function maskWords(words: readonly U64[], mask: readonly U64[]): U64[] {
  return words.map((x, i) => u64And(x, mask[i] ?? u64(0, 0)));
}
