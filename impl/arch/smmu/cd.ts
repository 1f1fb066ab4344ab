/**
 * The 64-byte Context Descriptor (8 little-endian doublewords), the level-1 CD table descriptor
 * (L1CD), the CD validity check behind C_BAD_CD, and Linux's CD "used bits" for the hitless
 * entry writer. Reference: SPEC 5.4 (CD), 5.4.1 (CD validity), SPEC 3.4.3 / 5.2 (S1Fmt,
 * S1CDMax); smmuv3-arch.md §2.7 (CD layout and used bits as Linux defines them); positions
 * cross-checked against Linux arm-smmu-v3.h CTXDESC_CD_* and QEMU's CD_* field extractors
 * (facts only).
 *
 * Scope choices:
 * - Address fields (TTB0, TTB1) decode bits up to 51 (Linux's CTXDESC_CD_1_TTB0_MASK); the spec
 *   field reaches bit 55 but 55:52 are RES0 below a 56-bit OAS, as for the STE.
 * - SMMUv3.3+ fields (S1PIE/POE indirections in q5–q7, HAFT, DisCH, E0PD, SKL, HWU) are not
 *   decoded: outside the defined bits, so a round trip clears them.
 * - Only AArch64 (VMSAv8-64) CDs translate: the modelled SMMU advertises IDR0.TTF = AArch64
 *   only, so AA64 = 0 is ILLEGAL (SPEC 5.4.1).
 */
import { type Granule, granuleFromTg0 } from '../granule.js';
import { type U64, ZERO64, genmask, u64And } from '../u64.js';
import { type FieldSpec, checkLayout, decodeFields, definedMask, encodeFields, f, flag, zeroWords } from './fields.js';

export const CD_DWORDS = 8;
export const CD_BYTES = 64;
export const L1CD_BYTES = 8;
/** S1Fmt (STE q0 [5:4], SPEC 5.2): linear, 2-level with 4K leaf tables, 2-level with 64K leaf tables. */
export const S1FMT_LINEAR = 0;
export const S1FMT_4K_L2 = 1;
export const S1FMT_64K_L2 = 2;

export type CdWords = readonly U64[];

/** Every decoded CD field, named after SPEC 5.4 in camelCase. */
export interface CdFields {
  // q0 [31:0]: TCR-like stage-1 controls for TTB0 and TTB1
  readonly t0sz: number;
  readonly tg0: number;
  readonly ir0: number;
  readonly or0: number;
  readonly sh0: number;
  readonly epd0: boolean;
  readonly endi: boolean;
  readonly t1sz: number;
  readonly tg1: number;
  readonly ir1: number;
  readonly or1: number;
  readonly sh1: number;
  readonly epd1: boolean;
  readonly v: boolean;
  // q0 [63:32]
  readonly ips: number;
  readonly affd: boolean;
  readonly wxn: boolean;
  readonly uwxn: boolean;
  /** TBI0 (bit 38) and TBI1 (bit 39) as bits 0 and 1. */
  readonly tbi: number;
  readonly pan: boolean;
  readonly aa64: boolean;
  readonly hd: boolean;
  readonly ha: boolean;
  /** Stall (S), record (R), abort-on-terminate (A). */
  readonly s: boolean;
  readonly r: boolean;
  readonly a: boolean;
  readonly aset: boolean;
  readonly asid: number;
  // q1
  readonly nscfg0: boolean;
  readonly had0: boolean;
  /** Stage-1 table base for VA[55] = 0; a PA, or an IPA when stage 2 also translates. Bits 3:0 zero. */
  readonly ttb0: number;
  // q2
  readonly nscfg1: boolean;
  readonly had1: boolean;
  readonly ttb1: number;
  // q3, q4
  readonly mair: U64;
  readonly amair: U64;
  // q5
  readonly impdef: number;
  readonly partid: number;
  readonly pmg: number;
}

/** Field positions: doubleword, msb, lsb. CD bit N is q[N/64] bit N%64 (SPEC 5.4). */
const CD_LAYOUT: readonly FieldSpec[] = [
  f('t0sz', 0, 5, 0),
  f('tg0', 0, 7, 6),
  f('ir0', 0, 9, 8),
  f('or0', 0, 11, 10),
  f('sh0', 0, 13, 12),
  flag('epd0', 0, 14),
  flag('endi', 0, 15),
  f('t1sz', 0, 21, 16),
  f('tg1', 0, 23, 22),
  f('ir1', 0, 25, 24),
  f('or1', 0, 27, 26),
  f('sh1', 0, 29, 28),
  flag('epd1', 0, 30),
  flag('v', 0, 31),
  f('ips', 0, 34, 32),
  flag('affd', 0, 35),
  flag('wxn', 0, 36),
  flag('uwxn', 0, 37),
  f('tbi', 0, 39, 38),
  flag('pan', 0, 40),
  flag('aa64', 0, 41),
  flag('hd', 0, 42),
  flag('ha', 0, 43),
  flag('s', 0, 44),
  flag('r', 0, 45),
  flag('a', 0, 46),
  flag('aset', 0, 47),
  f('asid', 0, 63, 48),
  flag('nscfg0', 1, 0),
  flag('had0', 1, 1),
  f('ttb0', 1, 51, 4, 'addr'),
  flag('nscfg1', 2, 0),
  flag('had1', 2, 1),
  f('ttb1', 2, 51, 4, 'addr'),
  f('mair', 3, 63, 0, 'u64'),
  f('amair', 4, 63, 0, 'u64'),
  f('impdef', 5, 31, 0),
  f('partid', 5, 47, 32),
  f('pmg', 5, 55, 48),
];
checkLayout('CD', CD_LAYOUT, CD_DWORDS);

const ZERO_FIELDS: CdFields = Object.freeze({
  t0sz: 0, tg0: 0, ir0: 0, or0: 0, sh0: 0, epd0: false, endi: false,
  t1sz: 0, tg1: 0, ir1: 0, or1: 0, sh1: 0, epd1: false, v: false,
  ips: 0, affd: false, wxn: false, uwxn: false, tbi: 0, pan: false, aa64: false, hd: false, ha: false,
  s: false, r: false, a: false, aset: false, asid: 0,
  nscfg0: false, had0: false, ttb0: 0, nscfg1: false, had1: false, ttb1: 0,
  mair: ZERO64, amair: ZERO64, impdef: 0, partid: 0, pmg: 0,
});

export function cdFields(partial: Partial<CdFields> = {}): CdFields {
  return { ...ZERO_FIELDS, ...partial };
}

function checkWords(words: CdWords): void {
  if (words.length !== CD_DWORDS) throw new RangeError(`a CD is ${CD_DWORDS} doublewords, got ${words.length}`);
}

export function decodeCd(words: CdWords): CdFields {
  checkWords(words);
  return decodeFields(words, CD_LAYOUT) as unknown as CdFields;
}

export function encodeCd(cd: CdFields): U64[] {
  const words = zeroWords(CD_DWORDS);
  encodeFields(words, CD_LAYOUT, cd, 'CD');
  return words;
}

/** The bits the layout defines, per doubleword. */
export function cdDefinedMask(): U64[] {
  return definedMask(CD_LAYOUT, CD_DWORDS);
}

// --- L1CD (SPEC 5.3): V bit 0, L2Ptr [51:12] ----------------------------------------------------

export interface L1Cd {
  readonly v: boolean;
  /** Base of the level-2 CD table (bits 11:0 zero; SPEC 5.3 "L2Ptr"). */
  readonly l2ptr: number;
}

export function decodeL1Cd(lo: number, hi: number): L1Cd {
  return { v: (lo & 1) !== 0, l2ptr: (hi & 0xf_ffff) * 0x1_0000_0000 + ((lo & 0xffff_f000) >>> 0) };
}

export function encodeL1Cd(d: L1Cd): U64 {
  if (d.l2ptr % 4096 !== 0 || d.l2ptr < 0 || d.l2ptr >= 2 ** 52) throw new RangeError(`L1CD.L2Ptr 0x${d.l2ptr.toString(16)} is not 4K-aligned below 2^52`);
  return { lo: ((d.l2ptr % 0x1_0000_0000) | (d.v ? 1 : 0)) >>> 0, hi: Math.floor(d.l2ptr / 0x1_0000_0000) >>> 0 };
}

/**
 * Where the CD of `ssid` lives (SPEC 5.2 S1Fmt, 5.3): linear tables index the CD array directly;
 * 2-level tables index the L1CD array with SSID[S1CDMax-1:SPLIT] and the leaf table with
 * SSID[SPLIT-1:0], SPLIT = 6 (4K leaf tables, 64 CDs) or 10 (64K leaf tables, 1024 CDs).
 * S1Fmt = 0b11 is reserved and treated as linear [inferred: the model picks the simplest
 * interpretation for a reserved value; Linux never writes it].
 */
export function cdSplit(s1fmt: number): number {
  return s1fmt === S1FMT_4K_L2 ? 6 : s1fmt === S1FMT_64K_L2 ? 10 : 0;
}

// --- Validity (C_BAD_CD, SPEC 5.4.1) -------------------------------------------------------------

export interface CdCheckFeatures {
  /** Granules the SMMU implements (IDR5.GRAN4K/16K/64K). */
  readonly gran4k: boolean;
  readonly gran16k: boolean;
  readonly gran64k: boolean;
  /** IDR0.ASID16. */
  readonly asid16: boolean;
  /** IDR0.TTF bit 1: AArch64 tables. */
  readonly aarch64: boolean;
  /** IDR0.TTENDIAN: 0 mixed, 2 little only, 3 big only. */
  readonly ttendian: number;
  /** IDR0.STALL_MODEL: 1 = stall not supported. */
  readonly stallModel: number;
}

export const CD_ILLEGAL_CODES = ['V0', 'AA32', 'ENDI', 'TG0', 'T0SZ', 'ASID', 'STALL'] as const;

/** The TTB0 granule of a CD (TG0 uses the TCR encoding: 0 4K, 1 64K, 2 16K). */
export function cdGranule0(cd: CdFields): Granule | undefined {
  return granuleFromTg0(cd.tg0);
}

/**
 * Why this CD is ILLEGAL (→ C_BAD_CD), or undefined. Conditions (SPEC 5.4.1, in this order):
 * V = 0; AA64 = 0 on an AArch64-only SMMU; ENDI selecting an endianness IDR0.TTENDIAN lacks;
 * ASID[15:8] ≠ 0 without ASID16; S = 1 where stalls are not supported; and, for TTB0 in use
 * (EPD0 = 0), an unimplemented or reserved TG0 and a T0SZ outside [16, 39] (no LVA, no STT:
 * IDR3.STT = 0) [inferred for TG0/T0SZ: the spec lets an out-of-range TxSZ either be ILLEGAL or
 * behave as clamped; the model takes the stricter reading, as QEMU's decode_cd does].
 */
export function checkCd(cd: CdFields, features: CdCheckFeatures): string | undefined {
  if (!cd.v) return 'V0: CD.V == 0';
  if (!cd.aa64 || !features.aarch64) return 'AA32: VMSAv8-32 CDs are not supported (IDR0.TTF = AArch64)';
  if ((cd.endi && features.ttendian === 2) || (!cd.endi && features.ttendian === 3)) return `ENDI: CD.ENDI = ${cd.endi ? 1 : 0} with IDR0.TTENDIAN = ${features.ttendian}`;
  if (!features.asid16 && cd.asid > 0xff) return `ASID: 0x${cd.asid.toString(16)} needs 16-bit ASIDs`;
  if (cd.s && features.stallModel === 1) return 'STALL: CD.S = 1 but IDR0.STALL_MODEL = 0b01';
  if (!cd.epd0) {
    const g = cdGranule0(cd);
    const implemented = g !== undefined && (g.shift === 12 ? features.gran4k : g.shift === 14 ? features.gran16k : features.gran64k);
    if (!implemented) return `TG0: granule encoding ${cd.tg0} is reserved or not implemented`;
    if (cd.t0sz < 16 || cd.t0sz > 39) return `T0SZ: ${cd.t0sz} outside [16, 39]`;
  }
  return undefined;
}

/** IPS decoded, capped at the OAS (SPEC 5.4: "IPS values greater than OAS are treated as OAS"); reserved encodings → OAS. */
export function cdEffectiveIps(ips: number, oas: number): number {
  const bits = [32, 36, 40, 42, 44, 48, 52][ips];
  return bits === undefined ? oas : Math.min(bits, oas);
}

// --- Used bits and update-safe bits (Linux arm_smmu_get_cd_used, smmuv3-arch.md §2.7) ------------

const CD_V = genmask(31, 31);
const CD_EPD0 = genmask(14, 14);
/** T0SZ, TG0, IRGN0, ORGN0, SH0: q0 [13:0]. */
const CD_TTB0_CTRL = genmask(13, 0);
const CD_TTB0 = genmask(51, 4);

/**
 * The bits the SMMU uses for this CD, as Linux computes them for its hitless writer: only V if
 * invalid; otherwise every bit, except that EPD0 = 1 makes T0SZ/TG0/IR0/OR0/SH0 and TTB0 unused
 * (smmuv3-arch.md §2.7; Linux `arm_smmu_get_cd_used`).
 */
export function cdUsedBits(words: CdWords): U64[] {
  checkWords(words);
  const q0 = words[0] ?? ZERO64;
  const used: U64[] = zeroWords(CD_DWORDS);
  used[0] = CD_V;
  if ((q0.lo & CD_V.lo) === 0) return used;
  const all = { lo: 0xffff_ffff, hi: 0xffff_ffff };
  for (let i = 0; i < CD_DWORDS; i++) used[i] = all;
  if ((q0.lo & CD_EPD0.lo) !== 0) {
    used[0] = { lo: (all.lo & ~CD_TTB0_CTRL.lo) >>> 0, hi: all.hi };
    used[1] = { lo: (all.lo & ~CD_TTB0.lo) >>> 0, hi: (all.hi & ~CD_TTB0.hi) >>> 0 };
  }
  return used;
}

/**
 * Update-safe CD bits: none. Linux's CD writer ops provide no `get_update_safe` (only the STE
 * writer does, for MEV and EATS), so every used bit that changes makes its qword critical
 * (smmuv3-arch.md §2.8).
 */
export function cdUpdateSafeBits(_current: CdWords, _target: CdWords): U64[] {
  return zeroWords(CD_DWORDS);
}

/** `words` with every bit outside `mask` cleared. */
export function cdMaskWords(words: CdWords, mask: CdWords): U64[] {
  return words.map((w, i) => u64And(w, mask[i] ?? ZERO64));
}
