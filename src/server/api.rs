//! The recruiter API (`/api/v1`): receptionists, calls (with recordings) and candidates.
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

use std::path::{Component, Path};

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Path as UrlPath, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Admin;
use super::error::ApiError;
use crate::engine::dialogue::understand::parse_expected;
use crate::model::{
    AnswerRecord, CandidateStatus, DisclosureRecord, LanguageMode, Question, QuestionKind,
    ReceptionistSettings, ReceptionistStatus, TranscriptLine, TurnLatency,
};
use crate::store::{
    CallDetail, CallStatus, CallSummary, CandidateDetail, CandidateFilter, CandidateSummary,
    Principal, Receptionist, is_e164,
};

pub const MAX_INTRO_CHARS: usize = 800;
pub const MAX_CUSTOM_CONTEXT_CHARS: usize = 20_000;
pub const MAX_QUESTIONS: usize = 20;
const MAX_AGENT_NAME_CHARS: usize = 100;
const MAX_QUESTION_CHARS: usize = 500;
const MAX_VOICE_CHARS: usize = 64;
const MAX_PAGE: i64 = 500;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/receptionists",
            get(list_receptionists).post(create_receptionist),
        )
        .route(
            "/api/v1/receptionists/{id}",
            get(get_receptionist).put(update_receptionist),
        )
        .route("/api/v1/calls", get(list_calls))
        .route("/api/v1/calls/{id}", get(get_call))
        .route("/api/v1/calls/{id}/recording", get(get_recording))
        .route("/api/v1/candidates", get(list_candidates))
        .route("/api/v1/candidates/{id}", get(get_candidate))
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
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::BadRequest {
                field: None,
                message: "expected a body with content type application/json".into(),
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            });
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest {
                field: None,
                message: e.body_text(),
                status: e.status(),
            })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize(&mut de) {
            Ok(value) => {
                // Trailing characters after the document.
                de.end()
                    .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
                Ok(ApiJson(value))
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

// ---------------------------------------------------------------------------------------------
// Receptionists
// ---------------------------------------------------------------------------------------------

/// A receptionist as the API writes it. On create, `phone_number`, `agent_name` and
/// `intro_message` are required; on update every field is optional (absent keeps the value).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceptionistInput {
    pub phone_number: Option<String>,
    pub agent_name: Option<String>,
    pub voice: Option<String>,
    pub intro_message: Option<String>,
    pub language_mode: Option<LanguageMode>,
    pub manual_approval: Option<bool>,
    pub disclose_ai: Option<bool>,
    pub disclose_recording: Option<bool>,
    pub disclose_e_verify: Option<bool>,
    pub collect_location: Option<bool>,
    pub enforce_job_location_match: Option<bool>,
    pub custom_context: Option<String>,
    pub questions: Option<Vec<QuestionInput>>,
    /// Wider than the stored `u8` so that 101 or -1 get a validation message, not a type error.
    pub score_threshold: Option<i64>,
    pub status: Option<ReceptionistStatus>,
    // Read-only fields a client may echo back; ignored.
    #[serde(default, rename = "id")]
    _id: Option<IgnoredAny>,
    #[serde(default, rename = "workspace_id")]
    _workspace_id: Option<IgnoredAny>,
    #[serde(default, rename = "created_at")]
    _created_at: Option<IgnoredAny>,
    #[serde(default, rename = "updated_at")]
    _updated_at: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuestionInput {
    pub text: Option<String>,
    pub kind: Option<QuestionKind>,
    #[serde(default)]
    pub expected: Option<String>,
    #[serde(default)]
    pub dealbreaker: bool,
    pub weight: Option<f64>,
}

/// Settings for a new receptionist before the input is applied.
fn default_settings() -> ReceptionistSettings {
    ReceptionistSettings {
        phone_number: String::new(),
        agent_name: String::new(),
        voice: "slt".into(),
        intro_message: String::new(),
        language_mode: LanguageMode::English,
        manual_approval: false,
        disclose_ai: true,
        disclose_recording: true,
        disclose_e_verify: true,
        collect_location: true,
        enforce_job_location_match: false,
        custom_context: String::new(),
        questions: Vec::new(),
        score_threshold: 70,
        status: ReceptionistStatus::Live,
    }
}

impl ReceptionistInput {
    /// Apply the present fields onto `base`, validating as it goes; then validate the whole.
    pub fn apply(self, mut s: ReceptionistSettings) -> Result<ReceptionistSettings, ApiError> {
        if let Some(v) = self.phone_number {
            s.phone_number = v.trim().to_string();
        }
        if let Some(v) = self.agent_name {
            s.agent_name = v.trim().to_string();
        }
        if let Some(v) = self.voice {
            s.voice = v.trim().to_string();
        }
        if let Some(v) = self.intro_message {
            s.intro_message = v.trim().to_string();
        }
        if let Some(v) = self.language_mode {
            s.language_mode = v;
        }
        if let Some(v) = self.manual_approval {
            s.manual_approval = v;
        }
        if let Some(v) = self.disclose_ai {
            s.disclose_ai = v;
        }
        if let Some(v) = self.disclose_recording {
            s.disclose_recording = v;
        }
        if let Some(v) = self.disclose_e_verify {
            s.disclose_e_verify = v;
        }
        if let Some(v) = self.collect_location {
            s.collect_location = v;
        }
        if let Some(v) = self.enforce_job_location_match {
            s.enforce_job_location_match = v;
        }
        if let Some(v) = self.custom_context {
            s.custom_context = v;
        }
        if let Some(v) = self.score_threshold {
            s.score_threshold = u8::try_from(v)
                .ok()
                .filter(|t| *t <= 100)
                .ok_or_else(|| ApiError::validation("score_threshold", "must be 0 to 100"))?;
        }
        if let Some(v) = self.status {
            s.status = v;
        }
        if let Some(questions) = self.questions {
            if questions.len() > MAX_QUESTIONS {
                return Err(ApiError::validation(
                    "questions",
                    format!("at most {MAX_QUESTIONS} questions"),
                ));
            }
            s.questions = questions
                .into_iter()
                .enumerate()
                .map(|(i, q)| q.into_question(i))
                .collect::<Result<_, _>>()?;
        }
        validate_settings(&s)?;
        Ok(s)
    }
}

impl QuestionInput {
    fn into_question(self, i: usize) -> Result<Question, ApiError> {
        let field = |name: &str| format!("questions[{i}].{name}");
        let text = self.text.unwrap_or_default().trim().to_string();
        let kind = self.kind.ok_or_else(|| {
            ApiError::validation(field("kind"), "required: yes_no, number or free_text")
        })?;
        let expected = self
            .expected
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty());
        Ok(Question {
            text,
            kind,
            expected,
            dealbreaker: self.dealbreaker,
            weight: self.weight.unwrap_or(1.0),
        })
    }
}

/// Every rule a receptionist's settings must satisfy; errors name the field.
pub fn validate_settings(s: &ReceptionistSettings) -> Result<(), ApiError> {
    let chars = |v: &str| v.chars().count();
    if s.phone_number.is_empty() {
        return Err(ApiError::validation("phone_number", "required"));
    }
    if !is_e164(&s.phone_number) {
        return Err(ApiError::validation(
            "phone_number",
            "must be in E.164 format: + then 2 to 15 digits, the first not 0 (e.g. +15551234567)",
        ));
    }
    if s.agent_name.is_empty() {
        return Err(ApiError::validation("agent_name", "must not be empty"));
    }
    if chars(&s.agent_name) > MAX_AGENT_NAME_CHARS {
        return Err(ApiError::validation(
            "agent_name",
            format!("at most {MAX_AGENT_NAME_CHARS} characters"),
        ));
    }
    if s.voice.is_empty() || chars(&s.voice) > MAX_VOICE_CHARS {
        return Err(ApiError::validation(
            "voice",
            format!("must be 1 to {MAX_VOICE_CHARS} characters"),
        ));
    }
    if s.intro_message.is_empty() {
        return Err(ApiError::validation("intro_message", "must not be empty"));
    }
    if chars(&s.intro_message) > MAX_INTRO_CHARS {
        return Err(ApiError::validation(
            "intro_message",
            format!("at most {MAX_INTRO_CHARS} characters"),
        ));
    }
    if chars(&s.custom_context) > MAX_CUSTOM_CONTEXT_CHARS {
        return Err(ApiError::validation(
            "custom_context",
            format!("at most {MAX_CUSTOM_CONTEXT_CHARS} characters"),
        ));
    }
    if s.score_threshold > 100 {
        return Err(ApiError::validation("score_threshold", "must be 0 to 100"));
    }
    if s.questions.len() > MAX_QUESTIONS {
        return Err(ApiError::validation(
            "questions",
            format!("at most {MAX_QUESTIONS} questions"),
        ));
    }
    for (i, q) in s.questions.iter().enumerate() {
        let field = |name: &str| format!("questions[{i}].{name}");
        if q.text.trim().is_empty() {
            return Err(ApiError::validation(field("text"), "must not be empty"));
        }
        if chars(&q.text) > MAX_QUESTION_CHARS {
            return Err(ApiError::validation(
                field("text"),
                format!("at most {MAX_QUESTION_CHARS} characters"),
            ));
        }
        if !q.weight.is_finite() || q.weight < 0.0 {
            return Err(ApiError::validation(
                field("weight"),
                "must be a finite number, 0 or more",
            ));
        }
        if let Some(expected) = &q.expected {
            // Numbers and yes/no are ASCII; rejecting anything else up front also keeps the
            // expectation parser away from multi-byte input.
            if q.kind != QuestionKind::FreeText && !expected.is_ascii() {
                return Err(ApiError::validation(
                    field("expected"),
                    "must be yes/no, a number, a comparison (>= 18) or a range (18-65)",
                ));
            }
            parse_expected(q.kind, expected)
                .map_err(|message| ApiError::validation(field("expected"), message))?;
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct ReceptionistOut<'a> {
    id: &'a str,
    workspace_id: &'a str,
    #[serde(flatten)]
    settings: &'a ReceptionistSettings,
    created_at: String,
    updated_at: String,
}

impl<'a> From<&'a Receptionist> for ReceptionistOut<'a> {
    fn from(r: &'a Receptionist) -> Self {
        ReceptionistOut {
            id: &r.id,
            workspace_id: &r.workspace_id,
            settings: &r.settings,
            created_at: rfc3339(r.created_at_ms),
            updated_at: rfc3339(r.updated_at_ms),
        }
    }
}

#[derive(Deserialize)]
struct ReceptionistListQuery {
    status: Option<ReceptionistStatus>,
}

async fn create_receptionist(
    State(state): State<AppState>,
    Admin(principal): Admin,
    ApiJson(input): ApiJson<ReceptionistInput>,
) -> Result<Response, ApiError> {
    for (field, present) in [
        ("phone_number", input.phone_number.is_some()),
        ("agent_name", input.agent_name.is_some()),
        ("intro_message", input.intro_message.is_some()),
    ] {
        if !present {
            return Err(ApiError::validation(field, "required"));
        }
    }
    let settings = input.apply(default_settings())?;
    let r = state
        .store
        .create_receptionist(&principal.workspace_id, &settings)
        .await?;
    state.warm_prompts_for(&r.settings);
    Ok((StatusCode::CREATED, Json(ReceptionistOut::from(&r))).into_response())
}

async fn update_receptionist(
    State(state): State<AppState>,
    Admin(principal): Admin,
    UrlPath(id): UrlPath<String>,
    ApiJson(input): ApiJson<ReceptionistInput>,
) -> Result<Response, ApiError> {
    let current = state
        .store
        .get_receptionist(&principal.workspace_id, &id)
        .await?;
    let settings = input.apply(current.settings)?;
    let r = state
        .store
        .update_receptionist(&principal.workspace_id, &id, &settings)
        .await?;
    state.warm_prompts_for(&r.settings);
    Ok(Json(ReceptionistOut::from(&r)).into_response())
}

async fn get_receptionist(
    State(state): State<AppState>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let r = state
        .store
        .get_receptionist(&principal.workspace_id, &id)
        .await?;
    Ok(Json(ReceptionistOut::from(&r)).into_response())
}

async fn list_receptionists(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ReceptionistListQuery>,
) -> Result<Response, ApiError> {
    let list = state
        .store
        .list_receptionists(&principal.workspace_id, query.status)
        .await?;
    let data: Vec<ReceptionistOut> = list.iter().map(ReceptionistOut::from).collect();
    Ok(Json(serde_json::json!({ "data": data })).into_response())
}

// ---------------------------------------------------------------------------------------------
// Calls
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct CallSummaryOut {
    id: String,
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
}

impl CallSummaryOut {
    /// `has_recording` from the stored path; the detail view also checks the file.
    fn new(c: CallSummary) -> Self {
        CallSummaryOut {
            has_recording: c.recording_path.is_some(),
            id: c.id,
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
struct CallDetailOut {
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

fn page(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
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
    let CallDetail {
        summary,
        transcript,
        name,
        location,
        answers,
        disclosures,
        latencies,
    } = state.store.get_call(&principal.workspace_id, &id).await?;
    let has_file = match &summary.recording_path {
        Some(path) => recording_file(&state, path).await.is_some(),
        None => false,
    };
    let mut summary = CallSummaryOut::new(summary);
    summary.has_recording = has_file;
    Ok(Json(CallDetailOut {
        summary,
        name,
        location,
        transcript,
        answers,
        disclosures,
        latencies,
    })
    .into_response())
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

/// Streams the call's WAV file.
async fn get_recording(
    State(state): State<AppState>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let call = state.store.get_call(&principal.workspace_id, &id).await?;
    let relative = call.summary.recording_path.ok_or(ApiError::NotFound)?;
    let full = recording_file(&state, &relative)
        .await
        .ok_or(ApiError::NotFound)?;
    let file = tokio::fs::File::open(&full).await?;
    let len = file.metadata().await?.len();
    let stream = futures_util::stream::unfold(Some(file), |file| async move {
        use tokio::io::AsyncReadExt;
        let mut file = file?;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "audio/wav".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"call-{}.wav\"", call.summary.id),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------------
// Candidates
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------

/// Epoch milliseconds as RFC 3339 UTC (`2024-05-01T12:00:00.123Z`).
fn rfc3339(ms: i64) -> String {
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

    #[test]
    fn expected_values_are_checked_by_kind() {
        let mut s = default_settings();
        s.phone_number = "+15550001111".into();
        s.agent_name = "Chloe".into();
        s.intro_message = "Hi".into();
        let q = |kind, expected: &str| Question {
            text: "Q?".into(),
            kind,
            expected: Some(expected.into()),
            dealbreaker: false,
            weight: 1.0,
        };
        for (kind, expected, ok) in [
            (QuestionKind::YesNo, "yes", true),
            (QuestionKind::YesNo, "maybe", false),
            (QuestionKind::Number, ">= 18", true),
            (QuestionKind::Number, "18-65", true),
            (QuestionKind::Number, "lots", false),
            (QuestionKind::Number, "é-5", false),
            (QuestionKind::FreeText, "forklift, warehouse", true),
        ] {
            s.questions = vec![q(kind, expected)];
            assert_eq!(validate_settings(&s).is_ok(), ok, "{kind:?} {expected:?}");
        }
    }
}
