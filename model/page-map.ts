/**
 * The model's per-page maps (host state, hyp state, pins, share counts): sparse and immutable,
 * read as a `ReadonlyMap<pfn, value>`, but stored in blocks of 512 pages so that an update copies
 * only the blocks it touches (issue 15: a 2 MiB share must not copy every entry of the state).
 * Nothing here is pKVM: it is how the specification's maps are kept cheap to copy.
 */

/** Pages per block: one 2 MiB stage-2 block, so an aligned block operation touches one. */
const BLOCK_PAGES = 512;

/**
 * One block's values by page offset (undefined: no entry), how many it holds, and which slots
 * are occupied (one bit per slot), so that a sparse map iterates its entries, not its slots.
 */
interface Block<V> {
  readonly slots: (V | undefined)[];
  readonly occupied: Uint32Array;
  count: number;
}

const OCCUPANCY_WORDS = BLOCK_PAGES / 32;

function emptyBlock<V>(): Block<V> {
  return { slots: new Array<V | undefined>(BLOCK_PAGES).fill(undefined), occupied: new Uint32Array(OCCUPANCY_WORDS), count: 0 };
}

/** The lowest set bit's slot of one occupancy word (`bits` non-zero), counted from `firstSlot`. */
function lowestSlot(bits: number, firstSlot: number): number {
  return firstSlot + 31 - Math.clz32(bits & -bits);
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

  /**
   * The block the last read found, and its number: reads come in runs of neighbouring pages (the
   * map itself never changes). `#` fields: invisible to deep equality, so equal maps stay equal.
   */
  #lastBlock: Block<V> | undefined = undefined;
  #lastBlockNumber = -1;

  get(pfn: number): V | undefined {
    const b = Math.floor(pfn / BLOCK_PAGES);
    if (b !== this.#lastBlockNumber) {
      this.#lastBlock = this.blocks.get(b);
      this.#lastBlockNumber = b;
    }
    return this.#lastBlock?.slots[pfn % BLOCK_PAGES];
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
        block = old === undefined ? emptyBlock<V>() : { slots: old.slots.slice(), occupied: old.occupied.slice(), count: old.count };
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
        block.occupied[i >>> 5] = (block.occupied[i >>> 5] as number) | (1 << (i & 31));
      } else block.occupied[i >>> 5] = (block.occupied[i >>> 5] as number) & ~(1 << (i & 31));
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
      for (let w = 0; w < OCCUPANCY_WORDS; w++) {
        // A slot empty on both sides cannot differ: only the occupied ones are compared.
        for (let rest = (block.occupied[w] as number) | (theirs === undefined ? 0 : (theirs.occupied[w] as number)); rest !== 0; rest &= rest - 1) {
          const slot = lowestSlot(rest, w * 32);
          if (block.slots[slot] !== theirs?.slots[slot]) out.add(base + slot);
        }
      }
    }
    for (const [b, block] of other.blocks) {
      if (this.blocks.has(b)) continue;
      const base = b * BLOCK_PAGES;
      for (let w = 0; w < OCCUPANCY_WORDS; w++) for (let rest = block.occupied[w] as number; rest !== 0; rest &= rest - 1) out.add(base + lowestSlot(rest, w * 32));
    }
  }

  private static *blockEntries<V>(b: number, block: Block<V>): Generator<[number, V]> {
    for (let w = 0; w < OCCUPANCY_WORDS; w++) {
      for (let rest = block.occupied[w] as number; rest !== 0; rest &= rest - 1) {
        const slot = lowestSlot(rest, w * 32);
        yield [b * BLOCK_PAGES + slot, block.slots[slot] as V];
      }
    }
  }

  *entries(): MapIterator<[number, V]> {
    for (const [b, block] of this.blocks) yield* PageMap.blockEntries(b, block);
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
