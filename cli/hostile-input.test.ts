/**
 * Hostile input (issue 16): every file a CLI reads is refused with exit 2 and one line naming the
 * file and the field — never a stack trace (exit 1 means "violation" here), never a hang. The
 * fixtures in cli/fixtures/hostile/ are the cases that once crashed or hung; the properties
 * generate more, structure-aware (a real file with one field mutated so that it cannot be valid)
 * and raw garbage, with fixed seeds.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { runCampaign } from '../conformance/campaign.js';
import { resultText } from '../conformance/campaign-result.js';
import { listCorpusFiles } from '../conformance/corpus.js';
import { DEFAULT_DESIGN } from '../conformance/designs.js';
import { MAX_INPUT_BYTES, MAX_JSON_STRING, readInputText } from '../conformance/input-file.js';
import { MAX_OPERATIONS } from '../properties/codecs.js';
import { smallMachine } from '../properties/machine.js';
import { readBenchFigures } from '../reports/bench.js';
import { main as replay } from './replay.js';
import { main as report } from './report.js';
import { main as verdicts } from './verdicts.js';
import { main as verify } from './verify.js';
import { main as zoo } from './zoo.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/hostile/', import.meta.url));
const EXAMPLES = fileURLToPath(new URL('../conformance/examples/', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'hostile-'));

let err: string[] = [];
let out: string[] = [];
beforeEach(() => {
  err = [];
  out = [];
  vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(a.join(' ')));
});
afterEach(() => vi.restoreAllMocks());

/** One line, naming the file, without a stack trace. */
function expectOneLine(lines: readonly string[], file: string, what: string): string {
  expect(lines, what).toHaveLength(1);
  const line = lines[0] as string;
  expect(line, what).not.toMatch(/\n/);
  expect(line, what).not.toMatch(/\bat .*\.[jt]s:\d+/);
  expect(line.startsWith(`${file}: `) || line.startsWith(`cannot read ${file}: `), `${what}: ${line}`).toBe(true);
  return line;
}

/** Replay refuses `file`: exit 2, one line; returns the line. */
function refused(file: string, what = file): string {
  err = [];
  out = [];
  const code = replay([file, '--brief']);
  expect(code, `${what}: ${err.join(' | ')}${out.slice(0, 3).join(' | ')}`).toBe(2);
  return expectOneLine(err, file, what);
}

describe('the crash and hang cases of issue 16 (fixtures)', () => {
  const cases: [string, RegExp][] = [
    ['kind-constructor.json', /: operations\.1\.kind: expected one of host_share_hyp, .*got "constructor"$/],
    ['kind-toString.json', /: operations\.0\.kind: expected one of .*got "toString"$/],
    ['kind-proto.json', /: operations\.0\.kind: expected one of .*got "__proto__"$/],
    ['deep-operations-array.json', /: operations(\.0)+: nested deeper than 32 levels$/],
    ['deep-operations-object.json', /: operations\.0(\.a)+: nested deeper than 32 levels$/],
    ['deep-config-object.json', /: config(\.a)+: nested deeper than 32 levels$/],
    ['deep-config-array.json', /: config\.memory(\.0)+: nested deeper than 32 levels$/],
    ['vmemmap-too-large.json', /: config\.memory: at most 64 GiB of RAM in all/],
    ['host-s2-pool-1.json', /: config\.hostS2PoolPages: expected an integer in \[5, 2\^20\] .*got 1$/],
    ['smmu-base-in-ram.json', /: config\.smmu\.base: the SMMU frame \[0x40000000, 0x40020000\) overlaps memory\.0: it must lie in an MMIO gap$/],
    ['smmu-oas-99.json', /: config\.smmu\.features\.oasBits: OAS 99 is not an architected size/],
    ['smmu-granules-null.json', /: config\.smmu\.features\.granules: expected Array<.*>, got null$/],
    ['corpus-dma-bug-without-smmu.json', /: bug: tlbi-wrong-ttl is a bug of the SMMU driver: it needs a machine with an SMMU/],
    ['config-misspelt-field.json', /: config\.hostS2PoolPage: expected no field "hostS2PoolPage" here/],
    ['smmu-device-sid-twice.json', /: config\.smmu\.devices\.1\.sid: stream ID 1 given twice$/],
    ['smmu-host-page-outside-ram.json', /: config\.smmu\.hostPages\.0: expected a page of RAM the host owns/],
    ['corpus-design-constructor.json', /: design: expected a design variant: one of .*got "constructor"$/],
    ['corpus-violates-toString.json', /: expect\.violates: expected a check name: one of .*got "toString"$/],
    ['corpus-proto-field.json', /: __proto__: a reserved field name$/],
    ['memory-regions-overlap.json', /: config\.memory\.1\.base: regions must be sorted and must not overlap/],
    ['truncated.json', /: not valid JSON: /],
    ['not-an-object.json', /: expected an object with an "operations" array$/],
  ];

  it('has a test for every fixture', () => {
    expect(readdirSync(FIXTURES).filter((f) => f.endsWith('.json')).sort()).toEqual(cases.map(([f]) => f).sort());
  });

  it.each(cases)('%s: exit 2, one line naming the field', (name, message) => {
    expect(refused(join(FIXTURES, name))).toMatch(message);
  });

  it('a FIFO, /dev/zero and a directory are refused at once, not read', () => {
    const fifo = join(dir, 'fifo.json');
    let haveFifo = true;
    try {
      execFileSync('mkfifo', [fifo]);
    } catch {
      haveFifo = false; // no mkfifo here: the character device still covers "not a regular file"
    }
    if (haveFifo) expect(refused(fifo)).toMatch(/: expected a regular file, got a FIFO$/);
    if (haveFifo) {
      // Nor is a FIFO written to: --html would block until someone read it.
      err = [];
      expect(replay([join(FIXTURES, 'kind-proto.json'), '--html', fifo])).toBe(2);
      expect(err[0]).toMatch(/^--html: .*fifo\.json exists and is not a regular file/);
    }
    expect(refused('/dev/zero')).toMatch(/^\/dev\/zero: expected a regular file, got a character device$/);
    expect(refused(dir)).toMatch(/: expected a regular file, got a directory$/);
  });

  it('a file over the size limit is refused without reading it', () => {
    const big = join(dir, 'big.json');
    writeFileSync(big, '');
    truncateSync(big, MAX_INPUT_BYTES + 1); // sparse
    expect(refused(big)).toMatch(/: file too large \(16777217 bytes; the limit is 16 MiB\)$/);
  });

  it('a regular file whose size fstat gives as 0 (/proc) is still read to its end', () => {
    if (!existsSync('/proc/self/status')) return;
    const r = readInputText('/proc/self/status');
    expect(r.ok === true && r.text.startsWith('Name:')).toBe(true);
    expect(refused('/proc/self/status')).toMatch(/^\/proc\/self\/status: not valid JSON: /);
  });

  it('a million levels of nesting are measured without a stack overflow', () => {
    const deep = join(dir, 'million.json');
    writeFileSync(deep, `{"operations":[],"config":${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}}`);
    expect(refused(deep)).toMatch(/: config(\.0){31}: nested deeper than 32 levels$/);
  });

  it('too many operations, and over-long strings, are refused with the field path', () => {
    const many = join(dir, 'many.json');
    writeFileSync(many, JSON.stringify({ operations: Array.from({ length: MAX_OPERATIONS + 1 }, () => ({ kind: 'smmu_consume', smmu: 0 })) }));
    expect(refused(many)).toMatch(/: operations: at most 100000 entries, got 100001$/);
    const long = join(dir, 'long.json');
    writeFileSync(long, JSON.stringify({ operations: [{ kind: 'host_share_guest', pfn: 1, gfn: 0, nrPages: 1, vm: 1, prot: 'r'.repeat(MAX_JSON_STRING + 1) }] }));
    expect(refused(long)).toMatch(/: operations\.0\.prot: a string of 100001 characters \(at most 100000\)$/);
  });
});

describe('report: every input it reads is checked the same way', () => {
  it('refuses /dev/zero as --bench or --coverage, and a file as --merge or --corpus, with one line and exit 2', async () => {
    const file = join(FIXTURES, 'truncated.json');
    const cases: [string[], RegExp][] = [
      [['--bench', '/dev/zero'], /^\/dev\/zero: expected a regular file, got a character device$/],
      [['--coverage', '/dev/zero'], /^\/dev\/zero: expected a regular file, got a character device$/],
      [['--coverage', file], /truncated\.json: not valid JSON: /],
      [['--merge', file], /^--merge: .*truncated\.json is not a directory$/],
      [['--corpus', file], /^--corpus: .*truncated\.json is not a directory/],
    ];
    for (const [argv, message] of cases) {
      const errors: string[] = [];
      expect(await report([...argv, '--out', join(dir, 'report-out')], { log: () => undefined, error: (l) => errors.push(l) }), argv.join(' ')).toBe(2);
      expect(errors[0], argv.join(' ')).toMatch(message);
      expect(errors.join('\n')).not.toMatch(/\bat .*\.[jt]s:\d+/);
    }
  });
});

describe('CLI options named like prototype members', () => {
  const names = ['constructor', '__proto__', 'toString', 'hasOwnProperty'];
  it('are unknown options to every CLI, exit 2', async () => {
    for (const name of names) {
      err = [];
      expect(replay(['x.json', `--${name}`])).toBe(2);
      expect(err.join('\n')).toMatch(new RegExp(`unknown option --${name.replace(/_/g, '_')}`));
      const e: string[] = [];
      const w = { write: (s: string) => e.push(s) };
      expect(await verify([`--${name}`, 'x'], { out: w, err: w })).toBe(2);
      expect(await report([`--${name}=1`], { log: () => undefined, error: (l) => e.push(l) })).toBe(2);
      expect(zoo([`--${name}`], { out: () => undefined, err: (l) => e.push(l) })).toBe(2);
      expect(verdicts([`--${name}`], { out: w, err: w })).toBe(2);
      expect(e.join('\n').match(/unknown option/g)).toHaveLength(4);
      expect(e.join('\n')).not.toMatch(/\bat .*\.[jt]s:\d+/);
    }
  });

  it('verify refuses a DMA bug on a machine without an SMMU, and a file as --results-dir', async () => {
    const e: string[] = [];
    const w = { write: (s: string) => e.push(s) };
    expect(await verify(['--bug', 'tlbi-wrong-ttl', '--machine', 'small', '--runs', '1'], { out: w, err: w })).toBe(2);
    expect(e.join('')).toMatch(/^--bug: tlbi-wrong-ttl is a bug of the SMMU driver: it needs a machine with an SMMU/);
    e.length = 0;
    expect(await verify(['--results-dir', join(FIXTURES, 'truncated.json'), '--runs', '1'], { out: w, err: w })).toBe(2);
    expect(e.join('')).toMatch(/^--results-dir: .*truncated\.json is not a directory/);
  });
});

// ---- The hostile-file properties -------------------------------------------------------------

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Path = (string | number)[];

function pathsOf(value: Json, path: Path = [], out: Path[] = []): Path[] {
  out.push(path);
  if (Array.isArray(value)) value.forEach((v, i) => pathsOf(v, [...path, i], out));
  else if (value !== null && typeof value === 'object') for (const k of Object.keys(value)) pathsOf(value[k] as Json, [...path, k], out);
  return out;
}

function at(value: Json, path: Path): Json {
  let v: Json = value;
  for (const k of path) v = (v as Record<string | number, Json>)[k] as Json;
  return v;
}

/** `value` with the node at `path` replaced (own properties only, so "__proto__" is a plain key). */
function replaced(value: Json, path: Path, by: Json | typeof DROP): Json | typeof DROP {
  if (path.length === 0) return by;
  const [head, ...rest] = path as [string | number, ...Path];
  if (Array.isArray(value)) {
    const copy = [...value];
    const r = replaced(copy[head as number] as Json, rest, by);
    if (r === DROP) copy.splice(head as number, 1);
    else copy[head as number] = r;
    return copy;
  }
  const copy: Record<string, Json> = {};
  for (const k of Object.keys(value as object)) {
    const v = (value as Record<string, Json>)[k] as Json;
    const r = k === head ? replaced(v, rest, by) : v;
    if (r !== DROP) Object.defineProperty(copy, k, { value: r, enumerable: true, writable: true, configurable: true });
  }
  return copy;
}
const DROP = Symbol('drop');

const PROTO_NAMES = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf'];
const DEEP = '\u0000deep\u0000';

/** A type other than the node's, that no field of these formats accepts in its place. */
function wrongType(node: Json, pick: number, allowNull: boolean): Json {
  const choices: Json[] =
    typeof node === 'number' ? ['1', true, [], {}]
      : typeof node === 'string' ? [1, false, [], {}]
        : typeof node === 'boolean' ? [0, 'true', [], {}]
          : node === null ? [[]]
            : Array.isArray(node) ? [{}, 'x', 1]
              : ['x', 1, []];
  if (allowNull && node !== null) choices.push(null);
  return choices[pick % choices.length] as Json;
}

interface FileKind {
  /** Keys whose string value is a name from a list (so a prototype name is invalid there). */
  readonly nameKeys: readonly string[];
  /** Whether null is invalid wherever a value is (not so in result files: bug, first, …). */
  readonly nullInvalid: boolean;
  /** Extra field names that every object of the format refuses. */
  readonly extraFields: readonly string[];
  /** Paths below which a field may be dropped and the file be invalid. */
  readonly droppable: (path: Path) => boolean;
}

const REPLAY_KIND: FileKind = {
  nameKeys: ['kind', 'design', 'bug', 'violates', 'access', 'mode', 'hookPlacement', 'cache', 'invalidation', 'dmaStage2'],
  nullInvalid: true,
  extraFields: PROTO_NAMES,
  droppable: (p) => p.length === 3 && (p[0] === 'operations' || p[0] === 'schedule'),
};
const RESULT_KIND: FileKind = {
  nameKeys: ['design', 'machine', 'check', 'stoppedBy'],
  nullInvalid: false,
  extraFields: ['__proto__'],
  droppable: (p) => p.length === 1 && p[0] !== 'interleave',
};

interface Mutation {
  readonly text: string;
  /** The path the message must name (its first component), if any. */
  readonly path: Path;
  readonly what: string;
}

function mutationArb(docs: readonly Json[], kind: FileKind): fc.Arbitrary<Mutation> {
  return fc.record({ doc: fc.nat(docs.length - 1), node: fc.nat(), how: fc.nat(7), pick: fc.nat() }).map(({ doc, node, how, pick }): Mutation => {
    const value = docs[doc] as Json;
    const paths = pathsOf(value);
    const path = paths[node % paths.length] as Path;
    const here = at(value, path);
    const key = path[path.length - 1];
    const json = (v: Json | typeof DROP) => JSON.stringify(v);
    const isObject = here !== null && typeof here === 'object' && !Array.isArray(here);
    // Fall back to a wrong type where the chosen mutation does not apply to this node.
    let mutation = how;
    if (mutation === 1 && typeof here !== 'number') mutation = 0;
    if (mutation === 2 && !(typeof here === 'string' && typeof key === 'string' && kind.nameKeys.includes(key))) mutation = 0;
    if (mutation === 3 && !isObject) mutation = 0;
    if (mutation === 6 && !kind.droppable(path)) mutation = 0;
    switch (mutation) {
      case 1: {
        const v = [-1, -1.5][pick % 2] as number;
        return { text: json(replaced(value, path, v)), path, what: `${path.join('.')} = ${v}` };
      }
      case 2: {
        const v = PROTO_NAMES[pick % PROTO_NAMES.length] as string;
        return { text: json(replaced(value, path, v)), path, what: `${path.join('.')} = ${JSON.stringify(v)}` };
      }
      case 3: {
        const field = kind.extraFields[pick % kind.extraFields.length] as string;
        const obj: Record<string, Json> = {};
        for (const k of Object.keys(here as object)) Object.defineProperty(obj, k, { value: (here as Record<string, Json>)[k], enumerable: true, writable: true, configurable: true });
        Object.defineProperty(obj, field, { value: 1, enumerable: true, writable: true, configurable: true });
        return { text: json(replaced(value, path, obj)), path: [...path, field], what: `${path.join('.')}.${field} added` };
      }
      case 4: {
        const depth = 10_000;
        const deep = pick % 2 === 0 ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '0' + '}'.repeat(depth);
        return { text: json(replaced(value, path, DEEP)).replace(JSON.stringify(DEEP), deep), path, what: `${path.join('.')} nested ${depth} deep` };
      }
      case 5:
        return { text: json(replaced(value, path, 'x'.repeat(MAX_JSON_STRING + 1 + (pick % 3)))), path, what: `${path.join('.')} a long string` };
      case 6:
        return { text: json(replaced(value, path, DROP)), path: path.slice(0, -1), what: `${path.join('.')} dropped` };
      default: {
        const v = wrongType(here, pick, kind.nullInvalid);
        return { text: json(replaced(value, path, v)), path, what: `${path.join('.')} = ${JSON.stringify(v)}` };
      }
    }
  });
}

/** Raw garbage: random bytes, a real file cut short, random JSON that is not the format. */
function garbageArb(texts: readonly string[]): fc.Arbitrary<Mutation> {
  return fc.oneof(
    fc.uint8Array({ maxLength: 300 }).map((b) => ({ text: Buffer.from(b).toString('latin1'), path: [], what: 'random bytes' })),
    fc.record({ doc: fc.nat(texts.length - 1), cut: fc.nat() }).map(({ doc, cut }) => {
      const text = texts[doc] as string;
      const end = text.lastIndexOf('}');
      return { text: text.slice(0, cut % Math.max(1, end)), path: [], what: `cut at ${cut % Math.max(1, end)}` };
    }),
    fc.jsonValue({ maxDepth: 4 }).map((v) => ({ text: JSON.stringify(v) ?? 'null', path: [], what: 'random JSON' })),
  );
}

function expectNamesPath(line: string, m: Mutation): void {
  if (m.path.length === 0) return;
  const first = String(m.path[0]);
  expect(line.includes(`: ${first}`) || line.includes(`.${first}`) || line.includes(`${first}:`), `${m.what}: ${line}`).toBe(true);
}

describe('hostile replay and corpus files (property)', () => {
  const sources = [...listCorpusFiles(), join(EXAMPLES, 'ownership-tour.json')];
  const texts = sources.map((f) => readFileSync(f, 'utf8'));
  const docs = texts.map((t) => JSON.parse(t) as Json);
  const target = join(dir, 'mutated.json');

  it('a real file with one field mutated: exit 2, one line naming the file and the field', () => {
    fc.assert(
      fc.property(mutationArb(docs, REPLAY_KIND), (m) => {
        writeFileSync(target, m.text);
        const line = refused(target, m.what);
        expectNamesPath(line, m);
      }),
      { seed: 16, numRuns: 400 },
    );
  });

  it('raw garbage: exit 2, one line naming the file', () => {
    fc.assert(
      fc.property(garbageArb(texts), (m) => {
        writeFileSync(target, m.text);
        refused(target, m.what);
      }),
      { seed: 1616, numRuns: 200 },
    );
  });
});

describe('hostile result files for report --merge and bench files (property)', () => {
  let resultDoc: Json;
  beforeAll(async () => {
    const r = await runCampaign({ design: DEFAULT_DESIGN, machineName: 'small', machine: smallMachine(), maxOps: 8, baseSeed: 1, shard: { index: 1, count: 1 }, runs: 4 }, {});
    resultDoc = JSON.parse(resultText(r)) as Json;
  });

  it('a real result with one field mutated: exit 2, one line naming the file and the field', async () => {
    const mergeDir = join(dir, 'merge');
    const outDir = join(dir, 'merge-out');
    const file = join(mergeDir, 'shard.json');
    await fc.assert(
      fc.asyncProperty(fc.oneof({ weight: 4, arbitrary: mutationArb([resultDoc], RESULT_KIND) }, { weight: 1, arbitrary: garbageArb([JSON.stringify(resultDoc)]) }), async (m) => {
        rmSync(mergeDir, { recursive: true, force: true });
        mkdirSync(mergeDir, { recursive: true });
        writeFileSync(file, m.text);
        const errors: string[] = [];
        const code = await report(['--merge', mergeDir, '--out', outDir], { log: () => undefined, error: (l) => errors.push(l) });
        expect(code, `${m.what}: ${errors.join(' | ')}`).toBe(2);
        expectNamesPath(expectOneLine(errors, file, m.what), m);
      }),
      { seed: 1617, numRuns: 150 },
    );
  });

  it('a bench file with one figure mutated is refused with one error naming the file', () => {
    const doc: Json = { walks_per_s: 5269272, map_unmap_pairs_per_s: 421145, checked_dma_ops_per_s_interleaved: 1030 };
    const file = join(dir, 'bench.json');
    fc.assert(
      fc.property(mutationArb([doc], { nameKeys: [], nullInvalid: true, extraFields: PROTO_NAMES, droppable: () => false }), (m) => {
        writeFileSync(file, m.text);
        const r = readBenchFigures(file);
        expect(r.ok, m.what).toBe(false);
        if (r.ok === false) expect(r.errors[0]?.startsWith(`${file}: `), `${m.what}: ${r.errors[0]}`).toBe(true);
      }),
      { seed: 1618, numRuns: 100 },
    );
  });
});

describe('machines with one field set to an extreme value of the right type (property)', () => {
  const smmuDoc = JSON.parse(readFileSync(listCorpusFiles().find((f) => f.endsWith('ats-atc-survives-donation.json')) as string, 'utf8')) as { config: Json; operations: Json[] };
  const minimal = { ...(smmuDoc.config as Record<string, Json>), smmu: { ...((smmuDoc.config as Record<string, Json>).smmu as Record<string, Json>), features: { granules: ['4K'], oasBits: 40, bbml: 0, twoLevelStrtab: true, sidBits: 16, ril: false, ats: false } } };
  const configs: Json[] = [smmuDoc.config, minimal, { ...(smmuDoc.config as Record<string, Json>), smmu: undefined as unknown as Json }];
  const featureKeys = ['granules', 'oasBits', 'ril', 'bbml', 'cohacc', 'ats', 'vmid16', 'twoLevelStrtab', 'sev', 'msi', 's1p', 's2p', 'sidBits', 'cmdqLog2Max', 'evtqLog2Max', 'archMinorRev', 'gbpaResetAbort'];
  const extremes = [0, 1, 2, 3, 5, 9, 31, 32, 36, 40, 48, 52, 63, 64, 4095, 4096, 0x20_0000, 0x4000_0000, 2 ** 20, 2 ** 32, 2 ** 36, 2 ** 48, 2 ** 53 - 4096];
  const ops: Json[] = [
    { kind: 'host_access', addr: 0x4000_0000, access: 'write' },
    { kind: 'dma', sid: 1, addr: 0x4000_0000, access: 'read' },
    { kind: 'host_donate_hyp', pfn: 0x40001, nrPages: 1 },
    { kind: 'init_vm', vm: 1, protected: true },
  ];
  const target = join(dir, 'machine.json');

  const arb = fc.record({ config: fc.nat(configs.length - 1), node: fc.nat(), feature: fc.constantFrom(...featureKeys), value: fc.nat(extremes.length - 1), flip: fc.boolean(), granules: fc.subarray(['4K', '16K', '64K']) }).map(({ config, node, feature, value, flip, granules }) => {
    const doc = JSON.parse(JSON.stringify(configs[config])) as Record<string, Json>;
    const paths = pathsOf(doc).filter((p) => p.length > 0 && typeof at(doc, p) !== 'object');
    // Half of the time, a feature of the SMMU (absent from the file until now).
    const path: Path = flip && doc.smmu !== undefined ? ['smmu', 'features', feature] : (paths[node % paths.length] as Path);
    const old = path[1] === 'features' ? (feature === 'granules' ? [] : typeof (doc.smmu as Record<string, Record<string, Json>>).features?.[feature] === 'boolean' || ['cohacc', 'vmid16', 'sev', 'msi', 's1p', 's2p', 'gbpaResetAbort'].includes(feature) ? true : 0) : at(doc, path);
    const v: Json = Array.isArray(old) ? granules : typeof old === 'boolean' ? !old : (extremes[value] as number);
    if (path[1] === 'features') {
      const smmu = doc.smmu as Record<string, Json>;
      smmu.features = { ...((smmu.features as Record<string, Json> | undefined) ?? {}), [feature]: v };
      return { config: doc, what: `smmu.features.${feature} = ${JSON.stringify(v)}` };
    }
    return { config: replaced(doc, path, v) as Json, what: `${path.join('.')} = ${JSON.stringify(v)}` };
  });

  it('is refused with one line (exit 2), or boots and runs without a stack trace', () => {
    fc.assert(
      fc.property(arb, ({ config, what }) => {
        writeFileSync(target, JSON.stringify({ config, operations: ops }));
        err = [];
        out = [];
        let code: number | undefined;
        expect(() => {
          code = replay([target, '--brief']);
        }, what).not.toThrow();
        if (code === 2) expectOneLine(err, target, what);
        else expect([0, 1], `${what}: ${err.join(' | ')}`).toContain(code);
      }),
      { seed: 1619, numRuns: 200 },
    );
  });
});
