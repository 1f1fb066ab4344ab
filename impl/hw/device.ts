/**
 * DMA masters behind an SMMU (ARCHITECTURE §1): each has a StreamID and optionally PCIe ATS with
 * an Address Translation Cache. A device accesses 32-bit words; the access goes to the aligned
 * word containing the translated address, through PhysicalMemory (RAM or MMIO).
 *
 * ATC semantics (smmuv3-arch.md §3.5, IHI 0070 §3.9.1): the ATC caches successful Translation
 * Completions and uses them without asking the SMMU again; an entry lives until an ATS Invalidate
 * Request covering it arrives (CMD_ATC_INV applied by the SMMU). A PASID-tagged invalidation
 * (SSV = 1) leaves entries cached without a PASID — this device never uses PASIDs. A device set
 * to time out ignores invalidations (its stale entries stay) and reports no completion, which
 * the SMMU turns into CERROR_ATC_INV_SYNC at the next CMD_SYNC. Nothing here throws for
 * addresses or values: every failure is an outcome.
 */
import { ACCESS_OK, type PhysicalMemory, READ_ABORT } from '../arch/physical-memory.js';
import { type EventRecord } from '../arch/smmu/events.js';
import { type AtcInvalidation, type AtsEndpoint, type AtsResponse } from './smmu/ats.js';
import { type CacheObserver } from './smmu/cache-observer.js';
import { type AbortReason, type DmaAccess, type Smmu, type TranslateOutcome, type TranslationVia } from './smmu/smmu.js';

export type DmaOutcome =
  /** `value` is the word read (for a write: the value written). */
  | { readonly kind: 'completed'; readonly pa: number; readonly value: number; readonly via: TranslationVia | 'atc' }
  /** The SMMU terminated the transaction, or the device had no usable translation. */
  | {
      readonly kind: 'fault';
      readonly reason: AbortReason | 'ats_denied' | 'ats_unsupported' | 'ats_aborted' | 'no_ats';
      readonly event: EventRecord | undefined;
    }
  /** Translated, but the memory system answered with an external abort. */
  | { readonly kind: 'external_abort'; readonly pa: number };

export interface AtcEntry {
  /** Untranslated range [base, base + size) and its translation. */
  readonly base: number;
  readonly size: number;
  readonly pa: number;
  readonly read: boolean;
  readonly write: boolean;
}

export interface DeviceOptions {
  readonly sid: number;
  readonly ats: boolean;
  /** How the device answers ATS Invalidate Requests (default: completes them). */
  readonly atcInvalidation?: 'complete' | 'timeout';
}

export class DmaDevice implements AtsEndpoint {
  readonly sid: number;
  readonly ats: boolean;
  /** Mutable so a run can make the device stop answering invalidations. */
  atcInvalidation: 'complete' | 'timeout';
  private atc: AtcEntry[] = [];
  /** ATS Invalidate Requests received (completed or not). */
  invalidationsReceived = 0;
  /** Told of every ATC fill and removal (traces only; conformance/cache-history.ts). */
  atcObserver: CacheObserver | null = null;

  constructor(
    private readonly smmu: Smmu,
    private readonly memory: PhysicalMemory,
    options: DeviceOptions,
  ) {
    this.sid = options.sid;
    this.ats = options.ats;
    this.atcInvalidation = options.atcInvalidation ?? 'complete';
    if (this.ats) smmu.attachEndpoint(this);
  }

  /** An untranslated DMA through the SMMU. */
  dma(addr: number, access: DmaAccess, value = 0): DmaOutcome {
    return this.access(this.smmu.translate(this.sid, addr, access), access, value);
  }

  /** Sends an ATS Translation Request and caches a successful completion that grants any access. */
  atsTranslate(addr: number): AtsResponse {
    if (!this.ats) return { kind: 'ur', reason: 'the device does not implement ATS' };
    const response = this.smmu.atsTranslationRequest(this.sid, addr);
    if (response.kind === 'success' && (response.read || response.write)) {
      this.atc = this.keepAtc((e) => !(e.base === response.base && e.size === response.size));
      const entry = { base: response.base, size: response.size, pa: response.pa, read: response.read, write: response.write };
      this.atc.push(entry);
      this.atcObserver?.filled({ cache: 'atc', sid: this.sid, entry });
    }
    return response;
  }

  /**
   * A DMA using ATS: the ATC entry is used without asking the SMMU; on a miss the device first
   * asks for a translation. The translated transaction still passes the SMMU's ATSCHK check.
   */
  dmaTranslated(addr: number, access: DmaAccess, value = 0): DmaOutcome {
    if (!this.ats) return { kind: 'fault', reason: 'no_ats', event: undefined };
    let entry = this.lookup(addr);
    if (entry === undefined) {
      const response = this.atsTranslate(addr);
      if (response.kind === 'ur') return { kind: 'fault', reason: 'ats_unsupported', event: undefined };
      if (response.kind === 'ca') return { kind: 'fault', reason: 'ats_aborted', event: undefined };
      entry = this.lookup(addr);
    }
    if (entry === undefined || !(access === 'write' ? entry.write : entry.read)) return { kind: 'fault', reason: 'ats_denied', event: undefined };
    const pa = entry.pa + (addr - entry.base);
    return this.access(this.smmu.translatedAccess(this.sid, pa, access), access, value, 'atc');
  }

  /** A transaction marked Translated with an address the device chose (a buggy or malicious endpoint). */
  dmaForgedTranslated(pa: number, access: DmaAccess, value = 0): DmaOutcome {
    return this.access(this.smmu.translatedAccess(this.sid, pa, access), access, value);
  }

  atcInvalidate(inv: AtcInvalidation): boolean {
    this.invalidationsReceived++;
    if (this.atcInvalidation === 'timeout') return false;
    // Entries cached without a PASID are only hit by invalidations without one.
    if (inv.ssv) return true;
    const end = inv.base + inv.size;
    this.atc = this.keepAtc((e) => !(e.base < end && inv.base < e.base + e.size));
    return true;
  }

  private keepAtc(keep: (e: AtcEntry) => boolean): AtcEntry[] {
    const observer = this.atcObserver;
    if (observer === null) return this.atc.filter(keep);
    return this.atc.filter((entry) => {
      if (keep(entry)) return true;
      observer.dropped({ cache: 'atc', sid: this.sid, entry });
      return false;
    });
  }

  /** The device's cached translations (plain data). */
  atcEntries(): AtcEntry[] {
    return this.atc.map((e) => ({ ...e }));
  }

  private lookup(addr: number): AtcEntry | undefined {
    return this.atc.find((e) => addr >= e.base && addr < e.base + e.size);
  }

  private access(t: TranslateOutcome, access: DmaAccess, value: number, via?: 'atc'): DmaOutcome {
    if (t.kind === 'abort') return { kind: 'fault', reason: t.reason, event: t.event };
    const word = t.pa - (t.pa % 4);
    if (access === 'read') {
      const v = this.memory.read32(word);
      if (v === READ_ABORT) return { kind: 'external_abort', pa: t.pa };
      return { kind: 'completed', pa: t.pa, value: v, via: via ?? t.via };
    }
    const v = Number.isFinite(value) ? Math.trunc(value) >>> 0 : 0;
    if (this.memory.write32(word, v) !== ACCESS_OK) return { kind: 'external_abort', pa: t.pa };
    return { kind: 'completed', pa: t.pa, value: v, via: via ?? t.via };
  }
}
