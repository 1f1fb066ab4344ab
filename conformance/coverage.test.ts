/**
 * Abstract-state coverage keys and coverage-guided generation (issue 15 item 3).
 */
import { describe, expect, it } from 'vitest';
import { HARDENED_KNOBS } from '../impl/hyp/design.js';
import { smallMachineWithSmmu, withDriverOptions } from '../properties/machine.js';
import { type Step, runOperations } from '../properties/runner.js';
import { mergeResults } from './campaign-result.js';
import { type CampaignSpec, mutateRun, runCampaign } from './campaign.js';
import { CoverageTracker, coverageKey, stepStructure } from './coverage.js';
import { namedMachine } from './machines.js';

const smmuMachine = namedMachine('small-smmu-no-ats') ?? smallMachineWithSmmu({ ats: false });

function keysOf(ops: readonly Step[]): string[] {
  const keys: string[] = [];
  let pre: Parameters<typeof coverageKey>[1] | undefined;
  runOperations(withDriverOptions(smmuMachine, HARDENED_KNOBS), ops, {
    steps: {
      before: (_i, _sys, model) => {
        pre = model;
      },
      after: (record, system, model) => keys.push(coverageKey(record, pre ?? model, model, system)),
    },
  });
  return keys;
}

describe('coverage keys', () => {
  it('name the kind, the return code, the page transitions, the cache state and the structure', () => {
    const keys = keysOf([
      { kind: 'dma', sid: 1, addr: 0x4000_2000, access: 'read' },
      { kind: 'host_donate_hyp', pfn: 0x40002, nrPages: 1 },
      { kind: 'host_donate_hyp', pfn: 0x40002, nrPages: 1 },
    ]);
    // The DMA cached a TLB entry for a page it still may reach.
    expect(keys[0]).toBe('dma|0||none|dma');
    // The donation moved the page and its TLBI removed the entry.
    expect(keys[1]).toBe('host_donate_hyp|0|host:OWNED>NOPAGE,hyp:NOPAGE>OWNED|none|hyp');
    expect(keys[2]).toBe('host_donate_hyp|-EPERM||none|hyp');
  });

  it('a cached entry that still reaches a page the host gave away is "stale" (the no-TLBI_NH_ALL design)', () => {
    const ops: Step[] = [
      { kind: 'host_domain_attach', smmu: 0, sid: 1 },
      { kind: 'host_domain_map', smmu: 0, sid: 1, iova: 0x10_0000, pa: 0x4000_2000, nrPages: 1, write: true },
      { kind: 'dma', sid: 1, addr: 0x10_0000, access: 'write' },
      { kind: 'host_donate_hyp', pfn: 0x40002, nrPages: 1 },
    ];
    const keys: string[] = [];
    let pre: Parameters<typeof coverageKey>[1] | undefined;
    runOperations(withDriverOptions(smmuMachine, { ...HARDENED_KNOBS, noTlbiNhAfterS2: true }), ops, {
      continueAfterViolation: true,
      steps: { before: (_i, _s, m) => void (pre = m), after: (r, s, m) => void keys.push(coverageKey(r, pre ?? m, m, s)) },
    });
    expect(keys[3]).toMatch(/^host_donate_hyp\|0\|.*\|stale\|hyp$/);
    expect(keysOf(ops)[3]).toMatch(/\|none\|hyp$/);
  });

  it('structures by step kind', () => {
    expect(['host_domain_map', 'host_write_cmd', 'ats_translate', 'host_donate_guest', 'host_share_hyp', 'host_access'].map(stepStructure)).toEqual(['host-domain', 'cmdq', 'atc', 'guest-s2', 'hyp', 'host-s2']);
  });

  it('the tracker counts distinct keys and what is new since the last look', () => {
    const t = new CoverageTracker();
    runOperations(smmuMachine, [{ kind: 'dma', sid: 1, addr: 0x4000_2000, access: 'read' }, { kind: 'dma', sid: 1, addr: 0x4000_3000, access: 'read' }], { steps: t });
    expect(t.hashes.size).toBe(1);
    expect(t.takeNew()).toBe(1);
    expect(t.takeNew()).toBe(0);
  });
});

describe('campaigns count coverage; --guided mutates the runs that reached new keys', () => {
  const spec = (over: Partial<CampaignSpec> = {}): CampaignSpec => ({ design: 'v6-hardened', machineName: 'small-smmu-no-ats', machine: smmuMachine, maxOps: 20, baseSeed: 9, shard: { index: 1, count: 1 }, runs: 30, ...over });

  it('the result carries the keys, and shards merge to the unsharded set', async () => {
    const whole = await runCampaign(spec());
    expect(whole.coverage?.keys).toBeGreaterThan(10);
    const shards = await Promise.all([1, 2].map((index) => runCampaign(spec({ shard: { index, count: 2 } }))));
    expect(mergeResults(shards)[0]?.result.coverage).toEqual(whole.coverage);
  });

  it('a guided campaign is deterministic, records guided, and runs other sequences than plain generation', async () => {
    const a = await runCampaign(spec({ guided: true }));
    const b = await runCampaign(spec({ guided: true }));
    const plain = await runCampaign(spec());
    expect(a.guided).toBe(true);
    expect({ ...a, timings: null }).toEqual({ ...b, timings: null });
    expect(a.operations).not.toBe(plain.operations);
  });

  it('mutateRun keeps a prefix of the parent, sometimes drops one of its steps, and respects maxOps', () => {
    const parent = [1, 2, 3, 4, 5].map((pfn) => ({ kind: 'host_share_hyp', pfn }) as Step);
    const own = [9, 10].map((pfn) => ({ kind: 'host_share_hyp', pfn }) as Step);
    const child = mutateRun(parent, own, (3 << 8) | (1 << 16), 40);
    expect(child).toEqual([...parent.slice(0, 3), ...own]);
    const dropped = mutateRun(parent, own, (4 << 8) | (1 << 18), 40);
    expect(dropped).toEqual([parent[0], parent[2], parent[3], ...own]);
    expect(mutateRun(parent, own, 5 << 8, 4)).toHaveLength(4);
  });
});
