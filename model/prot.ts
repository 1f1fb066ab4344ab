/**
 * Guest stage-2 permissions as they appear in operations: a string of the letters r, w, x in any
 * order (duplicates allowed, as OR-ing a bit twice is harmless). Any other character stands for a
 * `kvm_pgtable_prot` bit outside `KVM_PGTABLE_PROT_RWX` — the kernel answers such a prot with
 * -EINVAL (§3.7, §3.9), and this spelling keeps that error path expressible as plain JSON.
 * Stored prots are canonical: a subsequence of "rwx".
 */
export type Prot = string;

const ORDER = ['r', 'w', 'x'] as const;

/** Canonical prot, or undefined when `text` names a bit outside RWX. */
export function parseProt(text: string): Prot | undefined {
  for (const c of text) if (c !== 'r' && c !== 'w' && c !== 'x') return undefined;
  return ORDER.filter((c) => text.includes(c)).join('');
}

/** `relax_perms` only ever adds permissions (§3.9): the union. */
export function protUnion(a: Prot, b: Prot): Prot {
  return ORDER.filter((c) => a.includes(c) || b.includes(c)).join('');
}

/** `wrprotect` clears S2AP_W and nothing else. */
export function protWithoutWrite(p: Prot): Prot {
  return ORDER.filter((c) => c !== 'w' && p.includes(c)).join('');
}

export const PROT_RWX: Prot = 'rwx';
