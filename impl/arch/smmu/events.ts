/**
 * SMMUv3 event records (32 bytes = 4 doublewords): every architected event ID and the fields
 * each record type carries. Reference: smmuv3-arch.md §5.1 (common layout), §5.2 (IDs);
 * IHI 0070 §7.3.2–7.3.21 for which fields each record has.
 *
 * Positions are those of the reference's §5.1 table. Where the spec's per-record figure was not
 * legible in the sources and the reference is silent, the choice is marked [INF] at the layout.
 * Addresses: InputAddr is a full 64-bit value (U64); IPA and FetchAddr are numbers decoded up to
 * bit 51 (Linux masks [51:12] / [51:3]; bits 55:52 are RES0 below a 56-bit OAS).
 */
import { type U64, ZERO64 } from '../u64.js';
import { type FieldSpec, checkLayout, decodeFields, definedMask, encodeFields, f, flag, zeroWords } from './fields.js';

export const EVT_DWORDS = 4;
export const EVT_BYTES = 32;

export type EventWords = readonly U64[];

export const EVENT_ID = Object.freeze({
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
} as const);

export type EventKind = keyof typeof EVENT_ID;

/** Event CLASS (§5.1): which access of the translation faulted. */
export const EVENT_CLASS_CD = 0;
export const EVENT_CLASS_TT = 1;
export const EVENT_CLASS_IN = 2;

interface Stream {
  readonly streamId: number;
}

interface Substream extends Stream {
  readonly ssv: boolean;
  readonly substreamId: number;
}

/** Attributes of the input transaction: privileged, instruction, read (post-STE override). */
interface Access {
  readonly pnu: boolean;
  readonly ind: boolean;
  readonly rnw: boolean;
}

interface Fetch {
  /** IMPLEMENTATION DEFINED cause. */
  readonly reason: number;
  /** Granule protection check fault (RME). */
  readonly gpcf: boolean;
  /** PA of the structure or descriptor whose fetch aborted; bits 2:0 zero. */
  readonly fetchAddr: number;
}

/** The translation-fault family (F_TRANSLATION, F_ADDR_SIZE, F_ACCESS, F_PERMISSION). */
interface TranslationFault extends Substream, Access {
  readonly stag: number;
  readonly stall: boolean;
  /** The fault is at stage 2. */
  readonly s2: boolean;
  readonly eventClass: number;
  readonly nsipa: boolean;
  readonly inputAddr: U64;
  /** IPA when S2 == 1 (UNKNOWN otherwise); bits 11:0 zero. */
  readonly ipa: number;
}

export type EventRecord =
  | ({ readonly kind: 'F_UUT'; readonly reason: number; readonly inputAddr: U64 } & Substream & Access)
  | ({ readonly kind: 'C_BAD_STREAMID' } & Substream)
  | ({ readonly kind: 'F_STE_FETCH' } & Substream & Fetch)
  | ({ readonly kind: 'C_BAD_STE' } & Substream)
  /** InputAddr bits 11:0 are zero; `span` is the number of STUs requested. */
  | ({ readonly kind: 'F_BAD_ATS_TREQ'; readonly span: number; readonly inputAddr: U64 } & Substream)
  | ({ readonly kind: 'F_STREAM_DISABLED' } & Stream)
  | ({ readonly kind: 'F_TRANSL_FORBIDDEN'; readonly rnw: boolean; readonly inputAddr: U64 } & Stream)
  /** SubstreamID is always valid here (no SSV). */
  | ({ readonly kind: 'C_BAD_SUBSTREAMID'; readonly substreamId: number } & Stream)
  | ({ readonly kind: 'F_CD_FETCH' } & Substream & Fetch)
  | ({ readonly kind: 'C_BAD_CD' } & Substream)
  | ({
      readonly kind: 'F_WALK_EABT';
      readonly s2: boolean;
      readonly eventClass: number;
      readonly nsipa: boolean;
      readonly inputAddr: U64;
    } & Substream &
      Access &
      Fetch)
  | ({ readonly kind: 'F_TRANSLATION' } & TranslationFault)
  | ({ readonly kind: 'F_ADDR_SIZE' } & TranslationFault)
  | ({ readonly kind: 'F_ACCESS' } & TranslationFault)
  /** TTRnW: whether a stage-1 table read (1) or write (0) faulted; valid when CLASS == TT. */
  | ({ readonly kind: 'F_PERMISSION'; readonly ttrnw: boolean } & TranslationFault)
  | ({
      readonly kind: 'F_TLB_CONFLICT';
      readonly reason: number;
      readonly s2: boolean;
      readonly nsipa: boolean;
      readonly inputAddr: U64;
      readonly ipa: number;
    } & Substream &
      Access)
  | ({ readonly kind: 'F_CFG_CONFLICT'; readonly reason: number } & Substream)
  | ({
      readonly kind: 'E_PAGE_REQUEST';
      readonly span: number;
      readonly pR: boolean;
      readonly pW: boolean;
      readonly pX: boolean;
      readonly uR: boolean;
      readonly uW: boolean;
      readonly uX: boolean;
      readonly inputAddr: U64;
    } & Substream)
  | ({ readonly kind: 'F_VMS_FETCH' } & Substream & Fetch);

/** An IMPLEMENTATION DEFINED (0xE0–0xEF) or reserved event number, kept verbatim. */
export interface UnknownEvent {
  readonly kind: 'UNKNOWN';
  readonly id: number;
  readonly words: readonly U64[];
}

export type DecodedEvent = EventRecord | UnknownEvent;

export type EventOf<K extends EventKind> = Extract<EventRecord, { kind: K }>;

// --- Layouts -------------------------------------------------------------------------------

const ID = f('id', 0, 7, 0);
const SSV = flag('ssv', 0, 11);
const SSID = f('substreamId', 0, 31, 12);
const SID = f('streamId', 0, 63, 32);
const STAG = f('stag', 1, 15, 0);
const STALL = flag('stall', 1, 31);
const PNU = flag('pnu', 1, 33);
const IND = flag('ind', 1, 34);
const RNW = flag('rnw', 1, 35);
const S2 = flag('s2', 1, 39);
const CLASS = f('eventClass', 1, 41, 40);
const NSIPA = flag('nsipa', 1, 42);
const TTRNW = flag('ttrnw', 1, 44);
const INPUT_ADDR = f('inputAddr', 2, 63, 0, 'u64');
const INPUT_PAGE = f('inputAddr', 2, 63, 12, 'u64');
const IPA = f('ipa', 3, 51, 12, 'addr');
const FETCH_ADDR = f('fetchAddr', 3, 51, 3, 'addr');
/** Reason[79:64] and GPCF bit 80 as in F_UUT, F_STE_FETCH and F_VMS_FETCH (SPEC 7.3.2/4/20). */
const REASON16 = f('reason', 1, 15, 0);
const GPCF = flag('gpcf', 1, 16);
/** Span [115:108] as in E_PAGE_REQUEST (SPEC 7.3.19). */
const SPAN = f('span', 1, 51, 44);

const HEADER = [SSV, SSID, SID];
const FETCH = [...HEADER, REASON16, GPCF, FETCH_ADDR];
const TRANSLATION_FAULT = [...HEADER, STAG, STALL, PNU, IND, RNW, S2, CLASS, NSIPA, INPUT_ADDR, IPA];

const LAYOUTS: { readonly [K in EventKind]: readonly FieldSpec[] } = {
  F_UUT: [...HEADER, REASON16, PNU, IND, RNW, INPUT_ADDR],
  C_BAD_STREAMID: HEADER,
  F_STE_FETCH: FETCH,
  C_BAD_STE: HEADER,
  // [INF] The spec figure for F_BAD_ATS_TREQ was not legible; Span and InputAddr[63:12] are
  // placed as in E_PAGE_REQUEST. The requested R/W/X/PRIV bits are not placed (unknown) and the
  // model records no permissions.
  F_BAD_ATS_TREQ: [...HEADER, SPAN, INPUT_PAGE],
  // The figure shows only StreamID for this record (SPEC 7.3.7).
  F_STREAM_DISABLED: [SID],
  F_TRANSL_FORBIDDEN: [SID, RNW, INPUT_ADDR],
  C_BAD_SUBSTREAMID: [SSID, SID],
  // [INF] Laid out like F_STE_FETCH (the spec gives the same fields: Reason, FetchAddr).
  F_CD_FETCH: FETCH,
  C_BAD_CD: HEADER,
  // [INF] Reason and GPCF placed as in F_STE_FETCH; the other fields per the reference §5.1.
  F_WALK_EABT: [...FETCH, PNU, IND, RNW, S2, CLASS, NSIPA, INPUT_ADDR],
  F_TRANSLATION: TRANSLATION_FAULT,
  F_ADDR_SIZE: TRANSLATION_FAULT,
  F_ACCESS: TRANSLATION_FAULT,
  F_PERMISSION: [...TRANSLATION_FAULT, TTRNW],
  // [INF] Reason placed as in F_UUT; IPA valid when S2 == 1 (SPEC 7.3.17).
  F_TLB_CONFLICT: [...HEADER, REASON16, PNU, IND, RNW, S2, NSIPA, INPUT_ADDR, IPA],
  // Reason occupies bits [95:64] in the figure (SPEC 7.3.18).
  F_CFG_CONFLICT: [...HEADER, f('reason', 1, 31, 0)],
  E_PAGE_REQUEST: [
    ...HEADER,
    flag('uX', 1, 33),
    flag('uW', 1, 34),
    flag('uR', 1, 35),
    flag('pX', 1, 37),
    flag('pW', 1, 38),
    flag('pR', 1, 39),
    SPAN,
    INPUT_PAGE,
  ],
  F_VMS_FETCH: FETCH,
};

const KIND_BY_ID = new Map<number, EventKind>();
for (const [kind, id] of Object.entries(EVENT_ID) as [EventKind, number][]) {
  checkLayout(kind, [ID, ...LAYOUTS[kind]], EVT_DWORDS);
  KIND_BY_ID.set(id, kind);
}

export function eventKindOf(id: number): EventKind | undefined {
  return KIND_BY_ID.get(id);
}

/** The bits an event of `kind` defines, including the event ID. */
export function eventDefinedMask(kind: EventKind): U64[] {
  return definedMask([ID, ...LAYOUTS[kind]], EVT_DWORDS);
}

export function decodeEvent(words: EventWords): DecodedEvent {
  if (words.length !== EVT_DWORDS) throw new RangeError(`an event record is ${EVT_DWORDS} doublewords, got ${words.length}`);
  const id = (words[0] ?? ZERO64).lo & 0xff;
  const kind = KIND_BY_ID.get(id);
  if (kind === undefined) return { kind: 'UNKNOWN', id, words: words.slice() };
  return { kind, ...decodeFields(words, LAYOUTS[kind]) } as unknown as EventRecord;
}

export function encodeEvent(ev: DecodedEvent): U64[] {
  if (ev.kind === 'UNKNOWN') {
    if (ev.words.length !== EVT_DWORDS) throw new RangeError('an event record is 4 doublewords');
    return ev.words.slice();
  }
  const words = zeroWords(EVT_DWORDS);
  encodeFields(words, [ID, ...LAYOUTS[ev.kind]], { ...ev, id: EVENT_ID[ev.kind] }, ev.kind);
  return words;
}

/**
 * Whether the stage-2 fault records F_TRANSLATION/F_ADDR_SIZE/F_ACCESS/F_PERMISSION are
 * subject to STE.S2R / S2S (§2.3: other stage-2 errors are always recorded).
 */
export function isTranslationFaultKind(kind: string): kind is 'F_TRANSLATION' | 'F_ADDR_SIZE' | 'F_ACCESS' | 'F_PERMISSION' {
  return kind === 'F_TRANSLATION' || kind === 'F_ADDR_SIZE' || kind === 'F_ACCESS' || kind === 'F_PERMISSION';
}
