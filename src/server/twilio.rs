//! Twilio's HTTP side: `X-Twilio-Signature` checking, the voice webhook (`POST /twilio/voice`) that
//! routes a call by the number it was placed to, and the TwiML it answers with.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::AppState;
use crate::model::ReceptionistStatus;
use crate::store::NewCall;

/// Twilio's signature: base64(HMAC-SHA1(token, url + sorted key+value pairs)).
pub fn signature(token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac =
        Hmac::<Sha1>::new_from_slice(token.as_bytes()).expect("HMAC takes any key length");
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Check a signature in constant time, trying the URL with and without its default port as
/// Twilio's own helper libraries do.
pub fn validate(token: &str, url: &str, params: &[(String, String)], given: &str) -> bool {
    use subtle::ConstantTimeEq;
    let candidates = url_variants(url);
    candidates.iter().any(|u| {
        let expected = signature(token, u, params);
        expected.as_bytes().ct_eq(given.as_bytes()).into()
    })
}

fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return out;
    };
    let default = match scheme {
        "https" | "wss" => "443",
        "http" | "ws" => "80",
        _ => return out,
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    // host[:port], where host may be an IPv6 literal in brackets
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    match port {
        Some(p) if p == default => out.push(format!("{scheme}://{host}{path}")),
        None => out.push(format!("{scheme}://{host}:{default}{path}")),
        Some(_) => {}
    }
    out
}

/// The media WebSocket URL the carrier connects to, from the public base URL.
pub fn media_url(public_url: &str) -> String {
    let base = if let Some(rest) = public_url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = public_url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        public_url.to_string()
    };
    format!("{base}/twilio/media")
}

/// Escape text for XML attribute values and content.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

fn twiml(body: String) -> Response {
    (
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>{body}</Response>\n"),
    )
        .into_response()
}

/// A spoken message and a hang-up.
pub fn say_and_hang_up(text: &str) -> Response {
    twiml(format!("<Say>{}</Say><Hangup/>", xml_escape(text)))
}

/// `<Connect><Stream>` with parameters that identify the call.
pub fn connect_stream(stream_url: &str, params: &[(&str, &str)]) -> Response {
    let mut p = String::new();
    for (k, v) in params {
        p.push_str(&format!(
            "<Parameter name=\"{}\" value=\"{}\"/>",
            xml_escape(k),
            xml_escape(v)
        ));
    }
    twiml(format!(
        "<Connect><Stream url=\"{}\">{p}</Stream></Connect>",
        xml_escape(stream_url)
    ))
}

pub const CLOSED_MESSAGE: &str = "Thank you for calling. This line is not taking calls right now. Please try again later. Goodbye.";
pub const BUSY_MESSAGE: &str = "Thank you for calling. All of our lines are busy right now. Please call back in a few minutes. Goodbye.";

/// Check `X-Twilio-Signature` for a request to `path_and_query` with form `params`.
pub fn check_signature(
    state: &AppState,
    headers: &HeaderMap,
    url: &str,
    params: &[(String, String)],
) -> Result<(), &'static str> {
    let Some(token) = &state.config.twilio_auth_token else {
        return if state.config.insecure_no_signature {
            Ok(())
        } else {
            Err("TWILIO_AUTH_TOKEN is not set; refusing unsigned carrier requests")
        };
    };
    let Some(given) = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return Err("missing X-Twilio-Signature");
    };
    if validate(token.expose(), url, params, given) {
        Ok(())
    } else {
        Err("bad X-Twilio-Signature")
    }
}

/// A webhook's form parameters, once `X-Twilio-Signature` checks out for this URL (the public
/// URL and the request's path and query); otherwise why not (answered with 403).
fn signed_form(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>, &'static str> {
    let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let url = format!("{}{path}", state.config.public_url());
    match check_signature(state, headers, &url, &params) {
        Ok(()) => Ok(params),
        Err(why) => {
            tracing::warn!(reason = why, path = uri.path(), "carrier webhook refused");
            Err(why)
        }
    }
}

/// A form field, trimmed; `None` when absent or empty.
fn form_field(params: &[(String, String)], name: &str) -> Option<String> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

pub fn sha256_hex(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn looks_like_sid(s: &str, prefix: &str) -> bool {
    s.len() >= 10
        && s.len() <= 64
        && s.starts_with(prefix)
        && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The form Twilio posts to the voice webhook (only the fields this server reads; Twilio sends
/// more, and every one is covered by the signature). The handler reads the signed pairs itself.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)] // documents the form
#[schema(as = TwilioVoiceForm)]
struct VoiceForm {
    /// The call's sid (`CA...`).
    call_sid: String,
    /// The number called: picks the receptionist.
    to: String,
    /// The caller (`anonymous` when absent).
    from: Option<String>,
    /// Kept when a phone menu forwarded the call.
    forwarded_from: Option<String>,
}

/// A call comes in (Twilio's voice webhook).
///
/// The number called picks the receptionist. Answers TwiML: `<Connect><Stream>` to the media
/// WebSocket with a one-time token, or a spoken message and a hang-up when no live receptionist
/// has the number or the node is at its call limit.
#[utoipa::path(
    post,
    path = "/twilio/voice",
    tag = "carrier",
    operation_id = "twilio_voice",
    params(("X-Twilio-Signature" = String, Header, description = "Twilio's signature of the public URL and the form")),
    request_body(content = VoiceForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "TwiML: connect the media stream, or say a message and hang up", content_type = "text/xml", body = String),
        (status = 400, description = "`CallSid` or `To` missing, or not a call sid", content_type = "text/plain", body = String),
        (status = 403, description = "Missing or bad signature (or no auth token configured)", content_type = "text/plain", body = String),
    ),
)]
pub async fn voice_webhook(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match signed_form(&state, &uri, &headers, &body) {
        Ok(p) => p,
        Err(why) => return (StatusCode::FORBIDDEN, why).into_response(),
    };
    let get = |k: &str| form_field(&params, k);
    let (Some(call_sid), Some(to)) = (get("CallSid"), get("To")) else {
        return (StatusCode::BAD_REQUEST, "CallSid and To are required").into_response();
    };
    if !looks_like_sid(&call_sid, "CA") {
        return (StatusCode::BAD_REQUEST, "CallSid is not a Twilio call sid").into_response();
    }
    let from = get("From").unwrap_or_else(|| "anonymous".to_string());
    let forwarded_from = get("ForwardedFrom");

    let receptionist = match state.store.receptionist_by_phone(&to).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "receptionist lookup failed");
            return say_and_hang_up(CLOSED_MESSAGE);
        }
    };
    let Some(receptionist) = receptionist else {
        tracing::info!(call_sid = %call_sid, "call to a number with no receptionist");
        return say_and_hang_up(CLOSED_MESSAGE);
    };
    if receptionist.settings.status != ReceptionistStatus::Live {
        tracing::info!(call_sid = %call_sid, receptionist = %receptionist.id, "call to an inactive receptionist");
        return say_and_hang_up(CLOSED_MESSAGE);
    }
    let Some(slot) = state.calls.try_acquire() else {
        tracing::warn!(call_sid = %call_sid, "at the concurrent call limit: refusing");
        return say_and_hang_up(BUSY_MESSAGE);
    };

    let call_id = uuid::Uuid::new_v4().to_string();
    let token = {
        use rand::Rng;
        let bytes: [u8; 24] = rand::rng().random();
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let new_call = NewCall {
        id: call_id.clone(),
        carrier: "twilio".into(),
        workspace_id: receptionist.workspace_id.clone(),
        receptionist_id: receptionist.id.clone(),
        call_sid: call_sid.clone(),
        from_number: from,
        to_number: to,
        forwarded_from,
        token_hash: sha256_hex(&token),
        node_id: state.config.node_id.clone(),
        accepted_at_ms: crate::store::now_ms(),
        settings: receptionist.settings.clone(),
    };
    let call_id = match state.store.accept_call(&new_call).await {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "cannot record the accepted call");
            return say_and_hang_up(BUSY_MESSAGE);
        }
    };
    state.calls.hold(call_id.clone(), slot);
    tracing::info!(call = %call_id, "call accepted");
    connect_stream(
        &media_url(&state.config.public_url()),
        &[("callId", &call_id), ("token", &token)],
    )
}

/// Longest inbound text body kept (Twilio concatenates at most 1,600 characters).
const MAX_SMS_CHARS: usize = 4_096;

/// The form Twilio posts to the messaging webhook (the fields this server reads).
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)] // documents the form
#[schema(as = TwilioSmsForm)]
struct SmsForm {
    /// The message's sid (`SM...` or `MM...`).
    message_sid: String,
    /// The candidate's number.
    from: String,
    /// The receptionist's number.
    to: String,
    /// The text (kept up to 4,096 characters).
    body: Option<String>,
}

/// A text comes in (Twilio's messaging webhook).
///
/// A caller's reply to a receptionist number, signed as the voice webhook is. YES confirms the
/// candidate's details, STOP opts the number out of texts, anything else is kept as a correction
/// and acknowledged once. Answers an empty TwiML `<Response/>`: replies go through the outbox like
/// every other text.
#[utoipa::path(
    post,
    path = "/twilio/sms",
    tag = "carrier",
    operation_id = "twilio_sms",
    params(("X-Twilio-Signature" = String, Header, description = "Twilio's signature of the public URL and the form")),
    request_body(content = SmsForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "An empty TwiML `<Response/>`", content_type = "text/xml", body = String),
        (status = 400, description = "`MessageSid`, `From` or `To` missing, or not a message sid", content_type = "text/plain", body = String),
        (status = 403, description = "Missing or bad signature (or no auth token configured)", content_type = "text/plain", body = String),
        (status = 500, description = "The message could not be stored (Twilio retries)", content_type = "text/plain", body = String),
    ),
)]
pub async fn sms_webhook(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match signed_form(&state, &uri, &headers, &body) {
        Ok(p) => p,
        Err(why) => return (StatusCode::FORBIDDEN, why).into_response(),
    };
    let get = |k: &str| form_field(&params, k);
    let (Some(sid), Some(from), Some(to)) = (get("MessageSid"), get("From"), get("To")) else {
        return (
            StatusCode::BAD_REQUEST,
            "MessageSid, From and To are required",
        )
            .into_response();
    };
    if !(looks_like_sid(&sid, "SM") || looks_like_sid(&sid, "MM")) {
        return (
            StatusCode::BAD_REQUEST,
            "MessageSid is not a Twilio message sid",
        )
            .into_response();
    }
    let text: String = get("Body")
        .unwrap_or_default()
        .chars()
        .take(MAX_SMS_CHARS)
        .collect();
    let inbound = crate::store::pipeline::InboundSms {
        intent: crate::pipeline::sms::classify(&text),
        message_sid: sid,
        from,
        to,
        body: text,
        acknowledgement: crate::pipeline::texts::acknowledgement(),
        now_ms: crate::store::now_ms(),
    };
    match state.store.record_inbound_sms(&inbound).await {
        Ok(outcome) => {
            if let crate::store::pipeline::InboundOutcome::Stored { action, .. } = &outcome {
                tracing::info!(intent = inbound.intent.as_str(), action, "text received");
            } else {
                tracing::info!(outcome = ?outcome, "text received, nothing to do");
            }
            state.outbox_notify.notify_one();
            twiml(String::new())
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot store an inbound text");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot store the message",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn twilio_documented_test_vectors() {
        let params = p(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(
            signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        assert_eq!(
            signature("12345", "wss://example.com/media", &[]),
            "7PR3qMkpDyEJtMrVOY/LDyNq8J8="
        );
        assert!(validate(
            "12345",
            "wss://example.com/media",
            &[],
            "7PR3qMkpDyEJtMrVOY/LDyNq8J8="
        ));
        assert!(!validate("12345", "wss://example.com/media", &[], "AAAA"));
        assert!(!validate(
            "12346",
            "wss://example.com/media",
            &[],
            "7PR3qMkpDyEJtMrVOY/LDyNq8J8="
        ));
    }

    #[test]
    fn signature_with_explicit_default_port_validates() {
        let sig = signature("tok", "https://example.com:443/twilio/voice", &[]);
        assert!(validate(
            "tok",
            "https://example.com/twilio/voice",
            &[],
            &sig
        ));
        let sig = signature("tok", "https://example.com/twilio/voice", &[]);
        assert!(validate(
            "tok",
            "https://example.com:443/twilio/voice",
            &[],
            &sig
        ));
    }

    #[test]
    fn twiml_escapes_values() {
        assert_eq!(xml_escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(
            media_url("https://rx.example.com"),
            "wss://rx.example.com/twilio/media"
        );
        assert_eq!(
            media_url("http://127.0.0.1:8080"),
            "ws://127.0.0.1:8080/twilio/media"
        );
    }
}
