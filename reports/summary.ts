/**
 * Renders the report as Markdown for a pull-request comment (kept under SUMMARY_BUDGET bytes)
 * and as JSON. Everything above the TIMINGS_MARKER line is a function of the seeds and inputs;
 * the timings and benchmark figures sit below it.
 */
import { match } from 'ts-pattern';
import { OPERATION_KINDS } from '../model/index.js';
import { compareRetNames, checkNames } from '../conformance/names.js';
import { type KillRow, type ReportData, overallVerdict } from './build.js';
import { METRICS, leastCovered, pct } from './coverage.js';

export const TIMINGS_MARKER = '<!-- timings: everything below varies from run to run -->';
/** GitHub accepts comments up to 65,536 characters; keep room for the workflow's header. */
export const SUMMARY_BUDGET = 60 * 1024;

const HOST_STATES = ['OWNED', 'SHARED_OWNED', 'SHARED_BORROWED', 'NOPAGE'];
const GUEST_STATES = ['NOPAGE', 'OWNED', 'SHARED_OWNED', 'SHARED_BORROWED', 'POISON'];

const n = (x: number) => x.toLocaleString('en-US');

function table(head: readonly string[], rows: readonly (readonly string[])[]): string[] {
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
}

function settingsLine(data: ReportData): string {
  const campaigns = match(data.settings.source)
    .with({ kind: 'run' }, (s) => `campaigns run by the report: seed ${s.seed}, ${n(s.runs)} runs per design on the ${s.machine} machine, up to ${s.maxOps} operations per run`)
    .with({ kind: 'merge' }, (s) => `campaigns merged from ${s.results.length} shard result(s) in \`${s.dir}\``)
    .exhaustive();
  const bugs = data.settings.bugRuns === null ? 'no bug campaigns run here' : `bug campaigns: seed ${data.settings.bugSeed}, ${n(data.settings.bugRuns)} runs per bug on the ${data.settings.bugMachine} machine, up to ${data.settings.bugMaxOps} operations per run`;
  return `${campaigns}; ${bugs}.`;
}

function propertiesSection(data: ReportData): string[] {
  const out = ['## Properties × design variants', ''];
  const head = ['property', ...data.variants.map((v) => `\`${v.design}\``)];
  const rows = checkNames().map((check) => [
    `\`${check}\``,
    ...data.variants.map((v) => {
      if (v.campaign === null) return 'not run';
      const c = v.campaign.result.checks[check];
      const expectedBreak = v.expectedToBreak.includes(check);
      if (c === undefined || c.first === null) return expectedBreak ? `❌ not detected (expected to break)` : `✅ holds (${n(v.campaign.result.runs)} runs)`;
      const where = `first at run ${c.first.run}, ${c.runs} run(s) in all`;
      return expectedBreak ? `✅ breaks as expected (${where})` : `❌ **violated** (${where})`;
    }),
  ]);
  const failing = data.corpus.filter((c) => !c.ok).length;
  rows.push(['regression corpus', ...data.variants.map(() => (failing === 0 ? `✅ ${data.corpus.length}/${data.corpus.length} files` : `❌ ${failing} of ${data.corpus.length} files fail`))]);
  out.push(...table(head, rows), '');
  for (const v of data.variants) out.push(`- \`${v.design}\`: ${v.description}${v.expectedToBreak.length > 0 ? `; expected to break ${v.expectedToBreak.join(', ')}` : ''}.`);
  return out;
}

function runsSection(data: ReportData): string[] {
  const rows = data.variants.map((v) => {
    const c = v.campaign;
    if (c === null) return [`\`${v.design}\``, '—', '0', '0', '0', '0', '—'];
    const r = c.result;
    return [`\`${v.design}\``, c.machines.join(', '), n(r.runs), n(r.operations), n(r.failedRuns), n(r.panics), `${c.shards.length}${c.missingShards.length > 0 ? ` (missing ${c.missingShards.join(', ')})` : ''}`];
  });
  const killRuns = data.kill.reduce((a, k) => a + (k.campaign?.runs ?? 0), 0);
  const killOps = data.kill.reduce((a, k) => a + (k.campaign?.operations ?? 0), 0);
  return ['## Runs', '', ...table(['design', 'machine', 'runs', 'operations', 'runs with a violation', 'hypervisor panics', 'shards'], rows), '', `Bug campaigns: ${n(killRuns)} runs, ${n(killOps)} operations.`];
}

function coverageMatrix(data: ReportData): string[] {
  const out = ['## Model coverage', ''];
  for (const v of data.variants) {
    const c = v.campaign?.result;
    if (c === undefined) continue;
    out.push(`### \`${v.design}\`: operation kinds × model return codes`, '');
    const codes = new Set<string>(['0']);
    for (const byRet of Object.values(c.returns)) for (const code of Object.keys(byRet)) codes.add(code);
    const cols = [...codes].sort(compareRetNames);
    const kinds = [...new Set([...OPERATION_KINDS, ...Object.keys(c.kinds)])];
    const rows = kinds.map((k) => [`\`${k}\``, n(c.kinds[k] ?? 0), ...cols.map((code) => {
      const x = c.returns[k]?.[code] ?? 0;
      return x === 0 ? '·' : n(x);
    })]);
    out.push(...table(['kind', 'executed', ...cols.map((x) => `\`${x}\``)], rows), '');
    const never = kinds.filter((k) => (c.kinds[k] ?? 0) === 0);
    const noSuccess = kinds.filter((k) => (c.kinds[k] ?? 0) > 0 && (c.returns[k]?.[k === 'host_access' ? 'OK' : '0'] ?? 0) === 0);
    out.push(`Still zero: ${never.length === 0 && noSuccess.length === 0 ? 'none — every kind ran and succeeded at least once' : [never.length > 0 ? `never executed: ${never.map((k) => `\`${k}\``).join(', ')}` : '', noSuccess.length > 0 ? `never succeeded: ${noSuccess.map((k) => `\`${k}\``).join(', ')}` : ''].filter((x) => x !== '').join('; ')}.`, '');
    out.push(`### \`${v.design}\`: page-state transitions (model)`, '');
    const zero = new Map<string, string[]>();
    for (const [component, states, counts] of [
      ['host', HOST_STATES, c.transitions.host],
      ['hyp', HOST_STATES, c.transitions.hyp],
      ['guest (per stage-2 leaf)', GUEST_STATES, c.transitions.guest],
    ] as const) {
      out.push(`**${component}**`, '');
      out.push(
        ...table(
          ['from \\ to', ...states],
          states.map((from) => [from, ...states.map((to) => (from === to ? '—' : (counts[`${from}>${to}`] ?? 0) === 0 ? '·' : n(counts[`${from}>${to}`] ?? 0)))]),
        ),
        '',
      );
      const name = component.split(' ')[0] as string;
      for (const from of states) for (const to of states) if (from !== to && (counts[`${from}>${to}`] ?? 0) === 0) zero.set(name, [...(zero.get(name) ?? []), `${from}→${to}`]);
    }
    out.push(`Transitions never seen (some are impossible by design): ${zero.size === 0 ? 'none' : [...zero].map(([c, list]) => `${c}: ${list.join(', ')}`).join('; ')}.`, '');
  }
  return out;
}

function killCell(row: KillRow, check: string): string {
  const c = row.campaign?.checks[check];
  if (row.campaign === null) return 'not run';
  if (c === undefined || c.first === null) return '·';
  return `${check === row.caughtBy ? '**✔**' : '✔'} ${n(c.first.runsToDetection)}/${n(c.first.opsToDetection)}`;
}

function killSection(data: ReportData): string[] {
  if (data.kill.every((k) => k.campaign === null)) return ['## Injected bugs (kill matrix)', '', 'Not run: `--no-bugs`, and no bug campaign among the merged results.'];
  const checks = checkNames();
  const rows = data.kill.map((k) => {
    const cx = k.campaign?.counterexamples.find((c) => c.check === k.caughtBy);
    const caught = k.campaign?.checks[k.caughtBy]?.first != null;
    return [`\`${k.bug}\``, `\`${k.caughtBy}\``, k.campaign === null ? 'not run' : caught ? '✅ caught' : '❌ **missed**', ...checks.map((c) => killCell(k, c)), cx === undefined ? '—' : `${cx.originalLength} → ${cx.operations.length}`, k.campaign === null ? '—' : n(k.campaign.runs)];
  });
  return [
    '## Injected bugs (kill matrix)',
    '',
    'A cell `✔ r/o` means the check caught the bug after r runs and o operations of the bug campaign (per shard for merged campaigns); `·` means it never fired. Bold: the check meant to catch it.',
    '',
    ...table(['bug', 'meant to be caught by', 'verdict', ...checks.map((c) => `\`${c}\``), 'counterexample (ops, before → after shrinking)', 'runs'], rows),
    '',
    ...data.kill.map((k) => `- \`${k.bug}\`: ${k.description}.`),
  ];
}

function counterexampleSection(data: ReportData): string[] {
  const out: string[] = [];
  for (const v of data.variants) {
    for (const c of v.campaign?.result.counterexamples.slice(0, 5) ?? []) {
      out.push(
        `<details><summary><code>${v.design}</code> violates <code>${c.check}</code>: ${c.operations.length} operations (run ${c.run}, seed ${c.seed}, path ${c.path})${c.file === null ? '' : `, ${c.file}`}</summary>`,
        '',
        '```json',
        ...c.operations.slice(0, 30).map((op) => JSON.stringify(op)),
        ...(c.operations.length > 30 ? [`… ${c.operations.length - 30} more`] : []),
        '```',
        '</details>',
        '',
      );
    }
  }
  return out.length === 0 ? [] : ['## Counterexamples', '', ...out];
}

function corpusSection(data: ReportData): string[] {
  const failing = data.corpus.filter((c) => !c.ok);
  const passes = data.corpus.filter((c) => c.expect === 'passes').length;
  const bugs = data.corpus.filter((c) => c.bug !== null).length;
  const out = ['## Regression corpus', '', `${data.corpus.length} files (${passes} expected to pass, ${data.corpus.length - passes} expected to violate a check, ${bugs} of them with an injected bug): ${failing.length === 0 ? 'every verdict holds.' : `**${failing.length} fail**:`}`];
  for (const f of failing.slice(0, 20)) out.push(`- \`${f.file}\` (${f.expect}): ${f.message.split('\n')[0]}`);
  return out;
}

function codeCoverageSection(data: ReportData): string[] {
  const c = data.coverage;
  if (c === null) return ['## Code coverage', '', 'Not available: run `npm run coverage` before `npm run report`.'];
  const out = ['## Code coverage', ''];
  out.push(...table(['metric', 'covered', 'total', '%'], METRICS.map((m) => [m, n(c.total[m].covered), n(c.total[m].total), pct(c.total[m]).toFixed(1)])), '');
  out.push('Least-covered files (by lines):', '');
  out.push(...table(['file', 'lines %', 'uncovered lines', 'branches %', 'functions %'], leastCovered(c, 10).map((f) => [`\`${f.file}\``, pct(f.metrics.lines).toFixed(1), n(f.metrics.lines.total - f.metrics.lines.covered), pct(f.metrics.branches).toFixed(1), pct(f.metrics.functions).toFixed(1)])));
  out.push('', 'The HTML report is in `reports/out/coverage/index.html`.');
  return out;
}

function timingsSection(data: ReportData): string[] {
  const out = [TIMINGS_MARKER, '## Timings and performance', ''];
  const rows: string[][] = [];
  for (const v of data.variants) {
    const r = v.campaign?.result;
    if (r === undefined) continue;
    rows.push([`campaign \`${v.design}\``, `${(r.timings.wallMs / 1000).toFixed(1)} s wall, ${n(r.timings.opsPerSecond)} checked ops/s, ${(r.timings.shrinkMs / 1000).toFixed(1)} s shrinking`]);
  }
  // Campaign phases are listed above with their throughput.
  for (const [name, ms] of Object.entries(data.timings)) if (!name.startsWith('campaign ')) rows.push([name, `${(ms / 1000).toFixed(1)} s`]);
  out.push(...table(['what', 'time'], rows), '');
  if (data.bench === null) out.push('Benchmarks: not available (`npm run bench -- --json > reports/out/bench.json` before the report).');
  else out.push('Benchmarks (`npm run bench -- --json`):', '', ...table(['figure', 'value'], Object.entries(data.bench).map(([k, v]) => [`\`${k}\``, n(v)])));
  return out;
}

export function renderSummary(data: ReportData): string {
  const verdict = overallVerdict(data);
  const head = [
    '# Conformance summary',
    '',
    `**${verdict.ok ? '✅ everything as expected' : '❌ something is not as expected'}**`,
    '',
    ...verdict.lines.map((l) => `- ${l}`),
    '',
    settingsLine(data),
    '',
  ];
  const body = [...propertiesSection(data), '', ...runsSection(data), '', ...killSection(data), '', ...corpusSection(data), '', ...counterexampleSection(data), ...coverageMatrix(data), ...codeCoverageSection(data), ''];
  const tail = timingsSection(data);
  let text = [...head, ...body, ...tail].join('\n') + '\n';
  if (Buffer.byteLength(text) > SUMMARY_BUDGET) {
    // The counterexample listings and the per-variant matrices are the big parts; report.json keeps them.
    const slim = [...head, ...propertiesSection(data), '', ...runsSection(data), '', ...killSection(data), '', ...corpusSection(data), '', '_Model coverage and counterexamples left out to fit a comment: see report.json._', '', ...codeCoverageSection(data), ''];
    text = [...slim, ...tail].join('\n') + '\n';
  }
  return text;
}

/** The summary without its timings section: what must be identical for identical seeds. */
export function deterministicPart(summary: string): string {
  const i = summary.indexOf(TIMINGS_MARKER);
  return i < 0 ? summary : summary.slice(0, i);
}

/** report.json: the same data, timings in their own key. */
export function reportJson(data: ReportData): string {
  const verdict = overallVerdict(data);
  const strip = <T extends { timings: unknown }>(r: T): Omit<T, 'timings'> => {
    const { timings: _t, ...rest } = r;
    return rest;
  };
  const body = {
    format: 1,
    ok: verdict.ok,
    verdict: verdict.lines,
    settings: {
      source: match(data.settings.source)
        .with({ kind: 'run' }, (src) => src as object)
        .with({ kind: 'merge' }, (src) => ({ kind: 'merge', dir: src.dir, shards: src.results.length }))
        .exhaustive(),
      bugRuns: data.settings.bugRuns,
      bugMachine: data.settings.bugMachine,
      bugSeed: data.settings.bugSeed,
      bugMaxOps: data.settings.bugMaxOps,
    },
    variants: data.variants.map((v) => ({ ...v, campaign: v.campaign === null ? null : { ...v.campaign, result: strip(v.campaign.result) } })),
    killMatrix: data.kill.map((k) => ({ ...k, campaign: k.campaign === null ? null : strip(k.campaign) })),
    corpus: data.corpus,
    coverage: data.coverage,
    timings: {
      phasesMs: data.timings,
      campaigns: Object.fromEntries(data.variants.filter((v) => v.campaign !== null).map((v) => [v.design, v.campaign?.result.timings])),
      bugCampaigns: Object.fromEntries(data.kill.filter((k) => k.campaign !== null).map((k) => [k.bug, k.campaign?.timings])),
      bench: data.bench,
    },
  };
  return JSON.stringify(body, null, 2) + '\n';
}
