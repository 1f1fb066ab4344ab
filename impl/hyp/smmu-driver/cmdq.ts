/**
 * The hypervisor's own command queue on one SMMU, as the posted driver drives it
 * (series-as-posted.md §2.9; DRV-v6e `smmu_add_cmd`, `smmu_add_cmd_raw`, `smmu_sync_cmd`,
 * `smmu_send_cmd`, `smmu_cmdq_has_space`, `smmu_cmdq_empty`; posted v6-era):
 *  - `add`: wait until the queue is not full (CONS read back), write the entry, write CMDQ_PROD;
 *  - `addRaw`: write the entry and advance the software prod, no PROD write;
 *  - `sync`: `add` a CMD_SYNC (CS = SEV, MSH = ISH, MSIAttr = OIWB: `arm_smmu_cmdq_build_cmd`),
 *    then wait until the queue is *empty* (CONS == prod; the ERR bits are not looked at, so a
 *    stopped queue is a timeout);
 *  - every wait is bounded (the kernel's poll timeout) and returns -ETIMEDOUT; the callers wrap
 *    them in WARN_ON, which is a hypervisor panic.
 * Every poll is a yield point: the runner lets the SMMU consume commands there (ARCHITECTURE §4).
 */
import { ETIMEDOUT } from '../../arch/errno.js';
import { type PhysicalMemory } from '../../arch/physical-memory.js';
import { CMD_BYTES, CS_SEV, type Command, encodeCommand } from '../../arch/smmu/commands.js';
import { REG } from '../../arch/smmu/registers.js';
import { type U64 } from '../../arch/u64.js';
import { type FaultHook } from '../../fault-injection.js';
import { type YieldPoint } from '../hypervisor.js';
import { qIdx, queueEmptyLlq, queueFullLlq, queueIncProdN, queueSpace } from './llq.js';

/** The CMD_SYNC `arm_smmu_cmdq_build_cmd` builds with no MSI address. */
export const HYP_CMD_SYNC: Command = { kind: 'CMD_SYNC', cs: CS_SEV, msh: 3, msiattr: 0xf, msidata: 0, msiaddr: 0 };

export class HypCmdq {
  private prod = 0;
  /** Commands written, and syncs waited for (cost metrics). */
  commandsIssued = 0;
  syncsIssued = 0;
  /** Test-only fault injection (impl/fault-injection.ts): a CMD_SYNC whose wait times out. */
  faults: FaultHook | null = null;
  /** Sees every command written into the queue (traces); null when nobody listens. */
  observer: ((words: readonly U64[]) => void) | null = null;

  constructor(
    private readonly memory: PhysicalMemory,
    /** Base of the SMMU register frame. */
    private readonly smmuBase: number,
    /** Queue memory (hypervisor-owned), aligned to its size. */
    readonly base: number,
    readonly log2size: number,
    /** Polls before a wait gives up with -ETIMEDOUT (`ARM_SMMU_POLL_TIMEOUT_US`). */
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

  /** `smmu_wait(..., smmu_cmdq_has_space(cmdq, n))`. */
  *waitSpace(n: number): Generator<YieldPoint, number, void> {
    for (let polls = 0; queueSpace(this.prod, this.readCons(), this.log2size) < n; polls++) {
      if (polls >= this.pollBudget) return -ETIMEDOUT;
      yield { at: 'cmdq_wait_space' };
    }
    return 0;
  }

  /** `smmu_wait(..., smmu_cmdq_empty(cmdq))`. */
  *waitEmpty(): Generator<YieldPoint, number, void> {
    for (let polls = 0; !queueEmptyLlq(this.prod, this.readCons(), this.log2size); polls++) {
      if (polls >= this.pollBudget) return -ETIMEDOUT;
      yield { at: 'cmdq_poll' };
    }
    return 0;
  }

  /** `smmu_add_cmd_raw`: the two dwords at prod, prod advanced; CMDQ_PROD not written. */
  addRaw(words: readonly U64[]): void {
    const at = this.base + qIdx(this.prod, this.log2size) * CMD_BYTES;
    const w0 = words[0] as U64;
    const w1 = words[1] as U64;
    this.memory.store64(at, w0.lo, w0.hi);
    this.memory.store64(at + 8, w1.lo, w1.hi);
    this.prod = queueIncProdN(this.prod, 1, this.log2size);
    this.commandsIssued++;
    this.observer?.(words);
  }

  /** Publishes the software prod (`writel(llq.prod, prod_reg)`). */
  *publish(): Generator<YieldPoint, void, void> {
    this.memory.write32(this.smmuBase + REG.CMDQ_PROD, this.prod);
    yield { at: 'cmdq_prod_written' };
  }

  /** `smmu_add_cmd`. */
  *add(cmd: Command): Generator<YieldPoint, number, void> {
    for (let polls = 0; queueFullLlq(this.prod, this.readCons(), this.log2size); polls++) {
      if (polls >= this.pollBudget) return -ETIMEDOUT;
      yield { at: 'cmdq_wait_space' };
    }
    this.addRaw(encodeCommand(cmd));
    yield* this.publish();
    return 0;
  }

  /** `smmu_sync_cmd`. */
  *sync(): Generator<YieldPoint, number, void> {
    const r = yield* this.add(HYP_CMD_SYNC);
    if (r !== 0) return r;
    this.syncsIssued++;
    // Injected: the SYNC is queued and published, but its completion is never seen in time.
    if (this.faults !== null && this.faults.fail('cmd_sync')) return -ETIMEDOUT;
    return yield* this.waitEmpty();
  }

  /** `smmu_send_cmd`: add, then sync. */
  *send(cmd: Command): Generator<YieldPoint, number, void> {
    const r = yield* this.add(cmd);
    if (r !== 0) return r;
    return yield* this.sync();
  }

  /**
   * The commands one by one (as `arm_smmu_tlb_inv_build` hands them to `__smmu_add_cmd`), then
   * a sync when asked. Returns the first error.
   */
  *issue(commands: readonly Command[], sync: boolean): Generator<YieldPoint, number, void> {
    for (const cmd of commands) {
      const r = yield* this.add(cmd);
      if (r !== 0) return r;
    }
    return sync ? yield* this.sync() : 0;
  }
}
