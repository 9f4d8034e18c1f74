//! The browser's test call upgrade, `GET /web/call`. Carriers' media upgrades are in
//! [`super::carriers`]; the call itself runs in [`super::driver`].

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::carriers::MAX_MESSAGE_BYTES;

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WebCallQuery {
    /// The call `POST /api/v1/receptionists/{id}/web-calls` created.
    call_id: String,
    /// Its one-use token.
    token: String,
}

#[utoipa::path(
    get,
    path = "/web/call",
    tag = "carrier",
    operation_id = "web_call_stream",
    params(WebCallQuery),
    responses(
        (status = 101, description = "Switching Protocols: the browser call's WebSocket (PCM16LE 8 kHz binary frames, JSON control frames)"),
        (status = 400, description = "Not a WebSocket upgrade request, or missing parameters", content_type = "text/plain", body = String),
        (status = 403, description = "Unknown call, or a bad, used or expired token", content_type = "text/plain", body = String),
        (status = 426, description = "The connection cannot be upgraded", content_type = "text/plain", body = String),
        (status = 503, description = "The server is shutting down: no new calls", content_type = "text/plain", body = String),
    ),
)]
/// `GET /web/call?call_id=…&token=…`: the dashboard's test call. The token is the one-use,
/// short-lived one `POST /api/v1/receptionists/{id}/web-calls` issued (never an API key).
pub async fn web_call(
    State(state): State<AppState>,
    Query(q): Query<WebCallQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let call = match state.store.call_by_id(&q.call_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return (StatusCode::FORBIDDEN, "unknown call").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "web call lookup failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let expired =
        crate::store::now_ms() - call.accepted_at_ms > super::api::web_calls::TOKEN_TTL_MS;
    let token_ok = {
        use subtle::ConstantTimeEq;
        let given = super::carriers::sha256_hex(&q.token);
        given.len() == call.token_hash.len()
            && bool::from(given.as_bytes().ct_eq(call.token_hash.as_bytes()))
    };
    if call.carrier != "web"
        || !token_ok
        || call.status != crate::store::CallStatus::Accepted
        || expired
    {
        tracing::warn!(call = %call.id, "web call refused: bad, used or expired token");
        return (StatusCode::FORBIDDEN, "bad, used or expired token").into_response();
    }
    if let Some(refused) = super::carriers::refuse_while_draining(&state, Some(&call.id)) {
        return refused;
    }
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .read_buffer_size(super::carriers::READ_BUFFER_BYTES)
        .write_buffer_size(super::carriers::WRITE_BUFFER_BYTES)
        .max_write_buffer_size(MAX_MESSAGE_BYTES * 4)
        .on_upgrade(move |socket| super::driver::run_web(state, socket, call))
}
