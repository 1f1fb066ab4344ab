/**
 * Names shared by traces, campaign results and reports, so the same return value reads the same
 * everywhere (and report tables can be merged across shards by name).
 */
import { decodeCommand, describeCommand } from '../impl/arch/smmu/commands.js';
import { registerAt } from '../impl/arch/smmu/registers.js';
import { u64 } from '../impl/arch/u64.js';
import { errnoName } from '../model/index.js';
import { ALL_CHECKS } from '../properties/runner.js';

const HOST_ACCESS_NAMES = ['OK', 'ABORT', 'EMULATED', 'STALL'];

/** A return value as text: errno names for hypercalls, HOST_ACCESS_* names for host_access. */
export function retName(kind: string, value: number | 'panic'): string {
  if (value === 'panic') return 'PANIC';
  if (kind === 'host_access') return HOST_ACCESS_NAMES[value] ?? String(value);
  return errnoName(value);
}

/** Column order for return codes: success, errnos by name, access outcomes, anything else. */
export function compareRetNames(a: string, b: string): number {
  const rank = (n: string) => (n === '0' ? 0 : n.startsWith('-E') ? 1 : HOST_ACCESS_NAMES.includes(n) ? 2 + HOST_ACCESS_NAMES.indexOf(n) : 10);
  return rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0);
}

/** The checks the runner knows, in its order. Formats name checks by string so new ones just work. */
export function checkNames(): string[] {
  return [...ALL_CHECKS];
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/**
 * One step's arguments as a reviewer reads them: register names instead of frame offsets, commands
 * decoded by opcode and fields, addresses and page numbers in hex (issue 17 item 2). Traces show
 * this next to the JSON; the JSON stays the replayable form.
 */
export function describeStep(op: { readonly kind: string } & Readonly<Record<string, unknown>>): string {
  const num = (k: string): number | undefined => (typeof op[k] === 'number' ? (op[k] as number) : undefined);
  const parts: string[] = [];
  switch (op.kind) {
    case 'host_mmio_write':
    case 'host_mmio_read': {
      const offset = num('offset') ?? 0;
      const reg = registerAt(offset);
      const name = reg === undefined ? `offset ${hex(offset)} (no register)` : `${reg.name}${reg.byteOffset === 4 ? '[63:32]' : ''}`;
      const size = (num('size') ?? 4) * 8;
      if (op.kind === 'host_mmio_read') return `${size}-bit read of ${name}`;
      const value = size === 64 ? (num('valueHi') ?? 0) * 2 ** 32 + (num('value') ?? 0) : (num('value') ?? 0);
      return `${size}-bit write ${name} ← ${hex(value)}`;
    }
    case 'host_write_cmd': {
      const w = (op.words as readonly number[] | undefined) ?? [0, 0, 0, 0];
      const cmd = decodeCommand([u64(w[0] ?? 0, w[1] ?? 0), u64(w[2] ?? 0, w[3] ?? 0)]);
      const count = num('count');
      return `${describeCommand(cmd)}${count !== undefined && count > 1 ? ` ×${count}` : ''}`;
    }
    default:
      for (const [k, v] of Object.entries(op)) {
        if (k === 'kind' || k === 'smmu') continue;
        parts.push(`${k} ${typeof v === 'number' && (k === 'pfn' || k === 'addr' || k === 'pa' || k === 'gfn' || k === 'iova') ? hex(v) : Array.isArray(v) ? `[${v.map((x) => (typeof x === 'number' ? hex(x) : String(x))).join(', ')}]` : String(v)}`);
      }
      return parts.join(', ');
  }
}
