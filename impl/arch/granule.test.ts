import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  GRANULES,
  GRANULE_4K,
  GRANULE_16K,
  GRANULE_64K,
  LAST_LEVEL,
  checkStage2Config,
  granuleByKind,
  granuleFromTg0,
  indexAt,
  kvmStage2StartLevel,
  leafAllowedAt,
  leafSizes,
  levelShift,
  levelSize,
  maxIaBits,
  paSizeEncoding,
  paSizeFromEncoding,
  sl0FromStartLevel,
  startIndex,
  startLevelFromSl0,
  type Granule,
  type GranuleKind,
} from './granule.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;

describe('granule constants', () => {
  it('4K / 16K / 64K basic geometry and encodings', () => {
    expect(GRANULE_4K).toMatchObject({ kind: '4K', shift: 12, size: 4096, bitsPerLevel: 9, entriesPerTable: 512, tg0: 0b00, tlbiTg: 1, sl0Base: 2, kvmMinBlockLevel: 1, firstLevel: -1 });
    expect(GRANULE_16K).toMatchObject({ kind: '16K', shift: 14, size: 16384, bitsPerLevel: 11, entriesPerTable: 2048, tg0: 0b10, tlbiTg: 2, sl0Base: 3, kvmMinBlockLevel: 2, firstLevel: 0 });
    expect(GRANULE_64K).toMatchObject({ kind: '64K', shift: 16, size: 65536, bitsPerLevel: 13, entriesPerTable: 8192, tg0: 0b01, tlbiTg: 3, sl0Base: 3, kvmMinBlockLevel: 2, firstLevel: 1 });
    expect(GRANULES.map((g) => g.kind)).toEqual(['4K', '16K', '64K']);
    for (const g of GRANULES) expect(Object.isFrozen(g)).toBe(true);
  });

  it('granuleByKind and granuleFromTg0', () => {
    expect(granuleByKind('4K')).toBe(GRANULE_4K);
    expect(granuleByKind('16K')).toBe(GRANULE_16K);
    expect(granuleByKind('64K')).toBe(GRANULE_64K);
    expect(granuleFromTg0(0b00)).toBe(GRANULE_4K);
    expect(granuleFromTg0(0b01)).toBe(GRANULE_64K);
    expect(granuleFromTg0(0b10)).toBe(GRANULE_16K);
    expect(granuleFromTg0(0b11)).toBeUndefined();
  });

  it('PA size encodings (PS / OAS / S2PS)', () => {
    const table: [number, number][] = [[0, 32], [1, 36], [2, 40], [3, 42], [4, 44], [5, 48], [6, 52]];
    for (const [enc, bits] of table) {
      expect(paSizeFromEncoding(enc)).toBe(bits);
      expect(paSizeEncoding(bits)).toBe(enc);
    }
    expect(paSizeFromEncoding(7)).toBeUndefined();
    expect(paSizeEncoding(46)).toBeUndefined();
    expect(paSizeEncoding(64)).toBeUndefined();
  });
});

describe('level shifts and sizes (reference §1.1)', () => {
  const table: [GranuleKind, number, number, number][] = [
    ['4K', -1, 48, 256 * TiB],
    ['4K', 0, 39, 512 * GiB],
    ['4K', 1, 30, GiB],
    ['4K', 2, 21, 2 * MiB],
    ['4K', 3, 12, 4 * KiB],
    ['16K', 0, 47, 128 * TiB],
    ['16K', 1, 36, 64 * GiB],
    ['16K', 2, 25, 32 * MiB],
    ['16K', 3, 14, 16 * KiB],
    ['64K', 1, 42, 4 * TiB],
    ['64K', 2, 29, 512 * MiB],
    ['64K', 3, 16, 64 * KiB],
  ];
  it.each(table)('%s level %i: shift %i, size %i', (kind, level, shift, size) => {
    const g = granuleByKind(kind);
    expect(levelShift(g, level)).toBe(shift);
    expect(levelSize(g, level)).toBe(size);
  });

  it('index bits per level (48-bit IA; 52-bit top levels)', () => {
    // [granule, level, msb, lsb] from the §1.1 index table.
    const idx: [Granule, number, number, number][] = [
      [GRANULE_4K, 0, 47, 39],
      [GRANULE_4K, 1, 38, 30],
      [GRANULE_4K, 2, 29, 21],
      [GRANULE_4K, 3, 20, 12],
      [GRANULE_16K, 1, 46, 36],
      [GRANULE_16K, 2, 35, 25],
      [GRANULE_16K, 3, 24, 14],
      [GRANULE_64K, 2, 41, 29],
      [GRANULE_64K, 3, 28, 16],
    ];
    for (const [g, level, msb, lsb] of idx) {
      expect(levelShift(g, level)).toBe(lsb);
      // Only bits msb..lsb select the entry: set every bit outside, then each one inside.
      const width = msb - lsb + 1;
      expect(width).toBe(g.bitsPerLevel);
      const noise = 2 ** 52 - 1 - (2 ** (msb + 1) - 2 ** lsb);
      expect(indexAt(g, noise, level)).toBe(0);
      for (let b = lsb; b <= msb; b++) expect(indexAt(g, noise + 2 ** b, level)).toBe(2 ** (b - lsb));
    }
    // Tops: 4K L−1 [51:48]; 16K L0 [47] (1 bit, [51:47] with LPA2); 64K L1 [47:42] ([51:42] with LPA).
    expect(indexAt(GRANULE_4K, 0xf * 2 ** 48, -1)).toBe(0xf);
    expect(indexAt(GRANULE_4K, 2 ** 47 + 2 ** 39, 0)).toBe(0x101);
    expect(indexAt(GRANULE_16K, 2 ** 47, 0)).toBe(1);
    expect(indexAt(GRANULE_16K, 0x1f * 2 ** 47, 0)).toBe(0x1f);
    expect(indexAt(GRANULE_64K, 0x3f * 2 ** 42, 1)).toBe(0x3f);
    expect(indexAt(GRANULE_64K, 0x3ff * 2 ** 42, 1)).toBe(0x3ff);
  });

  it('indexAt matches a BigInt reference for any 52-bit address', () => {
    fc.assert(
      fc.property(fc.constantFrom(...GRANULES), fc.integer({ min: -1, max: 3 }), fc.nat({ max: 2 ** 52 - 1 }), (g, level, addr) => {
        const want = Number((BigInt(addr) >> BigInt(levelShift(g, level))) & BigInt(g.entriesPerTable - 1));
        expect(indexAt(g, addr, level)).toBe(want);
      }),
      { numRuns: 1000 },
    );
  });

  it('startIndex spans concatenated tables', () => {
    // 4K, 40-bit IA starting at L1 with 2 tables: 1024 entries over bits 39:30.
    expect(startIndex(GRANULE_4K, 2 ** 40 - GiB, 1, 1024)).toBe(1023);
    expect(startIndex(GRANULE_4K, 512 * GiB + 3 * GiB + 5, 1, 1024)).toBe(515);
    // 16K, 40-bit IA at L2 with 16 tables: index = bits 39:25 (32768 entries).
    expect(startIndex(GRANULE_16K, 2 ** 40 - 32 * MiB, 2, 32768)).toBe(32767);
    // A single table: same as indexAt.
    expect(startIndex(GRANULE_64K, 0x3f * 2 ** 42 + 123, 1, 64)).toBe(0x3f);
  });
});

describe('where leaves are legal (reference §1.2)', () => {
  it('leafAllowedAt table without and with 52-bit features', () => {
    // [granule, level, plain, lpa2, oa52]
    const table: [Granule, number, boolean, boolean, boolean][] = [
      [GRANULE_4K, -1, false, false, false],
      [GRANULE_4K, 0, false, true, false],
      [GRANULE_4K, 1, true, true, true],
      [GRANULE_4K, 2, true, true, true],
      [GRANULE_4K, 3, true, true, true],
      [GRANULE_16K, 0, false, false, false],
      [GRANULE_16K, 1, false, true, false],
      [GRANULE_16K, 2, true, true, true],
      [GRANULE_16K, 3, true, true, true],
      [GRANULE_64K, 1, false, false, true],
      [GRANULE_64K, 2, true, true, true],
      [GRANULE_64K, 3, true, true, true],
    ];
    for (const [g, level, plain, lpa2, oa52] of table) {
      expect([g.kind, level, leafAllowedAt(g, level)]).toEqual([g.kind, level, plain]);
      expect([g.kind, level, leafAllowedAt(g, level, { lpa2: true })]).toEqual([g.kind, level, lpa2]);
      expect([g.kind, level, leafAllowedAt(g, level, { oa52: true })]).toEqual([g.kind, level, oa52]);
    }
  });

  it('leaf sizes ascending', () => {
    expect(leafSizes(GRANULE_4K)).toEqual([4 * KiB, 2 * MiB, GiB]);
    expect(leafSizes(GRANULE_4K, { lpa2: true })).toEqual([4 * KiB, 2 * MiB, GiB, 512 * GiB]);
    expect(leafSizes(GRANULE_16K)).toEqual([16 * KiB, 32 * MiB]);
    expect(leafSizes(GRANULE_16K, { lpa2: true })).toEqual([16 * KiB, 32 * MiB, 64 * GiB]);
    expect(leafSizes(GRANULE_64K)).toEqual([64 * KiB, 512 * MiB]);
    expect(leafSizes(GRANULE_64K, { oa52: true })).toEqual([64 * KiB, 512 * MiB, 4 * TiB]);
    expect(leafSizes(GRANULE_64K, { lpa2: true })).toEqual([64 * KiB, 512 * MiB]);
  });
});

describe('SL0 ↔ start level (reference §1.7)', () => {
  type Opts = { ds?: boolean; sl2?: boolean; ttst?: boolean };
  // [granule, sl0, options, start level or undefined (reserved)]
  const decode: [Granule, number, Opts, number | undefined][] = [
    [GRANULE_4K, 0, {}, 2],
    [GRANULE_4K, 1, {}, 1],
    [GRANULE_4K, 2, {}, 0],
    [GRANULE_4K, 3, {}, undefined],
    [GRANULE_4K, 3, { ttst: true }, 3],
    [GRANULE_4K, 0, { ds: true }, 2],
    [GRANULE_4K, 0, { ds: true, sl2: true }, -1],
    [GRANULE_4K, 1, { ds: true, sl2: true }, undefined],
    [GRANULE_4K, 2, { ds: true, sl2: true }, undefined],
    [GRANULE_4K, 3, { ds: true, sl2: true, ttst: true }, undefined],
    // SL2 without DS is not an encoding this model accepts.
    [GRANULE_4K, 0, { sl2: true }, undefined],
    [GRANULE_16K, 0, {}, 3],
    [GRANULE_16K, 1, {}, 2],
    [GRANULE_16K, 2, {}, 1],
    [GRANULE_16K, 3, {}, undefined],
    [GRANULE_16K, 3, { ttst: true }, undefined],
    [GRANULE_16K, 3, { ds: true }, 0],
    [GRANULE_16K, 0, { ds: true, sl2: true }, undefined],
    [GRANULE_64K, 0, {}, 3],
    [GRANULE_64K, 1, {}, 2],
    [GRANULE_64K, 2, {}, 1],
    [GRANULE_64K, 3, {}, undefined],
    [GRANULE_64K, 3, { ds: true, ttst: true }, undefined],
    [GRANULE_64K, 0, { ds: true, sl2: true }, undefined],
  ];
  it.each(decode)('%# decode', (g, sl0, opts, level) => {
    expect(startLevelFromSl0(g, sl0, opts)).toBe(level);
  });

  it('encode: every legal level to SL0/SL2, and no encoding for the others', () => {
    const all: Opts = { ds: true, ttst: true };
    expect(sl0FromStartLevel(GRANULE_4K, -1, all)).toEqual({ sl0: 0, sl2: true });
    expect(sl0FromStartLevel(GRANULE_4K, 0)).toEqual({ sl0: 2, sl2: false });
    expect(sl0FromStartLevel(GRANULE_4K, 1)).toEqual({ sl0: 1, sl2: false });
    expect(sl0FromStartLevel(GRANULE_4K, 2)).toEqual({ sl0: 0, sl2: false });
    expect(sl0FromStartLevel(GRANULE_4K, 3, { ttst: true })).toEqual({ sl0: 3, sl2: false });
    expect(sl0FromStartLevel(GRANULE_4K, 3)).toBeUndefined();
    expect(sl0FromStartLevel(GRANULE_4K, -1)).toBeUndefined();
    expect(sl0FromStartLevel(GRANULE_16K, 0, { ds: true })).toEqual({ sl0: 3, sl2: false });
    expect(sl0FromStartLevel(GRANULE_16K, 0)).toBeUndefined();
    expect(sl0FromStartLevel(GRANULE_16K, 1)).toEqual({ sl0: 2, sl2: false });
    expect(sl0FromStartLevel(GRANULE_16K, 2)).toEqual({ sl0: 1, sl2: false });
    expect(sl0FromStartLevel(GRANULE_16K, 3)).toEqual({ sl0: 0, sl2: false });
    expect(sl0FromStartLevel(GRANULE_16K, -1, all)).toBeUndefined();
    expect(sl0FromStartLevel(GRANULE_64K, 0, all)).toBeUndefined();
    expect(sl0FromStartLevel(GRANULE_64K, 1)).toEqual({ sl0: 2, sl2: false });
    expect(sl0FromStartLevel(GRANULE_64K, 2)).toEqual({ sl0: 1, sl2: false });
    expect(sl0FromStartLevel(GRANULE_64K, 3)).toEqual({ sl0: 0, sl2: false });
  });

  it('SL0 = TGRAN_SL0_BASE − start level for the non-LPA2 levels', () => {
    for (const g of GRANULES) {
      for (let level = Math.max(0, g.firstLevel); level <= 2; level++) {
        if (g.kind === '16K' && level === 0) continue;
        expect(sl0FromStartLevel(g, level)).toEqual({ sl0: g.sl0Base - level, sl2: false });
      }
    }
  });

  it('encode and decode are inverse', () => {
    for (const g of GRANULES) {
      for (const opts of [{}, { ds: true }, { ttst: true }, { ds: true, ttst: true }]) {
        for (let level = -1; level <= 3; level++) {
          const enc = sl0FromStartLevel(g, level, opts);
          if (enc !== undefined) expect(startLevelFromSl0(g, enc.sl0, { ...opts, sl2: enc.sl2 })).toBe(level);
        }
        for (let sl0 = 0; sl0 < 4; sl0++) {
          const level = startLevelFromSl0(g, sl0, opts);
          if (level !== undefined) expect(sl0FromStartLevel(g, level, opts)).toEqual({ sl0, sl2: false });
        }
      }
    }
  });
});

/**
 * Independent oracle for a stage-2 walk configuration, written from the architecture
 * (AArch64.S2InvalidSL / S2InconsistentSL / S2MinTxSZ / MaxTxSZ as QEMU's check_s2_mmu_setup
 * mirrors them, and reference §1.7):
 *  - IA size: 25..48 (52 with DS for 4K/16K, with FEAT_LPA for 64K); down to 16 with FEAT_TTST.
 *  - Start level must have an SL0 encoding: 4K L−1 needs DS, 4K L3 needs TTST, 16K L0 needs DS,
 *    64K has no L0; 16K/64K L3 are plain SL0 = 0.
 *  - PA-size rules (forbidden so that concatenation is used): 4K L0 needs PA ≥ 44,
 *    16K L1 needs PA ≥ 42, 64K L1 needs PA ≥ 44.
 *  - The start level resolves between 1 and bitsPerLevel + 4 IA bits (≤ 16 tables).
 */
function oracle(g: Granule, ia: number, level: number, pa: number, o: { ds?: boolean; lpa?: boolean; ttst?: boolean }): number | undefined {
  const ext = g.kind === '64K' ? o.lpa === true : o.ds === true;
  if (ia > (ext ? 52 : 48)) return undefined;
  if (ia < (o.ttst === true ? 16 : 25)) return undefined;
  const levels: Record<GranuleKind, number[]> = {
    '4K': [0, 1, 2, ...(o.ds === true ? [-1] : []), ...(o.ttst === true ? [3] : [])],
    '16K': [1, 2, 3, ...(o.ds === true ? [0] : [])],
    '64K': [1, 2, 3],
  };
  if (!levels[g.kind].includes(level)) return undefined;
  if (g.kind === '4K' && level === 0 && pa < 44) return undefined;
  if (g.kind === '16K' && level === 1 && pa < 42) return undefined;
  if (g.kind === '64K' && level === 1 && pa < 44) return undefined;
  const shifts: Record<GranuleKind, Record<number, number>> = {
    '4K': { [-1]: 48, 0: 39, 1: 30, 2: 21, 3: 12 },
    '16K': { 0: 47, 1: 36, 2: 25, 3: 14 },
    '64K': { 1: 42, 2: 29, 3: 16 },
  };
  const stride = { '4K': 9, '16K': 11, '64K': 13 }[g.kind];
  const n = ia - (shifts[g.kind][level] as number);
  if (n < 1 || n > stride + 4) return undefined;
  return n > stride ? 2 ** (n - stride) : 1;
}

const PA_SIZES = [32, 36, 40, 42, 44, 48, 52];

describe('checkStage2Config', () => {
  it('agrees with the architectural oracle for every granule × IA 25..52 × start level × PA size × features', () => {
    let accepted = 0;
    let rejected = 0;
    const mismatches: string[] = [];
    for (const g of GRANULES) {
      for (const opts of [{}, { ds: true }, { lpa: true }, { ttst: true }, { ds: true, lpa: true, ttst: true }]) {
        for (let ia = 16; ia <= 53; ia++) {
          for (let level = -2; level <= 4; level++) {
            for (const pa of PA_SIZES) {
              const want = oracle(g, ia, level, pa, opts);
              const got = checkStage2Config({ granule: g, iaBits: ia, startLevel: level, paBits: pa, ...opts });
              const gotTables = got.ok ? got.concatenatedTables : undefined;
              if (gotTables !== want) mismatches.push(`${g.kind} ia=${ia} L${level} pa=${pa} ${JSON.stringify(opts)}: got ${gotTables} want ${want}`);
              if (got.ok) {
                accepted++;
                const bitsAtStart = ia - levelShift(g, level);
                expect(got.topEntries).toBe(2 ** bitsAtStart);
                expect(got.topBytes).toBe(Math.max(64, 8 * 2 ** bitsAtStart));
                expect(got.topEntries).toBeLessThanOrEqual(got.concatenatedTables * g.entriesPerTable);
              } else {
                rejected++;
                expect(got.reason.length).toBeGreaterThan(0);
              }
            }
          }
        }
      }
    }
    expect(mismatches.slice(0, 20)).toEqual([]);
    expect(accepted).toBeGreaterThan(1000);
    expect(rejected).toBeGreaterThan(1000);
  });

  it('named rejections', () => {
    const cfg = (granule: Granule, iaBits: number, startLevel: number, paBits: number, o = {}) => checkStage2Config({ granule, iaBits, startLevel, paBits, ...o }).ok;
    // T0SZ limits.
    expect(cfg(GRANULE_4K, 24, 2, 48)).toBe(false);
    expect(cfg(GRANULE_4K, 25, 2, 48)).toBe(true);
    expect(cfg(GRANULE_4K, 49, 0, 48)).toBe(false);
    expect(cfg(GRANULE_4K, 49, -1, 52, { ds: true })).toBe(true);
    expect(cfg(GRANULE_64K, 49, 1, 52)).toBe(false);
    expect(cfg(GRANULE_64K, 49, 1, 52, { lpa: true })).toBe(true);
    expect(cfg(GRANULE_4K, 24, 3, 48, { ttst: true })).toBe(true);
    // Too few / too many bits at the start level.
    expect(cfg(GRANULE_4K, 39, 0, 48)).toBe(false);
    expect(cfg(GRANULE_4K, 40, 0, 48)).toBe(true);
    expect(cfg(GRANULE_4K, 43, 1, 48)).toBe(true);
    expect(cfg(GRANULE_4K, 44, 1, 48)).toBe(false);
    // Mandatory concatenation.
    expect(cfg(GRANULE_4K, 40, 0, 42)).toBe(false);
    expect(cfg(GRANULE_4K, 40, 0, 40)).toBe(false);
    expect(cfg(GRANULE_4K, 40, 0, 44)).toBe(true);
    expect(cfg(GRANULE_16K, 40, 1, 40)).toBe(false);
    expect(cfg(GRANULE_16K, 40, 1, 42)).toBe(true);
    expect(cfg(GRANULE_16K, 48, 0, 48)).toBe(false);
    expect(cfg(GRANULE_64K, 43, 1, 42)).toBe(false);
    expect(cfg(GRANULE_64K, 43, 2, 42)).toBe(true);
    expect(cfg(GRANULE_64K, 44, 1, 44)).toBe(true);
    // 16K and 64K start at level 3 with SL0 = 0 (no FEAT_TTST needed); 4K needs TTST.
    expect(cfg(GRANULE_16K, 25, 3, 40)).toBe(true);
    expect(cfg(GRANULE_64K, 29, 3, 40)).toBe(true);
    expect(cfg(GRANULE_4K, 25, 3, 40)).toBe(false);
    expect(cfg(GRANULE_4K, 25, 3, 40, { ttst: true })).toBe(true);
  });

  it('every IA size 25..48 has some legal start level for each granule at PA 48', () => {
    for (const g of GRANULES) {
      for (let ia = 25; ia <= 48; ia++) {
        const ok = [-1, 0, 1, 2, 3].some((level) => checkStage2Config({ granule: g, iaBits: ia, startLevel: level, paBits: 48 }).ok);
        expect([g.kind, ia, ok]).toEqual([g.kind, ia, true]);
      }
    }
  });
});

describe('KVM start level and concatenation (reference §2.11 worked examples)', () => {
  // [granule, IPA bits, levels, start level, concatenated tables, top-level entries used, ds, lpa]
  const table: [GranuleKind, number, number, number, number, number, boolean, boolean][] = [
    ['4K', 32, 2, 2, 4, 2048, false, false],
    ['4K', 36, 3, 1, 1, 64, false, false],
    ['4K', 40, 3, 1, 2, 1024, false, false],
    ['4K', 44, 4, 0, 1, 32, false, false],
    ['4K', 48, 4, 0, 1, 512, false, false],
    ['4K', 52, 4, 0, 16, 8192, true, false],
    ['16K', 40, 2, 2, 16, 32768, false, false],
    ['16K', 48, 3, 1, 2, 4096, false, false],
    ['64K', 40, 2, 2, 1, 2048, false, false],
    ['64K', 48, 3, 1, 1, 64, false, false],
    ['64K', 52, 3, 1, 1, 1024, false, true],
  ];
  it.each(table)('%s IPA %i → %i levels', (kind, ipa, levels, start, tables, entries, ds, lpa) => {
    const g = granuleByKind(kind);
    expect(kvmStage2StartLevel(g, ipa)).toBe(start);
    expect(4 - start).toBe(levels);
    // KVM's host uses the full PA range as IPA: the configuration must be legal with PA = IPA.
    const check = checkStage2Config({ granule: g, iaBits: ipa, startLevel: start, paBits: ipa, ds, lpa });
    expect(check).toEqual({ ok: true, concatenatedTables: tables, topEntries: entries, topBytes: Math.max(64, entries * 8) });
    expect(sl0FromStartLevel(g, start, { ds })).toEqual({ sl0: g.sl0Base - start, sl2: false });
  });

  it('KVM never needs more than 16 tables and never starts below level 2 for IPA 32..48', () => {
    for (const g of GRANULES) {
      for (let ipa = 32; ipa <= 48; ipa++) {
        const start = kvmStage2StartLevel(g, ipa);
        expect(start).toBeLessThanOrEqual(2);
        const check = checkStage2Config({ granule: g, iaBits: ipa, startLevel: start, paBits: 48 });
        expect([g.kind, ipa, check.ok]).toEqual([g.kind, ipa, true]);
      }
    }
  });

  it('maxIaBits', () => {
    expect(maxIaBits(GRANULE_4K)).toBe(48);
    expect(maxIaBits(GRANULE_4K, { ds: true })).toBe(52);
    expect(maxIaBits(GRANULE_16K, { ds: true })).toBe(52);
    expect(maxIaBits(GRANULE_16K, { lpa: true })).toBe(48);
    expect(maxIaBits(GRANULE_64K)).toBe(48);
    expect(maxIaBits(GRANULE_64K, { ds: true })).toBe(48);
    expect(maxIaBits(GRANULE_64K, { lpa: true })).toBe(52);
  });
});

describe("io-pgtable S2 geometry (reference §4.3) is architecturally legal", () => {
  // [granule, ias, oas list, S2 start, S2 pgd entries, concatenated tables, SL0, T0SZ]
  const rows: [GranuleKind, number, number[], number, number, number, number, number][] = [
    ['4K', 32, [32, 36, 40, 42, 44, 48], 1, 4, 1, 1, 32],
    ['4K', 36, [36, 40, 42, 44, 48], 1, 64, 1, 1, 28],
    ['4K', 40, [40, 42], 1, 1024, 2, 1, 24],
    ['4K', 40, [44, 48], 0, 2, 1, 2, 24],
    ['4K', 42, [42], 1, 4096, 8, 1, 22],
    ['4K', 42, [44, 48], 0, 8, 1, 2, 22],
    ['4K', 44, [44, 48], 0, 32, 1, 2, 20],
    ['4K', 48, [48], 0, 512, 1, 2, 16],
    ['16K', 32, [32, 36, 40, 42, 44, 48], 2, 128, 1, 1, 32],
    ['16K', 36, [36, 40, 42, 44, 48], 2, 2048, 1, 1, 28],
    ['16K', 40, [40], 2, 32768, 16, 1, 24],
    ['16K', 40, [42, 44, 48], 1, 16, 1, 2, 24],
    ['16K', 42, [42, 44, 48], 1, 64, 1, 2, 22],
    ['16K', 44, [44, 48], 1, 256, 1, 2, 20],
    ['16K', 48, [48], 1, 4096, 2, 2, 16],
    ['64K', 32, [32, 36, 40, 42, 44, 48], 2, 8, 1, 1, 32],
    ['64K', 36, [36, 40, 42, 44, 48], 2, 128, 1, 1, 28],
    ['64K', 40, [40, 42, 44, 48], 2, 2048, 1, 1, 24],
    ['64K', 42, [42, 44, 48], 2, 8192, 1, 1, 22],
    ['64K', 44, [44, 48], 1, 4, 1, 2, 20],
    ['64K', 48, [48], 1, 64, 1, 2, 16],
  ];
  it.each(rows)('%s ias %i oas %j', (kind, ias, oasList, start, entries, tables, sl0, t0sz) => {
    const g = granuleByKind(kind);
    expect(64 - ias).toBe(t0sz);
    expect(sl0FromStartLevel(g, start)).toEqual({ sl0, sl2: false });
    for (const oas of oasList) {
      const check = checkStage2Config({ granule: g, iaBits: ias, startLevel: start, paBits: oas });
      expect(check).toEqual({ ok: true, concatenatedTables: tables, topEntries: entries, topBytes: Math.max(64, entries * 8) });
      // Where io-pgtable concatenated, the shallower start level is forbidden by the architecture.
      if (tables > 1) expect(checkStage2Config({ granule: g, iaBits: ias, startLevel: start - 1, paBits: oas }).ok).toBe(false);
    }
  });
});

describe('LAST_LEVEL', () => {
  it('is 3', () => {
    expect(LAST_LEVEL).toBe(3);
  });
});
