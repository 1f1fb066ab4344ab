/**
 * `apply(state, operation)`: the expected new state and return value of every operation.
 *
 * Each handler follows its UP-2026 counterpart (§3) check by check, in the kernel's order; the
 * first failing check returns its errno with the SAME state object (§3 "no state changed").
 * Section numbers refer to reference/pkvm-host-s2-iommu.md. Handler-level checks (which VM, which
 * kind of VM) come first, as they do in hyp-main.c.
 */
import { E2BIG, EAGAIN, EBUSY, EFAULT, EHWPOISON, EINVAL, ENOENT, ENOMEM, EPERM, ERANGE } from './errno.js';
import {
  addrIsMemory,
  BLOCK_PAGES,
  checkRangeAllowedMemory,
  add64,
  paLimitPages,
  PAGE_SIZE,
  pfnRangeIsValid,
  pfnToPhys,
  physToPfn,
  u64,
} from './layout.js';
import type { Operation, OperationOf } from './operations.js';
import { hostCpuAccess } from './access.js';
import { parseProt, protUnion, protWithoutWrite, PROT_RWX } from './prot.js';
import type { GuestLeaf, GuestMapping, ModelState, VmRecord } from './state.js';
import {
  hostState,
  hypState,
  leafAt,
  memcacheMinPages,
  pageRange,
  pinCount,
  setHost,
  setHyp,
  setVm,
  shareCountOf,
  tablePagesNeeded,
  vmMetadataPages,
  withCounts,
  withLeaf,
} from './state.js';
import {
  getValidGuestPte,
  gfnToIpaPage,
  guestCheckNoPage,
  guestTransitionPages,
  guestWalkRangeCheck,
  hostCheckPageStateRange,
  hypCheckPageStateRange,
} from './checks.js';

export interface ApplyResult {
  readonly state: ModelState;
  /** 0 or a negative errno; for `host_access`, a HOST_ACCESS_* code. */
  readonly ret: number;
}

const U32_MAX = 0xffff_ffff;

const fail = (state: ModelState, ret: number): ApplyResult => ({ state, ret });
const ok = (state: ModelState): ApplyResult => ({ state, ret: 0 });

/** Throws RangeError on a malformed operation (a field that no register could hold). */
export function apply(s: ModelState, op: Operation): ApplyResult {
  // A switch, not ts-pattern: this runs once per step of every run (issue 15 item 1).
  switch (op.kind) {
    case 'host_share_hyp':
      return hostShareHyp(s, op);
    case 'host_unshare_hyp':
      return hostUnshareHyp(s, op);
    case 'host_donate_hyp':
      return hostDonateHyp(s, op);
    case 'hyp_donate_host':
      return hypDonateHost(s, op);
    case 'hyp_pin_shared_mem':
      return hypPinSharedMem(s, op);
    case 'hyp_unpin_shared_mem':
      return hypUnpinSharedMem(s, op);
    case 'host_share_ffa':
      return hostShareFfa(s, op);
    case 'host_unshare_ffa':
      return hostUnshareFfa(s, op);
    case 'init_vm':
      return initVm(s, op);
    case 'teardown_vm':
      return teardownVm(s, op);
    case 'host_share_guest':
      return hostShareGuest(s, op);
    case 'host_unshare_guest':
      return hostUnshareGuest(s, op);
    case 'host_relax_perms_guest':
      return hostRelaxPermsGuest(s, op);
    case 'host_wrprotect_guest':
      return hostWrprotectGuest(s, op);
    case 'host_donate_guest':
      return hostDonateGuest(s, op);
    case 'host_reclaim_page_guest':
      return hostReclaimPageGuest(s, op);
    case 'host_force_reclaim_page_guest':
      return hostForceReclaimPageGuest(s, op);
    case 'guest_share_host':
      return guestShareHost(s, op);
    case 'guest_unshare_host':
      return guestUnshareHost(s, op);
    case 'host_donate_hyp_mmio':
      return hostDonateHypMmio(s, op);
    case 'hyp_donate_host_mmio':
      return hypDonateHostMmio(s, op);
    case 'host_access':
      return hostAccess(s, op);
    default: {
      const never: never = op;
      throw new Error(`unknown operation ${JSON.stringify(never)}`);
    }
  }
}

/** Applies a sequence, returning every intermediate result (handy for traces and tests). */
export function applyAll(s: ModelState, ops: readonly Operation[]): ApplyResult[] {
  const out: ApplyResult[] = [];
  let cur = s;
  for (const op of ops) {
    const r = apply(cur, op);
    out.push(r);
    cur = r.state;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Host <-> hypervisor (§3.1 - §3.6)
// ---------------------------------------------------------------------------------------------

/** The pages of [phys, phys + n) as page frame numbers. Only called once the range is checked. */
function pagesOf(phys: bigint, n: bigint): number[] {
  return pageRange(physToPfn(phys), Number(n));
}

/** §3.1. Single page, so no `pfn_range_is_valid`: the pfn simply wraps in `hyp_pfn_to_phys`. */
function hostShareHyp(s: ModelState, op: OperationOf<'host_share_hyp'>): ApplyResult {
  const phys = pfnToPhys(u64(op.pfn, 'pfn'));
  let ret = hostCheckPageStateRange(s, phys, 1n, 'OWNED');
  if (ret !== 0) return fail(s, ret);
  ret = hypCheckPageStateRange(s, phys, 1n, 'NOPAGE');
  if (ret !== 0) return fail(s, ret);
  const pages = pagesOf(phys, 1n);
  return ok(setHost(setHyp(s, pages, 'SHARED_BORROWED'), pages, 'SHARED_OWNED'));
}

/** §3.2. A pinned page cannot be unshared: -EBUSY after both state checks. */
function hostUnshareHyp(s: ModelState, op: OperationOf<'host_unshare_hyp'>): ApplyResult {
  const phys = pfnToPhys(u64(op.pfn, 'pfn'));
  let ret = hostCheckPageStateRange(s, phys, 1n, 'SHARED_OWNED');
  if (ret !== 0) return fail(s, ret);
  ret = hypCheckPageStateRange(s, phys, 1n, 'SHARED_BORROWED');
  if (ret !== 0) return fail(s, ret);
  const pages = pagesOf(phys, 1n);
  if (pinCount(s, pages[0] ?? 0) !== 0) return fail(s, -EBUSY);
  return ok(setHost(setHyp(s, pages, 'NOPAGE'), pages, 'OWNED'));
}

/** §3.3. The host page leaves the host stage-2 (annotation owner HYP) and the IOMMU idmap. */
function hostDonateHyp(s: ModelState, op: OperationOf<'host_donate_hyp'>): ApplyResult {
  const pfn = u64(op.pfn, 'pfn');
  const n = u64(op.nrPages, 'nrPages');
  if (!pfnRangeIsValid(s.config.layout, pfn, n)) return fail(s, -EINVAL);
  const phys = pfnToPhys(pfn);
  let ret = hostCheckPageStateRange(s, phys, n, 'OWNED');
  if (ret !== 0) return fail(s, ret);
  ret = hypCheckPageStateRange(s, phys, n, 'NOPAGE');
  if (ret !== 0) return fail(s, ret);
  const pages = pagesOf(phys, n);
  return ok(setHost(setHyp(s, pages, 'OWNED'), pages, 'NOPAGE'));
}

/** §3.4. The hyp side is checked first, then the host side (with its range check). */
function hypDonateHost(s: ModelState, op: OperationOf<'hyp_donate_host'>): ApplyResult {
  const pfn = u64(op.pfn, 'pfn');
  const n = u64(op.nrPages, 'nrPages');
  if (!pfnRangeIsValid(s.config.layout, pfn, n)) return fail(s, -EINVAL);
  const phys = pfnToPhys(pfn);
  let ret = hypCheckPageStateRange(s, phys, n, 'OWNED');
  if (ret !== 0) return fail(s, ret);
  ret = hostCheckPageStateRange(s, phys, n, 'NOPAGE');
  if (ret !== 0) return fail(s, ret);
  const pages = pagesOf(phys, n);
  return ok(setHost(setHyp(s, pages, 'NOPAGE'), pages, 'OWNED'));
}

/**
 * §3.5. In the kernel the caller is EL2 code passing a hyp VA range it trusts. The operation
 * carries (pfn, nrPages) from a generator, so — our choice — it first gets the same
 * `pfn_range_is_valid` as every other range (-EINVAL). The u16 refcount's BUG_ON at 65535 pins
 * is not modelled (no generated sequence gets near it).
 */
function hypPinSharedMem(s: ModelState, op: OperationOf<'hyp_pin_shared_mem'>): ApplyResult {
  const pfn = u64(op.pfn, 'pfn');
  const n = u64(op.nrPages, 'nrPages');
  if (!pfnRangeIsValid(s.config.layout, pfn, n)) return fail(s, -EINVAL);
  const phys = pfnToPhys(pfn);
  let ret = hostCheckPageStateRange(s, phys, n, 'SHARED_OWNED');
  if (ret !== 0) return fail(s, ret);
  ret = hypCheckPageStateRange(s, phys, n, 'SHARED_BORROWED');
  if (ret !== 0) return fail(s, ret);
  return ok({ ...s, pins: withCounts(s.pins, pagesOf(phys, n), +1) });
}

/**
 * §3.5. The kernel's unpin returns nothing and checks nothing: an unpinned page hits
 * `BUG_ON(!refcount)` (a hypervisor panic). The model — our choice — reports that as -EINVAL and
 * changes nothing, after the same range validation as pin.
 */
function hypUnpinSharedMem(s: ModelState, op: OperationOf<'hyp_unpin_shared_mem'>): ApplyResult {
  const pfn = u64(op.pfn, 'pfn');
  const n = u64(op.nrPages, 'nrPages');
  if (!pfnRangeIsValid(s.config.layout, pfn, n)) return fail(s, -EINVAL);
  const first = Number(pfn);
  for (let i = 0; i < Number(n); i++) if (pinCount(s, first + i) === 0) return fail(s, -EINVAL);
  return ok({ ...s, pins: withCounts(s.pins, pageRange(first, Number(n)), -1) });
}

/** §3.6. Host lock only; nothing records that the secure world is the borrower. */
function hostShareFfa(s: ModelState, op: OperationOf<'host_share_ffa'>): ApplyResult {
  const pfn = u64(op.pfn, 'pfn');
  const n = u64(op.nrPages, 'nrPages');
  if (!pfnRangeIsValid(s.config.layout, pfn, n)) return fail(s, -EINVAL);
  const phys = pfnToPhys(pfn);
  const ret = hostCheckPageStateRange(s, phys, n, 'OWNED');
  if (ret !== 0) return fail(s, ret);
  return ok(setHost(s, pagesOf(phys, n), 'SHARED_OWNED'));
}

/**
 * §3.6. Any SHARED_OWNED page passes, whoever borrows it: UP-2026 relies on the FF-A proxy to
 * pass only ranges the secure world confirms it borrowed. Modelled as the C does it; see the
 * README ("trusted FF-A proxy") for what a misused unshare leads to.
 */
function hostUnshareFfa(s: ModelState, op: OperationOf<'host_unshare_ffa'>): ApplyResult {
  const pfn = u64(op.pfn, 'pfn');
  const n = u64(op.nrPages, 'nrPages');
  if (!pfnRangeIsValid(s.config.layout, pfn, n)) return fail(s, -EINVAL);
  const phys = pfnToPhys(pfn);
  const ret = hostCheckPageStateRange(s, phys, n, 'SHARED_OWNED');
  if (ret !== 0) return fail(s, ret);
  return ok(setHost(s, pagesOf(phys, n), 'OWNED'));
}

// ---------------------------------------------------------------------------------------------
// VMs (pkvm.c) — abstracted, see README "VM lifecycle"
// ---------------------------------------------------------------------------------------------

/** The VM named `vm`, if it exists. */
function findVm(s: ModelState, vm: number): VmRecord | undefined {
  const handle = u64(vm, 'vm');
  return handle < BigInt(s.config.maxVms) ? s.vms.get(Number(handle)) : undefined;
}

/**
 * `__pkvm_init_vm`: a handle outside the table is -EINVAL (the kernel checks the lower bound
 * early and the upper bound at insertion; folded together here), then the donations for the VM
 * structures and PGD (-ENOMEM), then insertion, which refuses a handle already in use (-EINVAL).
 */
function initVm(s: ModelState, op: OperationOf<'init_vm'>): ApplyResult {
  const handle = u64(op.vm, 'vm');
  if (handle >= BigInt(s.config.maxVms)) return fail(s, -EINVAL);
  const need = vmMetadataPages(s.config);
  if (s.pool < need) return fail(s, -ENOMEM);
  if (s.vms.has(Number(handle))) return fail(s, -EINVAL);
  const vm: VmRecord = {
    handle: Number(handle),
    protected: op.protected,
    leaves: new Map(),
    metadataPages: need,
    tablePages: 0,
  };
  return ok(setVm({ ...s, pool: s.pool - need }, vm));
}

/**
 * Teardown as a well-behaved host performs it, in one step: `__pkvm_start_teardown_vm`, then the
 * host gives back every guest mapping (reclaim for OWNED / SHARED_OWNED leaves, unshare for
 * SHARED_BORROWED ones), then `__pkvm_finalize_teardown_vm`, which returns the metadata and every
 * stage-2 table page to the host (`reclaim_pgtable_pages`). A share the unshare would refuse
 * (host page not SHARED_OWNED — only after a misused FF-A unshare) is dropped with the table,
 * leaving the host page and its count alone, as finalize would.
 */
function teardownVm(s: ModelState, op: OperationOf<'teardown_vm'>): ApplyResult {
  const vm = findVm(s, op.vm);
  if (vm === undefined) return fail(s, -EINVAL);
  let t = s;
  const leaves = [...vm.leaves.entries()].sort(([a], [b]) => a - b);
  for (const [, leaf] of leaves) {
    if (leaf.kind === 'poison') continue;
    if (leaf.state === 'SHARED_BORROWED') t = releaseHostShare(t, leaf) ?? t;
    else t = setHost(t, [leaf.pfn], 'OWNED'); // donated pages are poisoned (zeroed) first
  }
  const vms = new Map(t.vms);
  vms.delete(vm.handle);
  return ok({ ...t, vms, pool: t.pool + vm.metadataPages + vm.tablePages });
}

/**
 * The host side of `__pkvm_host_unshare_guest` (§3.8): each page must be SHARED_OWNED (-EPERM)
 * with a non-zero count (WARN, -EINVAL); the count drops and the page is the host's alone at 0.
 */
function checkHostSharedPages(s: ModelState, leaf: GuestMapping): number {
  for (const pfn of pageRange(leaf.pfn, leaf.nrPages)) {
    if (hostState(s, pfn) !== 'SHARED_OWNED') return -EPERM;
    if (shareCountOf(s, pfn) === 0) return -EINVAL;
  }
  return 0;
}

function releaseHostShare(s: ModelState, leaf: GuestMapping): ModelState | undefined {
  if (checkHostSharedPages(s, leaf) !== 0) return undefined;
  const pages = pageRange(leaf.pfn, leaf.nrPages);
  const shareCount = withCounts(s.shareCount, pages, -1);
  const freed = pages.filter((p) => !shareCount.has(p));
  return setHost({ ...s, shareCount }, freed, 'OWNED');
}

/**
 * Adds a leaf, charging the budget for the new table pages. The guest stage-2 frees empty tables
 * into the VM's own pool and allocates from there first, so what the budget pays is the
 * high-water mark of tables in use.
 */
function mapLeaf(s: ModelState, vm: VmRecord, gfn: number, leaf: GuestLeaf): ModelState {
  const next = withLeaf(vm, gfn, leaf);
  const extra = Math.max(0, tablePagesNeeded(s.config, next.leaves) - vm.tablePages);
  return setVm({ ...s, pool: s.pool - extra }, { ...next, tablePages: vm.tablePages + extra });
}

// ---------------------------------------------------------------------------------------------
// Host <-> guest (§3.7 - §3.11)
// ---------------------------------------------------------------------------------------------

/** Handlers that need a loaded vCPU of a non-protected VM, or a non-protected VM by handle. */
function npVm(s: ModelState, vm: number): VmRecord | undefined {
  const found = findVm(s, vm);
  return found !== undefined && !found.protected ? found : undefined;
}

function protectedVm(s: ModelState, vm: number): VmRecord | undefined {
  const found = findVm(s, vm);
  return found !== undefined && found.protected ? found : undefined;
}

/** §3.7. */
function hostShareGuest(s: ModelState, op: OperationOf<'host_share_guest'>): ApplyResult {
  const vm = npVm(s, op.vm);
  if (vm === undefined) return fail(s, -EINVAL);
  const prot = parseProt(op.prot);
  if (prot === undefined) return fail(s, -EINVAL);
  const pfn = u64(op.pfn, 'pfn');
  const n = u64(op.nrPages, 'nrPages');
  if (!pfnRangeIsValid(s.config.layout, pfn, n)) return fail(s, -EINVAL);
  const phys = pfnToPhys(pfn);
  const ipa = pfnToPhys(u64(op.gfn, 'gfn'));
  const size = guestTransitionPages(phys, ipa, n);
  if (size < 0) return fail(s, size);
  let ret = checkRangeAllowedMemory(s.config.layout, phys, add64(phys, BigInt(size * PAGE_SIZE)));
  if (ret !== 0) return fail(s, ret);
  const ipaPage = physToPfn(ipa);
  ret = guestCheckNoPage(s, vm, ipaPage, size);
  if (ret !== 0) return fail(s, ret);
  const pages = pagesOf(phys, BigInt(size));
  for (const p of pages) {
    const st = hostState(s, p);
    if (st === 'OWNED') continue;
    if (st === 'SHARED_OWNED' && shareCountOf(s, p) === U32_MAX) return fail(s, -EBUSY);
    // Only host -> non-protected-guest multi-sharing is tolerated: a page shared with the
    // hypervisor or FF-A (count 0) is refused.
    if (st === 'SHARED_OWNED' && shareCountOf(s, p) > 0) continue;
    return fail(s, -EPERM);
  }
  if (s.pool < memcacheMinPages(s.config)) return fail(s, -ENOMEM);
  const shared = setHost({ ...s, shareCount: withCounts(s.shareCount, pages, +1) }, pages, 'SHARED_OWNED');
  const leaf: GuestMapping = { kind: 'map', pfn: physToPfn(phys), nrPages: size === 1 ? 1 : BLOCK_PAGES, state: 'SHARED_BORROWED', prot };
  return ok(mapLeaf(shared, vm, ipaPage, leaf));
}

/** §3.8, `__check_host_shared_guest` then unmap. */
function hostUnshareGuest(s: ModelState, op: OperationOf<'host_unshare_guest'>): ApplyResult {
  const vm = npVm(s, op.vm);
  if (vm === undefined) return fail(s, -EINVAL);
  const ipa = pfnToPhys(u64(op.gfn, 'gfn'));
  const size = guestTransitionPages(0n, ipa, u64(op.nrPages, 'nrPages'));
  if (size < 0) return fail(s, size);
  const ipaPage = physToPfn(ipa);
  let ret = guestWalkRangeCheck(s, ipaPage, 1); // kvm_pgtable_get_leaf
  if (ret !== 0) return fail(s, ret);
  const found = leafAt(vm, ipaPage);
  if (found === undefined || found.leaf.kind !== 'map') return fail(s, -ENOENT);
  if (found.leaf.nrPages !== size) return fail(s, -E2BIG);
  if (found.leaf.state !== 'SHARED_BORROWED') return fail(s, -EPERM);
  const phys = pfnToPhys(BigInt(found.leaf.pfn));
  ret = checkRangeAllowedMemory(s.config.layout, phys, add64(phys, BigInt(size * PAGE_SIZE)));
  if (ret !== 0) return fail(s, ret); // WARN_ON in the kernel; unreachable
  ret = checkHostSharedPages(s, found.leaf);
  if (ret !== 0) return fail(s, ret);
  const released = releaseHostShare(s, found.leaf) ?? s;
  return ok(setVm(released, withLeaf(vm, found.gfn, undefined)));
}

/**
 * §3.9. Only valid leaves change, and only by gaining permissions; an empty or poisoned slot
 * makes the attribute walker return -EAGAIN, which the walk swallows: 0, nothing changed. The
 * CONFIG_NVHE_EL2_DEBUG assertion is not modelled (production build).
 */
function hostRelaxPermsGuest(s: ModelState, op: OperationOf<'host_relax_perms_guest'>): ApplyResult {
  const vm = npVm(s, op.vm);
  if (vm === undefined) return fail(s, -EINVAL);
  const prot = parseProt(op.prot);
  if (prot === undefined) return fail(s, -EINVAL);
  const ipaPage = gfnToIpaPage(u64(op.gfn, 'gfn'));
  const ret = guestWalkRangeCheck(s, ipaPage, 1);
  if (ret !== 0) return fail(s, ret);
  const found = leafAt(vm, ipaPage);
  if (found === undefined || found.leaf.kind !== 'map') return ok(s);
  const relaxed = protUnion(found.leaf.prot, prot);
  if (relaxed === found.leaf.prot) return ok(s);
  return ok(setVm(s, withLeaf(vm, found.gfn, { ...found.leaf, prot: relaxed })));
}

/** §3.9. Clears W on every valid leaf the range touches (a whole block if it touches one). */
function hostWrprotectGuest(s: ModelState, op: OperationOf<'host_wrprotect_guest'>): ApplyResult {
  const vm = npVm(s, op.vm);
  if (vm === undefined) return fail(s, -EINVAL);
  const ipa = pfnToPhys(u64(op.gfn, 'gfn'));
  const size = guestTransitionPages(0n, ipa, u64(op.nrPages, 'nrPages'));
  if (size < 0) return fail(s, size);
  const ipaPage = physToPfn(ipa);
  const ret = guestWalkRangeCheck(s, ipaPage, size);
  if (ret !== 0) return fail(s, ret);
  let next = vm;
  for (const [gfn, leaf] of vm.leaves) {
    if (leaf.kind !== 'map' || gfn + leaf.nrPages <= ipaPage || gfn >= ipaPage + size) continue;
    const prot = protWithoutWrite(leaf.prot);
    if (prot !== leaf.prot) next = withLeaf(next, gfn, { ...leaf, prot });
  }
  return ok(next === vm ? s : setVm(s, next));
}

/** §3.10. */
function hostDonateGuest(s: ModelState, op: OperationOf<'host_donate_guest'>): ApplyResult {
  const vm = protectedVm(s, op.vm);
  if (vm === undefined) return fail(s, -EINVAL);
  const phys = pfnToPhys(u64(op.pfn, 'pfn'));
  let ret = hostCheckPageStateRange(s, phys, 1n, 'OWNED');
  if (ret !== 0) return fail(s, ret);
  const ipaPage = gfnToIpaPage(u64(op.gfn, 'gfn'));
  ret = guestCheckNoPage(s, vm, ipaPage, 1);
  if (ret !== 0) return fail(s, ret);
  if (s.pool < memcacheMinPages(s.config)) return fail(s, -ENOMEM);
  const pfn = physToPfn(phys);
  const leaf: GuestMapping = { kind: 'map', pfn, nrPages: 1, state: 'OWNED', prot: PROT_RWX };
  return ok(mapLeaf(setHost(s, [pfn], 'NOPAGE'), vm, ipaPage, leaf));
}

/**
 * §3.11. -EHWPOISON (already force-reclaimed) is reported as 0 so that the host can drop its pin;
 * nothing changes. Our choice: any existing VM, not only a dying one — see README.
 */
function hostReclaimPageGuest(s: ModelState, op: OperationOf<'host_reclaim_page_guest'>): ApplyResult {
  const vm = findVm(s, op.vm);
  if (vm === undefined) return fail(s, -EINVAL);
  const pte = getValidGuestPte(s, vm, gfnToIpaPage(u64(op.gfn, 'gfn')));
  if (pte === -EHWPOISON) return ok(s);
  if (typeof pte === 'number') return fail(s, pte);
  // OWNED: the host must be NOPAGE (WARN) and the page is poisoned before it goes back.
  // SHARED_OWNED: the host must be SHARED_BORROWED (WARN). Anything else is not reclaimable.
  if (pte.leaf.state !== 'OWNED' && pte.leaf.state !== 'SHARED_OWNED') return fail(s, -EPERM);
  return ok(setVm(setHost(s, [pte.leaf.pfn], 'OWNED'), withLeaf(vm, pte.gfn, undefined)));
}

/**
 * §3.11 `__pkvm_host_force_reclaim_page_guest`. The owner annotation in the host stage-2 is
 * abstract here: a NOPAGE memory page is the hypervisor's if hyp state is OWNED (annotation owner
 * HYP: -EPERM), else the protected guest's whose OWNED leaf maps it.
 */
function hostForceReclaimPageGuest(s: ModelState, op: OperationOf<'host_force_reclaim_page_guest'>): ApplyResult {
  const phys = pfnToPhys(u64(op.pfn, 'pfn'));
  if (!addrIsMemory(s.config.layout, phys)) return fail(s, -EFAULT);
  const pfn = physToPfn(phys);
  const st = hostState(s, pfn);
  if (st === 'OWNED' || st === 'SHARED_OWNED' || st === 'SHARED_BORROWED') return fail(s, -EAGAIN);
  if (hypState(s, pfn) === 'OWNED') return fail(s, -EPERM);
  const owner = guestOwnerOf(s, pfn);
  if (owner === undefined) return fail(s, -EAGAIN); // "raced with teardown"; unreachable here
  const pte = getValidGuestPte(s, owner.vm, owner.gfn);
  if (typeof pte === 'number') return fail(s, pte);
  if (pte.leaf.state !== 'OWNED') return fail(s, -EPERM);
  return ok(setVm(setHost(s, [pfn], 'OWNED'), withLeaf(owner.vm, pte.gfn, { kind: 'poison' })));
}

function guestOwnerOf(s: ModelState, pfn: number): { readonly vm: VmRecord; readonly gfn: number } | undefined {
  for (const vm of s.vms.values()) {
    for (const [gfn, leaf] of vm.leaves) {
      if (leaf.kind === 'map' && leaf.state === 'OWNED' && leaf.pfn === pfn) return { vm, gfn };
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Guest-initiated (§3.12): a running vCPU of a protected VM calls MEM_SHARE / MEM_UNSHARE
// ---------------------------------------------------------------------------------------------

/**
 * Returns the errno of `__pkvm_guest_share_host` itself (the guest sees SMCCC codes; -ENOENT
 * becomes a fake data abort to the host). Our choice: an unknown or non-protected VM is -EINVAL —
 * only protected guests' hypercalls are handled at EL2.
 */
function guestShareHost(s: ModelState, op: OperationOf<'guest_share_host'>): ApplyResult {
  const vm = protectedVm(s, op.vm);
  if (vm === undefined) return fail(s, -EINVAL);
  const pte = getValidGuestPte(s, vm, gfnToIpaPage(u64(op.gfn, 'gfn')));
  if (typeof pte === 'number') return fail(s, pte);
  if (pte.leaf.state !== 'OWNED') return fail(s, -EPERM);
  // The C sets ret = -EPERM before the host check, so a range-check error also reads -EPERM.
  if (hostCheckPageStateRange(s, pfnToPhys(BigInt(pte.leaf.pfn)), 1n, 'NOPAGE') !== 0) return fail(s, -EPERM);
  const shared = setHost(s, [pte.leaf.pfn], 'SHARED_BORROWED');
  return ok(setVm(shared, withLeaf(vm, pte.gfn, { ...pte.leaf, state: 'SHARED_OWNED' })));
}

function guestUnshareHost(s: ModelState, op: OperationOf<'guest_unshare_host'>): ApplyResult {
  const vm = protectedVm(s, op.vm);
  if (vm === undefined) return fail(s, -EINVAL);
  const pte = getValidGuestPte(s, vm, gfnToIpaPage(u64(op.gfn, 'gfn')));
  if (typeof pte === 'number') return fail(s, pte);
  if (pte.leaf.state !== 'SHARED_OWNED') return fail(s, -EPERM);
  if (hostCheckPageStateRange(s, pfnToPhys(BigInt(pte.leaf.pfn)), 1n, 'SHARED_BORROWED') !== 0) return fail(s, -EPERM);
  const taken = setHost(s, [pte.leaf.pfn], 'NOPAGE');
  return ok(setVm(taken, withLeaf(vm, pte.gfn, { ...pte.leaf, state: 'OWNED' })));
}

// ---------------------------------------------------------------------------------------------
// MMIO donation (SER-T&E, §6.9), with the checks Will Deacon asked for and v5 agreed to add
// ---------------------------------------------------------------------------------------------

/**
 * Order: not MMIO -> -EPERM (our choice of errno; the v4 code had no such check), outside the
 * host IPA space -> -ERANGE (`kvm_pgtable_get_leaf`), host PTE annotated (already donated) ->
 * -EPERM, hyp VA already mapped -> -EBUSY (unreachable in the abstract state: only a donation
 * maps MMIO at EL2, and that is caught by the previous check).
 */
function hostDonateHypMmio(s: ModelState, op: OperationOf<'host_donate_hyp_mmio'>): ApplyResult {
  const phys = pfnToPhys(u64(op.pfn, 'pfn'));
  if (addrIsMemory(s.config.layout, phys)) return fail(s, -EPERM);
  const pfn = physToPfn(phys);
  if (pfn >= paLimitPages(s.config.layout)) return fail(s, -ERANGE);
  if (hostState(s, pfn) === 'NOPAGE') return fail(s, -EPERM);
  if (hypState(s, pfn) !== 'NOPAGE') return fail(s, -EBUSY);
  return ok(setHost(setHyp(s, [pfn], 'OWNED'), [pfn], 'NOPAGE'));
}

/** Reverse, with the checks of the review: MMIO, hyp owns it, host has nothing there. */
function hypDonateHostMmio(s: ModelState, op: OperationOf<'hyp_donate_host_mmio'>): ApplyResult {
  const phys = pfnToPhys(u64(op.pfn, 'pfn'));
  if (addrIsMemory(s.config.layout, phys)) return fail(s, -EPERM);
  const pfn = physToPfn(phys);
  if (pfn >= paLimitPages(s.config.layout)) return fail(s, -ERANGE);
  if (hypState(s, pfn) !== 'OWNED') return fail(s, -EPERM);
  if (hostState(s, pfn) !== 'NOPAGE') return fail(s, -EPERM);
  return ok(setHost(setHyp(s, [pfn], 'NOPAGE'), [pfn], 'OWNED'));
}

// ---------------------------------------------------------------------------------------------
// Host CPU access (§2.3): never changes the abstract state (lazy idmap faults are invisible here)
// ---------------------------------------------------------------------------------------------

function hostAccess(s: ModelState, op: OperationOf<'host_access'>): ApplyResult {
  const addr = u64(op.addr, 'addr');
  if (op.access !== 'read' && op.access !== 'write' && op.access !== 'exec') {
    throw new RangeError(`access = ${String(op.access)}`);
  }
  return { state: s, ret: hostCpuAccess(s, physToPfn(addr), op.access) };
}
