import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { EEXIST, EINVAL } from '../arch/errno.js';
import { PhysicalMemory } from '../arch/physical-memory.js';
import { PagePool } from './page-allocator.js';
import {
  type IommuIotlbGather,
  type IommuDomainLike,
  ULONG_MAX,
  and53,
  andNot53,
  ffs53,
  fls53,
  iommuIotlbGatherAddPage,
  iommuIotlbGatherInit,
  iommuIotlbGatherIsDisjoint,
  iommuIotlbGatherQueued,
  iommuIotlbSync,
  iommuMap,
  iommuPgsize,
  iommuUnmap,
  or53,
  xor53,
} from './iotlb-gather.js';
import {
  IOMMU_READ,
  IOMMU_WRITE,
  IO_PGTABLE_QUIRK_NO_WARN,
  SZ_16K,
  SZ_1G,
  SZ_2M,
  SZ_32M,
  SZ_4K,
  SZ_4T,
  SZ_512M,
  SZ_64K,
  type IoPgtableArm,
  allocIoPgtableArmS2,
} from './io-pgtable-arm.js';

interface SyncRecord {
  start: number;
  end: number;
  pgsize: number;
}

/** A driver domain that records what each iotlb_sync flushed. */
function recordingDomain(): { domain: { iotlbSync(g: IommuIotlbGather): void }; syncs: SyncRecord[] } {
  const syncs: SyncRecord[] = [];
  return { domain: { iotlbSync: (g) => syncs.push({ start: g.start, end: g.end, pgsize: g.pgsize }) }, syncs };
}

describe('53-bit helpers', () => {
  it('operate on both halves of values above 2^32', () => {
    const a = 2 ** 51 + 2 ** 40 + 0xf0;
    const b = 2 ** 40 + 0x3c;
    expect(and53(a, b)).toBe(2 ** 40 + 0x30);
    expect(or53(a, b)).toBe(2 ** 51 + 2 ** 40 + 0xfc);
    expect(xor53(a, b)).toBe(2 ** 51 + 0xcc);
    expect(andNot53(a, b)).toBe(2 ** 51 + 0xc0);
    expect(fls53(a)).toBe(51);
    expect(ffs53(2 ** 44 + 2 ** 33)).toBe(33);
    expect(ffs53(0x8000_0000)).toBe(31);
    expect(fls53(0)).toBe(-1);
    expect(ffs53(0)).toBe(-1);
  });
});

describe('iommu_iotlb_gather (§3.8)', () => {
  it('starts empty: start = ULONG_MAX, end = 0, pgsize = 0, not queued', () => {
    const g = iommuIotlbGatherInit();
    expect(g).toEqual({ start: ULONG_MAX, end: 0, pgsize: 0, freelist: [], queued: false });
    expect(iommuIotlbGatherQueued(null)).toBe(false);
    expect(iommuIotlbGatherQueued({ ...g, queued: true })).toBe(true);
  });

  it('merges adjacent pages on either side without syncing', () => {
    const { domain, syncs } = recordingDomain();
    const g = iommuIotlbGatherInit();
    iommuIotlbGatherAddPage(domain, g, 0x5000, SZ_4K);
    iommuIotlbGatherAddPage(domain, g, 0x6000, SZ_4K);
    iommuIotlbGatherAddPage(domain, g, 0x4000, SZ_4K);
    expect(syncs).toEqual([]);
    expect([g.start, g.end, g.pgsize]).toEqual([0x4000, 0x6fff, SZ_4K]);
  });

  it('merges overlapping pages without syncing', () => {
    const { domain, syncs } = recordingDomain();
    const g = iommuIotlbGatherInit();
    iommuIotlbGatherAddPage(domain, g, 0x5000, SZ_4K);
    iommuIotlbGatherAddPage(domain, g, 0x5000, SZ_4K);
    expect(syncs).toEqual([]);
    expect([g.start, g.end]).toEqual([0x5000, 0x5fff]);
  });

  it('a one-byte gap above forces a sync of what was gathered', () => {
    const { domain, syncs } = recordingDomain();
    const g = iommuIotlbGatherInit();
    iommuIotlbGatherAddPage(domain, g, 0x5000, SZ_4K);
    expect(iommuIotlbGatherIsDisjoint(g, 0x6000, SZ_4K)).toBe(false);
    expect(iommuIotlbGatherIsDisjoint(g, 0x6001, SZ_4K)).toBe(true);
    iommuIotlbGatherAddPage(domain, g, 0x6001, SZ_4K);
    expect(syncs).toEqual([{ start: 0x5000, end: 0x5fff, pgsize: SZ_4K }]);
    expect([g.start, g.end, g.pgsize]).toEqual([0x6001, 0x7000, SZ_4K]);
  });

  it('a one-byte gap below forces a sync too', () => {
    const { domain, syncs } = recordingDomain();
    const g = iommuIotlbGatherInit();
    iommuIotlbGatherAddPage(domain, g, 0x5000, SZ_4K);
    expect(iommuIotlbGatherIsDisjoint(g, 0x4000, SZ_4K)).toBe(false);
    expect(iommuIotlbGatherIsDisjoint(g, 0x3fff, SZ_4K)).toBe(true);
    iommuIotlbGatherAddPage(domain, g, 0x3fff, SZ_4K);
    expect(syncs).toHaveLength(1);
    expect([g.start, g.end]).toEqual([0x3fff, 0x4ffe]);
  });

  it('a page-size change forces a sync even when adjacent', () => {
    const { domain, syncs } = recordingDomain();
    const g = iommuIotlbGatherInit();
    iommuIotlbGatherAddPage(domain, g, 0x1f_f000, SZ_4K);
    iommuIotlbGatherAddPage(domain, g, 0x20_0000, SZ_2M);
    expect(syncs).toEqual([{ start: 0x1f_f000, end: 0x1f_ffff, pgsize: SZ_4K }]);
    expect([g.start, g.end, g.pgsize]).toEqual([0x20_0000, 0x3f_ffff, SZ_2M]);
  });

  it('sync re-initialises the whole gather, queued flag included', () => {
    const { domain, syncs } = recordingDomain();
    const g = iommuIotlbGatherInit();
    iommuIotlbGatherAddPage(domain, g, 0x1000, SZ_4K);
    g.queued = true;
    g.freelist.push(0x8000_0000);
    iommuIotlbSync(domain, g);
    expect(syncs).toHaveLength(1);
    expect(g).toEqual({ start: ULONG_MAX, end: 0, pgsize: 0, freelist: [], queued: false });
  });

  it('keeps exact ranges for addresses near 2^52', () => {
    const { domain, syncs } = recordingDomain();
    const g = iommuIotlbGatherInit();
    const base = 2 ** 52 - 4 * SZ_64K;
    iommuIotlbGatherAddPage(domain, g, base + SZ_64K, SZ_64K);
    iommuIotlbGatherAddPage(domain, g, base, SZ_64K);
    iommuIotlbGatherAddPage(domain, g, base + 2 * SZ_64K, SZ_64K);
    expect(syncs).toEqual([]);
    expect([g.start, g.end]).toEqual([base, base + 3 * SZ_64K - 1]);
    iommuIotlbGatherAddPage(domain, g, base + 3 * SZ_64K + SZ_4K, SZ_64K);
    expect(syncs).toEqual([{ start: base, end: base + 3 * SZ_64K - 1, pgsize: SZ_64K }]);
  });
});

/**
 * Reference for iommu_pgsize written with division and remainders only: the largest supported
 * size that fits and divides both addresses; then, if the next larger size keeps IOVA and PA at
 * the same offset and a whole one fits after the next boundary, stop at that boundary.
 */
function pgsizeReference(bitmap: number, iova: number, paddr: number, size: number): { pgsize: number; count: number } {
  const sizes: number[] = [];
  for (let b = 0; b <= 52; b++) if (Math.floor(bitmap / 2 ** b) % 2 === 1) sizes.push(2 ** b);
  let pgsize = 0;
  for (const s of sizes) if (s <= size && iova % s === 0 && paddr % s === 0) pgsize = s;
  const next = sizes.find((s) => s > pgsize);
  let limit = size;
  if (next !== undefined && iova % next === paddr % next) {
    const toBoundary = next - (iova % next);
    if (toBoundary + next <= size) limit = toBoundary;
  }
  return { pgsize, count: Math.floor(limit / pgsize) };
}

const COMMON_BITMAPS = [SZ_4K + SZ_2M + SZ_1G, SZ_16K + SZ_32M, SZ_64K + SZ_512M, SZ_64K + SZ_512M + SZ_4T, SZ_4K + SZ_64K + SZ_2M + SZ_32M + SZ_1G];

const arbBitmap = fc.oneof(
  fc.constantFrom(...COMMON_BITMAPS),
  // Any set of sizes between 4K and 4T that includes 4K, so 4K-aligned inputs always fit.
  fc.array(fc.integer({ min: 13, max: 42 }), { maxLength: 6 }).map((bs) => [...new Set(bs)].reduce((m, b) => m + 2 ** b, SZ_4K)),
);

/** An address below 2^52 aligned to 2^shift, with shift biased toward the page sizes. */
function arbAddr(minShift: number): fc.Arbitrary<number> {
  return fc.tuple(fc.maxSafeNat(), fc.oneof(fc.integer({ min: minShift, max: 51 }), fc.constantFrom(12, 14, 16, 21, 25, 29, 30, 42))).map(([x, shift]) => {
    const v = x % 2 ** 52;
    const s = Math.max(shift, minShift);
    return v - (v % 2 ** s);
  });
}

describe('iommu_pgsize (§3.8)', () => {
  it('matches a division-based reference for addresses and sizes up to 2^52', () => {
    const arbCase = arbBitmap.chain((bitmap) => {
      const minShift = ffs53(bitmap);
      const min = 2 ** minShift;
      return fc.record({
        bitmap: fc.constant(bitmap),
        iova: arbAddr(minShift),
        // Same offset inside a large size half of the time, so the "next size" branch is taken.
        paddr: fc.oneof(arbAddr(minShift), fc.tuple(arbAddr(minShift), fc.constantFrom(21, 25, 29, 30, 42)).map(([p, s]) => p - (p % 2 ** s))),
        size: fc.oneof(fc.integer({ min: 1, max: 4096 }).map((k) => k * min), fc.maxSafeNat().map((x) => Math.max(min, (x % 2 ** 46) - ((x % 2 ** 46) % min)))),
        sameOffset: fc.boolean(),
      });
    });
    fc.assert(
      fc.property(arbCase, ({ bitmap, iova, paddr, size, sameOffset }) => {
        let pa = paddr;
        if (sameOffset) {
          const span = 2 ** Math.min(fls53(bitmap), 51);
          pa = paddr - (paddr % span) + (iova % span);
          if (pa >= 2 ** 52) pa -= span;
        }
        expect(iommuPgsize(bitmap, iova, pa, size)).toEqual(pgsizeReference(bitmap, iova, pa, size));
      }),
      { numRuns: 2000 },
    );
  });

  it('picks the largest aligned size, then stops at the next larger boundary', () => {
    const bm = SZ_4K + SZ_2M + SZ_1G;
    // 4K-aligned start, same offset in 2M: 4K pages up to the 2M boundary.
    expect(iommuPgsize(bm, 0x1f_c000, 0x40_1f_c000, 0x40_0000)).toEqual({ pgsize: SZ_4K, count: 4 });
    // Different offsets inside 2M: no point stopping, all in 4K pages.
    expect(iommuPgsize(bm, 0x1000, 0x2000, 0x40_0000)).toEqual({ pgsize: SZ_4K, count: 0x400 });
    // Not enough left for a whole 2M after the boundary: keep going in 4K pages.
    expect(iommuPgsize(bm, 0x1ff000, 0x1ff000, 0x1000 + SZ_2M - 0x1000)).toEqual({ pgsize: SZ_4K, count: 0x200 });
    // Fully aligned above 2^32.
    expect(iommuPgsize(bm, 7 * SZ_1G, 9 * SZ_1G, 3 * SZ_1G + SZ_2M)).toEqual({ pgsize: SZ_1G, count: 3 });
    // 4T pages of the 64K granule at 52-bit addresses.
    expect(iommuPgsize(SZ_64K + SZ_512M + SZ_4T, 2 ** 51, 2 ** 51 + SZ_4T, 2 * SZ_4T)).toEqual({ pgsize: SZ_4T, count: 2 });
  });

  it('test_pgsize_boundary (§5): 0xfef80000..0xfef9ffff -> 0x208b95d000 is 32 4K pages', () => {
    expect(iommuPgsize(SZ_4K + SZ_2M + SZ_1G, 0xfef8_0000, 0x20_8b95_d000, 0x2_0000)).toEqual({ pgsize: SZ_4K, count: 32 });
  });
});

// --- The core's map loop over a real S2 table (§3.8, §5) ---

interface MapCall {
  iova: number;
  pgsize: number;
  pgcount: number;
}

function s2Domain(): { pt: IoPgtableArm; domain: IommuDomainLike; calls: MapCall[]; pool: PagePool } {
  const memory = new PhysicalMemory([{ name: 'ram', kind: 'ram', base: 0x4000_0000, size: 0x400_0000 }]);
  const pool = new PagePool(memory, 0x4000_0000, 0x400_0000);
  const cfg = { quirks: IO_PGTABLE_QUIRK_NO_WARN, pgsizeBitmap: SZ_4K + SZ_2M + SZ_1G, ias: 48, oas: 48, coherentWalk: true, tlb: null };
  const pt = allocIoPgtableArmS2(cfg, memory, pool);
  if (pt === null) throw new Error('alloc failed');
  const calls: MapCall[] = [];
  const domain: IommuDomainLike = {
    pgsizeBitmap: cfg.pgsizeBitmap,
    ops: {
      mapPages: (iova, paddr, pgsize, pgcount, prot) => {
        calls.push({ iova, pgsize, pgcount });
        return pt.mapPages(iova, paddr, pgsize, pgcount, prot);
      },
      unmapPages: (iova, pgsize, pgcount, gather) => pt.unmapPages(iova, pgsize, pgcount, gather),
    },
  };
  return { pt, domain, calls, pool };
}

function leafSizes(pt: IoPgtableArm): number[] {
  const sizes: number[] = [];
  pt.walkTree({ leaf: (_iova, level) => sizes.push(pt.blockSize(level)) });
  return sizes;
}

describe('iommu map loop (§3.8) on ARM_64_LPAE_S2', () => {
  it('test_pgsize_boundary (§5): every page of the range translates', () => {
    const { pt, domain } = s2Domain();
    const iova = 0xfef8_0000;
    const pa = 0x20_8b95_d000;
    const len = 0xfef9_ffff - 0xfef8_0000 + 1;
    expect(iommuMap(domain, iova, pa, len, IOMMU_READ | IOMMU_WRITE)).toBe(0);
    for (let off = 0; off < len; off += SZ_4K) expect(pt.iovaToPhys(iova + off + 0x123)).toBe(pa + off + 0x123);
    expect(pt.iovaToPhys(iova + len)).toBe(0);
    expect(pt.iovaToPhys(iova - 1)).toBe(0);
    expect(leafSizes(pt)).toEqual(new Array<number>(32).fill(SZ_4K));
  });

  it('test_mixed (§5): exactly 20 entries, 14 x 2M, 3 x 1G, 3 x 2M', () => {
    const { pt, domain, calls } = s2Domain();
    const start = 0x3fe400 * SZ_4K;
    const end = 0x4c0600 * SZ_4K;
    expect(iommuMap(domain, start, start, end - start, IOMMU_READ | IOMMU_WRITE)).toBe(0);
    expect(calls.map((c) => [c.pgsize, c.pgcount])).toEqual([
      [SZ_2M, 14],
      [SZ_1G, 3],
      [SZ_2M, 3],
    ]);
    expect(leafSizes(pt)).toEqual([...new Array<number>(14).fill(SZ_2M), SZ_1G, SZ_1G, SZ_1G, SZ_2M, SZ_2M, SZ_2M]);
    for (const probe of [start, start + 0x12345, 0x4_0000_0000 + 0x1234_5678, end - 1]) expect(pt.iovaToPhys(probe)).toBe(probe);
    expect(pt.iovaToPhys(end)).toBe(0);
    expect(pt.iovaToPhys(start - 1)).toBe(0);
  });

  it('rejects ranges not aligned to the smallest page, and unrolls a map that fails part-way', () => {
    const { pt, domain, calls } = s2Domain();
    expect(iommuMap(domain, 0x1800, 0x1800, SZ_4K, IOMMU_READ)).toBe(-EINVAL);
    expect(calls).toEqual([]);
    // The page at 4M is taken; mapping [4M - 8K, 4M + 4K) maps two pages (end of that L3 table),
    // then fails on the third and must unmap the first two again.
    expect(iommuMap(domain, 0x40_0000, 0x40_0000, SZ_4K, IOMMU_READ)).toBe(0);
    const { domain: withSync, syncs } = (() => {
      const r = recordingDomain();
      return { domain: { ...domain, iotlbSync: r.domain.iotlbSync }, syncs: r.syncs };
    })();
    calls.length = 0;
    expect(iommuMap(withSync, 0x3f_e000, 0x7f_e000, 0x3000, IOMMU_READ)).toBe(-EEXIST);
    expect(calls.map((c) => [c.iova, c.pgsize, c.pgcount])).toEqual([
      [0x3f_e000, SZ_4K, 3],
      [0x40_0000, SZ_4K, 1],
    ]);
    expect(pt.iovaToPhys(0x3f_e000)).toBe(0);
    expect(pt.iovaToPhys(0x3f_f000)).toBe(0);
    expect(pt.iovaToPhys(0x40_0000)).toBe(0x40_0000);
    expect(syncs).toHaveLength(1);
    expect(iommuUnmap(withSync, 0x40_0000, SZ_4K)).toBe(SZ_4K);
    expect(pt.iovaToPhys(0x40_0000)).toBe(0);
    expect(syncs).toHaveLength(2);
  });
});
