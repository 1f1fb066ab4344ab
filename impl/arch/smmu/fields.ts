/**
 * Table-driven bit-field codec shared by the SMMUv3 structure codecs (STE, commands, events).
 *
 * A structure is a few 64-bit little-endian doublewords; each field is described once, by
 * doubleword and bit range, so that decode, encode and the mask of defined bits can never
 * disagree. Encoding refuses values that do not fit, so a caller bug cannot silently become a
 * different architectural value.
 */
import { type U64, ZERO64, bits, genmask, u64Or, withBits } from '../u64.js';

/**
 * How a field's bits become a JavaScript value:
 * - `uint`: the unsigned integer in bits msb..lsb (at most 53 bits wide);
 * - `flag`: a one-bit field as a boolean;
 * - `addr`: an address whose bits msb..lsb are stored in place and whose lower bits are zero
 *   (the value is `field << lsb`, so it must stay below 2^53: msb ≤ 52);
 * - `u64`: a U64 holding only bits msb..lsb in place (64-bit input addresses, S2POI).
 */
export type FieldType = 'uint' | 'flag' | 'addr' | 'u64';

export interface FieldSpec {
  readonly key: string;
  readonly dw: number;
  readonly msb: number;
  readonly lsb: number;
  readonly type: FieldType;
}

export function f(key: string, dw: number, msb: number, lsb: number, type: FieldType = 'uint'): FieldSpec {
  return Object.freeze({ key, dw, msb, lsb, type });
}

export function flag(key: string, dw: number, bitNumber: number): FieldSpec {
  return f(key, dw, bitNumber, bitNumber, 'flag');
}

export type FieldValue = number | boolean | U64;

/** Throws when two fields claim the same bit: the tables are data, so check them once at load. */
export function checkLayout(name: string, specs: readonly FieldSpec[], words: number): void {
  const seen = new Map<string, string>();
  for (const s of specs) {
    if (s.dw < 0 || s.dw >= words || s.lsb < 0 || s.msb > 63 || s.msb < s.lsb) throw new Error(`${name}.${s.key}: bad position`);
    if (s.type === 'addr' && s.msb > 52) throw new Error(`${name}.${s.key}: address fields above bit 52 are not exact as numbers`);
    if (s.type === 'uint' && s.msb - s.lsb + 1 > 53) throw new Error(`${name}.${s.key}: too wide for a number`);
    for (let b = s.lsb; b <= s.msb; b++) {
      const id = `${s.dw}:${b}`;
      const other = seen.get(id);
      if (other !== undefined) throw new Error(`${name}: ${s.key} overlaps ${other} at dw${s.dw} bit ${b}`);
      seen.set(id, s.key);
    }
  }
}

function word(words: readonly U64[], dw: number): U64 {
  const w = words[dw];
  if (w === undefined) throw new RangeError(`missing doubleword ${dw}`);
  return w;
}

export function decodeField(words: readonly U64[], s: FieldSpec): FieldValue {
  const w = word(words, s.dw);
  switch (s.type) {
    case 'flag':
      return bits(w.lo, w.hi, s.msb, s.lsb) === 1;
    case 'uint':
      return bits(w.lo, w.hi, s.msb, s.lsb);
    case 'addr':
      return bits(w.lo, w.hi, s.msb, s.lsb) * 2 ** s.lsb;
    case 'u64': {
      const m = genmask(s.msb, s.lsb);
      return { lo: (w.lo & m.lo) >>> 0, hi: (w.hi & m.hi) >>> 0 };
    }
    default: {
      const impossible: never = s.type;
      throw new Error(`unknown field type ${String(impossible)}`);
    }
  }
}

function isU64(v: unknown): v is U64 {
  return typeof v === 'object' && v !== null && 'lo' in v && 'hi' in v;
}

/** Returns `w` with the field set; throws RangeError naming the field if the value does not fit. */
export function encodeField(w: U64, s: FieldSpec, value: unknown, context: string): U64 {
  const where = `${context}.${s.key}`;
  const width = s.msb - s.lsb + 1;
  switch (s.type) {
    case 'flag':
      if (typeof value !== 'boolean') throw new RangeError(`${where} must be a boolean`);
      return withBits(w, s.msb, s.lsb, value ? 1 : 0);
    case 'uint':
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value >= 2 ** width) {
        throw new RangeError(`${where} = ${String(value)} does not fit in ${width} bits`);
      }
      return withBits(w, s.msb, s.lsb, value);
    case 'addr': {
      const unit = 2 ** s.lsb;
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value >= 2 ** (s.msb + 1) || value % unit !== 0) {
        throw new RangeError(`${where} = ${String(value)} is not a multiple of 2^${s.lsb} below 2^${s.msb + 1}`);
      }
      return withBits(w, s.msb, s.lsb, value / unit);
    }
    case 'u64': {
      if (!isU64(value)) throw new RangeError(`${where} must be a U64`);
      const m = genmask(s.msb, s.lsb);
      if ((value.lo & ~m.lo) !== 0 || (value.hi & ~m.hi) !== 0) throw new RangeError(`${where} has bits outside ${s.msb}:${s.lsb}`);
      return { lo: ((w.lo & ~m.lo) | value.lo) >>> 0, hi: ((w.hi & ~m.hi) | value.hi) >>> 0 };
    }
    default: {
      const impossible: never = s.type;
      throw new Error(`unknown field type ${String(impossible)}`);
    }
  }
}

export function decodeFields(words: readonly U64[], specs: readonly FieldSpec[]): Record<string, FieldValue> {
  const out: Record<string, FieldValue> = {};
  for (const s of specs) out[s.key] = decodeField(words, s);
  return out;
}

/** Writes every field of `specs` from `obj` into `words` (in place). */
export function encodeFields(words: U64[], specs: readonly FieldSpec[], obj: object, context: string): void {
  const rec = obj as Record<string, unknown>;
  for (const s of specs) {
    const dw = words[s.dw];
    if (dw === undefined) throw new RangeError(`${context}: missing doubleword ${s.dw}`);
    words[s.dw] = encodeField(dw, s, rec[s.key], context);
  }
}

/** The bits the layout gives a meaning to, per doubleword. */
export function definedMask(specs: readonly FieldSpec[], words: number): U64[] {
  const mask: U64[] = Array.from({ length: words }, () => ZERO64);
  for (const s of specs) {
    const m = mask[s.dw];
    if (m !== undefined) mask[s.dw] = u64Or(m, genmask(s.msb, s.lsb));
  }
  return mask;
}

export function zeroWords(n: number): U64[] {
  return Array.from({ length: n }, () => ZERO64);
}

// --- 32-bit register helpers -----------------------------------------------------------------

export function get32(value: number, msb: number, lsb: number): number {
  return bits(value >>> 0, 0, msb, lsb);
}

export function bit32(value: number, n: number): boolean {
  return ((value >>> n) & 1) === 1;
}

/** Sets bits msb..lsb of a 32-bit register value; throws if the field does not fit. */
export function put32(acc: number, msb: number, lsb: number, value: number, name: string): number {
  const width = msb - lsb + 1;
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** width) throw new RangeError(`${name} = ${value} does not fit in ${width} bits`);
  return withBits({ lo: acc >>> 0, hi: 0 }, msb, lsb, value).lo;
}

export function putBit32(acc: number, n: number, on: boolean): number {
  return on ? (acc | (1 << n)) >>> 0 : (acc & ~(1 << n)) >>> 0;
}
