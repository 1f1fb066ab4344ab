/**
 * The checks run after every operation (issue "Ownership" §4), each named so a failure says which
 * property broke. Concrete-only checks read the system; the others compare it with the model.
 */
import { LAST_LEVEL, levelSize } from '../impl/arch/granule.js';
import { INVALID_TYPE_HOST_DONATION, decodeInvalidEntry } from '../impl/arch/s2-descriptor.js';
import { PKVM_ID_HYP } from '../impl/hyp/host-stage2.js';
import { PKVM_NOPAGE } from '../impl/hyp/vmemmap.js';
import { type KvmPgtable } from '../impl/pgtable/kvm-pgtable.js';
import { type TableDump, dumpTable } from '../impl/pgtable/table-dump.js';
import { type System } from '../impl/system.js';
import { type ModelState, hostState, pfnIsMemory } from '../model/index.js';

export type CheckName =
  | 'refinement_ret'
  | 'refinement_state'
  | 'error_changes_nothing'
  | 'host_cpu_isolation'
  | 'well_formed_tables'
  | 'pool_accounting'
  | 'confidentiality'
  | 'dma_isolation'
  | 'dma_during_hypercall'
  | 'dma_availability'
  | 'smmu_config_coherent'
  | 'smmu_write_isolation'
  | 'no_host_triggered_panic';

/** The checks about the IOMMU: on a machine without an SMMU they cannot apply ("n/a", never "holds"). */
export const SMMU_CHECKS: ReadonlySet<CheckName> = new Set<CheckName>(['dma_isolation', 'dma_during_hypercall', 'dma_availability', 'smmu_config_coherent', 'smmu_write_isolation']);

/** Whether a check can say anything about a machine (with an SMMU or not). */
export function checkApplies(check: string, hasSmmu: boolean): boolean {
  return hasSmmu || !SMMU_CHECKS.has(check as CheckName);
}

export interface Violation {
  readonly check: CheckName;
  readonly message: string;
}

const PAGE = 4096;

/** The table dumps of one step, taken once and shared by every check. */
export interface TablesView {
  readonly host: TableDump;
  readonly guests: ReadonlyMap<number, TableDump>;
}

export function viewTables(sys: System): TablesView {
  return { host: dumpTable(sys.memory, sys.hostS2.pgt.root()), guests: viewGuestTables(sys) };
}

/** The guests' trees alone (the abstraction of the VMs needs no dump of the host's, the largest). */
export function viewGuestTables(sys: System): ReadonlyMap<number, TableDump> {
  const guests = new Map<number, TableDump>();
  for (const [vm, guest] of sys.hyp.vms) guests.set(vm, dumpTable(sys.memory, guest.pgt.root()));
  return guests;
}

/**
 * Host CPU isolation on the effective reach: no TLB entry of the host CPU may translate a page
 * the model says the host cannot access, and no entry may allow execution from MMIO. (Completed
 * accesses are covered by the return-value comparison of `host_access`.)
 */
export function checkHostCpuIsolation(sys: System, model: ModelState): Violation[] {
  const out: Violation[] = [];
  const limit = 2 ** model.config.layout.physShift;
  for (const [pfn, st] of model.host) {
    if (st !== 'NOPAGE') continue;
    const entry = sys.cpu.tlb.lookup(pfn * PAGE);
    if (entry !== undefined) {
      out.push({ check: 'host_cpu_isolation', message: `host TLB entry [0x${entry.base.toString(16)}, +0x${entry.size.toString(16)}) still translates pfn 0x${pfn.toString(16)}, which the host may not access` });
    }
  }
  for (const entry of sys.cpu.tlb.all()) {
    if (entry.base + entry.size > limit) out.push({ check: 'host_cpu_isolation', message: `host TLB entry at 0x${entry.base.toString(16)} beyond the PA range` });
    if (entry.exec && !pfnIsMemory(model.config.layout, entry.base / PAGE)) {
      out.push({ check: 'host_cpu_isolation', message: `host TLB entry at 0x${entry.base.toString(16)} allows execution from MMIO` });
    }
  }
  return out;
}

function checkRefcounts(pgt: KvmPgtable, dump: TableDump, what: string, out: Violation[]): void {
  for (const f of dump.faults) out.push({ check: 'well_formed_tables', message: `${what}: ${f}` });
  const reachable = new Set<number>();
  for (const t of dump.tables) {
    reachable.add(t.pa);
    if (pgt.pageCount(t.pa) !== 1 + t.nonZero) {
      out.push({ check: 'well_formed_tables', message: `${what}: table page 0x${t.pa.toString(16)} refcount ${pgt.pageCount(t.pa)}, expected ${1 + t.nonZero}` });
    }
  }
  for (const page of pgt.tablePages().keys()) {
    if (!reachable.has(page)) out.push({ check: 'well_formed_tables', message: `${what}: table page 0x${page.toString(16)} counted but unreachable (leaked)` });
  }
  for (const e of dump.entries) {
    if ((e.lo & 1) === 0 && decodeInvalidEntry(pgt.format, e.lo, e.hi).kind === 'locked') {
      out.push({ check: 'well_formed_tables', message: `${what}: entry at IA 0x${e.ia.toString(16)} left LOCKED` });
    }
  }
}

/** The index of the first element of `sorted` (ascending) that is at least `value`. */
function firstAtLeast(sorted: readonly number[], value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((sorted[mid] as number) < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Well-formed tables: every tree walks cleanly, refcounts are 1 + non-zero entries, nothing is
 * left LOCKED, and the host stage-2 annotations agree with the vmemmap (a memory page is NOPAGE
 * for the host exactly when an annotation stands for it — §9 invariant I1 — and no valid
 * mapping covers it).
 */
export function checkWellFormed(sys: System, view: TablesView): Violation[] {
  const out: Violation[] = [];
  checkRefcounts(sys.hostS2.pgt, view.host, 'host stage-2', out);
  for (const [vm, guest] of sys.hyp.vms) checkRefcounts(guest.pgt, view.guests.get(vm) as TableDump, `vm ${vm} stage-2`, out);
  const dump = view.host;
  const annotated = new Set<number>();
  // The pages the host lost, ascending: a valid leaf must cover none of them.
  const lost = sys.vmemmap.nonDefault().filter((pfn) => sys.vmemmap.hostState(pfn) === PKVM_NOPAGE);
  for (const e of dump.entries) {
    if ((e.lo & 1) !== 0) {
      const size = levelSize(sys.hostS2.pgt.granule, e.level);
      for (let i = firstAtLeast(lost, e.ia / PAGE); i < lost.length && (lost[i] as number) * PAGE < e.ia + size; i++) {
        out.push({ check: 'well_formed_tables', message: `host stage-2 maps pfn 0x${(lost[i] as number).toString(16)} (level ${e.level}) although the host state is NOPAGE` });
      }
      continue;
    }
    const entry = decodeInvalidEntry(sys.hostS2.pgt.format, e.lo, e.hi);
    if (entry.kind !== 'annotation' || entry.type !== INVALID_TYPE_HOST_DONATION || e.level !== LAST_LEVEL) continue;
    const pfn = e.ia / PAGE;
    annotated.add(pfn);
    const isMemory = sys.vmemmap.has(pfn);
    if (isMemory && sys.vmemmap.hostState(pfn) !== PKVM_NOPAGE) {
      out.push({ check: 'well_formed_tables', message: `host stage-2 annotates pfn 0x${pfn.toString(16)} but the host state is not NOPAGE` });
    }
    if (!isMemory && (entry.owner !== PKVM_ID_HYP || sys.hyp.hypS1.get(pfn) !== 'device')) {
      out.push({ check: 'well_formed_tables', message: `host stage-2 annotates MMIO pfn 0x${pfn.toString(16)} that the hypervisor does not hold` });
    }
  }
  for (const pfn of lost) {
    if (!annotated.has(pfn)) {
      out.push({ check: 'well_formed_tables', message: `pfn 0x${pfn.toString(16)} is NOPAGE for the host but carries no annotation` });
    }
  }
  return out;
}

/**
 * Pool accounting: no page leaked or used twice. The host stage-2 pool holds exactly the
 * reachable table pages; the budget pages are either in the memcache or held by exactly one VM
 * (metadata or its pool), and a VM's live tables are pages it owns.
 */
export function checkPools(sys: System, poolPages: number, view: TablesView): Violation[] {
  const out: Violation[] = [];
  const hostTables = view.host.tables.length;
  if (sys.hostS2Pool.allocatedBytes !== hostTables * PAGE) {
    out.push({ check: 'pool_accounting', message: `host stage-2 pool has ${sys.hostS2Pool.allocatedBytes / PAGE} pages out, ${hostTables} tables reachable` });
  }
  const seen = new Map<number, string>();
  const claim = (page: number, who: string) => {
    const prev = seen.get(page);
    if (prev !== undefined) out.push({ check: 'pool_accounting', message: `page 0x${page.toString(16)} held by ${prev} and ${who}` });
    seen.set(page, who);
  };
  let held = 0;
  for (const [vm, guest] of sys.hyp.vms) {
    for (const p of guest.metadataPages) claim(p, `vm ${vm} metadata`);
    for (const p of guest.pool.owned) claim(p, `vm ${vm} pool`);
    held += guest.metadataPages.length + guest.pool.owned.length;
    const owned = new Set(guest.pool.owned);
    const dump = view.guests.get(vm) as TableDump;
    for (const t of dump.tables) {
      if (t.level === guest.pgt.startLevel) continue;
      if (!owned.has(t.pa)) out.push({ check: 'pool_accounting', message: `vm ${vm}: table page 0x${t.pa.toString(16)} not from its pool` });
    }
  }
  if (sys.memcache.available + held !== poolPages) {
    out.push({ check: 'pool_accounting', message: `budget: ${sys.memcache.available} free + ${held} held by VMs != ${poolPages} pages` });
  }
  return out;
}

/** A fingerprint of the concrete state an error must not change. */
export function concreteFingerprint(sys: System, view: TablesView): string {
  const parts: string[] = [sys.vmemmap.snapshot(), [...sys.hyp.hypS1].join(';'), String(sys.memcache.available)];
  parts.push(view.host.entries.map((e) => `${e.ia}:${e.level}:${e.lo}:${e.hi}`).join(';'));
  for (const [vm, dump] of view.guests) parts.push(`vm${vm}:` + dump.entries.map((e) => `${e.ia}:${e.level}:${e.lo}:${e.hi}`).join(';'));
  return parts.join('|');
}

/** Model-side helper for traces: the host state of a page as the model sees it. */
export function modelHostState(model: ModelState, pfn: number): string {
  return hostState(model, pfn);
}
