/**
 * A self-contained HTML timeline of a traced replay: steps as rows, the pages the run touched as
 * columns, each cell coloured by who holds the page after the step. Inline CSS and script only,
 * so the file opens from disk with no network. Columns for IOMMU-mapped or cached state can be
 * added later as further cell classes.
 */
import { type Trace, type TraceStep, type PageView, pageOwner, pageView, sameView } from '../conformance/trace.js';
import { retName } from '../conformance/names.js';

/** Wider tables stop being readable; the rest is counted in the header. */
export const MAX_COLUMNS = 40;

export interface TimelineMeta {
  readonly title: string;
  readonly source: string;
  readonly machine: string;
  readonly design: string;
  readonly bug?: string;
  readonly expect?: string;
}

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function viewText(v: PageView): string {
  const parts = [`host ${v.host}`, `hyp ${v.hyp}`];
  if (v.pins !== 0) parts.push(`pins ${v.pins}`);
  if (v.shares !== 0) parts.push(`shares ${v.shares}`);
  if (v.guests.length > 0) parts.push(`guest ${v.guests.join(', ')}`);
  return parts.join(', ');
}

const OWNER_CODE = { host: 'H', hyp: 'Y', guest: 'G', none: '—' } as const;

/** The page columns: every page some step shows, in address order. */
export function timelineColumns(trace: Trace): { columns: number[]; hidden: number } {
  const all = [...new Set(trace.steps.flatMap((s) => s.pages))].sort((a, b) => a - b);
  return { columns: all.slice(0, MAX_COLUMNS), hidden: Math.max(0, all.length - MAX_COLUMNS) };
}

function cell(step: TraceStep, pfn: number): string {
  const after = pageView(step.model.after, pfn);
  const before = pageView(step.model.before, pfn);
  const { owner, shared } = pageOwner(after);
  const classes = [`own-${owner}`];
  if (shared) classes.push('shared');
  if (step.pages.includes(pfn)) classes.push('touched');
  if (!sameView(before, after)) classes.push('changed');
  const sys = step.system === undefined ? undefined : { before: pageView(step.system.before, pfn), after: pageView(step.system.after, pfn) };
  if (sys !== undefined && !sameView(sys.after, after)) classes.push('diverged');
  const checks = [...new Set(step.violationPages.filter((v) => v.pfn === pfn).map((v) => v.check))];
  if (checks.length > 0) classes.push('violation');
  const detail = [
    `step ${step.record.index}, pfn 0x${pfn.toString(16)}`,
    `model before: ${viewText(before)}`,
    `model after: ${viewText(after)}`,
    ...(sys === undefined ? ['implementation: not observed'] : [`implementation before: ${viewText(sys.before)}`, `implementation after: ${viewText(sys.after)}`]),
    ...checks.map((c) => `VIOLATED: ${c}`),
  ].join('\n');
  const text = OWNER_CODE[owner] + (shared ? '*' : '') + (checks.length > 0 ? '!' : '');
  return `<td class="${classes.join(' ')}" data-pfn="0x${pfn.toString(16)}" data-detail="${esc(detail)}" title="${esc(detail)}">${esc(text)}</td>`;
}

export function renderTimeline(trace: Trace, meta: TimelineMeta): string {
  const { columns, hidden } = timelineColumns(trace);
  const violations = trace.steps.flatMap((s) => s.record.violations.map((v) => ({ step: s.record.index, check: v.check, message: v.message })));
  const verdict = violations.length === 0 ? `${trace.steps.length} operations, no violation` : `${violations.length} violation(s) in ${new Set(violations.map((v) => v.step)).size} step(s)`;
  const head = columns.map((p) => `<th class="page" scope="col">0x${p.toString(16)}</th>`).join('');
  const rows = trace.steps
    .map((s) => {
      const r = s.record;
      const { kind, ...args } = r.op;
      const bad = r.violations.length > 0;
      const verdictCell = bad
        ? `<td class="verdict violation" data-detail="${esc(r.violations.map((v) => `[${v.check}] ${v.message}`).join('\n'))}">${esc([...new Set(r.violations.map((v) => v.check))].join(', '))}</td>`
        : '<td class="verdict ok">ok</td>';
      return (
        `<tr data-step="${r.index}"${bad ? ' class="violation-row"' : ''}><th scope="row">${r.index}</th><td class="op">${esc(kind)}</td><td class="args">${esc(JSON.stringify(args))}</td>` +
        `<td class="ret">${esc(retName(kind, r.modelRet))}</td><td class="ret${r.systemRet !== r.modelRet ? ' mismatch' : ''}">${esc(retName(kind, r.systemRet))}</td>${verdictCell}` +
        columns.map((p) => cell(s, p)).join('') +
        '</tr>'
      );
    })
    .join('\n');
  const violationList = violations.map((v) => `<li><a href="#" data-goto="${v.step}">step ${v.step}</a> <b>${esc(v.check)}</b>: ${esc(v.message)}</li>`).join('\n');
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
table { border-collapse: collapse; margin-top: 8px; }
th, td { border: 1px solid #ccc; padding: 2px 5px; white-space: nowrap; }
thead th { position: sticky; top: 0; background: #f4f4f4; }
th.page { writing-mode: vertical-rl; transform: rotate(180deg); font-weight: normal; font-family: monospace; }
td.args { font-family: monospace; max-width: 360px; overflow: hidden; text-overflow: ellipsis; }
td.ret.mismatch { background: #fbb; font-weight: bold; }
td.verdict.ok { color: #2a7a2a; }
td.violation { background: #d00 !important; color: #fff; font-weight: bold; }
tr.violation-row th { background: #fdd; }
td.own-host { background: #cdeccd; } td.own-hyp { background: #f7d9a8; } td.own-guest { background: #c9dcf7; } td.own-none { background: #e4e4e4; color: #888; }
td.shared { background-image: repeating-linear-gradient(45deg, transparent 0 4px, rgba(0,0,0,.12) 4px 6px); }
td.touched { outline: 2px solid #555; outline-offset: -2px; }
td.changed { font-weight: bold; }
td.diverged { box-shadow: inset 0 0 0 3px #d0f; }
td[data-pfn], td.verdict { text-align: center; cursor: pointer; }
#detail { white-space: pre-wrap; font-family: monospace; background: #fafafa; border: 1px solid #ccc; padding: 6px; min-height: 3em; margin-top: 8px; }
</style>
</head>
<body>
<h1>${esc(meta.title)}</h1>
<div class="meta">${esc(meta.source)} · machine ${esc(meta.machine)} · design ${esc(meta.design)}${meta.bug === undefined ? '' : ` · injected bug <b>${esc(meta.bug)}</b> (test only)`}${meta.expect === undefined ? '' : ` · expected: ${esc(meta.expect)}`}</div>
<div class="meta" id="verdict">${esc(verdict)}</div>
<div class="legend"><span class="own" style="background:#cdeccd">H host</span><span style="background:#f7d9a8">Y hypervisor</span><span style="background:#c9dcf7">G guest</span><span style="background:#e4e4e4">— nobody</span><span>* shared</span><span style="outline:2px solid #555">touched by the step</span><span style="box-shadow: inset 0 0 0 3px #d0f">implementation ≠ model</span><span style="background:#d00;color:#fff">! violated</span></div>
<div class="meta" id="shape"></div>
<table id="timeline" data-steps="${trace.steps.length}" data-pages="${columns.length}">
<thead><tr><th>#</th><th>operation</th><th>arguments</th><th>model</th><th>impl</th><th>verdict</th>${head}</tr></thead>
<tbody>
${rows}
</tbody>
</table>
${hidden > 0 ? `<p class="meta">${hidden} more page(s) not shown.</p>` : ''}
<div id="detail">Click a cell for the page states before and after the step.</div>
<ul id="violations">
${violationList}
</ul>
<script>
(function () {
  var table = document.getElementById('timeline');
  var detail = document.getElementById('detail');
  var rows = table.tBodies[0].rows.length;
  var pages = table.tHead.rows[0].querySelectorAll('th.page').length;
  document.getElementById('shape').textContent = rows + ' steps × ' + pages + ' pages';
  table.addEventListener('click', function (e) {
    var td = e.target.closest('td[data-detail]');
    if (td) detail.textContent = td.getAttribute('data-detail');
  });
  document.getElementById('violations').addEventListener('click', function (e) {
    var a = e.target.closest('a[data-goto]');
    if (!a) return;
    e.preventDefault();
    var row = table.querySelector('tr[data-step="' + a.getAttribute('data-goto') + '"]');
    if (row) row.scrollIntoView({ block: 'center' });
  });
  document.body.setAttribute('data-ready', '1');
})();
</script>
</body>
</html>
`;
}
