//! `/api/v1/calls`: the call list, one call with everything it produced, and its recording.

use std::path::{Component, Path};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tower_http::services::ServeFile;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiQuery, page, rfc3339};
use crate::model::{AnswerRecord, DisclosureRecord, TranscriptLine, TurnLatency};
use crate::server::AppState;
use crate::server::error::{ApiError, ErrorBody, doc};
use crate::store::{CallDetail, CallStatus, CallSummary, Principal};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_calls))
        .routes(routes!(get_call))
        .routes(routes!(get_recording))
}

/// A call as listed.
#[derive(Serialize, ToSchema)]
#[schema(as = CallSummary)]
pub(super) struct CallSummaryOut {
    id: String,
    /// `twilio`, `telnyx`, `plivo`, `vonage`, `signalwire`, `exotel`, or `web` (a test call).
    carrier: String,
    /// The carrier's own id for the call (Twilio's CallSid, Telnyx's call control id, Plivo's
    /// CallUUID, Vonage's uuid, SignalWire's CallSid, Exotel's CallSid), to find it in the
    /// carrier's console.
    carrier_call_id: String,
    receptionist_id: String,
    /// The caller's candidate, once the media stream started.
    candidate_id: Option<String>,
    candidate_name: Option<String>,
    from_number: String,
    to_number: String,
    /// The number a phone menu forwarded the call from, when the carrier said.
    forwarded_from: Option<String>,
    status: CallStatus,
    /// When the carrier's webhook was answered.
    #[schema(format = DateTime)]
    accepted_at: String,
    /// When the media stream started.
    #[schema(format = DateTime)]
    started_at: Option<String>,
    #[schema(format = DateTime)]
    ended_at: Option<String>,
    duration_ms: Option<i64>,
    end_reason: Option<crate::model::EndReason>,
    has_recording: bool,
    /// Where the two-channel WAV streams from (range requests supported), when there is one.
    recording_url: Option<String>,
    /// Part of the call is missing from its recording: the recordings disk was full or failed (the
    /// rest of the call is not recorded), or could not keep up (silence in place of what was
    /// missed).
    recording_incomplete: bool,
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
            carrier_call_id: c.carrier_call_id,
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
            recording_incomplete: c.recording_incomplete,
        }
    }
}

/// A call with everything it produced.
#[derive(Serialize, ToSchema)]
#[schema(as = Call)]
pub(super) struct CallDetailOut {
    #[serde(flatten)]
    summary: CallSummaryOut,
    /// The latest name the caller gave on this call.
    name: Option<String>,
    location: Option<String>,
    transcript: Vec<TranscriptLine>,
    /// The latest answer per question, by question index.
    answers: Vec<AnswerRecord>,
    disclosures: Vec<DisclosureRecord>,
    latencies: Vec<TurnLatency>,
    /// The caller's language (ISO 639-1) when the receptionist is multilingual and the
    /// recogniser named one; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    caller_language: Option<String>,
    /// The language the agent spoke: `en`, or the caller's when it answered in it.
    agent_language: String,
}

/// A page of calls, newest first.
#[derive(Serialize, ToSchema)]
#[schema(as = CallList)]
struct CallListOut {
    data: Vec<CallSummaryOut>,
    limit: i64,
    offset: i64,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// 1 to 500; default 50.
    limit: Option<i64>,
    /// Default 0.
    offset: Option<i64>,
    /// Only the call with this carrier call id (as the carrier's console shows it).
    carrier_call_id: Option<String>,
}

/// The workspace's calls.
#[utoipa::path(
    get,
    path = "/api/v1/calls",
    tag = "calls",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of calls, newest first", body = CallListOut),
        doc::AnyKey, doc::Query, doc::Invalid,
    ),
)]
async fn list_calls(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let (limit, offset) = page(query.limit, query.offset)?;
    let calls = state
        .store
        .list_calls(
            &principal.workspace_id,
            query.carrier_call_id.as_deref(),
            limit,
            offset,
        )
        .await?;
    let data: Vec<CallSummaryOut> = calls.into_iter().map(CallSummaryOut::new).collect();
    Ok(Json(CallListOut {
        data,
        limit,
        offset,
    })
    .into_response())
}

/// One call, with its transcript, answers, disclosures and latencies.
#[utoipa::path(
    get,
    path = "/api/v1/calls/{id}",
    tag = "calls",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The call's id")),
    responses(
        (status = 200, description = "The call", body = CallDetailOut),
        doc::AnyKey, doc::NotFound,
    ),
)]
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
            caller_language,
            agent_language,
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
            caller_language,
            agent_language,
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

/// The call's recording: a two-channel WAV (left the caller, right the agent).
///
/// With HTTP range requests (`Accept-Ranges: bytes`; one range per request, `206` with
/// `Content-Range`, `416` with `Content-Range: bytes */LEN` when unsatisfiable), `HEAD`,
/// `Last-Modified` and `If-Modified-Since` / `If-Unmodified-Since`. `If-Range` is ignored: a
/// recording only grows, and not after its call ended.
// All by tower-http's `ServeFile`, once the path is known to stay inside the data directory
// (tower-http does not implement `If-Range`).
#[utoipa::path(
    get,
    path = "/api/v1/calls/{id}/recording",
    tag = "calls",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The call's id"),
        ("Range" = Option<String>, Header, description = "One byte range, e.g. `bytes=0-1023`"),
        ("If-Modified-Since" = Option<String>, Header, description = "An HTTP date"),
        ("If-Unmodified-Since" = Option<String>, Header, description = "An HTTP date"),
    ),
    responses(
        (status = 200, description = "The whole recording (`Accept-Ranges: bytes`, `Last-Modified`, `Content-Disposition: inline`)", content_type = "audio/wav"),
        (status = 206, description = "The range asked for, with `Content-Range`", content_type = "audio/wav"),
        (status = 304, description = "Not modified since `If-Modified-Since`"),
        (status = 412, description = "Modified since `If-Unmodified-Since`"),
        (status = 416, description = "The range cannot be satisfied (`Content-Range: bytes */LEN`)"),
        doc::AnyKey,
        (status = 404, description = "No such call in this workspace, or it has no recording (yet)", body = ErrorBody),
    ),
)]
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
