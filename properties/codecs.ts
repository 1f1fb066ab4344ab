/**
 * io-ts codecs for operations and machine descriptions, so files written by people or by old
 * versions of the generators fail with the path of the bad field instead of a stack trace.
 */
import { isLeft } from 'fp-ts/lib/Either.js';
import * as t from 'io-ts';
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

const op = <K extends string, P extends t.Props>(kind: K, props: P) => t.strict({ kind: t.literal(kind), ...props });
const opWith = <K extends string, P extends t.Props, O extends t.Props>(kind: K, props: P, optional: O) => t.exact(t.intersection([t.type({ kind: t.literal(kind), ...props }), t.partial(optional)]));

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
const Words4 = t.tuple([U32Number, U32Number, U32Number, U32Number]);

/** Hardware and host-SMMU steps (properties/dma.ts), one codec per kind. */
const HARDWARE_CODECS = {
  dma: op('dma', { sid: U32Number, addr: U64Number, access: DmaAccessCodec }),
  ats_translate: op('ats_translate', { sid: U32Number, addr: U64Number }),
  dma_translated: op('dma_translated', { sid: U32Number, addr: U64Number, access: DmaAccessCodec }),
  smmu_speculative_fill: op('smmu_speculative_fill', { smmu: U32Number, sid: U32Number, addr: U64Number }),
  smmu_evict: op('smmu_evict', { smmu: U32Number, cache: t.union([t.literal('tlb'), t.literal('walk'), t.literal('config'), t.literal('all')]), index: U32Number }),
  smmu_consume: op('smmu_consume', { smmu: U32Number }),
  host_attach_identity: op('host_attach_identity', { smmu: U32Number, sid: U32Number }),
  host_mmio_write: opWith('host_mmio_write', { smmu: U32Number, offset: U32Number, value: U32Number }, { size: AccessSize, valueHi: U32Number }),
  host_mmio_read: opWith('host_mmio_read', { smmu: U32Number, offset: U32Number }, { size: AccessSize }),
  host_write_ste: op('host_write_ste', { smmu: U32Number, sid: U32Number, words: Words4 }),
  host_write_cmd: op('host_write_cmd', { smmu: U32Number, words: Words4 }),
} as const;

export const OperationCodec = t.union(Object.values(OPERATION_CODECS) as unknown as [t.Mixed, t.Mixed, ...t.Mixed[]]);

const PageAligned = new t.Type<number, number, unknown>(
  'page-aligned address',
  (u): u is number => typeof u === 'number' && Number.isSafeInteger(u) && u >= 0 && u % 4096 === 0,
  (u, c) => (typeof u === 'number' && Number.isSafeInteger(u) && u >= 0 && u % 4096 === 0 ? t.success(u) : t.failure(u, c, 'a non-negative multiple of 4096')),
  t.identity,
);

const SmmuConfigCodec = t.intersection([
  t.strict({
    base: PageAligned,
    devices: t.array(t.strict({ sid: U32Number, ats: t.boolean })),
    hostPages: t.tuple([PageAligned, PageAligned]),
  }),
  t.partial({
    // Hardware features are checked by the SMMU model itself (resolveFeatures).
    features: t.UnknownRecord,
    mode: t.union([t.literal('strict'), t.literal('permissive')]),
    driver: t.partial({
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
    }),
    hookPlacement: t.union([t.literal('set-owner-only'), t.literal('every-owner-change')]),
  }),
]);

export const MachineConfigCodec = t.intersection([
  t.strict({
    physShift: t.number,
    memory: t.array(t.intersection([t.strict({ base: PageAligned, size: PageAligned }), t.partial({ nomap: t.boolean })])),
    poolPages: t.number,
    maxVms: t.number,
    vmStructPages: t.number,
  }),
  t.partial({ hostS2PoolPages: t.number, smmu: SmmuConfigCodec }),
]);

/** Formats io-ts errors as "path.to.field: expected X, got Y" lines. */
export function formatErrors(errors: t.Errors): string[] {
  return errors.map((e) => {
    // Intersections and unions add their member index to the context: not part of the path.
    const path = e.context
      .filter((c, i) => {
        const parent = e.context[i - 1]?.type as { _tag?: string } | undefined;
        return c.key !== '' && parent?._tag !== 'IntersectionType' && parent?._tag !== 'UnionType';
      })
      .map((c) => c.key)
      .join('.');
    const expected = e.message ?? e.context[e.context.length - 1]?.type.name ?? 'a valid value';
    return `${path === '' ? '(root)' : path}: expected ${expected}, got ${JSON.stringify(e.value)}`;
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
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return { ok: false, errors: [`${path === '' ? '(root)' : path}: expected an operation object, got ${JSON.stringify(input)}`] };
  const kind = (input as { kind?: unknown }).kind;
  const codec = typeof kind === 'string' ? codecs[kind] : undefined;
  if (codec === undefined) return { ok: false, errors: [`${at('kind')}: expected one of ${Object.keys(codecs).join(', ')}, got ${JSON.stringify(kind)}`] };
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

/** Decodes an array of steps, naming the index of the first bad one. */
export function decodeOperations(input: unknown, path = 'operations'): Decoded<Step[]> {
  if (!Array.isArray(input)) return { ok: false, errors: [`${path}: expected an array of operations, got ${JSON.stringify(input)?.slice(0, 80)}`] };
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
    if (!isScheduledHardware(step)) return { ok: false, errors: [`${path}.${i}.kind: expected a hardware action that can run inside a step (${[...SCHEDULED_KINDS].join(', ')}), got ${JSON.stringify(step.kind)}`] };
    out.push(step);
  }
  return { ok: true, value: out };
}

export function decodeMachine(input: unknown): Decoded<MachineConfig> {
  const r = decodeWith(MachineConfigCodec as unknown as t.Type<MachineConfig, unknown, unknown>, input);
  if (!r.ok) return r;
  const m = r.value;
  if (!Number.isInteger(m.physShift) || m.physShift < 32 || m.physShift > 48) return { ok: false, errors: [`physShift: expected an integer in [32, 48], got ${m.physShift}`] };
  let end = 0;
  for (const [i, region] of m.memory.entries()) {
    if (region.size === 0 || region.base < end || region.base + region.size > 2 ** m.physShift) {
      return { ok: false, errors: [`memory.${i}: regions must be non-empty, sorted, non-overlapping and below 2^physShift`] };
    }
    end = region.base + region.size;
  }
  for (const key of ['poolPages', 'maxVms', 'vmStructPages'] as const) {
    if (!Number.isSafeInteger(m[key]) || m[key] < 0 || m[key] > 1 << 20) return { ok: false, errors: [`${key}: expected an integer in [0, 2^20], got ${m[key]}`] };
  }
  // The PGD alone takes a page: an empty pool cannot boot.
  const s2 = m.hostS2PoolPages;
  if (s2 !== undefined && (!Number.isSafeInteger(s2) || s2 < 1 || s2 > 1 << 20)) return { ok: false, errors: [`hostS2PoolPages: expected an integer in [1, 2^20], got ${s2}`] };
  return r;
}
