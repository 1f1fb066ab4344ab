/**
 * A host that attacks the emulation (issue 12 items 3 and 5): structured steps, weighted so that
 * campaigns reach the states where trap-and-emulate can go wrong, instead of hoping random words
 * encode them. Every step is still one of the host's real accesses (a trapped register access, a
 * command or STE it writes in its own memory) or a device transaction.
 *
 * - MSI targets: `*_IRQ_CFG0` aimed at pages the host owns now and may give away later, with the
 *   interrupts enabled, then a faulting DMA that makes the SMMU signal (series-as-posted.md §5.1);
 * - CMD_SYNC with CS = SIG_IRQ and MSIAddr on such a page (§5.2);
 * - queue and stream-table bases rewritten while enabled and around the enable edges, aimed at
 *   hypervisor pages, MMIO, the last page of a region;
 * - STEs with extreme host-controlled fields at the first and last StreamID and just beyond;
 * - CFGI_STE / CFGI_ALL with and without CMD_SYNC, and reserved encodings;
 * - forged Translated DMA from ATS-capable endpoints to any physical address (finding 1).
 */
import fc from 'fast-check';
import { type Command, encodeCommand } from '../impl/arch/smmu/commands.js';
import { REG } from '../impl/arch/smmu/registers.js';
import { STE_CONFIG, encodeSte, steFields } from '../impl/arch/smmu/ste.js';
import { type HardwareOperation } from './dma.js';
import { interestingPfns } from './arbitraries.js';
import { type MachineConfig } from './machine.js';

const PAGE = 4096;
const CR0_SMMUEN = 1;
const CR0_EVTQEN = 4;
const CR0_CMDQEN = 8;
/** IRQ_CTRL: GERROR_IRQEN | PRIQ_IRQEN | EVTQ_IRQEN. */
const IRQ_CTRL_ALL = 0b111;
const CS_SIG_IRQ = 1;

type Words4 = readonly [number, number, number, number];

function commandWords(cmd: Command): Words4 {
  const [a, b] = encodeCommand(cmd);
  return [a?.lo ?? 0, a?.hi ?? 0, b?.lo ?? 0, b?.hi ?? 0];
}

/** A 64-bit trapped store (the width the posted emulation accepts for 64-bit registers). */
function write64(offset: number, pa: number): HardwareOperation {
  return { kind: 'host_mmio_write', smmu: 0, offset, value: pa % 2 ** 32 >>> 0, size: 8, valueHi: Math.floor(pa / 2 ** 32) >>> 0 };
}

function write32(offset: number, value: number): HardwareOperation {
  return { kind: 'host_mmio_write', smmu: 0, offset, value: value >>> 0 };
}

/** Physical addresses an attacker aims at: the pages the operations give away, region edges, the SMMU frame. */
function targetPages(machine: MachineConfig): number[] {
  const { hot, edges } = interestingPfns(machine);
  return [...hot, ...edges, ...(machine.smmu === undefined ? [] : [machine.smmu.base / PAGE])];
}

/** Host-attack chains for a machine with an SMMU (empty arbitrary list without one). */
export function hostAttackArbitrary(machine: MachineConfig): fc.Arbitrary<HardwareOperation[]> {
  const smmu = machine.smmu;
  if (smmu === undefined) return fc.constant([]);
  const targets = targetPages(machine);
  const { hot } = interestingPfns(machine);
  const target = fc.tuple(fc.constantFrom(...targets), fc.constantFrom(0, 0x40, 0xffc)).map(([p, o]) => p * PAGE + o);
  const sids = smmu.devices.map((d) => d.sid);
  const atsSids = smmu.features?.ats === false ? [] : smmu.devices.filter((d) => d.ats).map((d) => d.sid);
  const u32 = fc.oneof(fc.constant(0), fc.constant(0xffff_ffff), fc.integer({ min: 0, max: 0xffff_ffff }));
  // A DMA the SMMU faults on (the SMMU frame is never in the idmap): an event record and its MSI.
  const faultingDma: HardwareOperation = { kind: 'dma', sid: sids[0] ?? 0, addr: smmu.base, access: 'read' };
  const cfg0 = fc.constantFrom(REG.GERROR_IRQ_CFG0, REG.EVTQ_IRQ_CFG0, REG.PRIQ_IRQ_CFG0);

  const msiTarget = fc.tuple(cfg0, target, u32, fc.boolean()).map(([offset, pa, data, enable]): HardwareOperation[] => [
    write64(offset, pa),
    write32(offset + 8, data),
    ...(enable ? [write32(REG.IRQ_CTRL, IRQ_CTRL_ALL)] : []),
    faultingDma,
  ]);
  const syncMsi = fc.tuple(target, u32, fc.constantFrom(0, 1, 2)).map(([pa, data, cs]): HardwareOperation[] => [
    { kind: 'host_write_cmd', smmu: 0, words: commandWords({ kind: 'CMD_SYNC', cs: cs === 2 ? 2 : cs === 1 ? CS_SIG_IRQ : 0, msh: 0, msiattr: 0, msidata: data, msiaddr: pa - (pa % 4) }) },
  ]);
  // Bases rewritten while the queue or table is enabled, and around the CR0 edges.
  const base = fc.tuple(fc.constantFrom(REG.CMDQ_BASE, REG.STRTAB_BASE, REG.EVTQ_BASE, REG.PRIQ_BASE), fc.constantFrom(...targets), fc.integer({ min: 0, max: 3 })).map(([offset, p, edge]): HardwareOperation[] => {
    const rewrite = write64(offset, p * PAGE);
    return [
      [rewrite],
      [write32(REG.CR0, CR0_CMDQEN), rewrite, write32(REG.CR0, CR0_CMDQEN | CR0_EVTQEN | CR0_SMMUEN)],
      [rewrite, write32(REG.CR0, CR0_CMDQEN | CR0_EVTQEN | CR0_SMMUEN)],
      [write32(REG.CR0, 0), rewrite, write32(REG.CR0, CR0_CMDQEN | CR0_EVTQEN), write32(REG.CR0, CR0_CMDQEN | CR0_EVTQEN | CR0_SMMUEN)],
    ][edge] as HardwareOperation[];
  });
  const strtabCfg = fc.tuple(fc.integer({ min: 0, max: 31 }), fc.constantFrom(0, 1), fc.integer({ min: 0, max: 31 })).map(([log2size, fmt, split]): HardwareOperation[] => [
    write32(REG.STRTAB_BASE_CFG, (log2size | (split << 6) | (fmt << 16)) >>> 0),
  ]);
  // STEs with every host-controlled field of dwords 0-1 at an extreme, at the first and last
  // StreamID the host's table holds and just beyond.
  const sidEdge = fc.constantFrom(0, ...sids, 63, 64, 255, 256);
  const ste = fc
    .tuple(sidEdge, fc.constantFrom(STE_CONFIG.ABORT, STE_CONFIG.BYPASS, STE_CONFIG.S1_TRANS, STE_CONFIG.S2_TRANS, STE_CONFIG.NESTED, 0b001, 0b011), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 }), fc.constantFrom(0, ...targets.map((p) => p * PAGE)))
    .map(([sid, config, eats, strw, cdPtr]): HardwareOperation[] => {
      const words = encodeSte(steFields({ v: true, config, eats, strw, s1ContextPtr: cdPtr - (cdPtr % 64), s1cdmax: 31, shcfg: 1 }));
      const w0 = words[0];
      const w1 = words[1];
      return [{ kind: 'host_write_ste', smmu: 0, sid, words: [w0?.lo ?? 0, w0?.hi ?? 0, w1?.lo ?? 0, w1?.hi ?? 0] }];
    });
  const cfgi = fc.tuple(sidEdge, fc.constantFrom('ste', 'all', 'reserved'), fc.boolean()).map(([sid, what, sync]): HardwareOperation[] => {
    const words: Words4 =
      what === 'ste' ? commandWords({ kind: 'CFGI_STE', ssec: false, sid, leaf: true }) : what === 'all' ? commandWords({ kind: 'CFGI_ALL', ssec: false, sid: 0 }) : [0x7f, 0, 0, 0];
    return [{ kind: 'host_write_cmd', smmu: 0, words }, ...(sync ? [{ kind: 'host_write_cmd' as const, smmu: 0, words: commandWords({ kind: 'CMD_SYNC', cs: 0, msh: 0, msiattr: 0, msidata: 0, msiaddr: 0 }) }] : [])];
  });
  const chains: fc.WeightedArbitrary<HardwareOperation[]>[] = [
    { weight: 3, arbitrary: msiTarget },
    { weight: 3, arbitrary: syncMsi },
    { weight: 2, arbitrary: base },
    { weight: 1, arbitrary: strtabCfg },
    { weight: 2, arbitrary: ste },
    { weight: 2, arbitrary: cfgi },
  ];
  if (atsSids.length > 0) {
    const access = fc.constantFrom('read' as const, 'write' as const);
    const pa = fc.tuple(fc.constantFrom(...targets, ...hot), fc.constantFrom(0, 0x40)).map(([p, o]) => p * PAGE + o);
    chains.push({ weight: 3, arbitrary: fc.record({ kind: fc.constant('dma_forged_translated' as const), sid: fc.constantFrom(...atsSids), pa, access }).map((o): HardwareOperation[] => [o]) });
  }
  return fc.oneof(...chains);
}
