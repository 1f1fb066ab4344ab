import { describe, expect, it } from 'vitest';
import { apply } from './apply.js';
import { dmaMayAccess, dmaMustReach, hostAccessiblePages, hostCpuAccess, hostCpuMay, hostMayAccess } from './access.js';
import { HOST_ACCESS_ABORT, HOST_ACCESS_EMULATED, HOST_ACCESS_OK, HOST_ACCESS_STALL } from './operations.js';
import type { HostAccessKind } from './operations.js';
import type { ModelState } from './state.js';
import { A, B, fresh, GAP, NOMAP, run } from './test-support.js';

const LIMIT = 2 ** 28;
const KINDS: readonly HostAccessKind[] = ['read', 'write', 'exec'];

/** One page in every state the model can put a page in. */
function zoo(): ModelState {
  return run(fresh(), [
    { kind: 'init_vm', vm: 0, protected: false },
    { kind: 'init_vm', vm: 1, protected: true },
    { kind: 'host_share_hyp', pfn: A }, // host SHARED_OWNED (hyp)
    { kind: 'host_share_ffa', pfn: A + 1, nrPages: 1 }, // host SHARED_OWNED (FF-A)
    { kind: 'host_share_guest', pfn: A + 2, gfn: 0x10, nrPages: 1, vm: 0, prot: 'rw' }, // SHARED_OWNED (guest)
    { kind: 'host_donate_hyp', pfn: A + 3, nrPages: 1 }, // NOPAGE (hyp)
    { kind: 'host_donate_guest', pfn: A + 4, gfn: 0x20, vm: 1 }, // NOPAGE (guest)
    { kind: 'host_donate_guest', pfn: A + 5, gfn: 0x21, vm: 1 },
    { kind: 'guest_share_host', vm: 1, gfn: 0x21 }, // SHARED_BORROWED
    { kind: 'host_donate_hyp_mmio', pfn: GAP }, // hyp-owned MMIO
  ]);
}

describe('host CPU access', () => {
  const s = zoo();
  const outcomes = (pfn: number) => KINDS.map((k) => hostCpuAccess(s, pfn, k));

  it('memory the host owns, shares or borrows: read, write and exec complete (RWX idmap)', () => {
    for (const pfn of [A + 6, A, A + 1, A + 2, A + 5, NOMAP, B]) expect(outcomes(pfn)).toEqual([0, 0, 0]);
  });

  it('memory donated to hyp or a guest: every access gets the injected abort', () => {
    for (const pfn of [A + 3, A + 4]) expect(outcomes(pfn)).toEqual([HOST_ACCESS_ABORT, HOST_ACCESS_ABORT, HOST_ACCESS_ABORT]);
  });

  it('host MMIO: data accesses complete, an instruction fetch stalls (RW-only stage-2, -EEXIST)', () => {
    expect(outcomes(GAP + 1)).toEqual([HOST_ACCESS_OK, HOST_ACCESS_OK, HOST_ACCESS_STALL]);
  });

  it('hyp-owned MMIO: data accesses trap to the emulation, fetches abort', () => {
    expect(outcomes(GAP)).toEqual([HOST_ACCESS_EMULATED, HOST_ACCESS_EMULATED, HOST_ACCESS_ABORT]);
  });

  it('beyond the PA range the host takes an abort', () => {
    expect(outcomes(LIMIT)).toEqual([HOST_ACCESS_ABORT, HOST_ACCESS_ABORT, HOST_ACCESS_ABORT]);
  });

  it('hostCpuMay is exactly "completes"', () => {
    expect([hostCpuMay(s, A, 'exec'), hostCpuMay(s, A + 3, 'read'), hostCpuMay(s, GAP + 1, 'exec'), hostCpuMay(s, GAP, 'write')]).toEqual([
      true,
      false,
      false,
      false,
    ]);
  });

  it('the host_access operation returns the outcome, byte addresses, and never changes state', () => {
    const r1 = apply(s, { kind: 'host_access', addr: (A + 4) * 4096 + 123, access: 'read' });
    const r2 = apply(s, { kind: 'host_access', addr: GAP * 4096 + 8, access: 'write' });
    const r3 = apply(s, { kind: 'host_access', addr: B * 4096, access: 'exec' });
    const r4 = apply(s, { kind: 'host_access', addr: 2 ** 64 - 2 ** 11, access: 'read' });
    expect([r1.ret, r2.ret, r3.ret, r4.ret]).toEqual([HOST_ACCESS_ABORT, HOST_ACCESS_EMULATED, HOST_ACCESS_OK, HOST_ACCESS_ABORT]);
    for (const r of [r1, r2, r3, r4]) expect(r.state).toBe(s);
    expect(() => apply(s, { kind: 'host_access', addr: 0, access: 'fetch' as HostAccessKind })).toThrow(RangeError);
  });
});

describe('DMA through the shadow idmap (§6.2)', () => {
  const s = zoo();

  it('may reach exactly what the host may access, read and write alike', () => {
    const may = (pfn: number) => [dmaMayAccess(s, pfn, 'read'), dmaMayAccess(s, pfn, 'write')];
    for (const pfn of [A, A + 1, A + 2, A + 5, A + 6, NOMAP, B, GAP + 1]) expect(may(pfn)).toEqual([true, true]);
    for (const pfn of [A + 3, A + 4, GAP, LIMIT, -1]) expect(may(pfn)).toEqual([false, false]);
  });

  it('must reach what the host owns, but not pages a guest lends it', () => {
    expect([A, A + 1, A + 2, A + 6, NOMAP, GAP + 1].map((p) => dmaMustReach(s, p))).toEqual([true, true, true, true, true, true]);
    expect([A + 5, A + 3, A + 4, GAP, LIMIT].map((p) => dmaMustReach(s, p))).toEqual([false, false, false, false, false]);
  });

  it('lists the host-accessible pages of a range', () => {
    expect(hostAccessiblePages(s, A, 8)).toEqual([A, A + 1, A + 2, A + 5, A + 6, A + 7]);
    expect(hostAccessiblePages(s, GAP - 1, 3)).toEqual([GAP - 1, GAP + 1]);
    expect(hostAccessiblePages(s, LIMIT - 1, 3)).toEqual([LIMIT - 1]);
    expect(hostMayAccess(s, A + 4)).toBe(false);
  });
});
