/**
 * Every file a user hands the suite (replay and corpus files, `report --merge` results, bench and
 * coverage summaries) is read here, with the same limits (README "Input limits"): a regular file
 * only (a FIFO or /dev/zero would block or never end), at most `MAX_INPUT_BYTES`, JSON nested at
 * most `MAX_JSON_DEPTH` levels, strings of at most `MAX_JSON_STRING` characters, and no field
 * named `__proto__` (so that no decoded object can reach a prototype). Every refusal is one line
 * naming the file and, where there is one, the field path, for exit code 2.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';

export const MAX_INPUT_BYTES = 16 * 1024 * 1024;
export const MAX_JSON_DEPTH = 32;
export const MAX_JSON_STRING = 100_000;

export type ReadText = { ok: true; text: string } | { ok: false; error: string } | { ok: 'missing' };

function sizeText(n: number): string {
  return n % (1024 * 1024) === 0 && n > 0 ? `${n / (1024 * 1024)} MiB` : `${n} bytes`;
}

/**
 * The text of a regular file of at most `maxBytes`. Opened without blocking (a FIFO opens at once
 * and is then refused), checked with fstat on the open descriptor, read in chunks to the end.
 */
export function readInputText(path: string, maxBytes: number = MAX_INPUT_BYTES): ReadText {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { ok: 'missing' };
    return { ok: false, error: `cannot read ${path}: ${code ?? String(e)}` };
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) {
      const what = st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() ? 'a character device' : st.isBlockDevice() ? 'a block device' : st.isSocket() ? 'a socket' : 'not a regular file';
      return { ok: false, error: `${path}: expected a regular file, got ${what}` };
    }
    if (st.size > maxBytes) return { ok: false, error: `${path}: file too large (${sizeText(st.size)}; the limit is ${sizeText(maxBytes)})` };
    // Read to the end, whatever fstat said (the file may grow while it is read, and files such
    // as those of /proc report a size of 0), but never more than the limit and one chunk.
    const chunks: Buffer[] = [];
    let length = 0;
    for (;;) {
      const chunk = Buffer.alloc(64 * 1024);
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      chunks.push(n === chunk.length ? chunk : chunk.subarray(0, n));
      length += n;
      if (length > maxBytes) return { ok: false, error: `${path}: file too large (more than ${sizeText(maxBytes)})` };
    }
    return { ok: true, text: Buffer.concat(chunks, length).toString('utf8') };
  } catch (e) {
    return { ok: false, error: `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}` };
  } finally {
    closeSync(fd);
  }
}

function pathText(path: readonly (string | number)[]): string {
  return path.length === 0 ? '(root)' : path.join('.');
}

/**
 * The first place where a parsed JSON value exceeds the limits, as "field.path: what", or
 * undefined. Iterative, so a value nested a million levels deep is no problem.
 */
export function jsonLimitError(value: unknown, limits: { maxDepth?: number; maxString?: number } = {}): string | undefined {
  const maxDepth = limits.maxDepth ?? MAX_JSON_DEPTH;
  const maxString = limits.maxString ?? MAX_JSON_STRING;
  const stack: { value: unknown; path: (string | number)[] }[] = [{ value, path: [] }];
  while (stack.length > 0) {
    const { value: v, path } = stack.pop() as { value: unknown; path: (string | number)[] };
    if (typeof v === 'string') {
      if (v.length > maxString) return `${pathText(path)}: a string of ${v.length} characters (at most ${maxString})`;
      continue;
    }
    if (typeof v !== 'object' || v === null) continue;
    if (path.length >= maxDepth) return `${pathText(path)}: nested deeper than ${maxDepth} levels`;
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i], path: [...path, i] });
      continue;
    }
    const keys = Object.keys(v);
    for (let i = keys.length - 1; i >= 0; i--) {
      const key = keys[i] as string;
      if (key === '__proto__') return `${pathText([...path, key])}: a reserved field name`;
      if (key.length > maxString) return `${pathText(path)}: a field name of ${key.length} characters (at most ${maxString})`;
      stack.push({ value: (v as Record<string, unknown>)[key], path: [...path, key] });
    }
  }
  return undefined;
}

export type ParsedJson = { ok: true; json: unknown } | { ok: false; error: string };

/** JSON.parse within the limits; `name` prefixes every message. */
export function parseJsonInput(name: string, text: string): ParsedJson {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return { ok: false, error: `${name}: not valid JSON: ${(e as Error).message}` };
  }
  const error = jsonLimitError(json);
  return error === undefined ? { ok: true, json } : { ok: false, error: `${name}: ${error}` };
}

/** A JSON input file: read within the limits, then parsed within the limits. */
export function readJsonInput(path: string, maxBytes: number = MAX_INPUT_BYTES): ParsedJson | { ok: 'missing' } {
  const r = readInputText(path, maxBytes);
  if (r.ok === 'missing') return r;
  if (!r.ok) return r;
  return parseJsonInput(path, r.text);
}
