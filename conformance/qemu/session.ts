/**
 * One QEMU reused across cases: runs a trace on the model and on QEMU, compares, and puts QEMU
 * back in a state equal to a fresh model's before the next case. A case that leaves QEMU in a
 * state the reset cannot undo (a global error, whose GERROR/GERRORN toggles a fresh model would
 * not share, the sticky 2-level stream-table mode, or an unexplained difference, which may have
 * written anywhere) gets a fresh QEMU instead.
 *
 * The reset (qemu-smmuv3-peer.md §5, §6.2): CR0 = 0, GBPA = bypass, every page the case dirtied
 * zeroed, CFGI_ALL + TLBI_NSNH_ALL + CMD_SYNC from a private command queue (QEMU does not flush
 * its caches on SMMUEN or CR0 writes), the edu buffers reloaded with zeros, and the queue and
 * table registers back to 0.
 */
import { type SmmuMode } from '../../impl/hw/smmu/index.js';
import { type Command, encodeCommand } from '../../impl/arch/smmu/commands.js';
import { CR0_CMDQEN, REG } from '../../impl/arch/smmu/registers.js';
import { type BoardOptions, QemuBoard } from './board.js';
import { classify } from './filters.js';
import { QtestError, hex, hex64, parseOkHex32 } from './qtest.js';
import { type DiffEnv, type ModelRun, type Obs, envOf, replayOnModel, replayOnQemu } from './replay.js';
import { type Trace } from './trace.js';

export interface Difference {
  readonly at: number;
  readonly k: Obs['k'];
  readonly page: number | undefined;
  readonly model: string;
  readonly qemu: string;
}

export type CaseResult =
  | { readonly status: 'same'; readonly ops: number }
  | { readonly status: 'known'; readonly ops: number; readonly deviation: string; readonly first: Difference }
  | { readonly status: 'differ'; readonly ops: number; readonly first: Difference; readonly count: number };

/** GBPA.UPDATE | SHCFG = use incoming (QEMU's reset value 0x1000), ABORT = 0. */
const GBPA_BYPASS_UPDATE = 0x8000_1000;

export function compareRuns(trace: Trace, model: ModelRun, qemuObs: readonly Obs[]): CaseResult {
  const n = Math.max(model.obs.length, qemuObs.length);
  let first: Difference | undefined;
  let count = 0;
  for (let i = 0; i < n; i++) {
    const m = model.obs[i];
    const q = qemuObs[i];
    if (m !== undefined && q !== undefined && m.k === q.k && m.at === q.at && m.page === q.page && m.v === q.v) continue;
    count++;
    if (first !== undefined) continue;
    const at = m?.at ?? q?.at ?? -1;
    first = { at, k: m?.k ?? q?.k ?? 'regs', page: m?.page, model: m?.v ?? '(nothing)', qemu: q?.v ?? '(nothing)' };
    if (m !== undefined && q !== undefined) {
      const known = classify(model.xfers.get(at), m, q);
      if (known !== undefined) return { status: 'known', ops: trace.ops.length, deviation: known.id, first };
    }
  }
  if (first === undefined) return { status: 'same', ops: trace.ops.length };
  return { status: 'differ', ops: trace.ops.length, first, count };
}

export class QemuSession {
  private board: QemuBoard | undefined;
  /** QEMU starts (first one included), for the report. */
  starts = 0;
  cases = 0;
  /** Cases run again on a fresh QEMU after a qtest timeout. */
  retries = 0;

  constructor(
    private readonly options: BoardOptions = {},
    private readonly modelMode: SmmuMode = 'permissive',
  ) {}

  async env(): Promise<DiffEnv> {
    return envOf(await this.ensure());
  }

  private async ensure(): Promise<QemuBoard> {
    if (this.board === undefined || !this.board.client.alive) {
      this.board?.close();
      this.board = await QemuBoard.start(this.options);
      this.starts++;
    }
    return this.board;
  }

  async restart(): Promise<void> {
    this.board?.close();
    this.board = undefined;
    await this.ensure();
  }

  async run(trace: Trace): Promise<CaseResult> {
    let board = await this.ensure();
    this.cases++;
    const env = envOf(board);
    const model = replayOnModel(trace, env, this.modelMode);
    let result: CaseResult | undefined;
    // A QEMU that stops answering (a timeout on a loaded machine) is replaced and the case run
    // again from the start on the fresh one: a case's result depends on the trace alone.
    for (let attempt = 0; result === undefined; attempt++) {
      try {
        const q = await replayOnQemu(board, trace, model);
        result = compareRuns(trace, model, q.obs);
      } catch (e) {
        board.close();
        this.board = undefined;
        if (!(e instanceof QtestError) || attempt >= 1) throw e;
        this.retries++;
        board = await this.ensure();
      }
    }
    if (result.status === 'differ' || trace.twoLevel || model.gerrorTouched) {
      board.close();
      this.board = undefined;
    } else if (!(await this.reset(board, model.dirty))) {
      board.close();
      this.board = undefined;
    }
    return result;
  }

  /** Puts QEMU back to a fresh model's state; false when only a restart can. */
  private async reset(board: QemuBoard, dirty: readonly number[]): Promise<boolean> {
    const c = board.client;
    const s = board.facts.smmu.base;
    const reg = (name: keyof typeof REG): number => s + REG[name];
    const scratch = board.idleLoopPage - 0x1000;
    const [gerror] = await c.batch([`readl ${hex(reg('GERROR'))}`, `writel ${hex(reg('CR0'))} 0x0`, `writel ${hex(reg('GBPA'))} ${hex(GBPA_BYPASS_UPDATE)}`]);
    // A global error the model did not see (after a known deviation the two sides diverge): only a fresh QEMU has GERROR = 0 again.
    if (parseOkHex32(gerror as string) !== 0) return false;
    const lines = dirty.map((p) => `memset ${hex(p)} 0x1000 0x0`);
    // A private command queue of 4 entries in the scratch page.
    const cmds: Command[] = [{ kind: 'CFGI_ALL', ssec: false, sid: 0 }, { kind: 'TLBI_NSNH_ALL' }, { kind: 'CMD_SYNC', cs: 0, msh: 0, msiattr: 0, msidata: 0, msiaddr: 0 }];
    cmds.forEach((cmd, i) => encodeCommand(cmd, { ril: true }).forEach((w, j) => lines.push(`writeq ${hex(scratch + i * 16 + j * 8)} ${hex64(w.lo, w.hi)}`)));
    lines.push(
      `writeq ${hex(reg('CMDQ_BASE'))} ${hex(scratch | 2)}`,
      `writel ${hex(reg('CMDQ_CONS'))} 0x0`,
      `writel ${hex(reg('CMDQ_PROD'))} 0x0`,
      `writel ${hex(reg('CR0'))} ${hex(CR0_CMDQEN)}`,
      `writel ${hex(reg('CMDQ_PROD'))} 0x3`,
      `readl ${hex(reg('CMDQ_CONS'))}`,
    );
    const answers = await c.batch(lines);
    const cons = parseOkHex32(answers[answers.length - 1] as string);
    if (cons !== 3) throw new Error(`QEMU reset: the invalidation queue stopped at CONS ${hex(cons)}`);
    await c.batch([`writel ${hex(reg('CR0'))} 0x0`, `memset ${hex(scratch)} 0x1000 0x0`]);
    // SMMUEN = 0 and GBPA bypass: reading a zero page reloads every edu buffer with zeros.
    for (let dev = 0; dev < board.edus.length; dev++) await board.dma(dev, scratch, false);
    const zero32 = ['CR1', 'CR2', 'IRQ_CTRL', 'STRTAB_BASE_CFG', 'CMDQ_PROD', 'CMDQ_CONS', 'EVTQ_PROD', 'EVTQ_CONS'] as const;
    const zero64 = ['STRTAB_BASE', 'CMDQ_BASE', 'EVTQ_BASE'] as const;
    await c.batch([...zero32.map((n) => `writel ${hex(reg(n))} 0x0`), ...zero64.map((n) => `writeq ${hex(reg(n))} 0x0`)]);
    return true;
  }

  close(): void {
    this.board?.close();
    this.board = undefined;
  }
}
