/**
 * Fixed operation sequences known to pass on the ownership machines, laid out from a machine's
 * first RAM pfn `P`: shared by the ownership tests and the fail-the-k-th sweep
 * (conformance/sweep-sequences.ts).
 */
import { type Operation } from '../model/index.js';

const PAGE = 4096;

/** The ownership life cycle of properties/ownership.test.ts (every operation kind). */
export function lifeCycle(P: number): Operation[] {
  return [
    { kind: 'host_access', addr: P * PAGE, access: 'read' },
    { kind: 'host_share_hyp', pfn: P + 1 },
    { kind: 'hyp_pin_shared_mem', pfn: P + 1, nrPages: 1 },
    { kind: 'host_unshare_hyp', pfn: P + 1 },
    { kind: 'hyp_unpin_shared_mem', pfn: P + 1, nrPages: 1 },
    { kind: 'host_unshare_hyp', pfn: P + 1 },
    { kind: 'host_donate_hyp', pfn: P + 2, nrPages: 3 },
    { kind: 'host_access', addr: (P + 2) * PAGE, access: 'write' },
    { kind: 'hyp_donate_host', pfn: P + 2, nrPages: 3 },
    { kind: 'host_share_ffa', pfn: P + 5, nrPages: 2 },
    { kind: 'host_unshare_ffa', pfn: P + 5, nrPages: 2 },
    { kind: 'init_vm', vm: 0, protected: false },
    { kind: 'init_vm', vm: 1, protected: true },
    { kind: 'host_share_guest', pfn: P + 10, gfn: 5, nrPages: 1, vm: 0, prot: 'rw' },
    { kind: 'host_share_guest', pfn: P + 512, gfn: 512, nrPages: 512, vm: 0, prot: 'r' },
    { kind: 'host_relax_perms_guest', gfn: 5, vm: 0, prot: 'x' },
    { kind: 'host_wrprotect_guest', gfn: 5, nrPages: 1, vm: 0 },
    { kind: 'host_unshare_guest', gfn: 5, nrPages: 1, vm: 0 },
    { kind: 'host_donate_guest', pfn: P + 20, gfn: 7, vm: 1 },
    { kind: 'host_access', addr: (P + 20) * PAGE, access: 'read' },
    { kind: 'guest_share_host', vm: 1, gfn: 7 },
    { kind: 'host_access', addr: (P + 20) * PAGE, access: 'read' },
    { kind: 'guest_unshare_host', vm: 1, gfn: 7 },
    { kind: 'host_force_reclaim_page_guest', pfn: P + 20 },
    { kind: 'host_reclaim_page_guest', gfn: 7, vm: 1 },
    { kind: 'host_donate_hyp_mmio', pfn: 0x9000 },
    { kind: 'host_access', addr: 0x900_0000, access: 'read' },
    { kind: 'host_access', addr: 0x900_1000, access: 'exec' },
    { kind: 'hyp_donate_host_mmio', pfn: 0x9000 },
    { kind: 'teardown_vm', vm: 0 },
    { kind: 'teardown_vm', vm: 1 },
  ];
}

/** BUG_TRIGGER of properties/ownership.test.ts: the sequence every injected ownership bug fails. */
export function bugTrigger(P: number): Operation[] {
  return [
    { kind: 'host_access', addr: P * PAGE, access: 'read' },
    { kind: 'host_donate_hyp', pfn: P, nrPages: 1 },
    { kind: 'host_access', addr: P * PAGE, access: 'read' },
    { kind: 'host_share_hyp', pfn: P + 1 },
    { kind: 'hyp_pin_shared_mem', pfn: P + 1, nrPages: 1 },
    { kind: 'host_unshare_hyp', pfn: P + 1 },
    { kind: 'host_donate_hyp', pfn: P + 1, nrPages: 1 },
    { kind: 'host_share_ffa', pfn: P + 4, nrPages: 1 },
    { kind: 'host_donate_hyp', pfn: P + 4, nrPages: 1 },
    { kind: 'init_vm', vm: 0, protected: false },
    { kind: 'host_share_guest', pfn: P + 3, gfn: 1, nrPages: 1, vm: 0, prot: 'rw' },
    { kind: 'teardown_vm', vm: 0 },
  ];
}
