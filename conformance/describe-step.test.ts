import { describe, expect, it } from 'vitest';
import { describeStep } from './names.js';

describe('describeStep: the arguments of a step as a reviewer reads them', () => {
  it('names registers and access widths instead of frame offsets', () => {
    expect(describeStep({ kind: 'host_mmio_write', smmu: 0, offset: 0x20, value: 0xd })).toBe('32-bit write CR0 ← 0xd');
    expect(describeStep({ kind: 'host_mmio_write', smmu: 0, offset: 0xb0, value: 0x4002_0000, size: 8, valueHi: 1 })).toBe('64-bit write EVTQ_IRQ_CFG0 ← 0x140020000');
    expect(describeStep({ kind: 'host_mmio_read', smmu: 0, offset: 0x94 })).toBe('32-bit read of CMDQ_BASE[63:32]');
    expect(describeStep({ kind: 'host_mmio_write', smmu: 0, offset: 0x1_00a8, value: 3 })).toBe('32-bit write EVTQ_PROD ← 0x3');
    expect(describeStep({ kind: 'host_mmio_write', smmu: 0, offset: 0xfc, value: 0 })).toBe('32-bit write offset 0xfc (no register) ← 0x0');
  });

  it('decodes commands by opcode and fields, and says when one is illegal', () => {
    expect(describeStep({ kind: 'host_write_cmd', smmu: 0, words: [0x1046, 0xdead, 0x4002_0000, 0] })).toBe('CMD_SYNC cs=1 msh=0 msiattr=0 msidata=0xdead msiaddr=0x40020000');
    expect(describeStep({ kind: 'host_write_cmd', smmu: 0, words: [0x44, 0, 0, 0], count: 3 })).toMatch(/^(RESUME|illegal) .*×3$/);
  });

  it('shows page numbers and addresses in hex', () => {
    expect(describeStep({ kind: 'host_donate_guest', pfn: 0x40020, gfn: 3, vm: 1 })).toBe('pfn 0x40020, gfn 0x3, vm 1');
    expect(describeStep({ kind: 'dma_forged_translated', sid: 2, pa: 0x4002_0000, access: 'write' })).toBe('sid 2, pa 0x40020000, access write');
  });
});
