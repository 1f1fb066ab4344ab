/**
 * The 64-byte Stream Table Entry (8 little-endian doublewords), the level-1 stream table
 * descriptor, the STE legality check (SteIllegal) and Linux's per-configuration "used bits".
 * Reference: smmuv3-arch.md §2.1 (L1STD), §2.2 (layout), §2.3 (legality), §2.4 (S2SL0), §2.7
 * (used bits); field positions of q4–q7 and the SteIllegal order from IHI 0070 §5.2 / §5.2.2.
 *
 * Scope choices:
 * - Address fields decode bits up to 51 (Linux's masks). The spec fields reach bit 55 but
 *   55:52 are RES0 for VMSAv8-64 up to SMMUv3.3, and a 56-bit address is not exact as a number;
 *   those bits are therefore outside the defined bits and SteIllegal does not look at them
 *   (the spec does not make RES0 bits ILLEGAL).
 * - VMSAv9-128 (IDR5.D128) is not modelled: S2AA64 = 0 always means VMSAv8-32 LPAE.
 * - Only Non-secure STEs are checked; Secure/Realm-only fields are decoded so the codec is
 *   lossless, and otherwise ignored.
 */
import { type Granule, granuleFromTg0, levelShift, startLevelFromSl0 } from '../granule.js';
import { type U64, ZERO64, bits, genmask, u64And, u64Or } from '../u64.js';
import { type FieldSpec, checkLayout, decodeFields, definedMask, encodeField, encodeFields, f, flag, decodeField, zeroWords } from './fields.js';
import { type Aidr, type Idr0, type Idr1, type Idr3, type Idr5, oasBits } from './registers.js';

export const STE_DWORDS = 8;
export const STE_BYTES = 64;

/** An STE as its 8 doublewords, q0 first. */
export type SteWords = readonly U64[];

export const STE_CONFIG = Object.freeze({ ABORT: 0b000, BYPASS: 0b100, S1_TRANS: 0b101, S2_TRANS: 0b110, NESTED: 0b111 } as const);
export const S1DSS_TERMINATE = 0;
export const S1DSS_BYPASS = 1;
export const S1DSS_SSID0 = 2;
export const EATS_ABORT = 0;
export const EATS_TRANS = 1;
export const EATS_S1CHK = 2;
export const EATS_DPT = 3;
export const STRW_NSEL1 = 0;
export const STRW_EL2 = 2;
export const SHCFG_INCOMING = 1;

/** Every STE field, named after IHI 0070 §5.2 in camelCase; see the layout table for positions. */
export interface SteFields {
  // q0
  readonly v: boolean;
  /** Raw 3-bit Config; 0b001–0b011 are reserved and behave as 0b000 (abort, no event). */
  readonly config: number;
  readonly s1fmt: number;
  /** CD table base, a PA (or an IPA when stage 2 translates); bits 5:0 zero. */
  readonly s1ContextPtr: number;
  readonly s1cdmax: number;
  // q1
  readonly s1dss: number;
  readonly s1cir: number;
  readonly s1cor: number;
  readonly s1csh: number;
  /** S2HWU59..62 as bits 0..3. */
  readonly s2hwu: number;
  readonly dre: boolean;
  readonly cont: number;
  readonly dcp: boolean;
  readonly ppar: boolean;
  readonly mev: boolean;
  readonly swReserved: number;
  readonly s1pie: boolean;
  readonly s2fwb: boolean;
  readonly s1mpam: boolean;
  readonly s1stalld: boolean;
  readonly eats: number;
  readonly strw: number;
  readonly memattr: number;
  readonly mtcfg: boolean;
  readonly alloccfg: number;
  readonly shcfg: number;
  readonly nscfg: number;
  readonly privcfg: number;
  readonly instcfg: number;
  /** IMPLEMENTATION DEFINED bits [127:116]. */
  readonly impdef1: number;
  // q2
  readonly s2vmid: number;
  /** IMPLEMENTATION DEFINED bits [159:144]. */
  readonly impdef2: number;
  readonly s2t0sz: number;
  readonly s2sl0: number;
  readonly s2ir0: number;
  readonly s2or0: number;
  readonly s2sh0: number;
  /** 0 = 4K, 1 = 64K, 2 = 16K, 3 reserved. */
  readonly s2tg: number;
  readonly s2ps: number;
  readonly s2aa64: boolean;
  readonly s2endi: boolean;
  readonly s2affd: boolean;
  readonly s2ptw: boolean;
  readonly s2hd: boolean;
  readonly s2ha: boolean;
  readonly s2s: boolean;
  readonly s2r: boolean;
  readonly s2haft: boolean;
  readonly s2pie: boolean;
  readonly s2poe: boolean;
  readonly dptVmatch: number;
  // q3
  readonly s2nsw: boolean;
  readonly s2nsa: boolean;
  /** S2SL0_2: bit 2 of S2SL0 (SL2), only with IDR5.DS. */
  readonly s2sl0Bit2: boolean;
  readonly s2ds: boolean;
  /** Stage-2 table base; bits 3:0 zero. */
  readonly s2ttb: number;
  readonly s2skl: number;
  // q4
  /** IMPLEMENTATION DEFINED bits [271:256]. */
  readonly impdef4: number;
  readonly partid: number;
  readonly sS2t0sz: number;
  readonly sS2sl0: number;
  readonly sS2tg: number;
  readonly mecid: number;
  // q5
  readonly pmg: number;
  readonly mpamNs: boolean;
  readonly assuredOnly: boolean;
  readonly tl0: boolean;
  readonly tl1: boolean;
  /** VMS pointer; bits 11:0 zero. */
  readonly vmsPtr: number;
  // q6
  readonly s2sw: boolean;
  readonly s2sa: boolean;
  readonly sS2sl0Bit2: boolean;
  readonly sS2ttb: number;
  readonly sS2skl: number;
  // q7
  /** S2POI<p> for p = 0..15, 4 bits each. */
  readonly s2poi: U64;
}

/** Field positions: doubleword, msb, lsb (bit N of the STE is q[N/64] bit N%64). */
const STE_LAYOUT: readonly FieldSpec[] = [
  flag('v', 0, 0),
  f('config', 0, 3, 1),
  f('s1fmt', 0, 5, 4),
  f('s1ContextPtr', 0, 51, 6, 'addr'),
  f('s1cdmax', 0, 63, 59),
  f('s1dss', 1, 1, 0),
  f('s1cir', 1, 3, 2),
  f('s1cor', 1, 5, 4),
  f('s1csh', 1, 7, 6),
  f('s2hwu', 1, 11, 8),
  flag('dre', 1, 12),
  f('cont', 1, 16, 13),
  flag('dcp', 1, 17),
  flag('ppar', 1, 18),
  flag('mev', 1, 19),
  f('swReserved', 1, 23, 20),
  flag('s1pie', 1, 24),
  flag('s2fwb', 1, 25),
  flag('s1mpam', 1, 26),
  flag('s1stalld', 1, 27),
  f('eats', 1, 29, 28),
  f('strw', 1, 31, 30),
  f('memattr', 1, 35, 32),
  flag('mtcfg', 1, 36),
  f('alloccfg', 1, 40, 37),
  f('shcfg', 1, 45, 44),
  f('nscfg', 1, 47, 46),
  f('privcfg', 1, 49, 48),
  f('instcfg', 1, 51, 50),
  f('impdef1', 1, 63, 52),
  f('s2vmid', 2, 15, 0),
  f('impdef2', 2, 31, 16),
  f('s2t0sz', 2, 37, 32),
  f('s2sl0', 2, 39, 38),
  f('s2ir0', 2, 41, 40),
  f('s2or0', 2, 43, 42),
  f('s2sh0', 2, 45, 44),
  f('s2tg', 2, 47, 46),
  f('s2ps', 2, 50, 48),
  flag('s2aa64', 2, 51),
  flag('s2endi', 2, 52),
  flag('s2affd', 2, 53),
  flag('s2ptw', 2, 54),
  flag('s2hd', 2, 55),
  flag('s2ha', 2, 56),
  flag('s2s', 2, 57),
  flag('s2r', 2, 58),
  flag('s2haft', 2, 59),
  flag('s2pie', 2, 60),
  flag('s2poe', 2, 61),
  f('dptVmatch', 2, 63, 62),
  flag('s2nsw', 3, 0),
  flag('s2nsa', 3, 1),
  flag('s2sl0Bit2', 3, 2),
  flag('s2ds', 3, 3),
  f('s2ttb', 3, 51, 4, 'addr'),
  f('s2skl', 3, 62, 61),
  f('impdef4', 4, 15, 0),
  f('partid', 4, 31, 16),
  f('sS2t0sz', 4, 37, 32),
  f('sS2sl0', 4, 39, 38),
  f('sS2tg', 4, 47, 46),
  f('mecid', 4, 63, 48),
  f('pmg', 5, 7, 0),
  flag('mpamNs', 5, 8),
  flag('assuredOnly', 5, 9),
  flag('tl0', 5, 10),
  flag('tl1', 5, 11),
  f('vmsPtr', 5, 51, 12, 'addr'),
  flag('s2sw', 6, 0),
  flag('s2sa', 6, 1),
  flag('sS2sl0Bit2', 6, 2),
  f('sS2ttb', 6, 51, 4, 'addr'),
  f('sS2skl', 6, 62, 61),
  f('s2poi', 7, 63, 0, 'u64'),
];
checkLayout('STE', STE_LAYOUT, STE_DWORDS);

/** The bits the codec gives a meaning to; the rest are RES0 (or beyond the modelled PA size). */
export const STE_DEFINED_MASK: SteWords = Object.freeze(definedMask(STE_LAYOUT, STE_DWORDS));

export type SteKind = 'invalid' | 'abort' | 'bypass' | 's1' | 's2' | 'nested';

interface SteOf<K extends SteKind> extends SteFields {
  readonly kind: K;
}

/**
 * A decoded STE, tagged by what V and Config select. Every variant carries every field so the
 * codec is lossless (an abort STE may hold stale stage-2 fields, and hardware may cache it);
 * the tag says which of them the SMMU uses.
 */
export type Ste = SteOf<'invalid'> | SteOf<'abort'> | SteOf<'bypass'> | SteOf<'s1'> | SteOf<'s2'> | SteOf<'nested'>;

export function steKind(v: boolean, config: number): SteKind {
  if (!v) return 'invalid';
  switch (config) {
    case STE_CONFIG.BYPASS:
      return 'bypass';
    case STE_CONFIG.S1_TRANS:
      return 's1';
    case STE_CONFIG.S2_TRANS:
      return 's2';
    case STE_CONFIG.NESTED:
      return 'nested';
    default:
      // 0b000 and the reserved 0b001–0b011 all abort without an event (§2.2).
      return 'abort';
  }
}

function checkWords(words: SteWords): void {
  if (words.length !== STE_DWORDS) throw new RangeError(`an STE is ${STE_DWORDS} doublewords, got ${words.length}`);
}

export function decodeSte(words: SteWords): Ste {
  checkWords(words);
  const fields = decodeFields(words, STE_LAYOUT) as unknown as SteFields;
  return { ...fields, kind: steKind(fields.v, fields.config) } as Ste;
}

/** Encodes the fields (any `kind` property is ignored: V and Config are authoritative). */
export function encodeSte(ste: SteFields): U64[] {
  const words = zeroWords(STE_DWORDS);
  encodeFields(words, STE_LAYOUT, ste, 'STE');
  return words;
}

const ZERO_FIELDS: SteFields = Object.freeze(decodeFields(zeroWords(STE_DWORDS), STE_LAYOUT) as unknown as SteFields);

/** All-zero fields overridden by `partial`: convenient for building STEs in tests and drivers. */
export function steFields(partial: Partial<SteFields> = {}): SteFields {
  return { ...ZERO_FIELDS, ...partial };
}

export function steStage1Enabled(config: number): boolean {
  return (config & 0b101) === 0b101;
}

export function steStage2Enabled(config: number): boolean {
  return (config & 0b110) === 0b110;
}

// --- Level-1 stream table descriptor (§2.1) --------------------------------------------------

export interface L1std {
  /** 0 invalid; 1..11: the L2 array holds 2^(Span−1) STEs; 12..31 reserved (treated as 0). */
  readonly span: number;
  /** PA of the L2 array; bits 5:0 zero (Linux mask [51:6]; spec [55:6], 55:52 RES0). */
  readonly l2ptr: number;
}

const L1STD_LAYOUT: readonly FieldSpec[] = [f('span', 0, 4, 0), f('l2ptr', 0, 51, 6, 'addr')];
checkLayout('L1STD', L1STD_LAYOUT, 1);
export const L1STD_DEFINED_MASK: U64 = definedMask(L1STD_LAYOUT, 1)[0] ?? ZERO64;

export function decodeL1std(value: U64): L1std {
  return decodeFields([value], L1STD_LAYOUT) as unknown as L1std;
}

export function encodeL1std(d: L1std): U64 {
  const words = zeroWords(1);
  encodeFields(words, L1STD_LAYOUT, d, 'L1STD');
  return words[0] ?? ZERO64;
}

/**
 * Whether a Span is usable with the given STRTAB_BASE_CFG.SPLIT: 0 and the reserved 12..31
 * invalidate the whole span, and so does a Span beyond SPLIT + 1 (§2.1, SPEC 5.1.1).
 */
export function l1stdSpanValid(span: number, split: number): boolean {
  return span >= 1 && span <= 11 && span <= split + 1;
}

/** Number of STEs in the L2 array a valid Span describes. */
export function l1stdL2Entries(span: number): number {
  return span >= 1 && span <= 11 ? 2 ** (span - 1) : 0;
}

// --- Legality (§2.3; IHI 0070 §5.2.2 SteIllegal) -------------------------------------------

/** The SMMU properties SteIllegal reads (ID registers, possibly adjusted by errata). */
export interface SteCheckFeatures {
  readonly s1p: boolean;
  readonly s2p: boolean;
  /** IDR0.TTF: bit 0 AArch32 LPAE, bit 1 AArch64. */
  readonly ttf: number;
  readonly hyp: boolean;
  readonly ats: boolean;
  readonly ns1ats: boolean;
  readonly httu: number;
  /** Effective IDR0.STALL_MODEL. */
  readonly stallModel: number;
  readonly ttendian: number;
  readonly vmid16: boolean;
  readonly cd2l: boolean;
  /** IDR1.SSIDSIZE. */
  readonly ssidSize: number;
  readonly gran4k: boolean;
  readonly gran16k: boolean;
  readonly gran64k: boolean;
  /** Output address size in bits (IDR5.OAS decoded). */
  readonly oas: number;
  /** IDR3.STT. */
  readonly stt: boolean;
  /** IDR5.DS. */
  readonly ds: boolean;
  /** IDR3.DPT. */
  readonly dpt: boolean;
  /** IDR3.FWB. */
  readonly fwb: boolean;
  /** IDR3.PBHA. */
  readonly pbha: boolean;
  /** IDR3.S2PI / S2PO (SMMUv3.4); the reference's IDR3 table does not place them, so set by hand. */
  readonly s2pi: boolean;
  readonly s2po: boolean;
  /** Whether a VMS is supported (MPAM); enables the VMSPtr range check. */
  readonly vms: boolean;
  /** AIDR.ArchMinorRev: 0 is SMMUv3.0, whose two CONSTRAINED UNPREDICTABLE cases this code treats as ILLEGAL. */
  readonly archMinorRev: number;
}

/** IAS = max(TTF[0] ? 40 : 0, TTF[1] ? OAS : 0) (§1.8, SPEC 3.4). */
export function inputAddressSize(features: Pick<SteCheckFeatures, 'ttf' | 'oas'>): number {
  return Math.max((features.ttf & 1) !== 0 ? 40 : 0, (features.ttf & 2) !== 0 ? features.oas : 0);
}

export function steFeaturesFromIdRegs(idr0: Idr0, idr1: Idr1, idr3: Idr3, idr5: Idr5, aidr: Aidr): SteCheckFeatures {
  return {
    s1p: idr0.s1p,
    s2p: idr0.s2p,
    ttf: idr0.ttf,
    hyp: idr0.hyp,
    ats: idr0.ats,
    ns1ats: idr0.ns1ats,
    httu: idr0.httu,
    stallModel: idr0.stallModel,
    ttendian: idr0.ttendian,
    vmid16: idr0.vmid16,
    cd2l: idr0.cd2l,
    ssidSize: idr1.ssidsize,
    gran4k: idr5.gran4k,
    gran16k: idr5.gran16k,
    gran64k: idr5.gran64k,
    oas: oasBits(idr5.oas),
    stt: idr3.stt,
    ds: idr5.ds,
    dpt: idr3.dpt,
    fwb: idr3.fwb,
    pbha: idr3.pbha,
    s2pi: false,
    s2po: false,
    vms: false,
    archMinorRev: aidr.archMinorRev,
  };
}

/** Stable prefixes of the reasons checkSte returns, one per ILLEGAL condition. */
export const STE_ILLEGAL_CODES = [
  'V0',
  'S1_NOT_IMPLEMENTED',
  'S2_NOT_IMPLEMENTED',
  'EATS_SPLIT_STAGE',
  'EATS_FULL_WITH_S2S',
  'EATS_DPT_STREAMWORLD',
  'EATS_DPT_WITH_S2S',
  'STRW_RESERVED',
  'S1STALLD_NOT_CONFIGURABLE',
  'S1CDMAX_TOO_LARGE',
  'S1FMT_NEEDS_CD2L',
  'S1CONTEXTPTR_OUT_OF_RANGE',
  'S2FWB_AARCH32',
  'S2S_NOT_SUPPORTED',
  'S2S_REQUIRED',
  'S2AA64_UNSUPPORTED',
  'S2_HTTU_UNSUPPORTED',
  'S2HAFT_WITHOUT_S2HA',
  'S2TG_UNSUPPORTED',
  'S2TTB_OUT_OF_RANGE',
  'S2T0SZ_OUT_OF_RANGE',
  'S2_WALK_INCONSISTENT',
  'S2ENDI_UNSUPPORTED',
  'S2PIE_AARCH32',
  'S2POE_WITHOUT_S2PIE',
  'S2POE_WITH_S2HWU',
  'S2POI_RESERVED',
  'S2VMID_TOO_WIDE',
  'VMSPTR_OUT_OF_RANGE',
] as const;

export type SteIllegalCode = (typeof STE_ILLEGAL_CODES)[number];

function illegal(code: SteIllegalCode, detail: string): string {
  return `${code}: ${detail}`;
}

function s2Granule(ste: SteFields): Granule | undefined {
  return granuleFromTg0(ste.s2tg);
}

function granuleSupported(g: Granule, features: SteCheckFeatures): boolean {
  return (g.kind === '4K' && features.gran4k) || (g.kind === '16K' && features.gran16k) || (g.kind === '64K' && features.gran64k);
}

/** Whether the 52-bit LPA2 interpretation (STE.S2DS) is in force for this STE. */
function s2dsEffective(ste: SteFields, features: SteCheckFeatures, g: Granule | undefined): boolean {
  return features.ds && ste.s2ds && g !== undefined && g.kind !== '64K';
}

/** S2PS decoded and capped by the OAS; reserved encodings are capped too (SPEC 5.2 S2PS). */
export function effectiveS2ps(s2ps: number, oas: number): number {
  const bitsForPs = s2ps === 7 ? 56 : [32, 36, 40, 42, 44, 48, 52][s2ps] ?? 56;
  return Math.min(bitsForPs, oas);
}

/**
 * STEWalkConfigInconsistentAA64: whether S2SL0 (with S2SL0_2) is inconsistent with S2T0SZ and
 * S2TG. The spec's function body is not available; as the reference says (§2.3 item 10, [INF])
 * it follows the Armv8-A VTCR rules: the start level must exist for the granule and resolve
 * between 1 and stride + 4 IA bits (at most 16 concatenated tables). The SMMU pseudocode passes
 * no PS to it, so the A-profile PA-size restrictions on start levels are deliberately not
 * applied here.
 */
export function s2WalkConfigInconsistent(t0sz: number, sl0: number, sl0Bit2: boolean, g: Granule, options: { ds: boolean; stt: boolean }): string | undefined {
  const start = startLevelFromSl0(g, sl0, { ds: options.ds, sl2: options.ds && sl0Bit2, ttst: options.stt });
  if (start === undefined) return `S2SL0 ${sl0}${sl0Bit2 ? ' with S2SL0_2' : ''} is reserved for the ${g.kind} granule`;
  const ia = 64 - t0sz;
  const resolved = ia - levelShift(g, start);
  if (resolved < 1) return `start level ${start} resolves no bit of a ${ia}-bit IPA`;
  if (resolved > g.bitsPerLevel + 4) return `start level ${start} would need ${2 ** (resolved - g.bitsPerLevel)} concatenated tables for a ${ia}-bit IPA (max 16)`;
  return undefined;
}

/**
 * SteIllegal for a Non-secure STE: undefined if the STE is legal, else `CODE: explanation`.
 * Checks run in the order of the spec pseudocode, so the first applicable reason is returned.
 * Choices: for SMMUv3.0 (archMinorRev 0) the CONSTRAINED UNPREDICTABLE cases (EATS=01 with S2S
 * when stage 2 is bypassed; S2T0SZ out of range) are treated as ILLEGAL, the strict option.
 */
export function checkSte(ste: SteFields, features: SteCheckFeatures): string | undefined {
  if (!ste.v) return illegal('V0', 'STE.V == 0');
  const config = ste.config;
  // Config 0b0xx disables translation: not ILLEGAL (aborts without an event).
  if ((config & 0b100) === 0) return undefined;
  const s1 = steStage1Enabled(config);
  const s2 = steStage2Enabled(config);
  const v30 = features.archMinorRev === 0;
  if (s1 && !features.s1p) return illegal('S1_NOT_IMPLEMENTED', `Config ${config.toString(2)} translates at stage 1 but IDR0.S1P == 0`);
  if (s2 && !features.s2p) return illegal('S2_NOT_IMPLEMENTED', `Config ${config.toString(2)} translates at stage 2 but IDR0.S2P == 0`);

  const strwUnused = !features.s1p || !features.hyp || s2 || config === STE_CONFIG.BYPASS;
  if (features.ats && config !== STE_CONFIG.BYPASS) {
    if (ste.eats === EATS_S1CHK && (config !== STE_CONFIG.NESTED || ste.s2s || features.ns1ats)) {
      return illegal('EATS_SPLIT_STAGE', 'EATS == 0b10 (split-stage ATS) needs Config 0b111, S2S == 0 and IDR0.NS1ATS == 0');
    }
    if (ste.eats === EATS_TRANS && ste.s2s && (s2 || v30)) {
      return illegal('EATS_FULL_WITH_S2S', 'EATS == 0b01 (full ATS) with S2S == 1');
    }
    if (ste.eats === EATS_DPT && features.dpt) {
      if (!strwUnused && ste.strw !== STRW_NSEL1) return illegal('EATS_DPT_STREAMWORLD', 'EATS == 0b11 (DPT) needs an EL1 StreamWorld');
      // From the STE.EATS field text (not in the pseudocode): DPT with a stalling stage 2.
      if (s2 && ste.s2s) return illegal('EATS_DPT_WITH_S2S', 'EATS == 0b11 with Config 0b11x and S2S == 1');
    }
  }
  if (!strwUnused && (ste.strw & 1) === 1) return illegal('STRW_RESERVED', `STRW ${ste.strw.toString(2)} is reserved`);

  const ias = inputAddressSize(features);
  if (s1) {
    if (ste.s1stalld && features.stallModel !== 0) return illegal('S1STALLD_NOT_CONFIGURABLE', 'S1STALLD == 1 but IDR0.STALL_MODEL != 0b00');
    if (features.ssidSize !== 0 && ste.s1cdmax > features.ssidSize) {
      return illegal('S1CDMAX_TOO_LARGE', `S1CDMax ${ste.s1cdmax} exceeds IDR1.SSIDSIZE ${features.ssidSize}`);
    }
    if (features.ssidSize !== 0 && ste.s1cdmax !== 0 && !features.cd2l && (ste.s1fmt === 1 || ste.s1fmt === 2)) {
      return illegal('S1FMT_NEEDS_CD2L', `S1Fmt ${ste.s1fmt} selects a 2-level CD table but IDR0.CD2L == 0`);
    }
    const limit = s2 ? ias : features.oas;
    if (ste.s1ContextPtr >= 2 ** limit) {
      return illegal('S1CONTEXTPTR_OUT_OF_RANGE', `S1ContextPtr 0x${ste.s1ContextPtr.toString(16)} is beyond the ${s2 ? 'IAS' : 'OAS'} (${limit} bits)`);
    }
  }

  if (s2) {
    const vmsa32 = !ste.s2aa64;
    if (vmsa32 && features.fwb && ste.s2fwb) return illegal('S2FWB_AARCH32', 'S2FWB == 1 with VMSAv8-32 LPAE stage 2');
    if (ste.s2s && features.stallModel === 1) return illegal('S2S_NOT_SUPPORTED', 'S2S == 1 but IDR0.STALL_MODEL == 0b01 (no stalling)');
    if (!ste.s2s && features.stallModel === 2) return illegal('S2S_REQUIRED', 'S2S == 0 but IDR0.STALL_MODEL == 0b10 (stall forced)');
    if (vmsa32 && (features.ttf & 1) === 0) return illegal('S2AA64_UNSUPPORTED', 'S2AA64 == 0 selects VMSAv8-32 LPAE, which IDR0.TTF does not support');
    if (!vmsa32 && (features.ttf & 2) === 0) return illegal('S2AA64_UNSUPPORTED', 'S2AA64 == 1 selects VMSAv8-64, which IDR0.TTF does not support');
    if ((ste.s2ha || ste.s2hd) && (vmsa32 || features.httu === 0)) return illegal('S2_HTTU_UNSUPPORTED', 'S2HA/S2HD set without stage-2 HTTU support');
    if (ste.s2hd && features.httu === 1) return illegal('S2_HTTU_UNSUPPORTED', 'S2HD set but IDR0.HTTU only supports the Access flag');
    if (ste.s2haft && !ste.s2ha && features.httu === 3) return illegal('S2HAFT_WITHOUT_S2HA', 'S2HAFT == 1 with S2HA == 0');

    const g = s2Granule(ste);
    if (!vmsa32 && (g === undefined || !granuleSupported(g, features))) {
      return illegal('S2TG_UNSUPPORTED', `S2TG ${ste.s2tg} is ${g === undefined ? 'reserved' : `the ${g.kind} granule, which IDR5 does not support`}`);
    }
    const ds = s2dsEffective(ste, features, g);
    const paRange = vmsa32 ? 40 : effectiveS2ps(ste.s2ps, features.oas);
    if (ste.s2ttb >= 2 ** paRange) return illegal('S2TTB_OUT_OF_RANGE', `S2TTB 0x${ste.s2ttb.toString(16)} is beyond the effective S2PS (${paRange} bits)`);
    if (!vmsa32 && !ds && g !== undefined && g.kind !== '64K' && ste.s2ttb >= 2 ** 48) {
      return illegal('S2TTB_OUT_OF_RANGE', `S2TTB 0x${ste.s2ttb.toString(16)} is beyond 48 bits with a ${g.kind} granule and S2DS == 0`);
    }
    if (!vmsa32 && g !== undefined) {
      const small = g.kind !== '64K';
      const max = features.stt ? (small ? 48 : 47) : 39;
      const min = v30 ? 64 - ias : !small || ds ? Math.max(12, 64 - ias) : Math.max(16, 64 - ias);
      if (ste.s2t0sz < min || ste.s2t0sz > max) return illegal('S2T0SZ_OUT_OF_RANGE', `S2T0SZ ${ste.s2t0sz} outside ${min}..${max}`);
      const inconsistent = s2WalkConfigInconsistent(ste.s2t0sz, ste.s2sl0, ste.s2sl0Bit2, g, { ds, stt: features.stt });
      if (inconsistent !== undefined) return illegal('S2_WALK_INCONSISTENT', inconsistent);
    }
    // VMSAv8-32 walk consistency (STEWalkConfigInconsistentAA32) is not modelled: only
    // AArch64-only SMMUs are configured, where S2AA64 == 0 is already ILLEGAL above.
    if (features.ttendian === 2 && ste.s2endi) return illegal('S2ENDI_UNSUPPORTED', 'S2ENDI == 1 (big-endian) but IDR0.TTENDIAN is little-endian only');
    if (features.ttendian === 3 && !ste.s2endi) return illegal('S2ENDI_UNSUPPORTED', 'S2ENDI == 0 (little-endian) but IDR0.TTENDIAN is big-endian only');
    if (features.s2pi && ste.s2pie && vmsa32) return illegal('S2PIE_AARCH32', 'S2PIE == 1 with VMSAv8-32 LPAE stage 2');
    if (features.s2po && ste.s2poe) {
      if (!ste.s2pie) return illegal('S2POE_WITHOUT_S2PIE', 'S2POE == 1 needs the indirect permission scheme (S2PIE == 1)');
      if (features.pbha && ste.s2hwu !== 0) return illegal('S2POE_WITH_S2HWU', 'S2POE == 1 with S2HWU59..62 not all zero');
      for (let i = 0; i < 16; i++) {
        const nibble = i < 8 ? (ste.s2poi.lo >>> (4 * i)) & 0xf : (ste.s2poi.hi >>> (4 * (i - 8))) & 0xf;
        if (nibble === 0b0001 || nibble === 0b0101) return illegal('S2POI_RESERVED', `S2POI<${i}> uses the reserved encoding ${nibble.toString(2).padStart(4, '0')}`);
      }
    }
  }

  const s2vmidIgnored = !features.s2p || config === STE_CONFIG.BYPASS || (ste.strw !== STRW_NSEL1 && !strwUnused);
  if (!s2vmidIgnored && !features.vmid16 && ste.s2vmid > 0xff) {
    return illegal('S2VMID_TOO_WIDE', `S2VMID 0x${ste.s2vmid.toString(16)} needs 16-bit VMIDs but IDR0.VMID16 == 0`);
  }
  if (features.vms && config === STE_CONFIG.NESTED && ste.s1mpam && ste.vmsPtr >= 2 ** features.oas) {
    return illegal('VMSPTR_OUT_OF_RANGE', `VMSPtr 0x${ste.vmsPtr.toString(16)} is beyond the OAS`);
  }
  return undefined;
}

// --- Used bits (Linux arm_smmu_get_ste_used, §2.7) -------------------------------------------

const M = {
  V: genmask(0, 0),
  CFG: genmask(3, 1),
  S1FMT: genmask(5, 4),
  S1CTXPTR: genmask(51, 6),
  S1CDMAX: genmask(63, 59),
  S1DSS: genmask(1, 0),
  S1CIR: genmask(3, 2),
  S1COR: genmask(5, 4),
  S1CSH: genmask(7, 6),
  MEV: genmask(19, 19),
  S2FWB: genmask(25, 25),
  S1STALLD: genmask(27, 27),
  EATS: genmask(29, 28),
  STRW: genmask(31, 30),
  SHCFG: genmask(45, 44),
  S2VMID: genmask(15, 0),
  VTCR: genmask(50, 32),
  S2AA64: genmask(51, 51),
  S2ENDI: genmask(52, 52),
  S2PTW: genmask(54, 54),
  S2S: genmask(57, 57),
  S2R: genmask(58, 58),
  S2TTB: genmask(51, 4),
} as const;

function orAll(...masks: U64[]): U64 {
  return masks.reduce((a, b) => u64Or(a, b), ZERO64);
}

/**
 * The bits of each doubleword the SMMU uses for this STE's configuration, as Linux computes
 * them for its hitless writer: only V if invalid; otherwise Config plus the fields of each
 * translating stage, chosen by Config's bit 0 (stage 1) and bit 1 (stage 2) exactly as Linux
 * tests them, so a reserved Config 0b001/0b011 also reports stage-1 fields (Linux never writes
 * those values).
 */
export function steUsedBits(words: SteWords): U64[] {
  checkWords(words);
  const q0 = words[0] ?? ZERO64;
  const q1 = words[1] ?? ZERO64;
  const used: U64[] = zeroWords(STE_DWORDS);
  used[0] = M.V;
  if ((q0.lo & 1) === 0) return used;
  const cfg = bits(q0.lo, q0.hi, 3, 1);
  const q = [orAll(M.V, M.CFG), ZERO64, ZERO64, ZERO64];
  const add = (i: number, ...masks: U64[]): void => {
    q[i] = orAll(q[i] ?? ZERO64, ...masks);
  };
  if ((cfg & 1) !== 0) {
    add(0, M.S1FMT, M.S1CTXPTR, M.S1CDMAX);
    add(1, M.S1DSS, M.S1CIR, M.S1COR, M.S1CSH, M.S1STALLD, M.STRW, M.EATS, M.MEV);
    add(2, M.S2VMID);
    if (bits(q1.lo, q1.hi, 1, 0) === S1DSS_BYPASS) add(1, M.SHCFG);
  }
  if ((cfg & 2) !== 0) {
    add(1, M.S2FWB, M.EATS, M.SHCFG, M.MEV);
    add(2, M.S2VMID, M.VTCR, M.S2AA64, M.S2ENDI, M.S2PTW, M.S2S, M.S2R);
    add(3, M.S2TTB);
  }
  if (cfg === STE_CONFIG.BYPASS) add(1, M.SHCFG);
  for (let i = 0; i < 4; i++) used[i] = q[i] ?? ZERO64;
  return used;
}

/** `words` with every bit outside `mask` cleared, doubleword by doubleword. */
export function steMaskWords(words: SteWords, mask: SteWords): U64[] {
  return words.map((w, i) => u64And(w, mask[i] ?? ZERO64));
}

/** Reads one field of an STE held as words without decoding the rest (hot paths). */
export function steField<K extends keyof SteFields>(words: SteWords, key: K): SteFields[K] {
  const spec = STE_LAYOUT.find((s) => s.key === key);
  if (spec === undefined) throw new Error(`unknown STE field ${String(key)}`);
  return decodeField(words, spec) as SteFields[K];
}

/** Returns a copy of `words` with one field replaced (the STE shadowing code edits in place). */
export function steWithField<K extends keyof SteFields>(words: SteWords, key: K, value: SteFields[K]): U64[] {
  checkWords(words);
  const spec = STE_LAYOUT.find((s) => s.key === key);
  if (spec === undefined) throw new Error(`unknown STE field ${String(key)}`);
  const out = words.slice();
  out[spec.dw] = encodeField(out[spec.dw] ?? ZERO64, spec, value, 'STE');
  return out;
}
