import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Command } from '../impl/arch/smmu/commands.js';
import { type CacheName } from '../impl/hw/smmu/cache-observer.js';
import { type System } from '../impl/system.js';
import { operationsArbitrary, scheduleArbitrary } from '../properties/arbitraries.js';
import { DMA_BUGS } from '../properties/bugs/dma-bugs.js';
import { smallMachineWithSmmu } from '../properties/machine.js';
import { type RunOptions, type StepRecord, runOperations } from '../properties/runner.js';
import { couldRemove, historyLines } from './cache-history.js';
import { entryRunOptions, loadCorpusFile } from './corpus.js';
import { findDesign } from './designs.js';
import { namedMachine } from './machines.js';
import { traceOperations, violationCaches } from './trace.js';

const summary = (s: StepRecord) => ({ index: s.index, op: s.op, modelRet: s.modelRet, systemRet: s.systemRet, violations: s.violations });

/** What the hardware holds now, counted per cache as the history names them. */
function heldNow(sys: System): Partial<Record<CacheName, number>> {
  const parts = sys.iommu;
  if (parts === undefined) return {};
  const smmu = parts.smmu;
  const config = smmu.configCacheEntries();
  const counts: Partial<Record<CacheName, number>> = {
    tlb: smmu.cachedTranslations().length,
    walk: smmu.walkCacheEntries().length,
    s1_tlb: smmu.cachedS1Translations().length,
    s1_walk: smmu.s1WalkCacheEntries().length,
    ste: config.filter((e) => e.kind === 'ste').length,
    l1std: config.filter((e) => e.kind === 'l1std').length,
    cd: smmu.cachedCds().length,
    atc: [...parts.devices.values()].reduce((n, d) => n + d.atcEntries().length, 0),
  };
  return Object.fromEntries(Object.entries(counts).filter(([, n]) => n !== 0));
}

/** A DMA bug on the design it is written against (v6-hardened, where its check holds without it). */
function bugOptions(bug: (typeof DMA_BUGS)[number]): RunOptions {
  return findDesign(bug.design ?? 'v6-hardened')!.runOptions({ inject: bug.inject, ...(bug.afterBoot === undefined ? {} : { afterBoot: bug.afterBoot }) });
}

function countByCache(entries: readonly { cache: CacheName }[]): Partial<Record<CacheName, number>> {
  const out: Partial<Record<CacheName, number>> = {};
  for (const e of entries) out[e.cache] = (out[e.cache] ?? 0) + 1;
  return out;
}

describe('SMMU cache history (traces)', () => {
  it('tracing changes no step, and the entries it holds as cached are exactly what the SMMU and the ATCs hold', () => {
    for (const machine of [smallMachineWithSmmu(), smallMachineWithSmmu({ ats: false, ril: false })]) {
      // The hardened design, so that runs go on past the posted design's panics.
      const options = findDesign('v6-hardened')!.runOptions({});
      const runs = fc.sample(fc.tuple(operationsArbitrary(machine, 30), scheduleArbitrary(machine)), { seed: 17, numRuns: 30 });
      let filled = 0;
      let removed = 0;
      for (const [ops, schedule] of runs) {
        const plain = runOperations(machine, ops, { ...options, schedule, continueAfterViolation: true });
        const traced = traceOperations(machine, ops, { ...options, schedule });
        expect(traced.result.steps.map(summary)).toEqual(plain.steps.map(summary));
        const history = traced.caches;
        expect(history).toBeDefined();
        expect(countByCache(history?.cached() ?? [])).toEqual(heldNow(traced.result.system));
        filled += history?.entries.length ?? 0;
        removed += (history?.entries ?? []).filter((h) => h.removed !== undefined).length;
      }
      // The runs exercise fills and removals (else the equality above says little).
      expect(filled).toBeGreaterThan(300);
      expect(removed).toBeGreaterThan(15);
    }
  });

  it("a race's counterexample: the TLB entry the TLBI removed, the ATC entry refilled from it after ATC_INV, still cached", () => {
    const loaded = loadCorpusFile('conformance/corpus/bugs/v6-atc-inv-atc-inv-before-tlbi-sync-dma_isolation-efaee0cc.json');
    expect(loaded.ok).toBe(true);
    if (!loaded.ok) return;
    const entry = loaded.value;
    const trace = traceOperations(entry.config, entry.operations, entryRunOptions(entry));
    const violated = trace.steps.find((s) => s.record.violations.length > 0);
    expect(violated?.record.index).toBe(1);
    const [explained] = violationCaches(trace, violated!);
    expect(explained).toMatchObject({ step: 1, check: 'dma_isolation', subject: 'pfn 0x40003' });
    const tlb = explained!.entries.find((h) => h.cache === 'tlb');
    expect(tlb).toMatchObject({ filled: { step: 0, by: 'dma of sid 1 (read 0x40003000)' }, removed: { step: 1 } });
    expect(tlb?.removed?.by).toMatch(/^TLBI_S2_IPA .*address=0x40003000/);
    const atcs = explained!.entries.filter((h) => h.cache === 'atc');
    expect(atcs.map((h) => [h.filled.by, h.removed?.by.split(' ')[0] ?? 'still cached'])).toEqual([
      ['translated dma of sid 2 (read 0x40003000)', 'ATC_INV'],
      ['ATS translation request of sid 2 for 0x40003000', 'still cached'],
    ]);
    // The walk-cache entries on the way stay: a Leaf = 1 TLBI is not required to remove them.
    const walk = explained!.entries.filter((h) => h.cache === 'walk');
    expect(walk.length).toBeGreaterThan(0);
    for (const w of walk) expect(historyLines(w).join('\n')).toMatch(/not removed by TLBI_S2_IPA .*leaf=true.* \(took effect at step 1\)\n {2}still cached at the end$/);
  });

  it('a wrong TTL: the TLB entry of the donated page survives the TLBI, which the history says', () => {
    const bug = DMA_BUGS.find((b) => b.name === 'tlbi-wrong-ttl')!;
    const machine = namedMachine(bug.machine ?? 'small-smmu-no-ats')!;
    const trace = traceOperations(machine, bug.trigger, bugOptions(bug));
    const explained = trace.steps.flatMap((s) => violationCaches(trace, s));
    const tlb = explained.flatMap((c) => c.entries).find((h) => h.cache === 'tlb' && h.removed === undefined);
    expect(tlb?.kept.map((k) => k.command)).toEqual([expect.stringMatching(/^TLBI_S2_IPA .*ttl=2/) as unknown]);
  });

  it('a stale STE: a coherence violation names the stream, and its cached STE shows no CFGI since the fill', () => {
    const bug = DMA_BUGS.find((b) => b.name === 'no-cfgi-ste-after-write')!;
    const machine = namedMachine(bug.machine ?? 'small-smmu-no-ats')!;
    const trace = traceOperations(machine, bug.trigger, bugOptions(bug));
    const explained = trace.steps.flatMap((s) => violationCaches(trace, s)).filter((c) => c.check === 'smmu_config_coherent');
    expect(explained[0]?.subject).toBe('sid 1');
    const ste = explained[0]?.entries.find((h) => h.cache === 'ste');
    expect(ste?.text).toMatch(/^STE sid 1: abort/);
    expect(ste?.kept).toEqual([]);
    expect(ste?.removed).toBeUndefined();
  });

  it('lists as "not removed by" only the invalidations that could have removed the entry', () => {
    const s2 = (vmid: number): Command => ({ kind: 'TLBI_S2_IPA', vmid, address: 0x4000_0000, leaf: true, ttl: 3, tg: 1, num: 0, scale: 0, ttl128: false }) as Command;
    const tlb = { cache: 'tlb' as const, vmid: 1, sids: undefined };
    expect(couldRemove(s2(1), tlb)).toBe(true);
    expect(couldRemove(s2(2), tlb)).toBe(false);
    expect(couldRemove({ kind: 'TLBI_NH_ALL', vmid: 1 }, tlb)).toBe(false);
    expect(couldRemove({ kind: 'TLBI_NSNH_ALL' }, tlb)).toBe(true);
    const ste = { cache: 'ste' as const, vmid: undefined, sids: { first: 3, count: 1 } };
    expect(couldRemove({ kind: 'CFGI_STE', ssec: false, sid: 3, leaf: true }, ste)).toBe(true);
    expect(couldRemove({ kind: 'CFGI_STE', ssec: false, sid: 4, leaf: true }, ste)).toBe(false);
    expect(couldRemove({ kind: 'CFGI_ALL', ssec: false, sid: 0 }, ste)).toBe(true);
    expect(couldRemove({ kind: 'CFGI_STE_RANGE', ssec: false, sid: 0, range: 1 }, ste)).toBe(true);
    const atc = { cache: 'atc' as const, vmid: undefined, sids: { first: 2, count: 1 } };
    expect(couldRemove({ kind: 'ATC_INV', sid: 2, ssv: false, ssid: 0, global: false, size: 0, address: { lo: 0, hi: 0 } }, atc)).toBe(true);
    expect(couldRemove(s2(0), atc)).toBe(false);
  });
});
