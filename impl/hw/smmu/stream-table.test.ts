import { describe, expect, it } from 'vitest';
import { CR0_CMDQEN, CR0_EVTQEN, CR0_SMMUEN } from '../../arch/smmu/registers.js';
import { encodeSte, steFields } from '../../arch/smmu/ste.js';
import { CMD_SYNC, DATA, STRTAB, type SmmuBench as Bench, SmmuBench, s2SteFields } from './testing.js';

function translatable(b: Bench): { root: number } {
  const root = b.allocTable();
  b.map(root, 1, 0x1000, 3, DATA);
  return { root };
}

describe('linear stream table', () => {
  it('an out-of-range StreamID aborts with C_BAD_STREAMID, recorded only with CR2.RECINVSID', () => {
    const b = new SmmuBench({ strtab: { log2: 4 } });
    expect(b.smmu.translate(16, 0x1000, 'read')).toMatchObject({ kind: 'abort', reason: 'bad_streamid', recorded: true, event: { kind: 'C_BAD_STREAMID', streamId: 16 } });
    expect(b.readEvents().map((e) => e.kind)).toEqual(['C_BAD_STREAMID']);
    b.reg('CR0', 0);
    b.reg('CR2', 0);
    b.reg('CR0', CR0_SMMUEN | CR0_EVTQEN | CR0_CMDQEN);
    expect(b.smmu.translate(16, 0x1000, 'read')).toMatchObject({ kind: 'abort', reason: 'bad_streamid', recorded: false });
    expect(b.readEvents()).toEqual([]);
  });

  it('garbage StreamIDs are out of range, never a crash', () => {
    const b = new SmmuBench();
    for (const sid of [-1, 0.5, Number.NaN, 2 ** 40, Infinity]) expect(b.smmu.translate(sid, 0, 'read')).toMatchObject({ kind: 'abort', reason: 'bad_streamid' });
  });

  it('an aborting STE fetch is F_STE_FETCH and is not cached', () => {
    const b = new SmmuBench({ noEnable: true });
    b.reg('STRTAB_BASE', 0x0980_0000); // MMIO hole: no handler
    b.reg('CR0', CR0_SMMUEN | CR0_EVTQEN | CR0_CMDQEN);
    expect(b.smmu.translate(2, 0, 'read')).toMatchObject({ kind: 'abort', reason: 'ste_fetch', event: { kind: 'F_STE_FETCH', fetchAddr: 0x0980_0000 + 2 * 64 } });
    expect(b.smmu.configCacheEntries()).toEqual([]);
  });

  it('an ILLEGAL STE behaves as V = 0: C_BAD_STE', () => {
    const b = new SmmuBench();
    b.writeSte(1, { ...s2SteFields({ vmid: 1, ttb: b.allocTable() }), s2tg: 3 });
    const r = b.smmu.translate(1, 0, 'read');
    expect(r).toMatchObject({ kind: 'abort', reason: 'bad_ste', event: { kind: 'C_BAD_STE', streamId: 1 } });
    expect(b.smmu.configCacheEntries()[0]).toMatchObject({ kind: 'ste', steKind: 'invalid' });
  });

  it('a 16-bit S2VMID on an SMMU without VMID16 is ILLEGAL', () => {
    const b = new SmmuBench({ features: { vmid16: false } });
    b.writeSte(1, s2SteFields({ vmid: 0x100, ttb: b.allocTable() }));
    b.writeSte(2, s2SteFields({ vmid: 0xff, ttb: b.allocTable() }));
    expect(b.smmu.translate(1, 0, 'read')).toMatchObject({ reason: 'bad_ste' });
    expect(b.smmu.translate(2, 0, 'read')).toMatchObject({ reason: 'translation' });
  });

  it('abort STEs terminate without an event; bypass STEs pass the address through', () => {
    const b = new SmmuBench();
    b.writeSte(1, steFields({ v: true, config: 0 }));
    b.writeSte(2, steFields({ v: true, config: 0b010 }));
    b.writeSte(3, steFields({ v: true, config: 0b100 }));
    expect(b.smmu.translate(1, DATA, 'read')).toMatchObject({ kind: 'abort', reason: 'ste_abort', event: undefined });
    expect(b.smmu.translate(2, DATA, 'read')).toMatchObject({ kind: 'abort', reason: 'ste_abort', event: undefined });
    expect(b.smmu.translate(3, DATA + 4, 'write')).toEqual({ kind: 'ok', pa: DATA + 4, via: 'bypass', level: -1 });
    expect(b.smmu.translate(3, 2 ** 48, 'write')).toMatchObject({ kind: 'abort', reason: 'addr_size_s1', event: { kind: 'F_ADDR_SIZE', s2: false } });
  });

  it('stage-1 STEs fetch CD 0: an all-zero CD is C_BAD_CD', () => {
    const b = new SmmuBench();
    b.writeSte(1, steFields({ v: true, config: 0b101, s1ContextPtr: DATA }));
    expect(b.smmu.translate(1, 0, 'read')).toMatchObject({ kind: 'abort', reason: 'bad_cd', event: { kind: 'C_BAD_CD' } });
  });
});

describe('2-level stream table, every SPLIT', () => {
  for (const [split, effective] of [
    [6, 6],
    [8, 8],
    [10, 10],
    [7, 6],
    [0, 6],
    [31, 6],
  ] as const) {
    it(`SPLIT ${split} (effective ${effective}) indexes L1 by SID[LOG2SIZE-1:SPLIT] and L2 by SID[SPLIT-1:0]`, () => {
      const b = new SmmuBench({ strtab: { log2: effective + 3, split } });
      const { root } = translatable(b);
      const l2 = b.allocTable(undefined, Math.ceil((2 ** effective * 64) / 4096));
      const sid = 2 * 2 ** effective + 5;
      b.writeL1(2, effective + 1, l2);
      b.writeSteWords(l2 + 5 * 64, encodeSte(s2SteFields({ vmid: 1, ttb: root })));
      expect(b.smmu.translate(sid, 0x1000, 'read')).toMatchObject({ kind: 'ok', pa: DATA });
      // The neighbouring L1 index is Span 0: its whole range is invalid.
      expect(b.smmu.translate(sid + 2 ** effective, 0x1000, 'read')).toMatchObject({ kind: 'abort', reason: 'bad_streamid' });
      // Beyond LOG2SIZE.
      expect(b.smmu.translate(2 ** (effective + 3), 0x1000, 'read')).toMatchObject({ kind: 'abort', reason: 'bad_streamid' });
    });
  }

  it('a Span smaller than SPLIT+1 covers only 2^(Span-1) STEs; a Span above SPLIT+1 is invalid', () => {
    const b = new SmmuBench({ strtab: { log2: 10, split: 6 } });
    const { root } = translatable(b);
    const l2 = b.allocTable();
    b.writeSteWords(l2 + 3 * 64, encodeSte(s2SteFields({ vmid: 1, ttb: root })));
    b.writeL1(0, 3, l2); // 4 STEs
    expect(b.smmu.translate(3, 0x1000, 'read')).toMatchObject({ kind: 'ok' });
    expect(b.smmu.translate(4, 0x1000, 'read')).toMatchObject({ kind: 'abort', reason: 'bad_streamid' });
    b.writeL1(1, 8, l2); // Span 8 > SPLIT + 1 = 7
    expect(b.smmu.translate(64 + 3, 0x1000, 'read')).toMatchObject({ kind: 'abort', reason: 'bad_streamid' });
    b.writeL1(2, 12, l2); // reserved Span
    expect(b.smmu.translate(128 + 3, 0x1000, 'read')).toMatchObject({ kind: 'abort', reason: 'bad_streamid' });
  });

  it('without 2-level support FMT is RES0: the table is linear', () => {
    const b = new SmmuBench({ strtab: { log2: 8, split: 6 }, features: { twoLevelStrtab: false } });
    const { root } = translatable(b);
    b.writeSte(70, s2SteFields({ vmid: 1, ttb: root }));
    expect(b.smmu.translate(70, 0x1000, 'read')).toMatchObject({ kind: 'ok', pa: DATA });
  });
});

describe('configuration cache (strict)', () => {
  it('caches a V = 0 STE: a later valid STE is ignored until CFGI_STE + CMD_SYNC', () => {
    const b = new SmmuBench();
    const { root } = translatable(b);
    expect(b.smmu.translate(5, 0x1000, 'read')).toMatchObject({ reason: 'bad_ste' });
    b.writeSte(5, s2SteFields({ vmid: 1, ttb: root }));
    expect(b.smmu.translate(5, 0x1000, 'read')).toMatchObject({ reason: 'bad_ste' });
    b.submit({ kind: 'CFGI_STE', sid: 5, leaf: true, ssec: false });
    b.drain();
    // Consumed but not synchronised: still stale.
    expect(b.smmu.pendingInvalidations()).toHaveLength(1);
    expect(b.smmu.translate(5, 0x1000, 'read')).toMatchObject({ reason: 'bad_ste' });
    b.run(CMD_SYNC);
    expect(b.smmu.translate(5, 0x1000, 'read')).toMatchObject({ kind: 'ok', pa: DATA });
  });

  it('speculative fills cache invalid STEs too', () => {
    const b = new SmmuBench();
    expect(b.smmu.speculativeFill(9, 0)).toMatchObject({ config: 'fetched', filled: true });
    expect(b.smmu.configCacheEntries()).toMatchObject([{ kind: 'ste', sid: 9, steKind: 'invalid' }]);
  });

  it('caches a Span = 0 L1STD: CFGI_STE Leaf = 1 keeps it, Leaf = 0 removes it', () => {
    const b = new SmmuBench({ strtab: { log2: 12, split: 8 } });
    const { root } = translatable(b);
    const sid = 256 + 1;
    expect(b.smmu.translate(sid, 0x1000, 'read')).toMatchObject({ reason: 'bad_streamid' });
    expect(b.smmu.configCacheEntries()).toMatchObject([{ kind: 'l1std', l1Index: 1, span: 0 }]);
    const l2 = b.allocTable(undefined, 4);
    b.writeSteWords(l2 + 64, encodeSte(s2SteFields({ vmid: 1, ttb: root })));
    b.writeL1(1, 9, l2);
    expect(b.smmu.translate(sid, 0x1000, 'read')).toMatchObject({ reason: 'bad_streamid' });
    b.run({ kind: 'CFGI_STE', sid, leaf: true, ssec: false }, CMD_SYNC);
    expect(b.smmu.translate(sid, 0x1000, 'read')).toMatchObject({ reason: 'bad_streamid' });
    b.run({ kind: 'CFGI_STE', sid, leaf: false, ssec: false }, CMD_SYNC);
    expect(b.smmu.translate(sid, 0x1000, 'read')).toMatchObject({ kind: 'ok', pa: DATA });
  });

  it('CFGI_STE_RANGE removes the STEs and L1STDs of its aligned block only; CFGI_ALL removes everything', () => {
    const b = new SmmuBench({ strtab: { log2: 12, split: 6 } });
    for (const sid of [0, 1, 64, 130]) b.smmu.speculativeFill(sid, 0);
    expect(b.smmu.configCacheEntries().filter((e) => e.kind === 'l1std')).toHaveLength(3);
    // Range 6: 128 StreamIDs aligned: 0..127.
    b.run({ kind: 'CFGI_STE_RANGE', sid: 100, range: 6, ssec: false }, CMD_SYNC);
    expect(b.smmu.configCacheEntries().map((e) => (e.kind === 'l1std' ? `l1:${e.l1Index}` : `ste:${e.sid}`))).toEqual(['l1:2']);
    b.smmu.speculativeFill(0, 0);
    b.run({ kind: 'CFGI_ALL', sid: 0, ssec: false }, CMD_SYNC);
    expect(b.smmu.configCacheEntries()).toEqual([]);
  });

  it('a cached STE survives a change of STRTAB_BASE (software must invalidate)', () => {
    const b = new SmmuBench();
    const { root } = translatable(b);
    b.writeSte(1, s2SteFields({ vmid: 1, ttb: root }));
    expect(b.smmu.translate(1, 0x1000, 'read')).toMatchObject({ kind: 'ok' });
    b.reg('CR0', 0);
    b.reg('STRTAB_BASE', STRTAB + 0x10_0000 * 8);
    b.reg('CR0', CR0_SMMUEN | CR0_EVTQEN | CR0_CMDQEN);
    expect(b.smmu.translate(1, 0x1000, 'read')).toMatchObject({ kind: 'ok' });
    b.run({ kind: 'CFGI_ALL', sid: 0, ssec: false }, CMD_SYNC);
    expect(b.smmu.translate(1, 0x1000, 'read')).toMatchObject({ reason: 'bad_ste' });
  });

  it('evicting a config entry by index or predicate makes the SMMU refetch', () => {
    const b = new SmmuBench();
    b.smmu.speculativeFill(4, 0);
    b.smmu.speculativeFill(5, 0);
    expect(b.smmu.evict({ cache: 'config', select: 0 })).toBe(1);
    expect(b.smmu.configCacheEntries()).toMatchObject([{ sid: 5 }]);
    expect(b.smmu.evict({ cache: 'config', select: (e) => e.kind === 'ste' && e.sid === 5 })).toBe(1);
    expect(b.smmu.evict({ cache: 'config', select: 7 })).toBe(0);
  });
});
