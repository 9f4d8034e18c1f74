//! The per-call driver: the only code that reads the clock, touches the socket or spawns tasks for
//! a call. It turns carrier messages and backend results into engine inputs, and carries out the
//! engine's outputs: media/mark/clear to the carrier, synthesis and recognition requests, recording
//! chunks, persisted events, and the end of the call.
//!
//! The driver is carrier-neutral: a carrier's media stream goes through its sans-IO codec
//! (`engine::media::Codec`) and the call's transcoders, so one loop serves every carrier
//! ([`run_carrier`]); each carrier's HTTP side is in `server/carriers/`. The browser's test call
//! (`Wire::Web`) has its own small JSON-and-PCM protocol.
//!
//! One task per call. Every queue it owns is bounded: backend results (64, producers wait),
//! persisted events (unbounded, never waited on: bounded by what one call says, a few records per
//! turn for at most the maximum call length; the persister takes each into the database or the
//! call's journal within `persist::ATTEMPT_TIMEOUT`), recording chunks (shared, bounded,
//! never waited on: a chunk that finds it full is written as silence later, see
//! `recording::Recorder`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::AppState;
use super::persist::{HandOver, Persist, persist_call};
use super::socket::{MediaSocket, RecvCoalescer};
use crate::backends::{BackendError, SttCall, SttHint, SttSession};
use crate::engine::call::Timing;
use crate::engine::dialogue::{Expect, closing_thanks};
use crate::engine::media::{
    Carrier, CarrierCodec, Codec, Handled, Inbound as MediaIn, MediaSession, Msg, StreamStart,
};
use crate::engine::{CallEngine, EngineConfig, Input, Output, ToCaller};
use crate::model::{CallEvent, EndReason, QuestionKind};
use crate::store::{CallStatus, now_ms};

/// How long a new socket may take to send a valid `start`.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages tolerated before `start` (Twilio sends one: `connected`).
const MAX_MESSAGES_BEFORE_START: usize = 500;
const STT_FINISH_TIMEOUT: Duration = Duration::from_secs(10);
const TTS_TIMEOUT: Duration = Duration::from_secs(8);
/// The longest a language model consultation runs (the engine gives up on it much earlier).
const MODEL_TIMEOUT: Duration = Duration::from_secs(30);
/// Socket messages handled per wake-up before the engine's outputs are carried out.
const MAX_MESSAGES_PER_WAKE: usize = 64;

///
/// Each call's channel keeps a block of 32 of these for the whole call, so the rare large ones
/// (a model's understanding, a transcript) are boxed: 112 → 48 bytes a slot, 3.5 → 1.5 KiB a
/// call.
enum BackendEvent {
    Understood {
        consult: u64,
        result: Box<Result<crate::engine::dialogue::model::Understanding, BackendError>>,
    },
    ModelText {
        consult: u64,
        text: String,
    },
    ModelDone {
        consult: u64,
        result: Result<(), BackendError>,
    },
    /// A piece of the speech's audio (`last`: the end of it, empty).
    TtsPiece {
        speech: u64,
        mulaw: Arc<[u8]>,
        last: bool,
    },
    TtsFailed {
        speech: u64,
        error: BackendError,
    },
    Stt {
        utterance: u64,
        /// What was heard, and what the words mean (with a sentence encoder).
        heard: Box<Heard>,
    },
    TurnChecked {
        utterance: u64,
        complete: Option<bool>,
        text: Option<String>,
    },
    Partial {
        utterance: u64,
        text: String,
    },
}

/// What the recogniser heard of an utterance, and what the words mean (with a sentence encoder).
type Heard = (
    Result<crate::backends::Heard, BackendError>,
    Option<Arc<[f32]>>,
);

/// Why a session never became a call.
#[derive(Debug)]
enum StartError {
    Closed,
    Timeout,
    Protocol(#[allow(dead_code)] String),
}

/// Read until a valid start, dropping media that comes before it.
async fn wait_for_start(
    socket: &mut WebSocket,
    codec: &mut Codec,
) -> Result<StreamStart, StartError> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let mut dropped_media = 0usize;
    for _ in 0..MAX_MESSAGES_BEFORE_START {
        let msg = match tokio::time::timeout_at(deadline, socket.recv()).await {
            Err(_) => return Err(StartError::Timeout),
            Ok(None) => return Err(StartError::Closed),
            Ok(Some(Err(e))) => return Err(StartError::Protocol(format!("socket error: {e}"))),
            Ok(Some(Ok(m))) => m,
        };
        let parsed = match &msg {
            Message::Text(text) => codec.parse(Msg::Text(text.as_str())),
            Message::Binary(bytes) => codec.parse(Msg::Binary(bytes)),
            Message::Close(_) => return Err(StartError::Closed),
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        match parsed {
            Ok(MediaIn::Start(start)) => {
                if dropped_media > 0 {
                    tracing::debug!(dropped_media, "media before start dropped");
                }
                return Ok(*start);
            }
            Ok(MediaIn::Media { .. }) => dropped_media += 1,
            Ok(MediaIn::Stop) => return Err(StartError::Closed),
            Ok(_) => {}
            Err(e) => {
                return Err(StartError::Protocol(format!(
                    "bad message before start: {e}"
                )));
            }
        }
    }
    Err(StartError::Protocol(
        "too many messages before start".into(),
    ))
}

/// One consultation of the language model, its results sent to the call's loop. The engine keeps
/// the deadline; the model's own bound here only stops a task nobody waits for any more.
async fn consult_model(
    llm: crate::backends::llm::LanguageModel,
    settings: Arc<crate::model::ReceptionistSettings>,
    turn: String,
    consult: u64,
    request: crate::engine::dialogue::model::ModelRequest,
    tx: mpsc::Sender<BackendEvent>,
) {
    use crate::engine::dialogue::model::ModelRequest;
    let _waiting = super::threads::WaitOnThread::enter();
    match request {
        ModelRequest::Understand(r) => {
            let result =
                match tokio::time::timeout(MODEL_TIMEOUT, llm.understand(&settings, &r, &turn))
                    .await
                {
                    Ok(r) => r,
                    Err(_) => Err(BackendError::Timeout),
                };
            let _ = tx
                .send(BackendEvent::Understood {
                    consult,
                    result: Box::new(result),
                })
                .await;
        }
        ModelRequest::Answer(r) => {
            let streamed = async {
                let mut stream = llm.answer(&settings, &r, &turn).await?;
                while let Some(text) = stream.next_text().await? {
                    if tx
                        .send(BackendEvent::ModelText { consult, text })
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Ok::<(), BackendError>(())
            };
            let result = match tokio::time::timeout(MODEL_TIMEOUT, streamed).await {
                Ok(r) => r,
                Err(_) => Err(BackendError::Timeout),
            };
            let _ = tx.send(BackendEvent::ModelDone { consult, result }).await;
        }
    }
}

/// Whether a socket error means the connection went away (reset, closed without a close frame)
/// rather than the peer breaking the protocol (oversized or malformed frames).
fn is_disconnect(e: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    match e.into_inner().downcast::<Error>() {
        Ok(e) => matches!(
            *e,
            Error::ConnectionClosed
                | Error::AlreadyClosed
                | Error::Io(_)
                | Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        ),
        Err(_) => false,
    }
}

/// Whether a stream's `start` belongs to `call`, the call its upgrade or its parameters named:
/// the `callId`/`token` parameters (where the carrier passed them) match it, the carrier's call
/// id is the one the webhook stored (Vonage's socket has none: its upgrade credential and NCCO
/// headers vouch instead), the carrier is the call's, and the call has not started.
fn start_matches(start: &StreamStart, call: &crate::store::CallRow, upgrade_checked: bool) -> bool {
    let params = &start.custom_parameters;
    let id_ok = params.get("callId").is_none_or(|id| *id == call.id);
    let token_ok = match params.get("token") {
        Some(token) => super::carriers::constant_time_eq(
            call.token_hash.as_bytes(),
            super::carriers::sha256_hex(token).as_bytes(),
        ),
        // a carrier that cannot pass parameters relies on the upgrade's credential
        None => upgrade_checked,
    };
    let carrier_call_ok = match start.call_id.as_deref() {
        Some(id) => id == call.call_sid,
        None => start.carrier == Carrier::Vonage && upgrade_checked,
    };
    id_ok
        && token_ok
        && carrier_call_ok
        && call.carrier == start.carrier.as_str()
        && call.status == CallStatus::Accepted
}

/// Run one carrier media session to its end: wait for its `start`, check it against the call
/// (`call`: the one the upgrade's credential named; `None` for Twilio, whose signed upgrade names
/// no call and whose `start` parameters do), then run the call. `codec` is the carrier's, set up
/// as the answer asked (Telnyx: the bidirectional codec).
#[allow(clippy::manual_async_fn)] // on purpose: see the comment in the body
pub fn run_carrier(
    state: AppState,
    mut socket: WebSocket,
    mut codec: Codec,
    call: Option<crate::store::CallRow>,
    media_socket: MediaSocket,
) -> impl std::future::Future<Output = ()> {
    // a block, not an `async fn`: an async fn keeps its arguments twice for the whole call (as
    // captured and as moved into its locals), about 1.3 KB here (`-Zprint-type-sizes`)
    async move {
        // until the greeting goes out, the thread handles this call as it comes: its `start`
        // and the lookups after it would each wait out a batched wake-up (`threads.rs`)
        let starting = super::threads::WaitOnThread::enter();
        let carrier = codec.carrier();
        let start = match wait_for_start(&mut socket, &mut codec).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(carrier = carrier.as_str(), reason = ?e, "media session ended before a valid start");
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
        };
        let upgrade_checked = call.is_some();
        let call = match call {
            Some(c) => c,
            None => {
                let Some(call_id) = start.custom_parameters.get("callId") else {
                    tracing::warn!(
                        carrier = carrier.as_str(),
                        "media session without callId/token parameters: refused"
                    );
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                };
                let store = state.store.clone();
                let id = call_id.clone();
                match state
                    .on_background(async move { store.call_by_id(&id).await })
                    .await
                {
                    Ok(Some(c)) => c,
                    Ok(None) => {
                        tracing::warn!(call = %call_id, "media session for an unknown call: refused");
                        let _ = socket.send(Message::Close(None)).await;
                        return;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "call lookup failed");
                        let _ = socket.send(Message::Close(None)).await;
                        return;
                    }
                }
            }
        };
        let call_id = call.id.clone();
        if !start_matches(&start, &call, upgrade_checked) {
            tracing::warn!(call = %call_id, carrier = carrier.as_str(), "media session token, call id, carrier or state mismatch: refused");
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
        let session = match MediaSession::new(codec, &start) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(call = %call_id, error = %e, "media session with an unusable codec: refused");
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
        };
        let wire = Wire::Carrier(Box::new(CarrierWire {
            session,
            stream_id: start.stream_id,
            coalescer: RecvCoalescer::new(media_socket, Instant::now()),
            gaps: Default::default(),
        }));
        run_call(state, socket, call, wire, starting).await;
    }
}

/// Run a browser test call (`GET /web/call`, already authorised) to its end.
pub async fn run_web(state: AppState, socket: WebSocket, call: crate::store::CallRow) {
    let starting = super::threads::WaitOnThread::enter();
    run_call(state, socket, call, Wire::Web, starting).await;
}

/// How long a call's socket waits, after its close, for the peer's close.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// How a call's audio and control messages travel on its socket.
enum Wire {
    /// A carrier's media stream, through its sans-IO codec and the call's transcoders.
    Carrier(Box<CarrierWire>),
    /// The dashboard's test call: binary frames of PCM16LE 8 kHz both ways, JSON text frames for
    /// marks, clears, DTMF, hang-up, live transcript lines and the end.
    Web,
}

impl Wire {
    fn stream_id(&self) -> &str {
        match self {
            Wire::Carrier(c) => &c.stream_id,
            Wire::Web => "web",
        }
    }
}

/// A carrier stream: its media session (codec, transcoders, reused buffers) and its id.
struct CarrierWire {
    session: MediaSession,
    stream_id: String,
    /// The socket's receive low-water mark: two inbound messages per wake-up.
    coalescer: RecvCoalescer,
    /// Gaps between caller-audio messages, for `/metrics` at the end of the call.
    gaps: super::metrics::FrameGaps,
}

/// The call behind an authorised media socket, from `start` to the last record persisted.
#[allow(clippy::manual_async_fn)] // on purpose: see `run_carrier`
fn run_call(
    state: AppState,
    mut socket: WebSocket,
    call: crate::store::CallRow,
    wire: Wire,
    starting: super::threads::WaitOnThread,
) -> impl std::future::Future<Output = ()> {
    // (a block, as `run_carrier`)
    async move {
        let call_id = call.id.clone();
        // counted on its connection thread, where new connections are placed by load
        let _on_thread = super::threads::CallOnThread::enter();
        let Some(slot) = state.calls.claim(&call_id) else {
            tracing::warn!(call = %call_id, "at the concurrent call limit or draining: media session refused");
            let store = state.store.clone();
            let id = call_id.clone();
            let _ = state
                .on_background(async move {
                    store
                        .finish_call(&id, now_ms(), 0, EndReason::Disconnected)
                        .await
                })
                .await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        };
        let recording_rel = format!("recordings/{call_id}.wav");
        let started_at = now_ms();
        let started = match state
            .on_background({
                let (store, id, stream, rel) = (
                    state.store.clone(),
                    call_id.clone(),
                    wire.stream_id().to_owned(),
                    recording_rel.clone(),
                );
                async move { store.start_call(&id, &stream, started_at, &rel).await }
            })
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(call = %call_id, error = %e, "cannot start call");
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
        };
        let _active = state.metrics.call_started(&call.carrier);
        state
            .recorder
            .open(&call_id, state.config.data_dir.join(&recording_rel))
            .await;

        // a codec that holds audio back to fill its chunks (Exotel) gets that much more lead, so its
        // chunks reach the carrier as early before they play as single frames do elsewhere
        let (echoes_marks, held_back) = match &wire {
            Wire::Carrier(w) => (
                w.session.echoes_marks(),
                Duration::from_millis(w.session.held_back_ms()),
            ),
            // the page echoes marks as it plays the audio, and holds nothing back
            Wire::Web => (true, Duration::ZERO),
        };
        let timing = Timing {
            max_call: state.config.max_call_length(),
            pacing_lead: Timing::default().pacing_lead + held_back,
            ..Timing::default()
        };
        let settings = Arc::new(call.settings.clone());
        // the context by meaning, for questions (computed once per context, then shared)
        let context_meanings = state
            .context_meanings
            .get(state.backends.meaning.as_ref(), &settings.custom_context)
            .await;
        let meaning = context_meanings
            .as_ref()
            .and(state.backends.meaning.clone());
        // boxed: the engine is moved through the call's futures (this one, the driver, its run),
        // each of which would otherwise keep a slot of its size (1.7 KB) for the whole call (with
        // `on_background` spawning at once, the call's future went from 16.6 to 6.9 KB)
        let engine = Box::new(CallEngine::new(
            Instant::now(),
            EngineConfig {
                settings: settings.clone(),
                returning_caller: started.returning_caller,
                timing,
                echoes_marks,
                language_model: state.llm.is_some(),
                end_of_turn_model: state.backends.end_of_turn.is_some(),
                barge_in_words: state.backends.stt.partials(),
                speaks_languages: state.llm.is_some() && state.backends.tts.speaks_languages(),
                context_meanings,
            },
        ));
        let multilingual = call.settings.language_mode == crate::model::LanguageMode::Multilingual;
        let places = crate::engine::dialogue::context::named_places(&call.settings.custom_context);
        let (persist_tx, persist_rx) = mpsc::unbounded_channel::<Persist>();
        let (durable_tx, durable) = tokio::sync::oneshot::channel();
        // the persister outlives the call while a journal waits for the database (`persist.rs`)
        state.background.spawn(persist_call(
            state.clone(),
            call_id.clone(),
            persist_rx,
            durable_tx,
        ));

        if matches!(wire, Wire::Web) {
            let started = serde_json::json!({ "type": "started", "call_id": call_id }).to_string();
            let _ = socket.send(Message::Text(started.into())).await;
        }
        let wire_is_web = matches!(wire, Wire::Web);
        let reason = CallDriver {
            state: &state,
            call_id: &call_id,
            wire,
            voice: call.settings.voice.clone(),
            prompts: state.prompts.for_call(),
            settings,
            engine,
            socket: &mut socket,
            persist: persist_tx.clone(),
            events: HandOver::default(),
            stt: HashMap::new(),
            // the call's recogniser: a streaming provider's socket carries the call's id
            // (biased toward the places of the positions, for a provider that takes them only
            // when its stream opens; the others get them per utterance, start_utterance)
            stt_call: crate::backends::with_request_id_sync(call_id.as_str(), || {
                crate::backends::open_call(&state.backends.stt, multilingual, &places)
            }),
            places,
            speak_in: None,
            goodbye_due: None,
            meaning,
            tts: HashMap::new(),
            consults: HashMap::new(),
            turn_audio: state
                .backends
                .end_of_turn
                .as_ref()
                .map(|_| TurnAudio::default()),
            recording: Default::default(),
            payload: Vec::with_capacity(1024),
            messages: Vec::new(),
            socket_open: true,
            unflushed: false,
            starting: Some(starting),
        }
        .run()
        .await;

        if wire_is_web {
            let ended =
                serde_json::json!({ "type": "ended", "reason": reason.as_str() }).to_string();
            let _ = socket.send(Message::Text(ended.into())).await;
        }
        let _ = socket.send(Message::Close(None)).await;
        drop(persist_tx);
        // the call's slot goes to the next caller; the drain still waits for these records
        let _storing = state.calls.storing(slot);
        // the closing handshake, meanwhile: what the peer still sends (a mark's echo on its way,
        // its own close) is read, so the connection ends with its close, not with a reset that
        // can cost the peer the last messages (`ended`, the close) unread
        let closing = tokio::time::timeout(CLOSE_HANDSHAKE, async {
            while let Some(Ok(msg)) = socket.recv().await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        });
        // every record is in the database or the journal: the call is done with
        let (stored, _) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(60), durable),
            closing
        );
        if !matches!(stored, Ok(Ok(()))) {
            tracing::error!(call = %call_id, "call records not all stored or journaled in time")
        }
        tracing::info!(call = %call_id, reason = reason.as_str(), "call ended");
    }
}

struct CallDriver<'a> {
    state: &'a AppState,
    call_id: &'a str,
    wire: Wire,
    voice: String,
    /// The prompts, synthesised by this call's own synthesiser (which stays on the offline one
    /// once a provider failed during the call).
    prompts: crate::backends::PromptCache,
    /// The caller's language the agent speaks (multilingual mode; `None`: English): what it
    /// says is translated by the language model before it is synthesised.
    speak_in: Option<String>,
    /// The goodbye's line with the caller's name, to synthesise ahead once nothing else is.
    goodbye_due: Option<String>,
    /// The sentence encoder, when the receptionist's context is matched by meaning: each
    /// transcript's meaning goes to the engine with it.
    meaning: Option<Arc<crate::backends::meaning::SentenceEncoder>>,
    settings: Arc<crate::model::ReceptionistSettings>,
    engine: Box<CallEngine>,
    socket: &'a mut WebSocket,
    persist: mpsc::UnboundedSender<Persist>,
    /// The call's events on their way to `persist`, handed over once a second (`persist.rs`).
    events: HandOver,
    stt: HashMap<u64, Box<dyn SttSession>>,
    /// The call's recogniser (a streaming provider's one socket per call); hands out `stt`.
    stt_call: Box<dyn SttCall>,
    /// The places the receptionist's context names, read once per call: the recogniser is
    /// biased toward them ([`start_utterance`]).
    places: Vec<String>,
    tts: HashMap<u64, JoinHandle<()>>,
    /// The language model's consultations in progress (aborted when cancelled).
    consults: HashMap<u64, JoinHandle<()>>,
    /// The caller's current utterance for the end-of-turn model (with one configured).
    turn_audio: Option<TurnAudio>,
    /// The call's side of the recorder (what a slow disk made it miss).
    recording: crate::recording::RecordingFeed,
    payload: Vec<u8>,
    /// Carrier messages on their way to the socket (reused).
    messages: Vec<Message>,
    socket_open: bool,
    /// Messages fed to the socket since the last flush.
    unflushed: bool,
    /// Held from the media socket's upgrade until the first outputs (the greeting) are carried
    /// out: the thread does not batch its wake-ups meanwhile.
    starting: Option<super::threads::WaitOnThread>,
}

impl CallDriver<'_> {
    // (a block, as `run_carrier`: `self` is kept once)
    #[allow(clippy::manual_async_fn)]
    fn run(mut self) -> impl std::future::Future<Output = EndReason> {
        async move {
            let (btx, mut brx) = mpsc::channel::<BackendEvent>(64);
            // one timer, moved only when the engine's deadline moves
            let mut armed = Instant::now();
            let timer = tokio::time::sleep_until(armed.into());
            tokio::pin!(timer);
            // the server's drain period is over: say goodbye (`drain.rs`)
            let mut ending = self.state.calls.ending();
            let mut told_to_end = false;
            // held while the caller talks over the agent: the thread then handles each of the
            // call's frames as it comes instead of batching its wake-ups (`threads.rs`), and the
            // socket's receive low-water mark is held at one byte (`socket.rs`), so a barge-in
            // stops the agent as soon as it would without either batching
            let mut over_agent: Option<super::threads::WaitOnThread> = None;
            // when a caller quiet mid-turn will have been quiet long enough to end the turn: the
            // thread does not batch its wake-ups past it, so the reply is not held back
            let due_slot = super::threads::DueOnThread::enter();
            let mut due_set = None;
            let reason = loop {
                // carry out every output; stop at the next deadline
                let (deadline, ended) = self.drain(&btx).await;
                if let Some(reason) = ended {
                    break reason;
                }
                self.starting = None;
                let talking_over = self.engine.caller_over_agent();
                if talking_over != over_agent.is_some() {
                    over_agent = talking_over.then(super::threads::WaitOnThread::enter);
                    // and the socket reports each of the caller's frames as it arrives
                    if let Wire::Carrier(w) = &mut self.wire {
                        w.coalescer.hold(talking_over);
                    }
                }
                let due = self.engine.turn_decision_due();
                if due != due_set {
                    due_set = due;
                    due_slot.set(due);
                }
                let deadline = match &self.wire {
                    Wire::Carrier(w) => w
                        .coalescer
                        .poll_timeout()
                        .map_or(deadline, |d| d.min(deadline)),
                    Wire::Web => deadline,
                };
                if deadline != armed {
                    armed = deadline;
                    timer.as_mut().reset(deadline.into());
                }
                tokio::select! {
                    msg = self.socket.recv(), if self.socket_open => {
                        self.on_socket(msg);
                        // everything else the socket already holds is handled before the outputs
                        // are carried out: one drain, one flush per wake-up
                        for _ in 0..MAX_MESSAGES_PER_WAKE {
                            if !self.socket_open {
                                break;
                            }
                            match self.socket.recv().now_or_never() {
                                Some(msg) => self.on_socket(msg),
                                None => break,
                            }
                        }
                    }
                    Some(ev) = brx.recv() => {
                        self.on_backend(ev);
                    }
                    () = &mut timer => {
                        if let Wire::Carrier(w) = &mut self.wire {
                            w.coalescer.handle_timeout(Instant::now());
                        }
                        self.input(Input::Tick);
                    }
                    end = ending.wait_for(|&end| end), if !told_to_end => {
                        told_to_end = true;
                        if end.is_ok() {
                            self.input(Input::Drain);
                        }
                    }
                }
            };
            if let Wire::Carrier(w) = &self.wire {
                self.state.metrics.frame_gaps(&w.gaps);
            }
            self.state.metrics.call_ended(
                reason,
                self.engine.dropped_stt_frames(),
                self.engine.late_frames(),
            );
            let gap = self.recording.dropped_samples();
            if gap > 0 {
                // interleaved stereo samples at 8 kHz
                let gap_ms = gap / 16;
                tracing::warn!(call = %self.call_id, gap_ms, "the recorder could not keep up: recording has silence in place of what it missed");
                self.state.metrics.recording_gap(gap_ms);
            }
            for (_, h) in self.tts.drain().chain(self.consults.drain()) {
                h.abort();
            }
            self.stt.clear();
            let whole = self
                .state
                .recorder
                .close(self.call_id, &mut self.recording)
                .await;
            // the events still held go first, in order, then the end
            self.events.hand_over(&self.persist);
            // the flag goes with the call's records (journaled like them when the database is away)
            // once the recorder has closed the file; the call's end does not wait for it
            let persist = self.persist.clone();
            tokio::spawn(async move {
                if !whole.await {
                    let _ = persist.send(Persist::RecordingIncomplete);
                }
            });
            let _ = self.persist.send(Persist::Finish {
                ended_at_ms: now_ms(),
                duration_ms: self.engine.call_ms() as i64,
                reason,
            });
            reason
        }
    }

    /// Once the agent's lines in hand are synthesised (the goodbye must not slow the reply being
    /// prepared), have the goodbye's line with the caller's name synthesised in the background,
    /// so the goodbye plays at once when it comes ([`closing_thanks`]); a failure here is only a
    /// cache miss later.
    fn prepare_goodbye(&mut self) {
        if !self.tts.is_empty() {
            return;
        }
        let Some(line) = self.goodbye_due.take() else {
            return;
        };
        // (`warm` skips a line already cached)
        let prompts = self.prompts.clone();
        let voice = self.voice.clone();
        tokio::spawn(async move { prompts.warm(&voice, &[line]).await });
    }

    fn input(&mut self, input: Input<'_>) {
        // an input after the end is a no-op: the loop is about to stop
        let _ = self.engine.handle_input(Instant::now(), input);
    }

    fn on_socket(&mut self, msg: Option<Result<Message, axum::Error>>) {
        match msg {
            None => {
                self.socket_open = false;
                self.input(Input::Disconnected);
            }
            Some(Err(e)) => {
                self.socket_open = false;
                let error = e.to_string();
                if is_disconnect(e) {
                    // the connection went away without a close frame: the network dropped
                    tracing::info!(call = %self.call_id, error, "media socket lost");
                    self.input(Input::Disconnected);
                } else {
                    tracing::warn!(call = %self.call_id, error, "media socket error");
                    self.input(Input::Abort(EndReason::ProtocolError));
                }
            }
            Some(Ok(msg)) if matches!(self.wire, Wire::Web) => self.on_web_message(msg),
            Some(Ok(Message::Text(text))) => self.on_carrier_message(Msg::Text(text.as_str())),
            Some(Ok(Message::Binary(bytes))) => self.on_carrier_message(Msg::Binary(&bytes)),
            Some(Ok(Message::Close(_))) => {
                self.socket_open = false;
                // Vonage has no `stop`: its clean close is the caller hanging up (a dropped
                // network has no close frame)
                let vonage = matches!(&self.wire, Wire::Carrier(w)
                    if w.session.codec().carrier() == crate::engine::media::Carrier::Vonage);
                self.input(if vonage {
                    Input::CarrierStop
                } else {
                    Input::Disconnected
                });
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
        }
    }

    /// A message from the carrier, through its media session.
    fn on_carrier_message(&mut self, msg: Msg<'_>) {
        let Wire::Carrier(wire) = &mut self.wire else {
            return;
        };
        let now = Instant::now();
        let engine = &mut self.engine;
        let call_id = self.call_id;
        let len = match msg {
            Msg::Text(t) => t.len(),
            Msg::Binary(b) => b.len(),
        };
        let mut frames = 0;
        let handled = wire.session.handle_message(msg, |input| {
            frames += matches!(input, Input::CallerAudio { .. }) as usize;
            // an input after the end is a no-op: the loop is about to stop
            let _ = engine.handle_input(now, input);
        });
        wire.coalescer.on_message(now, len, frames);
        if frames > 0 {
            wire.gaps.arrived(now);
        }
        match handled {
            Ok(Handled::Done) => {}
            Ok(Handled::SecondStart) => {
                tracing::warn!(call = %call_id, "second start ignored");
            }
            Ok(Handled::CarrierError { code }) => {
                tracing::warn!(call = %call_id, code = ?code, "the carrier reported an error");
            }
            Ok(Handled::Ignored(event)) => {
                tracing::debug!(call = %call_id, event = %event, "unknown event ignored");
            }
            Err(e) => {
                tracing::warn!(call = %call_id, error = %e, "malformed carrier message: ending session");
                let _ = engine.handle_input(now, Input::Abort(EndReason::ProtocolError));
            }
        }
    }

    /// A message from the browser: caller audio (PCM16LE 8 kHz), or a JSON control message.
    fn on_web_message(&mut self, msg: Message) {
        match msg {
            Message::Binary(bytes) => {
                if bytes.len() % 2 != 0 {
                    tracing::warn!(call = %self.call_id, "odd-length PCM frame: ending session");
                    self.input(Input::Abort(EndReason::ProtocolError));
                    return;
                }
                let mut payload = std::mem::take(&mut self.payload);
                payload.clear();
                payload.extend(bytes.chunks_exact(2).map(|b| {
                    crate::engine::audio::g711::ulaw_encode(i16::from_le_bytes([b[0], b[1]]))
                }));
                // the engine takes 20 ms frames at most per input
                for frame in payload.chunks(160) {
                    self.input(Input::CallerAudio {
                        timestamp_ms: None,
                        mulaw: frame,
                    });
                }
                self.payload = payload;
            }
            Message::Text(text) => {
                let Ok(value) = serde_json::from_str::<serde_json::Value>(text.as_str()) else {
                    tracing::warn!(call = %self.call_id, "malformed browser message: ending session");
                    self.input(Input::Abort(EndReason::ProtocolError));
                    return;
                };
                match value["type"].as_str() {
                    Some("mark") => {
                        if let Some(name) = value["name"].as_str() {
                            self.input(Input::MarkEchoed(name));
                        }
                    }
                    Some("dtmf") => {
                        if let Some(d) = value["digit"].as_str().and_then(|d| d.chars().next())
                            && (d.is_ascii_digit() || d == '*' || d == '#')
                        {
                            self.input(Input::Dtmf(d));
                        }
                    }
                    Some("hangup") => self.input(Input::CarrierStop),
                    _ => tracing::debug!(call = %self.call_id, "unknown browser message ignored"),
                }
            }
            Message::Close(_) => {
                self.socket_open = false;
                self.input(Input::Disconnected);
            }
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }

    /// Queue one message for the caller's socket (written once the buffer fills, or at the
    /// flush); a failed write means the caller is gone.
    async fn feed(&mut self, msg: Message) {
        if self.socket_open {
            self.unflushed = true;
            if self.socket.feed(msg).await.is_err() {
                self.socket_open = false;
                self.input(Input::Disconnected);
            }
        }
    }

    /// Write what was queued for the caller's socket.
    async fn flush(&mut self) {
        if self.socket_open
            && std::mem::take(&mut self.unflushed)
            && self.socket.flush().await.is_err()
        {
            self.socket_open = false;
            self.input(Input::Disconnected);
        }
    }

    fn on_backend(&mut self, ev: BackendEvent) {
        match ev {
            BackendEvent::Understood { consult, result } => {
                self.consults.remove(&consult);
                match *result {
                    Ok(understanding) => self.input(Input::Understood {
                        consult,
                        understanding,
                    }),
                    Err(e) => {
                        tracing::warn!(call = %self.call_id, error = %e, "language model failed: the rules take over");
                        self.input(Input::ModelFailed { consult });
                    }
                }
            }
            BackendEvent::ModelText { consult, text } => self.input(Input::ModelText {
                consult,
                text: &text,
            }),
            BackendEvent::ModelDone { consult, result } => {
                self.consults.remove(&consult);
                match result {
                    Ok(()) => self.input(Input::ModelDone { consult }),
                    Err(e) => {
                        tracing::warn!(call = %self.call_id, error = %e, "language model failed mid-answer: the rules take over");
                        self.input(Input::ModelFailed { consult });
                    }
                }
            }
            BackendEvent::TtsPiece {
                speech,
                mulaw,
                last,
            } => {
                if last {
                    self.tts.remove(&speech);
                }
                self.input(Input::TtsChunk {
                    speech,
                    mulaw,
                    last,
                })
            }
            BackendEvent::TtsFailed { speech, error } => {
                self.tts.remove(&speech);
                self.state.metrics.backend_error("tts", &error);
                tracing::warn!(call = %self.call_id, error = %error, "speech synthesis failed");
                self.input(Input::TtsFailed { speech });
            }
            BackendEvent::Stt { utterance, heard } => match *heard {
                (Ok(heard), meaning) => {
                    if let Some(language) = &heard.language {
                        self.input(Input::CallerLanguage(language));
                    }
                    if let Some(meaning) = meaning {
                        self.input(Input::CallerMeaning {
                            text: &heard.text,
                            meaning,
                        });
                    }
                    self.input(Input::Transcript {
                        utterance,
                        text: &heard.text,
                    })
                }
                (Err(e), _) => {
                    self.state.metrics.backend_error("stt", &e);
                    tracing::warn!(call = %self.call_id, error = %e, "speech recognition failed");
                    self.input(Input::SttFailed { utterance });
                }
            },
            BackendEvent::Partial { utterance, text } => {
                // how many words and whether they take the floor, never the words
                tracing::debug!(
                    call = %self.call_id,
                    utterance,
                    words = text.split_whitespace().count(),
                    takes_the_floor = crate::engine::dialogue::understand::takes_the_floor(&text),
                    "partial transcript"
                );
                self.input(Input::PartialTranscript {
                    utterance,
                    text: &text,
                })
            }
            BackendEvent::TurnChecked {
                utterance,
                complete,
                text,
            } => {
                // whether words came, never the words (personal data)
                tracing::debug!(call = %self.call_id, utterance, ?complete, words = text.is_some(), "turn checked");
                self.input(Input::TurnChecked {
                    utterance,
                    complete,
                    text: text.as_deref(),
                })
            }
        }
    }

    /// Carry out outputs until the engine asks to wait; returns its deadline, and the end reason
    /// once the call is over.
    async fn drain(&mut self, btx: &mpsc::Sender<BackendEvent>) -> (Instant, Option<EndReason>) {
        let mut ended = None;
        loop {
            match self.engine.poll_output() {
                Output::Timeout(t) => {
                    self.flush().await;
                    self.prepare_goodbye();
                    let t = match self.events.poll(Instant::now(), &self.persist) {
                        Some(due) => t.min(due),
                        None => t,
                    };
                    return (t, ended);
                }
                Output::ToCaller(msg) => match &mut self.wire {
                    Wire::Carrier(wire) => {
                        wire.session.write(&msg);
                        // usually one message: a carrier that splits audio (Vonage's 20 ms
                        // frames, Exotel's chunks) makes more
                        let mut messages = std::mem::take(&mut self.messages);
                        messages.extend(wire.session.out().iter().map(|m| match m {
                            Msg::Text(t) => Message::Text(t.to_owned().into()),
                            Msg::Binary(b) => Message::Binary(b.to_vec().into()),
                        }));
                        wire.session.clear_out();
                        for m in messages.drain(..) {
                            self.feed(m).await;
                        }
                        self.messages = messages;
                    }
                    Wire::Web => {
                        let message = match &msg {
                            // the page's protocol: a binary message per 20 ms frame
                            ToCaller::Media(audio) => {
                                for frame in audio.frames() {
                                    let pcm: Vec<u8> = frame
                                        .iter()
                                        .flat_map(|b| {
                                            crate::engine::audio::g711::ulaw_decode(*b)
                                                .to_le_bytes()
                                        })
                                        .collect();
                                    self.feed(Message::Binary(pcm.into())).await;
                                }
                                continue;
                            }
                            ToCaller::Mark(id) => Message::Text(
                                serde_json::json!({ "type": "mark", "name": id.to_string() })
                                    .to_string()
                                    .into(),
                            ),
                            ToCaller::Clear => {
                                Message::Text(r#"{"type":"clear"}"#.to_string().into())
                            }
                        };
                        self.feed(message).await;
                    }
                },
                Output::Speak { speech, text } => {
                    // in the caller's language: translated first (while the voice speaks it)
                    let translate = match (&self.speak_in, &self.state.llm) {
                        (Some(language), Some(llm)) if self.prompts.speaks_languages() => Some((
                            llm.clone(),
                            language.clone(),
                            self.settings.agent_name.clone(),
                            format!("{}-s{speech}", self.call_id),
                        )),
                        _ => None,
                    };
                    // a prompt synthesised before plays at once, without a task
                    if translate.is_none()
                        && let Some(mulaw) = self.prompts.get(&self.voice, &text)
                    {
                        self.input(Input::TtsAudio { speech, mulaw });
                        continue;
                    }
                    let prompts = self.prompts.clone();
                    let voice = self.voice.clone();
                    let translations = self.state.translations.clone();
                    let tx = btx.clone();
                    let waiting = super::threads::WaitOnThread::enter();
                    let request_id = format!("{}-s{speech}", self.call_id);
                    let handle =
                        tokio::spawn(crate::backends::with_request_id(request_id, async move {
                            let _waiting = waiting;
                            let text = match translate {
                                Some((llm, language, agent, turn)) => {
                                    translations
                                        .get_or_translate(&llm, &agent, &text, &language, &turn)
                                        .await
                                }
                                None => text,
                            };
                            let mut pieces = prompts.speak_stream(&voice, &text);
                            // each piece as it comes: the caller hears the first while the rest is
                            // synthesised
                            loop {
                                let event =
                                    match tokio::time::timeout(TTS_TIMEOUT, pieces.next()).await {
                                        Ok(Some(Ok(mulaw))) => BackendEvent::TtsPiece {
                                            speech,
                                            mulaw,
                                            last: false,
                                        },
                                        Ok(None) => BackendEvent::TtsPiece {
                                            speech,
                                            mulaw: Arc::from([]),
                                            last: true,
                                        },
                                        Ok(Some(Err(error))) => {
                                            BackendEvent::TtsFailed { speech, error }
                                        }
                                        Err(_) => BackendEvent::TtsFailed {
                                            speech,
                                            error: BackendError::Timeout,
                                        },
                                    };
                                let more =
                                    matches!(event, BackendEvent::TtsPiece { last: false, .. });
                                if tx.send(event).await.is_err() || !more {
                                    break;
                                }
                            }
                        }));
                    self.tts.insert(speech, handle);
                }
                Output::Consult { consult, request } => {
                    let handle = match self.state.llm.clone() {
                        Some(llm) => tokio::spawn(consult_model(
                            llm,
                            self.settings.clone(),
                            format!("{}-c{consult}", self.call_id),
                            consult,
                            *request,
                            btx.clone(),
                        )),
                        None => {
                            // not configured: the engine never asks (and the rules answer if it did)
                            self.input(Input::ModelFailed { consult });
                            continue;
                        }
                    };
                    self.consults.insert(consult, handle);
                }
                Output::CancelConsult { consult } => {
                    if let Some(h) = self.consults.remove(&consult) {
                        h.abort();
                    }
                }
                Output::CancelSpeech { speech } => {
                    if let Some(h) = self.tts.remove(&speech) {
                        h.abort();
                    }
                }
                Output::SttAudio => {
                    let stt_call = &mut self.stt_call;
                    let places = &self.places;
                    let hint = stt_hint(self.engine.expecting());
                    while let Some((utterance, mulaw)) = self.engine.pop_stt_frame() {
                        if let Some(t) = &mut self.turn_audio {
                            t.push(utterance, &mulaw[..]);
                        }
                        self.stt
                            .entry(utterance)
                            .or_insert_with(|| start_utterance(stt_call.as_mut(), hint, places))
                            .push_phone(&mulaw[..]);
                    }
                }
                Output::SttFinish { utterance } => {
                    if let Some(session) = self.stt.remove(&utterance) {
                        let tx = btx.clone();
                        let waiting = super::threads::WaitOnThread::enter();
                        let request_id = format!("{}-u{utterance}", self.call_id);
                        let encoder = self.meaning.clone();
                        tokio::spawn(crate::backends::with_request_id(request_id, async move {
                            let _waiting = waiting;
                            let result = match tokio::time::timeout(
                                STT_FINISH_TIMEOUT,
                                session.finish_heard(),
                            )
                            .await
                            {
                                Ok(r) => r,
                                Err(_) => Err(BackendError::Timeout),
                            };
                            // what the words mean, for a question about the context (a few ms
                            // of one core, off the call's thread)
                            let meaning = match (&result, encoder) {
                                (Ok(heard), Some(encoder)) if !heard.text.is_empty() => {
                                    let text = heard.text.clone();
                                    tokio::task::spawn_blocking(move || encoder.encode(&text))
                                        .await
                                        .ok()
                                        .and_then(Result::ok)
                                        .map(Arc::from)
                                }
                                _ => None,
                            };
                            let _ = tx
                                .send(BackendEvent::Stt {
                                    utterance,
                                    heard: Box::new((result, meaning)),
                                })
                                .await;
                        }));
                    } else {
                        let _ = btx.try_send(BackendEvent::Stt {
                            utterance,
                            heard: Box::new((Ok(Default::default()), None)),
                        });
                    }
                }
                Output::SttCancel { utterance } => {
                    self.stt.remove(&utterance);
                }
                Output::SttPartial { utterance } => {
                    // no partial (a recogniser without them, an error, too slow): the engine
                    // stops the agent at its deadline
                    let Some(partial) = self
                        .stt
                        .get_mut(&utterance)
                        .and_then(|s| s.partial_over_agent())
                    else {
                        tracing::debug!(call = %self.call_id, utterance, "no partial transcript");
                        continue;
                    };
                    let tx = btx.clone();
                    let waiting = super::threads::WaitOnThread::enter();
                    let call = self.call_id.to_string();
                    tokio::spawn(async move {
                        let _waiting = waiting;
                        let asked = Instant::now();
                        match tokio::time::timeout(PARTIAL_TIMEOUT, partial).await {
                            Ok(Ok(text)) => {
                                let ms = asked.elapsed().as_millis() as u64;
                                tracing::debug!(call, utterance, ms, "partial transcript ready");
                                let _ = tx.send(BackendEvent::Partial { utterance, text }).await;
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(call, utterance, error = %e, "partial transcript failed")
                            }
                            Err(_) => {
                                tracing::debug!(call, utterance, "partial transcript too slow")
                            }
                        }
                    });
                }
                Output::CheckTurn { utterance } => {
                    let (Some(model), Some(audio)) = (
                        self.state.backends.end_of_turn.clone(),
                        self.turn_audio.as_ref().and_then(|t| t.of(utterance)),
                    ) else {
                        continue;
                    };
                    let partial = self.stt.get_mut(&utterance).and_then(|s| s.partial());
                    let tx = btx.clone();
                    let waiting = super::threads::WaitOnThread::enter();
                    tokio::spawn(async move {
                        let _waiting = waiting;
                        // both at once; what does not come in time (or fails) is left out, and
                        // with neither the fallback silence decides
                        let words = async {
                            match partial {
                                Some(p) => tokio::time::timeout(TURN_CHECK_TIMEOUT, p)
                                    .await
                                    .ok()
                                    .and_then(Result::ok),
                                None => None,
                            }
                        };
                        let how = async {
                            tokio::time::timeout(TURN_CHECK_TIMEOUT, model.complete(audio))
                                .await
                                .ok()
                                .and_then(Result::ok)
                                .map(|p| p >= crate::backends::smart_turn::COMPLETE_AT)
                        };
                        let (text, complete) = tokio::join!(words, how);
                        if text.is_some() || complete.is_some() {
                            let _ = tx
                                .send(BackendEvent::TurnChecked {
                                    utterance,
                                    complete,
                                    text,
                                })
                                .await;
                        }
                    });
                }
                Output::Recording => {
                    let chunk = self.engine.take_recording();
                    if !chunk.is_empty() {
                        self.state
                            .recorder
                            .append(self.call_id, &mut self.recording, chunk);
                    }
                }
                Output::Event(e) => {
                    match &*e {
                        CallEvent::Latency(l) => self.state.metrics.turn(l),
                        CallEvent::Language {
                            language,
                            answered_in: true,
                        } => {
                            tracing::info!(call = %self.call_id, language, "the agent speaks the caller's language");
                            self.speak_in = (language != "en").then(|| language.clone());
                        }
                        CallEvent::Name { name } if self.speak_in.is_none() => {
                            self.goodbye_due = Some(closing_thanks(Some(name)));
                        }
                        _ => {}
                    }
                    if let (Wire::Web, CallEvent::Transcript(line)) = (&self.wire, &*e) {
                        let mut live = serde_json::json!({ "type": "transcript" });
                        if let (Some(obj), Ok(serde_json::Value::Object(fields))) =
                            (live.as_object_mut(), serde_json::to_value(line))
                        {
                            obj.extend(fields);
                        }
                        self.feed(Message::Text(live.to_string().into())).await;
                    }
                    self.events.hold(Instant::now(), e);
                }
                Output::Ended(reason) => ended = Some(reason),
            }
        }
    }
}

/// Longest wait for a partial transcript of talk over the agent (the engine stops waiting
/// sooner).
const PARTIAL_TIMEOUT: Duration = Duration::from_millis(1000);

/// Longest wait for the end-of-turn model's verdict and the words so far; the fallback silence
/// ends the turn anyway soon after.
const TURN_CHECK_TIMEOUT: Duration = Duration::from_millis(1200);

/// The caller's current utterance, its last [`smart_turn::WINDOW_SECS`] seconds: what the
/// end-of-turn model hears. Kept as the call carries it (µ-law at 8 kHz, 64 KB for the 8 s
/// where 16 kHz PCM took 256 KB) and widened to 16 kHz when the model is asked.
///
/// [`smart_turn::WINDOW_SECS`]: crate::backends::smart_turn::WINDOW_SECS
#[derive(Default)]
struct TurnAudio {
    utterance: u64,
    mulaw: std::collections::VecDeque<u8>,
}

impl TurnAudio {
    const MAX: usize = crate::backends::smart_turn::WINDOW_SECS * 8_000;

    fn push(&mut self, utterance: u64, mulaw: &[u8]) {
        if utterance != self.utterance {
            self.utterance = utterance;
            self.mulaw.clear();
        }
        crate::backends::keep_newest(&mut self.mulaw, mulaw, Self::MAX);
    }

    /// The utterance's audio at 16 kHz.
    fn of(&self, utterance: u64) -> Option<Vec<i16>> {
        (utterance == self.utterance && !self.mulaw.is_empty()).then(|| {
            let (a, b) = self.mulaw.as_slices();
            crate::engine::audio::mulaw_to_16k(&[a, b].concat())
        })
    }
}

/// A recogniser session for the caller's next utterance; asked where they live or what they
/// would like to know, biased toward the places the receptionist's context names (callers
/// mostly live near the positions, and ask about them).
fn start_utterance(
    stt_call: &mut dyn SttCall,
    hint: SttHint,
    places: &[String],
) -> Box<dyn SttSession> {
    if !matches!(hint, SttHint::Location | SttHint::Question) {
        return stt_call.start(hint);
    }
    stt_call.start_with_terms(hint, places)
}

/// What the recogniser should expect, from what the dialogue is waiting for.
fn stt_hint(expect: Expect) -> SttHint {
    match expect {
        Expect::Name => SttHint::Name,
        Expect::Location => SttHint::Location,
        Expect::Answer(QuestionKind::YesNo) => SttHint::YesNo,
        Expect::Answer(QuestionKind::Number) => SttHint::Number,
        Expect::Answer(QuestionKind::FreeText) => SttHint::FreeText,
        Expect::CallerQuestion => SttHint::Question,
    }
}

#[cfg(test)]
mod start_tests {
    use super::*;

    /// Each call's channels keep a block of 32 slots, and its engine's queue of outputs the room
    /// its largest burst took, for the whole call: the rare large items are boxed so that the
    /// slots stay small.
    #[test]
    fn a_calls_queue_slots_stay_small() {
        assert!(std::mem::size_of::<BackendEvent>() <= 48);
        assert!(std::mem::size_of::<Persist>() <= 32);
        assert!(std::mem::size_of::<crate::engine::call::Output>() <= 48);
    }
    use crate::engine::media::AudioCodec;
    use crate::server::carriers::sha256_hex;

    fn call(carrier: &str) -> crate::store::CallRow {
        crate::store::CallRow {
            id: "call-1".into(),
            workspace_id: "w".into(),
            receptionist_id: "r".into(),
            carrier: carrier.into(),
            call_sid: "CA1".into(),
            stream_sid: None,
            from_number: "+15550000001".into(),
            to_number: "+15550000002".into(),
            forwarded_from: None,
            token_hash: sha256_hex("tok"),
            node_id: "n".into(),
            status: CallStatus::Accepted,
            accepted_at_ms: 0,
            started_at_ms: None,
            ended_at_ms: None,
            duration_ms: None,
            end_reason: None,
            recording_path: None,
            recording_incomplete: false,
            candidate_id: None,
            settings: crate::testing::sample_settings(),
        }
    }

    fn start(carrier: Carrier, call_id: Option<&str>, params: &[(&str, &str)]) -> StreamStart {
        StreamStart {
            carrier,
            stream_id: "S".into(),
            call_id: call_id.map(String::from),
            account_id: None,
            from: None,
            to: None,
            codec: AudioCodec::Mulaw,
            outbound_codec: AudioCodec::Mulaw,
            custom_parameters: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_start_must_present_its_call() {
        let twilio = call("twilio");
        let good = [("callId", "call-1"), ("token", "tok")];
        // Twilio: no upgrade credential, so the parameters must carry the token
        assert!(start_matches(
            &start(Carrier::Twilio, Some("CA1"), &good),
            &twilio,
            false
        ));
        assert!(!start_matches(
            &start(Carrier::Twilio, Some("CA1"), &[("callId", "call-1")]),
            &twilio,
            false
        ));
        assert!(!start_matches(
            &start(
                Carrier::Twilio,
                Some("CA1"),
                &[("callId", "call-1"), ("token", "x")]
            ),
            &twilio,
            false
        ));
        assert!(!start_matches(
            &start(Carrier::Twilio, Some("CA2"), &good),
            &twilio,
            false
        ));
        assert!(!start_matches(
            &start(Carrier::Twilio, None, &good),
            &twilio,
            false
        ));
        // another carrier's stream for a Twilio call
        assert!(!start_matches(
            &start(Carrier::SignalWire, Some("CA1"), &good),
            &twilio,
            true
        ));
        // Plivo passes only the token; the upgrade named the call
        let plivo = call("plivo");
        assert!(start_matches(
            &start(Carrier::Plivo, Some("CA1"), &[("token", "tok")]),
            &plivo,
            true
        ));
        assert!(!start_matches(
            &start(Carrier::Plivo, Some("CA1"), &[("token", "nope")]),
            &plivo,
            true
        ));
        assert!(!start_matches(
            &start(
                Carrier::Plivo,
                Some("CA1"),
                &[("callId", "call-2"), ("token", "tok")]
            ),
            &plivo,
            true
        ));
        // Vonage names no call: only behind a checked upgrade
        let vonage = call("vonage");
        assert!(start_matches(
            &start(Carrier::Vonage, None, &good),
            &vonage,
            true
        ));
        assert!(!start_matches(
            &start(Carrier::Vonage, None, &good),
            &vonage,
            false
        ));
        // a started call cannot be joined again
        let mut started = call("telnyx");
        started.status = CallStatus::InProgress;
        assert!(!start_matches(
            &start(Carrier::Telnyx, Some("CA1"), &good),
            &started,
            true
        ));
    }
}
