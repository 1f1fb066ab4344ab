import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  TWO_POW_32,
  ZERO64,
  bit,
  bits,
  genmask,
  mask32,
  u64,
  u64And,
  u64AndNot,
  u64Equal,
  u64FromHex,
  u64FromNumber,
  u64IsZero,
  u64Or,
  u64ToHex,
  u64ToNumber,
  u64Xor,
  withBit,
  withBits,
  type U64,
} from './u64.js';

// --- BigInt oracle (tests only; BigInt is banned in impl/) ---

const M64 = (1n << 64n) - 1n;

function big(v: U64): bigint {
  return (BigInt(v.hi) << 32n) | BigInt(v.lo);
}

function fromBig(x: bigint): U64 {
  return { lo: Number(x & 0xffff_ffffn), hi: Number((x >> 32n) & 0xffff_ffffn) };
}

function refMask(msb: number, lsb: number): bigint {
  return ((1n << BigInt(msb - lsb + 1)) - 1n) << BigInt(lsb);
}

function refBits(x: bigint, msb: number, lsb: number): number {
  return Number((x & refMask(msb, lsb)) >> BigInt(lsb));
}

function refWithBits(x: bigint, msb: number, lsb: number, field: number): bigint {
  const m = refMask(msb, lsb);
  return ((x & ~m) | ((BigInt(field) << BigInt(lsb)) & m)) & M64;
}

/** Deterministic pseudo-random 64-bit words (xorshift), so the exhaustive sweep is reproducible. */
function* words(seed: number, count: number): Generator<bigint> {
  let s = BigInt(seed) | 1n;
  for (let i = 0; i < count; i++) {
    s ^= (s << 13n) & M64;
    s ^= s >> 7n;
    s ^= (s << 17n) & M64;
    yield s & M64;
  }
}

/** Every (msb, lsb) with 0 ≤ lsb ≤ msb ≤ 63 and width ≤ 53. */
function fieldPositions(): [number, number][] {
  const out: [number, number][] = [];
  for (let lsb = 0; lsb < 64; lsb++) {
    for (let msb = lsb; msb < 64 && msb - lsb + 1 <= 53; msb++) out.push([msb, lsb]);
  }
  return out;
}

const SPECIAL_WORDS: bigint[] = [0n, M64, 0x8000_0000_0000_0000n, 0x0000_0000_8000_0000n, 0x0000_0001_0000_0000n, 0xaaaa_aaaa_aaaa_aaaan, 0x5555_5555_5555_5555n, 0xdead_beef_cafe_f00dn];

const arbU64 = fc.record({ lo: fc.nat({ max: 0xffff_ffff }), hi: fc.nat({ max: 0xffff_ffff }) });
const arbField = fc
  .tuple(fc.integer({ min: 0, max: 63 }), fc.integer({ min: 1, max: 53 }))
  .filter(([lsb, width]) => lsb + width <= 64)
  .map(([lsb, width]) => ({ lsb, msb: lsb + width - 1, width }));

describe('u64 construction and conversion', () => {
  it('u64 normalises halves to unsigned 32-bit', () => {
    expect(u64(-1, -1)).toEqual({ lo: 0xffff_ffff, hi: 0xffff_ffff });
    expect(u64(0x1_0000_0001, 2)).toEqual({ lo: 1, hi: 2 });
    expect(u64(0x8000_0000 | 0, 0)).toEqual({ lo: 0x8000_0000, hi: 0 });
  });

  it('u64FromNumber / u64ToNumber split and join below 2^53', () => {
    expect(u64FromNumber(0)).toEqual({ lo: 0, hi: 0 });
    expect(u64FromNumber(0xffff_ffff)).toEqual({ lo: 0xffff_ffff, hi: 0 });
    expect(u64FromNumber(TWO_POW_32)).toEqual({ lo: 0, hi: 1 });
    expect(u64FromNumber(2 ** 52 + 0x1234_5678)).toEqual({ lo: 0x1234_5678, hi: 0x10_0000 });
    expect(u64FromNumber(Number.MAX_SAFE_INTEGER)).toEqual({ lo: 0xffff_ffff, hi: 0x1f_ffff });
    expect(u64ToNumber({ lo: 0xffff_ffff, hi: 0x1f_ffff })).toBe(Number.MAX_SAFE_INTEGER);
    fc.assert(
      fc.property(fc.nat({ max: Number.MAX_SAFE_INTEGER }), (n) => {
        const v = u64FromNumber(n);
        expect(big(v)).toBe(BigInt(n));
        expect(u64ToNumber(v)).toBe(n);
      }),
    );
  });

  it('ZERO64 is frozen zero; equality and zero tests', () => {
    expect(ZERO64).toEqual({ lo: 0, hi: 0 });
    expect(Object.isFrozen(ZERO64)).toBe(true);
    expect(u64IsZero(ZERO64)).toBe(true);
    expect(u64IsZero({ lo: 0, hi: 1 })).toBe(false);
    expect(u64IsZero({ lo: 1, hi: 0 })).toBe(false);
    expect(u64Equal({ lo: 1, hi: 2 }, { lo: 1, hi: 2 })).toBe(true);
    expect(u64Equal({ lo: 1, hi: 2 }, { lo: 2, hi: 1 })).toBe(false);
  });

  it('logical operations match BigInt', () => {
    fc.assert(
      fc.property(arbU64, arbU64, (a, b) => {
        const A = big(a);
        const B = big(b);
        expect(big(u64Or(a, b))).toBe(A | B);
        expect(big(u64And(a, b))).toBe(A & B);
        expect(big(u64Xor(a, b))).toBe(A ^ B);
        expect(big(u64AndNot(a, b))).toBe(A & ~B & M64);
        for (const r of [u64Or(a, b), u64And(a, b), u64Xor(a, b), u64AndNot(a, b)]) {
          expect(r.lo).toBeGreaterThanOrEqual(0);
          expect(r.hi).toBeGreaterThanOrEqual(0);
        }
      }),
    );
    expect(u64AndNot({ lo: 0xffff_ffff, hi: 0xffff_ffff }, { lo: 0x8000_0001, hi: 0x8000_0000 })).toEqual({ lo: 0x7fff_fffe, hi: 0x7fff_ffff });
  });
});

describe('hex', () => {
  it('prints 16 lower-case digits', () => {
    expect(u64ToHex({ lo: 0, hi: 0 })).toBe('0x0000000000000000');
    expect(u64ToHex({ lo: 0xdeadbeef, hi: 0x1 })).toBe('0x00000001deadbeef');
    expect(u64ToHex({ lo: 0xffff_ffff, hi: 0xffff_ffff })).toBe('0xffffffffffffffff');
    expect(u64ToHex({ lo: 0x7ff, hi: 0x0040_0000 })).toBe('0x00400000000007ff');
  });

  it('parses 1..16 hex digits, any case', () => {
    expect(u64FromHex('0x0')).toEqual({ lo: 0, hi: 0 });
    expect(u64FromHex('0x1')).toEqual({ lo: 1, hi: 0 });
    expect(u64FromHex('0x123456789')).toEqual({ lo: 0x2345_6789, hi: 1 });
    expect(u64FromHex('0xFFFFFFFFFFFFFFFF')).toEqual({ lo: 0xffff_ffff, hi: 0xffff_ffff });
    expect(u64FromHex('0xDeadBeefCafeF00d')).toEqual({ lo: 0xcafe_f00d, hi: 0xdead_beef });
    expect(u64FromHex('0x8000000000000000')).toEqual({ lo: 0, hi: 0x8000_0000 });
  });

  it('rejects malformed text', () => {
    for (const text of ['', '0x', '0x10000000000000000', '123', 'x12', '0X12', '0x12g', ' 0x1', '0x1 ', '-0x1', '0x-1']) {
      expect(u64FromHex(text)).toBeUndefined();
    }
  });

  it('round-trips through text', () => {
    fc.assert(
      fc.property(arbU64, (v) => {
        const text = u64ToHex(v);
        expect(text).toBe('0x' + big(v).toString(16).padStart(16, '0'));
        expect(u64FromHex(text)).toEqual(v);
        expect(u64FromHex(text.toUpperCase().replace('0X', '0x'))).toEqual(v);
      }),
    );
  });
});

describe('mask32', () => {
  it('is the low-width mask for 0..32', () => {
    for (let w = 0; w <= 32; w++) expect(mask32(w)).toBe(Number((1n << BigInt(w)) - 1n));
  });
});

describe('bits / withBits / bit / genmask against BigInt, every field position', () => {
  const positions = fieldPositions();

  it('covers 2014 field positions', () => {
    expect(positions.length).toBe(2014);
  });

  it('bits() extracts every field of many words', () => {
    let checked = 0;
    for (const [msb, lsb] of positions) {
      for (const w of [...SPECIAL_WORDS, ...words(msb * 64 + lsb + 1, 6)]) {
        const v = fromBig(w);
        const got = bits(v.lo, v.hi, msb, lsb);
        const want = refBits(w, msb, lsb);
        if (got !== want) expect({ msb, lsb, word: w.toString(16), got }).toEqual({ msb, lsb, word: w.toString(16), got: want });
        checked++;
      }
    }
    expect(checked).toBe(2014 * 14);
  });

  it('withBits() replaces every field and nothing else', () => {
    for (const [msb, lsb] of positions) {
      const width = msb - lsb + 1;
      const fieldGen = words(msb * 131 + lsb + 7, 4);
      for (const w of [...SPECIAL_WORDS.slice(0, 4), ...words(msb * 64 + lsb + 3, 3)]) {
        const fields = [0, 2 ** width - 1, 1, 2 ** (width - 1), ...[...fieldGen].map((f) => Number(f & ((1n << BigInt(width)) - 1n)))];
        for (const field of fields) {
          const got = withBits(fromBig(w), msb, lsb, field);
          const want = refWithBits(w, msb, lsb, field);
          if (big(got) !== want || got.lo < 0 || got.hi < 0) {
            expect({ msb, lsb, field, got: u64ToHex(got) }).toEqual({ msb, lsb, field, got: u64ToHex(fromBig(want)) });
          }
          expect(bits(got.lo, got.hi, msb, lsb)).toBe(field);
        }
      }
    }
  });

  it('bit() and withBit() for every bit', () => {
    for (let n = 0; n < 64; n++) {
      for (const w of SPECIAL_WORDS) {
        const v = fromBig(w);
        expect(bit(v.lo, v.hi, n)).toBe(Number((w >> BigInt(n)) & 1n));
        expect(big(withBit(v, n, true))).toBe(w | (1n << BigInt(n)));
        expect(big(withBit(v, n, false))).toBe(w & ~(1n << BigInt(n)));
        expect(big(withBit(v, n, 1))).toBe(w | (1n << BigInt(n)));
        expect(big(withBit(v, n, 0))).toBe(w & ~(1n << BigInt(n)));
      }
    }
  });

  it('genmask() for every msb ≥ lsb (all 2080 pairs, any width)', () => {
    for (let lsb = 0; lsb < 64; lsb++) {
      for (let msb = lsb; msb < 64; msb++) {
        const g = genmask(msb, lsb);
        expect(big(g)).toBe(refMask(msb, lsb));
        expect(g.lo).toBeGreaterThanOrEqual(0);
        expect(g.hi).toBeGreaterThanOrEqual(0);
      }
    }
  });
});

describe('field edge cases', () => {
  it('fields straddling bit 32', () => {
    // 0x0000_0003_c000_0000: bits 33:30 all set.
    expect(bits(0xc000_0000, 0x3, 33, 30)).toBe(0xf);
    expect(bits(0xc000_0000, 0x3, 33, 31)).toBe(0x7);
    expect(bits(0xc000_0000, 0x3, 32, 31)).toBe(0x3);
    expect(bits(0x8000_0000, 0x0, 32, 31)).toBe(0x1);
    expect(bits(0x0000_0000, 0x1, 32, 31)).toBe(0x2);
    // Typed-annotation metadata field 35:4 (32 bits wide, straddling).
    expect(bits(0xffff_fff0, 0xf, 35, 4)).toBe(0xffff_ffff);
    expect(bits(0x1234_5670, 0x9, 35, 4)).toBe(0x9123_4567);
    expect(withBits(ZERO64, 35, 4, 0x9123_4567)).toEqual({ lo: 0x1234_5670, hi: 0x9 });
    expect(withBits({ lo: 0xffff_ffff, hi: 0xffff_ffff }, 32, 31, 0)).toEqual({ lo: 0x7fff_ffff, hi: 0xffff_fffe });
    expect(withBits(ZERO64, 32, 31, 3)).toEqual({ lo: 0x8000_0000, hi: 0x1 });
  });

  it('bit 63 and fields reaching it', () => {
    expect(bit(0, 0x8000_0000, 63)).toBe(1);
    expect(bit(0xffff_ffff, 0x7fff_ffff, 63)).toBe(0);
    expect(bits(0, 0x8000_0000, 63, 63)).toBe(1);
    expect(bits(0, 0xf000_0000, 63, 60)).toBe(0xf);
    expect(withBits(ZERO64, 63, 60, 0x1)).toEqual({ lo: 0, hi: 0x1000_0000 });
    expect(withBits(ZERO64, 63, 63, 1)).toEqual({ lo: 0, hi: 0x8000_0000 });
    // Widest straddling fields that end at bit 63 (53 bits).
    expect(bits(0xffff_f800, 0xffff_ffff, 63, 11)).toBe(2 ** 53 - 1);
    expect(bits(0x0000_0000, 0x8000_0000, 63, 11)).toBe(2 ** 52);
    expect(bits(0x0000_0000, 0x8000_0000, 63, 20)).toBe(2 ** 43);
    expect(bits(0x8000_0000, 0x8000_0000, 63, 31)).toBe(2 ** 32 + 1);
    expect(withBits(ZERO64, 63, 11, 2 ** 52)).toEqual({ lo: 0, hi: 0x8000_0000 });
    expect(withBits(ZERO64, 63, 11, 2 ** 53 - 1)).toEqual({ lo: 0xffff_f800, hi: 0xffff_ffff });
  });

  it('32-bit-wide fields in each half and straddling', () => {
    expect(bits(0xffff_ffff, 0, 31, 0)).toBe(0xffff_ffff);
    expect(bits(0, 0xffff_ffff, 63, 32)).toBe(0xffff_ffff);
    expect(bits(0xffff_0000, 0x0000_ffff, 47, 16)).toBe(0xffff_ffff);
    expect(bits(0x8000_0000, 0x8000_0000, 62, 31)).toBe(1);
    expect(withBits(ZERO64, 31, 0, 0xffff_ffff)).toEqual({ lo: 0xffff_ffff, hi: 0 });
    expect(withBits(ZERO64, 63, 32, 0xffff_ffff)).toEqual({ lo: 0, hi: 0xffff_ffff });
    expect(withBits(ZERO64, 47, 16, 0x8765_4321)).toEqual({ lo: 0x4321_0000, hi: 0x8765 });
    expect(withBits({ lo: 0xffff_ffff, hi: 0xffff_ffff }, 47, 16, 0)).toEqual({ lo: 0x0000_ffff, hi: 0xffff_0000 });
  });

  it('results are never negative', () => {
    expect(bits(0x8000_0000, 0, 31, 31)).toBe(1);
    expect(bits(0x8000_0000, 0, 31, 0)).toBe(0x8000_0000);
    expect(bits(0, 0x8000_0000, 63, 32)).toBe(0x8000_0000);
    expect(bits(0, 0xffff_ffff, 63, 31)).toBe(0x1_ffff_fffe);
  });
});

describe('fast-check round trips', () => {
  it('withBits then bits returns the field; other bits unchanged', () => {
    fc.assert(
      fc.property(arbU64, arbField, fc.double({ min: 0, max: 1, noNaN: true }), (v, { msb, lsb, width }, r) => {
        const field = Math.min(2 ** width - 1, Math.floor(r * 2 ** width));
        const out = withBits(v, msb, lsb, field);
        expect(bits(out.lo, out.hi, msb, lsb)).toBe(field);
        expect(big(out) & ~refMask(msb, lsb) & M64).toBe(big(v) & ~refMask(msb, lsb) & M64);
      }),
      { numRuns: 2000 },
    );
  });

  it('bits then withBits is the identity', () => {
    fc.assert(
      fc.property(arbU64, arbField, (v, { msb, lsb }) => {
        expect(withBits(v, msb, lsb, bits(v.lo, v.hi, msb, lsb))).toEqual(v);
      }),
      { numRuns: 2000 },
    );
  });

  it('bits agrees with the masked value from genmask', () => {
    fc.assert(
      fc.property(arbU64, arbField, (v, { msb, lsb }) => {
        const masked = u64And(v, genmask(msb, lsb));
        expect(bits(v.lo, v.hi, msb, lsb)).toBe(refBits(big(masked), msb, lsb));
        expect(bits(v.lo, v.hi, msb, lsb)).toBe(refBits(big(v), msb, lsb));
      }),
      { numRuns: 2000 },
    );
  });
});
