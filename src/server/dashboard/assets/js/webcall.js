// A real call to a receptionist from the browser.
//
// 1. POST /api/v1/receptionists/{id}/web-calls (admin key) → {call_id, token, ws_path, sample_rate}
//    (the token is good for 60 s, once).
// 2. WebSocket to ws(s)://<this host><ws_path>:
//    - we send binary frames of caller audio (PCM16 LE mono at 8 kHz, 20 ms = 320 bytes), and
//      JSON text: {"type":"mark","name"} once the agent audio before that mark has played,
//      {"type":"dtmf","digit"}, {"type":"hangup"};
//    - the server sends binary frames of agent audio (same format, ~200 ms ahead of real time),
//      and JSON text: started, mark, clear (drop queued agent audio now; marks queued before it are
//      not echoed), transcript, ended; then it closes.
// The microphone goes through an AudioWorklet (mic-worklet.js) that resamples it to 8 kHz; the
// agent's audio plays through another that queues it gap-free.

import { post, seg, ApiError } from './api.js';

const WORKLET = '/assets/js/mic-worklet.js';

export class WebCall {
  /**
   * `on`: {state(s), transcript(lines), level(0..1), started(callId), ended(reason)}; `state` is
   * one of 'connecting', 'live', 'ending', 'ended'.
   */
  constructor(receptionistId, on) {
    this.receptionistId = receptionistId;
    this.on = on;
    this.lines = [];
    this.marks = []; // {name, at}: echo when `at` 8 kHz samples have played
    this.enqueued = 0;
    this.played = 0;
    this.state = 'idle';
    this.closed = false;
  }

  setState(s) {
    this.state = s;
    this.on.state && this.on.state(s);
  }

  async start() {
    this.setState('connecting');
    try {
      // the audio context first, inside the click that started the call (autoplay rules)
      this.ctx = new AudioContext({ latencyHint: 'interactive' });
      if (this.ctx.state === 'suspended') await this.ctx.resume();
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        throw new Error('This browser gives no microphone here (it needs https:// or localhost).');
      }
      try {
        this.stream = await navigator.mediaDevices.getUserMedia({
          audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: false },
        });
      } catch (e) {
        throw new Error(`No microphone: ${e.message || e.name}. Allow the microphone for this page and try again.`);
      }
      await this.ctx.audioWorklet.addModule(WORKLET);
      // only now ask for the call: its token is short-lived
      const session = await post(`/api/v1/receptionists/${seg(this.receptionistId)}/web-calls`);
      if (this.closed) return;
      this.callId = session.call_id;
      const rate = session.sample_rate || 8000;
      this.setupAudio(rate);
      this.connect(session.ws_path);
    } catch (e) {
      this.cleanup();
      this.setState('ended');
      if (e instanceof ApiError && e.status === 404) {
        throw new Error('This server does not offer browser calls (or the receptionist is gone).');
      }
      throw e;
    }
  }

  setupAudio(rate) {
    const ctx = this.ctx;
    this.mic = ctx.createMediaStreamSource(this.stream);
    this.capture = new AudioWorkletNode(ctx, 'rx-capture', {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { sampleRate: rate },
    });
    this.playback = new AudioWorkletNode(ctx, 'rx-playback', {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { sampleRate: rate },
    });
    this.mic.connect(this.capture);
    // the capture node writes silence; connected so that it is pulled by the graph
    this.capture.connect(ctx.destination);
    this.playback.connect(ctx.destination);
    this.capture.port.onmessage = (e) => {
      const { pcm, level } = e.data;
      this.on.level && this.on.level(level);
      if (this.ws && this.ws.readyState === WebSocket.OPEN && this.state === 'live') this.ws.send(pcm);
    };
    this.playback.port.onmessage = (e) => {
      if (typeof e.data.played === 'number') {
        this.played = e.data.played;
        this.echoMarks();
      }
    };
  }

  connect(wsPath) {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${scheme}//${location.host}${wsPath}`);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = () => {
      this.setState('live');
    };
    ws.onmessage = (e) => {
      if (typeof e.data !== 'string') {
        this.enqueued += e.data.byteLength / 2;
        this.playback.port.postMessage({ pcm: e.data }, [e.data]);
        return;
      }
      let m;
      try {
        m = JSON.parse(e.data);
      } catch {
        return;
      }
      this.handle(m);
    };
    ws.onclose = () => {
      this.cleanup();
      this.setState('ended');
      this.on.ended && this.on.ended(this.endReason || 'disconnected');
    };
    ws.onerror = () => {
      // onclose follows
    };
  }

  handle(m) {
    switch (m.type) {
      case 'started':
        if (m.call_id) this.callId = m.call_id;
        this.on.started && this.on.started(this.callId);
        break;
      case 'mark':
        this.marks.push({ name: m.name, at: this.enqueued });
        this.echoMarks();
        break;
      case 'clear':
        // the caller barged in: the agent stops at once; queued marks are never echoed
        this.playback.port.postMessage('clear');
        this.marks = [];
        break;
      case 'transcript': {
        const line = {
          speaker: m.speaker,
          text: String(m.text || ''),
          interrupted: Boolean(m.interrupted),
          start_ms: m.start_ms,
          end_ms: m.end_ms,
        };
        const same = this.lines.findIndex((l) => l.speaker === line.speaker && l.start_ms === line.start_ms);
        if (same >= 0) this.lines[same] = line;
        else this.lines.push(line);
        this.lines.sort((a, b) => a.start_ms - b.start_ms);
        this.on.transcript && this.on.transcript([...this.lines]);
        break;
      }
      case 'ended':
        this.endReason = m.reason;
        this.setState('ending');
        break;
      default:
        break;
    }
  }

  echoMarks() {
    while (this.marks.length && this.marks[0].at <= this.played) {
      const { name } = this.marks.shift();
      this.sendJson({ type: 'mark', name });
    }
  }

  sendJson(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj));
  }

  dtmf(digit) {
    this.sendJson({ type: 'dtmf', digit: String(digit) });
  }

  /** Ask the server to end the call; close ourselves if it does not within 5 s. */
  hangup() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      this.closed = true;
      this.cleanup();
      this.setState('ended');
      return;
    }
    this.sendJson({ type: 'hangup' });
    this.setState('ending');
    setTimeout(() => {
      if (this.ws && this.ws.readyState !== WebSocket.CLOSED) this.ws.close();
    }, 5000);
  }

  cleanup() {
    if (this.cleaned) return;
    this.cleaned = true;
    if (this.capture) this.capture.port.postMessage('stop');
    if (this.playback) this.playback.port.postMessage('stop');
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    if (this.ctx) this.ctx.close().catch(() => {});
  }
}
