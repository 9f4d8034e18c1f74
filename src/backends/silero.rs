//! Silero VAD v5 (`silero_vad.onnx`, MIT, from pipecat's wheel) as a [`VoiceDetector`], run at
//! 8 kHz: the frames it is given are phone audio upsampled to 16 kHz, with nothing above 4 kHz,
//! so every other sample is the 8 kHz signal exactly.
//!
//! It is measured against earshot in `engine::audio::vad_eval` (precision, recall, noise, and
//! cost per frame); the call path keeps earshot, which measured as well on phone audio at a
//! fraction of the cost (the README's turn-taking section has the figures and the command).

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::TensorRef;

use super::BackendError;
use crate::engine::audio::{SAMPLES_16K, VoiceDetector};

/// The model file inside a models directory.
pub const MODEL_FILE: &str = "silero_vad.onnx";
const RATE: i64 = 8000;
/// Samples per inference at 8 kHz (32 ms) ...
const WINDOW: usize = 256;
/// ... after as many of the previous window's last samples.
const CONTEXT: usize = 32;
/// The recurrent state: 2 × 1 × 128.
const STATE: usize = 2 * 128;

/// The model's path in `models_dir`.
pub fn model_path(models_dir: &Path) -> PathBuf {
    models_dir.join(MODEL_FILE)
}

/// Silero VAD v5 over one stream of audio (its state is the stream's).
pub struct SileroVad {
    session: Session,
    threshold: f32,
    /// Context then window: the model's input.
    input: [f32; CONTEXT + WINDOW],
    /// Samples of the window filled so far.
    filled: usize,
    state: [f32; STATE],
    last_score: f32,
}

impl SileroVad {
    /// Silero's recommended threshold.
    pub const DEFAULT_THRESHOLD: f32 = 0.5;

    /// Load the model from `models_dir` (and the runtime, the first time).
    pub fn load(models_dir: &Path, threshold: f32) -> Result<Self, BackendError> {
        let session = super::onnx::load_session("silero vad", models_dir, &model_path(models_dir))?;
        Ok(Self {
            session,
            threshold,
            input: [0.0; CONTEXT + WINDOW],
            filled: 0,
            state: [0.0; STATE],
            last_score: 0.0,
        })
    }

    /// Feed one 20 ms frame (16 kHz); the best speech probability of the windows it completed,
    /// or the previous one if it completed none.
    pub fn score(&mut self, frame16k: &[i16; SAMPLES_16K]) -> Result<f32, BackendError> {
        let mut best: Option<f32> = None;
        for &s in frame16k.iter().step_by(2) {
            self.input[CONTEXT + self.filled] = f32::from(s) / 32768.0;
            self.filled += 1;
            if self.filled == WINDOW {
                self.filled = 0;
                let p = self.infer()?;
                best = Some(best.map_or(p, |b: f32| b.max(p)));
                // this window's tail is the next one's context
                self.input.copy_within(WINDOW.., 0);
            }
        }
        if let Some(b) = best {
            self.last_score = b;
        }
        Ok(self.last_score)
    }

    fn infer(&mut self) -> Result<f32, BackendError> {
        // the input and the state are lent to the run as they are: nothing is copied per window
        let Self {
            session,
            input,
            state,
            ..
        } = self;
        let mut run = || -> Result<f32, ort::Error> {
            let outputs = session.run(ort::inputs![
                "input" => TensorRef::from_array_view(([1usize, CONTEXT + WINDOW], &input[..]))?,
                "state" => TensorRef::from_array_view(([2usize, 1, 128], &state[..]))?,
                "sr" => TensorRef::from_array_view(([1usize], &[RATE][..]))?,
            ])?;
            let (_, next) = outputs["stateN"].try_extract_tensor::<f32>()?;
            if next.len() == STATE {
                state.copy_from_slice(next);
            }
            let (_, p) = outputs["output"].try_extract_tensor::<f32>()?;
            Ok(p.first().copied().unwrap_or(0.0))
        };
        let p = run().map_err(|e| BackendError::Failed(format!("silero vad: {e}")))?;
        Ok(if p.is_finite() {
            p.clamp(0.0, 1.0)
        } else {
            0.0
        })
    }
}

impl VoiceDetector for SileroVad {
    fn is_speech(&mut self, frame16k: &[i16; SAMPLES_16K]) -> bool {
        // a failed run says nothing new: keep the last decision
        let p = self.score(frame16k).unwrap_or(self.last_score);
        p >= self.threshold
    }

    fn reset(&mut self) {
        self.input = [0.0; CONTEXT + WINDOW];
        self.filled = 0;
        self.state.fill(0.0);
        self.last_score = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hears_speech_and_not_silence() {
        let models = crate::testing::installed_models_dir();
        let mut vad = SileroVad::load(&models, SileroVad::DEFAULT_THRESHOLD).unwrap();
        let silence = [0i16; SAMPLES_16K];
        for _ in 0..25 {
            assert!(!vad.is_speech(&silence));
        }
        // a fixture sentence, upsampled as the call path does
        let speech = include_bytes!("../../audio-fixtures/vad/speech_slt_8k.ulaw");
        let mut up = crate::engine::audio::Upsampler8To16::new();
        let mut pcm8 = [0i16; 160];
        let mut pcm16 = [0i16; SAMPLES_16K];
        let mut speech_frames = 0;
        for chunk in speech.chunks_exact(160).take(150) {
            crate::engine::audio::g711::decode_into(chunk, &mut pcm8);
            up.process(&pcm8, &mut pcm16);
            speech_frames += usize::from(vad.is_speech(&pcm16));
        }
        assert!(speech_frames > 30, "{speech_frames} of 150 frames");
        vad.reset();
        vad.score(&silence).unwrap();
        assert!(
            vad.score(&silence).unwrap() < 0.1,
            "after a reset, silence is silence"
        );
    }
}
