/**
 * Hitless STE update monitor (smmuv3-arch.md §2.7–§2.8; the oracle of Linux's arm-smmu-v3 KUnit
 * tests, anchors.md): the SMMU may fetch a live STE between any two 64-bit stores, so every state
 * the hypervisor's stream table passes through during a step must be, in the bits the SMMU uses
 * for that state's own configuration, either the STE as it was before the step or as it is after
 * it — or invalid (V = 0, the breaking path). Update-safe bits (`get_update_safe`: MEV, EATS when
 * allowed) may hold either value. Part of the `smmu_config_coherent` check.
 */
import { type PhysicalMemory } from '../../impl/arch/physical-memory.js';
import { STE_BYTES, steMaskWords, steUsedBits } from '../../impl/arch/smmu/ste.js';
import { STRTAB_FMT_2LVL } from '../../impl/arch/smmu/registers.js';
import { type U64, u64, u64AndNot, u64Equal } from '../../impl/arch/u64.js';
import { type HypSmmuDriver } from '../../impl/hyp/smmu-driver/driver.js';
import { steUpdateSafeBits } from '../../impl/hyp/smmu-driver/ste-writer.js';

const QWORDS = 8;
/** STEs per level-2 table (the driver's STRTAB_SPLIT of 8). */
const L2_STES = 256;

function readSte(memory: PhysicalMemory, at: number): U64[] {
  return Array.from({ length: QWORDS }, (_, i) => {
    const w = memory.peek64(at + i * 8);
    return u64(w.lo, w.hi);
  });
}

/** Whether `state`, in the bits it uses (less the update-safe ones), equals `ref`. */
function sameInUsedBits(state: readonly U64[], ref: readonly U64[], safe: readonly U64[]): boolean {
  const mask = steUsedBits(state).map((u, i) => u64AndNot(u, safe[i] as U64));
  const a = steMaskWords(state, mask);
  const b = steMaskWords(ref, mask);
  return a.every((w, i) => u64Equal(w, b[i] as U64));
}

export class SteUpdateMonitor {
  /** STE address → the STE before its first store in this step. */
  private readonly before = new Map<number, U64[]>();
  /** STE address → every state it was left in by a store during this step. */
  private readonly states = new Map<number, U64[][]>();
  private readonly previous: PhysicalMemory['storeObserver'];

  constructor(
    private readonly memory: PhysicalMemory,
    private readonly driver: HypSmmuDriver,
  ) {
    // Chained, so another observer (a test's monitor) keeps working.
    this.previous = memory.storeObserver;
    memory.storeObserver = (pa, oldLo, oldHi, newLo, newHi) => {
      this.previous?.(pa, oldLo, oldHi, newLo, newHi);
      this.onStore(pa, oldLo, oldHi);
    };
  }

  /** The STE containing `pa`, if `pa` is in the hypervisor's stream table. */
  private steAt(pa: number): number | undefined {
    const st = this.driver.strtab;
    if (st.base === 0) return undefined;
    if (st.fmt !== STRTAB_FMT_2LVL) {
      const off = pa - st.base;
      return off >= 0 && off < 2 ** st.log2size * STE_BYTES ? pa - (off % STE_BYTES) : undefined;
    }
    for (const l2 of st.l2.values()) {
      const off = pa - l2;
      if (off >= 0 && off < L2_STES * STE_BYTES) return pa - (off % STE_BYTES);
    }
    return undefined;
  }

  private onStore(pa: number, oldLo: number, oldHi: number): void {
    const ste = this.steAt(pa);
    if (ste === undefined) return;
    const now = readSte(this.memory, ste);
    if (!this.before.has(ste)) {
      const was = now.map((w) => u64(w.lo, w.hi));
      was[(pa - ste) / 8] = u64(oldLo, oldHi);
      this.before.set(ste, was);
      this.states.set(ste, []);
    }
    this.states.get(ste)?.push(now);
  }

  /** The violations of the step just ended; starts the next step afresh. */
  finish(): string[] {
    const out: string[] = [];
    for (const [ste, was] of this.before) {
      const final = readSte(this.memory, ste);
      const safe = steUpdateSafeBits(was, final);
      const states = this.states.get(ste) ?? [];
      states.forEach((state, i) => {
        if (((state[0] as U64).lo & 1) === 0) return;
        if (sameInUsedBits(state, was, safe) || sameInUsedBits(state, final, safe)) return;
        out.push(`the STE at 0x${ste.toString(16)} passed through a state (store ${i + 1} of ${states.length}) that is neither the old nor the new configuration in the bits the SMMU uses: not a hitless update`);
      });
    }
    this.before.clear();
    this.states.clear();
    return out;
  }

  detach(): void {
    this.memory.storeObserver = this.previous;
  }
}
