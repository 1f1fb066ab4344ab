/**
 * The known findings against the series as posted (design `v6-posted`; README "Findings",
 * conformance/corpus/findings/). Each says which version of the code it applies to, whether the
 * host can reach protected memory (an isolation finding) or can only panic the hypervisor
 * (`no_host_triggered_panic`: a WARN_ON at EL2), and which v6-hardened knob removes it.
 *
 * Campaigns that must not stop on a known finding leave its steps out (`reachedBy`,
 * `notAKnownFinding`: the zoo, the design matrix, the report's campaigns) or, for a panic, end
 * the run silently at its WARN site (`panicSites`, RunOptions.knownPanicSites: `verify
 * --skip-known-findings`); the report reproduces each apart from its trigger.
 */
import { decodeCommand } from '../impl/arch/smmu/commands.js';
import { u64 } from '../impl/arch/u64.js';
import { type CheckName } from './checks.js';
import { type Step } from './runner.js';

export interface KnownFinding {
  readonly name: string;
  readonly description: string;
  readonly check: CheckName;
  /** The code it is a finding of, with its provenance tag (README "Provenance"). */
  readonly appliesTo: string;
  /** The v6-hardened knob (impl/hyp/design.ts HARDENING_KNOBS) or design variant that removes it. */
  readonly removedBy: string;
  /** The steps that reach it (left out of campaigns that hunt for other findings). */
  readonly reachedBy: (o: Step) => boolean;
  /** The same predicate in words, for the report. */
  readonly reachedByText: string;
  /** For a panic: the WARN sites (HypervisorPanic.site) that are this finding. */
  readonly panicSites?: readonly string[];
  /** Its file under conformance/corpus/, whose operations are `trigger`. */
  readonly corpusFile: string;
  /** A sequence that reaches it, for when a search budget misses it (the corpus file's). */
  readonly trigger: readonly Step[];
  /** The named machine its trigger is written for (default small-smmu-no-ats). */
  readonly machine?: string;
  /** What the hardware needs for the finding to exist at all (an ATS-capable device, IDR0.MSI). */
  readonly needs?: { readonly ats?: boolean; readonly msi?: boolean };
  /**
   * The design a search for it runs on, when a design variant (not a knob) removes it: one that
   * holds the check but for this finding (the report's reproduction).
   */
  readonly reproduceOn?: string;
}

const CR0 = 0x20;
const CR0_SMMUEN = 1;
const CR0_EVTQEN = 4;
const CR0_CMDQEN = 8;

/** The kind of the command a host_write_cmd step writes ('illegal' for reserved encodings). */
function hostCommandKind(words: readonly [number, number, number, number]): string {
  return decodeCommand([u64(words[0], words[1]), u64(words[2], words[3])]).kind;
}

/** Commands an SMMU may reject with CERROR_ILL (reserved, or legal only with some feature). */
const REJECTABLE: ReadonlySet<string> = new Set(['illegal', 'RESUME', 'STALL_TERM', 'PRI_RESP', 'ATC_INV']);

/** The 64-bit *_IRQ_CFG0 registers (GERROR, EVTQ, PRIQ), and their upper halves for 32-bit stores. */
const IRQ_CFG0: ReadonlySet<number> = new Set([0x68, 0x6c, 0xb0, 0xb4, 0xd0, 0xd4]);

/** A CMD_SYNC asking for an MSI completion (CS = SIG_IRQ) to a non-zero address. */
function isSyncWithMsi(words: readonly [number, number, number, number]): boolean {
  const cmd = decodeCommand([u64(words[0], words[1]), u64(words[2], words[3])]);
  return cmd.kind === 'CMD_SYNC' && cmd.cs === 1 && cmd.msiaddr !== 0;
}

/** Opcodes the posted filter skips with WARN_ON(skip) whatever their fields. */
const ALWAYS_FILTERED: ReadonlySet<string> = new Set(['TLBI_NH_ALL', 'TLBI_EL2_ALL', 'TLBI_EL2_VA', 'TLBI_EL2_ASID', 'TLBI_EL2_VAA', 'TLBI_S12_VMALL', 'TLBI_S2_IPA']);

export const KNOWN_FINDINGS: readonly KnownFinding[] = [
  {
    name: 'v4-hook-placement-misses-guest-donation',
    description:
      'the IOMMU hook sits in host_stage2_set_owner_locked only (v4 mail, 10/28); on UP-2026 mem_protect.c a donation to a protected guest annotates through host_stage2_set_owner_metadata_locked and never reaches the idmap, so the guest\'s page stays DMA-mapped for the host\'s devices. v6\'s mem_protect.c hunk is not public: a porting hazard if v6 kept the v4 placement',
    check: 'dma_isolation',
    appliesTo: 'v4 mail hook placement on UP-2026 (the v6 hunk is not public: knob hookPlacement)',
    removedBy: 'hookPlacement: every-owner-change',
    reachedBy: (o) => o.kind === 'host_donate_guest',
    reachedByText: '`host_donate_guest`',
    corpusFile: 'findings/v4-hook-placement-misses-guest-donation.json',
    trigger: [
      { kind: 'init_vm', vm: 1, protected: true },
      { kind: 'host_donate_guest', pfn: 0x40005, gfn: 3, vm: 1 },
    ],
  },
  {
    name: 'smmu-disabled-skips-tlbi',
    description:
      'TLB maintenance is skipped while the host keeps the emulated SMMU disabled ("Don\'t bother if SMMU is disabled", the shadow SMMUEN): an entry cached before survives a donation made meanwhile and is used once the host re-enables the SMMU; nothing invalidates on the SMMUEN 0 → 1 edge',
    check: 'dma_isolation',
    appliesTo: 'posted v6-era smmu_tlb_inv_range / smmu_emulate_enable',
    removedBy: 'invalidateWhileDisabled',
    reachedBy: (o) => o.kind === 'host_mmio_write' && o.offset === CR0 && (o.value & CR0_SMMUEN) === 0 && (o.value & CR0_EVTQEN) !== 0,
    reachedByText: '`host_mmio_write` of CR0 with SMMUEN clear (EVTQEN kept)',
    corpusFile: 'findings/smmu-disabled-skips-tlbi.json',
    trigger: [
      { kind: 'dma', sid: 1, addr: 0x4000_1000, access: 'read' },
      { kind: 'host_mmio_write', smmu: 0, offset: CR0, value: CR0_CMDQEN | CR0_EVTQEN },
      { kind: 'host_donate_hyp', pfn: 0x40001, nrPages: 1 },
      { kind: 'host_mmio_write', smmu: 0, offset: CR0, value: CR0_CMDQEN | CR0_EVTQEN | CR0_SMMUEN },
      { kind: 'dma', sid: 1, addr: 0x4000_1000, access: 'read' },
    ],
  },
  {
    name: 'cmdq-disabled-while-smmu-enabled-panics',
    description:
      'the host clears CMDQEN and keeps SMMUEN: the check "The hypervisor also asserts CMDQEN is enabled before the SMMU is enabled" runs only on the SMMUEN 0 → 1 edge, so the hardware queue stops, and the next donation\'s TLBI times out in WARN_ON(smmu_tlb_inv_range_smmu): the host panics the hypervisor (the CMDQEN=0 half of the old finding 2, series-as-posted.md probe A)',
    check: 'no_host_triggered_panic',
    appliesTo: 'posted v6-era smmu_tlb_inv_range',
    removedBy: 'refuseBadRegisterAccess',
    reachedBy: (o) => o.kind === 'host_mmio_write' && o.offset === CR0 && (o.value & CR0_SMMUEN) !== 0 && (o.value & CR0_CMDQEN) === 0,
    reachedByText: '`host_mmio_write` of CR0 with SMMUEN set and CMDQEN clear',
    panicSites: ['smmu_tlb_inv_range: WARN_ON(smmu_tlb_inv_range_smmu)', 'smmu_tlb_inv_range: WARN_ON(smmu_send_cmd(TLBI_NH_ALL))'],
    corpusFile: 'findings/cmdq-disabled-while-smmu-enabled-panics.json',
    trigger: [
      { kind: 'host_mmio_write', smmu: 0, offset: CR0, value: CR0_EVTQEN | CR0_SMMUEN },
      { kind: 'host_donate_hyp', pfn: 0x40002, nrPages: 1 },
    ],
  },
  {
    name: 'host-command-stops-hyp-queue',
    description:
      'the posted filter forwards every host command it has no case for, reserved encodings included; one this SMMU rejects (a reserved opcode, RESUME / STALL_TERM without the stall model, PRI_RESP without PRI, ATC_INV without ATS) stops the hypervisor\'s command queue with CERROR_ILL, and the trapped PROD write\'s wait for an empty queue times out: WARN_ON(smmu_emulate_cmdq_insert) panics the hypervisor (earlier read as an isolation breach, which only the project\'s dropped WARNs made possible)',
    check: 'no_host_triggered_panic',
    appliesTo: 'posted v6-era smmu_filter_command / smmu_emulate_cmdq_insert',
    removedBy: 'rejectUnsupportedCommands',
    reachedBy: (o) => o.kind === 'host_write_cmd' && REJECTABLE.has(hostCommandKind(o.words)),
    reachedByText: '`host_write_cmd` of a reserved or feature-dependent command',
    panicSites: ['smmu_dabt_device: WARN_ON(smmu_emulate_cmdq_insert)'],
    corpusFile: 'findings/host-command-stops-hyp-queue.json',
    trigger: [{ kind: 'host_write_cmd', smmu: 0, words: [0x44, 0, 0, 0] }],
  },
  {
    name: 'filtered-host-command-panics',
    description:
      'every host command the posted filter skips — a stage-2 or EL2 TLBI, TLBI_NH_* with a VMID, CFGI_STE_RANGE other than CFGI_ALL, a CFGI_STE whose re-shadowing fails (a nested STE, an L1 descriptor with Span 0, an L2 table that cannot be shared) — is WARN_ON(skip): the host panics the hypervisor',
    check: 'no_host_triggered_panic',
    appliesTo: 'posted v6-era smmu_emulate_cmdq_insert',
    removedBy: 'dropFilteredCommands',
    reachedBy: (o) => o.kind === 'host_write_cmd' && ALWAYS_FILTERED.has(hostCommandKind(o.words)),
    reachedByText: '`host_write_cmd` of a stage-2 or EL2 TLBI',
    panicSites: ['smmu_emulate_cmdq_insert: WARN_ON(skip)'],
    corpusFile: 'findings/filtered-host-command-panics.json',
    trigger: [{ kind: 'host_write_cmd', smmu: 0, words: [0x2a, 0, 0, 0] }],
  },
  {
    name: 'posted-ste-writer-not-hitless',
    description:
      'the posted STE writer writes all eight qwords of a live STE in order with no sync between them when both the old and the new STE are valid ("as all the S2 config is always the same"), but the host controls dwords 0, 1 and 4-7: a host update of a valid STE to another valid one passes through torn configurations the SMMU may fetch (series-as-posted.md §2.7, probe G) — a correctness and availability matter, stage 2 being constant',
    check: 'smmu_config_coherent',
    appliesTo: 'posted v6-era smmu_reshadow_ste',
    removedBy: 'linuxHitlessWriter',
    reachedBy: (o) => o.kind === 'host_write_ste' && (o.words[0] & 1) === 1,
    reachedByText: '`host_write_ste` of a valid STE',
    corpusFile: 'findings/posted-ste-writer-not-hitless.json',
    // Found by `verify --machine small-smmu-no-ats --interleave --skip-known-findings --seed 1`.
    trigger: [{ kind: 'host_write_ste', smmu: 0, sid: 1, words: [2433761621, 0, 436207616, 0] }],
  },
  {
    name: 'host-register-access-panics',
    description:
      'the posted register emulation WARNs on a host access it does not allow — a 32-bit access to a 64-bit register (or any other width), a write to an ID or read-only register, an offset not in its table (AIDR, IDR2/4, STATUSR), a base register written while enabled, CR1 other than Linux\'s, EVTQEN or PRIQEN cleared, SMMUEN without CMDQEN, a queue or stream table that cannot be shared — so each panics the hypervisor',
    check: 'no_host_triggered_panic',
    appliesTo: 'posted v6-era smmu_dabt_device',
    removedBy: 'refuseBadRegisterAccess',
    reachedBy: () => false,
    reachedByText: '(a WARN site of the register emulation; its steps are not left out)',
    panicSites: [
      'smmu_dabt_device: WARN_ON(!mask)',
      'smmu_dabt_device: WARN_ON(is_cmdq_enabled) on CMDQ_BASE',
      'smmu_dabt_device: WARN_ON(is_cmdq_enabled) on CMDQ_CONS',
      'smmu_dabt_device: WARN_ON(val != cr1_template)',
      'smmu_dabt_device: WARN_ON(1) on EVTQEN 1 -> 0',
      'smmu_dabt_device: WARN_ON(1) on PRIQEN 1 -> 0',
      'smmu_emulate_enable: WARN_ON(!is_cmdq_enabled)',
      'smmu_emulate_enable: WARN_ON(smmu_update_ste_shadow)',
      'smmu_emulate_cmdq_enable: WARN_ON(smmu_share_pages)',
      'smmu_emulate_queue: WARN_ON(smmu_share_pages)',
    ],
    corpusFile: 'findings/host-register-access-panics.json',
    trigger: [{ kind: 'host_mmio_write', smmu: 0, offset: 0x90, value: 0 }],
  },
  {
    name: 'irq-cfg-msi-write-to-protected',
    description:
      'the posted register emulation passes EVTQ/GERROR/PRIQ_IRQ_CFG0/1/2 straight to the hardware ("IRQ_CFG* pass-through"): on an SMMU with IDR0.MSI the host aims an MSI at any physical address with any 32-bit data, gives the page away (here to a protected guest), and makes the SMMU signal with a faulting DMA: the SMMU writes the host\'s data into the guest\'s page, untranslated (series-as-posted.md §5.1; hiding MSI in IDR0 does not stop the hardware)',
    check: 'smmu_write_isolation',
    needs: { msi: true },
    appliesTo: 'posted v6-era smmu_dabt_device (IRQ_CFG* allowed)',
    removedBy: 'rejectIrqCfg',
    reachedBy: (o) => o.kind === 'host_mmio_write' && IRQ_CFG0.has(o.offset) && (o.value !== 0 || (o.valueHi ?? 0) !== 0),
    reachedByText: '`host_mmio_write` of a non-zero `*_IRQ_CFG0`',
    corpusFile: 'findings/irq-cfg-msi-write-to-protected.json',
    trigger: [
      { kind: 'init_vm', vm: 1, protected: true },
      { kind: 'host_mmio_write', smmu: 0, offset: 0xb0, value: 0x4002_0000, size: 8, valueHi: 0 },
      { kind: 'host_donate_guest', pfn: 0x40020, gfn: 3, vm: 1 },
      { kind: 'dma', sid: 1, addr: 0xc00_0000, access: 'read' },
    ],
  },
  {
    name: 'cmd-sync-msi-write-to-protected',
    description:
      'the posted filter converts a host CMD_SYNC with CS = SIG_IRQ to SEV on local copies that are never written back, so the host\'s MSIAddr and MSIData reach the hardware queue: on completion the SMMU writes the host\'s 32-bit data to any physical address, a protected guest\'s page here (series-as-posted.md §5.2; v4 edited the command in place)',
    check: 'smmu_write_isolation',
    needs: { msi: true },
    appliesTo: 'posted v6-era smmu_filter_command / smmu_emulate_cmdq_insert',
    removedBy: 'writeBackSyncConversion',
    reachedBy: (o) => o.kind === 'host_write_cmd' && isSyncWithMsi(o.words),
    reachedByText: '`host_write_cmd` of a CMD_SYNC with CS = SIG_IRQ and an MSIAddr',
    corpusFile: 'findings/cmd-sync-msi-write-to-protected.json',
    trigger: [
      { kind: 'init_vm', vm: 1, protected: true },
      { kind: 'host_donate_guest', pfn: 0x40020, gfn: 3, vm: 1 },
      { kind: 'host_write_cmd', smmu: 0, words: [0x1046, 0xdead, 0x4002_0000, 0] },
    ],
  },
  {
    name: 'forged-translated-dma',
    description:
      'the host keeps STE.EATS (dword 1 is the host\'s but SHCFG) and CR0.ATSCHK (written through), so an ATS-capable device it controls issues a Translated transaction to any physical address, which the SMMU lets through unchecked by stage 2 — here a page the hypervisor took. Invalidating the ATC (v6-atc-inv) does not help; only hiding ATS with ATSCHK forced (v6-hide-ats) does (series-as-posted.md finding 1, "understated")',
    check: 'dma_isolation',
    machine: 'small-smmu',
    needs: { ats: true },
    appliesTo: 'posted v6-era smmu_attach_stage_2 (dword 1 kept) / smmu_dabt_device (CR0 read_write)',
    removedBy: 'v6-hide-ats',
    reproduceOn: 'v6-atc-inv',
    reachedBy: (o) => o.kind === 'dma_forged_translated',
    reachedByText: '`dma_forged_translated`',
    corpusFile: 'findings/forged-translated-dma.json',
    trigger: [
      { kind: 'host_donate_hyp', pfn: 0x40020, nrPages: 1 },
      { kind: 'dma_forged_translated', sid: 2, pa: 0x4002_0000, access: 'write' },
    ],
  },
];

/** A known finding's trigger by name (its corpus file's operations). */
export function knownFindingTrigger(name: string): readonly Step[] {
  const f = KNOWN_FINDINGS.find((k) => k.name === name);
  if (f === undefined) throw new Error(`no known finding ${name}`);
  return f.trigger;
}

/** False for the steps that reach a known finding (so a detection is not that finding's). */
export function notAKnownFinding(o: Step): boolean {
  return !KNOWN_FINDINGS.some((f) => f.reachedBy(o));
}

/** Every WARN site that is a known finding (RunOptions.knownPanicSites). */
export function knownPanicSites(): ReadonlySet<string> {
  return new Set(KNOWN_FINDINGS.flatMap((f) => f.panicSites ?? []));
}
