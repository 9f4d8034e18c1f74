//! End of turn from what the caller said and how: Smart Turn v3.2 (`smart-turn-v3.2-cpu.onnx`,
//! BSD-2-Clause, from pipecat's wheel), a Whisper-tiny encoder with a classifier, on the last 8 s of
//! the caller's audio at 16 kHz. It says whether the caller has finished their turn (a short
//! "Yes." is complete at once; "my number is five five five, two..." is not), so that the silence
//! windows become the fallback rather than the rule.
//!
//! Measured on this 2-core machine (release build, one thread): see [`SmartTurn::complete`] and
//! the README's turn-taking section.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::value::Tensor;

use super::BackendError;
use super::onnx::SessionPool;
use super::whisper::mel::MelSpectrogram;

/// The model file inside a models directory.
pub const MODEL_FILE: &str = "smart-turn-v3.2-cpu.onnx";
const SAMPLE_RATE: usize = 16_000;
const N_MELS: usize = 80;
/// Seconds of audio the model looks at (the last ones; shorter turns are padded in front).
pub const WINDOW_SECS: usize = 8;
const WINDOW: usize = WINDOW_SECS * SAMPLE_RATE;
/// At or above this probability the turn is complete.
pub const COMPLETE_AT: f32 = 0.5;

/// The model's path in `models_dir`.
pub fn model_path(models_dir: &Path) -> PathBuf {
    models_dir.join(MODEL_FILE)
}

/// Whether the model and the runtime are installed in `models_dir`.
pub fn installed(models_dir: &Path) -> bool {
    model_path(models_dir).is_file() && super::onnx::runtime_library(models_dir).is_file()
}

/// The end-of-turn model, a few sessions deep.
pub struct SmartTurn {
    pool: Arc<SessionPool>,
    /// The features' FFT plan and filterbank, made once.
    mel: Arc<MelSpectrogram>,
}

impl SmartTurn {
    /// Load the model `sessions` times (concurrent checks).
    pub fn load(models_dir: &Path, sessions: usize) -> Result<Self, BackendError> {
        Ok(Self {
            pool: Arc::new(SessionPool::load(
                "smart turn",
                models_dir,
                &model_path(models_dir),
                sessions,
            )?),
            mel: Arc::new(MelSpectrogram::new(N_MELS)),
        })
    }

    /// The probability that the turn in `pcm16k` (16 kHz, the caller's utterance so far) is
    /// complete, on a blocking thread (the features too: never on a connection thread).
    pub async fn complete(&self, pcm16k: Vec<i16>) -> Result<f32, BackendError> {
        let mel = self.mel.clone();
        self.pool
            .run(move |s| infer(s, features(&mel, &pcm16k)))
            .await
    }

    /// As [`Self::complete`], on this thread.
    pub fn complete_here(&self, pcm16k: &[i16]) -> Result<f32, BackendError> {
        self.pool
            .run_here(|s| infer(s, features(&self.mel, pcm16k)))
    }
}

fn infer(session: &mut ort::session::Session, features: Vec<f32>) -> Result<f32, ort::Error> {
    let frames = features.len() / N_MELS;
    let input = Tensor::from_array(([1usize, N_MELS, frames], features))?;
    let outputs = session.run(ort::inputs!["input_features" => input])?;
    let (_, p) = outputs[0].try_extract_tensor::<f32>()?;
    Ok(p.first().copied().unwrap_or(0.0))
}

/// The model's input: the last 8 s (zeros in front when shorter), normalised to zero mean and
/// unit variance, as log-mel features (80 × 800).
fn features(mel: &MelSpectrogram, pcm16k: &[i16]) -> Vec<f32> {
    let tail = &pcm16k[pcm16k.len().saturating_sub(WINDOW)..];
    let mut audio = vec![0.0f32; WINDOW];
    for (a, &s) in audio[WINDOW - tail.len()..].iter_mut().zip(tail) {
        *a = s as f32 / 32768.0;
    }
    let mean = audio.iter().map(|&x| x as f64).sum::<f64>() / WINDOW as f64;
    let var = audio
        .iter()
        .map(|&x| (x as f64 - mean).powi(2))
        .sum::<f64>()
        / WINDOW as f64;
    let scale = 1.0 / (var + 1e-7).sqrt();
    for a in &mut audio {
        *a = ((*a as f64 - mean) * scale) as f32;
    }
    mel.compute(&audio, WINDOW / 160)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_eight_seconds_of_eighty_mels() {
        let f = features(&MelSpectrogram::new(N_MELS), &[1000; 16_000]);
        assert_eq!(f.len(), N_MELS * 800);
        let f = features(&MelSpectrogram::new(N_MELS), &vec![1000; 20 * 16_000]);
        assert_eq!(f.len(), N_MELS * 800);
        assert!(
            features(&MelSpectrogram::new(N_MELS), &[])
                .iter()
                .all(|v| v.is_finite())
        );
    }

    fn speak(text: &str) -> Vec<i16> {
        let speech = crate::backends::FliteTts::new()
            .unwrap()
            .synthesize_blocking(text, "slt")
            .unwrap();
        // through the telephone band, as a caller's audio arrives
        let phone = crate::engine::audio::resample::resample(&speech.pcm, speech.sample_rate, 8000);
        crate::engine::audio::resample::resample(&phone, 8000, 16_000)
    }

    #[test]
    fn the_model_tells_a_finished_answer_from_one_cut_off() {
        let dir = crate::testing::installed_models_dir();
        let model = SmartTurn::load(&dir, 1).unwrap();
        let mut done = Vec::new();
        let mut cut = Vec::new();
        for (finished, unfinished) in [
            ("Yes.", "My phone number is five five five, and"),
            ("I live in Springfield.", "I live in, um"),
            ("My name is Maria Lopez.", "My name is, uh, it is"),
        ] {
            let mut a = speak(finished);
            a.extend(std::iter::repeat_n(0, 3200));
            done.push(model.complete_here(&a).unwrap());
            let mut b = speak(unfinished);
            b.extend(std::iter::repeat_n(0, 3200));
            cut.push(model.complete_here(&b).unwrap());
        }
        eprintln!("complete: {done:?}, cut off: {cut:?}");
        assert!(
            done.iter().filter(|&&p| p >= COMPLETE_AT).count() >= 2,
            "{done:?}"
        );
        assert!(
            cut.iter().filter(|&&p| p < COMPLETE_AT).count() >= 2,
            "{cut:?}"
        );
    }
}
