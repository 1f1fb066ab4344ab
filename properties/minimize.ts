/**
 * A second shrinking pass on the flat operation list. fast-check shrinks the generated structure
 * (whole life-cycle chains at a time); this pass then removes single operations, one at a time,
 * for as long as the run still fails, so a counterexample carries no step that does not matter.
 */
export function minimizeOperations<T>(ops: readonly T[], stillFails: (candidate: readonly T[]) => boolean): T[] {
  let current = [...ops];
  let changed = true;
  while (changed) {
    changed = false;
    for (let i = current.length - 1; i >= 0; i--) {
      const candidate = [...current.slice(0, i), ...current.slice(i + 1)];
      if (stillFails(candidate)) {
        current = candidate;
        changed = true;
      }
    }
  }
  return current;
}
