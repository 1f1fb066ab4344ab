/**
 * The pKVM hypervisor's SMMUv3 driver as the SER-T&E series designs it (pkvm-host-s2-iommu.md
 * §6.7–§6.10): EL2 owns the SMMU (its MMIO frame is donated, its command queue and stream table
 * live in hypervisor memory); the host keeps programming what it believes is a real SMMU, and
 * every register access traps here and is emulated: IDR0 masked, shadow CMDQ and STRTAB
 * registers, CR0 passed through with its side effects (share + pin of the host's queue and stream
 * table), host commands copied, filtered and forwarded, host STEs re-shadowed (bypass → stage-2
 * over the shadow idmap, stage 1 → nested) with the hitless writer. Stage-2 TLB maintenance for
 * the idmap is issued here (range TLBI + CMD_SYNC, then TLBI_NH_ALL + CMD_SYNC).
 *
 * Choice: the series WARNs (a panic at EL2) on host accesses it does not support; this model
 * drops them and records a warning instead, so a run can go on and the warning is reported.
 */
import { E2BIG, EINVAL, ENOMEM } from '../../arch/errno.js';
import { type PhysicalMemory } from '../../arch/physical-memory.js';
import { CMD_BYTES, CS_IRQ, CS_SEV, type Command, checkCommand, decodeCommand } from '../../arch/smmu/commands.js';
import {
  CR0_CMDQEN,
  CR0_EVTQEN,
  CR0_PRIQEN,
  CR0_SMMUEN,
  GBPA_ABORT,
  REG,
  SMMU_FRAME_SIZE,
  STRTAB_FMT_2LVL,
  STRTAB_FMT_LINEAR,
  decodeStrtabBaseCfg,
  encodeCmdqBase,
  encodeStrtabBase,
  encodeStrtabBaseCfg,
  queueIncrement,
  queueIndex,
  queuePointerBits,
  registerAt,
} from '../../arch/smmu/registers.js';
import { STE_BYTES, STE_CONFIG, SHCFG_INCOMING, decodeL1std, decodeSte, encodeL1std, encodeSte, steFields } from '../../arch/smmu/ste.js';
import { type U64, bits, u64 } from '../../arch/u64.js';
import { type TablePageAllocator } from '../../pgtable/page-allocator.js';
import { type Hypervisor, type YieldPoint } from '../hypervisor.js';
import { type IoPgtableS2Regs } from '../../pgtable/io-pgtable-arm.js';
import { type IdmapTlbOps } from '../iommu/idmap.js';
import { HypCmdq } from './cmdq.js';
import { type SmmuFeatures, probeSmmu } from './probe.js';
import { type EntryAccess, type EntryUpdateKind, writeEntry } from './ste-writer.js';
import { buildS2RangeInvalidation } from './tlbi-range.js';

const PAGE = 4096;
/** IDR0 bits the host must not see (§6.10): S2P bit0, HYP bit9, MSI bit13, VMID16 bit18. */
const IDR0_HIDDEN = (1 << 0) | (1 << 9) | (1 << 13) | (1 << 18);
const CR1_TEMPLATE = 0xd75;
/** STRTAB_SPLIT used by Linux and required by the series for 2-level tables. */
const STRTAB_SPLIT = 8;
const HOST_CMDQ_MAX_SHIFT = 19;

export interface DriverOptions {
  /** Mask IDR0.ATS and force EATS = 0 in shadowed STEs (a design variant, not the series). */
  readonly hideAts?: boolean;
  /**
   * After every completed stage-2 invalidation, ATC_INV (whole span) for each stream whose
   * shadowed STE enables ATS, then CMD_SYNC (design variant `v6-atc-inv`). The ATC_INV goes out
   * only once the TLBI's CMD_SYNC completed, or the device could refill its ATC from a stale
   * SMMU TLB entry (smmuv3-arch.md §3.5); per SID since ATC_INV cannot name a VMID (v6 review,
   * PATCH 04/25, Mostafa Saleh 2026-05-11).
   */
  readonly atcInvalidation?: boolean;
  /**
   * 'range' (the series): range TLBI_S2_IPA; 'vmid': one TLBI_S12_VMALL for VMID 0 instead
   * ("just wipe the VMID", v6 review, PATCH 04/25, Jason Gunthorpe 2026-05-06).
   */
  readonly invalidation?: 'range' | 'vmid';
  /**
   * GKI style idmap: host memory mapped with the largest block sizes, and blocks split on a
   * partial unmap (the ≤ 6.13 io-pgtable split, which is not break-before-make; stage2-pgtable.md
   * / io-pgtable-arm.ts `splitOnUnmap`). The series maps memory page-granular (§6.3).
   */
  readonly idmapMemoryBlocks?: boolean;
  /**
   * The stage-2 every shadowed STE translates by: 'shadow-idmap' (the series, §6.2) or
   * 'host-stage2' — the host CPU stage-2 itself, VMID 0 (design variant `shared-cpu-s2`,
   * impl/hyp/iommu/shared-host-stage2.ts).
   */
  readonly dmaStage2?: 'shadow-idmap' | 'host-stage2';
  /** With 'host-stage2': the host stage-2 is fully populated at boot (`shared-cpu-s2-prepopulated`). */
  readonly prepopulateHostStage2?: boolean;
  /**
   * Drop (and warn about) host commands this SMMU would reject as CERROR_ILL — RESUME and
   * STALL_TERM without the stall model, PRI_RESP without PRI, ATC_INV without ATS — instead of
   * forwarding them, as the series does ("everything else passes", §6.10). A rejected command
   * stops the hypervisor's own queue, so every later TLBI times out (finding
   * `host-command-stops-hyp-queue`, properties/dma.test.ts). Not the series: a proposed fix.
   */
  readonly rejectUnsupportedCommands?: boolean;
}

/** The host's view of the emulated SMMU: shadow registers the real SMMU never sees. */
interface HostView {
  cmdqBase: U64;
  cmdqProd: number;
  cmdqCons: number;
  strtabBase: U64;
  strtabBaseCfg: number;
  evtqBase: U64;
  /** Pages of the host's queue / stream table currently shared and pinned to the hypervisor. */
  pinnedCmdq: number[];
  pinnedStrtab: number[];
}

export class HypSmmuDriver implements IdmapTlbOps {
  features: SmmuFeatures | undefined;
  cmdq: HypCmdq | undefined;
  strtab = { base: 0, fmt: STRTAB_FMT_LINEAR, log2size: 0, l2: new Map<number, number>() };
  readonly host: HostView = { cmdqBase: u64(0, 0), cmdqProd: 0, cmdqCons: 0, strtabBase: u64(0, 0), strtabBaseCfg: 0, evtqBase: u64(0, 0), pinnedCmdq: [], pinnedStrtab: [] };
  readonly warnings: string[] = [];
  /** How the runner lets hardware act while the driver waits (ARCHITECTURE §4). */
  stepHardware: (point: YieldPoint) => void = () => undefined;
  /** The stage-2 (root and VTCR fields) shadowed STEs point at: the idmap's or the host's. */
  stage2: IoPgtableS2Regs | undefined;
  /** How a live STE is moved to its new value (the hitless writer, `arm_smmu_write_entry`). */
  entryWriter: (access: EntryAccess, target: readonly U64[], sync: () => void) => EntryUpdateKind = writeEntry;
  /** Streams whose hardware STE ever had EATS != 0 (the ATC_INV targets of `atcInvalidation`). */
  readonly atsStreams = new Set<number>();

  constructor(
    private readonly memory: PhysicalMemory,
    private readonly hyp: Hypervisor,
    readonly base: number,
    private readonly pool: TablePageAllocator,
    readonly options: DriverOptions = {},
  ) {}

  private reg(offset: number): number {
    const v = this.memory.read32(this.base + offset);
    return v < 0 ? 0 : v;
  }

  private setReg(offset: number, value: number): void {
    this.memory.write32(this.base + offset, value >>> 0);
  }

  private setReg64(offset: number, value: U64): void {
    this.memory.store64(this.base + offset, value.lo, value.hi);
  }

  private warn(message: string): void {
    this.warnings.push(message);
  }

  /** Runs a driver generator to completion here, letting hardware act at each yield. */
  private inline(gen: Generator<YieldPoint, number, void>): number {
    for (;;) {
      const step = gen.next();
      if (step.done === true) return step.value;
      this.stepHardware(step.value);
    }
  }

  private *waitCr0Ack(value: number): Generator<YieldPoint, number, void> {
    for (let polls = 0; polls < 64; polls++) {
      if (this.reg(REG.CR0ACK) === value) return 0;
      yield { at: 'cr0ack_poll' };
    }
    return -110;
  }

  // --- init: donate the frame, probe, queues and table in hypervisor memory, reset ---

  *init(firmwareCoherent = true): Generator<YieldPoint, number, void> {
    for (let off = 0; off < SMMU_FRAME_SIZE; off += PAGE) {
      const pfn = (this.base + off) / PAGE;
      const r = yield* this.hyp.internal({ kind: 'host_donate_hyp_mmio', pfn }, this.hyp.hostDonateHypMmio(pfn));
      if (r !== 0) return r;
    }
    this.hyp.mmioEmulators.push({ base: this.base, size: SMMU_FRAME_SIZE, access: (offset, write, value) => this.hostRegisterAccess(offset, write, value) });
    const probe = probeSmmu({ idr0: this.reg(REG.IDR0), idr1: this.reg(REG.IDR1), idr3: this.reg(REG.IDR3), idr5: this.reg(REG.IDR5), iidr: this.reg(REG.IIDR) }, firmwareCoherent);
    if (!probe.ok) return probe.errno;
    const f = probe.features;
    this.features = f;
    const cmdqShift = Math.min(f.cmdqShift, 8);
    const cmdqBytes = Math.max(PAGE, 2 ** cmdqShift * CMD_BYTES);
    const cmdqBase = this.pool.alloc(cmdqBytes);
    if (cmdqBase === undefined) return -ENOMEM;
    this.cmdq = new HypCmdq(this.memory, this.base, cmdqBase, cmdqShift);
    // Stream table: linear up to 8 SID bits, else 2-level with SPLIT 8 and L2 tables on demand.
    if (f.twoLevelStrtab) {
      const l1Entries = 2 ** Math.max(0, f.sidBits - STRTAB_SPLIT);
      const base = this.pool.alloc(Math.max(PAGE, l1Entries * 8));
      if (base === undefined) return -ENOMEM;
      this.strtab = { base, fmt: STRTAB_FMT_2LVL, log2size: f.sidBits, l2: new Map() };
    } else {
      const base = this.pool.alloc(Math.max(PAGE, 2 ** f.sidBits * STE_BYTES));
      if (base === undefined) return -ENOMEM;
      this.strtab = { base, fmt: STRTAB_FMT_LINEAR, log2size: f.sidBits, l2: new Map() };
    }
    // Reset (§1.9 / §6.9): everything off, GBPA abort, tables and queues, CMDQEN, invalidate all.
    this.setReg(REG.CR0, 0);
    let r = yield* this.waitCr0Ack(0);
    if (r !== 0) return r;
    this.setReg(REG.GBPA, GBPA_ABORT | 0x8000_0000);
    this.setReg(REG.CR1, CR1_TEMPLATE);
    this.setReg(REG.CR2, (1 << 2) | (1 << 1));
    this.setReg64(REG.STRTAB_BASE, encodeStrtabBase({ ra: true, addr: this.strtab.base }));
    this.setReg(REG.STRTAB_BASE_CFG, encodeStrtabBaseCfg({ fmt: this.strtab.fmt, split: this.strtab.fmt === STRTAB_FMT_2LVL ? STRTAB_SPLIT : 0, log2size: this.strtab.log2size }));
    this.setReg64(REG.CMDQ_BASE, encodeCmdqBase({ ra: true, addr: cmdqBase, log2size: cmdqShift }));
    this.setReg(REG.CMDQ_PROD, 0);
    this.setReg(REG.CMDQ_CONS, 0);
    this.cmdq.reset();
    this.setReg(REG.CR0, CR0_CMDQEN);
    r = yield* this.waitCr0Ack(CR0_CMDQEN);
    if (r !== 0) return r;
    r = yield* this.cmdq.issue([{ kind: 'CFGI_ALL', ssec: false, sid: 0 }], true);
    if (r !== 0) return r;
    r = yield* this.cmdq.issue([{ kind: 'TLBI_NSNH_ALL' }], true);
    return r;
  }

  // --- stage-2 TLB maintenance for the shadow idmap (IdmapTlbOps, §6.7) ---

  /** IDR3.RIL as probed: whether a range invalidation costs a few commands or one per page. */
  get rangeInvalidation(): boolean {
    return this.features?.rangeInvalidation === true;
  }

  /** TLBIs are skipped while the emulated SMMU is disabled (bug class 11). */
  private enabled(): boolean {
    return (this.reg(REG.CR0) & CR0_SMMUEN) !== 0 && this.cmdq !== undefined;
  }

  invalidateRange(iova: number, size: number, granule: number, leaf: boolean): void {
    if (!this.enabled() || this.features === undefined) return;
    const cmdq = this.cmdq as HypCmdq;
    if (this.options.invalidation === 'vmid') {
      // One command wipes stage-2 and the nested stage-1 entries of VMID 0, so no TLBI_NH_ALL.
      this.inline(cmdq.issue([{ kind: 'TLBI_S12_VMALL', vmid: 0 }], true));
    } else {
      const cmds = buildS2RangeInvalidation({ ril: this.features.rangeInvalidation, minPageShift: 12, fullInvalidationFallback: false }, 0, iova, size, granule, leaf);
      this.inline(cmdq.issue(cmds, true));
      this.inline(cmdq.issue([{ kind: 'TLBI_NH_ALL', vmid: 0 }], true));
    }
    this.invalidateAtcs();
  }

  invalidateAll(): void {
    if (!this.enabled()) return;
    this.inline((this.cmdq as HypCmdq).issue([{ kind: 'TLBI_S12_VMALL', vmid: 0 }], true));
    this.invalidateAtcs();
  }

  /**
   * `atcInvalidation`: called after the TLBI's CMD_SYNC completed. The ATC caches the result of
   * both stages, so the stage-2 range does not bound what a nested stream cached: the whole span
   * (Size 52) is invalidated, as the review suggests ("for the whole space").
   */
  private invalidateAtcs(): void {
    if (this.options.atcInvalidation !== true || this.atsStreams.size === 0) return;
    const cmds: Command[] = [...this.atsStreams].sort((a, b) => a - b).map((sid) => ({ kind: 'ATC_INV', sid, ssv: false, ssid: 0, global: false, size: 52, address: u64(0, 0) }));
    this.inline((this.cmdq as HypCmdq).issue(cmds, true));
  }

  // --- hypervisor stream table ---

  private *steAddress(sid: number): Generator<YieldPoint, number, void> {
    if (this.strtab.fmt === STRTAB_FMT_LINEAR) return this.strtab.base + sid * STE_BYTES;
    const l1 = Math.floor(sid / 2 ** STRTAB_SPLIT);
    let l2 = this.strtab.l2.get(l1);
    if (l2 === undefined) {
      const page = this.pool.alloc(Math.max(PAGE, 2 ** STRTAB_SPLIT * STE_BYTES));
      if (page === undefined) return -ENOMEM;
      l2 = page;
      this.strtab.l2.set(l1, l2);
      // L1 descriptor: L2Ptr with Span = SPLIT + 1; published after the zeroed L2 table.
      const desc = encodeL1std({ span: STRTAB_SPLIT + 1, l2ptr: l2 });
      this.memory.store64(this.strtab.base + l1 * 8, desc.lo, desc.hi);
      const r = yield* (this.cmdq as HypCmdq).issue([{ kind: 'CFGI_STE', ssec: false, sid, leaf: false }], true);
      if (r !== 0) return r;
    }
    return l2 + (sid % 2 ** STRTAB_SPLIT) * STE_BYTES;
  }

  /** Builds the hardware STE for a host STE (`smmu_attach_stage_2`, §6.10 table). */
  shadowSte(hostWords: readonly U64[]): U64[] | number {
    const host = decodeSte(hostWords);
    const stage2 = this.stage2;
    if (!host.v || host.config === STE_CONFIG.ABORT) {
      const out = hostWords.map((w) => u64(w.lo, w.hi));
      out[2] = u64(0, 0);
      out[3] = u64(0, 0);
      return out;
    }
    if (stage2 === undefined) return -EINVAL;
    let config: number;
    if (host.config === STE_CONFIG.BYPASS) config = STE_CONFIG.S2_TRANS;
    else if (host.config === STE_CONFIG.S1_TRANS) config = STE_CONFIG.NESTED;
    else return -EINVAL;
    const v = stage2.vtcr;
    const fields = {
      ...host,
      config,
      shcfg: SHCFG_INCOMING,
      eats: this.options.hideAts === true ? 0 : host.eats,
      s2vmid: 0,
      s2t0sz: v.tsz,
      s2sl0: v.sl,
      s2ir0: v.irgn,
      s2or0: v.orgn,
      s2sh0: v.sh,
      s2tg: v.tg,
      s2ps: v.ps,
      s2aa64: true,
      s2endi: false,
      s2affd: true,
      s2ptw: true,
      s2hd: false,
      s2ha: false,
      s2s: false,
      s2r: true,
      s2ttb: stage2.vttbr,
    };
    // Dwords 2-3 are wholly the hypervisor's; dwords 4-7 (secure, realm, MPAM, S2POI) are not
    // used by a Non-secure stage-2/nested configuration here — choice: written as zero.
    const words = encodeSte(steFields({ ...fields }));
    for (let i = 4; i < 8; i++) words[i] = u64(0, 0);
    return words;
  }

  /** `smmu_reshadow_ste(sid, leaf)`. */
  *reshadowSte(sid: number, leaf: boolean): Generator<YieldPoint, number, void> {
    if (!leaf) return -EINVAL;
    if ((this.reg(REG.CR0) & CR0_SMMUEN) === 0) return -EINVAL;
    const cfg = decodeStrtabBaseCfg(this.host.strtabBaseCfg);
    if (sid >= 2 ** cfg.log2size) return -EINVAL;
    const hostWords = this.readHostSte(sid, cfg.fmt, cfg.split);
    if (typeof hostWords === 'number') return hostWords;
    const target = this.shadowSte(hostWords);
    if (typeof target === 'number') return target;
    // Added before the STE write (a device may use ATS as soon as EATS is visible) and never
    // removed: turning EATS off leaves the device's ATC as it was, so the stream keeps getting
    // ATC_INV (the SMMU delivers it whatever the STE says, §3.5).
    const shadow = decodeSte(target);
    if (shadow.v && shadow.eats !== 0) this.atsStreams.add(sid);
    const at = yield* this.steAddress(sid);
    if (at < 0) return at;
    const cmdq = this.cmdq as HypCmdq;
    let failed = 0;
    this.entryWriter(
      {
        read: (i) => this.memory.peek64(at + i * 8),
        write: (i, v) => {
          this.memory.store64(at + i * 8, v.lo, v.hi);
          this.stepHardware({ at: 'ste_store' });
        },
      },
      target,
      () => {
        const r = this.inline(cmdq.issue([{ kind: 'CFGI_STE', ssec: false, sid, leaf: true }], true));
        if (r !== 0) failed = r;
      },
    );
    return failed;
  }

  private readHostSte(sid: number, fmt: number, split: number): U64[] | number {
    const base = bits(this.host.strtabBase.lo, this.host.strtabBase.hi, 51, 6) * 64;
    let at: number;
    if (fmt === STRTAB_FMT_2LVL) {
      const l1 = decodeL1std(this.memory.peek64(base + Math.floor(sid / 2 ** split) * 8));
      if (l1.span === 0) return -E2BIG;
      if (sid % 2 ** split >= 2 ** (l1.span - 1)) return -E2BIG;
      at = l1.l2ptr + (sid % 2 ** split) * STE_BYTES;
    } else {
      at = base + sid * STE_BYTES;
    }
    const out: U64[] = [];
    for (let i = 0; i < 8; i++) out.push(this.memory.peek64(at + i * 8));
    return out;
  }

  // --- trap-and-emulate of host register accesses (§6.10 table) ---

  /** A trapped host access to the SMMU frame; returns the value read (0 for writes). */
  *hostRegisterAccess(offset: number, write: boolean, value: number): Generator<YieldPoint, number, void> {
    const loc = registerAt(offset);
    if (loc === undefined) {
      this.warn(`host ${write ? 'write' : 'read'} of unknown offset 0x${offset.toString(16)}`);
      return 0;
    }
    const name = loc.name;
    const high = loc.byteOffset === 4;
    switch (name) {
      case 'IDR0': {
        let v = this.reg(REG.IDR0) & ~IDR0_HIDDEN;
        if (this.options.hideAts === true) v &= ~(1 << 10);
        return write ? 0 : v >>> 0;
      }
      case 'IDR1':
      case 'IDR3':
      case 'IDR5':
      case 'IIDR':
      case 'AIDR':
      case 'GERROR':
        return write ? 0 : this.reg(REG[name]);
      case 'CMDQ_BASE':
        if (!write) return high ? this.host.cmdqBase.hi : this.host.cmdqBase.lo;
        if ((this.reg(REG.CR0) & CR0_CMDQEN) !== 0) {
          this.warn('CMDQ_BASE written while the command queue is enabled');
          return 0;
        }
        this.host.cmdqBase = high ? u64(this.host.cmdqBase.lo, value) : u64(value, this.host.cmdqBase.hi);
        return 0;
      case 'CMDQ_PROD':
        if (!write) return this.host.cmdqProd;
        this.host.cmdqProd = value >>> 0;
        if ((this.reg(REG.CR0) & CR0_CMDQEN) !== 0) yield* this.emulateCmdqInsert();
        return 0;
      case 'CMDQ_CONS':
        if (!write) return (this.host.cmdqCons | (this.reg(REG.CMDQ_CONS) & (0x7f << 24))) >>> 0;
        if ((this.reg(REG.CR0) & CR0_CMDQEN) === 0) this.host.cmdqCons = value >>> 0;
        return 0;
      case 'STRTAB_BASE':
        if (!write) return high ? this.host.strtabBase.hi : this.host.strtabBase.lo;
        if ((this.reg(REG.CR0) & CR0_SMMUEN) === 0) this.host.strtabBase = high ? u64(this.host.strtabBase.lo, value) : u64(value, this.host.strtabBase.hi);
        return 0;
      case 'STRTAB_BASE_CFG':
        if (!write) return this.host.strtabBaseCfg;
        if ((this.reg(REG.CR0) & CR0_SMMUEN) === 0) this.host.strtabBaseCfg = value >>> 0;
        return 0;
      case 'GBPA':
        return write ? 0 : GBPA_ABORT;
      case 'CR0':
        if (!write) return this.reg(REG.CR0);
        return yield* this.hostCr0Write(value >>> 0);
      case 'CR1':
        if (!write) return this.reg(REG.CR1);
        if (value !== CR1_TEMPLATE) this.warn(`CR1 written with 0x${value.toString(16)}, forced to the template`);
        this.setReg(REG.CR1, CR1_TEMPLATE);
        return 0;
      case 'EVTQ_BASE':
      case 'PRIQ_BASE':
        if (!write) return this.reg(REG[name] + (high ? 4 : 0));
        this.setReg(REG[name] + (high ? 4 : 0), value);
        if (name === 'EVTQ_BASE') this.host.evtqBase = high ? u64(this.host.evtqBase.lo, value) : u64(value, this.host.evtqBase.hi);
        return 0;
      case 'IRQ_CTRL':
      case 'IRQ_CTRLACK':
      case 'GERRORN':
      case 'CR0ACK':
      case 'CR2':
      case 'EVTQ_PROD':
      case 'EVTQ_CONS':
      case 'PRIQ_PROD':
      case 'PRIQ_CONS':
        if (!write) return this.reg(REG[name]);
        this.setReg(REG[name], value);
        return 0;
      default:
        this.warn(`host ${write ? 'write' : 'read'} of ${name} is not emulated`);
        return 0;
    }
  }

  /** Shares and pins [pa, pa + bytes) of host memory to the hypervisor; returns the pages or an errno. */
  private *sharePin(pa: number, bytes: number): Generator<YieldPoint, number[] | number, void> {
    const pages: number[] = [];
    const first = Math.floor(pa / PAGE);
    const last = Math.floor((pa + bytes - 1) / PAGE);
    for (let p = first; p <= last; p++) {
      let r = yield* this.hyp.internal({ kind: 'host_share_hyp', pfn: p }, this.hyp.hostShareHyp(p));
      if (r === 0) {
        r = yield* this.hyp.internal({ kind: 'hyp_pin_shared_mem', pfn: p, nrPages: 1 }, this.hyp.hypPinSharedMem(p, 1));
        if (r !== 0) yield* this.hyp.internal({ kind: 'host_unshare_hyp', pfn: p }, this.hyp.hostUnshareHyp(p));
      }
      if (r !== 0) {
        yield* this.unpinUnshare(pages);
        return r;
      }
      pages.push(p);
    }
    return pages;
  }

  private *unpinUnshare(pages: number[]): Generator<YieldPoint, void, void> {
    for (const p of pages) {
      yield* this.hyp.internal({ kind: 'hyp_unpin_shared_mem', pfn: p, nrPages: 1 }, this.hyp.hypUnpinSharedMem(p, 1));
      yield* this.hyp.internal({ kind: 'host_unshare_hyp', pfn: p }, this.hyp.hostUnshareHyp(p));
    }
    pages.length = 0;
  }

  /** CR0 write side effects in the series' order: CMDQEN, EVTQEN/PRIQEN, then SMMUEN. */
  private *hostCr0Write(value: number): Generator<YieldPoint, number, void> {
    const old = this.reg(REG.CR0);
    let next = value;
    if ((value & CR0_CMDQEN) !== 0 && (old & CR0_CMDQEN) === 0) {
      const log2 = Math.min(bits(this.host.cmdqBase.lo, this.host.cmdqBase.hi, 4, 0), HOST_CMDQ_MAX_SHIFT);
      const base = bits(this.host.cmdqBase.lo, this.host.cmdqBase.hi, 51, 5) * 32;
      const pinned = yield* this.sharePin(base, 2 ** log2 * CMD_BYTES);
      if (typeof pinned === 'number') {
        this.warn(`host command queue at 0x${base.toString(16)} cannot be shared (${pinned})`);
        next &= ~CR0_CMDQEN;
      } else {
        this.host.pinnedCmdq = pinned;
      }
    } else if ((value & CR0_CMDQEN) === 0 && (old & CR0_CMDQEN) !== 0) {
      // Passed through: the real queue stops too, and with it the hypervisor's TLB maintenance,
      // which is skipped while the emulated SMMU is disabled (bug class 11).
      yield* this.unpinUnshare(this.host.pinnedCmdq);
    }
    if ((value & (CR0_EVTQEN | CR0_PRIQEN)) !== (old & (CR0_EVTQEN | CR0_PRIQEN)) && (old & (CR0_EVTQEN | CR0_PRIQEN)) !== 0) {
      this.warn('disabling the event or PRI queue is not supported');
    }
    if ((value & CR0_SMMUEN) !== 0 && (old & CR0_SMMUEN) === 0) {
      if ((value & CR0_CMDQEN) === 0) {
        this.warn('SMMUEN without CMDQEN');
        next &= ~CR0_SMMUEN;
      } else {
        const cfg = decodeStrtabBaseCfg(this.host.strtabBaseCfg);
        const base = bits(this.host.strtabBase.lo, this.host.strtabBase.hi, 51, 6) * 64;
        const ok = cfg.fmt === STRTAB_FMT_2LVL ? cfg.split === STRTAB_SPLIT && cfg.log2size <= (this.features?.sidBits ?? 0) : cfg.fmt === STRTAB_FMT_LINEAR && cfg.log2size <= (this.features?.sidBits ?? 0);
        const bytes = cfg.fmt === STRTAB_FMT_2LVL ? 2 ** Math.max(0, cfg.log2size - cfg.split) * 8 : 2 ** cfg.log2size * STE_BYTES;
        const pinned = ok ? yield* this.sharePin(base, bytes) : -EINVAL;
        if (typeof pinned === 'number') {
          this.warn(`host stream table refused (${pinned})`);
          next &= ~CR0_SMMUEN;
        } else {
          this.host.pinnedStrtab = pinned;
        }
      }
    } else if ((value & CR0_SMMUEN) === 0 && (old & CR0_SMMUEN) !== 0) {
      yield* this.unpinUnshare(this.host.pinnedStrtab);
    }
    this.setReg(REG.CR0, next);
    return 0;
  }

  /** `smmu_emulate_cmdq_insert`: copy, filter and forward the host's new commands, then wait. */
  private *emulateCmdqInsert(): Generator<YieldPoint, number, void> {
    const log2 = Math.min(bits(this.host.cmdqBase.lo, this.host.cmdqBase.hi, 4, 0), HOST_CMDQ_MAX_SHIFT);
    const base = bits(this.host.cmdqBase.lo, this.host.cmdqBase.hi, 51, 5) * 32;
    const cmdq = this.cmdq as HypCmdq;
    let cons = queuePointerBits(this.host.cmdqCons, log2);
    const prod = queuePointerBits(this.host.cmdqProd, log2);
    const forwarded: Command[] = [];
    for (let guard = 0; cons !== prod && guard < 2 ** log2; guard++) {
      const at = base + queueIndex(cons, log2) * CMD_BYTES;
      const words = [this.memory.peek64(at), this.memory.peek64(at + 8)];
      const decoded = decodeCommand(words);
      const out = decoded.kind === 'illegal' ? undefined : yield* this.filterCommand(decoded);
      if (out !== undefined) forwarded.push(out);
      cons = queueIncrement(cons, log2);
    }
    this.host.cmdqCons = cons;
    if (forwarded.length === 0) return 0;
    const syncs = forwarded.filter((c) => c.kind === 'CMD_SYNC').length;
    const r = yield* cmdq.issue(forwarded, syncs === 0);
    return r;
  }

  /** The series' filter (§6.10): skip stage-2 maintenance, re-shadow on CFGI_STE, convert SYNC. */
  private *filterCommand(cmd: Command): Generator<YieldPoint, Command | undefined, void> {
    switch (cmd.kind) {
      case 'CFGI_STE': {
        const r = yield* this.reshadowSte(cmd.sid, cmd.leaf);
        if (r !== 0) {
          this.warn(`CFGI_STE for sid ${cmd.sid} refused (${r})`);
          return undefined;
        }
        return undefined; // the re-shadow issued its own CFGI_STE + CMD_SYNC
      }
      case 'CFGI_ALL':
        return cmd;
      case 'CFGI_STE_RANGE':
        this.warn('CFGI_STE_RANGE is only allowed as CFGI_ALL');
        return undefined;
      case 'TLBI_NH_ASID':
      case 'TLBI_NH_VA':
      case 'TLBI_NH_VAA':
        if (cmd.vmid !== 0) {
          this.warn(`${cmd.kind} with VMID ${cmd.vmid}`);
          return undefined;
        }
        return cmd;
      case 'TLBI_NH_ALL':
      case 'TLBI_EL2_ALL':
      case 'TLBI_EL2_VA':
      case 'TLBI_EL2_ASID':
      case 'TLBI_EL2_VAA':
      case 'TLBI_S12_VMALL':
      case 'TLBI_S2_IPA':
        this.warn(`${cmd.kind} is the hypervisor's`);
        return undefined;
      case 'CMD_SYNC':
        return cmd.cs === CS_IRQ ? { ...cmd, cs: CS_SEV, msiaddr: 0 } : cmd;
      default: {
        // Everything else passes, ATC invalidations included (§6.10: no case for them).
        const f = this.features;
        if (this.options.rejectUnsupportedCommands === true && f !== undefined) {
          const illegal = checkCommand(cmd, { s1p: f.s1p, s2p: f.s2p, hyp: f.hyp, ats: f.ats, pri: f.pri, stallModel: f.stallModel });
          if (illegal !== undefined) {
            this.warn(`${cmd.kind} dropped: ${illegal}`);
            return undefined;
          }
        }
        return cmd;
      }
    }
  }
}
