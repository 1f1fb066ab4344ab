import { benchCheckedOps, NO_CHECKS } from './ownership.js';
import { smallMachine } from '../properties/machine.js';
import { TIMES } from '../properties/runner.js';
for (const w of ['checked', 'bare']) {
  for (let i = 0; i < 3; i++) benchCheckedOps(smallMachine(), 300, false, w === 'bare' ? NO_CHECKS : undefined);
  for (const k of Object.keys(TIMES)) delete TIMES[k];
  const t = performance.now();
  const r = benchCheckedOps(smallMachine(), 300, false, w === 'bare' ? NO_CHECKS : undefined);
  const total = performance.now() - t;
  const steps = r * total / 1000;
  console.log(w, r.toFixed(0), 'steps', steps.toFixed(0), 'total us/step', (total*1000/steps).toFixed(2), Object.entries(TIMES).map(([k, v]) => `${k} ${(v * 1000 / steps).toFixed(2)}`).join(' '));
}
