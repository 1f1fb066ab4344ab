import { describe, expect, it } from 'vitest';
import { main } from './verdicts.js';

function run(argv: string[]) {
  let out = '';
  let err = '';
  const code = main(argv, { out: { write: (s: string) => (out += s) }, err: { write: (s: string) => (err += s) } });
  return { code, out, err };
}

describe('verdicts CLI', () => {
  it('prints its usage with --help', () => {
    const r = run(['--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/usage: npm run verdicts/);
    expect(r.out).toMatch(/v6-atc-inv/);
  });

  it.each([
    [['--bogus'], /unknown option --bogus/],
    [['--runs', '0'], /--runs: expected an integer/],
    [['--seed', 'x'], /--seed: expected an integer/],
    [['extra'], /unexpected argument "extra"/],
  ])('rejects %j with exit 2', (argv, message) => {
    const r = run(argv);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
    expect(r.out).toBe('');
  });

  it('prints the JSON verdicts and costs for a small budget', () => {
    const r = run(['--json', '--runs', '2', '--max-ops', '8']);
    const json = JSON.parse(r.out) as { verdicts: unknown[]; costs: unknown[]; budget: { runs: number } };
    expect(json.budget.runs).toBe(2);
    expect(json.verdicts).toHaveLength(50); // 10 variants (v6-posted, v6-hardened and its 8 variants) × 5 machines
    expect(json.costs).toHaveLength(50);
    // Too small a budget reaches few declared breaks: those are undecided, not differences.
    const j = json as unknown as { undecided: string[]; mismatches: string[] };
    expect(j.undecided.length).toBeGreaterThan(0);
    expect(j.mismatches).toEqual([]);
    expect(r.code).toBe(0);
  });

  it('says the budget is too small instead of listing false mismatches, and takes hex seeds', () => {
    const r = run(['--runs', '2', '--max-ops', '8', '--seed', '0x1350bd2']);
    expect(r.out).toMatch(/seed 20253650, 2 runs × up to 8 operations/);
    expect(r.out).toMatch(/The budget \(2 runs × 8 operations\) is below the one the declared verdicts are checked with \(40 × 30\): \d+ declared break\(s\) not reached, no verdict on them:/);
    expect(r.out).not.toMatch(/Verdicts differing/);
    expect(run(['--seed', '0x1_0000_0000']).code).toBe(2);
    expect(run(['--seed', '4294967296']).code).toBe(2);
  });
});
