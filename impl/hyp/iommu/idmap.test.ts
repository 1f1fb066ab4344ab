import { describe, expect, it } from 'vitest';
import { createSystem, type System } from '../../system.js';
import { ShadowIdmap } from './idmap.js';

const K4 = 0x1000;
const M2 = 0x20_0000;
const G1 = 0x4000_0000;

function setup(): { sys: System; idmap: ShadowIdmap; tlbi: { iova: number; size: number; leaf: boolean }[] } {
  const sys = createSystem({ physShift: 36, memory: [{ base: G1, size: 4 * M2, nomap: false }, { base: 2 * G1, size: M2, nomap: true }], poolPages: 8, maxVms: 1, vmStructPages: 2 });
  // The idmap's tables come from the host stage-2 pool here (a unit test; the system gives the
  // IOMMU a pool of its own).
  const tlbi: { iova: number; size: number; leaf: boolean }[] = [];
  const idmap = new ShadowIdmap(sys.memory, sys.hyp.memoryMap, sys.hostS2Pool, { oas: 36, pgsizeBitmap: 0x4020_1000 }, {
    invalidateRange: (iova, size, _granule, leaf) => tlbi.push({ iova, size, leaf }),
    invalidateAll: () => tlbi.push({ iova: 0, size: 0, leaf: false }),
  });
  sys.hostS2.idmapHook = (s, e, p) => idmap.onHostOwnershipChange(s, e, p);
  return { sys, idmap, tlbi };
}

describe('shadow stage-2 idmap', () => {
  it('the snapshot maps memory page by page, MMIO with blocks, NOMAP included, annotated pages skipped', () => {
    const { sys, idmap } = setup();
    expect(sys.hyp.run(sys.hyp.hostDonateHyp(G1 / K4 + 3, 1))).toBe(0);
    expect(idmap.snapshot(sys.hostS2)).toBe(0);
    expect(idmap.initialized).toBe(true);
    expect(idmap.translate(G1 + 5 * K4 + 12)).toEqual({ pa: G1 + 5 * K4 + 12, read: true, write: true });
    expect(idmap.translate(G1 + 3 * K4)).toBeUndefined();
    expect(idmap.translate(2 * G1 + K4)?.pa).toBe(2 * G1 + K4);
    expect(idmap.translate(0x900_0000)?.pa).toBe(0x900_0000);
    // MMIO gaps are mapped with 1G blocks where aligned: the gap [0, 1G) is one leaf at level 1.
    const walk = idmap.pgtable.pgtableWalk(0x900_0000);
    expect(walk.ptes[1]).toBeDefined();
    expect(walk.ptes[2]).toBeUndefined();
  });

  it('follows ownership changes after the snapshot: donation unmaps and invalidates, return maps again', () => {
    const { sys, idmap, tlbi } = setup();
    idmap.snapshot(sys.hostS2);
    tlbi.length = 0;
    expect(sys.hyp.run(sys.hyp.hostDonateHyp(G1 / K4 + 7, 2))).toBe(0);
    expect(idmap.translate(G1 + 7 * K4)).toBeUndefined();
    expect(idmap.translate(G1 + 8 * K4)).toBeUndefined();
    expect(tlbi).toEqual([
      { iova: G1 + 7 * K4, size: K4, leaf: true },
      { iova: G1 + 8 * K4, size: K4, leaf: true },
    ]);
    expect(sys.hyp.run(sys.hyp.hypDonateHost(G1 / K4 + 7, 2))).toBe(0);
    expect(idmap.translate(G1 + 8 * K4)?.pa).toBe(G1 + 8 * K4);
  });

  it('sharing does not touch the idmap; before the snapshot the hook does nothing', () => {
    const { sys, idmap, tlbi } = setup();
    expect(sys.hyp.run(sys.hyp.hostDonateHyp(G1 / K4, 1))).toBe(0);
    expect(tlbi).toEqual([]);
    idmap.snapshot(sys.hostS2);
    expect(sys.hyp.run(sys.hyp.hostShareHyp(G1 / K4 + 1))).toBe(0);
    expect(idmap.translate(G1 + K4)?.pa).toBe(G1 + K4);
    expect(idmap.translate(G1)).toBeUndefined();
  });

  it('with the v4 hook placement, a guest donation leaves the page DMA-mapped', () => {
    const { sys, idmap } = setup();
    idmap.snapshot(sys.hostS2);
    sys.hostS2.hookPlacement = 'set-owner-only';
    expect(sys.hyp.run(sys.hyp.initVm(0, true))).toBe(0);
    expect(sys.hyp.run(sys.hyp.hostDonateGuest(G1 / K4 + 9, 3, 0))).toBe(0);
    expect(idmap.translate(G1 + 9 * K4)?.pa).toBe(G1 + 9 * K4);
    sys.hostS2.hookPlacement = 'every-owner-change';
    expect(sys.hyp.run(sys.hyp.hostDonateGuest(G1 / K4 + 10, 4, 0))).toBe(0);
    expect(idmap.translate(G1 + 10 * K4)).toBeUndefined();
  });
});
