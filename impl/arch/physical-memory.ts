/**
 * Simulated physical address space: RAM regions and MMIO gaps.
 *
 * RAM is sparse: a 4 KiB frame (a Uint32Array of 1024 words) is allocated on its first write and
 * reads of untouched RAM return zero. MMIO ranges route to handlers that devices register later.
 * An access outside every region, to an MMIO range without a handler, or refused by a handler
 * returns an external-abort status: addresses come from the host and from devices, so nothing
 * here throws for them.
 */

export const ACCESS_OK = 0;
export const ACCESS_EXTERNAL_ABORT = 1;
export type AccessStatus = typeof ACCESS_OK | typeof ACCESS_EXTERNAL_ABORT;

/** Returned by `read32`/`read8` for an aborted access (valid values are never negative). */
export const READ_ABORT = -1;

export const FRAME_SHIFT = 12;
export const FRAME_SIZE = 4096;
const WORDS_PER_FRAME = FRAME_SIZE / 4;
/** Frames per chunk of the sparse frame index (2 MiB of address space: a boot reset scans the chunks, properties/boot-cache.ts). */
const CHUNK_FRAMES = 512;

export type RegionKind = 'ram' | 'mmio';

export interface RegionSpec {
  readonly name: string;
  readonly kind: RegionKind;
  readonly base: number;
  readonly size: number;
  /** RAM the host kernel must not map (memblock NOMAP); still RAM to the hardware. */
  readonly nomap?: boolean;
}

export interface MmioHandler {
  /** Returns the 32-bit value, or READ_ABORT. `offset` is relative to the registered base. */
  read32(offset: number): number;
  write32(offset: number, value: number): AccessStatus;
  /** Optional native 64-bit access; without it a 64-bit access is two 32-bit ones, low first. */
  read64?(offset: number, out: Word64): AccessStatus;
  write64?(offset: number, lo: number, hi: number): AccessStatus;
}

/** Out-parameter for 64-bit loads, so hot paths do not allocate. */
export interface Word64 {
  lo: number;
  hi: number;
}

interface MmioBinding {
  readonly base: number;
  readonly size: number;
  readonly handler: MmioHandler;
}

/** Called after every 64-bit or 32-bit store to RAM, with the old and new 64-bit contents. */
export type StoreObserver = (pa: number, oldLo: number, oldHi: number, newLo: number, newHi: number) => void;

const ZERO_FRAME = new Uint32Array(WORDS_PER_FRAME);

export class PhysicalMemory {
  readonly regions: readonly RegionSpec[];
  private readonly chunks = new Map<number, (Uint32Array | undefined)[]>();
  private lastChunkIndex = -1;
  private lastChunk: (Uint32Array | undefined)[] | undefined = undefined;
  private readonly mmio: MmioBinding[] = [];
  private frames = 0;
  /** Observer of RAM stores (protocol checks); null when nobody listens. */
  storeObserver: StoreObserver | null = null;

  constructor(regions: readonly RegionSpec[]) {
    const sorted = [...regions].sort((a, b) => a.base - b.base);
    let end = 0;
    for (const region of sorted) {
      if (region.base % FRAME_SIZE !== 0 || region.size % FRAME_SIZE !== 0 || region.size <= 0) {
        throw new Error(`region ${region.name}: base and size must be non-zero multiples of 4 KiB`);
      }
      if (region.base < end) throw new Error(`region ${region.name} overlaps the previous region`);
      if (region.base + region.size > 2 ** 52) throw new Error(`region ${region.name} ends above 2^52`);
      end = region.base + region.size;
    }
    this.regions = Object.freeze(sorted.map((r) => Object.freeze({ ...r })));
  }

  regionAt(pa: number): RegionSpec | undefined {
    for (const region of this.regions) {
      if (pa >= region.base && pa < region.base + region.size) return region;
    }
    return undefined;
  }

  isRam(pa: number): boolean {
    return this.regionAt(pa)?.kind === 'ram';
  }

  /** Number of RAM frames that have been written (memory actually held). */
  get allocatedFrames(): number {
    return this.frames;
  }

  /** Routes [base, base + size) of an MMIO region to `handler`. */
  registerMmio(base: number, size: number, handler: MmioHandler): void {
    const region = this.regionAt(base);
    if (region?.kind !== 'mmio' || base + size > region.base + region.size) {
      throw new Error(`MMIO handler at ${base.toString(16)} is not inside one MMIO region`);
    }
    for (const b of this.mmio) {
      if (base < b.base + b.size && b.base < base + size) throw new Error('overlapping MMIO handlers');
    }
    this.mmio.push({ base, size, handler });
  }

  // --- RAM frames ---

  private chunkFor(pfn: number, create: boolean): (Uint32Array | undefined)[] | undefined {
    const index = Math.floor(pfn / CHUNK_FRAMES);
    if (index === this.lastChunkIndex) return this.lastChunk;
    let chunk = this.chunks.get(index);
    if (chunk === undefined) {
      if (!create) return undefined;
      chunk = new Array<Uint32Array | undefined>(CHUNK_FRAMES).fill(undefined);
      this.chunks.set(index, chunk);
    }
    this.lastChunkIndex = index;
    this.lastChunk = chunk;
    return chunk;
  }

  private ramRegionContains(pa: number, bytes: number): boolean {
    for (const region of this.regions) {
      if (pa >= region.base && pa + bytes <= region.base + region.size) return region.kind === 'ram';
    }
    return false;
  }

  /**
   * The words of the RAM frame holding `pa`, for reading (a shared zero frame when untouched);
   * undefined when `pa` is not RAM. Callers must never write to the returned array.
   */
  frameForRead(pa: number): Uint32Array | undefined {
    const pfn = Math.floor(pa / FRAME_SIZE);
    const chunk = this.chunkFor(pfn, false);
    const frame = chunk?.[pfn % CHUNK_FRAMES];
    if (frame !== undefined) return frame;
    return this.ramRegionContains(pa, 1) ? ZERO_FRAME : undefined;
  }

  private frameForWrite(pa: number): Uint32Array | undefined {
    const pfn = Math.floor(pa / FRAME_SIZE);
    const existing = this.chunkFor(pfn, false)?.[pfn % CHUNK_FRAMES];
    if (existing !== undefined) return existing;
    if (!this.ramRegionContains(pa, 1)) return undefined;
    const chunk = this.chunkFor(pfn, true) as (Uint32Array | undefined)[];
    const frame = new Uint32Array(WORDS_PER_FRAME);
    chunk[pfn % CHUNK_FRAMES] = frame;
    this.frames++;
    return frame;
  }

  private mmioAt(pa: number): MmioBinding | undefined {
    for (const b of this.mmio) {
      if (pa >= b.base && pa < b.base + b.size) return b;
    }
    return undefined;
  }

  // --- 64-bit access (descriptors, STEs, commands) ---

  /** Loads the naturally aligned 64-bit word at `pa` into `out`. */
  load64(pa: number, out: Word64): AccessStatus {
    if (pa % 8 !== 0) return ACCESS_EXTERNAL_ABORT;
    const frame = this.frameForRead(pa);
    if (frame !== undefined) {
      const index = (pa % FRAME_SIZE) >>> 2;
      out.lo = frame[index] as number;
      out.hi = frame[index + 1] as number;
      return ACCESS_OK;
    }
    const binding = this.mmioAt(pa);
    if (binding === undefined) return ACCESS_EXTERNAL_ABORT;
    const offset = pa - binding.base;
    if (binding.handler.read64 !== undefined) return binding.handler.read64(offset, out);
    const lo = binding.handler.read32(offset);
    const hi = binding.handler.read32(offset + 4);
    if (lo < 0 || hi < 0) return ACCESS_EXTERNAL_ABORT;
    out.lo = lo;
    out.hi = hi;
    return ACCESS_OK;
  }

  /** Stores a naturally aligned 64-bit word (single-copy atomic, as descriptor stores are). */
  store64(pa: number, lo: number, hi: number): AccessStatus {
    if (pa % 8 !== 0) return ACCESS_EXTERNAL_ABORT;
    const frame = this.frameForWrite(pa);
    if (frame !== undefined) {
      const index = (pa % FRAME_SIZE) >>> 2;
      const observer = this.storeObserver;
      if (observer !== null) {
        const oldLo = frame[index] as number;
        const oldHi = frame[index + 1] as number;
        frame[index] = lo;
        frame[index + 1] = hi;
        observer(pa, oldLo, oldHi, lo >>> 0, hi >>> 0);
      } else {
        frame[index] = lo;
        frame[index + 1] = hi;
      }
      return ACCESS_OK;
    }
    const binding = this.mmioAt(pa);
    if (binding === undefined) return ACCESS_EXTERNAL_ABORT;
    const offset = pa - binding.base;
    if (binding.handler.write64 !== undefined) return binding.handler.write64(offset, lo >>> 0, hi >>> 0);
    if (binding.handler.write32(offset, lo >>> 0) !== ACCESS_OK) return ACCESS_EXTERNAL_ABORT;
    return binding.handler.write32(offset + 4, hi >>> 0);
  }

  // --- 32-bit and byte access (data, registers) ---

  read32(pa: number): number {
    if (pa % 4 !== 0) return READ_ABORT;
    const frame = this.frameForRead(pa);
    if (frame !== undefined) return frame[(pa % FRAME_SIZE) >>> 2] as number;
    const binding = this.mmioAt(pa);
    if (binding === undefined) return READ_ABORT;
    return binding.handler.read32(pa - binding.base);
  }

  write32(pa: number, value: number): AccessStatus {
    if (pa % 4 !== 0) return ACCESS_EXTERNAL_ABORT;
    const frame = this.frameForWrite(pa);
    if (frame !== undefined) {
      const index = (pa % FRAME_SIZE) >>> 2;
      const observer = this.storeObserver;
      if (observer !== null) {
        const base = index & ~1;
        const oldLo = frame[base] as number;
        const oldHi = frame[base + 1] as number;
        frame[index] = value;
        observer(pa - (pa % 8), oldLo, oldHi, frame[base] as number, frame[base + 1] as number);
      } else {
        frame[index] = value;
      }
      return ACCESS_OK;
    }
    const binding = this.mmioAt(pa);
    if (binding === undefined) return ACCESS_EXTERNAL_ABORT;
    return binding.handler.write32(pa - binding.base, value >>> 0);
  }

  read8(pa: number): number {
    const word = this.read32(pa - (pa % 4));
    if (word < 0) return READ_ABORT;
    return (word >>> ((pa % 4) * 8)) & 0xff;
  }

  write8(pa: number, value: number): AccessStatus {
    const aligned = pa - (pa % 4);
    const frame = this.frameForWrite(aligned);
    if (frame === undefined) {
      // Byte writes to MMIO are not modelled: registers are 32/64-bit. Treat as an abort.
      return ACCESS_EXTERNAL_ABORT;
    }
    const shift = (pa % 4) * 8;
    const old = this.read32(aligned);
    return this.write32(aligned, ((old & ~(0xff << shift)) | ((value & 0xff) << shift)) >>> 0);
  }

  /**
   * Zeroes [pa, pa + size) of RAM (page-table pages are handed out zeroed). Works in 64-bit words:
   * `pa` and `size` must be multiples of 8, otherwise the call aborts without touching memory.
   */
  zero(pa: number, size: number): AccessStatus {
    if (pa % 8 !== 0 || size % 8 !== 0) return ACCESS_EXTERNAL_ABORT;
    if (!this.ramRegionContains(pa, size)) return ACCESS_EXTERNAL_ABORT;
    for (let addr = pa; addr < pa + size; addr += 8) {
      const frame = this.frameForRead(addr);
      if (frame === ZERO_FRAME) {
        addr += FRAME_SIZE - (addr % FRAME_SIZE) - 8;
        continue;
      }
      const index = (addr % FRAME_SIZE) >>> 2;
      if ((frame as Uint32Array)[index] !== 0 || (frame as Uint32Array)[index + 1] !== 0) {
        this.store64(addr, 0, 0);
      }
    }
    return ACCESS_OK;
  }

  /** Convenience for tests and traces: the 64-bit word at `pa` (zero when it aborts). */
  peek64(pa: number): Word64 {
    const out = { lo: 0, hi: 0 };
    this.load64(pa, out);
    return out;
  }
}
