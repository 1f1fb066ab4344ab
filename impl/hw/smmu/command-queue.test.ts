import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { type Command, CS_IRQ, CS_NONE, CS_SEV, checkCommand, decodeCommand, encodeCommand } from '../../arch/smmu/commands.js';
import { CERROR_ABT, CERROR_ILL, CR0_CMDQEN, CR0_EVTQEN, CR0_SMMUEN, GERROR_BIT } from '../../arch/smmu/registers.js';
import { type U64, u64 } from '../../arch/u64.js';
import { commandFeatures, resolveFeatures } from './features.js';
import { CMDQ, CMD_SYNC, MSI_TARGET, SmmuBench, tlbiIpa } from './testing.js';

const sync = (cs: number, msiaddr = 0, msidata = 0): Command => ({ kind: 'CMD_SYNC', cs, msh: 3, msiattr: 0xf, msidata, msiaddr });

describe('command queue consumer', () => {
  it('consumes nothing while CMDQEN = 0, one command per step otherwise', () => {
    const b = new SmmuBench({ noEnable: true });
    b.submit(CMD_SYNC, CMD_SYNC);
    expect(b.smmu.consumeOneCommand()).toEqual({ kind: 'idle', reason: 'disabled' });
    b.reg('CR0', CR0_SMMUEN | CR0_EVTQEN);
    expect(b.smmu.consumeOneCommand()).toEqual({ kind: 'idle', reason: 'disabled' });
    expect(b.read('CMDQ_CONS')).toBe(0);
    b.reg('CR0', CR0_SMMUEN | CR0_EVTQEN | CR0_CMDQEN);
    expect(b.smmu.consumeOneCommand()).toMatchObject({ kind: 'consumed', index: 0 });
    expect(b.read('CMDQ_CONS')).toBe(1);
    expect(b.smmu.consumeOneCommand()).toMatchObject({ kind: 'consumed', index: 1 });
    expect(b.smmu.consumeOneCommand()).toEqual({ kind: 'idle', reason: 'empty' });
  });

  const illegal: [string, U64[], Partial<Parameters<typeof resolveFeatures>[0]>?][] = [
    ['a reserved opcode', [u64(0x7f, 0), u64(0, 0)]],
    ['an IMPLEMENTATION DEFINED opcode', [u64(0x85, 0), u64(0, 0)]],
    ['a Secure-only TLBI', [u64(0x5a, 0), u64(0, 0)]],
    ['TLBI_S2_IPA with TG != 0 and NUM = SCALE = TTL = 0', encodeCommand(tlbiIpa(1, 0x1000, { tg: 1, ttl: 3 })).map((w, i) => (i === 1 ? u64(w.lo & ~0x300, w.hi) : w))],
    ['TLBI_S2_IPA 16K with TTL = 1 and NUM = SCALE = 0 (DS = 0)', encodeCommand(tlbiIpa(1, 0x4000, { tg: 2, ttl: 1 }))],
    ['CMD_SYNC with CS = 0b11', [u64(0x46 | (3 << 12), 0), u64(0, 0)]],
    ['CFGI_STE with SSec = 1', [u64(0x03 | (1 << 10), 0), u64(0, 0)]],
    ['ATC_INV with Size 53', [u64(0x40, 0), u64(53, 0)]],
    ['ATC_INV on an SMMU without ATS', encodeCommand({ kind: 'ATC_INV', sid: 0, ssv: false, ssid: 0, global: false, size: 0, address: u64(0, 0) }), { ats: false }],
    ['TLBI_NH_ALL on an SMMU without stage 1', encodeCommand({ kind: 'TLBI_NH_ALL', vmid: 0 }), { s1p: false }],
    ['PRI_RESP (no PRI)', encodeCommand({ kind: 'PRI_RESP', sid: 0, ssv: false, ssid: 0, grpid: 0, resp: 0 })],
    ['RESUME (terminate-only stall model)', encodeCommand({ kind: 'RESUME', sid: 0, ssec: false, ac: false, ab: false, stag: 0 })],
  ];
  for (const [name, words, features] of illegal) {
    it(`CERROR_ILL for ${name}: CONS stays on it with ERR = ILL and later commands wait`, () => {
      const b = new SmmuBench({ features: features ?? {} });
      b.submit(CMD_SYNC);
      b.submitWords(words);
      b.submit(CMD_SYNC);
      const out = b.drain();
      expect(out.map((o) => o.kind)).toEqual(['consumed', 'error']);
      expect(out[1]).toMatchObject({ cerror: CERROR_ILL, index: 1 });
      expect(b.read('CMDQ_CONS')).toBe((CERROR_ILL << 24) | 1);
      expect(b.read('GERROR') ^ b.read('GERRORN')).toBe(GERROR_BIT.CMDQ_ERR);
      expect(b.smmu.consumeOneCommand()).toEqual({ kind: 'idle', reason: 'error_active' });
    });
  }

  it('CERROR_ABT when the command fetch aborts', () => {
    const b = new SmmuBench({ noEnable: true });
    b.reg('CMDQ_BASE', 0x0980_0000 | 4);
    b.reg('CMDQ_PROD', 1);
    b.reg('CR0', CR0_SMMUEN | CR0_CMDQEN);
    expect(b.smmu.consumeOneCommand()).toMatchObject({ kind: 'error', cerror: CERROR_ABT });
    expect(b.read('CMDQ_CONS')).toBe(CERROR_ABT << 24);
  });

  it('the wrap bit toggles each lap; PROD beyond the queue size uses only index and wrap bits', () => {
    const b = new SmmuBench({ cmdqLog2: 2 });
    const seen: number[] = [];
    for (let lap = 0; lap < 3; lap++) {
      b.submit(CMD_SYNC, CMD_SYNC, CMD_SYNC, CMD_SYNC);
      // A full queue: PROD and CONS indices equal, wrap bits different.
      expect((b.read('CMDQ_PROD') ^ b.read('CMDQ_CONS')) & 7).toBe(4);
      b.drain();
      seen.push(b.read('CMDQ_CONS'));
    }
    expect(seen).toEqual([4, 0, 4]);
  });

  it('a full queue becoming non-full sends an SEV when IDR0.SEV', () => {
    const b = new SmmuBench({ cmdqLog2: 1 });
    b.submit(CMD_SYNC, CMD_SYNC);
    b.smmu.consumeOneCommand();
    expect(b.smmu.signals().sev).toBe(1);
  });
});

describe('CMD_SYNC completion signals', () => {
  it('CS = NONE signals nothing; CS = SEV sends an event only with IDR0.SEV', () => {
    const b = new SmmuBench();
    b.run(sync(CS_NONE));
    expect(b.smmu.signals()).toMatchObject({ sev: 0, cmdSyncIrq: 0, cmdSyncMsi: 0 });
    b.run(sync(CS_SEV));
    expect(b.smmu.signals().sev).toBe(1);
    const n = new SmmuBench({ features: { sev: false } });
    n.run(sync(CS_SEV));
    expect(n.smmu.signals().sev).toBe(0);
  });

  it('CS = IRQ writes MSIData to MSIAddr when MSIs exist, and pulses the wired interrupt', () => {
    const b = new SmmuBench();
    b.run(sync(CS_IRQ, MSI_TARGET, 0xcafe_f00d));
    expect(b.memory.read32(MSI_TARGET)).toBe(0xcafe_f00d);
    expect(b.smmu.signals()).toMatchObject({ cmdSyncIrq: 1, cmdSyncMsi: 1 });
    const n = new SmmuBench({ features: { msi: false } });
    n.run(sync(CS_IRQ, MSI_TARGET, 0xcafe_f00d));
    expect(n.memory.read32(MSI_TARGET)).toBe(0);
    expect(n.smmu.signals()).toMatchObject({ cmdSyncIrq: 1, cmdSyncMsi: 0 });
  });

  it('Linux MSI polling: MSIAddr = the CMD_SYNC slot, MSIData = 0 clears the opcode word', () => {
    const b = new SmmuBench();
    b.submit(CMD_SYNC, sync(CS_IRQ, CMDQ + 16, 0));
    expect(b.memory.read32(CMDQ + 16) & 0xff).toBe(0x46);
    b.drain();
    expect(b.memory.read32(CMDQ + 16)).toBe(0);
  });

  it('an aborting MSI raises GERROR.MSI_CMDQ_ABT_ERR and the GERROR interrupt', () => {
    const b = new SmmuBench();
    b.reg('IRQ_CTRL', 1);
    b.run(sync(CS_IRQ, 0x0980_0000, 1));
    expect(b.read('GERROR') & GERROR_BIT.MSI_CMDQ_ABT_ERR).toBe(GERROR_BIT.MSI_CMDQ_ABT_ERR);
    expect(b.smmu.signals().gerrorIrq).toBe(1);
  });
});

const arbCommand: fc.Arbitrary<Command> = fc.oneof(
  fc.constantFrom(0, 1, 2).map((cs) => sync(cs, MSI_TARGET, 7)),
  fc
    .record({ vmid: fc.integer({ min: 0, max: 0xffff }), page: fc.integer({ min: 0, max: 0xfffff }), leaf: fc.boolean(), tg: fc.integer({ min: 0, max: 3 }), ttl: fc.integer({ min: 0, max: 3 }), num: fc.integer({ min: 0, max: 31 }), scale: fc.integer({ min: 0, max: 31 }) })
    .map((r) => tlbiIpa(r.vmid, r.page * 4096, r)),
  fc.integer({ min: 0, max: 0xffff }).map((vmid): Command => ({ kind: 'TLBI_S12_VMALL', vmid })),
  fc.constant<Command>({ kind: 'TLBI_NSNH_ALL' }),
  fc.record({ sid: fc.integer({ min: 0, max: 0xffff }), leaf: fc.boolean() }).map((r): Command => ({ kind: 'CFGI_STE', ssec: false, ...r })),
  fc.record({ sid: fc.integer({ min: 0, max: 0xffff }), range: fc.integer({ min: 0, max: 30 }) }).map((r): Command => ({ kind: 'CFGI_STE_RANGE', ssec: false, ...r })),
  fc.constant<Command>({ kind: 'CFGI_ALL', sid: 0, ssec: false }),
  fc.record({ sid: fc.integer({ min: 0, max: 0xffff }), size: fc.integer({ min: 0, max: 52 }) }).map((r): Command => ({ kind: 'ATC_INV', ssv: false, ssid: 0, global: false, address: u64(0, 0), ...r })),
  fc.integer({ min: 0, max: 0xffff }).map((sid): Command => ({ kind: 'PREFETCH_CONFIG', sid, ssv: false, ssid: 0, ssec: false })),
  fc.integer({ min: 0, max: 0xffff }).map((vmid): Command => ({ kind: 'TLBI_NH_ALL', vmid })),
);

const arbEntry: fc.Arbitrary<U64[]> = fc.oneof(
  { weight: 3, arbitrary: arbCommand.map((c) => encodeCommand(c)) },
  { weight: 2, arbitrary: fc.tuple(fc.nat({ max: 0xffff_ffff }), fc.nat({ max: 0xffff_ffff }), fc.nat({ max: 0xffff_ffff }), fc.nat({ max: 0xffff_ffff })).map(([a, b, c, d]) => [u64(a, b), u64(c, d)]) },
  // Valid opcodes with random operands: the interesting boundary between legal and reserved.
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom(0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x12, 0x20, 0x28, 0x2a, 0x30, 0x40, 0x41, 0x44, 0x46), fc.nat({ max: 0xffff_ff }), fc.nat({ max: 0xffff_ffff }), fc.nat({ max: 0xffff_ffff })).map(([op, a, c, d]) => [u64(op | (a << 8), 0), u64(c, d)]) },
);

describe('random command streams never wedge the consumer', () => {
  it('every illegal command stops the queue with CONS.ERR = ILL; after the GERRORN acknowledge it resumes (fast-check)', () => {
    const features = resolveFeatures({ s1p: false });
    const cmdFeatures = commandFeatures(features);
    fc.assert(
      fc.property(fc.array(arbEntry, { minLength: 1, maxLength: 40 }), fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 20 }), (entries, rhythm) => {
        const b = new SmmuBench({ cmdqLog2: 3, features: { s1p: false } });
        const size = 8;
        let written = 0;
        let consumed = 0;
        let errors = 0;
        const expectIll = entries.map((w) => {
          const d = decodeCommand(w, { ril: true });
          return d.kind === 'illegal' || checkCommand(d, cmdFeatures) !== undefined;
        });
        const illegalCount = expectIll.filter(Boolean).length;
        for (let step = 0; consumed < entries.length; step++) {
          expect(step).toBeLessThan(entries.length * 4 + 20);
          // Produce as much as fits.
          const free = size - (written - consumed);
          for (let k = 0; k < free && written < entries.length; k++) b.submitWords(entries[written++] as U64[]);
          b.publish();
          const burst = rhythm[step % rhythm.length] as number;
          for (let k = 0; k < burst; k++) {
            const o = b.smmu.consumeOneCommand();
            if (o.kind === 'idle') break;
            if (o.kind === 'consumed') {
              expect(expectIll[consumed]).toBe(false);
              consumed++;
              continue;
            }
            errors++;
            expect(o.cerror).toBe(CERROR_ILL);
            expect(expectIll[consumed]).toBe(true);
            expect(b.read('CMDQ_CONS') >>> 24).toBe(CERROR_ILL);
            expect(o.index).toBe(consumed % size);
            expect(b.smmu.consumeOneCommand()).toEqual({ kind: 'idle', reason: 'error_active' });
            // Software's fix: overwrite with CMD_SYNC, then acknowledge.
            const slot = CMDQ + (consumed % size) * 16;
            b.memory.store64(slot, 0x46, 0);
            b.memory.store64(slot + 8, 0, 0);
            expectIll[consumed] = false;
            b.reg('GERRORN', b.read('GERROR'));
            break;
          }
        }
        expect(errors).toBe(illegalCount);
        expect(b.read('CMDQ_CONS') & 0xf).toBe(b.read('CMDQ_PROD') & 0xf);
      }),
      { numRuns: 150 },
    );
  });
});
