//! Local stand-ins for the speech and language providers, speaking their real wire protocols on
//! 127.0.0.1, checking what they receive and recording it for the tests: Deepgram's streaming
//! listen socket ([`FakeDeepgram`]), an OpenAI-compatible HTTP server ([`FakeOpenAi`]:
//! transcriptions, speech, streamed chat completions) and ElevenLabs' input-streaming socket
//! ([`FakeElevenLabs`]). Each can fail the ways the real ones do (401, 429, 5xx, a dropped
//! socket). Dropping a fake stops it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use base64::Engine as _;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::engine::audio::g711;

async fn serve(router: Router) -> (std::net::SocketAddr, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (addr, task)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A speech-like test tone: `ms` milliseconds at `rate`.
pub fn tone(ms: u64, rate: u32) -> Vec<i16> {
    let n = (ms * u64::from(rate) / 1000) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let v = (2.0 * std::f64::consts::PI * 180.0 * t).sin()
                * (std::f64::consts::PI * 4.0 * t).sin().abs()
                * 8_000.0;
            v as i16
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Deepgram
// ---------------------------------------------------------------------------------------------

/// What one connection to the fake Deepgram presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeepgramConnection {
    /// The query's parameters (the last of a repeated one).
    pub query: HashMap<String, String>,
    /// Every parameter in order, repeated ones (`keyterm`) included.
    pub pairs: Vec<(String, String)>,
    pub authorization: Option<String>,
    /// The `X-Request-Id` header.
    pub request_id: Option<String>,
}

/// Deepgram's `/v1/listen` streaming socket. Transcripts come from a script, one per utterance
/// (an utterance ends with the client's `Finalize`): the first half of its words comes back as an
/// interim then a final result once 0.4 s of its audio arrived, followed by the rest as an interim
/// result; then the rest as a final result `from_finalize`, then `UtteranceEnd`. `SpeechStarted` comes with an utterance's first audio,
/// `Metadata` after `CloseStream`.
pub struct FakeDeepgram {
    /// The URL to configure (`DEEPGRAM_URL`).
    pub url: String,
    pub api_key: String,
    state: Arc<DeepgramState>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct DeepgramState {
    api_key: String,
    script: Mutex<VecDeque<String>>,
    connections: Mutex<Vec<DeepgramConnection>>,
    /// Client messages in order: "audio" (runs of binary frames as one), "KeepAlive",
    /// "Finalize", "CloseStream", or "other:<text>".
    messages: Mutex<Vec<String>>,
    audio_bytes: Mutex<usize>,
    odd_frames: Mutex<usize>,
    /// Drop the next connection (no close frame) once it received this many audio bytes.
    drop_after_bytes: Mutex<Option<usize>>,
    /// Answer every upgrade with this status instead.
    reject: Mutex<Option<u16>>,
    /// The language a `detect_language=true` connection's final results name.
    language: Mutex<Option<String>>,
}

impl FakeDeepgram {
    pub async fn start(transcripts: &[&str]) -> Self {
        let api_key = format!("dg-{}", uuid::Uuid::new_v4().simple());
        let state = Arc::new(DeepgramState {
            api_key: api_key.clone(),
            script: Mutex::new(transcripts.iter().map(|t| t.to_string()).collect()),
            ..DeepgramState::default()
        });
        let router = Router::new()
            .route("/v1/listen", any(deepgram_upgrade))
            .with_state(state.clone());
        let (addr, task) = serve(router).await;
        Self {
            url: format!("ws://{addr}/v1/listen"),
            api_key,
            state,
            task,
        }
    }

    /// Drop the next connection abruptly after it received `bytes` of audio.
    pub fn drop_after(&self, bytes: usize) {
        *lock(&self.state.drop_after_bytes) = Some(bytes);
    }

    /// Name `code` as the detected language in the final results of connections that ask for
    /// it (`detect_language=true`), as Deepgram does (`channel.detected_language`).
    pub fn detect_language(&self, code: &str) {
        *lock(&self.state.language) = Some(code.to_string());
    }

    /// Refuse every connection with `status`.
    pub fn reject_with(&self, status: u16) {
        *lock(&self.state.reject) = Some(status);
    }

    pub fn connections(&self) -> Vec<DeepgramConnection> {
        lock(&self.state.connections).clone()
    }

    pub fn messages(&self) -> Vec<String> {
        lock(&self.state.messages).clone()
    }

    pub fn audio_bytes(&self) -> usize {
        *lock(&self.state.audio_bytes)
    }

    /// Binary frames whose length was not a whole number of 16-bit samples.
    pub fn odd_frames(&self) -> usize {
        *lock(&self.state.odd_frames)
    }

    /// Transcripts not yet used.
    pub fn remaining(&self) -> usize {
        lock(&self.state.script).len()
    }
}

impl Drop for FakeDeepgram {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn deepgram_upgrade(
    State(state): State<Arc<DeepgramState>>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let query: HashMap<String, String> = pairs.iter().cloned().collect();
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    lock(&state.connections).push(DeepgramConnection {
        query: query.clone(),
        pairs,
        authorization: authorization.clone(),
        request_id: headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(String::from),
    });
    if let Some(status) = *lock(&state.reject) {
        return StatusCode::from_u16(status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response();
    }
    if authorization.as_deref() != Some(&format!("Token {}", state.api_key)) {
        return (StatusCode::UNAUTHORIZED, "bad credentials").into_response();
    }
    let drop_after = lock(&state.drop_after_bytes).take();
    let language = lock(&state.language)
        .clone()
        .filter(|_| query.get("detect_language").map(String::as_str) == Some("true"));
    ws.on_upgrade(move |socket| deepgram_session(state, socket, drop_after, language))
}

fn results(
    start_s: f64,
    duration_s: f64,
    text: &str,
    is_final: bool,
    from_finalize: bool,
) -> String {
    json!({
        "type": "Results",
        "channel_index": [0, 1],
        "duration": duration_s,
        "start": start_s,
        "is_final": is_final,
        "speech_final": is_final,
        "from_finalize": from_finalize,
        "channel": { "alternatives": [ {
            "transcript": text,
            "confidence": 0.98,
            "words": text.split_whitespace().map(|w| json!({"word": w.to_lowercase(), "punctuated_word": w})).collect::<Vec<_>>(),
        } ] },
        "metadata": { "request_id": "fake", "model_info": { "name": "fake" } },
    })
    .to_string()
}

async fn deepgram_session(
    state: Arc<DeepgramState>,
    mut socket: WebSocket,
    drop_after: Option<usize>,
    language: Option<String>,
) {
    let detected = |json: String| -> String {
        match &language {
            Some(code) if json.contains(r#""is_final":true"#) => {
                let mut v: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
                v["channel"]["detected_language"] = json!(code);
                v.to_string()
            }
            _ => json,
        }
    };
    const RATE: f64 = 16_000.0;
    // the connection's audio timeline, in samples
    let mut total: u64 = 0;
    // the current utterance: where its audio starts, where the finals so far end
    let mut seg_start: u64 = 0;
    let mut final_end: u64 = 0;
    let mut first_half_sent = false;
    let mut received: usize = 0;
    let secs = |samples: u64| samples as f64 / RATE;
    while let Some(Ok(msg)) = socket.recv().await {
        match msg {
            Message::Binary(bytes) => {
                {
                    let mut m = lock(&state.messages);
                    if m.last().map(String::as_str) != Some("audio") {
                        m.push("audio".into());
                    }
                }
                *lock(&state.audio_bytes) += bytes.len();
                if bytes.len() % 2 != 0 {
                    *lock(&state.odd_frames) += 1;
                }
                received += bytes.len();
                if total == seg_start {
                    let started =
                        json!({"type": "SpeechStarted", "channel": [0], "timestamp": secs(total)});
                    let _ = socket.send(Message::Text(started.to_string().into())).await;
                }
                total += bytes.len() as u64 / 2;
                if drop_after.is_some_and(|n| received >= n) {
                    return; // dropped: no close frame
                }
                if !first_half_sent && total - seg_start >= (0.4 * RATE) as u64 {
                    first_half_sent = true;
                    let text = lock(&state.script).front().cloned().unwrap_or_default();
                    let words: Vec<&str> = text.split_whitespace().collect();
                    let half = words[..words.len() / 2].join(" ");
                    if !half.is_empty() {
                        let interim = results(
                            secs(seg_start),
                            secs(total - seg_start),
                            words[0],
                            false,
                            false,
                        );
                        let _ = socket.send(Message::Text(interim.into())).await;
                        let fin = detected(results(
                            secs(seg_start),
                            secs(total - seg_start),
                            &half,
                            true,
                            false,
                        ));
                        let _ = socket.send(Message::Text(fin.into())).await;
                        final_end = total;
                        // the hypothesis for what follows, until Finalize makes it final
                        let rest = words[words.len() / 2..].join(" ");
                        let interim = results(secs(total), secs(0), &rest, false, false);
                        let _ = socket.send(Message::Text(interim.into())).await;
                    }
                }
            }
            Message::Text(text) => {
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let kind = v
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                lock(&state.messages).push(match kind.as_str() {
                    "KeepAlive" | "Finalize" | "CloseStream" => kind.clone(),
                    _ => format!("other:{text}"),
                });
                match kind.as_str() {
                    "Finalize" => {
                        let had_audio = total > seg_start;
                        let text = if had_audio {
                            lock(&state.script).pop_front().unwrap_or_default()
                        } else {
                            String::new()
                        };
                        let words: Vec<&str> = text.split_whitespace().collect();
                        let rest = if first_half_sent {
                            words[words.len() / 2..].join(" ")
                        } else {
                            words.join(" ")
                        };
                        let from = final_end.max(seg_start);
                        let fin =
                            detected(results(secs(from), secs(total - from), &rest, true, true));
                        let _ = socket.send(Message::Text(fin.into())).await;
                        if had_audio {
                            let end = json!({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": secs(total)});
                            let _ = socket.send(Message::Text(end.to_string().into())).await;
                        }
                        seg_start = total;
                        final_end = total;
                        first_half_sent = false;
                    }
                    "CloseStream" => {
                        let meta = json!({
                            "type": "Metadata",
                            "transaction_key": "deprecated",
                            "request_id": uuid::Uuid::new_v4().to_string(),
                            "sha256": "",
                            "created": "2026-01-01T00:00:00.000Z",
                            "duration": secs(total),
                            "channels": 1,
                        });
                        let _ = socket.send(Message::Text(meta.to_string().into())).await;
                        let _ = socket.send(Message::Close(None)).await;
                        return;
                    }
                    _ => {}
                }
            }
            Message::Close(_) => return,
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible HTTP
// ---------------------------------------------------------------------------------------------

/// How the fake answers `/audio/speech`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeechFormat {
    /// Raw 24 kHz 16-bit little-endian PCM (`audio/pcm`), what `response_format: "pcm"` asks.
    Pcm,
    /// A WAV file at 22.05 kHz (`audio/wav`), as some compatible servers answer.
    Wav,
}

/// A request the fake OpenAI server received.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiRequest {
    pub path: String,
    pub authorization: Option<String>,
    /// JSON requests: the body; transcriptions: the form's text fields.
    pub body: Value,
    /// Transcriptions: the uploaded file's (sample rate, channels, bits, samples).
    pub wav: Option<(u32, u16, u16, usize)>,
    pub status: u16,
    /// The `X-Request-Id` header (the call and its turn).
    pub request_id: Option<String>,
}

/// An OpenAI-compatible server: `POST /v1/audio/transcriptions` (multipart, answers the next
/// scripted transcript), `POST /v1/audio/speech` (a tone 60 ms per character, as [`SpeechFormat`]
/// says), `POST /v1/chat/completions` (`stream: true`; the scripted SSE body, by default text
/// deltas and a tool call split over several chunks).
pub struct FakeOpenAi {
    /// The base URL to configure (`OPENAI_BASE_URL`), ending in `/v1`.
    pub url: String,
    pub api_key: String,
    state: Arc<OpenAiState>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct OpenAiState {
    api_key: String,
    transcripts: Mutex<VecDeque<String>>,
    speech_format: Mutex<Option<SpeechFormat>>,
    chat_body: Mutex<Option<String>>,
    /// Answers each chat request from its JSON body (an SSE body), instead of `chat_body`.
    chat_responder: Mutex<Option<ChatResponder>>,
    /// Answers each transcription from its form's text fields (`model`, `prompt`, ...), instead
    /// of the scripted transcripts.
    transcription_responder: Mutex<Option<ChatResponder>>,
    /// Wait this long before the first byte of a chat answer.
    chat_delay: Mutex<Duration>,
    /// Statuses for the next requests (any path), then normal answers.
    fail_next: Mutex<VecDeque<u16>>,
    /// Every request fails with this status.
    fail_always: Mutex<Option<u16>>,
    requests: Mutex<Vec<OpenAiRequest>>,
    /// The language `verbose_json` transcriptions name (Whisper's way: `"spanish"`).
    language: Mutex<String>,
    /// Stream PCM speech in pieces of this many bytes, this long apart (`None`: at once).
    speech_pace: Mutex<Option<(usize, Duration)>>,
    /// PCM speech pieces sent, over all requests.
    speech_pieces_sent: Arc<std::sync::atomic::AtomicUsize>,
}

/// The default streamed chat answer: "Pay is $18 an hour." in three deltas, then a call of
/// `record_answer` whose arguments arrive in three pieces, then `[DONE]`.
pub const DEFAULT_CHAT_SSE: &str = concat!(
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Pay is \"},\"finish_reason\":null}]}\n\n",
    ": keep-alive comment\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"$18 \"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"an hour.\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"record_answer\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"question\\\": 1,\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\" \\\"answer\\\": \\\"yes\\\"}\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
    "data: [DONE]\n\n",
);

/// Makes a chat answer (an SSE body) from a request's JSON body.
pub type ChatResponder = Arc<dyn Fn(&Value) -> String + Send + Sync>;

/// An SSE chat answer streaming `pieces` of text, one chunk each.
pub fn sse_text(pieces: &[&str]) -> String {
    let mut out = String::new();
    for p in pieces {
        let chunk = json!({
            "id": "c1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": null}]
        });
        out.push_str(&format!("data: {chunk}\n\n"));
    }
    let last = json!({"id": "c1", "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
    out.push_str(&format!("data: {last}\n\ndata: [DONE]\n\n"));
    out
}

/// An SSE chat answer calling `tool` with `arguments` (JSON text), the arguments split over
/// three chunks as real servers stream them.
pub fn sse_tool_call(tool: &str, arguments: &str) -> String {
    let third = arguments.len().div_ceil(3);
    let mut pieces = Vec::new();
    let mut rest = arguments;
    while !rest.is_empty() {
        let mut cut = third.min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    let mut out = String::new();
    let first = json!({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0,
        "delta": {"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
        "function": {"name": tool, "arguments": ""}}]}, "finish_reason": null}]});
    out.push_str(&format!("data: {first}\n\n"));
    for p in pieces {
        let chunk = json!({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0,
            "delta": {"tool_calls": [{"index": 0, "function": {"arguments": p}}]}, "finish_reason": null}]});
        out.push_str(&format!("data: {chunk}\n\n"));
    }
    let last = json!({"id": "c1", "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]});
    out.push_str(&format!("data: {last}\n\ndata: [DONE]\n\n"));
    out
}

impl FakeOpenAi {
    pub async fn start(transcripts: &[&str]) -> Self {
        let api_key = format!("sk-test-{}", uuid::Uuid::new_v4().simple());
        let state = Arc::new(OpenAiState {
            api_key: api_key.clone(),
            transcripts: Mutex::new(transcripts.iter().map(|t| t.to_string()).collect()),
            ..OpenAiState::default()
        });
        let router = Router::new()
            .route("/v1/audio/transcriptions", post(openai_transcriptions))
            .route("/v1/audio/speech", post(openai_speech))
            .route("/v1/chat/completions", post(openai_chat))
            .with_state(state.clone());
        let (addr, task) = serve(router).await;
        Self {
            url: format!("http://{addr}/v1"),
            api_key,
            state,
            task,
        }
    }

    pub fn speech_format(&self, format: SpeechFormat) {
        *lock(&self.state.speech_format) = Some(format);
    }

    /// The raw SSE body `/chat/completions` answers with.
    pub fn chat_body(&self, sse: &str) {
        *lock(&self.state.chat_body) = Some(sse.to_string());
    }

    /// Answer each chat request with what `responder` makes of its body.
    pub fn chat_responder(&self, responder: impl Fn(&Value) -> String + Send + Sync + 'static) {
        *lock(&self.state.chat_responder) = Some(Arc::new(responder));
    }

    /// Answer each transcription with `responder(fields)` (the form's text fields as JSON:
    /// `model`, `response_format`, `prompt`) instead of the scripted transcripts: a stand-in
    /// that hears what the prompt says the dialogue expects, for load runs.
    pub fn transcription_responder(
        &self,
        responder: impl Fn(&Value) -> String + Send + Sync + 'static,
    ) {
        *lock(&self.state.transcription_responder) = Some(Arc::new(responder));
    }

    /// The language `verbose_json` transcriptions name, as Whisper names it (`"spanish"`); empty
    /// until set, as `english`.
    pub fn transcription_language(&self, name: &str) {
        *lock(&self.state.language) = name.to_string();
    }

    /// Send PCM speech as a server synthesising it does: pieces of `bytes` (any number, odd
    /// ones split a sample), `every` apart.
    pub fn speech_pace(&self, bytes: usize, every: Duration) {
        *lock(&self.state.speech_pace) = Some((bytes.max(1), every));
    }

    /// PCM speech pieces sent so far (with [`speech_pace`](Self::speech_pace)).
    pub fn speech_pieces_sent(&self) -> usize {
        self.state
            .speech_pieces_sent
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Hold each chat answer's first byte back this long (a slow model).
    pub fn chat_delay(&self, delay: Duration) {
        *lock(&self.state.chat_delay) = delay;
    }

    /// Answer the next requests with these statuses (429 comes with `Retry-After: 0`).
    pub fn fail_next(&self, statuses: &[u16]) {
        lock(&self.state.fail_next).extend(statuses.iter().copied());
    }

    pub fn fail_always(&self, status: u16) {
        *lock(&self.state.fail_always) = Some(status);
    }

    pub fn requests(&self) -> Vec<OpenAiRequest> {
        lock(&self.state.requests).clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<OpenAiRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with(path))
            .collect()
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OpenAiState {
    /// The failure to answer with, if any, after checking the bearer key.
    fn gate(
        &self,
        path: &str,
        headers: &HeaderMap,
        body: Value,
        wav: Option<(u32, u16, u16, usize)>,
    ) -> Option<Response> {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let status = if authorization.as_deref() != Some(&format!("Bearer {}", self.api_key)) {
            401
        } else if let Some(s) = lock(&self.fail_next).pop_front() {
            s
        } else {
            lock(&self.fail_always).unwrap_or(200)
        };
        lock(&self.requests).push(OpenAiRequest {
            path: path.to_string(),
            authorization: authorization.clone(),
            body,
            wav,
            status,
            request_id: headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(String::from),
        });
        if status == 200 {
            return None;
        }
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // like OpenAI, a 401 quotes the key it was given
        let message = match (status, &authorization) {
            (401, Some(auth)) => format!("Incorrect API key provided: {auth}"),
            _ => format!("fake failure {status}"),
        };
        let error = json!({"error": {"message": message, "type": "fake", "code": status}});
        let mut response = (code, axum::Json(error)).into_response();
        if status == 429 {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("0"));
        }
        Some(response)
    }
}

fn bad_request(why: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": {"message": why}})),
    )
        .into_response()
}

/// A form part: its file name (for files) and its bytes.
type FormPart = (Option<String>, Vec<u8>);

/// The parts of a `multipart/form-data` body, by name.
fn parse_multipart(content_type: &str, body: &[u8]) -> Option<HashMap<String, FormPart>> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let mut parts = HashMap::new();
    let mut rest = body;
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let start = find(rest, delimiter.as_bytes())?;
    rest = &rest[start + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let head_end = find(rest, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&rest[..head_end]).ok()?;
        rest = &rest[head_end + 4..];
        let end = find(rest, format!("\r\n{delimiter}").as_bytes())?;
        let data = rest[..end].to_vec();
        rest = &rest[end + 2 + delimiter.len()..];
        let disposition = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))?;
        let field = |key: &str| {
            disposition.split(';').find_map(|p| {
                p.trim()
                    .strip_prefix(&format!("{key}=\""))
                    .map(|v| v.trim_end_matches('"').to_string())
            })
        };
        parts.insert(field("name")?, (field("filename"), data));
    }
}

/// (sample rate, channels, bits, samples) of a WAV file.
fn wav_format(bytes: &[u8]) -> Option<(u32, u16, u16, usize)> {
    if bytes.len() < 44 || &bytes[0..4] != b"RIFF" || &bytes[8..16] != b"WAVEfmt " {
        return None;
    }
    let channels = u16::from_le_bytes([bytes[22], bytes[23]]);
    let rate = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
    let bits = u16::from_le_bytes([bytes[34], bytes[35]]);
    if &bytes[36..40] != b"data" {
        return None;
    }
    let len = u32::from_le_bytes([bytes[40], bytes[41], bytes[42], bytes[43]]) as usize;
    (44 + len == bytes.len()).then_some((rate, channels, bits, len / 2))
}

async fn openai_transcriptions(
    State(state): State<Arc<OpenAiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let Some(parts) = content_type
        .starts_with("multipart/form-data")
        .then(|| parse_multipart(&content_type, &body))
        .flatten()
    else {
        return bad_request("expected multipart/form-data");
    };
    let text_field = |name: &str| {
        parts
            .get(name)
            .map(|(_, v)| String::from_utf8_lossy(v).to_string())
    };
    let fields = json!({
        "model": text_field("model"),
        "response_format": text_field("response_format"),
        "prompt": text_field("prompt"),
        "filename": parts.get("file").and_then(|(f, _)| f.clone()),
    });
    let wav = parts.get("file").and_then(|(_, data)| wav_format(data));
    if let Some(failure) = state.gate("/v1/audio/transcriptions", &headers, fields, wav) {
        return failure;
    }
    if wav.is_none() {
        return bad_request("file must be a WAV file");
    }
    if text_field("model").is_none_or(|m| m.is_empty()) {
        return bad_request("model is required");
    }
    let responder = lock(&state.transcription_responder).clone();
    let text = match responder {
        Some(respond) => respond(&json!({
            "model": text_field("model"),
            "response_format": text_field("response_format"),
            "prompt": text_field("prompt"),
        })),
        None => lock(&state.transcripts).pop_front().unwrap_or_default(),
    };
    if text_field("response_format").as_deref() == Some("verbose_json") {
        // as Whisper answers: the language by name, the duration, the segments
        return axum::Json(json!({
            "task": "transcribe",
            "language": match lock(&state.language).as_str() {
                "" => "english".to_string(),
                name => name.to_string(),
            },
            "duration": 1.0,
            "text": text,
            "segments": [],
        }))
        .into_response();
    }
    axum::Json(json!({ "text": text })).into_response()
}

async fn openai_speech(
    State(state): State<Arc<OpenAiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("expected JSON");
    };
    if let Some(failure) = state.gate("/v1/audio/speech", &headers, request.clone(), None) {
        return failure;
    }
    let input = request.get("input").and_then(Value::as_str).unwrap_or("");
    if input.is_empty() || request.get("voice").and_then(Value::as_str).is_none() {
        return bad_request("input and voice are required");
    }
    let ms = input.chars().count() as u64 * 60;
    match lock(&state.speech_format).unwrap_or(SpeechFormat::Pcm) {
        SpeechFormat::Pcm => {
            let pcm: Vec<u8> = tone(ms, 24_000)
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect();
            let Some((bytes, every)) = *lock(&state.speech_pace) else {
                return ([(header::CONTENT_TYPE, "audio/pcm")], pcm).into_response();
            };
            // chunked, as it is made
            let pieces: Vec<Bytes> = pcm.chunks(bytes).map(Bytes::copy_from_slice).collect();
            let sent = state.speech_pieces_sent.clone();
            let body = futures_util::stream::iter(pieces.into_iter().enumerate()).then(
                move |(i, piece)| {
                    let sent = sent.clone();
                    async move {
                        if i > 0 {
                            tokio::time::sleep(every).await;
                        }
                        sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        Ok::<_, std::io::Error>(piece)
                    }
                },
            );
            (
                [(header::CONTENT_TYPE, "audio/pcm")],
                axum::body::Body::from_stream(body),
            )
                .into_response()
        }
        SpeechFormat::Wav => {
            let wav = crate::backends::wav::encode(&tone(ms, 22_050), 22_050);
            ([(header::CONTENT_TYPE, "audio/wav")], wav).into_response()
        }
    }
}

async fn openai_chat(
    State(state): State<Arc<OpenAiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("expected JSON");
    };
    if let Some(failure) = state.gate("/v1/chat/completions", &headers, request.clone(), None) {
        return failure;
    }
    if request.get("stream") != Some(&Value::Bool(true)) {
        return bad_request("this fake only streams");
    }
    let responder = lock(&state.chat_responder).clone();
    let sse = match responder {
        Some(respond) => respond(&request),
        None => lock(&state.chat_body)
            .clone()
            .unwrap_or_else(|| DEFAULT_CHAT_SSE.to_string()),
    };
    let delay = *lock(&state.chat_delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    // one network write per line, as a real server flushes each event
    let chunks: Vec<Result<Bytes, std::io::Error>> = sse
        .split_inclusive('\n')
        .map(|l| Ok(Bytes::from(l.to_string())))
        .collect();
    let stream = futures_util::stream::iter(chunks);
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// ElevenLabs
// ---------------------------------------------------------------------------------------------

/// What one ElevenLabs stream received.
#[derive(Debug, Clone, PartialEq)]
pub struct ElevenLabsStream {
    pub voice_id: String,
    pub query: HashMap<String, String>,
    pub api_key: Option<String>,
    /// The `X-Request-Id` header.
    pub request_id: Option<String>,
    /// The client's messages, in order.
    pub messages: Vec<Value>,
}

/// ElevenLabs' `/v1/text-to-speech/{voice_id}/stream-input` socket: after the opening message,
/// the text and the closing `{"text":""}`, it streams the µ-law audio (a tone, 60 ms per
/// character of text) base64-encoded in several messages with their alignment, then `isFinal`.
pub struct FakeElevenLabs {
    /// The base URL to configure (`ELEVENLABS_URL`).
    pub url: String,
    pub api_key: String,
    state: Arc<ElevenState>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct ElevenState {
    api_key: String,
    streams: Mutex<Vec<ElevenLabsStream>>,
    /// Close every stream with a policy-violation close frame instead of audio.
    fail: Mutex<bool>,
    /// Wait this long before each audio message after the first.
    pace: Mutex<Duration>,
    /// Wait this long before the first audio message (a slow first byte).
    first_delay: Mutex<Duration>,
    /// Drop the socket (no close frame) after this many audio messages.
    drop_after: Mutex<Option<usize>>,
    /// Audio messages sent, over all streams.
    audio_sent: std::sync::atomic::AtomicUsize,
}

impl FakeElevenLabs {
    pub async fn start() -> Self {
        let api_key = format!("xi-{}", uuid::Uuid::new_v4().simple());
        let state = Arc::new(ElevenState {
            api_key: api_key.clone(),
            ..ElevenState::default()
        });
        let router = Router::new()
            .route(
                "/v1/text-to-speech/{voice_id}/stream-input",
                any(eleven_upgrade),
            )
            .with_state(state.clone());
        let (addr, task) = serve(router).await;
        Self {
            url: format!("ws://{addr}"),
            api_key,
            state,
            task,
        }
    }

    /// Fail every stream (a close frame with an error, as ElevenLabs reports quota or voice
    /// errors).
    pub fn fail(&self, fail: bool) {
        *lock(&self.state.fail) = fail;
    }

    pub fn streams(&self) -> Vec<ElevenLabsStream> {
        lock(&self.state.streams).clone()
    }

    /// Send each audio message after the first `every` after the one before, as a provider
    /// does while it synthesises.
    pub fn pace(&self, every: Duration) {
        *lock(&self.state.pace) = every;
    }

    /// Hold each stream's first audio message back this long (a provider slow to start).
    pub fn first_delay(&self, delay: Duration) {
        *lock(&self.state.first_delay) = delay;
    }

    /// Drop each stream's socket after `n` audio messages (`None`: send them all).
    pub fn drop_after(&self, n: Option<usize>) {
        *lock(&self.state.drop_after) = n;
    }

    /// Audio messages sent so far, over all streams.
    pub fn audio_sent(&self) -> usize {
        self.state
            .audio_sent
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for FakeElevenLabs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn eleven_upgrade(
    State(state): State<Arc<ElevenState>>,
    Path(voice_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let api_key = headers
        .get("xi-api-key")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    if api_key.as_deref() != Some(state.api_key.as_str()) {
        return (StatusCode::UNAUTHORIZED, "invalid api key").into_response();
    }
    let index = {
        let mut streams = lock(&state.streams);
        streams.push(ElevenLabsStream {
            voice_id,
            query,
            api_key,
            request_id: headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(String::from),
            messages: Vec::new(),
        });
        streams.len() - 1
    };
    ws.on_upgrade(move |socket| eleven_session(state, socket, index))
}

async fn eleven_session(state: Arc<ElevenState>, mut socket: WebSocket, index: usize) {
    let mut text = String::new();
    while let Some(Ok(msg)) = socket.recv().await {
        let Message::Text(raw) = msg else {
            continue;
        };
        let v: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
        lock(&state.streams)[index].messages.push(v.clone());
        let piece = v.get("text").and_then(Value::as_str).unwrap_or("");
        if piece.is_empty() {
            break; // end of input
        }
        text.push_str(piece);
    }
    if *lock(&state.fail) {
        let frame = axum::extract::ws::CloseFrame {
            code: 1008,
            reason: "quota_exceeded".into(),
        };
        let _ = socket.send(Message::Close(Some(frame))).await;
        return;
    }
    let text = text.trim();
    let pcm = tone(text.chars().count() as u64 * 60, 8_000);
    let mut ulaw = vec![0u8; pcm.len()];
    g711::encode_into(&pcm, &mut ulaw);
    let chars: Vec<String> = text.chars().map(String::from).collect();
    let pace = *lock(&state.pace);
    let drop_after = *lock(&state.drop_after);
    let first_delay = *lock(&state.first_delay);
    if !first_delay.is_zero() {
        tokio::time::sleep(first_delay).await;
    }
    for (i, chunk) in ulaw.chunks(1_600).enumerate() {
        if drop_after == Some(i) {
            return; // the socket drops mid-stream
        }
        if i > 0 && !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
        let msg = json!({
            "audio": base64::engine::general_purpose::STANDARD.encode(chunk),
            "isFinal": null,
            "normalizedAlignment": if i == 0 {
                json!({
                    "chars": chars,
                    "charStartTimesMs": (0..chars.len()).map(|c| c * 60).collect::<Vec<_>>(),
                    "charDurationsMs": vec![60; chars.len()],
                })
            } else {
                Value::Null
            },
        });
        if socket
            .send(Message::Text(msg.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
        state
            .audio_sent
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    let _ = socket
        .send(Message::Text(
            json!({"audio": null, "isFinal": true}).to_string().into(),
        ))
        .await;
    let _ = socket.send(Message::Close(None)).await;
}
