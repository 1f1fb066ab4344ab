import { describe, expect, it } from 'vitest';
import { PhysicalMemory } from '../../impl/arch/physical-memory.js';
import { STE_CONFIG, encodeSte, steFields } from '../../impl/arch/smmu/ste.js';
import { type U64 } from '../../impl/arch/u64.js';
import { type HypSmmuDriver } from '../../impl/hyp/smmu-driver/driver.js';
import { type EntryAccess, writeEntry } from '../../impl/hyp/smmu-driver/ste-writer.js';
import { SteUpdateMonitor } from './ste-update.js';

const TABLE = 0x8000_0000;
const s2 = encodeSte(steFields({ v: true, config: STE_CONFIG.S2_TRANS, s2vmid: 0, s2t0sz: 28, s2sl0: 1, s2ps: 2, s2aa64: true, s2r: true, s2ttb: 0x8100_0000, shcfg: 1 }));
const nested = encodeSte(
  steFields({ v: true, config: STE_CONFIG.NESTED, s1ContextPtr: 0x9000_0000, s1cir: 1, s1cor: 1, s1csh: 3, s2vmid: 0, s2t0sz: 28, s2sl0: 1, s2ps: 2, s2aa64: true, s2r: true, s2ttb: 0x8100_0000, s1dss: 1, shcfg: 1 }),
);
const abort = encodeSte(steFields({ v: true, config: STE_CONFIG.ABORT }));

function setup(sid: number, initial: readonly U64[]) {
  const memory = new PhysicalMemory([{ name: 'ram', kind: 'ram', base: TABLE, size: 0x1000 }]);
  const at = TABLE + sid * 64;
  initial.forEach((w, i) => memory.store64(at + i * 8, w.lo, w.hi));
  const driver = { strtab: { base: TABLE, fmt: 0, log2size: 4, l2: new Map<number, number>() } } as unknown as HypSmmuDriver;
  const monitor = new SteUpdateMonitor(memory, driver);
  const access: EntryAccess = { read: (i) => memory.peek64(at + i * 8), write: (i, v) => memory.store64(at + i * 8, v.lo, v.hi) };
  return { memory, monitor, access };
}

/** Every differing qword in order, one sync at the end: what a writer without §2.8 does. */
function naiveWrite(access: EntryAccess, target: readonly U64[]): void {
  target.forEach((t, i) => {
    const c = access.read(i);
    if (c.lo !== t.lo || c.hi !== t.hi) access.write(i, t);
  });
}

describe('hitless STE update monitor', () => {
  for (const [from, to, name] of [
    [s2, nested, 'stage 2 → nested'],
    [abort, nested, 'abort → nested'],
  ] as const) {
    it(`accepts the hitless writer and flags a naive one: ${name}`, () => {
      const good = setup(3, from);
      writeEntry(good.access, to, () => undefined);
      expect(good.monitor.finish()).toEqual([]);
      const bad = setup(3, from);
      naiveWrite(bad.access, to);
      // Qword 0 (the new configuration) lands while qword 1 still holds the old S1 attributes.
      expect(bad.monitor.finish().join('\n')).toMatch(/STE at 0x800000c0 passed through a state \(store 1 of [24]\) .* not a hitless update/);
    });
  }

  for (const [from, to, name] of [
    [nested, s2, 'nested → stage 2'],
    [s2, abort, 'stage 2 → abort'],
  ] as const) {
    it(`does not flag an in-order write that happens to be hitless: ${name}`, () => {
      // Qword 0 first switches to a configuration whose used bits already hold their final values.
      const t = setup(3, from);
      naiveWrite(t.access, to);
      expect(t.monitor.finish()).toEqual([]);
    });
  }

  it('accepts the breaking path (V = 0 first), ignores stores outside the table, and starts each step afresh', () => {
    const t = setup(1, s2);
    t.memory.store64(TABLE + 0x800 + 64 * 16, 1, 0); // beyond the 16-entry table
    t.access.write(0, { lo: 0, hi: 0 });
    for (let i = 1; i < 8; i++) t.access.write(i, nested[i] as U64);
    t.access.write(0, nested[0] as U64);
    expect(t.monitor.finish()).toEqual([]);
    expect(t.monitor.finish()).toEqual([]);
    t.monitor.detach();
    expect(t.memory.storeObserver).toBeNull();
  });
});
