//! Streaming sample-rate conversion by an integer factor, for carriers whose audio is not 8 kHz:
//! L16 at 16, 24 or 48 kHz down to the engine's 8 kHz ([`Decimator`], inbound) and the engine's
//! 8 kHz up to the carrier's rate ([`Interpolator`], outbound).
//!
//! Both are polyphase windowed-sinc FIR filters (Blackman window, [`TAPS_PER_PHASE`] taps per
//! phase, cut-off at 0.45 of the low rate: 3.6 kHz for 8 kHz, flat to about 3.1 kHz, more than
//! 70 dB down from 4.1 kHz). They take any number of samples per call and keep their history
//! across calls, so a stream cut into packets of any size converts exactly as in one piece. All
//! state is allocated in the constructor; `process` only appends to the caller's buffer.
//!
//! The existing [`super::Upsampler8To16`] serves the hot path's fixed 20 ms frames towards speech
//! recognition; these serve carrier audio, whose packets have no fixed size.

/// Largest conversion factor (48 kHz ⇄ 8 kHz).
pub const MAX_FACTOR: usize = 6;
/// Filter taps per polyphase branch: the filter has `factor * TAPS_PER_PHASE` taps.
pub const TAPS_PER_PHASE: usize = 48;

/// A low-pass windowed-sinc filter of `factor * TAPS_PER_PHASE` taps at the high rate, cut-off
/// 0.45 of the low rate's band, unity gain at DC.
fn design(factor: usize) -> Vec<f64> {
    let n = factor * TAPS_PER_PHASE;
    let fc = 0.45 / factor as f64; // cycles per sample at the high rate
    let centre = (n - 1) as f64 / 2.0;
    let mut h: Vec<f64> = (0..n)
        .map(|i| {
            let t = i as f64 - centre;
            let x = 2.0 * std::f64::consts::PI * fc * t;
            let sinc = if t == 0.0 { 1.0 } else { x.sin() / x };
            let phase = 2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64;
            let window = 0.42 - 0.5 * phase.cos() + 0.08 * (2.0 * phase).cos();
            sinc * window
        })
        .collect();
    let sum: f64 = h.iter().sum();
    for v in h.iter_mut() {
        *v /= sum;
    }
    h
}

#[inline]
fn to_i16(v: f32) -> i16 {
    v.round().clamp(i16::MIN as f32, i16::MAX as f32) as i16
}

/// `factor` clamped to `1..=MAX_FACTOR`.
fn clamp_factor(factor: usize) -> usize {
    factor.clamp(1, MAX_FACTOR)
}

/// Divides the sample rate by an integer factor: low-pass, then keep every `factor`-th sample.
#[derive(Clone)]
pub struct Decimator {
    factor: usize,
    taps: Box<[f32]>,
    /// The last `taps.len()` inputs, stored twice so that they are always one contiguous slice.
    hist: Box<[f32]>,
    pos: usize,
    /// Inputs since the last output.
    phase: usize,
}

impl std::fmt::Debug for Decimator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decimator")
            .field("factor", &self.factor)
            .finish_non_exhaustive()
    }
}

impl Decimator {
    /// A decimator by `factor` (clamped to `1..=MAX_FACTOR`; 1 passes samples through).
    pub fn new(factor: usize) -> Self {
        let factor = clamp_factor(factor);
        let taps: Box<[f32]> = design(factor).into_iter().map(|v| v as f32).collect();
        let n = taps.len();
        Self {
            factor,
            taps,
            hist: vec![0.0; 2 * n].into_boxed_slice(),
            pos: 0,
            phase: 0,
        }
    }

    /// The conversion factor.
    pub fn factor(&self) -> usize {
        self.factor
    }

    /// Delay of the filter, in output samples (rounded down).
    pub fn delay(&self) -> usize {
        (self.taps.len() - 1) / 2 / self.factor
    }

    /// Converts `input` and appends the output (one sample per `factor` inputs) to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        if self.factor == 1 {
            out.extend_from_slice(input);
            return;
        }
        let n = self.taps.len();
        for &x in input {
            let x = x as f32;
            self.hist[self.pos] = x;
            self.hist[self.pos + n] = x;
            self.pos = (self.pos + 1) % n;
            self.phase += 1;
            if self.phase == self.factor {
                self.phase = 0;
                // The window, oldest first; the filter is symmetric, so no reversal is needed.
                let window = &self.hist[self.pos..self.pos + n];
                let acc: f32 = window
                    .iter()
                    .zip(self.taps.iter())
                    .map(|(a, b)| a * b)
                    .sum();
                out.push(to_i16(acc));
            }
        }
    }

    /// Forgets the history (a new stream).
    pub fn reset(&mut self) {
        self.hist.fill(0.0);
        self.pos = 0;
        self.phase = 0;
    }
}

/// Multiplies the sample rate by an integer factor: `factor` outputs per input, interpolated by
/// the polyphase branches of one low-pass filter.
#[derive(Clone)]
pub struct Interpolator {
    factor: usize,
    /// Branch `p` occupies `[p * TAPS_PER_PHASE, (p + 1) * TAPS_PER_PHASE)`, ordered to match the
    /// history window (oldest input first), with the gain of `factor` folded in.
    branches: Box<[f32]>,
    hist: Box<[f32]>,
    pos: usize,
}

impl std::fmt::Debug for Interpolator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpolator")
            .field("factor", &self.factor)
            .finish_non_exhaustive()
    }
}

impl Interpolator {
    /// An interpolator by `factor` (clamped to `1..=MAX_FACTOR`; 1 passes samples through).
    pub fn new(factor: usize) -> Self {
        let factor = clamp_factor(factor);
        let h = design(factor);
        let k = TAPS_PER_PHASE;
        let mut branches = vec![0f32; factor * k];
        // y[n*L + p] = L * sum_j h[p + j*L] * x[n - j]; the window holds x[n-K+1] .. x[n].
        for p in 0..factor {
            for j in 0..k {
                branches[p * k + (k - 1 - j)] = (h[p + j * factor] * factor as f64) as f32;
            }
        }
        Self {
            factor,
            branches: branches.into_boxed_slice(),
            hist: vec![0.0; 2 * k].into_boxed_slice(),
            pos: 0,
        }
    }

    /// The conversion factor.
    pub fn factor(&self) -> usize {
        self.factor
    }

    /// Delay of the filter, in output samples (rounded down).
    pub fn delay(&self) -> usize {
        (self.factor * TAPS_PER_PHASE - 1) / 2
    }

    /// Converts `input` and appends `factor` output samples per input sample to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        if self.factor == 1 {
            out.extend_from_slice(input);
            return;
        }
        let k = TAPS_PER_PHASE;
        for &x in input {
            let x = x as f32;
            self.hist[self.pos] = x;
            self.hist[self.pos + k] = x;
            self.pos = (self.pos + 1) % k;
            let window = &self.hist[self.pos..self.pos + k];
            for branch in self.branches.chunks_exact(k) {
                let acc: f32 = window.iter().zip(branch).map(|(a, b)| a * b).sum();
                out.push(to_i16(acc));
            }
        }
    }

    /// Forgets the history (a new stream, or after a clear).
    pub fn reset(&mut self) {
        self.hist.fill(0.0);
        self.pos = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f64, amplitude: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f64 / rate as f64;
                (amplitude * (2.0 * std::f64::consts::PI * hz * t).sin()).round() as i16
            })
            .collect()
    }

    /// Amplitude of the `hz` component of `x` (Goertzel / single-bin DFT).
    fn amplitude_at(x: &[i16], rate: u32, hz: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * hz / rate as f64;
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &s) in x.iter().enumerate() {
            re += s as f64 * (w * i as f64).cos();
            im -= s as f64 * (w * i as f64).sin();
        }
        2.0 * (re * re + im * im).sqrt() / x.len() as f64
    }

    fn db(ratio: f64) -> f64 {
        20.0 * ratio.max(1e-12).log10()
    }

    #[test]
    fn decimation_keeps_the_voice_band_and_removes_what_would_alias() {
        for (rate, factor) in [(16000u32, 2usize), (24000, 3), (48000, 6)] {
            let mut d = Decimator::new(factor);
            assert_eq!(d.factor(), factor);
            let n = rate as usize; // one second
            let skip = 400; // settle
            for (hz, min_db, max_db) in [
                (300.0, -0.1, 0.1),
                (1000.0, -0.1, 0.1),
                (3000.0, -0.5, 0.1),
                (4300.0, f64::NEG_INFINITY, -60.0),
                (6000.0, f64::NEG_INFINITY, -70.0),
            ] {
                if hz >= rate as f64 / 2.0 {
                    continue;
                }
                d.reset();
                let mut out = Vec::new();
                d.process(&tone(rate, hz, 10000.0, n), &mut out);
                assert_eq!(out.len(), n / factor);
                // An aliased tone lands at |hz - k*8000|: measure the power there.
                let alias = if hz > 4000.0 { 8000.0 - hz } else { hz };
                let gain = db(amplitude_at(&out[skip..], 8000, alias) / 10000.0);
                assert!(
                    (min_db..=max_db).contains(&gain),
                    "{rate} Hz, tone {hz} Hz: {gain:.2} dB"
                );
            }
        }
    }

    #[test]
    fn interpolation_keeps_the_tone_and_removes_its_images() {
        for factor in [2usize, 3, 6] {
            let rate = 8000 * factor as u32;
            let mut up = Interpolator::new(factor);
            assert_eq!(up.factor(), factor);
            for hz in [300.0, 1000.0, 3000.0] {
                up.reset();
                let mut out = Vec::new();
                up.process(&tone(8000, hz, 10000.0, 8000), &mut out);
                assert_eq!(out.len(), 8000 * factor);
                let settled = &out[1000..];
                let gain = db(amplitude_at(settled, rate, hz) / 10000.0);
                assert!(gain.abs() < 0.5, "x{factor}, {hz} Hz: {gain:.2} dB");
                // The first image of the zero-stuffed signal sits at 8000 - hz.
                let image = db(amplitude_at(settled, rate, 8000.0 - hz) / 10000.0);
                let limit = if hz > 3500.0 { -20.0 } else { -60.0 };
                assert!(image < limit, "x{factor}, {hz} Hz: image {image:.1} dB");
            }
        }
    }

    #[test]
    fn dc_passes_at_unity_gain() {
        let mut d = Decimator::new(2);
        let mut u = Interpolator::new(3);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        d.process(&[1000; 2000], &mut a);
        u.process(&[-1000; 1000], &mut b);
        assert!(
            a[500..].iter().all(|&s| (s - 1000).abs() <= 1),
            "{:?}",
            &a[500..510]
        );
        assert!(
            b[500..].iter().all(|&s| (s + 1000).abs() <= 1),
            "{:?}",
            &b[500..510]
        );
        // Full scale saturates instead of wrapping.
        let mut c = Vec::new();
        u.reset();
        let square: Vec<i16> = (0..400)
            .map(|i| if i % 8 < 4 { i16::MAX } else { i16::MIN })
            .collect();
        u.process(&square, &mut c);
        assert_eq!(c.len(), 1200);
    }

    #[test]
    fn packet_boundaries_do_not_change_the_output() {
        let input = tone(16000, 440.0, 12000.0, 4000);
        let mut whole = Vec::new();
        Decimator::new(2).process(&input, &mut whole);
        let mut pieces = Vec::new();
        let mut d = Decimator::new(2);
        let mut rest: &[i16] = &input;
        for size in [1usize, 7, 160, 3, 320, 999].iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (a, b) = rest.split_at((*size).min(rest.len()));
            d.process(a, &mut pieces);
            rest = b;
        }
        assert_eq!(whole, pieces);

        let input = tone(8000, 440.0, 12000.0, 2000);
        let mut whole = Vec::new();
        Interpolator::new(2).process(&input, &mut whole);
        let mut pieces = Vec::new();
        let mut u = Interpolator::new(2);
        for chunk in input.chunks(37) {
            u.process(chunk, &mut pieces);
        }
        assert_eq!(whole, pieces);
    }

    #[test]
    fn down_then_up_returns_the_voice_band() {
        let input = tone(16000, 1000.0, 8000.0, 16000);
        let mut low = Vec::new();
        Decimator::new(2).process(&input, &mut low);
        let mut back = Vec::new();
        Interpolator::new(2).process(&low, &mut back);
        assert_eq!(back.len(), input.len());
        let gain = db(amplitude_at(&back[2000..], 16000, 1000.0) / 8000.0);
        assert!(gain.abs() < 0.5, "{gain:.2} dB");
    }

    #[test]
    fn factors_out_of_range_are_clamped_and_one_passes_through() {
        assert_eq!(Decimator::new(0).factor(), 1);
        assert_eq!(Interpolator::new(99).factor(), MAX_FACTOR);
        let mut out = Vec::new();
        Decimator::new(1).process(&[1, 2, 3], &mut out);
        Interpolator::new(1).process(&[4], &mut out);
        assert_eq!(out, [1, 2, 3, 4]);
        assert!(Decimator::new(2).delay() > 0 && Interpolator::new(2).delay() > 0);
    }
}
