// Settings: API keys (create admin or viewer keys, revoke), interviewers (where candidates are
// ingested), and webhooks with their recent deliveries.

import { html, useState, useEffect } from '../lib.js';
import { get, post, put, del, seg, qs } from '../api.js';
import { Badge, CopyButton, Spinner, ErrorNote, FieldError, Modal, Empty, toast, useAsync, useSession, ActionButton } from '../ui.js';
import { fmtDateTime, fmtWhen, roleLabel } from '../format.js';

const EVENTS = [
  ['call.ended', 'A call ended'],
  ['candidate.evaluated', 'A candidate was evaluated'],
  ['candidate.approved', 'A candidate was approved'],
  ['candidate.rejected', 'A candidate was rejected'],
  ['candidate.ingested', 'A candidate was ingested'],
  ['sms.received', 'A text arrived'],
];

export function Settings() {
  return html`<div class="page settings">
    <div class="page-head">
      <div>
        <h1>Settings</h1>
        <p class="muted">Everything here goes through the public API; its reference is <a href="/api/v1/openapi.json" target="_blank" rel="noopener">/api/v1/openapi.json</a> (OpenAPI 3.1).</p>
      </div>
    </div>
    <${Keys} />
    <${Interviewers} />
    <${Webhooks} />
  </div>`;
}

/** A secret shown once, with a copy button. */
function ShownOnce({ title, value, onClose, children }) {
  return html`<${Modal} title=${title} onClose=${onClose}>
    <p>${children}</p>
    <div class="secret">
      <code class="mono" data-secret>${value}</code>
      <${CopyButton} text=${value} what="it" />
    </div>
    <p class="muted small">It is shown this once; only a hash is kept.</p>
    <div class="modal-actions"><button type="button" class="button primary" onClick=${onClose}>Done</button></div>
  </${Modal}>`;
}

function Confirm({ title, children, action, onClose, onConfirm }) {
  return html`<${Modal} title=${title} onClose=${onClose}>
    <p>${children}</p>
    <div class="modal-actions">
      <button type="button" class="button ghost" onClick=${onClose}>Cancel</button>
      <${ActionButton} class="button bad" data-mutates onClick=${onConfirm}>${action}</${ActionButton}>
    </div>
  </${Modal}>`;
}

// ---------------------------------------------------------------------------------------------

function Keys() {
  const { me, canWrite } = useSession();
  const { data, error, loading, reload } = useAsync((signal) => get('/api/v1/keys', { signal }), []);
  const [form, setForm] = useState({ name: '', role: 'viewer' });
  const [formError, setFormError] = useState(null);
  const [created, setCreated] = useState(null);
  const [revoking, setRevoking] = useState(null);

  const create = async () => {
    setFormError(null);
    try {
      const k = await post('/api/v1/keys', { name: form.name, role: form.role });
      setCreated(k);
      setForm({ name: '', role: 'viewer' });
      reload();
    } catch (e) {
      setFormError(e);
    }
  };

  const revoke = async () => {
    await del(`/api/v1/keys/${seg(revoking.id)}`);
    toast(`Revoked “${revoking.name || 'unnamed key'}”`);
    setRevoking(null);
    reload();
  };

  const keys = data ? data.data : [];
  return html`<section class="card" id="keys">
    <h2>API keys</h2>
    <p class="muted">Admin keys configure and decide; viewer keys read only. Sign in here with either.</p>
    <${ErrorNote} error=${error} onRetry=${reload} />
    ${loading && !data ? html`<${Spinner} />` : null}
    ${keys.length
      ? html`<table class="list keys">
          <thead><tr><th>Name</th><th>Role</th><th>Created</th><th>Status</th><th><span class="sr-only">Actions</span></th></tr></thead>
          <tbody>
            ${keys.map(
              (k) => html`<tr key=${k.id} data-key=${k.id}>
                <td data-label="Name">${k.name || html`<span class="muted">unnamed</span>`}${k.id === me.key.id ? html` <${Badge} tone="info">this session</${Badge}>` : null}</td>
                <td data-label="Role">${roleLabel(k.role)}</td>
                <td data-label="Created">${fmtWhen(k.created_at)}</td>
                <td data-label="Status">${k.revoked_at ? html`<${Badge} tone="bad">Revoked ${fmtWhen(k.revoked_at)}</${Badge}>` : html`<${Badge} tone="good">Active</${Badge}>`}</td>
                <td class="actions">
                  ${canWrite && !k.revoked_at
                    ? html`<button type="button" class="button small bad" data-mutates onClick=${() => setRevoking(k)}>Revoke</button>`
                    : null}
                </td>
              </tr>`,
            )}
          </tbody>
        </table>`
      : null}
    ${canWrite
      ? html`<form class="inline-form" onSubmit=${(e) => { e.preventDefault(); create(); }}>
          <label class="field">
            <span class="label">Name</span>
            <input name="key_name" value=${form.name} placeholder="e.g. Hiring team laptop" onInput=${(e) => setForm({ ...form, name: e.target.value })} />
            <${FieldError} error=${formError} field="name" />
          </label>
          <label class="field">
            <span class="label">Role</span>
            <select name="key_role" value=${form.role} onChange=${(e) => setForm({ ...form, role: e.target.value })}>
              <option value="viewer">Viewer (read only)</option>
              <option value="admin">Admin</option>
            </select>
          </label>
          <${ActionButton} class="button primary" data-mutates onClick=${create}>Create key</${ActionButton}>
        </form>
        ${formError && formError.field !== 'name' ? html`<${ErrorNote} error=${formError} />` : null}`
      : null}
    ${created
      ? html`<${ShownOnce} title="New API key" value=${created.key} onClose=${() => setCreated(null)}>
          ${roleLabel(created.role)} key “${created.name || 'unnamed'}”. Copy it now and keep it somewhere safe.
        </${ShownOnce}>`
      : null}
    ${revoking
      ? html`<${Confirm} title="Revoke key" action="Revoke" onClose=${() => setRevoking(null)} onConfirm=${revoke}>
          Anything using “${revoking.name || 'unnamed key'}” stops working at once.
          ${revoking.id === me.key.id ? ' This is the key this page is signed in with: you will be signed out.' : ''}
        </${Confirm}>`
      : null}
  </section>`;
}

// ---------------------------------------------------------------------------------------------

const NO_INTERVIEWER = { name: '', interview_link: '', invitation_message: '' };

function Interviewers() {
  const { canWrite } = useSession();
  const { data, error, loading, reload } = useAsync((signal) => get('/api/v1/interviewers', { signal }), []);
  const [editing, setEditing] = useState(null);
  const list = data ? data.data : [];
  return html`<section class="card" id="interviewers">
    <div class="section-head">
      <h2>Interviewers</h2>
      ${canWrite ? html`<button type="button" class="button small" data-mutates onClick=${() => setEditing({ ...NO_INTERVIEWER })}>New interviewer</button>` : null}
    </div>
    <p class="muted">The next, longer screening step. Ingesting a candidate sends them this invitation by text and email.</p>
    <${ErrorNote} error=${error} onRetry=${reload} />
    ${loading && !data ? html`<${Spinner} />` : null}
    ${data && !list.length ? html`<${Empty} title="No interviewers yet" />` : null}
    ${list.length
      ? html`<table class="list">
          <thead><tr><th>Name</th><th>Interview link</th><th>Updated</th><th><span class="sr-only">Actions</span></th></tr></thead>
          <tbody>
            ${list.map(
              (i) => html`<tr key=${i.id}>
                <td data-label="Name">${i.name}</td>
                <td data-label="Interview link" class="mono small break">${i.interview_link}</td>
                <td data-label="Updated">${fmtWhen(i.updated_at)}</td>
                <td class="actions">${canWrite ? html`<button type="button" class="button small" data-mutates onClick=${() => setEditing(i)}>Edit</button>` : null}</td>
              </tr>`,
            )}
          </tbody>
        </table>`
      : null}
    ${editing ? html`<${InterviewerDialog} interviewer=${editing} onClose=${() => setEditing(null)} onDone=${() => { setEditing(null); reload(); }} />` : null}
  </section>`;
}

function InterviewerDialog({ interviewer, onClose, onDone }) {
  const [form, setForm] = useState({
    name: interviewer.name,
    interview_link: interviewer.interview_link,
    invitation_message: interviewer.invitation_message,
  });
  const [error, setError] = useState(null);
  const set = (k) => (e) => setForm({ ...form, [k]: e.target.value });
  const save = async () => {
    setError(null);
    try {
      if (interviewer.id) await put(`/api/v1/interviewers/${seg(interviewer.id)}`, form);
      else await post('/api/v1/interviewers', form);
      toast('Interviewer saved');
      onDone();
    } catch (e) {
      setError(e);
    }
  };
  return html`<${Modal} title=${interviewer.id ? 'Edit interviewer' : 'New interviewer'} onClose=${onClose}>
    <label class="field"><span class="label">Name</span><input name="name" value=${form.name} onInput=${set('name')} /><${FieldError} error=${error} field="name" /></label>
    <label class="field"><span class="label">Interview link</span><input name="interview_link" type="url" placeholder="https://…" value=${form.interview_link} onInput=${set('interview_link')} /><${FieldError} error=${error} field="interview_link" /></label>
    <label class="field"><span class="label">Invitation message</span>
      <textarea name="invitation_message" rows="4" value=${form.invitation_message} onInput=${set('invitation_message')}
        placeholder="Hi {candidate_name}, {interviewer_name} would like to interview you: {interview_link}"></textarea>
      <span class="hint">{candidate_name}, {interviewer_name} and {interview_link} are filled in.</span>
      <${FieldError} error=${error} field="invitation_message" />
    </label>
    ${error && !['name', 'interview_link', 'invitation_message'].includes(error.field) ? html`<${ErrorNote} error=${error} />` : null}
    <div class="modal-actions">
      <button type="button" class="button ghost" onClick=${onClose}>Cancel</button>
      <${ActionButton} class="button primary" data-mutates onClick=${save}>Save</${ActionButton}>
    </div>
  </${Modal}>`;
}

// ---------------------------------------------------------------------------------------------

function Webhooks() {
  const { canWrite } = useSession();
  const { data, error, loading, reload } = useAsync((signal) => get('/api/v1/webhooks', { signal }), []);
  const [form, setForm] = useState({ url: '', events: EVENTS.map(([e]) => e) });
  const [formError, setFormError] = useState(null);
  const [created, setCreated] = useState(null);
  const [deleting, setDeleting] = useState(null);
  const [open, setOpen] = useState(null);
  const list = data ? data.data : [];

  const create = async () => {
    setFormError(null);
    try {
      const w = await post('/api/v1/webhooks', form);
      setCreated(w);
      setForm({ url: '', events: EVENTS.map(([e]) => e) });
      reload();
    } catch (e) {
      setFormError(e);
    }
  };
  const remove = async () => {
    await del(`/api/v1/webhooks/${seg(deleting.id)}`);
    toast('Webhook deleted');
    setDeleting(null);
    reload();
  };
  const toggleEvent = (ev, on) => setForm({ ...form, events: on ? [...form.events, ev] : form.events.filter((x) => x !== ev) });
  const eventsError = formError && formError.field && formError.field.startsWith('events') ? formError : null;

  return html`<section class="card" id="webhooks">
    <h2>Webhooks</h2>
    <p class="muted">Signed POSTs to your endpoint when things happen (header <code>X-Receptionist-Signature</code>); retried for a day.</p>
    <${ErrorNote} error=${error} onRetry=${reload} />
    ${loading && !data ? html`<${Spinner} />` : null}
    ${list.length
      ? html`<ul class="webhooks">
          ${list.map(
            (w) => html`<li key=${w.id} class="webhook">
              <div class="webhook-head">
                <div>
                  <div class="mono break">${w.url}</div>
                  <div class="muted small">${w.events.join(', ')} · added ${fmtWhen(w.created_at)}</div>
                </div>
                <div class="actions">
                  <button type="button" class="button small ghost" aria-expanded=${open === w.id ? 'true' : 'false'} onClick=${() => setOpen(open === w.id ? null : w.id)}>
                    ${open === w.id ? 'Hide deliveries' : 'Deliveries'}
                  </button>
                  ${canWrite ? html`<button type="button" class="button small bad" data-mutates onClick=${() => setDeleting(w)}>Delete</button>` : null}
                </div>
              </div>
              ${open === w.id ? html`<${Deliveries} endpoint=${w} />` : null}
            </li>`,
          )}
        </ul>`
      : data
        ? html`<p class="muted">No webhooks.</p>`
        : null}
    ${canWrite
      ? html`<form class="webhook-form" onSubmit=${(e) => { e.preventDefault(); create(); }}>
          <h3>Add an endpoint</h3>
          <label class="field">
            <span class="label">URL</span>
            <input name="webhook_url" type="url" placeholder="https://example.com/hooks/receptionist" value=${form.url} onInput=${(e) => setForm({ ...form, url: e.target.value })} />
            <${FieldError} error=${formError} field="url" />
          </label>
          <fieldset class="checks">
            <legend class="label">Events</legend>
            ${EVENTS.map(
              ([ev, label]) => html`<label class="choice" key=${ev}>
                <input type="checkbox" checked=${form.events.includes(ev)} onChange=${(e) => toggleEvent(ev, e.target.checked)} />
                <span class="mono small">${ev}</span> <span class="muted small">${label}</span>
              </label>`,
            )}
          </fieldset>
          ${eventsError ? html`<div class="field-error" role="alert" data-field-error=${eventsError.field}>${eventsError.message}</div>` : null}
          ${formError && formError.field !== 'url' && !eventsError ? html`<${ErrorNote} error=${formError} />` : null}
          <${ActionButton} class="button primary" data-mutates onClick=${create}>Add webhook</${ActionButton}>
        </form>`
      : null}
    ${created
      ? html`<${ShownOnce} title="Webhook signing secret" value=${created.secret} onClose=${() => setCreated(null)}>
          Check each delivery's signature with this secret.
        </${ShownOnce}>`
      : null}
    ${deleting
      ? html`<${Confirm} title="Delete webhook" action="Delete" onClose=${() => setDeleting(null)} onConfirm=${remove}>
          ${deleting.url} will get no more events; pending deliveries are cancelled.
        </${Confirm}>`
      : null}
  </section>`;
}

const DELIVERY_TONES = { sent: 'good', failed: 'bad', pending: 'warn' };

function Deliveries({ endpoint }) {
  const [rows, setRows] = useState([]);
  const [state, setState] = useState({ loading: true, error: null, more: false });
  const load = async (before) => {
    setState((s) => ({ ...s, loading: true, error: null }));
    try {
      const page = await get(`/api/v1/webhooks/${seg(endpoint.id)}/deliveries${qs({ limit: 20, before })}`);
      setRows((old) => (before ? [...old, ...page.data] : page.data));
      setState({ loading: false, error: null, more: page.data.length === 20 });
    } catch (e) {
      setState({ loading: false, error: e, more: false });
    }
  };
  useEffect(() => {
    load(null);
  }, [endpoint.id]);
  const { loading, error, more } = state;
  return html`<div class="deliveries">
    <${ErrorNote} error=${error} />
    ${loading && !rows.length ? html`<${Spinner} />` : null}
    ${!loading && !error && !rows.length ? html`<p class="muted small">No deliveries yet.</p>` : null}
    ${rows.length
      ? html`<table class="list compact">
          <thead><tr><th>Event</th><th>Status</th><th>Attempts</th><th>Created</th><th>Last answer</th></tr></thead>
          <tbody>
            ${rows.map((d) => {
              const last = d.attempts[d.attempts.length - 1];
              return html`<tr key=${d.id}>
                <td data-label="Event" class="mono small">${d.event_type || '—'}</td>
                <td data-label="Status"><${Badge} tone=${DELIVERY_TONES[d.status] || 'muted'}>${d.status}</${Badge}></td>
                <td data-label="Attempts" class="num">${d.attempts.length}</td>
                <td data-label="Created">${fmtDateTime(d.created_at)}</td>
                <td data-label="Last answer" class="small">
                  ${last ? (last.status_code ? `HTTP ${last.status_code}` : last.error || '—') : '—'}
                  ${last ? html` <span class="muted">(${last.duration_ms} ms)</span>` : null}
                  ${d.next_attempt_at && d.status === 'pending' ? html`<div class="muted">next try ${fmtWhen(d.next_attempt_at)}</div>` : null}
                </td>
              </tr>`;
            })}
          </tbody>
        </table>`
      : null}
    ${more && !loading
      ? html`<button type="button" class="button small ghost" onClick=${() => load(rows[rows.length - 1].id)}>Older deliveries</button>`
      : null}
  </div>`;
}
