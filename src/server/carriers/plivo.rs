//! Plivo's HTTP side (docs/telephony-protocols.md §3): the answer URL (`POST /plivo/voice`,
//! form-encoded, signed with `X-Plivo-Signature-V3`), its Plivo XML answer (`<Stream
//! bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000">`), and the media
//! upgrade (`GET /plivo/media`), which Plivo does not sign: the stream URL carries the call's
//! credential. `extraHeaders` takes only `[A-Za-z0-9]` values, so it carries the token (hex) but
//! not the call id (a UUID); the upgrade's query names the call.
//!
//! Signature V3, as Plivo's SDKs compute it: for a POST, the URL without its query, then `?` and
//! the query's pairs sorted (`k=v` joined by `&`, followed by `.` when there are any), then the
//! form's keys sorted with each `key` + `value` appended (a repeated key's values sorted); then
//! `.` and the `X-Plivo-Signature-V3-Nonce`; HMAC-SHA256 with the auth token, base64. The header
//! may list several signatures separated by commas; one match suffices.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    Answer, BUSY_MESSAGE, CLOSED_MESSAGE, IncomingCall, MediaQuery, bad_request, constant_time_eq,
    form_field, header_str, media_url_for, plausible_call_id, public_request_url, xml_escape,
    xml_response,
};
use crate::engine::media::{Carrier, Codec};
use crate::server::AppState;

/// Plivo's routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(voice_webhook))
        .routes(routes!(media_stream))
}

/// The string Plivo signs for a POST to `url` with form `params` (before `.nonce`).
fn string_to_sign(url: &str, params: &[(String, String)]) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut query: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    query.sort();
    let query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut out = base.to_string();
    if !query.is_empty() || !params.is_empty() {
        out.push('?');
        out.push_str(&query);
    }
    if !query.is_empty() && !params.is_empty() {
        out.push('.');
    }
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    for (k, v) in sorted {
        out.push_str(k);
        out.push_str(v);
    }
    out
}

/// Plivo's V3 signature of a POST.
pub fn signature_v3(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    nonce: &str,
) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(string_to_sign(url, params).as_bytes());
    mac.update(b".");
    mac.update(nonce.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether any of the comma-separated `given` signatures is the expected one (constant time each).
pub fn validate_v3(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    nonce: &str,
    given: &str,
) -> bool {
    let expected = signature_v3(auth_token, url, params, nonce);
    given
        .split(',')
        .any(|g| constant_time_eq(g.trim().as_bytes(), expected.as_bytes()))
}

fn check(
    state: &AppState,
    headers: &HeaderMap,
    url: &str,
    params: &[(String, String)],
) -> Result<(), String> {
    let Some(token) = super::credential(
        state,
        state.config.plivo_auth_token.as_ref(),
        "PLIVO_AUTH_TOKEN",
    )?
    else {
        return Ok(());
    };
    let (Some(given), Some(nonce)) = (
        header_str(headers, "x-plivo-signature-v3"),
        header_str(headers, "x-plivo-signature-v3-nonce"),
    ) else {
        return Err("missing X-Plivo-Signature-V3 or its nonce".into());
    };
    if validate_v3(token, url, params, nonce, given) {
        Ok(())
    } else {
        Err("bad X-Plivo-Signature-V3".into())
    }
}

/// The answer in Plivo XML.
pub fn plivo_xml(state: &AppState, answer: &Answer) -> Response {
    match answer {
        Answer::Connect(c) => xml_response(&format!(
            "<Stream bidirectional=\"true\" keepCallAlive=\"true\" contentType=\"audio/x-mulaw;rate=8000\" extraHeaders=\"token={}\">{}</Stream>",
            xml_escape(&c.token),
            xml_escape(&media_url_for(
                &state.config.public_url(),
                Carrier::Plivo,
                c
            )),
        )),
        Answer::Closed => speak_and_hang_up(CLOSED_MESSAGE),
        Answer::Busy => speak_and_hang_up(BUSY_MESSAGE),
    }
}

fn speak_and_hang_up(text: &str) -> Response {
    xml_response(&format!("<Speak>{}</Speak><Hangup/>", xml_escape(text)))
}

/// The form Plivo posts to the answer URL (the fields this server reads).
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)] // documents the form
#[schema(as = PlivoVoiceForm)]
struct VoiceForm {
    /// The call's UUID.
    #[serde(rename = "CallUUID")]
    #[schema(rename = "CallUUID")]
    call_uuid: String,
    /// The number called: picks the receptionist.
    to: String,
    /// The caller.
    from: Option<String>,
    /// Kept when a phone menu forwarded the call.
    forwarded_from: Option<String>,
}

/// A call comes in (Plivo's answer URL).
///
/// The number called picks the receptionist. Answers Plivo XML: a bidirectional `<Stream>` (µ-law
/// 8 kHz) to the media WebSocket with the call's credential, or `<Speak>` and `<Hangup>` when no
/// live receptionist has the number or the node is at its call limit.
#[utoipa::path(
    post,
    path = "/plivo/voice",
    tag = "carrier",
    operation_id = "plivo_voice",
    params(
        ("X-Plivo-Signature-V3" = String, Header, description = "HMAC-SHA256 of the URL, the sorted form and the nonce"),
        ("X-Plivo-Signature-V3-Nonce" = String, Header, description = "The nonce signed with it"),
    ),
    request_body(content = VoiceForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Plivo XML: stream the call, or speak a message and hang up", content_type = "text/xml", body = String),
        (status = 400, description = "`CallUUID` or `To` missing", content_type = "text/plain", body = String),
        (status = 403, description = "Missing or bad signature (or no auth token configured)", content_type = "text/plain", body = String),
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
        return super::forbidden(Carrier::Plivo, "webhook", &why);
    }
    let get = |k: &str| form_field(&params, k);
    let (Some(call_id), Some(to)) = (get("CallUUID"), get("To")) else {
        return bad_request("CallUUID and To are required");
    };
    if !plausible_call_id(&call_id) {
        return bad_request("CallUUID is not a Plivo call id");
    }
    let incoming = IncomingCall {
        carrier: Carrier::Plivo,
        carrier_call_id: call_id,
        to,
        from: get("From"),
        forwarded_from: get("ForwardedFrom"),
    };
    let answer = super::accept(&state, incoming).await;
    plivo_xml(&state, &answer)
}

/// The call's media stream (a WebSocket).
///
/// Plivo connects to the URL of the XML answer, whose query is the call's credential; the socket
/// then carries Plivo's audio stream messages (`start`, `media`, `dtmf`, `playedStream`,
/// `clearedAudio` in; `playAudio`, `checkpoint`, `clearAudio` out).
#[utoipa::path(
    get,
    path = "/plivo/media",
    tag = "carrier",
    operation_id = "plivo_media_stream",
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
    super::upgrade_by_credential(state, Codec::new(Carrier::Plivo), &uri, ws, socket).await
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
    fn string_to_sign_follows_the_sdks() {
        let params = p(&[
            ("To", "+15550001111"),
            ("CallUUID", "abc"),
            ("From", "+1555"),
        ]);
        assert_eq!(
            string_to_sign("https://rx.example.com/plivo/voice", &params),
            "https://rx.example.com/plivo/voice?CallUUIDabcFrom+1555To+15550001111"
        );
        assert_eq!(
            string_to_sign("https://rx.example.com/plivo/voice?b=2&a=1", &params),
            "https://rx.example.com/plivo/voice?a=1&b=2.CallUUIDabcFrom+1555To+15550001111"
        );
        assert_eq!(
            string_to_sign("https://rx.example.com/plivo/voice?b=2&a=1", &[]),
            "https://rx.example.com/plivo/voice?a=1&b=2"
        );
        assert_eq!(
            string_to_sign("https://rx.example.com/plivo/voice", &[]),
            "https://rx.example.com/plivo/voice"
        );
    }

    #[test]
    fn signatures_check_out_and_forgeries_do_not() {
        let params = p(&[("CallUUID", "abc"), ("To", "+15550001111")]);
        let url = "https://rx.example.com/plivo/voice";
        // HMAC-SHA256("token", "https://rx.example.com/plivo/voice?CallUUIDabcTo+15550001111.n1"),
        // computed independently with `openssl dgst -sha256 -hmac token -binary | base64`.
        let sig = signature_v3("token", url, &params, "n1");
        assert_eq!(sig, "2bUnjl92Y9GdUjkrep9jJzePj6iZfupcDbDWhzx53FA=");
        assert!(validate_v3("token", url, &params, "n1", &sig));
        assert!(validate_v3(
            "token",
            url,
            &params,
            "n1",
            &format!("AAAA,{sig}")
        ));
        assert!(!validate_v3("token", url, &params, "n2", &sig));
        assert!(!validate_v3("other", url, &params, "n1", &sig));
        let forged = p(&[("CallUUID", "abc"), ("To", "+15550002222")]);
        assert!(!validate_v3("token", url, &forged, "n1", &sig));
        assert!(!validate_v3("token", url, &params, "n1", ""));
    }
}
