/**
 * A small argument parser shared by the CLIs: `--name value`, `--name=value` and boolean flags,
 * positional arguments kept in order. Every mistake is a one-line message for exit code 2.
 */
import { isAbsolute, resolve } from 'node:path';
import { parseSeed } from '../conformance/seeds.js';

export type ArgSpec = Readonly<Record<string, 'flag' | 'value'>>;

export type ParsedArgs =
  | { readonly ok: true; readonly values: ReadonlyMap<string, string>; readonly flags: ReadonlySet<string>; readonly positional: readonly string[] }
  | { readonly ok: false; readonly error: string };

export function parseArgs(argv: readonly string[], spec: ArgSpec): ParsedArgs {
  const values = new Map<string, string>();
  const flags = new Set<string>();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
    // Own properties only: --constructor or --__proto__ is an unknown option, not a prototype member.
    const kind = Object.hasOwn(spec, name) ? spec[name] : undefined;
    if (kind === undefined) return { ok: false, error: `unknown option --${name}` };
    if (kind === 'flag') {
      if (eq >= 0) return { ok: false, error: `--${name} takes no value` };
      flags.add(name);
      continue;
    }
    let value: string | undefined;
    if (eq >= 0) value = arg.slice(eq + 1);
    else {
      value = argv[i + 1];
      i++;
    }
    if (value === undefined || value === '' || (eq < 0 && value.startsWith('--'))) return { ok: false, error: `--${name} needs a value` };
    if (values.has(name)) return { ok: false, error: `--${name} given twice` };
    values.set(name, value);
  }
  return { ok: true, values, flags, positional };
}

/** A decimal integer in [min, max], or an error line naming the option. */
export function intOption(values: ReadonlyMap<string, string>, name: string, min: number, max: number): { ok: true; value: number | undefined } | { ok: false; error: string } {
  const raw = values.get(name);
  if (raw === undefined) return { ok: true, value: undefined };
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) return { ok: false, error: `--${name}: expected an integer in [${min}, ${max}], got ${JSON.stringify(raw)}` };
  return { ok: true, value: Number(raw) };
}

/** `--seed`: decimal or 0x-hex below 2^32, the same syntax for every command (conformance/seeds.ts). */
export function seedOption(values: ReadonlyMap<string, string>): { ok: true; value: number | undefined } | { ok: false; error: string } {
  const raw = values.get('seed');
  if (raw === undefined) return { ok: true, value: undefined };
  const seed = parseSeed(raw);
  return seed === undefined ? { ok: false, error: `--seed: expected an integer in [0, 2^32) (decimal or 0x-hex), got ${JSON.stringify(raw)}` } : { ok: true, value: seed };
}

/**
 * A path the user typed, resolved from the shell's directory: `npm run` starts every script in the
 * package root and leaves the caller's directory in INIT_CWD.
 */
export function userPath(path: string): string {
  return isAbsolute(path) ? path : resolve(process.env.INIT_CWD ?? process.cwd(), path);
}

/** The first error, and how many more there are: a rejection is one line. */
export function oneLine(errors: readonly string[]): string {
  const first = (errors[0] ?? 'bad input').replace(/[\r\n]+/g, ' ');
  return errors.length > 1 ? `${first} (and ${errors.length - 1} more)` : first;
}
