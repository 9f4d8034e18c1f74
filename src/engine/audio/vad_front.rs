//! earshot's front end (pre-emphasis, Hann window, 1024-point power spectrum, 40 log-mel bands)
//! computed here, in front of earshot's own network ([`earshot::DefaultPredictor`]).
//!
//! Why: the detector is the largest part of what a call's audio costs (issue 9: a third of the
//! connection thread's time at 10 calls, `perf record`), and more than a third of that was
//! earshot's portable FFT. This front end computes the same features with `realfft` (SIMD kernels chosen at
//! run time), and keeps the work buffers once per thread instead of once per call (earshot's
//! `Detector` holds 4 KiB of them in each call). The network, its weights and its state are
//! earshot's, unchanged.
//!
//! The features are earshot 1.2's, to rounding: the test
//! `the_front_end_scores_as_earshot_does` runs this and `earshot::Detector` side by side on
//! speech and noise. The mel filterbank is the usual triangular one on mel-spaced FFT bins (HTK's
//! mel scale, 72 Hz to 7.6 kHz, bins `floor(1025 · f / 16000)`), which gives earshot's bands.
//! [`earshot::Predictor`]'s methods are marked unstable, so the crate is pinned to 1.2.2.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use earshot::Predictor;
use realfft::RealToComplex;
use realfft::num_complex::Complex;

/// earshot's frame: 16 ms at 16 kHz.
pub(crate) const FRAME: usize = 256;
const WINDOW: usize = 768;
const FFT: usize = 1024;
const BINS: usize = FFT / 2 + 1;
const MELS: usize = 40;
const CONTEXT: usize = 3;
const PRE_EMPHASIS: f32 = 0.97;
/// Powers are taken at i16 scale and brought to full scale 1.
const POWER_SCALE: f32 = 1.0 / (32768.0 * 32768.0);
/// The network's scratch space (earshot's `Detector` passes it 1026 floats).
const NETWORK_SCRATCH: usize = 1026;

/// One audio stream's state: the last 48 ms of pre-emphasised audio, the last three frames'
/// features and the network's recurrent state (about 3.6 KiB).
pub(crate) struct Front {
    ring: [f32; WINDOW],
    previous: f32,
    features: [f32; MELS * CONTEXT],
    network: earshot::DefaultPredictor,
}

/// What is shared: the FFT plan, the window and the filterbank.
struct Tables {
    fft: Arc<dyn RealToComplex<f32>>,
    window: [f32; WINDOW],
    /// Band `m` spans bins `edges[m]..edges[m + 2]`, weights at `weights[offsets[m]..]`.
    edges: [usize; MELS + 2],
    offsets: [usize; MELS + 1],
    weights: Vec<f32>,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut window = [0f32; WINDOW];
        for (n, w) in window.iter_mut().enumerate() {
            // periodic Hann
            *w = (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / WINDOW as f64).cos()) as f32;
        }
        let mel = |hz: f64| 2595.0 * (1.0 + hz / 700.0).log10();
        let hz = |mel: f64| 700.0 * (10f64.powf(mel / 2595.0) - 1.0);
        let (low, high) = (mel(72.0), mel(7600.0));
        let mut edges = [0usize; MELS + 2];
        for (i, e) in edges.iter_mut().enumerate() {
            let f = hz(low + (high - low) * i as f64 / (MELS + 1) as f64);
            *e = ((FFT + 1) as f64 * f / 16_000.0).floor() as usize;
        }
        let mut offsets = [0usize; MELS + 1];
        let mut weights = Vec::new();
        for m in 0..MELS {
            offsets[m] = weights.len();
            let (a, b, c) = (edges[m], edges[m + 1], edges[m + 2]);
            for j in a..b {
                weights.push((j - a) as f32 / (b - a) as f32);
            }
            for j in b..c {
                weights.push((c - j) as f32 / (c - b) as f32);
            }
        }
        offsets[MELS] = weights.len();
        Tables {
            fft: realfft::RealFftPlanner::<f32>::new().plan_fft_forward(FFT),
            window,
            edges,
            offsets,
            weights,
        }
    })
}

/// Work buffers, one set per thread: a frame's scoring never waits on anything, so every call a
/// thread serves can use the same ones.
struct Scratch {
    input: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    fft: Vec<Complex<f32>>,
    network: [f32; NETWORK_SCRATCH],
}

thread_local! {
    static SCRATCH: RefCell<Option<Box<Scratch>>> = const { RefCell::new(None) };
}

impl Front {
    pub(crate) fn new() -> Self {
        Self {
            ring: [0.0; WINDOW],
            previous: 0.0,
            features: [0.0; MELS * CONTEXT],
            network: earshot::DefaultPredictor::new(),
        }
    }

    pub(crate) fn reset(&mut self) {
        *self = Self::new();
    }

    /// The speech score (0..=1) of the 16 ms that end with `frame` (256 samples at 16 kHz).
    pub(crate) fn score(&mut self, frame: &[i16; FRAME]) -> f32 {
        self.ring.copy_within(FRAME.., 0);
        for (slot, &s) in self.ring[WINDOW - FRAME..].iter_mut().zip(frame) {
            let x = f32::from(s);
            *slot = x - PRE_EMPHASIS * self.previous;
            self.previous = x;
        }
        let t = tables();
        SCRATCH.with(|cell| {
            let mut cell = cell.borrow_mut();
            let s = cell.get_or_insert_with(|| {
                Box::new(Scratch {
                    input: t.fft.make_input_vec(),
                    spectrum: t.fft.make_output_vec(),
                    fft: t.fft.make_scratch_vec(),
                    network: [0.0; NETWORK_SCRATCH],
                })
            });
            for ((x, &r), &w) in s.input.iter_mut().zip(&self.ring).zip(&t.window) {
                *x = r * w;
            }
            s.input[WINDOW..].fill(0.0);
            // Lengths are the plan's own, so this cannot fail.
            if t.fft
                .process_with_scratch(&mut s.input, &mut s.spectrum, &mut s.fft)
                .is_err()
            {
                return 0.0;
            }
            let power = &mut s.network[..BINS];
            for (p, c) in power.iter_mut().zip(&s.spectrum) {
                *p = c.norm_sqr() * POWER_SCALE;
            }
            self.features.copy_within(MELS.., 0);
            let current = &mut self.features[MELS * (CONTEXT - 1)..];
            for (m, f) in current.iter_mut().enumerate() {
                let weights = &t.weights[t.offsets[m]..t.offsets[m + 1]];
                let band: f32 = power[t.edges[m]..]
                    .iter()
                    .zip(weights)
                    .map(|(p, w)| p * w)
                    .sum();
                *f = (band + 1e-20).ln();
            }
            self.network.normalize(current);
            self.network.predict(&self.features, &mut s.network)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixture sentence, upsampled to 16 kHz, with quiet and a burst of noise around it.
    fn audio() -> Vec<i16> {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/audio-fixtures/name.wav"
        ))
        .expect("fixture");
        let (pcm, rate) = crate::backends::wav::decode(&bytes).expect("wav");
        let pcm = crate::engine::audio::resample(&pcm, rate, 16_000);
        let mut out = vec![0i16; 4_000];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..8_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.push(((state >> 48) as i16) / 16);
        }
        out.extend(pcm);
        out.extend(std::iter::repeat_n(0, 4_000));
        out
    }

    #[test]
    fn the_front_end_scores_as_earshot_does() {
        let audio = audio();
        let mut ours = Front::new();
        let mut theirs = earshot::Detector::default_boxed();
        let (mut frames, mut differ, mut worst) = (0, 0, 0f32);
        let mut speech = 0;
        for frame in audio.chunks_exact(FRAME) {
            let a = ours.score(frame.try_into().unwrap());
            let b = theirs.predict_i16(frame);
            frames += 1;
            worst = worst.max((a - b).abs());
            differ += usize::from((a >= 0.5) != (b >= 0.5));
            speech += usize::from(b >= 0.5);
        }
        eprintln!("{frames} frames, {speech} speech; scores differ by up to {worst}");
        assert!(speech > frames / 4, "{speech} of {frames} frames speech");
        assert!(worst < 0.01, "scores differ by up to {worst}");
        assert_eq!(differ, 0, "{differ} of {frames} decisions differ");
    }

    #[test]
    fn reset_forgets_the_stream() {
        let audio = audio();
        let mut front = Front::new();
        let first: Vec<f32> = audio
            .chunks_exact(FRAME)
            .take(40)
            .map(|f| front.score(f.try_into().unwrap()))
            .collect();
        front.reset();
        let again: Vec<f32> = audio
            .chunks_exact(FRAME)
            .take(40)
            .map(|f| front.score(f.try_into().unwrap()))
            .collect();
        assert_eq!(first, again);
    }
}
