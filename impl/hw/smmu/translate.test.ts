import { describe, expect, it } from 'vitest';
import { GRANULE_16K, GRANULE_4K, GRANULE_64K } from '../../arch/granule.js';
import { RO, RW, SmmuBench, DATA, CMD_SYNC, s2SteFields, tlbiIpa } from './testing.js';

const G = 0x4000_0000;
const M2 = 0x20_0000;

describe('stage-2 walk geometry', () => {
  const cases = [
    { name: '4K, 48-bit IPA, start level 0', g: GRANULE_4K, tg: 0, t0sz: 16, sl0: 2, start: 0, ipa: 0xab_cdef_1000 * 16 },
    { name: '4K, 39-bit IPA, start level 1', g: GRANULE_4K, tg: 0, t0sz: 25, sl0: 1, start: 1, ipa: 0x7f_ffff_f000 },
    { name: '4K, 30-bit IPA, start level 2', g: GRANULE_4K, tg: 0, t0sz: 34, sl0: 0, start: 2, ipa: 0x3fff_f000 },
    { name: '16K, 36-bit IPA, start level 2', g: GRANULE_16K, tg: 2, t0sz: 28, sl0: 1, start: 2, ipa: 0xf_ffff_c000 },
    { name: '64K, 42-bit IPA, start level 2', g: GRANULE_64K, tg: 1, t0sz: 22, sl0: 1, start: 2, ipa: 0x3ff_ffff_0000 },
  ];
  for (const c of cases) {
    it(`${c.name}: a page translates, the next page faults`, () => {
      const b = new SmmuBench();
      const entries = 2 ** (64 - c.t0sz - (c.g.bitsPerLevel * (4 - c.start) + 3));
      const root = b.allocTable(c.g, Math.max(1, Math.ceil((entries * 8) / c.g.size)));
      b.map(root, c.start, c.ipa, 3, DATA, RW, c.g, entries);
      b.writeSte(1, s2SteFields({ vmid: 1, ttb: root, t0sz: c.t0sz, sl0: c.sl0, tg: c.tg }));
      expect(b.smmu.translate(1, c.ipa + 0x10, 'write')).toEqual({ kind: 'ok', pa: DATA + 0x10, via: 'walk', level: 3 });
      expect(b.smmu.translate(1, c.ipa + 0x10, 'read')).toEqual({ kind: 'ok', pa: DATA + 0x10, via: 'tlb', level: 3 });
      expect(b.smmu.translate(1, c.ipa - c.g.size, 'read')).toMatchObject({ kind: 'abort', reason: 'translation' });
    });
  }

  it('concatenated start-level tables: 4K, 40-bit IPA, two level-1 tables', () => {
    const b = new SmmuBench();
    const root = b.allocTable(GRANULE_4K, 2);
    const ipa = 2 ** 40 - 0x1000;
    b.map(root, 1, ipa, 3, DATA, RW, GRANULE_4K, 1024);
    b.writeSte(1, s2SteFields({ vmid: 1, ttb: root, t0sz: 24, sl0: 1 }));
    expect(b.smmu.translate(1, ipa, 'read')).toMatchObject({ kind: 'ok', pa: DATA });
    // The second table holds the entry: the first one's entry 511 is empty.
    expect(b.memory.peek64(root + 511 * 8)).toEqual({ lo: 0, hi: 0 });
    expect(b.memory.peek64(root + 1023 * 8).lo & 3).toBe(3);
  });

  it('blocks at levels 1 and 2 translate with the offset inside the block', () => {
    const b = new SmmuBench();
    const root = b.allocTable();
    b.map(root, 1, G, 1, G);
    b.map(root, 1, 2 * G + M2, 2, DATA);
    b.writeSte(1, s2SteFields({ vmid: 1, ttb: root }));
    expect(b.smmu.translate(1, G + 0x1234_5678, 'read')).toMatchObject({ kind: 'ok', pa: G + 0x1234_5678, level: 1 });
    expect(b.smmu.translate(1, 2 * G + M2 + 0x1_2345, 'read')).toMatchObject({ kind: 'ok', pa: DATA + 0x1_2345, level: 2 });
    expect(b.smmu.cachedTranslations().map((e) => [e.level, e.size])).toEqual([
      [1, G],
      [2, M2],
    ]);
  });

  it('a level-0 block (4K, no LPA2) and a level-3 0b01 descriptor are translation faults', () => {
    const b = new SmmuBench();
    const root = b.allocTable();
    b.memory.store64(root, 0x4000_0000 | 0x401 | 0xc0, 0); // L0 block
    b.writeSte(1, s2SteFields({ vmid: 1, ttb: root, t0sz: 16, sl0: 2 }));
    expect(b.smmu.translate(1, 0x1000, 'read')).toMatchObject({ kind: 'abort', reason: 'translation', event: { kind: 'F_TRANSLATION' } });
    const root2 = b.allocTable();
    b.map(root2, 1, 0x1000, 3, DATA);
    const pte = b.descAddr(root2, 1, 0x1000, 3);
    const cur = b.memory.peek64(pte);
    b.memory.store64(pte, cur.lo & ~2, cur.hi);
    b.writeSte(2, s2SteFields({ vmid: 2, ttb: root2 }));
    expect(b.smmu.translate(2, 0x1000, 'read')).toMatchObject({ kind: 'abort', reason: 'translation' });
  });
});

describe('faults and their events', () => {
  function bench(s2r = true, affd = false): { b: SmmuBench; root: number } {
    const b = new SmmuBench();
    const root = b.allocTable();
    b.writeSte(1, s2SteFields({ vmid: 1, ttb: root, s2r, affd, ps: 2 }));
    return { b, root };
  }

  it('IPA beyond 64 − S2T0SZ is F_TRANSLATION at stage 2; input beyond IAS is stage-1 F_ADDR_SIZE', () => {
    const { b } = bench();
    expect(b.smmu.translate(1, 2 ** 39, 'read')).toMatchObject({ reason: 'translation', event: { kind: 'F_TRANSLATION', s2: true, ipa: 2 ** 39 } });
    expect(b.smmu.translate(1, 2 ** 48, 'read')).toMatchObject({ reason: 'addr_size_s1', event: { kind: 'F_ADDR_SIZE', s2: false } });
    expect(b.smmu.translate(1, -5, 'read')).toMatchObject({ reason: 'addr_size_s1' });
    expect(b.smmu.translate(1, Number.NaN, 'read')).toMatchObject({ reason: 'addr_size_s1' });
  });

  it('leaf or table output beyond the effective S2PS is F_ADDR_SIZE', () => {
    const { b, root } = bench();
    b.map(root, 1, 0x1000, 3, 2 ** 40);
    expect(b.smmu.translate(1, 0x1000, 'read')).toMatchObject({ reason: 'addr_size', event: { kind: 'F_ADDR_SIZE', s2: true } });
    b.memory.store64(root + 8, 3, 0x100); // L1[1] → table at 2^40
    expect(b.smmu.translate(1, G, 'read')).toMatchObject({ reason: 'addr_size' });
  });

  it('S2AP: read-only allows reads, write faults (also from the TLB); no-access faults both', () => {
    const { b, root } = bench();
    b.map(root, 1, 0x1000, 3, DATA, RO);
    b.map(root, 1, 0x2000, 3, DATA, { ...RO, read: false });
    expect(b.smmu.translate(1, 0x1000, 'write')).toMatchObject({ reason: 'permission', event: { kind: 'F_PERMISSION', rnw: false } });
    expect(b.smmu.cachedTranslations()).toHaveLength(1);
    expect(b.smmu.translate(1, 0x1000, 'read')).toMatchObject({ kind: 'ok', via: 'tlb' });
    expect(b.smmu.translate(1, 0x1000, 'write')).toMatchObject({ reason: 'permission' });
    expect(b.smmu.translate(1, 0x2000, 'read')).toMatchObject({ reason: 'permission', event: { rnw: true } });
  });

  it('AF = 0 is F_ACCESS and is not cached; S2AFFD treats AF as 1', () => {
    const { b, root } = bench();
    b.map(root, 1, 0x1000, 3, DATA, { ...RW, af: false });
    expect(b.smmu.translate(1, 0x1000, 'read')).toMatchObject({ reason: 'access', event: { kind: 'F_ACCESS' } });
    expect(b.smmu.cachedTranslations()).toEqual([]);
    const { b: b2, root: root2 } = bench(true, true);
    b2.map(root2, 1, 0x1000, 3, DATA, { ...RW, af: false });
    expect(b2.smmu.translate(1, 0x1000, 'read')).toMatchObject({ kind: 'ok', pa: DATA });
  });

  it('a walk that reads outside RAM is F_WALK_EABT with the descriptor address', () => {
    const { b, root } = bench();
    b.memory.store64(root, 0x0980_0000 | 3, 0);
    expect(b.smmu.translate(1, 0x3000, 'read')).toMatchObject({ reason: 'walk_eabt', event: { kind: 'F_WALK_EABT', fetchAddr: 0x0980_0000, s2: true, eventClass: 2 } });
  });

  it('S2R = 0 suppresses translation-family events but not F_WALK_EABT', () => {
    const { b, root } = bench(false);
    expect(b.smmu.translate(1, 0x1000, 'read')).toMatchObject({ reason: 'translation', recorded: false });
    expect(b.readEvents()).toEqual([]);
    b.memory.store64(root, 0x0980_0000 | 3, 0);
    expect(b.smmu.translate(1, 0x1000, 'read')).toMatchObject({ reason: 'walk_eabt', recorded: true });
    expect(b.readEvents().map((e) => e.kind)).toEqual(['F_WALK_EABT']);
    expect(b.smmu.eventLog().map((e) => [e.event.kind, e.delivery])).toEqual([
      ['F_TRANSLATION', 'not_recorded'],
      ['F_WALK_EABT', 'written'],
    ]);
  });
});

describe('caching', () => {
  it('the walk cache keeps a replaced table pointer: new pages resolve through the old subtree', () => {
    const b = new SmmuBench();
    const root = b.allocTable();
    b.map(root, 1, 0x1000, 3, DATA);
    b.map(root, 1, 0x2000, 3, DATA + 0x2000);
    b.writeSte(1, s2SteFields({ vmid: 1, ttb: root }));
    expect(b.smmu.translate(1, 0x1000, 'read')).toMatchObject({ kind: 'ok' });
    // Re-point L1[0] at a new subtree mapping 0x2000 elsewhere, without invalidation.
    const root2 = b.allocTable();
    b.map(root2, 1, 0x2000, 3, DATA + 0x9000);
    b.memory.store64(root, b.memory.peek64(root2).lo, b.memory.peek64(root2).hi);
    expect(b.smmu.translate(1, 0x2000, 'read')).toMatchObject({ kind: 'ok', pa: DATA + 0x2000 });
    b.run(tlbiIpa(1, 0x2000, { leaf: false }), CMD_SYNC);
    expect(b.smmu.translate(1, 0x2000, 'read')).toMatchObject({ kind: 'ok', pa: DATA + 0x9000 });
  });

  it('fills can be disabled: nothing is cached and every translation walks', () => {
    const b = new SmmuBench({ fills: { tlb: false, walkCache: false, config: false } });
    const root = b.allocTable();
    b.map(root, 1, 0x1000, 3, DATA);
    b.writeSte(1, s2SteFields({ vmid: 1, ttb: root }));
    expect(b.smmu.translate(1, 0x1000, 'read')).toMatchObject({ via: 'walk' });
    expect(b.smmu.translate(1, 0x1000, 'read')).toMatchObject({ via: 'walk' });
    expect([b.smmu.cachedTranslations(), b.smmu.walkCacheEntries(), b.smmu.configCacheEntries()]).toEqual([[], [], []]);
  });

  it('TLB entries are tagged by VMID: another stream with the same VMID hits them', () => {
    const b = new SmmuBench();
    const root = b.allocTable();
    b.map(root, 1, 0x1000, 3, DATA);
    b.writeSte(1, s2SteFields({ vmid: 7, ttb: root }));
    b.writeSte(2, s2SteFields({ vmid: 7, ttb: b.allocTable() }));
    b.writeSte(3, s2SteFields({ vmid: 8, ttb: b.allocTable() }));
    b.smmu.translate(1, 0x1000, 'read');
    expect(b.smmu.translate(2, 0x1000, 'read')).toMatchObject({ kind: 'ok', via: 'tlb', pa: DATA });
    expect(b.smmu.translate(3, 0x1000, 'read')).toMatchObject({ reason: 'translation' });
    expect(b.smmu.cachedTranslations(2)).toHaveLength(1);
    expect(b.smmu.cachedTranslations(3)).toHaveLength(0);
  });

  it('evict by index and predicate', () => {
    const b = new SmmuBench();
    const root = b.allocTable();
    b.map(root, 1, 0x1000, 3, DATA);
    b.map(root, 1, 0x2000, 3, DATA);
    b.writeSte(1, s2SteFields({ vmid: 1, ttb: root }));
    b.smmu.translate(1, 0x1000, 'read');
    b.smmu.translate(1, 0x2000, 'read');
    expect(b.smmu.evict({ cache: 'tlb', select: 1 })).toBe(1);
    expect(b.smmu.cachedTranslations().map((e) => e.ipa)).toEqual([0x1000]);
    expect(b.smmu.evict({ cache: 'walk', select: (e) => e.level === 2 })).toBe(1);
    expect(b.smmu.walkCacheEntries().map((e) => e.level)).toEqual([1]);
    expect(b.smmu.evict({ cache: 'all' })).toBe(3);
  });
});

describe('break-before-make violations and TLB conflicts', () => {
  function splitWithoutBbm(bbml: number, nT = false): { b: SmmuBench; root: number } {
    const b = new SmmuBench({ features: { bbml } });
    const root = b.allocTable();
    b.map(root, 1, 0, 2, DATA, { ...RW, nT });
    b.writeSte(1, s2SteFields({ vmid: 1, ttb: root }));
    expect(b.smmu.translate(1, 0x3000, 'read')).toMatchObject({ kind: 'ok', pa: DATA + 0x3000 });
    // Replace the 2M block by a table of pages (a different output for page 3) with no TLBI.
    const l3 = b.allocTable();
    b.memory.store64(l3 + 3 * 8, (DATA + M2 + 0x3000) | 0x7c3, 0);
    const l2pte = b.descAddr(root, 1, 0, 2);
    b.memory.store64(l2pte, l3 | 3, 0);
    b.smmu.speculativeFill(1, 0x3000);
    return { b, root };
  }

  for (const bbml of [0, 1]) {
    it(`BBML${bbml}: the block and the page are both held; the lookup raises F_TLB_CONFLICT`, () => {
      const { b } = splitWithoutBbm(bbml);
      expect(b.smmu.cachedTranslations().map((e) => e.level)).toEqual([2, 3]);
      expect(b.smmu.translate(1, 0x3000, 'read')).toMatchObject({ kind: 'abort', reason: 'tlb_conflict', event: { kind: 'F_TLB_CONFLICT', ipa: 0x3000 } });
      // A TLBI covering the address removes both; the new page is then used.
      b.run(tlbiIpa(1, 0x3000, { leaf: true }), CMD_SYNC);
      expect(b.smmu.translate(1, 0x3000, 'read')).toMatchObject({ kind: 'ok', pa: DATA + M2 + 0x3000 });
    });
  }

  it('BBML2: no conflict abort; the oldest (stale) entry is used', () => {
    const { b } = splitWithoutBbm(2);
    expect(b.smmu.translate(1, 0x3000, 'read')).toMatchObject({ kind: 'ok', pa: DATA + 0x3000 });
  });

  it('BBML1 with nT set on the block: the block is never cached, so no conflict', () => {
    const { b } = splitWithoutBbm(1, true);
    expect(b.smmu.cachedTranslations().map((e) => e.level)).toEqual([3]);
    expect(b.smmu.translate(1, 0x3000, 'read')).toMatchObject({ kind: 'ok', pa: DATA + M2 + 0x3000 });
  });

  it('BBML0 ignores nT: the conflict still happens', () => {
    const { b } = splitWithoutBbm(0, true);
    expect(b.smmu.translate(1, 0x3000, 'read')).toMatchObject({ reason: 'tlb_conflict' });
  });

  it('a remap without invalidation keeps old and new page entries side by side', () => {
    const b = new SmmuBench({ features: { bbml: 2 } });
    const root = b.allocTable();
    b.map(root, 1, 0x1000, 3, DATA);
    b.writeSte(1, s2SteFields({ vmid: 1, ttb: root }));
    b.smmu.translate(1, 0x1000, 'read');
    b.map(root, 1, 0x1000, 3, DATA + 0x5000);
    b.smmu.speculativeFill(1, 0x1000);
    expect(b.smmu.cachedTranslations().map((e) => e.pa)).toEqual([DATA, DATA + 0x5000]);
    expect(b.smmu.translate(1, 0x1000, 'read')).toMatchObject({ pa: DATA });
  });
});
