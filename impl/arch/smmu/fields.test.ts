import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bits, u64 } from '../u64.js';
import { checkLayout, decodeField, encodeField, f, flag, put32 } from './fields.js';
import { arbU32 } from './testing.js';

describe('field helpers', () => {
  it('reads a field straddling the halves with bit 63 set as a positive number (u64.bits fix)', () => {
    // Address[63:12] of a command: 52 bits, top bit set.
    expect(bits(0, 0x8000_0000, 63, 12)).toBe(2 ** 51);
    expect(decodeField([u64(0xffff_f000, 0xffff_ffff)], f('a', 0, 63, 12))).toBe(2 ** 52 - 1);
    fc.assert(
      fc.property(arbU32, arbU32, (lo, hi) => {
        const v = bits(lo, hi, 63, 11);
        expect(v).toBeGreaterThanOrEqual(0);
        expect(v).toBe(hi * 2 ** 21 + Math.floor(lo / 2 ** 11));
      }),
    );
  });

  it('rejects overlapping or out-of-range layouts', () => {
    expect(() => checkLayout('x', [f('a', 0, 7, 0), f('b', 0, 8, 7)], 1)).toThrow(/overlaps/);
    expect(() => checkLayout('x', [f('a', 1, 7, 0)], 1)).toThrow(/bad position/);
    expect(() => checkLayout('x', [f('a', 0, 55, 4, 'addr')], 1)).toThrow(/not exact/);
    expect(() => checkLayout('x', [f('a', 0, 7, 0), flag('b', 0, 8)], 1)).not.toThrow();
  });

  it('refuses values that do not fit their field', () => {
    const w0 = u64(0, 0);
    expect(() => encodeField(w0, f('a', 0, 3, 0), 16, 'T')).toThrow(/T\.a = 16/);
    expect(() => encodeField(w0, f('a', 0, 3, 0), -1, 'T')).toThrow(RangeError);
    expect(() => encodeField(w0, f('a', 0, 3, 0), 1.5, 'T')).toThrow(RangeError);
    expect(() => encodeField(w0, flag('a', 0, 3), 1, 'T')).toThrow(/boolean/);
    expect(() => encodeField(w0, f('a', 0, 63, 12, 'u64'), u64(1, 0), 'T')).toThrow(/outside/);
    expect(() => encodeField(w0, f('a', 0, 51, 12, 'addr'), 0x1800, 'T')).toThrow(/multiple/);
    expect(encodeField(w0, f('a', 0, 51, 12, 'addr'), 0x2000, 'T')).toEqual(u64(0x2000, 0));
    expect(() => put32(0, 3, 0, 16, 'R')).toThrow(RangeError);
  });
});
