//! A chosen provider backed by the offline one, so a provider that fails never leaves the caller
//! in dead air.
//!
//! - [`FallbackStt`]: each utterance's audio also stays in a bounded buffer; if the provider
//!   fails (or takes longer than its budget) to transcribe it, the offline recogniser transcribes
//!   the buffer, and every later utterance of that call goes straight to the offline one.
//! - [`FallbackTts`]: a failed (or too slow) synthesis is done by the offline synthesiser; the
//!   provider is skipped for a cool-down by every call, and for the rest of the call by the call
//!   it failed in ([`TextToSpeech::for_call`]): one voice, and no second wait. Audio made by the
//!   fallback is marked ([`Speech::fallback`]) so the prompt cache does not keep it. A stream
//!   that fails after its first piece ends there (what was said stands; a retry would repeat it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::{
    BackendError, BoxFuture, Heard, Speech, SpeechStream, SpeechToText, SttCall, SttHint,
    SttSession, TextToSpeech, UtteranceBuffer, open_call,
};

/// Speech-to-text from `primary`, degrading to `fallback`.
#[derive(Clone)]
pub struct FallbackStt {
    primary: Arc<dyn SpeechToText>,
    fallback: Arc<dyn SpeechToText>,
    /// Longest wait for the primary's transcript after the utterance ends.
    budget: Duration,
    name: &'static str,
}

impl std::fmt::Debug for FallbackStt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackStt")
            .field("primary", &self.name)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl FallbackStt {
    pub fn new(
        name: &'static str,
        primary: Arc<dyn SpeechToText>,
        fallback: Arc<dyn SpeechToText>,
        budget: Duration,
    ) -> Self {
        Self {
            primary,
            fallback,
            budget,
            name,
        }
    }
}

impl FallbackStt {
    /// A session on `primary`, which the fallback takes over when it fails.
    fn session(
        &self,
        primary: Box<dyn SttSession>,
        hint: SttHint,
        terms: &[String],
        degraded: Arc<AtomicBool>,
    ) -> Box<dyn SttSession> {
        Box::new(FallbackSession {
            primary: Some(primary),
            buffer: UtteranceBuffer::default(),
            stt: self.clone(),
            hint,
            terms: terms.to_vec(),
            degraded,
        })
    }
}

impl SpeechToText for FallbackStt {
    fn start(&self, hint: SttHint) -> Box<dyn SttSession> {
        self.session(self.primary.start(hint), hint, &[], Arc::default())
    }

    /// The primary's: once a call degrades, its sessions are the fallback's, which answer
    /// partials or not on their own (a `None` only makes the engine wait for its deadline).
    fn partials(&self) -> bool {
        self.primary.partials()
    }

    fn start_in(&self, hint: SttHint, multilingual: bool) -> Box<dyn SttSession> {
        self.start_with_terms(hint, multilingual, &[])
    }

    fn start_with_terms(
        &self,
        hint: SttHint,
        multilingual: bool,
        terms: &[String],
    ) -> Box<dyn SttSession> {
        let primary = self.primary.start_with_terms(hint, multilingual, terms);
        self.session(primary, hint, terms, Arc::default())
    }

    fn open_call(&self, multilingual: bool, terms: &[String]) -> Option<Box<dyn SttCall>> {
        Some(Box::new(FallbackCall {
            primary: open_call(&self.primary, multilingual, terms),
            stt: self.clone(),
            degraded: Arc::new(AtomicBool::new(false)),
        }))
    }
}

struct FallbackCall {
    primary: Box<dyn SttCall>,
    stt: FallbackStt,
    /// The primary failed during this call: the rest of it uses the fallback.
    degraded: Arc<AtomicBool>,
}

impl SttCall for FallbackCall {
    fn start(&mut self, hint: SttHint) -> Box<dyn SttSession> {
        self.start_with_terms(hint, &[])
    }

    fn start_with_terms(&mut self, hint: SttHint, terms: &[String]) -> Box<dyn SttSession> {
        if self.degraded.load(Ordering::Relaxed) {
            return self.stt.fallback.start_with_terms(hint, false, terms);
        }
        let primary = self.primary.start_with_terms(hint, terms);
        self.stt
            .session(primary, hint, terms, self.degraded.clone())
    }
}

struct FallbackSession {
    primary: Option<Box<dyn SttSession>>,
    buffer: UtteranceBuffer,
    stt: FallbackStt,
    hint: SttHint,
    /// The words the session is biased toward, for the fallback too.
    terms: Vec<String>,
    degraded: Arc<AtomicBool>,
}

impl SttSession for FallbackSession {
    fn push(&mut self, pcm16k: &[i16]) {
        if let Some(p) = self.primary.as_mut() {
            p.push(pcm16k);
        }
        self.buffer.push(pcm16k);
    }

    fn push_phone(&mut self, mulaw: &[u8]) {
        if let Some(p) = self.primary.as_mut() {
            p.push_phone(mulaw);
        }
        self.buffer.push_phone(mulaw);
    }

    fn partial(&mut self) -> Option<BoxFuture<'static, Result<String, BackendError>>> {
        self.primary.as_mut()?.partial()
    }

    fn partial_over_agent(&mut self) -> Option<BoxFuture<'static, Result<String, BackendError>>> {
        self.primary.as_mut()?.partial_over_agent()
    }

    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<String, BackendError>> {
        let heard = self.finish_heard();
        Box::pin(async move { Ok(heard.await?.text) })
    }

    fn finish_heard(mut self: Box<Self>) -> BoxFuture<'static, Result<Heard, BackendError>> {
        let primary = self.primary.take();
        Box::pin(async move {
            let FallbackSession {
                buffer,
                stt,
                hint,
                terms,
                degraded,
                ..
            } = *self;
            let error = match primary {
                Some(p) => match tokio::time::timeout(stt.budget, p.finish_heard()).await {
                    Ok(Ok(heard)) => return Ok(heard),
                    Ok(Err(e)) => e,
                    Err(_) => BackendError::Timeout,
                },
                None => BackendError::Unavailable("no primary session".into()),
            };
            if !degraded.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    backend = stt.name,
                    error = %error,
                    "speech recognition failed; the offline recogniser takes over for the rest of the call"
                );
            }
            let mut session = stt.fallback.start_with_terms(hint, false, &terms);
            buffer.replay_into(session.as_mut());
            session.finish_heard().await
        })
    }
}

/// Text-to-speech from `primary`, degrading to `fallback`.
#[derive(Clone)]
pub struct FallbackTts {
    primary: Arc<dyn TextToSpeech>,
    fallback: Arc<dyn TextToSpeech>,
    /// Longest wait for the primary's audio.
    budget: Duration,
    /// How long the primary is skipped after it failed.
    cooldown: Duration,
    skip_until: Arc<Mutex<Option<Instant>>>,
    /// One call's: the primary failed during it, and the rest of it uses the fallback (`None`
    /// for the shared one, see [`TextToSpeech::for_call`]).
    degraded: Option<Arc<AtomicBool>>,
    name: &'static str,
}

impl std::fmt::Debug for FallbackTts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackTts")
            .field("primary", &self.name)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl FallbackTts {
    pub fn new(
        name: &'static str,
        primary: Arc<dyn TextToSpeech>,
        fallback: Arc<dyn TextToSpeech>,
        budget: Duration,
        cooldown: Duration,
    ) -> Self {
        Self {
            primary,
            fallback,
            budget,
            cooldown,
            skip_until: Arc::new(Mutex::new(None)),
            degraded: None,
            name,
        }
    }

    /// Whether the primary is passed over: it failed during this call, or (for every call) in
    /// the last cool-down.
    fn skipping(&self) -> bool {
        if self
            .degraded
            .as_ref()
            .is_some_and(|d| d.load(Ordering::Relaxed))
        {
            return true;
        }
        let mut skip = self.skip_until.lock().unwrap_or_else(|e| e.into_inner());
        match *skip {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                *skip = None;
                false
            }
            None => false,
        }
    }

    /// The primary failed with `error`: every call skips it for the cool-down, this one (if it
    /// is a call's) for the rest of the call.
    fn failed(&self, error: &BackendError) {
        tracing::warn!(
            backend = self.name,
            error = %error,
            cooldown_s = self.cooldown.as_secs(),
            "speech synthesis failed; the offline synthesiser speaks instead for the rest of the call"
        );
        *self.skip_until.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Instant::now() + self.cooldown);
        if let Some(d) = &self.degraded {
            d.store(true, Ordering::Relaxed);
        }
    }

    /// The fallback's speech for `text`, marked as such.
    async fn fallback(&self, text: &str, voice: &str) -> Result<Speech, BackendError> {
        // the offline voices do not know the provider's voice names: their default speaks
        let mut speech = self.fallback.synthesize(text, voice).await?;
        speech.fallback = true;
        Ok(speech)
    }
}

/// Where a [`FallbackTts`] stream is.
enum Streaming {
    /// Waiting for the primary's first piece: on failure the fallback speaks `text` instead.
    First {
        primary: SpeechStream,
        text: String,
        voice: String,
    },
    /// The primary is speaking: a failure now cuts the speech short (what was said stands).
    Rest(SpeechStream),
    Done,
}

impl TextToSpeech for FallbackTts {
    fn synthesize(
        &self,
        text: &str,
        voice: &str,
    ) -> BoxFuture<'static, Result<Speech, BackendError>> {
        let this = self.clone();
        let primary = (!self.skipping()).then(|| self.primary.synthesize(text, voice));
        let text = text.to_owned();
        let voice = voice.to_owned();
        Box::pin(async move {
            if let Some(primary) = primary {
                let error = match tokio::time::timeout(this.budget, primary).await {
                    Ok(Ok(speech)) => return Ok(speech),
                    Ok(Err(e)) => e,
                    Err(_) => BackendError::Timeout,
                };
                this.failed(&error);
            }
            this.fallback(&text, &voice).await
        })
    }

    /// The primary's pieces as they come, each within the budget. If the first does not come,
    /// the fallback speaks the whole text instead; if a later one does not, the speech ends
    /// there with the error. Either way the rest of the call uses the fallback.
    fn synthesize_stream(&self, text: &str, voice: &str) -> SpeechStream {
        let this = self.clone();
        let (text, voice) = (text.to_owned(), voice.to_owned());
        if self.skipping() {
            return Box::pin(futures_util::stream::once(async move {
                this.fallback(&text, &voice).await
            }));
        }
        let first = Streaming::First {
            primary: self.primary.synthesize_stream(&text, &voice),
            text,
            voice,
        };
        Box::pin(futures_util::stream::unfold(
            (this, first),
            |(this, state)| async move {
                let (mut primary, fallback_for) = match state {
                    Streaming::First {
                        primary,
                        text,
                        voice,
                    } => (primary, Some((text, voice))),
                    Streaming::Rest(p) => (p, None),
                    Streaming::Done => return None,
                };
                let error = match tokio::time::timeout(this.budget, primary.next()).await {
                    Ok(Some(Ok(piece))) => {
                        return Some((Ok(piece), (this, Streaming::Rest(primary))));
                    }
                    Ok(None) => return None,
                    Ok(Some(Err(e))) => e,
                    Err(_) => BackendError::Timeout,
                };
                this.failed(&error);
                let item = match fallback_for {
                    Some((text, voice)) => this.fallback(&text, &voice).await,
                    None => Err(error),
                };
                Some((item, (this, Streaming::Done)))
            },
        ))
    }

    fn for_call(&self) -> Option<Arc<dyn TextToSpeech>> {
        Some(Arc::new(Self {
            degraded: Some(Arc::new(AtomicBool::new(false))),
            ..self.clone()
        }))
    }

    /// The primary's, until it failed during the call (the offline voices speak English).
    fn speaks_languages(&self) -> bool {
        !self.skipping() && self.primary.speaks_languages()
    }

    fn voices(&self) -> Vec<String> {
        self.primary.voices()
    }
}
