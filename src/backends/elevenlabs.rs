//! ElevenLabs streaming text-to-speech over its WebSocket input-streaming protocol:
//! `{ELEVENLABS_URL}/v1/text-to-speech/{voice_id}/stream-input?model_id=…&output_format=ulaw_8000`
//! with the `xi-api-key` header. The client sends the opening message (`{"text":" ",
//! "voice_settings":{…}}`), the text (`try_trigger_generation`, `flush`), then the closing
//! `{"text":""}`, and reads `{"audio": base64 µ-law, "isFinal": …, "normalizedAlignment": …}`
//! messages until `isFinal`. The audio is already the engine's 8 kHz µ-law, decoded here to
//! [`Speech`] at 8 kHz, and handed on message by message ([`ElevenLabsTts::stream`]), so a
//! call plays the first piece while the rest is synthesised.
//!
//! A receptionist's `voice` names an ElevenLabs voice id; anything that is not one (such as the
//! offline voices' names) speaks with [`DEFAULT_VOICE`].

use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use super::{BackendError, BoxFuture, Speech, SpeechStream, TextToSpeech};
use crate::config::Secret;
use crate::engine::audio::g711;

/// Default endpoint.
pub const DEFAULT_URL: &str = "wss://api.elevenlabs.io";
/// Default model: the low-latency one.
pub const DEFAULT_MODEL: &str = "eleven_flash_v2_5";
/// "Rachel", one of ElevenLabs' premade voices.
pub const DEFAULT_VOICE: &str = "21m00Tcm4TlvDq8ikWAM";
/// A few premade voices (Rachel, Domi, Bella, Antoni, Josh, Adam); the first is the default.
pub const VOICES: [&str; 6] = [
    DEFAULT_VOICE,
    "AZnzlk1XvdvUeBnXmlld",
    "EXAVITQu4vr4xnSDxMaL",
    "ErXwobaYiN019PkySvjV",
    "TxGEqnHWrfWFTfGW9XgX",
    "pNInz6obpgDQGcFmaJgB",
];
/// Longest text sent, in characters.
pub const MAX_TTS_CHARS: usize = 2_000;
/// Most audio accepted for one text (5 minutes of 8 kHz µ-law).
const MAX_AUDIO_BYTES: usize = 5 * 60 * 8_000;

/// How to reach ElevenLabs.
#[derive(Clone)]
pub struct ElevenLabsConfig {
    /// `wss://api.elevenlabs.io` (or a compatible server).
    pub url: String,
    pub api_key: Secret,
    pub model: String,
    /// Longest one attempt may take, from connecting to the final message.
    pub timeout: Duration,
    /// Attempts in all; a retry happens only before any audio arrived.
    pub attempts: u32,
    pub backoff: Duration,
}

impl std::fmt::Debug for ElevenLabsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElevenLabsConfig")
            .field("url", &self.url)
            .field("api_key", &self.api_key)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl ElevenLabsConfig {
    pub fn new(url: impl Into<String>, api_key: Secret) -> Self {
        Self {
            url: url.into(),
            api_key,
            model: DEFAULT_MODEL.into(),
            timeout: Duration::from_secs(6),
            attempts: 2,
            backoff: Duration::from_millis(200),
        }
    }

    /// The stream-input URL for `voice_id`.
    pub fn stream_url(&self, voice_id: &str) -> Result<url::Url, BackendError> {
        let base = url::Url::parse(&self.url)
            .map_err(|e| BackendError::Unavailable(format!("ELEVENLABS_URL: {e}")))?;
        if !matches!(base.scheme(), "ws" | "wss") {
            return Err(BackendError::Unavailable(
                "ELEVENLABS_URL must be a ws:// or wss:// URL".into(),
            ));
        }
        let mut url = url::Url::parse(&format!(
            "{}/v1/text-to-speech/{voice_id}/stream-input",
            base.as_str().trim_end_matches('/')
        ))
        .map_err(|e| BackendError::Unavailable(format!("ELEVENLABS_URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("model_id", &self.model)
            .append_pair("output_format", "ulaw_8000");
        Ok(url)
    }
}

/// The voice id to use for a receptionist's `voice`.
pub fn voice_id(voice: &str) -> &str {
    let v = voice.trim();
    if (10..=40).contains(&v.len()) && v.chars().all(|c| c.is_ascii_alphanumeric()) {
        v
    } else {
        DEFAULT_VOICE
    }
}

/// ElevenLabs synthesis. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ElevenLabsTts {
    config: std::sync::Arc<ElevenLabsConfig>,
}

impl ElevenLabsTts {
    pub fn new(config: ElevenLabsConfig) -> Result<Self, BackendError> {
        config.stream_url(DEFAULT_VOICE)?;
        Ok(Self {
            config: std::sync::Arc::new(config),
        })
    }

    /// The whole audio of `text` (the pieces of [`stream`](Self::stream), joined).
    pub async fn speak(&self, text: &str, voice: &str) -> Result<Speech, BackendError> {
        super::joined_speech(self.stream(text, voice), 8_000).await
    }

    /// The audio of `text` as ElevenLabs sends it: one [`Speech`] per audio message, the first
    /// as soon as it comes. Failed attempts are retried (with back-off) only before any audio
    /// came; a failure after that ends the stream with the error. Dropping the stream closes
    /// the socket.
    pub fn stream(&self, text: &str, voice: &str) -> SpeechStream {
        let text: String = text.chars().take(MAX_TTS_CHARS).collect();
        if text.trim().is_empty() {
            return Box::pin(futures_util::stream::empty());
        }
        let voice = voice_id(voice).to_owned();
        let this = self.clone();
        let request_id = super::request_id();
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_AHEAD);
        let task = tokio::spawn(async move {
            let mut audio_sent = false;
            let mut last = BackendError::Unavailable("ElevenLabs: not attempted".into());
            for attempt in 1..=this.config.attempts.max(1) {
                if attempt > 1 {
                    tokio::time::sleep(
                        this.config
                            .backoff
                            .saturating_mul(1 << (attempt - 2).min(8)),
                    )
                    .await;
                }
                let result = tokio::time::timeout(
                    this.config.timeout,
                    this.attempt(&text, &voice, request_id.as_deref(), &tx, &mut audio_sent),
                )
                .await;
                match result {
                    Ok(Ok(())) => return,
                    Ok(Err(Attempt::Permanent(e))) => {
                        last = e;
                        break;
                    }
                    Ok(Err(Attempt::Retry(e))) => last = e,
                    Err(_) => last = BackendError::Timeout,
                }
                tracing::debug!(attempt, error = %last, "ElevenLabs attempt failed");
                if audio_sent {
                    break; // part of the text was heard: a retry would say it twice
                }
            }
            let _ = tx.send(Err(last)).await;
        });
        super::task_stream(rx, task)
    }

    /// One socket: the µ-law audio of `text`, sent on `tx` piece by piece as it comes
    /// (`audio_sent` once any was); `request_id` as `X-Request-Id`. Returns early, without error, if `tx`'s reader is gone.
    async fn attempt(
        &self,
        text: &str,
        voice: &str,
        request_id: Option<&str>,
        tx: &tokio::sync::mpsc::Sender<Result<Speech, BackendError>>,
        audio_sent: &mut bool,
    ) -> Result<(), Attempt> {
        let url = self.config.stream_url(voice).map_err(Attempt::Permanent)?;
        let mut request = url.as_str().into_client_request().map_err(|e| {
            Attempt::Permanent(BackendError::Failed(format!("ElevenLabs request: {e}")))
        })?;
        let key = self.config.api_key.expose().parse().map_err(|_| {
            Attempt::Permanent(BackendError::Failed(
                "ELEVENLABS_API_KEY is not a valid header value".into(),
            ))
        })?;
        request.headers_mut().insert("xi-api-key", key);
        if let Some(id) = request_id.and_then(|id| id.parse().ok()) {
            request.headers_mut().insert("x-request-id", id);
        }
        let (mut ws, _) = match tokio_tungstenite::connect_async(request).await {
            Ok(ok) => ok,
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status();
                let e = BackendError::Failed(format!("ElevenLabs: HTTP {status} on connect"));
                return Err(if status.as_u16() == 429 || status.is_server_error() {
                    Attempt::Retry(BackendError::Unavailable(e.to_string()))
                } else {
                    Attempt::Permanent(e)
                });
            }
            Err(e) => {
                return Err(Attempt::Retry(BackendError::Unavailable(format!(
                    "ElevenLabs: {e}"
                ))));
            }
        };
        let lost = |e: tungstenite::Error| {
            Attempt::Retry(BackendError::Unavailable(format!("ElevenLabs: {e}")))
        };
        let opening = serde_json::json!({
            "text": " ",
            "voice_settings": { "stability": 0.5, "similarity_boost": 0.8, "speed": 1.0 },
        });
        let body = serde_json::json!({
            "text": format!("{} ", text.trim()),
            "try_trigger_generation": true,
            "flush": true,
        });
        for msg in [opening, body, serde_json::json!({ "text": "" })] {
            ws.send(Message::text(msg.to_string()))
                .await
                .map_err(lost)?;
        }
        let mut audio_bytes = 0usize;
        loop {
            let msg = match ws.next().await {
                Some(Ok(msg)) => msg,
                Some(Err(e)) => return Err(lost(e)),
                None => break,
            };
            let text = match msg {
                Message::Text(t) => t,
                Message::Close(frame) => {
                    // a close with an error reason before any audio is a failure (e.g. a bad
                    // voice id or quota): ElevenLabs reports them in the close frame
                    if audio_bytes == 0
                        && let Some(f) = frame
                        && f.code != tungstenite::protocol::frame::coding::CloseCode::Normal
                    {
                        return Err(Attempt::Permanent(BackendError::Failed(format!(
                            "ElevenLabs closed the stream: {}",
                            f.reason.chars().take(200).collect::<String>()
                        ))));
                    }
                    break;
                }
                _ => continue,
            };
            let v: Value = serde_json::from_str(&text).map_err(|e| {
                Attempt::Permanent(BackendError::Failed(format!(
                    "ElevenLabs: malformed message: {e}"
                )))
            })?;
            if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
                let message = v
                    .get("message")
                    .and_then(Value::as_str)
                    .or_else(|| err.as_str())
                    .unwrap_or("error");
                return Err(Attempt::Permanent(BackendError::Failed(format!(
                    "ElevenLabs: {}",
                    message.chars().take(200).collect::<String>()
                ))));
            }
            if let Some(b64) = v.get("audio").and_then(Value::as_str) {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| {
                        Attempt::Permanent(BackendError::Failed(format!(
                            "ElevenLabs: bad audio chunk: {e}"
                        )))
                    })?;
                if audio_bytes + bytes.len() > MAX_AUDIO_BYTES {
                    return Err(Attempt::Permanent(BackendError::Failed(
                        "ElevenLabs: too much audio".into(),
                    )));
                }
                if !bytes.is_empty() {
                    audio_bytes += bytes.len();
                    let mut pcm = vec![0i16; bytes.len()];
                    g711::decode_into(&bytes, &mut pcm);
                    let piece = Speech {
                        pcm,
                        sample_rate: 8_000,
                        fallback: false,
                    };
                    if tx.send(Ok(piece)).await.is_err() {
                        return Ok(()); // nobody listens any more
                    }
                    *audio_sent = true;
                }
            }
            if v.get("isFinal").and_then(Value::as_bool) == Some(true) {
                break;
            }
        }
        let _ = ws.close(None).await;
        if audio_bytes == 0 {
            return Err(Attempt::Retry(BackendError::Unavailable(
                "ElevenLabs: the stream ended without audio".into(),
            )));
        }
        Ok(())
    }
}

/// Pieces of audio a stream may hold ahead of its reader.
pub(crate) const STREAM_AHEAD: usize = 32;

/// Why an attempt failed, and whether another may help.
enum Attempt {
    Retry(BackendError),
    Permanent(BackendError),
}

impl TextToSpeech for ElevenLabsTts {
    fn synthesize(
        &self,
        text: &str,
        voice: &str,
    ) -> BoxFuture<'static, Result<Speech, BackendError>> {
        let this = self.clone();
        let text = text.to_owned();
        let voice = voice.to_owned();
        Box::pin(async move { this.speak(&text, &voice).await })
    }

    fn synthesize_stream(&self, text: &str, voice: &str) -> SpeechStream {
        self.stream(text, voice)
    }

    /// Its models (the default `eleven_flash_v2_5` among them) speak some 30 languages.
    fn speaks_languages(&self) -> bool {
        true
    }

    fn voices(&self) -> Vec<String> {
        VOICES.map(String::from).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voice_ids_and_url() {
        assert_eq!(voice_id("slt"), DEFAULT_VOICE);
        assert_eq!(voice_id("EXAVITQu4vr4xnSDxMaL"), "EXAVITQu4vr4xnSDxMaL");
        assert_eq!(voice_id("../../etc/passwd"), DEFAULT_VOICE);
        let c = ElevenLabsConfig::new("ws://127.0.0.1:9/", Secret::new("k"));
        assert_eq!(
            c.stream_url("abc").unwrap().as_str(),
            "ws://127.0.0.1:9/v1/text-to-speech/abc/stream-input?model_id=eleven_flash_v2_5&output_format=ulaw_8000"
        );
        assert!(
            ElevenLabsConfig::new("https://x", Secret::new("k"))
                .stream_url("a")
                .is_err()
        );
    }
}
