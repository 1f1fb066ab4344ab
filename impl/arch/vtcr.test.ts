import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { GRANULE_16K, GRANULE_4K, GRANULE_64K, granuleFromTg0, kvmStage2StartLevel, paSizeEncoding, sl0FromStartLevel, startLevelFromSl0 } from './granule.js';
import { decodeVtcr, encodeVtcr, type Vtcr } from './vtcr.js';
import { type U64 } from './u64.js';

function big(v: U64): bigint {
  return (BigInt(v.hi) << 32n) | BigInt(v.lo);
}

const BASE: Vtcr = { t0sz: 0, sl0: 0, irgn0: 0, orgn0: 0, sh0: 0, tg0: 0, ps: 0, vs: false, ha: false, hd: false, ds: false, sl2: false };

/** Field positions from reference §1.7, as a BigInt oracle. */
function refEncode(v: Vtcr): bigint {
  return (
    (1n << 31n) |
    BigInt(v.t0sz) |
    (BigInt(v.sl0) << 6n) |
    (BigInt(v.irgn0) << 8n) |
    (BigInt(v.orgn0) << 10n) |
    (BigInt(v.sh0) << 12n) |
    (BigInt(v.tg0) << 14n) |
    (BigInt(v.ps) << 16n) |
    (v.vs ? 1n << 19n : 0n) |
    (v.ha ? 1n << 21n : 0n) |
    (v.hd ? 1n << 22n : 0n) |
    (v.ds ? 1n << 32n : 0n) |
    (v.sl2 ? 1n << 33n : 0n)
  );
}

const arbVtcr: fc.Arbitrary<Vtcr> = fc.record({
  t0sz: fc.integer({ min: 0, max: 63 }),
  sl0: fc.integer({ min: 0, max: 3 }),
  irgn0: fc.integer({ min: 0, max: 3 }),
  orgn0: fc.integer({ min: 0, max: 3 }),
  sh0: fc.integer({ min: 0, max: 3 }),
  tg0: fc.integer({ min: 0, max: 3 }),
  ps: fc.integer({ min: 0, max: 7 }),
  vs: fc.boolean(),
  ha: fc.boolean(),
  hd: fc.boolean(),
  ds: fc.boolean(),
  sl2: fc.boolean(),
});

describe('VTCR_EL2 encoding', () => {
  it("KVM's VTCR for 4K pages and a 40-bit IPA", () => {
    // kvm_get_vtcr: RES1 | SH0 inner | ORGN0 = IRGN0 = WBWA | TG0 4K | PS 40-bit | T0SZ 24 | SL0 1.
    const start = kvmStage2StartLevel(GRANULE_4K, 40);
    const sl0 = sl0FromStartLevel(GRANULE_4K, start);
    expect(sl0).toEqual({ sl0: 1, sl2: false });
    const v: Vtcr = { ...BASE, t0sz: 64 - 40, sl0: 1, irgn0: 1, orgn0: 1, sh0: 3, tg0: GRANULE_4K.tg0, ps: paSizeEncoding(40) as number };
    expect(encodeVtcr(v)).toEqual({ lo: 0x8002_3558, hi: 0 });
    expect(decodeVtcr({ lo: 0x8002_3558, hi: 0 })).toEqual(v);
  });

  it('fixed vectors for every field', () => {
    expect(encodeVtcr(BASE)).toEqual({ lo: 0x8000_0000, hi: 0 }); // RES1 bit 31 only
    expect(encodeVtcr({ ...BASE, t0sz: 63 })).toEqual({ lo: 0x8000_003f, hi: 0 });
    expect(encodeVtcr({ ...BASE, sl0: 3 })).toEqual({ lo: 0x8000_00c0, hi: 0 });
    expect(encodeVtcr({ ...BASE, irgn0: 3 })).toEqual({ lo: 0x8000_0300, hi: 0 });
    expect(encodeVtcr({ ...BASE, orgn0: 3 })).toEqual({ lo: 0x8000_0c00, hi: 0 });
    expect(encodeVtcr({ ...BASE, sh0: 3 })).toEqual({ lo: 0x8000_3000, hi: 0 });
    expect(encodeVtcr({ ...BASE, tg0: 3 })).toEqual({ lo: 0x8000_c000, hi: 0 });
    expect(encodeVtcr({ ...BASE, ps: 7 })).toEqual({ lo: 0x8007_0000, hi: 0 });
    expect(encodeVtcr({ ...BASE, vs: true })).toEqual({ lo: 0x8008_0000, hi: 0 });
    expect(encodeVtcr({ ...BASE, ha: true })).toEqual({ lo: 0x8020_0000, hi: 0 });
    expect(encodeVtcr({ ...BASE, hd: true })).toEqual({ lo: 0x8040_0000, hi: 0 });
    expect(encodeVtcr({ ...BASE, ds: true })).toEqual({ lo: 0x8000_0000, hi: 1 });
    expect(encodeVtcr({ ...BASE, sl2: true })).toEqual({ lo: 0x8000_0000, hi: 2 });
  });

  it('16K/64K KVM and LPA2 configurations', () => {
    // 16K, 48-bit IPA: start L1 (SL0 2), T0SZ 16, TG0 0b10, PS 48 (5), VS, HA.
    const v16: Vtcr = { ...BASE, t0sz: 16, sl0: 2, irgn0: 1, orgn0: 1, sh0: 3, tg0: GRANULE_16K.tg0, ps: 5, vs: true, ha: true };
    expect(encodeVtcr(v16)).toEqual({ lo: 0x802d_b590, hi: 0 });
    // 64K, 52-bit IPA with LPA: start L1 (SL0 2), T0SZ 12, TG0 0b01, PS 52 (6).
    const v64: Vtcr = { ...BASE, t0sz: 12, sl0: 2, irgn0: 1, orgn0: 1, sh0: 3, tg0: GRANULE_64K.tg0, ps: 6 };
    expect(encodeVtcr(v64)).toEqual({ lo: 0x8006_758c, hi: 0 });
    // 4K LPA2, 52-bit IPA starting at level −1: DS = 1, SL2 = 1, SL0 = 0.
    const lpa2: Vtcr = { ...BASE, t0sz: 12, sl0: 0, irgn0: 1, orgn0: 1, sh0: 3, tg0: 0, ps: 6, ds: true, sl2: true };
    const enc = encodeVtcr(lpa2);
    expect(enc).toEqual({ lo: 0x8006_350c, hi: 3 });
    const dec = decodeVtcr(enc);
    expect(granuleFromTg0(dec.tg0)).toBe(GRANULE_4K);
    expect(startLevelFromSl0(GRANULE_4K, dec.sl0, { ds: dec.ds, sl2: dec.sl2 })).toBe(-1);
    expect(64 - dec.t0sz).toBe(52);
  });

  it('decode ignores RES1/RES0 and unrelated bits', () => {
    expect(decodeVtcr({ lo: 0, hi: 0 })).toEqual(BASE);
    const noisy = decodeVtcr({ lo: 0x7f90_0000, hi: 0xffff_fffc }); // bits 30:23, 20, 63:34
    expect(noisy).toEqual(BASE);
    expect(decodeVtcr({ lo: 0xffff_ffff, hi: 0xffff_ffff })).toEqual({ t0sz: 63, sl0: 3, irgn0: 3, orgn0: 3, sh0: 3, tg0: 3, ps: 7, vs: true, ha: true, hd: true, ds: true, sl2: true });
  });

  it('round trip against a BigInt oracle', () => {
    fc.assert(
      fc.property(arbVtcr, (v) => {
        const enc = encodeVtcr(v);
        expect(big(enc)).toBe(refEncode(v));
        expect(decodeVtcr(enc)).toEqual(v);
      }),
      { numRuns: 1000 },
    );
  });
});
