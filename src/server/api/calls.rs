//! `/api/v1/calls`: the call list, one call with everything it produced, and its recording.

use std::path::{Component, Path};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tower_http::services::ServeFile;

use super::{ApiQuery, page, rfc3339};
use crate::model::{AnswerRecord, DisclosureRecord, TranscriptLine, TurnLatency};
use crate::server::AppState;
use crate::server::error::ApiError;
use crate::store::{CallDetail, CallStatus, CallSummary, Principal};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/calls", get(list_calls))
        .route("/api/v1/calls/{id}", get(get_call))
        .route("/api/v1/calls/{id}/recording", get(get_recording))
}

#[derive(Serialize)]
pub(super) struct CallSummaryOut {
    id: String,
    carrier: String,
    receptionist_id: String,
    candidate_id: Option<String>,
    candidate_name: Option<String>,
    from_number: String,
    to_number: String,
    forwarded_from: Option<String>,
    status: CallStatus,
    accepted_at: String,
    started_at: Option<String>,
    ended_at: Option<String>,
    duration_ms: Option<i64>,
    end_reason: Option<crate::model::EndReason>,
    has_recording: bool,
    /// Where the two-channel WAV streams from (range requests supported), when there is one.
    recording_url: Option<String>,
}

impl CallSummaryOut {
    /// `has_recording` from the stored path; the detail view also checks the file.
    pub(super) fn new(c: CallSummary) -> Self {
        CallSummaryOut {
            has_recording: c.recording_path.is_some(),
            recording_url: c
                .recording_path
                .as_ref()
                .map(|_| format!("/api/v1/calls/{}/recording", c.id)),
            id: c.id,
            carrier: c.carrier,
            receptionist_id: c.receptionist_id,
            candidate_id: c.candidate_id,
            candidate_name: c.candidate_name,
            from_number: c.from_number,
            to_number: c.to_number,
            forwarded_from: c.forwarded_from,
            status: c.status,
            accepted_at: rfc3339(c.accepted_at_ms),
            started_at: c.started_at_ms.map(rfc3339),
            ended_at: c.ended_at_ms.map(rfc3339),
            duration_ms: c.duration_ms,
            end_reason: c.end_reason,
        }
    }
}

#[derive(Serialize)]
pub(super) struct CallDetailOut {
    #[serde(flatten)]
    summary: CallSummaryOut,
    name: Option<String>,
    location: Option<String>,
    transcript: Vec<TranscriptLine>,
    answers: Vec<AnswerRecord>,
    disclosures: Vec<DisclosureRecord>,
    latencies: Vec<TurnLatency>,
}

#[derive(Deserialize)]
struct PageQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn list_calls(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let (limit, offset) = page(query.limit, query.offset)?;
    let calls = state
        .store
        .list_calls(&principal.workspace_id, limit, offset)
        .await?;
    let data: Vec<CallSummaryOut> = calls.into_iter().map(CallSummaryOut::new).collect();
    Ok(Json(serde_json::json!({ "data": data, "limit": limit, "offset": offset })).into_response())
}

async fn get_call(
    State(state): State<AppState>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let detail = state.store.get_call(&principal.workspace_id, &id).await?;
    Ok(Json(CallDetailOut::new(&state, detail).await).into_response())
}

impl CallDetailOut {
    /// A call with everything it produced; `has_recording` checks the file itself.
    pub(super) async fn new(state: &AppState, detail: CallDetail) -> Self {
        let CallDetail {
            summary,
            transcript,
            name,
            location,
            answers,
            disclosures,
            latencies,
        } = detail;
        let has_file = match &summary.recording_path {
            Some(path) => recording_file(state, path).await.is_some(),
            None => false,
        };
        let mut summary = CallSummaryOut::new(summary);
        summary.has_recording = has_file;
        if !has_file {
            summary.recording_url = None;
        }
        CallDetailOut {
            summary,
            name,
            location,
            transcript,
            answers,
            disclosures,
            latencies,
        }
    }
}

/// The recording's full path, if `relative` stays inside the data directory and the file exists.
async fn recording_file(state: &AppState, relative: &str) -> Option<std::path::PathBuf> {
    let rel = Path::new(relative);
    if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        tracing::warn!("refusing a recording path outside the data directory");
        return None;
    }
    let root = tokio::fs::canonicalize(&state.config.data_dir).await.ok()?;
    let full = tokio::fs::canonicalize(root.join(rel)).await.ok()?;
    // A symlink must not lead out of the data directory either.
    if !full.starts_with(&root) {
        tracing::warn!("refusing a recording path that leaves the data directory");
        return None;
    }
    let meta = tokio::fs::metadata(&full).await.ok()?;
    meta.is_file().then_some(full)
}

/// The call's WAV file, with HTTP range requests (`Accept-Ranges: bytes`; one range per request,
/// `206` with `Content-Range`, `416` with `Content-Range: bytes */LEN` when unsatisfiable),
/// `HEAD`, `Last-Modified` and `If-Modified-Since` / `If-Unmodified-Since`, all by tower-http's
/// `ServeFile` once the path is known to stay inside the data directory. `If-Range` is ignored
/// (tower-http does not implement it): a recording only grows, and not after its call ended.
async fn get_recording(
    State(state): State<AppState>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let call = state.store.get_call(&principal.workspace_id, &id).await?;
    let relative = call.summary.recording_path.ok_or(ApiError::NotFound)?;
    let full = recording_file(&state, &relative)
        .await
        .ok_or(ApiError::NotFound)?;
    let mut request = Request::builder().method(method);
    for name in [
        header::RANGE,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
    ] {
        if let Some(value) = headers.get(&name) {
            request = request.header(name, value);
        }
    }
    let request = request.body(()).map_err(ApiError::internal)?;
    let response = ServeFile::new(&full).try_call(request).await?;
    let (mut parts, body) = response.into_parts();
    if parts.status == StatusCode::NOT_FOUND {
        // Removed since the check above.
        return Err(ApiError::NotFound);
    }
    if parts.status.is_success() {
        parts
            .headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
        let disposition = format!("inline; filename=\"call-{}.wav\"", call.summary.id);
        parts.headers.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&disposition).map_err(ApiError::internal)?,
        );
    } else {
        // 304, 412, 416: no audio in the body.
        parts.headers.remove(header::CONTENT_TYPE);
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}
