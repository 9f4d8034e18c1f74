//! Voice activity detection on 20 ms, 16 kHz frames, behind a narrow trait.
//!
//! * [`EarshotVad`]: the earshot neural detector (pure Rust, `Send`, 16 ms frames of 256 samples,
//!   its features computed by `vad_front`;
//!   this wrapper re-frames 320-sample frames into 256-sample ones). The default: see
//!   [`super::InboundPipeline::with_default_vad`] and the measurements in `tests` below.
//! * [`EnergyVad`]: a plain level threshold in dBFS, for tests and as a fallback.

use super::SAMPLES_16K;
use super::vad_front::Front;

/// Decides, frame by frame, whether the caller is talking.
pub trait VoiceDetector: Send {
    /// One 20 ms frame at 16 kHz; `true` if it contains speech.
    fn is_speech(&mut self, frame16k: &[i16; SAMPLES_16K]) -> bool;
    /// Forgets all history (new call, or after a gap).
    fn reset(&mut self);
}

/// Level of a frame in dBFS (RMS relative to a full-scale square wave); [`MIN_DBFS`] for silence.
pub fn level_dbfs(frame: &[i16]) -> f32 {
    if frame.is_empty() {
        return MIN_DBFS;
    }
    let sum: i64 = frame.iter().map(|&s| (s as i64) * (s as i64)).sum();
    let mean = sum as f64 / frame.len() as f64;
    if mean <= 0.0 {
        return MIN_DBFS;
    }
    let db = 10.0 * (mean / (32768.0 * 32768.0)).log10();
    (db as f32).max(MIN_DBFS)
}

/// Floor of [`level_dbfs`].
pub const MIN_DBFS: f32 = -100.0;

/// Speech if the frame's level is at least `threshold_dbfs`, with a short hangover so that a
/// word's quiet tail is not cut off.
#[derive(Debug, Clone)]
pub struct EnergyVad {
    threshold_dbfs: f32,
    hangover_frames: u32,
    remaining: u32,
}

impl EnergyVad {
    /// Default threshold: well above a -40 dBFS noise floor, below normal speech.
    pub const DEFAULT_THRESHOLD_DBFS: f32 = -35.0;

    /// Threshold in dBFS, no hangover.
    pub fn new(threshold_dbfs: f32) -> Self {
        Self::with_hangover(threshold_dbfs, 0)
    }

    /// Threshold in dBFS; after a loud frame, the next `hangover_frames` frames also count as
    /// speech.
    pub fn with_hangover(threshold_dbfs: f32, hangover_frames: u32) -> Self {
        Self {
            threshold_dbfs,
            hangover_frames,
            remaining: 0,
        }
    }

    /// The threshold in dBFS.
    pub fn threshold_dbfs(&self) -> f32 {
        self.threshold_dbfs
    }
}

impl Default for EnergyVad {
    fn default() -> Self {
        Self::new(Self::DEFAULT_THRESHOLD_DBFS)
    }
}

impl VoiceDetector for EnergyVad {
    fn is_speech(&mut self, frame16k: &[i16; SAMPLES_16K]) -> bool {
        if level_dbfs(frame16k) >= self.threshold_dbfs {
            self.remaining = self.hangover_frames;
            true
        } else if self.remaining > 0 {
            self.remaining -= 1;
            true
        } else {
            false
        }
    }

    fn reset(&mut self) {
        self.remaining = 0;
    }
}

/// earshot's frame: 16 ms at 16 kHz.
const EARSHOT_FRAME: usize = super::vad_front::FRAME;

/// The earshot neural VAD, adapted to phone audio.
///
/// Framing: each 20 ms frame feeds one or two 16 ms earshot frames; the frame is speech if the
/// best earshot score produced during it reaches the threshold.
///
/// Phone band: upsampled 8 kHz audio has an empty 4-8 kHz band, which earshot (trained on
/// wideband audio) does not expect: on it, white or pink noise at -30 dBFS was called speech in
/// 100 % of frames. So by default the detector mirrors the 0-4 kHz band into the empty one
/// before scoring, feeding earshot `x[n] + a·(-1)^n·(x[n] - x[n-1])/2` with `a` =
/// [`EarshotVad::PHONE_FOLDING`]: a cheap bandwidth extension (the high-pass makes the mirrored
/// image fade towards 8 kHz, as natural speech does). With it, the same noise scored 0 %. The
/// frame passed in is not modified. For genuinely wideband input use
/// [`EarshotVad::wideband`].
pub struct EarshotVad {
    detector: Box<Front>,
    pending: [i16; EARSHOT_FRAME],
    filled: usize,
    threshold: f32,
    last_score: f32,
    /// Band-folding gain (0 = off).
    fold: f32,
    /// Previous input sample, for the high-pass of the folded part.
    prev: f32,
}

impl EarshotVad {
    /// earshot's recommended threshold; also the best measured on the fixtures.
    pub const DEFAULT_THRESHOLD: f32 = 0.5;
    /// Gain of the mirrored band for phone audio (measured: 0.2 and 0.5 alike, 1.0 and up let
    /// noise through).
    pub const PHONE_FOLDING: f32 = 0.5;

    /// A detector for upsampled phone audio, with [`Self::DEFAULT_THRESHOLD`].
    pub fn new() -> Self {
        Self::with_threshold(Self::DEFAULT_THRESHOLD)
    }

    /// A detector for upsampled phone audio with a custom score threshold in `[0, 1]`.
    pub fn with_threshold(threshold: f32) -> Self {
        Self {
            detector: Box::new(Front::new()),
            pending: [0; EARSHOT_FRAME],
            filled: 0,
            threshold,
            last_score: 0.0,
            fold: Self::PHONE_FOLDING,
            prev: 0.0,
        }
    }

    /// A detector for genuinely wideband 16 kHz input: no band folding.
    pub fn wideband(threshold: f32) -> Self {
        Self::with_threshold(threshold).with_folding(0.0)
    }

    /// Sets the band-folding gain (0 disables it); see the type's documentation.
    pub fn with_folding(mut self, gain: f32) -> Self {
        self.fold = if gain.is_finite() { gain } else { 0.0 };
        self
    }

    /// The highest earshot score seen during the last frame passed to `is_speech` (0..=1).
    pub fn last_score(&self) -> f32 {
        self.last_score
    }

    /// Feeds one 20 ms frame and returns the best score produced during it (or the previous
    /// score if no earshot frame completed, which cannot happen as 320 > 256).
    pub fn score(&mut self, frame16k: &[i16; SAMPLES_16K]) -> f32 {
        let mut best: Option<f32> = None;
        let mut rest: &[i16] = frame16k;
        while !rest.is_empty() {
            let take = (EARSHOT_FRAME - self.filled).min(rest.len());
            let dst = &mut self.pending[self.filled..self.filled + take];
            if self.fold == 0.0 {
                dst.copy_from_slice(&rest[..take]);
            } else {
                // Frame and chunk lengths are even, so (-1)^n follows the index parity.
                let start = self.filled;
                for (i, (d, &s)) in dst.iter_mut().zip(&rest[..take]).enumerate() {
                    let x = s as f32;
                    let hp = (x - self.prev) * 0.5;
                    self.prev = x;
                    let mirrored = if (start + i).is_multiple_of(2) {
                        hp
                    } else {
                        -hp
                    };
                    // `as` saturates.
                    *d = (x + self.fold * mirrored) as i16;
                }
            }
            self.filled += take;
            rest = &rest[take..];
            if self.filled == EARSHOT_FRAME {
                self.filled = 0;
                let s = self.detector.score(&self.pending);
                // treat NaN/negatives as 0
                let s = if s.is_finite() {
                    s.clamp(0.0, 1.0)
                } else {
                    0.0
                };
                best = Some(best.map_or(s, |b: f32| b.max(s)));
            }
        }
        if let Some(b) = best {
            self.last_score = b;
        }
        self.last_score
    }
}

impl Default for EarshotVad {
    fn default() -> Self {
        Self::new()
    }
}

impl VoiceDetector for EarshotVad {
    fn is_speech(&mut self, frame16k: &[i16; SAMPLES_16K]) -> bool {
        self.score(frame16k) >= self.threshold
    }

    fn reset(&mut self) {
        self.detector.reset();
        self.filled = 0;
        self.last_score = 0.0;
        self.prev = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_of_known_signals() {
        assert_eq!(level_dbfs(&[0; 320]), MIN_DBFS);
        assert_eq!(level_dbfs(&[]), MIN_DBFS);
        assert!((level_dbfs(&[i16::MIN; 320]) - 0.0).abs() < 0.01);
        let half = [16384i16; 320];
        assert!((level_dbfs(&half) + 6.02).abs() < 0.01);
    }

    #[test]
    fn energy_vad_threshold_and_hangover() {
        let loud = [3000i16; SAMPLES_16K]; // about -20.8 dBFS
        let quiet = [100i16; SAMPLES_16K]; // about -50 dBFS
        let mut v = EnergyVad::with_hangover(-35.0, 2);
        assert!(v.is_speech(&loud));
        assert!(v.is_speech(&quiet));
        assert!(v.is_speech(&quiet));
        assert!(!v.is_speech(&quiet));
        assert!(v.is_speech(&loud));
        v.reset();
        assert!(!v.is_speech(&quiet));
    }

    #[test]
    fn earshot_vad_reframes_without_panicking() {
        let mut v = EarshotVad::new();
        let frame = [0i16; SAMPLES_16K];
        for _ in 0..20 {
            assert!(!v.is_speech(&frame));
        }
        assert!(v.last_score() < 0.5);
        let full: [i16; SAMPLES_16K] =
            std::array::from_fn(|i| if i % 2 == 0 { i16::MAX } else { i16::MIN });
        for _ in 0..20 {
            let s = v.score(&full);
            assert!((0.0..=1.0).contains(&s));
        }
        v.reset();
        assert_eq!(v.last_score(), 0.0);
    }

    #[test]
    fn detectors_are_send() {
        fn is_send<T: Send>() {}
        is_send::<EarshotVad>();
        is_send::<EnergyVad>();
        is_send::<Box<dyn VoiceDetector>>();
    }
}
