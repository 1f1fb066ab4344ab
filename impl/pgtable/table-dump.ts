/**
 * Whole-tree traversal of a stage-2 table in memory: every non-zero entry that is not a table
 * pointer (valid leaves and annotated/locked invalid entries), and every table page reached.
 * Used by invariant checks and by the abstraction functions, not by the hot paths. A malformed
 * tree (a pointer outside RAM, a table reached twice) is reported, never followed twice.
 */
import { type Granule, LAST_LEVEL, levelSize } from '../arch/granule.js';
import { type PhysicalMemory } from '../arch/physical-memory.js';
import { type S2Format, descOutputAddress } from '../arch/s2-descriptor.js';

export interface TableRoot {
  readonly format: S2Format;
  /** Address of the (possibly concatenated) start-level table. */
  readonly pgd: number;
  readonly startLevel: number;
  /** Entries in the start-level table (all concatenated pages). */
  readonly topEntries: number;
}

export interface DumpedEntry {
  /** First input address the entry covers. */
  readonly ia: number;
  readonly level: number;
  readonly lo: number;
  readonly hi: number;
  /** Physical address of the entry itself. */
  readonly ptep: number;
}

export interface DumpedTable {
  readonly pa: number;
  readonly level: number;
  readonly baseIa: number;
  readonly nonZero: number;
}

export interface TableDump {
  /** Non-zero non-table entries, in input-address order. */
  readonly entries: DumpedEntry[];
  /** Every table page reached (the PGD pages first): level, first input address, non-zero entries. */
  readonly tables: DumpedTable[];
  /** Problems found: pointers that abort, tables reached twice. */
  readonly faults: string[];
}

export function topEntriesOf(granule: Granule, iaBits: number, startLevel: number): number {
  return Math.max(1, Math.ceil(2 ** iaBits / levelSize(granule, startLevel)));
}

export function dumpTable(memory: PhysicalMemory, root: TableRoot): TableDump {
  const g = root.format.granule;
  const entries: DumpedEntry[] = [];
  const tables: { pa: number; level: number; baseIa: number; nonZero: number }[] = [];
  const faults: string[] = [];
  const seen = new Set<number>();

  // PGD pages are counted per granule page, like the refcounts are.
  const pgdPages = Math.max(1, Math.ceil((root.topEntries * 8) / g.size));
  const pgdCounts: number[] = new Array<number>(pgdPages).fill(0);
  for (let p = 0; p < pgdPages; p++) seen.add(root.pgd + p * g.size);

  const visitTable = (table: number, level: number, baseIa: number, count: number, counts: number[] | null): number => {
    let nonZero = 0;
    const span = levelSize(g, level);
    let i = 0;
    // Frame by frame (dumps run on every full check): one lookup per 4 KiB, then its words.
    while (i < count) {
      const first = table + i * 8;
      const end = Math.min(count, i + (4096 - (first % 4096)) / 8);
      const frame = memory.frameForRead(first);
      if (frame === undefined) {
        // Not RAM (a pointer into MMIO or nowhere): one fault per frame.
        faults.push(`table entries at ${first.toString(16)} are not in RAM`);
        i = end;
        continue;
      }
      for (let w = (first % 4096) >>> 2; i < end; i++, w += 2) {
        const lo = frame[w] as number;
        const hi = frame[w + 1] as number;
        if (lo === 0 && hi === 0) continue;
        nonZero++;
        if (counts !== null) counts[Math.floor((i * 8) / g.size)] = (counts[Math.floor((i * 8) / g.size)] ?? 0) + 1;
        const ia = baseIa + i * span;
        const ptep = table + i * 8;
        if ((lo & 1) !== 0 && (lo & 2) !== 0 && level !== LAST_LEVEL) {
          const child = descOutputAddress(root.format, lo, hi);
          if (seen.has(child)) {
            faults.push(`table ${child.toString(16)} reached twice (from ${ptep.toString(16)})`);
            continue;
          }
          seen.add(child);
          const index = tables.length;
          tables.push({ pa: child, level: level + 1, baseIa: ia, nonZero: 0 });
          (tables[index] as { nonZero: number }).nonZero = visitTable(child, level + 1, ia, g.entriesPerTable, null);
          continue;
        }
        entries.push({ ia, level, lo, hi, ptep });
      }
    }
    return nonZero;
  };

  visitTable(root.pgd, root.startLevel, 0, root.topEntries, pgdCounts);
  const pgdSpan = levelSize(g, root.startLevel) * g.entriesPerTable;
  const pgdTables = pgdCounts.map((nonZero, p) => ({ pa: root.pgd + p * g.size, level: root.startLevel, baseIa: p * pgdSpan, nonZero }));
  return { entries, tables: [...pgdTables, ...tables], faults };
}
