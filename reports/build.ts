/**
 * Gathers what the pull-request summary shows: campaign results per design variant (run here
 * with fixed seeds, or merged from `verify` shards), the injected-bug kill matrix, the regression
 * corpus replay, code coverage and benchmark figures. Timings are kept apart so that everything
 * else is a function of the seeds and inputs.
 */
import { match } from 'ts-pattern';
import { type CampaignResult, type MergedCampaign, mergeResults } from '../conformance/campaign-result.js';
import { type CampaignSpec, campaignRunOptions, runCampaign } from '../conformance/campaign.js';
import { verdictText } from '../conformance/corpus-format.js';
import { corpusName, listCorpusFiles, loadCorpusFile, replayEntry } from '../conformance/corpus.js';
import { DEFAULT_DESIGN, DESIGNS, type DesignVariant } from '../conformance/designs.js';
import { HARDENING_KNOBS, designVariant } from '../impl/hyp/design.js';
import { type DriverOptions } from '../impl/hyp/smmu-driver/driver.js';
import { namedMachine } from '../conformance/machines.js';
import { ALL_BUGS } from '../properties/bugs/index.js';
import { type CheckName } from '../properties/checks.js';
import { DEFAULT_BUDGET, type WorkloadRun, declaredBreakWitness, workload } from '../properties/design-matrix.js';
import { type MachineConfig, verdictHardware } from '../properties/machine.js';
import { minimizeOperations } from '../properties/minimize.js';
import { type Step, runOperations } from '../properties/runner.js';
import { KNOWN_FINDINGS, type KnownFinding, knownPanicSites, notAKnownFinding } from '../properties/known-findings.js';
import { type TriggerOutcome, type ZooCandidate, runBugTrigger } from '../properties/zoo.js';
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
  /**
   * Expected breaks whose known findings (of this variant: no knob of it removes them) had their
   * steps left out of the campaign run here: check → finding names. Such a break is reproduced
   * apart (Known findings), so its campaign may hold the check. Empty for merged campaigns.
   */
  readonly leftOut: Readonly<Record<string, readonly string[]>>;
  /**
   * Expected breaks the campaign run here missed (its budget is small), witnessed by the verdict
   * matrix's evidence on the same machine (properties/design-matrix.ts declaredBreakWitness):
   * check → witness. Merged shards get one too when they all ran on one named machine.
   */
  readonly witnesses: Readonly<Record<string, BreakWitness>>;
  readonly campaign: MergedCampaign | null;
}

/** How a declared break missed by the campaign was shown: a hand-written trigger, or a run of the verdict workload. */
export interface BreakWitness {
  readonly foundBy: 'trigger' | 'workload';
  /** The workload run (0-based) that broke the check; null for a trigger. */
  readonly run: number | null;
  readonly operations: readonly Step[];
  readonly message: string | null;
}

export interface KillRow {
  readonly bug: string;
  readonly description: string;
  readonly caughtBy: string;
  /** Where the row's campaign came from. */
  readonly source: 'run' | 'merged';
  readonly campaign: CampaignResult | null;
  /** The bug's hand-written trigger, run when its campaign missed it (as `npm run zoo` does). */
  readonly trigger: TriggerOutcome | null;
}

/** A known finding reproduced as an expected counterexample (properties/zoo.ts KNOWN_FINDINGS). */
export interface FindingRow {
  readonly name: string;
  readonly description: string;
  readonly check: string;
  readonly reachedBy: string;
  readonly corpusFile: string;
  /** The variant it runs on: the first one expected to hold `check` on the machine (a panic finding: the default design)... */
  readonly design: string;
  /** ...without the knobs of it that remove the finding (back to the posted behaviour). */
  readonly knobsOff: readonly string[];
  readonly machine: string;
  /** The search (a campaign without the other findings' steps, stopped at the first detection). */
  readonly campaign: CampaignResult;
  /** 'search' or 'trigger' when reproduced; null when neither reached it. */
  readonly foundBy: 'search' | 'trigger' | null;
  readonly operations: readonly Step[] | null;
  readonly originalLength: number | null;
  /** A counterexample of the search that is not the finding's (no step of it): unexpected. */
  readonly unexplained: readonly Step[] | null;
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
  /**
   * The known findings, when the report ran its campaigns on a machine with an SMMU; null when
   * not applicable (no SMMU, or merged campaigns), with the reason.
   */
  readonly findings: { readonly rows: readonly FindingRow[] } | { readonly rows: null; readonly why: string };
  /** Whether some campaign run here left the known findings' steps out (SMMU machines). */
  readonly filtered: boolean;
  readonly corpus: readonly CorpusRow[];
  readonly coverage: CoverageInfo | null;
  readonly bench: Readonly<Record<string, number>> | null;
  /** Milliseconds per phase; the only part that varies between identical runs. */
  readonly timings: Readonly<Record<string, number>>;
}

/**
 * The design bug campaigns inject into when the bug names none, as `npm run zoo` does
 * (properties/zoo.ts): the hardened driver, where every check holds without a bug.
 */
export const BUG_DESIGN = 'v6-hardened';

/** A `no_host_triggered_panic` finding: the host can panic the hypervisor (not reach memory). */
export function isPanicFinding(f: { readonly check: string }): boolean {
  return f.check === 'no_host_triggered_panic';
}

/** The HARDENING_KNOBS that remove a known finding. */
function removingKnobs(f: KnownFinding): readonly (typeof HARDENING_KNOBS)[number][] {
  return HARDENING_KNOBS.filter((k) => k.removes.includes(f.name));
}

/** A known finding applies to a variant unless the variant sets a knob that removes it. */
export function findingApplies(f: KnownFinding, design: DesignVariant): boolean {
  const knobs = design.data.knobs as Readonly<Record<string, unknown>>;
  return !removingKnobs(f).some((k) => knobs[k.knob] === k.value);
}

function asMerged(r: CampaignResult): MergedCampaign {
  const merged = mergeResults([r])[0];
  if (merged === undefined) throw new Error('merge of one result is empty');
  return merged;
}

/** On an SMMU machine, campaigns leave out the steps of the known findings (reproduced apart). */
function keepFor(machine: MachineConfig): { keep?: (step: Step) => boolean } {
  return machine.smmu === undefined ? {} : { keep: notAKnownFinding };
}

/**
 * Reproduces a known finding on the report's machine: a campaign on `design` (for an isolation
 * finding, the first variant expected to hold its check there, so a detection is not a declared
 * break; for a panic finding, the posted design), with the knobs of it that remove the finding
 * turned back to the posted behaviour, without the other findings' steps
 * and with the other findings' WARN sites silenced (RunOptions.knownPanicSites), stopped at the
 * first detection and shrunk; its hand-written trigger when the budget misses it. A counterexample
 * that is not the finding's — an isolation one without a step of it, a panic at a WARN site that
 * is not the finding's — is something else: unexplained.
 */
async function reproduceFinding(finding: KnownFinding, design: DesignVariant, machineName: string, machine: MachineConfig, seed: number, runs: number, maxOps: number): Promise<FindingRow> {
  const designKnobs = design.data.knobs as Readonly<Record<string, unknown>>;
  const knobsOff = removingKnobs(finding).filter((k) => designKnobs[k.knob] !== undefined).map((k) => k.knob);
  const driver = Object.fromEntries(knobsOff.map((k) => [k, undefined])) as DriverOptions;
  const own = finding.panicSites ?? [];
  const otherSites = new Set([...knownPanicSites()].filter((site) => !own.includes(site)));
  const spec: CampaignSpec = { design: design.name, machineName, machine, maxOps, baseSeed: seed, shard: { index: 1, count: 1 }, runs, knownPanicSites: otherSites, ...(knobsOff.length === 0 ? {} : { driver }) };
  let found = false;
  const campaign = await runCampaign(spec, {
    keep: (o) => !KNOWN_FINDINGS.some((g) => g !== finding && g.reachedBy(o)),
    shrink: [finding.check],
    shouldStop: () => found,
    onCounterexample: () => {
      found = true;
      return null;
    },
  });
  const options = campaignRunOptions(spec, { checks: new Set<CheckName>([finding.check]) });
  const violation = (candidate: readonly Step[]) => runOperations(machine, candidate, options).failure?.violations.find((v) => v.check === finding.check);
  // A panic finding is its WARN sites; an isolation finding, the steps that reach it.
  const isFinding = (candidate: readonly Step[]): boolean => {
    if (own.length === 0) return candidate.some(finding.reachedBy);
    const message = violation(candidate)?.message ?? '';
    return own.some((site) => message.includes(`: ${site}: `));
  };
  const row = { name: finding.name, description: finding.description, check: finding.check, reachedBy: finding.reachedByText, corpusFile: finding.corpusFile, design: design.name, knobsOff, machine: machineName, campaign };
  const cx = campaign.counterexamples.find((c) => c.check === finding.check);
  const ops = cx?.operations as unknown as Step[] | undefined;
  if (ops !== undefined && isFinding(ops)) return { ...row, foundBy: 'search', operations: ops, originalLength: cx?.originalLength ?? null, unexplained: null };
  const fires = (candidate: readonly Step[]) => violation(candidate) !== undefined && (own.length === 0 || isFinding(candidate));
  const trigger = fires(finding.trigger) ? minimizeOperations(finding.trigger, fires) : null;
  return { ...row, foundBy: trigger === null ? null : 'trigger', operations: trigger, originalLength: trigger === null ? null : finding.trigger.length, unexplained: ops ?? null };
}

export async function buildReport(settings: ReportSettings): Promise<ReportData> {
  const clock = settings.clock ?? (() => performance.now());
  const timings: Record<string, number> = {};
  const merged = match(settings.source)
    .with({ kind: 'merge' }, (src) => mergeResults(src.results))
    .with({ kind: 'run' }, () => [])
    .exhaustive();

  const variants: VariantSection[] = [];
  // The verdict workload on the report's machine, built only when a campaign misses a declared break.
  let witnessWorkload: WorkloadRun[] | undefined;
  for (const design of DESIGNS.values()) {
    const campaign: MergedCampaign | null = await match(settings.source)
      .with({ kind: 'merge' }, async () => merged.find((m) => m.design === design.name && m.bug === null) ?? null)
      .with({ kind: 'run' }, async (src) => {
        const machine = namedMachine(src.machine);
        if (machine === undefined) throw new Error(`unknown machine ${src.machine}`);
        const t0 = clock();
        const r = asMerged(await runCampaign({ design: design.name, machineName: src.machine, machine, maxOps: src.maxOps, baseSeed: src.seed, shard: { index: 1, count: 1 }, runs: src.runs }, keepFor(machine)));
        timings[`campaign ${design.name}`] = clock() - t0;
        return r;
      })
      .exhaustive();
    // A run on a named machine knows its hardware, so hardware-dependent verdicts apply; so do
    // merged shards that all ran on one named machine (v6-posted breaks DMA checks only with an SMMU).
    const shardMachines = campaign?.machines ?? [];
    const runMachine = settings.source.kind === 'run' ? namedMachine(settings.source.machine) : shardMachines.length === 1 ? namedMachine(shardMachines[0] as string) : undefined;
    const expectedToBreak = runMachine === undefined ? design.expectedToBreak : design.expectedToBreakOn(runMachine);
    const leftOut: Record<string, string[]> = {};
    // Only the campaigns run here leave the known findings' steps out (shards keep every step).
    if (settings.source.kind === 'run' && runMachine?.smmu !== undefined) {
      for (const check of expectedToBreak) {
        const names = KNOWN_FINDINGS.filter((f) => f.check === check && findingApplies(f, design)).map((f) => f.name);
        if (names.length > 0) leftOut[check] = names;
      }
    }
    const witnesses: Record<string, BreakWitness> = {};
    if (runMachine !== undefined && campaign !== null) {
      const data = designVariant(design.name);
      for (const check of expectedToBreak) {
        if (campaign.result.checks[check]?.first != null || data === undefined) continue;
        const ops = (witnessWorkload ??= workload(runMachine, DEFAULT_BUDGET));
        // Where known findings were left out, only a break without their steps is news.
        const w = declaredBreakWitness(data, runMachine, check as CheckName, ops, { workloadOnly: leftOut[check] !== undefined });
        if (w?.foundBy !== undefined) witnesses[check] = { foundBy: w.foundBy, run: w.firstRun ?? null, operations: w.counterexample ?? [], message: w.message ?? null };
      }
    }
    variants.push({ design: design.name, description: design.description, expectedToBreak, leftOut, witnesses, campaign });
  }

  let filtered = settings.source.kind === 'run' && namedMachine(settings.source.machine)?.smmu !== undefined;
  const kill: KillRow[] = [];
  const t1 = clock();
  for (const bug of ALL_BUGS as readonly ZooCandidate[]) {
    // DMA bugs live on a machine with an SMMU; the others on the report's bug machine.
    const machineName = bug.machine ?? settings.bugMachine;
    const machine = namedMachine(machineName);
    if (machine === undefined) throw new Error(`unknown machine ${machineName}`);
    const bugDesign = bug.design ?? BUG_DESIGN;
    // Shards of `verify --bug` on the bug's design, else on verify's default design.
    const fromShards = merged.find((m) => m.design === bugDesign && m.bug === bug.name) ?? merged.find((m) => m.design === DEFAULT_DESIGN && m.bug === bug.name);
    let campaign: CampaignResult | null = fromShards?.result ?? null;
    if (campaign === null && settings.bugRuns !== null) {
      filtered ||= machine.smmu !== undefined;
      campaign = await runCampaign(
        { design: bugDesign, machineName, machine, maxOps: settings.bugMaxOps, baseSeed: settings.bugSeed, shard: { index: 1, count: 1 }, runs: settings.bugRuns, bug: bug.name },
        { shrink: [bug.caughtBy], ...keepFor(machine) },
      );
    }
    // Some bugs need a precondition the search budget rarely builds (a race at a yield point, an
    // exhausted pool): their trigger stands in, as in `npm run zoo`.
    const missed = campaign !== null && campaign.checks[bug.caughtBy]?.first == null;
    const trigger = missed ? (runBugTrigger(bug, machine) ?? null) : null;
    kill.push({ bug: bug.name, description: bug.description, caughtBy: bug.caughtBy, source: fromShards === undefined ? 'run' : 'merged', campaign, trigger });
  }
  timings['kill matrix'] = clock() - t1;

  const t3 = clock();
  let findings: ReportData['findings'];
  if (settings.source.kind === 'merge') findings = { rows: null, why: 'the campaigns were merged from shards, which keep every step' };
  else {
    const src = settings.source;
    const machine = namedMachine(src.machine);
    if (machine === undefined) throw new Error(`unknown machine ${src.machine}`);
    if (machine.smmu === undefined) findings = { rows: null, why: `the ${src.machine} machine has no SMMU` };
    else {
      const rows: FindingRow[] = [];
      for (const f of KNOWN_FINDINGS) {
        // A panic finding is searched for on the posted code itself (the one that WARNs), every
        // other known WARN site silenced; an isolation one on the first variant expected to hold
        // dma_isolation here, without the knobs that remove it (ATS, say, breaks v6-posted too).
        // A finding the hardware cannot have (no ATS-capable device, no MSI) is not searched for.
        const hw = verdictHardware(machine);
        if ((f.needs?.ats === true && !hw.ats) || (f.needs?.msi === true && !hw.msi)) continue;
        const design = isPanicFinding(f)
          ? DESIGNS.get(DEFAULT_DESIGN)
          : f.reproduceOn !== undefined
            ? DESIGNS.get(f.reproduceOn)
            : [...DESIGNS.values()].find((d) => !d.expectedToBreakOn(machine).includes(f.check));
        if (design === undefined) continue;
        rows.push(await reproduceFinding(f, design, src.machine, machine, src.seed, src.runs, src.maxOps));
      }
      findings = { rows };
    }
  }
  timings['known findings'] = clock() - t3;

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

  return { settings, variants, kill, findings, filtered, corpus, coverage: settings.coverage, bench: settings.bench, timings };
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
    // An expected break whose known findings were left out of the campaign may hold: the findings are reproduced apart.
    const unexpected = Object.entries(checks).filter(([name, c]) => (c.first !== null) !== v.expectedToBreak.includes(name) && !(c.first === null && (v.leftOut[name] !== undefined || v.witnesses[name] !== undefined)));
    if (unexpected.length > 0) ok = false;
    lines.push(
      unexpected.length === 0
        ? `design ${v.design}: every property as expected (${v.campaign.result.runs} runs, ${v.campaign.result.operations} operations)`
        : `design ${v.design}: UNEXPECTED ${unexpected.map(([n, c]) => `${n} ${c.first === null ? 'holds' : 'violated'}`).join(', ')}`,
    );
  }
  const ran = data.kill.filter((k) => k.campaign !== null);
  const caught = ran.filter(killCaught);
  if (ran.length > 0) {
    if (caught.length < ran.length) ok = false;
    const byTrigger = caught.filter((k) => k.campaign?.checks[k.caughtBy]?.first == null).length;
    lines.push(`injected bugs: ${caught.length}/${ran.length} caught by their check${byTrigger > 0 ? ` (${byTrigger} by the bug's trigger after the campaign missed it)` : ''}`);
  }
  if (data.findings.rows !== null && data.findings.rows.length > 0) {
    // Isolation findings (the host reaches protected memory) apart from the panic ones.
    for (const [kind, rows] of [
      ['isolation', data.findings.rows.filter((f) => !isPanicFinding(f))],
      ['host can panic the hypervisor', data.findings.rows.filter((f) => isPanicFinding(f))],
    ] as const) {
      if (rows.length === 0) continue;
      const reproduced = rows.filter((f) => f.foundBy !== null).length;
      const unexplained = rows.filter((f) => f.unexplained !== null).length;
      if (reproduced < rows.length || unexplained > 0) ok = false;
      lines.push(`known findings (${kind}): ${reproduced}/${rows.length} reproduced as expected counterexamples${unexplained > 0 ? `; ${unexplained} search(es) found a counterexample that is NOT the finding` : ''}`);
    }
  }
  const failing = data.corpus.filter((c) => !c.ok);
  if (failing.length > 0) ok = false;
  lines.push(`regression corpus: ${data.corpus.length - failing.length}/${data.corpus.length} verdicts hold`);
  return { ok, lines };
}

/** Caught by its campaign, or by its trigger (firing with the bug, clean without it). */
export function killCaught(k: KillRow): boolean {
  return k.campaign !== null && (k.campaign.checks[k.caughtBy]?.first != null || k.trigger?.caught === true);
}
