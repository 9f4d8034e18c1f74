//! The recruiter API's one error type, and the single place that maps errors to HTTP.
//!
//! Every error body has the same shape: `{"error": {"code": "...", "message": "...", "field": "..."}}`
//! (`field` only when one input is at fault). 5xx details are logged, never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// The body of every error answer of the recruiter API.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// Human-readable; for 5xx always `internal server error` (details are logged, never sent).
    pub message: String,
    /// The input at fault, as a path (`intro_message`, `questions[2].text`, `limit`); absent
    /// when no single input is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// What kind of error: `bad_request` (400, 413, 415), `unauthorized` (401), `forbidden` (403),
/// `not_found` (404), `conflict` (409), `invalid` (422), `internal` (500).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 401: no or unknown API key.
    Unauthorized,
    /// 403: a viewer key on a route that writes.
    Forbidden,
    /// 404: no such resource in this workspace.
    NotFound,
    /// 422: a well-formed request whose content breaks a rule (`field` names it).
    Invalid,
    /// 400 (unreadable body or query string), 413 (body too large) or 415 (not JSON).
    BadRequest,
    /// 409: a uniqueness or state rule (e.g. a phone number already in use).
    Conflict,
    /// 500.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or unknown API key.
    #[error("missing or invalid API key")]
    Unauthorized,
    /// The key's role may not do this.
    #[error("this API key is read-only")]
    Forbidden,
    #[error("not found")]
    NotFound,
    /// A well-formed request whose content breaks a rule.
    #[error("{field}: {message}")]
    Validation { field: String, message: String },
    /// The request could not be read (malformed JSON, wrong content type, bad query string).
    #[error("{message}")]
    BadRequest {
        field: Option<String>,
        message: String,
        status: StatusCode,
    },
    /// A uniqueness or state rule (e.g. a phone number already in use).
    #[error("{field}: {message}")]
    Conflict { field: String, message: String },
    /// Anything else: logged with details, answered with a bare 500.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            field: None,
            message: message.into(),
            status: StatusCode::BAD_REQUEST,
        }
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        ApiError::Internal(detail.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest { status, .. } => *status,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> ErrorCode {
        match self {
            ApiError::Unauthorized => ErrorCode::Unauthorized,
            ApiError::Forbidden => ErrorCode::Forbidden,
            ApiError::NotFound => ErrorCode::NotFound,
            ApiError::Validation { .. } => ErrorCode::Invalid,
            ApiError::BadRequest { .. } => ErrorCode::BadRequest,
            ApiError::Conflict { .. } => ErrorCode::Conflict,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::Conflict { field, message } => ApiError::Conflict {
                field: field.to_string(),
                message,
            },
            StoreError::Invalid { field, message } => ApiError::Validation {
                field: field.to_string(),
                message,
            },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::Internal(format!("i/o: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (field, message) = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error in the recruiter API");
                (None, "internal server error".to_string())
            }
            ApiError::Validation { field, message } | ApiError::Conflict { field, message } => {
                (Some(field.clone()), message.clone())
            }
            ApiError::BadRequest { field, message, .. } => (field.clone(), message.clone()),
            other => (None, other.to_string()),
        };
        let error = ErrorDetail {
            code: self.code(),
            message,
            field,
        };
        (status, Json(ErrorBody { error })).into_response()
    }
}

/// The error answers in the OpenAPI document: each is a reusable response
/// (`#/components/responses/NotFound`, ...) with the [`ErrorBody`] schema, and handlers list
/// the groups that apply to them in `#[utoipa::path(responses(...))]`, e.g.
/// `responses((status = 200, body = X), doc::AdminKey, doc::NotFound, doc::JsonBody)`.
pub mod doc {
    use std::collections::BTreeMap;

    use utoipa::ToSchema;
    use utoipa::openapi::response::Response;
    use utoipa::openapi::{Content, Ref, RefOr};

    use super::ErrorBody;

    /// Status, component name and description of every error response.
    const RESPONSES: &[(u16, &str, &str)] = &[
        (
            400,
            "BadRequest",
            "The request could not be read: malformed JSON, trailing characters after it, or a \
             bad query string (an unknown parameter or an unknown value of an enumeration).",
        ),
        (
            401,
            "Unauthorized",
            "No API key, or an unknown or revoked one.",
        ),
        (
            403,
            "Forbidden",
            "The key is a viewer key: this operation needs an admin key.",
        ),
        (
            404,
            "NotFound",
            "No such resource in this workspace (another workspace's ids answer 404 too).",
        ),
        (
            409,
            "Conflict",
            "A uniqueness or state rule: `error.field` names the input (e.g. a phone number \
             already in use).",
        ),
        (
            415,
            "UnsupportedMediaType",
            "The body is not `application/json`.",
        ),
        (
            422,
            "Invalid",
            "A value breaks a rule or has the wrong type: `error.field` names it as a path \
             (`intro_message`, `questions[2].text`, `limit`).",
        ),
        (
            500,
            "Internal",
            "An internal error; the details are logged, never sent.",
        ),
    ];

    /// Every error response, for `components.responses`.
    pub fn components() -> impl Iterator<Item = (String, RefOr<Response>)> {
        RESPONSES.iter().map(|(_, name, description)| {
            let content = Content::new(Some(Ref::from_schema_name(ErrorBody::name())));
            let response = Response::builder()
                .description(*description)
                .content("application/json", content)
                .build();
            (name.to_string(), RefOr::T(response))
        })
    }

    fn refs(statuses: &[u16]) -> BTreeMap<String, RefOr<Response>> {
        statuses
            .iter()
            .map(|status| {
                let (_, name, _) = RESPONSES
                    .iter()
                    .find(|(s, _, _)| s == status)
                    .expect("every group's statuses are in RESPONSES");
                (
                    status.to_string(),
                    RefOr::Ref(Ref::from_response_name(*name)),
                )
            })
            .collect()
    }

    macro_rules! group {
        ($(#[$doc:meta])* $name:ident: $($status:literal),+) => {
            $(#[$doc])*
            pub struct $name;

            impl utoipa::IntoResponses for $name {
                fn responses() -> BTreeMap<String, RefOr<Response>> {
                    refs(&[$($status),+])
                }
            }
        };
    }

    group!(
        /// A route any key may use (admin or viewer): 401, 500.
        AnyKey: 401, 500
    );
    group!(
        /// A route that needs an admin key: 401, 403, 500.
        AdminKey: 401, 403, 500
    );
    group!(
        /// A route about one resource of the workspace: 404.
        NotFound: 404
    );
    group!(
        /// A route with a JSON body: 400, 415, 422.
        JsonBody: 400, 415, 422
    );
    group!(
        /// A route with a query string: 400.
        Query: 400
    );
    group!(
        /// A route that checks values beyond their types (e.g. `limit`): 422.
        Invalid: 422
    );
    group!(
        /// A route with a uniqueness or state rule: 409.
        Conflict: 409
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_are_not_sent() {
        let response = ApiError::internal("password=hunter2").into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let conflict: ApiError = StoreError::Conflict {
            field: "phone_number",
            message: "taken".into(),
        }
        .into();
        assert_eq!(conflict.status(), StatusCode::CONFLICT);
    }
}
