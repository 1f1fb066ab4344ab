/**
 * The configuration cache: STEs by StreamID and L1STDs by level-1 index (smmuv3-arch.md §6.1).
 * In strict mode it holds whatever was fetched — valid, V = 0, ILLEGAL, Span = 0 — until a
 * CFGI that is required to remove it completes; fetch aborts are never cached. Permissive mode
 * (QEMU) caches only successfully decoded STEs and never L1STDs (§7.1).
 */
import { type CdCacheEntry } from './nested.js';
import { type L1CacheEntry, type SteCacheEntry } from './stream-table.js';

export class ConfigCache {
  readonly stes = new Map<number, SteCacheEntry>();
  readonly l1 = new Map<number, L1CacheEntry>();
  /** CD 0 of each StreamID (SSID 0 only: no PASIDs are modelled), fetched through its STE. */
  readonly cds = new Map<number, CdCacheEntry>();

  /** CFGI_STE: the STE of `sid`; with Leaf = 0 also the L1STD covering it (§3.3, SPEC 5.1.1). */
  invalidateSte(sid: number, leaf: boolean): number {
    let removed = this.stes.delete(sid) ? 1 : 0;
    // CFGI_STE also invalidates every CD cached through that STE (smmuv3-arch.md §3.3).
    if (this.cds.delete(sid)) removed++;
    if (!leaf) removed += this.invalidateL1Covering(sid, 1);
    return removed;
  }

  /** CFGI_STE_RANGE: every STE and L1STD for StreamIDs in [first, first + count). */
  invalidateRange(first: number, count: number): number {
    let removed = 0;
    for (const sid of [...this.stes.keys()]) {
      if (sid >= first && sid < first + count) {
        this.stes.delete(sid);
        removed++;
      }
    }
    for (const sid of [...this.cds.keys()]) {
      if (sid >= first && sid < first + count) {
        this.cds.delete(sid);
        removed++;
      }
    }
    return removed + this.invalidateL1Covering(first, count);
  }

  invalidateAll(): number {
    const removed = this.stes.size + this.l1.size + this.cds.size;
    this.stes.clear();
    this.l1.clear();
    this.cds.clear();
    return removed;
  }

  /** CFGI_CD (SID, SSID): only CD 0 is ever cached, so other SSIDs remove nothing. CFGI_CD_ALL: ssid < 0. */
  invalidateCd(sid: number, ssid: number): number {
    if (ssid > 0) return 0;
    return this.cds.delete(sid) ? 1 : 0;
  }

  private invalidateL1Covering(first: number, count: number): number {
    let removed = 0;
    for (const [key, e] of [...this.l1.entries()]) {
      if (e.sidBase < first + count && first < e.sidBase + e.sidCount) {
        this.l1.delete(key);
        removed++;
      }
    }
    return removed;
  }
}
