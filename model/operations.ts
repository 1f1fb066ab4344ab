/**
 * Operations are plain JSON objects tagged by `kind` (ARCHITECTURE §3), so that a failing sequence
 * can be shrunk and stored as data. pfn/gfn are page frame numbers; addresses are bytes. Every
 * numeric field stands for a 64-bit register: it must be an exact integer in [0, 2^64).
 *
 * The names follow the UP-2026 hypercalls (§3); `vm` names a VM created by `init_vm`.
 */

/** A string of r/w/x; see prot.ts for how other letters are treated. */
export type ProtText = string;

export type HostAccessKind = 'read' | 'write' | 'exec';

export type Operation =
  | { readonly kind: 'host_share_hyp'; readonly pfn: number }
  | { readonly kind: 'host_unshare_hyp'; readonly pfn: number }
  | { readonly kind: 'host_donate_hyp'; readonly pfn: number; readonly nrPages: number }
  | { readonly kind: 'hyp_donate_host'; readonly pfn: number; readonly nrPages: number }
  | { readonly kind: 'hyp_pin_shared_mem'; readonly pfn: number; readonly nrPages: number }
  | { readonly kind: 'hyp_unpin_shared_mem'; readonly pfn: number; readonly nrPages: number }
  | { readonly kind: 'host_share_ffa'; readonly pfn: number; readonly nrPages: number }
  | { readonly kind: 'host_unshare_ffa'; readonly pfn: number; readonly nrPages: number }
  | { readonly kind: 'init_vm'; readonly vm: number; readonly protected: boolean }
  | { readonly kind: 'teardown_vm'; readonly vm: number }
  | {
      readonly kind: 'host_share_guest';
      readonly pfn: number;
      readonly gfn: number;
      readonly nrPages: number;
      readonly vm: number;
      readonly prot: ProtText;
    }
  | { readonly kind: 'host_unshare_guest'; readonly gfn: number; readonly nrPages: number; readonly vm: number }
  | { readonly kind: 'host_relax_perms_guest'; readonly gfn: number; readonly vm: number; readonly prot: ProtText }
  | { readonly kind: 'host_wrprotect_guest'; readonly gfn: number; readonly nrPages: number; readonly vm: number }
  | { readonly kind: 'host_donate_guest'; readonly pfn: number; readonly gfn: number; readonly vm: number }
  | { readonly kind: 'host_reclaim_page_guest'; readonly gfn: number; readonly vm: number }
  | { readonly kind: 'host_force_reclaim_page_guest'; readonly pfn: number }
  | { readonly kind: 'guest_share_host'; readonly vm: number; readonly gfn: number }
  | { readonly kind: 'guest_unshare_host'; readonly vm: number; readonly gfn: number }
  | { readonly kind: 'host_donate_hyp_mmio'; readonly pfn: number }
  | { readonly kind: 'hyp_donate_host_mmio'; readonly pfn: number }
  | { readonly kind: 'host_access'; readonly addr: number; readonly access: HostAccessKind };

export type OperationKind = Operation['kind'];

/** The operation of kind K, for handlers and generators. */
export type OperationOf<K extends OperationKind> = Extract<Operation, { kind: K }>;

/** Every kind once, in the order of the reference (§3, §3.12, §6.9), then host_access. */
export const OPERATION_KINDS: readonly OperationKind[] = [
  'host_share_hyp',
  'host_unshare_hyp',
  'host_donate_hyp',
  'hyp_donate_host',
  'hyp_pin_shared_mem',
  'hyp_unpin_shared_mem',
  'host_share_ffa',
  'host_unshare_ffa',
  'init_vm',
  'teardown_vm',
  'host_share_guest',
  'host_unshare_guest',
  'host_relax_perms_guest',
  'host_wrprotect_guest',
  'host_donate_guest',
  'host_reclaim_page_guest',
  'host_force_reclaim_page_guest',
  'guest_share_host',
  'guest_unshare_host',
  'host_donate_hyp_mmio',
  'hyp_donate_host_mmio',
  'host_access',
];

/**
 * What `host_access` returns (positive, so never confused with an errno). The model answers the
 * isolation question "does the access reach the page through the host stage-2"; how a device
 * behind an MMIO page answers is not its business.
 */
/** The access completes (after a lazy idmap fault if the page was not mapped yet, §2.3). */
export const HOST_ACCESS_OK = 0;
/** `host_stage2_idmap` returns -EPERM and EL2 injects a synchronous abort into the host (§2.3). */
export const HOST_ACCESS_ABORT = 1;
/**
 * A data access to MMIO the hypervisor owns: the stage-2 abort is offered to the SMMU register
 * emulation (§6.9, §6.10) and never reaches the device directly. (If no emulation claims the
 * address, EL2 falls back to HOST_ACCESS_ABORT; which registers are emulated is the SMMU layer's
 * business, not the ownership model's.)
 */
export const HOST_ACCESS_EMULATED = 2;
/**
 * An instruction fetch from host-owned MMIO: the host stage-2 maps MMIO RW without X, so the fetch
 * takes a stage-2 permission fault; `host_stage2_adjust_range` sees a valid PTE and returns
 * -EEXIST, which `handle_host_mem_abort` treats as "raced, retry" — the instruction replays
 * forever and never completes (§2.3). No abort is injected.
 */
export const HOST_ACCESS_STALL = 3;

export type HostAccessResult =
  | typeof HOST_ACCESS_OK
  | typeof HOST_ACCESS_ABORT
  | typeof HOST_ACCESS_EMULATED
  | typeof HOST_ACCESS_STALL;

/**
 * Who can make an operation happen on the real system (issue 11 item 3): the untrusted host
 * through a hypercall of `hyp-main.c` (or the FF-A proxy, or its memcache top-ups, which donate
 * the pages the host names: `pkvm_refill_memcache` → `admit_host_page` → `__pkvm_host_donate_hyp`,
 * UP-2026), a guest through its own hypercalls, the host CPU by touching memory — or only EL2
 * code itself (`el2-internal`): the SMMU driver's shares, pins and MMIO donations, teardown's
 * reclaim, and `pkvm_ownership_selftest`, which calls the mem_protect.c functions directly.
 * Generated adversarial runs use only the first four; the ownership refinement tests may call the
 * internal ones directly, as the kernel's self-test does, and their findings are not the host's.
 */
export type OperationInterface = 'host-hypercall' | 'guest-hypercall' | 'host-access' | 'el2-internal';

export const OPERATION_INTERFACE: Readonly<Record<OperationKind, OperationInterface>> = {
  host_share_hyp: 'host-hypercall',
  host_unshare_hyp: 'host-hypercall',
  // Reached through the memcache top-up of share/donate-to-guest and init_vm (the host names the pages).
  host_donate_hyp: 'host-hypercall',
  // Teardown and memcache reclaim give back only what EL2 chose; no host call names a pfn.
  hyp_donate_host: 'el2-internal',
  // Pins are taken and dropped by EL2 code (vCPU load, the SMMU driver), balanced by that code.
  hyp_pin_shared_mem: 'el2-internal',
  hyp_unpin_shared_mem: 'el2-internal',
  // FF-A MEM_SHARE / MEM_RECLAIM, trapped by the hypervisor's FF-A proxy.
  host_share_ffa: 'host-hypercall',
  host_unshare_ffa: 'host-hypercall',
  init_vm: 'host-hypercall',
  teardown_vm: 'host-hypercall',
  host_share_guest: 'host-hypercall',
  host_unshare_guest: 'host-hypercall',
  host_relax_perms_guest: 'host-hypercall',
  host_wrprotect_guest: 'host-hypercall',
  host_donate_guest: 'host-hypercall',
  host_reclaim_page_guest: 'host-hypercall',
  host_force_reclaim_page_guest: 'host-hypercall',
  guest_share_host: 'guest-hypercall',
  guest_unshare_host: 'guest-hypercall',
  // Only the SMMU driver's init donates MMIO (posted v6-era `smmu_init_device`), before the snapshot.
  host_donate_hyp_mmio: 'el2-internal',
  hyp_donate_host_mmio: 'el2-internal',
  host_access: 'host-access',
};

/** Whether the untrusted host (or a guest, or the host CPU) can make this operation happen. */
export function reachableByUntrusted(kind: OperationKind): boolean {
  return OPERATION_INTERFACE[kind] !== 'el2-internal';
}
