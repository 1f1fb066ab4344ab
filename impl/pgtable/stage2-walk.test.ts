import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GRANULE_4K } from '../arch/granule.js';
import { PhysicalMemory } from '../arch/physical-memory.js';
import { decodeS2Descriptor, encodeTableDesc, s2Format } from '../arch/s2-descriptor.js';
import { buildSparseTable } from '../../bench/pgtable.js';
import { KvmPgtable, PROT_RW, type Stage2Tlb } from './kvm-pgtable.js';
import { PagePool } from './page-allocator.js';
import {
  Stage2Walker,
  WALK_ADDRESS_SIZE_FAULT,
  WALK_EXTERNAL_ABORT,
  WALK_OK,
  WALK_TRANSLATION_FAULT,
  newWalkResult,
} from './stage2-walk.js';

const noTlb: Stage2Tlb = { flushVmidIpa: () => undefined, flushVmidIpaNsh: () => undefined, flushVmidRange: () => undefined, flushVmid: () => undefined };

describe('Stage2Walker', () => {
  it('agrees with the KVM get_leaf walk on a mixed table', () => {
    const { pgt } = buildSparseTable(7);
    const walker = Stage2Walker.forRoot(pgt.memory, pgt.root(), pgt.iaBits);
    const out = newWalkResult();
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 32 - 1 }), (ia) => {
        const status = walker.walk(ia, out);
        const leaf = pgt.getLeaf(ia);
        expect(out.level).toBe(leaf.level);
        expect([out.lo, out.hi]).toEqual([leaf.lo, leaf.hi]);
        const d = decodeS2Descriptor(pgt.format, leaf.lo, leaf.hi, leaf.level);
        if (d.kind === 'block' || d.kind === 'page') {
          expect(status).toBe(WALK_OK);
          const span = leaf.level === 1 ? 2 ** 30 : leaf.level === 2 ? 2 ** 21 : 2 ** 12;
          expect(out.pa).toBe(d.oa + (ia % span));
        } else {
          expect(status).toBe(WALK_TRANSLATION_FAULT);
        }
      }),
      { seed: 11, numRuns: 2000 },
    );
  });

  it('reports address-size faults and external aborts on the walk', () => {
    const memory = new PhysicalMemory([
      { name: 'ram', kind: 'ram', base: 0, size: 0x100_0000 },
      { name: 'mmio', kind: 'mmio', base: 0x100_0000, size: 0x10_0000 },
    ]);
    const format = s2Format(GRANULE_4K);
    const pool = new PagePool(memory, 0, 0x100_0000);
    const pgt = new KvmPgtable(memory, pool, noTlb, { format, iaBits: 40 });
    pgt.map(0x1000, 0x1000, 0x1000, PROT_RW, pool);
    const walker = Stage2Walker.forRoot(memory, pgt.root(), 40);
    const out = newWalkResult();
    expect(walker.walk(2 ** 40, out)).toBe(WALK_ADDRESS_SIZE_FAULT);
    expect(walker.walk(0x1234, out)).toBe(WALK_OK);
    expect(out.pa).toBe(0x1234);
    const bad = encodeTableDesc(format, 0x100_0000);
    memory.store64(pgt.pgd + 8, bad.lo, bad.hi);
    expect(walker.walk(2 ** 30, out)).toBe(WALK_EXTERNAL_ABORT);
    expect(out.level).toBe(2);
  });
});
