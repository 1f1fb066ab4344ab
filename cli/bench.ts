/**
 * `npm run bench [-- --json] [-- --quick]`: runs the benchmarks. Human-readable lines, and with
 * --json a last line holding one JSON object of named figures.
 */
import { benchCheckedOps } from '../bench/ownership.js';
import { benchMapUnmap, benchWalks, buildSparseTable } from '../bench/pgtable.js';
import { benchSmmuTlbHits, benchSmmuWalks } from '../bench/smmu.js';
import { defaultMachine, smallMachine, smallMachineWithSmmu } from '../properties/machine.js';

const USAGE = 'usage: npm run bench -- [--json] [--quick]';

function main(argv: string[]): number {
  const known = new Set(['--json', '--quick', '--help']);
  for (const arg of argv) {
    if (!known.has(arg)) {
      console.error(`unknown option ${arg}\n${USAGE}`);
      return 2;
    }
  }
  if (argv.includes('--help')) {
    console.log(USAGE);
    return 0;
  }
  const quick = argv.includes('--quick');
  const figures: Record<string, number> = {};
  const setup = buildSparseTable();
  figures.walks_per_s = Math.round(benchWalks(setup, quick ? 400_000 : 4_000_000));
  figures.map_unmap_pairs_per_s = Math.round(benchMapUnmap(setup, quick ? 40_000 : 400_000));
  figures.smmu_tlb_hit_translations_per_s = Math.round(benchSmmuTlbHits(quick ? 1_000_000 : 10_000_000));
  figures.smmu_walk_translations_per_s = Math.round(benchSmmuWalks(quick ? 200_000 : 2_000_000));
  figures.checked_ownership_ops_per_s_small_machine = Math.round(benchCheckedOps(smallMachine(), quick ? 60 : 300));
  figures.checked_ownership_ops_per_s_default_machine = Math.round(benchCheckedOps(defaultMachine(), quick ? 20 : 100));
  figures.checked_dma_ops_per_s_interleaved = Math.round(benchCheckedOps(smallMachineWithSmmu({ ats: false }), quick ? 30 : 150, true));
  for (const [name, value] of Object.entries(figures)) console.log(`${name.padEnd(36)} ${value.toLocaleString('en-US')}`);
  if (argv.includes('--json')) console.log(JSON.stringify(figures));
  return 0;
}

process.exitCode = main(process.argv.slice(2));
