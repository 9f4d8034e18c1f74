//! `/api/v1/keys`: a workspace's API keys. A new key is shown once; only its hash is stored.
//! Admins create and revoke; viewers may list (never the keys themselves).

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiJson, rfc3339};
use crate::server::AppState;
use crate::server::auth::Admin;
use crate::server::error::ApiError;
use crate::store::{ApiKeyInfo, Principal, Role};

const MAX_NAME_CHARS: usize = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me", get(me))
        .route("/api/v1/keys", get(list_keys).post(create_key))
        .route("/api/v1/keys/{id}", delete(revoke_key))
}

#[derive(Serialize)]
struct KeyOut {
    id: String,
    name: String,
    role: Role,
    created_at: String,
    revoked_at: Option<String>,
}

impl From<ApiKeyInfo> for KeyOut {
    fn from(k: ApiKeyInfo) -> Self {
        KeyOut {
            id: k.id,
            name: k.name,
            role: k.role,
            created_at: rfc3339(k.created_at_ms),
            revoked_at: k.revoked_at_ms.map(rfc3339),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyInput {
    role: Role,
    name: Option<String>,
}

async fn create_key(
    State(state): State<AppState>,
    Admin(principal): Admin,
    ApiJson(input): ApiJson<KeyInput>,
) -> Result<Response, ApiError> {
    let name = input.name.as_deref().unwrap_or_default().trim();
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::validation(
            "name",
            format!("at most {MAX_NAME_CHARS} characters"),
        ));
    }
    let (info, key) = state
        .store
        .create_named_api_key(&principal.workspace_id, input.role, name)
        .await?;
    #[derive(Serialize)]
    struct Created {
        #[serde(flatten)]
        info: KeyOut,
        /// Shown this once.
        key: String,
    }
    Ok((
        StatusCode::CREATED,
        Json(Created {
            info: info.into(),
            key,
        }),
    )
        .into_response())
}

/// Who the key in use is: its workspace, role and name (the dashboard signs in with this).
async fn me(State(state): State<AppState>, principal: Principal) -> Result<Response, ApiError> {
    let workspace = state.store.get_workspace(&principal.workspace_id).await?;
    let key = state
        .store
        .list_api_keys(&principal.workspace_id)
        .await?
        .into_iter()
        .find(|k| k.id == principal.key_id)
        .ok_or(ApiError::Unauthorized)?;
    Ok(Json(serde_json::json!({
        "workspace": { "id": workspace.id, "name": workspace.name },
        "key": KeyOut::from(key),
        "role": principal.role,
    }))
    .into_response())
}

async fn list_keys(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let data: Vec<KeyOut> = state
        .store
        .list_api_keys(&principal.workspace_id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(serde_json::json!({ "data": data })).into_response())
}

async fn revoke_key(
    State(state): State<AppState>,
    Admin(principal): Admin,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    state
        .store
        .revoke_api_key(&principal.workspace_id, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
