/**
 * Confidentiality by data labels (issue 12 item 4), in the simulation only: which words of a page
 * hold another component's data, and whether they are still there when the host gets the page
 * back. A page the host may read again (host state OWNED or SHARED_OWNED) must hold no word a
 * guest or the hypervisor wrote and nobody cleared; a page a protected guest shares back
 * (SHARED_BORROWED) is the guest's consent: its label is dropped, and its later reclaim (which
 * UP-2026 does not poison) is not a leak.
 *
 * Who writes what:
 * - a guest has no memory operations in the suite, so when a page becomes a guest's own (a
 *   donation to a protected VM) the guest writes a marker into its first and last words at once
 *   (inferred: the earliest moment its data can be there);
 * - the hypervisor's stores during a step into pages the model gives it (before or after the
 *   step) are its data (observed through PhysicalMemory.storeObserver);
 * - clearing is whatever writes zero over those words: pKVM's `hyp_poison_page` on reclaim, forced
 *   reclaim and teardown (UP-2026 mem_protect.c), the pool's zeroing of freed pages
 *   (`__hyp_attach_page`, page_alloc.c) — the implementation's own code, not the checker's.
 *
 * Reads are not checked one by one: a read of a page the host may not access is already an
 * isolation violation (host_cpu_isolation, dma_isolation), and a page it may access is checked
 * as a whole when the access right comes back. SMMU reads (table walks, command fetches) read the
 * hypervisor's own structures on its behalf and are not a channel to the host.
 */
import { ACCESS_OK, type PhysicalMemory, type StoreObserver } from '../impl/arch/physical-memory.js';
import { type System } from '../impl/system.js';
import { type ModelState, hostState } from '../model/index.js';
import { type Violation } from './checks.js';

const PAGE = 4096;
const LAST_WORD = PAGE - 4;

/** The marker a guest writes: a constant tag with its VM number, never zero. */
export function guestMarker(vm: number): number {
  return (0x6e57_0000 | (vm & 0xffff)) >>> 0;
}

interface Label {
  readonly owner: string;
  /** Byte offsets (multiples of 4) of the words the owner wrote, with the value written. */
  readonly words: Map<number, number>;
}

export class DataLabels {
  private readonly labels = new Map<number, Label>();
  private readonly previous: StoreObserver | null;
  /** The state the current step started from: its hyp-owned pages are where the hypervisor's data goes. */
  private pre: ModelState | undefined;
  private recording = false;

  constructor(private readonly memory: PhysicalMemory) {
    this.previous = memory.storeObserver;
    memory.storeObserver = (pa, oldLo, oldHi, newLo, newHi) => {
      this.previous?.(pa, oldLo, oldHi, newLo, newHi);
      if (this.recording) this.onStore(pa, newLo, newHi);
    };
  }

  detach(): void {
    this.memory.storeObserver = this.previous;
  }

  /** Before a step that runs hypervisor code: its stores into hyp pages are the hypervisor's data. */
  beginStep(pre: ModelState): void {
    // Hyp-owned only: what the hypervisor writes into a page the host shares with it is meant for the host.
    // Looked up per store rather than collected per step (issue 15 item 1: a step costs what it writes).
    this.pre = pre;
    this.recording = true;
  }

  /**
   * After the step: labels what the step handed to a guest (the guest's marker), then checks every
   * labelled page the host may read again.
   */
  endStep(system: System, pre: ModelState, post: ModelState): Violation[] {
    this.recording = false;
    for (const [vm, record] of post.vms) {
      for (const leaf of record.leaves.values()) {
        if (leaf.kind !== 'map' || leaf.state !== 'OWNED' || !record.protected) continue;
        for (let pfn = leaf.pfn; pfn < leaf.pfn + leaf.nrPages; pfn++) {
          if (this.labels.get(pfn)?.owner === `guest ${vm}` || hostState(pre, pfn) === 'NOPAGE') continue;
          this.guestWrites(system.memory, pfn, vm);
        }
      }
    }
    const out: Violation[] = [];
    for (const [pfn, label] of this.labels) {
      const st = hostState(post, pfn);
      // The owner shared it with the host (a protected guest's share back): its data is the
      // host's to read from then on, and UP-2026 reclaims such a page without poisoning it.
      if (st === 'SHARED_BORROWED') {
        this.labels.delete(pfn);
        continue;
      }
      if (st !== 'OWNED' && st !== 'SHARED_OWNED') continue;
      const left = [...label.words].filter(([offset, value]) => system.memory.read32(pfn * PAGE + offset) === value);
      if (left.length > 0) {
        const [offset, value] = left[0] as [number, number];
        out.push({ check: 'confidentiality', message: `the host may read pfn 0x${pfn.toString(16)} again, which still holds ${label.owner}'s data (${left.length} word(s) never cleared, e.g. 0x${value.toString(16)} at +0x${offset.toString(16)})` });
      }
      this.labels.delete(pfn);
    }
    return out;
  }

  private guestWrites(memory: PhysicalMemory, pfn: number, vm: number): void {
    const marker = guestMarker(vm);
    const words = new Map<number, number>();
    for (const offset of [0, LAST_WORD]) {
      if (memory.write32(pfn * PAGE + offset, marker) === ACCESS_OK) words.set(offset, marker);
    }
    if (words.size > 0) this.labels.set(pfn, { owner: `guest ${vm}`, words });
  }

  private onStore(pa: number, lo: number, hi: number): void {
    const pfn = Math.floor(pa / PAGE);
    if (this.pre?.hyp.get(pfn) !== 'OWNED') return;
    let label = this.labels.get(pfn);
    if (label === undefined) {
      if (lo === 0 && hi === 0) return;
      label = { owner: 'the hypervisor', words: new Map() };
      this.labels.set(pfn, label);
    }
    const offset = pa % PAGE - (pa % 8);
    for (const [at, value] of [
      [offset, lo >>> 0],
      [offset + 4, hi >>> 0],
    ] as const) {
      if (value === 0) label.words.delete(at);
      else label.words.set(at, value);
    }
  }
}
