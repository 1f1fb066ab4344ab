/**
 * A self-contained HTML timeline of a traced replay: steps as rows, the pages the run touched as
 * columns, each cell coloured by who holds the page after the step. Inline CSS and script only,
 * so the file opens from disk with no network.
 *
 * Per step it shows what `npm run replay` prints: the decoded arguments, the commands the
 * hypervisor issued, the scheduled hardware actions that ran at its yield points, and on an SMMU
 * machine the SMMU's state (registers, cached STEs, how the DMA stage-2 maps each page) and, for
 * a violation, the cache and ATC entries that reach its page with their histories.
 *
 * Readable at thousands of steps: the page carries the trace as compact data (every repeated
 * text — page states, commands, SMMU register lines — once, in a dictionary; each cell an index
 * into a table of distinct cells) and the script renders one page of rows at a time, with a
 * filter for the steps that change a shown page or violate a check. A 2,000-step trace stays
 * well below 1 MB (reports/timeline.test.ts).
 */
import { historyLines } from '../conformance/cache-history.js';
import { describeStep, retName } from '../conformance/names.js';
import { type PageView, type Trace, pageOwner, pageView, sameView, smmuChanges, violationCaches } from '../conformance/trace.js';

/** Wider tables stop being readable; the rest is counted in the header. */
export const MAX_COLUMNS = 40;
/** Rows the script shows at a time. */
export const ROWS_PER_PAGE = 100;

export interface TimelineMeta {
  readonly title: string;
  readonly source: string;
  readonly machine: string;
  readonly design: string;
  readonly bug?: string;
  readonly expect?: string;
}

/** Cell flags (the low two bits are the owner: OWNERS). */
export const CELL_SHARED = 4;
export const CELL_TOUCHED = 8;
export const CELL_CHANGED = 16;
export const CELL_DIVERGED = 32;
export const CELL_VIOLATION = 64;
export const OWNERS = ['host', 'hyp', 'guest', 'none'] as const;

/**
 * One distinct cell: [flags, checks, model before, model after, impl before, impl after, DMA
 * before, DMA after], the last six indices into `texts` (-1: not known).
 */
export type CellKind = readonly [number, number, number, number, number, number, number, number];

export interface TimelineStep {
  readonly index: number;
  readonly kind: string;
  /** Decoded arguments (register names, commands by opcode and fields, hex addresses). */
  readonly described: string;
  /** The operation as JSON (replayable). */
  readonly json: string;
  readonly model: string;
  readonly impl: string;
  readonly violations: readonly string[];
  readonly checks: readonly string[];
  /** Commands the hypervisor issued, as indices into `texts`. */
  readonly commands: readonly number[];
  /** Scheduled hardware actions that ran at the step's yield points. */
  readonly interleaved: readonly string[];
  /** The SMMU's state after the step, an index into `smmuStates` (-1: no SMMU). */
  readonly smmu: number;
  /** SMMU changes of the step (registers, cached STEs). */
  readonly smmuChanges: readonly string[];
  /** Cache and ATC entries behind each violation, one block of lines per page or stream. */
  readonly caches: readonly { readonly subject: string; readonly check: string; readonly lines: readonly string[] }[];
  /** Index into `cells` per column. */
  readonly cells: readonly number[];
  /** Whether a shown page changed in the step (the "changes" filter). */
  readonly changes: boolean;
}

export interface TimelineData {
  readonly pages: readonly string[];
  readonly hiddenPages: number;
  readonly rowsPerPage: number;
  readonly texts: readonly string[];
  readonly cells: readonly CellKind[];
  /** Distinct SMMU states, each its lines as indices into `texts`. */
  readonly smmuStates: readonly (readonly number[])[];
  readonly steps: readonly TimelineStep[];
}

/** The page stores each step as an array in this order (no key names repeated 2,000 times). */
export const STEP_FIELDS = ['index', 'kind', 'described', 'json', 'model', 'impl', 'violations', 'checks', 'commands', 'interleaved', 'smmu', 'smmuChanges', 'caches', 'cells', 'changes'] as const satisfies readonly (keyof TimelineStep)[];

function viewText(v: PageView): string {
  const parts = [`host ${v.host}`, `hyp ${v.hyp}`];
  if (v.pins !== 0) parts.push(`pins ${v.pins}`);
  if (v.shares !== 0) parts.push(`shares ${v.shares}`);
  if (v.guests.length > 0) parts.push(`guest ${v.guests.join(', ')}`);
  return parts.join(', ');
}

/** The page columns: every page some step shows, in address order. */
export function timelineColumns(trace: Trace): { columns: number[]; hidden: number } {
  const all = [...new Set(trace.steps.flatMap((s) => s.pages))].sort((a, b) => a - b);
  return { columns: all.slice(0, MAX_COLUMNS), hidden: Math.max(0, all.length - MAX_COLUMNS) };
}

/** Interns strings and cells: each distinct value once, referred to by index. */
class Dictionary<T> {
  readonly values: T[] = [];
  private readonly index = new Map<string, number>();
  constructor(private readonly key: (v: T) => string) {}
  add(v: T): number {
    const k = this.key(v);
    let i = this.index.get(k);
    if (i === undefined) {
      i = this.values.length;
      this.values.push(v);
      this.index.set(k, i);
    }
    return i;
  }
}

/** The trace as the page's script reads it. */
export function timelineData(trace: Trace): TimelineData {
  const { columns, hidden } = timelineColumns(trace);
  const texts = new Dictionary<string>((s) => s);
  const cells = new Dictionary<CellKind>((c) => c.join(','));
  const smmuStates = new Dictionary<readonly number[]>((lines) => lines.join(','));
  const described = (op: { readonly kind: string }) => describeStep(op as unknown as { kind: string } & Record<string, unknown>);
  const steps = trace.steps.map((s): TimelineStep => {
    const r = s.record;
    const { kind, ...args } = r.op;
    let changes = false;
    const cellIndices = columns.map((pfn) => {
      const before = pageView(s.model.before, pfn);
      const after = pageView(s.model.after, pfn);
      const { owner, shared } = pageOwner(after);
      let flags = OWNERS.indexOf(owner);
      if (shared) flags |= CELL_SHARED;
      if (s.pages.includes(pfn)) flags |= CELL_TOUCHED;
      if (!sameView(before, after)) {
        flags |= CELL_CHANGED;
        changes = true;
      }
      const sys = s.system === undefined ? undefined : { before: pageView(s.system.before, pfn), after: pageView(s.system.after, pfn) };
      if (sys !== undefined && !sameView(sys.after, after)) flags |= CELL_DIVERGED;
      const checks = [...new Set(s.violationPages.filter((v) => v.pfn === pfn).map((v) => v.check))];
      if (checks.length > 0) flags |= CELL_VIOLATION;
      const dma = (side: 'before' | 'after') => {
        const t = s.smmu?.[side].dma.get(pfn);
        return t === undefined ? -1 : texts.add(t);
      };
      return cells.add([
        flags,
        checks.length === 0 ? -1 : texts.add(checks.join(', ')),
        texts.add(viewText(before)),
        texts.add(viewText(after)),
        sys === undefined ? -1 : texts.add(viewText(sys.before)),
        sys === undefined ? -1 : texts.add(viewText(sys.after)),
        dma('before'),
        dma('after'),
      ]);
    });
    return {
      index: r.index,
      kind,
      described: described(r.op),
      json: JSON.stringify(args),
      model: retName(kind, r.modelRet),
      impl: retName(kind, r.systemRet),
      violations: r.violations.map((v) => `[${v.check}] ${v.message}`),
      checks: [...new Set(r.violations.map((v) => v.check))],
      commands: (r.commands ?? []).map((c) => texts.add(c)),
      interleaved: (r.interleaved ?? []).map((a) => `at ${a.at}: ${a.hw.kind} ${described(a.hw)} → ${a.detail}`),
      smmu: s.smmu === undefined ? -1 : smmuStates.add(s.smmu.after.lines.map((l) => texts.add(l))),
      smmuChanges: smmuChanges(s),
      caches: violationCaches(trace, s).map((c) => ({ subject: c.subject, check: c.check, lines: c.entries.flatMap((e) => historyLines(e)) })),
      cells: cellIndices,
      changes,
    };
  });
  return { pages: columns.map((p) => `0x${p.toString(16)}`), hiddenPages: hidden, rowsPerPage: ROWS_PER_PAGE, texts: texts.values, cells: cells.values, smmuStates: smmuStates.values, steps };
}

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** JSON inside a <script> element: "</" and U+2028/9 cannot end it or break the parse. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

export function renderTimeline(trace: Trace, meta: TimelineMeta): string {
  const data = timelineData(trace);
  const violations = trace.steps.flatMap((s) => s.record.violations.map((v) => ({ step: s.record.index, check: v.check, message: v.message })));
  const verdict = violations.length === 0 ? `${trace.steps.length} operations, no violation` : `${violations.length} violation(s) in ${new Set(violations.map((v) => v.step)).size} step(s)`;
  const head = data.pages.map((p) => `<th class="page" scope="col">${esc(p)}</th>`).join('');
  // One entry per violated step and check (a step may break several pages).
  const listed = new Map<string, { step: number; check: string; message: string; more: number }>();
  for (const v of violations) {
    const key = `${v.step} ${v.check}`;
    const seen = listed.get(key);
    if (seen === undefined) listed.set(key, { ...v, more: 0 });
    else seen.more++;
  }
  const violationList = [...listed.values()].map((v) => `<li><a href="#" data-goto="${v.step}">step ${v.step}</a> <b>${esc(v.check)}</b>: ${esc(v.message)}${v.more > 0 ? ` (+${v.more} more)` : ''}</li>`).join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${esc(meta.title)}</title>
<style>
body { font: 13px/1.4 system-ui, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 18px; margin: 0 0 4px; }
.meta { color: #555; margin-bottom: 8px; }
.legend span { display: inline-block; padding: 1px 8px; margin-right: 6px; border: 1px solid #999; }
#controls { margin-top: 8px; display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
table { border-collapse: collapse; margin-top: 8px; }
th, td { border: 1px solid #ccc; padding: 2px 5px; white-space: nowrap; }
thead th { position: sticky; top: 0; background: #f4f4f4; }
th.page { writing-mode: vertical-rl; transform: rotate(180deg); font-weight: normal; font-family: monospace; }
td.args { font-family: monospace; max-width: 420px; overflow: hidden; text-overflow: ellipsis; cursor: pointer; }
td.args .hw { color: #555; font-size: 11px; }
td.ret.mismatch { background: #fbb; font-weight: bold; }
td.verdict.ok { color: #2a7a2a; }
td.violation { background: #d00 !important; color: #fff; font-weight: bold; }
tr.violation-row th { background: #fdd; }
tr.current th { outline: 3px solid #36c; }
td.own-host { background: #cdeccd; } td.own-hyp { background: #f7d9a8; } td.own-guest { background: #c9dcf7; } td.own-none { background: #e4e4e4; color: #888; }
td.shared { background-image: repeating-linear-gradient(45deg, transparent 0 4px, rgba(0,0,0,.12) 4px 6px); }
td.touched { outline: 2px solid #555; outline-offset: -2px; }
td.changed { font-weight: bold; }
td.diverged { box-shadow: inset 0 0 0 3px #d0f; }
td[data-col], td.verdict { text-align: center; cursor: pointer; }
#detail { white-space: pre-wrap; font-family: monospace; background: #fafafa; border: 1px solid #ccc; padding: 6px; min-height: 3em; margin-top: 8px; }
</style>
</head>
<body>
<h1>${esc(meta.title)}</h1>
<div class="meta">${esc(meta.source)} · machine ${esc(meta.machine)} · design ${esc(meta.design)}${meta.bug === undefined ? '' : ` · injected bug <b>${esc(meta.bug)}</b> (test only)`}${meta.expect === undefined ? '' : ` · expected: ${esc(meta.expect)}`}</div>
<div class="meta" id="verdict">${esc(verdict)}</div>
<div class="legend"><span style="background:#cdeccd">H host</span><span style="background:#f7d9a8">Y hypervisor</span><span style="background:#c9dcf7">G guest</span><span style="background:#e4e4e4">— nobody</span><span>* shared</span><span style="outline:2px solid #555">touched by the step</span><span style="box-shadow: inset 0 0 0 3px #d0f">implementation ≠ model</span><span style="background:#d00;color:#fff">! violated</span></div>
<noscript><p>The timeline is drawn by its script: enable JavaScript, or use npm run replay for the same trace as text.</p></noscript>
<div id="controls">
<button type="button" id="first">«</button><button type="button" id="prev">‹</button>
<span id="pager"></span>
<button type="button" id="next">›</button><button type="button" id="last">»</button>
<label>show <select id="filter"><option value="all">every step</option><option value="changes">steps that change a shown page or violate</option><option value="violations">steps with a violation</option></select></label>
<label>step <input id="goto" type="number" min="0" size="6"></label>
</div>
<div class="meta" id="shape"></div>
<table id="timeline" data-steps="${trace.steps.length}" data-pages="${data.pages.length}">
<thead><tr><th>#</th><th>operation</th><th>arguments</th><th>model</th><th>impl</th><th>verdict</th>${head}</tr></thead>
<tbody></tbody>
</table>
${data.hiddenPages > 0 ? `<p class="meta">${data.hiddenPages} more page(s) not shown.</p>` : ''}
<div id="detail">Click a cell for the page's states before and after the step (and on an SMMU machine how DMA reaches it), or the arguments for the whole step.</div>
<ul id="violations">
${violationList}
</ul>
<script type="application/json" id="timeline-data">${scriptJson({ ...data, steps: data.steps.map((st) => STEP_FIELDS.map((f) => st[f])) })}</script>
<script>
(function () {
  var data = JSON.parse(document.getElementById('timeline-data').textContent);
  var FIELDS = ${JSON.stringify(STEP_FIELDS)};
  data.steps = data.steps.map(function (t) { var s = {}; FIELDS.forEach(function (f, i) { s[f] = t[i]; }); return s; });
  var T = data.texts, OWNER = ['host', 'hyp', 'guest', 'none'], CODE = ['H', 'Y', 'G', '—'];
  var table = document.getElementById('timeline'), body = table.tBodies[0], detail = document.getElementById('detail');
  var filter = document.getElementById('filter'), shown = [], page = 0, current = -1;
  var byIndex = {};
  data.steps.forEach(function (s, k) { byIndex[s.index] = k; });
  function text(i) { return i < 0 ? undefined : T[i]; }
  function cellClasses(f) {
    var c = ['own-' + OWNER[f & 3]];
    if (f & ${CELL_SHARED}) c.push('shared');
    if (f & ${CELL_TOUCHED}) c.push('touched');
    if (f & ${CELL_CHANGED}) c.push('changed');
    if (f & ${CELL_DIVERGED}) c.push('diverged');
    if (f & ${CELL_VIOLATION}) c.push('violation');
    return c.join(' ');
  }
  function el(tag, cls, content) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (content !== undefined) e.textContent = content;
    return e;
  }
  function row(k) {
    var s = data.steps[k], tr = document.createElement('tr');
    tr.setAttribute('data-step', s.index);
    if (s.violations.length) tr.className = 'violation-row';
    if (k === current) tr.className += ' current';
    tr.appendChild(el('th', '', String(s.index)));
    tr.appendChild(el('td', 'op', s.kind));
    var args = el('td', 'args', s.described);
    args.setAttribute('data-k', k);
    var extra = [];
    if (s.commands.length) extra.push('▸ ' + s.commands.length + ' command(s)');
    if (s.interleaved.length) extra.push('⟂ ' + s.interleaved.length + ' at yield points');
    if (s.smmuChanges.length) extra.push('SMMU changed');
    if (extra.length) { args.appendChild(document.createElement('br')); args.appendChild(el('span', 'hw', extra.join(' · '))); }
    tr.appendChild(args);
    tr.appendChild(el('td', 'ret', s.model));
    tr.appendChild(el('td', 'ret' + (s.model !== s.impl ? ' mismatch' : ''), s.impl));
    var v = el('td', 'verdict ' + (s.violations.length ? 'violation' : 'ok'), s.violations.length ? s.checks.join(', ') : 'ok');
    v.setAttribute('data-k', k);
    tr.appendChild(v);
    s.cells.forEach(function (c, col) {
      var cell = data.cells[c], f = cell[0];
      var td = el('td', cellClasses(f), CODE[f & 3] + (f & ${CELL_SHARED} ? '*' : '') + (f & ${CELL_VIOLATION} ? '!' : ''));
      td.setAttribute('data-col', col);
      td.setAttribute('data-k', k);
      td.setAttribute('data-pfn', data.pages[col]);
      tr.appendChild(td);
    });
    return tr;
  }
  function pages() { return Math.max(1, Math.ceil(shown.length / data.rowsPerPage)); }
  function draw() {
    page = Math.min(Math.max(page, 0), pages() - 1);
    var rows = document.createDocumentFragment();
    shown.slice(page * data.rowsPerPage, (page + 1) * data.rowsPerPage).forEach(function (k) { rows.appendChild(row(k)); });
    body.textContent = '';
    body.appendChild(rows);
    document.getElementById('pager').textContent = 'page ' + (page + 1) + ' of ' + pages() + ' (' + shown.length + ' of ' + data.steps.length + ' steps)';
    document.getElementById('shape').textContent = data.steps.length + ' steps × ' + data.pages.length + ' pages';
  }
  function refilter() {
    var f = filter.value;
    shown = [];
    data.steps.forEach(function (s, k) {
      if (f === 'all' || s.violations.length || (f === 'changes' && s.changes)) shown.push(k);
    });
    draw();
  }
  function stepDetail(s) {
    var lines = ['step ' + s.index + ': ' + s.kind + ' ' + s.described, '  ' + s.kind + ' ' + s.json, 'model ' + s.model + ', implementation ' + s.impl];
    s.commands.forEach(function (c) { lines.push('▸ hypervisor command: ' + T[c]); });
    s.interleaved.forEach(function (a) { lines.push('⟂ ' + a); });
    if (s.smmuChanges.length) lines.push('SMMU changes: ' + s.smmuChanges.join('; '));
    s.violations.forEach(function (v) { lines.push(v); });
    s.caches.forEach(function (c) { lines.push('⌁ SMMU cache and ATC entries ' + (c.subject.indexOf('sid') === 0 ? 'of ' : 'reaching ') + c.subject + ' (for ' + c.check + '):'); c.lines.forEach(function (l) { lines.push('    ' + l); }); });
    if (s.smmu >= 0) { lines.push('SMMU after the step:'); data.smmuStates[s.smmu].forEach(function (l) { lines.push('  ' + T[l]); }); }
    return lines.join('\\n');
  }
  function cellDetail(s, col) {
    var c = data.cells[s.cells[col]], pfn = data.pages[col];
    var lines = ['step ' + s.index + ', pfn ' + pfn, 'model before: ' + T[c[2]], 'model after: ' + T[c[3]]];
    if (c[4] < 0) lines.push('implementation: not readable after this step (a half-written table after a panic)');
    else if (T[c[4]] === T[c[2]] && T[c[5]] === T[c[3]]) lines.push('implementation: the same as the model');
    else lines.push('implementation before: ' + T[c[4]], 'implementation after: ' + T[c[5]]);
    if (c[7] >= 0) lines.push('DMA stage-2 (SMMU): ' + (c[6] >= 0 && c[6] !== c[7] ? T[c[6]] + ' → ' : '') + T[c[7]]);
    if (c[1] >= 0) lines.push('VIOLATED: ' + T[c[1]]);
    s.caches.forEach(function (e) {
      if (e.subject !== 'pfn ' + pfn) return;
      lines.push('⌁ SMMU cache and ATC entries reaching it (for ' + e.check + '):');
      e.lines.forEach(function (l) { lines.push('    ' + l); });
    });
    return lines.join('\\n');
  }
  function goTo(index) {
    var k = byIndex[index];
    if (k === undefined) return;
    if (shown.indexOf(k) < 0) { filter.value = 'all'; refilter(); }
    current = k;
    page = Math.floor(shown.indexOf(k) / data.rowsPerPage);
    draw();
    detail.textContent = stepDetail(data.steps[k]);
    var tr = body.querySelector('tr[data-step="' + index + '"]');
    if (tr && tr.scrollIntoView) tr.scrollIntoView({ block: 'center' });
  }
  table.addEventListener('click', function (e) {
    var td = e.target.closest('td[data-k]');
    if (!td) return;
    var s = data.steps[Number(td.getAttribute('data-k'))];
    detail.textContent = td.hasAttribute('data-col') ? cellDetail(s, Number(td.getAttribute('data-col'))) : stepDetail(s);
  });
  document.getElementById('violations').addEventListener('click', function (e) {
    var a = e.target.closest('a[data-goto]');
    if (!a) return;
    e.preventDefault();
    goTo(Number(a.getAttribute('data-goto')));
  });
  document.getElementById('first').onclick = function () { page = 0; draw(); };
  document.getElementById('prev').onclick = function () { page--; draw(); };
  document.getElementById('next').onclick = function () { page++; draw(); };
  document.getElementById('last').onclick = function () { page = pages() - 1; draw(); };
  filter.onchange = function () { page = 0; refilter(); };
  document.getElementById('goto').onchange = function (e) { goTo(Number(e.target.value)); };
  refilter();
  // A link to a step: timeline.html#step=N opens its page with its detail.
  var hash = /^#step=(\\d+)$/.exec(location.hash);
  if (hash) goTo(Number(hash[1]));
  document.body.setAttribute('data-ready', '1');
})();
</script>
</body>
</html>
`;
}
