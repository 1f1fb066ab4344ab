/**
 * The regression corpus: every JSON file under conformance/corpus/ (new/ included) is replayed by
 * `npm test` and must reach the verdict it records.
 */
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findInjectedBug } from '../properties/bugs/index.js';
import { type RunOptions, type RunResult, runOperations } from '../properties/runner.js';
import { type CorpusEntry, type DecodedEntry, isViolates, parseCorpusText } from './corpus-format.js';
import { findDesign } from './designs.js';
import { readInputText } from './input-file.js';
import { retName } from './names.js';
import { allRecords } from './trace.js';

export const CORPUS_DIR = fileURLToPath(new URL('./corpus/', import.meta.url));
export const NEW_DIR = join(CORPUS_DIR, 'new');

/** Every *.json below `dir`, sorted, as paths. */
export function listCorpusFiles(dir: string = CORPUS_DIR): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (e.isFile() && e.name.endsWith('.json')) out.push(join(d, e.name));
    }
  };
  walk(dir);
  return out;
}

export function loadCorpusFile(path: string): DecodedEntry {
  const r = readInputText(path);
  if (r.ok === 'missing') return { ok: false, errors: [`cannot read ${path}: ENOENT`] };
  if (!r.ok) return { ok: false, errors: [r.error] };
  return parseCorpusText(path, r.text);
}

/** The run options a corpus entry replays with: its design, plus its test-only bug if any. */
export function entryRunOptions(entry: CorpusEntry, base: RunOptions = {}): RunOptions {
  const design = findDesign(entry.design);
  if (design === undefined) throw new Error(`unknown design ${entry.design}`); // the codec refuses these
  const bug = entry.bug === undefined ? undefined : findInjectedBug(entry.bug);
  const inject = bug?.inject ?? base.inject;
  const afterBoot = bug?.afterBoot ?? base.afterBoot;
  const schedule = entry.schedule ?? base.schedule;
  return design.runOptions({ ...base, ...(inject === undefined ? {} : { inject }), ...(afterBoot === undefined ? {} : { afterBoot }), ...(schedule === undefined ? {} : { schedule }) });
}

export interface CorpusOutcome {
  readonly ok: boolean;
  /** Why the verdict does not hold (empty when ok). */
  readonly message: string;
  /** Checks that fired, in order of first appearance. */
  readonly fired: readonly string[];
  readonly result: RunResult;
}

/**
 * Replays with every check and without stopping at the first violation (as `npm run replay`
 * does): `violates X` holds when X fires at some step — what a run checking X alone would find.
 */
export function replayEntry(entry: CorpusEntry): CorpusOutcome {
  const result = runOperations(entry.config, entry.operations, entryRunOptions(entry, { continueAfterViolation: true }));
  const fired: string[] = [];
  for (const s of allRecords(result)) for (const v of s.violations) if (!fired.includes(v.check)) fired.push(v.check);
  const problems = corpusProblems(entry, fired, result);
  return { ok: problems.length === 0, message: problems.join('\n'), fired, result };
}

/** Why a replayed corpus entry does not show what it says (its verdict, its recorded return codes); empty when it does. */
export function corpusProblems(entry: CorpusEntry, fired: readonly string[], result: RunResult): string[] {
  const first = result.failure;
  const firstText = first === undefined ? '' : `step ${first.index} ${first.op.kind}: ${first.violations.map((v) => `[${v.check}] ${v.message}`).join('; ')}`;
  const problems: string[] = [];
  if (isViolates(entry.expect)) {
    const want = entry.expect.violates;
    if (fired.length === 0) {
      problems.push(
        `expected a violation of ${want}, but the run passes` +
          (entry.bug === undefined ? ' — if the bug was fixed, set "expect" to {"passes": true} and move the file out of new/' : ` — injected bug ${entry.bug} is no longer caught`),
      );
    } else if (!fired.includes(want)) problems.push(`expected a violation of ${want}, got ${fired.join(', ')} (${firstText})`);
  } else if (fired.length > 0) problems.push(`expected to pass, got ${fired.join(', ')} at ${firstText}`);
  if (entry.returns !== undefined) {
    for (const s of result.steps) {
      const want = entry.returns[s.index];
      const got = retName(s.op.kind, s.modelRet);
      if (want !== got) {
        problems.push(`returns.${s.index}: the model returns ${got} for ${s.op.kind}, the file records ${String(want)}`);
        break;
      }
    }
    if (result.steps.length < entry.operations.length && fired.length === 0) problems.push(`the run stopped after ${result.steps.length} of ${entry.operations.length} operations`);
  }
  return problems;
}

/** A short name for messages: the path below the corpus directory. */
export function corpusName(path: string): string {
  return relative(CORPUS_DIR, path);
}

/** What `npm test` does with each corpus file: throws with the file name and the reason. */
export function assertCorpusFile(path: string): CorpusOutcome {
  const loaded = loadCorpusFile(path);
  if (!loaded.ok) throw new Error(loaded.errors.join('\n'));
  const outcome = replayEntry(loaded.value);
  if (!outcome.ok) throw new Error(`${path}: ${outcome.message}`);
  return outcome;
}
