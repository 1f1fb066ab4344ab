import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { OPERATION_KINDS } from '../model/index.js';
import { OWNERSHIP_BUGS } from '../properties/bugs/ownership-bugs.js';
import { smallMachine } from '../properties/machine.js';
import { type CorpusEntry, decodeCorpusEntry, encodeCorpusEntry, isViolates, parseCorpusText } from './corpus-format.js';
import { assertCorpusFile, corpusName, listCorpusFiles, loadCorpusFile, replayEntry } from './corpus.js';

const files = listCorpusFiles();
const entries = files.map((f) => {
  const r = loadCorpusFile(f);
  return { file: f, entry: r.ok ? r.value : undefined };
});

describe('regression corpus: every file under conformance/corpus/ reaches its verdict', () => {
  it('holds hand-written files and one counterexample per injected bug', () => {
    expect(files.length).toBeGreaterThanOrEqual(11);
    expect(files.some((f) => corpusName(f).startsWith('passes/'))).toBe(true);
  });

  for (const file of files) {
    it(corpusName(file), () => {
      assertCorpusFile(file);
    });
  }

  it('proves every injected bug is still caught by the check meant for it', () => {
    for (const bug of OWNERSHIP_BUGS) {
      const mine = entries.filter((e) => e.entry?.bug === bug.name);
      expect(mine.map((e) => e.entry?.expect), bug.name).toContainEqual({ violates: bug.caughtBy });
    }
  });

  it('runs every operation kind in files expected to pass, and asserts their return values', () => {
    const passing = entries.filter((e) => e.entry !== undefined && !isViolates(e.entry.expect)).map((e) => e.entry as CorpusEntry);
    const kinds = new Set(passing.flatMap((e) => e.operations.map((o) => o.kind as string)));
    for (const kind of OPERATION_KINDS) expect(kinds.has(kind), kind).toBe(true);
    expect(passing.every((e) => e.returns !== undefined)).toBe(true);
  });
});

const dir = mkdtempSync(join(tmpdir(), 'corpus-'));
const good = JSON.parse(readFileSync(files.find((f) => f.endsWith('mmio-donation.json')) as string, 'utf8')) as Record<string, unknown>;

function write(name: string, value: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, typeof value === 'string' ? value : JSON.stringify(value));
  return path;
}

function errorOf(path: string): string {
  try {
    assertCorpusFile(path);
  } catch (e) {
    return (e as Error).message;
  }
  return 'no error';
}

describe('corpus format: a malformed file fails with its name and the path of the bad field', () => {
  const ops = good.operations as Record<string, unknown>[];
  const cases: [string, unknown, RegExp][] = [
    ['bad-op.json', { ...good, operations: [ops[0], ops[1], { ...ops[2], pfn: -1 }] }, /bad-op\.json: operations\.2\.pfn: expected an integer in \[0, 2\^64\), got -1/],
    ['bad-kind.json', { ...good, operations: [{ kind: 'host_donate' }] }, /bad-kind\.json: operations\.0\.kind: expected one of/],
    ['bad-check.json', { ...good, expect: { violates: 'no_such_check' } }, /bad-check\.json: expect\.violates: expected a check name: one of refinement_ret, .*got "no_such_check"/],
    ['bad-verdict.json', { ...good, expect: { passes: false } }, /bad-verdict\.json: expect: expected \{"passes": true\} or \{"violates": "<check name>"\}/],
    ['bad-format.json', { ...good, format: 2 }, /bad-format\.json: format: expected 1 \(the corpus format version\), got 2/],
    ['bad-date.json', { ...good, provenance: { ...(good.provenance as object), date: 'yesterday' } }, /bad-date\.json: provenance\.date: expected a date YYYY-MM-DD, got "yesterday"/],
    ['no-description.json', { ...good, provenance: { how: 'hand-written', date: '2026-11-21' } }, /no-description\.json: provenance\.description: expected one non-empty line/],
    ['two-lines.json', { ...good, provenance: { ...(good.provenance as object), description: 'a\nb' } }, /two-lines\.json: provenance\.description: expected one non-empty line/],
    ['typo.json', { ...good, desing: 'v6-posted' }, /typo\.json: desing: unknown field/],
    ['bad-design.json', { ...good, design: 'v9' }, /bad-design\.json: design: expected a design variant: one of v6-posted, v6-hardened, v6-hide-ats, v6-hide-ats-host-atschk, v6-atc-inv, vmid-wide-invalidation, block-idmap-with-split, shared-cpu-s2, shared-cpu-s2-prepopulated, no-tlbi-nh-after-s2, got "v9"/],
    ['bad-bug.json', { ...good, bug: 'nope' }, /bad-bug\.json: bug: expected an injected bug: one of no-host-tlbi-on-donation/],
    ['bad-config.json', { ...good, config: { ...(good.config as object), memory: [{ base: 3, size: 4096 }] } }, /bad-config\.json: config\.memory\.0\.base: expected a non-negative multiple of 4096, got 3/],
    ['bad-returns.json', { ...good, returns: ['0'] }, /bad-returns\.json: returns: expected one return value per operation \(20\), got 1/],
    ['bad-path.json', { ...good, provenance: { ...(good.provenance as object), path: '1:x' } }, /bad-path\.json: provenance\.path: expected a fast-check path/],
    ['not-json.json', '{ "format": 1,', /not-json\.json: not valid JSON/],
    ['bad-schedule.json', { ...good, schedule: [{ kind: 'dma', sid: 1, addr: 4096, access: 'read' }, { kind: 'host_donate_hyp', pfn: 1, nrPages: 1 }] }, /bad-schedule\.json: schedule\.1\.kind: expected a hardware action that can run inside a step \(dma, dma_translated, .*\), got "host_donate_hyp"/],
    ['bad-schedule-field.json', { ...good, schedule: [{ kind: 'dma', sid: 1, addr: 4096, access: 'fetch' }] }, /bad-schedule-field\.json: schedule\.0\.access: expected/],
  ];
  for (const [name, content, message] of cases) {
    it(name, () => {
      expect(errorOf(write(name, content))).toMatch(message);
    });
  }

  it('the file itself decodes, and the design defaults to v6', () => {
    const { design: _d, ...withoutDesign } = good;
    const r = decodeCorpusEntry(withoutDesign);
    expect(r.ok && r.value.design).toBe('v6-posted');
  });

  it('takes the path "guided" of a counterexample a guided campaign mutated from its corpus (and no other word)', () => {
    const withPath = (path: string) => decodeCorpusEntry({ ...good, provenance: { ...(good.provenance as object), path } }).ok;
    expect(withPath('guided')).toBe(true);
    expect(withPath('0:3:1')).toBe(true);
    expect(withPath('guide')).toBe(false);
  });

  it('round-trips through the canonical text', () => {
    for (const { entry } of entries) {
      if (entry === undefined) continue; // reported by its own test above
      const again = parseCorpusText('x', encodeCorpusEntry(entry));
      expect(again.ok && again.value).toEqual(entry);
    }
  });
});

describe('corpus verdicts can fail', () => {
  const m = smallMachine();
  const P = m.memory[0]!.base / 4096;
  const base: CorpusEntry = {
    format: 1,
    design: 'v6-posted',
    config: m,
    expect: { passes: true },
    provenance: { how: 'test', date: '2026-11-21', description: 'test' },
    operations: [
      { kind: 'host_access', addr: P * 4096, access: 'read' },
      { kind: 'host_donate_hyp', pfn: P, nrPages: 1 },
    ],
  };

  it('a passing file fails once a bug makes the run violate a check', () => {
    const r = replayEntry({ ...base, bug: 'no-host-tlbi-on-donation' });
    expect(r.ok).toBe(false);
    expect(r.message).toMatch(/expected to pass, got host_cpu_isolation at step 1 host_donate_hyp/);
  });

  it('a violates file fails when the run passes, and says what to do if the bug was fixed', () => {
    const r = replayEntry({ ...base, expect: { violates: 'host_cpu_isolation' } });
    expect(r.ok).toBe(false);
    expect(r.message).toMatch(/run passes — if the bug was fixed, set "expect" to \{"passes": true\}/);
  });

  it('a violates file fails when another check fires instead', () => {
    const r = replayEntry({ ...base, bug: 'no-host-tlbi-on-donation', expect: { violates: 'pool_accounting' } });
    expect(r.message).toMatch(/expected a violation of pool_accounting, got host_cpu_isolation/);
  });

  it('recorded return values are asserted', () => {
    expect(replayEntry({ ...base, returns: ['OK', '0'] }).ok).toBe(true);
    const r = replayEntry({ ...base, returns: ['OK', '-EPERM'] });
    expect(r.message).toMatch(/returns\.1: the model returns 0 for host_donate_hyp, the file records -EPERM/);
  });

  it('files in nested directories such as new/ are found', () => {
    const root = mkdtempSync(join(tmpdir(), 'corpus-tree-'));
    mkdirSync(join(root, 'new', 'deeper'), { recursive: true });
    writeFileSync(join(root, 'a.json'), encodeCorpusEntry(base));
    writeFileSync(join(root, 'new', 'deeper', 'b.json'), encodeCorpusEntry(base));
    writeFileSync(join(root, 'new', 'notes.txt'), 'not a corpus file');
    expect(listCorpusFiles(root).map((f) => f.slice(root.length))).toEqual(['/a.json', '/new/deeper/b.json']);
  });
});
