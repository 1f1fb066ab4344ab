/**
 * Page-table benchmarks (issue: foundation). Figures:
 *  - walks_per_s: random 4K-aligned translations over a 4 GiB sparse input space mapped with a mix
 *    of 1G blocks, 2M blocks, 4K pages and holes, through the hardware-style walker;
 *  - map_unmap_pairs_per_s: KVM stage-2 map of one 4K page then its unmap, at random addresses
 *    inside page-mapped regions (tables exist, so this is the steady-state cost).
 */
import { GRANULE_4K } from '../impl/arch/granule.js';
import { PhysicalMemory } from '../impl/arch/physical-memory.js';
import { s2Format } from '../impl/arch/s2-descriptor.js';
import { KvmPgtable, PROT_RWX, type Stage2Tlb } from '../impl/pgtable/kvm-pgtable.js';
import { PagePool } from '../impl/pgtable/page-allocator.js';
import { Stage2Walker, WALK_OK, newWalkResult } from '../impl/pgtable/stage2-walk.js';
import { mulberry32 } from './prng.js';

const K4 = 0x1000;
const M2 = 0x20_0000;
const G1 = 0x4000_0000;

const NULL_TLB: Stage2Tlb = {
  flushVmidIpa: () => undefined,
  flushVmidIpaNsh: () => undefined,
  flushVmidRange: () => undefined,
  flushVmid: () => undefined,
};

export interface PgtableBenchSetup {
  readonly pgt: KvmPgtable;
  readonly pool: PagePool;
  /** Start addresses of the 2M regions mapped with 4K pages. */
  readonly pageRegions: number[];
}

/** 4 GiB of IA: G0 one 1G block; G1..G3 per 2M: 40% 2M blocks, 30% pages, 30% holes. */
export function buildSparseTable(seed = 1): PgtableBenchSetup {
  const memory = new PhysicalMemory([
    { name: 'ram', kind: 'ram', base: 0, size: 0x1_0000_0000 },
    { name: 'tables', kind: 'ram', base: 0x10_0000_0000, size: 0x1000_0000 },
  ]);
  const pool = new PagePool(memory, 0x10_0000_0000, 0x1000_0000);
  const pgt = new KvmPgtable(memory, pool, NULL_TLB, { format: s2Format(GRANULE_4K), iaBits: 40 });
  const random = mulberry32(seed);
  pgt.map(0, G1, 0, PROT_RWX, pool);
  const pageRegions: number[] = [];
  for (let region = G1; region < 4 * G1; region += M2) {
    const r = random();
    if (r < 0.4) pgt.map(region, M2, region, PROT_RWX, pool);
    else if (r < 0.7) {
      pgt.map(region, M2, region + K4, PROT_RWX, pool); // offset physical → 512 pages
      pageRegions.push(region);
    }
  }
  return { pgt, pool, pageRegions };
}

function seconds(start: number): number {
  return (performance.now() - start) / 1000;
}

export function benchWalks(setup: PgtableBenchSetup, count = 4_000_000): number {
  const walker = Stage2Walker.forRoot(setup.pgt.memory, setup.pgt.root(), setup.pgt.iaBits);
  const random = mulberry32(2);
  const addresses = new Float64Array(1 << 16);
  for (let i = 0; i < addresses.length; i++) addresses[i] = Math.floor(random() * 0x10_0000) * K4;
  const out = newWalkResult();
  let hits = 0;
  // Warm up the JIT on the same code path before timing.
  for (let i = 0; i < 200_000; i++) if (walker.walk(addresses[i & 0xffff] as number, out) === WALK_OK) hits++;
  hits = 0;
  const start = performance.now();
  for (let i = 0; i < count; i++) if (walker.walk(addresses[i & 0xffff] as number, out) === WALK_OK) hits++;
  const rate = count / seconds(start);
  if (hits === 0) throw new Error('benchmark walked nothing: the workload is broken');
  return rate;
}

export function benchMapUnmap(setup: PgtableBenchSetup, count = 400_000): number {
  const random = mulberry32(3);
  const addresses = new Float64Array(1 << 14);
  for (let i = 0; i < addresses.length; i++) {
    const region = setup.pageRegions[Math.floor(random() * setup.pageRegions.length)] as number;
    addresses[i] = region + Math.floor(random() * 512) * K4;
  }
  const { pgt, pool } = setup;
  const run = (n: number) => {
    for (let i = 0; i < n; i++) {
      const addr = addresses[i & 0x3fff] as number;
      pgt.unmap(addr, K4);
      pgt.map(addr, K4, addr, PROT_RWX, pool);
    }
  };
  run(20_000);
  const start = performance.now();
  run(count);
  return count / seconds(start);
}
