import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { OWNERSHIP_BUGS } from '../properties/bugs/ownership-bugs.js';
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

  it('prints usage for misuse', () => {
    expect(main([])).toBe(2);
    expect(main(['a.json', '--frobnicate'])).toBe(2);
    expect(err.join('\n')).toMatch(/unknown option --frobnicate/);
    expect(main(['--help'])).toBe(0);
    expect(out.join('\n')).toMatch(/usage: npm run replay/);
  });
});
