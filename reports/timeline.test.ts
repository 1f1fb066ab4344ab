import { spawnSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { type Operation } from '../model/index.js';
import { entryRunOptions, listCorpusFiles, loadCorpusFile } from '../conformance/corpus.js';
import { type StepOp, traceOperations } from '../conformance/trace.js';
import { OWNERSHIP_BUGS } from '../properties/bugs/ownership-bugs.js';
import { smallMachine, smallMachineWithSmmu } from '../properties/machine.js';
import { CELL_CHANGED, CELL_SHARED, CELL_TOUCHED, CELL_VIOLATION, MAX_COLUMNS, OWNERS, ROWS_PER_PAGE, type TimelineData, renderTimeline, timelineColumns, timelineData } from './timeline.js';

const machine = smallMachine();
const P = machine.memory[0]!.base / 4096;
const ops: Operation[] = [
  { kind: 'host_access', addr: (P + 2) * 4096, access: 'read' },
  { kind: 'host_share_hyp', pfn: P + 1 },
  { kind: 'host_donate_hyp', pfn: P + 2, nrPages: 2 },
  { kind: 'init_vm', vm: 1, protected: true },
  { kind: 'host_donate_guest', pfn: P + 5, gfn: 3, vm: 1 },
  { kind: 'guest_share_host', vm: 1, gfn: 3 },
  { kind: 'host_access', addr: (P + 2) * 4096, access: 'read' },
];
const tlbi = OWNERSHIP_BUGS.find((b) => b.name === 'no-host-tlbi-on-donation')!;
const trace = traceOperations(machine, ops, { inject: tlbi.inject });
const meta = { title: 'timeline test', source: 'test', machine: 'small', design: 'v6-posted', bug: tlbi.name, expect: 'violates host_cpu_isolation' };
const html = renderTimeline(trace, meta);
const dir = mkdtempSync(join(tmpdir(), 'timeline-'));
const file = join(dir, 'timeline.html');
writeFileSync(file, html);

/** The data the page's script draws from (what the DOM shows, before any script runs). */
function embedded(page: string): TimelineData & { steps: unknown[][] } {
  const m = /<script type="application\/json" id="timeline-data">([^<]*)<\/script>/.exec(page);
  expect(m).not.toBeNull();
  return JSON.parse(m?.[1] ?? '{}') as TimelineData & { steps: unknown[][] };
}

// A race counterexample on an SMMU machine: commands, interleaved hardware, SMMU state, cache histories.
const raceFile = listCorpusFiles().find((f) => f.includes('atc-inv-before-tlbi-sync'))!;
const race = (() => {
  const loaded = loadCorpusFile(raceFile);
  if (!loaded.ok) throw new Error(loaded.errors.join('; '));
  return traceOperations(loaded.value.config, loaded.value.operations, { ...entryRunOptions(loaded.value), traceCommands: true });
})();
const raceFileHtml = join(dir, 'race.html');
writeFileSync(raceFileHtml, renderTimeline(race, { ...meta, title: 'race', bug: 'atc-inv-before-tlbi-sync', expect: 'violates dma_isolation' }));

/** 2,000 steps on an SMMU machine: DMA, shares and donations over a few dozen pages. */
function longRun(): StepOp[] {
  const m = smallMachineWithSmmu({ ats: false });
  const base = m.memory[0]!.base / 4096;
  const out: StepOp[] = [];
  for (let i = 0; out.length < 2000; i++) {
    const pfn = base + 4 + (i % 16);
    out.push({ kind: 'dma', sid: 1, addr: pfn * 4096, access: 'read' }, { kind: 'host_share_hyp', pfn }, { kind: 'host_unshare_hyp', pfn }, { kind: 'host_donate_hyp', pfn: base + 40 + i, nrPages: 1 });
  }
  return out.slice(0, 2000);
}
const longTrace = traceOperations(smallMachineWithSmmu({ ats: false }), longRun(), { traceCommands: true });
const longHtml = renderTimeline(longTrace, { ...meta, title: 'long', bug: undefined as unknown as string });
const longFile = join(dir, 'long.html');
writeFileSync(longFile, longHtml);

/** Debian's package installs /usr/bin/chromium; CI machines may have none, and then we skip. */
function findChromium(): string | undefined {
  const names = [process.env.CHROMIUM_BIN, 'chromium', 'chromium-browser', 'google-chrome-stable', 'google-chrome'].filter((n): n is string => n !== undefined && n !== '');
  for (const name of names) {
    const candidates = name.includes('/') ? [name] : (process.env.PATH ?? '').split(delimiter).map((d) => join(d, name));
    for (const c of candidates) {
      try {
        accessSync(c, constants.X_OK);
        return c;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}
const chromium = findChromium();

function headless(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const profile = mkdtempSync(join(tmpdir(), 'chromium-profile-'));
  // Without the background-networking flags Chromium keeps dialling out from a closed network.
  const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`];
  const r = spawnSync(chromium as string, [...flags, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const tbody = (dom: string) => dom.slice(dom.indexOf('<tbody>'), dom.indexOf('</tbody>'));

describe('HTML timeline', () => {
  it('has a step per operation, a column per touched page, owner colours and the violation cell', () => {
    const { columns } = timelineColumns(trace);
    expect(columns).toEqual([P + 1, P + 2, P + 3, P + 5]);
    const data = timelineData(trace);
    expect(data.steps).toHaveLength(ops.length);
    expect(html.match(/<th class="page"/g)).toHaveLength(columns.length);
    expect(html).toMatch(/<table id="timeline" data-steps="7" data-pages="4">/);
    const cell = (step: number, pfn: number) => data.cells[data.steps[step]!.cells[columns.indexOf(pfn)]!]!;
    // The donated page in the violating step: the hypervisor's, touched, changed, violated.
    const last = cell(6, P + 2);
    expect(OWNERS[last[0] & 3]).toBe('hyp');
    expect(last[0] & (CELL_TOUCHED | CELL_VIOLATION)).toBe(CELL_TOUCHED | CELL_VIOLATION);
    expect(data.texts[last[1]]).toBe('host_cpu_isolation');
    expect(cell(2, P + 2)[0] & CELL_CHANGED).toBe(CELL_CHANGED);
    const shared = cell(5, P + 5);
    expect([OWNERS[shared[0] & 3], shared[0] & CELL_SHARED]).toEqual(['guest', CELL_SHARED]);
    expect(data.steps[2]).toMatchObject({ kind: 'host_donate_hyp', described: `pfn 0x${(P + 2).toString(16)}, nrPages 2`, json: `{"pfn":${P + 2},"nrPages":2}`, model: '0', impl: '0' });
    // What the page embeds is this data, each step as an array in STEP_FIELDS order.
    expect(embedded(html).steps).toHaveLength(ops.length);
    expect(html).not.toMatch(/(src|href)=["']?(https?:)?\/\//);
    expect(html).not.toMatch(/<link|@import/);
  });

  it('caps the columns', () => {
    const many: Operation[] = [{ kind: 'host_donate_hyp', pfn: P, nrPages: 1 }];
    for (let i = 0; i < MAX_COLUMNS + 5; i++) many.push({ kind: 'host_share_hyp', pfn: P + 10 + i });
    const t = traceOperations(machine, many);
    expect(timelineColumns(t)).toEqual({ columns: expect.any(Array) as unknown, hidden: 6 });
    expect(renderTimeline(t, meta)).toMatch(/6 more page\(s\) not shown/);
  });

  it('on an SMMU machine: decoded arguments, hypervisor commands, hardware at the yield points, the SMMU state and the cache entries of a violation', () => {
    const data = timelineData(race);
    const step = data.steps[1]!;
    expect(step.described).toBe('pfn 0x40003, nrPages 1');
    expect(step.commands.map((c) => data.texts[c]?.split(' ')[0])).toEqual(['ATC_INV', 'CMD_SYNC', 'TLBI_S2_IPA', 'CMD_SYNC', 'TLBI_NH_ALL', 'CMD_SYNC']);
    expect(step.interleaved.at(-1)).toBe('at cmdq_prod_written: ats_translate sid 2, addr 0x40003000 → ATS success');
    expect(data.smmuStates[step.smmu]?.map((l) => data.texts[l])).toContain('CR0: 0x1d (SMMUEN|EVTQEN|CMDQEN|ATSCHK)');
    expect(step.smmuChanges).toEqual([expect.stringMatching(/^cached STE sid 2: s2 vmid 0 .* \(new\)$/) as unknown]);
    expect(step.caches[0]).toMatchObject({ subject: 'pfn 0x40003', check: 'dma_isolation' });
    expect(step.caches[0]?.lines.join('\n')).toMatch(/ATC of sid 2: 0x40003000\+4K → PA 0x40003000 rw\n {2}filled at step 1 by ATS translation request of sid 2 for 0x40003000\n {2}still cached at the end/);
    // The cell of the page says how the DMA stage-2 maps it: the implementation's state, not "not observed".
    const cell = data.cells[step.cells[data.pages.indexOf('0x40003')]!]!;
    expect([data.texts[cell[6]], data.texts[cell[7]]]).toEqual(['rw', 'unmapped']);
    expect(data.texts).not.toContain('implementation: not observed');
  });

  it('stays small at 2,000 steps: one page of rows at a time, from compact data', () => {
    expect(longTrace.steps).toHaveLength(2000);
    const bytes = Buffer.byteLength(longHtml);
    expect(bytes).toBeLessThan(1_000_000);
    const data = embedded(longHtml);
    expect(data.steps).toHaveLength(2000);
    expect(data.rowsPerPage).toBe(ROWS_PER_PAGE);
    // Repeated text is stored once: far fewer distinct cells and texts than cells.
    expect(data.cells.length).toBeLessThan(100);
    expect(data.texts.length).toBeLessThan(2000);
    // No row is in the static page: the script draws them.
    expect(tbody(longHtml)).toBe('<tbody>');
  });

  it.skipIf(chromium === undefined)('renders in headless Chromium: DOM after the script ran, and a screenshot', () => {
    const dom = headless(['--dump-dom', pathToFileURL(file).href]);
    expect(dom.status, dom.stderr).toBe(0);
    expect(dom.stdout).toMatch(/<body data-ready="1">/);
    expect(dom.stdout).toMatch(new RegExp(`<div class="meta" id="shape">${ops.length} steps × 4 pages</div>`));
    const body = tbody(dom.stdout);
    expect(body.match(/<tr /g)).toHaveLength(ops.length);
    expect(body.match(/<td class="[^"]*\bviolation\b[^"]*" data-col="\d+" data-k="6" data-pfn="0x40002"/g)).toHaveLength(1);
    const png = join(dir, 'timeline.png');
    const shot = headless(['--window-size=1400,700', `--screenshot=${png}`, pathToFileURL(file).href]);
    expect(shot.status, shot.stderr).toBe(0);
    const bytes = readFileSync(png);
    expect(bytes.subarray(1, 4).toString()).toBe('PNG');
    expect([bytes.readUInt32BE(16), bytes.readUInt32BE(20)]).toEqual([1400, 700]);
  });

  it.skipIf(chromium === undefined)('at 2,000 steps in headless Chromium: one page of 100 rows, and #step=N opens N\u2019s page with its detail', () => {
    const first = headless(['--dump-dom', pathToFileURL(longFile).href]);
    expect(first.status, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/<body data-ready="1">/);
    expect(first.stdout).toMatch(/id="pager">page 1 of 20 \(2000 of 2000 steps\)</);
    expect(first.stdout).toMatch(/id="shape">2000 steps × \d+ pages</);
    expect(tbody(first.stdout).match(/<tr /g)).toHaveLength(ROWS_PER_PAGE);
    const at = headless(['--dump-dom', `${pathToFileURL(longFile).href}#step=1503`]);
    expect(at.status, at.stderr).toBe(0);
    expect(at.stdout).toMatch(/id="pager">page 16 of 20 /);
    const rows = [...tbody(at.stdout).matchAll(/<tr data-step="(\d+)"( class="[^"]*")?/g)];
    expect(rows.map((r) => Number(r[1]))).toEqual(Array.from({ length: ROWS_PER_PAGE }, (_, i) => 1500 + i));
    expect(rows.find((r) => r[1] === '1503')?.[2]).toMatch(/current/);
    expect(at.stdout).toMatch(/<div id="detail">step 1503: host_donate_hyp pfn 0x[0-9a-f]+, nrPages 1\n/);
    expect(at.stdout).toMatch(/▸ hypervisor command: TLBI_S2_IPA /);
    expect(at.stdout).toMatch(/SMMU after the step:\n {2}CR0: 0xd \(SMMUEN\|EVTQEN\|CMDQEN\)/);
  });

  it.skipIf(chromium === undefined)('a violation\u2019s step detail shows the cache and ATC entries that reach its page', () => {
    const dom = headless(['--dump-dom', `${pathToFileURL(raceFileHtml).href}#step=1`]);
    expect(dom.status, dom.stderr).toBe(0);
    expect(dom.stdout).toMatch(/⌁ SMMU cache and ATC entries reaching pfn 0x40003 \(for dma_isolation\):\n {4}TLB vmid 0 IPA 0x40003000\+4K/);
    expect(dom.stdout).toMatch(/⟂ at cmdq_prod_written: ats_translate sid 2, addr 0x40003000 → ATS success/);
  });
});
