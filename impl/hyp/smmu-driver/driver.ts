/**
 * The pKVM hypervisor's SMMUv3 driver as posted: the v5/v6-era text of
 * `drivers/iommu/arm/arm-smmu-v3/pkvm/arm-smmu-v3.c` (series-as-posted.md §0 DRV-v6e, §2.4–§2.11),
 * rule by rule. EL2 owns the SMMU (its MMIO frame, a command queue and a stream table the host
 * kernel allocated and donated at init); the host keeps programming what it believes is a real
 * SMMU, and every register access traps to `hostRegisterAccess` (`smmu_dabt_device`).
 *
 * Provenance tags on each rule: `posted v6-era` (DRV-v6e), `v4 mail` (DRV-v4), `UP-2026`
 * (mem_protect.c), `inferred` (no public text; a choice, written down). A `WARN_ON` at EL2 is a
 * hypervisor panic (`warnOn`, impl/hyp/panic.ts). Each difference of the hardened design
 * (`v6-hardened`, impl/hyp/design.ts) is a named knob of `DriverOptions`, off in the posted one.
 */
import { E2BIG, EINVAL, ENOMEM, EPERM } from '../../arch/errno.js';
import { type PhysicalMemory } from '../../arch/physical-memory.js';
import { CMD_BYTES, CMD_OP, CS_IRQ, CS_SEV, type Command, checkCommand, decodeCommand } from '../../arch/smmu/commands.js';
import { CR0_ATSCHK, CR0_CMDQEN, CR0_EVTQEN, CR0_PRIQEN, CR0_SMMUEN, GBPA_ABORT, GBPA_UPDATE, REG, SMMU_FRAME_SIZE, STRTAB_FMT_2LVL, STRTAB_FMT_LINEAR, decodeStrtabBaseCfg, encodeStrtabBaseCfg } from '../../arch/smmu/registers.js';
import { STE_BYTES, STE_CONFIG, decodeSte } from '../../arch/smmu/ste.js';
import { type U64, bits, u64 } from '../../arch/u64.js';
import { type TablePageAllocator } from '../../pgtable/page-allocator.js';
import { type IdmapHookPlacement } from '../host-stage2.js';
import { type Hypervisor, type MmioAccess, type YieldPoint } from '../hypervisor.js';
import { type IoPgtableS2Regs } from '../../pgtable/io-pgtable-arm.js';
import { type IdmapTlbOps } from '../iommu/idmap.js';
import { HypervisorPanic, warnOn, warnOnErr } from '../panic.js';
import { HypCmdq } from './cmdq.js';
import { qIdx, queueIncCons, queueSpace } from './llq.js';
import { type SmmuFeatures, probeSmmu } from './probe.js';
import { type EntryAccess, type EntryUpdateKind, writeEntry, writeSteAsPosted } from './ste-writer.js';
import { buildS2RangeInvalidation } from './tlbi-range.js';

const PAGE = 4096;
/** IDR0 bits the host must not see: S2P bit0, HYP bit9, MSI bit13, VMID16 bit18 (posted v6-era). */
const IDR0_HIDDEN = (1 << 0) | (1 << 9) | (1 << 13) | (1 << 18);
const IDR0_ATS = 1 << 10;
/** Linux's CR1: table and queue accesses ISH, WB/WB (posted v6-era `cr1_template`). */
export const CR1_TEMPLATE = 0xd75;
/** STRTAB_SPLIT of Linux, required by the series for 2-level tables. */
const STRTAB_SPLIT = 8;
/** `STRTAB_MAX_L1_ENTRIES` (Linux: 1 << 17). */
const STRTAB_MAX_L1_ENTRIES = 2 ** 17;
/** The host queue's `max_n_shift` is clamped to 19 (posted v6-era `smmu_emulate_cmdq_enable`). */
const HOST_CMDQ_MAX_SHIFT = 19;
/** EVTQ_ENT_SZ_SHIFT (32-byte records) and PRIQ_ENT_SZ_SHIFT (16-byte records). */
const EVTQ_ENT_SZ_SHIFT = 5;
const PRIQ_ENT_SZ_SHIFT = 4;
/** `sizeof(struct arm_smmu_strtab_l2)`: 256 STEs of 64 bytes. */
const STRTAB_L2_BYTES = 2 ** STRTAB_SPLIT * STE_BYTES;

export interface DriverOptions {
  // --- Design variants argued in the review threads (impl/hyp/design.ts) ---
  /** Mask IDR0.ATS and force EATS = 0 in shadowed STEs ("just hide ATS", v6 review 04/25). */
  readonly hideAts?: boolean;
  /**
   * After every completed stage-2 invalidation, ATC_INV (whole span) for each stream whose
   * shadowed STE enables ATS, then CMD_SYNC (design variant `v6-atc-inv`, v6 review 04/25). The
   * ATC_INV goes out only once the TLBI's CMD_SYNC completed (smmuv3-arch.md §3.5).
   */
  readonly atcInvalidation?: boolean;
  /** 'range' (posted); 'vmid': one TLBI_S12_VMALL for VMID 0 instead (v6 review 04/25). */
  readonly invalidation?: 'range' | 'vmid';
  /**
   * Leave out the TLBI_NH_ALL (VMID 0) + CMD_SYNC after each stage-2 range invalidation (design
   * variant `no-tlbi-nh-after-s2`, issue 13): TLBI_S2_IPA is not required to remove the combined
   * S1+S2 entries of the host's nested DMA domains (smmuv3-arch.md §3.3 Scope).
   */
  readonly noTlbiNhAfterS2?: boolean;
  /** GKI-style idmap: memory mapped with blocks, split on partial unmap (≤ 6.13 io-pgtable). */
  readonly idmapMemoryBlocks?: boolean;
  /** 'shadow-idmap' (posted) or 'host-stage2': the CPU stage-2 itself (v6 review 08/25). */
  readonly dmaStage2?: 'shadow-idmap' | 'host-stage2';
  /** With 'host-stage2': the host stage-2 is fully populated at boot. */
  readonly prepopulateHostStage2?: boolean;
  /**
   * Where the host stage-2 calls the IOMMU hook: 'set-owner-only' (v4 mail; the v6 hunk of
   * mem_protect.c is not public, so this is a knob) or 'every-owner-change' (v6-hardened).
   */
  readonly hookPlacement?: IdmapHookPlacement;

  // --- v6-hardened: one knob per fix of the posted code (README "Design variants") ---
  /**
   * Drop host commands this SMMU would reject (reserved encodings, and RESUME / STALL_TERM
   * without the stall model, PRI_RESP without PRI, ATC_INV without ATS) instead of forwarding
   * them: one stops the hypervisor's queue with CERROR_ILL (finding host-command-stops-hyp-queue).
   */
  readonly rejectUnsupportedCommands?: boolean;
  /** Skip a filtered host command without the posted `WARN_ON(skip)` (a panic). */
  readonly dropFilteredCommands?: boolean;
  /**
   * Trapped accesses the posted code WARNs on (a wrong access width, a write to an ID or
   * read-only register, an unknown offset, a base register written while its queue or the SMMU
   * is enabled, CR1 other than the template, EVTQEN/PRIQEN 1 → 0, SMMUEN without CMDQEN, a queue
   * or stream table that cannot be shared, CMDQEN cleared while SMMUEN stays set) are refused:
   * the access is ignored, or the CR0 bit is kept as it was.
   */
  readonly refuseBadRegisterAccess?: boolean;
  /** Write the CMD_SYNC CS=SIG_IRQ → SEV conversion back into the forwarded command (v4 mail). */
  readonly writeBackSyncConversion?: boolean;
  /** Accept only 0 in `*_IRQ_CFG0` (the MSI address the SMMU would write to, untranslated). */
  readonly rejectIrqCfg?: boolean;
  /** Move live STEs with Linux's hitless writer (`arm_smmu_write_entry`, v8's plan). */
  readonly linuxHitlessWriter?: boolean;
  /**
   * Keep CR0.ATSCHK set in the hardware whenever it has IDR0.ATS, whatever the host writes
   * (inferred fix, in no posted version). With ATSCHK = 0 the SMMU lets every Translated
   * transaction through without looking at the STE (smmuv3-arch.md §CR0), and a host that is
   * shown no ATS (hideAts) never sets it: Linux sets ATSCHK only "if FEAT_ATS".
   */
  readonly forceAtsCheck?: boolean;
  /**
   * TLB maintenance is not skipped while the host keeps the emulated SMMU disabled: the
   * hypervisor's own queue stays enabled in the hardware once the host first enabled it (the
   * host's CMDQEN then only gates the emulation of the host's queue, as GKI owns CR0.CMDQEN), every
   * idmap TLBI goes out, and the SMMUEN 0 → 1 edge also invalidates everything (CFGI_ALL,
   * TLBI_S12_VMALL VMID 0, CMD_SYNC). The posted driver skips every TLBI while disabled (finding
   * smmu-disabled-skips-tlbi).
   */
  readonly invalidateWhileDisabled?: boolean;
}

/** The host's view of the emulated SMMU: shadow registers the real SMMU never sees. */
interface HostView {
  /** `smmu->cr0`: the host's last CR0 write. */
  cr0: number;
  /** `cmdq_host.q_base`, `.llq.prod`, `.llq.cons`, `.llq.max_n_shift`. */
  cmdqBase: U64;
  cmdqProd: number;
  cmdqCons: number;
  cmdqShift: number;
  /** `host_ste_base`, `host_ste_cfg`. */
  strtabBase: U64;
  strtabBaseCfg: number;
  /** `evtq_base`, `priq_base`: recorded, and passed through to the hardware. */
  evtqBase: U64;
  priqBase: U64;
  /** Host pages currently shared and pinned to the hypervisor, per structure (for the checks). */
  pinnedCmdq: number[];
  pinnedStrtab: number[];
  pinnedEvtq: number[];
  pinnedPriq: number[];
}

const ALL_ONES = u64(0xffff_ffff, 0xffff_ffff);
const ZERO = u64(0, 0);

function and64(a: U64, b: U64): U64 {
  return u64((a.lo & b.lo) >>> 0, (a.hi & b.hi) >>> 0);
}

/** `Q_BASE_ADDR_MASK` GENMASK(51, 5) and `Q_BASE_LOG2SIZE` GENMASK(4, 0). */
function queueBaseAddr(qBase: U64): number {
  return bits(qBase.lo, qBase.hi, 51, 5) * 32;
}

function queueLog2(qBase: U64): number {
  return qBase.lo & 0x1f;
}

export class HypSmmuDriver implements IdmapTlbOps {
  features: SmmuFeatures | undefined;
  cmdq: HypCmdq | undefined;
  strtab = { base: 0, fmt: STRTAB_FMT_LINEAR, log2size: 0, bytes: 0, l2: new Map<number, number>() };
  readonly host: HostView = {
    cr0: 0,
    cmdqBase: ZERO,
    cmdqProd: 0,
    cmdqCons: 0,
    cmdqShift: 0,
    strtabBase: ZERO,
    strtabBaseCfg: 0,
    evtqBase: ZERO,
    priqBase: ZERO,
    pinnedCmdq: [],
    pinnedStrtab: [],
    pinnedEvtq: [],
    pinnedPriq: [],
  };
  /** Refusals of the hardened design (where the posted code would have panicked). */
  readonly refusals: string[] = [];
  /** How the runner lets hardware act while the driver waits (ARCHITECTURE §4). */
  stepHardware: (point: YieldPoint) => void = () => undefined;
  /** The stage-2 (root and VTCR fields) shadowed STEs point at: the idmap's or the host's. */
  stage2: IoPgtableS2Regs | undefined;
  /** How a live STE is moved to its new value; replaceable (a test-only bug swaps it). */
  entryWriter: (access: EntryAccess, target: readonly U64[], sync: () => void) => EntryUpdateKind;
  /** Streams whose hardware STE ever had EATS != 0 (the ATC_INV targets of `atcInvalidation`). */
  readonly atsStreams = new Set<number>();
  /** The host pages the kernel allocated for the hypervisor (smmu array, cmdq, stream table). */
  private donatedAtInit: { pfn: number; nrPages: number }[] = [];

  constructor(
    private readonly memory: PhysicalMemory,
    private readonly hyp: Hypervisor,
    readonly base: number,
    private readonly pool: TablePageAllocator,
    readonly options: DriverOptions = {},
    /** Host pages the EL1 part of the driver allocated for EL2 (kernel-allocated, pre-zeroed). */
    private readonly kernelPages: { readonly smmuArray: number; readonly cmdq: number; readonly strtab: number } = { smmuArray: 0, cmdq: 0, strtab: 0 },
  ) {
    this.entryWriter = options.linuxHitlessWriter === true ? writeEntry : writeSteAsPosted;
  }

  private reg(offset: number): number {
    const v = this.memory.read32(this.base + offset);
    return v < 0 ? 0 : v;
  }

  private setReg(offset: number, value: number): void {
    this.memory.write32(this.base + offset, value >>> 0);
  }

  /** A WARN_ON the hardened design turns into a refusal; `true` when refused. */
  private warnOrRefuse(cond: boolean, site: string, knob: boolean | undefined, what: string): boolean {
    if (!cond) return false;
    if (knob === true) {
      this.refusals.push(`${site}: ${what}`);
      return true;
    }
    throw new HypervisorPanic(what, site);
  }

  /** Runs a driver generator to completion here, letting hardware act at each yield. */
  private inline<T>(gen: Generator<YieldPoint, T, void>): T {
    for (;;) {
      const step = gen.next();
      if (step.done === true) return step.value;
      this.stepHardware(step.value);
    }
  }

  // --- init (posted v6-era `smmu_init`, `smmu_init_device`): donations, probe, queue, table ---

  /**
   * `smmu_init` for the one SMMU: donate the smmu array page, the MMIO frame, probe, donate the
   * kernel-allocated command queue and stream table and program their base registers, set
   * GBPA.ABORT. No CR0/CR1/CR2 write, no CFGI_ALL or TLBI: the host's reset, through the
   * emulation, does that (posted v6-era; the still-trusted host runs it next). On failure,
   * `smmu_deinit_device` gives everything back.
   */
  *init(firmwareCoherent = true): Generator<YieldPoint, number, void> {
    const arrayPfn = this.kernelPages.smmuArray / PAGE;
    let r = yield* this.hyp.internal({ kind: 'host_donate_hyp', pfn: arrayPfn, nrPages: 1 }, this.hyp.hostDonateHyp(arrayPfn, 1));
    if (r !== 0) return r;
    r = yield* this.initDevice(firmwareCoherent);
    // smmu_init_pgt: "At least PAGE_SIZE must be supported by all SMMUs".
    if (r === 0 && ((this.features?.pgsizeBitmap ?? 0) & PAGE) === 0) {
      r = -EINVAL;
      yield* this.deinitDevice(Array.from({ length: SMMU_FRAME_SIZE / PAGE }, (_, i) => this.base / PAGE + i));
      this.removeEmulator();
    }
    if (r !== 0) {
      // out_reclaim_smmu: WARN_ON(__pkvm_hyp_donate_host(pfn, nr_pages)).
      warnOnErr(yield* this.hyp.internal({ kind: 'hyp_donate_host', pfn: arrayPfn, nrPages: 1 }, this.hyp.hypDonateHost(arrayPfn, 1)), 'smmu_init: WARN_ON(__pkvm_hyp_donate_host)');
    }
    return r;
  }

  private *initDevice(firmwareCoherent: boolean): Generator<YieldPoint, number, void> {
    // __pkvm_host_donate_hyp_mmio(addr, size, &haddr): one model operation per page.
    const donatedMmio: number[] = [];
    for (let off = 0; off < SMMU_FRAME_SIZE; off += PAGE) {
      const pfn = (this.base + off) / PAGE;
      const r = yield* this.hyp.internal({ kind: 'host_donate_hyp_mmio', pfn }, this.hyp.hostDonateHypMmio(pfn));
      if (r !== 0) {
        yield* this.deinitDevice(donatedMmio);
        return r;
      }
      donatedMmio.push(pfn);
    }
    this.hyp.mmioEmulators.push({ base: this.base, size: SMMU_FRAME_SIZE, access: (a) => this.hostRegisterAccess(a) });
    const r = yield* this.initDeviceInner(firmwareCoherent);
    if (r !== 0) {
      this.removeEmulator();
      yield* this.deinitDevice(donatedMmio);
    }
    return r;
  }

  private removeEmulator(): void {
    const i = this.hyp.mmioEmulators.findIndex((e) => e.base === this.base);
    if (i >= 0) this.hyp.mmioEmulators.splice(i, 1);
  }

  private *initDeviceInner(firmwareCoherent: boolean): Generator<YieldPoint, number, void> {
    const probe = probeSmmu({ idr0: this.reg(REG.IDR0), idr1: this.reg(REG.IDR1), idr3: this.reg(REG.IDR3), idr5: this.reg(REG.IDR5), iidr: this.reg(REG.IIDR) }, firmwareCoherent);
    if (!probe.ok) return probe.errno;
    const f = probe.features;
    this.features = f;
    // smmu_init_cmdq: the kernel part sized and zeroed the queue; inferred: max_n_shift =
    // min(IDR1.CMDQS, 8), one 4 KiB page of 256 commands.
    const cmdqShift = Math.min(f.cmdqShift, 8);
    const cmdqPages = Math.max(1, (2 ** cmdqShift * CMD_BYTES) / PAGE);
    const cmdqBase = this.kernelPages.cmdq;
    let r = yield* this.donate(cmdqBase, cmdqPages);
    if (r !== 0) return r;
    this.cmdq = new HypCmdq(this.memory, this.base, cmdqBase, cmdqShift);
    this.setReg(REG.CMDQ_PROD, 0);
    this.setReg(REG.CMDQ_CONS, 0);
    this.memory.store64(this.base + REG.CMDQ_BASE, (cmdqBase | cmdqShift) >>> 0, Math.floor(cmdqBase / 2 ** 32));
    this.cmdq.reset();
    // smmu_init_strtab: linear for ≤ 8 SID bits (probe), else 2-level with SPLIT 8.
    if (f.twoLevelStrtab) {
      const lastL1 = Math.floor((2 ** f.sidBits - 1) / 2 ** STRTAB_SPLIT);
      const l1Entries = Math.min(lastL1 + 1, STRTAB_MAX_L1_ENTRIES);
      const bytes = l1Entries * 8;
      r = yield* this.donate(this.kernelPages.strtab, Math.ceil(bytes / PAGE));
      if (r !== 0) return r;
      this.strtab = { base: this.kernelPages.strtab, fmt: STRTAB_FMT_2LVL, log2size: Math.log2(l1Entries) + STRTAB_SPLIT, bytes, l2: new Map() };
    } else {
      const bytes = 2 ** f.sidBits * STE_BYTES;
      r = yield* this.donate(this.kernelPages.strtab, Math.ceil(bytes / PAGE));
      if (r !== 0) return r;
      this.strtab = { base: this.kernelPages.strtab, fmt: STRTAB_FMT_LINEAR, log2size: f.sidBits, bytes, l2: new Map() };
    }
    // STRTAB_BASE with RA, then STRTAB_BASE_CFG.
    this.memory.store64(this.base + REG.STRTAB_BASE, (this.strtab.base | 0) >>> 0, (Math.floor(this.strtab.base / 2 ** 32) | (1 << 30)) >>> 0);
    this.setReg(REG.STRTAB_BASE_CFG, encodeStrtabBaseCfg({ fmt: this.strtab.fmt, split: this.strtab.fmt === STRTAB_FMT_2LVL ? STRTAB_SPLIT : 0, log2size: this.strtab.log2size }));
    // smmu_abort_gbpa: wait for GBPA.UPDATE clear, write UPDATE|ABORT|old, wait again.
    r = this.waitGbpaIdle();
    if (r !== 0) return r;
    this.setReg(REG.GBPA, GBPA_UPDATE | GBPA_ABORT | this.reg(REG.GBPA));
    return this.waitGbpaIdle();
  }

  private waitGbpaIdle(): number {
    for (let polls = 0; polls < 64; polls++) if ((this.reg(REG.GBPA) & GBPA_UPDATE) === 0) return 0;
    return -110;
  }

  private *donate(pa: number, nrPages: number): Generator<YieldPoint, number, void> {
    const pfn = pa / PAGE;
    const r = yield* this.hyp.internal({ kind: 'host_donate_hyp', pfn, nrPages }, this.hyp.hostDonateHyp(pfn, nrPages));
    if (r === 0) this.donatedAtInit.push({ pfn, nrPages });
    return r;
  }

  /** `smmu_deinit_device`: give the MMIO, the queue and the table back, each a WARN_ON. */
  private *deinitDevice(mmioPfns: readonly number[]): Generator<YieldPoint, void, void> {
    for (const pfn of mmioPfns) warnOnErr(yield* this.hyp.internal({ kind: 'hyp_donate_host_mmio', pfn }, this.hyp.hypDonateHostMmio(pfn)), 'smmu_deinit_device: WARN_ON(__pkvm_hyp_donate_host_mmio)');
    for (const d of this.donatedAtInit.splice(0)) warnOnErr(yield* this.hyp.internal({ kind: 'hyp_donate_host', pfn: d.pfn, nrPages: d.nrPages }, this.hyp.hypDonateHost(d.pfn, d.nrPages)), 'smmu_deinit_device: WARN_ON(__pkvm_hyp_donate_host)');
    this.cmdq = undefined;
  }

  /** The hypervisor's own structures in (donated) memory: [pa, bytes] (for the checks). */
  ownStructures(): readonly (readonly [number, number])[] {
    const array = this.features === undefined ? [] : [[this.kernelPages.smmuArray, PAGE] as const];
    return [...array, ...this.donatedAtInit.map((d) => [d.pfn * PAGE, d.nrPages * PAGE] as const)];
  }

  // --- stage-2 TLB maintenance for the shadow idmap (posted v6-era `smmu_tlb_inv_range`) ---

  /** IDR3.RIL as probed. */
  get rangeInvalidation(): boolean {
    return this.features?.rangeInvalidation === true;
  }

  /**
   * "Don't bother if SMMU is disabled": the *shadow* SMMUEN, the host's last CR0 write (posted
   * v6-era `is_smmu_enabled`), so TLBIs are skipped while the host keeps the SMMU disabled.
   */
  private enabled(): boolean {
    if (this.cmdq === undefined) return false;
    // Hardened: whenever the hardware queue runs.
    if (this.options.invalidateWhileDisabled === true) return (this.reg(REG.CR0) & CR0_CMDQEN) !== 0;
    return (this.host.cr0 & CR0_SMMUEN) !== 0;
  }

  invalidateRange(iova: number, size: number, granule: number, leaf: boolean): void {
    if (!this.enabled() || this.features === undefined) return;
    const cmdq = this.cmdq as HypCmdq;
    if (this.options.invalidation === 'vmid') {
      // One command wipes stage-2 and the nested stage-1 entries of VMID 0, so no TLBI_NH_ALL.
      warnOnErr(this.inline(cmdq.send({ kind: 'TLBI_S12_VMALL', vmid: 0 })), 'smmu_tlb_inv_range: WARN_ON(smmu_send_cmd(TLBI_S12_VMALL))');
    } else {
      const cmds = buildS2RangeInvalidation({ ril: this.features.rangeInvalidation, minPageShift: 12, fullInvalidationFallback: false }, 0, iova, size, granule, leaf);
      // WARN_ON(smmu_tlb_inv_range_smmu(...)) then WARN_ON(smmu_send_cmd(TLBI_NH_ALL vmid 0)).
      warnOnErr(this.inline(cmdq.issue(cmds, true)), 'smmu_tlb_inv_range: WARN_ON(smmu_tlb_inv_range_smmu)');
      // posted v6-era: the combined entries of nested (host stage-1) streams, VMID 0.
      if (this.options.noTlbiNhAfterS2 !== true) warnOnErr(this.inline(cmdq.send({ kind: 'TLBI_NH_ALL', vmid: 0 })), 'smmu_tlb_inv_range: WARN_ON(smmu_send_cmd(TLBI_NH_ALL))');
    }
    this.invalidateAtcs();
  }

  /** `tlb_flush_all` is not in the series' flush ops; only the variants call this. */
  invalidateAll(): void {
    if (!this.enabled()) return;
    warnOnErr(this.inline((this.cmdq as HypCmdq).send({ kind: 'TLBI_S12_VMALL', vmid: 0 })), 'invalidateAll: WARN_ON(smmu_send_cmd)');
    this.invalidateAtcs();
  }

  /** `atcInvalidation`: after the TLBI's CMD_SYNC, ATC_INV of the whole span per ATS stream. */
  private invalidateAtcs(): void {
    if (this.options.atcInvalidation !== true || this.atsStreams.size === 0) return;
    const cmds: Command[] = [...this.atsStreams].sort((a, b) => a - b).map((sid) => ({ kind: 'ATC_INV', sid, ssv: false, ssid: 0, global: false, size: 52, address: u64(0, 0) }));
    warnOnErr(this.inline((this.cmdq as HypCmdq).issue(cmds, true)), 'atc_inv: WARN_ON');
  }

  // --- STE shadowing (posted v6-era `smmu_reshadow_ste`, `smmu_attach_stage_2`) ---

  /**
   * `smmu_attach_stage_2` on a copy of the host's eight dwords: V=0 or ABORT → dwords 2-3 zeroed;
   * NESTED → -EINVAL; otherwise CFG |= 0b010 (bypass → S2, S1 → nested, S2 stays S2, reserved
   * values stay reserved), dword 1 kept but SHCFG := incoming, dword 2 := the idmap's VTCR + VMID
   * 0 + S2AA64 + S2R + S2PTW (no S2AFFD), dword 3 := S2TTB, dwords 4-7 the host's.
   */
  shadowSte(hostWords: readonly U64[]): U64[] | number {
    const out = hostWords.map((w) => u64(w.lo, w.hi));
    const w0 = out[0] as U64;
    const cfg = (w0.lo >>> 1) & 7;
    if ((w0.lo & 1) === 0 || cfg === STE_CONFIG.ABORT) {
      out[2] = ZERO;
      out[3] = ZERO;
      return out;
    }
    if (cfg === STE_CONFIG.NESTED) return -EINVAL;
    const stage2 = this.stage2;
    if (stage2 === undefined) return -EINVAL;
    // SHCFG is dword 1 bits 45:44 (STE bits 109:108) → hi bits 13:12.
    const w1 = out[1] as U64;
    let w1lo = w1.lo;
    // hideAts (variant): EATS (dword 1 bits 29:28) forced to 0.
    if (this.options.hideAts === true) w1lo &= ~(3 << 28);
    out[1] = u64(w1lo >>> 0, ((w1.hi & ~(3 << 12)) | (1 << 12)) >>> 0);
    const v = stage2.vtcr;
    // Dword 2: VTCR in bits 50:32 (S2T0SZ 5:0, S2SL0 7:6, S2IR0 9:8, S2OR0 11:10, S2SH0 13:12,
    // S2TG 15:14, S2PS 18:16), S2VMID 15:0 = 0, S2AA64 bit 51, S2PTW bit 54, S2R bit 58.
    const vtcr = (v.tsz & 0x3f) | ((v.sl & 3) << 6) | ((v.irgn & 3) << 8) | ((v.orgn & 3) << 10) | ((v.sh & 3) << 12) | ((v.tg & 3) << 14) | ((v.ps & 7) << 16);
    out[2] = u64(0, (vtcr | (1 << 19) | (1 << 22) | (1 << 26)) >>> 0);
    // Dword 3: S2TTB bits 51:4.
    out[3] = u64((stage2.vttbr % 2 ** 32) - ((stage2.vttbr % 2 ** 32) % 16), Math.floor(stage2.vttbr / 2 ** 32) & 0xf_ffff);
    out[0] = u64((w0.lo | (1 << 2)) >>> 0, w0.hi);
    return out;
  }

  /** `smmu_reshadow_ste(sid, leaf)`; returns 0 or an errno (the caller's skip → WARN). */
  *reshadowSte(sid: number, leaf: boolean): Generator<YieldPoint, number, void> {
    // "Linux only uses leaf = 1"; "we rely on Linux only issuing CFGI_STE ... when enabled".
    const log2 = decodeStrtabBaseCfg(this.host.strtabBaseCfg).log2size;
    if (!leaf || (this.host.cr0 & CR0_SMMUEN) === 0 || sid >= 2 ** log2) return -EINVAL;
    const cmdq = this.cmdq as HypCmdq;
    let hostWords: U64[];
    let at: number;
    if (this.strtab.fmt === STRTAB_FMT_LINEAR) {
      if (sid >= 2 ** this.strtab.log2size) return -E2BIG;
      at = this.strtab.base + sid * STE_BYTES;
      hostWords = this.readWords(this.hostStrtabBase() + sid * STE_BYTES, 8);
    } else {
      const l1 = Math.floor(sid / 2 ** STRTAB_SPLIT);
      if (l1 >= 2 ** (this.strtab.log2size - STRTAB_SPLIT)) return -E2BIG;
      const host = yield* this.hostL2Ste(sid);
      if (typeof host === 'number') return host;
      hostWords = host;
      let l2 = this.strtab.l2.get(l1);
      if (l2 === undefined) {
        // "No hypervisor entry, first time the L2 is populated": from the IOMMU pool, and the
        // L1 descriptor written with no CFGI (the final CFGI_STE has Leaf = 1).
        const page = this.pool.alloc(STRTAB_L2_BYTES);
        if (page === undefined) return -ENOMEM;
        l2 = page;
        this.strtab.l2.set(l1, l2);
        this.memory.store64(this.strtab.base + l1 * 8, (l2 | (STRTAB_SPLIT + 1)) >>> 0, Math.floor(l2 / 2 ** 32));
      }
      at = l2 + (sid % 2 ** STRTAB_SPLIT) * STE_BYTES;
    }
    const target = this.shadowSte(hostWords);
    if (typeof target === 'number') return target;
    // Recorded before the STE write (a device may use ATS as soon as EATS is visible).
    const shadow = decodeSte(target);
    if (shadow.v && shadow.eats !== 0) this.atsStreams.add(sid);
    const cfgi: Command = { kind: 'CFGI_STE', ssec: false, sid, leaf: true };
    this.entryWriter(
      {
        read: (i) => this.memory.peek64(at + i * 8),
        write: (i, w) => {
          this.memory.store64(at + i * 8, w.lo, w.hi);
          this.stepHardware({ at: 'ste_store' });
        },
      },
      target,
      () => warnOnErr(this.inline(cmdq.send(cfgi)), 'smmu_reshadow_ste: WARN_ON(smmu_send_cmd(CFGI_STE))'),
    );
    if (this.options.linuxHitlessWriter === true) return 0; // the writer synced after its last step
    return yield* cmdq.send(cfgi);
  }

  private hostStrtabBase(): number {
    // STRTAB_BASE_ADDR_MASK GENMASK(51, 6).
    return bits(this.host.strtabBase.lo, this.host.strtabBase.hi, 51, 6) * 64;
  }

  private readWords(pa: number, n: number): U64[] {
    const out: U64[] = [];
    for (let i = 0; i < n; i++) out.push(this.memory.peek64(pa + i * 8));
    return out;
  }

  /**
   * `smmu_get_host_l2_ste`: the host L1 descriptor from the pinned L1 table, Span 0 → -EINVAL,
   * the host's L2 table (16 KiB) shared and pinned around the copy, unshared after (WARN_ON).
   */
  private *hostL2Ste(sid: number): Generator<YieldPoint, U64[] | number, void> {
    const desc = this.memory.peek64(this.hostStrtabBase() + Math.floor(sid / 2 ** STRTAB_SPLIT) * 8);
    if ((desc.lo & 0x1f) === 0) return -EINVAL;
    const l2 = bits(desc.lo, desc.hi, 51, 6) * 64;
    const shared = yield* this.sharePages(l2, STRTAB_L2_BYTES);
    if (shared !== 0) return shared;
    const words = this.readWords(l2 + (sid % 2 ** STRTAB_SPLIT) * STE_BYTES, 8);
    warnOnErr(yield* this.unsharePages(l2, STRTAB_L2_BYTES), 'smmu_get_host_l2_ste: WARN_ON(smmu_unshare_pages)');
    return words;
  }

  // --- share / pin of host structures (posted v6-era `smmu_share_pages`, `smmu_unshare_pages`) ---

  private static pagesOf(pa: number, bytes: number): { first: number; nr: number } {
    const first = Math.floor(pa / PAGE);
    const nr = Math.ceil((bytes + (pa % PAGE)) / PAGE);
    return { first, nr };
  }

  /** Shares every page (undoing on the first failure: -EPERM), then pins the whole range. */
  private *sharePages(pa: number, bytes: number): Generator<YieldPoint, number, void> {
    const { first, nr } = HypSmmuDriver.pagesOf(pa, bytes);
    for (let i = 0; i < nr; i++) {
      const r = yield* this.hyp.internal({ kind: 'host_share_hyp', pfn: first + i }, this.hyp.hostShareHyp(first + i));
      if (r !== 0) {
        for (let j = i - 1; j >= 0; j--) yield* this.hyp.internal({ kind: 'host_unshare_hyp', pfn: first + j }, this.hyp.hostUnshareHyp(first + j));
        return -EPERM;
      }
    }
    const r = yield* this.hyp.internal({ kind: 'hyp_pin_shared_mem', pfn: first, nrPages: nr }, this.hyp.hypPinSharedMem(first, nr));
    if (r !== 0) for (let i = 0; i < nr; i++) yield* this.hyp.internal({ kind: 'host_unshare_hyp', pfn: first + i }, this.hyp.hostUnshareHyp(first + i));
    return r;
  }

  /** Unpins the range, then unshares page by page; returns the first unshare error. */
  private *unsharePages(pa: number, bytes: number): Generator<YieldPoint, number, void> {
    const { first, nr } = HypSmmuDriver.pagesOf(pa, bytes);
    yield* this.hyp.internal({ kind: 'hyp_unpin_shared_mem', pfn: first, nrPages: nr }, this.hyp.hypUnpinSharedMem(first, nr));
    for (let i = 0; i < nr; i++) {
      const r = yield* this.hyp.internal({ kind: 'host_unshare_hyp', pfn: first + i }, this.hyp.hostUnshareHyp(first + i));
      if (r !== 0) return r;
    }
    return 0;
  }

  private static pageList(pa: number, bytes: number): number[] {
    const { first, nr } = HypSmmuDriver.pagesOf(pa, bytes);
    return Array.from({ length: nr }, (_, i) => first + i);
  }

  // --- trap-and-emulate of host register accesses (posted v6-era `smmu_dabt_device`) ---

  /**
   * A trapped host access to the SMMU frame; returns the value read (0 for writes). Offsets are
   * matched exactly, with the width each register allows (64-bit registers only as 64-bit
   * accesses): anything else leaves `mask = 0`, and `WARN_ON(!mask)` panics. A write goes to the
   * hardware as `val & mask`, a read returns `hw & mask`, except for the registers the
   * hypervisor shadows (CMDQ_*, STRTAB_*, GBPA).
   */
  *hostRegisterAccess(a: MmioAccess): Generator<YieldPoint, U64, void> {
    const { offset, size, write } = a;
    const val = u64(a.lo >>> 0, size === 8 ? a.hi >>> 0 : 0);
    const readOnly = write ? ZERO : ALL_ONES;
    let mask = ZERO;
    const len32 = size === 4;
    const len64 = size === 8;
    switch (offset) {
      case REG.IDR0:
        if (!len32) break;
        // "Clear stage-2 support, hide MSI to avoid write back to cmdq" (and VMID16, HYP).
        mask = u64((readOnly.lo & ~IDR0_HIDDEN & (this.options.hideAts === true ? ~IDR0_ATS : ~0)) >>> 0, 0);
        break;
      case REG.CMDQ_BASE:
        if (!len64) break;
        if (!write) return this.host.cmdqBase;
        if (this.warnOrRefuse((this.host.cr0 & CR0_CMDQEN) !== 0, 'smmu_dabt_device: WARN_ON(is_cmdq_enabled) on CMDQ_BASE', this.options.refuseBadRegisterAccess, 'CMDQ_BASE written while the command queue is enabled')) return ZERO;
        this.host.cmdqBase = val;
        return ZERO;
      case REG.CMDQ_PROD:
        if (!len32) break;
        if (!write) return u64(this.host.cmdqProd, 0);
        this.host.cmdqProd = val.lo;
        warnOnErr(yield* this.emulateCmdqInsert(), 'smmu_dabt_device: WARN_ON(smmu_emulate_cmdq_insert)');
        return ZERO;
      case REG.CMDQ_CONS:
        if (!len32) break;
        if (!write) return u64((this.host.cmdqCons | (this.reg(REG.CMDQ_CONS) & (0x7f << 24))) >>> 0, 0);
        if (this.warnOrRefuse((this.host.cr0 & CR0_CMDQEN) !== 0, 'smmu_dabt_device: WARN_ON(is_cmdq_enabled) on CMDQ_CONS', this.options.refuseBadRegisterAccess, 'CMDQ_CONS written while the command queue is enabled')) return ZERO;
        this.host.cmdqCons = val.lo;
        return ZERO;
      case REG.STRTAB_BASE:
        if (!len64) break;
        if (!write) return this.host.strtabBase;
        // "Must only be written when SMMU_CR0.SMMUEN == 0": else break, and WARN_ON(!mask).
        if ((this.host.cr0 & CR0_SMMUEN) !== 0) break;
        this.host.strtabBase = val;
        return ZERO;
      case REG.STRTAB_BASE_CFG:
        if (!len32) break;
        if (!write) return u64(this.host.strtabBaseCfg, 0);
        if ((this.host.cr0 & CR0_SMMUEN) !== 0) break;
        this.host.strtabBaseCfg = val.lo;
        return ZERO;
      case REG.GBPA:
        if (!len32) break;
        // "Ignore write, always read to abort."
        return write ? ZERO : u64(GBPA_ABORT, 0);
      case REG.CR0:
        if (!len32) break;
        if (write) {
          const value = yield* this.hostCr0Write(val.lo);
          // Hardened (invalidateWhileDisabled): the hypervisor's queue, once enabled, stays so.
          const keep = this.options.invalidateWhileDisabled === true ? this.reg(REG.CR0) & CR0_CMDQEN : 0;
          const atsCheck = this.options.forceAtsCheck === true && (this.reg(REG.IDR0) & IDR0_ATS) !== 0 ? CR0_ATSCHK : 0;
          this.setReg(REG.CR0, value | keep | atsCheck);
          return ZERO;
        }
        mask = ALL_ONES;
        break;
      case REG.CR1:
        if (!len32) break;
        if (write) {
          // "Don't mess with shareability/cacheability": WARN_ON(val != template), then the template.
          this.warnOrRefuse(val.lo !== CR1_TEMPLATE, 'smmu_dabt_device: WARN_ON(val != cr1_template)', this.options.refuseBadRegisterAccess, `CR1 written with 0x${val.lo.toString(16)}`);
          this.setReg(REG.CR1, CR1_TEMPLATE);
          return ZERO;
        }
        mask = ALL_ONES;
        break;
      case REG.EVTQ_BASE:
        if (!len64) break;
        if (write) {
          if ((this.host.cr0 & CR0_EVTQEN) !== 0) break;
          this.host.evtqBase = val;
        }
        mask = ALL_ONES;
        break;
      case REG.PRIQ_BASE:
        if (!len64) break;
        if (write) {
          if ((this.host.cr0 & CR0_PRIQEN) !== 0) break;
          this.host.priqBase = val;
        }
        mask = ALL_ONES;
        break;
      // "Allowed 32 bit registers", passed through.
      case REG.EVTQ_PROD:
      case REG.EVTQ_CONS:
      case REG.EVTQ_IRQ_CFG1:
      case REG.EVTQ_IRQ_CFG2:
      case REG.PRIQ_PROD:
      case REG.PRIQ_CONS:
      case REG.PRIQ_IRQ_CFG1:
      case REG.PRIQ_IRQ_CFG2:
      case REG.GERRORN:
      case REG.GERROR_IRQ_CFG1:
      case REG.GERROR_IRQ_CFG2:
      case REG.IRQ_CTRLACK:
      case REG.IRQ_CTRL:
      case REG.CR0ACK:
      case REG.CR2:
        if (!len32) break;
        mask = ALL_ONES;
        break;
      // "Allowed 64 bit registers", passed through: the MSI addresses (series-as-posted.md §5.1).
      case REG.EVTQ_IRQ_CFG0:
      case REG.PRIQ_IRQ_CFG0:
      case REG.GERROR_IRQ_CFG0:
        if (!len64) break;
        if (write && this.options.rejectIrqCfg === true && (val.lo !== 0 || val.hi !== 0)) {
          this.refusals.push(`IRQ_CFG0 at 0x${offset.toString(16)}: only 0 is accepted`);
          return ZERO;
        }
        mask = ALL_ONES;
        break;
      // "Allowed RO 32 bit registers".
      case REG.IIDR:
      case REG.IDR5:
      case REG.IDR3:
      case REG.IDR1:
      case REG.GERROR:
        if (!len32) break;
        mask = readOnly;
        break;
      default:
        break;
    }
    if (mask.lo === 0 && mask.hi === 0) {
      const what = `host ${write ? 'write' : 'read'} of ${size} bytes at offset 0x${offset.toString(16)}`;
      // WARN_ON(!mask) (the hardened design ignores the access instead).
      this.warnOrRefuse(true, 'smmu_dabt_device: WARN_ON(!mask)', this.options.refuseBadRegisterAccess, what);
      return ZERO;
    }
    if (write) {
      const out = and64(val, mask);
      if (len64) this.memory.store64(this.base + offset, out.lo, out.hi);
      else this.setReg(offset, out.lo);
      return ZERO;
    }
    if (len64) return and64(this.memory.peek64(this.base + offset), mask);
    return u64((this.reg(offset) & mask.lo) >>> 0, 0);
  }

  /**
   * The CR0 write (posted v6-era): `smmu->cr0 = val` first, then the side effects in order —
   * CMDQEN 0→1 shares and pins the host queue, 1→0 unshares; EVTQEN/PRIQEN 0→1 share and pin the
   * queue, 1→0 `WARN_ON(1)`; SMMUEN 0→1 `WARN_ON(!cmdq enabled)` then shares and pins the host
   * stream table (formats must match), 1→0 unshares — each failure a WARN_ON. The host's value
   * is then written to the hardware whatever happened. Returns the value for the hardware
   * (the hardened design may keep bits as they were instead of panicking).
   */
  private *hostCr0Write(value: number): Generator<YieldPoint, number, void> {
    const hardened = this.options.refuseBadRegisterAccess;
    const last = this.host.cr0;
    let next = value;
    // Hardened: CMDQEN cleared while SMMUEN stays set would stop every later TLBI (a panic at
    // the next donation in the posted design: series-as-posted.md finding 2, probe A).
    if (hardened === true && (last & CR0_CMDQEN) !== 0 && (next & CR0_CMDQEN) === 0 && (next & CR0_SMMUEN) !== 0) {
      this.refusals.push('cr0: CMDQEN cleared while SMMUEN is set; kept');
      next |= CR0_CMDQEN;
    }
    if (hardened === true && (last & (CR0_EVTQEN | CR0_PRIQEN) & ~next) !== 0) {
      this.refusals.push('cr0: disabling the event or PRI queue is not supported; kept enabled');
      next |= last & (CR0_EVTQEN | CR0_PRIQEN);
    }
    if (hardened === true && (last & CR0_SMMUEN) === 0 && (next & CR0_SMMUEN) !== 0 && (next & CR0_CMDQEN) === 0) {
      this.refusals.push('cr0: SMMUEN without CMDQEN; SMMUEN not set');
      next &= ~CR0_SMMUEN;
    }
    this.host.cr0 = next;
    // CMDQEN.
    if ((last & CR0_CMDQEN) === 0 && (next & CR0_CMDQEN) !== 0) {
      this.host.cmdqShift = Math.min(queueLog2(this.host.cmdqBase), HOST_CMDQ_MAX_SHIFT);
      const base = queueBaseAddr(this.host.cmdqBase);
      const bytes = 2 ** this.host.cmdqShift * CMD_BYTES;
      const r = yield* this.sharePages(base, bytes);
      if (this.warnOrRefuse(r !== 0, 'smmu_emulate_cmdq_enable: WARN_ON(smmu_share_pages)', hardened, `host command queue at 0x${base.toString(16)} cannot be shared (${r})`)) {
        next &= ~CR0_CMDQEN;
        this.host.cr0 = next;
      } else {
        this.host.pinnedCmdq = HypSmmuDriver.pageList(base, bytes);
      }
    } else if ((last & CR0_CMDQEN) !== 0 && (next & CR0_CMDQEN) === 0) {
      const base = queueBaseAddr(this.host.cmdqBase);
      warnOnErr(yield* this.unsharePages(base, 2 ** this.host.cmdqShift * CMD_BYTES), 'smmu_emulate_cmdq_disable: WARN_ON(smmu_unshare_pages)');
      this.host.pinnedCmdq = [];
    }
    // EVTQEN / PRIQEN: "Share PRI and EVTQ to avoid the host using them to write to protected
    // memory. However, panic on disable".
    for (const [bit, which, shift] of [
      [CR0_EVTQEN, 'evtq', EVTQ_ENT_SZ_SHIFT],
      [CR0_PRIQEN, 'priq', PRIQ_ENT_SZ_SHIFT],
    ] as const) {
      if ((last & bit) === 0 && (next & bit) !== 0) {
        const qBase = which === 'evtq' ? this.host.evtqBase : this.host.priqBase;
        const base = queueBaseAddr(qBase);
        const bytes = 2 ** (queueLog2(qBase) + shift);
        const r = yield* this.sharePages(base, bytes);
        if (this.warnOrRefuse(r !== 0, 'smmu_emulate_queue: WARN_ON(smmu_share_pages)', hardened, `host ${which} at 0x${base.toString(16)} cannot be shared (${r})`)) {
          next &= ~bit;
          this.host.cr0 = next;
        } else if (which === 'evtq') this.host.pinnedEvtq = HypSmmuDriver.pageList(base, bytes);
        else this.host.pinnedPriq = HypSmmuDriver.pageList(base, bytes);
      } else if ((last & bit) !== 0 && (next & bit) === 0) {
        warnOn(true, `smmu_dabt_device: WARN_ON(1) on ${which === 'evtq' ? 'EVTQEN' : 'PRIQEN'} 1 -> 0`);
      }
    }
    // SMMUEN.
    if ((last & CR0_SMMUEN) === 0 && (next & CR0_SMMUEN) !== 0) {
      // smmu_emulate_enable: "Enabling SMMU without CMDQ, means TLB invalidation won't work."
      // Hardened: CMDQEN may have been refused just above (its queue could not be shared), after
      // the early SMMUEN-without-CMDQEN refusal looked at the host's value (found by a v6-hardened
      // campaign with the host-attack generators: CMDQ_BASE in an MMIO gap, then CR0 = 0xd).
      if (this.warnOrRefuse((next & CR0_CMDQEN) === 0, 'smmu_emulate_enable: WARN_ON(!is_cmdq_enabled)', hardened, 'SMMUEN without an enabled command queue; SMMUEN not set')) {
        next &= ~CR0_SMMUEN;
        this.host.cr0 = next;
        return next;
      }
      const r = yield* this.updateSteShadow(true);
      if (this.warnOrRefuse(r !== 0, 'smmu_emulate_enable: WARN_ON(smmu_update_ste_shadow)', hardened, `host stream table refused (${r})`)) {
        next &= ~CR0_SMMUEN;
        this.host.cr0 = next;
      } else if (this.options.invalidateWhileDisabled === true && this.cmdq !== undefined) {
        // Hardened: what the SMMU kept while the emulated SMMU was disabled goes now.
        warnOnErr(yield* this.cmdq.issue([{ kind: 'CFGI_ALL', ssec: false, sid: 0 }, { kind: 'TLBI_S12_VMALL', vmid: 0 }], true), 'invalidate_on_enable: WARN_ON');
      }
    } else if ((last & CR0_SMMUEN) !== 0 && (next & CR0_SMMUEN) === 0) {
      warnOnErr(yield* this.updateSteShadow(false), 'smmu_emulate_disable: WARN_ON(smmu_update_ste_shadow)');
    }
    return next;
  }

  /**
   * `smmu_update_ste_shadow`: the host's format must be the hypervisor's ("Linux doesn't change
   * the fmt nor size of the strtab in the run time"), then the L1 table (2-level) or the whole
   * linear table is shared and pinned (enable) or unshared (disable).
   */
  private *updateSteShadow(enable: boolean): Generator<YieldPoint, number, void> {
    const cfg = decodeStrtabBaseCfg(this.host.strtabBaseCfg);
    let bytes: number;
    if (this.strtab.fmt === STRTAB_FMT_2LVL) {
      if (cfg.fmt !== STRTAB_FMT_2LVL || cfg.split !== STRTAB_SPLIT || cfg.log2size > Math.log2(STRTAB_MAX_L1_ENTRIES) + STRTAB_SPLIT || cfg.split >= cfg.log2size) return -EINVAL;
      bytes = 2 ** (cfg.log2size - cfg.split) * 8;
    } else {
      if (cfg.fmt !== STRTAB_FMT_LINEAR || cfg.log2size > (this.features?.sidBits ?? 0)) return -EINVAL;
      bytes = 2 ** cfg.log2size * STE_BYTES;
    }
    const base = this.hostStrtabBase();
    if (!enable) {
      this.host.pinnedStrtab = [];
      return yield* this.unsharePages(base, bytes);
    }
    const r = yield* this.sharePages(base, bytes);
    if (r === 0) this.host.pinnedStrtab = HypSmmuDriver.pageList(base, bytes);
    return r;
  }

  /**
   * `smmu_emulate_cmdq_insert`: the host's new entries (prod − cons in Linux's u32 queue
   * arithmetic) need that much free space in the hypervisor's queue; then each is copied,
   * filtered (`WARN_ON(skip)`) and added raw; one PROD write; then wait for the queue to be empty.
   */
  private *emulateCmdqInsert(): Generator<YieldPoint, number, void> {
    if ((this.host.cr0 & CR0_CMDQEN) === 0) return 0;
    const shift = this.host.cmdqShift;
    const cmdq = this.cmdq as HypCmdq;
    let space = (2 ** shift - queueSpace(this.host.cmdqProd, this.host.cmdqCons, shift)) >>> 0;
    // Hardened (refuseBadRegisterAccess): a PROD that claims more entries than the host's queue
    // holds (a PROD "behind" CONS wraps the u32 arithmetic) is ignored, and a batch larger than
    // the hypervisor's queue is copied in pieces that fit; the posted code waits for that much
    // space, times out, and WARNs.
    const hardened = this.options.refuseBadRegisterAccess === true;
    if (hardened && space > 2 ** shift) {
      this.refusals.push(`CMDQ_PROD 0x${this.host.cmdqProd.toString(16)} is more than a queue ahead of CONS: ignored`);
      this.host.cmdqProd = this.host.cmdqCons;
      return 0;
    }
    const base = queueBaseAddr(this.host.cmdqBase);
    const piece = hardened ? 2 ** cmdq.log2size : space;
    // At least once: the posted code writes PROD and waits for an empty queue even for no entry.
    do {
      let n = Math.min(space, piece);
      space -= n;
      const r = yield* cmdq.waitSpace(n);
      if (r !== 0) return r;
      while (n-- > 0) {
        const idx = qIdx(this.host.cmdqCons, shift);
        this.host.cmdqCons = queueIncCons(this.host.cmdqCons, shift);
        const at = base + idx * CMD_BYTES;
        const words = [this.memory.peek64(at), this.memory.peek64(at + 8)];
        const out = yield* this.filterCommand(words);
        if (out === undefined) continue;
        cmdq.addRaw(out);
      }
      yield* cmdq.publish();
      const r2 = yield* cmdq.waitEmpty();
      if (r2 !== 0) return r2;
    } while (space > 0);
    return 0;
  }

  /**
   * `smmu_filter_command` on the raw dwords: returns the command to forward, or undefined when
   * skipped (the posted `WARN_ON(skip)` panics; `dropFilteredCommands` only drops).
   */
  private *filterCommand(words: U64[]): Generator<YieldPoint, U64[] | undefined, void> {
    const w0 = words[0] as U64;
    const w1 = words[1] as U64;
    const opcode = w0.lo & 0xff;
    let skip: string | undefined;
    let out = words;
    switch (opcode) {
      case CMD_OP.CFGI_STE: {
        // SID = dword 0 bits 63:32, Leaf = dword 1 bit 0; on success the host's command is
        // forwarded too, after the re-shadow's own CFGI_STE + CMD_SYNC.
        const r = yield* this.reshadowSte(w0.hi, (w1.lo & 1) !== 0);
        if (r !== 0) skip = `CFGI_STE for sid ${w0.hi} refused (${r})`;
        break;
      }
      case CMD_OP.CFGI_ALL:
        // "Linux doesn't use range STE invalidation, and only use this for CFGI_ALL".
        if ((w1.lo & 0x1f) !== 31) skip = 'CFGI_STE_RANGE other than CFGI_ALL';
        break;
      case CMD_OP.TLBI_NH_ASID:
      case CMD_OP.TLBI_NH_VA:
      case CMD_OP.TLBI_NH_VAA:
        // "Only allow VMID = 0": VMID is dword 0 bits 47:32.
        if ((w0.hi & 0xffff) !== 0) skip = `TLBI_NH_* with VMID ${w0.hi & 0xffff}`;
        break;
      case CMD_OP.TLBI_NH_ALL:
      case CMD_OP.TLBI_EL2_ALL:
      case CMD_OP.TLBI_EL2_VA:
      case CMD_OP.TLBI_EL2_ASID:
      case CMD_OP.TLBI_S12_VMALL:
      case CMD_OP.TLBI_S2_IPA:
      case CMD_OP.TLBI_EL2_VAA:
        skip = `opcode 0x${opcode.toString(16)} is the hypervisor's`;
        break;
      case CMD_OP.CMD_SYNC:
        // CS (dword 0 bits 13:12) = SIG_IRQ: "Allow it, but let the host timeout". The posted
        // code edits local copies and forwards the original (dead conversion, §5.2).
        if (((w0.lo >>> 12) & 3) === CS_IRQ && this.options.writeBackSyncConversion === true) {
          out = [u64(((w0.lo & ~(3 << 12)) | (CS_SEV << 12)) >>> 0, w0.hi), u64(w1.lo & 3, w1.hi & ~0xf_ffff)];
        }
        break;
      default: {
        // Everything else is forwarded as it is, reserved encodings included.
        const f = this.features;
        if (this.options.rejectUnsupportedCommands === true && f !== undefined) {
          const decoded = decodeCommand(words);
          const illegal = decoded.kind === 'illegal' ? decoded.reason : checkCommand(decoded, { s1p: f.s1p, s2p: f.s2p, hyp: f.hyp, ats: f.ats, pri: f.pri, stallModel: f.stallModel });
          if (illegal !== undefined) {
            this.refusals.push(`host command 0x${opcode.toString(16)} dropped: ${illegal}`);
            return undefined;
          }
        }
        break;
      }
    }
    if (skip === undefined) return out;
    this.warnOrRefuse(true, 'smmu_emulate_cmdq_insert: WARN_ON(skip)', this.options.dropFilteredCommands, skip);
    return undefined;
  }
}
