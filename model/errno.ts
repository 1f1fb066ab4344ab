/**
 * Linux errno values used by the model. Hypercalls return 0 or a negated errno, as the kernel
 * does. Defined here because `model/` imports nothing from `impl/` (ARCHITECTURE §2).
 */
export const EPERM = 1;
export const ENOENT = 2;
export const E2BIG = 7;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EFAULT = 14;
export const EBUSY = 16;
export const EEXIST = 17;
export const EINVAL = 22;
export const ERANGE = 34;
export const EHWPOISON = 133;

const NAMES: Readonly<Record<number, string>> = {
  [EPERM]: 'EPERM',
  [ENOENT]: 'ENOENT',
  [E2BIG]: 'E2BIG',
  [EAGAIN]: 'EAGAIN',
  [ENOMEM]: 'ENOMEM',
  [EFAULT]: 'EFAULT',
  [EBUSY]: 'EBUSY',
  [EEXIST]: 'EEXIST',
  [EINVAL]: 'EINVAL',
  [ERANGE]: 'ERANGE',
  [EHWPOISON]: 'EHWPOISON',
};

/** `-EPERM` → "-EPERM"; anything else as a decimal string. For traces and test names. */
export function errnoName(ret: number): string {
  const name = ret < 0 ? NAMES[-ret] : undefined;
  return name === undefined ? String(ret) : '-' + name;
}
