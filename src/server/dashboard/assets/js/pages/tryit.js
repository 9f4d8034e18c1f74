// Try it: call a receptionist from the browser (microphone in, agent audio out, the transcript as
// it happens). The call is stored like a phone call and shows up in the pipeline afterwards.

import { html, useState, useEffect, useRef } from '../lib.js';
import { get, seg } from '../api.js';
import { Badge, Spinner, ErrorNote, Icon, useAsync, useSession } from '../ui.js';
import { Transcript } from '../player.js';
import { WebCall } from '../webcall.js';
import { fmtClock, END_REASONS } from '../format.js';

const KEYS = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '0', '#'];

export function TryIt({ receptionistId }) {
  const { canWrite } = useSession();
  const { data, error, loading } = useAsync((signal) => get('/api/v1/receptionists', { signal }), []);
  const [chosen, setChosen] = useState(receptionistId || '');
  const [state, setState] = useState('idle');
  const [lines, setLines] = useState([]);
  const [level, setLevel] = useState(0);
  const [callError, setCallError] = useState(null);
  const [ended, setEnded] = useState(null);
  const [callId, setCallId] = useState(null);
  const [candidateId, setCandidateId] = useState(null);
  const [startedAt, setStartedAt] = useState(null);
  const [now, setNow] = useState(Date.now());
  const call = useRef(null);

  const list = data ? data.data : [];
  useEffect(() => {
    if (!chosen && list.length) setChosen((list.find((r) => r.status === 'live') || list[0]).id);
  }, [list.length]);

  // hang up when leaving the page
  useEffect(() => () => call.current && call.current.hangup(), []);

  useEffect(() => {
    if (state !== 'live') return undefined;
    const t = setInterval(() => setNow(Date.now()), 500);
    return () => clearInterval(t);
  }, [state]);

  // once the call is stored, find its candidate for the link to the pipeline
  useEffect(() => {
    if (!ended || !callId) return undefined;
    let tries = 0;
    let timer = 0;
    const look = () =>
      get(`/api/v1/calls/${seg(callId)}`).then(
        (c) => (c.candidate_id ? setCandidateId(c.candidate_id) : ++tries < 10 && (timer = setTimeout(look, 1000))),
        () => ++tries < 10 && (timer = setTimeout(look, 1000)),
      );
    look();
    return () => clearTimeout(timer);
  }, [ended, callId]);

  const receptionist = list.find((r) => r.id === chosen);

  const start = async () => {
    setCallError(null);
    setLines([]);
    setEnded(null);
    setCallId(null);
    setCandidateId(null);
    const c = new WebCall(chosen, {
      state: (s) => {
        setState(s);
        if (s === 'live') setStartedAt(Date.now());
      },
      transcript: setLines,
      level: setLevel,
      started: setCallId,
      ended: (reason) => setEnded(reason),
    });
    call.current = c;
    try {
      await c.start();
      if (c.callId) setCallId(c.callId);
    } catch (e) {
      setCallError(e);
      setState('idle');
    }
  };

  const hangup = () => call.current && call.current.hangup();
  const inCall = state === 'connecting' || state === 'live' || state === 'ending';

  return html`<div class="page tryit">
    <div class="page-head">
      <div>
        <h1>Try it</h1>
        <p class="muted">Call a receptionist from this browser, as a candidate would from a phone. The call is recorded and lands in the pipeline.</p>
      </div>
    </div>
    <${ErrorNote} error=${error} />
    ${loading && !data ? html`<${Spinner} />` : null}
    ${data && !list.length ? html`<p>No receptionists yet. <a href="#/receptionists">Create one first.</a></p>` : null}
    ${list.length
      ? html`<div class="card call-box">
          <div class="toolbar">
            <select aria-label="Receptionist" value=${chosen} disabled=${inCall} onChange=${(e) => setChosen(e.target.value)}>
              ${list.map((r) => html`<option value=${r.id}>${r.agent_name} · ${r.phone_number}${r.status === 'live' ? '' : ' (inactive)'}</option>`)}
            </select>
            ${receptionist && receptionist.status !== 'live'
              ? html`<${Badge} tone="warn">Inactive: it will only say that it is closed</${Badge}>`
              : null}
          </div>
          ${!canWrite
            ? html`<p class="notice">A test call creates a call and a candidate, so it needs an admin key.</p>`
            : !window.isSecureContext
              ? html`<p class="notice">Browsers only give the microphone to pages on https:// or localhost.</p>`
              : null}
          <div class="call-controls">
            ${canWrite && !inCall
              ? html`<button type="button" class="button primary big" data-mutates disabled=${!chosen} onClick=${start}>
                  <${Icon} name="phone" /> Call this receptionist
                </button>`
              : null}
            ${inCall
              ? html`<button type="button" class="button bad big" onClick=${hangup} disabled=${state === 'ending'}>
                  <${Icon} name="hangup" /> ${state === 'ending' ? 'Ending…' : 'Hang up'}
                </button>`
              : null}
            <div class="call-status" role="status" data-call-state=${state}>
              ${state === 'connecting' ? 'Connecting…' : null}
              ${state === 'live' ? html`<span class="live-dot"></span> Live ${fmtClock((now - (startedAt || now)) / 1000)}` : null}
              ${state === 'ending' ? 'Ending…' : null}
              ${state === 'ended' || (state === 'idle' && ended) ? `Call ended${ended ? `: ${END_REASONS[ended] || ended}` : ''}` : null}
            </div>
            ${state === 'live'
              ? html`<div class="meter" title="Microphone level" aria-label="Microphone level"><span class="meter-fill" style=${{ width: `${Math.min(100, Math.round(level * 400))}%` }}></span></div>`
              : null}
          </div>
          <${ErrorNote} error=${callError} />
          <div class=${`call-layout${state === 'live' ? ' with-keypad' : ''}`}>
            ${state === 'live'
              ? html`<div class="keypad" role="group" aria-label="Keypad">
                  ${KEYS.map((k) => html`<button type="button" class="key" onClick=${() => call.current.dtmf(k)}>${k}</button>`)}
                </div>`
              : null}
            <div class="live-transcript">
              <h2>Transcript</h2>
              ${lines.length ? html`<${Transcript} lines=${lines} live=${true} />` : html`<p class="muted">${inCall ? 'Listening…' : 'The conversation appears here as it happens.'}</p>`}
            </div>
          </div>
          ${ended && candidateId
            ? html`<p><a class="button" href=${`#/candidates/${seg(candidateId)}`}>Open the candidate</a></p>`
            : ended && callId
              ? html`<p class="muted">Call ${callId} is stored.</p>`
              : null}
        </div>`
      : null}
  </div>`;
}
