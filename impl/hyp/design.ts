/**
 * Design variants of the pKVM SMMUv3 series as plain data (ARCHITECTURE §6, issue 6): each names
 * the driver/idmap knobs it sets (consumed by `createSystem` / `bootIommu` through
 * `SmmuConfig.driver`), why it exists (the reference section or review thread it comes from), and
 * the checks it is expected to hold and to break. The verdicts are asserted by
 * properties/designs.test.ts on the representative hardware set, so a surprise shows up as a
 * failing test rather than a stale comment.
 *
 * Check names are plain strings here (impl/ does not depend on properties/); the conformance
 * registry maps them onto the runner's checks.
 */
import { type DriverOptions } from './smmu-driver/driver.js';

/** The hardware a declared verdict applies to; an absent field matches either value. */
export interface VerdictCondition {
  /** An ATS-capable device behind an SMMU with IDR0.ATS. */
  readonly ats?: boolean;
  /** IDR3.RIL (range invalidation; TTL hints honoured). */
  readonly ril?: boolean;
  /** IDR3.BBML == 2: overlapping TLB entries never raise a TLB conflict (the largest wins). */
  readonly bbml2?: boolean;
  /** IDR0.MSI: the SMMU writes its interrupts (and CMD_SYNC completions) to memory as MSIs. */
  readonly msi?: boolean;
}

/** The hardware facts a verdict can depend on. */
export type VerdictHardware = Required<VerdictCondition>;

const ALWAYS: VerdictCondition = {};

export interface DeclaredVerdict {
  readonly check: string;
  readonly verdict: 'holds' | 'breaks';
  readonly when: VerdictCondition;
  /** What the counterexample (or the clean run) shows, for the verdict table. */
  readonly why: string;
}

export interface DesignVariant {
  readonly name: string;
  /** One paragraph: the design, and the reference section / review thread it comes from. */
  readonly rationale: string;
  /** The knobs it sets; `{}` is the series as posted. */
  readonly knobs: DriverOptions;
  readonly verdicts: readonly DeclaredVerdict[];
}

/** The checks every variant keeps on the representative hardware (all but the DMA ones). */
const OWNERSHIP_HOLDS: readonly DeclaredVerdict[] = (['refinement_ret', 'refinement_state', 'error_changes_nothing', 'host_cpu_isolation', 'well_formed_tables', 'pool_accounting', 'confidentiality'] as const).map((check) => ({
  check,
  verdict: 'holds' as const,
  when: ALWAYS,
  why: 'the ownership side is unchanged by the IOMMU design',
}));

/** A host action the hypervisor cannot take panics it only in the posted design (WARN at EL2). */
const NO_PANIC: DeclaredVerdict = { check: 'no_host_triggered_panic', verdict: 'holds', when: ALWAYS, why: 'every host action the posted code WARNs on is refused instead (v6-hardened knobs)' };

/** The hardened knobs leave the SMMU no host-chosen address to write to but the host's own pinned queues. */
const SMMU_WRITES_HOLD: DeclaredVerdict = {
  check: 'smmu_write_isolation',
  verdict: 'holds',
  when: ALWAYS,
  why: 'only 0 is accepted in *_IRQ_CFG0 (rejectIrqCfg) and CMD_SYNC CS=SIG_IRQ is rewritten to SEV (writeBackSyncConversion); the event queue is shared and pinned while enabled',
};

const AVAILABILITY_HOLDS: readonly DeclaredVerdict[] = [
  NO_PANIC,
  { check: 'dma_availability', verdict: 'holds', when: ALWAYS, why: 'the idmap maps every host-owned page read/write' },
  // The matrix workload schedules DMA at the hypercalls' yield points (properties/design-matrix.ts).
  { check: 'dma_during_hypercall', verdict: 'holds', when: ALWAYS, why: 'DMA inside a call reaches only pages allowed before or after it: the idmap is unmapped and invalidated before the call returns' },
  { check: 'smmu_config_coherent', verdict: 'holds', when: ALWAYS, why: 'every STE the driver writes is followed by CFGI_STE + CMD_SYNC (Linux hitless writer, linuxHitlessWriter)' },
  SMMU_WRITES_HOLD,
];

/** What both shared-cpu-s2 variants hold and break besides availability. */
const SHARED_S2_OTHER_VERDICTS: readonly DeclaredVerdict[] = [
      NO_PANIC,
      { check: 'dma_during_hypercall', verdict: 'holds', when: ALWAYS, why: 'every host stage-2 break is invalidated on the SMMU before the call goes on' },
      { check: 'smmu_config_coherent', verdict: 'holds', when: ALWAYS, why: 'the same hitless STE writer, with the host stage-2 as S2TTB' },
      SMMU_WRITES_HOLD,
      { check: 'dma_isolation', verdict: 'breaks', when: { ats: true }, why: 'the ATC is not invalidated, exactly as in v6-hardened' },
      { check: 'dma_isolation', verdict: 'holds', when: { ats: false }, why: 'each CPU TLBI of the host stage-2 is mirrored to the SMMU and completed before the hypercall returns' },
];

/**
 * The fixes of v6-hardened, one knob each (DriverOptions), with the known findings of the posted
 * design each removes (properties/known-findings.ts; asserted by properties/designs.test.ts).
 */
export const HARDENING_KNOBS: readonly { readonly knob: keyof DriverOptions; readonly value: DriverOptions[keyof DriverOptions]; readonly fix: string; readonly removes: readonly string[] }[] = [
  { knob: 'hookPlacement', value: 'every-owner-change', fix: 'the IOMMU hook on every host ownership change (guest donations and unshares, MMIO, the share-back path), not only host_stage2_set_owner_locked (v4)', removes: ['v4-hook-placement-misses-guest-donation'] },
  { knob: 'invalidateWhileDisabled', value: true, fix: 'TLBIs go out while the emulated SMMU is disabled (the hypervisor keeps its hardware queue enabled), and CFGI_ALL + TLBI_S12_VMALL(0) on the SMMUEN 0 → 1 edge', removes: ['smmu-disabled-skips-tlbi'] },
  { knob: 'rejectUnsupportedCommands', value: true, fix: 'host commands the SMMU would reject (reserved encodings, feature-dependent ones) are dropped, not forwarded', removes: ['host-command-stops-hyp-queue'] },
  { knob: 'dropFilteredCommands', value: true, fix: 'a filtered host command is skipped without WARN_ON(skip)', removes: ['filtered-host-command-panics'] },
  { knob: 'refuseBadRegisterAccess', value: true, fix: 'trapped accesses the posted code WARNs on are ignored or refused (bits kept)', removes: ['host-register-access-panics', 'cmdq-disabled-while-smmu-enabled-panics'] },
  { knob: 'linuxHitlessWriter', value: true, fix: 'live STEs moved with Linux\'s arm_smmu_write_entry (used / update-safe bits)', removes: ['posted-ste-writer-not-hitless'] },
  { knob: 'writeBackSyncConversion', value: true, fix: 'the CMD_SYNC CS=SIG_IRQ → SEV conversion written into the forwarded command (v4 mail)', removes: ['cmd-sync-msi-write-to-protected'] },
  {
    knob: 'forceAtsCheck',
    value: true,
    fix: 'CR0.ATSCHK kept set in the hardware when it has IDR0.ATS (inferred; in no posted version): with ATSCHK = 0 Translated transactions skip the STE, and a host shown no ATS never sets it',
    removes: [],
  },
  { knob: 'rejectIrqCfg', value: true, fix: 'only 0 accepted in *_IRQ_CFG0 (the SMMU would write MSIs there untranslated)', removes: ['irq-cfg-msi-write-to-protected'] },
];

/** Every hardening knob on: the driver with every fix of HARDENING_KNOBS. */
export const HARDENED_KNOBS: DriverOptions = Object.fromEntries(HARDENING_KNOBS.map((k) => [k.knob, k.value])) as DriverOptions;

export const DESIGN_VARIANTS: readonly DesignVariant[] = [
  {
    name: 'v6-posted',
    rationale:
      'The series as posted (series-as-posted.md §0 DRV-v6e, the v5/v6-era hypervisor driver, with the v4 hook placement): a shadow stage-2 identity map (VMID 0), memory page-granular and MMIO in blocks, a range TLBI_S2_IPA + CMD_SYNC and TLBI_NH_ALL + CMD_SYNC after each unmap, trap-and-emulate with every WARN_ON a hypervisor panic. The default design of every command.',
    knobs: {},
    verdicts: [
      ...OWNERSHIP_HOLDS,
      { check: 'no_host_triggered_panic', verdict: 'breaks', when: ALWAYS, why: 'a host register access of the wrong width, a filtered or rejected host command, a read-only register write: each is a WARN_ON at EL2' },
      { check: 'dma_availability', verdict: 'holds', when: ALWAYS, why: 'the idmap maps every host-owned page read/write' },
      { check: 'dma_during_hypercall', verdict: 'holds', when: ALWAYS, why: 'DMA inside a call reaches only pages allowed before or after it' },
      { check: 'smmu_config_coherent', verdict: 'breaks', when: ALWAYS, why: 'the posted writer moves a valid host STE to another valid one in eight stores with no sync between them: the SMMU may fetch a torn configuration' },
      { check: 'dma_isolation', verdict: 'breaks', when: ALWAYS, why: 'the v4 hook placement (host_stage2_set_owner_locked only) never unmaps a page donated to a protected guest' },
      { check: 'smmu_write_isolation', verdict: 'breaks', when: { msi: true }, why: 'the host aims *_IRQ_CFG0 (passed through) or a CMD_SYNC MSIAddr (the SIG_IRQ conversion is never written back) at a page it then gives away: the SMMU writes host-chosen data there' },
      { check: 'smmu_write_isolation', verdict: 'holds', when: { msi: false }, why: 'an SMMU without IDR0.MSI makes no MSI writes; the event queue is shared and pinned while enabled' },
    ],
  },
  {
    name: 'v6-hardened',
    rationale:
      'The posted driver with every fix of HARDENING_KNOBS (impl/hyp/design.ts) — the project\'s earlier driver, rule for rule where it was better, each difference a named knob. ATS is neither hidden nor invalidated (a design choice argued in the review: see v6-hide-ats and v6-atc-inv).',
    knobs: HARDENED_KNOBS,
    verdicts: [
      ...OWNERSHIP_HOLDS,
      ...AVAILABILITY_HOLDS,
      { check: 'dma_isolation', verdict: 'breaks', when: { ats: true }, why: 'an ATS device keeps a translation in its ATC after the host donates the page, and may forge a Translated transaction to any PA (EATS and ATSCHK are the host\'s)' },
      { check: 'dma_isolation', verdict: 'holds', when: { ats: false }, why: 'without ATS, the TLBIs after each unmap remove every stale SMMU TLB entry' },
    ],
  },
  {
    name: 'v6-hide-ats',
    rationale:
      'v6-hardened with the review\'s first way out: "or just hide ATS support from host for now" (v6 review, PATCH 04/25, Mostafa Saleh, 2026-05-11). IDR0.ATS is masked in the emulated register and EATS forced to 0 in every shadowed STE, so no device can obtain a translation to cache.',
    knobs: { ...HARDENED_KNOBS, hideAts: true },
    verdicts: [...OWNERSHIP_HOLDS, ...AVAILABILITY_HOLDS, { check: 'dma_isolation', verdict: 'holds', when: ALWAYS, why: 'no ATC is ever filled' }],
  },
  {
    name: 'v6-hide-ats-host-atschk',
    rationale:
      'v6-hide-ats as the review words it, IDR0.ATS masked and EATS forced to 0, with CR0 still the host\'s (posted v6-era: CR0 written through, mask read_write), i.e. v6-hide-ats without forceAtsCheck. A host that sees no ATS never sets CR0.ATSCHK (Linux sets it only "if FEAT_ATS", smmuv3-arch.md reset step 7), and with ATSCHK = 0 the SMMU passes every Translated transaction without looking at the STE: an ATS-capable device reaches any physical address.',
    knobs: { ...HARDENED_KNOBS, hideAts: true, forceAtsCheck: false },
    verdicts: [
      ...OWNERSHIP_HOLDS,
      ...AVAILABILITY_HOLDS,
      { check: 'dma_isolation', verdict: 'breaks', when: { ats: true }, why: 'CR0.ATSCHK = 0 (the host was shown no ATS): a forged Translated transaction from the ATS-capable device skips the STE and reaches any PA' },
      { check: 'dma_isolation', verdict: 'holds', when: { ats: false }, why: 'no device can emit Translated transactions' },
    ],
  },
  {
    name: 'v6-atc-inv',
    rationale:
      'v6-hardened with the review\'s other way out: "we have to issue CMDQ_OP_ATC_INV for the whole space on every S2 invalidation which has to be done per-SID and as it can\'t be done by VMID" (v6 review, PATCH 04/25, Mostafa Saleh, 2026-05-11). After each stage-2 invalidation has completed (its CMD_SYNC), ATC_INV Size 52 for every stream whose shadowed STE enabled ATS, then CMD_SYNC. Not a fix for a device that forges Translated transactions (series-as-posted.md finding 1).',
    knobs: { ...HARDENED_KNOBS, atcInvalidation: true },
    verdicts: [
      ...OWNERSHIP_HOLDS,
      ...AVAILABILITY_HOLDS,
      { check: 'dma_isolation', verdict: 'breaks', when: { ats: true }, why: 'every ATC entry is dropped before the donation returns, but an ATS-capable device may forge a Translated transaction to any PA: the host keeps STE.EATS and CR0.ATSCHK (series-as-posted.md finding 1)' },
      { check: 'dma_isolation', verdict: 'holds', when: { ats: false }, why: 'without ATS, the TLBIs after each unmap remove every stale SMMU TLB entry' },
    ],
  },
  {
    name: 'vmid-wide-invalidation',
    rationale:
      'v6-hardened with "Not every device, just wipe the VMID. If you say it is rare then keep it simple" (v6 review, PATCH 04/25, Jason Gunthorpe, 2026-05-06): one TLBI_S12_VMALL for VMID 0 + CMD_SYNC instead of the range TLBIs and TLBI_NH_ALL. Safe for the SMMU TLB at the price of collateral invalidation; the ATC is still not invalidated.',
    knobs: { ...HARDENED_KNOBS, invalidation: 'vmid' },
    verdicts: [
      ...OWNERSHIP_HOLDS,
      ...AVAILABILITY_HOLDS,
      { check: 'dma_isolation', verdict: 'breaks', when: { ats: true }, why: 'a VMID-wide TLBI does not reach a device ATC' },
      { check: 'dma_isolation', verdict: 'holds', when: { ats: false }, why: 'the VMID-wide TLBI removes every stale SMMU TLB entry' },
    ],
  },
  {
    name: 'block-idmap-with-split',
    rationale:
      'v6-hardened with a GKI-style idmap: memory mapped with the largest blocks the range allows, and a block split by io-pgtable on partial unmap (`arm_lpae_split_blk_unmap`, ≤ 6.13). The series maps memory page-granular precisely to avoid the split: the legacy split replaces a live block by a table without break-before-make (smmuv3-arch.md §6.2).',
    knobs: { ...HARDENED_KNOBS, idmapMemoryBlocks: true },
    verdicts: [
      ...OWNERSHIP_HOLDS,
      ...AVAILABILITY_HOLDS.filter((v) => v.check !== 'dma_availability'),
      { check: 'dma_isolation', verdict: 'breaks', when: { ats: true }, why: 'the ATC finding of v6-hardened is unchanged' },
      {
        check: 'dma_isolation',
        verdict: 'breaks',
        when: { ril: true },
        why: 'the split invalidates only the unmapped page, as a leaf at level 3 (tlb_add_page with the 4K granule → TTL 3); with RIL the SMMU may keep the cached level-2 block, which still reaches the donated page',
      },
      { check: 'dma_isolation', verdict: 'holds', when: { ats: false, ril: false }, why: 'without RIL the TLBI carries no TTL and removes the cached block too' },
      { check: 'dma_availability', verdict: 'holds', when: { bbml2: true }, why: 'BBML2: no TLB conflict abort' },
      {
        check: 'dma_availability',
        verdict: 'breaks',
        when: { bbml2: false },
        why: 'the split replaces a live block by a table without break-before-make: a walk that caches a level-3 entry while the block is still cached makes a TLB conflict (BBML0/1) and the DMA faults — inside the donation, before its TLBI completes, and with RIL also afterwards, since the leaf TLBI (TTL 3) leaves the block',
      },
    ],
  },
  {
    name: 'shared-cpu-s2',
    rationale:
      'v6-hardened with no shadow table: every shadowed STE points the SMMU at the host CPU stage-2 itself (its PGD, the host VTCR, VMID 0), and every TLB invalidation the host stage-2 code makes for the CPU is mirrored to the SMMU (TLBI + CMD_SYNC) before the code goes on (impl/hyp/iommu/shared-host-stage2.ts; the mirror is this project\'s invention). "Is there a reason you can\'t just use the CPU S2 for the iommu?" (v6 review, PATCH 08/25, Jason Gunthorpe, 2026-05-01); the answer lists what it needs (Mostafa Saleh, 2026-05-04) — "the CPU page table doesn\'t guarantee that" everything stays mapped (2026-05-11). KVM populates the host stage-2 lazily, on host CPU faults.',
    knobs: { ...HARDENED_KNOBS, dmaStage2: 'host-stage2' },
    verdicts: [
      ...OWNERSHIP_HOLDS,
      {
        check: 'dma_availability',
        verdict: 'breaks',
        when: ALWAYS,
        why: 'a device faults on every host page the CPU has not touched since boot: the host stage-2 maps memory only on host CPU faults, and an SMMU translation fault is not retried',
      },
      ...SHARED_S2_OTHER_VERDICTS,
    ],
  },
  {
    name: 'shared-cpu-s2-prepopulated',
    rationale:
      'shared-cpu-s2 with the whole host stage-2 populated at boot, before any driver runs (the largest blocks the memory map allows), the "fully populated at all times S2" of the review (v6 review, PATCH 08/25, Jason Gunthorpe, 2026-05-01). What is left is what Mostafa Saleh names: "we can break block on memory donation" (2026-05-11).',
    knobs: { ...HARDENED_KNOBS, dmaStage2: 'host-stage2', prepopulateHostStage2: true },
    verdicts: [
      ...OWNERSHIP_HOLDS,
      {
        check: 'dma_availability',
        verdict: 'breaks',
        when: ALWAYS,
        why: 'donating one page of a block unmaps the other 511 (2M) for DMA until the host CPU touches them again; inside the call, DMA to them also faults in the break-before-make window',
      },
      ...SHARED_S2_OTHER_VERDICTS,
    ],
  },
  {
    name: 'no-tlbi-nh-after-s2',
    rationale:
      'v6-hardened without the TLBI_NH_ALL (VMID 0) + CMD_SYNC that the posted smmu_tlb_inv_range issues after every stage-2 range invalidation (issue 13; series-as-posted.md §2.8). The host keeps its own DMA domains: a host stage-1 STE becomes a nested one over the shadow idmap, so the SMMU caches combined S1+S2 entries (VA → PA, VMID 0), and TLBI_S2_IPA is not required to remove them (smmuv3-arch.md §3.3 Scope). The question it answers: is the TLBI_NH_ALL needed?',
    knobs: { ...HARDENED_KNOBS, noTlbiNhAfterS2: true },
    verdicts: [
      ...OWNERSHIP_HOLDS,
      ...AVAILABILITY_HOLDS,
      {
        check: 'dma_isolation',
        verdict: 'breaks',
        when: ALWAYS,
        why: 'a DMA through the host\'s IOVA caches a combined S1+S2 entry; the host donates the page it maps; the idmap unmap\'s TLBI_S2_IPA leaves the combined entry, which still reaches the donated page (corpus findings/no-tlbi-nh-leaves-combined-entry.json)',
      },
    ],
  },
];

/** The design every command uses unless told otherwise: the series as posted. */
export const DEFAULT_DESIGN = 'v6-posted';

export function designVariant(name: string): DesignVariant | undefined {
  return DESIGN_VARIANTS.find((v) => v.name === name);
}

/**
 * The verdicts a variant declares for one hardware configuration. When two match for one check,
 * "breaks" wins: one counterexample is enough.
 */
export function declaredVerdicts(variant: DesignVariant, hw: VerdictHardware): DeclaredVerdict[] {
  const applies = (want: boolean | undefined, have: boolean) => want === undefined || want === have;
  const matching = variant.verdicts.filter((v) => applies(v.when.ats, hw.ats) && applies(v.when.ril, hw.ril) && applies(v.when.bbml2, hw.bbml2) && applies(v.when.msi, hw.msi));
  return matching.filter((v) => v.verdict === 'breaks' || !matching.some((o) => o.check === v.check && o.verdict === 'breaks'));
}
