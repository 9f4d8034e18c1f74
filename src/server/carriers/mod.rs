//! Each carrier's HTTP side, one module per carrier owning its `router()`: the voice webhook
//! (`POST /{carrier}/voice`), its signature check and answer markup, and the media WebSocket
//! upgrade (`GET /{carrier}/media`). What every carrier shares lives here once: accepting a call
//! ([`accept`]), the per-call media credential ([`authorise_media`]) and the upgrade settings
//! ([`upgrade`]). The call itself runs in [`super::driver::run_carrier`].
//!
//! Media upgrades: Twilio signs its upgrade, and its stream carries the `callId`/`token`
//! parameters of the answer. The other carriers do not sign theirs (or it is not documented), so
//! the stream URL of their answer carries the call's id and its one-use token as the query
//! (`?callId=…&token=…`); the upgrade is refused with 403 unless they match an accepted call of
//! that carrier, and the `start` must then present the same call (its parameters, where the
//! carrier passes them, and the carrier's call id) before anything runs.
//!
//! A call arriving on carrier X for a number whose receptionist says Y is answered: the
//! signature proves the carrier, and refusing would drop a candidate's call over a setting. It is
//! logged (without the number) so the setting can be fixed.

pub mod client;
pub mod exotel;
pub mod plivo;
pub mod signalwire;
pub mod telnyx;
pub mod twilio;
pub mod vonage;

use axum::extract::ws::WebSocketUpgrade;

use super::socket::MediaSocket;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;

use super::AppState;
use crate::config::Secret;
use crate::engine::media::{Carrier, CarrierCodec, Codec};
use crate::model::ReceptionistStatus;
use crate::store::{CallRow, CallStatus, NewCall};

pub const CLOSED_MESSAGE: &str = "Thank you for calling. This line is not taking calls right now. Please try again later. Goodbye.";
pub const BUSY_MESSAGE: &str = "Thank you for calling. All of our lines are busy right now. Please call back in a few minutes. Goodbye.";

/// Largest WebSocket message accepted from a carrier. A 20 ms media message is about 300 bytes
/// (Exotel's 100 ms chunks about 2 KB); anything near this is not a carrier.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Outgoing messages are gathered up to this much before a socket write: a burst of agent audio
/// (a chunk of about 2.3 KB and a mark per 200 ms) takes a write per chunk (its mark goes with
/// the next), not one per message. The buffer keeps the largest size it reached for the whole
/// call, so this bounds it too: about 4.5 KiB a call at 2 KiB, 9 KiB at 4 KiB, 17 KiB at 8 KiB
/// (dhat, 100 calls).
pub const WRITE_BUFFER_BYTES: usize = 2 * 1024;
/// What one read of a call's socket takes at most: two 20 ms messages (the receive low-water
/// mark's pair, about 600 bytes) with room to spare; a larger message (Exotel's 100 ms chunks)
/// takes two reads. Kept for the whole call, like the write buffer.
pub const READ_BUFFER_BYTES: usize = 2 * 1024;

/// Every carrier's routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(twilio::router())
        .merge(telnyx::router())
        .merge(plivo::router())
        .merge(vonage::router())
        .merge(signalwire::router())
        .merge(exotel::router())
}

/// A call as a carrier's (already authenticated) voice webhook describes it.
#[derive(Clone)]
pub struct IncomingCall {
    pub carrier: Carrier,
    /// The carrier's own id for the call (Twilio's CallSid, Telnyx's call control id, ...).
    pub carrier_call_id: String,
    /// The number called: picks the receptionist.
    pub to: String,
    pub from: Option<String>,
    /// The number a phone menu forwarded the call from, when the carrier says.
    pub forwarded_from: Option<String>,
}

/// What the carrier is told to do with a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Connect the media stream, presenting this call's id and one-use token.
    Connect(Connection),
    /// No live receptionist has the number: [`CLOSED_MESSAGE`] and hang up.
    Closed,
    /// The node is at its call limit, or draining: [`BUSY_MESSAGE`] and hang up.
    Busy,
}

/// The credential a stream presents for its call (in its URL and/or its `start` parameters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub call_id: String,
    pub token: String,
}

impl Connection {
    /// As stream parameters (and query pairs): `callId`, `token`.
    pub fn params(&self) -> [(&'static str, &str); 2] {
        [("callId", &self.call_id), ("token", &self.token)]
    }
}

/// The longest carrier call id kept; carriers' ids are 30-80 characters.
const MAX_CARRIER_CALL_ID: usize = 128;

/// Whether a carrier call id is plausible: printable ASCII without spaces, bounded.
pub fn plausible_call_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_CARRIER_CALL_ID && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Accept a call: route it by the called number, answer closed or busy, or store it (with its
/// carrier, the carrier's call id and the forwarded-from number) and issue its one-use token.
pub async fn accept(state: &AppState, incoming: IncomingCall) -> Answer {
    let carrier = incoming.carrier.as_str();
    let receptionist = match state.store.receptionist_by_phone(&incoming.to).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, carrier, "receptionist lookup failed");
            return Answer::Closed;
        }
    };
    let Some(receptionist) = receptionist else {
        tracing::info!(carrier, carrier_call_id = %incoming.carrier_call_id, "call to a number with no receptionist");
        return Answer::Closed;
    };
    if receptionist.settings.status != ReceptionistStatus::Live {
        tracing::info!(carrier, carrier_call_id = %incoming.carrier_call_id, receptionist = %receptionist.id, "call to an inactive receptionist");
        return Answer::Closed;
    }
    if receptionist.carrier != carrier {
        tracing::warn!(carrier, expected = %receptionist.carrier, receptionist = %receptionist.id, "call arrived on another carrier than the receptionist's: answered");
    }
    let Some(slot) = state.calls.try_acquire() else {
        if state.calls.is_closed() {
            tracing::info!(carrier, carrier_call_id = %incoming.carrier_call_id, "draining: answered busy");
        } else {
            tracing::warn!(carrier, carrier_call_id = %incoming.carrier_call_id, "at the concurrent call limit: refusing");
        }
        return Answer::Busy;
    };
    let token = new_token();
    let new_call = NewCall {
        id: uuid::Uuid::new_v4().to_string(),
        carrier: carrier.into(),
        workspace_id: receptionist.workspace_id.clone(),
        receptionist_id: receptionist.id.clone(),
        call_sid: incoming.carrier_call_id,
        from_number: incoming.from.unwrap_or_else(|| "anonymous".to_string()),
        to_number: incoming.to,
        forwarded_from: incoming.forwarded_from,
        token_hash: sha256_hex(&token),
        node_id: state.config.node_id.clone(),
        accepted_at_ms: crate::store::now_ms(),
        settings: receptionist.settings.clone(),
    };
    let call_id = match state.store.accept_call(&new_call).await {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, carrier, "cannot record the accepted call");
            return Answer::Busy;
        }
    };
    state.calls.hold(call_id.clone(), slot);
    tracing::info!(call = %call_id, carrier, "call accepted");
    Answer::Connect(Connection { call_id, token })
}

/// 24 random bytes, hex.
fn new_token() -> String {
    use rand::Rng;
    let bytes: [u8; 24] = rand::rng().random();
    hex(&bytes)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes()))
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The `ws(s)://` base of the public URL.
fn ws_base(public_url: &str) -> String {
    if let Some(rest) = public_url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = public_url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        public_url.to_string()
    }
}

/// A carrier's media WebSocket URL, from the public base URL.
pub fn media_url(public_url: &str, carrier: Carrier) -> String {
    format!("{}/{}/media", ws_base(public_url), carrier.as_str())
}

/// The media URL with the call's credential as its query (carriers that do not sign upgrades).
pub fn media_url_for(public_url: &str, carrier: Carrier, c: &Connection) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(c.params())
        .finish();
    format!("{}?{query}", media_url(public_url, carrier))
}

/// The URL a carrier signed: the public base URL and the request's path and query.
pub fn public_request_url(state: &AppState, uri: &Uri) -> String {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("{}{path}", state.config.public_url())
}

/// A carrier's configured credential: `Ok(Some)` to check against, `Ok(None)` when it is unset
/// and the insecure development switch is on, `Err` (refuse) when it is unset.
pub fn credential<'a>(
    state: &AppState,
    value: Option<&'a Secret>,
    env: &'static str,
) -> Result<Option<&'a str>, String> {
    match value {
        Some(s) if !s.expose().is_empty() => Ok(Some(s.expose())),
        _ if state.config.insecure_no_signature => Ok(None),
        _ => Err(format!(
            "{env} is not set; refusing unsigned carrier requests"
        )),
    }
}

/// 403, logged with the reason (never the request's values).
pub fn forbidden(carrier: Carrier, what: &'static str, why: &str) -> Response {
    tracing::warn!(carrier = carrier.as_str(), reason = why, "{what} refused");
    (StatusCode::FORBIDDEN, why.to_string()).into_response()
}

pub fn bad_request(why: &'static str) -> Response {
    (StatusCode::BAD_REQUEST, why).into_response()
}

/// A header as text.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A form field, trimmed; `None` when absent or empty.
pub fn form_field(params: &[(String, String)], name: &str) -> Option<String> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
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

/// An XML `<Response>` document (TwiML, TeXML, cXML, Plivo XML).
pub fn xml_response(body: &str) -> Response {
    (
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>{body}</Response>\n"),
    )
        .into_response()
}

/// `<Parameter name value/>` elements (TwiML, TeXML, cXML).
pub fn xml_parameters(params: &[(&str, &str)]) -> String {
    let mut p = String::new();
    for (k, v) in params {
        p.push_str(&format!(
            "<Parameter name=\"{}\" value=\"{}\"/>",
            xml_escape(k),
            xml_escape(v)
        ));
    }
    p
}

/// The credential in a media upgrade's query.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MediaQuery {
    /// The call the voice webhook accepted.
    #[serde(rename = "callId")]
    #[param(rename = "callId")]
    pub call_id: String,
    /// Its one-use token.
    pub token: String,
}

/// The `callId`/`token` of a media upgrade's query, when both are there.
pub fn media_query(uri: &Uri) -> Option<MediaQuery> {
    let (mut call_id, mut token) = (None, None);
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        match &*k {
            "callId" => call_id = Some(v.into_owned()),
            "token" => token = Some(v.into_owned()),
            _ => {}
        }
    }
    Some(MediaQuery {
        call_id: call_id?,
        token: token?,
    })
}

/// The accepted call of `carrier` a media upgrade's query names, if its token matches; else the
/// 403 (or 500) to answer. Nothing is stored either way.
pub async fn authorise_media(
    state: &AppState,
    carrier: Carrier,
    q: Option<&MediaQuery>,
) -> Result<CallRow, Response> {
    let Some(q) = q else {
        return Err(forbidden(carrier, "media upgrade", "missing callId/token"));
    };
    let call = match state.store.call_by_id(&q.call_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(forbidden(carrier, "media upgrade", "unknown call")),
        Err(e) => {
            tracing::error!(error = %e, "call lookup failed");
            return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
    };
    let token_ok = constant_time_eq(call.token_hash.as_bytes(), sha256_hex(&q.token).as_bytes());
    if !token_ok || call.carrier != carrier.as_str() || call.status != CallStatus::Accepted {
        return Err(forbidden(
            carrier,
            "media upgrade",
            "bad or used credential",
        ));
    }
    Ok(call)
}

/// A media upgrade whose URL carries the call's credential (every carrier but Twilio, which signs
/// its upgrades): the credential is checked before the upgrade, then the call runs with `codec`.
pub async fn upgrade_by_credential(
    state: AppState,
    codec: Codec,
    uri: &Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    socket: MediaSocket,
) -> Response {
    let carrier = codec.carrier();
    let call = match authorise_media(&state, carrier, media_query(uri).as_ref()).await {
        Ok(c) => c,
        Err(refused) => return refused,
    };
    match ws {
        Ok(ws) => upgrade(ws, state, codec, Some(call), socket),
        Err(rejection) => rejection.into_response(),
    }
}

/// While the server drains, a new media session is refused with 503 unless it belongs to a call
/// this node accepted before the drain began, whose slot is still held for it. `call_id`: the
/// call the upgrade names; Twilio's names none, so it passes while any accepted call has yet to
/// connect (its `start` must then claim a held slot).
pub fn refuse_while_draining(state: &AppState, call_id: Option<&str>) -> Option<Response> {
    if !state.calls.is_closed() {
        return None;
    }
    let accepted = match call_id {
        Some(id) => state.calls.is_held(id),
        None => state.calls.any_held(),
    };
    if accepted {
        return None;
    }
    tracing::info!("media upgrade refused: draining");
    Some(
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down: not taking new calls",
        )
            .into_response(),
    )
}

/// Upgrade to the media WebSocket and run the call. `call` is the call the upgrade's credential
/// named (none for Twilio, whose `start` names it).
pub fn upgrade(
    ws: WebSocketUpgrade,
    state: AppState,
    codec: Codec,
    call: Option<CallRow>,
    socket: MediaSocket,
) -> Response {
    if let Some(refused) = refuse_while_draining(&state, call.as_ref().map(|c| c.id.as_str())) {
        return refused;
    }
    // Small buffers: a call's messages are a few hundred bytes to a few KiB, and the defaults
    // (128 KiB each) would dominate the memory of thousands of calls.
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(MAX_MESSAGE_BYTES * 4)
        .on_upgrade(move |ws| super::driver::run_carrier(state, ws, codec, call, socket))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_escaping() {
        assert_eq!(xml_escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(
            media_url("https://rx.example.com", Carrier::Twilio),
            "wss://rx.example.com/twilio/media"
        );
        assert_eq!(
            media_url("http://127.0.0.1:8080", Carrier::Plivo),
            "ws://127.0.0.1:8080/plivo/media"
        );
        let c = Connection {
            call_id: "c-1".into(),
            token: "t&x".into(),
        };
        assert_eq!(
            media_url_for("https://rx.example.com", Carrier::Vonage, &c),
            "wss://rx.example.com/vonage/media?callId=c-1&token=t%26x"
        );
        assert!(plausible_call_id("v3:abc-DEF_1"));
        assert!(!plausible_call_id("a b"));
        assert!(!plausible_call_id(""));
        assert!(!plausible_call_id(&"x".repeat(200)));
    }
}
