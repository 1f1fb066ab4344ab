/**
 * The known findings against the design as read (README "DMA isolation", properties/dma.test.ts,
 * conformance/corpus/findings/): each is reached through a step of its own, which campaigns that
 * must not stop on it leave out (`notAKnownFinding`: the zoo, the design matrix, the report's
 * campaigns, the random DMA properties), and which the report reproduces apart.
 */
import { decodeCommand } from '../impl/arch/smmu/commands.js';
import { u64 } from '../impl/arch/u64.js';
import { type CheckName } from './checks.js';
import { type Step } from './runner.js';

/**
 * A finding about the design as read (README "DMA isolation", dma.test.ts, corpus findings/)
 * that generated runs on any SMMU machine reach through a step of their own: campaigns that must
 * not stop on it leave those steps out (`notAKnownFinding`), and the report reproduces it apart.
 */
export interface KnownFinding {
  readonly name: string;
  readonly description: string;
  readonly check: CheckName;
  /** The steps that reach it. */
  readonly reachedBy: (o: Step) => boolean;
  /** The same predicate in words, for the report. */
  readonly reachedByText: string;
  /** Its file under conformance/corpus/, whose operations are `trigger`. */
  readonly corpusFile: string;
  /** A sequence that reaches it, for when a search budget misses it (the corpus file's). */
  readonly trigger: readonly Step[];
}

/** Commands the series forwards whose legality depends on the SMMU's features (checkCommand). */
const FEATURE_DEPENDENT_COMMANDS: ReadonlySet<string> = new Set(['RESUME', 'STALL_TERM', 'PRI_RESP', 'ATC_INV']);

/** The kind of the command a host_write_cmd step writes, or 'illegal' (which the series drops). */
function hostCommandKind(words: readonly [number, number, number, number]): string {
  return decodeCommand([u64(words[0], words[1]), u64(words[2], words[3])]).kind;
}

export const KNOWN_FINDINGS: readonly KnownFinding[] = [
  {
    name: 'mmio-donated-after-snapshot',
    description: 'MMIO donated to the hypervisor after the snapshot stays mapped in the shadow idmap: a 1 GiB block over the MMIO gap cannot be partially unmapped ("as it is never donated at the moment")',
    check: 'dma_isolation',
    reachedBy: (o) => o.kind === 'host_donate_hyp_mmio',
    reachedByText: '`host_donate_hyp_mmio`',
    corpusFile: 'findings/mmio-donated-after-snapshot.json',
    trigger: [{ kind: 'host_donate_hyp_mmio', pfn: 0x9000 }],
  },
  {
    name: 'smmu-disabled-skips-tlbi',
    description: 'TLB maintenance is skipped while the host keeps the SMMU disabled (CR0 = 0): an entry cached before survives a donation and is used once the host re-enables the SMMU',
    check: 'dma_isolation',
    reachedBy: (o) => o.kind === 'host_mmio_write' && o.offset === 0x20,
    reachedByText: '`host_mmio_write` to CR0 (offset 0x20)',
    corpusFile: 'findings/smmu-disabled-skips-tlbi.json',
    trigger: [
      { kind: 'dma', sid: 1, addr: 0x4000_1000, access: 'read' },
      { kind: 'host_mmio_write', smmu: 0, offset: 0x20, value: 0 },
      { kind: 'init_vm', vm: 1, protected: true },
      { kind: 'host_donate_guest', pfn: 0x40001, gfn: 2, vm: 1 },
      { kind: 'host_mmio_write', smmu: 0, offset: 0x20, value: 0x9 },
      { kind: 'dma', sid: 1, addr: 0x4000_1000, access: 'read' },
    ],
  },
  {
    name: 'host-command-stops-hyp-queue',
    description:
      'the series forwards every host command it has no case for; one this SMMU rejects (RESUME / STALL_TERM without the stall model, PRI_RESP without PRI, ATC_INV without ATS) stops the hypervisor\'s command queue with CERROR_ILL, which the host cannot clear (it fixes its own queue): every later TLBI times out inside io-pgtable\'s void flush callbacks and a donation returns with the page still in the SMMU TLB',
    check: 'dma_isolation',
    reachedBy: (o) => o.kind === 'host_write_cmd' && FEATURE_DEPENDENT_COMMANDS.has(hostCommandKind(o.words)),
    reachedByText: '`host_write_cmd` of RESUME, STALL_TERM, PRI_RESP or ATC_INV',
    corpusFile: 'findings/host-command-stops-hyp-queue.json',
    trigger: [
      { kind: 'host_write_cmd', smmu: 0, words: [0x44, 0, 0, 0] },
      { kind: 'dma', sid: 1, addr: 0x4000_2000, access: 'read' },
      { kind: 'host_donate_hyp', pfn: 0x40002, nrPages: 1 },
    ],
  },
];

/** False for the steps that reach a known finding (so a detection is not that finding's). */
export function notAKnownFinding(o: Step): boolean {
  return !KNOWN_FINDINGS.some((f) => f.reachedBy(o));
}

