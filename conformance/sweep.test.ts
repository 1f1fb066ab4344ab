/**
 * The fail-the-k-th sweep (issue 16 item 2): a bounded sweep whose counts are pinned (the sweep
 * is deterministic), and proof that it can fail — a test-only bug that leaks a page on -ENOMEM,
 * and one that returns -ENOMEM without rolling back, are both reported as findings.
 */
import { describe, expect, it } from 'vitest';
import { HypervisorPanic } from '../impl/hyp/panic.js';
import { ENOMEM } from '../impl/arch/errno.js';
import { type System } from '../impl/system.js';
import { type FaultPoint } from '../impl/fault-injection.js';
import { type SweepCell, type SweepResult, findings, knownFinding, sweep } from '../properties/sweep.js';
import { sweepSequences } from './sweep-sequences.js';
import { main } from '../cli/sweep.js';

type Row = [machine: string, point: FaultPoint, reached: number, clean: number, absorbed: number, partial: number, panic: number, finding: number];

const row = (c: SweepCell): Row => [c.machine, c.point, c.reached, c.clean, c.absorbed, c.partial, c.panic, c.finding];

function total(r: SweepResult, point: FaultPoint): number {
  return r.cells.filter((c) => c.point === point).reduce((n, c) => n + c.reached, 0);
}

describe('fail-the-k-th sweep', () => {
  // small (no SMMU), small-smmu (the series as posted), and the block idmap (the one design whose
  // idmap allocates after boot), plus the corpus entries that pass: every injection point is reached.
  const result = sweep(sweepSequences(['small', 'small-smmu', 'small-smmu+block-idmap-with-split'], true));

  it('reaches every injection point and pins the counts (machine × point)', () => {
    for (const p of ['hyp_pool', 'memcache', 'vm_pool_topup', 'host_s2_pool', 'iommu_pool', 'cmd_sync'] as const) expect(total(result, p), p).toBeGreaterThan(0);
    const rows = result.cells.filter((c) => c.reached > 0).map(row);
    expect(rows).toEqual([
      ['small', 'hyp_pool', 13, 0, 0, 0, 0, 13],
      ['small', 'memcache', 57, 0, 0, 0, 18, 39],
      ['small', 'vm_pool_topup', 18, 0, 0, 0, 18, 0],
      ['small', 'host_s2_pool', 21, 0, 19, 0, 2, 0],
      ['small-smmu', 'hyp_pool', 3, 0, 0, 0, 0, 3],
      ['small-smmu', 'memcache', 15, 0, 0, 0, 6, 9],
      ['small-smmu', 'vm_pool_topup', 6, 0, 0, 0, 6, 0],
      ['small-smmu', 'host_s2_pool', 5, 0, 0, 1, 4, 0],
      ['small-smmu', 'cmd_sync', 15, 0, 0, 0, 15, 0],
      ['small-smmu+block-idmap-with-split', 'hyp_pool', 5, 0, 0, 0, 0, 5],
      ['small-smmu+block-idmap-with-split', 'memcache', 25, 0, 0, 0, 10, 15],
      ['small-smmu+block-idmap-with-split', 'vm_pool_topup', 10, 0, 0, 0, 10, 0],
      ['small-smmu+block-idmap-with-split', 'host_s2_pool', 6, 0, 0, 1, 5, 0],
      ['small-smmu+block-idmap-with-split', 'iommu_pool', 5, 0, 0, 0, 5, 0],
      ['small-smmu+block-idmap-with-split', 'cmd_sync', 20, 0, 0, 0, 20, 0],
      ['small-smmu-hide-ats', 'host_s2_pool', 1, 0, 0, 0, 1, 0],
      ['small-smmu-hide-ats', 'cmd_sync', 2, 0, 0, 0, 2, 0],
      ['default', 'hyp_pool', 1, 0, 0, 0, 0, 1],
      ['default', 'memcache', 6, 0, 0, 0, 2, 4],
      ['default', 'vm_pool_topup', 2, 0, 0, 0, 2, 0],
      ['default', 'host_s2_pool', 4, 0, 4, 0, 0, 0],
    ]);
  });

  it('every finding is a known one, every panic is at a WARN/BUG site, every CMD_SYNC timeout panics', () => {
    expect(findings(result).filter((f) => knownFinding(f) === undefined)).toEqual([]);
    expect(new Set(findings(result).map((f) => knownFinding(f)))).toEqual(new Set(['init-vm-pgd-alloc-throws', 'init-vm-memcache-pop-unchecked']));
    const sync = result.trials.filter((t) => t.point === 'cmd_sync');
    expect(sync.every((t) => t.outcome === 'panic' && /WARN_ON/.test(t.detail))).toBe(true);
    // -ENOMEM recovery on an SMMU machine: refused (the SMMU frame is hyp-owned MMIO), the host aborts.
    expect(result.trials.some((t) => t.machine === 'small-smmu' && t.point === 'host_s2_pool' && t.outcome === 'partial' && t.op.kind === 'host_access')).toBe(true);
  });

  it('reports a leak: a host stage-2 pool that loses a page on -ENOMEM', () => {
    const leak = (sys: System) => {
      const pool = sys.hostS2Pool;
      const alloc = pool.alloc.bind(pool);
      pool.alloc = (bytes) => {
        const pa = alloc(bytes);
        if (pa === undefined && pool.faults !== null) {
          // The bug: the error path took a page and never gives it back.
          const hook = pool.faults;
          pool.faults = null;
          alloc(bytes);
          pool.faults = hook;
        }
        return pa;
      };
    };
    const r = sweep(sweepSequences(['small'], false).filter((s) => s.name === 'bug-trigger'), { points: ['host_s2_pool'], afterBoot: leak });
    const f = findings(r);
    expect(f.length).toBeGreaterThan(0);
    expect(f[0]?.detail).toMatch(/pool_accounting.*host stage-2 pool has/);
  });

  it('reports an inexact rollback: -ENOMEM returned after the host state was changed', () => {
    // The bug: __pkvm_host_share_guest returning the map's -ENOMEM instead of WARN_ON, without
    // undoing the host state and share count it set before mapping.
    const noRollback = (sys: System) => {
      const hyp = sys.hyp;
      const share = hyp.hostShareGuest.bind(hyp);
      hyp.hostShareGuest = function* (...args: Parameters<typeof share>) {
        try {
          return yield* share(...args);
        } catch (e) {
          if (e instanceof HypervisorPanic && /guest map/.test(e.site)) return -ENOMEM;
          throw e;
        }
      };
    };
    const r = sweep(sweepSequences(['small'], false).filter((s) => s.name === 'guest-tables'), { points: ['vm_pool_topup'], afterBoot: noRollback });
    const f = findings(r);
    expect(f.length).toBeGreaterThan(0);
    expect(f[0]?.detail).toMatch(/^INEXACT ROLLBACK: -ENOMEM but vmemmap/);
    expect(f[0]?.op.kind).toBe('host_share_guest');
  });

  it('cli: usage on misuse (exit 2), a JSON run, and a table run that exits 0 with only known findings', () => {
    const lines: string[] = [];
    const errs: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => errs.push(l) };
    expect(main(['--bogus'], io)).toBe(2);
    expect(main(['--machine', 'nope'], io)).toBe(2);
    expect(main(['--point', 'nope'], io)).toBe(2);
    expect(main(['--max-k', '0'], io)).toBe(2);
    expect(main(['extra'], io)).toBe(2);
    expect(errs.every((e) => e.includes('usage: npm run sweep'))).toBe(true);
    lines.length = 0;
    expect(main(['--machine', 'small', '--point', 'host_s2_pool', '--json'], io)).toBe(0);
    const json = JSON.parse(lines.join('')) as { cells: SweepCell[] };
    expect(json.cells.map(row)).toEqual([['small', 'host_s2_pool', 10, 0, 10, 0, 0, 0]]);
    lines.length = 0;
    expect(main(['--machine', 'small-smmu', '--max-k', '1'], io)).toBe(0);
    expect(lines[0]).toMatch(/^\| machine \| injection point \| reached/);
  });
});
