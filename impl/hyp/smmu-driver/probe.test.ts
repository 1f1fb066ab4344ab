/** The posted probe rules that differ from Linux's main driver (series-as-posted.md §2.11). */
import { describe, expect, it } from 'vitest';
import { ENXIO } from '../../arch/errno.js';
import { IIDR_IMPLEMENTER_ARM, IIDR_PRODUCT_MMU700, decodeIdr0, decodeIdr1, encodeIdr0, encodeIdr1, encodeIdr3, encodeIdr5, encodeIidr } from '../../arch/smmu/registers.js';
import { nestingErratum, probeSmmu } from './probe.js';

const idr0 = (over: Partial<ReturnType<typeof decodeIdr0>> = {}) => encodeIdr0({ ...decodeIdr0(0), s1p: true, s2p: true, ttf: 2, cohacc: true, ttendian: 2, stLevel: 1, vmid16: true, ...over });
const idr1 = encodeIdr1({ ...decodeIdr1(0), sidsize: 16, cmdqs: 19, evtqs: 19 });
const idr3 = encodeIdr3({ had: false, pbha: false, xnx: false, pps: false, mpam: false, fwb: false, stt: false, ril: true, bbml: 2, e0pd: false, ptwnnc: false, dpt: false } as never);
const idr5 = encodeIdr5({ oas: 6, gran4k: true, gran16k: false, gran64k: true, ds: false, d128: false, vax: 0, stallMax: 0 });
const mmu700 = (variant: number, revision: number) => encodeIidr({ implementer: IIDR_IMPLEMENTER_ARM, revision, variant, productId: IIDR_PRODUCT_MMU700 } as never);

describe('posted v6-era smmu_probe', () => {
  it('MMU-700: nesting only with variant >= 1 and revision >= 1, so r2p0 is refused (-ENXIO)', () => {
    expect(nestingErratum(mmu700(2, 0))).toBe(true);
    expect(nestingErratum(mmu700(2, 1))).toBe(false);
    expect(probeSmmu({ idr0: idr0(), idr1, idr3, idr5, iidr: mmu700(2, 0) }, true)).toMatchObject({ ok: false, errno: -ENXIO });
  });

  it('accepts a big-endian-only SMMU (TT_BE) and refuses only the reserved TTENDIAN encoding', () => {
    expect(probeSmmu({ idr0: idr0({ ttendian: 3 }), idr1, idr3, idr5, iidr: 0 }, true).ok).toBe(true);
    expect(probeSmmu({ idr0: idr0({ ttendian: 1 }), idr1, idr3, idr5, iidr: 0 }, true)).toMatchObject({ ok: false, errno: -ENXIO });
  });

  it('does not look at IDR0.TTF', () => {
    expect(probeSmmu({ idr0: idr0({ ttf: 1 }), idr1, idr3, idr5, iidr: 0 }, true).ok).toBe(true);
  });
});
