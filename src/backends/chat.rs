//! An OpenAI-compatible streaming chat-completions client: `POST {base}/chat/completions` with
//! `stream: true`, read as server-sent events (`data: {chunk}` lines until `data: [DONE]`), text
//! deltas handed out as they arrive and tool-call deltas assembled by index.
//!
//! The dialogue consults it through `llm.rs`.
//! Dropping a [`ChatStream`] cancels the request.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::BackendError;
use super::http::{self, RetryPolicy};
use crate::config::Secret;

/// Longest wait for the next piece of a streamed answer.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read (text and tool arguments), against a server that never stops.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// Longest SSE line accepted.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Where and how to reach the chat model.
#[derive(Clone)]
pub struct ChatConfig {
    pub base_url: String,
    pub api_key: Secret,
    pub model: String,
    /// `timeout` bounds the whole answer; retries happen only before its first byte.
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for ChatConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .field("model", &self.model)
            .finish()
    }
}

/// One message of the conversation.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl std::fmt::Debug for ChatMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // contents are the caller's words: never in logs
        f.debug_struct("ChatMessage")
            .field("role", &self.role)
            .field("content_chars", &self.content.chars().count())
            .finish()
    }
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: "system".into(),
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: "assistant".into(),
            content: content.into(),
        }
    }
}

/// A function the model may call: `parameters` is a JSON schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

/// What to ask.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<Tool>,
    /// Force a call of this tool (`tool_choice`).
    pub tool_choice: Option<String>,
    /// Sent as `X-Request-Id`: which call and turn asked, for the provider's logs and ours.
    pub request_id: Option<String>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
}

/// A tool call the model made, its arguments as the JSON text it produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChatReply {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: Option<String>,
}

/// The streaming chat client. Cheap to clone.
#[derive(Clone)]
pub struct ChatClient {
    inner: Arc<(ChatConfig, reqwest::Client)>,
}

impl std::fmt::Debug for ChatClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ChatClient").field(&self.inner.0).finish()
    }
}

impl ChatClient {
    pub fn new(config: ChatConfig) -> Result<Self, BackendError> {
        Ok(Self {
            inner: Arc::new((config, http::client()?)),
        })
    }

    pub fn config(&self) -> &ChatConfig {
        &self.inner.0
    }

    /// The request body (`stream: true`).
    pub fn body(&self, request: &ChatRequest) -> Value {
        let mut body = serde_json::json!({
            "model": self.inner.0.model,
            "messages": request.messages,
            "stream": true,
        });
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "type": "function",
                        "function": {
                            "name": t.name,
                            "description": t.description,
                            "parameters": t.parameters,
                        }
                    })
                })
                .collect();
        }
        if let Some(name) = &request.tool_choice {
            body["tool_choice"] = serde_json::json!({
                "type": "function",
                "function": { "name": name },
            });
        }
        if let Some(t) = request.temperature {
            body["temperature"] = serde_json::json!(t);
        }
        if let Some(m) = request.max_tokens {
            body["max_tokens"] = serde_json::json!(m);
        }
        body
    }

    /// Start a streamed answer (retrying 429/5xx/connection failures before the first byte).
    pub async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, BackendError> {
        let (config, client) = &*self.inner;
        let url = http::join(&config.base_url, "chat/completions");
        let body = self.body(request);
        let response = http::send("chat completion", &config.retry, || {
            let mut r = client
                .post(&url)
                .bearer_auth(config.api_key.expose())
                .header(reqwest::header::ACCEPT, "text/event-stream");
            if let Some(id) = request
                .request_id
                .as_deref()
                .map(std::sync::Arc::<str>::from)
                .or_else(super::request_id)
            {
                r = r.header("x-request-id", &*id);
            }
            r.json(&body)
        })
        .await?;
        Ok(ChatStream {
            response: Some(response),
            buf: Vec::new(),
            reply: ChatReply::default(),
            bytes: 0,
            done: false,
        })
    }

    /// Ask and wait for the whole answer.
    pub async fn complete(&self, request: &ChatRequest) -> Result<ChatReply, BackendError> {
        let mut stream = self.stream(request).await?;
        while stream.next_text().await?.is_some() {}
        Ok(stream.into_reply())
    }
}

/// A streamed answer being read.
pub struct ChatStream {
    response: Option<reqwest::Response>,
    buf: Vec<u8>,
    reply: ChatReply,
    bytes: usize,
    done: bool,
}

impl ChatStream {
    /// The next text delta, or `None` at the end of the answer (tool calls are gathered on the
    /// way, see [`reply`](Self::reply)).
    pub async fn next_text(&mut self) -> Result<Option<String>, BackendError> {
        loop {
            // complete lines already received first
            while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                let line = String::from_utf8_lossy(&line);
                if let Some(text) = self.on_line(line.trim_end_matches(['\r', '\n']))? {
                    return Ok(Some(text));
                }
                if self.done {
                    return Ok(None);
                }
            }
            if self.done {
                return Ok(None);
            }
            let Some(response) = self.response.as_mut() else {
                return Ok(None);
            };
            let chunk = match tokio::time::timeout(IDLE_TIMEOUT, response.chunk()).await {
                Err(_) => return Err(BackendError::Timeout),
                Ok(Err(e)) if e.is_timeout() => return Err(BackendError::Timeout),
                Ok(Err(e)) => {
                    return Err(BackendError::Unavailable(format!(
                        "chat completion: {}",
                        http::without_url(&e)
                    )));
                }
                Ok(Ok(chunk)) => chunk,
            };
            match chunk {
                Some(bytes) => {
                    self.bytes += bytes.len();
                    if self.bytes > MAX_ANSWER_BYTES {
                        return Err(BackendError::Failed(
                            "chat completion: answer too long".into(),
                        ));
                    }
                    self.buf.extend_from_slice(&bytes);
                    if self.buf.len() > MAX_LINE_BYTES && !self.buf.contains(&b'\n') {
                        return Err(BackendError::Failed(
                            "chat completion: line too long".into(),
                        ));
                    }
                }
                None => {
                    // the stream ended: a last line without its newline still counts
                    self.response = None;
                    if !self.buf.is_empty() {
                        self.buf.push(b'\n');
                        continue;
                    }
                    if self.reply.finish_reason.is_none() {
                        return Err(BackendError::Unavailable(
                            "chat completion: stream ended before [DONE]".into(),
                        ));
                    }
                    self.done = true;
                    return Ok(None);
                }
            }
        }
    }

    /// One SSE line: a text delta, or nothing.
    fn on_line(&mut self, line: &str) -> Result<Option<String>, BackendError> {
        let Some(data) = line.strip_prefix("data:") else {
            // blank lines separate events; `event:`, `id:`, `retry:` and `:` comments carry
            // nothing we use
            return Ok(None);
        };
        let data = data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(None);
        }
        let chunk: Value = serde_json::from_str(data)
            .map_err(|e| BackendError::Failed(format!("chat completion: malformed chunk: {e}")))?;
        if let Some(err) = chunk.get("error") {
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("error");
            return Err(BackendError::Failed(format!("chat completion: {message}")));
        }
        let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else {
            return Ok(None); // e.g. a usage-only chunk
        };
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.reply.finish_reason = Some(reason.to_string());
        }
        let Some(delta) = choice.get("delta") else {
            return Ok(None);
        };
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for call in calls {
                let index = call
                    .get("index")
                    .and_then(Value::as_u64)
                    .map_or(self.reply.tool_calls.len().saturating_sub(1), |i| {
                        i as usize
                    });
                if index > 64 {
                    return Err(BackendError::Failed(
                        "chat completion: too many tool calls".into(),
                    ));
                }
                if self.reply.tool_calls.len() <= index {
                    self.reply
                        .tool_calls
                        .resize_with(index + 1, ToolCall::default);
                }
                let slot = &mut self.reply.tool_calls[index];
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    slot.id = id.to_string();
                }
                if let Some(f) = call.get("function") {
                    if let Some(name) = f.get("name").and_then(Value::as_str) {
                        slot.name.push_str(name);
                    }
                    if let Some(args) = f.get("arguments").and_then(Value::as_str) {
                        slot.arguments.push_str(args);
                    }
                }
            }
        }
        match delta.get("content").and_then(Value::as_str) {
            Some(text) if !text.is_empty() => {
                self.reply.text.push_str(text);
                Ok(Some(text.to_string()))
            }
            _ => Ok(None),
        }
    }

    /// What has been assembled so far.
    pub fn reply(&self) -> &ChatReply {
        &self.reply
    }

    pub fn into_reply(self) -> ChatReply {
        self.reply
    }
}
