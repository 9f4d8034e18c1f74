// A call's recording beside its transcript.
//
// The recording needs the Authorization header, so it is fetched into a Blob and played from an
// object URL (CSP `media-src blob:`), which keeps it seekable. The WAV has the caller on the left
// and the agent on the right; played as is, a listener on headphones would hear each side in one
// ear only, so the element goes through Web Audio and is mixed down to both ears.
//
// Transcript times are milliseconds since the stream started, as is the recording: the line
// being played is highlighted and a click on a line seeks to it.

import { html, useState, useEffect, useRef } from './lib.js';
import { api } from './api.js';
import { Icon, Badge, ErrorNote } from './ui.js';
import { fmtClock } from './format.js';

const RATES = [1, 1.25, 1.5, 2];

export function CallPlayer({ call, children }) {
  const audio = useRef(null);
  const graph = useRef(null);
  const [src, setSrc] = useState(null);
  const [error, setError] = useState(null);
  const [playing, setPlaying] = useState(false);
  const [time, setTime] = useState(0);
  const [duration, setDuration] = useState(call.duration_ms ? call.duration_ms / 1000 : 0);
  const [rate, setRate] = useState(1);

  // the recording, through the API with the key, into a blob URL
  useEffect(() => {
    if (!call.recording_url) return undefined;
    const ctl = new AbortController();
    let url = null;
    api('GET', call.recording_url, undefined, { raw: true, signal: ctl.signal })
      .then((r) => r.blob())
      .then((blob) => {
        url = URL.createObjectURL(blob);
        setSrc(url);
      })
      .catch((e) => {
        if (e.name !== 'AbortError') setError(e);
      });
    return () => {
      ctl.abort();
      if (!url) return;
      // an element still loading the recording fails (net::ERR_FILE_NOT_FOUND in the console) if
      // its URL is revoked under it, as when the page is left at once: detach it first (the
      // element is still there while the component's effects are cleaned up)
      const el = audio.current;
      if (el) {
        el.removeAttribute('src');
        el.load();
      }
      URL.revokeObjectURL(url);
    };
  }, [call.recording_url]);

  // the clock: the element's time, smoothly while playing
  useEffect(() => {
    if (!playing) return undefined;
    let frame = 0;
    let last = 0;
    const tick = (now) => {
      if (now - last > 80 && audio.current) {
        last = now;
        setTime(audio.current.currentTime);
      }
      frame = requestAnimationFrame(tick);
    };
    frame = requestAnimationFrame(tick);
    return () => cancelAnimationFrame(frame);
  }, [playing]);

  useEffect(
    () => () => {
      if (graph.current) graph.current.close().catch(() => {});
    },
    [],
  );

  /** Both channels to both ears (once; needs a user gesture for the AudioContext). */
  const mixDown = () => {
    if (graph.current || !audio.current) return;
    try {
      const ctx = new AudioContext();
      const source = ctx.createMediaElementSource(audio.current);
      const mono = ctx.createGain();
      mono.channelCount = 1;
      mono.channelCountMode = 'explicit';
      mono.channelInterpretation = 'speakers';
      // the down-mix halves each side; one side speaks at a time, so bring it back up
      mono.gain.value = 1.8;
      const limiter = ctx.createDynamicsCompressor();
      limiter.threshold.value = -3;
      limiter.ratio.value = 20;
      source.connect(mono).connect(limiter).connect(ctx.destination);
      graph.current = ctx;
    } catch {
      // no Web Audio: the element plays the two channels as they are
    }
  };

  const play = async () => {
    const a = audio.current;
    if (!a) return;
    // one recording at a time
    document.querySelectorAll('audio').forEach((other) => other !== a && other.pause());
    mixDown();
    if (graph.current && graph.current.state === 'suspended') await graph.current.resume();
    try {
      await a.play();
    } catch (e) {
      setError(e);
    }
  };

  const toggle = () => (playing ? audio.current.pause() : play());

  const seek = (seconds) => {
    const a = audio.current;
    if (!a) return;
    a.currentTime = Math.max(0, Math.min(seconds, a.duration || seconds));
    setTime(a.currentTime);
  };

  const seekToLine = (line) => {
    seek(line.start_ms / 1000);
    if (!playing) play();
  };

  const setSpeed = (r) => {
    setRate(r);
    if (audio.current) audio.current.playbackRate = r;
  };

  const nowMs = time * 1000;
  const lines = call.transcript || [];
  const active = lines.findIndex((l) => nowMs >= l.start_ms && nowMs < Math.max(l.end_ms, l.start_ms + 300));

  return html`<div class="call-player">
    <div class="call-side">
    <div class="player" data-call=${call.id}>
      ${call.recording_url
        ? html`<audio
              ref=${audio}
              src=${src}
              preload="auto"
              onPlay=${() => setPlaying(true)}
              onPause=${() => setPlaying(false)}
              onEnded=${() => setPlaying(false)}
              onLoadedMetadata=${(e) => Number.isFinite(e.target.duration) && setDuration(e.target.duration)}
              onTimeUpdate=${(e) => setTime(e.target.currentTime)}
              onSeeked=${(e) => setTime(e.target.currentTime)}
            ></audio>
            <button
              type="button"
              class="play"
              aria-label=${playing ? 'Pause' : 'Play recording'}
              disabled=${!src}
              onClick=${toggle}
            >
              <${Icon} name=${playing ? 'pause' : 'play'} size=${20} />
            </button>
            <input
              type="range"
              class="seek"
              min="0"
              max=${duration || 0}
              step="0.1"
              value=${time}
              aria-label="Position"
              disabled=${!src}
              onInput=${(e) => seek(Number(e.target.value))}
            />
            <span class="time mono" aria-live="off"><span class="current">${fmtClock(time)}</span> / ${fmtClock(duration)}</span>
            <select class="rate" aria-label="Speed" value=${rate} onChange=${(e) => setSpeed(Number(e.target.value))}>
              ${RATES.map((r) => html`<option value=${r}>${r}×</option>`)}
            </select>
            ${src
              ? html`<a class="icon-button" href=${src} download=${`call-${call.id}.wav`} title="Download WAV" aria-label="Download recording">
                  <${Icon} name="download" size=${16} />
                </a>`
              : null}`
        : html`<p class="muted">No recording for this call.</p>`}
    </div>
    <${ErrorNote} error=${error} />
    ${children}
    </div>
    <${Transcript} lines=${lines} active=${active} onPick=${call.recording_url ? seekToLine : null} />
  </div>`;
}

/** The transcript; `onPick(line)` seeks when a line is clicked (when there is a recording). */
export function Transcript({ lines, active = -1, onPick, live = false }) {
  const box = useRef(null);
  // keep the active (or, live, the newest) line in view without scrolling the page
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const index = live ? lines.length - 1 : active;
    const row = index >= 0 ? el.children[index] : null;
    if (!row) return;
    if (row.offsetTop < el.scrollTop || row.offsetTop + row.offsetHeight > el.scrollTop + el.clientHeight) {
      el.scrollTop = row.offsetTop - el.clientHeight / 3;
    }
  }, [active, live ? lines.length : 0]);
  if (!lines.length) return html`<p class="muted transcript-empty">No transcript.</p>`;
  return html`<ol class="transcript" ref=${box} aria-label="Transcript">
    ${lines.map((l, i) => {
      const cls = `line ${l.speaker}${i === active ? ' active' : ''}${l.interrupted ? ' interrupted' : ''}`;
      const body = html`<span class="who">${l.speaker === 'agent' ? 'Agent' : 'Caller'}</span>
        <span class="at mono">${fmtClock(l.start_ms / 1000)}</span>
        <span class="text">${l.text}</span>
        ${l.interrupted ? html`<${Badge} tone="warn">interrupted</${Badge}>` : null}
        ${l.dtmf ? html`<${Badge} tone="muted">keypad</${Badge}>` : null}`;
      return html`<li class=${cls} key=${i} aria-current=${i === active ? 'true' : undefined} data-start-ms=${l.start_ms}>
        ${onPick
          ? html`<button type="button" class="line-button" title="Play from here" onClick=${() => onPick(l)}>${body}</button>`
          : html`<div class="line-button">${body}</div>`}
      </li>`;
    })}
  </ol>`;
}
