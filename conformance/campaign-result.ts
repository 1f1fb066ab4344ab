/**
 * The machine-readable result of a campaign (one shard of it): what ran, how often each operation
 * kind returned each code, which page-state transitions happened, which checks fired when, and the
 * shrunk counterexamples. `verify` writes one per run to reports/out/shards/; `report --merge`
 * decodes them (io-ts) and adds them up. Everything but `timings` and `stoppedBy` is a function of
 * the campaign's parameters when the budget is a number of runs.
 */
import { isLeft } from 'fp-ts/lib/Either.js';
import * as t from 'io-ts';
import { ALL_BUGS } from '../properties/bugs/index.js';
import { formatErrors, shortJson, stepKinds } from '../properties/codecs.js';
import { designNames } from './designs.js';
import { machineNames } from './machines.js';
import { checkNames } from './names.js';

export const RESULT_FORMAT = 1;

const Count = t.refinement(t.number, (n) => Number.isSafeInteger(n) && n >= 0, 'a count');
const Amount = t.refinement(t.number, (n) => Number.isFinite(n) && n >= 0, 'a non-negative number');

/**
 * A record whose keys are names the code knows (kinds, checks, return codes, transitions): the
 * merge adds such records up by key, so a key like "__proto__" or "constructor" must never get
 * that far.
 */
function keyedRecord<C extends t.Mixed>(what: string, valid: (key: string) => boolean, value: C) {
  const inner = t.record(t.string, value);
  return new t.Type<t.TypeOf<typeof inner>, t.OutputOf<typeof inner>, unknown>(
    `record of ${what}`,
    (u): u is t.TypeOf<typeof inner> => inner.is(u),
    (u, c) => {
      if (typeof u === 'object' && u !== null && !Array.isArray(u)) {
        for (const key of Object.keys(u)) {
          if (valid(key)) continue;
          const actual = (u as Record<string, unknown>)[key];
          return t.failure(actual, [...c, { key: '', type: t.unknown, actual: u }, { key, type: t.unknown, actual }], `${what} as the field name`);
        }
      }
      return inner.validate(u, c);
    },
    inner.encode,
  );
}

const isKind = (k: string) => stepKinds().includes(k);
const isRetName = (k: string) => /^(0|-E[A-Z0-9]+|OK|ABORT|EMULATED|STALL|PANIC|-?\d+)$/.test(k);
const isTransition = (k: string) => /^[A-Z_]+>[A-Z_]+$/.test(k);
const Counts = (what: string, valid: (k: string) => boolean) => keyedRecord(what, valid, Count);

const Detection = t.type({
  /** Global run number (the same in every shard layout). */
  run: Count,
  seed: Count,
  step: Count,
  /** Runs and operations this shard executed up to the detection (exact for one shard). */
  runsToDetection: Count,
  opsToDetection: Count,
});

const CheckStats = t.type({ runs: Count, first: t.union([Detection, t.null]) });

export const CounterexampleCodec = t.intersection([
  t.type({
    check: t.string,
    run: Count,
    seed: Count,
    path: t.string,
    originalLength: Count,
    operations: t.array(t.UnknownRecord),
    file: t.union([t.string, t.null]),
  }),
  /**
   * The hardware schedule of an interleaving campaign's counterexample; the kind of the step where
   * the check first fired in the original run (one counterexample per check × step kind).
   */
  t.partial({ schedule: t.array(t.UnknownRecord), stepKind: t.string }),
]);

const CampaignResultFields = t.type({
  format: t.literal(RESULT_FORMAT),
  design: t.string,
  bug: t.union([t.string, t.null]),
  machine: t.string,
  maxOps: Count,
  baseSeed: Count,
  shard: t.type({ index: Count, count: Count }),
  budget: t.type({ runs: t.union([Count, t.null]), timeSeconds: t.union([Amount, t.null]) }),
  stoppedBy: t.union([t.literal('runs'), t.literal('time'), t.literal('interrupt')]),
  runs: Count,
  operations: Count,
  /** Runs with at least one violation, and hypervisor panics. */
  failedRuns: Count,
  panics: Count,
  kinds: Counts('an operation kind', isKind),
  returns: keyedRecord('an operation kind', isKind, Counts('a return code', isRetName)),
  transitions: t.type({ host: Counts('a transition FROM>TO', isTransition), hyp: Counts('a transition FROM>TO', isTransition), guest: Counts('a transition FROM>TO', isTransition) }),
  checks: keyedRecord('a check name', (k) => checkNames().includes(k), CheckStats),
  counterexamples: t.array(CounterexampleCodec),
  timings: t.type({ wallMs: Amount, shrinkMs: Amount, opsPerSecond: Amount }),
});

/** A result; `interleave` is present (true) when the runs carried schedules, `hostDomains` when generation had host DMA-domain steps, `guided` for coverage-guided generation. */
export const CampaignResultCodec = t.intersection([
  CampaignResultFields,
  t.partial({
    interleave: t.literal(true),
    hostDomains: t.literal(true),
    guided: t.literal(true),
    /** Distinct coverage keys reached (conformance/coverage.ts), and their hashes so shards merge. */
    coverage: t.type({ keys: Count, hashes: t.array(t.string) }),
  }),
]);

export type CampaignResult = t.TypeOf<typeof CampaignResultCodec>;
export type Counterexample = t.TypeOf<typeof CounterexampleCodec>;
export type Detection = t.TypeOf<typeof Detection>;
export type Transitions = CampaignResult['transitions'];

export function decodeCampaignResult(name: string, json: unknown): { ok: true; value: CampaignResult } | { ok: false; errors: string[] } {
  const r = CampaignResultCodec.decode(json);
  if (isLeft(r)) return { ok: false, errors: [...new Set(formatErrors(r.left))].slice(0, 8).map((e) => `${name}: ${e}`) };
  const v = r.right;
  const known = (what: string, field: string, value: string, names: readonly string[]) =>
    names.includes(value) ? undefined : `${name}: ${field}: expected ${what} (one of ${names.join(', ')}), got ${shortJson(value)}`;
  const problem =
    (v.shard.count < 1 ? `${name}: shard.count: expected at least 1, got ${v.shard.count}` : undefined) ??
    known('a design variant', 'design', v.design, designNames()) ??
    (v.bug === null ? undefined : known('an injected bug or null', 'bug', v.bug, ALL_BUGS.map((b) => b.name))) ??
    known('a machine name', 'machine', v.machine, [...machineNames(), 'custom']) ??
    v.counterexamples.map((c, i) => known('a check name', `counterexamples.${i}.check`, c.check, checkNames())).find((e) => e !== undefined);
  if (problem !== undefined) return { ok: false, errors: [problem] };
  if (r.right.shard.index < 1 || r.right.shard.index > r.right.shard.count) return { ok: false, errors: [`${name}: shard.index: expected 1..${r.right.shard.count}, got ${r.right.shard.index}`] };
  return { ok: true, value: r.right };
}

function addCounts(into: Record<string, number>, from: Readonly<Record<string, number>>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

/** Sorted keys, so merged results serialise identically whatever order the shards came in. */
export function sortKeys<V>(r: Readonly<Record<string, V>>, compare?: (a: string, b: string) => number): Record<string, V> {
  const out: Record<string, V> = {};
  for (const k of Object.keys(r).sort(compare)) out[k] = r[k] as V;
  return out;
}

export interface MergedCampaign {
  readonly design: string;
  readonly bug: string | null;
  readonly machines: readonly string[];
  readonly baseSeeds: readonly number[];
  readonly shards: readonly string[];
  /** Shards of an n-way split that are missing ("2/4"), when the shards say how many there are. */
  readonly missingShards: readonly string[];
  readonly result: CampaignResult;
}

/**
 * Adds shard results of the same design and bug together. Detections keep the earliest global run
 * (what a single machine running the runs in order would have met first).
 */
export function mergeResults(results: readonly CampaignResult[]): MergedCampaign[] {
  const groups = new Map<string, CampaignResult[]>();
  for (const r of results) {
    const key = `${r.design}\u0000${r.bug ?? ''}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const out: MergedCampaign[] = [];
  for (const key of [...groups.keys()].sort()) {
    const group = (groups.get(key) as CampaignResult[]).slice().sort((a, b) => a.baseSeed - b.baseSeed || a.shard.count - b.shard.count || a.shard.index - b.shard.index);
    const first = group[0] as CampaignResult;
    const kinds: Record<string, number> = {};
    const returns: Record<string, Record<string, number>> = {};
    const transitions = { host: {} as Record<string, number>, hyp: {} as Record<string, number>, guest: {} as Record<string, number> };
    const checks: Record<string, CampaignResult['checks'][string]> = {};
    let runs = 0, operations = 0, failedRuns = 0, panics = 0, wallMs = 0, shrinkMs = 0;
    const counterexamples: Counterexample[] = [];
    const coverageHashes = new Set<string>();
    for (const r of group) {
      runs += r.runs;
      operations += r.operations;
      failedRuns += r.failedRuns;
      panics += r.panics;
      wallMs = Math.max(wallMs, r.timings.wallMs);
      shrinkMs += r.timings.shrinkMs;
      addCounts(kinds, r.kinds);
      for (const [k, v] of Object.entries(r.returns)) addCounts((returns[k] ??= {}), v);
      addCounts(transitions.host, r.transitions.host);
      addCounts(transitions.hyp, r.transitions.hyp);
      addCounts(transitions.guest, r.transitions.guest);
      for (const [name, c] of Object.entries(r.checks)) {
        const prev = checks[name];
        const earliest = prev?.first == null ? c.first : c.first === null || prev.first.run <= c.first.run ? prev.first : c.first;
        checks[name] = { runs: (prev?.runs ?? 0) + c.runs, first: earliest };
      }
      counterexamples.push(...r.counterexamples);
      for (const h of r.coverage?.hashes ?? []) coverageHashes.add(h);
    }
    // One per check × first failing step kind, the earliest run's — what one unsharded campaign
    // keeps (its runs come in order), so shards merge to exactly its counterexamples.
    const seen = new Set<string>();
    const uniqueCounterexamples = counterexamples
      .sort((a, b) => a.run - b.run || (a.check < b.check ? -1 : 1))
      .filter((c) => {
        const k = c.stepKind === undefined ? `${c.check}:${JSON.stringify(c.operations)}` : `${c.check}\u0000${c.stepKind}`;
        if (seen.has(k)) return false;
        seen.add(k);
        return true;
      });
    const shardNames = group.map((r) => `${r.shard.index}/${r.shard.count}`);
    const missing: string[] = [];
    for (const count of new Set(group.map((r) => r.shard.count))) {
      for (let i = 1; i <= count; i++) if (!shardNames.includes(`${i}/${count}`)) missing.push(`${i}/${count}`);
    }
    const runsBudget = group.every((r) => r.budget.runs !== null) ? Math.max(...group.map((r) => r.budget.runs as number)) : null;
    // Every shard of a --runs campaign ran to its end: the unsharded campaign would have run runs
    // 0..run before its first detection, so runsToDetection is run + 1 exactly. opsToDetection
    // stays the detecting shard's own count (the other shards' runs before it are not recorded).
    if (missing.length === 0 && runsBudget !== null && group.every((r) => r.stoppedBy === 'runs')) {
      for (const [name, c] of Object.entries(checks)) if (c.first !== null) checks[name] = { ...c, first: { ...c.first, runsToDetection: c.first.run + 1 } };
    }
    const result: CampaignResult = {
      ...first,
      shard: { index: 1, count: 1 },
      budget: { runs: runsBudget, timeSeconds: first.budget.timeSeconds },
      stoppedBy: group.some((r) => r.stoppedBy === 'interrupt') ? 'interrupt' : group.some((r) => r.stoppedBy === 'time') ? 'time' : 'runs',
      runs,
      operations,
      failedRuns,
      panics,
      kinds: sortKeys(kinds),
      returns: sortKeys(Object.fromEntries(Object.entries(returns).map(([k, v]) => [k, sortKeys(v)]))),
      transitions: { host: sortKeys(transitions.host), hyp: sortKeys(transitions.hyp), guest: sortKeys(transitions.guest) },
      checks: sortKeys(checks),
      counterexamples: uniqueCounterexamples,
      ...(group.some((r) => r.coverage !== undefined) ? { coverage: { keys: coverageHashes.size, hashes: [...coverageHashes].sort() } } : {}),
      timings: { wallMs, shrinkMs, opsPerSecond: wallMs > 0 ? Math.round((operations / wallMs) * 1000) : 0 },
    };
    out.push({
      design: first.design,
      bug: first.bug,
      machines: [...new Set(group.map((r) => r.machine))].sort(),
      baseSeeds: [...new Set(group.map((r) => r.baseSeed))].sort((a, b) => a - b),
      shards: shardNames,
      missingShards: missing,
      result,
    });
  }
  return out;
}

/** JSON text with a stable layout (two-space indent, newline at the end). */
export function resultText(r: CampaignResult): string {
  return JSON.stringify(r, null, 2) + '\n';
}
