/** VM lifecycle and host <-> guest operations: success and every error path, in the kernel's order. */
import { describe, expect, it } from 'vitest';
import { E2BIG, EAGAIN, EBUSY, EFAULT, EHWPOISON, EINVAL, ENOENT, ENOMEM, EPERM, ERANGE } from './errno.js';
import { apply } from './apply.js';
import type { Operation } from './operations.js';
import type { GuestMapping, ModelState, VmRecord } from './state.js';
import { guestState, hostState, setHost, setVm, shareCountOf, withLeaf } from './state.js';
import { A, B, B_END, fails, fresh, GAP, NOMAP, ok, run } from './test-support.js';

const LIMIT = 2 ** 28;
const NP = 0;
const PV = 1;
// smallConfig: 16 pool pages; a VM takes 2 struct pages + 2 PGD pages; a leaf needs <= 2 tables.

const vms = (s: ModelState = fresh()) =>
  run(s, [
    { kind: 'init_vm', vm: NP, protected: false },
    { kind: 'init_vm', vm: PV, protected: true },
  ]);
const vmOf = (s: ModelState, vm: number): VmRecord => {
  const r = s.vms.get(vm);
  if (r === undefined) throw new Error(`no VM ${vm}`);
  return r;
};
const share = (pfn: number, gfn: number, nrPages = 1, vm = NP, prot = 'rw'): Operation => ({
  kind: 'host_share_guest',
  pfn,
  gfn,
  nrPages,
  vm,
  prot,
});
const donate = (pfn: number, gfn: number, vm = PV): Operation => ({ kind: 'host_donate_guest', pfn, gfn, vm });
const leaf = (s: ModelState, vm: number, gfn: number) => vmOf(s, vm).leaves.get(gfn) as GuestMapping | undefined;

describe('init_vm / teardown_vm', () => {
  it('init takes the VM structures and PGD from the pool; teardown gives everything back', () => {
    let s = vms();
    expect(s.pool).toBe(16 - 8);
    expect(vmOf(s, PV).protected).toBe(true);
    s = run(s, [share(A, 0x10), donate(A + 1, 0x10)]);
    expect(s.pool).toBe(8 - 4);
    s = ok(s, { kind: 'teardown_vm', vm: NP });
    s = ok(s, { kind: 'teardown_vm', vm: PV });
    expect(s.pool).toBe(16);
    expect([s.vms.size, s.host.size, s.shareCount.size]).toEqual([0, 0, 0]);
    ok(s, { kind: 'init_vm', vm: NP, protected: true });
  });

  it('init: -EINVAL outside the VM table, -ENOMEM before -EINVAL for a handle in use', () => {
    fails(fresh(), { kind: 'init_vm', vm: 3, protected: false }, EINVAL);
    fails(fresh(), { kind: 'init_vm', vm: 2 ** 40, protected: false }, EINVAL);
    const s = vms();
    fails(s, { kind: 'init_vm', vm: NP, protected: false }, EINVAL);
    const tight = ok(fresh({ poolPages: 7 }), { kind: 'init_vm', vm: NP, protected: false });
    fails(tight, { kind: 'init_vm', vm: PV, protected: false }, ENOMEM);
    fails(tight, { kind: 'init_vm', vm: NP, protected: false }, ENOMEM);
  });

  it('teardown: -EINVAL for an unknown VM', () => {
    fails(fresh(), { kind: 'teardown_vm', vm: NP }, EINVAL);
    fails(vms(), { kind: 'teardown_vm', vm: 2 }, EINVAL);
    fails(vms(), { kind: 'teardown_vm', vm: 99 }, EINVAL);
  });

  it('teardown returns every guest page: donated, shared back, host-shared (with counts), poisoned', () => {
    let s = run(vms(fresh({ poolPages: 32 })), [
      { kind: 'init_vm', vm: 2, protected: false },
      share(A, 0x10),
      share(A, 0x11),
      share(A, 0x10, 1, 2),
      donate(B, 0x20),
      donate(B + 1, 0x21),
      donate(B + 2, 0x22),
      { kind: 'guest_share_host', vm: PV, gfn: 0x21 },
      { kind: 'host_force_reclaim_page_guest', pfn: B + 2 },
    ]);
    expect(shareCountOf(s, A)).toBe(3);
    s = ok(s, { kind: 'teardown_vm', vm: NP });
    expect([hostState(s, A), shareCountOf(s, A)]).toEqual(['SHARED_OWNED', 1]);
    s = ok(s, { kind: 'teardown_vm', vm: PV });
    expect([B, B + 1, B + 2].map((p) => hostState(s, p))).toEqual(['OWNED', 'OWNED', 'OWNED']);
    s = ok(s, { kind: 'teardown_vm', vm: 2 });
    expect([s.host.size, s.shareCount.size, s.pool]).toEqual([0, 0, 32]);
  });
});

describe('host_share_guest (§3.7)', () => {
  it('shares a page: host SHARED_OWNED with a count, guest SHARED_BORROWED with the prot', () => {
    const s = ok(vms(), share(A + 3, 0x10, 1, NP, 'xr'));
    expect([hostState(s, A + 3), shareCountOf(s, A + 3)]).toEqual(['SHARED_OWNED', 1]);
    expect(leaf(s, NP, 0x10)).toEqual({ kind: 'map', pfn: A + 3, nrPages: 1, state: 'SHARED_BORROWED', prot: 'rx' });
  });

  it('tolerates sharing one page into several gfns and VMs (count per mapping)', () => {
    const s = run(vms(), [
      { kind: 'init_vm', vm: 2, protected: false },
      share(A, 0x10),
      share(A, 0x11),
      share(A, 0x10, 1, 2),
    ]);
    expect(shareCountOf(s, A)).toBe(3);
  });

  it('shares a 2 MiB block when pfn and gfn are block aligned', () => {
    const s = ok(vms(), share(0x400, 0x200, 512));
    expect(leaf(s, NP, 0x200)?.nrPages).toBe(512);
    expect(guestState(vmOf(s, NP), 0x3ff)).toBe('SHARED_BORROWED');
    expect(shareCountOf(s, 0x5ff)).toBe(1);
  });

  it('charges the pool for new stage-2 tables only, up to the high-water mark', () => {
    let s = vms();
    const pool0 = s.pool;
    s = ok(s, share(A, 0x10)); // level-2 and level-3 tables
    expect(s.pool).toBe(pool0 - 2);
    s = ok(s, share(A + 1, 0x11)); // same 2 MiB span
    expect(s.pool).toBe(pool0 - 2);
    s = ok(s, share(A + 2, 0x210)); // new level-3 table in the same 1 GiB
    expect(s.pool).toBe(pool0 - 3);
    s = run(s, [
      { kind: 'host_unshare_guest', gfn: 0x210, nrPages: 1, vm: NP },
      share(A + 2, 0x410),
    ]);
    expect(s.pool).toBe(pool0 - 3); // the freed table is reused from the VM's own pool
  });

  it('handler and argument errors, in order: VM, prot, range, size, alignment', () => {
    const s = vms();
    fails(s, share(A, 0x10, 1, 2), EINVAL); // no such VM
    fails(s, share(A, 0x10, 1, PV), EINVAL); // protected VM
    fails(s, share(A, 0x10, 1, NP, 'rwd'), EINVAL);
    fails(s, share(LIMIT, 0x10, 1, NP, 'rwd'), EINVAL);
    fails(s, share(LIMIT, 0x10), EINVAL);
    fails(s, share(A, 0x10, 2 ** 64 - 2 ** 11), EINVAL);
    for (const n of [0, 2, 511, 513]) fails(s, share(A, 0x10, n), EINVAL);
    fails(s, share(0x401, 0x200, 512), EINVAL);
    fails(s, share(0x400, 0x201, 512), EINVAL);
  });

  it('memory errors: -EINVAL crossing, -EPERM MMIO and NOMAP', () => {
    const s = vms();
    fails(s, share(B, 0x200, 512), EINVAL); // B is 64 pages long
    fails(s, share(GAP, 0x10), EPERM);
    fails(s, share(NOMAP, 0x10), EPERM);
  });

  it('guest errors before host errors: -ERANGE, then -EPERM for a used gfn', () => {
    const s = ok(vms(), share(A, 0x10));
    const donated = ok(s, { kind: 'host_donate_hyp', pfn: A + 1, nrPages: 1 });
    fails(donated, share(A + 1, LIMIT), ERANGE);
    fails(donated, share(A + 2, 2 ** 52 - 1), ERANGE);
    fails(s, share(A + 2, 0x10), EPERM);
    fails(ok(s, share(0x400, 0x200, 512)), share(A + 2, 0x3ff), EPERM);
    fails(s, share(0x400, 0, 512), EPERM); // gfn 0x10 inside the block range
  });

  it('host errors: -EPERM unless OWNED or already guest-shared; -EBUSY at a count of U32_MAX', () => {
    const s = vms();
    fails(ok(s, { kind: 'host_share_hyp', pfn: A }), share(A, 0x10), EPERM);
    fails(ok(s, { kind: 'host_share_ffa', pfn: A, nrPages: 1 }), share(A, 0x10), EPERM);
    fails(ok(s, { kind: 'host_donate_hyp', pfn: A, nrPages: 1 }), share(A, 0x10), EPERM);
    const saturated: ModelState = { ...setHost(s, [A], 'SHARED_OWNED'), shareCount: new Map([[A, 0xffff_ffff]]) };
    fails(saturated, share(A, 0x10), EBUSY);
  });

  it('-ENOMEM when the budget is below kvm_mmu_cache_min_pages, after the state checks', () => {
    const s = ok(fresh({ poolPages: 5 }), { kind: 'init_vm', vm: NP, protected: false });
    fails(s, share(A, 0x10), ENOMEM);
    fails(ok(s, { kind: 'host_share_hyp', pfn: A }), share(A, 0x10), EPERM);
  });
});

describe('host_unshare_guest (§3.8)', () => {
  const shared = () => run(vms(), [share(A, 0x10), share(A, 0x11), share(0x400, 0x200, 512)]);

  it('drops a mapping and a count; the host owns the page again at count 0', () => {
    let s = ok(shared(), { kind: 'host_unshare_guest', gfn: 0x10, nrPages: 1, vm: NP });
    expect([hostState(s, A), shareCountOf(s, A), guestState(vmOf(s, NP), 0x10)]).toEqual(['SHARED_OWNED', 1, 'NOPAGE']);
    s = ok(s, { kind: 'host_unshare_guest', gfn: 0x11, nrPages: 1, vm: NP });
    expect([hostState(s, A), shareCountOf(s, A)]).toEqual(['OWNED', 0]);
    s = ok(s, { kind: 'host_unshare_guest', gfn: 0x200, nrPages: 512, vm: NP });
    expect(s.host.size).toBe(0);
  });

  it('errors in order: VM, size, -ERANGE, -ENOENT, -E2BIG', () => {
    const s = shared();
    fails(s, { kind: 'host_unshare_guest', gfn: 0x10, nrPages: 1, vm: PV }, EINVAL);
    fails(s, { kind: 'host_unshare_guest', gfn: 0x10, nrPages: 1, vm: 2 }, EINVAL);
    fails(s, { kind: 'host_unshare_guest', gfn: 0x10, nrPages: 2, vm: NP }, EINVAL);
    fails(s, { kind: 'host_unshare_guest', gfn: 0x201, nrPages: 512, vm: NP }, EINVAL);
    fails(s, { kind: 'host_unshare_guest', gfn: LIMIT, nrPages: 1, vm: NP }, ERANGE);
    fails(s, { kind: 'host_unshare_guest', gfn: 0x12, nrPages: 1, vm: NP }, ENOENT);
    fails(s, { kind: 'host_unshare_guest', gfn: 0x400, nrPages: 512, vm: NP }, ENOENT);
    fails(s, { kind: 'host_unshare_guest', gfn: 0x0, nrPages: 512, vm: NP }, ENOENT);
    fails(s, { kind: 'host_unshare_guest', gfn: 0x201, nrPages: 1, vm: NP }, E2BIG);
    const small = ok(vms(), share(A, 0x200));
    fails(small, { kind: 'host_unshare_guest', gfn: 0x200, nrPages: 512, vm: NP }, E2BIG);
  });

  it('-EPERM when the host no longer shares the page (after a misused FF-A unshare)', () => {
    const s = ok(shared(), { kind: 'host_unshare_ffa', pfn: A, nrPages: 1 });
    fails(s, { kind: 'host_unshare_guest', gfn: 0x10, nrPages: 1, vm: NP }, EPERM);
  });

  it('states the operations cannot build: guest leaf not SHARED_BORROWED -EPERM, count 0 -EINVAL', () => {
    const s = shared();
    const owned = setVm(s, withLeaf(vmOf(s, NP), 0x10, { ...(leaf(s, NP, 0x10) as GuestMapping), state: 'OWNED' }));
    fails(owned, { kind: 'host_unshare_guest', gfn: 0x10, nrPages: 1, vm: NP }, EPERM);
    const uncounted: ModelState = { ...s, shareCount: new Map() };
    fails(uncounted, { kind: 'host_unshare_guest', gfn: 0x10, nrPages: 1, vm: NP }, EINVAL);
  });
});

describe('host_relax_perms_guest / host_wrprotect_guest (§3.9)', () => {
  const shared = () => run(vms(), [share(A, 0x10, 1, NP, 'r'), share(A + 1, 0x11, 1, NP, 'rw'), share(0x400, 0x200, 512, NP, 'rw')]);

  it('relax adds permissions (union), to a whole block through any of its pages', () => {
    let s = ok(shared(), { kind: 'host_relax_perms_guest', gfn: 0x10, vm: NP, prot: 'xw' });
    expect(leaf(s, NP, 0x10)?.prot).toBe('rwx');
    s = ok(s, { kind: 'host_relax_perms_guest', gfn: 0x2ff, vm: NP, prot: 'x' });
    expect(leaf(s, NP, 0x200)?.prot).toBe('rwx');
    s = ok(s, { kind: 'host_relax_perms_guest', gfn: 0x11, vm: NP, prot: '' });
    expect(leaf(s, NP, 0x11)?.prot).toBe('rw');
  });

  it('relax on an empty slot returns 0 and changes nothing (the walker swallows -EAGAIN)', () => {
    const s = shared();
    const r = apply(s, { kind: 'host_relax_perms_guest', gfn: 0x12, vm: NP, prot: 'rwx' });
    expect([r.ret, r.state]).toEqual([0, s]);
    expect(r.state).toBe(s);
  });

  it('relax errors: VM (unknown, protected), prot, -ERANGE', () => {
    const s = shared();
    fails(s, { kind: 'host_relax_perms_guest', gfn: 0x10, vm: PV, prot: 'w' }, EINVAL);
    fails(s, { kind: 'host_relax_perms_guest', gfn: 0x10, vm: 2, prot: 'w' }, EINVAL);
    fails(s, { kind: 'host_relax_perms_guest', gfn: 0x10, vm: NP, prot: 'W' }, EINVAL);
    fails(s, { kind: 'host_relax_perms_guest', gfn: LIMIT, vm: NP, prot: 'w' }, ERANGE);
  });

  it('wrprotect clears W on every leaf the range touches, blocks included', () => {
    let s = ok(shared(), { kind: 'host_wrprotect_guest', gfn: 0x300, nrPages: 1, vm: NP });
    expect([leaf(s, NP, 0x200)?.prot, leaf(s, NP, 0x11)?.prot]).toEqual(['r', 'rw']);
    s = ok(s, { kind: 'host_wrprotect_guest', gfn: 0, nrPages: 512, vm: NP });
    expect([leaf(s, NP, 0x10)?.prot, leaf(s, NP, 0x11)?.prot]).toEqual(['r', 'r']);
    const r = apply(s, { kind: 'host_wrprotect_guest', gfn: 0x12, nrPages: 1, vm: NP });
    expect(r.ret).toBe(0);
    expect(r.state).toBe(s);
  });

  it('wrprotect errors: VM, size, alignment, -ERANGE', () => {
    const s = shared();
    fails(s, { kind: 'host_wrprotect_guest', gfn: 0x10, nrPages: 1, vm: PV }, EINVAL);
    fails(s, { kind: 'host_wrprotect_guest', gfn: 0x10, nrPages: 1, vm: 2 }, EINVAL);
    fails(s, { kind: 'host_wrprotect_guest', gfn: 0x10, nrPages: 3, vm: NP }, EINVAL);
    fails(s, { kind: 'host_wrprotect_guest', gfn: 0x10, nrPages: 512, vm: NP }, EINVAL);
    fails(s, { kind: 'host_wrprotect_guest', gfn: LIMIT, nrPages: 1, vm: NP }, ERANGE);
    fails(s, { kind: 'host_wrprotect_guest', gfn: 2 ** 52 - 512, nrPages: 512, vm: NP }, ERANGE);
  });
});

describe('host_donate_guest (§3.10)', () => {
  it('donates a page: host NOPAGE, guest OWNED with RWX', () => {
    const s = ok(vms(), donate(B, 0x30));
    expect(hostState(s, B)).toBe('NOPAGE');
    expect(leaf(s, PV, 0x30)).toEqual({ kind: 'map', pfn: B, nrPages: 1, state: 'OWNED', prot: 'rwx' });
  });

  it('errors in order: VM, host range and state, guest range and state, memcache', () => {
    const s = ok(vms(), donate(B, 0x30));
    fails(s, donate(B + 1, 0x31, NP), EINVAL);
    fails(s, donate(B + 1, 0x31, 2), EINVAL);
    fails(s, donate(GAP, LIMIT), EPERM); // host checks come first
    fails(s, donate(NOMAP, 0x31), EPERM);
    fails(s, donate(2 ** 52 - 1, 0x31), EINVAL);
    fails(s, donate(B, 0x31), EPERM);
    fails(s, donate(B + 1, LIMIT), ERANGE);
    fails(s, donate(B + 1, 0x30), EPERM);
    const tight = ok(fresh({ poolPages: 5 }), { kind: 'init_vm', vm: PV, protected: true });
    fails(tight, donate(B, 0x30), ENOMEM);
  });

  it('a poisoned gfn is never NOPAGE again: -EPERM', () => {
    const s = run(vms(), [donate(B, 0x30), { kind: 'host_force_reclaim_page_guest', pfn: B }]);
    fails(s, donate(B + 1, 0x30), EPERM);
  });
});

describe('host_reclaim_page_guest (§3.11)', () => {
  const setup = () =>
    run(vms(), [donate(B, 0x30), donate(B + 1, 0x31), { kind: 'guest_share_host', vm: PV, gfn: 0x31 }, share(A, 0x10), share(0x400, 0x200, 512)]);

  it('reclaims a donated (poisoned, then returned) and a shared-back page', () => {
    let s = ok(setup(), { kind: 'host_reclaim_page_guest', gfn: 0x30, vm: PV });
    expect([hostState(s, B), guestState(vmOf(s, PV), 0x30)]).toEqual(['OWNED', 'NOPAGE']);
    s = ok(s, { kind: 'host_reclaim_page_guest', gfn: 0x31, vm: PV });
    expect(hostState(s, B + 1)).toBe('OWNED');
  });

  it('errors: -EINVAL unknown VM, -ERANGE, -ENOENT, -E2BIG for a block, -EPERM for a host share', () => {
    const s = setup();
    fails(s, { kind: 'host_reclaim_page_guest', gfn: 0x30, vm: 2 }, EINVAL);
    fails(s, { kind: 'host_reclaim_page_guest', gfn: LIMIT, vm: PV }, ERANGE);
    fails(s, { kind: 'host_reclaim_page_guest', gfn: 0x32, vm: PV }, ENOENT);
    fails(s, { kind: 'host_reclaim_page_guest', gfn: 0x200, vm: NP }, E2BIG);
    fails(s, { kind: 'host_reclaim_page_guest', gfn: 0x10, vm: NP }, EPERM);
  });

  it('after a forced reclaim: -EHWPOISON is reported as 0 and nothing changes', () => {
    const s = ok(setup(), { kind: 'host_force_reclaim_page_guest', pfn: B });
    const r = apply(s, { kind: 'host_reclaim_page_guest', gfn: 0x30, vm: PV });
    expect(r.ret).toBe(0);
    expect(r.state).toBe(s);
    expect(guestState(vmOf(s, PV), 0x30)).toBe('POISON');
  });
});

describe('host_force_reclaim_page_guest (§3.11)', () => {
  it('takes a donated page back: host OWNED, guest gfn POISON', () => {
    const s = ok(ok(vms(), donate(B, 0x30)), { kind: 'host_force_reclaim_page_guest', pfn: B });
    expect([hostState(s, B), guestState(vmOf(s, PV), 0x30)]).toEqual(['OWNED', 'POISON']);
  });

  it('errors: -EFAULT not memory, -EAGAIN host has access, -EPERM owned by hyp', () => {
    const s = run(vms(), [
      donate(B, 0x30),
      { kind: 'guest_share_host', vm: PV, gfn: 0x30 },
      { kind: 'host_donate_hyp', pfn: B + 1, nrPages: 1 },
      { kind: 'host_share_hyp', pfn: B + 2 },
    ]);
    fails(s, { kind: 'host_force_reclaim_page_guest', pfn: GAP }, EFAULT);
    fails(s, { kind: 'host_force_reclaim_page_guest', pfn: 2 ** 52 - 1 }, EFAULT);
    fails(s, { kind: 'host_force_reclaim_page_guest', pfn: B_END }, EFAULT);
    fails(s, { kind: 'host_force_reclaim_page_guest', pfn: NOMAP }, EAGAIN);
    fails(s, { kind: 'host_force_reclaim_page_guest', pfn: B + 3 }, EAGAIN);
    fails(s, { kind: 'host_force_reclaim_page_guest', pfn: B }, EAGAIN); // shared back: host borrows it
    fails(s, { kind: 'host_force_reclaim_page_guest', pfn: B + 2 }, EAGAIN);
    fails(s, { kind: 'host_force_reclaim_page_guest', pfn: B + 1 }, EPERM);
  });

  it('a NOPAGE page with no owner record is -EAGAIN ("raced with teardown")', () => {
    fails(setHost(vms(), [B], 'NOPAGE'), { kind: 'host_force_reclaim_page_guest', pfn: B }, EAGAIN);
  });
});

describe('guest_share_host / guest_unshare_host (§3.12)', () => {
  const donated = () => ok(vms(), donate(B, 0x30));

  it('share back and unshare again', () => {
    let s = ok(donated(), { kind: 'guest_share_host', vm: PV, gfn: 0x30 });
    expect([hostState(s, B), leaf(s, PV, 0x30)?.state]).toEqual(['SHARED_BORROWED', 'SHARED_OWNED']);
    s = ok(s, { kind: 'guest_unshare_host', vm: PV, gfn: 0x30 });
    expect([hostState(s, B), leaf(s, PV, 0x30)?.state]).toEqual(['NOPAGE', 'OWNED']);
  });

  it('errors: -EINVAL for a non-protected or unknown VM; the get_valid_guest_pte codes', () => {
    const s = run(donated(), [donate(B + 1, 0x31), { kind: 'host_force_reclaim_page_guest', pfn: B + 1 }, share(0x400, 0x200, 512)]);
    for (const kind of ['guest_share_host', 'guest_unshare_host'] as const) {
      fails(s, { kind, vm: NP, gfn: 0x200 }, EINVAL);
      fails(s, { kind, vm: 2, gfn: 0x30 }, EINVAL);
      fails(s, { kind, vm: PV, gfn: LIMIT }, ERANGE);
      fails(s, { kind, vm: PV, gfn: 0x32 }, ENOENT);
      fails(s, { kind, vm: PV, gfn: 0x31 }, EHWPOISON);
    }
    // A protected VM never holds a block; build one to reach -E2BIG.
    const block = setVm(s, withLeaf(vmOf(s, PV), 0x400, { kind: 'map', pfn: 0x400, nrPages: 512, state: 'OWNED', prot: 'rwx' }));
    fails(block, { kind: 'guest_share_host', vm: PV, gfn: 0x401 }, E2BIG);
  });

  it('-EPERM for the wrong guest state, and for a host state the operations cannot build', () => {
    const s = donated();
    fails(s, { kind: 'guest_unshare_host', vm: PV, gfn: 0x30 }, EPERM);
    const shared = ok(s, { kind: 'guest_share_host', vm: PV, gfn: 0x30 });
    fails(shared, { kind: 'guest_share_host', vm: PV, gfn: 0x30 }, EPERM);
    fails(setHost(s, [B], 'OWNED'), { kind: 'guest_share_host', vm: PV, gfn: 0x30 }, EPERM);
    fails(setHost(shared, [B], 'NOPAGE'), { kind: 'guest_unshare_host', vm: PV, gfn: 0x30 }, EPERM);
  });
});
