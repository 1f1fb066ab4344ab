/**
 * SMMUv3 command-queue entries (16 bytes = 2 doublewords): a tagged union of every command the
 * Non-secure queue accepts, the exact bit positions of their fields, and the encodings the
 * architecture makes CERROR_ILL. Reference: smmuv3-arch.md §3.1 (opcodes), §3.2 (fields),
 * §3.3 (TLBI TG/TTL/NUM/SCALE rules); IHI 0070 §4.1–§4.7 for the ILLEGAL conditions cited inline.
 *
 * Addresses: VA-form and untranslated addresses (TLBI_NH_VA/VAA, TLBI_EL2_VA/VAA, PREFETCH_ADDR,
 * ATC_INV) are Address[63:12] and kept as U64; IPA/PA forms (TLBI_S2_IPA, CMD_SYNC MSIAddr) are
 * numbers, decoded up to bit 51: bits 55:52 are RES0 up to SMMUv3.3 (SPEC 4.1.6).
 */
import { type U64, ZERO64, bits, u64And, u64Equal } from '../u64.js';
import { type FieldSpec, checkLayout, decodeFields, definedMask, encodeFields, f, flag, zeroWords } from './fields.js';

export const CMD_DWORDS = 2;
export const CMD_BYTES = 16;

export type CommandWords = readonly U64[];

/** Opcodes (§3.1). CFGI_ALL shares 0x04 with CFGI_STE_RANGE (Range = 31). */
export const CMD_OP = Object.freeze({
  PREFETCH_CONFIG: 0x01,
  PREFETCH_ADDR: 0x02,
  CFGI_STE: 0x03,
  CFGI_STE_RANGE: 0x04,
  CFGI_ALL: 0x04,
  CFGI_CD: 0x05,
  CFGI_CD_ALL: 0x06,
  CFGI_VMS_PIDM: 0x07,
  TLBI_NH_ALL: 0x10,
  TLBI_NH_ASID: 0x11,
  TLBI_NH_VA: 0x12,
  TLBI_NH_VAA: 0x13,
  TLBI_EL3_ALL: 0x18,
  TLBI_EL3_VA: 0x1a,
  TLBI_EL2_ALL: 0x20,
  TLBI_EL2_ASID: 0x21,
  TLBI_EL2_VA: 0x22,
  TLBI_EL2_VAA: 0x23,
  TLBI_S12_VMALL: 0x28,
  TLBI_S2_IPA: 0x2a,
  TLBI_NSNH_ALL: 0x30,
  ATC_INV: 0x40,
  PRI_RESP: 0x41,
  RESUME: 0x44,
  STALL_TERM: 0x45,
  CMD_SYNC: 0x46,
  TLBI_S_EL2_ALL: 0x50,
  TLBI_S_EL2_ASID: 0x51,
  TLBI_S_EL2_VA: 0x52,
  TLBI_S_EL2_VAA: 0x53,
  TLBI_S_S12_VMALL: 0x58,
  TLBI_S_S2_IPA: 0x5a,
  TLBI_SNH_ALL: 0x60,
  DPTI_ALL: 0x70,
  DPTI_PA: 0x73,
} as const);

/** CMD_SYNC completion signal (§3.2). */
export const CS_NONE = 0;
export const CS_IRQ = 1;
export const CS_SEV = 2;
/** TLBI TG encodings (§3.3): 0 any granule (no range, no TTL). */
export const TG_ANY = 0;
export const TG_4K = 1;
export const TG_16K = 2;
export const TG_64K = 3;
/** CFGI_STE_RANGE Range value meaning "all StreamIDs" (CMD_CFGI_ALL). */
export const CFGI_RANGE_ALL = 31;
/** ATC_INV Size meaning the whole address space (§3.5). */
export const ATC_INV_SIZE_ALL = 52;
/** PRI_RESP responses (Linux names, §3.2). */
export const PRI_RESP_DENY = 0;
export const PRI_RESP_FAIL = 1;
export const PRI_RESP_SUCC = 2;

interface StreamFields {
  readonly sid: number;
}

interface SubstreamFields extends StreamFields {
  readonly ssv: boolean;
  readonly ssid: number;
}

/** TLBI range/level fields (§3.3); all zero means a plain (non-range, any-level) invalidation. */
export interface TlbiRange {
  readonly num: number;
  readonly scale: number;
  readonly leaf: boolean;
  readonly ttl128: boolean;
  readonly ttl: number;
  readonly tg: number;
}

export type Command =
  | ({ readonly kind: 'PREFETCH_CONFIG'; readonly ssec: boolean } & SubstreamFields)
  | ({ readonly kind: 'PREFETCH_ADDR'; readonly ssec: boolean; readonly size: number; readonly address: U64 } & SubstreamFields)
  | ({ readonly kind: 'CFGI_STE'; readonly ssec: boolean; readonly leaf: boolean } & StreamFields)
  /** Range 0..30: the aligned block of 2^(Range+1) StreamIDs containing `sid`. */
  | ({ readonly kind: 'CFGI_STE_RANGE'; readonly ssec: boolean; readonly range: number } & StreamFields)
  /** CFGI_STE_RANGE with Range 31; `sid` is ignored by the SMMU but kept for a lossless codec. */
  | ({ readonly kind: 'CFGI_ALL'; readonly ssec: boolean } & StreamFields)
  | ({ readonly kind: 'CFGI_CD'; readonly ssec: boolean; readonly ssid: number; readonly leaf: boolean } & StreamFields)
  | ({ readonly kind: 'CFGI_CD_ALL'; readonly ssec: boolean } & StreamFields)
  | { readonly kind: 'TLBI_NH_ALL'; readonly vmid: number }
  | { readonly kind: 'TLBI_NH_ASID'; readonly vmid: number; readonly asid: number }
  | ({ readonly kind: 'TLBI_NH_VA'; readonly vmid: number; readonly asid: number; readonly address: U64 } & TlbiRange)
  | ({ readonly kind: 'TLBI_NH_VAA'; readonly vmid: number; readonly address: U64 } & TlbiRange)
  | { readonly kind: 'TLBI_EL2_ALL' }
  | { readonly kind: 'TLBI_EL2_ASID'; readonly asid: number }
  | ({ readonly kind: 'TLBI_EL2_VA'; readonly asid: number; readonly address: U64 } & TlbiRange)
  | ({ readonly kind: 'TLBI_EL2_VAA'; readonly address: U64 } & TlbiRange)
  | { readonly kind: 'TLBI_S12_VMALL'; readonly vmid: number }
  /** `address` is the IPA, bits 11:0 zero. */
  | ({ readonly kind: 'TLBI_S2_IPA'; readonly vmid: number; readonly address: number } & TlbiRange)
  | { readonly kind: 'TLBI_NSNH_ALL' }
  /** Invalidates the aligned span of 4096 * 2^size bytes containing `address`; size 52 = all. */
  | ({ readonly kind: 'ATC_INV'; readonly global: boolean; readonly size: number; readonly address: U64 } & SubstreamFields)
  | ({ readonly kind: 'PRI_RESP'; readonly grpid: number; readonly resp: number } & SubstreamFields)
  /** Ac (bit 12): 1 retry, 0 terminate; Ab (bit 13): terminate with abort rather than RAZ/WI. */
  | ({ readonly kind: 'RESUME'; readonly ssec: boolean; readonly ac: boolean; readonly ab: boolean; readonly stag: number } & StreamFields)
  | ({ readonly kind: 'STALL_TERM'; readonly ssec: boolean } & StreamFields)
  | { readonly kind: 'CMD_SYNC'; readonly cs: number; readonly msh: number; readonly msiattr: number; readonly msidata: number; readonly msiaddr: number };

export type CommandKind = Command['kind'];

/** What decodeCommand returns for a command the SMMU must reject with CERROR_ILL. */
export interface IllegalCommand {
  readonly kind: 'illegal';
  readonly opcode: number;
  readonly reason: string;
}

export type DecodedCommand = Command | IllegalCommand;

export type CommandOf<K extends CommandKind> = Extract<Command, { kind: K }>;

// --- Layouts -------------------------------------------------------------------------------

const SSEC = flag('ssec', 0, 10);
const SSV = flag('ssv', 0, 11);
const SSID = f('ssid', 0, 31, 12);
const SID = f('sid', 0, 63, 32);
const VMID = f('vmid', 0, 47, 32);
const ASID = f('asid', 0, 63, 48);
const NUM = f('num', 0, 16, 12);
const SCALE5 = f('scale', 0, 24, 20);
/** With IDR5.DS, SCALE gains bit 25 (SPEC 4.4.1.1). */
const SCALE6 = f('scale', 0, 25, 20);
const LEAF = flag('leaf', 1, 0);
const TTL128 = flag('ttl128', 1, 7);
const TTL = f('ttl', 1, 9, 8);
const TG = f('tg', 1, 11, 10);
const VA = f('address', 1, 63, 12, 'u64');
const IPA = f('address', 1, 51, 12, 'addr');

/** Range fields, present only when range invalidation is implemented (IDR3.RIL). */
const RANGE_KEYS = new Set(['num', 'scale', 'ttl128', 'ttl', 'tg']);

interface Layout {
  readonly opcode: number;
  readonly fields: readonly FieldSpec[];
}

const LAYOUTS: { readonly [K in CommandKind]: Layout } = {
  PREFETCH_CONFIG: { opcode: 0x01, fields: [SSEC, SSV, SSID, SID] },
  // NS and Stride (SPEC 4.2.2) are not placed by the reference; their bits are left undefined.
  PREFETCH_ADDR: { opcode: 0x02, fields: [SSEC, SSV, SSID, SID, f('size', 1, 4, 0), VA] },
  CFGI_STE: { opcode: 0x03, fields: [SSEC, SID, LEAF] },
  CFGI_STE_RANGE: { opcode: 0x04, fields: [SSEC, SID, f('range', 1, 4, 0)] },
  CFGI_ALL: { opcode: 0x04, fields: [SSEC, SID] },
  CFGI_CD: { opcode: 0x05, fields: [SSEC, SSID, SID, LEAF] },
  CFGI_CD_ALL: { opcode: 0x06, fields: [SSEC, SID] },
  TLBI_NH_ALL: { opcode: 0x10, fields: [VMID] },
  TLBI_NH_ASID: { opcode: 0x11, fields: [VMID, ASID] },
  TLBI_NH_VA: { opcode: 0x12, fields: [NUM, SCALE5, VMID, ASID, LEAF, TTL128, TTL, TG, VA] },
  TLBI_NH_VAA: { opcode: 0x13, fields: [NUM, SCALE5, VMID, LEAF, TTL128, TTL, TG, VA] },
  TLBI_EL2_ALL: { opcode: 0x20, fields: [] },
  TLBI_EL2_ASID: { opcode: 0x21, fields: [ASID] },
  TLBI_EL2_VA: { opcode: 0x22, fields: [NUM, SCALE5, ASID, LEAF, TTL128, TTL, TG, VA] },
  TLBI_EL2_VAA: { opcode: 0x23, fields: [NUM, SCALE5, LEAF, TTL128, TTL, TG, VA] },
  TLBI_S12_VMALL: { opcode: 0x28, fields: [VMID] },
  TLBI_S2_IPA: { opcode: 0x2a, fields: [NUM, SCALE5, VMID, LEAF, TTL128, TTL, TG, IPA] },
  TLBI_NSNH_ALL: { opcode: 0x30, fields: [] },
  ATC_INV: { opcode: 0x40, fields: [flag('global', 0, 9), SSV, SSID, SID, f('size', 1, 5, 0), VA] },
  PRI_RESP: { opcode: 0x41, fields: [SSV, SSID, SID, f('grpid', 1, 8, 0), f('resp', 1, 13, 12)] },
  RESUME: { opcode: 0x44, fields: [SSEC, flag('ac', 0, 12), flag('ab', 0, 13), SID, f('stag', 1, 15, 0)] },
  STALL_TERM: { opcode: 0x45, fields: [SSEC, SID] },
  CMD_SYNC: {
    opcode: 0x46,
    fields: [f('cs', 0, 13, 12), f('msh', 0, 23, 22), f('msiattr', 0, 27, 24), f('msidata', 0, 63, 32), f('msiaddr', 1, 51, 2, 'addr')],
  },
};

const OPCODE_FIELD = f('opcode', 0, 7, 0);
for (const kind of Object.keys(LAYOUTS) as CommandKind[]) {
  for (const ds of [false, true]) checkLayout(kind, [OPCODE_FIELD, ...layoutFields(kind, { ds })], CMD_DWORDS);
}

const KIND_BY_OPCODE = new Map<number, CommandKind>();
for (const [kind, layout] of Object.entries(LAYOUTS) as [CommandKind, Layout][]) {
  if (kind !== 'CFGI_ALL') KIND_BY_OPCODE.set(layout.opcode, kind);
}

/** Opcodes that exist but that the Non-secure command queue of the modelled SMMU rejects. */
const REJECTED_OPCODES = new Map<number, string>([
  [0x07, 'CFGI_VMS_PIDM raises CERROR_ILL when IDR3.MPAM == 0 (SPEC 4.3.5); MPAM/VMS is not modelled'],
  [0x18, 'TLBI_EL3_ALL is valid only on the Secure command queue (SPEC 4.4.2.5)'],
  [0x1a, 'TLBI_EL3_VA is valid only on the Secure command queue (SPEC 4.4.2.6)'],
  [0x50, 'TLBI_S_EL2_ALL is ILLEGAL on the Non-secure command queue (SPEC 4.4.2.11)'],
  [0x51, 'TLBI_S_EL2_ASID is ILLEGAL on the Non-secure command queue (SPEC 4.4.2.14)'],
  [0x52, 'TLBI_S_EL2_VA is ILLEGAL on the Non-secure command queue (SPEC 4.4.2.12)'],
  [0x53, 'TLBI_S_EL2_VAA is ILLEGAL on the Non-secure command queue (SPEC 4.4.2.13)'],
  [0x58, 'TLBI_S_S12_VMALL is ILLEGAL on the Non-secure command queue (SPEC 4.4.3.4)'],
  [0x5a, 'TLBI_S_S2_IPA is ILLEGAL on the Non-secure command queue (SPEC 4.4.3.3)'],
  [0x60, 'TLBI_SNH_ALL is ILLEGAL on the Non-secure command queue (SPEC 4.4.4.2)'],
  [0x70, 'DPTI_ALL raises CERROR_ILL when IDR3.DPT == 0 (SPEC 4.6.1); DPT is not modelled'],
  [0x73, 'DPTI_PA raises CERROR_ILL when IDR3.DPT == 0 (SPEC 4.6.2); DPT is not modelled'],
]);

/** Decoding depends on implemented features that change which bits are defined. */
export interface CommandDecodeOptions {
  /** IDR3.RIL: NUM, SCALE, TG, TTL, TTL128 are defined; otherwise RES0 (decoded as 0). Default true. */
  readonly ril?: boolean;
  /** IDR5.DS: SCALE is 6 bits wide (bit 25). Default false. */
  readonly ds?: boolean;
  /**
   * Treat a non-zero RES0 bit as CERROR_ILL. The spec lets an implementation either detect it
   * or ignore the field (SPEC 4.1.5); default false (ignore), true models the detecting SMMU.
   */
  readonly strictRes0?: boolean;
}

function layoutFields(kind: CommandKind, options: CommandDecodeOptions): FieldSpec[] {
  const ril = options.ril ?? true;
  const ds = options.ds ?? false;
  return LAYOUTS[kind].fields
    .filter((s) => ril || !RANGE_KEYS.has(s.key))
    .map((s) => (s === SCALE5 && ds ? SCALE6 : s));
}

const RANGE_FIELD = f('range', 1, 4, 0);

/** Every field the encoding of `kind` occupies: the decoded fields plus CFGI_ALL's fixed Range. */
function encodingFields(kind: CommandKind, options: CommandDecodeOptions): FieldSpec[] {
  const fields = [OPCODE_FIELD, ...layoutFields(kind, options)];
  return kind === 'CFGI_ALL' ? [...fields, RANGE_FIELD] : fields;
}

/** The bits a command of `kind` gives a meaning to (including the opcode). */
export function commandDefinedMask(kind: CommandKind, options: CommandDecodeOptions = {}): U64[] {
  return definedMask(encodingFields(kind, options), CMD_DWORDS);
}

function illegalCmd(opcode: number, reason: string): IllegalCommand {
  return { kind: 'illegal', opcode, reason };
}

const TLBI_RANGE_KINDS: ReadonlySet<CommandKind> = new Set<CommandKind>(['TLBI_NH_VA', 'TLBI_NH_VAA', 'TLBI_EL2_VA', 'TLBI_EL2_VAA', 'TLBI_S2_IPA']);

function zeroRangeDefaults(kind: CommandKind, rec: Record<string, unknown>): void {
  if (!TLBI_RANGE_KINDS.has(kind)) return;
  for (const key of RANGE_KEYS) if (!(key in rec)) rec[key] = key === 'ttl128' ? false : 0;
}

/**
 * Decodes a command as the Non-secure command queue consumer sees it: the command, or
 * `illegal` with the reason the architecture gives for CERROR_ILL. Checks that need SMMU
 * features (stage support, ATS, PRI, stall model) are in `checkCommand`.
 */
export function decodeCommand(words: CommandWords, options: CommandDecodeOptions = {}): DecodedCommand {
  if (words.length !== CMD_DWORDS) throw new RangeError(`a command is ${CMD_DWORDS} doublewords, got ${words.length}`);
  const w0 = words[0] ?? ZERO64;
  const opcode = w0.lo & 0xff;
  const rejected = REJECTED_OPCODES.get(opcode);
  if (rejected !== undefined) return illegalCmd(opcode, rejected);
  let kind = KIND_BY_OPCODE.get(opcode);
  if (kind === undefined) {
    const why = opcode >= 0x80 && opcode <= 0x8f ? 'IMPLEMENTATION DEFINED opcode; the modelled SMMU defines none' : 'reserved opcode (SPEC 4.1.1)';
    return illegalCmd(opcode, `opcode 0x${opcode.toString(16).padStart(2, '0')}: ${why}`);
  }
  const w1 = words[1] ?? ZERO64;
  if (kind === 'CFGI_STE_RANGE' && bits(w1.lo, w1.hi, 4, 0) === CFGI_RANGE_ALL) kind = 'CFGI_ALL';
  const fields = layoutFields(kind, options);
  const rec: Record<string, unknown> = { kind, ...decodeFields(words, fields) };
  zeroRangeDefaults(kind, rec);
  const cmd = rec as unknown as Command;

  if (options.strictRes0 === true) {
    const mask = commandDefinedMask(kind, options);
    for (let i = 0; i < CMD_DWORDS; i++) {
      const w = words[i] ?? ZERO64;
      const m = mask[i] ?? ZERO64;
      if (!u64Equal(u64And(w, m), w)) return illegalCmd(opcode, `${kind}: non-zero RES0 bits in doubleword ${i} (detected, SPEC 4.1.5)`);
    }
  }
  // SSec must be 0 on the Non-secure command queue (SPEC 4.1.6).
  if ('ssec' in cmd && cmd.ssec) return illegalCmd(opcode, `${kind}: SSec == 1 on the Non-secure command queue (SPEC 4.1.6)`);

  switch (cmd.kind) {
    case 'TLBI_NH_VA':
    case 'TLBI_NH_VAA':
    case 'TLBI_EL2_VA':
    case 'TLBI_EL2_VAA':
    case 'TLBI_S2_IPA': {
      const reason = tlbiRangeIllegal(cmd, options);
      if (reason !== undefined) return illegalCmd(opcode, `${cmd.kind}: ${reason}`);
      break;
    }
    case 'ATC_INV':
      // Size > 52 is permitted, not required, to raise CERROR_ILL (SPEC 4.5.1): the strict choice.
      if (cmd.size > ATC_INV_SIZE_ALL) return illegalCmd(opcode, `ATC_INV: Size ${cmd.size} > 52 (SPEC 4.5.1, treated as ILLEGAL)`);
      break;
    case 'PRI_RESP':
      if (cmd.resp === 0b11) return illegalCmd(opcode, 'PRI_RESP: Resp 0b11 is reserved and ILLEGAL (SPEC 4.5.2)');
      break;
    case 'CMD_SYNC':
      if (cmd.cs === 0b11) return illegalCmd(opcode, 'CMD_SYNC: CS 0b11 is reserved and causes CERROR_ILL (SPEC 4.7.3)');
      break;
    default:
      break;
  }
  return cmd;
}

/**
 * The reserved TLBI range encodings (§3.3, SPEC 4.4.1.1): with TG ≠ 0, NUM = SCALE = 0 and an
 * effective TTL of 0 has no purpose and is CERROR_ILL; TTL = 1 with TG = 16K and DS = 0 is
 * treated as TTL = 0, so it is ILLEGAL in that case too. Fields that are RES0 because TG = 0
 * (NUM, SCALE, TTL) or TTL = 0 (TTL128) are ILLEGAL only when RES0 checking is on.
 */
function tlbiRangeIllegal(cmd: TlbiRange, options: CommandDecodeOptions): string | undefined {
  const ril = options.ril ?? true;
  if (!ril) return undefined;
  if (cmd.tg === TG_ANY) {
    if (options.strictRes0 === true && (cmd.num !== 0 || cmd.scale !== 0 || cmd.ttl !== 0 || cmd.ttl128)) {
      return 'TG == 0 with non-zero NUM/SCALE/TTL/TTL128, which are RES0 (detected, SPEC 4.1.5)';
    }
    return undefined;
  }
  const ds = options.ds ?? false;
  const effectiveTtl = cmd.tg === TG_16K && cmd.ttl === 1 && !ds ? 0 : cmd.ttl;
  if (cmd.num === 0 && cmd.scale === 0 && effectiveTtl === 0) {
    return cmd.ttl === 0
      ? 'TG != 0 with NUM == SCALE == TTL == 0 is a reserved combination (SPEC 4.4.1.1)'
      : 'TG == 16K with TTL == 1 and IDR5.DS == 0 is treated as TTL == 0, and NUM == SCALE == 0 makes it reserved (SPEC 4.4.1.1)';
  }
  if (options.strictRes0 === true && cmd.ttl128 && cmd.ttl === 0) return 'TTL128 set with TTL == 0, where it is RES0 (detected, SPEC 4.1.5)';
  return undefined;
}

/** Features that make otherwise well-formed commands CERROR_ILL on a given SMMU. */
export interface CommandFeatures {
  readonly s1p: boolean;
  readonly s2p: boolean;
  readonly hyp: boolean;
  readonly ats: boolean;
  readonly pri: boolean;
  /** Effective IDR0.STALL_MODEL. */
  readonly stallModel: number;
}

/** CERROR_ILL conditions that depend on what the SMMU implements; undefined if the command is fine. */
export function checkCommand(cmd: Command, features: CommandFeatures): string | undefined {
  switch (cmd.kind) {
    case 'TLBI_NH_ALL':
    case 'TLBI_NH_ASID':
    case 'TLBI_NH_VA':
    case 'TLBI_NH_VAA':
      return features.s1p ? undefined : `${cmd.kind} on an SMMU without stage 1 (SPEC 4.4.2)`;
    case 'TLBI_EL2_ALL':
    case 'TLBI_EL2_ASID':
    case 'TLBI_EL2_VA':
    case 'TLBI_EL2_VAA':
      return features.hyp ? undefined : `${cmd.kind} with IDR0.Hyp == 0 (SPEC 4.4.2.7-10)`;
    case 'TLBI_S2_IPA':
    case 'TLBI_S12_VMALL':
      return features.s2p ? undefined : `${cmd.kind} on an SMMU without stage 2 (SPEC 4.4.3)`;
    case 'CFGI_CD':
    case 'CFGI_CD_ALL':
      return features.s1p ? undefined : `${cmd.kind} on an SMMU without stage 1 (SPEC 4.3.3-4)`;
    case 'ATC_INV':
      return features.ats ? undefined : 'ATC_INV with IDR0.ATS == 0 (SPEC 4.5.1)';
    case 'PRI_RESP':
      return features.pri ? undefined : 'PRI_RESP with IDR0.PRI == 0 (SPEC 4.5.2)';
    case 'RESUME':
    case 'STALL_TERM':
      return features.stallModel === 1 ? `${cmd.kind} on an SMMU without the stall model (SPEC 4.7.1-2)` : undefined;
    default:
      return undefined;
  }
}

/**
 * Encodes a command. CFGI_STE_RANGE with Range 31 has CFGI_ALL's encoding (the spec defines
 * them as the same command) and therefore decodes as CFGI_ALL. Fields outside the options'
 * defined bits (range fields without RIL) must be zero.
 */
export function encodeCommand(cmd: Command, options: CommandDecodeOptions = {}): U64[] {
  const layout = LAYOUTS[cmd.kind];
  const words = zeroWords(CMD_DWORDS);
  const withOpcode: Record<string, unknown> = { ...cmd, opcode: layout.opcode };
  if (cmd.kind === 'CFGI_ALL') withOpcode['range'] = CFGI_RANGE_ALL;
  if (TLBI_RANGE_KINDS.has(cmd.kind) && !(options.ril ?? true)) {
    const r = cmd as unknown as TlbiRange;
    if (r.num !== 0 || r.scale !== 0 || r.ttl !== 0 || r.tg !== 0 || r.ttl128) throw new RangeError(`${cmd.kind}: range fields need IDR3.RIL`);
  }
  encodeFields(words, encodingFields(cmd.kind, options), withOpcode, cmd.kind);
  return words;
}

/** Bytes covered by a range TLBI (§3.3): (NUM+1) * 2^SCALE granules; undefined when TG = 0. */
export function tlbiRangeBytes(r: Pick<TlbiRange, 'num' | 'scale' | 'tg'>): number | undefined {
  const granuleShift = [0, 12, 14, 16][r.tg];
  if (granuleShift === undefined || granuleShift === 0) return undefined;
  return (r.num + 1) * 2 ** (r.scale + granuleShift);
}

/** A decoded command as one line for traces: its kind, then each field (numbers above 9 and addresses in hex). */
export function describeCommand(cmd: DecodedCommand): string {
  const fields = Object.entries(cmd)
    .filter(([k]) => k !== 'kind')
    .map(([k, v]) => {
      if (typeof v === 'number') return `${k}=${v > 9 ? `0x${v.toString(16)}` : String(v)}`;
      if (typeof v === 'object' && v !== null && 'lo' in v && 'hi' in v) return `${k}=0x${((v as U64).hi * 2 ** 32 + (v as U64).lo).toString(16)}`;
      return `${k}=${String(v)}`;
    });
  return fields.length === 0 ? cmd.kind : `${cmd.kind} ${fields.join(' ')}`;
}
