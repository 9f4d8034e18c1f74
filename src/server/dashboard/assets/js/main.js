// The dashboard: sign-in, the layout and a hash router (#/candidates, #/receptionists/ID, ...).
// The API key lives in sessionStorage only; routes never carry it.

import { html, render, useState, useEffect, useMemo } from './lib.js';
import { get, getKey, clearKey, onUnauthorized } from './api.js';
import { Session, Icon, Spinner, Toasts, ErrorNote, Badge } from './ui.js';
import { roleLabel } from './format.js';
import { SignIn } from './pages/signin.js';
import { Pipeline } from './pages/pipeline.js';
import { CandidatePage } from './pages/candidate.js';
import { Receptionists } from './pages/receptionists.js';
import { Editor } from './pages/editor.js';
import { Analytics } from './pages/analytics.js';
import { Settings } from './pages/settings.js';
import { TryIt } from './pages/tryit.js';

/** The route from `location.hash`: ['candidates', 'ID'] etc. */
function parseHash() {
  const path = location.hash.replace(/^#\/?/, '').split('?')[0];
  return path.split('/').filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
}

function useRoute() {
  const [route, setRoute] = useState(parseHash);
  useEffect(() => {
    const on = () => {
      setRoute(parseHash());
      window.scrollTo(0, 0);
    };
    window.addEventListener('hashchange', on);
    // effects run after the first paint: a hash changed between that render and this
    // subscription (a link followed, or a script's navigation, as soon as the page showed) fired
    // its event with no one listening, and the page would stay where it was
    const now = parseHash();
    setRoute((shown) => (shown.join('/') === now.join('/') ? shown : now));
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return route;
}

const NAV = [
  { id: 'candidates', label: 'Candidates', icon: 'users' },
  { id: 'receptionists', label: 'Receptionists', icon: 'bot' },
  { id: 'analytics', label: 'Analytics', icon: 'chart' },
  { id: 'try', label: 'Try it', icon: 'mic' },
  { id: 'settings', label: 'Settings', icon: 'gear' },
];

function Page({ route }) {
  const [section, id] = route;
  switch (section || 'candidates') {
    case 'candidates':
      return id ? html`<${CandidatePage} id=${id} />` : html`<${Pipeline} />`;
    case 'receptionists':
      return id ? html`<${Editor} id=${id === 'new' ? null : id} key=${id} />` : html`<${Receptionists} />`;
    case 'analytics':
      return html`<${Analytics} />`;
    case 'try':
      return html`<${TryIt} receptionistId=${id || null} key=${id || ''} />`;
    case 'settings':
      return html`<${Settings} />`;
    default:
      return html`<div class="page"><h1>Not found</h1><p><a href="#/candidates">Go to candidates</a></p></div>`;
  }
}

function Shell({ me, onSignOut }) {
  const route = useRoute();
  const section = route[0] || 'candidates';
  const [menuOpen, setMenuOpen] = useState(false);
  useEffect(() => setMenuOpen(false), [route.join('/')]);
  const session = useMemo(() => ({ me, canWrite: me.role === 'admin' }), [me]);
  return html`<${Session.Provider} value=${session}>
    <div class="shell">
      <header class="topbar">
        <button
          type="button"
          class="icon-button menu-toggle"
          aria-label="Menu"
          aria-expanded=${menuOpen ? 'true' : 'false'}
          onClick=${() => setMenuOpen(!menuOpen)}
        >
          <span class="burger"></span>
        </button>
        <a class="brand" href="#/candidates"><span class="logo" aria-hidden="true"></span>Receptionist</a>
        <span class="workspace" title="Workspace">${me.workspace.name}</span>
        <${Badge} tone=${me.role === 'admin' ? 'info' : 'muted'}>
          ${roleLabel(me.role)}${me.role === 'admin' ? '' : ' · read only'}
        </${Badge}>
        <button type="button" class="button ghost small signout" onClick=${onSignOut}>
          <${Icon} name="out" size=${16} /> Sign out
        </button>
      </header>
      <nav class=${`sidebar${menuOpen ? ' open' : ''}`} aria-label="Main">
        ${NAV.map(
          (n) => html`<a
            href=${`#/${n.id}`}
            class=${`nav-item${section === n.id ? ' active' : ''}`}
            aria-current=${section === n.id ? 'page' : undefined}
          >
            <${Icon} name=${n.icon} /> <span>${n.label}</span>
          </a>`,
        )}
        <div class="sidebar-foot">Signed in with “${me.key.name || 'unnamed key'}”</div>
      </nav>
      <main class="content" id="main">
        <${Page} route=${route} />
      </main>
    </div>
    <${Toasts} />
  </${Session.Provider}>`;
}

function App() {
  const [me, setMe] = useState(null);
  const [checking, setChecking] = useState(() => Boolean(getKey()));
  const [error, setError] = useState(null);
  const [notice, setNotice] = useState(null);

  // a key kept from earlier in this tab: check it is still good
  useEffect(() => {
    if (!getKey()) return;
    get('/api/v1/me')
      .then(setMe)
      .catch((e) => {
        if (e.status === 401) clearKey();
        else setError(e);
      })
      .finally(() => setChecking(false));
  }, []);

  useEffect(
    () =>
      onUnauthorized(() => {
        clearKey();
        setMe(null);
        setNotice('The API key was refused (revoked?). Sign in again.');
      }),
    [],
  );

  const signOut = () => {
    clearKey();
    setMe(null);
    setNotice('Signed out.');
    location.hash = '#/candidates';
  };

  if (checking) return html`<div class="center"><${Spinner} /></div>`;
  if (error && !me)
    return html`<div class="center"><${ErrorNote} error=${error} onRetry=${() => location.reload()} /></div>`;
  if (!me)
    return html`<${SignIn}
      notice=${notice}
      onSignedIn=${(m) => {
        setNotice(null);
        setMe(m);
      }}
    />`;
  return html`<${Shell} me=${me} onSignOut=${signOut} />`;
}

render(html`<${App} />`, document.getElementById('app'));
