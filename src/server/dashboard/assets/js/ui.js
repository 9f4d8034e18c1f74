// Shared pieces: the session context, icons, tabs, badges, copy buttons, dialogs, toasts, errors
// and a data-loading hook.
//
// Every control that changes something carries `data-mutates`; such controls are only rendered
// for admin keys (`useSession().canWrite`), so a viewer's page has none (the browser tests check).

import { html, createContext, useContext, useState, useEffect, useRef, useCallback } from './lib.js';

export const Session = createContext({ me: null, canWrite: false });
export const useSession = () => useContext(Session);

// ---------------------------------------------------------------------------------------------
// Icons (24×24 strokes)
// ---------------------------------------------------------------------------------------------

const PATHS = {
  play: 'M7 5v14l11-7z',
  pause: 'M7 5h3v14H7zM14 5h3v14h-3z',
  copy: 'M9 9h10v10H9zM5 15V5h10',
  check: 'M5 12l5 5 9-11',
  x: 'M6 6l12 12M18 6L6 18',
  search: 'M11 4a7 7 0 1 0 0 14a7 7 0 1 0 0-14zM16 16l5 5',
  wave: 'M3 12h2M7 8v8M11 5v14M15 8v8M19 10v4M21 12h0',
  phone:
    'M5 4h4l2 5-2.5 1.5a11 11 0 0 0 5 5L15 13l5 2v4a2 2 0 0 1-2 2A16 16 0 0 1 3 6a2 2 0 0 1 2-2z',
  mic: 'M12 3a3 3 0 0 1 3 3v6a3 3 0 0 1-6 0V6a3 3 0 0 1 3-3zM5 11a7 7 0 0 0 14 0M12 18v3',
  up: 'M12 19V5M5 12l7-7 7 7',
  down: 'M12 5v14M19 12l-7 7-7-7',
  trash: 'M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13',
  plus: 'M12 5v14M5 12h14',
  users: 'M9 11a4 4 0 1 0 0-8a4 4 0 1 0 0 8zM2 21a7 7 0 0 1 14 0M17 3a4 4 0 0 1 0 8M22 21a7 7 0 0 0-4-6.3',
  bot: 'M5 8h14v11H5zM12 4v4M9 13h0M15 13h0M9 16h6',
  chart: 'M4 20V10M10 20V4M16 20v-7M22 20H2',
  gear: 'M12 9a3 3 0 1 0 0 6a3 3 0 1 0 0-6zM12 2v3M12 19v3M2 12h3M19 12h3M4.9 4.9l2.1 2.1M17 17l2.1 2.1M4.9 19.1L7 17M17 7l2.1-2.1',
  back: 'M19 12H5M12 19l-7-7 7-7',
  download: 'M12 4v12M6 10l6 6 6-6M4 20h16',
  hangup: 'M3 15c5-5 13-5 18 0l-2 3-4-1v-3a12 12 0 0 0-6 0v3l-4 1z',
  out: 'M15 4h4v16h-4M10 8l-4 4 4 4M6 12h10',
};

export function Icon({ name, size = 18, label }) {
  return html`<svg
    class="icon"
    width=${size}
    height=${size}
    viewBox="0 0 24 24"
    fill="none"
    stroke="currentColor"
    stroke-width="2"
    stroke-linecap="round"
    stroke-linejoin="round"
    aria-hidden=${label ? undefined : 'true'}
    role=${label ? 'img' : undefined}
    aria-label=${label}
  >
    <path d=${PATHS[name] || ''} fill=${name === 'play' || name === 'pause' ? 'currentColor' : 'none'} />
  </svg>`;
}

// ---------------------------------------------------------------------------------------------
// Small components
// ---------------------------------------------------------------------------------------------

/** Tabs with counts: `tabs` = [{id, label, count}]. */
export function Tabs({ tabs, value, onChange, label }) {
  return html`<div class="tabs" role="tablist" aria-label=${label}>
    ${tabs.map(
      (t) => html`<button
        type="button"
        role="tab"
        class=${`tab${t.id === value ? ' active' : ''}`}
        aria-selected=${t.id === value ? 'true' : 'false'}
        data-tab=${t.id}
        onClick=${() => onChange(t.id)}
      >
        ${t.label}${t.count !== undefined && t.count !== null
          ? html` <span class="count">${t.count}</span>`
          : null}
      </button>`,
    )}
  </div>`;
}

export function Badge({ tone = 'muted', children }) {
  return html`<span class=${`badge ${tone}`}>${children}</span>`;
}

/** Copies `text`; falls back to a selection copy where the Clipboard API is not allowed. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = document.createElement('textarea');
    area.value = text;
    area.setAttribute('readonly', '');
    area.className = 'offscreen';
    document.body.appendChild(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand('copy');
    } catch {
      ok = false;
    }
    area.remove();
    return ok;
  }
}

export function CopyButton({ text, what }) {
  const [done, setDone] = useState(false);
  if (!text) return null;
  const onClick = async (e) => {
    e.stopPropagation();
    if (await copyText(text)) {
      setDone(true);
      setTimeout(() => setDone(false), 1200);
    }
  };
  return html`<button
    type="button"
    class="icon-button copy"
    title=${done ? 'Copied' : `Copy ${what}`}
    aria-label=${`Copy ${what}`}
    onClick=${onClick}
  >
    <${Icon} name=${done ? 'check' : 'copy'} size=${14} />
  </button>`;
}

export function Spinner({ label = 'Loading…' }) {
  return html`<div class="spinner" role="status"><span class="dot"></span>${label}</div>`;
}

export function Empty({ title, children }) {
  return html`<div class="empty"><strong>${title}</strong>${children ? html`<p>${children}</p>` : null}</div>`;
}

/** An error from the API (or anything thrown) as a banner. */
export function ErrorNote({ error, onRetry }) {
  if (!error) return null;
  const message = error.message || String(error);
  return html`<div class="error-note" role="alert">
    <span>${message}</span>
    ${onRetry ? html`<button type="button" class="link" onClick=${onRetry}>Try again</button>` : null}
  </div>`;
}

/** The API's message for `field`, beside the input it belongs to. */
export function FieldError({ error, field }) {
  if (!error || error.field !== field) return null;
  return html`<div class="field-error" role="alert" data-field-error=${field}>${error.message}</div>`;
}

/** A modal dialog on the native <dialog> element (focus trap, Escape closes). */
export function Modal({ title, onClose, children, wide }) {
  const ref = useRef(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    const cancel = (e) => {
      e.preventDefault();
      onClose();
    };
    d.addEventListener('cancel', cancel);
    return () => d.removeEventListener('cancel', cancel);
  }, [onClose]);
  return html`<dialog ref=${ref} class=${`modal${wide ? ' wide' : ''}`} aria-label=${title}>
    <header>
      <h2>${title}</h2>
      <button type="button" class="icon-button" aria-label="Close" onClick=${onClose}>
        <${Icon} name="x" />
      </button>
    </header>
    <div class="modal-body">${children}</div>
  </dialog>`;
}

// ---------------------------------------------------------------------------------------------
// Toasts
// ---------------------------------------------------------------------------------------------

let toastListener = null;
let toastId = 0;

/** A short message at the bottom of the screen. */
export function toast(message, tone = 'good') {
  if (toastListener) toastListener({ id: ++toastId, message, tone });
}

export function Toasts() {
  const [items, setItems] = useState([]);
  useEffect(() => {
    toastListener = (t) => {
      setItems((list) => [...list, t]);
      setTimeout(() => setItems((list) => list.filter((x) => x.id !== t.id)), 3500);
    };
    return () => {
      toastListener = null;
    };
  }, []);
  return html`<div class="toasts" role="status" aria-live="polite">
    ${items.map((t) => html`<div key=${t.id} class=${`toast ${t.tone}`}>${t.message}</div>`)}
  </div>`;
}

// ---------------------------------------------------------------------------------------------
// Data loading
// ---------------------------------------------------------------------------------------------

/**
 * Runs `load(signal)` when `deps` change; answers `{data, error, loading, reload, setData}`.
 * A newer load cancels an older one, so answers never arrive out of order.
 */
export function useAsync(load, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const ctl = new AbortController();
    setState((s) => ({ ...s, loading: true, error: null }));
    load(ctl.signal).then(
      (data) => !ctl.signal.aborted && setState({ data, error: null, loading: false }),
      (error) => !ctl.signal.aborted && setState((s) => ({ ...s, error, loading: false })),
    );
    return () => ctl.abort();
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  const setData = useCallback((f) => setState((s) => ({ ...s, data: typeof f === 'function' ? f(s.data) : f })), []);
  return { ...state, reload, setData };
}

/** A button that runs an async action once at a time, reporting failures as a toast. */
export function ActionButton({ onClick, children, class: cls = 'button', disabled, title, ...rest }) {
  const [busy, setBusy] = useState(false);
  const run = async (e) => {
    e.preventDefault();
    if (busy) return;
    setBusy(true);
    try {
      await onClick(e);
    } catch (err) {
      toast(err.message || String(err), 'bad');
    } finally {
      setBusy(false);
    }
  };
  return html`<button type="button" class=${cls} disabled=${disabled || busy} title=${title} aria-busy=${busy ? 'true' : undefined} onClick=${run} ...${rest}>
    ${children}
  </button>`;
}
