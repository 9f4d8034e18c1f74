// The candidate pipeline: tabs with counts, search as you type, a receptionist filter, newest
// first, more rows as the list scrolls (the API's cursor); View and Ingest on each row.

import { html, useState, useEffect, useRef, useCallback } from '../lib.js';
import { get, post, qs, seg } from '../api.js';
import { Tabs, Badge, CopyButton, Icon, Spinner, Empty, ErrorNote, Modal, toast, useSession, ActionButton } from '../ui.js';
import { fmtWhen, fmtDuration, fmtScore, candidateState } from '../format.js';

const TABS = [
  { id: 'all', label: 'All' },
  { id: 'evaluated', label: 'Evaluated' },
  { id: 'needs_review', label: 'Needs Review' },
  { id: 'approved', label: 'Approved' },
  { id: 'rejected', label: 'Rejected' },
];
const PAGE = 50;

// the filters survive a visit to a candidate and back
const saved = { tab: 'all', q: '', receptionist: '' };

export function Pipeline() {
  const { canWrite } = useSession();
  const [tab, setTab] = useState(saved.tab);
  const [q, setQ] = useState(saved.q);
  const [query, setQuery] = useState(saved.q.trim());
  const [receptionist, setReceptionist] = useState(saved.receptionist);
  const [rows, setRows] = useState([]);
  const [counts, setCounts] = useState(null);
  const [cursor, setCursor] = useState(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState(null);
  const [receptionists, setReceptionists] = useState([]);
  const [interviewers, setInterviewers] = useState([]);
  const [ingesting, setIngesting] = useState(null);
  const request = useRef(0);
  const sentinel = useRef(null);

  Object.assign(saved, { tab, q, receptionist });

  useEffect(() => {
    get('/api/v1/receptionists').then((r) => setReceptionists(r.data), () => {});
    get('/api/v1/interviewers').then((r) => setInterviewers(r.data), () => {});
  }, []);

  // search as you type, a quarter second after the last key
  useEffect(() => {
    const t = setTimeout(() => setQuery(q.trim()), 250);
    return () => clearTimeout(t);
  }, [q]);

  const load = useCallback(
    async (after) => {
      const n = ++request.current;
      setLoading(true);
      setError(null);
      try {
        const page = await get(
          `/api/v1/candidates${qs({ tab, q: query, receptionist_id: receptionist, cursor: after, limit: PAGE })}`,
        );
        if (n !== request.current) return;
        setRows((old) => (after ? [...old, ...page.data] : page.data));
        setCounts(page.counts);
        setCursor(page.next_cursor);
      } catch (e) {
        if (n === request.current) setError(e);
      } finally {
        if (n === request.current) setLoading(false);
      }
    },
    [tab, query, receptionist],
  );

  useEffect(() => {
    setRows([]);
    setCursor(null);
    load(null);
  }, [load]);

  // infinite scroll: the next page when the end of the list comes into view
  useEffect(() => {
    const el = sentinel.current;
    if (!el || !cursor || loading) return undefined;
    const obs = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) load(cursor);
    });
    obs.observe(el);
    return () => obs.disconnect();
  }, [cursor, loading, load]);

  const receptionistById = Object.fromEntries(receptionists.map((r) => [r.id, r]));
  const tabs = TABS.map((t) => ({ ...t, count: counts ? counts[t.id] : undefined }));

  return html`<div class="page">
    <div class="page-head">
      <div>
        <h1>Candidates</h1>
        <p class="muted">Everyone who called your receptionists, latest call first.</p>
      </div>
    </div>
    <${Tabs} label="Pipeline" tabs=${tabs} value=${tab} onChange=${setTab} />
    <div class="toolbar">
      <label class="search">
        <${Icon} name="search" size=${16} />
        <input
          type="search"
          placeholder="Search name, email or phone"
          aria-label="Search candidates"
          value=${q}
          onInput=${(e) => setQ(e.target.value)}
        />
      </label>
      <select aria-label="Receptionist" value=${receptionist} onChange=${(e) => setReceptionist(e.target.value)}>
        <option value="">All receptionists</option>
        ${receptionists.map((r) => html`<option value=${r.id}>${r.agent_name} · ${r.phone_number}</option>`)}
      </select>
    </div>
    <${ErrorNote} error=${error} onRetry=${() => load(null)} />
    ${rows.length
      ? html`<table class="list candidates">
          <thead>
            <tr>
              <th>Candidate</th>
              <th>Contact</th>
              <th>Status</th>
              <th>Called</th>
              <th>Duration</th>
              <th>Evaluations</th>
              <th><span class="sr-only">Recording</span></th>
              <th><span class="sr-only">Actions</span></th>
            </tr>
          </thead>
          <tbody>
            ${rows.map(
              (c) => html`<${Row}
                key=${c.id}
                c=${c}
                canWrite=${canWrite}
                onIngest=${() => setIngesting(c)}
              />`,
            )}
          </tbody>
        </table>`
      : !loading && !error
        ? html`<${Empty} title=${query ? 'No candidate matches' : 'No candidates yet'}>
            ${query
              ? 'Try part of a name, an email or the last digits of a phone number.'
              : 'Callers appear here after their first call.'}
          </${Empty}>`
        : null}
    ${loading ? html`<${Spinner} />` : null}
    <div ref=${sentinel} class="sentinel"></div>
    ${cursor && !loading
      ? html`<button type="button" class="button ghost wide" onClick=${() => load(cursor)}>Load more</button>`
      : null}
    ${ingesting
      ? html`<${IngestDialog}
          candidate=${ingesting}
          receptionist=${receptionistById[ingesting.receptionist_id]}
          interviewers=${interviewers}
          onClose=${() => setIngesting(null)}
          onDone=${(updated) => {
            setRows((list) => list.map((r) => (r.id === updated.id ? { ...r, ...updated } : r)));
            setIngesting(null);
          }}
        />`
      : null}
  </div>`;
}

function Row({ c, canWrite, onIngest }) {
  const state = candidateState(c);
  const href = `#/candidates/${seg(c.id)}`;
  return html`<tr data-candidate=${c.id}>
    <td data-label="Candidate">
      <a class="strong" href=${href}>${c.name || 'Unknown caller'}</a>
      <div class="muted small">${c.receptionist_name}</div>
    </td>
    <td data-label="Contact">
      <div class="contact">
        <span class="mono">${c.phone_number || '—'}</span>
        <${CopyButton} text=${c.phone_number} what="phone number" />
      </div>
      <div class="contact">
        ${c.email ? html`<span>${c.email}</span>` : html`<span class="muted">no email</span>`}
        <${CopyButton} text=${c.email} what="email" />
      </div>
    </td>
    <td data-label="Status"><${Badge} tone=${state.tone}>${state.label}</${Badge}></td>
    <td data-label="Called">${fmtWhen(c.last_call_at)}</td>
    <td data-label="Duration" class="num">${fmtDuration(c.last_call_duration_ms)}</td>
    <td data-label="Evaluations" class="num">
      <span>
        ${c.evaluation_count}${c.latest_score !== null && c.latest_score !== undefined
          ? html` <span class="muted">· score ${fmtScore(c.latest_score)}</span>`
          : null}
      </span>
    </td>
    <td data-label="Recording">
      ${c.has_recording
        ? html`<span class="rec" title="Recording"><${Icon} name="wave" label="Has a recording" /></span>`
        : html`<span class="muted" title="No recording">—</span>`}
    </td>
    <td class="actions">
      <a class="button small" href=${href}>View</a>
      ${canWrite
        ? html`<button type="button" class="button small" data-mutates onClick=${onIngest}>Ingest</button>`
        : null}
    </td>
  </tr>`;
}

/** Ingest into one of the interviewers configured for the candidate's receptionist. */
export function IngestDialog({ candidate, receptionist, interviewers, onClose, onDone }) {
  const allowed = receptionist ? receptionist.interviewer_ids : [];
  const names = Object.fromEntries(interviewers.map((i) => [i.id, i.name]));
  const [choice, setChoice] = useState(
    (receptionist && receptionist.default_interviewer_id) || allowed[0] || '',
  );
  const [error, setError] = useState(null);
  const submit = async () => {
    setError(null);
    try {
      const updated = await post(`/api/v1/candidates/${seg(candidate.id)}/ingest`, { interviewer_id: choice });
      toast(`${candidate.name || 'Candidate'} ingested into ${names[choice] || 'the interviewer'}`);
      onDone(updated);
    } catch (e) {
      setError(e);
    }
  };
  return html`<${Modal} title=${`Ingest ${candidate.name || 'candidate'}`} onClose=${onClose}>
    ${candidate.ingested
      ? html`<p class="notice">Already ingested into ${candidate.ingested.interviewer_name || 'an interviewer'}.</p>`
      : null}
    ${allowed.length
      ? html`<fieldset class="choices">
            <legend>Interviewer</legend>
            ${allowed.map(
              (id) => html`<label class="choice">
                <input type="radio" name="interviewer" value=${id} checked=${choice === id} onChange=${() => setChoice(id)} />
                <span>${names[id] || id}</span>
                ${receptionist.default_interviewer_id === id ? html`<span class="muted small"> (default)</span>` : null}
              </label>`,
            )}
          </fieldset>
          <p class="muted small">Ingesting approves the candidate and sends the interview invitation by text and email.</p>
          <${ErrorNote} error=${error} />
          <div class="modal-actions">
            <button type="button" class="button ghost" onClick=${onClose}>Cancel</button>
            <${ActionButton} class="button primary" data-mutates onClick=${submit} disabled=${!choice}>Ingest</${ActionButton}>
          </div>`
      : html`<p>No interviewers are configured for ${receptionist ? receptionist.agent_name : 'this receptionist'}.</p>
          <p class="muted">Add them in the receptionist's “Call handling” step.</p>
          <div class="modal-actions"><button type="button" class="button" onClick=${onClose}>Close</button></div>`}
  </${Modal}>`;
}
