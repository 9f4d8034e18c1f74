//! Whisper-style log-mel features of 16 kHz audio: 25 ms Hann windows every 10 ms (centred,
//! reflect-padded), power spectrum, 80 Slaney-normalised mel filters up to 8 kHz, `log10`, floored
//! at 8 below the maximum, scaled to about [-1, 1]. What Whisper's encoder and Smart Turn (a Whisper
//! encoder with a classifier) were trained on.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

pub const SAMPLE_RATE: usize = 16_000;
pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
pub const N_MELS: usize = 80;
const BINS: usize = N_FFT / 2 + 1;

/// One triangular filter: its first bin and weights.
struct Filter {
    first: usize,
    weights: Vec<f32>,
}

/// A reusable feature extractor (the FFT plan, window and filters computed once).
pub struct LogMel {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    filters: Vec<Filter>,
    frame: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    power: Vec<f32>,
}

impl Default for LogMel {
    fn default() -> Self {
        Self::new()
    }
}

fn hz_to_mel(hz: f64) -> f64 {
    // Slaney: linear below 1 kHz, logarithmic above
    if hz < 1000.0 {
        3.0 * hz / 200.0
    } else {
        15.0 + (hz / 1000.0).ln() * 27.0 / 6.4f64.ln()
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    if mel < 15.0 {
        200.0 * mel / 3.0
    } else {
        1000.0 * ((mel - 15.0) * 6.4f64.ln() / 27.0).exp()
    }
}

fn filterbank() -> Vec<Filter> {
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE as f64 / 2.0));
    let edges: Vec<f64> = (0..N_MELS + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (N_MELS + 1) as f64))
        .collect();
    let bin_hz = |k: usize| k as f64 * (SAMPLE_RATE / 2) as f64 / (BINS - 1) as f64;
    (0..N_MELS)
        .map(|m| {
            let (left, centre, right) = (edges[m], edges[m + 1], edges[m + 2]);
            let norm = 2.0 / (right - left);
            let weights: Vec<(usize, f32)> = (0..BINS)
                .filter_map(|k| {
                    let f = bin_hz(k);
                    let w = ((f - left) / (centre - left))
                        .min((right - f) / (right - centre))
                        .max(0.0);
                    (w > 0.0).then_some((k, (w * norm) as f32))
                })
                .collect();
            let first = weights.first().map_or(0, |w| w.0);
            let last = weights.last().map_or(0, |w| w.0);
            let mut dense = vec![0.0; last + 1 - first];
            for (k, w) in weights {
                dense[k - first] = w;
            }
            Filter {
                first,
                weights: dense,
            }
        })
        .collect()
}

impl LogMel {
    pub fn new() -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        // periodic Hann
        let window = (0..N_FFT)
            .map(|i| {
                (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64).cos()) as f32
            })
            .collect();
        Self {
            spectrum: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            frame: fft.make_input_vec(),
            fft,
            window,
            filters: filterbank(),
            power: vec![0.0; BINS],
        }
    }

    /// Features of `audio` (16 kHz, about [-1, 1]): `N_MELS` rows of `frames` values, row-major,
    /// where `frames` is `audio.len() / HOP` (the last, half-empty frame is dropped, as Whisper
    /// does). Returns `(features, frames)`.
    pub fn compute(&mut self, audio: &[f32]) -> (Vec<f32>, usize) {
        let frames = audio.len() / HOP;
        let mut out = vec![0.0f32; N_MELS * frames];
        let pad = N_FFT / 2;
        let n = audio.len() as isize;
        // reflect padding: index -1 is sample 1, index n is sample n - 2
        let at = |i: isize| -> f32 {
            if n <= 1 {
                return audio.first().copied().unwrap_or(0.0);
            }
            let mut i = i;
            if i < 0 {
                i = -i;
            }
            if i >= n {
                i = 2 * (n - 1) - i;
            }
            audio[i.clamp(0, n - 1) as usize]
        };
        for t in 0..frames {
            let start = (t * HOP) as isize - pad as isize;
            for (j, x) in self.frame.iter_mut().enumerate() {
                *x = at(start + j as isize) * self.window[j];
            }
            self.fft
                .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch)
                .expect("buffers are the planned sizes");
            for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
                *p = c.norm_sqr();
            }
            for (m, f) in self.filters.iter().enumerate() {
                let e: f32 = f
                    .weights
                    .iter()
                    .zip(&self.power[f.first..])
                    .map(|(w, p)| w * p)
                    .sum();
                out[m * frames + t] = e.max(1e-10).log10();
            }
        }
        let max = out.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for v in &mut out {
            *v = (v.max(max - 8.0) + 4.0) / 4.0;
        }
        (out, frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_cover_the_band_and_are_area_normalised() {
        let f = filterbank();
        assert_eq!(f.len(), N_MELS);
        // low filters are narrow (a bin or two), high ones wide; none empty
        assert!(f.iter().all(|f| !f.weights.is_empty()));
        assert!(f[0].first <= 1);
        assert!(f[N_MELS - 1].first + f[N_MELS - 1].weights.len() >= BINS - 2);
        assert!(f[N_MELS - 1].weights.len() > f[0].weights.len() * 5);
    }

    #[test]
    fn a_tone_lights_up_the_mel_bin_of_its_frequency() {
        let audio: Vec<f32> = (0..SAMPLE_RATE)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16000.0).sin())
            .collect();
        let (feat, frames) = LogMel::new().compute(&audio);
        assert_eq!(frames, 100);
        let mid = frames / 2;
        let loudest = (0..N_MELS)
            .max_by(|&a, &b| feat[a * frames + mid].total_cmp(&feat[b * frames + mid]))
            .unwrap();
        // 1 kHz is mel 15 on the Slaney scale: filter ~ 15 / (mel(8 kHz) / 81)
        let expected = (15.0 / (hz_to_mel(8000.0) / 81.0)).round() as usize - 1;
        assert!(loudest.abs_diff(expected) <= 1, "{loudest} vs {expected}");
        // the scale: the maximum maps to (log10(max) + 4) / 4, the floor 2 below it
        let max = feat.iter().copied().fold(f32::MIN, f32::max);
        let min = feat.iter().copied().fold(f32::MAX, f32::min);
        assert!((max - min - 2.0).abs() < 1e-4, "{max} {min}");
    }

    #[test]
    fn silence_and_tiny_inputs_do_not_panic() {
        let mut mel = LogMel::new();
        assert_eq!(mel.compute(&[]).1, 0);
        assert_eq!(mel.compute(&[0.1; 100]).1, 0);
        let (f, frames) = mel.compute(&[0.0; 1600]);
        assert_eq!(frames, 10);
        assert!(f.iter().all(|v| v.is_finite()));
    }
}
