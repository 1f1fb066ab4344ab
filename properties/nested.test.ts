/**
 * Nested streams (issue 13 items 3–5): the host's own DMA domains (stage 1 in host memory) run
 * over the hypervisor's stage-2 idmap; isolation rests on stage 2 and on the TLBI_NH_ALL that
 * removes combined S1+S2 entries after each stage-2 invalidation.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DESIGN_VARIANTS, HARDENED_KNOBS } from '../impl/hyp/design.js';
import { operationsArbitrary } from './arbitraries.js';
import { COMBINED_ENTRY_TRIGGER } from './host-domains.js';
import { notAKnownFinding } from './known-findings.js';
import { representativeHardware, withDriverOptions } from './machine.js';
import { type CheckName } from './checks.js';
import { minimizeOperations } from './minimize.js';
import { type Step, runOperations } from './runner.js';

const isolation = new Set<CheckName>(['dma_isolation']);
const nestedChecks = new Set<CheckName>(['dma_isolation', 'dma_availability', 'dma_during_hypercall', 'smmu_config_coherent']);
const variant = (name: string) => {
  const v = DESIGN_VARIANTS.find((d) => d.name === name);
  if (v === undefined) throw new Error(name);
  return v.knobs;
};

describe('host DMA domains: nested translation over the shadow idmap', () => {
  for (const { name, machine } of representativeHardware()) {
    it(`${name}: a DMA through the host's IOVA reaches exactly the page its stage 1 maps, and faults once unmapped`, () => {
      const ops: Step[] = [
        ...COMBINED_ENTRY_TRIGGER.slice(0, 3),
        { kind: 'host_domain_unmap', smmu: 0, sid: 1, iova: 0x10_0000, nrPages: 1 },
        { kind: 'dma', sid: 1, addr: 0x10_0000, access: 'write' },
        { kind: 'host_domain_detach', smmu: 0, sid: 1 },
        { kind: 'dma', sid: 1, addr: 0x4000_2000, access: 'write' },
      ];
      const r = runOperations(withDriverOptions(machine, HARDENED_KNOBS), ops);
      expect(r.failure).toBeUndefined();
      expect(r.steps.map((s) => s.systemRet)).toEqual([0, 0, 0, 0, 1, 0, 0]);
      const smmu = r.system.iommu?.smmu;
      // The CD went through the configuration cache; the domain's TLBI_NH_ASID emptied stage 1.
      expect(smmu?.cachedS1Translations()).toEqual([]);
    });
  }

  it('the combined entry: nested, tagged ASID 1 / VMID 0, VA → PA', () => {
    const r = runOperations(withDriverOptions(representativeHardware()[0]?.machine ?? fail(), HARDENED_KNOBS), COMBINED_ENTRY_TRIGGER.slice(0, 3));
    const entries = r.system.iommu?.smmu.cachedS1Translations() ?? [];
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ vmid: 0, asid: 1, global: false, va: 0x10_0000, pa: 0x4000_2000, nested: true, sid: 1 });
  });
});

describe('the verdict on TLBI_NH_ALL after each stage-2 invalidation', () => {
  for (const { name, machine } of representativeHardware()) {
    it(`${name}: without it the combined entry survives the donation; the series and v6-hardened hold`, () => {
      const broken = runOperations(withDriverOptions(machine, variant('no-tlbi-nh-after-s2')), COMBINED_ENTRY_TRIGGER, { checks: isolation });
      expect(broken.failure?.index).toBe(3);
      expect(broken.failure?.violations[0]?.message).toMatch(/combined S1\+S2 TLB entry \(sid 1, ASID 1, VA 0x100000 → 0x40002000, 4096 bytes\) still reaches pfn 0x40002/);
      for (const design of ['v6-posted', 'v6-hardened']) {
        expect(runOperations(withDriverOptions(machine, variant(design)), COMBINED_ENTRY_TRIGGER, { checks: isolation }).failure).toBeUndefined();
      }
    });
  }

  it('the search finds it by itself (host DMA domains generated) and shrinks it to the four steps', () => {
    const machine = withDriverOptions(representativeHardware()[1]?.machine ?? fail(), variant('no-tlbi-nh-after-s2'));
    const fires = (ops: readonly Step[]) => runOperations(machine, ops, { checks: isolation }).failure !== undefined;
    const out = fc.check(
      fc.property(operationsArbitrary(machine, 30, { hostDomains: true }), (ops) => !fires(ops)),
      { seed: 20261203, numRuns: 300 },
    );
    expect(out.failed).toBe(true);
    const shrunk = minimizeOperations(out.counterexample?.[0] ?? [], fires);
    expect(shrunk.length).toBeLessThanOrEqual(4);
    expect(shrunk.map((s) => s.kind)).toEqual(expect.arrayContaining(['host_domain_attach', 'host_domain_map', 'host_donate_hyp']));
  });

  it('v6-hardened holds the DMA checks on generated host-domain workloads (no ATS, and the minimal SMMU)', () => {
    for (const { machine } of representativeHardware().filter((h) => h.name === 'ril/no-ats' || h.name === 'minimal')) {
      const m = withDriverOptions(machine, HARDENED_KNOBS);
      const arb = operationsArbitrary(m, 30, { hostDomains: true }).map((ops) => ops.filter(notAKnownFinding));
      fc.assert(
        fc.property(arb, (ops) => {
          const r = runOperations(m, ops, { checks: nestedChecks });
          if (r.failure !== undefined) throw new Error(JSON.stringify(r.failure));
        }),
        { seed: 20261203, numRuns: 120 },
      );
    }
  });
});

function fail(): never {
  throw new Error('representative hardware changed');
}
