import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { EEXIST, EFAULT, EINVAL, ENOMEM, ERANGE } from '../arch/errno.js';
import { PhysicalMemory } from '../arch/physical-memory.js';
import { checkStage2Config } from '../arch/granule.js';
import { PagePool } from './page-allocator.js';
import { type IommuIotlbGather, iommuIotlbGatherInit } from './iotlb-gather.js';
import {
  IOMMU_CACHE,
  IOMMU_MMIO,
  IOMMU_NOEXEC,
  IOMMU_PRIV,
  IOMMU_READ,
  IOMMU_WRITE,
  IO_PGTABLE_QUIRK_ARM_NS,
  IO_PGTABLE_QUIRK_ARM_S2FWB,
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
  type IoPgtableArmOptions,
  type IoPgtableCfg,
  allocIoPgtableArmS2,
} from './io-pgtable-arm.js';

const RAM_BASE = 0x4000_0000;
const RAM_SIZE = 0x800_0000;
const MMIO_BASE = 0x0900_0000;
const RW = IOMMU_READ | IOMMU_WRITE;
const BM_4K = SZ_4K + SZ_2M + SZ_1G;
const BM_16K = SZ_16K + SZ_32M;
const BM_64K = SZ_64K + SZ_512M;

type TlbCall = { op: 'all' } | { op: 'walk'; iova: number; size: number; granule: number } | { op: 'add'; gather: IommuIotlbGather | null; iova: number; granule: number };

interface Setup {
  memory: PhysicalMemory;
  pool: PagePool;
  pt: IoPgtableArm;
  cfg: IoPgtableCfg;
  calls: TlbCall[];
  syncs: [number, number][];
  warnings: string[];
}

interface SetupParams {
  bitmap?: number;
  ias?: number;
  oas?: number;
  coherent?: boolean;
  quirks?: number;
  split?: boolean;
  poolBytes?: number;
  onWalk?: (iova: number, size: number, granule: number) => void;
}

function setup(p: SetupParams = {}): Setup {
  const memory = new PhysicalMemory([
    { name: 'mmio', kind: 'mmio', base: MMIO_BASE, size: 0x1000 },
    { name: 'ram', kind: 'ram', base: RAM_BASE, size: RAM_SIZE },
  ]);
  const pool = new PagePool(memory, RAM_BASE, p.poolBytes ?? 0x400_0000);
  const calls: TlbCall[] = [];
  const syncs: [number, number][] = [];
  const warnings: string[] = [];
  const cfg: IoPgtableCfg = {
    quirks: p.quirks ?? IO_PGTABLE_QUIRK_NO_WARN,
    pgsizeBitmap: p.bitmap ?? BM_4K,
    ias: p.ias ?? 48,
    oas: p.oas ?? 48,
    coherentWalk: p.coherent ?? true,
    tlb: {
      tlbFlushAll: () => calls.push({ op: 'all' }),
      tlbFlushWalk: (iova, size, granule) => {
        p.onWalk?.(iova, size, granule);
        calls.push({ op: 'walk', iova, size, granule });
      },
      tlbAddPage: (gather, iova, granule) => calls.push({ op: 'add', gather, iova, granule }),
    },
  };
  const options: IoPgtableArmOptions = {
    splitOnUnmap: p.split ?? false,
    onSync: (pa, bytes) => syncs.push([pa, bytes]),
    onWarn: (m) => warnings.push(m),
  };
  const pt = allocIoPgtableArmS2(cfg, memory, pool, options);
  if (pt === null) throw new Error('alloc failed');
  return { memory, pool, pt, cfg, calls, syncs, warnings };
}

/** Address of the entry for `iova` at `level` (the table must exist). */
function entryAddr(pt: IoPgtableArm, iova: number, level: number): number {
  let table = pt.pgd;
  for (let l = pt.startLevel; l < level; l++) {
    const pte = pt.pgtableWalk(iova).ptes[l];
    if (pte === undefined) throw new Error(`no entry at level ${l}`);
    table = pt.pteAddress(pte);
  }
  return table + pt.lvlIdx(iova, level) * 8;
}

function tableCount(pt: IoPgtableArm): number {
  let n = 0;
  pt.walkTree({ table: () => n++ });
  return n;
}

describe('alloc (§3.2)', () => {
  it('restricts the bitmap, clips ias/oas and fills VTTBR/VTCR like Linux', () => {
    const s = setup({ bitmap: BM_4K + SZ_64K + 2 ** 39, ias: 52, oas: 48 });
    expect(s.cfg.pgsizeBitmap).toBe(BM_4K);
    expect(s.cfg.ias).toBe(48);
    expect(s.cfg.s2?.vttbr).toBe(s.pt.pgd);
    expect(s.cfg.s2?.vtcr).toEqual({ ps: 5, tg: 0, sh: 3, irgn: 1, orgn: 1, sl: 2, tsz: 16 });
  });

  it('a non-coherent walker gets outer-shareable, non-cacheable walks', () => {
    const s = setup({ coherent: false, bitmap: BM_16K, ias: 36, oas: 40 });
    expect(s.cfg.s2?.vtcr).toEqual({ ps: 2, tg: 2, sh: 2, irgn: 0, orgn: 0, sl: 1, tsz: 28 });
  });

  it('64K with oas > 48 adds the 4T block and allows 52-bit ias/oas', () => {
    const s = setup({ bitmap: BM_64K + SZ_4T, ias: 52, oas: 52 });
    expect(s.cfg.pgsizeBitmap).toBe(BM_64K + SZ_4T);
    expect(s.pt.startLevel).toBe(1);
    expect(s.pt.geometry.pgdEntries).toBe(1024);
    const t = setup({ bitmap: BM_64K + SZ_4T, ias: 48, oas: 48 });
    expect(t.cfg.pgsizeBitmap).toBe(BM_64K);
  });

  it('refuses S1-only quirks, bitmaps without a granule, and oas without a PS encoding', () => {
    const memory = new PhysicalMemory([{ name: 'ram', kind: 'ram', base: RAM_BASE, size: RAM_SIZE }]);
    const pool = new PagePool(memory, RAM_BASE, 0x10_0000);
    const base = { quirks: 0, pgsizeBitmap: BM_4K, ias: 40, oas: 40, coherentWalk: true, tlb: null };
    expect(allocIoPgtableArmS2({ ...base }, memory, pool)).not.toBeNull();
    expect(allocIoPgtableArmS2({ ...base, quirks: IO_PGTABLE_QUIRK_ARM_NS }, memory, pool)).toBeNull();
    expect(allocIoPgtableArmS2({ ...base, pgsizeBitmap: SZ_2M + SZ_1G }, memory, pool)).toBeNull();
    expect(allocIoPgtableArmS2({ ...base, oas: 46 }, memory, pool)).toBeNull();
    expect(pool.allocatedBytes).toBe(SZ_4K * 2);
  });

  it('a concatenated PGD is one block aligned to its size, and is architecturally legal', () => {
    const s = setup({ bitmap: BM_16K, ias: 40, oas: 40 });
    expect(s.pt.pgdAllocBytes).toBe(16 * SZ_16K);
    expect(s.pt.pgd % (16 * SZ_16K)).toBe(0);
    const arch = checkStage2Config({ granule: s.pt.geometry.granule, iaBits: 40, startLevel: s.pt.startLevel, paBits: 40 });
    expect(arch).toMatchObject({ ok: true, concatenatedTables: 16, topEntries: 32768 });
  });
});

describe('PTE construction (§3.3)', () => {
  const cases: [string, number, number, number, number][] = [
    // name, prot, quirks, expected lo attribute bits (11:0 incl. type for a page), expected hi
    ['RW cached', RW | IOMMU_CACHE, 0, 0x7ff, 0],
    ['R non-cached: Normal-NC, outer shareable', IOMMU_READ, 0, 0x657, 0],
    ['W MMIO noexec: Device, outer shareable, XN=3', IOMMU_WRITE | IOMMU_MMIO | IOMMU_NOEXEC, 0, 0x687, 0x0060_0000],
    ['R MMIO+CACHE: Device wins, shareability from CACHE', IOMMU_READ | IOMMU_MMIO | IOMMU_CACHE, 0, 0x747, 0],
    ['RW cached with S2FWB: MemAttr 0110', RW | IOMMU_CACHE, IO_PGTABLE_QUIRK_ARM_S2FWB, 0x7db, 0],
    ['PRIV has no S2 meaning', RW | IOMMU_CACHE | IOMMU_PRIV, 0, 0x7ff, 0],
  ];
  for (const [name, prot, quirks, lo, hi] of cases) {
    it(name, () => {
      const s = setup({ quirks: quirks | IO_PGTABLE_QUIRK_NO_WARN });
      expect(s.pt.mapPages(0x12_3456_7000, 0x8_7654_3000, SZ_4K, 1, prot)).toEqual({ ret: 0, mapped: SZ_4K });
      const pte = s.pt.pgtableWalk(0x12_3456_7000).ptes[3];
      expect(pte).toEqual({ lo: (0x7654_3000 | lo) >>> 0, hi: 0x8 | hi });
    });
  }

  it('blocks use type 01, tables 11 with the next table address', () => {
    const s = setup();
    expect(s.pt.mapPages(SZ_1G + SZ_2M, 0x9_4020_0000, SZ_2M, 1, RW | IOMMU_CACHE).ret).toBe(0);
    const w = s.pt.pgtableWalk(SZ_1G + SZ_2M);
    expect(w.ret).toBe(0);
    expect(w.ptes[2]).toEqual({ lo: 0x4020_07fd, hi: 0x9 });
    const l1 = w.ptes[1];
    expect(l1 !== undefined && (l1.lo & 0xfff)).toBe(3);
    expect(l1 !== undefined && s.pool.owns(s.pt.pteAddress(l1))).toBe(true);
    expect(w.ptes[3]).toBeUndefined();
  });

  it('64K with 52-bit PA packs PA[51:48] into bits 15:12 and translates back', () => {
    const s = setup({ bitmap: BM_64K + SZ_4T, ias: 52, oas: 52 });
    const pa = 0xa_bcde_f123_0000;
    const iova = 0xf_0000_0001_0000;
    expect(s.pt.mapPages(iova, pa, SZ_64K, 1, RW).ret).toBe(0);
    expect(s.pt.pgtableWalk(iova).ptes[3]).toEqual({ lo: (0xf123_0000 | 0xa000 | 0x6d7) >>> 0, hi: 0xbcde });
    expect(s.pt.iovaToPhys(iova + 0xfedc)).toBe(pa + 0xfedc);
    const big = 2 ** 51 + 3 * SZ_4T;
    expect(s.pt.mapPages(3 * SZ_4T, big, SZ_4T, 1, RW).ret).toBe(0);
    expect(s.pt.pgtableWalk(3 * SZ_4T).ptes[1]?.lo).toBe(0x86d5);
    expect(s.pt.iovaToPhys(3 * SZ_4T + 0x123_4567_89ab)).toBe(big + 0x123_4567_89ab);
  });
});

describe('map_pages (§3.4)', () => {
  it('maps one size per call and translates every offset', () => {
    const s = setup();
    expect(s.pt.mapPages(0xffff_ffe0_0000, 0xabc_de00_0000, SZ_2M, 1, RW)).toEqual({ ret: 0, mapped: SZ_2M });
    expect(s.pt.iovaToPhys(0xffff_ffe0_0000)).toBe(0xabc_de00_0000);
    expect(s.pt.iovaToPhys(0xffff_ffff_ffff)).toBe(0xabc_de1f_ffff);
    expect(s.pt.iovaToPhys(0xffff_ffdf_ffff)).toBe(0);
  });

  it('rejects bad sizes and prot with -EINVAL, addresses beyond ias/oas with -ERANGE', () => {
    const s = setup({ ias: 40, oas: 36 });
    const before = s.pool.allocatedBytes;
    expect(s.pt.mapPages(0, 0, 0, 1, RW)).toEqual({ ret: -EINVAL, mapped: 0 });
    expect(s.pt.mapPages(0, 0, 0x2000, 1, RW)).toEqual({ ret: -EINVAL, mapped: 0 });
    expect(s.pt.mapPages(0, 0, SZ_64K, 1, RW)).toEqual({ ret: -EINVAL, mapped: 0 });
    expect(s.pt.mapPages(0, 0, SZ_4K, 1, IOMMU_CACHE | IOMMU_NOEXEC)).toEqual({ ret: -EINVAL, mapped: 0 });
    expect(s.pt.mapPages(2 ** 40, 0, SZ_4K, 1, RW)).toEqual({ ret: -ERANGE, mapped: 0 });
    expect(s.pt.mapPages(0, 2 ** 36, SZ_4K, 1, RW)).toEqual({ ret: -ERANGE, mapped: 0 });
    expect(s.pt.mapPages(2 ** 40 - SZ_4K, 2 ** 36 - SZ_4K, SZ_4K, 1, RW)).toEqual({ ret: 0, mapped: SZ_4K });
    expect(s.pool.allocatedBytes).toBe(before + 3 * SZ_4K);
  });

  it('write-only is accepted (S2AP = 10)', () => {
    const s = setup();
    expect(s.pt.mapPages(0, 0x5000, SZ_4K, 1, IOMMU_WRITE).ret).toBe(0);
    expect((s.pt.pgtableWalk(0).ptes[3]?.lo ?? 0) & 0xc0).toBe(0x80);
  });

  it('stops at the end of the current table page and reports what it mapped', () => {
    const s = setup();
    expect(s.pt.mapPages(510 * SZ_4K, 0x100_0000, SZ_4K, 600, RW)).toEqual({ ret: 0, mapped: 2 * SZ_4K });
    expect(s.pt.iovaToPhys(511 * SZ_4K)).toBe(0x100_0000 + SZ_4K);
    expect(s.pt.iovaToPhys(512 * SZ_4K)).toBe(0);
  });

  it('max_entries in a concatenated PGD: batches end at each 4K page of the PGD (4K, ias 40, oas 40)', () => {
    const s = setup({ ias: 40, oas: 40 });
    expect(s.pt.startLevel).toBe(1);
    expect(s.pt.geometry.pgdEntries).toBe(1024);
    expect(s.pt.mapPages(510 * SZ_1G, 0, SZ_1G, 4, RW)).toEqual({ ret: 0, mapped: 2 * SZ_1G });
    expect(s.pt.mapPages(512 * SZ_1G, 2 * SZ_1G, SZ_1G, 4, RW)).toEqual({ ret: 0, mapped: 4 * SZ_1G });
    expect(s.pt.mapPages(1022 * SZ_1G, 0, SZ_1G, 4, RW)).toEqual({ ret: 0, mapped: 2 * SZ_1G });
    // Entries land in the second page of the PGD at the right index.
    expect(s.memory.peek64(s.pt.pgd + 513 * 8).lo).toBe((3 * SZ_1G + 0x6d5) >>> 0);
    expect(s.pt.iovaToPhys(2 ** 40 - 1)).toBe(2 * SZ_1G - 1);
    expect(s.pt.unmapPages(510 * SZ_1G, SZ_1G, 6, null)).toBe(2 * SZ_1G);
    expect(s.pt.iovaToPhys(512 * SZ_1G)).toBe(2 * SZ_1G);
  });

  it('max_entries in a 16-page concatenated PGD (16K, ias 40, oas 40): last page of the IAS', () => {
    const s = setup({ bitmap: BM_16K, ias: 40, oas: 40 });
    const iova = 2 ** 40 - SZ_32M;
    expect(s.pt.lvlIdx(iova, 2)).toBe(32767);
    expect(s.pt.mapPages(iova, iova, SZ_32M, 1, RW)).toEqual({ ret: 0, mapped: SZ_32M });
    expect(s.memory.peek64(s.pt.pgd + 32767 * 8).hi).toBe(0xff);
    expect(s.pt.mapPages(2 ** 40 - 4 * SZ_32M, 0, SZ_32M, 5, RW)).toEqual({ ret: -EEXIST, mapped: 0 });
    expect(s.pt.mapPages(2049 * SZ_32M - 3 * SZ_32M, 0, SZ_32M, 5, RW)).toEqual({ ret: 0, mapped: 2 * SZ_32M });
  });

  it('inferred consequence: a PGD smaller than a page lets a batch run past its last entry', () => {
    // 4K, ias 32: a 4-entry PGD, but max_entries counts to the end of a 512-entry page (§3.2).
    const s = setup({ ias: 32, oas: 40 });
    expect(s.pt.geometry.pgdEntries).toBe(4);
    expect(s.pt.mapPages(2 * SZ_1G, 0x10_0000_0000, SZ_1G, 4, RW)).toEqual({ ret: 0, mapped: 4 * SZ_1G });
    expect(s.memory.peek64(s.pt.pgd + 5 * 8).hi).toBe(0x10);
    // Unreachable: an IOVA of 4G wraps to index 0, which is empty.
    expect(s.pt.iovaToPhys(3 * SZ_1G)).toBe(0x10_4000_0000);
    expect(s.pt.iovaToPhys(0)).toBe(0);
  });

  it('-EEXIST over a leaf writes nothing of that batch and leaves the leaf alone', () => {
    const s = setup({ quirks: 0 });
    expect(s.pt.mapPages(0x3000, 0xaaa_3000, SZ_4K, 1, RW).ret).toBe(0);
    expect(s.pt.mapPages(0x1000, 0x1000, SZ_4K, 4, RW)).toEqual({ ret: -EEXIST, mapped: 0 });
    expect([0x1000, 0x2000, 0x4000].map((a) => s.pt.iovaToPhys(a))).toEqual([0, 0, 0]);
    expect(s.pt.iovaToPhys(0x3000)).toBe(0xaaa_3000);
    expect(s.warnings).toEqual(['map: a leaf already exists']);
  });

  it('-EEXIST when a block covers a smaller mapping, without allocating; NO_WARN silences it', () => {
    const s = setup();
    expect(s.pt.mapPages(SZ_2M, 0x20_0000, SZ_2M, 1, RW).ret).toBe(0);
    const before = s.pool.allocatedBytes;
    expect(s.pt.mapPages(SZ_2M + SZ_4K, 0, SZ_4K, 1, RW)).toEqual({ ret: -EEXIST, mapped: 0 });
    expect(s.pt.mapPages(SZ_2M, 0, SZ_2M, 1, RW)).toEqual({ ret: -EEXIST, mapped: 0 });
    expect(s.pool.allocatedBytes).toBe(before);
    expect(s.warnings).toEqual([]);
  });

  it('a block over empty tables frees them, after a walk flush and no leaf invalidation', () => {
    const s = setup();
    expect(s.pt.mapPages(0x5000, 0x5000, SZ_4K, 1, RW).ret).toBe(0);
    const l3 = s.pt.pteAddress(s.pt.pgtableWalk(0x5000).ptes[2] ?? { lo: 0, hi: 0 });
    const withTables = s.pool.allocatedBytes;
    expect(s.pt.unmapPages(0x5000, SZ_4K, 1, null)).toBe(SZ_4K);
    // Unmapping a leaf never frees the tables above it.
    expect(s.pool.allocatedBytes).toBe(withTables);
    expect(s.pool.owns(l3)).toBe(true);
    s.calls.length = 0;
    expect(s.pt.mapPages(0, 0x8000_0000, SZ_2M, 1, RW)).toEqual({ ret: 0, mapped: SZ_2M });
    expect(s.calls).toEqual([{ op: 'walk', iova: 0, size: SZ_2M, granule: SZ_4K }]);
    expect(s.pool.owns(l3)).toBe(false);
    expect(s.pool.allocatedBytes).toBe(withTables - SZ_4K);
    expect(s.pt.iovaToPhys(0x5000)).toBe(0x8000_5000);
  });

  it('a 1G block over live mappings destroys the whole subtree with one walk flush per entry', () => {
    const s = setup();
    expect(s.pt.mapPages(SZ_1G + 0x1000, 0x1000, SZ_4K, 1, RW).ret).toBe(0);
    expect(s.pt.mapPages(SZ_1G + SZ_2M, 0x20_0000, SZ_2M, 1, RW).ret).toBe(0);
    const before = s.pool.allocatedBytes;
    s.calls.length = 0;
    expect(s.pt.mapPages(SZ_1G, 0x1_0000_0000, SZ_1G, 1, RW).ret).toBe(0);
    expect(s.calls).toEqual([{ op: 'walk', iova: SZ_1G, size: SZ_1G, granule: SZ_4K }]);
    expect(s.pool.allocatedBytes).toBe(before - 2 * SZ_4K);
    expect(s.pt.iovaToPhys(SZ_1G + 0x1000)).toBe(0x1_0000_1000);
  });

  it('entries are checked in order: a table before a leaf in the batch is destroyed before -EEXIST (§3.4 order)', () => {
    const s = setup();
    expect(s.pt.mapPages(0x1000, 0x1000, SZ_4K, 1, RW).ret).toBe(0);
    expect(s.pt.mapPages(SZ_2M, 0x7700_0000, SZ_2M, 1, RW).ret).toBe(0);
    s.calls.length = 0;
    expect(s.pt.mapPages(0, 0, SZ_2M, 2, RW)).toEqual({ ret: -EEXIST, mapped: 0 });
    expect(s.calls).toEqual([{ op: 'walk', iova: 0, size: SZ_2M, granule: SZ_4K }]);
    expect(s.memory.peek64(entryAddr(s.pt, 0, 2))).toEqual({ lo: 0, hi: 0 });
    expect(s.pt.iovaToPhys(0x1000)).toBe(0);
    expect(s.pt.iovaToPhys(SZ_2M)).toBe(0x7700_0000);
  });

  it('-ENOMEM when the allocator runs dry; tables created so far stay', () => {
    const s = setup({ poolBytes: 3 * SZ_4K });
    expect(s.pt.mapPages(0, 0, SZ_4K, 1, RW)).toEqual({ ret: -ENOMEM, mapped: 0 });
    expect(s.pool.allocatedBytes).toBe(3 * SZ_4K);
    expect(s.pt.pgtableWalk(0).ptes.map((p) => (p === undefined ? -1 : p.lo & 3))).toEqual([3, 3, 0, -1]);
  });

  it('a pgsize that is a subset of the bitmap but not one size fails with -EINVAL at the last level', () => {
    const s = setup({ quirks: 0 });
    expect(s.pt.mapPages(0, 0, SZ_4K + SZ_2M, 1, RW)).toEqual({ ret: -EINVAL, mapped: 0 });
    expect(s.warnings).toEqual(['map: no level for this size']);
  });
});

describe('unmap_pages (§3.5)', () => {
  it('leaves: one tlb_add_page per leaf with granule = leaf size; stops at the first empty entry', () => {
    const s = setup();
    for (const a of [0, 0x1000, 0x3000]) expect(s.pt.mapPages(a, a, SZ_4K, 1, RW).ret).toBe(0);
    const g = iommuIotlbGatherInit();
    expect(s.pt.unmapPages(0, SZ_4K, 4, g)).toBe(0x2000);
    expect(s.calls).toEqual([
      { op: 'add', gather: g, iova: 0, granule: SZ_4K },
      { op: 'add', gather: g, iova: 0x1000, granule: SZ_4K },
    ]);
    expect(s.pt.iovaToPhys(0x3000)).toBe(0x3000);
    expect(s.pt.unmapPages(0x2000, SZ_4K, 1, g)).toBe(0);
  });

  it('no tlb_add_page with a NULL or a queued gather', () => {
    const s = setup();
    expect(s.pt.mapPages(0, 0, SZ_4K, 2, RW).ret).toBe(0);
    expect(s.pt.unmapPages(0, SZ_4K, 1, null)).toBe(SZ_4K);
    const g = iommuIotlbGatherInit();
    g.queued = true;
    expect(s.pt.unmapPages(0x1000, SZ_4K, 1, g)).toBe(SZ_4K);
    expect(s.calls).toEqual([]);
  });

  it('a table unmapped as a unit: entry cleared, then tlb_flush_walk, then the subtree freed', () => {
    let seen: { entry: { lo: number; hi: number }; l3Live: boolean } | undefined;
    let entryPa = 0;
    let l3 = 0;
    const s = setup({
      onWalk: () => {
        seen = { entry: s.memory.peek64(entryPa), l3Live: s.pool.owns(l3) };
      },
    });
    expect(s.pt.mapPages(0x1000, 0x1000, SZ_4K, 2, RW).ret).toBe(0);
    entryPa = entryAddr(s.pt, 0, 2);
    l3 = s.pt.pteAddress(s.memory.peek64(entryPa));
    const g = iommuIotlbGatherInit();
    expect(s.pt.unmapPages(0, SZ_2M, 1, g)).toBe(SZ_2M);
    expect(seen).toEqual({ entry: { lo: 0, hi: 0 }, l3Live: true });
    expect(s.pool.owns(l3)).toBe(false);
    expect(s.calls).toEqual([
      { op: 'walk', iova: 0, size: SZ_2M, granule: SZ_4K },
      { op: 'add', gather: g, iova: 0, granule: SZ_2M },
    ]);
  });

  it('even an empty table is unmapped as a unit and reported as the full size', () => {
    const s = setup();
    expect(s.pt.mapPages(SZ_1G, 0, SZ_4K, 1, RW).ret).toBe(0);
    expect(s.pt.unmapPages(SZ_1G, SZ_4K, 1, null)).toBe(SZ_4K);
    expect(s.pt.unmapPages(SZ_1G, SZ_1G, 1, null)).toBe(SZ_1G);
    expect(s.pt.unmapPages(SZ_1G, SZ_1G, 1, null)).toBe(0);
    expect(tableCount(s.pt)).toBe(2);
  });

  it('partial unmap of a block returns 0 and leaves it mapped (current, WARN even with NO_WARN)', () => {
    const s = setup();
    expect(s.pt.mapPages(SZ_2M, 0x6_0000_0000, SZ_2M, 1, RW | IOMMU_CACHE).ret).toBe(0);
    const before = s.pool.allocatedBytes;
    expect(s.pt.unmapPages(SZ_2M + SZ_4K, SZ_4K, 1, null)).toBe(0);
    expect(s.warnings).toEqual(['Unmap of a partial large IOPTE is not allowed']);
    expect(s.pt.iovaToPhys(SZ_2M + SZ_4K)).toBe(0x6_0000_1000);
    expect(s.pool.allocatedBytes).toBe(before);
  });

  it('splitOnUnmap: partial unmap splits the block, returns the size, keeps the rest and the attributes', () => {
    const s = setup({ split: true });
    expect(s.pt.mapPages(SZ_2M, 0x6_0000_0000, SZ_2M, 1, IOMMU_READ | IOMMU_CACHE | IOMMU_NOEXEC).ret).toBe(0);
    const block = s.pt.pgtableWalk(SZ_2M).ptes[2] ?? { lo: 0, hi: 0 };
    const before = s.pool.allocatedBytes;
    expect(s.pt.unmapPages(SZ_2M + SZ_4K, SZ_4K, 3, null)).toBe(3 * SZ_4K);
    expect(s.pool.allocatedBytes).toBe(before + SZ_4K);
    expect([0, 1, 2, 3, 4, 511].map((i) => s.pt.iovaToPhys(SZ_2M + i * SZ_4K + 7))).toEqual([0x6_0000_0007, 0, 0, 0, 0x6_0000_4007, 0x6_001f_f007]);
    const page = s.pt.pgtableWalk(SZ_2M).ptes[3] ?? { lo: 0, hi: 0 };
    expect(page.lo & 0xffc).toBe(block.lo & 0xffc);
    expect(page.hi & 0x0060_0000).toBe(0x0060_0000);
    expect(page.lo & 3).toBe(3);
    // The old code queued leaf invalidations even with a NULL gather, and no walk flush.
    expect(s.calls).toEqual([1, 2, 3].map((i) => ({ op: 'add', gather: null, iova: SZ_2M + i * SZ_4K, granule: SZ_4K })));
  });

  it('splitOnUnmap: a 4K hole in a 1G block splits twice', () => {
    const s = setup({ split: true });
    expect(s.pt.mapPages(SZ_1G, 0x2_0000_0000, SZ_1G, 1, RW).ret).toBe(0);
    expect(s.pt.unmapPages(SZ_1G + 5 * SZ_2M + SZ_4K, SZ_4K, 1, null)).toBe(SZ_4K);
    expect(s.pt.iovaToPhys(SZ_1G + 5 * SZ_2M + SZ_4K)).toBe(0);
    expect(s.pt.iovaToPhys(SZ_1G + 5 * SZ_2M)).toBe(0x2_00a0_0000);
    expect(s.pt.iovaToPhys(SZ_1G + 7 * SZ_2M + 0x1234)).toBe(0x2_00e0_1234);
    expect(s.pt.pgtableWalk(SZ_1G + 7 * SZ_2M).ptes[2]?.lo).toBe((0x00e0_0000 | 0x6d5) >>> 0);
  });

  it('rejects bad pgsize, pgcount 0, and iovas beyond ias', () => {
    const s = setup({ ias: 36, quirks: 0 });
    expect(s.pt.mapPages(0, 0x5000, SZ_4K, 1, RW).ret).toBe(0);
    expect(s.pt.unmapPages(0, 0, 1, null)).toBe(0);
    expect(s.pt.unmapPages(0, SZ_16K, 1, null)).toBe(0);
    expect(s.pt.unmapPages(0, SZ_4K, 0, null)).toBe(0);
    expect(s.pt.unmapPages(2 ** 36, SZ_4K, 1, null)).toBe(0);
    expect(s.warnings).toHaveLength(4);
    expect(s.pt.iovaToPhys(1)).toBe(0x5001);
    expect(s.pt.unmapPages(0, SZ_4K, 1, null)).toBe(SZ_4K);
    expect(s.pt.iovaToPhys(1)).toBe(0);
  });
});

describe('non-coherent walk: SW_SYNC (§3.7)', () => {
  it('installed table entries carry SW_SYNC; each new table, entry and leaf batch is synced once', () => {
    const s = setup({ coherent: false, ias: 48 });
    expect(s.syncs).toEqual([[s.pt.pgd, SZ_4K]]);
    s.syncs.length = 0;
    expect(s.pt.mapPages(0x1000, 0x1000, SZ_4K, 3, RW).ret).toBe(0);
    const e0 = s.pt.pgd;
    const e1 = entryAddr(s.pt, 0, 1);
    const e2 = entryAddr(s.pt, 0, 2);
    const e3 = entryAddr(s.pt, 0x1000, 3);
    const table = (a: number): number => a - (a % SZ_4K);
    expect(s.syncs).toEqual([
      [table(e1), SZ_4K],
      [e0, 8],
      [table(e2), SZ_4K],
      [e1, 8],
      [table(e3), SZ_4K],
      [e2, 8],
      [e3, 24],
    ]);
    for (const e of [e0, e1, e2]) expect(s.memory.peek64(e).hi & (1 << 23)).not.toBe(0);
    expect(s.memory.peek64(e3).hi & (1 << 23)).toBe(0);
    // Tables already synced are not synced again by later walkers.
    s.syncs.length = 0;
    expect(s.pt.mapPages(0x8000, 0x8000, SZ_4K, 1, RW).ret).toBe(0);
    expect(s.syncs).toEqual([[e3 + 7 * 8, 8]]);
    // An entry without SW_SYNC (installed by someone else) is synced before descending.
    const raw = s.memory.peek64(e1);
    s.memory.store64(e1, raw.lo, (raw.hi & ~(1 << 23)) >>> 0);
    s.syncs.length = 0;
    expect(s.pt.mapPages(0x9000, 0x9000, SZ_4K, 1, RW).ret).toBe(0);
    expect(s.syncs).toEqual([
      [e1, 8],
      [e3 + 8 * 8, 8],
    ]);
    expect(s.pt.syncEvents).toBe(7 + 1 + 1 + 2);
    expect(s.pt.iovaToPhys(0x9abc)).toBe(0x9abc);
  });

  it('unmap syncs a removed table entry, then the whole cleared batch', () => {
    const s = setup({ coherent: false });
    expect(s.pt.mapPages(0, 0, SZ_4K, 1, RW).ret).toBe(0);
    expect(s.pt.mapPages(SZ_2M, 0, SZ_2M, 1, RW).ret).toBe(0);
    const e2 = entryAddr(s.pt, 0, 2);
    s.syncs.length = 0;
    expect(s.pt.unmapPages(0, SZ_2M, 2, null)).toBe(2 * SZ_2M);
    expect(s.syncs).toEqual([
      [e2, 8],
      [e2, 16],
    ]);
  });

  it('coherent walkers never sync and never set SW_SYNC', () => {
    const s = setup();
    expect(s.pt.mapPages(0, 0, SZ_4K, 1, RW).ret).toBe(0);
    expect(s.syncs).toEqual([]);
    expect(s.pt.syncEvents).toBe(0);
    expect(s.memory.peek64(s.pt.pgd).hi).toBe(0);
  });
});

describe('iova_to_phys, pgtable_walk, free (§3.6)', () => {
  it('pgtable_walk records the entry per level and fails on an empty entry', () => {
    const s = setup();
    expect(s.pt.mapPages(SZ_1G, 0x7000_0000, SZ_2M, 1, RW).ret).toBe(0);
    const hit = s.pt.pgtableWalk(SZ_1G + 5);
    expect(hit.ret).toBe(0);
    expect(hit.ptes.map((p) => (p === undefined ? -1 : p.lo & 3))).toEqual([3, 3, 1, -1]);
    const miss = s.pt.pgtableWalk(SZ_1G + SZ_2M);
    expect(miss.ret).toBe(-EINVAL);
    expect(miss.ptes[2]).toEqual({ lo: 0, hi: 0 });
    expect(miss.ptes[3]).toBeUndefined();
  });

  it('free() flushes everything once and returns every table page', () => {
    const s = setup({ bitmap: BM_16K, ias: 48, oas: 48 });
    expect(s.pt.mapPages(0, 0, SZ_16K, 1, RW).ret).toBe(0);
    expect(s.pt.mapPages(2 ** 47 + SZ_32M, 0, SZ_32M, 1, RW).ret).toBe(0);
    expect(s.pool.allocatedBytes).toBeGreaterThan(s.pt.pgdAllocBytes);
    s.pt.free();
    expect(s.calls).toEqual([{ op: 'all' }]);
    expect(s.pool.allocatedBytes).toBe(0);
    expect(() => s.pt.iovaToPhys(0)).toThrow();
  });
});

describe('malformed tables', () => {
  it('a table pointer into MMIO or outside RAM makes walks fail cleanly', () => {
    for (const bad of [MMIO_BASE, 0x7_0000_0000]) {
      const s = setup();
      expect(s.pt.mapPages(0x1000, 0x1000, SZ_4K, 1, RW).ret).toBe(0);
      const e2 = entryAddr(s.pt, 0, 2);
      s.memory.store64(e2, (bad % 2 ** 32) | 3, Math.floor(bad / 2 ** 32));
      expect(s.pt.iovaToPhys(0x1000)).toBe(0);
      expect(s.pt.pgtableWalk(0x1000).ret).toBe(-EFAULT);
      expect(s.pt.mapPages(0x2000, 0x2000, SZ_4K, 1, RW)).toEqual({ ret: -EFAULT, mapped: 0 });
      expect(s.pt.unmapPages(0x1000, SZ_4K, 1, null)).toBe(0);
      // Unmapping the 2M entry as a unit "frees" a table this instance never held.
      expect(s.pt.unmapPages(0, SZ_2M, 1, null)).toBe(SZ_2M);
      expect(s.pt.strayFrees).toBe(1);
      expect(() => s.pt.free()).not.toThrow();
      // The L3 table that was orphaned by the corruption stays allocated: Linux leaks it too.
      expect(s.pool.allocatedBytes).toBe(SZ_4K);
    }
  });

  it('a cycle back to the PGD, a reserved L3 encoding and junk invalid entries terminate', () => {
    const s = setup({ ias: 48 });
    expect(s.pt.mapPages(0x1000, 0x1000, SZ_4K, 1, RW).ret).toBe(0);
    const e1 = entryAddr(s.pt, 0, 1);
    const e3 = entryAddr(s.pt, 0x1000, 3);
    s.memory.store64(e3, 0x1001, 0);
    expect(s.pt.iovaToPhys(0x1000)).toBe(0);
    // L1[1] -> PGD: the walk reads PGD as L2 and L1 as L3, and stops after the last level,
    // taking L1[1] (a type-3 entry at level 3) for a page that maps the PGD itself.
    s.memory.store64(e1 + 8, s.pt.pgd | 3, 0);
    expect(s.pt.iovaToPhys(SZ_1G + 0x1000 + 0x10)).toBe(s.pt.pgd + 0x10);
    expect(s.pt.pgtableWalk(SZ_1G + 0x1000).ptes.every((p) => p !== undefined)).toBe(true);
    expect(s.pt.mapPages(SZ_1G + SZ_2M, 0, SZ_4K, 1, RW).ret).toBe(0);
    // Emptiness is pte == 0 (§3.3): a non-zero invalid entry is not replaced by a new table but
    // followed as one by map (here to an address outside RAM), while lookups reject it.
    s.memory.store64(e1 + 16, 0xdead_0000, 0);
    expect(s.pt.iovaToPhys(2 * SZ_1G)).toBe(0);
    const held = s.pool.allocatedBytes;
    expect(s.pt.mapPages(2 * SZ_1G, 0, SZ_4K, 1, RW)).toEqual({ ret: -EFAULT, mapped: 0 });
    expect(s.pool.allocatedBytes).toBe(held);
    expect(s.memory.peek64(e1 + 16)).toEqual({ lo: 0xdead_0000, hi: 0 });
    expect(() => s.pt.walkTree({})).not.toThrow();
    expect(() => s.pt.free()).not.toThrow();
  });
});

// --- Property: random map/unmap sequences against an abstract tree ---

interface Geo {
  start: number;
  ptes: number;
  pgdEntries: number;
  sizes: number[];
  ias: number;
  oas: number;
  bs: (level: number) => number;
}

type RefEntry = { kind: 'table' } | { kind: 'leaf'; pa: number };

/**
 * What should be mapped, as an abstract tree keyed by (level, base IOVA): which entries are
 * tables and which are leaves, with the rules of §3.4/§3.5 stated on that tree.
 */
class RefModel {
  readonly entries = new Map<string, RefEntry & { level: number; base: number }>();
  flushWalks = 0;
  addPages = 0;

  constructor(private readonly g: Geo) {}

  key(level: number, iova: number): string {
    const s = this.g.bs(level);
    return `${level}:${iova - (iova % s)}`;
  }

  get(level: number, iova: number): RefEntry | undefined {
    return this.entries.get(this.key(level, iova));
  }

  private set(level: number, iova: number, e: RefEntry): void {
    const s = this.g.bs(level);
    this.entries.set(this.key(level, iova), { ...e, level, base: iova - (iova % s) });
  }

  private removeSubtree(level: number, base: number): void {
    const end = base + this.g.bs(level);
    for (const [k, e] of this.entries) if (e.level >= level && e.base >= base && e.base < end) this.entries.delete(k);
  }

  private levelOf(size: number): number | undefined {
    if (!this.g.sizes.includes(size)) return undefined;
    for (let l = this.g.start; l <= 3; l++) if (this.g.bs(l) === size) return l;
    return undefined;
  }

  private batch(iova: number, level: number, count: number): number {
    const idx = Math.floor(iova / this.g.bs(level));
    return Math.min(count, this.g.ptes - (idx % this.g.ptes));
  }

  map(iova: number, pa: number, size: number, count: number, prot: number): { ret: number; mapped: number } {
    const level = this.levelOf(size);
    if (level === undefined) return { ret: -EINVAL, mapped: 0 };
    if (iova >= 2 ** this.g.ias || pa >= 2 ** this.g.oas) return { ret: -ERANGE, mapped: 0 };
    if ((prot & RW) === 0) return { ret: -EINVAL, mapped: 0 };
    for (let l = this.g.start; l < level; l++) {
      const e = this.get(l, iova);
      if (e === undefined) this.set(l, iova, { kind: 'table' });
      else if (e.kind === 'leaf') return { ret: -EEXIST, mapped: 0 };
    }
    const n = this.batch(iova, level, count);
    for (let i = 0; i < n; i++) {
      const e = this.get(level, iova + i * size);
      if (e?.kind === 'leaf') return { ret: -EEXIST, mapped: 0 };
      if (e?.kind === 'table') {
        this.removeSubtree(level, iova + i * size);
        this.flushWalks++;
      }
    }
    for (let i = 0; i < n; i++) this.set(level, iova + i * size, { kind: 'leaf', pa: pa + i * size });
    return { ret: 0, mapped: n * size };
  }

  unmap(iova: number, size: number, count: number, withGather: boolean): number {
    const level = this.levelOf(size);
    if (level === undefined || count === 0 || iova >= 2 ** this.g.ias) return 0;
    for (let l = this.g.start; l < level; l++) {
      const e = this.get(l, iova);
      if (e === undefined || e.kind === 'leaf') return 0;
    }
    const n = this.batch(iova, level, count);
    let i = 0;
    for (; i < n; i++) {
      const e = this.get(level, iova + i * size);
      if (e === undefined) break;
      if (e.kind === 'table') {
        this.flushWalks++;
        this.removeSubtree(level, iova + i * size);
      } else {
        this.entries.delete(this.key(level, iova + i * size));
      }
    }
    if (withGather) this.addPages += i;
    return i * size;
  }

  translate(iova: number): number {
    for (let l = this.g.start; l <= 3; l++) {
      const e = this.get(l, iova);
      if (e === undefined) return 0;
      if (e.kind === 'leaf') return e.pa + (iova % this.g.bs(l));
    }
    return 0;
  }

  tables(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.kind === 'table') n++;
    return n;
  }

  leaves(): string[] {
    const out: string[] = [];
    for (const e of this.entries.values()) if (e.kind === 'leaf') out.push(`${e.level}:${e.base}:${e.pa}`);
    return out.sort();
  }
}

type Op =
  | { kind: 'map'; iova: number; pa: number; size: number; count: number; prot: number }
  | { kind: 'unmap'; iova: number; size: number; count: number; gather: boolean }
  | { kind: 'probe'; iova: number };

const PROP_CONFIGS = [
  { name: '4K ias 32 (4-entry PGD)', bitmap: BM_4K, ias: 32, oas: 40 },
  { name: '4K ias 40 oas 40 (2 concatenated)', bitmap: BM_4K, ias: 40, oas: 40 },
  { name: '16K ias 40 oas 40 (16 concatenated)', bitmap: BM_16K, ias: 40, oas: 40 },
  { name: '64K ias 42', bitmap: BM_64K, ias: 42, oas: 48 },
];

function geoOf(pt: IoPgtableArm, cfg: IoPgtableCfg): Geo {
  const sizes: number[] = [];
  for (let l = 3; l >= pt.startLevel; l--) if (Math.floor(cfg.pgsizeBitmap / pt.blockSize(l)) % 2 === 1) sizes.push(pt.blockSize(l));
  return { start: pt.startLevel, ptes: pt.ptesPerTable, pgdEntries: pt.geometry.pgdEntries, sizes, ias: cfg.ias, oas: cfg.oas, bs: (l) => pt.blockSize(l) };
}

/** IOVAs built from indices near table-page edges, so operations collide and cross batches. */
function arbOps(g: Geo): fc.Arbitrary<Op[]> {
  const startIdx = [...new Set([0, 1, g.ptes - 1, g.ptes, g.pgdEntries - 2, g.pgdEntries - 1].filter((i) => i >= 0 && i < g.pgdEntries))];
  const lowIdx = [0, 1, 2, g.ptes - 2, g.ptes - 1];
  const arbIova = (level: number): fc.Arbitrary<number> =>
    fc.tuple(fc.constantFrom(...startIdx), fc.array(fc.constantFrom(...lowIdx), { minLength: 3, maxLength: 3 })).map(([top, low]) => {
      let iova = top * g.bs(g.start);
      for (let l = g.start + 1; l <= level; l++) iova += (low[l - g.start - 1] ?? 0) * g.bs(l);
      return iova;
    });
  const arbSizeLevel = fc.constantFrom(...g.sizes).map((size) => {
    let level = 3;
    while (g.bs(level) !== size) level--;
    return { size, level };
  });
  const arbCount = (iova: number, size: number): fc.Arbitrary<number> =>
    fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 3 }), fc.integer({ min: g.ptes - 2, max: g.ptes + 2 })).map((c) => Math.max(1, Math.min(c, (2 ** g.ias - iova) / size)));
  const arbMap = arbSizeLevel.chain(({ size, level }) =>
    arbIova(level).chain((iova) =>
      fc.record({
        kind: fc.constant('map' as const),
        iova: fc.constant(iova),
        pa: fc.maxSafeNat().map((x) => (x % (2 ** g.oas / size)) * size),
        size: fc.oneof({ weight: 12, arbitrary: fc.constant(size) }, { weight: 1, arbitrary: fc.constantFrom(0, size * 2 ** 4, 0x2000) }),
        count: arbCount(iova, size),
        prot: fc.constantFrom(RW | IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE | IOMMU_NOEXEC, RW, 0, IOMMU_CACHE),
      }),
    ),
  );
  const arbUnmap = arbSizeLevel.chain(({ size, level }) =>
    arbIova(level).chain((iova) =>
      fc.record({ kind: fc.constant('unmap' as const), iova: fc.constant(iova), size: fc.constant(size), count: arbCount(iova, size), gather: fc.boolean() }),
    ),
  );
  const arbProbe = arbIova(3).chain((iova) => fc.record({ kind: fc.constant('probe' as const), iova: fc.integer({ min: 0, max: 0xffff }).map((o) => iova + o) }));
  const arbOutOfRange = fc.record({ kind: fc.constant('map' as const), iova: fc.constant(2 ** g.ias), pa: fc.constant(0), size: fc.constant(g.sizes[0] ?? SZ_4K), count: fc.constant(1), prot: fc.constant(RW) });
  return fc.array(fc.oneof({ weight: 6, arbitrary: arbMap }, { weight: 5, arbitrary: arbUnmap }, { weight: 2, arbitrary: arbProbe }, { weight: 1, arbitrary: arbOutOfRange }), { minLength: 1, maxLength: 30 });
}

describe('property: random map/unmap sequences match an abstract tree', () => {
  for (const c of PROP_CONFIGS) {
    it(c.name, () => {
      const probe = setup({ bitmap: c.bitmap, ias: c.ias, oas: c.oas });
      const g = geoOf(probe.pt, probe.cfg);
      fc.assert(
        fc.property(arbOps(g), (ops) => {
          const s = setup({ bitmap: c.bitmap, ias: c.ias, oas: c.oas });
          const ref = new RefModel(g);
          let walks = 0;
          let adds = 0;
          for (const op of ops) {
            if (op.kind === 'map') {
              expect(s.pt.mapPages(op.iova, op.pa, op.size, op.count, op.prot)).toEqual(ref.map(op.iova, op.pa, op.size, op.count, op.prot));
            } else if (op.kind === 'unmap') {
              const gather = op.gather ? iommuIotlbGatherInit() : null;
              expect(s.pt.unmapPages(op.iova, op.size, op.count, gather)).toBe(ref.unmap(op.iova, op.size, op.count, op.gather));
            }
            // Beyond the IAS the start-level index wraps (Linux does not check), the model does not.
            if (op.iova < 2 ** c.ias) expect(s.pt.iovaToPhys(op.iova)).toBe(ref.translate(op.iova));
          }
          for (const call of s.calls) {
            if (call.op === 'walk') walks++;
            if (call.op === 'add') adds++;
          }
          expect(walks).toBe(ref.flushWalks);
          expect(adds).toBe(ref.addPages);
          const leaves: string[] = [];
          s.pt.walkTree({ leaf: (iova, level, _pte, oa) => leaves.push(`${level}:${iova}:${oa}`) });
          expect(leaves.sort()).toEqual(ref.leaves());
          // No leaked table pages: what the allocator has handed out is exactly what is reachable.
          let reachable = 0;
          s.pt.walkTree({ table: (pa) => (reachable += pa === s.pt.pgd ? s.pt.pgdAllocBytes : s.pt.granuleBytes) });
          expect(tableCount(s.pt)).toBe(ref.tables() + 1);
          expect(s.pool.allocatedBytes).toBe(reachable);
          s.pt.free();
          expect(s.pool.allocatedBytes).toBe(0);
        }),
        { numRuns: 60 },
      );
    });
  }
});
