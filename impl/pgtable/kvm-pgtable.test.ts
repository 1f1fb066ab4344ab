import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EAGAIN, EFAULT, EINVAL, ENOMEM, ERANGE } from '../arch/errno.js';
import { GRANULE_4K, GRANULE_64K, levelSize } from '../arch/granule.js';
import { PhysicalMemory } from '../arch/physical-memory.js';
import {
  type S2Format,
  decodeInvalidEntry,
  decodeS2Descriptor,
  encodeLeafDesc,
  encodeTypedAnnotation,
  encodeTableDesc,
  s2Format,
} from '../arch/s2-descriptor.js';
import { u64 } from '../arch/u64.js';
import {
  KvmPgtable,
  PROT_DEVICE,
  PROT_PX,
  PROT_R,
  PROT_RW,
  PROT_RWX,
  PROT_SW_SHIFT,
  PROT_UX,
  PROT_W,
  PROT_X,
  type Stage2Tlb,
  TLBI_TTL_UNKNOWN,
  WALK_HANDLE_FAULT,
} from './kvm-pgtable.js';
import { PagePool } from './page-allocator.js';
import { dumpTable } from './table-dump.js';
import { BreakBeforeMakeMonitor } from '../../properties/protocol/break-before-make.js';

const K4 = 0x1000;
const M2 = 0x20_0000;
const G1 = 0x4000_0000;
const POOL_BASE = 0x80_0000_0000;

type TlbCall = { op: 'ipa' | 'nsh'; ipa: number; level: number } | { op: 'range'; addr: number; size: number } | { op: 'vmid' };

function recordingTlb(calls: TlbCall[]): Stage2Tlb {
  return {
    flushVmidIpa: (ipa, level) => calls.push({ op: 'ipa', ipa, level }),
    flushVmidIpaNsh: (ipa, level) => calls.push({ op: 'nsh', ipa, level }),
    flushVmidRange: (addr, size) => calls.push({ op: 'range', addr, size }),
    flushVmid: () => calls.push({ op: 'vmid' }),
  };
}

function setup(options: { iaBits?: number; format?: S2Format; poolBytes?: number; idmap?: boolean; monitor?: boolean } = {}) {
  const memory = new PhysicalMemory([
    { name: 'ram', kind: 'ram', base: 0, size: 0x1_0000_0000 },
    { name: 'mmio', kind: 'mmio', base: 0x1_0000_0000, size: 0x1000_0000 },
    { name: 'pool', kind: 'ram', base: POOL_BASE, size: 0x1000_0000 },
  ]);
  const format = options.format ?? s2Format(GRANULE_4K);
  const pool = new PagePool(memory, POOL_BASE, options.poolBytes ?? 0x400_0000, format.granule.size);
  const mc = Object.assign(pool, { available: () => Math.floor(pool.freeBytes / format.granule.size) });
  const calls: TlbCall[] = [];
  let tlb = recordingTlb(calls);
  let monitor: BreakBeforeMakeMonitor | undefined;
  let pgtRef: KvmPgtable | undefined;
  if (options.monitor === true) {
    monitor = new BreakBeforeMakeMonitor(memory, () => (pgtRef as KvmPgtable).root());
    tlb = monitor.wrapTlb(tlb);
  }
  const pgt = new KvmPgtable(memory, pool, tlb, { format, iaBits: options.iaBits ?? 40, idmap: options.idmap ?? false });
  pgtRef = pgt;
  monitor?.attach();
  return { memory, pool, mc, calls, pgt, monitor, format };
}

/** The leaf attributes KVM builds for normal memory, written from the architecture (§2.4). */
function expectedLeaf(format: S2Format, level: number, pa: number, prot: number) {
  return encodeLeafDesc(format, level, pa, {
    memAttr: 0xf,
    read: (prot & PROT_R) !== 0,
    write: (prot & PROT_W) !== 0,
    sh: 3,
    af: true,
    fnxs: false,
    nT: false,
    dbm: false,
    contiguous: false,
    xn: (prot & PROT_X) !== 0 ? 0 : 2,
    sw: (prot >>> PROT_SW_SHIFT) & 0xf,
    pbha: 0,
  });
}

function checkRefcounts(pgt: KvmPgtable, pool: PagePool): void {
  const dump = dumpTable(pgt.memory, pgt.root());
  expect(dump.faults).toEqual([]);
  const reachable = new Set(dump.tables.map((t) => t.pa));
  for (const t of dump.tables) expect(pgt.pageCount(t.pa), `refcount of ${t.pa.toString(16)}`).toBe(1 + t.nonZero);
  expect(new Set(pgt.tablePages().keys())).toEqual(reachable);
  expect(pool.allocatedBytes).toBe(dump.tables.length * pgt.granule.size);
}

describe('KvmPgtable geometry', () => {
  it('uses KVM start levels and concatenated PGD pages', () => {
    expect(setup({ iaBits: 40 }).pgt.startLevel).toBe(1);
    expect(setup({ iaBits: 40 }).pgt.pgdPages).toBe(2);
    expect(setup({ iaBits: 48 }).pgt.startLevel).toBe(0);
    expect(setup({ iaBits: 48 }).pgt.pgdPages).toBe(1);
    expect(setup({ iaBits: 32 }).pgt.startLevel).toBe(2);
    expect(setup({ iaBits: 32 }).pgt.pgdPages).toBe(4);
  });
});

describe('KvmPgtable map', () => {
  it('maps a single 4K page with KVM host attributes', () => {
    const { pgt, mc, pool, format } = setup();
    expect(pgt.map(0x1000, K4, 0x1000, PROT_RWX, mc)).toBe(0);
    const leaf = pgt.getLeaf(0x1000);
    expect(leaf.level).toBe(3);
    const expected = expectedLeaf(format, 3, 0x1000, PROT_RWX);
    expect({ lo: leaf.lo, hi: leaf.hi }).toEqual(expected);
    // lo = OA | AF | SH=IS | S2AP=RW | MemAttr=0xF | page
    expect(leaf.lo).toBe(0x1000 | 0x400 | 0x300 | 0xc0 | 0x3c | 3);
    expect(leaf.hi).toBe(0);
    checkRefcounts(pgt, pool);
  });

  it('chooses the largest block that fits range and alignment', () => {
    const { pgt, mc } = setup();
    expect(pgt.map(G1, G1, G1, PROT_RW, mc)).toBe(0);
    expect(pgt.getLeaf(G1 + 0x1234000).level).toBe(1);
    expect(pgt.map(2 * G1, M2, 2 * G1, PROT_RW, mc)).toBe(0);
    expect(pgt.getLeaf(2 * G1).level).toBe(2);
    // A physical offset that is not 2M aligned forces pages.
    expect(pgt.map(3 * G1, M2, 3 * G1 + K4, PROT_RW, mc)).toBe(0);
    expect(pgt.getLeaf(3 * G1).level).toBe(3);
    const d = decodeS2Descriptor(pgt.format, pgt.getLeaf(3 * G1 + 5 * K4).lo, pgt.getLeaf(3 * G1 + 5 * K4).hi, 3);
    expect(d.kind === 'page' && d.oa).toBe(3 * G1 + 6 * K4);
  });

  it('leaves an identical or permission-only remap untouched (-EAGAIN swallowed)', () => {
    const { pgt, mc, memory } = setup();
    expect(pgt.map(0, K4, 0, PROT_RW, mc)).toBe(0);
    let stores = 0;
    memory.storeObserver = () => stores++;
    expect(pgt.map(0, K4, 0, PROT_R, mc)).toBe(0);
    expect(stores).toBe(0);
    expect(pgt.map(0, K4, 0, PROT_R, mc, WALK_HANDLE_FAULT)).toBe(-EAGAIN);
    expect(pgt.getLeaf(0).lo & 0xc0).toBe(0xc0);
  });

  it('breaks a block that cannot be kept whole and leaves the rest unmapped', () => {
    const { pgt, mc, calls, pool } = setup();
    pgt.map(M2, M2, M2, PROT_RW, mc);
    calls.length = 0;
    expect(pgt.map(M2 + K4, K4, 0x5000, PROT_RW, mc)).toBe(0);
    expect(calls).toEqual([{ op: 'ipa', ipa: M2 + K4, level: 2 }]);
    expect(pgt.getLeaf(M2 + K4).level).toBe(3);
    expect(pgt.getLeaf(M2).lo).toBe(0);
    expect(pgt.getLeaf(M2 + 2 * K4).lo).toBe(0);
    checkRefcounts(pgt, pool);
  });

  it('replaces a table by a block, invalidating the table span and freeing the subtree', () => {
    const { pgt, mc, calls, pool } = setup();
    pgt.map(M2, K4, M2, PROT_RW, mc);
    const before = pool.allocatedBytes;
    calls.length = 0;
    expect(pgt.map(M2, M2, M2, PROT_RW, mc)).toBe(0);
    expect(calls).toEqual([{ op: 'range', addr: M2, size: M2 }]);
    expect(pgt.getLeaf(M2).level).toBe(2);
    expect(pool.allocatedBytes).toBe(before - K4);
    checkRefcounts(pgt, pool);
  });

  it('rejects bad arguments with the kernel codes', () => {
    const { pgt, mc } = setup({ idmap: true });
    expect(pgt.map(0, K4, K4, PROT_RW, mc)).toBe(-EINVAL);
    expect(pgt.map(0, K4, 0, PROT_DEVICE | PROT_X, mc)).toBe(-EINVAL);
    expect(pgt.map(0, K4, 0, PROT_PX | PROT_RW, mc)).toBe(-EINVAL);
    expect(pgt.map(2 ** 41, K4, 2 ** 41, PROT_RW, mc)).toBe(-ERANGE);
    expect(pgt.map(0, K4, 0, PROT_RW, null)).toBe(-ENOMEM);
  });

  it('encodes FEAT_XNX execute permissions in XN[1:0]', () => {
    const { pgt, mc } = setup({ format: s2Format(GRANULE_4K, { xnx: true }) });
    const xnOf = (addr: number) => (pgt.getLeaf(addr).hi >>> 21) & 3;
    pgt.map(0, K4, 0, PROT_R | PROT_X, mc);
    pgt.map(K4, K4, K4, PROT_R | PROT_UX, mc);
    pgt.map(2 * K4, K4, 2 * K4, PROT_R, mc);
    pgt.map(3 * K4, K4, 3 * K4, PROT_R | PROT_PX, mc);
    expect([xnOf(0), xnOf(K4), xnOf(2 * K4), xnOf(3 * K4)]).toEqual([0b00, 0b01, 0b10, 0b11]);
  });

  it('maps 64K-granule blocks of 512M', () => {
    const { pgt, mc } = setup({ format: s2Format(GRANULE_64K), iaBits: 40 });
    expect(pgt.map(0x2000_0000, 0x2000_0000, 0x2000_0000, PROT_RW, mc)).toBe(0);
    expect(pgt.getLeaf(0x2000_0000).level).toBe(2);
    expect(levelSize(GRANULE_64K, 2)).toBe(0x2000_0000);
  });
});

describe('KvmPgtable annotate, unmap, split, permissions', () => {
  it('annotates page-granular, breaking a block in the way', () => {
    const { pgt, mc, calls, pool } = setup();
    pgt.map(G1, G1, G1, PROT_RW, mc);
    calls.length = 0;
    const note = encodeTypedAnnotation(2, 1, u64(0, 0));
    expect(pgt.annotate(G1 + M2 + K4, K4, mc, note)).toBe(0);
    expect(calls).toEqual([{ op: 'ipa', ipa: G1 + M2 + K4, level: 1 }]);
    const leaf = pgt.getLeaf(G1 + M2 + K4);
    expect(leaf.level).toBe(3);
    expect(decodeInvalidEntry(pgt.format, leaf.lo, leaf.hi)).toMatchObject({ kind: 'annotation', type: 2, owner: 1 });
    expect(pgt.getLeaf(G1).lo).toBe(0);
    checkRefcounts(pgt, pool);
    expect(pgt.annotate(0, K4, mc, u64(1, 0))).toBe(-EINVAL);
  });

  it('unmaps a partly covered block entirely and frees tables that become empty', () => {
    const { pgt, mc, calls, pool } = setup();
    const empty = pool.allocatedBytes;
    pgt.map(M2, M2, M2, PROT_RW, mc);
    pgt.map(G1 + K4, K4, 0x9000, PROT_RW, mc);
    calls.length = 0;
    expect(pgt.unmap(M2 + M2 / 2, K4)).toBe(0);
    expect(pgt.getLeaf(M2).lo).toBe(0);
    expect(calls).toEqual([
      { op: 'ipa', ipa: M2 + M2 / 2, level: 2 },
      // TABLE_POST sees the address at which the walk reached the table, not its base.
      { op: 'ipa', ipa: M2 + M2 / 2, level: TLBI_TTL_UNKNOWN },
    ]);
    expect(pgt.unmap(G1, G1)).toBe(0);
    expect(pool.allocatedBytes).toBe(empty);
    checkRefcounts(pgt, pool);
  });

  it('unmap clears annotations without invalidation', () => {
    const { pgt, mc, calls, pool } = setup();
    pgt.annotate(0, 2 * K4, mc, encodeTypedAnnotation(2, 1, u64(5, 0)));
    calls.length = 0;
    expect(pgt.unmap(0, 2 * K4)).toBe(0);
    expect(calls.filter((c) => c.op === 'ipa' && c.level !== TLBI_TTL_UNKNOWN)).toEqual([]);
    expect(pgt.getLeaf(0).lo).toBe(0);
    checkRefcounts(pgt, pool);
  });

  it('splits a 1G block down to pages when the memcache allows', () => {
    const { pgt, mc, pool, format } = setup();
    pgt.map(G1, G1, G1, PROT_RW, mc);
    expect(pgt.split(G1, G1, mc)).toBe(0);
    const leaf = pgt.getLeaf(G1 + 0x12345000);
    expect(leaf.level).toBe(3);
    expect({ lo: leaf.lo, hi: leaf.hi }).toEqual(expectedLeaf(format, 3, G1 + 0x12345000, PROT_RW));
    checkRefcounts(pgt, pool);
  });

  it('splits a 1G block into 2M blocks first when the memcache is short, then runs out', () => {
    const { pgt, mc, pool } = setup({ poolBytes: 16 * K4 });
    pgt.map(G1, G1, G1, PROT_RW, mc);
    const available = mc.available();
    expect(pgt.split(G1, G1, mc)).toBe(-ENOMEM);
    // One L2 table, then one L3 table per 2M block until the cache is empty.
    expect(pgt.getLeaf(G1).level).toBe(3);
    expect(pgt.getLeaf(G1 + (available - 2) * M2).level).toBe(3);
    expect(pgt.getLeaf(G1 + (available - 1) * M2).level).toBe(2);
    checkRefcounts(pgt, pool);
  });

  it('write-protects without invalidating, relaxes with a local invalidation', () => {
    const { pgt, mc, calls } = setup();
    pgt.map(M2, M2, M2, PROT_RW, mc);
    calls.length = 0;
    expect(pgt.wrprotect(M2, M2)).toBe(0);
    expect(pgt.getLeaf(M2).lo & 0x80).toBe(0);
    expect(calls).toEqual([]);
    expect(pgt.relaxPerms(M2 + K4, PROT_W)).toBe(0);
    expect(pgt.getLeaf(M2).lo & 0x80).toBe(0x80);
    expect(calls).toEqual([{ op: 'nsh', ipa: M2 + K4, level: 2 }]);
    expect(pgt.relaxPerms(M2, 1 << PROT_SW_SHIFT)).toBe(-EINVAL);
    expect(pgt.relaxPerms(5 * G1, PROT_R, WALK_HANDLE_FAULT)).toBe(-EAGAIN);
  });

  it('tracks and clears the access flag', () => {
    const { pgt, mc } = setup();
    pgt.map(0, K4, 0, PROT_RW, mc);
    expect(pgt.testClearYoung(0, K4, true)).toBe(true);
    expect(pgt.testClearYoung(0, K4, false)).toBe(false);
    expect(pgt.mkyoung(0)).toBe(0);
    expect(pgt.testClearYoung(0, K4, false)).toBe(true);
  });

  it('destroy frees every table page', () => {
    const { pgt, mc, pool } = setup();
    pgt.map(0, 64 * K4, 0x1000, PROT_RW, mc);
    pgt.map(G1, M2, G1, PROT_RW, mc);
    pgt.annotate(2 * G1, K4, mc, encodeTypedAnnotation(2, 1, u64(0, 0)));
    expect(pool.allocatedBytes).toBeGreaterThan(2 * K4);
    pgt.destroy();
    expect(pool.allocatedBytes).toBe(0);
  });
});

describe('KvmPgtable malformed tables', () => {
  it('reports a fault for a table pointer into MMIO or outside memory, never throws', () => {
    for (const target of [0x1_0000_0000, 0x7000_0000_0000]) {
      const { pgt, mc, memory, format } = setup();
      const bad = encodeTableDesc(format, target);
      memory.store64(pgt.pgd, bad.lo, bad.hi);
      expect(pgt.map(0, K4, 0, PROT_RW, mc)).toBe(-EFAULT);
      expect(pgt.getLeaf(0).ret).toBe(-EFAULT);
      expect(pgt.unmap(0, G1)).toBe(-EFAULT);
    }
  });

  it('terminates on a table that points to itself', () => {
    const { pgt, mc, memory, format } = setup();
    pgt.map(0, K4, 0, PROT_RW, mc);
    const l2 = dumpTable(memory, pgt.root()).tables.find((t) => t.level === 2);
    expect(l2).toBeDefined();
    const loop = encodeTableDesc(format, (l2 as { pa: number }).pa);
    memory.store64((l2 as { pa: number }).pa + 8, loop.lo, loop.hi);
    // Levels bound the recursion: the cycle is walked at most down to level 3.
    expect(() => pgt.getLeaf(M2)).not.toThrow();
    expect(dumpTable(memory, pgt.root()).faults.length).toBe(1);
  });
});

// --- A reference of what should be mapped, as leaf extents, and random operation sequences ---

type Extent =
  | { readonly ia: number; readonly size: number; readonly kind: 'leaf'; readonly pa: number; readonly prot: number }
  | { readonly ia: number; readonly size: number; readonly kind: 'note'; readonly lo: number; readonly hi: number };

type Op =
  | { kind: 'map'; addr: number; size: number; phys: number; prot: number }
  | { kind: 'annotate'; addr: number; size: number; owner: number }
  | { kind: 'unmap'; addr: number; size: number }
  | { kind: 'split'; addr: number; size: number };

const PERMS = PROT_R | PROT_W | PROT_X;

class ReferenceTable {
  extents: Extent[] = [];

  private decompose(start: number, end: number, phys: number): { ia: number; size: number; pa: number }[] {
    const out: { ia: number; size: number; pa: number }[] = [];
    for (let a = start; a < end; ) {
      let chosen = K4;
      for (const span of [G1, M2]) {
        if (a % span === 0 && (phys + (a - start)) % span === 0 && a + span <= end) {
          chosen = span;
          break;
        }
      }
      out.push({ ia: a, size: chosen, pa: phys + (a - start) });
      a += chosen;
    }
    return out;
  }

  private replace(start: number, end: number, fresh: Extent[], keepIdentical: (old: Extent, n: Extent) => boolean): void {
    const overlapping = this.extents.filter((e) => e.ia < end && start < e.ia + e.size);
    const kept = this.extents.filter((e) => !(e.ia < end && start < e.ia + e.size));
    const byIa = new Map(overlapping.map((e) => [e.ia, e]));
    for (const n of fresh) {
      const old = byIa.get(n.ia);
      kept.push(old !== undefined && old.size === n.size && keepIdentical(old, n) ? old : n);
    }
    this.extents = kept.sort((a, b) => a.ia - b.ia);
  }

  apply(op: Op): void {
    const start = op.addr - (op.addr % K4);
    const end = Math.ceil((start + op.size) / K4) * K4;
    switch (op.kind) {
      case 'map': {
        const fresh: Extent[] = this.decompose(start, end, op.phys).map((l) => ({ ...l, kind: 'leaf', prot: op.prot }));
        this.replace(start, end, fresh, (o, n) => o.kind === 'leaf' && n.kind === 'leaf' && o.pa === n.pa && (o.prot & ~PERMS) === (n.prot & ~PERMS));
        return;
      }
      case 'annotate': {
        const note = encodeTypedAnnotation(2, op.owner, u64(0, 0));
        const fresh: Extent[] = [];
        if (op.owner !== 0) for (let a = start; a < end; a += K4) fresh.push({ ia: a, size: K4, kind: 'note', lo: note.lo, hi: note.hi });
        this.replace(start, end, fresh, () => false);
        return;
      }
      case 'unmap':
        this.extents = this.extents.filter((e) => !(e.ia < end && start < e.ia + e.size));
        return;
      case 'split': {
        const next: Extent[] = [];
        for (const e of this.extents) {
          if (e.kind === 'leaf' && e.size > K4 && e.ia < end && start < e.ia + e.size) {
            for (let o = 0; o < e.size; o += K4) next.push({ ia: e.ia + o, size: K4, kind: 'leaf', pa: e.pa + o, prot: e.prot });
          } else {
            next.push(e);
          }
        }
        this.extents = next;
        return;
      }
      default: {
        const impossible: never = op;
        throw new Error(String(impossible));
      }
    }
  }
}

function levelOfSize(size: number): number {
  return size === G1 ? 1 : size === M2 ? 2 : 3;
}

const addrArb = fc
  .tuple(fc.integer({ min: 0, max: 3 }), fc.constantFrom(0, 1, 2, 511), fc.constantFrom(0, 1, 2, 511))
  .map(([g, m, p]) => g * G1 + m * M2 + p * K4);
const sizeArb = fc.constantFrom(K4, 2 * K4, M2, M2 + K4, 2 * M2, G1, G1 + M2);
const protArb = fc.constantFrom(PROT_RW, PROT_R, PROT_RWX, PROT_RW | (1 << PROT_SW_SHIFT));
// A 1G range mapped with pages means 262,144 entries; it is exercised by the split unit test,
// so generated 1G maps use block-aligned physical offsets to keep each run fast.
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('map' as const), addr: addrArb, size: sizeArb, phys: fc.constantFrom(0, K4, M2), prot: protArb }).map((o) => ({ ...o, phys: o.addr + (o.size >= G1 && o.phys === K4 ? M2 : o.phys) })) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('annotate' as const), addr: addrArb, size: fc.constantFrom(K4, 2 * K4, 16 * K4), owner: fc.constantFrom(0, 1, 2) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('unmap' as const), addr: addrArb, size: sizeArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('split' as const), addr: addrArb, size: fc.constantFrom(K4, M2) }) },
);

function runOp(pgt: KvmPgtable, mc: Parameters<KvmPgtable['split']>[2], op: Op): number {
  switch (op.kind) {
    case 'map':
      return pgt.map(op.addr, op.size, op.phys, op.prot, mc);
    case 'annotate':
      return pgt.annotate(op.addr, op.size, mc, op.owner === 0 ? u64(0, 0) : encodeTypedAnnotation(2, op.owner, u64(0, 0)));
    case 'unmap':
      return pgt.unmap(op.addr, op.size);
    case 'split':
      return pgt.split(op.addr, op.size, mc);
    default: {
      const impossible: never = op;
      throw new Error(String(impossible));
    }
  }
}

function checkSequence(ops: Op[], run: typeof runOp): void {
  const { pgt, mc, pool, format, monitor } = setup({ monitor: true, poolBytes: 0x800_0000 });
  const ref = new ReferenceTable();
  for (const op of ops) {
    expect(run(pgt, mc, op), JSON.stringify(op)).toBe(0);
    monitor?.finish(op.kind);
    ref.apply(op);
  }
  const actual = dumpTable(pgt.memory, pgt.root()).entries.map((e) => ({ ia: e.ia, level: e.level, lo: e.lo, hi: e.hi }));
  const expected = ref.extents.map((e) => {
    const level = levelOfSize(e.size);
    const word = e.kind === 'leaf' ? expectedLeaf(format, level, e.pa, e.prot) : { lo: e.lo, hi: e.hi };
    return { ia: e.ia, level, lo: word.lo, hi: word.hi };
  });
  expect(actual.length).toBe(expected.length);
  expect(actual).toEqual(expected);
  checkRefcounts(pgt, pool);
  expect(monitor?.violations).toEqual([]);
}

describe('KvmPgtable against a reference of what should be mapped', () => {
  it('random map / unmap / annotate / split sequences', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 12 }), (ops) => checkSequence(ops, runOp)),
      { seed: 0x5eed, numRuns: 100 },
    );
  });

  it('fails for an injected bug: unmap that only removes the first page of its range', () => {
    const buggy: typeof runOp = (pgt, mc, op) => (op.kind === 'unmap' ? pgt.unmap(op.addr, K4) : runOp(pgt, mc, op));
    const result = fc.check(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 12 }), (ops) => checkSequence(ops, buggy)),
      { seed: 0x5eed, numRuns: 200 },
    );
    expect(result.failed).toBe(true);
  });
});

describe('break-before-make monitor', () => {
  it('accepts KVM sequences and catches a dropped invalidation', () => {
    const ok = setup({ monitor: true });
    ok.pgt.map(M2, M2, M2, PROT_RW, ok.mc);
    ok.pgt.map(M2 + K4, K4, K4, PROT_RW, ok.mc);
    ok.monitor?.finish('map');
    expect(ok.monitor?.violations).toEqual([]);

    // Injected bug: a TLB whose by-IPA invalidation does nothing.
    const broken = setup({ monitor: true });
    const tlb = broken.pgt.tlb as Stage2Tlb;
    const original = tlb.flushVmidIpa;
    tlb.flushVmidIpa = () => undefined;
    broken.pgt.map(M2, M2, M2, PROT_RW, broken.mc);
    broken.pgt.map(M2 + K4, K4, K4, PROT_RW, broken.mc);
    broken.monitor?.finish('map');
    expect(broken.monitor?.violations.join('\n')).toMatch(/made valid before the old translation was invalidated/);
    broken.pgt.unmap(M2 + K4, K4);
    broken.monitor?.finish('unmap');
    expect(broken.monitor?.violations.join('\n')).toMatch(/removed without invalidation/);
    tlb.flushVmidIpa = original;
  });

  it('catches a wrong level hint and a valid-to-valid replacement', () => {
    const s = setup({ monitor: true });
    const tlb = s.pgt.tlb as Stage2Tlb;
    const inner = tlb.flushVmidIpa;
    tlb.flushVmidIpa = (ipa, level) => inner(ipa, level === 2 ? 3 : level);
    // Two blocks in one level-2 table: unmapping one leaves the table, so only the hinted
    // leaf invalidation can remove the stale block.
    s.pgt.map(M2, 2 * M2, M2, PROT_RW, s.mc);
    s.pgt.unmap(M2, M2);
    s.monitor?.finish('unmap');
    expect(s.monitor?.violations.length).toBe(1);

    const t = setup({ monitor: true });
    t.pgt.map(0, K4, 0, PROT_RW, t.mc);
    const leaf = dumpTable(t.memory, t.pgt.root()).entries[0] as { ptep: number; lo: number; hi: number };
    // Redirect the page to another frame in one store: the monitor must object.
    t.memory.store64(leaf.ptep, (leaf.lo + K4) >>> 0, leaf.hi);
    expect(t.monitor?.violations.join('\n')).toMatch(/without break-before-make/);
  });
});
