//! Real local servers standing in for the outside world, for end-to-end tests of deliveries:
//!
//! - [`FakeTwilio`]: Twilio's Messages REST API over HTTP (checks the path, basic auth and form;
//!   answers 201 with an `SM...` SID and records the message), scriptable to answer errors in
//!   Twilio's JSON shape or to stall;
//! - [`FakeSmtp`]: a minimal but real SMTP server over TCP (EHLO/HELO, MAIL FROM, RCPT TO, DATA
//!   with dot-stuffing, RSET, NOOP, QUIT) recording each message, scriptable to refuse recipients;
//! - [`WebhookReceiver`]: records every request (method, path, headers, body) and answers with
//!   scripted status codes, or stalls until released.
//!
//! Each binds `127.0.0.1:0`, serves from a tokio task of the test's runtime, exposes its URL and
//! stops when dropped. Scripts are consumed one request at a time: `fail_next(2, 500)` makes the
//! next two requests fail, after which the fake answers normally again. Waiting helpers
//! (`wait_for_*`) wait for an event with a deadline; tests never sleep.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

/// What a scripted fake does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Answer with this status code (an error body in the fake's format where it has one).
    Status(u16),
    /// Hold the request until [`Stall::release`] is called, then answer normally.
    Stall,
}

/// A count that tests can wait on.
#[derive(Clone)]
struct Counter(Arc<watch::Sender<usize>>);

impl Counter {
    fn new() -> Self {
        Counter(Arc::new(watch::channel(0).0))
    }

    fn bump(&self) {
        self.0.send_modify(|n| *n += 1);
    }

    fn get(&self) -> usize {
        *self.0.borrow()
    }

    /// Wait until the count reaches `n`; panics after `timeout` naming `what`.
    async fn wait_for(&self, n: usize, timeout: Duration, what: &str) {
        let mut rx = self.0.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|v| *v >= n)).await;
        if !matches!(reached, Ok(Ok(_))) {
            panic!("waited {timeout:?} for {n} {what}, saw {}", self.get());
        }
    }
}

/// Holds stalled requests until released.
#[derive(Clone)]
struct Stall(Arc<watch::Sender<u64>>);

impl Stall {
    fn new() -> Self {
        Stall(Arc::new(watch::channel(0).0))
    }

    /// Wait until the next release after this call.
    async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let at = *rx.borrow_and_update();
        let _ = rx.wait_for(|round| *round > at).await;
    }

    fn release(&self) {
        self.0.send_modify(|round| *round += 1);
    }
}

/// A scripted sequence of replies, then the default.
#[derive(Default)]
struct Script(Mutex<VecDeque<Reply>>);

impl Script {
    fn push(&self, n: usize, reply: Reply) {
        let mut q = self.0.lock().unwrap();
        q.extend(std::iter::repeat_n(reply, n));
    }

    fn next(&self) -> Option<Reply> {
        self.0.lock().unwrap().pop_front()
    }
}

async fn serve_http(router: Router) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}"), task)
}

// ---------------------------------------------------------------------------------------------
// Twilio
// ---------------------------------------------------------------------------------------------

/// A message the fake accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsMessage {
    pub sid: String,
    pub to: String,
    pub from: String,
    pub body: String,
}

/// Twilio's Messages API: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`.
pub struct FakeTwilio {
    /// The API base to configure (`--twilio-api-base`).
    pub url: String,
    pub account_sid: String,
    pub auth_token: String,
    state: Arc<TwilioState>,
    task: JoinHandle<()>,
}

struct TwilioState {
    account_sid: String,
    auth_token: String,
    script: Script,
    stall: Stall,
    messages: Mutex<Vec<SmsMessage>>,
    requests: Counter,
    accepted: Counter,
}

impl FakeTwilio {
    /// Account `AC` + 32 hex digits, a random auth token.
    pub async fn start() -> FakeTwilio {
        Self::start_with_token(&uuid::Uuid::new_v4().simple().to_string()).await
    }

    /// With the auth token a server under test already uses (it signs webhooks with it too).
    pub async fn start_with_token(auth_token: &str) -> FakeTwilio {
        let account_sid = format!("AC{}", uuid::Uuid::new_v4().simple());
        let auth_token = auth_token.to_string();
        let state = Arc::new(TwilioState {
            account_sid: account_sid.clone(),
            auth_token: auth_token.clone(),
            script: Script::default(),
            stall: Stall::new(),
            messages: Mutex::new(Vec::new()),
            requests: Counter::new(),
            accepted: Counter::new(),
        });
        let router = Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                axum::routing::post(twilio_create_message),
            )
            .with_state(state.clone());
        let (url, task) = serve_http(router).await;
        FakeTwilio {
            url,
            account_sid,
            auth_token,
            state,
            task,
        }
    }

    /// The next `n` valid requests answer `status` (e.g. 500, 429, 400) with a Twilio error body.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.state.script.push(n, Reply::Status(status));
    }

    /// The next `n` valid requests hang until [`FakeTwilio::release`].
    pub fn stall_next(&self, n: usize) {
        self.state.script.push(n, Reply::Stall);
    }

    pub fn release(&self) {
        self.state.stall.release();
    }

    /// Messages accepted (201), in order.
    pub fn messages(&self) -> Vec<SmsMessage> {
        self.state.messages.lock().unwrap().clone()
    }

    /// Every request that reached the fake, whatever it answered.
    pub fn request_count(&self) -> usize {
        self.state.requests.get()
    }

    pub async fn wait_for_messages(&self, n: usize, timeout: Duration) {
        self.state
            .accepted
            .wait_for(n, timeout, "accepted messages")
            .await;
    }

    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) {
        self.state
            .requests
            .wait_for(n, timeout, "Twilio requests")
            .await;
    }
}

impl Drop for FakeTwilio {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn twilio_error(status: u16, code: u32, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        axum::Json(serde_json::json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        })),
    )
        .into_response()
}

async fn twilio_create_message(
    State(state): State<Arc<TwilioState>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.requests.bump();
    if sid != state.account_sid {
        return twilio_error(404, 20404, "The requested resource was not found");
    }
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", state.account_sid, state.auth_token))
    );
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&expected)
    {
        return twilio_error(401, 20003, "Authenticate");
    }
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return twilio_error(400, 20001, "Expected a form-encoded body");
    }
    let field = |name: &str| {
        form_urlencoded::parse(&body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let (Some(to), Some(from), Some(text)) = (field("To"), field("From"), field("Body")) else {
        return twilio_error(400, 21604, "A 'To', 'From' and 'Body' are required");
    };
    match state.script.next() {
        Some(Reply::Status(status)) => {
            let (code, message) = match status {
                400 => (21211, "The 'To' number is not a valid phone number."),
                429 => (20429, "Too Many Requests"),
                _ => (20500, "Internal Server Error"),
            };
            return twilio_error(status, code, message);
        }
        Some(Reply::Stall) => state.stall.wait().await,
        None => {}
    }
    let message = SmsMessage {
        sid: format!("SM{}", uuid::Uuid::new_v4().simple()),
        to,
        from,
        body: text,
    };
    state.messages.lock().unwrap().push(message.clone());
    state.accepted.bump();
    (
        StatusCode::CREATED,
        axum::Json(serde_json::json!({
            "sid": message.sid,
            "account_sid": state.account_sid,
            "to": message.to,
            "from": message.from,
            "body": message.body,
            "status": "queued",
            "num_segments": "1",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
        })),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Webhook receiver
// ---------------------------------------------------------------------------------------------

/// A request the receiver got, and what it answered.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    pub method: Method,
    /// Path and query.
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
    pub status: u16,
}

impl ReceivedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Answers any method on any path.
pub struct WebhookReceiver {
    /// Base URL; any path under it is accepted (`{url}/hooks/a`).
    pub url: String,
    state: Arc<ReceiverState>,
    task: JoinHandle<()>,
}

struct ReceiverState {
    default_status: AtomicU16,
    script: Script,
    stall: Stall,
    requests: Mutex<Vec<ReceivedRequest>>,
    arrived: Counter,
}

impl WebhookReceiver {
    /// Answers 200 unless told otherwise.
    pub async fn start() -> WebhookReceiver {
        let state = Arc::new(ReceiverState {
            default_status: AtomicU16::new(200),
            script: Script::default(),
            stall: Stall::new(),
            requests: Mutex::new(Vec::new()),
            arrived: Counter::new(),
        });
        let router = Router::new().fallback(receive).with_state(state.clone());
        let (url, task) = serve_http(router).await;
        WebhookReceiver { url, state, task }
    }

    /// The status answered when nothing is scripted.
    pub fn set_status(&self, status: u16) {
        self.state.default_status.store(status, Ordering::SeqCst);
    }

    /// The next requests answer these statuses, in order.
    pub fn respond_with(&self, statuses: &[u16]) {
        for s in statuses {
            self.state.script.push(1, Reply::Status(*s));
        }
    }

    /// The next `n` requests hang until [`WebhookReceiver::release`] (then answer the default).
    pub fn stall_next(&self, n: usize) {
        self.state.script.push(n, Reply::Stall);
    }

    pub fn release(&self) {
        self.state.stall.release();
    }

    /// Requests answered so far (a stalled one appears once answered), in order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Requests that arrived, answered or not.
    pub fn arrived(&self) -> usize {
        self.state.arrived.get()
    }

    /// Wait until `n` requests have arrived (answered or stalled).
    pub async fn wait_for_arrivals(&self, n: usize, timeout: Duration) {
        self.state
            .arrived
            .wait_for(n, timeout, "webhook requests")
            .await;
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.arrived.bump();
    let status = match state.script.next() {
        Some(Reply::Status(s)) => s,
        Some(Reply::Stall) => {
            state.stall.wait().await;
            state.default_status.load(Ordering::SeqCst)
        }
        None => state.default_status.load(Ordering::SeqCst),
    };
    state.requests.lock().unwrap().push(ReceivedRequest {
        method,
        path: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        status,
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, "ok").into_response()
}

// ---------------------------------------------------------------------------------------------
// SMTP
// ---------------------------------------------------------------------------------------------

/// A message the SMTP server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The reverse path, without angle brackets.
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as sent after DATA (headers and body), dot-stuffing removed, CRLF line ends.
    pub data: String,
}

impl ReceivedMail {
    /// A header's value (first occurrence, unfolded), case-insensitive name.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut() {
                if line.starts_with(' ') || line.starts_with('\t') {
                    v.push_str(line);
                    continue;
                }
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case(name)
            {
                value = Some(v.trim().to_string());
            }
        }
        value
    }

    /// Everything after the header block.
    pub fn body(&self) -> &str {
        self.data
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
    }
}

/// SMTP on `127.0.0.1`, no TLS, no authentication.
pub struct FakeSmtp {
    /// `smtp://127.0.0.1:PORT` for `--smtp-url`.
    pub url: String,
    state: Arc<SmtpState>,
    task: JoinHandle<()>,
}

struct SmtpState {
    /// Replies to the next RCPT TO commands (codes such as 550 or 451) instead of 250.
    rcpt_script: Mutex<VecDeque<u16>>,
    mails: Mutex<Vec<ReceivedMail>>,
    accepted: Counter,
}

impl FakeSmtp {
    pub async fn start() -> FakeSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(SmtpState {
            rcpt_script: Mutex::new(VecDeque::new()),
            mails: Mutex::new(Vec::new()),
            accepted: Counter::new(),
        });
        let serving = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let state = serving.clone();
                tokio::spawn(async move {
                    let _ = smtp_session(socket, state).await;
                });
            }
        });
        FakeSmtp {
            url: format!("smtp://{addr}"),
            state,
            task,
        }
    }

    /// The next `n` RCPT TO commands are answered `code` (5xx permanent, 4xx transient).
    pub fn reject_next_rcpt(&self, n: usize, code: u16) {
        let mut q = self.state.rcpt_script.lock().unwrap();
        q.extend(std::iter::repeat_n(code, n));
    }

    pub fn mails(&self) -> Vec<ReceivedMail> {
        self.state.mails.lock().unwrap().clone()
    }

    pub async fn wait_for_mails(&self, n: usize, timeout: Duration) {
        self.state.accepted.wait_for(n, timeout, "emails").await;
    }
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The address inside `<...>` after `MAIL FROM:` / `RCPT TO:` (parameters after it ignored).
fn path_arg(rest: &str) -> String {
    let rest = rest.trim();
    match (rest.find('<'), rest.find('>')) {
        (Some(a), Some(b)) if a < b => rest[a + 1..b].to_string(),
        _ => rest.split_whitespace().next().unwrap_or("").to_string(),
    }
}

async fn smtp_session(socket: tokio::net::TcpStream, state: Arc<SmtpState>) -> std::io::Result<()> {
    const MAX_LINE: usize = 64 * 1024;
    let (read, mut write) = socket.into_split();
    let mut reader = BufReader::new(read);
    write.write_all(b"220 fake-smtp ESMTP ready\r\n").await?;
    let mut mail_from: Option<String> = None;
    let mut rcpt_to: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 || line.len() > MAX_LINE {
            return Ok(());
        }
        let command = line.trim_end_matches(['\r', '\n']);
        let upper = command.to_ascii_uppercase();
        let reply: &str = if upper.starts_with("EHLO") {
            "250-fake-smtp greets you\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
        } else if upper.starts_with("HELO") {
            "250 fake-smtp\r\n"
        } else if let Some(rest) = upper.strip_prefix("MAIL FROM:") {
            // Keep the original case of the address.
            mail_from = Some(path_arg(&command[command.len() - rest.len()..]));
            rcpt_to.clear();
            "250 2.1.0 OK\r\n"
        } else if let Some(rest) = upper.strip_prefix("RCPT TO:") {
            if mail_from.is_none() {
                "503 5.5.1 MAIL first\r\n"
            } else {
                let scripted = state.rcpt_script.lock().unwrap().pop_front();
                match scripted {
                    Some(code) => {
                        let text = format!("{code} {}.0.0 recipient refused\r\n", code / 100);
                        write.write_all(text.as_bytes()).await?;
                        continue;
                    }
                    None => {
                        rcpt_to.push(path_arg(&command[command.len() - rest.len()..]));
                        "250 2.1.5 OK\r\n"
                    }
                }
            }
        } else if upper == "DATA" {
            if rcpt_to.is_empty() {
                "503 5.5.1 RCPT first\r\n"
            } else {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).await? == 0 || data.len() > 10 * MAX_LINE {
                        return Ok(());
                    }
                    let text = line.trim_end_matches(['\r', '\n']);
                    if text == "." {
                        break;
                    }
                    // Dot-stuffing: the client doubled every leading dot.
                    let text = text.strip_prefix('.').unwrap_or(text);
                    data.push_str(text);
                    data.push_str("\r\n");
                }
                let mail = ReceivedMail {
                    mail_from: mail_from.take().unwrap_or_default(),
                    rcpt_to: std::mem::take(&mut rcpt_to),
                    data,
                };
                state.mails.lock().unwrap().push(mail);
                state.accepted.bump();
                "250 2.0.0 OK queued\r\n"
            }
        } else if upper == "RSET" {
            mail_from = None;
            rcpt_to.clear();
            "250 2.0.0 OK\r\n"
        } else if upper.starts_with("NOOP") {
            "250 2.0.0 OK\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 command not implemented\r\n"
        };
        write.write_all(reply.as_bytes()).await?;
    }
}
