/**
 * QEMU's `virt` board with an SMMUv3 and edu DMA engines, driven over qtest: command line, board
 * facts from QEMU's DTB, PCI enumeration and BAR assignment, and 4-byte edu transfers.
 *
 * Facts (qemu-smmuv3-peer.md §1, §2, §7): `-M virt,iommu=smmuv3 -cpu cortex-a57` (44-bit PA,
 * high ECAM); TCG + `-icount shift=0,sleep=off` with a `wfi; b .-4` loop at the top of RAM lets
 * edu's timer-driven DMA finish before the first status poll; every edu needs
 * `dma_mask=0xffffffffffffffff` (the default masks IOVAs to 28 bits); edu transfers are at most
 * 4 KiB (`edu_check_range` only logs in 10.0) and this harness uses 4 bytes so that one transfer is
 * one translation. edu registers (QEMU docs/specs/edu.rst): 0x00 ID, 0x80 DMA source, 0x88 DMA
 * destination, 0x90 count, 0x98 command (bit 0 start/busy, bit 1 EDU → RAM); its buffer is at DMA
 * address 0x40000. PCI: vendor/device at config 0x00, COMMAND at 0x04 (bit 1 memory, bit 2 bus
 * master), BAR0 at 0x10 (PCI Local Bus 3.0 §6.2); ECAM offset bus << 20 | dev << 15 | fn << 12
 * (PCIe Base 4.0 §7.2.2). The DTB QEMU generates is also placed at the start of RAM: it is
 * zeroed so that both sides start from zero-filled RAM.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { REG } from '../../impl/arch/smmu/registers.js';
import { type BoardFacts, boardFacts, parseFdt, streamIdOf } from './fdt.js';
import { QtestClient, QtestError, hex, parseOkHex32 } from './qtest.js';

export /** How long one edu transfer may take on a loaded machine before the case fails. */
const DMA_TIMEOUT_MS = 10_000;
const EDU_VENDOR_DEVICE = 0x11e8_1234;
export const EDU_ID = 0x010000ed;
const EDU_DMA_SRC = 0x80;
const EDU_DMA_DST = 0x88;
const EDU_DMA_COUNT = 0x90;
const EDU_DMA_CMD = 0x98;
const EDU_CMD_RUN = 1;
const EDU_CMD_TO_RAM = 2;
/** Where edu's 4 KiB buffer sits in its DMA address space. */
export const EDU_BUFFER = 0x40000;
const EDU_BAR_SIZE = 0x10_0000;
/** `wfi; b .-4` as one little-endian doubleword (A64: WFI = 0xd503207f, B .-4 = 0x17ffffff). */
const IDLE_LOOP = '0x17ffffffd503207f';

export interface BoardOptions {
  /** PCI slots of the edu devices (each gives StreamID slot × 8 on bus 0). */
  readonly eduSlots?: readonly number[];
  readonly ramMiB?: number;
  readonly binary?: string;
  readonly timeoutMs?: number;
}

export const DEFAULT_EDU_SLOTS: readonly number[] = [3, 4, 5, 6];
export const DEFAULT_RAM_MIB = 1024;

export interface EduDevice {
  readonly bdf: number;
  readonly sid: number;
  readonly bar: number;
}

function baseArgs(o: BoardOptions): string[] {
  const args = ['-cpu', 'cortex-a57', '-display', 'none', '-nodefaults', '-m', `${o.ramMiB ?? DEFAULT_RAM_MIB}M`];
  for (const slot of o.eduSlots ?? DEFAULT_EDU_SLOTS) args.push('-device', `edu,addr=${slot}.0,dma_mask=0xffffffffffffffff`);
  return args;
}

const factsCache = new Map<string, BoardFacts>();

/** Board facts from `-M virt,iommu=smmuv3,dumpdtb=FILE` with the same devices (cached per command line). */
export function dumpBoardFacts(o: BoardOptions = {}): BoardFacts {
  const args = baseArgs(o);
  const key = args.join(' ');
  const cached = factsCache.get(key);
  if (cached !== undefined) return cached;
  const dir = mkdtempSync(join(tmpdir(), 'qemu-dtb-'));
  try {
    const file = join(dir, 'virt.dtb');
    const r = spawnSync(o.binary ?? 'qemu-system-aarch64', ['-M', `virt,iommu=smmuv3,dumpdtb=${file}`, ...args], { encoding: 'utf8', timeout: 20_000 });
    if (r.status !== 0) throw new QtestError(`dumpdtb failed: ${r.stderr ?? r.error?.message ?? ''}`);
    const facts = boardFacts(parseFdt(new Uint8Array(readFileSync(file))));
    factsCache.set(key, facts);
    return facts;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface IdRegisters {
  readonly idr0: number;
  readonly idr1: number;
  readonly idr3: number;
  readonly idr5: number;
  readonly iidr: number;
  readonly aidr: number;
}

export class QemuBoard {
  private constructor(
    readonly client: QtestClient,
    readonly facts: BoardFacts,
    readonly edus: readonly EduDevice[],
    readonly ids: IdRegisters,
    readonly idleLoopPage: number,
  ) {}

  static async start(o: BoardOptions = {}): Promise<QemuBoard> {
    const facts = dumpBoardFacts(o);
    const idle = facts.ram.base + facts.ram.size - 0x1000;
    const args = [
      '-M',
      'virt,iommu=smmuv3',
      ...baseArgs(o),
      '-accel',
      'tcg',
      '-icount',
      'shift=0,sleep=off',
      '-device',
      `loader,addr=${hex(idle)},data=${IDLE_LOOP},data-len=8`,
      '-device',
      `loader,addr=${hex(idle)},cpu-num=0`,
    ];
    const client = await QtestClient.start(args, { binary: o.binary, timeoutMs: o.timeoutMs });
    try {
      // The generated DTB sits at the start of RAM (its totalsize is at offset 4, big-endian).
      const header = await client.readBytes(facts.ram.base, 8);
      if (header[0] === 0xd0 && header[1] === 0x0d && header[2] === 0xfe && header[3] === 0xed) {
        const total = ((header[4] as number) << 24) | ((header[5] as number) << 16) | ((header[6] as number) << 8) | (header[7] as number);
        await client.one(`memset ${hex(facts.ram.base)} ${hex(Math.ceil((total >>> 0) / 4096) * 4096)} 0x0`);
      }
      const edus = await enumerateEdus(client, facts);
      const s = facts.smmu.base;
      const r = await client.batch(['IDR0', 'IDR1', 'IDR3', 'IDR5', 'IIDR', 'AIDR'].map((n) => `readl ${hex(s + REG[n as keyof typeof REG])}`));
      const v = r.map(parseOkHex32);
      const ids: IdRegisters = { idr0: v[0] ?? 0, idr1: v[1] ?? 0, idr3: v[2] ?? 0, idr5: v[3] ?? 0, iidr: v[4] ?? 0, aidr: v[5] ?? 0 };
      return new QemuBoard(client, facts, edus, ids, idle);
    } catch (e) {
      client.close();
      throw e;
    }
  }

  close(): void {
    this.client.close();
  }

  /**
   * One 4-byte edu transfer between its buffer (offset 0) and `iova`: `toRam` false reads the
   * IOVA into the buffer. Polls the busy bit; throws if the transfer does not finish.
   */
  async dma(dev: number, iova: number, toRam: boolean): Promise<void> {
    const edu = this.edus[dev];
    if (edu === undefined) throw new QtestError(`no edu device ${dev}`);
    const b = edu.bar;
    const src = toRam ? EDU_BUFFER : iova;
    const dst = toRam ? iova : EDU_BUFFER;
    const answers = await this.client.batch([
      `writeq ${hex(b + EDU_DMA_SRC)} ${hex(src)}`,
      `writeq ${hex(b + EDU_DMA_DST)} ${hex(dst)}`,
      `writel ${hex(b + EDU_DMA_COUNT)} 0x4`,
      `writel ${hex(b + EDU_DMA_CMD)} ${hex(EDU_CMD_RUN | (toRam ? EDU_CMD_TO_RAM : 0))}`,
      `readl ${hex(b + EDU_DMA_CMD)}`,
    ]);
    let cmd = parseOkHex32(answers[4] as string);
    // Normally done by the first poll (icount warps to edu's timer at once). On a loaded machine
    // QEMU's main loop may not run for a while: poll with growing pauses, and give up after a
    // time bound rather than a count (a timeout of the harness; nothing compared depends on it).
    const deadline = Date.now() + DMA_TIMEOUT_MS;
    for (let i = 0; (cmd & EDU_CMD_RUN) !== 0; i++) {
      if (i > 100 && Date.now() > deadline) throw new QtestError(`edu DMA did not complete within ${DMA_TIMEOUT_MS} ms`);
      if (i >= 20) await new Promise((r) => setTimeout(r, Math.min(10, i - 19)));
      cmd = await this.client.readl(b + EDU_DMA_CMD);
    }
  }
}

/** Finds every edu on bus `busBase`, gives each BAR0 a 1 MiB slot of the 32-bit window and enables it. */
export async function enumerateEdus(client: QtestClient, facts: BoardFacts): Promise<EduDevice[]> {
  const cfg = (dev: number, off: number): number => facts.ecam.base + ((dev << 15) | off);
  const ids = (await client.batch(Array.from({ length: 32 }, (_, dev) => `readl ${hex(cfg(dev, 0))}`))).map(parseOkHex32);
  const out: EduDevice[] = [];
  let next = facts.mem32.base;
  for (let dev = 0; dev < 32; dev++) {
    if (ids[dev] !== EDU_VENDOR_DEVICE) continue;
    const bdf = (facts.busBase << 8) | (dev << 3);
    const sid = streamIdOf(facts, bdf);
    if (sid === undefined) throw new QtestError(`edu ${dev}.0 has no StreamID in iommu-map`);
    const bar = next;
    next += EDU_BAR_SIZE;
    const cmd = parseOkHex32(await client.one(`readl ${hex(cfg(dev, 4))}`));
    await client.batch([`writel ${hex(cfg(dev, 0x10))} ${hex(bar)}`, `writel ${hex(cfg(dev, 4))} ${hex(((cmd & 0xffff) | 0x6) >>> 0)}`]);
    const id = await client.readl(bar);
    if (id !== EDU_ID) throw new QtestError(`edu at ${dev}.0 answers ID ${id.toString(16)}`);
    out.push({ bdf, sid, bar });
  }
  return out;
}
