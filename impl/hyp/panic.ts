/**
 * A hypervisor panic: what a `BUG()` or a `WARN_ON()` at EL2 does in nVHE/pKVM ("At EL2 in
 * nVHE/pKVM, WARN_ON() ... branches to hyp_panic()", series-as-posted.md §0 WARN=panic).
 *
 * `site` names the kernel statement that fired (function and condition, e.g.
 * `smmu_dabt_device: WARN_ON(!mask)`), so a campaign can tell one host-triggerable panic from
 * another and a known one from a new one (properties/known-findings.ts).
 */
export class HypervisorPanic extends Error {
  readonly site: string;

  constructor(message: string, site?: string) {
    super(site === undefined ? message : `${site}: ${message}`);
    this.site = site ?? message;
  }
}

/** `WARN_ON(cond)` at EL2: panics when `cond` holds, returns `cond` otherwise (never true). */
export function warnOn(cond: boolean, site: string, detail = ''): boolean {
  if (cond) throw new HypervisorPanic(detail === '' ? 'WARN_ON fired' : detail, site);
  return false;
}

/** `WARN_ON(ret)` on an errno-returning call. */
export function warnOnErr(ret: number, site: string): void {
  if (ret !== 0) throw new HypervisorPanic(`returned ${ret}`, site);
}
