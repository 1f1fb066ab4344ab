/**
 * Test bench for the SMMU model (used by the tests only): a small machine, a driver-like helper
 * that programs registers, stream tables, stage-2 tables and the command queue, all written as
 * plain memory stores so that what the SMMU observes is exactly what a host would produce.
 */
import { GRANULE_4K, type Granule, LAST_LEVEL, levelSize } from '../../arch/granule.js';
import { PhysicalMemory } from '../../arch/physical-memory.js';
import { type S2Format, type S2LeafAttrs, encodeLeafDesc, encodeTableDesc, s2Format } from '../../arch/s2-descriptor.js';
import { type Command, encodeCommand } from '../../arch/smmu/commands.js';
import { type DecodedEvent, decodeEvent } from '../../arch/smmu/events.js';
import { CR0_CMDQEN, CR0_EVTQEN, CR0_SMMUEN, CR2_RECINVSID, REG } from '../../arch/smmu/registers.js';
import { type SteFields, encodeL1std, encodeSte, steFields } from '../../arch/smmu/ste.js';
import { type U64, u64 } from '../../arch/u64.js';
import { type FillPolicy, type SmmuMode, Smmu } from './smmu.js';
import { type SmmuFeatures } from './features.js';

export const RAM_BASE = 0x4000_0000;
export const RAM_SIZE = 0x4000_0000;
export const MMIO_BASE = 0x0900_0000;
export const SMMU_BASE = 0x0900_0000;
export const STRTAB = 0x4000_0000;
export const CMDQ = 0x4010_0000;
export const EVTQ = 0x4011_0000;
export const TABLE_POOL = 0x4100_0000;
export const DATA = 0x5000_0000;
export const MSI_TARGET = 0x4012_0000;

export function makeMemory(): PhysicalMemory {
  return new PhysicalMemory([
    { name: 'mmio', kind: 'mmio', base: MMIO_BASE, size: 0x0100_0000 },
    { name: 'ram', kind: 'ram', base: RAM_BASE, size: RAM_SIZE },
  ]);
}

export interface BenchOptions {
  readonly mode?: SmmuMode;
  readonly features?: Partial<SmmuFeatures>;
  readonly fills?: Partial<FillPolicy>;
  /** log2 of the command queue entries (default 8). */
  readonly cmdqLog2?: number;
  readonly evtqLog2?: number;
  /** Stream table: linear with 2^log2 entries, or 2-level with the given SPLIT. */
  readonly strtab?: { readonly log2: number; readonly split?: number };
  /** Leave the SMMU disabled. */
  readonly noEnable?: boolean;
}

export interface S2Config {
  readonly vmid: number;
  readonly ttb: number;
  /** Default 25 (39-bit IPA, 4K: start level 1). */
  readonly t0sz?: number;
  readonly sl0?: number;
  readonly tg?: number;
  readonly ps?: number;
  readonly s2r?: boolean;
  readonly affd?: boolean;
  readonly eats?: number;
}

export function s2SteFields(c: S2Config): SteFields {
  return steFields({
    v: true,
    config: 0b110,
    s2vmid: c.vmid,
    s2t0sz: c.t0sz ?? 25,
    s2sl0: c.sl0 ?? 1,
    s2tg: c.tg ?? 0,
    s2ps: c.ps ?? 5,
    s2aa64: true,
    s2r: c.s2r ?? true,
    s2affd: c.affd ?? false,
    eats: c.eats ?? 0,
    s2ttb: c.ttb,
  });
}

export const RW: S2LeafAttrs = { memAttr: 0xf, read: true, write: true, sh: 3, af: true, fnxs: false, nT: false, dbm: false, contiguous: false, xn: 0, sw: 0, pbha: 0 };
export const RO: S2LeafAttrs = { ...RW, write: false };

export class SmmuBench {
  readonly memory: PhysicalMemory;
  readonly smmu: Smmu;
  private nextTable = TABLE_POOL;
  readonly cmdqLog2: number;
  readonly evtqLog2: number;
  private evtqRead = 0;

  constructor(options: BenchOptions = {}) {
    this.memory = makeMemory();
    this.smmu = new Smmu(this.memory, { base: SMMU_BASE, mode: options.mode ?? 'strict', features: options.features ?? {}, fills: options.fills ?? {} });
    this.cmdqLog2 = options.cmdqLog2 ?? 8;
    this.evtqLog2 = options.evtqLog2 ?? 6;
    const strtab = options.strtab ?? { log2: 8 };
    const cfg = strtab.split === undefined ? strtab.log2 : (1 << 16) | (strtab.split << 6) | strtab.log2;
    this.reg('STRTAB_BASE', STRTAB);
    this.reg('STRTAB_BASE_CFG', cfg);
    this.reg('CMDQ_BASE', CMDQ | this.cmdqLog2);
    this.reg('CMDQ_PROD', 0);
    this.reg('CMDQ_CONS', 0);
    this.reg('EVTQ_BASE', EVTQ | this.evtqLog2);
    this.reg('EVTQ_PROD', 0);
    this.reg('EVTQ_CONS', 0);
    this.reg('CR2', CR2_RECINVSID);
    if (options.noEnable !== true) this.reg('CR0', CR0_SMMUEN | CR0_EVTQEN | CR0_CMDQEN);
  }

  reg(name: keyof typeof REG, value: number): void {
    this.memory.write32(SMMU_BASE + REG[name], value);
  }

  read(name: keyof typeof REG): number {
    return this.memory.read32(SMMU_BASE + REG[name]);
  }

  // --- Stream table ---

  writeSteWords(addr: number, words: readonly U64[]): void {
    words.forEach((w, i) => this.memory.store64(addr + i * 8, w.lo, w.hi));
  }

  /** Linear stream table entry. */
  writeSte(sid: number, fields: SteFields): void {
    this.writeSteWords(STRTAB + sid * 64, encodeSte(fields));
  }

  writeL1(index: number, span: number, l2ptr: number): void {
    const d = encodeL1std({ span, l2ptr });
    this.memory.store64(STRTAB + index * 8, d.lo, d.hi);
  }

  // --- Stage-2 tables (any granule) ---

  allocTable(g: Granule = GRANULE_4K, pages = 1): number {
    const bytes = g.size * pages;
    this.nextTable = Math.ceil(this.nextTable / bytes) * bytes;
    const pa = this.nextTable;
    this.nextTable += bytes;
    this.memory.zero(pa, bytes);
    return pa;
  }

  /**
   * Installs a leaf for `ipa` at `level` under the table at `root` (start level `start`),
   * creating intermediate tables as needed.
   */
  map(root: number, start: number, ipa: number, level: number, pa: number, attrs: S2LeafAttrs = RW, g: Granule = GRANULE_4K, topEntries = g.entriesPerTable): void {
    const fmt = s2Format(g);
    let table = root;
    for (let l = start; l < level; l++) {
      const ptep = this.ptep(table, ipa, l, l === start ? topEntries : g.entriesPerTable, g);
      const cur = this.memory.peek64(ptep);
      if ((cur.lo & 3) === 3) {
        table = this.tableOf(fmt, cur.lo, cur.hi);
      } else {
        const next = this.allocTable(g);
        const d = encodeTableDesc(fmt, next);
        this.memory.store64(ptep, d.lo, d.hi);
        table = next;
      }
    }
    const d = encodeLeafDesc(fmt, level, pa, attrs);
    this.memory.store64(this.ptep(table, ipa, level, level === start ? topEntries : g.entriesPerTable, g), d.lo, d.hi);
  }

  /** Address of the descriptor for `ipa` at `level` in the table at `table`. */
  ptep(table: number, ipa: number, level: number, entries: number, g: Granule = GRANULE_4K): number {
    return table + (Math.floor(ipa / levelSize(g, level)) % entries) * 8;
  }

  /** Walks from root to `level` and returns the descriptor address (tables must exist). */
  descAddr(root: number, start: number, ipa: number, level: number, g: Granule = GRANULE_4K, topEntries = g.entriesPerTable): number {
    const fmt = s2Format(g);
    let table = root;
    for (let l = start; l < level; l++) {
      const cur = this.memory.peek64(this.ptep(table, ipa, l, l === start ? topEntries : g.entriesPerTable, g));
      table = this.tableOf(fmt, cur.lo, cur.hi);
    }
    return this.ptep(table, ipa, level, level === start ? topEntries : g.entriesPerTable, g);
  }

  private tableOf(fmt: S2Format, lo: number, hi: number): number {
    return (hi & 0xffff) * 0x1_0000_0000 + ((lo & ~(fmt.granule.size - 1)) >>> 0);
  }

  clear(ptep: number): void {
    this.memory.store64(ptep, 0, 0);
  }

  // --- Command queue ---

  private prod = 0;

  /** Writes commands at PROD and publishes PROD once. */
  submit(...cmds: Command[]): void {
    for (const cmd of cmds) this.submitWords(encodeCommand(cmd, { ril: true }));
    this.reg('CMDQ_PROD', this.prod);
  }

  /** Writes raw command words without publishing PROD. */
  submitWords(words: readonly U64[]): void {
    const size = 2 ** this.cmdqLog2;
    const index = this.prod % size;
    const w0 = words[0] ?? u64(0, 0);
    const w1 = words[1] ?? u64(0, 0);
    this.memory.store64(CMDQ + index * 16, w0.lo, w0.hi);
    this.memory.store64(CMDQ + index * 16 + 8, w1.lo, w1.hi);
    this.prod = (this.prod + 1) % (size * 2);
  }

  publish(): void {
    this.reg('CMDQ_PROD', this.prod);
  }

  /** Consumes until the queue is idle or errors; returns the outcomes. */
  drain(limit = 10_000): ReturnType<Smmu['consumeOneCommand']>[] {
    const outcomes: ReturnType<Smmu['consumeOneCommand']>[] = [];
    for (let i = 0; i < limit; i++) {
      const o = this.smmu.consumeOneCommand();
      if (o.kind === 'idle') break;
      outcomes.push(o);
      if (o.kind === 'error') break;
    }
    return outcomes;
  }

  /** submit + drain. */
  run(...cmds: Command[]): ReturnType<Smmu['consumeOneCommand']>[] {
    this.submit(...cmds);
    return this.drain();
  }

  // --- Event queue ---

  /** Events written since the last call (advances EVTQ_CONS like a driver). */
  readEvents(): DecodedEvent[] {
    const out: DecodedEvent[] = [];
    const size = 2 ** this.evtqLog2;
    const prod = this.read('EVTQ_PROD') & (size * 2 - 1);
    while (this.evtqRead !== prod) {
      const slot = EVTQ + (this.evtqRead % size) * 32;
      const words = [0, 1, 2, 3].map((i) => this.memory.peek64(slot + i * 8)).map((w) => u64(w.lo, w.hi));
      out.push(decodeEvent(words));
      this.evtqRead = (this.evtqRead + 1) % (size * 2);
    }
    const ovflg = this.read('EVTQ_PROD') & 0x8000_0000;
    this.reg('EVTQ_CONS', (this.evtqRead | ovflg) >>> 0);
    return out;
  }
}

export const CMD_SYNC: Command = { kind: 'CMD_SYNC', cs: 0, msh: 0, msiattr: 0, msidata: 0, msiaddr: 0 };

export function tlbiIpa(vmid: number, address: number, r: Partial<{ leaf: boolean; tg: number; ttl: number; num: number; scale: number }> = {}): Command {
  return { kind: 'TLBI_S2_IPA', vmid, address, leaf: r.leaf ?? false, tg: r.tg ?? 0, ttl: r.ttl ?? 0, num: r.num ?? 0, scale: r.scale ?? 0, ttl128: false };
}

export { LAST_LEVEL };
