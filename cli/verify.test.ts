import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { decodeCampaignResult } from '../conformance/campaign-result.js';
import { decodeCorpusEntry } from '../conformance/corpus-format.js';
import { replayEntry } from '../conformance/corpus.js';
import { clockSeed } from '../conformance/seeds.js';
import { KNOWN_FINDINGS } from '../properties/known-findings.js';
import { type VerifyIo, main } from './verify.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function io(tty = false, now = new Date('2026-11-21T12:00:00Z')): VerifyIo & { text: () => string; errText: () => string } {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out: { write: (s: string) => out.push(s), isTTY: tty },
    err: { write: (s: string) => err.push(s) },
    now: () => now,
    text: () => out.join(''),
    errText: () => err.join(''),
  };
}

function dirs() {
  const base = mkdtempSync(join(tmpdir(), 'verify-'));
  return { corpus: join(base, 'corpus'), results: join(base, 'results'), args: ['--corpus-dir', join(base, 'corpus'), '--results-dir', join(base, 'results')] };
}

describe('verify CLI', () => {
  it('rejects misuse with exit 2 and a one-line reason', async () => {
    const cases: [string[], RegExp][] = [
      [['--shard', '0/2'], /--shard: expected i\/n with 1 <= i <= n/],
      [['--shard', '3/2'], /--shard: expected i\/n/],
      [['--time', '5', '--runs', '3'], /--time and --runs exclude each other/],
      [['--seed', '-1'], /--seed needs a value|--seed: expected an integer/],
      [['--seed', 'abc'], /--seed: expected an integer in \[0, 2\^32\)/],
      [['--machine', 'huge'], /--machine: expected one of default, small, small-smmu, small-smmu-no-ats, small-smmu-hide-ats, small-smmu-tight-s2-pool, got "huge"/],
      [['--bug', 'nope'], /--bug: unknown bug "nope" \(known: no-host-tlbi-on-donation/],
      [['--design', 'v9'], /--design: unknown design "v9" \(known: v6-posted, v6-hardened, v6-hide-ats, v6-hide-ats-host-atschk, v6-atc-inv, vmid-wide-invalidation, block-idmap-with-split, shared-cpu-s2, shared-cpu-s2-prepopulated, no-tlbi-nh-after-s2\)/],
      [['--runs', 'many'], /--runs: expected an integer in \[1, 1000000000\], got "many"/],
      [['--time', '0'], /--time: expected a number of seconds > 0/],
      [['--frobnicate'], /unknown option --frobnicate/],
      [['extra'], /unexpected argument "extra"/],
      // A bug with a design or machine it does not fit.
      [['--bug', 'atc-inv-before-tlbi-sync', '--machine', 'small-smmu', '--design', 'v6-posted'], /--bug: atc-inv-before-tlbi-sync is written against design v6-atc-inv: use --design v6-atc-inv/],
      [['--bug', 'tlbi-wrong-ttl', '--machine', 'small-smmu-no-ats', '--design', 'v6-posted'], /--bug: design v6-posted breaks dma_isolation on machine small-smmu-no-ats without the bug, so a detection would say nothing about tlbi-wrong-ttl: use --design v6-hardened/],
      [['--bug', 'tlbi-wrong-ttl', '--machine', 'small-smmu'], /--bug: design v6-hardened breaks dma_isolation on machine small-smmu without the bug/],
      [['--bug', 'tlbi-wrong-ttl', '--machine', 'small'], /--bug: tlbi-wrong-ttl is a bug of the SMMU driver: it needs a machine with an SMMU/],
    ];
    for (const [argv, message] of cases) {
      const x = io();
      expect(await main(argv, x), argv.join(' ')).toBe(2);
      expect(x.errText()).toMatch(message);
      expect(x.errText()).toMatch(/usage: npm run verify/);
      expect(x.errText()).not.toMatch(/at .*\.ts:\d+/); // no stack trace
    }
    const help = io();
    expect(await main(['--help'], help)).toBe(0);
    expect(help.text()).toMatch(/--shard i\/n/);
    // The help lists every known finding, the panic ones marked as such.
    for (const f of KNOWN_FINDINGS) expect(help.text()).toContain(f.name);
    expect(help.text()).toMatch(/filtered-host-command-panics \(host can panic the hypervisor\)/);
    expect(help.text()).toMatch(/v4-hook-placement-misses-guest-donation \(dma_isolation\)/);
  });

  it('--bug defaults to the design the bug is written against, and leaves the known findings out on an SMMU machine', async () => {
    const d = dirs();
    const x = io();
    await main(['--bug', 'atc-inv-before-tlbi-sync', '--machine', 'small-smmu', '--runs', '1', '--seed', '1', '--max-ops', '5', ...d.args], x);
    expect(x.text()).toMatch(/^verify: design v6-atc-inv, machine small-smmu, .*test-only bug atc-inv-before-tlbi-sync, without the known findings' steps/);
    expect(x.text()).toMatch(/repeat with: npm run verify -- .*--design v6-atc-inv .*--bug atc-inv-before-tlbi-sync --skip-known-findings/);
  });

  it('--guided writes a counterexample of a mutated run as a corpus file that loads and replays (path "guided")', async () => {
    // Seed and budget of the zoo's guided comparison, where only guidance finds this bug (run 134).
    const d = dirs();
    const x = io();
    expect(await main(['--bug', 'teardown-loses-pool-pages', '--machine', 'small', '--guided', '--runs', '140', '--seed', '20261122', '--workers', '1', ...d.args], x)).toBe(1);
    const files = readdirSync(d.corpus);
    expect(files.some((f) => f.includes('pool_accounting'))).toBe(true);
    for (const f of files) {
      const decoded = decodeCorpusEntry(JSON.parse(readFileSync(join(d.corpus, f), 'utf8')));
      expect(decoded.ok, f).toBe(true);
      if (!decoded.ok) continue;
      expect(decoded.value.provenance.path).toBe('guided');
      expect(replayEntry(decoded.value).ok, f).toBe(true);
    }
  });

  it('runs a clean campaign: seed, verdicts, result file, exit 0', async () => {
    // The default design (v6-posted) on a machine without an SMMU: nothing of the posted SMMU driver is reached.
    const d = dirs();
    const x = io();
    expect(await main(['--runs', '5', '--seed', '5', '--machine', 'small', '--max-ops', '15', ...d.args], x)).toBe(0);
    const text = x.text();
    expect(text).toMatch(/^verify: design v6-posted, machine small, up to 15 operations per run, 5 runs, shard 1\/1/);
    expect(text).toMatch(/seed 5; repeat with: npm run verify -- --seed 5 --machine small --design v6-posted --max-ops 15 --runs 5/);
    expect(text).toMatch(/refinement_ret +holds/);
    expect(text).toMatch(/pool_accounting +holds/);
    expect(text).toMatch(/confidentiality +holds/);
    // The IOMMU checks say nothing about a machine without an SMMU.
    for (const check of ['dma_isolation', 'dma_during_hypercall', 'dma_availability', 'smmu_config_coherent', 'smmu_write_isolation']) expect(text).toMatch(new RegExp(`${check} +n/a \\(no SMMU\\)`));
    const files = readdirSync(d.results);
    expect(files).toEqual(['v6-posted-small-seed5-shard1of1.json']);
    const result = decodeCampaignResult('r', JSON.parse(readFileSync(join(d.results, files[0] as string), 'utf8')));
    expect(result.ok && result.value.runs).toBe(5);
    expect(existsSync(d.corpus)).toBe(false);
  });

  it('--skip-known-findings leaves the known findings\u2019 steps out, ends runs silently at known panic sites, says so, and repeats with the flag', async () => {
    // Seed 101 on this machine, default design v6-posted: the v4 hook placement finding
    // (host_donate_guest, dma_isolation) at run 1, and host panics (a reserved command stopping
    // the hyp queue: host-command-stops-hyp-queue) from run 4 on.
    const base = ['--runs', '21', '--seed', '101', '--machine', 'small-smmu-no-ats'];
    const withFindings = io();
    expect(await main([...base, ...dirs().args], withFindings)).toBe(1);
    expect(withFindings.text()).toMatch(/dma_isolation +VIOLATED/);
    expect(withFindings.text()).toMatch(/no_host_triggered_panic +VIOLATED/);
    expect(withFindings.text()).not.toMatch(/known panics/);
    const skipping = io();
    const d = dirs();
    expect(await main([...base, '--skip-known-findings', ...d.args], skipping)).toBe(0);
    expect(skipping.text()).toMatch(/, without the known findings' steps\n/);
    expect(skipping.text()).toMatch(/repeat with: npm run verify -- .* --runs 21 --skip-known-findings/);
    expect(skipping.text()).toMatch(/no_host_triggered_panic +holds/);
    // A run that reaches a known panic site ends there silently, and is counted as a known panic.
    expect(skipping.text()).toMatch(/violations 0 {2}known panics 3 {2}keys \d+ {2}\[21\/21 runs\]/);
    expect(skipping.text()).toMatch(/known panics: 3 of 21 runs ended at a known finding's WARN site/);
    const [file] = readdirSync(d.results);
    const result = decodeCampaignResult('r', JSON.parse(readFileSync(join(d.results, file as string), 'utf8')));
    expect(result.ok && result.value.panics).toBe(3);
    expect(result.ok && result.value.failedRuns).toBe(0);
  });

  it('--interleave runs each sequence with a hardware schedule, says so, records it and repeats with the flag', async () => {
    const d = dirs();
    const x = io();
    expect(await main(['--runs', '3', '--seed', '1', '--machine', 'small-smmu-no-ats', '--interleave', '--skip-known-findings', ...d.args], x)).toBe(0);
    expect(x.text()).toMatch(/, hardware interleaved, without the known findings' steps\n/);
    expect(x.text()).toMatch(/repeat with: npm run verify -- .* --runs 3 --interleave --skip-known-findings/);
    const [file] = readdirSync(d.results);
    const result = decodeCampaignResult('r', JSON.parse(readFileSync(join(d.results, file as string), 'utf8')));
    expect(result.ok && result.value.interleave).toBe(true);
  });

  it('takes the base seed from the clock when none is given, and prints it', async () => {
    const d = dirs();
    const now = new Date('2026-01-02T03:04:05Z');
    const x = io(false, now);
    await main(['--runs', '1', '--machine', 'small', '--max-ops', '5', ...d.args], x);
    expect(x.text()).toContain(`seed ${clockSeed(now.getTime())} (from the clock)`);
  });

  it('writes a shrunk counterexample as a corpus file, prints how to replay it, exits 1; a second find is not written again', async () => {
    const d = dirs();
    const argv = ['--runs', '8', '--seed', '2', '--machine', 'small', '--bug', 'unshare-pinned-wrong-errno', ...d.args];
    // The repository's corpus has this very counterexample: look for duplicates in a fresh one.
    const x = { ...io(), corpusRoot: d.corpus };
    expect(await main(argv, x)).toBe(1);
    const files = readdirSync(d.corpus);
    expect(files).toHaveLength(1);
    const path = join(d.corpus, files[0] as string);
    expect(files[0]).toMatch(/^v6-posted-unshare-pinned-wrong-errno-refinement_ret-[0-9a-f]{8}\.json$/);
    expect(x.text()).toContain(`npm run replay -- ${path}`);
    expect(x.text()).toMatch(/injected bug unshare-pinned-wrong-errno: caught by refinement_ret/);
    const entry = decodeCorpusEntry(JSON.parse(readFileSync(path, 'utf8')));
    if (!entry.ok) throw new Error(entry.errors.join('\n'));
    expect(entry.value.expect).toEqual({ violates: 'refinement_ret' });
    expect(entry.value.bug).toBe('unshare-pinned-wrong-errno');
    expect(entry.value.provenance).toMatchObject({ date: '2026-11-21', baseSeed: 2 });
    expect(entry.value.provenance.how).toMatch(/^npm run verify -- --seed 2 .* --bug unshare-pinned-wrong-errno \(run \d+\)$/);
    expect(replayEntry(entry.value).ok).toBe(true);
    const again = { ...io(), corpusRoot: d.corpus };
    expect(await main(argv, again)).toBe(1);
    expect(again.text()).toMatch(/already in the corpus/);
    expect(readdirSync(d.corpus)).toHaveLength(1);
  });

  it('shows progress in place on a terminal', async () => {
    const d = dirs();
    const x = io(true);
    await main(['--runs', '3', '--seed', '2', '--machine', 'small', '--max-ops', '5', ...d.args], x);
    expect(x.text()).toMatch(/\r\x1b\[2Kruns 3 {2}operations \d+ {2}ops\/s \d+ {2}violations 0 {2}keys \d+ {2}\[3\/3 runs\]/);
  });

  it('shards: each shard runs its own run numbers and names its result file', async () => {
    const d = dirs();
    for (const shard of ['1/2', '2/2']) expect(await main(['--runs', '5', '--seed', '9', '--machine', 'small', '--max-ops', '8', '--shard', shard, ...d.args], io())).toBe(0);
    const files = readdirSync(d.results).sort();
    expect(files).toEqual(['v6-posted-small-seed9-shard1of2.json', 'v6-posted-small-seed9-shard2of2.json']);
    const runs = files.map((f) => (JSON.parse(readFileSync(join(d.results, f), 'utf8')) as { runs: number }).runs);
    expect(runs).toEqual([3, 2]);
  });

  // SIGTERM (a CI timeout, `kill`) behaves as Ctrl-C does.
  it.each(['SIGINT', 'SIGTERM'] as const)('stops cleanly on %s and keeps what it found', async (signal) => {
    const d = dirs();
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'cli', 'verify.ts'), '--time', '60', '--machine', 'small', '--seed', '4', ...d.args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (out.includes('repeat with')) {
          clearInterval(poll);
          setTimeout(resolve, 800);
        }
      }, 50);
    });
    const started = Date.now();
    child.kill(signal);
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(code, err).toBe(0);
    expect(err).toMatch(/interrupted: finishing the current run/);
    expect(out).toMatch(/stopped by interrupt/);
    // The last progress line, with the resident memory (a long run's health).
    expect(out).toMatch(/runs \d+ {2}operations \d+ {2}ops\/s \d+ {2}violations 0 {2}keys \d+ {2}\[\d+\/60 s\] {2}rss \d+ MiB/);
    const result = JSON.parse(readFileSync(join(d.results, 'v6-posted-small-seed4-shard1of1.json'), 'utf8')) as { stoppedBy: string; runs: number };
    expect(result.stoppedBy).toBe('interrupt');
    expect(result.runs).toBeGreaterThan(0);
  });
});
