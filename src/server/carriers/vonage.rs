//! Vonage's HTTP side (docs/telephony-protocols.md §4): the answer URL (`GET /vonage/voice` with
//! query parameters, as Vonage calls it by default, or `POST /vonage/voice` with a JSON body),
//! its NCCO answer (`connect` to a `websocket` endpoint, `audio/l16;rate=16000`, with `headers`),
//! and the media upgrade (`GET /vonage/media`), whose URL carries the call's credential. Vonage's
//! socket never names the call (no call id in its first message), so the credential in the URL
//! and the NCCO `headers` it echoes (`callId`, `token`) are what tie the stream to the call.
//!
//! Signed webhooks: `Authorization: Bearer <JWT>`, HS256 with `VONAGE_SIGNATURE_SECRET`. The
//! token must verify, carry `iat` (not in the future, not older than [`MAX_AGE_SECS`]), not be
//! past its `exp` when it has one, and, when the request has a body, carry `payload_hash`: the
//! hex SHA-256 of the body. HS256 is one HMAC, written here with the `hmac` crate already in the
//! tree: the JWT crates' other algorithms need a crypto backend (`jsonwebtoken` 10's RustCrypto
//! one brings in `rsa`, which has an open timing advisory, RUSTSEC-2023-0071) for nothing used.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    Answer, BUSY_MESSAGE, CLOSED_MESSAGE, IncomingCall, MediaQuery, bad_request, header_str, hex,
    media_url_for, plausible_call_id,
};
use crate::engine::media::{Carrier, Codec};
use crate::server::AppState;

/// Oldest `iat` accepted (Vonage signs each request as it sends it).
pub const MAX_AGE_SECS: i64 = 300;
/// Clock skew tolerated on `iat` and `exp`.
const LEEWAY_SECS: i64 = 30;

/// Vonage's routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(answer_get, answer_post))
        .routes(routes!(media_stream))
}

/// Check a Vonage signed-webhook JWT (HS256) against `secret`, the request `body` and `now`.
pub fn verify_jwt(
    token: &str,
    secret: &str,
    body: &[u8],
    now_secs: i64,
) -> Result<(), &'static str> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.trim().split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the bearer token is not a JWT");
    };
    let header: Value = b64
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("bad JWT header")?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err("JWT is not HS256");
    }
    let sig = b64.decode(s).map_err(|_| "bad JWT signature")?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    mac.verify_slice(&sig).map_err(|_| "bad JWT signature")?;
    let claims: Value = b64
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("bad JWT claims")?;
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or("JWT without iat")?;
    if iat > now_secs + LEEWAY_SECS || now_secs - iat > MAX_AGE_SECS {
        return Err("JWT iat outside the accepted window");
    }
    if let Some(exp) = claims.get("exp") {
        let exp = exp.as_i64().ok_or("bad JWT exp")?;
        if now_secs > exp + LEEWAY_SECS {
            return Err("JWT expired");
        }
    }
    match claims.get("payload_hash") {
        Some(hash) => {
            let hash = hash.as_str().ok_or("bad JWT payload_hash")?;
            if !super::constant_time_eq(
                hash.to_ascii_lowercase().as_bytes(),
                hex(&Sha256::digest(body)).as_bytes(),
            ) {
                return Err("JWT payload_hash does not match the body");
            }
        }
        None if !body.is_empty() => return Err("JWT without payload_hash for a body"),
        None => {}
    }
    Ok(())
}

fn check(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let Some(secret) = super::credential(
        state,
        state.config.vonage_signature_secret.as_ref(),
        "VONAGE_SIGNATURE_SECRET",
    )?
    else {
        return Ok(());
    };
    let token = header_str(headers, "authorization")
        .and_then(|a| {
            a.strip_prefix("Bearer ")
                .or_else(|| a.strip_prefix("bearer "))
        })
        .ok_or("missing Authorization: Bearer")?;
    verify_jwt(token, secret, body, crate::store::now_ms() / 1000).map_err(String::from)
}

/// The answer as an NCCO.
pub fn ncco(state: &AppState, answer: &Answer) -> Response {
    let body = match answer {
        Answer::Connect(c) => json!([{
            "action": "connect",
            "endpoint": [{
                "type": "websocket",
                "uri": media_url_for(&state.config.public_url(), Carrier::Vonage, c),
                "content-type": "audio/l16;rate=16000",
                "headers": { "callId": c.call_id, "token": c.token },
            }],
        }]),
        Answer::Closed => json!([{ "action": "talk", "text": CLOSED_MESSAGE }]),
        Answer::Busy => json!([{ "action": "talk", "text": BUSY_MESSAGE }]),
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The answer webhook's fields this server reads (query for `GET`, JSON body for `POST`).
#[derive(serde::Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the request
#[schema(as = VonageAnswer)]
struct AnswerFields {
    /// The call leg's UUID: the call's id at Vonage.
    uuid: String,
    /// The number called: picks the receptionist.
    to: String,
    /// The caller.
    from: Option<String>,
}

async fn answer(state: AppState, fields: Vec<(String, String)>) -> Response {
    let get = |k: &str| super::form_field(&fields, k);
    let (Some(uuid), Some(to)) = (get("uuid"), get("to")) else {
        return bad_request("uuid and to are required");
    };
    if !plausible_call_id(&uuid) {
        return bad_request("uuid is not a Vonage call id");
    }
    let incoming = IncomingCall {
        carrier: Carrier::Vonage,
        carrier_call_id: uuid,
        to: normalise_number(&to),
        from: get("from").map(|f| normalise_number(&f)),
        // Vonage's answer webhook has no forwarded-from field
        forwarded_from: None,
    };
    let answer = super::accept(&state, incoming).await;
    ncco(&state, &answer)
}

/// Vonage writes numbers without the `+` (`447700900000`); receptionists' numbers are E.164.
fn normalise_number(n: &str) -> String {
    if n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty() {
        format!("+{n}")
    } else {
        n.to_string()
    }
}

/// A call comes in (Vonage's answer URL, called with `GET`).
///
/// The number called picks the receptionist. Answers an NCCO: `connect` to the media WebSocket
/// (16-bit PCM at 16 kHz) with the call's credential in its URL and headers, or `talk` (and the
/// call ends) when no live receptionist has the number or the node is at its call limit.
#[utoipa::path(
    get,
    path = "/vonage/voice",
    tag = "carrier",
    operation_id = "vonage_voice",
    params(
        ("Authorization" = String, Header, description = "`Bearer` JWT signed with the signature secret (HS256)"),
        AnswerFields,
    ),
    responses(
        (status = 200, description = "NCCO: connect the media WebSocket, or talk", content_type = "application/json", body = [Object]),
        (status = 400, description = "`uuid` or `to` missing", content_type = "text/plain", body = String),
        (status = 403, description = "Missing, bad or expired JWT (or no signature secret configured)", content_type = "text/plain", body = String),
    ),
)]
pub async fn answer_get(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    if let Err(why) = check(&state, &headers, &[]) {
        return super::forbidden(Carrier::Vonage, "webhook", &why);
    }
    let fields = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    answer(state, fields).await
}

/// A call comes in (Vonage's answer URL, called with `POST`).
///
/// As the `GET`, with the fields in a JSON body, whose SHA-256 the JWT's `payload_hash` must be.
#[utoipa::path(
    post,
    path = "/vonage/voice",
    tag = "carrier",
    operation_id = "vonage_voice_post",
    params(("Authorization" = String, Header, description = "`Bearer` JWT signed with the signature secret (HS256), with `payload_hash`")),
    request_body(content = AnswerFields, content_type = "application/json"),
    responses(
        (status = 200, description = "NCCO: connect the media WebSocket, or talk", content_type = "application/json", body = [Object]),
        (status = 400, description = "Not JSON, or `uuid` or `to` missing", content_type = "text/plain", body = String),
        (status = 403, description = "Missing, bad or expired JWT (or no signature secret configured)", content_type = "text/plain", body = String),
    ),
)]
pub async fn answer_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(why) = check(&state, &headers, &body) {
        return super::forbidden(Carrier::Vonage, "webhook", &why);
    }
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "the body is not a JSON object").into_response();
    };
    let fields = map
        .into_iter()
        .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string())))
        .collect();
    answer(state, fields).await
}

/// The call's media stream (a WebSocket).
///
/// Vonage connects to the NCCO's `uri`, whose query is the call's credential; its first message
/// (text) echoes the NCCO headers, then 16-bit PCM frames flow both ways as binary messages, with
/// DTMF, `notify` and `clear` as JSON text.
#[utoipa::path(
    get,
    path = "/vonage/media",
    tag = "carrier",
    operation_id = "vonage_media_stream",
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
    super::upgrade_by_credential(state, Codec::new(Carrier::Vonage), &uri, ws, socket).await
}

/// Sign claims as Vonage does (HS256), for tests and the carrier client.
pub fn sign_jwt(secret: &str, claims: &Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = b64.encode(claims.to_string());
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    let sig = b64.encode(mac.finalize().into_bytes());
    format!("{header}.{payload}.{sig}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_io_hs256_example_verifies() {
        // jwt.io's HS256 example token (secret `your-256-bit-secret`, `iat` 1516239022).
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        assert_eq!(
            verify_jwt(token, "your-256-bit-secret", b"", 1_516_239_022 + 10),
            Ok(())
        );
        assert!(verify_jwt(token, "other-secret", b"", 1_516_239_032).is_err());
        assert_eq!(
            verify_jwt(token, "your-256-bit-secret", b"", 1_516_239_022 + 3600),
            Err("JWT iat outside the accepted window")
        );
    }

    #[test]
    fn claims_are_checked() {
        let now = 1_700_000_000;
        let body = br#"{"uuid":"u","to":"447700900000"}"#;
        let hash = hex(&Sha256::digest(body));
        let ok = sign_jwt(
            "s",
            &json!({"iat": now, "exp": now + 60, "payload_hash": hash}),
        );
        assert_eq!(verify_jwt(&ok, "s", body, now), Ok(()));
        // another body under the same token
        assert!(verify_jwt(&ok, "s", b"{}", now).is_err());
        // a body but no payload_hash
        let no_hash = sign_jwt("s", &json!({"iat": now}));
        assert!(verify_jwt(&no_hash, "s", body, now).is_err());
        assert_eq!(verify_jwt(&no_hash, "s", b"", now), Ok(()));
        // expired, issued in the future, no iat
        let expired = sign_jwt("s", &json!({"iat": now - 100, "exp": now - 60}));
        assert_eq!(verify_jwt(&expired, "s", b"", now), Err("JWT expired"));
        let future = sign_jwt("s", &json!({"iat": now + 600}));
        assert!(verify_jwt(&future, "s", b"", now).is_err());
        assert!(verify_jwt(&sign_jwt("s", &json!({})), "s", b"", now).is_err());
        // alg none and tampered claims
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none"}"#),
            b64.encode(json!({"iat": now}).to_string())
        );
        assert!(verify_jwt(&none, "s", b"", now).is_err());
        let mut parts: Vec<&str> = ok.split('.').collect();
        let other = b64.encode(json!({"iat": now}).to_string());
        parts[1] = &other;
        assert!(verify_jwt(&parts.join("."), "s", body, now).is_err());
        assert!(verify_jwt("a.b", "s", b"", now).is_err());
        assert_eq!(normalise_number("447700900000"), "+447700900000");
        assert_eq!(normalise_number("+15550001111"), "+15550001111");
    }
}
