/**
 * `verify --workers N` (issue 15 item 2): the campaign's shard split N ways across worker threads.
 * Worker k of shard i/n runs shard (i − 1 + n·k + 1)/(n·N) — the runs r ≡ i − 1 (mod n) with
 * ⌊r / n⌋ ≡ k (mod N) — so the workers together run exactly the runs of shard i/n, and the
 * shards merge with `mergeResults` (what `report --merge` does) into the result one worker gives
 * for a `--runs` campaign, timings aside (tested by cli/verify-workers.test.ts).
 */
import { Worker } from 'node:worker_threads';
import { type CampaignProgress, type CampaignSpec } from '../conformance/campaign.js';
import { type CampaignResult, mergeResults } from '../conformance/campaign-result.js';
import { type CampaignWorkerData } from './campaign-worker.js';

export interface WorkerCampaignOptions {
  readonly skipKnownFindings: boolean;
  readonly progressEveryMs: number;
  readonly onProgress?: (p: CampaignProgress) => void;
  /** Polled; true asks every worker to finish its current run and report. */
  readonly shouldStop?: () => boolean;
}

type WorkerMessage = { kind: 'progress'; progress: CampaignProgress } | { kind: 'result'; result: CampaignResult } | { kind: 'error'; message: string };

/** The sub-shard worker `k` of `workers` runs within `shard`. */
export function workerShard(shard: { readonly index: number; readonly count: number }, k: number, workers: number): { index: number; count: number } {
  return { index: shard.index + shard.count * k, count: shard.count * workers };
}

export async function runCampaignInWorkers(spec: CampaignSpec, workers: number, options: WorkerCampaignOptions): Promise<CampaignResult> {
  const progress: CampaignProgress[] = [];
  // The union of the workers' coverage keys (their own counts overlap).
  const keys = new Set<string>();
  const threads: Worker[] = [];
  const poll = setInterval(() => {
    if (options.shouldStop?.() === true) for (const t of threads) t.postMessage('stop');
  }, 100);
  const report = () => {
    const sum = (f: (p: CampaignProgress) => number) => progress.reduce((n, p) => n + f(p), 0);
    options.onProgress?.({ runs: sum((p) => p.runs), operations: sum((p) => p.operations), failedRuns: sum((p) => p.failedRuns), knownPanics: sum((p) => p.knownPanics), counterexamples: sum((p) => p.counterexamples), elapsedMs: Math.max(0, ...progress.map((p) => p.elapsedMs)), coverageKeys: keys.size });
  };
  try {
    const results = await Promise.all(
      Array.from({ length: workers }, (_, k) => {
        const data: CampaignWorkerData = { spec: { ...spec, shard: workerShard(spec.shard, k, workers) }, skipKnownFindings: options.skipKnownFindings, progressEveryMs: options.progressEveryMs };
        // A plain-JS entry registers tsx's loader in the thread first (campaign-worker-boot.mjs).
        const thread = new Worker(new URL('./campaign-worker-boot.mjs', import.meta.url), { workerData: data, execArgv: [] });
        threads.push(thread);
        return new Promise<CampaignResult>((resolve, reject) => {
          thread.on('message', (m: WorkerMessage) => {
            if (m.kind === 'progress') {
              progress[k] = m.progress;
              for (const h of m.progress.newKeyHashes ?? []) keys.add(h);
              report();
            } else if (m.kind === 'result') {
              resolve(m.result);
              void thread.terminate();
            } else reject(new Error(`worker ${k + 1}: ${m.message}`));
          });
          thread.on('error', reject);
          thread.on('exit', (code) => {
            if (code !== 0 && code !== 1) reject(new Error(`worker ${k + 1} exited with ${code}`));
          });
        });
      }),
    );
    const merged = mergeResults(results);
    const only = merged[0];
    if (merged.length !== 1 || only === undefined) throw new Error('workers returned results of different campaigns');
    return { ...only.result, shard: { index: spec.shard.index, count: spec.shard.count } };
  } finally {
    clearInterval(poll);
    for (const t of threads) void t.terminate();
  }
}
