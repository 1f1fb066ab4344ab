/**
 * io-pgtable-arm, ARM_64_LPAE_S2 and ARM_64_LPAE_S1 formats (drivers/iommu/io-pgtable-arm.c), over
 * PhysicalMemory: geometry and VTCR / TCR (stage2-pgtable.md §3.2), PTE construction (§3.3; the
 * S1 branch of arm_lpae_prot_to_pte for the host's DMA domains, issue 13), map_pages (§3.4),
 * unmap_pages with the current behaviour and, behind `splitOnUnmap`, the ≤ 6.13 block split
 * (§3.5), lookup and walk (§3.6), the non-coherent SW_SYNC protocol (§3.7).
 *
 * Descriptors are handled as two u32 halves (`lo` = bits 31:0, `hi` = bits 63:32); addresses are
 * plain numbers below 2^53. The recursion mirrors Linux's so that the order of stores, syncs,
 * TLB callbacks and frees is the kernel's.
 */
import { EEXIST, EFAULT, EINVAL, ENOMEM, ERANGE } from '../arch/errno.js';
import { type Granule, GRANULE_16K, GRANULE_4K, GRANULE_64K, paSizeEncoding } from '../arch/granule.js';
import { ACCESS_OK, type PhysicalMemory, type Word64 } from '../arch/physical-memory.js';
import { type U64, u64 } from '../arch/u64.js';
import { type TablePageAllocator } from './page-allocator.js';
import { type IommuIotlbGather, and53, andNot53, fls53, ffs53, iommuIotlbGatherQueued, or53 } from './iotlb-gather.js';

// --- Public constants ---

/** IOMMU prot flags (include/linux/iommu.h). */
export const IOMMU_READ = 1 << 0;
export const IOMMU_WRITE = 1 << 1;
export const IOMMU_CACHE = 1 << 2;
export const IOMMU_NOEXEC = 1 << 3;
export const IOMMU_MMIO = 1 << 4;
export const IOMMU_PRIV = 1 << 5;

/** io-pgtable quirk bits (§3.1). */
export const IO_PGTABLE_QUIRK_ARM_NS = 1 << 0;
export const IO_PGTABLE_QUIRK_NO_PERMS = 1 << 1;
export const IO_PGTABLE_QUIRK_ARM_MTK_EXT = 1 << 3;
export const IO_PGTABLE_QUIRK_ARM_MTK_TTBR_EXT = 1 << 4;
export const IO_PGTABLE_QUIRK_ARM_TTBR1 = 1 << 5;
export const IO_PGTABLE_QUIRK_ARM_OUTER_WBWA = 1 << 6;
export const IO_PGTABLE_QUIRK_ARM_HD = 1 << 7;
export const IO_PGTABLE_QUIRK_ARM_S2FWB = 1 << 8;
export const IO_PGTABLE_QUIRK_NO_WARN = 1 << 9;

export const SZ_4K = 0x1000;
export const SZ_16K = 0x4000;
export const SZ_64K = 0x1_0000;
export const SZ_2M = 0x20_0000;
export const SZ_32M = 0x200_0000;
export const SZ_512M = 0x2000_0000;
export const SZ_1G = 0x4000_0000;
export const SZ_4T = 2 ** 42;

/** Levels are Arm-numbered; 4 is ARM_LPAE_MAX_LEVELS. */
const MAX_LEVELS = 4;
const LAST_LEVEL = 3;

// PTE bits (§3.3). The `HI` ones are bit numbers minus 32 in the high half.
const PTE_TYPE_MASK = 3;
const PTE_TYPE_BLOCK = 1;
const PTE_TYPE_TABLE = 3;
const PTE_TYPE_PAGE = 3;
const PTE_AF = 1 << 10;
const PTE_SH_OS = 2 << 8;
const PTE_SH_IS = 3 << 8;
const PTE_HAP_READ = 1 << 6;
const PTE_HAP_WRITE = 2 << 6;
const PTE_MEMATTR_OIWB = 0xf << 2;
const PTE_MEMATTR_NC = 0x5 << 2;
const PTE_MEMATTR_DEV = 0x1 << 2;
const PTE_MEMATTR_FWB_WB = 0x6 << 2;
const PTE_HI_XN = 3 << (53 - 32);
// Stage-1 only: AP[2] read-only (bit 7), AP[1] unprivileged (bit 6), nG (bit 11), AttrIndx (4:2).
const PTE_S1_AP_RDONLY = 1 << 7;
const PTE_S1_AP_UNPRIV = 1 << 6;
const PTE_S1_NG = 1 << 11;
/** ARM_LPAE_MAIR_ATTR_IDX_CACHE / _DEV in AttrIndx; NC is index 0. */
const PTE_S1_ATTRIDX_CACHE = 1 << 2;
const PTE_S1_ATTRIDX_DEV = 2 << 2;
const PTE_HI_SW_SYNC = 1 << (55 - 32);
/** split_blk_unmap keeps bits 11:2 and 54:53 of the block (§3.5); Contiguous (52) is dropped. */
const PTE_ATTR_LO_MASK = 0x3ff << 2;
const PTE_ATTR_HI_MASK = 3 << (53 - 32);

const TWO_POW_32 = 0x1_0000_0000;
const TWO_POW_36 = 2 ** 36;

// --- Configuration ---

export interface IoPgtableS2Vtcr {
  /** PS from oas. */
  readonly ps: number;
  /** TG0 encoding: 0 4K, 1 64K, 2 16K. */
  readonly tg: number;
  readonly sh: number;
  readonly orgn: number;
  readonly irgn: number;
  /** SL0. */
  readonly sl: number;
  /** T0SZ = 64 − ias. */
  readonly tsz: number;
}

export interface IoPgtableS2Regs {
  readonly vttbr: number;
  readonly vtcr: IoPgtableS2Vtcr;
}

/** The TCR fields `arm_64_lpae_alloc_pgtable_s1` computes (what a CD's TCR half takes). */
export interface IoPgtableS1Tcr {
  /** TG0 encoding: 0 4K, 1 64K, 2 16K. */
  readonly tg: number;
  readonly sh: number;
  readonly orgn: number;
  readonly irgn: number;
  /** IPS from oas. */
  readonly ips: number;
  /** T0SZ = 64 − ias. */
  readonly tsz: number;
}

export interface IoPgtableS1Regs {
  readonly ttbr: number;
  readonly tcr: IoPgtableS1Tcr;
}

/** The driver's flush callbacks (`struct iommu_flush_ops`), cookie omitted. */
export interface IommuFlushOps {
  tlbFlushAll(): void;
  /** Synchronous invalidation of walk caches and leaves over [iova, iova + size). */
  tlbFlushWalk(iova: number, size: number, granule: number): void;
  /** Queue a leaf invalidation (drivers call `iommuIotlbGatherAddPage`). */
  tlbAddPage(gather: IommuIotlbGather | null, iova: number, granule: number): void;
}

/**
 * `struct io_pgtable_cfg` for the S2 format. Like Linux, `allocIoPgtableArmS2` modifies it: the
 * restricted `pgsizeBitmap`, the clipped `ias`/`oas`, and `s2` (VTTBR and VTCR fields).
 */
export interface IoPgtableCfg {
  quirks: number;
  pgsizeBitmap: number;
  ias: number;
  oas: number;
  coherentWalk: boolean;
  tlb: IommuFlushOps | null;
  s2?: IoPgtableS2Regs;
  s1?: IoPgtableS1Regs;
}

export interface IoPgtableArmOptions {
  /**
   * Re-enable the historical split of a block on partial unmap (`arm_lpae_split_blk_unmap`,
   * ≤ v6.13, §3.5). Choice: only the split itself comes back; everything else stays current
   * (mandatory-only concatenation, the fixed max_entries, tlb_add_page for whole-entry unmaps).
   */
  readonly splitOnUnmap?: boolean;
  /** The kernel's PAGE_SIZE, used by restrict_pgsizes to pick the granule. Default 4 KiB. */
  readonly kernelPageSize?: number;
  /** A cache-clean ("sync") of [pa, pa + bytes) for a non-coherent walker (§3.7). */
  readonly onSync?: (pa: number, bytes: number) => void;
  /** Called for every WARN the kernel would print (those NO_WARN silences are not reported). */
  readonly onWarn?: (message: string) => void;
}

export interface S2Geometry {
  readonly granule: Granule;
  readonly pgShift: number;
  readonly bitsPerLevel: number;
  readonly levels: number;
  readonly startLevel: number;
  readonly pgdBits: number;
  readonly pgdEntries: number;
  /** ARM_LPAE_PGD_SIZE: 8 bytes per entry (Linux allocates at least 64). */
  readonly pgdBytes: number;
  /** Whether the mandatory-concatenation rule moved the start level down (§3.2). */
  readonly concatenated: boolean;
  readonly vtcr: IoPgtableS2Vtcr;
  /** Which descriptor format the PTEs take (the S1 geometry never concatenates). */
  readonly format: 's1' | 's2';
}

export interface S2CfgResult {
  readonly pgsizeBitmap: number;
  readonly ias: number;
  readonly oas: number;
}

export type S2GeometryResult =
  | ({ readonly ok: true; readonly geometry: S2Geometry } & S2CfgResult)
  | ({ readonly ok: false; readonly reason: string } & S2CfgResult);

const S2_MAX_CONCAT_PAGES = 16;
const MAX_ADDR_BITS = 52;

/** arm_lpae_restrict_pgsizes (§3.2). */
function restrictPgsizes(bitmap: number, ias: number, oas: number, pageSize: number): S2CfgResult {
  let granule = 0;
  if (and53(bitmap, pageSize) !== 0) granule = pageSize;
  else if (and53(bitmap, pageSize - 1) !== 0) granule = 2 ** fls53(and53(bitmap, pageSize - 1));
  else if (andNot53(bitmap, pageSize - 1) !== 0) granule = 2 ** ffs53(andNot53(bitmap, pageSize - 1));
  let pageSizes = 0;
  let maxAddrBits = 48;
  if (granule === SZ_4K) pageSizes = SZ_4K + SZ_2M + SZ_1G;
  else if (granule === SZ_16K) pageSizes = SZ_16K + SZ_32M;
  else if (granule === SZ_64K) {
    maxAddrBits = 52;
    pageSizes = SZ_64K + SZ_512M + (oas > 48 ? SZ_4T : 0);
  }
  return { pgsizeBitmap: and53(bitmap, pageSizes), ias: Math.min(ias, maxAddrBits), oas: Math.min(oas, maxAddrBits) };
}

/** arm_lpae_concat_mandatory (§3.2), on the already clipped ias/oas. */
function concatMandatory(granule: number, startLevel: number, ias: number, oas: number): boolean {
  if (granule === SZ_16K && startLevel === 0) return oas === 48 || ias === 48;
  if (granule === SZ_4K && startLevel === 0) return oas === 40 || oas === 42;
  return granule === SZ_16K && startLevel === 1 && oas === 40;
}

function isSafeNat(x: number): boolean {
  return Number.isSafeInteger(x) && x >= 0;
}

/**
 * The S2 geometry and VTCR for a configuration, without allocating (§3.2, §4.3). Also reports the
 * cfg values alloc writes back, which Linux changes even when the allocation then fails.
 */
export function computeS2Geometry(cfg: Pick<IoPgtableCfg, 'quirks' | 'pgsizeBitmap' | 'ias' | 'oas' | 'coherentWalk'>, kernelPageSize = SZ_4K): S2GeometryResult {
  return computeLpaeGeometry(cfg, kernelPageSize, 's2');
}

function computeLpaeGeometry(cfg: Pick<IoPgtableCfg, 'quirks' | 'pgsizeBitmap' | 'ias' | 'oas' | 'coherentWalk'>, kernelPageSize: number, format: 's1' | 's2'): S2GeometryResult {
  const fail = (reason: string, r: S2CfgResult): S2GeometryResult => ({ ok: false, reason, ...r });
  const unchanged: S2CfgResult = { pgsizeBitmap: cfg.pgsizeBitmap, ias: cfg.ias, oas: cfg.oas };
  if (!isSafeNat(cfg.pgsizeBitmap) || !isSafeNat(cfg.ias) || !isSafeNat(cfg.oas)) {
    return fail('pgsize_bitmap, ias and oas must be non-negative integers', unchanged);
  }
  const quirksOk = format === 's2' ? IO_PGTABLE_QUIRK_ARM_S2FWB | IO_PGTABLE_QUIRK_NO_WARN : S1_QUIRKS;
  if (andNot53(cfg.quirks >>> 0, quirksOk) !== 0) {
    return fail(format === 's2' ? 'S2 accepts only the ARM_S2FWB and NO_WARN quirks' : 'S1 accepts only the OUTER_WBWA and NO_WARN quirks here (NS, TTBR1 and HD are not modelled)', unchanged);
  }
  const r = restrictPgsizes(cfg.pgsizeBitmap, cfg.ias, cfg.oas, kernelPageSize);
  if (and53(r.pgsizeBitmap, SZ_4K + SZ_16K + SZ_64K) === 0) return fail('no 4K, 16K or 64K granule in pgsize_bitmap', r);
  if (r.ias > MAX_ADDR_BITS || r.oas > MAX_ADDR_BITS) return fail('ias/oas above 52', r);
  const pgShift = ffs53(r.pgsizeBitmap);
  const bitsPerLevel = pgShift - 3;
  const vaBits = r.ias - pgShift;
  // Choice: Linux does not guard this; an IAS that resolves no bit above the page has no table.
  if (vaBits < 1) return fail(`ias ${r.ias} leaves no bit above the ${2 ** pgShift}-byte page`, r);
  const levels = Math.ceil(vaBits / bitsPerLevel);
  let startLevel = MAX_LEVELS - levels;
  let pgdBits = vaBits - bitsPerLevel * (levels - 1);
  const granuleBytes = 2 ** pgShift;
  let concatenated = false;
  if (format === 's2' && concatMandatory(granuleBytes, startLevel, r.ias, r.oas)) {
    if (2 ** pgdBits > S2_MAX_CONCAT_PAGES) return fail('mandatory concatenation would need more than 16 tables', r);
    pgdBits += bitsPerLevel;
    startLevel++;
    concatenated = true;
  }
  const ps = paSizeEncoding(r.oas);
  if (ps === undefined) return fail(`oas ${r.oas} has no PS encoding`, r);
  const granule = pgShift === 12 ? GRANULE_4K : pgShift === 14 ? GRANULE_16K : GRANULE_64K;
  // The 4K SL0 encoding is offset by one from 16K/64K (§1.7).
  const sl = startLevel + (granule === GRANULE_4K ? 1 : 0);
  const vtcr: IoPgtableS2Vtcr = {
    ps,
    tg: granule.tg0,
    sh: cfg.coherentWalk ? 3 : 2,
    irgn: cfg.coherentWalk ? 1 : 0,
    orgn: cfg.coherentWalk ? 1 : 0,
    sl: ~sl & 3,
    tsz: 64 - r.ias,
  };
  const pgdEntries = 2 ** pgdBits;
  return {
    ok: true,
    ...r,
    geometry: { granule, pgShift, bitsPerLevel, levels, startLevel, pgdBits, pgdEntries, pgdBytes: 8 * pgdEntries, concatenated, vtcr, format },
  };
}

/**
 * `alloc_io_pgtable_ops(ARM_64_LPAE_S2, cfg)`: returns null on any failure, like Linux. On
 * success `cfg` holds the restricted bitmap, clipped ias/oas, and `s2` (VTTBR, VTCR fields).
 */
export function allocIoPgtableArmS2(cfg: IoPgtableCfg, memory: PhysicalMemory, allocator: TablePageAllocator, options: IoPgtableArmOptions = {}): IoPgtableArm | null {
  const result = computeS2Geometry(cfg, options.kernelPageSize ?? SZ_4K);
  cfg.pgsizeBitmap = result.pgsizeBitmap;
  cfg.ias = result.ias;
  cfg.oas = result.oas;
  if (!result.ok) return null;
  // Choice (brief): the top table takes at least a 4 KiB page, which also satisfies Linux's
  // 64-byte minimum; a concatenated PGD takes its whole size-aligned block.
  const pgdAllocBytes = Math.max(result.geometry.pgdBytes, SZ_4K);
  const pgd = allocator.alloc(pgdAllocBytes);
  if (pgd === undefined) return null;
  const pgtable = new IoPgtableArm(cfg, result.geometry, memory, allocator, options, pgd, pgdAllocBytes);
  cfg.s2 = { vttbr: pgd, vtcr: result.geometry.vtcr };
  return pgtable;
}

/** Quirks of `arm_64_lpae_alloc_pgtable_s1` this model implements (NS, TTBR1 and HD are not modelled). */
const S1_QUIRKS = IO_PGTABLE_QUIRK_ARM_OUTER_WBWA | IO_PGTABLE_QUIRK_NO_WARN;

export type S1GeometryResult = S2GeometryResult & { readonly tcr?: IoPgtableS1Tcr };

/**
 * The S1 geometry (`arm_lpae_alloc_pgtable`, no concatenation) and its TCR
 * (`arm_64_lpae_alloc_pgtable_s1`): coherent walks inner-shareable write-back write-allocate,
 * others outer-shareable non-cacheable. The geometry's `vtcr` is unused for S1.
 */
export function computeS1Geometry(cfg: Pick<IoPgtableCfg, 'quirks' | 'pgsizeBitmap' | 'ias' | 'oas' | 'coherentWalk'>, kernelPageSize = SZ_4K): S1GeometryResult {
  const r = computeLpaeGeometry(cfg, kernelPageSize, 's1');
  if (!r.ok) return r;
  const g = r.geometry;
  const tcr: IoPgtableS1Tcr = {
    tg: g.granule.tg0,
    sh: cfg.coherentWalk ? 3 : 2,
    irgn: cfg.coherentWalk ? 1 : 0,
    orgn: cfg.coherentWalk || (cfg.quirks & IO_PGTABLE_QUIRK_ARM_OUTER_WBWA) !== 0 ? 1 : 0,
    ips: g.vtcr.ps,
    tsz: 64 - r.ias,
  };
  return { ...r, tcr };
}

/**
 * `alloc_io_pgtable_ops(ARM_64_LPAE_S1, cfg)`: null on failure; on success `cfg.s1` holds the
 * TTBR (the PGD) and the TCR fields.
 */
export function allocIoPgtableArmS1(cfg: IoPgtableCfg, memory: PhysicalMemory, allocator: TablePageAllocator, options: IoPgtableArmOptions = {}): IoPgtableArm | null {
  const result = computeS1Geometry(cfg, options.kernelPageSize ?? SZ_4K);
  cfg.pgsizeBitmap = result.pgsizeBitmap;
  cfg.ias = result.ias;
  cfg.oas = result.oas;
  if (!result.ok || result.tcr === undefined) return null;
  const pgdAllocBytes = Math.max(result.geometry.pgdBytes, SZ_4K);
  const pgd = allocator.alloc(pgdAllocBytes);
  if (pgd === undefined) return null;
  const pgtable = new IoPgtableArm(cfg, result.geometry, memory, allocator, options, pgd, pgdAllocBytes);
  cfg.s1 = { ttbr: pgd, tcr: result.tcr };
  return pgtable;
}

export interface MapResult {
  /** 0 or a negative errno. */
  readonly ret: number;
  /** Bytes mapped by this call (Linux's `*mapped` increment), also on error. */
  readonly mapped: number;
}

export interface PgtableWalkResult {
  /** 0, -EINVAL (Linux: an empty or non-table entry above a leaf), -EFAULT (choice: aborted load). */
  readonly ret: number;
  /** The entry seen at each level (index = Arm level), undefined where the walk did not reach. */
  readonly ptes: (U64 | undefined)[];
}

/**
 * One ARM_64_LPAE_S2 table. Create it with `allocIoPgtableArmS2`. All operations return errno
 * values as Linux does; none throws for any content of the tables (a corrupted entry makes a walk
 * fail, see `strayFrees` and the `-EFAULT` choices), only use after `free()` throws.
 */
export class IoPgtableArm {
  readonly cfg: IoPgtableCfg;
  readonly geometry: S2Geometry;
  /** Physical address of the top table (VTTBR). */
  readonly pgd: number;
  /** Bytes requested from the allocator for the top table. */
  readonly pgdAllocBytes: number;
  readonly granuleBytes: number;
  readonly startLevel: number;
  readonly ptesPerTable: number;
  /** Number of sync events (non-coherent walk only). */
  syncEvents = 0;
  /** Number of WARNs (NO_WARN-silenced ones excluded). */
  warnings = 0;
  /**
   * Frees of a table address this instance does not hold (only reachable through corrupted
   * entries). Choice: they are counted, not passed to the allocator; Linux would free memory it
   * does not own.
   */
  strayFrees = 0;

  private readonly memory: PhysicalMemory;
  private readonly allocator: TablePageAllocator;
  private readonly options: IoPgtableArmOptions;
  private readonly coherent: boolean;
  private readonly noWarn: boolean;
  private readonly splitOnUnmap: boolean;
  private readonly blockSizes: number[] = [];
  private readonly idxEntries: number[] = [];
  private readonly tables = new Map<number, number>();
  private readonly scratch: Word64 = { lo: 0, hi: 0 };
  /** Accumulates `*mapped` across the recursion of one map call. */
  private mappedAcc = 0;
  /** Old value returned by the last cmpxchg. */
  private oldLo = 0;
  private oldHi = 0;
  private freed = false;

  /** Use `allocIoPgtableArmS2`; the constructor trusts its arguments. */
  constructor(cfg: IoPgtableCfg, geometry: S2Geometry, memory: PhysicalMemory, allocator: TablePageAllocator, options: IoPgtableArmOptions, pgd: number, pgdAllocBytes: number) {
    this.cfg = cfg;
    this.geometry = geometry;
    this.memory = memory;
    this.allocator = allocator;
    this.options = options;
    this.pgd = pgd;
    this.pgdAllocBytes = pgdAllocBytes;
    this.granuleBytes = 2 ** geometry.pgShift;
    this.startLevel = geometry.startLevel;
    this.ptesPerTable = 2 ** geometry.bitsPerLevel;
    this.coherent = cfg.coherentWalk;
    this.noWarn = (cfg.quirks & IO_PGTABLE_QUIRK_NO_WARN) !== 0;
    this.splitOnUnmap = options.splitOnUnmap === true;
    for (let l = 0; l < MAX_LEVELS; l++) {
      this.blockSizes.push(2 ** ((MAX_LEVELS - l) * geometry.bitsPerLevel + 3));
      this.idxEntries.push(l === geometry.startLevel ? geometry.pgdEntries : this.ptesPerTable);
    }
    this.tables.set(pgd, pgdAllocBytes);
    this.syncRange(pgd, pgdAllocBytes);
  }

  // --- Geometry helpers ---

  /** ARM_LPAE_BLOCK_SIZE(level). */
  blockSize(level: number): number {
    return this.blockSizes[level] ?? 0;
  }

  /** ARM_LPAE_LVL_IDX: the start level indexes the whole (possibly concatenated) PGD. */
  lvlIdx(iova: number, level: number): number {
    return Math.floor(iova / (this.blockSizes[level] as number)) % (this.idxEntries[level] as number);
  }

  /** Entries left in the current table page (the 2024 concatenation fix, §6). */
  private maxEntries(i: number): number {
    return this.ptesPerTable - (i % this.ptesPerTable);
  }

  // --- PTE codec (§1.5, §3.3) ---

  /** paddr_to_iopte, low half: (pa | pa >> 36) & GENMASK(47, 12). */
  private static pteLoFor(pa: number): number {
    return (((pa % TWO_POW_32) | Math.floor(pa / TWO_POW_36)) & 0xffff_f000) >>> 0;
  }

  private static pteHiFor(pa: number): number {
    return Math.floor(pa / TWO_POW_32) & 0xffff;
  }

  /** iopte_to_paddr: with 64K pages bits 15:12 carry PA[51:48]. */
  private ioptePaddr(lo: number, hi: number): number {
    const pLo = (lo & 0xffff_f000) >>> 0;
    const pHi = hi & 0xffff;
    if (this.granuleBytes < SZ_64K) return pHi * TWO_POW_32 + pLo;
    return (pHi | (((pLo >>> 12) & 0xf) << 16)) * TWO_POW_32 + ((pLo & 0xffff_0000) >>> 0);
  }

  private static isLeaf(lo: number, level: number): boolean {
    return (lo & PTE_TYPE_MASK) === (level === LAST_LEVEL ? PTE_TYPE_PAGE : PTE_TYPE_BLOCK);
  }

  private static isTable(lo: number, level: number): boolean {
    return level !== LAST_LEVEL && (lo & PTE_TYPE_MASK) === PTE_TYPE_TABLE;
  }

  /**
   * arm_lpae_prot_to_pte, low half. S2: HAP from READ/WRITE, MemAttr; IOMMU_PRIV has no S2
   * meaning and is ignored. S1: always nG (the domain's ASID), AP[2] for read-only, AP[1] unless
   * PRIV, AttrIndx; note that S1 has no "no access" encoding — map_pages refuses prot 0.
   */
  protLo(prot: number): number {
    if (this.geometry.format === 's1') {
      let s1 = PTE_S1_NG;
      if ((prot & IOMMU_WRITE) === 0 && (prot & IOMMU_READ) !== 0) s1 |= PTE_S1_AP_RDONLY;
      if ((prot & IOMMU_PRIV) === 0) s1 |= PTE_S1_AP_UNPRIV;
      if ((prot & IOMMU_MMIO) !== 0) s1 |= PTE_S1_ATTRIDX_DEV;
      else if ((prot & IOMMU_CACHE) !== 0) s1 |= PTE_S1_ATTRIDX_CACHE;
      s1 |= (prot & IOMMU_CACHE) !== 0 ? PTE_SH_IS : PTE_SH_OS;
      return (s1 | PTE_AF) >>> 0;
    }
    let pte = 0;
    if ((prot & IOMMU_READ) !== 0) pte |= PTE_HAP_READ;
    if ((prot & IOMMU_WRITE) !== 0) pte |= PTE_HAP_WRITE;
    if ((prot & IOMMU_MMIO) !== 0) pte |= PTE_MEMATTR_DEV;
    else if ((prot & IOMMU_CACHE) !== 0) pte |= (this.cfg.quirks & IO_PGTABLE_QUIRK_ARM_S2FWB) !== 0 ? PTE_MEMATTR_FWB_WB : PTE_MEMATTR_OIWB;
    else pte |= PTE_MEMATTR_NC;
    pte |= (prot & IOMMU_CACHE) !== 0 ? PTE_SH_IS : PTE_SH_OS;
    return (pte | PTE_AF) >>> 0;
  }

  protHi(prot: number): number {
    return (prot & IOMMU_NOEXEC) !== 0 ? PTE_HI_XN : 0;
  }

  // --- Memory, sync, warn, table pages ---

  private load(pa: number): boolean {
    return this.memory.load64(pa, this.scratch) === ACCESS_OK;
  }

  private syncRange(pa: number, bytes: number): void {
    if (this.coherent) return;
    this.syncEvents++;
    this.options.onSync?.(pa, bytes);
  }

  private syncPte(ptep: number, entries: number): void {
    this.syncRange(ptep, entries * 8);
  }

  private warn(message: string): void {
    this.warnings++;
    this.options.onWarn?.(message);
  }

  private warnUnlessNoWarn(message: string): void {
    if (!this.noWarn) this.warn(message);
  }

  private allocTable(): number | undefined {
    const pa = this.allocator.alloc(this.granuleBytes);
    if (pa === undefined) return undefined;
    this.tables.set(pa, this.granuleBytes);
    // A non-coherent table page is DMA-mapped (cache-cleaned) when allocated (§3.7).
    this.syncRange(pa, this.granuleBytes);
    return pa;
  }

  private freeTablePage(pa: number): void {
    const bytes = this.tables.get(pa);
    if (bytes === undefined) {
      this.strayFrees++;
      return;
    }
    this.tables.delete(pa);
    this.allocator.free(pa, bytes);
  }

  /** cmpxchg64 on a descriptor; the old value lands in oldLo/oldHi. False if the load aborted. */
  private cmpxchg(ptep: number, curLo: number, curHi: number, newLo: number, newHi: number): boolean {
    if (!this.load(ptep)) return false;
    this.oldLo = this.scratch.lo;
    this.oldHi = this.scratch.hi;
    if (this.oldLo === curLo >>> 0 && this.oldHi === curHi >>> 0) this.memory.store64(ptep, newLo, newHi);
    return true;
  }

  /**
   * arm_lpae_install_table (§3.4): the old entry is left in oldLo/oldHi. With a non-coherent
   * walker the entry is synced and, if this call installed it, re-written with SW_SYNC so later
   * walkers skip the sync.
   */
  private installTable(table: number, ptep: number, curLo: number, curHi: number): boolean {
    const newLo = (IoPgtableArm.pteLoFor(table) | PTE_TYPE_TABLE) >>> 0;
    const newHi = IoPgtableArm.pteHiFor(table);
    if (!this.cmpxchg(ptep, curLo, curHi, newLo, newHi)) return false;
    if (this.coherent || (this.oldHi & PTE_HI_SW_SYNC) !== 0) return true;
    this.syncPte(ptep, 1);
    if (this.oldLo === curLo >>> 0 && this.oldHi === curHi >>> 0) this.memory.store64(ptep, newLo, (newHi | PTE_HI_SW_SYNC) >>> 0);
    return true;
  }

  private writeLeaves(paddr: number, protLo: number, protHi: number, level: number, n: number, ptep: number): void {
    const size = this.blockSizes[level] as number;
    const type = level === LAST_LEVEL ? PTE_TYPE_PAGE : PTE_TYPE_BLOCK;
    for (let i = 0; i < n; i++) {
      const pa = paddr + i * size;
      this.memory.store64(ptep + i * 8, (protLo | type | IoPgtableArm.pteLoFor(pa)) >>> 0, (protHi | IoPgtableArm.pteHiFor(pa)) >>> 0);
    }
    if (n > 0) this.syncPte(ptep, n);
  }

  private checkLive(): void {
    if (this.freed) throw new Error('io-pgtable: used after free()');
  }

  // --- map_pages (§3.4) ---

  /**
   * One page size per call; stops at the end of the current table page and reports what it
   * mapped. Returns -EINVAL (bad pgsize, no READ/WRITE), -ERANGE (iova beyond ias or paddr beyond
   * oas), -EEXIST (a leaf in the way; nothing of that batch written), -ENOMEM, and, as a choice,
   * -EFAULT when a descriptor load aborts (a corrupted table pointer).
   */
  mapPages(iova: number, paddr: number, pgsize: number, pgcount: number, prot: number): MapResult {
    this.checkLive();
    if (!isSafeNat(iova) || !isSafeNat(paddr) || !isSafeNat(pgsize) || !isSafeNat(pgcount)) return { ret: -EINVAL, mapped: 0 };
    if (pgsize === 0 || andNot53(pgsize, this.cfg.pgsizeBitmap) !== 0) {
      this.warn('map_pages: bad pgsize');
      return { ret: -EINVAL, mapped: 0 };
    }
    if (iova >= 2 ** this.cfg.ias || paddr >= 2 ** this.cfg.oas) {
      this.warn('map_pages: address out of range');
      return { ret: -ERANGE, mapped: 0 };
    }
    if ((prot & (IOMMU_READ | IOMMU_WRITE)) === 0) return { ret: -EINVAL, mapped: 0 };
    this.mappedAcc = 0;
    const ret = this.mapAt(iova, paddr, pgsize, pgcount, this.protLo(prot), this.protHi(prot), this.startLevel, this.pgd);
    return { ret, mapped: this.mappedAcc };
  }

  private mapAt(iova: number, paddr: number, size: number, count: number, protLo: number, protHi: number, level: number, table: number): number {
    const i0 = this.lvlIdx(iova, level);
    const ptep = table + i0 * 8;
    if (size === this.blockSizes[level]) {
      const n = Math.min(count, this.maxEntries(i0));
      const ret = this.initPte(iova, paddr, protLo, protHi, level, n, ptep);
      if (ret === 0) this.mappedAcc += n * size;
      return ret;
    }
    if (level >= LAST_LEVEL) {
      this.warn('map: no level for this size');
      return -EINVAL;
    }
    if (!this.load(ptep)) return -EFAULT;
    let lo = this.scratch.lo;
    let hi = this.scratch.hi;
    let next = 0;
    if (lo === 0 && hi === 0) {
      const t = this.allocTable();
      if (t === undefined) return -ENOMEM;
      if (!this.installTable(t, ptep, 0, 0)) {
        this.freeTablePage(t);
        return -EFAULT;
      }
      lo = this.oldLo;
      hi = this.oldHi;
      // Lost a race (never in a single-threaded run): use the winner's table.
      if (lo !== 0 || hi !== 0) this.freeTablePage(t);
      else next = t;
    } else if (!this.coherent && (hi & PTE_HI_SW_SYNC) === 0) {
      this.syncPte(ptep, 1);
    }
    if ((lo !== 0 || hi !== 0) && !IoPgtableArm.isLeaf(lo, level)) {
      next = this.ioptePaddr(lo, hi);
    } else if (lo !== 0 || hi !== 0) {
      this.warnUnlessNoWarn('map: a block already covers the range');
      return -EEXIST;
    }
    return this.mapAt(iova, paddr, size, count, protLo, protHi, level + 1, next);
  }

  /**
   * arm_lpae_init_pte: checks and table removals are interleaved as in Linux, so a table met
   * before a leaf in the same batch is already gone when -EEXIST is returned.
   */
  private initPte(iova: number, paddr: number, protLo: number, protHi: number, level: number, n: number, ptep: number): number {
    const size = this.blockSizes[level] as number;
    for (let i = 0; i < n; i++) {
      if (!this.load(ptep + i * 8)) return -EFAULT;
      const lo = this.scratch.lo;
      if (IoPgtableArm.isLeaf(lo, level)) {
        this.warnUnlessNoWarn('map: a leaf already exists');
        return -EEXIST;
      }
      if ((lo & PTE_TYPE_MASK) === PTE_TYPE_TABLE) {
        const tableBase = ptep - this.lvlIdx(iova, level) * 8;
        if (this.unmapAt(null, iova + i * size, size, 1, level, tableBase) !== size) {
          this.warn('map: could not remove the table under a new block');
          return -EINVAL;
        }
      }
    }
    this.writeLeaves(paddr, protLo, protHi, level, n, ptep);
    return 0;
  }

  // --- unmap_pages (§3.5) ---

  /**
   * Returns the bytes unmapped: whole entries of `pgsize` only, at most to the end of the current
   * table page, stopping at the first empty entry. A partial unmap of a larger leaf returns 0
   * (current) or splits it (`splitOnUnmap`).
   */
  unmapPages(iova: number, pgsize: number, pgcount: number, gather: IommuIotlbGather | null): number {
    this.checkLive();
    if (!isSafeNat(iova) || !isSafeNat(pgsize) || !isSafeNat(pgcount)) return 0;
    if (pgsize === 0 || andNot53(pgsize, this.cfg.pgsizeBitmap) !== 0 || pgcount === 0) {
      this.warn('unmap_pages: bad pgsize or pgcount');
      return 0;
    }
    if (iova >= 2 ** this.cfg.ias) {
      this.warn('unmap_pages: iova out of range');
      return 0;
    }
    return this.unmapAt(gather, iova, pgsize, pgcount, this.startLevel, this.pgd);
  }

  private unmapAt(gather: IommuIotlbGather | null, iova: number, size: number, count: number, level: number, table: number): number {
    if (level >= MAX_LEVELS) {
      this.warn('unmap: walked below the last level');
      return 0;
    }
    const i0 = this.lvlIdx(iova, level);
    const ptep = table + i0 * 8;
    // Choice: an aborted load (corrupted table pointer) unmaps nothing.
    if (!this.load(ptep)) return 0;
    const lo = this.scratch.lo;
    const hi = this.scratch.hi;
    if (lo === 0 && hi === 0) {
      this.warnUnlessNoWarn('unmap: empty entry');
      return 0;
    }
    if (size === this.blockSizes[level]) {
      const n = Math.min(count, this.maxEntries(i0));
      let i = 0;
      for (; i < n; i++) {
        if (!this.load(ptep + i * 8)) break;
        const eLo = this.scratch.lo;
        const eHi = this.scratch.hi;
        if (eLo === 0 && eHi === 0) {
          this.warnUnlessNoWarn('unmap: empty entry');
          break;
        }
        if (!IoPgtableArm.isLeaf(eLo, level)) {
          // Unlink, make the walk caches forget it, and only then free the subtree.
          this.memory.store64(ptep + i * 8, 0, 0);
          this.syncPte(ptep + i * 8, 1);
          this.cfg.tlb?.tlbFlushWalk(iova + i * size, size, this.granuleBytes);
          this.freePgtable(level + 1, this.ioptePaddr(eLo, eHi));
        }
      }
      for (let j = 0; j < i; j++) this.memory.store64(ptep + j * 8, 0, 0);
      if (i > 0) this.syncPte(ptep, i);
      if (gather !== null && !iommuIotlbGatherQueued(gather)) {
        for (let j = 0; j < i; j++) this.cfg.tlb?.tlbAddPage(gather, iova + j * size, size);
      }
      return i * size;
    }
    if (IoPgtableArm.isLeaf(lo, level)) {
      if (this.splitOnUnmap) return this.splitBlkUnmap(gather, iova, size, lo, hi, level + 1, ptep, count);
      this.warn('Unmap of a partial large IOPTE is not allowed');
      return 0;
    }
    return this.unmapAt(gather, iova, size, count, level + 1, this.ioptePaddr(lo, hi));
  }

  /**
   * The ≤ v6.13 arm_lpae_split_blk_unmap (§3.5): replaces a live block by a table of smaller leaves
   * minus the unmapped ones, in one store, with no break-before-make and no TLBI for the block.
   * `level` is the child level.
   */
  private splitBlkUnmap(gather: IommuIotlbGather | null, iova: number, size: number, blkLo: number, blkHi: number, level: number, ptep: number, count: number): number {
    if (level >= MAX_LEVELS) {
      this.warn('split: below the last level');
      return 0;
    }
    let t = this.allocTable();
    if (t === undefined) return 0;
    const splitSize = this.blockSizes[level] as number;
    let u0 = -1;
    let n = 0;
    if (size === splitSize) {
      u0 = this.lvlIdx(iova, level);
      n = Math.min(count, this.ptesPerTable - u0);
    }
    const blkPa = this.ioptePaddr(blkLo, blkHi);
    const attrLo = (blkLo & PTE_ATTR_LO_MASK) >>> 0;
    const attrHi = (blkHi & PTE_ATTR_HI_MASK) >>> 0;
    for (let i = 0; i < this.ptesPerTable; i++) {
      if (i >= u0 && i < u0 + n) continue;
      // Linux writes these one init_pte call (and one sync) per entry.
      this.writeLeaves(blkPa + i * splitSize, attrLo, attrHi, level, 1, t + i * 8);
    }
    if (!this.installTable(t, ptep, blkLo, blkHi)) {
      this.freeTablePage(t);
      return 0;
    }
    if (this.oldLo !== blkLo >>> 0 || this.oldHi !== blkHi >>> 0) {
      this.freeTablePage(t);
      if ((this.oldLo & PTE_TYPE_MASK) !== PTE_TYPE_TABLE) return 0;
      t = this.ioptePaddr(this.oldLo, this.oldHi);
    } else if (u0 >= 0) {
      // Linux queued these even with a NULL gather (the old selftests passed NULL).
      for (let i = 0; i < n; i++) this.cfg.tlb?.tlbAddPage(gather, iova + i * size, size);
      return n * size;
    }
    return this.unmapAt(gather, iova, size, count, level, t);
  }

  /**
   * __arm_lpae_free_pgtable: children first, then the table. Choice: only table pages this
   * instance holds are descended into and freed, which bounds the work on corrupted (even cyclic)
   * tables; anything else counts as a stray free.
   */
  private freePgtable(level: number, table: number): void {
    if (!this.tables.has(table)) {
      this.strayFrees++;
      return;
    }
    if (level < LAST_LEVEL) {
      const entries = level === this.startLevel ? this.geometry.pgdEntries : this.ptesPerTable;
      for (let i = 0; i < entries; i++) {
        if (!this.load(table + i * 8)) continue;
        const lo = this.scratch.lo;
        const hi = this.scratch.hi;
        if ((lo === 0 && hi === 0) || IoPgtableArm.isLeaf(lo, level)) continue;
        this.freePgtable(level + 1, this.ioptePaddr(lo, hi));
      }
    }
    this.freeTablePage(table);
  }

  // --- Lookup and walk (§3.6) ---

  /**
   * The output address for `iova`, or 0 when it is not mapped or the walk meets an empty,
   * non-table or unreadable entry. Like Linux, the start-level index wraps iovas beyond ias.
   */
  iovaToPhys(iova: number): number {
    this.checkLive();
    if (!isSafeNat(iova)) return 0;
    let table = this.pgd;
    for (let level = this.startLevel; level < MAX_LEVELS; level++) {
      if (!this.load(table + this.lvlIdx(iova, level) * 8)) return 0;
      const lo = this.scratch.lo;
      const hi = this.scratch.hi;
      if (IoPgtableArm.isLeaf(lo, level)) {
        return or53(this.ioptePaddr(lo, hi), iova % (this.blockSizes[level] as number));
      }
      if (!IoPgtableArm.isTable(lo, level)) return 0;
      table = this.ioptePaddr(lo, hi);
    }
    return 0;
  }

  /** arm_lpae_pgtable_walk: the entry visited at each level for [iova, iova + 1). */
  pgtableWalk(iova: number): PgtableWalkResult {
    this.checkLive();
    const ptes: (U64 | undefined)[] = [undefined, undefined, undefined, undefined];
    if (!isSafeNat(iova)) return { ret: -EINVAL, ptes };
    let table = this.pgd;
    for (let level = this.startLevel; level < MAX_LEVELS; level++) {
      if (!this.load(table + this.lvlIdx(iova, level) * 8)) return { ret: -EFAULT, ptes };
      const lo = this.scratch.lo;
      const hi = this.scratch.hi;
      ptes[level] = u64(lo, hi);
      if (IoPgtableArm.isLeaf(lo, level)) return { ret: 0, ptes };
      if (!IoPgtableArm.isTable(lo, level)) return { ret: -EINVAL, ptes };
      table = this.ioptePaddr(lo, hi);
    }
    return { ret: -EINVAL, ptes };
  }

  /** The output address held in a descriptor (iopte_to_paddr), for tests and traces. */
  pteAddress(pte: U64): number {
    return this.ioptePaddr(pte.lo, pte.hi);
  }

  // --- Inspection (tests, leak checks, reports) ---

  /** Table pages this instance holds, as [pa, bytes] (PGD included). */
  heldTables(): [number, number][] {
    return [...this.tables];
  }

  /**
   * Visits every table reachable from the PGD (PGD first, depth-first) and every leaf. Bounded on
   * corrupted tables: a table is entered at most once and never below the last level.
   */
  walkTree(visit: { table?(pa: number, level: number): void; leaf?(iova: number, level: number, pte: U64, oa: number): void }): void {
    this.checkLive();
    const seen = new Set<number>();
    const rec = (table: number, level: number, base: number): void => {
      if (seen.has(table)) return;
      seen.add(table);
      visit.table?.(table, level);
      const entries = level === this.startLevel ? this.geometry.pgdEntries : this.ptesPerTable;
      const span = this.blockSizes[level] as number;
      const out: Word64 = { lo: 0, hi: 0 };
      for (let i = 0; i < entries; i++) {
        if (this.memory.load64(table + i * 8, out) !== ACCESS_OK) continue;
        const { lo, hi } = out;
        if (IoPgtableArm.isLeaf(lo, level)) visit.leaf?.(base + i * span, level, u64(lo, hi), this.ioptePaddr(lo, hi));
        else if (IoPgtableArm.isTable(lo, level)) rec(this.ioptePaddr(lo, hi), level + 1, base + i * span);
      }
    };
    rec(this.pgd, this.startLevel, 0);
  }

  // --- free_io_pgtable_ops ---

  /** tlb_flush_all, then every table (PGD included) goes back to the allocator. */
  free(): void {
    this.checkLive();
    this.cfg.tlb?.tlbFlushAll();
    this.freePgtable(this.startLevel, this.pgd);
    this.freed = true;
  }
}
