/**
 * Boot once, reset before every run (issue 15 item 1: "boot ≤ 0.3 ms per run ... reuse with
 * reset"). Booting an SMMU machine costs milliseconds (the shadow idmap snapshot maps all of
 * memory), and every run of a campaign boots the same machine. The first boot of a machine
 * records the state of every object reachable from the booted system — own properties, Map and
 * Set entries, array elements, typed-array contents — and each later run resets those very
 * objects to it, so the objects keep their identities and the closures the components hold
 * (register hooks, TLB-maintenance callbacks) stay valid. Objects made after boot become
 * unreachable by the reset.
 *
 * Two limits, both checked by properties/boot-cache.test.ts on random runs of every machine and
 * design: state a closure holds in its own variables is not reset (the host CPU's lazily built
 * stage-2 walker is one: it only caches the root, which never changes), and a caller that keeps
 * a run's `system` sees it reset by the next run — so only callers that are done with a run's
 * system when they start the next one ask for reuse (`RunOptions.reuseBoot`: campaigns, the
 * zoo's searches, the minimizer, the benchmarks).
 */
import { type System } from '../impl/system.js';
import { type ModelState } from '../model/index.js';
import { type Violation } from './checks.js';

type Recorded =
  | { readonly kind: 'map'; readonly target: Map<unknown, unknown>; readonly entries: readonly [unknown, unknown][] }
  | { readonly kind: 'set'; readonly target: Set<unknown>; readonly values: readonly unknown[] }
  | { readonly kind: 'array'; readonly target: unknown[]; readonly values: readonly unknown[]; readonly props: ObjectProps | undefined }
  | { readonly kind: 'typed'; readonly target: { set(a: ArrayLike<number>): void }; readonly copy: ArrayLike<number> }
  | { readonly kind: 'object'; readonly target: Record<PropertyKey, unknown>; readonly props: ObjectProps };

interface ObjectProps {
  readonly keys: readonly PropertyKey[];
  readonly values: readonly unknown[];
  /** How many keys `for ... in` sees: a cheap test for properties added since. */
  readonly enumerable: number;
}

function forInCount(o: object): number {
  let n = 0;
  for (const _k in o) n++;
  return n;
}

/** The state of an object graph, to be put back into the same objects. */
export class GraphSnapshot {
  private readonly records: Recorded[] = [];

  constructor(root: object) {
    const seen = new Set<object>();
    const stack: unknown[] = [root];
    while (stack.length > 0) {
      const o = stack.pop();
      if (o === null || typeof o !== 'object' || seen.has(o)) continue;
      seen.add(o);
      this.record(o, stack);
    }
  }

  private record(o: object, stack: unknown[]): void {
    if (ArrayBuffer.isView(o)) {
      const typed = o as unknown as { slice(): ArrayLike<number>; set(a: ArrayLike<number>): void };
      this.records.push({ kind: 'typed', target: typed, copy: typed.slice() });
      return;
    }
    if (o instanceof WeakMap || o instanceof WeakSet || o instanceof Promise) throw new Error(`boot snapshot: cannot record a ${o.constructor.name}`);
    if (o instanceof Map) {
      const entries = [...Map.prototype.entries.call(o)] as [unknown, unknown][];
      for (const [k, v] of entries) stack.push(k, v);
      this.records.push({ kind: 'map', target: o, entries });
      return;
    }
    if (o instanceof Set) {
      const values = [...Set.prototype.values.call(o)];
      stack.push(...values);
      this.records.push({ kind: 'set', target: o, values });
      return;
    }
    // Frozen objects cannot change: only what they point to is recorded.
    if (Object.isFrozen(o)) {
      for (const k of Reflect.ownKeys(o)) stack.push((o as Record<PropertyKey, unknown>)[k]);
      return;
    }
    if (Array.isArray(o)) {
      const values = o.slice();
      for (const v of values) if (v !== null && typeof v === 'object') stack.push(v);
      this.records.push({ kind: 'array', target: o, values, props: undefined });
      return;
    }
    const target = o as Record<PropertyKey, unknown>;
    const keys = Reflect.ownKeys(o);
    const values: unknown[] = [];
    for (const k of keys) {
      const d = Object.getOwnPropertyDescriptor(o, k) as PropertyDescriptor;
      if (!('value' in d)) throw new Error(`boot snapshot: accessor property ${String(k)} on a ${o.constructor?.name ?? 'object'}`);
      values.push(d.value);
      // Functions are kept by reference: a closure over these objects stays right after a reset.
      if (typeof d.value === 'object') stack.push(d.value);
    }
    this.records.push({ kind: 'object', target, props: { keys, values, enumerable: forInCount(o) } });
  }

  /** Puts every recorded object back as it was. */
  restore(): void {
    for (const r of this.records) {
      switch (r.kind) {
        case 'typed':
          r.target.set(r.copy);
          break;
        case 'map':
          // Most recorded containers are unchanged by a run: compare before rebuilding.
          if (!mapUnchanged(r.target, r.entries)) {
            Map.prototype.clear.call(r.target);
            for (const [k, v] of r.entries) Map.prototype.set.call(r.target, k, v);
          }
          break;
        case 'set':
          if (r.target.size !== r.values.length || !r.values.every((v) => r.target.has(v))) {
            Set.prototype.clear.call(r.target);
            for (const v of r.values) Set.prototype.add.call(r.target, v);
          }
          break;
        case 'array': {
          const t = r.target;
          if (t.length !== r.values.length) t.length = r.values.length;
          for (let i = 0; i < r.values.length; i++) if (t[i] !== r.values[i]) t[i] = r.values[i];
          break;
        }
        case 'object': {
          const { keys, values, enumerable } = r.props;
          const t = r.target;
          if (forInCount(t) !== enumerable) {
            const known = new Set(keys);
            for (const k of Reflect.ownKeys(t)) if (!known.has(k)) delete t[k];
          }
          for (let i = 0; i < keys.length; i++) {
            const k = keys[i] as PropertyKey;
            if (t[k] !== values[i]) t[k] = values[i];
          }
          break;
        }
        default: {
          const never: never = r;
          throw new Error(`unknown record ${String(never)}`);
        }
      }
    }
  }
}

function mapUnchanged(target: Map<unknown, unknown>, entries: readonly [unknown, unknown][]): boolean {
  if (target.size !== entries.length) return false;
  for (const [k, v] of entries) if (Map.prototype.get.call(target, k) !== v || !Map.prototype.has.call(target, k)) return false;
  return true;
}

interface BootEntry {
  readonly system: System;
  readonly model: ModelState;
  readonly bootViolations: readonly Violation[];
  readonly snapshot: GraphSnapshot;
  /** The check sets (as keys) the boot state has passed in full: it is the same every run. */
  readonly passed: Set<string>;
}

/** Booted machines by key; bounded so a sweep over many machines does not keep them all. */
const CACHE_LIMIT = 16;
const cache = new Map<string, BootEntry>();

/**
 * A booted pair for `key` (the machine with its driver knobs, as JSON): reset to its boot state
 * when cached, else booted by `boot` and recorded. The model state is immutable and shared.
 */
export function reusableBoot(key: string, boot: () => { model: ModelState; system: System; bootViolations: Violation[] }): { model: ModelState; system: System; bootViolations: Violation[] } {
  const hit = cache.get(key);
  if (hit !== undefined) {
    hit.snapshot.restore();
    return { model: hit.model, system: hit.system, bootViolations: [...hit.bootViolations] };
  }
  const booted = boot();
  if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value as string);
  cache.set(key, { system: booted.system, model: booted.model, bootViolations: [...booted.bootViolations], snapshot: new GraphSnapshot(booted.system), passed: new Set() });
  return booted;
}

/**
 * Whether the boot state of `key`'s cached machine passes the checks named by `checksKey`: asked
 * of `check` (on the state just restored) the first time, remembered after a pass. A failure is
 * not remembered, so every run then checks its first step in full and reports it there.
 */
export function bootStatePasses(key: string, checksKey: string, check: () => boolean): boolean {
  const entry = cache.get(key);
  if (entry === undefined) return false;
  if (entry.passed.has(checksKey)) return true;
  const ok = check();
  if (ok) entry.passed.add(checksKey);
  return ok;
}

/** Forgets every booted machine (tests). */
export function clearBootCache(): void {
  cache.clear();
}
