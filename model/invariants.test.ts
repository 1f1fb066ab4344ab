/** The README invariants, over random operation sequences on a tiny machine, and the checker itself. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { apply } from './apply.js';
import { dmaMayAccess, hostCpuMay } from './access.js';
import { E2BIG, EAGAIN, EBUSY, EFAULT, EHWPOISON, EINVAL, ENOENT, ENOMEM, EPERM, ERANGE } from './errno.js';
import { checkContractInvariants, checkInvariants } from './invariants.js';
import type { Operation } from './operations.js';
import type { GuestMapping, ModelState, VmRecord } from './state.js';
import { guestPfn, hostState, hypState, setHost, setHyp, setVm, withLeaf } from './state.js';
import { A, A_END, B, B_END, fresh, GAP, NOMAP, run } from './test-support.js';

const LIMIT = 2 ** 28;
const ERRNOS = new Set([0, -E2BIG, -EAGAIN, -EBUSY, -EFAULT, -EHWPOISON, -EINVAL, -ENOENT, -ENOMEM, -EPERM, -ERANGE]);

// Small, collision-prone argument spaces, with the edges the checks care about mixed in.
const pfnArb = fc.oneof(
  { weight: 12, arbitrary: fc.integer({ min: A, max: A + 5 }) },
  { weight: 3, arbitrary: fc.constantFrom(0x400, A_END - 1, B, B + 1, B_END - 1) },
  { weight: 2, arbitrary: fc.constantFrom(NOMAP, GAP, GAP + 1) },
  { weight: 1, arbitrary: fc.constantFrom(LIMIT - 1, LIMIT, 2 ** 52 - 1, 2 ** 52 + A, 2 ** 63) },
);
const gfnArb = fc.oneof(
  { weight: 10, arbitrary: fc.integer({ min: 0, max: 3 }) },
  { weight: 2, arbitrary: fc.constantFrom(0x200, 0x201, 0x3ff) },
  { weight: 1, arbitrary: fc.constantFrom(LIMIT - 1, LIMIT, 2 ** 52 + 1) },
);
const nrArb = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom(1, 1, 2, 3) },
  { weight: 2, arbitrary: fc.constantFrom(0, 512) },
  { weight: 1, arbitrary: fc.constantFrom(2 ** 52, 2 ** 64 - 2 ** 12) },
);
const vmArb = fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: 2 }) }, { weight: 1, arbitrary: fc.constant(3) });
const protArb = fc.constantFrom('r', 'rw', 'rwx', 'x', '', 'rwd');

const opArb: fc.Arbitrary<Operation> = fc.oneof(
  fc.record({ kind: fc.constant('host_share_hyp' as const), pfn: pfnArb }),
  fc.record({ kind: fc.constant('host_unshare_hyp' as const), pfn: pfnArb }),
  fc.record({ kind: fc.constant('host_donate_hyp' as const), pfn: pfnArb, nrPages: nrArb }),
  fc.record({ kind: fc.constant('hyp_donate_host' as const), pfn: pfnArb, nrPages: nrArb }),
  fc.record({ kind: fc.constant('hyp_pin_shared_mem' as const), pfn: pfnArb, nrPages: nrArb }),
  fc.record({ kind: fc.constant('hyp_unpin_shared_mem' as const), pfn: pfnArb, nrPages: nrArb }),
  fc.record({ kind: fc.constant('host_share_ffa' as const), pfn: pfnArb, nrPages: nrArb }),
  fc.record({ kind: fc.constant('host_unshare_ffa' as const), pfn: pfnArb, nrPages: nrArb }),
  fc.record({ kind: fc.constant('init_vm' as const), vm: vmArb, protected: fc.boolean() }),
  fc.record({ kind: fc.constant('teardown_vm' as const), vm: vmArb }),
  fc.record({ kind: fc.constant('host_share_guest' as const), pfn: pfnArb, gfn: gfnArb, nrPages: nrArb, vm: vmArb, prot: protArb }),
  fc.record({ kind: fc.constant('host_unshare_guest' as const), gfn: gfnArb, nrPages: nrArb, vm: vmArb }),
  fc.record({ kind: fc.constant('host_relax_perms_guest' as const), gfn: gfnArb, vm: vmArb, prot: protArb }),
  fc.record({ kind: fc.constant('host_wrprotect_guest' as const), gfn: gfnArb, nrPages: nrArb, vm: vmArb }),
  fc.record({ kind: fc.constant('host_donate_guest' as const), pfn: pfnArb, gfn: gfnArb, vm: vmArb }),
  fc.record({ kind: fc.constant('host_reclaim_page_guest' as const), gfn: gfnArb, vm: vmArb }),
  fc.record({ kind: fc.constant('host_force_reclaim_page_guest' as const), pfn: pfnArb }),
  fc.record({ kind: fc.constant('guest_share_host' as const), vm: vmArb, gfn: gfnArb }),
  fc.record({ kind: fc.constant('guest_unshare_host' as const), vm: vmArb, gfn: gfnArb }),
  fc.record({ kind: fc.constant('host_donate_hyp_mmio' as const), pfn: pfnArb }),
  fc.record({ kind: fc.constant('hyp_donate_host_mmio' as const), pfn: pfnArb }),
  fc.record({
    kind: fc.constant('host_access' as const),
    addr: pfnArb.map((p) => (p < 2 ** 52 ? p * 4096 + 8 : 0)),
    access: fc.constantFrom('read' as const, 'write' as const, 'exec' as const),
  }),
);

// Start with both kinds of VM, one page shared into each, so that guest operations are not
// mostly -EINVAL / -ENOENT and multi-step transitions (donate, share back, unshare) get reached.
const start = () =>
  run(fresh({ poolPages: 20 }), [
    { kind: 'init_vm', vm: 0, protected: false },
    { kind: 'init_vm', vm: 1, protected: true },
    { kind: 'host_share_guest', pfn: A + 4, gfn: 2, nrPages: 1, vm: 0, prot: 'rw' },
    { kind: 'host_donate_guest', pfn: A + 5, gfn: 1, vm: 1 },
    { kind: 'guest_share_host', vm: 1, gfn: 1 },
    { kind: 'host_donate_guest', pfn: A + 3, gfn: 3, vm: 1 },
    { kind: 'host_donate_hyp_mmio', pfn: GAP },
    { kind: 'host_share_hyp', pfn: A },
  ]);

/** Pages a guest or the hypervisor owns outright: no host CPU or DMA access may reach them. */
function foreignOwned(s: ModelState): number[] {
  const out = [...s.hyp].filter(([, st]) => st === 'OWNED').map(([p]) => p);
  for (const vm of s.vms.values()) {
    for (const [gfn, leaf] of vm.leaves) if (leaf.kind === 'map' && leaf.state === 'OWNED') out.push(guestPfn(vm, gfn) ?? -1);
  }
  return out;
}

describe('invariants over random operation sequences', () => {
  it('hold after every step; failures return the same state; access never reaches a foreign page', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 40 }), (ops) => {
        let s = start();
        for (const op of ops) {
          const r = apply(s, op);
          if (op.kind === 'host_access') {
            expect([0, 1, 2, 3]).toContain(r.ret);
            expect(r.state).toBe(s);
            continue;
          }
          expect(ERRNOS.has(r.ret)).toBe(true);
          if (r.ret !== 0) expect(r.state).toBe(s);
          expect(checkInvariants(r.state)).toEqual([]);
          for (const p of foreignOwned(r.state)) {
            expect(dmaMayAccess(r.state, p, 'write')).toBe(false);
            expect(hostCpuMay(r.state, p, 'read')).toBe(false);
          }
          s = r.state;
        }
      }),
      { numRuns: 250 },
    );
  });

  it('with a trusted FF-A proxy (unshare only what was FF-A shared), borrowers always match', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 40 }), (ops) => {
        let s = start();
        const ffa = new Set<number>();
        for (const op of ops) {
          if (op.kind === 'host_unshare_ffa') {
            const pages = op.nrPages <= 3 ? Array.from({ length: op.nrPages }, (_, i) => op.pfn + i) : [];
            if (pages.length === 0 || !pages.every((p) => ffa.has(p))) continue;
          }
          const r = apply(s, op);
          if (r.ret === 0 && (op.kind === 'host_share_ffa' || op.kind === 'host_unshare_ffa')) {
            for (let i = 0; i < op.nrPages; i++) (op.kind === 'host_share_ffa' ? ffa.add(op.pfn + i) : ffa.delete(op.pfn + i));
          }
          s = r.state;
          expect(checkContractInvariants(s)).toEqual([]);
          // A host SHARED_OWNED page nobody in the model borrows is one the secure world has.
          for (const [p, st] of s.host) {
            if (st === 'SHARED_OWNED' && hypState(s, p) === 'NOPAGE' && !s.shareCount.has(p)) expect(ffa.has(p)).toBe(true);
          }
        }
      }),
      { numRuns: 200 },
    );
  });

  it('the generated sequences reach success and failure of every operation (no dead kinds)', () => {
    const seen = new Map<string, Set<string>>();
    for (const ops of fc.sample(fc.array(opArb, { maxLength: 40 }), { numRuns: 250, seed: 42 })) {
      let s = start();
      for (const op of ops) {
        const r = apply(s, op);
        const outcomes = seen.get(op.kind) ?? new Set<string>();
        outcomes.add(op.kind === 'host_access' ? `access ${r.ret}` : r.ret === 0 ? 'ok' : 'error');
        seen.set(op.kind, outcomes);
        s = r.state;
      }
    }
    for (const kind of seen.keys()) {
      if (kind !== 'host_access') expect([kind, [...(seen.get(kind) ?? [])].sort()]).toEqual([kind, ['error', 'ok']]);
    }
    expect(seen.size).toBe(22);
    expect([...(seen.get('host_access') ?? [])].sort()).toEqual(['access 0', 'access 1', 'access 2', 'access 3']);
  });

  it('operations are plain JSON: a round trip gives the same result', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 15 }), (ops) => {
        let a = start();
        let b = start();
        for (const op of ops) {
          const ra = apply(a, op);
          const rb = apply(b, JSON.parse(JSON.stringify(op)) as Operation);
          expect(rb.ret).toBe(ra.ret);
          expect(rb.state).toEqual(ra.state);
          a = ra.state;
          b = rb.state;
        }
      }),
      { numRuns: 100 },
    );
  });
});

describe('the invariant checker catches broken states', () => {
  const s = run(start(), [
    { kind: 'host_share_guest', pfn: A + 1, gfn: 0, nrPages: 1, vm: 0, prot: 'rw' },
    { kind: 'host_donate_guest', pfn: A + 2, gfn: 0, vm: 1 },
  ]);
  const vm = (h: number) => s.vms.get(h) as VmRecord;

  it('a consistent state passes', () => {
    expect(checkInvariants(s)).toEqual([]);
    expect(checkContractInvariants(s)).toEqual([]);
  });

  it.each<[string, () => ModelState]>([
    ['two owners', () => setHyp(s, [A + 6], 'OWNED')],
    ['no owner', () => setHost(s, [A + 6], 'SHARED_BORROWED')],
    ['host NOPAGE with no owner elsewhere', () => setHost(s, [A + 7], 'NOPAGE')],
    ['host SHARED_BORROWED while owning elsewhere', () => setHost(s, [A + 2], 'SHARED_BORROWED')],
    ['pin on a page hyp does not borrow', () => ({ ...s, pins: new Map([[A + 1, 1]]) })],
    ['count below the borrowers', () => ({ ...s, shareCount: new Map() })],
    ['default value stored', () => ({ ...s, hyp: new Map([...s.hyp, [A + 7, 'NOPAGE' as never]]) })],
    ['pool not conserved', () => ({ ...s, pool: s.pool + 1 })],
    ['guest maps MMIO', () => setVm(s, withLeaf(vm(0), 7, { kind: 'map', pfn: GAP, nrPages: 1, state: 'SHARED_BORROWED', prot: 'r' }))],
    ['protected VM borrowing', () => setVm(s, withLeaf(vm(1), 0, { ...(vm(1).leaves.get(0) as GuestMapping), state: 'SHARED_BORROWED' }))],
    ['MMIO shared', () => setHost(setHyp(s, [GAP], 'SHARED_BORROWED'), [GAP], 'SHARED_OWNED')],
    ['tables below the need', () => setVm({ ...s, pool: s.pool + 1 }, { ...vm(0), tablePages: vm(0).tablePages - 1 })],
  ])('%s', (_name, broken) => {
    expect(checkInvariants(broken())).not.toEqual([]);
  });

  it('contract: an extra count, or a hyp borrower without a host share', () => {
    expect(checkContractInvariants({ ...s, shareCount: new Map([[A + 1, 2]]) })).not.toEqual([]);
    expect(checkContractInvariants(setHost(s, [A], 'OWNED'))).not.toEqual([]);
    expect(hostState(s, A)).toBe('SHARED_OWNED');
  });
});
