/**
 * A well-behaved host SMMUv3 driver (what a correct host kernel does, ARCHITECTURE §2): Linux's
 * `arm_smmu_device_reset` sequence through register accesses that trap to the hypervisor's
 * emulation — 32-bit registers with 32-bit accesses, 64-bit ones with `writeq`/`readq`, as the
 * posted emulation requires (series-as-posted.md §2.5). It keeps its command queue, its stream
 * table (2-level with SPLIT 8 when the SMMU has one and more than 8 SID bits, else linear: the
 * posted hypervisor requires the host's format to be its own) and, when it has a page for it, its
 * event queue in its own memory, and attaches devices for identity DMA with bypass STEs (EATS set
 * for ATS-capable devices, as Linux does when it enables ATS). Its memory stores are plain
 * stores: the pages are the host's own.
 */
import { type PhysicalMemory } from '../arch/physical-memory.js';
import { CMD_BYTES, CS_SEV, type Command, encodeCommand } from '../arch/smmu/commands.js';
import { CR0_CMDQEN, CR0_EVTQEN, CR0_SMMUEN, REG, STRTAB_FMT_2LVL, STRTAB_FMT_LINEAR, decodeIdr0, decodeIdr1, encodeCmdqBase, encodeStrtabBase, encodeStrtabBaseCfg, queueIncrement } from '../arch/smmu/registers.js';
import { EATS_TRANS, STE_BYTES, STE_CONFIG, SHCFG_INCOMING, encodeSte, steFields } from '../arch/smmu/ste.js';
import { type U64 } from '../arch/u64.js';
import { type Hypercall, type Hypervisor, type YieldPoint } from '../hyp/hypervisor.js';
import { ENODEV, ENOMEM } from '../arch/errno.js';
import { S1FMT_LINEAR } from '../arch/smmu/cd.js';
import { decodeIdr3, idr5Geometry } from '../arch/smmu/registers.js';
import { S1DSS_SSID0, STRW_NSEL1 } from '../arch/smmu/ste.js';
import { atcInvalidationSpan } from '../hyp/smmu-driver/tlbi-range.js';
import { type HostDmaDomain, type HostDmaFeatures, HostDmaDomains } from './dma-domain.js';

export interface HostSmmuLayout {
  /** Host-owned page for the command queue (log2size 6: 64 commands, 1 KiB). */
  readonly cmdqBase: number;
  /**
   * Host-owned page for the stream table: a linear table of 2^6 STEs, or the L1 table of a
   * 2-level one (2^(SIDSIZE − 8) descriptors).
   */
  readonly strtabBase: number;
  /** 16 KiB of host memory for the one L2 table (SIDs 0..255) of a 2-level stream table. */
  readonly l2Base: number;
  /** A host page for the event queue (2^7 records of 32 bytes); absent: no event queue. */
  readonly evtqBase?: number;
  /** Host pages for DMA-domain page tables and CD tables (dma-domain.ts); absent: identity DMA only. */
  readonly dmaArea?: { readonly base: number; readonly pages: number };
}

const CMDQ_LOG2 = 6;
const EVTQ_LOG2 = 7;
const LINEAR_LOG2 = 6;
const STRTAB_SPLIT = 8;
/** Linux's CR1 (ISH, WB/WB for tables and queues) and CR2 (PTM | RECINVSID). */
const CR1_LINUX = 0xd75;
const CR2_LINUX = (1 << 2) | (1 << 1);
/** IRQ_CTRL: GERROR_IRQEN | EVTQ_IRQEN. */
const IRQ_CTRL_LINUX = (1 << 0) | (1 << 2);
const CR0_ATSCHK = 1 << 4;

export class HostSmmuDriver {
  private prod = 0;
  /** The stream-table format the host chose at reset (from the emulated IDR0/IDR1). */
  twoLevel = false;
  sidBits = 0;

  /** The host's stage-1 DMA domains (absent without `layout.dmaArea`). */
  readonly domains: HostDmaDomains | undefined;
  /** IDR3/IDR5 as the host read them when it made its first domain. */
  private dmaFeatures: HostDmaFeatures | undefined;

  constructor(
    private readonly hyp: Hypervisor,
    private readonly memory: PhysicalMemory,
    readonly smmuBase: number,
    readonly layout: HostSmmuLayout,
  ) {
    this.domains = layout.dmaArea === undefined ? undefined : new HostDmaDomains(memory, layout.dmaArea.base, layout.dmaArea.pages);
  }

  /** A 32-bit register write as the host issues it: a store to the SMMU frame, trapped by EL2. */
  write(offset: number, value: number): Hypercall {
    return this.hyp.hostMmioAccess(this.smmuBase + offset, true, value);
  }

  private writeq(offset: number, value: U64): Hypercall {
    return this.hyp.hostMmioAccess(this.smmuBase + offset, true, value.lo, 8, value.hi);
  }

  *read(offset: number): Generator<YieldPoint, number, void> {
    yield* this.hyp.hostMmioAccess(this.smmuBase + offset, false, 0);
    return this.hyp.lastMmioRead;
  }

  /** Where the host's STE for `sid` lives (its own linear table, or L2 table 0). */
  steAddress(sid: number): number {
    return this.twoLevel ? this.layout.l2Base + (sid % 2 ** STRTAB_SPLIT) * STE_BYTES : this.layout.strtabBase + (sid % 2 ** LINEAR_LOG2) * STE_BYTES;
  }

  /** The SIDs the host's table can describe (for generated host STE writes). */
  get steSlots(): number {
    return this.twoLevel ? 2 ** STRTAB_SPLIT : 2 ** LINEAR_LOG2;
  }

  /** `arm_smmu_device_reset` as far as a stage-2-less host SMMU needs it. */
  *init(): Hypercall {
    const idr0 = decodeIdr0(yield* this.read(REG.IDR0));
    const idr1 = decodeIdr1(yield* this.read(REG.IDR1));
    this.sidBits = idr1.sidsize;
    this.twoLevel = idr0.stLevel === 1 && idr1.sidsize > STRTAB_SPLIT;
    // arm_smmu_device_disable.
    yield* this.write(REG.CR0, 0);
    yield* this.read(REG.CR0ACK);
    yield* this.write(REG.CR1, CR1_LINUX);
    yield* this.write(REG.CR2, CR2_LINUX);
    if (this.twoLevel) {
      // L1 descriptor 0 → the L2 table (Span = SPLIT + 1); the others stay invalid.
      this.memory.store64(this.layout.strtabBase, (this.layout.l2Base | (STRTAB_SPLIT + 1)) >>> 0, Math.floor(this.layout.l2Base / 2 ** 32));
    }
    yield* this.writeq(REG.STRTAB_BASE, encodeStrtabBase({ ra: true, addr: this.layout.strtabBase }));
    const cfg = this.twoLevel ? { fmt: STRTAB_FMT_2LVL, split: STRTAB_SPLIT, log2size: this.sidBits } : { fmt: STRTAB_FMT_LINEAR, split: 0, log2size: LINEAR_LOG2 };
    yield* this.write(REG.STRTAB_BASE_CFG, encodeStrtabBaseCfg(cfg));
    yield* this.writeq(REG.CMDQ_BASE, encodeCmdqBase({ ra: true, addr: this.layout.cmdqBase, log2size: CMDQ_LOG2 }));
    yield* this.write(REG.CMDQ_PROD, 0);
    yield* this.write(REG.CMDQ_CONS, 0);
    this.prod = 0;
    let enables = CR0_CMDQEN;
    yield* this.write(REG.CR0, enables);
    yield* this.read(REG.CR0ACK);
    yield* this.issue([{ kind: 'CFGI_ALL', ssec: false, sid: 0 }]);
    // TLBI_EL2_ALL only with IDR0.HYP, which the emulation hides.
    yield* this.issue([{ kind: 'TLBI_NSNH_ALL' }]);
    if (this.layout.evtqBase !== undefined) {
      yield* this.writeq(REG.EVTQ_BASE, encodeCmdqBase({ ra: false, addr: this.layout.evtqBase, log2size: EVTQ_LOG2 }));
      yield* this.write(REG.EVTQ_PROD, 0);
      yield* this.write(REG.EVTQ_CONS, 0);
      enables |= CR0_EVTQEN;
      yield* this.write(REG.CR0, enables);
      yield* this.read(REG.CR0ACK);
    }
    if (idr0.ats) {
      enables |= CR0_ATSCHK;
      yield* this.write(REG.CR0, enables);
      yield* this.read(REG.CR0ACK);
    }
    // arm_smmu_setup_irqs: IRQs off, the MSI address registers cleared (the emulation hides
    // IDR0.MSI, so wired interrupts), IRQs on.
    yield* this.write(REG.IRQ_CTRL, 0);
    yield* this.read(REG.IRQ_CTRLACK);
    yield* this.writeq(REG.GERROR_IRQ_CFG0, { lo: 0, hi: 0 });
    yield* this.writeq(REG.EVTQ_IRQ_CFG0, { lo: 0, hi: 0 });
    yield* this.write(REG.IRQ_CTRL, this.layout.evtqBase === undefined ? 1 : IRQ_CTRL_LINUX);
    yield* this.read(REG.IRQ_CTRLACK);
    enables |= CR0_SMMUEN;
    const r = yield* this.write(REG.CR0, enables);
    yield* this.read(REG.CR0ACK);
    return r;
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

  /**
   * A malicious or buggy host: four raw 32-bit words as one command, `count` times (a batch of up
   * to a whole queue, which may overrun the hypervisor's free space), then a CMD_SYNC and one PROD
   * write. A batch larger than the queue wraps over itself, as a host that ignores CONS would.
   */
  *issueRaw(words: readonly [number, number, number, number], count = 1): Hypercall {
    for (let i = 0; i < Math.max(1, Math.min(count, 2 ** CMDQ_LOG2)); i++) {
      const at = this.layout.cmdqBase + (this.prod % 2 ** CMDQ_LOG2) * CMD_BYTES;
      this.memory.store64(at, words[0] >>> 0, words[1] >>> 0);
      this.memory.store64(at + 8, words[2] >>> 0, words[3] >>> 0);
      this.prod = queueIncrement(this.prod, CMDQ_LOG2);
    }
    return yield* this.issue([]);
  }

  /** Attaches a device for identity DMA: a bypass STE, then CFGI_STE + CMD_SYNC. */
  *attachIdentity(sid: number, ats: boolean): Hypercall {
    const words = encodeSte(steFields({ v: true, config: STE_CONFIG.BYPASS, shcfg: SHCFG_INCOMING, eats: ats ? EATS_TRANS : 0 }));
    const at = this.steAddress(sid);
    for (let i = 0; i < 8; i++) this.memory.store64(at + i * 8, (words[i] as U64).lo, (words[i] as U64).hi);
    return yield* this.issue([{ kind: 'CFGI_STE', ssec: false, sid, leaf: true }]);
  }

  // --- DMA-API domains (issue 13; dma-domain.ts) ---

  private storeWords(at: number, words: readonly U64[]): void {
    for (let i = 0; i < words.length; i++) this.memory.store64(at + i * 8, (words[i] as U64).lo, (words[i] as U64).hi);
  }

  /** Issues what the domain's flush ops queued, one batch (+ CMD_SYNC) per flush. */
  private *flushDomain(domain: HostDmaDomain): Hypercall {
    let r = 0;
    for (const batch of domain.drainCommands()) r = yield* this.issue(batch);
    return r;
  }

  /**
   * Attaches `sid` to its stage-1 DMA domain (made on first use): CD 0 written, CFGI_CD +
   * CMD_SYNC (`arm_smmu_write_cd_entry`), then the S1 STE (`arm_smmu_make_cdtable_ste`: linear CD
   * table, S1CDMax 0, S1DSS SSID0, WBRA/ISH table walks, EATS for ATS devices, STRW NSEL1) and
   * CFGI_STE + CMD_SYNC. Choice: IDR3/IDR5 are read here, at the first attach, rather than at
   * probe. Returns 0, -ENODEV (no area for domains) or -ENOMEM (host pool empty).
   */
  *attachDomain(sid: number, ats: boolean): Hypercall {
    if (this.domains === undefined) return -ENODEV;
    if (this.dmaFeatures === undefined) {
      const idr3 = decodeIdr3(yield* this.read(REG.IDR3));
      const idr5 = idr5Geometry(yield* this.read(REG.IDR5));
      this.dmaFeatures = { ril: idr3.ril, pgsizeBitmap: idr5.pgsizeBitmap, oas: idr5.oas };
    }
    const domain = this.domains.domainFor(sid, this.dmaFeatures);
    if (domain === undefined) return -ENOMEM;
    this.storeWords(domain.cdTable, domain.cdWords());
    yield* this.issue([{ kind: 'CFGI_CD', ssec: false, sid, ssid: 0, leaf: true }]);
    const ste = encodeSte(
      steFields({
        v: true,
        config: STE_CONFIG.S1_TRANS,
        s1fmt: S1FMT_LINEAR,
        s1ContextPtr: domain.cdTable,
        s1cdmax: 0,
        s1dss: S1DSS_SSID0,
        s1cir: 1,
        s1cor: 1,
        s1csh: 3,
        shcfg: SHCFG_INCOMING,
        eats: ats ? EATS_TRANS : 0,
        strw: STRW_NSEL1,
      }),
    );
    this.storeWords(this.steAddress(sid), ste);
    return yield* this.issue([{ kind: 'CFGI_STE', ssec: false, sid, leaf: true }]);
  }

  /** The domain `sid` is attached to, if any. */
  domainOf(sid: number): HostDmaDomain | undefined {
    return this.domains?.byStream.get(sid);
  }

  /**
   * `dma_map_*` → `iommu_map` of `size` bytes at `iova` → `pa`; no invalidation (a new mapping
   * replaces only invalid entries). -ENODEV when `sid` has no domain.
   */
  *mapDma(sid: number, iova: number, pa: number, size: number, write: boolean): Hypercall {
    const domain = this.domainOf(sid);
    if (domain === undefined) return -ENODEV;
    const r = domain.map(iova, pa, size, write);
    // A failed map unmaps what it mapped, which queues its TLBIs.
    yield* this.flushDomain(domain);
    return r;
  }

  /**
   * `dma_unmap_*` → `iommu_unmap`: the leaves cleared, then the gathered TLBI_NH_VA range (ASID,
   * VMID 0) + CMD_SYNC (`arm_smmu_iotlb_sync`), then ATC_INV + CMD_SYNC for an ATS stream
   * (`arm_smmu_atc_inv_domain`). Returns the bytes unmapped, or -ENODEV.
   */
  *unmapDma(sid: number, iova: number, size: number, ats: boolean): Hypercall {
    const domain = this.domainOf(sid);
    if (domain === undefined) return -ENODEV;
    const unmapped = domain.unmap(iova, size);
    yield* this.flushDomain(domain);
    if (ats && unmapped > 0) {
      const span = atcInvalidationSpan(iova, unmapped);
      yield* this.issue([{ kind: 'ATC_INV', sid, ssv: false, ssid: 0, global: false, size: span.size, address: { lo: span.address % 2 ** 32, hi: Math.floor(span.address / 2 ** 32) } }]);
    }
    return unmapped;
  }

  /**
   * Detaches `sid` from its domain: back to identity (bypass STE, CFGI_STE), then the domain is
   * freed — io-pgtable's `tlb_flush_all` (TLBI_NH_ASID + CMD_SYNC), its tables and CD table back
   * to the host's pool — and, for an ATS stream, ATC_INV of everything.
   */
  *detachDomain(sid: number, ats: boolean): Hypercall {
    const domain = this.domainOf(sid);
    if (domain === undefined || this.domains === undefined) return -ENODEV;
    const r = yield* this.attachIdentity(sid, ats);
    this.domains.release(domain);
    yield* this.flushDomain(domain);
    if (ats) yield* this.issue([{ kind: 'ATC_INV', sid, ssv: false, ssid: 0, global: false, size: 52, address: { lo: 0, hi: 0 } }]);
    return r;
  }
}
