/**
 * SMMU model benchmarks (issue: SMMUv3 hardware model). One stream with a stage-2 configuration
 * of 4K granule and a 48-bit IPA (the walk starts at level 0, four levels), 4096 pages mapped
 * across 8 level-3 tables spread over the IPA space. Figures, translations per second through
 * `Smmu.translateInto` (the allocation-free entry point):
 *  - smmu_tlb_hit_translations_per_s: every page already in the TLB;
 *  - smmu_walk_translations_per_s: TLB and walk-cache fills disabled, so every translation walks
 *    all four levels from memory (the STE stays in the configuration cache);
 *  - smmu_nested_tlb_hit_translations_per_s / smmu_nested_walk_translations_per_s (issue 13): the
 *    same 4096 pages behind a nested STE — a 48-bit stage 1 (CD 0, four levels) over a 48-bit
 *    stage 2 (four levels, 4K pages identity-mapping the stage-1 tables, the CD and the data) —
 *    served from combined S1+S2 TLB entries, or walked in full: each of the four stage-1 table
 *    reads and the output IPA translated by a four-level stage-2 walk (24 descriptor reads).
 */
import { GRANULE_4K, levelSize } from '../impl/arch/granule.js';
import { PhysicalMemory } from '../impl/arch/physical-memory.js';
import { encodeLeafDesc, encodeTableDesc, s2Format } from '../impl/arch/s2-descriptor.js';
import { CR0_CMDQEN, CR0_SMMUEN, REG } from '../impl/arch/smmu/registers.js';
import { encodeSte, steFields } from '../impl/arch/smmu/ste.js';
import { cdFields, encodeCd } from '../impl/arch/smmu/cd.js';
import { RW, SmmuBench, s2SteFields } from '../impl/hw/smmu/testing.js';
import { Smmu, TR_OK, TranslationResult } from '../impl/hw/smmu/smmu.js';
import { mulberry32 } from './prng.js';

const SMMU_BASE = 0x0900_0000;
const STRTAB = 0x4000_0000;
const TABLES = 0x4100_0000;
const DATA = 0x5000_0000;
const SID = 1;
const PAGES = 4096;

export interface SmmuBenchSetup {
  readonly smmu: Smmu;
  /** The stream translated (SID 1 by default). */
  readonly sid?: number;
  /** Mapped IPAs (page-aligned plus an offset), in random order. */
  readonly addresses: Float64Array;
}

/**
 * The benchmark's address layout: 4096 pages in 8 regions of 512, far apart in the 48-bit space so
 * every level is exercised, mapped page by page under `root` (tables from `alloc`, table
 * descriptors and leaves as `leaf` writes them), returned shuffled so consecutive translations do
 * not walk neighbouring descriptors.
 */
function populatePages(memory: PhysicalMemory, root: number, alloc: () => number, leaf: (ptep: number, pa: number) => void, seed: number): Float64Array {
  const random = mulberry32(seed);
  const addresses = new Float64Array(PAGES);
  for (let i = 0; i < PAGES; i++) {
    const region = i >>> 9;
    const ia = region * 0x1234_5620_0000 + (i & 511) * 0x1000;
    addresses[i] = ia + ((i * 8) & 0xfff);
    let table = root;
    for (let level = 0; level < 3; level++) {
      const ptep = table + (Math.floor(ia / levelSize(GRANULE_4K, level)) % 512) * 8;
      const cur = memory.peek64(ptep);
      if ((cur.lo & 3) === 3) {
        table = (cur.hi & 0xffff) * 0x1_0000_0000 + ((cur.lo & ~0xfff) >>> 0);
      } else {
        const t = alloc();
        // Stage-1 and stage-2 table descriptors are alike (a nested stream's hold IPAs).
        const d = encodeTableDesc(s2Format(GRANULE_4K), t);
        memory.store64(ptep, d.lo, d.hi);
        table = t;
      }
    }
    leaf(table + (Math.floor(ia / 0x1000) % 512) * 8, DATA + (i % 0x8000) * 0x1000);
  }
  for (let i = PAGES - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = addresses[i] as number;
    addresses[i] = addresses[j] as number;
    addresses[j] = t;
  }
  return addresses;
}

export function buildSmmuSetup(seed = 7): SmmuBenchSetup {
  const memory = new PhysicalMemory([
    { name: 'mmio', kind: 'mmio', base: SMMU_BASE, size: 0x0100_0000 },
    { name: 'ram', kind: 'ram', base: 0x4000_0000, size: 0x4000_0000 },
  ]);
  const smmu = new Smmu(memory, { base: SMMU_BASE, mode: 'strict' });
  const fmt = s2Format(GRANULE_4K);
  let next = TABLES;
  const alloc = (): number => {
    const pa = next;
    next += 0x1000;
    return pa;
  };
  const root = alloc();
  const addresses = populatePages(memory, root, alloc, (ptep, pa) => {
    const leaf = encodeLeafDesc(fmt, 3, pa, { memAttr: 0xf, read: true, write: true, sh: 3, af: true, fnxs: false, nT: false, dbm: false, contiguous: false, xn: 0, sw: 0, pbha: 0 });
    memory.store64(ptep, leaf.lo, leaf.hi);
  }, seed);
  const ste = encodeSte(steFields({ v: true, config: 0b110, s2vmid: 1, s2t0sz: 16, s2sl0: 2, s2tg: 0, s2ps: 5, s2aa64: true, s2r: true, s2ttb: root }));
  ste.forEach((w, i) => memory.store64(STRTAB + SID * 64 + i * 8, w.lo, w.hi));
  memory.write32(SMMU_BASE + REG.STRTAB_BASE, STRTAB);
  memory.write32(SMMU_BASE + REG.STRTAB_BASE_CFG, 8);
  memory.write32(SMMU_BASE + REG.CR0, CR0_SMMUEN | CR0_CMDQEN);
  return { smmu, addresses };
}

function run(setup: SmmuBenchSetup, count: number): number {
  const { smmu, addresses } = setup;
  const sid = setup.sid ?? SID;
  const out = new TranslationResult();
  const mask = addresses.length - 1;
  let ok = 0;
  const warm = Math.min(count, 200_000);
  for (let i = 0; i < warm; i++) {
    out.ipa = addresses[i & mask] as number;
    if (smmu.translateInto(sid, (i & 1) === 0, out) === TR_OK) ok++;
  }
  ok = 0;
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    out.ipa = addresses[i & mask] as number;
    if (smmu.translateInto(sid, (i & 1) === 0, out) === TR_OK) ok++;
  }
  const seconds = (performance.now() - start) / 1000;
  if (ok !== count) throw new Error(`benchmark workload broken: ${count - ok} translations failed`);
  return count / seconds;
}

/** Translations per second when every page is already in the TLB. */
export function benchSmmuTlbHits(count = 10_000_000): number {
  const setup = buildSmmuSetup();
  for (const a of setup.addresses) setup.smmu.translate(SID, a, 'read');
  if (setup.smmu.cachedTranslations().length !== PAGES) throw new Error('TLB not filled');
  return run(setup, count);
}

/** Translations per second when every translation walks four levels (TLB and walk-cache fills off). */
export function benchSmmuWalks(count = 2_000_000): number {
  const setup = buildSmmuSetup();
  setup.smmu.translate(SID, setup.addresses[0] as number, 'read');
  setup.smmu.evict({ cache: 'tlb', select: () => true });
  setup.smmu.evict({ cache: 'walk', select: () => true });
  setup.smmu.setFillPolicy({ tlb: false, walkCache: false });
  return run(setup, count);
}

const NESTED_CD = 0x4300_0000;

/** The 4096 pages of `buildSmmuSetup` as VAs of a nested stream (see the header). */
export function buildNestedSmmuSetup(seed = 7): SmmuBenchSetup {
  const b = new SmmuBench({ mode: 'strict' });
  const memory = b.memory;
  const s1root = b.allocTable();
  const identity = new Set<number>([s1root, NESTED_CD]);
  const alloc = (): number => {
    const t = b.allocTable();
    identity.add(t);
    return t;
  };
  // Stage-1 pages (AF, nG, read/write); stage 2 maps the tables, the CD and the data at IPA = PA.
  const addresses = populatePages(memory, s1root, alloc, (ptep, pa) => {
    identity.add(pa);
    memory.store64(ptep, (pa | 3 | (1 << 10) | (1 << 11)) >>> 0, 0);
  }, seed);
  const s2root = b.allocTable();
  for (const page of identity) b.map(s2root, 0, page, 3, page, RW);
  encodeCd(cdFields({ v: true, aa64: true, t0sz: 16, tg0: 0, ips: 5, r: true, a: true, asid: 1, epd1: true, ttb0: s1root })).forEach((w, i) => memory.store64(NESTED_CD + i * 8, w.lo, w.hi));
  b.writeSte(SID, { ...s2SteFields({ vmid: 0, ttb: s2root, t0sz: 16, sl0: 2 }), config: 0b111, s1ContextPtr: NESTED_CD, s1fmt: 0, s1cdmax: 0, s1dss: 0, s1cir: 1, s1cor: 1, s1csh: 3 });
  return { smmu: b.smmu, addresses };
}

/** Nested translations per second when every page is in the TLB as a combined S1+S2 entry. */
export function benchSmmuNestedTlbHits(count = 10_000_000): number {
  const setup = buildNestedSmmuSetup();
  for (const a of setup.addresses) setup.smmu.translate(SID, a, 'read');
  if (setup.smmu.cachedS1Translations().length !== PAGES) throw new Error('combined TLB not filled');
  return run(setup, count);
}

/** Nested translations per second when every one walks both stages in full (no TLB or walk-cache fills). */
export function benchSmmuNestedWalks(count = 500_000): number {
  const setup = buildNestedSmmuSetup();
  // No translation is cached; the first one still caches the STE and the CD.
  setup.smmu.setFillPolicy({ tlb: false, walkCache: false });
  setup.smmu.translate(SID, setup.addresses[0] as number, 'read');
  if (setup.smmu.cachedS1Translations().length !== 0) throw new Error('combined entries left');
  return run(setup, count);
}
