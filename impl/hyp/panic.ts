/** A bug the kernel would BUG()/WARN() on at EL2: a hypervisor panic. */
export class HypervisorPanic extends Error {}
