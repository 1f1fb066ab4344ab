/**
 * `npm run diff-qemu -- [--cases N] [--seed S] [--max-steps N] [--shards N] [--shrink-runs N]
 * [--save FILE] [--trace FILE]`: the differential test of the SMMU model (permissive mode, QEMU's
 * ID registers) against QEMU 10's SMMUv3 (issue 14; conformance/qemu/). Generated cases are
 * deterministic from the printed seed; the first unexplained difference is shrunk and printed
 * as a trace. Exit 0: no difference beyond the known QEMU bugs; 1: a difference; 2: misuse;
 * 3: no qemu-system-aarch64 ≥ 10 on the PATH.
 */
import { writeFileSync } from 'node:fs';
import { readInputText } from '../conformance/input-file.js';
import { formatReport, runCampaign } from '../conformance/qemu/campaign.js';
import { QemuSession } from '../conformance/qemu/session.js';
import { QEMU_INSTALL_HINT, qemuVersion } from '../conformance/qemu/qtest.js';
import { type Trace, formatTrace, parseTrace } from '../conformance/qemu/trace.js';
import { intOption, parseArgs, userPath } from './args.js';

const HELP = `usage: npm run diff-qemu -- [--cases N] [--seed S] [--max-steps N] [--shards N] [--shrink-runs N] [--save FILE]
       npm run diff-qemu -- --trace FILE

Runs N generated traces (SMMU register and RAM stores, 4-byte edu DMA) on the SMMU model in
permissive mode and on QEMU's SMMUv3 (qemu-system-aarch64 -M virt,iommu=smmuv3 over qtest), and
compares each transaction's outcome, the event records, CMDQ_CONS, GERROR, the queue pointers
and memory at the end. Differences explained by a known QEMU bug
(conformance/qemu/qemu-deviations.md) are counted apart; the first other one is shrunk.

  --cases N        generated cases (default 200)
  --seed S         generation seed (default: from the clock, printed)
  --max-steps N    steps per generated case (default 40)
  --shards N       QEMU instances in parallel (default 2)
  --shrink-runs N  case runs allowed for shrinking (default 300)
  --save FILE      write the shrunk failing trace there as JSON
  --trace FILE     replay one JSON trace (as written by --save) instead of generating
  --help           this text

Exit status: 0 no unexplained difference, 1 a difference, 2 misuse, 3 QEMU >= 10 not found.`;

interface Io {
  readonly out: { write(s: string): unknown };
  readonly err: { write(s: string): unknown };
}

export async function main(argv: readonly string[], io: Io, clock: () => number = Date.now): Promise<number> {
  const parsed = parseArgs(argv, { cases: 'value', seed: 'value', 'max-steps': 'value', shards: 'value', 'shrink-runs': 'value', save: 'value', trace: 'value', help: 'flag' });
  const usage = (error: string): number => {
    io.err.write(`diff-qemu: ${error}\n${HELP}\n`);
    return 2;
  };
  if (!parsed.ok) return usage(parsed.error);
  if (parsed.flags.has('help')) {
    io.out.write(`${HELP}\n`);
    return 0;
  }
  if (parsed.positional.length > 0) return usage(`unexpected argument ${parsed.positional[0] ?? ''}`);
  const ints: Record<string, number | undefined> = {};
  for (const [name, min, max] of [
    ['cases', 1, 1_000_000],
    ['seed', 0, 2 ** 31 - 1],
    ['max-steps', 1, 1000],
    ['shards', 1, 16],
    ['shrink-runs', 0, 100_000],
  ] as const) {
    const r = intOption(parsed.values, name, min, max);
    if (!r.ok) return usage(r.error);
    ints[name] = r.value;
  }
  const traceArg = parsed.values.get('trace');
  const tracePath = traceArg === undefined ? undefined : userPath(traceArg);
  if (tracePath !== undefined && (ints.cases !== undefined || ints.seed !== undefined)) return usage('--trace replays one trace: it takes no --cases or --seed');
  // A trace file is checked before QEMU is looked for: misuse is exit 2 on any machine.
  let given: Trace | undefined;
  if (tracePath !== undefined) {
    // The one reader of every input file (regular files only, size bounded; README "Input limits").
    const read = readInputText(tracePath);
    if (read.ok === 'missing') return usage(`cannot read ${tracePath}: ENOENT`);
    if (!read.ok) return usage(read.error);
    const t = parseTrace(read.text, tracePath);
    if (!t.ok) return usage(t.error);
    given = t.trace;
  }
  const version = qemuVersion();
  if (version === undefined || version.major < 10) {
    io.err.write(`diff-qemu: ${version === undefined ? 'qemu-system-aarch64 not found' : `${version.text} is older than 10`}; ${QEMU_INSTALL_HINT}\n`);
    return 3;
  }
  io.out.write(`${version.text}\n`);
  if (given !== undefined) {
    const trace = given;
    const session = new QemuSession();
    try {
      const devices = (await session.env()).sids.length;
      if (trace.ops.some((o) => (o.t === 'dmaw' || o.t === 'dmar') && o.dev >= devices)) return usage(`${tracePath ?? ''}: a transfer names a device beyond the board's ${devices} edu devices`);
      const r = await session.run(trace);
      if (r.status === 'same') io.out.write(`${trace.name}: ${r.ops} ops, no difference\n`);
      else {
        io.out.write(`${formatTrace(trace, r.first.at).join('\n')}\n`);
        io.out.write(`${r.status === 'known' ? `known QEMU deviation ${r.deviation}` : 'difference'} after op ${r.first.at} (${r.first.k}):\n  model: ${r.first.model}\n  qemu:  ${r.first.qemu}\n`);
      }
      return r.status === 'differ' ? 1 : 0;
    } finally {
      session.close();
    }
  }
  // Deterministic from the printed seed; the default only picks which seed (never Math.random).
  const seed = ints.seed ?? clock() % 2 ** 31;
  const cases = ints.cases ?? 200;
  io.out.write(`seed ${seed}, ${cases} cases (rerun: npm run diff-qemu -- --cases ${cases} --seed ${seed})\n`);
  let done = 0;
  const report = await runCampaign({
    cases,
    seed,
    maxSteps: ints['max-steps'],
    shards: ints.shards,
    shrinkRuns: ints['shrink-runs'],
    onCase: () => {
      done++;
      if (done % 100 === 0) io.err.write(`  ${done}/${cases}\n`);
    },
  });
  io.out.write(`${formatReport(report).join('\n')}\n`);
  const saveArg = parsed.values.get('save');
  const save = saveArg === undefined ? undefined : userPath(saveArg);
  if (save !== undefined && report.failure !== undefined) {
    writeFileSync(save, JSON.stringify(report.failure.trace, null, 1));
    io.out.write(`shrunk trace written to ${save} (replay: npm run diff-qemu -- --trace ${save})\n`);
  }
  return report.differ === 0 ? 0 : 1;
}

if (process.argv[1] !== undefined && /diff-qemu\.[jt]s$/.test(process.argv[1])) {
  main(process.argv.slice(2), { out: process.stdout, err: process.stderr }).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`diff-qemu failed: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 2;
    },
  );
}
