/**
 * Runs one operation (plain data) on the concrete system: each kind maps to its hypercall's
 * step generator, driven to completion with the runner's yield handler.
 */
import { type Operation } from '../model/index.js';
import { type Hypercall, type YieldPoint } from '../impl/hyp/hypervisor.js';
import { type System } from '../impl/system.js';

export function hypercallFor(sys: System, op: Operation): Hypercall {
  const h = sys.hyp;
  // A switch, not ts-pattern: this runs once per step of every run (issue 15 item 1).
  switch (op.kind) {
    case 'host_share_hyp':
      return h.hostShareHyp(op.pfn);
    case 'host_unshare_hyp':
      return h.hostUnshareHyp(op.pfn);
    case 'host_donate_hyp':
      return h.hostDonateHyp(op.pfn, op.nrPages);
    case 'hyp_donate_host':
      return h.hypDonateHost(op.pfn, op.nrPages);
    case 'hyp_pin_shared_mem':
      return h.hypPinSharedMem(op.pfn, op.nrPages);
    case 'hyp_unpin_shared_mem':
      return h.hypUnpinSharedMem(op.pfn, op.nrPages);
    case 'host_share_ffa':
      return h.hostShareFfa(op.pfn, op.nrPages);
    case 'host_unshare_ffa':
      return h.hostUnshareFfa(op.pfn, op.nrPages);
    case 'init_vm':
      return h.initVm(op.vm, op.protected);
    case 'teardown_vm':
      return h.teardownVm(op.vm);
    case 'host_share_guest':
      return h.hostShareGuest(op.pfn, op.gfn, op.nrPages, op.vm, op.prot);
    case 'host_unshare_guest':
      return h.hostUnshareGuest(op.gfn, op.nrPages, op.vm);
    case 'host_relax_perms_guest':
      return h.hostRelaxPermsGuest(op.gfn, op.vm, op.prot);
    case 'host_wrprotect_guest':
      return h.hostWrprotectGuest(op.gfn, op.nrPages, op.vm);
    case 'host_donate_guest':
      return h.hostDonateGuest(op.pfn, op.gfn, op.vm);
    case 'host_reclaim_page_guest':
      return h.hostReclaimPageGuest(op.gfn, op.vm);
    case 'host_force_reclaim_page_guest':
      return h.hostForceReclaimPageGuest(op.pfn);
    case 'guest_share_host':
      return h.guestShareHost(op.vm, op.gfn);
    case 'guest_unshare_host':
      return h.guestUnshareHost(op.vm, op.gfn);
    case 'host_donate_hyp_mmio':
      return h.hostDonateHypMmio(op.pfn);
    case 'hyp_donate_host_mmio':
      return h.hypDonateHostMmio(op.pfn);
    case 'host_access':
      return h.hostAccess(op.addr, op.access);
    default: {
      const never: never = op;
      throw new Error(`unknown operation ${JSON.stringify(never)}`);
    }
  }
}

export function executeOnSystem(sys: System, op: Operation, onYield?: (point: YieldPoint) => void): number {
  return sys.hyp.run(hypercallFor(sys, op), onYield);
}
