/**
 * Reads vitest's `coverage/coverage-summary.json` (istanbul json-summary, from `npm run coverage`)
 * with io-ts, and picks the totals and the least-covered files for the summary.
 */
import { isLeft } from 'fp-ts/lib/Either.js';
import { isAbsolute, relative } from 'node:path';
import * as t from 'io-ts';
import { readJsonInput } from '../conformance/input-file.js';
import { formatErrors } from '../properties/codecs.js';

const Metric = t.type({ total: t.number, covered: t.number, pct: t.union([t.number, t.string]) });
const FileCoverage = t.type({ lines: Metric, statements: Metric, functions: Metric, branches: Metric });
const CoverageSummaryCodec = t.intersection([t.type({ total: FileCoverage }), t.record(t.string, FileCoverage)]);

export type MetricName = 'lines' | 'statements' | 'functions' | 'branches';
export const METRICS: readonly MetricName[] = ['lines', 'statements', 'functions', 'branches'];

export interface MetricValue {
  readonly covered: number;
  readonly total: number;
}

export interface FileCoverageInfo {
  /** Relative to the repository root. */
  readonly file: string;
  readonly metrics: Readonly<Record<MetricName, MetricValue>>;
}

export interface CoverageInfo {
  readonly total: Readonly<Record<MetricName, MetricValue>>;
  readonly files: readonly FileCoverageInfo[];
}

export function pct(m: MetricValue): number {
  return m.total === 0 ? 100 : (100 * m.covered) / m.total;
}

export function readCoverageSummary(path: string, root: string): { ok: true; value: CoverageInfo } | { ok: false; errors: string[] } | { ok: 'missing' } {
  const read = readJsonInput(path);
  if (read.ok === 'missing') return read;
  if (!read.ok) return { ok: false, errors: [read.error] };
  const json = read.json;
  const r = CoverageSummaryCodec.decode(json);
  if (isLeft(r)) return { ok: false, errors: [...new Set(formatErrors(r.left))].slice(0, 5).map((e) => `${path}: ${e}`) };
  const pick = (f: t.TypeOf<typeof FileCoverage>): Record<MetricName, MetricValue> => ({
    lines: { covered: f.lines.covered, total: f.lines.total },
    statements: { covered: f.statements.covered, total: f.statements.total },
    functions: { covered: f.functions.covered, total: f.functions.total },
    branches: { covered: f.branches.covered, total: f.branches.total },
  });
  const files = Object.entries(r.right)
    .filter(([k]) => k !== 'total')
    .map(([k, v]) => ({ file: isAbsolute(k) ? relative(root, k) : k, metrics: pick(v) }))
    .sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  return { ok: true, value: { total: pick(r.right.total), files } };
}

/** Files with the lowest line coverage first (more uncovered lines breaking ties). */
export function leastCovered(info: CoverageInfo, n: number): FileCoverageInfo[] {
  return info.files
    .filter((f) => f.metrics.lines.total > 0)
    .slice()
    .sort((a, b) => pct(a.metrics.lines) - pct(b.metrics.lines) || b.metrics.lines.total - b.metrics.lines.covered - (a.metrics.lines.total - a.metrics.lines.covered) || (a.file < b.file ? -1 : 1))
    .slice(0, n);
}
