import { DMA_BUGS } from './properties/bugs/dma-bugs.js';
import { findDesign } from './conformance/designs.js';
import { namedMachine } from './conformance/machines.js';
import { runOperations } from './properties/runner.js';
const bug = DMA_BUGS.find((b) => b.name === 'annotation-erased-by-enomem-recovery')!;
const machine = namedMachine(bug.machine!)!;
const design = findDesign('v6-hardened')!;
const ops = JSON.parse(process.argv[2]);
for (const withBug of [false, true]) {
  const checks = new Set(['host_cpu_isolation', 'no_host_triggered_panic', 'refinement_ret']) as any;
  for (let n = 1; n <= ops.length; n++) {
    const o = design.runOptions({ checks, ...(withBug ? { inject: bug.inject } : {}) });
    const r = runOperations(machine, ops.slice(0, n), o);
    const pool: any = r.system.hostS2.pool;
    console.log(withBug ? 'BUG ' : 'FIX ', n, JSON.stringify(ops[n - 1]), 'ret', (r.steps[n - 1] as any)?.systemRet, 'live', pool.live.size, r.failure ? JSON.stringify(r.failure.violations.slice(0, 2)) : '');
  }
}
