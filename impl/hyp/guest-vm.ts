/**
 * A VM as the hypervisor holds it (`struct pkvm_hyp_vm`, pkvm-host-s2-iommu.md §5): its handle,
 * whether it is protected, its stage-2 (bit-accurate, page state in the software bits 56:55),
 * its page pool, and the pages taken for its metadata.
 */
import { type PhysicalMemory } from '../arch/physical-memory.js';
import { INVALID_TYPE_GUEST_POISONED, type S2Format, decodeInvalidEntry } from '../arch/s2-descriptor.js';
import { KvmPgtable, PROT_SW_SHIFT, type Stage2Tlb, WALK_LEAF } from '../pgtable/kvm-pgtable.js';
import { type TablePageAllocator } from '../pgtable/page-allocator.js';
import { type VmPagePool } from './memcache.js';
import { PKVM_NOPAGE, type PageState } from './vmemmap.js';

/** Kernel handles start here (HANDLE_OFFSET); operations name VMs by table index. */
export const HANDLE_OFFSET = 0x1000;

/** `pkvm_mkstate(prot, state)`: state 1 → SW0 (bit 55), state 2 → SW1 (bit 56). */
export function mkstate(prot: number, state: PageState): number {
  return (prot & ~(3 << PROT_SW_SHIFT)) | (state << PROT_SW_SHIFT);
}

/** Guest state of a leaf: the software bits of a valid entry; POISON or NOPAGE otherwise. */
export type GuestLeafState = PageState | 'poison';

export class GuestVm {
  readonly pgt: KvmPgtable;

  constructor(
    readonly index: number,
    readonly isProtected: boolean,
    memory: PhysicalMemory,
    readonly pool: VmPagePool,
    /** Where the concatenated PGD lives (host-donated contiguous memory, see Hypervisor.initVm). */
    pgdAllocator: TablePageAllocator,
    tlb: Stage2Tlb,
    format: S2Format,
    iaBits: number,
    /** Memcache pages charged for the VM structures and PGD. */
    readonly metadataPages: number[],
  ) {
    // UP-2026 guests: no force-PTE callback; tables come from the VM's own pool, frees go back
    // to it (the PGD is freed to its own allocator at destroy).
    this.pgt = new KvmPgtable(memory, { alloc: (b) => pgdAllocator.alloc(b), free: (pa, b) => (b === this.pgt.granule.size && !this.isPgdPage(pa) ? pool.free(pa, b) : pgdAllocator.free(pa, b)) }, tlb, { format, iaBits });
  }

  get handle(): number {
    return HANDLE_OFFSET + this.index;
  }

  private isPgdPage(pa: number): boolean {
    return pa >= this.pgt.pgd && pa < this.pgt.pgd + this.pgt.pgdPages * this.pgt.granule.size;
  }

  /** `guest_get_page_state` of a raw entry. */
  leafState(lo: number, hi: number): GuestLeafState {
    if ((lo & 1) !== 0) return ((hi >>> (55 - 32)) & 3) as PageState;
    const entry = decodeInvalidEntry(this.pgt.format, lo, hi);
    if (entry.kind === 'annotation' && entry.type === INVALID_TYPE_GUEST_POISONED) return 'poison';
    return PKVM_NOPAGE;
  }

  /** `__guest_check_page_state_range(vm, ipa, size, NOPAGE)`: 0, -EPERM or the walk's error. */
  checkNoPage(ipa: number, size: number, eperm: number): number {
    let bad = false;
    const r = this.pgt.walk(ipa, size, {
      flags: WALK_LEAF,
      cb: (ctx) => {
        if (this.leafState(ctx.oldLo, ctx.oldHi) !== PKVM_NOPAGE) {
          bad = true;
          return eperm;
        }
        return 0;
      },
    });
    if (r !== 0 && !bad) return r;
    return bad ? eperm : 0;
  }
}
