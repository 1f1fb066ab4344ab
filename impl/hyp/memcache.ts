/**
 * Hypervisor page sources for VM bookkeeping (pkvm-host-s2-iommu.md §3.7, §3.11, §5):
 *  - `HypMemcache`: the pages the host has set aside for the hypervisor (`kvm_hyp_memcache`): a
 *    stack of single pages with a finite capacity, so `-ENOMEM` paths are reachable;
 *  - `VmPagePool`: a VM's own pool; guest stage-2 tables are allocated from it first and freed
 *    into it (never straight back to the host), so it only grows from the memcache when more
 *    tables are live than ever before. Teardown gives everything back.
 * Pages are zeroed when handed out, as `hyp_alloc_pages` / the memcache admission do.
 */
import { type PhysicalMemory } from '../arch/physical-memory.js';
import { type FaultHook } from '../fault-injection.js';
import { type TablePageAllocator } from '../pgtable/page-allocator.js';
import { PAGE_SIZE } from './vmemmap.js';

export class HypMemcache {
  private readonly pages: number[] = [];
  /** Test-only fault injection (impl/fault-injection.ts): 'memcache' pops, 'vm_pool_topup'. */
  faults: FaultHook | null = null;

  constructor(
    private readonly memory: PhysicalMemory,
    base: number,
    nrPages: number,
  ) {
    // Highest address at the bottom of the stack so pops go upward through the carve-out.
    for (let i = nrPages - 1; i >= 0; i--) this.pages.push(base + i * PAGE_SIZE);
  }

  get available(): number {
    return this.pages.length;
  }

  pop(): number | undefined {
    if (this.faults !== null && this.faults.fail('memcache')) return undefined;
    const page = this.pages.pop();
    if (page !== undefined) this.memory.zero(page, PAGE_SIZE);
    return page;
  }

  push(page: number): void {
    this.pages.push(page);
  }
}

export class VmPagePool implements TablePageAllocator {
  private readonly freeList: number[] = [];
  /** Pages this VM has taken from the memcache (returned at teardown). */
  readonly owned: number[] = [];

  constructor(
    private readonly memory: PhysicalMemory,
    private readonly memcache: HypMemcache,
  ) {}

  alloc(bytes: number): number | undefined {
    if (bytes !== PAGE_SIZE) return undefined;
    let page = this.freeList.pop();
    if (page === undefined) {
      const faults = this.memcache.faults;
      if (faults !== null && faults.fail('vm_pool_topup')) return undefined;
      page = this.memcache.pop();
      if (page === undefined) return undefined;
      this.owned.push(page);
    } else {
      this.memory.zero(page, PAGE_SIZE);
    }
    return page;
  }

  free(pa: number, bytes: number): void {
    if (bytes !== PAGE_SIZE) throw new Error('VM pool frees single pages only');
    this.freeList.push(pa);
  }

  /** Pages on the free list (freed tables kept for reuse), for leak checks. */
  get freePages(): number {
    return this.freeList.length;
  }

  /** Gives every page this VM ever took back to the memcache. */
  drain(): void {
    for (const page of this.owned) this.memcache.push(page);
    this.owned.length = 0;
    this.freeList.length = 0;
  }
}
