/**
 * What the SMMU itself writes to memory (smmuv3-arch.md §5: event records, the EVTQ / GERROR MSIs,
 * the CMD_SYNC completion MSI). These writes are untranslated: they go to the physical address the
 * programming interface names, so a checker must see every one (issue 12, `smmu_write_isolation`).
 * Only writes that landed (the memory system accepted them) are logged; an aborted write raises a
 * GERROR instead and changes nothing.
 */

export type SmmuWriteCause = 'event_record' | 'evtq_msi' | 'gerror_msi' | 'cmd_sync_msi';

export interface SmmuWrite {
  readonly pa: number;
  readonly bytes: number;
  readonly cause: SmmuWriteCause;
}

/**
 * A bounded log drained by the checker after every step and yield point. Nothing drains it in a
 * benchmark, so it keeps the newest entries and counts what it dropped (a checker that sees a
 * non-zero count knows it missed writes).
 */
export class SmmuWriteLog {
  private entries: SmmuWrite[] = [];
  private lost = 0;

  constructor(private readonly capacity = 4096) {}

  record(pa: number, bytes: number, cause: SmmuWriteCause): void {
    if (this.entries.length >= this.capacity) {
      this.entries.shift();
      this.lost++;
    }
    this.entries.push({ pa, bytes, cause });
  }

  /** The writes since the last drain, oldest first, and how many were dropped before them. */
  drain(): { readonly writes: readonly SmmuWrite[]; readonly lost: number } {
    const out = { writes: this.entries, lost: this.lost };
    this.entries = [];
    this.lost = 0;
    return out;
  }
}
