import { benchCheckedOps, NO_CHECKS } from './ownership.js';
import { smallMachine, smallMachineWithSmmu } from '../properties/machine.js';
const which = process.argv[2] ?? 'checked';
const m = process.argv[3] === 'smmu' ? smallMachineWithSmmu({ ats: false }) : smallMachine();
const inter = process.argv[3] === 'smmu';
for (let i = 0; i < (inter ? 8 : 20); i++) console.log(benchCheckedOps(m, 300, inter, which === 'bare' ? NO_CHECKS : undefined).toFixed(0));
