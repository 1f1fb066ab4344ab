/**
 * Gathers what the pull-request summary shows: campaign results per design variant (run here
 * with fixed seeds, or merged from `verify` shards), the injected-bug kill matrix, the regression
 * corpus replay, code coverage and benchmark figures. Timings are kept apart so that everything
 * else is a function of the seeds and inputs.
 */
import { match } from 'ts-pattern';
import { type CampaignResult, type MergedCampaign, mergeResults } from '../conformance/campaign-result.js';
import { runCampaign } from '../conformance/campaign.js';
import { verdictText } from '../conformance/corpus-format.js';
import { corpusName, listCorpusFiles, loadCorpusFile, replayEntry } from '../conformance/corpus.js';
import { DEFAULT_DESIGN, DESIGNS } from '../conformance/designs.js';
import { namedMachine } from '../conformance/machines.js';
import { ALL_BUGS } from '../properties/bugs/index.js';
import { type CoverageInfo } from './coverage.js';

export interface ReportSettings {
  /** Where the campaigns came from: run here, or merged shard files. */
  readonly source: { readonly kind: 'run'; readonly machine: string; readonly seed: number; readonly runs: number; readonly maxOps: number } | { readonly kind: 'merge'; readonly dir: string; readonly results: readonly CampaignResult[] };
  /** Runs per injected bug for the kill matrix; null skips the bugs no shard covered. */
  readonly bugRuns: number | null;
  /** Machine, seed and length for bug campaigns run here. */
  readonly bugMachine: string;
  readonly bugSeed: number;
  readonly bugMaxOps: number;
  readonly corpusDir: string;
  readonly coverage: CoverageInfo | null;
  readonly bench: Readonly<Record<string, number>> | null;
  readonly clock?: () => number;
}

export interface VariantSection {
  readonly design: string;
  readonly description: string;
  readonly expectedToBreak: readonly string[];
  readonly campaign: MergedCampaign | null;
}

export interface KillRow {
  readonly bug: string;
  readonly description: string;
  readonly caughtBy: string;
  /** Where the row's campaign came from. */
  readonly source: 'run' | 'merged';
  readonly campaign: CampaignResult | null;
}

export interface CorpusRow {
  readonly file: string;
  readonly expect: string;
  readonly bug: string | null;
  readonly operations: number;
  readonly ok: boolean;
  readonly message: string;
}

export interface ReportData {
  readonly settings: ReportSettings;
  readonly variants: readonly VariantSection[];
  readonly kill: readonly KillRow[];
  readonly corpus: readonly CorpusRow[];
  readonly coverage: CoverageInfo | null;
  readonly bench: Readonly<Record<string, number>> | null;
  /** Milliseconds per phase; the only part that varies between identical runs. */
  readonly timings: Readonly<Record<string, number>>;
}

function asMerged(r: CampaignResult): MergedCampaign {
  const merged = mergeResults([r])[0];
  if (merged === undefined) throw new Error('merge of one result is empty');
  return merged;
}

export async function buildReport(settings: ReportSettings): Promise<ReportData> {
  const clock = settings.clock ?? (() => performance.now());
  const timings: Record<string, number> = {};
  const merged = match(settings.source)
    .with({ kind: 'merge' }, (src) => mergeResults(src.results))
    .with({ kind: 'run' }, () => [])
    .exhaustive();

  const variants: VariantSection[] = [];
  for (const design of DESIGNS.values()) {
    const campaign: MergedCampaign | null = await match(settings.source)
      .with({ kind: 'merge' }, async () => merged.find((m) => m.design === design.name && m.bug === null) ?? null)
      .with({ kind: 'run' }, async (src) => {
        const machine = namedMachine(src.machine);
        if (machine === undefined) throw new Error(`unknown machine ${src.machine}`);
        const t0 = clock();
        const r = asMerged(await runCampaign({ design: design.name, machineName: src.machine, machine, maxOps: src.maxOps, baseSeed: src.seed, shard: { index: 1, count: 1 }, runs: src.runs }));
        timings[`campaign ${design.name}`] = clock() - t0;
        return r;
      })
      .exhaustive();
    // A run on a named machine knows its hardware, so hardware-dependent verdicts apply.
    const runMachine = settings.source.kind === 'run' ? namedMachine(settings.source.machine) : undefined;
    const expectedToBreak = runMachine === undefined ? design.expectedToBreak : design.expectedToBreakOn(runMachine);
    variants.push({ design: design.name, description: design.description, expectedToBreak, campaign });
  }

  const kill: KillRow[] = [];
  const t1 = clock();
  for (const bug of ALL_BUGS) {
    const fromShards = merged.find((m) => m.design === DEFAULT_DESIGN && m.bug === bug.name);
    if (fromShards !== undefined) {
      kill.push({ bug: bug.name, description: bug.description, caughtBy: bug.caughtBy, source: 'merged', campaign: fromShards.result });
      continue;
    }
    let campaign: CampaignResult | null = null;
    if (settings.bugRuns !== null) {
      // DMA bugs live on a machine with an SMMU; the others on the report's bug machine.
      const machineName = bug.machine ?? settings.bugMachine;
      const machine = namedMachine(machineName);
      if (machine === undefined) throw new Error(`unknown machine ${machineName}`);
      campaign = await runCampaign(
        { design: bug.design ?? DEFAULT_DESIGN, machineName, machine, maxOps: settings.bugMaxOps, baseSeed: settings.bugSeed, shard: { index: 1, count: 1 }, runs: settings.bugRuns, bug: bug.name },
        { shrink: [bug.caughtBy] },
      );
    }
    kill.push({ bug: bug.name, description: bug.description, caughtBy: bug.caughtBy, source: 'run', campaign });
  }
  timings['kill matrix'] = clock() - t1;

  const t2 = clock();
  const corpus: CorpusRow[] = listCorpusFiles(settings.corpusDir).map((path) => {
    const loaded = loadCorpusFile(path);
    const file = corpusName(path);
    if (!loaded.ok) return { file, expect: '?', bug: null, operations: 0, ok: false, message: loaded.errors.join('; ') };
    const e = loaded.value;
    const outcome = replayEntry(e);
    return { file, expect: verdictText(e.expect), bug: e.bug ?? null, operations: e.operations.length, ok: outcome.ok, message: outcome.message };
  });
  timings['corpus replay'] = clock() - t2;

  return { settings, variants, kill, corpus, coverage: settings.coverage, bench: settings.bench, timings };
}

/** The one-line verdict and whether everything is as expected (the report's exit status). */
export function overallVerdict(data: ReportData): { ok: boolean; lines: string[] } {
  const lines: string[] = [];
  let ok = true;
  for (const v of data.variants) {
    if (v.campaign === null) {
      lines.push(`design ${v.design}: no campaign results`);
      continue;
    }
    const checks = v.campaign.result.checks;
    const unexpected = Object.entries(checks).filter(([name, c]) => (c.first !== null) !== v.expectedToBreak.includes(name));
    if (unexpected.length > 0) ok = false;
    lines.push(
      unexpected.length === 0
        ? `design ${v.design}: every property as expected (${v.campaign.result.runs} runs, ${v.campaign.result.operations} operations)`
        : `design ${v.design}: UNEXPECTED ${unexpected.map(([n, c]) => `${n} ${c.first === null ? 'holds' : 'violated'}`).join(', ')}`,
    );
  }
  const ran = data.kill.filter((k) => k.campaign !== null);
  const caught = ran.filter((k) => k.campaign?.checks[k.caughtBy]?.first != null);
  if (ran.length > 0) {
    if (caught.length < ran.length) ok = false;
    lines.push(`injected bugs: ${caught.length}/${ran.length} caught by their check`);
  }
  const failing = data.corpus.filter((c) => !c.ok);
  if (failing.length > 0) ok = false;
  lines.push(`regression corpus: ${data.corpus.length - failing.length}/${data.corpus.length} verdicts hold`);
  return { ok, lines };
}
