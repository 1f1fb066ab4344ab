/**
 * TLB invalidation commands for a range, as Linux builds them (`__arm_smmu_tlb_inv_range`,
 * smmuv3-arch.md §3.4; the hypervisor shares the helper, v6 04/25 `arm_smmu_tlb_inv_build`):
 * TLBI_S2_IPA for the hypervisor's idmap, TLBI_NH_VA (ASID, VMID 0) for the host's stage-1 DMA
 * domains (impl/host/dma-domain.ts). with FEAT_RANGE_INV one TLBI_S2_IPA per
 * set 5-bit group of the page count (TG from the smallest page size, TTL for leaf invalidations
 * only, the non-leaf `num_pages` bump that avoids the reserved NUM = SCALE = TTL = 0); without it
 * one command per granule, or a whole-VMID invalidation when the range is too big.
 */
import { type Command } from '../../arch/smmu/commands.js';
import { u64 } from '../../arch/u64.js';

export interface TlbiRangeFeatures {
  /** IDR3.RIL: range invalidation. */
  readonly ril: boolean;
  /** log2 of the smallest page size of the domain's pgsize_bitmap (12, 14 or 16). */
  readonly minPageShift: number;
  /**
   * Newest kernels: without RIL, a range of at least 512 granules is invalidated with one
   * whole-VMID command instead (`size_too_big`). Off reproduces the 6.10-era per-granule loop.
   */
  readonly fullInvalidationFallback: boolean;
}

type TlbiS2Ipa = Extract<Command, { kind: 'TLBI_S2_IPA' }>;
type TlbiNhVa = Extract<Command, { kind: 'TLBI_NH_VA' }>;

/** The command a range invalidation repeats: stage 2 by VMID, or stage 1 by ASID and VMID. */
export type RangeInvalidationBase = { readonly kind: 'TLBI_S2_IPA'; readonly vmid: number } | { readonly kind: 'TLBI_NH_VA'; readonly vmid: number; readonly asid: number };

function lowestSetBit(x: number): number {
  // x < 2^53 and non-zero here.
  let n = 0;
  while (x % 2 === 0) {
    x /= 2;
    n++;
  }
  return n;
}

/** The stage-2 commands (without the final CMD_SYNC) that invalidate [iova, iova + size). */
export function buildS2RangeInvalidation(features: TlbiRangeFeatures, vmid: number, iova: number, size: number, granule: number, leaf: boolean): Command[] {
  return buildRangeInvalidation(features, { kind: 'TLBI_S2_IPA', vmid }, iova, size, granule, leaf);
}

/** The commands (without the final CMD_SYNC) that invalidate [iova, iova + size). */
export function buildRangeInvalidation(features: TlbiRangeFeatures, base: RangeInvalidationBase, iova: number, size: number, granule: number, leaf: boolean): Command[] {
  if (size === 0) return [];
  const out: Command[] = [];
  const make = (address: number, num: number, scale: number, ttl: number, tg: number): Command => {
    const range = { num, scale, leaf, ttl128: false, ttl, tg };
    if (base.kind === 'TLBI_S2_IPA') return { kind: 'TLBI_S2_IPA', vmid: base.vmid, address, ...range } satisfies TlbiS2Ipa;
    return { kind: 'TLBI_NH_VA', vmid: base.vmid, asid: base.asid, address: u64(address % 2 ** 32, Math.floor(address / 2 ** 32)), ...range } satisfies TlbiNhVa;
  };
  if (!features.ril) {
    if (features.fullInvalidationFallback && size >= (granule / 8) * granule) return [base.kind === 'TLBI_S2_IPA' ? { kind: 'TLBI_S12_VMALL', vmid: base.vmid } : { kind: 'TLBI_NH_ASID', vmid: base.vmid, asid: base.asid }];
    for (let a = iova; a < iova + size; a += granule) out.push(make(a, 0, 0, 0, 0));
    return out;
  }
  const tg = features.minPageShift;
  let numPages = Math.floor(size / 2 ** tg);
  const tgField = (tg - 10) / 2;
  let ttl = 0;
  if (leaf) ttl = 4 - Math.floor((Math.log2(granule) - 3) / (tg - 3));
  else if (numPages % 32 === 1) numPages += 1;
  const end = iova + size;
  let a = iova;
  while (a < end && numPages > 0) {
    const scale = lowestSetBit(numPages);
    const num = Math.floor(numPages / 2 ** scale) % 32;
    out.push(make(a, num - 1, scale, ttl, tgField));
    const range = num * 2 ** (scale + tg);
    numPages -= num * 2 ** scale;
    a += range;
  }
  return out;
}

/**
 * `arm_smmu_atc_inv_to_cmd`: the smallest naturally aligned power-of-two span of pages that
 * covers [iova, iova + size); size 0 means everything (Size = 52).
 */
export function atcInvalidationSpan(iova: number, size: number): { address: number; size: number } {
  if (size === 0) return { address: 0, size: 52 };
  let start = Math.floor(iova / 4096);
  const end = Math.floor((iova + size - 1) / 4096);
  let diff = 0;
  // fls(start ^ end) without 32-bit bit operations: count the bits needed for the difference.
  for (let s = start, e = end; s !== e; s = Math.floor(s / 2), e = Math.floor(e / 2)) diff++;
  start -= start % 2 ** diff;
  return { address: start * 4096, size: diff };
}
