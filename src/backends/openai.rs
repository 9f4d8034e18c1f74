//! OpenAI-compatible speech (the same client serves OpenAI, llama.cpp, vLLM, Ollama and other
//! compatible servers):
//!
//! - [`OpenAiStt`]: `POST {base}/audio/transcriptions`, multipart (`file` = the utterance as a
//!   16 kHz WAV, `model`, `response_format=json`), at the end of each utterance.
//! - [`OpenAiTts`]: `POST {base}/audio/speech` with `response_format: "pcm"` (24 kHz 16-bit
//!   little-endian mono), handed on piece by piece as the body streams in; a server that answers
//!   `audio/wav` instead is read whole, from its header.
//!
//! Bearer auth with `OPENAI_API_KEY`; timeouts and retries as in [`super::http`].

use std::sync::Arc;

use super::http::{self, RetryPolicy};
use super::{
    BackendError, BoxFuture, Heard, Speech, SpeechStream, SpeechToText, SttHint, SttSession,
    TextToSpeech, UtteranceBuffer, wav,
};
use crate::config::Secret;

/// Default transcription model.
pub const DEFAULT_STT_MODEL: &str = "whisper-1";
/// Default speech model.
pub const DEFAULT_TTS_MODEL: &str = "tts-1";
/// The sample rate of OpenAI's `pcm` speech format.
pub const PCM_RATE: u32 = 24_000;
/// OpenAI's voices; the first is the default.
pub const VOICES: [&str; 11] = [
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
];
/// Longest text sent for synthesis, in characters (the API's limit is 4096).
pub const MAX_TTS_CHARS: usize = 4096;

/// Where and how to reach an OpenAI-compatible server.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// E.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub api_key: Secret,
    pub model: String,
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .field("model", &self.model)
            .field("retry", &self.retry)
            .finish()
    }
}

/// A provider's transcript in the trait's form: lowercase words separated by single spaces,
/// punctuation dropped (apostrophes inside words and decimal points inside numbers kept).
pub fn provider_transcript(raw: &str) -> String {
    crate::engine::dialogue::understand::normalize(&raw.to_lowercase())
}

struct Inner {
    config: OpenAiConfig,
    http: reqwest::Client,
}

/// Batch transcription of each utterance with `/audio/transcriptions`.
#[derive(Clone)]
pub struct OpenAiStt {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OpenAiStt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("OpenAiStt")
            .field(&self.inner.config)
            .finish()
    }
}

impl OpenAiStt {
    pub fn new(config: OpenAiConfig) -> Result<Self, BackendError> {
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                http: http::client()?,
            }),
        })
    }

    /// Transcribe 16 kHz mono audio, what the dialogue expects as `hint`.
    pub async fn transcribe(&self, pcm16k: &[i16], hint: SttHint) -> Result<String, BackendError> {
        Ok(self.transcribe_heard(pcm16k, hint, false, &[]).await?.text)
    }

    /// [`transcribe`](Self::transcribe); `multilingual`: in any language, and say which
    /// (`response_format=verbose_json`, whose `language` names it; no English prompt to bias
    /// the model). `terms`, words the caller is likely to say, end the prompt (alone in
    /// multilingual mode: names are not English).
    pub async fn transcribe_heard(
        &self,
        pcm16k: &[i16],
        hint: SttHint,
        multilingual: bool,
        terms: &[String],
    ) -> Result<Heard, BackendError> {
        let inner = &self.inner;
        let wav = wav::encode(pcm16k, 16_000);
        let boundary = format!("receptionist-{}", uuid::Uuid::new_v4().simple());
        let format = if multilingual { "verbose_json" } else { "json" };
        let mut parts = vec![
            Part::file("file", "utterance.wav", "audio/wav", &wav),
            Part::text("model", &inner.config.model),
            Part::text("response_format", format),
        ];
        let prompt = [
            hint_prompt(hint)
                .filter(|_| !multilingual)
                .map(str::to_string),
            (!terms.is_empty()).then(|| format!("{}.", terms.join(", "))),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        if !prompt.is_empty() {
            parts.push(Part::text("prompt", &prompt));
        }
        let body = multipart(&boundary, &parts);
        let url = http::join(&inner.config.base_url, "audio/transcriptions");
        let request_id = super::request_id();
        let response = http::send("OpenAI transcription", &inner.config.retry, || {
            http::with_request_id(inner.http.post(&url), request_id.as_deref())
                .bearer_auth(inner.config.api_key.expose())
                .header(
                    reqwest::header::CONTENT_TYPE,
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(body.clone())
        })
        .await?;
        #[derive(serde::Deserialize)]
        struct Transcription {
            text: String,
            #[serde(default)]
            language: Option<String>,
        }
        let bytes = response.bytes().await.map_err(|e| {
            BackendError::Unavailable(format!("OpenAI transcription: {}", http::without_url(&e)))
        })?;
        let parsed: Transcription = serde_json::from_slice(&bytes).map_err(|e| {
            BackendError::Failed(format!("OpenAI transcription: unexpected answer: {e}"))
        })?;
        Ok(Heard {
            text: provider_transcript(&parsed.text),
            language: parsed.language.as_deref().and_then(super::language_code),
        })
    }
}

/// The transcription `prompt` for what the dialogue expects: a line in the style of the answer
/// (Whisper-family models follow a prompt's vocabulary, spelling and number style), or none.
pub fn hint_prompt(hint: SttHint) -> Option<&'static str> {
    match hint {
        SttHint::Name => Some("My name is Maria Lopez."),
        SttHint::Location => Some("I live in San Antonio, Texas."),
        SttHint::YesNo => Some("Yes. No."),
        SttHint::Number => Some("I have 3 years. About 40 hours."),
        SttHint::FreeText | SttHint::Question | SttHint::Any => None,
    }
}

/// The hint a transcription `prompt` was made from ([`hint_prompt`]'s inverse, key terms after
/// it ignored; `Any` for none).
pub fn hint_of_prompt(prompt: &str) -> SttHint {
    [
        SttHint::Name,
        SttHint::Location,
        SttHint::YesNo,
        SttHint::Number,
    ]
    .into_iter()
    .find(|h| hint_prompt(*h).is_some_and(|p| prompt.starts_with(p)))
    .unwrap_or(SttHint::Any)
}

impl SpeechToText for OpenAiStt {
    fn start(&self, hint: SttHint) -> Box<dyn SttSession> {
        self.start_in(hint, false)
    }

    fn start_in(&self, hint: SttHint, multilingual: bool) -> Box<dyn SttSession> {
        self.start_with_terms(hint, multilingual, &[])
    }

    /// The terms end the transcription's `prompt`.
    fn start_with_terms(
        &self,
        hint: SttHint,
        multilingual: bool,
        terms: &[String],
    ) -> Box<dyn SttSession> {
        Box::new(OpenAiSession {
            stt: self.clone(),
            buffer: UtteranceBuffer::default(),
            hint,
            multilingual,
            terms: terms.to_vec(),
        })
    }
}

struct OpenAiSession {
    stt: OpenAiStt,
    buffer: UtteranceBuffer,
    hint: SttHint,
    multilingual: bool,
    terms: Vec<String>,
}

impl SttSession for OpenAiSession {
    fn push(&mut self, pcm16k: &[i16]) {
        self.buffer.push(pcm16k);
    }

    fn push_phone(&mut self, mulaw: &[u8]) {
        self.buffer.push_phone(mulaw);
    }

    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<String, BackendError>> {
        let heard = self.finish_heard();
        Box::pin(async move { Ok(heard.await?.text) })
    }

    fn finish_heard(self: Box<Self>) -> BoxFuture<'static, Result<Heard, BackendError>> {
        let OpenAiSession {
            stt,
            buffer,
            hint,
            multilingual,
            terms,
        } = *self;
        Box::pin(async move {
            if buffer.len() == 0 {
                return Ok(Heard::default());
            }
            if buffer.dropped() > 0 {
                tracing::debug!(
                    dropped = buffer.dropped(),
                    "utterance longer than the bound; oldest audio dropped"
                );
            }
            stt.transcribe_heard(&buffer.into_vec(), hint, multilingual, &terms)
                .await
        })
    }
}

/// One part of a `multipart/form-data` body.
pub struct Part<'a> {
    name: &'a str,
    file: Option<(&'a str, &'a str)>,
    data: &'a [u8],
}

impl<'a> Part<'a> {
    pub fn text(name: &'a str, value: &'a str) -> Self {
        Self {
            name,
            file: None,
            data: value.as_bytes(),
        }
    }
    pub fn file(name: &'a str, filename: &'a str, content_type: &'a str, data: &'a [u8]) -> Self {
        Self {
            name,
            file: Some((filename, content_type)),
            data,
        }
    }
}

/// A `multipart/form-data` body (RFC 7578) with `boundary`; names are ours, never user input.
pub fn multipart(boundary: &str, parts: &[Part<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match part.file {
            Some((filename, content_type)) => out.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{}\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n",
                    part.name
                )
                .as_bytes(),
            ),
            None => out.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{}\"\r\n\r\n", part.name).as_bytes(),
            ),
        }
        out.extend_from_slice(part.data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// Synthesis with `/audio/speech`.
#[derive(Clone)]
pub struct OpenAiTts {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OpenAiTts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("OpenAiTts")
            .field(&self.inner.config)
            .finish()
    }
}

impl OpenAiTts {
    pub fn new(config: OpenAiConfig) -> Result<Self, BackendError> {
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                http: http::client()?,
            }),
        })
    }

    /// The whole audio of `text` (the pieces of [`stream`](Self::stream), joined).
    pub async fn speak(&self, text: &str, voice: &str) -> Result<Speech, BackendError> {
        super::joined_speech(self.stream(text, voice), PCM_RATE).await
    }

    /// The audio of `text` as the server sends it: raw PCM piece by piece as the response body
    /// arrives (OpenAI streams it), so a call plays the start while the rest is made; a WAV
    /// answer whole. Retries (bounded, with back-off) happen before any audio; an error after
    /// that ends the stream. Dropping the stream ends the request.
    pub fn stream(&self, text: &str, voice: &str) -> SpeechStream {
        let text: String = text.chars().take(MAX_TTS_CHARS).collect();
        if text.trim().is_empty() {
            return Box::pin(futures_util::stream::empty());
        }
        let voice = VOICES
            .iter()
            .find(|v| v.eq_ignore_ascii_case(voice.trim()))
            .copied()
            .unwrap_or(VOICES[0]);
        let this = self.clone();
        let request_id = super::request_id();
        let (tx, rx) = tokio::sync::mpsc::channel(super::elevenlabs::STREAM_AHEAD);
        let task = tokio::spawn(async move {
            if let Err(e) = this.stream_into(&text, voice, request_id, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        super::task_stream(rx, task)
    }

    async fn stream_into(
        &self,
        text: &str,
        voice: &str,
        request_id: Option<std::sync::Arc<str>>,
        tx: &tokio::sync::mpsc::Sender<Result<Speech, BackendError>>,
    ) -> Result<(), BackendError> {
        let inner = &self.inner;
        let body = serde_json::json!({
            "model": inner.config.model,
            "input": text,
            "voice": voice,
            "response_format": "pcm",
        });
        let url = http::join(&inner.config.base_url, "audio/speech");
        let mut response = http::send("OpenAI speech", &inner.config.retry, || {
            http::with_request_id(inner.http.post(&url), request_id.as_deref())
                .bearer_auth(inner.config.api_key.expose())
                .json(&body)
        })
        .await?;
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let lost = |e: reqwest::Error| {
            BackendError::Unavailable(format!("OpenAI speech: {}", http::without_url(&e)))
        };
        if content_type.contains("wav") {
            let bytes = response.bytes().await.map_err(lost)?;
            return send_wav(tx, &bytes).await;
        }
        let raw = content_type.is_empty()
            || content_type.starts_with("audio/pcm")
            || content_type.starts_with("audio/l16")
            || content_type.starts_with("application/octet-stream");
        if !raw {
            return Err(BackendError::Failed(format!(
                "OpenAI speech: unsupported audio type {content_type:?} (asked for pcm)"
            )));
        }
        let sample_rate = rate_parameter(&content_type).unwrap_or(PCM_RATE);
        // a sample may be split between two pieces of the body
        let mut odd: Option<u8> = None;
        let mut first = true;
        let mut total = 0usize;
        while let Some(chunk) = response.chunk().await.map_err(lost)? {
            // a server that answers WAV without saying so: read it whole
            if first && chunk.starts_with(b"RIFF") {
                let mut bytes = chunk.to_vec();
                while let Some(more) = response.chunk().await.map_err(lost)? {
                    bytes.extend_from_slice(&more);
                }
                return send_wav(tx, &bytes).await;
            }
            first = false;
            total += chunk.len();
            if total > MAX_SPEECH_BYTES {
                return Err(BackendError::Failed("OpenAI speech: too much audio".into()));
            }
            let mut pcm = Vec::with_capacity(chunk.len() / 2 + 1);
            let mut bytes = &chunk[..];
            if let Some(lo) = odd.take()
                && let Some((&hi, rest)) = bytes.split_first()
            {
                pcm.push(i16::from_le_bytes([lo, hi]));
                bytes = rest;
            }
            let mut pairs = bytes.chunks_exact(2);
            pcm.extend(pairs.by_ref().map(|b| i16::from_le_bytes([b[0], b[1]])));
            odd = pairs.remainder().first().copied();
            if pcm.is_empty() {
                continue;
            }
            let piece = Speech {
                pcm,
                sample_rate,
                fallback: false,
            };
            if tx.send(Ok(piece)).await.is_err() {
                return Ok(()); // nobody listens any more
            }
        }
        Ok(())
    }
}

/// A whole WAV answer, as one piece.
async fn send_wav(
    tx: &tokio::sync::mpsc::Sender<Result<Speech, BackendError>>,
    bytes: &[u8],
) -> Result<(), BackendError> {
    let (pcm, sample_rate) = wav::decode(bytes)?;
    let piece = Speech {
        pcm,
        sample_rate,
        fallback: false,
    };
    let _ = tx.send(Ok(piece)).await;
    Ok(())
}

/// Most audio accepted for one text (5 minutes of 24 kHz 16-bit PCM).
const MAX_SPEECH_BYTES: usize = 5 * 60 * 24_000 * 2;

/// `rate=NNNN` in a content type such as `audio/pcm;rate=24000`.
fn rate_parameter(content_type: &str) -> Option<u32> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim() == "rate")
            .then(|| v.trim().parse().ok())
            .flatten()
    })
}

impl TextToSpeech for OpenAiTts {
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

    /// OpenAI's voices speak the language of the text.
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
    fn transcripts_are_lowercase_words() {
        assert_eq!(
            provider_transcript("My name is José Smith."),
            "my name is josé smith"
        );
        assert_eq!(
            provider_transcript("  I'm 3.5 years in,  yes! "),
            "i'm 3.5 years in yes"
        );
        assert_eq!(provider_transcript(""), "");
        assert_eq!(rate_parameter("audio/pcm; rate=16000"), Some(16_000));
        assert_eq!(rate_parameter("audio/pcm"), None);
    }

    #[test]
    fn multipart_body_has_every_part() {
        let body = multipart(
            "BOUND",
            &[
                Part::text("model", "whisper-1"),
                Part::file("file", "a.wav", "audio/wav", b"RIFF"),
            ],
        );
        let text = String::from_utf8_lossy(&body).to_string();
        assert_eq!(
            text,
            "--BOUND\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n\
             --BOUND\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n--BOUND--\r\n"
        );
    }
}
