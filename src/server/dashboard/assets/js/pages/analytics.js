// Analytics: the API's funnel (calls → completed → candidates → confirmed → evaluated → approved
// → ingested) and where calls ended (drop-off by dialogue step), for one receptionist or all, over
// a date range. The charts are plain HTML bars: nothing to load, readable on a phone.

import { html, useState } from '../lib.js';
import { get, qs } from '../api.js';
import { Spinner, ErrorNote, FieldError, useAsync } from '../ui.js';
import { fmtDuration, fmtScore, fmtStep } from '../format.js';

const DAY = 86400000;
const isoDay = (t) => new Date(t).toISOString().slice(0, 10);

const FUNNEL = [
  ['calls', 'Calls'],
  ['completed_calls', 'Completed calls'],
  ['candidates', 'Candidates'],
  ['confirmed', 'Confirmed'],
  ['evaluated', 'Evaluated'],
  ['approved', 'Approved'],
  ['ingested', 'Ingested'],
];

const STEP_ORDER = ['intro', 'disclosures', 'name', 'location'];

/** Dialogue order: intro, disclosures, name, location, question_1.., caller_questions, completed. */
function stepRank(step) {
  const i = STEP_ORDER.indexOf(step);
  if (i >= 0) return i;
  const m = /^question_(\d+)$/.exec(step);
  if (m) return 10 + Number(m[1]);
  if (step === 'caller_questions') return 1000;
  if (step === 'completed') return 1001;
  return 1002;
}

export function Analytics() {
  const today = Date.now();
  const [range, setRange] = useState({ from: isoDay(today - 29 * DAY), to: isoDay(today) });
  const [receptionist, setReceptionist] = useState('');
  const receptionists = useAsync((signal) => get('/api/v1/receptionists', { signal }), []);
  const { data, error, loading, reload } = useAsync(
    (signal) => get(`/api/v1/analytics${qs({ from: range.from, to: range.to, receptionist_id: receptionist })}`, { signal }),
    [range.from, range.to, receptionist],
  );
  const quick = (days) => setRange({ from: isoDay(Date.now() - (days - 1) * DAY), to: isoDay(Date.now()) });
  const m = data ? (receptionist ? data.receptionists[0] || data.total : data.total) : null;
  const fieldError = error && (error.field === 'from' || error.field === 'to') ? error : null;

  return html`<div class="page analytics">
    <div class="page-head">
      <div>
        <h1>Analytics</h1>
        <p class="muted">Calls accepted in the range (UTC days) and what became of their callers.</p>
      </div>
    </div>
    <div class="toolbar">
      <select aria-label="Receptionist" value=${receptionist} onChange=${(e) => setReceptionist(e.target.value)}>
        <option value="">All receptionists</option>
        ${(receptionists.data ? receptionists.data.data : []).map(
          (r) => html`<option value=${r.id}>${r.agent_name} · ${r.phone_number}</option>`,
        )}
      </select>
      <label class="inline">From <input type="date" name="from" value=${range.from} max=${range.to} onChange=${(e) => setRange({ ...range, from: e.target.value })} /></label>
      <label class="inline">To <input type="date" name="to" value=${range.to} min=${range.from} onChange=${(e) => setRange({ ...range, to: e.target.value })} /></label>
      <div class="segmented" role="group" aria-label="Quick ranges">
        ${[7, 30, 90].map((d) => html`<button type="button" class="button small ghost" onClick=${() => quick(d)}>${d} days</button>`)}
      </div>
    </div>
    <${FieldError} error=${fieldError} field=${fieldError && fieldError.field} />
    ${fieldError ? null : html`<${ErrorNote} error=${error} onRetry=${reload} />`}
    ${loading && !data ? html`<${Spinner} />` : null}
    ${m
      ? html`<div class="stats">
            <div class="stat"><span class="label">Calls</span><strong>${m.calls}</strong></div>
            <div class="stat"><span class="label">Completed</span><strong>${m.calls ? Math.round((100 * m.completed_calls) / m.calls) : 0}%</strong></div>
            <div class="stat"><span class="label">Average call</span><strong>${fmtDuration(m.average_duration_ms)}</strong></div>
            <div class="stat"><span class="label">Candidates</span><strong>${m.candidates}</strong></div>
            <div class="stat"><span class="label">Average score</span><strong>${fmtScore(m.average_score)}</strong></div>
            <div class="stat"><span class="label">Rejected</span><strong>${m.rejected}</strong></div>
          </div>
          <div class="two-col">
            <section class="card chart-card">
              <h2>Funnel</h2>
              <${Bars} id="funnel" rows=${FUNNEL.map(([k, label]) => ({ label, value: m[k] || 0 }))} base=${m.calls} />
            </section>
            <section class="card chart-card">
              <h2>Where calls ended</h2>
              <${Bars}
                id="drop-off"
                rows=${Object.entries(m.drop_off || {})
                  .sort((a, b) => stepRank(a[0]) - stepRank(b[0]))
                  .map(([step, n]) => ({ label: fmtStep(step), value: n, tone: step === 'completed' ? 'good' : 'warn' }))}
                base=${Object.values(m.drop_off || {}).reduce((a, b) => a + b, 0)}
                empty="No ended calls in this range."
              />
            </section>
          </div>
          ${!receptionist && data.receptionists.length
            ? html`<section>
                <h2>By receptionist</h2>
                <table class="list">
                  <thead><tr><th>Receptionist</th><th class="num">Calls</th><th class="num">Completed</th><th class="num">Candidates</th><th class="num">Approved</th><th class="num">Rejected</th><th class="num">Ingested</th><th class="num">Avg score</th><th class="num">Avg call</th></tr></thead>
                  <tbody>
                    ${data.receptionists.map(
                      (r) => html`<tr key=${r.receptionist_id}>
                        <td data-label="Receptionist"><button type="button" class="link" onClick=${() => setReceptionist(r.receptionist_id)}>${r.agent_name}</button> <span class="muted small mono">${r.phone_number}</span></td>
                        <td data-label="Calls" class="num">${r.calls}</td>
                        <td data-label="Completed" class="num">${r.completed_calls}</td>
                        <td data-label="Candidates" class="num">${r.candidates}</td>
                        <td data-label="Approved" class="num">${r.approved}</td>
                        <td data-label="Rejected" class="num">${r.rejected}</td>
                        <td data-label="Ingested" class="num">${r.ingested}</td>
                        <td data-label="Avg score" class="num">${fmtScore(r.average_score)}</td>
                        <td data-label="Avg call" class="num">${fmtDuration(r.average_duration_ms)}</td>
                      </tr>`,
                    )}
                  </tbody>
                </table>
              </section>`
            : null}`
      : null}
  </div>`;
}

/** Horizontal bars; each row's share of `base` is shown beside its count. */
function Bars({ id, rows, base, empty = 'No data in this range.' }) {
  if (!rows.length) return html`<p class="muted">${empty}</p>`;
  const max = Math.max(1, ...rows.map((r) => r.value));
  return html`<ul class="bars" data-chart=${id} role="list">
    ${rows.map(
      (r) => html`<li key=${r.label} class="bar-row">
        <span class="bar-label">${r.label}</span>
        <span class="bar-track" aria-hidden="true">
          <span class=${`bar ${r.tone || ''}`} style=${{ width: `${(100 * r.value) / max}%` }}></span>
        </span>
        <span class="bar-value"><strong>${r.value}</strong>${base ? html` <span class="muted small">${Math.round((100 * r.value) / base)}%</span>` : null}</span>
      </li>`,
    )}
  </ul>`;
}
