/**
 * `npm run zoo [-- --json] [--seed S] [--runs N] [--max-ops N] [--bug NAME]`: the bug zoo's kill
 * matrix (properties/zoo.ts) — every registered test-only bug × the check meant to catch it, with
 * runs, operations and wall-clock seconds to first detection, the shrunk counterexample's length, and whether the
 * same runs pass without the bug. The bugs no check catches yet (ESCAPING_BUGS) are listed after
 * the matrix as known findings. Exit 0 when every registered bug is caught and no clean run
 * fails, 1 otherwise (a bug escaped: a check got weaker), 2 on misuse.
 */
import { ESCAPING_BUGS } from '../properties/bugs/dma-bugs.js';
import { ALL_BUGS } from '../properties/bugs/index.js';
import { ZOO_DEFAULTS, type ZooRow, type ZooSettings, formatZooMatrix, medianSecondsToDetection, zooRow } from '../properties/zoo.js';
import { intOption, parseArgs, seedOption } from './args.js';
import { formatGuidance, guidanceRow, summarizeGuidance } from '../conformance/guided-zoo.js';
import { type ZooCandidate } from '../properties/zoo.js';

const USAGE = `usage: npm run zoo -- [--json] [--seed S] [--runs N] [--max-ops N] [--bug NAME] [--compare-guided]
  --seed S      fast-check seed of every bug's search (default ${ZOO_DEFAULTS.seed})
  --runs N      runs per bug before falling back to its hand-written trigger (default ${ZOO_DEFAULTS.runs})
  --max-ops N   operations per run (default ${ZOO_DEFAULTS.maxOps})
  --bug NAME    only this bug (${[...ALL_BUGS, ...ESCAPING_BUGS].map((b) => b.name).join(', ')})
  --json        one JSON object (settings, rows with secondsToDetection, escaping,
                medianSecondsToDetection) instead of the table
  --compare-guided  instead of the matrix: search every bug with the campaign's generator twice,
                plain and coverage-guided (verify --guided), and compare runs and seconds to the
                first detection (JSON: settings, guidance.rows, guidance.summary); exit 0
exit status: 0 every registered bug caught, 1 a bug escaped its check or a clean run failed, 2 misuse`;

export interface ZooOutput {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
}

export function main(argv: readonly string[], io: ZooOutput = { out: (l) => console.log(l), err: (l) => console.error(l) }): number {
  const args = parseArgs(argv, { json: 'flag', help: 'flag', seed: 'value', runs: 'value', 'max-ops': 'value', bug: 'value', 'compare-guided': 'flag' });
  const usage = (error: string) => {
    io.err(`zoo: ${error}\n${USAGE}`);
    return 2;
  };
  if (!args.ok) return usage(args.error);
  if (args.positional.length > 0) return usage(`unexpected argument ${JSON.stringify(args.positional[0])}`);
  if (args.flags.has('help')) {
    io.out(USAGE);
    return 0;
  }
  const seed = seedOption(args.values);
  if (!seed.ok) return usage(seed.error);
  const runs = intOption(args.values, 'runs', 1, 1e6);
  if (!runs.ok) return usage(runs.error);
  const maxOps = intOption(args.values, 'max-ops', 1, 1000);
  if (!maxOps.ok) return usage(maxOps.error);
  const only = args.values.get('bug');
  const known = [...ALL_BUGS, ...ESCAPING_BUGS];
  if (only !== undefined && !known.some((b) => b.name === only)) return usage(`--bug: unknown bug ${JSON.stringify(only)}`);
  const settings: ZooSettings = { seed: seed.value ?? ZOO_DEFAULTS.seed, runs: runs.value ?? ZOO_DEFAULTS.runs, maxOps: maxOps.value ?? ZOO_DEFAULTS.maxOps };
  const pick = <T extends { name: string }>(bugs: readonly T[]) => bugs.filter((b) => only === undefined || b.name === only);
  if (args.flags.has('compare-guided')) {
    const rows = pick(ALL_BUGS as readonly ZooCandidate[]).map((b) => guidanceRow(b, settings));
    if (args.flags.has('json')) io.out(JSON.stringify({ settings, guidance: { rows, summary: summarizeGuidance(rows) } }));
    else io.out(formatGuidance(rows, settings));
    return 0;
  }
  const rows: ZooRow[] = pick(ALL_BUGS).map((b) => zooRow(b, settings));
  const escaping: ZooRow[] = pick(ESCAPING_BUGS).map((b) => zooRow(b, settings));
  const failed = rows.some((r) => !r.caught || !r.cleanPasses) || escaping.some((r) => !r.cleanPasses);
  if (args.flags.has('json')) {
    io.out(JSON.stringify({ settings, rows, escaping, medianSecondsToDetection: medianSecondsToDetection(rows) }));
  } else {
    if (rows.length > 0) io.out(formatZooMatrix(rows, settings));
    if (escaping.length > 0) {
      io.out('');
      io.out('known escapes (no check catches them yet; findings about the checks):');
      for (const r of escaping) io.out(`  ${r.bug} (${r.caughtBy} on ${r.machine}): ${r.caught ? 'now CAUGHT — move it to DMA_BUGS' : 'not caught'}`);
    }
    for (const r of rows) if (!r.caught) io.err(`zoo: ${r.bug} escaped ${r.caughtBy}`);
    for (const r of [...rows, ...escaping]) if (!r.cleanPasses) io.err(`zoo: the runs of ${r.bug} fail ${r.caughtBy} without the bug`);
  }
  return failed ? 1 : 0;
}

if (process.argv[1] !== undefined && /zoo\.[jt]s$/.test(process.argv[1])) process.exitCode = main(process.argv.slice(2));
