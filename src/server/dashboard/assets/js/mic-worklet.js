// Audio worklets of the browser call (loaded with audioWorklet.addModule; no inline code, so the
// page's CSP holds).
//
// rx-capture: the microphone at the context's rate → low-pass → 8 kHz → PCM16 frames of 20 ms
//   (160 samples) posted to the page, with the frame's level for a meter.
// rx-playback: the agent's PCM16 8 kHz frames, queued and played gap-free at the context's rate
//   (linear interpolation across frame boundaries); 'clear' drops everything queued at once. It
//   reports how many 8 kHz samples have been played (or dropped), so the page can echo marks
//   once the audio before them has been heard.

/* global sampleRate, currentTime */

const FRAME = 160; // 20 ms at 8 kHz

/** A windowed-sinc low-pass FIR at `rate` with its cut-off below 4 kHz. */
function lowPass(rate, cutoff, taps) {
  const fc = cutoff / rate;
  const h = new Float32Array(taps);
  const m = (taps - 1) / 2;
  let sum = 0;
  for (let i = 0; i < taps; i++) {
    const x = i - m;
    const sinc = x === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * x) / (Math.PI * x);
    const w = 0.54 - 0.46 * Math.cos((2 * Math.PI * i) / (taps - 1)); // Hamming
    h[i] = sinc * w;
    sum += h[i];
  }
  for (let i = 0; i < taps; i++) h[i] /= sum;
  return h;
}

class Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.outRate = (options.processorOptions && options.processorOptions.sampleRate) || 8000;
    this.step = sampleRate / this.outRate; // input samples per output sample
    this.fir = this.step > 1 ? lowPass(sampleRate, 3600, 63) : null;
    this.hist = new Float32Array(this.fir ? this.fir.length : 1);
    this.histPos = 0;
    this.prev = 0; // last filtered sample
    this.pos = 0; // position of the next output sample, in input samples from the current one
    this.frame = new Int16Array(FRAME);
    this.n = 0;
    this.energy = 0;
    this.stopped = false;
    this.port.onmessage = (e) => {
      if (e.data === 'stop') this.stopped = true;
    };
  }

  filtered(x) {
    if (!this.fir) return x;
    const { hist, fir } = this;
    hist[this.histPos] = x;
    this.histPos = (this.histPos + 1) % hist.length;
    let y = 0;
    let j = this.histPos;
    for (let i = 0; i < fir.length; i++) {
      y += fir[i] * hist[j];
      j = j + 1 === hist.length ? 0 : j + 1;
    }
    return y;
  }

  emit(v) {
    const s = Math.max(-1, Math.min(1, v));
    this.frame[this.n++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    this.energy += s * s;
    if (this.n === FRAME) {
      const buf = this.frame.buffer;
      this.port.postMessage({ pcm: buf, level: Math.sqrt(this.energy / FRAME) }, [buf]);
      this.frame = new Int16Array(FRAME);
      this.n = 0;
      this.energy = 0;
    }
  }

  process(inputs) {
    if (this.stopped) return false;
    const input = inputs[0];
    if (!input || !input.length) return true;
    const channels = input.length;
    const len = input[0].length;
    for (let i = 0; i < len; i++) {
      let x = 0;
      for (let c = 0; c < channels; c++) x += input[c][i];
      const y = this.filtered(x / channels);
      // output samples that fall between the previous filtered sample and this one
      while (this.pos <= 1) {
        this.emit(this.prev + (y - this.prev) * this.pos);
        this.pos += this.step;
      }
      this.pos -= 1;
      this.prev = y;
    }
    return true;
  }
}

class Playback extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.inRate = (options.processorOptions && options.processorOptions.sampleRate) || 8000;
    this.step = this.inRate / sampleRate; // 8 kHz samples per output sample
    this.queue = []; // Float32Array chunks
    this.chunk = null;
    this.index = 0; // integer position in the current chunk
    this.frac = 0;
    this.last = 0; // the sample before `index` (continuity across chunks)
    this.played = 0; // 8 kHz samples consumed (played or dropped)
    this.reported = 0;
    this.stopped = false;
    this.port.onmessage = (e) => {
      const m = e.data;
      if (m && m.pcm) {
        const pcm = new Int16Array(m.pcm);
        const f = new Float32Array(pcm.length);
        for (let i = 0; i < pcm.length; i++) f[i] = pcm[i] / 0x8000;
        this.queue.push(f);
      } else if (m === 'clear') {
        let dropped = this.chunk ? this.chunk.length - this.index : 0;
        for (const c of this.queue) dropped += c.length;
        this.played += dropped;
        this.queue = [];
        this.chunk = null;
        this.index = 0;
        this.frac = 0;
        this.report();
      } else if (m === 'stop') {
        this.stopped = true;
      }
    };
  }

  report() {
    this.reported = this.played;
    this.port.postMessage({ played: this.played });
  }

  /** The next 8 kHz sample, or null when nothing is queued. */
  next() {
    if (!this.chunk || this.index >= this.chunk.length) {
      this.chunk = this.queue.shift() || null;
      this.index = 0;
      if (!this.chunk) return null;
    }
    this.played++;
    return this.chunk[this.index++];
  }

  process(_inputs, outputs) {
    if (this.stopped) return false;
    const out = outputs[0];
    const len = out[0].length;
    for (let i = 0; i < len; i++) {
      let v = 0;
      // interpolate between `last` and the sample at `index`
      const ahead = this.chunk && this.index < this.chunk.length ? this.chunk[this.index] : this.queue.length ? this.queue[0][0] : null;
      if (ahead !== null) {
        v = this.last + (ahead - this.last) * this.frac;
        this.frac += this.step;
        while (this.frac >= 1) {
          this.frac -= 1;
          const s = this.next();
          if (s === null) {
            this.frac = 0;
            break;
          }
          this.last = s;
        }
      } else {
        // underrun: silence, fade from the last sample
        this.last *= 0.9;
        v = this.last;
      }
      for (let c = 0; c < out.length; c++) out[c][i] = v;
    }
    // about every 20 ms, and as soon as everything queued has played
    const drained = (!this.chunk || this.index >= this.chunk.length) && !this.queue.length;
    if (this.played - this.reported >= 160 || (drained && this.played !== this.reported)) this.report();
    return true;
  }
}

registerProcessor('rx-capture', Capture);
registerProcessor('rx-playback', Playback);
