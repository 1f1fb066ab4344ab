/**
 * Stage-1 and nested translation (issue 13): vectors for each granule, each event, each
 * stage-1 invalidation rule, the strict-vs-permissive rows for nesting, and an oracle property
 * (nested translation = independent stage-1 walk composed with independent stage-2 walks).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GRANULE_16K, GRANULE_4K, GRANULE_64K, type Granule, levelSize } from '../../arch/granule.js';
import { cdFields, encodeCd, encodeL1Cd } from '../../arch/smmu/cd.js';
import { type Command } from '../../arch/smmu/commands.js';
import { steFields } from '../../arch/smmu/ste.js';
import { s1StartLevel } from './nested.js';
import { DATA, RW, SmmuBench, s2SteFields, tlbiIpa } from './testing.js';

const OFF = 0x1000_0000; // IPA = PA + OFF for the stage-1 tables and the CD (nested)
const CD_PA = 0x4200_0000;
const DATA_IPA = 0x8000_0000;
const VA = 0x12_3450_0000;
const VMID = 0;
const ASID = 7;
const S2 = { vmid: VMID, ttb: 0, t0sz: 25, sl0: 1 } as const;

interface Setup {
  readonly b: SmmuBench;
  readonly g: Granule;
  readonly nested: boolean;
  /** Maps `va` (leaf at `level`) to output `oa` (an IPA when nested). */
  map(va: number, level: number, oa: number, opts?: { ro?: boolean; global?: boolean }): void;
  /** Every stage-1 descriptor address the walk of `va` reads (PAs), root first. */
  walkPteps(va: number): number[];
  s2root: number;
}

function write64(b: SmmuBench, pa: number, v: number, low: number): void {
  b.memory.store64(pa, ((v % 2 ** 32) | low) >>> 0, Math.floor(v / 2 ** 32) >>> 0);
}

function setup(g: Granule, nested: boolean, opts: { mode?: 'strict' | 'permissive'; cd?: Parameters<typeof cdFields>[0]; s1cdmax?: number; s1dss?: number; s1fmt?: number } = {}): Setup {
  const b = new SmmuBench({ mode: opts.mode ?? 'strict' });
  const off = nested ? OFF : 0;
  const iaBits = 39;
  const start = s1StartLevel(g, iaBits);
  const top = 2 ** (iaBits - (g.bitsPerLevel * (4 - start) + 3));
  const root = b.allocTable(g, Math.max(1, Math.ceil((top * 8) / g.size)));
  const tables = new Map<number, number>();
  const s2root = b.allocTable();
  if (nested) {
    // Stage 2: IPA [0x5100_0000, 0x5300_0000) → PA [0x4100_0000, 0x4300_0000) in 2M blocks; DATA_IPA → DATA (2M).
    for (let a = 0x4100_0000; a < 0x4300_0000; a += 0x20_0000) b.map(s2root, 1, a + OFF, 2, a, RW);
    for (let a = 0; a < 0x40_0000; a += 0x20_0000) b.map(s2root, 1, DATA_IPA + a, 2, DATA + a, RW);
  }
  const index = (va: number, l: number) => Math.floor(va / levelSize(g, l)) % (l === start ? top : g.entriesPerTable);
  const tableAt = (va: number, level: number): number => {
    let table = root;
    for (let l = start; l < level; l++) {
      const ptep = table + index(va, l) * 8;
      let next = tables.get(ptep);
      if (next === undefined) {
        next = b.allocTable(g);
        tables.set(ptep, next);
        write64(b, ptep, next + off, 3);
      }
      table = next;
    }
    return table;
  };
  const cdIpa = CD_PA + off;
  let ctxPtr = cdIpa;
  if ((opts.s1fmt ?? 0) !== 0) {
    // 2-level CD table: L1CD 0 at CD_PA + 0x1000 → leaf table at CD_PA.
    const l1 = encodeL1Cd({ v: true, l2ptr: cdIpa });
    b.memory.store64(CD_PA + 0x1000, l1.lo, l1.hi);
    ctxPtr = cdIpa + 0x1000;
  }
  const cd = encodeCd(cdFields({ v: true, aa64: true, t0sz: 64 - iaBits, tg0: g.tg0, ips: 5, r: true, a: true, asid: ASID, epd1: true, ttb0: root + off, ...opts.cd }));
  cd.forEach((w, i) => b.memory.store64(CD_PA + i * 8, w.lo, w.hi));
  const s2f = s2SteFields({ ...S2, ttb: s2root });
  b.writeSte(1, { ...s2f, config: nested ? 0b111 : 0b101, s1ContextPtr: ctxPtr, s1fmt: opts.s1fmt ?? 0, s1cdmax: opts.s1cdmax ?? 0, s1dss: opts.s1dss ?? 0, s1cir: 1, s1cor: 1, s1csh: 3 });
  return {
    b, g, nested, s2root,
    map(va, level, oa, o = {}) {
      const ptep = tableAt(va, level) + index(va, level) * 8;
      write64(b, ptep, oa, (level === 3 ? 3 : 1) | (1 << 10) | (o.ro ? 1 << 7 : 0) | (o.global ? 0 : 1 << 11));
    },
    walkPteps(va) {
      const out: number[] = [];
      let table = root;
      for (let l = start; l <= 3; l++) {
        const ptep = table + index(va, l) * 8;
        out.push(ptep);
        const next = tables.get(ptep);
        if (next === undefined) break;
        table = next;
      }
      return out;
    },
  };
}

const nhVa = (asid: number, va: number, leaf = false): Command => ({ kind: 'TLBI_NH_VA', vmid: VMID, asid, address: { lo: va % 2 ** 32, hi: Math.floor(va / 2 ** 32) }, leaf, tg: 0, ttl: 0, num: 0, scale: 0, ttl128: false });

describe('stage-1 and nested translation vectors', () => {
  for (const g of [GRANULE_4K, GRANULE_16K, GRANULE_64K]) {
    it(`${g.kind}: stage-1 only (Config 0b101) and nested (0b111), page and block leaves`, () => {
      const s1 = setup(g, false);
      s1.map(VA, 3, DATA + g.size);
      expect(s1.b.smmu.translate(1, VA + 0x18, 'write')).toEqual({ kind: 'ok', pa: DATA + g.size + 0x18, via: 'walk', level: 3 });
      expect(s1.b.smmu.translate(1, VA + 0x18, 'read')).toMatchObject({ kind: 'ok', via: 'tlb' });
      const n = setup(g, true);
      n.map(VA, 3, DATA_IPA + g.size);
      expect(n.b.smmu.translate(1, VA + 0x20, 'write')).toEqual({ kind: 'ok', pa: DATA + g.size + 0x20, via: 'walk', level: 3 });
      const [entry] = n.b.smmu.cachedS1Translations();
      // Stage 2 maps 2M blocks, stage 1 a page: the combined entry is page-sized, tagged ASID + VMID.
      expect(entry).toMatchObject({ vmid: VMID, asid: ASID, global: false, size: g.size, ipa: DATA_IPA + g.size, pa: DATA + g.size, nested: true });
      // Block leaf at level 2.
      const blockVa = 0x40_0000_0000 % 2 ** 39 + levelSize(g, 2) * 4;
      n.map(blockVa, 2, DATA_IPA);
      const size2 = levelSize(g, 2);
      const r = n.b.smmu.translate(1, blockVa + 0x1234, 'read');
      expect(r).toMatchObject({ kind: 'ok', level: 2 });
      if (size2 <= 0x40_0000) expect(r).toMatchObject({ pa: DATA + 0x1234 });
    });
  }

  it('2-level CD table (S1Fmt = 64K leaf tables, S1CDMax ≠ 0, S1DSS = SSID0): CD 0 through the L1CD', () => {
    const n = setup(GRANULE_4K, true, { s1fmt: 2, s1cdmax: 4, s1dss: 2 });
    n.map(VA, 3, DATA_IPA);
    expect(n.b.smmu.translate(1, VA, 'read')).toMatchObject({ kind: 'ok', pa: DATA });
  });

  it('S1DSS with S1CDMax ≠ 0: terminate → F_STREAM_DISABLED; bypass → stage 2 only', () => {
    const t = setup(GRANULE_4K, true, { s1cdmax: 4, s1dss: 0 });
    expect(t.b.smmu.translate(1, VA, 'read')).toMatchObject({ kind: 'abort', reason: 'stream_disabled', event: { kind: 'F_STREAM_DISABLED' } });
    const p = setup(GRANULE_4K, true, { s1cdmax: 4, s1dss: 1 });
    expect(p.b.smmu.translate(1, DATA_IPA + 8, 'read')).toMatchObject({ kind: 'ok', pa: DATA + 8 });
  });
});

describe('stage-1 and nested events', () => {
  it('C_BAD_CD, stage-1 F_TRANSLATION / F_PERMISSION / F_ADDR_SIZE / F_WALK_EABT (S2 = 0)', () => {
    const bad = setup(GRANULE_4K, false, { cd: { aa64: false } });
    expect(bad.b.smmu.translate(1, VA, 'read')).toMatchObject({ reason: 'bad_cd', event: { kind: 'C_BAD_CD', streamId: 1 } });
    const s = setup(GRANULE_4K, false);
    expect(s.b.smmu.translate(1, VA, 'read')).toMatchObject({ reason: 'translation', event: { kind: 'F_TRANSLATION', s2: false, eventClass: 2 } });
    expect(s.b.smmu.translate(1, 2 ** 39, 'read')).toMatchObject({ reason: 'translation', event: { kind: 'F_TRANSLATION', s2: false } });
    s.map(VA, 3, DATA, { ro: true });
    expect(s.b.smmu.translate(1, VA, 'write')).toMatchObject({ reason: 'permission', event: { kind: 'F_PERMISSION', s2: false } });
    s.map(VA + 0x1000, 3, 2 ** 47); // IPS 48 bits OK; OAS 48: output 2^47 fine → use beyond IPS below
    const small = setup(GRANULE_4K, false, { cd: { ips: 0 } }); // 32-bit output
    small.map(VA, 3, 2 ** 33);
    expect(small.b.smmu.translate(1, VA, 'read')).toMatchObject({ reason: 'addr_size', event: { kind: 'F_ADDR_SIZE', s2: false } });
    const eabt = setup(GRANULE_4K, false);
    eabt.map(VA, 3, DATA);
    const [, second] = eabt.walkPteps(VA);
    write64(eabt.b, eabt.walkPteps(VA)[0]!, 0x0800_0000, 3); // table pointer into MMIO/hole
    expect(second).toBeDefined();
    expect(eabt.b.smmu.translate(1, VA, 'read')).toMatchObject({ reason: 'walk_eabt', event: { kind: 'F_WALK_EABT', s2: false, eventClass: 1 } });
  });

  it('nested: stage-2 faults on the CD fetch (CLASS = CD), a table access (CLASS = TT) and the output (CLASS = IN), all S2 = 1', () => {
    const cdFault = setup(GRANULE_4K, true);
    cdFault.b.writeSte(1, { ...s2SteFields({ ...S2, ttb: cdFault.s2root }), config: 0b111, s1ContextPtr: 0x7e00_0000 });
    expect(cdFault.b.smmu.translate(1, VA, 'read')).toMatchObject({ reason: 'translation', event: { kind: 'F_TRANSLATION', s2: true, eventClass: 0, ipa: 0x7e00_0000, rnw: true } });
    const tt = setup(GRANULE_4K, true);
    tt.map(VA, 3, DATA_IPA);
    write64(tt.b, tt.walkPteps(VA)[1]!, 0x7000_0000, 3); // level-2 table at an IPA stage 2 does not map
    expect(tt.b.smmu.translate(1, VA, 'read')).toMatchObject({ reason: 'translation', event: { kind: 'F_TRANSLATION', s2: true, eventClass: 1, ipa: 0x7000_0000 } });
    const outFault = setup(GRANULE_4K, true);
    outFault.map(VA, 3, 0x7100_0000);
    expect(outFault.b.smmu.translate(1, VA + 4, 'write')).toMatchObject({ reason: 'translation', event: { kind: 'F_TRANSLATION', s2: true, eventClass: 2, ipa: 0x7100_0000, rnw: false } });
  });
});

describe('stage-1 invalidation rules (strict)', () => {
  function warmed(): Setup {
    const n = setup(GRANULE_4K, true);
    n.map(VA, 3, DATA_IPA);
    expect(n.b.smmu.translate(1, VA, 'read')).toMatchObject({ kind: 'ok' });
    expect(n.b.smmu.cachedS1Translations()).toHaveLength(1);
    return n;
  }
  it('TLBI_S2_IPA of the output IPA leaves the combined entry; S12_VMALL removes it', () => {
    const n = warmed();
    n.b.run(tlbiIpa(VMID, DATA_IPA, { leaf: false }), { kind: 'CMD_SYNC', cs: 0, msh: 0, msiattr: 0, msidata: 0, msiaddr: 0 });
    expect(n.b.smmu.cachedS1Translations()).toHaveLength(1);
    n.b.run({ kind: 'TLBI_S12_VMALL', vmid: VMID }, { kind: 'CMD_SYNC', cs: 0, msh: 0, msiattr: 0, msidata: 0, msiaddr: 0 });
    expect(n.b.smmu.cachedS1Translations()).toHaveLength(0);
    expect(n.b.smmu.s1WalkCacheEntries()).toHaveLength(0);
  });
  it('NH_VA of another ASID leaves it; NH_VA Leaf = 1 removes the leaf and keeps walk-cache entries; NH_ASID / NH_ALL / NH_VAA remove', () => {
    const sync = { kind: 'CMD_SYNC', cs: 0, msh: 0, msiattr: 0, msidata: 0, msiaddr: 0 } as const;
    const n = warmed();
    n.b.run(nhVa(ASID + 1, VA), sync);
    expect(n.b.smmu.cachedS1Translations()).toHaveLength(1);
    const walk = n.b.smmu.s1WalkCacheEntries().length;
    expect(walk).toBeGreaterThan(0);
    n.b.run(nhVa(ASID, VA, true), sync);
    expect(n.b.smmu.cachedS1Translations()).toHaveLength(0);
    expect(n.b.smmu.s1WalkCacheEntries()).toHaveLength(walk);
    n.b.run(nhVa(ASID, VA, false), sync);
    expect(n.b.smmu.s1WalkCacheEntries()).toHaveLength(0);
    for (const cmd of [{ kind: 'TLBI_NH_ASID', vmid: VMID, asid: ASID }, { kind: 'TLBI_NH_ALL', vmid: VMID }, { ...nhVa(0, VA), kind: 'TLBI_NH_VAA' }] as Command[]) {
      const m = warmed();
      m.b.run(cmd, sync);
      expect(m.b.smmu.cachedS1Translations(), cmd.kind).toHaveLength(0);
    }
    const other = warmed();
    other.b.run({ kind: 'TLBI_NH_ALL', vmid: VMID + 1 }, sync);
    expect(other.b.smmu.cachedS1Translations()).toHaveLength(1);
  });
  it('CFGI_CD drops CD 0; until then a rewritten CD is not seen', () => {
    const sync = { kind: 'CMD_SYNC', cs: 0, msh: 0, msiattr: 0, msidata: 0, msiaddr: 0 } as const;
    const n = warmed();
    expect(n.b.smmu.cachedCds()).toHaveLength(1);
    n.b.memory.store64(CD_PA, 0, 0); // V = 0
    n.b.run({ kind: 'TLBI_NH_ALL', vmid: VMID }, sync);
    expect(n.b.smmu.translate(1, VA, 'read')).toMatchObject({ kind: 'ok' });
    n.b.run({ kind: 'CFGI_CD', ssec: false, sid: 1, ssid: 0, leaf: true }, sync);
    expect(n.b.smmu.cachedCds()).toHaveLength(0);
    expect(n.b.smmu.translate(1, VA, 'read')).toMatchObject({ reason: 'bad_cd' });
  });
});

describe('strict vs permissive rows for nesting (see index.ts)', () => {
  const sync = { kind: 'CMD_SYNC', cs: 0, msh: 0, msiattr: 0, msidata: 0, msiaddr: 0 } as const;
  it('global (nG = 0) stage-1 entry: survives NH_ASID (strict) | removed, QEMU tags it with the ASID (permissive)', () => {
    for (const mode of ['strict', 'permissive'] as const) {
      const n = setup(GRANULE_4K, true, { mode });
      n.map(VA, 3, DATA_IPA, { global: true });
      n.b.smmu.translate(1, VA, 'read');
      n.b.run({ kind: 'TLBI_NH_ASID', vmid: VMID, asid: ASID }, sync);
      expect(n.b.smmu.cachedS1Translations(), mode).toHaveLength(mode === 'strict' ? 1 : 0);
    }
  });
  it('stage-2 fault on a stage-1 table address: S2 = 1, CLASS = TT (strict) | S2 = 0, CLASS = TT (permissive, QEMU)', () => {
    for (const mode of ['strict', 'permissive'] as const) {
      const n = setup(GRANULE_4K, true, { mode });
      n.map(VA, 3, DATA_IPA);
      write64(n.b, n.walkPteps(VA)[1]!, 0x7000_0000, 3);
      expect(n.b.smmu.translate(1, VA, 'read'), mode).toMatchObject({ event: { kind: 'F_TRANSLATION', s2: mode === 'strict', eventClass: 1 } });
    }
  });
  it('TTB0 remapped by stage 2 + TLBI_S2_IPA + S12_VMALL: new root used (strict) | old root baked into the cached CD (permissive)', () => {
    for (const mode of ['strict', 'permissive'] as const) {
      const n = setup(GRANULE_4K, true, { mode });
      n.map(VA, 3, DATA_IPA);
      expect(n.b.smmu.translate(1, VA, 'read')).toMatchObject({ kind: 'ok', pa: DATA });
      // Remap the 2M stage-2 block holding TTB0 to a copy whose root table is empty: a walk from
      // the new root faults; a walk from the old (baked) root still reaches the copied tables.
      const rootPtep = n.walkPteps(VA)[0]!;
      const block = rootPtep - (rootPtep % 0x20_0000);
      n.b.memory.zero(0x4300_0000, 0x20_0000);
      for (let o = 0; o < 0x4_0000; o += 8) {
        const w = n.b.memory.peek64(block + o);
        n.b.memory.store64(0x4300_0000 + o, w.lo, w.hi);
      }
      n.b.memory.zero(0x4300_0000 + (rootPtep - block) - ((rootPtep - block) % 4096), 4096);
      n.b.map(n.s2root, 1, block + OFF, 2, 0x4300_0000, RW);
      const root = block;
      n.b.run(tlbiIpa(VMID, root + OFF, { leaf: false }), { kind: 'TLBI_S12_VMALL', vmid: VMID }, sync);
      const r = n.b.smmu.translate(1, VA, 'read');
      if (mode === 'strict') expect(r).toMatchObject({ kind: 'abort', reason: 'translation' });
      else expect(r).toMatchObject({ kind: 'ok', pa: DATA });
    }
  });
  it('stage-1 walk cache: kept across NH_VA Leaf = 1 (strict) | none (permissive)', () => {
    for (const mode of ['strict', 'permissive'] as const) {
      const n = setup(GRANULE_4K, true, { mode });
      n.map(VA, 3, DATA_IPA);
      n.b.smmu.translate(1, VA, 'read');
      expect(n.b.smmu.s1WalkCacheEntries().length > 0, mode).toBe(mode === 'strict');
    }
  });
});

describe('oracle: nested translation = independent stage-1 walk ∘ stage-2 walks', () => {
  /** Reads descriptors directly: stage 2 by the bench's 4K tables, stage 1 through it. */
  function oracle(n: Setup, va: number): number | undefined {
    const mem = n.b.memory;
    const s2 = (ipa: number): number | undefined => {
      let table = n.s2root;
      for (let l = 1; l <= 3; l++) {
        const d = mem.peek64(table + (Math.floor(ipa / levelSize(GRANULE_4K, l)) % 512) * 8);
        if ((d.lo & 1) === 0) return undefined;
        const oa = d.hi * 2 ** 32 + (d.lo & 0xffff_f000) >>> 0 === 0 ? 0 : (d.hi & 0xffff) * 2 ** 32 + ((d.lo & 0xffff_f000) >>> 0);
        if (l < 3 && (d.lo & 2) !== 0) {
          table = oa;
          continue;
        }
        const size = levelSize(GRANULE_4K, l);
        return oa - (oa % size) + (ipa % size);
      }
      return undefined;
    };
    const g = n.g;
    const start = s1StartLevel(g, 39);
    const top = 2 ** (39 - (g.bitsPerLevel * (4 - start) + 3));
    let tableIpa = n.walkPteps(va)[0]! - (Math.floor(va / levelSize(g, start)) % top) * 8 + OFF;
    for (let l = start; l <= 3; l++) {
      const idx = Math.floor(va / levelSize(g, l)) % (l === start ? top : g.entriesPerTable);
      const ptep = s2(tableIpa + idx * 8);
      if (ptep === undefined) return undefined;
      const d = mem.peek64(ptep);
      if ((d.lo & 1) === 0) return undefined;
      const addr = (d.hi & 0xffff) * 2 ** 32 + ((d.lo >>> g.shift) << g.shift >>> 0);
      if (l < 3 && (d.lo & 2) !== 0) {
        tableIpa = addr;
        continue;
      }
      const size = levelSize(g, l);
      return s2(addr - (addr % size) + (va % size));
    }
    return undefined;
  }

  it('for random mappings and addresses in every granule', () => {
    fc.assert(
      fc.property(fc.constantFrom(GRANULE_4K, GRANULE_16K, GRANULE_64K), fc.array(fc.nat(255), { minLength: 1, maxLength: 6 }), fc.nat(1023), fc.boolean(), (g, pages, probe, twice) => {
        const n = setup(g, true);
        for (const p of pages) n.map(VA + p * g.size, 3, DATA_IPA + ((p * 7) % 64) * g.size);
        const va = VA + (pages[probe % pages.length]! + (probe % 3 === 0 ? 1 : 0)) * g.size + (probe % 64) * 8;
        const want = oracle(n, va);
        for (let i = 0; i < (twice ? 2 : 1); i++) {
          const got = n.b.smmu.translate(1, va, 'read');
          if (want === undefined) expect(got.kind).toBe('abort');
          else expect(got).toMatchObject({ kind: 'ok', pa: want });
          expect(n.b.smmu.walkUncached(1, va, 'read')).toMatchObject(want === undefined ? { kind: 'abort' } : { kind: 'ok', pa: want });
        }
      }),
      { seed: 1313, numRuns: 60 },
    );
  });
});
