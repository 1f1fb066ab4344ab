import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { deterministicPart, SUMMARY_BUDGET, TIMINGS_MARKER } from '../reports/summary.js';
import { main as verify } from './verify.js';
import { main } from './report.js';

const base = mkdtempSync(join(tmpdir(), 'report-'));
const coverageDir = join(base, 'coverage');
mkdirSync(coverageDir);
const metric = (covered: number, total: number) => ({ total, covered, skipped: 0, pct: total === 0 ? 'Unknown' : Math.round((1000 * covered) / total) / 10 });
const fileCov = (l: [number, number], b: [number, number]) => ({ lines: metric(...l), statements: metric(...l), functions: metric(1, 2), branches: metric(...b) });
writeFileSync(
  join(coverageDir, 'coverage-summary.json'),
  JSON.stringify({
    total: fileCov([150, 200], [30, 60]),
    [join(process.cwd(), 'impl', 'a.ts')]: fileCov([90, 100], [20, 30]),
    [join(process.cwd(), 'cli', 'b.ts')]: fileCov([10, 50], [5, 20]),
    [join(process.cwd(), 'model', 'c.ts')]: fileCov([50, 50], [5, 10]),
    [join(process.cwd(), 'model', 'empty.ts')]: fileCov([0, 0], [0, 0]),
  }),
);
writeFileSync(join(coverageDir, 'index.html'), '<html>coverage</html>');
const bench = join(base, 'bench.txt');
writeFileSync(bench, '\n> pkvm bench\n\nwalks_per_s 1\n{"walks_per_s":4979168,"map_unmap_pairs_per_s":358863}\n');

const quick = ['--seed', '3', '--runs', '6', '--bug-runs', '6', '--max-ops', '12', '--machine', 'small', '--coverage', join(coverageDir, 'coverage-summary.json'), '--bench', bench];
const lines: string[] = [];
const errors: string[] = [];
const io = { log: (l: string) => void lines.push(l), error: (l: string) => void errors.push(l) };

async function report(argv: string[]): Promise<{ code: number; out: string; summary: string; json: Record<string, unknown> }> {
  const out = mkdtempSync(join(base, 'out-'));
  const code = await main([...argv, '--out', out], io);
  const summary = existsSync(join(out, 'summary.md')) ? readFileSync(join(out, 'summary.md'), 'utf8') : '';
  const json = existsSync(join(out, 'report.json')) ? (JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as Record<string, unknown>) : {};
  return { code, out, summary, json };
}

describe('report CLI', () => {
  it('writes summary.md, report.json and the coverage copy; same seeds give the same summary apart from timings', async () => {
    const a = await report(quick);
    const b = await report(quick);
    expect(deterministicPart(a.summary)).toBe(deterministicPart(b.summary));
    expect(a.summary).toContain(TIMINGS_MARKER);
    const { timings: _ta, ...ja } = a.json;
    const { timings: _tb, ...jb } = b.json;
    expect(ja).toEqual(jb);
    expect(Buffer.byteLength(a.summary)).toBeLessThan(SUMMARY_BUDGET);
    expect(readFileSync(join(a.out, 'coverage', 'index.html'), 'utf8')).toBe('<html>coverage</html>');
    const s = a.summary;
    expect(s).toMatch(/^# Conformance summary\n/);
    expect(s).toMatch(/\| property \| `v6-posted` \| `v6-hardened` \|/);
    for (const check of ['refinement_ret', 'refinement_state', 'error_changes_nothing', 'host_cpu_isolation', 'well_formed_tables', 'pool_accounting']) expect(s).toMatch(new RegExp(`\\| \`${check}\` \\| ✅ holds \\(6 runs\\) \\|`));
    expect(s).toMatch(/\| `v6-posted` \| small \| 6 \| \d+ \| 0 \| 0 \| 1 \|/);
    expect(s).toMatch(/\| `host_donate_hyp` \| \d+ \| /);
    expect(s).toMatch(/Transitions never seen/);
    expect(s).toMatch(/\| `no-host-tlbi-on-donation` \| `host_cpu_isolation` \| /);
    // Some bug campaign found and shrank a counterexample, so shrinking is covered by the comparison.
    expect(s).toMatch(/\| ✅ caught \|.*\| \d+ → \d+ \| 6 \|/);
    // Least covered first, the empty file left out, paths relative to the repository.
    expect(s).toMatch(/\| lines \| 150 \| 200 \| 75\.0 \|/);
    expect(s).toMatch(/\| `cli\/b\.ts` \| 20\.0 \| 40 \| 25\.0 \| 50\.0 \|\n\| `impl\/a\.ts` \| 90\.0 \|/);
    expect(s).not.toMatch(/empty\.ts/);
    const timings = s.slice(s.indexOf(TIMINGS_MARKER));
    expect(timings).toMatch(/\| `walks_per_s` \| 4,979,168 \|/);
    expect(deterministicPart(s)).not.toMatch(/walks_per_s|ops\/s/);
    expect(a.json.settings).toMatchObject({ bugRuns: 6, bugSeed: 3 });
  });

  it('on the default SMMU machine: leaves the known findings out of the campaigns, reproduces them as expected counterexamples (panics apart from isolation), falls back to bug triggers', async () => {
    const smmu = ['--seed', '3', '--runs', '6', '--bug-runs', '6', '--max-ops', '12', '--coverage', join(coverageDir, 'coverage-summary.json'), '--bench', bench];
    const a = await report(smmu);
    const b = await report(smmu);
    expect(deterministicPart(a.summary)).toBe(deterministicPart(b.summary));
    const s = a.summary;
    expect(s).toMatch(/campaigns run by the report: seed 3, 6 runs per design on the small-smmu machine/);
    expect(s).toMatch(/leave out every generated step that reaches a known finding of the design — `host_donate_guest` \(v4-hook-placement-misses-guest-donation\), `host_mmio_write` of CR0 with SMMUEN clear \(EVTQEN kept\) \(smmu-disabled-skips-tlbi\)/);
    // The filter is real: the campaigns never donated to a guest.
    expect(s).toMatch(/\| `host_donate_guest` \| 0 \|/);
    // v6-posted's expected breaks are its known findings, left out here and reproduced apart;
    // a variant that removes them (v6-hide-ats) holds the checks.
    expect(s).toMatch(/- design v6-posted: every property as expected/);
    // Where known findings were left out, the verdict workload (without their steps) shows what else breaks: the stale ATC.
    expect(s).toMatch(/\| `dma_isolation` \| ✅ breaks as expected \(missed by 6 runs; shown by run \d+ of the verdict workload, \d+ ops; its known findings left out \(`v4-hook-placement-misses-guest-donation`, `smmu-disabled-skips-tlbi`, `forged-translated-dma`\) are reproduced apart\) \| /);
    expect(s).toMatch(/\| `smmu_write_isolation` \| ➖ its known findings left out \(`irq-cfg-msi-write-to-protected`, `cmd-sync-msi-write-to-protected`\): reproduced apart \| /);
    expect(s).toMatch(/\| `no_host_triggered_panic` \| ➖ its known findings left out \(`cmdq-disabled-while-smmu-enabled-panics`, `host-command-stops-hyp-queue`, `filtered-host-command-panics`, `host-register-access-panics`\): reproduced apart \| ✅ holds \(6 runs\) \|/);
    expect(s).toMatch(/- design v6-hide-ats: every property as expected/);
    // A declared break a 6-run campaign misses is shown by the verdict table's evidence, labelled so.
    expect(s).toMatch(/\| `dma_availability` \|.*\| ✅ breaks as expected \(missed by 6 runs; shown by its verdict trigger, 2 ops\) \|/);
    // v6-atc-inv's only break is the forged Translated DMA: left out, reproduced apart.
    expect(s).toMatch(/\| `dma_isolation` \|( [^|]+ \|){3} ➖ its known findings left out \(`forged-translated-dma`\): reproduced apart \|/);
    // Host-can-panic findings are shown apart from the isolation ones.
    expect(s).toMatch(/- known findings \(isolation\): 6\/6 reproduced as expected counterexamples\n- known findings \(host can panic the hypervisor\): 4\/4 reproduced as expected counterexamples\n/);
    const isolation = s.indexOf('### Isolation: the host can reach protected memory');
    const panics = s.indexOf('### Host can panic the hypervisor');
    expect(isolation).toBeGreaterThan(0);
    expect(panics).toBeGreaterThan(isolation);
    const isolationTable = s.slice(isolation, panics);
    const panicTable = s.slice(panics, s.indexOf('\n- `', panics));
    expect(isolationTable).toMatch(/\| `v4-hook-placement-misses-guest-donation` \| `dma_isolation` \| `host_donate_guest` \| `v6-hide-ats` without `hookPlacement` \| ✅ reproduced \| (search|trigger).* \| \d+ → \d+ \|/);
    expect(isolationTable).toMatch(/\| `smmu-disabled-skips-tlbi` \| `dma_isolation` \| .* \| `v6-hide-ats` without `invalidateWhileDisabled` \| ✅ reproduced \| (search|trigger).* \| \d+ → \d+ \|/);
    expect(isolationTable).not.toMatch(/no_host_triggered_panic/);
    for (const name of ['cmdq-disabled-while-smmu-enabled-panics', 'host-command-stops-hyp-queue', 'filtered-host-command-panics', 'host-register-access-panics']) {
      expect(panicTable).toMatch(new RegExp(`\\| \`${name}\` \\| \`no_host_triggered_panic\` \\| .* \\| \`v6-posted\` \\| ✅ reproduced \\| `));
    }
    expect(panicTable).not.toMatch(/`dma_isolation`/);
    // The rejected command, by search (the other WARN sites silenced) or by its trigger, shrunk to it.
    expect(panicTable).toMatch(/\| `host-command-stops-hyp-queue` \| .* \| ✅ reproduced \| (search, run \d+ |trigger ).*\| \d+ → 1 \|/);
    expect(s).toMatch(/- `filtered-host-command-panics` \(host can panic the hypervisor\): /);
    expect(s).toMatch(/```json\n  \{"kind":"host_mmio_write","smmu":0,"offset":144,"value":0\}\n  ```/);
    // A race (a schedule at the yield points) is out of a 6-run campaign's reach: its trigger stands in.
    expect(s).toMatch(/\| `atc-inv-before-tlbi-sync` \| `dma_isolation` \| ✅ caught by its trigger \|/);
    expect(s).toMatch(/- `atc-inv-before-tlbi-sync`: fires with the bug, clean without — /);
    const json = a.json as { knownFindings: { name: string; check: string; foundBy: string | null; unexplained: unknown }[]; filtered: unknown[] };
    expect(json.knownFindings.map((f) => [f.name, f.check, f.foundBy !== null, f.unexplained])).toEqual([
      ['v4-hook-placement-misses-guest-donation', 'dma_isolation', true, null],
      ['smmu-disabled-skips-tlbi', 'dma_isolation', true, null],
      ['cmdq-disabled-while-smmu-enabled-panics', 'no_host_triggered_panic', true, null],
      ['host-command-stops-hyp-queue', 'no_host_triggered_panic', true, null],
      ['filtered-host-command-panics', 'no_host_triggered_panic', true, null],
      ['posted-ste-writer-not-hitless', 'smmu_config_coherent', true, null],
      ['host-register-access-panics', 'no_host_triggered_panic', true, null],
      ['irq-cfg-msi-write-to-protected', 'smmu_write_isolation', true, null],
      ['cmd-sync-msi-write-to-protected', 'smmu_write_isolation', true, null],
      ['forged-translated-dma', 'dma_isolation', true, null],
    ]);
    expect(json.filtered).toHaveLength(10);
  });

  it('says why the known findings are not reproduced on a machine without an SMMU', async () => {
    const r = await report([...quick.map((x) => (x === '6' ? '1' : x)), '--no-bugs'].filter((x, i, all) => !(x === '--bug-runs' || all[i - 1] === '--bug-runs')));
    expect(r.summary).toMatch(/## Known findings \(expected counterexamples\)\n\nNot reproduced here: the small machine has no SMMU\./);
    expect(r.summary).not.toMatch(/leave out every generated step/);
    // The IOMMU checks cannot apply there: n/a, never "holds".
    expect(r.summary).toMatch(/\| `dma_isolation` \| n\/a \(no SMMU\) \|/);
    expect(r.summary).toMatch(/\| `smmu_write_isolation` \| n\/a \(no SMMU\) \|/);
    expect(r.summary).toMatch(/\| `refinement_ret` \| ✅ holds/);
  });

  it('shows a bug that escaped, and exits 1', async () => {
    const r = await report([...quick.filter((x, i, all) => x !== '--bug-runs' && all[i - 1] !== '--bug-runs'), '--bug-runs', '1']);
    expect(r.code).toBe(1);
    expect(r.summary).toMatch(/❌ \*\*missed\*\*/);
    expect(r.summary).toMatch(/^\*\*❌ something is not as expected\*\*$/m);
  });

  it('refuses to merge shards of one design from different machines or seeds, and judges a one-machine merge by that machine', async () => {
    const quiet = { out: { write: () => true }, err: { write: () => true }, corpusRoot: join(base, 'none') };
    const mixed = mkdtempSync(join(base, 'mixed-'));
    await verify(['--runs', '2', '--seed', '4', '--machine', 'small', '--max-ops', '6', '--results-dir', join(mixed, 'a'), '--corpus-dir', join(base, 'cx')], quiet);
    await verify(['--runs', '2', '--seed', '4', '--machine', 'small-smmu-no-ats', '--max-ops', '6', '--results-dir', join(mixed, 'b'), '--corpus-dir', join(base, 'cx')], quiet);
    errors.length = 0;
    const r = await report(['--merge', mixed, '--no-bugs']);
    expect(r.code).toBe(2);
    expect(errors.join('\n')).toMatch(/--merge: the shards of design v6-posted differ in machine \(small, small-smmu-no-ats\): they are different campaigns/);
    // One machine with an SMMU: its hardware-dependent verdicts apply, and a declared break the tiny
    // campaign missed is shown by the verdict table's evidence.
    const one = await report(['--merge', join(mixed, 'b'), '--no-bugs']);
    expect(one.summary).toMatch(/- design v6-posted: every property as expected/);
    expect(one.summary).toMatch(/\| `dma_isolation` \| ✅ breaks as expected \(missed by 2 runs; shown by its verdict trigger/);
  });

  it('merges verify shards with --merge, and notices a missing shard', async () => {
    const shards = mkdtempSync(join(base, 'shards-'));
    const quiet = { out: { write: () => true }, err: { write: () => true }, corpusRoot: join(base, 'none') };
    for (const shard of ['1/3', '3/3']) await verify(['--runs', '6', '--seed', '8', '--machine', 'small', '--max-ops', '10', '--shard', shard, '--results-dir', join(shards, shard.replace('/', 'of')), '--corpus-dir', join(base, 'cx')], quiet);
    const r = await report(['--merge', shards, '--no-bugs']);
    expect(r.code).toBe(0);
    expect(r.summary).toMatch(/campaigns merged from 2 shard result\(s\)/);
    expect(r.summary).toMatch(/\| `v6-posted` \| small \| 4 \| \d+ \| 0 \| 0 \| 2 \(missing 2\/3\) \|/);
    expect(r.summary).toMatch(/## Injected bugs \(kill matrix\)\n\nNot run: `--no-bugs`/);
    // A bug campaign among the shards fills its row of the kill matrix.
    await verify(['--runs', '8', '--seed', '2', '--machine', 'small', '--bug', 'unshare-pinned-wrong-errno', '--results-dir', join(shards, 'bug'), '--corpus-dir', join(base, 'cx')], quiet);
    const withBug = await report(['--merge', shards, '--no-bugs']);
    expect(withBug.summary).toMatch(/\| `unshare-pinned-wrong-errno` \| `refinement_ret` \| ✅ caught \| \*\*✔\*\* 3\/\d+ \|/);
    expect(withBug.summary).toMatch(/\| `no-host-tlbi-on-donation` \| `host_cpu_isolation` \| not run \|/);
    expect(withBug.summary).toMatch(/- injected bugs: 1\/1 caught by their check/);
  });

  it('refuses bad inputs with the file and field, exit 2', async () => {
    const shards = mkdtempSync(join(base, 'bad-'));
    writeFileSync(join(shards, 'x.json'), JSON.stringify({ format: 1, design: 'v6-posted' }));
    errors.length = 0;
    expect((await report(['--merge', shards])).code).toBe(2);
    expect(errors.join('\n')).toMatch(/x\.json: bug: expected string, got undefined/);
    const dup = mkdtempSync(join(base, 'dup-'));
    const quiet = { out: { write: () => true }, err: { write: () => true }, corpusRoot: join(base, 'none') };
    for (const d of ['a', 'b']) await verify(['--runs', '1', '--seed', '8', '--machine', 'small', '--max-ops', '4', '--results-dir', join(dup, d)], quiet);
    expect((await report(['--merge', dup])).code).toBe(2);
    expect(errors.at(-1)).toMatch(/the same shard as/);
    const badCoverage = join(base, 'cov.json');
    writeFileSync(badCoverage, JSON.stringify({ total: { lines: { total: 'many' } } }));
    expect((await report([...quick.slice(0, 10), '--coverage', badCoverage])).code).toBe(2);
    expect(errors.join('\n')).toMatch(/cov\.json: total\.lines\.total: expected number, got "many"/);
    for (const [argv, message] of [
      [['--merge', join(base, 'nothing-here')], /--merge: .* does not exist/],
      [['--runs', '0'], /--runs: expected an integer in \[1, 10000000\]/],
      [['--no-bugs', '--bug-runs', '3'], /--no-bugs and --bug-runs exclude each other/],
      [['--merge', base, '--seed', '2'], /--merge takes the campaigns from DIR/],
      [['--bench', join(base, 'missing.json')], /--bench: .* does not exist/],
    ] as const) {
      expect((await report([...argv])).code).toBe(2);
      expect(errors.join('\n')).toMatch(message);
    }
  });
});
