import { describe, expect, it } from 'vitest';
import { TG_16K, TG_4K, TG_64K } from '../../arch/smmu/commands.js';
import { CMD_SYNC, DATA, RW, SmmuBench, s2SteFields, tlbiIpa } from './testing.js';

const M2 = 0x20_0000;

/** VMID 1 on SID 1 with 4K pages at IPAs 0x0000..0x27000 (40 pages) and a 2M block at 2M. */
function populated(features: Record<string, unknown> = {}): { b: SmmuBench; root: number } {
  const b = new SmmuBench({ features });
  const root = b.allocTable();
  for (let i = 0; i < 40; i++) b.map(root, 1, i * 0x1000, 3, DATA + i * 0x1000);
  b.map(root, 1, M2, 2, DATA + M2, RW);
  b.writeSte(1, s2SteFields({ vmid: 1, ttb: root }));
  for (let i = 0; i < 40; i++) b.smmu.translate(1, i * 0x1000, 'read');
  b.smmu.translate(1, M2, 'read');
  return { b, root };
}

function cachedPages(b: SmmuBench): number[] {
  return b.smmu
    .cachedTranslations()
    .filter((e) => e.level === 3)
    .map((e) => e.ipa / 0x1000);
}

describe('TLBI_S2_IPA scoping, taken literally (strict)', () => {
  it('a wrong TTL leaves the entry; the right TTL or TTL = 0 removes it', () => {
    const { b } = populated();
    b.run(tlbiIpa(1, 0x5000, { tg: TG_4K, ttl: 2, leaf: true }), CMD_SYNC);
    expect(cachedPages(b)).toContain(5);
    b.run(tlbiIpa(1, 0x5000, { tg: TG_4K, ttl: 3, leaf: true }), CMD_SYNC);
    expect(cachedPages(b)).not.toContain(5);
    b.run(tlbiIpa(1, 0x6000, { tg: TG_4K, ttl: 0, num: 1, leaf: true }), CMD_SYNC);
    expect(cachedPages(b)).not.toContain(6);
    expect(cachedPages(b)).not.toContain(7);
    expect(cachedPages(b)).toContain(8);
  });

  it('a TG other than the entry granule leaves it', () => {
    const { b } = populated();
    b.run(tlbiIpa(1, 0, { tg: TG_64K, num: 1, leaf: true }), CMD_SYNC);
    b.run(tlbiIpa(1, 0, { tg: TG_16K, num: 3, leaf: true }), CMD_SYNC);
    expect(cachedPages(b)).toHaveLength(40);
  });

  it('NUM/SCALE: exactly the pages in [Address, Address + (NUM+1)·2^SCALE·4K) go', () => {
    const { b } = populated();
    b.run(tlbiIpa(1, 0x4000, { tg: TG_4K, num: 3, scale: 2, leaf: true }), CMD_SYNC);
    const expected = [...Array(40).keys()].filter((i) => i < 4 || i >= 20);
    expect(cachedPages(b)).toEqual(expected);
  });

  it('a range that touches part of a block removes the block', () => {
    const { b } = populated();
    b.run(tlbiIpa(1, M2 + 0x10_0000, { tg: TG_4K, num: 0, scale: 1, ttl: 2, leaf: true }), CMD_SYNC);
    expect(b.smmu.cachedTranslations().some((e) => e.level === 2)).toBe(false);
  });

  it('a non-range TLBI of a 4K address inside a 2M block removes the block', () => {
    const { b } = populated();
    b.run(tlbiIpa(1, M2 + 0x5_3000, { leaf: true }), CMD_SYNC);
    expect(b.smmu.cachedTranslations().some((e) => e.level === 2)).toBe(false);
    expect(cachedPages(b)).toHaveLength(40);
  });

  it('Leaf = 1 keeps walk-cache entries; Leaf = 0 removes table descriptors above TTL only', () => {
    const { b } = populated();
    const levels = (): number[] => b.smmu.walkCacheEntries().map((e) => e.level);
    expect(levels()).toEqual([1, 2]);
    b.run(tlbiIpa(1, 0x1000, { leaf: true }), CMD_SYNC);
    expect(levels()).toEqual([1, 2]);
    // TTL = 2, Leaf = 0: level-2 blocks and level-0/1 tables, not level-2 tables (SPEC 4.4 example).
    b.run(tlbiIpa(1, 0, { tg: TG_4K, ttl: 2, leaf: false }), CMD_SYNC);
    expect(levels()).toEqual([2]);
    b.run(tlbiIpa(1, 0, { tg: TG_4K, ttl: 3, leaf: false }), CMD_SYNC);
    expect(levels()).toEqual([]);
  });

  it('without RIL the range fields are RES0: every TLBI is a plain one (TTL cannot mislead)', () => {
    const { b } = populated({ ril: false });
    b.submitWords([
      { lo: 0x2a | (3 << 12), hi: 1 },
      { lo: 0x5000 | (2 << 8) | (TG_4K << 10) | 1, hi: 0 },
    ]);
    b.submit(CMD_SYNC);
    b.drain();
    expect(cachedPages(b)).not.toContain(5);
    expect(cachedPages(b)).toContain(6);
  });

  it('S12_VMALL is per VMID, NSNH_ALL is global, NH_ALL leaves stage-2 entries', () => {
    const { b, root } = populated();
    b.writeSte(2, s2SteFields({ vmid: 2, ttb: root }));
    b.smmu.translate(2, 0x1000, 'read');
    b.run({ kind: 'TLBI_NH_ALL', vmid: 1 }, { kind: 'TLBI_NH_ALL', vmid: 2 }, CMD_SYNC);
    expect(b.smmu.cachedTranslations()).toHaveLength(42);
    b.run({ kind: 'TLBI_S12_VMALL', vmid: 1 }, CMD_SYNC);
    expect(b.smmu.cachedTranslations().map((e) => e.vmid)).toEqual([2]);
    expect(b.smmu.walkCacheEntries().every((e) => e.vmid === 2)).toBe(true);
    b.run({ kind: 'TLBI_NSNH_ALL' }, CMD_SYNC);
    expect([b.smmu.cachedTranslations(), b.smmu.walkCacheEntries()]).toEqual([[], []]);
  });
});

describe('pending invalidations and CMD_SYNC', () => {
  it('a consumed TLBI has no effect until applied; the runner picks the order; CMD_SYNC applies the rest', () => {
    const { b, root } = populated();
    b.clear(b.descAddr(root, 1, 0x1000, 3));
    b.clear(b.descAddr(root, 1, 0x2000, 3));
    b.submit(tlbiIpa(1, 0x1000, { leaf: true }), tlbiIpa(1, 0x2000, { leaf: true }));
    b.drain();
    expect(b.smmu.pendingInvalidations().map((p) => p.command)).toMatchObject([{ address: 0x1000 }, { address: 0x2000 }]);
    expect(b.smmu.translate(1, 0x1000, 'read')).toMatchObject({ kind: 'ok', via: 'tlb' });
    const applied = b.smmu.applyPendingInvalidation(1);
    expect(applied).toMatchObject({ command: { address: 0x2000 }, removed: { tlb: 1 } });
    expect(b.smmu.translate(1, 0x2000, 'read')).toMatchObject({ reason: 'translation' });
    expect(b.smmu.translate(1, 0x1000, 'read')).toMatchObject({ kind: 'ok' });
    expect(b.smmu.applyPendingInvalidation(5)).toBeUndefined();
    b.run(CMD_SYNC);
    expect(b.smmu.pendingInvalidations()).toEqual([]);
    expect(b.smmu.translate(1, 0x1000, 'read')).toMatchObject({ reason: 'translation' });
  });

  it('a CMD_SYNC that is not yet consumed completes nothing', () => {
    const { b, root } = populated();
    b.clear(b.descAddr(root, 1, 0x1000, 3));
    b.submit(tlbiIpa(1, 0x1000, { leaf: true }), CMD_SYNC);
    expect(b.smmu.consumeOneCommand()).toMatchObject({ kind: 'consumed', effect: 'pending' });
    expect(b.smmu.translate(1, 0x1000, 'read')).toMatchObject({ kind: 'ok' });
    expect(b.read('CMDQ_CONS')).toBe(1);
    expect(b.smmu.consumeOneCommand()).toMatchObject({ kind: 'consumed', effect: 'sync' });
    expect(b.read('CMDQ_CONS')).toBe(2);
    expect(b.smmu.translate(1, 0x1000, 'read')).toMatchObject({ reason: 'translation' });
  });

  it('while a TLBI is pending a speculative fill may refill from the current tables; applying it removes that entry too', () => {
    const { b, root } = populated();
    b.map(root, 1, 0x1000, 3, DATA + 0x80_0000);
    b.submit(tlbiIpa(1, 0x1000, { leaf: true }));
    b.drain();
    b.smmu.speculativeFill(1, 0x1000);
    expect(b.smmu.cachedTranslations().filter((e) => e.ipa === 0x1000).map((e) => e.pa)).toEqual([DATA + 0x1000, DATA + 0x80_0000]);
    b.smmu.applyPendingInvalidation(0);
    expect(b.smmu.cachedTranslations().filter((e) => e.ipa === 0x1000)).toEqual([]);
    b.smmu.speculativeFill(1, 0x1000);
    b.run(CMD_SYNC);
    // Filled after the TLBI took effect, from the current table: legal and kept.
    expect(b.smmu.translate(1, 0x1000, 'read')).toMatchObject({ kind: 'ok', pa: DATA + 0x80_0000 });
  });

  it('a leaf-only TLBI after freeing a table lets the SMMU refill through the stale table descriptor', () => {
    const { b, root } = populated();
    // Unmap the whole level-3 table under L2[0] and reuse its page for a different mapping.
    const l2pte = b.descAddr(root, 1, 0, 2);
    const oldL3 = b.memory.peek64(l2pte).lo & ~0xfff;
    b.clear(l2pte);
    b.run(tlbiIpa(1, 0x3000, { leaf: true }), CMD_SYNC);
    b.memory.store64(oldL3 + 3 * 8, 0x7000_0000 | 0x7c3, 0);
    b.smmu.speculativeFill(1, 0x3000);
    expect(b.smmu.translate(1, 0x3000, 'read')).toMatchObject({ kind: 'ok', pa: 0x7000_0000 });
    // A non-leaf TLBI (what Linux's tlb_flush_walk issues) closes the hole.
    b.run(tlbiIpa(1, 0x3000, { leaf: false }), CMD_SYNC);
    b.smmu.speculativeFill(1, 0x3000);
    expect(b.smmu.translate(1, 0x3000, 'read')).toMatchObject({ reason: 'translation' });
  });
});
