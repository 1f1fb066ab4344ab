/**
 * A differential trace: what an SMMU sees from software and devices, as plain data that both
 * backends (QEMU over qtest, the project's model) replay (qemu-smmuv3-peer.md §6.2).
 *
 * - `reg32`/`reg64`: a store to an SMMU register, by offset into the 128 KiB frame (so the
 *   trace is independent of where the board puts the SMMU). 64-bit values are two u32 halves.
 * - `mem64`: a store to RAM (tables, STEs, queue entries, data), by physical address.
 * - `dmaw`: device `dev` writes the 4-byte `tag` to `iova`. It runs as three steps on both sides:
 *   the tag is stored at the helper SRC page, the device reads SRC (IOVA `helper.srcIova`) into
 *   its buffer, then writes the buffer to `iova`. `dmar`: the device reads `iova` into its buffer
 *   and writes the buffer to the helper SINK page, which is then read. The helper transfers are
 *   real transactions on both sides (their events are compared too); traces keep them mapped.
 * - `evcons`: software consumes every event record (EVTQ_CONS := EVTQ_PROD, on each side).
 *
 * Devices are indices into the board's edu list: StreamIDs come from the board, never the trace.
 */
import * as t from 'io-ts';
import { isRight } from 'fp-ts/lib/Either.js';
import { match } from 'ts-pattern';
import { REG } from '../../impl/arch/smmu/registers.js';
import { parseJsonInput } from '../input-file.js';

export type Op =
  | { readonly t: 'reg32'; readonly off: number; readonly v: number }
  | { readonly t: 'reg64'; readonly off: number; readonly lo: number; readonly hi: number }
  | { readonly t: 'mem64'; readonly pa: number; readonly lo: number; readonly hi: number }
  | { readonly t: 'dmaw'; readonly dev: number; readonly iova: number; readonly tag: number }
  | { readonly t: 'dmar'; readonly dev: number; readonly iova: number }
  | { readonly t: 'evcons' };

export interface Helper {
  readonly srcIova: number;
  readonly srcPa: number;
  readonly sinkIova: number;
  readonly sinkPa: number;
}

export interface Trace {
  readonly name: string;
  /** Whether it programs a 2-level stream table (QEMU keeps that mode: run it on a fresh QEMU after). */
  readonly twoLevel: boolean;
  readonly helper: Helper;
  readonly ops: readonly Op[];
}

const U32 = t.refinement(t.number, (n) => Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff, 'u32');
const Addr = t.refinement(t.number, (n) => Number.isSafeInteger(n) && n >= 0, 'address');
// A trace file may come from anywhere (README "Input limits"): register offsets stay inside the
// SMMU's 128 KiB frame and are aligned to the access size, RAM stores are 8-byte aligned, device
// transfers are 4-byte aligned (one edu transfer = one translation) and name one of at most 16
// devices (the board's edu count is checked when the trace runs).
const FRAME = 0x2_0000;
const RegOff = (align: number): t.Type<number> => t.refinement(U32, (n) => n < FRAME && n % align === 0, `offset < 0x20000, ${align}-aligned`);
const Aligned = (align: number): t.Type<number> => t.refinement(Addr, (n) => n % align === 0 && n < 2 ** 52, `address < 2^52, ${align}-aligned`);
const Dev = t.refinement(U32, (n) => n < 16, 'device index < 16');
const OpCodec = t.union([
  t.type({ t: t.literal('reg32'), off: RegOff(4), v: U32 }),
  t.type({ t: t.literal('reg64'), off: RegOff(8), lo: U32, hi: U32 }),
  t.type({ t: t.literal('mem64'), pa: Aligned(8), lo: U32, hi: U32 }),
  t.type({ t: t.literal('dmaw'), dev: Dev, iova: Aligned(4), tag: U32 }),
  t.type({ t: t.literal('dmar'), dev: Dev, iova: Aligned(4) }),
  t.type({ t: t.literal('evcons') }),
]);
export const TraceCodec = t.type({
  name: t.string,
  twoLevel: t.boolean,
  helper: t.type({ srcIova: Aligned(4), srcPa: Aligned(4), sinkIova: Aligned(4), sinkPa: Aligned(4) }),
  ops: t.array(OpCodec),
});

/** A trace from JSON text (within the project's JSON limits), or an error line prefixed with `name`. */
export function parseTrace(text: string, name = 'trace'): { ok: true; trace: Trace } | { ok: false; error: string } {
  const parsed = parseJsonInput(name, text);
  if (!parsed.ok) return parsed;
  const r = TraceCodec.decode(parsed.json);
  if (!isRight(r)) return { ok: false, error: `${name}: not a trace (see conformance/qemu/trace.ts)` };
  return { ok: true, trace: r.right };
}

const REG_NAME_BY_OFFSET = new Map<number, string>(Object.entries(REG).map(([name, off]) => [off, name]));

export function regName(off: number): string {
  return REG_NAME_BY_OFFSET.get(off) ?? (REG_NAME_BY_OFFSET.get(off - 4) !== undefined ? `${REG_NAME_BY_OFFSET.get(off - 4) ?? ''}+4` : `0x${off.toString(16)}`);
}

const h = (n: number): string => '0x' + n.toString(16);
const h64 = (lo: number, hi: number): string => (hi === 0 ? h(lo >>> 0) : '0x' + (hi >>> 0).toString(16) + (lo >>> 0).toString(16).padStart(8, '0'));

export function formatOp(op: Op): string {
  return match(op)
    .with({ t: 'reg32' }, (o) => `reg32 ${regName(o.off)} = ${h(o.v)}`)
    .with({ t: 'reg64' }, (o) => `reg64 ${regName(o.off)} = ${h64(o.lo, o.hi)}`)
    .with({ t: 'mem64' }, (o) => `mem64 [${h(o.pa)}] = ${h64(o.lo, o.hi)}`)
    .with({ t: 'dmaw' }, (o) => `dmaw dev${o.dev} iova ${h(o.iova)} tag ${h(o.tag)}`)
    .with({ t: 'dmar' }, (o) => `dmar dev${o.dev} iova ${h(o.iova)}`)
    .with({ t: 'evcons' }, () => 'evcons')
    .exhaustive();
}

/** The printed form; runs of more than `fold` consecutive RAM stores are folded into one line (the marked op is never folded). */
export function formatTrace(trace: Trace, mark?: number, fold = 4): string[] {
  const lines: string[] = [];
  const ops = trace.ops;
  for (let i = 0; i < ops.length; ) {
    let j = i;
    while (j < ops.length && ops[j]?.t === 'mem64' && j !== mark) j++;
    if (j - i > fold) {
      const a = ops[i] as Extract<Op, { t: 'mem64' }>;
      const b = ops[j - 1] as Extract<Op, { t: 'mem64' }>;
      lines.push(`  ${String(i).padStart(4)}  mem64 × ${j - i} (ops ${i}–${j - 1}, [${h(a.pa)}] … [${h(b.pa)}])`);
      i = j;
      continue;
    }
    const end = Math.max(j, i + 1);
    for (let k = i; k < end; k++) lines.push(`${k === mark ? '>>' : '  '}${String(k).padStart(4)}  ${formatOp(ops[k] as Op)}`);
    i = end;
  }
  return lines;
}
