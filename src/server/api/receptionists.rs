//! `/api/v1/receptionists`: create, list, read and merge-update a receptionist's settings.

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiQuery, rfc3339};
use crate::engine::dialogue::understand::parse_expected;
use crate::model::{
    LanguageMode, Question, QuestionKind, ReceptionistSettings, ReceptionistStatus,
};
use crate::server::AppState;
use crate::server::auth::Admin;
use crate::server::error::{ApiError, doc};
use crate::store::{Principal, Receptionist, is_e164};

pub const MAX_INTRO_CHARS: usize = 800;
pub const MAX_CUSTOM_CONTEXT_CHARS: usize = 20_000;
pub const MAX_QUESTIONS: usize = 20;
const MAX_AGENT_NAME_CHARS: usize = 100;
const MAX_QUESTION_CHARS: usize = 500;
const MAX_VOICE_CHARS: usize = 64;
const MAX_INTERVIEWERS: usize = 50;

/// Every interviewer a receptionist names must be one of its workspace's.
async fn check_interviewers(
    state: &AppState,
    workspace_id: &str,
    s: &ReceptionistSettings,
) -> Result<(), ApiError> {
    if s.interviewer_ids.is_empty() {
        return Ok(());
    }
    let known = state.store.list_interviewers(workspace_id).await?;
    for (i, id) in s.interviewer_ids.iter().enumerate() {
        if !known.iter().any(|k| &k.id == id) {
            return Err(ApiError::validation(
                format!("interviewer_ids[{i}]"),
                "no such interviewer in this workspace",
            ));
        }
    }
    Ok(())
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_receptionists, create_receptionist))
        .routes(routes!(get_receptionist, update_receptionist))
}

/// A receptionist as the API writes it. On create, `phone_number`, `agent_name` and
/// `intro_message` are required; on update every field is optional (absent or `null` keeps the
/// value). Defaults on create: `voice` `slt`, `language_mode` `english`, the three disclosures,
/// `collect_location` and `sms_confirmation` on, `manual_approval` and
/// `enforce_job_location_match` off, `score_threshold` 70, `status` `live`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceptionistInput {
    /// E.164 (`+15551234567`), unique across workspaces.
    #[schema(example = "+15550001111")]
    pub phone_number: Option<String>,
    /// 1 to 100 characters.
    pub agent_name: Option<String>,
    /// The text-to-speech voice, 1 to 64 characters.
    pub voice: Option<String>,
    /// At most 800 characters.
    pub intro_message: Option<String>,
    pub language_mode: Option<LanguageMode>,
    pub manual_approval: Option<bool>,
    pub disclose_ai: Option<bool>,
    pub disclose_recording: Option<bool>,
    pub disclose_e_verify: Option<bool>,
    pub collect_location: Option<bool>,
    pub enforce_job_location_match: Option<bool>,
    /// What the agent may tell callers about the job; at most 20,000 characters.
    pub custom_context: Option<String>,
    /// At most 20; replaces the whole list.
    pub questions: Option<Vec<QuestionInput>>,
    /// 0 to 100. (Wider than the stored `u8` so that 101 or -1 get a validation message, not a
    /// type error.)
    pub score_threshold: Option<i64>,
    pub status: Option<ReceptionistStatus>,
    pub sms_confirmation: Option<bool>,
    /// Interviewers (of this workspace) this receptionist may ingest candidates into; at most 50.
    pub interviewer_ids: Option<Vec<String>>,
    /// One of `interviewer_ids`; `""` clears it.
    pub default_interviewer_id: Option<String>,
    /// The carrier the number is on: `twilio` (the default), `telnyx`, `plivo`, `vonage`,
    /// `signalwire` or `exotel`. A call arriving on another carrier is still answered, and logged.
    #[schema(example = "twilio")]
    pub carrier: Option<String>,
    // Read-only fields a client may echo back; ignored.
    /// Read-only: accepted and ignored.
    #[serde(default, rename = "id")]
    #[schema(value_type = Option<serde_json::Value>)]
    _id: Option<IgnoredAny>,
    /// Read-only: accepted and ignored.
    #[serde(default, rename = "workspace_id")]
    #[schema(value_type = Option<serde_json::Value>)]
    _workspace_id: Option<IgnoredAny>,
    /// Read-only: accepted and ignored.
    #[serde(default, rename = "created_at")]
    #[schema(value_type = Option<serde_json::Value>)]
    _created_at: Option<IgnoredAny>,
    /// Read-only: accepted and ignored.
    #[serde(default, rename = "updated_at")]
    #[schema(value_type = Option<serde_json::Value>)]
    _updated_at: Option<IgnoredAny>,
}

/// A screening question as the API writes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuestionInput {
    /// Required: 1 to 500 characters.
    pub text: Option<String>,
    /// Required.
    pub kind: Option<QuestionKind>,
    /// By kind: `yes` or `no`; a number, a comparison (`>= 18`) or a range (`18-65`);
    /// comma-separated keywords for free text.
    #[serde(default)]
    pub expected: Option<String>,
    /// A failed expectation rejects the candidate whatever the score.
    #[serde(default)]
    pub dealbreaker: bool,
    /// 0 or more; default 1.
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
        sms_confirmation: true,
        interviewer_ids: Vec::new(),
        default_interviewer_id: None,
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
        if let Some(v) = self.sms_confirmation {
            s.sms_confirmation = v;
        }
        if let Some(v) = self.interviewer_ids {
            let mut ids: Vec<String> = Vec::with_capacity(v.len());
            for id in v {
                let id = id.trim().to_string();
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            s.interviewer_ids = ids;
        }
        if let Some(v) = self.default_interviewer_id {
            let v = v.trim();
            s.default_interviewer_id = (!v.is_empty()).then(|| v.to_string());
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
    if s.interviewer_ids.len() > MAX_INTERVIEWERS {
        return Err(ApiError::validation(
            "interviewer_ids",
            format!("at most {MAX_INTERVIEWERS} interviewers"),
        ));
    }
    if let Some(i) = s.interviewer_ids.iter().position(|id| id.is_empty()) {
        return Err(ApiError::validation(
            format!("interviewer_ids[{i}]"),
            "must not be empty",
        ));
    }
    if let Some(d) = &s.default_interviewer_id
        && !s.interviewer_ids.contains(d)
    {
        return Err(ApiError::validation(
            "default_interviewer_id",
            "must be one of interviewer_ids",
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

/// The carrier named in the input (any case), or `current`; a name that is not a carrier is a
/// validation error on `carrier`.
fn carrier_name(given: Option<String>, current: &str) -> Result<&'static str, ApiError> {
    let name = given.as_deref().unwrap_or(current).trim();
    name.parse::<crate::engine::media::Carrier>()
        .map(|c| c.as_str())
        .map_err(|_| {
            ApiError::validation(
                "carrier",
                "must be twilio, telnyx, plivo, vonage, signalwire or exotel",
            )
        })
}

/// A receptionist: its ids, every setting, and when it was created and last changed.
#[derive(Serialize, ToSchema)]
#[schema(as = Receptionist)]
struct ReceptionistOut {
    id: String,
    workspace_id: String,
    /// The carrier the number is on.
    #[schema(example = "twilio")]
    carrier: String,
    #[serde(flatten)]
    settings: ReceptionistSettings,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

/// The workspace's receptionists, oldest first.
#[derive(Serialize, ToSchema)]
#[schema(as = ReceptionistList)]
struct ReceptionistListOut {
    data: Vec<ReceptionistOut>,
}

impl From<Receptionist> for ReceptionistOut {
    fn from(r: Receptionist) -> Self {
        ReceptionistOut {
            id: r.id,
            workspace_id: r.workspace_id,
            carrier: r.carrier,
            settings: r.settings,
            created_at: rfc3339(r.created_at_ms),
            updated_at: rfc3339(r.updated_at_ms),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ReceptionistListQuery {
    /// Only receptionists with this status.
    #[param(inline)]
    status: Option<ReceptionistStatus>,
}

/// Create a receptionist.
#[utoipa::path(
    post,
    path = "/api/v1/receptionists",
    tag = "receptionists",
    security(("bearer" = ["admin"])),
    request_body = ReceptionistInput,
    responses(
        (status = 201, description = "Created", body = ReceptionistOut),
        doc::AdminKey, doc::JsonBody, doc::Conflict,
    ),
)]
async fn create_receptionist(
    State(state): State<AppState>,
    Admin(principal): Admin,
    ApiJson(mut input): ApiJson<ReceptionistInput>,
) -> Result<Response, ApiError> {
    let carrier = carrier_name(input.carrier.take(), "twilio")?;
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
    check_interviewers(&state, &principal.workspace_id, &settings).await?;
    let r = state
        .store
        .create_receptionist(&principal.workspace_id, &settings, carrier)
        .await?;
    state.warm_prompts_for(&r.settings);
    Ok((StatusCode::CREATED, Json(ReceptionistOut::from(r))).into_response())
}

/// Change a receptionist's settings.
///
/// A merge: fields absent (or `null`) keep their values; the result is validated as a create is.
#[utoipa::path(
    put,
    path = "/api/v1/receptionists/{id}",
    tag = "receptionists",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "The receptionist's id")),
    request_body = ReceptionistInput,
    responses(
        (status = 200, description = "The receptionist as it now is", body = ReceptionistOut),
        doc::AdminKey, doc::NotFound, doc::JsonBody, doc::Conflict,
    ),
)]
async fn update_receptionist(
    State(state): State<AppState>,
    Admin(principal): Admin,
    UrlPath(id): UrlPath<String>,
    ApiJson(mut input): ApiJson<ReceptionistInput>,
) -> Result<Response, ApiError> {
    let current = state
        .store
        .get_receptionist(&principal.workspace_id, &id)
        .await?;
    let carrier = carrier_name(input.carrier.take(), &current.carrier)?;
    let settings = input.apply(current.settings)?;
    check_interviewers(&state, &principal.workspace_id, &settings).await?;
    let r = state
        .store
        .update_receptionist(&principal.workspace_id, &id, &settings, carrier)
        .await?;
    state.warm_prompts_for(&r.settings);
    Ok(Json(ReceptionistOut::from(r)).into_response())
}

/// One receptionist.
#[utoipa::path(
    get,
    path = "/api/v1/receptionists/{id}",
    tag = "receptionists",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The receptionist's id")),
    responses(
        (status = 200, description = "The receptionist", body = ReceptionistOut),
        doc::AnyKey, doc::NotFound,
    ),
)]
async fn get_receptionist(
    State(state): State<AppState>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let r = state
        .store
        .get_receptionist(&principal.workspace_id, &id)
        .await?;
    Ok(Json(ReceptionistOut::from(r)).into_response())
}

/// The workspace's receptionists.
#[utoipa::path(
    get,
    path = "/api/v1/receptionists",
    tag = "receptionists",
    security(("bearer" = [])),
    params(ReceptionistListQuery),
    responses(
        (status = 200, description = "Oldest first", body = ReceptionistListOut),
        doc::AnyKey, doc::Query,
    ),
)]
async fn list_receptionists(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ReceptionistListQuery>,
) -> Result<Response, ApiError> {
    let list = state
        .store
        .list_receptionists(&principal.workspace_id, query.status)
        .await?;
    let data: Vec<ReceptionistOut> = list.into_iter().map(ReceptionistOut::from).collect();
    Ok(Json(ReceptionistListOut { data }).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

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
