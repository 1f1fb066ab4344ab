/**
 * The hypervisor's own command queue on one SMMU (pkvm-host-s2-iommu.md §6.7, smmuv3-arch.md
 * §4): queue memory owned by EL2, a software `prod` with its wrap bit, a space check that reads
 * CMDQ_CONS, entries written to memory, one CMDQ_PROD write, and CMD_SYNC (CS = SEV) completion
 * polled on CONS with a bounded number of polls (`-ETIMEDOUT`). Every poll is a yield point: the
 * runner lets the SMMU consume commands there (ARCHITECTURE §4), so a driver that does not wait
 * is caught.
 */
import { ETIMEDOUT } from '../../arch/errno.js';
import { type PhysicalMemory } from '../../arch/physical-memory.js';
import { CMD_BYTES, CS_SEV, type Command, encodeCommand } from '../../arch/smmu/commands.js';
import { REG, queueConsumed, queueEntryAddress, queueFull, queueIncrement, queuePointerBits } from '../../arch/smmu/registers.js';
import { type YieldPoint } from '../hypervisor.js';

export const EIO = 5;

/** CMDQ_CONS.ERR[30:24]. */
function consError(cons: number): number {
  return (cons >>> 24) & 0x7f;
}

export class HypCmdq {
  private prod = 0;
  /** Commands written, and syncs waited for (cost metrics). */
  commandsIssued = 0;
  syncsIssued = 0;

  constructor(
    private readonly memory: PhysicalMemory,
    /** Base of the SMMU register frame. */
    private readonly smmuBase: number,
    /** Queue memory (hypervisor-owned), aligned to its size. */
    readonly base: number,
    readonly log2size: number,
    /** Polls before a wait gives up with -ETIMEDOUT (the kernel's 100 ms). */
    private readonly pollBudget = 4096,
  ) {}

  private readCons(): number {
    const v = this.memory.read32(this.smmuBase + REG.CMDQ_CONS);
    return v < 0 ? 0 : v;
  }

  /** Resets the software state after the queue registers were programmed (prod = cons = 0). */
  reset(): void {
    this.prod = 0;
  }

  get prodValue(): number {
    return this.prod;
  }

  /**
   * Appends `commands` (and a CMD_SYNC when `sync`), publishes them with one CMDQ_PROD write and,
   * with a sync, waits until it is consumed. Returns 0, -ETIMEDOUT, or -EIO when the queue
   * stopped on an error at or before the sync.
   */
  *issue(commands: readonly Command[], sync: boolean): Generator<YieldPoint, number, void> {
    const all: Command[] = [...commands];
    if (sync) all.push({ kind: 'CMD_SYNC', cs: CS_SEV, msh: 3, msiattr: 0xf, msidata: 0, msiaddr: 0 });
    let syncAt = -1;
    for (const cmd of all) {
      let polls = 0;
      while (queueFull(this.prod, this.readCons(), this.log2size)) {
        // Publish what we have so the SMMU can make room.
        this.memory.write32(this.smmuBase + REG.CMDQ_PROD, this.prod);
        if (++polls > this.pollBudget) return -ETIMEDOUT;
        yield { at: 'cmdq_wait_space' };
      }
      const words = encodeCommand(cmd);
      const at = queueEntryAddress(this.base, this.prod, this.log2size, CMD_BYTES);
      this.memory.store64(at, (words[0] as { lo: number }).lo, (words[0] as { hi: number }).hi);
      this.memory.store64(at + 8, (words[1] as { lo: number }).lo, (words[1] as { hi: number }).hi);
      if (cmd.kind === 'CMD_SYNC') syncAt = this.prod;
      this.prod = queueIncrement(this.prod, this.log2size);
      this.commandsIssued++;
    }
    this.memory.write32(this.smmuBase + REG.CMDQ_PROD, this.prod);
    yield { at: 'cmdq_prod_written' };
    if (syncAt < 0) return 0;
    this.syncsIssued++;
    for (let polls = 0; ; polls++) {
      const cons = this.readCons();
      if (consError(cons) !== 0) return -EIO;
      if (queueConsumed(queuePointerBits(cons, this.log2size), syncAt, this.log2size)) return 0;
      if (polls >= this.pollBudget) return -ETIMEDOUT;
      yield { at: 'cmdq_poll' };
    }
  }
}
