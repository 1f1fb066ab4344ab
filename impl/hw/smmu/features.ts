/**
 * What the modelled SMMU implements, as configuration, and the ID register values that advertise
 * it (smmuv3-arch.md §1.2–§1.5, §1.10). Every feature the hypervisor's driver or the design
 * variants care about is a knob here; everything else is fixed at the value an AArch64-only,
 * Non-secure-only, terminate-model SMMU has.
 */
import { type GranuleKind, paSizeEncoding } from '../../arch/granule.js';
import { type CommandFeatures } from '../../arch/smmu/commands.js';
import {
  IDR0_TTF_AARCH64,
  IIDR_IMPLEMENTER_ARM,
  IIDR_PRODUCT_MMU600,
  IIDR_PRODUCT_MMU700,
  type Iidr,
  STALL_MODEL_TERMINATE_ONLY,
  TTENDIAN_LE,
  decodeAidr,
  decodeIdr0,
  decodeIdr1,
  decodeIdr3,
  decodeIdr5,
  encodeAidr,
  encodeIdr0,
  encodeIdr1,
  encodeIdr3,
  encodeIdr5,
  encodeIidr,
} from '../../arch/smmu/registers.js';
import { type SteCheckFeatures, steFeaturesFromIdRegs } from '../../arch/smmu/ste.js';

export interface SmmuFeatures {
  /** Translation granules (IDR5.GRAN4K/16K/64K). */
  readonly granules: readonly GranuleKind[];
  /** Output address size in bits (IDR5.OAS); with AArch64-only tables IAS equals it (§1.8). */
  readonly oasBits: number;
  /** IDR3.RIL: range invalidation, TG/TTL honoured. */
  readonly ril: boolean;
  /** IDR3.BBML: 0, 1 or 2. */
  readonly bbml: number;
  /** IDR0.COHACC. */
  readonly cohacc: boolean;
  /** IDR0.ATS. */
  readonly ats: boolean;
  /** IDR0.VMID16. */
  readonly vmid16: boolean;
  /** IDR0.ST_LEVEL = 1. */
  readonly twoLevelStrtab: boolean;
  /** IDR0.SEV. */
  readonly sev: boolean;
  /** IDR0.MSI. */
  readonly msi: boolean;
  /** IDR0.S1P. Stage-1 and nested STEs translate (CD 0 only; nested.ts). */
  readonly s1p: boolean;
  /** IDR0.S2P. */
  readonly s2p: boolean;
  /** SMMU_IIDR, so that drivers can apply MMU-600/700 errata (§1.5). */
  readonly iidr: Iidr;
  /** IDR1.SIDSIZE. */
  readonly sidBits: number;
  /** IDR1.CMDQS and IDR1.EVTQS: log2 of the largest queues. */
  readonly cmdqLog2Max: number;
  readonly evtqLog2Max: number;
  /** AIDR.ArchMinorRev (v3.x). */
  readonly archMinorRev: number;
  /** GBPA.ABORT at reset: IMPLEMENTATION DEFINED; QEMU resets to bypass (§1.6). */
  readonly gbpaResetAbort: boolean;
}

export const IIDR_MMU600_R0P0: Iidr = Object.freeze({ productId: IIDR_PRODUCT_MMU600, variant: 0, revision: 0, implementer: IIDR_IMPLEMENTER_ARM });
export const IIDR_MMU600_R2P0: Iidr = Object.freeze({ productId: IIDR_PRODUCT_MMU600, variant: 2, revision: 0, implementer: IIDR_IMPLEMENTER_ARM });
export const IIDR_MMU700_R1P1: Iidr = Object.freeze({ productId: IIDR_PRODUCT_MMU700, variant: 1, revision: 1, implementer: IIDR_IMPLEMENTER_ARM });

/** An SMMUv3.2 with everything pKVM uses: 4K/16K/64K, 48-bit OAS, RIL, BBML1, ATS, MSI, SEV. */
export const DEFAULT_FEATURES: SmmuFeatures = Object.freeze({
  granules: Object.freeze(['4K', '16K', '64K'] as GranuleKind[]),
  oasBits: 48,
  ril: true,
  bbml: 1,
  cohacc: true,
  ats: true,
  vmid16: true,
  twoLevelStrtab: true,
  sev: true,
  msi: true,
  s1p: true,
  s2p: true,
  iidr: IIDR_MMU600_R2P0,
  sidBits: 16,
  cmdqLog2Max: 19,
  evtqLog2Max: 19,
  archMinorRev: 2,
  gbpaResetAbort: false,
});

/**
 * What is wrong with a feature set, architecturally: one `{ field, message }` per problem, in the
 * order of the fields (empty when the set is legal). Machine files are checked with it before
 * anything is built (properties/codecs.ts); resolveFeatures throws on the first problem.
 */
export function featureErrors(partial: Partial<SmmuFeatures> = {}): { field: string; message: string }[] {
  const bbml = partial.bbml ?? DEFAULT_FEATURES.bbml;
  const archMinorRev = partial.archMinorRev ?? (bbml === 0 ? 1 : DEFAULT_FEATURES.archMinorRev);
  const f: SmmuFeatures = { ...DEFAULT_FEATURES, ...partial, bbml, archMinorRev };
  const out: { field: string; message: string }[] = [];
  const bad = (field: string, message: string) => out.push({ field, message });
  const int = (v: unknown, lo: number, hi: number) => typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi;
  if (!Array.isArray(f.granules) || f.granules.length === 0) bad('granules', 'an SMMU implements at least one granule (a non-empty list of "4K", "16K", "64K")');
  else if (f.granules.some((g) => g !== '4K' && g !== '16K' && g !== '64K') || new Set(f.granules).size !== f.granules.length) bad('granules', 'distinct granules among "4K", "16K", "64K"');
  if (typeof f.oasBits !== 'number' || paSizeEncoding(f.oasBits) === undefined) bad('oasBits', `OAS ${String(f.oasBits)} is not an architected size (32, 36, 40, 42, 44, 48 or 52)`);
  if (!int(bbml, 0, 2)) bad('bbml', `BBML ${String(bbml)} is not 0, 1 or 2`);
  if (!int(archMinorRev, 0, 3)) bad('archMinorRev', `SMMUv3.${String(archMinorRev)} is not a revision (0..3)`);
  else if (bbml === 0 && archMinorRev >= 2) bad('bbml', 'SMMUv3.2 and later must advertise BBML1 or BBML2 (§1.4)');
  if (!int(f.sidBits, 0, 32)) bad('sidBits', `SIDSIZE ${String(f.sidBits)} out of 0..32`);
  if (!int(f.cmdqLog2Max, 0, 19)) bad('cmdqLog2Max', `queue size ${String(f.cmdqLog2Max)} out of 0..19`);
  if (!int(f.evtqLog2Max, 0, 19)) bad('evtqLog2Max', `queue size ${String(f.evtqLog2Max)} out of 0..19`);
  if (!f.s1p && !f.s2p) bad('s2p', 'an SMMU translates at some stage (s1p or s2p)');
  const iidr = f.iidr as Partial<Iidr> | null;
  if (typeof iidr !== 'object' || iidr === null) bad('iidr', 'an object { productId, variant, revision, implementer }');
  else {
    for (const [key, bits] of [['productId', 12], ['variant', 4], ['revision', 4], ['implementer', 12]] as const) {
      if (!int(iidr[key], 0, 2 ** bits - 1)) bad(`iidr.${key}`, `an integer in [0, 2^${bits})`);
    }
  }
  return out;
}

/**
 * Fills in defaults and rejects configurations no SMMU can have (featureErrors). These are
 * test-author inputs, not host-controlled values, so a bad one throws. BBML0 is only legal
 * before SMMUv3.2 (§1.4), so when BBML0 is asked for without a revision the revision defaults to
 * v3.1.
 */
export function resolveFeatures(partial: Partial<SmmuFeatures> = {}): SmmuFeatures {
  const errors = featureErrors(partial);
  if (errors.length > 0) throw new RangeError(`features.${errors[0]?.field}: ${errors[0]?.message}`);
  const bbml = partial.bbml ?? DEFAULT_FEATURES.bbml;
  const archMinorRev = partial.archMinorRev ?? (bbml === 0 ? 1 : DEFAULT_FEATURES.archMinorRev);
  const f: SmmuFeatures = { ...DEFAULT_FEATURES, ...partial, bbml, archMinorRev };
  return Object.freeze({ ...f, granules: Object.freeze([...f.granules]) });
}

export interface IdRegisterValues {
  readonly idr0: number;
  readonly idr1: number;
  readonly idr2: number;
  readonly idr3: number;
  readonly idr4: number;
  readonly idr5: number;
  readonly iidr: number;
  readonly aidr: number;
}

export function idRegisterValues(f: SmmuFeatures): IdRegisterValues {
  const idr0 = encodeIdr0({
    s2p: f.s2p,
    s1p: f.s1p,
    ttf: IDR0_TTF_AARCH64,
    cohacc: f.cohacc,
    btm: false,
    httu: 0,
    dormhint: false,
    hyp: false,
    ats: f.ats,
    // Split-stage ATS (EATS = 0b10) is not modelled: advertise that it is not supported.
    ns1ats: true,
    asid16: true,
    msi: f.msi,
    sev: f.sev,
    atos: false,
    pri: false,
    vmw: false,
    vmid16: f.vmid16,
    cd2l: false,
    vatos: false,
    ttendian: TTENDIAN_LE,
    atsrecerr: false,
    stallModel: STALL_MODEL_TERMINATE_ONLY,
    termModel: true,
    stLevel: f.twoLevelStrtab ? 1 : 0,
    rmeImpl: false,
  });
  const idr1 = encodeIdr1({
    sidsize: f.sidBits,
    ssidsize: 0,
    priqs: 0,
    evtqs: f.evtqLog2Max,
    cmdqs: f.cmdqLog2Max,
    attrPermsOvr: false,
    attrTypesOvr: false,
    rel: false,
    queuesPreset: false,
    tablesPreset: false,
    ecmdq: false,
  });
  const idr3 = encodeIdr3({
    had: false,
    pbha: false,
    xnx: false,
    pps: false,
    mpam: false,
    fwb: false,
    stt: false,
    ril: f.ril,
    bbml: f.bbml,
    e0pd: false,
    ptwnnc: false,
    dpt: false,
  });
  const idr5 = encodeIdr5({
    oas: paSizeEncoding(f.oasBits) ?? 5,
    gran4k: f.granules.includes('4K'),
    gran16k: f.granules.includes('16K'),
    gran64k: f.granules.includes('64K'),
    ds: false,
    d128: false,
    vax: 0,
    stallMax: 0,
  });
  return {
    idr0,
    idr1,
    idr2: 0,
    idr3,
    idr4: 0,
    idr5,
    iidr: encodeIidr(f.iidr),
    aidr: encodeAidr({ archMajorRev: 0, archMinorRev: f.archMinorRev }),
  };
}

/** SteIllegal's inputs, derived from the same ID register values the host reads. */
export function steCheckFeatures(f: SmmuFeatures): SteCheckFeatures {
  const ids = idRegisterValues(f);
  return steFeaturesFromIdRegs(decodeIdr0(ids.idr0), decodeIdr1(ids.idr1), decodeIdr3(ids.idr3), decodeIdr5(ids.idr5), decodeAidr(ids.aidr));
}

export function commandFeatures(f: SmmuFeatures): CommandFeatures {
  return { s1p: f.s1p, s2p: f.s2p, hyp: false, ats: f.ats, pri: false, stallModel: STALL_MODEL_TERMINATE_ONLY };
}
