/**
 * `npm run bench [-- --json] [-- --quick]`: runs the benchmarks. Human-readable lines; with --json
 * one JSON object of named figures is the only thing on stdout (the lines go to stderr), so the
 * output can be piped or redirected into reports/out/bench.json. --quick runs a tenth of each
 * workload (CI smoke figures, noisier).
 */
import { benchCheckedAgainstBare, benchCheckedOps, benchMemorySizes } from '../bench/ownership.js';
import { benchBootMillis } from '../bench/boot.js';
import { benchMapUnmap, benchWalks, buildSparseTable } from '../bench/pgtable.js';
import { benchSmmuNestedTlbHits, benchSmmuNestedWalks, benchSmmuTlbHits, benchSmmuWalks } from '../bench/smmu.js';
import { defaultMachine, smallMachine, smallMachineWithSmmu } from '../properties/machine.js';

const USAGE = `usage: npm run bench -- [--json] [--quick]

  --json    one JSON object of named figures on stdout (the human-readable lines go to stderr)
  --quick   a tenth of each workload: a smoke run for CI, noisier figures`;

export interface BenchIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
}

/** The figures, by name (README "Benchmarks"). */
export type BenchFigures = Record<string, number>;

export function runBenchmarks(quick: boolean): BenchFigures {
  const figures: BenchFigures = {};
  const setup = buildSparseTable();
  figures.walks_per_s = Math.round(benchWalks(setup, quick ? 400_000 : 4_000_000));
  figures.map_unmap_pairs_per_s = Math.round(benchMapUnmap(setup, quick ? 40_000 : 400_000));
  figures.smmu_tlb_hit_translations_per_s = Math.round(benchSmmuTlbHits(quick ? 1_000_000 : 10_000_000));
  figures.smmu_walk_translations_per_s = Math.round(benchSmmuWalks(quick ? 200_000 : 2_000_000));
  figures.smmu_nested_tlb_hit_translations_per_s = Math.round(benchSmmuNestedTlbHits(quick ? 1_000_000 : 10_000_000));
  figures.smmu_nested_walk_translations_per_s = Math.round(benchSmmuNestedWalks(quick ? 50_000 : 500_000));
  // Issue 15 item 1: checked and bare (no check selected) throughput of the same workloads,
  // warm and in alternating rounds (bench/ownership.ts), and checked cost / bare cost.
  const small = benchCheckedAgainstBare(smallMachine(), quick ? 60 : 300, false, quick ? 1 : 7);
  figures.checked_ownership_ops_per_s_small_machine = Math.round(small.checked);
  figures.checked_ownership_ops_per_s_default_machine = Math.round(benchCheckedOps(defaultMachine(), quick ? 20 : 100));
  const dma = benchCheckedAgainstBare(smallMachineWithSmmu({ ats: false }), quick ? 30 : 150, true, quick ? 1 : 7);
  figures.checked_dma_ops_per_s_interleaved = Math.round(dma.checked);
  figures.bare_ownership_ops_per_s_small_machine = Math.round(small.bare);
  figures.bare_dma_ops_per_s_interleaved = Math.round(dma.bare);
  figures.checked_over_bare_cost_small_machine = Math.round(small.checkedOverBare * 100) / 100;
  figures.checked_over_bare_cost_interleaved = Math.round(dma.checkedOverBare * 100) / 100;
  figures.boot_ms_per_run_smmu_machine = Math.round(benchBootMillis(smallMachineWithSmmu({ ats: false }), quick ? 100 : 1000, true) * 1000) / 1000;
  figures.boot_ms_per_run_smmu_machine_fresh = Math.round(benchBootMillis(smallMachineWithSmmu({ ats: false }), quick ? 10 : 100, false) * 1000) / 1000;
  // Cost per checked op against the size of RAM: sparse structures keep it flat.
  // Measured like checked against bare: alternating rounds, the median of the rounds' ratios.
  const sizes = benchMemorySizes(64 * 2 ** 20, 64 * 2 ** 30, quick ? 60 : 300, quick ? 1 : 5);
  figures.checked_ownership_ops_per_s_64gib = Math.round(sizes.big);
  figures.checked_ownership_ops_per_s_64mib = Math.round(sizes.small);
  figures.cost_per_op_64gib_over_64mib = Math.round(sizes.bigOverSmall * 100) / 100;
  return figures;
}

export function main(argv: readonly string[], io: BenchIo = { out: (l) => console.log(l), err: (l) => console.error(l) }, run: (quick: boolean) => BenchFigures = runBenchmarks): number {
  const known = new Set(['--json', '--quick', '--help']);
  for (const arg of argv) {
    if (!known.has(arg)) {
      io.err(`unknown option ${arg}\n${USAGE}`);
      return 2;
    }
  }
  if (argv.includes('--help')) {
    io.out(USAGE);
    return 0;
  }
  const json = argv.includes('--json');
  const figures = run(argv.includes('--quick'));
  // With --json a pipe sees the JSON alone; the table is still shown on the terminal (stderr).
  const human = json ? io.err : io.out;
  for (const [name, value] of Object.entries(figures)) human(`${name.padEnd(40)} ${value.toLocaleString('en-US')}`);
  if (json) io.out(JSON.stringify(figures));
  return 0;
}

if (process.argv[1] !== undefined && /bench\.[jt]s$/.test(process.argv[1])) process.exitCode = main(process.argv.slice(2));
