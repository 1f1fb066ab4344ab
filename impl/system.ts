/**
 * Composition root: `createSystem(config)` builds and boots a machine — physical memory, the
 * host CPU, and the pKVM hypervisor with its host stage-2, vmemmap, pools and VM table.
 *
 * Simulation choice: the hypervisor's private memory (host stage-2 table pool, the VM memcache,
 * the guest PGD carve-out) is a RAM region placed just above the host's PA range. In the kernel
 * it is memblock memory reserved and donated to EL2 at boot, so the host can never reach it; here
 * the host cannot even name it (its IPAs stop at 2^physShift), which gives the same isolation
 * without making every boot-time donation part of every abstract state.
 */
import { GRANULE_4K, kvmStage2StartLevel } from './arch/granule.js';
import { PhysicalMemory, type RegionSpec } from './arch/physical-memory.js';
import { s2Format } from './arch/s2-descriptor.js';
import { HostCpu } from './hw/cpu.js';
import { HostStage2 } from './hyp/host-stage2.js';
import { Hypervisor } from './hyp/hypervisor.js';
import { HypMemcache } from './hyp/memcache.js';
import { HypMemoryMap, type MemblockRegion } from './hyp/memory-map.js';
import { Vmemmap } from './hyp/vmemmap.js';
import { PagePool } from './pgtable/page-allocator.js';
import { Stage2Walker } from './pgtable/stage2-walk.js';
import { SMMU_FRAME_SIZE } from './arch/smmu/registers.js';
import { DmaDevice } from './hw/device.js';
import { Smmu, type SmmuMode } from './hw/smmu/smmu.js';
import { type SmmuFeatures as SmmuHwFeatures } from './hw/smmu/features.js';
import { HostSmmuDriver } from './host/smmu-host-driver.js';
import { type IdmapHookPlacement } from './hyp/host-stage2.js';
import { type YieldPoint } from './hyp/hypervisor.js';
import { ShadowIdmap } from './hyp/iommu/idmap.js';
import { type DmaStage2View, HostStage2DmaView, SmmuMirroredStage2Tlb, hostStage2Regs, prepopulateHostStage2 } from './hyp/iommu/shared-host-stage2.js';
import { type DriverOptions, HypSmmuDriver } from './hyp/smmu-driver/driver.js';

export interface SystemConfig {
  /** CPU PARange in bits: the host stage-2 covers [0, 2^physShift). */
  readonly physShift: number;
  /** memblock regions (RAM the host reported), sorted, page aligned. */
  readonly memory: readonly MemblockRegion[];
  /** Pages set aside for the hypervisor's VM bookkeeping (the memcache). */
  readonly poolPages: number;
  readonly maxVms: number;
  /** Pages `init_vm` takes for the VM and vCPU structures (the PGD comes on top). */
  readonly vmStructPages: number;
  /** Table pages of the host stage-2 pool; default: enough to map all memory with pages. */
  readonly hostS2PoolPages?: number;
  /** An SMMUv3 with devices behind it, driven by the pKVM driver (SER-T&E). */
  readonly smmu?: SmmuConfig;
}

export interface SmmuConfig {
  /** Physical address of the 128 KiB register frame, in an MMIO gap. */
  readonly base: number;
  readonly features?: Partial<SmmuHwFeatures>;
  readonly mode?: SmmuMode;
  readonly devices: readonly { readonly sid: number; readonly ats: boolean }[];
  readonly driver?: DriverOptions;
  readonly hookPlacement?: IdmapHookPlacement;
  /** Two host-owned pages (command queue, stream table) the host driver uses. */
  readonly hostPages: readonly [number, number];
}

/** The IOMMU part of a system: hardware, the hypervisor's driver and idmap, the host driver. */
export interface IommuParts {
  readonly smmu: Smmu;
  readonly devices: ReadonlyMap<number, DmaDevice>;
  readonly driver: HypSmmuDriver;
  readonly hostDriver: HostSmmuDriver;
  readonly pool: PagePool;
  /** The series' shadow idmap; undefined before boot and in the shared-cpu-s2 designs. */
  idmap: ShadowIdmap | undefined;
  /** The stage-2 the shadowed STEs translate by (the idmap, or the host stage-2), once booted. */
  dmaStage2: DmaStage2View | undefined;
}

export interface System {
  readonly config: SystemConfig;
  readonly memory: PhysicalMemory;
  readonly cpu: HostCpu;
  readonly hyp: Hypervisor;
  readonly hostS2: HostStage2;
  readonly vmemmap: Vmemmap;
  readonly memcache: HypMemcache;
  readonly hostS2Pool: PagePool;
  readonly iommu: IommuParts | undefined;
  /**
   * What hardware does while the hypervisor waits at a yield point; by default the SMMU consumes
   * every queued command. A runner replaces it to interleave (ARCHITECTURE §4).
   */
  stepHardware: (point: YieldPoint) => void;
}

const PAGE = 4096;

/** Yield points where the hypervisor busy-waits on the SMMU (impl/hyp/smmu-driver/). */
const WAIT_POINTS: ReadonlySet<string> = new Set(['cmdq_poll', 'cmdq_wait_space', 'cr0ack_poll']);

/**
 * Host memory the host kernel allocated for the SMMU below its queue and stream-table pages:
 * 64 KiB-aligned, 16 pages — [0, 4) the host's L2 stream table (16 KiB), 4 its event queue, and
 * what the EL1 part of the pKVM driver allocates for EL2 and the hypervisor takes by donation at
 * init (posted v6-era `smmu_init`, `smmu_init_cmdq`, `smmu_init_strtab`): 5 the smmu array,
 * 6 the hypervisor's command queue, [8, 12) its stream table. Inferred placement: the series
 * leaves it to the kernel allocator; these are host-owned memory pages inside the host's PA space,
 * annotated for the hypervisor before the idmap snapshot, which skips them.
 */
export function hostKernelArea(smmu: SmmuConfig): number {
  const low = Math.min(smmu.hostPages[0], smmu.hostPages[1]) - 16 * PAGE;
  return low - (low % 0x1_0000);
}

/**
 * The IOMMU page pool (`kvm_iommu_init(pool_base, nr_pages)`: the idmap's tables and the
 * hypervisor's L2 stream tables). It is hypervisor memory reserved at boot inside host RAM — below
 * the host kernel's SMMU area — and annotated in the host stage-2 before the snapshot, as pKVM's
 * boot annotates all of its memory (`fix_host_ownership`), so the snapshot must skip it and the
 * isolation checks see it as protected (series-as-posted.md §2.4 last row). Inferred size: enough
 * tables to map all memory page by page, plus 64 pages.
 */
export function iommuPoolRange(config: SystemConfig, smmu: SmmuConfig): { base: number; pages: number } {
  const pages = Math.ceil((hostS2PgtablePages(config) + 64) / 16) * 16;
  return { base: hostKernelArea(smmu) - pages * PAGE, pages };
}

/**
 * Host RAM for the host's DMA-domain page tables and CD tables (impl/host/dma-domain.ts): 32
 * pages right below the IOMMU pool, 64 KiB aligned (inferred: any host memory would do; this
 * keeps it clear of the pages the generators name). Undefined when that is not RAM.
 */
export function hostDmaArea(config: SystemConfig, smmu: SmmuConfig): { base: number; pages: number } | undefined {
  const pages = HOST_DMA_AREA_PAGES;
  const top = iommuPoolRange(config, smmu).base - pages * PAGE;
  const base = top - (top % 0x1_0000);
  const inRam = config.memory.some((r) => r.nomap !== true && base >= r.base && base + pages * PAGE <= r.base + r.size);
  return inRam ? { base, pages } : undefined;
}

export const HOST_DMA_AREA_PAGES = 32;

/** `host_s2_pgtable_pages()`: enough table pages to map every memory page with page granularity. */
export function hostS2PgtablePages(config: SystemConfig): number {
  const pages = config.memory.reduce((n, r) => n + r.size / PAGE, 0);
  let total = 0;
  let level = pages;
  for (let l = 0; l < 4; l++) {
    level = Math.ceil(level / 512);
    total += level;
  }
  // The PGD (up to 16 concatenated pages) and headroom for MMIO mappings.
  return total + 16 + 64;
}

export function createSystem(config: SystemConfig): System {
  const limit = 2 ** config.physShift;
  const hostS2PoolPages = config.hostS2PoolPages ?? hostS2PgtablePages(config);
  const pgdCarveoutBytes = 64 * PAGE * Math.max(1, config.maxVms);
  // Layout of the hypervisor carve-out: [host stage-2 pool][guest PGD carve-out][memcache].
  const hostPoolBase = limit;
  const pgdBase = hostPoolBase + Math.ceil((hostS2PoolPages * PAGE) / (64 * PAGE)) * 64 * PAGE;
  const memcacheBase = pgdBase + pgdCarveoutBytes;
  const carveoutEnd = memcacheBase + Math.ceil((config.poolPages * PAGE) / (64 * PAGE)) * 64 * PAGE;
  const iommuPool = config.smmu === undefined ? undefined : iommuPoolRange(config, config.smmu);
  const regions: RegionSpec[] = config.memory.map((r, i) => ({ name: `ram${i}`, kind: 'ram', base: r.base, size: r.size, nomap: r.nomap }));
  regions.push({ name: 'hyp-carveout', kind: 'ram', base: hostPoolBase, size: Math.max(PAGE, carveoutEnd - hostPoolBase) });
  if (config.smmu !== undefined) regions.push({ name: 'smmu0', kind: 'mmio', base: config.smmu.base, size: SMMU_FRAME_SIZE });
  const memory = new PhysicalMemory(regions);

  const format = s2Format(GRANULE_4K, { annotation: 'typed' });
  const memoryMap = new HypMemoryMap(config.memory, limit);
  const vmemmap = new Vmemmap(config.memory);
  const hostS2Pool = new PagePool(memory, hostPoolBase, Math.max(PAGE, hostS2PoolPages * PAGE));
  const pgdCarveout = new PagePool(memory, pgdBase, pgdCarveoutBytes);
  const memcache = new HypMemcache(memory, memcacheBase, config.poolPages);

  let walker: Stage2Walker | undefined;
  let hostS2Ref: HostStage2 | undefined;
  const cpu = new HostCpu(
    memory,
    () => {
      walker ??= Stage2Walker.forRoot(memory, (hostS2Ref as HostStage2).pgt.root(), config.physShift);
      return walker;
    },
    GRANULE_4K,
  );
  // shared-cpu-s2: the SMMU walks the host stage-2, so its TLB maintenance goes to the SMMU too.
  const sharedS2 = config.smmu?.driver?.dmaStage2 === 'host-stage2';
  const hostS2Tlb = sharedS2 ? new SmmuMirroredStage2Tlb(cpu.tlb) : cpu.tlb;
  const hostS2 = new HostStage2(memory, memoryMap, hostS2Pool, hostS2Tlb, format, config.physShift);
  hostS2Ref = hostS2;
  if (hostS2.pgt.startLevel !== kvmStage2StartLevel(GRANULE_4K, config.physShift)) throw new Error('unexpected host stage-2 start level');
  // __pkvm_prot_finalize: TLBI VMALLS12E1 — nothing is cached yet, the call documents the step.
  cpu.tlb.flushVmid();
  const hyp = new Hypervisor(memory, memoryMap, vmemmap, hostS2, cpu, memcache, pgdCarveout, {
    physShift: config.physShift,
    maxVms: config.maxVms,
    vmStructPages: config.vmStructPages,
    format,
  });
  let iommu: IommuParts | undefined;
  if (config.smmu !== undefined) {
    const smmu = new Smmu(memory, { base: config.smmu.base, features: { gbpaResetAbort: true, ...config.smmu.features }, mode: config.smmu.mode ?? 'strict' });
    const devices = new Map(config.smmu.devices.map((d) => [d.sid, new DmaDevice(smmu, memory, { sid: d.sid, ats: d.ats })]));
    const pool = new PagePool(memory, (iommuPool as { base: number }).base, (iommuPool as { pages: number }).pages * PAGE);
    const area = hostKernelArea(config.smmu);
    const driver = new HypSmmuDriver(memory, hyp, config.smmu.base, pool, config.smmu.driver, { smmuArray: area + 5 * PAGE, cmdq: area + 6 * PAGE, strtab: area + 8 * PAGE });
    const dmaArea = hostDmaArea(config, config.smmu);
    const hostDriver = new HostSmmuDriver(hyp, memory, config.smmu.base, { cmdqBase: config.smmu.hostPages[0], strtabBase: config.smmu.hostPages[1], l2Base: area, evtqBase: area + 4 * PAGE, ...(dmaArea === undefined ? {} : { dmaArea }) });
    // The machine may fix the hook placement; otherwise the design's knob, else the posted one.
    hostS2.hookPlacement = config.smmu.hookPlacement ?? config.smmu.driver?.hookPlacement ?? 'set-owner-only';
    if (hostS2Tlb instanceof SmmuMirroredStage2Tlb) hostS2Tlb.smmu = driver;
    iommu = { smmu, devices, driver, hostDriver, pool, idmap: undefined, dmaStage2: undefined };
  }
  const system: System = {
    config,
    memory,
    cpu,
    hyp,
    hostS2,
    vmemmap,
    memcache,
    hostS2Pool,
    iommu,
    stepHardware: (point) => {
      // The SMMU makes progress only while the hypervisor waits for it (polling CONS or CR0ACK):
      // as slow as the architecture lets it be, so a driver that does not wait for its CMD_SYNC
      // returns with the invalidation still queued.
      if (iommu === undefined || !WAIT_POINTS.has(point.at)) return;
      for (let i = 0; i < 4096; i++) if (iommu.smmu.consumeOneCommand().kind !== 'consumed') break;
    },
  };
  if (iommu !== undefined) iommu.driver.stepHardware = (point) => system.stepHardware(point);
  return system;
}

/**
 * Boots the IOMMU side (pKVM `module_init` then the host's SMMU driver): the hypervisor driver
 * takes the SMMU (MMIO donation, probe, reset), the shadow idmap is built and snapshotted from
 * the host stage-2, then the host driver programs the emulated SMMU and attaches every device
 * for identity DMA. Returns 0 or the first error.
 */
export function bootIommu(sys: System): number {
  const parts = sys.iommu;
  if (parts === undefined) return 0;
  const step = (p: YieldPoint) => sys.stepHardware(p);
  const options = parts.driver.options;
  const shared = options.dmaStage2 === 'host-stage2';
  // Prepopulation happens with the host stage-2 set-up, before any driver (pKVM init).
  if (shared && options.prepopulateHostStage2 === true) {
    const p = prepopulateHostStage2(sys.hostS2);
    if (p !== 0) return p;
  }
  // pKVM boot: the IOMMU pool is hypervisor memory annotated in the host stage-2 (fix_host_ownership);
  // its abstract effect is a donation (host NOPAGE, hyp OWNED), recorded so the model sees it.
  const range = iommuPoolRange(sys.config, sys.config.smmu as SmmuConfig);
  const poolPfn = range.base / PAGE;
  let r = sys.hyp.run(sys.hyp.internal({ kind: 'host_donate_hyp', pfn: poolPfn, nrPages: range.pages }, sys.hyp.hostDonateHyp(poolPfn, range.pages)), step);
  if (r !== 0) return r;
  // The firmware's dma-coherent property is taken to describe the SMMU as it is (IDR0.COHACC);
  // the driver refuses a non-coherent SMMU.
  // ops->init (smmu_init, which ends with smmu_init_pgt's "At least PAGE_SIZE must be supported
  // by all SMMUs" → -EINVAL, everything given back), then the snapshot (kvm_iommu_init).
  r = sys.hyp.run(parts.driver.init(sys.config.smmu?.features?.cohacc ?? true), step);
  if (r !== 0) return r;
  const f = parts.driver.features;
  if (f === undefined) return -22;
  if (shared) {
    // No idmap and no hook: the host stage-2 is the SMMU's table (shared-host-stage2.ts).
    parts.driver.stage2 = hostStage2Regs(sys.hostS2, f.oas);
    parts.dmaStage2 = new HostStage2DmaView(sys.memory, sys.hostS2);
  } else {
    const idmap = new ShadowIdmap(sys.memory, sys.hyp.memoryMap, parts.pool, { oas: Math.min(48, f.oas), pgsizeBitmap: f.pgsizeBitmap, memoryBlocks: options.idmapMemoryBlocks === true }, parts.driver);
    parts.idmap = idmap;
    parts.dmaStage2 = idmap;
    if (idmap.cfg.s2 === undefined) return -22;
    parts.driver.stage2 = idmap.cfg.s2;
    sys.hostS2.idmapHook = (start, end, prot) => idmap.onHostOwnershipChange(start, end, prot);
    r = idmap.snapshot(sys.hostS2);
    if (r !== 0) return r;
  }
  sys.hyp.run(parts.hostDriver.init(), step);
  for (const [sid, device] of parts.devices) sys.hyp.run(parts.hostDriver.attachIdentity(sid, device.ats), step);
  return 0;
}
