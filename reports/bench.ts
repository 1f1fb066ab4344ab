/** Reads the figures `npm run bench -- --json` prints (its last JSON line), with io-ts. */
import { isLeft } from 'fp-ts/lib/Either.js';
import { readFileSync } from 'node:fs';
import * as t from 'io-ts';
import { formatErrors } from '../properties/codecs.js';

const Figures = t.record(t.string, t.number);

export function readBenchFigures(path: string): { ok: true; value: Record<string, number> } | { ok: false; errors: string[] } | { ok: 'missing' } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { ok: 'missing' };
    return { ok: false, errors: [`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`] };
  }
  // The file may hold the whole output (npm's banner, the human-readable lines): take the last JSON object.
  const line = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('{'))
    .at(-1);
  if (line === undefined) return { ok: false, errors: [`${path}: no JSON line (expected the output of npm run bench -- --json)`] };
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch (e) {
    return { ok: false, errors: [`${path}: last JSON line is not valid JSON: ${(e as Error).message}`] };
  }
  const r = Figures.decode(json);
  if (isLeft(r)) return { ok: false, errors: formatErrors(r.left).slice(0, 5).map((e) => `${path}: ${e}`) };
  return { ok: true, value: r.right };
}
