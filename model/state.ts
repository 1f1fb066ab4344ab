/**
 * The abstract state: who may access which page, per component (§1.1), plus the counters and VM
 * records the hypercalls consult. Everything is immutable; `apply` returns new states and shares
 * what it did not change. Maps are sparse — a page in its boot state has no entry — because RAM
 * may be GiBs while an operation sequence touches a handful of pages.
 */
import type { Layout } from './layout.js';
import { PAGE_SHIFT, validateLayout } from './layout.js';
import type { Prot } from './prot.js';
import { PageMap } from './page-map.js';

/** §1.1. `NOPAGE` is the meta state "no access". */
export type PageState = 'OWNED' | 'SHARED_OWNED' | 'SHARED_BORROWED' | 'NOPAGE';
/** Guests add `POISON`: a gfn whose page was force-reclaimed by the host (§1.4, §3.11). */
export type GuestPageState = PageState | 'POISON';
/** The states a valid guest stage-2 leaf can carry in its software bits (§5). */
export type GuestMapState = 'OWNED' | 'SHARED_OWNED' | 'SHARED_BORROWED';

/** A valid guest stage-2 leaf: one page, or one 2 MiB block (only host shares make blocks, §5). */
export interface GuestMapping {
  readonly kind: 'map';
  readonly pfn: number;
  readonly nrPages: 1 | 512;
  readonly state: GuestMapState;
  readonly prot: Prot;
}

/** The POISONED invalid annotation left by a forced reclaim; always page sized. */
export interface GuestPoison {
  readonly kind: 'poison';
}

export type GuestLeaf = GuestMapping | GuestPoison;

export interface VmRecord {
  /** The name operations use; stands for the kernel handle `HANDLE_OFFSET + index`. */
  readonly handle: number;
  readonly protected: boolean;
  /** Guest stage-2 leaves keyed by their first gfn (the IPA page after u64 wrap-around). */
  readonly leaves: ReadonlyMap<number, GuestLeaf>;
  /** Pool pages taken by `init_vm` (hyp VM and vCPU structures, PGD). */
  readonly metadataPages: number;
  /** Pool pages taken for stage-2 tables: the high-water mark, see `tablePagesNeeded`. */
  readonly tablePages: number;
}

export interface ModelConfig {
  readonly layout: Layout;
  /**
   * The abstract hypervisor page budget: pages the host set aside for the hypervisor's VM
   * bookkeeping (the memcache it refills from, §3.7, §3.11). They lie outside every page the
   * operations name, so their per-page ownership is not modelled — only their number.
   */
  readonly poolPages: number;
  /** Size of the VM table (`KVM_MAX_PVMS`): vm names are 0 .. maxVms-1. */
  readonly maxVms: number;
  /** Pages `init_vm` takes for `struct pkvm_hyp_vm` and its one `pkvm_hyp_vcpu` (PGD extra). */
  readonly vmStructPages: number;
}

export interface ModelState {
  readonly config: ModelConfig;
  /** Host state per page; absent means OWNED (zeroed vmemmap, §1.1). */
  readonly host: ReadonlyMap<number, Exclude<PageState, 'OWNED'>>;
  /** Hyp state per page; absent means NOPAGE (the complement encoding, §1.1). */
  readonly hyp: ReadonlyMap<number, Exclude<PageState, 'NOPAGE'>>;
  /** `hyp_page.refcount` as used by `hyp_pin_shared_mem`; absent means 0. */
  readonly pins: ReadonlyMap<number, number>;
  /** `hyp_page.host_share_guest_count`; absent means 0. */
  readonly shareCount: ReadonlyMap<number, number>;
  readonly vms: ReadonlyMap<number, VmRecord>;
  /** Free pages of the budget. */
  readonly pool: number;
}

/** A small but realistic machine: 2 GiB + 1 GiB of RAM around a 16 MiB NOMAP carve-out. */
export function defaultConfig(): ModelConfig {
  return {
    layout: {
      physShift: 40,
      memory: [
        { base: 0x4000_0000, size: 0x8000_0000 },
        { base: 0xc000_0000, size: 0x0100_0000, nomap: true },
        { base: 0x1_0000_0000, size: 0x4000_0000 },
      ],
    },
    poolPages: 64,
    maxVms: 4,
    vmStructPages: 2,
  };
}

export function initialState(config: ModelConfig = defaultConfig()): ModelState {
  validateLayout(config.layout);
  if (!Number.isSafeInteger(config.poolPages) || config.poolPages < 0) throw new RangeError('poolPages');
  if (!Number.isSafeInteger(config.maxVms) || config.maxVms < 0) throw new RangeError('maxVms');
  if (!Number.isSafeInteger(config.vmStructPages) || config.vmStructPages < 0) throw new RangeError('vmStructPages');
  return {
    config,
    host: PageMap.empty(),
    hyp: PageMap.empty(),
    pins: PageMap.empty(),
    shareCount: PageMap.empty(),
    vms: new Map(),
    pool: config.poolPages,
  };
}

// ---- Stage-2 geometry (4 KiB granule), from the host VTCR that guests inherit (§2.1, §5) ----

/** `kvm_get_vtcr`: levels = max(2, ARM64_HW_PGTABLE_LEVELS(phys_shift - 4)). */
export function stage2Levels(config: ModelConfig): number {
  return Math.max(2, Math.floor((config.layout.physShift - 8) / 9));
}

/** Concatenated root table pages (up to 16). */
export function pgdPages(config: ModelConfig): number {
  return Math.max(1, 2 ** (config.layout.physShift - PAGE_SHIFT - 9 * stage2Levels(config)));
}

/** `kvm_mmu_cache_min_pages`: one page per non-root level — the most one leaf can need. */
export function memcacheMinPages(config: ModelConfig): number {
  return stage2Levels(config) - 1;
}

/** What `init_vm` takes from the budget. */
export function vmMetadataPages(config: ModelConfig): number {
  return config.vmStructPages + pgdPages(config);
}

/**
 * Non-root table pages a guest stage-2 holding `leaves` needs: one table per level below the
 * root down to the leaf's level, per distinct span. Poison entries are counted invalid PTEs, so
 * they keep their table alive like a mapping does.
 */
export function tablePagesNeeded(config: ModelConfig, leaves: ReadonlyMap<number, GuestLeaf>): number {
  const startLevel = 4 - stage2Levels(config);
  const tables = new Set<string>();
  for (const [gfn, leaf] of leaves) {
    const leafLevel = leaf.kind === 'map' && leaf.nrPages === 512 ? 2 : 3;
    for (let level = startLevel + 1; level <= leafLevel; level++) {
      // A level-L table spans 512^(4-L) pages.
      tables.add(`${level}:${Math.floor(gfn / 2 ** (9 * (4 - level)))}`);
    }
  }
  return tables.size;
}

// ---- Reading the state ----

export function hostState(s: ModelState, pfn: number): PageState {
  return s.host.get(pfn) ?? 'OWNED';
}

export function hypState(s: ModelState, pfn: number): PageState {
  return s.hyp.get(pfn) ?? 'NOPAGE';
}

export function pinCount(s: ModelState, pfn: number): number {
  return s.pins.get(pfn) ?? 0;
}

export function shareCountOf(s: ModelState, pfn: number): number {
  return s.shareCount.get(pfn) ?? 0;
}

/** The leaf a walk of the guest stage-2 at `gfn` ends on, with the gfn the leaf starts at. */
export function leafAt(vm: VmRecord, gfn: number): { readonly gfn: number; readonly leaf: GuestLeaf } | undefined {
  const own = vm.leaves.get(gfn);
  if (own !== undefined) return { gfn, leaf: own };
  const blockGfn = gfn - (gfn % 512);
  const block = vm.leaves.get(blockGfn);
  if (block !== undefined && block.kind === 'map' && block.nrPages === 512) return { gfn: blockGfn, leaf: block };
  return undefined;
}

/** `guest_get_page_state` (§1.4): NOPAGE for an empty slot, POISON for the poison annotation. */
export function guestState(vm: VmRecord, gfn: number): GuestPageState {
  const found = leafAt(vm, gfn);
  if (found === undefined) return 'NOPAGE';
  return found.leaf.kind === 'poison' ? 'POISON' : found.leaf.state;
}

/** The physical page a guest gfn maps, if a valid leaf covers it. */
export function guestPfn(vm: VmRecord, gfn: number): number | undefined {
  const found = leafAt(vm, gfn);
  if (found === undefined || found.leaf.kind === 'poison') return undefined;
  return found.leaf.pfn + (gfn - found.gfn);
}

// ---- Building new states (copy on write of the touched blocks, model/page-map.ts; defaults are not stored, to keep the maps sparse) ----

export function withEntries<V>(map: ReadonlyMap<number, V>, keys: Iterable<number>, value: V, defaultValue: V): ReadonlyMap<number, V> {
  const stored = value === defaultValue ? undefined : value;
  return PageMap.of(map).updated(keys, () => stored);
}

export function withCounts(map: ReadonlyMap<number, number>, keys: Iterable<number>, delta: number): ReadonlyMap<number, number> {
  return PageMap.of(map).updated(keys, (now) => {
    const n = (now ?? 0) + delta;
    return n === 0 ? undefined : n;
  });
}

export function setHost(s: ModelState, pfns: Iterable<number>, st: PageState): ModelState {
  return { ...s, host: withEntries(s.host as ReadonlyMap<number, PageState>, pfns, st, 'OWNED') as ModelState['host'] };
}

export function setHyp(s: ModelState, pfns: Iterable<number>, st: PageState): ModelState {
  return { ...s, hyp: withEntries(s.hyp as ReadonlyMap<number, PageState>, pfns, st, 'NOPAGE') as ModelState['hyp'] };
}

export function setVm(s: ModelState, vm: VmRecord): ModelState {
  const vms = new Map(s.vms);
  vms.set(vm.handle, vm);
  return { ...s, vms };
}

export function withLeaf(vm: VmRecord, gfn: number, leaf: GuestLeaf | undefined): VmRecord {
  const leaves = new Map(vm.leaves);
  if (leaf === undefined) leaves.delete(gfn);
  else leaves.set(gfn, leaf);
  return { ...vm, leaves };
}

/** [start, start + n) as an array, for the per-page loops of the hypercalls. */
export function pageRange(start: number, n: number): number[] {
  const pages = new Array<number>(n);
  for (let i = 0; i < n; i++) pages[i] = start + i;
  return pages;
}
