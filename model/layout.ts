/**
 * The machine layout and the address arithmetic of the hypervisor's range checks.
 *
 * Physical memory is the memblock list (`hyp_memory[]`, §2.2): sorted RAM regions, some flagged
 * NOMAP. Everything between them is an MMIO gap. Page size is 4 KiB.
 *
 * Address arithmetic that the kernel does in u64 is done here with BigInt masked to 64 bits, so
 * that overflow and wrap-around behave exactly as in C: the range checks are where overflow bugs
 * live (§8 class 2), and the point of the model is to say what the C does with hostile numbers.
 */
import { EINVAL, EPERM } from './errno.js';

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;
/** Pages in the one block size that guest shares may use: level 2 with 4 KiB pages (§3.7). */
export const BLOCK_PAGES = 512;

const U64_MASK = (1n << 64n) - 1n;
const ULONG_MAX = U64_MASK;

export interface MemoryRegion {
  /** Byte address, page aligned. */
  readonly base: number;
  /** Bytes, a non-zero multiple of the page size. */
  readonly size: number;
  /** memblock NOMAP: memory the host may touch, but that pKVM refuses to transition (§2.2). */
  readonly nomap?: boolean;
}

export interface Layout {
  /**
   * PA bits of the CPU (PARange). The host stage-2 is an identity map over [0, 2^physShift)
   * and guests get the same IPA size, because `init_pkvm_hyp_vm` copies the host VTCR.
   */
  readonly physShift: number;
  /** memblock regions, sorted by base, non-overlapping (adjacent is allowed). */
  readonly memory: readonly MemoryRegion[];
}

/** Throws on a layout the kernel could not have booted with: a configuration error, not input. */
export function validateLayout(layout: Layout): void {
  if (!Number.isInteger(layout.physShift) || layout.physShift < 32 || layout.physShift > 52) {
    throw new RangeError(`physShift ${layout.physShift} outside [32, 52]`);
  }
  let end = 0;
  for (const r of layout.memory) {
    if (!Number.isSafeInteger(r.base) || !Number.isSafeInteger(r.size)) throw new RangeError('region not an integer');
    if (r.base % PAGE_SIZE !== 0 || r.size % PAGE_SIZE !== 0 || r.size <= 0) {
      throw new RangeError(`region at ${r.base}: base and size must be non-zero multiples of 4 KiB`);
    }
    if (r.base < end) throw new RangeError(`region at ${r.base} overlaps or is not sorted`);
    end = r.base + r.size;
    if (end > 2 ** layout.physShift) throw new RangeError(`region at ${r.base} ends above 2^physShift`);
  }
}

/**
 * An operation field is a 64-bit register value. A JavaScript number that is not an exact
 * integer in [0, 2^64) cannot come from a register, so it is a generator bug and we throw
 * instead of guessing. Numbers above 2^53 are fine when exact (e.g. 2**64 - 2**12).
 */
export function u64(value: number, what: string): bigint {
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** 64) {
    throw new RangeError(`${what} = ${value} is not a u64`);
  }
  return BigInt(value);
}

/** `hyp_pfn_to_phys`: `pfn << PAGE_SHIFT` in u64, so the top 12 bits of a huge pfn are lost. */
export function pfnToPhys(pfn: bigint): bigint {
  return (pfn << BigInt(PAGE_SHIFT)) & U64_MASK;
}

/** The page frame a (wrapped) physical address falls in; always < 2^52, so a safe number. */
export function physToPfn(phys: bigint): number {
  return Number(phys >> BigInt(PAGE_SHIFT));
}

/** Number of page frames below 2^physShift. */
export function paLimitPages(layout: Layout): number {
  return 2 ** (layout.physShift - PAGE_SHIFT);
}

/**
 * `pfn_range_is_valid` (§3): overflow-proof, written as in the kernel so that a reviewer can
 * match it line by line: `limit - pfn >= n` never overflows because `pfn < limit` was checked.
 */
export function pfnRangeIsValid(layout: Layout, pfn: bigint, nrPages: bigint): boolean {
  const limit = 1n << BigInt(layout.physShift - PAGE_SHIFT);
  return pfn < limit && limit - pfn >= nrPages;
}

export interface MemRange {
  /** The region containing the address, or undefined for a gap. */
  readonly region: MemoryRegion | undefined;
  /** [start, end) in bytes; a gap at the top of the address space ends at ULONG_MAX. */
  readonly start: bigint;
  readonly end: bigint;
}

/**
 * `find_mem_range` (§2.2): the region containing `addr`, or the gap around it. The kernel
 * binary-searches; a linear scan of the sorted list gives the same answer and is easier to read.
 * The unbounded gaps are [0, first) and [last end, ULONG_MAX) — note ULONG_MAX, not 2^64: the
 * last byte of the address space is in no range at all.
 */
export function findMemRange(layout: Layout, addr: bigint): MemRange {
  let start = 0n;
  let end = ULONG_MAX;
  for (const region of layout.memory) {
    const base = BigInt(region.base);
    const regionEnd = base + BigInt(region.size);
    if (addr < base) {
      end = base;
      break;
    }
    if (addr >= regionEnd) {
      start = regionEnd;
      continue;
    }
    return { region, start: base, end: regionEnd };
  }
  return { region: undefined, start, end };
}

function inRange(addr: bigint, range: MemRange): boolean {
  return range.start <= addr && addr < range.end;
}

/** `addr_is_memory`: inside a memblock region (NOMAP regions count as memory). */
export function addrIsMemory(layout: Layout, phys: bigint): boolean {
  return findMemRange(layout, phys).region !== undefined;
}

export function pfnIsMemory(layout: Layout, pfn: number): boolean {
  return addrIsMemory(layout, BigInt(pfn) << BigInt(PAGE_SHIFT));
}

/**
 * `check_range_allowed_memory(start, end)` (UP-2026, §2.2): -EINVAL if [start, end) is not inside
 * one region or one gap, -EPERM if it is a gap (MMIO) or a NOMAP region, else 0.
 * `end - 1` is computed in u64 exactly as in C, so an empty range at a region base (end - 1 falls
 * before the region) and a range ending at 2^64 (end wraps to 0) are both -EINVAL.
 */
export function checkRangeAllowedMemory(layout: Layout, start: bigint, end: bigint): number {
  const range = findMemRange(layout, start);
  if (!inRange((end - 1n) & U64_MASK, range)) return -EINVAL;
  if (range.region === undefined || range.region.nomap === true) return -EPERM;
  return 0;
}

/** `range_is_memory(start, end)`: both ends in the same region. */
export function rangeIsMemory(layout: Layout, start: bigint, end: bigint): boolean {
  const range = findMemRange(layout, start);
  return range.region !== undefined && inRange((end - 1n) & U64_MASK, range);
}

/** u64 addition, for `phys + size` as the kernel computes it. */
export function add64(a: bigint, b: bigint): bigint {
  return (a + b) & U64_MASK;
}
