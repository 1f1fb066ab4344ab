/**
 * The pKVM hypervisor's ownership hypercalls (pkvm-host-s2-iommu.md §2–§3, UP-2026 lineage),
 * over the vmemmap, the host stage-2, a hypervisor stage-1 map, and the guests' stage-2 tables.
 *
 * Each hypercall follows the kernel's pattern: validate arguments, check every precondition
 * (the first failure returns its errno and changes nothing), then perform the updates. Each is a
 * step generator (ARCHITECTURE §4) that yields where hardware could observe an intermediate
 * state — after each change of a table the hardware walks and after each vmemmap update — so a
 * runner can interleave hardware actions; `Hypervisor.run` drives one to completion.
 *
 * Arguments are the host's registers: u64 values carried as doubles. Single-page calls shift
 * the pfn with u64 wrap-around like `hyp_pfn_to_phys`; ranges go through the overflow-proof
 * `pfn_range_is_valid` first.
 */
import { ObservedMap } from './observed-map.js';
import { E2BIG, EAGAIN, EBUSY, EFAULT, EHWPOISON, EINVAL, EEXIST, ENOENT, ENOMEM, EPERM, ERANGE } from '../arch/errno.js';
import { LAST_LEVEL } from '../arch/granule.js';
import { type PhysicalMemory } from '../arch/physical-memory.js';
import { INVALID_TYPE_GUEST_POISONED, INVALID_TYPE_HOST_DONATION, type S2Format, decodeInvalidEntry, descOutputAddress, encodeTypedAnnotation } from '../arch/s2-descriptor.js';
import { type U64, u64 } from '../arch/u64.js';
import { type HostCpu } from '../hw/cpu.js';
import { PROT_R, PROT_RWX, PROT_W, PROT_X, type Stage2Tlb } from '../pgtable/kvm-pgtable.js';
import { type TablePageAllocator } from '../pgtable/page-allocator.js';
import { dumpTable } from '../pgtable/table-dump.js';
import { GuestVm, HANDLE_OFFSET, mkstate } from './guest-vm.js';
import { HostStage2, PKVM_ID_GUEST, PKVM_ID_HOST, PKVM_ID_HYP, decodeGuestMeta, encodeGuestMeta } from './host-stage2.js';
import { type HypMemcache, VmPagePool } from './memcache.js';
import { HypervisorPanic } from './panic.js';
import { type HypMemoryMap, add64 } from './memory-map.js';
import {
  PAGE_SIZE,
  PKVM_NOPAGE,
  PKVM_PAGE_OWNED,
  PKVM_PAGE_SHARED_BORROWED,
  PKVM_PAGE_SHARED_OWNED,
  type PageState,
  type Vmemmap,
} from './vmemmap.js';

/** A point where a hypercall lets hardware act (ARCHITECTURE §4). */
export interface YieldPoint {
  readonly at: string;
}

export type Hypercall = Generator<YieldPoint, number, void>;

/** What `host_access` returns (matches the model's HOST_ACCESS_* encoding). */
export const HOST_ACCESS_OK = 0;
export const HOST_ACCESS_ABORT = 1;
/** A data access to hypervisor-owned MMIO, handed to the MMIO emulation (§6.9). */
export const HOST_ACCESS_EMULATED = 2;
/** The fault handler keeps returning without progress (host exec from its own MMIO). */
export const HOST_ACCESS_STALL = 3;

const U32_MAX = 0xffff_ffff;
const BLOCK_PAGES = 512;
const U64_RANGE = 2 ** 64;

/**
 * An ownership hypercall the hypervisor made on its own initiative (e.g. the SMMU driver sharing
 * and pinning the host's command queue when the host enables it), with its result. Field names
 * are those of the plain-data operations, so a checker can replay them on the model.
 */
export interface InternalCall {
  readonly op: { readonly kind: string } & Readonly<Record<string, number | boolean | string>>;
  readonly ret: number;
}

/**
 * One trapped host data access to emulated MMIO: the offset in the range, the access size and
 * direction from the ESR (`BIT(ESR.SAS)`, WnR), and the value of Rt as two u32 halves.
 */
export interface MmioAccess {
  readonly offset: number;
  readonly size: 1 | 2 | 4 | 8;
  readonly write: boolean;
  readonly lo: number;
  readonly hi: number;
}

/** An emulated MMIO range: host data aborts on it are handed to `access` (§6.9). */
export interface MmioEmulator {
  readonly base: number;
  readonly size: number;
  access(a: MmioAccess): Generator<YieldPoint, U64, void>;
}

export { HypervisorPanic } from './panic.js';

export interface HypervisorConfig {
  readonly physShift: number;
  readonly maxVms: number;
  readonly vmStructPages: number;
  readonly format: S2Format;
}

/** Hypervisor stage-1 entries that matter for ownership: which pages EL2 has mapped, and how. */
export type HypMapping = 'mem' | 'device';

export class Hypervisor {
  readonly vms = new Map<number, GuestVm>();
  /** Hyp stage-1 (a simple map suffices, issue §3): pfn → how it is mapped. */
  readonly hypS1 = new ObservedMap<number, HypMapping>();
  /** Pages zeroed by poisoning (reclaim of a guest-owned page), for checks. */
  poisonCount = 0;
  /** Calls the hypervisor made itself, since the last drain (see `InternalCall`). */
  readonly internalCalls: InternalCall[] = [];
  /** MMIO the hypervisor emulates for the host (the SMMU frames). */
  readonly mmioEmulators: MmioEmulator[] = [];
  /** The value the last emulated host MMIO read returned (low and high halves). */
  lastMmioRead = 0;
  lastMmioReadHi = 0;
  /** Guest TLB maintenance is not observable by the host; counted only. */
  guestTlbi = 0;
  private readonly guestTlb: Stage2Tlb;

  constructor(
    readonly memory: PhysicalMemory,
    readonly memoryMap: HypMemoryMap,
    readonly vmemmap: Vmemmap,
    readonly hostS2: HostStage2,
    readonly cpu: HostCpu,
    readonly memcache: HypMemcache,
    /** Contiguous carve-out for guest PGDs (host-donated in the kernel; charged to the memcache). */
    readonly pgdCarveout: TablePageAllocator,
    readonly config: HypervisorConfig,
  ) {
    const count = () => {
      this.guestTlbi++;
    };
    this.guestTlb = { flushVmidIpa: count, flushVmidIpaNsh: count, flushVmidRange: count, flushVmid: count };
  }

  /** Drives a hypercall to completion, calling `onYield` at each yield point. */
  run(call: Hypercall, onYield?: (point: YieldPoint) => void): number {
    for (;;) {
      const step = call.next();
      if (step.done === true) return step.value;
      onYield?.(step.value);
    }
  }

  // --- helpers (§2.2, §2.6, §3) ---

  private get paLimitPages(): number {
    return 2 ** (this.config.physShift - 12);
  }

  /** `hyp_pfn_to_phys` with u64 wrap-around (exact: the result is a multiple of 4096). */
  pfnToPhys(pfn: number): number {
    return (pfn % 2 ** 52) * PAGE_SIZE;
  }

  /** `pfn_range_is_valid`: overflow-proof. */
  pfnRangeIsValid(pfn: number, nrPages: number): boolean {
    const limit = this.paLimitPages;
    return pfn < limit && limit - pfn >= nrPages;
  }

  private endOf(phys: number, nrPages: number): number {
    return add64(phys, (nrPages * PAGE_SIZE) % U64_RANGE);
  }

  /** `__host_check_page_state_range`. */
  hostCheckPageStateRange(phys: number, nrPages: number, want: PageState): number {
    const r = this.memoryMap.checkRangeAllowedMemory(phys, this.endOf(phys, nrPages));
    if (r !== 0) return r;
    const first = phys / PAGE_SIZE;
    for (let i = 0; i < nrPages; i++) if (this.vmemmap.hostState(first + i) !== want) return -EPERM;
    return 0;
  }

  /** `__hyp_check_page_state_range` (callers pass memory). */
  hypCheckPageStateRange(phys: number, nrPages: number, want: PageState): number {
    const first = phys / PAGE_SIZE;
    for (let i = 0; i < nrPages; i++) {
      if (!this.vmemmap.has(first + i)) return -EPERM;
      if (this.vmemmap.hypState(first + i) !== want) return -EPERM;
    }
    return 0;
  }

  /** `__host_set_page_state_range`: a NOPAGE page gets its default mapping back first. */
  private *hostSetPageStateRange(phys: number, nrPages: number, st: PageState): Generator<YieldPoint, number, void> {
    const first = phys / PAGE_SIZE;
    if (this.vmemmap.hostState(first) === PKVM_NOPAGE) {
      const r = this.hostS2.idmapLocked(phys, nrPages * PAGE_SIZE, PROT_RWX);
      if (r !== 0) return r;
      // Not an owner change: the posted placement (v4 mail) does not call the IOMMU hook here;
      // 'every-owner-change' (v6-hardened) maps the page back for DMA too.
      if (this.hostS2.hookPlacement === 'every-owner-change') this.hostS2.idmapHook?.(phys, phys + nrPages * PAGE_SIZE, PROT_RWX);
      yield { at: 'host_s2_restored' };
    }
    for (let i = 0; i < nrPages; i++) this.vmemmap.setHostState(first + i, st);
    yield { at: 'host_state' };
    return 0;
  }

  private setHypRange(phys: number, nrPages: number, st: PageState): void {
    const first = phys / PAGE_SIZE;
    for (let i = 0; i < nrPages; i++) this.vmemmap.setHypState(first + i, st);
  }

  /** `host_stage2_set_owner_locked` with the vmemmap update of the host state. */
  private *setOwner(phys: number, nrPages: number, owner: number): Generator<YieldPoint, number, void> {
    const r = this.hostS2.setOwnerLocked(phys, nrPages * PAGE_SIZE, owner, (state) => {
      const first = phys / PAGE_SIZE;
      for (let i = 0; i < nrPages; i++) this.vmemmap.setHostState(first + i, state === 'owned' ? PKVM_PAGE_OWNED : PKVM_NOPAGE);
    });
    yield { at: 'host_s2_owner' };
    return r;
  }

  private *setOwnerGuest(phys: number, vm: GuestVm, gfn: number): Generator<YieldPoint, number, void> {
    const r = this.hostS2.setOwnerMetadataLocked(phys, PAGE_SIZE, PKVM_ID_GUEST, encodeGuestMeta(vm.handle, gfn), () => {
      this.vmemmap.setHostState(phys / PAGE_SIZE, PKVM_NOPAGE);
    });
    yield { at: 'host_s2_owner' };
    return r;
  }

  /** A WARN_ON at EL2 is a panic (bug class 4): the checks must have made this impossible. */
  private warnOn(r: number, what: string): void {
    if (r !== 0) throw new HypervisorPanic(`${what} failed with ${r} after its checks passed`);
  }

  private hypMap(phys: number, nrPages: number, how: HypMapping): void {
    for (let i = 0; i < nrPages; i++) this.hypS1.set(phys / PAGE_SIZE + i, how);
  }

  private hypUnmap(phys: number, nrPages: number): void {
    for (let i = 0; i < nrPages; i++) this.hypS1.delete(phys / PAGE_SIZE + i);
  }

  // --- §3.1–§3.6 host ↔ hypervisor ---

  *hostShareHyp(pfn: number): Hypercall {
    const phys = this.pfnToPhys(pfn);
    let r = this.hostCheckPageStateRange(phys, 1, PKVM_PAGE_OWNED);
    if (r !== 0) return r;
    r = this.hypCheckPageStateRange(phys, 1, PKVM_NOPAGE);
    if (r !== 0) return r;
    this.setHypRange(phys, 1, PKVM_PAGE_SHARED_BORROWED);
    this.warnOn(yield* this.hostSetPageStateRange(phys, 1, PKVM_PAGE_SHARED_OWNED), 'host_share_hyp');
    return 0;
  }

  *hostUnshareHyp(pfn: number): Hypercall {
    const phys = this.pfnToPhys(pfn);
    let r = this.hostCheckPageStateRange(phys, 1, PKVM_PAGE_SHARED_OWNED);
    if (r !== 0) return r;
    r = this.hypCheckPageStateRange(phys, 1, PKVM_PAGE_SHARED_BORROWED);
    if (r !== 0) return r;
    if (this.vmemmap.refcount(phys / PAGE_SIZE) !== 0) return -EBUSY;
    this.setHypRange(phys, 1, PKVM_NOPAGE);
    this.warnOn(yield* this.hostSetPageStateRange(phys, 1, PKVM_PAGE_OWNED), 'host_unshare_hyp');
    return 0;
  }

  *hostDonateHyp(pfn: number, nrPages: number): Hypercall {
    if (!this.pfnRangeIsValid(pfn, nrPages)) return -EINVAL;
    const phys = this.pfnToPhys(pfn);
    let r = this.hostCheckPageStateRange(phys, nrPages, PKVM_PAGE_OWNED);
    if (r !== 0) return r;
    r = this.hypCheckPageStateRange(phys, nrPages, PKVM_NOPAGE);
    if (r !== 0) return r;
    this.setHypRange(phys, nrPages, PKVM_PAGE_OWNED);
    this.hypMap(phys, nrPages, 'mem');
    this.warnOn(yield* this.setOwner(phys, nrPages, PKVM_ID_HYP), 'host_donate_hyp');
    return 0;
  }

  *hypDonateHost(pfn: number, nrPages: number): Hypercall {
    if (!this.pfnRangeIsValid(pfn, nrPages)) return -EINVAL;
    const phys = this.pfnToPhys(pfn);
    let r = this.hypCheckPageStateRange(phys, nrPages, PKVM_PAGE_OWNED);
    if (r !== 0) return r;
    r = this.hostCheckPageStateRange(phys, nrPages, PKVM_NOPAGE);
    if (r !== 0) return r;
    this.setHypRange(phys, nrPages, PKVM_NOPAGE);
    this.hypUnmap(phys, nrPages);
    this.warnOn(yield* this.setOwner(phys, nrPages, PKVM_ID_HOST), 'hyp_donate_host');
    return 0;
  }

  *hypPinSharedMem(pfn: number, nrPages: number): Hypercall {
    if (!this.pfnRangeIsValid(pfn, nrPages)) return -EINVAL;
    const phys = this.pfnToPhys(pfn);
    let r = this.hostCheckPageStateRange(phys, nrPages, PKVM_PAGE_SHARED_OWNED);
    if (r !== 0) return r;
    r = this.hypCheckPageStateRange(phys, nrPages, PKVM_PAGE_SHARED_BORROWED);
    if (r !== 0) return r;
    for (let i = 0; i < nrPages; i++) {
      const p = phys / PAGE_SIZE + i;
      const count = this.vmemmap.refcount(p) + 1;
      this.vmemmap.setRefcount(p, count);
      if (count === 1) this.hypS1.set(p, 'mem');
    }
    yield { at: 'pinned' };
    return 0;
  }

  /** The kernel BUG()s on an unpinned page; like the model we refuse with -EINVAL instead. */
  *hypUnpinSharedMem(pfn: number, nrPages: number): Hypercall {
    if (!this.pfnRangeIsValid(pfn, nrPages)) return -EINVAL;
    for (let i = 0; i < nrPages; i++) {
      const p = pfn + i;
      if (!this.vmemmap.has(p) || this.vmemmap.refcount(p) === 0) return -EINVAL;
    }
    for (let i = 0; i < nrPages; i++) {
      const p = pfn + i;
      const count = this.vmemmap.refcount(p);
      if (count === 1) this.hypS1.delete(p);
      this.vmemmap.setRefcount(p, count - 1);
    }
    yield { at: 'unpinned' };
    return 0;
  }

  *hostShareFfa(pfn: number, nrPages: number): Hypercall {
    if (!this.pfnRangeIsValid(pfn, nrPages)) return -EINVAL;
    const phys = this.pfnToPhys(pfn);
    const r = this.hostCheckPageStateRange(phys, nrPages, PKVM_PAGE_OWNED);
    if (r !== 0) return r;
    this.warnOn(yield* this.hostSetPageStateRange(phys, nrPages, PKVM_PAGE_SHARED_OWNED), 'host_share_ffa');
    return 0;
  }

  *hostUnshareFfa(pfn: number, nrPages: number): Hypercall {
    if (!this.pfnRangeIsValid(pfn, nrPages)) return -EINVAL;
    const phys = this.pfnToPhys(pfn);
    const r = this.hostCheckPageStateRange(phys, nrPages, PKVM_PAGE_SHARED_OWNED);
    if (r !== 0) return r;
    this.warnOn(yield* this.hostSetPageStateRange(phys, nrPages, PKVM_PAGE_OWNED), 'host_unshare_ffa');
    return 0;
  }

  // --- VMs ---

  private findVm(vm: number): GuestVm | undefined {
    return vm < this.config.maxVms ? this.vms.get(vm) : undefined;
  }

  private guestPgdPages(): number {
    const g = this.config.format.granule;
    const start = 4 - Math.max(2, Math.floor((this.config.physShift - 8) / g.bitsPerLevel));
    return Math.max(1, 2 ** (this.config.physShift - (g.bitsPerLevel * (4 - start) + 3) - g.bitsPerLevel));
  }

  /**
   * `__pkvm_init_vm`: the host donates the VM and vCPU structures and the PGD. The PGD must be
   * contiguous; it is placed in the PGD carve-out while the same number of pages is taken from
   * the memcache, so the page budget matches what the host would have donated.
   */
  *initVm(vm: number, isProtected: boolean): Hypercall {
    if (vm >= this.config.maxVms) return -EINVAL;
    const need = this.config.vmStructPages + this.guestPgdPages();
    if (this.memcache.available < need) return -ENOMEM;
    if (this.vms.has(vm)) return -EINVAL;
    const metadata: number[] = [];
    for (let i = 0; i < need; i++) metadata.push(this.memcache.pop() as number);
    const pool = new VmPagePool(this.memory, this.memcache);
    const guest = new GuestVm(vm, isProtected, this.memory, pool, this.pgdCarveout, this.guestTlb, this.config.format, this.config.physShift, metadata);
    this.vms.set(vm, guest);
    yield { at: 'vm_created' };
    return 0;
  }

  /**
   * Teardown as a well-behaved host performs it, in one step (the model's choice):
   * `__pkvm_start_teardown_vm`, the host reclaims every donated or shared-back page and unshares
   * every host share, then `__pkvm_finalize_teardown_vm` destroys the stage-2 and gives every
   * pool page back.
   */
  *teardownVm(vm: number): Hypercall {
    const guest = this.findVm(vm);
    if (guest === undefined) return -EINVAL;
    const dump = dumpTable(this.memory, guest.pgt.root());
    for (const entry of dump.entries) {
      const state = guest.leafState(entry.lo, entry.hi);
      if (state === 'poison' || state === PKVM_NOPAGE) continue;
      const size = entry.level === LAST_LEVEL ? 1 : BLOCK_PAGES;
      const phys = descOutputAddress(guest.pgt.format, entry.lo, entry.hi);
      if (state === PKVM_PAGE_SHARED_BORROWED) {
        if (this.checkHostSharedPages(phys, size) === 0) yield* this.releaseHostShare(phys, size);
        continue;
      }
      if (state === PKVM_PAGE_OWNED) this.poison(phys);
      this.warnOn(yield* this.setOwner(phys, 1, PKVM_ID_HOST), 'teardown reclaim');
    }
    guest.pgt.destroy();
    guest.pool.drain();
    for (const page of guest.metadataPages) this.memcache.push(page);
    this.vms.delete(vm);
    yield { at: 'vm_destroyed' };
    return 0;
  }

  // --- §3.7–§3.11 host ↔ guest ---

  private npVm(vm: number): GuestVm | undefined {
    const g = this.findVm(vm);
    return g !== undefined && !g.isProtected ? g : undefined;
  }

  private protectedVm(vm: number): GuestVm | undefined {
    const g = this.findVm(vm);
    return g !== undefined && g.isProtected ? g : undefined;
  }

  /** `prot` as the host passes it: a subset of "rwx"; anything else is outside KVM_PGTABLE_PROT_RWX. */
  static parseProt(text: string): number | undefined {
    let prot = 0;
    for (const c of text) {
      if (c === 'r') prot |= PROT_R;
      else if (c === 'w') prot |= PROT_W;
      else if (c === 'x') prot |= PROT_X;
      else return undefined;
    }
    return prot;
  }

  /** `__guest_check_transition_size`: one page, or one block-aligned level-2 block. */
  private transitionPages(phys: number, ipa: number, nrPages: number): number {
    if (nrPages === 1) return 1;
    if (nrPages !== BLOCK_PAGES) return -EINVAL;
    const block = BLOCK_PAGES * PAGE_SIZE;
    if (phys % block !== 0 || ipa % block !== 0) return -EINVAL;
    return BLOCK_PAGES;
  }

  private get memcacheMinPages(): number {
    return Math.max(2, Math.floor((this.config.physShift - 8) / this.config.format.granule.bitsPerLevel)) - 1;
  }

  *hostShareGuest(pfn: number, gfn: number, nrPages: number, vm: number, protText: string): Hypercall {
    const guest = this.npVm(vm);
    if (guest === undefined) return -EINVAL;
    const prot = Hypervisor.parseProt(protText);
    if (prot === undefined) return -EINVAL;
    if (!this.pfnRangeIsValid(pfn, nrPages)) return -EINVAL;
    const phys = this.pfnToPhys(pfn);
    const ipa = this.pfnToPhys(gfn);
    const size = this.transitionPages(phys, ipa, nrPages);
    if (size < 0) return size;
    let r = this.memoryMap.checkRangeAllowedMemory(phys, this.endOf(phys, size));
    if (r !== 0) return r;
    r = guest.checkNoPage(ipa, size * PAGE_SIZE, -EPERM);
    if (r !== 0) return r;
    for (let i = 0; i < size; i++) {
      const p = phys / PAGE_SIZE + i;
      const st = this.vmemmap.hostState(p);
      if (st === PKVM_PAGE_OWNED) continue;
      const count = this.vmemmap.shareGuestCount(p);
      if (st === PKVM_PAGE_SHARED_OWNED && count === U32_MAX) return -EBUSY;
      if (st === PKVM_PAGE_SHARED_OWNED && count > 0) continue;
      return -EPERM;
    }
    if (this.memcache.available < this.memcacheMinPages) return -ENOMEM;
    for (let i = 0; i < size; i++) {
      const p = phys / PAGE_SIZE + i;
      this.vmemmap.setHostState(p, PKVM_PAGE_SHARED_OWNED);
      this.vmemmap.setShareGuestCount(p, this.vmemmap.shareGuestCount(p) + 1);
    }
    yield { at: 'host_state' };
    this.warnOn(guest.pgt.map(ipa, size * PAGE_SIZE, phys, mkstate(prot, PKVM_PAGE_SHARED_BORROWED), guest.pool), 'guest map');
    yield { at: 'guest_s2' };
    return 0;
  }

  private checkHostSharedPages(phys: number, nrPages: number): number {
    for (let i = 0; i < nrPages; i++) {
      const p = phys / PAGE_SIZE + i;
      if (this.vmemmap.hostState(p) !== PKVM_PAGE_SHARED_OWNED) return -EPERM;
      if (this.vmemmap.shareGuestCount(p) === 0) return -EINVAL;
    }
    return 0;
  }

  private *releaseHostShare(phys: number, nrPages: number): Generator<YieldPoint, void, void> {
    for (let i = 0; i < nrPages; i++) {
      const p = phys / PAGE_SIZE + i;
      const count = this.vmemmap.shareGuestCount(p) - 1;
      this.vmemmap.setShareGuestCount(p, count);
      if (count === 0) this.vmemmap.setHostState(p, PKVM_PAGE_OWNED);
    }
    yield { at: 'host_state' };
  }

  *hostUnshareGuest(gfn: number, nrPages: number, vm: number): Hypercall {
    const guest = this.npVm(vm);
    if (guest === undefined) return -EINVAL;
    const ipa = this.pfnToPhys(gfn);
    const size = this.transitionPages(0, ipa, nrPages);
    if (size < 0) return size;
    const leaf = guest.pgt.getLeaf(ipa);
    if (leaf.ret !== 0) return leaf.ret;
    if ((leaf.lo & 1) === 0) return -ENOENT;
    const leafPages = leaf.level === LAST_LEVEL ? 1 : leaf.level === LAST_LEVEL - 1 ? BLOCK_PAGES : -1;
    if (leafPages !== size) return -E2BIG;
    if (guest.leafState(leaf.lo, leaf.hi) !== PKVM_PAGE_SHARED_BORROWED) return -EPERM;
    const phys = descOutputAddress(guest.pgt.format, leaf.lo, leaf.hi);
    let r = this.memoryMap.checkRangeAllowedMemory(phys, phys + size * PAGE_SIZE);
    if (r !== 0) return r;
    r = this.checkHostSharedPages(phys, size);
    if (r !== 0) return r;
    const blockIpa = ipa - (ipa % (size * PAGE_SIZE));
    r = guest.pgt.unmap(blockIpa, size * PAGE_SIZE);
    if (r !== 0) return r;
    yield { at: 'guest_s2' };
    yield* this.releaseHostShare(phys, size);
    return 0;
  }

  *hostRelaxPermsGuest(gfn: number, vm: number, protText: string): Hypercall {
    const guest = this.npVm(vm);
    if (guest === undefined) return -EINVAL;
    const prot = Hypervisor.parseProt(protText);
    if (prot === undefined) return -EINVAL;
    const r = guest.pgt.relaxPerms(this.pfnToPhys(gfn), prot);
    yield { at: 'guest_s2' };
    return r;
  }

  *hostWrprotectGuest(gfn: number, nrPages: number, vm: number): Hypercall {
    const guest = this.npVm(vm);
    if (guest === undefined) return -EINVAL;
    const ipa = this.pfnToPhys(gfn);
    const size = this.transitionPages(0, ipa, nrPages);
    if (size < 0) return size;
    const r = guest.pgt.wrprotect(ipa, size * PAGE_SIZE);
    yield { at: 'guest_s2' };
    return r;
  }

  *hostDonateGuest(pfn: number, gfn: number, vm: number): Hypercall {
    const guest = this.protectedVm(vm);
    if (guest === undefined) return -EINVAL;
    const phys = this.pfnToPhys(pfn);
    let r = this.hostCheckPageStateRange(phys, 1, PKVM_PAGE_OWNED);
    if (r !== 0) return r;
    const ipa = this.pfnToPhys(gfn);
    r = guest.checkNoPage(ipa, PAGE_SIZE, -EPERM);
    if (r !== 0) return r;
    if (this.memcache.available < this.memcacheMinPages) return -ENOMEM;
    this.warnOn(yield* this.setOwnerGuest(phys, guest, ipa / PAGE_SIZE), 'host_donate_guest set_owner');
    this.warnOn(guest.pgt.map(ipa, PAGE_SIZE, phys, mkstate(PROT_RWX, PKVM_PAGE_OWNED), guest.pool), 'guest map');
    yield { at: 'guest_s2' };
    return 0;
  }

  /** `get_valid_guest_pte`: the level-3 valid entry at ipa, or -ERANGE/-EHWPOISON/-ENOENT/-E2BIG. */
  private validGuestPte(guest: GuestVm, ipa: number): { phys: number; state: PageState; lo: number; hi: number } | number {
    const leaf = guest.pgt.getLeaf(ipa);
    if (leaf.ret !== 0) return leaf.ret;
    const st = guest.leafState(leaf.lo, leaf.hi);
    if (st === 'poison') return -EHWPOISON;
    if ((leaf.lo & 1) === 0) return -ENOENT;
    if (leaf.level !== LAST_LEVEL) return -E2BIG;
    const phys = descOutputAddress(guest.pgt.format, leaf.lo, leaf.hi);
    const r = this.memoryMap.checkRangeAllowedMemory(phys, phys + PAGE_SIZE);
    if (r !== 0) return r;
    return { phys, state: st, lo: leaf.lo, hi: leaf.hi };
  }

  /** `hyp_poison_page`: zero the page (and clean it to PoC). */
  private poison(phys: number): void {
    this.memory.zero(phys, PAGE_SIZE);
    this.poisonCount++;
  }

  *hostReclaimPageGuest(gfn: number, vm: number): Hypercall {
    const guest = this.findVm(vm);
    if (guest === undefined) return -EINVAL;
    const ipa = this.pfnToPhys(gfn);
    const pte = this.validGuestPte(guest, ipa);
    if (pte === -EHWPOISON) return 0;
    if (typeof pte === 'number') return pte;
    if (pte.state === PKVM_PAGE_OWNED) {
      if (this.vmemmap.hostState(pte.phys / PAGE_SIZE) !== PKVM_NOPAGE) throw new HypervisorPanic('reclaim: guest-owned page not NOPAGE for the host');
      this.poison(pte.phys);
    } else if (pte.state === PKVM_PAGE_SHARED_OWNED) {
      if (this.vmemmap.hostState(pte.phys / PAGE_SIZE) !== PKVM_PAGE_SHARED_BORROWED) throw new HypervisorPanic('reclaim: shared-back page not borrowed by the host');
    } else {
      return -EPERM;
    }
    this.warnOn(guest.pgt.unmap(ipa, PAGE_SIZE), 'guest unmap');
    yield { at: 'guest_s2' };
    this.warnOn(yield* this.setOwner(pte.phys, 1, PKVM_ID_HOST), 'reclaim set_owner');
    return 0;
  }

  *hostForceReclaimPageGuest(pfn: number): Hypercall {
    const phys = this.pfnToPhys(pfn);
    if (!this.memoryMap.addrIsMemory(phys)) return -EFAULT;
    const st = this.vmemmap.hostState(phys / PAGE_SIZE);
    if (st === PKVM_PAGE_OWNED || st === PKVM_PAGE_SHARED_OWNED || st === PKVM_PAGE_SHARED_BORROWED) return -EAGAIN;
    const leaf = this.hostS2.pgt.getLeaf(phys);
    if (leaf.ret !== 0) return leaf.ret;
    const entry = decodeInvalidEntry(this.hostS2.pgt.format, leaf.lo, leaf.hi);
    if (leaf.level !== LAST_LEVEL || (leaf.lo & 1) !== 0 || entry.kind !== 'annotation' || entry.type !== INVALID_TYPE_HOST_DONATION) return -EINVAL;
    if (entry.owner !== PKVM_ID_GUEST) return -EPERM;
    const { handle, gfn } = decodeGuestMeta(entry.meta);
    const guest = this.findVm(handle - HANDLE_OFFSET);
    if (guest === undefined || guest.handle !== handle) return -EAGAIN;
    const ipa = gfn * PAGE_SIZE;
    const pte = this.validGuestPte(guest, ipa);
    if (typeof pte === 'number') return pte;
    if (pte.phys !== phys || pte.state !== PKVM_PAGE_OWNED) return -EPERM;
    this.warnOn(guest.pgt.annotate(ipa, PAGE_SIZE, null, encodeTypedAnnotation(INVALID_TYPE_GUEST_POISONED, 0, u64(0, 0))), 'guest poison annotation');
    yield { at: 'guest_s2' };
    this.poison(phys);
    this.warnOn(yield* this.setOwner(phys, 1, PKVM_ID_HOST), 'force reclaim set_owner');
    return 0;
  }

  // --- §3.12 guest-initiated ---

  *guestShareHost(vm: number, gfn: number): Hypercall {
    const guest = this.protectedVm(vm);
    if (guest === undefined) return -EINVAL;
    const ipa = this.pfnToPhys(gfn);
    const pte = this.validGuestPte(guest, ipa);
    if (typeof pte === 'number') return pte;
    if (pte.state !== PKVM_PAGE_OWNED) return -EPERM;
    if (this.hostCheckPageStateRange(pte.phys, 1, PKVM_NOPAGE) !== 0) return -EPERM;
    this.warnOn(guest.pgt.map(ipa, PAGE_SIZE, pte.phys, mkstate(PROT_RWX, PKVM_PAGE_SHARED_OWNED), guest.pool), 'guest remap');
    yield { at: 'guest_s2' };
    this.warnOn(yield* this.hostSetPageStateRange(pte.phys, 1, PKVM_PAGE_SHARED_BORROWED), 'guest_share_host');
    return 0;
  }

  *guestUnshareHost(vm: number, gfn: number): Hypercall {
    const guest = this.protectedVm(vm);
    if (guest === undefined) return -EINVAL;
    const ipa = this.pfnToPhys(gfn);
    const pte = this.validGuestPte(guest, ipa);
    if (typeof pte === 'number') return pte;
    if (pte.state !== PKVM_PAGE_SHARED_OWNED) return -EPERM;
    if (this.hostCheckPageStateRange(pte.phys, 1, PKVM_PAGE_SHARED_BORROWED) !== 0) return -EPERM;
    this.warnOn(yield* this.setOwnerGuest(pte.phys, guest, ipa / PAGE_SIZE), 'guest_unshare_host set_owner');
    this.warnOn(guest.pgt.map(ipa, PAGE_SIZE, pte.phys, mkstate(PROT_RWX, PKVM_PAGE_OWNED), guest.pool), 'guest remap');
    yield { at: 'guest_s2' };
    return 0;
  }

  // --- §6.9 MMIO donation (SER-T&E, with the checks asked for in review) ---

  /** Host state of an MMIO page: NOPAGE when the host stage-2 holds an annotation there. */
  mmioHostHasPage(phys: number): boolean {
    const leaf = this.hostS2.pgt.getLeaf(phys);
    return leaf.ret !== 0 || (leaf.lo & 1) !== 0 || (leaf.lo === 0 && leaf.hi === 0);
  }

  *hostDonateHypMmio(pfn: number): Hypercall {
    const phys = this.pfnToPhys(pfn);
    if (this.memoryMap.addrIsMemory(phys)) return -EPERM;
    const leaf = this.hostS2.pgt.getLeaf(phys);
    if (leaf.ret !== 0) return leaf.ret === -ERANGE ? -ERANGE : leaf.ret;
    if ((leaf.lo & 1) === 0 && (leaf.lo !== 0 || leaf.hi !== 0)) return -EPERM;
    if (this.hypS1.has(phys / PAGE_SIZE)) return -EBUSY;
    this.hypS1.set(phys / PAGE_SIZE, 'device');
    this.warnOn(this.hostS2.annotateMmioForHyp(phys, PAGE_SIZE), 'host_donate_hyp_mmio annotate');
    yield { at: 'host_s2_owner' };
    return 0;
  }

  *hypDonateHostMmio(pfn: number): Hypercall {
    const phys = this.pfnToPhys(pfn);
    if (this.memoryMap.addrIsMemory(phys)) return -EPERM;
    if (phys >= 2 ** this.config.physShift) return -ERANGE;
    if (this.hypS1.get(phys / PAGE_SIZE) !== 'device') return -EPERM;
    const note = this.hostS2.annotationAt(phys);
    if (note === undefined || note.owner !== PKVM_ID_HYP) return -EPERM;
    this.hypS1.delete(phys / PAGE_SIZE);
    this.warnOn(this.hostS2.clearMmioAnnotation(phys, PAGE_SIZE), 'hyp_donate_host_mmio');
    yield { at: 'host_s2_owner' };
    return 0;
  }

  /** Runs an ownership hypercall on the hypervisor's own behalf and records it. */
  *internal(op: InternalCall['op'], call: Hypercall): Hypercall {
    const ret = yield* call;
    this.internalCalls.push({ op, ret });
    return ret;
  }

  /**
   * A host data access to MMIO the hypervisor owns: `kvm_iommu_host_dabt_handler` hands it to the
   * emulation of the device behind it; anything else gets the injected abort.
   */
  *hostMmioAccess(addr: number, write: boolean, value: number, size: 1 | 2 | 4 | 8 = 4, valueHi = 0): Hypercall {
    if (addr >= 2 ** this.config.physShift || this.memoryMap.addrIsMemory(addr)) return HOST_ACCESS_ABORT;
    const pfn = Math.floor(addr / PAGE_SIZE);
    const owned = this.hypS1.get(pfn) === 'device' && this.hostS2.annotationAt(pfn * PAGE_SIZE)?.owner === PKVM_ID_HYP;
    const emulator = this.mmioEmulators.find((e) => addr >= e.base && addr < e.base + e.size);
    if (!owned) {
      // The host still owns it: a plain access through its stage-2.
      const r = yield* this.hostAccess(addr, write ? 'write' : 'read');
      return r;
    }
    // An unaligned access to Device memory takes an alignment fault at the host's stage 1.
    if (emulator === undefined || addr % size !== 0) return HOST_ACCESS_ABORT;
    // The DABT handler decodes the size from ESR.SAS (v4 DABT patch, series-as-posted.md §2.2).
    const read = yield* emulator.access({ offset: addr - emulator.base, size, write, lo: value >>> 0, hi: valueHi >>> 0 });
    this.lastMmioRead = read.lo;
    this.lastMmioReadHi = read.hi;
    return HOST_ACCESS_EMULATED;
  }

  // --- §2.3 host memory accesses and the abort handler ---

  /**
   * A host CPU access: TLB → walk → on a stage-2 fault, `handle_host_mem_abort`, then retry.
   * Returns a HOST_ACCESS_* code. The host's own stage 1 refuses IPAs at or above 2^PARange.
   */
  *hostAccess(addr: number, access: 'read' | 'write' | 'exec'): Hypercall {
    if (addr >= 2 ** this.config.physShift) return HOST_ACCESS_ABORT;
    for (let attempt = 0; attempt < 3; attempt++) {
      const out = this.cpu.access(addr, access);
      if (out.kind === 'done' || out.kind === 'external_abort') return HOST_ACCESS_OK;
      const r = this.hostS2.idmap(addr - (addr % PAGE_SIZE));
      yield { at: 'host_fault_handled' };
      if (r === -EPERM) {
        const dataAbort = access !== 'exec';
        if (dataAbort && !this.memoryMap.addrIsMemory(addr) && this.hypS1.get(Math.floor(addr / PAGE_SIZE)) === 'device') return HOST_ACCESS_EMULATED;
        return HOST_ACCESS_ABORT;
      }
      if (r !== 0 && r !== -EEXIST) throw new HypervisorPanic(`host_stage2_idmap returned ${r}`);
    }
    // Faulting again on a mapping the handler considers present: the host replays forever.
    return HOST_ACCESS_STALL;
  }
}
