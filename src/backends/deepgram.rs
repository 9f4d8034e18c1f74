//! Deepgram streaming speech-to-text: one WebSocket per call to `/v1/listen`, reused for every
//! utterance of the call.
//!
//! The socket is opened when the call starts ([`SpeechToText::open_call`]) with
//! `encoding=linear16&sample_rate=16000&channels=1&interim_results=true&endpointing=…&
//! utterance_end_ms=…&smart_format=true` (and `model=` when `RECEPTIONIST_STT_MODEL` is set) and
//! `Authorization: Token KEY`; the places the receptionist's context names go with it as
//! `keyterm=` (Nova-3 models) or `keywords=` (an older Nova, Enhanced or Base model), so that the
//! caller's city and the places they ask about are heard as the call spells them. Only utterance audio is sent, so the socket's audio timeline is the
//! call's utterances back to back: each `Results` message is credited, by the middle of the audio
//! it covers, to the utterance that audio came from. When the engine ends an utterance the client
//! sends `{"type":"Finalize"}`; the utterance's transcript is the concatenation of the `is_final`
//! results for its audio, complete once a final result covers its end (or one comes back
//! `from_finalize`). Interim results (`is_final: false`) are credited the same way, each replacing
//! the previous interim words of the utterances it touches, and dropped once a final result covers
//! them: [`SttSession::partial`] answers at once with the finals so far followed by the latest
//! interim words, which is what the engine judges talk over the agent by (barge-in) and what the
//! end-of-turn check reads. `SpeechStarted`, `UtteranceEnd` and `Metadata` are read and logged
//! (without words). `{"type":"KeepAlive"}` goes out whenever no audio was sent for a while,
//! `{"type":"CloseStream"}` when the call ends.
//!
//! A socket that drops mid-call is reopened (bounded attempts with backoff) and the audio of every
//! utterance not yet transcribed (at most [`MAX_REPLAY_SECS`] each) is sent again, so no turn is
//! lost. If it cannot be reopened, the call's pending and later utterances fail
//! ([`BackendError::Unavailable`]) and the [`FallbackStt`](super::FallbackStt) wrapper takes over.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use super::openai::provider_transcript;
use super::{BackendError, BoxFuture, Heard, SpeechToText, SttCall, SttHint, SttSession};
use crate::config::Secret;
use crate::engine::audio::MulawWidener;

/// Default endpoint.
pub const DEFAULT_URL: &str = "wss://api.deepgram.com/v1/listen";
/// Audio kept per utterance for replay after a reconnect.
pub const MAX_REPLAY_SECS: usize = 30;
const RATE: u64 = 16_000;
const MAX_REPLAY_BYTES: usize = MAX_REPLAY_SECS * RATE as usize * 2;
/// Commands queued from a call's sessions to its socket task (about 20 s of 20 ms frames).
const QUEUE: usize = 1_024;
/// Utterances a call's task tracks at once; older unfinished ones are forgotten.
const MAX_OPEN_UTTERANCES: usize = 8;

/// How to reach Deepgram and how its stream behaves.
#[derive(Clone)]
pub struct DeepgramConfig {
    /// `wss://api.deepgram.com/v1/listen` (or a compatible server).
    pub url: String,
    pub api_key: Secret,
    /// `model=` (e.g. `nova-3`); Deepgram's default when `None`.
    pub model: Option<String>,
    /// `endpointing=` in milliseconds.
    pub endpointing_ms: u32,
    /// `utterance_end_ms=`.
    pub utterance_end_ms: u32,
    /// A `KeepAlive` goes out after this long without audio (Deepgram closes after 10 s).
    pub keepalive: Duration,
    /// Longest wait for an utterance's final results after `Finalize`.
    pub finalize_timeout: Duration,
    /// Longest WebSocket handshake.
    pub connect_timeout: Duration,
    /// Connection attempts after a drop (and at the start) before the call's recognition fails.
    pub connect_attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    pub backoff: Duration,
    /// `detect_language=true`: Deepgram hears the caller's language and reports it
    /// (`detected_language`); set for calls in multilingual mode.
    pub detect_language: bool,
    /// Sent as `X-Request-Id` when the socket opens (the call's id).
    pub request_id: Option<String>,
    /// Words the call is likely to hold (the places of the receptionist's positions), at most
    /// [`MAX_KEYTERMS`]: `keyterm=` each for a Nova-3 model, `keywords=` each of their words
    /// for an older Nova, Enhanced or Base model named in `model` (Deepgram's keyword boosting
    /// takes single words), none for another model or Deepgram's default one (which of the two
    /// it takes is not known here).
    pub keyterms: Vec<String>,
}

/// Key terms a stream opens with (Deepgram takes at most 500 tokens of them).
pub const MAX_KEYTERMS: usize = 50;

impl std::fmt::Debug for DeepgramConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeepgramConfig")
            .field("url", &self.url)
            .field("api_key", &self.api_key)
            .field("model", &self.model)
            .field("endpointing_ms", &self.endpointing_ms)
            .field("utterance_end_ms", &self.utterance_end_ms)
            .finish_non_exhaustive()
    }
}

impl DeepgramConfig {
    pub fn new(url: impl Into<String>, api_key: Secret) -> Self {
        Self {
            url: url.into(),
            api_key,
            model: None,
            endpointing_ms: 300,
            utterance_end_ms: 1_000,
            keepalive: Duration::from_secs(4),
            finalize_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(5),
            connect_attempts: 3,
            backoff: Duration::from_millis(250),
            detect_language: false,
            request_id: None,
            keyterms: Vec::new(),
        }
    }

    /// The listen URL with the stream's parameters.
    pub fn listen_url(&self) -> Result<url::Url, BackendError> {
        let mut url = url::Url::parse(&self.url)
            .map_err(|e| BackendError::Unavailable(format!("DEEPGRAM_URL: {e}")))?;
        if !matches!(url.scheme(), "ws" | "wss") {
            return Err(BackendError::Unavailable(
                "DEEPGRAM_URL must be a ws:// or wss:// URL".into(),
            ));
        }
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("encoding", "linear16")
                .append_pair("sample_rate", "16000")
                .append_pair("channels", "1")
                .append_pair("interim_results", "true")
                .append_pair("endpointing", &self.endpointing_ms.to_string())
                .append_pair("utterance_end_ms", &self.utterance_end_ms.to_string())
                .append_pair("smart_format", "true");
            if let Some(model) = &self.model {
                q.append_pair("model", model);
            }
            if self.detect_language {
                q.append_pair("detect_language", "true");
            }
            let terms = self.keyterms.iter().take(MAX_KEYTERMS);
            match self.model.as_deref() {
                Some(m) if m.starts_with("nova-3") => {
                    for term in terms {
                        q.append_pair("keyterm", term);
                    }
                }
                // the models that take keywords (Deepgram's Whisper, for one, does not)
                Some(m)
                    if ["nova", "enhanced", "base"]
                        .iter()
                        .any(|p| m.starts_with(p)) =>
                {
                    let mut words: Vec<&str> = Vec::new();
                    for word in terms.flat_map(|t| t.split_whitespace()) {
                        if !words.iter().any(|w| w.eq_ignore_ascii_case(word)) {
                            words.push(word);
                            q.append_pair("keywords", word);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(url)
    }
}

/// Deepgram streaming recognition. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DeepgramStt {
    config: Arc<DeepgramConfig>,
}

impl DeepgramStt {
    pub fn new(config: DeepgramConfig) -> Result<Self, BackendError> {
        config.listen_url()?;
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

impl SpeechToText for DeepgramStt {
    /// A session with its own socket (used only without [`open_call`](Self::open_call)).
    fn start(&self, hint: SttHint) -> Box<dyn SttSession> {
        DeepgramCall::open(self.config.clone()).start(hint)
    }

    fn start_in(&self, hint: SttHint, multilingual: bool) -> Box<dyn SttSession> {
        DeepgramCall::open(self.config_for(multilingual, &[])).start(hint)
    }

    fn partials(&self) -> bool {
        true
    }

    fn open_call(&self, multilingual: bool, terms: &[String]) -> Option<Box<dyn SttCall>> {
        Some(Box::new(DeepgramCall::open(
            self.config_for(multilingual, terms),
        )))
    }
}

impl DeepgramStt {
    /// The configuration of a call's socket: with language detection in multilingual mode, and
    /// the call's key terms.
    fn config_for(&self, multilingual: bool, terms: &[String]) -> Arc<DeepgramConfig> {
        if (multilingual && !self.config.detect_language) || !terms.is_empty() {
            Arc::new(DeepgramConfig {
                detect_language: self.config.detect_language || multilingual,
                keyterms: terms.to_vec(),
                ..(*self.config).clone()
            })
        } else {
            self.config.clone()
        }
    }
}

enum Cmd {
    Audio(u64, Vec<u8>),
    Finish(u64, oneshot::Sender<Result<String, BackendError>>),
    /// What was said so far.
    Partial(u64, oneshot::Sender<Result<String, BackendError>>),
    Cancel(u64),
}

/// The recogniser of one call: its socket task runs until the call and all its sessions are gone.
pub struct DeepgramCall {
    tx: mpsc::Sender<Cmd>,
    next: u64,
    dropped: Arc<AtomicU64>,
    /// The language of the newest final result that named one (with `detect_language`).
    language: Arc<std::sync::Mutex<Option<String>>>,
}

impl DeepgramCall {
    /// Start the call's socket task (it connects at once). Needs a Tokio runtime.
    pub fn open(config: Arc<DeepgramConfig>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let language = Arc::new(std::sync::Mutex::new(None));
        // the socket is the call's: it carries the call's request id
        let config = match super::request_id() {
            Some(id) => Arc::new(DeepgramConfig {
                request_id: Some(id.to_string()),
                ..(*config).clone()
            }),
            None => config,
        };
        tokio::spawn(run(config, rx, language.clone()));
        Self {
            tx,
            next: 0,
            dropped: Arc::new(AtomicU64::new(0)),
            language,
        }
    }
}

impl SttCall for DeepgramCall {
    fn start(&mut self, _hint: SttHint) -> Box<dyn SttSession> {
        self.next += 1;
        Box::new(DeepgramSession {
            id: self.next,
            tx: self.tx.clone(),
            finished: false,
            dropped: self.dropped.clone(),
            language: self.language.clone(),
            widen: None,
        })
    }
}

struct DeepgramSession {
    id: u64,
    tx: mpsc::Sender<Cmd>,
    finished: bool,
    dropped: Arc<AtomicU64>,
    language: Arc<std::sync::Mutex<Option<String>>>,
    /// Telephone audio is widened to the connection's 16 kHz as it streams (made at the first
    /// telephone frame).
    widen: Option<Box<MulawWidener>>,
}

impl SttSession for DeepgramSession {
    fn push_phone(&mut self, mulaw: &[u8]) {
        let mut wide = Vec::with_capacity(2 * mulaw.len());
        self.widen
            .get_or_insert_default()
            .widen(mulaw, |pcm| wide.extend_from_slice(pcm));
        self.push(&wide);
    }

    fn push(&mut self, pcm16k: &[i16]) {
        let mut bytes = Vec::with_capacity(pcm16k.len() * 2);
        for s in pcm16k {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        if self.tx.try_send(Cmd::Audio(self.id, bytes)).is_err()
            && self.dropped.fetch_add(1, Ordering::Relaxed) == 0
        {
            tracing::warn!("Deepgram: audio queue full or closed; audio dropped");
        }
    }

    fn finish(mut self: Box<Self>) -> BoxFuture<'static, Result<String, BackendError>> {
        self.finished = true;
        let id = self.id;
        self.ask(|reply| Cmd::Finish(id, reply))
    }

    /// The transcript, and the language of the call's newest final result that named one: its
    /// results came in before the transcript is answered.
    fn finish_heard(self: Box<Self>) -> BoxFuture<'static, Result<Heard, BackendError>> {
        let language = self.language.clone();
        let text = self.finish();
        Box::pin(async move {
            let text = text.await?;
            let language = language.lock().unwrap_or_else(|e| e.into_inner()).clone();
            Ok(Heard { text, language })
        })
    }

    fn partial(&mut self) -> Option<BoxFuture<'static, Result<String, BackendError>>> {
        let id = self.id;
        Some(self.ask(|reply| Cmd::Partial(id, reply)))
    }
}

impl DeepgramSession {
    fn ask(
        &self,
        cmd: impl FnOnce(oneshot::Sender<Result<String, BackendError>>) -> Cmd,
    ) -> BoxFuture<'static, Result<String, BackendError>> {
        let tx = self.tx.clone();
        let (reply, answer) = oneshot::channel();
        let cmd = cmd(reply);
        Box::pin(async move {
            tx.send(cmd)
                .await
                .map_err(|_| BackendError::Unavailable("Deepgram: call closed".into()))?;
            answer
                .await
                .map_err(|_| BackendError::Unavailable("Deepgram: connection task ended".into()))?
        })
    }
}

impl Drop for DeepgramSession {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.tx.try_send(Cmd::Cancel(self.id));
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Words (where on the timeline, text) in timeline order.
fn sorted(words: &[(u64, String)]) -> Vec<&(u64, String)> {
    let mut words: Vec<&(u64, String)> = words.iter().collect();
    words.sort_by_key(|w| w.0);
    words
}

/// Words joined as a transcript.
fn joined(words: Vec<&(u64, String)>) -> String {
    let text: Vec<&str> = words.iter().map(|w| w.1.as_str()).collect();
    provider_transcript(&text.join(" "))
}

/// One utterance as the socket task sees it.
#[derive(Default)]
struct Utterance {
    /// Its first and last audio on the current socket's timeline, in samples (its frames may
    /// be interleaved with another utterance's: `Task::spans` says whose each sample is).
    start: u64,
    end: u64,
    /// Its newest audio, for replay after a reconnect.
    audio: VecDeque<u8>,
    /// Final words credited to it: (where on the timeline, text).
    finals: Vec<(u64, String)>,
    /// The latest interim words credited to it, not yet covered by a final result.
    interim: Vec<(u64, String)>,
    /// Final results have covered its audio up to here.
    covered_to: u64,
    /// Waiting for its transcript since `Finalize` was sent.
    finishing: Option<(oneshot::Sender<Result<String, BackendError>>, Instant)>,
    /// A message arrived after `Finalize`.
    heard_since_finalize: bool,
}

impl Utterance {
    fn transcript(&self) -> String {
        joined(sorted(&self.finals))
    }

    /// What was said so far: the finals, then the latest interim words.
    fn partial(&self) -> String {
        let mut words = sorted(&self.finals);
        words.extend(sorted(&self.interim));
        joined(words)
    }

    /// Final results reach the end of its audio.
    fn covered(&self, tolerance: u64) -> bool {
        self.end <= self.start || self.covered_to + tolerance >= self.end
    }
}

struct Task {
    config: Arc<DeepgramConfig>,
    /// Shared with the call's sessions (see [`DeepgramCall`]).
    language: Arc<std::sync::Mutex<Option<String>>>,
    utterances: BTreeMap<u64, Utterance>,
    /// Whose audio each stretch of the current socket's timeline is: (start, end, utterance).
    spans: VecDeque<(u64, u64, u64)>,
    /// Samples sent on the current socket.
    sent: u64,
    last_sent: Instant,
    /// The socket could not be (re)opened: every utterance fails from now on.
    dead: Option<BackendError>,
}

async fn run(
    config: Arc<DeepgramConfig>,
    mut rx: mpsc::Receiver<Cmd>,
    language: Arc<std::sync::Mutex<Option<String>>>,
) {
    let mut task = Task {
        language,
        config,
        utterances: BTreeMap::new(),
        spans: VecDeque::new(),
        sent: 0,
        last_sent: Instant::now(),
        dead: None,
    };
    let mut socket = task.reconnect(&mut rx, None).await;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let Some(ws) = socket.as_mut() else {
            // no socket: answer commands with the failure until the call ends
            match rx.recv().await {
                Some(cmd) => task.on_dead(cmd),
                None => return,
            }
            continue;
        };
        let lost = tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(cmd) => task.on_cmd(ws, cmd).await.is_err(),
                None => {
                    close(ws).await;
                    return;
                }
            },
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    task.on_message(&text);
                    false
                }
                Some(Ok(Message::Close(frame))) => {
                    tracing::warn!(reason = ?frame.map(|f| f.reason.to_string()), "Deepgram closed the stream");
                    true
                }
                Some(Ok(_)) => false,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "Deepgram stream failed");
                    true
                }
                None => true,
            },
            _ = tick.tick() => task.on_tick(ws).await.is_err(),
        };
        if lost {
            socket = task.reconnect(&mut rx, socket.take()).await;
        }
    }
}

async fn close(ws: &mut Socket) {
    let _ = ws.send(Message::text(r#"{"type":"CloseStream"}"#)).await;
    // Deepgram answers with the last results and Metadata, then closes
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(text) = &msg {
                log_message(text);
            }
        }
    })
    .await;
    let _ = ws.close(None).await;
}

/// Metadata and other messages without words, at debug level.
fn log_message(text: &str) {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        match v.get("type").and_then(Value::as_str) {
            Some("Metadata") => {
                let request_id = v.get("request_id").and_then(Value::as_str).unwrap_or("");
                let duration = v.get("duration").and_then(Value::as_f64).unwrap_or(0.0);
                tracing::debug!(request_id, duration, "Deepgram stream metadata");
            }
            Some(kind) => tracing::trace!(kind, "Deepgram message"),
            None => {}
        }
    }
}

impl Task {
    async fn send(&mut self, ws: &mut Socket, msg: Message) -> Result<(), tungstenite::Error> {
        ws.send(msg).await?;
        self.last_sent = Instant::now();
        Ok(())
    }

    async fn on_cmd(&mut self, ws: &mut Socket, cmd: Cmd) -> Result<(), tungstenite::Error> {
        match cmd {
            Cmd::Audio(id, bytes) => {
                if !self.utterances.contains_key(&id) {
                    while self.utterances.len() >= MAX_OPEN_UTTERANCES {
                        self.utterances.pop_first();
                    }
                    self.utterances.insert(
                        id,
                        Utterance {
                            start: self.sent,
                            end: self.sent,
                            covered_to: self.sent,
                            ..Utterance::default()
                        },
                    );
                }
                let samples = bytes.len() as u64 / 2;
                if let Some(u) = self.utterances.get_mut(&id) {
                    u.end = self.sent + samples;
                    u.audio.extend(&bytes);
                    let over = u.audio.len().saturating_sub(MAX_REPLAY_BYTES);
                    u.audio.drain(..over);
                }
                self.add_span(id, samples);
                self.send(ws, Message::Binary(bytes.into())).await?;
            }
            Cmd::Finish(id, reply) => {
                let Some(u) = self.utterances.get_mut(&id) else {
                    // no audio ever arrived
                    let _ = reply.send(Ok(String::new()));
                    return Ok(());
                };
                u.finishing = Some((reply, Instant::now() + self.config.finalize_timeout));
                u.heard_since_finalize = false;
                tracing::debug!(
                    id,
                    start = u.start,
                    end = u.end,
                    "Deepgram utterance finishing"
                );
                self.resolve();
                if self.utterances.contains_key(&id) {
                    self.send(ws, Message::text(r#"{"type":"Finalize"}"#))
                        .await?;
                }
            }
            Cmd::Partial(id, reply) => {
                let _ = reply.send(Ok(self.partial(id)));
            }
            Cmd::Cancel(id) => {
                let u = self.utterances.remove(&id);
                tracing::debug!(
                    id,
                    start = u.as_ref().map(|u| u.start),
                    end = u.as_ref().map(|u| u.end),
                    "Deepgram utterance cancelled"
                );
            }
        }
        Ok(())
    }

    fn on_dead(&mut self, cmd: Cmd) {
        let err = self
            .dead
            .clone()
            .unwrap_or_else(|| BackendError::Unavailable("Deepgram: no connection".into()));
        match cmd {
            Cmd::Finish(id, reply) => {
                self.utterances.remove(&id);
                let _ = reply.send(Err(err));
            }
            Cmd::Partial(_, reply) => {
                let _ = reply.send(Err(err));
            }
            Cmd::Audio(..) | Cmd::Cancel(_) => {}
        }
    }

    async fn on_tick(&mut self, ws: &mut Socket) -> Result<(), tungstenite::Error> {
        let now = Instant::now();
        // utterances whose finals never completed: what arrived is the transcript if the
        // stream is alive, else a timeout
        let expired: Vec<u64> = self
            .utterances
            .iter()
            .filter(|(_, u)| u.finishing.as_ref().is_some_and(|f| f.1 <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(mut u) = self.utterances.remove(&id)
                && let Some((reply, _)) = u.finishing.take()
            {
                let result = if u.heard_since_finalize {
                    tracing::debug!(
                        "Deepgram: finals incomplete at the deadline; using what arrived"
                    );
                    Ok(u.transcript())
                } else {
                    Err(BackendError::Timeout)
                };
                let _ = reply.send(result);
            }
        }
        if now.duration_since(self.last_sent) >= self.config.keepalive {
            self.send(ws, Message::text(r#"{"type":"KeepAlive"}"#))
                .await?;
        }
        Ok(())
    }

    fn on_message(&mut self, text: &str) {
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "Deepgram sent a malformed message");
                return;
            }
        };
        for u in self.utterances.values_mut() {
            if u.finishing.is_some() {
                u.heard_since_finalize = true;
            }
        }
        match v.get("type").and_then(Value::as_str) {
            Some("Results") => self.on_results(&v),
            Some("UtteranceEnd") => {
                // every word up to last_word_end has come as a final result: an utterance being
                // finished whose finals reach that word is complete
                let last = seconds_to_samples(
                    v.get("last_word_end")
                        .and_then(Value::as_f64)
                        .unwrap_or(0.0),
                );
                let done: Vec<u64> = self
                    .utterances
                    .iter()
                    .filter(|(_, u)| {
                        u.finishing.is_some()
                            && u.start < last
                            && last <= u.end
                            && u.covered_to >= last
                    })
                    .map(|(id, _)| *id)
                    .collect();
                for id in done {
                    self.answer(id);
                }
                self.resolve();
            }
            Some("SpeechStarted") => tracing::trace!("Deepgram: speech started"),
            Some("Error") | Some("error") => {
                let description = v.get("description").and_then(Value::as_str).unwrap_or("");
                tracing::warn!(description, "Deepgram reported an error");
            }
            _ => log_message(text),
        }
    }

    fn on_results(&mut self, v: &Value) {
        let is_final = v.get("is_final").and_then(Value::as_bool).unwrap_or(false);
        let start = v.get("start").and_then(Value::as_f64).unwrap_or(0.0);
        let duration = v.get("duration").and_then(Value::as_f64).unwrap_or(0.0);
        let from_finalize = v
            .get("from_finalize")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let alternative = v.pointer("/channel/alternatives/0");
        // `detect_language`: `channel.detected_language`; a multilingual model names the
        // languages of the words (`alternatives[0].languages`, dominant first)
        let language = v
            .pointer("/channel/detected_language")
            .or_else(|| alternative.and_then(|a| a.pointer("/languages/0")))
            .and_then(Value::as_str)
            .and_then(super::language_code);
        if is_final && let Some(code) = language {
            *self.language.lock().unwrap_or_else(|e| e.into_inner()) = Some(code);
        }
        let text = alternative
            .and_then(|a| a.get("transcript"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let (s, e) = (
            seconds_to_samples(start),
            seconds_to_samples(start + duration),
        );
        // who said what: each word by its own timing when the result has them, else the whole
        // result by its middle; words over audio no live utterance owns (cancelled) are dropped
        let timed: Option<Vec<(u64, &str)>> = alternative
            .and_then(|a| a.get("words"))
            .and_then(Value::as_array)
            .filter(|w| !w.is_empty())
            .and_then(|words| {
                words
                    .iter()
                    .map(|w| {
                        let ws = seconds_to_samples(w.get("start")?.as_f64()?);
                        let we = seconds_to_samples(w.get("end")?.as_f64()?);
                        let word = w
                            .get("punctuated_word")
                            .or_else(|| w.get("word"))?
                            .as_str()?;
                        Some(((ws + we) / 2, word))
                    })
                    .collect()
            });
        let words: Vec<(u64, &str)> = timed.unwrap_or_else(|| {
            if text.trim().is_empty() {
                Vec::new()
            } else {
                vec![((s + e) / 2, text)]
            }
        });
        let mut owners = Vec::new();
        let mut credited = Vec::with_capacity(words.len());
        for (at, word) in words {
            if let Some(id) = self.owner(at) {
                owners.push(id);
                credited.push((id, at, word));
            }
        }
        if text.trim().is_empty()
            && let Some(id) = self.owner((s + e) / 2)
        {
            owners.push(id);
        }
        if !is_final {
            // interim: the newest hypothesis for this window replaces the last one
            for (_, u) in self.utterances.iter_mut() {
                if s < u.end && e > u.start {
                    u.interim.clear();
                }
            }
            for (id, at, word) in credited {
                if let Some(u) = self.utterances.get_mut(&id) {
                    u.interim.push((at, word.to_string()));
                }
            }
            return;
        }
        for (id, at, word) in credited {
            if let Some(u) = self.utterances.get_mut(&id) {
                u.finals.push((at, word.to_string()));
            }
        }
        tracing::debug!(s, e, from_finalize, owners = ?owners, "Deepgram final result");
        for (id, u) in self.utterances.iter_mut() {
            // the result's window has been heard, for every utterance it overlaps
            if s < u.end && e > u.start {
                u.covered_to = u.covered_to.max(e);
                // interim words this final result stands for
                u.interim.retain(|w| w.0 >= e);
            }
            // the answer to a Finalize: everything sent before it is final
            if from_finalize && u.finishing.is_some() && (owners.contains(id) || e >= u.end) {
                u.covered_to = u.covered_to.max(u.end);
            }
        }
        self.resolve();
    }

    /// Record that `samples` of utterance `id` were just sent.
    fn add_span(&mut self, id: u64, samples: u64) {
        match self.spans.back_mut() {
            Some(last) if last.2 == id && last.1 == self.sent => last.1 += samples,
            _ => self.spans.push_back((self.sent, self.sent + samples, id)),
        }
        self.sent += samples;
        // stretches of forgotten utterances are no longer needed
        while self
            .spans
            .front()
            .is_some_and(|f| !self.utterances.contains_key(&f.2) || self.spans.len() > 4_096)
        {
            self.spans.pop_front();
        }
    }

    /// The live utterance whose audio holds sample `at` (the end of the timeline counts as the
    /// last stretch's).
    fn owner(&self, at: u64) -> Option<u64> {
        let id = self
            .spans
            .iter()
            .rev()
            .find(|sp| sp.0 <= at && at < sp.1)
            .or_else(|| self.spans.back().filter(|sp| at == sp.1))
            .map(|sp| sp.2)?;
        self.utterances.contains_key(&id).then_some(id)
    }

    /// What utterance `id` said so far ("" before its audio).
    fn partial(&self, id: u64) -> String {
        self.utterances
            .get(&id)
            .map(Utterance::partial)
            .unwrap_or_default()
    }

    /// Answer every finishing utterance whose finals are complete.
    fn resolve(&mut self) {
        // 1 ms: the rounding of Deepgram's times in seconds. No more: a final result ending even
        // a little before the audio's end may leave words to come.
        let tolerance = RATE / 1000;
        let done: Vec<u64> = self
            .utterances
            .iter()
            .filter(|(_, u)| u.finishing.is_some() && u.covered(tolerance))
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            self.answer(id);
        }
    }

    /// Send an utterance its transcript and forget it.
    fn answer(&mut self, id: u64) {
        if let Some(mut u) = self.utterances.remove(&id)
            && let Some((reply, _)) = u.finishing.take()
        {
            let _ = reply.send(Ok(u.transcript()));
        }
    }

    /// Open a socket (again): bounded attempts with backoff, then replay every pending
    /// utterance's audio. `None` (and the call's recognition failed) when it cannot.
    async fn reconnect(
        &mut self,
        rx: &mut mpsc::Receiver<Cmd>,
        old: Option<Socket>,
    ) -> Option<Socket> {
        drop(old);
        let reconnecting = self.dead.is_none() && self.sent > 0;
        let mut last = BackendError::Unavailable("Deepgram: not connected".into());
        for attempt in 1..=self.config.connect_attempts.max(1) {
            if attempt > 1 {
                let wait = self
                    .config
                    .backoff
                    .saturating_mul(1 << (attempt - 2).min(8));
                tokio::time::sleep(wait).await;
            }
            match connect(&self.config).await {
                Ok(mut ws) => {
                    if reconnecting {
                        tracing::info!(
                            attempt,
                            "Deepgram stream reopened; replaying pending audio"
                        );
                    }
                    if self.replay(&mut ws).await.is_ok() {
                        return Some(ws);
                    }
                    last = BackendError::Unavailable("Deepgram: replay failed".into());
                }
                Err(e) => {
                    let permanent = matches!(e, BackendError::Failed(_));
                    tracing::warn!(attempt, error = %e, "Deepgram connection failed");
                    last = e;
                    if permanent {
                        break;
                    }
                }
            }
            // commands that arrived meanwhile: keep the audio for the replay, and let
            // finishes wait for the next attempt
            while let Ok(cmd) = rx.try_recv() {
                self.queue_offline(cmd);
            }
        }
        tracing::warn!(error = %last, "Deepgram unavailable for the rest of the call");
        for (_, mut u) in std::mem::take(&mut self.utterances) {
            if let Some((reply, _)) = u.finishing.take() {
                let _ = reply.send(Err(last.clone()));
            }
        }
        self.dead = Some(last);
        None
    }

    /// A command while there is no socket: audio is buffered for the replay.
    fn queue_offline(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Audio(id, bytes) => {
                let u = self.utterances.entry(id).or_default();
                u.audio.extend(&bytes);
                let over = u.audio.len().saturating_sub(MAX_REPLAY_BYTES);
                u.audio.drain(..over);
            }
            Cmd::Finish(id, reply) => match self.utterances.get_mut(&id) {
                Some(u) => {
                    u.finishing = Some((reply, Instant::now() + self.config.finalize_timeout));
                }
                None => {
                    let _ = reply.send(Ok(String::new()));
                }
            },
            // reconnecting: what was heard before the drop
            Cmd::Partial(id, reply) => {
                let _ = reply.send(Ok(self.partial(id)));
            }
            Cmd::Cancel(id) => {
                self.utterances.remove(&id);
            }
        }
    }

    /// Send every pending utterance's audio on a new socket, in order, re-crediting results.
    async fn replay(&mut self, ws: &mut Socket) -> Result<(), tungstenite::Error> {
        self.sent = 0;
        self.spans.clear();
        let mut finalize = false;
        let ids: Vec<u64> = self.utterances.keys().copied().collect();
        for id in ids {
            let Some(u) = self.utterances.get_mut(&id) else {
                continue;
            };
            u.finals.clear();
            u.start = self.sent;
            u.covered_to = self.sent;
            let audio: Vec<u8> = u.audio.iter().copied().collect();
            let samples = audio.len() as u64 / 2;
            u.end = u.start + samples;
            if let Some(f) = u.finishing.as_mut() {
                // a fresh deadline: the replayed audio must be recognised again
                f.1 = Instant::now() + self.config.finalize_timeout;
                finalize = true;
            }
            self.add_span(id, samples);
            for chunk in audio.chunks(RATE as usize / 5 * 2) {
                ws.send(Message::Binary(chunk.to_vec().into())).await?;
            }
        }
        if finalize {
            ws.send(Message::text(r#"{"type":"Finalize"}"#)).await?;
        }
        self.last_sent = Instant::now();
        self.resolve();
        Ok(())
    }
}

fn seconds_to_samples(s: f64) -> u64 {
    if s.is_finite() && s > 0.0 {
        (s * RATE as f64).round() as u64
    } else {
        0
    }
}

/// Open the listen socket. A 4xx answer other than 429 is permanent ([`BackendError::Failed`]).
async fn connect(config: &DeepgramConfig) -> Result<Socket, BackendError> {
    let url = config.listen_url()?;
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| BackendError::Failed(format!("Deepgram request: {e}")))?;
    let auth = format!("Token {}", config.api_key.expose())
        .parse()
        .map_err(|_| BackendError::Failed("DEEPGRAM_API_KEY is not a valid header value".into()))?;
    request.headers_mut().insert("Authorization", auth);
    if let Some(id) = config.request_id.as_deref().and_then(|id| id.parse().ok()) {
        request.headers_mut().insert("x-request-id", id);
    }
    match tokio::time::timeout(
        config.connect_timeout,
        tokio_tungstenite::connect_async(request),
    )
    .await
    {
        Err(_) => Err(BackendError::Timeout),
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tungstenite::Error::Http(response))) => {
            let status = response.status();
            let msg = format!("Deepgram: HTTP {status} on connect");
            if status.as_u16() == 429 || status.is_server_error() {
                Err(BackendError::Unavailable(msg))
            } else {
                Err(BackendError::Failed(msg))
            }
        }
        Ok(Err(e)) => Err(BackendError::Unavailable(format!("Deepgram: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> Task {
        Task {
            language: Default::default(),
            config: Arc::new(DeepgramConfig::new(DEFAULT_URL, Secret::new("k"))),
            utterances: BTreeMap::new(),
            spans: VecDeque::new(),
            sent: 0,
            last_sent: Instant::now(),
            dead: None,
        }
    }

    fn audio(task: &mut Task, id: u64, samples: u64) {
        let sent = task.sent;
        let u = task.utterances.entry(id).or_insert_with(|| Utterance {
            start: sent,
            end: sent,
            covered_to: sent,
            ..Utterance::default()
        });
        u.end = sent + samples;
        task.add_span(id, samples);
    }

    /// The call's places go to Nova-3 as key terms, to an older model as single keywords, and
    /// to Deepgram's default model not at all (it may be either).
    #[test]
    fn the_places_of_the_positions_open_the_stream() {
        let places = ["Mesa".to_string(), "San Tan Valley".into(), "mesa".into()];
        let with = |model: Option<&str>| {
            let config = DeepgramConfig {
                model: model.map(String::from),
                keyterms: places.to_vec(),
                ..DeepgramConfig::new(DEFAULT_URL, Secret::new("k"))
            };
            let url = config.listen_url().unwrap();
            let of = |key: &str| -> Vec<String> {
                url.query_pairs()
                    .filter(|(k, _)| k == key)
                    .map(|(_, v)| v.into_owned())
                    .collect()
            };
            (of("keyterm"), of("keywords"))
        };
        let (keyterms, keywords) = with(Some("nova-3-general"));
        assert_eq!(keyterms, ["Mesa", "San Tan Valley", "mesa"]);
        assert!(keywords.is_empty());
        let (keyterms, keywords) = with(Some("nova-2"));
        assert!(keyterms.is_empty());
        assert_eq!(keywords, ["Mesa", "San", "Tan", "Valley"]);
        assert_eq!(with(None), (vec![], vec![]));
        assert_eq!(with(Some("whisper-medium")), (vec![], vec![]));
        // a call's socket gets them with language detection kept
        let stt = DeepgramStt::new(DeepgramConfig::new(DEFAULT_URL, Secret::new("k"))).unwrap();
        let config = stt.config_for(true, &places[..1]);
        assert!(config.detect_language);
        assert_eq!(config.keyterms, ["Mesa"]);
        assert!(Arc::ptr_eq(&stt.config_for(false, &[]), &stt.config));
    }

    /// Words are credited by their own timings, so frames of another utterance interleaved on
    /// the timeline (a capture the engine later discards) neither steal nor receive them.
    #[tokio::test]
    async fn words_go_to_the_utterance_whose_audio_they_are_in() {
        let mut t = task();
        audio(&mut t, 1, 16_000); // 0.0 - 1.0 s
        audio(&mut t, 2, 320); // a stray frame of another capture
        audio(&mut t, 3, 16_000); // 1.02 - 2.02 s
        audio(&mut t, 2, 320);
        let (tx, mut rx) = oneshot::channel();
        t.utterances.get_mut(&3).unwrap().finishing =
            Some((tx, Instant::now() + Duration::from_secs(3)));
        let result = serde_json::json!({
            "type": "Results", "is_final": true, "from_finalize": false,
            "start": 0.0, "duration": 1.5,
            "channel": {"alternatives": [{"transcript": "Hello. Four",
                "words": [
                    {"word": "hello", "punctuated_word": "Hello.", "start": 0.1, "end": 0.3},
                    {"word": "four", "punctuated_word": "Four", "start": 1.2, "end": 1.4}
                ]}]}
        });
        t.on_message(&result.to_string());
        // not complete yet: its audio runs to 2.02 s
        assert!(rx.try_recv().is_err());
        let flush = serde_json::json!({
            "type": "Results", "is_final": true, "from_finalize": true,
            "start": 1.5, "duration": 0.54,
            "channel": {"alternatives": [{"transcript": "years.",
                "words": [{"word": "years", "punctuated_word": "years.", "start": 1.6, "end": 1.9}]}]}
        });
        t.on_message(&flush.to_string());
        assert_eq!(rx.try_recv().unwrap().unwrap(), "four years");
        assert_eq!(t.utterances[&1].transcript(), "hello");
        assert_eq!(t.utterances[&2].transcript(), "");
    }

    /// Interim results give what was said so far at once; each replaces the last for its window,
    /// and a final result takes over the words it covers.
    #[tokio::test]
    async fn partials_are_the_finals_then_the_latest_interim_words() {
        let mut t = task();
        audio(&mut t, 1, 32_000); // 0.0 - 2.0 s
        let result = |is_final: bool, start: f64, duration: f64, words: &[(&str, f64)]| {
            let words: Vec<_> = words
                .iter()
                .map(|(w, at)| serde_json::json!({"word": w, "start": at, "end": at + 0.2}))
                .collect();
            serde_json::json!({
                "type": "Results", "is_final": is_final, "start": start, "duration": duration,
                "channel": {"alternatives": [{"transcript": "", "words": words}]}
            })
            .to_string()
        };
        assert_eq!(t.utterances[&1].partial(), "");
        t.on_message(&result(false, 0.0, 0.6, &[("wait", 0.1)]));
        assert_eq!(t.utterances[&1].partial(), "wait");
        // a newer hypothesis for the same window replaces it
        t.on_message(&result(
            false,
            0.0,
            0.9,
            &[("wait", 0.1), ("a", 0.4), ("minute", 0.6)],
        ));
        assert_eq!(t.utterances[&1].partial(), "wait a minute");
        // the first words become final; the rest is still interim
        t.on_message(&result(true, 0.0, 0.5, &[("wait", 0.1)]));
        t.on_message(&result(
            false,
            0.5,
            0.8,
            &[("a", 0.6), ("minute", 0.8), ("please", 1.1)],
        ));
        assert_eq!(t.utterances[&1].partial(), "wait a minute please");
        assert_eq!(
            t.utterances[&1].transcript(),
            "wait",
            "interim words are not the transcript"
        );

        // the command path answers at once
        let (tx, rx) = oneshot::channel();
        t.on_dead(Cmd::Partial(1, tx));
        assert!(
            rx.await.unwrap().is_err(),
            "no socket: an error, not a stale answer"
        );
    }
}
