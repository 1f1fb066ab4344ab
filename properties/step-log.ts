/**
 * The write log of a step (issue 15 item 1): what every agent changed while the step ran — RAM
 * words (with their value before the step), vmemmap entries, the hypervisor's stage-1, the host
 * CPU's TLB fills and the SMMU's cache and ATC fills — so the checks can look at what changed
 * instead of re-reading the whole system. It only observes; `detach` puts every hook back.
 */
import { type CpuTlbEntry } from '../impl/hw/cpu.js';
import { type CacheObserver, type CachedEntry } from '../impl/hw/smmu/cache-observer.js';
import { type HypMapping } from '../impl/hyp/hypervisor.js';
import { type VmemmapEntry } from '../impl/hyp/vmemmap.js';
import { type System } from '../impl/system.js';
import { type WordBefore } from './table-index.js';

export class StepLog {
  /** RAM word address (8-byte aligned) → its value before the first store of the step. */
  readonly words = new Map<number, WordBefore>();
  readonly vmemmap = new Map<number, VmemmapEntry>();
  readonly hypS1 = new Map<number, HypMapping | undefined>();
  readonly cpuFills: CpuTlbEntry[] = [];
  /** SMMU TLB, combined, walk-cache and ATC entries filled in the step. */
  readonly cacheFills: CachedEntry[] = [];
  private readonly previousStore: System['memory']['storeObserver'];

  constructor(private readonly system: System) {
    const memory = system.memory;
    this.previousStore = memory.storeObserver;
    const previous = this.previousStore;
    const words = this.words;
    memory.storeObserver = (pa, oldLo, oldHi, newLo, newHi) => {
      if (!words.has(pa)) words.set(pa, { lo: oldLo, hi: oldHi });
      previous?.(pa, oldLo, oldHi, newLo, newHi);
    };
    system.vmemmap.changeLog = this.vmemmap;
    system.hyp.hypS1.changeLog = this.hypS1;
    system.cpu.tlb.fillLog = this.cpuFills;
    const parts = system.iommu;
    if (parts !== undefined) {
      const fills = this.cacheFills;
      // A trace's cache history may watch too: it keeps being told.
      const chained = (previous: CacheObserver | null): CacheObserver => ({
        filled: (e) => {
          fills.push(e);
          previous?.filled(e);
        },
        dropped: (e) => previous?.dropped(e),
        removing: (c) => previous?.removing(c),
        removed: (c) => previous?.removed(c),
      });
      this.previousSmmuObserver = parts.smmu.cachesObserver;
      parts.smmu.observeCaches(chained(this.previousSmmuObserver));
      for (const device of parts.devices.values()) {
        this.previousAtcObservers.set(device.sid, device.atcObserver);
        device.atcObserver = chained(device.atcObserver);
      }
    }
  }

  private previousSmmuObserver: CacheObserver | null = null;
  private readonly previousAtcObservers = new Map<number, CacheObserver | null>();

  /** Forgets what the previous step changed. */
  clear(): void {
    this.words.clear();
    this.vmemmap.clear();
    this.hypS1.clear();
    this.cpuFills.length = 0;
    this.cacheFills.length = 0;
  }

  detach(): void {
    const sys = this.system;
    sys.memory.storeObserver = this.previousStore;
    sys.vmemmap.changeLog = null;
    sys.hyp.hypS1.changeLog = null;
    sys.cpu.tlb.fillLog = null;
    if (sys.iommu !== undefined) {
      sys.iommu.smmu.observeCaches(this.previousSmmuObserver);
      for (const device of sys.iommu.devices.values()) device.atcObserver = this.previousAtcObservers.get(device.sid) ?? null;
    }
  }
}
