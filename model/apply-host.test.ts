/** Host <-> hypervisor operations, FF-A sharing and MMIO donation: success and every error path. */
import { describe, expect, it } from 'vitest';
import { EBUSY, EINVAL, EPERM, ERANGE } from './errno.js';
import { apply } from './apply.js';
import { checkContractInvariants, checkInvariants } from './invariants.js';
import { hostState, hypState, pinCount, setHost, setHyp } from './state.js';
import { A, A_END, B, B_END, fails, fresh, GAP, NOMAP, ok, run } from './test-support.js';

const LIMIT = 2 ** 28; // page frames below 2^40

describe('host_share_hyp (§3.1)', () => {
  it('host OWNED -> SHARED_OWNED, hyp NOPAGE -> SHARED_BORROWED', () => {
    const s = ok(fresh(), { kind: 'host_share_hyp', pfn: A + 1 });
    expect([hostState(s, A + 1), hypState(s, A + 1)]).toEqual(['SHARED_OWNED', 'SHARED_BORROWED']);
    expect([hostState(s, A + 2), hypState(s, A + 2)]).toEqual(['OWNED', 'NOPAGE']);
  });

  it('range check first: MMIO and NOMAP are -EPERM, the last page of the address space -EINVAL', () => {
    const s = fresh();
    fails(s, { kind: 'host_share_hyp', pfn: GAP }, EPERM);
    fails(s, { kind: 'host_share_hyp', pfn: NOMAP }, EPERM);
    fails(s, { kind: 'host_share_hyp', pfn: 2 ** 52 - 1 }, EINVAL);
    fails(s, { kind: 'host_share_hyp', pfn: LIMIT + 5 }, EPERM);
  });

  it('-EPERM when the host does not own it, or the hyp already has it', () => {
    const s = ok(fresh(), { kind: 'host_share_hyp', pfn: A });
    fails(s, { kind: 'host_share_hyp', pfn: A }, EPERM);
    // Host OWNED but hyp still borrowing: only reachable through a misused FF-A unshare.
    const odd = ok(s, { kind: 'host_unshare_ffa', pfn: A, nrPages: 1 });
    fails(odd, { kind: 'host_share_hyp', pfn: A }, EPERM);
  });

  it('has no pfn_range_is_valid: a pfn above 2^52 wraps in hyp_pfn_to_phys', () => {
    const s = ok(fresh(), { kind: 'host_share_hyp', pfn: 2 ** 52 + A });
    expect(hostState(s, A)).toBe('SHARED_OWNED');
  });
});

describe('host_unshare_hyp (§3.2)', () => {
  const shared = () => ok(fresh(), { kind: 'host_share_hyp', pfn: A });

  it('undoes a share', () => {
    const s = ok(shared(), { kind: 'host_unshare_hyp', pfn: A });
    expect(s.host.size + s.hyp.size).toBe(0);
  });

  it('-EPERM for a page not shared, or shared with someone else than hyp', () => {
    fails(fresh(), { kind: 'host_unshare_hyp', pfn: A }, EPERM);
    const ffa = ok(fresh(), { kind: 'host_share_ffa', pfn: A, nrPages: 1 });
    fails(ffa, { kind: 'host_unshare_hyp', pfn: A }, EPERM);
    fails(fresh(), { kind: 'host_unshare_hyp', pfn: GAP }, EPERM);
    fails(fresh(), { kind: 'host_unshare_hyp', pfn: 2 ** 52 - 1 }, EINVAL);
  });

  it('-EBUSY while pinned, and works again after the last unpin', () => {
    let s = run(shared(), [
      { kind: 'hyp_pin_shared_mem', pfn: A, nrPages: 1 },
      { kind: 'hyp_pin_shared_mem', pfn: A, nrPages: 1 },
    ]);
    fails(s, { kind: 'host_unshare_hyp', pfn: A }, EBUSY);
    s = ok(s, { kind: 'hyp_unpin_shared_mem', pfn: A, nrPages: 1 });
    fails(s, { kind: 'host_unshare_hyp', pfn: A }, EBUSY);
    s = ok(s, { kind: 'hyp_unpin_shared_mem', pfn: A, nrPages: 1 });
    ok(s, { kind: 'host_unshare_hyp', pfn: A });
  });
});

describe('host_donate_hyp (§3.3)', () => {
  it('moves a range to the hypervisor', () => {
    const s = ok(fresh(), { kind: 'host_donate_hyp', pfn: A + 8, nrPages: 3 });
    for (const p of [A + 8, A + 9, A + 10]) expect([hostState(s, p), hypState(s, p)]).toEqual(['NOPAGE', 'OWNED']);
    expect(hostState(s, A + 11)).toBe('OWNED');
  });

  it('-EINVAL from pfn_range_is_valid before anything else, even for MMIO', () => {
    const s = fresh();
    fails(s, { kind: 'host_donate_hyp', pfn: LIMIT, nrPages: 1 }, EINVAL);
    fails(s, { kind: 'host_donate_hyp', pfn: A, nrPages: 2 ** 64 - 2 ** 12 }, EINVAL);
    fails(s, { kind: 'host_donate_hyp', pfn: A, nrPages: 2 ** 52 }, EINVAL);
    fails(s, { kind: 'host_donate_hyp', pfn: 2 ** 60, nrPages: 1 }, EINVAL);
  });

  it('-EINVAL across a region boundary, -EPERM for MMIO and NOMAP', () => {
    const s = fresh();
    fails(s, { kind: 'host_donate_hyp', pfn: A_END - 1, nrPages: 2 }, EINVAL);
    fails(s, { kind: 'host_donate_hyp', pfn: B_END - 2, nrPages: 4 }, EINVAL);
    fails(s, { kind: 'host_donate_hyp', pfn: GAP, nrPages: 2 }, EPERM);
    fails(s, { kind: 'host_donate_hyp', pfn: NOMAP, nrPages: 1 }, EPERM);
  });

  it('-EPERM if any page is not host OWNED or not hyp NOPAGE', () => {
    const s = ok(fresh(), { kind: 'host_share_ffa', pfn: A + 2, nrPages: 1 });
    fails(s, { kind: 'host_donate_hyp', pfn: A, nrPages: 4 }, EPERM);
    const odd = run(fresh(), [
      { kind: 'host_share_hyp', pfn: A },
      { kind: 'host_unshare_ffa', pfn: A, nrPages: 1 },
    ]);
    fails(odd, { kind: 'host_donate_hyp', pfn: A, nrPages: 1 }, EPERM);
  });

  it('nrPages 0 succeeds and changes nothing mid-region, but is -EINVAL at a region base', () => {
    const r = apply(fresh(), { kind: 'host_donate_hyp', pfn: A + 1, nrPages: 0 });
    expect(r.ret).toBe(0);
    expect(r.state.host.size + r.state.hyp.size).toBe(0);
    fails(fresh(), { kind: 'host_donate_hyp', pfn: A, nrPages: 0 }, EINVAL);
  });
});

describe('hyp_donate_host (§3.4)', () => {
  const donated = () => ok(fresh(), { kind: 'host_donate_hyp', pfn: B, nrPages: 4 });

  it('gives a donated range back', () => {
    const s = ok(donated(), { kind: 'hyp_donate_host', pfn: B + 1, nrPages: 2 });
    expect([B, B + 1, B + 2, B + 3].map((p) => hostState(s, p))).toEqual(['NOPAGE', 'OWNED', 'OWNED', 'NOPAGE']);
  });

  it('-EINVAL for an invalid range; -EPERM when hyp does not own every page', () => {
    fails(donated(), { kind: 'hyp_donate_host', pfn: B, nrPages: 2 ** 64 - 2 ** 11 }, EINVAL);
    fails(donated(), { kind: 'hyp_donate_host', pfn: B, nrPages: 5 }, EPERM);
    fails(fresh(), { kind: 'hyp_donate_host', pfn: A, nrPages: 1 }, EPERM);
  });

  it('checks the hyp side before the host range: hyp-owned MMIO reaches the range check (-EPERM)', () => {
    const s = ok(fresh(), { kind: 'host_donate_hyp_mmio', pfn: GAP });
    fails(s, { kind: 'hyp_donate_host', pfn: GAP, nrPages: 1 }, EPERM);
  });

  it('host-side errors on states the operations cannot build: crossing -EINVAL, host not NOPAGE -EPERM', () => {
    const crossing = setHost(setHyp(fresh(), [A_END - 1, A_END], 'OWNED'), [A_END - 1, A_END], 'NOPAGE');
    fails(crossing, { kind: 'hyp_donate_host', pfn: A_END - 1, nrPages: 2 }, EINVAL);
    const hostStillOwns = setHyp(fresh(), [A], 'OWNED');
    fails(hostStillOwns, { kind: 'hyp_donate_host', pfn: A, nrPages: 1 }, EPERM);
  });
});

describe('hyp_pin_shared_mem / hyp_unpin_shared_mem (§3.5)', () => {
  const shared = () => run(fresh(), [
    { kind: 'host_share_hyp', pfn: A },
    { kind: 'host_share_hyp', pfn: A + 1 },
  ]);

  it('counts pins per page', () => {
    let s = ok(shared(), { kind: 'hyp_pin_shared_mem', pfn: A, nrPages: 2 });
    s = ok(s, { kind: 'hyp_pin_shared_mem', pfn: A + 1, nrPages: 1 });
    expect([pinCount(s, A), pinCount(s, A + 1)]).toEqual([1, 2]);
    s = ok(s, { kind: 'hyp_unpin_shared_mem', pfn: A, nrPages: 2 });
    expect([pinCount(s, A), pinCount(s, A + 1)]).toEqual([0, 1]);
    expect(s.pins.has(A)).toBe(false);
  });

  it('pin: -EINVAL invalid range, -EPERM unless host SHARED_OWNED and hyp SHARED_BORROWED', () => {
    fails(shared(), { kind: 'hyp_pin_shared_mem', pfn: A, nrPages: 2 ** 64 - 2 ** 12 }, EINVAL);
    fails(shared(), { kind: 'hyp_pin_shared_mem', pfn: A, nrPages: 3 }, EPERM);
    const ffa = ok(fresh(), { kind: 'host_share_ffa', pfn: A, nrPages: 1 });
    fails(ffa, { kind: 'hyp_pin_shared_mem', pfn: A, nrPages: 1 }, EPERM);
    fails(fresh(), { kind: 'hyp_pin_shared_mem', pfn: GAP, nrPages: 1 }, EPERM);
    fails(fresh(), { kind: 'hyp_pin_shared_mem', pfn: A_END - 1, nrPages: 2 }, EINVAL);
  });

  it('unpin (our choice): -EINVAL for an invalid range or any unpinned page, changing nothing', () => {
    const s = ok(shared(), { kind: 'hyp_pin_shared_mem', pfn: A, nrPages: 1 });
    fails(s, { kind: 'hyp_unpin_shared_mem', pfn: A, nrPages: 2 }, EINVAL);
    fails(s, { kind: 'hyp_unpin_shared_mem', pfn: LIMIT, nrPages: 1 }, EINVAL);
    fails(s, { kind: 'hyp_unpin_shared_mem', pfn: A, nrPages: 2 ** 64 - 2 ** 11 }, EINVAL);
  });
});

describe('host_share_ffa / host_unshare_ffa (§3.6)', () => {
  it('OWNED <-> SHARED_OWNED, host state only', () => {
    const s = ok(fresh(), { kind: 'host_share_ffa', pfn: B, nrPages: 3 });
    expect([hostState(s, B + 2), hypState(s, B + 2)]).toEqual(['SHARED_OWNED', 'NOPAGE']);
    const back = ok(s, { kind: 'host_unshare_ffa', pfn: B, nrPages: 3 });
    expect(back.host.size).toBe(0);
  });

  it('errors: -EINVAL range, -EINVAL crossing, -EPERM MMIO/NOMAP, -EPERM wrong state', () => {
    const s = fresh();
    for (const kind of ['host_share_ffa', 'host_unshare_ffa'] as const) {
      fails(s, { kind, pfn: LIMIT - 1, nrPages: 2 }, EINVAL);
      fails(s, { kind, pfn: A_END - 1, nrPages: 2 }, EINVAL);
      fails(s, { kind, pfn: GAP, nrPages: 1 }, EPERM);
      fails(s, { kind, pfn: NOMAP, nrPages: 1 }, EPERM);
    }
    fails(s, { kind: 'host_unshare_ffa', pfn: A, nrPages: 1 }, EPERM);
    fails(ok(s, { kind: 'host_share_ffa', pfn: A, nrPages: 1 }), { kind: 'host_share_ffa', pfn: A, nrPages: 1 }, EPERM);
  });

  it('unshare accepts a page shared with hyp (UP-2026 trusts the FF-A proxy): host OWNED, hyp still borrowing', () => {
    const s = run(fresh(), [
      { kind: 'host_share_hyp', pfn: A },
      { kind: 'hyp_pin_shared_mem', pfn: A, nrPages: 1 },
      { kind: 'host_unshare_ffa', pfn: A, nrPages: 1 },
    ]);
    expect([hostState(s, A), hypState(s, A), pinCount(s, A)]).toEqual(['OWNED', 'SHARED_BORROWED', 1]);
    expect(checkInvariants(s)).toEqual([]);
    expect(checkContractInvariants(s)).not.toEqual([]);
  });
});

describe('MMIO donation (SER-T&E §6.9)', () => {
  it('host_donate_hyp_mmio / hyp_donate_host_mmio move one MMIO page and back', () => {
    const s = ok(fresh(), { kind: 'host_donate_hyp_mmio', pfn: GAP });
    expect([hostState(s, GAP), hypState(s, GAP)]).toEqual(['NOPAGE', 'OWNED']);
    const back = ok(s, { kind: 'hyp_donate_host_mmio', pfn: GAP });
    expect(back.host.size + back.hyp.size).toBe(0);
  });

  it('donate: -EPERM for memory (NOMAP too), -ERANGE beyond the PA range, -EPERM when already donated', () => {
    fails(fresh(), { kind: 'host_donate_hyp_mmio', pfn: A }, EPERM);
    fails(fresh(), { kind: 'host_donate_hyp_mmio', pfn: NOMAP }, EPERM);
    fails(fresh(), { kind: 'host_donate_hyp_mmio', pfn: LIMIT }, ERANGE);
    fails(fresh(), { kind: 'host_donate_hyp_mmio', pfn: 2 ** 52 - 1 }, ERANGE);
    fails(ok(fresh(), { kind: 'host_donate_hyp_mmio', pfn: GAP }), { kind: 'host_donate_hyp_mmio', pfn: GAP }, EPERM);
  });

  it('donate: -EBUSY if the hyp already maps the page (a state the operations cannot build)', () => {
    fails(setHyp(fresh(), [GAP], 'OWNED'), { kind: 'host_donate_hyp_mmio', pfn: GAP }, EBUSY);
  });

  it('give back: -EPERM memory, -ERANGE, -EPERM unless hyp owns it and the host has nothing there', () => {
    fails(fresh(), { kind: 'hyp_donate_host_mmio', pfn: B }, EPERM);
    fails(fresh(), { kind: 'hyp_donate_host_mmio', pfn: LIMIT + 1 }, ERANGE);
    fails(fresh(), { kind: 'hyp_donate_host_mmio', pfn: GAP }, EPERM);
    fails(setHyp(fresh(), [GAP], 'OWNED'), { kind: 'hyp_donate_host_mmio', pfn: GAP }, EPERM);
  });
});
