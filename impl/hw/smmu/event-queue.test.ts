import { describe, expect, it } from 'vitest';
import { CR0_CMDQEN, CR0_EVTQEN, CR0_SMMUEN, GERROR_BIT } from '../../arch/smmu/registers.js';
import { MSI_TARGET, SmmuBench, s2SteFields } from './testing.js';

function faulting(evtqLog2: number): SmmuBench {
  const b = new SmmuBench({ evtqLog2 });
  b.writeSte(1, s2SteFields({ vmid: 1, ttb: b.allocTable() }));
  return b;
}

const ovflg = (b: SmmuBench): number => b.read('EVTQ_PROD') >>> 31;

describe('event queue', () => {
  it('writes 32-byte records that decode to the event the transaction produced', () => {
    const b = faulting(4);
    const r = b.smmu.translate(1, 0x12_3456, 'write');
    expect(r.kind === 'abort' && r.event).toBeTruthy();
    expect(b.readEvents()).toEqual([r.kind === 'abort' ? r.event : undefined]);
    expect(b.read('EVTQ_PROD')).toBe(1);
  });

  it('full queue: records are discarded and OVFLG toggles once until acknowledged', () => {
    const b = faulting(1);
    for (let i = 0; i < 4; i++) b.smmu.translate(1, i * 0x1000, 'read');
    expect(b.smmu.eventLog().map((e) => e.delivery)).toEqual(['written', 'written', 'dropped_full', 'dropped_full']);
    expect(ovflg(b)).toBe(1);
    expect(b.read('EVTQ_PROD') & 3).toBe(2);
    // Consume and acknowledge (OVACKFLG := OVFLG).
    expect(b.readEvents().map((e) => e.kind)).toEqual(['F_TRANSLATION', 'F_TRANSLATION']);
    expect(b.read('EVTQ_CONS') >>> 31).toBe(1);
    for (let i = 0; i < 2; i++) b.smmu.translate(1, i * 0x1000, 'read');
    expect(ovflg(b)).toBe(1);
    b.smmu.translate(1, 0, 'read');
    // A new overflow after the acknowledge toggles again.
    expect(ovflg(b)).toBe(0);
    expect(b.read('GERROR')).toBe(0);
  });

  it('EVTQEN = 0: records are discarded without an overflow', () => {
    const b = faulting(1);
    b.reg('CR0', CR0_SMMUEN | CR0_CMDQEN);
    for (let i = 0; i < 4; i++) b.smmu.translate(1, 0, 'read');
    expect(b.smmu.eventLog().every((e) => e.delivery === 'dropped_disabled')).toBe(true);
    expect(b.read('EVTQ_PROD')).toBe(0);
  });

  it('a record whose write aborts raises GERROR.EVTQ_ABT_ERR', () => {
    const b = new SmmuBench({ noEnable: true });
    b.reg('EVTQ_BASE', 0x0980_0000 | 2);
    b.reg('CR0', CR0_SMMUEN | CR0_EVTQEN | CR0_CMDQEN);
    b.writeSte(1, s2SteFields({ vmid: 1, ttb: b.allocTable() }));
    b.smmu.translate(1, 0, 'read');
    expect(b.smmu.eventLog()[0]?.delivery).toBe('write_abort');
    expect(b.read('GERROR') & GERROR_BIT.EVTQ_ABT_ERR).toBe(GERROR_BIT.EVTQ_ABT_ERR);
  });

  it('EVTQ interrupt: MSI to EVTQ_IRQ_CFG0 when programmed, else the wired line', () => {
    const b = faulting(4);
    b.reg('IRQ_CTRL', 1 << 2);
    b.smmu.translate(1, 0, 'read');
    expect(b.smmu.signals()).toMatchObject({ evtqIrq: 1, evtqMsi: 0 });
    b.reg('EVTQ_IRQ_CFG0', MSI_TARGET);
    b.reg('EVTQ_IRQ_CFG1', 0x55);
    b.smmu.translate(1, 0, 'read');
    expect(b.smmu.signals()).toMatchObject({ evtqIrq: 1, evtqMsi: 1 });
    expect(b.memory.read32(MSI_TARGET)).toBe(0x55);
  });
});
