/**
 * `npm run verify`: a campaign of generated operation sequences against the implementation, with
 * every check after every step (ARCHITECTURE §8). Prints its base seed (rerun with --seed), a
 * progress line, the verdict per check, and where the result and any counterexample went. Each new
 * counterexample is shrunk and written to conformance/corpus/new/ as a corpus file. With --json the
 * result JSON is the only thing on stdout. Exit 0 clean, 1 violation, 2 usage error.
 */
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CampaignProgress, type CampaignSpec, type FoundCounterexample, campaignRunOptions, findBug, runCampaign } from '../conformance/campaign.js';
import { type CampaignResult, resultText } from '../conformance/campaign-result.js';
import { type CorpusEntry, CORPUS_FORMAT, bugMachineError, encodeCorpusEntry } from '../conformance/corpus-format.js';
import { CORPUS_DIR, listCorpusFiles } from '../conformance/corpus.js';
import { DEFAULT_DESIGN, designNames, findDesign } from '../conformance/designs.js';
import { machineNames, namedMachine } from '../conformance/machines.js';
import { checkNames } from '../conformance/names.js';
import { clockSeed, fnv1a, parseSeed } from '../conformance/seeds.js';
import { checkApplies } from '../properties/checks.js';
import { ALL_BUGS } from '../properties/bugs/index.js';
import { DMA_BUGS } from '../properties/bugs/dma-bugs.js';
import { runOperations } from '../properties/runner.js';
import { KNOWN_FINDINGS, knownPanicSites, notAKnownFinding } from '../properties/known-findings.js';
import { intOption, parseArgs, userPath } from './args.js';
import { runCampaignInWorkers } from './campaign-workers.js';
import { availableParallelism } from 'node:os';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const DEFAULT_RESULTS_DIR = join(ROOT, 'reports', 'out', 'shards');
export const DEFAULT_TIME_SECONDS = 20;
export const DEFAULT_MAX_OPS = 40;

const USAGE = `usage: npm run verify -- [options]

  --design NAME        design variant (${designNames().join(', ')}; default ${DEFAULT_DESIGN})
  --time SECONDS       run for this long (default ${DEFAULT_TIME_SECONDS} s) ...
  --runs N             ... or exactly N runs (deterministic; with --shard, N in total)
  --seed S             base seed (decimal or 0x-hex, < 2^32); default: from the clock, printed
  --shard i/n          run shard i of n (1-based): run numbers ≡ i-1 (mod n); give every shard the same --seed
  --max-ops N          operations per generated sequence at most (default ${DEFAULT_MAX_OPS})
  --machine NAME       ${machineNames().join(' | ')} (default: default)
  --bug NAME           inject a test-only bug (${ALL_BUGS.map((b) => b.name).join(', ')});
                       the design defaults to the one the bug is written against (v6-hardened for
                       a DMA bug), a design that breaks the bug's check by itself is refused, and
                       on a machine with an SMMU the known findings' steps are left out, as the zoo does
  --interleave         give every run a schedule of hardware actions (DMA, SMMU fills, ATS) at
                       the yield points of its steps, to find races inside hypercalls
  --guided             coverage-guided generation: runs that reach a new abstract coverage key are
                       kept and about half of the later runs extend a kept run's prefix
  --host-domains       also generate the host driver's DMA-API steps (attach a device to a
                       stage-1 domain, map/unmap IOVAs with its TLBI_NH_VA, detach): nested
                       streams through the shadow idmap, combined S1+S2 TLB entries
  --skip-known-findings  leave out the generated steps that reach a known finding, and end a
                       run silently at a known finding's WARN site (counted as a known panic),
                       to hunt for new ones; the known findings:
${KNOWN_FINDINGS.map((f) => `                         ${f.name} (${f.check === 'no_host_triggered_panic' ? 'host can panic the hypervisor' : f.check})`).join('\n')}
  --corpus-dir DIR     where counterexamples go (default conformance/corpus/new)
  --results-dir DIR    where the result JSON goes (default reports/out/shards)
  --progress-every S   seconds between progress lines when not on a terminal (default 10)
  --workers N          worker threads the shard is split across (default: the number of cores);
                       a --runs campaign gives the same result with any N (timings aside)
  --json               print the campaign result (the result file's JSON) on stdout, and
                       everything else (settings, progress, verdicts, counterexamples) on stderr
  --help

exit code: 0 no violation, 1 violation found, 2 usage error`;

export interface Output {
  write(text: string): unknown;
  readonly isTTY?: boolean;
}

export interface VerifyIo {
  readonly out: Output;
  readonly err: Output;
  /** Install SIGINT and SIGTERM handlers (the CLI does; tests drive `shouldStop` instead). */
  readonly handleSigint?: boolean;
  readonly shouldStop?: () => boolean;
  /** Wall clock for the default seed and the provenance date. */
  readonly now?: () => Date;
  /** The corpus a counterexample may already be in (default conformance/corpus). */
  readonly corpusRoot?: string;
  /** `--workers` when not given: the CLI passes the number of cores; in-process callers get 1. */
  readonly defaultWorkers?: number;
}

interface Settings {
  readonly design: string;
  readonly machineName: string;
  readonly seed: number;
  readonly seedGiven: boolean;
  readonly shard: { index: number; count: number };
  readonly runs?: number;
  readonly timeSeconds?: number;
  readonly maxOps: number;
  readonly bug?: string;
  readonly skipKnownFindings: boolean;
  readonly interleave: boolean;
  readonly hostDomains: boolean;
  readonly guided: boolean;
  readonly corpusDir: string;
  readonly resultsDir: string;
  readonly progressEverySeconds: number;
  /** The result JSON on stdout, every other line on stderr (a pipe sees only the JSON). */
  readonly json: boolean;
  /** Worker threads the shard is split across (1: this thread). */
  readonly workers: number;
}

function parseSettings(argv: readonly string[], now: Date, defaultWorkers: number): { ok: true; settings: Settings } | { ok: false; error: string } | { ok: 'help' } {
  const args = parseArgs(argv, {
    design: 'value', time: 'value', runs: 'value', seed: 'value', shard: 'value', 'max-ops': 'value', machine: 'value', bug: 'value',
    'corpus-dir': 'value', 'results-dir': 'value', 'progress-every': 'value', help: 'flag', 'skip-known-findings': 'flag', interleave: 'flag', 'host-domains': 'flag', guided: 'flag', json: 'flag', workers: 'value',
  });
  if (!args.ok) return args;
  if (args.flags.has('help')) return { ok: 'help' };
  if (args.positional.length > 0) return { ok: false, error: `unexpected argument ${JSON.stringify(args.positional[0])}` };
  const v = args.values;
  const givenDesign = v.get('design');
  if (givenDesign !== undefined && findDesign(givenDesign) === undefined) return { ok: false, error: `--design: unknown design ${JSON.stringify(givenDesign)} (known: ${designNames().join(', ')})` };
  const machineName = v.get('machine') ?? 'default';
  const machine = namedMachine(machineName);
  if (machine === undefined) return { ok: false, error: `--machine: expected one of ${machineNames().join(', ')}, got ${JSON.stringify(machineName)}` };
  const bug = v.get('bug');
  const injected = bug === undefined ? undefined : findBug(bug);
  if (bug !== undefined && injected === undefined) return { ok: false, error: `--bug: unknown bug ${JSON.stringify(bug)} (known: ${ALL_BUGS.map((b) => b.name).join(', ')})` };
  const bugError = bug === undefined ? undefined : bugMachineError(bug, machine);
  if (bugError !== undefined) return { ok: false, error: `--bug: ${bugError}: use --machine with an SMMU` };
  // A bug is written against a design (a DMA bug, unless it names one, against v6-hardened, where
  // its check holds without it): that design is the default, and a design that breaks the bug's
  // check by itself would report the bug "caught" for nothing.
  const bugHome = injected === undefined ? undefined : (injected.design ?? (machine.smmu !== undefined && DMA_BUGS.includes(injected as (typeof DMA_BUGS)[number]) ? 'v6-hardened' : undefined));
  const design = givenDesign ?? bugHome ?? DEFAULT_DESIGN;
  // On its home design and machine the bug's clean runs pass once the known findings' steps are
  // left out (the zoo proves it), so --bug on an SMMU machine leaves them out, as `npm run zoo` does.
  let skipKnownFindings = args.flags.has('skip-known-findings');
  if (injected !== undefined) {
    if (injected.design !== undefined && design !== injected.design) return { ok: false, error: `--bug: ${injected.name} is written against design ${injected.design}: use --design ${injected.design} (or leave --design out)` };
    const zooProven = design === bugHome && machineName === (injected.machine ?? 'small');
    if (!zooProven && findDesign(design)?.expectedToBreakOn(machine).includes(injected.caughtBy) === true) {
      return { ok: false, error: `--bug: design ${design} breaks ${injected.caughtBy} on machine ${machineName} without the bug, so a detection would say nothing about ${injected.name}: use --design ${bugHome ?? 'v6-hardened'} (or leave --design out)` };
    }
    if (machine.smmu !== undefined) skipKnownFindings = true;
  }
  for (const dirOption of ['corpus-dir', 'results-dir']) {
    const given = v.get(dirOption);
    const dir = given === undefined ? undefined : userPath(given);
    if (dir !== undefined && existsSync(dir) && !statSync(dir).isDirectory()) return { ok: false, error: `--${dirOption}: ${dir} is not a directory` };
  }
  const runs = intOption(v, 'runs', 1, 1e9);
  if (!runs.ok) return runs;
  const maxOps = intOption(v, 'max-ops', 1, 1000);
  if (!maxOps.ok) return maxOps;
  const progressEvery = intOption(v, 'progress-every', 1, 86400);
  if (!progressEvery.ok) return progressEvery;
  const workers = intOption(v, 'workers', 1, 64);
  if (!workers.ok) return workers;
  let timeSeconds: number | undefined;
  const timeText = v.get('time');
  if (timeText !== undefined) {
    timeSeconds = Number(timeText);
    if (!/^\d+(\.\d+)?$/.test(timeText) || timeSeconds <= 0 || timeSeconds > 7 * 86400) return { ok: false, error: `--time: expected a number of seconds > 0, got ${JSON.stringify(timeText)}` };
  }
  if (timeSeconds !== undefined && runs.value !== undefined) return { ok: false, error: '--time and --runs exclude each other' };
  const seedText = v.get('seed');
  const seed = seedText === undefined ? clockSeed(now.getTime()) : parseSeed(seedText);
  if (seed === undefined) return { ok: false, error: `--seed: expected an integer in [0, 2^32) (decimal or 0x-hex), got ${JSON.stringify(seedText)}` };
  let shard = { index: 1, count: 1 };
  const shardText = v.get('shard');
  if (shardText !== undefined) {
    const m = /^(\d+)\/(\d+)$/.exec(shardText);
    const index = Number(m?.[1]);
    const count = Number(m?.[2]);
    if (m === null || count < 1 || count > 10000 || index < 1 || index > count) return { ok: false, error: `--shard: expected i/n with 1 <= i <= n <= 10000, got ${JSON.stringify(shardText)}` };
    shard = { index, count };
  }
  return {
    ok: true,
    settings: {
      design,
      machineName,
      seed,
      seedGiven: seedText !== undefined,
      shard,
      ...(runs.value === undefined ? { timeSeconds: timeSeconds ?? DEFAULT_TIME_SECONDS } : { runs: runs.value }),
      maxOps: maxOps.value ?? DEFAULT_MAX_OPS,
      ...(bug === undefined ? {} : { bug }),
      skipKnownFindings,
      interleave: args.flags.has('interleave'),
      hostDomains: args.flags.has('host-domains'),
      guided: args.flags.has('guided'),
      corpusDir: userPath(v.get('corpus-dir') ?? join(CORPUS_DIR, 'new')),
      resultsDir: userPath(v.get('results-dir') ?? DEFAULT_RESULTS_DIR),
      progressEverySeconds: progressEvery.value ?? 10,
      json: args.flags.has('json'),
      workers: workers.value ?? defaultWorkers,
    },
  };
}

/** The campaign's spec (also used to replay a counterexample with the same run options). */
function campaignSpec(s: Settings, machine: NonNullable<ReturnType<typeof namedMachine>>): CampaignSpec {
  return {
    design: s.design,
    machineName: s.machineName,
    machine,
    maxOps: s.maxOps,
    baseSeed: s.seed,
    shard: s.shard,
    ...(s.runs === undefined ? { timeSeconds: s.timeSeconds as number } : { runs: s.runs }),
    ...(s.bug === undefined ? {} : { bug: s.bug }),
    ...(s.interleave ? { interleave: true } : {}),
    ...(s.hostDomains ? { hostDomains: true } : {}),
    ...(s.guided ? { guided: true } : {}),
    // A run that reaches a known panic site ends there silently (counted as a known panic).
    ...(s.skipKnownFindings ? { knownPanicSites: knownPanicSites() } : {}),
  };
}

/** The command line that repeats this campaign exactly (seed made explicit). */
export function campaignCommand(s: Settings): string {
  const parts = ['npm run verify --', `--seed ${s.seed}`, `--machine ${s.machineName}`, `--design ${s.design}`, `--max-ops ${s.maxOps}`];
  parts.push(s.runs !== undefined ? `--runs ${s.runs}` : `--time ${s.timeSeconds}`);
  if (s.shard.count > 1) parts.push(`--shard ${s.shard.index}/${s.shard.count}`);
  if (s.bug !== undefined) parts.push(`--bug ${s.bug}`);
  if (s.interleave) parts.push('--interleave');
  if (s.hostDomains) parts.push('--host-domains');
  if (s.guided) parts.push('--guided');
  if (s.skipKnownFindings) parts.push('--skip-known-findings');
  return parts.join(' ');
}

function display(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel.startsWith('..') ? path : rel;
}

function progressText(p: CampaignProgress, s: Settings): string {
  const secs = p.elapsedMs / 1000;
  const budget = s.runs !== undefined ? `${p.runs}/${Math.ceil((s.runs - (s.shard.index - 1)) / s.shard.count)} runs` : `${secs.toFixed(0)}/${s.timeSeconds} s`;
  const rate = secs > 0 ? Math.round(p.operations / secs) : 0;
  const known = s.skipKnownFindings ? `  known panics ${p.knownPanics}` : '';
  // Resident memory, so that a long campaign shows its health (README "Campaigns").
  const keys = p.coverageKeys === undefined ? '' : `  keys ${p.coverageKeys}`;
  return `runs ${p.runs}  operations ${p.operations}  ops/s ${rate}  violations ${p.failedRuns}${known}${keys}  [${budget}]  rss ${Math.round(process.memoryUsage.rss() / 2 ** 20)} MiB`;
}

/** Writes a counterexample as a corpus file, unless the corpus has it already; returns its path. */
function writeCounterexample(c: FoundCounterexample, s: Settings, now: Date, corpusRoot: string, say: (line: string) => void): string | null {
  const machine = namedMachine(s.machineName);
  if (machine === undefined) return null;
  const bug = s.bug === undefined ? undefined : findBug(s.bug);
  const name = `${s.design}-${s.bug ?? 'impl'}-${c.check}-${fnv1a(JSON.stringify(c.schedule === undefined ? c.operations : [c.operations, c.schedule]))}.json`;
  const existing = [corpusRoot, s.corpusDir].filter(existsSync).flatMap((d) => listCorpusFiles(d)).find((f) => basename(f) === name);
  if (existing !== undefined) {
    say(`counterexample for ${c.check} (${c.operations.length} operations) is already in the corpus: ${display(existing)}`);
    return display(existing);
  }
  const replayed = runOperations(machine, c.operations, campaignRunOptions(campaignSpec(s, machine), c.schedule === undefined ? {} : { schedule: c.schedule }));
  const message = replayed.steps.flatMap((st) => st.violations).find((v) => v.check === c.check)?.message ?? c.check;
  const description = (bug !== undefined ? `${bug.description}; caught by ${c.check}` : `${c.check}: ${message}`).replace(/\s+/g, ' ').slice(0, 300);
  const entry: CorpusEntry = {
    format: CORPUS_FORMAT,
    design: s.design,
    ...(s.bug === undefined ? {} : { bug: s.bug }),
    config: machine,
    expect: { violates: c.check },
    provenance: {
      how: `${campaignCommand(s)} (run ${c.run})`,
      date: now.toISOString().slice(0, 10),
      description,
      seed: c.seed,
      path: c.path,
      run: c.run,
      baseSeed: s.seed,
      originalLength: c.originalLength,
    },
    operations: c.operations,
    ...(c.schedule === undefined ? {} : { schedule: c.schedule }),
  };
  mkdirSync(s.corpusDir, { recursive: true });
  const path = join(s.corpusDir, name);
  writeFileSync(path, encodeCorpusEntry(entry));
  say(`counterexample for ${c.check}: ${c.originalLength} → ${c.operations.length} operations${c.schedule === undefined ? "" : ` + ${c.schedule.length} scheduled hardware actions`}, written to ${display(path)}`);
  say(`  replay:   npm run replay -- ${display(path)}`);
  say(`  timeline: npm run replay -- ${display(path)} --html ${name.replace(/\.json$/, '.html')}`);
  return display(path);
}

export function resultFileName(r: Pick<CampaignResult, 'design' | 'bug' | 'machine' | 'baseSeed' | 'shard'>): string {
  return `${r.design}${r.bug === null ? '' : `-${r.bug}`}-${r.machine}-seed${r.baseSeed}-shard${r.shard.index}of${r.shard.count}.json`;
}

function verdictLines(r: CampaignResult, s: Settings): string[] {
  const keys = r.coverage === undefined ? '' : `, ${r.coverage.keys} coverage keys`;
  const lines = [`verdicts (design ${s.design}${s.bug === undefined ? '' : `, injected bug ${s.bug}`}; ${r.runs} runs, ${r.operations} operations${keys}, stopped by ${r.stoppedBy}):`];
  const hasSmmu = namedMachine(s.machineName)?.smmu !== undefined;
  for (const name of checkNames()) {
    const c = r.checks[name];
    const first = c?.first ?? null;
    lines.push(`  ${name.padEnd(24)} ${first === null ? (checkApplies(name, hasSmmu) ? 'holds' : 'n/a (no SMMU)') : `VIOLATED in ${c?.runs} run(s); first at run ${first.run} (seed ${first.seed}, step ${first.step}), after ${first.opsToDetection} operations`}`);
  }
  if (s.bug !== undefined) {
    const bug = findBug(s.bug);
    const caught = bug !== undefined && r.checks[bug.caughtBy]?.first != null;
    lines.push(`injected bug ${s.bug}: ${caught ? 'caught' : 'NOT caught'} by ${bug?.caughtBy} (the check meant to catch it)`);
  }
  return lines;
}

export async function main(argv: readonly string[], io: VerifyIo): Promise<number> {
  const now = io.now?.() ?? new Date();
  const say = (line: string) => void io.out.write(line + '\n');
  const parsed = parseSettings(argv, now, io.defaultWorkers ?? 1);
  if (parsed.ok === 'help') {
    say(USAGE);
    return 0;
  }
  if (!parsed.ok) {
    io.err.write(`${parsed.error}\n${USAGE}\n`);
    return 2;
  }
  const s = parsed.settings;
  const machine = namedMachine(s.machineName);
  if (machine === undefined) return 2;
  // With --json stdout carries the result alone: the human-readable lines go to stderr.
  const human = s.json ? io.err : io.out;
  const tell = (line: string) => void human.write(line + '\n');
  tell(`verify: design ${s.design}, machine ${s.machineName}, up to ${s.maxOps} operations per run, ${s.runs !== undefined ? `${s.runs} runs` : `${s.timeSeconds} s`}, shard ${s.shard.index}/${s.shard.count}${s.bug === undefined ? '' : `, test-only bug ${s.bug}`}${s.interleave ? ', hardware interleaved' : ''}${s.hostDomains ? ', host DMA domains' : ''}${s.guided ? ', coverage-guided' : ''}${s.skipKnownFindings ? ', without the known findings\' steps' : ''}${s.workers > 1 ? `, ${s.workers} worker threads` : ''}`);
  tell(`seed ${s.seed}${s.seedGiven ? '' : ' (from the clock)'}; repeat with: ${campaignCommand(s)}`);

  let stop = false;
  let interrupts = 0;
  // SIGTERM (a CI timeout, kill) is Ctrl-C: finish the run, write what was found; a second one quits.
  const onSignal = (signal: NodeJS.Signals) => {
    interrupts++;
    if (interrupts > 1) process.exit(signal === 'SIGTERM' ? 143 : 130);
    stop = true;
    io.err.write(`\ninterrupted: finishing the current run and writing what was found (${signal === 'SIGINT' ? 'Ctrl-C' : signal} again to quit at once)\n`);
  };
  if (io.handleSigint === true) for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, onSignal);

  const tty = human.isTTY === true;
  let lastLine = 0;
  let progressShown = false;
  let knownPanics = 0;
  const onProgress = (p: CampaignProgress) => {
    knownPanics = p.knownPanics;
    if (tty) {
      human.write(`\r\x1b[2K${progressText(p, s)}`);
      progressShown = true;
    } else if (p.elapsedMs - lastLine >= s.progressEverySeconds * 1000) {
      lastLine = p.elapsedMs;
      tell(progressText(p, s));
    }
  };
  const endProgress = () => {
    if (progressShown) human.write('\n');
    progressShown = false;
  };
  let result: CampaignResult;
  const write = (c: FoundCounterexample): string | null => {
    endProgress();
    return writeCounterexample(c, s, now, io.corpusRoot ?? CORPUS_DIR, tell);
  };
  try {
    const progressEveryMs = tty ? 250 : 1000;
    const shouldStop = () => stop || io.shouldStop?.() === true;
    if (s.workers > 1) {
      // The workers write nothing: the merged campaign's counterexamples are written here, in run
      // order, which are exactly those a one-worker campaign writes.
      const merged = await runCampaignInWorkers(campaignSpec(s, machine), s.workers, { skipKnownFindings: s.skipKnownFindings, progressEveryMs, onProgress, shouldStop });
      result = { ...merged, counterexamples: merged.counterexamples.map((c) => ({ ...c, file: write(c as unknown as FoundCounterexample) })) };
    } else {
      result = await runCampaign(campaignSpec(s, machine), {
        onProgress,
        ...(s.skipKnownFindings ? { keep: notAKnownFinding } : {}),
        progressEveryMs,
        shouldStop,
        onCounterexample: write,
      });
    }
  } finally {
    if (io.handleSigint === true) for (const signal of ['SIGINT', 'SIGTERM'] as const) process.off(signal, onSignal);
  }
  endProgress();
  if (!tty) tell(progressText({ runs: result.runs, operations: result.operations, failedRuns: result.failedRuns, knownPanics, counterexamples: result.counterexamples.length, elapsedMs: result.timings.wallMs, ...(result.coverage === undefined ? {} : { coverageKeys: result.coverage.keys }) }, s));
  for (const line of verdictLines(result, s)) tell(line);
  if (s.skipKnownFindings) tell(`known panics: ${knownPanics} of ${result.runs} runs ended at a known finding's WARN site (counted in the result's panics: ${result.panics})`);
  const resultPath = join(s.resultsDir, resultFileName(result));
  try {
    mkdirSync(s.resultsDir, { recursive: true });
    writeFileSync(resultPath, resultText(result));
  } catch (e) {
    io.err.write(`cannot write ${resultPath}: ${(e as NodeJS.ErrnoException).code ?? String(e)}\n`);
    return 2;
  }
  tell(`result: ${display(resultPath)}  (summary: npm run report -- --merge ${display(s.resultsDir)})`);
  if (result.counterexamples.length > 0) {
    tell(`counterexamples: ${result.counterexamples.map((c) => c.file ?? '(not written)').join(', ')}`);
    if (s.bug === undefined) tell('commit them with the fix: a corpus file under conformance/corpus/ is replayed by npm test (README "Regression corpus")');
  }
  if (s.json) io.out.write(resultText(result));
  return result.failedRuns > 0 ? 1 : 0;
}

if (process.argv[1] !== undefined && /verify\.[jt]s$/.test(process.argv[1])) {
  main(process.argv.slice(2), { out: process.stdout, err: process.stderr, handleSigint: true, defaultWorkers: availableParallelism() }).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`verify failed: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 2;
    },
  );
}
