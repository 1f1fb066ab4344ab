import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { u64 } from '../u64.js';
import {
  EVENT_CLASS_IN,
  EVENT_CLASS_TT,
  EVENT_ID,
  type EventKind,
  type EventRecord,
  decodeEvent,
  encodeEvent,
  eventDefinedMask,
  eventKindOf,
  isTranslationFaultKind,
} from './events.js';
import { arbAddr, arbBits, arbU64, arbHighU64, arbWords, hex, maskWords, w } from './testing.js';

const b = fc.boolean();
const header = { ssv: b, substreamId: arbBits(20), streamId: arbBits(32) };
const access = { pnu: b, ind: b, rnw: b };
const fetch = { reason: arbBits(16), gpcf: b, fetchAddr: arbAddr(51, 3) };
const fault = { ...header, ...access, stag: arbBits(16), stall: b, s2: b, eventClass: arbBits(2), nsipa: b, inputAddr: arbU64, ipa: arbAddr(51, 12) };

const arbEvent: fc.Arbitrary<EventRecord> = fc.oneof(
  fc.record({ kind: fc.constant('F_UUT' as const), ...header, ...access, reason: arbBits(16), inputAddr: arbU64 }),
  fc.record({ kind: fc.constant('C_BAD_STREAMID' as const), ...header }),
  fc.record({ kind: fc.constant('F_STE_FETCH' as const), ...header, ...fetch }),
  fc.record({ kind: fc.constant('C_BAD_STE' as const), ...header }),
  fc.record({ kind: fc.constant('F_BAD_ATS_TREQ' as const), ...header, span: arbBits(8), inputAddr: arbHighU64(12) }),
  fc.record({ kind: fc.constant('F_STREAM_DISABLED' as const), streamId: arbBits(32) }),
  fc.record({ kind: fc.constant('F_TRANSL_FORBIDDEN' as const), streamId: arbBits(32), rnw: b, inputAddr: arbU64 }),
  fc.record({ kind: fc.constant('C_BAD_SUBSTREAMID' as const), streamId: arbBits(32), substreamId: arbBits(20) }),
  fc.record({ kind: fc.constant('F_CD_FETCH' as const), ...header, ...fetch }),
  fc.record({ kind: fc.constant('C_BAD_CD' as const), ...header }),
  fc.record({ kind: fc.constant('F_WALK_EABT' as const), ...header, ...access, ...fetch, s2: b, eventClass: arbBits(2), nsipa: b, inputAddr: arbU64 }),
  fc.record({ kind: fc.constant('F_TRANSLATION' as const), ...fault }),
  fc.record({ kind: fc.constant('F_ADDR_SIZE' as const), ...fault }),
  fc.record({ kind: fc.constant('F_ACCESS' as const), ...fault }),
  fc.record({ kind: fc.constant('F_PERMISSION' as const), ...fault, ttrnw: b }),
  fc.record({ kind: fc.constant('F_TLB_CONFLICT' as const), ...header, ...access, reason: arbBits(16), s2: b, nsipa: b, inputAddr: arbU64, ipa: arbAddr(51, 12) }),
  fc.record({ kind: fc.constant('F_CFG_CONFLICT' as const), ...header, reason: arbBits(32) }),
  fc.record({
    kind: fc.constant('E_PAGE_REQUEST' as const),
    ...header,
    span: arbBits(8),
    pR: b,
    pW: b,
    pX: b,
    uR: b,
    uW: b,
    uX: b,
    inputAddr: arbHighU64(12),
  }),
  fc.record({ kind: fc.constant('F_VMS_FETCH' as const), ...header, ...fetch }),
);

describe('event IDs (smmuv3-arch.md §5.2)', () => {
  it('numbers every architected event', () => {
    expect(EVENT_ID).toEqual({
      F_UUT: 0x01,
      C_BAD_STREAMID: 0x02,
      F_STE_FETCH: 0x03,
      C_BAD_STE: 0x04,
      F_BAD_ATS_TREQ: 0x05,
      F_STREAM_DISABLED: 0x06,
      F_TRANSL_FORBIDDEN: 0x07,
      C_BAD_SUBSTREAMID: 0x08,
      F_CD_FETCH: 0x09,
      C_BAD_CD: 0x0a,
      F_WALK_EABT: 0x0b,
      F_TRANSLATION: 0x10,
      F_ADDR_SIZE: 0x11,
      F_ACCESS: 0x12,
      F_PERMISSION: 0x13,
      F_TLB_CONFLICT: 0x20,
      F_CFG_CONFLICT: 0x21,
      E_PAGE_REQUEST: 0x24,
      F_VMS_FETCH: 0x25,
    });
    expect(eventKindOf(0x10)).toBe('F_TRANSLATION');
    expect(eventKindOf(0x0c)).toBeUndefined();
  });

  it('singles out the fault records governed by S2R/S2S', () => {
    expect(['F_TRANSLATION', 'F_ADDR_SIZE', 'F_ACCESS', 'F_PERMISSION'].every(isTranslationFaultKind)).toBe(true);
    expect(['F_WALK_EABT', 'C_BAD_STE', 'F_TLB_CONFLICT'].some(isTranslationFaultKind)).toBe(false);
  });
});

describe('event records (fixed vectors)', () => {
  it('stage-2 F_TRANSLATION for a read from SID 3 of IPA 0x81234567 (S2 = 1, CLASS = IN)', () => {
    const words = [w('0000000300000010'), w('0000028800000000'), w('0000000081234567'), w('0000000081234000')];
    const ev = decodeEvent(words);
    expect(ev).toEqual({
      kind: 'F_TRANSLATION',
      ssv: false,
      substreamId: 0,
      streamId: 3,
      stag: 0,
      stall: false,
      pnu: false,
      ind: false,
      rnw: true,
      s2: true,
      eventClass: EVENT_CLASS_IN,
      nsipa: false,
      inputAddr: u64(0x8123_4567, 0),
      ipa: 0x8123_4000,
    });
    expect(hex(encodeEvent(ev))).toEqual(hex(words));
  });

  it('C_BAD_STE for SID 5 is just the ID and the StreamID', () => {
    expect(hex(encodeEvent({ kind: 'C_BAD_STE', ssv: false, substreamId: 0, streamId: 5 }))).toEqual([
      '0x0000000500000004',
      '0x0000000000000000',
      '0x0000000000000000',
      '0x0000000000000000',
    ]);
  });

  it('stalled F_PERMISSION from a stage-1 walk write (CLASS = TT, TTRnW = 0) with STAG', () => {
    const ev: EventRecord = {
      kind: 'F_PERMISSION',
      ssv: true,
      substreamId: 0x12,
      streamId: 0x100,
      stag: 0xbeef,
      stall: true,
      pnu: true,
      ind: false,
      rnw: true,
      s2: true,
      eventClass: EVENT_CLASS_TT,
      nsipa: false,
      ttrnw: false,
      inputAddr: w('ffff_0000_0000_1234'),
      ipa: 0x4_0000_0000,
    };
    // dw1: STAG 0xbeef, Stall bit 31; PnU 33, RnW 35, S2 39, CLASS=1 at 41:40.
    expect(hex(encodeEvent(ev))).toEqual(['0x0000010000012813', '0x0000018a8000beef', '0xffff000000001234', '0x0000000400000000']);
  });

  it('F_WALK_EABT carries both the input address and the descriptor fetch address', () => {
    const words = [w('000000070000000b'), w('0000028000000000'), w('0000000012345678'), w('000f_ffff_ffff_fff8')];
    const ev = decodeEvent(words);
    expect(ev).toMatchObject({ kind: 'F_WALK_EABT', streamId: 7, s2: true, eventClass: EVENT_CLASS_IN, inputAddr: u64(0x1234_5678, 0), fetchAddr: 2 ** 52 - 8 });
  });

  it('F_STE_FETCH: Reason[79:64], GPCF bit 80, FetchAddr[51:3]', () => {
    expect(
      hex(encodeEvent({ kind: 'F_STE_FETCH', ssv: false, substreamId: 0, streamId: 1, reason: 0xabcd, gpcf: true, fetchAddr: 0x8000_0040 })),
    ).toEqual(['0x0000000100000003', '0x000000000001abcd', '0x0000000000000000', '0x0000000080000040']);
  });

  it('E_PAGE_REQUEST flags and Span', () => {
    const ev: EventRecord = { kind: 'E_PAGE_REQUEST', ssv: true, substreamId: 1, streamId: 2, span: 0xff, pR: true, pW: false, pX: false, uR: false, uW: false, uX: true, inputAddr: w('0000_7fff_ffff_f000') };
    expect(hex(encodeEvent(ev))).toEqual(['0x0000000200001824', '0x000ff08200000000', '0x00007ffffffff000', '0x0000000000000000']);
  });

  it('keeps IMPLEMENTATION DEFINED and reserved event numbers verbatim', () => {
    const words = [w('00000001000000e3'), w('0123456789abcdef'), w('ffffffffffffffff'), w('0000000000000001')];
    const ev = decodeEvent(words);
    expect(ev).toMatchObject({ kind: 'UNKNOWN', id: 0xe3 });
    expect(hex(encodeEvent(ev))).toEqual(hex(words));
    expect(decodeEvent([w('000000000000000c'), u64(0, 0), u64(0, 0), u64(0, 0)])).toMatchObject({ kind: 'UNKNOWN', id: 0x0c });
  });

  it('refuses values that do not fit', () => {
    expect(() => encodeEvent({ kind: 'C_BAD_STE', ssv: false, substreamId: 2 ** 20, streamId: 0 })).toThrow(RangeError);
    expect(() => encodeEvent({ kind: 'F_STE_FETCH', ssv: false, substreamId: 0, streamId: 0, reason: 0, gpcf: false, fetchAddr: 4 })).toThrow(RangeError);
    expect(() => decodeEvent([u64(0, 0)])).toThrow(RangeError);
  });
});

describe('defined bits (independent check against the reference §5.1)', () => {
  it('translation faults: header, STAG, Stall, PnU/InD/RnW, S2, CLASS, NSIPA, (TTRnW), InputAddr, IPA[51:12]', () => {
    expect(hex(eventDefinedMask('F_TRANSLATION'))).toEqual(['0xfffffffffffff8ff', '0x0000078e8000ffff', '0xffffffffffffffff', '0x000ffffffffff000']);
    expect(hex(eventDefinedMask('F_PERMISSION'))[1]).toBe('0x0000178e8000ffff');
  });

  it('structure fetch aborts: Reason, GPCF, FetchAddr[51:3]', () => {
    for (const kind of ['F_STE_FETCH', 'F_CD_FETCH', 'F_VMS_FETCH'] as const) {
      expect(hex(eventDefinedMask(kind))).toEqual(['0xfffffffffffff8ff', '0x000000000001ffff', '0x0000000000000000', '0x000ffffffffffff8']);
    }
  });

  it('records without an SSV carry none', () => {
    expect(hex(eventDefinedMask('C_BAD_SUBSTREAMID'))[0]).toBe('0xfffffffffffff0ff');
    expect(hex(eventDefinedMask('F_STREAM_DISABLED'))[0]).toBe('0xffffffff000000ff');
  });
});

describe('event round trips', () => {
  it('decode(encode(event)) = event for every record type', () => {
    fc.assert(
      fc.property(arbEvent, (ev) => {
        expect(decodeEvent(encodeEvent(ev))).toEqual(ev);
      }),
      { numRuns: 1000 },
    );
  });

  it('encode(decode(words)) = words restricted to the defined bits', () => {
    const ids = Object.values(EVENT_ID);
    fc.assert(
      fc.property(fc.constantFrom(...ids), arbWords(4), (id, words) => {
        const ws = [u64(((words[0]?.lo ?? 0) & ~0xff) | id, words[0]?.hi ?? 0), ...words.slice(1)];
        const ev = decodeEvent(ws);
        expect(ev.kind).not.toBe('UNKNOWN');
        expect(hex(encodeEvent(ev))).toEqual(hex(maskWords(ws, eventDefinedMask(ev.kind as EventKind))));
      }),
      { numRuns: 1000 },
    );
  });
});
