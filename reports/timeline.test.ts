import { spawnSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { type Operation } from '../model/index.js';
import { traceOperations } from '../conformance/trace.js';
import { OWNERSHIP_BUGS } from '../properties/bugs/ownership-bugs.js';
import { smallMachine } from '../properties/machine.js';
import { MAX_COLUMNS, renderTimeline, timelineColumns } from './timeline.js';

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

describe('HTML timeline', () => {
  it('has a row per step, a column per touched page, owner colours and the violation cell', () => {
    const { columns } = timelineColumns(trace);
    expect(columns).toEqual([P + 1, P + 2, P + 3, P + 5]);
    expect(html.match(/<tr data-step="/g)).toHaveLength(ops.length);
    expect(html.match(/<th class="page"/g)).toHaveLength(columns.length);
    expect(html).toMatch(/<td class="own-hyp touched changed violation" data-pfn="0x40002"/);
    expect(html).toMatch(/<td class="own-guest shared[^"]*" data-pfn="0x40005"/);
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

  it.skipIf(chromium === undefined)('renders in headless Chromium: DOM after the script ran, and a screenshot', () => {
    const dom = headless(['--dump-dom', pathToFileURL(file).href]);
    expect(dom.status, dom.stderr).toBe(0);
    expect(dom.stdout).toMatch(/<body data-ready="1">/);
    expect(dom.stdout).toMatch(new RegExp(`<div class="meta" id="shape">${ops.length} steps × 4 pages</div>`));
    const body = dom.stdout.slice(dom.stdout.indexOf('<tbody>'), dom.stdout.indexOf('</tbody>'));
    expect(body.match(/<tr /g)).toHaveLength(ops.length);
    expect(body.match(/<td class="[^"]*\bviolation\b[^"]*" data-pfn="0x40002"/g)?.length).toBeGreaterThanOrEqual(1);
    const png = join(dir, 'timeline.png');
    const shot = headless(['--window-size=1400,700', `--screenshot=${png}`, pathToFileURL(file).href]);
    expect(shot.status, shot.stderr).toBe(0);
    const bytes = readFileSync(png);
    expect(bytes.subarray(1, 4).toString()).toBe('PNG');
    expect([bytes.readUInt32BE(16), bytes.readUInt32BE(20)]).toEqual([1400, 700]);
  });
});
