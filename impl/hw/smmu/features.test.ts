import { describe, expect, it } from 'vitest';
import { DEFAULT_FEATURES, featureErrors, resolveFeatures } from './features.js';

describe('SMMU features in their architectural ranges', () => {
  it('the defaults and the representative sets are legal', () => {
    expect(featureErrors()).toEqual([]);
    expect(featureErrors({ granules: ['4K'], oasBits: 40, bbml: 0, twoLevelStrtab: true, sidBits: 16 })).toEqual([]);
    expect(resolveFeatures({ bbml: 0 }).archMinorRev).toBe(1);
  });

  it('names every field out of range, and resolveFeatures throws on the first', () => {
    const cases: [Partial<typeof DEFAULT_FEATURES>, string][] = [
      [{ oasBits: 99 }, 'oasBits'],
      [{ granules: [] }, 'granules'],
      [{ granules: null as unknown as [] }, 'granules'],
      [{ granules: ['4K', '4K'] }, 'granules'],
      [{ bbml: 3 }, 'bbml'],
      [{ bbml: 0, archMinorRev: 2 }, 'bbml'],
      [{ archMinorRev: 7 }, 'archMinorRev'],
      [{ sidBits: 33 }, 'sidBits'],
      [{ cmdqLog2Max: 20 }, 'cmdqLog2Max'],
      [{ evtqLog2Max: -1 }, 'evtqLog2Max'],
      [{ s1p: false, s2p: false }, 's2p'],
      [{ iidr: { productId: 0x1000, variant: 0, revision: 0, implementer: 0 } }, 'iidr.productId'],
    ];
    for (const [partial, field] of cases) {
      expect(featureErrors(partial).map((e) => e.field), JSON.stringify(partial)).toEqual([field]);
      expect(() => resolveFeatures(partial)).toThrow(new RegExp(`^features\\.${field.replace('.', '\\.')}: `));
    }
  });
});
