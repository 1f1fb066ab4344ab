/**
 * `npm run sweep [-- --json] [--machine NAME]... [--point P] [--max-k N] [--no-corpus]`: the
 * fail-the-k-th sweep (properties/sweep.ts, issue 16 item 2). For every known-good sequence
 * (conformance/sweep-sequences.ts) on every machine, and every injection point
 * (impl/fault-injection.ts), the k-th event fails for each k the sequence reaches. Prints the
 * counts table (machine × point → reached, clean, absorbed, partial, panic, findings), then every
 * finding with its shortest trigger. Exit 0 when every finding is a known one
 * (KNOWN_SWEEP_FINDINGS), 1 on a new finding, 2 on misuse.
 */
import { FAULT_POINTS, type FaultPoint } from '../impl/fault-injection.js';
import { type SweepResult, findings, formatTable, knownFinding, sweep } from '../properties/sweep.js';
import { sweepMachine, sweepMachineNames, sweepSequences } from '../conformance/sweep-sequences.js';
import { intOption, parseArgs } from './args.js';

const USAGE = `usage: npm run sweep -- [--json] [--machine NAME[,NAME...]] [--point P] [--max-k N] [--no-corpus]
  --machine NAMES  only these machines, comma-separated (${sweepMachineNames().join(', ')})
  --point P        only this injection point (${FAULT_POINTS.join(', ')})
  --max-k N        fail only the first N events of each point per sequence (default: every one reached)
  --no-corpus      leave out the corpus entries (conformance/corpus/passes/)
  --json           one JSON object (table cells, findings, trials) instead of the table
exit status: 0 every finding is a known one, 1 a new finding, 2 misuse`;

export interface SweepOutput {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
}

export function main(argv: readonly string[], io: SweepOutput = { out: (l) => console.log(l), err: (l) => console.error(l) }): number {
  const args = parseArgs(argv, { json: 'flag', help: 'flag', 'no-corpus': 'flag', machine: 'value', point: 'value', 'max-k': 'value' });
  const usage = (error: string) => {
    io.err(`sweep: ${error}\n${USAGE}`);
    return 2;
  };
  if (!args.ok) return usage(args.error);
  if (args.positional.length > 0) return usage(`unexpected argument ${JSON.stringify(args.positional[0])}`);
  if (args.flags.has('help')) {
    io.out(USAGE);
    return 0;
  }
  const maxK = intOption(args.values, 'max-k', 1, 1_000_000);
  if (!maxK.ok) return usage(maxK.error);
  const point = args.values.get('point');
  if (point !== undefined && !(FAULT_POINTS as readonly string[]).includes(point)) return usage(`unknown injection point ${JSON.stringify(point)}`);
  const machines = args.values.get('machine')?.split(',') ?? sweepMachineNames();
  for (const m of machines) if (sweepMachine(m) === undefined) return usage(`unknown machine ${JSON.stringify(m)}`);
  const corpus = !args.flags.has('no-corpus') && args.values.get('machine') === undefined;
  const result = sweep(sweepSequences(machines, corpus), { ...(point === undefined ? {} : { points: [point as FaultPoint] }), ...(maxK.value === undefined ? {} : { maxK: maxK.value }) });
  const found = findings(result);
  const fresh = found.filter((f) => knownFinding(f) === undefined);
  if (args.flags.has('json')) {
    io.out(JSON.stringify({ cells: result.cells, notKnownGood: result.notKnownGood, reachedBySequence: result.reachedBySequence, findings: found.map((f) => ({ ...f, known: knownFinding(f) ?? null })), trials: result.trials }));
  } else {
    printText(result, io);
  }
  for (const f of fresh) io.err(`sweep: NEW finding: ${f.machine} ${f.sequence} ${f.point} k=${f.k} at step ${f.stepIndex} ${JSON.stringify(f.op)}: ${f.detail}`);
  return fresh.length > 0 ? 1 : 0;
}

function printText(result: SweepResult, io: SweepOutput): void {
  io.out(formatTable(result));
  const found = findings(result);
  if (found.length > 0) {
    io.out('');
    io.out('findings (first trial of each; shortest trigger = the sequence up to the step):');
    const byName = new Map<string, typeof found>();
    for (const f of found) {
      const key = knownFinding(f) ?? 'NEW';
      byName.set(key, [...(byName.get(key) ?? []), f]);
    }
    for (const [name, list] of byName) {
      const shortest = [...list].sort((a, b) => a.stepIndex - b.stepIndex)[0];
      if (shortest === undefined) continue;
      io.out(`  ${name}: ${list.length} (sequence, point) pairs; shortest: ${shortest.machine} ${shortest.sequence} ${shortest.point} k=${shortest.k}, step ${shortest.stepIndex} ${JSON.stringify(shortest.op)}`);
      io.out(`    ${shortest.detail}`);
    }
  }
  if (result.notKnownGood.length > 0) {
    io.out('');
    io.out('not swept (the sequence fails on the machine without faults):');
    for (const n of result.notKnownGood) io.out(`  ${n.machine} ${n.sequence}: ${n.why.split('\n').join(' ')}`);
  }
}

if (process.argv[1] !== undefined && /sweep\.[jt]s$/.test(process.argv[1])) process.exitCode = main(process.argv.slice(2));
