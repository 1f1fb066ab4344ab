/**
 * The precondition helpers of UP-2026 `mem_protect.c`, one function each, returning 0 or a
 * negative errno like their C namesakes so that `apply.ts` reads like the hypercalls (§2.6, §3).
 * Per-page loops stop at the first failing page and never build the whole range first: a range
 * the host hands us may be 2^40 pages long.
 */
import { E2BIG, EHWPOISON, EINVAL, ENOENT, EPERM, ERANGE } from './errno.js';
import { add64, BLOCK_PAGES, checkRangeAllowedMemory, PAGE_SIZE, paLimitPages, physToPfn, pfnToPhys } from './layout.js';
import type { GuestMapping, ModelState, PageState, VmRecord } from './state.js';
import { guestState, hostState, hypState, leafAt } from './state.js';

const PAGE = BigInt(PAGE_SIZE);

/** `__host_check_page_state_range(phys, nr * PAGE_SIZE, want)`: range check first, then states. */
export function hostCheckPageStateRange(s: ModelState, phys: bigint, nrPages: bigint, want: PageState): number {
  const ret = checkRangeAllowedMemory(s.config.layout, phys, add64(phys, nrPages * PAGE));
  if (ret !== 0) return ret;
  const first = physToPfn(phys);
  for (let i = 0; i < Number(nrPages); i++) if (hostState(s, first + i) !== want) return -EPERM;
  return 0;
}

/** `__hyp_check_page_state_range`: no range check — callers are trusted to pass memory (§3.4). */
export function hypCheckPageStateRange(s: ModelState, phys: bigint, nrPages: bigint, want: PageState): number {
  const first = physToPfn(phys);
  for (let i = 0; i < Number(nrPages); i++) if (hypState(s, first + i) !== want) return -EPERM;
  return 0;
}

/**
 * `__guest_check_transition_size(phys, ipa, nr_pages)`: one page, or exactly one level-2 block
 * with both addresses block aligned; returns the size in pages or a negative errno.
 */
export function guestTransitionPages(phys: bigint, ipa: bigint, nrPages: bigint): number {
  if (nrPages === 1n) return 1;
  if (nrPages !== BigInt(BLOCK_PAGES)) return -EINVAL;
  if ((phys | ipa) % (BigInt(BLOCK_PAGES) * PAGE) !== 0n) return -EINVAL;
  return BLOCK_PAGES;
}

/** The IPA page a gfn names: `hyp_pfn_to_phys(gfn)` wraps in u64 like any pfn. */
export function gfnToIpaPage(gfn: bigint): number {
  return physToPfn(pfnToPhys(gfn));
}

/**
 * `kvm_pgtable_walk` refuses ranges beyond the stage-2 input size with -ERANGE (stage2-pgtable
 * §2.3). Guests inherit the host VTCR, so their IPA space is 2^physShift.
 */
export function guestWalkRangeCheck(s: ModelState, ipaPage: number, nrPages: number): number {
  return ipaPage + nrPages > paLimitPages(s.config.layout) ? -ERANGE : 0;
}

/** `__guest_check_page_state_range(vm, ipa, size, NOPAGE)`. */
export function guestCheckNoPage(s: ModelState, vm: VmRecord, ipaPage: number, nrPages: number): number {
  const ret = guestWalkRangeCheck(s, ipaPage, nrPages);
  if (ret !== 0) return ret;
  for (let i = 0; i < nrPages; i++) if (guestState(vm, ipaPage + i) !== 'NOPAGE') return -EPERM;
  return 0;
}

export interface ValidGuestPte {
  /** First gfn of the leaf (equal to the looked-up gfn: valid PTEs here are page sized). */
  readonly gfn: number;
  readonly leaf: GuestMapping;
}

/**
 * `get_valid_guest_pte` (§3.11): -ERANGE outside the IPA space, -EHWPOISON for a poisoned entry,
 * -ENOENT for an empty one, -E2BIG for a block, and a WARN-wrapped range check of the target.
 */
export function getValidGuestPte(s: ModelState, vm: VmRecord, ipaPage: number): ValidGuestPte | number {
  const ret = guestWalkRangeCheck(s, ipaPage, 1);
  if (ret !== 0) return ret;
  const found = leafAt(vm, ipaPage);
  if (found !== undefined && found.leaf.kind === 'poison') return -EHWPOISON;
  if (found === undefined || found.leaf.kind !== 'map') return -ENOENT;
  if (found.leaf.nrPages !== 1) return -E2BIG;
  const phys = pfnToPhys(BigInt(found.leaf.pfn));
  const allowed = checkRangeAllowedMemory(s.config.layout, phys, add64(phys, PAGE));
  if (allowed !== 0) return allowed; // WARN_ON in the kernel; unreachable while the invariants hold
  return { gfn: found.gfn, leaf: found.leaf };
}
