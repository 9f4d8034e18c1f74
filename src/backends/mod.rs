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
mod lease;
pub mod llm;
pub mod meaning;
pub mod onnx;
pub mod openai;
pub mod piper;
mod prompt_cache;
mod scripted;
pub mod select;
pub mod silero;
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

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// Runs `f` with `id` as the request id every provider request made inside it carries
/// (`X-Request-Id`): the driver names the call and the turn (`{call}-s{speech}`,
/// `{call}-u{utterance}`), so a provider's logs and ours meet.
pub async fn with_request_id<F: Future>(id: impl Into<Arc<str>>, f: F) -> F::Output {
    REQUEST_ID.scope(id.into(), f).await
}

/// [`with_request_id`] for synchronous work (opening a call's recogniser).
pub fn with_request_id_sync<R>(id: impl Into<Arc<str>>, f: impl FnOnce() -> R) -> R {
    REQUEST_ID.sync_scope(id.into(), f)
}

/// The request id of the work in progress, if it has one (see [`with_request_id`]).
pub fn request_id() -> Option<Arc<str>> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

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

/// The pieces `task` sends on `rx`, as a [`SpeechStream`]; dropping the stream aborts the task
/// (the provider's request or socket closes).
pub(crate) fn task_stream(
    rx: tokio::sync::mpsc::Receiver<Result<Speech, BackendError>>,
    task: tokio::task::JoinHandle<()>,
) -> SpeechStream {
    /// Aborts the task when dropped.
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    Box::pin(futures_util::stream::unfold(
        (rx, AbortOnDrop(task)),
        |(mut rx, abort)| async move { rx.recv().await.map(|item| (item, (rx, abort))) },
    ))
}

/// The whole of a speech stream, its pieces joined (at the last piece's rate; `rate` when there
/// was none): `synthesize` for a provider that streams.
pub(crate) async fn joined_speech(
    mut pieces: SpeechStream,
    rate: u32,
) -> Result<Speech, BackendError> {
    use futures_util::StreamExt;
    let mut speech = Speech {
        pcm: Vec::new(),
        sample_rate: rate,
        fallback: false,
    };
    while let Some(piece) = pieces.next().await {
        let piece = piece?;
        speech.sample_rate = piece.sample_rate;
        speech.pcm.extend_from_slice(&piece.pcm);
    }
    Ok(speech)
}

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

    /// It speaks the language of the text it is given (a multilingual voice), not only English.
    fn speaks_languages(&self) -> bool {
        false
    }

    /// This synthesiser as one call uses it, when the call keeps state of its own (a provider
    /// that failed during the call is skipped for the rest of it); `None` (the default): the
    /// shared one.
    fn for_call(&self) -> Option<Arc<dyn TextToSpeech>> {
        None
    }
}

/// What the dialogue expects the caller to say next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
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

    /// [`start`](Self::start) for a call in multilingual mode: a recogniser that can tell the
    /// caller's language hears any language and says which ([`SttSession::finish_heard`]).
    /// The default is `start`: English only.
    fn start_in(&self, hint: SttHint, multilingual: bool) -> Box<dyn SttSession> {
        let _ = multilingual;
        self.start(hint)
    }

    /// [`start_in`](Self::start_in) for an utterance in which the caller is likely to say some
    /// of `terms` (the places of the receptionist's positions, when asked where they live or
    /// what they would like to know): a
    /// recogniser that can be biased toward words (Whisper's previous text, a provider's
    /// prompt or key terms) is. The default ignores them.
    fn start_with_terms(
        &self,
        hint: SttHint,
        multilingual: bool,
        terms: &[String],
    ) -> Box<dyn SttSession> {
        let _ = terms;
        self.start_in(hint, multilingual)
    }

    /// A per-call recogniser whose utterances share state (a streaming provider's one socket per
    /// call), or `None` (the default) when each utterance stands alone: use [`open_call`], which
    /// falls back to [`start_in`](Self::start_in) per utterance. `multilingual` as for
    /// `start_in`; `terms`: words the whole call is likely to hold (the places of the
    /// receptionist's positions), for a provider that can be biased only when its stream opens.
    fn open_call(&self, multilingual: bool, terms: &[String]) -> Option<Box<dyn SttCall>> {
        let _ = (multilingual, terms);
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

    /// [`start`](Self::start) biased toward `terms`, as
    /// [`SpeechToText::start_with_terms`]; the default ignores them.
    fn start_with_terms(&mut self, hint: SttHint, terms: &[String]) -> Box<dyn SttSession> {
        let _ = terms;
        self.start(hint)
    }
}

/// The per-call recogniser of `stt`: its own [`SpeechToText::open_call`], or one that starts an
/// independent session per utterance.
pub fn open_call(
    stt: &Arc<dyn SpeechToText>,
    multilingual: bool,
    terms: &[String],
) -> Box<dyn SttCall> {
    stt.open_call(multilingual, terms)
        .unwrap_or_else(|| Box::new(PerUtterance(stt.clone(), multilingual)))
}

/// [`SttCall`] for backends without per-call state.
struct PerUtterance(Arc<dyn SpeechToText>, bool);

impl SttCall for PerUtterance {
    fn start(&mut self, hint: SttHint) -> Box<dyn SttSession> {
        self.0.start_in(hint, self.1)
    }

    fn start_with_terms(&mut self, hint: SttHint, terms: &[String]) -> Box<dyn SttSession> {
        self.0.start_with_terms(hint, self.1, terms)
    }
}

/// What the caller said, and in which language when the recogniser can tell.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Heard {
    /// As [`SttSession::finish`] says it.
    pub text: String,
    /// The language's ISO 639-1 code (`es`, `fr`, ...), lowercase, when the recogniser reported
    /// one.
    pub language: Option<String>,
}

/// The primary ISO 639-1 code of a recogniser's language tag or name (`es`, `es-419`, `pt-BR`,
/// `Spanish`, `english`), or `None` when it is none of these.
pub fn language_code(reported: &str) -> Option<String> {
    let tag = reported.trim().to_ascii_lowercase();
    let primary = tag.split(['-', '_']).next().unwrap_or("");
    if primary.len() == 2 && primary.chars().all(|c| c.is_ascii_lowercase()) {
        return Some(primary.to_string());
    }
    LANGUAGE_NAMES
        .iter()
        .find(|(name, _)| *name == tag)
        .map(|(_, code)| (*code).to_string())
}

/// Language names as Whisper-style recognisers report them, and their codes.
const LANGUAGE_NAMES: [(&str, &str); 40] = [
    ("english", "en"),
    ("spanish", "es"),
    ("french", "fr"),
    ("german", "de"),
    ("italian", "it"),
    ("portuguese", "pt"),
    ("dutch", "nl"),
    ("polish", "pl"),
    ("russian", "ru"),
    ("ukrainian", "uk"),
    ("chinese", "zh"),
    ("japanese", "ja"),
    ("korean", "ko"),
    ("vietnamese", "vi"),
    ("tagalog", "tl"),
    ("arabic", "ar"),
    ("hindi", "hi"),
    ("urdu", "ur"),
    ("bengali", "bn"),
    ("punjabi", "pa"),
    ("turkish", "tr"),
    ("persian", "fa"),
    ("greek", "el"),
    ("hebrew", "he"),
    ("romanian", "ro"),
    ("hungarian", "hu"),
    ("czech", "cs"),
    ("slovak", "sk"),
    ("swedish", "sv"),
    ("norwegian", "no"),
    ("danish", "da"),
    ("finnish", "fi"),
    ("thai", "th"),
    ("indonesian", "id"),
    ("malay", "ms"),
    ("swahili", "sw"),
    ("haitian creole", "ht"),
    ("somali", "so"),
    ("amharic", "am"),
    ("catalan", "ca"),
];

/// One caller utterance being transcribed.
pub trait SttSession: Send {
    /// Append wideband audio (16 kHz PCM: `receptionist transcribe` without `--phone`, tests).
    /// Cheap and non-blocking; keeps at most [`MAX_UTTERANCE_SAMPLES`] (30 s at 16 kHz),
    /// dropping (and counting) the oldest audio beyond that.
    fn push(&mut self, pcm16k: &[i16]);
    /// Append telephone audio: G.711 µ-law at 8 kHz, as every call carries it (the media layer
    /// transcodes each carrier's codec to it), in the call's 20 ms frames. Same bounds as
    /// [`push`](Self::push). A recogniser that needs 16 kHz widens it when it needs it (a batch
    /// recogniser when it decodes), so an utterance waits at a quarter of the memory.
    fn push_phone(&mut self, mulaw: &[u8]);
    /// The final transcript: lowercase words separated by single spaces (empty if nothing was heard).
    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<String, BackendError>>;
    /// [`finish`](Self::finish), with the language the recogniser heard when it can tell (the
    /// default: it cannot).
    fn finish_heard(self: Box<Self>) -> BoxFuture<'static, Result<Heard, BackendError>> {
        let text = self.finish();
        Box::pin(async move {
            Ok(Heard {
                text: text.await?,
                language: None,
            })
        })
    }
    /// What was said so far, as [`finish`](Self::finish) would say it now; `None` when this
    /// recogniser cannot tell before the end (the default).
    fn partial(&mut self) -> Option<BoxFuture<'static, Result<String, BackendError>>> {
        None
    }
    /// [`partial`](Self::partial) for a barge-in check (the caller talking over the agent): a
    /// recogniser that can tell may read words the check cut short as the backchannel they
    /// begin ("go" of "got it"). The default: `partial`.
    fn partial_over_agent(&mut self) -> Option<BoxFuture<'static, Result<String, BackendError>>> {
        self.partial()
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
    /// The sentence encoder: caller questions are matched to the custom context by meaning
    /// (`None`: by words alone).
    pub meaning: Option<Arc<meaning::SentenceEncoder>>,
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
            meaning: None,
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
            meaning: None,
        }
    }
}

/// At most this many samples (30 s at 16 kHz) are kept per STT session.
pub const MAX_UTTERANCE_SAMPLES: usize = 30 * 16_000;

/// The bounded audio buffer of one STT session: keeps the newest 30 s
/// ([`MAX_UTTERANCE_SAMPLES`] at 16 kHz). Telephone audio is kept as the call carried it (µ-law
/// at 8 kHz, a byte a sample: a quarter of the memory of 16 kHz PCM) and widened to 16 kHz when
/// the audio is taken; once wideband audio is pushed, everything is kept at 16 kHz. Counts are in
/// 16 kHz samples either way.
#[derive(Debug, Default)]
pub(crate) struct UtteranceBuffer {
    kept: Kept,
    /// Samples dropped (oldest first) because the utterance exceeded the bound.
    dropped: u64,
    /// Samples pushed in total, including dropped ones.
    pushed: u64,
}

#[derive(Debug)]
enum Kept {
    Phone(VecDeque<u8>),
    Wide(VecDeque<i16>),
}

impl Default for Kept {
    fn default() -> Self {
        Self::Phone(VecDeque::new())
    }
}

/// Appends `chunk` to `kept`, keeping at most `max` items: returns how many (of either) were
/// dropped, oldest first.
pub(crate) fn keep_newest<T: Copy>(kept: &mut VecDeque<T>, chunk: &[T], max: usize) -> usize {
    let skip = chunk.len().saturating_sub(max);
    let chunk = &chunk[skip..];
    let overflow = (kept.len() + chunk.len()).saturating_sub(max);
    kept.drain(..overflow);
    kept.extend(chunk);
    skip + overflow
}

impl UtteranceBuffer {
    /// Wideband audio, 16 kHz PCM.
    pub(crate) fn push(&mut self, pcm16k: &[i16]) {
        self.pushed += pcm16k.len() as u64;
        if let Kept::Phone(mulaw) = &mut self.kept {
            let wide = crate::engine::audio::mulaw_to_16k(mulaw.make_contiguous());
            self.kept = Kept::Wide(wide.into());
        }
        if let Kept::Wide(pcm) = &mut self.kept {
            self.dropped += keep_newest(pcm, pcm16k, MAX_UTTERANCE_SAMPLES) as u64;
        }
    }

    /// Telephone audio, µ-law at 8 kHz.
    pub(crate) fn push_phone(&mut self, mulaw: &[u8]) {
        self.pushed += 2 * mulaw.len() as u64;
        match &mut self.kept {
            Kept::Phone(kept) => {
                self.dropped += 2 * keep_newest(kept, mulaw, MAX_UTTERANCE_SAMPLES / 2) as u64;
            }
            Kept::Wide(pcm) => {
                let wide = crate::engine::audio::mulaw_to_16k(mulaw);
                self.dropped += keep_newest(pcm, &wide, MAX_UTTERANCE_SAMPLES) as u64;
            }
        }
    }

    pub(crate) fn pushed(&self) -> u64 {
        self.pushed
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The audio so far at 16 kHz, in order (a copy).
    pub(crate) fn to_vec(&self) -> Vec<i16> {
        match &self.kept {
            Kept::Phone(mulaw) => {
                let (a, b) = mulaw.as_slices();
                crate::engine::audio::mulaw_to_16k(&[a, b].concat())
            }
            Kept::Wide(pcm) => pcm.iter().copied().collect(),
        }
    }

    /// The audio at 16 kHz.
    pub(crate) fn into_vec(self) -> Vec<i16> {
        match self.kept {
            Kept::Phone(mulaw) => crate::engine::audio::mulaw_to_16k(&Vec::from(mulaw)),
            Kept::Wide(pcm) => Vec::from(pcm),
        }
    }

    /// Hands the audio kept to another session, in 20 ms frames as it came.
    pub(crate) fn replay_into(self, session: &mut dyn SttSession) {
        match self.kept {
            Kept::Phone(mulaw) => {
                for frame in Vec::from(mulaw).chunks(crate::engine::audio::SAMPLES_8K) {
                    session.push_phone(frame);
                }
            }
            Kept::Wide(pcm) => {
                for frame in Vec::from(pcm).chunks(crate::engine::audio::SAMPLES_16K) {
                    session.push(frame);
                }
            }
        }
    }

    /// Samples kept, at 16 kHz.
    pub(crate) fn len(&self) -> usize {
        match &self.kept {
            Kept::Phone(mulaw) => 2 * mulaw.len(),
            Kept::Wide(pcm) => pcm.len(),
        }
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
