/**
 * fast-check arbitraries for ownership operations, biased toward what finds bugs (ARCHITECTURE
 * §3): a few hot pages reused across operations, region and block boundaries, ranges straddling
 * a region edge, NOMAP and MMIO pages, page counts that overflow, unknown VMs, guest frames
 * already in use, and invalid permission letters.
 */
import fc from 'fast-check';
import { type Operation, reachableByUntrusted } from '../model/index.js';
import { registerAt } from '../impl/arch/smmu/registers.js';
import { type HardwareOperation, type ScheduledHardware, isHardwareOperation } from './dma.js';
import { type Step } from './runner.js';
import { type MachineConfig } from './machine.js';
import { hostAttackArbitrary } from './host-attacks.js';
import { hostDomainArbitrary } from './host-domains.js';

const PAGE = 4096;

/** Page frame numbers worth trying on this machine, most of them few and reused. */
export function interestingPfns(machine: MachineConfig): { hot: number[]; edges: number[]; wild: number[] } {
  const hot: number[] = [];
  const edges: number[] = [];
  const first = machine.memory[0];
  if (first !== undefined) {
    const base = first.base / PAGE;
    for (let i = 0; i < 6; i++) hot.push(base + i);
    // A 2 MiB-aligned block inside the first region, for block shares.
    const block = Math.ceil((base + 1) / 512) * 512;
    if ((block + 512) * PAGE <= first.base + first.size) hot.push(block, block + 1, block + 511);
  }
  for (const r of machine.memory) {
    const base = r.base / PAGE;
    const end = (r.base + r.size) / PAGE;
    edges.push(base, base + 1, end - 1, end, base - 1);
  }
  const limit = 2 ** (machine.physShift - 12);
  const wild = [0, 0x9000, 0x9001, limit - 1, limit, 2 ** 52 - 1, 2 ** 52, 2 ** 64 - 2 ** 12];
  return { hot, edges: edges.filter((p) => p >= 0), wild };
}

export function operationArbitrary(machine: MachineConfig): fc.Arbitrary<Operation> {
  const { hot, edges, wild } = interestingPfns(machine);
  const pfn = fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...hot) }, { weight: 2, arbitrary: fc.constantFrom(...edges) }, { weight: 1, arbitrary: fc.constantFrom(...wild) });
  const limit = 2 ** (machine.physShift - 12);
  const nrPages = fc.oneof(
    { weight: 8, arbitrary: fc.integer({ min: 1, max: 4 }) },
    { weight: 2, arbitrary: fc.constant(512) },
    { weight: 1, arbitrary: fc.constantFrom(0, limit, 2 ** 52, 2 ** 64 - 2 ** 12) },
  );
  const gfn = fc.oneof({ weight: 6, arbitrary: fc.constantFrom(0, 1, 2, 3) }, { weight: 2, arbitrary: fc.constantFrom(512, 1024) }, { weight: 1, arbitrary: fc.constantFrom(limit - 1, limit, 2 ** 52 + 1) });
  const vm = fc.oneof({ weight: 6, arbitrary: fc.constantFrom(0, 1) }, { weight: 1, arbitrary: fc.integer({ min: 2, max: machine.maxVms + 1 }) });
  const prot = fc.constantFrom('r', 'rw', 'rwx', 'x', 'w', '', 'rq');
  const addr = fc.tuple(fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...hot) }, { weight: 2, arbitrary: fc.constantFrom(...edges) }, { weight: 1, arbitrary: fc.constantFrom(...wild.filter((w) => w < 2 ** 40)) }), fc.constantFrom(0, 8, 4092)).map(([p, o]) => p * PAGE + o);
  const access = fc.constantFrom('read' as const, 'write' as const, 'exec' as const);
  return fc.oneof(
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('host_share_hyp' as const), pfn }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('host_unshare_hyp' as const), pfn }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('host_donate_hyp' as const), pfn, nrPages }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('hyp_donate_host' as const), pfn, nrPages }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('hyp_pin_shared_mem' as const), pfn, nrPages }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('hyp_unpin_shared_mem' as const), pfn, nrPages }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('host_share_ffa' as const), pfn, nrPages }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('host_unshare_ffa' as const), pfn, nrPages }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('init_vm' as const), vm, protected: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('teardown_vm' as const), vm }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('host_share_guest' as const), pfn, gfn, nrPages: fc.oneof(fc.constant(1), nrPages), vm, prot }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('host_unshare_guest' as const), gfn, nrPages: fc.oneof(fc.constant(1), nrPages), vm }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('host_relax_perms_guest' as const), gfn, vm, prot }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('host_wrprotect_guest' as const), gfn, nrPages: fc.oneof(fc.constant(1), nrPages), vm }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('host_donate_guest' as const), pfn, gfn, vm }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('host_reclaim_page_guest' as const), gfn, vm }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('host_force_reclaim_page_guest' as const), pfn }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('guest_share_host' as const), vm, gfn }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('guest_unshare_host' as const), vm, gfn }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('host_donate_hyp_mmio' as const), pfn: fc.oneof(fc.constantFrom(0x9000, 0x9001), pfn) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('hyp_donate_host_mmio' as const), pfn: fc.oneof(fc.constantFrom(0x9000, 0x9001), pfn) }) },
    { weight: 5, arbitrary: fc.record({ kind: fc.constant('host_access' as const), addr, access }) },
  );
}

/**
 * Short chains that walk one page through a life cycle (share → pin → unpin → unshare, donate to
 * a guest → share back → unshare → force reclaim → reclaim, …): random single operations rarely
 * line up like this, and the interesting states sit at the end of such chains. Any step of a
 * chain may fail (another operation got there first), which is fine.
 */
export function chainArbitrary(machine: MachineConfig): fc.Arbitrary<Operation[]> {
  const { hot } = interestingPfns(machine);
  const pfn = fc.constantFrom(...hot);
  const gfn = fc.constantFrom(0, 1, 2);
  const addrOf = (p: number) => p * PAGE;
  const access = fc.constantFrom('read' as const, 'write' as const);
  return fc.oneof(
    fc.tuple(pfn, access).map(([p, a]): Operation[] => [
      { kind: 'host_share_hyp', pfn: p },
      { kind: 'hyp_pin_shared_mem', pfn: p, nrPages: 1 },
      { kind: 'host_unshare_hyp', pfn: p },
      { kind: 'hyp_unpin_shared_mem', pfn: p, nrPages: 1 },
      { kind: 'host_access', addr: addrOf(p), access: a },
      { kind: 'host_unshare_hyp', pfn: p },
    ]),
    fc.tuple(pfn, fc.integer({ min: 1, max: 3 }), access).map(([p, n, a]): Operation[] => [
      { kind: 'host_access', addr: addrOf(p), access: a },
      { kind: 'host_donate_hyp', pfn: p, nrPages: n },
      { kind: 'host_access', addr: addrOf(p), access: a },
      { kind: 'hyp_donate_host', pfn: p, nrPages: n },
      { kind: 'host_access', addr: addrOf(p), access: a },
    ]),
    fc.tuple(pfn, fc.integer({ min: 1, max: 2 })).map(([p, n]): Operation[] => [
      { kind: 'host_share_ffa', pfn: p, nrPages: n },
      { kind: 'host_unshare_ffa', pfn: p, nrPages: n },
    ]),
    fc.tuple(pfn, gfn, fc.constantFrom('r', 'rw', 'rwx', 'x')).map(([p, g, prot]): Operation[] => [
      { kind: 'host_share_guest', pfn: p, gfn: g, nrPages: 1, vm: 0, prot },
      { kind: 'host_relax_perms_guest', gfn: g, vm: 0, prot: 'rw' },
      { kind: 'host_wrprotect_guest', gfn: g, nrPages: 1, vm: 0 },
      { kind: 'host_unshare_guest', gfn: g, nrPages: 1, vm: 0 },
    ]),
    fc.constantFrom(...hot.filter((p) => p % 512 === 0)).map((p): Operation[] => [
      { kind: 'host_share_guest', pfn: p, gfn: 512, nrPages: 512, vm: 0, prot: 'rw' },
      { kind: 'host_unshare_guest', gfn: 512, nrPages: 1, vm: 0 },
      { kind: 'host_wrprotect_guest', gfn: 512, nrPages: 512, vm: 0 },
      { kind: 'host_reclaim_page_guest', gfn: 513, vm: 0 },
      { kind: 'host_unshare_guest', gfn: 512, nrPages: 512, vm: 0 },
    ]),
    fc.tuple(pfn, gfn, access).map(([p, g, a]): Operation[] => [
      { kind: 'host_donate_guest', pfn: p, gfn: g, vm: 1 },
      { kind: 'host_access', addr: addrOf(p), access: a },
      { kind: 'guest_share_host', vm: 1, gfn: g },
      { kind: 'host_access', addr: addrOf(p), access: a },
      { kind: 'guest_unshare_host', vm: 1, gfn: g },
      { kind: 'host_force_reclaim_page_guest', pfn: p },
      { kind: 'host_reclaim_page_guest', gfn: g, vm: 1 },
      { kind: 'host_access', addr: addrOf(p), access: a },
    ]),
    fc.constantFrom(0x9000, 0x9001).map((p): Operation[] => [
      { kind: 'host_access', addr: addrOf(p), access: 'read' },
      { kind: 'host_donate_hyp_mmio', pfn: p },
      { kind: 'host_access', addr: addrOf(p), access: 'write' },
      { kind: 'hyp_donate_host_mmio', pfn: p },
      { kind: 'host_access', addr: addrOf(p), access: 'read' },
    ]),
  );
}

/**
 * Hardware and host-SMMU steps for machines with an SMMU: device DMA (plain and ATS), SMMU fills,
 * evictions and command consumption, re-attachment, and a host that writes arbitrary registers,
 * STE words and command words.
 */
export function hardwareArbitrary(machine: MachineConfig): fc.Arbitrary<HardwareOperation> {
  const { hot, edges } = interestingPfns(machine);
  const sids = machine.smmu?.devices.map((d) => d.sid) ?? [0];
  const sid = fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...sids) }, { weight: 1, arbitrary: fc.constantFrom(0, 63, 64) });
  const addr = fc.tuple(fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...hot) }, { weight: 1, arbitrary: fc.constantFrom(...edges, 0x9000, 0x9001) }), fc.constantFrom(0, 64)).map(([p, o]) => p * PAGE + o);
  const access = fc.constantFrom('read' as const, 'write' as const);
  const u32 = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff_ffff }));
  const words = fc.tuple(u32, u32, u32, u32);
  const offsets = fc.constantFrom(0x00, 0x20, 0x28, 0x44, 0x80, 0x88, 0x90, 0x98, 0x9c, 0x60, 0x64, 0x68, 0xa0, 0xb0, 0x1_00a8);
  // Mostly the register's own width (64-bit registers with 64-bit accesses), sometimes another.
  const sized = fc.tuple(offsets, fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const) })).map(([offset, size]) => ({ offset, size: size ?? (registerAt(offset)?.width === 64 ? (8 as const) : (4 as const)) }));
  return fc.oneof(
    { weight: 6, arbitrary: fc.record({ kind: fc.constant('dma' as const), sid, addr, access }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('ats_translate' as const), sid, addr }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('dma_translated' as const), sid, addr, access }) },
    // A malicious endpoint: Translated transactions to any physical address (the SMMU frame and the
    // region edges included), from every stream (only ATS-capable devices emit them).
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('dma_forged_translated' as const), sid, pa: addr, access }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('smmu_speculative_fill' as const), smmu: fc.constant(0), sid, addr }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('smmu_evict' as const), smmu: fc.constant(0), cache: fc.constantFrom('tlb' as const, 'walk' as const, 'config' as const, 'all' as const), index: fc.nat(3) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('smmu_consume' as const), smmu: fc.constant(0) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('host_attach_identity' as const), smmu: fc.constant(0), sid }) },
    { weight: 1, arbitrary: sized.map(({ offset, size }) => ({ kind: 'host_mmio_read' as const, smmu: 0, offset, ...(size === 4 ? {} : { size }) })) },
    {
      weight: 1,
      arbitrary: fc.tuple(sized, u32, u32).map(([{ offset, size }, value, valueHi]) => ({ kind: 'host_mmio_write' as const, smmu: 0, offset, value, ...(size === 4 ? {} : { size }), ...(size === 8 ? { valueHi } : {}) })),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('host_write_ste' as const), smmu: fc.constant(0), sid, words }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('host_write_cmd' as const), smmu: fc.constant(0), words }) },
  );
}

/**
 * DMA life-cycle chains: a device (plain or through its ATC) touches a page, the SMMU caches it,
 * the host gives the page away, the device tries again, the page comes back.
 */
export function dmaChainArbitrary(machine: MachineConfig, options: GenerationOptions = {}): fc.Arbitrary<Step[]> {
  const { hot } = interestingPfns(machine);
  const sids = machine.smmu?.devices.map((d) => d.sid) ?? [0];
  // The page goes to the hypervisor (a memcache top-up; the give-back is EL2-internal, so only
  // self-test runs keep it), or to a protected guest and back through the host's reclaim.
  void options;
  const away = fc.constantFrom('hyp' as const, 'guest' as const);
  return fc.tuple(fc.constantFrom(...hot), fc.constantFrom(...sids), fc.constantFrom('read' as const, 'write' as const), away).map(([p, sid, a, to]): Step[] => [
    { kind: 'dma', sid, addr: p * PAGE, access: a },
    { kind: 'ats_translate', sid, addr: p * PAGE },
    { kind: 'smmu_speculative_fill', smmu: 0, sid, addr: p * PAGE },
    to === 'hyp' ? { kind: 'host_donate_hyp', pfn: p, nrPages: 1 } : { kind: 'host_donate_guest', pfn: p, gfn: 3, vm: 1 },
    { kind: 'dma', sid, addr: p * PAGE, access: a },
    { kind: 'dma_translated', sid, addr: p * PAGE, access: a },
    to === 'hyp' ? { kind: 'hyp_donate_host', pfn: p, nrPages: 1 } : { kind: 'host_reclaim_page_guest', gfn: 3, vm: 1 },
    { kind: 'dma', sid, addr: p * PAGE, access: a },
  ]);
}

/**
 * Operation sequences. Most start by creating one non-protected (vm 0) and one protected (vm 1)
 * VM, so guest operations get past the VM lookup; some do not, to keep the "no such VM" paths
 * busy. The body mixes single operations with life-cycle chains.
 */
export function operationsArbitrary(machine: MachineConfig, maxLength = 40, options: GenerationOptions = {}): fc.Arbitrary<Step[]> {
  const prefix: Operation[] = [
    { kind: 'init_vm', vm: 0, protected: false },
    { kind: 'init_vm', vm: 1, protected: true },
  ];
  const pieces: fc.WeightedArbitrary<Step[]>[] = [
    { weight: 3, arbitrary: operationArbitrary(machine).map((op): Step[] => [op]) },
    { weight: 1, arbitrary: chainArbitrary(machine) },
  ];
  if (machine.smmu !== undefined) {
    pieces.push({ weight: 3, arbitrary: hardwareArbitrary(machine).map((op): Step[] => [op]) });
    pieces.push({ weight: 1, arbitrary: dmaChainArbitrary(machine, options) });
    pieces.push({ weight: 1, arbitrary: hostAttackArbitrary(machine) });
    if (options.hostDomains === true) pieces.push({ weight: 2, arbitrary: hostDomainArbitrary(machine) });
  }
  const piece = fc.oneof(...pieces);
  const selftest = options.selftest ?? machine.smmu === undefined;
  return fc
    .tuple(fc.nat(9), fc.array(piece, { minLength: 1, maxLength: Math.max(1, Math.floor(maxLength / 3)) }))
    .map(([vmChoice, pieces]) => {
      // Filtering inside map keeps fast-check's shrinking (it shrinks the source).
      const ops = pieces
        .flat()
        .filter((o) => selftest || isHardwareOperation(o) || reachableByUntrusted(o.kind))
        .slice(0, maxLength);
      return vmChoice < 8 ? [...prefix, ...ops] : ops;
    });
}

/**
 * What generated runs may do. On a machine with an SMMU (the adversarial DMA runs), only what the
 * untrusted host, a guest or a device can do on the real system (model/operations.ts
 * OPERATION_INTERFACE). On a machine without one (the ownership layer alone), the EL2-internal
 * calls too, made directly as `pkvm_ownership_selftest` makes them: refinement tests of
 * mem_protect.c, never a host finding. `selftest` overrides the default.
 */
export interface GenerationOptions {
  readonly selftest?: boolean;
  /**
   * Host DMA-domain steps (properties/host-domains.ts, issue 13): nested streams. Off by default
   * so the figures of every seed stay those of the identity-only workload; `verify
   * --host-domains`, the nested tests and the zoo's nested bugs turn it on.
   */
  readonly hostDomains?: boolean;
}

/**
 * A schedule (RunOptions.schedule): up to 12 hardware actions run at the yield points of the
 * steps — identity DMAs from every device and SMMU speculative fills to the first pages of every
 * RAM region (where the operations act), and for ATS-capable devices translation requests and
 * translated DMAs; empty without an SMMU.
 */
export function scheduleArbitrary(machine: MachineConfig): fc.Arbitrary<ScheduledHardware[]> {
  const devices = machine.smmu?.devices ?? [];
  if (devices.length === 0) return fc.constant([]);
  const sids = devices.map((d) => d.sid);
  const atsSids = machine.smmu?.features?.ats === false ? [] : devices.filter((d) => d.ats).map((d) => d.sid);
  const addr = fc.constantFrom(...machine.memory.filter((r) => r.nomap !== true).flatMap((r) => [0, 1, 2, 3].map((i) => r.base + i * 4096)));
  const access = fc.constantFrom('read' as const, 'write' as const);
  const actions: fc.WeightedArbitrary<ScheduledHardware>[] = [
    { weight: 6, arbitrary: fc.record({ kind: fc.constant('dma' as const), sid: fc.constantFrom(...sids), addr, access }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('smmu_speculative_fill' as const), smmu: fc.constant(0), sid: fc.constantFrom(...sids), addr }) },
  ];
  if (atsSids.length > 0) {
    actions.push({ weight: 2, arbitrary: fc.record({ kind: fc.constant('ats_translate' as const), sid: fc.constantFrom(...atsSids), addr }) });
    actions.push({ weight: 2, arbitrary: fc.record({ kind: fc.constant('dma_translated' as const), sid: fc.constantFrom(...atsSids), addr, access }) });
  }
  return fc.array(fc.oneof(...actions), { maxLength: 12 });
}
