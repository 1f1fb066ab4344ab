/**
 * Runs one operation (plain data) on the concrete system: each kind maps to its hypercall's
 * step generator, driven to completion with the runner's yield handler.
 */
import { match } from 'ts-pattern';
import { type Operation } from '../model/index.js';
import { type Hypercall, type YieldPoint } from '../impl/hyp/hypervisor.js';
import { type System } from '../impl/system.js';

export function hypercallFor(sys: System, op: Operation): Hypercall {
  const h = sys.hyp;
  return match(op)
    .with({ kind: 'host_share_hyp' }, (o) => h.hostShareHyp(o.pfn))
    .with({ kind: 'host_unshare_hyp' }, (o) => h.hostUnshareHyp(o.pfn))
    .with({ kind: 'host_donate_hyp' }, (o) => h.hostDonateHyp(o.pfn, o.nrPages))
    .with({ kind: 'hyp_donate_host' }, (o) => h.hypDonateHost(o.pfn, o.nrPages))
    .with({ kind: 'hyp_pin_shared_mem' }, (o) => h.hypPinSharedMem(o.pfn, o.nrPages))
    .with({ kind: 'hyp_unpin_shared_mem' }, (o) => h.hypUnpinSharedMem(o.pfn, o.nrPages))
    .with({ kind: 'host_share_ffa' }, (o) => h.hostShareFfa(o.pfn, o.nrPages))
    .with({ kind: 'host_unshare_ffa' }, (o) => h.hostUnshareFfa(o.pfn, o.nrPages))
    .with({ kind: 'init_vm' }, (o) => h.initVm(o.vm, o.protected))
    .with({ kind: 'teardown_vm' }, (o) => h.teardownVm(o.vm))
    .with({ kind: 'host_share_guest' }, (o) => h.hostShareGuest(o.pfn, o.gfn, o.nrPages, o.vm, o.prot))
    .with({ kind: 'host_unshare_guest' }, (o) => h.hostUnshareGuest(o.gfn, o.nrPages, o.vm))
    .with({ kind: 'host_relax_perms_guest' }, (o) => h.hostRelaxPermsGuest(o.gfn, o.vm, o.prot))
    .with({ kind: 'host_wrprotect_guest' }, (o) => h.hostWrprotectGuest(o.gfn, o.nrPages, o.vm))
    .with({ kind: 'host_donate_guest' }, (o) => h.hostDonateGuest(o.pfn, o.gfn, o.vm))
    .with({ kind: 'host_reclaim_page_guest' }, (o) => h.hostReclaimPageGuest(o.gfn, o.vm))
    .with({ kind: 'host_force_reclaim_page_guest' }, (o) => h.hostForceReclaimPageGuest(o.pfn))
    .with({ kind: 'guest_share_host' }, (o) => h.guestShareHost(o.vm, o.gfn))
    .with({ kind: 'guest_unshare_host' }, (o) => h.guestUnshareHost(o.vm, o.gfn))
    .with({ kind: 'host_donate_hyp_mmio' }, (o) => h.hostDonateHypMmio(o.pfn))
    .with({ kind: 'hyp_donate_host_mmio' }, (o) => h.hypDonateHostMmio(o.pfn))
    .with({ kind: 'host_access' }, (o) => h.hostAccess(o.addr, o.access))
    .exhaustive();
}

export function executeOnSystem(sys: System, op: Operation, onYield?: (point: YieldPoint) => void): number {
  return sys.hyp.run(hypercallFor(sys, op), onYield);
}
