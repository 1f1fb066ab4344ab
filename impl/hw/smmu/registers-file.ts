/**
 * The SMMU's programming interface as storage with architectural side effects
 * (smmuv3-arch.md §1.1, §1.6, §1.7). The SMMU reacts to writes through `RegisterHooks`.
 *
 * Choices where the architecture leaves the behaviour CONSTRAINED UNPREDICTABLE:
 * - Enable/ack handshakes (CR0 → CR0ACK, IRQ_CTRL → IRQ_CTRLACK, GBPA.Update) complete at once:
 *   the write is reflected before the next access.
 * - A register "guarded" by an enable (STRTAB_BASE/_CFG and CR2 by SMMUEN, CMDQ_BASE/CONS by
 *   CMDQEN, EVTQ_BASE/PROD by EVTQEN) ignores writes while the enable is acknowledged as 1.
 * - GERRORN: only toggles of active errors are accepted; toggling an inactive error is ignored
 *   (SPEC 6.3.18 allows either activating or not).
 * - Read-only registers (IDRx, IIDR, AIDR, CR0ACK, IRQ_CTRLACK, GERROR, STATUSR) ignore writes.
 * - Every offset of the 128 KiB frame that names no modelled register (reserved, IMPLEMENTATION
 *   DEFINED, Secure, PRI queue — PRI is not implemented) reads as zero and ignores writes.
 * - RES0 bits of a register are not stored: they read as zero.
 */
import { GBPA_ABORT, GBPA_UPDATE, GERROR_MASK, REG, gerrorActive } from '../../arch/smmu/registers.js';
import { type IdRegisterValues, type SmmuFeatures } from './features.js';

export interface RegisterHooks {
  /** CR0 was written; CR0ACK already holds the new value. */
  cr0Written(previousAck: number): void;
  cmdqProdWritten(): void;
  /** GERRORN acknowledged at least one active error. */
  gerrorAcknowledged(acked: number): void;
  /** STRTAB_BASE or STRTAB_BASE_CFG changed. */
  strtabChanged(): void;
}

const CR0_SMMUEN = 1 << 0;
const CR0_EVTQEN = 1 << 2;
const CR0_CMDQEN = 1 << 3;
const CR0_ATSCHK = 1 << 4;
/** Address bits [51:32] of a 64-bit base register, as a mask of its upper half. */
const HI_ADDR = 0x000f_ffff;
/** RA / WA hint, bit 62. */
const HI_HINT = 1 << 30;
/** Queue pointer index and wrap: at most 19 index bits plus the wrap bit. */
const QUEUE_POINTER_MASK = 0x000f_ffff;
const GBPA_FIELDS = 0x001f_3f1f;
/** GBPA at reset with ABORT clear: SHCFG = 0b01 "use incoming" (QEMU's 0x1000, §1.6). */
const GBPA_RESET_BYPASS = 0x1000;

export class RegisterFile {
  readonly id: IdRegisterValues;
  cr0 = 0;
  cr0ack = 0;
  cr1 = 0;
  cr2 = 0;
  gbpa: number;
  irqCtrl = 0;
  irqCtrlAck = 0;
  gerror = 0;
  gerrorn = 0;
  gerrorIrqCfg0Lo = 0;
  gerrorIrqCfg0Hi = 0;
  gerrorIrqCfg1 = 0;
  gerrorIrqCfg2 = 0;
  strtabBaseLo = 0;
  strtabBaseHi = 0;
  strtabBaseCfg = 0;
  cmdqBaseLo = 0;
  cmdqBaseHi = 0;
  cmdqProd = 0;
  /** RD index and wrap, and ERR in bits 30:24. */
  cmdqCons = 0;
  evtqBaseLo = 0;
  evtqBaseHi = 0;
  /** WR index and wrap, and OVFLG in bit 31. */
  evtqProd = 0;
  /** RD index and wrap, and OVACKFLG in bit 31. */
  evtqCons = 0;
  evtqIrqCfg0Lo = 0;
  evtqIrqCfg0Hi = 0;
  evtqIrqCfg1 = 0;
  evtqIrqCfg2 = 0;
  private readonly cr0Mask: number;
  private readonly cr2Mask: number;
  private readonly strtabCfgMask: number;

  constructor(
    features: SmmuFeatures,
    id: IdRegisterValues,
    private readonly hooks: RegisterHooks,
  ) {
    this.id = id;
    this.gbpa = features.gbpaResetAbort ? GBPA_ABORT | GBPA_RESET_BYPASS : GBPA_RESET_BYPASS;
    // PRIQEN and VMW are RES0 (no PRI, no VMID wildcards); ATSCHK exists only with ATS.
    this.cr0Mask = CR0_SMMUEN | CR0_EVTQEN | CR0_CMDQEN | (features.ats ? CR0_ATSCHK : 0);
    // E2H needs IDR0.HYP (not implemented); REC_CFG_ATS only matters with ATS but is kept.
    this.cr2Mask = 0b1110;
    this.strtabCfgMask = features.twoLevelStrtab ? 0x3_07ff : 0x7ff;
  }

  get smmuen(): boolean {
    return (this.cr0ack & CR0_SMMUEN) !== 0;
  }

  get cmdqen(): boolean {
    return (this.cr0ack & CR0_CMDQEN) !== 0;
  }

  get evtqen(): boolean {
    return (this.cr0ack & CR0_EVTQEN) !== 0;
  }

  get atschk(): boolean {
    return (this.cr0ack & CR0_ATSCHK) !== 0;
  }

  get gerrorActive(): number {
    return gerrorActive(this.gerror, this.gerrorn);
  }

  /** Hardware raises a global error by toggling its GERROR bit, unless it is already active. */
  raiseGerror(bit: number): boolean {
    if ((this.gerrorActive & bit) !== 0) return false;
    this.gerror = (this.gerror ^ bit) >>> 0;
    return true;
  }

  read32(offset: number): number {
    switch (offset) {
      case REG.IDR0:
        return this.id.idr0;
      case REG.IDR1:
        return this.id.idr1;
      case REG.IDR2:
        return this.id.idr2;
      case REG.IDR3:
        return this.id.idr3;
      case REG.IDR4:
        return this.id.idr4;
      case REG.IDR5:
        return this.id.idr5;
      case REG.IIDR:
        return this.id.iidr;
      case REG.AIDR:
        return this.id.aidr;
      case REG.CR0:
        return this.cr0;
      case REG.CR0ACK:
        return this.cr0ack;
      case REG.CR1:
        return this.cr1;
      case REG.CR2:
        return this.cr2;
      case REG.STATUSR:
        return 0;
      case REG.GBPA:
        return this.gbpa;
      case REG.IRQ_CTRL:
        return this.irqCtrl;
      case REG.IRQ_CTRLACK:
        return this.irqCtrlAck;
      case REG.GERROR:
        return this.gerror;
      case REG.GERRORN:
        return this.gerrorn;
      case REG.GERROR_IRQ_CFG0:
        return this.gerrorIrqCfg0Lo;
      case REG.GERROR_IRQ_CFG0 + 4:
        return this.gerrorIrqCfg0Hi;
      case REG.GERROR_IRQ_CFG1:
        return this.gerrorIrqCfg1;
      case REG.GERROR_IRQ_CFG2:
        return this.gerrorIrqCfg2;
      case REG.STRTAB_BASE:
        return this.strtabBaseLo;
      case REG.STRTAB_BASE + 4:
        return this.strtabBaseHi;
      case REG.STRTAB_BASE_CFG:
        return this.strtabBaseCfg;
      case REG.CMDQ_BASE:
        return this.cmdqBaseLo;
      case REG.CMDQ_BASE + 4:
        return this.cmdqBaseHi;
      case REG.CMDQ_PROD:
        return this.cmdqProd;
      case REG.CMDQ_CONS:
        return this.cmdqCons;
      case REG.EVTQ_BASE:
        return this.evtqBaseLo;
      case REG.EVTQ_BASE + 4:
        return this.evtqBaseHi;
      case REG.EVTQ_PROD:
        return this.evtqProd;
      case REG.EVTQ_CONS:
        return this.evtqCons;
      case REG.EVTQ_IRQ_CFG0:
        return this.evtqIrqCfg0Lo;
      case REG.EVTQ_IRQ_CFG0 + 4:
        return this.evtqIrqCfg0Hi;
      case REG.EVTQ_IRQ_CFG1:
        return this.evtqIrqCfg1;
      case REG.EVTQ_IRQ_CFG2:
        return this.evtqIrqCfg2;
      default:
        return 0;
    }
  }

  write32(offset: number, value: number): void {
    const v = value >>> 0;
    switch (offset) {
      case REG.CR0: {
        const previous = this.cr0ack;
        this.cr0 = (v & this.cr0Mask) >>> 0;
        this.cr0ack = this.cr0;
        this.hooks.cr0Written(previous);
        return;
      }
      case REG.CR1:
        this.cr1 = v & 0xfff;
        return;
      case REG.CR2:
        if (!this.smmuen) this.cr2 = v & this.cr2Mask;
        return;
      case REG.GBPA:
        // Only a write with Update = 1 changes GBPA; the update completes at once, so Update
        // reads back as 0 (§1.6).
        if ((v & GBPA_UPDATE) !== 0) this.gbpa = v & GBPA_FIELDS;
        return;
      case REG.IRQ_CTRL:
        this.irqCtrl = v & 0b101;
        this.irqCtrlAck = this.irqCtrl;
        return;
      case REG.GERRORN: {
        const toggles = (v ^ this.gerrorn) & this.gerrorActive & GERROR_MASK;
        if (toggles === 0) return;
        this.gerrorn = (this.gerrorn ^ toggles) >>> 0;
        this.hooks.gerrorAcknowledged(toggles);
        return;
      }
      case REG.GERROR_IRQ_CFG0:
        this.gerrorIrqCfg0Lo = v & 0xffff_fffc;
        return;
      case REG.GERROR_IRQ_CFG0 + 4:
        this.gerrorIrqCfg0Hi = v & HI_ADDR;
        return;
      case REG.GERROR_IRQ_CFG1:
        this.gerrorIrqCfg1 = v;
        return;
      case REG.GERROR_IRQ_CFG2:
        this.gerrorIrqCfg2 = v & 0x3f;
        return;
      case REG.STRTAB_BASE:
        if (this.smmuen) return;
        this.strtabBaseLo = (v & 0xffff_ffc0) >>> 0;
        this.hooks.strtabChanged();
        return;
      case REG.STRTAB_BASE + 4:
        if (this.smmuen) return;
        this.strtabBaseHi = (v & (HI_ADDR | HI_HINT)) >>> 0;
        this.hooks.strtabChanged();
        return;
      case REG.STRTAB_BASE_CFG:
        if (this.smmuen) return;
        this.strtabBaseCfg = v & this.strtabCfgMask;
        this.hooks.strtabChanged();
        return;
      case REG.CMDQ_BASE:
        if (!this.cmdqen) this.cmdqBaseLo = v;
        return;
      case REG.CMDQ_BASE + 4:
        if (!this.cmdqen) this.cmdqBaseHi = (v & (HI_ADDR | HI_HINT)) >>> 0;
        return;
      case REG.CMDQ_PROD:
        this.cmdqProd = v & QUEUE_POINTER_MASK;
        this.hooks.cmdqProdWritten();
        return;
      case REG.CMDQ_CONS:
        // ERR is written by the SMMU only; software sets the read pointer while the queue is off.
        if (!this.cmdqen) this.cmdqCons = ((this.cmdqCons & 0x7f00_0000) | (v & QUEUE_POINTER_MASK)) >>> 0;
        return;
      case REG.EVTQ_BASE:
        if (!this.evtqen) this.evtqBaseLo = v;
        return;
      case REG.EVTQ_BASE + 4:
        if (!this.evtqen) this.evtqBaseHi = (v & (HI_ADDR | HI_HINT)) >>> 0;
        return;
      case REG.EVTQ_PROD:
        // OVFLG belongs to the SMMU; software may only initialise the write pointer.
        if (!this.evtqen) this.evtqProd = ((this.evtqProd & 0x8000_0000) | (v & QUEUE_POINTER_MASK)) >>> 0;
        return;
      case REG.EVTQ_CONS:
        this.evtqCons = (v & (QUEUE_POINTER_MASK | 0x8000_0000)) >>> 0;
        return;
      case REG.EVTQ_IRQ_CFG0:
        this.evtqIrqCfg0Lo = v & 0xffff_fffc;
        return;
      case REG.EVTQ_IRQ_CFG0 + 4:
        this.evtqIrqCfg0Hi = v & HI_ADDR;
        return;
      case REG.EVTQ_IRQ_CFG1:
        this.evtqIrqCfg1 = v;
        return;
      case REG.EVTQ_IRQ_CFG2:
        this.evtqIrqCfg2 = v & 0x3f;
        return;
      default:
        return;
    }
  }

  strtabBase(): number {
    return (this.strtabBaseHi & HI_ADDR) * 0x1_0000_0000 + this.strtabBaseLo;
  }

  cmdqBaseAddr(): number {
    return (this.cmdqBaseHi & HI_ADDR) * 0x1_0000_0000 + ((this.cmdqBaseLo & 0xffff_ffe0) >>> 0);
  }

  cmdqLog2size(): number {
    return this.cmdqBaseLo & 0x1f;
  }

  evtqBaseAddr(): number {
    return (this.evtqBaseHi & HI_ADDR) * 0x1_0000_0000 + ((this.evtqBaseLo & 0xffff_ffe0) >>> 0);
  }

  evtqLog2size(): number {
    return this.evtqBaseLo & 0x1f;
  }

  gerrorMsiAddr(): number {
    return this.gerrorIrqCfg0Hi * 0x1_0000_0000 + this.gerrorIrqCfg0Lo;
  }

  evtqMsiAddr(): number {
    return this.evtqIrqCfg0Hi * 0x1_0000_0000 + this.evtqIrqCfg0Lo;
  }
}
