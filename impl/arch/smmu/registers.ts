/**
 * SMMUv3 programming interface: register offsets and bit-exact codecs for the registers the SMMU
 * model and the pKVM trap-and-emulate layer touch, plus circular-queue index arithmetic.
 * Reference: smmuv3-arch.md §1 (registers), §4.1–4.2 (queues), §5.3 (event queue);
 * pkvm-host-s2-iommu.md §6.9–6.10 (which registers the hypervisor emulates).
 *
 * 32-bit registers encode to a number in [0, 2^32); 64-bit registers (bases, MSI addresses) to a
 * U64. Address fields are plain numbers with their low bits zero.
 */
import { paSizeFromEncoding } from '../granule.js';
import { type U64, u64 } from '../u64.js';
import { bit32, decodeField, encodeField, f, flag, get32, put32, putBit32 } from './fields.js';

// --- Register map (§1.1) ---------------------------------------------------------------------

/** Page 1 starts 64 KiB after page 0; it holds only the event/PRI queue PROD and CONS (§1.1). */
export const PAGE1_OFFSET = 0x1_0000;
/** Size of the register frame the model exposes: pages 0 and 1. */
export const SMMU_FRAME_SIZE = 0x2_0000;

export const REG = Object.freeze({
  IDR0: 0x00,
  IDR1: 0x04,
  IDR2: 0x08,
  IDR3: 0x0c,
  IDR4: 0x10,
  IDR5: 0x14,
  IIDR: 0x18,
  AIDR: 0x1c,
  CR0: 0x20,
  CR0ACK: 0x24,
  CR1: 0x28,
  CR2: 0x2c,
  STATUSR: 0x40,
  GBPA: 0x44,
  IRQ_CTRL: 0x50,
  IRQ_CTRLACK: 0x54,
  GERROR: 0x60,
  GERRORN: 0x64,
  GERROR_IRQ_CFG0: 0x68,
  GERROR_IRQ_CFG1: 0x70,
  GERROR_IRQ_CFG2: 0x74,
  STRTAB_BASE: 0x80,
  STRTAB_BASE_CFG: 0x88,
  CMDQ_BASE: 0x90,
  CMDQ_PROD: 0x98,
  CMDQ_CONS: 0x9c,
  EVTQ_BASE: 0xa0,
  EVTQ_PROD: PAGE1_OFFSET + 0xa8,
  EVTQ_CONS: PAGE1_OFFSET + 0xac,
  EVTQ_IRQ_CFG0: 0xb0,
  EVTQ_IRQ_CFG1: 0xb8,
  EVTQ_IRQ_CFG2: 0xbc,
  PRIQ_BASE: 0xc0,
  PRIQ_PROD: PAGE1_OFFSET + 0xc8,
  PRIQ_CONS: PAGE1_OFFSET + 0xcc,
  PRIQ_IRQ_CFG0: 0xd0,
  PRIQ_IRQ_CFG1: 0xd8,
  PRIQ_IRQ_CFG2: 0xdc,
} as const);

export type RegName = keyof typeof REG;

const WIDE_REGISTERS: ReadonlySet<RegName> = new Set<RegName>([
  'GERROR_IRQ_CFG0',
  'STRTAB_BASE',
  'CMDQ_BASE',
  'EVTQ_BASE',
  'EVTQ_IRQ_CFG0',
  'PRIQ_BASE',
  'PRIQ_IRQ_CFG0',
]);

export function registerWidth(name: RegName): 32 | 64 {
  return WIDE_REGISTERS.has(name) ? 64 : 32;
}

export interface RegisterLocation {
  readonly name: RegName;
  readonly width: 32 | 64;
  /** Byte offset of the access inside the register: 4 is the upper half of a 64-bit register. */
  readonly byteOffset: 0 | 4;
}

const BY_OFFSET = new Map<number, RegisterLocation>();
for (const name of Object.keys(REG) as RegName[]) {
  const width = registerWidth(name);
  BY_OFFSET.set(REG[name], { name, width, byteOffset: 0 });
  if (width === 64) BY_OFFSET.set(REG[name] + 4, { name, width, byteOffset: 4 });
}

/**
 * Which register a frame offset falls in. A trapped host access may be a 32-bit access to
 * either half of a 64-bit register, hence the byte offset. Undefined for offsets the reference
 * names no register at (IMPDEF, secure, ATOS space).
 */
export function registerAt(offset: number): RegisterLocation | undefined {
  return BY_OFFSET.get(offset);
}

// --- ID registers ----------------------------------------------------------------------------

/** SMMU_IDR0 (§1.2). */
export interface Idr0 {
  readonly s2p: boolean;
  readonly s1p: boolean;
  /** Bit 0: AArch32 LPAE tables, bit 1: AArch64 tables. */
  readonly ttf: number;
  readonly cohacc: boolean;
  readonly btm: boolean;
  readonly httu: number;
  readonly dormhint: boolean;
  readonly hyp: boolean;
  readonly ats: boolean;
  readonly ns1ats: boolean;
  readonly asid16: boolean;
  readonly msi: boolean;
  readonly sev: boolean;
  readonly atos: boolean;
  readonly pri: boolean;
  readonly vmw: boolean;
  readonly vmid16: boolean;
  readonly cd2l: boolean;
  readonly vatos: boolean;
  /** 0 mixed, 1 reserved, 2 little-endian only, 3 big-endian only. */
  readonly ttendian: number;
  readonly atsrecerr: boolean;
  /** 0 stall and terminate, 1 terminate only, 2 stall forced. */
  readonly stallModel: number;
  readonly termModel: boolean;
  /** 0 linear only, 1 2-level supported. */
  readonly stLevel: number;
  readonly rmeImpl: boolean;
}

export const IDR0_TTF_AARCH32 = 1;
export const IDR0_TTF_AARCH64 = 2;
export const TTENDIAN_MIXED = 0;
export const TTENDIAN_LE = 2;
export const TTENDIAN_BE = 3;
export const STALL_MODEL_STALL_AND_TERMINATE = 0;
export const STALL_MODEL_TERMINATE_ONLY = 1;
export const STALL_MODEL_STALL_FORCED = 2;

export function decodeIdr0(v: number): Idr0 {
  return {
    s2p: bit32(v, 0),
    s1p: bit32(v, 1),
    ttf: get32(v, 3, 2),
    cohacc: bit32(v, 4),
    btm: bit32(v, 5),
    httu: get32(v, 7, 6),
    dormhint: bit32(v, 8),
    hyp: bit32(v, 9),
    ats: bit32(v, 10),
    ns1ats: bit32(v, 11),
    asid16: bit32(v, 12),
    msi: bit32(v, 13),
    sev: bit32(v, 14),
    atos: bit32(v, 15),
    pri: bit32(v, 16),
    vmw: bit32(v, 17),
    vmid16: bit32(v, 18),
    cd2l: bit32(v, 19),
    vatos: bit32(v, 20),
    ttendian: get32(v, 22, 21),
    atsrecerr: bit32(v, 23),
    stallModel: get32(v, 25, 24),
    termModel: bit32(v, 26),
    stLevel: get32(v, 28, 27),
    rmeImpl: bit32(v, 30),
  };
}

export function encodeIdr0(r: Idr0): number {
  let v = 0;
  v = putBit32(v, 0, r.s2p);
  v = putBit32(v, 1, r.s1p);
  v = put32(v, 3, 2, r.ttf, 'IDR0.TTF');
  v = putBit32(v, 4, r.cohacc);
  v = putBit32(v, 5, r.btm);
  v = put32(v, 7, 6, r.httu, 'IDR0.HTTU');
  v = putBit32(v, 8, r.dormhint);
  v = putBit32(v, 9, r.hyp);
  v = putBit32(v, 10, r.ats);
  v = putBit32(v, 11, r.ns1ats);
  v = putBit32(v, 12, r.asid16);
  v = putBit32(v, 13, r.msi);
  v = putBit32(v, 14, r.sev);
  v = putBit32(v, 15, r.atos);
  v = putBit32(v, 16, r.pri);
  v = putBit32(v, 17, r.vmw);
  v = putBit32(v, 18, r.vmid16);
  v = putBit32(v, 19, r.cd2l);
  v = putBit32(v, 20, r.vatos);
  v = put32(v, 22, 21, r.ttendian, 'IDR0.TTENDIAN');
  v = putBit32(v, 23, r.atsrecerr);
  v = put32(v, 25, 24, r.stallModel, 'IDR0.STALL_MODEL');
  v = putBit32(v, 26, r.termModel);
  v = put32(v, 28, 27, r.stLevel, 'IDR0.ST_LEVEL');
  v = putBit32(v, 30, r.rmeImpl);
  return v;
}

/** SMMU_IDR1 (§1.3). */
export interface Idr1 {
  readonly sidsize: number;
  readonly ssidsize: number;
  readonly priqs: number;
  readonly evtqs: number;
  readonly cmdqs: number;
  readonly attrPermsOvr: boolean;
  readonly attrTypesOvr: boolean;
  readonly rel: boolean;
  readonly queuesPreset: boolean;
  readonly tablesPreset: boolean;
  readonly ecmdq: boolean;
}

export function decodeIdr1(v: number): Idr1 {
  return {
    sidsize: get32(v, 5, 0),
    ssidsize: get32(v, 10, 6),
    priqs: get32(v, 15, 11),
    evtqs: get32(v, 20, 16),
    cmdqs: get32(v, 25, 21),
    attrPermsOvr: bit32(v, 26),
    attrTypesOvr: bit32(v, 27),
    rel: bit32(v, 28),
    queuesPreset: bit32(v, 29),
    tablesPreset: bit32(v, 30),
    ecmdq: bit32(v, 31),
  };
}

export function encodeIdr1(r: Idr1): number {
  let v = 0;
  v = put32(v, 5, 0, r.sidsize, 'IDR1.SIDSIZE');
  v = put32(v, 10, 6, r.ssidsize, 'IDR1.SSIDSIZE');
  v = put32(v, 15, 11, r.priqs, 'IDR1.PRIQS');
  v = put32(v, 20, 16, r.evtqs, 'IDR1.EVTQS');
  v = put32(v, 25, 21, r.cmdqs, 'IDR1.CMDQS');
  v = putBit32(v, 26, r.attrPermsOvr);
  v = putBit32(v, 27, r.attrTypesOvr);
  v = putBit32(v, 28, r.rel);
  v = putBit32(v, 29, r.queuesPreset);
  v = putBit32(v, 30, r.tablesPreset);
  v = putBit32(v, 31, r.ecmdq);
  return v;
}

/** SMMU_IDR3 (§1.4). */
export interface Idr3 {
  readonly had: boolean;
  readonly pbha: boolean;
  readonly xnx: boolean;
  readonly pps: boolean;
  readonly mpam: boolean;
  readonly fwb: boolean;
  /** Small translation tables: T0SZ up to 48 (47 with 64K). */
  readonly stt: boolean;
  /** Range invalidation and TTL hints honoured in TLBI commands. */
  readonly ril: boolean;
  /** Break-before-make level 0, 1 or 2. */
  readonly bbml: number;
  readonly e0pd: boolean;
  readonly ptwnnc: boolean;
  readonly dpt: boolean;
}

export function decodeIdr3(v: number): Idr3 {
  return {
    had: bit32(v, 2),
    pbha: bit32(v, 3),
    xnx: bit32(v, 4),
    pps: bit32(v, 5),
    mpam: bit32(v, 7),
    fwb: bit32(v, 8),
    stt: bit32(v, 9),
    ril: bit32(v, 10),
    bbml: get32(v, 12, 11),
    e0pd: bit32(v, 13),
    ptwnnc: bit32(v, 14),
    dpt: bit32(v, 15),
  };
}

export function encodeIdr3(r: Idr3): number {
  let v = 0;
  v = putBit32(v, 2, r.had);
  v = putBit32(v, 3, r.pbha);
  v = putBit32(v, 4, r.xnx);
  v = putBit32(v, 5, r.pps);
  v = putBit32(v, 7, r.mpam);
  v = putBit32(v, 8, r.fwb);
  v = putBit32(v, 9, r.stt);
  v = putBit32(v, 10, r.ril);
  v = put32(v, 12, 11, r.bbml, 'IDR3.BBML');
  v = putBit32(v, 13, r.e0pd);
  v = putBit32(v, 14, r.ptwnnc);
  v = putBit32(v, 15, r.dpt);
  return v;
}

/** SMMU_IDR5 (§1.4). */
export interface Idr5 {
  /** Encoded output address size: 0:32 … 6:52, 7:56 bits. */
  readonly oas: number;
  readonly gran4k: boolean;
  readonly gran16k: boolean;
  readonly gran64k: boolean;
  readonly ds: boolean;
  readonly d128: boolean;
  readonly vax: number;
  readonly stallMax: number;
}

export function decodeIdr5(v: number): Idr5 {
  return {
    oas: get32(v, 2, 0),
    gran4k: bit32(v, 4),
    gran16k: bit32(v, 5),
    gran64k: bit32(v, 6),
    ds: bit32(v, 7),
    d128: bit32(v, 8),
    vax: get32(v, 11, 10),
    stallMax: get32(v, 31, 16),
  };
}

export function encodeIdr5(r: Idr5): number {
  let v = 0;
  v = put32(v, 2, 0, r.oas, 'IDR5.OAS');
  v = putBit32(v, 4, r.gran4k);
  v = putBit32(v, 5, r.gran16k);
  v = putBit32(v, 6, r.gran64k);
  v = putBit32(v, 7, r.ds);
  v = putBit32(v, 8, r.d128);
  v = put32(v, 11, 10, r.vax, 'IDR5.VAX');
  v = put32(v, 31, 16, r.stallMax, 'IDR5.STALL_MAX');
  return v;
}

/** IDR5.OAS in bits. 0b111 is 56 bits (SMMUv3.4), which granule.ts's PS table stops short of. */
/**
 * `smmu_idr5_to_oas` / `smmu_idr5_to_pgsize`, the IDR5 helpers the hypervisor and the host driver
 * share (v6 05/25): the OAS in bits (a reserved encoding reads as 48) and the page sizes of the
 * supported granules (4 TiB blocks only with a 52-bit OAS).
 */
export function idr5Geometry(idr5: number): { readonly oas: number; readonly pgsizeBitmap: number } {
  const r = decodeIdr5(idr5);
  const oas = r.oas > 6 ? 48 : oasBits(r.oas);
  let pgsizeBitmap = 0;
  if (r.gran4k) pgsizeBitmap += 0x1000 + 0x20_0000 + 0x4000_0000;
  if (r.gran16k) pgsizeBitmap += 0x4000 + 0x200_0000;
  if (r.gran64k) pgsizeBitmap += 0x1_0000 + 0x2000_0000;
  if (oas === 52) pgsizeBitmap += 2 ** 42;
  return { oas, pgsizeBitmap };
}

export function oasBits(oasEncoding: number): number {
  if (oasEncoding === 7) return 56;
  const b = paSizeFromEncoding(oasEncoding);
  if (b === undefined) throw new RangeError(`IDR5.OAS encoding ${oasEncoding} out of range`);
  return b;
}

/** SMMU_IIDR (§1.5). */
export interface Iidr {
  readonly productId: number;
  readonly variant: number;
  readonly revision: number;
  readonly implementer: number;
}

export const IIDR_IMPLEMENTER_ARM = 0x43b;
export const IIDR_PRODUCT_MMU600 = 0x483;
export const IIDR_PRODUCT_MMU700 = 0x487;

export function decodeIidr(v: number): Iidr {
  return { productId: get32(v, 31, 20), variant: get32(v, 19, 16), revision: get32(v, 15, 12), implementer: get32(v, 11, 0) };
}

export function encodeIidr(r: Iidr): number {
  let v = 0;
  v = put32(v, 31, 20, r.productId, 'IIDR.ProductID');
  v = put32(v, 19, 16, r.variant, 'IIDR.Variant');
  v = put32(v, 15, 12, r.revision, 'IIDR.Revision');
  v = put32(v, 11, 0, r.implementer, 'IIDR.Implementer');
  return v;
}

/** SMMU_AIDR (§1.1): v3.x is major 0, minor x. */
export interface Aidr {
  readonly archMajorRev: number;
  readonly archMinorRev: number;
}

export function decodeAidr(v: number): Aidr {
  return { archMajorRev: get32(v, 7, 4), archMinorRev: get32(v, 3, 0) };
}

export function encodeAidr(r: Aidr): number {
  return put32(put32(0, 7, 4, r.archMajorRev, 'AIDR.ArchMajorRev'), 3, 0, r.archMinorRev, 'AIDR.ArchMinorRev');
}

// --- Control registers (§1.6) ----------------------------------------------------------------

/** SMMU_CR0 and SMMU_CR0ACK share a layout. */
export interface Cr0 {
  readonly smmuen: boolean;
  readonly priqen: boolean;
  readonly evtqen: boolean;
  readonly cmdqen: boolean;
  readonly atschk: boolean;
  readonly vmw: number;
}

export const CR0_SMMUEN = 1 << 0;
export const CR0_PRIQEN = 1 << 1;
export const CR0_EVTQEN = 1 << 2;
export const CR0_CMDQEN = 1 << 3;
export const CR0_ATSCHK = 1 << 4;

export function decodeCr0(v: number): Cr0 {
  return { smmuen: bit32(v, 0), priqen: bit32(v, 1), evtqen: bit32(v, 2), cmdqen: bit32(v, 3), atschk: bit32(v, 4), vmw: get32(v, 8, 6) };
}

export function encodeCr0(r: Cr0): number {
  let v = 0;
  v = putBit32(v, 0, r.smmuen);
  v = putBit32(v, 1, r.priqen);
  v = putBit32(v, 2, r.evtqen);
  v = putBit32(v, 3, r.cmdqen);
  v = putBit32(v, 4, r.atschk);
  v = put32(v, 8, 6, r.vmw, 'CR0.VMW');
  return v;
}

/** SMMU_CR1: cacheability 0 NC, 1 WB, 2 WT; shareability 0 NSH, 2 OSH, 3 ISH. */
export interface Cr1 {
  readonly queueIc: number;
  readonly queueOc: number;
  readonly queueSh: number;
  readonly tableIc: number;
  readonly tableOc: number;
  readonly tableSh: number;
}

export const CR1_CACHE_NC = 0;
export const CR1_CACHE_WB = 1;
export const CR1_CACHE_WT = 2;
export const SH_NSH = 0;
export const SH_OSH = 2;
export const SH_ISH = 3;

export function decodeCr1(v: number): Cr1 {
  return {
    queueIc: get32(v, 1, 0),
    queueOc: get32(v, 3, 2),
    queueSh: get32(v, 5, 4),
    tableIc: get32(v, 7, 6),
    tableOc: get32(v, 9, 8),
    tableSh: get32(v, 11, 10),
  };
}

export function encodeCr1(r: Cr1): number {
  let v = 0;
  v = put32(v, 1, 0, r.queueIc, 'CR1.QUEUE_IC');
  v = put32(v, 3, 2, r.queueOc, 'CR1.QUEUE_OC');
  v = put32(v, 5, 4, r.queueSh, 'CR1.QUEUE_SH');
  v = put32(v, 7, 6, r.tableIc, 'CR1.TABLE_IC');
  v = put32(v, 9, 8, r.tableOc, 'CR1.TABLE_OC');
  v = put32(v, 11, 10, r.tableSh, 'CR1.TABLE_SH');
  return v;
}

/** SMMU_CR2. */
export interface Cr2 {
  readonly e2h: boolean;
  /** Record C_BAD_STREAMID for out-of-range StreamIDs. */
  readonly recinvsid: boolean;
  /** Private TLB maintenance: ignore broadcast TLBI. */
  readonly ptm: boolean;
  readonly recCfgAts: boolean;
}

export const CR2_E2H = 1 << 0;
export const CR2_RECINVSID = 1 << 1;
export const CR2_PTM = 1 << 2;
export const CR2_REC_CFG_ATS = 1 << 3;

export function decodeCr2(v: number): Cr2 {
  return { e2h: bit32(v, 0), recinvsid: bit32(v, 1), ptm: bit32(v, 2), recCfgAts: bit32(v, 3) };
}

export function encodeCr2(r: Cr2): number {
  let v = 0;
  v = putBit32(v, 0, r.e2h);
  v = putBit32(v, 1, r.recinvsid);
  v = putBit32(v, 2, r.ptm);
  v = putBit32(v, 3, r.recCfgAts);
  return v;
}

/** SMMU_STATUSR. */
export interface Statusr {
  readonly dormant: boolean;
}

export function decodeStatusr(v: number): Statusr {
  return { dormant: bit32(v, 0) };
}

export function encodeStatusr(r: Statusr): number {
  return putBit32(0, 0, r.dormant);
}

/**
 * SMMU_GBPA: attributes for transactions while SMMUEN = 0. MemAttr[3:0] is not in the
 * reference's list but is in the spec register (IHI 0070, SMMU_GBPA) next to MTCFG, which it
 * qualifies; it is decoded so that a write/read-back is lossless.
 */
export interface Gbpa {
  readonly memattr: number;
  readonly mtcfg: boolean;
  readonly alloccfg: number;
  readonly shcfg: number;
  readonly privcfg: number;
  readonly instcfg: number;
  readonly abort: boolean;
  readonly update: boolean;
}

export const GBPA_UPDATE = 0x8000_0000;
export const GBPA_ABORT = 1 << 20;

export function decodeGbpa(v: number): Gbpa {
  return {
    memattr: get32(v, 3, 0),
    mtcfg: bit32(v, 4),
    alloccfg: get32(v, 11, 8),
    shcfg: get32(v, 13, 12),
    privcfg: get32(v, 17, 16),
    instcfg: get32(v, 19, 18),
    abort: bit32(v, 20),
    update: bit32(v, 31),
  };
}

export function encodeGbpa(r: Gbpa): number {
  let v = 0;
  v = put32(v, 3, 0, r.memattr, 'GBPA.MemAttr');
  v = putBit32(v, 4, r.mtcfg);
  v = put32(v, 11, 8, r.alloccfg, 'GBPA.ALLOCCFG');
  v = put32(v, 13, 12, r.shcfg, 'GBPA.SHCFG');
  v = put32(v, 17, 16, r.privcfg, 'GBPA.PRIVCFG');
  v = put32(v, 19, 18, r.instcfg, 'GBPA.INSTCFG');
  v = putBit32(v, 20, r.abort);
  v = putBit32(v, 31, r.update);
  return v;
}

/** SMMU_IRQ_CTRL and SMMU_IRQ_CTRLACK share a layout. */
export interface IrqCtrl {
  readonly gerrorIrqen: boolean;
  readonly priqIrqen: boolean;
  readonly evtqIrqen: boolean;
}

export function decodeIrqCtrl(v: number): IrqCtrl {
  return { gerrorIrqen: bit32(v, 0), priqIrqen: bit32(v, 1), evtqIrqen: bit32(v, 2) };
}

export function encodeIrqCtrl(r: IrqCtrl): number {
  return putBit32(putBit32(putBit32(0, 0, r.gerrorIrqen), 1, r.priqIrqen), 2, r.evtqIrqen);
}

/**
 * SMMU_GERROR / SMMU_GERRORN (§1.6). An error is active while the two registers differ in its
 * bit; hardware toggles GERROR to raise, software writes GERRORN := GERROR to acknowledge.
 */
export interface Gerror {
  readonly cmdqErr: boolean;
  readonly evtqAbtErr: boolean;
  readonly priqAbtErr: boolean;
  readonly msiCmdqAbtErr: boolean;
  readonly msiEvtqAbtErr: boolean;
  readonly msiPriqAbtErr: boolean;
  readonly msiGerrorAbtErr: boolean;
  readonly sfmErr: boolean;
  readonly cmdqpErr: boolean;
  readonly dptErr: boolean;
}

export const GERROR_BIT = Object.freeze({
  CMDQ_ERR: 1 << 0,
  EVTQ_ABT_ERR: 1 << 2,
  PRIQ_ABT_ERR: 1 << 3,
  MSI_CMDQ_ABT_ERR: 1 << 4,
  MSI_EVTQ_ABT_ERR: 1 << 5,
  MSI_PRIQ_ABT_ERR: 1 << 6,
  MSI_GERROR_ABT_ERR: 1 << 7,
  SFM_ERR: 1 << 8,
  CMDQP_ERR: 1 << 9,
  DPT_ERR: 1 << 10,
} as const);

/** Every bit GERROR defines. */
export const GERROR_MASK = Object.values(GERROR_BIT).reduce((a, b) => a | b, 0);

export function decodeGerror(v: number): Gerror {
  return {
    cmdqErr: bit32(v, 0),
    evtqAbtErr: bit32(v, 2),
    priqAbtErr: bit32(v, 3),
    msiCmdqAbtErr: bit32(v, 4),
    msiEvtqAbtErr: bit32(v, 5),
    msiPriqAbtErr: bit32(v, 6),
    msiGerrorAbtErr: bit32(v, 7),
    sfmErr: bit32(v, 8),
    cmdqpErr: bit32(v, 9),
    dptErr: bit32(v, 10),
  };
}

export function encodeGerror(r: Gerror): number {
  let v = 0;
  v = putBit32(v, 0, r.cmdqErr);
  v = putBit32(v, 2, r.evtqAbtErr);
  v = putBit32(v, 3, r.priqAbtErr);
  v = putBit32(v, 4, r.msiCmdqAbtErr);
  v = putBit32(v, 5, r.msiEvtqAbtErr);
  v = putBit32(v, 6, r.msiPriqAbtErr);
  v = putBit32(v, 7, r.msiGerrorAbtErr);
  v = putBit32(v, 8, r.sfmErr);
  v = putBit32(v, 9, r.cmdqpErr);
  v = putBit32(v, 10, r.dptErr);
  return v;
}

/** The mask of errors that are active (raised and not yet acknowledged). */
export function gerrorActive(gerror: number, gerrorn: number): number {
  return ((gerror ^ gerrorn) & GERROR_MASK) >>> 0;
}

// --- MSI configuration (GERROR/EVTQ/PRIQ_IRQ_CFG0..2) ----------------------------------------

/** *_IRQ_CFG0: the MSI target address, bits [51:2] (Linux mask; spec [55:2], 55:52 RES0 ≤ v3.3). */
export interface IrqCfg0 {
  readonly addr: number;
}

const IRQ_CFG0_ADDR = f('addr', 0, 51, 2, 'addr');

export function decodeIrqCfg0(v: U64): IrqCfg0 {
  return { addr: decodeField([v], IRQ_CFG0_ADDR) as number };
}

export function encodeIrqCfg0(r: IrqCfg0): U64 {
  return encodeField(u64(0, 0), IRQ_CFG0_ADDR, r.addr, 'IRQ_CFG0');
}

/** *_IRQ_CFG1 is the 32-bit MSI payload: the register value is the data. */
export function decodeIrqCfg1(v: number): { readonly data: number } {
  return { data: v >>> 0 };
}

export function encodeIrqCfg1(r: { readonly data: number }): number {
  return put32(0, 31, 0, r.data, 'IRQ_CFG1.DATA');
}

/** *_IRQ_CFG2: MSI memory attributes (MemAttr encoding as STE.MemAttr) and shareability. */
export interface IrqCfg2 {
  readonly memattr: number;
  readonly sh: number;
}

/** Linux programs Device-nGnRE for MSIs (§1.9 step 8). */
export const MEMATTR_DEVICE_NGNRE = 0x1;
/** Normal inner/outer write-back: Linux's CMD_SYNC MSIAttr (§3.2). */
export const MEMATTR_OIWB = 0xf;

export function decodeIrqCfg2(v: number): IrqCfg2 {
  return { memattr: get32(v, 3, 0), sh: get32(v, 5, 4) };
}

export function encodeIrqCfg2(r: IrqCfg2): number {
  return put32(put32(0, 3, 0, r.memattr, 'IRQ_CFG2.MEMATTR'), 5, 4, r.sh, 'IRQ_CFG2.SH');
}

// --- Stream table and queue base registers (§1.7) --------------------------------------------

/**
 * SMMU_STRTAB_BASE: ADDR[51:6] as Linux masks it. The spec field reaches bit 55, but 55:52 are
 * RES0 up to SMMUv3.3 and an address there is not exact as a number, so they are not decoded.
 */
export interface StrtabBase {
  readonly ra: boolean;
  readonly addr: number;
}

const STRTAB_BASE_ADDR = f('addr', 0, 51, 6, 'addr');
const BASE_ALLOC_HINT = flag('hint', 0, 62);
const QUEUE_BASE_ADDR = f('addr', 0, 51, 5, 'addr');
const QUEUE_BASE_LOG2SIZE = f('log2size', 0, 4, 0);

export function decodeStrtabBase(v: U64): StrtabBase {
  return { ra: decodeField([v], BASE_ALLOC_HINT) as boolean, addr: decodeField([v], STRTAB_BASE_ADDR) as number };
}

export function encodeStrtabBase(r: StrtabBase): U64 {
  return encodeField(encodeField(u64(0, 0), BASE_ALLOC_HINT, r.ra, 'STRTAB_BASE'), STRTAB_BASE_ADDR, r.addr, 'STRTAB_BASE');
}

export const STRTAB_FMT_LINEAR = 0;
export const STRTAB_FMT_2LVL = 1;

/** SMMU_STRTAB_BASE_CFG. */
export interface StrtabBaseCfg {
  readonly fmt: number;
  readonly split: number;
  readonly log2size: number;
}

export function decodeStrtabBaseCfg(v: number): StrtabBaseCfg {
  return { fmt: get32(v, 17, 16), split: get32(v, 10, 6), log2size: get32(v, 5, 0) };
}

export function encodeStrtabBaseCfg(r: StrtabBaseCfg): number {
  let v = 0;
  v = put32(v, 17, 16, r.fmt, 'STRTAB_BASE_CFG.FMT');
  v = put32(v, 10, 6, r.split, 'STRTAB_BASE_CFG.SPLIT');
  v = put32(v, 5, 0, r.log2size, 'STRTAB_BASE_CFG.LOG2SIZE');
  return v;
}

/**
 * SPLIT values other than 6, 8 and 10 are treated as 6 (§1.7, SPEC 6.3.25). The model
 * interprets the register through this; the decoder keeps the raw value.
 */
export function effectiveStrtabSplit(split: number): number {
  return split === 8 || split === 10 ? split : 6;
}

/** SMMU_CMDQ_BASE: RA = read-allocate hint. */
export interface CmdqBase {
  readonly ra: boolean;
  readonly addr: number;
  readonly log2size: number;
}

/** SMMU_EVTQ_BASE / SMMU_PRIQ_BASE: WA = write-allocate hint. */
export interface EvtqBase {
  readonly wa: boolean;
  readonly addr: number;
  readonly log2size: number;
}

function decodeQueueBase(v: U64): { hint: boolean; addr: number; log2size: number } {
  return {
    hint: decodeField([v], BASE_ALLOC_HINT) as boolean,
    addr: decodeField([v], QUEUE_BASE_ADDR) as number,
    log2size: decodeField([v], QUEUE_BASE_LOG2SIZE) as number,
  };
}

function encodeQueueBase(hint: boolean, addr: number, log2size: number, name: string): U64 {
  let w = encodeField(u64(0, 0), BASE_ALLOC_HINT, hint, name);
  w = encodeField(w, QUEUE_BASE_ADDR, addr, name);
  return encodeField(w, QUEUE_BASE_LOG2SIZE, log2size, name);
}

export function decodeCmdqBase(v: U64): CmdqBase {
  const q = decodeQueueBase(v);
  return { ra: q.hint, addr: q.addr, log2size: q.log2size };
}

export function encodeCmdqBase(r: CmdqBase): U64 {
  return encodeQueueBase(r.ra, r.addr, r.log2size, 'CMDQ_BASE');
}

export function decodeEvtqBase(v: U64): EvtqBase {
  const q = decodeQueueBase(v);
  return { wa: q.hint, addr: q.addr, log2size: q.log2size };
}

export function encodeEvtqBase(r: EvtqBase): U64 {
  return encodeQueueBase(r.wa, r.addr, r.log2size, 'EVTQ_BASE');
}

export const decodePriqBase = decodeEvtqBase;
export const encodePriqBase = encodeEvtqBase;

// --- Queue PROD / CONS (§1.7, §4.1) ----------------------------------------------------------

/** Entry sizes in bytes (§1.7). */
export const CMDQ_ENTRY_BYTES = 16;
export const EVTQ_ENTRY_BYTES = 32;
export const PRIQ_ENTRY_BYTES = 16;
/** Largest queue the architecture allows: IDR1.CMDQS/EVTQS ≤ 19 (§1.3). */
export const QUEUE_MAX_LOG2SIZE = 19;

export const CERROR_NONE = 0;
export const CERROR_ILL = 1;
export const CERROR_ABT = 2;
export const CERROR_ATC_INV_SYNC = 3;

/** Index and wrap bit of a PROD/CONS register for a queue of 2^log2size entries. */
export interface QueuePointer {
  readonly index: number;
  readonly wrap: boolean;
}

export interface CmdqCons extends QueuePointer {
  /** CMDQ_CONS.ERR[30:24]: a CERROR_* code. */
  readonly err: number;
}

export interface EvtqProd extends QueuePointer {
  /** Toggled by the SMMU when it drops an event because the queue was full (§5.3). */
  readonly ovflg: boolean;
}

export interface EvtqCons extends QueuePointer {
  /** Software acknowledges an overflow by making this equal to EVTQ_PROD.OVFLG. */
  readonly ovackflg: boolean;
}

function checkLog2size(log2size: number): void {
  if (!Number.isInteger(log2size) || log2size < 0 || log2size > QUEUE_MAX_LOG2SIZE) {
    throw new RangeError(`queue log2size ${log2size} outside 0..${QUEUE_MAX_LOG2SIZE}`);
  }
}

/** The index and wrap fields as one number in [0, 2^(log2size+1)): the form the arithmetic uses. */
export function queuePointerBits(value: number, log2size: number): number {
  checkLog2size(log2size);
  return (value >>> 0) % 2 ** (log2size + 1);
}

function decodePointer(value: number, log2size: number): QueuePointer {
  const p = queuePointerBits(value, log2size);
  return { index: p % 2 ** log2size, wrap: p >= 2 ** log2size };
}

function encodePointer(r: QueuePointer, log2size: number, name: string): number {
  checkLog2size(log2size);
  if (!Number.isInteger(r.index) || r.index < 0 || r.index >= 2 ** log2size) {
    throw new RangeError(`${name}: index ${r.index} does not fit a queue of 2^${log2size}`);
  }
  return r.index + (r.wrap ? 2 ** log2size : 0);
}

export function decodeCmdqProd(value: number, log2size: number): QueuePointer {
  return decodePointer(value, log2size);
}

export function encodeCmdqProd(r: QueuePointer, log2size: number): number {
  return encodePointer(r, log2size, 'CMDQ_PROD');
}

export function decodeCmdqCons(value: number, log2size: number): CmdqCons {
  return { ...decodePointer(value, log2size), err: get32(value, 30, 24) };
}

export function encodeCmdqCons(r: CmdqCons, log2size: number): number {
  return put32(encodePointer(r, log2size, 'CMDQ_CONS'), 30, 24, r.err, 'CMDQ_CONS.ERR');
}

export function decodeEvtqProd(value: number, log2size: number): EvtqProd {
  return { ...decodePointer(value, log2size), ovflg: bit32(value, 31) };
}

export function encodeEvtqProd(r: EvtqProd, log2size: number): number {
  return putBit32(encodePointer(r, log2size, 'EVTQ_PROD'), 31, r.ovflg);
}

export function decodeEvtqCons(value: number, log2size: number): EvtqCons {
  return { ...decodePointer(value, log2size), ovackflg: bit32(value, 31) };
}

export function encodeEvtqCons(r: EvtqCons, log2size: number): number {
  return putBit32(encodePointer(r, log2size, 'EVTQ_CONS'), 31, r.ovackflg);
}

/** The PRI queue pointers have the event queue's layout (OVFLG / OVACKFLG at bit 31). */
export const decodePriqProd = decodeEvtqProd;
export const encodePriqProd = encodeEvtqProd;
export const decodePriqCons = decodeEvtqCons;
export const encodePriqCons = encodeEvtqCons;

// Queue arithmetic on packed pointers (index | wrap << log2size), as software shadows keep them.
// Other register bits (ERR, OVFLG) are ignored by every function here.

export function queueIndex(p: number, log2size: number): number {
  return queuePointerBits(p, log2size) % 2 ** log2size;
}

export function queueWrap(p: number, log2size: number): boolean {
  return queuePointerBits(p, log2size) >= 2 ** log2size;
}

export function queuePointer(index: number, wrap: boolean, log2size: number): number {
  return encodePointer({ index, wrap }, log2size, 'queue pointer');
}

/** Empty: same index, same wrap (§4.1). */
export function queueEmpty(prod: number, cons: number, log2size: number): boolean {
  return queuePointerBits(prod, log2size) === queuePointerBits(cons, log2size);
}

/** Full: same index, different wrap (§4.1). */
export function queueFull(prod: number, cons: number, log2size: number): boolean {
  return queueIndex(prod, log2size) === queueIndex(cons, log2size) && queueWrap(prod, log2size) !== queueWrap(cons, log2size);
}

/** Entries produced and not yet consumed, 0..2^log2size. */
export function queueUsed(prod: number, cons: number, log2size: number): number {
  const span = 2 ** (log2size + 1);
  return (queuePointerBits(prod, log2size) - queuePointerBits(cons, log2size) + span) % span;
}

/** Free slots, 0..2^log2size. */
export function queueFree(prod: number, cons: number, log2size: number): number {
  return 2 ** log2size - queueUsed(prod, cons, log2size);
}

/** Advances a pointer by `n` entries, toggling the wrap bit each time the index wraps. */
export function queueIncrement(p: number, log2size: number, n = 1): number {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`queue increment ${n} must be a non-negative integer`);
  const span = 2 ** (log2size + 1);
  return (queuePointerBits(p, log2size) + (n % span)) % span;
}

/**
 * Whether the entry at `p` has been consumed by a consumer now at `cons`, assuming `p` was
 * produced no more than one lap ago (Linux `queue_consumed`, §4.2): same lap and cons past
 * the index, or cons already on the next lap and not past the index again.
 */
export function queueConsumed(cons: number, p: number, log2size: number): boolean {
  const ci = queueIndex(cons, log2size);
  const pi = queueIndex(p, log2size);
  return queueWrap(cons, log2size) === queueWrap(p, log2size) ? ci > pi : ci <= pi;
}

/** Byte address of the entry a PROD/CONS pointer `p` designates in a queue at `base`. */
export function queueEntryAddress(base: number, p: number, log2size: number, entryBytes: number): number {
  return base + queueIndex(p, log2size) * entryBytes;
}
