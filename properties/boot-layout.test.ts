/**
 * Boot-time hypervisor memory inside the host's PA space (issue 11 item 4): the IOMMU page pool
 * (annotated at boot) and what the posted driver's init takes by donation from host memory (the
 * smmu array, its command queue and stream table) are host NOPAGE in the model, skipped by the
 * idmap snapshot, and protected by dma_isolation — which a snapshot that maps them would break.
 */
import { describe, expect, it } from 'vitest';
import { IOMMU_READ, IOMMU_WRITE } from '../impl/pgtable/io-pgtable-arm.js';
import { iommuPoolRange } from '../impl/system.js';
import { smallMachineWithSmmu, toSystemConfig } from './machine.js';
import { describeFailure, runOperations } from './runner.js';

const PAGE = 4096;

describe('boot-time hypervisor memory inside the host PA space', () => {
  const machine = smallMachineWithSmmu({ ats: false });
  const pool = iommuPoolRange(toSystemConfig(machine), machine.smmu!);

  it('is inside host RAM, owned by the hypervisor, and not in the idmap', () => {
    const r = runOperations(machine, []);
    expect(r.failure).toBeUndefined();
    const first = machine.memory[0]!;
    expect(pool.base).toBeGreaterThanOrEqual(first.base);
    expect(pool.base + pool.pages * PAGE).toBeLessThanOrEqual(first.base + first.size);
    const own = r.system.iommu!.driver.ownStructures();
    expect(own.length).toBe(3); // smmu array, command queue, stream table (posted v6-era smmu_init)
    const pfns = [pool.base / PAGE, pool.base / PAGE + pool.pages - 1, ...own.map(([pa]) => pa / PAGE)];
    for (const pfn of pfns) {
      expect(r.model.host.get(pfn), `pfn 0x${pfn.toString(16)}`).toBe('NOPAGE');
      expect(r.model.hyp.get(pfn), `pfn 0x${pfn.toString(16)}`).toBe('OWNED');
      expect(r.system.iommu!.idmap!.translate(pfn * PAGE), `pfn 0x${pfn.toString(16)}`).toBeUndefined();
    }
  });

  it('a snapshot that mapped the pool would be caught by dma_isolation', () => {
    const mapped = runOperations(machine, [{ kind: 'dma', sid: 1, addr: pool.base, access: 'read' }], {
      afterBoot: (sys) => void sys.iommu!.idmap!.driverIdmap(pool.base, pool.base + PAGE, IOMMU_READ | IOMMU_WRITE),
    });
    expect(describeFailure(mapped)).toMatch(/maps pfn 0x[0-9a-f]+, which the host may not access/);
    expect(describeFailure(runOperations(machine, [{ kind: 'dma', sid: 1, addr: pool.base, access: 'read' }]))).toBe('no violation');
  });
});
