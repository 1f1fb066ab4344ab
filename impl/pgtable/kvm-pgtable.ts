/**
 * KVM's generic stage-2 page table (`arch/arm64/kvm/hyp/pgtable.c`) over simulated physical
 * memory: the walker with LEAF / TABLE_PRE / TABLE_POST visits, table-page refcounts
 * (1 + non-zero entries), and the stage-2 operations map, annotate (set owner), unmap, split,
 * write-protect, relax permissions, access-flag helpers, get_leaf and destroy. Every change of a
 * live valid entry goes through break-before-make: LOCKED marker → TLB invalidation through the
 * `Stage2Tlb` callbacks with the level hint → new entry.
 *
 * Reference: stage2-pgtable.md §2 (K-NEW, with K-NEXT's FEAT_XNX encoding and free walker).
 * The parallel (SHARED) walk mode is not modelled: one CPU walks at a time (ARCHITECTURE §4).
 * Cache maintenance (dcache/icache) has no effect in the simulation and is counted only.
 */
import { EAGAIN, E2BIG, EFAULT, EINVAL, ENOMEM, EPERM, ERANGE } from '../arch/errno.js';
import { type Granule, LAST_LEVEL, kvmStage2StartLevel, levelShift, levelSize } from '../arch/granule.js';
import { ACCESS_OK, type PhysicalMemory, type Word64 } from '../arch/physical-memory.js';
import {
  DESC_AF,
  DESC_HI_SW_SHIFT,
  DESC_HI_XN_SHIFT,
  DESC_S2AP_R,
  DESC_S2AP_W,
  DESC_VALID,
  MT_S2_DEVICE_NGNRE,
  MT_S2_FWB_DEVICE_NGNRE,
  MT_S2_FWB_NORMAL,
  MT_S2_FWB_NORMAL_NC,
  MT_S2_NORMAL,
  MT_S2_NORMAL_NC,
  SH_INNER,
  type S2Format,
  descOutputAddress,
  isLockedEntry,
  lockedMarker,
  packOutputAddress,
  packOutputAddressHi,
  packOutputAddressLo,
} from '../arch/s2-descriptor.js';
import { type U64 } from '../arch/u64.js';
import { type TablePageAllocator } from './page-allocator.js';
import { type TableRoot, topEntriesOf } from './table-dump.js';

// --- enum kvm_pgtable_prot (K-NEXT layout; SW0..SW3 moved from bits 55..58 to 6..9 so the
// whole prot fits a 32-bit integer — a representation choice, the meaning is unchanged) ---
export const PROT_PX = 1 << 0;
export const PROT_UX = 1 << 1;
export const PROT_X = PROT_PX | PROT_UX;
export const PROT_W = 1 << 2;
export const PROT_R = 1 << 3;
export const PROT_DEVICE = 1 << 4;
export const PROT_NORMAL_NC = 1 << 5;
export const PROT_SW_SHIFT = 6;
export const PROT_SW_MASK = 0xf << PROT_SW_SHIFT;
export const PROT_RW = PROT_R | PROT_W;
export const PROT_RWX = PROT_RW | PROT_X;

// --- enum kvm_pgtable_walk_flags ---
export const WALK_LEAF = 1 << 0;
export const WALK_TABLE_PRE = 1 << 1;
export const WALK_TABLE_POST = 1 << 2;
export const WALK_SHARED = 1 << 3;
export const WALK_HANDLE_FAULT = 1 << 4;
export const WALK_SKIP_BBM_TLBI = 1 << 5;
export const WALK_SKIP_CMO = 1 << 6;

export type Visit = typeof WALK_LEAF | typeof WALK_TABLE_PRE | typeof WALK_TABLE_POST;

/** TLBI_TTL_UNKNOWN (INT_MAX): an invalidation without a level hint. */
export const TLBI_TTL_UNKNOWN = 0x7fff_ffff;

/** The hypervisor's stage-2 TLB maintenance for this table's VMID (§1.8). */
export interface Stage2Tlb {
  /** `__kvm_tlb_flush_vmid_ipa`: one IPA, hinted by `level` unless TLBI_TTL_UNKNOWN. */
  flushVmidIpa(ipa: number, level: number): void;
  /** `__kvm_tlb_flush_vmid_ipa_nsh`: the same, local CPU only. */
  flushVmidIpaNsh(ipa: number, level: number): void;
  /** `kvm_tlb_flush_vmid_range`: every level over [addr, addr + size) (whole VMID without FEAT_TLBIRANGE). */
  flushVmidRange(addr: number, size: number): void;
  /** `__kvm_tlb_flush_vmid`. */
  flushVmid(): void;
}

/** A memcache: pages the caller topped up for table allocations (split needs to count them). */
export interface KvmMemcache extends TablePageAllocator {
  /** Number of granule-sized pages the cache can still hand out. */
  available(): number;
}

export interface KvmPgtableConfig {
  readonly format: S2Format;
  readonly iaBits: number;
  /** Defaults to KVM's choice (`kvm_get_vtcr`). */
  readonly startLevel?: number;
  /** KVM_PGTABLE_S2_IDMAP: every mapping must have addr == phys. */
  readonly idmap?: boolean;
  /** Stage-2 FWB in use (CPU capability and not NOFWB): selects the FWB MemAttr encodings. */
  readonly fwb?: boolean;
  /** `force_pte_cb(addr, end, prot)`: true forbids block mappings for that range and prot. */
  readonly forcePte?: (addr: number, end: number, prot: number) => boolean;
  /**
   * The MMIO-donation patch's `stage2_unmap_walker` (SER-T&E, pkvm-host-s2-iommu.md §6.9 and
   * bug class 5): unmap stops with -EPERM at a counted invalid entry instead of clearing it, so
   * recycling cannot erase an ownership annotation. Off: the K-NEW walker clears annotations.
   */
  readonly unmapRefusesAnnotations?: boolean;
}

/** The walk context handed to callbacks (`struct kvm_pgtable_visit_ctx`). */
export interface VisitCtx {
  /** Physical address of the entry. */
  ptep: number;
  oldLo: number;
  oldHi: number;
  addr: number;
  end: number;
  start: number;
  level: number;
  flags: number;
}

export interface KvmWalker {
  readonly flags: number;
  cb(ctx: VisitCtx, visit: Visit): number;
}

function mkCtx(): VisitCtx {
  return { ptep: 0, oldLo: 0, oldHi: 0, addr: 0, end: 0, start: 0, level: 0, flags: 0 };
}

/** `kvm_pgtable_walk` continuation rule: -EAGAIN is swallowed unless in a fault handler. */
function walkContinue(flags: number, r: number): boolean {
  if (r === -EAGAIN) return (flags & WALK_HANDLE_FAULT) === 0;
  return r === 0;
}

interface MapData {
  phys: number;
  attrLo: number;
  attrHi: number;
  annotation: boolean;
  annotationLo: number;
  annotationHi: number;
  forcePte: boolean;
  memcache: TablePageAllocator | null;
}

export class KvmPgtable {
  readonly format: S2Format;
  readonly granule: Granule;
  readonly iaBits: number;
  readonly startLevel: number;
  readonly pgd: number;
  readonly pgdPages: number;
  /** Refcounts of table pages (and PGD pages), keyed by page address. */
  private readonly refcounts = new Map<number, number>();
  private readonly pageSize: number;
  private readonly ctxByDepth: VisitCtx[] = [];
  private readonly word: Word64 = { lo: 0, hi: 0 };
  private readonly lockedLo: number;
  private readonly lockedHi: number;
  private readonly xnMaskHi: number;
  private readonly minBlockLevel: number;
  private readonly spans: number[] = [];
  /** The map walker and its data, reused by map() and annotate() (they never nest). */
  private readonly mapData: MapData;
  private readonly cachedMapWalker: KvmWalker;
  private readonly cachedAnnotateWalker: KvmWalker;
  private readonly cachedUnmapWalker: KvmWalker;
  private readonly attrScratch: Word64 = { lo: 0, hi: 0 };
  private walkAddr = 0;
  private walkEnd = 0;
  private walkStart = 0;
  private walkError = 0;
  /** Cache maintenance operations requested (no effect in the simulation). */
  cmoCount = 0;

  constructor(
    readonly memory: PhysicalMemory,
    /** mm_ops: frees table pages whose refcount drops to zero; allocates the PGD. */
    readonly mmOps: TablePageAllocator,
    readonly tlb: Stage2Tlb,
    readonly config: KvmPgtableConfig,
  ) {
    this.format = config.format;
    this.granule = config.format.granule;
    this.pageSize = this.granule.size;
    this.iaBits = config.iaBits;
    this.startLevel = config.startLevel ?? kvmStage2StartLevel(this.granule, config.iaBits);
    this.pgdPages = this.pgdPageIndex(2 ** this.iaBits - 1) + 1;
    const pgd = mmOps.alloc(this.pgdPages * this.pageSize);
    if (pgd === undefined) throw new Error('no memory for the stage-2 PGD');
    this.pgd = pgd;
    for (let i = 0; i < this.pgdPages; i++) this.refcounts.set(pgd + i * this.pageSize, 1);
    for (let i = 0; i < 6; i++) this.ctxByDepth.push(mkCtx());
    const locked = lockedMarker(this.format);
    this.lockedLo = locked.lo;
    this.lockedHi = locked.hi;
    this.xnMaskHi = (this.format.xnx ? 3 : 2) << DESC_HI_XN_SHIFT;
    this.minBlockLevel = this.granule.kvmMinBlockLevel;
    for (let level = -1; level <= LAST_LEVEL; level++) this.spans.push(levelSize(this.granule, level));
    this.mapData = { phys: 0, attrLo: 0, attrHi: 0, annotation: false, annotationLo: 0, annotationHi: 0, forcePte: false, memcache: null };
    this.cachedMapWalker = this.mapWalker(this.mapData, WALK_TABLE_PRE | WALK_LEAF);
    this.cachedAnnotateWalker = this.cachedMapWalker;
    this.cachedUnmapWalker = this.unmapWalker();
  }

  /** Bytes one entry at `level` spans (precomputed: the walk asks for it on every visit). */
  private span(level: number): number {
    return this.spans[level + 1] as number;
  }

  // --- mm_ops refcounting (§2.2) ---

  private pageOf(pa: number): number {
    return pa - (pa % this.pageSize);
  }

  /** Refcount of the table page containing `pa` (0 when it is not a live table page). */
  pageCount(pa: number): number {
    return this.refcounts.get(this.pageOf(pa)) ?? 0;
  }

  private getPage(pa: number): void {
    const page = this.pageOf(pa);
    this.refcounts.set(page, (this.refcounts.get(page) ?? 0) + 1);
  }

  private putPage(pa: number): void {
    const page = this.pageOf(pa);
    const count = (this.refcounts.get(page) ?? 0) - 1;
    if (count < 0) throw new Error(`refcount underflow on table page ${page.toString(16)}`);
    if (count === 0) {
      this.refcounts.delete(page);
      this.mmOps.free(page, this.pageSize);
    } else {
      this.refcounts.set(page, count);
    }
  }

  private zallocPage(mc: TablePageAllocator | null): number | undefined {
    if (mc === null) return undefined;
    const page = mc.alloc(this.pageSize);
    if (page === undefined) return undefined;
    this.refcounts.set(page, 1);
    return page;
  }

  /** Where the tree starts, for whole-tree traversals (table-dump.ts). */
  root(): TableRoot {
    return { format: this.format, pgd: this.pgd, startLevel: this.startLevel, topEntries: topEntriesOf(this.granule, this.iaBits, this.startLevel) };
  }

  /** Every live table page with its refcount (PGD pages included), for invariant checks. */
  tablePages(): ReadonlyMap<number, number> {
    return this.refcounts;
  }

  // --- entry helpers ---

  private read(ptep: number, out: Word64): boolean {
    return this.memory.load64(ptep, out) === ACCESS_OK;
  }

  private write(ptep: number, lo: number, hi: number): void {
    this.memory.store64(ptep, lo, hi);
  }

  private isTable(lo: number, level: number): boolean {
    return (lo & 3) === 3 && level !== LAST_LEVEL;
  }

  private isCounted(lo: number, hi: number): boolean {
    return lo !== 0 || hi !== 0;
  }

  private isLocked(lo: number, hi: number): boolean {
    return isLockedEntry(this.format, lo, hi);
  }

  private followTable(lo: number, hi: number): number {
    return descOutputAddress(this.format, lo, hi);
  }

  private pgdPageIndex(addr: number): number {
    const masked = addr % 2 ** this.iaBits;
    return Math.floor(masked / 2 ** levelShift(this.granule, this.startLevel - 1));
  }

  // --- the walker (§2.3) ---

  /** `kvm_pgtable_walk` over [addr, addr + size). */
  walk(addr: number, size: number, walker: KvmWalker): number {
    // As the kernel does, the end is PAGE_ALIGN(aligned start + size), not of addr + size.
    const start = addr - (addr % this.pageSize);
    const end = Math.ceil((start + size) / this.pageSize) * this.pageSize;
    const limit = 2 ** this.iaBits;
    if (start > limit || end > limit) return -ERANGE;
    this.walkAddr = start;
    this.walkEnd = end;
    this.walkStart = start;
    let idx = this.pgdPageIndex(start);
    let r = 0;
    while (this.walkAddr < this.walkEnd) {
      r = this.walkTable(this.pgd + idx * this.pageSize, this.startLevel, walker);
      if (r !== 0) break;
      idx++;
    }
    return r;
  }

  /**
   * Walks [start, start + size) of an unlinked subtree whose top table is `table` at `level`
   * (used by free_unlinked and create_unlinked, whose address space starts at 0).
   */
  private walkUnlinked(table: number, level: number, size: number, walker: KvmWalker): number {
    const saved = [this.walkAddr, this.walkEnd, this.walkStart] as const;
    this.walkAddr = 0;
    this.walkEnd = size;
    this.walkStart = 0;
    const r = this.walkTable(table, level, walker);
    [this.walkAddr, this.walkEnd, this.walkStart] = saved;
    return r;
  }

  private walkTable(table: number, level: number, walker: KvmWalker): number {
    if (level < this.granule.firstLevel || level > LAST_LEVEL) return -EINVAL;
    const entries = this.granule.entriesPerTable;
    const span = this.span(level);
    let i = Math.floor(this.walkAddr / span) & (entries - 1);
    for (; i < entries && this.walkAddr < this.walkEnd; i++) {
      const r = this.visit(table + i * 8, level, walker);
      if (r !== 0) return r;
    }
    return 0;
  }

  private visit(ptep: number, level: number, walker: KvmWalker): number {
    const ctx = this.ctxByDepth[level + 1] as VisitCtx;
    const word = this.word;
    // A table pointer outside RAM (a malformed table) ends the walk with a fault.
    if (!this.read(ptep, word)) return -EFAULT;
    ctx.ptep = ptep;
    ctx.oldLo = word.lo;
    ctx.oldHi = word.hi;
    ctx.addr = this.walkAddr;
    ctx.end = this.walkEnd;
    ctx.start = this.walkStart;
    ctx.level = level;
    ctx.flags = walker.flags;
    let isTable = (word.lo & DESC_VALID) !== 0 && this.isTable(word.lo, level);
    let r = 0;
    let reload = false;
    if (isTable && (walker.flags & WALK_TABLE_PRE) !== 0) {
      r = walker.cb(ctx, WALK_TABLE_PRE);
      reload = true;
    }
    if (!isTable && (walker.flags & WALK_LEAF) !== 0) {
      r = walker.cb(ctx, WALK_LEAF);
      reload = true;
    }
    if (reload) {
      if (!this.read(ptep, word)) return -EFAULT;
      ctx.oldLo = word.lo;
      ctx.oldHi = word.hi;
      isTable = (word.lo & DESC_VALID) !== 0 && this.isTable(word.lo, level);
    }
    if (!walkContinue(walker.flags, r)) return r;
    if (!isTable) {
      const span = this.span(level);
      this.walkAddr = this.walkAddr - (this.walkAddr % span) + span;
      return 0;
    }
    const savedAddr = ctx.addr;
    const savedLo = ctx.oldLo;
    const savedHi = ctx.oldHi;
    r = this.walkTable(this.followTable(word.lo, word.hi), level + 1, walker);
    if (!walkContinue(walker.flags, r)) return r;
    if ((walker.flags & WALK_TABLE_POST) !== 0) {
      // TABLE_POST sees the context captured before the descent (§2.3).
      ctx.ptep = ptep;
      ctx.addr = savedAddr;
      ctx.oldLo = savedLo;
      ctx.oldHi = savedHi;
      ctx.level = level;
      ctx.end = this.walkEnd;
      ctx.start = this.walkStart;
      ctx.flags = walker.flags;
      r = walker.cb(ctx, WALK_TABLE_POST);
    }
    return walkContinue(walker.flags, r) ? 0 : r;
  }

  // --- attributes (§2.4) ---

  /** `stage2_set_prot_attr`: the attribute bits of a leaf, or an error. */
  protAttr(prot: number, out: Word64): number {
    const fwb = this.config.fwb === true;
    let memAttr: number;
    const kind = prot & (PROT_DEVICE | PROT_NORMAL_NC);
    if (kind === (PROT_DEVICE | PROT_NORMAL_NC)) return -EINVAL;
    if (kind === PROT_DEVICE) {
      if ((prot & PROT_X) !== 0) return -EINVAL;
      memAttr = fwb ? MT_S2_FWB_DEVICE_NGNRE : MT_S2_DEVICE_NGNRE;
    } else if (kind === PROT_NORMAL_NC) {
      if ((prot & PROT_X) !== 0) return -EINVAL;
      memAttr = fwb ? MT_S2_FWB_NORMAL_NC : MT_S2_NORMAL_NC;
    } else {
      memAttr = fwb ? MT_S2_FWB_NORMAL : MT_S2_NORMAL;
    }
    const xn = this.xnField(prot);
    if (xn < 0) return xn;
    let lo = memAttr << 2;
    if ((prot & PROT_R) !== 0) lo |= DESC_S2AP_R;
    if ((prot & PROT_W) !== 0) lo |= DESC_S2AP_W;
    if (!this.format.lpa2) lo |= SH_INNER << 8;
    lo |= DESC_AF;
    let hi = xn << DESC_HI_XN_SHIFT;
    hi |= ((prot & PROT_SW_MASK) >>> PROT_SW_SHIFT) << DESC_HI_SW_SHIFT;
    out.lo = lo >>> 0;
    out.hi = hi >>> 0;
    return 0;
  }

  /** XN field for `prot`: K-NEXT's FEAT_XNX table, or bit 54 alone without XNX. */
  private xnField(prot: number): number {
    const px = (prot & PROT_PX) !== 0;
    const ux = (prot & PROT_UX) !== 0;
    if (!this.format.xnx) {
      if (px !== ux) return -EINVAL;
      return px ? 0b00 : 0b10;
    }
    if (px && ux) return 0b00;
    if (ux) return 0b01;
    if (px) return 0b11;
    return 0b10;
  }

  /** `kvm_pgtable_stage2_pte_prot`: SW bits always; R/W/X only for valid entries. */
  pteProt(lo: number, hi: number): number {
    let prot = ((hi >>> DESC_HI_SW_SHIFT) & 0xf) << PROT_SW_SHIFT;
    if ((lo & DESC_VALID) === 0) return prot;
    if ((lo & DESC_S2AP_R) !== 0) prot |= PROT_R;
    if ((lo & DESC_S2AP_W) !== 0) prot |= PROT_W;
    const xn = (hi >>> DESC_HI_XN_SHIFT) & (this.format.xnx ? 3 : 2);
    if (xn === 0b00) prot |= PROT_X;
    else if (xn === 0b01) prot |= PROT_UX;
    else if (xn === 0b11) prot |= PROT_PX;
    return prot;
  }

  // --- break-before-make (§2.5) ---

  /** `stage2_try_break_pte`: write LOCKED, invalidate the old translation, drop its count. */
  private tryBreakPte(ctx: VisitCtx): boolean {
    if (this.isLocked(ctx.oldLo, ctx.oldHi)) return false;
    this.write(ctx.ptep, this.lockedLo, this.lockedHi);
    if ((ctx.flags & WALK_SKIP_BBM_TLBI) === 0) {
      if ((ctx.oldLo & DESC_VALID) !== 0 && this.isTable(ctx.oldLo, ctx.level)) {
        const span = this.span(ctx.level);
        this.tlb.flushVmidRange(ctx.addr - (ctx.addr % span), span);
      } else if ((ctx.oldLo & DESC_VALID) !== 0) {
        this.tlb.flushVmidIpa(ctx.addr, ctx.level);
      }
    }
    if (this.isCounted(ctx.oldLo, ctx.oldHi)) this.putPage(ctx.ptep);
    return true;
  }

  /** `stage2_make_pte`: publish `new` over a LOCKED entry. */
  private makePte(ctx: VisitCtx, lo: number, hi: number): void {
    const cur = this.word;
    this.read(ctx.ptep, cur);
    if (!this.isLocked(cur.lo, cur.hi)) throw new Error('make_pte over an entry that is not locked');
    if (this.isCounted(lo, hi)) this.getPage(ctx.ptep);
    this.write(ctx.ptep, lo, hi);
  }

  // --- map and annotate (§2.6, §2.7) ---

  private blockOk(ctx: VisitCtx, data: MapData): boolean {
    const level = ctx.level;
    if (level < this.minBlockLevel) return false;
    const span = this.span(level);
    if (span > ctx.end - ctx.addr) return false;
    const phys = data.phys + (ctx.addr - ctx.start);
    return phys % span === 0 && ctx.addr % span === 0;
  }

  private leafAllowed(ctx: VisitCtx, data: MapData): boolean {
    if (data.forcePte && ctx.level < LAST_LEVEL) return false;
    return data.annotation || this.blockOk(ctx, data);
  }

  private tryLeaf(ctx: VisitCtx, data: MapData): number {
    if (!this.leafAllowed(ctx, data)) return -E2BIG;
    let newLo: number;
    let newHi: number;
    if (data.annotation) {
      newLo = data.annotationLo;
      newHi = data.annotationHi;
    } else {
      const phys = data.phys + (ctx.addr - ctx.start);
      newLo = (packOutputAddressLo(this.format, phys) | data.attrLo | (ctx.level === LAST_LEVEL ? 3 : 1)) >>> 0;
      newHi = (packOutputAddressHi(this.format, phys) | data.attrHi) >>> 0;
    }
    const oldLo = ctx.oldLo;
    const oldHi = ctx.oldHi;
    // stage2_pte_needs_update: a valid→valid change of R/W/X only is left to relax_perms.
    const bothValid = (oldLo & DESC_VALID) !== 0 && (newLo & DESC_VALID) !== 0;
    if (bothValid) {
      const permLo = DESC_S2AP_R | DESC_S2AP_W;
      if (((oldLo ^ newLo) & ~permLo) === 0 && ((oldHi ^ newHi) & ~this.xnMaskHi) === 0) return -EAGAIN;
    }
    // Only software bits differ: update in place (no BBM needed), fixing the count.
    const swMaskHi = 0xf << DESC_HI_SW_SHIFT;
    if (oldLo === newLo && ((oldHi ^ newHi) & ~swMaskHi) === 0) {
      const wasCounted = this.isCounted(oldLo, oldHi);
      const nowCounted = this.isCounted(newLo, newHi);
      if (wasCounted && !nowCounted) this.putPage(ctx.ptep);
      if (!wasCounted && nowCounted) this.getPage(ctx.ptep);
      this.write(ctx.ptep, newLo, newHi);
      return 0;
    }
    if (!this.tryBreakPte(ctx)) return -EAGAIN;
    if ((ctx.flags & WALK_SKIP_CMO) === 0 && (newLo & DESC_VALID) !== 0) {
      const memAttr = (newLo >>> 2) & 0xf;
      if (memAttr === MT_S2_NORMAL && this.config.fwb !== true) this.cmoCount++;
      if (((newHi >>> DESC_HI_XN_SHIFT) & 2) === 0) this.cmoCount++;
    }
    this.makePte(ctx, newLo, newHi);
    return 0;
  }

  private mapWalker(data: MapData, flags: number): KvmWalker {
    return {
      flags,
      cb: (ctx, visit) => {
        if (visit === WALK_TABLE_PRE) {
          if (!this.leafAllowed(ctx, data)) return 0;
          const childLo = ctx.oldLo;
          const childHi = ctx.oldHi;
          const level = ctx.level;
          const r = this.tryLeaf(ctx, data);
          if (r !== 0) return r;
          this.freeUnlinkedTable(this.followTable(childLo, childHi), level);
          return 0;
        }
        const r = this.tryLeaf(ctx, data);
        if (r !== -E2BIG) return r;
        if (ctx.level === LAST_LEVEL) return -EINVAL;
        const child = this.zallocPage(data.memcache);
        if (child === undefined) return -ENOMEM;
        if (!this.tryBreakPte(ctx)) {
          this.putPage(child);
          return -EAGAIN;
        }
        const table = packOutputAddress(this.format, child);
        this.makePte(ctx, (table.lo | 3) >>> 0, table.hi);
        return 0;
      },
    };
  }

  /** `kvm_pgtable_stage2_map`: map [addr, addr + size) to phys with `prot`. */
  map(addr: number, size: number, phys: number, prot: number, memcache: TablePageAllocator | null, flags = 0): number {
    const physAligned = phys - (phys % this.pageSize);
    const forcePte = this.config.forcePte !== undefined && this.config.forcePte(addr, addr + size, prot);
    if (this.config.idmap === true && addr !== physAligned) return -EINVAL;
    const attr = this.attrScratch;
    const r0 = this.protAttr(prot, attr);
    if (r0 !== 0) return r0;
    const data = flags === 0 ? this.mapData : ({} as MapData);
    data.phys = physAligned;
    data.attrLo = attr.lo;
    data.attrHi = attr.hi;
    data.annotation = false;
    data.annotationLo = 0;
    data.annotationHi = 0;
    data.forcePte = forcePte;
    data.memcache = memcache;
    const walker = flags === 0 ? this.cachedMapWalker : this.mapWalker(data, flags | WALK_TABLE_PRE | WALK_LEAF);
    const r = this.walk(addr, size, walker);
    data.memcache = null;
    return r;
  }

  /**
   * Installs the invalid entry `entry` (an owner annotation, or zero to remove one) on every page
   * of [addr, addr + size): `kvm_pgtable_stage2_set_owner` / `_annotate`. Annotations are always
   * page-granular; blocks in the way are broken into empty tables (§2.7).
   */
  annotate(addr: number, size: number, memcache: TablePageAllocator | null, entry: U64): number {
    if ((entry.lo & DESC_VALID) !== 0) return -EINVAL;
    const data = this.mapData;
    data.phys = 0;
    data.attrLo = 0;
    data.attrHi = 0;
    data.annotation = true;
    data.annotationLo = entry.lo;
    data.annotationHi = entry.hi;
    data.forcePte = true;
    data.memcache = memcache;
    const r = this.walk(addr, size, this.cachedAnnotateWalker);
    data.memcache = null;
    return r;
  }

  // --- unmap (§2.8) ---

  /** `kvm_pgtable_stage2_unmap`: removes leaves and annotations, frees tables that become empty. */
  unmap(addr: number, size: number): number {
    // Deferral (FEAT_TLBIRANGE with FWB) is not modelled: every leaf is invalidated at once,
    // which is what the reference describes for cores without range TLBI.
    return this.walk(addr, size, this.cachedUnmapWalker);
  }

  private unmapWalker(): KvmWalker {
    const fwb = this.config.fwb === true;
    return {
      flags: WALK_LEAF | WALK_TABLE_POST,
      cb: (ctx) => {
        const { oldLo, oldHi } = ctx;
        if ((oldLo & DESC_VALID) === 0) {
          if (this.isCounted(oldLo, oldHi) && this.config.unmapRefusesAnnotations === true) return -EPERM;
          if (this.isCounted(oldLo, oldHi)) {
            this.write(ctx.ptep, 0, 0);
            this.putPage(ctx.ptep);
          }
          return 0;
        }
        const table = this.isTable(oldLo, ctx.level);
        let child = 0;
        let needFlush = false;
        if (table) {
          child = this.followTable(oldLo, oldHi);
          if (this.pageCount(child) !== 1) return 0;
        } else if (((oldLo >>> 2) & 0xf) === MT_S2_NORMAL) {
          needFlush = !fwb;
        }
        this.write(ctx.ptep, 0, 0);
        if (table) this.tlb.flushVmidIpa(ctx.addr, TLBI_TTL_UNKNOWN);
        else this.tlb.flushVmidIpa(ctx.addr, ctx.level);
        this.putPage(ctx.ptep);
        if (needFlush) this.cmoCount++;
        if (table) this.putPage(child);
        return 0;
      },
    };
  }

  // --- free an unlinked subtree (§2.10, K-NEXT free walker) ---

  /**
   * K-NEXT `stage2_free_walker`: drop each counted leaf's reference; free a child table once its
   * count is back to 1 and clear the entry, so nothing rewalks a freed page.
   */
  private freeWalker(): KvmWalker {
    return {
      flags: WALK_LEAF | WALK_TABLE_POST,
      cb: (ctx, visit) => {
        if (!this.isCounted(ctx.oldLo, ctx.oldHi)) return 0;
        if (visit === WALK_LEAF) {
          this.putPage(ctx.ptep);
          return 0;
        }
        const child = this.followTable(ctx.oldLo, ctx.oldHi);
        if (this.pageCount(child) !== 1) return 0;
        this.putPage(ctx.ptep);
        this.putPage(child);
        this.write(ctx.ptep, 0, 0);
        return 0;
      },
    };
  }

  /** `kvm_pgtable_stage2_free_unlinked`: tears down a detached table and everything below it. */
  freeUnlinkedTable(table: number, level: number): void {
    this.walkUnlinked(table, level + 1, this.span(level), this.freeWalker());
    if (this.pageCount(table) !== 1) throw new Error(`unlinked table ${table.toString(16)} still referenced`);
    this.putPage(table);
  }

  // --- split (§2.9) ---

  /** `kvm_pgtable_stage2_split`: replaces blocks in range by tables of pages. */
  split(addr: number, size: number, memcache: KvmMemcache): number {
    const walker: KvmWalker = {
      flags: WALK_LEAF,
      cb: (ctx) => {
        if (ctx.level === LAST_LEVEL || (ctx.oldLo & DESC_VALID) === 0) return 0;
        let need: number;
        if (ctx.level === 1) need = this.granule.entriesPerTable + 1;
        else if (ctx.level === 2) need = 1;
        else return -EINVAL;
        let forcePte: boolean;
        if (memcache.available() >= need) {
          forcePte = true;
        } else {
          forcePte = false;
          need = 1;
        }
        if (memcache.available() < need) return -ENOMEM;
        const oldLo = ctx.oldLo;
        const oldHi = ctx.oldHi;
        const level = ctx.level;
        const pa = descOutputAddress(this.format, oldLo, oldHi);
        const span = this.span(level);
        const blockPa = pa - (pa % span);
        const child = this.createUnlinked(blockPa, level, this.pteProt(oldLo, oldHi), memcache, forcePte);
        if (typeof child !== 'number' || child < 0) return typeof child === 'number' ? child : -ENOMEM;
        // createUnlinked walked with its own contexts; restore ours before breaking the entry.
        ctx.oldLo = oldLo;
        ctx.oldHi = oldHi;
        ctx.level = level;
        if (!this.tryBreakPte(ctx)) {
          this.freeUnlinkedTable(child, level);
          return -EAGAIN;
        }
        const table = packOutputAddress(this.format, child);
        this.makePte(ctx, (table.lo | 3) >>> 0, table.hi);
        return 0;
      },
    };
    return this.walk(addr, size, walker);
  }

  /** `kvm_pgtable_stage2_create_unlinked`: a detached table mapping [phys, phys + granule(level)). */
  private createUnlinked(phys: number, level: number, prot: number, memcache: TablePageAllocator, forcePte: boolean): number {
    const span = this.span(level);
    if (phys % span !== 0) return -EINVAL;
    const attr = { lo: 0, hi: 0 };
    const r0 = this.protAttr(prot, attr);
    if (r0 !== 0) return r0;
    const table = this.zallocPage(memcache);
    if (table === undefined) return -ENOMEM;
    const data: MapData = {
      phys,
      attrLo: attr.lo,
      attrHi: attr.hi,
      annotation: false,
      annotationLo: 0,
      annotationHi: 0,
      forcePte,
      memcache,
    };
    // The depth-indexed contexts of the levels below `level` are reused by this inner walk;
    // the caller's context (at `level`) is untouched because the walk starts one level lower.
    const r = this.walkUnlinked(table, level + 1, span, this.mapWalker(data, WALK_LEAF | WALK_SKIP_BBM_TLBI | WALK_SKIP_CMO));
    if (r !== 0) {
      this.freeUnlinkedTable(table, level);
      return r;
    }
    return table;
  }

  // --- attribute updates (§2.10) ---

  private updateLeafAttrs(addr: number, size: number, setLo: number, setHi: number, clrLo: number, clrHi: number, flags: number, last?: { lo: number; hi: number; level: number }): number {
    const walker: KvmWalker = {
      flags: flags | WALK_LEAF,
      cb: (ctx) => {
        if ((ctx.oldLo & DESC_VALID) === 0) return -EAGAIN;
        const lo = ((ctx.oldLo & ~clrLo) | setLo) >>> 0;
        const hi = ((ctx.oldHi & ~clrHi) | setHi) >>> 0;
        if (last !== undefined) {
          last.lo = lo;
          last.hi = hi;
          last.level = ctx.level;
        }
        if (lo !== ctx.oldLo || hi !== ctx.oldHi) {
          if ((hi & this.xnMaskHi) !== this.xnMaskHi && (ctx.oldHi & this.xnMaskHi) === this.xnMaskHi) this.cmoCount++;
          this.write(ctx.ptep, lo, hi);
        }
        return 0;
      },
    };
    return this.walk(addr, size, walker);
  }

  /** `kvm_pgtable_stage2_wrprotect`: clears S2AP_W; the caller invalidates. */
  wrprotect(addr: number, size: number): number {
    return this.updateLeafAttrs(addr, size, 0, 0, DESC_S2AP_W, 0, 0);
  }

  /** `kvm_pgtable_stage2_mkyoung`: sets AF on the leaf for `addr`. */
  mkyoung(addr: number, flags = 0): number {
    return this.updateLeafAttrs(addr, 1, DESC_AF, 0, 0, 0, flags);
  }

  /** `kvm_pgtable_stage2_relax_perms`: adds R/W/X, then a local invalidation of the leaf. */
  relaxPerms(addr: number, prot: number, flags = 0): number {
    if ((prot & PROT_SW_MASK) !== 0) return -EINVAL;
    let setLo = 0;
    if ((prot & PROT_R) !== 0) setLo |= DESC_S2AP_R;
    if ((prot & PROT_W) !== 0) setLo |= DESC_S2AP_W;
    let setHi = 0;
    let clrHi = 0;
    if ((prot & PROT_X) !== 0) {
      const xn = this.xnField(prot);
      if (xn < 0) return xn;
      clrHi = this.xnMaskHi;
      setHi = xn << DESC_HI_XN_SHIFT;
    }
    const last = { lo: 0, hi: 0, level: LAST_LEVEL };
    const r = this.updateLeafAttrs(addr, 1, setLo, setHi, 0, clrHi, flags, last);
    if (r === 0 || r === -EAGAIN) this.tlb.flushVmidIpaNsh(addr, last.level);
    return r;
  }

  /** `kvm_pgtable_stage2_test_clear_young`: whether any valid leaf in range had AF set. */
  testClearYoung(addr: number, size: number, mkold: boolean): boolean {
    let young = false;
    const walker: KvmWalker = {
      flags: WALK_LEAF,
      cb: (ctx) => {
        if ((ctx.oldLo & DESC_VALID) === 0 || (ctx.oldLo & DESC_AF) === 0) return 0;
        young = true;
        if (mkold) this.write(ctx.ptep, (ctx.oldLo & ~DESC_AF) >>> 0, ctx.oldHi);
        return 0;
      },
    };
    this.walk(addr, size, walker);
    return young;
  }

  /** `kvm_pgtable_get_leaf`: the entry (valid or not) that maps `addr`, and its level. */
  getLeaf(addr: number): { ret: number; lo: number; hi: number; level: number } {
    const out = { ret: 0, lo: 0, hi: 0, level: LAST_LEVEL };
    const walker: KvmWalker = {
      flags: WALK_LEAF,
      cb: (ctx) => {
        out.lo = ctx.oldLo;
        out.hi = ctx.oldHi;
        out.level = ctx.level;
        return 0;
      },
    };
    out.ret = this.walk(addr, this.pageSize, walker);
    return out;
  }

  /** `kvm_pgtable_stage2_destroy`: frees every table page, the PGD last. No TLBI. */
  destroy(): void {
    this.walk(0, 2 ** this.iaBits, this.freeWalker());
    for (let i = 0; i < this.pgdPages; i++) {
      this.refcounts.delete(this.pgd + i * this.pageSize);
    }
    this.mmOps.free(this.pgd, this.pgdPages * this.pageSize);
  }
}
