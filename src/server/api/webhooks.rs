//! `/api/v1/webhooks`: register, list, read and delete event endpoints, and read the deliveries
//! made to one. The signing secret is shown once, in the answer to the create.

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiJson, ApiQuery, rfc3339};
use crate::server::AppState;
use crate::server::auth::Admin;
use crate::server::error::ApiError;
use crate::store::{Attempt, Delivery, EVENT_TYPES, OutboxStatus, Principal, WebhookEndpoint};

pub const MAX_URL_CHARS: usize = 2048;
/// Largest page of deliveries (each carries its attempts).
pub const MAX_DELIVERIES_PAGE: i64 = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/webhooks",
            get(list_endpoints).post(create_endpoint),
        )
        .route(
            "/api/v1/webhooks/{id}",
            get(get_endpoint).delete(delete_endpoint),
        )
        .route("/api/v1/webhooks/{id}/deliveries", get(list_deliveries))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointInput {
    pub url: Option<String>,
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

#[derive(Serialize)]
struct EndpointOut<'a> {
    id: &'a str,
    url: &'a str,
    events: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
    created_at: String,
}

impl<'a> EndpointOut<'a> {
    fn new(e: &'a WebhookEndpoint, with_secret: bool) -> Self {
        EndpointOut {
            id: &e.id,
            url: &e.url,
            events: &e.events,
            secret: with_secret.then_some(e.secret.as_str()),
            created_at: rfc3339(e.created_at_ms),
        }
    }
}

#[derive(Serialize)]
struct AttemptOut {
    attempt: i64,
    started_at: String,
    duration_ms: i64,
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

#[derive(Serialize)]
struct DeliveryOut {
    id: String,
    event_id: Option<String>,
    event_type: Option<String>,
    status: OutboxStatus,
    /// First to last.
    attempts: Vec<AttemptOut>,
    last_error: Option<String>,
    next_attempt_at: Option<String>,
    created_at: String,
    sent_at: Option<String>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    limit: Option<i64>,
    /// The id of the last delivery of the previous page.
    before: Option<String>,
}

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
    Ok((StatusCode::CREATED, Json(EndpointOut::new(&e, true))).into_response())
}

async fn list_endpoints(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let list = state
        .store
        .list_webhook_endpoints(&principal.workspace_id)
        .await?;
    let data: Vec<EndpointOut> = list.iter().map(|e| EndpointOut::new(e, false)).collect();
    Ok(Json(serde_json::json!({ "data": data })).into_response())
}

async fn get_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let e = state
        .store
        .get_webhook_endpoint(&principal.workspace_id, &id)
        .await?;
    Ok(Json(EndpointOut::new(&e, false)).into_response())
}

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
    Ok(Json(serde_json::json!({ "data": data })).into_response())
}
