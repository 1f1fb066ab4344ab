/**
 * Replays a trace on the project's SMMU model (permissive mode, QEMU's ID registers) and on
 * QEMU, and compares what each side shows (qemu-smmuv3-peer.md §6.2):
 * - per transaction: the PA a write reached (found by its unique tag) or none; the data a read
 *   returned (data pages are seeded with their own PA, so the value names the PA);
 * - event records, in order, normalized to their architecturally defined fields;
 * - CMDQ_CONS, EVTQ_PROD, EVTQ_CONS, GERROR ^ GERRORN and CR0ACK after every register store and
 *   every transaction;
 * - at the end, every page the trace stored to or a transaction wrote (event queues excepted:
 *   their records are compared normalized).
 *
 * The model runs first; its run supplies the QEMU side with the PAs to look at (a write's tag
 * is looked for where the model put it and where a fresh walk would put it).
 */
import { paSizeFromEncoding } from '../../impl/arch/granule.js';
import { ACCESS_OK, PhysicalMemory, READ_ABORT } from '../../impl/arch/physical-memory.js';
import { type DecodedEvent, EVENT_CLASS_TT, decodeEvent } from '../../impl/arch/smmu/events.js';
import { REG, decodeAidr, decodeIdr0, decodeIdr1, decodeIdr3, decodeIdr5, decodeIidr, effectiveStrtabSplit } from '../../impl/arch/smmu/registers.js';
import { type SteFields } from '../../impl/arch/smmu/ste.js';
import { type U64, u64 } from '../../impl/arch/u64.js';
import { type SmmuFeatures, type SmmuMode, Smmu } from '../../impl/hw/smmu/index.js';
import { type IdRegisters, type QemuBoard } from './board.js';
import { hex, hex64, parseBytes, parseOkHex32 } from './qtest.js';
import { type Op, type Trace } from './trace.js';

const PAGE = 4096;
const EVT_BYTES = 32;

/** What both sides share: the board's address map and StreamIDs, QEMU's ID registers. */
export interface DiffEnv {
  readonly smmuBase: number;
  readonly ram: { readonly base: number; readonly size: number };
  /** Bytes at the top of RAM the harness owns (QEMU's idle loop and the reset scratch page): not RAM to the model. */
  readonly reservedTop: number;
  readonly sids: readonly number[];
  readonly ids: IdRegisters;
  /** PCI memory windows: a device read there that no BAR claims returns all ones (PCI master abort). */
  readonly pciWindows: readonly { readonly base: number; readonly size: number }[];
}

export function envOf(board: QemuBoard): DiffEnv {
  return { smmuBase: board.facts.smmu.base, ram: board.facts.ram, reservedTop: 2 * PAGE, sids: board.edus.map((e) => e.sid), ids: board.ids, pciWindows: board.facts.pciWindows };
}

/** The model's features from QEMU's ID registers (smmuv3-arch.md §1.2–§1.5, §1.10). */
export function featuresFromIds(ids: IdRegisters): Partial<SmmuFeatures> {
  const i0 = decodeIdr0(ids.idr0);
  const i1 = decodeIdr1(ids.idr1);
  const i3 = decodeIdr3(ids.idr3);
  const i5 = decodeIdr5(ids.idr5);
  const granules: ('4K' | '16K' | '64K')[] = [];
  if (i5.gran4k) granules.push('4K');
  if (i5.gran16k) granules.push('16K');
  if (i5.gran64k) granules.push('64K');
  return {
    granules,
    oasBits: paSizeFromEncoding(i5.oas) ?? 48,
    ril: i3.ril,
    bbml: i3.bbml,
    cohacc: i0.cohacc,
    ats: i0.ats,
    vmid16: i0.vmid16,
    twoLevelStrtab: i0.stLevel === 1,
    sev: i0.sev,
    msi: i0.msi,
    s1p: i0.s1p,
    s2p: i0.s2p,
    iidr: decodeIidr(ids.iidr),
    sidBits: i1.sidsize,
    cmdqLog2Max: i1.cmdqs,
    evtqLog2Max: i1.evtqs,
    archMinorRev: decodeAidr(ids.aidr).archMinorRev,
    gbpaResetAbort: false,
  };
}

// --- Observations ----------------------------------------------------------------------------

export type ObsKind = 'regs' | 'xfer' | 'events' | 'mem';

export interface Obs {
  readonly k: ObsKind;
  /** Index of the op after which it was taken (-1: end of trace). */
  readonly at: number;
  /** For 'mem': the page. */
  readonly page?: number;
  readonly v: string;
}

/** What the model knew about each transaction, for the QEMU side and for the filters. */
export interface ModelXfer {
  readonly at: number;
  readonly write: boolean;
  readonly iova: number;
  readonly sid: number;
  /** PAs where a write's tag may be: the model's PA and a fresh walk's. */
  readonly candidates: readonly number[];
  /** Where the read data was sunk, if the sink transfer translated. */
  readonly sinkPa: number | undefined;
  /** The model's buffer held the tag before the write (the fill translated). */
  readonly tagged: boolean;
  /** The main transaction's abort reason ('' when it translated). */
  readonly reason: string;
  /** Aborted on a permission fault with the entry already in the TLB (no walk). */
  readonly permissionOnHit: boolean;
  /** The stream's stage-2 STE has an input range (64 − S2T0SZ) wider than its effective S2PS. */
  readonly ipaWiderThanPs: boolean;
  /** A 2-level stream table whose L1STD for the stream is valid in QEMU's reading but not in the architecture's (l1StdOutsideArchitecture). */
  readonly l1StdOutsideArch: boolean;
}

/** Shadow of the stream-table base registers as the trace wrote them. */
export class StrtabShadow {
  baseLo = 0;
  baseHi = 0;
  cfg = 0;

  onStore(op: Op): void {
    if (op.t === 'reg64' && op.off === REG.STRTAB_BASE) {
      this.baseLo = op.lo;
      this.baseHi = op.hi;
    } else if (op.t === 'reg32' && op.off === REG.STRTAB_BASE) this.baseLo = op.v;
    else if (op.t === 'reg32' && op.off === REG.STRTAB_BASE + 4) this.baseHi = op.v;
    else if (op.t === 'reg32' && op.off === REG.STRTAB_BASE_CFG) this.cfg = op.v;
  }
}

/**
 * Whether the L1STD that a 2-level stream table gives `sid` is one that QEMU 10.0.2 follows
 * although the architecture makes the StreamID invalid or the L2 pointer different
 * (smmuv3-arch.md §2.1; QEMU hw/arm/smmuv3.c:677-699, hw/arm/smmuv3-internal.h:652-661):
 * Span reserved (12..31) or above SPLIT + 1, the StreamID's low bits at or beyond 2^(Span−1),
 * or L2Ptr bits QEMU keeps and the architecture ignores (bit 5, bits below the array size,
 * bits above 51). Span = 0 is invalid to both and gives C_BAD_STREAMID on both.
 */
export function l1StdOutsideArchitecture(memory: PhysicalMemory, shadow: StrtabShadow, sidBits: number, sid: number): boolean {
  const cfg = shadow.cfg;
  if (((cfg >>> 16) & 3) !== 1) return false;
  const log2size = Math.min(cfg & 0x3f, sidBits);
  if (sid >= 2 ** log2size) return false;
  const split = effectiveStrtabSplit((cfg >>> 6) & 0x1f);
  const base = ((shadow.baseLo & 0xffff_ffc0) >>> 0) + (shadow.baseHi & 0xf_ffff) * 0x1_0000_0000;
  const d = memory.peek64(base + Math.floor(sid / 2 ** split) * 8);
  const span = d.lo & 0x1f;
  if (span === 0) return false;
  if (span > 11 || span > split + 1) return true;
  if (sid % 2 ** split >= 2 ** (span - 1)) return true;
  const l2Bytes = 2 ** (span - 1) * 64;
  return (d.lo & 0x20) !== 0 || ((d.lo & 0xffff_ffc0) >>> 0) % l2Bytes !== 0 || d.hi >>> 20 !== 0;
}

export interface SideRun {
  readonly obs: readonly Obs[];
}

export interface ModelRun extends SideRun {
  readonly xfers: ReadonlyMap<number, ModelXfer>;
  /** Pages compared at the end. */
  readonly pages: readonly number[];
  /** Pages QEMU must zero before the next trace (compared pages and event queues). */
  readonly dirty: readonly number[];
  /** Whether GERROR ^ GERRORN is non-zero or GERROR moved (QEMU is restarted after). */
  readonly gerrorTouched: boolean;
}

const REGS_OBSERVED = ['CMDQ_CONS', 'EVTQ_PROD', 'EVTQ_CONS', 'GERROR', 'GERRORN', 'CR0ACK'] as const;

function regsString(v: readonly number[]): string {
  const [cons, eprod, econs, gerror, gerrorn, cr0ack] = v.map((x) => x >>> 0);
  return `CMDQ_CONS=${h(cons ?? 0)} EVTQ_PROD=${h(eprod ?? 0)} EVTQ_CONS=${h(econs ?? 0)} GERROR^N=${h(((gerror ?? 0) ^ (gerrorn ?? 0)) >>> 0)} CR0ACK=${h(cr0ack ?? 0)}`;
}

function h(n: number): string {
  return '0x' + n.toString(16);
}

/** An event record reduced to the fields the architecture defines for it (IMPLEMENTATION DEFINED Reason, STAG and UNKNOWN fields left out). */
export function normalizeEvent(ev: DecodedEvent): string {
  if (ev.kind === 'UNKNOWN') return `UNKNOWN id=${h(ev.id)}`;
  const rec = ev as unknown as Record<string, unknown>;
  const parts: string[] = [ev.kind];
  for (const key of Object.keys(rec).sort()) {
    if (key === 'kind' || key === 'reason' || key === 'stag') continue;
    // IPA is UNKNOWN unless the fault is at stage 2; SubstreamID unless SSV; TTRnW unless CLASS = TT.
    if (key === 'ipa' && rec.s2 !== true) continue;
    if (key === 'substreamId' && rec.ssv !== true) continue;
    if (key === 'ttrnw' && rec.eventClass !== EVENT_CLASS_TT) continue;
    const v = rec[key];
    if (typeof v === 'boolean') parts.push(`${key}=${v ? 1 : 0}`);
    else if (typeof v === 'number') parts.push(`${key}=${h(v)}`);
    else if (typeof v === 'object' && v !== null && 'lo' in v && 'hi' in v) parts.push(`${key}=${hex64((v as U64).lo, (v as U64).hi)}`);
  }
  return parts.join(' ');
}

/** Shadow of the values the trace wrote to the event-queue registers (both sides see the same stores). */
class QueueShadow {
  evtqBaseLo = 0;
  evtqBaseHi = 0;
  /** Next record to read, in PROD's index space (with the wrap bit). */
  evRead = 0;
  readonly evtqRanges: { base: number; bytes: number }[] = [];

  log2(): number {
    return Math.min(this.evtqBaseLo & 0x1f, 19);
  }

  base(): number {
    return ((this.evtqBaseLo & 0xffff_ffe0) >>> 0) + (this.evtqBaseHi & 0xf_ffff) * 0x1_0000_0000;
  }

  onStore(op: Op): void {
    if (op.t === 'reg64' && op.off === REG.EVTQ_BASE) {
      this.evtqBaseLo = op.lo;
      this.evtqBaseHi = op.hi;
      this.evtqRanges.push({ base: this.base(), bytes: 2 ** this.log2() * EVT_BYTES });
    } else if (op.t === 'reg32' && op.off === REG.EVTQ_BASE) {
      this.evtqBaseLo = op.v;
      this.evtqRanges.push({ base: this.base(), bytes: 2 ** this.log2() * EVT_BYTES });
    } else if (op.t === 'reg32' && op.off === REG.EVTQ_BASE + 4) {
      this.evtqBaseHi = op.v;
      this.evtqRanges.push({ base: this.base(), bytes: 2 ** this.log2() * EVT_BYTES });
    } else if (op.t === 'reg32' && op.off === REG.EVTQ_PROD) {
      this.evRead = op.v & (2 ** (this.log2() + 1) - 1);
    }
  }

  /** Slot addresses of the records between evRead and `prod`; advances evRead. */
  newSlots(prod: number): number[] {
    const log2 = this.log2();
    const size = 2 ** log2;
    const span = size * 2;
    const p = prod & (span - 1);
    const out: number[] = [];
    const base = this.base();
    for (let i = 0; this.evRead !== p && i < size; i++) {
      out.push(base + (this.evRead % size) * EVT_BYTES);
      this.evRead = (this.evRead + 1) % span;
    }
    return out;
  }
}

function eventFromBytes(b: Uint8Array): string {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const words = [0, 1, 2, 3].map((i) => u64(dv.getUint32(i * 8, true), dv.getUint32(i * 8 + 4, true)));
  return normalizeEvent(decodeEvent(words));
}

function pagesOfTrace(trace: Trace): Set<number> {
  const pages = new Set<number>([trace.helper.srcPa - (trace.helper.srcPa % PAGE), trace.helper.sinkPa - (trace.helper.sinkPa % PAGE)]);
  for (const op of trace.ops) if (op.t === 'mem64') pages.add(op.pa - (op.pa % PAGE));
  return pages;
}

function inRanges(page: number, ranges: readonly { base: number; bytes: number }[]): boolean {
  return ranges.some((r) => page + PAGE > r.base && page < r.base + r.bytes);
}

// --- Model side ------------------------------------------------------------------------------

export interface ModelMachine {
  readonly memory: PhysicalMemory;
  readonly smmu: Smmu;
}

export function newModel(env: DiffEnv, mode: SmmuMode = 'permissive'): ModelMachine {
  const memory = new PhysicalMemory([
    { name: 'smmu', kind: 'mmio', base: env.smmuBase, size: 0x2_0000 },
    { name: 'ram', kind: 'ram', base: env.ram.base, size: env.ram.size - env.reservedTop },
  ]);
  const smmu = new Smmu(memory, { base: env.smmuBase, mode, features: featuresFromIds(env.ids) });
  return { memory, smmu };
}

function modelRegs(m: ModelMachine): string {
  return regsString(REGS_OBSERVED.map((n) => m.smmu.readRegister(n)));
}

function modelBytes(memory: PhysicalMemory, pa: number, bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  const frame = bytes === PAGE && pa % PAGE === 0 ? memory.frameForRead(pa) : undefined;
  if (frame !== undefined) {
    // Frames are Uint32Arrays in host order; Node runs little-endian hosts only (x86-64, arm64).
    out.set(new Uint8Array(frame.buffer, frame.byteOffset, PAGE));
    return out;
  }
  const dv = new DataView(out.buffer);
  for (let i = 0; i < bytes; i += 4) {
    const v = memory.read32(pa + i);
    dv.setUint32(i, v === READ_ABORT ? 0 : v, true);
  }
  return out;
}

function hexBytes(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

/** `mode` is 'permissive' for the comparison; 'strict' only to show that the harness finds and shrinks differences. */
export function replayOnModel(trace: Trace, env: DiffEnv, mode: SmmuMode = 'permissive'): ModelRun {
  const m = newModel(env, mode);
  const { memory, smmu } = m;
  const obs: Obs[] = [];
  const xfers = new Map<number, ModelXfer>();
  const q = new QueueShadow();
  const strtab = new StrtabShadow();
  const buffers = env.sids.map(() => 0);
  const written = new Set<number>();
  let gerrorTouched = false;
  const transfer = (dev: number, iova: number, toRam: boolean): { pa: number | undefined; reason: string; permissionOnHit: boolean } => {
    const sid = env.sids[dev] ?? 0;
    const r = smmu.translate(sid, iova, toRam ? 'write' : 'read');
    if (r.kind === 'ok') {
      if (toRam) {
        // A write to a PA without memory is dropped on both sides: nothing to observe there.
        if (memory.write32(r.pa, buffers[dev] ?? 0) !== ACCESS_OK) return { pa: undefined, reason: 'no_memory', permissionOnHit: false };
        written.add(r.pa - (r.pa % PAGE));
      } else {
        const v = memory.read32(r.pa);
        // No RAM there: unassigned space reads as zero (QEMU 10.0.2 system/memory.c:1341-1347),
        // a PCI window without a BAR as all ones (PCI master abort); the edu BARs are never DMA targets.
        buffers[dev] = v !== READ_ABORT ? v : env.pciWindows.some((w) => r.pa >= w.base && r.pa < w.base + w.size) ? 0xffff_ffff : 0;
      }
      return { pa: r.pa, reason: '', permissionOnHit: false };
    }
    // A faulting read fills the buffer with zeros (qemu-smmuv3-peer.md §3(b)).
    if (!toRam) buffers[dev] = 0;
    const permissionOnHit = r.reason === 'permission' && smmu.cachedTranslations(sid).some((e) => iova >= e.ipa && iova < e.ipa + e.size);
    return { pa: undefined, reason: r.reason, permissionOnHit };
  };
  const oasBits = smmu.features.oasBits;
  const ipaWiderThanPs = (sid: number): boolean => {
    const e = smmu.configCacheEntries().find((c) => c.kind === 'ste' && c.sid === sid);
    if (e?.kind !== 'ste' || e.steKind !== 's2') return false;
    const f = e.ste as unknown as SteFields;
    const ps = Math.min(paSizeFromEncoding(Math.min(f.s2ps, 6)) ?? 48, oasBits, f.s2tg === 1 ? 52 : 48);
    return 64 - f.s2t0sz > ps;
  };
  const events = (at: number): void => {
    const slots = q.newSlots(smmu.readRegister('EVTQ_PROD'));
    obs.push({ k: 'events', at, v: JSON.stringify(slots.map((s) => eventFromBytes(modelBytes(memory, s, EVT_BYTES)))) });
  };
  trace.ops.forEach((op, at) => {
    switch (op.t) {
      case 'reg32':
        q.onStore(op);
        strtab.onStore(op);
        memory.write32(env.smmuBase + op.off, op.v);
        obs.push({ k: 'regs', at, v: modelRegs(m) });
        break;
      case 'reg64':
        q.onStore(op);
        strtab.onStore(op);
        memory.store64(env.smmuBase + op.off, op.lo, op.hi);
        obs.push({ k: 'regs', at, v: modelRegs(m) });
        break;
      case 'mem64':
        memory.store64(op.pa, op.lo, op.hi);
        break;
      case 'dmaw': {
        // Before the transfers: the write may itself land on the L1STD it went through.
        const l1Bad = l1StdOutsideArchitecture(memory, strtab, smmu.features.sidBits, env.sids[op.dev] ?? 0);
        memory.write32(trace.helper.srcPa, op.tag);
        transfer(op.dev, trace.helper.srcIova, false);
        const tagged = buffers[op.dev] === op.tag;
        const r = transfer(op.dev, op.iova, true);
        const fresh = smmu.walkUncached(env.sids[op.dev] ?? 0, op.iova, 'write');
        const candidates = [r.pa, fresh.kind === 'ok' ? fresh.pa : undefined].filter((x): x is number => x !== undefined && x % 4 === 0 && memory.isRam(x));
        for (const c of candidates) written.add(c - (c % PAGE));
        const sid = env.sids[op.dev] ?? 0;
        xfers.set(at, { at, write: true, iova: op.iova, sid, candidates: [...new Set(candidates)], sinkPa: undefined, tagged, reason: r.reason, permissionOnHit: r.permissionOnHit, ipaWiderThanPs: ipaWiderThanPs(sid), l1StdOutsideArch: l1Bad });
        obs.push({ k: 'xfer', at, v: !tagged ? 'unobservable' : r.pa === undefined ? 'none' : `reached ${h(r.pa)}` });
        events(at);
        obs.push({ k: 'regs', at, v: modelRegs(m) });
        break;
      }
      case 'dmar': {
        const l1Bad = l1StdOutsideArchitecture(memory, strtab, smmu.features.sidBits, env.sids[op.dev] ?? 0);
        const r = transfer(op.dev, op.iova, false);
        const data = buffers[op.dev] ?? 0;
        const sink = transfer(op.dev, trace.helper.sinkIova, true);
        const sid = env.sids[op.dev] ?? 0;
        xfers.set(at, { at, write: false, iova: op.iova, sid, candidates: [], sinkPa: sink.pa, tagged: false, reason: r.reason, permissionOnHit: r.permissionOnHit, ipaWiderThanPs: ipaWiderThanPs(sid), l1StdOutsideArch: l1Bad });
        obs.push({ k: 'xfer', at, v: sink.pa === undefined ? 'unobservable' : `data ${h(data)}` });
        events(at);
        obs.push({ k: 'regs', at, v: modelRegs(m) });
        break;
      }
      case 'evcons':
        smmu.writeRegister('EVTQ_CONS', smmu.readRegister('EVTQ_PROD'));
        obs.push({ k: 'regs', at, v: modelRegs(m) });
        break;
      default: {
        const impossible: never = op;
        throw new Error(`unknown op ${JSON.stringify(impossible)}`);
      }
    }
    const g = smmu.readRegister('GERROR');
    if (g !== 0) gerrorTouched = true;
  });
  const all = pagesOfTrace(trace);
  for (const p of written) all.add(p);
  const pages = [...all].filter((p) => !inRanges(p, q.evtqRanges) && memory.isRam(p)).sort((a, b) => a - b);
  for (const p of pages) obs.push({ k: 'mem', at: -1, page: p, v: hexBytes(modelBytes(memory, p, PAGE)) });
  const dirty = new Set(pages);
  for (const r of q.evtqRanges) for (let p = r.base - (r.base % PAGE); p < r.base + r.bytes; p += PAGE) if (memory.isRam(p)) dirty.add(p);
  return { obs, xfers, pages, dirty: [...dirty].sort((a, b) => a - b), gerrorTouched };
}

/** The hex digits of a `read` answer for a page (QEMU prints the bytes in address order, as Buffer's hex does). */
function pageHex(answer: string): string {
  if (!answer.startsWith('OK 0x') || answer.length !== 5 + 2 * PAGE) throw new Error(`unexpected page read answer: ${answer.slice(0, 60)}`);
  return answer.slice(5).toLowerCase();
}

// --- QEMU side -------------------------------------------------------------------------------

/** Pipelines requests whose answers are not needed at once. */
class Pipe {
  private lines: string[] = [];
  private sinks: ((a: string) => void)[] = [];
  constructor(private readonly board: QemuBoard) {}

  send(line: string, sink?: (answer: string) => void): void {
    this.lines.push(line);
    this.sinks.push(sink ?? (() => undefined));
  }

  async flush(): Promise<void> {
    const lines = this.lines;
    const sinks = this.sinks;
    this.lines = [];
    this.sinks = [];
    const answers = await this.board.client.batch(lines);
    answers.forEach((a, i) => (sinks[i] as (a: string) => void)(a));
  }
}

export async function replayOnQemu(board: QemuBoard, trace: Trace, model: ModelRun): Promise<SideRun> {
  const env = envOf(board);
  const base = env.smmuBase;
  const pipe = new Pipe(board);
  const obs: Obs[] = [];
  const q = new QueueShadow();
  const regs = async (at: number): Promise<void> => {
    const values: number[] = [];
    for (const n of REGS_OBSERVED) pipe.send(`readl ${hex(base + REG[n])}`, (a) => values.push(parseOkHex32(a)));
    await pipe.flush();
    obs.push({ k: 'regs', at, v: regsString(values) });
  };
  const events = async (at: number): Promise<void> => {
    let prod = 0;
    pipe.send(`readl ${hex(base + REG.EVTQ_PROD)}`, (a) => (prod = parseOkHex32(a)));
    await pipe.flush();
    const out: string[] = [];
    for (const s of q.newSlots(prod)) pipe.send(`read ${hex(s)} ${hex(EVT_BYTES)}`, (a) => out.push(eventFromBytes(parseBytes(a, EVT_BYTES))));
    await pipe.flush();
    obs.push({ k: 'events', at, v: JSON.stringify(out) });
  };
  const dma = async (dev: number, iova: number, toRam: boolean): Promise<void> => {
    await pipe.flush();
    await board.dma(dev, iova, toRam);
  };
  for (let at = 0; at < trace.ops.length; at++) {
    const op = trace.ops[at] as Op;
    switch (op.t) {
      case 'reg32':
        q.onStore(op);
        pipe.send(`writel ${hex(base + op.off)} ${hex(op.v >>> 0)}`);
        await regs(at);
        break;
      case 'reg64':
        q.onStore(op);
        pipe.send(`writeq ${hex(base + op.off)} ${hex64(op.lo, op.hi)}`);
        await regs(at);
        break;
      case 'mem64':
        pipe.send(`writeq ${hex(op.pa)} ${hex64(op.lo, op.hi)}`);
        break;
      case 'dmaw': {
        const x = model.xfers.get(at);
        pipe.send(`writel ${hex(trace.helper.srcPa)} ${hex(op.tag >>> 0)}`);
        await dma(op.dev, trace.helper.srcIova, false);
        await dma(op.dev, op.iova, true);
        let reached: number | undefined;
        for (const c of x?.candidates ?? []) pipe.send(`readl ${hex(c)}`, (a) => (reached = reached ?? (parseOkHex32(a) === op.tag >>> 0 ? c : undefined)));
        await pipe.flush();
        obs.push({ k: 'xfer', at, v: x?.tagged !== true ? 'unobservable' : reached === undefined ? 'none' : `reached ${h(reached)}` });
        await events(at);
        await regs(at);
        break;
      }
      case 'dmar': {
        const x = model.xfers.get(at);
        await dma(op.dev, op.iova, false);
        await dma(op.dev, trace.helper.sinkIova, true);
        let data = 0;
        if (x?.sinkPa !== undefined) {
          pipe.send(`readl ${hex(x.sinkPa)}`, (a) => (data = parseOkHex32(a)));
          await pipe.flush();
        }
        obs.push({ k: 'xfer', at, v: x?.sinkPa === undefined ? 'unobservable' : `data ${h(data)}` });
        await events(at);
        await regs(at);
        break;
      }
      case 'evcons': {
        let prod = 0;
        pipe.send(`readl ${hex(base + REG.EVTQ_PROD)}`, (a) => (prod = parseOkHex32(a)));
        await pipe.flush();
        pipe.send(`writel ${hex(base + REG.EVTQ_CONS)} ${hex(prod >>> 0)}`);
        await regs(at);
        break;
      }
      default: {
        const impossible: never = op;
        throw new Error(`unknown op ${JSON.stringify(impossible)}`);
      }
    }
  }
  for (const p of model.pages) pipe.send(`read ${hex(p)} ${hex(PAGE)}`, (a) => obs.push({ k: 'mem', at: -1, page: p, v: hexBytes(parseBytes(a, PAGE)) }));
  await pipe.flush();
  return { obs };
}
