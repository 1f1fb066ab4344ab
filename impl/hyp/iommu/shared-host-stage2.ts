/**
 * The `shared-cpu-s2` design (issue 6; v6 review, PATCH 08/25, "Is there a reason you can't just
 * use the CPU S2 for the iommu?", seeds/000-pkvm-smmuv3-v6-review.md): no shadow table at all —
 * every shadowed STE points the SMMU at the host CPU stage-2 itself (its PGD, the host's VTCR,
 * VMID 0). What the design needs, and what this file provides:
 *  - the stage-2 registers the STE is built from (`hostStage2Regs`);
 *  - SMMU TLB maintenance wherever the host stage-2 code invalidates the CPU's TLB, including
 *    inside its break-before-make sequences (`SmmuMirroredStage2Tlb`): the SMMU caches the same
 *    descriptors, so each CPU TLBI is followed by the SMMU one and its CMD_SYNC;
 *  - the prepopulated variant's boot step (`prepopulateHostStage2`);
 *  - what a device reaches through it, for the checks (`HostStage2DmaView`).
 *
 * Why it is tempting: no second table to keep in sync, no idmap memory, no hook. Why the series
 * does not do it: the host stage-2 is populated lazily by host CPU faults, so a device faults on
 * any page the CPU has not touched yet (and the SMMU cannot take a stage-2 fault and retry the
 * way a CPU does), and every block split is break-before-make, so DMA to the rest of the block
 * faults while the entry is broken. The pKVM software bits in host descriptors (page state,
 * owner annotations, LOCKED) sit where the SMMU ignores them (valid descriptors: bits 55–58;
 * invalid descriptors are never interpreted), so the table itself is a legal SMMU stage-2.
 */
import { EEXIST, EPERM } from '../../arch/errno.js';
import { GRANULE_4K, levelSize, paSizeEncoding } from '../../arch/granule.js';
import { type PhysicalMemory } from '../../arch/physical-memory.js';
import { type IoPgtableS2Regs } from '../../pgtable/io-pgtable-arm.js';
import { type Stage2Tlb } from '../../pgtable/kvm-pgtable.js';
import { Stage2Walker, WALK_OK, newWalkResult } from '../../pgtable/stage2-walk.js';
import { type HostStage2 } from '../host-stage2.js';
import { type IdmapTlbOps } from './idmap.js';

const PAGE = 4096;

/** A stage-2 table a device's DMA is translated by, as the checks see it. */
export interface DmaStage2View {
  /** For messages: 'shadow idmap' or 'host stage-2'. */
  readonly name: string;
  /** What the table maps at `ipa` right now (the leaf's output and permissions), or undefined. */
  translate(ipa: number): { pa: number; read: boolean; write: boolean } | undefined;
  /** Physical addresses of the table pages the SMMU walks (DMA must never reach them). */
  tablePages(): readonly number[];
}

/**
 * The STE stage-2 fields for the host stage-2: T0SZ from the host's IPA range, SL0 from KVM's
 * start level (4K: level 2 → 0, 1 → 1, 0 → 2), inner-shareable write-back walks as KVM's VTCR.
 * PS, as in KVM's VTCR, is the physical address size rather than the IPA size: it must cover the
 * table pages too, which the simulation keeps in the hypervisor carve-out above the host's IPA
 * range (impl/system.ts). Choice: the SMMU's OAS, capped at 48 bits (the 4K granule without DS).
 */
export function hostStage2Regs(hostS2: HostStage2, oasBits: number): IoPgtableS2Regs {
  const pgt = hostS2.pgt;
  if (pgt.granule !== GRANULE_4K) throw new Error('shared-cpu-s2: the host stage-2 uses the 4K granule');
  const ps = paSizeEncoding(Math.min(48, oasBits));
  if (ps === undefined) throw new Error(`shared-cpu-s2: no PS encoding for ${oasBits} bits`);
  return { vttbr: pgt.pgd, vtcr: { ps, tg: GRANULE_4K.tg0, sh: 3, irgn: 1, orgn: 1, sl: ~(pgt.startLevel + 1) & 3, tsz: 64 - pgt.iaBits } };
}

/**
 * The host stage-2's TLB maintenance, sent to the CPU and then to every SMMU (VMID 0), each SMMU
 * invalidation completed by CMD_SYNC before the page-table code goes on — so a break-before-make
 * "make" is never visible to the SMMU while it may still hold the old translation.
 *
 * Choices: a one-IPA CPU invalidation becomes a Leaf = 0 range invalidation of that page (all
 * levels and walk caches: the CPU's TLBI IPAS2E1IS with a level hint is "this entry at that
 * level", which the SMMU's TTL expresses only for leaf invalidations); a range becomes a range
 * (or a whole-VMID invalidation without RIL, as `kvm_tlb_flush_vmid_range` does without
 * FEAT_TLBIRANGE). `smmu` is attached once the SMMU driver exists; before that (boot) nothing
 * can be cached.
 */
export class SmmuMirroredStage2Tlb implements Stage2Tlb {
  smmu: (IdmapTlbOps & { readonly rangeInvalidation: boolean }) | undefined;

  constructor(private readonly cpu: Stage2Tlb) {}

  flushVmidIpa(ipa: number, level: number): void {
    this.cpu.flushVmidIpa(ipa, level);
    this.smmu?.invalidateRange(ipa - (ipa % PAGE), PAGE, PAGE, false);
  }

  flushVmidIpaNsh(ipa: number, level: number): void {
    // Local to the CPU for the CPU; the SMMU is another observer and still needs it.
    this.cpu.flushVmidIpaNsh(ipa, level);
    this.smmu?.invalidateRange(ipa - (ipa % PAGE), PAGE, PAGE, false);
  }

  flushVmidRange(addr: number, size: number): void {
    this.cpu.flushVmidRange(addr, size);
    if (this.smmu === undefined) return;
    if (this.smmu.rangeInvalidation) this.smmu.invalidateRange(addr, size, PAGE, false);
    else this.smmu.invalidateAll();
  }

  flushVmid(): void {
    this.cpu.flushVmid();
    this.smmu?.invalidateAll();
  }
}

/**
 * `shared-cpu-s2-prepopulated`: at boot, before any driver runs, fault in the whole host PA range
 * the way host CPU faults would (`host_stage2_idmap` for each empty slot: the largest block the
 * memory map allows, device memory for the gaps). Returns 0 or the first unexpected error.
 */
export function prepopulateHostStage2(hostS2: HostStage2): number {
  const pgt = hostS2.pgt;
  const limit = 2 ** pgt.iaBits;
  for (let addr = 0; addr < limit; ) {
    const r = hostS2.idmap(addr);
    // -EEXIST: already mapped; -EPERM: annotated (owned by someone else) — both are left alone.
    if (r !== 0 && r !== -EEXIST && r !== -EPERM) return r;
    const leaf = pgt.getLeaf(addr);
    const span = levelSize(pgt.granule, leaf.level);
    addr = addr - (addr % span) + span;
  }
  return 0;
}

/** What a device reaches through the host stage-2 (a hardware-style walk of the live table). */
export class HostStage2DmaView implements DmaStage2View {
  readonly name = 'host stage-2';
  private readonly walker: Stage2Walker;
  private readonly out = newWalkResult();

  constructor(
    memory: PhysicalMemory,
    private readonly hostS2: HostStage2,
  ) {
    this.walker = Stage2Walker.forRoot(memory, hostS2.pgt.root(), hostS2.pgt.iaBits);
  }

  translate(ipa: number): { pa: number; read: boolean; write: boolean } | undefined {
    if (this.walker.walk(ipa, this.out) !== WALK_OK) return undefined;
    // S2AP: bit 6 read, bit 7 write.
    return { pa: this.out.pa, read: (this.out.lo & (1 << 6)) !== 0, write: (this.out.lo & (1 << 7)) !== 0 };
  }

  tablePages(): readonly number[] {
    return [...this.hostS2.pgt.tablePages().keys()];
  }
}
