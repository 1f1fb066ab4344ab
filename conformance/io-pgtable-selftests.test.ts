/**
 * The io-pgtable-arm selftests (drivers/iommu/io-pgtable-arm-selftests.c), ported as facts from
 * stage2-pgtable.md §4 for the ARM_64_LPAE_S2 format: the harness of §4.1, the checks of §4.2 in
 * order, the removed "partial unmap" check (which current behaviour must fail and the historical
 * split-on-unmap must pass), the geometry table of §4.3, and the derived expectations of §4.2.
 */
import { describe, it, expect } from 'vitest';
import { checkStage2Config } from '../impl/arch/granule.js';
import { PhysicalMemory } from '../impl/arch/physical-memory.js';
import { PagePool } from '../impl/pgtable/page-allocator.js';
import { and53, fls53 } from '../impl/pgtable/iotlb-gather.js';
import {
  IOMMU_CACHE,
  IOMMU_NOEXEC,
  IOMMU_READ,
  IOMMU_WRITE,
  IO_PGTABLE_QUIRK_NO_WARN,
  SZ_16K,
  SZ_1G,
  SZ_2M,
  SZ_32M,
  SZ_4K,
  SZ_512M,
  SZ_64K,
  type IoPgtableArm,
  type IoPgtableCfg,
  type IommuFlushOps,
  allocIoPgtableArmS2,
} from '../impl/pgtable/io-pgtable-arm.js';

const PGSIZES: readonly [string, number][] = [
  ['4K', SZ_4K + SZ_2M + SZ_1G],
  ['16K', SZ_16K + SZ_32M],
  ['64K', SZ_64K + SZ_512M],
];
const ADDR_BITS = [32, 36, 40, 42, 44, 48] as const;

interface SelftestConfig {
  readonly gran: string;
  readonly bitmap: number;
  readonly ias: number;
  readonly oas: number;
}

/** §4.1: every bitmap × every (ias, oas) with ias ≤ oas ("ias > oas is not valid for stage-2"). */
const CONFIGS: SelftestConfig[] = PGSIZES.flatMap(([gran, bitmap]) => ADDR_BITS.flatMap((ias) => ADDR_BITS.filter((oas) => oas >= ias).map((oas) => ({ gran, bitmap, ias, oas }))));

type TlbCall = { op: 'all' } | { op: 'walk'; size: number } | { op: 'add'; gatherIsNull: boolean; granule: number };

interface Harness {
  readonly cfg: IoPgtableCfg;
  readonly memory: PhysicalMemory;
  readonly pool: PagePool;
  readonly calls: TlbCall[];
  /** The dummy ops' WARNs: a flushed or added size that is not one of the page sizes. */
  readonly badSizes: number[];
}

/** §4.1: dummy TLB ops that check sizes against the bitmap, a coherent walker, NO_WARN. */
function harness(c: SelftestConfig): Harness {
  const memory = new PhysicalMemory([{ name: 'ram', kind: 'ram', base: 0x8000_0000, size: 0x1000_0000 }]);
  const pool = new PagePool(memory, 0x8000_0000, 0x1000_0000);
  const calls: TlbCall[] = [];
  const badSizes: number[] = [];
  const cfg: IoPgtableCfg = { quirks: IO_PGTABLE_QUIRK_NO_WARN, pgsizeBitmap: c.bitmap, ias: c.ias, oas: c.oas, coherentWalk: true, tlb: null };
  const check = (size: number): void => {
    if (and53(size, cfg.pgsizeBitmap) === 0) badSizes.push(size);
  };
  const tlb: IommuFlushOps = {
    tlbFlushAll: () => calls.push({ op: 'all' }),
    tlbFlushWalk: (_iova, size) => {
      check(size);
      calls.push({ op: 'walk', size });
    },
    tlbAddPage: (gather, _iova, granule) => {
      check(granule);
      calls.push({ op: 'add', gatherIsNull: gather === null, granule });
    },
  };
  cfg.tlb = tlb;
  return { cfg, memory, pool, calls, badSizes };
}

function pageSizes(bitmap: number): number[] {
  const sizes: number[] = [];
  for (let b = 0; b <= 52; b++) if (Math.floor(bitmap / 2 ** b) % 2 === 1) sizes.push(2 ** b);
  return sizes;
}

interface RunOptions {
  /** Insert the removed "partial unmap" / "remap of partial unmap" checks after check 3. */
  readonly removedPartialUnmap?: boolean;
  readonly splitOnUnmap?: boolean;
}

/** Runs checks 1–6 in order; returns the name of the first check that fails, or null. */
function runSelftest(h: Harness, options: RunOptions = {}): string | null {
  const RW = IOMMU_READ | IOMMU_WRITE;
  // 1. The table must be allocated.
  const ops = allocIoPgtableArmS2(h.cfg, h.memory, h.pool, { splitOnUnmap: options.splitOnUnmap === true });
  if (ops === null) return '1 alloc';
  const cfg = h.cfg;
  // 2. An empty table translates nothing.
  for (const iova of [42, SZ_1G + 42, 2 * SZ_1G + 42]) if (ops.iovaToPhys(iova) !== 0) return '2 empty table';
  // 3. One mapping of each page size, 1G apart; an overlapping map fails.
  const sizes = pageSizes(cfg.pgsizeBitmap);
  let iova = 0;
  for (const size of sizes) {
    if (ops.mapPages(iova, iova, size, 1, RW | IOMMU_NOEXEC | IOMMU_CACHE).ret !== 0) return '3a map';
    if (ops.mapPages(iova, iova + size, size, 1, IOMMU_READ | IOMMU_NOEXEC).ret === 0) return '3b overlapping map';
    if (ops.iovaToPhys(iova + 42) !== iova + 42) return '3c iova_to_phys';
    iova += SZ_1G;
  }
  if (options.removedPartialUnmap === true) {
    const small = sizes[0] ?? 0;
    if (ops.unmapPages(SZ_1G + small, small, 1, null) !== small) return 'removed: partial unmap';
    if (ops.mapPages(SZ_1G + small, small, small, 1, IOMMU_READ).ret !== 0) return 'removed: remap of partial unmap';
    if (ops.iovaToPhys(SZ_1G + small + 42) !== small + 42) return 'removed: iova_to_phys after remap';
  }
  // 4. Unmap each, check it is gone, map it write-only, check it is back.
  iova = 0;
  for (const size of sizes) {
    if (ops.unmapPages(iova, size, 1, null) !== size) return '4a unmap';
    if (ops.iovaToPhys(iova + 42) !== 0) return '4b iova_to_phys after unmap';
    if (ops.mapPages(iova, iova, size, 1, IOMMU_WRITE).ret !== 0) return '4c write-only map';
    if (ops.iovaToPhys(iova + 42) !== iova + 42) return '4d iova_to_phys after remap';
    iova += SZ_1G;
  }
  // 5. The last page of the IAS, with the largest page size.
  const largest = 2 ** fls53(cfg.pgsizeBitmap);
  const last = 2 ** cfg.ias - largest;
  const r = ops.mapPages(last, last, largest, 1, RW | IOMMU_NOEXEC | IOMMU_CACHE);
  if (r.ret !== 0 || r.mapped !== largest) return '5 map last page in IAS';
  if (ops.unmapPages(last, largest, 1, null) !== largest) return '5 unmap last page in IAS';
  // 6. Free.
  ops.free();
  return null;
}

const name = (c: SelftestConfig): string => `${c.gran} ias=${c.ias} oas=${c.oas}`;

describe('io-pgtable-arm selftests, ARM_64_LPAE_S2 (§4.1–§4.2)', () => {
  it('covers the 63 configurations of the harness', () => {
    expect(CONFIGS).toHaveLength(63);
    expect(new Set(CONFIGS.map(name)).size).toBe(63);
  });

  it.each(CONFIGS.map((c) => [name(c), c] as const))('%s: checks 1–6 pass, no leaf or walk invalidation, nothing leaked', (_n, c) => {
    const h = harness(c);
    expect(runSelftest(h)).toBeNull();
    // gather is NULL throughout and no table is unmapped as a unit (§4.2 derived expectations).
    expect(h.calls).toEqual([{ op: 'all' }]);
    expect(h.badSizes).toEqual([]);
    expect(h.pool.allocatedBytes).toBe(0);
  });

  it.each(CONFIGS.map((c) => [name(c), c] as const))('%s: the removed partial-unmap check fails now and passes with splitOnUnmap', (_n, c) => {
    const current = harness(c);
    expect(runSelftest(current, { removedPartialUnmap: true })).toBe('removed: partial unmap');

    const split = harness(c);
    expect(runSelftest(split, { removedPartialUnmap: true, splitOnUnmap: true })).toBeNull();
    const small = pageSizes(split.cfg.pgsizeBitmap)[0] ?? 0;
    const blockAt1G = pageSizes(split.cfg.pgsizeBitmap)[1] ?? 0;
    // The split queued one leaf invalidation even though gather was NULL; step 4 then removed
    // the new table under 1G as a unit, with a walk flush of the block size.
    expect(split.calls).toEqual([
      { op: 'add', gatherIsNull: true, granule: small },
      { op: 'walk', size: blockAt1G },
      { op: 'all' },
    ]);
    expect(split.badSizes).toEqual([]);
    expect(split.pool.allocatedBytes).toBe(0);
  });
});

describe('derived expectations for the 4K configurations (§4.2)', () => {
  it.each(CONFIGS.filter((c) => c.gran === '4K').map((c) => [name(c), c] as const))('%s: leaves land at L3/L2/L1; tables under 0 survive the unmap', (_n, c) => {
    const h = harness(c);
    const ops = allocIoPgtableArmS2(h.cfg, h.memory, h.pool) as IoPgtableArm;
    expect(ops).not.toBeNull();
    const RWXC = IOMMU_READ | IOMMU_WRITE | IOMMU_NOEXEC | IOMMU_CACHE;
    expect(ops.mapPages(0, 0, SZ_4K, 1, RWXC).ret).toBe(0);
    expect(ops.mapPages(SZ_1G, SZ_1G, SZ_2M, 1, RWXC).ret).toBe(0);
    expect(ops.mapPages(2 * SZ_1G, 2 * SZ_1G, SZ_1G, 1, RWXC).ret).toBe(0);
    const type = (iova: number): (number | null)[] => ops.pgtableWalk(iova).ptes.map((p) => (p === undefined ? null : p.lo & 3));
    const above = (level: number): (number | null)[] => [0, 1, 2, 3].map((l) => (l < ops.startLevel || l > level ? null : l < level ? 3 : -1));
    const expectLeafAt = (iova: number, level: number, leafType: number): void => {
      expect(type(iova)).toEqual(above(level).map((t) => (t === -1 ? leafType : t)));
    };
    expectLeafAt(42, 3, 3);
    expectLeafAt(SZ_1G + 42, 2, 1);
    expectLeafAt(2 * SZ_1G + 42, 1, 1);
    const tablesUnder0 = ops.pgtableWalk(0).ptes.slice(0, 3);
    const held = h.pool.allocatedBytes;
    expect(ops.unmapPages(0, SZ_4K, 1, null)).toBe(SZ_4K);
    const after = ops.pgtableWalk(0);
    expect(after.ptes.slice(0, 3)).toEqual(tablesUnder0);
    expect(after.ptes[3]).toEqual({ lo: 0, hi: 0 });
    expect(h.pool.allocatedBytes).toBe(held);
    expect(h.calls).toEqual([]);
    ops.free();
  });
});

// --- §4.3: geometry of every configuration (S2 columns) ---

type OasSpec = 'any' | readonly number[];
/** [granule, ias, oas values, S2 start, S2 pgd entries, concatenated, VTCR.SL0, T0SZ] */
const GEOMETRY: readonly [string, number, OasSpec, number, number, boolean, number, number][] = [
  ['4K', 32, 'any', 1, 4, false, 1, 32],
  ['4K', 36, 'any', 1, 64, false, 1, 28],
  ['4K', 40, [40, 42], 1, 1024, true, 1, 24],
  ['4K', 40, [44, 48], 0, 2, false, 2, 24],
  ['4K', 42, [42], 1, 4096, true, 1, 22],
  ['4K', 42, [44, 48], 0, 8, false, 2, 22],
  ['4K', 44, [44, 48], 0, 32, false, 2, 20],
  ['4K', 48, [48], 0, 512, false, 2, 16],
  ['16K', 32, 'any', 2, 128, false, 1, 32],
  ['16K', 36, 'any', 2, 2048, false, 1, 28],
  ['16K', 40, [40], 2, 32768, true, 1, 24],
  ['16K', 40, [42, 44, 48], 1, 16, false, 2, 24],
  ['16K', 42, 'any', 1, 64, false, 2, 22],
  ['16K', 44, 'any', 1, 256, false, 2, 20],
  ['16K', 48, [48], 1, 4096, true, 2, 16],
  ['64K', 32, 'any', 2, 8, false, 1, 32],
  ['64K', 36, 'any', 2, 128, false, 1, 28],
  ['64K', 40, 'any', 2, 2048, false, 1, 24],
  ['64K', 42, 'any', 2, 8192, false, 1, 22],
  ['64K', 44, 'any', 1, 4, false, 2, 20],
  ['64K', 48, [48], 1, 64, false, 2, 16],
];

const GEOMETRY_ROWS = GEOMETRY.flatMap(([gran, ias, oasSpec, start, entries, concat, sl0, t0sz]) =>
  (oasSpec === 'any' ? ADDR_BITS.filter((o) => o >= ias) : oasSpec).map((oas) => ({ gran, ias, oas, start, entries, concat, sl0, t0sz })),
);

describe('geometry of every configuration (§4.3, S2)', () => {
  it('the table covers each of the 63 configurations exactly once', () => {
    expect(GEOMETRY_ROWS.map((r) => `${r.gran} ias=${r.ias} oas=${r.oas}`).sort()).toEqual(CONFIGS.map(name).sort());
  });

  it.each(GEOMETRY_ROWS.map((r) => [`${r.gran} ias=${r.ias} oas=${r.oas}`, r] as const))('%s', (_n, r) => {
    const bitmap = PGSIZES.find(([g]) => g === r.gran)?.[1] ?? 0;
    const h = harness({ gran: r.gran, bitmap, ias: r.ias, oas: r.oas });
    const ops = allocIoPgtableArmS2(h.cfg, h.memory, h.pool);
    expect(ops).not.toBeNull();
    if (ops === null) return;
    const g = ops.geometry;
    expect([g.startLevel, g.pgdEntries, g.concatenated]).toEqual([r.start, r.entries, r.concat]);
    expect([h.cfg.s2?.vtcr.sl, h.cfg.s2?.vtcr.tsz]).toEqual([r.sl0, r.t0sz]);
    // The top table is aligned to its size (a concatenated PGD to all of it).
    expect((h.cfg.s2?.vttbr ?? 1) % Math.max(8 * r.entries, SZ_4K)).toBe(0);
    // Independent check against the architecture's rules for a stage-2 start level.
    expect(checkStage2Config({ granule: g.granule, iaBits: r.ias, startLevel: r.start, paBits: r.oas })).toMatchObject({
      ok: true,
      topEntries: r.entries,
      concatenatedTables: r.concat ? (8 * r.entries) / g.granule.size : 1,
    });
  });

  it('16K ias=40 oas=40: the last 32M page of the IAS is entry 2047 of the 16th PGD page (§4.3)', () => {
    const h = harness({ gran: '16K', bitmap: SZ_16K + SZ_32M, ias: 40, oas: 40 });
    const ops = allocIoPgtableArmS2(h.cfg, h.memory, h.pool) as IoPgtableArm;
    const iova = 2 ** 40 - SZ_32M;
    expect(ops.lvlIdx(iova, ops.startLevel)).toBe(32767);
    expect(ops.mapPages(iova, iova, SZ_32M, 1, IOMMU_READ).mapped).toBe(SZ_32M);
    expect(h.memory.peek64(ops.pgd + 15 * SZ_16K + 2047 * 8).lo & 3).toBe(1);
  });
});
