/**
 * The event queue producer (smmuv3-arch.md §5.1–§5.3): 32-byte records written at EVTQ_PROD,
 * the overflow flag when the queue is full, and the EVTQ interrupt.
 *
 * Strict (hardware, SPEC 7.4): a record that finds the queue full is discarded and
 * EVTQ_PROD.OVFLG toggles if no overflow is already pending (OVFLG == OVACKFLG). With EVTQEN = 0
 * records are discarded without an overflow. A record whose write aborts raises
 * GERROR.EVTQ_ABT_ERR. Permissive (QEMU, §7.4): a full queue raises GERROR.EVTQ_ABT_ERR instead
 * of the overflow flag; a disabled queue drops silently, as in QEMU.
 */
import { type PhysicalMemory, ACCESS_OK } from '../../arch/physical-memory.js';
import { type EventRecord, encodeEvent, EVT_BYTES } from '../../arch/smmu/events.js';
import { GERROR_BIT } from '../../arch/smmu/registers.js';
import { type RegisterFile } from './registers-file.js';
import { type SmmuWriteLog } from './write-log.js';

/** Interrupts and events the SMMU has signalled, counted (the machine has no interrupt controller yet). */
export interface SmmuSignals {
  /** WFE wake-up events (CMD_SYNC with CS = SEV, queue full → not full) when IDR0.SEV. */
  sev: number;
  /** Pulses of the wired CMD_SYNC completion interrupt (CS = IRQ). */
  cmdSyncIrq: number;
  /** MSI writes performed for CMD_SYNC completions. */
  cmdSyncMsi: number;
  /** Wired GERROR / EVTQ interrupts. */
  gerrorIrq: number;
  evtqIrq: number;
  /** MSI writes for GERROR / EVTQ interrupts. */
  gerrorMsi: number;
  evtqMsi: number;
}

export function newSignals(): SmmuSignals {
  return { sev: 0, cmdSyncIrq: 0, cmdSyncMsi: 0, gerrorIrq: 0, evtqIrq: 0, gerrorMsi: 0, evtqMsi: 0 };
}

export type EventDelivery = 'written' | 'dropped_disabled' | 'dropped_full' | 'write_abort';

const IRQ_CTRL_EVTQ = 1 << 2;

export class EventQueue {
  constructor(
    private readonly memory: PhysicalMemory,
    private readonly regs: RegisterFile,
    private readonly maxLog2: number,
    private readonly oasLimit: number,
    private readonly msi: boolean,
    private readonly permissive: boolean,
    private readonly signals: SmmuSignals,
    private readonly raiseGerror: (bit: number) => void,
    private readonly writes: SmmuWriteLog,
  ) {}

  write(ev: EventRecord): EventDelivery {
    const regs = this.regs;
    if (!regs.evtqen) return 'dropped_disabled';
    const log2 = Math.min(regs.evtqLog2size(), this.maxLog2);
    const span = 2 ** (log2 + 1);
    const prod = (regs.evtqProd & 0xf_ffff) % span;
    const cons = (regs.evtqCons & 0xf_ffff) % span;
    const size = 2 ** log2;
    if (prod !== cons && prod % size === cons % size) {
      if (this.permissive) {
        this.raiseGerror(GERROR_BIT.EVTQ_ABT_ERR);
      } else if ((regs.evtqProd >>> 31) === (regs.evtqCons >>> 31)) {
        regs.evtqProd = (regs.evtqProd ^ 0x8000_0000) >>> 0;
      }
      return 'dropped_full';
    }
    const slot = this.base(log2) + (prod % size) * EVT_BYTES;
    const words = encodeEvent(ev);
    for (let i = 0; i < words.length; i++) {
      const w = words[i];
      if (w === undefined || this.memory.store64(slot + i * 8, w.lo, w.hi) !== ACCESS_OK) {
        // The doublewords before the aborted one did land.
        if (i > 0) this.writes.record(slot, i * 8, 'event_record');
        this.raiseGerror(GERROR_BIT.EVTQ_ABT_ERR);
        return 'write_abort';
      }
    }
    this.writes.record(slot, words.length * 8, 'event_record');
    regs.evtqProd = ((regs.evtqProd & 0x8000_0000) | ((prod + 1) % span)) >>> 0;
    if ((regs.irqCtrlAck & IRQ_CTRL_EVTQ) !== 0) this.interrupt();
    return 'written';
  }

  /** The queue base is aligned to its size (at least 32 bytes), ignoring lower ADDR bits (§1.7). */
  private base(log2: number): number {
    const bytes = Math.max(32, 2 ** log2 * EVT_BYTES);
    const raw = this.regs.evtqBaseAddr();
    return raw - (raw % bytes);
  }

  /** The memory the producer may write records into: the whole queue while EVTQEN is set. */
  span(): { readonly base: number; readonly bytes: number } | undefined {
    if (!this.regs.evtqen) return undefined;
    const log2 = Math.min(this.regs.evtqLog2size(), this.maxLog2);
    return { base: this.base(log2), bytes: Math.max(32, 2 ** log2 * EVT_BYTES) };
  }

  private interrupt(): void {
    const addr = this.regs.evtqMsiAddr();
    if (this.msi && addr !== 0) {
      this.signals.evtqMsi++;
      const pa = addr % this.oasLimit;
      if (this.memory.write32(pa, this.regs.evtqIrqCfg1) !== ACCESS_OK) this.raiseGerror(GERROR_BIT.MSI_EVTQ_ABT_ERR);
      else this.writes.record(pa, 4, 'evtq_msi');
    } else {
      this.signals.evtqIrq++;
    }
  }
}
