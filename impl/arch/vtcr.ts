/**
 * VTCR_EL2 (stage2-pgtable.md §1.7): T0SZ [5:0], SL0 [7:6], IRGN0 [9:8], ORGN0 [11:10],
 * SH0 [13:12], TG0 [15:14], PS [18:16], VS 19, HA 21, HD 22, RES1 31, DS 32, SL2 33.
 */
import { type U64, bits, u64, withBits } from './u64.js';

export interface Vtcr {
  readonly t0sz: number;
  readonly sl0: number;
  readonly irgn0: number;
  readonly orgn0: number;
  readonly sh0: number;
  readonly tg0: number;
  readonly ps: number;
  readonly vs: boolean;
  readonly ha: boolean;
  readonly hd: boolean;
  readonly ds: boolean;
  readonly sl2: boolean;
}

export function encodeVtcr(v: Vtcr): U64 {
  let r = u64(1 << 31, 0);
  r = withBits(r, 5, 0, v.t0sz);
  r = withBits(r, 7, 6, v.sl0);
  r = withBits(r, 9, 8, v.irgn0);
  r = withBits(r, 11, 10, v.orgn0);
  r = withBits(r, 13, 12, v.sh0);
  r = withBits(r, 15, 14, v.tg0);
  r = withBits(r, 18, 16, v.ps);
  r = withBits(r, 19, 19, v.vs ? 1 : 0);
  r = withBits(r, 21, 21, v.ha ? 1 : 0);
  r = withBits(r, 22, 22, v.hd ? 1 : 0);
  r = withBits(r, 32, 32, v.ds ? 1 : 0);
  r = withBits(r, 33, 33, v.sl2 ? 1 : 0);
  return r;
}

export function decodeVtcr(value: U64): Vtcr {
  const { lo, hi } = value;
  return {
    t0sz: bits(lo, hi, 5, 0),
    sl0: bits(lo, hi, 7, 6),
    irgn0: bits(lo, hi, 9, 8),
    orgn0: bits(lo, hi, 11, 10),
    sh0: bits(lo, hi, 13, 12),
    tg0: bits(lo, hi, 15, 14),
    ps: bits(lo, hi, 18, 16),
    vs: bits(lo, hi, 19, 19) === 1,
    ha: bits(lo, hi, 21, 21) === 1,
    hd: bits(lo, hi, 22, 22) === 1,
    ds: bits(lo, hi, 32, 32) === 1,
    sl2: bits(lo, hi, 33, 33) === 1,
  };
}
