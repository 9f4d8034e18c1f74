// Receptionists: All / Live / Inactive, with activate / deactivate, edit and try-it actions.

import { html, useState } from '../lib.js';
import { get, put, seg } from '../api.js';
import { Tabs, Badge, CopyButton, Spinner, Empty, ErrorNote, toast, useAsync, useSession, ActionButton, Icon } from '../ui.js';
import { fmtWhen } from '../format.js';

export function Receptionists() {
  const { canWrite } = useSession();
  const [tab, setTab] = useState('all');
  const { data, error, loading, reload, setData } = useAsync((signal) => get('/api/v1/receptionists', { signal }), []);
  const list = data ? data.data : [];
  const shown = tab === 'all' ? list : list.filter((r) => r.status === tab);
  const tabs = [
    { id: 'all', label: 'All', count: data ? list.length : undefined },
    { id: 'live', label: 'Live', count: data ? list.filter((r) => r.status === 'live').length : undefined },
    { id: 'inactive', label: 'Inactive', count: data ? list.filter((r) => r.status === 'inactive').length : undefined },
  ];

  const setStatus = async (r, status) => {
    const updated = await put(`/api/v1/receptionists/${seg(r.id)}`, { status });
    setData((d) => ({ ...d, data: d.data.map((x) => (x.id === r.id ? updated : x)) }));
    toast(`${r.agent_name} is ${status === 'live' ? 'live: it answers calls' : 'inactive: callers hear a closed message'}`);
  };

  return html`<div class="page">
    <div class="page-head">
      <div>
        <h1>Receptionists</h1>
        <p class="muted">Each answers one phone number: what it says, what it asks, how callers are routed.</p>
      </div>
      ${canWrite
        ? html`<a class="button primary" href="#/receptionists/new" data-mutates><${Icon} name="plus" size=${16} /> New receptionist</a>`
        : null}
    </div>
    <${Tabs} label="Receptionists" tabs=${tabs} value=${tab} onChange=${setTab} />
    <${ErrorNote} error=${error} onRetry=${reload} />
    ${loading && !data ? html`<${Spinner} />` : null}
    ${data && !shown.length
      ? html`<${Empty} title=${tab === 'all' ? 'No receptionists yet' : `No ${tab} receptionists`}>
          ${canWrite && tab === 'all' ? 'Create one to get a phone agent answering your job line.' : null}
        </${Empty}>`
      : null}
    ${shown.length
      ? html`<table class="list receptionists">
          <thead>
            <tr><th>Agent</th><th>Phone number</th><th>Status</th><th class="num">Questions</th><th>Routing</th><th>Updated</th><th><span class="sr-only">Actions</span></th></tr>
          </thead>
          <tbody>
            ${shown.map(
              (r) => html`<tr key=${r.id} data-receptionist=${r.id}>
                <td data-label="Agent">
                  <a class="strong" href=${`#/receptionists/${seg(r.id)}`}>${r.agent_name}</a>
                  <div class="muted small">${r.language_mode === 'multilingual' ? 'Multilingual' : 'English'} · voice ${r.voice}</div>
                </td>
                <td data-label="Phone number"><span class="contact"><span class="mono">${r.phone_number}</span><${CopyButton} text=${r.phone_number} what="phone number" /></span></td>
                <td data-label="Status"><${Badge} tone=${r.status === 'live' ? 'good' : 'muted'}>${r.status === 'live' ? 'Live' : 'Inactive'}</${Badge}></td>
                <td data-label="Questions" class="num">${r.questions.length}</td>
                <td data-label="Routing">${r.manual_approval ? 'Manual review' : `Auto at ${r.score_threshold}+`}</td>
                <td data-label="Updated">${fmtWhen(r.updated_at)}</td>
                <td class="actions">
                  <a class="button small" href=${`#/receptionists/${seg(r.id)}`}>${canWrite ? 'Edit' : 'View'}</a>
                  ${canWrite
                    ? html`${r.status === 'live'
                          ? html`<${ActionButton} class="button small" data-mutates onClick=${() => setStatus(r, 'inactive')}>Deactivate</${ActionButton}>`
                          : html`<${ActionButton} class="button small good" data-mutates onClick=${() => setStatus(r, 'live')}>Activate</${ActionButton}>`}
                        <a class="button small ghost" href=${`#/try/${seg(r.id)}`} data-mutates>Try it</a>`
                    : null}
                </td>
              </tr>`,
            )}
          </tbody>
        </table>`
      : null}
  </div>`;
}
