/**
 * The invariants the model maintains, as executable checks returning human-readable violations
 * (empty = fine). `checkInvariants` holds after ANY operation sequence; `checkContractInvariants`
 * additionally holds while `host_unshare_ffa` is only applied to pages the host shared with FF-A,
 * which is what the FF-A proxy guarantees in the kernel (README "trusted FF-A proxy").
 */
import { BLOCK_PAGES, checkRangeAllowedMemory, PAGE_SHIFT, paLimitPages, pfnIsMemory } from './layout.js';
import type { GuestMapping, ModelState, VmRecord } from './state.js';
import { hostState, hypState, leafAt, shareCountOf, tablePagesNeeded } from './state.js';

interface GuestUse {
  readonly vm: VmRecord;
  readonly gfn: number;
  readonly leaf: GuestMapping;
}

/** For every page some guest leaf maps: which leaves map it. */
function guestUses(s: ModelState): Map<number, GuestUse[]> {
  const uses = new Map<number, GuestUse[]>();
  for (const vm of s.vms.values()) {
    for (const [gfn, leaf] of vm.leaves) {
      if (leaf.kind !== 'map') continue;
      for (let i = 0; i < leaf.nrPages; i++) {
        const list = uses.get(leaf.pfn + i) ?? [];
        list.push({ vm, gfn, leaf });
        uses.set(leaf.pfn + i, list);
      }
    }
  }
  return uses;
}

/** Every page that is not in its boot state somewhere. Pages outside this set are host OWNED. */
function touchedPages(s: ModelState, uses: Map<number, GuestUse[]>): number[] {
  const all = new Set<number>([...s.host.keys(), ...s.hyp.keys(), ...s.pins.keys(), ...s.shareCount.keys(), ...uses.keys()]);
  return [...all].sort((a, b) => a - b);
}

export function checkInvariants(s: ModelState): string[] {
  const v: string[] = [];
  const { layout } = s.config;
  const uses = guestUses(s);

  // Sparse maps hold no defaults, so that equal states have equal maps.
  for (const [p, st] of s.host) if ((st as string) === 'OWNED') v.push(`host map stores default OWNED for ${p}`);
  for (const [p, st] of s.hyp) if ((st as string) === 'NOPAGE') v.push(`hyp map stores default NOPAGE for ${p}`);
  for (const [p, n] of s.pins) if (!(n > 0)) v.push(`pins of ${p} stored as ${n}`);
  for (const [p, n] of s.shareCount) if (!(n > 0)) v.push(`share count of ${p} stored as ${n}`);

  for (const p of touchedPages(s, uses)) {
    const host = hostState(s, p);
    const hyp = hypState(s, p);
    const here = uses.get(p) ?? [];
    const guestOwners = here.filter((u) => u.leaf.state === 'OWNED' || u.leaf.state === 'SHARED_OWNED');
    const borrowers = here.filter((u) => u.leaf.state === 'SHARED_BORROWED').length;

    if (p >= paLimitPages(layout)) v.push(`page ${p} beyond the PA range has state`);
    const owners = (host === 'OWNED' || host === 'SHARED_OWNED' ? 1 : 0) + (hyp === 'OWNED' || hyp === 'SHARED_OWNED' ? 1 : 0) + guestOwners.length;
    if (owners !== 1) v.push(`page ${p} has ${owners} owners`);
    if (hyp === 'SHARED_OWNED') v.push(`page ${p}: hyp never shares out (SHARED_OWNED)`);

    // The host loses access exactly when the page belongs to the hypervisor or a guest.
    const ownedElsewhere = hyp === 'OWNED' || guestOwners.some((u) => u.leaf.state === 'OWNED');
    if ((host === 'NOPAGE') !== ownedElsewhere) v.push(`page ${p}: host ${host} but owned elsewhere = ${ownedElsewhere}`);
    // The host borrows exactly the pages a protected guest shared back.
    const sharedBack = guestOwners.filter((u) => u.leaf.state === 'SHARED_OWNED').length;
    if ((host === 'SHARED_BORROWED') !== (sharedBack === 1) || sharedBack > 1) {
      v.push(`page ${p}: host ${host} with ${sharedBack} guest SHARED_OWNED leaves`);
    }
    // Counts never fall below the borrowing leaves (they can exceed them only after a misused
    // FF-A unshare made a guest share un-unshareable; see the contract invariants).
    if (shareCountOf(s, p) < borrowers) v.push(`page ${p}: share count ${shareCountOf(s, p)} < ${borrowers} guest borrowers`);
    if ((s.pins.get(p) ?? 0) > 0 && hyp !== 'SHARED_BORROWED') v.push(`page ${p} pinned while hyp ${hyp}`);

    if (!pfnIsMemory(layout, p)) {
      // MMIO only moves between host and hypervisor, whole, and is never shared.
      if (host !== 'OWNED' && host !== 'NOPAGE') v.push(`MMIO page ${p}: host ${host}`);
      if (hyp !== 'NOPAGE' && hyp !== 'OWNED') v.push(`MMIO page ${p}: hyp ${hyp}`);
      if (here.length > 0 || shareCountOf(s, p) > 0 || (s.pins.get(p) ?? 0) > 0) v.push(`MMIO page ${p} used as memory`);
    }
  }

  let held = 0;
  for (const [handle, vm] of s.vms) {
    if (vm.handle !== handle || handle < 0 || handle >= s.config.maxVms) v.push(`VM key ${handle} / handle ${vm.handle}`);
    held += vm.metadataPages + vm.tablePages;
    if (vm.tablePages < tablePagesNeeded(s.config, vm.leaves)) v.push(`VM ${handle}: ${vm.tablePages} table pages < needed`);
    for (const [gfn, leaf] of vm.leaves) {
      if (gfn + (leaf.kind === 'map' ? leaf.nrPages : 1) > paLimitPages(layout)) v.push(`VM ${handle}: gfn ${gfn} beyond the IPA space`);
      if (leafAt(vm, gfn)?.gfn !== gfn) v.push(`VM ${handle}: leaf at ${gfn} hidden by a block`);
      if (leaf.kind === 'poison') {
        if (!vm.protected) v.push(`VM ${handle}: poison in a non-protected VM`);
        continue;
      }
      // Guests map allowed memory only, blocks aligned on both sides (§3.7).
      const start = BigInt(leaf.pfn) << BigInt(PAGE_SHIFT);
      const end = BigInt(leaf.pfn + leaf.nrPages) << BigInt(PAGE_SHIFT);
      if (checkRangeAllowedMemory(layout, start, end) !== 0) v.push(`VM ${handle}: gfn ${gfn} maps disallowed pfn ${leaf.pfn}`);
      if (leaf.nrPages === BLOCK_PAGES && (gfn % BLOCK_PAGES !== 0 || leaf.pfn % BLOCK_PAGES !== 0)) v.push(`VM ${handle}: misaligned block at ${gfn}`);
      for (let g = gfn + 1; g < gfn + leaf.nrPages; g++) if (vm.leaves.has(g)) v.push(`VM ${handle}: leaf ${g} inside block ${gfn}`);
      // Protected VMs hold donated pages (OWNED) or pages they shared back; others only borrow.
      const expected = vm.protected ? leaf.state !== 'SHARED_BORROWED' : leaf.state === 'SHARED_BORROWED';
      if (!expected) v.push(`VM ${handle} (protected=${vm.protected}): leaf ${gfn} in state ${leaf.state}`);
      if (vm.protected && leaf.nrPages !== 1) v.push(`VM ${handle}: block in a protected VM`);
    }
  }
  if (s.pool < 0 || s.pool + held !== s.config.poolPages) v.push(`pool ${s.pool} + held ${held} != ${s.config.poolPages}`);
  return v;
}

/**
 * Invariants that need the FF-A proxy's guarantee: every hypervisor or guest borrower is matched
 * by a host SHARED_OWNED page, and share counts are exact.
 */
export function checkContractInvariants(s: ModelState): string[] {
  const v: string[] = [];
  const uses = guestUses(s);
  for (const p of touchedPages(s, uses)) {
    const host = hostState(s, p);
    const borrowers = (uses.get(p) ?? []).filter((u) => u.leaf.state === 'SHARED_BORROWED').length;
    if (shareCountOf(s, p) !== borrowers) v.push(`page ${p}: share count ${shareCountOf(s, p)} != ${borrowers} borrowers`);
    if (hypState(s, p) === 'SHARED_BORROWED' && (host !== 'SHARED_OWNED' || borrowers > 0)) {
      v.push(`page ${p}: hyp borrows it but host ${host}, ${borrowers} guest borrowers`);
    }
    if (borrowers > 0 && host !== 'SHARED_OWNED') v.push(`page ${p}: guests borrow it but host ${host}`);
  }
  return v;
}
