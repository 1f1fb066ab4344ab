import { describe, expect, it } from 'vitest';
import { EEXIST, EPERM } from '../arch/errno.js';
import { createSystem, type SystemConfig } from '../system.js';
import { HypervisorPanic } from './hypervisor.js';
import { PKVM_NOPAGE, PKVM_PAGE_OWNED } from './vmemmap.js';

const K4 = 0x1000;
const M2 = 0x20_0000;
const G1 = 0x4000_0000;

function config(extra: Partial<SystemConfig> = {}): SystemConfig {
  return { physShift: 36, memory: [{ base: G1, size: 8 * M2, nomap: false }, { base: 2 * G1, size: 4 * M2, nomap: false }], poolPages: 16, maxVms: 2, vmStructPages: 2, ...extra };
}

describe('host stage-2 (lazy idmap)', () => {
  it('maps the largest block inside the region around a fault, and pages for non-default prot', () => {
    const sys = createSystem(config());
    expect(sys.hostS2.idmap(G1 + 5 * K4)).toBe(0);
    expect(sys.hostS2.pgt.getLeaf(G1).level).toBe(2);
    // A gap: MMIO around 0x0900_0000 is mapped with the largest block inside the gap (1G at level 1).
    expect(sys.hostS2.idmap(0x900_0000)).toBe(0);
    expect(sys.hostS2.pgt.getLeaf(0x900_0000).level).toBe(1);
    expect(sys.hostS2.idmap(G1 + 5 * K4)).toBe(-EEXIST);
  });

  it('starts with an empty table and a zeroed vmemmap meaning host OWNED, hyp NOPAGE', () => {
    const sys = createSystem(config());
    expect(sys.hostS2.pgt.getLeaf(G1).lo).toBe(0);
    expect(sys.vmemmap.hostState(G1 / K4)).toBe(PKVM_PAGE_OWNED);
    expect(sys.vmemmap.hypState(G1 / K4)).toBe(PKVM_NOPAGE);
    expect(sys.vmemmap.nonDefault()).toEqual([]);
  });

  it('recovers from -ENOMEM by unmapping MMIO gaps, and refuses to erase an MMIO annotation', () => {
    // Pool: 1 PGD page + 3 table pages.
    const sys = createSystem(config({ hostS2PoolPages: 4 }));
    const hyp = sys.hyp;
    // MMIO page annotated for the hypervisor (needs L2 + L3 tables in the first 1G gap).
    expect(hyp.run(hyp.hostDonateHypMmio(0x9000))).toBe(0);
    expect(sys.hostS2Pool.freeBytes).toBe(K4);
    // A fault in another gap maps a 1G block, no table needed.
    expect(sys.hostS2.idmap(0xc000_0000)).toBe(0);
    // Page-granular memory needs 2 more tables: -ENOMEM; the recovery stops at the annotation
    // with -EPERM, inside the WARN_ON of the donation: a hypervisor panic, as at EL2. (With the
    // boot-time pool sized for all memory at page granularity this cannot happen.)
    expect(sys.hostS2.setOwnerLocked(G1, K4, 1, () => undefined)).toBe(-EPERM);
    expect(() => hyp.run(hyp.hostDonateHyp(G1 / K4 + 1, 1))).toThrow(HypervisorPanic);
    expect(sys.hostS2.annotationAt(0x900_0000)?.owner).toBe(1);
    // The gap mapping before the annotated gap was recycled.
    expect(sys.hostS2.pgt.getLeaf(0xc000_0000).lo).not.toBe(0);
  });

  it('recovers from -ENOMEM when no annotation stands in the way', () => {
    const sys = createSystem(config({ hostS2PoolPages: 3 }));
    // Two MMIO pages mapped at page granularity would need tables; map a gap with pages instead:
    expect(sys.hostS2.idmapLocked(0x900_0000, K4, 0b1100 | 0b10000)).toBe(0);
    expect(sys.hostS2Pool.freeBytes).toBe(0);
    const hyp = sys.hyp;
    expect(hyp.run(hyp.hostDonateHyp(G1 / K4, 1))).toBe(0);
    expect(sys.hostS2.pgt.getLeaf(0x900_0000).lo).toBe(0);
    expect(sys.hostS2.annotationAt(G1)?.owner).toBe(1);
  });
});
