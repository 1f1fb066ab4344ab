/**
 * The regression corpus file format, version 1 (README "Regression corpus"). A file is plain
 * JSON: a machine, a design variant, an operation list, the verdict a replay must reach, and where
 * the sequence came from. Decoding is io-ts throughout; every error names the field path.
 *
 * A file may name a test-only injected bug (`bug`): the corpus replays against the real system,
 * so a counterexample for an injected bug only reproduces with the bug put back, and such files
 * prove the checks still catch every known bug.
 */
import { isLeft } from 'fp-ts/lib/Either.js';
import * as t from 'io-ts';
import { P, match } from 'ts-pattern';
import { ALL_BUGS } from '../properties/bugs/index.js';
import { decodeMachine, decodeOperations, decodeSchedule, formatErrors, shortJson } from '../properties/codecs.js';
import { type ScheduledHardware } from '../properties/dma.js';
import { type MachineConfig } from '../properties/machine.js';
import { DEFAULT_DESIGN, designNames } from './designs.js';
import { checkNames } from './names.js';
import { parseJsonInput } from './input-file.js';
import { namedMachine } from './machines.js';
import { type StepOp } from './trace.js';

export const CORPUS_FORMAT = 1;

export type Verdict = { readonly passes: true } | { readonly violates: string };

export interface Provenance {
  /** How it was found: "hand-written", or the campaign command line. */
  readonly how: string;
  /** YYYY-MM-DD. */
  readonly date: string;
  /** One line: what the sequence shows. */
  readonly description: string;
  /** The fast-check seed of the run that found it. */
  readonly seed?: number;
  /** fast-check's counterexample path for that seed (before the flat-list minimisation). */
  readonly path?: string;
  /** The campaign's run number and base seed. */
  readonly run?: number;
  readonly baseSeed?: number;
  /** Operations before shrinking. */
  readonly originalLength?: number;
}

export interface CorpusEntry {
  readonly format: typeof CORPUS_FORMAT;
  readonly design: string;
  readonly bug?: string;
  readonly config: MachineConfig;
  readonly expect: Verdict;
  readonly provenance: Provenance;
  /** Optional: the model's return value of every operation (retName), asserted on replay. */
  readonly returns?: readonly string[];
  readonly operations: readonly StepOp[];
  /**
   * Optional: hardware actions run at the yield points of the steps (RunOptions.schedule), for
   * counterexamples that need a race; consumed in order across the whole run.
   */
  readonly schedule?: readonly ScheduledHardware[];
}

const OneLine = new t.Type<string, string, unknown>(
  'one line of text',
  (u): u is string => typeof u === 'string' && u.trim() !== '' && !/[\r\n]/.test(u) && u.length <= 300,
  (u, c) => (typeof u === 'string' && u.trim() !== '' && !/[\r\n]/.test(u) && u.length <= 300 ? t.success(u) : t.failure(u, c, 'one non-empty line of at most 300 characters')),
  t.identity,
);

const DateText = new t.Type<string, string, unknown>(
  'date',
  (u): u is string => typeof u === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(u),
  (u, c) => (typeof u === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(u) && !Number.isNaN(Date.parse(u)) ? t.success(u) : t.failure(u, c, 'a date YYYY-MM-DD')),
  t.identity,
);

const NonNegativeInt = new t.Type<number, number, unknown>(
  'non-negative integer',
  (u): u is number => typeof u === 'number' && Number.isSafeInteger(u) && u >= 0,
  (u, c) => (typeof u === 'number' && Number.isSafeInteger(u) && u >= 0 ? t.success(u) : t.failure(u, c, 'a non-negative integer')),
  t.identity,
);

/**
 * A fast-check path, or "guided": a `verify --guided` run mutated from the campaign's corpus,
 * which no fast-check path regenerates (its operations are the record; conformance/campaign.ts).
 */
const isProvenancePath = (u: unknown): u is string => typeof u === 'string' && (u === 'guided' || /^\d+(:\d+)*$/.test(u));
const FastCheckPath = new t.Type<string, string, unknown>(
  'fast-check path',
  isProvenancePath,
  (u, c) => (isProvenancePath(u) ? t.success(u) : t.failure(u, c, 'a fast-check path like "0:3:1", or "guided"')),
  t.identity,
);

/** A name from a list known at run time (checks, designs, bugs), so the file names it by string. */
function oneOf(what: string, names: () => readonly string[]): t.Type<string, string, unknown> {
  return new t.Type<string, string, unknown>(
    what,
    (u): u is string => typeof u === 'string' && names().includes(u),
    (u, c) => (typeof u === 'string' && names().includes(u) ? t.success(u) : t.failure(u, c, `${what}: one of ${names().join(', ')}`)),
    t.identity,
  );
}

export const CheckNameText = oneOf('a check name', checkNames);
const DesignName = oneOf('a design variant', designNames);
const BugName = oneOf('an injected bug', () => ALL_BUGS.map((b) => b.name));

/** `{"passes": true}` or `{"violates": "<check>"}`, nothing else. */
const VerdictCodec = new t.Type<Verdict, Verdict, unknown>(
  'verdict',
  (u): u is Verdict => typeof u === 'object' && u !== null && ((u as { passes?: unknown }).passes === true || typeof (u as { violates?: unknown }).violates === 'string'),
  (u, c) => {
    const shape = '{"passes": true} or {"violates": "<check name>"}';
    if (typeof u !== 'object' || u === null || Array.isArray(u)) return t.failure(u, c, shape);
    const keys = Object.keys(u);
    const o = u as Record<string, unknown>;
    if (keys.length === 1 && o.passes === true) return t.success({ passes: true });
    if (keys.length === 1 && keys[0] === 'violates') {
      const check = CheckNameText.validate(o.violates, [...c, { key: 'violates', type: CheckNameText, actual: o.violates }]);
      return isLeft(check) ? check : t.success({ violates: check.right });
    }
    return t.failure(u, c, shape);
  },
  t.identity,
);

const ProvenanceCodec = t.intersection([
  t.type({ how: OneLine, date: DateText, description: OneLine }),
  t.partial({ seed: NonNegativeInt, path: FastCheckPath, run: NonNegativeInt, baseSeed: NonNegativeInt, originalLength: NonNegativeInt }),
]);

const EnvelopeCodec = t.intersection([
  t.type({ format: t.literal(CORPUS_FORMAT), config: t.unknown, expect: VerdictCodec, provenance: ProvenanceCodec, operations: t.unknown }),
  t.partial({ design: DesignName, bug: BugName, returns: t.array(t.string), schedule: t.unknown }),
]);

const TOP_KEYS = ['format', 'design', 'bug', 'config', 'expect', 'provenance', 'returns', 'operations', 'schedule'];
const PROVENANCE_KEYS = ['how', 'date', 'description', 'seed', 'path', 'run', 'baseSeed', 'originalLength'];

function unknownKeys(value: unknown, allowed: readonly string[], path: string): string[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return [];
  return Object.keys(value)
    .filter((k) => !allowed.includes(k))
    .map((k) => `${path === '' ? '' : path + '.'}${k}: unknown field (expected one of ${allowed.join(', ')})`);
}

export type DecodedEntry = { ok: true; value: CorpusEntry } | { ok: false; errors: string[] };

/** Decodes a parsed corpus file; errors are "field.path: expected ..., got ..." lines. */
export function decodeCorpusEntry(json: unknown): DecodedEntry {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return { ok: false, errors: ['(root): expected a corpus object {"format": 1, ...}'] };
  const format = (json as { format?: unknown }).format;
  if (format !== CORPUS_FORMAT) return { ok: false, errors: [`format: expected ${CORPUS_FORMAT} (the corpus format version), got ${shortJson(format)}`] };
  const provenance = Object.hasOwn(json, 'provenance') ? (json as { provenance?: unknown }).provenance : undefined;
  const extra = [...unknownKeys(json, TOP_KEYS, ''), ...unknownKeys(provenance, PROVENANCE_KEYS, 'provenance')];
  if (extra.length > 0) return { ok: false, errors: extra };
  const envelope = EnvelopeCodec.decode(json);
  if (isLeft(envelope)) return { ok: false, errors: [...new Set(formatErrors(envelope.left))].slice(0, 8) };
  const e = envelope.right;
  const machine = decodeMachine(e.config);
  if (!machine.ok) return { ok: false, errors: machine.errors.map((m) => `config.${m}`) };
  const bugError = e.bug === undefined ? undefined : bugMachineError(e.bug, machine.value);
  if (bugError !== undefined) return { ok: false, errors: [`bug: ${bugError}`] };
  const ops = decodeOperations(e.operations, 'operations');
  if (!ops.ok) return ops;
  const schedule = e.schedule === undefined ? undefined : decodeSchedule(e.schedule);
  if (schedule !== undefined && !schedule.ok) return schedule;
  if (e.returns !== undefined && e.returns.length !== ops.value.length) {
    return { ok: false, errors: [`returns: expected one return value per operation (${ops.value.length}), got ${e.returns.length}`] };
  }
  const entry: CorpusEntry = {
    format: CORPUS_FORMAT,
    design: e.design ?? DEFAULT_DESIGN,
    ...(e.bug === undefined ? {} : { bug: e.bug }),
    config: machine.value,
    expect: e.expect,
    provenance: e.provenance,
    ...(e.returns === undefined ? {} : { returns: e.returns }),
    operations: ops.value,
    ...(schedule === undefined ? {} : { schedule: schedule.value }),
  };
  return { ok: true, value: entry };
}

/**
 * Why the test-only bug `name` cannot be injected on `machine`, or undefined: a bug written
 * against a machine with an SMMU replaces a part of the IOMMU, which a machine without one lacks.
 */
export function bugMachineError(name: string, machine: MachineConfig): string | undefined {
  const bug = ALL_BUGS.find((b) => b.name === name);
  if (bug === undefined) return `unknown bug ${JSON.stringify(name)}`;
  const home = bug.machine === undefined ? undefined : namedMachine(bug.machine);
  if (home?.smmu !== undefined && machine.smmu === undefined) return `${name} is a bug of the SMMU driver: it needs a machine with an SMMU (config.smmu; e.g. machine ${bug.machine})`;
  return undefined;
}

/** Parses and decodes a corpus file's text; errors are prefixed with `name`. */
export function parseCorpusText(name: string, text: string): DecodedEntry {
  const parsed = parseJsonInput(name, text);
  if (!parsed.ok) return { ok: false, errors: [parsed.error] };
  const r = decodeCorpusEntry(parsed.json);
  return r.ok ? r : { ok: false, errors: r.errors.map((m) => `${name}: ${m}`) };
}

/**
 * The file text: fixed key order, one operation per line, so a corpus diff in review shows which
 * step changed.
 */
export function encodeCorpusEntry(entry: CorpusEntry): string {
  const lines: string[] = ['{'];
  const field = (key: string, value: unknown) => lines.push(`  ${JSON.stringify(key)}: ${JSON.stringify(value)},`);
  field('format', entry.format);
  field('design', entry.design);
  if (entry.bug !== undefined) field('bug', entry.bug);
  field('config', entry.config);
  field('expect', entry.expect);
  lines.push('  "provenance": {');
  const p = entry.provenance;
  const pKeys = PROVENANCE_KEYS.filter((k) => (p as unknown as Record<string, unknown>)[k] !== undefined);
  pKeys.forEach((k, i) => lines.push(`    ${JSON.stringify(k)}: ${JSON.stringify((p as unknown as Record<string, unknown>)[k])}${i === pKeys.length - 1 ? '' : ','}`));
  lines.push('  },');
  if (entry.returns !== undefined) field('returns', entry.returns);
  lines.push('  "operations": [');
  entry.operations.forEach((op, i) => lines.push(`    ${JSON.stringify(op)}${i === entry.operations.length - 1 ? '' : ','}`));
  const schedule = entry.schedule;
  if (schedule === undefined) {
    lines.push('  ]', '}');
  } else {
    lines.push('  ],', '  "schedule": [');
    schedule.forEach((hw, i) => lines.push(`    ${JSON.stringify(hw)}${i === schedule.length - 1 ? '' : ','}`));
    lines.push('  ]', '}');
  }
  return lines.join('\n') + '\n';
}

export function isViolates(v: Verdict): v is { readonly violates: string } {
  return 'violates' in v;
}

/** "passes" or "violates CHECK", as traces and reports print a verdict. */
export function verdictText(v: Verdict): string {
  return match(v)
    .with({ passes: true }, () => 'passes')
    .with({ violates: P.string }, (x) => `violates ${x.violates}`)
    .exhaustive();
}

/** Does a run in which `fired` checks failed reach the verdict? */
export function verdictHolds(v: Verdict, fired: readonly string[]): boolean {
  return match(v)
    .with({ passes: true }, () => fired.length === 0)
    .with({ violates: P.string }, (x) => fired.includes(x.violates))
    .exhaustive();
}
