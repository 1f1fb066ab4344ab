/**
 * What a stage-2 TLB invalidation removes.
 *
 * Strict (weakest legal hardware, smmuv3-arch.md §3.3, §6.1): exactly what the command is
 * required to remove, nothing more:
 * - TG = 0 (or no RIL): every leaf entry of the VMID whose block contains Address, any level and
 *   granule (address bits below the entry's size are ignored); with Leaf = 0 also every cached
 *   table descriptor of the VMID covering Address.
 * - TG ≠ 0: only entries inserted with that granule; leaf entries whose block overlaps
 *   [Address, Address + (NUM+1)·2^SCALE·granule) — and, when TTL ≠ 0, only those inserted from
 *   level TTL; with Leaf = 0 also table descriptors at levels above TTL (all levels for TTL = 0)
 *   overlapping the range. 16K with TTL = 1 and DS = 0 is treated as TTL = 0. TTL128 is RES0
 *   without D128 and is ignored. A misaligned Address (UNPREDICTABLE range) is used as given.
 * - With Leaf = 1 walk-cache entries survive.
 *
 * Permissive (QEMU, §7.3): TG, TTL (except for QEMU's exact-key shortcut) and Leaf are ignored;
 * the range is split into naturally aligned power-of-two chunks (smaller than the granule when
 * Address is misaligned for it) and every stage-2 entry of the VMID overlapping a chunk is
 * removed. There is no walk cache.
 */
import { type CommandOf } from '../../arch/smmu/commands.js';
import { type TlbEntry, type TranslationCaches, type WalkEntry } from './tlb.js';

const TG_SHIFT = [0, 12, 14, 16] as const;
/** TLBI TG (1 4K, 2 16K, 3 64K) to the caches' granule index (0 4K, 1 16K, 2 64K). */
const TG_TO_GINDEX = [-1, 0, 1, 2] as const;

export interface TlbRemoval {
  tlb: number;
  walk: number;
}

function overlaps(base: number, size: number, start: number, end: number): boolean {
  return base < end && start < base + size;
}

export function strictTlbiS2Ipa(caches: TranslationCaches, cmd: CommandOf<'TLBI_S2_IPA'>, ril: boolean): TlbRemoval {
  const { vmid, address, leaf } = cmd;
  const tg = ril ? cmd.tg : 0;
  if (tg === 0) {
    const covers = (e: TlbEntry | WalkEntry): boolean => e.vmid === vmid && e.base <= address && address < e.base + e.size;
    return { tlb: caches.removeTlbWhere(covers), walk: leaf ? 0 : caches.removeWalkWhere(covers) };
  }
  const gIndex = TG_TO_GINDEX[tg] ?? -1;
  const shift = TG_SHIFT[tg] ?? 12;
  const end = address + (cmd.num + 1) * 2 ** (cmd.scale + shift);
  const ttl = tg === 2 && cmd.ttl === 1 ? 0 : cmd.ttl;
  const tlb = caches.removeTlbWhere((e) => e.vmid === vmid && e.gIndex === gIndex && (ttl === 0 || e.level === ttl) && overlaps(e.base, e.size, address, end));
  const walk = leaf
    ? 0
    : caches.removeWalkWhere((w) => w.vmid === vmid && w.gIndex === gIndex && (ttl === 0 || w.level < ttl) && overlaps(w.base, w.size, address, end));
  return { tlb, walk };
}

export function permissiveTlbiS2Ipa(caches: TranslationCaches, cmd: CommandOf<'TLBI_S2_IPA'>, ril: boolean): TlbRemoval {
  const { vmid } = cmd;
  const tg = ril ? cmd.tg : 0;
  if (tg === 0) return { tlb: qemuInvalidateIpa(caches, vmid, cmd.address, 0, 1, cmd.ttl), walk: 0 };
  const granule = TG_SHIFT[tg] ?? 12;
  const pages = (cmd.num + 1) * 2 ** cmd.scale;
  let addr = cmd.address;
  const end = addr + pages * 2 ** granule - 1;
  let removed = 0;
  // Each chunk is the largest power of two that Address is aligned to and that fits in what is
  // left, with no lower bound at the granule (QEMU 10.0.2 hw/arm/smmuv3.c:1261-1277 with
  // dma_aligned_pow2_mask). A misaligned Address (UNPREDICTABLE range, smmuv3-arch.md §3.3)
  // thus gives sub-granule chunks of "0 pages" that only remove the entries containing them.
  // At most 2 × 52 chunks: the alignment grows, then the remainder shrinks, one bit at a time.
  for (let guard = 0; addr <= end && guard < 128; guard++) {
    let chunk = 0x1000; // Address[11:0] are not in the command.
    while (addr % (chunk * 2) === 0 && addr + chunk * 2 - 1 <= end) chunk *= 2;
    removed += qemuInvalidateIpa(caches, vmid, addr, tg, Math.floor(chunk / 2 ** granule), cmd.ttl);
    addr += chunk;
  }
  return { tlb: removed, walk: 0 };
}

/** QEMU's `smmu_iotlb_inv_ipa` for one aligned chunk. */
function qemuInvalidateIpa(caches: TranslationCaches, vmid: number, ipa: number, tg: number, pages: number, ttl: number): number {
  if (ttl !== 0 && pages === 1 && tg !== 0) {
    const gIndex = TG_TO_GINDEX[tg] ?? -1;
    const exact = caches.removeTlbWhere((e) => e.vmid === vmid && e.gIndex === gIndex && e.level === ttl && e.base === ipa);
    if (exact > 0) return exact;
  }
  const granule = tg === 0 ? 12 : (TG_SHIFT[tg] ?? 12);
  const rangeSize = pages * 2 ** granule;
  // An entry is removed if it lies in the chunk or contains its start. A 0-page chunk has an
  // all-ones mask in QEMU, so only the second test can match (its start is never 0).
  return caches.removeTlbWhere((e) => e.vmid === vmid && ((rangeSize > 0 && e.base - (e.base % rangeSize) === ipa) || ipa - (ipa % e.size) === e.base));
}
