/**
 * The QEMU differential test (issue 14). The QEMU-free part checks the generators against the
 * encodings QEMU 10.0.2 dies on or decodes against the architecture, the DTB reader, the filter,
 * and the CLI's misuse and hostile-file handling. With qemu-system-aarch64 ≥ 10 on the PATH, a fixed set of 500 generated cases
 * runs on the model (permissive) and on QEMU and must not differ beyond the known QEMU bugs;
 * a strict-mode model must differ, and the difference must shrink. Without QEMU those skip.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PhysicalMemory } from '../../impl/arch/physical-memory.js';
import { decodeSte } from '../../impl/arch/smmu/ste.js';
import { u64 } from '../../impl/arch/u64.js';
import { STRTAB } from '../../impl/hw/smmu/testing.js';
import { main } from '../../cli/diff-qemu.js';
import { runCampaign } from './campaign.js';
import { boardFacts, parseFdt } from './fdt.js';
import { compileCase, diffCase } from './generators.js';
import { QEMU_INSTALL_HINT, hex, hex64, qemuVersion } from './qtest.js';
import { classify } from './filters.js';
import { type DiffEnv, type ModelXfer, StrtabShadow, l1StdOutsideArchitecture } from './replay.js';
import { parseTrace } from './trace.js';

/** QEMU 10.0.2's virt board as measured (qemu-smmuv3-peer.md §2), for the QEMU-free tests. */
const QEMU_10_ENV: DiffEnv = {
  smmuBase: 0x0905_0000,
  ram: { base: 0x4000_0000, size: 0x4000_0000 },
  reservedTop: 0x2000,
  sids: [0x18, 0x20, 0x28, 0x30],
  ids: { idr0: 0x0d44_101b, idr1: 0x0273_0010, idr3: 0x1414, idr5: 0x74, iidr: 0, aidr: 1 },
  pciWindows: [
    { base: 0x1000_0000, size: 0x2eff_0000 },
    { base: 0x80_0000_0000, size: 0x80_0000_0000 },
  ],
};

const version = qemuVersion();
const haveQemu = version !== undefined && version.major >= 10;
if (!haveQemu) console.log(`QEMU differential test skipped: ${version === undefined ? 'no qemu-system-aarch64' : version.text}; ${QEMU_INSTALL_HINT}`);

const io = (): { out: string[]; err: string[]; io: { out: { write(s: string): boolean }; err: { write(s: string): boolean } } } => {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: { write: (s) => out.push(s) > 0 }, err: { write: (s) => err.push(s) > 0 } } };
};

describe('QEMU differential harness (no QEMU needed)', () => {
  it('generated traces never hold an encoding QEMU 10.0.2 dies on or rejects against the architecture', () => {
    const cases = fc.sample(diffCase(40), { seed: 11, numRuns: 150 });
    for (const c of cases) {
      const trace = compileCase(QEMU_10_ENV, c);
      const mem = new PhysicalMemory([{ name: 'ram', kind: 'ram', base: 0x4000_0000, size: 0x4000_0000 }]);
      const steAddrs = (sid: number): number[] => [STRTAB + sid * 64, 0x4002_0000 + (sid % 64) * 64];
      for (const op of trace.ops) {
        if (op.t === 'mem64') mem.store64(op.pa, op.lo, op.hi);
        if (op.t !== 'dmaw' && op.t !== 'dmar') continue;
        // 4-byte aligned transfers only (one event per transfer), below 2^52.
        expect(op.iova % 4).toBe(0);
        expect(op.iova < 2 ** 52).toBe(true);
        for (const sid of QEMU_10_ENV.sids.slice(0, 2)) {
          for (const at of steAddrs(sid)) {
            const words = Array.from({ length: 8 }, (_, i) => mem.peek64(at + i * 8)).map((w) => u64(w.lo, w.hi));
            const ste = decodeSte(words) as unknown as Record<string, unknown>;
            if (ste.v !== true) continue;
            // S2AA64 = 0 aborts QEMU (hw/arm/smmuv3.c:434-438); S1CDMax/S1STALLD are rejected in every Config (:601-610).
            if (((ste.config as number) & 0b110) === 0b110) expect(ste.s2aa64).toBe(true);
            expect(ste.s1cdmax).toBe(0);
            expect(ste.s1stalld).toBe(false);
          }
        }
      }
      // The sticky 2-level mode is announced so that the case gets a fresh QEMU.
      const usesTwoLevel = trace.ops.some((o) => o.t === 'reg32' && o.off === 0x88 && (o.v >>> 16) % 4 === 1);
      expect(trace.twoLevel).toBe(usesTwoLevel);
      expect(parseTrace(JSON.stringify(trace)).ok).toBe(true);
    }
  });

  it('the filter: a record QEMU never writes may show only as the model\'s EVTQ_ABT_ERR (full queue); nothing else in GERROR passes', () => {
    const x: ModelXfer = { at: 5, write: false, iova: 2 ** 44, sid: 0x18, candidates: [], sinkPa: undefined, tagged: false, reason: 'addr_size_s1', permissionOnHit: false, ipaWiderThanPs: false, l1StdOutsideArch: false };
    const regs = (g: number): { k: 'regs'; at: number; v: string } => ({ k: 'regs', at: 5, v: `CMDQ_CONS=0x3 EVTQ_PROD=0x2 EVTQ_CONS=0x0 GERROR^N=0x${g.toString(16)} CR0ACK=0xd` });
    expect(classify(x, regs(0x4), regs(0))?.id).toBe('addr-size-beyond-ias');
    expect(classify(x, regs(0x5), regs(1))?.id).toBe('addr-size-beyond-ias');
    expect(classify(x, regs(0), regs(0x4))).toBeUndefined();
    expect(classify(x, regs(0x1), regs(0))).toBeUndefined();
    expect(classify({ ...x, reason: 'translation' }, regs(0x4), regs(0))).toBeUndefined();
    const ev = (v: string[]): { k: 'events'; at: number; v: string } => ({ k: 'events', at: 5, v: JSON.stringify(v) });
    expect(classify(x, ev(['F_ADDR_SIZE s2=0 x']), ev([]))?.id).toBe('addr-size-beyond-ias');
    expect(classify(x, ev(['F_TRANSLATION s2=1 x']), ev([]))).toBeUndefined();
  });

  it('L1STDs the architecture makes invalid but QEMU follows are recognised (Span bounds, index beyond 2^(Span-1), L2Ptr bits)', () => {
    const mem = new PhysicalMemory([{ name: 'ram', kind: 'ram', base: 0x4000_0000, size: 0x10_0000 }]);
    const st = new StrtabShadow();
    st.onStore({ t: 'reg64', off: 0x80, lo: 0x4000_0000, hi: 0 });
    const l1 = (lo: number, hi = 0): boolean => {
      mem.store64(0x4000_0000, lo >>> 0, hi);
      return l1StdOutsideArchitecture(mem, st, 16, 0x20);
    };
    st.onStore({ t: 'reg32', off: 0x88, v: 8 });
    expect(l1(1)).toBe(false); // linear table: no L1STD
    st.onStore({ t: 'reg32', off: 0x88, v: (1 << 16) | (6 << 6) | 8 });
    expect(l1(0x4002_0007)).toBe(false); // Span 7 = SPLIT + 1: 64 STEs, index 0x20 inside
    expect(l1(0)).toBe(false); // Span 0: invalid to both sides alike
    expect(l1(0x4002_0006)).toBe(true); // 32 STEs: index 0x20 would be the 33rd
    expect(l1(0x4002_0005)).toBe(true);
    expect(l1(0x7a90_0001)).toBe(true); // one STE
    expect(l1(0x4002_0008)).toBe(true); // Span > SPLIT + 1
    expect(l1(0x4002_000c)).toBe(true); // reserved Span
    expect(l1(0x4002_0027)).toBe(true); // L2Ptr bit 5
    expect(l1(0x4002_0807)).toBe(true); // L2Ptr not aligned to the 4 KiB array
    expect(l1(0x4002_0007, 0x10_0000)).toBe(true); // L2Ptr above bit 51
  });

  it('qtest numbers are unsigned hex: negative or fractional values are refused before they reach QEMU', () => {
    expect(hex(0xffff_ffff)).toBe('0xffffffff');
    expect(hex64(0x8000_0000, 0x40)).toBe('0x4080000000');
    expect(() => hex(-1)).toThrow();
    expect(() => hex(1 << 31)).toThrow();
    expect(() => hex(0.5)).toThrow();
  });

  it('reads the board facts from a device tree blob', () => {
    // A minimal DTB: / { #address-cells = 2; #size-cells = 2; memory@40000000 { reg }; smmuv3 { compatible; reg };
    // pcie { compatible; reg; bus-range; ranges; iommu-map } }.
    const strings: string[] = [];
    const str = (s: string): number => {
      const at = strings.join('').length;
      strings.push(s + '\0');
      return at;
    };
    const words: number[] = [];
    const be = (s: string): number[] => {
      const b = [...new TextEncoder().encode(s), 0];
      while (b.length % 4 !== 0) b.push(0);
      const out: number[] = [];
      for (let i = 0; i < b.length; i += 4) out.push((((b[i] as number) << 24) | ((b[i + 1] as number) << 16) | ((b[i + 2] as number) << 8) | (b[i + 3] as number)) >>> 0);
      return out;
    };
    const node = (name: string): void => void words.push(1, ...be(name));
    const end = (): void => void words.push(2);
    const propCells = (name: string, cells: number[]): void => void words.push(3, cells.length * 4, str(name), ...cells);
    const propStr = (name: string, value: string): void => {
      const body = be(value);
      words.push(3, value.length + 1, str(name), ...body);
    };
    node('');
    propCells('#address-cells', [2]);
    propCells('#size-cells', [2]);
    node('memory@40000000');
    propCells('reg', [0, 0x4000_0000, 0, 0x4000_0000]);
    end();
    node('smmuv3@9050000');
    propStr('compatible', 'arm,smmu-v3');
    propCells('reg', [0, 0x0905_0000, 0, 0x2_0000]);
    end();
    node('pcie@10000000');
    propStr('compatible', 'pci-host-ecam-generic');
    propCells('reg', [0x40, 0x1000_0000, 0, 0x1000_0000]);
    propCells('bus-range', [0, 0xff]);
    propCells('ranges', [0x0100_0000, 0, 0, 0, 0x3eff_0000, 0, 0x1_0000, 0x0200_0000, 0, 0x1000_0000, 0, 0x1000_0000, 0, 0x2eff_0000]);
    propCells('iommu-map', [0, 0x8005, 0, 0x1_0000]);
    end();
    end();
    words.push(9);
    const structBytes = words.length * 4;
    const stringBlob = new TextEncoder().encode(strings.join(''));
    const blob = new Uint8Array(40 + structBytes + stringBlob.length);
    const dv = new DataView(blob.buffer);
    dv.setUint32(0, 0xd00dfeed);
    dv.setUint32(4, blob.length);
    dv.setUint32(8, 40);
    dv.setUint32(12, 40 + structBytes);
    words.forEach((w, i) => dv.setUint32(40 + i * 4, w));
    blob.set(stringBlob, 40 + structBytes);
    const facts = boardFacts(parseFdt(blob));
    expect(facts).toEqual({
      ram: { base: 0x4000_0000, size: 0x4000_0000 },
      smmu: { base: 0x0905_0000, size: 0x2_0000 },
      ecam: { base: 0x40_1000_0000, size: 0x1000_0000 },
      busBase: 0,
      mem32: { base: 0x1000_0000, size: 0x2eff_0000 },
      pciWindows: [{ base: 0x1000_0000, size: 0x2eff_0000 }],
      iommuMap: [{ ridBase: 0, sidBase: 0, length: 0x1_0000 }],
    });
  });

  it('the CLI prints its usage and exits 2 on misuse', async () => {
    for (const argv of [['--cases', 'x'], ['--bogus'], ['--cases'], ['extra'], ['--trace', 'f.json', '--seed', '1']]) {
      const o = io();
      expect(await main(argv, o.io)).toBe(2);
      expect(o.err.join('')).toContain('usage: npm run diff-qemu');
    }
  });

  it('a hostile --trace file is refused with one line and exit 2, before QEMU is looked for', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'diff-qemu-'));
    try {
      const good = { name: 'x', twoLevel: false, helper: { srcIova: 0x4013_0000, srcPa: 0x4013_0000, sinkIova: 0x4014_0000, sinkPa: 0x4014_0000 }, ops: [] as unknown[] };
      const files: [string, string, string][] = [
        ['missing', '', 'ENOENT'],
        ['dir', '', 'expected a regular file'],
        ['bad.json', '{', 'not valid JSON'],
        ['proto.json', '{"__proto__": {"x": 1}}', 'reserved field name'],
        ['deep.json', '['.repeat(100) + ']'.repeat(100), 'nested deeper'],
        ['off.json', JSON.stringify({ ...good, ops: [{ t: 'reg32', off: 0x2_0000, v: 0 }] }), 'not a trace'],
        ['neg.json', JSON.stringify({ ...good, ops: [{ t: 'mem64', pa: -8, lo: 0, hi: 0 }] }), 'not a trace'],
        ['unaligned.json', JSON.stringify({ ...good, ops: [{ t: 'dmar', dev: 0, iova: 0x8000_0002 }] }), 'not a trace'],
        ['dev.json', JSON.stringify({ ...good, ops: [{ t: 'dmar', dev: 99, iova: 0x8000_0000 }] }), 'not a trace'],
      ];
      for (const [name, text, message] of files) {
        const path = join(dir, name);
        if (name === 'dir') mkdirSync(path);
        else if (name !== 'missing') writeFileSync(path, text);
        const o = io();
        expect(await main(['--trace', path], o.io)).toBe(2);
        expect(o.err.join('').split('\n')[0]).toContain(message);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!haveQemu)(`QEMU ${version?.text ?? '(not installed)'} as a peer`, () => {
  it('500 generated cases: the permissive model and QEMU agree apart from the known QEMU bugs', async () => {
    const r = await runCampaign({ cases: 500, seed: 1, shrinkRuns: 100 });
    const summary = `${r.cases} cases, ${r.steps} steps, ${r.transactions} transactions, ${(r.elapsedMs / 1000).toFixed(1)} s; same ${r.same}, known ${JSON.stringify(r.known)}, differ ${r.differ}`;
    console.log(`QEMU differential test: ${summary}`);
    expect(r.failure === undefined ? 'none' : `${r.failure.first.k} after op ${r.failure.first.at}: model ${r.failure.first.model} / qemu ${r.failure.first.qemu}`).toBe('none');
    expect(r.differ).toBe(0);
    expect(r.same).toBeGreaterThan(r.cases * 0.8);
  }, 120_000);

  it('a strict-mode model differs from QEMU, and the difference shrinks to a short trace', async () => {
    const r = await runCampaign({ cases: 3, seed: 3, modelMode: 'strict', shrinkRuns: 40 });
    expect(r.differ).toBeGreaterThan(0);
    const f = r.failure;
    expect(f).toBeDefined();
    if (f === undefined) return;
    expect(f.trace.ops.length).toBeLessThan(f.original.ops);
    expect(f.steps.steps.length).toBeLessThanOrEqual(2);
  }, 120_000);
});
