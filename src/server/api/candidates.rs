//! `/api/v1/candidates`: the candidate pipeline and one candidate with its calls.

use axum::extract::{Path as UrlPath, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::calls::CallSummaryOut;
use super::{ApiQuery, page, rfc3339};
use crate::model::CandidateStatus;
use crate::server::AppState;
use crate::server::error::ApiError;
use crate::store::{CandidateDetail, CandidateFilter, CandidateSummary, Principal};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/candidates", get(list_candidates))
        .route("/api/v1/candidates/{id}", get(get_candidate))
}

#[derive(Serialize)]
struct CandidateOut {
    id: String,
    receptionist_id: String,
    receptionist_name: String,
    phone_number: Option<String>,
    name: Option<String>,
    location: Option<String>,
    email: Option<String>,
    status: CandidateStatus,
    created_at: String,
    updated_at: String,
    last_call_at: String,
    last_call_duration_ms: Option<i64>,
    call_count: i64,
    evaluation_count: i64,
    has_recording: bool,
}

impl CandidateOut {
    fn new(s: CandidateSummary) -> Self {
        let c = s.candidate;
        CandidateOut {
            id: c.id,
            receptionist_id: c.receptionist_id,
            receptionist_name: s.receptionist_name,
            phone_number: c.phone_number,
            name: c.name,
            location: c.location,
            email: c.email,
            status: c.status,
            created_at: rfc3339(c.created_at_ms),
            updated_at: rfc3339(c.updated_at_ms),
            last_call_at: rfc3339(c.last_call_at_ms),
            last_call_duration_ms: s.last_call_duration_ms,
            call_count: s.call_count,
            evaluation_count: s.evaluation_count,
            has_recording: s.has_recording,
        }
    }
}

#[derive(Deserialize)]
struct CandidateListQuery {
    status: Option<CandidateStatus>,
    receptionist_id: Option<String>,
    q: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn list_candidates(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<CandidateListQuery>,
) -> Result<Response, ApiError> {
    let (limit, offset) = page(query.limit, query.offset)?;
    let filter = CandidateFilter {
        status: query.status,
        receptionist_id: query.receptionist_id.filter(|r| !r.is_empty()),
        q: query.q,
        limit: Some(limit),
        offset: Some(offset),
    };
    let list = state
        .store
        .list_candidates(&principal.workspace_id, &filter)
        .await?;
    let data: Vec<CandidateOut> = list.into_iter().map(CandidateOut::new).collect();
    Ok(Json(serde_json::json!({ "data": data, "limit": limit, "offset": offset })).into_response())
}

async fn get_candidate(
    State(state): State<AppState>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let CandidateDetail { summary, calls } = state
        .store
        .get_candidate(&principal.workspace_id, &id)
        .await?;
    #[derive(Serialize)]
    struct Out {
        #[serde(flatten)]
        candidate: CandidateOut,
        calls: Vec<CallSummaryOut>,
    }
    Ok(Json(Out {
        candidate: CandidateOut::new(summary),
        calls: calls.into_iter().map(CallSummaryOut::new).collect(),
    })
    .into_response())
}
