/**
 * One worker thread of `verify --workers N` (cli/campaign-workers.ts): runs its sub-shard of the
 * campaign and posts progress and the result back. It writes nothing: the main thread merges the
 * shards (`mergeResults`, as `report --merge` does) and writes the counterexamples the merged
 * campaign keeps, so the corpus gets exactly what a one-worker campaign would write.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { type CampaignSpec, runCampaign } from '../conformance/campaign.js';
import { notAKnownFinding } from '../properties/known-findings.js';

export interface CampaignWorkerData {
  readonly spec: CampaignSpec;
  readonly skipKnownFindings: boolean;
  readonly progressEveryMs: number;
}

const port = parentPort;
if (port !== null) {
  const data = workerData as CampaignWorkerData;
  let stop = false;
  port.on('message', (m: unknown) => {
    if (m === 'stop') stop = true;
  });
  runCampaign(data.spec, {
    onProgress: (p) => port.postMessage({ kind: 'progress', progress: p }),
    progressEveryMs: data.progressEveryMs,
    shouldStop: () => stop,
    onCounterexample: () => null,
    ...(data.skipKnownFindings ? { keep: notAKnownFinding } : {}),
  }).then(
    (result) => port.postMessage({ kind: 'result', result }),
    (e: unknown) => port.postMessage({ kind: 'error', message: e instanceof Error ? e.message : String(e) }),
  );
}
