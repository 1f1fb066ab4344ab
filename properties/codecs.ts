/**
 * io-ts codecs for operations and machine descriptions, so files written by people or by old
 * versions of the generators fail with the path of the bad field instead of a stack trace.
 */
import { isLeft } from 'fp-ts/lib/Either.js';
import * as t from 'io-ts';
import { GRANULE_4K, kvmStage2StartLevel, levelShift } from '../impl/arch/granule.js';
import { SMMU_FRAME_SIZE } from '../impl/arch/smmu/registers.js';
import { DEFAULT_FEATURES, featureErrors } from '../impl/hw/smmu/features.js';
import { type Operation } from '../model/index.js';
import { type MachineConfig } from './machine.js';
import { SCHEDULED_KINDS, type ScheduledHardware, isScheduledHardware } from './dma.js';
import { type Step } from './runner.js';

/** A u64 register value carried as a JSON number: an integer in [0, 2^64). */
const U64Number = new t.Type<number, number, unknown>(
  'u64',
  (u): u is number => typeof u === 'number' && Number.isInteger(u) && u >= 0 && u < 2 ** 64,
  (u, c) => (typeof u === 'number' && Number.isInteger(u) && u >= 0 && u < 2 ** 64 ? t.success(u) : t.failure(u, c, 'an integer in [0, 2^64)')),
  t.identity,
);

/** A value as JSON for a message: at most 80 characters, never a stack overflow. */
export function shortJson(value: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    text = undefined;
  }
  if (text === undefined) return value === null || typeof value !== 'object' ? String(value) : Array.isArray(value) ? '(an array)' : '(an object)';
  return text.length <= 80 ? text : `${text.slice(0, 77)}...`;
}

/**
 * `inner` (a t.strict or an intersection of t.strict and t.partial) that refuses fields other
 * than `keys` instead of dropping them, so a misspelt field is an error naming it.
 */
class ClosedType<C extends t.Any> extends t.Type<t.TypeOf<C>, t.OutputOf<C>, unknown> {
  readonly _tag = 'ClosedType' as const;
  constructor(readonly inner: C, keys: readonly string[]) {
    super(
      inner.name,
      (u): u is t.TypeOf<C> => inner.is(u),
      (u, c) => {
        if (typeof u === 'object' && u !== null && !Array.isArray(u)) {
          for (const key of Object.keys(u)) {
            if (keys.includes(key)) continue;
            const actual = (u as Record<string, unknown>)[key];
            // The empty-keyed entry keeps the field in the path (formatErrors drops intersection member indices).
            return t.failure(actual, [...c, { key: '', type: t.unknown, actual: u }, { key, type: t.unknown, actual }], `no field "${key}" here (the fields are ${keys.join(', ')})`);
          }
        }
        return inner.validate(u, c) as t.Validation<t.TypeOf<C>>;
      },
      (a) => inner.encode(a) as t.OutputOf<C>,
    );
  }
}

function closed<C extends t.Any>(inner: C, keys: readonly string[]): ClosedType<C> {
  return new ClosedType(inner, keys);
}

/** The field names of a t.strict or t.partial codec. */
function propsOf(codec: t.Any): string[] {
  const c = codec as unknown as { props?: t.Props; type?: { props?: t.Props } };
  return Object.keys(c.props ?? c.type?.props ?? {});
}

/** t.intersection([t.strict(required), t.partial(optional)]), closed to other fields. */
function closedIntersection<A extends t.Mixed, B extends t.Mixed>(members: [A, B]) {
  return closed(t.intersection(members), members.flatMap(propsOf));
}

/** t.partial(props), closed to other fields. */
function closedPartial<P extends t.Props>(props: P) {
  return closed(t.partial(props), Object.keys(props));
}

const op = <K extends string, P extends t.Props>(kind: K, props: P) => closed(t.strict({ kind: t.literal(kind), ...props }), ['kind', ...Object.keys(props)]);
const opWith = <K extends string, P extends t.Props, O extends t.Props>(kind: K, props: P, optional: O) =>
  closed(t.intersection([t.type({ kind: t.literal(kind), ...props }), t.partial(optional)]), ['kind', ...Object.keys(props), ...Object.keys(optional)]);

/** The size of a trapped access: `BIT(ESR.SAS)` bytes. */
const AccessSize = t.union([t.literal(1), t.literal(2), t.literal(4), t.literal(8)]);

/** One codec per operation kind, so an error names the field of the kind the file meant. */
const OPERATION_CODECS = {
  host_share_hyp: op('host_share_hyp', { pfn: U64Number }),
  host_unshare_hyp: op('host_unshare_hyp', { pfn: U64Number }),
  host_donate_hyp: op('host_donate_hyp', { pfn: U64Number, nrPages: U64Number }),
  hyp_donate_host: op('hyp_donate_host', { pfn: U64Number, nrPages: U64Number }),
  hyp_pin_shared_mem: op('hyp_pin_shared_mem', { pfn: U64Number, nrPages: U64Number }),
  hyp_unpin_shared_mem: op('hyp_unpin_shared_mem', { pfn: U64Number, nrPages: U64Number }),
  host_share_ffa: op('host_share_ffa', { pfn: U64Number, nrPages: U64Number }),
  host_unshare_ffa: op('host_unshare_ffa', { pfn: U64Number, nrPages: U64Number }),
  init_vm: op('init_vm', { vm: U64Number, protected: t.boolean }),
  teardown_vm: op('teardown_vm', { vm: U64Number }),
  host_share_guest: op('host_share_guest', { pfn: U64Number, gfn: U64Number, nrPages: U64Number, vm: U64Number, prot: t.string }),
  host_unshare_guest: op('host_unshare_guest', { gfn: U64Number, nrPages: U64Number, vm: U64Number }),
  host_relax_perms_guest: op('host_relax_perms_guest', { gfn: U64Number, vm: U64Number, prot: t.string }),
  host_wrprotect_guest: op('host_wrprotect_guest', { gfn: U64Number, nrPages: U64Number, vm: U64Number }),
  host_donate_guest: op('host_donate_guest', { pfn: U64Number, gfn: U64Number, vm: U64Number }),
  host_reclaim_page_guest: op('host_reclaim_page_guest', { gfn: U64Number, vm: U64Number }),
  host_force_reclaim_page_guest: op('host_force_reclaim_page_guest', { pfn: U64Number }),
  guest_share_host: op('guest_share_host', { vm: U64Number, gfn: U64Number }),
  guest_unshare_host: op('guest_unshare_host', { vm: U64Number, gfn: U64Number }),
  host_donate_hyp_mmio: op('host_donate_hyp_mmio', { pfn: U64Number }),
  hyp_donate_host_mmio: op('hyp_donate_host_mmio', { pfn: U64Number }),
  host_access: op('host_access', { addr: U64Number, access: t.union([t.literal('read'), t.literal('write'), t.literal('exec')]) }),
} as const;

const U32Number = new t.Type<number, number, unknown>(
  'u32',
  (u): u is number => typeof u === 'number' && Number.isInteger(u) && u >= 0 && u < 2 ** 32,
  (u, c) => (typeof u === 'number' && Number.isInteger(u) && u >= 0 && u < 2 ** 32 ? t.success(u) : t.failure(u, c, 'an integer in [0, 2^32)')),
  t.identity,
);
const DmaAccessCodec = t.union([t.literal('read'), t.literal('write')]);
/** Commands in one host batch: 1 up to the host queue's 64 entries. */
const BatchCount = new t.Type<number, number, unknown>(
  'batch count',
  (u): u is number => typeof u === 'number' && Number.isInteger(u) && u >= 1 && u <= 64,
  (u, c) => (typeof u === 'number' && Number.isInteger(u) && u >= 1 && u <= 64 ? t.success(u) : t.failure(u, c, 'an integer in [1, 64]')),
  t.identity,
);
const Words4 = t.tuple([U32Number, U32Number, U32Number, U32Number]);
/** Pages of one host DMA map or unmap: 1 up to a 2 MiB block's 512 (the host's tables are a 32-page pool). */
const DomainPages = new t.Type<number, number, unknown>(
  'domain page count',
  (u): u is number => typeof u === 'number' && Number.isInteger(u) && u >= 1 && u <= 512,
  (u, c) => (typeof u === 'number' && Number.isInteger(u) && u >= 1 && u <= 512 ? t.success(u) : t.failure(u, c, 'an integer in [1, 512]')),
  t.identity,
);

/** Hardware and host-SMMU steps (properties/dma.ts), one codec per kind. */
const HARDWARE_CODECS = {
  dma: op('dma', { sid: U32Number, addr: U64Number, access: DmaAccessCodec }),
  ats_translate: op('ats_translate', { sid: U32Number, addr: U64Number }),
  dma_translated: op('dma_translated', { sid: U32Number, addr: U64Number, access: DmaAccessCodec }),
  dma_forged_translated: op('dma_forged_translated', { sid: U32Number, pa: U64Number, access: DmaAccessCodec }),
  smmu_speculative_fill: op('smmu_speculative_fill', { smmu: U32Number, sid: U32Number, addr: U64Number }),
  smmu_evict: op('smmu_evict', { smmu: U32Number, cache: t.union([t.literal('tlb'), t.literal('walk'), t.literal('config'), t.literal('all')]), index: U32Number }),
  smmu_consume: op('smmu_consume', { smmu: U32Number }),
  host_attach_identity: op('host_attach_identity', { smmu: U32Number, sid: U32Number }),
  host_mmio_write: opWith('host_mmio_write', { smmu: U32Number, offset: U32Number, value: U32Number }, { size: AccessSize, valueHi: U32Number }),
  host_mmio_read: opWith('host_mmio_read', { smmu: U32Number, offset: U32Number }, { size: AccessSize }),
  host_write_ste: op('host_write_ste', { smmu: U32Number, sid: U32Number, words: Words4 }),
  host_write_cmd: opWith('host_write_cmd', { smmu: U32Number, words: Words4 }, { count: BatchCount }),
  host_domain_attach: op('host_domain_attach', { smmu: U32Number, sid: U32Number }),
  host_domain_detach: op('host_domain_detach', { smmu: U32Number, sid: U32Number }),
  host_domain_map: op('host_domain_map', { smmu: U32Number, sid: U32Number, iova: U64Number, pa: U64Number, nrPages: DomainPages, write: t.boolean }),
  host_domain_unmap: op('host_domain_unmap', { smmu: U32Number, sid: U32Number, iova: U64Number, nrPages: DomainPages }),
} as const;

/** Every step kind a file may name (ownership operations, hardware and host-SMMU steps). */
export function stepKinds(): string[] {
  return [...Object.keys(OPERATION_CODECS), ...Object.keys(HARDWARE_CODECS)];
}

export const OperationCodec = t.union(Object.values(OPERATION_CODECS) as unknown as [t.Mixed, t.Mixed, ...t.Mixed[]]);

const PageAligned = new t.Type<number, number, unknown>(
  'page-aligned address',
  (u): u is number => typeof u === 'number' && Number.isSafeInteger(u) && u >= 0 && u % 4096 === 0,
  (u, c) => (typeof u === 'number' && Number.isSafeInteger(u) && u >= 0 && u % 4096 === 0 ? t.success(u) : t.failure(u, c, 'a non-negative multiple of 4096')),
  t.identity,
);

const int = (name: string, lo: number, hi: number) =>
  new t.Type<number, number, unknown>(
    name,
    (u): u is number => typeof u === 'number' && Number.isInteger(u) && u >= lo && u <= hi,
    (u, c) => (typeof u === 'number' && Number.isInteger(u) && u >= lo && u <= hi ? t.success(u) : t.failure(u, c, `an integer in [${lo}, ${hi}]`)),
    t.identity,
  );

/**
 * SMMU features (impl/hw/smmu/features.ts): the JSON type of each field here, the architectural
 * ranges in featureErrors.
 */
const FEATURE_CODECS: t.Props = Object.fromEntries(
  Object.entries(DEFAULT_FEATURES).map(([key, value]) => [
    key,
    key === 'granules'
      ? t.array(t.union([t.literal('4K'), t.literal('16K'), t.literal('64K')]))
      : key === 'iidr'
        ? closedIntersection([t.strict({ productId: int('productId', 0, 0xfff), variant: int('variant', 0, 15), revision: int('revision', 0, 15), implementer: int('implementer', 0, 0xfff) }), t.partial({})])
        : typeof value === 'boolean'
          ? t.boolean
          : int(key, 0, 1 << 20),
  ]),
);

const FeaturesCodec = closedPartial(FEATURE_CODECS);

const MAX_DEVICES = 64;
const MAX_REGIONS = 64;

const SmmuConfigCodec = closedIntersection([
  t.strict({
    base: PageAligned,
    devices: t.array(closedIntersection([t.strict({ sid: U32Number, ats: t.boolean }), t.partial({})])),
    hostPages: t.tuple([PageAligned, PageAligned]),
  }),
  t.partial({
    // Hardware features: their JSON types here, their architectural ranges in featureErrors.
    features: FeaturesCodec,
    mode: t.union([t.literal('strict'), t.literal('permissive')]),
    driver: closedPartial({
      hideAts: t.boolean,
      atcInvalidation: t.boolean,
      invalidation: t.union([t.literal('range'), t.literal('vmid')]),
      idmapMemoryBlocks: t.boolean,
      dmaStage2: t.union([t.literal('shadow-idmap'), t.literal('host-stage2')]),
      prepopulateHostStage2: t.boolean,
      hookPlacement: t.union([t.literal('set-owner-only'), t.literal('every-owner-change')]),
      rejectUnsupportedCommands: t.boolean,
      dropFilteredCommands: t.boolean,
      refuseBadRegisterAccess: t.boolean,
      writeBackSyncConversion: t.boolean,
      rejectIrqCfg: t.boolean,
      linuxHitlessWriter: t.boolean,
      invalidateWhileDisabled: t.boolean,
      forceAtsCheck: t.boolean,
      noTlbiNhAfterS2: t.boolean,
    }),
    hookPlacement: t.union([t.literal('set-owner-only'), t.literal('every-owner-change')]),
  }),
]);

export const MachineConfigCodec = closedIntersection([
  t.strict({
    physShift: t.number,
    memory: t.array(closedIntersection([t.strict({ base: PageAligned, size: PageAligned }), t.partial({ nomap: t.boolean })])),
    poolPages: t.number,
    maxVms: t.number,
    vmStructPages: t.number,
  }),
  t.partial({ hostS2PoolPages: t.number, smmu: SmmuConfigCodec }),
]);

/** Formats io-ts errors as "path.to.field: expected X, got Y" lines. */
export function formatErrors(errors: t.Errors): string[] {
  return errors.map((e) => {
    // Intersections and unions (closed or not) add their member index to the context: not part of the path.
    const tag = (type: unknown): string | undefined => {
      const x = type as { _tag?: string; inner?: unknown } | undefined;
      return x?._tag === 'ClosedType' ? tag(x.inner) : x?._tag;
    };
    const path = e.context
      .filter((c, i) => {
        const parent = tag(e.context[i - 1]?.type);
        return c.key !== '' && parent !== 'IntersectionType' && parent !== 'UnionType';
      })
      .map((c) => c.key)
      .join('.');
    const expected = e.message ?? e.context[e.context.length - 1]?.type.name ?? 'a valid value';
    return `${path === '' ? '(root)' : path}: expected ${expected}, got ${shortJson(e.value)}`;
  });
}

export type Decoded<T> = { ok: true; value: T } | { ok: false; errors: string[] };

export function decodeWith<A>(codec: t.Type<A, unknown, unknown>, input: unknown): Decoded<A> {
  const r = codec.decode(input);
  if (isLeft(r)) {
    // A union reports every branch; keep the errors of the branch whose kind matched, if any.
    const errors = formatErrors(r.left);
    return { ok: false, errors: [...new Set(errors)].slice(0, 8) };
  }
  return { ok: true, value: r.right };
}

function decodeTagged<A>(codecs: Record<string, t.Mixed>, input: unknown, path: string): Decoded<A> {
  const at = (field: string) => (path === '' ? field : `${path}.${field}`);
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return { ok: false, errors: [`${path === '' ? '(root)' : path}: expected an operation object, got ${shortJson(input)}`] };
  const kind = (input as { kind?: unknown }).kind;
  // Own properties only: "constructor" or "toString" is not a kind.
  const codec = typeof kind === 'string' && Object.hasOwn(codecs, kind) ? codecs[kind] : undefined;
  if (codec === undefined) return { ok: false, errors: [`${at('kind')}: expected one of ${Object.keys(codecs).join(', ')}, got ${shortJson(kind)}`] };
  const r = decodeWith(codec as t.Type<A, unknown, unknown>, input);
  return r.ok ? r : { ok: false, errors: r.errors.map((e) => (path === '' ? e : `${path}.${e}`)) };
}

/** An ownership operation (the model's). */
export function decodeOperation(input: unknown, path = ''): Decoded<Operation> {
  return decodeTagged<Operation>(OPERATION_CODECS, input, path);
}

/** An ownership operation or a hardware / host-SMMU step. */
export function decodeStep(input: unknown, path = ''): Decoded<Step> {
  return decodeTagged<Step>({ ...OPERATION_CODECS, ...HARDWARE_CODECS }, input, path);
}

/** At most this many operations (or scheduled actions) in a file: a replay of them takes minutes. */
export const MAX_OPERATIONS = 100_000;

/** Decodes an array of steps, naming the index of the first bad one. */
export function decodeOperations(input: unknown, path = 'operations'): Decoded<Step[]> {
  if (!Array.isArray(input)) return { ok: false, errors: [`${path}: expected an array of operations, got ${shortJson(input)}`] };
  if (input.length > MAX_OPERATIONS) return { ok: false, errors: [`${path}: at most ${MAX_OPERATIONS} entries, got ${input.length}`] };
  const out: Step[] = [];
  for (const [i, item] of input.entries()) {
    const r = decodeStep(item, `${path}.${i}`);
    if (!r.ok) return r;
    out.push(r.value);
  }
  return { ok: true, value: out };
}

/** A schedule (RunOptions.schedule): steps, each a hardware action that can run inside a step. */
export function decodeSchedule(input: unknown, path = 'schedule'): Decoded<ScheduledHardware[]> {
  const steps = decodeOperations(input, path);
  if (!steps.ok) return steps;
  const out: ScheduledHardware[] = [];
  for (const [i, step] of steps.value.entries()) {
    if (!isScheduledHardware(step)) return { ok: false, errors: [`${path}.${i}.kind: expected a hardware action that can run inside a step (${[...SCHEDULED_KINDS].join(', ')}), got ${shortJson(step.kind)}`] };
    out.push(step);
  }
  return { ok: true, value: out };
}

/** The largest PA size a machine may have (see machineError). */
export const MAX_PHYS_SHIFT = 47;

/** At most this much RAM in a machine (the vmemmap and the host stage-2 pool grow with it). */
export const MAX_MEMORY_BYTES = 2 ** 36;

/** Pages of the host stage-2 PGD (concatenated start-level tables) for a PA size. */
export function hostS2PgdPages(physShift: number): number {
  const start = kvmStage2StartLevel(GRANULE_4K, physShift);
  return Math.max(1, Math.ceil(2 ** (physShift - levelShift(GRANULE_4K, start)) / 512));
}

/**
 * The smallest host stage-2 pool a machine boots with and can run on: the PGD, and one table
 * per level below it twice over — the walk to the SMMU frame mapped at boot and the walk to the
 * first page the host faults in.
 */
export function minHostS2PoolPages(physShift: number): number {
  return hostS2PgdPages(physShift) + 2 * (3 - kvmStage2StartLevel(GRANULE_4K, physShift));
}

const hex = (n: number) => `0x${n.toString(16)}`;

/**
 * Consistency of a machine that has the right shape: regions, pools, the SMMU frame in an MMIO
 * gap, its devices and host pages, every feature in its architectural range. Checked before
 * anything is built, so a bad machine is a message, never a half-built system.
 */
function machineError(m: MachineConfig): string | undefined {
  // The hypervisor's own memory sits just above 2^physShift (impl/system.ts) and 4K-granule
  // tables output 48-bit addresses: 2^48 itself is out of reach.
  if (!Number.isInteger(m.physShift) || m.physShift < 32 || m.physShift > MAX_PHYS_SHIFT) return `physShift: expected an integer in [32, ${MAX_PHYS_SHIFT}] (the hypervisor's memory sits just above 2^physShift, below 2^48), got ${m.physShift}`;
  const limit = 2 ** m.physShift;
  if (m.memory.length === 0 || m.memory.length > MAX_REGIONS) return `memory: expected 1 to ${MAX_REGIONS} regions, got ${m.memory.length}`;
  let end = 0;
  let total = 0;
  for (const [i, region] of m.memory.entries()) {
    if (region.size === 0) return `memory.${i}.size: expected a non-empty region, got 0`;
    if (region.base < end) return `memory.${i}.base: regions must be sorted and must not overlap (the previous region ends at ${hex(end)}), got ${hex(region.base)}`;
    if (region.base + region.size > limit) return `memory.${i}: the region [${hex(region.base)}, ${hex(region.base + region.size)}) ends above 2^physShift (${hex(limit)})`;
    end = region.base + region.size;
    total += region.size;
  }
  if (total > MAX_MEMORY_BYTES) return `memory: at most ${MAX_MEMORY_BYTES / 2 ** 30} GiB of RAM in all (the vmemmap has an entry per page), got ${(total / 2 ** 30).toFixed(1)} GiB`;
  for (const key of ['poolPages', 'maxVms', 'vmStructPages'] as const) {
    if (!Number.isSafeInteger(m[key]) || m[key] < 0 || m[key] > 1 << 20) return `${key}: expected an integer in [0, 2^20], got ${m[key]}`;
  }
  const s2 = m.hostS2PoolPages;
  const s2min = minHostS2PoolPages(m.physShift);
  if (s2 !== undefined && (!Number.isSafeInteger(s2) || s2 < s2min || s2 > 1 << 20)) {
    return `hostS2PoolPages: expected an integer in [${s2min}, 2^20] (the PGD takes ${hostS2PgdPages(m.physShift)} and the first walks ${s2min - hostS2PgdPages(m.physShift)}), got ${s2}`;
  }
  const smmu = m.smmu;
  if (smmu === undefined) return undefined;
  if (smmu.base % 0x1_0000 !== 0) return `smmu.base: expected a multiple of 64 KiB, got ${hex(smmu.base)}`;
  const frameEnd = smmu.base + SMMU_FRAME_SIZE;
  if (frameEnd > limit) return `smmu.base: the SMMU frame [${hex(smmu.base)}, ${hex(frameEnd)}) must lie below 2^physShift (${hex(limit)})`;
  for (const [i, region] of m.memory.entries()) {
    if (smmu.base < region.base + region.size && region.base < frameEnd) return `smmu.base: the SMMU frame [${hex(smmu.base)}, ${hex(frameEnd)}) overlaps memory.${i}: it must lie in an MMIO gap`;
  }
  const features = featureErrors(smmu.features ?? {});
  if (features.length > 0) return `smmu.features.${features[0]?.field}: ${features[0]?.message}`;
  const oasBits = smmu.features?.oasBits ?? DEFAULT_FEATURES.oasBits;
  if (oasBits <= m.physShift) return `smmu.features.oasBits: the SMMU must reach the hypervisor's memory just above 2^physShift (its stream table, queues and idmap tables): expected more than physShift (${m.physShift}), got ${oasBits}`;
  const sidBits = smmu.features?.sidBits ?? DEFAULT_FEATURES.sidBits;
  if (smmu.devices.length === 0 || smmu.devices.length > MAX_DEVICES) return `smmu.devices: expected 1 to ${MAX_DEVICES} devices, got ${smmu.devices.length}`;
  const seen = new Set<number>();
  for (const [i, d] of smmu.devices.entries()) {
    // The host driver's linear stream table is one page: 64 STEs.
    if (d.sid >= 64 || d.sid >= 2 ** sidBits) return `smmu.devices.${i}.sid: expected a stream ID below ${Math.min(64, 2 ** sidBits)} (the host driver's one-page stream table${sidBits < 6 ? ', and SIDSIZE' : ''}), got ${d.sid}`;
    if (seen.has(d.sid)) return `smmu.devices.${i}.sid: stream ID ${d.sid} given twice`;
    seen.add(d.sid);
  }
  for (const [i, page] of smmu.hostPages.entries()) {
    if (!m.memory.some((r) => r.nomap !== true && page >= r.base && page + 4096 <= r.base + r.size)) return `smmu.hostPages.${i}: expected a page of RAM the host owns (not NOMAP), got ${hex(page)}`;
  }
  if (smmu.hostPages[0] === smmu.hostPages[1]) return 'smmu.hostPages: expected two different pages (command queue, stream table)';
  return undefined;
}

export function decodeMachine(input: unknown): Decoded<MachineConfig> {
  const r = decodeWith(MachineConfigCodec as unknown as t.Type<MachineConfig, unknown, unknown>, input);
  if (!r.ok) return r;
  const error = machineError(r.value);
  return error === undefined ? r : { ok: false, errors: [error] };
}
