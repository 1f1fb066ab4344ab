/**
 * The known QEMU 10.0.2 bugs, as one filter over the first difference of a case. Each entry
 * names the QEMU source line and is written up for upstream in qemu-deviations.md. A case whose
 * first difference matches counts as a known deviation rather than a failure (QEMU's state then
 * differs from the model's, so the rest of that case is not compared).
 *
 * Only departures from the architecture are here. Where QEMU makes a legal choice, the model's
 * permissive mode copies it instead (impl/hw/smmu/index.ts), and encodings that crash QEMU or
 * that it decodes against the architecture are kept out of the generators (generators.ts).
 */
import { GERROR_BIT } from '../../impl/arch/smmu/registers.js';
import { type ModelXfer, type Obs } from './replay.js';

export interface KnownDeviation {
  readonly id: string;
  /** QEMU source of the behaviour. */
  readonly source: string;
  readonly summary: string;
  /** Whether the first difference `model` vs `qemu` at transaction `x` is this bug. */
  readonly matches: (x: ModelXfer, model: Obs, qemu: Obs) => boolean;
}

/** The model's event list minus exactly one record matching `pred` equals QEMU's. */
function oneEventMissing(model: Obs, qemu: Obs, pred: (e: string) => boolean): boolean {
  if (model.k !== 'events' || qemu.k !== 'events') return false;
  const m = JSON.parse(model.v) as string[];
  const q = JSON.parse(qemu.v) as string[];
  if (m.length !== q.length + 1) return false;
  for (let i = 0; i < m.length; i++) {
    if (!pred(m[i] as string)) continue;
    const rest = [...m.slice(0, i), ...m.slice(i + 1)];
    if (JSON.stringify(rest) === qemu.v) return true;
  }
  return false;
}

/**
 * The model wrote one record more than QEMU, but into a full event queue: it was dropped and
 * raised GERROR.EVTQ_ABT_ERR (permissive mode, as QEMU does on overflow), so the only trace of
 * the record QEMU never wrote is that bit in GERROR ^ GERRORN, set on the model's side alone.
 */
function recordLostToFullQueue(model: Obs, qemu: Obs): boolean {
  if (model.k !== 'regs' || qemu.k !== 'regs') return false;
  const gerror = (v: string): number | undefined => {
    const m = /GERROR\^N=0x([0-9a-f]+)/.exec(v);
    return m === null ? undefined : parseInt(m[1] as string, 16);
  };
  const gm = gerror(model.v);
  const gq = gerror(qemu.v);
  if (gm === undefined || gq === undefined || (gm ^ gq) !== GERROR_BIT.EVTQ_ABT_ERR || (gm & GERROR_BIT.EVTQ_ABT_ERR) === 0) return false;
  return model.v.replace(/GERROR\^N=0x[0-9a-f]+/, '') === qemu.v.replace(/GERROR\^N=0x[0-9a-f]+/, '');
}

/** The model has exactly one record matching `pred` that QEMU lacks: in the list, or lost to a full queue. */
function oneRecordMissing(model: Obs, qemu: Obs, pred: (e: string) => boolean): boolean {
  return oneEventMissing(model, qemu, pred) || recordLostToFullQueue(model, qemu);
}

const hex = (n: number): string => '0x' + n.toString(16);

export const KNOWN_QEMU_BUGS: readonly KnownDeviation[] = [
  {
    id: 'iotlb-hit-permission',
    // QEMU 10.0.2 hw/arm/smmu-common.c:801-811 (smmu_translate, IOTLB hit path)
    source: 'hw/arm/smmu-common.c:801-811 (smmu_translate: IOTLB-hit permission check) with hw/arm/smmuv3.c:37-40 (PTW_RECORD_FAULT)',
    summary: 'a write hitting a read-only IOTLB entry, or a read hitting a write-only one, is refused without an F_PERMISSION record',
    matches: (x, model, qemu) =>
      x.permissionOnHit && oneRecordMissing(model, qemu, (e) => e.startsWith('F_PERMISSION ') && e.includes(' s2=1') && e.includes(`inputAddr=${hex(x.iova)} `)),
  },
  {
    id: 'addr-size-beyond-ias',
    // QEMU 10.0.2 hw/arm/smmu-common.c:746-751 (smmu_ptw: stage-1 ADDR_SIZE), hw/arm/smmuv3.c:982-988 (recorded only if CD.R)
    source: 'hw/arm/smmu-common.c:746-751 (smmu_ptw) with hw/arm/smmuv3.c:37-40 and 982-988 (PTW_RECORD_FAULT uses CD.R for stage 1)',
    summary: 'an input address at or beyond IAS through a stage-2-only STE is aborted without the stage-1 F_ADDR_SIZE record',
    matches: (x, model, qemu) => x.reason === 'addr_size_s1' && oneRecordMissing(model, qemu, (e) => e.startsWith('F_ADDR_SIZE ') && e.includes(' s2=0')),
  },
  {
    id: 's2t0sz-checked-against-s2ps',
    // QEMU 10.0.2 hw/arm/smmuv3.c:398-409 (s2t0sz_valid uses the effective S2PS where the architecture says IAS), called at :489
    source: 'hw/arm/smmuv3.c:398-409 (s2t0sz_valid) called from decode_ste_s2_cfg at :489',
    summary: 'a stage-2 STE whose input range 64 − S2T0SZ exceeds its effective S2PS (but not IAS) is rejected with C_BAD_STE',
    matches: (x) => x.ipaWiderThanPs,
  },
  {
    id: 'l1std-span-not-checked',
    // QEMU 10.0.2 hw/arm/smmuv3.c:677-699 (smmu_find_ste, 2-level) and hw/arm/smmuv3-internal.h:652-661 (l1std_l2ptr, L1STD_SPAN)
    source: 'hw/arm/smmuv3.c:677-699 (smmu_find_ste: max_l2_ste = 2^Span − 1, C_BAD_STE beyond it) with hw/arm/smmuv3-internal.h:652-661 (l1std_l2ptr keeps bit 5)',
    summary: 'an L1STD whose Span makes the StreamID invalid (index ≥ 2^(Span−1), Span > SPLIT + 1 or reserved) is followed anyway, or gives C_BAD_STE instead of C_BAD_STREAMID',
    matches: (x) => x.l1StdOutsideArch,
  },
];

export function classify(x: ModelXfer | undefined, model: Obs, qemu: Obs): KnownDeviation | undefined {
  if (x === undefined) return undefined;
  return KNOWN_QEMU_BUGS.find((d) => d.matches(x, model, qemu));
}
