import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  ACCESS_EXTERNAL_ABORT,
  ACCESS_OK,
  FRAME_SIZE,
  PhysicalMemory,
  READ_ABORT,
  type AccessStatus,
  type MmioHandler,
  type RegionSpec,
  type Word64,
} from './physical-memory.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/**
 * A small machine: MMIO at 0x0900_0000 (16 MiB), RAM A at 2 GiB (1 GiB), an unmapped hole,
 * RAM B at 0x8_8000_0000 (64 MiB, NOMAP), and RAM C ending exactly at 2^52.
 */
const REGIONS: RegionSpec[] = [
  { name: 'ram-c', kind: 'ram', base: 2 ** 52 - 2 * MiB, size: 2 * MiB },
  { name: 'ram-a', kind: 'ram', base: 0x8000_0000, size: GiB },
  { name: 'mmio', kind: 'mmio', base: 0x0900_0000, size: 16 * MiB },
  { name: 'ram-b', kind: 'ram', base: 0x8_8000_0000, size: 64 * MiB, nomap: true },
];
const RAM_A = 0x8000_0000;
const RAM_A_END = RAM_A + GiB;
const RAM_B = 0x8_8000_0000;
const RAM_C = 2 ** 52 - 2 * MiB;
const MMIO = 0x0900_0000;

function machine(): PhysicalMemory {
  return new PhysicalMemory(REGIONS);
}

function word(): Word64 {
  return { lo: 0xdead_beef, hi: 0xdead_beef };
}

interface Access {
  op: string;
  offset: number;
  value?: number;
}

/** A recording register file: read32 returns 0x1000_0000 + offset unless told otherwise. */
function recorder(options: { native64?: boolean; abortAt?: number } = {}): MmioHandler & { log: Access[]; regs: Map<number, number> } {
  const log: Access[] = [];
  const regs = new Map<number, number>();
  const handler: MmioHandler & { log: Access[]; regs: Map<number, number> } = {
    log,
    regs,
    read32(offset: number): number {
      log.push({ op: 'r32', offset });
      if (offset === options.abortAt) return READ_ABORT;
      return regs.get(offset) ?? (0x1000_0000 + offset) >>> 0;
    },
    write32(offset: number, value: number): AccessStatus {
      log.push({ op: 'w32', offset, value });
      if (offset === options.abortAt) return ACCESS_EXTERNAL_ABORT;
      regs.set(offset, value);
      return ACCESS_OK;
    },
  };
  if (options.native64 === true) {
    handler.read64 = (offset: number, out: Word64): AccessStatus => {
      log.push({ op: 'r64', offset });
      out.lo = 0xaaaa_0000 + offset;
      out.hi = 0xbbbb_0000;
      return ACCESS_OK;
    };
    handler.write64 = (offset: number, lo: number, hi: number): AccessStatus => {
      log.push({ op: 'w64', offset, value: hi * 2 ** 32 + lo });
      return ACCESS_OK;
    };
  }
  return handler;
}

describe('regions', () => {
  it('are sorted, frozen and queried by address', () => {
    const mem = machine();
    expect(mem.regions.map((r) => r.name)).toEqual(['mmio', 'ram-a', 'ram-b', 'ram-c']);
    expect(Object.isFrozen(mem.regions)).toBe(true);
    expect(Object.isFrozen(mem.regions[0])).toBe(true);
    expect(mem.regionAt(RAM_A)?.name).toBe('ram-a');
    expect(mem.regionAt(RAM_A_END - 1)?.name).toBe('ram-a');
    expect(mem.regionAt(RAM_A_END)).toBeUndefined();
    expect(mem.regionAt(MMIO + 5)?.name).toBe('mmio');
    expect(mem.regionAt(RAM_B)?.nomap).toBe(true);
    expect(mem.regionAt(2 ** 52 - 1)?.name).toBe('ram-c');
    expect(mem.regionAt(2 ** 52)).toBeUndefined();
    expect(mem.isRam(RAM_A)).toBe(true);
    expect(mem.isRam(RAM_B + 4096)).toBe(true);
    expect(mem.isRam(MMIO)).toBe(false);
    expect(mem.isRam(0)).toBe(false);
  });

  it('validation errors', () => {
    const r = (base: number, size: number, kind: 'ram' | 'mmio' = 'ram'): RegionSpec => ({ name: `r${base}`, kind, base, size });
    expect(() => new PhysicalMemory([r(0x1000, 0x1000)])).not.toThrow();
    expect(() => new PhysicalMemory([r(0x1800, 0x1000)])).toThrow(/4 KiB/);
    expect(() => new PhysicalMemory([r(0x1000, 0x800)])).toThrow(/4 KiB/);
    expect(() => new PhysicalMemory([r(0x1000, 0)])).toThrow(/4 KiB/);
    expect(() => new PhysicalMemory([r(0x1000, -0x1000)])).toThrow(/4 KiB/);
    expect(() => new PhysicalMemory([r(0x1000, 0x2000), r(0x2000, 0x1000, 'mmio')])).toThrow(/overlaps/);
    expect(() => new PhysicalMemory([r(0x4000, 0x1000), r(0x0, 0x5000)])).toThrow(/overlaps/);
    expect(() => new PhysicalMemory([r(0x1000, 0x1000), r(0x2000, 0x1000)])).not.toThrow(); // adjacent is fine
    expect(() => new PhysicalMemory([r(2 ** 52 - 0x1000, 0x2000)])).toThrow(/2\^52/);
    expect(() => new PhysicalMemory([r(2 ** 52 - 0x1000, 0x1000)])).not.toThrow();
    expect(() => new PhysicalMemory([])).not.toThrow();
  });

  it('registerMmio validation', () => {
    const mem = machine();
    expect(() => mem.registerMmio(RAM_A, 0x1000, recorder())).toThrow(/MMIO/);
    expect(() => mem.registerMmio(0x100_0000, 0x1000, recorder())).toThrow(/MMIO/);
    expect(() => mem.registerMmio(MMIO + 16 * MiB - 0x1000, 0x2000, recorder())).toThrow(/MMIO/);
    mem.registerMmio(MMIO, 0x2000, recorder());
    expect(() => mem.registerMmio(MMIO + 0x1000, 0x1000, recorder())).toThrow(/overlapping/);
    expect(() => mem.registerMmio(MMIO + 0x2000, 0x1000, recorder())).not.toThrow();
  });
});

describe('sparse RAM', () => {
  it('untouched RAM reads zero and allocates nothing', () => {
    const mem = machine();
    const out = word();
    for (const pa of [RAM_A, RAM_A + 0x1238, RAM_A_END - 8, RAM_B, RAM_C, 2 ** 52 - 8]) {
      expect(mem.load64(pa, out)).toBe(ACCESS_OK);
      expect(out).toEqual({ lo: 0, hi: 0 });
      out.lo = out.hi = 0xdead_beef;
      expect(mem.read32(pa + 4)).toBe(0);
      expect(mem.read8(pa + 3)).toBe(0);
      expect(mem.peek64(pa)).toEqual({ lo: 0, hi: 0 });
    }
    const frame = mem.frameForRead(RAM_A + 0x5000);
    expect(frame?.length).toBe(FRAME_SIZE / 4);
    expect(frame?.every((w) => w === 0)).toBe(true);
    expect(mem.zero(RAM_A, 64 * 1024)).toBe(ACCESS_OK);
    expect(mem.allocatedFrames).toBe(0);
  });

  it('the first write to a frame allocates exactly one frame', () => {
    const mem = machine();
    expect(mem.store64(RAM_A + 0x10, 0, 0)).toBe(ACCESS_OK); // even a zero store
    expect(mem.allocatedFrames).toBe(1);
    expect(mem.store64(RAM_A + 0xff8, 1, 2)).toBe(ACCESS_OK);
    expect(mem.write32(RAM_A + 0x20, 3)).toBe(ACCESS_OK);
    expect(mem.write8(RAM_A + 0x31, 4)).toBe(ACCESS_OK);
    expect(mem.allocatedFrames).toBe(1);
    expect(mem.write32(RAM_A + 0x1000, 1)).toBe(ACCESS_OK);
    expect(mem.allocatedFrames).toBe(2);
    expect(mem.write8(RAM_A + 16 * MiB + 1, 1)).toBe(ACCESS_OK); // a different 16 MiB chunk
    expect(mem.allocatedFrames).toBe(3);
    expect(mem.store64(RAM_C, 1, 1)).toBe(ACCESS_OK);
    expect(mem.allocatedFrames).toBe(4);
    // Frames with data are returned for reading; untouched RAM still reads as zero.
    expect(mem.frameForRead(RAM_A + 0xff8)?.[0x3fe]).toBe(1);
    expect(mem.read32(RAM_A + 0x2000)).toBe(0);
    expect(mem.allocatedFrames).toBe(4);
  });

  it('non-RAM has no frame', () => {
    const mem = machine();
    expect(mem.frameForRead(MMIO)).toBeUndefined();
    expect(mem.frameForRead(0)).toBeUndefined();
    expect(mem.frameForRead(RAM_A_END)).toBeUndefined();
  });
});

describe('64-bit and 32-bit access', () => {
  it('store64/load64 round trip at frame edges and across regions', () => {
    const mem = machine();
    const out = word();
    const cases: [number, number, number][] = [
      [RAM_A, 0x0123_4567, 0x89ab_cdef],
      [RAM_A + 0xff8, 0xffff_ffff, 0x8000_0000],
      [RAM_A + 0x1000, 0x1, 0x2],
      [RAM_A_END - 8, 0xcafe_f00d, 0x7fff_ffff],
      [RAM_B, 0x1111_1111, 0x2222_2222],
      [RAM_B + 64 * MiB - 8, 0x3333_3333, 0x4444_4444],
      [RAM_C, 0x5555_5555, 0x6666_6666],
      [2 ** 52 - 8, 0x7777_7777, 0x8888_8888],
    ];
    for (const [pa, lo, hi] of cases) expect(mem.store64(pa, lo, hi)).toBe(ACCESS_OK);
    for (const [pa, lo, hi] of cases) {
      expect(mem.load64(pa, out)).toBe(ACCESS_OK);
      expect(out).toEqual({ lo, hi });
      expect(mem.read32(pa)).toBe(lo);
      expect(mem.read32(pa + 4)).toBe(hi);
      // Little-endian bytes.
      for (let b = 0; b < 4; b++) {
        expect(mem.read8(pa + b)).toBe((lo >>> (8 * b)) & 0xff);
        expect(mem.read8(pa + 4 + b)).toBe((hi >>> (8 * b)) & 0xff);
      }
    }
    // Neighbours were not disturbed.
    expect(mem.peek64(RAM_A + 0xff0)).toEqual({ lo: 0, hi: 0 });
    expect(mem.peek64(RAM_A + 0x1008)).toEqual({ lo: 0, hi: 0 });
  });

  it('negative and oversized inputs are stored as unsigned 32-bit halves', () => {
    const mem = machine();
    expect(mem.store64(RAM_A, -1, -2)).toBe(ACCESS_OK);
    expect(mem.peek64(RAM_A)).toEqual({ lo: 0xffff_ffff, hi: 0xffff_fffe });
    expect(mem.write32(RAM_A + 8, -1)).toBe(ACCESS_OK);
    expect(mem.read32(RAM_A + 8)).toBe(0xffff_ffff);
  });

  it('addresses above 2^32 do not alias lower ones (and near 2^52)', () => {
    const mem = new PhysicalMemory([
      { name: 'low', kind: 'ram', base: 0, size: MiB },
      { name: 'high', kind: 'ram', base: 2 ** 32, size: MiB },
      { name: 'top', kind: 'ram', base: 2 ** 52 - MiB, size: MiB },
      { name: 'top-32', kind: 'ram', base: 2 ** 52 - 2 ** 32 - MiB, size: MiB },
    ]);
    mem.store64(0x1000, 1, 0);
    mem.store64(2 ** 32 + 0x1000, 2, 0);
    mem.store64(2 ** 52 - 0x1000, 3, 0);
    mem.store64(2 ** 52 - 2 ** 32 - 0x1000, 4, 0);
    expect(mem.peek64(0x1000).lo).toBe(1);
    expect(mem.peek64(2 ** 32 + 0x1000).lo).toBe(2);
    expect(mem.peek64(2 ** 52 - 0x1000).lo).toBe(3);
    expect(mem.peek64(2 ** 52 - 2 ** 32 - 0x1000).lo).toBe(4);
    expect(mem.allocatedFrames).toBe(4);
  });

  it('random stores read back like a Map model', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            region: fc.constantFrom(RAM_A, RAM_B, RAM_C),
            slot: fc.nat({ max: 2 * MiB / 8 - 1 }),
            lo: fc.nat({ max: 0xffff_ffff }),
            hi: fc.nat({ max: 0xffff_ffff }),
            narrow: fc.boolean(),
          }),
          { maxLength: 60 },
        ),
        (ops) => {
          const mem = machine();
          const model = new Map<number, [number, number]>();
          for (const { region, slot, lo, hi, narrow } of ops) {
            const pa = region + slot * 8;
            if (narrow) {
              expect(mem.write32(pa + 4, hi)).toBe(ACCESS_OK);
              const old = model.get(pa) ?? [0, 0];
              model.set(pa, [old[0], hi]);
            } else {
              expect(mem.store64(pa, lo, hi)).toBe(ACCESS_OK);
              model.set(pa, [lo, hi]);
            }
          }
          for (const [pa, [lo, hi]] of model) expect(mem.peek64(pa)).toEqual({ lo, hi });
          const frames = new Set([...model.keys()].map((pa) => Math.floor(pa / FRAME_SIZE)));
          expect(mem.allocatedFrames).toBe(frames.size);
        },
      ),
      { numRuns: 100 },
    );
  });
});

describe('aborts (never throw)', () => {
  it('misaligned accesses abort and allocate nothing', () => {
    const mem = machine();
    const out = word();
    for (const off of [1, 2, 4, 7]) {
      expect(mem.load64(RAM_A + off, out)).toBe(ACCESS_EXTERNAL_ABORT);
      expect(mem.store64(RAM_A + off, 1, 1)).toBe(ACCESS_EXTERNAL_ABORT);
    }
    for (const off of [1, 2, 3]) {
      expect(mem.read32(RAM_A + off)).toBe(READ_ABORT);
      expect(mem.write32(RAM_A + off, 1)).toBe(ACCESS_EXTERNAL_ABORT);
    }
    expect(out).toEqual({ lo: 0xdead_beef, hi: 0xdead_beef });
    expect(mem.allocatedFrames).toBe(0);
  });

  it('accesses outside every region abort', () => {
    const mem = machine();
    const out = word();
    for (const pa of [0, 0x1000, RAM_A - 8, RAM_A_END, RAM_B - 8, RAM_B + 64 * MiB, RAM_C - 8, 2 ** 52, 2 ** 53 - 8, 0x8_0000_0000]) {
      expect(mem.load64(pa, out)).toBe(ACCESS_EXTERNAL_ABORT);
      expect(mem.store64(pa, 1, 2)).toBe(ACCESS_EXTERNAL_ABORT);
      expect(mem.read32(pa)).toBe(READ_ABORT);
      expect(mem.write32(pa, 1)).toBe(ACCESS_EXTERNAL_ABORT);
      expect(mem.read8(pa + 1)).toBe(READ_ABORT);
      expect(mem.write8(pa + 1, 1)).toBe(ACCESS_EXTERNAL_ABORT);
      expect(mem.zero(pa, 8)).toBe(ACCESS_EXTERNAL_ABORT);
      expect(mem.peek64(pa)).toEqual({ lo: 0, hi: 0 });
    }
    expect(out).toEqual({ lo: 0xdead_beef, hi: 0xdead_beef });
    expect(mem.allocatedFrames).toBe(0);
  });

  it('MMIO without a handler aborts', () => {
    const mem = machine();
    const out = word();
    expect(mem.load64(MMIO, out)).toBe(ACCESS_EXTERNAL_ABORT);
    expect(mem.store64(MMIO, 1, 1)).toBe(ACCESS_EXTERNAL_ABORT);
    expect(mem.read32(MMIO + 4)).toBe(READ_ABORT);
    expect(mem.write32(MMIO + 4, 1)).toBe(ACCESS_EXTERNAL_ABORT);
    expect(mem.read8(MMIO + 1)).toBe(READ_ABORT);
  });
});

describe('MMIO routing', () => {
  it('32-bit accesses reach the handler with offsets relative to its base', () => {
    const mem = machine();
    const h = recorder();
    mem.registerMmio(MMIO + 0x1_0000, 0x1000, h);
    expect(mem.read32(MMIO + 0x1_0010)).toBe(0x1000_0010);
    expect(mem.write32(MMIO + 0x1_0020, 0xffff_ffff)).toBe(ACCESS_OK);
    expect(mem.read32(MMIO + 0x1_0020)).toBe(0xffff_ffff);
    expect(h.log).toEqual([
      { op: 'r32', offset: 0x10 },
      { op: 'w32', offset: 0x20, value: 0xffff_ffff },
      { op: 'r32', offset: 0x20 },
    ]);
    // Inside the MMIO region but outside the handler: abort, handler untouched.
    expect(mem.read32(MMIO + 0x1_1000)).toBe(READ_ABORT);
    expect(mem.read32(MMIO + 0xfffc)).toBe(READ_ABORT);
    expect(h.log.length).toBe(3);
    expect(mem.allocatedFrames).toBe(0);
  });

  it('64-bit accesses split into two 32-bit accesses, low word first', () => {
    const mem = machine();
    const h = recorder();
    mem.registerMmio(MMIO, 0x1000, h);
    const out = word();
    expect(mem.load64(MMIO + 0x40, out)).toBe(ACCESS_OK);
    expect(out).toEqual({ lo: 0x1000_0040, hi: 0x1000_0044 });
    expect(mem.store64(MMIO + 0x80, 0x1234_5678, 0x9abc_def0)).toBe(ACCESS_OK);
    expect(h.log).toEqual([
      { op: 'r32', offset: 0x40 },
      { op: 'r32', offset: 0x44 },
      { op: 'w32', offset: 0x80, value: 0x1234_5678 },
      { op: 'w32', offset: 0x84, value: 0x9abc_def0 },
    ]);
    expect(mem.peek64(MMIO + 0x80)).toEqual({ lo: 0x1234_5678, hi: 0x9abc_def0 });
  });

  it('a refused half aborts the 64-bit access', () => {
    const mem = machine();
    const h = recorder({ abortAt: 0x44 });
    mem.registerMmio(MMIO, 0x1000, h);
    const out = word();
    expect(mem.load64(MMIO + 0x40, out)).toBe(ACCESS_EXTERNAL_ABORT);
    expect(out).toEqual({ lo: 0xdead_beef, hi: 0xdead_beef });
    expect(mem.store64(MMIO + 0x40, 1, 2)).toBe(ACCESS_EXTERNAL_ABORT);
    const h2 = recorder({ abortAt: 0x40 });
    const mem2 = machine();
    mem2.registerMmio(MMIO, 0x1000, h2);
    expect(mem2.store64(MMIO + 0x40, 1, 2)).toBe(ACCESS_EXTERNAL_ABORT);
    // The high half is not written after the low half was refused.
    expect(h2.log).toEqual([{ op: 'w32', offset: 0x40, value: 1 }]);
    expect(mem2.write32(MMIO + 0x40, 5)).toBe(ACCESS_EXTERNAL_ABORT);
  });

  it('native 64-bit handlers are used when present', () => {
    const mem = machine();
    const h = recorder({ native64: true });
    mem.registerMmio(MMIO + 0x2000, 0x1000, h);
    const out = word();
    expect(mem.load64(MMIO + 0x2008, out)).toBe(ACCESS_OK);
    expect(out).toEqual({ lo: 0xaaaa_0008, hi: 0xbbbb_0000 });
    expect(mem.store64(MMIO + 0x2010, -1, 7)).toBe(ACCESS_OK);
    expect(h.log).toEqual([
      { op: 'r64', offset: 8 },
      { op: 'w64', offset: 0x10, value: 7 * 2 ** 32 + 0xffff_ffff },
    ]);
  });

  it('byte reads use the 32-bit register; byte writes to MMIO abort', () => {
    const mem = machine();
    const h = recorder();
    h.regs.set(0x10, 0x4433_2211);
    mem.registerMmio(MMIO, 0x1000, h);
    expect(mem.read8(MMIO + 0x10)).toBe(0x11);
    expect(mem.read8(MMIO + 0x13)).toBe(0x44);
    expect(mem.write8(MMIO + 0x11, 0xff)).toBe(ACCESS_EXTERNAL_ABORT);
    expect(h.log.filter((a) => a.op === 'w32')).toEqual([]);
    expect(h.regs.get(0x10)).toBe(0x4433_2211);
  });

  it('MMIO stores are not RAM: no frames, no store observer calls', () => {
    const mem = machine();
    mem.registerMmio(MMIO, 0x1000, recorder());
    const seen: number[] = [];
    mem.storeObserver = (pa) => seen.push(pa);
    mem.store64(MMIO, 1, 2);
    mem.write32(MMIO + 8, 3);
    expect(seen).toEqual([]);
    expect(mem.allocatedFrames).toBe(0);
  });
});

describe('bytes', () => {
  it('read8/write8 are little-endian and preserve neighbours', () => {
    const mem = machine();
    const pa = RAM_A + 0x100;
    mem.store64(pa, 0x4433_2211, 0x8877_6655);
    expect(mem.write8(pa + 1, 0xaa)).toBe(ACCESS_OK);
    expect(mem.write8(pa + 6, 0x1bb)).toBe(ACCESS_OK); // masked to 8 bits
    expect(mem.peek64(pa)).toEqual({ lo: 0x4433_aa11, hi: 0x88bb_6655 });
    for (let i = 0; i < 8; i++) expect(mem.read8(pa + i)).toBe([0x11, 0xaa, 0x33, 0x44, 0x55, 0x66, 0xbb, 0x88][i]);
    expect(mem.write8(pa + 3, 0xff)).toBe(ACCESS_OK);
    expect(mem.read32(pa)).toBe(0xff33_aa11);
  });
});

describe('zero()', () => {
  it('zeroes exactly [pa, pa + size) across frames', () => {
    const mem = machine();
    const base = RAM_A + 0x10000;
    for (let a = base; a < base + 3 * FRAME_SIZE; a += 8) mem.store64(a, a >>> 0, 0x5a5a_5a5a);
    const start = base + FRAME_SIZE - 0x40;
    const size = FRAME_SIZE + 0x80;
    expect(mem.zero(start, size)).toBe(ACCESS_OK);
    for (let a = base; a < base + 3 * FRAME_SIZE; a += 8) {
      const want = a >= start && a < start + size ? { lo: 0, hi: 0 } : { lo: a >>> 0, hi: 0x5a5a_5a5a };
      if (mem.peek64(a).lo !== want.lo || mem.peek64(a).hi !== want.hi) expect([a.toString(16), mem.peek64(a)]).toEqual([a.toString(16), want]);
    }
    expect(mem.allocatedFrames).toBe(3);
  });

  it('refuses ranges that are not entirely inside one RAM region', () => {
    const mem = machine();
    mem.store64(RAM_A_END - 8, 1, 1);
    expect(mem.zero(RAM_A_END - 8, 16)).toBe(ACCESS_EXTERNAL_ABORT);
    expect(mem.peek64(RAM_A_END - 8)).toEqual({ lo: 1, hi: 1 });
    expect(mem.zero(MMIO, 8)).toBe(ACCESS_EXTERNAL_ABORT);
    expect(mem.zero(RAM_A - 8, 16)).toBe(ACCESS_EXTERNAL_ABORT);
  });

  it('never touches bytes outside the range: misaligned requests abort instead', () => {
    const mem = machine();
    const pa = RAM_A + 0x6000;
    mem.store64(pa, 0x1111_1111, 0x2222_2222);
    mem.store64(pa + 8, 0x3333_3333, 0x4444_4444);
    // A 4-byte request must not clear the neighbouring word, and a misaligned start must not
    // report success while leaving the range untouched: both abort like misaligned 64-bit stores.
    expect(mem.zero(pa, 4)).toBe(ACCESS_EXTERNAL_ABORT);
    expect(mem.zero(pa + 12, 4)).toBe(ACCESS_EXTERNAL_ABORT);
    expect(mem.zero(pa + 4, 8)).toBe(ACCESS_EXTERNAL_ABORT);
    expect(mem.peek64(pa)).toEqual({ lo: 0x1111_1111, hi: 0x2222_2222 });
    expect(mem.peek64(pa + 8)).toEqual({ lo: 0x3333_3333, hi: 0x4444_4444 });
  });

  it('zeroing untouched memory allocates nothing', () => {
    const mem = machine();
    mem.store64(RAM_A + 0x3000, 1, 0);
    expect(mem.zero(RAM_A, 16 * FRAME_SIZE)).toBe(ACCESS_OK);
    expect(mem.allocatedFrames).toBe(1);
    expect(mem.peek64(RAM_A + 0x3000)).toEqual({ lo: 0, hi: 0 });
  });
});

describe('storeObserver', () => {
  it('sees old and new 64-bit contents for every RAM store', () => {
    const mem = machine();
    const seen: [number, number, number, number, number][] = [];
    mem.storeObserver = (pa, oldLo, oldHi, newLo, newHi) => seen.push([pa, oldLo, oldHi, newLo, newHi]);
    const pa = RAM_A + 0x2000;
    mem.store64(pa, 0x1111_1111, 0x2222_2222);
    mem.store64(pa, -1, 0x3333_3333);
    mem.write32(pa + 4, 0x4444_4444);
    mem.write32(pa, 0x5555_5555);
    mem.write8(pa + 7, 0x99);
    mem.store64(pa + 8, 0, 0);
    expect(seen).toEqual([
      [pa, 0, 0, 0x1111_1111, 0x2222_2222],
      [pa, 0x1111_1111, 0x2222_2222, 0xffff_ffff, 0x3333_3333],
      [pa, 0xffff_ffff, 0x3333_3333, 0xffff_ffff, 0x4444_4444],
      [pa, 0xffff_ffff, 0x4444_4444, 0x5555_5555, 0x4444_4444],
      [pa, 0x5555_5555, 0x4444_4444, 0x5555_5555, 0x9944_4444],
      [pa + 8, 0, 0, 0, 0],
    ]);
  });

  it('sees zero() clear each non-zero word, and nothing for zero words', () => {
    const mem = machine();
    const pa = RAM_A + 0x4000;
    mem.store64(pa + 0x10, 7, 8);
    mem.store64(pa + 0x28, 0, 9);
    const seen: [number, number, number, number, number][] = [];
    mem.storeObserver = (p, oldLo, oldHi, newLo, newHi) => seen.push([p, oldLo, oldHi, newLo, newHi]);
    expect(mem.zero(pa, FRAME_SIZE)).toBe(ACCESS_OK);
    expect(seen).toEqual([
      [pa + 0x10, 7, 8, 0, 0],
      [pa + 0x28, 0, 9, 0, 0],
    ]);
  });

  it('aborted stores are not observed; null observer is silent', () => {
    const mem = machine();
    const seen: number[] = [];
    mem.storeObserver = (p) => seen.push(p);
    mem.store64(RAM_A + 4, 1, 1);
    mem.store64(0, 1, 1);
    mem.write32(RAM_A + 2, 1);
    expect(seen).toEqual([]);
    mem.storeObserver = null;
    expect(mem.store64(RAM_A, 1, 1)).toBe(ACCESS_OK);
    expect(seen).toEqual([]);
  });
});
