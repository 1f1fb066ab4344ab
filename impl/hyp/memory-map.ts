/**
 * The hypervisor's view of the memory map (`hyp_memory[]`, pkvm-host-s2-iommu.md §2.2): the
 * sorted memblock regions the host kernel reported. Everything between regions is a "gap"
 * (MMIO as far as the host stage-2 is concerned). NOMAP regions are memory to the hardware but
 * may not be used for ownership transitions.
 */
import { EINVAL, EPERM } from '../arch/errno.js';

export interface MemblockRegion {
  readonly base: number;
  readonly size: number;
  readonly nomap: boolean;
}

/** A region, or the gap around an address that is not in any region. */
export interface MemRange {
  readonly start: number;
  readonly end: number;
  readonly isMemory: boolean;
  readonly region: MemblockRegion | undefined;
}

/** ULONG_MAX as a double (2^64 − 1 rounds to 2^64; only compared against page-aligned values). */
export const ULONG_MAX = 2 ** 64;

/**
 * Whether `end − 1` (u64 arithmetic: `end` already reduced mod 2^64) lies in [range.start,
 * range.end). Computed without forming end − 1, which a double cannot hold exactly near 2^64:
 * end = 0 means end − 1 = ULONG_MAX, which no range contains.
 */
function endMinusOneIn(end: number, range: { start: number; end: number }): boolean {
  if (end === 0) return false;
  return end > range.start && end <= range.end;
}

/** (a + b) mod 2^64 for page-aligned non-negative doubles (exact: both are multiples of 4096). */
export function add64(a: number, b: number): number {
  const sum = a + b;
  return sum >= 2 ** 64 ? sum - 2 ** 64 : sum;
}

export class HypMemoryMap {
  readonly regions: readonly MemblockRegion[];

  constructor(regions: readonly MemblockRegion[], readonly physLimit: number) {
    this.regions = [...regions].sort((a, b) => a.base - b.base);
  }

  /** `find_mem_range`: the region holding addr, else the gap between its neighbours. */
  findMemRange(addr: number): MemRange {
    let lo = 0;
    let hi = this.regions.length;
    // Binary search, as the kernel does: first region whose end is above addr.
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const r = this.regions[mid] as MemblockRegion;
      if (r.base + r.size <= addr) lo = mid + 1;
      else hi = mid;
    }
    const next = this.regions[lo];
    if (next !== undefined && addr >= next.base) return { start: next.base, end: next.base + next.size, isMemory: true, region: next };
    const prev = lo > 0 ? this.regions[lo - 1] : undefined;
    // The kernel's gap bounds are [0, ULONG_MAX) at the edges.
    return { start: prev === undefined ? 0 : prev.base + prev.size, end: next === undefined ? ULONG_MAX : next.base, isMemory: false, region: undefined };
  }

  addrIsMemory(addr: number): boolean {
    return this.findMemRange(addr).isMemory;
  }

  /** `range_is_memory(s, e)`: s in a region and e − 1 in the same region. */
  rangeIsMemory(start: number, end: number): boolean {
    const range = this.findMemRange(start);
    return range.isMemory && endMinusOneIn(end, range);
  }

  /** `check_range_allowed_memory` (UP-2026): -EINVAL across a boundary, -EPERM for a gap or NOMAP. */
  checkRangeAllowedMemory(start: number, end: number): number {
    const range = this.findMemRange(start);
    if (!endMinusOneIn(end, range)) return -EINVAL;
    if (!range.isMemory || range.region?.nomap === true) return -EPERM;
    return 0;
  }

  /** The gaps (non-memory ranges) of [0, physLimit), for `host_stage2_unmap_dev_all`. */
  gaps(): { start: number; end: number }[] {
    const out: { start: number; end: number }[] = [];
    let cursor = 0;
    for (const r of this.regions) {
      if (r.base > cursor) out.push({ start: cursor, end: r.base });
      cursor = r.base + r.size;
    }
    if (cursor < this.physLimit) out.push({ start: cursor, end: this.physLimit });
    return out;
  }
}
