/**
 * Renders the report as Markdown for a pull-request comment (kept under SUMMARY_BUDGET bytes)
 * and as JSON. Everything above the TIMINGS_MARKER line is a function of the seeds and inputs;
 * the timings and benchmark figures sit below it.
 */
import { match } from 'ts-pattern';
import { OPERATION_KINDS } from '../model/index.js';
import { compareRetNames, checkNames } from '../conformance/names.js';
import { namedMachine } from '../conformance/machines.js';
import { checkApplies } from '../properties/checks.js';
import { KNOWN_FINDINGS } from '../properties/known-findings.js';
import { type FindingRow, type KillRow, type ReportData, isPanicFinding, killCaught, overallVerdict } from './build.js';
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
  const bugs = data.settings.bugRuns === null ? 'no bug campaigns run here' : `bug campaigns: seed ${data.settings.bugSeed}, ${n(data.settings.bugRuns)} runs per bug on the ${data.settings.bugMachine} machine (a DMA bug on its own machine), up to ${data.settings.bugMaxOps} operations per run`;
  const filter = data.filtered
    ? ` On machines with an SMMU, the campaigns run here leave out every generated step that reaches a known finding of the design — ${KNOWN_FINDINGS.map((f) => `${f.reachedByText} (${f.name})`).join(', ')} — so that a detection is not that finding's; the findings are reproduced apart, under [Known findings](#known-findings-expected-counterexamples).`
    : '';
  return `${campaigns}; ${bugs}.${filter}`;
}

function propertiesSection(data: ReportData): string[] {
  const out = ['## Properties × design variants', ''];
  const head = ['property', ...data.variants.map((v) => `\`${v.design}\``)];
  const rows = checkNames().map((check) => [
    `\`${check}\``,
    ...data.variants.map((v) => {
      if (v.campaign === null) return 'not run';
      // Every machine the campaign ran on is known and has no SMMU: the IOMMU checks say nothing.
      const machines = v.campaign.machines.map((m) => namedMachine(m));
      if (machines.length > 0 && machines.every((m) => m !== undefined && m.smmu === undefined) && !checkApplies(check, false)) return 'n/a (no SMMU)';
      const c = v.campaign.result.checks[check];
      const expectedBreak = v.expectedToBreak.includes(check);
      const leftOut = v.leftOut[check];
      const witness = v.witnesses[check];
      const findings = leftOut === undefined ? '' : `; its known findings left out (${leftOut.map((f) => `\`${f}\``).join(', ')}) are reproduced apart`;
      if ((c === undefined || c.first === null) && expectedBreak && witness !== undefined)
        return `✅ breaks as expected (missed by ${n(v.campaign.result.runs)} runs; shown by ${witness.foundBy === 'trigger' ? 'its verdict trigger' : `run ${witness.run} of the verdict workload`}, ${witness.operations.length} ops${findings})`;
      if ((c === undefined || c.first === null) && expectedBreak && leftOut !== undefined) return `➖ its known findings left out (${leftOut.map((f) => `\`${f}\``).join(', ')}): reproduced apart`;
      if (c === undefined || c.first === null) return expectedBreak ? `❌ not detected (expected to break)` : `✅ holds (${n(v.campaign.result.runs)} runs)`;
      const where = `first at run ${c.first.run}, ${c.runs} run(s) in all`;
      return expectedBreak ? `✅ breaks as expected (${where})` : `❌ **violated** (${where})`;
    }),
  ]);
  const failing = data.corpus.filter((c) => !c.ok).length;
  rows.push(['regression corpus', ...data.variants.map(() => (failing === 0 ? `✅ ${data.corpus.length}/${data.corpus.length} files` : `❌ ${failing} of ${data.corpus.length} files fail`))]);
  out.push(...table(head, rows), '');
  for (const v of data.variants) out.push(`- \`${v.design}\`: ${v.description}${v.expectedToBreak.length > 0 ? `; expected to break ${v.expectedToBreak.join(', ')}` : ''}.`);
  if (data.variants.some((v) => Object.keys(v.witnesses).length > 0))
    out.push('', 'A declared break the campaign missed (its budget is small) is shown by the evidence of the verdict table in README (`npm run verdicts`) on the same machine: the design\'s hand-written verdict trigger, else the first run of the fixed verdict workload (seed and budget of properties/design-matrix.ts DEFAULT_BUDGET) that breaks the check. A break neither shows stays ❌.');
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
  if (data.filtered) out.push(`The steps of the known findings (${KNOWN_FINDINGS.map((f) => f.reachedByText).join(', ')}) were left out of the campaigns on the SMMU machine: they count as never executed here.`, '');
  const ran = data.variants.flatMap((v) => (v.campaign === null ? [] : [{ design: v.design, c: v.campaign.result }]));
  // The variants run the same generated steps: the ownership rows and the (model) transitions
  // agree, and only hardware steps return differently. After the first variant, each table shows
  // what differs from it, which keeps the summary within a pull-request comment.
  const codes = new Set<string>(['0']);
  for (const { c } of ran) for (const byRet of Object.values(c.returns)) for (const code of Object.keys(byRet)) codes.add(code);
  const cols = [...codes].sort(compareRetNames);
  const kindsOf = (c: (typeof ran)[number]['c']) => [...new Set([...OPERATION_KINDS, ...Object.keys(c.kinds)])];
  const rowsOf = (c: (typeof ran)[number]['c']) =>
    kindsOf(c).map((k) => [`\`${k}\``, n(c.kinds[k] ?? 0), ...cols.map((code) => {
      const x = c.returns[k]?.[code] ?? 0;
      return x === 0 ? '·' : n(x);
    })]);
  const first = ran[0];
  const firstRows = first === undefined ? [] : rowsOf(first.c).map((r) => r.join('|'));
  for (const { design, c } of ran) {
    const kinds = kindsOf(c);
    const rows = rowsOf(c);
    const isFirst = first !== undefined && first.design === design;
    const shown = isFirst ? rows : rows.filter((r) => !firstRows.includes(r.join('|')));
    if (isFirst) out.push(`### \`${design}\`: operation kinds × model return codes`, '');
    else out.push(`### \`${design}\`: operation kinds × model return codes${shown.length === 0 ? ` — the same as \`${first?.design}\`` : `, rows that differ from \`${first?.design}\``}`, '');
    if (shown.length > 0) out.push(...table(['kind', 'executed', ...cols.map((x) => `\`${x}\``)], shown), '');
    const never = kinds.filter((k) => (c.kinds[k] ?? 0) === 0);
    const noSuccess = kinds.filter((k) => (c.kinds[k] ?? 0) > 0 && (c.returns[k]?.[k === 'host_access' ? 'OK' : '0'] ?? 0) === 0);
    out.push(`Still zero: ${never.length === 0 && noSuccess.length === 0 ? 'none — every kind ran and succeeded at least once' : [never.length > 0 ? `never executed: ${never.map((k) => `\`${k}\``).join(', ')}` : '', noSuccess.length > 0 ? `never succeeded: ${noSuccess.map((k) => `\`${k}\``).join(', ')}` : ''].filter((x) => x !== '').join('; ')}.`, '');
    if (!isFirst && JSON.stringify(c.transitions) === JSON.stringify(first?.c.transitions)) {
      out.push(`### \`${design}\`: page-state transitions (model) — the same as \`${first?.design}\``, '');
      continue;
    }
    out.push(`### \`${design}\`: page-state transitions (model)`, '');
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
    const byCampaign = k.campaign?.checks[k.caughtBy]?.first != null;
    const verdict = k.campaign === null ? 'not run' : byCampaign ? '✅ caught' : killCaught(k) ? '✅ caught by its trigger' : '❌ **missed**';
    const shrunk = cx !== undefined ? `${cx.originalLength} → ${cx.operations.length}` : k.trigger?.shrunk != null ? `trigger ${k.trigger.originalLength} → ${k.trigger.shrunk.length}` : '—';
    return [`\`${k.bug}\``, `\`${k.caughtBy}\``, verdict, ...checks.map((c) => killCell(k, c)), shrunk, k.campaign === null ? '—' : n(k.campaign.runs)];
  });
  const triggered = data.kill.filter((k) => k.trigger !== null);
  return [
    '## Injected bugs (kill matrix)',
    '',
    'A cell `✔ r/o` means the check caught the bug after r runs and o operations of the bug campaign (per shard for merged campaigns); `·` means it never fired. Bold: the check meant to catch it.',
    '',
    ...table(['bug', 'meant to be caught by', 'verdict', ...checks.map((c) => `\`${c}\``), 'counterexample (ops, before → after shrinking)', 'runs'], rows),
    '',
    ...data.kill.map((k) => `- \`${k.bug}\`: ${k.description}.`),
    ...(triggered.length === 0
      ? []
      : [
          '',
          'Missed by their campaign, so their hand-written trigger ran (only the bug\'s check enabled; it must fire with the bug and nothing may fire without it), as `npm run zoo` does:',
          '',
          ...triggered.flatMap((k) => {
            const t = k.trigger;
            if (t === null) return [];
            const what = t.shrunk === null ? 'does not fire' : t.cleanWithout ? 'fires with the bug, clean without' : 'fires, but ALSO WITHOUT the bug';
            return [`- \`${k.bug}\`: ${what}${t.message === null ? '' : ` — ${t.message}`}`, ...(t.shrunk === null ? [] : ['', '  ```json', ...t.shrunk.map((op) => `  ${JSON.stringify(op)}`), '  ```'])];
          }),
        ]),
  ];
}

function findingsTable(rows: readonly FindingRow[]): string[] {
  return table(
    ['finding', 'check', 'reached by', 'variant', 'verdict', 'found by', 'counterexample (ops)', 'corpus'],
    rows.map((r) => {
      const first = r.campaign.checks[r.check]?.first;
      const found = r.foundBy === 'search' && first != null ? `search, run ${first.run} (after ${n(first.runsToDetection)} run(s), ${n(first.opsToDetection)} operations)` : r.foundBy === 'trigger' ? `trigger (search: ${n(r.campaign.runs)} runs without it)` : '—';
      const verdict = r.unexplained !== null ? '❌ **other counterexample**' : r.foundBy === null ? '❌ **not reproduced**' : '✅ reproduced';
      const variant = `\`${r.design}\`${r.knobsOff.length === 0 ? '' : ` without ${r.knobsOff.map((k) => `\`${k}\``).join(', ')}`}`;
      return [`\`${r.name}\``, `\`${r.check}\``, r.reachedBy, variant, verdict, found, r.operations === null ? '—' : `${r.originalLength ?? '?'} → ${r.operations.length}`, `\`${r.corpusFile}\``];
    }),
  );
}

function findingsSection(data: ReportData): string[] {
  const out = ['## Known findings (expected counterexamples)', ''];
  const f = data.findings;
  if (f.rows === null) return [...out, `Not reproduced here: ${f.why}.`];
  out.push(
    'Findings about the series as posted (README "Findings"), left out of the campaigns above. An isolation finding is searched for on the first variant expected to hold its check on this machine, with the knobs of it that remove the finding turned back to the posted code; a panic finding on the posted design itself; each without the other findings\' steps and with their WARN sites silenced, and stopped at the first detection; its hand-written trigger (its corpus file) stands in when the budget misses it. A counterexample that is not the finding (no step of it; for a panic, another WARN site) fails the report.',
    '',
  );
  const isolation = f.rows.filter((r) => !isPanicFinding(r));
  const panics = f.rows.filter((r) => isPanicFinding(r));
  if (isolation.length > 0) out.push('### Isolation: the host can reach protected memory', '', ...findingsTable(isolation), '');
  if (panics.length > 0) out.push('### Host can panic the hypervisor (`no_host_triggered_panic`: a WARN_ON at EL2, no memory reached)', '', ...findingsTable(panics), '');
  for (const r of [...isolation, ...panics]) {
    out.push(`- \`${r.name}\`${isPanicFinding(r) ? ' (host can panic the hypervisor)' : ''}: ${r.description}.`);
    if (r.operations !== null) out.push('', '  ```json', ...r.operations.map((op) => `  ${JSON.stringify(op)}`), '  ```');
    if (r.unexplained !== null) out.push('', `  The search's \`${r.check}\` counterexample is not this finding:`, '', '  ```json', ...r.unexplained.map((op) => `  ${JSON.stringify(op)}`), '  ```');
  }
  return out;
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
  const body = [...propertiesSection(data), '', ...runsSection(data), '', ...killSection(data), '', ...findingsSection(data), '', ...corpusSection(data), '', ...counterexampleSection(data), ...coverageMatrix(data), ...codeCoverageSection(data), ''];
  const tail = timingsSection(data);
  let text = [...head, ...body, ...tail].join('\n') + '\n';
  if (Buffer.byteLength(text) > SUMMARY_BUDGET) {
    // The counterexample listings and the per-variant matrices are the big parts; report.json keeps them.
    const slim = [...head, ...propertiesSection(data), '', ...runsSection(data), '', ...killSection(data), '', ...findingsSection(data), '', ...corpusSection(data), '', '_Model coverage and counterexamples left out to fit a comment: see report.json._', '', ...codeCoverageSection(data), ''];
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
    filtered: data.filtered ? KNOWN_FINDINGS.map((f) => ({ finding: f.name, leftOut: f.reachedByText })) : [],
    killMatrix: data.kill.map((k) => ({ ...k, campaign: k.campaign === null ? null : strip(k.campaign) })),
    knownFindings: data.findings.rows === null ? { notRun: data.findings.why } : data.findings.rows.map((r) => ({ ...r, campaign: strip(r.campaign) })),
    corpus: data.corpus,
    coverage: data.coverage,
    timings: {
      phasesMs: data.timings,
      campaigns: Object.fromEntries(data.variants.filter((v) => v.campaign !== null).map((v) => [v.design, v.campaign?.result.timings])),
      bugCampaigns: Object.fromEntries(data.kill.filter((k) => k.campaign !== null).map((k) => [k.bug, k.campaign?.timings])),
      findingCampaigns: Object.fromEntries((data.findings.rows ?? []).map((r) => [r.name, r.campaign.timings])),
      bench: data.bench,
    },
  };
  return JSON.stringify(body, null, 2) + '\n';
}
