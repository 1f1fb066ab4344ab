/**
 * VMSAv8-64 translation granule geometry (stage 2): levels, index bits, block sizes, which
 * leaves are legal where, start level from T0SZ/SL0, concatenation of start-level tables, and the
 * configurations the architecture rejects. Reference: stage2-pgtable.md §1.1, §1.2, §1.7.
 */

export type GranuleKind = '4K' | '16K' | '64K';

export interface Granule {
  readonly kind: GranuleKind;
  /** log2 of the granule size: 12, 14 or 16. */
  readonly shift: number;
  readonly size: number;
  /** IA bits resolved by one full table: shift − 3. */
  readonly bitsPerLevel: number;
  readonly entriesPerTable: number;
  /** VTCR_EL2.TG0 / STE.S2TG encoding: 00 4K, 01 64K, 10 16K. */
  readonly tg0: number;
  /** TLBI TTL/TG encoding: 1 4K, 2 16K, 3 64K. */
  readonly tlbiTg: number;
  /** Linux TGRAN_SL0_BASE: SL0 = base − start level. */
  readonly sl0Base: number;
  /** KVM_PGTABLE_MIN_BLOCK_LEVEL: the shallowest level KVM places blocks at. */
  readonly kvmMinBlockLevel: number;
  /** The deepest start level any configuration may use (−1 only for 4K with LPA2). */
  readonly firstLevel: number;
}

function makeGranule(kind: GranuleKind, shift: number, tg0: number, tlbiTg: number, sl0Base: number, kvmMinBlockLevel: number, firstLevel: number): Granule {
  return Object.freeze({
    kind,
    shift,
    size: 2 ** shift,
    bitsPerLevel: shift - 3,
    entriesPerTable: 2 ** (shift - 3),
    tg0,
    tlbiTg,
    sl0Base,
    kvmMinBlockLevel,
    firstLevel,
  });
}

/** 2^0..2^63 as doubles: `2 ** n` is a call to Math.pow, and walkers ask for level sizes per step. */
const POWERS_OF_TWO: readonly number[] = Array.from({ length: 64 }, (_, n) => 2 ** n);

export const GRANULE_4K = makeGranule('4K', 12, 0b00, 1, 2, 1, -1);
export const GRANULE_16K = makeGranule('16K', 14, 0b10, 2, 3, 2, 0);
export const GRANULE_64K = makeGranule('64K', 16, 0b01, 3, 3, 2, 1);

export const GRANULES: readonly Granule[] = [GRANULE_4K, GRANULE_16K, GRANULE_64K];

export const LAST_LEVEL = 3;

export function granuleByKind(kind: GranuleKind): Granule {
  switch (kind) {
    case '4K':
      return GRANULE_4K;
    case '16K':
      return GRANULE_16K;
    case '64K':
      return GRANULE_64K;
    default: {
      const impossible: never = kind;
      throw new Error(`unknown granule ${String(impossible)}`);
    }
  }
}

/** Decodes a TG0 / S2TG field; undefined for the reserved value 0b11. */
export function granuleFromTg0(tg0: number): Granule | undefined {
  if (tg0 === 0b00) return GRANULE_4K;
  if (tg0 === 0b01) return GRANULE_64K;
  if (tg0 === 0b10) return GRANULE_16K;
  return undefined;
}

/** ARM64_HW_PGTABLE_LEVEL_SHIFT: log2 of the span of one entry at `level`. */
export function levelShift(g: Granule, level: number): number {
  return g.bitsPerLevel * (4 - level) + 3;
}

/** Bytes covered by one entry at `level` (a block or page size when it is a leaf). */
export function levelSize(g: Granule, level: number): number {
  return POWERS_OF_TWO[levelShift(g, level)] as number;
}

/** Index of `addr` in a (single, non-concatenated) table at `level`. */
export function indexAt(g: Granule, addr: number, level: number): number {
  return Math.floor(addr / levelSize(g, level)) & (g.entriesPerTable - 1);
}

/** Features that make 52-bit-only leaf sizes legal. */
export interface LeafFeatures {
  /** FEAT_LPA2 with VTCR.DS = 1 (4K and 16K). */
  readonly lpa2?: boolean;
  /** FEAT_LPA with the 64K granule and a 52-bit output size. */
  readonly oa52?: boolean;
}

/**
 * Whether a leaf (block, or page at level 3) is architecturally legal at `level`
 * (stage2-pgtable.md §1.2).
 */
export function leafAllowedAt(g: Granule, level: number, features: LeafFeatures = {}): boolean {
  if (level === LAST_LEVEL) return true;
  switch (g.kind) {
    case '4K':
      return level === 1 || level === 2 || (level === 0 && features.lpa2 === true);
    case '16K':
      return level === 2 || (level === 1 && features.lpa2 === true);
    case '64K':
      return level === 2 || (level === 1 && features.oa52 === true);
    default: {
      const impossible: never = g.kind;
      return impossible;
    }
  }
}

/** Leaf sizes legal for the granule, ascending (a page-size bitmap as a list). */
export function leafSizes(g: Granule, features: LeafFeatures = {}): number[] {
  const sizes: number[] = [];
  for (let level = LAST_LEVEL; level >= g.firstLevel; level--) {
    if (leafAllowedAt(g, level, features)) sizes.push(levelSize(g, level));
  }
  return sizes;
}

/** Options that widen the SL0 encodings. */
export interface StartLevelOptions {
  /** VTCR_EL2.DS (LPA2): 16K SL0=3 → level 0; 4K SL2=1 → level −1. */
  readonly ds?: boolean;
  /** VTCR_EL2.SL2 (4K with DS only). */
  readonly sl2?: boolean;
  /** FEAT_TTST: 4K SL0=3 → level 3. */
  readonly ttst?: boolean;
}

/** Decodes VTCR_EL2.SL0 (or STE.S2SL0); undefined for a reserved encoding. */
export function startLevelFromSl0(g: Granule, sl0: number, options: StartLevelOptions = {}): number | undefined {
  if (options.sl2 === true) {
    // SL2 is only defined for 4K with DS=1, and then only together with SL0 = 0.
    return g.kind === '4K' && options.ds === true && sl0 === 0 ? -1 : undefined;
  }
  if (g.kind === '4K') {
    if (sl0 === 3) return options.ttst === true ? 3 : undefined;
    return 2 - sl0;
  }
  if (sl0 === 3) {
    return g.kind === '16K' && options.ds === true ? 0 : undefined;
  }
  return 3 - sl0;
}

/** Encodes a start level as SL0 (and SL2); undefined where no encoding exists. */
export function sl0FromStartLevel(g: Granule, level: number, options: StartLevelOptions = {}): { sl0: number; sl2: boolean } | undefined {
  for (const sl2 of [false, true]) {
    for (let sl0 = 0; sl0 < 4; sl0++) {
      if (startLevelFromSl0(g, sl0, { ...options, sl2 }) === level) return { sl0, sl2 };
    }
  }
  return undefined;
}

/** PS / OAS / S2PS / IPS encodings: 000 32 … 110 52 bits. */
const PA_SIZE_BITS = [32, 36, 40, 42, 44, 48, 52] as const;

export function paSizeFromEncoding(ps: number): number | undefined {
  return PA_SIZE_BITS[ps];
}

export function paSizeEncoding(bits: number): number | undefined {
  const index = PA_SIZE_BITS.indexOf(bits as (typeof PA_SIZE_BITS)[number]);
  return index < 0 ? undefined : index;
}

/** A stage-2 configuration to check: IA size (64 − T0SZ), start level, effective PA size. */
export interface Stage2ConfigInput {
  readonly granule: Granule;
  readonly iaBits: number;
  readonly startLevel: number;
  /** The effective output size in bits (min of PS and the implemented PA size). */
  readonly paBits: number;
  readonly ds?: boolean;
  /** FEAT_LPA with 64K: IA and OA up to 52 bits. */
  readonly lpa?: boolean;
  readonly ttst?: boolean;
}

export type Stage2ConfigCheck =
  | {
      readonly ok: true;
      /** Number of concatenated start-level tables (1..16). */
      readonly concatenatedTables: number;
      /** Entries in the (concatenated) start-level table. */
      readonly topEntries: number;
      /** Bytes of the (concatenated) start-level table; the base must be aligned to it (min 64). */
      readonly topBytes: number;
    }
  | { readonly ok: false; readonly reason: string };

/** Largest IA size the granule supports without and with the 52-bit extensions. */
export function maxIaBits(g: Granule, options: { ds?: boolean; lpa?: boolean } = {}): number {
  if (g.kind === '64K') return options.lpa === true ? 52 : 48;
  return options.ds === true ? 52 : 48;
}

/**
 * The architecture's rules for a stage-2 walk configuration (stage2-pgtable.md §1.7):
 * the start level must resolve at least one IA bit and at most 4 more bits than one table
 * (≤ 16 concatenated tables); the IA size must lie within the T0SZ limits; and some
 * (granule, start level, PA size) combinations are forbidden so that concatenation is used
 * instead (Arm DDI0487 K.a R_DXBSH / R_SRKBC as summarised by io-pgtable's
 * `arm_lpae_concat_mandatory`). Choice [INFERRED]: the PA-size rules are applied as "PA ≤ 42" for
 * a 4K level-0 start and "PA ≤ 40" for a 16K level-1 start, which covers every case the reference
 * names (PA 40 and 42, and 16K PA 40) and extends them to the smaller PA sizes; likewise "PA ≤ 42"
 * for a 64K level-1 start (AArch64.S2InvalidSL: PAMax < 44, as QEMU's check_s2_mmu_setup has it).
 */
export function checkStage2Config(input: Stage2ConfigInput): Stage2ConfigCheck {
  const { granule: g, iaBits, startLevel, paBits } = input;
  const maxIa = maxIaBits(g, input);
  // T0SZ maximum is 39 (IA ≥ 25) without FEAT_TTST, 48 with it (IA ≥ 16).
  const minIa = input.ttst === true ? 16 : 25;
  if (iaBits > maxIa) return { ok: false, reason: `IA size ${iaBits} exceeds the maximum ${maxIa} for ${g.kind}` };
  if (iaBits < minIa) return { ok: false, reason: `IA size ${iaBits} is below the minimum ${minIa}` };
  if (startLevel < g.firstLevel || startLevel > LAST_LEVEL) return { ok: false, reason: `start level ${startLevel} does not exist for ${g.kind}` };
  if (startLevel === -1 && input.ds !== true) return { ok: false, reason: 'start level -1 needs DS (LPA2)' };
  if (g.kind === '16K' && startLevel === 0 && input.ds !== true) return { ok: false, reason: '16K start level 0 needs DS (LPA2)' };
  // Only the 4K granule needs FEAT_TTST for a level-3 start (SL0 = 0b11); 16K/64K encode it as SL0 = 0.
  if (g.kind === '4K' && startLevel === 3 && input.ttst !== true) return { ok: false, reason: '4K start level 3 needs FEAT_TTST' };
  const bitsAtStart = iaBits - levelShift(g, startLevel);
  if (bitsAtStart < 1) return { ok: false, reason: `start level ${startLevel} resolves no IA bit for a ${iaBits}-bit IA` };
  if (bitsAtStart > g.bitsPerLevel + 4) {
    return { ok: false, reason: `start level ${startLevel} would need ${2 ** (bitsAtStart - g.bitsPerLevel)} concatenated tables (max 16)` };
  }
  if (g.kind === '4K' && startLevel === 0 && paBits <= 42) {
    return { ok: false, reason: `4K start level 0 is not permitted with a ${paBits}-bit PA: concatenate at level 1` };
  }
  if (g.kind === '16K' && startLevel === 1 && paBits <= 40) {
    return { ok: false, reason: `16K start level 1 is not permitted with a ${paBits}-bit PA: concatenate at level 2` };
  }
  if (g.kind === '64K' && startLevel === 1 && paBits <= 42) {
    return { ok: false, reason: `64K start level 1 is not permitted with a ${paBits}-bit PA: concatenate at level 2` };
  }
  const concatenatedTables = bitsAtStart > g.bitsPerLevel ? 2 ** (bitsAtStart - g.bitsPerLevel) : 1;
  const topEntries = 2 ** bitsAtStart;
  return { ok: true, concatenatedTables, topEntries, topBytes: Math.max(64, topEntries * 8) };
}

/**
 * KVM's choice of levels for an IPA size (`kvm_get_vtcr`): ARM64_HW_PGTABLE_LEVELS(ipa − 4),
 * at least 2, so that up to 16 tables are concatenated at the start level.
 */
export function kvmStage2StartLevel(g: Granule, iaBits: number): number {
  const levels = Math.max(2, Math.floor((iaBits - 4 - 4) / g.bitsPerLevel));
  return 4 - levels;
}

/**
 * Index of `addr` in the start-level table, spanning concatenated tables: the bits from the
 * start level's shift up to the IA size.
 */
export function startIndex(g: Granule, addr: number, startLevel: number, topEntries: number): number {
  return Math.floor(addr / levelSize(g, startLevel)) % topEntries;
}
