//! `/api/v1/webhooks`: register, list, read and delete event endpoints, and read the deliveries
//! made to one. The signing secret is shown once, in the answer to the create.

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{Object, Schema, Type};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiQuery, rfc3339};
use crate::server::AppState;
use crate::server::auth::Admin;
use crate::server::error::{ApiError, doc};
use crate::store::{Attempt, Delivery, EVENT_TYPES, OutboxStatus, Principal, WebhookEndpoint};

pub const MAX_URL_CHARS: usize = 2048;
/// Largest page of deliveries (each carries its attempts).
pub const MAX_DELIVERIES_PAGE: i64 = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_endpoints, create_endpoint))
        .routes(routes!(get_endpoint, delete_endpoint))
        .routes(routes!(list_deliveries))
}

/// An event type: one of [`EVENT_TYPES`] (its schema is that list).
struct EventType;

impl utoipa::PartialSchema for EventType {
    fn schema() -> RefOr<Schema> {
        Object::builder()
            .schema_type(Type::String)
            .enum_values(Some(EVENT_TYPES))
            .into()
    }
}

impl ToSchema for EventType {}

/// An endpoint to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookEndpointInput)]
pub struct EndpointInput {
    /// Required: an absolute http(s) URL, at most 2,048 characters.
    pub url: Option<String>,
    /// Required: at least one event type (duplicates are dropped).
    #[schema(value_type = Option<Vec<EventType>>)]
    pub events: Option<Vec<String>>,
}

impl EndpointInput {
    /// The checked URL and event list (duplicates dropped, order kept).
    pub fn validate(self) -> Result<(String, Vec<String>), ApiError> {
        let url = self
            .url
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| ApiError::validation("url", "required"))?;
        if url.chars().count() > MAX_URL_CHARS {
            return Err(ApiError::validation(
                "url",
                format!("at most {MAX_URL_CHARS} characters"),
            ));
        }
        let parsed = url::Url::parse(&url)
            .map_err(|_| ApiError::validation("url", "must be an absolute http(s) URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(ApiError::validation(
                "url",
                "must be an absolute http(s) URL",
            ));
        }
        let events = self
            .events
            .ok_or_else(|| ApiError::validation("events", "required"))?;
        if events.is_empty() {
            return Err(ApiError::validation(
                "events",
                format!("at least one of {}", EVENT_TYPES.join(", ")),
            ));
        }
        let mut out: Vec<String> = Vec::with_capacity(events.len());
        for (i, event) in events.into_iter().enumerate() {
            if !EVENT_TYPES.contains(&event.as_str()) {
                return Err(ApiError::validation(
                    format!("events[{i}]"),
                    format!("unknown event type; one of {}", EVENT_TYPES.join(", ")),
                ));
            }
            if !out.contains(&event) {
                out.push(event);
            }
        }
        Ok((url, out))
    }
}

/// A registered event endpoint.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookEndpoint)]
struct EndpointOut {
    id: String,
    url: String,
    #[schema(value_type = Vec<EventType>)]
    events: Vec<String>,
    /// The signing secret (`whsec_` and 64 hex digits): only in the answer to the create.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
}

impl EndpointOut {
    fn new(e: WebhookEndpoint, with_secret: bool) -> Self {
        EndpointOut {
            id: e.id,
            url: e.url,
            events: e.events,
            secret: with_secret.then_some(e.secret),
            created_at: rfc3339(e.created_at_ms),
        }
    }
}

/// The workspace's endpoints, oldest first (never their secrets).
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookEndpointList)]
struct EndpointListOut {
    data: Vec<EndpointOut>,
}

/// One attempt to deliver.
#[derive(Serialize, ToSchema)]
#[schema(as = DeliveryAttempt)]
struct AttemptOut {
    /// 1 for the first.
    attempt: i64,
    #[schema(format = DateTime)]
    started_at: String,
    duration_ms: i64,
    /// The receiver's HTTP status, when it answered.
    status_code: Option<i64>,
    error: Option<String>,
}

impl From<Attempt> for AttemptOut {
    fn from(a: Attempt) -> Self {
        AttemptOut {
            attempt: a.attempt,
            started_at: rfc3339(a.started_at_ms),
            duration_ms: a.duration_ms,
            status_code: a.status_code,
            error: a.error,
        }
    }
}

/// One event's delivery to the endpoint, with its attempts.
#[derive(Serialize, ToSchema)]
#[schema(as = Delivery)]
struct DeliveryOut {
    id: String,
    /// The event's id (`evt_...`), the same on every retry.
    event_id: Option<String>,
    #[schema(value_type = Option<EventType>)]
    event_type: Option<String>,
    status: OutboxStatus,
    /// First to last.
    attempts: Vec<AttemptOut>,
    last_error: Option<String>,
    /// When the next attempt is due (pending deliveries only).
    #[schema(format = DateTime)]
    next_attempt_at: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    sent_at: Option<String>,
}

/// A page of deliveries, newest first.
#[derive(Serialize, ToSchema)]
#[schema(as = DeliveryList)]
struct DeliveryListOut {
    data: Vec<DeliveryOut>,
}

impl From<Delivery> for DeliveryOut {
    fn from(d: Delivery) -> Self {
        DeliveryOut {
            id: d.id,
            event_id: d.event_id,
            event_type: d.event_type,
            status: d.status,
            attempts: d.attempts.into_iter().map(AttemptOut::from).collect(),
            last_error: d.last_error,
            next_attempt_at: d.next_attempt_at_ms.map(rfc3339),
            created_at: rfc3339(d.created_at_ms),
            sent_at: d.sent_at_ms.map(rfc3339),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    /// 1 to 100; default 20.
    limit: Option<i64>,
    /// The id of the last delivery of the previous page.
    before: Option<String>,
}

/// Register an event endpoint.
///
/// The answer carries the endpoint's signing secret, this once.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks",
    tag = "webhooks",
    operation_id = "create_webhook",
    security(("bearer" = ["admin"])),
    request_body = EndpointInput,
    responses(
        (status = 201, description = "The endpoint, with its `secret`", body = EndpointOut),
        doc::AdminKey, doc::JsonBody,
    ),
)]
async fn create_endpoint(
    State(state): State<AppState>,
    Admin(principal): Admin,
    ApiJson(input): ApiJson<EndpointInput>,
) -> Result<Response, ApiError> {
    let (url, events) = input.validate()?;
    let e = state
        .store
        .create_webhook_endpoint(&principal.workspace_id, &url, &events)
        .await?;
    Ok((StatusCode::CREATED, Json(EndpointOut::new(e, true))).into_response())
}

/// The workspace's event endpoints.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks",
    tag = "webhooks",
    operation_id = "list_webhooks",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Oldest first, without secrets", body = EndpointListOut),
        doc::AnyKey,
    ),
)]
async fn list_endpoints(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let list = state
        .store
        .list_webhook_endpoints(&principal.workspace_id)
        .await?;
    let data: Vec<EndpointOut> = list
        .into_iter()
        .map(|e| EndpointOut::new(e, false))
        .collect();
    Ok(Json(EndpointListOut { data }).into_response())
}

/// One event endpoint (without its secret).
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}",
    tag = "webhooks",
    operation_id = "get_webhook",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "The endpoint", body = EndpointOut),
        doc::AnyKey, doc::NotFound,
    ),
)]
async fn get_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let e = state
        .store
        .get_webhook_endpoint(&principal.workspace_id, &id)
        .await?;
    Ok(Json(EndpointOut::new(e, false)).into_response())
}

/// Delete an event endpoint; its pending deliveries are cancelled.
#[utoipa::path(
    delete,
    path = "/api/v1/webhooks/{id}",
    tag = "webhooks",
    operation_id = "delete_webhook",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 204, description = "Deleted"),
        doc::AdminKey, doc::NotFound,
    ),
)]
async fn delete_endpoint(
    State(state): State<AppState>,
    Admin(principal): Admin,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    state
        .store
        .delete_webhook_endpoint(&principal.workspace_id, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The deliveries made to an event endpoint, each with its attempts.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}/deliveries",
    tag = "webhooks",
    operation_id = "list_webhook_deliveries",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The endpoint's id"), DeliveriesQuery),
    responses(
        (status = 200, description = "A page of deliveries, newest first", body = DeliveryListOut),
        doc::AnyKey, doc::NotFound, doc::Query, doc::Invalid,
    ),
)]
async fn list_deliveries(
    State(state): State<AppState>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
    ApiQuery(query): ApiQuery<DeliveriesQuery>,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=MAX_DELIVERIES_PAGE).contains(&limit) {
        return Err(ApiError::validation(
            "limit",
            format!("must be 1 to {MAX_DELIVERIES_PAGE}"),
        ));
    }
    // 404 for an endpoint that is not this workspace's; after that, NotFound is the cursor.
    state
        .store
        .get_webhook_endpoint(&principal.workspace_id, &id)
        .await?;
    let list = state
        .store
        .list_deliveries(&principal.workspace_id, &id, limit, query.before.as_deref())
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound => {
                ApiError::validation("before", "not a delivery of this endpoint")
            }
            other => other.into(),
        })?;
    let data: Vec<DeliveryOut> = list.into_iter().map(DeliveryOut::from).collect();
    Ok(Json(DeliveryListOut { data }).into_response())
}
