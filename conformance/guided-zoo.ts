/**
 * Issue 15 item 3 on the bug zoo: does coverage guidance find the injected bugs sooner? Each bug
 * is searched twice with the campaign's own run generation (`RunGenerator`: the same seeds,
 * bias paths, and on SMMU machines the same hardware schedules), once plain and once guided, and
 * the runs and seconds to the first run its check fails are compared. The zoo's matrix
 * (properties/zoo.ts) uses its own fast-check search and hand-written triggers; this comparison
 * uses neither, so a bug only a trigger reaches shows as not found within the runs.
 */
import { type CheckName } from '../properties/checks.js';
import { type ZooCandidate, type ZooSettings, type Clock, arbitraryFor, designOptions } from '../properties/zoo.js';
import { runOperations } from '../properties/runner.js';
import { RunGenerator, scheduleForRun } from './campaign.js';
import { CoverageTracker } from './coverage.js';
import { namedMachine } from './machines.js';

export interface SearchFigures {
  /** Runs until the first detection (1-based), or null: not within the runs. */
  readonly runs: number | null;
  readonly seconds: number | null;
  /** Distinct coverage keys the search reached (up to the detection). */
  readonly keys: number;
}

export interface GuidanceRow {
  readonly bug: string;
  readonly machine: string;
  readonly caughtBy: CheckName;
  readonly plain: SearchFigures;
  readonly guided: SearchFigures;
}

function search(bug: ZooCandidate, settings: ZooSettings, guided: boolean, clock: Clock): SearchFigures {
  const machine = namedMachine(bug.machine ?? 'small');
  if (machine === undefined) throw new Error(`bug ${bug.name}: unknown machine ${bug.machine}`);
  const base = designOptions(bug, new Set([bug.caughtBy]), true);
  const runs = new RunGenerator(arbitraryFor(machine, settings.maxOps, bug.generation ?? {}), settings.seed, settings.maxOps, guided);
  const coverage = new CoverageTracker();
  const start = clock();
  for (let run = 0; run < settings.runs; run++) {
    const { ops } = runs.ops(run);
    const options = { ...base, steps: coverage, ...(machine.smmu === undefined ? {} : { schedule: scheduleForRun(machine, runs.seed(run)) }) };
    const result = runOperations(machine, ops, options);
    if (result.failure?.violations.some((v) => v.check === bug.caughtBy) === true) {
      return { runs: run + 1, seconds: Math.round(clock() - start) / 1000, keys: coverage.hashes.size };
    }
    runs.ran(ops, coverage.takeNew());
  }
  return { runs: null, seconds: null, keys: coverage.hashes.size };
}

export function guidanceRow(bug: ZooCandidate, settings: ZooSettings, clock: Clock = () => performance.now()): GuidanceRow {
  return { bug: bug.name, machine: bug.machine ?? 'small', caughtBy: bug.caughtBy, plain: search(bug, settings, false, clock), guided: search(bug, settings, true, clock) };
}

/** The median of figures where "not found" counts as worse than any number (null when the median is one). */
export function medianOf(values: readonly (number | null)[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => (a === null ? (b === null ? 0 : 1) : b === null ? -1 : a - b));
  const mid = sorted.length / 2;
  if (sorted.length % 2 === 1) return sorted[Math.floor(mid)] ?? null;
  const lo = sorted[mid - 1];
  const hi = sorted[mid];
  return lo === null || hi === null || lo === undefined || hi === undefined ? null : (lo + hi) / 2;
}

export interface GuidanceSummary {
  readonly plain: { readonly medianRuns: number | null; readonly medianSeconds: number | null; readonly found: number };
  readonly guided: { readonly medianRuns: number | null; readonly medianSeconds: number | null; readonly found: number };
  readonly bugs: number;
}

export function summarizeGuidance(rows: readonly GuidanceRow[]): GuidanceSummary {
  const side = (pick: (r: GuidanceRow) => SearchFigures) => ({
    medianRuns: medianOf(rows.map((r) => pick(r).runs)),
    medianSeconds: medianOf(rows.map((r) => pick(r).seconds)),
    found: rows.filter((r) => pick(r).runs !== null).length,
  });
  return { plain: side((r) => r.plain), guided: side((r) => r.guided), bugs: rows.length };
}

export function formatGuidance(rows: readonly GuidanceRow[], settings: ZooSettings): string {
  const show = (f: SearchFigures) => (f.runs === null ? `not in ${settings.runs}`.padEnd(16) : `${String(f.runs).padStart(4)} runs ${String(f.seconds).padStart(6)} s`);
  const lines = [`guided against plain generation (seed ${settings.seed}, ${settings.runs} runs, up to ${settings.maxOps} operations; the campaign's generator and schedules)`, ''];
  lines.push(`${'bug'.padEnd(36)} ${'machine'.padEnd(26)} ${'plain'.padEnd(18)} guided`);
  for (const r of rows) lines.push(`${r.bug.padEnd(36)} ${r.machine.padEnd(26)} ${show(r.plain).padEnd(18)} ${show(r.guided)}`);
  const s = summarizeGuidance(rows);
  const med = (x: number | null) => (x === null ? 'not found' : String(x));
  lines.push('');
  lines.push(`median runs to detection: plain ${med(s.plain.medianRuns)}, guided ${med(s.guided.medianRuns)}; median seconds: plain ${med(s.plain.medianSeconds)}, guided ${med(s.guided.medianSeconds)}; found ${s.plain.found} / ${s.guided.found} of ${s.bugs}`);
  return lines.join('\n');
}
