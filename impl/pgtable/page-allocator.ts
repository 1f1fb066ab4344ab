/**
 * Where table pages come from. Page-table code never owns memory: it asks a pluggable allocator
 * (a fixed pool in tests; the hypervisor's page pool / memcache later) for zeroed, naturally
 * aligned blocks of physical memory and gives them back when a table is freed.
 */
import { ACCESS_OK, type PhysicalMemory } from '../arch/physical-memory.js';
import { type FaultHook, type FaultPoint } from '../fault-injection.js';

export interface TablePageAllocator {
  /**
   * Returns the physical address of `bytes` zeroed bytes aligned to `bytes` (a power of two, at
   * least 4 KiB), or undefined when the allocator is exhausted (the caller's `-ENOMEM`).
   */
  alloc(bytes: number): number | undefined;
  /** Gives back a block obtained from `alloc` with the same size. */
  free(pa: number, bytes: number): void;
}

/**
 * A buddy-style pool over a fixed RAM range: blocks of 2^k pages, split on demand, merged with
 * their buddy on free. Freed memory is zeroed again before reuse. Double frees, frees of
 * addresses the pool never handed out, and allocating a block that is not RAM throw: they are
 * bugs in the simulator's own code.
 */
export class PagePool implements TablePageAllocator {
  private readonly freeLists: Set<number>[] = [];
  private readonly live = new Map<number, number>();
  private usedBytes = 0;
  /** Test-only fault injection (impl/fault-injection.ts); null in every normal run. */
  faults: FaultHook | null = null;
  /** Which injection point this pool's allocations count as (set by attachFaultPlan). */
  faultPoint: FaultPoint = 'hyp_pool';

  constructor(
    private readonly memory: PhysicalMemory,
    readonly base: number,
    readonly size: number,
    readonly pageSize = 4096,
  ) {
    if (base % pageSize !== 0 || size % pageSize !== 0) throw new Error('pool must be page aligned');
    // Seed the free lists with the largest naturally aligned blocks that tile the range.
    let addr = base;
    while (addr < base + size) {
      let order = 0;
      while (addr % (pageSize * 2 ** (order + 1)) === 0 && addr + pageSize * 2 ** (order + 1) <= base + size) order++;
      this.list(order).add(addr);
      addr += pageSize * 2 ** order;
    }
  }

  private list(order: number): Set<number> {
    while (this.freeLists.length <= order) this.freeLists.push(new Set());
    return this.freeLists[order] as Set<number>;
  }

  private orderOf(bytes: number): number {
    let order = 0;
    while (this.pageSize * 2 ** order < bytes) order++;
    return order;
  }

  alloc(bytes: number): number | undefined {
    if (this.faults !== null && this.faults.fail(this.faultPoint)) return undefined;
    const order = this.orderOf(bytes);
    let from = order;
    while (from < this.freeLists.length && (this.freeLists[from] as Set<number>).size === 0) from++;
    if (from >= this.freeLists.length) return undefined;
    const fromList = this.freeLists[from] as Set<number>;
    // Lowest address first keeps runs deterministic and easy to read in traces.
    let block = Infinity;
    for (const candidate of fromList) if (candidate < block) block = candidate;
    fromList.delete(block);
    while (from > order) {
      from--;
      this.list(from).add(block + this.pageSize * 2 ** from);
    }
    const blockBytes = this.pageSize * 2 ** order;
    // Zero frame by frame: a block may span adjacent RAM regions, which one zero() call refuses.
    for (let pa = block; pa < block + blockBytes; pa += 4096) {
      if (this.memory.zero(pa, 4096) !== ACCESS_OK) {
        throw new Error(`pool: block ${block.toString(16)} is not backed by RAM at ${pa.toString(16)}`);
      }
    }
    this.live.set(block, order);
    this.usedBytes += blockBytes;
    return block;
  }

  free(pa: number, bytes: number): void {
    const order = this.live.get(pa);
    if (order === undefined || order !== this.orderOf(bytes)) {
      throw new Error(`pool: free of ${pa.toString(16)} (${bytes} bytes) that was not allocated with that size`);
    }
    this.live.delete(pa);
    this.usedBytes -= this.pageSize * 2 ** order;
    let block = pa;
    let o = order;
    for (;;) {
      const span = this.pageSize * 2 ** o;
      const buddy = block % (span * 2) === 0 ? block + span : block - span;
      const buddies = this.list(o);
      if (!buddies.has(buddy)) break;
      buddies.delete(buddy);
      block = Math.min(block, buddy);
      o++;
    }
    this.list(o).add(block);
  }

  /** Bytes currently handed out. */
  get allocatedBytes(): number {
    return this.usedBytes;
  }

  /** Bytes still available (possibly fragmented). */
  get freeBytes(): number {
    return this.size - this.usedBytes;
  }

  /** Whether `pa` lies inside a block currently handed out. */
  owns(pa: number): boolean {
    for (const [block, order] of this.live) {
      if (pa >= block && pa < block + this.pageSize * 2 ** order) return true;
    }
    return false;
  }

  /** The live blocks, as [pa, bytes] pairs (for leak checks). */
  liveBlocks(): [number, number][] {
    return [...this.live].map(([pa, order]) => [pa, this.pageSize * 2 ** order]);
  }
}
