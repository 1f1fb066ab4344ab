/**
 * The model's per-page maps (host state, hyp state, pins, share counts): sparse and immutable,
 * read as a `ReadonlyMap<pfn, value>`, but stored in blocks of 512 pages so that an update copies
 * only the blocks it touches (issue 15: a 2 MiB share must not copy every entry of the state).
 * Nothing here is pKVM: it is how the specification's maps are kept cheap to copy.
 */

/** Pages per block: one 2 MiB stage-2 block, so an aligned block operation touches one. */
const BLOCK_PAGES = 512;

export class PageMap<V> implements ReadonlyMap<number, V> {
  private constructor(
    /** Block number → that block's entries; a block with no entry is absent. */
    private readonly blocks: ReadonlyMap<number, ReadonlyMap<number, V>>,
    readonly size: number,
  ) {}

  static empty<V>(): PageMap<V> {
    return new PageMap<V>(new Map(), 0);
  }

  /** The same entries as a PageMap (hand-built states in tests hold plain Maps). */
  static of<V>(map: ReadonlyMap<number, V>): PageMap<V> {
    if (map instanceof PageMap) return map as PageMap<V>;
    const blocks = new Map<number, Map<number, V>>();
    for (const [pfn, v] of map) {
      const b = Math.floor(pfn / BLOCK_PAGES);
      let block = blocks.get(b);
      if (block === undefined) blocks.set(b, (block = new Map()));
      block.set(pfn, v);
    }
    return new PageMap<V>(blocks, map.size);
  }

  get(pfn: number): V | undefined {
    return this.blocks.get(Math.floor(pfn / BLOCK_PAGES))?.get(pfn);
  }

  has(pfn: number): boolean {
    return this.blocks.get(Math.floor(pfn / BLOCK_PAGES))?.has(pfn) === true;
  }

  /**
   * A new map with each pfn of `pfns` set to `next(its value now)` (undefined: no entry). Each
   * touched block is copied once; the others are shared with this map.
   */
  updated(pfns: Iterable<number>, next: (now: V | undefined) => V | undefined): PageMap<V> {
    const blocks = new Map(this.blocks);
    const copied = new Map<number, Map<number, V>>();
    let size = this.size;
    for (const pfn of pfns) {
      const b = Math.floor(pfn / BLOCK_PAGES);
      let block = copied.get(b);
      if (block === undefined) {
        block = new Map(this.blocks.get(b));
        copied.set(b, block);
        blocks.set(b, block);
      }
      const now = block.get(pfn);
      const value = next(now);
      if (now !== undefined) size--;
      if (value === undefined) block.delete(pfn);
      else {
        block.set(pfn, value);
        size++;
      }
    }
    for (const [b, block] of copied) if (block.size === 0) blocks.delete(b);
    return new PageMap(blocks, size);
  }

  /**
   * Adds to `out` every pfn whose value differs between this map and `other`. Blocks the two
   * share (the same object: untouched by the updates between them) are skipped unread.
   */
  addDifferences(other: PageMap<V>, out: Set<number>): void {
    if (other === this) return;
    for (const [b, block] of this.blocks) {
      const theirs = other.blocks.get(b);
      if (theirs === block) continue;
      for (const [pfn, v] of block) if (theirs?.get(pfn) !== v) out.add(pfn);
      if (theirs !== undefined) for (const [pfn, v] of theirs) if (block.get(pfn) !== v) out.add(pfn);
    }
    for (const [b, block] of other.blocks) if (!this.blocks.has(b)) for (const pfn of block.keys()) out.add(pfn);
  }

  *entries(): MapIterator<[number, V]> {
    for (const block of this.blocks.values()) yield* block.entries();
  }

  *keys(): MapIterator<number> {
    for (const block of this.blocks.values()) yield* block.keys();
  }

  *values(): MapIterator<V> {
    for (const block of this.blocks.values()) yield* block.values();
  }

  [Symbol.iterator](): MapIterator<[number, V]> {
    return this.entries();
  }

  forEach(callback: (value: V, key: number, map: ReadonlyMap<number, V>) => void, thisArg?: unknown): void {
    for (const [k, v] of this.entries()) callback.call(thisArg, v, k, this);
  }
}
