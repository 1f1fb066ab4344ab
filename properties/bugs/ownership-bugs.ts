/**
 * Test-only bug injections for the ownership layer (ARCHITECTURE §6: never flags in impl/).
 * Each replaces one component of a booted system with a plausible mistake, and names the check
 * that must catch it.
 */
import { EBUSY, EPERM } from '../../impl/arch/errno.js';
import { type Hypercall } from '../../impl/hyp/hypervisor.js';
import { PKVM_NOPAGE, PKVM_PAGE_OWNED } from '../../impl/hyp/vmemmap.js';
import { type Stage2Tlb } from '../../impl/pgtable/kvm-pgtable.js';
import { type System } from '../../impl/system.js';
import { type CheckName } from '../checks.js';

export interface InjectedBug {
  readonly name: string;
  readonly description: string;
  readonly caughtBy: CheckName;
  readonly inject: (sys: System) => void;
  /** For bugs in components built by bootIommu (runner RunOptions.afterBoot). */
  readonly afterBoot?: (sys: System) => void;
  /** Named machine (conformance/machines.ts) the bug lives on; the small machine when absent. */
  readonly machine?: string;
  /** Design variant (conformance/designs.ts) the bug is written against; v6 when absent. */
  readonly design?: string;
}

/** Replaces one member of a booted component (test-only bug injection). */
export function replace<T extends object, K extends keyof T>(target: T, key: K, value: T[K]): void {
  Object.defineProperty(target, key, { value, configurable: true, writable: true });
}

export const OWNERSHIP_BUGS: readonly InjectedBug[] = [
  {
    name: 'no-host-tlbi-on-donation',
    description: 'the host stage-2 page table never issues by-IPA TLBIs: a donated page stays in the host TLB',
    caughtBy: 'host_cpu_isolation',
    inject: (sys) => {
      const real = sys.hostS2.pgt.tlb;
      const tlb: Stage2Tlb = { ...real, flushVmidIpa: () => undefined, flushVmidIpaNsh: real.flushVmidIpaNsh.bind(real), flushVmidRange: real.flushVmidRange.bind(real), flushVmid: real.flushVmid.bind(real) };
      replace(sys.hostS2.pgt, 'tlb', tlb);
    },
  },
  {
    name: 'annotation-forgotten',
    description: 'setting a non-host owner unmaps the range instead of annotating it: the next host fault maps it again',
    caughtBy: 'well_formed_tables',
    inject: (sys) => {
      const s2 = sys.hostS2;
      // Every annotation path (set_owner and set_owner_metadata) goes through annotateLocked.
      replace(s2 as unknown as { annotateLocked: unknown }, 'annotateLocked', (addr: number, size: number, _owner: number, _meta: unknown, onHostState: (st: 'owned' | 'nopage') => void) => {
        const r = s2.pgt.unmap(addr, size);
        if (r === 0) onHostState('nopage');
        return r;
      });
    },
  },
  {
    name: 'unshare-pinned-wrong-errno',
    description: 'unsharing a page the hypervisor still pins returns -EPERM instead of -EBUSY',
    caughtBy: 'refinement_ret',
    inject: (sys) => {
      const hyp = sys.hyp;
      const original = hyp.hostUnshareHyp.bind(hyp);
      replace(hyp, 'hostUnshareHyp', function* (pfn: number): Hypercall {
        const r = yield* original(pfn);
        return r === -EBUSY ? -EPERM : r;
      });
    },
  },
  {
    name: 'donate-updates-before-checking',
    description: 'host_donate_hyp marks the hyp state OWNED before checking the host state, and does not undo it on failure',
    caughtBy: 'error_changes_nothing',
    inject: (sys) => {
      const hyp = sys.hyp;
      const original = hyp.hostDonateHyp.bind(hyp);
      replace(hyp, 'hostDonateHyp', function* (pfn: number, nrPages: number): Hypercall {
        if (hyp.pfnRangeIsValid(pfn, nrPages) && sys.vmemmap.has(pfn) && sys.vmemmap.hypState(pfn) === PKVM_NOPAGE && sys.vmemmap.hostState(pfn) !== PKVM_PAGE_OWNED) {
          sys.vmemmap.setHypState(pfn, PKVM_PAGE_OWNED);
        }
        return yield* original(pfn, nrPages);
      });
    },
  },
  {
    name: 'teardown-loses-pool-pages',
    description: 'VM teardown forgets to give the VM pool pages back to the memcache',
    caughtBy: 'pool_accounting',
    inject: (sys) => {
      const hyp = sys.hyp;
      const original = hyp.teardownVm.bind(hyp);
      replace(hyp, 'teardownVm', function* (vm: number): Hypercall {
        const guest = hyp.vms.get(vm);
        if (guest !== undefined) replace(guest.pool, 'drain', () => undefined);
        return yield* original(vm);
      });
    },
  },
  {
    name: 'reclaim-without-poison',
    description: 'the reclaim of a protected guest\'s page skips hyp_poison_page: the host gets the page back with the guest\'s data in it (bug class 8, "a malicious host potentially being able to read the contents of newly reclaimed guest pages")',
    caughtBy: 'confidentiality',
    inject: (sys) => {
      replace(sys.hyp as unknown as { poison: (phys: number) => void }, 'poison', () => undefined);
    },
  },
];
