/**
 * The SMMU's stage-2 table walker, with SMMU fault classification (smmuv3-arch.md §2.4, §5.2,
 * §7.4): an unreadable descriptor is F_WALK_EABT; an invalid or reserved descriptor, or a block
 * at a level where blocks do not exist, is F_TRANSLATION; a table or leaf output address at or
 * above the effective S2PS is F_ADDR_SIZE; AF = 0 without S2AFFD is F_ACCESS. Permissions are
 * the caller's (they apply to TLB hits too). The walk may start from a cached table descriptor
 * and may fill the walk cache with the table descriptors it reads — valid descriptors only, as
 * §6.1 allows. It allocates nothing unless it fills the walk cache.
 *
 * Descriptors are read from RAM frames only: a table pointer into MMIO or a hole is an external
 * abort on the walk [choice: real hardware may read device memory; aborting keeps the model from
 * walking its own register frame].
 */
import { LAST_LEVEL } from '../../arch/granule.js';
import { type PhysicalMemory } from '../../arch/physical-memory.js';
import { DESC_AF, DESC_NT, descOutputAddress } from '../../arch/s2-descriptor.js';
import { type S2Context } from './stream-table.js';
import { type TranslationCaches, type VmidSpace } from './tlb.js';

export const WALK_OK = 0;
export const WALK_TRANSLATION = 1;
export const WALK_ADDR_SIZE = 2;
export const WALK_ACCESS = 3;
export const WALK_EABT = 4;

/** Reusable walk result. */
export class WalkOut {
  /** Input: the IPA to walk (a field, not an argument, so that a caller's double is not boxed). */
  ipa = 0;
  status = WALK_OK;
  /** Level of the leaf or of the faulting descriptor. */
  level = 0;
  /** Leaf: first IPA, size, output block address, S2AP permissions, nT. */
  base = 0;
  size = 0;
  pa = 0;
  perms = 0;
  nT = false;
  /** Address of the descriptor whose read aborted (F_WALK_EABT) or faulted. */
  fetchAddr = 0;
  /** Whether the walk started from a walk-cache entry. */
  fromWalkCache = false;
}

export class SmmuWalker {
  constructor(
    private readonly memory: PhysicalMemory,
    private readonly caches: TranslationCaches,
  ) {}

  /**
   * Walks `out.ipa` (already checked against ctx.ipaLimit). `space` enables walk-cache use and/or
   * fill; `sid` tags filled entries.
   */
  walk(ctx: S2Context, space: VmidSpace | null, useWalkCache: boolean, fillWalkCache: boolean, sid: number, out: WalkOut): number {
    const ipa = out.ipa;
    const spans = ctx.spans;
    let level = ctx.startLevel;
    let table = ctx.ttb;
    let index = Math.floor(ipa / (spans[level] as number)) % ctx.topEntries;
    out.fromWalkCache = false;
    if (useWalkCache && space !== null) {
      const cached = this.caches.lookupWalk(space, out, ctx.startLevel);
      if (cached !== null) {
        level = cached.level + 1;
        table = cached.table;
        index = Math.floor(ipa / (spans[level] as number)) & ctx.entryMask;
        out.fromWalkCache = true;
      }
    }
    for (;;) {
      const ptep = table + index * 8;
      out.level = level;
      out.fetchAddr = ptep;
      const frame = this.memory.frameForRead(ptep);
      if (frame === undefined) return (out.status = WALK_EABT);
      const word = (ptep % 4096) >>> 2;
      const lo = frame[word] as number;
      const hi = frame[word + 1] as number;
      if ((lo & 1) === 0) return (out.status = WALK_TRANSLATION);
      if (level === LAST_LEVEL) {
        if ((lo & 2) === 0) return (out.status = WALK_TRANSLATION);
      } else if ((lo & 2) !== 0) {
        const next = descOutputAddress(ctx.format, lo, hi);
        if (next >= ctx.paLimit) return (out.status = WALK_ADDR_SIZE);
        if (fillWalkCache && space !== null) {
          const span = spans[level] as number;
          this.caches.insertWalk(space, level, ipa - (ipa % span), span, next, sid);
        }
        table = next;
        level++;
        index = Math.floor(ipa / (spans[level] as number)) & ctx.entryMask;
        continue;
      } else if ((ctx.leafOk[level] as number) === 0) {
        return (out.status = WALK_TRANSLATION);
      }
      const span = spans[level] as number;
      const oa = descOutputAddress(ctx.format, lo, hi);
      const blockPa = oa - (oa % span);
      if (blockPa >= ctx.paLimit) return (out.status = WALK_ADDR_SIZE);
      if ((lo & DESC_AF) === 0 && !ctx.affd) return (out.status = WALK_ACCESS);
      out.base = ipa - (ipa % span);
      out.size = span;
      out.pa = blockPa;
      out.perms = ((lo >>> 6) & 1) | ((lo >>> 6) & 2);
      out.nT = level !== LAST_LEVEL && (lo & DESC_NT) !== 0;
      return (out.status = WALK_OK);
    }
  }
}
