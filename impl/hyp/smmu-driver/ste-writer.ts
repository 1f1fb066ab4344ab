/**
 * The hitless entry writer (`arm_smmu_write_entry` / `arm_smmu_entry_qword_diff`,
 * smmuv3-arch.md §2.7–§2.8): moves a live 8-qword STE to a target value so that the SMMU, which
 * may read the entry at any moment, only ever sees the old or the new configuration (or, for a
 * breaking change, an invalid one). Qwords change in up to three steps, each followed by a sync
 * (CFGI_STE + CMD_SYNC) so the SMMU drops its cached copy before the next step.
 */
import { cdUpdateSafeBits, cdUsedBits } from '../../arch/smmu/cd.js';
import { steUsedBits } from '../../arch/smmu/ste.js';
import { type U64, u64 } from '../../arch/u64.js';

export interface EntryAccess {
  read(qword: number): U64;
  /** A single-copy-atomic 64-bit store of one qword. */
  write(qword: number, value: U64): void;
}

const QWORDS = 8;

/** Bits of qword 1 holding EATS (Linux STRTAB_STE_1_EATS, bits 29:28) and MEV (bit 19). */
const Q1_EATS_LO = 3 << 28;
const Q1_MEV_LO = 1 << 19;
/** Qword 2 S2S (bit 121 → q2 bit 57 → hi bit 25). */
const Q2_S2S_HI = 1 << 25;

/**
 * `get_update_safe` (newest kernels): MEV always; the EATS_TRANS value unless EATS=S1CHK is in the
 * current or target q1 or S2S is set in either q2 (EATS=1 with S2S is illegal).
 */
export function steUpdateSafeBits(current: readonly U64[], target: readonly U64[]): U64[] {
  const safe: U64[] = Array.from({ length: QWORDS }, () => u64(0, 0));
  let q1 = Q1_MEV_LO;
  const eats = (w: U64 | undefined) => ((w?.lo ?? 0) >>> 28) & 3;
  const s2s = (w: U64 | undefined) => ((w?.hi ?? 0) & Q2_S2S_HI) !== 0;
  if (eats(current[1]) !== 2 && eats(target[1]) !== 2 && !s2s(current[2]) && !s2s(target[2])) q1 |= Q1_EATS_LO & (1 << 28);
  safe[1] = u64(q1, 0);
  return safe;
}

/**
 * The entry-kind half of Linux's `arm_smmu_entry_writer_ops`: `get_used` and `get_update_safe`
 * (smmuv3-arch.md §2.8). The STE ops are the default; CDs use `CD_WRITER_OPS`.
 */
export interface EntryWriterOps {
  usedBits(words: readonly U64[]): U64[];
  updateSafeBits(current: readonly U64[], target: readonly U64[]): U64[];
}

export const STE_WRITER_OPS: EntryWriterOps = Object.freeze({ usedBits: steUsedBits, updateSafeBits: steUpdateSafeBits });
/** Linux's `arm_smmu_cd_writer_ops`: `arm_smmu_get_cd_used`, no update-safe bits. */
export const CD_WRITER_OPS: EntryWriterOps = Object.freeze({ usedBits: cdUsedBits, updateSafeBits: cdUpdateSafeBits });

export interface QwordDiff {
  /** Bit i set: qword i must change while it is in use. */
  readonly critical: number;
  readonly unusedUpdate: U64[];
}

/** `arm_smmu_entry_qword_diff`. */
export function qwordDiff(entry: readonly U64[], target: readonly U64[], ops: EntryWriterOps = STE_WRITER_OPS): QwordDiff {
  const curUsed = ops.usedBits(entry);
  const tgtUsed = ops.usedBits(target);
  const safe = ops.updateSafeBits(entry, target);
  let critical = 0;
  const unusedUpdate: U64[] = [];
  for (let i = 0; i < QWORDS; i++) {
    const e = entry[i] as U64;
    const t = target[i] as U64;
    const cu = curUsed[i] as U64;
    const tu = tgtUsed[i] as U64;
    const sf = safe[i] as U64;
    const safeLo = sf.lo & cu.lo & tu.lo;
    const safeHi = sf.hi & cu.hi & tu.hi;
    const cuLo = cu.lo & ~safeLo;
    const cuHi = cu.hi & ~safeHi;
    const uLo = ((e.lo & cuLo) | (t.lo & ~cuLo)) >>> 0;
    const uHi = ((e.hi & cuHi) | (t.hi & ~cuHi)) >>> 0;
    unusedUpdate.push(u64(uLo, uHi));
    if (((uLo & tu.lo) >>> 0) !== t.lo || ((uHi & tu.hi) >>> 0) !== t.hi) critical |= 1 << i;
  }
  return { critical, unusedUpdate };
}

function popcount(x: number): number {
  let n = 0;
  for (; x !== 0; x &= x - 1) n++;
  return n;
}

/** `entry_set`: stores every qword of [start, start+len) that differs, then syncs if any did. */
function entrySet(access: EntryAccess, source: readonly U64[], start: number, len: number, sync: () => void): boolean {
  let changed = false;
  for (let i = start; i < start + len; i++) {
    const cur = access.read(i);
    const want = source[i] as U64;
    if (cur.lo !== want.lo || cur.hi !== want.hi) {
      access.write(i, want);
      changed = true;
    }
  }
  if (changed) sync();
  return changed;
}

export type EntryUpdateKind = 'hitless' | 'breaking' | 'unchanged';

/**
 * `arm_smmu_write_entry`: updates the entry to `target`, calling `sync` after each step. `ops`
 * selects the entry kind (STE by default; `CD_WRITER_OPS` for context descriptors).
 */
export function writeEntry(access: EntryAccess, target: readonly U64[], sync: () => void, ops: EntryWriterOps = STE_WRITER_OPS): EntryUpdateKind {
  const entry = Array.from({ length: QWORDS }, (_, i) => access.read(i));
  const { critical, unusedUpdate } = qwordDiff(entry, target, ops);
  const n = popcount(critical);
  if (n === 1) {
    const c = Math.log2(critical & -critical);
    unusedUpdate[c] = entry[c] as U64;
    entrySet(access, unusedUpdate, 0, QWORDS, sync);
    entrySet(access, target, c, 1, sync);
    entrySet(access, target, 0, QWORDS, sync);
    return 'hitless';
  }
  if (n >= 2) {
    unusedUpdate[0] = u64(0, 0);
    entrySet(access, unusedUpdate, 0, 1, sync);
    entrySet(access, target, 1, QWORDS - 1, sync);
    entrySet(access, target, 0, 1, sync);
    return 'breaking';
  }
  entrySet(access, target, 0, QWORDS, sync);
  return 'unchanged';
}

/**
 * The posted hypervisor's STE update (DRV-v6e `smmu_reshadow_ste`, posted v6-era), not Linux's
 * hitless writer: valid → invalid writes qword 0, syncs (CFGI_STE + CMD_SYNC), then qwords 1..7;
 * invalid → valid writes qwords 1..7, syncs, then qword 0; anything else writes all eight in order
 * with no sync in between — "as all the S2 config is always the same". The caller then sends the
 * final CFGI_STE + CMD_SYNC. Not hitless in general (e.g. bypass → stage 1 changes qwords 0 and
 * 1 while the entry is live: series-as-posted.md §2.7, probe G).
 */
export function writeSteAsPosted(access: EntryAccess, target: readonly U64[], sync: () => void): EntryUpdateKind {
  const curValid = (access.read(0).lo & 1) !== 0;
  const targetValid = ((target[0] as U64).lo & 1) !== 0;
  if (curValid && !targetValid) {
    access.write(0, target[0] as U64);
    sync();
    for (let i = 1; i < QWORDS; i++) access.write(i, target[i] as U64);
    return 'breaking';
  }
  if (!curValid && targetValid) {
    for (let i = 1; i < QWORDS; i++) access.write(i, target[i] as U64);
    sync();
    access.write(0, target[0] as U64);
    return 'breaking';
  }
  for (let i = 0; i < QWORDS; i++) access.write(i, target[i] as U64);
  return 'hitless'; // what the code assumes, not what the oracle says
}
