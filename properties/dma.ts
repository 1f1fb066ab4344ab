/**
 * DMA isolation (ARCHITECTURE §7.2–§7.4): hardware steps as plain data (device DMA, ATS, SMMU
 * speculative fills, evictions, command consumption) and host actions on the emulated SMMU
 * (register accesses, STE and command words), their execution, and the checks:
 *  - dma_isolation: every DMA that completes reaches a page the model lets the host reach, and
 *    after every step the effective reach of every stream — the shadow idmap, every cached SMMU
 *    TLB entry, every device ATC entry — stays within the model's allowed set;
 *  - dma_availability: a stream the host attached for identity DMA reaches every page the host
 *    owns, without a fault; a stream of a host DMA domain reaches, through an IOVA, exactly the
 *    host-owned page the host's own stage 1 maps it to;
 *  - smmu_protection: the SMMU's own structures and the hypervisor's memory are unreachable by DMA.
 */
import { CMD_BYTES } from '../impl/arch/smmu/commands.js';
import { type DmaOutcome } from '../impl/hw/device.js';
import { type System } from '../impl/system.js';
import { type ModelState, dmaMayAccess, dmaMustReach } from '../model/index.js';
import { type Violation } from './checks.js';
import { type SteUpdateMonitor } from './protocol/ste-update.js';

export type HardwareOperation =
  | { readonly kind: 'dma'; readonly sid: number; readonly addr: number; readonly access: 'read' | 'write' }
  | { readonly kind: 'ats_translate'; readonly sid: number; readonly addr: number }
  | { readonly kind: 'dma_translated'; readonly sid: number; readonly addr: number; readonly access: 'read' | 'write' }
  // A malicious ATS-capable endpoint: a transaction marked Translated with a physical address of its
  // choosing, no translation request before it (series-as-posted.md finding 1, issue 12 item 3).
  | { readonly kind: 'dma_forged_translated'; readonly sid: number; readonly pa: number; readonly access: 'read' | 'write' }
  | { readonly kind: 'smmu_speculative_fill'; readonly smmu: number; readonly sid: number; readonly addr: number }
  | { readonly kind: 'smmu_evict'; readonly smmu: number; readonly cache: 'tlb' | 'walk' | 'config' | 'all'; readonly index: number }
  | { readonly kind: 'smmu_consume'; readonly smmu: number }
  | { readonly kind: 'host_attach_identity'; readonly smmu: number; readonly sid: number }
  // A trapped host store / load of `size` bytes (default 4); a 64-bit store carries `valueHi`.
  | { readonly kind: 'host_mmio_write'; readonly smmu: number; readonly offset: number; readonly value: number; readonly size?: 1 | 2 | 4 | 8; readonly valueHi?: number }
  | { readonly kind: 'host_mmio_read'; readonly smmu: number; readonly offset: number; readonly size?: 1 | 2 | 4 | 8 }
  | { readonly kind: 'host_write_ste'; readonly smmu: number; readonly sid: number; readonly words: readonly [number, number, number, number] }
  // `count` copies of the command in one batch (default 1), then a CMD_SYNC and one PROD write.
  | { readonly kind: 'host_write_cmd'; readonly smmu: number; readonly words: readonly [number, number, number, number]; readonly count?: number }
  // The host's DMA API on a stage-1 domain of its own driver (impl/host/dma-domain.ts, issue 13):
  // attach (CD, CFGI_CD, S1 STE, CFGI_STE), map / unmap IOVA ranges (unmap: TLBI_NH_VA + SYNC),
  // detach (back to bypass, TLBI_NH_ASID). `pa` may be any address: the host's stage 1 may point
  // anywhere in its IPA space.
  | { readonly kind: 'host_domain_attach'; readonly smmu: number; readonly sid: number }
  | { readonly kind: 'host_domain_detach'; readonly smmu: number; readonly sid: number }
  | { readonly kind: 'host_domain_map'; readonly smmu: number; readonly sid: number; readonly iova: number; readonly pa: number; readonly nrPages: number; readonly write: boolean }
  | { readonly kind: 'host_domain_unmap'; readonly smmu: number; readonly sid: number; readonly iova: number; readonly nrPages: number };

export const HARDWARE_KINDS: ReadonlySet<string> = new Set<HardwareOperation['kind']>([
  'dma',
  'ats_translate',
  'dma_translated',
  'dma_forged_translated',
  'smmu_speculative_fill',
  'smmu_evict',
  'smmu_consume',
  'host_attach_identity',
  'host_mmio_write',
  'host_mmio_read',
  'host_write_ste',
  'host_write_cmd',
  'host_domain_attach',
  'host_domain_detach',
  'host_domain_map',
  'host_domain_unmap',
]);

export function isHardwareOperation(op: { readonly kind: string }): op is HardwareOperation {
  return HARDWARE_KINDS.has(op.kind);
}

/** Hardware actions that can run in the middle of a hypercall (no host or hypervisor code). */
export type ScheduledHardware = Extract<HardwareOperation, { kind: 'dma' | 'dma_translated' | 'dma_forged_translated' | 'ats_translate' | 'smmu_speculative_fill' | 'smmu_evict' | 'smmu_consume' }>;

export const SCHEDULED_KINDS: ReadonlySet<string> = new Set<ScheduledHardware['kind']>(['dma', 'dma_translated', 'dma_forged_translated', 'ats_translate', 'smmu_speculative_fill', 'smmu_evict', 'smmu_consume']);

export function isScheduledHardware(op: { readonly kind: string }): op is ScheduledHardware {
  return SCHEDULED_KINDS.has(op.kind);
}

/** What a hardware step did, for traces and the checks. */
export interface HardwareOutcome {
  /** 0 when the step completed (a DMA that reached memory, a fill that cached something). */
  readonly ret: number;
  /** For completed DMA: the physical page reached. */
  readonly reachedPfn?: number;
  readonly detail: string;
  /**
   * For a DMA on a stream of a host DMA domain: the page the host's own stage 1 sends it to, and
   * the pages of those tables and the CD. When the host owns them all, the DMA must complete.
   */
  readonly owed?: { readonly pfn: number; readonly tablePfns: readonly number[] };
}

const PAGE = 4096;

/**
 * A DMA that was translated reached its physical page, whether memory answered or the memory
 * system aborted it (an MMIO gap with no device behind it): both count as reaching the page.
 */
function dmaResult(out: DmaOutcome): HardwareOutcome {
  if (out.kind === 'completed') return { ret: 0, reachedPfn: Math.floor(out.pa / PAGE), detail: `completed at 0x${out.pa.toString(16)} via ${out.via}` };
  if (out.kind === 'external_abort') return { ret: 0, reachedPfn: Math.floor(out.pa / PAGE), detail: `reached 0x${out.pa.toString(16)}, external abort` };
  return { ret: 1, detail: `fault: ${out.reason}` };
}

/**
 * Streams the host attached for identity DMA and has not re-programmed since; `domains`: streams
 * attached to a DMA domain of the host driver, likewise untouched since.
 */
export class IdentityStreams extends Set<number> {
  readonly domains = new Set<number>();
  /**
   * No raw register write or raw command since boot: the host driver's own view of the SMMU (its queue and
   * stream-table bases) is what the emulation uses, so its domain attaches take effect.
   */
  hostDriverIntact = true;
  override clear(): void {
    super.clear();
    this.domains.clear();
  }
}

/** What the host's own stage 1 promises for a DMA on a domain stream (undefined: nothing). */
function domainObligation(sys: System, sid: number, addr: number, access: 'read' | 'write'): HardwareOutcome['owed'] {
  const domain = sys.iommu?.hostDriver.domainOf(sid);
  const pa = domain?.translates(addr, access);
  if (domain === undefined || pa === undefined) return undefined;
  return { pfn: Math.floor(pa / PAGE), tablePfns: domain.pages() };
}

export function executeHardware(sys: System, op: HardwareOperation, identity: IdentityStreams): HardwareOutcome {
  const parts = sys.iommu;
  if (parts === undefined) return { ret: -19, detail: 'no SMMU in this machine' };
  const device = (sid: number) => parts.devices.get(sid);
  const step = (p: Parameters<System['stepHardware']>[0]) => sys.stepHardware(p);
  // A switch, not ts-pattern: this runs once per hardware step (issue 15 item 1).
  switch (op.kind) {
    case 'dma': {
      const d = device(op.sid);
      if (d === undefined) return { ret: -19, detail: `no device with sid ${op.sid}` };
      const owed = identity.domains.has(op.sid) ? domainObligation(sys, op.sid, op.addr, op.access) : undefined;
      const result = dmaResult(d.dma(op.addr, op.access, 0x5a5a_5a5a));
      return owed === undefined ? result : { ...result, owed };
    }
    case 'ats_translate': {
      const d = device(op.sid);
      if (d === undefined) return { ret: -19, detail: `no device with sid ${op.sid}` };
      const r = d.atsTranslate(op.addr);
      return { ret: r.kind === 'success' ? 0 : 1, detail: `ATS ${r.kind}` };
    }
    case 'dma_translated': {
      const d = device(op.sid);
      if (d === undefined) return { ret: -19, detail: `no device with sid ${op.sid}` };
      return dmaResult(d.dmaTranslated(op.addr, op.access, 0x5a5a_5a5a));
    }
    case 'dma_forged_translated': {
      const d = device(op.sid);
      if (d === undefined) return { ret: -19, detail: `no device with sid ${op.sid}` };
      // Only an endpoint that implements ATS emits Translated transactions at all.
      if (!d.ats) return { ret: 1, detail: 'fault: the device does not implement ATS' };
      return dmaResult(d.dmaForgedTranslated(op.pa, op.access, 0x5a5a_5a5a));
    }
    case 'smmu_speculative_fill': {
      const r = parts.smmu.speculativeFill(op.sid, op.addr);
      return { ret: r.filled ? 0 : 1, detail: r.filled ? 'filled' : 'nothing to fill' };
    }
    case 'smmu_evict': {
      const n = op.cache === 'all' ? parts.smmu.evict({ cache: 'all' }) : parts.smmu.evict({ cache: op.cache, select: op.index });
      return { ret: 0, detail: `${n} evicted` };
    }
    case 'smmu_consume': {
      const r = parts.smmu.consumeOneCommand();
      return { ret: 0, detail: r.kind };
    }
    case 'host_attach_identity': {
      const d = device(op.sid);
      sys.hyp.run(parts.hostDriver.attachIdentity(op.sid, d?.ats ?? false), step);
      // Identity DMA is owed only while the host keeps its (emulated) SMMU enabled: a host that
      // turned it off made its own devices abort (GBPA), which is not an availability failure.
      if (d !== undefined && (parts.driver.host.cr0 & 1) !== 0) identity.add(op.sid);
      return { ret: 0, detail: 'attached' };
    }
    case 'host_mmio_write': {
      const size = op.size ?? 4;
      const r = sys.hyp.run(sys.hyp.hostMmioAccess(parts.hostDriver.smmuBase + op.offset, true, op.value, size, op.valueHi ?? 0), step);
      // Re-programming the SMMU may change any stream's configuration.
      identity.clear();
      identity.hostDriverIntact = false;
      const shown = size === 8 ? `0x${(op.valueHi ?? 0).toString(16)}_${op.value.toString(16).padStart(8, '0')}` : `0x${op.value.toString(16)}`;
      return { ret: r, detail: `${size * 8}-bit write ${shown} to 0x${op.offset.toString(16)}` };
    }
    case 'host_mmio_read': {
      const size = op.size ?? 4;
      const r = sys.hyp.run(sys.hyp.hostMmioAccess(parts.hostDriver.smmuBase + op.offset, false, 0, size), step);
      return { ret: r, detail: `${size * 8}-bit read 0x${sys.hyp.lastMmioRead.toString(16)} from 0x${op.offset.toString(16)}` };
    }
    case 'host_write_ste': {
      // Arbitrary words in the first four doublewords of the host's STE, then CFGI_STE + SYNC.
      const host = parts.hostDriver;
      const sid = op.sid % host.steSlots;
      const at = host.steAddress(sid);
      for (let i = 0; i < 2; i++) sys.memory.store64(at + i * 8, op.words[2 * i] as number, op.words[2 * i + 1] as number);
      identity.delete(sid);
      sys.hyp.run(host.issue([{ kind: 'CFGI_STE', ssec: false, sid, leaf: true }]), step);
      return { ret: 0, detail: 'STE written' };
    }
    case 'host_domain_attach': {
      const d = device(op.sid);
      // Negative: the host driver's own errno; anything else is the trapped PROD write's outcome.
      const r = Math.min(0, sys.hyp.run(parts.hostDriver.attachDomain(op.sid, d?.ats ?? false), step));
      identity.delete(op.sid);
      if (r === 0 && d !== undefined && identity.hostDriverIntact && (parts.driver.host.cr0 & 1) !== 0) identity.domains.add(op.sid);
      const domain = parts.hostDriver.domainOf(op.sid);
      return { ret: r, detail: r === 0 && domain !== undefined ? `attached to a DMA domain (ASID ${domain.asid}, CD table 0x${domain.cdTable.toString(16)})` : `attach failed (${r})` };
    }
    case 'host_domain_detach': {
      const d = device(op.sid);
      const r = Math.min(0, sys.hyp.run(parts.hostDriver.detachDomain(op.sid, d?.ats ?? false), step));
      identity.domains.delete(op.sid);
      if (r === 0 && d !== undefined && (parts.driver.host.cr0 & 1) !== 0) identity.add(op.sid);
      return { ret: r, detail: r === 0 ? 'detached: bypass, TLBI_NH_ASID' : `detach failed (${r})` };
    }
    case 'host_domain_map': {
      const r = Math.min(0, sys.hyp.run(parts.hostDriver.mapDma(op.sid, op.iova, op.pa, op.nrPages * PAGE, op.write), step));
      return { ret: r, detail: r === 0 ? `mapped IOVA 0x${op.iova.toString(16)} → 0x${op.pa.toString(16)} (${op.nrPages} page(s), ${op.write ? 'rw' : 'r'})` : `map failed (${r})` };
    }
    case 'host_domain_unmap': {
      const d = device(op.sid);
      const r = sys.hyp.run(parts.hostDriver.unmapDma(op.sid, op.iova, op.nrPages * PAGE, d?.ats ?? false), step);
      return { ret: r < 0 ? r : 0, detail: r < 0 ? `unmap failed (${r})` : `unmapped ${r / PAGE} page(s) at IOVA 0x${op.iova.toString(16)}` };
    }
    case 'host_write_cmd': {
      const count = op.count ?? 1;
      // Raw words (a reserved opcode stops the queue; a batch beyond the queue overruns it): the
      // host driver's later commands may never take effect.
      identity.hostDriverIntact = false;
      sys.hyp.run(parts.hostDriver.issueRaw([op.words[0], op.words[1], op.words[2], op.words[3]], count), step);
      return { ret: 0, detail: count === 1 ? `command words written (${CMD_BYTES} bytes)` : `${count} copies of the command words written in one batch` };
    }
    default: {
      const never: never = op;
      throw new Error(`unknown hardware step ${JSON.stringify(never)}`);
    }
  }
}

/** Pages the SMMU must never reach: the hypervisor's structures (queues, tables, pools). */
export function protectedPages(sys: System): number[] {
  const parts = sys.iommu;
  if (parts === undefined) return [];
  // Runs every step (the incremental DMA checks): plain loops.
  const out: number[] = [];
  const add = (pa: number): void => {
    if (pa !== 0) out.push(Math.floor(pa / PAGE));
  };
  add(parts.driver.cmdq?.base ?? 0);
  add(parts.driver.strtab.base);
  for (const pa of parts.dmaStage2?.tablePages() ?? []) add(pa);
  for (const [pa] of parts.pool.liveBlocks()) add(pa);
  return out;
}

/**
 * The effective reach check: the DMA stage-2 (the shadow idmap, or the host stage-2 in the shared
 * designs), every cached SMMU TLB entry and every ATC entry
 * must stay within what the model lets the host (and so its devices) reach.
 */
export function checkDmaIsolation(sys: System, model: ModelState): Violation[] {
  const parts = sys.iommu;
  if (parts === undefined) return [];
  const out: Violation[] = [];
  const forbidden: number[] = [];
  for (const [pfn, st] of model.host) if (st === 'NOPAGE') forbidden.push(pfn);
  // Protection: every page of the SMMU register frame belongs to the hypervisor, so no host
  // access reaches the real SMMU except through the emulation.
  for (let off = 0; off < 0x2_0000; off += PAGE) {
    const pfn = (parts.hostDriver.smmuBase + off) / PAGE;
    if (model.host.get(pfn) !== 'NOPAGE') out.push({ check: 'dma_isolation', message: `SMMU register page 0x${pfn.toString(16)} is not the hypervisor's: host accesses reach the SMMU directly` });
  }
  // Protection: the host's command queue and stream table, which the hypervisor reads while the
  // emulated SMMU is enabled, stay pinned (else the host could unshare or donate them under it).
  for (const pfn of [...parts.driver.host.pinnedCmdq, ...parts.driver.host.pinnedStrtab]) {
    if ((model.pins.get(pfn) ?? 0) < 1) out.push({ check: 'dma_isolation', message: `host page 0x${pfn.toString(16)} that the hypervisor reads (command queue or stream table) is not pinned` });
  }
  const tlb = parts.smmu.cachedTranslations();
  // Issue 13: combined S1+S2 entries of nested streams (VA → PA). The stage-1 walk cache holds the
  // next table's IPA, read through stage 2, so the DMA stage-2 check above already covers it.
  const combined = parts.smmu.cachedS1Translations();
  const atcs = [...parts.devices.values()].map((d) => ({ sid: d.sid, entries: d.atcEntries() }));
  const forbiddenSet = new Set(forbidden);
  // The page's description is only written for a violation (this loop runs on every full check).
  const what = (pfn: number): string => (forbiddenSet.has(pfn) ? `pfn 0x${pfn.toString(16)}, which the host may not access` : `pfn 0x${pfn.toString(16)} of the hypervisor's SMMU structures`);
  for (const pfn of new Set([...forbidden, ...protectedPages(sys)])) {
    const pa = pfn * PAGE;
    if (parts.dmaStage2?.translate(pa) !== undefined) out.push({ check: 'dma_isolation', message: `the ${parts.dmaStage2.name} maps ${what(pfn)}` });
    for (const e of tlb) {
      if (pa >= e.pa && pa < e.pa + e.size) out.push({ check: 'dma_isolation', message: `SMMU TLB entry (sid ${e.sid}, IPA 0x${e.ipa.toString(16)}, level ${e.level}) still reaches ${what(pfn)}` });
    }
    for (const e of combined) {
      if (pa >= e.pa && pa < e.pa + e.size) out.push({ check: 'dma_isolation', message: `combined S1+S2 TLB entry (sid ${e.sid}, ASID ${e.asid}, VA 0x${e.va.toString(16)} → 0x${e.pa.toString(16)}, ${e.size} bytes) still reaches ${what(pfn)}` });
    }
    for (const { sid, entries } of atcs) {
      for (const e of entries) {
        if (pa >= e.pa && pa < e.pa + e.size) out.push({ check: 'dma_isolation', message: `device sid ${sid} ATC entry (0x${e.base.toString(16)} → 0x${e.pa.toString(16)}) still reaches ${what(pfn)}` });
      }
    }
  }
  return out;
}

/**
 * The SMMU as a writer (issue 12): every write it made since the last check — event records, the
 * EVTQ / GERROR MSIs, the CMD_SYNC completion MSI, all untranslated — must land on a page the host
 * may access, since the host programs every queue base and MSI address the SMMU writes to (the
 * hypervisor's own queue is only read). A write inside a step may see the step's transition half
 * done, so it may land where the model allows before or after the step (as dma_during_hypercall).
 */
export function checkSmmuWrites(sys: System, pre: ModelState, post: ModelState, options: { readonly pins?: boolean } = {}): Violation[] {
  const parts = sys.iommu;
  if (parts === undefined) return [];
  const { writes, lost } = parts.smmu.writes.drain();
  const out: Violation[] = [];
  // Protection: the event queue the SMMU writes into while enabled must stay shared and pinned
  // (posted v6-era smmu_emulate_queue), else the host can give the page away under the SMMU.
  // PRI queues are not modelled (no PRI requests).
  const evtq = options.pins === false ? undefined : parts.smmu.eventQueueSpan();
  if (evtq !== undefined) {
    for (let pfn = Math.floor(evtq.base / PAGE); pfn < Math.ceil((evtq.base + evtq.bytes) / PAGE); pfn++) {
      if ((post.pins.get(pfn) ?? 0) < 1) out.push({ check: 'smmu_write_isolation', message: `event queue page 0x${pfn.toString(16)}, which the SMMU writes records into, is not pinned` });
    }
  }
  if (lost > 0) out.push({ check: 'smmu_write_isolation', message: `${lost} SMMU write(s) were dropped from the write log before the check saw them` });
  for (const w of writes) {
    for (let pfn = Math.floor(w.pa / PAGE); pfn <= Math.floor((w.pa + w.bytes - 1) / PAGE); pfn++) {
      if (dmaMayAccess(pre, pfn, 'write') || dmaMayAccess(post, pfn, 'write')) continue;
      out.push({ check: 'smmu_write_isolation', message: `the SMMU wrote ${w.bytes} bytes (${w.cause.replace(/_/g, ' ')}) at 0x${w.pa.toString(16)}: pfn 0x${pfn.toString(16)} is not accessible to the host` });
    }
  }
  return out;
}

/** A completed DMA must land on a page the model allows. */
export function checkDmaOutcome(model: ModelState, outcome: HardwareOutcome, access: 'read' | 'write'): Violation[] {
  if (outcome.reachedPfn === undefined) return [];
  if (dmaMayAccess(model, outcome.reachedPfn, access)) return [];
  return [{ check: 'dma_isolation', message: `DMA ${access} ${outcome.detail}: pfn 0x${outcome.reachedPfn.toString(16)} is not accessible to the host` }];
}

/**
 * Availability: a stream attached for identity DMA reaches every page the host owns. Checked on
 * the pages given (the generator's hot pages and every page the model has touched) through the
 * DMA stage-2, and on every DMA the run issues.
 */
export function checkDmaAvailability(sys: System, model: ModelState, pfns: readonly number[], identity: IdentityStreams, lastDma?: { sid: number; addr: number; outcome: HardwareOutcome }): Violation[] {
  if (sys.iommu?.dmaStage2 === undefined) return [];
  return [...checkDmaMappings(sys, model, pfns), ...checkLastDma(model, identity, lastDma)];
}

/** Availability of the DMA stage-2: every page the host owns among `pfns` and the model's named pages is mapped read/write. */
export function checkDmaMappings(sys: System, model: ModelState, pfns: readonly number[]): Violation[] {
  const table = sys.iommu?.dmaStage2;
  if (table === undefined) return [];
  const out: Violation[] = [];
  const pages = new Set([...pfns, ...model.host.keys()]);
  for (const pfn of pages) {
    if (!dmaMustReach(model, pfn)) continue;
    const t = table.translate(pfn * PAGE);
    if (t === undefined || !t.read || !t.write) out.push({ check: 'dma_availability', message: `the ${table.name} does not map pfn 0x${pfn.toString(16)} read/write although the host owns it` });
  }
  return out;
}

/** Availability of the step's own DMA: an identity stream reaches a host-owned page; a domain stream the page its stage 1 names. */
export function checkLastDma(model: ModelState, identity: IdentityStreams, lastDma?: { sid: number; addr: number; outcome: HardwareOutcome }): Violation[] {
  const out: Violation[] = [];
  if (lastDma !== undefined && lastDma.outcome.ret !== 0 && identity.has(lastDma.sid) && dmaMustReach(model, Math.floor(lastDma.addr / PAGE))) {
    out.push({ check: 'dma_availability', message: `DMA from identity-attached sid ${lastDma.sid} to host-owned 0x${lastDma.addr.toString(16)} faulted (${lastDma.outcome.detail})` });
  }
  // A nested stream: a page the host owns and maps in its own stage 1 (tables and CD host-owned too).
  const owed = lastDma?.outcome.owed;
  if (lastDma !== undefined && owed !== undefined && lastDma.outcome.reachedPfn !== owed.pfn && [owed.pfn, ...owed.tablePfns].every((p) => dmaMustReach(model, p))) {
    out.push({ check: 'dma_availability', message: `DMA from sid ${lastDma.sid} (host DMA domain) to IOVA 0x${lastDma.addr.toString(16)}, which the host maps to its own page 0x${(owed.pfn * PAGE).toString(16)}, ${lastDma.outcome.ret !== 0 ? 'faulted' : 'went elsewhere'} (${lastDma.outcome.detail})` });
  }
  return out;
}

export function checkSmmuConfigCoherent(sys: System, steUpdates?: SteUpdateMonitor): Violation[] {
  const parts = sys.iommu;
  if (parts === undefined) return [];
  const out: Violation[] = (steUpdates?.finish() ?? []).map((message) => ({ check: 'smmu_config_coherent', message }));
  for (const e of parts.smmu.staleConfigEntries()) {
    if (e.kind === 'ste') out.push({ check: 'smmu_config_coherent', message: `the SMMU still caches an old STE for sid ${e.sid} (${e.steKind}): the STE at 0x${e.fetchAddr.toString(16)} changed without CFGI_STE` });
    else out.push({ check: 'smmu_config_coherent', message: `the SMMU still caches an old L1 descriptor ${e.l1Index}: it changed without CFGI_STE (Leaf = 0)` });
  }
  return out;
}
