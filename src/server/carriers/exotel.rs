//! Exotel's HTTP side (docs/telephony-protocols.md §6): the Voicebot applet's dynamic URL
//! endpoint (`GET` or `POST /exotel/voice`: Exotel's passthru parameters as the query or a form),
//! answering JSON `{"url": "wss://…/exotel/media?callId=…&token=…"}` (the call's credential as the
//! stream URL's query: Exotel passes up to three custom parameters this way, and hands them back
//! in `start.custom_parameters`), and the media upgrade (`GET /exotel/media`), checked against
//! that credential.
//!
//! Exotel signs nothing; it authenticates to a URL with Basic auth embedded in it or a token in
//! it. The endpoint therefore wants `EXOTEL_STREAM_TOKEN` as the Basic-auth password (any user
//! name) or as `?token=` in the URL configured in the applet, compared in constant time.
//!
//! Closed and busy: the applet has no markup to speak with, only a stream URL. The endpoint
//! answers a non-2xx status (404 when no live receptionist has the number, 503 at the call
//! limit) so that no stream is opened and the call flow moves on to the applet's next step; the
//! flow should follow the Voicebot applet with a Greeting ("not taking calls") and a Hangup.
//! Pointing Exotel at a socket that only speaks a message would need synthesis outside a call
//! for no gain over the flow's own greeting.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    Answer, IncomingCall, MediaQuery, bad_request, constant_time_eq, form_field, header_str,
    media_url_for, plausible_call_id,
};
use crate::engine::media::{Carrier, Codec};
use crate::server::AppState;

/// Exotel's routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(voice_get, voice_post))
        .routes(routes!(media_stream))
}

/// Whether the request carries the stream token: as the Basic-auth password, or as `token` in
/// the query.
pub fn authorised(expected: &str, headers: &HeaderMap, query: &[(String, String)]) -> bool {
    let basic = header_str(headers, "authorization")
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|up| up.split_once(':').map(|(_, p)| p.to_string()));
    let given = basic.or_else(|| form_field(query, "token"));
    given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes()))
}

fn check(state: &AppState, headers: &HeaderMap, query: &[(String, String)]) -> Result<(), String> {
    let Some(token) = super::credential(
        state,
        state.config.exotel_stream_token.as_ref(),
        "EXOTEL_STREAM_TOKEN",
    )?
    else {
        return Ok(());
    };
    if authorised(token, headers, query) {
        Ok(())
    } else {
        Err("missing or bad Exotel stream token".into())
    }
}

/// The answer: the stream URL as JSON, or a non-2xx status (see the module's documentation).
pub fn answer_json(state: &AppState, answer: &Answer) -> Response {
    match answer {
        Answer::Connect(c) => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "url": media_url_for(&state.config.public_url(), Carrier::Exotel, c) })
                .to_string(),
        )
            .into_response(),
        Answer::Closed => (StatusCode::NOT_FOUND, "not taking calls").into_response(),
        Answer::Busy => (StatusCode::SERVICE_UNAVAILABLE, "all lines busy").into_response(),
    }
}

async fn voice(
    state: AppState,
    headers: HeaderMap,
    query: Vec<(String, String)>,
    form: Vec<(String, String)>,
) -> Response {
    if let Err(why) = check(&state, &headers, &query) {
        return super::forbidden(Carrier::Exotel, "webhook", &why);
    }
    let get = |k: &str| form_field(&form, k).or_else(|| form_field(&query, k));
    let (Some(call_id), Some(to)) = (get("CallSid"), get("CallTo").or_else(|| get("To"))) else {
        return bad_request("CallSid and CallTo (or To) are required");
    };
    if !plausible_call_id(&call_id) {
        return bad_request("CallSid is not an Exotel call sid");
    }
    let incoming = IncomingCall {
        carrier: Carrier::Exotel,
        carrier_call_id: call_id,
        to,
        from: get("CallFrom").or_else(|| get("From")),
        forwarded_from: get("ForwardedFrom"),
    };
    let answer = super::accept(&state, incoming).await;
    answer_json(&state, &answer)
}

fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// The passthru fields this server reads.
#[derive(serde::Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the request
#[schema(as = ExotelVoice)]
struct VoiceFields {
    /// Exotel's call sid.
    #[serde(rename = "CallSid")]
    #[param(rename = "CallSid")]
    #[schema(rename = "CallSid")]
    call_sid: String,
    /// The number called (`To` is read when absent): picks the receptionist.
    #[serde(rename = "CallTo")]
    #[param(rename = "CallTo")]
    #[schema(rename = "CallTo")]
    call_to: String,
    /// The caller (or `From`).
    #[serde(rename = "CallFrom")]
    #[param(rename = "CallFrom")]
    #[schema(rename = "CallFrom")]
    call_from: Option<String>,
    /// The stream token, when not given as the Basic-auth password.
    token: Option<String>,
}

/// A call comes in (Exotel's Voicebot applet asking for its stream URL, with `GET`).
///
/// The number called picks the receptionist. Answers `{"url": "wss://…"}` with the call's
/// credential in the URL; 404 (no live receptionist) or 503 (call limit) so the flow goes on.
#[utoipa::path(
    get,
    path = "/exotel/voice",
    tag = "carrier",
    operation_id = "exotel_voice",
    params(
        ("Authorization" = Option<String>, Header, description = "`Basic`, with the stream token as the password (or `token` in the query)"),
        VoiceFields,
    ),
    responses(
        (status = 200, description = "The stream URL", content_type = "application/json", body = Object),
        (status = 400, description = "`CallSid` or `CallTo` missing", content_type = "text/plain", body = String),
        (status = 403, description = "Missing or bad stream token (or none configured)", content_type = "text/plain", body = String),
        (status = 404, description = "No live receptionist has the number: the flow goes on", content_type = "text/plain", body = String),
        (status = 503, description = "At the call limit: the flow goes on", content_type = "text/plain", body = String),
    ),
)]
pub async fn voice_get(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    voice(state, headers, query_pairs(&uri), Vec::new()).await
}

/// A call comes in (Exotel's Voicebot applet asking for its stream URL, with `POST`).
///
/// As the `GET`, with the passthru fields as a form.
#[utoipa::path(
    post,
    path = "/exotel/voice",
    tag = "carrier",
    operation_id = "exotel_voice_post",
    params(("Authorization" = Option<String>, Header, description = "`Basic`, with the stream token as the password (or `token` in the query)")),
    request_body(content = VoiceFields, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The stream URL", content_type = "application/json", body = Object),
        (status = 400, description = "`CallSid` or `CallTo` missing", content_type = "text/plain", body = String),
        (status = 403, description = "Missing or bad stream token (or none configured)", content_type = "text/plain", body = String),
        (status = 404, description = "No live receptionist has the number: the flow goes on", content_type = "text/plain", body = String),
        (status = 503, description = "At the call limit: the flow goes on", content_type = "text/plain", body = String),
    ),
)]
pub async fn voice_post(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form_urlencoded::parse(&body).into_owned().collect();
    voice(state, headers, query_pairs(&uri), form).await
}

/// The call's media stream (a WebSocket).
///
/// Exotel connects to the URL the endpoint answered, whose query is the call's credential; the
/// socket then carries Exotel's messages (`connected`, `start`, `media`, `dtmf`, `mark`, `stop`
/// in; `media`, `mark`, `clear` out), 16-bit PCM at 8 kHz.
#[utoipa::path(
    get,
    path = "/exotel/media",
    tag = "carrier",
    operation_id = "exotel_media_stream",
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
    super::upgrade_by_credential(state, Codec::new(Carrier::Exotel), &uri, ws, socket).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_or_query_token() {
        let mut h = HeaderMap::new();
        assert!(!authorised("s3cret", &h, &[]));
        let q = vec![("token".to_string(), "s3cret".to_string())];
        assert!(authorised("s3cret", &h, &q));
        assert!(!authorised(
            "s3cret",
            &h,
            &[("token".into(), "s3cre".into())]
        ));
        let basic = base64::engine::general_purpose::STANDARD.encode("exotel:s3cret");
        h.insert("authorization", format!("Basic {basic}").parse().unwrap());
        assert!(authorised("s3cret", &h, &[]));
        let wrong = base64::engine::general_purpose::STANDARD.encode("exotel:nope");
        h.insert("authorization", format!("Basic {wrong}").parse().unwrap());
        assert!(!authorised("s3cret", &h, &[]));
    }
}
