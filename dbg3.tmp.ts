import { DMA_BUGS } from './properties/bugs/dma-bugs.js';
import { findDesign } from './conformance/designs.js';
import { namedMachine } from './conformance/machines.js';
import { runOperations, bootPair } from './properties/runner.js';
const bug = DMA_BUGS.find((b) => b.name === 'annotation-erased-by-enomem-recovery')!;
const machine = namedMachine(bug.machine!)!;
const design = findDesign('v6-hardened')!;
const opts = design.runOptions({});
const { system, model } = bootPair({ ...machine, smmu: { ...machine.smmu!, driver: { ...machine.smmu!.driver, ...opts.driver } } } as any);
const pool: any = system.hostS2.pool;
console.log('live after boot', pool.live?.size, [...(pool.live?.keys() ?? [])].map((x: number) => (x/4096).toString(16)));
const host = [...model.host].filter(([, s]) => s === 'OWNED').map(([p]) => p);
// ranges of host-owned pfns
const ranges: [number, number][] = [];
for (const p of host.sort((a, b) => a - b)) { const l = ranges[ranges.length - 1]; if (l && l[1] === p) l[1]++; else ranges.push([p, p + 1]); }
console.log(ranges.map(([a, b]) => `${a.toString(16)}-${b.toString(16)}`).join(' '));
console.log([...model.host].filter(([, s]) => s !== 'OWNED').map(([p, s]) => `${p.toString(16)}:${s}`).slice(0, 40).join(' '));
const all = [...model.host].sort((a, b) => a[0] - b[0]);
const rs: [number, number, string][] = [];
for (const [p, s] of all) { const l = rs[rs.length - 1]; if (l && l[1] === p && l[2] === s) l[1]++; else rs.push([p, p + 1, String(s)]); }
console.log(rs.map(([a, b, s]) => `${a.toString(16)}-${b.toString(16)}:${s}`).join(' '));
