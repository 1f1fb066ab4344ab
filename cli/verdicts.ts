/**
 * `npm run verdicts [-- --json] [--seed S] [--runs N] [--max-ops N]`: every built design variant
 * (impl/hyp/design.ts) on the representative hardware set (RIL on/off × ATS device or not), on
 * one generated workload per machine (fixed seed), with the verdict of every check against the
 * declared one, and the costs each variant pays per donation (issue 6 items 1–2). The table in
 * README "Design verdicts" is this command's output. Exit 0 when every observed verdict is the
 * declared one, 1 when one differs, 2 on misuse.
 */
import { DESIGN_VARIANTS } from '../impl/hyp/design.js';
import { DEFAULT_BUDGET, type MatrixBudget, type MatrixRow, type Costs, exploreWithCosts, measureCosts, verdictRow, workload } from '../properties/design-matrix.js';
import { representativeHardware } from '../properties/machine.js';
import { intOption, parseArgs, seedOption } from './args.js';

const HELP = `usage: npm run verdicts -- [--json] [--seed S] [--runs N] [--max-ops N]

Runs every built design variant (${DESIGN_VARIANTS.map((v) => v.name).join(', ')}) on the
representative hardware set (${representativeHardware().map((h) => h.name).join(', ')}) over one generated
workload per machine, and prints the verdict of every check (against the declared one) and the
cost per donation: hypervisor commands and CMD_SYNCs, SMMU TLB and walk-cache entries removed
(collateral: entries that did not translate a donated page), idmap table pages, checked ops/s.

  --seed S      workload seed (default ${DEFAULT_BUDGET.seed})
  --runs N      operation lists per machine (default ${DEFAULT_BUDGET.runs})
  --max-ops N   operations per list before filtering (default ${DEFAULT_BUDGET.maxOps})
  --json        machine-readable output
  --help        this text

Exit status: 0 every verdict as declared, 1 some verdict differs, 2 misuse. Below the default
budget a declared break the workload does not reach is reported as undecided, not as a difference.`;

interface Io {
  readonly out: { write(s: string): unknown };
  readonly err: { write(s: string): unknown };
}

const DMA_CHECKS = ['dma_isolation', 'dma_availability'] as const;

function fixed(n: number, digits = 1): string {
  return n.toFixed(digits);
}

function pad(cells: readonly string[][]): string[] {
  const widths = (cells[0] ?? []).map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => `| ${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`);
}

/** One verdict cell: the observed verdict, marked when it is not the declared one. */
function cell(row: MatrixRow, check: string): string {
  const c = row.cells.find((x) => x.check === check);
  if (c === undefined) return '-';
  const runs = c.observed !== 'breaks' ? '' : c.outcome.foundBy === 'trigger' ? ' (trigger)' : ` (${c.outcome.violatedRuns}/${row.exploration.runs})`;
  return `${c.observed}${runs}${c.observed === c.declared ? '' : ` ≠ declared ${c.declared ?? 'nothing'}`}`;
}

function otherChecks(row: MatrixRow): string {
  const rest = row.cells.filter((c) => !(DMA_CHECKS as readonly string[]).includes(c.check));
  const broken = rest.filter((c) => c.observed === 'breaks').map((c) => c.check);
  const mismatched = rest.filter((c) => c.observed !== c.declared).map((c) => c.check);
  const text = broken.length === 0 ? `all ${rest.length} hold` : `breaks: ${broken.join(', ')}`;
  return mismatched.length === 0 ? text : `${text} ≠ declared (${mismatched.join(', ')})`;
}

export function main(argv: readonly string[], io: Io): number {
  const args = parseArgs(argv, { json: 'flag', help: 'flag', seed: 'value', runs: 'value', 'max-ops': 'value' });
  if (!args.ok) {
    io.err.write(`verdicts: ${args.error}\n${HELP.split('\n')[0] ?? ''}\n`);
    return 2;
  }
  if (args.flags.has('help')) {
    io.out.write(`${HELP}\n`);
    return 0;
  }
  if (args.positional.length > 0) {
    io.err.write(`verdicts: unexpected argument ${JSON.stringify(args.positional[0])}\n`);
    return 2;
  }
  const seed = seedOption(args.values);
  const runs = intOption(args.values, 'runs', 1, 100_000);
  const maxOps = intOption(args.values, 'max-ops', 1, 1000);
  for (const o of [seed, runs, maxOps]) {
    if (!o.ok) {
      io.err.write(`verdicts: ${o.error}\n`);
      return 2;
    }
  }
  const budget: MatrixBudget = {
    seed: (seed.ok ? seed.value : undefined) ?? DEFAULT_BUDGET.seed,
    runs: (runs.ok ? runs.value : undefined) ?? DEFAULT_BUDGET.runs,
    maxOps: (maxOps.ok ? maxOps.value : undefined) ?? DEFAULT_BUDGET.maxOps,
  };
  const rows: MatrixRow[] = [];
  const costs: { variant: string; hardware: string; costs: Costs }[] = [];
  let warm = false;
  for (const hw of representativeHardware()) {
    const ops = workload(hw.machine, budget);
    // One untimed pass first, so the first variant's ops/s is not the JIT's warm-up.
    if (!warm && DESIGN_VARIANTS[0] !== undefined) measureCosts(DESIGN_VARIANTS[0], hw.machine, ops.slice(0, 10));
    warm = true;
    for (const v of DESIGN_VARIANTS) {
      const pass = exploreWithCosts(v, hw.machine, ops);
      rows.push(verdictRow(v, hw, ops, pass.exploration));
      costs.push({ variant: v.name, hardware: hw.name, costs: pass.costs });
    }
  }
  // Below the default budget a declared break may simply not be reached: that is no verdict, not
  // a mismatch. A declared "holds" that breaks is a counterexample whatever the budget.
  const smallBudget = budget.runs < DEFAULT_BUDGET.runs || budget.maxOps < DEFAULT_BUDGET.maxOps;
  const differing = rows.flatMap((r) => r.cells.filter((c) => c.observed !== c.declared).map((c) => ({ text: `${r.variant} on ${r.hardware}: ${c.check} ${c.observed}, declared ${c.declared ?? 'nothing'}`, missedBreak: c.declared === 'breaks' && c.observed === 'holds' })));
  const undecided = smallBudget ? differing.filter((d) => d.missedBreak).map((d) => d.text) : [];
  const mismatches = differing.filter((d) => !(smallBudget && d.missedBreak)).map((d) => d.text);
  const date = new Date().toISOString().slice(0, 10);
  if (args.flags.has('json')) {
    const json = {
      date,
      budget,
      verdicts: rows.map((r) => ({
        variant: r.variant,
        hardware: r.hardware,
        runs: r.exploration.runs,
        operations: r.exploration.operations,
        checks: Object.fromEntries(r.cells.map((c) => [c.check, { observed: c.observed, declared: c.declared ?? null, foundBy: c.outcome.foundBy ?? null, violatedRuns: c.outcome.violatedRuns, firstRun: c.outcome.firstRun ?? null, counterexample: c.outcome.counterexample ?? null, message: c.outcome.message ?? null }])),
      })),
      costs,
      mismatches,
      undecided,
    };
    io.out.write(`${JSON.stringify(json, null, 2)}\n`);
    return mismatches.length === 0 ? 0 : 1;
  }
  const lines: string[] = [];
  lines.push(`Design verdicts — ${date}, seed ${budget.seed}, ${budget.runs} runs × up to ${budget.maxOps} operations per machine (\`npm run verdicts -- --seed ${budget.seed} --runs ${budget.runs} --max-ops ${budget.maxOps}\`)`);
  lines.push('');
  const verdictTable = pad([['variant', 'hardware', ...DMA_CHECKS, 'other checks'], ...rows.map((r) => [r.variant, r.hardware, ...DMA_CHECKS.map((c) => cell(r, c)), otherChecks(r)])]);
  lines.push(verdictTable[0] ?? '', (verdictTable[0] ?? '').replace(/[^|]/g, '-'), ...verdictTable.slice(1));
  lines.push('');
  lines.push('Costs per donation (host_donate_hyp / host_donate_guest that succeeded), same workload:');
  lines.push('');
  const costRows = costs.map(({ variant, hardware, costs: c }) => [variant, hardware, `${c.donations} / ${c.donatedPages}`, fixed(c.commandsPerDonation), fixed(c.commandsPerPage, 2), fixed(c.syncsPerDonation), fixed(c.tlbRemovedPerDonation, 2), fixed(c.walkRemovedPerDonation, 2), fixed(c.collateralPerDonation, 2), String(c.idmapTablePages), String(Math.round(c.checkedOpsPerSecond))]);
  const costTable = pad([['variant', 'hardware', 'donations / pages', 'cmds', 'cmds per page', 'syncs', 'TLB removed', 'walk removed', 'collateral', 'idmap tables', 'checked ops/s'], ...costRows]);
  lines.push(costTable[0] ?? '', (costTable[0] ?? '').replace(/[^|]/g, '-'), ...costTable.slice(1));
  lines.push('');
  if (undecided.length > 0) {
    lines.push(`The budget (${budget.runs} runs × ${budget.maxOps} operations) is below the one the declared verdicts are checked with (${DEFAULT_BUDGET.runs} × ${DEFAULT_BUDGET.maxOps}): ${undecided.length} declared break(s) not reached, no verdict on them:`);
    lines.push(...undecided.map((u) => `  ${u}`));
  }
  lines.push(
    mismatches.length === 0
      ? undecided.length === 0
        ? 'Every observed verdict is the declared one.'
        : 'Every other observed verdict is the declared one.'
      : `Verdicts differing from the declared ones:\n${mismatches.map((m) => `  ${m}`).join('\n')}`,
  );
  io.out.write(`${lines.join('\n')}\n`);
  return mismatches.length === 0 ? 0 : 1;
}

if (process.argv[1] !== undefined && /verdicts\.[jt]s$/.test(process.argv[1])) {
  try {
    process.exitCode = main(process.argv.slice(2), { out: process.stdout, err: process.stderr });
  } catch (e) {
    process.stderr.write(`verdicts failed: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 2;
  }
}
