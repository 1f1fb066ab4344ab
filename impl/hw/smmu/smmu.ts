/**
 * An SMMUv3 (stage-2 translation, Non-secure) that is as adversarial as the architecture allows
 * (ARCHITECTURE §5; smmuv3-arch.md §3.3, §6, §7.5), or — in `permissive` mode — as forgiving as
 * QEMU's emulator (§7).
 *
 * The runner drives it in steps: `consumeOneCommand`, `speculativeFill`, `evict`,
 * `applyPendingInvalidation`, and transactions (`translate`, ATS requests, translated accesses)
 * issued by devices. Everything it returns is plain data. Nothing here throws for values the host
 * or a device controls: register writes, table and queue contents, StreamIDs and addresses turn
 * into events, command errors, global errors or aborts.
 *
 * Strict-mode rules, each from the reference:
 * - Configuration, TLB and walk caches keep every entry until an invalidation that is required to
 *   remove it is applied (§6.1). Config caching includes V = 0 / ILLEGAL STEs and Span = 0 L1STDs.
 * - TLBI/CFGI/ATC_INV are recorded as pending when consumed (§3.3 "Completion"). The runner may
 *   apply each one at any time (`applyPendingInvalidation`); a CMD_SYNC applies every one still
 *   pending before it completes. Pending invalidations may be applied in any order: the spec gives
 *   them no ordering without an intervening CMD_SYNC (SPEC 4.7.3).
 * - `speculativeFill` may cache any translation reachable now through the configuration the SMMU
 *   would use (a cached STE first, else the one in memory) and through cached table descriptors,
 *   while SMMUEN = 1 (§6.1). Choice for fills while an invalidation is pending: they walk the
 *   current tables (and the walk cache), and applying the invalidation later removes every
 *   matching entry present at that moment, including ones filled after the TLBI was consumed.
 *   That is exactly the behaviour of hardware in which the TLBI takes effect at the moment the
 *   runner applies it — a legal point between consumption and CMD_SYNC completion — so entries
 *   that reflect the current tables are never spuriously kept, and entries derived from a stale
 *   walk-cache entry the TLBI must remove cannot survive the CMD_SYNC.
 * - Several TLB entries may translate one address (fills after a table change without
 *   invalidation create them). With BBML0/1 a lookup that finds more than one raises
 *   F_TLB_CONFLICT (§6.2); with BBML2 the oldest is used. With BBML1 a block descriptor with nT
 *   set is never cached, which is how software avoids the conflict.
 */
import { match } from 'ts-pattern';
import { GRANULES, type GranuleKind, LAST_LEVEL } from '../../arch/granule.js';
import { ACCESS_OK, type MmioHandler, type PhysicalMemory, type AccessStatus, type Word64 } from '../../arch/physical-memory.js';
import {
  type Command,
  type CommandFeatures,
  type CommandOf,
  type DecodedCommand,
  CS_IRQ,
  CS_SEV,
  decodeCommand,
  checkCommand,
  CMD_BYTES,
} from '../../arch/smmu/commands.js';
import { CD_BYTES, type CdCheckFeatures, S1FMT_LINEAR, cdSplit, checkCd, decodeCd, decodeL1Cd } from '../../arch/smmu/cd.js';
import { EVENT_CLASS_CD, EVENT_CLASS_IN, EVENT_CLASS_TT, type EventOf, type EventRecord } from '../../arch/smmu/events.js';
import { CERROR_ABT, CERROR_ATC_INV_SYNC, CERROR_ILL, GERROR_BIT, REG, type RegName, SMMU_FRAME_SIZE } from '../../arch/smmu/registers.js';
import { S1DSS_BYPASS, S1DSS_SSID0, type Ste, type SteCheckFeatures, type SteKind, l1stdL2Entries, l1stdSpanValid } from '../../arch/smmu/ste.js';
import { type U64, u64, u64ToHex } from '../../arch/u64.js';
import { type AtcInvalidation, type AtsEndpoint, type AtsResponse, atcInvalidationOf } from './ats.js';
import { type CacheObserver, type RemovalCause } from './cache-observer.js';
import { ConfigCache } from './config-cache.js';
import { EventQueue, type EventDelivery, type SmmuSignals, newSignals } from './event-queue.js';
import { SmmuWriteLog } from './write-log.js';
import { type SmmuFeatures, commandFeatures, idRegisterValues, resolveFeatures, steCheckFeatures } from './features.js';
import { permissiveTlbiS2Ipa, strictTlbiS2Ipa } from './invalidation.js';
import { RegisterFile } from './registers-file.js';
import {
  type L1CacheEntry,
  type S2Context,
  type SteCacheEntry,
  type StreamTableGeometry,
  L1STD_BYTES,
  makeL1Entry,
  makeSteEntry,
  readSteWords,
  streamTableGeometry,
} from './stream-table.js';
import { PERM_R, PERM_W, PICK_LARGEST, PICK_OLDEST, TranslationCaches, type TlbEntry, type VmidSpace, type WalkEntry } from './tlb.js';
import { SmmuWalker, WALK_ACCESS, WALK_ADDR_SIZE, WALK_EABT, WALK_OK, WALK_TRANSLATION, WalkOut } from './walk.js';
import { DESC_AF, descOutputAddress } from '../../arch/s2-descriptor.js';
import {
  type CdCacheEntry,
  type S1Context,
  S1Caches,
  type S1Space,
  type S1TlbEntry,
  type S1WalkEntry,
  makeS1Context,
  permissiveTlbiNhVa,
  strictTlbiNhVa,
  tlbiNhAsid,
  tlbiS1Vmid,
} from './nested.js';

export type SmmuMode = 'strict' | 'permissive';
export type DmaAccess = 'read' | 'write';

/** Which caches may be filled. All true by default; tests and benchmarks turn them off. */
export interface FillPolicy {
  readonly tlb: boolean;
  readonly walkCache: boolean;
  readonly config: boolean;
}

export interface SmmuOptions {
  /** Physical address of the 128 KiB register frame (pages 0 and 1); must lie in an MMIO region. */
  readonly base: number;
  readonly features?: Partial<SmmuFeatures>;
  readonly mode?: SmmuMode;
  readonly fills?: Partial<FillPolicy>;
}

// --- Translation results ---------------------------------------------------------------------

export const TR_OK = 0;
export const TR_ABORT = 1;

export const ABORT_REASONS = [
  'none',
  /** SMMUEN = 0 and GBPA.ABORT = 1: terminated, no event. */
  'gbpa_abort',
  /** Bypass (global or translated) of an address beyond the OAS: terminated, no event (§2.4, SPEC 3.9.1.1). */
  'oas',
  'bad_streamid',
  'ste_fetch',
  'bad_ste',
  /** Config 0b0xx: terminated without an event. */
  'ste_abort',
  /** Stage-1 (or nested) STE: decoded but stage-1 translation is not modelled. No event. */
  'stage1_unsupported',
  /** Input beyond IAS (S2-only) or OAS (bypass STE): stage-1 F_ADDR_SIZE. */
  'addr_size_s1',
  'translation',
  'addr_size',
  'access',
  'permission',
  'walk_eabt',
  'tlb_conflict',
  'transl_forbidden',
  /** S1CDMax ≠ 0 and S1DSS = terminate: non-substream traffic is F_STREAM_DISABLED. */
  'stream_disabled',
  /** CD 0 is ILLEGAL (V = 0, ...): C_BAD_CD. */
  'bad_cd',
  /** The CD or L1CD read aborted: F_CD_FETCH. */
  'cd_fetch',
  /** L1CD.V = 0 for SSID 0: C_BAD_SUBSTREAMID. */
  'bad_substreamid',
] as const;
export type AbortReason = Exclude<(typeof ABORT_REASONS)[number], 'none'>;

export const VIAS = ['tlb', 'walk', 'bypass', 'gbpa_bypass', 'ats_translated'] as const;
export type TranslationVia = (typeof VIAS)[number];

const R_GBPA_ABORT = 1;
const R_OAS = 2;
const R_BAD_STREAMID = 3;
const R_STE_FETCH = 4;
const R_BAD_STE = 5;
const R_STE_ABORT = 6;
const R_STAGE1 = 7;
const R_ADDR_SIZE_S1 = 8;
const R_TRANSLATION = 9;
const R_ADDR_SIZE = 10;
const R_ACCESS = 11;
const R_PERMISSION = 12;
const R_WALK_EABT = 13;
const R_TLB_CONFLICT = 14;
const R_TRANSL_FORBIDDEN = 15;
const R_STREAM_DISABLED = 16;
const R_BAD_CD = 17;
const R_CD_FETCH = 18;
const R_BAD_SUBSTREAMID = 19;
/** Stage-1 walk status: a stage-2 fault on a table access (details in s2Status / s2FaultIpa). */
const WALK_S2_FAULT = 16;
/** s2Resolve status: several stage-2 TLB entries matched with BBML0/1. */
const S2_CONFLICT = 17;
/** s2Resolve caller status: the stage-2 leaf lacks the needed permission. */
const S2_PERMISSION = 18;
/** Stage-1 descriptor bits (Armv8 VMSA): AP[2] (read-only) and nG. */
const S1_AP2_RO = 1 << 7;
const S1_NG = 1 << 11;

const VIA_TLB = 0;
const VIA_WALK = 1;
const VIA_BYPASS = 2;
const VIA_GBPA = 3;
const VIA_ATS = 4;

/**
 * In/out parameter of `translateInto`, reused by hot loops so that a translation allocates
 * nothing: the input address travels in `ipa` because a double argument above 2^31 would be
 * boxed at every call that is not inlined.
 */
export class TranslationResult {
  /** Input: the untranslated address (an IPA for stage-2-only streams); set to -1 when it is not a safe integer. */
  ipa = 0;
  status = TR_OK;
  pa = 0;
  /** Level of the translating entry; -1 for bypass. */
  level = -1;
  /** Index into VIAS when status is TR_OK. */
  via = 0;
  /** Index into ABORT_REASONS when status is TR_ABORT. */
  reason = 0;
}

export type TranslateOutcome =
  | { readonly kind: 'ok'; readonly pa: number; readonly via: TranslationVia; readonly level: number }
  | {
      readonly kind: 'abort';
      readonly reason: AbortReason;
      /** The event record the abort produced, if any. */
      readonly event: EventRecord | undefined;
      /** Whether the record was sent to the event queue (S2R, CR2.RECINVSID, REC_CFG_ATS allow it). */
      readonly recorded: boolean;
    };

// --- Introspection types ---------------------------------------------------------------------

export interface TlbEntryInfo {
  readonly vmid: number;
  readonly granule: GranuleKind;
  readonly level: number;
  /** First IPA translated and the block size. */
  readonly ipa: number;
  readonly size: number;
  /** Output address of `ipa`. */
  readonly pa: number;
  readonly read: boolean;
  readonly write: boolean;
  /** StreamID whose walk filled it (entries are tagged by VMID; any stream with that VMID hits it). */
  readonly sid: number;
  readonly seq: number;
}

export interface WalkCacheEntryInfo {
  readonly vmid: number;
  readonly granule: GranuleKind;
  /** Level of the cached table descriptor; it points to a table at level + 1 covering [ipa, ipa + size). */
  readonly level: number;
  readonly ipa: number;
  readonly size: number;
  readonly table: number;
  readonly sid: number;
  readonly seq: number;
}

export interface S1TlbEntryInfo {
  readonly vmid: number;
  /** The CD's ASID; `global` entries (nG = 0) match every ASID of the VMID. */
  readonly asid: number;
  readonly global: boolean;
  /** Stage-1 granule and level. */
  readonly granule: GranuleKind;
  readonly level: number;
  /** First VA translated, the entry size (min of the two stages' blocks), its IPA and PA. */
  readonly va: number;
  readonly size: number;
  readonly ipa: number;
  readonly pa: number;
  /** Combined permissions (both stages). */
  readonly read: boolean;
  readonly write: boolean;
  readonly nested: boolean;
  readonly sid: number;
  readonly seq: number;
}

export interface S1WalkCacheEntryInfo {
  readonly vmid: number;
  readonly asid: number;
  readonly granule: GranuleKind;
  readonly level: number;
  readonly va: number;
  readonly size: number;
  readonly table: number;
  readonly sid: number;
  readonly seq: number;
}

export type ConfigCacheEntryInfo =
  | {
      readonly kind: 'ste';
      readonly sid: number;
      /** What the SMMU does with it ('invalid' = V = 0 or ILLEGAL). */
      readonly steKind: SteKind;
      readonly illegal: string | undefined;
      readonly ste: Ste;
      readonly words: readonly string[];
      /** Stage-2 parameters for 's2'/'nested' STEs. */
      readonly s2: { readonly vmid: number; readonly ttb: number; readonly granule: GranuleKind; readonly startLevel: number; readonly iaBits: number } | undefined;
      readonly fetchAddr: number;
      readonly seq: number;
    }
  | {
      readonly kind: 'l1std';
      readonly l1Index: number;
      readonly sidBase: number;
      readonly sidCount: number;
      readonly span: number;
      readonly l2ptr: number;
      readonly raw: string;
      readonly fetchAddr: number;
      readonly seq: number;
    };

export interface PendingInvalidation {
  /** Consumption order. */
  readonly seq: number;
  readonly command: Command;
}

export interface RemovedCounts {
  readonly tlb: number;
  readonly walk: number;
  readonly config: number;
  /** ATS Invalidate Requests delivered / not completed by an endpoint. */
  readonly atcDelivered: number;
  readonly atcTimedOut: number;
}

export type ConsumeOutcome =
  | { readonly kind: 'idle'; readonly reason: 'disabled' | 'empty' | 'error_active' }
  | {
      readonly kind: 'consumed';
      /** Queue index the command was read from. */
      readonly index: number;
      readonly command: Command;
      /** pending: recorded for later; applied: took effect now (permissive, or CMD_SYNC); done: nothing to invalidate. */
      readonly effect: 'pending' | 'applied' | 'sync' | 'prefetch' | 'none';
    }
  | { readonly kind: 'error'; readonly index: number; readonly cerror: number; readonly reason: string };

/** An entry to evict: by index in the introspection order (fill order), or by predicate. */
export type EvictSelector =
  | { readonly cache: 'all' }
  | { readonly cache: 'tlb'; readonly select: number | ((e: TlbEntryInfo) => boolean) }
  | { readonly cache: 'walk'; readonly select: number | ((e: WalkCacheEntryInfo) => boolean) }
  | { readonly cache: 'config'; readonly select: number | ((e: ConfigCacheEntryInfo) => boolean) };

export interface SpeculativeFillOutcome {
  readonly filled: boolean;
  /** Where the configuration came from. */
  readonly config: 'cached' | 'fetched' | 'none';
  readonly tlb: TlbEntryInfo | undefined;
  readonly walkCacheAdded: number;
  readonly reason: string;
}

export interface EventLogEntry {
  readonly seq: number;
  readonly event: EventRecord;
  /** 'not_recorded': the event was suppressed (S2R = 0, RECINVSID = 0, ...) and never reached the queue. */
  readonly delivery: EventDelivery | 'not_recorded';
}

// --- Internal constants ----------------------------------------------------------------------

const CFG_OK = 0;
const CFG_BAD_STREAMID = 1;
const CFG_STE_FETCH = 2;

const CR2_RECINVSID = 1 << 1;
const CR2_REC_CFG_ATS = 1 << 3;
const IRQ_CTRL_GERROR = 1 << 0;
const GBPA_ABORT_BIT = 1 << 20;
const TWO_POW_52 = 2 ** 52;
const MAX_INPUT = Number.MAX_SAFE_INTEGER;
const EVENT_LOG_CAPACITY = 512;
/** QEMU's IOTLB holds 256 entries and is flushed entirely when full (§7.2). */
const QEMU_IOTLB_MAX = 256;
const GRANULE_KINDS: readonly GranuleKind[] = ['4K', '16K', '64K'];
const TLBI_RANGE_OPCODES = new Set([0x12, 0x13, 0x22, 0x23, 0x2a]);

function isInvalidation(cmd: Command): boolean {
  return cmd.kind.startsWith('TLBI_') || cmd.kind.startsWith('CFGI_') || cmd.kind === 'ATC_INV';
}

function fetchAddrField(addr: number): number {
  return (addr - (addr % 8)) % TWO_POW_52;
}

function inputU64(iova: number): U64 {
  if (!(iova >= 0 && iova <= MAX_INPUT)) return u64(0, 0);
  const v = Math.floor(iova);
  return u64(v % 0x1_0000_0000, Math.floor(v / 0x1_0000_0000));
}

export class Smmu implements MmioHandler {
  readonly base: number;
  readonly mode: SmmuMode;
  readonly features: SmmuFeatures;
  private readonly permissive: boolean;
  private readonly regs: RegisterFile;
  private readonly caches = new TranslationCaches();
  private readonly walker: SmmuWalker;
  private readonly config = new ConfigCache();
  private readonly evtq: EventQueue;
  private readonly signalCounts: SmmuSignals = newSignals();
  /** Every write the SMMU makes to memory (issue 12): drained by the checker. */
  readonly writes = new SmmuWriteLog();
  private readonly steFeatures: SteCheckFeatures;
  private readonly cmdFeatures: CommandFeatures;
  private readonly oasLimit: number;
  private readonly iasLimit: number;
  private readonly stuBytes: number;
  private readonly pick: number;
  private readonly conflicts: boolean;
  private fills: FillPolicy;
  private geometryCache: StreamTableGeometry | null = null;
  private pending: PendingInvalidation[] = [];
  private readonly endpoints = new Map<number, AtsEndpoint[]>();
  private atcTimedOut = false;
  private seq = 0;
  private commandSeq = 0;
  private eventSeq = 0;
  private draining = false;
  private readonly eventLogRing: EventLogEntry[] = [];
  private readonly scratch: Word64 = { lo: 0, hi: 0 };
  private readonly steWords: U64[] = [];
  private readonly wout = new WalkOut();
  private readonly result = new TranslationResult();
  private cfgEntry: SteCacheEntry | null = null;
  private cfgFetchAddr = 0;
  private cfgFromCache = false;
  private lastEvent: EventRecord | undefined = undefined;
  private lastRecorded = false;
  // Stage 1 and nesting (nested.ts).
  private readonly s1caches = new S1Caches();
  private readonly cdFeatures: CdCheckFeatures;
  private readonly w1 = new WalkOut();
  private readonly w2 = new WalkOut();
  private readonly s1Holder = { ipa: 0 };
  /** While set (speculative fills, walkUncached): events are neither recorded nor logged. */
  private silent = false;
  /** While set (walkUncached): no cache is looked up or filled, the CD is read from memory. */
  private uncached = false;
  /** Outputs of s2Resolve. */
  private s2Base = 0;
  private s2Size = 0;
  private s2Pa = 0;
  private s2Perms = 0;
  private s2Status = 0;
  private s2FaultIpa = 0;
  /** Outputs of walkS1: the stage-1 leaf's output (an IPA when nested), its block, permissions and nG. */
  private s1Out = 0;
  private s1Global = false;
  private cdEntry: CdCacheEntry | null = null;
  private cdFetchAddr = 0;
  private cacheObserver: CacheObserver | null = null;

  constructor(
    private readonly memory: PhysicalMemory,
    options: SmmuOptions,
  ) {
    this.base = options.base;
    this.mode = options.mode ?? 'strict';
    this.permissive = this.mode === 'permissive';
    this.features = resolveFeatures(options.features);
    this.fills = { tlb: true, walkCache: true, config: true, ...options.fills };
    const ids = idRegisterValues(this.features);
    this.regs = new RegisterFile(this.features, ids, {
      cr0Written: () => this.onCr0Written(),
      cmdqProdWritten: () => this.drainIfPermissive(),
      gerrorAcknowledged: () => this.drainIfPermissive(),
      strtabChanged: () => {
        this.geometryCache = null;
      },
    });
    this.steFeatures = steCheckFeatures(this.features);
    const g = this.features.granules;
    this.cdFeatures = {
      gran4k: g.includes('4K'),
      gran16k: g.includes('16K'),
      gran64k: g.includes('64K'),
      asid16: true,
      aarch64: true,
      ttendian: this.steFeatures.ttendian,
      stallModel: this.steFeatures.stallModel,
    };
    this.cmdFeatures = commandFeatures(this.features);
    this.oasLimit = 2 ** this.features.oasBits;
    // AArch64-only tables: IAS = OAS (§1.8).
    this.iasLimit = this.oasLimit;
    const smallest = GRANULES.find((g) => this.features.granules.includes(g.kind));
    this.stuBytes = smallest?.size ?? 4096;
    this.pick = this.permissive ? PICK_LARGEST : PICK_OLDEST;
    this.conflicts = !this.permissive && this.features.bbml < 2;
    this.walker = new SmmuWalker(memory, this.caches);
    this.evtq = new EventQueue(memory, this.regs, this.features.evtqLog2Max, this.oasLimit, this.features.msi, this.permissive, this.signalCounts, (bit) =>
      this.raiseGerror(bit),
      this.writes,
    );
    memory.registerMmio(this.base, SMMU_FRAME_SIZE, this);
  }

  // --- MMIO ------------------------------------------------------------------------------------

  read32(offset: number): number {
    return this.regs.read32(offset);
  }

  write32(offset: number, value: number): AccessStatus {
    this.regs.write32(offset, value);
    return ACCESS_OK;
  }

  /** Register value by name (tests and traces). */
  readRegister(name: RegName): number {
    return this.regs.read32(REG[name]);
  }

  writeRegister(name: RegName, value: number): void {
    this.regs.write32(REG[name], value);
  }

  setFillPolicy(policy: Partial<FillPolicy>): void {
    this.fills = { ...this.fills, ...policy };
  }

  /** Where the SMMU may write event records now (the event queue while enabled); undefined when disabled. */
  eventQueueSpan(): { readonly base: number; readonly bytes: number } | undefined {
    return this.evtq.span();
  }

  signals(): SmmuSignals {
    return { ...this.signalCounts };
  }

  private onCr0Written(): void {
    this.drainIfPermissive();
  }

  private geometry(): StreamTableGeometry {
    if (this.geometryCache === null) {
      this.geometryCache = streamTableGeometry(this.regs.strtabBase(), this.regs.strtabBaseCfg, this.features.sidBits, this.features.twoLevelStrtab);
    }
    return this.geometryCache;
  }

  private raiseGerror(bit: number): void {
    if (!this.regs.raiseGerror(bit)) return;
    if ((this.regs.irqCtrlAck & IRQ_CTRL_GERROR) === 0) return;
    const addr = this.regs.gerrorMsiAddr();
    if (this.features.msi && addr !== 0) {
      this.signalCounts.gerrorMsi++;
      // An aborted GERROR MSI is itself a global error, but raising it must not recurse.
      const pa = addr % this.oasLimit;
      if (this.memory.write32(pa, this.regs.gerrorIrqCfg1) !== ACCESS_OK) this.regs.raiseGerror(GERROR_BIT.MSI_GERROR_ABT_ERR);
      else this.writes.record(pa, 4, 'gerror_msi');
    } else {
      this.signalCounts.gerrorIrq++;
    }
  }

  // --- Events ----------------------------------------------------------------------------------

  private emit(ev: EventRecord, record: boolean): void {
    if (this.silent) return;
    this.lastEvent = ev;
    this.lastRecorded = record;
    const delivery = record ? this.evtq.write(ev) : 'not_recorded';
    this.eventLogRing.push({ seq: this.eventSeq++, event: ev, delivery });
    if (this.eventLogRing.length > EVENT_LOG_CAPACITY) this.eventLogRing.shift();
  }

  /** The most recent events the SMMU produced (recorded or suppressed), oldest first. */
  eventLog(): readonly EventLogEntry[] {
    return this.eventLogRing.slice();
  }

  private s2FaultEvent(kind: 'F_TRANSLATION' | 'F_ADDR_SIZE' | 'F_ACCESS' | 'F_PERMISSION', sid: number, iova: number, write: boolean, s2: boolean): EventRecord {
    const common = {
      streamId: sid >>> 0,
      ssv: false,
      substreamId: 0,
      stag: 0,
      stall: false,
      pnu: false,
      ind: false,
      rnw: !write,
      s2,
      eventClass: EVENT_CLASS_IN,
      nsipa: false,
      inputAddr: inputU64(iova),
      ipa: s2 ? (iova - (iova % 4096)) % TWO_POW_52 : 0,
    };
    return kind === 'F_PERMISSION' ? { kind, ...common, ttrnw: false } : { kind, ...common };
  }

  private abort(out: TranslationResult, reason: number): number {
    out.status = TR_ABORT;
    out.reason = reason;
    out.level = -1;
    return TR_ABORT;
  }

  private ok(out: TranslationResult, pa: number, via: number, level: number): number {
    out.status = TR_OK;
    out.pa = pa;
    out.via = via;
    out.level = level;
    return TR_OK;
  }

  // --- Configuration lookup -------------------------------------------------------------------

  private validSid(sid: number, limit: number): boolean {
    return sid >= 0 && sid < limit && Math.floor(sid) === sid;
  }

  /**
   * Fetches the STE for `sid` (through the L1STD cache for a 2-level table when `useL1Cache`).
   * Sets cfgEntry on success, cfgFetchAddr on a fetch abort. Caches what it fetched when `fill`.
   */
  private fetchConfig(sid: number, fill: boolean, useL1Cache: boolean): number {
    const g = this.geometry();
    if (!this.validSid(sid, g.sidLimit)) return CFG_BAD_STREAMID;
    let steAddr: number;
    if (!g.twoLevel) {
      steAddr = g.base + sid * 64;
    } else {
      const sidCount = 2 ** g.split;
      const l1Index = Math.floor(sid / sidCount);
      let l1: L1CacheEntry | undefined = useL1Cache ? this.config.l1.get(l1Index) : undefined;
      if (l1 !== undefined && !(sid >= l1.sidBase && sid < l1.sidBase + l1.sidCount)) l1 = undefined;
      if (l1 === undefined) {
        const l1Addr = g.base + l1Index * L1STD_BYTES;
        if (this.memory.load64(l1Addr, this.scratch) !== ACCESS_OK) {
          this.cfgFetchAddr = l1Addr;
          return CFG_STE_FETCH;
        }
        l1 = makeL1Entry(l1Index, g.split, this.scratch.lo, this.scratch.hi, l1Addr, this.seq++);
        // Permissive (QEMU) re-reads the L1STD on every configuration miss.
        if (fill && !this.permissive) this.config.putL1(l1Index, l1);
      }
      if (!l1stdSpanValid(l1.span, g.split)) return CFG_BAD_STREAMID;
      const l2Index = sid % sidCount;
      if (l2Index >= l1stdL2Entries(l1.span)) return CFG_BAD_STREAMID;
      steAddr = l1.l2ptr + l2Index * 64;
    }
    const abortAt = readSteWords(this.memory, steAddr, this.steWords, this.scratch);
    if (abortAt >= 0) {
      this.cfgFetchAddr = abortAt;
      return CFG_STE_FETCH;
    }
    const entry = makeSteEntry(sid, this.steWords.slice(), this.steFeatures, steAddr, this.seq++);
    if (fill && (!this.permissive || entry.kind !== 'invalid')) this.config.putSte(sid, entry);
    this.cfgEntry = entry;
    return CFG_OK;
  }

  /** The configuration the SMMU uses for `sid` now: cached, else fetched (and cached per policy). */
  private lookupConfig(sid: number, fill: boolean): number {
    const g = this.geometry();
    if (!this.validSid(sid, g.sidLimit)) return CFG_BAD_STREAMID;
    const cached = this.config.stes.get(sid);
    if (cached !== undefined) {
      this.cfgEntry = cached;
      this.cfgFromCache = true;
      return CFG_OK;
    }
    this.cfgFromCache = false;
    return this.fetchConfig(sid, fill, true);
  }

  /** Records the event for a configuration error; `ats` applies SMMU_CR2.REC_CFG_ATS (SPEC 3.9.1.2). */
  private configErrorEvent(status: number, sid: number, ats: boolean, translated = false): number {
    const cr2 = this.regs.cr2;
    const atsRecord = !ats || (cr2 & CR2_REC_CFG_ATS) !== 0;
    const header = { streamId: Math.max(0, Math.floor(sid)) >>> 0, ssv: false, substreamId: 0 };
    if (status === CFG_BAD_STREAMID) {
      // Translated transactions report it regardless of RECINVSID (SPEC 3.9.1.3).
      this.emit({ kind: 'C_BAD_STREAMID', ...header }, atsRecord && (translated || (cr2 & CR2_RECINVSID) !== 0));
      return R_BAD_STREAMID;
    }
    this.emit({ kind: 'F_STE_FETCH', ...header, reason: 0, gpcf: false, fetchAddr: fetchAddrField(this.cfgFetchAddr) }, atsRecord);
    return R_STE_FETCH;
  }

  private linkSpace(ctx: S2Context): VmidSpace {
    const space = this.caches.space(ctx.vmid, ctx.gIndex, ctx.spans);
    ctx.space = space;
    return space;
  }

  // --- Transactions ------------------------------------------------------------------------

  /**
   * Translates an untranslated transaction: caches used and filled as the fill policy allows,
   * events recorded. Allocation-free on TLB hits and on walks without fills.
   */
  translateInto(sid: number, write: boolean, out: TranslationResult): number {
    let iova = out.ipa;
    this.lastEvent = undefined;
    this.lastRecorded = false;
    const regs = this.regs;
    if (!regs.smmuen) {
      if ((regs.gbpa & GBPA_ABORT_BIT) !== 0) return this.abort(out, R_GBPA_ABORT);
      if (iova >= 0 && iova < this.oasLimit && Math.floor(iova) === iova) return this.ok(out, iova, VIA_GBPA, -1);
      return this.abort(out, R_OAS);
    }
    let entry = this.config.stes.get(sid);
    if (entry === undefined || !(sid < (this.geometryCache ?? this.geometry()).sidLimit)) {
      const status = this.lookupConfig(sid, this.fills.config);
      if (status !== CFG_OK) return this.abort(out, this.configErrorEvent(status, sid, false));
      entry = this.cfgEntry as SteCacheEntry;
    }
    if (!(iova >= 0 && iova <= MAX_INPUT && Math.floor(iova) === iova)) {
      iova = -1;
      out.ipa = -1;
    }
    switch (entry.kind) {
      case 's2':
        return this.translateS2(entry.s2 as S2Context, sid, write, out);
      case 'bypass':
        if (iova >= 0 && iova < this.oasLimit) return this.ok(out, iova, VIA_BYPASS, -1);
        this.emit(this.s2FaultEvent('F_ADDR_SIZE', sid, iova, write, false), true);
        return this.abort(out, R_ADDR_SIZE_S1);
      case 'abort':
        return this.abort(out, R_STE_ABORT);
      case 'invalid':
        this.emit({ kind: 'C_BAD_STE', streamId: sid >>> 0, ssv: false, substreamId: 0 }, true);
        return this.abort(out, R_BAD_STE);
      case 's1':
      case 'nested':
        return this.translateS1(entry, sid, write, out);
      default: {
        const impossible: never = entry.kind;
        return impossible;
      }
    }
  }

  private translateS2(ctx: S2Context, sid: number, write: boolean, out: TranslationResult): number {
    const iova = out.ipa;
    // Stage 1 is bypassed: an input beyond IAS is a stage-1 address size fault (§2.4). Choice:
    // always recorded, as no CD exists whose R bit could suppress it.
    if (iova < 0 || iova >= this.iasLimit) {
      this.emit(this.s2FaultEvent('F_ADDR_SIZE', sid, iova, write, false), true);
      return this.abort(out, R_ADDR_SIZE_S1);
    }
    if (iova >= ctx.ipaLimit) {
      this.emit(this.s2FaultEvent('F_TRANSLATION', sid, iova, write, true), ctx.record);
      return this.abort(out, R_TRANSLATION);
    }
    const space = ctx.space ?? this.linkSpace(ctx);
    const need = write ? PERM_W : PERM_R;
    const hit = this.caches.lookupTlb(space, out, this.pick);
    if (hit !== null) {
      if (this.conflicts && this.caches.hitCount > 1) return this.tlbConflict(sid, iova, write, out, true);
      if ((hit.perms & need) === 0) {
        this.emit(this.s2FaultEvent('F_PERMISSION', sid, iova, write, true), ctx.record);
        return this.abort(out, R_PERMISSION);
      }
      // Written field by field: passing the computed double to a helper would box it.
      out.status = TR_OK;
      out.pa = hit.pa + (iova - hit.base);
      out.via = VIA_TLB;
      out.level = hit.level;
      return TR_OK;
    }
    const w = this.wout;
    w.ipa = iova;
    const status = this.walker.walk(ctx, space, !this.permissive, !this.permissive && this.fills.walkCache, sid, w);
    if (status !== WALK_OK) return this.walkFault(status, ctx, sid, iova, write, out);
    const permitted = (w.perms & need) !== 0;
    // A walk that ends in a permission fault may fill the TLB (strict); QEMU caches nothing for a
    // faulting walk (qemu-smmuv3-peer.md §3(c); QEMU 10.0.2 hw/arm/smmu-common.c:815-820).
    if (this.fills.tlb && (permitted || !this.permissive)) this.fillTlb(space, w, sid);
    if (!permitted) {
      this.emit(this.s2FaultEvent('F_PERMISSION', sid, iova, write, true), ctx.record);
      return this.abort(out, R_PERMISSION);
    }
    out.status = TR_OK;
    out.pa = w.pa + (iova - w.base);
    out.via = VIA_WALK;
    out.level = w.level;
    return TR_OK;
  }

  // --- Stage 1 and nesting (issue 13; nested.ts) ------------------------------------------------

  /** A translation-family or walk-abort record with explicit stage, CLASS and IPA (SPEC 7.3.10–7.3.13, smmuv3-arch.md §5.1). */
  private faultEvent(kind: 'F_TRANSLATION' | 'F_ADDR_SIZE' | 'F_ACCESS' | 'F_PERMISSION', sid: number, va: number, write: boolean, s2: boolean, eventClass: number, ipa: number, ttrnw: boolean): EventRecord {
    const common = {
      streamId: sid >>> 0,
      ssv: false,
      substreamId: 0,
      stag: 0,
      stall: false,
      pnu: false,
      ind: false,
      rnw: !write,
      s2,
      eventClass,
      nsipa: false,
      inputAddr: inputU64(va),
      // IPA is valid only for stage-2 faults; bits 11:0 are zero (SPEC 7.3.10).
      ipa: s2 ? (ipa - (ipa % 4096)) % TWO_POW_52 : 0,
    };
    return kind === 'F_PERMISSION' ? { kind, ...common, ttrnw } : { kind, ...common };
  }

  /**
   * Stage-2 translation of one IPA for a nested stream — a stage-1 table access, the CD or L1CD
   * fetch, or the stage-1 output — through the stage-2 TLB and walk cache (filling them as the
   * policy allows: stage-2 entries tagged by VMID, which TLBI_S2_IPA does remove). Sets
   * s2Base/s2Size/s2Pa/s2Perms. Allocation-free except for fills.
   */
  private s2Resolve(ctx: S2Context, ipa: number, sid: number): number {
    if (ipa >= ctx.ipaLimit || ipa >= this.iasLimit) return WALK_TRANSLATION;
    const space = ctx.space ?? this.linkSpace(ctx);
    const h = this.w2;
    h.ipa = ipa;
    const cached = !this.uncached;
    if (cached) {
      const hit = this.caches.lookupTlb(space, h, this.pick);
      if (hit !== null) {
        if (this.conflicts && this.caches.hitCount > 1) return S2_CONFLICT;
        this.s2Base = hit.base;
        this.s2Size = hit.size;
        this.s2Pa = hit.pa;
        this.s2Perms = hit.perms;
        return WALK_OK;
      }
    }
    const st = this.walker.walk(ctx, cached ? space : null, cached && !this.permissive, cached && !this.permissive && this.fills.walkCache, sid, h);
    if (st !== WALK_OK) return st;
    if (cached && this.fills.tlb && ((h.perms & PERM_R) !== 0 || !this.permissive)) this.fillTlb(space, h, sid);
    this.s2Base = h.base;
    this.s2Size = h.size;
    this.s2Pa = h.pa;
    this.s2Perms = h.perms;
    return WALK_OK;
  }

  /** Reports a stage-2 fault met while translating `ipa` for input `va` (CLASS = CD, TT or IN). */
  private s2StageFault(status: number, ctx: S2Context, sid: number, va: number, write: boolean, eventClass: number, ipa: number, out: TranslationResult): number {
    // A table or CD access is a read: RnW = 1, TTRnW = 1 (qemu-smmuv3-peer.md §3(g); SPEC 7.3.13).
    const w = eventClass === EVENT_CLASS_IN ? write : false;
    switch (status) {
      case WALK_TRANSLATION:
        this.emit(this.faultEvent('F_TRANSLATION', sid, va, w, true, eventClass, ipa, false), ctx.record);
        return this.abort(out, R_TRANSLATION);
      case WALK_ADDR_SIZE:
        this.emit(this.faultEvent('F_ADDR_SIZE', sid, va, w, true, eventClass, ipa, false), ctx.record);
        return this.abort(out, R_ADDR_SIZE);
      case WALK_ACCESS:
        this.emit(this.faultEvent('F_ACCESS', sid, va, w, true, eventClass, ipa, false), ctx.record);
        return this.abort(out, R_ACCESS);
      case S2_PERMISSION:
        this.emit(this.faultEvent('F_PERMISSION', sid, va, w, true, eventClass, ipa, eventClass !== EVENT_CLASS_IN), ctx.record);
        return this.abort(out, R_PERMISSION);
      case S2_CONFLICT:
        return this.tlbConflict(sid, va, w, out, true);
      default:
        // F_WALK_EABT is always recorded (§2.3).
        this.emit({ ...this.walkAbortEvent(sid, va, w), s2: true, eventClass, fetchAddr: fetchAddrField(this.w2.fetchAddr) }, true);
        return this.abort(out, R_WALK_EABT);
    }
  }

  /** The PA of a CD-table access at `addr` (an IPA when nested); −1 after reporting a stage-2 fault (CLASS = CD). */
  private cdAccess(ctx2: S2Context | null, addr: number, sid: number, va: number, out: TranslationResult): number {
    if (ctx2 === null) return addr;
    const st = this.s2Resolve(ctx2, addr, sid);
    if (st === WALK_OK && (this.s2Perms & PERM_R) !== 0) return this.s2Pa + (addr - this.s2Base);
    this.s2StageFault(st === WALK_OK ? S2_PERMISSION : st, ctx2, sid, va, false, EVENT_CLASS_CD, addr, out);
    return -1;
  }

  /**
   * CD 0 of the stream: cached, else fetched through STE.S1ContextPtr (SPEC 5.2, 5.3): linear, or
   * 2-level with the L1CD for SSID 0 at S1ContextPtr and CD 0 at its L2Ptr. For a nested STE
   * both addresses are IPAs translated by stage 2 (SPEC 3.4.x "CD fetch is subject to stage 2").
   * Strict caches whatever it fetched, ILLEGAL included (§6.1); permissive (QEMU) only a legal
   * CD, and bakes TTB0's stage-2 translation into it (qemu-smmuv3-peer.md §3(g)). Returns null
   * after reporting F_CD_FETCH / C_BAD_SUBSTREAMID / a CLASS = CD stage-2 fault on `out`.
   */
  private lookupCd(entry: SteCacheEntry, sid: number, va: number, out: TranslationResult): CdCacheEntry | null {
    if (!this.uncached) {
      const cached = this.config.cds.get(sid);
      if (cached !== undefined) return cached;
    }
    const ste = entry.ste;
    const ctx2 = entry.kind === 'nested' ? (entry.s2 as S2Context) : null;
    let cdAddr = ste.s1ContextPtr;
    const header = { streamId: sid >>> 0, ssv: false, substreamId: 0 };
    if (ste.s1fmt !== S1FMT_LINEAR && ste.s1cdmax !== 0 && cdSplit(ste.s1fmt) !== 0) {
      // SSID 0: L1CD index 0 (SSID >> SPLIT), leaf index 0.
      const l1Pa = this.cdAccess(ctx2, cdAddr, sid, va, out);
      if (l1Pa < 0) return null;
      if (this.memory.load64(l1Pa, this.scratch) !== ACCESS_OK) {
        this.emit({ kind: 'F_CD_FETCH', ...header, reason: 0, gpcf: false, fetchAddr: fetchAddrField(l1Pa) }, true);
        this.abort(out, R_CD_FETCH);
        return null;
      }
      const l1 = decodeL1Cd(this.scratch.lo, this.scratch.hi);
      if (!l1.v) {
        // [inferred] an invalid L1CD makes the SubstreamID unusable: C_BAD_SUBSTREAMID.
        this.emit({ kind: 'C_BAD_SUBSTREAMID', streamId: sid >>> 0, substreamId: 0 }, true);
        this.abort(out, R_BAD_SUBSTREAMID);
        return null;
      }
      cdAddr = l1.l2ptr;
    }
    const cdPa = this.cdAccess(ctx2, cdAddr, sid, va, out);
    if (cdPa < 0) return null;
    const words: U64[] = [];
    for (let i = 0; i < CD_BYTES / 8; i++) {
      if (this.memory.load64(cdPa + i * 8, this.scratch) !== ACCESS_OK) {
        this.emit({ kind: 'F_CD_FETCH', ...header, reason: 0, gpcf: false, fetchAddr: fetchAddrField(cdPa + i * 8) }, true);
        this.abort(out, R_CD_FETCH);
        return null;
      }
      words.push(u64(this.scratch.lo, this.scratch.hi));
    }
    const cd = decodeCd(words);
    const reason = checkCd(cd, this.cdFeatures);
    const s1 = reason === undefined ? (makeS1Context(cd, this.features.oasBits) ?? null) : null;
    const illegal = reason ?? (s1 === null ? 'stage-1 walk parameters unusable' : undefined);
    if (this.permissive && s1 !== null && ctx2 !== null && !s1.epd0 && this.s2Resolve(ctx2, s1.ttb, sid) === WALK_OK) s1.ttbPa = this.s2Pa + (s1.ttb - this.s2Base);
    const ce: CdCacheEntry = { sid, words, cd, illegal, s1, fetchAddr: cdPa, seq: this.seq++ };
    if (!this.uncached && this.fills.config && (!this.permissive || illegal === undefined)) this.config.putCd(sid, ce);
    return ce;
  }

  /**
   * The stage-1 walk of `w.ipa` (a VA) from TTB0 (SPEC 3.4, Armv8 VMSA). For a nested stream
   * every table address is an IPA translated by stage 2 first (a stage-2 fault there ends the
   * walk with WALK_S2_FAULT). Uses and fills the stage-1 walk cache (strict only; QEMU has
   * none). Leaf: w.base/size/pa (pa = block output, an IPA when nested), w.perms from AP[2]
   * (bit 7: read-only), s1Global from nG (bit 11), s1Out = output of the VA. Hierarchical
   * APTable/XNTable are not applied (as if HAD0 = 1) [choice: data accesses only, see README].
   */
  private walkS1(s1: S1Context, ctx2: S2Context | null, space: S1Space, sid: number, w: WalkOut): number {
    const va = w.ipa;
    const spans = s1.spans;
    let level = s1.startLevel;
    let table = s1.ttb;
    let tableIsPa = s1.ttbPa >= 0;
    if (tableIsPa) table = s1.ttbPa;
    let index = Math.floor(va / (spans[level] as number)) % s1.topEntries;
    const useWc = !this.permissive && !this.uncached;
    w.fromWalkCache = false;
    if (useWc) {
      const c = this.s1caches.lookupWalk(space, s1.asid, s1.gIndex, w);
      if (c !== null) {
        level = c.level + 1;
        table = c.table;
        tableIsPa = false;
        index = Math.floor(va / (spans[level] as number)) & s1.entryMask;
        w.fromWalkCache = true;
      }
    }
    for (;;) {
      const itep = table + index * 8;
      let ptep = itep;
      w.level = level;
      if (ctx2 !== null && !tableIsPa) {
        const st = this.s2Resolve(ctx2, itep, sid);
        if (st !== WALK_OK || (this.s2Perms & PERM_R) === 0) {
          this.s2Status = st === WALK_OK ? S2_PERMISSION : st;
          this.s2FaultIpa = itep;
          return (w.status = WALK_S2_FAULT);
        }
        ptep = this.s2Pa + (itep - this.s2Base);
      }
      tableIsPa = false;
      w.fetchAddr = ptep;
      const frame = this.memory.frameForRead(ptep);
      if (frame === undefined) return (w.status = WALK_EABT);
      const word = (ptep % 4096) >>> 2;
      const lo = frame[word] as number;
      const hi = frame[word + 1] as number;
      if ((lo & 1) === 0) return (w.status = WALK_TRANSLATION);
      if (level === LAST_LEVEL) {
        if ((lo & 2) === 0) return (w.status = WALK_TRANSLATION);
      } else if ((lo & 2) !== 0) {
        const next = descOutputAddress(s1.format, lo, hi);
        if (next >= s1.paLimit) return (w.status = WALK_ADDR_SIZE);
        if (useWc && this.fills.walkCache) {
          const span = spans[level] as number;
          this.s1caches.insertWalk(space, s1.asid, s1.gIndex, level, va - (va % span), span, next, sid);
        }
        table = next;
        level++;
        index = Math.floor(va / (spans[level] as number)) & s1.entryMask;
        continue;
      } else if ((s1.leafOk[level] as number) === 0) {
        return (w.status = WALK_TRANSLATION);
      }
      const span = spans[level] as number;
      const oa = descOutputAddress(s1.format, lo, hi);
      const blockPa = oa - (oa % span);
      if (blockPa >= s1.paLimit) return (w.status = WALK_ADDR_SIZE);
      if ((lo & DESC_AF) === 0 && !s1.affd) return (w.status = WALK_ACCESS);
      w.base = va - (va % span);
      w.size = span;
      w.pa = blockPa;
      w.perms = (lo & S1_AP2_RO) === 0 ? PERM_R | PERM_W : PERM_R;
      w.nT = false;
      this.s1Global = (lo & S1_NG) === 0;
      this.s1Out = blockPa + (va - w.base);
      return (w.status = WALK_OK);
    }
  }

  private s1WalkFault(status: number, s1: S1Context, ctx2: S2Context | null, sid: number, va: number, write: boolean, out: TranslationResult): number {
    switch (status) {
      case WALK_TRANSLATION:
        this.emit(this.faultEvent('F_TRANSLATION', sid, va, write, false, EVENT_CLASS_IN, 0, false), s1.record);
        return this.abort(out, R_TRANSLATION);
      case WALK_ADDR_SIZE:
        this.emit(this.faultEvent('F_ADDR_SIZE', sid, va, write, false, EVENT_CLASS_IN, 0, false), s1.record);
        return this.abort(out, R_ADDR_SIZE);
      case WALK_ACCESS:
        this.emit(this.faultEvent('F_ACCESS', sid, va, write, false, EVENT_CLASS_IN, 0, false), s1.record);
        return this.abort(out, R_ACCESS);
      case WALK_S2_FAULT: {
        const ctx = ctx2 as S2Context;
        if (this.permissive && this.s2Status === WALK_TRANSLATION) {
          // QEMU reports a stage-2 translation fault on a stage-1 table address as a stage-1
          // fault (S2 = 0, CLASS = TT, gated by CD.R): qemu-smmuv3-peer.md §3(g). The
          // architecture says S2 = 1 (strict, below).
          this.emit({ ...(this.faultEvent('F_TRANSLATION', sid, va, false, false, EVENT_CLASS_TT, 0, false) as EventOf<'F_TRANSLATION'>), ipa: (this.s2FaultIpa - (this.s2FaultIpa % 4096)) % TWO_POW_52 }, s1.record);
          return this.abort(out, R_TRANSLATION);
        }
        return this.s2StageFault(this.s2Status, ctx, sid, va, write, EVENT_CLASS_TT, this.s2FaultIpa, out);
      }
      default:
        // A stage-1 descriptor read aborted: F_WALK_EABT, S2 = 0, CLASS = TT, always recorded.
        this.emit({ ...this.walkAbortEvent(sid, va, false), s2: false, eventClass: EVENT_CLASS_TT, fetchAddr: fetchAddrField(this.w1.fetchAddr) }, true);
        return this.abort(out, R_WALK_EABT);
    }
  }

  /**
   * A stage-1 (Config 0b101) or nested (0b111) STE: S1DSS, CD 0, the combined TLB, the stage-1
   * walk, then (nested) stage 2 of the output. Fault priority [Armv8 VMSA]: stage-1 walk faults
   * (including stage-2 faults on its table accesses), then the stage-1 permission check, then
   * stage 2 of the output IPA. Combined entries: size min(stage-1 block, stage-2 block), tagged
   * with the STE's S2VMID (which tags stage-1 entries too, smmuv3-arch.md §2.3) and the CD's
   * ASID unless nG = 0 (global; permissive/QEMU keeps the ASID tag).
   */
  private translateS1(entry: SteCacheEntry, sid: number, write: boolean, out: TranslationResult): number {
    const ste = entry.ste;
    const va = out.ipa;
    const ctx2 = entry.kind === 'nested' ? (entry.s2 as S2Context) : null;
    // S1DSS applies to non-substream traffic only when substreams exist (S1CDMax ≠ 0; SPEC 5.2).
    if (ste.s1cdmax !== 0) {
      switch (ste.s1dss) {
        case S1DSS_SSID0:
          break;
        case S1DSS_BYPASS:
          if (ctx2 === null) {
            if (va >= 0 && va < this.oasLimit) return this.ok(out, va, VIA_BYPASS, -1);
            this.emit(this.s2FaultEvent('F_ADDR_SIZE', sid, va, write, false), true);
            return this.abort(out, R_ADDR_SIZE_S1);
          }
          if (!this.uncached) return this.translateS2(ctx2, sid, write, out);
          if (va < 0 || va >= this.iasLimit) return this.abort(out, R_ADDR_SIZE_S1);
          return this.finishS2Only(ctx2, sid, va, write, out);
        default:
          // 0b00 terminate; 0b11 reserved, treated as terminate [inferred].
          this.emit({ kind: 'F_STREAM_DISABLED', streamId: sid >>> 0 }, true);
          return this.abort(out, R_STREAM_DISABLED);
      }
    }
    const ce = this.lookupCd(entry, sid, va, out);
    if (ce === null) return TR_ABORT;
    const s1 = ce.s1;
    if (s1 === null || ce.illegal !== undefined) {
      this.emit({ kind: 'C_BAD_CD', streamId: sid >>> 0, ssv: false, substreamId: 0 }, true);
      return this.abort(out, R_BAD_CD);
    }
    if (va < 0 || s1.epd0 || va >= s1.inputLimit) {
      this.emit(this.faultEvent('F_TRANSLATION', sid, va, write, false, EVENT_CLASS_IN, 0, false), s1.record);
      return this.abort(out, R_TRANSLATION);
    }
    const space = this.s1caches.space(ste.s2vmid);
    const need = write ? PERM_W : PERM_R;
    if (!this.uncached) {
      const h = this.s1Holder;
      h.ipa = va;
      const hit = this.s1caches.lookupTlb(space, s1.asid, h, this.permissive);
      if (hit !== null) {
        if (this.conflicts && this.s1caches.hitCount > 1) return this.tlbConflict(sid, va, write, out, true);
        if ((hit.s1Perms & need) === 0) {
          this.emit(this.faultEvent('F_PERMISSION', sid, va, write, false, EVENT_CLASS_IN, 0, false), s1.record);
          return this.abort(out, R_PERMISSION);
        }
        if ((hit.s2Perms & need) === 0) {
          this.emit(this.faultEvent('F_PERMISSION', sid, va, write, true, EVENT_CLASS_IN, hit.ipa + (va - hit.base), false), (ctx2 as S2Context).record);
          return this.abort(out, R_PERMISSION);
        }
        out.status = TR_OK;
        out.pa = hit.pa + (va - hit.base);
        out.via = VIA_TLB;
        out.level = hit.level;
        return TR_OK;
      }
    }
    const w = this.w1;
    w.ipa = va;
    const st = this.walkS1(s1, ctx2, space, sid, w);
    if (st !== WALK_OK) return this.s1WalkFault(st, s1, ctx2, sid, va, write, out);
    const ipa = this.s1Out;
    const global = this.s1Global && !this.permissive;
    if ((w.perms & need) === 0) {
      this.emit(this.faultEvent('F_PERMISSION', sid, va, write, false, EVENT_CLASS_IN, 0, false), s1.record);
      return this.abort(out, R_PERMISSION);
    }
    let pa = ipa;
    let s2Perms = PERM_R | PERM_W;
    let size = w.size;
    if (ctx2 !== null) {
      const s2st = this.s2Resolve(ctx2, ipa, sid);
      if (s2st !== WALK_OK) return this.s2StageFault(s2st, ctx2, sid, va, write, EVENT_CLASS_IN, ipa, out);
      s2Perms = this.s2Perms;
      pa = this.s2Pa + (ipa - this.s2Base);
      if (this.s2Size < size) size = this.s2Size;
    }
    const permitted = (s2Perms & need) !== 0;
    if (!this.uncached && this.fills.tlb && (permitted || !this.permissive)) {
      const off = va % size;
      if (this.permissive && this.s1caches.tlbSize >= QEMU_IOTLB_MAX) this.s1caches.removeTlbWhere(() => true);
      this.s1caches.insertTlb(space, s1.asid, global, s1.gIndex, w.level, va - off, size, pa - off, ipa - off, w.perms, s2Perms, ctx2 !== null, sid, this.permissive);
    }
    if (!permitted) {
      this.emit(this.faultEvent('F_PERMISSION', sid, va, write, true, EVENT_CLASS_IN, ipa, false), (ctx2 as S2Context).record);
      return this.abort(out, R_PERMISSION);
    }
    out.status = TR_OK;
    out.pa = pa;
    out.via = VIA_WALK;
    out.level = w.level;
    return TR_OK;
  }

  /** Stage-2-only translation through s2Resolve (honours `uncached`): S1DSS = bypass on a nested STE. */
  private finishS2Only(ctx: S2Context, sid: number, ipa: number, write: boolean, out: TranslationResult): number {
    const st = this.s2Resolve(ctx, ipa, sid);
    if (st !== WALK_OK) return this.s2StageFault(st, ctx, sid, ipa, write, EVENT_CLASS_IN, ipa, out);
    if ((this.s2Perms & (write ? PERM_W : PERM_R)) === 0) return this.s2StageFault(S2_PERMISSION, ctx, sid, ipa, write, EVENT_CLASS_IN, ipa, out);
    return this.ok(out, this.s2Pa + (ipa - this.s2Base), VIA_WALK, -1);
  }

  private tlbConflict(sid: number, iova: number, write: boolean, out: TranslationResult, record: boolean): number {
    this.emit(
      {
        kind: 'F_TLB_CONFLICT',
        streamId: sid >>> 0,
        ssv: false,
        substreamId: 0,
        reason: 0,
        pnu: false,
        ind: false,
        rnw: !write,
        s2: true,
        nsipa: false,
        inputAddr: inputU64(iova),
        ipa: (iova - (iova % 4096)) % TWO_POW_52,
      },
      record,
    );
    return this.abort(out, R_TLB_CONFLICT);
  }

  private walkFault(status: number, ctx: S2Context, sid: number, iova: number, write: boolean, out: TranslationResult): number {
    switch (status) {
      case WALK_TRANSLATION:
        this.emit(this.s2FaultEvent('F_TRANSLATION', sid, iova, write, true), ctx.record);
        return this.abort(out, R_TRANSLATION);
      case WALK_ADDR_SIZE:
        this.emit(this.s2FaultEvent('F_ADDR_SIZE', sid, iova, write, true), ctx.record);
        return this.abort(out, R_ADDR_SIZE);
      case WALK_ACCESS:
        this.emit(this.s2FaultEvent('F_ACCESS', sid, iova, write, true), ctx.record);
        return this.abort(out, R_ACCESS);
      default:
        // F_WALK_EABT is always recorded (§2.3).
        this.emit(this.walkAbortEvent(sid, iova, write), true);
        return this.abort(out, R_WALK_EABT);
    }
  }

  private walkAbortEvent(sid: number, iova: number, write: boolean): EventOf<'F_WALK_EABT'> {
    return {
      kind: 'F_WALK_EABT',
      streamId: sid >>> 0,
      ssv: false,
      substreamId: 0,
      pnu: false,
      ind: false,
      rnw: !write,
      s2: true,
      eventClass: EVENT_CLASS_IN,
      nsipa: false,
      inputAddr: inputU64(iova),
      reason: 0,
      gpcf: false,
      fetchAddr: fetchAddrField(this.wout.fetchAddr),
    };
  }

  private fillTlb(space: VmidSpace, w: WalkOut, sid: number): TlbEntry | null {
    // BBML1: an nT block is not cached, so a block-size change through nT cannot conflict (§6.2).
    if (w.nT && this.features.bbml >= 1 && !this.permissive) return null;
    if (this.permissive && this.caches.tlbSize >= QEMU_IOTLB_MAX) this.caches.removeTlbWhere(() => true);
    return this.caches.insertTlb(space, w.level, w.base, w.size, w.pa, w.perms, sid, this.permissive);
  }

  /** `translateInto` with a fresh plain result (for the runner, not hot loops). */
  translate(sid: number, iova: number, access: DmaAccess): TranslateOutcome {
    const out = this.result;
    out.ipa = iova;
    this.translateInto(sid, access === 'write', out);
    return this.outcome(out);
  }

  private outcome(out: TranslationResult): TranslateOutcome {
    if (out.status === TR_OK) return { kind: 'ok', pa: out.pa, via: VIAS[out.via] ?? 'walk', level: out.level };
    return { kind: 'abort', reason: (ABORT_REASONS[out.reason] ?? 'bad_ste') as AbortReason, event: this.lastEvent, recorded: this.lastRecorded };
  }

  /**
   * What a walk of the current memory gives, ignoring and not touching any cache, recording no
   * event: the reference "current walk" for checkers. With SMMUEN = 0 it reports GBPA's effect.
   */
  walkUncached(sid: number, iova: number, access: DmaAccess): TranslateOutcome {
    const out = new TranslationResult();
    const write = access === 'write';
    const regs = this.regs;
    this.lastEvent = undefined;
    this.lastRecorded = false;
    if (!regs.smmuen) {
      if ((regs.gbpa & GBPA_ABORT_BIT) !== 0) this.abort(out, R_GBPA_ABORT);
      else if (iova >= 0 && iova < this.oasLimit && Math.floor(iova) === iova) this.ok(out, iova, VIA_GBPA, -1);
      else this.abort(out, R_OAS);
      return this.outcome(out);
    }
    const status = this.fetchConfig(sid, false, false);
    if (status !== CFG_OK) return { kind: 'abort', reason: status === CFG_BAD_STREAMID ? 'bad_streamid' : 'ste_fetch', event: undefined, recorded: false };
    const entry = this.cfgEntry as SteCacheEntry;
    const valid = iova >= 0 && iova <= MAX_INPUT && Math.floor(iova) === iova;
    const reason = ((): AbortReason | undefined => {
      switch (entry.kind) {
        case 'bypass':
          return valid && iova < this.oasLimit ? undefined : 'addr_size_s1';
        case 'abort':
          return 'ste_abort';
        case 'invalid':
          return 'bad_ste';
        case 's1':
        case 'nested':
        case 's2':
          return undefined;
        default: {
          const impossible: never = entry.kind;
          return impossible;
        }
      }
    })();
    if (reason !== undefined) return { kind: 'abort', reason, event: undefined, recorded: false };
    if (entry.kind === 'bypass') return { kind: 'ok', pa: iova, via: 'bypass', level: -1 };
    if (entry.kind === 's1' || entry.kind === 'nested') {
      out.ipa = valid ? iova : -1;
      this.silent = true;
      this.uncached = true;
      try {
        this.translateS1(entry, sid, write, out);
      } finally {
        this.silent = false;
        this.uncached = false;
      }
      const o = this.outcome(out);
      return o.kind === 'ok' ? o : { kind: 'abort', reason: o.reason, event: undefined, recorded: false };
    }
    const ctx = entry.s2 as S2Context;
    if (!valid || iova >= this.iasLimit) return { kind: 'abort', reason: 'addr_size_s1', event: undefined, recorded: false };
    if (iova >= ctx.ipaLimit) return { kind: 'abort', reason: 'translation', event: undefined, recorded: false };
    const w = new WalkOut();
    w.ipa = iova;
    const st = this.walker.walk(ctx, null, false, false, sid, w);
    const walkReason = st === WALK_OK ? undefined : st === WALK_TRANSLATION ? 'translation' : st === WALK_ADDR_SIZE ? 'addr_size' : st === WALK_ACCESS ? 'access' : 'walk_eabt';
    if (walkReason !== undefined) return { kind: 'abort', reason: walkReason, event: undefined, recorded: false };
    if ((w.perms & (write ? PERM_W : PERM_R)) === 0) return { kind: 'abort', reason: 'permission', event: undefined, recorded: false };
    return { kind: 'ok', pa: w.pa + (iova - w.base), via: 'walk', level: w.level };
  }

  // --- Speculation and eviction ----------------------------------------------------------------

  /**
   * Caches what the SMMU may cache for `sid` at `addr` right now: the configuration (fetched if
   * not cached, even when invalid), table descriptors on the walk and the leaf translation. No
   * event is ever recorded for a speculative access. Permissive mode (QEMU) never speculates.
   */
  speculativeFill(sid: number, addr: number): SpeculativeFillOutcome {
    const none = (reason: string, config: 'cached' | 'fetched' | 'none' = 'none'): SpeculativeFillOutcome => ({ filled: false, config, tlb: undefined, walkCacheAdded: 0, reason });
    if (this.permissive) return none('permissive: caches fill only on transactions');
    if (!this.regs.smmuen) return none('SMMUEN = 0: no cache insertion');
    const configBefore = this.config.stes.size + this.config.l1.size;
    const status = this.lookupConfig(sid, this.fills.config);
    if (status !== CFG_OK) return none('no configuration: ' + (status === CFG_BAD_STREAMID ? 'bad StreamID' : 'STE fetch abort'));
    const entry = this.cfgEntry as SteCacheEntry;
    const config = this.cfgFromCache ? 'cached' : 'fetched';
    const configFilled = this.config.stes.size + this.config.l1.size > configBefore;
    if (entry.kind === 's1' || entry.kind === 'nested') return this.speculativeFillS1(entry, sid, addr, config, configBefore);
    if (entry.kind !== 's2') return { ...none(`STE is ${entry.kind}: no translation to cache`, config), filled: configFilled };
    const ctx = entry.s2 as S2Context;
    if (!(addr >= 0 && addr < this.iasLimit && addr < ctx.ipaLimit && Math.floor(addr) === addr)) return { ...none('address outside the IPA space', config), filled: configFilled };
    const space = ctx.space ?? this.linkSpace(ctx);
    const walkBefore = this.caches.walkSize;
    const w = this.wout;
    w.ipa = addr;
    const st = this.walker.walk(ctx, space, true, this.fills.walkCache, sid, w);
    const walkCacheAdded = this.caches.walkSize - walkBefore;
    if (st !== WALK_OK) return { filled: configFilled || walkCacheAdded > 0, config, tlb: undefined, walkCacheAdded, reason: 'walk faulted: only valid translations are cached' };
    const filled = this.fills.tlb ? this.fillTlb(space, w, sid) : null;
    return {
      filled: configFilled || walkCacheAdded > 0 || filled !== null,
      config,
      tlb: filled === null ? undefined : this.tlbInfo(filled),
      walkCacheAdded,
      reason: filled === null ? (w.nT ? 'nT block: not cached' : 'already cached or TLB fills disabled') : 'filled',
    };
  }

  /**
   * Stage-1 / nested speculation: the transaction path with events suppressed — fills the CD,
   * stage-1 walk cache, the stage-2 entries of its table accesses and the combined entry, as a
   * read would (§6.1: any valid reachable translation may be cached at any time).
   */
  private speculativeFillS1(entry: SteCacheEntry, sid: number, addr: number, config: 'cached' | 'fetched', configBefore: number): SpeculativeFillOutcome {
    const sizes = (): number => this.caches.tlbSize + this.s1caches.tlbSize;
    const tlbBefore = sizes();
    const walkBefore = this.caches.walkSize + this.s1caches.walkSize;
    const out = new TranslationResult();
    out.ipa = addr >= 0 && addr <= MAX_INPUT && Math.floor(addr) === addr ? addr : -1;
    this.silent = true;
    try {
      this.translateS1(entry, sid, false, out);
    } finally {
      this.silent = false;
    }
    const walkCacheAdded = this.caches.walkSize + this.s1caches.walkSize - walkBefore;
    const filled = this.config.stes.size + this.config.l1.size + this.config.cds.size > configBefore || walkCacheAdded > 0 || sizes() > tlbBefore;
    return { filled, config, tlb: undefined, walkCacheAdded, reason: out.status === TR_OK ? 'stage-1 walk' : 'stage-1 walk faulted: only valid translations are cached' };
  }

  /** Drops cached entries (capacity evictions, chosen by the runner). Returns how many. */
  evict(selector: EvictSelector): number {
    return this.observed({ kind: 'evict' }, () => this.evictEntries(selector));
  }

  private evictEntries(selector: EvictSelector): number {
    return match(selector)
      .with(
        { cache: 'all' },
        () =>
          this.caches.removeTlbWhere(() => true) +
          this.caches.removeWalkWhere(() => true) +
          this.s1caches.removeTlbWhere(() => true) +
          this.s1caches.removeWalkWhere(() => true) +
          this.config.invalidateAll(),
      )
      .with({ cache: 'tlb' }, (s) => {
        const select = s.select;
        if (typeof select !== 'number') return this.caches.removeTlbWhere((e) => select(this.tlbInfo(e)));
        const victim = this.caches.tlbEntries()[select];
        return victim === undefined ? 0 : this.caches.removeTlbWhere((e) => e === victim);
      })
      .with({ cache: 'walk' }, (s) => {
        const select = s.select;
        if (typeof select !== 'number') return this.caches.removeWalkWhere((e) => select(this.walkInfo(e)));
        const victim = this.caches.walkEntries()[select];
        return victim === undefined ? 0 : this.caches.removeWalkWhere((e) => e === victim);
      })
      .with({ cache: 'config' }, (s) => {
        const select = s.select;
        if (typeof select !== 'number') return this.evictConfig(select);
        const victim = this.configCacheEntries()[select];
        return victim === undefined ? 0 : this.evictConfig((e) => e.seq === victim.seq);
      })
      .exhaustive();
  }

  private evictConfig(where: (e: ConfigCacheEntryInfo) => boolean): number {
    let removed = 0;
    for (const [sid, e] of [...this.config.stes.entries()]) {
      if (where(this.steInfo(e)) && this.config.dropSte(sid)) removed++;
    }
    for (const [index, e] of [...this.config.l1.entries()]) {
      if (where(this.l1Info(e)) && this.config.dropL1(index)) removed++;
    }
    return removed;
  }

  // --- Command queue ------------------------------------------------------------------------

  /** Consumes at most one command (§4.1). */
  consumeOneCommand(): ConsumeOutcome {
    const regs = this.regs;
    if (!regs.cmdqen) return { kind: 'idle', reason: 'disabled' };
    if ((regs.gerrorActive & GERROR_BIT.CMDQ_ERR) !== 0) return { kind: 'idle', reason: 'error_active' };
    const log2 = Math.min(regs.cmdqLog2size(), this.features.cmdqLog2Max);
    const size = 2 ** log2;
    const span = size * 2;
    const prod = regs.cmdqProd % span;
    const cons = (regs.cmdqCons & 0xf_ffff) % span;
    if (prod === cons) return { kind: 'idle', reason: 'empty' };
    const index = cons % size;
    const queueBytes = Math.max(32, size * CMD_BYTES);
    const rawBase = regs.cmdqBaseAddr();
    const addr = rawBase - (rawBase % queueBytes) + index * CMD_BYTES;
    const words: U64[] = [];
    for (let i = 0; i < 2; i++) {
      if (this.memory.load64(addr + i * 8, this.scratch) !== ACCESS_OK) return this.commandError(index, CERROR_ABT, `command fetch at 0x${(addr + i * 8).toString(16)} aborted`);
      words.push(u64(this.scratch.lo, this.scratch.hi));
    }
    const decoded = this.decodeQueued(words);
    if (decoded.kind === 'illegal') return this.commandError(index, CERROR_ILL, decoded.reason);
    const unsupported = checkCommand(decoded, this.cmdFeatures);
    if (unsupported !== undefined) return this.commandError(index, CERROR_ILL, unsupported);
    const cmd = decoded;
    let effect: 'pending' | 'applied' | 'sync' | 'prefetch' | 'none' = 'none';
    if (cmd.kind === 'CMD_SYNC') {
      if (!this.permissive) {
        const failed = this.completeSyncInvalidations();
        if (failed) return this.commandError(index, CERROR_ATC_INV_SYNC, 'an ATC invalidation before this CMD_SYNC did not complete');
      }
      effect = 'sync';
    } else if (isInvalidation(cmd)) {
      if (this.permissive) {
        this.applyInvalidation(cmd);
        effect = 'applied';
      } else {
        this.pending.push({ seq: this.commandSeq++, command: cmd });
        effect = 'pending';
      }
    } else if (cmd.kind === 'PREFETCH_CONFIG' || cmd.kind === 'PREFETCH_ADDR') {
      // QEMU ignores prefetches; hardware may act on them (and a prefetch is a speculative fill).
      if (!this.permissive && regs.smmuen) {
        if (cmd.kind === 'PREFETCH_CONFIG') this.lookupConfig(cmd.sid, this.fills.config);
        else this.speculativeFill(cmd.sid, cmd.address.hi * 0x1_0000_0000 + cmd.address.lo);
        effect = 'prefetch';
      }
    }
    const wasFull = prod !== cons && prod % size === cons % size;
    regs.cmdqCons = ((regs.cmdqCons & 0x7f00_0000) | ((cons + 1) % span)) >>> 0;
    if (wasFull && this.features.sev) this.signalCounts.sev++;
    // Completion signals are observable only after CONS shows the CMD_SYNC consumed (SPEC 4.7.3).
    if (cmd.kind === 'CMD_SYNC') this.signalSync(cmd);
    return { kind: 'consumed', index, command: cmd, effect };
  }

  /**
   * decodeCommand's verdict, except that permissive mode (QEMU) executes the reserved range
   * combination NUM = SCALE = TTL = 0 with TG ≠ 0 instead of rejecting it (§7.3, §7.5).
   */
  private decodeQueued(words: U64[]): DecodedCommand {
    const options = { ril: this.features.ril };
    const decoded = decodeCommand(words, options);
    if (decoded.kind !== 'illegal' || !this.permissive || !this.features.ril) return decoded;
    const w0 = words[0] as U64;
    const w1 = words[1] as U64;
    const tg = (w1.lo >>> 10) & 3;
    const num = (w0.lo >>> 12) & 0x1f;
    const scale = (w0.lo >>> 20) & 0x1f;
    if (!TLBI_RANGE_OPCODES.has(w0.lo & 0xff) || tg === 0 || num !== 0 || scale !== 0) return decoded;
    const ttl = (w1.lo >>> 8) & 3;
    const patched = decodeCommand([w0, u64(w1.lo | (3 << 8), w1.hi)], options);
    if (patched.kind === 'illegal') return decoded;
    return { ...patched, ttl } as Command;
  }

  private commandError(index: number, cerror: number, reason: string): ConsumeOutcome {
    const regs = this.regs;
    // CONS.ERR is written before GERROR.CMDQ_ERR toggles; CONS stays on the command (§4.1).
    regs.cmdqCons = ((regs.cmdqCons & 0xf_ffff) | (cerror << 24)) >>> 0;
    this.raiseGerror(GERROR_BIT.CMDQ_ERR);
    return { kind: 'error', index, cerror, reason };
  }

  /**
   * A CMD_SYNC's wait (strict): ATC invalidations first, since only they can fail. If any ATC
   * invalidation since the last successful CMD_SYNC timed out, the CMD_SYNC fails with
   * CERROR_ATC_INV_SYNC and the other pending invalidations stay pending — their completion is
   * not guaranteed until a later CMD_SYNC succeeds (SPEC 4.7.3). The timed-out ones never complete.
   */
  private completeSyncInvalidations(): boolean {
    const atc = this.pending.filter((p) => p.command.kind === 'ATC_INV');
    this.pending = this.pending.filter((p) => p.command.kind !== 'ATC_INV');
    for (const p of atc) this.applyInvalidation(p.command);
    if (this.atcTimedOut) {
      this.atcTimedOut = false;
      return true;
    }
    const rest = this.pending;
    this.pending = [];
    for (const p of rest) this.applyInvalidation(p.command);
    return false;
  }

  private signalSync(cmd: CommandOf<'CMD_SYNC'>): void {
    if (cmd.cs === CS_IRQ) {
      this.signalCounts.cmdSyncIrq++;
      // QEMU performs no MSI write-back (§7.1); hardware writes MSIData when MSIs exist.
      if (!this.permissive && this.features.msi && cmd.msiaddr !== 0) {
        this.signalCounts.cmdSyncMsi++;
        const pa = cmd.msiaddr % this.oasLimit;
        if (this.memory.write32(pa, cmd.msidata) !== ACCESS_OK) this.raiseGerror(GERROR_BIT.MSI_CMDQ_ABT_ERR);
        else this.writes.record(pa, 4, 'cmd_sync_msi');
      }
    } else if (cmd.cs === CS_SEV && this.features.sev) {
      this.signalCounts.sev++;
    }
  }

  private drainIfPermissive(): void {
    if (!this.permissive || this.draining) return;
    this.draining = true;
    try {
      const limit = 2 ** Math.min(this.regs.cmdqLog2size(), this.features.cmdqLog2Max) + 1;
      for (let i = 0; i < limit; i++) if (this.consumeOneCommand().kind !== 'consumed') break;
    } finally {
      this.draining = false;
    }
  }

  /** Invalidations consumed but not yet applied, in consumption order (plain data). */
  pendingInvalidations(): readonly PendingInvalidation[] {
    return this.pending.slice();
  }

  /** Applies the i-th pending invalidation now. Undefined if there is no such entry. */
  applyPendingInvalidation(i: number): { readonly command: Command; readonly removed: RemovedCounts } | undefined {
    const p = this.pending[i];
    if (p === undefined) return undefined;
    this.pending.splice(i, 1);
    return { command: p.command, removed: this.applyInvalidation(p.command) };
  }

  private applyInvalidation(cmd: Command): RemovedCounts {
    return this.observed({ kind: 'command', command: cmd }, () => this.invalidate(cmd));
  }

  private invalidate(cmd: Command): RemovedCounts {
    const zero = { tlb: 0, walk: 0, config: 0, atcDelivered: 0, atcTimedOut: 0 };
    const all = (pred: (e: TlbEntry | WalkEntry) => boolean): RemovedCounts => ({
      ...zero,
      tlb: this.caches.removeTlbWhere(pred),
      walk: this.caches.removeWalkWhere(pred),
    });
    const plus = (r: RemovedCounts, s1: { readonly tlb: number; readonly walk: number }): RemovedCounts => ({ ...r, tlb: r.tlb + s1.tlb, walk: r.walk + s1.walk });
    // A switch, not ts-pattern: every TLBI and CFGI of a run comes through here.
    switch (cmd.kind) {
      case 'TLBI_S2_IPA':
        return { ...zero, ...(this.permissive ? permissiveTlbiS2Ipa(this.caches, cmd, this.features.ril) : strictTlbiS2Ipa(this.caches, cmd, this.features.ril)) };
      // TLBI_S2_IPA leaves combined S1+S2 entries and stage-1 walk-cache entries alone: it is not
      // required to remove them (smmuv3-arch.md §3.3 Scope), and QEMU does not either (§3(g)).
      // S12_VMALL: every stage of the VMID (§3.3); NSNH_ALL: everything non-EL2.
      case 'TLBI_S12_VMALL': {
        const vmid = cmd.vmid;
        return plus(all((e) => e.vmid === vmid), tlbiS1Vmid(this.s1caches, vmid));
      }
      case 'TLBI_NSNH_ALL':
        return plus(all(() => true), { tlb: this.s1caches.removeTlbWhere(() => true), walk: this.s1caches.removeWalkWhere(() => true) });
      // Stage-1 invalidations, scoped to the VMID (host stage 1 uses VMID 0): smmuv3-arch.md §3.3.
      case 'TLBI_NH_ALL':
        return plus(zero, tlbiS1Vmid(this.s1caches, cmd.vmid));
      case 'TLBI_NH_ASID':
        return plus(zero, tlbiNhAsid(this.s1caches, cmd.vmid, cmd.asid, this.permissive));
      case 'TLBI_NH_VA':
      case 'TLBI_NH_VAA':
        return plus(zero, this.permissive ? permissiveTlbiNhVa(this.s1caches, cmd, this.features.ril) : strictTlbiNhVa(this.s1caches, cmd, this.features.ril));
      // EL2 regimes: no stream of the model translates for EL2 (STRW = EL2 is not modelled).
      case 'TLBI_EL2_ALL':
      case 'TLBI_EL2_ASID':
      case 'TLBI_EL2_VA':
      case 'TLBI_EL2_VAA':
        return zero;
      case 'CFGI_STE':
        return { ...zero, config: this.config.invalidateSte(cmd.sid, this.permissive ? true : cmd.leaf) };
      case 'CFGI_STE_RANGE': {
        const count = 2 ** (cmd.range + 1);
        return { ...zero, config: this.config.invalidateRange(cmd.sid - (cmd.sid % count), count) };
      }
      case 'CFGI_ALL':
        return { ...zero, config: this.config.invalidateAll() };
      // CFGI_CD (SID, SSID): the CD of that SSID (only CD 0 is cached); CFGI_CD_ALL: every CD of the
      // SID (§3.3). QEMU drops the whole decoded configuration of the SID for either (§7.1).
      case 'CFGI_CD':
        return { ...zero, config: this.config.invalidateCd(cmd.sid, this.permissive ? 0 : cmd.ssid) + (this.permissive && this.config.dropSte(cmd.sid) ? 1 : 0) };
      case 'CFGI_CD_ALL':
        return { ...zero, config: this.config.invalidateCd(cmd.sid, 0) + (this.permissive && this.config.dropSte(cmd.sid) ? 1 : 0) };
      case 'ATC_INV':
        return this.permissive ? zero : this.deliverAtcInvalidation(cmd);
      case 'PREFETCH_CONFIG':
      case 'PREFETCH_ADDR':
      case 'PRI_RESP':
      case 'RESUME':
      case 'STALL_TERM':
      case 'CMD_SYNC':
        return zero;
      default: {
        const never: never = cmd;
        return never;
      }
    }
  }

  // --- Cache observation (traces) -----------------------------------------------------------

  /**
   * Reports every fill and removal of the TLB, walk caches and configuration cache to `observer`
   * (null stops it), and brackets each invalidation and eviction while it takes effect. Traces
   * only (conformance/cache-history.ts): what is cached and removed does not change.
   */
  /** The observer `observeCaches` set (null: none), so another watcher can chain to it. */
  get cachesObserver(): CacheObserver | null {
    return this.cacheObserver;
  }

  observeCaches(observer: CacheObserver | null): void {
    this.cacheObserver = observer;
    this.caches.observer = observer;
    this.s1caches.observer = observer;
    this.config.observer = observer;
  }

  private observed<T>(cause: RemovalCause, run: () => T): T {
    const observer = this.cacheObserver;
    if (observer === null) return run();
    observer.removing(cause);
    try {
      return run();
    } finally {
      observer.removed(cause);
    }
  }

  // --- ATS ---------------------------------------------------------------------------------

  /** Connects a device so that ATC_INV for its StreamID reaches it. */
  attachEndpoint(endpoint: AtsEndpoint): void {
    const list = this.endpoints.get(endpoint.sid) ?? [];
    if (!list.includes(endpoint)) list.push(endpoint);
    this.endpoints.set(endpoint.sid, list);
  }

  private deliverAtcInvalidation(cmd: CommandOf<'ATC_INV'>): RemovedCounts {
    // Ignored while SMMUEN = 0 (§3.5).
    if (!this.regs.smmuen) return { tlb: 0, walk: 0, config: 0, atcDelivered: 0, atcTimedOut: 0 };
    const inv: AtcInvalidation = atcInvalidationOf(cmd);
    let delivered = 0;
    let timedOut = 0;
    for (const ep of this.endpoints.get(cmd.sid) ?? []) {
      delivered++;
      if (!ep.atcInvalidate(inv)) {
        timedOut++;
        this.atcTimedOut = true;
      }
    }
    return { tlb: 0, walk: 0, config: 0, atcDelivered: delivered, atcTimedOut: timedOut };
  }

  /**
   * An ATS Translation Request (SPEC 3.9.1.2): never records a translation fault (the endpoint
   * gets R = W = 0), answers UR where ATS is disabled and CA for configuration errors. Uses and
   * fills the TLB like any translation.
   */
  atsTranslationRequest(sid: number, addr: number): AtsResponse {
    this.lastEvent = undefined;
    const regs = this.regs;
    const page = addr >= 0 && addr <= MAX_INPUT ? addr - (addr % this.stuBytes) : 0;
    const badTreq = (reason: string): AtsResponse => {
      this.emit({ kind: 'F_BAD_ATS_TREQ', streamId: Math.max(0, Math.floor(sid)) >>> 0, ssv: false, substreamId: 0, span: 1, inputAddr: inputU64(page) }, true);
      return { kind: 'ur', reason };
    };
    if (!this.features.ats) return { kind: 'ur', reason: 'the SMMU has no ATS interface' };
    if (!regs.smmuen) return badTreq('SMMUEN = 0');
    const status = this.lookupConfig(sid, this.fills.config);
    if (status !== CFG_OK) {
      this.configErrorEvent(status, sid, true);
      return { kind: 'ca', reason: status === CFG_BAD_STREAMID ? 'C_BAD_STREAMID' : 'F_STE_FETCH' };
    }
    const entry = this.cfgEntry as SteCacheEntry;
    switch (entry.kind) {
      case 'abort':
        return { kind: 'ur', reason: 'STE Config abort' };
      case 'bypass':
        return badTreq('STE Config bypass');
      case 'invalid':
        this.emit({ kind: 'C_BAD_STE', streamId: sid >>> 0, ssv: false, substreamId: 0 }, (regs.cr2 & CR2_REC_CFG_ATS) !== 0);
        return { kind: 'ca', reason: 'C_BAD_STE' };
      case 's1':
      case 'nested':
        return { kind: 'ca', reason: 'stage-1 translation is not modelled' };
      case 's2':
        break;
      default: {
        const impossible: never = entry.kind;
        return impossible;
      }
    }
    // EATS 0b10 with Config 0b110 is ILLEGAL when ATS is implemented (already 'invalid');
    // 0b11 without DPT support behaves as 0b00 [INF].
    if (entry.ste.eats !== 1) return badTreq(`effective EATS = 0 (EATS = ${entry.ste.eats})`);
    const ctx = entry.s2 as S2Context;
    const denied: AtsResponse = { kind: 'success', base: page, size: this.stuBytes, pa: 0, read: false, write: false };
    if (!(addr >= 0 && addr < this.iasLimit && addr < ctx.ipaLimit && Math.floor(addr) === addr)) return denied;
    const space = ctx.space ?? this.linkSpace(ctx);
    const w = this.wout;
    w.ipa = addr;
    const hit = this.caches.lookupTlb(space, w, this.pick);
    if (hit !== null) {
      if (this.conflicts && this.caches.hitCount > 1) {
        this.tlbConflict(sid, addr, false, this.result, (regs.cr2 & CR2_REC_CFG_ATS) !== 0);
        return { kind: 'ca', reason: 'F_TLB_CONFLICT' };
      }
      return { kind: 'success', base: hit.base, size: hit.size, pa: hit.pa, read: (hit.perms & PERM_R) !== 0, write: (hit.perms & PERM_W) !== 0 };
    }
    const st = this.walker.walk(ctx, space, !this.permissive, !this.permissive && this.fills.walkCache, sid, w);
    if (st === WALK_EABT) {
      this.emit(this.walkAbortEvent(sid, addr, false), (regs.cr2 & CR2_REC_CFG_ATS) !== 0);
      return { kind: 'ca', reason: 'F_WALK_EABT' };
    }
    if (st !== WALK_OK) return denied;
    if (this.fills.tlb) this.fillTlb(space, w, sid);
    return { kind: 'success', base: w.base, size: w.size, pa: w.pa, read: (w.perms & PERM_R) !== 0, write: (w.perms & PERM_W) !== 0 };
  }

  /**
   * A transaction the endpoint marked Translated (SPEC 3.9.1.3): with ATSCHK = 0 it bypasses
   * with only the address-size check; with ATSCHK = 1 the STE must allow ATS. Choices: an address
   * beyond the OAS aborts without an event (IMPLEMENTATION DEFINED); ATSCHK is read from CR0ACK,
   * not from a value cached with the STE.
   */
  translatedAccess(sid: number, pa: number, access: DmaAccess): TranslateOutcome {
    const out = this.result;
    this.lastEvent = undefined;
    this.lastRecorded = false;
    const regs = this.regs;
    const forbidden = (): TranslateOutcome => {
      this.emit({ kind: 'F_TRANSL_FORBIDDEN', streamId: Math.max(0, Math.floor(sid)) >>> 0, rnw: access === 'read', inputAddr: inputU64(pa) }, true);
      this.abort(out, R_TRANSL_FORBIDDEN);
      return this.outcome(out);
    };
    if (!this.features.ats || !regs.smmuen) return forbidden();
    if (!(pa >= 0 && pa < this.oasLimit && Math.floor(pa) === pa)) {
      this.abort(out, R_OAS);
      return this.outcome(out);
    }
    if (!regs.atschk) {
      this.ok(out, pa, VIA_ATS, -1);
      return this.outcome(out);
    }
    const status = this.lookupConfig(sid, this.fills.config);
    if (status !== CFG_OK) {
      this.abort(out, this.configErrorEvent(status, sid, true, true));
      return this.outcome(out);
    }
    const entry = this.cfgEntry as SteCacheEntry;
    switch (entry.kind) {
      case 'abort':
        this.abort(out, R_STE_ABORT);
        return this.outcome(out);
      case 'bypass':
        return forbidden();
      case 'invalid':
        this.emit({ kind: 'C_BAD_STE', streamId: sid >>> 0, ssv: false, substreamId: 0 }, (regs.cr2 & CR2_REC_CFG_ATS) !== 0);
        this.abort(out, R_BAD_STE);
        return this.outcome(out);
      case 's1':
      case 's2':
      case 'nested':
        break;
      default: {
        const impossible: never = entry.kind;
        return impossible;
      }
    }
    if (entry.ste.eats === 2) {
      this.abort(out, R_STAGE1);
      return this.outcome(out);
    }
    if (entry.ste.eats !== 1) return forbidden();
    this.ok(out, pa, VIA_ATS, -1);
    return this.outcome(out);
  }

  // --- Introspection -----------------------------------------------------------------------

  private tlbInfo(e: TlbEntry): TlbEntryInfo {
    return {
      vmid: e.vmid,
      granule: GRANULE_KINDS[e.gIndex] ?? '4K',
      level: e.level,
      ipa: e.base,
      size: e.size,
      pa: e.pa,
      read: (e.perms & PERM_R) !== 0,
      write: (e.perms & PERM_W) !== 0,
      sid: e.sid,
      seq: e.seq,
    };
  }

  private walkInfo(e: WalkEntry): WalkCacheEntryInfo {
    return { vmid: e.vmid, granule: GRANULE_KINDS[e.gIndex] ?? '4K', level: e.level, ipa: e.base, size: e.size, table: e.table, sid: e.sid, seq: e.seq };
  }

  private steInfo(e: SteCacheEntry): ConfigCacheEntryInfo {
    const s2 = e.s2;
    return {
      kind: 'ste',
      sid: e.sid,
      steKind: e.kind,
      illegal: e.illegal,
      ste: e.ste,
      words: e.words.map(u64ToHex),
      s2: s2 === null ? undefined : { vmid: s2.vmid, ttb: s2.ttb, granule: s2.granule.kind, startLevel: s2.startLevel, iaBits: s2.iaBits },
      fetchAddr: e.fetchAddr,
      seq: e.seq,
    };
  }

  private l1Info(e: L1CacheEntry): ConfigCacheEntryInfo {
    return {
      kind: 'l1std',
      l1Index: e.l1Index,
      sidBase: e.sidBase,
      sidCount: e.sidCount,
      span: e.span,
      l2ptr: e.l2ptr,
      raw: u64ToHex(u64(e.lo, e.hi)),
      fetchAddr: e.fetchAddr,
      seq: e.seq,
    };
  }

  /**
   * TLB entries in fill order. With `sid`, only entries that stream can hit: those tagged with the
   * VMID of its cached STE or of the STE now in memory (entries are shared by every stream with
   * the same VMID).
   */
  cachedTranslations(sid?: number): TlbEntryInfo[] {
    const all = this.caches.tlbEntries();
    if (sid === undefined) return all.map((e) => this.tlbInfo(e));
    const vmids = this.vmidsOf(sid);
    return all.filter((e) => vmids.has(e.vmid)).map((e) => this.tlbInfo(e));
  }

  /** VMIDs through which `sid` can translate: its cached STE's and its in-memory STE's. */
  vmidsOf(sid: number): Set<number> {
    const vmids = new Set<number>();
    const cached = this.config.stes.get(sid);
    if (cached?.s2 !== null && cached?.s2 !== undefined && cached.kind === 's2') vmids.add(cached.s2.vmid);
    if (this.fetchConfig(sid, false, false) === CFG_OK) {
      const now = this.cfgEntry as SteCacheEntry;
      if (now.kind === 's2' && now.s2 !== null) vmids.add(now.s2.vmid);
    }
    return vmids;
  }

  /** Stage-1 and combined S1+S2 TLB entries in fill order (plain data). */
  cachedS1Translations(): S1TlbEntryInfo[] {
    return this.s1caches.tlbEntries().map((e: S1TlbEntry) => ({
      vmid: e.vmid,
      asid: e.asid,
      global: e.global,
      granule: GRANULE_KINDS[e.gIndex] ?? '4K',
      level: e.level,
      va: e.base,
      size: e.size,
      ipa: e.ipa,
      pa: e.pa,
      read: (e.s1Perms & e.s2Perms & PERM_R) !== 0,
      write: (e.s1Perms & e.s2Perms & PERM_W) !== 0,
      nested: e.nested,
      sid: e.sid,
      seq: e.seq,
    }));
  }

  /** Stage-1 walk-cache entries (table descriptors; `table` is an IPA for nested streams). */
  s1WalkCacheEntries(): S1WalkCacheEntryInfo[] {
    return this.s1caches.walkEntries().map((e: S1WalkEntry) => ({ vmid: e.vmid, asid: e.asid, granule: GRANULE_KINDS[e.gIndex] ?? '4K', level: e.level, va: e.base, size: e.size, table: e.table, sid: e.sid, seq: e.seq }));
  }

  /** CDs held by the configuration cache (CD 0 per StreamID). */
  cachedCds(): { readonly sid: number; readonly asid: number; readonly illegal: string | undefined; readonly ttb0: number; readonly fetchAddr: number; readonly seq: number }[] {
    return [...this.config.cds.values()].map((c) => ({ sid: c.sid, asid: c.cd.asid, illegal: c.illegal, ttb0: c.cd.ttb0, fetchAddr: c.fetchAddr, seq: c.seq })).sort((a, b) => a.seq - b.seq);
  }

  walkCacheEntries(): WalkCacheEntryInfo[] {
    return this.caches.walkEntries().map((e) => this.walkInfo(e));
  }

  /** STEs and L1STDs held by the configuration cache, in fill order. */
  /**
   * The cached STEs and L1 descriptors that no longer equal what is in memory at the address
   * they were fetched from (a write without CFGI): the cheap form of comparing every
   * `configCacheEntries()` entry with memory, for checks run after every step.
   */
  staleConfigEntries(): ConfigCacheEntryInfo[] {
    const out: ConfigCacheEntryInfo[] = [];
    for (const e of this.config.stes.values()) {
      for (let i = 0; i < e.words.length; i++) {
        const now = this.memory.peek64(e.fetchAddr + i * 8);
        const was = e.words[i] as U64;
        if (now.lo !== was.lo || now.hi !== was.hi) {
          out.push(this.steInfo(e));
          break;
        }
      }
    }
    for (const e of this.config.l1.values()) {
      const now = this.memory.peek64(e.fetchAddr);
      if (now.lo !== e.lo || now.hi !== e.hi) out.push(this.l1Info(e));
    }
    return out.sort((a, b) => a.seq - b.seq);
  }

  configCacheEntries(): ConfigCacheEntryInfo[] {
    const stes = [...this.config.stes.values()].map((e) => this.steInfo(e));
    const l1s = [...this.config.l1.values()].map((e) => this.l1Info(e));
    return [...stes, ...l1s].sort((a, b) => a.seq - b.seq);
  }
}
