/**
 * `verify --workers N` (issue 15 item 2): worker threads run sub-shards whose union is the shard,
 * merged as `report --merge` merges; a `--runs` campaign gives the result of one worker (timings
 * aside, keys in the merge's sorted order, and opsToDetection, which a merge knows only for the
 * detecting shard) and writes the same counterexample files.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCampaignInWorkers, workerShard } from './campaign-workers.js';
import { type CampaignProgress } from '../conformance/campaign.js';
import { smallMachine } from '../properties/machine.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** JSON with every object's keys sorted, so key order does not count. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => (x !== null && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1))) : x));
}

function campaign(workers: number): { result: Record<string, unknown>; corpus: string[]; status: number | null } {
  const dir = mkdtempSync(join(tmpdir(), `workers-${workers}-`));
  const r = spawnSync('npx', ['tsx', 'cli/verify.ts', '--runs', '40', '--seed', '7', '--machine', 'small', '--max-ops', '20', '--bug', 'no-host-tlbi-on-donation', '--workers', String(workers), '--results-dir', join(dir, 'results'), '--corpus-dir', join(dir, 'corpus')], { cwd: ROOT, encoding: 'utf8', timeout: 240_000 });
  const [file] = readdirSync(join(dir, 'results'));
  const result = JSON.parse(readFileSync(join(dir, 'results', file as string), 'utf8')) as Record<string, unknown>;
  delete result.timings;
  // A merged result's opsToDetection counts the detecting shard's operations only (mergeResults).
  for (const c of Object.values(result.checks as Record<string, { first: Record<string, unknown> | null }>)) if (c.first !== null) delete c.first.opsToDetection;
  // The counterexamples' `file` fields name the per-run directory.
  const corpus = readdirSync(join(dir, 'corpus')).sort();
  return { result: { ...result, counterexamples: (result.counterexamples as Record<string, unknown>[]).map(({ file: _file, ...c }) => c) }, corpus, status: r.status };
}

describe('verify --workers', () => {
  it('worker k of shard i/n runs shard i + n·k of n·N: together exactly the runs of shard i/n', () => {
    const runsOf = (s: { index: number; count: number }) => Array.from({ length: 60 }, (_, r) => r).filter((r) => r % s.count === s.index - 1);
    for (const shard of [{ index: 1, count: 1 }, { index: 2, count: 3 }]) {
      for (const workers of [1, 2, 4]) {
        const union = Array.from({ length: workers }, (_, k) => runsOf(workerShard(shard, k, workers))).flat().sort((a, b) => a - b);
        expect(union).toEqual(runsOf(shard));
      }
    }
  });

  it('two workers give the one-worker result and write the same counterexamples', { timeout: 480_000 }, () => {
    const one = campaign(1);
    const two = campaign(2);
    expect(one.status).toBe(1);
    expect(two.status).toBe(1);
    expect((one.result.counterexamples as unknown[]).length).toBeGreaterThan(0);
    expect(canonical(two.result)).toBe(canonical(one.result));
    expect(two.corpus).toEqual(one.corpus);
  });

  it('the progress of two workers counts the union of their coverage keys, which ends at the merged count', { timeout: 240_000 }, async () => {
    const seen: CampaignProgress[] = [];
    const spec = { design: 'v6-posted', machineName: 'small', machine: smallMachine(), maxOps: 20, baseSeed: 7, shard: { index: 1, count: 1 }, runs: 200 };
    const result = await runCampaignInWorkers(spec, 2, { skipKnownFindings: false, progressEveryMs: 50, onProgress: (p) => seen.push(p) });
    const last = seen.at(-1);
    expect(result.coverage?.keys).toBeGreaterThan(0);
    expect(last?.coverageKeys).toBe(result.coverage?.keys);
    // Not the sum of the workers' own counts: their keys overlap.
    expect(seen.every((p) => (p.coverageKeys ?? 0) <= (result.coverage?.keys ?? 0))).toBe(true);
  });

  it('rejects a bad worker count', () => {
    const r = spawnSync('npx', ['tsx', 'cli/verify.ts', '--workers', '0'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--workers/);
  });
});
