import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Command, decodeCommand, encodeCommand, tlbiRangeBytes } from '../../arch/smmu/commands.js';
import { atcInvalidationSpan, buildS2RangeInvalidation } from './tlbi-range.js';

const RIL = { ril: true, minPageShift: 12, fullInvalidationFallback: false };
type S2 = Extract<Command, { kind: 'TLBI_S2_IPA' }>;

describe('TLBI range builder (smmuv3-arch §3.4)', () => {
  it('reproduces the worked example: 33 leaf pages at 0x10000', () => {
    const cmds = buildS2RangeInvalidation(RIL, 0, 0x10000, 0x21000, 0x1000, true) as S2[];
    expect(cmds.map((c) => [c.address, c.num, c.scale, c.ttl, c.tg])).toEqual([
      [0x10000, 0, 0, 3, 1],
      [0x11000, 0, 5, 3, 1],
    ]);
  });

  it('bumps a non-leaf count of 33 to 34 pages: one command, SCALE 1, NUM 16, no TTL', () => {
    const cmds = buildS2RangeInvalidation(RIL, 0, 0x10000, 0x21000, 0x1000, false) as S2[];
    expect(cmds.map((c) => [c.address, c.num, c.scale, c.ttl])).toEqual([[0x10000, 16, 1, 0]]);
  });

  it('uses the TTL of the leaf size: 2M → 2, 1G → 1', () => {
    expect((buildS2RangeInvalidation(RIL, 0, 0x20_0000, 0x20_0000, 0x20_0000, true)[0] as S2).ttl).toBe(2);
    expect((buildS2RangeInvalidation(RIL, 0, 0x4000_0000, 0x4000_0000, 0x4000_0000, true)[0] as S2).ttl).toBe(1);
  });

  it('never emits the reserved NUM = SCALE = TTL = 0 encoding and covers exactly the range (leaf) or more (non-leaf)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 20 }), fc.integer({ min: 1, max: 5000 }), fc.boolean(), (page, pages, leaf) => {
        const iova = page * 4096;
        const cmds = buildS2RangeInvalidation(RIL, 0, iova, pages * 4096, 4096, leaf) as S2[];
        let cursor = iova;
        for (const c of cmds) {
          const words = encodeCommand(c);
          expect(decodeCommand(words).kind).toBe('TLBI_S2_IPA');
          expect(c.address).toBe(cursor);
          cursor += tlbiRangeBytes(c) as number;
        }
        if (leaf) expect(cursor).toBe(iova + pages * 4096);
        else expect(cursor).toBeGreaterThanOrEqual(iova + pages * 4096);
      }),
      { seed: 3, numRuns: 500 },
    );
  });

  it('without RIL: one command per granule, or a whole-VMID invalidation past 512 granules when enabled', () => {
    const noRil = { ril: false, minPageShift: 12, fullInvalidationFallback: false };
    expect(buildS2RangeInvalidation(noRil, 0, 0, 0x20_0000, 0x1000, false)).toHaveLength(512);
    expect(buildS2RangeInvalidation(noRil, 0, 0, 0x20_0000, 0x20_0000, true)).toHaveLength(1);
    expect(buildS2RangeInvalidation({ ...noRil, fullInvalidationFallback: true }, 0, 0, 0x20_0000, 0x1000, false)).toEqual([{ kind: 'TLBI_S12_VMALL', vmid: 0 }]);
  });
});

describe('ATC invalidation span (§3.5)', () => {
  it('covers the range with the smallest aligned power-of-two span', () => {
    expect(atcInvalidationSpan(0x7000, 0x2000)).toEqual({ address: 0, size: 4 });
    expect(atcInvalidationSpan(0x7000, 0x1000)).toEqual({ address: 0x7000, size: 0 });
    expect(atcInvalidationSpan(0, 0)).toEqual({ address: 0, size: 52 });
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 30 }), fc.integer({ min: 1, max: 2 ** 24 }), (iova, size) => {
        const span = atcInvalidationSpan(iova, size);
        const bytes = 4096 * 2 ** span.size;
        expect(span.address % bytes).toBe(0);
        expect(span.address).toBeLessThanOrEqual(iova);
        expect(span.address + bytes).toBeGreaterThanOrEqual(iova + size);
        // Minimal: half the span would not cover it.
        if (span.size > 0) {
          const half = bytes / 2;
          const start = iova - (iova % half);
          expect(start + half < iova + size).toBe(true);
        }
      }),
      { seed: 5, numRuns: 500 },
    );
  });
});
