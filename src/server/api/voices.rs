//! `GET /api/v1/voices`: the voices a receptionist's `voice` may name on this server (the speech
//! backend's own; an unknown name is spoken in the default voice).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::server::AppState;
use crate::server::error::{ApiError, doc};
use crate::store::Principal;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_voices))
}

/// The server's text-to-speech voices.
#[derive(Serialize, ToSchema)]
struct VoicesOut {
    /// The speech backends serving calls (`offline`, `scripted`, or `STT+TTS` for a mix).
    backend: String,
    /// The voice used when a receptionist's `voice` is not one of `voices`.
    default: String,
    /// Every voice a receptionist's `voice` may name, the default first.
    voices: Vec<String>,
}

/// List the voices a receptionist may use
///
/// The speech backend's voices on this server; a receptionist whose `voice` is not one of them
/// is spoken in `default`.
#[utoipa::path(
    get,
    path = "/api/v1/voices",
    tag = "receptionists",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The voices", body = VoicesOut),
        doc::AnyKey,
    ),
)]
async fn list_voices(
    State(state): State<AppState>,
    _principal: Principal,
) -> Result<Json<VoicesOut>, ApiError> {
    let voices = state.backends.tts.voices();
    Ok(Json(VoicesOut {
        backend: state.backends.name.to_string(),
        default: voices.first().cloned().unwrap_or_default(),
        voices,
    }))
}
