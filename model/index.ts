/** The abstract reference model: import from here outside `model/`. */
export * from './errno.js';
export * from './layout.js';
export * from './prot.js';
export * from './state.js';
export * from './page-map.js';
export * from './operations.js';
export * from './checks.js';
export * from './apply.js';
export * from './access.js';
export * from './invariants.js';
