/**
 * The host CPU's stage-2 TLB and its data accesses (ARCHITECTURE §1, issue "Ownership" §3).
 *
 * The TLB caches leaf translations of the host stage-2 (VMID 0) with their size, as a real TLB
 * does for block and page entries, and keeps them until a TLBI that is required to remove them:
 * an IPA invalidation removes the entries that translate that IPA (only those of the hinted level
 * when a TTL hint is given), a range invalidation every entry overlapping the range, a VMID
 * invalidation everything. The hypervisor reaches it through the `Stage2Tlb` interface. Stage-1
 * is not modelled: the host's accesses are by IPA (= PA, the host stage-2 is an identity map).
 */
import { type Granule, LAST_LEVEL, levelSize } from '../arch/granule.js';
import { ACCESS_OK, type PhysicalMemory } from '../arch/physical-memory.js';
import { DESC_HI_XN_SHIFT, DESC_S2AP_R, DESC_S2AP_W } from '../arch/s2-descriptor.js';
import { type Stage2Tlb, TLBI_TTL_UNKNOWN } from '../pgtable/kvm-pgtable.js';
import { Stage2Walker, WALK_EXTERNAL_ABORT, WALK_OK, newWalkResult } from '../pgtable/stage2-walk.js';

export type CpuAccess = 'read' | 'write' | 'exec';

export interface CpuTlbEntry {
  readonly base: number;
  readonly level: number;
  readonly size: number;
  readonly pa: number;
  readonly read: boolean;
  readonly write: boolean;
  readonly exec: boolean;
}

/** What a host access observed: where it went and whether the translation came from the TLB. */
export type AccessOutcome =
  | { readonly kind: 'done'; readonly pa: number; readonly fromTlb: boolean; readonly value: number }
  /** A stage-2 fault (translation, permission or external abort on the walk) for the hypervisor. */
  | { readonly kind: 'fault'; readonly reason: 'translation' | 'permission' | 'walk_abort' }
  /** The translation succeeded but the memory system answered with an external abort. */
  | { readonly kind: 'external_abort'; readonly pa: number };

export class HostCpuTlb implements Stage2Tlb {
  /** Entries keyed by base + level (a base is a multiple of 4 KiB, a level below 4: one number, no string per lookup). */
  private readonly entries = new Map<number, CpuTlbEntry>();
  invalidations = 0;

  constructor(private readonly granule: Granule) {}

  private key(level: number, base: number): number {
    return base + level;
  }

  lookup(ipa: number): CpuTlbEntry | undefined {
    for (let level = LAST_LEVEL; level >= this.granule.firstLevel; level--) {
      const size = levelSize(this.granule, level);
      const entry = this.entries.get(this.key(level, ipa - (ipa % size)));
      if (entry !== undefined) return entry;
    }
    return undefined;
  }

  /** Observation only (the runner's incremental checks): every entry filled while armed; null otherwise. */
  fillLog: CpuTlbEntry[] | null = null;

  fill(entry: CpuTlbEntry): void {
    this.entries.set(this.key(entry.level, entry.base), entry);
    this.fillLog?.push(entry);
  }

  /** Every cached entry (for the host-isolation check of the effective reach). */
  all(): IterableIterator<CpuTlbEntry> {
    return this.entries.values();
  }

  flushVmidIpa(ipa: number, level: number): void {
    this.invalidations++;
    for (const [key, e] of this.entries) {
      const hinted = level !== TLBI_TTL_UNKNOWN && level >= 0 && level <= 3;
      if (ipa >= e.base && ipa < e.base + e.size && (!hinted || e.level === level)) this.entries.delete(key);
    }
  }

  flushVmidIpaNsh(ipa: number, level: number): void {
    this.flushVmidIpa(ipa, level);
  }

  flushVmidRange(addr: number, size: number): void {
    this.invalidations++;
    for (const [key, e] of this.entries) if (e.base < addr + size && addr < e.base + e.size) this.entries.delete(key);
  }

  flushVmid(): void {
    this.invalidations++;
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}

/** The host CPU: translates through its TLB, then the host stage-2 walk. */
export class HostCpu {
  readonly tlb: HostCpuTlb;
  private readonly walkOut = newWalkResult();

  constructor(
    private readonly memory: PhysicalMemory,
    private readonly walker: () => Stage2Walker,
    private readonly granule: Granule,
  ) {
    this.tlb = new HostCpuTlb(granule);
  }

  /**
   * One access attempt (no fault handling: the caller — the hypervisor's abort handler — decides
   * whether to retry). A write stores `value` (32-bit, 4-aligned address rounded down).
   */
  access(ipa: number, kind: CpuAccess, value = 0): AccessOutcome {
    let entry = this.tlb.lookup(ipa);
    const fromTlb = entry !== undefined;
    if (entry === undefined) {
      const out = this.walkOut;
      const status = this.walker().walk(ipa, out);
      if (status === WALK_EXTERNAL_ABORT) return { kind: 'fault', reason: 'walk_abort' };
      if (status !== WALK_OK) return { kind: 'fault', reason: 'translation' };
      const size = levelSize(this.granule, out.level);
      entry = {
        base: ipa - (ipa % size),
        level: out.level,
        size,
        pa: out.pa - (ipa % size),
        read: (out.lo & DESC_S2AP_R) !== 0,
        write: (out.lo & DESC_S2AP_W) !== 0,
        exec: ((out.hi >>> DESC_HI_XN_SHIFT) & 2) === 0,
      };
      this.tlb.fill(entry);
    }
    const allowed = kind === 'read' ? entry.read : kind === 'write' ? entry.write : entry.exec && entry.read;
    if (!allowed) return { kind: 'fault', reason: 'permission' };
    const pa = entry.pa + (ipa - entry.base);
    const aligned = pa - (pa % 4);
    if (kind === 'write') {
      if (this.memory.write32(aligned, value) !== ACCESS_OK) return { kind: 'external_abort', pa };
      return { kind: 'done', pa, fromTlb, value };
    }
    const read = this.memory.read32(aligned);
    if (read < 0) return { kind: 'external_abort', pa };
    return { kind: 'done', pa, fromTlb, value: read };
  }
}
