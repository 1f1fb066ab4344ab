/**
 * `npm run replay -- FILE.json [--json]`: runs the operations of FILE on the model and on a
 * freshly booted system, one line per operation (operation, model ret, system ret, verdict),
 * and the violated checks. FILE holds `{ "operations": [...] }`, optionally `"config"` (a machine;
 * default: the default machine in README). Exit 0 clean, 1 mismatch or violation, 2 usage error
 * or a bad file.
 */
import { readFileSync } from 'node:fs';
import { type Operation, errnoName } from '../model/index.js';
import { decodeMachine, decodeOperations } from '../properties/codecs.js';
import { type MachineConfig, defaultMachine } from '../properties/machine.js';
import { type RunOptions, runOperations } from '../properties/runner.js';

const USAGE = `usage: npm run replay -- FILE.json [--json]

FILE.json: { "operations": [ { "kind": "host_donate_hyp", "pfn": 262144, "nrPages": 1 }, ... ],
             "config": { ...optional machine, see README } }
--json     print { "results": [{ "op", "modelRet", "systemRet" }], "violations": [...] }
exit code: 0 clean, 1 mismatch or violation, 2 usage error or bad file`;

export interface ReplayInput {
  readonly operations: Operation[];
  readonly machine: MachineConfig;
}

/** Reads and validates a replay file; errors are user-facing lines. */
export function loadReplayFile(path: string): { ok: true; input: ReplayInput } | { ok: false; errors: string[] } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    return { ok: false, errors: [`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`] };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return { ok: false, errors: [`${path} is not valid JSON: ${(e as Error).message}`] };
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return { ok: false, errors: [`${path}: expected an object with an "operations" array`] };
  const ops = decodeOperations((json as { operations?: unknown }).operations);
  if (!ops.ok) return { ok: false, errors: ops.errors.map((e) => `${path}: ${e}`) };
  let machine = defaultMachine();
  const config = (json as { config?: unknown }).config;
  if (config !== undefined) {
    const m = decodeMachine(config);
    if (!m.ok) return { ok: false, errors: m.errors.map((e) => `${path}: config.${e}`) };
    machine = m.value;
  }
  return { ok: true, input: { operations: ops.value, machine } };
}

function ret(value: number | 'panic', kind: string): string {
  if (value === 'panic') return 'PANIC';
  if (kind === 'host_access') return ['OK', 'ABORT', 'EMULATED', 'STALL'][value] ?? String(value);
  return errnoName(value);
}

export function main(argv: string[], options: RunOptions = {}): number {
  const files = argv.filter((a) => !a.startsWith('--'));
  const flags = argv.filter((a) => a.startsWith('--'));
  if (flags.includes('--help')) {
    console.log(USAGE);
    return 0;
  }
  const unknown = flags.filter((f) => f !== '--json');
  if (files.length !== 1 || unknown.length > 0) {
    console.error(unknown.length > 0 ? `unknown option ${unknown[0]}\n${USAGE}` : USAGE);
    return 2;
  }
  const loaded = loadReplayFile(files[0] as string);
  if (!loaded.ok) {
    for (const e of loaded.errors) console.error(e);
    return 2;
  }
  const { operations, machine } = loaded.input;
  const result = runOperations(machine, operations, { ...options, continueAfterViolation: true });
  const violations = result.steps.flatMap((s) => s.violations.map((v) => ({ step: s.index, check: v.check, message: v.message })));
  if (flags.includes('--json')) {
    console.log(JSON.stringify({ results: result.steps.map((s) => ({ op: s.op, modelRet: s.modelRet, systemRet: s.systemRet })), violations }));
  } else {
    for (const s of result.steps) {
      const verdict = s.violations.length === 0 ? 'ok' : 'VIOLATION';
      const { kind, ...args } = s.op;
      console.log(`${String(s.index).padStart(4)}  ${kind.padEnd(30)} ${JSON.stringify(args).padEnd(60)} model ${ret(s.modelRet, kind).padEnd(10)} system ${ret(s.systemRet, kind).padEnd(10)} ${verdict}`);
      for (const v of s.violations) console.log(`        [${v.check}] ${v.message}`);
    }
    console.log(violations.length === 0 ? `${result.steps.length} operations, no violation` : `${violations.length} violation(s) in ${new Set(violations.map((v) => v.step)).size} step(s)`);
  }
  return violations.length === 0 ? 0 : 1;
}

if (process.argv[1] !== undefined && /replay\.[jt]s$/.test(process.argv[1])) process.exitCode = main(process.argv.slice(2));
