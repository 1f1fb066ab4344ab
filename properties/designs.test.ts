import { describe, expect, it } from 'vitest';
import { DESIGN_VARIANTS, HARDENED_KNOBS, HARDENING_KNOBS, designVariant } from '../impl/hyp/design.js';
import { KNOWN_FINDINGS } from './known-findings.js';
import { campaignRunOptions } from '../conformance/campaign.js';
import { designNames } from '../conformance/designs.js';
import { DEFAULT_BUDGET, VERDICT_TRIGGERS, type WorkloadRun, measureCosts, verdictRow, workload } from './design-matrix.js';
import { type MachineConfig, representativeHardware, smallMachineWithSmmu } from './machine.js';
import { findInjectedBug } from './bugs/index.js';
import { decodeMachine } from './codecs.js';
import { minimizeOperations } from './minimize.js';
import { type Step, describeFailure, runOperations } from './runner.js';

const P = 0x40000; // first page of the small machine's RAM
const PAGE = 4096;

/** The fixed workload per machine, generated once (fixed seed, bounded runs). */
const workloads = new Map<string, WorkloadRun[]>();
function ops(name: string, machine: MachineConfig): WorkloadRun[] {
  let w = workloads.get(name);
  if (w === undefined) {
    w = workload(machine, DEFAULT_BUDGET);
    workloads.set(name, w);
  }
  return w;
}

describe('design variants: every declared verdict on the representative hardware set', () => {
  for (const hw of representativeHardware()) {
    for (const variant of DESIGN_VARIANTS) {
      it(`${variant.name} on ${hw.name}`, () => {
        const row = verdictRow(variant, hw, ops(hw.name, hw.machine));
        const declared = row.cells.filter((c) => c.declared !== undefined);
        // Every variant declares a verdict for every check on every hardware of the set.
        expect(declared.map((c) => c.check).sort()).toEqual(row.cells.map((c) => c.check).sort());
        for (const c of declared) {
          const detail = c.outcome.message === undefined ? '' : `: ${c.outcome.message}`;
          expect(`${c.check} ${c.observed}${c.observed === c.declared ? '' : detail}`).toBe(`${c.check} ${c.declared}`);
          if (c.declared === 'breaks') expect(c.outcome.counterexample?.length ?? 0).toBeGreaterThan(0);
        }
      });
    }
  }
});

describe('the counterexamples behind the "breaks" verdicts', () => {
  const shrink = (machine: MachineConfig, knobs: object, steps: readonly Step[]) => minimizeOperations([...steps], (c) => runOperations(machine, c, { driver: knobs }).failure !== undefined);

  it('v6 and vmid-wide-invalidation: an ATC entry survives the donation; v6-atc-inv and v6-hide-ats remove it', () => {
    const steps: Step[] = [
      { kind: 'ats_translate', sid: 2, addr: P * PAGE },
      { kind: 'host_donate_hyp', pfn: P, nrPages: 1 },
      { kind: 'dma_translated', sid: 2, addr: P * PAGE, access: 'read' },
    ];
    const machine = smallMachineWithSmmu({ ats: true });
    for (const name of ['v6-posted', 'vmid-wide-invalidation']) {
      const r = runOperations(machine, steps, { driver: designVariant(name)?.knobs ?? {} });
      expect(describeFailure(r), name).toMatch(/device sid 2 ATC entry \(0x40000000 → 0x40000000\) still reaches pfn 0x40000/);
    }
    for (const name of ['v6-atc-inv', 'v6-hide-ats']) expect(describeFailure(runOperations(machine, steps, { driver: designVariant(name)?.knobs ?? {} })), name).toBe('no violation');
  });

  it('block-idmap-with-split with RIL: the split\u2019s leaf TLBI (TTL 3) leaves the cached 2 MiB block', () => {
    const knobs = designVariant('block-idmap-with-split')?.knobs ?? {};
    const steps: Step[] = [
      { kind: 'dma', sid: 1, addr: (P + 1) * PAGE, access: 'read' },
      { kind: 'host_donate_hyp', pfn: P + 1, nrPages: 1 },
    ];
    const ril = smallMachineWithSmmu({ ats: false, ril: true });
    expect(describeFailure(runOperations(ril, steps, { driver: knobs }))).toMatch(/SMMU TLB entry \(sid 1, IPA 0x40000000, level 2\) still reaches pfn 0x40001/);
    expect(shrink(ril, knobs, steps)).toEqual(steps);
    // Without RIL the per-page TLBI carries no TTL and removes the block; the page-granular
    // idmap of v6 never caches a block over memory in the first place.
    expect(describeFailure(runOperations(smallMachineWithSmmu({ ats: false, ril: false }), steps, { driver: knobs }))).toBe('no violation');
    expect(describeFailure(runOperations(ril, steps))).toBe('no violation');
  });
});

describe('the hardware set', () => {
  it('the minimal SMMU really is minimal, and identity DMA works on it under every variant', () => {
    const hw = representativeHardware().find((h) => h.name === 'minimal');
    if (hw === undefined) throw new Error('minimal hardware');
    for (const v of DESIGN_VARIANTS) {
      const r = runOperations(hw.machine, [{ kind: 'host_access', addr: (P + 2) * PAGE, access: 'read' }, { kind: 'dma', sid: 1, addr: (P + 2) * PAGE, access: 'read' }], { driver: v.knobs, checks: new Set() });
      expect(r.steps[1]?.systemRet, v.name).toBe(0);
      expect(r.system.iommu?.driver.features, v.name).toMatchObject({ oas: 40, twoLevelStrtab: true, rangeInvalidation: false, bbml: 0, ats: false, pgsizeBitmap: 0x1000 + 0x20_0000 + 0x4000_0000 });
    }
  });

  it('an SMMU without the 4K granule, or not coherent, is refused at IOMMU init by every variant, without a crash', () => {
    for (const features of [{ granules: ['16K', '64K'] as const }, { cohacc: false }]) {
      const machine = smallMachineWithSmmu({ ats: false, features: { ...features, granules: [...(features.granules ?? ['4K'])] } });
      for (const v of DESIGN_VARIANTS) {
        const r = runOperations(machine, [], { driver: v.knobs });
        expect(describeFailure(r), v.name).toMatch(/IOMMU boot failed with -EINVAL/);
      }
    }
  });
});

describe('the shared-cpu-s2 designs: what breaks and why', () => {
  const machine = smallMachineWithSmmu({ ats: false });
  const lazy = designVariant('shared-cpu-s2')?.knobs ?? {};
  const prepopulated = designVariant('shared-cpu-s2-prepopulated')?.knobs ?? {};
  const checks = new Set(['dma_availability'] as const);

  it('shared-cpu-s2: DMA faults on a host page until the host CPU has touched it', () => {
    const dma: Step = { kind: 'dma', sid: 1, addr: (P + 2) * PAGE, access: 'read' };
    const before = runOperations(machine, [dma], { driver: lazy, checks });
    expect(describeFailure(before)).toMatch(/DMA from identity-attached sid 1 to host-owned 0x40002000 faulted \(fault: translation\)/);
    // The host CPU fault maps the block (host_stage2_idmap); the same DMA then goes through.
    const after = runOperations(machine, [{ kind: 'host_access', addr: (P + 2) * PAGE, access: 'read' }, dma], { driver: lazy, checks: new Set() });
    expect(after.steps[1]?.systemRet).toBe(0);
    // The series' shadow idmap maps every host page from the snapshot on.
    expect(describeFailure(runOperations(machine, [dma], { checks }))).toBe('no violation');
  });

  it('shared-cpu-s2-prepopulated: a donation breaks the block and the rest of it stops being reachable', () => {
    const steps: Step[] = [
      { kind: 'dma', sid: 1, addr: (P + 3) * PAGE, access: 'read' },
      { kind: 'host_donate_hyp', pfn: P + 2, nrPages: 1 },
      { kind: 'dma', sid: 1, addr: (P + 3) * PAGE, access: 'read' },
    ];
    // Already at the first step: the hypervisor's init donations (its queue and stream table,
    // posted v6-era smmu_init) broke the block holding the host's own SMMU pages.
    const r = runOperations(machine, steps, { driver: prepopulated, checks, continueAfterViolation: true });
    expect(r.failure?.index).toBe(0);
    expect(describeFailure(r)).toMatch(/the host stage-2 does not map pfn 0x407fe read\/write although the host owns it/);
    expect(r.steps[1]?.violations.map((v) => v.message).join('\n')).toMatch(/the host stage-2 does not map pfn 0x40000 read\/write although the host owns it/);
    const stepsOnly = runOperations(machine, steps, { driver: prepopulated, checks, continueAfterViolation: true });
    expect(stepsOnly.steps[2]?.violations.map((v) => v.message).join('\n')).toMatch(/to host-owned 0x40003000 faulted \(fault: translation\)/);
  });

  it('shared-cpu-s2-prepopulated: inside the donation, DMA to the rest of the block faults in the break-before-make window', () => {
    // Nothing cached: the scheduled DMA walks the host stage-2 while the block entry is broken.
    const r = runOperations(machine, [{ kind: 'host_donate_hyp', pfn: P + 2, nrPages: 1 }], {
      driver: prepopulated,
      checks,
      schedule: [{ kind: 'dma', sid: 1, addr: (P + 3) * PAGE, access: 'read' }],
    });
    expect(describeFailure(r)).toMatch(/during the hypercall \(at cmdq_[a-z_]+\), DMA from identity-attached sid 1 to 0x40003000 faulted/);
  });

  it('the SMMU TLB maintenance mirrored from the host stage-2 is what keeps isolation', () => {
    const steps: Step[] = [
      { kind: 'dma', sid: 1, addr: (P + 2) * PAGE, access: 'read' },
      { kind: 'host_donate_hyp', pfn: P + 2, nrPages: 1 },
      { kind: 'dma', sid: 1, addr: (P + 2) * PAGE, access: 'read' },
    ];
    const isolation = new Set(['dma_isolation'] as const);
    expect(describeFailure(runOperations(machine, steps, { driver: prepopulated, checks: isolation }))).toBe('no violation');
    const unmirrored = runOperations(machine, steps, {
      driver: prepopulated,
      checks: isolation,
      // The zoo's host-s2-tlbi-not-forwarded: the mirror detached.
      afterBoot: findInjectedBug('host-s2-tlbi-not-forwarded')?.afterBoot,
    });
    expect(describeFailure(unmirrored)).toMatch(/SMMU TLB entry \(sid 1, IPA 0x40000000, level 2\) still reaches pfn 0x40002/);
  });
});

describe('block-idmap-with-split: the split without break-before-make makes TLB conflicts', () => {
  const knobs = designVariant('block-idmap-with-split')?.knobs ?? {};
  const checks = new Set(['dma_availability'] as const);

  it('inside the donation: a walk caches a page of the new table while the block is cached (BBML0/1, with or without RIL)', () => {
    const trigger = VERDICT_TRIGGERS['block-idmap-with-split']?.dma_availability;
    if (trigger === undefined) throw new Error('trigger');
    for (const [ril, bbml] of [[true, 1], [false, 1], [false, 0]] as const) {
      const machine = smallMachineWithSmmu({ ats: false, ril, features: { bbml } });
      const r = runOperations(machine, trigger.ops, { driver: knobs, checks, schedule: trigger.schedule });
      expect(describeFailure(r), `ril ${ril} BBML${bbml}`).toMatch(/during the hypercall \(at cmdq_[a-z_]+\), DMA from identity-attached sid 1 to 0x40002000 faulted \(fault: tlb_conflict\)/);
    }
    // BBML2 (no conflict abort) or the page-granular v6 (no split): nothing.
    expect(describeFailure(runOperations(smallMachineWithSmmu({ ats: false, features: { bbml: 2 } }), trigger.ops, { driver: knobs, checks, schedule: trigger.schedule }))).toBe('no violation');
    expect(describeFailure(runOperations(smallMachineWithSmmu({ ats: false }), trigger.ops, { checks, schedule: trigger.schedule }))).toBe('no violation');
  });

  it('with RIL also after it: the leaf TLBI (TTL 3) leaves the block, and a later walk conflicts with it', () => {
    const steps: Step[] = [
      { kind: 'dma', sid: 1, addr: 0x4000_1000, access: 'read' },
      { kind: 'host_donate_hyp', pfn: 0x40001, nrPages: 1 },
      { kind: 'hyp_donate_host', pfn: 0x40001, nrPages: 1 },
      { kind: 'smmu_speculative_fill', smmu: 0, sid: 1, addr: 0x4000_1000 },
      { kind: 'dma', sid: 1, addr: 0x4000_1000, access: 'read' },
    ];
    const r = runOperations(smallMachineWithSmmu({ ats: false, ril: true }), steps, { driver: knobs, checks });
    expect(r.failure?.index).toBe(4);
    expect(describeFailure(r)).toMatch(/DMA from identity-attached sid 1 to host-owned 0x40001000 faulted \(fault: tlb_conflict\)/);
    expect(describeFailure(runOperations(smallMachineWithSmmu({ ats: false, ril: false }), steps, { driver: knobs, checks }))).toBe('no violation');
  });

  it('the verdict table marks a verdict found by its trigger', () => {
    const hw = representativeHardware().find((h) => h.name === 'ril/no-ats');
    if (hw === undefined) throw new Error('hardware');
    const row = verdictRow(designVariant('block-idmap-with-split') ?? DESIGN_VARIANTS[0]!, hw, []);
    const cell = row.cells.find((c) => c.check === 'dma_availability');
    expect(cell?.declared).toBe('breaks');
    expect(cell?.observed).toBe('breaks');
    expect(cell?.outcome.foundBy).toBe('trigger');
  });
});

describe('variant composition', () => {
  it('the registry names every built variant and composes its knobs into campaign runs', () => {
    expect(designNames()).toEqual(DESIGN_VARIANTS.map((v) => v.name));
    const machine = smallMachineWithSmmu({ ats: true });
    const spec = { design: 'v6-atc-inv', machineName: 'small-smmu', machine, maxOps: 8, baseSeed: 1, shard: { index: 1, count: 1 }, runs: 1 };
    const options = campaignRunOptions(spec, {});
    expect(options.driver).toEqual({ ...HARDENED_KNOBS, atcInvalidation: true });
    expect(runOperations(machine, [], options).system.iommu?.driver.options.atcInvalidation).toBe(true);
    // v6-posted sets nothing, so a machine's own driver options (small-smmu-hide-ats) stand.
    expect(campaignRunOptions({ ...spec, design: 'v6-posted' }, {}).driver).toBeUndefined();
  });

  it('every variant’s knobs are plain JSON a corpus machine can carry', () => {
    for (const v of DESIGN_VARIANTS) {
      const m = smallMachineWithSmmu({ ats: true });
      const withKnobs = JSON.parse(JSON.stringify({ ...m, smmu: { ...m.smmu, driver: v.knobs } })) as unknown;
      const decoded = decodeMachine(withKnobs);
      expect(decoded.ok, v.name).toBe(true);
    }
    expect(decodeMachine({ ...smallMachineWithSmmu(), smmu: { ...smallMachineWithSmmu().smmu, driver: { invalidation: 'asid' } } }).ok).toBe(false);
  });

  it('builds every variant the issue names', () => {
    expect(DESIGN_VARIANTS.map((v) => v.name)).toEqual(['v6-posted', 'v6-hardened', 'v6-hide-ats', 'v6-hide-ats-host-atschk', 'v6-atc-inv', 'vmid-wide-invalidation', 'block-idmap-with-split', 'shared-cpu-s2', 'shared-cpu-s2-prepopulated', 'no-tlbi-nh-after-s2']);
  });
});

describe('cost metrics on one workload', () => {
  it('vmid-wide invalidation costs collateral, ATC_INV costs commands, blocks save table pages', () => {
    const hw = representativeHardware().find((h) => h.name === 'ril/ats') as { name: string; machine: MachineConfig };
    const w = ops(hw.name, hw.machine).slice(0, 15);
    const cost = (name: string) => measureCosts(designVariant(name) ?? (DESIGN_VARIANTS[0] as never), hw.machine, w);
    const v6 = cost('v6-posted');
    const vmid = cost('vmid-wide-invalidation');
    const atc = cost('v6-atc-inv');
    const blocks = cost('block-idmap-with-split');
    expect(v6.donations).toBeGreaterThan(0);
    expect(vmid.collateralPerDonation).toBeGreaterThan(v6.collateralPerDonation);
    expect(atc.commandsPerDonation).toBeGreaterThan(v6.commandsPerDonation);
    expect(atc.syncsPerDonation).toBeGreaterThan(v6.syncsPerDonation);
    expect(blocks.idmapTablePages).toBeLessThan(v6.idmapTablePages);
  });
});

describe('v6-hardened: each knob removes the known findings it names', () => {
  const machine = smallMachineWithSmmu({ ats: false });
  for (const k of HARDENING_KNOBS) {
    for (const name of k.removes) {
      it(`${k.knob} removes ${name}`, () => {
        const f = KNOWN_FINDINGS.find((x) => x.name === name);
        if (f === undefined) throw new Error(`no known finding ${name}`);
        const checks = new Set([f.check]);
        // The posted design reaches the finding with its trigger...
        const posted = runOperations(machine, f.trigger, { checks, continueAfterViolation: true });
        expect(posted.steps.some((s) => s.violations.some((v) => v.check === f.check)), describeFailure(posted)).toBe(true);
        // ...and the same trigger with the one knob on does not.
        const fixed = runOperations(machine, f.trigger, { checks, driver: { [k.knob]: k.value } });
        expect(describeFailure(fixed)).toBe('no violation');
      });
    }
  }

  it('every known finding of the posted design is removed by a knob or a design variant, and says which', () => {
    for (const f of KNOWN_FINDINGS) {
      expect(f.removedBy.length, f.name).toBeGreaterThan(0);
      expect(f.appliesTo.length, f.name).toBeGreaterThan(0);
      const byKnob = HARDENING_KNOBS.some((k) => k.removes.includes(f.name));
      expect(byKnob || designVariant(f.removedBy) !== undefined, f.name).toBe(true);
    }
  });
});
