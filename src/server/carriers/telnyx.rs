//! Telnyx's HTTP side (docs/telephony-protocols.md §2): the TeXML voice webhook
//! (`POST /telnyx/voice`, form-encoded like Twilio's, signed with Ed25519), its TeXML answer
//! (`<Connect><Stream codec=… bidirectionalMode="rtp" bidirectionalCodec="PCMU">` with
//! `<Parameter>`s; `codec` from `TELNYX_STREAM_CODEC`),
//! and the media upgrade (`GET /telnyx/media`), which Telnyx does not sign: the stream URL carries
//! the call's credential.
//!
//! Signature: `telnyx-signature-ed25519` is base64 Ed25519 over `{telnyx-timestamp}|{raw body}`,
//! checked with `TELNYX_PUBLIC_KEY`; a timestamp more than [`REPLAY_WINDOW_SECS`] away from now is
//! refused (Telnyx's own libraries use the same window). A replay inside the window re-answers the
//! same call (the webhook is idempotent on the call id) and cannot start a second one.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use base64::Engine as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    Answer, BUSY_MESSAGE, CLOSED_MESSAGE, IncomingCall, MediaQuery, bad_request, form_field,
    header_str, media_url_for, plausible_call_id, xml_escape, xml_parameters, xml_response,
};
use crate::engine::media::telnyx::TelnyxCodec;
use crate::engine::media::{AudioCodec, Carrier, Codec};
use crate::server::AppState;

/// How far a webhook's `telnyx-timestamp` may be from now.
pub const REPLAY_WINDOW_SECS: i64 = 300;

/// The codec the answer asks Telnyx to take back (`bidirectionalCodec`): the engine's own µ-law
/// 8 kHz, so nothing is transcoded on the way out. The driver's codec is built with it.
pub const OUTBOUND_CODEC: AudioCodec = AudioCodec::Mulaw;
const OUTBOUND_CODEC_NAME: &str = "PCMU";

/// Telnyx's routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(voice_webhook))
        .routes(routes!(media_stream))
}

/// Check a Telnyx signature: `signature_b64` over `timestamp|body` with the base64 Ed25519
/// `public_key_b64`, and the timestamp within the replay window of `now_secs`.
pub fn verify(
    public_key_b64: &str,
    timestamp: &str,
    body: &[u8],
    signature_b64: &str,
    now_secs: i64,
) -> Result<(), &'static str> {
    use ed25519_dalek::{Signature, VerifyingKey};
    let b64 = base64::engine::general_purpose::STANDARD;
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| "bad telnyx-timestamp")?;
    if (now_secs - ts).abs() > REPLAY_WINDOW_SECS {
        return Err("telnyx-timestamp outside the replay window");
    }
    let key: [u8; 32] = b64
        .decode(public_key_b64.trim())
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or("TELNYX_PUBLIC_KEY is not a base64 Ed25519 public key")?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| "TELNYX_PUBLIC_KEY is not a valid key")?;
    let sig: [u8; 64] = b64
        .decode(signature_b64.trim())
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or("bad telnyx-signature-ed25519")?;
    let mut message = Vec::with_capacity(timestamp.len() + 1 + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'|');
    message.extend_from_slice(body);
    key.verify_strict(&message, &Signature::from_bytes(&sig))
        .map_err(|_| "bad telnyx-signature-ed25519")
}

fn check(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let Some(key) = super::credential(
        state,
        state.config.telnyx_public_key.as_ref(),
        "TELNYX_PUBLIC_KEY",
    )?
    else {
        return Ok(());
    };
    let (Some(sig), Some(ts)) = (
        header_str(headers, "telnyx-signature-ed25519"),
        header_str(headers, "telnyx-timestamp"),
    ) else {
        return Err("missing telnyx-signature-ed25519 or telnyx-timestamp".into());
    };
    verify(key, ts, body, sig, crate::store::now_ms() / 1000).map_err(String::from)
}

/// The answer in TeXML.
pub fn texml(state: &AppState, answer: &Answer) -> Response {
    match answer {
        Answer::Connect(c) => xml_response(&format!(
            "<Connect><Stream url=\"{}\" codec=\"{}\" bidirectionalMode=\"rtp\" bidirectionalCodec=\"{OUTBOUND_CODEC_NAME}\">{}</Stream></Connect>",
            xml_escape(&media_url_for(
                &state.config.public_url(),
                Carrier::Telnyx,
                c
            )),
            state.config.telnyx_stream_codec.as_str(),
            xml_parameters(&c.params()),
        )),
        Answer::Closed => say_and_hang_up(CLOSED_MESSAGE),
        Answer::Busy => say_and_hang_up(BUSY_MESSAGE),
    }
}

fn say_and_hang_up(text: &str) -> Response {
    xml_response(&format!("<Say>{}</Say><Hangup/>", xml_escape(text)))
}

/// The form Telnyx posts to a TeXML application's voice URL (the fields this server reads).
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)] // documents the form
#[schema(as = TelnyxVoiceForm)]
struct VoiceForm {
    /// The call control id (`v3:...`); `CallSid` carries the same value.
    call_control_id: Option<String>,
    /// Used when `CallControlId` is absent.
    call_sid: String,
    /// The number called: picks the receptionist.
    to: String,
    /// The caller.
    from: Option<String>,
    /// Kept when a phone menu forwarded the call.
    forwarded_from: Option<String>,
}

/// A call comes in (Telnyx's TeXML voice webhook).
///
/// The number called picks the receptionist. Answers TeXML: `<Connect><Stream>` in RTP mode
/// (PCMU both ways) to the media WebSocket with the call's credential, or a spoken message and a
/// hang-up when no live receptionist has the number or the node is at its call limit.
#[utoipa::path(
    post,
    path = "/telnyx/voice",
    tag = "carrier",
    operation_id = "telnyx_voice",
    params(
        ("telnyx-signature-ed25519" = String, Header, description = "Base64 Ed25519 signature of `timestamp|body`"),
        ("telnyx-timestamp" = String, Header, description = "Unix seconds; refused outside a 300 s window"),
    ),
    request_body(content = VoiceForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "TeXML: connect the media stream, or say a message and hang up", content_type = "text/xml", body = String),
        (status = 400, description = "`CallSid` or `To` missing", content_type = "text/plain", body = String),
        (status = 403, description = "Missing, bad or stale signature (or no public key configured)", content_type = "text/plain", body = String),
    ),
)]
pub async fn voice_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(why) = check(&state, &headers, &body) {
        return super::forbidden(Carrier::Telnyx, "webhook", &why);
    }
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| form_field(&params, k);
    let (Some(call_id), Some(to)) = (get("CallControlId").or_else(|| get("CallSid")), get("To"))
    else {
        return bad_request("CallSid and To are required");
    };
    if !plausible_call_id(&call_id) {
        return bad_request("CallSid is not a Telnyx call id");
    }
    let incoming = IncomingCall {
        carrier: Carrier::Telnyx,
        carrier_call_id: call_id,
        to,
        from: get("From"),
        forwarded_from: get("ForwardedFrom"),
    };
    let answer = super::accept(&state, incoming).await;
    texml(&state, &answer)
}

/// The call's media stream (a WebSocket).
///
/// Telnyx connects to the URL of the TeXML answer, whose query is the call's credential; the socket
/// then carries Telnyx's media streaming messages (`connected`, `start`, `media`, `dtmf`, `mark`,
/// `stop` in; `media`, `mark`, `clear` out).
#[utoipa::path(
    get,
    path = "/telnyx/media",
    tag = "carrier",
    operation_id = "telnyx_media_stream",
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
    super::upgrade_by_credential(
        state,
        Codec::Telnyx(TelnyxCodec::new(OUTBOUND_CODEC)),
        &uri,
        ws,
        socket,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    #[test]
    fn rfc8032_vector_and_telnyx_framing() {
        // RFC 8032 §7.1 TEST 1: secret key, public key, empty message, signature.
        let secret: [u8; 32] =
            hex32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let key = SigningKey::from_bytes(&secret);
        assert_eq!(
            crate::server::carriers::hex(key.verifying_key().as_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = key.sign(b"");
        assert_eq!(
            crate::server::carriers::hex(&sig.to_bytes()),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        // Telnyx signs `timestamp|body`
        let public = b64(key.verifying_key().as_bytes());
        let body = b"CallSid=v3%3Aabc&To=%2B15550001111";
        let sig = b64(&key
            .sign(b"1700000000|CallSid=v3%3Aabc&To=%2B15550001111")
            .to_bytes());
        assert_eq!(
            verify(&public, "1700000000", body, &sig, 1_700_000_100),
            Ok(())
        );
        // forged body, other timestamp, stale, future, other key, garbage
        assert!(
            verify(
                &public,
                "1700000000",
                b"CallSid=v3%3Axyz",
                &sig,
                1_700_000_100
            )
            .is_err()
        );
        assert!(verify(&public, "1700000001", body, &sig, 1_700_000_100).is_err());
        assert_eq!(
            verify(&public, "1700000000", body, &sig, 1_700_000_301),
            Err("telnyx-timestamp outside the replay window")
        );
        assert!(verify(&public, "1700000000", body, &sig, 1_699_999_000).is_err());
        let other = b64(SigningKey::from_bytes(&[7; 32]).verifying_key().as_bytes());
        assert!(verify(&other, "1700000000", body, &sig, 1_700_000_100).is_err());
        assert!(verify(&public, "1700000000", body, "not base64!", 1_700_000_100).is_err());
        assert!(verify(&public, "soon", body, &sig, 1_700_000_100).is_err());
        assert!(verify("AAAA", "1700000000", body, &sig, 1_700_000_100).is_err());
    }

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }
}
