/** Reads the figures `npm run bench -- --json` prints (its last JSON line), with io-ts. */
import { isLeft } from 'fp-ts/lib/Either.js';
import { parseJsonInput, readInputText } from '../conformance/input-file.js';
import * as t from 'io-ts';
import { formatErrors } from '../properties/codecs.js';

// Figure names are snake_case words (never "__proto__" or "constructor"), values finite numbers.
const FigureValue = t.refinement(t.number, (n) => Number.isFinite(n) && n >= 0, 'a non-negative number');
const Figures = t.refinement(t.record(t.string, FigureValue), (r) => Object.keys(r).every((k) => /^[a-z][a-z0-9_]*$/.test(k) && !Object.hasOwn(Object.prototype, k)), 'figures named in snake_case');

export function readBenchFigures(path: string): { ok: true; value: Record<string, number> } | { ok: false; errors: string[] } | { ok: 'missing' } {
  const read = readInputText(path);
  if (read.ok === 'missing') return read;
  if (!read.ok) return { ok: false, errors: [read.error] };
  const text = read.text;
  // The file may hold the whole output (npm's banner, the human-readable lines): take the last JSON object.
  const line = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('{'))
    .at(-1);
  if (line === undefined) return { ok: false, errors: [`${path}: no JSON line (expected the output of npm run bench -- --json)`] };
  const parsed = parseJsonInput(`${path}: last JSON line`, line);
  if (!parsed.ok) return { ok: false, errors: [parsed.error] };
  const r = Figures.decode(parsed.json);
  if (isLeft(r)) return { ok: false, errors: formatErrors(r.left).slice(0, 5).map((e) => `${path}: ${e}`) };
  return { ok: true, value: r.right };
}
