import { describe, expect, it } from 'vitest';
import { EINVAL, ENXIO, ETIMEDOUT } from '../../arch/errno.js';
import { CS_IRQ, decodeCommand, encodeCommand } from '../../arch/smmu/commands.js';
import { IIDR_IMPLEMENTER_ARM, IIDR_PRODUCT_MMU600, IIDR_PRODUCT_MMU700, REG, encodeIdr0, encodeIdr1, encodeIdr3, encodeIdr5, encodeIidr, decodeIdr0, decodeIdr1 } from '../../arch/smmu/registers.js';
import { STE_CONFIG, decodeSte, encodeSte, steFields } from '../../arch/smmu/ste.js';
import { type U64 } from '../../arch/u64.js';
import { bootIommu, createSystem, type System } from '../../system.js';
import { nestingErratum, probeSmmu } from './probe.js';

const G1 = 0x4000_0000;
const SMMU = 0xc00_0000;

function boot(features: Record<string, unknown> = {}): System {
  const sys = createSystem({
    physShift: 36,
    memory: [{ base: G1, size: 0x80_0000, nomap: false }],
    poolPages: 8,
    maxVms: 1,
    vmStructPages: 2,
    smmu: { base: SMMU, features: { ats: true, ...features }, devices: [{ sid: 1, ats: false }, { sid: 2, ats: true }], hostPages: [G1 + 0x7f_e000, G1 + 0x7f_f000] },
  });
  expect(bootIommu(sys)).toBe(0);
  return sys;
}

function hostRead(sys: System, offset: number): number {
  sys.hyp.run(sys.hyp.hostMmioAccess(SMMU + offset, false, 0), sys.stepHardware);
  return sys.hyp.lastMmioRead;
}

function hostWrite(sys: System, offset: number, value: number): number {
  return sys.hyp.run(sys.hyp.hostMmioAccess(SMMU + offset, true, value), sys.stepHardware);
}

function hwSte(sys: System, sid: number): U64[] {
  const strtab = sys.iommu!.driver.strtab;
  const at = strtab.fmt === 0 ? strtab.base + sid * 64 : strtab.l2.get(Math.floor(sid / 256))! + (sid % 256) * 64;
  return Array.from({ length: 8 }, (_, i) => sys.memory.peek64(at + i * 8));
}

describe('probe (§6.10, §1.5, §1.8)', () => {
  const idr0 = encodeIdr0({ ...decodeIdr0(0), s1p: true, s2p: true, ttf: 2, cohacc: true, ttendian: 2, stLevel: 1, vmid16: true });
  const idr1 = encodeIdr1({ ...decodeIdr1(0), sidsize: 16, cmdqs: 19, evtqs: 19 });
  const idr3 = encodeIdr3({ had: false, pbha: false, xnx: false, pps: false, mpam: false, fwb: false, stt: false, ril: true, bbml: 2, e0pd: false, ptwnnc: false, dpt: false } as never);
  const idr5 = encodeIdr5({ oas: 6, gran4k: true, gran16k: false, gran64k: true, ds: false, d128: false, vax: 0, stallMax: 0 });
  const iidr = (productId: number, variant: number, revision: number) => encodeIidr({ productId, variant, revision, implementer: IIDR_IMPLEMENTER_ARM });

  it('derives features and page sizes, with the 4 TB size for a 52-bit OAS', () => {
    const r = probeSmmu({ idr0, idr1, idr3, idr5, iidr: iidr(IIDR_PRODUCT_MMU700, 1, 1) }, true);
    expect(r.ok && r.features.pgsizeBitmap).toBe(0x1000 + 0x20_0000 + 0x4000_0000 + 0x1_0000 + 0x2000_0000 + 2 ** 42);
    expect(r.ok && r.features.oas).toBe(52);
    expect(r.ok && r.features.twoLevelStrtab).toBe(true);
    expect(r.ok && r.features.rangeInvalidation).toBe(true);
  });

  it('refuses parts and configurations the series does not support, with its error codes', () => {
    expect(probeSmmu({ idr0, idr1, idr3, idr5, iidr: 0 }, false)).toMatchObject({ ok: false, errno: -EINVAL });
    expect(probeSmmu({ idr0: idr0 & ~1, idr1, idr3, idr5, iidr: 0 }, true)).toMatchObject({ ok: false, errno: -ENXIO });
    expect(probeSmmu({ idr0, idr1: idr1 | (1 << 30), idr3, idr5, iidr: 0 }, true)).toMatchObject({ ok: false, errno: -EINVAL });
    expect(nestingErratum(iidr(IIDR_PRODUCT_MMU600, 1, 0))).toBe(true);
    expect(nestingErratum(iidr(IIDR_PRODUCT_MMU600, 2, 0))).toBe(false);
    expect(nestingErratum(iidr(IIDR_PRODUCT_MMU700, 1, 0))).toBe(true);
    expect(nestingErratum(iidr(IIDR_PRODUCT_MMU700, 1, 1))).toBe(false);
    expect(probeSmmu({ idr0, idr1, idr3, idr5, iidr: iidr(IIDR_PRODUCT_MMU600, 0, 0) }, true)).toMatchObject({ ok: false, errno: -ENXIO });
  });
});

describe('register trap-and-emulate (§6.10 table)', () => {
  it('host accesses to the frame trap; IDR0 hides S2P, HYP, MSI, VMID16; GBPA reads ABORT', () => {
    const sys = boot({ msi: true, vmid16: true });
    expect(sys.hostS2.annotationAt(SMMU)?.owner).toBe(1);
    const real = sys.memory.read32(SMMU + REG.IDR0);
    const seen = hostRead(sys, REG.IDR0);
    expect(real & 1).toBe(1);
    expect(seen & ((1 << 0) | (1 << 9) | (1 << 13) | (1 << 18))).toBe(0);
    expect(seen & (1 << 10)).toBe(1 << 10); // ATS is not hidden by the series
    expect(hostRead(sys, REG.GBPA)).toBe(1 << 20);
  });

  it('CMDQ and STRTAB registers are shadows; the real ones keep the hypervisor’s', () => {
    const sys = boot();
    const hostStrtab = hostRead(sys, REG.STRTAB_BASE);
    expect(hostStrtab & ~0x3f).toBe(G1 + 0x7f_f000);
    expect(sys.memory.read32(SMMU + REG.STRTAB_BASE) & ~0x3f).toBe(sys.iommu!.driver.strtab.base % 2 ** 32);
    // CR1 writes are forced to the fixed template.
    hostWrite(sys, REG.CR1, 0);
    expect(sys.memory.read32(SMMU + REG.CR1)).toBe(0xd75);
    expect(sys.iommu!.driver.warnings.join('\n')).toMatch(/CR1 written/);
  });

  it('shadows a host bypass STE as stage 2 over the idmap, stage 1 as nested, keeps abort', () => {
    const sys = boot();
    const s1 = decodeSte(hwSte(sys, 1));
    expect(s1.config).toBe(STE_CONFIG.S2_TRANS);
    expect(s1.s2vmid).toBe(0);
    expect(s1.s2ttb).toBe(sys.iommu!.idmap!.cfg.s2!.vttbr);
    // The host writes a stage-1 STE for sid 3 and an abort STE for sid 4.
    const host = sys.iommu!.hostDriver;
    const write = (sid: number, words: U64[]) => words.forEach((w, i) => sys.memory.store64(host.layout.strtabBase + sid * 64 + i * 8, w.lo, w.hi));
    write(3, encodeSte(steFields({ v: true, config: STE_CONFIG.S1_TRANS, s1ContextPtr: G1 + 0x10_0000, s1dss: 1, shcfg: 1 })));
    write(4, encodeSte(steFields({ v: true, config: STE_CONFIG.ABORT })));
    sys.hyp.run(host.issue([{ kind: 'CFGI_STE', ssec: false, sid: 3, leaf: true }, { kind: 'CFGI_STE', ssec: false, sid: 4, leaf: true }]), sys.stepHardware);
    expect(decodeSte(hwSte(sys, 3)).config).toBe(STE_CONFIG.NESTED);
    expect(decodeSte(hwSte(sys, 4)).config).toBe(STE_CONFIG.ABORT);
    // A host nested STE is refused (-EINVAL): the hardware STE is left as it was.
    write(3, encodeSte(steFields({ v: true, config: STE_CONFIG.NESTED })));
    sys.hyp.run(host.issue([{ kind: 'CFGI_STE', ssec: false, sid: 3, leaf: true }]), sys.stepHardware);
    expect(decodeSte(hwSte(sys, 3)).config).toBe(STE_CONFIG.NESTED);
    expect(sys.iommu!.driver.warnings.join('\n')).toMatch(/CFGI_STE for sid 3 refused/);
  });

  it('filters host commands: stage-2 TLBIs dropped, CMD_SYNC with IRQ converted to SEV', () => {
    const sys = boot();
    const cmdq = sys.iommu!.driver.cmdq!;
    const before = cmdq.prodValue;
    sys.hyp.run(sys.iommu!.hostDriver.issue([{ kind: 'TLBI_S2_IPA', vmid: 0, address: G1, num: 0, scale: 0, leaf: true, ttl128: false, ttl: 3, tg: 1 }, { kind: 'TLBI_NH_ALL', vmid: 0 }]), sys.stepHardware);
    // Only the host's CMD_SYNC reached the hypervisor queue.
    expect(cmdq.prodValue - before).toBe(1);
    const words = [sys.memory.peek64(cmdq.base + (before % 256) * 16), sys.memory.peek64(cmdq.base + (before % 256) * 16 + 8)];
    expect(decodeCommand(words).kind).toBe('CMD_SYNC');
    sys.hyp.run(sys.iommu!.hostDriver.issueRaw((() => {
      const w = encodeCommand({ kind: 'CMD_SYNC', cs: CS_IRQ, msh: 3, msiattr: 0xf, msidata: 7, msiaddr: G1 });
      return [w[0]!.lo, w[0]!.hi, w[1]!.lo, w[1]!.hi] as [number, number, number, number];
    })()), sys.stepHardware);
    const at = cmdq.base + ((cmdq.prodValue - 2 + 512) % 256) * 16;
    const converted = decodeCommand([sys.memory.peek64(at), sys.memory.peek64(at + 8)]);
    expect(converted).toMatchObject({ kind: 'CMD_SYNC', cs: 2, msiaddr: 0 });
  });

  it('a CMD_SYNC the SMMU never completes times out with -ETIMEDOUT', () => {
    const sys = boot();
    // Letting the hardware do nothing at the yield points: the SMMU never consumes.
    expect(sys.hyp.run(sys.iommu!.driver.cmdq!.issue([{ kind: 'TLBI_NSNH_ALL' }], true), () => undefined)).toBe(-ETIMEDOUT);
  });
});
