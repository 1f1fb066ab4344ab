/**
 * The IOMMU core around io-pgtable (stage2-pgtable.md §3.8): `struct iommu_iotlb_gather` and its
 * helpers, `iommu_pgsize()`, and the core's map/unmap loops that split a range into calls of one
 * page size each.
 *
 * Addresses, sizes and page-size bitmaps reach 2^52 (the 64K granule's 4 TiB block is bit 42), so
 * nothing here uses JavaScript's 32-bit bit operators on them directly: the `*53` helpers below
 * split a safe integer into its two 32-bit halves first.
 */
import { EINVAL, ENODEV } from '../arch/errno.js';

const TWO_POW_32 = 0x1_0000_0000;

// --- Bit operations on non-negative safe integers (< 2^53) ---

function hi32(x: number): number {
  return Math.floor(x / TWO_POW_32);
}

export function and53(a: number, b: number): number {
  return ((hi32(a) & hi32(b)) >>> 0) * TWO_POW_32 + (((a % TWO_POW_32) & (b % TWO_POW_32)) >>> 0);
}

export function or53(a: number, b: number): number {
  return ((hi32(a) | hi32(b)) >>> 0) * TWO_POW_32 + (((a % TWO_POW_32) | (b % TWO_POW_32)) >>> 0);
}

export function xor53(a: number, b: number): number {
  return ((hi32(a) ^ hi32(b)) >>> 0) * TWO_POW_32 + (((a % TWO_POW_32) ^ (b % TWO_POW_32)) >>> 0);
}

/** a & ~b. */
export function andNot53(a: number, b: number): number {
  return ((hi32(a) & ~hi32(b)) >>> 0) * TWO_POW_32 + (((a % TWO_POW_32) & ~(b % TWO_POW_32)) >>> 0);
}

/** Index of the highest set bit (Linux `__fls`); -1 for 0. */
export function fls53(x: number): number {
  const h = hi32(x);
  if (h !== 0) return 63 - Math.clz32(h);
  const l = x % TWO_POW_32;
  return l === 0 ? -1 : 31 - Math.clz32(l);
}

/** Index of the lowest set bit (Linux `__ffs`); -1 for 0. */
export function ffs53(x: number): number {
  const l = x % TWO_POW_32;
  if (l !== 0) return 31 - Math.clz32(l & -l);
  const h = hi32(x);
  return h === 0 ? -1 : 63 - Math.clz32(h & -h);
}

/** GENMASK(msb, lsb) for 0 ≤ lsb ≤ msb ≤ 52, as a number. */
export function genmask53(msb: number, lsb: number): number {
  return 2 ** (msb + 1) - 2 ** lsb;
}

// --- struct iommu_iotlb_gather ---

/**
 * ULONG_MAX, the initial `start`. Choice: 2^64 is what `(double)ULONG_MAX` rounds to, and it
 * behaves as ULONG_MAX in every comparison the helpers make with addresses below 2^53.
 */
export const ULONG_MAX = 2 ** 64;

export interface IommuIotlbGather {
  start: number;
  /** Inclusive; 0 means "nothing gathered" (the helpers rely on that). */
  end: number;
  pgsize: number;
  /** Table pages waiting for the sync before they may be freed (io-pgtable-arm never uses it). */
  freelist: number[];
  /** Flush-queue domain: io-pgtable skips per-leaf `tlb_add_page` when set. */
  queued: boolean;
}

/** `iommu_iotlb_gather_init`: re-initialises `g` in place (all fields, `queued` too) or makes one. */
export function iommuIotlbGatherInit(g?: IommuIotlbGather): IommuIotlbGather {
  if (g === undefined) return { start: ULONG_MAX, end: 0, pgsize: 0, freelist: [], queued: false };
  g.start = ULONG_MAX;
  g.end = 0;
  g.pgsize = 0;
  g.freelist = [];
  g.queued = false;
  return g;
}

/** Ranges that touch are not disjoint; a gap of one byte is (§3.8). */
export function iommuIotlbGatherIsDisjoint(g: IommuIotlbGather, iova: number, size: number): boolean {
  const end = iova + size - 1;
  return g.end !== 0 && (end + 1 < g.start || iova > g.end + 1);
}

export function iommuIotlbGatherAddRange(g: IommuIotlbGather, iova: number, size: number): void {
  const end = iova + size - 1;
  if (g.start > iova) g.start = iova;
  if (g.end < end) g.end = end;
}

/** The driver side of a domain: `iotlb_sync` (SMMUv3: leaf range TLBI over [start, end]). */
export interface IotlbSyncDomain {
  iotlbSync?(gather: IommuIotlbGather): void;
}

/** `iommu_iotlb_sync`: the driver flushes what was gathered, then the gather starts afresh. */
export function iommuIotlbSync(domain: IotlbSyncDomain, g: IommuIotlbGather): void {
  domain.iotlbSync?.(g);
  iommuIotlbGatherInit(g);
}

/**
 * `iommu_iotlb_gather_add_page`: a page of another size, or one not touching the gathered range,
 * forces a sync of what was gathered before it is added (§3.8).
 */
export function iommuIotlbGatherAddPage(domain: IotlbSyncDomain, g: IommuIotlbGather, iova: number, size: number): void {
  if ((g.pgsize !== 0 && g.pgsize !== size) || iommuIotlbGatherIsDisjoint(g, iova, size)) {
    iommuIotlbSync(domain, g);
  }
  g.pgsize = size;
  iommuIotlbGatherAddRange(g, iova, size);
}

export function iommuIotlbGatherQueued(g: IommuIotlbGather | null): boolean {
  return g !== null && g.queued;
}

// --- iommu_pgsize and the core's loops ---

export interface PgsizeChoice {
  readonly pgsize: number;
  readonly count: number;
}

/**
 * `iommu_pgsize` (§3.8): the largest supported size that fits in `size` and to which both
 * addresses are aligned, and how many of them to map before a larger size could take over.
 * Choice: where Linux would BUG (no size fits, i.e. the caller broke the min-page alignment
 * precondition), this returns `{ pgsize: 0, count: 0 }`.
 */
export function iommuPgsize(bitmap: number, iova: number, paddr: number, size: number): PgsizeChoice {
  const addrMerge = or53(iova, paddr);
  let candidates = and53(bitmap, genmask53(Math.min(fls53(size), 52), 0));
  if (addrMerge !== 0) candidates = and53(candidates, genmask53(Math.min(ffs53(addrMerge), 52), 0));
  if (candidates === 0 || size <= 0) return { pgsize: 0, count: 0 };
  const pgsizeIdx = fls53(candidates);
  const pgsize = 2 ** pgsizeIdx;
  const larger = andNot53(bitmap, genmask53(pgsizeIdx, 0));
  if (larger !== 0) {
    const next = 2 ** ffs53(larger);
    // A larger page only helps if IOVA and PA sit at the same offset inside it.
    if (and53(xor53(iova, paddr), next - 1) === 0) {
      const offset = next - and53(addrMerge, next - 1);
      if (offset + next <= size) size = offset;
    }
  }
  return { pgsize, count: Math.floor(size / pgsize) };
}

/** What the core needs from a page-table format (io-pgtable `map_pages` / `unmap_pages`). */
export interface PgtableMapOps {
  mapPages(iova: number, paddr: number, pgsize: number, pgcount: number, prot: number): { ret: number; mapped: number };
  unmapPages(iova: number, pgsize: number, pgcount: number, gather: IommuIotlbGather | null): number;
}

export interface IommuDomainLike extends IotlbSyncDomain {
  readonly pgsizeBitmap: number;
  readonly ops: PgtableMapOps;
}

/**
 * `__iommu_unmap` + sync (`iommu_unmap`): one `unmap_pages` per page-size run, stopping at the
 * first call that unmaps nothing; returns the bytes unmapped.
 */
export function iommuUnmap(domain: IommuDomainLike, iova: number, size: number, gather?: IommuIotlbGather): number {
  const g = gather ?? iommuIotlbGatherInit();
  const minPage = 2 ** ffs53(domain.pgsizeBitmap);
  let unmapped = 0;
  if (domain.pgsizeBitmap !== 0 && or53(iova, size) % minPage === 0) {
    while (unmapped < size) {
      const { pgsize, count } = iommuPgsize(domain.pgsizeBitmap, iova, iova, size - unmapped);
      if (pgsize === 0) break;
      const done = domain.ops.unmapPages(iova, pgsize, count, g);
      if (done === 0) break;
      iova += done;
      unmapped += done;
    }
  }
  if (gather === undefined) iommuIotlbSync(domain, g);
  return unmapped;
}

/**
 * `iommu_map` (§3.8): map in runs chosen by `iommuPgsize`, advancing by what each call reports
 * mapped; on error, unmap everything this call mapped. Returns 0 or a negative errno.
 */
export function iommuMap(domain: IommuDomainLike, iova: number, paddr: number, size: number, prot: number): number {
  if (domain.pgsizeBitmap === 0) return -ENODEV;
  const minPage = 2 ** ffs53(domain.pgsizeBitmap);
  if (or53(or53(iova, paddr), size) % minPage !== 0) return -EINVAL;
  const origIova = iova;
  const origSize = size;
  let ret = 0;
  while (size > 0) {
    const { pgsize, count } = iommuPgsize(domain.pgsizeBitmap, iova, paddr, size);
    const r = domain.ops.mapPages(iova, paddr, pgsize, count, prot);
    size -= r.mapped;
    ret = r.ret;
    if (ret !== 0) break;
    // Choice: a format reporting success with nothing mapped would make Linux spin; stop instead.
    if (r.mapped === 0) {
      ret = -EINVAL;
      break;
    }
    iova += r.mapped;
    paddr += r.mapped;
  }
  if (ret !== 0) iommuUnmap(domain, origIova, origSize - size);
  return ret;
}
