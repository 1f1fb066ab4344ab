import { describe, expect, it } from 'vitest';
import { type CacheObserver, type CachedEntry, type RemovalCause } from './cache-observer.js';
import { CMD_SYNC, DATA, SmmuBench, s2SteFields, tlbiIpa } from './testing.js';
import { type SmmuMode } from './smmu.js';

const M2 = 0x20_0000;

/** Records what the observer is told: fills, and removals with the cause in effect. */
class Recorder implements CacheObserver {
  readonly live = new Set<object>();
  readonly log: string[] = [];
  private cause: RemovalCause | undefined;
  filled(e: CachedEntry): void {
    this.live.add(e.entry);
    this.log.push(`+${e.cache}`);
  }
  dropped(e: CachedEntry): void {
    expect(this.live.delete(e.entry), `${e.cache} removed without a fill`).toBe(true);
    this.log.push(`-${e.cache} by ${this.cause === undefined ? 'the hardware' : this.cause.kind === 'evict' ? 'evict' : this.cause.command.kind}`);
  }
  removing(cause: RemovalCause): void {
    this.cause = cause;
  }
  removed(): void {
    this.cause = undefined;
  }
}

function bench(mode: SmmuMode) {
  const b = new SmmuBench({ mode });
  const root = b.allocTable();
  for (let i = 0; i < 4; i++) b.map(root, 1, 0x4000_0000 + i * 0x1000, 3, DATA + i * 0x1000);
  b.map(root, 1, 0x4000_0000 + M2, 2, DATA + M2);
  b.writeSte(1, s2SteFields({ vmid: 1, ttb: root }));
  return b;
}

/** Every entry the SMMU holds, by identity-free shape (the observer's live set must match in number). */
function held(b: SmmuBench): number {
  const s = b.smmu;
  return s.cachedTranslations().length + s.walkCacheEntries().length + s.configCacheEntries().length + s.cachedS1Translations().length + s.s1WalkCacheEntries().length + s.cachedCds().length;
}

describe('SMMU cache observer', () => {
  for (const mode of ['strict', 'permissive'] as const) {
    it(`${mode}: told of every fill and removal, each removal under the invalidation or eviction that made it`, () => {
      const b = bench(mode);
      const r = new Recorder();
      b.smmu.observeCaches(r);
      for (let i = 0; i < 4; i++) expect(b.smmu.translate(1, 0x4000_0000 + i * 0x1000, 'read')).toMatchObject({ kind: 'ok' });
      b.smmu.translate(1, 0x4000_0000 + M2 + 0x10, 'write');
      b.smmu.speculativeFill(1, 0x4000_2000);
      expect(r.live.size).toBe(held(b));
      b.run(tlbiIpa(1, 0x4000_1000, { leaf: true }), CMD_SYNC);
      expect(r.log.filter((l) => l.startsWith('-tlb'))).toEqual(['-tlb by TLBI_S2_IPA']);
      b.smmu.evict({ cache: 'tlb', select: 0 });
      expect(r.log.at(-1)).toBe('-tlb by evict');
      b.run({ kind: 'CFGI_STE', ssec: false, sid: 1, leaf: false }, CMD_SYNC);
      expect(r.log.filter((l) => l.startsWith('-ste'))).toEqual(['-ste by CFGI_STE']);
      b.run({ kind: 'TLBI_S12_VMALL', vmid: 1 }, CMD_SYNC);
      expect(r.log.filter((l) => / by TLBI_S12_VMALL$/.test(l)).length).toBeGreaterThan(0);
      expect(r.live.size).toBe(held(b));
      b.smmu.translate(1, 0x4000_0000, 'read');
      b.smmu.evict({ cache: 'all' });
      expect(r.live.size).toBe(0);
      expect(held(b)).toBe(0);
    });
  }

  it('permissive: a TLB full at QEMU\u2019s 256 entries is flushed by the hardware, outside any invalidation', () => {
    const b = new SmmuBench({ mode: 'permissive' });
    const root = b.allocTable();
    for (let i = 0; i < 300; i++) b.map(root, 1, 0x4000_0000 + i * 0x1000, 3, DATA + i * 0x1000);
    b.writeSte(1, s2SteFields({ vmid: 1, ttb: root }));
    const r = new Recorder();
    b.smmu.observeCaches(r);
    for (let i = 0; i < 300; i++) b.smmu.translate(1, 0x4000_0000 + i * 0x1000, 'read');
    expect(r.log.filter((l) => l === '-tlb by the hardware')).toHaveLength(256);
    expect(r.live.size).toBe(held(b));
  });

  it('without an observer the caches behave the same (one null check per fill and removal)', () => {
    const run = (observe: boolean) => {
      const b = bench('strict');
      if (observe) b.smmu.observeCaches(new Recorder());
      for (let i = 0; i < 4; i++) b.smmu.translate(1, 0x4000_0000 + i * 0x1000, 'read');
      b.run(tlbiIpa(1, 0x4000_1000, { leaf: false }), CMD_SYNC);
      return [b.smmu.cachedTranslations(), b.smmu.walkCacheEntries(), b.smmu.configCacheEntries()];
    };
    expect(run(true)).toEqual(run(false));
  });
});
