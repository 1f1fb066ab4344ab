import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PageMap } from './page-map.js';

/** Random update batches over a few 512-page blocks: (pfns, value or undefined for "no entry"). */
const batches = fc.array(fc.tuple(fc.array(fc.integer({ min: 0, max: 4 * 512 - 1 }), { maxLength: 40 }), fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined })), { maxLength: 12 });

function naiveDifferences(a: ReadonlyMap<number, number>, b: ReadonlyMap<number, number>): number[] {
  const out = new Set<number>();
  for (const [k, v] of a) if (b.get(k) !== v) out.add(k);
  for (const [k, v] of b) if (a.get(k) !== v) out.add(k);
  return [...out].sort((x, y) => x - y);
}

describe('PageMap', () => {
  it('reads as the plain Map built by the same updates, and never changes a version it was built from', () => {
    fc.assert(
      fc.property(batches, (updates) => {
        let pages = PageMap.empty<number>();
        const plain = new Map<number, number>();
        for (const [pfns, value] of updates) {
          const before = [...pages].sort((x, y) => x[0] - y[0]);
          const next = pages.updated(pfns, () => value);
          expect([...pages].sort((x, y) => x[0] - y[0])).toEqual(before);
          pages = next;
          for (const pfn of pfns) {
            if (value === undefined) plain.delete(pfn);
            else plain.set(pfn, value);
          }
          expect(pages.size).toBe(plain.size);
          expect([...pages.entries()].sort((x, y) => x[0] - y[0])).toEqual([...plain].sort((x, y) => x[0] - y[0]));
          for (const pfn of pfns) expect([pages.has(pfn), pages.get(pfn)]).toEqual([plain.has(pfn), plain.get(pfn)]);
        }
      }),
    );
  });

  it('finds exactly the pages whose value differs between two versions', () => {
    fc.assert(
      fc.property(batches, batches, (common, apart) => {
        let base = PageMap.empty<number>();
        for (const [pfns, value] of common) base = base.updated(pfns, () => value);
        let other = base;
        for (const [pfns, value] of apart) other = other.updated(pfns, () => value);
        const found = new Set<number>();
        base.addDifferences(other, found);
        expect([...found].sort((x, y) => x - y)).toEqual(naiveDifferences(base, other));
        const back = new Set<number>();
        other.addDifferences(base, back);
        expect([...back].sort((x, y) => x - y)).toEqual(naiveDifferences(base, other));
      }),
    );
  });

  it('an update copies only the blocks it touches', () => {
    const a = PageMap.empty<string>().updated([1, 600, 1100], () => 'x');
    const b = a.updated([601], () => 'y');
    const blocks = (m: PageMap<string>) => (m as unknown as { blocks: Map<number, unknown> }).blocks;
    expect(blocks(b).get(0)).toBe(blocks(a).get(0));
    expect(blocks(b).get(2)).toBe(blocks(a).get(2));
    expect(blocks(b).get(1)).not.toBe(blocks(a).get(1));
    // A block left empty is dropped, so equal contents compare equal.
    expect(blocks(b.updated([1], () => undefined)).has(0)).toBe(false);
  });

  it('takes in a plain Map unchanged', () => {
    const m = PageMap.of(new Map([[3, 'a'], [700, 'b']]));
    expect([m.size, m.get(3), m.get(700), m.has(4), [...m.keys()].sort()]).toEqual([2, 'a', 'b', false, [3, 700]]);
    expect(PageMap.of(m)).toBe(m);
  });
});
