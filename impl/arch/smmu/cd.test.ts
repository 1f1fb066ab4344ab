import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type U64, u64 } from '../u64.js';
import {
  CD_DWORDS,
  type CdCheckFeatures,
  cdDefinedMask,
  cdEffectiveIps,
  cdFields,
  cdMaskWords,
  cdSplit,
  cdUsedBits,
  checkCd,
  decodeCd,
  decodeL1Cd,
  encodeCd,
  encodeL1Cd,
} from './cd.js';

const FEATURES: CdCheckFeatures = { gran4k: true, gran16k: true, gran64k: true, asid16: true, aarch64: true, ttendian: 0, stallModel: 1 };

/** Linux KUnit's `arm_smmu_test_make_s1_cd` (asid 1997): tsz 4, tg 2, irgn 2, orgn 1, sh 3, ips 1, TTBR 0xdaedbeefdeadbeef, MAIR 0x0abcdef012345678. */
const KUNIT_S1 = cdFields({
  t0sz: 4, tg0: 2, ir0: 2, or0: 1, sh0: 3, epd1: true, v: true, ips: 1, aa64: true, r: true, a: true, aset: true, asid: 1997,
  ttb0: 0x000d_beef_dead_bee0, mair: u64(0x1234_5678, 0x0abc_def0),
});

describe('CD codec (SPEC 5.4)', () => {
  it('places every field at its architected bit (hand-computed vector)', () => {
    const w = encodeCd(KUNIT_S1);
    // q0[31:0]: T0SZ 4 | TG0 2<<6 | IR0 2<<8 | OR0 1<<10 | SH0 3<<12 | EPD1 bit 30 | V bit 31.
    expect(w[0]).toEqual(u64(0xc000_3684, 0x07cd_e201));
    // q0[63:32]: IPS 1 (bit 32) | AA64 bit 41 | R 45 | A 46 | ASET 47 | ASID 1997 << 48.
    expect(w[1]).toEqual(u64(0xdead_bee0, 0x000d_beef));
    expect(w[2]).toEqual(u64(0, 0));
    expect(w[3]).toEqual(u64(0x1234_5678, 0x0abc_def0));
  });

  it('single-bit fields sit where SPEC 5.4 puts them', () => {
    const bitOf = (partial: Parameters<typeof cdFields>[0]): [number, number] => {
      const w = encodeCd(cdFields(partial));
      const i = w.findIndex((x) => x.lo !== 0 || x.hi !== 0);
      const x = w[i] as U64;
      return [i * 64 + (x.lo !== 0 ? Math.log2(x.lo) : 32 + Math.log2(x.hi)), i];
    };
    const expected: [Parameters<typeof cdFields>[0], number][] = [
      [{ epd0: true }, 14], [{ endi: true }, 15], [{ epd1: true }, 30], [{ v: true }, 31], [{ affd: true }, 35], [{ wxn: true }, 36],
      [{ uwxn: true }, 37], [{ tbi: 1 }, 38], [{ tbi: 2 }, 39], [{ pan: true }, 40], [{ aa64: true }, 41], [{ hd: true }, 42],
      [{ ha: true }, 43], [{ s: true }, 44], [{ r: true }, 45], [{ a: true }, 46], [{ aset: true }, 47], [{ asid: 1 }, 48],
      [{ nscfg0: true }, 64], [{ had0: true }, 65], [{ ttb0: 16 }, 68], [{ nscfg1: true }, 128], [{ had1: true }, 129], [{ ttb1: 16 }, 132],
      [{ t1sz: 1 }, 16], [{ tg1: 1 }, 22], [{ ir1: 1 }, 24], [{ or1: 1 }, 26], [{ sh1: 1 }, 28], [{ ips: 1 }, 32],
      [{ mair: u64(1, 0) }, 192], [{ amair: u64(0, 0x8000_0000) }, 319], [{ partid: 1 }, 352], [{ pmg: 1 }, 368],
    ];
    for (const [partial, bit] of expected) expect(bitOf(partial)[0], JSON.stringify(partial)).toBe(bit);
  });

  it('round-trips every defined bit', () => {
    const mask = cdDefinedMask();
    const word = fc.tuple(fc.integer({ min: 0, max: 0xffff_ffff }), fc.integer({ min: 0, max: 0xffff_ffff })).map(([lo, hi]) => u64(lo, hi));
    fc.assert(
      fc.property(fc.array(word, { minLength: CD_DWORDS, maxLength: CD_DWORDS }), (words) => {
        const masked = cdMaskWords(words, mask);
        expect(encodeCd(decodeCd(masked))).toEqual(masked);
      }),
      { seed: 13, numRuns: 300 },
    );
  });

  it('L1CD: V bit 0, L2Ptr [51:12]; S1Fmt split', () => {
    const w = encodeL1Cd({ v: true, l2ptr: 0x000f_1234_5678_9000 });
    expect(w).toEqual(u64(0x5678_9001, 0x000f_1234));
    expect(decodeL1Cd(w.lo, w.hi)).toEqual({ v: true, l2ptr: 0x000f_1234_5678_9000 });
    expect([cdSplit(0), cdSplit(1), cdSplit(2)]).toEqual([0, 6, 10]);
  });
});

describe('CD validity (C_BAD_CD, SPEC 5.4.1)', () => {
  const good = cdFields({ v: true, aa64: true, t0sz: 16, tg0: 0, ips: 5, asid: 3, r: true });
  it('accepts a well-formed AArch64 CD and rejects each ILLEGAL condition', () => {
    expect(checkCd(good, FEATURES)).toBeUndefined();
    const cases: [Parameters<typeof cdFields>[0], Partial<CdCheckFeatures>, string][] = [
      [{ v: false }, {}, 'V0'],
      [{ aa64: false }, {}, 'AA32'],
      [{ endi: true }, { ttendian: 2 }, 'ENDI'],
      [{ asid: 0x100 }, { asid16: false }, 'ASID'],
      [{ s: true }, {}, 'STALL'],
      [{ tg0: 3 }, {}, 'TG0'],
      [{ tg0: 1 }, { gran64k: false }, 'TG0'],
      [{ t0sz: 40 }, {}, 'T0SZ'],
      [{ t0sz: 15 }, {}, 'T0SZ'],
    ];
    for (const [partial, feat, code] of cases) expect(checkCd({ ...good, ...partial }, { ...FEATURES, ...feat })?.split(':')[0]).toBe(code);
    // EPD0 = 1: TTB0's controls are not looked at.
    expect(checkCd({ ...good, epd0: true, tg0: 3, t0sz: 0 }, FEATURES)).toBeUndefined();
  });
  it('IPS above the OAS (or reserved) is the OAS', () => {
    expect(cdEffectiveIps(5, 44)).toBe(44);
    expect(cdEffectiveIps(2, 48)).toBe(40);
    expect(cdEffectiveIps(7, 48)).toBe(48);
  });
});

describe('CD used bits (Linux arm_smmu_get_cd_used)', () => {
  it('V only when invalid; everything, less TTB0 and its controls when EPD0 = 1', () => {
    expect(cdUsedBits(encodeCd(cdFields({ asid: 5 })))[0]).toEqual(u64(0x8000_0000, 0));
    const used = cdUsedBits(encodeCd(KUNIT_S1));
    expect(used.every((w) => w.lo === 0xffff_ffff && w.hi === 0xffff_ffff)).toBe(true);
    const sva = cdUsedBits(encodeCd({ ...KUNIT_S1, epd0: true }));
    expect(sva[0]).toEqual(u64(0xffff_c000, 0xffff_ffff));
    expect(sva[1]).toEqual(u64(0x0000_000f, 0xfff0_0000));
  });
});
