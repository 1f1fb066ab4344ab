/**
 * Break-before-make monitor (ARCHITECTURE §7.6, stage2-pgtable.md §1.8): watches every store to
 * a live stage-2 table and every TLB invalidation, and reports
 *  - a valid entry changed into a different valid entry in one store (other than the changes
 *    the architecture allows in place: permissions, AF, DBM, software bits);
 *  - an entry made valid again while the translation it held before was not yet invalidated;
 *  - a translation removed and never invalidated by the end of the operation (`finish`).
 * A TLBI covers a removed leaf when it names an address inside it with no level hint or the
 * leaf's level; a removed table pointer (walk-cache entry) needs an unhinted or range TLBI.
 */
import { LAST_LEVEL, levelSize } from '../../impl/arch/granule.js';
import { type PhysicalMemory } from '../../impl/arch/physical-memory.js';
import { descOutputAddress } from '../../impl/arch/s2-descriptor.js';
import { dumpTable, type TableRoot } from '../../impl/pgtable/table-dump.js';
import { type Stage2Tlb, TLBI_TTL_UNKNOWN } from '../../impl/pgtable/kvm-pgtable.js';

interface Pending {
  readonly ia: number;
  readonly level: number;
  readonly wasTable: boolean;
}

/** Bits a live valid leaf may change in place: S2AP (7:6), AF (10), DBM (51), XN (54:53), SW (58:55). */
const IN_PLACE_LO = (3 << 6) | (1 << 10);
const IN_PLACE_HI = (1 << 19) | (3 << 21) | (0xf << 23);

export class BreakBeforeMakeMonitor {
  readonly violations: string[] = [];
  private readonly pending = new Map<number, Pending>();
  /** Table page → its level and first input address; updated as table pointers change. */
  private live = new Map<number, { level: number; baseIa: number }>();
  private built = false;

  constructor(
    private readonly memory: PhysicalMemory,
    private readonly root: () => TableRoot,
  ) {}

  /** Starts observing stores to memory. */
  attach(): void {
    this.memory.storeObserver = (pa, oldLo, oldHi, newLo, newHi) => this.onStore(pa, oldLo, oldHi, newLo, newHi);
  }

  detach(): void {
    this.memory.storeObserver = null;
  }

  /** Wraps a TLB so that every invalidation is seen before it is forwarded. */
  wrapTlb(inner: Stage2Tlb): Stage2Tlb {
    return {
      flushVmidIpa: (ipa, level) => {
        this.onIpa(ipa, level);
        inner.flushVmidIpa(ipa, level);
      },
      flushVmidIpaNsh: (ipa, level) => {
        this.onIpa(ipa, level);
        inner.flushVmidIpaNsh(ipa, level);
      },
      flushVmidRange: (addr, size) => {
        for (const [ptep, p] of this.pending) {
          const span = levelSize(this.root().format.granule, p.level);
          if (p.ia < addr + size && addr < p.ia + span) this.pending.delete(ptep);
        }
        inner.flushVmidRange(addr, size);
      },
      flushVmid: () => {
        this.pending.clear();
        inner.flushVmid();
      },
    };
  }

  /** Ends an operation: every removed translation must have been invalidated by now. */
  finish(operation: string): void {
    for (const p of this.pending.values()) {
      this.violations.push(`${operation}: ${p.wasTable ? 'table' : 'leaf'} at IA ${p.ia.toString(16)} level ${p.level} removed without invalidation`);
    }
    this.pending.clear();
  }

  private onIpa(ipa: number, level: number): void {
    const g = this.root().format.granule;
    for (const [ptep, p] of this.pending) {
      const inside = ipa >= p.ia && ipa < p.ia + levelSize(g, p.level);
      const hintOk = level === TLBI_TTL_UNKNOWN || (level === p.level && !p.wasTable);
      if (inside && hintOk) this.pending.delete(ptep);
    }
  }

  private rebuild(): void {
    const dump = dumpTable(this.memory, this.root());
    this.live = new Map(dump.tables.map((t) => [t.pa, { level: t.level, baseIa: t.baseIa }]));
    this.built = true;
  }

  /** Adds (or removes) a linked or unlinked subtree's table pages to the live index. */
  private indexSubtree(table: number, level: number, baseIa: number, add: boolean): void {
    const format = this.root().format;
    const g = format.granule;
    if (add) this.live.set(table, { level, baseIa });
    else this.live.delete(table);
    if (level === LAST_LEVEL) return;
    const span = levelSize(g, level);
    for (let i = 0; i < g.entriesPerTable; i++) {
      const w = this.memory.peek64(table + i * 8);
      if ((w.lo & 3) !== 3) continue;
      this.indexSubtree(descOutputAddress(format, w.lo, w.hi), level + 1, baseIa + i * span, add);
    }
  }

  private locate(pa: number): { ia: number; level: number } | undefined {
    const g = this.root().format.granule;
    if (!this.built) this.rebuild();
    const page = pa - (pa % g.size);
    const info = this.live.get(page);
    if (info === undefined) return undefined;
    return { ia: info.baseIa + ((pa - page) / 8) * levelSize(g, info.level), level: info.level };
  }

  private onStore(pa: number, oldLo: number, oldHi: number, newLo: number, newHi: number): void {
    const where = this.locate(pa);
    if (where === undefined) return;
    const { ia, level } = where;
    const oldValid = (oldLo & 1) !== 0;
    const newValid = (newLo & 1) !== 0;
    const oldTable = oldValid && (oldLo & 2) !== 0 && level !== LAST_LEVEL;
    const newTable = newValid && (newLo & 2) !== 0 && level !== LAST_LEVEL;
    const format = this.root().format;
    if (oldTable) this.indexSubtree(descOutputAddress(format, oldLo, oldHi), level + 1, ia, false);
    if (newTable) this.indexSubtree(descOutputAddress(format, newLo, newHi), level + 1, ia, true);
    if (oldValid && newValid) {
      const structural = ((oldLo ^ newLo) & ~IN_PLACE_LO) !== 0 || ((oldHi ^ newHi) & ~IN_PLACE_HI) !== 0 || oldTable || newTable;
      if (structural && (oldLo !== newLo || oldHi !== newHi)) {
        this.violations.push(`valid entry at IA ${ia.toString(16)} level ${level} replaced without break-before-make`);
      }
      return;
    }
    if (oldValid && !newValid) {
      this.pending.set(pa, { ia, level, wasTable: oldTable });
      return;
    }
    if (!oldValid && newValid && this.pending.has(pa)) {
      this.violations.push(`entry at IA ${ia.toString(16)} level ${level} made valid before the old translation was invalidated`);
      this.pending.delete(pa);
    }
  }
}
