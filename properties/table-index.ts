/**
 * An index of one stage-2 tree's table pages (level and first input address of each), kept up to
 * date from the words a step stored (issue 15 item 1), so a check can say which entries a step
 * changed without dumping the tree. A store into an indexed page is an entry change; a table
 * pointer that appears or disappears links or unlinks a whole subtree, whose leaves are reported
 * as added or removed. Built with the same walk rules as `dumpTable` (impl/pgtable/table-dump.ts):
 * a pointer outside RAM or a table reached twice is a fault, never followed.
 */
import { LAST_LEVEL, levelSize } from '../impl/arch/granule.js';
import { type PhysicalMemory } from '../impl/arch/physical-memory.js';
import { descOutputAddress } from '../impl/arch/s2-descriptor.js';
import { type TableRoot } from '../impl/pgtable/table-dump.js';

const PAGE = 4096;

/** A word's value before the step (the first store's old value); absent words did not change. */
export interface WordBefore {
  readonly lo: number;
  readonly hi: number;
}

/** A non-table entry whose visible value changed in the step (0/0: absent before or after). */
export interface EntryChange {
  readonly ia: number;
  readonly level: number;
  readonly ptep: number;
  readonly oldLo: number;
  readonly oldHi: number;
  readonly lo: number;
  readonly hi: number;
}

interface IndexedPage {
  readonly level: number;
  readonly baseIa: number;
  /** Entries of the table that live in this page (a short PGD has fewer than 512). */
  readonly count: number;
  /** The entry that points here (undefined for PGD pages). */
  readonly parentPtep: number | undefined;
}

export interface IndexUpdate {
  readonly changes: EntryChange[];
  /** Table pages whose entries changed or that were linked: their refcounts are due a check. */
  readonly dirtyPages: number[];
  /** Pages linked by this step (a guest's must come from its pool). */
  readonly linked: number[];
  readonly faults: string[];
}

export class TableIndex {
  private readonly pages = new Map<number, IndexedPage>();

  /** Indexes the tree as it is now, or takes `pages` as its index (`copy`). */
  constructor(
    private readonly memory: PhysicalMemory,
    private readonly root: TableRoot,
    pages?: ReadonlyMap<number, IndexedPage>,
  ) {
    if (pages === undefined) this.rebuild();
    else for (const [pa, info] of pages) this.pages.set(pa, info);
  }

  /** An index of the same tree in the same state, updated apart from this one from now on. */
  copy(): TableIndex {
    return new TableIndex(this.memory, this.root, this.pages);
  }

  get size(): number {
    return this.pages.size;
  }

  has(pa: number): boolean {
    return this.pages.has(pa);
  }

  /** The table pages, for a full re-check. */
  tablePages(): IterableIterator<number> {
    return this.pages.keys();
  }

  /** Forgets everything and indexes the tree as it is (after a full check, or at the start). */
  rebuild(): void {
    this.indexTree(false);
  }

  /**
   * `rebuild`, returning the tree as one update from nothing: every entry a change, every table
   * page dirty, every page below the root linked, and the walk's faults (a tree new in the step).
   */
  reindex(): IndexUpdate {
    return this.indexTree(true);
  }

  private indexTree(report: boolean): IndexUpdate {
    this.pages.clear();
    const g = this.root.format.granule;
    const pgdPages = Math.max(1, Math.ceil((this.root.topEntries * 8) / g.size));
    const pgdSpan = levelSize(g, this.root.startLevel) * g.entriesPerTable;
    const whole: IndexUpdate = { changes: [], dirtyPages: [], linked: [], faults: [] };
    for (let p = 0; p < pgdPages; p++) {
      const count = Math.min(g.entriesPerTable, this.root.topEntries - p * g.entriesPerTable);
      this.pages.set(this.root.pgd + p * g.size, { level: this.root.startLevel, baseIa: p * pgdSpan, count, parentPtep: undefined });
      if (report) whole.dirtyPages.push(this.root.pgd + p * g.size);
    }
    for (let p = 0; p < pgdPages; p++) this.scan(this.root.pgd + p * g.size, whole, report);
    return whole;
  }

  /** The table pages below the root (those a guest's pool must hold). */
  *childPages(): IterableIterator<number> {
    for (const [page, info] of this.pages) if (info.parentPtep !== undefined) yield page;
  }

  private isTable(lo: number, level: number): boolean {
    return (lo & 3) === 3 && level !== LAST_LEVEL;
  }

  /** Reads a page's entries: links child tables (reporting their leaves as added when `report`). */
  private scan(page: number, out: IndexUpdate, report: boolean): void {
    const info = this.pages.get(page) as IndexedPage;
    const span = levelSize(this.root.format.granule, info.level);
    const frame = this.memory.frameForRead(page);
    if (frame === undefined) {
      out.faults.push(`table entries at ${page.toString(16)} are not in RAM`);
      return;
    }
    for (let i = 0; i < info.count; i++) {
      const lo = frame[2 * i] as number;
      const hi = frame[2 * i + 1] as number;
      if (lo === 0 && hi === 0) continue;
      const ia = info.baseIa + i * span;
      if (this.isTable(lo, info.level)) this.link(page + i * 8, descOutputAddress(this.root.format, lo, hi), info.level + 1, ia, out, report);
      else if (report) out.changes.push({ ia, level: info.level, ptep: page + i * 8, oldLo: 0, oldHi: 0, lo, hi });
    }
  }

  private link(ptep: number, child: number, level: number, baseIa: number, out: IndexUpdate, report: boolean): void {
    if (this.pages.has(child)) {
      out.faults.push(`table ${child.toString(16)} reached twice (from ${ptep.toString(16)})`);
      return;
    }
    this.pages.set(child, { level, baseIa, count: this.root.format.granule.entriesPerTable, parentPtep: ptep });
    out.linked.push(child);
    out.dirtyPages.push(child);
    this.scan(child, out, report);
  }

  /** Drops a subtree, reporting its leaves (with their values before the step) as removed. */
  private unlink(child: number, ptep: number, before: ReadonlyMap<number, WordBefore>, out: IndexUpdate): void {
    const info = this.pages.get(child);
    if (info === undefined || info.parentPtep !== ptep) return;
    this.pages.delete(child);
    const span = levelSize(this.root.format.granule, info.level);
    // A word the step did not store holds its old value still: read from the frame, no copy.
    const frame = this.memory.frameForRead(child);
    for (let i = 0; i < info.count; i++) {
      const pa = child + i * 8;
      const stored = before.get(pa);
      const lo = stored !== undefined ? stored.lo : frame === undefined ? 0 : (frame[2 * i] as number);
      const hi = stored !== undefined ? stored.hi : frame === undefined ? 0 : (frame[2 * i + 1] as number);
      if (lo === 0 && hi === 0) continue;
      const ia = info.baseIa + i * span;
      if (this.isTable(lo, info.level)) this.unlink(descOutputAddress(this.root.format, lo, hi), pa, before, out);
      else out.changes.push({ ia, level: info.level, ptep: pa, oldLo: lo, oldHi: hi, lo: 0, hi: 0 });
    }
  }

  /**
   * Applies the step's stores (word address → value before the step; only words whose value
   * differs now are changes). Unlinks run first so a store inside a subtree that the same step
   * detached is not reported; words of pages linked by this step are covered by the link's scan.
   */
  update(before: ReadonlyMap<number, WordBefore>): IndexUpdate {
    const out: IndexUpdate = { changes: [], dirtyPages: [], linked: [], faults: [] };
    const pending: { pa: number; page: number; old: WordBefore; lo: number; hi: number }[] = [];
    for (const [pa, old] of before) {
      const page = pa - (pa % PAGE);
      const info = this.pages.get(page);
      if (info === undefined || (pa - page) / 8 >= info.count) continue;
      const now = this.memory.peek64(pa);
      if (now.lo === old.lo && now.hi === old.hi) continue;
      pending.push({ pa, page, old, lo: now.lo, hi: now.hi });
    }
    for (const w of pending) {
      const info = this.pages.get(w.page);
      if (info !== undefined && this.isTable(w.old.lo, info.level)) this.unlink(descOutputAddress(this.root.format, w.old.lo, w.old.hi), w.pa, before, out);
    }
    const linkedNow = new Set<number>();
    for (const w of pending) {
      const info = this.pages.get(w.page);
      if (info === undefined || linkedNow.has(w.page)) continue;
      out.dirtyPages.push(w.page);
      const ia = info.baseIa + ((w.pa - w.page) / 8) * levelSize(this.root.format.granule, info.level);
      const wasTable = this.isTable(w.old.lo, info.level);
      if (this.isTable(w.lo, info.level)) {
        const first = out.linked.length;
        this.link(w.pa, descOutputAddress(this.root.format, w.lo, w.hi), info.level + 1, ia, out, true);
        for (let k = first; k < out.linked.length; k++) linkedNow.add(out.linked[k] as number);
        if (!wasTable && (w.old.lo !== 0 || w.old.hi !== 0)) out.changes.push({ ia, level: info.level, ptep: w.pa, oldLo: w.old.lo, oldHi: w.old.hi, lo: 0, hi: 0 });
        continue;
      }
      const oldLo = wasTable ? 0 : w.old.lo;
      const oldHi = wasTable ? 0 : w.old.hi;
      if (oldLo !== 0 || oldHi !== 0 || w.lo !== 0 || w.hi !== 0) out.changes.push({ ia, level: info.level, ptep: w.pa, oldLo, oldHi, lo: w.lo, hi: w.hi });
    }
    return out;
  }

  /** What `lookup` returns: one object, overwritten by the next lookup (it runs per changed page). */
  private readonly found = { lo: 0, hi: 0, level: 0 };

  /**
   * The entry a walk for `ia` ends on (a leaf, an invalid entry or a fault: lo = hi = 0 and
   * level -1 when the walk leaves RAM), read straight from the frames: the incremental checks
   * ask this for every page a step changed. The result is valid until the next lookup.
   */
  lookup(ia: number): Readonly<{ lo: number; hi: number; level: number }> {
    const g = this.root.format.granule;
    const found = this.found;
    let table = this.root.pgd;
    let level = this.root.startLevel;
    let index = Math.floor(ia / levelSize(g, level));
    for (;;) {
      const ptep = table + index * 8;
      const frame = this.memory.frameForRead(ptep);
      if (frame === undefined) {
        found.lo = 0;
        found.hi = 0;
        found.level = -1;
        return found;
      }
      const w = (ptep % PAGE) >>> 2;
      const lo = frame[w] as number;
      const hi = frame[w + 1] as number;
      if (!this.isTable(lo, level)) {
        found.lo = lo;
        found.hi = hi;
        found.level = level;
        return found;
      }
      table = descOutputAddress(this.root.format, lo, hi);
      level++;
      index = Math.floor(ia / levelSize(g, level)) % g.entriesPerTable;
    }
  }

  /** Non-zero entries of an indexed page (its refcount must be one more). */
  nonZero(page: number): number {
    const info = this.pages.get(page);
    const frame = this.memory.frameForRead(page);
    if (info === undefined || frame === undefined) return 0;
    let n = 0;
    for (let i = 0; i < 2 * info.count; i += 2) if ((frame[i] as number) !== 0 || (frame[i + 1] as number) !== 0) n++;
    return n;
  }
}
