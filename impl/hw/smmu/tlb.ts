/**
 * The SMMU's translation caches: leaf TLB entries and walk-cache entries (cached stage-2 table
 * descriptors), both tagged by VMID and granule and indexed by level and input-address block
 * (smmuv3-arch.md §6.1).
 *
 * Why this shape: a real TLB may hold several entries that translate the same address (a 2M
 * block and a 4K page after a block was split without break-before-make, or an old and a new
 * page after a remap without invalidation, §6.2). The model therefore never merges entries that
 * differ: each (level, block) bucket is a chain in fill order, so "both entries are held" is
 * representable and the oldest (stale) one is found first.
 *
 * Hot path: lookups use Maps keyed by a 30-bit fold of the block number (always a small
 * integer, so no key boxing) and compare the full block base along the chain; per-level counts
 * let a lookup skip levels that hold nothing. No allocation on a lookup.
 */
import { type CacheObserver } from './cache-observer.js';

export const PERM_R = 1;
export const PERM_W = 2;

/** An input address passed by field (see lookupTlb). */
export interface AddressHolder {
  ipa: number;
}

export class TlbEntry {
  /** Next entry in the same bucket (a different block that folded to the same key, or a duplicate). */
  next: TlbEntry | null = null;
  constructor(
    readonly vmid: number,
    readonly gIndex: number,
    readonly level: number,
    /** First IPA the entry translates. */
    readonly base: number,
    readonly size: number,
    /** Output address of `base`. */
    readonly pa: number,
    /** PERM_R | PERM_W from S2AP. */
    readonly perms: number,
    /** The StreamID whose walk filled it (informational: entries are tagged by VMID, not SID). */
    readonly sid: number,
    readonly seq: number,
  ) {}
}

export class WalkEntry {
  next: WalkEntry | null = null;
  constructor(
    readonly vmid: number,
    readonly gIndex: number,
    /** Level of the table descriptor: it points to a table at level + 1. */
    readonly level: number,
    readonly base: number,
    readonly size: number,
    /** Address of the next-level table. */
    readonly table: number,
    readonly sid: number,
    readonly seq: number,
  ) {}
}

/** Folds a block number (< 2^52) into a small-integer key. */
export function bucketKey(block: number): number {
  return block & 0x3fff_ffff;
}

/** The entries of one (VMID, granule). */
export class VmidSpace {
  readonly tlb: Map<number, TlbEntry>[] = [new Map(), new Map(), new Map(), new Map()];
  readonly tlbCount = new Int32Array(4);
  readonly wc: Map<number, WalkEntry>[] = [new Map(), new Map(), new Map(), new Map()];
  readonly wcCount = new Int32Array(4);
  constructor(
    readonly vmid: number,
    readonly gIndex: number,
    /** Block size at levels 0..3. */
    readonly spans: Float64Array,
  ) {}
}

/** Which of several matching TLB entries a lookup returns. */
export const PICK_OLDEST = 0;
/** QEMU's order: from the start level down, so the largest block wins (§7.2). */
export const PICK_LARGEST = 1;

function unlinkWhere<E extends { next: E | null; level: number }>(maps: Map<number, E>[], counts: Int32Array, pred: (e: E) => boolean, onRemoved: ((e: E) => void) | null = null): number {
  let removed = 0;
  for (const map of maps) {
    for (const [key, head] of [...map.entries()]) {
      let newHead: E | null = null;
      let tail: E | null = null;
      for (let e: E | null = head; e !== null; ) {
        const next: E | null = e.next;
        if (pred(e)) {
          removed++;
          const count = counts[e.level] as number;
          counts[e.level] = count - 1;
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

export class TranslationCaches {
  private readonly spaces = new Map<number, VmidSpace>();
  private seq = 0;
  tlbSize = 0;
  walkSize = 0;
  /** Matches found by the last `lookupTlb`. */
  hitCount = 0;
  /** Told of every fill and removal (traces only; Smmu.observeCaches). */
  observer: CacheObserver | null = null;
  private readonly tlbDropped = (entry: TlbEntry): void => this.observer?.dropped({ cache: 'tlb', entry });
  private readonly walkDropped = (entry: WalkEntry): void => this.observer?.dropped({ cache: 'walk', entry });

  space(vmid: number, gIndex: number, spans: Float64Array): VmidSpace {
    const key = vmid * 4 + gIndex;
    let s = this.spaces.get(key);
    if (s === undefined) {
      s = new VmidSpace(vmid, gIndex, spans);
      this.spaces.set(key, s);
    }
    return s;
  }

  /**
   * Every TLB entry translating `at.ipa` at any level; returns the one `pick` selects, and sets
   * hitCount. The address comes in a field because passing a double above 2^31 to a call that
   * is not inlined boxes it (an allocation per lookup).
   */
  lookupTlb(space: VmidSpace, at: AddressHolder, pick: number): TlbEntry | null {
    const ipa = at.ipa;
    let best: TlbEntry | null = null;
    let count = 0;
    const counts = space.tlbCount;
    for (let level = 3; level >= 0; level--) {
      if ((counts[level] as number) === 0) continue;
      const span = space.spans[level] as number;
      const block = Math.floor(ipa / span);
      const base = block * span;
      let e = (space.tlb[level] as Map<number, TlbEntry>).get(bucketKey(block)) ?? null;
      while (e !== null) {
        if (e.base === base) {
          count++;
          if (best === null || (pick === PICK_OLDEST ? e.seq < best.seq : e.level < best.level)) best = e;
        }
        e = e.next;
      }
    }
    this.hitCount = count;
    return best;
  }

  /**
   * Inserts a leaf entry unless an identical one is already held. `replace` (QEMU) drops other
   * entries with the same key first; otherwise a differing entry is kept beside the old one.
   */
  insertTlb(space: VmidSpace, level: number, base: number, size: number, pa: number, perms: number, sid: number, replace: boolean): TlbEntry | null {
    const map = space.tlb[level] as Map<number, TlbEntry>;
    const key = bucketKey(Math.floor(base / size));
    const head = map.get(key) ?? null;
    let tail: TlbEntry | null = null;
    for (let e = head; e !== null; e = e.next) {
      if (e.base === base && e.pa === pa && e.perms === perms) return null;
      tail = e;
    }
    if (replace && head !== null) {
      this.tlbSize -= unlinkWhere([map], space.tlbCount, (e) => e.base === base, this.observer === null ? null : this.tlbDropped);
      return this.insertTlb(space, level, base, size, pa, perms, sid, false);
    }
    const entry = new TlbEntry(space.vmid, space.gIndex, level, base, size, pa, perms, sid, this.seq++);
    if (tail === null) map.set(key, entry);
    else tail.next = entry;
    space.tlbCount[level] = (space.tlbCount[level] as number) + 1;
    this.tlbSize++;
    this.observer?.filled({ cache: 'tlb', entry });
    return entry;
  }

  /** The deepest cached table descriptor covering `ipa` at or below `startLevel`, oldest first. */
  lookupWalk(space: VmidSpace, at: AddressHolder, startLevel: number): WalkEntry | null {
    const ipa = at.ipa;
    const counts = space.wcCount;
    for (let level = 2; level >= startLevel; level--) {
      if ((counts[level] as number) === 0) continue;
      const span = space.spans[level] as number;
      const block = Math.floor(ipa / span);
      const base = block * span;
      for (let e = (space.wc[level] as Map<number, WalkEntry>).get(bucketKey(block)) ?? null; e !== null; e = e.next) {
        if (e.base === base) return e;
      }
    }
    return null;
  }

  insertWalk(space: VmidSpace, level: number, base: number, size: number, table: number, sid: number): WalkEntry | null {
    const map = space.wc[level] as Map<number, WalkEntry>;
    const key = bucketKey(Math.floor(base / size));
    let tail: WalkEntry | null = null;
    for (let e = map.get(key) ?? null; e !== null; e = e.next) {
      if (e.base === base && e.table === table) return null;
      tail = e;
    }
    const entry = new WalkEntry(space.vmid, space.gIndex, level, base, size, table, sid, this.seq++);
    if (tail === null) map.set(key, entry);
    else tail.next = entry;
    space.wcCount[level] = (space.wcCount[level] as number) + 1;
    this.walkSize++;
    this.observer?.filled({ cache: 'walk', entry });
    return entry;
  }

  removeTlbWhere(pred: (e: TlbEntry) => boolean): number {
    let removed = 0;
    const onRemoved = this.observer === null ? null : this.tlbDropped;
    for (const s of this.spaces.values()) removed += unlinkWhere(s.tlb, s.tlbCount, pred, onRemoved);
    this.tlbSize -= removed;
    return removed;
  }

  removeWalkWhere(pred: (e: WalkEntry) => boolean): number {
    let removed = 0;
    const onRemoved = this.observer === null ? null : this.walkDropped;
    for (const s of this.spaces.values()) removed += unlinkWhere(s.wc, s.wcCount, pred, onRemoved);
    this.walkSize -= removed;
    return removed;
  }

  /** TLB entries in fill order. */
  tlbEntries(): TlbEntry[] {
    const out: TlbEntry[] = [];
    for (const s of this.spaces.values()) for (const m of s.tlb) for (const head of m.values()) for (let e: TlbEntry | null = head; e !== null; e = e.next) out.push(e);
    return out.sort((a, b) => a.seq - b.seq);
  }

  walkEntries(): WalkEntry[] {
    const out: WalkEntry[] = [];
    for (const s of this.spaces.values()) for (const m of s.wc) for (const head of m.values()) for (let e: WalkEntry | null = head; e !== null; e = e.next) out.push(e);
    return out.sort((a, b) => a.seq - b.seq);
  }
}
