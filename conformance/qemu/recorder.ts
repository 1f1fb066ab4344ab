/**
 * Records a trace from the model's own use: a host drives the project's SMMU test bench
 * (impl/hw/smmu/testing.ts, permissive mode, QEMU's ID registers) and every RAM store it makes
 * (`PhysicalMemory.storeObserver`), every SMMU register store (the MMIO handler) and every
 * device transaction becomes a trace op. Stores the SMMU itself makes (event records) are not
 * recorded: they happen inside `translate`, which runs with recording paused.
 *
 * The bench's RAM layout (RAM at 0x4000_0000) is the virt board's; the SMMU frame is relocated
 * by recording register offsets (qemu-smmuv3-peer.md §6.2 "relocate the SMMU base").
 */
import { PhysicalMemory } from '../../impl/arch/physical-memory.js';
import { REG, type RegName } from '../../impl/arch/smmu/registers.js';
import { type AccessStatus } from '../../impl/arch/physical-memory.js';
import { SMMU_BASE, SmmuBench } from '../../impl/hw/smmu/testing.js';
import { type DiffEnv, featuresFromIds } from './replay.js';
import { type Helper, type Op, type Trace } from './trace.js';

/** Helper SRC/SINK pages, identity-mapped (IPA = PA) in every stage-2 table the generators build; 64 KiB aligned for every granule. */
export const HELPER: Helper = { srcIova: 0x4013_0000, srcPa: 0x4013_0000, sinkIova: 0x4014_0000, sinkPa: 0x4014_0000 };

export interface RecorderOptions {
  readonly cmdqLog2?: number;
  readonly evtqLog2?: number;
  readonly strtab?: { readonly log2: number; readonly split?: number };
}

export class Recorder {
  readonly bench: SmmuBench;
  readonly ops: Op[] = [];
  private paused = 0;
  private nextTag = 0x7a90_0001;

  constructor(
    readonly env: DiffEnv,
    options: RecorderOptions = {},
  ) {
    if (env.ram.base !== 0x4000_0000) throw new Error('the bench layout needs RAM at 0x4000_0000');
    this.bench = new SmmuBench({ mode: 'permissive', features: featuresFromIds(env.ids), noEnable: true, ...options });
    const memory: PhysicalMemory = this.bench.memory;
    memory.storeObserver = (pa, _ol, _oh, lo, hi) => {
      if (this.paused === 0 && pa < env.ram.base + env.ram.size - env.reservedTop) this.ops.push({ t: 'mem64', pa, lo: lo >>> 0, hi: hi >>> 0 });
    };
    const smmu = this.bench.smmu;
    const write32 = smmu.write32.bind(smmu);
    smmu.write32 = (offset: number, value: number): AccessStatus => {
      if (this.paused === 0) this.ops.push({ t: 'reg32', off: offset, v: value >>> 0 });
      this.paused++;
      try {
        return write32(offset, value);
      } finally {
        this.paused--;
      }
    };
  }

  /** A 64-bit register store as one access (QEMU accepts 64-bit stores to its 64-bit registers). */
  reg64(name: RegName, lo: number, hi: number): void {
    this.ops.push({ t: 'reg64', off: REG[name], lo: lo >>> 0, hi: hi >>> 0 });
    this.paused++;
    try {
      this.bench.memory.store64(SMMU_BASE + REG[name], lo, hi);
    } finally {
      this.paused--;
    }
  }

  reg32(name: RegName, v: number): void {
    this.bench.reg(name, v);
  }

  /** The device writes a fresh tag to `iova` (the model translates it too). */
  dmaWrite(dev: number, iova: number): void {
    const tag = this.nextTag++;
    this.ops.push({ t: 'dmaw', dev, iova, tag });
    this.quietly(() => this.bench.smmu.translate(this.env.sids[dev] ?? 0, iova, 'write'));
  }

  dmaRead(dev: number, iova: number): void {
    this.ops.push({ t: 'dmar', dev, iova });
    this.quietly(() => this.bench.smmu.translate(this.env.sids[dev] ?? 0, iova, 'read'));
  }

  evcons(): void {
    this.ops.push({ t: 'evcons' });
    this.quietly(() => this.bench.reg('EVTQ_CONS', this.bench.read('EVTQ_PROD')));
  }

  quietly<T>(f: () => T): T {
    this.paused++;
    try {
      return f();
    } finally {
      this.paused--;
    }
  }

  trace(name: string, twoLevel = false): Trace {
    return { name, twoLevel, helper: HELPER, ops: this.ops.slice() };
  }
}
