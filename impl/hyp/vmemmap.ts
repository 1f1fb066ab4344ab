/**
 * The hypervisor's vmemmap: one `struct hyp_page` per page of memory (pkvm-host-s2-iommu.md
 * §1.1): a 16-bit refcount (hyp pins and allocator use), the 4-bit host state, the 4-bit hyp
 * state stored as its complement (so zeroed memory reads as host OWNED / hyp NOPAGE), and the
 * 32-bit host→guest share count. Kept in typed arrays per memblock region.
 */
import { type MemblockRegion } from './memory-map.js';
import { HypervisorPanic } from './panic.js';

export const PKVM_PAGE_OWNED = 0b00;
export const PKVM_PAGE_SHARED_OWNED = 0b01;
export const PKVM_PAGE_SHARED_BORROWED = 0b10;
export const PKVM_NOPAGE = 0b11;
export type PageState = typeof PKVM_PAGE_OWNED | typeof PKVM_PAGE_SHARED_OWNED | typeof PKVM_PAGE_SHARED_BORROWED | typeof PKVM_NOPAGE;

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;
const U32_MAX = 0xffff_ffff;

/**
 * The entries of 4096 consecutive pages. The kernel's vmemmap is one array over all memory;
 * here it is allocated a chunk at a time on the first write (simulation choice: a chunk never
 * written reads as zero, which is what the kernel's zeroed array holds), so a machine with
 * 64 GiB of RAM costs what its runs touch, not 112 MiB per boot.
 */
interface PageChunk {
  readonly firstPfn: number;
  readonly refcount: Uint16Array;
  /** Low nibble: host state; high nibble: hyp state XOR 0b11. */
  readonly state: Uint8Array;
  readonly shareGuestCount: Uint32Array;
}

const CHUNK_PAGES = 4096;

interface RegionPages {
  readonly firstPfn: number;
  readonly pages: number;
  readonly chunks: Map<number, PageChunk>;
}

/** What an unwritten chunk reads as; never written (writers allocate their own chunk). */
const ZERO_CHUNK: PageChunk = { firstPfn: 0, refcount: new Uint16Array(CHUNK_PAGES), state: new Uint8Array(CHUNK_PAGES), shareGuestCount: new Uint32Array(CHUNK_PAGES) };

/** One `struct hyp_page` as numbers: the state byte (host nibble, complemented hyp nibble), refcount, share count. */
export interface VmemmapEntry {
  readonly state: number;
  readonly refcount: number;
  readonly shareGuestCount: number;
}

function isNonDefault(r: PageChunk, i: number): boolean {
  return r.state[i] !== 0 || r.refcount[i] !== 0 || r.shareGuestCount[i] !== 0;
}

export class Vmemmap {
  private readonly regions: RegionPages[];
  /**
   * Observation only (the runner's incremental checks): while armed, every pfn whose entry is
   * written, with the entry as it was before the first write; null otherwise.
   */
  changeLog: Map<number, VmemmapEntry> | null = null;
  /** Pages whose entry is not all-zero, kept up to date so checks need not scan all memory. */
  private readonly touched = new Set<number>();

  constructor(memblock: readonly MemblockRegion[]) {
    this.regions = memblock.map((r) => {
      const pages = r.size / PAGE_SIZE;
      return { firstPfn: r.base / PAGE_SIZE, pages, chunks: new Map() };
    });
  }

  /** The chunk the last access found (accesses come in runs of neighbouring pages). */
  private lastChunk: PageChunk | undefined;

  /** The index in `locate`'s chunk of the pfn it was last asked for (no tuple per access: these run per page). */
  private at = 0;

  private locate(pfn: number, write = false): PageChunk {
    const last = this.lastChunk;
    if (last !== undefined && pfn >= last.firstPfn && pfn < last.firstPfn + last.state.length) {
      this.at = pfn - last.firstPfn;
      return last;
    }
    for (const r of this.regions) {
      if (pfn >= r.firstPfn && pfn < r.firstPfn + r.pages) {
        const offset = pfn - r.firstPfn;
        const index = Math.floor(offset / CHUNK_PAGES);
        let chunk = r.chunks.get(index);
        if (chunk === undefined) {
          if (!write) {
            this.at = offset % CHUNK_PAGES;
            return ZERO_CHUNK;
          }
          const n = Math.min(CHUNK_PAGES, r.pages - index * CHUNK_PAGES);
          chunk = { firstPfn: r.firstPfn + index * CHUNK_PAGES, refcount: new Uint16Array(n), state: new Uint8Array(n), shareGuestCount: new Uint32Array(n) };
          r.chunks.set(index, chunk);
        }
        this.lastChunk = chunk;
        this.at = offset % CHUNK_PAGES;
        return chunk;
      }
    }
    // Callers check `range_is_memory` first; reaching here is a hypervisor bug (a BUG() at EL2),
    // reported as a panic so a run with a broken check ends with a counterexample, not a crash.
    throw new HypervisorPanic(`hyp_page of pfn ${pfn.toString(16)} outside the vmemmap`);
  }

  has(pfn: number): boolean {
    for (const r of this.regions) if (pfn >= r.firstPfn && pfn < r.firstPfn + r.pages) return true;
    return false;
  }

  hostState(pfn: number): PageState {
    const r = this.locate(pfn);
    const i = this.at;
    return ((r.state[i] as number) & 0xf) as PageState;
  }

  setHostState(pfn: number, state: PageState): void {
    const r = this.locate(pfn, true);
    const i = this.at;
    if (this.changeLog !== null) this.logBefore(r, i);
    const was = isNonDefault(r, i);
    r.state[i] = ((r.state[i] as number) & 0xf0) | state;
    this.track(r, i, was);
  }

  hypState(pfn: number): PageState {
    const r = this.locate(pfn);
    const i = this.at;
    return ((((r.state[i] as number) >>> 4) & 0xf) ^ 0b11) as PageState;
  }

  setHypState(pfn: number, state: PageState): void {
    const r = this.locate(pfn, true);
    const i = this.at;
    if (this.changeLog !== null) this.logBefore(r, i);
    const was = isNonDefault(r, i);
    r.state[i] = ((r.state[i] as number) & 0x0f) | ((state ^ 0b11) << 4);
    this.track(r, i, was);
  }

  refcount(pfn: number): number {
    const r = this.locate(pfn);
    const i = this.at;
    return r.refcount[i] as number;
  }

  setRefcount(pfn: number, value: number): void {
    const r = this.locate(pfn, true);
    const i = this.at;
    if (this.changeLog !== null) this.logBefore(r, i);
    const was = isNonDefault(r, i);
    r.refcount[i] = value;
    this.track(r, i, was);
  }

  shareGuestCount(pfn: number): number {
    const r = this.locate(pfn);
    const i = this.at;
    return r.shareGuestCount[i] as number;
  }

  setShareGuestCount(pfn: number, value: number): void {
    if (value < 0 || value > U32_MAX) throw new Error('host_share_guest_count out of range');
    const r = this.locate(pfn, true);
    const i = this.at;
    if (this.changeLog !== null) this.logBefore(r, i);
    const was = isNonDefault(r, i);
    r.shareGuestCount[i] = value;
    this.track(r, i, was);
  }

  private logBefore(r: PageChunk, i: number): void {
    const log = this.changeLog as Map<number, VmemmapEntry>;
    const pfn = r.firstPfn + i;
    if (!log.has(pfn)) log.set(pfn, { state: r.state[i] as number, refcount: r.refcount[i] as number, shareGuestCount: r.shareGuestCount[i] as number });
  }

  /** The entry of a page of memory, as numbers (compared with a change log's "before"). */
  entry(pfn: number): VmemmapEntry {
    const r = this.locate(pfn);
    const i = this.at;
    return { state: r.state[i] as number, refcount: r.refcount[i] as number, shareGuestCount: r.shareGuestCount[i] as number };
  }

  /** How many pages have a non-default entry (without sorting them). */
  get nonDefaultCount(): number {
    return this.touched.size;
  }

  /** Keeps `touched` right after a write; the set is only touched when the entry left or reached its default. */
  private track(r: PageChunk, i: number, was: boolean): void {
    const now = isNonDefault(r, i);
    if (now === was) return;
    if (now) this.touched.add(r.firstPfn + i);
    else this.touched.delete(r.firstPfn + i);
  }

  /** Every pfn with a non-default entry (for the abstraction function), ascending. */
  nonDefault(): number[] {
    return [...this.touched].sort((a, b) => a - b);
  }

  /** The non-default entries as text, for "an error changes nothing" comparisons. */
  snapshot(): string {
    return this.nonDefault()
      .map((pfn) => `${pfn}:${this.hostState(pfn)}${this.hypState(pfn)}:${this.refcount(pfn)}:${this.shareGuestCount(pfn)}`)
      .join(',');
  }
}
