// One candidate: who they are, each call (recording beside the transcript, answers with
// pass/fail), evaluations, notes, history, texts and emails; approve, reject, ingest, notes and
// corrections for admins.

import { html, useState } from '../lib.js';
import { get, post, patch, seg } from '../api.js';
import {
  Badge,
  CopyButton,
  Icon,
  Spinner,
  ErrorNote,
  FieldError,
  Modal,
  toast,
  useAsync,
  useSession,
  ActionButton,
  Empty,
} from '../ui.js';
import { CallPlayer } from '../player.js';
import { IngestDialog } from './pipeline.js';
import {
  fmtDateTime,
  fmtWhen,
  fmtDuration,
  fmtScore,
  fmtAnswer,
  candidateState,
  STATUS_LABELS,
  REVIEW_LABELS,
  END_REASONS,
  KIND_LABELS,
} from '../format.js';

export function CandidatePage({ id }) {
  const { canWrite } = useSession();
  const { data, error, loading, reload } = useAsync(
    async (signal) => {
      const [candidate, receptionists, interviewers] = await Promise.all([
        get(`/api/v1/candidates/${seg(id)}`, { signal }),
        get('/api/v1/receptionists', { signal }),
        get('/api/v1/interviewers', { signal }),
      ]);
      return { candidate, receptionists: receptionists.data, interviewers: interviewers.data };
    },
    [id],
  );
  const [dialog, setDialog] = useState(null);

  if (loading && !data) return html`<div class="page"><${Spinner} /></div>`;
  if (error && !data)
    return html`<div class="page">
      <a class="back" href="#/candidates"><${Icon} name="back" size=${16} /> Candidates</a>
      <${ErrorNote} error=${error.status === 404 ? { message: 'No such candidate.' } : error} onRetry=${reload} />
    </div>`;

  const { candidate: c, receptionists, interviewers } = data;
  const receptionist = receptionists.find((r) => r.id === c.receptionist_id);
  const state = candidateState(c);

  const approve = async () => {
    await post(`/api/v1/candidates/${seg(c.id)}/approve`);
    toast('Approved');
    reload();
  };

  return html`<div class="page candidate" data-candidate=${c.id}>
    <a class="back" href="#/candidates"><${Icon} name="back" size=${16} /> Candidates</a>
    <div class="page-head">
      <div>
        <h1 class="candidate-name">${c.name || 'Unknown caller'}</h1>
        <div class="meta">
          <${Badge} tone=${state.tone}>${state.label}</${Badge}>
          <span>${c.receptionist_name}</span>
          ${c.location ? html`<span>${c.location}</span>` : null}
        </div>
        <div class="meta">
          <span class="contact"><span class="mono">${c.phone_number || '—'}</span><${CopyButton} text=${c.phone_number} what="phone number" /></span>
          <span class="contact">${c.email ? html`<span>${c.email}</span>` : html`<span class="muted">no email</span>`}<${CopyButton} text=${c.email} what="email" /></span>
        </div>
      </div>
      ${canWrite
        ? html`<div class="head-actions">
            <${ActionButton} class="button good" data-mutates onClick=${approve} disabled=${c.review === 'approved'}>Approve</${ActionButton}>
            <button type="button" class="button bad" data-mutates disabled=${c.review === 'rejected'} onClick=${() => setDialog('reject')}>Reject</button>
            <button type="button" class="button primary" data-mutates onClick=${() => setDialog('ingest')}>Ingest</button>
            <button type="button" class="button ghost" data-mutates onClick=${() => setDialog('edit')}>Edit details</button>
          </div>`
        : null}
    </div>

    <div class="stats">
      <div class="stat"><span class="label">Status</span><strong>${STATUS_LABELS[c.status] || c.status}</strong></div>
      <div class="stat"><span class="label">Decision</span><strong class="decision">${c.review ? REVIEW_LABELS[c.review] : '—'}</strong>
        ${c.review_by ? html`<span class="muted small">${c.review_by === 'system' ? 'by routing' : 'by a recruiter'} ${fmtWhen(c.reviewed_at)}</span>` : null}</div>
      <div class="stat"><span class="label">Latest score</span><strong>${fmtScore(c.latest_score)}</strong></div>
      <div class="stat"><span class="label">Calls</span><strong>${c.call_count}</strong></div>
      <div class="stat"><span class="label">Ingested</span><strong class="ingested">${c.ingested ? c.ingested.interviewer_name || 'Yes' : '—'}</strong>
        ${c.ingested ? html`<span class="muted small">${fmtWhen(c.ingested.at)}</span>` : null}</div>
    </div>

    <section>
      <h2>Calls</h2>
      ${c.calls.length ? c.calls.map((call) => html`<${CallCard} key=${call.id} call=${call} />`) : html`<${Empty} title="No calls" />`}
    </section>

    <section>
      <h2>Evaluations</h2>
      ${c.evaluations.length
        ? c.evaluations.map((e) => html`<${Evaluation} key=${e.id} e=${e} />`)
        : html`<p class="muted">Not evaluated yet.</p>`}
    </section>

    <div class="two-col">
      <section>
        <h2>Notes</h2>
        <${Notes} candidate=${c} canWrite=${canWrite} onAdded=${reload} />
      </section>
      <section>
        <h2>History</h2>
        <${History} entries=${c.history} />
      </section>
    </div>

    ${c.messages.length || c.emails.length
      ? html`<section>
          <h2>Messages</h2>
          <ul class="messages">
            ${c.messages.map(
              (m) => html`<li key=${m.id} class=${`message ${m.direction}`}>
                <div class="muted small">
                  ${m.direction === 'inbound' ? 'Text from the candidate' : 'Text to the candidate'} · ${fmtDateTime(m.created_at)} · ${m.status}
                </div>
                <div class="body">${m.body}</div>
                ${m.error ? html`<div class="field-error">${m.error}</div>` : null}
              </li>`,
            )}
            ${c.emails.map(
              (m) => html`<li key=${m.id} class="message outbound">
                <div class="muted small">Email to ${m.to} · ${fmtDateTime(m.created_at)} · ${m.status}</div>
                <div class="body">${m.subject}</div>
                ${m.error ? html`<div class="field-error">${m.error}</div>` : null}
              </li>`,
            )}
          </ul>
        </section>`
      : null}

    ${dialog === 'reject'
      ? html`<${RejectDialog} candidate=${c} onClose=${() => setDialog(null)} onDone=${() => { setDialog(null); reload(); }} />`
      : null}
    ${dialog === 'ingest'
      ? html`<${IngestDialog}
          candidate=${c}
          receptionist=${receptionist}
          interviewers=${interviewers}
          onClose=${() => setDialog(null)}
          onDone=${() => { setDialog(null); reload(); }}
        />`
      : null}
    ${dialog === 'edit'
      ? html`<${EditDetails} candidate=${c} onClose=${() => setDialog(null)} onDone=${() => { setDialog(null); reload(); }} />`
      : null}
  </div>`;
}

function CallCard({ call }) {
  return html`<article class="card call" data-call=${call.id}>
    <header class="call-head">
      <strong>${fmtDateTime(call.started_at || call.accepted_at)}</strong>
      <span>${fmtDuration(call.duration_ms)}</span>
      <span>${END_REASONS[call.end_reason] || call.status}</span>
      <span class="muted">from <span class="mono">${call.from_number}</span>${call.forwarded_from ? html` (forwarded from ${call.forwarded_from})` : null}</span>
      ${call.caller_language && call.caller_language !== 'en'
        ? html`<span class="muted small" data-language=${call.caller_language}>caller spoke ${call.caller_language.toUpperCase()}${call.agent_language === call.caller_language ? ', answered in it' : ', answered in English'}</span>`
        : null}
    </header>
    <${CallPlayer} call=${call}>
    ${call.answers.length
      ? html`<h3>Answers</h3>
          <ul class="answers">
            ${call.answers.map(
              (a) => html`<li key=${a.question_index} class="answer">
                <div class="q">${a.question} <span class="muted small">${KIND_LABELS[a.kind] || a.kind}</span></div>
                <div class="a">
                  <strong>${fmtAnswer(a.value)}</strong>
                  ${a.raw ? html`<span class="muted">“${a.raw}”</span>` : null}
                  ${a.via_dtmf ? html`<${Badge}>keypad</${Badge}>` : null}
                  ${a.attempts > 1 ? html`<span class="muted small">asked ${a.attempts}×</span>` : null}
                  <span class="result">
                    ${a.meets_expected === true ? html`<${Badge} tone="good">Pass</${Badge}>` : null}
                    ${a.meets_expected === false ? html`<${Badge} tone="bad">Fail</${Badge}>` : null}
                    ${a.meets_expected === null || a.meets_expected === undefined ? html`<${Badge}>No expectation</${Badge}>` : null}
                    ${a.dealbreaker_failed ? html` <${Badge} tone="bad">Dealbreaker</${Badge}>` : null}
                  </span>
                </div>
              </li>`,
            )}
          </ul>`
      : html`<p class="muted small">No screening answers on this call.</p>`}
    <${Latencies} turns=${call.latencies || []} />
    </${CallPlayer}>
  </article>`;
}

/** How long each of the caller's turns waited for the agent's reply, by stage (server side). */
function Latencies({ turns }) {
  if (!turns.length) return null;
  const ms = (v) => (v === null || v === undefined ? '—' : `${v} ms`);
  const model = turns.some((t) => t.llm_first_ms !== undefined && t.llm_first_ms !== null);
  return html`<details class="latencies">
    <summary>Response times <span class="muted small">(${turns.length} turns, median ${median(turns.map((t) => t.total_ms))} ms)</span></summary>
    <table class="list small">
      <thead>
        <tr>
          <th scope="col">Turn</th>
          <th scope="col">End of turn</th>
          <th scope="col">Recognition</th>
          ${model ? html`<th scope="col">Model first</th><th scope="col">Model done</th>` : null}
          <th scope="col">Speech</th>
          <th scope="col">Caller stops → agent speaks</th>
        </tr>
      </thead>
      <tbody>
        ${turns.map(
          (t) => html`<tr key=${t.turn}>
            <td>${t.turn}</td>
            <td>${ms(t.endpointing_ms)}</td>
            <td>${ms(t.stt_ms)}</td>
            ${model ? html`<td>${ms(t.llm_first_ms)}</td><td>${ms(t.llm_ms)}</td>` : null}
            <td>${ms(t.tts_ms)}</td>
            <td><strong>${ms(t.total_ms)}</strong></td>
          </tr>`,
        )}
      </tbody>
    </table>
  </details>`;
}

function median(values) {
  const v = [...values].sort((a, b) => a - b);
  return v.length ? v[Math.floor((v.length - 1) / 2)] : 0;
}

function Evaluation({ e }) {
  const tone = e.dealbreaker_failed ? 'bad' : e.score >= 70 ? 'good' : 'warn';
  return html`<article class="card evaluation">
    <div class="eval-head">
      <div class=${`score ${tone}`} aria-label=${`Score ${fmtScore(e.score)} of 100`}>${fmtScore(e.score)}</div>
      <div>
        <div>${e.dealbreaker_failed ? html`<${Badge} tone="bad">Dealbreaker failed</${Badge}>` : html`<${Badge} tone="good">No dealbreaker failed</${Badge}>`}</div>
        <p class="summary">${e.summary}</p>
        <div class="muted small">${fmtDateTime(e.created_at)} · ${e.evaluator}</div>
      </div>
    </div>
    ${Array.isArray(e.questions) && e.questions.length
      ? html`<table class="list scores">
          <thead><tr><th>Question</th><th>Answer</th><th>Result</th><th class="num">Score</th><th class="num">Weight</th></tr></thead>
          <tbody>
            ${e.questions.map(
              (q) => html`<tr key=${q.index}>
                <td data-label="Question">${q.question}${q.dealbreaker ? html` <${Badge} tone=${q.dealbreaker_failed ? 'bad' : 'muted'}>dealbreaker</${Badge}>` : null}</td>
                <td data-label="Answer">${q.answer || html`<span class="muted">—</span>`}</td>
                <td data-label="Result"><${Badge} tone=${q.result === 'pass' ? 'good' : q.result === 'fail' ? 'bad' : 'muted'}>${q.result}</${Badge}>${q.rating ? html` <span class="muted small">${q.rating}/5</span>` : null}</td>
                <td data-label="Score" class="num">${q.score}</td>
                <td data-label="Weight" class="num">${q.weight}</td>
              </tr>`,
            )}
          </tbody>
        </table>`
      : null}
  </article>`;
}

function Notes({ candidate, canWrite, onAdded }) {
  const [text, setText] = useState('');
  const [error, setError] = useState(null);
  const add = async () => {
    setError(null);
    try {
      await post(`/api/v1/candidates/${seg(candidate.id)}/notes`, { text });
      setText('');
      toast('Note added');
      onAdded();
    } catch (e) {
      setError(e);
    }
  };
  return html`<div class="notes">
    ${candidate.notes.length
      ? html`<ul class="note-list">
          ${candidate.notes.map(
            (n) => html`<li key=${n.id}>
              <div class="body">${n.detail && n.detail.text}</div>
              <div class="muted small">${fmtDateTime(n.created_at)} · ${actorLabel(n.actor)}</div>
            </li>`,
          )}
        </ul>`
      : html`<p class="muted">No notes.</p>`}
    ${canWrite
      ? html`<div class="note-form">
          <textarea rows="3" aria-label="New note" placeholder="Add a note for your team" value=${text} onInput=${(e) => setText(e.target.value)}></textarea>
          <${FieldError} error=${error} field="text" />
          ${error && error.field !== 'text' ? html`<${ErrorNote} error=${error} />` : null}
          <${ActionButton} class="button" data-mutates onClick=${add} disabled=${!text.trim()}>Add note</${ActionButton}>
        </div>`
      : null}
  </div>`;
}

const HISTORY_LABELS = {
  call_ended: 'Call ended',
  confirmation_sent: 'Confirmation text sent',
  confirmation_skipped: 'Confirmation skipped',
  confirmed: 'Confirmed',
  reply: 'Text reply',
  correction: 'Details corrected by text',
  opted_out: 'Opted out of texts',
  opted_in: 'Opted back in to texts',
  evaluated: 'Evaluated',
  routing_skipped: 'Routing skipped',
  review: 'Decision',
  ingested: 'Ingested',
  details_updated: 'Details edited',
  note: 'Note',
};

function actorLabel(actor) {
  if (!actor || actor === 'system') return 'system';
  if (actor.startsWith('key:')) return 'a recruiter';
  return actor;
}

/** A short, plain-text reading of a history entry's detail. */
function historyDetail(h) {
  const d = h.detail || {};
  switch (h.kind) {
    case 'review': {
      let why = '';
      if (d.reason) why = `(${d.reason})`;
      else if (d.manual_approval) why = '(manual approval)';
      else if (d.threshold !== undefined && d.score !== undefined) why = `(score ${fmtScore(d.score)}, threshold ${d.threshold})`;
      return `${REVIEW_LABELS[d.review] || d.review || ''} ${why}`.trim();
    }
    case 'details_updated': {
      const f = d.fields;
      return Array.isArray(f) ? f.join(', ') : f && typeof f === 'object' ? Object.keys(f).join(', ') : '';
    }
    case 'evaluated':
      return d.score !== undefined ? `score ${fmtScore(d.score)}` : '';
    case 'ingested':
      return d.interviewer_name || '';
    case 'note':
      return d.text || '';
    case 'reply':
    case 'correction':
      return d.body || d.text || '';
    case 'call_ended':
      return END_REASONS[d.end_reason] || d.end_reason || '';
    default:
      return typeof d.reason === 'string' ? d.reason : '';
  }
}

function History({ entries }) {
  if (!entries.length) return html`<p class="muted">Nothing yet.</p>`;
  return html`<ol class="history">
    ${[...entries].reverse().map(
      (h) => html`<li key=${h.id}>
        <span class="what">${HISTORY_LABELS[h.kind] || h.kind}</span>
        <span class="detail">${historyDetail(h)}</span>
        <span class="muted small">${fmtDateTime(h.created_at)} · ${actorLabel(h.actor)}</span>
      </li>`,
    )}
  </ol>`;
}

function RejectDialog({ candidate, onClose, onDone }) {
  const [reason, setReason] = useState('');
  const [error, setError] = useState(null);
  const submit = async () => {
    setError(null);
    try {
      await post(`/api/v1/candidates/${seg(candidate.id)}/reject`, reason.trim() ? { reason: reason.trim() } : {});
      toast('Rejected');
      onDone();
    } catch (e) {
      setError(e);
    }
  };
  return html`<${Modal} title=${`Reject ${candidate.name || 'candidate'}`} onClose=${onClose}>
    <label class="field">
      <span>Reason <span class="muted">(optional, kept in the history)</span></span>
      <textarea rows="3" value=${reason} onInput=${(e) => setReason(e.target.value)}></textarea>
    </label>
    <${FieldError} error=${error} field="reason" />
    ${error && error.field !== 'reason' ? html`<${ErrorNote} error=${error} />` : null}
    <div class="modal-actions">
      <button type="button" class="button ghost" onClick=${onClose}>Cancel</button>
      <${ActionButton} class="button bad" data-mutates onClick=${submit}>Reject</${ActionButton}>
    </div>
  </${Modal}>`;
}

function EditDetails({ candidate, onClose, onDone }) {
  const [form, setForm] = useState({
    name: candidate.name || '',
    location: candidate.location || '',
    email: candidate.email || '',
  });
  const [error, setError] = useState(null);
  const set = (k) => (e) => setForm({ ...form, [k]: e.target.value });
  const submit = async () => {
    setError(null);
    // only what changed ('' clears a value)
    const changed = {};
    for (const k of Object.keys(form)) if (form[k] !== (candidate[k] || '')) changed[k] = form[k];
    if (!Object.keys(changed).length) {
      onClose();
      return;
    }
    try {
      await patch(`/api/v1/candidates/${seg(candidate.id)}`, changed);
      toast('Details saved');
      onDone();
    } catch (e) {
      setError(e);
    }
  };
  return html`<${Modal} title="Edit details" onClose=${onClose}>
    ${['name', 'location', 'email'].map(
      (k) => html`<label class="field" key=${k}>
        <span>${k.charAt(0).toUpperCase() + k.slice(1)}</span>
        <input type=${k === 'email' ? 'email' : 'text'} name=${k} value=${form[k]} onInput=${set(k)} aria-invalid=${error && error.field === k ? 'true' : undefined} />
        <${FieldError} error=${error} field=${k} />
      </label>`,
    )}
    ${error && !['name', 'location', 'email'].includes(error.field) ? html`<${ErrorNote} error=${error} />` : null}
    <div class="modal-actions">
      <button type="button" class="button ghost" onClick=${onClose}>Cancel</button>
      <${ActionButton} class="button primary" data-mutates onClick=${submit}>Save</${ActionButton}>
    </div>
  </${Modal}>`;
}
