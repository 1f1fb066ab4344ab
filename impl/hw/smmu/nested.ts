/**
 * Stage 1 and nesting (issue 13): the walk parameters a context descriptor gives, the CD cache
 * entry, and the stage-1 caches — combined S1(+S2) TLB entries tagged by VMID and ASID (or
 * global), and stage-1 walk-cache entries — with what each stage-1 TLBI removes.
 *
 * Scope: SSID 0 only. Every transaction the model issues is non-substream traffic, which uses
 * CD 0 (S1CDMax = 0, or S1DSS = 0b10); SubstreamIDs beyond 0 (PASIDs) are not modelled, so only
 * CD 0 is ever fetched or cached. Only TTB0 translates: inputs are numbers below 2^53, so
 * VA[55] is always 0 and TBI never matters.
 *
 * Why a separate cache from tlb.ts: a combined entry's size is min(stage-1 block, stage-2 block)
 * and the two stages may use different granules, so the size is not a level size of one granule.
 * Entries are therefore bucketed by log2(size) (12..52) rather than by level; the level kept is
 * the stage-1 level, which is what a TLBI_NH_VA TTL names (SPEC 4.4.1, smmuv3-arch.md §3.3).
 * Lookups are allocation-free: per-size counts skip empty sizes, keys are 30-bit folds.
 */
import { type Granule, LAST_LEVEL, leafAllowedAt, levelShift, levelSize } from '../../arch/granule.js';
import { type S2Format, s2Format } from '../../arch/s2-descriptor.js';
import { type CdFields, cdEffectiveIps, cdGranule0 } from '../../arch/smmu/cd.js';
import { type CommandOf } from '../../arch/smmu/commands.js';
import { type U64 } from '../../arch/u64.js';
import { granuleIndex } from './stream-table.js';
import { type AddressHolder, bucketKey } from './tlb.js';
import { type CacheObserver } from './cache-observer.js';

/** Everything a stage-1 walk of CD 0 needs, computed when the CD is fetched. */
export interface S1Context {
  readonly asid: number;
  readonly granule: Granule;
  readonly gIndex: number;
  readonly format: S2Format;
  readonly startLevel: number;
  /** VA size: 64 − T0SZ. */
  readonly iaBits: number;
  readonly inputLimit: number;
  /** 2^min(IPS, OAS): stage-1 outputs (IPAs when nested) at or above it are stage-1 F_ADDR_SIZE. */
  readonly paLimit: number;
  /** TTB0 (an IPA when nested), low bits below the start table's size treated as zero. */
  readonly ttb: number;
  readonly topEntries: number;
  readonly spans: Float64Array;
  readonly entryMask: number;
  readonly leafOk: Uint8Array;
  readonly affd: boolean;
  /** CD.R: record stage-1 translation-family faults. */
  readonly record: boolean;
  /** EPD0: walks of TTB0 are disabled (every access is a stage-1 translation fault). */
  readonly epd0: boolean;
  /** HAD0: APTable is ignored. */
  readonly had: boolean;
  /**
   * Permissive (QEMU) only: TTB0 translated by stage 2 once, when the CD was decoded, and used
   * as the root table PA from then on (qemu-smmuv3-peer.md §3(g): "the TTB0 PA is baked into the
   * cached configuration"). −1 in strict mode, where every walk translates TTB0 afresh.
   */
  ttbPa: number;
}

/** The stage-1 start level for a VA size (SPEC 5.4 / Armv8 VMSA): the level whose table resolves the top bits. */
export function s1StartLevel(g: Granule, iaBits: number): number {
  for (let level = LAST_LEVEL; level >= 0; level--) {
    const shift = levelShift(g, level);
    if (shift < iaBits && iaBits <= shift + g.bitsPerLevel) return level;
  }
  return -1;
}

export function makeS1Context(cd: CdFields, oas: number): S1Context | undefined {
  const granule = cdGranule0(cd);
  if (granule === undefined) return undefined;
  const iaBits = 64 - cd.t0sz;
  const startLevel = s1StartLevel(granule, iaBits);
  if (startLevel < 0) return undefined;
  const topEntries = 2 ** (iaBits - levelShift(granule, startLevel));
  const topBytes = Math.max(64, topEntries * 8);
  const paBits = cdEffectiveIps(cd.ips, oas);
  const spans = new Float64Array(4);
  const leafOk = new Uint8Array(4);
  for (let level = 0; level <= LAST_LEVEL; level++) {
    spans[level] = levelSize(granule, level);
    leafOk[level] = leafAllowedAt(granule, level, { oa52: paBits >= 52 }) ? 1 : 0;
  }
  return {
    asid: cd.asid,
    granule,
    gIndex: granuleIndex(granule),
    // VMSAv8-64 stage-1 and stage-2 descriptors place the output address identically.
    format: s2Format(granule),
    startLevel,
    iaBits,
    inputLimit: 2 ** iaBits,
    paLimit: 2 ** paBits,
    ttb: cd.ttb0 - (cd.ttb0 % topBytes),
    topEntries,
    spans,
    entryMask: granule.entriesPerTable - 1,
    leafOk,
    affd: cd.affd,
    record: cd.r,
    epd0: cd.epd0,
    had: cd.had0,
    ttbPa: -1,
  };
}

/** A fetched CD 0 as the configuration cache holds it. */
export interface CdCacheEntry {
  readonly sid: number;
  readonly words: readonly U64[];
  readonly cd: CdFields;
  /** checkCd's reason (→ C_BAD_CD); undefined for a legal CD. */
  readonly illegal: string | undefined;
  readonly s1: S1Context | null;
  /** PA the CD was read from (after stage 2 when nested). */
  readonly fetchAddr: number;
  readonly seq: number;
}

// --- Combined TLB and stage-1 walk cache ----------------------------------------------------------

export class S1TlbEntry {
  next: S1TlbEntry | null = null;
  constructor(
    readonly vmid: number,
    readonly asid: number,
    /** nG = 0: matches every ASID of the VMID. */
    readonly global: boolean,
    /** Stage-1 granule and level (what TLBI_NH_VA TG/TTL name). */
    readonly gIndex: number,
    readonly level: number,
    readonly base: number,
    readonly size: number,
    /** Output (PA) of `base`, and the IPA stage 1 gave for it (= pa when not nested). */
    readonly pa: number,
    readonly ipa: number,
    readonly s1Perms: number,
    /** Stage-2 permissions of the output (PERM_R | PERM_W when stage 2 is bypassed). */
    readonly s2Perms: number,
    readonly nested: boolean,
    readonly sid: number,
    readonly seq: number,
  ) {}
}

export class S1WalkEntry {
  next: S1WalkEntry | null = null;
  constructor(
    readonly vmid: number,
    readonly asid: number,
    readonly gIndex: number,
    /** Level of the cached stage-1 table descriptor; it points to a table at level + 1. */
    readonly level: number,
    readonly base: number,
    readonly size: number,
    /** Next-level table address as the descriptor holds it (an IPA when nested). */
    readonly table: number,
    readonly sid: number,
    readonly seq: number,
  ) {}
}

const SIZES = 53;

/** The stage-1 entries of one VMID. */
export class S1Space {
  readonly tlb: Map<number, S1TlbEntry>[] = Array.from({ length: SIZES }, () => new Map());
  readonly tlbCount = new Int32Array(SIZES);
  readonly wc: Map<number, S1WalkEntry>[] = Array.from({ length: SIZES }, () => new Map());
  readonly wcCount = new Int32Array(SIZES);
  constructor(readonly vmid: number) {}
}

function log2(size: number): number {
  return Math.round(Math.log2(size));
}

function unlink<E extends { next: E | null; size: number }>(maps: Map<number, E>[], counts: Int32Array, pred: (e: E) => boolean, onRemoved: ((e: E) => void) | null = null): number {
  let removed = 0;
  for (const map of maps) {
    if (map.size === 0) continue;
    for (const [key, head] of [...map.entries()]) {
      let newHead: E | null = null;
      let tail: E | null = null;
      for (let e: E | null = head; e !== null; ) {
        const next: E | null = e.next;
        if (pred(e)) {
          removed++;
          const k = log2(e.size);
          counts[k] = (counts[k] as number) - 1;
          onRemoved?.(e);
        } else {
          e.next = null;
          if (tail === null) newHead = e;
          else tail.next = e;
          tail = e;
        }
        e = next;
      }
      if (newHead === null) map.delete(key);
      else if (newHead !== head) map.set(key, newHead);
    }
  }
  return removed;
}

export class S1Caches {
  private readonly spaces = new Map<number, S1Space>();
  private seq = 0;
  tlbSize = 0;
  walkSize = 0;
  hitCount = 0;
  /** Told of every fill and removal (traces only; Smmu.observeCaches). */
  observer: CacheObserver | null = null;
  private readonly tlbDropped = (entry: S1TlbEntry): void => this.observer?.dropped({ cache: 's1_tlb', entry });
  private readonly walkDropped = (entry: S1WalkEntry): void => this.observer?.dropped({ cache: 's1_walk', entry });

  space(vmid: number): S1Space {
    let s = this.spaces.get(vmid);
    if (s === undefined) {
      s = new S1Space(vmid);
      this.spaces.set(vmid, s);
    }
    return s;
  }

  /** Every entry translating `at.ipa` (a VA) for `asid`; returns the oldest or the largest, sets hitCount. */
  lookupTlb(space: S1Space, asid: number, at: AddressHolder, pickLargest: boolean): S1TlbEntry | null {
    const va = at.ipa;
    const counts = space.tlbCount;
    let best: S1TlbEntry | null = null;
    let count = 0;
    for (let k = 12; k < SIZES; k++) {
      if ((counts[k] as number) === 0) continue;
      const size = 2 ** k;
      const block = Math.floor(va / size);
      const base = block * size;
      for (let e = (space.tlb[k] as Map<number, S1TlbEntry>).get(bucketKey(block)) ?? null; e !== null; e = e.next) {
        if (e.base === base && (e.global || e.asid === asid)) {
          count++;
          if (best === null || (pickLargest ? e.size > best.size : e.seq < best.seq)) best = e;
        }
      }
    }
    this.hitCount = count;
    return best;
  }

  insertTlb(space: S1Space, asid: number, global: boolean, gIndex: number, level: number, base: number, size: number, pa: number, ipa: number, s1Perms: number, s2Perms: number, nested: boolean, sid: number, replace: boolean): S1TlbEntry | null {
    const k = log2(size);
    const map = space.tlb[k] as Map<number, S1TlbEntry>;
    const key = bucketKey(Math.floor(base / size));
    if (replace) this.tlbSize -= unlink([map], space.tlbCount, (e) => e.base === base && (e.global || e.asid === asid), this.observer === null ? null : this.tlbDropped);
    let tail: S1TlbEntry | null = null;
    for (let e = map.get(key) ?? null; e !== null; e = e.next) {
      if (e.base === base && e.asid === asid && e.global === global && e.pa === pa && e.s1Perms === s1Perms && e.s2Perms === s2Perms) return null;
      tail = e;
    }
    const entry = new S1TlbEntry(space.vmid, asid, global, gIndex, level, base, size, pa, ipa, s1Perms, s2Perms, nested, sid, this.seq++);
    if (tail === null) map.set(key, entry);
    else tail.next = entry;
    space.tlbCount[k] = (space.tlbCount[k] as number) + 1;
    this.tlbSize++;
    this.observer?.filled({ cache: 's1_tlb', entry });
    return entry;
  }

  /** The deepest cached stage-1 table descriptor of `asid` covering `at.ipa`, oldest first. */
  lookupWalk(space: S1Space, asid: number, gIndex: number, at: AddressHolder): S1WalkEntry | null {
    const va = at.ipa;
    const counts = space.wcCount;
    for (let k = 12; k < SIZES; k++) {
      if ((counts[k] as number) === 0) continue;
      const size = 2 ** k;
      const block = Math.floor(va / size);
      const base = block * size;
      for (let e = (space.wc[k] as Map<number, S1WalkEntry>).get(bucketKey(block)) ?? null; e !== null; e = e.next) {
        if (e.base === base && e.asid === asid && e.gIndex === gIndex) return e;
      }
    }
    return null;
  }

  insertWalk(space: S1Space, asid: number, gIndex: number, level: number, base: number, size: number, table: number, sid: number): void {
    const k = log2(size);
    const map = space.wc[k] as Map<number, S1WalkEntry>;
    const key = bucketKey(Math.floor(base / size));
    let tail: S1WalkEntry | null = null;
    for (let e = map.get(key) ?? null; e !== null; e = e.next) {
      if (e.base === base && e.asid === asid && e.gIndex === gIndex && e.table === table) return;
      tail = e;
    }
    const entry = new S1WalkEntry(space.vmid, asid, gIndex, level, base, size, table, sid, this.seq++);
    if (tail === null) map.set(key, entry);
    else tail.next = entry;
    space.wcCount[k] = (space.wcCount[k] as number) + 1;
    this.walkSize++;
    this.observer?.filled({ cache: 's1_walk', entry });
  }

  removeTlbWhere(pred: (e: S1TlbEntry) => boolean): number {
    let removed = 0;
    const onRemoved = this.observer === null ? null : this.tlbDropped;
    for (const s of this.spaces.values()) removed += unlink(s.tlb, s.tlbCount, pred, onRemoved);
    this.tlbSize -= removed;
    return removed;
  }

  removeWalkWhere(pred: (e: S1WalkEntry) => boolean): number {
    let removed = 0;
    const onRemoved = this.observer === null ? null : this.walkDropped;
    for (const s of this.spaces.values()) removed += unlink(s.wc, s.wcCount, pred, onRemoved);
    this.walkSize -= removed;
    return removed;
  }

  tlbEntries(): S1TlbEntry[] {
    const out: S1TlbEntry[] = [];
    for (const s of this.spaces.values()) for (const m of s.tlb) for (const head of m.values()) for (let e: S1TlbEntry | null = head; e !== null; e = e.next) out.push(e);
    return out.sort((a, b) => a.seq - b.seq);
  }

  walkEntries(): S1WalkEntry[] {
    const out: S1WalkEntry[] = [];
    for (const s of this.spaces.values()) for (const m of s.wc) for (const head of m.values()) for (let e: S1WalkEntry | null = head; e !== null; e = e.next) out.push(e);
    return out.sort((a, b) => a.seq - b.seq);
  }
}

// --- Stage-1 invalidation (SPEC 4.4, smmuv3-arch.md §3.3 Scope) ----------------------------------

const TG_SHIFT = [0, 12, 14, 16] as const;
const TG_TO_GINDEX = [-1, 0, 1, 2] as const;

export interface S1Removal {
  readonly tlb: number;
  readonly walk: number;
}

type NhVa = CommandOf<'TLBI_NH_VA'> | CommandOf<'TLBI_NH_VAA'>;

function vaOf(cmd: NhVa): number {
  return cmd.address.hi * 0x1_0000_0000 + cmd.address.lo;
}

/**
 * TLBI_NH_VA / NH_VAA, strict: exactly what is required (SPEC 4.4.1/4.4.2 ≡ TLBI VAE1/VAAE1 for
 * the VMID): entries of the VMID (NH_VA: of the ASID, or global; NH_VAA: any ASID) translating
 * Address — with TG ≠ 0 only entries of that stage-1 granule overlapping the range, and with
 * TTL ≠ 0 only leaves from level TTL; Leaf = 0 also removes the stage-1 walk-cache entries
 * (of the ASID for NH_VA) covering the range at levels above TTL; Leaf = 1 leaves them.
 */
export function strictTlbiNhVa(caches: S1Caches, cmd: NhVa, ril: boolean): S1Removal {
  const va = vaOf(cmd);
  const asid = cmd.kind === 'TLBI_NH_VA' ? cmd.asid : -1;
  const asidOk = (eAsid: number, global: boolean): boolean => asid < 0 || global || eAsid === asid;
  const tg = ril ? cmd.tg : 0;
  if (tg === 0) {
    const covers = (e: { vmid: number; base: number; size: number }): boolean => e.vmid === cmd.vmid && e.base <= va && va < e.base + e.size;
    return {
      tlb: caches.removeTlbWhere((e) => covers(e) && asidOk(e.asid, e.global)),
      walk: cmd.leaf ? 0 : caches.removeWalkWhere((w) => covers(w) && asidOk(w.asid, false)),
    };
  }
  const gIndex = TG_TO_GINDEX[tg] ?? -1;
  const end = va + (cmd.num + 1) * 2 ** (cmd.scale + (TG_SHIFT[tg] ?? 12));
  const ttl = tg === 2 && cmd.ttl === 1 ? 0 : cmd.ttl;
  const overlaps = (e: { base: number; size: number }): boolean => e.base < end && va < e.base + e.size;
  return {
    tlb: caches.removeTlbWhere((e) => e.vmid === cmd.vmid && e.gIndex === gIndex && (ttl === 0 || e.level === ttl) && overlaps(e) && asidOk(e.asid, e.global)),
    walk: cmd.leaf ? 0 : caches.removeWalkWhere((w) => w.vmid === cmd.vmid && w.gIndex === gIndex && (ttl === 0 || w.level < ttl) && overlaps(w) && asidOk(w.asid, false)),
  };
}

/**
 * TLBI_NH_VA / NH_VAA, permissive (QEMU's range_inval of stage 1, smmuv3-arch.md §7.1/§7.3): TG,
 * TTL and Leaf ignored; every stage-1 entry of the VMID (and ASID for NH_VA) overlapping
 * [Address, Address + range) is removed. QEMU keeps no walk cache.
 */
export function permissiveTlbiNhVa(caches: S1Caches, cmd: NhVa, ril: boolean): S1Removal {
  const va = vaOf(cmd);
  const asid = cmd.kind === 'TLBI_NH_VA' ? cmd.asid : -1;
  const tg = ril ? cmd.tg : 0;
  const end = tg === 0 ? va + 1 : va + (cmd.num + 1) * 2 ** (cmd.scale + (TG_SHIFT[tg] ?? 12));
  return { tlb: caches.removeTlbWhere((e) => e.vmid === cmd.vmid && (asid < 0 || e.asid === asid) && e.base < end && va < e.base + e.size), walk: 0 };
}

/**
 * TLBI_NH_ASID (≡ ASIDE1 for the VMID): strict removes the non-global entries of (VMID, ASID)
 * and the ASID's walk-cache entries; global entries are not required to go. Permissive (QEMU)
 * tags every entry with the CD's ASID (it keeps no nG), so all entries of (VMID, ASID) go.
 */
export function tlbiNhAsid(caches: S1Caches, vmid: number, asid: number, permissive: boolean): S1Removal {
  return {
    tlb: caches.removeTlbWhere((e) => e.vmid === vmid && e.asid === asid && (permissive || !e.global)),
    walk: caches.removeWalkWhere((w) => w.vmid === vmid && w.asid === asid),
  };
}

/** TLBI_NH_ALL (VMID) ≡ VMALLE1: every stage-1 (and combined) entry of the VMID. S12_VMALL also removes these. */
export function tlbiS1Vmid(caches: S1Caches, vmid: number): S1Removal {
  return { tlb: caches.removeTlbWhere((e) => e.vmid === vmid), walk: caches.removeWalkWhere((w) => w.vmid === vmid) };
}
