/**
 * The known-good sequences of the fail-the-k-th sweep (properties/sweep.ts): hand-written ones
 * that together call every hypercall, laid out on each named machine from its first RAM page,
 * and the regression corpus entries expected to pass (conformance/corpus/passes/, design
 * v6-posted), each on its own machine. The sweep first checks that a sequence passes without
 * faults on the machine; one that does not is reported and skipped, not swept.
 */
import { type Operation } from '../model/index.js';
import { bugTrigger, lifeCycle } from '../properties/known-good.js';
import { type MachineConfig } from '../properties/machine.js';
import { type Step } from '../properties/runner.js';
import { type SweepSequence } from '../properties/sweep.js';
import { listCorpusFiles, loadCorpusFile } from './corpus.js';
import { machineLabel, machineNames, namedMachine } from './machines.js';
import { join } from 'node:path';
import { CORPUS_DIR } from './corpus.js';
import { findDesign } from './designs.js';
import { withDriverOptions } from '../properties/machine.js';

const PAGE = 4096;

/**
 * Guest stage-2 tables: shares at gfns far apart so each needs new tables from the VM pool (its
 * growth from the memcache), an unshare that frees them to the pool's free list, a share that
 * reuses it, and teardown giving everything back.
 */
function guestTables(P: number): Operation[] {
  return [
    { kind: 'init_vm', vm: 0, protected: false },
    { kind: 'host_share_guest', pfn: P + 30, gfn: 1, nrPages: 1, vm: 0, prot: 'rw' },
    { kind: 'host_share_guest', pfn: P + 31, gfn: 0x4_0000, nrPages: 1, vm: 0, prot: 'rw' },
    { kind: 'host_unshare_guest', gfn: 0x4_0000, nrPages: 1, vm: 0 },
    { kind: 'host_share_guest', pfn: P + 32, gfn: 0x8_0000, nrPages: 1, vm: 0, prot: 'r' },
    { kind: 'init_vm', vm: 1, protected: true },
    { kind: 'host_donate_guest', pfn: P + 33, gfn: 2, vm: 1 },
    { kind: 'guest_share_host', vm: 1, gfn: 2 },
    { kind: 'guest_unshare_host', vm: 1, gfn: 2 },
    { kind: 'host_reclaim_page_guest', gfn: 2, vm: 1 },
    { kind: 'teardown_vm', vm: 1 },
    { kind: 'teardown_vm', vm: 0 },
  ];
}

/**
 * Host stage-2 tables: host faults in places that need new tables (the second RAM region, an
 * MMIO gap), then donations that split the blocks those faults mapped, and their return.
 */
function hostFaultTables(P: number, Q: number): Operation[] {
  return [
    { kind: 'host_access', addr: P * PAGE, access: 'read' },
    { kind: 'host_access', addr: Q * PAGE, access: 'write' },
    { kind: 'host_access', addr: 0x900_0000, access: 'read' },
    { kind: 'host_donate_hyp', pfn: P + 40, nrPages: 1 },
    { kind: 'host_donate_hyp', pfn: Q + 1, nrPages: 2 },
    { kind: 'host_share_hyp', pfn: Q + 8 },
    { kind: 'host_access', addr: (Q + 9) * PAGE, access: 'exec' },
    { kind: 'hyp_donate_host', pfn: Q + 1, nrPages: 2 },
    { kind: 'host_unshare_hyp', pfn: Q + 8 },
    { kind: 'hyp_donate_host', pfn: P + 40, nrPages: 1 },
  ];
}

/**
 * The SMMU: DMA from both streams, the host re-attaching a stream (STE rewrite and CFGI_STE,
 * re-shadowed with CMD_SYNCs), a donation under DMA and its return.
 */
function smmuTour(P: number): Step[] {
  return [
    { kind: 'dma', sid: 1, addr: (P + 50) * PAGE, access: 'write' },
    { kind: 'host_attach_identity', smmu: 0, sid: 1 },
    { kind: 'host_donate_hyp', pfn: P + 50, nrPages: 1 },
    { kind: 'dma', sid: 1, addr: (P + 50) * PAGE, access: 'read' },
    { kind: 'smmu_speculative_fill', smmu: 0, sid: 2, addr: (P + 51) * PAGE },
    { kind: 'host_donate_hyp', pfn: P + 51, nrPages: 2 },
    { kind: 'hyp_donate_host', pfn: P + 50, nrPages: 3 },
    { kind: 'dma', sid: 2, addr: (P + 51) * PAGE, access: 'read' },
  ];
}

/** Hand-written sequences for one machine. */
export function handWritten(machineName: string, machine: MachineConfig): SweepSequence[] {
  const P = (machine.memory[0] as { base: number }).base / PAGE;
  const last = machine.memory[machine.memory.length - 1] as { base: number };
  const Q = last.base / PAGE;
  const out: SweepSequence[] = [
    { name: 'life-cycle', machineName, machine, ops: lifeCycle(P) },
    { name: 'bug-trigger', machineName, machine, ops: bugTrigger(P) },
    { name: 'guest-tables', machineName, machine, ops: guestTables(P) },
    { name: 'host-fault-tables', machineName, machine, ops: hostFaultTables(P, Q) },
  ];
  if (machine.smmu !== undefined) out.push({ name: 'smmu-tour', machineName, machine, ops: smmuTour(P) });
  return out;
}

/** The named machine equal to `m` regardless of key order, else "corpus-machine". */
function canonicalLabel(m: MachineConfig): string {
  const label = machineLabel(m);
  if (label !== 'custom') return label;
  const text = canonical(m);
  for (const name of machineNames()) if (canonical(namedMachine(name)) === text) return name;
  return 'corpus-machine';
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.entries(v as Record<string, unknown>)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, x]) => `${k}:${canonical(x)}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/** The corpus entries expected to pass under the posted design, on their own machines. */
export function corpusSequences(): SweepSequence[] {
  const out: SweepSequence[] = [];
  for (const path of listCorpusFiles(join(CORPUS_DIR, 'passes'))) {
    const loaded = loadCorpusFile(path);
    if (!loaded.ok) continue;
    const e = loaded.value;
    if (e.design !== 'v6-posted' || e.bug !== undefined || e.schedule !== undefined || !('passes' in e.expect)) continue;
    const name = path.slice(path.lastIndexOf('/') + 1).replace(/\.json$/, '');
    out.push({ name: `corpus:${name}`, machineName: canonicalLabel(e.config), machine: e.config, ops: e.operations });
  }
  return out;
}

/**
 * Design variants swept on small-smmu besides the posted one, named `small-smmu+DESIGN`: the
 * hardened hook placement (so the life cycle's guest donation is known-good with an SMMU) and
 * the GKI-style block idmap, the one design whose idmap allocates after boot (a block split on
 * unmap): with the page-granular idmap the snapshot allocates every table at boot and io-pgtable
 * never frees one, so the IOMMU pool is not reached by any operation.
 */
export const SWEPT_DESIGNS: readonly string[] = ['v6-hardened', 'block-idmap-with-split'];

/** A machine by sweep name: a named machine, or `NAMED+DESIGN` (the design's knobs laid over it). */
export function sweepMachine(name: string): MachineConfig | undefined {
  const plus = name.indexOf('+');
  if (plus < 0) return namedMachine(name);
  const m = namedMachine(name.slice(0, plus));
  const d = findDesign(name.slice(plus + 1));
  if (m === undefined || d === undefined || m.smmu === undefined) return undefined;
  return withDriverOptions(m, d.data.knobs);
}

export function sweepMachineNames(): string[] {
  return [...machineNames(), ...SWEPT_DESIGNS.map((d) => `small-smmu+${d}`)];
}

/** Every known-good sequence: hand-written on every sweep machine (or those given), then the corpus. */
export function sweepSequences(machines: readonly string[] = sweepMachineNames(), withCorpus = true): SweepSequence[] {
  const out: SweepSequence[] = [];
  for (const name of machines) {
    const m = sweepMachine(name);
    if (m !== undefined) out.push(...handWritten(name, m));
  }
  if (withCorpus) out.push(...corpusSequences());
  return out;
}
