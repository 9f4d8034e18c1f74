//! The candidate pipeline: one candidate per workspace and phone number.

use super::calls::{SUMMARY_COLUMNS, SummaryRow};
use super::{
    Candidate, CandidateDetail, CandidateFilter, CandidateSummary, Store, StoreError, StoreResult,
    Tab, TabCounts, on_pool, parse_enum,
};
use sqlx::AssertSqlSafe;

const COLUMNS: &str = "k.id, k.workspace_id, k.receptionist_id, k.phone_number, k.name, \
    k.location, k.email, k.status, k.created_at, k.updated_at, k.last_call_at, \
    k.review, k.review_by, k.reviewed_at, k.ingested_interviewer_id, k.ingested_at, \
    k.confirmed_at, k.confirmation_sms_at, k.latest_score, \
    r.agent_name AS receptionist_name, \
    (SELECT i.name FROM interviewers i WHERE i.id = k.ingested_interviewer_id) \
        AS ingested_interviewer_name, \
    (SELECT COUNT(*) FROM calls c WHERE c.candidate_id = k.id) AS call_count, \
    (SELECT COUNT(*) FROM evaluations e WHERE e.candidate_id = k.id) AS evaluation_count, \
    (SELECT c.duration_ms FROM calls c WHERE c.candidate_id = k.id \
        ORDER BY c.accepted_at DESC LIMIT 1) AS last_call_duration_ms, \
    (SELECT COUNT(*) FROM calls c WHERE c.candidate_id = k.id \
        AND c.recording_path IS NOT NULL) AS recording_count";

const FROM: &str = "candidates k JOIN receptionists r ON r.id = k.receptionist_id";

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    workspace_id: String,
    receptionist_id: String,
    phone_number: Option<String>,
    name: Option<String>,
    location: Option<String>,
    email: Option<String>,
    status: String,
    created_at: i64,
    updated_at: i64,
    last_call_at: i64,
    review: Option<String>,
    review_by: Option<String>,
    reviewed_at: Option<i64>,
    ingested_interviewer_id: Option<String>,
    ingested_at: Option<i64>,
    confirmed_at: Option<i64>,
    confirmation_sms_at: Option<i64>,
    latest_score: Option<f64>,
    receptionist_name: String,
    ingested_interviewer_name: Option<String>,
    call_count: i64,
    evaluation_count: i64,
    last_call_duration_ms: Option<i64>,
    recording_count: i64,
}

impl Row {
    fn into_summary(self) -> StoreResult<CandidateSummary> {
        Ok(CandidateSummary {
            candidate: Candidate {
                id: self.id,
                workspace_id: self.workspace_id,
                receptionist_id: self.receptionist_id,
                phone_number: self.phone_number,
                name: self.name,
                location: self.location,
                email: self.email,
                status: parse_enum("candidate status", &self.status)?,
                review: self.review.map(|r| parse_enum("review", &r)).transpose()?,
                review_by: self.review_by,
                reviewed_at_ms: self.reviewed_at,
                ingested_interviewer_id: self.ingested_interviewer_id,
                ingested_at_ms: self.ingested_at,
                confirmed_at_ms: self.confirmed_at,
                confirmation_sms_at_ms: self.confirmation_sms_at,
                latest_score: self.latest_score,
                created_at_ms: self.created_at,
                updated_at_ms: self.updated_at,
                last_call_at_ms: self.last_call_at,
            },
            receptionist_name: self.receptionist_name,
            ingested_interviewer_name: self.ingested_interviewer_name,
            call_count: self.call_count,
            evaluation_count: self.evaluation_count,
            last_call_duration_ms: self.last_call_duration_ms,
            has_recording: self.recording_count > 0,
        })
    }
}

/// The search over name, email (`$4`) and phone (`$5`).
const SEARCH: &str = "($4 IS NULL OR LOWER(COALESCE(k.name, '')) LIKE $4 ESCAPE '\\' \
    OR LOWER(COALESCE(k.email, '')) LIKE $4 ESCAPE '\\' \
    OR COALESCE(k.phone_number, '') LIKE $5 ESCAPE '\\')";

/// The SQL condition of a tab, on `candidates k` (constants only).
fn tab_condition(tab: Tab) -> &'static str {
    match tab {
        Tab::All => "1 = 1",
        Tab::Evaluated => "k.status = 'evaluated'",
        Tab::NeedsReview => "k.review = 'needs_review'",
        Tab::Approved => "k.review = 'approved'",
        Tab::Rejected => "k.review = 'rejected'",
    }
}

/// LIKE patterns for a search: the text, and the phone pattern (its digits when it has any).
fn search_patterns(q: Option<&str>) -> (Option<String>, Option<String>) {
    let q = q.map(str::trim).filter(|q| !q.is_empty());
    let text = q.map(like_pattern);
    let digits = q.map(|q| {
        let d: String = q.chars().filter(char::is_ascii_digit).collect();
        if d.is_empty() {
            like_pattern(q)
        } else {
            like_pattern(&d)
        }
    });
    (text, digits)
}

/// `%text%` for LIKE, lower-cased, with `\` escaping LIKE's wildcards.
fn like_pattern(text: &str) -> String {
    let mut out = String::from("%");
    for ch in text.to_lowercase().chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('%');
    out
}

impl Store {
    /// The workspace's candidates, latest call first, filtered by tab, status, receptionist and a
    /// case-insensitive search of name, email and phone (a search with digits also matches the
    /// phone number ignoring spaces, dashes and parentheses in the query); `after` continues
    /// after a row (keyset pagination, stable while rows are added).
    pub async fn list_candidates(
        &self,
        workspace_id: &str,
        filter: &CandidateFilter,
    ) -> StoreResult<Vec<CandidateSummary>> {
        let status = filter.status.map(|s| s.as_str().to_string());
        let (text, digits) = search_patterns(filter.q.as_deref());
        let (after_at, after_id) = match &filter.after {
            Some((at, id)) => (Some(*at), Some(id.clone())),
            None => (None, None),
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE k.workspace_id = $1 \
             AND ($2 IS NULL OR k.status = $2) \
             AND ($3 IS NULL OR k.receptionist_id = $3) \
             AND {SEARCH} AND {} \
             AND ($7 IS NULL OR k.last_call_at < $7 OR (k.last_call_at = $7 AND k.id < $8)) \
             ORDER BY k.last_call_at DESC, k.id DESC LIMIT $6",
            tab_condition(filter.tab)
        );
        let limit = filter.limit.unwrap_or(50).clamp(0, 500);
        let rows: Vec<Row> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(workspace_id)
                    .bind(&status)
                    .bind(&filter.receptionist_id)
                    .bind(&text)
                    .bind(&digits)
                    .bind(limit)
                    .bind(after_at)
                    .bind(&after_id)
                    .fetch_all(pool)
                    .await?
            }
        );
        rows.into_iter().map(Row::into_summary).collect()
    }

    /// How many candidates each tab holds, with the same receptionist filter and search.
    pub async fn count_candidate_tabs(
        &self,
        workspace_id: &str,
        filter: &CandidateFilter,
    ) -> StoreResult<TabCounts> {
        let (text, digits) = search_patterns(filter.q.as_deref());
        let sql = format!(
            "SELECT COUNT(*), \
             COALESCE(SUM(CASE WHEN {} THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN {} THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN {} THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN {} THEN 1 ELSE 0 END), 0) \
             FROM candidates k WHERE k.workspace_id = $1 \
             AND ($2 IS NULL OR k.receptionist_id = $2) AND {}",
            tab_condition(Tab::Evaluated),
            tab_condition(Tab::NeedsReview),
            tab_condition(Tab::Approved),
            tab_condition(Tab::Rejected),
            SEARCH.replace("$4", "$3").replace("$5", "$4"),
        );
        let row: (i64, i64, i64, i64, i64) = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(workspace_id)
                    .bind(&filter.receptionist_id)
                    .bind(&text)
                    .bind(&digits)
                    .fetch_one(pool)
                    .await?
            }
        );
        Ok(TabCounts {
            all: row.0,
            evaluated: row.1,
            needs_review: row.2,
            approved: row.3,
            rejected: row.4,
        })
    }

    /// A candidate of this workspace with its calls, newest first.
    pub async fn get_candidate(
        &self,
        workspace_id: &str,
        id: &str,
    ) -> StoreResult<CandidateDetail> {
        let sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE k.workspace_id = $1 AND k.id = $2");
        let calls_sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM calls c LEFT JOIN candidates k ON k.id = c.candidate_id \
             WHERE c.workspace_id = $1 AND c.candidate_id = $2 ORDER BY c.accepted_at DESC, c.id DESC"
        );
        let (row, calls): (Option<Row>, Vec<SummaryRow>) = on_pool!(
            self,
            read | pool | {
                let row = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(workspace_id)
                    .bind(id)
                    .fetch_optional(pool)
                    .await?;
                let calls = sqlx::query_as(AssertSqlSafe(calls_sql.as_str()))
                    .bind(workspace_id)
                    .bind(id)
                    .fetch_all(pool)
                    .await?;
                (row, calls)
            }
        );
        let summary = row.ok_or(StoreError::NotFound)?.into_summary()?;
        let calls = calls
            .into_iter()
            .map(SummaryRow::into_summary)
            .collect::<StoreResult<_>>()?;
        Ok(CandidateDetail { summary, calls })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(super::like_pattern("Ann_%"), "%ann\\_\\%%");
    }
}
