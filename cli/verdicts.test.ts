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
    expect(json.verdicts).toHaveLength(45); // 9 variants (v6-posted, v6-hardened and its 7 variants) × 5 machines
    expect(json.costs).toHaveLength(45);
    expect([0, 1]).toContain(r.code);
  });
});
