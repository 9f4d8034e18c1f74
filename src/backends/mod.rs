//! Speech backends behind narrow traits, and the offline defaults.
//!
//! - [`TextToSpeech`]: text → 16-bit mono PCM ([`Speech`]). Offline default: [`FliteTts`].
//! - [`SpeechToText`]: one [`SttSession`] per caller utterance, fed 16 kHz PCM, finished into a
//!   lowercase transcript. Offline default: [`WhisperStt`] when its model is installed, else
//!   [`SphinxStt`].
//! - [`PromptCache`]: 8 kHz µ-law audio of fixed prompts, synthesised ahead of time.
//! - [`ScriptedStt`] / [`ScriptedTts`]: free, deterministic doubles for load and robustness tests.
//! - Providers (chosen by `--stt` / `--tts`, see [`select`]): Deepgram streaming STT
//!   ([`deepgram`]), OpenAI-compatible STT and TTS ([`openai`]), ElevenLabs streaming TTS
//!   ([`elevenlabs`]), each wrapped in a [`fallback`] to the offline backend; and the
//!   OpenAI-compatible streaming chat client ([`chat`]), not yet used by the dialogue.
//!
//! Timeouts are the caller's job: every future here may simply be dropped.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub mod chat;
pub mod deepgram;
pub mod elevenlabs;
pub mod fallback;
mod flite;
pub mod http;
pub mod llm;
pub mod onnx;
pub mod openai;
pub mod piper;
mod prompt_cache;
mod scripted;
pub mod select;
pub mod smart_turn;
mod sphinx;
pub mod wav;
pub mod whisper;

pub use fallback::{FallbackStt, FallbackTts};
pub use flite::FliteTts;
pub use prompt_cache::PromptCache;
pub use scripted::{ScriptedAnswers, ScriptedStt, ScriptedTts};
pub use sphinx::{SphinxConfig, SphinxStt};
pub use whisper::{WhisperConfig, WhisperStt};

/// A boxed, `Send` future, as returned by the backend traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a backend call did not produce a result.
#[derive(Debug, thiserror::Error, Clone)]
pub enum BackendError {
    #[error("timed out")]
    Timeout,
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    #[error("backend failed: {0}")]
    Failed(String),
}

/// Synthesised speech: 16-bit mono PCM at `sample_rate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Speech {
    pub pcm: Vec<i16>,
    pub sample_rate: u32,
    /// Made by a fallback backend because the chosen one failed: usable now, but not worth
    /// caching as the prompt's audio (the chosen backend may be back for the next call).
    pub fallback: bool,
}

impl Speech {
    /// Duration in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        if self.sample_rate == 0 {
            return 0;
        }
        self.pcm.len() as u64 * 1000 / u64::from(self.sample_rate)
    }
}

/// Synthesised speech as it is made: pieces in order, each at its own rate. An error ends it
/// (after pieces, they stand: the speech was cut short).
pub type SpeechStream = futures_util::stream::BoxStream<'static, Result<Speech, BackendError>>;

/// Text to speech.
pub trait TextToSpeech: Send + Sync + 'static {
    /// Synthesise `text` with `voice` (one of [`voices`](Self::voices); an unknown voice falls back
    /// to the default voice).
    fn synthesize(
        &self,
        text: &str,
        voice: &str,
    ) -> BoxFuture<'static, Result<Speech, BackendError>>;
    /// Names a receptionist's `voice` may take; the first is the default voice.
    fn voices(&self) -> Vec<String>;

    /// [`synthesize`](Self::synthesize), piece by piece as a streaming provider makes it; the
    /// default is the whole speech as one piece.
    fn synthesize_stream(&self, text: &str, voice: &str) -> SpeechStream {
        Box::pin(futures_util::stream::once(self.synthesize(text, voice)))
    }

    /// This synthesiser as one call uses it, when the call keeps state of its own (a provider
    /// that failed during the call is skipped for the rest of it); `None` (the default): the
    /// shared one.
    fn for_call(&self) -> Option<Arc<dyn TextToSpeech>> {
        None
    }
}

/// What the dialogue expects the caller to say next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SttHint {
    #[default]
    Any,
    Name,
    Location,
    YesNo,
    Number,
    FreeText,
    /// The caller's own question (or "no").
    Question,
}

/// Speech to text.
pub trait SpeechToText: Send + Sync + 'static {
    /// One session per caller utterance. Audio is 16 kHz mono i16 in 20 ms frames. `hint` is what
    /// the dialogue expects (providers may use it to bias recognition; scripted backends answer it).
    fn start(&self, hint: SttHint) -> Box<dyn SttSession>;

    /// A per-call recogniser whose utterances share state (a streaming provider's one socket per
    /// call), or `None` (the default) when each utterance stands alone: use [`open_call`], which
    /// falls back to [`start`](Self::start) per utterance.
    fn open_call(&self) -> Option<Box<dyn SttCall>> {
        None
    }

    /// Whether its sessions answer [`SttSession::partial`] (what was said so far), so that talk
    /// over the agent can be judged by its words.
    fn partials(&self) -> bool {
        false
    }
}

/// The recogniser of one call: hands out one [`SttSession`] per utterance. Dropping it ends the
/// call's provider state (closes its socket).
pub trait SttCall: Send {
    fn start(&mut self, hint: SttHint) -> Box<dyn SttSession>;
}

/// The per-call recogniser of `stt`: its own [`SpeechToText::open_call`], or one that starts an
/// independent session per utterance.
pub fn open_call(stt: &Arc<dyn SpeechToText>) -> Box<dyn SttCall> {
    stt.open_call()
        .unwrap_or_else(|| Box::new(PerUtterance(stt.clone())))
}

/// [`SttCall`] for backends without per-call state.
struct PerUtterance(Arc<dyn SpeechToText>);

impl SttCall for PerUtterance {
    fn start(&mut self, hint: SttHint) -> Box<dyn SttSession> {
        self.0.start(hint)
    }
}

/// One caller utterance being transcribed.
pub trait SttSession: Send {
    /// Append audio. Cheap and non-blocking; keeps at most [`MAX_UTTERANCE_SAMPLES`] (30 s at
    /// 16 kHz), dropping (and counting) the oldest audio beyond that.
    fn push(&mut self, pcm16k: &[i16]);
    /// The final transcript: lowercase words separated by single spaces (empty if nothing was heard).
    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<String, BackendError>>;
    /// What was said so far, as [`finish`](Self::finish) would say it now; `None` when this
    /// recogniser cannot tell before the end (the default).
    fn partial(&mut self) -> Option<BoxFuture<'static, Result<String, BackendError>>> {
        None
    }
}

/// The speech backends a call uses.
#[derive(Clone)]
pub struct Backends {
    pub stt: Arc<dyn SpeechToText>,
    pub tts: Arc<dyn TextToSpeech>,
    pub name: &'static str,
    /// The end-of-turn model, asked when the caller pauses (`None`: silence windows alone).
    pub end_of_turn: Option<Arc<smart_turn::SmartTurn>>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Backends {
    /// flite + PocketSphinx, fully offline. Loads the recogniser's models once (about 0.5 s and
    /// 100 MB per decoder, one decoder per core); call it once at start and clone the result.
    pub fn offline() -> Result<Self, BackendError> {
        let tts = FliteTts::new()?;
        let stt = SphinxStt::new(SphinxConfig::default())?;
        Ok(Self {
            stt: Arc::new(stt),
            tts: Arc::new(tts),
            name: "offline",
            end_of_turn: None,
        })
    }

    /// Free, deterministic backends for load and robustness tests: transcripts come from
    /// `answers` in turn, speech is a cheap speech-shaped tone.
    pub fn scripted(answers: ScriptedAnswers) -> Self {
        Self {
            stt: Arc::new(ScriptedStt::new(answers)),
            tts: Arc::new(ScriptedTts::new()),
            name: "scripted",
            end_of_turn: None,
        }
    }
}

/// At most this many samples (30 s at 16 kHz) are kept per STT session.
pub const MAX_UTTERANCE_SAMPLES: usize = 30 * 16_000;

/// The bounded audio buffer of one STT session: keeps the newest [`MAX_UTTERANCE_SAMPLES`].
#[derive(Debug, Default)]
pub(crate) struct UtteranceBuffer {
    samples: VecDeque<i16>,
    /// Samples dropped (oldest first) because the utterance exceeded the bound.
    dropped: u64,
    /// Samples pushed in total, including dropped ones.
    pushed: u64,
}

impl UtteranceBuffer {
    pub(crate) fn push(&mut self, pcm: &[i16]) {
        self.pushed += pcm.len() as u64;
        // Only the newest MAX samples of this chunk can survive.
        let pcm = if pcm.len() > MAX_UTTERANCE_SAMPLES {
            let skip = pcm.len() - MAX_UTTERANCE_SAMPLES;
            self.dropped += skip as u64;
            &pcm[skip..]
        } else {
            pcm
        };
        let overflow = (self.samples.len() + pcm.len()).saturating_sub(MAX_UTTERANCE_SAMPLES);
        if overflow > 0 {
            self.samples.drain(..overflow);
            self.dropped += overflow as u64;
        }
        self.samples.extend(pcm);
    }

    pub(crate) fn pushed(&self) -> u64 {
        self.pushed
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The audio so far, in order (a copy).
    pub(crate) fn to_vec(&self) -> Vec<i16> {
        self.samples.iter().copied().collect()
    }

    pub(crate) fn into_vec(self) -> Vec<i16> {
        Vec::from(self.samples)
    }

    pub(crate) fn len(&self) -> usize {
        self.samples.len()
    }
}

/// Lowercase words separated by single spaces; recogniser markup such as `<sil>`, `[noise]`,
/// `++garbage++` and alternate-pronunciation suffixes (`word(2)`) removed.
pub(crate) fn normalize_transcript(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for word in raw.split_whitespace() {
        if word.starts_with('<') || word.starts_with('[') || word.starts_with('+') {
            continue;
        }
        let word = match word.find('(') {
            Some(i) if word.ends_with(')') => &word[..i],
            _ => word,
        };
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

#[cfg(test)]
mod provider_tests;
#[cfg(test)]
mod tests;
