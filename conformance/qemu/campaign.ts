/**
 * A differential campaign: N generated cases (deterministic from the seed), each run on the
 * model and on QEMU; the first case that differs for a reason not in the known-bug filter is
 * shrunk with fast-check (its step list, so every candidate is still a well-formed trace) and
 * reported as a trace.
 */
import fc from 'fast-check';
import { type SmmuMode } from '../../impl/hw/smmu/index.js';
import { type CaseResult, type Difference, QemuSession } from './session.js';
import { type DiffCase, compileCase, diffCase } from './generators.js';
import { type DiffEnv } from './replay.js';
import { type Trace, formatTrace } from './trace.js';

export interface CampaignOptions {
  readonly cases: number;
  readonly seed: number;
  readonly maxSteps?: number;
  /** Case runs allowed for shrinking (each is one QEMU case). */
  readonly shrinkRuns?: number;
  /** Parallel QEMU instances. */
  readonly shards?: number;
  readonly onCase?: (index: number, result: CaseResult) => void;
  /** The model's mode: 'permissive' (default); 'strict' demonstrates that differences are found and shrunk. */
  readonly modelMode?: SmmuMode;
}

export interface ShrunkFailure {
  readonly index: number;
  readonly original: { readonly ops: number; readonly first: Difference };
  readonly steps: DiffCase;
  readonly trace: Trace;
  readonly first: Difference;
  readonly shrinkRuns: number;
}

export interface CampaignReport {
  readonly seed: number;
  readonly cases: number;
  readonly same: number;
  readonly known: Readonly<Record<string, number>>;
  readonly differ: number;
  /** Kinds of the first differences (observation kind + trace name), with counts. */
  readonly differKinds: Readonly<Record<string, number>>;
  readonly failure: ShrunkFailure | undefined;
  /** Generated steps (the generators' high-level steps, as qemu-smmuv3-peer.md §4 counts them). */
  readonly steps: number;
  readonly ops: number;
  readonly transactions: number;
  readonly qemuStarts: number;
  /** Cases run again on a fresh QEMU after a qtest timeout. */
  readonly retries: number;
  readonly elapsedMs: number;
  readonly shrinkMs: number;
}

function transactions(t: Trace): number {
  return t.ops.filter((o) => o.t === 'dmaw' || o.t === 'dmar').length;
}

export async function runCampaign(options: CampaignOptions): Promise<CampaignReport> {
  const shards = Math.max(1, options.shards ?? 2);
  const sessions = Array.from({ length: shards }, () => new QemuSession({}, options.modelMode ?? 'permissive'));
  try {
    const t0 = Date.now();
    const env: DiffEnv = await (sessions[0] as QemuSession).env();
    const arb = diffCase(options.maxSteps ?? 40);
    const cases = fc.sample(arb, { seed: options.seed, numRuns: options.cases });
    const results: (CaseResult | undefined)[] = new Array(cases.length).fill(undefined);
    const traces: Trace[] = cases.map((c) => compileCase(env, c));
    let next = 0;
    await Promise.all(
      sessions.map(async (s) => {
        for (;;) {
          const i = next++;
          if (i >= traces.length) return;
          const r = await s.run(traces[i] as Trace);
          results[i] = r;
          options.onCase?.(i, r);
        }
      }),
    );
    const elapsedMs = Date.now() - t0;
    const known: Record<string, number> = {};
    const differKinds: Record<string, number> = {};
    let same = 0;
    let differ = 0;
    let firstFail = -1;
    results.forEach((r, i) => {
      if (r === undefined) return;
      if (r.status === 'same') same++;
      else if (r.status === 'known') known[r.deviation] = (known[r.deviation] ?? 0) + 1;
      else {
        differ++;
        const key = `${r.first.k} (${traces[i]?.name ?? '?'})`;
        differKinds[key] = (differKinds[key] ?? 0) + 1;
        if (firstFail < 0) firstFail = i;
      }
    });
    const t1 = Date.now();
    const failure = firstFail < 0 ? undefined : await shrink(sessions[0] as QemuSession, env, cases[firstFail] as DiffCase, firstFail, results[firstFail] as CaseResult, options);
    return {
      seed: options.seed,
      cases: cases.length,
      same,
      known,
      differ,
      differKinds,
      failure,
      steps: cases.reduce((n, c) => n + c.steps.length, 0),
      ops: traces.reduce((n, t) => n + t.ops.length, 0),
      transactions: traces.reduce((n, t) => n + transactions(t), 0),
      qemuStarts: sessions.reduce((n, s) => n + s.starts, 0),
      retries: sessions.reduce((n, s) => n + s.retries, 0),
      elapsedMs,
      shrinkMs: Date.now() - t1,
    };
  } finally {
    for (const s of sessions) s.close();
  }
}

/** fast-check shrinking of one failing case, bounded by `shrinkRuns` case runs. */
async function shrink(session: QemuSession, env: DiffEnv, failing: DiffCase, index: number, result: CaseResult, options: CampaignOptions): Promise<ShrunkFailure> {
  const budget = options.shrinkRuns ?? 300;
  let runs = 0;
  let best: { steps: DiffCase; trace: Trace; first: Difference } | undefined;
  const arb = diffCase(options.maxSteps ?? 40);
  let firstRun = true;
  let replayed = true;
  await fc.check(
    fc.asyncProperty(arb, async (c) => {
      // The path replays exactly the failing case (fc.sample and fc.check share the generation);
      // check it, since shrinking anything else would be meaningless.
      if (firstRun) {
        firstRun = false;
        replayed = JSON.stringify(c) === JSON.stringify(failing);
        if (!replayed) return true;
      }
      // Past the budget every candidate passes, which ends shrinking on the smallest failure so far.
      if (runs >= budget) return true;
      runs++;
      const trace = compileCase(env, c);
      const r = await session.run(trace);
      if (r.status !== 'differ') return true;
      best = { steps: c, trace, first: r.first };
      return false;
    }),
    { seed: options.seed, numRuns: options.cases, path: String(index) },
  );
  if (!replayed) throw new Error(`fast-check did not replay case ${index} of seed ${options.seed}`);
  const original = result.status === 'differ' ? { ops: result.ops, first: result.first } : { ops: 0, first: { at: -1, k: 'regs' as const, page: undefined, model: '', qemu: '' } };
  const full = best?.trace ?? compileCase(env, failing);
  const first = best?.first ?? original.first;
  // Ops after the first difference cannot matter to it (a memory difference is found at the end).
  const trace = first.at >= 0 ? { ...full, ops: full.ops.slice(0, first.at + 1) } : full;
  return { index, original, steps: best?.steps ?? failing, trace, first, shrinkRuns: runs };
}

/** The report's printed lines. */
export function formatReport(r: CampaignReport): string[] {
  const lines: string[] = [];
  const secs = r.elapsedMs / 1000;
  lines.push(`seed ${r.seed}: ${r.cases} cases, ${r.steps} generated steps, ${r.transactions} transactions, ${r.ops} trace ops, ${r.qemuStarts} QEMU starts${r.retries > 0 ? ` (${r.retries} cases rerun after a qtest timeout)` : ''}, ${secs.toFixed(1)} s`);
  lines.push(`throughput: ${(r.cases / secs).toFixed(1)} cases/s, ${(r.steps / secs).toFixed(0)} steps/s, ${(r.ops / secs).toFixed(0)} ops/s, ${(r.transactions / secs).toFixed(0)} transactions/s (model + QEMU)`);
  lines.push(`same: ${r.same}; known QEMU deviations: ${Object.entries(r.known).map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}; differ: ${r.differ}`);
  for (const [k, n] of Object.entries(r.differKinds)) lines.push(`  first difference ${k}: ${n}`);
  const f = r.failure;
  if (f !== undefined) {
    lines.push('');
    lines.push(`case ${f.index} differs; shrunk with ${f.shrinkRuns} runs from ${f.original.ops} to ${f.trace.ops.length} ops (${f.trace.name}):`);
    lines.push(`  steps: ${JSON.stringify(f.steps)}`);
    lines.push(...formatTrace(f.trace, f.first.at));
    lines.push(`first difference after op ${f.first.at} (${f.first.k}${f.first.page === undefined ? '' : ` page 0x${f.first.page.toString(16)}`}):`);
    lines.push(`  model: ${abbreviate(f.first.model)}`);
    lines.push(`  qemu:  ${abbreviate(f.first.qemu)}`);
  }
  return lines;
}

function abbreviate(v: string): string {
  return v.length > 400 ? v.slice(0, 400) + '…' : v;
}
