/**
 * `--json` output is the only thing on stdout (issue 17 item 3): `npm run X -- --json | jq .` works
 * without `npm run -s`, because the project's .npmrc drops npm's banner and every CLI sends its
 * human-readable lines (settings, progress, tables) to stderr in --json mode.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { decodeCampaignResult } from '../conformance/campaign-result.js';
import { main as bench } from './bench.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The environment of a user's shell: no log level inherited from an enclosing `npm test`. */
function userEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.toLowerCase() === 'npm_config_loglevel') delete env[k];
  return env;
}

describe('--json on stdout alone', () => {
  it('the project .npmrc sets the one npm setting that drops the script banner', () => {
    const rc = readFileSync(join(ROOT, '.npmrc'), 'utf8');
    expect(rc.split('\n').filter((l) => !l.startsWith('#') && l.trim() !== '')).toEqual(['loglevel=silent']);
  });

  it('npm run verify -- --json: stdout parses as the campaign result; the settings and verdicts are on stderr', () => {
    const dir = mkdtempSync(join(tmpdir(), 'json-stdout-'));
    const r = spawnSync('npm', ['run', 'verify', '--', '--json', '--runs', '3', '--seed', '1', '--machine', 'small', '--max-ops', '5', '--results-dir', dir, '--corpus-dir', dir], { cwd: ROOT, env: userEnv(), encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.startsWith('{'), r.stdout.slice(0, 200)).toBe(true);
    const decoded = decodeCampaignResult('stdout', JSON.parse(r.stdout));
    expect(decoded.ok).toBe(true);
    expect(JSON.parse(r.stdout)).toMatchObject({ design: 'v6-posted', machine: 'small', baseSeed: 1, runs: 3 });
    expect(r.stderr).toMatch(/^verify: design v6-posted, machine small/m);
    expect(r.stderr).toMatch(/refinement_ret +holds/);
    expect(r.stderr).not.toMatch(/^> /m); // no npm banner anywhere
  });

  it('bench --json: one JSON object on stdout, the table on stderr', () => {
    const out: string[] = [];
    const err: string[] = [];
    const figures = { walks_per_s: 1234567, map_unmap_pairs_per_s: 4321 };
    expect(bench(['--json', '--quick'], { out: (l) => out.push(l), err: (l) => err.push(l) }, () => figures)).toBe(0);
    expect(out).toEqual([JSON.stringify(figures)]);
    expect(err.join('\n')).toMatch(/walks_per_s +1,234,567/);
    const plain: string[] = [];
    expect(bench([], { out: (l) => plain.push(l), err: () => undefined }, () => figures)).toBe(0);
    expect(plain).toHaveLength(2);
    expect(bench(['--fast'], { out: () => undefined, err: (l) => err.push(l) }, () => figures)).toBe(2);
    expect(err.at(-1)).toMatch(/unknown option --fast\nusage: npm run bench -- \[--json\] \[--quick\]/);
  });
});
