/**
 * The model's per-page maps (host state, hyp state, pins, share counts): sparse and immutable,
 * read as a `ReadonlyMap<pfn, value>`, but stored in blocks of 512 pages so that an update copies
 * only the blocks it touches (issue 15: a 2 MiB share must not copy every entry of the state).
 * Nothing here is pKVM: it is how the specification's maps are kept cheap to copy.
 */

/** Pages per block: one 2 MiB stage-2 block, so an aligned block operation touches one. */
const BLOCK_PAGES = 512;

/** One block's values by page offset (undefined: no entry), and how many it holds. */
interface Block<V> {
  readonly slots: (V | undefined)[];
  count: number;
}

function emptyBlock<V>(): Block<V> {
  return { slots: new Array<V | undefined>(BLOCK_PAGES).fill(undefined), count: 0 };
}

export class PageMap<V> implements ReadonlyMap<number, V> {
  private constructor(
    /** Block number → that block (never written once the map is built); a block with no entry is absent. */
    private readonly blocks: ReadonlyMap<number, Block<V>>,
    readonly size: number,
  ) {}

  static empty<V>(): PageMap<V> {
    return new PageMap<V>(new Map(), 0);
  }

  /** The same entries as a PageMap (hand-built states in tests hold plain Maps). */
  static of<V>(map: ReadonlyMap<number, V>): PageMap<V> {
    if (map instanceof PageMap) return map as PageMap<V>;
    return PageMap.empty<V>().updated(map.keys(), (_now, pfn) => map.get(pfn));
  }

  get(pfn: number): V | undefined {
    return this.blocks.get(Math.floor(pfn / BLOCK_PAGES))?.slots[pfn % BLOCK_PAGES];
  }

  has(pfn: number): boolean {
    return this.get(pfn) !== undefined;
  }

  /**
   * A new map with each pfn of `pfns` set to `next(its value now)` (undefined: no entry). Each
   * touched block is copied once (an array copy); the others are shared with this map.
   */
  updated(pfns: Iterable<number>, next: (now: V | undefined, pfn: number) => V | undefined): PageMap<V> {
    const blocks = new Map(this.blocks);
    const copied = new Map<number, Block<V>>();
    let size = this.size;
    for (const pfn of pfns) {
      const b = Math.floor(pfn / BLOCK_PAGES);
      let block = copied.get(b);
      if (block === undefined) {
        const old = this.blocks.get(b);
        block = old === undefined ? emptyBlock<V>() : { slots: old.slots.slice(), count: old.count };
        copied.set(b, block);
        blocks.set(b, block);
      }
      const i = pfn % BLOCK_PAGES;
      const now = block.slots[i];
      const value = next(now, pfn);
      if (now !== undefined) {
        size--;
        block.count--;
      }
      if (value !== undefined) {
        size++;
        block.count++;
      }
      block.slots[i] = value;
    }
    for (const [b, block] of copied) if (block.count === 0) blocks.delete(b);
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
      const base = b * BLOCK_PAGES;
      for (let i = 0; i < BLOCK_PAGES; i++) if (block.slots[i] !== theirs?.slots[i]) out.add(base + i);
    }
    for (const [b, block] of other.blocks) {
      if (this.blocks.has(b)) continue;
      const base = b * BLOCK_PAGES;
      for (let i = 0; i < BLOCK_PAGES; i++) if (block.slots[i] !== undefined) out.add(base + i);
    }
  }

  *entries(): MapIterator<[number, V]> {
    for (const [b, block] of this.blocks) {
      for (let i = 0; i < BLOCK_PAGES; i++) {
        const v = block.slots[i];
        if (v !== undefined) yield [b * BLOCK_PAGES + i, v];
      }
    }
  }

  *keys(): MapIterator<number> {
    for (const [pfn] of this.entries()) yield pfn;
  }

  *values(): MapIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }

  [Symbol.iterator](): MapIterator<[number, V]> {
    return this.entries();
  }

  forEach(callback: (value: V, key: number, map: ReadonlyMap<number, V>) => void, thisArg?: unknown): void {
    for (const [k, v] of this.entries()) callback.call(thisArg, v, k, this);
  }
}
