/**
 * Host DMA-domain steps (issue 13 item 5): the host's own driver attaching devices to stage-1
 * domains, mapping and unmapping IOVA ranges (with its TLBI_NH_VA + CMD_SYNC), detaching (back to
 * bypass, TLBI_NH_ASID), interleaved with donations of the pages it maps and of the pages its own
 * tables live in, and DMA through the IOVAs. The host's stage 1 may point anywhere in its IPA
 * space, so the mapped addresses include hypervisor pages and MMIO, not only its own pages:
 * isolation rests on stage 2 and on the invalidation of combined S1+S2 entries.
 */
import fc from 'fast-check';
import { HOST_DMA_AREA_PAGES, hostDmaArea } from '../impl/system.js';
import { type HardwareOperation } from './dma.js';
import { interestingPfns } from './arbitraries.js';
import { type MachineConfig, toSystemConfig } from './machine.js';
import { type Step } from './runner.js';

const PAGE = 4096;

/** IOVAs the host maps: pages of one level-3 table, a 2 MiB-aligned block, an address above 4 GiB. */
export const DOMAIN_IOVAS = [0x10_0000, 0x10_1000, 0x10_2000, 0x20_0000, 0x1_0000_0000] as const;

/** Page frames of the host's DMA-domain area (its CD and stage-1 table pages come from here). */
export function hostDomainPfns(machine: MachineConfig): number[] {
  if (machine.smmu === undefined) return [];
  const area = hostDmaArea(toSystemConfig(machine), machine.smmu);
  if (area === undefined) return [];
  return Array.from({ length: Math.min(6, HOST_DMA_AREA_PAGES) }, (_, i) => area.base / PAGE + i);
}

/** Host DMA-domain pieces for a machine with an SMMU and stage 1 (a constant empty piece otherwise). */
export function hostDomainArbitrary(machine: MachineConfig): fc.Arbitrary<Step[]> {
  const smmu = machine.smmu;
  if (smmu === undefined || smmu.features?.s1p === false || smmu.devices.length === 0) return fc.constant([]);
  const { hot, edges } = interestingPfns(machine);
  const tables = hostDomainPfns(machine);
  const sid = fc.constantFrom(...smmu.devices.map((d) => d.sid));
  const iova = fc.constantFrom(...DOMAIN_IOVAS);
  // Where the host points its stage 1: its own pages mostly, and anything else in IPA space.
  const target = fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...hot) }, { weight: 2, arbitrary: fc.constantFrom(...tables, ...edges) }, { weight: 1, arbitrary: fc.constantFrom(smmu.base / PAGE, 0x9000) });
  const nrPages = fc.oneof({ weight: 6, arbitrary: fc.constantFrom(1, 2) }, { weight: 1, arbitrary: fc.constant(512) });
  const access = fc.constantFrom('read' as const, 'write' as const);
  const one = fc.oneof(
    { weight: 2, arbitrary: sid.map((s): HardwareOperation => ({ kind: 'host_domain_attach', smmu: 0, sid: s })) },
    { weight: 1, arbitrary: sid.map((s): HardwareOperation => ({ kind: 'host_domain_detach', smmu: 0, sid: s })) },
    { weight: 3, arbitrary: fc.record({ sid, iova, pfn: target, nrPages, write: fc.boolean() }).map(({ sid: s, iova: v, pfn, nrPages: n, write }): HardwareOperation => ({ kind: 'host_domain_map', smmu: 0, sid: s, iova: v, pa: pfn * PAGE, nrPages: n, write })) },
    { weight: 2, arbitrary: fc.record({ sid, iova, nrPages }).map(({ sid: s, iova: v, nrPages: n }): HardwareOperation => ({ kind: 'host_domain_unmap', smmu: 0, sid: s, iova: v, nrPages: n })) },
    { weight: 3, arbitrary: fc.record({ sid, iova, access }).map(({ sid: s, iova: v, access: a }): HardwareOperation => ({ kind: 'dma', sid: s, addr: v, access: a })) },
    { weight: 1, arbitrary: fc.record({ sid, iova }).map(({ sid: s, iova: v }): HardwareOperation => ({ kind: 'smmu_speculative_fill', smmu: 0, sid: s, addr: v })) },
  );
  // The life cycle that matters: a mapped page (or the host's own table page) given away while a
  // combined entry may still hold it, then DMA through the IOVA, then the host cleans up.
  const lifeCycle = fc.record({ sid, iova, pfn: fc.constantFrom(...hot), table: fc.constantFrom(...tables), to: fc.constantFrom('hyp' as const, 'guest' as const, 'table' as const), access }).map(({ sid: s, iova: v, pfn, table, to, access: a }): Step[] => {
    const given = to === 'table' ? table : pfn;
    return [
      { kind: 'host_domain_attach', smmu: 0, sid: s },
      { kind: 'host_domain_map', smmu: 0, sid: s, iova: v, pa: pfn * PAGE, nrPages: 1, write: true },
      { kind: 'dma', sid: s, addr: v, access: a },
      to === 'guest' ? { kind: 'host_donate_guest', pfn: given, gfn: 3, vm: 1 } : { kind: 'host_donate_hyp', pfn: given, nrPages: 1 },
      { kind: 'dma', sid: s, addr: v, access: a },
      { kind: 'host_domain_unmap', smmu: 0, sid: s, iova: v, nrPages: 1 },
      { kind: 'host_domain_detach', smmu: 0, sid: s },
    ];
  });
  return fc.oneof({ weight: 3, arbitrary: one.map((op): Step[] => [op]) }, { weight: 1, arbitrary: lifeCycle });
}

/**
 * The shortest way to a stale combined entry: the host maps IOVA 0x100000 → P + 2 in its domain,
 * a DMA caches VA → PA, and the host donates P + 2 to the hypervisor (the idmap unmap's
 * TLBI_S2_IPA does not remove combined entries). Breaks dma_isolation on `no-tlbi-nh-after-s2`.
 */
export const COMBINED_ENTRY_TRIGGER: readonly Step[] = [
  { kind: 'host_domain_attach', smmu: 0, sid: 1 },
  { kind: 'host_domain_map', smmu: 0, sid: 1, iova: 0x10_0000, pa: 0x4000_2000, nrPages: 1, write: true },
  { kind: 'dma', sid: 1, addr: 0x10_0000, access: 'write' },
  { kind: 'host_donate_hyp', pfn: 0x40002, nrPages: 1 },
];
