import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { type Command } from '../arch/smmu/commands.js';
import { CERROR_ATC_INV_SYNC, CR0_ATSCHK, CR0_CMDQEN, CR0_EVTQEN, CR0_SMMUEN, CR2_REC_CFG_ATS, CR2_RECINVSID } from '../arch/smmu/registers.js';
import { steFields } from '../arch/smmu/ste.js';
import { u64 } from '../arch/u64.js';
import { DmaDevice } from './device.js';
import { CMD_SYNC, DATA, RO, SmmuBench, s2SteFields, tlbiIpa } from './smmu/testing.js';

const atcInv = (sid: number, address: number, size: number, ssv = false): Command => ({ kind: 'ATC_INV', sid, ssv, ssid: ssv ? 1 : 0, global: false, size, address: u64(address % 2 ** 32, Math.floor(address / 2 ** 32)) });

function atsWorld(eats = 1): { b: SmmuBench; root: number; dev: DmaDevice } {
  const b = new SmmuBench();
  b.reg('CR0', CR0_SMMUEN | CR0_EVTQEN | CR0_CMDQEN | CR0_ATSCHK);
  const root = b.allocTable();
  for (let i = 0; i < 32; i++) b.map(root, 1, i * 0x1000, 3, DATA + i * 0x1000);
  b.map(root, 1, 0x4_0000, 3, DATA + 0x4_0000, RO);
  b.writeSte(1, s2SteFields({ vmid: 1, ttb: root, eats }));
  return { b, root, dev: new DmaDevice(b.smmu, b.memory, { sid: 1, ats: true }) };
}

describe('untranslated DMA', () => {
  it('reads and writes words through the SMMU and reports faults as outcomes', () => {
    const { b, dev } = atsWorld();
    expect(dev.dma(0x2004, 'write', 0xdead_beef)).toEqual({ kind: 'completed', pa: DATA + 0x2004, value: 0xdead_beef, via: 'walk' });
    expect(b.memory.read32(DATA + 0x2004)).toBe(0xdead_beef);
    expect(dev.dma(0x2006, 'read')).toEqual({ kind: 'completed', pa: DATA + 0x2006, value: 0xdead_beef, via: 'tlb' });
    expect(dev.dma(0x4_0000, 'write', 1)).toMatchObject({ kind: 'fault', reason: 'permission', event: { kind: 'F_PERMISSION' } });
    expect(dev.dma(0x80_0000, 'read')).toMatchObject({ kind: 'fault', reason: 'translation' });
  });

  it('an access that translates to a hole is an external abort', () => {
    const b = new SmmuBench();
    b.writeSte(3, steFields({ v: true, config: 0b100 }));
    const dev = new DmaDevice(b.smmu, b.memory, { sid: 3, ats: false });
    expect(dev.dma(0x0980_0000, 'read')).toEqual({ kind: 'external_abort', pa: 0x0980_0000 });
    expect(dev.dma(0x0980_0000, 'write', 5)).toEqual({ kind: 'external_abort', pa: 0x0980_0000 });
  });

  it('never throws, whatever address, value or StreamID a device uses (fast-check)', () => {
    const { b } = atsWorld();
    const anyNumber = fc.oneof(fc.double(), fc.integer(), fc.constantFrom(Number.NaN, Infinity, -1, 2 ** 53, 2 ** 64));
    fc.assert(
      fc.property(anyNumber, anyNumber, anyNumber, fc.boolean(), (sid, addr, value, write) => {
        const dev = new DmaDevice(b.smmu, b.memory, { sid, ats: true });
        const outcomes = [dev.dma(addr, write ? 'write' : 'read', value), dev.dmaTranslated(addr, 'read'), dev.dmaForgedTranslated(addr, 'write', value), dev.atsTranslate(addr)];
        expect(outcomes.every((o) => typeof o.kind === 'string')).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});

describe('ATS translation requests (SPEC 3.9.1.2)', () => {
  it('EATS = 0, bypass, SMMUEN = 0: Unsupported Request with F_BAD_ATS_TREQ; abort STE: UR without event', () => {
    const { b, dev } = atsWorld(0);
    expect(dev.atsTranslate(0x1000)).toMatchObject({ kind: 'ur' });
    b.writeSte(2, steFields({ v: true, config: 0b100 }));
    b.writeSte(4, steFields({ v: true, config: 0 }));
    expect(new DmaDevice(b.smmu, b.memory, { sid: 2, ats: true }).atsTranslate(0x1000)).toMatchObject({ kind: 'ur' });
    expect(b.readEvents().map((e) => e.kind)).toEqual(['F_BAD_ATS_TREQ', 'F_BAD_ATS_TREQ']);
    expect(new DmaDevice(b.smmu, b.memory, { sid: 4, ats: true }).atsTranslate(0x1000)).toMatchObject({ kind: 'ur' });
    b.reg('CR0', CR0_EVTQEN | CR0_CMDQEN);
    expect(dev.atsTranslate(0x1000)).toMatchObject({ kind: 'ur' });
    expect(b.readEvents().map((e) => e.kind)).toEqual(['F_BAD_ATS_TREQ']);
    expect(dev.atcEntries()).toEqual([]);
  });

  it('configuration errors: Completer Abort, recorded only with CR2.REC_CFG_ATS', () => {
    const { b, dev } = atsWorld();
    b.writeSte(5, { ...s2SteFields({ vmid: 1, ttb: b.allocTable(), eats: 1 }), s2tg: 3 });
    const bad = new DmaDevice(b.smmu, b.memory, { sid: 5, ats: true });
    expect(bad.atsTranslate(0)).toMatchObject({ kind: 'ca', reason: 'C_BAD_STE' });
    expect(b.readEvents()).toEqual([]);
    b.reg('CR0', 0);
    b.reg('CR2', CR2_RECINVSID | CR2_REC_CFG_ATS);
    b.reg('CR0', CR0_SMMUEN | CR0_EVTQEN | CR0_CMDQEN | CR0_ATSCHK);
    expect(bad.atsTranslate(0)).toMatchObject({ kind: 'ca' });
    expect(b.readEvents().map((e) => e.kind)).toEqual(['C_BAD_STE']);
    expect(dev.atsTranslate(0)).toMatchObject({ kind: 'success' });
  });

  it('translation faults answer R = W = 0 with the STU size and record nothing; permissions are granted as mapped', () => {
    const { b, dev } = atsWorld();
    expect(dev.atsTranslate(0x80_0123)).toEqual({ kind: 'success', base: 0x80_0000, size: 0x1000, pa: 0, read: false, write: false });
    expect(b.readEvents()).toEqual([]);
    expect(dev.atsTranslate(0x4_0000)).toMatchObject({ kind: 'success', read: true, write: false });
    expect(dev.dmaTranslated(0x4_0000, 'write', 1)).toMatchObject({ kind: 'fault', reason: 'ats_denied' });
    expect(dev.dmaTranslated(0x4_0008, 'read')).toMatchObject({ kind: 'completed', pa: DATA + 0x4_0008, via: 'atc' });
    // The request filled the SMMU TLB too.
    expect(b.smmu.cachedTranslations().map((e) => e.ipa)).toContain(0x4_0000);
  });
});

describe('ATC entries live until ATC_INV + CMD_SYNC', () => {
  it('a stale ATC entry keeps working after the mapping, the SMMU TLB and even a pending ATC_INV are gone', () => {
    const { b, root, dev } = atsWorld();
    expect(dev.dmaTranslated(0x3000, 'write', 7)).toMatchObject({ kind: 'completed', pa: DATA + 0x3000 });
    b.clear(b.descAddr(root, 1, 0x3000, 3));
    b.run(tlbiIpa(1, 0x3000, { leaf: true }), CMD_SYNC);
    expect(dev.dma(0x3000, 'read')).toMatchObject({ kind: 'fault', reason: 'translation' });
    expect(dev.dmaTranslated(0x3000, 'read')).toMatchObject({ kind: 'completed', pa: DATA + 0x3000, value: 7 });
    b.submit(atcInv(1, 0x3000, 0));
    b.drain();
    expect(b.smmu.pendingInvalidations().map((p) => p.command.kind)).toEqual(['ATC_INV']);
    expect(dev.dmaTranslated(0x3000, 'read')).toMatchObject({ kind: 'completed' });
    b.run(CMD_SYNC);
    expect(dev.atcEntries()).toEqual([]);
    expect(dev.dmaTranslated(0x3000, 'read')).toMatchObject({ kind: 'fault', reason: 'ats_denied' });
  });

  it('ATC_INV covers the aligned span 4K·2^Size; PASID-tagged invalidations leave untagged entries', () => {
    const { b, dev } = atsWorld();
    for (const a of [0x0, 0x7000, 0x8000, 0xf000, 0x1_0000, 0x1_8000]) dev.atsTranslate(a);
    b.run(atcInv(1, 0x7000, 0), CMD_SYNC);
    expect(dev.atcEntries().map((e) => e.base)).toEqual([0x0, 0x8000, 0xf000, 0x1_0000, 0x1_8000]);
    b.run(atcInv(1, 0x9000, 3), CMD_SYNC); // 32K span at 0x8000
    expect(dev.atcEntries().map((e) => e.base)).toEqual([0x0, 0x1_0000, 0x1_8000]);
    b.run(atcInv(1, 0, 52, true), CMD_SYNC);
    expect(dev.atcEntries()).toHaveLength(3);
    b.run(atcInv(2, 0, 52), CMD_SYNC);
    expect(dev.atcEntries()).toHaveLength(3);
    b.run(atcInv(1, 0x1_2000, 4), CMD_SYNC); // 64K span at 0x1_0000
    expect(dev.atcEntries().map((e) => e.base)).toEqual([0x0]);
    expect(dev.invalidationsReceived).toBe(4);
  });

  it('a device that times out: CMD_SYNC fails with CERROR_ATC_INV_SYNC, stays on the queue, and other invalidations stay pending', () => {
    const { b, root, dev } = atsWorld();
    dev.atsTranslate(0x3000);
    b.smmu.translate(1, 0x5000, 'read');
    b.clear(b.descAddr(root, 1, 0x5000, 3));
    dev.atcInvalidation = 'timeout';
    b.submit(tlbiIpa(1, 0x5000, { leaf: true }), atcInv(1, 0x3000, 0), CMD_SYNC);
    const out = b.drain();
    expect(out.at(-1)).toMatchObject({ kind: 'error', cerror: CERROR_ATC_INV_SYNC, index: 2 });
    expect(b.read('CMDQ_CONS')).toBe((CERROR_ATC_INV_SYNC << 24) | 2);
    expect(b.smmu.pendingInvalidations().map((p) => p.command.kind)).toEqual(['TLBI_S2_IPA']);
    expect(b.smmu.translate(1, 0x5000, 'read')).toMatchObject({ kind: 'ok', via: 'tlb' });
    expect(dev.atcEntries()).toHaveLength(1);
    // Acknowledge: the CMD_SYNC is retried and completes; the timed-out invalidation never does.
    dev.atcInvalidation = 'complete';
    b.reg('GERRORN', b.read('GERROR'));
    expect(b.drain()).toMatchObject([{ kind: 'consumed', effect: 'sync' }]);
    expect(b.smmu.translate(1, 0x5000, 'read')).toMatchObject({ reason: 'translation' });
    expect(dev.atcEntries()).toHaveLength(1);
    b.run(atcInv(1, 0x3000, 0), CMD_SYNC);
    expect(dev.atcEntries()).toEqual([]);
  });
});

describe('translated transactions (SPEC 3.9.1.3)', () => {
  it('ATSCHK = 1 enforces EATS; ATSCHK = 0 lets any translated address through (only the OAS check)', () => {
    const { b } = atsWorld(0);
    const dev = new DmaDevice(b.smmu, b.memory, { sid: 1, ats: true });
    expect(dev.dmaForgedTranslated(DATA, 'read')).toMatchObject({ kind: 'fault', reason: 'transl_forbidden', event: { kind: 'F_TRANSL_FORBIDDEN' } });
    b.writeSte(2, steFields({ v: true, config: 0b100 }));
    expect(new DmaDevice(b.smmu, b.memory, { sid: 2, ats: true }).dmaForgedTranslated(DATA, 'read')).toMatchObject({ reason: 'transl_forbidden' });
    b.reg('CR0', CR0_SMMUEN | CR0_EVTQEN | CR0_CMDQEN);
    expect(dev.dmaForgedTranslated(DATA + 8, 'read')).toMatchObject({ kind: 'completed', pa: DATA + 8, via: 'ats_translated' });
    expect(dev.dmaForgedTranslated(2 ** 48, 'read')).toMatchObject({ kind: 'fault', reason: 'oas', event: undefined });
    b.reg('CR0', CR0_EVTQEN | CR0_CMDQEN);
    expect(dev.dmaForgedTranslated(DATA, 'read')).toMatchObject({ reason: 'transl_forbidden' });
  });

  it('EATS = 1 with ATSCHK = 1 accepts translated traffic; a device without ATS cannot use it', () => {
    const { b, dev } = atsWorld(1);
    expect(dev.dmaForgedTranslated(DATA + 0x100, 'write', 3)).toMatchObject({ kind: 'completed' });
    const plain = new DmaDevice(b.smmu, b.memory, { sid: 1, ats: false });
    expect(plain.dmaTranslated(0x1000, 'read')).toMatchObject({ kind: 'fault', reason: 'no_ats' });
    expect(plain.atsTranslate(0x1000)).toMatchObject({ kind: 'ur' });
  });
});
