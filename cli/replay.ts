/**
 * `npm run replay -- FILE.json [--json] [--html OUT.html] [--brief]`: runs the operations of FILE
 * on the model and on a freshly booted system, one line per operation (operation, decoded
 * arguments, model ret, system ret, verdict), the commands the hypervisor issued and the hardware
 * actions at its yield points, then, per page the operation touched, the page's states
 * before→after (host, hyp, pins, shares, guest leaves, the DMA stage-2 on an SMMU machine; a
 * second line where the implementation disagrees), the violated checks with the page they name
 * and, for a DMA violation, the life of every SMMU cache and ATC entry that reaches that page. FILE is a replay file (`{ "operations": [...],
 * "config"?: machine }`) or a corpus file (conformance/corpus-format.ts; its design and test-only
 * bug are applied). Exit 0 clean, 1 mismatch or violation, 2 usage error or a bad file.
 */
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { type CorpusEntry, decodeCorpusEntry, verdictHolds, verdictText as verdictOf } from '../conformance/corpus-format.js';
import { corpusProblems, entryRunOptions } from '../conformance/corpus.js';
import { machineLabel } from '../conformance/machines.js';
import { describeStep, retName } from '../conformance/names.js';
import { historyLines } from '../conformance/cache-history.js';
import { type StepOp, allRecords, formatPageLines, smmuChanges, traceOperations, violationCaches } from '../conformance/trace.js';
import { readJsonInput } from '../conformance/input-file.js';
import { decodeMachine, decodeOperations, decodeSchedule, shortJson } from '../properties/codecs.js';
import { type MachineConfig, defaultMachine } from '../properties/machine.js';
import { type RunOptions, type ScheduledHardware } from '../properties/runner.js';
import { renderTimeline } from '../reports/timeline.js';
import { oneLine, parseArgs, userPath } from './args.js';

const USAGE = `usage: npm run replay -- FILE.json [--json] [--html OUT.html] [--brief]

FILE.json: { "operations": [ { "kind": "host_donate_hyp", "pfn": 262144, "nrPages": 1 }, ... ],
             "config": { ...optional machine, see README } }
           or a corpus file (conformance/corpus/, README "Regression corpus")
--json         print { "results": [{ "op", "described", "modelRet", "systemRet", "commands"?,
               "interleaved"? }], "violations": [...], "cacheEntries"? } and nothing else on stdout
--html OUT     also write a self-contained HTML timeline (steps × pages, coloured by owner; 100
               rows at a time, OUT.html#step=N opens step N)
--brief        one line per operation (with its commands and scheduled actions), without the page
               states, the SMMU lines and the cache histories
exit code: a plain operation list: 0 clean, 1 mismatch or violation; a corpus file: 0 when its
expected verdict (and its "returns", if recorded) is reached, 1 when not — "expected verdict not
reached"; 2 usage error or bad file`;

export interface ReplayInput {
  readonly operations: readonly StepOp[];
  readonly machine: MachineConfig;
  /** Hardware actions at the yield points (RunOptions.schedule), when the file has a "schedule". */
  readonly schedule?: readonly ScheduledHardware[];
  /** Set when FILE is a corpus file. */
  readonly corpus?: CorpusEntry;
}

const REPLAY_KEYS = ['operations', 'config', 'schedule', 'description'];

/** Reads and validates a replay or corpus file; the error is one user-facing line. */
export function loadReplayFile(path: string): { ok: true; input: ReplayInput } | { ok: false; errors: string[] } {
  const read = readJsonInput(path);
  if (read.ok === 'missing') return { ok: false, errors: [`cannot read ${path}: ENOENT`] };
  if (!read.ok) return { ok: false, errors: [read.error] };
  const json = read.json;
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return { ok: false, errors: [`${path}: expected an object with an "operations" array`] };
  const field = (key: string): unknown => (Object.hasOwn(json, key) ? (json as Record<string, unknown>)[key] : undefined);
  if (Object.hasOwn(json, 'format')) {
    const entry = decodeCorpusEntry(json);
    if (!entry.ok) return { ok: false, errors: entry.errors.map((e) => `${path}: ${e}`) };
    return { ok: true, input: { operations: entry.value.operations, machine: entry.value.config, corpus: entry.value } };
  }
  const extra = Object.keys(json).find((k) => !REPLAY_KEYS.includes(k));
  if (extra !== undefined) return { ok: false, errors: [`${path}: ${extra}: no field "${extra}" in a replay file (the fields are ${REPLAY_KEYS.join(', ')}; a corpus file has "format": 1)`] };
  const description = field('description');
  if (description !== undefined && typeof description !== 'string') return { ok: false, errors: [`${path}: description: expected a string, got ${shortJson(description)}`] };
  const ops = decodeOperations(field('operations'));
  if (!ops.ok) return { ok: false, errors: ops.errors.map((e) => `${path}: ${e}`) };
  let machine = defaultMachine();
  const config = field('config');
  if (config !== undefined) {
    const m = decodeMachine(config);
    if (!m.ok) return { ok: false, errors: m.errors.map((e) => `${path}: config.${e}`) };
    machine = m.value;
  }
  const scheduleJson = field('schedule');
  const schedule = scheduleJson === undefined ? undefined : decodeSchedule(scheduleJson);
  if (schedule !== undefined && !schedule.ok) return { ok: false, errors: schedule.errors.map((e) => `${path}: ${e}`) };
  return { ok: true, input: { operations: ops.value, machine, ...(schedule === undefined ? {} : { schedule: schedule.value }) } };
}

function verdictText(entry: CorpusEntry): string {
  return verdictOf(entry.expect);
}

export function main(argv: string[], options: RunOptions = {}): number {
  const args = parseArgs(argv, { json: 'flag', html: 'value', brief: 'flag', help: 'flag' });
  if (!args.ok) {
    console.error(`${args.error}\n${USAGE}`);
    return 2;
  }
  if (args.flags.has('help')) {
    console.log(USAGE);
    return 0;
  }
  if (args.positional.length !== 1) {
    console.error(USAGE);
    return 2;
  }
  const file = userPath(args.positional[0] as string);
  const htmlOut = args.values.get('html');
  // Writing to a FIFO would block until someone reads it, to a device would never be a timeline.
  if (htmlOut !== undefined && existsSync(htmlOut) && !statSync(htmlOut).isFile()) {
    console.error(`--html: ${htmlOut} exists and is not a regular file\n${USAGE}`);
    return 2;
  }
  const loaded = loadReplayFile(file);
  if (!loaded.ok) {
    console.error(oneLine(loaded.errors));
    return 2;
  }
  const { operations, machine, corpus, schedule } = loaded.input;
  const runOptions = corpus !== undefined ? entryRunOptions(corpus, options) : schedule === undefined ? options : { ...options, schedule };
  const trace = traceOperations(machine, operations, { ...runOptions, traceCommands: true });
  const result = trace.result;
  const violations = allRecords(result).flatMap((s) => s.violations.map((v) => ({ step: s.index, check: v.check, message: v.message })));
  const fired: string[] = [...new Set(violations.map((v) => v.check))];
  // A corpus file is judged by what it says it shows (its expected verdict, and the model's return
  // codes when it records them): a "violates" file that no longer fails is the failure.
  const verdict = corpus === undefined ? { problems: [] as string[] } : { problems: corpusProblems(corpus, fired, result) };
  if (args.flags.has('json')) {
    console.log(
      JSON.stringify({
        results: result.steps.map((s) => ({
          op: s.op,
          described: describeStep(s.op as unknown as { kind: string } & Record<string, unknown>),
          modelRet: s.modelRet,
          systemRet: s.systemRet,
          ...(s.commands === undefined ? {} : { commands: s.commands }),
          ...(s.interleaved === undefined ? {} : { interleaved: s.interleaved.map((a) => ({ at: a.at, hw: a.hw, described: describeStep(a.hw as unknown as { kind: string } & Record<string, unknown>), detail: a.detail })) }),
        })),
        violations,
        // On an SMMU machine: per violated step, check and page (or stream), the cache and ATC entries that reach it, fill to removal.
        ...(trace.caches === undefined ? {} : { cacheEntries: trace.steps.flatMap((st) => violationCaches(trace, st)) }),
      }),
    );
  } else {
    if (corpus !== undefined) {
      console.log(`corpus file: design ${corpus.design}${corpus.bug === undefined ? '' : `, test-only injected bug ${corpus.bug}`}; expected verdict: ${verdictText(corpus)} — ${corpus.provenance.description}`);
    }
    if (result.failure !== undefined && result.failure.index < 0) for (const v of result.failure.violations) console.log(`boot  [${v.check}] ${v.message}`);
    for (const step of trace.steps) {
      const s = step.record;
      const verdict = s.violations.length === 0 ? 'ok' : 'VIOLATION';
      const kind = s.op.kind;
      // Decoded arguments (register names, commands by opcode and fields, hex addresses); --json keeps the raw operation.
      const shown = describeStep(s.op as unknown as { kind: string } & Record<string, unknown>);
      console.log(`${String(s.index).padStart(4)}  ${kind.padEnd(28)} ${shown.padEnd(60)} model ${retName(kind, s.modelRet).padEnd(10)} system ${retName(kind, s.systemRet).padEnd(10)} ${verdict}`);
      // The commands the hypervisor wrote into its SMMU queue during the step.
      if ((s.commands?.length ?? 0) > 0) console.log(`        ▸ hypervisor commands: ${(s.commands ?? []).join('; ')}`);
      // The schedule's hardware actions at this step's yield points (a race's counterexample).
      for (const a of s.interleaved ?? []) console.log(`        ⟂ at ${a.at}: ${a.hw.kind} ${describeStep(a.hw as unknown as { kind: string } & Record<string, unknown>)} → ${a.detail}`);
      if (!args.flags.has('brief')) {
        const changes = smmuChanges(step);
        if (changes.length > 0) console.log(`        ▸ SMMU: ${changes.join('; ')}`);
        for (const line of formatPageLines(step)) console.log(line);
      }
      for (const v of s.violations) console.log(`        [${v.check}] ${v.message}`);
      if (!args.flags.has('brief')) {
        for (const c of violationCaches(trace, step)) {
          if (c.entries.length === 0) {
            console.log(`        ⌁ no SMMU cache or ATC entry ${c.subject.startsWith('sid') ? 'of' : 'reaches'} ${c.subject} during the step`);
            continue;
          }
          console.log(`        ⌁ SMMU cache and ATC entries ${c.subject.startsWith('sid') ? 'of' : 'reaching'} ${c.subject} (for ${c.check}):`);
          for (const e of c.entries) for (const line of historyLines(e)) console.log(`            ${line}`);
        }
      }
    }
    if (corpus !== undefined) {
      const holds = verdictHolds(corpus.expect, fired);
      console.log(`expected verdict (${verdictText(corpus)}): ${holds ? 'holds' : 'DOES NOT HOLD'}`);
      if (verdict.problems.length > 0) for (const p of verdict.problems) console.log(`expected verdict not reached: ${p}`);
    }
    console.log(violations.length === 0 ? `${result.steps.length} operations, no violation` : `${violations.length} violation(s) in ${new Set(violations.map((v) => v.step)).size} step(s)`);
  }
  const htmlArg = args.values.get('html');
  const html = htmlArg === undefined ? undefined : userPath(htmlArg);
  if (html !== undefined) {
    const page = renderTimeline(trace, {
      title: `replay of ${file}`,
      source: file,
      machine: machineLabel(machine),
      design: corpus?.design ?? 'v6-posted',
      ...(corpus?.bug === undefined ? {} : { bug: corpus.bug }),
      ...(corpus === undefined ? {} : { expect: verdictText(corpus) }),
    });
    try {
      writeFileSync(html, page);
    } catch (e) {
      console.error(`cannot write ${html}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      return 2;
    }
    (args.flags.has('json') ? console.error : console.log)(`timeline: ${html}`);
  }
  if (corpus !== undefined) return verdict.problems.length === 0 ? 0 : 1;
  return violations.length === 0 ? 0 : 1;
}

if (process.argv[1] !== undefined && /replay\.[jt]s$/.test(process.argv[1])) {
  // As verify and report do: whatever escapes is one line and exit 2, never exit 1 ("violation").
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`replay failed: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 2;
  }
}
