import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { u64 } from '../u64.js';
import {
  CERROR_ILL,
  CR1_CACHE_WB,
  GERROR_BIT,
  IIDR_IMPLEMENTER_ARM,
  IIDR_PRODUCT_MMU600,
  PAGE1_OFFSET,
  REG,
  SH_ISH,
  decodeAidr,
  decodeCmdqBase,
  decodeCmdqCons,
  decodeCmdqProd,
  decodeCr0,
  decodeCr1,
  decodeCr2,
  decodeEvtqBase,
  decodeEvtqCons,
  decodeEvtqProd,
  decodeGbpa,
  decodeGerror,
  decodeIdr0,
  decodeIdr1,
  decodeIdr3,
  decodeIdr5,
  decodeIidr,
  decodeIrqCfg0,
  decodeIrqCfg2,
  decodeIrqCtrl,
  decodeStatusr,
  decodeStrtabBase,
  decodeStrtabBaseCfg,
  effectiveStrtabSplit,
  encodeAidr,
  encodeCmdqBase,
  encodeCmdqCons,
  encodeCmdqProd,
  encodeCr0,
  encodeCr1,
  encodeCr2,
  encodeEvtqBase,
  encodeEvtqCons,
  encodeEvtqProd,
  encodeGbpa,
  encodeGerror,
  encodeIdr0,
  encodeIdr1,
  encodeIdr3,
  encodeIdr5,
  encodeIidr,
  encodeIrqCfg0,
  encodeIrqCfg2,
  encodeIrqCtrl,
  encodeStatusr,
  encodeStrtabBase,
  encodeStrtabBaseCfg,
  gerrorActive,
  oasBits,
  queueConsumed,
  queueEmpty,
  queueEntryAddress,
  queueFree,
  queueFull,
  queueIncrement,
  queueIndex,
  queuePointer,
  queueUsed,
  queueWrap,
  registerAt,
  registerWidth,
} from './registers.js';
import { arbAddr, arbU32, w } from './testing.js';

describe('register map (smmuv3-arch.md §1.1)', () => {
  it('places page-0 registers at the reference offsets', () => {
    expect(REG.IDR0).toBe(0x00);
    expect(REG.IDR5).toBe(0x14);
    expect(REG.IIDR).toBe(0x18);
    expect(REG.AIDR).toBe(0x1c);
    expect(REG.CR0).toBe(0x20);
    expect(REG.CR0ACK).toBe(0x24);
    expect(REG.GBPA).toBe(0x44);
    expect(REG.IRQ_CTRL).toBe(0x50);
    expect(REG.GERRORN).toBe(0x64);
    expect(REG.GERROR_IRQ_CFG0).toBe(0x68);
    expect(REG.GERROR_IRQ_CFG2).toBe(0x74);
    expect(REG.STRTAB_BASE_CFG).toBe(0x88);
    expect(REG.CMDQ_CONS).toBe(0x9c);
    expect(REG.EVTQ_IRQ_CFG1).toBe(0xb8);
    expect(REG.PRIQ_IRQ_CFG2).toBe(0xdc);
  });

  it('places the event and PRI queue pointers on page 1', () => {
    expect(PAGE1_OFFSET).toBe(0x10000);
    expect(REG.EVTQ_PROD).toBe(0x100a8);
    expect(REG.EVTQ_CONS).toBe(0x100ac);
    expect(REG.PRIQ_PROD).toBe(0x100c8);
    expect(REG.PRIQ_CONS).toBe(0x100cc);
    expect(registerAt(0xa8)).toBeUndefined();
  });

  it('resolves 32-bit accesses to either half of a 64-bit register', () => {
    expect(registerAt(0x80)).toEqual({ name: 'STRTAB_BASE', width: 64, byteOffset: 0 });
    expect(registerAt(0x84)).toEqual({ name: 'STRTAB_BASE', width: 64, byteOffset: 4 });
    expect(registerAt(0x94)).toEqual({ name: 'CMDQ_BASE', width: 64, byteOffset: 4 });
    expect(registerAt(0x98)).toEqual({ name: 'CMDQ_PROD', width: 32, byteOffset: 0 });
    expect(registerAt(0x6c)).toEqual({ name: 'GERROR_IRQ_CFG0', width: 64, byteOffset: 4 });
    expect(registerAt(0x100ac)).toEqual({ name: 'EVTQ_CONS', width: 32, byteOffset: 0 });
    expect(registerAt(0x30)).toBeUndefined();
    expect(registerWidth('EVTQ_BASE')).toBe(64);
    expect(registerWidth('GERROR_IRQ_CFG1')).toBe(32);
  });
});

describe('QEMU ID register values (§1.10)', () => {
  it('decodes IDR0 of a nested-stage QEMU SMMU', () => {
    // S1P|S2P, TTF=2, COHACC, ASID16, VMID16, TTENDIAN=2, STALL_MODEL=1, TERM_MODEL, ST_LEVEL=1.
    const idr0 = decodeIdr0(0x0d44_101b);
    expect(idr0).toMatchObject({
      s1p: true,
      s2p: true,
      ttf: 2,
      cohacc: true,
      asid16: true,
      vmid16: true,
      ttendian: 2,
      stallModel: 1,
      termModel: true,
      stLevel: 1,
      ats: false,
      msi: false,
      sev: false,
      pri: false,
      hyp: false,
    });
    expect(encodeIdr0(idr0)).toBe(0x0d44_101b);
  });

  it('decodes IDR1, IDR3, IDR5 and AIDR', () => {
    expect(decodeIdr1(0x0273_0010)).toMatchObject({ sidsize: 16, cmdqs: 19, evtqs: 19, ssidsize: 0, tablesPreset: false });
    expect(decodeIdr3(0x1404)).toMatchObject({ had: true, ril: true, bbml: 2, stt: false, fwb: false });
    const idr5 = decodeIdr5(0x74);
    expect(idr5).toMatchObject({ gran4k: true, gran16k: true, gran64k: true, oas: 4, ds: false });
    expect(oasBits(idr5.oas)).toBe(44);
    expect(decodeAidr(1)).toEqual({ archMajorRev: 0, archMinorRev: 1 });
    expect(encodeAidr({ archMajorRev: 0, archMinorRev: 1 })).toBe(1);
  });

  it('maps every OAS encoding to its size (§1.4)', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7].map(oasBits)).toEqual([32, 36, 40, 42, 44, 48, 52, 56]);
    expect(() => oasBits(8)).toThrow(RangeError);
  });

  it('decodes an Arm MMU-600 IIDR (§1.5)', () => {
    expect(decodeIidr(0x4832_043b)).toEqual({ productId: IIDR_PRODUCT_MMU600, variant: 2, revision: 0, implementer: IIDR_IMPLEMENTER_ARM });
  });
});

describe('control registers (§1.6)', () => {
  it('encodes Linux CR1 (ISH + WB for tables and queues) as 0xD75', () => {
    expect(encodeCr1({ queueIc: CR1_CACHE_WB, queueOc: CR1_CACHE_WB, queueSh: SH_ISH, tableIc: CR1_CACHE_WB, tableOc: CR1_CACHE_WB, tableSh: SH_ISH })).toBe(0xd75);
  });

  it('encodes CR2 = PTM | RECINVSID as 0x6 and CR0 bits at their positions', () => {
    expect(encodeCr2({ e2h: false, recinvsid: true, ptm: true, recCfgAts: false })).toBe(0x6);
    expect(encodeCr0({ smmuen: true, priqen: false, evtqen: true, cmdqen: true, atschk: true, vmw: 0 })).toBe(0x1d);
    expect(decodeCr0(0x8)).toMatchObject({ cmdqen: true, smmuen: false });
    expect(decodeCr0(0x1c0).vmw).toBe(7);
  });

  it('decodes the QEMU GBPA reset value and the ABORT/UPDATE bits', () => {
    expect(decodeGbpa(0x1000)).toMatchObject({ shcfg: 1, abort: false, update: false });
    expect(decodeGbpa(0x8010_0000)).toMatchObject({ abort: true, update: true, shcfg: 0 });
  });

  it('places GERROR bits as the reference lists them and computes active errors', () => {
    expect(GERROR_BIT.CMDQ_ERR).toBe(0x1);
    expect(GERROR_BIT.EVTQ_ABT_ERR).toBe(0x4);
    expect(GERROR_BIT.SFM_ERR).toBe(0x100);
    expect(GERROR_BIT.DPT_ERR).toBe(0x400);
    expect(decodeGerror(0x101)).toMatchObject({ cmdqErr: true, sfmErr: true, evtqAbtErr: false });
    expect(gerrorActive(0x5, 0x1)).toBe(0x4);
    expect(gerrorActive(0x5, 0x5)).toBe(0);
    // Bits GERROR does not define never count as active.
    expect(gerrorActive(0x2, 0x0)).toBe(0);
  });
});

describe('bases and MSI configuration (§1.7)', () => {
  it('decodes STRTAB_BASE RA and ADDR[51:6]', () => {
    const v = w('4008_0000_1234_5640');
    expect(decodeStrtabBase(v)).toEqual({ ra: true, addr: 0x8_0000_1234_5640 });
    expect(encodeStrtabBase({ ra: false, addr: 0x8000_0000 })).toEqual(u64(0x8000_0000, 0));
    expect(() => encodeStrtabBase({ ra: false, addr: 0x8000_0020 })).toThrow(RangeError);
  });

  it('decodes STRTAB_BASE_CFG: Linux 2-level with SPLIT 8', () => {
    // FMT=1 (2-level), SPLIT=8, LOG2SIZE=16.
    expect(decodeStrtabBaseCfg(0x1_0210)).toEqual({ fmt: 1, split: 8, log2size: 16 });
    expect(encodeStrtabBaseCfg({ fmt: 0, split: 0, log2size: 16 })).toBe(0x10);
    expect([6, 7, 8, 9, 10, 11].map(effectiveStrtabSplit)).toEqual([6, 6, 8, 6, 10, 6]);
  });

  it('decodes CMDQ_BASE / EVTQ_BASE: hint at bit 62, ADDR[51:5], LOG2SIZE[4:0]', () => {
    expect(decodeCmdqBase(w('4000_0000_8000_0008'))).toEqual({ ra: true, addr: 0x8000_0000, log2size: 8 });
    expect(encodeEvtqBase({ wa: true, addr: 0x9000_0020, log2size: 19 })).toEqual(w('4000_0000_9000_0033'));
  });

  it('decodes IRQ_CFG0 ADDR[51:2] and IRQ_CFG2 MEMATTR/SH', () => {
    expect(decodeIrqCfg0(w('000f_ffff_ffff_fffc')).addr).toBe(2 ** 52 - 4);
    expect(encodeIrqCfg0({ addr: 0x800_0040 })).toEqual(u64(0x800_0040, 0));
    expect(decodeIrqCfg2(0x31)).toEqual({ memattr: 1, sh: 3 });
  });
});

/** Defined-bit masks written from the reference's bit tables. */
const MASKS = {
  idr0: 0x5fff_ffff,
  idr1: 0xffff_ffff,
  idr3: 0xffbc,
  idr5: 0xffff_0df7,
  cr0: 0x1df,
  cr1: 0xfff,
  cr2: 0xf,
  gbpa: 0x801f_3f1f,
  irqCtrl: 0x7,
  gerror: 0x7fd,
  strtabBaseCfg: 0x3_07ff,
  irqCfg2: 0x3f,
  iidr: 0xffff_ffff,
  statusr: 0x1,
};

describe('32-bit register codecs round-trip (encode ∘ decode = value restricted to defined bits)', () => {
  const cases: [string, (v: number) => unknown, (r: never) => number, number][] = [
    ['IDR0', decodeIdr0, encodeIdr0 as (r: never) => number, MASKS.idr0],
    ['IDR1', decodeIdr1, encodeIdr1 as (r: never) => number, MASKS.idr1],
    ['IDR3', decodeIdr3, encodeIdr3 as (r: never) => number, MASKS.idr3],
    ['IDR5', decodeIdr5, encodeIdr5 as (r: never) => number, MASKS.idr5],
    ['IIDR', decodeIidr, encodeIidr as (r: never) => number, MASKS.iidr],
    ['CR0', decodeCr0, encodeCr0 as (r: never) => number, MASKS.cr0],
    ['CR1', decodeCr1, encodeCr1 as (r: never) => number, MASKS.cr1],
    ['CR2', decodeCr2, encodeCr2 as (r: never) => number, MASKS.cr2],
    ['STATUSR', decodeStatusr, encodeStatusr as (r: never) => number, MASKS.statusr],
    ['GBPA', decodeGbpa, encodeGbpa as (r: never) => number, MASKS.gbpa],
    ['IRQ_CTRL', decodeIrqCtrl, encodeIrqCtrl as (r: never) => number, MASKS.irqCtrl],
    ['GERROR', decodeGerror, encodeGerror as (r: never) => number, MASKS.gerror],
    ['STRTAB_BASE_CFG', decodeStrtabBaseCfg, encodeStrtabBaseCfg as (r: never) => number, MASKS.strtabBaseCfg],
    ['IRQ_CFG2', decodeIrqCfg2, encodeIrqCfg2 as (r: never) => number, MASKS.irqCfg2],
  ];
  for (const [name, decode, encode, mask] of cases) {
    it(name, () => {
      fc.assert(
        fc.property(arbU32, (v) => {
          expect(encode(decode(v) as never)).toBe((v & mask) >>> 0);
        }),
        { numRuns: 200 },
      );
      // Decoding is a function of the defined bits only.
      expect(decode(0xffff_ffff)).toEqual(decode(mask));
    });
  }

  it('decode ∘ encode is the identity on CR0 and IDR5 records', () => {
    const arbCr0 = fc.record({ smmuen: fc.boolean(), priqen: fc.boolean(), evtqen: fc.boolean(), cmdqen: fc.boolean(), atschk: fc.boolean(), vmw: fc.integer({ min: 0, max: 7 }) });
    fc.assert(fc.property(arbCr0, (r) => void expect(decodeCr0(encodeCr0(r))).toEqual(r)));
    const arbIdr5 = fc.record({
      oas: fc.integer({ min: 0, max: 7 }),
      gran4k: fc.boolean(),
      gran16k: fc.boolean(),
      gran64k: fc.boolean(),
      ds: fc.boolean(),
      d128: fc.boolean(),
      vax: fc.integer({ min: 0, max: 3 }),
      stallMax: fc.integer({ min: 0, max: 0xffff }),
    });
    fc.assert(fc.property(arbIdr5, (r) => void expect(decodeIdr5(encodeIdr5(r))).toEqual(r)));
  });

  it('rejects fields that do not fit', () => {
    expect(() => encodeCr0({ smmuen: false, priqen: false, evtqen: false, cmdqen: false, atschk: false, vmw: 8 })).toThrow(RangeError);
    expect(() => encodeStrtabBaseCfg({ fmt: 0, split: 32, log2size: 0 })).toThrow(RangeError);
  });

  it('64-bit base registers round-trip', () => {
    fc.assert(
      fc.property(fc.boolean(), arbAddr(51, 5), fc.integer({ min: 0, max: 31 }), (ra, addr, log2size) => {
        expect(decodeCmdqBase(encodeCmdqBase({ ra, addr, log2size }))).toEqual({ ra, addr, log2size });
        expect(decodeEvtqBase(encodeEvtqBase({ wa: ra, addr, log2size }))).toEqual({ wa: ra, addr, log2size });
      }),
    );
    fc.assert(fc.property(fc.boolean(), arbAddr(51, 6), (ra, addr) => void expect(decodeStrtabBase(encodeStrtabBase({ ra, addr }))).toEqual({ ra, addr })));
  });
});

describe('queue PROD/CONS registers (§1.7)', () => {
  it('splits index and wrap at LOG2SIZE and keeps CONS.ERR in [30:24]', () => {
    // log2size 8: index 0x12, wrap bit 8, ERR = CERROR_ILL.
    const cons = 0x0100_0112;
    expect(decodeCmdqCons(cons, 8)).toEqual({ index: 0x12, wrap: true, err: CERROR_ILL });
    expect(encodeCmdqCons({ index: 0x12, wrap: true, err: CERROR_ILL }, 8)).toBe(cons);
    expect(decodeCmdqProd(0x112, 4)).toEqual({ index: 2, wrap: true });
    expect(encodeCmdqProd({ index: 0, wrap: true }, 19)).toBe(0x8_0000);
  });

  it('keeps EVTQ_PROD.OVFLG and EVTQ_CONS.OVACKFLG at bit 31', () => {
    expect(decodeEvtqProd(0x8000_0005, 3)).toEqual({ index: 5, wrap: false, ovflg: true });
    expect(encodeEvtqCons({ index: 7, wrap: true, ovackflg: true }, 3)).toBe(0x8000_000f);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 19 }), arbU32, (n, raw) => {
        const p = decodeEvtqProd(raw, n);
        const expectedMask = (2 ** (n + 1) - 1 + 0x8000_0000) >>> 0;
        expect(encodeEvtqProd(p, n)).toBe((raw & expectedMask) >>> 0);
        const c = decodeCmdqCons(raw, n);
        expect(encodeCmdqCons(c, n)).toBe((raw & ((2 ** (n + 1) - 1) | 0x7f00_0000)) >>> 0);
        expect(decodeEvtqCons(encodeEvtqCons(decodeEvtqCons(raw, n), n), n)).toEqual(decodeEvtqCons(raw, n));
      }),
    );
  });

  it('rejects an index that does not fit the queue', () => {
    expect(() => encodeCmdqProd({ index: 16, wrap: false }, 4)).toThrow(RangeError);
    expect(() => decodeCmdqProd(0, 20)).toThrow(RangeError);
  });
});

describe('queue arithmetic (§4.1)', () => {
  it('empty: same index and wrap; full: same index, different wrap', () => {
    expect(queueEmpty(0x13, 0x13, 4)).toBe(true);
    expect(queueFull(0x13, 0x13, 4)).toBe(false);
    expect(queueFull(0x13, 0x03, 4)).toBe(true);
    expect(queueEmpty(0x13, 0x03, 4)).toBe(false);
    expect(queueUsed(0x13, 0x03, 4)).toBe(16);
    expect(queueFree(0x13, 0x03, 4)).toBe(0);
    // Only index and wrap bits count: ERR/OVFLG bits are ignored.
    expect(queueEmpty(0x8000_0002, 0x0100_0002, 4)).toBe(true);
  });

  it('increments across the wrap boundary, toggling the wrap bit', () => {
    expect(queueIncrement(queuePointer(15, false, 4), 4)).toBe(queuePointer(0, true, 4));
    expect(queueIncrement(queuePointer(15, true, 4), 4)).toBe(queuePointer(0, false, 4));
    expect(queueIncrement(queuePointer(3, false, 4), 4, 5)).toBe(queuePointer(8, false, 4));
    expect(queueIndex(0x1f, 4)).toBe(15);
    expect(queueWrap(0x1f, 4)).toBe(true);
    expect(queueEntryAddress(0x8000_0000, queuePointer(3, true, 4), 4, 16)).toBe(0x8000_0030);
  });

  it('agrees with a counter model: n increments from cons leave n entries used', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10 }), fc.nat(), fc.nat(), (log2size, start, k) => {
        const size = 2 ** log2size;
        const n = k % (size + 1);
        const cons = start % (2 * size);
        const prod = queueIncrement(cons, log2size, n);
        expect(queueUsed(prod, cons, log2size)).toBe(n);
        expect(queueFree(prod, cons, log2size)).toBe(size - n);
        expect(queueEmpty(prod, cons, log2size)).toBe(n === 0);
        expect(queueFull(prod, cons, log2size)).toBe(n === size);
      }),
    );
  });

  it('queueConsumed: an entry is consumed once the consumer moved past it (Linux queue_consumed)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.nat(), fc.nat(), (log2size, start, k) => {
        const size = 2 ** log2size;
        const p = start % (2 * size);
        const steps = k % (size + 1);
        const cons = queueIncrement(p, log2size, steps);
        // Consuming `steps` entries starting at p consumes p iff steps ≥ 1.
        expect(queueConsumed(cons, p, log2size)).toBe(steps >= 1);
      }),
    );
  });
});
