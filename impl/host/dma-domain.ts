/**
 * The host kernel's DMA-API domains on the emulated SMMU (issue 13 item 3): what Linux's
 * arm-smmu-v3 does for a stage-1 paging domain (`arm_smmu_domain_finalise` S1,
 * `arm_smmu_make_s1_cd`, `arm_smmu_make_cdtable_ste`, the io-pgtable flush ops), over host
 * memory. The host sees IDR0.S1P and no S2P (the emulation masks S2P, VMID16, MSI and HYP, posted
 * v6-era `smmu_dabt_device`), so every domain it makes is stage 1, VMID 0; the hypervisor turns
 * the stage-1 STE into a nested one over its stage-2 idmap (posted v6-era `smmu_attach_stage_2`).
 *
 * Scope and choices (inferred where Linux is more general):
 * - one domain per stream, made on first attach; ASIDs from 1 upwards in attach order (Linux's
 *   `xa_alloc` of the ASID xarray from 1);
 * - a linear CD table of one CD (S1CDMax = 0: no PASIDs, SSID 0 only, as the SMMU model);
 * - io-pgtable ARM_64_LPAE_S1 with the kernel's 4 KiB PAGE_SIZE, ias 48 (VA_BITS 48, no VAX) and
 *   oas the IDR5.OAS the host reads; tables and CD tables come from a host-owned page pool;
 * - the flush ops queue their commands and the driver issues them once the page-table call
 *   returns (the host's commands go through a trapped PROD write, which cannot run inside the
 *   synchronous callback); Linux issues `tlb_flush_walk` in the middle of the unmap instead, so
 *   here a freed table page may return to the host's pool before its walk-cache TLBI — host
 *   memory either way.
 */
import { type PhysicalMemory } from '../arch/physical-memory.js';
import { type Command } from '../arch/smmu/commands.js';
import { cdFields, encodeCd } from '../arch/smmu/cd.js';
import { type U64, u64 } from '../arch/u64.js';
import { type IoPgtableArm, type IoPgtableCfg, IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE, allocIoPgtableArmS1 } from '../pgtable/io-pgtable-arm.js';
import { type IommuIotlbGather, iommuIotlbGatherAddPage, iommuMap, iommuUnmap } from '../pgtable/iotlb-gather.js';
import { PagePool } from '../pgtable/page-allocator.js';
import { buildRangeInvalidation } from '../hyp/smmu-driver/tlbi-range.js';

const PAGE = 4096;
/** MAIR of io-pgtable's S1 format: index 0 NC (0x44), 1 WBRWA (0xff), 2 device (0x04), 3 inner NC outer WB (0xf4). */
const LPAE_S1_MAIR: U64 = u64(0xf404_ff44, 0);

export interface HostDmaFeatures {
  /** IDR3.RIL as the host reads it. */
  readonly ril: boolean;
  /** IDR5 page sizes and OAS as the host reads them. */
  readonly pgsizeBitmap: number;
  readonly oas: number;
}

/** One stage-1 DMA domain: its ASID, CD table and io-pgtable, all in host memory. */
export class HostDmaDomain {
  /** Commands the flush ops asked for, issued by the driver after the page-table call. */
  readonly pendingCommands: Command[][] = [];
  readonly pgsizeBitmap: number;
  readonly ops: IoPgtableArm;
  readonly cfg: IoPgtableCfg;

  constructor(
    readonly sid: number,
    readonly asid: number,
    /** PA of the linear CD table (CD 0 only). */
    readonly cdTable: number,
    pgtable: (cfg: IoPgtableCfg) => IoPgtableArm | null,
    private readonly features: HostDmaFeatures,
  ) {
    this.cfg = {
      quirks: 0,
      pgsizeBitmap: features.pgsizeBitmap,
      ias: 48,
      oas: features.oas,
      coherentWalk: true,
      tlb: {
        // arm_smmu_tlb_inv_context: TLBI_NH_ASID, then CMD_SYNC.
        tlbFlushAll: () => this.pendingCommands.push([{ kind: 'TLBI_NH_ASID', vmid: 0, asid: this.asid }]),
        // arm_smmu_tlb_inv_walk: a non-leaf range invalidation at once.
        tlbFlushWalk: (iova, size, granule) => this.pendingCommands.push(this.rangeInvalidation(iova, size, granule, false)),
        // arm_smmu_tlb_inv_page_nosync: gathered, flushed by iotlb_sync.
        tlbAddPage: (gather, iova, granule) => {
          if (gather !== null) iommuIotlbGatherAddPage(this, gather, iova, granule);
        },
      },
    };
    const ops = pgtable(this.cfg);
    if (ops === null) throw new Error('host DMA domain: io-pgtable S1 allocation failed');
    this.ops = ops;
    this.pgsizeBitmap = this.cfg.pgsizeBitmap;
  }

  /** `arm_smmu_iotlb_sync` → `arm_smmu_tlb_inv_range_domain(leaf)`: TLBI_NH_VA (ASID, VMID 0). */
  iotlbSync(gather: IommuIotlbGather): void {
    if (gather.end === 0) return;
    this.pendingCommands.push(this.rangeInvalidation(gather.start, gather.end - gather.start + 1, gather.pgsize, true));
  }

  private rangeInvalidation(iova: number, size: number, granule: number, leaf: boolean): Command[] {
    const minPageShift = Math.log2(this.pgsizeBitmap & -this.pgsizeBitmap);
    return buildRangeInvalidation({ ril: this.features.ril, minPageShift, fullInvalidationFallback: false }, { kind: 'TLBI_NH_VA', vmid: 0, asid: this.asid }, iova, size, granule, leaf);
  }

  /** `arm_smmu_make_s1_cd` for this domain: the CD's eight dwords. */
  cdWords(): U64[] {
    const tcr = this.cfg.s1?.tcr;
    if (tcr === undefined) throw new Error('host DMA domain without S1 registers');
    return encodeCd(
      cdFields({
        v: true,
        t0sz: tcr.tsz,
        tg0: tcr.tg,
        ir0: tcr.irgn,
        or0: tcr.orgn,
        sh0: tcr.sh,
        epd1: true,
        ips: tcr.ips,
        aa64: true,
        r: true,
        a: true,
        aset: true,
        asid: this.asid,
        ttb0: this.cfg.s1?.ttbr ?? 0,
        mair: LPAE_S1_MAIR,
      }),
    );
  }

  /** `iommu_map` of [iova, iova + size) → pa with IOMMU_READ (| IOMMU_WRITE) | IOMMU_CACHE. */
  map(iova: number, pa: number, size: number, write: boolean): number {
    return iommuMap(this, iova, pa, size, IOMMU_READ | IOMMU_CACHE | (write ? IOMMU_WRITE : 0));
  }

  /** `iommu_unmap`: bytes unmapped; the gathered TLBI is queued by iotlbSync. */
  unmap(iova: number, size: number): number {
    return iommuUnmap(this, iova, size);
  }

  /** Whether the host's own tables give `iova` with `access` (the availability obligation). */
  translates(iova: number, access: 'read' | 'write'): number | undefined {
    const walk = this.ops.pgtableWalk(iova);
    if (walk.ret !== 0) return undefined;
    const pa = this.ops.iovaToPhys(iova);
    if (pa === 0) return undefined;
    const leaf = [...walk.ptes].reverse().find((p) => p !== undefined);
    // AP[2] (bit 7): read-only.
    if (access === 'write' && leaf !== undefined && (leaf.lo & (1 << 7)) !== 0) return undefined;
    return pa;
  }

  /** Table pages and the CD table page, as page frame numbers. */
  pages(): number[] {
    const out = new Set<number>([Math.floor(this.cdTable / PAGE)]);
    for (const [pa, bytes] of this.ops.heldTables()) for (let p = pa; p < pa + bytes; p += PAGE) out.add(p / PAGE);
    return [...out].sort((a, b) => a - b);
  }

  drainCommands(): Command[][] {
    return this.pendingCommands.splice(0);
  }
}

/** The host's page pool for DMA-domain tables and CD tables, and the domains made from it. */
export class HostDmaDomains {
  readonly byStream = new Map<number, HostDmaDomain>();
  private nextAsid = 1;
  private readonly pool: PagePool;

  constructor(
    private readonly memory: PhysicalMemory,
    readonly base: number,
    readonly pages: number,
  ) {
    this.pool = new PagePool(memory, base, pages * PAGE);
  }

  /** The domain of `sid`, made (CD table, io-pgtable, ASID) on first use; undefined when the pool is empty. */
  domainFor(sid: number, features: HostDmaFeatures): HostDmaDomain | undefined {
    const existing = this.byStream.get(sid);
    if (existing !== undefined) return existing;
    const cd = this.pool.alloc(PAGE);
    if (cd === undefined) return undefined;
    try {
      const domain = new HostDmaDomain(sid, this.nextAsid, cd, (cfg) => allocIoPgtableArmS1(cfg, this.memory, this.pool), features);
      this.nextAsid++;
      this.byStream.set(sid, domain);
      return domain;
    } catch {
      this.pool.free(cd, PAGE);
      return undefined;
    }
  }

  /** Frees a detached domain's tables and CD table back to the pool. */
  release(domain: HostDmaDomain): void {
    domain.ops.free();
    this.pool.free(domain.cdTable, PAGE);
    this.byStream.delete(domain.sid);
  }
}
