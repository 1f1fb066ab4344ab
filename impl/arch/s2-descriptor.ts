/**
 * Stage-2 translation table descriptors (VMSAv8-64), bit-exact: table, block, page and invalid
 * entries, including the software encodings KVM/pKVM store in invalid entries (owner annotations
 * and the break-before-make LOCKED marker). Reference: stage2-pgtable.md §1.3–§1.6, §2.1, §2.7;
 * pkvm-host-s2-iommu.md §1.4.
 *
 * Hot paths use the `lo`/`hi` helpers (no allocation); the object codec is for tests, traces and
 * reports.
 */
import { type Granule, LAST_LEVEL, levelSize } from './granule.js';
import { type U64, TWO_POW_32, bits, u64 } from './u64.js';

/** How invalid entries carry ownership: the 7.x typed layout or the 6.x owner-in-9:2 layout. */
export type AnnotationFormat = 'typed' | 'legacy';

export interface S2Format {
  readonly granule: Granule;
  /** VTCR_EL2.DS = 1 (4K/16K): OA[51:50] in bits 9:8, SH from VTCR. */
  readonly lpa2: boolean;
  /** FEAT_XNX: XN is the two-bit field 54:53; without it only bit 54 is XN. */
  readonly xnx: boolean;
  readonly annotation: AnnotationFormat;
}

export function s2Format(granule: Granule, options: Partial<Omit<S2Format, 'granule'>> = {}): S2Format {
  if (options.lpa2 === true && granule.kind === '64K') throw new Error('LPA2 (DS) applies to the 4K and 16K granules only');
  return Object.freeze({ granule, lpa2: options.lpa2 ?? false, xnx: options.xnx ?? false, annotation: options.annotation ?? 'typed' });
}

// --- Bit positions (low half unless the name says HI, where the bit number is minus 32) ---
export const DESC_VALID = 1 << 0;
export const DESC_TYPE = 1 << 1;
export const DESC_S2AP_R = 1 << 6;
export const DESC_S2AP_W = 1 << 7;
export const DESC_AF = 1 << 10;
export const DESC_FNXS = 1 << 11;
export const DESC_NT = 1 << 16;
export const DESC_HI_DBM = 1 << (51 - 32);
export const DESC_HI_CONT = 1 << (52 - 32);
export const DESC_HI_XN_SHIFT = 53 - 32;
export const DESC_HI_SW_SHIFT = 55 - 32;
export const DESC_HI_PBHA_SHIFT = 59 - 32;
/** Legacy LOCKED marker: an invalid entry with bit 10 set (KVM_INVALID_PTE_LOCKED). */
export const LEGACY_LOCKED_BIT = 1 << 10;

/** Typed invalid-entry types, bits 63:60 (KVM_INVALID_PTE_TYPE_MASK). */
export const INVALID_TYPE_LOCKED = 1;
export const INVALID_TYPE_HOST_DONATION = 2;
export const INVALID_TYPE_GUEST_POISONED = 3;

/** Linux MemAttr values (FWB = 0 and FWB = 1 encodings), stage2-pgtable.md §1.6. */
export const MT_S2_NORMAL = 0xf;
export const MT_S2_NORMAL_NC = 0x5;
export const MT_S2_DEVICE_NGNRE = 0x1;
export const MT_S2_FWB_NORMAL = 0x6;
export const MT_S2_FWB_NORMAL_NC = 0x5;
export const MT_S2_FWB_DEVICE_NGNRE = 0x1;
export const SH_NON = 0b00;
export const SH_OUTER = 0b10;
export const SH_INNER = 0b11;

export function isValidLo(lo: number): boolean {
  return (lo & DESC_VALID) !== 0;
}

/** A valid entry with bit 1 set above the last level points to a table. */
export function isTableDesc(lo: number, level: number): boolean {
  return (lo & 3) === 3 && level !== LAST_LEVEL;
}

/** A valid leaf: a block (0b01) above the last level or a page (0b11) at it. */
export function isLeafDesc(lo: number, level: number): boolean {
  return level === LAST_LEVEL ? (lo & 3) === 3 : (lo & 3) === 1;
}

/**
 * Output address held in a table, block or page descriptor: the bits above the granule. A block's
 * OA bits below its size are RES0; callers that need the block base mask them off.
 */
export function descOutputAddress(fmt: S2Format, lo: number, hi: number): number {
  const g = fmt.granule;
  const loAddr = (lo & ~(g.size - 1)) >>> 0;
  if (fmt.lpa2) {
    return ((lo >>> 8) & 3) * 2 ** 50 + (hi & 0x3_ffff) * TWO_POW_32 + loAddr;
  }
  let pa = (hi & 0xffff) * TWO_POW_32 + loAddr;
  if (g.shift === 16) pa += ((lo >>> 12) & 0xf) * 2 ** 48;
  return pa;
}

/** Low and high halves of `pa` packed as a descriptor's output-address field. */
export function packOutputAddress(fmt: S2Format, pa: number): U64 {
  const g = fmt.granule;
  const loAddr = (pa % TWO_POW_32) & ~(g.size - 1);
  const above = Math.floor(pa / TWO_POW_32);
  if (fmt.lpa2) {
    const lo = loAddr | ((Math.floor(above / 2 ** 18) & 3) << 8);
    return u64(lo, above & 0x3_ffff);
  }
  let lo = loAddr;
  if (g.shift === 16) lo |= (Math.floor(above / 2 ** 16) & 0xf) << 12;
  return u64(lo, above & 0xffff);
}

/** Low half of `packOutputAddress` without allocating (hot paths). */
export function packOutputAddressLo(fmt: S2Format, pa: number): number {
  const loAddr = (pa % TWO_POW_32) & ~(fmt.granule.size - 1);
  if (fmt.lpa2) return (loAddr | ((Math.floor(pa / 2 ** 50) & 3) << 8)) >>> 0;
  if (fmt.granule.shift === 16) return (loAddr | ((Math.floor(pa / 2 ** 48) & 0xf) << 12)) >>> 0;
  return loAddr >>> 0;
}

/** High half of `packOutputAddress` without allocating (hot paths). */
export function packOutputAddressHi(fmt: S2Format, pa: number): number {
  const above = Math.floor(pa / TWO_POW_32);
  return fmt.lpa2 ? above & 0x3_ffff : above & 0xffff;
}

/** Largest output address (exclusive) a descriptor of this format can hold. */
export function maxOutputAddressBits(fmt: S2Format): number {
  return fmt.lpa2 || fmt.granule.shift === 16 ? 52 : 48;
}

export interface S2LeafAttrs {
  /** MemAttr[3:0], bits 5:2. */
  readonly memAttr: number;
  readonly read: boolean;
  readonly write: boolean;
  /** SH[1:0], bits 9:8 (under LPA2 these bits are OA[51:50] and SH is reported as 0). */
  readonly sh: number;
  readonly af: boolean;
  readonly fnxs: boolean;
  /** nT (FEAT_BBM), bit 16; blocks only (in a page bit 16 is OA[16]: never encoded, decoded as false). */
  readonly nT: boolean;
  readonly dbm: boolean;
  readonly contiguous: boolean;
  /** XN[1:0] (54:53) with FEAT_XNX; without it, 0 or 2 (bit 54 only). */
  readonly xn: number;
  /** Software bits 58:55. */
  readonly sw: number;
  /** PBHA, bits 62:59. */
  readonly pbha: number;
}

export type S2Descriptor =
  | { readonly kind: 'invalid'; readonly raw: U64 }
  | { readonly kind: 'reserved'; readonly raw: U64 }
  | { readonly kind: 'table'; readonly table: number; readonly raw: U64 }
  | { readonly kind: 'block' | 'page'; readonly oa: number; readonly attrs: S2LeafAttrs; readonly raw: U64 };

export function decodeS2Descriptor(fmt: S2Format, lo: number, hi: number, level: number): S2Descriptor {
  const raw = u64(lo, hi);
  if (!isValidLo(lo)) return { kind: 'invalid', raw };
  if (level === LAST_LEVEL && (lo & 3) === 1) return { kind: 'reserved', raw };
  if (isTableDesc(lo, level)) return { kind: 'table', table: descOutputAddress(fmt, lo, hi), raw };
  const oa = descOutputAddress(fmt, lo, hi);
  const size = levelSize(fmt.granule, level);
  return {
    kind: level === LAST_LEVEL ? 'page' : 'block',
    oa: oa - (oa % size),
    attrs: {
      memAttr: (lo >>> 2) & 0xf,
      read: (lo & DESC_S2AP_R) !== 0,
      write: (lo & DESC_S2AP_W) !== 0,
      sh: fmt.lpa2 ? 0 : (lo >>> 8) & 3,
      af: (lo & DESC_AF) !== 0,
      fnxs: (lo & DESC_FNXS) !== 0,
      // nT exists only in block descriptors: in a page, bit 16 is OA[16].
      nT: level !== LAST_LEVEL && (lo & DESC_NT) !== 0,
      dbm: (hi & DESC_HI_DBM) !== 0,
      contiguous: (hi & DESC_HI_CONT) !== 0,
      xn: fmt.xnx ? (hi >>> DESC_HI_XN_SHIFT) & 3 : (hi >>> DESC_HI_XN_SHIFT) & 2,
      sw: (hi >>> DESC_HI_SW_SHIFT) & 0xf,
      pbha: (hi >>> DESC_HI_PBHA_SHIFT) & 0xf,
    },
    raw,
  };
}

export function encodeTableDesc(fmt: S2Format, tablePa: number): U64 {
  const oa = packOutputAddress(fmt, tablePa);
  return u64(oa.lo | DESC_VALID | DESC_TYPE, oa.hi);
}

/** Encodes a block (level < 3) or page (level 3) descriptor. */
export function encodeLeafDesc(fmt: S2Format, level: number, oa: number, attrs: S2LeafAttrs): U64 {
  const packed = packOutputAddress(fmt, oa - (oa % levelSize(fmt.granule, level)));
  let lo = packed.lo | DESC_VALID | (level === LAST_LEVEL ? DESC_TYPE : 0);
  lo |= (attrs.memAttr & 0xf) << 2;
  if (attrs.read) lo |= DESC_S2AP_R;
  if (attrs.write) lo |= DESC_S2AP_W;
  if (!fmt.lpa2) lo |= (attrs.sh & 3) << 8;
  if (attrs.af) lo |= DESC_AF;
  if (attrs.fnxs) lo |= DESC_FNXS;
  if (attrs.nT && level !== LAST_LEVEL) lo |= DESC_NT;
  let hi = packed.hi;
  if (attrs.dbm) hi |= DESC_HI_DBM;
  if (attrs.contiguous) hi |= DESC_HI_CONT;
  hi |= (fmt.xnx ? attrs.xn & 3 : attrs.xn & 2) << DESC_HI_XN_SHIFT;
  hi |= (attrs.sw & 0xf) << DESC_HI_SW_SHIFT;
  hi |= (attrs.pbha & 0xf) << DESC_HI_PBHA_SHIFT;
  return u64(lo, hi);
}

// --- Invalid entries: annotations and LOCKED ---

export type InvalidEntry =
  | { readonly kind: 'empty' }
  | { readonly kind: 'locked' }
  /** `type` is the typed format's 63:60 field (undefined in the legacy format). */
  | { readonly kind: 'annotation'; readonly type: number | undefined; readonly owner: number; readonly meta: U64 }
  /** A non-zero invalid entry this format gives no meaning to. */
  | { readonly kind: 'unknown'; readonly raw: U64 };

/** Typed metadata is 56 bits (59:4): `meta.lo` = metadata bits 31:0, `meta.hi` = bits 55:32. */
export function encodeTypedAnnotation(type: number, owner: number, meta: U64): U64 {
  const lo = ((owner & 7) << 1) | ((meta.lo & 0x0fff_ffff) << 4);
  const hi = (meta.lo >>> 28) | ((meta.hi & 0x00ff_ffff) << 4) | ((type & 0xf) << 28);
  return u64(lo, hi);
}

/** Legacy format: owner id in bits 9:2 (KVM_INVALID_PTE_OWNER_MASK), nothing else. */
export function encodeLegacyAnnotation(owner: number): U64 {
  return u64((owner & 0xff) << 2, 0);
}

/** The break-before-make marker written before the TLBI of a live entry. */
export function lockedMarker(fmt: S2Format): U64 {
  return fmt.annotation === 'typed' ? u64(0, INVALID_TYPE_LOCKED << 28) : u64(LEGACY_LOCKED_BIT, 0);
}

export function isLockedEntry(fmt: S2Format, lo: number, hi: number): boolean {
  if ((lo & DESC_VALID) !== 0) return false;
  return fmt.annotation === 'typed' ? hi >>> 28 === INVALID_TYPE_LOCKED : (lo & LEGACY_LOCKED_BIT) !== 0;
}

export function decodeInvalidEntry(fmt: S2Format, lo: number, hi: number): InvalidEntry {
  if (lo === 0 && hi === 0) return { kind: 'empty' };
  if ((lo & DESC_VALID) !== 0) return { kind: 'unknown', raw: u64(lo, hi) };
  if (isLockedEntry(fmt, lo, hi)) return { kind: 'locked' };
  if (fmt.annotation === 'typed') {
    const type = hi >>> 28;
    if (type === 0) return { kind: 'unknown', raw: u64(lo, hi) };
    const meta = u64(bits(lo, hi, 35, 4), bits(lo, hi, 59, 36));
    return { kind: 'annotation', type, owner: (lo >>> 1) & 7, meta };
  }
  // Legacy: only bits 9:2 carry meaning; anything else set is foreign to this format.
  if ((lo & ~0x3fc) !== 0 || hi !== 0) return { kind: 'unknown', raw: u64(lo, hi) };
  return { kind: 'annotation', type: undefined, owner: (lo >>> 2) & 0xff, meta: u64(0, 0) };
}
