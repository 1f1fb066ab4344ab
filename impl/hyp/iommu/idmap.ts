/**
 * The pKVM IOMMU layer's shadow stage-2 identity map (pkvm-host-s2-iommu.md §6.2–§6.4, SER-T&E):
 * one io-pgtable-arm stage-2 table (VMID 0) that mirrors what the host may reach. An initial
 * snapshot of the host stage-2 maps everything the host could map (lazily unmapped ranges
 * included, annotated pages skipped); afterwards every host ownership change is forwarded by the
 * `host_stage2_idmap` hook: back to the host → map read/write (cacheable for memory), to the
 * hypervisor or a guest → unmap and invalidate before the hypercall returns.
 */
import { GRANULE_4K, LAST_LEVEL, levelSize } from '../../arch/granule.js';
import { type PhysicalMemory } from '../../arch/physical-memory.js';
import { IOMMU_CACHE, IOMMU_MMIO, IOMMU_READ, IOMMU_WRITE, type IoPgtableArm, type IoPgtableCfg, allocIoPgtableArmS2 } from '../../pgtable/io-pgtable-arm.js';
import { iommuIotlbGatherInit } from '../../pgtable/iotlb-gather.js';
import { PROT_R, PROT_RWX, PROT_W, WALK_LEAF } from '../../pgtable/kvm-pgtable.js';
import { type TablePageAllocator } from '../../pgtable/page-allocator.js';
import { type HostStage2 } from '../host-stage2.js';
import { type HypMemoryMap } from '../memory-map.js';
import { type DmaStage2View } from './shared-host-stage2.js';
import { HypervisorPanic, warnOn } from '../panic.js';

/** The SMMU driver's TLB maintenance for VMID 0 on every SMMU (§6.7). */
export interface IdmapTlbOps {
  /** Range invalidation of the shadow stage-2, then TLBI_NH_ALL, each completed by CMD_SYNC. */
  invalidateRange(iova: number, size: number, granule: number, leaf: boolean): void;
  invalidateAll(): void;
}

export interface IdmapConfig {
  /** min(48, OAS of every SMMU): the idmap's input and output size. */
  readonly oas: number;
  /** AND of every SMMU's page sizes; must include 4K (the CPU page size). */
  readonly pgsizeBitmap: number;
  /**
   * GKI style (design variant `block-idmap-with-split`): memory mapped with the largest blocks
   * the range allows, and io-pgtable's legacy split of a block on partial unmap. The series maps
   * memory page-granular so that an unmap never needs a split (§6.3).
   */
  readonly memoryBlocks?: boolean;
}

const PAGE = 4096;

/**
 * `pkvm_to_iommu_prot` (IOMMU-core a812f96d3b17): R → READ, W → WRITE, X dropped, and
 * `WARN_ON(prot & ~PKVM_HOST_MEM_PROT)` — "We don't understand that, might be dangerous".
 */
export function pkvmToIommuProt(prot: number): number {
  warnOn((prot & ~PROT_RWX) !== 0, 'pkvm_to_iommu_prot: WARN_ON(prot & ~PKVM_HOST_MEM_PROT)');
  let p = 0;
  if ((prot & PROT_R) !== 0) p |= IOMMU_READ;
  if ((prot & PROT_W) !== 0) p |= IOMMU_WRITE;
  return p;
}

export class ShadowIdmap implements DmaStage2View {
  readonly name = 'shadow idmap';
  readonly pgtable: IoPgtableArm;
  readonly cfg: IoPgtableCfg;
  /** `kvm_idmap_initialized`: set only when the snapshot walk succeeded. */
  initialized = false;
  /** Map calls that failed (the series ignores them: "Map failures doesn't impact security"). */
  mapFailures = 0;
  private readonly memoryBlocks: boolean;

  constructor(
    private readonly memory: PhysicalMemory,
    private readonly memoryMap: HypMemoryMap,
    allocator: TablePageAllocator,
    config: IdmapConfig,
    private readonly tlb: IdmapTlbOps,
  ) {
    this.memoryBlocks = config.memoryBlocks === true;
    this.cfg = {
      // No quirks (posted v6-era `smmu_init_pgt`): io-pgtable's WARNs on an empty-PTE unmap or a
      // map over a leaf are hypervisor panics (onWarn below).
      quirks: 0,
      pgsizeBitmap: config.pgsizeBitmap,
      ias: config.oas,
      oas: config.oas,
      coherentWalk: true,
      tlb: {
        tlbFlushAll: () => this.tlb.invalidateAll(),
        tlbFlushWalk: (iova, size, granule) => this.tlb.invalidateRange(iova, size, granule, false),
        // SER-T&E: no batching, each page is invalidated at once.
        tlbAddPage: (_gather, iova, granule) => this.tlb.invalidateRange(iova, granule, granule, true),
      },
    };
    const pgtable = allocIoPgtableArmS2(this.cfg, memory, allocator, {
      splitOnUnmap: this.memoryBlocks,
      onWarn: (message) => {
        throw new HypervisorPanic(message, `io-pgtable-arm: WARN (${message})`);
      },
    });
    if (pgtable === null) throw new Error('shadow idmap: io-pgtable allocation failed');
    this.pgtable = pgtable;
  }

  /**
   * The driver's `smmu_host_stage2_idmap(start, end, prot)` (posted v6-era); prot 0 unmaps.
   * Memory is mapped page by page, MMIO with the largest size `start` is aligned to
   * (`smmu_pgsize_idmap`). "Map failures doesn't impact security, tolerate it" — but a failed map
   * returns its error, and a remainder after the loop is `WARN_ON(size)`: a panic.
   */
  driverIdmap(start: number, end: number, prot: number): number {
    end = Math.min(end, 2 ** this.cfg.oas);
    if (start >= end) return 0;
    let size = end - start;
    let ret = 0;
    if (prot !== 0) {
      if ((prot & IOMMU_MMIO) === 0) prot |= IOMMU_CACHE;
      while (size > 0) {
        const pgsize = (prot & IOMMU_MMIO) !== 0 || this.memoryBlocks ? this.largestPageSize(start, size) : PAGE;
        const r = this.pgtable.mapPages(start, start, pgsize, Math.floor(size / pgsize), prot);
        start += r.mapped;
        size -= r.mapped;
        ret = r.ret;
        if (r.ret !== 0 || r.mapped === 0) {
          this.mapFailures++;
          break;
        }
      }
    } else {
      const gather = iommuIotlbGatherInit();
      while (size > 0) {
        const unmapped = this.pgtable.unmapPages(start, PAGE, Math.floor(size / PAGE), gather);
        start += unmapped;
        size -= unmapped;
        if (unmapped === 0) break;
      }
    }
    if (ret !== 0) return ret;
    warnOn(size > 0, 'smmu_host_stage2_idmap: WARN_ON(size)', `0x${size.toString(16)} bytes left at 0x${start.toString(16)}`);
    return 0;
  }

  private largestPageSize(start: number, size: number): number {
    let best = PAGE;
    for (let s = PAGE; s <= size && s <= 2 ** 42; s *= 2) {
      if (this.cfg.pgsizeBitmap % (s * 2) >= s && start % s === 0) best = s;
    }
    return best;
  }

  /**
   * `kvm_iommu_host_stage2_idmap`: the hook called after each host ownership change, only once
   * the snapshot is in place.
   */
  onHostOwnershipChange(start: number, end: number, pkvmProt: number): void {
    if (!this.initialized) return;
    this.driverIdmap(start, end, pkvmToIommuProt(pkvmProt));
  }

  /**
   * The initial snapshot (SER-T&E latest): walk every host stage-2 leaf over [0, 2^ia); skip
   * annotated ones; map valid ones with their permissions (+MMIO for gaps); map empty ones
   * read/write, split at memory/gap boundaries. `initialized` becomes true only on success.
   */
  snapshot(hostS2: HostStage2): number {
    const pgt = hostS2.pgt;
    const pieces: { start: number; end: number; prot: number }[] = [];
    const r = pgt.walk(0, 2 ** pgt.iaBits, {
      flags: WALK_LEAF,
      cb: (ctx) => {
        const span = levelSize(pgt.granule, ctx.level);
        const s = ctx.addr - (ctx.addr % span);
        const e = s + span;
        if ((ctx.oldLo & 1) === 0 && (ctx.oldLo !== 0 || ctx.oldHi !== 0)) return 0;
        if ((ctx.oldLo & 1) !== 0 && (ctx.level === LAST_LEVEL || (ctx.oldLo & 2) === 0)) {
          let prot = pkvmToIommuProt(pgt.pteProt(ctx.oldLo, ctx.oldHi));
          if (!this.memoryMap.addrIsMemory(s)) prot |= IOMMU_MMIO;
          pieces.push({ start: s, end: e, prot });
          return 0;
        }
        for (let cur = s; cur < e; ) {
          const range = this.memoryMap.findMemRange(cur);
          const pieceEnd = Math.min(e, range.end);
          pieces.push({ start: cur, end: pieceEnd, prot: IOMMU_READ | IOMMU_WRITE | (range.isMemory ? 0 : IOMMU_MMIO) });
          cur = pieceEnd;
        }
        return 0;
      },
    });
    // A piece whose map fails stops the walk with its error (IOMMU-core a812f96d3b17).
    let ret = r;
    for (const p of pieces) {
      if (ret !== 0) break;
      ret = this.driverIdmap(p.start, p.end, p.prot);
    }
    // The v4 bug (bug class 6) set the flag to !!ret; the fixed series sets it on success.
    this.initialized = ret === 0;
    return ret;
  }

  /** What the table maps at `iova` right now: the leaf's output for it, or undefined. */
  translate(iova: number): { pa: number; read: boolean; write: boolean } | undefined {
    const walk = this.pgtable.pgtableWalk(iova);
    if (walk.ret !== 0) return undefined;
    for (let level = LAST_LEVEL; level >= 0; level--) {
      const pte = walk.ptes[level];
      if (pte === undefined) continue;
      // The shadow table uses the CPU's 4K granule (its pgsize_bitmap must include PAGE_SIZE).
      const span = levelSize(GRANULE_4K, level);
      const out = this.pgtable.pteAddress(pte);
      return { pa: out - (out % span) + (iova % span), read: (pte.lo & (1 << 6)) !== 0, write: (pte.lo & (1 << 7)) !== 0 };
    }
    return undefined;
  }

  tablePages(): readonly number[] {
    const pages: number[] = [];
    for (const [pa, bytes] of this.pgtable.heldTables()) for (let off = 0; off < bytes; off += PAGE) pages.push(pa + off);
    return pages;
  }
}
