/**
 * A watcher of the SMMU's caches and the devices' ATCs (issue 17 item 2): told of every entry
 * filled and removed, and of the span during which an invalidation or an eviction takes effect, so
 * a trace can say when an entry that reaches a page was filled and which invalidations did or did
 * not remove it. It observes only: nothing here changes what the hardware caches or removes.
 * Null outside traced replays, so a run pays one null check per fill and per removal (never per
 * lookup).
 */
import { type Command } from '../../arch/smmu/commands.js';
import { type AtcEntry } from '../device.js';
import { type CdCacheEntry, type S1TlbEntry, type S1WalkEntry } from './nested.js';
import { type L1CacheEntry, type SteCacheEntry } from './stream-table.js';
import { type TlbEntry, type WalkEntry } from './tlb.js';

/** One cached entry, by the cache that holds it. Entries are immutable: the object is its identity. */
export type CachedEntry =
  | { readonly cache: 'tlb'; readonly entry: TlbEntry }
  | { readonly cache: 'walk'; readonly entry: WalkEntry }
  | { readonly cache: 's1_tlb'; readonly entry: S1TlbEntry }
  | { readonly cache: 's1_walk'; readonly entry: S1WalkEntry }
  | { readonly cache: 'ste'; readonly entry: SteCacheEntry }
  | { readonly cache: 'l1std'; readonly entry: L1CacheEntry }
  | { readonly cache: 'cd'; readonly entry: CdCacheEntry }
  | { readonly cache: 'atc'; readonly sid: number; readonly entry: AtcEntry };

export type CacheName = CachedEntry['cache'];

/** What removes the entries reported between `removing` and `removed`. */
export type RemovalCause = { readonly kind: 'command'; readonly command: Command } | { readonly kind: 'evict' };

export interface CacheObserver {
  filled(e: CachedEntry): void;
  /** An entry left its cache: by the cause in effect, or — outside one — dropped by the hardware (capacity, replaced by a new fill). */
  dropped(e: CachedEntry): void;
  /** An invalidation takes effect (strict: applied, or completed by a CMD_SYNC; permissive: consumed), or the runner evicts. */
  removing(cause: RemovalCause): void;
  removed(cause: RemovalCause): void;
}
