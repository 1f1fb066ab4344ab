/**
 * Linux errno values (include/uapi/asm-generic/errno-base.h and errno.h). Hypercalls and
 * page-table operations return them negated, as the kernel does: 0 or a positive byte count for
 * success, `-EPERM` and friends for failure.
 */
export const EPERM = 1;
export const ENOENT = 2;
export const ENXIO = 6;
export const E2BIG = 7;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EFAULT = 14;
export const EBUSY = 16;
export const EEXIST = 17;
export const ENODEV = 19;
export const EINVAL = 22;
export const ENOSPC = 28;
export const ERANGE = 34;
export const EOPNOTSUPP = 95;
export const EADDRINUSE = 98;
export const ETIMEDOUT = 110;
export const EHWPOISON = 133;

const NAMES: Record<number, string> = {
  [EPERM]: 'EPERM',
  [ENOENT]: 'ENOENT',
  [ENXIO]: 'ENXIO',
  [E2BIG]: 'E2BIG',
  [EAGAIN]: 'EAGAIN',
  [ENOMEM]: 'ENOMEM',
  [EFAULT]: 'EFAULT',
  [EBUSY]: 'EBUSY',
  [EEXIST]: 'EEXIST',
  [ENODEV]: 'ENODEV',
  [EINVAL]: 'EINVAL',
  [ENOSPC]: 'ENOSPC',
  [ERANGE]: 'ERANGE',
  [EOPNOTSUPP]: 'EOPNOTSUPP',
  [EADDRINUSE]: 'EADDRINUSE',
  [ETIMEDOUT]: 'ETIMEDOUT',
  [EHWPOISON]: 'EHWPOISON',
};

/** `-EPERM` → "-EPERM", 0 → "0", other values as decimal. */
export function errnoName(ret: number): string {
  if (ret < 0) {
    const name = NAMES[-ret];
    if (name !== undefined) return '-' + name;
  }
  return String(ret);
}
