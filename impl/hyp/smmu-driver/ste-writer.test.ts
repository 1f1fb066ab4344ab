import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { STE_CONFIG, encodeSte, steFields, steMaskWords, steUsedBits } from '../../arch/smmu/ste.js';
import { type U64 } from '../../arch/u64.js';
import { writeEntry } from './ste-writer.js';

const s2 = (vmid: number, ttb: number, eats = 0) =>
  encodeSte(steFields({ v: true, config: STE_CONFIG.S2_TRANS, s2vmid: vmid, s2t0sz: 28, s2sl0: 1, s2tg: 0, s2ps: 2, s2aa64: true, s2r: true, s2ttb: ttb, shcfg: 1, eats }));
const CONFIGS: Record<string, U64[]> = {
  invalid: encodeSte(steFields({})),
  abort: encodeSte(steFields({ v: true, config: STE_CONFIG.ABORT })),
  bypass: encodeSte(steFields({ v: true, config: STE_CONFIG.BYPASS, shcfg: 1 })),
  s2a: s2(0, 0x8000_0000),
  s2b: s2(0, 0x8001_0000),
  s2c: s2(5, 0x8002_0000),
  s2ats: s2(0, 0x8000_0000, 1),
  s1: encodeSte(steFields({ v: true, config: STE_CONFIG.S1_TRANS, s1ContextPtr: 0x9000_0000, s1cdmax: 0, s1dss: 1, shcfg: 1 })),
  nested: encodeSte(steFields({ v: true, config: STE_CONFIG.NESTED, s1ContextPtr: 0x9000_0000, s2vmid: 0, s2t0sz: 28, s2sl0: 1, s2ps: 2, s2aa64: true, s2r: true, s2ttb: 0x8000_0000, s1dss: 1, shcfg: 1 })),
};

/**
 * What the SMMU can make of an entry: its used bits, less the update-safe ones (MEV and the
 * EATS_TRANS bit, which the writer may flip early by design); an invalid entry is "invalid".
 */
function seen(words: readonly U64[]): string {
  if ((words[0]!.lo & 1) === 0) return 'invalid';
  const masked = steMaskWords(words, steUsedBits(words));
  masked[1] = { lo: (masked[1]!.lo & ~((1 << 19) | (1 << 28))) >>> 0, hi: masked[1]!.hi };
  return JSON.stringify(masked);
}

describe('hitless STE writer (§2.8)', () => {
  it('never exposes a mix: every synced intermediate state is the old entry, the new one, or invalid', () => {
    const names = Object.keys(CONFIGS);
    fc.assert(
      fc.property(fc.constantFrom(...names), fc.constantFrom(...names), (from, to) => {
        const entry = CONFIGS[from]!.map((w) => ({ ...w }));
        const target = CONFIGS[to]!;
        const observed: string[] = [];
        const kind = writeEntry(
          { read: (i) => entry[i]!, write: (i, v) => { entry[i] = v; observed.push(seen(entry)); } },
          target,
          () => observed.push('sync'),
        );
        expect(entry).toEqual(target);
        const allowed = new Set([seen(CONFIGS[from]!), seen(target), 'invalid', 'sync']);
        for (const o of observed) expect(allowed.has(o), `${from}→${to} exposed ${o}`).toBe(true);
        if (from === to) expect(kind).toBe('unchanged');
        if (kind !== 'unchanged') expect(observed.at(-1)).toBe('sync');
      }),
      { seed: 9, numRuns: 200 },
    );
  });

  it('changes the S2 table pointer hitlessly, breaks a change of VMID and table together', () => {
    const entry = CONFIGS.s2a!.map((w) => ({ ...w }));
    let syncs = 0;
    expect(writeEntry({ read: (i) => entry[i]!, write: (i, v) => (entry[i] = v) }, CONFIGS.s2b!, () => syncs++)).toBe('hitless');
    expect(syncs).toBe(1);
    const e2 = CONFIGS.s2a!.map((w) => ({ ...w }));
    const order: number[] = [];
    expect(writeEntry({ read: (i) => e2[i]!, write: (i, v) => { order.push(i); e2[i] = v; } }, CONFIGS.s2c!, () => undefined)).toBe('breaking');
    // V=0 first, then the body, then qword 0 again.
    expect(order[0]).toBe(0);
    expect(order.at(-1)).toBe(0);
  });
});
