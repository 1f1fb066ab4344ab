/**
 * The SMMU side of PCIe ATS (smmuv3-arch.md §3.5; IHI 0070 §3.9.1): what a Translation Request
 * returns, the endpoint interface through which CMD_ATC_INV reaches a device's ATC, and the
 * address span an ATC_INV names.
 */
import { type CommandOf } from '../../arch/smmu/commands.js';
import { TWO_POW_32 } from '../../arch/u64.js';

/** An ATS Invalidate Request as it reaches the endpoint. */
export interface AtcInvalidation {
  readonly sid: number;
  /** PASID-tagged invalidation (SSV): only affects that PASID's entries (and Global ones if `global`). */
  readonly ssv: boolean;
  readonly ssid: number;
  readonly global: boolean;
  /** First address and length of the naturally aligned span (§3.5); the whole space for Size 52. */
  readonly base: number;
  readonly size: number;
}

/** A device behind the SMMU that can hold ATS translations. */
export interface AtsEndpoint {
  readonly sid: number;
  /**
   * Delivers an ATS Invalidate Request. Returns false when the endpoint does not complete it in
   * time: the SMMU then reports CERROR_ATC_INV_SYNC at the next CMD_SYNC (SPEC 3.9.1.4).
   */
  atcInvalidate(inv: AtcInvalidation): boolean;
}

/** Response to a Translation Request (SPEC 3.9.1.2). */
export type AtsResponse =
  /** Success: R/W granted for [base, base + size) → [pa, pa + size). R = W = 0 for faults. */
  | { readonly kind: 'success'; readonly base: number; readonly size: number; readonly pa: number; readonly read: boolean; readonly write: boolean }
  /** Unsupported Request: ATS disabled for the stream (SMMUEN = 0, EATS = 0, bypass or abort STE). */
  | { readonly kind: 'ur'; readonly reason: string }
  /** Completer Abort: a configuration error (bad StreamID, STE fetch abort, ILLEGAL STE, walk abort, TLB conflict). */
  | { readonly kind: 'ca'; readonly reason: string };

/** The span ATC_INV(Address, Size) covers: 4 KiB × 2^Size, aligned; Size 52 is everything (§3.5). */
export function atcInvalidationOf(cmd: CommandOf<'ATC_INV'>): AtcInvalidation {
  if (cmd.size >= 52) return { sid: cmd.sid, ssv: cmd.ssv, ssid: cmd.ssid, global: cmd.global, base: 0, size: 2 ** 64 };
  const span = 4096 * 2 ** cmd.size;
  // Addresses above 2^53 lose their low bits as numbers; the span arithmetic stays conservative
  // because the whole aligned span is invalidated.
  const addr = cmd.address.hi * TWO_POW_32 + cmd.address.lo;
  return { sid: cmd.sid, ssv: cmd.ssv, ssid: cmd.ssid, global: cmd.global, base: addr - (addr % span), size: span };
}
