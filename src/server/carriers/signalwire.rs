//! SignalWire's HTTP side (docs/telephony-protocols.md §5): the cXML voice webhook
//! (`POST /signalwire/voice`, Twilio's form and Twilio's signature algorithm under
//! `X-SignalWire-Signature` with `SIGNALWIRE_SIGNING_KEY`), its cXML answer (`<Connect><Stream>`
//! with `<Parameter>`s, as TwiML), and the media upgrade (`GET /signalwire/media`). SignalWire is
//! not documented to sign the upgrade, so the stream URL carries the call's credential; the doc
//! reports query strings as unreliable on SignalWire, so the `<Parameter>`s carry it too and the
//! `start` is checked against them (verify in staging).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::twilio::{check_hmac_sha1, connect_stream, say_and_hang_up};
use super::{
    Answer, BUSY_MESSAGE, CLOSED_MESSAGE, IncomingCall, MediaQuery, bad_request, form_field,
    media_url_for, plausible_call_id, public_request_url,
};
use crate::engine::media::{Carrier, Codec};
use crate::server::AppState;

/// SignalWire's routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(voice_webhook))
        .routes(routes!(media_stream))
}

fn check(
    state: &AppState,
    headers: &HeaderMap,
    url: &str,
    params: &[(String, String)],
) -> Result<(), String> {
    let Some(key) = super::credential(
        state,
        state.config.signalwire_signing_key.as_ref(),
        "SIGNALWIRE_SIGNING_KEY",
    )?
    else {
        return Ok(());
    };
    check_hmac_sha1(headers, "x-signalwire-signature", key, url, params)
}

/// The answer in cXML.
pub fn cxml(state: &AppState, answer: &Answer) -> Response {
    match answer {
        Answer::Connect(c) => connect_stream(
            &media_url_for(&state.config.public_url(), Carrier::SignalWire, c),
            &c.params(),
        ),
        Answer::Closed => say_and_hang_up(CLOSED_MESSAGE),
        Answer::Busy => say_and_hang_up(BUSY_MESSAGE),
    }
}

/// The form SignalWire posts to the voice webhook (Twilio's fields; those this server reads).
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)] // documents the form
#[schema(as = SignalWireVoiceForm)]
struct VoiceForm {
    /// The call's id (a UUID).
    call_sid: String,
    /// The number called: picks the receptionist.
    to: String,
    /// The caller.
    from: Option<String>,
    /// Kept when a phone menu forwarded the call.
    forwarded_from: Option<String>,
}

/// A call comes in (SignalWire's cXML voice webhook).
///
/// The number called picks the receptionist. Answers cXML: `<Connect><Stream>` to the media
/// WebSocket with the call's credential, or a spoken message and a hang-up when no live
/// receptionist has the number or the node is at its call limit.
#[utoipa::path(
    post,
    path = "/signalwire/voice",
    tag = "carrier",
    operation_id = "signalwire_voice",
    params(("X-SignalWire-Signature" = String, Header, description = "Twilio's algorithm with the signing key: the public URL and the form")),
    request_body(content = VoiceForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "cXML: connect the media stream, or say a message and hang up", content_type = "text/xml", body = String),
        (status = 400, description = "`CallSid` or `To` missing", content_type = "text/plain", body = String),
        (status = 403, description = "Missing or bad signature (or no signing key configured)", content_type = "text/plain", body = String),
    ),
)]
pub async fn voice_webhook(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    if let Err(why) = check(&state, &headers, &public_request_url(&state, &uri), &params) {
        return super::forbidden(Carrier::SignalWire, "webhook", &why);
    }
    let get = |k: &str| form_field(&params, k);
    let (Some(call_id), Some(to)) = (get("CallSid"), get("To")) else {
        return bad_request("CallSid and To are required");
    };
    if !plausible_call_id(&call_id) {
        return bad_request("CallSid is not a SignalWire call id");
    }
    let incoming = IncomingCall {
        carrier: Carrier::SignalWire,
        carrier_call_id: call_id,
        to,
        from: get("From"),
        forwarded_from: get("ForwardedFrom"),
    };
    let answer = super::accept(&state, incoming).await;
    cxml(&state, &answer)
}

/// The call's media stream (a WebSocket).
///
/// SignalWire connects to the URL of the cXML answer, whose query is the call's credential; the
/// socket then carries Twilio's Media Streams messages.
#[utoipa::path(
    get,
    path = "/signalwire/media",
    tag = "carrier",
    operation_id = "signalwire_media_stream",
    params(MediaQuery),
    responses(
        (status = 101, description = "Switching Protocols: the media WebSocket"),
        (status = 400, description = "Not a WebSocket upgrade request", content_type = "text/plain", body = String),
        (status = 403, description = "Missing, unknown, used or wrong credential", content_type = "text/plain", body = String),
        (status = 426, description = "The connection cannot be upgraded", content_type = "text/plain", body = String),
        (status = 503, description = "The server is shutting down: no new calls", content_type = "text/plain", body = String),
    ),
)]
pub async fn media_stream(
    State(state): State<AppState>,
    uri: Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    socket: crate::server::socket::MediaSocket,
) -> Response {
    super::upgrade_by_credential(state, Codec::new(Carrier::SignalWire), &uri, ws, socket).await
}
