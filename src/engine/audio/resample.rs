//! Sample-rate conversion: a streaming 8 kHz → 16 kHz upsampler for caller audio (hot path, fixed
//! 20 ms chunks, no allocation after construction) and whole-buffer conversion for synthesized
//! speech (not hot; once per sentence).
//!
//! The streaming upsampler defaults to a half-band polyphase FIR (64 taps, Blackman window): a few
//! lines, about 200 bytes of state, 2 ms delay and a few hundred nanoseconds per frame, where
//! rubato's `Fft` (kept as an option) holds about 24 KiB of FFT plans per call and takes about
//! 2 µs per frame with 10 ms delay — that mattered once thousands of calls share a machine.
//! Whole-buffer conversion uses rubato 5. `Async` polynomial (cubic) leaves spectral images of the
//! speech in the 4-8 kHz band; see [`UpsamplerKind`].

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, FixedAsync, FixedSync, PolynomialDegree, Resampler};

use super::{SAMPLES_8K, SAMPLES_16K};

/// Which algorithm an [`Upsampler8To16`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsamplerKind {
    /// Half-band polyphase FIR: band-limited, 2 ms delay, tiny state. The default.
    HalfBand,
    /// rubato `Fft`, fixed both sides: band-limited, 10 ms delay, ~24 KiB of state.
    Fft,
    /// rubato `Async` with cubic polynomial interpolation: 0.25 ms delay, no anti-imaging filter.
    PolyCubic,
    /// Linear interpolation (no rubato): 1 sample delay, crude. Fallback only.
    Linear,
}

/// Taps on each side of the half-sample point of the half-band filter's odd phase.
const HB_HALF: usize = 16;

/// 2x interpolation by a half-band FIR: even outputs are the (delayed) input, odd outputs are a
/// symmetric windowed-sinc interpolation between input samples.
struct HalfBand {
    coeffs: [f32; HB_HALF],
    /// The previous frame's last `2 * HB_HALF - 1` samples followed by the current frame.
    buf: [f32; SAMPLES_8K + 2 * HB_HALF - 1],
}

impl HalfBand {
    fn new() -> Self {
        let mut coeffs = [0f32; HB_HALF];
        let n = (2 * HB_HALF) as f64;
        let mut sum = 0.0;
        for (k, c) in coeffs.iter_mut().enumerate() {
            let t = k as f64 + 0.5; // distance from the half-sample point, in input samples
            let sinc = (std::f64::consts::PI * t).sin() / (std::f64::consts::PI * t);
            // Blackman window over the 2*HB_HALF taps, evaluated at this tap's position
            let x = (HB_HALF as f64 - t) / n;
            let w = 0.42 - 0.5 * (2.0 * std::f64::consts::PI * x).cos()
                + 0.08 * (4.0 * std::f64::consts::PI * x).cos();
            let v = sinc * w;
            *c = v as f32;
            sum += 2.0 * v;
        }
        for c in coeffs.iter_mut() {
            *c = (*c as f64 / sum) as f32;
        }
        Self {
            coeffs,
            buf: [0.0; SAMPLES_8K + 2 * HB_HALF - 1],
        }
    }

    /// Shifts `input` into the history, as the start of [`process`](Self::process) does.
    fn keep(&mut self, input: &[i16; SAMPLES_8K]) {
        const HIST: usize = 2 * HB_HALF - 1;
        self.buf.copy_within(SAMPLES_8K.., 0);
        for (d, &s) in self.buf[HIST..].iter_mut().zip(input.iter()) {
            *d = s as f32;
        }
    }

    fn process(&mut self, input: &[i16; SAMPLES_8K], out: &mut [i16; SAMPLES_16K]) {
        self.keep(input);
        for j in 0..SAMPLES_8K {
            let p = j + HB_HALF - 1;
            let mut acc = 0.0f32;
            for k in 0..HB_HALF {
                acc += self.coeffs[k] * (self.buf[p - k] + self.buf[p + 1 + k]);
            }
            out[2 * j] = to_i16(self.buf[p]);
            out[2 * j + 1] = to_i16(acc);
        }
    }

    fn reset(&mut self) {
        self.buf.fill(0.0);
    }
}

enum Inner {
    HalfBand(Box<HalfBand>),
    Fft(Box<rubato::Fft<f32>>),
    Poly(Box<Async<f32>>),
    Linear,
}

/// Streaming 8 kHz → 16 kHz conversion for fixed 160-sample (20 ms) chunks.
pub struct Upsampler8To16 {
    inner: Inner,
    kind: UpsamplerKind,
    input: Vec<f32>,
    output: Vec<f32>,
    /// Output samples produced by the resampler but not yet handed out (only `PolyCubic` may
    /// produce a chunk that is not exactly 320 long).
    pending: usize,
    /// Last input sample, for `Linear`.
    prev: f32,
}

impl Default for Upsampler8To16 {
    fn default() -> Self {
        Self::new()
    }
}

impl Upsampler8To16 {
    /// The default: the half-band FIR (band-limited; 2 ms delay).
    pub fn new() -> Self {
        Self::with_kind(UpsamplerKind::HalfBand)
    }

    /// An upsampler of the given kind. If rubato refuses the configuration (it should not), this
    /// falls back to [`UpsamplerKind::Linear`]; see [`Upsampler8To16::kind`].
    pub fn with_kind(kind: UpsamplerKind) -> Self {
        let inner = match kind {
            UpsamplerKind::HalfBand => Some(Inner::HalfBand(Box::new(HalfBand::new()))),
            UpsamplerKind::Fft => {
                rubato::Fft::<f32>::new(8000, 16000, SAMPLES_8K, 1, FixedSync::Both)
                    .ok()
                    .filter(|r| {
                        r.input_frames_next() == SAMPLES_8K && r.output_frames_next() == SAMPLES_16K
                    })
                    .map(|r| Inner::Fft(Box::new(r)))
            }
            UpsamplerKind::PolyCubic => Async::<f32>::new_poly(
                2.0,
                1.0,
                PolynomialDegree::Cubic,
                SAMPLES_8K,
                1,
                FixedAsync::Input,
            )
            .ok()
            .filter(|r| r.input_frames_next() == SAMPLES_8K)
            .map(|r| Inner::Poly(Box::new(r))),
            UpsamplerKind::Linear => Some(Inner::Linear),
        };
        let (inner, kind) = match inner {
            Some(inner) => (inner, kind),
            None => (Inner::Linear, UpsamplerKind::Linear),
        };
        let out_cap = match &inner {
            Inner::Poly(r) => r.output_frames_max().max(SAMPLES_16K) + SAMPLES_16K,
            _ => SAMPLES_16K,
        };
        let (in_cap, out_cap) = match &inner {
            // the FIR and linear kinds work in place and need no rubato buffers
            Inner::HalfBand(_) | Inner::Linear => (0, 0),
            _ => (SAMPLES_8K, out_cap),
        };
        Self {
            inner,
            kind,
            input: vec![0.0; in_cap],
            output: vec![0.0; out_cap],
            pending: 0,
            prev: 0.0,
        }
    }

    /// The algorithm actually in use.
    pub fn kind(&self) -> UpsamplerKind {
        self.kind
    }

    /// Delay from input to output, in 16 kHz samples.
    pub fn delay_samples(&self) -> usize {
        match &self.inner {
            Inner::HalfBand(_) => 2 * HB_HALF,
            Inner::Fft(r) => r.output_delay(),
            Inner::Poly(r) => r.output_delay(),
            Inner::Linear => 2,
        }
    }

    /// Forgets all history (e.g. after a gap in the stream).
    pub fn reset(&mut self) {
        match &mut self.inner {
            Inner::HalfBand(h) => h.reset(),
            Inner::Fft(r) => r.reset(),
            Inner::Poly(r) => r.reset(),
            Inner::Linear => {}
        }
        self.pending = 0;
        self.prev = 0.0;
    }

    /// Takes a 20 ms chunk whose output is not needed, leaving the upsampler exactly as
    /// [`process`](Self::process) would (the next chunk's output is the same), at a fraction of
    /// the cost for the half-band and linear kinds: they only keep the chunk's last samples.
    pub fn skip(&mut self, input: &[i16; SAMPLES_8K]) {
        match &mut self.inner {
            Inner::HalfBand(h) => h.keep(input),
            Inner::Linear => self.prev = input[SAMPLES_8K - 1] as f32,
            Inner::Fft(_) | Inner::Poly(_) => {
                let mut out = [0i16; SAMPLES_16K];
                self.process(input, &mut out);
            }
        }
    }

    /// Converts one 20 ms chunk. Never allocates; never panics (a resampler error, which cannot
    /// happen with the buffers sized here, yields silence).
    pub fn process(&mut self, input: &[i16; SAMPLES_8K], out: &mut [i16; SAMPLES_16K]) {
        const SCALE_IN: f32 = 1.0 / 32768.0;
        if let Inner::HalfBand(h) = &mut self.inner {
            h.process(input, out);
            return;
        }
        if let Inner::Linear = self.inner {
            let mut prev = self.prev;
            for (pair, &s) in out.chunks_exact_mut(2).zip(input.iter()) {
                let s = s as f32;
                pair[0] = to_i16((prev + s) * 0.5);
                pair[1] = s as i16;
                prev = s;
            }
            self.prev = prev;
            return;
        }
        for (d, &s) in self.input.iter_mut().zip(input.iter()) {
            *d = s as f32 * SCALE_IN;
        }
        let produced = match &mut self.inner {
            Inner::Fft(r) => run(r.as_mut(), &self.input, &mut self.output[..]),
            Inner::Poly(r) => {
                let start = self.pending;
                run(r.as_mut(), &self.input, &mut self.output[start..]).map(|n| n + start)
            }
            Inner::Linear | Inner::HalfBand(_) => Some(0),
        };
        let Some(available) = produced else {
            self.pending = 0;
            out.fill(0);
            return;
        };
        let take = available.min(SAMPLES_16K);
        // If the resampler came up short (PolyCubic at start-up), pad at the front with
        // silence so the newest audio is at the end of the frame.
        let pad = SAMPLES_16K - take;
        out[..pad].fill(0);
        for (d, &s) in out[pad..].iter_mut().zip(&self.output[..take]) {
            *d = to_i16(s * 32768.0);
        }
        // Keep any surplus for the next call.
        self.output.copy_within(take..available, 0);
        self.pending = available - take;
    }
}

/// Telephone audio (G.711 µ-law at 8 kHz, as a call carries it) decoded and upsampled to 16 kHz
/// as it streams, in 20 ms frames through one [`Upsampler8To16`], as the engine's inbound path
/// would. For recognisers that are handed the call's µ-law and need 16 kHz.
#[derive(Default)]
pub struct MulawWidener {
    up: Upsampler8To16,
}

impl MulawWidener {
    pub fn new() -> Self {
        Self::default()
    }

    /// Widens `mulaw` in pieces of up to 20 ms, handing each to `out`; a piece shorter than a
    /// frame is padded with µ-law silence and only its own length (twice its bytes) handed out.
    pub fn widen(&mut self, mulaw: &[u8], mut out: impl FnMut(&[i16])) {
        let mut frame = [0xFFu8; SAMPLES_8K];
        let mut pcm = [0i16; SAMPLES_8K];
        let mut wide = [0i16; SAMPLES_16K];
        for chunk in mulaw.chunks(SAMPLES_8K) {
            frame[..chunk.len()].copy_from_slice(chunk);
            frame[chunk.len()..].fill(0xFF);
            super::g711::decode_into(&frame, &mut pcm);
            self.up.process(&pcm, &mut wide);
            out(&wide[..2 * chunk.len()]);
        }
    }
}

/// Telephone audio widened to 16 kHz by a fresh [`MulawWidener`]: for recognisers that keep an
/// utterance as the call carried it (a quarter of the memory of 16 kHz PCM) and widen it when
/// they decode it.
pub fn mulaw_to_16k(mulaw: &[u8]) -> Vec<i16> {
    let mut out = Vec::with_capacity(mulaw.len() * 2);
    MulawWidener::new().widen(mulaw, |pcm| out.extend_from_slice(pcm));
    out
}

fn run(r: &mut dyn Resampler<f32>, input: &[f32], output: &mut [f32]) -> Option<usize> {
    let frames_out = output.len();
    let a_in = InterleavedSlice::new(input, 1, input.len()).ok()?;
    let mut a_out = InterleavedSlice::new_mut(output, 1, frames_out).ok()?;
    r.process_into_buffer(&a_in, &mut a_out, None)
        .ok()
        .map(|(_, n)| n)
}

#[inline]
fn to_i16(x: f32) -> i16 {
    // Round half away from zero without a libm call (`f32::round` is one, and it showed in
    // profiles of the hot path); `as` saturates and maps NaN to 0.
    (x + 0.5f32.copysign(x)) as i16
}

/// Largest sample rate accepted by [`resample`] (anything above is certainly a bug).
pub const MAX_SAMPLE_RATE: u32 = 384_000;

/// Whole-buffer resampling of synthesized speech at any rate to 8 kHz.
pub fn resample_to_8k(pcm: &[i16], sample_rate: u32) -> Vec<i16> {
    resample(pcm, sample_rate, 8000)
}

/// Whole-buffer resampling from `from_rate` to `to_rate` (band-limited, delay-compensated: the
/// output lines up with the input and has `len * to / from` samples, rounded up). Returns an
/// empty vector for a rate of 0 or above [`MAX_SAMPLE_RATE`]. Allocates; not for the hot path.
pub fn resample(pcm: &[i16], from_rate: u32, to_rate: u32) -> Vec<i16> {
    let valid = |r: u32| r > 0 && r <= MAX_SAMPLE_RATE;
    if !valid(from_rate) || !valid(to_rate) {
        return Vec::new();
    }
    if from_rate == to_rate || pcm.is_empty() {
        return pcm.to_vec();
    }
    let input: Vec<f32> = pcm.iter().map(|&s| s as f32 / 32768.0).collect();
    let fft = rubato::Fft::<f32>::new(
        from_rate as usize,
        to_rate as usize,
        1024,
        1,
        FixedSync::Both,
    );
    let out = fft.ok().and_then(|mut r| {
        let a_in = InterleavedSlice::new(&input[..], 1, input.len()).ok()?;
        r.process_all(&a_in, input.len(), None).ok()
    });
    match out {
        Some(buf) => buf
            .take_data()
            .into_iter()
            .map(|s| to_i16(s * 32768.0))
            .collect(),
        None => linear_resample(pcm, from_rate, to_rate),
    }
}

/// [`resample`] for audio that arrives in pieces (a streaming synthesiser's): the same
/// band-limited filter, its state carried from piece to piece, so the joins are as clean as the
/// middle. [`push`](Self::push) returns what is ready (the filter holds back its delay's worth);
/// [`finish`](Self::finish) flushes the rest. In all, the output lines up with the input and has
/// `len * to / from` samples, rounded up. Allocates; not for the hot path.
pub struct StreamResampler {
    fft: Option<rubato::Fft<f32>>,
    from_rate: u32,
    to_rate: u32,
    /// Input not yet given to the filter (it takes fixed chunks).
    pending: Vec<f32>,
    /// Output frames still to drop: the filter's delay.
    skip: usize,
    taken: u64,
    given: u64,
    out: Vec<f32>,
    /// The filter's output for one chunk (reused).
    chunk_out: Vec<f32>,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("from_rate", &self.from_rate)
            .field("to_rate", &self.to_rate)
            .finish_non_exhaustive()
    }
}

impl StreamResampler {
    /// From `from_rate` to `to_rate`; equal or invalid rates pass the audio through unchanged
    /// (invalid ones as [`resample`] would not: the caller checks rates first).
    pub fn new(from_rate: u32, to_rate: u32) -> Self {
        let valid = |r: u32| r > 0 && r <= MAX_SAMPLE_RATE;
        let fft = (from_rate != to_rate && valid(from_rate) && valid(to_rate))
            .then(|| {
                rubato::Fft::<f32>::new(
                    from_rate as usize,
                    to_rate as usize,
                    1024,
                    1,
                    FixedSync::Both,
                )
                .ok()
            })
            .flatten();
        let skip = fft.as_ref().map_or(0, |f| f.output_delay());
        let chunk_out = vec![0f32; fft.as_ref().map_or(0, |f| f.output_frames_max())];
        Self {
            fft,
            from_rate,
            to_rate,
            pending: Vec::new(),
            skip,
            taken: 0,
            given: 0,
            out: Vec::new(),
            chunk_out,
        }
    }

    /// Resample `pcm`, the next piece; returns the output that is ready.
    pub fn push(&mut self, pcm: &[i16]) -> Vec<i16> {
        if self.fft.is_none() {
            return pcm.to_vec();
        }
        self.taken += pcm.len() as u64;
        self.pending.extend(pcm.iter().map(|&s| s as f32 / 32768.0));
        self.run(false);
        self.emit()
    }

    /// The end of the audio: the rest of the output.
    pub fn finish(mut self) -> Vec<i16> {
        if self.fft.is_none() {
            return Vec::new();
        }
        self.run(true);
        self.emit()
    }

    /// Feed whole chunks to the filter; at the end, the last partial one and then silence
    /// until the delayed output has all come out.
    fn run(&mut self, end: bool) {
        let Some(fft) = self.fft.as_mut() else {
            return;
        };
        let expected = (self.taken * u64::from(self.to_rate)).div_ceil(u64::from(self.from_rate));
        loop {
            let need = fft.input_frames_next();
            let have = self.pending.len();
            if have < need {
                if !end || (have == 0 && self.given >= expected) {
                    break;
                }
                // pad the last chunk with silence (it flushes the filter's delay too)
                self.pending.resize(need, 0.0);
            }
            let input = &self.pending[..need];
            let (Ok(a_in), Ok(mut a_out)) = (
                InterleavedSlice::new(input, 1, need),
                rubato::audioadapter_buffers::direct::InterleavedSlice::new_mut(
                    &mut self.chunk_out[..],
                    1,
                    fft.output_frames_max(),
                ),
            ) else {
                break;
            };
            let Ok((used, made)) = fft.process_into_buffer(&a_in, &mut a_out, None) else {
                break;
            };
            self.pending.drain(..used.min(self.pending.len()));
            let mut produced = &self.chunk_out[..made];
            let drop = self.skip.min(produced.len());
            self.skip -= drop;
            produced = &produced[drop..];
            let room = if end {
                expected.saturating_sub(self.given) as usize
            } else {
                produced.len()
            };
            let produced = &produced[..produced.len().min(room)];
            self.given += produced.len() as u64;
            self.out.extend_from_slice(produced);
            if end && self.given >= expected {
                self.pending.clear();
                break;
            }
        }
    }

    fn emit(&mut self) -> Vec<i16> {
        self.out.drain(..).map(|s| to_i16(s * 32768.0)).collect()
    }
}

/// Plain linear interpolation, used only if rubato refuses a rate pair./// Plain linear interpolation, used only if rubato refuses a rate pair.
fn linear_resample(pcm: &[i16], from_rate: u32, to_rate: u32) -> Vec<i16> {
    let out_len = (pcm.len() as u64 * to_rate as u64).div_ceil(from_rate as u64) as usize;
    let step = from_rate as f64 / to_rate as f64;
    let last = pcm.len() - 1;
    (0..out_len)
        .map(|i| {
            let pos = i as f64 * step;
            let idx = (pos as usize).min(last);
            let frac = (pos - idx as f64) as f32;
            let a = pcm[idx] as f32;
            let b = pcm[(idx + 1).min(last)] as f32;
            to_i16(a + (b - a) * frac)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skipped_chunk_leaves_the_upsampler_as_processing_it_would() {
        let chunk = |k: usize| -> [i16; SAMPLES_8K] {
            std::array::from_fn(|i| (((k * SAMPLES_8K + i) as f32 * 0.37).sin() * 9000.0) as i16)
        };
        for kind in [
            UpsamplerKind::HalfBand,
            UpsamplerKind::Fft,
            UpsamplerKind::PolyCubic,
            UpsamplerKind::Linear,
        ] {
            let (mut a, mut b) = (
                Upsampler8To16::with_kind(kind),
                Upsampler8To16::with_kind(kind),
            );
            let (mut out_a, mut out_b) = ([0i16; SAMPLES_16K], [0i16; SAMPLES_16K]);
            for k in 0..4 {
                a.process(&chunk(k), &mut out_a);
                match k % 2 {
                    0 => b.skip(&chunk(k)),
                    _ => b.process(&chunk(k), &mut out_b),
                }
                if k % 2 == 1 {
                    assert_eq!(out_a, out_b, "{kind:?}, chunk {k}");
                }
            }
        }
    }

    #[test]
    fn a_stream_resampled_in_pieces_matches_the_whole() {
        let pcm = sine(440.0, 24_000, 24_000, 12_000.0);
        let whole = resample(&pcm, 24_000, 8_000);
        let mut r = StreamResampler::new(24_000, 8_000);
        let mut streamed = Vec::new();
        let mut rest = &pcm[..];
        for size in [1_000, 1_777, 333, 4_800, 17].iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, more) = rest.split_at((*size).min(rest.len()));
            streamed.extend(r.push(piece));
            rest = more;
        }
        assert!(
            streamed.len() < whole.len(),
            "the filter holds back its delay"
        );
        streamed.extend(r.finish());
        assert_eq!(streamed.len(), whole.len());
        let worst = streamed
            .iter()
            .zip(&whole)
            .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
            .max()
            .unwrap();
        assert!(
            worst <= 2,
            "differs from the whole-buffer result by {worst}"
        );
        // equal rates pass through
        let mut same = StreamResampler::new(8_000, 8_000);
        assert_eq!(same.push(&pcm[..10]), pcm[..10].to_vec());
        assert!(same.finish().is_empty());
    }

    fn sine(freq: f32, rate: u32, n: usize, amp: f32) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f32 / rate as f32;
                (amp * (2.0 * std::f32::consts::PI * freq * t).sin()) as i16
            })
            .collect()
    }

    /// Correlation of `x` with a unit sine/cosine at `freq`: amplitude of that component.
    fn tone_amplitude(x: &[i16], freq: f32, rate: u32) -> f32 {
        let (mut s, mut c) = (0.0f64, 0.0f64);
        for (i, &v) in x.iter().enumerate() {
            let ph = 2.0 * std::f64::consts::PI * freq as f64 * i as f64 / rate as f64;
            s += v as f64 * ph.sin();
            c += v as f64 * ph.cos();
        }
        (2.0 * (s * s + c * c).sqrt() / x.len() as f64) as f32
    }

    fn stream(kind: UpsamplerKind, input: &[i16]) -> (Vec<i16>, Upsampler8To16) {
        let mut up = Upsampler8To16::with_kind(kind);
        assert_eq!(up.kind(), kind);
        let mut out = Vec::new();
        let mut frame = [0i16; SAMPLES_16K];
        for chunk in input.chunks_exact(SAMPLES_8K) {
            let chunk: &[i16; SAMPLES_8K] = chunk.try_into().unwrap();
            up.process(chunk, &mut frame);
            out.extend_from_slice(&frame);
        }
        (out, up)
    }

    #[test]
    fn upsampler_keeps_tone_and_leaves_upper_band_empty() {
        for kind in [
            UpsamplerKind::HalfBand,
            UpsamplerKind::Fft,
            UpsamplerKind::PolyCubic,
        ] {
            let input = sine(1000.0, 8000, 8000, 10000.0);
            let (out, up) = stream(kind, &input);
            assert_eq!(out.len(), 16000);
            // Skip the start-up delay.
            let steady = &out[1600..];
            let a = tone_amplitude(steady, 1000.0, 16000);
            assert!((a - 10000.0).abs() < 300.0, "{kind:?}: amplitude {a}");
            // Image of 1 kHz at 7 kHz: Fft suppresses it, cubic only attenuates.
            let image = tone_amplitude(steady, 7000.0, 16000);
            if kind != UpsamplerKind::PolyCubic {
                assert!(image < 10.0, "{kind:?}: image {image}");
            }
            println!(
                "{kind:?}: delay {} samples, image at 7 kHz {image:.1}",
                up.delay_samples()
            );
        }
    }

    #[test]
    fn fft_upsampler_delay_is_10ms() {
        let up = Upsampler8To16::with_kind(UpsamplerKind::Fft);
        assert_eq!(up.kind(), UpsamplerKind::Fft);
        assert!(up.delay_samples() <= 160, "{}", up.delay_samples());
        let hb = Upsampler8To16::new();
        assert_eq!(hb.kind(), UpsamplerKind::HalfBand);
        assert_eq!(hb.delay_samples(), 32);
    }

    #[test]
    fn half_band_passes_the_phone_band() {
        for (f, min) in [(300.0, 0.99), (1000.0, 0.99), (2500.0, 0.97), (3300.0, 0.8)] {
            let input = sine(f, 8000, 8000, 10000.0);
            let (out, _) = stream(UpsamplerKind::HalfBand, &input);
            let a = tone_amplitude(&out[1600..], f, 16000);
            assert!(a > 10000.0 * min && a < 10100.0, "{f} Hz: {a}");
            let image = tone_amplitude(&out[1600..], 8000.0 - f, 16000);
            println!("{f} Hz: amplitude {a:.0}, image {image:.1}");
        }
    }

    #[test]
    fn linear_upsampler_works() {
        let input = sine(500.0, 8000, 1600, 8000.0);
        let (out, _) = stream(UpsamplerKind::Linear, &input);
        let a = tone_amplitude(&out[100..], 500.0, 16000);
        assert!((a - 8000.0).abs() < 400.0, "{a}");
    }

    #[test]
    fn full_scale_input_does_not_wrap() {
        let mut up = Upsampler8To16::new();
        let square: [i16; SAMPLES_8K] =
            std::array::from_fn(|i| if (i / 8) % 2 == 0 { i16::MAX } else { i16::MIN });
        let mut out = [0i16; SAMPLES_16K];
        for _ in 0..10 {
            up.process(&square, &mut out);
        }
        // Gibbs overshoot must saturate, not wrap around.
        let flips = out
            .windows(2)
            .filter(|w| (w[0] as i32 - w[1] as i32).abs() > 60000)
            .count();
        assert!(flips < 45, "{flips}");
    }

    #[test]
    fn whole_buffer_resample_lengths_and_tone() {
        for (from, to) in [
            (16000, 8000),
            (22050, 8000),
            (24000, 8000),
            (48000, 8000),
            (8000, 16000),
            (44100, 16000),
        ] {
            let n = from as usize; // one second
            let input = sine(440.0, from, n, 12000.0);
            let out = resample(&input, from, to);
            let expected = (n as u64 * to as u64).div_ceil(from as u64) as usize;
            assert_eq!(out.len(), expected, "{from}->{to}");
            let a = tone_amplitude(&out[200..out.len() - 200], 440.0, to);
            assert!((a - 12000.0).abs() < 400.0, "{from}->{to}: {a}");
        }
        assert_eq!(resample_to_8k(&[1, 2, 3], 8000), vec![1, 2, 3]);
    }

    #[test]
    fn whole_buffer_resample_edge_cases() {
        assert!(resample(&[1, 2, 3], 0, 8000).is_empty());
        assert!(resample(&[1, 2, 3], 8000, 0).is_empty());
        assert!(resample(&[1, 2, 3], u32::MAX, 8000).is_empty());
        assert!(resample(&[], 16000, 8000).is_empty());
        assert_eq!(resample(&[7], 16000, 8000).len(), 1);
        assert_eq!(resample(&[7; 3], 8001, 8000).len(), 3);
        assert_eq!(
            linear_resample(&[0, 100], 8000, 16000),
            vec![0, 50, 100, 100]
        );
    }

    #[test]
    fn downsampling_removes_content_above_nyquist() {
        let input = sine(6000.0, 16000, 16000, 12000.0);
        let out = resample_to_8k(&input, 16000);
        let peak = out[200..out.len() - 200]
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap();
        assert!(peak < 200, "{peak}");
    }
}
