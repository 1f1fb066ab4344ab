import { describe, expect, it } from 'vitest';
import { EINVAL, ENXIO, ETIMEDOUT } from '../../arch/errno.js';
import { CS_IRQ, type Command, decodeCommand, encodeCommand } from '../../arch/smmu/commands.js';
import { IIDR_IMPLEMENTER_ARM, IIDR_PRODUCT_MMU600, IIDR_PRODUCT_MMU700, REG, encodeIdr0, encodeIdr1, encodeIdr3, encodeIdr5, encodeIidr, decodeIdr0, decodeIdr1 } from '../../arch/smmu/registers.js';
import { STE_CONFIG, decodeSte, encodeSte, steFields } from '../../arch/smmu/ste.js';
import { type U64 } from '../../arch/u64.js';
import { bootIommu, createSystem, type System } from '../../system.js';
import { HARDENED_KNOBS } from '../design.js';
import { HypervisorPanic } from '../panic.js';
import { type DriverOptions } from './driver.js';
import { nestingErratum, probeSmmu } from './probe.js';

const G1 = 0x4000_0000;
const SMMU = 0xc00_0000;

function boot(features: Record<string, unknown> = {}, driver: DriverOptions = {}): System {
  const sys = createSystem({
    physShift: 36,
    memory: [{ base: G1, size: 0x80_0000, nomap: false }],
    poolPages: 8,
    maxVms: 1,
    vmStructPages: 2,
    smmu: { base: SMMU, features: { ats: true, ...features }, devices: [{ sid: 1, ats: false }, { sid: 2, ats: true }], hostPages: [G1 + 0x7f_e000, G1 + 0x7f_f000], driver },
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

/** A 64-bit host access (`ldr x` / `str x`): lo, hi. */
function hostRead64(sys: System, offset: number): U64 {
  sys.hyp.run(sys.hyp.hostMmioAccess(SMMU + offset, false, 0, 8), sys.stepHardware);
  return { lo: sys.hyp.lastMmioRead >>> 0, hi: sys.hyp.lastMmioReadHi >>> 0 };
}

function hostWrite64(sys: System, offset: number, lo: number, hi = 0): number {
  return sys.hyp.run(sys.hyp.hostMmioAccess(SMMU + offset, true, lo, 8, hi), sys.stepHardware);
}

/** The HypervisorPanic `f` throws (a WARN_ON at EL2), or undefined when it returns. */
function panicOf(f: () => unknown): HypervisorPanic | undefined {
  try {
    f();
  } catch (e) {
    if (e instanceof HypervisorPanic) return e;
    throw e;
  }
  return undefined;
}

/** The host writes the eight dwords of its STE for `sid` (in its own table). */
function writeHostSte(sys: System, sid: number, words: readonly U64[]): void {
  const at = sys.iommu!.hostDriver.steAddress(sid);
  words.forEach((w, i) => sys.memory.store64(at + i * 8, w.lo, w.hi));
}

/** The commands in the hypervisor's queue from index `from` (a prod value) to its prod. */
function hypQueueSince(sys: System, from: number) {
  const cmdq = sys.iommu!.driver.cmdq!;
  const out = [];
  for (let p = from; p < cmdq.prodValue; p++) {
    const at = cmdq.base + (p % 2 ** cmdq.log2size) * 16;
    out.push(decodeCommand([sys.memory.peek64(at), sys.memory.peek64(at + 8)]));
  }
  return out;
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
    // posted v6-era smmu_dabt_device: IDR0 `read_only & ~(S2P | VMID16 | MSI | HYP)`, GBPA reads ABORT.
    const sys = boot({ msi: true, vmid16: true });
    expect(sys.hostS2.annotationAt(SMMU)?.owner).toBe(1);
    const real = sys.memory.read32(SMMU + REG.IDR0);
    const seen = hostRead(sys, REG.IDR0);
    expect(real & 1).toBe(1);
    expect(seen & ((1 << 0) | (1 << 9) | (1 << 13) | (1 << 18))).toBe(0);
    expect(seen & (1 << 10)).toBe(1 << 10); // ATS is not hidden by the series
    expect(hostRead(sys, REG.GBPA)).toBe(1 << 20);
  });

  it('64-bit registers are 8-byte accesses: CMDQ and STRTAB bases are shadows; a 4-byte access panics', () => {
    // posted v6-era smmu_dabt_device: `if (len != sizeof(u64)) break;` then WARN_ON(!mask).
    const sys = boot();
    const host = sys.iommu!.hostDriver;
    expect(hostRead64(sys, REG.STRTAB_BASE).lo & ~0x3f).toBe(host.layout.strtabBase % 2 ** 32);
    expect(hostRead64(sys, REG.CMDQ_BASE).lo & ~0x1f).toBe(host.layout.cmdqBase % 2 ** 32);
    // The real registers keep the hypervisor's (smmu_init_cmdq, smmu_init_strtab).
    expect(sys.memory.read32(SMMU + REG.STRTAB_BASE) & ~0x3f).toBe(sys.iommu!.driver.strtab.base % 2 ** 32);
    expect(sys.memory.read32(SMMU + REG.CMDQ_BASE) & ~0x1f).toBe(sys.iommu!.driver.cmdq!.base % 2 ** 32);
    for (const offset of [REG.STRTAB_BASE, REG.CMDQ_BASE, REG.EVTQ_BASE, REG.GERROR_IRQ_CFG0, REG.EVTQ_IRQ_CFG0]) {
      const p = panicOf(() => hostRead(sys, offset));
      expect(p, offset.toString(16)).toBeInstanceOf(HypervisorPanic);
      expect(p?.site).toBe('smmu_dabt_device: WARN_ON(!mask)');
      expect(p?.message).toMatch(new RegExp(`read of 4 bytes at offset 0x${offset.toString(16)}`));
    }
    // And a 32-bit register accessed with 8 bytes.
    expect(panicOf(() => hostRead64(sys, REG.CR0))?.site).toBe('smmu_dabt_device: WARN_ON(!mask)');
  });

  it('CMDQ_BASE written while CMDQEN panics; STRTAB_BASE written while SMMUEN panics', () => {
    // posted v6-era smmu_dabt_device: CMDQ_BASE `WARN_ON(is_cmdq_enabled(smmu))`; STRTAB_BASE
    // "Must only be written when SMMU_CR0.SMMUEN == 0": break, mask stays 0, WARN_ON(!mask).
    const sys = boot();
    expect(sys.iommu!.driver.host.cr0 & 0x9).toBe(0x9);
    const c = panicOf(() => hostWrite64(sys, REG.CMDQ_BASE, 0x4010_0000 | 8));
    expect(c?.site).toBe('smmu_dabt_device: WARN_ON(is_cmdq_enabled) on CMDQ_BASE');
    const s = panicOf(() => hostWrite64(sys, REG.STRTAB_BASE, 0x4010_0000));
    expect(s?.site).toBe('smmu_dabt_device: WARN_ON(!mask)');
    // The shadows did not change.
    expect(hostRead64(sys, REG.STRTAB_BASE).lo & ~0x3f).toBe(sys.iommu!.hostDriver.layout.strtabBase % 2 ** 32);
    // v6-hardened (refuseBadRegisterAccess): both refused, no panic.
    const hard = boot({}, HARDENED_KNOBS);
    expect(panicOf(() => hostWrite64(hard, REG.CMDQ_BASE, 0x4010_0000 | 8))).toBeUndefined();
    expect(panicOf(() => hostWrite64(hard, REG.STRTAB_BASE, 0x4010_0000))).toBeUndefined();
    expect(hard.iommu!.driver.refusals.join('\n')).toMatch(/CMDQ_BASE written while the command queue is enabled/);
    expect(hostRead64(hard, REG.STRTAB_BASE).lo & ~0x3f).toBe(hard.iommu!.hostDriver.layout.strtabBase % 2 ** 32);
  });

  it('IRQ_CFG0 is passed through to the hardware register; CR0 is written through; CR1 must be the template', () => {
    // posted v6-era smmu_dabt_device: "Allowed 64 bit registers" (the MSI addresses) and CR0
    // `mask = read_write`: `writeq_relaxed(val & mask)`; CR1 `WARN_ON(val != cr1_template)`.
    const sys = boot();
    hostWrite64(sys, REG.GERROR_IRQ_CFG0, 0x4000_1000, 0x1);
    expect(sys.memory.peek64(SMMU + REG.GERROR_IRQ_CFG0)).toEqual({ lo: 0x4000_1000, hi: 1 });
    expect(hostRead64(sys, REG.GERROR_IRQ_CFG0)).toEqual({ lo: 0x4000_1000, hi: 1 });
    // CR0: SMMUEN off then on again (EVTQEN and CMDQEN kept), each value in the hardware.
    const cr0 = sys.iommu!.driver.host.cr0;
    hostWrite(sys, REG.CR0, cr0 & ~1);
    expect(sys.memory.read32(SMMU + REG.CR0)).toBe(cr0 & ~1);
    expect(sys.iommu!.driver.host.cr0).toBe(cr0 & ~1);
    hostWrite(sys, REG.CR0, cr0);
    expect(sys.memory.read32(SMMU + REG.CR0)).toBe(cr0);
    // CR1: the template is accepted, anything else panics.
    expect(panicOf(() => hostWrite(sys, REG.CR1, 0xd75))).toBeUndefined();
    expect(panicOf(() => hostWrite(sys, REG.CR1, 0))?.site).toBe('smmu_dabt_device: WARN_ON(val != cr1_template)');
    // v6-hardened (rejectIrqCfg, refuseBadRegisterAccess): a non-zero MSI address and a bad CR1 refused.
    const hard = boot({}, HARDENED_KNOBS);
    hostWrite64(hard, REG.GERROR_IRQ_CFG0, 0x4000_1000, 0x1);
    expect(hard.memory.peek64(SMMU + REG.GERROR_IRQ_CFG0)).toEqual({ lo: 0, hi: 0 });
    hostWrite(hard, REG.CR1, 0);
    expect(hard.memory.read32(SMMU + REG.CR1)).toBe(0xd75);
    expect(hard.iommu!.driver.refusals.join('\n')).toMatch(/IRQ_CFG0 at 0x68: only 0 is accepted[\s\S]*CR1 written with 0x0/);
  });

  it('a filtered host command (TLBI_S2_IPA, TLBI_NH_ALL) panics with WARN_ON(skip); hardened drops it', () => {
    // posted v6-era smmu_emulate_cmdq_insert: `skip = smmu_filter_command(...); if (WARN_ON(skip))`.
    const tlbi: Command[] = [{ kind: 'TLBI_S2_IPA', vmid: 0, address: G1, num: 0, scale: 0, leaf: true, ttl128: false, ttl: 3, tg: 1 }];
    for (const cmd of [...tlbi, { kind: 'TLBI_NH_ALL', vmid: 0 } as Command]) {
      const sys = boot();
      const p = panicOf(() => sys.hyp.run(sys.iommu!.hostDriver.issue([cmd]), sys.stepHardware));
      expect(p?.site, cmd.kind).toBe('smmu_emulate_cmdq_insert: WARN_ON(skip)');
    }
    // v6-hardened (dropFilteredCommands): only the host's CMD_SYNC reaches the hypervisor queue.
    const hard = boot({}, HARDENED_KNOBS);
    const before = hard.iommu!.driver.cmdq!.prodValue;
    hard.hyp.run(hard.iommu!.hostDriver.issue([...tlbi, { kind: 'TLBI_NH_ALL', vmid: 0 }]), hard.stepHardware);
    expect(hypQueueSince(hard, before).map((c) => c.kind)).toEqual(['CMD_SYNC']);
    expect(hard.iommu!.driver.refusals.join('\n')).toMatch(/WARN_ON\(skip\): opcode 0x2a is the hypervisor's/);
  });

  it('CMD_SYNC with CS=IRQ is forwarded unconverted; writeBackSyncConversion converts it to SEV', () => {
    // posted v6-era smmu_filter_command: the conversion edits local copies (command0/command1),
    // the raw command is what smmu_add_cmd_raw forwards.
    const w = encodeCommand({ kind: 'CMD_SYNC', cs: CS_IRQ, msh: 3, msiattr: 0xf, msidata: 7, msiaddr: G1 });
    const raw = [w[0]!.lo, w[0]!.hi, w[1]!.lo, w[1]!.hi] as [number, number, number, number];
    for (const [driver, want] of [
      [{}, { cs: CS_IRQ, msiaddr: G1 }],
      [{ writeBackSyncConversion: true }, { cs: 2, msiaddr: 0 }],
    ] as const) {
      const sys = boot({}, driver);
      const before = sys.iommu!.driver.cmdq!.prodValue;
      sys.hyp.run(sys.iommu!.hostDriver.issueRaw(raw), sys.stepHardware);
      const sent = hypQueueSince(sys, before);
      // The raw command, then the CMD_SYNC (CS=SEV) issueRaw adds.
      expect(sent.map((c) => c.kind)).toEqual(['CMD_SYNC', 'CMD_SYNC']);
      expect(sent[0], JSON.stringify(driver)).toMatchObject({ kind: 'CMD_SYNC', ...want });
    }
  });

  it('a host CFGI_STE is forwarded after the re-shadow’s own CFGI_STE + CMD_SYNC', () => {
    // posted v6-era smmu_filter_command: CFGI_STE → smmu_reshadow_ste (which ends with
    // smmu_send_cmd(CFGI_STE)), `break`, return false: the host's command is added raw too.
    const sys = boot();
    writeHostSte(sys, 1, encodeSte(steFields({ v: true, config: STE_CONFIG.BYPASS, shcfg: 1 })));
    const before = sys.iommu!.driver.cmdq!.prodValue;
    sys.hyp.run(sys.iommu!.hostDriver.issue([{ kind: 'CFGI_STE', ssec: false, sid: 1, leaf: true }]), sys.stepHardware);
    const sent = hypQueueSince(sys, before);
    expect(sent.map((c) => c.kind)).toEqual(['CFGI_STE', 'CMD_SYNC', 'CFGI_STE', 'CMD_SYNC']);
    expect(sent[0]).toMatchObject({ sid: 1, leaf: true });
    expect(sent[2]).toMatchObject({ sid: 1, leaf: true });
  });

  it('shadows a host STE: bypass → S2 over the idmap, S1 → nested, S2 stays S2, abort kept; dwords 4-7 the host’s, no S2AFFD', () => {
    // posted v6-era smmu_attach_stage_2: CFG |= 0b010, SHCFG := incoming, dwords 2-3 from the
    // idmap (VMID 0, S2AA64 | S2R | S2PTW, no S2AFFD), dwords 4-7 left as the host wrote them.
    const sys = boot();
    const idmapTtb = sys.iommu!.idmap!.cfg.s2!.vttbr;
    const s1 = decodeSte(hwSte(sys, 1));
    expect(s1.config).toBe(STE_CONFIG.S2_TRANS);
    expect(s1.s2vmid).toBe(0);
    expect(s1.s2ttb).toBe(idmapTtb);
    const host = sys.iommu!.hostDriver;
    writeHostSte(sys, 3, encodeSte(steFields({ v: true, config: STE_CONFIG.S1_TRANS, s1ContextPtr: G1 + 0x10_0000, s1dss: 1, shcfg: 1 })));
    writeHostSte(sys, 4, encodeSte(steFields({ v: true, config: STE_CONFIG.ABORT })));
    // A host stage-2 STE with its own VMID, table and S2AFFD, and something in dwords 4-7.
    const s2 = encodeSte(steFields({ v: true, config: STE_CONFIG.S2_TRANS, s2vmid: 5, s2t0sz: 28, s2sl0: 1, s2ps: 2, s2aa64: true, s2r: true, s2affd: true, s2ttb: G1 + 0x20_0000, shcfg: 1 }));
    for (let i = 4; i < 8; i++) s2[i] = { lo: 0x1111_0000 + i, hi: 0x2222_0000 + i };
    writeHostSte(sys, 5, s2);
    sys.hyp.run(host.issue([3, 4, 5].map((sid) => ({ kind: 'CFGI_STE', ssec: false, sid, leaf: true }) as Command)), sys.stepHardware);
    expect(decodeSte(hwSte(sys, 3)).config).toBe(STE_CONFIG.NESTED);
    expect(decodeSte(hwSte(sys, 4)).config).toBe(STE_CONFIG.ABORT);
    const hw5 = hwSte(sys, 5);
    const d5 = decodeSte(hw5);
    expect(d5.config).toBe(STE_CONFIG.S2_TRANS); // accepted: CFG 0b110 | 0b010 stays S2
    expect(d5.s2vmid).toBe(0);
    expect(d5.s2ttb).toBe(idmapTtb);
    expect(d5.s2affd).toBe(false);
    expect(hw5.slice(4)).toEqual(s2.slice(4));
  });

  it('a host nested STE: the re-shadow returns -EINVAL and WARN_ON(skip) panics; hardened refuses it', () => {
    // posted v6-era smmu_attach_stage_2: "S2 is not advertised, that should never be attempted."
    // → -EINVAL → smmu_filter_command returns true → WARN_ON(skip).
    const nested = encodeSte(steFields({ v: true, config: STE_CONFIG.NESTED }));
    const cfgi: Command[] = [{ kind: 'CFGI_STE', ssec: false, sid: 3, leaf: true }];
    const sys = boot();
    writeHostSte(sys, 3, nested);
    const p = panicOf(() => sys.hyp.run(sys.iommu!.hostDriver.issue(cfgi), sys.stepHardware));
    expect(p?.site).toBe('smmu_emulate_cmdq_insert: WARN_ON(skip)');
    expect(p?.message).toMatch(/CFGI_STE for sid 3 refused \(-22\)/);
    // v6-hardened (dropFilteredCommands): refused, the hardware STE left as it was.
    const hard = boot({}, HARDENED_KNOBS);
    const was = hwSte(hard, 3);
    writeHostSte(hard, 3, nested);
    expect(panicOf(() => hard.hyp.run(hard.iommu!.hostDriver.issue(cfgi), hard.stepHardware))).toBeUndefined();
    expect(hwSte(hard, 3)).toEqual(was);
    expect(hard.iommu!.driver.refusals.join('\n')).toMatch(/CFGI_STE for sid 3 refused \(-22\)/);
  });

  it('a CMD_SYNC the SMMU never completes times out with -ETIMEDOUT', () => {
    const sys = boot();
    // Letting the hardware do nothing at the yield points: the SMMU never consumes.
    expect(sys.hyp.run(sys.iommu!.driver.cmdq!.issue([{ kind: 'TLBI_NSNH_ALL' }], true), () => undefined)).toBe(-ETIMEDOUT);
  });
});
