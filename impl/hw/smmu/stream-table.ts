/**
 * Stream table access: where the STE (and for a 2-level table the L1STD) for a StreamID lives,
 * fetching them from memory, and turning a fetched STE into what the translation path needs.
 * Reference: smmuv3-arch.md §1.7 (base/config registers, alignment), §2.1 (linear and 2-level,
 * L1STD), §2.2–§2.4 (STE, legality, stage-2 parameters).
 */
import { type Granule, LAST_LEVEL, granuleFromTg0, leafAllowedAt, levelShift, levelSize, startLevelFromSl0 } from '../../arch/granule.js';
import { ACCESS_OK, type PhysicalMemory, type Word64 } from '../../arch/physical-memory.js';
import { type S2Format, s2Format } from '../../arch/s2-descriptor.js';
import { effectiveStrtabSplit } from '../../arch/smmu/registers.js';
import { type Ste, type SteCheckFeatures, type SteKind, STE_BYTES, checkSte, decodeSte, effectiveS2ps } from '../../arch/smmu/ste.js';
import { type U64, u64 } from '../../arch/u64.js';
import type { VmidSpace } from './tlb.js';

export const L1STD_BYTES = 8;

/** Index of a granule in per-VMID tables: 0 = 4K, 1 = 16K, 2 = 64K. */
export function granuleIndex(g: Granule): number {
  return g.shift === 12 ? 0 : g.shift === 14 ? 1 : 2;
}

/** Everything a stage-2 walk of one STE needs, computed once when the STE is fetched. */
export interface S2Context {
  readonly vmid: number;
  readonly granule: Granule;
  readonly gIndex: number;
  readonly format: S2Format;
  readonly startLevel: number;
  /** IPA size: 64 − S2T0SZ (§2.4). */
  readonly iaBits: number;
  /** 2^iaBits: IPAs at or above it are stage-2 translation faults. */
  readonly ipaLimit: number;
  /** 2^min(S2PS, OAS): descriptor outputs at or above it are stage-2 address-size faults. */
  readonly paLimit: number;
  /** S2TTB with the bits below the (concatenated) start table's alignment treated as zero. */
  readonly ttb: number;
  /** Entries of the (possibly concatenated) start-level table. */
  readonly topEntries: number;
  readonly affd: boolean;
  /** S2R: record translation-family faults (§5.2). */
  readonly record: boolean;
  /** Bytes covered by one entry at each level 0..3. */
  readonly spans: Float64Array;
  readonly entryMask: number;
  /** 1 where a block (or page) descriptor is legal at level 0..3 (§2.4; no LPA2/52-bit blocks below 52-bit PS). */
  readonly leafOk: Uint8Array;
  /** The TLB / walk-cache space for (VMID, granule), linked lazily by the SMMU. */
  space: VmidSpace | null;
}

export function makeS2Context(ste: Ste, oas: number): S2Context | undefined {
  const granule = granuleFromTg0(ste.s2tg);
  if (granule === undefined) return undefined;
  const startLevel = startLevelFromSl0(granule, ste.s2sl0);
  if (startLevel === undefined || startLevel < 0 || startLevel > LAST_LEVEL) return undefined;
  const iaBits = 64 - ste.s2t0sz;
  const resolved = iaBits - levelShift(granule, startLevel);
  if (resolved < 1 || resolved > granule.bitsPerLevel + 4) return undefined;
  const topEntries = 2 ** resolved;
  const topBytes = Math.max(64, topEntries * 8);
  const spans = new Float64Array(4);
  const paBits = effectiveS2ps(ste.s2ps, oas);
  const leafOk = new Uint8Array(4);
  for (let level = 0; level <= LAST_LEVEL; level++) {
    spans[level] = levelSize(granule, level);
    leafOk[level] = leafAllowedAt(granule, level, { oa52: paBits >= 52 }) ? 1 : 0;
  }
  return {
    vmid: ste.s2vmid,
    granule,
    gIndex: granuleIndex(granule),
    format: s2Format(granule),
    startLevel,
    iaBits,
    ipaLimit: 2 ** iaBits,
    paLimit: 2 ** paBits,
    ttb: ste.s2ttb - (ste.s2ttb % topBytes),
    topEntries,
    affd: ste.s2affd,
    record: ste.s2r,
    spans,
    entryMask: granule.entriesPerTable - 1,
    leafOk,
    space: null,
  };
}

/** A fetched STE as the configuration cache holds it: raw words, decode, legality, walk parameters. */
export interface SteCacheEntry {
  readonly sid: number;
  readonly words: readonly U64[];
  readonly ste: Ste;
  /** SteIllegal's reason; undefined for a legal STE. An illegal STE behaves as V = 0 (§2.3). */
  readonly illegal: string | undefined;
  /** What the SMMU does with it: 'invalid' covers V = 0 and ILLEGAL. */
  readonly kind: SteKind;
  /** Stage-2 parameters when kind is 's2' (and 'nested', decoded for introspection only). */
  readonly s2: S2Context | null;
  /** Where it was fetched from. */
  readonly fetchAddr: number;
  readonly seq: number;
}

export function makeSteEntry(sid: number, words: readonly U64[], features: SteCheckFeatures, fetchAddr: number, seq: number): SteCacheEntry {
  const ste = decodeSte(words);
  const illegal = checkSte(ste, features);
  const kind: SteKind = illegal !== undefined ? 'invalid' : ste.kind;
  const s2 = kind === 's2' || kind === 'nested' ? (makeS2Context(ste, features.oas) ?? null) : null;
  // checkSte already rejects every configuration makeS2Context cannot build; this is a backstop
  // so that a gap between the two can never make the walker run with garbage parameters.
  const safeKind: SteKind = (kind === 's2' || kind === 'nested') && s2 === null ? 'invalid' : kind;
  return { sid, words, ste, illegal: safeKind === kind ? illegal : 'S2 walk parameters unusable', kind: safeKind, s2, fetchAddr, seq };
}

/** A fetched L1STD (§2.1): cached even when Span is invalid, like any structure (§6.1). */
export interface L1CacheEntry {
  readonly l1Index: number;
  /** First StreamID and number of StreamIDs the descriptor covers (2^SPLIT). */
  readonly sidBase: number;
  readonly sidCount: number;
  readonly lo: number;
  readonly hi: number;
  readonly span: number;
  /** L2 array base with bits below its size treated as zero. */
  readonly l2ptr: number;
  readonly fetchAddr: number;
  readonly seq: number;
}

export function makeL1Entry(l1Index: number, split: number, lo: number, hi: number, fetchAddr: number, seq: number): L1CacheEntry {
  const span = lo & 0x1f;
  // L2Ptr is bits 51:6 (§2.1, Linux mask).
  const raw = (hi & 0xf_ffff) * 0x1_0000_0000 + ((lo & 0xffff_ffc0) >>> 0);
  const l2Bytes = span >= 1 && span <= 11 ? 2 ** (span - 1) * STE_BYTES : STE_BYTES;
  const sidCount = 2 ** split;
  return { l1Index, sidBase: l1Index * sidCount, sidCount, lo, hi, span, l2ptr: raw - (raw % l2Bytes), fetchAddr, seq };
}

/** The stream table geometry the registers select right now. */
export interface StreamTableGeometry {
  readonly twoLevel: boolean;
  /** Effective LOG2SIZE: capped by IDR1.SIDSIZE. */
  readonly log2size: number;
  /** Effective SPLIT (6, 8 or 10). */
  readonly split: number;
  /** Base with the low bits the table alignment ignores treated as zero (§1.7). */
  readonly base: number;
  /** StreamIDs at or above this are out of range. */
  readonly sidLimit: number;
}

/**
 * Geometry from STRTAB_BASE / STRTAB_BASE_CFG. FMT values other than 0b01 (and 0b01 without
 * 2-level support) are linear: the spec says reserved FMT values behave as linear (SPEC 6.3.25).
 * A LOG2SIZE above IDR1.SIDSIZE is capped [INF: the register text says the effective size is
 * limited by SIDSIZE]; the base is aligned as SPEC 6.3.24 says, ignoring low ADDR bits.
 */
export function streamTableGeometry(baseAddr: number, cfg: number, sidBits: number, twoLevelSupported: boolean): StreamTableGeometry {
  const fmt = (cfg >>> 16) & 3;
  const twoLevel = twoLevelSupported && fmt === 1;
  const log2size = Math.min(cfg & 0x3f, sidBits);
  const split = effectiveStrtabSplit((cfg >>> 6) & 0x1f);
  const tableBytes = twoLevel ? Math.max(64, 2 ** Math.max(0, log2size - split) * L1STD_BYTES) : 2 ** log2size * STE_BYTES;
  return { twoLevel, log2size, split, base: baseAddr - (baseAddr % tableBytes), sidLimit: 2 ** log2size };
}

/** Reads the 8 doublewords of an STE; returns the address of the first aborting doubleword or -1. */
export function readSteWords(memory: PhysicalMemory, addr: number, out: U64[], scratch: Word64): number {
  out.length = 0;
  for (let i = 0; i < 8; i++) {
    if (memory.load64(addr + i * 8, scratch) !== ACCESS_OK) return addr + i * 8;
    out.push(u64(scratch.lo, scratch.hi));
  }
  return -1;
}

