/**
 * The host stage-2 (pkvm-host-s2-iommu.md §2, UP-2026): a lazily populated identity map, built
 * with the KVM page table in simulated memory, VMID 0. Host faults map the largest block the
 * memory map and the existing tables allow (`host_stage2_adjust_range`); non-default
 * permissions are page-granular (`force_pte_cb`); pages the host lost carry typed owner
 * annotations; `-ENOMEM` is recovered by unmapping the MMIO gaps, never erasing annotations.
 */
import { EEXIST, EINVAL, ENOMEM, EPERM } from '../arch/errno.js';
import { LAST_LEVEL, leafAllowedAt, levelSize } from '../arch/granule.js';
import { type PhysicalMemory } from '../arch/physical-memory.js';
import { INVALID_TYPE_HOST_DONATION, type S2Format, decodeInvalidEntry, encodeTypedAnnotation } from '../arch/s2-descriptor.js';
import { type U64, u64 } from '../arch/u64.js';
import { KvmPgtable, PROT_RW, PROT_RWX, type Stage2Tlb } from '../pgtable/kvm-pgtable.js';
import { type TablePageAllocator } from '../pgtable/page-allocator.js';
import { type HypMemoryMap } from './memory-map.js';
import { PAGE_SIZE } from './vmemmap.js';

export const PKVM_ID_HOST = 0;
export const PKVM_ID_HYP = 1;
export const PKVM_ID_GUEST = 2;

/**
 * PKVM_HOST_MEM_PROT = RWX; PKVM_HOST_MMIO_PROT = RW — no DEVICE attribute in any kernel version
 * (UP-2026 mem_protect.c; series-as-posted.md §2.3).
 */
export const PKVM_HOST_MEM_PROT = PROT_RWX;
export const PKVM_HOST_MMIO_PROT = PROT_RW;

/** Metadata field widths of the typed annotation: owner 3 bits, metadata 56 bits (§1.4). */
const OWNER_MAX = 7;

/** `host_stage2_encode_gfn_meta`: handle in metadata bits 15:0, gfn in bits 55:16. */
export function encodeGuestMeta(handle: number, gfn: number): U64 {
  const lo = ((handle & 0xffff) | ((gfn % 0x1_0000) << 16)) >>> 0;
  const hi = Math.floor(gfn / 0x1_0000) & 0x00ff_ffff;
  return u64(lo, hi);
}

export function decodeGuestMeta(meta: U64): { handle: number; gfn: number } {
  return { handle: meta.lo & 0xffff, gfn: (meta.lo >>> 16) + meta.hi * 0x1_0000 };
}

/** Called after every host ownership change of [start, end): the IOMMU idmap hook (issue 5). */
export type HostIdmapHook = (start: number, end: number, prot: number) => void;

/**
 * Where the IOMMU hook is called. SER-T&E v4 (patch 10/28) calls it only from
 * `host_stage2_set_owner_locked`; on the UP-2026 code base guest donations, guest unshares and
 * MMIO donations annotate through `host_stage2_set_owner_metadata_locked` directly and would
 * bypass it. 'set-owner-only' is the posted placement (v4 mail; v6's mem_protect.c hunk is not
 * public, so the placement is a knob). 'every-owner-change' (v6-hardened) also hooks those paths
 * and the share-back path (`__host_set_page_state_range` giving a NOPAGE page its mapping back),
 * without which a protected guest's share-then-unshare would unmap a page the idmap no longer
 * maps (io-pgtable WARN → panic, series-as-posted.md finding 4 caveat).
 */
export type IdmapHookPlacement = 'set-owner-only' | 'every-owner-change';

export class HostStage2 {
  readonly pgt: KvmPgtable;
  /** Set when the IOMMU layer is present (SER-T&E `kvm_iommu_host_stage2_idmap`). */
  idmapHook: HostIdmapHook | null = null;
  hookPlacement: IdmapHookPlacement = 'set-owner-only';

  constructor(
    memory: PhysicalMemory,
    readonly memoryMap: HypMemoryMap,
    /** `host_s2_pool`: table pages for the host stage-2. */
    readonly pool: TablePageAllocator,
    tlb: Stage2Tlb,
    format: S2Format,
    iaBits: number,
  ) {
    this.pgt = new KvmPgtable(memory, pool, tlb, {
      format,
      iaBits,
      idmap: true,
      // §2.4: any non-default permission for the range type is forced to pages.
      forcePte: (addr, end, prot) => (this.memoryMap.rangeIsMemory(addr, end) ? prot !== PKVM_HOST_MEM_PROT : prot !== PKVM_HOST_MMIO_PROT),
      // Bug class 5: unmapping MMIO for -ENOMEM recovery must not erase annotations.
      unmapRefusesAnnotations: true,
    });
  }

  /**
   * `host_stage2_try`: on -ENOMEM, unmap every MMIO gap (freeing table pages) and retry once;
   * if the recycling itself fails (an annotated MMIO page stops the unmap with -EPERM), that
   * error is returned, as the kernel's macro does.
   */
  private tryOp(op: () => number): number {
    const r = op();
    if (r !== -ENOMEM) return r;
    const recycled = this.unmapDevAll();
    return recycled !== 0 ? recycled : op();
  }

  /** `host_stage2_unmap_dev_all`: stops at the first gap whose unmap fails. */
  unmapDevAll(): number {
    for (const gap of this.memoryMap.gaps()) {
      const end = Math.min(gap.end, 2 ** this.pgt.iaBits);
      if (end <= gap.start) continue;
      const r = this.pgt.unmap(gap.start, end - gap.start);
      if (r !== 0) return r;
    }
    return 0;
  }

  /** `host_stage2_idmap_locked`: map with IGNORE_EAGAIN semantics (an existing mapping is fine). */
  idmapLocked(addr: number, size: number, prot: number): number {
    return this.tryOp(() => this.pgt.map(addr, size, addr, prot, this.pool));
  }

  /** `host_stage2_adjust_range`: the largest block inside `range` and the empty slot at addr. */
  adjustRange(addr: number, range: { start: number; end: number }): { ret: number; start: number; end: number } {
    const leaf = this.pgt.getLeaf(addr);
    if (leaf.ret !== 0) return { ret: leaf.ret, start: 0, end: 0 };
    if ((leaf.lo & 1) !== 0) return { ret: -EEXIST, start: 0, end: 0 };
    if (leaf.lo !== 0 || leaf.hi !== 0) return { ret: -EPERM, start: 0, end: 0 };
    const g = this.pgt.granule;
    for (let level = leaf.level; level <= LAST_LEVEL; level++) {
      if (!leafAllowedAt(g, level) || level < g.kvmMinBlockLevel) continue;
      const size = levelSize(g, level);
      const start = addr - (addr % size);
      const end = start + size;
      if ((start < range.start || end > range.end) && level < LAST_LEVEL) continue;
      return { ret: 0, start, end };
    }
    return { ret: -EINVAL, start: 0, end: 0 };
  }

  /** `host_stage2_idmap(addr)`: the host fault handler's mapping step. */
  idmap(addr: number): number {
    const range = this.memoryMap.findMemRange(addr);
    const prot = range.isMemory ? PKVM_HOST_MEM_PROT : PKVM_HOST_MMIO_PROT;
    const adjusted = this.adjustRange(addr, range);
    if (adjusted.ret !== 0) return adjusted.ret;
    return this.idmapLocked(adjusted.start, adjusted.end - adjusted.start, prot);
  }

  /** `host_stage2_set_owner_locked` (UP-2026 §2.5). */
  setOwnerLocked(addr: number, size: number, owner: number, onHostState: (state: 'owned' | 'nopage') => void): number {
    if (owner === PKVM_ID_HOST) {
      if (!this.memoryMap.rangeIsMemory(addr, addr + size)) return -EPERM;
      const r = this.idmapLocked(addr, size, PKVM_HOST_MEM_PROT);
      if (r === 0) {
        onHostState('owned');
        this.idmapHook?.(addr, addr + size, PKVM_HOST_MEM_PROT);
      }
      return r;
    }
    if (owner === PKVM_ID_HYP) {
      const r = this.annotateLocked(addr, size, PKVM_ID_HYP, u64(0, 0), onHostState);
      if (r === 0) this.idmapHook?.(addr, addr + size, 0);
      return r;
    }
    return -EINVAL;
  }

  /** `host_stage2_set_owner_metadata_locked`: annotate with owner + metadata, host NOPAGE. */
  setOwnerMetadataLocked(addr: number, size: number, owner: number, meta: U64, onHostState: (state: 'owned' | 'nopage') => void): number {
    const r = this.annotateLocked(addr, size, owner, meta, onHostState);
    if (r === 0 && this.hookPlacement === 'every-owner-change') this.idmapHook?.(addr, addr + size, 0);
    return r;
  }

  private annotateLocked(addr: number, size: number, owner: number, meta: U64, onHostState: (state: 'owned' | 'nopage') => void): number {
    if (owner === PKVM_ID_HOST) return -EINVAL;
    if (!this.memoryMap.rangeIsMemory(addr, addr + size)) return -EPERM;
    if (owner > OWNER_MAX || meta.hi > 0x00ff_ffff) return -EINVAL;
    const r = this.tryOp(() => this.pgt.annotate(addr, size, this.pool, encodeTypedAnnotation(INVALID_TYPE_HOST_DONATION, owner, meta)));
    if (r === 0) onHostState('nopage');
    return r;
  }

  /** Annotates an MMIO range as owned by the hypervisor (`__pkvm_host_donate_hyp_mmio`). */
  annotateMmioForHyp(addr: number, size: number): number {
    const r = this.tryOp(() => this.pgt.annotate(addr, size, this.pool, encodeTypedAnnotation(INVALID_TYPE_HOST_DONATION, PKVM_ID_HYP, u64(0, 0))));
    if (r === 0 && this.hookPlacement === 'every-owner-change') this.idmapHook?.(addr, addr + size, 0);
    return r;
  }

  /** Removes an MMIO annotation; the host maps it again lazily on its next fault. */
  clearMmioAnnotation(addr: number, size: number): number {
    const r = this.pgt.annotate(addr, size, this.pool, u64(0, 0));
    if (r === 0 && this.hookPlacement === 'every-owner-change') this.idmapHook?.(addr, addr + size, PKVM_HOST_MMIO_PROT);
    return r;
  }

  /** The owner annotation of the page at `addr`, if the host stage-2 holds one. */
  annotationAt(addr: number): { owner: number; meta: U64 } | undefined {
    const leaf = this.pgt.getLeaf(addr);
    if (leaf.ret !== 0 || (leaf.lo & 1) !== 0 || leaf.level !== LAST_LEVEL) return undefined;
    const entry = decodeInvalidEntry(this.pgt.format, leaf.lo, leaf.hi);
    if (entry.kind !== 'annotation' || entry.type !== INVALID_TYPE_HOST_DONATION) return undefined;
    return { owner: entry.owner, meta: entry.meta };
  }

  get pageSize(): number {
    return PAGE_SIZE;
  }
}
