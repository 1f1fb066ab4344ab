/**
 * The zoo's guided comparison (issue 15 item 3): deterministic for a seed (seconds aside), the
 * guidance changes the search, medians treat "not found" as worse than any count, and the CLI
 * prints it or its JSON.
 */
import { describe, expect, it } from 'vitest';
import { main } from '../cli/zoo.js';
import { ALL_BUGS } from '../properties/bugs/index.js';
import { type ZooCandidate } from '../properties/zoo.js';
import { guidanceRow, medianOf, summarizeGuidance } from './guided-zoo.js';

const settings = { seed: 20261122, runs: 300, maxOps: 40 };
const bug = (name: string) => ALL_BUGS.find((b) => b.name === name) as ZooCandidate;
const noSeconds = (r: ReturnType<typeof guidanceRow>) => ({ ...r, plain: { ...r.plain, seconds: null }, guided: { ...r.guided, seconds: null } });

describe('zoo --compare-guided', () => {
  it('is deterministic for a seed, and guidance finds teardown-loses-pool-pages where plain generation does not', () => {
    const a = guidanceRow(bug('teardown-loses-pool-pages'), settings);
    const b = guidanceRow(bug('teardown-loses-pool-pages'), settings);
    expect(noSeconds(a)).toEqual(noSeconds(b));
    expect(a.plain.runs).toBeNull();
    expect(a.guided.runs).toBe(134);
  });

  it('counts "not found" as worse than any number in a median', () => {
    expect(medianOf([3, null, 5])).toBe(5);
    expect(medianOf([3, null, null])).toBeNull();
    expect(medianOf([2, 4])).toBe(3);
    expect(medianOf([])).toBeNull();
    const row = guidanceRow(bug('annotation-forgotten'), settings);
    expect(summarizeGuidance([row]).plain).toEqual({ medianRuns: row.plain.runs, medianSeconds: row.plain.seconds, found: 1 });
  });

  it('prints the comparison, or one JSON object with --json', () => {
    const out: string[] = [];
    const io = { out: (l: string) => out.push(l), err: (l: string) => out.push(l) };
    expect(main(['--compare-guided', '--bug', 'annotation-forgotten'], io)).toBe(0);
    expect(out.join('\n')).toMatch(/annotation-forgotten\s+small\s+2 runs/);
    expect(out.join('\n')).toMatch(/median runs to detection: plain 2, guided 2/);
    out.length = 0;
    expect(main(['--compare-guided', '--json', '--bug', 'annotation-forgotten'], io)).toBe(0);
    const doc = JSON.parse(out[0] as string) as { guidance: { rows: unknown[]; summary: { bugs: number } } };
    expect(doc.guidance.rows).toHaveLength(1);
    expect(doc.guidance.summary.bugs).toBe(1);
    out.length = 0;
    expect(main(['--compare-guided', '--runs', '0'], io)).toBe(2);
  });
});
