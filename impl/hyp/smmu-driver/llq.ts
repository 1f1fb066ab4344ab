/**
 * Linux's `arm_smmu_ll_queue` pointer arithmetic (`Q_IDX`, `Q_WRP`, `Q_OVF`, `queue_space`,
 * `queue_inc_cons`, `queue_inc_prod_n`), in u32 as the C does it, because the posted hypervisor
 * driver applies it to values the host wrote (series-as-posted.md §2.6, DRV-v6e
 * `smmu_emulate_cmdq_insert`): a host PROD that is "behind" CONS makes `queue_space` wrap, and
 * the hypervisor then waits for ~2^32 free slots. Kept separate from impl/arch's queue helpers,
 * which are the architecture's arithmetic and reject such values.
 */

/** `Q_IDX(q, p)`. */
export function qIdx(p: number, shift: number): number {
  return (p >>> 0) % 2 ** shift;
}

/** `Q_WRP(q, p)`: the wrap bit in place (0 or 2^shift). */
export function qWrp(p: number, shift: number): number {
  return (p >>> 0) & (2 ** shift);
}

/** `Q_OVF(p)`: bit 31 in place. */
export function qOvf(p: number): number {
  return (p >>> 0) & 0x8000_0000;
}

/** `queue_space(q)` in u32. */
export function queueSpace(prod: number, cons: number, shift: number): number {
  if (qWrp(prod, shift) === qWrp(cons, shift)) return (2 ** shift - (qIdx(prod, shift) - qIdx(cons, shift))) >>> 0;
  return (qIdx(cons, shift) - qIdx(prod, shift)) >>> 0;
}

export function queueFullLlq(prod: number, cons: number, shift: number): boolean {
  return qIdx(prod, shift) === qIdx(cons, shift) && qWrp(prod, shift) !== qWrp(cons, shift);
}

export function queueEmptyLlq(prod: number, cons: number, shift: number): boolean {
  return qIdx(prod, shift) === qIdx(cons, shift) && qWrp(prod, shift) === qWrp(cons, shift);
}

/** `queue_inc_cons`: the new cons (OVF kept, index/wrap advanced by one). */
export function queueIncCons(cons: number, shift: number): number {
  const next = (qWrp(cons, shift) | qIdx(cons, shift)) + 1;
  return (qOvf(cons) | qWrp(next, shift) | qIdx(next, shift)) >>> 0;
}

/** `queue_inc_prod_n`. */
export function queueIncProdN(prod: number, n: number, shift: number): number {
  const next = (qWrp(prod, shift) | qIdx(prod, shift)) + n;
  return (qOvf(prod) | qWrp(next, shift) | qIdx(next, shift)) >>> 0;
}
