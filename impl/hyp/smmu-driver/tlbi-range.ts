/**
 * Stage-2 TLB invalidation commands for a range, as Linux builds them (`__arm_smmu_tlb_inv_range`,
 * smmuv3-arch.md §3.4), shared by the hypervisor driver: with FEAT_RANGE_INV one TLBI_S2_IPA per
 * set 5-bit group of the page count (TG from the smallest page size, TTL for leaf invalidations
 * only, the non-leaf `num_pages` bump that avoids the reserved NUM = SCALE = TTL = 0); without it
 * one command per granule, or a whole-VMID invalidation when the range is too big.
 */
import { type Command } from '../../arch/smmu/commands.js';

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

function lowestSetBit(x: number): number {
  // x < 2^53 and non-zero here.
  let n = 0;
  while (x % 2 === 0) {
    x /= 2;
    n++;
  }
  return n;
}

/** The commands (without the final CMD_SYNC) that invalidate [iova, iova + size). */
export function buildS2RangeInvalidation(features: TlbiRangeFeatures, vmid: number, iova: number, size: number, granule: number, leaf: boolean): Command[] {
  if (size === 0) return [];
  const out: Command[] = [];
  const base: TlbiS2Ipa = { kind: 'TLBI_S2_IPA', vmid, address: 0, num: 0, scale: 0, leaf, ttl128: false, ttl: 0, tg: 0 };
  if (!features.ril) {
    if (features.fullInvalidationFallback && size >= (granule / 8) * granule) return [{ kind: 'TLBI_S12_VMALL', vmid }];
    for (let a = iova; a < iova + size; a += granule) out.push({ ...base, address: a });
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
    out.push({ ...base, address: a, num: num - 1, scale, ttl, tg: tgField });
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
