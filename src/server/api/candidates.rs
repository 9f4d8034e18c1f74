//! `/api/v1/candidates`: the pipeline (tabs, search, cursor pages), one candidate with all it has
//! (calls with transcripts and recordings, evaluations, notes, history, texts), and the
//! recruiter's actions: approve, reject, notes, ingest, evaluate, and correcting details.
//!
//! Tabs: `all`; `evaluated` (status evaluated, whatever the decision); `needs_review`, `approved`,
//! `rejected` (the decision). Pages are newest call first; `next_cursor` continues a list and is
//! `null` on the last page.

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::calls::CallDetailOut;
use super::{ApiJson, ApiQuery, MAX_PAGE, OptionalJson, rfc3339};
use crate::model::{CandidateStatus, Review};
use crate::pipeline::evaluate::QuestionScore;
use crate::server::AppState;
use crate::server::auth::Admin;
use crate::server::error::{ApiError, doc};
use crate::store::pipeline::{EvaluationRecord, HistoryEntry, IngestOutcome, SmsRecord};
use crate::store::{CandidateDetail, CandidateFilter, CandidateSummary, Principal, Tab, TabCounts};

const MAX_NOTE_CHARS: usize = 5_000;
const MAX_REASON_CHARS: usize = 1_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_candidates))
        .routes(routes!(get_candidate, update_candidate))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(add_note))
        .routes(routes!(ingest))
        .routes(routes!(list_evaluations))
        .routes(routes!(evaluate))
}

/// Where a candidate was ingested, and when.
#[derive(Serialize, ToSchema)]
#[schema(as = Ingested)]
pub(super) struct IngestedOut {
    interviewer_id: String,
    interviewer_name: Option<String>,
    #[schema(format = DateTime)]
    at: String,
}

/// A candidate as listed: one per workspace and phone number.
#[derive(Serialize, ToSchema)]
#[schema(as = CandidateSummary)]
pub(super) struct CandidateOut {
    id: String,
    /// The receptionist the candidate first called.
    receptionist_id: String,
    /// That receptionist's agent name.
    receptionist_name: String,
    phone_number: Option<String>,
    name: Option<String>,
    location: Option<String>,
    email: Option<String>,
    status: CandidateStatus,
    review: Option<Review>,
    /// `system` (routing) or `key:<id>`.
    review_by: Option<String>,
    #[schema(format = DateTime)]
    reviewed_at: Option<String>,
    ingested: Option<IngestedOut>,
    #[schema(format = DateTime)]
    confirmed_at: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// When the candidate last called.
    #[schema(format = DateTime)]
    last_call_at: String,
    last_call_duration_ms: Option<i64>,
    call_count: i64,
    evaluation_count: i64,
    /// Score (0-100) of the newest evaluation.
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct CandidateListQuery {
    /// Default `all`.
    #[param(inline)]
    tab: Option<Tab>,
    #[param(inline)]
    status: Option<CandidateStatus>,
    receptionist_id: Option<String>,
    /// Search in name, email and phone number; at most 200 characters.
    q: Option<String>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
    /// 1 to 500; default 50.
    limit: Option<i64>,
}

/// A page of candidates, newest call first, with the count of each tab under the same filters.
#[derive(Serialize, ToSchema)]
#[schema(as = CandidateList)]
struct CandidateListOut {
    data: Vec<CandidateOut>,
    /// Continues the list; `null` on the last page.
    next_cursor: Option<String>,
    limit: i64,
    counts: TabCounts,
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

/// The candidate pipeline.
///
/// Tabs: `all`; `evaluated` (status evaluated, whatever the decision); `needs_review`,
/// `approved`, `rejected` (the decision).
#[utoipa::path(
    get,
    path = "/api/v1/candidates",
    tag = "candidates",
    security(("bearer" = [])),
    params(CandidateListQuery),
    responses(
        (status = 200, description = "A page of candidates", body = CandidateListOut),
        doc::AnyKey, doc::Query, doc::Invalid,
    ),
)]
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
    Ok(Json(CandidateListOut {
        data,
        next_cursor,
        limit,
        counts,
    })
    .into_response())
}

/// One evaluation of a candidate's answers.
#[derive(Serialize, ToSchema)]
#[schema(as = Evaluation)]
struct EvaluationOut {
    id: String,
    /// The call whose answers were evaluated.
    call_id: Option<String>,
    receptionist_id: String,
    /// 0 to 100.
    score: f64,
    dealbreaker_failed: bool,
    summary: String,
    /// How each screening question scored (as stored with the evaluation).
    #[schema(value_type = Vec<QuestionScore>)]
    questions: serde_json::Value,
    /// Who evaluated: `deterministic` (the built-in rubric).
    evaluator: String,
    #[schema(format = DateTime)]
    created_at: String,
}

/// The evaluations of a candidate, newest first.
#[derive(Serialize, ToSchema)]
#[schema(as = EvaluationList)]
struct EvaluationListOut {
    data: Vec<EvaluationOut>,
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

/// One line of a candidate's history: what happened, who did it, and its details.
#[derive(Clone, Serialize, ToSchema)]
#[schema(as = HistoryEntry)]
struct HistoryOut {
    id: String,
    /// E.g. `call_ended`, `confirmation_sent`, `confirmation`, `reply`, `correction`, `note`,
    /// `evaluated`, `review`, `invitation`, `ingested`, `details_updated`, `opted_out`.
    kind: String,
    /// `system` or `key:<id>` (a recruiter).
    actor: String,
    /// Depends on `kind` (a note's `text`, a review's decision and reason, ...).
    #[schema(value_type = Object)]
    detail: serde_json::Value,
    #[schema(format = DateTime)]
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

/// A text to or from the candidate.
#[derive(Serialize, ToSchema)]
#[schema(as = Message)]
struct MessageOut {
    id: String,
    /// `out` or `in`.
    direction: String,
    /// What the text is for (e.g. `confirmation`, `reply`, `acknowledgement`, `invitation`).
    purpose: String,
    from_number: String,
    to_number: String,
    body: String,
    /// Outbound: `pending`, `sent` or `failed`; inbound: `received`.
    status: String,
    error: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
}

/// An email sent to the candidate (an invitation), with its delivery state.
#[derive(Serialize, ToSchema)]
#[schema(as = Email)]
struct EmailOut {
    id: String,
    /// `email`.
    kind: String,
    to: Option<String>,
    subject: Option<String>,
    /// `pending`, `sent` or `failed`.
    status: String,
    attempts: i64,
    /// The last attempt's error.
    error: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    sent_at: Option<String>,
}

/// A candidate with everything it has.
#[derive(Serialize, ToSchema)]
#[schema(as = Candidate)]
struct CandidateDetailOut {
    #[serde(flatten)]
    candidate: CandidateOut,
    /// Newest first.
    calls: Vec<CallDetailOut>,
    evaluations: Vec<EvaluationOut>,
    /// The history's `note` lines.
    notes: Vec<HistoryOut>,
    /// The history's `correction` lines (texts that corrected the captured details).
    corrections: Vec<HistoryOut>,
    messages: Vec<MessageOut>,
    emails: Vec<EmailOut>,
    history: Vec<HistoryOut>,
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

/// One candidate, with its calls, evaluations, notes, history, texts and emails.
#[utoipa::path(
    get,
    path = "/api/v1/candidates/{id}",
    tag = "candidates",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The candidate's id")),
    responses(
        (status = 200, description = "The candidate", body = CandidateDetailOut),
        doc::AnyKey, doc::NotFound,
    ),
)]
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
    let of_kind = |kind: &str| -> Vec<HistoryOut> {
        history.iter().filter(|h| h.kind == kind).cloned().collect()
    };
    let notes = of_kind("note");
    let corrections = of_kind("correction");
    let messages: Vec<MessageOut> = state
        .store
        .candidate_messages(&id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    // invitations by email and other deliveries (texts are listed with their bodies above)
    let emails: Vec<EmailOut> = state
        .store
        .outbox_for_candidate(&id)
        .await?
        .into_iter()
        .filter(|o| o.kind == "email")
        .map(|o| {
            let payload: serde_json::Value =
                serde_json::from_str(&o.payload).unwrap_or(serde_json::Value::Null);
            let text = |key: &str| payload[key].as_str().map(str::to_owned);
            EmailOut {
                to: text("to"),
                subject: text("subject"),
                id: o.id,
                kind: o.kind,
                status: o.status,
                attempts: o.attempts,
                error: o.last_error,
                created_at: rfc3339(o.created_at_ms),
                sent_at: o.sent_at_ms.map(rfc3339),
            }
        })
        .collect();
    Ok(Json(CandidateDetailOut {
        candidate: CandidateOut::new(summary),
        calls: call_details,
        evaluations,
        notes,
        corrections,
        messages,
        emails,
        history,
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

/// Corrections to a candidate's details; absent fields keep their values.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DetailsInput {
    /// At most 200 characters.
    name: Option<String>,
    /// At most 200 characters.
    location: Option<String>,
    /// An email address (at most 254 characters).
    email: Option<String>,
}

/// Correct a candidate's name, location or email.
#[utoipa::path(
    patch,
    path = "/api/v1/candidates/{id}",
    tag = "candidates",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "The candidate's id")),
    request_body = DetailsInput,
    responses(
        (status = 200, description = "The candidate as it now is", body = CandidateOut),
        doc::AdminKey, doc::NotFound, doc::JsonBody,
    ),
)]
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

/// An approval has no fields: the body may be empty or `{}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ApproveInput {}

/// Approve a candidate.
///
/// Texts the candidate when the receptionist says so, and notifies `candidate.approved`.
#[utoipa::path(
    post,
    path = "/api/v1/candidates/{id}/approve",
    tag = "candidates",
    operation_id = "approve_candidate",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "The candidate's id")),
    request_body(content = Option<ApproveInput>, description = "Optional: empty or `{}`"),
    responses(
        (status = 200, description = "The candidate as it now is", body = CandidateOut),
        doc::AdminKey, doc::NotFound, doc::JsonBody,
    ),
)]
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

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RejectInput {
    /// Kept in the history; at most 1,000 characters.
    reason: Option<String>,
}

/// Reject a candidate.
#[utoipa::path(
    post,
    path = "/api/v1/candidates/{id}/reject",
    tag = "candidates",
    operation_id = "reject_candidate",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "The candidate's id")),
    request_body(content = Option<RejectInput>, description = "Optional: empty, or a reason"),
    responses(
        (status = 200, description = "The candidate as it now is", body = CandidateOut),
        doc::AdminKey, doc::NotFound, doc::JsonBody,
    ),
)]
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NoteInput {
    /// 1 to 5,000 characters.
    text: String,
}

/// Add a note to a candidate's history.
#[utoipa::path(
    post,
    path = "/api/v1/candidates/{id}/notes",
    tag = "candidates",
    operation_id = "add_candidate_note",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "The candidate's id")),
    request_body = NoteInput,
    responses(
        (status = 201, description = "The note, as a history entry of kind `note`", body = HistoryOut),
        doc::AdminKey, doc::NotFound, doc::JsonBody,
    ),
)]
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct IngestInput {
    /// One of the interviewers the candidate's receptionist may ingest into.
    interviewer_id: String,
}

/// Ingest a candidate into an interviewer (the next screening step).
///
/// Sends the interviewer's invitation by text and email (when the candidate has one); ingesting
/// again into the same interviewer changes nothing.
#[utoipa::path(
    post,
    path = "/api/v1/candidates/{id}/ingest",
    tag = "candidates",
    operation_id = "ingest_candidate",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "The candidate's id")),
    request_body = IngestInput,
    responses(
        (status = 200, description = "The candidate as it now is", body = CandidateOut),
        doc::AdminKey, doc::NotFound, doc::JsonBody,
    ),
)]
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

/// A candidate's evaluations.
#[utoipa::path(
    get,
    path = "/api/v1/candidates/{id}/evaluations",
    tag = "candidates",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The candidate's id")),
    responses(
        (status = 200, description = "Its evaluations", body = EvaluationListOut),
        doc::AnyKey, doc::NotFound,
    ),
)]
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
    Ok(Json(EvaluationListOut { data }).into_response())
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EvaluateInput {
    /// Evaluate this call's answers (default: the latest call's).
    call_id: Option<String>,
}

/// Evaluate a candidate's answers again, and route the candidate on the result.
#[utoipa::path(
    post,
    path = "/api/v1/candidates/{id}/evaluate",
    tag = "candidates",
    operation_id = "evaluate_candidate",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "The candidate's id")),
    request_body(content = Option<EvaluateInput>, description = "Optional: empty, or the call to evaluate"),
    responses(
        (status = 201, description = "The new evaluation", body = EvaluationOut),
        doc::AdminKey, doc::NotFound, doc::JsonBody,
    ),
)]
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
