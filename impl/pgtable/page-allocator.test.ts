import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { PhysicalMemory } from '../arch/physical-memory.js';
import { PagePool } from './page-allocator.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const RAM = 0x4000_0000;
const POOL = RAM + 4 * MiB; // 1 MiB aligned
const POOL_SIZE = MiB;

function memory(): PhysicalMemory {
  return new PhysicalMemory([{ name: 'ram', kind: 'ram', base: RAM, size: 16 * MiB }]);
}

function pool(mem = memory(), base = POOL, size = POOL_SIZE): PagePool {
  return new PagePool(mem, base, size);
}

function roundUp(bytes: number): number {
  let s = 4096;
  while (s < bytes) s *= 2;
  return s;
}

function fill(mem: PhysicalMemory, pa: number, bytes: number, tag: number): void {
  for (let a = pa; a < pa + bytes; a += 8) mem.store64(a, tag, a >>> 0);
}

function allZero(mem: PhysicalMemory, pa: number, bytes: number): boolean {
  const out = { lo: 0, hi: 0 };
  for (let a = pa; a < pa + bytes; a += 8) {
    mem.load64(a, out);
    if (out.lo !== 0 || out.hi !== 0) return false;
  }
  return true;
}

describe('PagePool construction', () => {
  it('rejects unaligned pools', () => {
    const mem = memory();
    expect(() => new PagePool(mem, POOL + 0x800, POOL_SIZE)).toThrow(/aligned/);
    expect(() => new PagePool(mem, POOL, POOL_SIZE + 0x800)).toThrow(/aligned/);
    expect(() => new PagePool(mem, POOL, 64 * KiB, 64 * KiB)).not.toThrow();
    expect(() => new PagePool(mem, POOL + 4096, 64 * KiB, 64 * KiB)).toThrow(/aligned/);
  });

  it('a fresh power-of-two pool is one block', () => {
    const p = pool();
    expect(p.freeBytes).toBe(POOL_SIZE);
    expect(p.allocatedBytes).toBe(0);
    expect(p.alloc(POOL_SIZE)).toBe(POOL);
    expect(p.alloc(4096)).toBeUndefined();
    expect(p.freeBytes).toBe(0);
    expect(p.liveBlocks()).toEqual([[POOL, POOL_SIZE]]);
  });

  it('an unaligned range is tiled with naturally aligned blocks and never grows past its ends', () => {
    const mem = memory();
    // [0x1000, 0x8000) relative: 4K @0x1000, 8K @0x2000, 16K @0x4000.
    const p = new PagePool(mem, POOL + 0x1000, 0x7000);
    expect(p.alloc(32 * KiB)).toBeUndefined();
    expect(p.alloc(16 * KiB)).toBe(POOL + 0x4000);
    expect(p.alloc(16 * KiB)).toBeUndefined();
    expect(p.alloc(8 * KiB)).toBe(POOL + 0x2000);
    expect(p.alloc(4 * KiB)).toBe(POOL + 0x1000);
    expect(p.alloc(4 * KiB)).toBeUndefined();
    p.free(POOL + 0x1000, 4096);
    p.free(POOL + 0x2000, 8192);
    p.free(POOL + 0x4000, 16384);
    // Merging must not pull in the buddy at POOL + 0 (outside the pool): still no 32K block.
    expect(p.alloc(32 * KiB)).toBeUndefined();
    expect(p.alloc(4 * KiB)).toBe(POOL + 0x1000);
    expect(p.alloc(4 * KiB)).toBe(POOL + 0x2000);
    expect(p.freeBytes).toBe(0x5000);
  });
});

describe('PagePool allocation', () => {
  it('lowest address first, splitting larger blocks', () => {
    const p = pool();
    expect(p.alloc(4096)).toBe(POOL);
    expect(p.alloc(4096)).toBe(POOL + 0x1000);
    expect(p.alloc(8192)).toBe(POOL + 0x2000);
    expect(p.alloc(4096)).toBe(POOL + 0x4000);
    expect(p.alloc(16384)).toBe(POOL + 0x8000);
    expect(p.alloc(4096)).toBe(POOL + 0x5000);
    expect(p.allocatedBytes).toBe(4096 * 4 + 8192 + 16384);
  });

  it('mixed sizes are aligned to their (rounded-up) size and do not overlap', () => {
    const p = pool();
    const sizes = [4096, 16384, 8192, 65536, 12288, 4096, 32768, 1, 24576, 131072];
    const got: [number, number][] = [];
    for (const s of sizes) {
      const pa = p.alloc(s);
      expect(pa).toBeDefined();
      const bytes = roundUp(s);
      expect((pa as number) % bytes).toBe(0);
      expect(pa as number).toBeGreaterThanOrEqual(POOL);
      expect((pa as number) + bytes).toBeLessThanOrEqual(POOL + POOL_SIZE);
      got.push([pa as number, bytes]);
    }
    got.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < got.length; i++) expect((got[i] as [number, number])[0]).toBeGreaterThanOrEqual((got[i - 1] as [number, number])[0] + (got[i - 1] as [number, number])[1]);
    const total = sizes.map(roundUp).reduce((a, b) => a + b, 0);
    expect(p.allocatedBytes).toBe(total);
    expect(p.freeBytes).toBe(POOL_SIZE - total);
    expect(p.liveBlocks().sort((a, b) => a[0] - b[0])).toEqual(got);
  });

  it('owns() covers exactly the live blocks', () => {
    const p = pool();
    const a = p.alloc(8192) as number;
    const b = p.alloc(4096) as number;
    expect(p.owns(a)).toBe(true);
    expect(p.owns(a + 8191)).toBe(true);
    expect(p.owns(b + 4095)).toBe(true);
    expect(p.owns(b + 4096)).toBe(false);
    expect(p.owns(POOL - 1)).toBe(false);
    p.free(a, 8192);
    expect(p.owns(a)).toBe(false);
    expect(p.owns(b)).toBe(true);
  });

  it('memory is zeroed on allocation, including on reuse', () => {
    const mem = memory();
    const p = pool(mem);
    // Dirty memory the pool has never handed out.
    fill(mem, POOL, 3 * 4096, 0x1111);
    const a = p.alloc(8192) as number;
    expect(a).toBe(POOL);
    expect(allZero(mem, a, 8192)).toBe(true);
    fill(mem, a, 8192, 0x2222);
    p.free(a, 8192);
    const b = p.alloc(16384) as number;
    expect(b).toBe(POOL);
    expect(allZero(mem, b, 16384)).toBe(true);
    fill(mem, b, 16384, 0x3333);
    p.free(b, 16384);
    const c = p.alloc(4096) as number;
    expect(c).toBe(POOL);
    expect(allZero(mem, c, 4096)).toBe(true);
    // Memory next to the allocation is the caller's business: the freed-but-unallocated page keeps its data.
    expect(mem.peek64(POOL + 4096).lo).toBe(0x3333);
  });

  it('zeroes blocks that span adjacent RAM regions', () => {
    const mem = new PhysicalMemory([
      { name: 'ram-lo', kind: 'ram', base: POOL, size: POOL_SIZE / 2 },
      { name: 'ram-hi', kind: 'ram', base: POOL + POOL_SIZE / 2, size: POOL_SIZE / 2, nomap: true },
    ]);
    fill(mem, POOL + POOL_SIZE / 2 - 4096, 8192, 0x7777);
    const p = pool(mem);
    expect(p.alloc(POOL_SIZE)).toBe(POOL);
    expect(allZero(mem, POOL, POOL_SIZE)).toBe(true);
  });

  it('a pool that is not backed by RAM fails loudly instead of handing out unzeroed memory', () => {
    const mem = new PhysicalMemory([
      { name: 'ram', kind: 'ram', base: POOL, size: POOL_SIZE / 2 },
      { name: 'mmio', kind: 'mmio', base: POOL + POOL_SIZE / 2, size: POOL_SIZE / 2 },
    ]);
    const p = pool(mem);
    expect(p.alloc(4096)).toBe(POOL);
    expect(() => p.alloc(POOL_SIZE / 2)).toThrow(/not backed by RAM/);
  });

  it('exhaustion returns undefined (also when free space is fragmented)', () => {
    const p = pool();
    const pages: number[] = [];
    for (let i = 0; i < POOL_SIZE / 4096; i++) pages.push(p.alloc(4096) as number);
    expect(new Set(pages).size).toBe(256);
    expect(p.alloc(4096)).toBeUndefined();
    expect(p.alloc(2 * POOL_SIZE)).toBeUndefined();
    // Free every other page: half the pool is free but no 8K block exists.
    for (let i = 0; i < pages.length; i += 2) p.free(pages[i] as number, 4096);
    expect(p.freeBytes).toBe(POOL_SIZE / 2);
    expect(p.alloc(8192)).toBeUndefined();
    expect(p.alloc(4096)).toBe(POOL);
  });

  it('buddy merging restores one max-size block after freeing everything', () => {
    const p = pool();
    const pages: number[] = [];
    for (let i = 0; i < POOL_SIZE / 4096; i++) pages.push(p.alloc(4096) as number);
    // Free in a scrambled but deterministic order.
    const order = pages.map((pa, i) => [pa, (i * 97) % 256] as const).sort((a, b) => a[1] - b[1]);
    for (const [pa] of order) p.free(pa, 4096);
    expect(p.allocatedBytes).toBe(0);
    expect(p.alloc(POOL_SIZE)).toBe(POOL);
  });

  it('double free, wrong size and foreign addresses throw', () => {
    const p = pool();
    const a = p.alloc(8192) as number;
    expect(() => p.free(a, 4096)).toThrow(/not allocated/);
    expect(() => p.free(a + 4096, 4096)).toThrow(/not allocated/);
    expect(() => p.free(POOL + 0x10_0000, 4096)).toThrow(/not allocated/);
    p.free(a, 8192);
    expect(() => p.free(a, 8192)).toThrow(/not allocated/);
    // A size that rounds to the same order is accepted.
    const b = p.alloc(12288) as number;
    expect(() => p.free(b, 16384)).not.toThrow();
    expect(p.allocatedBytes).toBe(0);
  });

  it('works with a 64K page size', () => {
    const mem = memory();
    const p = new PagePool(mem, POOL, POOL_SIZE, 64 * KiB);
    expect(p.alloc(4096)).toBe(POOL); // rounded up to one 64K page
    expect(p.alloc(64 * KiB)).toBe(POOL + 64 * KiB);
    expect(p.alloc(128 * KiB)).toBe(POOL + 128 * KiB);
    expect(p.allocatedBytes).toBe(256 * KiB);
  });
});

describe('PagePool property: random alloc/free sequences', () => {
  type Op = { kind: 'alloc'; bytes: number } | { kind: 'free'; pick: number };
  const arbOp: fc.Arbitrary<Op> = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(4096, 4096, 8192, 12288, 16384, 32768, 65536, 131072, 262144, 1000).map((bytes) => ({ kind: 'alloc' as const, bytes })) },
    { weight: 2, arbitrary: fc.nat({ max: 1000 }).map((pick) => ({ kind: 'free' as const, pick })) },
  );

  it('never hands out overlapping or misaligned blocks, accounts bytes, and merges back', () => {
    fc.assert(
      fc.property(fc.array(arbOp, { maxLength: 120 }), (ops) => {
        const mem = memory();
        const p = pool(mem);
        const live = new Map<number, number>(); // pa -> requested bytes
        for (const op of ops) {
          if (op.kind === 'alloc') {
            const bytes = roundUp(op.bytes);
            const pa = p.alloc(op.bytes);
            if (pa === undefined) {
              // Exhaustion only when no aligned free run of that size exists.
              let possible = false;
              for (let cand = POOL; cand + bytes <= POOL + POOL_SIZE && !possible; cand += bytes) {
                possible = ![...live].some(([b, r]) => b < cand + bytes && cand < b + roundUp(r));
              }
              expect(possible).toBe(false);
              continue;
            }
            expect(pa % bytes).toBe(0);
            expect(pa).toBeGreaterThanOrEqual(POOL);
            expect(pa + bytes).toBeLessThanOrEqual(POOL + POOL_SIZE);
            for (const [b, r] of live) {
              const overlap = b < pa + bytes && pa < b + roundUp(r);
              if (overlap) expect([pa.toString(16), bytes, b.toString(16), roundUp(r)]).toEqual('no overlap');
            }
            expect(allZero(mem, pa, bytes)).toBe(true);
            fill(mem, pa, bytes, 0xabcd);
            live.set(pa, op.bytes);
          } else if (live.size > 0) {
            const entries = [...live];
            const [pa, bytes] = entries[op.pick % entries.length] as [number, number];
            p.free(pa, bytes);
            live.delete(pa);
            expect(() => p.free(pa, bytes)).toThrow();
          }
          const used = [...live.values()].map(roundUp).reduce((a, b) => a + b, 0);
          expect(p.allocatedBytes).toBe(used);
          expect(p.freeBytes).toBe(POOL_SIZE - used);
        }
        for (const [pa, bytes] of live) p.free(pa, bytes);
        expect(p.liveBlocks()).toEqual([]);
        expect(p.alloc(POOL_SIZE)).toBe(POOL);
      }),
      { numRuns: 60 },
    );
  });
});
