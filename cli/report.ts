/**
 * `npm run report`: writes reports/out/summary.md (a pull-request comment), report.json, and a
 * copy of the HTML code coverage (reports/out/coverage/). Campaigns are run here with fixed seeds,
 * or merged from `verify` shard results with --merge DIR. Exit 0 when everything is as expected,
 * 1 when a property, a bug or a known finding is not, 2 for a usage error or a bad input file.
 */
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CampaignResult, decodeCampaignResult } from '../conformance/campaign-result.js';
import { CORPUS_DIR } from '../conformance/corpus.js';
import { readJsonInput } from '../conformance/input-file.js';
import { machineNames, namedMachine } from '../conformance/machines.js';
import { parseSeed } from '../conformance/seeds.js';
import { readBenchFigures } from '../reports/bench.js';
import { buildReport, overallVerdict } from '../reports/build.js';
import { readCoverageSummary } from '../reports/coverage.js';
import { renderSummary, reportJson } from '../reports/summary.js';
import { intOption, oneLine, parseArgs, userPath } from './args.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
// The SMMU machine with an ATS device, so that every DMA property has something to hold or break
// (on `small` they hold vacuously) and the ATS verdicts of the variants apply.
export const DEFAULTS = { seed: 1, runs: 300, bugRuns: 200, machine: 'small-smmu', maxOps: 40 } as const;

const USAGE = `usage: npm run report -- [options]

  --merge DIR        use the campaign results in DIR (recursively; written by npm run verify)
                     instead of running campaigns here
  --seed S           base seed of the campaigns run here (default ${DEFAULTS.seed})
  --runs N           runs per design variant (default ${DEFAULTS.runs})
  --bug-runs N       runs per injected bug for the kill matrix (default ${DEFAULTS.bugRuns})
  --no-bugs          no bug campaigns (bug results found under --merge are still shown)
  --machine NAME     ${machineNames().join(' | ')} (default ${DEFAULTS.machine});
                     on a machine with an SMMU the steps that reach the known findings are left
                     out of the campaigns, and the findings are reproduced apart (the isolation
                     ones and the host-can-panic-the-hypervisor ones in tables of their own)
  --max-ops N        operations per generated sequence at most (default ${DEFAULTS.maxOps})
  --coverage FILE    vitest json-summary (default coverage/coverage-summary.json, from npm run coverage)
  --bench FILE       output of npm run bench -- --json (default reports/out/bench.json)
  --corpus DIR       regression corpus to replay (default conformance/corpus)
  --out DIR          where summary.md, report.json and coverage/ go (default reports/out)
  --help

exit code: 0 everything as expected, 1 a property, bug or known-finding verdict is not, 2 usage error or bad input`;

/** More directory entries than a results tree ever has: --merge was given a wrong directory (`/`). */
const MAX_MERGE_ENTRIES = 100_000;

function listJson(dir: string): string[] | { error: string } {
  const out: string[] = [];
  let entries = 0;
  const walk = (d: string): boolean => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (++entries > MAX_MERGE_ENTRIES) return false;
      if (e.isDirectory()) {
        if (!walk(join(d, e.name))) return false;
      } else if (e.isFile() && e.name.endsWith('.json')) out.push(join(d, e.name));
    }
    return true;
  };
  return walk(dir) ? out : { error: `more than ${MAX_MERGE_ENTRIES} files and directories under ${dir}: not a directory of campaign results` };
}

/** Why `dir` is not a directory one can list, or undefined. */
function directoryError(dir: string): string | undefined {
  try {
    return statSync(dir).isDirectory() ? undefined : `${dir} is not a directory`;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? `${dir} does not exist` : `cannot read ${dir}: ${code ?? String(e)}`;
  }
}

/** More result files than a CI matrix ever writes: a wrong directory. */
export const MAX_RESULT_FILES = 10_000;

/** Reads every shard result under `dir`; a bad file is an error naming the file and field. */
export function readShardResults(dir: string): { ok: true; results: CampaignResult[] } | { ok: false; errors: string[] } {
  const dirError = directoryError(dir);
  if (dirError !== undefined) return { ok: false, errors: [`--merge: ${dirError}`] };
  const results: CampaignResult[] = [];
  const seen = new Map<string, string>();
  let files: string[];
  try {
    const listed = listJson(dir);
    if (!Array.isArray(listed)) return { ok: false, errors: [`--merge: ${listed.error}`] };
    files = listed;
  } catch (e) {
    return { ok: false, errors: [`--merge: cannot list ${dir}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`] };
  }
  for (const file of files) {
    if (results.length >= MAX_RESULT_FILES) return { ok: false, errors: [`--merge: more than ${MAX_RESULT_FILES} result files under ${dir}`] };
    const read = readJsonInput(file);
    if (read.ok === 'missing') return { ok: false, errors: [`cannot read ${file}: ENOENT`] };
    if (!read.ok) return { ok: false, errors: [read.error] };
    const r = decodeCampaignResult(file, read.json);
    if (!r.ok) return r;
    const v = r.value;
    const key = `${v.design}/${v.bug}/${v.machine}/${v.maxOps}/${v.baseSeed}/${v.shard.index}/${v.shard.count}/${v.budget.runs}`;
    const prev = seen.get(key);
    // The same shard twice would count its runs twice.
    if (prev !== undefined) return { ok: false, errors: [`${file}: the same shard as ${prev} (design ${v.design}, seed ${v.baseSeed}, shard ${v.shard.index}/${v.shard.count})`] };
    seen.set(key, file);
    results.push(v);
  }
  if (results.length === 0) return { ok: false, errors: [`--merge: no campaign results (*.json) under ${dir}`] };
  const conflict = mixedCampaign(results);
  if (conflict !== undefined) return { ok: false, errors: [`--merge: ${conflict}`] };
  return { ok: true, results };
}

/**
 * The shards of one design (and bug) are one campaign only when they ran on the same machine, base
 * seed, operation bound and schedule mode: anything else would add up different experiments (and
 * judge them by one machine's hardware-dependent verdicts).
 */
function mixedCampaign(results: readonly CampaignResult[]): string | undefined {
  const groups = new Map<string, CampaignResult[]>();
  for (const r of results) {
    const key = `${r.design}\u0000${r.bug ?? ''}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  for (const group of groups.values()) {
    const first = group[0] as CampaignResult;
    const what = `design ${first.design}${first.bug === null ? '' : ` with bug ${first.bug}`}`;
    for (const [field, of] of [
      ['machine', (r: CampaignResult) => r.machine],
      ['base seed', (r: CampaignResult) => String(r.baseSeed)],
      ['--max-ops', (r: CampaignResult) => String(r.maxOps)],
      ['--interleave', (r: CampaignResult) => String(r.interleave === true)],
      ['--host-domains', (r: CampaignResult) => String(r.hostDomains === true)],
      ['--guided', (r: CampaignResult) => String(r.guided === true)],
    ] as const) {
      const values = [...new Set(group.map(of))];
      if (values.length > 1) return `the shards of ${what} differ in ${field} (${values.join(', ')}): they are different campaigns; merge each in its own directory`;
    }
  }
  return undefined;
}

export interface ReportIo {
  readonly log: (line: string) => void;
  readonly error: (line: string) => void;
}

export async function main(argv: readonly string[], io: ReportIo = { log: (l) => console.log(l), error: (l) => console.error(l) }): Promise<number> {
  const args = parseArgs(argv, {
    merge: 'value', seed: 'value', runs: 'value', 'bug-runs': 'value', 'no-bugs': 'flag', machine: 'value', 'max-ops': 'value',
    coverage: 'value', bench: 'value', corpus: 'value', out: 'value', help: 'flag',
  });
  const usage = (error: string) => {
    io.error(`${error}\n${USAGE}`);
    return 2;
  };
  if (!args.ok) return usage(args.error);
  if (args.flags.has('help')) {
    io.log(USAGE);
    return 0;
  }
  if (args.positional.length > 0) return usage(`unexpected argument ${JSON.stringify(args.positional[0])}`);
  const v = args.values;
  const seedText = v.get('seed');
  const seed = seedText === undefined ? DEFAULTS.seed : parseSeed(seedText);
  if (seed === undefined) return usage(`--seed: expected an integer in [0, 2^32), got ${JSON.stringify(seedText)}`);
  const runs = intOption(v, 'runs', 1, 1e7);
  if (!runs.ok) return usage(runs.error);
  const bugRuns = intOption(v, 'bug-runs', 1, 1e7);
  if (!bugRuns.ok) return usage(bugRuns.error);
  const maxOps = intOption(v, 'max-ops', 1, 1000);
  if (!maxOps.ok) return usage(maxOps.error);
  const machine = v.get('machine') ?? DEFAULTS.machine;
  if (namedMachine(machine) === undefined) return usage(`--machine: expected one of ${machineNames().join(', ')}, got ${JSON.stringify(machine)}`);
  if (args.flags.has('no-bugs') && bugRuns.value !== undefined) return usage('--no-bugs and --bug-runs exclude each other');
  const mergeArg = v.get('merge');
  const mergeDir = mergeArg === undefined ? undefined : userPath(mergeArg);
  if (mergeDir !== undefined && (runs.value !== undefined || seedText !== undefined)) return usage('--merge takes the campaigns from DIR: --runs and --seed would be ignored');

  let results: CampaignResult[] | undefined;
  if (mergeDir !== undefined) {
    const r = readShardResults(mergeDir);
    if (!r.ok) {
      io.error(oneLine(r.errors));
      return 2;
    }
    results = r.results;
  }
  const coverageArg = v.get('coverage');
  const coveragePath = coverageArg === undefined ? join(ROOT, 'coverage', 'coverage-summary.json') : userPath(coverageArg);
  const coverage = readCoverageSummary(coveragePath, ROOT);
  if (coverage.ok === false) {
    io.error(oneLine(coverage.errors));
    return 2;
  }
  if (coverage.ok === 'missing' && v.has('coverage')) return usage(`--coverage: ${coveragePath} does not exist`);
  const benchArg = v.get('bench');
  const benchPath = benchArg === undefined ? join(ROOT, 'reports', 'out', 'bench.json') : userPath(benchArg);
  const bench = readBenchFigures(benchPath);
  if (bench.ok === false) {
    io.error(oneLine(bench.errors));
    return 2;
  }
  if (bench.ok === 'missing' && v.has('bench')) return usage(`--bench: ${benchPath} does not exist`);
  const corpusArg = v.get('corpus');
  const corpusDir = corpusArg === undefined ? CORPUS_DIR : userPath(corpusArg);
  const corpusError = directoryError(corpusDir);
  if (corpusError !== undefined) return usage(`--corpus: ${corpusError}`);

  const data = await buildReport({
    source: results === undefined || mergeDir === undefined ? { kind: 'run', machine, seed, runs: runs.value ?? DEFAULTS.runs, maxOps: maxOps.value ?? DEFAULTS.maxOps } : { kind: 'merge', dir: mergeDir, results },
    bugRuns: args.flags.has('no-bugs') ? null : (bugRuns.value ?? DEFAULTS.bugRuns),
    bugMachine: machine,
    bugSeed: seed,
    bugMaxOps: maxOps.value ?? DEFAULTS.maxOps,
    corpusDir,
    coverage: coverage.ok === true ? coverage.value : null,
    bench: bench.ok === true ? bench.value : null,
  });
  const outArg = v.get('out');
  const outDir = outArg === undefined ? join(ROOT, 'reports', 'out') : userPath(outArg);
  const summary = renderSummary(data);
  try {
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, 'summary.md'), summary);
    writeFileSync(join(outDir, 'report.json'), reportJson(data));
    const html = join(coveragePath, '..', 'index.html');
    if (coverage.ok === true && existsSync(html)) {
      rmSync(join(outDir, 'coverage'), { recursive: true, force: true });
      cpSync(join(coveragePath, '..'), join(outDir, 'coverage'), { recursive: true });
    }
  } catch (e) {
    io.error(`cannot write to ${outDir}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    return 2;
  }
  const verdict = overallVerdict(data);
  for (const line of verdict.lines) io.log(line);
  const shown = relative(process.cwd(), outDir) || '.';
  io.log(`summary: ${join(shown, 'summary.md')} (${Buffer.byteLength(summary)} bytes), data: ${join(shown, 'report.json')}${coverage.ok === true ? `, coverage: ${join(shown, 'coverage', 'index.html')}` : ''}`);
  return verdict.ok ? 0 : 1;
}

if (process.argv[1] !== undefined && /report\.[jt]s$/.test(process.argv[1])) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`report failed: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 2;
    },
  );
}
