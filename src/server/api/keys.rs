//! `/api/v1/keys`: a workspace's API keys. A new key is shown once; only its hash is stored.
//! Admins create and revoke; viewers may list (never the keys themselves).

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, rfc3339};
use crate::server::AppState;
use crate::server::auth::Admin;
use crate::server::error::{ApiError, ErrorBody, doc};
use crate::store::{ApiKeyInfo, Principal, Role};

const MAX_NAME_CHARS: usize = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
}

/// An API key as listed (never the key itself).
#[derive(Serialize, ToSchema)]
#[schema(as = ApiKey)]
struct KeyOut {
    id: String,
    name: String,
    role: Role,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    revoked_at: Option<String>,
}

/// A new API key: the key itself is shown this once.
#[derive(Serialize, ToSchema)]
#[schema(as = CreatedApiKey)]
struct CreatedKeyOut {
    #[serde(flatten)]
    info: KeyOut,
    /// `rk_` and 64 hex digits. Shown this once; only its hash is stored.
    key: String,
}

/// The workspace's keys, oldest first, revoked ones included.
#[derive(Serialize, ToSchema)]
#[schema(as = ApiKeyList)]
struct KeyListOut {
    data: Vec<KeyOut>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Workspace)]
struct WorkspaceOut {
    id: String,
    name: String,
}

/// The key in use: its workspace, the key and its role.
#[derive(Serialize, ToSchema)]
#[schema(as = Me)]
struct MeOut {
    workspace: WorkspaceOut,
    key: KeyOut,
    role: Role,
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ApiKeyInput)]
struct KeyInput {
    role: Role,
    /// At most 100 characters.
    name: Option<String>,
}

/// Create an API key.
#[utoipa::path(
    post,
    path = "/api/v1/keys",
    tag = "keys",
    security(("bearer" = ["admin"])),
    request_body = KeyInput,
    responses(
        (status = 201, description = "The new key, shown this once", body = CreatedKeyOut),
        doc::AdminKey, doc::JsonBody,
    ),
)]
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
    Ok((
        StatusCode::CREATED,
        Json(CreatedKeyOut {
            info: info.into(),
            key,
        }),
    )
        .into_response())
}

/// The key in use: its workspace, role and name (the dashboard signs in with this).
#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "keys",
    operation_id = "get_me",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The key in use", body = MeOut),
        doc::AnyKey,
    ),
)]
async fn me(State(state): State<AppState>, principal: Principal) -> Result<Response, ApiError> {
    let workspace = state.store.get_workspace(&principal.workspace_id).await?;
    let key = state
        .store
        .list_api_keys(&principal.workspace_id)
        .await?
        .into_iter()
        .find(|k| k.id == principal.key_id)
        .ok_or(ApiError::Unauthorized)?;
    Ok(Json(MeOut {
        workspace: WorkspaceOut {
            id: workspace.id,
            name: workspace.name,
        },
        key: KeyOut::from(key),
        role: principal.role,
    })
    .into_response())
}

/// The workspace's API keys.
#[utoipa::path(
    get,
    path = "/api/v1/keys",
    tag = "keys",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Oldest first, revoked ones included", body = KeyListOut),
        doc::AnyKey,
    ),
)]
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
    Ok(Json(KeyListOut { data }).into_response())
}

/// Revoke an API key (idempotent; the key stops working at once).
#[utoipa::path(
    delete,
    path = "/api/v1/keys/{id}",
    tag = "keys",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Revoked"),
        doc::AdminKey, doc::NotFound,
        (status = 409, description = "The workspace's last admin key (create another first)", body = ErrorBody),
    ),
)]
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
