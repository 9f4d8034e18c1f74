//! Twilio's HTTP side: `X-Twilio-Signature` checking, the voice webhook (`POST /twilio/voice`),
//! the messaging webhook (`POST /twilio/sms`), the TwiML they answer, and the media upgrade
//! (`GET /twilio/media`), which Twilio signs like a webhook (the signed URL is the `wss://` stream
//! URL with no parameters). SignalWire reuses the signature and the TwiML (`signalwire.rs`).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    Answer, IncomingCall, form_field, media_url, public_request_url, xml_parameters, xml_response,
};
use crate::engine::media::{Carrier, Codec};
use crate::server::AppState;
use crate::server::socket::MediaSocket;

pub use super::{BUSY_MESSAGE, CLOSED_MESSAGE, sha256_hex, xml_escape};

/// Twilio's routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(voice_webhook))
        .routes(routes!(sms_webhook))
        .routes(routes!(media_stream))
}

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

/// TwiML: a spoken message and a hang-up (also SignalWire's cXML).
pub fn say_and_hang_up(text: &str) -> Response {
    xml_response(&format!("<Say>{}</Say><Hangup/>", xml_escape(text)))
}

/// TwiML `<Connect><Stream>` with parameters that identify the call (also SignalWire's cXML).
pub fn connect_stream(stream_url: &str, params: &[(&str, &str)]) -> Response {
    xml_response(&format!(
        "<Connect><Stream url=\"{}\">{}</Stream></Connect>",
        xml_escape(stream_url),
        xml_parameters(params)
    ))
}

/// The answer in TwiML.
fn twiml_answer(state: &AppState, answer: Answer) -> Response {
    match answer {
        Answer::Connect(c) => connect_stream(
            &media_url(&state.config.public_url(), Carrier::Twilio),
            &c.params(),
        ),
        Answer::Closed => say_and_hang_up(CLOSED_MESSAGE),
        Answer::Busy => say_and_hang_up(BUSY_MESSAGE),
    }
}

/// Check `X-Twilio-Signature` for a request to `path_and_query` with form `params`.
pub fn check_signature(
    state: &AppState,
    headers: &HeaderMap,
    url: &str,
    params: &[(String, String)],
) -> Result<(), String> {
    let Some(token) = super::credential(
        state,
        state.config.twilio_auth_token.as_ref(),
        "TWILIO_AUTH_TOKEN",
    )?
    else {
        return Ok(());
    };
    check_hmac_sha1(headers, "x-twilio-signature", token, url, params)
}

/// Twilio's scheme under a given header and key (SignalWire uses it with its own).
pub fn check_hmac_sha1(
    headers: &HeaderMap,
    header: &str,
    key: &str,
    url: &str,
    params: &[(String, String)],
) -> Result<(), String> {
    let Some(given) = super::header_str(headers, header) else {
        return Err(format!("missing {header}"));
    };
    if validate(key, url, params, given) {
        Ok(())
    } else {
        Err(format!("bad {header}"))
    }
}

/// A webhook's form parameters, once `X-Twilio-Signature` checks out for this URL (the public
/// URL and the request's path and query); otherwise why not (answered with 403).
fn signed_form(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>, String> {
    let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let url = public_request_url(state, uri);
    check_signature(state, headers, &url, &params).map(|()| params)
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
        Err(why) => return super::forbidden(Carrier::Twilio, "webhook", &why),
    };
    let get = |k: &str| form_field(&params, k);
    let (Some(call_sid), Some(to)) = (get("CallSid"), get("To")) else {
        return (StatusCode::BAD_REQUEST, "CallSid and To are required").into_response();
    };
    if !looks_like_sid(&call_sid, "CA") {
        return (StatusCode::BAD_REQUEST, "CallSid is not a Twilio call sid").into_response();
    }
    let incoming = IncomingCall {
        carrier: Carrier::Twilio,
        carrier_call_id: call_sid,
        to,
        from: get("From"),
        forwarded_from: get("ForwardedFrom"),
    };
    let answer = super::accept(&state, incoming).await;
    twiml_answer(&state, answer)
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
        Err(why) => return super::forbidden(Carrier::Twilio, "webhook", &why),
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
            xml_response("")
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

/// The call's media stream (a WebSocket).
///
/// Twilio connects here as the voice webhook's TwiML says, signing the upgrade like a webhook; the
/// socket then carries Twilio Media Streams messages (`connected`, `start`, `media`, `mark`,
/// `stop` in; `media`, `mark`, `clear` out). The `start` must carry the `callId` and `token`
/// parameters of the answer and the call's CallSid.
#[utoipa::path(
    get,
    path = "/twilio/media",
    tag = "carrier",
    operation_id = "twilio_media_stream",
    params(("X-Twilio-Signature" = String, Header, description = "Twilio's signature of the `wss://` stream URL")),
    responses(
        (status = 101, description = "Switching Protocols: the media WebSocket"),
        (status = 400, description = "Not a WebSocket upgrade request", content_type = "text/plain", body = String),
        (status = 403, description = "Missing or bad signature (or no auth token configured)", content_type = "text/plain", body = String),
        (status = 426, description = "The connection cannot be upgraded", content_type = "text/plain", body = String),
        (status = 503, description = "The server is shutting down: no new calls", content_type = "text/plain", body = String),
    ),
)]
pub async fn media_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    socket: MediaSocket,
    ws: WebSocketUpgrade,
) -> Response {
    let url = media_url(&state.config.public_url(), Carrier::Twilio);
    if let Err(why) = check_signature(&state, &headers, &url, &[]) {
        return super::forbidden(Carrier::Twilio, "media upgrade", &why);
    }
    super::upgrade(ws, state, Codec::new(Carrier::Twilio), None, socket)
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
}
