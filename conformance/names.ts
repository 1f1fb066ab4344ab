/**
 * Names shared by traces, campaign results and reports, so the same return value reads the same
 * everywhere (and report tables can be merged across shards by name).
 */
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
