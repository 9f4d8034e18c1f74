//! The recruiter API (`/api/v1`): receptionists, calls (with recordings), candidates,
//! interviewers, keys, analytics, webhook endpoints and the server's voices.
//!
//! Every route needs `Authorization: Bearer <key>`; writes need an admin key. A workspace only
//! ever sees its own rows: another workspace's id answers 404. Errors share one JSON shape
//! (server/error.rs), including malformed JSON and bad query strings.
//!
//! `PUT /api/v1/receptionists/{id}` is a merge: fields absent (or `null`) keep their values, the
//! result goes through the same validation as a create. Read-only fields (`id`, `workspace_id`,
//! `created_at`, `updated_at`) are accepted and ignored so a client can send back what it got;
//! any other unknown field is an error. Timestamps are RFC 3339 (UTC); durations and transcript
//! times are milliseconds.
//!
//! One module per resource, each owning its `router()` and its request and response types. A
//! handler is registered with `.routes(routes!(handler))`, which serves it and adds its
//! `#[utoipa::path]` operation to the OpenAPI document (server/openapi.rs); a new module is one
//! `.merge(module::router())` in [`routes`].

pub mod analytics;
pub mod calls;
pub mod candidates;
pub mod interviewers;
pub mod keys;
pub mod receptionists;
pub mod voices;
pub mod web_calls;
pub mod webhooks;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;

use super::AppState;
use super::error::ApiError;

pub use receptionists::{
    MAX_CUSTOM_CONTEXT_CHARS, MAX_INTRO_CHARS, MAX_QUESTIONS, ReceptionistInput, validate_settings,
};

/// Largest page a list route returns.
pub const MAX_PAGE: i64 = 500;

/// The recruiter API alone (the whole server is `server::router`).
pub fn router() -> Router<AppState> {
    routes().into()
}

/// The recruiter API's routes with their OpenAPI operations.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(receptionists::router())
        .merge(calls::router())
        .merge(candidates::router())
        .merge(interviewers::router())
        .merge(keys::router())
        .merge(web_calls::router())
        .merge(analytics::router())
        .merge(webhooks::router())
        .merge(voices::router())
}

// ---------------------------------------------------------------------------------------------
// Extractors whose rejections use the API's error shape
// ---------------------------------------------------------------------------------------------

/// A JSON body. Syntax errors answer 400; a wrong type or unknown enum value answers 422 naming
/// the field's path (e.g. `questions[2].kind`); a non-JSON content type answers 415.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (is_json, bytes) = read_body(req, state).await?;
        parse_json(is_json, &bytes).map(ApiJson)
    }
}

/// A JSON body that may be absent: an empty body is `T::default()`; otherwise as [`ApiJson`].
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (is_json, bytes) = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        parse_json(is_json, &bytes).map(OptionalJson)
    }
}

/// The body, and whether its content type is JSON.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<(bool, Bytes), ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        });
    let bytes = Bytes::from_request(req, state)
        .await
        .map_err(|e| ApiError::BadRequest {
            field: None,
            message: e.body_text(),
            status: e.status(),
        })?;
    Ok((is_json, bytes))
}

/// Syntax errors answer 400; a wrong type or unknown field answers 422 naming the field's path;
/// a non-JSON content type answers 415.
fn parse_json<T: DeserializeOwned>(is_json: bool, bytes: &[u8]) -> Result<T, ApiError> {
    if !is_json {
        return Err(ApiError::BadRequest {
            field: None,
            message: "expected a body with content type application/json".into(),
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(&mut de) {
        Ok(value) => {
            // Trailing characters after the document.
            de.end()
                .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
            Ok(value)
        }
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            match inner.classify() {
                serde_json::error::Category::Data => Err(ApiError::Validation {
                    field: if path == "." { "body".into() } else { path },
                    message: inner.to_string(),
                }),
                _ => Err(ApiError::bad_request(format!("malformed JSON: {inner}"))),
            }
        }
    }
}

/// A query string; a bad one answers 400 in the API's error shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e: QueryRejection| ApiError::bad_request(e.body_text()))
    }
}

/// `limit` and `offset` of a list, checked (default 50, at most [`MAX_PAGE`]).
pub fn page(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::validation(
            "limit",
            format!("must be 1 to {MAX_PAGE}"),
        ));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::validation("offset", "must be 0 or more"));
    }
    Ok((limit, offset))
}

pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_500), "1970-01-01T00:00:01.5Z");
    }
}
