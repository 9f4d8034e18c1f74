//! `/api/v1/candidates`: the pipeline (tabs, search, cursor pages), one candidate with all it has
//! (calls with transcripts and recordings, evaluations, notes, history, texts), and the
//! recruiter's actions: approve, reject, notes, ingest, evaluate, and correcting details.
//!
//! Tabs: `all`; `evaluated` (status evaluated, whatever the decision); `needs_review`, `approved`,
//! `rejected` (the decision). Pages are newest call first; `next_cursor` continues a list and is
//! `null` on the last page.

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::calls::CallDetailOut;
use super::{ApiJson, ApiQuery, MAX_PAGE, OptionalJson, rfc3339};
use crate::model::{CandidateStatus, Review};
use crate::server::AppState;
use crate::server::auth::Admin;
use crate::server::error::ApiError;
use crate::store::pipeline::{EvaluationRecord, HistoryEntry, IngestOutcome, SmsRecord};
use crate::store::{CandidateDetail, CandidateFilter, CandidateSummary, Principal, Tab};

const MAX_NOTE_CHARS: usize = 5_000;
const MAX_REASON_CHARS: usize = 1_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/candidates", get(list_candidates))
        .route(
            "/api/v1/candidates/{id}",
            get(get_candidate).patch(update_candidate),
        )
        .route("/api/v1/candidates/{id}/approve", post(approve))
        .route("/api/v1/candidates/{id}/reject", post(reject))
        .route("/api/v1/candidates/{id}/notes", post(add_note))
        .route("/api/v1/candidates/{id}/ingest", post(ingest))
        .route("/api/v1/candidates/{id}/evaluations", get(list_evaluations))
        .route("/api/v1/candidates/{id}/evaluate", post(evaluate))
}

#[derive(Serialize)]
pub(super) struct IngestedOut {
    interviewer_id: String,
    interviewer_name: Option<String>,
    at: String,
}

#[derive(Serialize)]
pub(super) struct CandidateOut {
    id: String,
    receptionist_id: String,
    receptionist_name: String,
    phone_number: Option<String>,
    name: Option<String>,
    location: Option<String>,
    email: Option<String>,
    status: CandidateStatus,
    review: Option<Review>,
    /// `system` (routing) or `key:<id>`.
    review_by: Option<String>,
    reviewed_at: Option<String>,
    ingested: Option<IngestedOut>,
    confirmed_at: Option<String>,
    created_at: String,
    updated_at: String,
    /// When the candidate last called.
    last_call_at: String,
    last_call_duration_ms: Option<i64>,
    call_count: i64,
    evaluation_count: i64,
    latest_score: Option<f64>,
    has_recording: bool,
}

impl CandidateOut {
    pub(super) fn new(s: CandidateSummary) -> Self {
        let c = s.candidate;
        let ingested = match (c.ingested_interviewer_id, c.ingested_at_ms) {
            (Some(interviewer_id), Some(at)) => Some(IngestedOut {
                interviewer_id,
                interviewer_name: s.ingested_interviewer_name,
                at: rfc3339(at),
            }),
            _ => None,
        };
        CandidateOut {
            id: c.id,
            receptionist_id: c.receptionist_id,
            receptionist_name: s.receptionist_name,
            phone_number: c.phone_number,
            name: c.name,
            location: c.location,
            email: c.email,
            status: c.status,
            review: c.review,
            review_by: c.review_by,
            reviewed_at: c.reviewed_at_ms.map(rfc3339),
            ingested,
            confirmed_at: c.confirmed_at_ms.map(rfc3339),
            created_at: rfc3339(c.created_at_ms),
            updated_at: rfc3339(c.updated_at_ms),
            last_call_at: rfc3339(c.last_call_at_ms),
            last_call_duration_ms: s.last_call_duration_ms,
            call_count: s.call_count,
            evaluation_count: s.evaluation_count,
            latest_score: c.latest_score,
            has_recording: s.has_recording,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CandidateListQuery {
    tab: Option<Tab>,
    status: Option<CandidateStatus>,
    receptionist_id: Option<String>,
    q: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

fn encode_cursor(last_call_at: i64, id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{last_call_at}:{id}"))
}

fn decode_cursor(cursor: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::validation("cursor", "not a cursor this API returned");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (at, id) = text.split_once(':').ok_or_else(bad)?;
    let at = at.parse::<i64>().map_err(|_| bad())?;
    if id.is_empty() || id.len() > 64 {
        return Err(bad());
    }
    Ok((at, id.to_string()))
}

async fn list_candidates(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<CandidateListQuery>,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::validation(
            "limit",
            format!("must be 1 to {MAX_PAGE}"),
        ));
    }
    if query.q.as_ref().is_some_and(|q| q.chars().count() > 200) {
        return Err(ApiError::validation("q", "at most 200 characters"));
    }
    let after = query
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(decode_cursor)
        .transpose()?;
    let filter = CandidateFilter {
        tab: query.tab.unwrap_or_default(),
        after,
        status: query.status,
        receptionist_id: query.receptionist_id.filter(|r| !r.is_empty()),
        q: query.q,
        limit: Some(limit + 1),
        offset: None,
    };
    let mut list = state
        .store
        .list_candidates(&principal.workspace_id, &filter)
        .await?;
    let more = list.len() as i64 > limit;
    list.truncate(limit as usize);
    let next_cursor = list
        .last()
        .filter(|_| more)
        .map(|s| encode_cursor(s.candidate.last_call_at_ms, &s.candidate.id));
    let counts = state
        .store
        .count_candidate_tabs(&principal.workspace_id, &filter)
        .await?;
    let data: Vec<CandidateOut> = list.into_iter().map(CandidateOut::new).collect();
    Ok(Json(serde_json::json!({
        "data": data,
        "next_cursor": next_cursor,
        "limit": limit,
        "counts": counts,
    }))
    .into_response())
}

#[derive(Serialize)]
struct EvaluationOut {
    id: String,
    call_id: Option<String>,
    receptionist_id: String,
    score: f64,
    dealbreaker_failed: bool,
    summary: String,
    questions: serde_json::Value,
    evaluator: String,
    created_at: String,
}

impl From<EvaluationRecord> for EvaluationOut {
    fn from(e: EvaluationRecord) -> Self {
        EvaluationOut {
            id: e.id,
            call_id: e.call_id,
            receptionist_id: e.receptionist_id,
            score: e.score,
            dealbreaker_failed: e.dealbreaker_failed,
            summary: e.summary,
            questions: e.questions,
            evaluator: e.evaluator,
            created_at: rfc3339(e.created_at_ms),
        }
    }
}

#[derive(Serialize)]
struct HistoryOut {
    id: String,
    kind: String,
    actor: String,
    detail: serde_json::Value,
    created_at: String,
}

impl From<HistoryEntry> for HistoryOut {
    fn from(h: HistoryEntry) -> Self {
        HistoryOut {
            id: h.id,
            kind: h.kind,
            actor: h.actor,
            detail: h.detail,
            created_at: rfc3339(h.created_at_ms),
        }
    }
}

#[derive(Serialize)]
struct MessageOut {
    id: String,
    direction: String,
    purpose: String,
    from_number: String,
    to_number: String,
    body: String,
    status: String,
    error: Option<String>,
    created_at: String,
}

impl From<SmsRecord> for MessageOut {
    fn from(m: SmsRecord) -> Self {
        MessageOut {
            id: m.id,
            direction: m.direction,
            purpose: m.purpose,
            from_number: m.from_number,
            to_number: m.to_number,
            body: m.body,
            status: m.status,
            error: m.error,
            created_at: rfc3339(m.created_at_ms),
        }
    }
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
    let mut call_details = Vec::with_capacity(calls.len());
    for call in calls {
        let detail = state
            .store
            .get_call(&principal.workspace_id, &call.id)
            .await?;
        call_details.push(CallDetailOut::new(&state, detail).await);
    }
    let evaluations: Vec<EvaluationOut> = state
        .store
        .candidate_evaluations(&id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let history: Vec<HistoryOut> = state
        .store
        .candidate_history(&id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let notes: Vec<&HistoryOut> = history.iter().filter(|h| h.kind == "note").collect();
    let corrections: Vec<&HistoryOut> = history.iter().filter(|h| h.kind == "correction").collect();
    let messages: Vec<MessageOut> = state
        .store
        .candidate_messages(&id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    // invitations by email and other deliveries (texts are listed with their bodies above)
    let deliveries: Vec<serde_json::Value> = state
        .store
        .outbox_for_candidate(&id)
        .await?
        .into_iter()
        .filter(|o| o.kind == "email")
        .map(|o| {
            let payload: serde_json::Value =
                serde_json::from_str(&o.payload).unwrap_or(serde_json::Value::Null);
            serde_json::json!({
                "id": o.id,
                "kind": o.kind,
                "to": payload["to"],
                "subject": payload["subject"],
                "status": o.status,
                "attempts": o.attempts,
                "error": o.last_error,
                "created_at": rfc3339(o.created_at_ms),
                "sent_at": o.sent_at_ms.map(rfc3339),
            })
        })
        .collect();
    #[derive(Serialize)]
    struct Out<'a> {
        #[serde(flatten)]
        candidate: CandidateOut,
        calls: Vec<CallDetailOut>,
        evaluations: Vec<EvaluationOut>,
        notes: Vec<&'a HistoryOut>,
        corrections: Vec<&'a HistoryOut>,
        messages: Vec<MessageOut>,
        emails: Vec<serde_json::Value>,
        history: &'a [HistoryOut],
    }
    Ok(Json(Out {
        candidate: CandidateOut::new(summary),
        calls: call_details,
        evaluations,
        notes,
        corrections,
        messages,
        emails: deliveries,
        history: &history,
    })
    .into_response())
}

/// The candidate as it now is.
async fn current(state: &AppState, principal: &Principal, id: &str) -> Result<Response, ApiError> {
    let CandidateDetail { summary, .. } = state
        .store
        .get_candidate(&principal.workspace_id, id)
        .await?;
    Ok(Json(CandidateOut::new(summary)).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetailsInput {
    name: Option<String>,
    location: Option<String>,
    email: Option<String>,
}

async fn update_candidate(
    State(state): State<AppState>,
    Admin(principal): Admin,
    UrlPath(id): UrlPath<String>,
    ApiJson(input): ApiJson<DetailsInput>,
) -> Result<Response, ApiError> {
    for (field, value, max) in [
        ("name", &input.name, 200),
        ("location", &input.location, 200),
        ("email", &input.email, 254),
    ] {
        if value.as_ref().is_some_and(|v| v.chars().count() > max) {
            return Err(ApiError::validation(
                field,
                format!("at most {max} characters"),
            ));
        }
    }
    if let Some(email) = input
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        && !is_email(email)
    {
        return Err(ApiError::validation("email", "not an email address"));
    }
    state
        .store
        .update_candidate_details(
            &principal.workspace_id,
            &id,
            input.name.as_deref(),
            input.location.as_deref(),
            input.email.as_deref(),
            &principal.actor(),
        )
        .await?;
    current(&state, &principal, &id).await
}

/// A plausible address: one `@`, something before it, a dotted domain after, no spaces.
fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@')
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveInput {}

async fn approve(
    State(state): State<AppState>,
    Admin(principal): Admin,
    UrlPath(id): UrlPath<String>,
    OptionalJson(_): OptionalJson<ApproveInput>,
) -> Result<Response, ApiError> {
    state
        .store
        .review_candidate(
            &principal.workspace_id,
            &id,
            Review::Approved,
            None,
            &principal.actor(),
        )
        .await?;
    state.outbox_notify.notify_one();
    current(&state, &principal, &id).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectInput {
    reason: Option<String>,
}

async fn reject(
    State(state): State<AppState>,
    Admin(principal): Admin,
    UrlPath(id): UrlPath<String>,
    OptionalJson(input): OptionalJson<RejectInput>,
) -> Result<Response, ApiError> {
    let reason = input
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if reason.is_some_and(|r| r.chars().count() > MAX_REASON_CHARS) {
        return Err(ApiError::validation(
            "reason",
            format!("at most {MAX_REASON_CHARS} characters"),
        ));
    }
    state
        .store
        .review_candidate(
            &principal.workspace_id,
            &id,
            Review::Rejected,
            reason,
            &principal.actor(),
        )
        .await?;
    state.outbox_notify.notify_one();
    current(&state, &principal, &id).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteInput {
    text: String,
}

async fn add_note(
    State(state): State<AppState>,
    Admin(principal): Admin,
    UrlPath(id): UrlPath<String>,
    ApiJson(input): ApiJson<NoteInput>,
) -> Result<Response, ApiError> {
    let text = input.text.trim();
    if text.is_empty() {
        return Err(ApiError::validation("text", "must not be empty"));
    }
    if text.chars().count() > MAX_NOTE_CHARS {
        return Err(ApiError::validation(
            "text",
            format!("at most {MAX_NOTE_CHARS} characters"),
        ));
    }
    let note = state
        .store
        .add_note(&principal.workspace_id, &id, text, &principal.actor())
        .await?;
    Ok((StatusCode::CREATED, Json(HistoryOut::from(note))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestInput {
    interviewer_id: String,
}

async fn ingest(
    State(state): State<AppState>,
    Admin(principal): Admin,
    UrlPath(id): UrlPath<String>,
    ApiJson(input): ApiJson<IngestInput>,
) -> Result<Response, ApiError> {
    if input.interviewer_id.trim().is_empty() {
        return Err(ApiError::validation("interviewer_id", "required"));
    }
    let outcome = state
        .store
        .ingest_candidate(
            &principal.workspace_id,
            &id,
            input.interviewer_id.trim(),
            &principal.actor(),
        )
        .await?;
    if outcome == IngestOutcome::Ingested {
        state.outbox_notify.notify_one();
    }
    current(&state, &principal, &id).await
}

async fn list_evaluations(
    State(state): State<AppState>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    // scope: the candidate must be this workspace's
    state
        .store
        .get_candidate(&principal.workspace_id, &id)
        .await?;
    let data: Vec<EvaluationOut> = state
        .store
        .candidate_evaluations(&id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(serde_json::json!({ "data": data })).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvaluateInput {
    /// Evaluate this call's answers (default: the latest call's).
    call_id: Option<String>,
}

async fn evaluate(
    State(state): State<AppState>,
    Admin(principal): Admin,
    UrlPath(id): UrlPath<String>,
    OptionalJson(input): OptionalJson<EvaluateInput>,
) -> Result<Response, ApiError> {
    if let Some(call_id) = &input.call_id {
        let call = state
            .store
            .get_call(&principal.workspace_id, call_id)
            .await
            .map_err(|_| ApiError::validation("call_id", "no such call"))?;
        if call.summary.candidate_id.as_deref() != Some(id.as_str()) {
            return Err(ApiError::validation(
                "call_id",
                "not a call of this candidate",
            ));
        }
    }
    let evaluation_id = crate::store::new_id();
    crate::pipeline::evaluate_candidate(
        &state.store,
        Some(&principal.workspace_id),
        &id,
        input.call_id.as_deref(),
        &evaluation_id,
        &principal.actor(),
    )
    .await?;
    state.outbox_notify.notify_one();
    let evaluation = state
        .store
        .candidate_evaluations(&id)
        .await?
        .into_iter()
        .find(|e| e.id == evaluation_id)
        .ok_or_else(|| ApiError::internal("stored evaluation not found"))?;
    Ok((StatusCode::CREATED, Json(EvaluationOut::from(evaluation))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor(1_700_000_000_123, "3f2a");
        assert_eq!(
            decode_cursor(&c).unwrap(),
            (1_700_000_000_123, "3f2a".to_string())
        );
        assert!(decode_cursor("not base64!").is_err());
        assert!(
            decode_cursor(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("x:y")).is_err()
        );
    }

    #[test]
    fn emails() {
        assert!(is_email("ann@example.com"));
        assert!(!is_email("ann@example"));
        assert!(!is_email("ann example@x.com"));
        assert!(!is_email("@x.com"));
    }
}
