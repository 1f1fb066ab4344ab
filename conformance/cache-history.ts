/**
 * The life of every SMMU cache and device ATC entry in a traced replay (issue 17 item 2): when and
 * by what it was filled, which later invalidations took effect while it was cached without
 * removing it, and what removed it. A counterexample's trace then shows, for the page a violation
 * names, each entry that reached it — "filled at step 0 by dma sid 1; TLBI_S2_IPA … at step 1 did
 * not remove it; still cached".
 *
 * It listens to the hardware's cache observer (impl/hw/smmu/cache-observer.ts) and learns what the
 * hardware was doing from thin wrappers around the device and SMMU entry points, installed on the
 * instances of one traced system only.
 */
import { match } from 'ts-pattern';
import { type Command, describeCommand } from '../impl/arch/smmu/commands.js';
import { type CacheName, type CacheObserver, type CachedEntry, type RemovalCause } from '../impl/hw/smmu/cache-observer.js';
import { type System } from '../impl/system.js';

/** An invalidation after the fill that did not remove the entry; beyond this many only counted. */
export const MAX_KEPT_PER_ENTRY = 16;

export interface EntryHistory {
  readonly id: number;
  readonly cache: CacheName;
  /** The entry as a reviewer reads it. */
  readonly text: string;
  /** Physical range its translation reaches (TLBs, ATCs). */
  readonly pa: { readonly base: number; readonly size: number } | undefined;
  /** Input range a stage-2 walk-cache entry covers (IPA = PA through the identity map). */
  readonly ipa: { readonly base: number; readonly size: number } | undefined;
  /** The StreamID a configuration or ATC entry belongs to. */
  readonly sids: { readonly first: number; readonly count: number } | undefined;
  readonly vmid: number | undefined;
  readonly filled: { readonly step: number; readonly by: string };
  /** Invalidations that took effect while it was cached and left it. */
  readonly kept: { readonly step: number; readonly command: string }[];
  keptMore: number;
  removed: { readonly step: number; readonly by: string } | undefined;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

export function sizeText(bytes: number): string {
  for (const [unit, size] of [['G', 2 ** 30], ['M', 2 ** 20], ['K', 2 ** 10]] as const) if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  return `${bytes} B`;
}

function perms(read: boolean, write: boolean): string {
  return `${read ? 'r' : '-'}${write ? 'w' : '-'}`;
}

type Described = Pick<EntryHistory, 'text' | 'pa' | 'ipa' | 'sids' | 'vmid'>;

const GRANULE = ['4K', '16K', '64K'] as const;

function describeEntry(e: CachedEntry): Described {
  const none = { pa: undefined, ipa: undefined, sids: undefined, vmid: undefined };
  return match(e)
    .with({ cache: 'tlb' }, ({ entry: t }) => ({
      ...none,
      text: `TLB vmid ${t.vmid} IPA ${hex(t.base)}+${sizeText(t.size)} → PA ${hex(t.pa)} ${perms((t.perms & 1) !== 0, (t.perms & 2) !== 0)}, level ${t.level} (${GRANULE[t.gIndex] ?? '?'} granule), walked for sid ${t.sid}`,
      pa: { base: t.pa, size: t.size },
      vmid: t.vmid,
    }))
    .with({ cache: 'walk' }, ({ entry: w }) => ({
      ...none,
      text: `walk cache vmid ${w.vmid} IPA ${hex(w.base)}+${sizeText(w.size)}: level-${w.level} table descriptor → table ${hex(w.table)}, walked for sid ${w.sid}`,
      ipa: { base: w.base, size: w.size },
      vmid: w.vmid,
    }))
    .with({ cache: 's1_tlb' }, ({ entry: t }) => ({
      ...none,
      text: `${t.nested ? 'S1+S2' : 'S1'} TLB vmid ${t.vmid} ${t.global ? 'global' : `asid ${t.asid}`} VA ${hex(t.base)}+${sizeText(t.size)} → IPA ${hex(t.ipa)} PA ${hex(t.pa)} ${perms((t.s1Perms & t.s2Perms & 1) !== 0, (t.s1Perms & t.s2Perms & 2) !== 0)}, walked for sid ${t.sid}`,
      pa: { base: t.pa, size: t.size },
      vmid: t.vmid,
    }))
    .with({ cache: 's1_walk' }, ({ entry: w }) => ({
      ...none,
      text: `S1 walk cache vmid ${w.vmid} asid ${w.asid} VA ${hex(w.base)}+${sizeText(w.size)}: level-${w.level} table descriptor → table ${hex(w.table)}, walked for sid ${w.sid}`,
      vmid: w.vmid,
    }))
    .with({ cache: 'ste' }, ({ entry: s }) => ({
      ...none,
      text: `STE sid ${s.sid}: ${s.kind}${s.illegal === undefined ? '' : ` (ILLEGAL: ${s.illegal})`}${s.s2 === null ? '' : ` vmid ${s.s2.vmid} S2TTB ${hex(s.s2.ttb)}`}, fetched from ${hex(s.fetchAddr)}`,
      sids: { first: s.sid, count: 1 },
      ...(s.s2 === null ? {} : { vmid: s.s2.vmid }),
    }))
    .with({ cache: 'l1std' }, ({ entry: l }) => ({
      ...none,
      text: `L1 stream-table descriptor ${l.l1Index} (sids ${l.sidBase}–${l.sidBase + l.sidCount - 1}): Span ${l.span} → L2 ${hex(l.l2ptr)}, fetched from ${hex(l.fetchAddr)}`,
      sids: { first: l.sidBase, count: l.sidCount },
    }))
    .with({ cache: 'cd' }, ({ entry: c }) => ({
      ...none,
      text: `CD 0 of sid ${c.sid}: asid ${c.cd.asid} TTB0 ${hex(c.cd.ttb0)}${c.illegal === undefined ? '' : ` (ILLEGAL: ${c.illegal})`}, fetched from ${hex(c.fetchAddr)}`,
      sids: { first: c.sid, count: 1 },
    }))
    .with({ cache: 'atc' }, ({ sid, entry: a }) => ({
      ...none,
      text: `ATC of sid ${sid}: ${hex(a.base)}+${sizeText(a.size)} → PA ${hex(a.pa)} ${perms(a.read, a.write)}`,
      pa: { base: a.pa, size: a.size },
      sids: { first: sid, count: 1 },
    }))
    .exhaustive();
}

function overlaps(r: { readonly base: number; readonly size: number } | undefined, base: number, size: number): boolean {
  return r !== undefined && r.base < base + size && base < r.base + r.size;
}

function commandSids(c: Command): { first: number; count: number } | 'all' | undefined {
  return match(c)
    .with({ kind: 'CFGI_ALL' }, () => 'all' as const)
    .with({ kind: 'CFGI_STE_RANGE' }, (x) => {
      const count = 2 ** (x.range + 1);
      return { first: x.sid - (x.sid % count), count };
    })
    .with({ kind: 'CFGI_STE' }, { kind: 'CFGI_CD' }, { kind: 'CFGI_CD_ALL' }, { kind: 'ATC_INV' }, (x) => ({ first: x.sid, count: 1 }))
    .otherwise(() => undefined);
}

/** Whether `command` is one that could remove an entry of this cache (its kind, VMID and streams): the ones worth listing as "did not remove it". */
export function couldRemove(command: Command, h: Pick<EntryHistory, 'cache' | 'vmid' | 'sids'>): boolean {
  const vmidMatches = !('vmid' in command) || h.vmid === undefined || command.vmid === h.vmid;
  const sidsMatch = (): boolean => {
    const s = commandSids(command);
    if (s === 'all') return true;
    return s !== undefined && h.sids !== undefined && s.first < h.sids.first + h.sids.count && h.sids.first < s.first + s.count;
  };
  switch (h.cache) {
    case 'tlb':
    case 'walk':
      return (command.kind === 'TLBI_S2_IPA' || command.kind === 'TLBI_S12_VMALL' || command.kind === 'TLBI_NSNH_ALL') && vmidMatches;
    case 's1_tlb':
    case 's1_walk':
      return (command.kind.startsWith('TLBI_NH_') || command.kind === 'TLBI_S12_VMALL' || command.kind === 'TLBI_NSNH_ALL') && vmidMatches;
    case 'ste':
    case 'l1std':
    case 'cd':
      return command.kind.startsWith('CFGI_') && sidsMatch();
    case 'atc':
      return command.kind === 'ATC_INV' && sidsMatch();
    default: {
      const impossible: never = h.cache;
      return impossible;
    }
  }
}

type Method = (...args: never[]) => unknown;

/** Wraps one method of one instance (the traced system's), as conformance/trace.ts wraps hyp.run. */
function wrapMethod(target: object, key: string, wrap: (original: Method) => Method): void {
  const original = ((target as Record<string, unknown>)[key] as Method).bind(target);
  Object.defineProperty(target, key, { value: wrap(original), configurable: true, writable: true });
}

export class CacheHistory implements CacheObserver {
  readonly entries: EntryHistory[] = [];
  /** The step being run (-1 at boot), set by the tracer. */
  step = -1;
  private readonly live = new Map<object, EntryHistory>();
  private activity: string | undefined = undefined;
  private readonly causes: RemovalCause[] = [];

  /** Watches the SMMU and the devices of `sys` (none without an SMMU). */
  static attach(sys: System): CacheHistory | undefined {
    const parts = sys.iommu;
    if (parts === undefined) return undefined;
    const h = new CacheHistory();
    parts.smmu.observeCaches(h);
    const smmu = parts.smmu;
    h.label(smmu, 'speculativeFill', (sid: number, addr: number) => `speculative fill for sid ${sid} at ${hex(addr)}`);
    h.label(smmu, 'consumeOneCommand', () => 'the SMMU consuming a command (a PREFETCH)');
    h.label(smmu, 'atsTranslationRequest', (sid: number, addr: number) => `ATS translation request of sid ${sid} for ${hex(addr)}`);
    for (const device of parts.devices.values()) {
      device.atcObserver = h;
      h.label(device, 'dma', (addr: number, access: string) => `dma of sid ${device.sid} (${access} ${hex(addr)})`);
      h.label(device, 'atsTranslate', (addr: number) => `ATS translation request of sid ${device.sid} for ${hex(addr)}`);
      h.label(device, 'dmaTranslated', (addr: number, access: string) => `translated dma of sid ${device.sid} (${access} ${hex(addr)})`);
    }
    return h;
  }

  /** Makes `what(args)` the activity while the method runs (the outermost wins), so a fill says what made it. */
  private label<A extends unknown[]>(target: object, key: string, what: (...args: A) => string): void {
    wrapMethod(target, key, (original) => (...args: never[]) => {
      const outer = this.activity;
      this.activity ??= what(...(args as unknown as A));
      try {
        return original(...args);
      } finally {
        this.activity = outer;
      }
    });
  }

  filled(e: CachedEntry): void {
    const described = describeEntry(e);
    const h: EntryHistory = { id: this.entries.length, cache: e.cache, ...described, filled: { step: this.step, by: this.activity ?? 'the SMMU' }, kept: [], keptMore: 0, removed: undefined };
    this.entries.push(h);
    this.live.set(e.entry, h);
  }

  dropped(e: CachedEntry): void {
    const h = this.live.get(e.entry);
    if (h === undefined) return;
    this.live.delete(e.entry);
    const cause = this.causes.at(-1);
    const by = cause === undefined ? 'dropped by the SMMU (capacity, or replaced by a new fill)' : cause.kind === 'evict' ? 'evicted (smmu_evict)' : describeCommand(cause.command);
    h.removed = { step: this.step, by };
  }

  removing(cause: RemovalCause): void {
    this.causes.push(cause);
  }

  removed(cause: RemovalCause): void {
    this.causes.pop();
    if (cause.kind !== 'command') return;
    const text = describeCommand(cause.command);
    for (const h of this.live.values()) {
      if (!couldRemove(cause.command, h)) continue;
      if (h.kept.length < MAX_KEPT_PER_ENTRY) h.kept.push({ step: this.step, command: text });
      else h.keptMore++;
    }
  }

  /** The entries still cached, in fill order. */
  cached(): EntryHistory[] {
    return this.entries.filter((h) => h.removed === undefined);
  }

  /** Entries whose translation reaches the page, or (walk caches) whose IPA range covers it, and that were cached at some point of `step`. */
  reaching(pfn: number, step: number): EntryHistory[] {
    const base = pfn * 4096;
    const found = this.entries.filter((h) => cachedDuring(h, step) && (overlaps(h.pa, base, 4096) || overlaps(h.ipa, base, 4096)));
    // Translations first (they are what reaches the page), then the walk-cache entries a walk would start from.
    return [...found.filter((h) => h.pa !== undefined), ...found.filter((h) => h.pa === undefined)];
  }

  /** Configuration and ATC entries of a stream cached at some point of `step`. */
  ofStream(sid: number, step: number): EntryHistory[] {
    return this.entries.filter((h) => cachedDuring(h, step) && h.sids !== undefined && h.cache !== 'atc' && sid >= h.sids.first && sid < h.sids.first + h.sids.count);
  }
}

function cachedDuring(h: EntryHistory, step: number): boolean {
  return h.filled.step <= step && (h.removed === undefined || h.removed.step >= step);
}

/** The history of one entry as lines: what it is, its fill, the invalidations it survived, its end. */
export function historyLines(h: EntryHistory): string[] {
  const at = (step: number) => (step < 0 ? 'at boot' : `at step ${step}`);
  const lines = [`${h.text}`, `  filled ${at(h.filled.step)} by ${h.filled.by}`];
  for (const k of h.kept) lines.push(`  not removed by ${k.command} (took effect ${at(k.step)})`);
  if (h.keptMore > 0) lines.push(`  not removed by ${h.keptMore} more invalidation(s)`);
  lines.push(h.removed === undefined ? '  still cached at the end' : `  removed ${at(h.removed.step)} by ${h.removed.by}`);
  return lines;
}
