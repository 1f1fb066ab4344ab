import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type U64, u64, u64ToHex } from '../u64.js';
import {
  STE_CONFIG,
  STE_DEFINED_MASK,
  STE_ILLEGAL_CODES,
  type SteCheckFeatures,
  type SteFields,
  type SteIllegalCode,
  checkSte,
  decodeL1std,
  decodeSte,
  effectiveS2ps,
  encodeL1std,
  encodeSte,
  inputAddressSize,
  l1stdL2Entries,
  l1stdSpanValid,
  steFeaturesFromIdRegs,
  steField,
  steFields,
  steKind,
  steUsedBits,
  steWithField,
} from './ste.js';
import { decodeAidr, decodeIdr0, decodeIdr1, decodeIdr3, decodeIdr5 } from './registers.js';
import { arbAddr, arbBits, arbU64, arbWords, hex, maskWords, w } from './testing.js';

const b = fc.boolean();

const arbSteFields: fc.Arbitrary<SteFields> = fc.record({
  v: b,
  config: arbBits(3),
  s1fmt: arbBits(2),
  s1ContextPtr: arbAddr(51, 6),
  s1cdmax: arbBits(5),
  s1dss: arbBits(2),
  s1cir: arbBits(2),
  s1cor: arbBits(2),
  s1csh: arbBits(2),
  s2hwu: arbBits(4),
  dre: b,
  cont: arbBits(4),
  dcp: b,
  ppar: b,
  mev: b,
  swReserved: arbBits(4),
  s1pie: b,
  s2fwb: b,
  s1mpam: b,
  s1stalld: b,
  eats: arbBits(2),
  strw: arbBits(2),
  memattr: arbBits(4),
  mtcfg: b,
  alloccfg: arbBits(4),
  shcfg: arbBits(2),
  nscfg: arbBits(2),
  privcfg: arbBits(2),
  instcfg: arbBits(2),
  impdef1: arbBits(12),
  s2vmid: arbBits(16),
  impdef2: arbBits(16),
  s2t0sz: arbBits(6),
  s2sl0: arbBits(2),
  s2ir0: arbBits(2),
  s2or0: arbBits(2),
  s2sh0: arbBits(2),
  s2tg: arbBits(2),
  s2ps: arbBits(3),
  s2aa64: b,
  s2endi: b,
  s2affd: b,
  s2ptw: b,
  s2hd: b,
  s2ha: b,
  s2s: b,
  s2r: b,
  s2haft: b,
  s2pie: b,
  s2poe: b,
  dptVmatch: arbBits(2),
  s2nsw: b,
  s2nsa: b,
  s2sl0Bit2: b,
  s2ds: b,
  s2ttb: arbAddr(51, 4),
  s2skl: arbBits(2),
  impdef4: arbBits(16),
  partid: arbBits(16),
  sS2t0sz: arbBits(6),
  sS2sl0: arbBits(2),
  sS2tg: arbBits(2),
  mecid: arbBits(16),
  pmg: arbBits(8),
  mpamNs: b,
  assuredOnly: b,
  tl0: b,
  tl1: b,
  vmsPtr: arbAddr(51, 12),
  s2sw: b,
  s2sa: b,
  sS2sl0Bit2: b,
  sS2ttb: arbAddr(51, 4),
  sS2skl: arbBits(2),
  s2poi: arbU64,
});

function words(...dws: string[]): U64[] {
  const out = dws.map(w);
  while (out.length < 8) out.push(u64(0, 0));
  return out;
}

describe('STE layout (smmuv3-arch.md §2.2, IHI 0070 §5.2)', () => {
  it('defines exactly the non-RES0 bits of the spec layout', () => {
    // Written from the spec field list: q0 bits 58:52 RES0 (55:52 not modelled); q1 43:41 RES0;
    // q3 60:52 and 63; q4 45:40; q5 63:52; q6 bit 3, 60:52 and 63.
    expect(hex(STE_DEFINED_MASK)).toEqual([
      '0xf80fffffffffffff',
      '0xfffff1ffffffffff',
      '0xffffffffffffffff',
      '0x600fffffffffffff',
      '0xffffc0ffffffffff',
      '0x000fffffffffffff',
      '0x600ffffffffffff7',
      '0xffffffffffffffff',
    ]);
  });

  it('puts the stage-2 fields where QEMU reads them in word 5 (= q2[63:32])', () => {
    // QEMU word5: T0SZ 0-5, SL0 6-7, IR0 8-9, OR0 10-11, SH0 12-13, TG 14-15, PS 16-18,
    // AA64 19, ENDI 20, AFFD 21, PTW 22, HD 23, HA 24, S2S 25, S2R 26 (§2.2).
    const single: [keyof SteFields, SteFields[keyof SteFields], number][] = [
      ['s2t0sz', 0x3f, 0x3f],
      ['s2sl0', 3, 0xc0],
      ['s2ir0', 3, 0x300],
      ['s2or0', 3, 0xc00],
      ['s2sh0', 3, 0x3000],
      ['s2tg', 3, 0xc000],
      ['s2ps', 7, 0x7_0000],
      ['s2aa64', true, 1 << 19],
      ['s2endi', true, 1 << 20],
      ['s2affd', true, 1 << 21],
      ['s2ptw', true, 1 << 22],
      ['s2hd', true, 1 << 23],
      ['s2ha', true, 1 << 24],
      ['s2s', true, 1 << 25],
      ['s2r', true, 1 << 26],
    ];
    for (const [key, value, word5] of single) {
      const enc = encodeSte(steFields({ [key]: value }));
      expect(enc[2], key).toEqual(u64(0, word5));
    }
  });

  it('places q0/q1/q3 fields at the reference positions', () => {
    const at = (partial: Partial<SteFields>): string[] => hex(encodeSte(steFields(partial))).slice(0, 4);
    expect(at({ config: 7 })[0]).toBe('0x000000000000000e');
    expect(at({ s1cdmax: 31 })[0]).toBe('0xf800000000000000');
    expect(at({ s1ContextPtr: 0xf_ffff_ffff_ffc0 })[0]).toBe('0x000fffffffffffc0');
    expect(at({ eats: 3 })[1]).toBe('0x0000000030000000');
    expect(at({ strw: 3 })[1]).toBe('0x00000000c0000000');
    expect(at({ shcfg: 3 })[1]).toBe('0x0000300000000000');
    expect(at({ s1stalld: true })[1]).toBe('0x0000000008000000');
    expect(at({ s2fwb: true })[1]).toBe('0x0000000002000000');
    expect(at({ mev: true })[1]).toBe('0x0000000000080000');
    expect(at({ instcfg: 3 })[1]).toBe('0x000c000000000000');
    expect(at({ s2vmid: 0xffff })[2]).toBe('0x000000000000ffff');
    expect(at({ s2ttb: 0xf_ffff_ffff_fff0 })[3]).toBe('0x000ffffffffffff0');
    expect(at({ s2ds: true, s2sl0Bit2: true })[3]).toBe('0x000000000000000c');
  });

  it('refuses values that do not fit or are misaligned', () => {
    expect(() => encodeSte(steFields({ config: 8 }))).toThrow(RangeError);
    expect(() => encodeSte(steFields({ s2ttb: 0x8000_0008 }))).toThrow(RangeError);
    expect(() => encodeSte(steFields({ s2ttb: 2 ** 52 }))).toThrow(RangeError);
    expect(() => decodeSte([u64(0, 0)])).toThrow(RangeError);
  });
});

describe('STE codec round trips', () => {
  it('decode(encode(fields)) gives back every field', () => {
    fc.assert(
      fc.property(arbSteFields, (fields) => {
        const { kind, ...back } = decodeSte(encodeSte(fields));
        expect(back).toEqual(fields);
        expect(kind).toBe(steKind(fields.v, fields.config));
      }),
      { numRuns: 300 },
    );
  });

  it('encode(decode(words)) gives back the words restricted to the defined bits', () => {
    fc.assert(
      fc.property(arbWords(8), (ws) => {
        expect(hex(encodeSte(decodeSte(ws)))).toEqual(hex(maskWords(ws, STE_DEFINED_MASK)));
      }),
      { numRuns: 300 },
    );
  });

  it('reads and edits single fields in place', () => {
    const ws = encodeSte(steFields({ v: true, config: STE_CONFIG.S1_TRANS, s1dss: 1 }));
    expect(steField(ws, 'config')).toBe(5);
    const nested = steWithField(ws, 'config', STE_CONFIG.NESTED);
    expect(decodeSte(nested).kind).toBe('nested');
    expect(steField(nested, 's1dss')).toBe(1);
    expect(decodeSte(ws).kind).toBe('s1');
  });
});

describe('STE kinds by V and Config (§2.2)', () => {
  it('tags every Config value', () => {
    expect(steKind(false, 6)).toBe('invalid');
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((c) => steKind(true, c))).toEqual(['abort', 'abort', 'abort', 'abort', 'bypass', 's1', 's2', 'nested']);
  });
});

describe('Linux and pKVM STEs (fixed vectors, §2.5, pkvm-host-s2-iommu.md §6.7/§6.10)', () => {
  it('abort STE is q0 = 0x1', () => {
    const ste = decodeSte(words('0000000000000001'));
    expect(ste.kind).toBe('abort');
    expect(ste.config).toBe(0);
  });

  it('bypass STE is q0 = 0x9 with SHCFG = incoming in q1', () => {
    const ste = decodeSte(words('0000000000000009', '0000100000000000'));
    expect(ste.kind).toBe('bypass');
    expect(ste.shcfg).toBe(1);
  });

  it('S2 STE for ias = oas = 40, 4K, coherent walk, VMID 1', () => {
    // io-pgtable (§2.4): ias 40 at 4K concatenates two level-1 tables: SL0 = 1, T0SZ = 24;
    // SH0 = ISH, IR0 = OR0 = WBWA, TG = 0, PS = 40 bits (2). VTCR field = 0x23558 at bit 32,
    // S2AA64 = bit 51, S2R = bit 58.
    const ws = words('000000000000000d', '0000100000000000', '040a355800000001', '0000000081234000');
    const ste = decodeSte(ws);
    expect(ste.kind).toBe('s2');
    expect(ste).toMatchObject({ s2vmid: 1, s2t0sz: 24, s2sl0: 1, s2ir0: 1, s2or0: 1, s2sh0: 3, s2tg: 0, s2ps: 2, s2aa64: true, s2r: true, s2s: false, s2ttb: 0x8123_4000, shcfg: 1 });
    const built = encodeSte(
      steFields({ v: true, config: STE_CONFIG.S2_TRANS, shcfg: 1, s2vmid: 1, s2t0sz: 24, s2sl0: 1, s2ir0: 1, s2or0: 1, s2sh0: 3, s2ps: 2, s2aa64: true, s2r: true, s2ttb: 0x8123_4000 }),
    );
    expect(hex(built)).toEqual(hex(ws));
  });

  it('pKVM T&E shadow STE for a host S1 STE: Config |= 0b010, VMID 0, S2PTW', () => {
    // Host S1 STE: V, Config 101, S1ContextPtr 0x8800_0000, S1CIR = S1COR = WBRA, S1CSH = ISH.
    const host = steFields({ v: true, config: STE_CONFIG.S1_TRANS, s1ContextPtr: 0x8800_0000, s1cir: 1, s1cor: 1, s1csh: 3 });
    const hostWords = encodeSte(host);
    expect(u64ToHex(hostWords[0] ?? u64(0, 0))).toBe('0x000000008800000b');
    expect(u64ToHex(hostWords[1] ?? u64(0, 0))).toBe('0x00000000000000d4');
    const shadow = decodeSte(steWithField(steWithField(hostWords, 'config', host.config | 0b010), 's2ptw', true));
    expect(shadow.kind).toBe('nested');
    expect(u64ToHex(encodeSte(shadow)[0] ?? u64(0, 0))).toBe('0x000000008800000f');
    expect(shadow.s2ptw).toBe(true);
    expect(shadow.s2vmid).toBe(0);
  });
});

describe('L1 stream table descriptor (§2.1)', () => {
  it('encodes the Linux descriptor: Span = SPLIT + 1 = 9 | L2 address', () => {
    expect(encodeL1std({ span: 9, l2ptr: 0x8_1234_4000 })).toEqual(w('0000000812344009'));
    expect(decodeL1std(w('0000000812344009'))).toEqual({ span: 9, l2ptr: 0x8_1234_4000 });
    // Bit 5 is RES0 and bits 63:52 are not part of L2Ptr.
    expect(decodeL1std(w('fff0000000000029'))).toEqual({ span: 9, l2ptr: 0 });
  });

  it('round-trips', () => {
    fc.assert(fc.property(arbBits(5), arbAddr(51, 6), (span, l2ptr) => void expect(decodeL1std(encodeL1std({ span, l2ptr }))).toEqual({ span, l2ptr })));
  });

  it('judges spans against SPLIT and sizes the L2 array as 2^(Span-1)', () => {
    expect(l1stdSpanValid(0, 8)).toBe(false);
    expect(l1stdSpanValid(9, 8)).toBe(true);
    expect(l1stdSpanValid(10, 8)).toBe(false);
    expect(l1stdSpanValid(11, 10)).toBe(true);
    expect(l1stdSpanValid(12, 10)).toBe(false);
    expect(l1stdL2Entries(9)).toBe(256);
    expect(l1stdL2Entries(1)).toBe(1);
    expect(l1stdL2Entries(12)).toBe(0);
  });
});

// --- Legality ------------------------------------------------------------------------------

/** A nested-capable SMMUv3.1 like the QEMU one (§1.10), plus ATS and 16-bit VMIDs. */
const FEATURES: SteCheckFeatures = {
  s1p: true,
  s2p: true,
  ttf: 2,
  hyp: true,
  ats: true,
  ns1ats: false,
  httu: 0,
  stallModel: 1,
  ttendian: 2,
  vmid16: true,
  cd2l: true,
  ssidSize: 8,
  gran4k: true,
  gran16k: true,
  gran64k: true,
  oas: 44,
  stt: false,
  ds: false,
  dpt: false,
  fwb: false,
  pbha: false,
  s2pi: false,
  s2po: false,
  vms: false,
  archMinorRev: 1,
};

/** Legal S2 STE: ias 44 at 4K → start level 0, SL0 = 2, T0SZ = 20 (§2.4 example). */
const S2: SteFields = steFields({
  v: true,
  config: STE_CONFIG.S2_TRANS,
  s2vmid: 1,
  s2t0sz: 20,
  s2sl0: 2,
  s2ir0: 1,
  s2or0: 1,
  s2sh0: 3,
  s2tg: 0,
  s2ps: 4,
  s2aa64: true,
  s2r: true,
  s2ttb: 0x8000_0000,
});

const S1: SteFields = steFields({ v: true, config: STE_CONFIG.S1_TRANS, s1ContextPtr: 0x8800_0000, s1cir: 1, s1cor: 1, s1csh: 3 });
const NESTED: SteFields = { ...S2, config: STE_CONFIG.NESTED, s1ContextPtr: 0x8800_0000 };

function codeOf(ste: SteFields, features: SteCheckFeatures = FEATURES): string | undefined {
  const r = checkSte(ste, features);
  return r?.slice(0, r.indexOf(':'));
}

describe('STE legality (§2.3, IHI 0070 §5.2.2)', () => {
  it('accepts the base configurations', () => {
    expect(checkSte(S2, FEATURES)).toBeUndefined();
    expect(checkSte(S1, FEATURES)).toBeUndefined();
    expect(checkSte(NESTED, FEATURES)).toBeUndefined();
    expect(checkSte(steFields({ v: true, config: STE_CONFIG.BYPASS }), FEATURES)).toBeUndefined();
    expect(checkSte(steFields({ v: true, config: STE_CONFIG.ABORT }), FEATURES)).toBeUndefined();
  });

  it('never rejects Config 0b0xx, whatever else the STE holds', () => {
    fc.assert(
      fc.property(arbSteFields, fc.integer({ min: 0, max: 3 }), (fields, config) => {
        expect(checkSte({ ...fields, v: true, config }, FEATURES)).toBeUndefined();
      }),
      { numRuns: 100 },
    );
  });

  const cases: [SteIllegalCode, SteFields, SteCheckFeatures?][] = [
    ['V0', { ...S2, v: false }],
    ['S1_NOT_IMPLEMENTED', S1, { ...FEATURES, s1p: false }],
    ['S2_NOT_IMPLEMENTED', S2, { ...FEATURES, s2p: false }],
    ['EATS_SPLIT_STAGE', { ...S2, eats: 2 }],
    ['EATS_SPLIT_STAGE', { ...NESTED, eats: 2 }, { ...FEATURES, ns1ats: true }],
    ['EATS_FULL_WITH_S2S', { ...S2, eats: 1, s2s: true }, { ...FEATURES, stallModel: 0 }],
    ['EATS_FULL_WITH_S2S', { ...S1, eats: 1, s2s: true }, { ...FEATURES, archMinorRev: 0 }],
    ['EATS_DPT_STREAMWORLD', { ...S1, eats: 3, strw: 2 }, { ...FEATURES, dpt: true }],
    ['EATS_DPT_WITH_S2S', { ...S2, eats: 3, s2s: true }, { ...FEATURES, dpt: true, stallModel: 0 }],
    ['STRW_RESERVED', { ...S1, strw: 1 }],
    ['S1STALLD_NOT_CONFIGURABLE', { ...S1, s1stalld: true }],
    ['S1CDMAX_TOO_LARGE', { ...S1, s1cdmax: 9 }],
    ['S1FMT_NEEDS_CD2L', { ...S1, s1cdmax: 4, s1fmt: 1 }, { ...FEATURES, cd2l: false }],
    ['S1CONTEXTPTR_OUT_OF_RANGE', { ...S1, s1ContextPtr: 2 ** 44 }],
    ['S1CONTEXTPTR_OUT_OF_RANGE', { ...NESTED, s1ContextPtr: 2 ** 44 }],
    ['S2FWB_AARCH32', { ...S2, s2aa64: false, s2fwb: true }, { ...FEATURES, fwb: true, ttf: 3 }],
    ['S2S_NOT_SUPPORTED', { ...S2, s2s: true }],
    ['S2S_REQUIRED', S2, { ...FEATURES, stallModel: 2 }],
    ['S2AA64_UNSUPPORTED', { ...S2, s2aa64: false }],
    ['S2AA64_UNSUPPORTED', S2, { ...FEATURES, ttf: 1 }],
    ['S2_HTTU_UNSUPPORTED', { ...S2, s2ha: true }],
    ['S2_HTTU_UNSUPPORTED', { ...S2, s2ha: true, s2hd: true }, { ...FEATURES, httu: 1 }],
    ['S2HAFT_WITHOUT_S2HA', { ...S2, s2haft: true }, { ...FEATURES, httu: 3 }],
    ['S2TG_UNSUPPORTED', { ...S2, s2tg: 3 }],
    ['S2TG_UNSUPPORTED', S2, { ...FEATURES, gran4k: false }],
    ['S2TTB_OUT_OF_RANGE', { ...S2, s2ttb: 2 ** 44 }],
    ['S2TTB_OUT_OF_RANGE', { ...S2, s2ps: 2, s2ttb: 2 ** 40 }],
    ['S2TTB_OUT_OF_RANGE', { ...S2, s2ps: 6, s2ttb: 2 ** 48 }, { ...FEATURES, oas: 52 }],
    ['S2T0SZ_OUT_OF_RANGE', { ...S2, s2t0sz: 40, s2sl0: 0 }],
    ['S2T0SZ_OUT_OF_RANGE', { ...S2, s2t0sz: 19 }],
    ['S2_WALK_INCONSISTENT', { ...S2, s2sl0: 3 }],
    ['S2_WALK_INCONSISTENT', { ...S2, s2sl0: 0 }],
    ['S2_WALK_INCONSISTENT', { ...S2, s2t0sz: 25, s2sl0: 2 }],
    ['S2ENDI_UNSUPPORTED', { ...S2, s2endi: true }],
    ['S2ENDI_UNSUPPORTED', S2, { ...FEATURES, ttendian: 3 }],
    ['S2PIE_AARCH32', { ...S2, s2aa64: false, s2pie: true }, { ...FEATURES, ttf: 3, s2pi: true }],
    ['S2POE_WITHOUT_S2PIE', { ...S2, s2poe: true }, { ...FEATURES, s2po: true }],
    ['S2POE_WITH_S2HWU', { ...S2, s2poe: true, s2pie: true, s2hwu: 1 }, { ...FEATURES, s2po: true, pbha: true }],
    ['S2POI_RESERVED', { ...S2, s2poe: true, s2pie: true, s2poi: u64(0, 0x50) }, { ...FEATURES, s2po: true }],
    ['S2VMID_TOO_WIDE', { ...S2, s2vmid: 0x100 }, { ...FEATURES, vmid16: false }],
    ['S2VMID_TOO_WIDE', { ...S1, s2vmid: 0x100 }, { ...FEATURES, vmid16: false }],
    ['VMSPTR_OUT_OF_RANGE', { ...NESTED, s1mpam: true, vmsPtr: 2 ** 44 }, { ...FEATURES, vms: true }],
  ];

  cases.forEach(([code, ste, features], i) => {
    it(`rejects ${code} (case ${i}, ${steKind(ste.v, ste.config)} STE)`, () => {
      expect(codeOf(ste, features)).toBe(code);
    });
  });

  it('has a rejection test for every reason code', () => {
    const tested = new Set(cases.map(([code]) => code));
    expect(STE_ILLEGAL_CODES.filter((c) => !tested.has(c))).toEqual([]);
  });

  it('lets the unsupported cases pass when the feature exists or the field is ignored', () => {
    // Full ATS with S2S on a stage-1-only STE is legal from SMMUv3.1 (S2S is not used).
    expect(checkSte({ ...S1, eats: 1, s2s: true }, FEATURES)).toBeUndefined();
    // Split-stage ATS is legal for nested, S2S = 0, NS1ATS = 0.
    expect(checkSte({ ...NESTED, eats: 2 }, FEATURES)).toBeUndefined();
    // Without ATS support EATS is ignored.
    expect(checkSte({ ...S2, eats: 2 }, { ...FEATURES, ats: false })).toBeUndefined();
    // EATS = 0b11 without DPT is reserved and behaves as 0b00: not ILLEGAL.
    expect(checkSte({ ...S1, eats: 3, strw: 2 }, FEATURES)).toBeUndefined();
    // STRW is ignored when stage 2 translates, and with IDR0.Hyp == 0.
    expect(checkSte({ ...S2, strw: 1 }, FEATURES)).toBeUndefined();
    expect(checkSte({ ...S1, strw: 1 }, { ...FEATURES, hyp: false })).toBeUndefined();
    // S2VMID is ignored for bypass and for an EL2 StreamWorld.
    expect(checkSte(steFields({ v: true, config: 4, s2vmid: 0x100 }), { ...FEATURES, vmid16: false })).toBeUndefined();
    expect(checkSte({ ...S1, strw: 2, s2vmid: 0x100 }, { ...FEATURES, vmid16: false })).toBeUndefined();
    // Stage-2 fields are ignored when stage 2 bypasses.
    expect(checkSte({ ...S1, s2tg: 3, s2t0sz: 63, s2endi: true }, FEATURES)).toBeUndefined();
    // Stalling at stage 2 is fine when the stall model allows it.
    expect(checkSte({ ...S2, s2s: true }, { ...FEATURES, stallModel: 0 })).toBeUndefined();
    // S2HA with Access-flag HTTU.
    expect(checkSte({ ...S2, s2ha: true }, { ...FEATURES, httu: 1 })).toBeUndefined();
    // STT raises the T0SZ maximum to 48 at 4K (IA 16 bits needs a level-3 start, SL0 = 3).
    expect(checkSte({ ...S2, s2t0sz: 48, s2sl0: 3 }, { ...FEATURES, stt: true })).toBeUndefined();
    // S2TTB up to 2^52 with 64K and a 52-bit effective PS.
    expect(checkSte({ ...S2, s2tg: 1, s2ps: 6, s2t0sz: 12, s2sl0: 2, s2ttb: 2 ** 48 }, { ...FEATURES, oas: 52 })).toBeUndefined();
  });

  it('caps S2PS by the OAS, including reserved encodings', () => {
    expect(effectiveS2ps(5, 44)).toBe(44);
    expect(effectiveS2ps(2, 44)).toBe(40);
    expect(effectiveS2ps(7, 52)).toBe(52);
    // S2PS 48 bits with OAS 44: an S2TTB at 2^44 is beyond the effective size.
    expect(codeOf({ ...S2, s2ps: 5, s2ttb: 2 ** 44 })).toBe('S2TTB_OUT_OF_RANGE');
  });

  it('derives IAS from TTF and OAS (§1.8)', () => {
    expect(inputAddressSize({ ttf: 2, oas: 36 })).toBe(36);
    expect(inputAddressSize({ ttf: 3, oas: 36 })).toBe(40);
    expect(inputAddressSize({ ttf: 3, oas: 48 })).toBe(48);
  });

  it('derives features from the QEMU ID registers', () => {
    const features = steFeaturesFromIdRegs(decodeIdr0(0x0d44_101b), decodeIdr1(0x0273_0010), decodeIdr3(0x1404), decodeIdr5(0x74), decodeAidr(1));
    expect(features).toMatchObject({ s1p: true, s2p: true, ttf: 2, stallModel: 1, ttendian: 2, vmid16: true, oas: 44, gran16k: true, ats: false });
    expect(checkSte(S2, features)).toBeUndefined();
    expect(codeOf({ ...S2, s2s: true }, features)).toBe('S2S_NOT_SUPPORTED');
  });

  it('accepts every stage-2 configuration Linux io-pgtable computes (§2.4)', () => {
    // Linux ARM_64_LPAE_S2: levels, start level, concatenation when the start-level-0 table has
    // at most 16 entries, SL0 = ~sl & 3 with sl = start (+1 for 4K).
    const granules = [
      { tg: 0, shift: 12 },
      { tg: 2, shift: 14 },
      { tg: 1, shift: 16 },
    ];
    fc.assert(
      fc.property(fc.constantFrom(...granules), fc.integer({ min: 32, max: 48 }), ({ tg, shift }, ias) => {
        const bpl = shift - 3;
        const levels = Math.ceil((ias - shift) / bpl);
        let start = 4 - levels;
        const pgdBits = ias - shift - bpl * (levels - 1);
        if (start === 0 && 2 ** pgdBits <= 16) start += 1;
        const sl = shift === 12 ? start + 1 : start;
        const ste = { ...S2, s2tg: tg, s2t0sz: 64 - ias, s2sl0: ~sl & 3, s2ps: 5 };
        expect(checkSte(ste, { ...FEATURES, oas: 48 })).toBeUndefined();
      }),
    );
  });

  it('applies the 4K T0SZ windows per start level of the reference (§2.3 item 10)', () => {
    // 4K: start L0 → T0SZ 16..24; L1 → 21..33; L2 → 30..39.
    const f48 = { ...FEATURES, oas: 48 };
    const at = (sl0: number, t0sz: number): string | undefined => codeOf({ ...S2, s2ps: 5, s2sl0: sl0, s2t0sz: t0sz }, f48);
    expect([at(2, 16), at(2, 24), at(2, 25)]).toEqual([undefined, undefined, 'S2_WALK_INCONSISTENT']);
    expect([at(1, 20), at(1, 21), at(1, 33), at(1, 34)]).toEqual(['S2_WALK_INCONSISTENT', undefined, undefined, 'S2_WALK_INCONSISTENT']);
    expect([at(0, 29), at(0, 30), at(0, 39)]).toEqual(['S2_WALK_INCONSISTENT', undefined, undefined]);
    // 64K: SL0 0 → level 3, 1 → level 2, 2 → level 1, 3 reserved (§2.4).
    const at64 = (sl0: number, t0sz: number): string | undefined => codeOf({ ...S2, s2tg: 1, s2ps: 5, s2sl0: sl0, s2t0sz: t0sz }, f48);
    // 64K level 2 resolves IA 30..46 (13 bits + up to 16 concatenated tables).
    expect([at64(2, 16), at64(1, 18), at64(1, 17), at64(0, 35), at64(3, 22)]).toEqual([
      undefined,
      undefined,
      'S2_WALK_INCONSISTENT',
      undefined,
      'S2_WALK_INCONSISTENT',
    ]);
  });
});

// --- Used bits -------------------------------------------------------------------------------

describe('steUsedBits (Linux arm_smmu_get_ste_used, §2.7)', () => {
  const used = (fields: Partial<SteFields>): string[] => hex(steUsedBits(encodeSte(steFields(fields)))).slice(0, 4);
  const Z = '0x0000000000000000';

  it('uses only V when the STE is invalid', () => {
    expect(used({ v: false, config: 6, s2vmid: 3 })).toEqual(['0x0000000000000001', Z, Z, Z]);
  });

  it('uses V and Config for abort', () => {
    expect(used({ v: true, config: 0 })).toEqual(['0x000000000000000f', Z, Z, Z]);
  });

  it('adds SHCFG for bypass', () => {
    expect(used({ v: true, config: 4 })).toEqual(['0x000000000000000f', '0x0000300000000000', Z, Z]);
  });

  it('uses the stage-2 fields for S2 translation', () => {
    // q1: S2FWB 25, EATS 29:28, SHCFG 45:44, MEV 19; q2: VMID, VTCR 50:32, AA64, ENDI, PTW, S2S, S2R.
    expect(used({ v: true, config: 6 })).toEqual(['0x000000000000000f', '0x0000300032080000', '0x065fffff0000ffff', '0x000ffffffffffff0']);
  });

  it('uses the stage-1 fields for S1 translation, SHCFG only with S1DSS = bypass', () => {
    const q1 = '0x00000000f80800ff';
    expect(used({ v: true, config: 5 })).toEqual(['0xf80fffffffffffff', q1, '0x000000000000ffff', Z]);
    expect(used({ v: true, config: 5, s1dss: 1 })[1]).toBe('0x00003000f80800ff');
  });

  it('uses both stages for nested', () => {
    expect(used({ v: true, config: 7 })).toEqual(['0xf80fffffffffffff', '0x00003000fa0800ff', '0x065fffff0000ffff', '0x000ffffffffffff0']);
  });

  it('only ever reports defined bits, and nothing in q4..q7', () => {
    fc.assert(
      fc.property(arbWords(8), (ws) => {
        const u = steUsedBits(ws);
        expect(hex(maskWords(u, STE_DEFINED_MASK))).toEqual(hex(u));
        expect(hex(u.slice(4))).toEqual([Z, Z, Z, Z]);
      }),
      { numRuns: 200 },
    );
  });
});
