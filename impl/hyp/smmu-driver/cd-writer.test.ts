/**
 * The four CD cases of Linux's arm-smmu-v3 KUnit hitless test (arm-smmu-v3-test.c:
 * write_cd_test_s1_clear, s1_change_asid, sva_clear, sva_release), run through this project's
 * `writeEntry` with the CD ops. The oracle is KUnit's: at every sync the entry is either
 * invalid (q0 == 0, which counts as "not hitless") or equal, in the bits its own configuration
 * uses, to the initial or the target entry; the number of syncs is as KUnit expects.
 */
import { describe, expect, it } from 'vitest';
import { cdFields, cdUsedBits, encodeCd } from '../../arch/smmu/cd.js';
import { type U64, u64 } from '../../arch/u64.js';
import { CD_WRITER_OPS, writeEntry } from './ste-writer.js';

/** `arm_smmu_make_s1_cd` as the KUnit test drives it (io-pgtable cfg: tsz 4, tg 2, sh 3, orgn 1, irgn 2, ips 1). */
function s1Cd(asid: number): U64[] {
  return encodeCd(cdFields({
    t0sz: 4, tg0: 2, ir0: 2, or0: 1, sh0: 3, epd1: true, v: true, ips: 1, aa64: true, r: true, a: true, aset: true, asid,
    ttb0: 0x000d_beef_dead_bee0, mair: u64(0x1234_5678, 0x0abc_def0),
  }));
}

/**
 * `arm_smmu_make_sva_cd` with the KUnit test's SMMU (STALLS | ATTR_TYPES_OVR, no STALL_FORCE):
 * with an mm, TTB0 = pgd (0xdaedbeefdeadbeef masked) and its controls (T0SZ 64 − 48, WBWA, ISH,
 * 4K); without one ("release"), EPD0 = 1 and S/R cleared. MAIR is the CPU's (any fixed value).
 */
function svaCd(asid: number, mm: boolean): U64[] {
  const common = { epd1: true, v: true, ips: 5, aa64: true, r: !mm ? false : true, a: true, aset: true, asid, mair: u64(0x0440_ff00, 0x0000_00bb) };
  return encodeCd(cdFields(mm ? { ...common, t0sz: 16, tg0: 0, ir0: 1, or0: 1, sh0: 3, ttb0: 0x000d_beef_dead_bee0 } : { ...common, epd0: true }));
}

const ZERO_CD: U64[] = encodeCd(cdFields());

function differsInUsed(entry: readonly U64[], used: readonly U64[], ref: readonly U64[]): boolean {
  return entry.some((w, i) => ((w.lo & used[i]!.lo) >>> 0) !== ref[i]!.lo || ((w.hi & used[i]!.hi) >>> 0) !== ref[i]!.hi);
}

/** KUnit's `arm_smmu_v3_test_cd_expect_transition`. */
function expectTransition(cur: readonly U64[], target: readonly U64[], syncsExpected: number, hitless: boolean): void {
  const entry = cur.map((w) => ({ ...w }));
  let syncs = 0;
  let invalidWritten = false;
  writeEntry(
    { read: (i) => entry[i]!, write: (i, v) => (entry[i] = v) },
    target,
    () => {
      syncs++;
      if (entry[0]!.lo === 0 && entry[0]!.hi === 0) {
        invalidWritten = true;
        return;
      }
      const used = cdUsedBits(entry);
      // KUnit compares (entry & used) with the raw initial / target entry.
      expect(differsInUsed(entry, used, cur) && differsInUsed(entry, used, target)).toBe(false);
    },
    CD_WRITER_OPS,
  );
  expect(invalidWritten).toBe(!hitless);
  expect(syncs).toBe(syncsExpected);
  expect(entry).toEqual(target);
}

describe('hitless CD writer: the KUnit CD transitions', () => {
  it('write_cd_test_s1_clear: zero ↔ s1 CD, not hitless, 2 syncs each way', () => {
    expectTransition(ZERO_CD, s1Cd(1997), 2, false);
    expectTransition(s1Cd(1997), ZERO_CD, 2, false);
  });
  it('write_cd_test_s1_change_asid: hitless, 1 sync each way', () => {
    expectTransition(s1Cd(778), s1Cd(1997), 1, true);
    expectTransition(s1Cd(1997), s1Cd(778), 1, true);
  });
  it('write_cd_test_sva_clear: zero ↔ SVA CD, not hitless, 2 syncs each way', () => {
    expectTransition(ZERO_CD, svaCd(1997, true), 2, false);
    expectTransition(svaCd(1997, true), ZERO_CD, 2, false);
  });
  it('write_cd_test_sva_release: SVA ↔ released (EPD0) CD, hitless, 2 syncs each way', () => {
    expectTransition(svaCd(1997, true), svaCd(1997, false), 2, true);
    expectTransition(svaCd(1997, false), svaCd(1997, true), 2, true);
  });
});
