//! The recruiter API's one error type, and the single place that maps errors to HTTP.
//!
//! Every error body has the same shape: `{"error": {"code": "...", "message": "...", "field": "..."}}`
//! (`field` only when one input is at fault). 5xx details are logged, never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

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

    fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound => "not_found",
            ApiError::Validation { .. } => "invalid",
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::Conflict { .. } => "conflict",
            ApiError::Internal(_) => "internal",
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
        let mut error = json!({ "code": self.code(), "message": message });
        if let Some(field) = field {
            error["field"] = json!(field);
        }
        (status, Json(json!({ "error": error }))).into_response()
    }
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
