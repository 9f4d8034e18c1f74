//! `GET /api/v1/analytics?from=&to=&receptionist_id=`: calls, outcomes and drop-off per
//! receptionist over a window. Any key of the workspace may read it (viewer too).
//!
//! The window applies to calls' `accepted_at` and includes both ends. `from` and `to` are RFC 3339
//! timestamps or `YYYY-MM-DD` dates (UTC): a `from` date starts at that day's midnight, a `to`
//! date ends at the last millisecond of that day. Defaults: `to` is now, `from` is 30 days before
//! `to`; an empty value counts as absent. A value that is neither form, or `from` after `to`,
//! answers 422 naming the field; an unknown query field answers 400; a `receptionist_id` that is
//! not one of the workspace's answers 404.
//!
//! ```json
//! {"from": "...", "to": "...", "total": M,
//!  "receptionists": [{"receptionist_id", "agent_name", "phone_number", ...M}]}
//! ```
//!
//! where M is `calls`, `completed_calls`, `average_duration_ms`, `candidates`, `confirmed`,
//! `evaluated`, `approved`, `rejected`, `ingested`, `average_score` and `drop_off` (step → calls),
//! defined in `store/analytics.rs`. Every receptionist is listed, with zeros when it had no call in
//! the window, oldest first.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, Time};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiQuery, rfc3339};
use crate::server::AppState;
use crate::server::error::{ApiError, ErrorBody, doc};
use crate::store::{AnalyticsMetrics, Principal, ReceptionistAnalytics, now_ms};

/// The window when `from` is not given: this long before `to`.
pub const DEFAULT_WINDOW_MS: i64 = 30 * 24 * 60 * 60 * 1000;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_analytics))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AnalyticsQuery {
    /// Start of the window (inclusive): an RFC 3339 timestamp, or a `YYYY-MM-DD` date (that
    /// day's midnight, UTC). Default: 30 days before `to`.
    from: Option<String>,
    /// End of the window (inclusive): an RFC 3339 timestamp, or a `YYYY-MM-DD` date (that day's
    /// last millisecond, UTC). Default: now.
    to: Option<String>,
    /// Only this receptionist (one of the workspace's; else 404).
    receptionist_id: Option<String>,
}

/// The numbers of one receptionist, or of all, over the window (calls by their `accepted_at`).
#[derive(Serialize, ToSchema)]
#[schema(as = AnalyticsMetrics)]
struct MetricsOut {
    calls: i64,
    /// Calls with end reason `completed`.
    completed_calls: i64,
    /// Mean duration of the ended calls; `null` when none ended.
    average_duration_ms: Option<i64>,
    /// Distinct candidates of the window's calls; the next five count among them (as they
    /// are now).
    candidates: i64,
    confirmed: i64,
    /// With at least one evaluation.
    evaluated: i64,
    approved: i64,
    rejected: i64,
    ingested: i64,
    /// Mean latest score of those that have one; `null` when none has.
    average_score: Option<f64>,
    /// Ended calls by the step they ended at: `completed`, `intro`, `disclosures`, `name`,
    /// `location`, `question_N` (1-based), `caller_questions`, or `unknown`. Steps with no call
    /// are absent.
    drop_off: BTreeMap<String, i64>,
}

impl From<AnalyticsMetrics> for MetricsOut {
    fn from(m: AnalyticsMetrics) -> Self {
        MetricsOut {
            calls: m.calls,
            completed_calls: m.completed_calls,
            average_duration_ms: m.average_duration_ms,
            candidates: m.candidates,
            confirmed: m.confirmed,
            evaluated: m.evaluated,
            approved: m.approved,
            rejected: m.rejected,
            ingested: m.ingested,
            average_score: m.average_score,
            drop_off: m.drop_off,
        }
    }
}

/// One receptionist's numbers.
#[derive(Serialize, ToSchema)]
#[schema(as = ReceptionistAnalytics)]
struct ReceptionistOut {
    receptionist_id: String,
    agent_name: String,
    phone_number: String,
    #[serde(flatten)]
    metrics: MetricsOut,
}

/// The window, the workspace's totals and every receptionist's numbers (oldest receptionist
/// first, with zeros when it had no call in the window).
#[derive(Serialize, ToSchema)]
#[schema(as = Analytics)]
struct AnalyticsOut {
    #[schema(format = DateTime)]
    from: String,
    #[schema(format = DateTime)]
    to: String,
    total: MetricsOut,
    receptionists: Vec<ReceptionistOut>,
}

/// Which end of the window a value is; a date means that day's first or last millisecond.
#[derive(Clone, Copy)]
enum Bound {
    From,
    To,
}

impl Bound {
    fn field(self) -> &'static str {
        match self {
            Bound::From => "from",
            Bound::To => "to",
        }
    }
}

fn to_ms(t: OffsetDateTime) -> i64 {
    // RFC 3339 years are 0000-9999: milliseconds fit in an i64.
    (t.unix_timestamp_nanos().div_euclid(1_000_000)) as i64
}

/// An RFC 3339 timestamp or a `YYYY-MM-DD` date (UTC) as epoch milliseconds.
fn parse_bound(bound: Bound, value: &str) -> Result<i64, ApiError> {
    if let Ok(t) = OffsetDateTime::parse(value, &Rfc3339) {
        return Ok(to_ms(t));
    }
    let date = Date::parse(value, format_description!("[year]-[month]-[day]")).map_err(|_| {
        ApiError::validation(
            bound.field(),
            "must be an RFC 3339 timestamp (2024-05-01T00:00:00Z) or a date (2024-05-01)",
        )
    })?;
    let midnight = to_ms(date.with_time(Time::MIDNIGHT).assume_utc());
    Ok(match bound {
        Bound::From => midnight,
        Bound::To => midnight + DAY_MS - 1,
    })
}

fn window(from: Option<&str>, to: Option<&str>, now: i64) -> Result<(i64, i64), ApiError> {
    let to = match to.filter(|v| !v.is_empty()) {
        Some(v) => parse_bound(Bound::To, v)?,
        None => now,
    };
    let from = match from.filter(|v| !v.is_empty()) {
        Some(v) => parse_bound(Bound::From, v)?,
        None => to.saturating_sub(DEFAULT_WINDOW_MS),
    };
    if from > to {
        return Err(ApiError::validation("from", "must not be after `to`"));
    }
    Ok((from, to))
}

/// Calls, outcomes and drop-off per receptionist over a window.
#[utoipa::path(
    get,
    path = "/api/v1/analytics",
    tag = "analytics",
    security(("bearer" = [])),
    params(AnalyticsQuery),
    responses(
        (status = 200, description = "The window's numbers", body = AnalyticsOut),
        doc::AnyKey, doc::Query, doc::Invalid,
        (status = 404, description = "`receptionist_id` is not one of the workspace's", body = ErrorBody),
    ),
)]
async fn get_analytics(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<AnalyticsQuery>,
) -> Result<Response, ApiError> {
    let (from, to) = window(query.from.as_deref(), query.to.as_deref(), now_ms())?;
    let receptionist_id = query.receptionist_id.as_deref().filter(|v| !v.is_empty());
    let analytics = state
        .store
        .analytics(&principal.workspace_id, from, to, receptionist_id)
        .await?;
    let receptionists = analytics
        .receptionists
        .into_iter()
        .map(|r: ReceptionistAnalytics| ReceptionistOut {
            receptionist_id: r.receptionist_id,
            agent_name: r.agent_name,
            phone_number: r.phone_number,
            metrics: r.metrics.into(),
        })
        .collect();
    Ok(Json(AnalyticsOut {
        from: rfc3339(from),
        to: rfc3339(to),
        total: analytics.total.into(),
        receptionists,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(e: ApiError) -> String {
        match e {
            ApiError::Validation { field, .. } => field,
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn bounds_parse_timestamps_and_whole_days() {
        let day = 1_714_521_600_000; // 2024-05-01T00:00:00Z
        assert_eq!(parse_bound(Bound::From, "2024-05-01").unwrap(), day);
        assert_eq!(
            parse_bound(Bound::To, "2024-05-01").unwrap(),
            day + DAY_MS - 1
        );
        assert_eq!(
            parse_bound(Bound::To, "2024-05-01T00:00:01.5Z").unwrap(),
            day + 1_500
        );
        assert_eq!(
            parse_bound(Bound::From, "2024-05-01T02:00:00+02:00").unwrap(),
            day
        );
        for bad in [
            "2024-13-01",
            "yesterday",
            "2024-05-01T00:00:00",
            "1714521600000",
        ] {
            assert_eq!(
                field(parse_bound(Bound::To, bad).unwrap_err()),
                "to",
                "{bad}"
            );
        }
    }

    #[test]
    fn window_defaults_and_order() {
        let now = 1_714_521_600_000;
        assert_eq!(
            window(None, None, now).unwrap(),
            (now - DEFAULT_WINDOW_MS, now)
        );
        assert_eq!(
            window(Some(""), Some(""), now).unwrap(),
            (now - DEFAULT_WINDOW_MS, now)
        );
        let (from, to) = window(None, Some("2024-01-31"), now).unwrap();
        assert_eq!(to - from, DEFAULT_WINDOW_MS);
        assert_eq!(
            window(Some("2024-05-01"), Some("2024-05-01"), now).unwrap(),
            (now, now + DAY_MS - 1)
        );
        assert_eq!(
            field(window(Some("2024-05-02"), Some("2024-05-01"), now).unwrap_err()),
            "from"
        );
        assert_eq!(field(window(Some("x"), None, now).unwrap_err()), "from");
    }
}
