/**
 * A well-behaved host SMMUv3 driver (what a correct host kernel does, ARCHITECTURE §2): it keeps
 * its command queue and a linear stream table in its own memory, programs the SMMU through
 * register accesses (which trap to the hypervisor's emulation), enables the SMMU, and attaches
 * devices for identity DMA with bypass STEs (EATS set for ATS-capable devices, as Linux does
 * when it enables ATS). Its memory stores are plain stores: the pages are the host's own.
 */
import { type PhysicalMemory } from '../arch/physical-memory.js';
import { CMD_BYTES, CS_SEV, type Command, encodeCommand } from '../arch/smmu/commands.js';
import { CR0_CMDQEN, CR0_SMMUEN, REG, STRTAB_FMT_LINEAR, encodeCmdqBase, encodeStrtabBase, encodeStrtabBaseCfg, queueIncrement } from '../arch/smmu/registers.js';
import { EATS_TRANS, STE_BYTES, STE_CONFIG, SHCFG_INCOMING, encodeSte, steFields } from '../arch/smmu/ste.js';
import { type U64 } from '../arch/u64.js';
import { type Hypercall, type Hypervisor, type YieldPoint } from '../hyp/hypervisor.js';

export interface HostSmmuLayout {
  /** Host-owned page for the command queue (log2size 6: 64 commands, 1 KiB). */
  readonly cmdqBase: number;
  /** Host-owned page for a linear stream table of 2^strtabLog2 STEs (≤ 64 in one page). */
  readonly strtabBase: number;
  readonly strtabLog2: number;
}

const CMDQ_LOG2 = 6;

export class HostSmmuDriver {
  private prod = 0;

  constructor(
    private readonly hyp: Hypervisor,
    private readonly memory: PhysicalMemory,
    readonly smmuBase: number,
    readonly layout: HostSmmuLayout,
  ) {}

  /** A register write as the host issues it: a store to the SMMU frame, trapped by EL2. */
  write(offset: number, value: number): Hypercall {
    return this.hyp.hostMmioAccess(this.smmuBase + offset, true, value);
  }

  *read(offset: number): Generator<YieldPoint, number, void> {
    yield* this.hyp.hostMmioAccess(this.smmuBase + offset, false, 0);
    return this.hyp.lastMmioRead;
  }

  private *write64(offset: number, value: U64): Hypercall {
    yield* this.write(offset, value.lo);
    return yield* this.write(offset + 4, value.hi);
  }

  /** Linux's reset and enable sequence, as far as a stage-2-less host SMMU needs it. */
  *init(): Hypercall {
    yield* this.read(REG.IDR0);
    yield* this.write(REG.CR0, 0);
    yield* this.write(REG.CR1, 0xd75);
    yield* this.write(REG.CR2, (1 << 2) | (1 << 1));
    yield* this.write64(REG.STRTAB_BASE, encodeStrtabBase({ ra: true, addr: this.layout.strtabBase }));
    yield* this.write(REG.STRTAB_BASE_CFG, encodeStrtabBaseCfg({ fmt: STRTAB_FMT_LINEAR, split: 0, log2size: this.layout.strtabLog2 }));
    yield* this.write64(REG.CMDQ_BASE, encodeCmdqBase({ ra: true, addr: this.layout.cmdqBase, log2size: CMDQ_LOG2 }));
    yield* this.write(REG.CMDQ_PROD, 0);
    yield* this.write(REG.CMDQ_CONS, 0);
    this.prod = 0;
    yield* this.write(REG.CR0, CR0_CMDQEN);
    yield* this.issue([{ kind: 'CFGI_ALL', ssec: false, sid: 0 }]);
    return yield* this.write(REG.CR0, CR0_CMDQEN | CR0_SMMUEN);
  }

  /** Writes commands and a CMD_SYNC into the host queue and publishes them with one PROD write. */
  *issue(commands: readonly Command[]): Hypercall {
    for (const cmd of [...commands, { kind: 'CMD_SYNC', cs: CS_SEV, msh: 3, msiattr: 0xf, msidata: 0, msiaddr: 0 } as Command]) {
      const words = encodeCommand(cmd);
      const at = this.layout.cmdqBase + (this.prod % 2 ** CMDQ_LOG2) * CMD_BYTES;
      this.memory.store64(at, (words[0] as U64).lo, (words[0] as U64).hi);
      this.memory.store64(at + 8, (words[1] as U64).lo, (words[1] as U64).hi);
      this.prod = queueIncrement(this.prod, CMDQ_LOG2);
    }
    return yield* this.write(REG.CMDQ_PROD, this.prod);
  }

  /** A malicious or buggy host: four raw 32-bit words as one command, then a CMD_SYNC. */
  *issueRaw(words: readonly [number, number, number, number]): Hypercall {
    const at = this.layout.cmdqBase + (this.prod % 2 ** CMDQ_LOG2) * CMD_BYTES;
    this.memory.store64(at, words[0] >>> 0, words[1] >>> 0);
    this.memory.store64(at + 8, words[2] >>> 0, words[3] >>> 0);
    this.prod = queueIncrement(this.prod, CMDQ_LOG2);
    return yield* this.issue([]);
  }

  /** Attaches a device for identity DMA: a bypass STE, then CFGI_STE + CMD_SYNC. */
  *attachIdentity(sid: number, ats: boolean): Hypercall {
    const words = encodeSte(steFields({ v: true, config: STE_CONFIG.BYPASS, shcfg: SHCFG_INCOMING, eats: ats ? EATS_TRANS : 0 }));
    const at = this.layout.strtabBase + sid * STE_BYTES;
    for (let i = 0; i < 8; i++) this.memory.store64(at + i * 8, (words[i] as U64).lo, (words[i] as U64).hi);
    return yield* this.issue([{ kind: 'CFGI_STE', ssec: false, sid, leaf: true }]);
  }
}
