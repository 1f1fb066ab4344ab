import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { EINVAL, EPERM } from './errno.js';
import {
  addrIsMemory,
  checkRangeAllowedMemory,
  findMemRange,
  pfnRangeIsValid,
  pfnToPhys,
  u64,
  validateLayout,
  type Layout,
} from './layout.js';
import { apply } from './apply.js';
import { A, A_END, B, B_END, fresh, GAP, NOMAP, NOMAP_END, smallConfig } from './test-support.js';

const layout: Layout = smallConfig().layout;
const P = (pfn: number) => BigInt(pfn) * 4096n;
const check = (pfn: number, n: number) => checkRangeAllowedMemory(layout, P(pfn), P(pfn) + BigInt(n) * 4096n);

describe('pfn_range_is_valid (overflow-proof, §3)', () => {
  // physShift 40: limit = 2^28 page frames.
  const limit = 2 ** 28;
  const valid = (pfn: number, n: number) => pfnRangeIsValid(layout, u64(pfn, 'pfn'), u64(n, 'n'));

  it('accepts ranges ending exactly at the PA limit and rejects one page more', () => {
    expect(valid(limit - 1, 1)).toBe(true);
    expect(valid(0, limit)).toBe(true);
    expect(valid(limit - 1, 2)).toBe(false);
    expect(valid(limit, 0)).toBe(false);
    expect(valid(0, limit + 1)).toBe(false);
  });

  it('rejects nrPages near 2^52 and 2^64 that a naive pfn + n would wrap past the limit', () => {
    // pfn + n wraps to a small number in u64 for these: the kernel's form must still say no.
    expect(valid(16, 2 ** 64 - 2 ** 11)).toBe(false);
    expect(valid(A, 2 ** 64 - 2 ** 12)).toBe(false);
    expect(valid(1, 2 ** 52)).toBe(false);
    expect(valid(0, 2 ** 52 - 1)).toBe(false);
    expect(valid(2 ** 52 - 1, 1)).toBe(false);
    expect(valid(2 ** 63, 2 ** 63)).toBe(false);
  });

  it('agrees with exact arithmetic for any u64 pair', () => {
    const big = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
    fc.assert(
      fc.property(big, big, (pfn, n) => {
        expect(pfnRangeIsValid(layout, pfn, n)).toBe(pfn + n <= BigInt(limit) && pfn < BigInt(limit));
      }),
      { numRuns: 300 },
    );
  });

  it('with a 52-bit PA, a range reaching 2^52 pages is still valid', () => {
    const wide: Layout = { physShift: 52, memory: [] };
    expect(pfnRangeIsValid(wide, 0n, 1n << 40n)).toBe(true);
    expect(pfnRangeIsValid(wide, (1n << 40n) - 1n, 1n)).toBe(true);
    expect(pfnRangeIsValid(wide, (1n << 40n) - 1n, 2n)).toBe(false);
  });
});

describe('check_range_allowed_memory (§2.2)', () => {
  it('is 0 inside one normal region, at both edges', () => {
    expect(check(A, A_END - A)).toBe(0);
    expect(check(A_END - 1, 1)).toBe(0);
    expect(check(B, B_END - B)).toBe(0);
  });

  it('is -EINVAL for a range crossing any boundary', () => {
    expect(check(A_END - 1, 2)).toBe(-EINVAL); // into the adjacent NOMAP region
    expect(check(NOMAP_END - 1, 2)).toBe(-EINVAL); // NOMAP into the gap
    expect(check(B - 1, 2)).toBe(-EINVAL); // gap into memory
    expect(check(A - 1, 2)).toBe(-EINVAL);
    expect(check(B_END - 1, 2)).toBe(-EINVAL); // memory into the top gap
  });

  it('is -EPERM for MMIO gaps and NOMAP regions', () => {
    expect(check(GAP, 4)).toBe(-EPERM);
    expect(check(0, 1)).toBe(-EPERM);
    expect(check(NOMAP, 1)).toBe(-EPERM);
    expect(check(B_END + 100, 1)).toBe(-EPERM);
  });

  it('an empty range is judged by end - 1: allowed mid-region, -EINVAL at a region base', () => {
    expect(check(A + 5, 0)).toBe(0);
    expect(check(A, 0)).toBe(-EINVAL);
    expect(check(0, 0)).toBe(-EINVAL); // end - 1 wraps to 2^64 - 1
  });

  it('the last page of the address space is -EINVAL: the top gap ends at ULONG_MAX', () => {
    const top = (1n << 64n) - 4096n;
    expect(checkRangeAllowedMemory(layout, top, (top + 4096n) & ((1n << 64n) - 1n))).toBe(-EINVAL);
    expect(checkRangeAllowedMemory(layout, top - 4096n, top)).toBe(-EPERM);
  });

  it('find_mem_range reports the gap around an MMIO address', () => {
    const r = findMemRange(layout, P(GAP));
    expect(r.region).toBeUndefined();
    expect([r.start, r.end]).toEqual([P(NOMAP_END), P(B)]);
    expect(addrIsMemory(layout, P(NOMAP))).toBe(true);
    expect(addrIsMemory(layout, P(GAP))).toBe(false);
  });
});

describe('u64 fields', () => {
  it('hyp_pfn_to_phys drops the top 12 bits of a huge pfn, as the C shift does', () => {
    expect(pfnToPhys(2n ** 52n + 5n)).toBe(5n * 4096n);
    expect(pfnToPhys(2n ** 52n - 1n)).toBe(2n ** 64n - 4096n);
  });

  it('rejects values no register can hold', () => {
    expect(() => u64(-1, 'x')).toThrow(RangeError);
    expect(() => u64(1.5, 'x')).toThrow(RangeError);
    expect(() => u64(2 ** 64, 'x')).toThrow(RangeError);
    expect(u64(2 ** 64 - 2 ** 11, 'x')).toBe(2n ** 64n - 2n ** 11n);
    expect(() => apply(fresh(), { kind: 'host_share_hyp', pfn: -3 })).toThrow(RangeError);
  });
});

describe('validateLayout', () => {
  it('rejects unaligned, overlapping, unsorted and out-of-range layouts', () => {
    expect(() => validateLayout({ physShift: 40, memory: [{ base: 100, size: 4096 }] })).toThrow();
    expect(() =>
      validateLayout({ physShift: 40, memory: [{ base: 8192, size: 8192 }, { base: 12288, size: 4096 }] }),
    ).toThrow();
    expect(() => validateLayout({ physShift: 32, memory: [{ base: 2 ** 32, size: 4096 }] })).toThrow();
    expect(() => validateLayout({ physShift: 53, memory: [] })).toThrow();
    expect(() => validateLayout(layout)).not.toThrow();
  });
});
