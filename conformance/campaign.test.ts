import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { applyAll, initialState, type Operation } from '../model/index.js';
import { type StepOp } from './trace.js';
import { operationsArbitrary } from '../properties/arbitraries.js';
import { OWNERSHIP_BUGS } from '../properties/bugs/ownership-bugs.js';
import { KNOWN_FINDINGS, knownPanicSites, notAKnownFinding } from '../properties/known-findings.js';
import { smallMachine, smallMachineWithSmmu, toModelConfig } from '../properties/machine.js';
import { runOperations } from '../properties/runner.js';
import { type CampaignResult, decodeCampaignResult, mergeResults } from './campaign-result.js';
import { type CampaignSpec, biasIndex, campaignRunOptions, countTransitions, firesCheck, generateRun, runCampaign, scheduleForRun } from './campaign.js';
import { namedMachine } from './machines.js';
import { clockSeed, fnv1a, parseSeed, runSeed, SEED_LIMIT } from './seeds.js';

const machine = smallMachine();
const P = machine.memory[0]!.base / 4096;
const spec = (over: Partial<CampaignSpec> = {}): CampaignSpec => ({ design: 'v6-posted', machineName: 'small', machine, maxOps: 16, baseSeed: 42, shard: { index: 1, count: 1 }, runs: 12, ...over });

/** What must not depend on the clock or on how the runs were split. */
function essence(r: CampaignResult) {
  return { runs: r.runs, operations: r.operations, failedRuns: r.failedRuns, kinds: r.kinds, returns: r.returns, transitions: r.transitions, checks: r.checks, counterexamples: r.counterexamples.map((c) => ({ ...c, file: null })) };
}

afterEach(() => vi.restoreAllMocks());

describe('seeds', () => {
  it('derive run seeds purely and without collisions', () => {
    expect(runSeed(1, 0)).toBe(runSeed(1, 0));
    const seen = new Set<number>();
    for (let r = 0; r < 20000; r++) seen.add(runSeed(7, r));
    expect(seen.size).toBe(20000);
    expect(runSeed(1, 2)).not.toBe(runSeed(2, 1));
    for (let r = 0; r < 100; r++) expect(runSeed(0xffffffff, r)).toBeLessThan(SEED_LIMIT);
  });

  it('parse decimal and hex seeds, refuse the rest', () => {
    expect(parseSeed('123')).toBe(123);
    expect(parseSeed('0x1F')).toBe(31);
    for (const bad of ['-1', '1.5', 'abc', '', String(2 ** 32), '0x']) expect(parseSeed(bad)).toBeUndefined();
    expect(clockSeed(1_700_000_000_000)).toBe(clockSeed(1_700_000_000_000));
    expect(clockSeed(1_700_000_000_000)).toBeLessThan(SEED_LIMIT);
    expect(fnv1a('abc')).toBe('1a47e90b');
  });
});

describe('campaigns', () => {
  it('are deterministic for a seed, and never call Math.random', async () => {
    const random = vi.spyOn(Math, 'random');
    const bug = { bug: 'unshare-pinned-wrong-errno' };
    const a = await runCampaign(spec(bug));
    const b = await runCampaign(spec(bug));
    expect(random).not.toHaveBeenCalled();
    expect(essence(a)).toEqual(essence(b));
    expect(a.runs).toBe(12);
    expect(a.operations).toBeGreaterThan(50);
    expect(decodeCampaignResult('a', JSON.parse(JSON.stringify(a))).ok).toBe(true);
    const other = await runCampaign(spec({ ...bug, baseSeed: 43 }));
    expect(essence(other)).not.toEqual(essence(a));
  });

  it('split into shards that merge to the unsplit campaign', async () => {
    const whole = await runCampaign(spec({ bug: 'no-host-tlbi-on-donation' }));
    const parts: CampaignResult[] = [];
    for (const index of [3, 1, 2]) parts.push(await runCampaign(spec({ bug: 'no-host-tlbi-on-donation', shard: { index, count: 3 } })));
    expect(parts.map((p) => p.runs)).toEqual([4, 4, 4]);
    const merged = mergeResults(parts);
    expect(merged).toHaveLength(1);
    expect(merged[0]?.shards).toEqual(['1/3', '2/3', '3/3']);
    expect(merged[0]?.missingShards).toEqual([]);
    const m = essence(merged[0]!.result);
    const w = essence(whole);
    // Detection counts per shard differ by construction; the run that found it first does not.
    const firstRuns = (r: ReturnType<typeof essence>) => Object.fromEntries(Object.entries(r.checks).map(([k, v]) => [k, [v.runs, v.first?.run ?? null, v.first?.seed ?? null]]));
    // Every distinct failure (check × first failing step kind) is shrunk: the shards merge to exactly the unsplit campaign's.
    const cxs = (r: CampaignResult) => r.counterexamples.map((c) => [c.check, c.stepKind, c.run, JSON.stringify(c.operations)]);
    expect(cxs(merged[0]!.result)).toEqual(cxs(whole));
    expect(whole.counterexamples.length).toBeGreaterThan(0);
    expect({ ...m, checks: firstRuns(m), counterexamples: null }).toEqual({ ...w, checks: firstRuns(w), counterexamples: null });
    expect(mergeResults([parts[1]!, parts[2]!])[0]?.missingShards).toEqual(['3/3']);
  });

  it('shrink every distinct failure: one counterexample per check × first failing step kind', async () => {
    const m = namedMachine('small-smmu-no-ats')!;
    const r = await runCampaign({ design: 'v6-posted', machineName: 'small-smmu-no-ats', machine: m, maxOps: 40, baseSeed: 101, shard: { index: 1, count: 1 }, runs: 21 });
    const keys = r.counterexamples.map((c) => `${c.check}@${c.stepKind}`);
    expect(new Set(keys).size).toBe(keys.length);
    // Seed 101 on the posted design: the v4 hook placement, and host panics from several kinds of step.
    expect(keys).toEqual(expect.arrayContaining(['dma_isolation@host_donate_guest', 'no_host_triggered_panic@host_write_cmd', 'no_host_triggered_panic@host_mmio_write']));
    for (const c of r.counterexamples) expect(c.operations.length, `${c.check}@${c.stepKind}`).toBeLessThanOrEqual(3);
  });

  it('shrink a counterexample per check to a 1-minimal sequence fast-check can reproduce', async () => {
    for (const bug of OWNERSHIP_BUGS.filter((b) => b.name === 'no-host-tlbi-on-donation' || b.name === 'unshare-pinned-wrong-errno')) {
      const found: StepOp[][] = [];
      const r = await runCampaign(spec({ bug: bug.name, runs: 30, maxOps: 40 }), { shrink: [bug.caughtBy], onCounterexample: (c) => (found.push([...c.operations]), 'x.json') });
      const cx = r.counterexamples.find((c) => c.check === bug.caughtBy);
      expect(cx, bug.name).toBeDefined();
      expect(cx?.file).toBe('x.json');
      expect(r.counterexamples.every((c) => c.check === bug.caughtBy)).toBe(true);
      const ops = found[0] as StepOp[];
      expect(ops.length).toBeLessThan(cx!.originalLength);
      expect(firesCheck(machine, ops, bug.caughtBy, { inject: bug.inject })).toBe(true);
      for (let i = 0; i < ops.length; i++) expect(firesCheck(machine, [...ops.slice(0, i), ...ops.slice(i + 1)], bug.caughtBy, { inject: bug.inject })).toBe(false);
      // The recorded (seed, path) is fast-check's own: replaying it fails again.
      expect(cx!.path.startsWith(`${biasIndex(cx!.run)}:`)).toBe(true);
      const replay = fc.check(fc.property(operationsArbitrary(machine, 40), (o) => !firesCheck(machine, o, bug.caughtBy, { inject: bug.inject })), { seed: cx!.seed, path: cx!.path });
      expect(replay.failed).toBe(true);
      expect(r.checks[bug.caughtBy]?.first?.run).toBe(cx!.run);
    }
  });

  it('generate run r the same way whatever else ran before', () => {
    const arb = operationsArbitrary(machine, 16);
    const a = generateRun(arb, runSeed(5, 17), '17');
    generateRun(arb, runSeed(5, 3), '3');
    expect(generateRun(arb, runSeed(5, 17), '17')).toEqual(a);
  });

  it('stop on time, and on request (Ctrl-C) after the current run', async () => {
    let now = 0;
    const timed = await runCampaign(spec({ runs: undefined, timeSeconds: 1 }), { clock: () => (now += 50) });
    expect(timed.stoppedBy).toBe('time');
    expect(timed.runs).toBeGreaterThan(0);
    expect(timed.budget).toEqual({ runs: null, timeSeconds: 1 });
    let polls = 0;
    const stopped = await runCampaign(spec({ runs: 1000 }), { shouldStop: () => ++polls > 3 });
    expect(stopped.stoppedBy).toBe('interrupt');
    expect(stopped.runs).toBe(3);
  });

  it('report progress while running', async () => {
    let now = 0;
    const seen: number[] = [];
    await runCampaign(spec({ runs: 6 }), { clock: () => (now += 100), progressEveryMs: 150, onProgress: (p) => seen.push(p.runs) });
    expect(seen.length).toBeGreaterThanOrEqual(3);
    expect(seen.at(-1)).toBe(6);
  });
});

describe('model coverage counters', () => {
  it('count page-state transitions per component', () => {
    const ops: Operation[] = [
      { kind: 'host_share_hyp', pfn: P },
      { kind: 'host_donate_hyp', pfn: P + 1, nrPages: 2 },
      { kind: 'init_vm', vm: 1, protected: true },
      { kind: 'host_donate_guest', pfn: P + 5, gfn: 3, vm: 1 },
      { kind: 'host_force_reclaim_page_guest', pfn: P + 5 },
      { kind: 'host_unshare_hyp', pfn: P },
    ];
    let s = initialState(toModelConfig(machine));
    const t = { host: {} as Record<string, number>, hyp: {} as Record<string, number>, guest: {} as Record<string, number> };
    for (const r of applyAll(s, ops)) {
      countTransitions(s, r.state, t);
      s = r.state;
    }
    expect(t).toEqual({
      host: { 'OWNED>SHARED_OWNED': 1, 'OWNED>NOPAGE': 3, 'NOPAGE>OWNED': 1, 'SHARED_OWNED>OWNED': 1 },
      hyp: { 'NOPAGE>SHARED_BORROWED': 1, 'NOPAGE>OWNED': 2, 'SHARED_BORROWED>NOPAGE': 1 },
      guest: { 'NOPAGE>OWNED': 1, 'OWNED>POISON': 1 },
    });
    expect(runOperations(machine, ops).failure).toBeUndefined();
  });

  it('campaign results refuse malformed input with the field path', async () => {
    const good = JSON.parse(JSON.stringify(await runCampaign(spec({ runs: 1 })))) as Record<string, unknown>;
    expect(decodeCampaignResult('shard.json', good).ok).toBe(true);
    const bad = (over: Record<string, unknown>) => {
      const r = decodeCampaignResult('shard.json', { ...good, ...over });
      return r.ok ? 'ok' : r.errors.join('\n');
    };
    expect(bad({ runs: -3 })).toMatch(/^shard\.json: runs: expected a count, got -3$/);
    expect(bad({ design: undefined })).toMatch(/shard\.json: design: expected string, got undefined/);
    expect(bad({ shard: { index: 4, count: 3 } })).toMatch(/shard\.json: shard\.index: expected 1\.\.3, got 4/);
    expect(bad({ transitions: { host: { 'OWNED>NOPAGE': 'x' }, hyp: {}, guest: {} } })).toMatch(/shard\.json: transitions\.host\.OWNED>NOPAGE: expected a count, got "x"/);
  });
});

describe('interleaving campaigns', () => {
  it('give every run a schedule, find a race the plain campaign misses, and shrink the schedule too', async () => {
    const smmu = smallMachineWithSmmu({ ats: true });
    const race: CampaignSpec = { design: 'v6-atc-inv', machineName: 'small-smmu', machine: smmu, maxOps: 40, baseSeed: 9, shard: { index: 1, count: 1 }, runs: 141, bug: 'atc-inv-before-tlbi-sync' };
    const keep = { keep: notAKnownFinding };
    const interleaved = await runCampaign({ ...race, interleave: true }, keep);
    expect(interleaved.interleave).toBe(true);
    // Seed 9 (host-interface-only generation with the host-attack steps): the race first at run 65.
    expect(interleaved.checks.dma_isolation?.first?.run).toBe(65);
    const c = interleaved.counterexamples.find((x) => x.check === 'dma_isolation');
    expect(c?.schedule?.length).toBeGreaterThan(0);
    expect(c?.schedule?.some((hw) => hw.kind === 'ats_translate')).toBe(true);
    // The shrunk pair still fires with the bug, and no longer without the schedule.
    const options = campaignRunOptions(race, {});
    const ops = c?.operations as unknown as StepOp[];
    expect(firesCheck(smmu, ops, 'dma_isolation', { ...options, schedule: c?.schedule as never })).toBe(true);
    expect(firesCheck(smmu, ops, 'dma_isolation', options)).toBe(false);
    const plain = await runCampaign(race, keep);
    expect(plain.checks.dma_isolation?.runs).toBe(0);
    expect(plain.interleave).toBeUndefined();
    expect(decodeCampaignResult('r', JSON.parse(JSON.stringify(interleaved))).ok).toBe(true);
  });

  it('derive each run\u2019s schedule from its seed alone', () => {
    const smmu = smallMachineWithSmmu({ ats: true });
    expect(scheduleForRun(smmu, 77)).toEqual(scheduleForRun(smmu, 77));
    expect(scheduleForRun(machine, 77)).toEqual([]);
  });
});

describe('known panic sites', () => {
  it('end a run silently at a known finding\u2019s WARN site, and are counted as known panics', async () => {
    const smmu = namedMachine('small-smmu-no-ats')!;
    const base: CampaignSpec = { design: 'v6-posted', machineName: 'small-smmu-no-ats', machine: smmu, maxOps: 40, baseSeed: 101, shard: { index: 1, count: 1 }, runs: 21 };
    const silenced = { ...base, knownPanicSites: knownPanicSites() };
    expect(campaignRunOptions(silenced, {}).knownPanicSites).toEqual(knownPanicSites());
    expect(campaignRunOptions(base, {}).knownPanicSites).toBeUndefined();
    // posted v6-era: a 32-bit write to CMDQ_BASE is WARN_ON(!mask), a known finding's site.
    const trigger = KNOWN_FINDINGS.find((f) => f.name === 'host-register-access-panics')!.trigger;
    const loud = runOperations(smmu, trigger, campaignRunOptions(base, {}));
    expect(loud.failure?.violations.map((v) => v.check)).toEqual(['no_host_triggered_panic']);
    const quiet = runOperations(smmu, trigger, campaignRunOptions(silenced, {}));
    expect(quiet.failure).toBeUndefined();
    expect(quiet.steps.map((st) => st.systemRet)).toEqual(['panic']);
    // Seed 101 (the known findings' steps left out): three runs still end at a known WARN site.
    let knownPanics = -1;
    const r = await runCampaign(silenced, { keep: notAKnownFinding, onProgress: (p) => (knownPanics = p.knownPanics) });
    expect(r.failedRuns).toBe(0);
    expect(r.panics).toBe(3);
    expect(knownPanics).toBe(3);
    const unsilenced = await runCampaign(base, { keep: notAKnownFinding, shrink: 'none' });
    expect(unsilenced.checks.no_host_triggered_panic?.runs).toBe(3);
  });
});
