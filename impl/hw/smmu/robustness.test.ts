/**
 * Whatever the host writes — to any register of the frame, into the stream table, the queues and
 * the page tables — and whatever devices send, the SMMU model answers with data and never throws.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { REG, SMMU_FRAME_SIZE } from '../../arch/smmu/registers.js';
import { DmaDevice } from '../device.js';
import { CMDQ, EVTQ, SMMU_BASE, STRTAB, SmmuBench, TABLE_POOL } from './testing.js';

const u32 = fc.nat({ max: 0xffff_ffff });
const anyNumber = fc.oneof(fc.nat({ max: 0xffff }), fc.double(), fc.constantFrom(Number.NaN, -1, 2 ** 52, 2 ** 64), fc.nat({ max: 2 ** 48 }));
const regOffsets = Object.values(REG);

type Step =
  | { s: 'reg'; off: number; v: number }
  | { s: 'mem'; area: number; word: number; lo: number; hi: number }
  | { s: 'consume' }
  | { s: 'translate'; sid: number; addr: number; write: boolean }
  | { s: 'fill'; sid: number; addr: number }
  | { s: 'ats'; sid: number; addr: number }
  | { s: 'apply'; i: number }
  | { s: 'evict'; i: number };

const arbStep: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ s: fc.constant('reg' as const), off: fc.oneof(fc.constantFrom(...regOffsets, ...regOffsets.map((o) => o + 4)), fc.nat({ max: SMMU_FRAME_SIZE / 4 - 1 }).map((w) => w * 4)), v: u32 }),
  { weight: 3, arbitrary: fc.record({ s: fc.constant('mem' as const), area: fc.constantFrom(STRTAB, CMDQ, EVTQ, TABLE_POOL), word: fc.nat({ max: 511 }), lo: u32, hi: u32 }) },
  { weight: 3, arbitrary: fc.constant<Step>({ s: 'consume' }) },
  { weight: 2, arbitrary: fc.record({ s: fc.constant('translate' as const), sid: anyNumber, addr: anyNumber, write: fc.boolean() }) },
  fc.record({ s: fc.constant('fill' as const), sid: anyNumber, addr: anyNumber }),
  fc.record({ s: fc.constant('ats' as const), sid: anyNumber, addr: anyNumber }),
  fc.record({ s: fc.constant('apply' as const), i: fc.integer({ min: -1, max: 4 }) }),
  fc.record({ s: fc.constant('evict' as const), i: fc.integer({ min: -1, max: 4 }) }),
);

describe('robustness against host and device inputs', () => {
  for (const mode of ['strict', 'permissive'] as const) {
    it(`${mode}: random register writes, structure contents and transactions never throw (fast-check)`, () => {
      fc.assert(
        fc.property(fc.array(arbStep, { minLength: 5, maxLength: 80 }), (steps) => {
          const b = new SmmuBench({ mode, strtab: { log2: 10, split: 6 } });
          const dev = new DmaDevice(b.smmu, b.memory, { sid: 1, ats: true });
          for (const st of steps) {
            switch (st.s) {
              case 'reg':
                b.memory.write32(SMMU_BASE + st.off, st.v);
                b.memory.read32(SMMU_BASE + st.off);
                break;
              case 'mem':
                b.memory.store64(st.area + st.word * 8, st.lo, st.hi);
                break;
              case 'consume':
                expect(['idle', 'consumed', 'error']).toContain(b.smmu.consumeOneCommand().kind);
                break;
              case 'translate':
                expect(['ok', 'abort']).toContain(b.smmu.translate(st.sid, st.addr, st.write ? 'write' : 'read').kind);
                expect(['completed', 'fault', 'external_abort']).toContain(dev.dmaTranslated(st.addr, 'read').kind);
                break;
              case 'fill':
                b.smmu.speculativeFill(st.sid, st.addr);
                break;
              case 'ats':
                b.smmu.atsTranslationRequest(st.sid, st.addr);
                b.smmu.translatedAccess(st.sid, st.addr, 'write');
                break;
              case 'apply':
                b.smmu.applyPendingInvalidation(st.i);
                break;
              case 'evict':
                b.smmu.evict({ cache: st.i % 2 === 0 ? 'config' : 'tlb', select: st.i });
                break;
              default: {
                const impossible: never = st;
                throw new Error(String(impossible));
              }
            }
          }
          b.smmu.cachedTranslations(1);
          b.smmu.walkCacheEntries();
          b.smmu.configCacheEntries();
          b.smmu.eventLog();
        }),
        { numRuns: 120 },
      );
    });
  }
});
