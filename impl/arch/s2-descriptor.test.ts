import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { GRANULES, GRANULE_4K, GRANULE_16K, GRANULE_64K, LAST_LEVEL, leafAllowedAt, levelShift, levelSize } from './granule.js';
import {
  DESC_AF,
  DESC_S2AP_R,
  DESC_S2AP_W,
  INVALID_TYPE_GUEST_POISONED,
  INVALID_TYPE_HOST_DONATION,
  INVALID_TYPE_LOCKED,
  LEGACY_LOCKED_BIT,
  MT_S2_DEVICE_NGNRE,
  MT_S2_NORMAL,
  SH_INNER,
  decodeInvalidEntry,
  decodeS2Descriptor,
  descOutputAddress,
  encodeLeafDesc,
  encodeLegacyAnnotation,
  encodeTableDesc,
  encodeTypedAnnotation,
  isLeafDesc,
  isLockedEntry,
  isTableDesc,
  isValidLo,
  lockedMarker,
  maxOutputAddressBits,
  packOutputAddress,
  packOutputAddressHi,
  packOutputAddressLo,
  s2Format,
  type S2Format,
  type S2LeafAttrs,
} from './s2-descriptor.js';
import { type U64 } from './u64.js';

// --- BigInt oracle (tests only) ---

function big(v: U64): bigint {
  return (BigInt(v.hi) << 32n) | BigInt(v.lo);
}
function fromBig(x: bigint): U64 {
  return { lo: Number(x & 0xffff_ffffn), hi: Number((x >> 32n) & 0xffff_ffffn) };
}
function genmask(msb: number, lsb: number): bigint {
  return ((1n << BigInt(msb - lsb + 1)) - 1n) << BigInt(lsb);
}

/** phys_to_pte from reference §1.5, in BigInt. */
function refPackOa(fmt: S2Format, pa: number): bigint {
  const p = BigInt(pa);
  const shift = fmt.granule.shift;
  if (fmt.lpa2) return (p & genmask(49, shift)) | (((p >> 50n) & 3n) << 8n);
  let pte = p & genmask(47, shift);
  if (shift === 16) pte |= ((p >> 48n) & 0xfn) << 12n;
  return pte;
}

/** Bits of a leaf descriptor this format gives meaning to (everything else is RES0/ignored). */
function refLeafFieldMask(fmt: S2Format, level: number): bigint {
  let m = 0b11n | genmask(7, 2) | (1n << 10n) | (1n << 11n) | (1n << 51n) | (1n << 52n) | genmask(58, 55) | genmask(62, 59);
  m |= fmt.xnx ? genmask(54, 53) : 1n << 54n;
  if (!fmt.lpa2) m |= genmask(9, 8);
  if (level !== LAST_LEVEL) m |= 1n << 16n;
  const shift = levelShift(fmt.granule, level);
  if (fmt.lpa2) m |= genmask(49, shift) | genmask(9, 8);
  else {
    m |= genmask(47, shift);
    if (fmt.granule.shift === 16) m |= genmask(15, 12);
  }
  return m;
}

function refLeaf(fmt: S2Format, level: number, oa: number, a: S2LeafAttrs): bigint {
  let d = refPackOa(fmt, oa) | (level === LAST_LEVEL ? 0b11n : 0b01n);
  d |= BigInt(a.memAttr) << 2n;
  if (a.read) d |= 1n << 6n;
  if (a.write) d |= 1n << 7n;
  if (!fmt.lpa2) d |= BigInt(a.sh) << 8n;
  if (a.af) d |= 1n << 10n;
  if (a.fnxs) d |= 1n << 11n;
  if (a.nT && level !== LAST_LEVEL) d |= 1n << 16n;
  if (a.dbm) d |= 1n << 51n;
  if (a.contiguous) d |= 1n << 52n;
  d |= BigInt(fmt.xnx ? a.xn : a.xn & 2) << 53n;
  d |= BigInt(a.sw) << 55n;
  d |= BigInt(a.pbha) << 59n;
  return d;
}

function allFormats(): S2Format[] {
  const out: S2Format[] = [];
  for (const g of GRANULES) {
    for (const lpa2 of g.kind === '64K' ? [false] : [false, true]) {
      for (const xnx of [false, true]) for (const annotation of ['typed', 'legacy'] as const) out.push(s2Format(g, { lpa2, xnx, annotation }));
    }
  }
  return out;
}
const FORMATS = allFormats();

function leafLevels(fmt: S2Format): number[] {
  const levels: number[] = [];
  for (let level = fmt.granule.firstLevel; level <= LAST_LEVEL; level++) {
    if (leafAllowedAt(fmt.granule, level, { lpa2: fmt.lpa2, oa52: fmt.granule.kind === '64K' })) levels.push(level);
  }
  return levels;
}

const arbAttrs: fc.Arbitrary<S2LeafAttrs> = fc.record({
  memAttr: fc.integer({ min: 0, max: 15 }),
  read: fc.boolean(),
  write: fc.boolean(),
  sh: fc.integer({ min: 0, max: 3 }),
  af: fc.boolean(),
  fnxs: fc.boolean(),
  nT: fc.boolean(),
  dbm: fc.boolean(),
  contiguous: fc.boolean(),
  xn: fc.integer({ min: 0, max: 3 }),
  sw: fc.integer({ min: 0, max: 15 }),
  pbha: fc.integer({ min: 0, max: 15 }),
});

/** An OA aligned to `align` bytes below 2^bits. */
function arbAlignedOa(bits: number, align: number): fc.Arbitrary<number> {
  return fc.nat({ max: 2 ** bits / align - 1 }).map((k) => k * align);
}

const KVM_RWX: S2LeafAttrs = { memAttr: MT_S2_NORMAL, read: true, write: true, sh: SH_INNER, af: true, fnxs: false, nT: false, dbm: false, contiguous: false, xn: 0, sw: 0, pbha: 0 };

const FMT_4K = s2Format(GRANULE_4K);
const FMT_4K_LPA2 = s2Format(GRANULE_4K, { lpa2: true });
const FMT_16K = s2Format(GRANULE_16K);
const FMT_64K = s2Format(GRANULE_64K);

describe('format', () => {
  it('defaults and validation', () => {
    expect(s2Format(GRANULE_4K)).toEqual({ granule: GRANULE_4K, lpa2: false, xnx: false, annotation: 'typed' });
    expect(s2Format(GRANULE_16K, { lpa2: true, xnx: true, annotation: 'legacy' })).toEqual({ granule: GRANULE_16K, lpa2: true, xnx: true, annotation: 'legacy' });
    expect(() => s2Format(GRANULE_64K, { lpa2: true })).toThrow();
    expect(maxOutputAddressBits(FMT_4K)).toBe(48);
    expect(maxOutputAddressBits(FMT_16K)).toBe(48);
    expect(maxOutputAddressBits(FMT_4K_LPA2)).toBe(52);
    expect(maxOutputAddressBits(s2Format(GRANULE_16K, { lpa2: true }))).toBe(52);
    expect(maxOutputAddressBits(FMT_64K)).toBe(52);
  });

  it('descriptor-kind predicates (reference §1.3)', () => {
    expect(isValidLo(0)).toBe(false);
    expect(isValidLo(0xffff_fffe)).toBe(false);
    expect(isValidLo(1)).toBe(true);
    for (const level of [-1, 0, 1, 2]) {
      expect(isTableDesc(0b11, level)).toBe(true);
      expect(isTableDesc(0b01, level)).toBe(false);
      expect(isLeafDesc(0b01, level)).toBe(true);
      expect(isLeafDesc(0b11, level)).toBe(false);
      expect(isLeafDesc(0b10, level)).toBe(false);
    }
    expect(isTableDesc(0b11, 3)).toBe(false);
    expect(isLeafDesc(0b11, 3)).toBe(true);
    expect(isLeafDesc(0b01, 3)).toBe(false);
  });
});

describe('fixed vectors from the architecture', () => {
  it('KVM host 4K page, RWX normal memory', () => {
    // MemAttr 0xF<<2 | S2AP_R | S2AP_W | SH_IS<<8 | AF, XN clear, page type 0b11.
    const attrBits = (0xf << 2) | DESC_S2AP_R | DESC_S2AP_W | (3 << 8) | DESC_AF;
    expect(attrBits).toBe(0x7fc);
    const d = encodeLeafDesc(FMT_4K, 3, 0x8000_1000, KVM_RWX);
    expect(d).toEqual({ lo: 0x8000_17ff, hi: 0 });
    expect(decodeS2Descriptor(FMT_4K, d.lo, d.hi, 3)).toEqual({ kind: 'page', oa: 0x8000_1000, attrs: KVM_RWX, raw: d });
  });

  it('2M block, RW, not executable', () => {
    const attrs = { ...KVM_RWX, xn: 2 };
    const d = encodeLeafDesc(FMT_4K, 2, 0x4020_0000, attrs);
    // Block type 0b01; XN is bit 54 = hi bit 22.
    expect(d).toEqual({ lo: 0x4020_07fd, hi: 0x0040_0000 });
    expect(decodeS2Descriptor(FMT_4K, d.lo, d.hi, 2)).toEqual({ kind: 'block', oa: 0x4020_0000, attrs, raw: d });
  });

  it('1G block above 4G, read-only device nGnRE', () => {
    const attrs: S2LeafAttrs = { ...KVM_RWX, memAttr: MT_S2_DEVICE_NGNRE, write: false, xn: 2 };
    const d = encodeLeafDesc(FMT_4K, 1, 0x1_4000_0000, attrs);
    expect(d).toEqual({ lo: 0x4000_0745, hi: 0x0040_0001 });
    expect(decodeS2Descriptor(FMT_4K, d.lo, d.hi, 1)).toEqual({ kind: 'block', oa: 0x1_4000_0000, attrs, raw: d });
  });

  it('encodeLeafDesc aligns the OA down to the block size', () => {
    expect(encodeLeafDesc(FMT_4K, 2, 0x4020_1234, KVM_RWX)).toEqual({ lo: 0x4020_07fd, hi: 0 });
    expect(encodeLeafDesc(FMT_4K, 1, 0x1_7fff_f000, KVM_RWX)).toEqual({ lo: 0x4000_07fd, hi: 1 });
  });

  it('table pointers', () => {
    const t = encodeTableDesc(FMT_4K, 0x8_1234_5000);
    expect(t).toEqual({ lo: 0x1234_5003, hi: 0x8 });
    for (const level of [0, 1, 2]) expect(decodeS2Descriptor(FMT_4K, t.lo, t.hi, level)).toEqual({ kind: 'table', table: 0x8_1234_5000, raw: t });
    // The same bits at the last level are a page.
    expect(decodeS2Descriptor(FMT_4K, t.lo, t.hi, 3).kind).toBe('page');
    // 16K: bits 13:12 are not address bits.
    expect(encodeTableDesc(FMT_16K, 0x12_3456_c000)).toEqual({ lo: 0x3456_c003, hi: 0x12 });
    // 64K + 52-bit: NLTA[51:48] in bits 15:12.
    const t64 = encodeTableDesc(FMT_64K, 0xa_0000_1235_0000);
    expect(t64).toEqual({ lo: 0x1235_a003, hi: 0 });
    expect(decodeS2Descriptor(FMT_64K, t64.lo, t64.hi, 2)).toEqual({ kind: 'table', table: 0xa_0000_1235_0000, raw: t64 });
    // LPA2: NLTA[51:50] in bits 9:8, [49:48] in the high word.
    const tl = encodeTableDesc(FMT_4K_LPA2, 0xe_0000_1234_5000);
    expect(tl).toEqual({ lo: 0x1234_5303, hi: 0x2_0000 });
    expect(decodeS2Descriptor(FMT_4K_LPA2, tl.lo, tl.hi, -1)).toEqual({ kind: 'table', table: 0xe_0000_1234_5000, raw: tl });
  });

  it('64K page with OA ≥ 2^48 uses bits 15:12', () => {
    const oa = 0xa_bcde_f012_0000;
    const d = encodeLeafDesc(FMT_64K, 3, oa, KVM_RWX);
    expect(d).toEqual({ lo: 0xf012_a7ff, hi: 0xbcde });
    expect(descOutputAddress(FMT_64K, d.lo, d.hi)).toBe(oa);
    expect(decodeS2Descriptor(FMT_64K, d.lo, d.hi, 3)).toEqual({ kind: 'page', oa, attrs: KVM_RWX, raw: d });
  });

  it('LPA2 page with OA ≥ 2^50 uses bits 9:8 (no SH field)', () => {
    const oa = 0x9_2345_6789_a000; // OA[51:50] = 0b10, OA[49:48] = 0b01
    const d = encodeLeafDesc(FMT_4K_LPA2, 3, oa, KVM_RWX);
    expect(d).toEqual({ lo: 0x6789_a6ff, hi: 0x1_2345 });
    expect(decodeS2Descriptor(FMT_4K_LPA2, d.lo, d.hi, 3)).toEqual({ kind: 'page', oa, attrs: { ...KVM_RWX, sh: 0 }, raw: d });
    // Read without LPA2 the same bits are SH = 0b10 and OA[47:12] only.
    const plain = decodeS2Descriptor(FMT_4K, d.lo, d.hi, 3);
    expect(plain.kind === 'page' && plain.oa).toBe(0x2345_6789_a000);
    expect(plain.kind === 'page' && plain.attrs.sh).toBe(2);
  });

  it('upper attributes: DBM 51, contiguous 52, XN 54:53 (XNX) or 54, SW 58:55, PBHA 62:59', () => {
    const attrs: S2LeafAttrs = { ...KVM_RWX, dbm: true, contiguous: true, xn: 1, sw: 0b1010, pbha: 0b0101, fnxs: true };
    const xnx = s2Format(GRANULE_4K, { xnx: true });
    const d = encodeLeafDesc(xnx, 3, 0x1000, attrs);
    expect(big(d)).toBe((1n << 51n) | (1n << 52n) | (1n << 53n) | (0b1010n << 55n) | (0b0101n << 59n) | 0x1000n | 0x7ffn | (1n << 11n));
    expect(decodeS2Descriptor(xnx, d.lo, d.hi, 3)).toEqual({ kind: 'page', oa: 0x1000, attrs, raw: d });
    // Without FEAT_XNX only bit 54 is XN: XN[0] (bit 53) is neither written nor reported.
    const d2 = encodeLeafDesc(FMT_4K, 3, 0x1000, { ...attrs, xn: 3 });
    expect(big(d2) & genmask(54, 53)).toBe(1n << 54n);
    const dec = decodeS2Descriptor(FMT_4K, d2.lo, d2.hi | (1 << 21), 3);
    expect(dec.kind === 'page' && dec.attrs.xn).toBe(2);
  });

  it('nT (bit 16) exists only in block descriptors; in a page bit 16 is OA[16]', () => {
    const blk = encodeLeafDesc(FMT_4K, 2, 0x20_0000, { ...KVM_RWX, nT: true });
    expect(blk).toEqual({ lo: 0x0021_07fd, hi: 0 });
    const decBlk = decodeS2Descriptor(FMT_4K, blk.lo, blk.hi, 2);
    expect(decBlk).toEqual({ kind: 'block', oa: 0x20_0000, attrs: { ...KVM_RWX, nT: true }, raw: blk });
    // A page whose OA has bit 16 set: not nT.
    const page = encodeLeafDesc(FMT_4K, 3, 0x1_0000, KVM_RWX);
    expect(page).toEqual({ lo: 0x0001_07ff, hi: 0 });
    expect(decodeS2Descriptor(FMT_4K, page.lo, page.hi, 3)).toEqual({ kind: 'page', oa: 0x1_0000, attrs: KVM_RWX, raw: page });
    // nT requested on a page must not corrupt the OA.
    const page2 = encodeLeafDesc(FMT_64K, 3, 0x2_0000, { ...KVM_RWX, nT: true });
    expect(page2).toEqual({ lo: 0x0002_07ff, hi: 0 });
  });

  it('invalid and reserved encodings', () => {
    expect(decodeS2Descriptor(FMT_4K, 0, 0, 3)).toEqual({ kind: 'invalid', raw: { lo: 0, hi: 0 } });
    expect(decodeS2Descriptor(FMT_4K, 0xffff_fffe, 0xffff_ffff, 1)).toEqual({ kind: 'invalid', raw: { lo: 0xffff_fffe, hi: 0xffff_ffff } });
    expect(decodeS2Descriptor(FMT_4K, 0x8000_17fd, 0, 3)).toEqual({ kind: 'reserved', raw: { lo: 0x8000_17fd, hi: 0 } });
  });
});

describe('output-address packing', () => {
  it('pack/desc are inverse for granule-aligned addresses within the OA size', () => {
    for (const fmt of FORMATS) {
      fc.assert(
        fc.property(arbAlignedOa(maxOutputAddressBits(fmt), fmt.granule.size), (pa) => {
          const packed = packOutputAddress(fmt, pa);
          expect(big(packed)).toBe(refPackOa(fmt, pa));
          expect(descOutputAddress(fmt, packed.lo, packed.hi)).toBe(pa);
          expect(packOutputAddressLo(fmt, pa)).toBe(packed.lo);
          expect(packOutputAddressHi(fmt, pa)).toBe(packed.hi);
        }),
        { numRuns: 300 },
      );
    }
  });

  it('descOutputAddress ignores every non-address bit', () => {
    for (const fmt of FORMATS) {
      fc.assert(
        fc.property(fc.nat({ max: 0xffff_ffff }), fc.nat({ max: 0xffff_ffff }), (lo, hi) => {
          const raw = (BigInt(hi) << 32n) | BigInt(lo);
          const p = fmt.granule.shift;
          let want: bigint;
          if (fmt.lpa2) want = (raw & genmask(49, p)) | (((raw >> 8n) & 3n) << 50n);
          else {
            want = raw & genmask(47, p);
            if (p === 16) want |= ((raw >> 12n) & 0xfn) << 48n;
          }
          expect(descOutputAddress(fmt, lo, hi)).toBe(Number(want));
        }),
        { numRuns: 300 },
      );
    }
  });

  it('extreme addresses', () => {
    expect(packOutputAddress(FMT_4K, 2 ** 48 - 4096)).toEqual({ lo: 0xffff_f000, hi: 0xffff });
    expect(packOutputAddress(FMT_64K, 2 ** 52 - 65536)).toEqual({ lo: 0xffff_f000, hi: 0xffff });
    expect(packOutputAddress(FMT_4K_LPA2, 2 ** 52 - 4096)).toEqual({ lo: 0xffff_f300, hi: 0x3_ffff });
    expect(descOutputAddress(FMT_4K_LPA2, 0xffff_f300, 0x3_ffff)).toBe(2 ** 52 - 4096);
  });
});

describe('leaf round trips (every granule, level and format)', () => {
  for (const fmt of FORMATS) {
    for (const level of leafLevels(fmt)) {
      it(`${fmt.granule.kind} lpa2=${fmt.lpa2} xnx=${fmt.xnx} ${fmt.annotation} level ${level}`, () => {
        const size = levelSize(fmt.granule, level);
        fc.assert(
          fc.property(arbAlignedOa(maxOutputAddressBits(fmt), size), arbAttrs, (oa, attrs) => {
            const d = encodeLeafDesc(fmt, level, oa, attrs);
            expect(big(d)).toBe(refLeaf(fmt, level, oa, attrs));
            const want: S2LeafAttrs = {
              ...attrs,
              sh: fmt.lpa2 ? 0 : attrs.sh,
              nT: level !== LAST_LEVEL && attrs.nT,
              xn: fmt.xnx ? attrs.xn : attrs.xn & 2,
            };
            expect(decodeS2Descriptor(fmt, d.lo, d.hi, level)).toEqual({ kind: level === LAST_LEVEL ? 'page' : 'block', oa, attrs: want, raw: d });
            // Re-encoding the decoded descriptor is a fixed point.
            expect(encodeLeafDesc(fmt, level, oa, want)).toEqual(d);
          }),
          { numRuns: 150 },
        );
      });
    }
  }

  it('decode then encode reproduces every meaningful bit of an arbitrary leaf', () => {
    const arbCase = fc.tuple(fc.constantFrom(...FORMATS), fc.nat({ max: 0xffff_ffff }), fc.nat({ max: 0xffff_ffff })).chain(([fmt, lo, hi]) =>
      fc.constantFrom(...leafLevels(fmt)).map((level) => ({ fmt, level, lo, hi })),
    );
    fc.assert(
      fc.property(arbCase, ({ fmt, level, lo, hi }) => {
        const leafLo = ((lo & ~3) | (level === LAST_LEVEL ? 3 : 1)) >>> 0;
        const dec = decodeS2Descriptor(fmt, leafLo, hi, level);
        if (dec.kind !== 'page' && dec.kind !== 'block') throw new Error(`not a leaf: ${dec.kind}`);
        const again = encodeLeafDesc(fmt, level, dec.oa, dec.attrs);
        const mask = refLeafFieldMask(fmt, level);
        expect(big(again)).toBe(((BigInt(hi) << 32n) | BigInt(leafLo)) & mask);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('typed annotations (63:60 type, 59:4 metadata, 3:1 owner)', () => {
  const typed = s2Format(GRANULE_4K);

  it('pKVM guest donation: handle in meta 15:0, gfn in meta 55:16', () => {
    const handle = 0x1234;
    const gfn = 0xab_cdef_0123; // 40 bits
    const meta = { lo: ((gfn & 0xffff) * 0x1_0000 + handle) >>> 0, hi: Math.floor(gfn / 0x1_0000) };
    expect(meta).toEqual({ lo: 0x0123_1234, hi: 0xab_cdef });
    const pte = encodeTypedAnnotation(INVALID_TYPE_HOST_DONATION, 2, meta);
    expect(pte).toEqual({ lo: 0x1231_2344, hi: 0x2abc_def0 });
    const x = big(pte);
    expect((x >> 60n) & 0xfn).toBe(2n);
    expect((x >> 1n) & 7n).toBe(2n);
    expect((x >> 4n) & 0xffffn).toBe(BigInt(handle)); // PTE 19:4
    expect((x >> 20n) & ((1n << 40n) - 1n)).toBe(BigInt(gfn)); // PTE 59:20
    expect(x & 1n).toBe(0n);
    expect(decodeInvalidEntry(typed, pte.lo, pte.hi)).toEqual({ kind: 'annotation', type: 2, owner: 2, meta });
  });

  it('hyp ownership: owner 1, meta 0', () => {
    const pte = encodeTypedAnnotation(INVALID_TYPE_HOST_DONATION, 1, { lo: 0, hi: 0 });
    expect(pte).toEqual({ lo: 0x2, hi: 0x2000_0000 });
    expect(decodeInvalidEntry(typed, pte.lo, pte.hi)).toEqual({ kind: 'annotation', type: 2, owner: 1, meta: { lo: 0, hi: 0 } });
  });

  it('full-width metadata lands in 59:4 exactly', () => {
    const pte = encodeTypedAnnotation(0xf, 7, { lo: 0xffff_ffff, hi: 0xff_ffff });
    expect(pte).toEqual({ lo: 0xffff_fffe, hi: 0xffff_ffff });
    const guest = encodeTypedAnnotation(INVALID_TYPE_GUEST_POISONED, 0, { lo: 0x8000_0000, hi: 0x80_0000 });
    expect(big(guest)).toBe((3n << 60n) | (1n << 59n) | (1n << 35n));
  });

  it('encode/decode round trip for every type ≥ 2, owner and 56-bit metadata', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 15 }), fc.integer({ min: 0, max: 7 }), fc.nat({ max: 0xffff_ffff }), fc.nat({ max: 0xff_ffff }), (type, owner, mlo, mhi) => {
        const meta = { lo: mlo, hi: mhi };
        const pte = encodeTypedAnnotation(type, owner, meta);
        const metaBig = (BigInt(mhi) << 32n) | BigInt(mlo);
        expect(big(pte)).toBe((BigInt(type) << 60n) | (metaBig << 4n) | (BigInt(owner) << 1n));
        expect(decodeInvalidEntry(typed, pte.lo, pte.hi)).toEqual({ kind: 'annotation', type, owner, meta });
        expect(isLockedEntry(typed, pte.lo, pte.hi)).toBe(false);
      }),
      { numRuns: 1000 },
    );
  });

  it('out-of-range inputs are truncated to their fields', () => {
    expect(encodeTypedAnnotation(0x12, 0xf, { lo: 0, hi: 0x1ff_ffff })).toEqual(encodeTypedAnnotation(0x2, 0x7, { lo: 0, hi: 0xff_ffff }));
  });
});

describe('legacy annotations (owner 9:2) and LOCKED', () => {
  const legacy = s2Format(GRANULE_4K, { annotation: 'legacy' });
  const typed = s2Format(GRANULE_4K, { annotation: 'typed' });

  it('owner in bits 9:2', () => {
    expect(encodeLegacyAnnotation(1)).toEqual({ lo: 0x4, hi: 0 });
    expect(encodeLegacyAnnotation(2)).toEqual({ lo: 0x8, hi: 0 });
    expect(encodeLegacyAnnotation(255)).toEqual({ lo: 0x3fc, hi: 0 });
    expect(encodeLegacyAnnotation(256)).toEqual({ lo: 0, hi: 0 });
    for (let owner = 1; owner < 256; owner++) {
      const pte = encodeLegacyAnnotation(owner);
      expect(decodeInvalidEntry(legacy, pte.lo, pte.hi)).toEqual({ kind: 'annotation', type: undefined, owner, meta: { lo: 0, hi: 0 } });
    }
  });

  it('LOCKED marker in both formats', () => {
    expect(lockedMarker(typed)).toEqual({ lo: 0, hi: 0x1000_0000 });
    expect(big(lockedMarker(typed))).toBe(BigInt(INVALID_TYPE_LOCKED) << 60n);
    expect(lockedMarker(legacy)).toEqual({ lo: LEGACY_LOCKED_BIT, hi: 0 });
    expect(LEGACY_LOCKED_BIT).toBe(0x400);
    expect(isLockedEntry(typed, 0, 0x1000_0000)).toBe(true);
    expect(isLockedEntry(typed, 0x1234_5678 & ~1, 0x1abc_def0)).toBe(true);
    expect(isLockedEntry(typed, 0x400, 0)).toBe(false);
    expect(isLockedEntry(typed, 0x1, 0x1000_0000)).toBe(false);
    expect(isLockedEntry(legacy, 0x400, 0)).toBe(true);
    expect(isLockedEntry(legacy, 0x7fc, 0)).toBe(true);
    expect(isLockedEntry(legacy, 0, 0x1000_0000)).toBe(false);
    expect(isLockedEntry(legacy, 0x401, 0)).toBe(false); // a valid entry with AF set
    expect(decodeInvalidEntry(typed, 0, 0x1000_0000)).toEqual({ kind: 'locked' });
    expect(decodeInvalidEntry(legacy, 0x400, 0)).toEqual({ kind: 'locked' });
  });

  it('decodeInvalidEntry classification', () => {
    // [format, lo, hi, expected kind]
    const cases: [S2Format, number, number, string][] = [
      [typed, 0, 0, 'empty'],
      [legacy, 0, 0, 'empty'],
      [typed, 0, 0x1000_0000, 'locked'],
      [legacy, 0x400, 0, 'locked'],
      [typed, 0x2, 0x2000_0000, 'annotation'],
      [typed, 0x0, 0x3000_0000, 'annotation'],
      [legacy, 0x4, 0, 'annotation'],
      // Typed: type 0 with anything else set is foreign (e.g. a legacy annotation or LOCKED).
      [typed, 0x4, 0, 'unknown'],
      [typed, 0x400, 0, 'unknown'],
      [typed, 0x2, 0x0fff_ffff, 'unknown'],
      // Legacy: anything outside 9:2 (other than LOCKED) is foreign, e.g. a typed marker or MMIO_NOTE.
      [legacy, 0, 0x1000_0000, 'unknown'],
      [legacy, 0, 0x2000_0000, 'unknown'],
      [legacy, 0x800, 0, 'unknown'],
      [legacy, 0x2, 0, 'unknown'],
      [legacy, 0x4, 0x1, 'unknown'],
      // Valid entries are never invalid-entry annotations.
      [typed, 0x8000_17ff, 0, 'unknown'],
      [legacy, 0x8000_17ff, 0, 'unknown'],
      [typed, 0x1, 0x2000_0000, 'unknown'],
    ];
    for (const [fmt, lo, hi, kind] of cases) {
      const got = decodeInvalidEntry(fmt, lo, hi);
      expect([fmt.annotation, lo, hi, got.kind]).toEqual([fmt.annotation, lo, hi, kind]);
      if (got.kind === 'unknown') expect(got.raw).toEqual({ lo, hi });
    }
  });

  it('typed locked markers and annotations decode as invalid descriptors at every level', () => {
    for (const level of [0, 1, 2, 3]) {
      const m = lockedMarker(typed);
      expect(decodeS2Descriptor(typed, m.lo, m.hi, level).kind).toBe('invalid');
      const a = encodeTypedAnnotation(2, 7, { lo: 0xffff_ffff, hi: 0xff_ffff });
      expect(decodeS2Descriptor(typed, a.lo, a.hi, level).kind).toBe('invalid');
    }
  });

  it('legacy: only the LOCKED bit decides lock state; owner bits alongside it still read as locked', () => {
    expect(decodeInvalidEntry(legacy, 0x400 | 0x8, 0)).toEqual({ kind: 'locked' });
  });
});
