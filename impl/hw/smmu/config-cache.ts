/**
 * The configuration cache: STEs by StreamID and L1STDs by level-1 index (smmuv3-arch.md §6.1).
 * In strict mode it holds whatever was fetched — valid, V = 0, ILLEGAL, Span = 0 — until a
 * CFGI that is required to remove it completes; fetch aborts are never cached. Permissive mode
 * (QEMU) caches only successfully decoded STEs and never L1STDs (§7.1).
 */
import { type CacheObserver } from './cache-observer.js';
import { type CdCacheEntry } from './nested.js';
import { type L1CacheEntry, type SteCacheEntry } from './stream-table.js';

/**
 * The maps are read directly on the hot path; entries go in and out through the methods below, so
 * that a trace's observer (Smmu.observeCaches) sees every fill and removal.
 */
export class ConfigCache {
  readonly stes = new Map<number, SteCacheEntry>();
  readonly l1 = new Map<number, L1CacheEntry>();
  /** CD 0 of each StreamID (SSID 0 only: no PASIDs are modelled), fetched through its STE. */
  readonly cds = new Map<number, CdCacheEntry>();
  observer: CacheObserver | null = null;

  putSte(sid: number, entry: SteCacheEntry): void {
    this.dropSte(sid);
    this.stes.set(sid, entry);
    this.observer?.filled({ cache: 'ste', entry });
  }

  putL1(index: number, entry: L1CacheEntry): void {
    this.dropL1(index);
    this.l1.set(index, entry);
    this.observer?.filled({ cache: 'l1std', entry });
  }

  putCd(sid: number, entry: CdCacheEntry): void {
    this.dropCd(sid);
    this.cds.set(sid, entry);
    this.observer?.filled({ cache: 'cd', entry });
  }

  dropSte(sid: number): boolean {
    const entry = this.stes.get(sid);
    if (entry !== undefined && this.stes.delete(sid)) this.observer?.dropped({ cache: 'ste', entry });
    return entry !== undefined;
  }

  dropL1(index: number): boolean {
    const entry = this.l1.get(index);
    if (entry !== undefined && this.l1.delete(index)) this.observer?.dropped({ cache: 'l1std', entry });
    return entry !== undefined;
  }

  dropCd(sid: number): boolean {
    const entry = this.cds.get(sid);
    if (entry !== undefined && this.cds.delete(sid)) this.observer?.dropped({ cache: 'cd', entry });
    return entry !== undefined;
  }

  /** CFGI_STE: the STE of `sid`; with Leaf = 0 also the L1STD covering it (§3.3, SPEC 5.1.1). */
  invalidateSte(sid: number, leaf: boolean): number {
    let removed = this.dropSte(sid) ? 1 : 0;
    // CFGI_STE also invalidates every CD cached through that STE (smmuv3-arch.md §3.3).
    if (this.dropCd(sid)) removed++;
    if (!leaf) removed += this.invalidateL1Covering(sid, 1);
    return removed;
  }

  /** CFGI_STE_RANGE: every STE and L1STD for StreamIDs in [first, first + count). */
  invalidateRange(first: number, count: number): number {
    let removed = 0;
    for (const sid of [...this.stes.keys()]) {
      if (sid >= first && sid < first + count && this.dropSte(sid)) removed++;
    }
    for (const sid of [...this.cds.keys()]) {
      if (sid >= first && sid < first + count && this.dropCd(sid)) removed++;
    }
    return removed + this.invalidateL1Covering(first, count);
  }

  invalidateAll(): number {
    const removed = this.stes.size + this.l1.size + this.cds.size;
    if (this.observer !== null) {
      for (const sid of [...this.stes.keys()]) this.dropSte(sid);
      for (const index of [...this.l1.keys()]) this.dropL1(index);
      for (const sid of [...this.cds.keys()]) this.dropCd(sid);
    }
    this.stes.clear();
    this.l1.clear();
    this.cds.clear();
    return removed;
  }

  /** CFGI_CD (SID, SSID): only CD 0 is ever cached, so other SSIDs remove nothing. CFGI_CD_ALL: ssid < 0. */
  invalidateCd(sid: number, ssid: number): number {
    if (ssid > 0) return 0;
    return this.dropCd(sid) ? 1 : 0;
  }

  private invalidateL1Covering(first: number, count: number): number {
    let removed = 0;
    for (const [key, e] of [...this.l1.entries()]) {
      if (e.sidBase < first + count && first < e.sidBase + e.sidCount && this.dropL1(key)) removed++;
    }
    return removed;
  }
}
