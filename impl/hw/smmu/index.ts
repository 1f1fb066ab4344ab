/**
 * The SMMUv3 hardware model (ARCHITECTURE §5): public surface.
 *
 * Files: features.ts (configuration → ID registers), registers-file.ts (programming interface),
 * stream-table.ts (STE / L1STD fetch and decode), config-cache.ts, tlb.ts (TLB and walk cache),
 * walk.ts (stage-2 walker with SMMU fault classes), nested.ts (stage-1 context, combined TLB,
 * stage-1 walk cache and NH_* invalidation; the stage-1 walk itself is in smmu.ts), invalidation.ts (what a TLBI removes, strict
 * and QEMU-like), event-queue.ts, ats.ts (ATS types and endpoint interface), smmu.ts (the SMMU).
 *
 * Strict vs permissive (smmuv3-arch.md §7.5; every row has a test in strict-vs-permissive.test.ts):
 *
 * | behaviour                          | strict (weakest legal hardware)              | permissive (QEMU)                      |
 * |------------------------------------|----------------------------------------------|----------------------------------------|
 * | TLBI with wrong TTL                | entry at its real level survives             | removed                                |
 * | TLBI with TG ≠ entry granule       | entry survives                               | removed (address overlap only)         |
 * | Leaf = 1 TLBI                      | walk-cache entries survive                   | no walk cache                          |
 * | 4K TLBI inside a 2M block          | block removed                                | removed                                |
 * | NUM = SCALE = TTL = 0, TG ≠ 0      | CERROR_ILL                                   | executed                               |
 * | TLBI/CFGI/ATC_INV before CMD_SYNC  | pending until the runner or a CMD_SYNC applies it | immediate (queue drained on PROD write) |
 * | V = 0 STE / Span = 0 L1STD         | cached until a CFGI removes it               | never cached (L1STDs never cached)     |
 * | CFGI_STE Leaf = 1 vs L1STD         | L1STD stays cached                           | Leaf ignored                           |
 * | event queue full                   | record dropped, OVFLG toggled                | GERROR.EVTQ_ABT_ERR                    |
 * | CMD_SYNC CS = IRQ with MSIAddr     | MSIData written to MSIAddr (+ wired pulse)   | wired pulse only                       |
 * | ATC_INV                            | delivered, completes at CMD_SYNC; timeout → CERROR_ATC_INV_SYNC | no-op               |
 * | speculative fills / PREFETCH_*     | any valid reachable translation, any time    | none: fills only on transactions       |
 * | break-before-make violation        | F_TLB_CONFLICT with BBML0/1                  | never; largest block wins              |
 * | walk ending in a permission fault  | leaf may be cached                           | nothing cached                         |
 * | range TLBI, Address misaligned for TG | 16K/64K-granule entries overlapping the range | chunks from Address as given, 4K ones too |
 * | nG = 0 (global) stage-1 entry vs NH_ASID | hit by every ASID of the VMID; survives       | tagged with the CD's ASID; removed     |
 * | S2 fault on a stage-1 table address | S2 = 1, CLASS = TT, gated by STE.S2R          | S2 = 0, CLASS = TT, gated by CD.R (QEMU bug) |
 * | TTB0's IPA remapped + S2_IPA + S12_VMALL | next walk translates TTB0 afresh          | TTB0 PA baked into the cached CD until CFGI |
 * | stage-1 walk cache                 | kept across NH_VA Leaf = 1                   | none                                   |
 * | CFGI_CD                            | drops CD 0 of the SID (STE stays cached)     | drops the SID's whole decoded config   |
 * | TLBI_S2_IPA vs combined S1+S2 entry | survives (not required, both modes)         | survives (QEMU skips ASID ≥ 0 entries) |
 *
 * Stage 1 / nesting (nested.ts): CD 0 only (SSID 0), TTB0 only; the rows above have tests in
 * nested.test.ts ("strict vs permissive rows for nesting").
 *
 * Permissive also copies QEMU's 256-entry IOTLB flushed when full and its exact-key TTL shortcut.
 */
export { type AtcInvalidation, type AtsEndpoint, type AtsResponse, atcInvalidationOf } from './ats.js';
export { type EventDelivery, type SmmuSignals } from './event-queue.js';
export { type SmmuWrite, type SmmuWriteCause, SmmuWriteLog } from './write-log.js';
export { DEFAULT_FEATURES, IIDR_MMU600_R0P0, IIDR_MMU600_R2P0, IIDR_MMU700_R1P1, type SmmuFeatures, idRegisterValues, resolveFeatures } from './features.js';
export {
  ABORT_REASONS,
  type AbortReason,
  type ConfigCacheEntryInfo,
  type ConsumeOutcome,
  type DmaAccess,
  type EventLogEntry,
  type EvictSelector,
  type FillPolicy,
  type PendingInvalidation,
  type RemovedCounts,
  type S1TlbEntryInfo,
  type S1WalkCacheEntryInfo,
  Smmu,
  type SmmuMode,
  type SmmuOptions,
  type SpeculativeFillOutcome,
  type TlbEntryInfo,
  TR_ABORT,
  TR_OK,
  type TranslateOutcome,
  TranslationResult,
  type TranslationVia,
  VIAS,
  type WalkCacheEntryInfo,
} from './smmu.js';
