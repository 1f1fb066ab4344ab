/**
 * A client for QEMU's qtest text protocol over stdio (one request line, one `OK …`/`FAIL …`
 * answer line, in order). Requests can be pipelined: `batch` writes every line at once and
 * resolves with the answers in order. Every batch has a timeout; a timeout, an early exit or a
 * FAIL answer rejects every outstanding request and kills the process, so a broken QEMU never
 * hangs a test.
 *
 * Facts (qemu-smmuv3-peer.md §1, §7): Debian's build has no qtest accelerator, so the protocol
 * runs under TCG with `-icount shift=0,sleep=off` and an idle `wfi` loop; QEMU does not exit when
 * its stdin closes, so `close` sends SIGTERM; a malformed number (e.g. negative) makes QEMU abort,
 * so every number goes through `hex`, which only formats unsigned integers.
 */
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';

export class QtestError extends Error {}

/** Unsigned hexadecimal for a qtest request; throws (a harness bug) for anything else. */
export function hex(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new QtestError(`not an unsigned integer for qtest: ${n}`);
  return '0x' + n.toString(16);
}

/** A 64-bit value from two u32 halves, as qtest hex (no BigInt: 2 × 8 hex digits). */
export function hex64(lo: number, hi: number): string {
  if (hi === 0) return hex(lo >>> 0);
  return '0x' + (hi >>> 0).toString(16) + (lo >>> 0).toString(16).padStart(8, '0');
}

/** Parses `OK 0x…` into u32 halves. */
export function parseOkHex64(answer: string): { lo: number; hi: number } {
  const m = /^OK 0x([0-9a-fA-F]{1,16})$/.exec(answer);
  if (m === null) throw new QtestError(`unexpected qtest answer: ${answer}`);
  const digits = (m[1] as string).padStart(16, '0');
  return { hi: parseInt(digits.slice(0, 8), 16) >>> 0, lo: parseInt(digits.slice(8), 16) >>> 0 };
}

export function parseOkHex32(answer: string): number {
  return parseOkHex64(answer).lo;
}

export interface QemuVersion {
  readonly major: number;
  readonly minor: number;
  readonly micro: number;
  readonly text: string;
}

/** `qemu-system-aarch64 --version`, or undefined when the binary is missing or unreadable. */
export function qemuVersion(binary = 'qemu-system-aarch64'): QemuVersion | undefined {
  const r = spawnSync(binary, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0 || typeof r.stdout !== 'string') return undefined;
  const m = /version (\d+)\.(\d+)\.(\d+)/.exec(r.stdout);
  if (m === null) return undefined;
  return { major: Number(m[1]), minor: Number(m[2]), micro: Number(m[3]), text: (r.stdout.split('\n')[0] ?? '').trim() };
}

export const QEMU_INSTALL_HINT =
  'install QEMU >= 10 with: echo "deb http://deb.debian.org/debian bookworm-backports main" > /etc/apt/sources.list.d/bookworm-backports.list && apt-get update && apt-get install -y -t bookworm-backports qemu-system-arm (or run .ci/install-qemu)';

interface Pending {
  readonly resolve: (answer: string) => void;
  readonly reject: (e: Error) => void;
}

export interface QtestOptions {
  readonly binary?: string;
  /** Milliseconds a batch may wait for its answers. */
  readonly timeoutMs?: number;
}

export class QtestClient {
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly queue: Pending[] = [];
  private buffer = '';
  private stderr = '';
  private dead: Error | undefined;
  private readonly timeoutMs: number;
  /** Requests sent (for throughput figures). */
  requests = 0;

  private constructor(args: readonly string[], options: QtestOptions) {
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.proc = spawn(options.binary ?? 'qemu-system-aarch64', ['-qtest', 'stdio', '-qtest-log', 'none', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stdout.setEncoding('utf8');
    this.proc.stderr.setEncoding('utf8');
    this.proc.stdout.on('data', (chunk: string) => this.onData(chunk));
    this.proc.stderr.on('data', (chunk: string) => {
      if (this.stderr.length < 8192) this.stderr += chunk;
    });
    this.proc.on('error', (e) => this.fail(new QtestError(`qemu: ${e.message}`)));
    this.proc.on('exit', (code, signal) => this.fail(new QtestError(`qemu exited (code ${code}, signal ${signal}): ${this.stderr.trim().slice(-2000)}`)));
    this.proc.stdin.on('error', () => undefined);
  }

  /** Spawns QEMU and waits for its first answer. */
  static async start(args: readonly string[], options: QtestOptions = {}): Promise<QtestClient> {
    const c = new QtestClient(args, options);
    try {
      await c.batch(['endianness']);
    } catch (e) {
      c.close();
      throw e;
    }
    return c;
  }

  get alive(): boolean {
    return this.dead === undefined;
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      // Asynchronous interrupt notifications only appear with irq_intercept, which is never sent.
      if (line.startsWith('IRQ ')) continue;
      const p = this.queue.shift();
      if (p === undefined) continue;
      if (line.startsWith('OK')) p.resolve(line);
      else p.reject(new QtestError(`qtest request failed: ${line}`));
    }
  }

  private fail(e: Error): void {
    if (this.dead === undefined) this.dead = e;
    for (const p of this.queue.splice(0)) p.reject(this.dead);
  }

  /** Sends the requests at once; resolves with their answers in order. */
  batch(lines: readonly string[]): Promise<string[]> {
    if (this.dead !== undefined) return Promise.reject(this.dead);
    if (lines.length === 0) return Promise.resolve([]);
    this.requests += lines.length;
    const answers = lines.map(
      () =>
        new Promise<string>((resolve, reject) => {
          this.queue.push({ resolve, reject });
        }),
    );
    this.proc.stdin.write(lines.join('\n') + '\n');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const e = new QtestError(`qtest timeout after ${this.timeoutMs} ms (${lines[0] ?? ''} …)`);
        this.fail(e);
        this.close();
        reject(e);
      }, this.timeoutMs);
    });
    const all = Promise.all(answers);
    // Avoid unhandled rejections of the individual promises when the batch as a whole fails.
    all.catch(() => undefined);
    return Promise.race([all, timeout]).finally(() => clearTimeout(timer));
  }

  async one(line: string): Promise<string> {
    const [a] = await this.batch([line]);
    return a as string;
  }

  async readl(addr: number): Promise<number> {
    return parseOkHex32(await this.one(`readl ${hex(addr)}`));
  }

  async writel(addr: number, value: number): Promise<void> {
    await this.one(`writel ${hex(addr)} ${hex(value >>> 0)}`);
  }

  /** Reads `size` bytes as a byte string (`read` answers `OK 0x<bytes in address order>`). */
  async readBytes(addr: number, size: number): Promise<Uint8Array> {
    const a = await this.one(`read ${hex(addr)} ${hex(size)}`);
    return parseBytes(a, size);
  }

  /** Ends the process (QEMU ignores stdin EOF in this mode). Idempotent. */
  close(): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGTERM');
    this.fail(new QtestError('qtest client closed'));
  }

  /** Waits for the process to be gone (after close). */
  async closed(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    await new Promise<void>((resolve) => this.proc.once('exit', () => resolve()));
  }
}

export function parseBytes(answer: string, size: number): Uint8Array {
  const m = /^OK 0x([0-9a-fA-F]*)$/.exec(answer);
  if (m === null || (m[1] as string).length !== size * 2) throw new QtestError(`unexpected read answer: ${answer.slice(0, 80)}`);
  return new Uint8Array(Buffer.from(m[1] as string, 'hex'));
}
