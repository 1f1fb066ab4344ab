/**
 * Who may touch a page, derived from the abstract state. Used by the host-CPU isolation check
 * (ARCHITECTURE §7.5) and by the IOMMU side (§7.2 isolation, §7.3 availability).
 */
import type { HostAccessKind, HostAccessResult } from './operations.js';
import { HOST_ACCESS_ABORT, HOST_ACCESS_EMULATED, HOST_ACCESS_OK, HOST_ACCESS_STALL } from './operations.js';
import { paLimitPages, pfnIsMemory } from './layout.js';
import type { ModelState } from './state.js';
import { hostState } from './state.js';

function inPaRange(s: ModelState, pfn: number): boolean {
  return Number.isSafeInteger(pfn) && pfn >= 0 && pfn < paLimitPages(s.config.layout);
}

/**
 * Host access without regard to the kind: the host stage-2 maps (or will lazily map) every page
 * whose host state is not NOPAGE — memory with RWX, MMIO with RW (§2.3, §2.6). Sharing never
 * changes the host's own permissions. NOMAP memory is included: `host_stage2_idmap` maps any
 * memblock region, NOMAP or not; NOMAP only forbids ownership transitions.
 */
export function hostMayAccess(s: ModelState, pfn: number): boolean {
  return inPaRange(s, pfn) && hostState(s, pfn) !== 'NOPAGE';
}

/** What a host CPU access to page `pfn` does; see the HOST_ACCESS_* definitions. */
export function hostCpuAccess(s: ModelState, pfn: number, access: HostAccessKind): HostAccessResult {
  // The host cannot emit an IPA at or above 2^PARange: its own stage 1 raises an address size
  // fault, which is an abort the host takes itself.
  if (!inPaRange(s, pfn)) return HOST_ACCESS_ABORT;
  const memory = pfnIsMemory(s.config.layout, pfn);
  const owned = hostState(s, pfn) !== 'NOPAGE';
  if (memory) return owned ? HOST_ACCESS_OK : HOST_ACCESS_ABORT;
  if (owned) return access === 'exec' ? HOST_ACCESS_STALL : HOST_ACCESS_OK;
  // Instruction aborts are not offered to the data-abort emulation: they get the -EPERM abort.
  return access === 'exec' ? HOST_ACCESS_ABORT : HOST_ACCESS_EMULATED;
}

/** The host CPU isolation predicate: may the access complete? */
export function hostCpuMay(s: ModelState, pfn: number, access: HostAccessKind): boolean {
  return hostCpuAccess(s, pfn, access) === HOST_ACCESS_OK;
}

/**
 * DMA isolation (upper bound): may a host device read or write page `pfn` through the shadow
 * stage-2 idmap? §6.2: the snapshot maps every host stage-2 leaf that is valid or empty —
 * memory and MMIO gaps alike, NOMAP included — read/write, and skips annotated leaves (hyp or
 * guest owned); afterwards every owner change to the host maps, every other owner change unmaps.
 * Sharing does not touch it. So: exactly the pages the host may access, read and write alike
 * (the idmap has no read-only entries), below 2^physShift (the idmap covers the host IPA space).
 * Pages the host shares with the hypervisor stay reachable: the SER-T&E idmap does not follow
 * GKI's "no DMA to pages accessible from hyp" rule (§6.6), which is specific to PV domains.
 */
export function dmaMayAccess(s: ModelState, pfn: number, _access: 'read' | 'write'): boolean {
  return hostMayAccess(s, pfn);
}

/**
 * DMA availability (lower bound): pages a device attached for identity DMA must reach without
 * faulting — what the host owns (OWNED, SHARED_OWNED), memory and MMIO. SHARED_BORROWED pages (a
 * protected guest's page shared back) are allowed but not required: SER-T&E only re-maps a page in
 * the IOMMU when its owner becomes the host, and a guest share back does not change the owner.
 */
export function dmaMustReach(s: ModelState, pfn: number): boolean {
  if (!inPaRange(s, pfn)) return false;
  const st = hostState(s, pfn);
  return st === 'OWNED' || st === 'SHARED_OWNED';
}

/** The pages of [startPfn, startPfn + nrPages) the host may access, in increasing order. */
export function hostAccessiblePages(s: ModelState, startPfn: number, nrPages: number): number[] {
  const out: number[] = [];
  for (let pfn = startPfn; pfn < startPfn + nrPages; pfn++) if (hostMayAccess(s, pfn)) out.push(pfn);
  return out;
}
