// Sign in with an API key: checked with GET /api/v1/me, then kept in this tab's sessionStorage.

import { html, useState } from '../lib.js';
import { get, setKey } from '../api.js';

export function SignIn({ onSignedIn, notice }) {
  const [key, setKeyValue] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e) => {
    e.preventDefault();
    const k = key.trim();
    if (!k) {
      setError('Paste an API key.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const me = await get('/api/v1/me', { key: k });
      setKey(k);
      onSignedIn(me);
    } catch (err) {
      setError(err.status === 401 ? 'That key is not valid (or was revoked).' : err.message);
    } finally {
      setBusy(false);
    }
  };

  return html`<div class="signin">
    <form class="card signin-card" onSubmit=${submit}>
      <div class="brand big"><span class="logo" aria-hidden="true"></span>Receptionist</div>
      <p class="muted">Sign in with an API key of your workspace. It stays in this browser tab only.</p>
      ${notice ? html`<p class="notice">${notice}</p>` : null}
      <label class="field">
        <span>API key</span>
        <input
          type="password"
          name="api_key"
          autocomplete="off"
          spellcheck="false"
          value=${key}
          onInput=${(e) => setKeyValue(e.target.value)}
          aria-invalid=${error ? 'true' : undefined}
          autofocus
        />
      </label>
      ${error ? html`<div class="field-error" role="alert">${error}</div>` : null}
      <button class="button primary wide" type="submit" disabled=${busy}>${busy ? 'Signing in…' : 'Sign in'}</button>
      <p class="hint">No key yet? On the server: <code>receptionist workspace create "Your company"</code></p>
    </form>
  </div>`;
}
