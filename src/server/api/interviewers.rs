//! `/api/v1/interviewers`: the next, longer screening step candidates are ingested into. The
//! invitation message is a template: `{candidate_name}`, `{interviewer_name}` and
//! `{interview_link}` are filled in (the link is added at the end when the template leaves it
//! out). `PUT` merges like receptionists.

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, rfc3339};
use crate::server::AppState;
use crate::server::auth::Admin;
use crate::server::error::{ApiError, doc};
use crate::store::{Interviewer, InterviewerInput, Principal};

const MAX_NAME_CHARS: usize = 200;
const MAX_MESSAGE_CHARS: usize = 1_000;
const MAX_LINK_CHARS: usize = 2_048;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_interviewers, create_interviewer))
        .routes(routes!(get_interviewer, update_interviewer))
}

/// An interviewer: the next screening step candidates are ingested into.
#[derive(Serialize, ToSchema)]
#[schema(as = Interviewer)]
struct InterviewerOut {
    id: String,
    name: String,
    /// The invitation template: `{candidate_name}`, `{interviewer_name}` and `{interview_link}`
    /// are filled in.
    invitation_message: String,
    interview_link: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

/// The workspace's interviewers, oldest first.
#[derive(Serialize, ToSchema)]
#[schema(as = InterviewerList)]
struct InterviewerListOut {
    data: Vec<InterviewerOut>,
}

impl From<Interviewer> for InterviewerOut {
    fn from(i: Interviewer) -> Self {
        InterviewerOut {
            id: i.id,
            name: i.name,
            invitation_message: i.invitation_message,
            interview_link: i.interview_link,
            created_at: rfc3339(i.created_at_ms),
            updated_at: rfc3339(i.updated_at_ms),
        }
    }
}

/// An interviewer as the API writes it. On create, `name` and `interview_link` are required; on
/// update every field is optional (absent keeps the value).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = InterviewerInput)]
struct Input {
    /// 1 to 200 characters.
    name: Option<String>,
    /// At most 1,000 characters; `{candidate_name}`, `{interviewer_name}` and
    /// `{interview_link}` are filled in (the link is added at the end when left out).
    invitation_message: Option<String>,
    /// An http(s) URL.
    interview_link: Option<String>,
}

impl Input {
    /// Apply present fields onto `base` and validate the result.
    fn apply(self, mut base: InterviewerInput) -> Result<InterviewerInput, ApiError> {
        if let Some(v) = self.name {
            base.name = v.trim().to_string();
        }
        if let Some(v) = self.invitation_message {
            base.invitation_message = v.trim().to_string();
        }
        if let Some(v) = self.interview_link {
            base.interview_link = v.trim().to_string();
        }
        if base.name.is_empty() {
            return Err(ApiError::validation("name", "must not be empty"));
        }
        if base.name.chars().count() > MAX_NAME_CHARS {
            return Err(ApiError::validation(
                "name",
                format!("at most {MAX_NAME_CHARS} characters"),
            ));
        }
        if base.invitation_message.chars().count() > MAX_MESSAGE_CHARS {
            return Err(ApiError::validation(
                "invitation_message",
                format!("at most {MAX_MESSAGE_CHARS} characters"),
            ));
        }
        let link_ok = base.interview_link.chars().count() <= MAX_LINK_CHARS
            && url::Url::parse(&base.interview_link)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !link_ok {
            return Err(ApiError::validation(
                "interview_link",
                "must be an http(s) URL",
            ));
        }
        Ok(base)
    }
}

/// Create an interviewer.
#[utoipa::path(
    post,
    path = "/api/v1/interviewers",
    tag = "interviewers",
    security(("bearer" = ["admin"])),
    request_body = Input,
    responses(
        (status = 201, description = "Created", body = InterviewerOut),
        doc::AdminKey, doc::JsonBody,
    ),
)]
async fn create_interviewer(
    State(state): State<AppState>,
    Admin(principal): Admin,
    ApiJson(input): ApiJson<Input>,
) -> Result<Response, ApiError> {
    if input.name.is_none() {
        return Err(ApiError::validation("name", "required"));
    }
    if input.interview_link.is_none() {
        return Err(ApiError::validation("interview_link", "required"));
    }
    let input = input.apply(InterviewerInput {
        name: String::new(),
        invitation_message: String::new(),
        interview_link: String::new(),
    })?;
    let i = state
        .store
        .create_interviewer(&principal.workspace_id, &input)
        .await?;
    Ok((StatusCode::CREATED, Json(InterviewerOut::from(i))).into_response())
}

/// Change an interviewer (a merge: absent fields keep their values).
#[utoipa::path(
    put,
    path = "/api/v1/interviewers/{id}",
    tag = "interviewers",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "The interviewer's id")),
    request_body = Input,
    responses(
        (status = 200, description = "The interviewer as it now is", body = InterviewerOut),
        doc::AdminKey, doc::NotFound, doc::JsonBody,
    ),
)]
async fn update_interviewer(
    State(state): State<AppState>,
    Admin(principal): Admin,
    UrlPath(id): UrlPath<String>,
    ApiJson(input): ApiJson<Input>,
) -> Result<Response, ApiError> {
    let current = state
        .store
        .get_interviewer(&principal.workspace_id, &id)
        .await?;
    let input = input.apply(InterviewerInput {
        name: current.name,
        invitation_message: current.invitation_message,
        interview_link: current.interview_link,
    })?;
    let i = state
        .store
        .update_interviewer(&principal.workspace_id, &id, &input)
        .await?;
    Ok(Json(InterviewerOut::from(i)).into_response())
}

/// One interviewer.
#[utoipa::path(
    get,
    path = "/api/v1/interviewers/{id}",
    tag = "interviewers",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The interviewer's id")),
    responses(
        (status = 200, description = "The interviewer", body = InterviewerOut),
        doc::AnyKey, doc::NotFound,
    ),
)]
async fn get_interviewer(
    State(state): State<AppState>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let i = state
        .store
        .get_interviewer(&principal.workspace_id, &id)
        .await?;
    Ok(Json(InterviewerOut::from(i)).into_response())
}

/// The workspace's interviewers.
#[utoipa::path(
    get,
    path = "/api/v1/interviewers",
    tag = "interviewers",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Oldest first", body = InterviewerListOut),
        doc::AnyKey,
    ),
)]
async fn list_interviewers(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let data: Vec<InterviewerOut> = state
        .store
        .list_interviewers(&principal.workspace_id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(InterviewerListOut { data }).into_response())
}
