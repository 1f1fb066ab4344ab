import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type U64, u64 } from '../u64.js';
import {
  CMD_OP,
  type Command,
  type CommandDecodeOptions,
  type CommandFeatures,
  type CommandKind,
  type DecodedCommand,
  type TlbiRange,
  checkCommand,
  commandDefinedMask,
  decodeCommand,
  encodeCommand,
  tlbiRangeBytes,
} from './commands.js';
import { arbAddr, arbBits, arbHighU64, arbU64, hex, maskWords, w } from './testing.js';

const b = fc.boolean();
const sid = arbBits(32);
const ssid = arbBits(20);
const vmid = arbBits(16);
const asid = arbBits(16);

/** Range fields that are never the reserved NUM = SCALE = TTL = 0 with TG ≠ 0 (or its 16K alias). */
const arbRange: fc.Arbitrary<TlbiRange> = fc
  .record({ num: arbBits(5), scale: arbBits(5), leaf: b, ttl128: b, ttl: arbBits(2), tg: arbBits(2) })
  .filter((r) => r.tg === 0 || r.num !== 0 || r.scale !== 0 || (r.ttl !== 0 && !(r.tg === 2 && r.ttl === 1)));

const arbCommand: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ kind: fc.constant('PREFETCH_CONFIG' as const), ssec: fc.constant(false), ssv: b, ssid, sid }),
  fc.record({ kind: fc.constant('PREFETCH_ADDR' as const), ssec: fc.constant(false), ssv: b, ssid, sid, size: arbBits(5), address: arbHighU64(12) }),
  fc.record({ kind: fc.constant('CFGI_STE' as const), ssec: fc.constant(false), sid, leaf: b }),
  fc.record({ kind: fc.constant('CFGI_STE_RANGE' as const), ssec: fc.constant(false), sid, range: fc.integer({ min: 0, max: 30 }) }),
  fc.record({ kind: fc.constant('CFGI_ALL' as const), ssec: fc.constant(false), sid }),
  fc.record({ kind: fc.constant('CFGI_CD' as const), ssec: fc.constant(false), ssid, sid, leaf: b }),
  fc.record({ kind: fc.constant('CFGI_CD_ALL' as const), ssec: fc.constant(false), sid }),
  fc.record({ kind: fc.constant('TLBI_NH_ALL' as const), vmid }),
  fc.record({ kind: fc.constant('TLBI_NH_ASID' as const), vmid, asid }),
  fc.tuple(arbRange, vmid, asid, arbHighU64(12)).map(([r, v, a, address]) => ({ kind: 'TLBI_NH_VA' as const, ...r, vmid: v, asid: a, address })),
  fc.tuple(arbRange, vmid, arbHighU64(12)).map(([r, v, address]) => ({ kind: 'TLBI_NH_VAA' as const, ...r, vmid: v, address })),
  fc.constant({ kind: 'TLBI_EL2_ALL' as const }),
  fc.record({ kind: fc.constant('TLBI_EL2_ASID' as const), asid }),
  fc.tuple(arbRange, asid, arbHighU64(12)).map(([r, a, address]) => ({ kind: 'TLBI_EL2_VA' as const, ...r, asid: a, address })),
  fc.tuple(arbRange, arbHighU64(12)).map(([r, address]) => ({ kind: 'TLBI_EL2_VAA' as const, ...r, address })),
  fc.record({ kind: fc.constant('TLBI_S12_VMALL' as const), vmid }),
  fc.tuple(arbRange, vmid, arbAddr(51, 12)).map(([r, v, address]) => ({ kind: 'TLBI_S2_IPA' as const, ...r, vmid: v, address })),
  fc.constant({ kind: 'TLBI_NSNH_ALL' as const }),
  fc.record({ kind: fc.constant('ATC_INV' as const), ssv: b, global: b, ssid, sid, size: fc.integer({ min: 0, max: 52 }), address: arbHighU64(12) }),
  fc.record({ kind: fc.constant('PRI_RESP' as const), ssv: b, ssid, sid, grpid: arbBits(9), resp: fc.integer({ min: 0, max: 2 }) }),
  fc.record({ kind: fc.constant('RESUME' as const), ssec: fc.constant(false), ac: b, ab: b, sid, stag: arbBits(16) }),
  fc.record({ kind: fc.constant('STALL_TERM' as const), ssec: fc.constant(false), sid }),
  fc.record({ kind: fc.constant('CMD_SYNC' as const), cs: fc.integer({ min: 0, max: 2 }), msh: arbBits(2), msiattr: arbBits(4), msidata: arbBits(32), msiaddr: arbAddr(51, 2) }),
);

function dec(lo0: number, hi0: number, lo1 = 0, hi1 = 0, options?: CommandDecodeOptions): DecodedCommand {
  return decodeCommand([u64(lo0, hi0), u64(lo1, hi1)], options);
}

function expectIllegal(d: DecodedCommand, pattern: RegExp): void {
  expect(d.kind).toBe('illegal');
  if (d.kind === 'illegal') expect(d.reason).toMatch(pattern);
}

describe('command encodings (fixed vectors, smmuv3-arch.md §3.2)', () => {
  it('CMD_SYNC as Linux builds it without MSI: CS = SEV, MSH = ISH, MSIAttr = 0xF', () => {
    const words = encodeCommand({ kind: 'CMD_SYNC', cs: 2, msh: 3, msiattr: 0xf, msidata: 0, msiaddr: 0 });
    expect(hex(words)).toEqual(['0x000000000fc02046', '0x0000000000000000']);
    expect(decodeCommand(words)).toEqual({ kind: 'CMD_SYNC', cs: 2, msh: 3, msiattr: 0xf, msidata: 0, msiaddr: 0 });
  });

  it('CMD_SYNC with SIG_IRQ, MSIData and MSIAddr[51:2]', () => {
    const words = encodeCommand({ kind: 'CMD_SYNC', cs: 1, msh: 3, msiattr: 0xf, msidata: 0xdeadbeef, msiaddr: 0x8_1234_5674 });
    expect(hex(words)).toEqual(['0xdeadbeef0fc01046', '0x0000000812345674']);
  });

  it('TLBI_S2_IPA range commands of the Linux worked example (§3.4)', () => {
    // Non-leaf 34 pages at 4K from 0x10000: TG = 1, SCALE = 1, NUM = 16, TTL = 0, Leaf = 0.
    const nonLeaf: Command = { kind: 'TLBI_S2_IPA', vmid: 5, num: 16, scale: 1, leaf: false, ttl128: false, ttl: 0, tg: 1, address: 0x1_0000 };
    expect(hex(encodeCommand(nonLeaf))).toEqual(['0x000000050011002a', '0x0000000000010400']);
    expect(decodeCommand([w('000000050011002a'), w('0000000000010400')])).toEqual(nonLeaf);
    // Leaf, 32 pages from 0x11000: NUM = 0, SCALE = 5, TTL = 3, TG = 1, Leaf = 1.
    const leaf: Command = { kind: 'TLBI_S2_IPA', vmid: 0, num: 0, scale: 5, leaf: true, ttl128: false, ttl: 3, tg: 1, address: 0x1_1000 };
    expect(hex(encodeCommand(leaf))).toEqual(['0x000000000050002a', '0x0000000000011701']);
    expect(tlbiRangeBytes(nonLeaf as TlbiRange)).toBe(34 * 4096);
    expect(tlbiRangeBytes(leaf as TlbiRange)).toBe(32 * 4096);
    expect(tlbiRangeBytes({ num: 0, scale: 0, tg: 0 })).toBeUndefined();
  });

  it('a non-range TLBI_S2_IPA keeps IPA[51:12] and ignores nothing below', () => {
    const d = decodeCommand([w('000000010000002a'), w('000f_ffff_ffff_f001')]);
    expect(d).toEqual({ kind: 'TLBI_S2_IPA', vmid: 1, num: 0, scale: 0, leaf: true, ttl128: false, ttl: 0, tg: 0, address: 2 ** 52 - 4096 });
  });

  it('CFGI_ALL is CFGI_STE_RANGE with Range 31; CFGI_STE carries SID and Leaf', () => {
    expect(hex(encodeCommand({ kind: 'CFGI_ALL', ssec: false, sid: 0 }))).toEqual(['0x0000000000000004', '0x000000000000001f']);
    expect(decodeCommand([w('0000000000000004'), w('000000000000001f')])).toEqual({ kind: 'CFGI_ALL', ssec: false, sid: 0 });
    expect(decodeCommand([w('0000000000000004'), w('000000000000001e')])).toEqual({ kind: 'CFGI_STE_RANGE', ssec: false, sid: 0, range: 30 });
    expect(hex(encodeCommand({ kind: 'CFGI_STE', ssec: false, sid: 3, leaf: true }))).toEqual(['0x0000000300000003', '0x0000000000000001']);
    // The spec defines Range 31 as CFGI_ALL: the two spellings have one encoding.
    expect(hex(encodeCommand({ kind: 'CFGI_STE_RANGE', ssec: false, sid: 0, range: 31 }))).toEqual(['0x0000000000000004', '0x000000000000001f']);
  });

  it('simple invalidations', () => {
    expect(hex(encodeCommand({ kind: 'TLBI_NSNH_ALL' }))).toEqual(['0x0000000000000030', '0x0000000000000000']);
    expect(hex(encodeCommand({ kind: 'TLBI_S12_VMALL', vmid: 0x1234 }))).toEqual(['0x0000123400000028', '0x0000000000000000']);
    expect(hex(encodeCommand({ kind: 'TLBI_NH_ASID', vmid: 0, asid: 0xabcd }))).toEqual(['0xabcd000000000011', '0x0000000000000000']);
    expect(hex(encodeCommand({ kind: 'TLBI_EL2_ALL' }))).toEqual(['0x0000000000000020', '0x0000000000000000']);
  });

  it('ATC_INV of the Linux example (iova 0x7000 size 0x2000 → addr 0, Size 4, §3.5)', () => {
    const cmd: Command = { kind: 'ATC_INV', ssv: false, global: false, ssid: 0, sid: 7, size: 4, address: u64(0, 0) };
    expect(hex(encodeCommand(cmd))).toEqual(['0x0000000700000040', '0x0000000000000004']);
    const all: Command = { ...cmd, ssv: true, ssid: 0xfffff, global: true, size: 52 };
    expect(hex(encodeCommand(all))).toEqual(['0x00000007fffffa40', '0x0000000000000034']);
  });

  it('RESUME with Linux RESP values map onto Ac (bit 12) and Ab (bit 13)', () => {
    // Linux: RESP 0 terminate, 1 retry, 2 abort at [13:12].
    expect(decodeCommand([w('0000000900001044'), w('0000000000000123')])).toEqual({ kind: 'RESUME', ssec: false, ac: true, ab: false, sid: 9, stag: 0x123 });
    expect(hex(encodeCommand({ kind: 'RESUME', ssec: false, ac: false, ab: true, sid: 9, stag: 0xffff }))).toEqual(['0x0000000900002044', '0x000000000000ffff']);
  });

  it('PRI_RESP, STALL_TERM, PREFETCH and CFGI_CD field positions', () => {
    expect(hex(encodeCommand({ kind: 'PRI_RESP', ssv: true, ssid: 1, sid: 2, grpid: 0x1ff, resp: 2 }))).toEqual(['0x0000000200001841', '0x00000000000021ff']);
    expect(hex(encodeCommand({ kind: 'STALL_TERM', ssec: false, sid: 0xffffffff }))).toEqual(['0xffffffff00000045', '0x0000000000000000']);
    expect(hex(encodeCommand({ kind: 'PREFETCH_CONFIG', ssec: false, ssv: true, ssid: 3, sid: 4 }))).toEqual(['0x0000000400003801', '0x0000000000000000']);
    expect(hex(encodeCommand({ kind: 'PREFETCH_ADDR', ssec: false, ssv: false, ssid: 0, sid: 4, size: 31, address: w('ffff_ffff_ffff_f000') }))).toEqual([
      '0x0000000400000002',
      '0xfffffffffffff01f',
    ]);
    expect(hex(encodeCommand({ kind: 'CFGI_CD', ssec: false, ssid: 0xfffff, sid: 1, leaf: true }))).toEqual(['0x00000001fffff005', '0x0000000000000001']);
  });

  it('TLBI_NH_VA keeps the 64-bit VA and both VMID and ASID', () => {
    const cmd: Command = { kind: 'TLBI_NH_VA', vmid: 0, asid: 7, num: 0, scale: 0, leaf: true, ttl128: false, ttl: 0, tg: 0, address: w('ffff_8000_1234_5000') };
    expect(hex(encodeCommand(cmd))).toEqual(['0x0007000000000012', '0xffff800012345001']);
  });
});

describe('defined bits of a command (independent check of the layout)', () => {
  it('TLBI_S2_IPA: opcode, NUM[16:12], SCALE[24:20], VMID[47:32]; Leaf, TTL128, TTL, TG, IPA[51:12]', () => {
    expect(hex(commandDefinedMask('TLBI_S2_IPA'))).toEqual(['0x0000ffff01f1f0ff', '0x000fffffffffff81']);
    expect(hex(commandDefinedMask('TLBI_S2_IPA', { ds: true }))[0]).toBe('0x0000ffff03f1f0ff');
    expect(hex(commandDefinedMask('TLBI_S2_IPA', { ril: false }))).toEqual(['0x0000ffff000000ff', '0x000ffffffffff001']);
  });

  it('CFGI_ALL includes its fixed Range field, so strict RES0 checking accepts it', () => {
    expect(hex(commandDefinedMask('CFGI_ALL'))).toEqual(['0xffffffff000004ff', '0x000000000000001f']);
    expect(decodeCommand([w('0000000000000004'), w('000000000000001f')], { strictRes0: true }).kind).toBe('CFGI_ALL');
  });

  it('CMD_SYNC: CS[13:12], MSH[23:22], MSIAttr[27:24], MSIData[63:32]; MSIAddr[51:2]', () => {
    expect(hex(commandDefinedMask('CMD_SYNC'))).toEqual(['0xffffffff0fc030ff', '0x000ffffffffffffc']);
  });
});

describe('command round trips', () => {
  it('decode(encode(cmd)) = cmd for every command kind', () => {
    fc.assert(
      fc.property(arbCommand, (cmd) => {
        expect(decodeCommand(encodeCommand(cmd))).toEqual(cmd);
      }),
      { numRuns: 1000 },
    );
  });

  it('encode(decode(words)) = words restricted to the defined bits, for every decodable opcode', () => {
    const opcodes = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x11, 0x12, 0x13, 0x20, 0x21, 0x22, 0x23, 0x28, 0x2a, 0x30, 0x40, 0x41, 0x44, 0x45, 0x46];
    fc.assert(
      fc.property(fc.constantFrom(...opcodes), arbU64, arbU64, fc.boolean(), fc.boolean(), (op, w0, w1, ril, ds) => {
        // Clear SSec (bit 10) half the time so that SID-addressed commands often decode.
        const words: U64[] = [u64(((w0.lo & ~0xff) | op) >>> 0, w0.hi), w1];
        if (w0.hi & 1) words[0] = u64((words[0]?.lo ?? 0) & ~(1 << 10), w0.hi);
        const options = { ril, ds };
        const d = decodeCommand(words, options);
        if (d.kind === 'illegal') return;
        expect(hex(encodeCommand(d, options))).toEqual(hex(maskWords(words, commandDefinedMask(d.kind, options))));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('CERROR_ILL encodings', () => {
  it('rejects reserved opcodes (SPEC 4.1.1)', () => {
    for (const op of [0x00, 0x08, 0x0a, 0x14, 0x17, 0x19, 0x1b, 0x1f, 0x24, 0x27, 0x29, 0x2b, 0x2f, 0x31, 0x3f, 0x42, 0x43, 0x47, 0x4f, 0x54, 0x59, 0x5b, 0x61, 0x6f, 0x71, 0x74, 0x7f, 0x90, 0xff]) {
      expectIllegal(dec(op, 0), /reserved opcode/);
    }
  });

  it('rejects IMPLEMENTATION DEFINED opcodes (none defined by the model)', () => {
    expectIllegal(dec(0x80, 0), /IMPLEMENTATION DEFINED/);
    expectIllegal(dec(0x8f, 0), /IMPLEMENTATION DEFINED/);
  });

  it('rejects Secure-queue-only, MPAM and DPT commands on the Non-secure queue', () => {
    expectIllegal(dec(CMD_OP.TLBI_EL3_ALL, 0), /Secure command queue/);
    expectIllegal(dec(CMD_OP.TLBI_EL3_VA, 0), /Secure command queue/);
    for (const op of [0x50, 0x51, 0x52, 0x53, 0x58, 0x5a, 0x60]) expectIllegal(dec(op, 0), /Non-secure command queue/);
    expectIllegal(dec(CMD_OP.CFGI_VMS_PIDM, 0), /MPAM/);
    expectIllegal(dec(CMD_OP.DPTI_ALL, 0), /DPT/);
    expectIllegal(dec(CMD_OP.DPTI_PA, 0), /DPT/);
  });

  it('rejects SSec == 1 on every command that has it (SPEC 4.1.6)', () => {
    for (const op of [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x44, 0x45]) expectIllegal(dec(op | (1 << 10), 0), /SSec == 1/);
    // Bit 10 is not SSec for commands without it: ignored by default.
    expect(dec(0x46 | (1 << 10), 0).kind).toBe('CMD_SYNC');
  });

  it('rejects NUM = SCALE = TTL = 0 with TG != 0 on every range TLBI (SPEC 4.4.1.1)', () => {
    for (const op of [0x12, 0x13, 0x22, 0x23, 0x2a]) {
      for (const tg of [1, 2, 3]) expectIllegal(dec(op, 0, tg << 10), /reserved combination/);
      // TG = 0 is a plain invalidation; any non-zero NUM, SCALE or TTL makes a range legal.
      expect(dec(op, 0, 0).kind).not.toBe('illegal');
      expect(dec(op, 0, (1 << 10) | (3 << 8)).kind).not.toBe('illegal');
      expect(dec(op | (1 << 12), 0, 1 << 10).kind).not.toBe('illegal');
      expect(dec(op | (1 << 20), 0, 1 << 10).kind).not.toBe('illegal');
    }
  });

  it('rejects 16K with TTL = 1 and NUM = SCALE = 0 when DS = 0, since TTL is then treated as 0', () => {
    const tg16kTtl1 = (2 << 10) | (1 << 8);
    expectIllegal(dec(0x2a, 0, tg16kTtl1), /16K with TTL == 1/);
    expect(dec(0x2a, 0, tg16kTtl1, 0, { ds: true }).kind).toBe('TLBI_S2_IPA');
    // With a range (NUM ≠ 0) it is legal: TTL is merely ignored.
    expect(dec(0x2a | (1 << 12), 0, tg16kTtl1).kind).toBe('TLBI_S2_IPA');
    // 4K and 64K with TTL = 1 are proper level hints.
    expect(dec(0x2a, 0, (1 << 10) | (1 << 8)).kind).toBe('TLBI_S2_IPA');
    expect(dec(0x2a, 0, (3 << 10) | (1 << 8)).kind).toBe('TLBI_S2_IPA');
  });

  it('without RIL the range fields are RES0: not a reserved combination, decoded as 0', () => {
    const d = dec(0x2a | (5 << 20), 1, 1 << 10, 0, { ril: false });
    expect(d).toMatchObject({ kind: 'TLBI_S2_IPA', tg: 0, scale: 0, num: 0, vmid: 1 });
    expectIllegal(dec(0x2a, 1, 1 << 10, 0, { ril: false, strictRes0: true }), /RES0/);
    expect(() => encodeCommand({ kind: 'TLBI_S2_IPA', vmid: 0, num: 1, scale: 0, leaf: false, ttl128: false, ttl: 0, tg: 1, address: 0 }, { ril: false })).toThrow(RangeError);
  });

  it('SCALE bit 25 exists only with IDR5.DS', () => {
    expect(dec(0x2a | (1 << 25), 0, 1 << 10, 0, { ds: true })).toMatchObject({ scale: 32 });
    // Without DS bit 25 is RES0: ignored (so this is NUM = SCALE = TTL = 0 → reserved) or detected.
    expectIllegal(dec(0x2a | (1 << 25), 0, 1 << 10), /reserved combination/);
    expectIllegal(dec(0x2a | (1 << 25) | (1 << 20), 0, 1 << 10, 0, { strictRes0: true }), /RES0/);
  });

  it('rejects ATC_INV Size > 52, PRI_RESP Resp 0b11 and CMD_SYNC CS 0b11', () => {
    expectIllegal(dec(0x40, 0, 53), /Size 53 > 52/);
    expectIllegal(dec(0x40, 0, 63), /Size 63 > 52/);
    expect(dec(0x40, 0, 52).kind).toBe('ATC_INV');
    expectIllegal(dec(0x41, 0, 3 << 12), /Resp 0b11/);
    expectIllegal(dec(0x46 | (3 << 12), 0), /CS 0b11/);
  });

  it('detects non-zero RES0 bits only when asked (SPEC 4.1.5)', () => {
    // CFGI_STE with dw1 bit 1 set; TLBI_NSNH_ALL with anything set; CMD_SYNC with MSIAddr[55:52].
    const cases: [number, number, number, number][] = [
      [0x03, 0, 0x2, 0],
      [0x30 | (1 << 8), 0, 0, 0],
      [0x46, 0, 0, 0x0010_0000],
      [0x2a, 0, 0x10, 0],
    ];
    for (const [lo0, hi0, lo1, hi1] of cases) {
      expect(dec(lo0, hi0, lo1, hi1).kind).not.toBe('illegal');
      expectIllegal(dec(lo0, hi0, lo1, hi1, { strictRes0: true }), /RES0/);
    }
    // TG = 0 makes NUM/SCALE/TTL RES0; TTL = 0 makes TTL128 RES0.
    expectIllegal(dec(0x2a | (1 << 12), 0, 0, 0, { strictRes0: true }), /TG == 0/);
    expectIllegal(dec(0x2a | (1 << 12), 0, (1 << 10) | (1 << 7), 0, { strictRes0: true }), /TTL128/);
    expect(dec(0x2a | (1 << 12), 0, 1 << 10, 0, { strictRes0: true }).kind).toBe('TLBI_S2_IPA');
  });
});

describe('feature-dependent CERROR_ILL (checkCommand)', () => {
  const all: CommandFeatures = { s1p: true, s2p: true, hyp: true, ats: true, pri: true, stallModel: 0 };
  const sample = (kind: CommandKind): Command => {
    const found = fc.sample(arbCommand.filter((c) => c.kind === kind), { numRuns: 1, seed: 1 })[0];
    if (found === undefined) throw new Error(kind);
    return found;
  };
  const cases: [CommandKind[], Partial<CommandFeatures>, RegExp][] = [
    [['TLBI_NH_ALL', 'TLBI_NH_ASID', 'TLBI_NH_VA', 'TLBI_NH_VAA', 'CFGI_CD', 'CFGI_CD_ALL'], { s1p: false }, /without stage 1/],
    [['TLBI_S2_IPA', 'TLBI_S12_VMALL'], { s2p: false }, /without stage 2/],
    [['TLBI_EL2_ALL', 'TLBI_EL2_ASID', 'TLBI_EL2_VA', 'TLBI_EL2_VAA'], { hyp: false }, /Hyp == 0/],
    [['ATC_INV'], { ats: false }, /ATS == 0/],
    [['PRI_RESP'], { pri: false }, /PRI == 0/],
    [['RESUME', 'STALL_TERM'], { stallModel: 1 }, /stall model/],
  ];
  for (const [kinds, missing, pattern] of cases) {
    it(`${kinds.join(', ')} need ${Object.keys(missing).join(', ')}`, () => {
      for (const kind of kinds) {
        const cmd = sample(kind);
        expect(checkCommand(cmd, all)).toBeUndefined();
        expect(checkCommand(cmd, { ...all, ...missing })).toMatch(pattern);
      }
    });
  }

  it('accepts the always-available commands on a stage-2-only SMMU without extras', () => {
    const minimal: CommandFeatures = { s1p: false, s2p: true, hyp: false, ats: false, pri: false, stallModel: 1 };
    for (const kind of ['CFGI_STE', 'CFGI_STE_RANGE', 'CFGI_ALL', 'TLBI_NSNH_ALL', 'TLBI_S2_IPA', 'CMD_SYNC', 'PREFETCH_CONFIG'] as const) {
      expect(checkCommand(sample(kind), minimal)).toBeUndefined();
    }
  });
});
