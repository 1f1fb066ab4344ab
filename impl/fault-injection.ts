/**
 * Test-only fault injection (issue 16 item 2, "fail the k-th", after iommufd's `fail_nth`
 * selftest): a `FaultPlan` counts the events of each injection point and makes exactly one of
 * them — the k-th of one point — fail. The instrumented components hold a `faults` field that is
 * `null` by default, so a normal run pays one null check per allocation or CMD_SYNC and nothing
 * else; nothing in impl/ ever sets it (properties/sweep.ts does, through `attachFaultPlan`).
 *
 * The injection points and what a failure means there:
 *  - `hyp_pool`: the hypervisor's page pool for guest PGDs (`pgdCarveout`, a buddy `PagePool`;
 *    UP-2026 `kvm_guest_prepare_stage2` → `hyp_alloc_pages(&vm->pool, ...)` over the donated PGD
 *    pages) — the allocation returns nothing (-ENOMEM);
 *  - `memcache`: a page popped from the host-provided memcache (`pop_hyp_memcache`): VM metadata
 *    at init_vm (the simulator's charge, see Hypervisor.initVm) and the VM pool's growth;
 *  - `vm_pool_topup`: the VM's stage-2 pool growing by one memcache page because its free list is
 *    empty (inferred: the simulator's stand-in for the memcache top-up, which the kernel does in
 *    the hypercall handler, `pkvm_refill_memcache`, not modelled — series-as-posted.md div. 11);
 *  - `host_s2_pool`: a table page of the host stage-2 (`host_s2_pool`, `host_s2_zalloc_page`);
 *  - `iommu_pool`: a page of the IOMMU pool (the idmap's io-pgtable tables, the hypervisor's L2
 *    stream tables; `kvm_iommu_init(pool_base, nr_pages)`, posted v6-era);
 *  - `cmd_sync`: a CMD_SYNC that never completes: `smmu_sync_cmd`'s wait times out (-ETIMEDOUT;
 *    posted v6-era, every caller wraps it in WARN_ON → hyp_panic, series-as-posted.md §2.9).
 */

export const FAULT_POINTS = ['hyp_pool', 'memcache', 'vm_pool_topup', 'host_s2_pool', 'iommu_pool', 'cmd_sync'] as const;

export type FaultPoint = (typeof FAULT_POINTS)[number];

/** What an instrumented component asks before each event: `true` means "fail this one". */
export interface FaultHook {
  fail(point: FaultPoint): boolean;
}

/** Counts every event per point; fails the `k`-th event of `target` (1-based), if given. */
export class FaultPlan implements FaultHook {
  readonly counts: Record<FaultPoint, number> = { hyp_pool: 0, memcache: 0, vm_pool_topup: 0, host_s2_pool: 0, iommu_pool: 0, cmd_sync: 0 };
  /** Set when the planned fault has been injected. */
  fired = false;

  constructor(readonly target?: { readonly point: FaultPoint; readonly k: number }) {}

  fail(point: FaultPoint): boolean {
    const n = ++this.counts[point];
    if (this.target === undefined || this.fired || point !== this.target.point || n !== this.target.k) return false;
    this.fired = true;
    return true;
  }
}

/** The components a plan is attached to (structural, so this file imports nothing). */
export interface FaultTargets {
  readonly hostS2Pool: { faults: FaultHook | null; faultPoint: FaultPoint };
  readonly hyp: { readonly pgdCarveout: object; readonly memcache: { faults: FaultHook | null } };
  readonly iommu: { readonly pool: { faults: FaultHook | null; faultPoint: FaultPoint }; readonly driver: { readonly cmdq: { faults: FaultHook | null } | undefined } } | undefined;
}

/**
 * Attaches `hook` to every injection point of a booted system (after boot, so boot-time
 * allocations are neither counted nor failed); `null` detaches.
 */
export function attachFaultPlan(sys: FaultTargets, hook: FaultHook | null): void {
  sys.hostS2Pool.faults = hook;
  sys.hostS2Pool.faultPoint = 'host_s2_pool';
  const pgd = sys.hyp.pgdCarveout as { faults: FaultHook | null; faultPoint: FaultPoint };
  pgd.faults = hook;
  pgd.faultPoint = 'hyp_pool';
  sys.hyp.memcache.faults = hook;
  if (sys.iommu !== undefined) {
    sys.iommu.pool.faults = hook;
    sys.iommu.pool.faultPoint = 'iommu_pool';
    const cmdq = sys.iommu.driver.cmdq;
    if (cmdq !== undefined) cmdq.faults = hook;
  }
}
