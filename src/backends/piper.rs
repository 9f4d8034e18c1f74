//! Offline neural speech: a Piper voice (VITS, ONNX; `en_US-joe-medium`, 22.05 kHz, MIT) run by
//! ONNX Runtime, its phonemes from espeak-ng.
//!
//! espeak-ng is GPL-3.0, so it runs as a separate process (`espeak-ng -q --ipa`), never linked.
//! The text is cut into sentences, and sentences into clauses at their punctuation; each clause is
//! phonemised on its own and its punctuation put back as the voice's own symbol (Piper's voices
//! were trained with it: a comma is a short pause, a question mark a rising end). Each sentence is
//! one inference; the audio is returned at the voice's rate and resampled to 8 kHz by the
//! prompt layer like any other voice.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use ort::value::Tensor;

use super::onnx::SessionPool;
use super::{BackendError, BoxFuture, Speech, TextToSpeech};

/// The voice shipped by `scripts/install-models`, in the models directory.
pub const VOICE_FILE: &str = "piper/en_US-joe-medium.onnx";
/// Its name, as a receptionist's `voice` may give it.
pub const VOICE_NAME: &str = "joe";

/// The voice's model in `models_dir`.
pub fn voice_path(models_dir: &Path) -> PathBuf {
    models_dir.join(VOICE_FILE)
}

/// Whether the voice, its configuration, the runtime and espeak-ng are there.
pub fn installed(models_dir: &Path) -> bool {
    let model = voice_path(models_dir);
    model.is_file()
        && config_path(&model).is_file()
        && super::onnx::runtime_library(models_dir).is_file()
        && espeak_available()
}

fn config_path(model: &Path) -> PathBuf {
    let mut p = model.as_os_str().to_owned();
    p.push(".json");
    PathBuf::from(p)
}

fn espeak_available() -> bool {
    Command::new("espeak-ng")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What the voice's `.onnx.json` says.
#[derive(Debug, Clone, serde::Deserialize)]
struct VoiceConfig {
    audio: AudioConfig,
    espeak: EspeakConfig,
    inference: InferenceConfig,
    phoneme_id_map: HashMap<String, Vec<i64>>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct AudioConfig {
    sample_rate: u32,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct EspeakConfig {
    voice: String,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct InferenceConfig {
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
}

/// The Piper voice, a few sessions deep.
#[derive(Clone)]
pub struct PiperTts {
    pool: Arc<SessionPool>,
    voice: Arc<Voice>,
}

struct Voice {
    config: VoiceConfig,
    /// Phoneme (one character) → ids.
    ids: HashMap<char, Vec<i64>>,
    pad: i64,
    bos: i64,
    eos: i64,
}

impl std::fmt::Debug for PiperTts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PiperTts")
            .field("sample_rate", &self.voice.config.audio.sample_rate)
            .finish()
    }
}

impl PiperTts {
    /// Load the voice from `models_dir`, `sessions` times (concurrent syntheses).
    pub fn load(models_dir: &Path, sessions: usize) -> Result<Self, BackendError> {
        let model = voice_path(models_dir);
        let cfg_path = config_path(&model);
        let config: VoiceConfig = std::fs::read(&cfg_path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .map_err(|e| {
                BackendError::Unavailable(format!(
                    "piper: cannot read {}: {e} (run scripts/install-models)",
                    cfg_path.display()
                ))
            })?;
        if !espeak_available() {
            return Err(BackendError::Unavailable(
                "piper: espeak-ng is not installed (apt-get install espeak-ng)".into(),
            ));
        }
        let voice = Voice::new(config)?;
        let pool = SessionPool::load("piper", models_dir, &model, sessions)?;
        Ok(Self {
            pool: Arc::new(pool),
            voice: Arc::new(voice),
        })
    }

    /// Synthesise on this thread (tools and tests).
    pub fn synthesize_blocking(&self, text: &str) -> Result<Speech, BackendError> {
        let sentences = self.voice.phoneme_ids(text)?;
        let mut pcm = Vec::new();
        for ids in sentences {
            let voice = self.voice.clone();
            pcm.extend(self.pool.run_here(move |s| voice.infer(s, ids))?);
        }
        Ok(Speech {
            pcm,
            sample_rate: self.voice.config.audio.sample_rate,
            fallback: false,
        })
    }
}

impl Voice {
    fn new(config: VoiceConfig) -> Result<Self, BackendError> {
        let one = |sym: &str| {
            config
                .phoneme_id_map
                .get(sym)
                .and_then(|v| v.first().copied())
                .ok_or_else(|| {
                    BackendError::Unavailable(format!("piper: the voice has no '{sym}' symbol"))
                })
        };
        let (pad, bos, eos) = (one("_")?, one("^")?, one("$")?);
        let ids = config
            .phoneme_id_map
            .iter()
            .filter_map(|(k, v)| {
                let mut chars = k.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => Some((c, v.clone())),
                    _ => None,
                }
            })
            .collect();
        Ok(Self {
            config,
            ids,
            pad,
            bos,
            eos,
        })
    }

    /// The ids of each sentence of `text`: BOS, then each phoneme followed by the pad, then EOS.
    fn phoneme_ids(&self, text: &str) -> Result<Vec<Vec<i64>>, BackendError> {
        let mut out = Vec::new();
        for sentence in sentences(text) {
            let mut ids = vec![self.bos, self.pad];
            let mut spoken = false;
            for (clause, punct) in clauses(&sentence) {
                let phonemes = phonemize(&self.config.espeak.voice, &clause)?;
                if phonemes.trim().is_empty() {
                    continue;
                }
                if spoken {
                    self.push(&mut ids, ' ');
                }
                for c in phonemes.trim().chars() {
                    self.push(&mut ids, if c == '\n' { ' ' } else { c });
                }
                if let Some(p) = punct {
                    self.push(&mut ids, p);
                }
                spoken = true;
            }
            if spoken {
                ids.push(self.eos);
                out.push(ids);
            }
        }
        Ok(out)
    }

    fn push(&self, ids: &mut Vec<i64>, phoneme: char) {
        if let Some(v) = self.ids.get(&phoneme) {
            for &id in v {
                ids.push(id);
                ids.push(self.pad);
            }
        }
    }

    fn infer(
        &self,
        session: &mut ort::session::Session,
        ids: Vec<i64>,
    ) -> Result<Vec<i16>, ort::Error> {
        let n = ids.len();
        let i = &self.config.inference;
        let input = Tensor::from_array(([1usize, n], ids))?;
        let lengths = Tensor::from_array(([1usize], vec![n as i64]))?;
        let scales =
            Tensor::from_array(([3usize], vec![i.noise_scale, i.length_scale, i.noise_w]))?;
        let outputs = session.run(ort::inputs![
            "input" => input,
            "input_lengths" => lengths,
            "scales" => scales,
        ])?;
        let (_, audio) = outputs[0].try_extract_tensor::<f32>()?;
        // VITS output is about ±1; normalise only if it clips
        let peak = audio.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
        let gain = if peak > 1.0 { 1.0 / peak } else { 1.0 };
        Ok(audio.iter().map(|&x| (x * gain * 32767.0) as i16).collect())
    }
}

/// The text's sentences (cut after `.`, `!`, `?` followed by a space or the end).
fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        cur.push(c);
        if matches!(c, '.' | '!' | '?') && chars.peek().is_none_or(|n| n.is_whitespace()) {
            if !cur.trim().is_empty() {
                out.push(cur.trim().to_string());
            }
            cur.clear();
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// A sentence's clauses and the punctuation that ends each (`,` `;` `:` `.` `!` `?`, when followed
/// by a space or the end: "3.5" and "555-0199" stay whole).
fn clauses(sentence: &str) -> Vec<(String, Option<char>)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = sentence.chars().peekable();
    while let Some(c) = chars.next() {
        if matches!(c, ',' | ';' | ':' | '.' | '!' | '?')
            && chars.peek().is_none_or(|n| n.is_whitespace())
        {
            out.push((std::mem::take(&mut cur), Some(c)));
        } else {
            cur.push(c);
        }
    }
    if !cur.trim().is_empty() {
        out.push((cur, None));
    }
    out
}

/// IPA phonemes of `text` from espeak-ng (a separate process: it is GPL-3.0), clause lines joined.
fn phonemize(voice: &str, text: &str) -> Result<String, BackendError> {
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.trim().is_empty() {
        return Ok(String::new());
    }
    let mut child = Command::new("espeak-ng")
        .args(["-q", "--ipa", "-v", voice, "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| BackendError::Unavailable(format!("piper: cannot run espeak-ng: {e}")))?;
    // text goes through stdin: never a command-line argument that could look like an option
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| BackendError::Failed(format!("piper: espeak-ng: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| BackendError::Failed(format!("piper: espeak-ng: {e}")))?;
    if !out.status.success() {
        return Err(BackendError::Failed(format!(
            "piper: espeak-ng exited with {}",
            out.status
        )));
    }
    let s = String::from_utf8_lossy(&out.stdout);
    Ok(s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" "))
}

impl TextToSpeech for PiperTts {
    fn synthesize(
        &self,
        text: &str,
        _voice: &str,
    ) -> BoxFuture<'static, Result<Speech, BackendError>> {
        let this = self.clone();
        let text = super::flite::sanitize(text);
        Box::pin(async move {
            let voice = this.voice.clone();
            let sentences = tokio::task::spawn_blocking(move || voice.phoneme_ids(&text))
                .await
                .map_err(|e| BackendError::Failed(format!("piper task: {e}")))??;
            let mut pcm = Vec::new();
            for ids in sentences {
                let voice = this.voice.clone();
                pcm.extend(this.pool.run(move |s| voice.infer(s, ids)).await?);
            }
            Ok(Speech {
                pcm,
                sample_rate: this.voice.config.audio.sample_rate,
                fallback: false,
            })
        })
    }

    fn voices(&self) -> Vec<String> {
        vec![VOICE_NAME.to_string()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_into_sentences_and_clauses_at_their_punctuation() {
        assert_eq!(
            sentences("Hi, I'm Joe. Call 555-0199! Pay is 3.5 an hour? ok"),
            vec![
                "Hi, I'm Joe.",
                "Call 555-0199!",
                "Pay is 3.5 an hour?",
                "ok"
            ]
        );
        assert_eq!(
            clauses("Hi, I'm Joe."),
            vec![("Hi".into(), Some(',')), (" I'm Joe".into(), Some('.'))]
        );
        assert_eq!(clauses("3.5 an hour"), vec![("3.5 an hour".into(), None)]);
    }

    #[test]
    fn the_voice_speaks_a_sentence_at_its_rate() {
        let dir = crate::testing::installed_models_dir();
        let tts = PiperTts::load(&dir, 1).unwrap();
        let ids = tts.voice.phoneme_ids("Hello, what is your name?").unwrap();
        assert_eq!(ids.len(), 1);
        // BOS, pad, ..., EOS, with the pad after every phoneme and the question mark kept
        assert_eq!(&ids[0][..2], &[tts.voice.bos, tts.voice.pad]);
        assert_eq!(*ids[0].last().unwrap(), tts.voice.eos);
        assert!(ids[0].contains(&tts.voice.ids[&'?'][0]));
        let speech = tts
            .synthesize_blocking("Hello, what is your name? I live in Springfield.")
            .unwrap();
        assert_eq!(speech.sample_rate, 22_050);
        let secs = speech.pcm.len() as f64 / 22_050.0;
        assert!((1.5..6.0).contains(&secs), "{secs} s");
        let peak = speech.pcm.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(peak > 3000, "audible: peak {peak}");
        // an empty text is silence, not an error
        assert!(tts.synthesize_blocking(" ").unwrap().pcm.is_empty());
    }
}
