/**
 * Incremental checks (issue 15 item 1). After each step the runner asks, per check, whether the
 * full check could fail now, looking only at what the step changed (properties/step-log.ts): the
 * pages whose ownership changed in the model or in the system, the table entries that changed
 * (properties/table-index.ts), the TLB, cache and ATC entries that were filled. The answer must
 * never be "no" when the full check would fail, given that the full check passed on the previous
 * step (every state it reads that the step did not change is as it was then). A "maybe" runs the
 * full check, which reports — so messages are the full checks' own, and a false "maybe" only
 * costs time. The runner still runs every full check every N steps and at the end of a run, and
 * wherever the previous step was not clean (traces that continue after a violation).
 */
import { GRANULE_4K, type Granule, LAST_LEVEL, levelSize } from '../impl/arch/granule.js';
import { INVALID_TYPE_HOST_DONATION, decodeInvalidEntry, s2Format } from '../impl/arch/s2-descriptor.js';
import { type CachedEntry } from '../impl/hw/smmu/cache-observer.js';
import { PKVM_ID_HYP } from '../impl/hyp/host-stage2.js';
import { PKVM_NOPAGE } from '../impl/hyp/vmemmap.js';
import { type TableRoot } from '../impl/pgtable/table-dump.js';
import { type System } from '../impl/system.js';
import { type ModelState, PageMap, dmaMustReach, pfnIsMemory } from '../model/index.js';
import { abstractVm, diffVm, pagesAgree } from './abstraction.js';
import { type StepLog } from './step-log.js';
import { type IndexUpdate, TableIndex } from './table-index.js';

const PAGE = 4096;

/** Keys whose value differs between two versions of a model map (shared maps or blocks: none). */
function changedKeys<V>(a: ReadonlyMap<number, V>, b: ReadonlyMap<number, V>, out: Set<number>): void {
  if (a === b) return;
  if (a instanceof PageMap && b instanceof PageMap) {
    (a as PageMap<V>).addDifferences(b as PageMap<V>, out);
    return;
  }
  for (const [k, v] of a) if (b.get(k) !== v) out.add(k);
  for (const [k, v] of b) if (a.get(k) !== v) out.add(k);
}

/** The only pages a range test can hold for, and how many there are (their list is made only when iterated). */
interface Candidates {
  readonly count: number;
  pfns(): Iterable<number>;
}

function mapKeys(map: ReadonlyMap<number, unknown>): Candidates {
  return { count: map.size, pfns: () => map.keys() };
}

function isValid(lo: number): boolean {
  return (lo & 1) !== 0;
}

/** What a step changed, worked out once and shared by the incremental checks. */
export interface StepDelta {
  /** Pages whose model or system ownership state may have changed (in no particular order: the predicates only ask whether one of them breaks a rule). */
  readonly pfns: readonly number[];
  readonly host: IndexUpdate;
  /** Per VM: its table index's update (a new VM's tree as one update from nothing; undefined: the VM is gone). */
  readonly guests: ReadonlyMap<number, IndexUpdate | undefined>;
  /** The DMA stage-2's update (undefined without an SMMU; the host's for the shared designs). */
  readonly dma: IndexUpdate | undefined;
  /** The hypervisor's SMMU structures now (pages DMA must never reach) and those new since the last step. */
  readonly protectedPages: ReadonlySet<number>;
  readonly newlyProtected: readonly number[];
  /** Whether some VM's metadata or pool page count moved (pages changed hands). */
  readonly vmPagesMoved: boolean;
}

/** The DMA stage-2's tree as a table root (the shadow idmap's io-pgtable), or the host's in the shared designs. */
function dmaRoot(sys: System): TableRoot | 'host' | undefined {
  const parts = sys.iommu;
  if (parts === undefined || parts.dmaStage2 === undefined) return undefined;
  const idmap = parts.idmap;
  if (idmap === undefined) return 'host';
  const g = idmap.pgtable.geometry;
  return { format: s2Format(g.granule), pgd: idmap.pgtable.pgd, startLevel: g.startLevel, topEntries: g.pgdEntries };
}

/** What the incremental checks know of a state: its trees' indexes and the sets the next delta is taken against. */
interface IndexState {
  readonly host: TableIndex;
  readonly guests: Map<number, TableIndex>;
  readonly dma: TableIndex | undefined;
  readonly dmaIsHost: boolean;
  readonly dmaGranule: Granule;
  readonly vmPages: Map<number, number>;
  readonly protectedBefore: Set<number>;
}

/** A copy of `s` whose indexes and sets are updated apart from the original's. */
function copyIndexState(s: IndexState): IndexState {
  const guests = new Map<number, TableIndex>();
  for (const [vm, index] of s.guests) guests.set(vm, index.copy());
  return { host: s.host.copy(), guests, dma: s.dma?.copy(), dmaIsHost: s.dmaIsHost, dmaGranule: s.dmaGranule, vmPages: new Map(s.vmPages), protectedBefore: new Set(s.protectedBefore) };
}

/** Per reused booted system (the same object every run), the index state of its boot state. */
const bootIndexes = new WeakMap<System, IndexState>();

export class IncrementalChecks {
  private host: TableIndex;
  private readonly guests = new Map<number, TableIndex>();
  private dma: TableIndex | undefined;
  private dmaIsHost = false;
  private protectedBefore = new Set<number>();
  private dmaGranule: Granule = GRANULE_4K;
  /** Per VM, its metadata and pool page counts at the last check (pages changing hands). */
  private vmPages = new Map<number, number>();

  /**
   * `atReusedBoot`: the system was just reset to its reused boot state (properties/boot-cache.ts),
   * which is the same in every run, so the indexes of the first such run are kept and copied into
   * the later ones instead of being rebuilt.
   */
  constructor(
    private readonly sys: System,
    private readonly protectedPages: (sys: System) => number[],
    atReusedBoot = false,
  ) {
    const template = atReusedBoot ? bootIndexes.get(sys) : undefined;
    if (template !== undefined) {
      const copy = copyIndexState(template);
      this.host = copy.host;
      for (const [vm, index] of copy.guests) this.guests.set(vm, index);
      this.dma = copy.dma;
      this.dmaIsHost = copy.dmaIsHost;
      this.dmaGranule = copy.dmaGranule;
      this.vmPages = copy.vmPages;
      this.protectedBefore = copy.protectedBefore;
      return;
    }
    this.host = new TableIndex(sys.memory, sys.hostS2.pgt.root());
    this.indexTheRest();
    if (atReusedBoot) bootIndexes.set(sys, copyIndexState({ host: this.host, guests: this.guests, dma: this.dma, dmaIsHost: this.dmaIsHost, dmaGranule: this.dmaGranule, vmPages: this.vmPages, protectedBefore: this.protectedBefore }));
  }

  /** Reads every tree but the host's (just indexed) and every set as they are (the state the first step starts from). */
  private indexTheRest(): void {
    const sys = this.sys;
    this.guests.clear();
    for (const [vm, guest] of sys.hyp.vms) this.guests.set(vm, new TableIndex(sys.memory, guest.pgt.root()));
    const root = dmaRoot(sys);
    this.dmaIsHost = root === 'host';
    this.dma = root === undefined || root === 'host' ? undefined : new TableIndex(sys.memory, root);
    this.dmaGranule = root === undefined || root === 'host' ? sys.hostS2.pgt.granule : root.format.granule;
    this.vmPages = this.vmPageCounts();
    this.protectedBefore = new Set(this.protectedPages(sys));
  }

  /**
   * Whether the step changed what an error must not change (the full check's fingerprint: the
   * vmemmap, the hypervisor's stage-1, the budget, and the host's and guests' reachable table
   * entries). Called before `delta`, while the indexes still describe the trees before the step.
   * A table page replaced by an identical copy counts as a change here and not in the fingerprint.
   */
  errorChangedState(log: StepLog, budgetBefore: number): boolean {
    const sys = this.sys;
    if (sys.memcache.available !== budgetBefore) return true;
    for (const [pfn, old] of log.vmemmap) {
      const now = sys.vmemmap.entry(pfn);
      if (now.state !== old.state || now.refcount !== old.refcount || now.shareGuestCount !== old.shareGuestCount) return true;
    }
    for (const [pfn, old] of log.hypS1) if (sys.hyp.hypS1.get(pfn) !== old) return true;
    if (sys.hyp.vms.size !== this.guests.size) return true;
    for (const [pa, old] of log.words) {
      const page = pa - (pa % PAGE);
      if (!this.host.has(page) && ![...this.guests.values()].some((g) => g.has(page))) continue;
      const now = sys.memory.peek64(pa);
      if (now.lo !== old.lo || now.hi !== old.hi) return true;
    }
    return false;
  }

  /** Brings the indexes up to date with the step and collects what changed. */
  delta(log: StepLog, pre: ModelState, post: ModelState): StepDelta {
    const sys = this.sys;
    const pfns = new Set<number>();
    for (const pfn of log.vmemmap.keys()) pfns.add(pfn);
    for (const pfn of log.hypS1.keys()) pfns.add(pfn);
    changedKeys(pre.host, post.host, pfns);
    changedKeys(pre.hyp, post.hyp, pfns);
    changedKeys(pre.pins, post.pins, pfns);
    changedKeys(pre.shareCount, post.shareCount, pfns);
    const host = this.host.update(log.words);
    // A host annotation is ownership too (MMIO the hypervisor holds): its pfn may have changed.
    for (const c of host.changes) if (c.level === LAST_LEVEL) pfns.add(c.ia / PAGE);
    const guests = new Map<number, IndexUpdate | undefined>();
    for (const [vm, guest] of sys.hyp.vms) {
      const index = this.guests.get(vm);
      if (index === undefined) {
        // A new VM: its whole tree is what the step added (init_vm leaves it nearly empty).
        const fresh = new TableIndex(sys.memory, guest.pgt.root());
        this.guests.set(vm, fresh);
        guests.set(vm, fresh.reindex());
      } else guests.set(vm, index.update(log.words));
    }
    for (const vm of this.guests.keys()) {
      // Deleting the entry being visited is safe for a Map iterator.
      if (!sys.hyp.vms.has(vm)) {
        this.guests.delete(vm);
        guests.set(vm, undefined);
      }
    }
    const dma = this.dmaIsHost ? host : this.dma?.update(log.words);
    const protectedPages = new Set(this.protectedPages(sys));
    const newlyProtected: number[] = [];
    for (const pfn of protectedPages) if (!this.protectedBefore.has(pfn)) newlyProtected.push(pfn);
    this.protectedBefore = protectedPages;
    const counts = this.vmPageCounts();
    let vmPagesMoved = counts.size !== this.vmPages.size;
    for (const [vm, c] of counts) if (this.vmPages.get(vm) !== c) vmPagesMoved = true;
    this.vmPages = counts;
    return { pfns: [...pfns], host, guests, dma, protectedPages, newlyProtected, vmPagesMoved };
  }

  // ---- the "could the full check fail?" predicates ----

  refinementMayFail(d: StepDelta, pre: ModelState, post: ModelState): boolean {
    const sys = this.sys;
    if (post.pool !== sys.memcache.available) return true;
    if (!pagesAgree(post, sys, d.pfns)) return true;
    // The same VMs on both sides; then each VM the step touched (a new one in full), below.
    if (post.vms.size !== sys.hyp.vms.size) return true;
    for (const vm of post.vms.keys()) if (!sys.hyp.vms.has(vm)) return true;
    for (const [vm, update] of d.guests) {
      const m = post.vms.get(vm);
      const guest = sys.hyp.vms.get(vm);
      if (m === undefined && guest === undefined) continue;
      if (update === undefined || m === undefined || guest === undefined) return true;
      if (m.protected !== guest.isProtected || m.metadataPages !== guest.metadataPages.length || m.tablePages !== guest.pool.owned.length) return true;
      // Leaves: compared when either side's may have changed.
      if (update.changes.length > 0 || update.faults.length > 0 || pre.vms.get(vm) !== m) {
        const out: string[] = [];
        diffVm(vm, m, abstractVm(sys, vm), out);
        if (out.length > 0) return true;
      }
    }
    return false;
  }

  hostCpuMayFail(log: StepLog, d: StepDelta, post: ModelState): boolean {
    const sys = this.sys;
    const limit = 2 ** post.config.layout.physShift;
    for (const pfn of d.pfns) if (post.host.get(pfn) === 'NOPAGE' && sys.cpu.tlb.lookup(pfn * PAGE) !== undefined) return true;
    for (const e of log.cpuFills) {
      if (e.base + e.size > limit) return true;
      if (e.exec && !pfnIsMemory(post.config.layout, e.base / PAGE)) return true;
      if (this.rangeHas(e.base, e.size, (pfn) => post.host.get(pfn) === 'NOPAGE', mapKeys(post.host))) return true;
    }
    return false;
  }

  /**
   * Whether a page of [pa, pa + size) satisfies `test`, given that only pages among the
   * `candidates` can: page by page or candidate by candidate, whichever is fewer (a 2 MiB block
   * against a handful of non-default pages, or a 4 KiB page against a long list).
   */
  private rangeHas(pa: number, size: number, test: (pfn: number) => boolean, candidates: Candidates): boolean {
    const first = Math.floor(pa / PAGE);
    const pages = Math.ceil(size / PAGE);
    if (pages <= candidates.count) {
      for (let pfn = first; pfn < first + pages; pfn++) if (test(pfn)) return true;
      return false;
    }
    for (const pfn of candidates.pfns()) if (pfn >= first && pfn < first + pages && test(pfn)) return true;
    return false;
  }

  private refcountsOrFaultsBad(pgt: { pageCount(pa: number): number; tablePages(): ReadonlyMap<number, number>; format: Parameters<typeof decodeInvalidEntry>[0] }, index: TableIndex, u: IndexUpdate): boolean {
    if (u.faults.length > 0) return true;
    if (pgt.tablePages().size !== index.size) return true;
    for (const page of u.dirtyPages) if (!index.has(page) || pgt.pageCount(page) !== 1 + index.nonZero(page)) return true;
    for (const c of u.changes) if (!isValid(c.lo) && decodeInvalidEntry(pgt.format, c.lo, c.hi).kind === 'locked') return true;
    return false;
  }

  /** The host stage-2's view of one page against the vmemmap (the full check's per-entry rules, for one pfn). */
  private hostPageBad(pfn: number): boolean {
    const sys = this.sys;
    const pgt = sys.hostS2.pgt;
    const leaf = this.host.lookup(pfn * PAGE);
    const isMemory = sys.vmemmap.has(pfn);
    const nopage = isMemory && sys.vmemmap.hostState(pfn) === PKVM_NOPAGE;
    if (isValid(leaf.lo)) return nopage;
    const entry = decodeInvalidEntry(pgt.format, leaf.lo, leaf.hi);
    const annotated = entry.kind === 'annotation' && entry.type === INVALID_TYPE_HOST_DONATION && leaf.level === LAST_LEVEL;
    if (!annotated) return nopage;
    if (isMemory) return !nopage;
    return entry.kind !== 'annotation' || entry.owner !== PKVM_ID_HYP || sys.hyp.hypS1.get(pfn) !== 'device';
  }

  wellFormedMayFail(d: StepDelta): boolean {
    const sys = this.sys;
    if (this.refcountsOrFaultsBad(sys.hostS2.pgt, this.host, d.host)) return true;
    for (const [vm, u] of d.guests) {
      const guest = sys.hyp.vms.get(vm);
      // A VM gone in the step took its tree with it (what it gave back shows in the pages and the host tree).
      if (guest === undefined) continue;
      const index = this.guests.get(vm);
      if (u === undefined || index === undefined || this.refcountsOrFaultsBad(guest.pgt, index, u)) return true;
    }
    for (const pfn of d.pfns) if (this.hostPageBad(pfn)) return true;
    // A new valid block may cover a page the host lost (a page in its boot state is the host's).
    for (const c of d.host.changes) {
      if (!isValid(c.lo)) continue;
      const size = levelSize(sys.hostS2.pgt.granule, c.level);
      if (size > PAGE && this.blockCoversNopage(c.ia, size)) return true;
    }
    return false;
  }

  private blockCoversNopage(ia: number, size: number): boolean {
    const vmemmap = this.sys.vmemmap;
    return this.rangeHas(ia, size, (pfn) => vmemmap.has(pfn) && vmemmap.hostState(pfn) === PKVM_NOPAGE, { count: vmemmap.nonDefaultCount, pfns: () => vmemmap.nonDefault() });
  }

  /** Per VM, its metadata and pool page counts as one number (each count is far below 2^20). */
  private vmPageCounts(): Map<number, number> {
    const counts = new Map<number, number>();
    for (const [vm, guest] of this.sys.hyp.vms) counts.set(vm, guest.metadataPages.length * 2 ** 20 + guest.pool.owned.length);
    return counts;
  }

  /**
   * Pool accounting. When a VM's page counts move (a VM made or torn down, its pool grown or
   * shrunk), the full check's rules run on the indexes: every VM page held once, every table
   * below a root from its VM's pool. Otherwise only the tables the step linked are looked at; a
   * page swapped for another at equal counts is left to the periodic full check.
   */
  poolsMayFail(d: StepDelta, poolPages: number): boolean {
    const sys = this.sys;
    if (sys.hostS2Pool.allocatedBytes !== this.host.size * PAGE) return true;
    const claimed = d.vmPagesMoved ? new Set<number>() : undefined;
    const claim = (pages: readonly number[]): boolean => {
      for (const page of pages) {
        if (claimed?.has(page) === true) return false;
        claimed?.add(page);
      }
      return true;
    };
    let held = 0;
    for (const [vm, guest] of sys.hyp.vms) {
      held += guest.metadataPages.length + guest.pool.owned.length;
      const u = d.guests.get(vm);
      const index = this.guests.get(vm);
      if (u === undefined || index === undefined) return true;
      if (claimed !== undefined) {
        if (!claim(guest.metadataPages) || !claim(guest.pool.owned)) return true;
        const owned = new Set(guest.pool.owned);
        for (const page of index.childPages()) if (!owned.has(page)) return true;
      } else if (u.linked.length > 0) {
        const owned = new Set(guest.pool.owned);
        if (u.linked.some((page) => !owned.has(page))) return true;
      }
    }
    return sys.memcache.available + held !== poolPages;
  }

  /**
   * DMA isolation (issue 11 / 13): a page the host may not reach, or one of the hypervisor's SMMU
   * structures, reached by the DMA stage-2 or by a cached entry. New such pairs need a newly
   * forbidden or protected page, a new DMA stage-2 leaf, or a new cache fill.
   */
  dmaIsolationMayFail(log: StepLog, d: StepDelta, post: ModelState): boolean {
    const sys = this.sys;
    const parts = sys.iommu;
    if (parts === undefined) return false;
    const protectedNow = d.protectedPages;
    const banned = (pfn: number) => post.host.get(pfn) === 'NOPAGE' || protectedNow.has(pfn);
    const candidates: Candidates = { count: post.host.size + protectedNow.size, pfns: () => [...post.host.keys(), ...protectedNow] };
    const fresh: number[] = d.pfns.filter((pfn) => post.host.get(pfn) === 'NOPAGE');
    fresh.push(...d.newlyProtected);
    if (fresh.length > 0) {
      const entries = [...parts.smmu.cachedTranslations(), ...parts.smmu.cachedS1Translations(), ...[...parts.devices.values()].flatMap((dev) => dev.atcEntries())];
      for (const pfn of fresh) {
        const pa = pfn * PAGE;
        if (parts.dmaStage2?.translate(pa) !== undefined) return true;
        if (entries.some((e) => pa >= e.pa && pa < e.pa + e.size)) return true;
      }
    }
    if (d.dma === undefined && !this.dmaIsHost && parts.dmaStage2 !== undefined) return true;
    if (d.dma !== undefined) {
      if (d.dma.faults.length > 0) return true;
      for (const c of d.dma.changes) {
        if (!isValid(c.lo)) continue;
        // Identity map: IA = PA for the idmap; the host stage-2 is identity for the host too.
        const size = levelSize(this.dmaGranule, c.level);
        if (this.rangeHas(c.ia, size, banned, candidates)) return true;
      }
    }
    for (const f of log.cacheFills) {
      const reach = reachOf(f);
      if (reach !== undefined && this.rangeHas(reach.pa, reach.size, banned, candidates)) return true;
    }
    return false;
  }

  /** DMA availability: a page the host owns must stay mapped read/write in the DMA stage-2. */
  dmaAvailabilityMayFail(d: StepDelta, post: ModelState, hotPfns: readonly number[]): boolean {
    const table = this.sys.iommu?.dmaStage2;
    if (table === undefined) return false;
    const bad = (pfn: number): boolean => {
      if (!dmaMustReach(post, pfn)) return false;
      const t = table.translate(pfn * PAGE);
      return t === undefined || !t.read || !t.write;
    };
    // The full check looks at the hot pages and the pages the model names.
    const watched = (pfn: number) => hotPfns.includes(pfn) || post.host.has(pfn);
    for (const pfn of d.pfns) if (watched(pfn) && bad(pfn)) return true;
    const watchedPfns: Candidates = { count: hotPfns.length + post.host.size, pfns: () => [...hotPfns, ...post.host.keys()] };
    if (d.dma === undefined) return !this.dmaIsHost;
    for (const c of d.dma.changes) {
      if (c.oldLo === 0 && c.oldHi === 0) continue;
      const size = levelSize(this.dmaGranule, c.level);
      if (this.rangeHas(c.ia, size, (pfn) => watched(pfn) && bad(pfn), watchedPfns)) return true;
    }
    return false;
  }
}

/** The output range a filled TLB, combined or ATC entry reaches (walk caches hold table addresses, not data). */
function reachOf(f: CachedEntry): { pa: number; size: number } | undefined {
  switch (f.cache) {
    case 'tlb':
    case 's1_tlb':
    case 'atc':
      return { pa: f.entry.pa, size: f.entry.size };
    case 'walk':
    case 's1_walk':
    case 'ste':
    case 'l1std':
    case 'cd':
      return undefined;
    default: {
      const never: never = f;
      return never;
    }
  }
}
