/**
 * 64-bit architectural values as two unsigned 32-bit halves.
 *
 * Descriptors, STEs and commands are 64-bit words, but JavaScript numbers are exact only up to
 * 2^53 and BigInt allocates, so hot paths keep a value as `lo` (bits 31:0) and `hi` (bits 63:32),
 * both in [0, 2^32). Addresses (at most 52 bits) are plain numbers.
 */

export interface U64 {
  readonly lo: number;
  readonly hi: number;
}

export const TWO_POW_32 = 0x1_0000_0000;

export const ZERO64: U64 = Object.freeze({ lo: 0, hi: 0 });

export function u64(lo: number, hi: number): U64 {
  return { lo: lo >>> 0, hi: hi >>> 0 };
}

/** Splits a non-negative integer below 2^53 into halves. */
export function u64FromNumber(value: number): U64 {
  return { lo: value >>> 0, hi: Math.floor(value / TWO_POW_32) >>> 0 };
}

/** Exact only when the value is below 2^53; callers use it for addresses and small fields. */
export function u64ToNumber(value: U64): number {
  return value.hi * TWO_POW_32 + value.lo;
}

export function u64Equal(a: U64, b: U64): boolean {
  return a.lo === b.lo && a.hi === b.hi;
}

export function u64IsZero(value: U64): boolean {
  return value.lo === 0 && value.hi === 0;
}

export function u64Or(a: U64, b: U64): U64 {
  return { lo: (a.lo | b.lo) >>> 0, hi: (a.hi | b.hi) >>> 0 };
}

export function u64And(a: U64, b: U64): U64 {
  return { lo: (a.lo & b.lo) >>> 0, hi: (a.hi & b.hi) >>> 0 };
}

export function u64Xor(a: U64, b: U64): U64 {
  return { lo: (a.lo ^ b.lo) >>> 0, hi: (a.hi ^ b.hi) >>> 0 };
}

export function u64AndNot(a: U64, b: U64): U64 {
  return { lo: (a.lo & ~b.lo) >>> 0, hi: (a.hi & ~b.hi) >>> 0 };
}

export function u64ToHex(value: U64): string {
  return '0x' + value.hi.toString(16).padStart(8, '0') + value.lo.toString(16).padStart(8, '0');
}

/** Parses `0x` followed by 1..16 hex digits; returns undefined for anything else. */
export function u64FromHex(text: string): U64 | undefined {
  const match = /^0x([0-9a-fA-F]{1,16})$/.exec(text);
  if (!match || match[1] === undefined) return undefined;
  const digits = match[1].padStart(16, '0');
  return { lo: parseInt(digits.slice(8), 16) >>> 0, hi: parseInt(digits.slice(0, 8), 16) >>> 0 };
}

/** Mask of `width` low bits, for widths 0..32, as an unsigned 32-bit number. */
export function mask32(width: number): number {
  return width >= 32 ? 0xffff_ffff : ((1 << width) >>> 0) - 1;
}

/**
 * Bits msb..lsb (inclusive, 0 ≤ lsb ≤ msb ≤ 63) of the value as a number. The field may be up to
 * 53 bits wide and may straddle the two halves.
 */
export function bits(lo: number, hi: number, msb: number, lsb: number): number {
  const width = msb - lsb + 1;
  if (lsb >= 32) return ((hi >>> (lsb - 32)) & mask32(width)) >>> 0;
  if (msb < 32) return ((lo >>> lsb) & mask32(width)) >>> 0;
  const lowWidth = 32 - lsb;
  const lowPart = lo >>> lsb;
  const highPart = (hi & mask32(msb - 31)) >>> 0;
  return highPart * 2 ** lowWidth + lowPart;
}

/** The value of bit n (0..63) as 0 or 1. */
export function bit(lo: number, hi: number, n: number): number {
  return n >= 32 ? (hi >>> (n - 32)) & 1 : (lo >>> n) & 1;
}

/** Returns the value with bits msb..lsb replaced by `field` (which must fit the width). */
export function withBits(value: U64, msb: number, lsb: number, field: number): U64 {
  const width = msb - lsb + 1;
  let lo = value.lo;
  let hi = value.hi;
  if (lsb >= 32) {
    const m = (mask32(width) << (lsb - 32)) >>> 0;
    hi = ((hi & ~m) | ((field << (lsb - 32)) & m)) >>> 0;
  } else if (msb < 32) {
    const m = (mask32(width) << lsb) >>> 0;
    lo = ((lo & ~m) | ((field << lsb) & m)) >>> 0;
  } else {
    const lowWidth = 32 - lsb;
    const lowMask = (mask32(lowWidth) << lsb) >>> 0;
    const lowField = field % 2 ** lowWidth;
    const highField = Math.floor(field / 2 ** lowWidth);
    const highMask = mask32(msb - 31);
    lo = ((lo & ~lowMask) | ((lowField << lsb) >>> 0)) >>> 0;
    hi = ((hi & ~highMask) | (highField & highMask)) >>> 0;
  }
  return { lo, hi };
}

/** Returns the value with bit n set to `on`. */
export function withBit(value: U64, n: number, on: boolean | number): U64 {
  return withBits(value, n, n, on ? 1 : 0);
}

/** GENMASK(msb, lsb) as a U64. */
export function genmask(msb: number, lsb: number): U64 {
  const loMsb = Math.min(msb, 31);
  const lo = lsb <= 31 ? (mask32(loMsb - lsb + 1) << lsb) >>> 0 : 0;
  const hiLsb = Math.max(lsb, 32);
  const hi = msb >= 32 ? (mask32(msb - hiLsb + 1) << (hiLsb - 32)) >>> 0 : 0;
  return { lo, hi };
}
