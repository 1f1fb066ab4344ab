/**
 * The abstraction function: concrete system → abstract model state (ARCHITECTURE §7.1).
 * Reads the vmemmap (host/hyp states, pins, share counts), the hypervisor stage-1 (MMIO the
 * hypervisor owns, confirmed by the host stage-2 annotation), every guest stage-2 (leaves, their
 * page state in software bits 56:55, permissions, poison annotations) and the page budgets.
 * Only pages whose vmemmap entry is not in its boot state are visited, so a step costs what the
 * run has touched, not the size of memory.
 */
import { LAST_LEVEL } from '../impl/arch/granule.js';
import { descOutputAddress } from '../impl/arch/s2-descriptor.js';
import { PKVM_ID_HYP } from '../impl/hyp/host-stage2.js';
import { PKVM_NOPAGE, PKVM_PAGE_OWNED, PKVM_PAGE_SHARED_BORROWED, PKVM_PAGE_SHARED_OWNED, type PageState } from '../impl/hyp/vmemmap.js';
import { type TableDump, dumpTable } from '../impl/pgtable/table-dump.js';
import { type System } from '../impl/system.js';
import { type GuestLeaf, type ModelConfig, type ModelState, type PageState as ModelPageState, type VmRecord } from '../model/index.js';

const STATE_NAMES: Record<PageState, ModelPageState> = {
  [PKVM_PAGE_OWNED]: 'OWNED',
  [PKVM_PAGE_SHARED_OWNED]: 'SHARED_OWNED',
  [PKVM_PAGE_SHARED_BORROWED]: 'SHARED_BORROWED',
  [PKVM_NOPAGE]: 'NOPAGE',
};

function protText(lo: number, hi: number): string {
  let p = '';
  if ((lo & (1 << 6)) !== 0) p += 'r';
  if ((lo & (1 << 7)) !== 0) p += 'w';
  if (((hi >>> 21) & 2) === 0) p += 'x';
  return p;
}

export function abstractState(sys: System, config: ModelConfig, guestDumps?: ReadonlyMap<number, TableDump>): ModelState {
  const host = new Map<number, Exclude<ModelPageState, 'OWNED'>>();
  const hyp = new Map<number, Exclude<ModelPageState, 'NOPAGE'>>();
  const pins = new Map<number, number>();
  const shareCount = new Map<number, number>();
  for (const pfn of sys.vmemmap.nonDefault()) {
    const h = STATE_NAMES[sys.vmemmap.hostState(pfn)];
    if (h !== 'OWNED') host.set(pfn, h);
    const y = STATE_NAMES[sys.vmemmap.hypState(pfn)];
    if (y !== 'NOPAGE') hyp.set(pfn, y);
    const pin = sys.vmemmap.refcount(pfn);
    if (pin !== 0) pins.set(pfn, pin);
    const share = sys.vmemmap.shareGuestCount(pfn);
    if (share !== 0) shareCount.set(pfn, share);
  }
  // MMIO has no vmemmap: ownership lives in the hyp stage-1 and the host stage-2 annotation.
  for (const [pfn, how] of sys.hyp.hypS1) {
    if (how !== 'device') continue;
    hyp.set(pfn, 'OWNED');
    const note = sys.hostS2.annotationAt(pfn * 4096);
    if (note !== undefined && note.owner === PKVM_ID_HYP) host.set(pfn, 'NOPAGE');
  }
  const vms = new Map<number, VmRecord>();
  for (const index of sys.hyp.vms.keys()) vms.set(index, abstractVm(sys, index, guestDumps?.get(index)));
  return { config, host, hyp, pins, shareCount, vms, pool: sys.memcache.available };
}

/** One guest's abstract record: its stage-2 leaves (page state in software bits 56:55, permissions, poison) and page counts. */
export function abstractVm(sys: System, index: number, dump?: TableDump): VmRecord {
  const guest = sys.hyp.vms.get(index);
  if (guest === undefined) throw new Error(`no vm ${index}`);
  const leaves = new Map<number, GuestLeaf>();
  for (const e of (dump ?? dumpTable(sys.memory, guest.pgt.root())).entries) {
    const gfn = e.ia / 4096;
    const st = guest.leafState(e.lo, e.hi);
    if (st === 'poison') {
      leaves.set(gfn, { kind: 'poison' });
      continue;
    }
    if ((e.lo & 1) === 0 || st === PKVM_NOPAGE) continue;
    const pfn = descOutputAddress(guest.pgt.format, e.lo, e.hi) / 4096;
    const state = STATE_NAMES[st];
    if (state === 'NOPAGE') continue;
    leaves.set(gfn, { kind: 'map', pfn, nrPages: e.level === LAST_LEVEL ? 1 : 512, state, prot: protText(e.lo, e.hi) });
  }
  return { handle: index, protected: guest.isProtected, leaves, metadataPages: guest.metadataPages.length, tablePages: guest.pool.owned.length };
}

/** What the abstraction function says of one page: the four per-page maps' values (absent: the default). */
export interface AbstractPage {
  readonly host: ModelPageState | undefined;
  readonly hyp: ModelPageState | undefined;
  readonly pin: number | undefined;
  readonly share: number | undefined;
}

type MutablePage = { -readonly [K in keyof AbstractPage]: AbstractPage[K] };

/** `abstractState` for one pfn, without visiting the others, written into `out` (the per-page loop of `pagesAgree` reuses one object). */
function abstractPageInto(sys: System, pfn: number, out: MutablePage): AbstractPage {
  out.host = undefined;
  out.hyp = undefined;
  out.pin = undefined;
  out.share = undefined;
  if (sys.vmemmap.has(pfn)) {
    const h = STATE_NAMES[sys.vmemmap.hostState(pfn)];
    if (h !== 'OWNED') out.host = h;
    const y = STATE_NAMES[sys.vmemmap.hypState(pfn)];
    if (y !== 'NOPAGE') out.hyp = y;
    const p = sys.vmemmap.refcount(pfn);
    if (p !== 0) out.pin = p;
    const c = sys.vmemmap.shareGuestCount(pfn);
    if (c !== 0) out.share = c;
  }
  if (sys.hyp.hypS1.get(pfn) === 'device') {
    out.hyp = 'OWNED';
    const note = sys.hostS2.annotationAt(pfn * 4096);
    if (note !== undefined && note.owner === PKVM_ID_HYP) out.host = 'NOPAGE';
  }
  return out;
}

const showValue = (v: unknown): string => (v === undefined ? '-' : typeof v === 'object' ? JSON.stringify(v) : String(v));

/**
 * Whether the pages in `pfns` abstract to what the model holds for them: what the incremental
 * refinement check asks when only those can have changed since the last equal state (a "no"
 * sends it to `diffStates`, whose lines say what differs). Runs per step: it compares values and
 * builds no text.
 */
export function pagesAgree(model: ModelState, sys: System, pfns: readonly number[]): boolean {
  const v: MutablePage = { host: undefined, hyp: undefined, pin: undefined, share: undefined };
  for (const pfn of pfns) {
    abstractPageInto(sys, pfn, v);
    if (model.host.get(pfn) !== v.host || model.hyp.get(pfn) !== v.hyp || model.pins.get(pfn) !== v.pin || model.shareCount.get(pfn) !== v.share) return false;
  }
  return true;
}

/** The differences of one VM's records (either may be absent). */
export function diffVm(vm: number, m: VmRecord | undefined, s: VmRecord | undefined, out: string[]): void {
  if (m === undefined || s === undefined) {
    out.push(`vm ${vm}: ${m === undefined ? 'absent in the model' : 'absent in the system'}`);
    return;
  }
  if (m.protected !== s.protected) out.push(`vm ${vm}: protected model ${m.protected}, system ${s.protected}`);
  if (m.metadataPages !== s.metadataPages) out.push(`vm ${vm}: metadata pages model ${m.metadataPages}, system ${s.metadataPages}`);
  if (m.tablePages !== s.tablePages) out.push(`vm ${vm}: table pages model ${m.tablePages}, system ${s.tablePages}`);
  mapDiff(`vm ${vm} leaf at gfn`, m.leaves, s.leaves, showValue, out);
}

/**
 * Whether two values show alike without showing them: the same primitive, or flat objects with
 * the same keys in the same order and the same primitive values (a "no" is settled by `show`).
 */
function showsAlike(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (let i = 0; i < ka.length; i++) {
    const k = ka[i] as string;
    if (k !== kb[i] || (a as Record<string, unknown>)[k] !== (b as Record<string, unknown>)[k]) return false;
  }
  return true;
}

function mapDiff<K, V>(what: string, expected: ReadonlyMap<K, V>, actual: ReadonlyMap<K, V>, show: (v: V | undefined) => string, out: string[]): void {
  // Equal maps are the rule (every step of a clean run): settle them without building text.
  if (expected.size === actual.size) {
    let alike = true;
    for (const [k, v] of expected) {
      if (!actual.has(k) || !showsAlike(v, actual.get(k))) {
        alike = false;
        break;
      }
    }
    if (alike) return;
  }
  const keys = new Set<K>([...expected.keys(), ...actual.keys()]);
  for (const k of [...keys].sort((a, b) => Number(a) - Number(b))) {
    const e = show(expected.get(k));
    const a = show(actual.get(k));
    if (e !== a) out.push(`${what} ${typeof k === 'number' ? '0x' + k.toString(16) : String(k)}: model ${e}, system ${a}`);
  }
}

/** Readable differences between the model's state and the abstracted system state (empty: equal). */
export function diffStates(model: ModelState, system: ModelState): string[] {
  const out: string[] = [];
  mapDiff('host state of pfn', model.host, system.host, showValue, out);
  mapDiff('hyp state of pfn', model.hyp, system.hyp, showValue, out);
  mapDiff('pin count of pfn', model.pins, system.pins, showValue, out);
  mapDiff('share count of pfn', model.shareCount, system.shareCount, showValue, out);
  const vmKeys = new Set([...model.vms.keys(), ...system.vms.keys()]);
  for (const vm of vmKeys) diffVm(vm, model.vms.get(vm), system.vms.get(vm), out);
  if (model.pool !== system.pool) out.push(`hypervisor page budget: model ${model.pool}, system ${system.pool}`);
  return out;
}
