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
  for (const [index, guest] of sys.hyp.vms) {
    const leaves = new Map<number, GuestLeaf>();
    for (const e of (guestDumps?.get(index) ?? dumpTable(sys.memory, guest.pgt.root())).entries) {
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
    vms.set(index, { handle: index, protected: guest.isProtected, leaves, metadataPages: guest.metadataPages.length, tablePages: guest.pool.owned.length });
  }
  return { config, host, hyp, pins, shareCount, vms, pool: sys.memcache.available };
}

function mapDiff<K, V>(what: string, expected: ReadonlyMap<K, V>, actual: ReadonlyMap<K, V>, show: (v: V | undefined) => string, out: string[]): void {
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
  const show = (v: unknown) => (v === undefined ? '-' : typeof v === 'object' ? JSON.stringify(v) : String(v));
  mapDiff('host state of pfn', model.host, system.host, show, out);
  mapDiff('hyp state of pfn', model.hyp, system.hyp, show, out);
  mapDiff('pin count of pfn', model.pins, system.pins, show, out);
  mapDiff('share count of pfn', model.shareCount, system.shareCount, show, out);
  const vmKeys = new Set([...model.vms.keys(), ...system.vms.keys()]);
  for (const vm of vmKeys) {
    const m = model.vms.get(vm);
    const s = system.vms.get(vm);
    if (m === undefined || s === undefined) {
      out.push(`vm ${vm}: ${m === undefined ? 'absent in the model' : 'absent in the system'}`);
      continue;
    }
    if (m.protected !== s.protected) out.push(`vm ${vm}: protected model ${m.protected}, system ${s.protected}`);
    if (m.metadataPages !== s.metadataPages) out.push(`vm ${vm}: metadata pages model ${m.metadataPages}, system ${s.metadataPages}`);
    if (m.tablePages !== s.tablePages) out.push(`vm ${vm}: table pages model ${m.tablePages}, system ${s.tablePages}`);
    mapDiff(`vm ${vm} leaf at gfn`, m.leaves, s.leaves, show, out);
  }
  if (model.pool !== system.pool) out.push(`hypervisor page budget: model ${model.pool}, system ${system.pool}`);
  return out;
}
