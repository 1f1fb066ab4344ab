/**
 * A hardware-style stage-2 translation walk (what a CPU or SMMU table walker does): from the
 * start-level table down to a leaf, reading descriptors straight from physical memory. It
 * allocates nothing, so the CPU TLB model and the benchmarks can call it millions of times.
 * Fault classification follows VMSAv8-64: an invalid or reserved entry is a translation fault at
 * that level; a descriptor that cannot be read is an external abort on the walk. Permission
 * and access-flag checks are the caller's (they differ between the CPU and the SMMU).
 */
import { type Granule, LAST_LEVEL, levelSize } from '../arch/granule.js';
import { type PhysicalMemory } from '../arch/physical-memory.js';
import { type S2Format, descOutputAddress } from '../arch/s2-descriptor.js';
import { type TableRoot } from './table-dump.js';

export const WALK_OK = 0;
export const WALK_TRANSLATION_FAULT = 1;
export const WALK_EXTERNAL_ABORT = 2;
/** The input address is beyond the table's input size. */
export const WALK_ADDRESS_SIZE_FAULT = 3;
export type WalkStatus = typeof WALK_OK | typeof WALK_TRANSLATION_FAULT | typeof WALK_EXTERNAL_ABORT | typeof WALK_ADDRESS_SIZE_FAULT;

/** Reusable result of a walk. */
export interface WalkResult {
  status: WalkStatus;
  /** Level of the leaf, or of the faulting entry. */
  level: number;
  /** The leaf (or faulting) descriptor. */
  lo: number;
  hi: number;
  /** Output address for the input address (valid when status is WALK_OK). */
  pa: number;
  /** Physical address of the leaf or faulting descriptor. */
  ptep: number;
}

export function newWalkResult(): WalkResult {
  return { status: WALK_OK, level: 0, lo: 0, hi: 0, pa: 0, ptep: 0 };
}

/** Precomputed per-table constants so the hot loop does no exponentiation. */
export class Stage2Walker {
  private readonly granule: Granule;
  private readonly spans: number[] = [];
  private readonly iaLimit: number;
  private readonly topEntries: number;
  private readonly entryMask: number;

  constructor(
    private readonly memory: PhysicalMemory,
    private readonly format: S2Format,
    private readonly pgd: number,
    private readonly startLevel: number,
    iaBits: number,
  ) {
    this.granule = format.granule;
    for (let level = -1; level <= LAST_LEVEL; level++) this.spans.push(levelSize(this.granule, level));
    this.iaLimit = 2 ** iaBits;
    this.topEntries = Math.ceil(this.iaLimit / (this.spans[startLevel + 1] as number));
    this.entryMask = this.granule.entriesPerTable - 1;
  }

  static forRoot(memory: PhysicalMemory, root: TableRoot, iaBits: number): Stage2Walker {
    return new Stage2Walker(memory, root.format, root.pgd, root.startLevel, iaBits);
  }

  walk(ia: number, out: WalkResult): WalkStatus {
    if (ia >= this.iaLimit || ia < 0) {
      out.status = WALK_ADDRESS_SIZE_FAULT;
      out.level = this.startLevel;
      return WALK_ADDRESS_SIZE_FAULT;
    }
    let table = this.pgd;
    let level = this.startLevel;
    let index = Math.floor(ia / (this.spans[level + 1] as number)) % this.topEntries;
    for (;;) {
      const ptep = table + index * 8;
      const frame = this.memory.frameForRead(ptep);
      out.level = level;
      out.ptep = ptep;
      if (frame === undefined) {
        out.status = WALK_EXTERNAL_ABORT;
        return WALK_EXTERNAL_ABORT;
      }
      const word = (ptep % 4096) >>> 2;
      const lo = frame[word] as number;
      const hi = frame[word + 1] as number;
      out.lo = lo;
      out.hi = hi;
      if ((lo & 1) === 0 || (level === LAST_LEVEL && (lo & 2) === 0)) {
        out.status = WALK_TRANSLATION_FAULT;
        return WALK_TRANSLATION_FAULT;
      }
      if (level === LAST_LEVEL || (lo & 2) === 0) {
        const span = this.spans[level + 1] as number;
        const oa = descOutputAddress(this.format, lo, hi);
        out.pa = oa - (oa % span) + (ia % span);
        out.status = WALK_OK;
        return WALK_OK;
      }
      table = descOutputAddress(this.format, lo, hi);
      level++;
      index = Math.floor(ia / (this.spans[level + 1] as number)) & this.entryMask;
    }
  }
}
