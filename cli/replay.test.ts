import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { findInjectedBug } from '../properties/bugs/index.js';
import { OWNERSHIP_BUGS } from '../properties/bugs/ownership-bugs.js';
import { smallMachineWithSmmu } from '../properties/machine.js';
import { listCorpusFiles } from '../conformance/corpus.js';
import { main } from './replay.js';

const dir = mkdtempSync(join(tmpdir(), 'replay-'));
function file(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

let out: string[] = [];
let err: string[] = [];
beforeEach(() => {
  out = [];
  err = [];
  vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(a.join(' ')));
});
afterEach(() => vi.restoreAllMocks());

const small = { physShift: 36, memory: [{ base: 0x4000_0000, size: 0x80_0000 }], poolPages: 16, maxVms: 2, vmStructPages: 2 };
const ops = [
  { kind: 'host_access', addr: 0x4000_0000, access: 'read' },
  { kind: 'host_donate_hyp', pfn: 0x40000, nrPages: 1 },
  { kind: 'host_access', addr: 0x4000_0000, access: 'read' },
];

describe('replay CLI', () => {
  it('prints one line per operation and exits 0 when clean', () => {
    expect(main([file('ok.json', JSON.stringify({ config: small, operations: ops }))])).toBe(0);
    expect(out.filter((l) => /model .* system /.test(l))).toHaveLength(3);
    expect(out.at(-1)).toBe('3 operations, no violation');
  });

  it('prints JSON with --json', () => {
    expect(main([file('ok2.json', JSON.stringify({ config: small, operations: ops })), '--json'])).toBe(0);
    const parsed = JSON.parse(out[0] as string) as { results: { modelRet: number; systemRet: number }[]; violations: unknown[] };
    expect(parsed.results.map((r) => [r.modelRet, r.systemRet])).toEqual([[0, 0], [0, 0], [1, 1]]);
    expect(parsed.violations).toEqual([]);
  });

  it('exits 1 and names the check when the system violates a property', () => {
    const bug = OWNERSHIP_BUGS.find((b) => b.name === 'no-host-tlbi-on-donation')!;
    expect(main([file('bug.json', JSON.stringify({ config: small, operations: ops }))], { inject: bug.inject })).toBe(1);
    expect(out.join('\n')).toMatch(/\[host_cpu_isolation\]/);
  });

  it('rejects bad files with the path of the bad field, exit 2, no stack trace', () => {
    expect(main([file('bad1.json', JSON.stringify({ operations: [{ kind: 'host_donate_hyp', pfn: 1.5, nrPages: 1 }] }))])).toBe(2);
    expect(err[0]).toMatch(/operations\.0\.pfn: expected an integer in \[0, 2\^64\), got 1\.5/);
    expect(main([file('bad2.json', JSON.stringify({ operations: [{ kind: 'host_donate' }] }))])).toBe(2);
    expect(err.at(-1)).toMatch(/operations\.0\.kind: expected one of/);
    expect(main([file('bad3.json', '{ not json')])).toBe(2);
    expect(err.at(-1)).toMatch(/not valid JSON/);
    expect(main([file('bad4.json', JSON.stringify({ config: { ...small, memory: [{ base: 3, size: 4096 }] }, operations: [] }))])).toBe(2);
    expect(err.at(-1)).toMatch(/config\.memory\.0\.base: expected a non-negative multiple of 4096, got 3/);
    expect(main([join(dir, 'missing.json')])).toBe(2);
    expect(err.at(-1)).toMatch(/cannot read .*ENOENT/);
  });

  it('runs a plain file\u2019s "schedule" at the yield points, and rejects a bad one with its path', () => {
    const machine = smallMachineWithSmmu({ ats: true });
    const steps = [{ kind: 'ats_translate', sid: 2, addr: 0x4000_0000 }, { kind: 'host_donate_hyp', pfn: 0x40000, nrPages: 1 }];
    const bug = findInjectedBug('atc-inv-before-tlbi-sync');
    const options = { inject: bug?.inject ?? (() => undefined), ...(bug?.afterBoot === undefined ? {} : { afterBoot: bug.afterBoot }), driver: { atcInvalidation: true } };
    const schedule = Array.from({ length: 16 }, () => ({ kind: 'ats_translate', sid: 2, addr: 0x4000_0000 }));
    // Without the schedule the bug's race does not happen; with it the device refills its ATC.
    expect(main([file('race.json', JSON.stringify({ config: machine, operations: steps }))], options)).toBe(0);
    expect(main([file('race2.json', JSON.stringify({ config: machine, operations: steps, schedule }))], options)).toBe(1);
    expect(out.join('\n')).toMatch(/\[dma_isolation\] device sid 2 ATC entry/);
    expect(main([file('race3.json', JSON.stringify({ config: machine, operations: steps, schedule: [{ kind: 'host_access', addr: 0, access: 'read' }] }))])).toBe(2);
    expect(err.at(-1)).toMatch(/schedule\.0\.kind: expected a hardware action that can run inside a step/);
  });

  it('prints usage for misuse', () => {
    expect(main([])).toBe(2);
    expect(main(['a.json', '--frobnicate'])).toBe(2);
    expect(err.join('\n')).toMatch(/unknown option --frobnicate/);
    expect(main(['--help'])).toBe(0);
    expect(out.join('\n')).toMatch(/usage: npm run replay/);
  });

  it('shows, per step, the states of the pages the operation touched, before → after', () => {
    expect(main([file('pages.json', JSON.stringify({ config: small, operations: ops }))])).toBe(0);
    const text = out.join('\n');
    expect(text).toMatch(/host_donate_hyp .*\n {8}· pfn 0x40000 +host OWNED→NOPAGE {2}hyp NOPAGE→OWNED\n/);
    expect(text).toMatch(/host_access .*ABORT .*\n {8}· pfn 0x40000 +host NOPAGE {2}hyp OWNED\n/);
    expect(text).not.toMatch(/≠ impl/);
    out = [];
    expect(main([file('pages2.json', JSON.stringify({ config: small, operations: ops })), '--brief'])).toBe(0);
    // --brief leaves out the page lines (the step line names its page in hex: pfn 0x40000, addr 0x40000000).
    expect(out.join('\n')).not.toMatch(/· pfn 0x40000/);
    expect(out.join('\n')).toMatch(/host_donate_hyp +pfn 0x40000, nrPages 1 +model 0/);
  });

  it('marks the page a violation names, and shows where the implementation disagrees with the model', () => {
    const tlbi = OWNERSHIP_BUGS.find((b) => b.name === 'no-host-tlbi-on-donation')!;
    expect(main([file('v1.json', JSON.stringify({ config: small, operations: ops }))], { inject: tlbi.inject })).toBe(1);
    expect(out.join('\n')).toMatch(/✗ pfn 0x40000 +host OWNED→NOPAGE {2}hyp NOPAGE→OWNED {3}← host_cpu_isolation/);
    out = [];
    const early = OWNERSHIP_BUGS.find((b) => b.name === 'donate-updates-before-checking')!;
    const shareThenDonate = [
      { kind: 'host_share_ffa', pfn: 0x40000, nrPages: 1 },
      { kind: 'host_donate_hyp', pfn: 0x40000, nrPages: 1 },
    ];
    expect(main([file('v2.json', JSON.stringify({ config: small, operations: shareThenDonate }))], { inject: early.inject })).toBe(1);
    // The model refuses the donation and keeps hyp NOPAGE; the buggy implementation set OWNED.
    expect(out.join('\n')).toMatch(/✗ pfn 0x40000 +host SHARED_OWNED {2}hyp NOPAGE .*\n {10}≠ impl +host SHARED_OWNED {2}hyp NOPAGE→OWNED/);
  });

  it('replays corpus files with their design and test-only bug, and says whether the verdict holds', () => {
    // A corpus file exits by its expected verdict: this one violates as it says, so 0.
    const corpusFile = listCorpusFiles().find((f) => f.includes('no-host-tlbi-on-donation'))!;
    expect(main([corpusFile])).toBe(0);
    const text = out.join('\n');
    expect(text).toMatch(/^corpus file: design v6-posted, test-only injected bug no-host-tlbi-on-donation; expected verdict: violates host_cpu_isolation/);
    expect(text).toMatch(/expected verdict \(violates host_cpu_isolation\): holds/);
    out = [];
    const passing = listCorpusFiles().find((f) => f.endsWith('mmio-donation.json'))!;
    expect(main([passing])).toBe(0);
    expect(out.join('\n')).toMatch(/expected verdict \(passes\): holds\n20 operations, no violation$/);
    const bad = file('bad-corpus.json', JSON.stringify({ ...JSON.parse(readFileSync(passing, 'utf8')), expect: { violates: 'nothing' } }));
    expect(main([bad])).toBe(2);
    expect(err.at(-1)).toMatch(/bad-corpus\.json: expect\.violates: expected a check name/);
  });

  it('shows the commands the hypervisor issued in each step', () => {
    const forged = listCorpusFiles().find((f) => f.endsWith('forged-translated-dma.json'))!;
    expect(main([forged, '--brief'])).toBe(0);
    expect(out.join('\n')).toMatch(/host_donate_hyp +pfn 0x40020, nrPages 1 .*ok\n {8}▸ hypervisor commands: TLBI_S2_IPA .*vmid=0 leaf=true .*address=0x40020000; CMD_SYNC .*; TLBI_NH_ALL vmid=0; CMD_SYNC .*; ATC_INV .*sid=2 size=0x34/);
  });

  it('shows the scheduled hardware actions that ran at each yield point (a race counterexample)', () => {
    const race = listCorpusFiles().find((f) => f.includes('atc-inv-before-tlbi-sync'))!;
    expect(main([race, '--brief'])).toBe(0);
    const text = out.join('\n');
    expect(text).toMatch(/host_donate_hyp +pfn 0x40003, nrPages 1 .*VIOLATION\n( {8}▸ hypervisor commands: .*\n)?( {8}⟂ at [a-z_]+: .*\n)+ {8}\[dma_isolation\] device sid 2 ATC entry/);
    expect(text).toMatch(/⟂ at cmdq_prod_written: ats_translate sid 2, addr 0x40003000 → ATS success/);
  });

  it('shows, under a DMA violation, each cache and ATC entry that reaches the page: its fill, the invalidations it survived, its end', () => {
    const race = listCorpusFiles().find((f) => f.includes('atc-inv-before-tlbi-sync'))!;
    expect(main([race])).toBe(0);
    const text = out.join('\n');
    expect(text).toMatch(/\[dma_isolation\] device sid 2 ATC entry .*\n {8}⌁ SMMU cache and ATC entries reaching pfn 0x40003 \(for dma_isolation\):\n/);
    expect(text).toMatch(/ {12}TLB vmid 0 IPA 0x40003000\+4K → PA 0x40003000 rw, level 3 \(4K granule\), walked for sid 1\n {14}filled at step 0 by dma of sid 1 \(read 0x40003000\)\n {14}removed at step 1 by TLBI_S2_IPA /);
    expect(text).toMatch(/ {12}ATC of sid 2: 0x40003000\+4K → PA 0x40003000 rw\n {14}filled at step 1 by ATS translation request of sid 2 for 0x40003000\n {14}still cached at the end/);
    expect(text).toMatch(/ {14}not removed by TLBI_S2_IPA .*leaf=true.* \(took effect at step 1\)/);
    // The SMMU's state on an SMMU machine instead of "not observed": its configuration changes and the DMA mapping of each page.
    expect(text).toMatch(/ {8}▸ SMMU: .*cached STE sid 1: s2 vmid 0 S2TTB 0x[0-9a-f]+ \(new\)/);
    expect(text).toMatch(/✗ pfn 0x40003 +host OWNED→NOPAGE +hyp NOPAGE→OWNED +dma rw→unmapped +← dma_isolation/);
    expect(text).not.toMatch(/not be observed|re-derived/);
  });

  it('--json carries the decoded step, the hypervisor commands, the interleaved actions and the cache entries of each violation', () => {
    const race = listCorpusFiles().find((f) => f.includes('atc-inv-before-tlbi-sync'))!;
    expect(main([race, '--json'])).toBe(0);
    expect(out).toHaveLength(1);
    const parsed = JSON.parse(out[0] as string) as {
      results: { described: string; commands?: string[]; interleaved?: { at: string; described: string; detail: string }[] }[];
      cacheEntries: { step: number; check: string; subject: string; entries: { cache: string; filled: { step: number; by: string }; kept: { command: string }[]; removed?: { by: string } }[] }[];
    };
    expect(parsed.results[1]?.described).toBe('pfn 0x40003, nrPages 1');
    expect(parsed.results[1]?.commands?.[0]).toMatch(/^ATC_INV /);
    expect(parsed.results[1]?.interleaved?.at(-1)).toEqual({ at: 'cmdq_prod_written', hw: { kind: 'ats_translate', sid: 2, addr: 0x4000_3000 }, described: 'sid 2, addr 0x40003000', detail: 'ATS success' });
    const [c] = parsed.cacheEntries;
    expect(c).toMatchObject({ step: 1, check: 'dma_isolation', subject: 'pfn 0x40003' });
    expect(c?.entries.filter((e) => e.cache === 'atc' && e.removed === undefined).map((e) => e.filled)).toEqual([{ step: 1, by: 'ATS translation request of sid 2 for 0x40003000' }]);
  });

  it('exits 1 with "expected verdict not reached" when a corpus file no longer shows its verdict or its recorded return codes', () => {
    // The forged Translated DMA of v6-atc-inv, replayed on v6-hide-ats (which removes it): no violation.
    const forged = listCorpusFiles().find((f) => f.endsWith('forged-translated-dma.json'))!;
    expect(main([forged])).toBe(0);
    out = [];
    const fixed = file('fixed.json', JSON.stringify({ ...JSON.parse(readFileSync(forged, 'utf8')), design: 'v6-hide-ats' }));
    expect(main([fixed])).toBe(1);
    expect(out.join('\n')).toMatch(/expected verdict \(violates dma_isolation\): DOES NOT HOLD\nexpected verdict not reached: expected a violation of dma_isolation, but the run passes/);
    // A passing file whose recorded return codes differ from the model's.
    out = [];
    const passing = JSON.parse(readFileSync(listCorpusFiles().find((f) => f.endsWith('mmio-donation.json'))!, 'utf8')) as { returns: string[] };
    const wrong = file('wrong-returns.json', JSON.stringify({ ...passing, returns: ['-EPERM', ...passing.returns.slice(1)] }));
    expect(main([wrong])).toBe(1);
    expect(out.join('\n')).toMatch(/expected verdict not reached: returns\.0: the model returns \S+ for \S+, the file records -EPERM/);
  });

  it('writes a self-contained HTML timeline with --html', () => {
    const html = join(dir, 'timeline.html');
    expect(main([file('h.json', JSON.stringify({ config: small, operations: ops })), '--html', html])).toBe(0);
    expect(out.at(-1)).toBe(`timeline: ${html}`);
    const page = readFileSync(html, 'utf8');
    expect(page).toMatch(/<table id="timeline" data-steps="3" data-pages="1">/);
    expect(page).not.toMatch(/(src|href)="(https?:)?\/\//);
    expect(main([file('h2.json', JSON.stringify({ config: small, operations: ops })), '--html', join(dir, 'no', 'such', 'dir', 'x.html')])).toBe(2);
    expect(err.at(-1)).toMatch(/cannot write .*x\.html: ENOENT/);
    expect(existsSync(join(dir, 'no'))).toBe(false);
  });
});
