/**
 * `smmu_probe` of the SER-T&E hypervisor driver (pkvm-host-s2-iommu.md §6.10) on top of Linux's
 * ID-register derivation (smmuv3-arch.md §1.8): features, page sizes, OAS/IAS, the MMU-600/700
 * nesting errata by IIDR, and the requirements with their error codes.
 */
import { EINVAL, ENXIO } from '../../arch/errno.js';
import {
  IIDR_IMPLEMENTER_ARM,
  IIDR_PRODUCT_MMU600,
  IIDR_PRODUCT_MMU700,
  decodeIdr0,
  decodeIdr1,
  decodeIdr3,
  idr5Geometry,
  decodeIidr,
} from '../../arch/smmu/registers.js';

/** IDR0.TTENDIAN 0b01 is reserved (0b00 mixed, 0b10 LE only, 0b11 BE only). */
const TTENDIAN_RESERVED = 1;

export interface SmmuFeatures {
  readonly s1p: boolean;
  readonly s2p: boolean;
  readonly nesting: boolean;
  readonly coherent: boolean;
  readonly ats: boolean;
  /** IDR0.HYP, IDR0.PRI and IDR0.STALL_MODEL: what decides whether some commands are legal. */
  readonly hyp: boolean;
  readonly pri: boolean;
  readonly stallModel: number;
  readonly sev: boolean;
  readonly msi: boolean;
  readonly vmid16: boolean;
  readonly twoLevelStrtab: boolean;
  readonly rangeInvalidation: boolean;
  readonly bbml: number;
  readonly sidBits: number;
  readonly cmdqShift: number;
  readonly oas: number;
  readonly ias: number;
  /** Linux pgsize_bitmap: 4K|2M|1G, 16K|32M, 64K|512M, plus 4T with a 52-bit OAS. */
  readonly pgsizeBitmap: number;
}

export type ProbeResult = { readonly ok: true; readonly features: SmmuFeatures } | { readonly ok: false; readonly errno: number; readonly reason: string };

export interface IdRegisters {
  readonly idr0: number;
  readonly idr1: number;
  readonly idr3: number;
  readonly idr5: number;
  readonly iidr: number;
}

/** Whether the IIDR names a part whose nesting is broken (errata 1209401, 2268618/2812531). */
export function nestingErratum(iidr: number): boolean {
  const id = decodeIidr(iidr);
  if (id.implementer !== IIDR_IMPLEMENTER_ARM) return false;
  if (id.productId === IIDR_PRODUCT_MMU600) return id.variant < 2;
  // posted v6-era smmu_nesting_supported: `!(variant < 1 || revision < 1)`, which also refuses
  // e.g. r2p0 (series-as-posted.md §2.11).
  if (id.productId === IIDR_PRODUCT_MMU700) return id.variant < 1 || id.revision < 1;
  return false;
}

/**
 * `firmwareCoherent` stands for the DT/IORT `dma-coherent` property, which wins over IDR0.COHACC
 * in Linux; the hypervisor requires coherency.
 */
export function probeSmmu(regs: IdRegisters, firmwareCoherent: boolean): ProbeResult {
  const idr0 = decodeIdr0(regs.idr0);
  const idr1 = decodeIdr1(regs.idr1);
  const idr3 = decodeIdr3(regs.idr3);
  if (!firmwareCoherent) return { ok: false, errno: -EINVAL, reason: 'the hypervisor driver needs a coherent SMMU (FEAT_COHERENCY)' };
  // posted v6-era smmu_probe: no check of IDR0.TTF (the project's earlier AArch64 check is gone).
  const nesting = idr0.s1p && idr0.s2p && !nestingErratum(regs.iidr);
  if (!nesting) return { ok: false, errno: -ENXIO, reason: idr0.s1p && idr0.s2p ? 'nesting broken by an erratum on this part' : 'needs both stage 1 and stage 2' };
  // posted v6-era: `!(TT_LE | TT_BE)` → -ENXIO, so only the reserved TTENDIAN 0b01 is refused; a
  // big-endian-only SMMU is accepted although the hypervisor writes little-endian tables.
  if (idr0.ttendian === TTENDIAN_RESERVED) return { ok: false, errno: -ENXIO, reason: 'neither little- nor big-endian tables (TTENDIAN reserved)' };
  if (idr1.tablesPreset || idr1.queuesPreset || idr1.rel) return { ok: false, errno: -EINVAL, reason: 'embedded (preset) tables or queues are not supported' };
  const { oas, pgsizeBitmap } = idr5Geometry(regs.idr5);
  const ias = Math.max((idr0.ttf & 1) !== 0 ? 40 : 0, oas);
  const sev = idr0.sev && !(decodeIidr(regs.iidr).productId === IIDR_PRODUCT_MMU600 && decodeIidr(regs.iidr).variant === 0 && decodeIidr(regs.iidr).revision <= 2);
  return {
    ok: true,
    features: {
      s1p: idr0.s1p,
      s2p: idr0.s2p,
      nesting,
      coherent: true,
      ats: idr0.ats,
      hyp: idr0.hyp,
      pri: idr0.pri,
      stallModel: idr0.stallModel,
      sev,
      msi: idr0.msi,
      vmid16: idr0.vmid16,
      twoLevelStrtab: idr0.stLevel === 1 && idr1.sidsize > 8,
      rangeInvalidation: idr3.ril,
      bbml: idr3.bbml,
      sidBits: idr1.sidsize,
      cmdqShift: Math.min(idr1.cmdqs, 19),
      oas,
      ias,
      pgsizeBitmap,
    },
  };
}
