//! `POST /api/v1/receptionists/{id}/web-calls`: a test call from the dashboard ("Try it"). It
//! returns a short-lived, one-use token for the media WebSocket `GET /web/call`, so the API key
//! never appears in a URL. The call runs through the same engine as a phone call and is stored
//! like one (carrier `web`; the caller is the key that placed it).
//!
//! Wire protocol on `/web/call` (see the README): binary frames are PCM16LE mono 8 kHz audio both
//! ways; JSON text frames carry marks (the browser echoes each once the audio before it has
//! played), `clear` (barge-in), `dtmf`, `hangup`, live `transcript` lines, `started` and `ended`.

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{OptionalJson, rfc3339};
use crate::server::AppState;
use crate::server::auth::Admin;
use crate::server::error::{ApiError, doc};
use crate::store::NewCall;

/// How long a web-call token may wait before its socket connects.
pub const TOKEN_TTL_MS: i64 = 60_000;
/// The sample rate of the browser protocol's PCM, both ways.
pub const SAMPLE_RATE: u32 = 8_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_web_call))
}

/// No fields (an empty body or `{}`).
#[derive(Debug, Default, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebCallInput {}

/// A test call's one-use token and where to connect.
#[derive(Serialize, ToSchema)]
pub struct WebCallOut {
    call_id: String,
    token: String,
    /// Path (and query) of the media WebSocket on this server.
    ws_path: String,
    sample_rate: u32,
    expires_at: String,
}

/// Start a test call from the browser: a one-use token (valid 60 s) for `GET /web/call`.
#[utoipa::path(
    post,
    path = "/api/v1/receptionists/{id}/web-calls",
    tag = "receptionists",
    operation_id = "create_web_call",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "The receptionist's id")),
    request_body(content = Option<WebCallInput>, description = "Optional: empty or `{}`"),
    responses(
        (status = 201, description = "The call's token and WebSocket path", body = WebCallOut),
        (status = 503, description = "At the concurrent call limit, or shutting down", body = crate::server::error::ErrorBody),
        doc::AdminKey, doc::NotFound, doc::JsonBody,
    ),
)]
async fn create_web_call(
    State(state): State<AppState>,
    Admin(principal): Admin,
    UrlPath(id): UrlPath<String>,
    OptionalJson(_): OptionalJson<WebCallInput>,
) -> Result<Response, ApiError> {
    let receptionist = state
        .store
        .get_receptionist(&principal.workspace_id, &id)
        .await?;
    let key_name = Some(principal.key_name.clone()).filter(|n| !n.is_empty());
    let caller = match key_name {
        Some(name) => format!("web:{name}"),
        None => format!(
            "web:key {}",
            &principal.key_id[..8.min(principal.key_id.len())]
        ),
    };
    let Some(slot) = state.calls.try_acquire() else {
        return Err(ApiError::BadRequest {
            field: None,
            message:
                "this server is at its concurrent call limit or shutting down; try again in a minute"
                    .into(),
            status: StatusCode::SERVICE_UNAVAILABLE,
        });
    };
    let token = {
        use rand::Rng;
        let bytes: [u8; 24] = rand::rng().random();
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let now = crate::store::now_ms();
    let call = NewCall {
        id: crate::store::new_id(),
        carrier: "web".into(),
        workspace_id: principal.workspace_id.clone(),
        receptionist_id: receptionist.id.clone(),
        call_sid: format!("WEB{}", uuid::Uuid::new_v4().simple()),
        from_number: caller,
        to_number: receptionist.settings.phone_number.clone(),
        forwarded_from: None,
        token_hash: crate::server::carriers::sha256_hex(&token),
        node_id: state.config.node_id.clone(),
        accepted_at_ms: now,
        settings: receptionist.settings.clone(),
    };
    let call_id = state.store.accept_call(&call).await?;
    state.calls.hold(call_id.clone(), slot);
    state.warm_prompts_for(&receptionist.settings);
    tracing::info!(call = %call_id, "web call accepted");
    Ok((
        StatusCode::CREATED,
        Json(WebCallOut {
            ws_path: format!("/web/call?call_id={call_id}&token={token}"),
            call_id,
            token,
            sample_rate: SAMPLE_RATE,
            expires_at: rfc3339(now + TOKEN_TTL_MS),
        }),
    )
        .into_response())
}
