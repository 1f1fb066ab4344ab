import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  CERROR_ILL,
  CR0_CMDQEN,
  CR0_SMMUEN,
  GBPA_ABORT,
  GBPA_UPDATE,
  GERROR_BIT,
  IIDR_PRODUCT_MMU700,
  REG,
  SMMU_FRAME_SIZE,
  decodeAidr,
  decodeGbpa,
  decodeIdr0,
  decodeIdr1,
  decodeIdr3,
  decodeIdr5,
  decodeIidr,
} from '../../arch/smmu/registers.js';
import { u64 } from '../../arch/u64.js';
import { IIDR_MMU700_R1P1 } from './features.js';
import { DATA, SMMU_BASE, SmmuBench } from './testing.js';

describe('ID registers advertise the configured features', () => {
  it('decodes every knob back from IDR0/1/3/5, IIDR and AIDR', () => {
    const b = new SmmuBench({
      features: { granules: ['4K', '64K'], oasBits: 44, ril: false, bbml: 2, cohacc: false, ats: false, vmid16: false, twoLevelStrtab: false, sev: false, msi: false, s1p: false, sidBits: 20, iidr: IIDR_MMU700_R1P1 },
    });
    const idr0 = decodeIdr0(b.read('IDR0'));
    expect(idr0).toMatchObject({ s2p: true, s1p: false, ttf: 2, cohacc: false, ats: false, vmid16: false, stLevel: 0, sev: false, msi: false, stallModel: 1 });
    expect(decodeIdr1(b.read('IDR1')).sidsize).toBe(20);
    expect(decodeIdr3(b.read('IDR3'))).toMatchObject({ ril: false, bbml: 2 });
    expect(decodeIdr5(b.read('IDR5'))).toMatchObject({ oas: 4, gran4k: true, gran16k: false, gran64k: true });
    expect(decodeIidr(b.read('IIDR'))).toMatchObject({ productId: IIDR_PRODUCT_MMU700, variant: 1, revision: 1 });
    expect(decodeAidr(b.read('AIDR')).archMinorRev).toBe(2);
  });

  it('advertises the opposite settings too (each knob is live)', () => {
    const b = new SmmuBench({ features: { ril: true, bbml: 0, ats: true, vmid16: true, twoLevelStrtab: true, sev: true, msi: true, cohacc: true } });
    expect(decodeIdr0(b.read('IDR0'))).toMatchObject({ cohacc: true, ats: true, vmid16: true, stLevel: 1, sev: true, msi: true });
    expect(decodeIdr3(b.read('IDR3'))).toMatchObject({ ril: true, bbml: 0 });
    // BBML0 only exists before v3.2.
    expect(decodeAidr(b.read('AIDR')).archMinorRev).toBe(1);
  });

  it('ignores writes to read-only registers', () => {
    const b = new SmmuBench({ noEnable: true });
    const before = (['IDR0', 'IDR1', 'IDR3', 'IDR5', 'IIDR', 'AIDR', 'CR0ACK', 'IRQ_CTRLACK', 'GERROR', 'STATUSR'] as const).map((r) => b.read(r));
    for (const r of ['IDR0', 'IDR1', 'IDR3', 'IDR5', 'IIDR', 'AIDR', 'CR0ACK', 'IRQ_CTRLACK', 'GERROR', 'STATUSR'] as const) b.reg(r, 0xffff_ffff);
    const after = (['IDR0', 'IDR1', 'IDR3', 'IDR5', 'IIDR', 'AIDR', 'CR0ACK', 'IRQ_CTRLACK', 'GERROR', 'STATUSR'] as const).map((r) => b.read(r));
    expect(after).toEqual(before);
  });

  it('reserved offsets read as zero and ignore writes (fast-check over the frame)', () => {
    const b = new SmmuBench({ noEnable: true });
    const named = new Set<number>();
    for (const off of Object.values(REG)) {
      named.add(off);
      named.add(off + 4);
    }
    fc.assert(
      fc.property(fc.integer({ min: 0, max: SMMU_FRAME_SIZE / 4 - 1 }), fc.integer({ min: 0, max: 0xffff_ffff }), (word, value) => {
        const off = word * 4;
        if (named.has(off)) return;
        expect(b.memory.write32(SMMU_BASE + off, value)).toBe(0);
        expect(b.memory.read32(SMMU_BASE + off)).toBe(0);
      }),
      { numRuns: 300 },
    );
  });
});

describe('handshakes', () => {
  it('CR0 is reflected in CR0ACK; RES0 bits are dropped', () => {
    const b = new SmmuBench({ noEnable: true, features: { ats: false } });
    b.reg('CR0', 0xffff_ffff);
    // SMMUEN, EVTQEN, CMDQEN only: PRIQEN, ATSCHK (no ATS) and VMW are RES0 here.
    expect(b.read('CR0')).toBe(0b1101);
    expect(b.read('CR0ACK')).toBe(0b1101);
    b.reg('CR0', 0);
    expect(b.read('CR0ACK')).toBe(0);
  });

  it('IRQ_CTRL is reflected in IRQ_CTRLACK (no PRIQ_IRQEN without PRI)', () => {
    const b = new SmmuBench();
    b.reg('IRQ_CTRL', 0b111);
    expect(b.read('IRQ_CTRLACK')).toBe(0b101);
  });

  it('GBPA changes only with Update = 1, which then reads back as 0', () => {
    const b = new SmmuBench({ noEnable: true });
    expect(decodeGbpa(b.read('GBPA')).abort).toBe(false);
    b.reg('GBPA', GBPA_ABORT);
    expect(decodeGbpa(b.read('GBPA')).abort).toBe(false);
    b.reg('GBPA', (GBPA_ABORT | GBPA_UPDATE) >>> 0);
    const g = decodeGbpa(b.read('GBPA'));
    expect(g.abort).toBe(true);
    expect(g.update).toBe(false);
  });

  it('SMMUEN = 0: GBPA bypass (identity within the OAS) or abort, no event', () => {
    const b = new SmmuBench({ noEnable: true });
    expect(b.smmu.translate(7, DATA + 0x10, 'read')).toEqual({ kind: 'ok', pa: DATA + 0x10, via: 'gbpa_bypass', level: -1 });
    expect(b.smmu.translate(7, 2 ** 48, 'read')).toMatchObject({ kind: 'abort', reason: 'oas', event: undefined });
    b.reg('GBPA', (GBPA_ABORT | GBPA_UPDATE) >>> 0);
    expect(b.smmu.translate(7, DATA, 'read')).toMatchObject({ kind: 'abort', reason: 'gbpa_abort', event: undefined });
    expect(b.smmu.eventLog()).toEqual([]);
  });

  it('GBPA reset value follows gbpaResetAbort', () => {
    const b = new SmmuBench({ noEnable: true, features: { gbpaResetAbort: true } });
    expect(b.smmu.translate(1, DATA, 'read')).toMatchObject({ kind: 'abort', reason: 'gbpa_abort' });
  });

  it('GERROR/GERRORN: a command error toggles CMDQ_ERR; acknowledging restarts the queue', () => {
    const b = new SmmuBench();
    b.submitWords([u64(0xff, 0), u64(0, 0)]);
    b.publish();
    const out = b.drain();
    expect(out.at(-1)).toMatchObject({ kind: 'error', cerror: CERROR_ILL });
    const gerror = b.read('GERROR');
    expect(gerror & GERROR_BIT.CMDQ_ERR).toBe(GERROR_BIT.CMDQ_ERR);
    expect(b.read('GERRORN') & GERROR_BIT.CMDQ_ERR).toBe(0);
    expect(b.smmu.consumeOneCommand()).toEqual({ kind: 'idle', reason: 'error_active' });
    // Toggling an inactive error is ignored.
    b.reg('GERRORN', GERROR_BIT.EVTQ_ABT_ERR);
    expect(b.read('GERRORN')).toBe(0);
    // Replace the bad command with a CMD_SYNC (as Linux does) and acknowledge.
    b.memory.store64(0x4010_0000, 0x46, 0);
    b.reg('GERRORN', gerror);
    expect(b.read('GERRORN')).toBe(gerror);
    expect(b.smmu.consumeOneCommand()).toMatchObject({ kind: 'consumed', command: { kind: 'CMD_SYNC' } });
  });

  it('guarded registers ignore writes while their enable is set', () => {
    const b = new SmmuBench();
    const base = b.read('STRTAB_BASE');
    b.reg('STRTAB_BASE', 0x1234_0000);
    b.reg('CMDQ_BASE', 0x1234_0000);
    b.reg('CMDQ_CONS', 5);
    expect(b.read('STRTAB_BASE')).toBe(base);
    expect(b.read('CMDQ_BASE') & ~0x1f).toBe(0x4010_0000);
    expect(b.read('CMDQ_CONS')).toBe(0);
    b.reg('CR0', 0);
    b.reg('STRTAB_BASE', 0x1234_0000);
    expect(b.read('STRTAB_BASE')).toBe(0x1234_0000);
    b.reg('CR0', CR0_SMMUEN | CR0_CMDQEN);
    expect(b.read('CR0ACK')).toBe(CR0_SMMUEN | CR0_CMDQEN);
  });
});
