import { DMA_BUGS } from './properties/bugs/dma-bugs.js';
import { findDesign } from './conformance/designs.js';
import { namedMachine } from './conformance/machines.js';
import { runOperations } from './properties/runner.js';
const only = process.argv[2];
for (const bug of DMA_BUGS) {
  if (only && bug.name !== only) continue;
  const machine = namedMachine(bug.machine ?? 'small')!;
  const design = findDesign(bug.design ?? 'v6-hardened')!;
  const checks = new Set([bug.caughtBy]) as any;
  const base = design.runOptions({ checks, ...(bug.triggerSchedule ? { schedule: bug.triggerSchedule } : {}) });
  const b = runOperations(machine, bug.trigger, { ...base, inject: bug.inject, ...(bug.afterBoot ? { afterBoot: bug.afterBoot } : {}) });
  const c = runOperations(machine, bug.trigger, base);
  console.log(bug.name, 'buggy:', JSON.stringify(b.failure?.violations?.slice(0,2) ?? null), 'idx', b.failure?.index, '| clean:', JSON.stringify(c.failure?.violations?.slice(0,2) ?? null), 'idx', c.failure?.index);
}
