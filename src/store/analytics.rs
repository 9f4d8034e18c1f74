//! Analytics: where calls end (drop-off) and how a window's calls and candidates did.
//!
//! # Where a call ended ([`ended_step`])
//!
//! The step of the receptionist's script a finished call ended at, stored in `calls.ended_step`:
//! `completed` (the dialogue reached its close), else the first step the call did not finish:
//! `intro`, `disclosures`, `name`, `location`, `question_N` (1-based) or `caller_questions`.
//!
//! The dialogue runs its steps in order, so the evidence is read from the latest step backwards:
//! an answer to any question puts the call in the question steps (at the first configured question
//! with no answer, or `caller_questions` once all are answered), whatever the earlier steps left
//! behind. This matters because a step can finish without leaving its own event: a name still
//! unclear after the re-asks leaves no `Name` event and the dialogue moves on. Without later
//! evidence: a `Location` event → the questions; a `Name` event → `location` (when collected);
//! no complete agent line yet → `intro`; a configured disclosure not played in full →
//! `disclosures`; else `name`.
//!
//! A disclosure counts as played when its `Disclosure` event says `played_in_full`, or when the
//! transcript has an uninterrupted agent line with its text (a carrier that never echoes marks
//! leaves every disclosure unconfirmed, though it was heard). Counting `Disclosure` events alone
//! would not do: when a call ends, the engine records the disclosures it had not played yet, with
//! `played_in_full: false`.
//!
//! # The window's numbers ([`Store::analytics`])
//!
//! Over the workspace's calls whose `accepted_at` is in `[from_ms, to_ms]` (both inclusive),
//! optionally one receptionist's:
//! - `calls`: every such call; `completed_calls`: those with end reason `completed`;
//! - `average_duration_ms`: mean `duration_ms` of the ended ones (`ended_at` set), rounded to a
//!   millisecond; `None` when none ended;
//! - over the distinct candidates of those calls (`candidates`): `confirmed` (`confirmed_at` set),
//!   `evaluated` (at least one `evaluations` row, from any time), `approved` / `rejected`
//!   (`review`), `ingested` (`ingested_at` set), `average_score` (mean `latest_score` of those
//!   that have one; `None` when none has). A candidate's columns are read as they are now, not as
//!   they were at the end of the window;
//! - `drop_off`: ended calls counted by `ended_step`; a call ended before steps were recorded (NULL)
//!   counts under `unknown`. Steps with no call are absent.
//!
//! Per receptionist, a candidate counts once for each receptionist it called in the window; the
//! total counts it once, so the total's candidate numbers can be less than the sum of the rows'.
//! Every receptionist of the workspace (or the one asked for) is listed, with zeros when it had no
//! call in the window. Four aggregate queries, whatever the number of calls.

use std::collections::{BTreeMap, HashMap};

use sqlx::AssertSqlSafe;

use crate::model::{CallEvent, DisclosureKind, EndReason, ReceptionistSettings, Speaker};

use super::{Store, StoreError, StoreResult, on_pool};

/// The step a call ended at (see the module doc). Pure: the caller passes the settings the call
/// ran with, its events in order, and why it ended.
pub fn ended_step(
    settings: &ReceptionistSettings,
    events: &[CallEvent],
    reason: EndReason,
) -> String {
    if reason == EndReason::Completed {
        return "completed".into();
    }
    let question_count = settings.questions.len();
    let mut answered = vec![false; question_count];
    let mut any_answer = false;
    let mut has_name = false;
    let mut has_location = false;
    for event in events {
        match event {
            CallEvent::Answer(a) => {
                any_answer = true;
                if let Some(slot) = answered.get_mut(a.question_index) {
                    *slot = true;
                }
            }
            CallEvent::Name { .. } => has_name = true,
            CallEvent::Location { .. } => has_location = true,
            _ => {}
        }
    }
    let questions_step = || match answered.iter().position(|done| !done) {
        Some(i) => format!("question_{}", i + 1),
        None => "caller_questions".to_string(),
    };
    if any_answer || has_location || (has_name && !settings.collect_location) {
        return questions_step();
    }
    if has_name {
        return "location".into();
    }
    let agent_line_heard = events.iter().any(|e| {
        matches!(e, CallEvent::Transcript(line) if line.speaker == Speaker::Agent && !line.interrupted)
    });
    if !agent_line_heard {
        return "intro".into();
    }
    let configured = [
        (settings.disclose_ai, DisclosureKind::Ai),
        (settings.disclose_recording, DisclosureKind::Recording),
        (settings.disclose_e_verify, DisclosureKind::EVerify),
    ];
    let all_played = configured
        .iter()
        .filter(|(on, _)| *on)
        .all(|(_, kind)| disclosure_played(events, *kind));
    if !all_played {
        return "disclosures".into();
    }
    "name".into()
}

/// Whether the disclosure `kind` reached the caller in full (see the module doc).
fn disclosure_played(events: &[CallEvent], kind: DisclosureKind) -> bool {
    events.iter().any(|e| match e {
        CallEvent::Disclosure(d) if d.kind == kind => {
            d.played_in_full
                || events.iter().any(|e| {
                    matches!(e, CallEvent::Transcript(line)
                        if line.speaker == Speaker::Agent && !line.interrupted && line.text == d.text)
                })
        }
        _ => false,
    })
}

/// The numbers of one receptionist, or of all, over a window (definitions in the module doc).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnalyticsMetrics {
    pub calls: i64,
    pub completed_calls: i64,
    pub average_duration_ms: Option<i64>,
    pub candidates: i64,
    pub confirmed: i64,
    pub evaluated: i64,
    pub approved: i64,
    pub rejected: i64,
    pub ingested: i64,
    pub average_score: Option<f64>,
    pub drop_off: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReceptionistAnalytics {
    pub receptionist_id: String,
    pub agent_name: String,
    pub phone_number: String,
    pub metrics: AnalyticsMetrics,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Analytics {
    pub total: AnalyticsMetrics,
    /// Oldest receptionist first.
    pub receptionists: Vec<ReceptionistAnalytics>,
}

/// The window's calls, for `calls c`: `$1` workspace, `$2`..`$3` accepted_at, `$4` receptionist
/// or NULL.
const WINDOW: &str = "c.workspace_id = $1 AND c.accepted_at >= $2 AND c.accepted_at <= $3 \
    AND ($4 IS NULL OR c.receptionist_id = $4)";

/// Aggregates over candidates `k`, one row each.
const CANDIDATE_AGGREGATES: &str = "COUNT(*) AS candidates, \
    COUNT(k.confirmed_at) AS confirmed, \
    COUNT(CASE WHEN EXISTS (SELECT 1 FROM evaluations e WHERE e.candidate_id = k.id) \
        THEN 1 END) AS evaluated, \
    COUNT(CASE WHEN k.review = 'approved' THEN 1 END) AS approved, \
    COUNT(CASE WHEN k.review = 'rejected' THEN 1 END) AS rejected, \
    COUNT(k.ingested_at) AS ingested, \
    CAST(AVG(k.latest_score) AS DOUBLE PRECISION) AS average_score";

#[derive(sqlx::FromRow)]
struct CallAggregates {
    receptionist_id: String,
    calls: i64,
    completed_calls: i64,
    ended_calls: i64,
    duration_sum_ms: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct CandidateAggregates {
    candidates: i64,
    confirmed: i64,
    evaluated: i64,
    approved: i64,
    rejected: i64,
    ingested: i64,
    average_score: Option<f64>,
}

#[derive(sqlx::FromRow)]
struct ReceptionistCandidates {
    receptionist_id: String,
    #[sqlx(flatten)]
    aggregates: CandidateAggregates,
}

impl CandidateAggregates {
    fn apply(self, m: &mut AnalyticsMetrics) {
        m.candidates = self.candidates;
        m.confirmed = self.confirmed;
        m.evaluated = self.evaluated;
        m.approved = self.approved;
        m.rejected = self.rejected;
        m.ingested = self.ingested;
        m.average_score = self.average_score;
    }
}

/// What the window's queries return.
struct WindowRows {
    /// `(id, agent_name, phone_number)`, oldest first.
    receptionists: Vec<(String, String, String)>,
    calls: Vec<CallAggregates>,
    /// `(receptionist_id, step, calls)`.
    drop_off: Vec<(String, String, i64)>,
    per_receptionist: Vec<ReceptionistCandidates>,
    total: CandidateAggregates,
}

/// Mean of `sum` over `count`, rounded; `None` for no items.
fn mean_ms(sum: i64, count: i64) -> Option<i64> {
    (count > 0).then(|| (sum as f64 / count as f64).round() as i64)
}

impl Store {
    /// Record where a finished call ended (from [`ended_step`]). `NotFound` for an unknown call.
    pub async fn set_call_ended_step(&self, call_id: &str, step: &str) -> StoreResult<()> {
        let affected = on_pool!(self, |pool| {
            sqlx::query("UPDATE calls SET ended_step = $2 WHERE id = $1")
                .bind(call_id)
                .bind(step)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if affected == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// The workspace's numbers over calls accepted in `[from_ms, to_ms]`, per receptionist and in
    /// total (definitions in the module doc). With `receptionist_id`, that receptionist only;
    /// `NotFound` when it is not one of the workspace's.
    pub async fn analytics(
        &self,
        workspace_id: &str,
        from_ms: i64,
        to_ms: i64,
        receptionist_id: Option<&str>,
    ) -> StoreResult<Analytics> {
        let calls_sql = format!(
            "SELECT c.receptionist_id, COUNT(*) AS calls, \
             COUNT(CASE WHEN c.end_reason = 'completed' THEN 1 END) AS completed_calls, \
             COUNT(c.ended_at) AS ended_calls, \
             CAST(SUM(CASE WHEN c.ended_at IS NOT NULL THEN c.duration_ms END) AS BIGINT) \
                AS duration_sum_ms \
             FROM calls c WHERE {WINDOW} GROUP BY c.receptionist_id"
        );
        let drop_off_sql = format!(
            "SELECT c.receptionist_id, COALESCE(c.ended_step, 'unknown') AS step, COUNT(*) AS n \
             FROM calls c WHERE {WINDOW} AND c.ended_at IS NOT NULL \
             GROUP BY c.receptionist_id, COALESCE(c.ended_step, 'unknown')"
        );
        let per_receptionist_sql = format!(
            "SELECT w.receptionist_id, {CANDIDATE_AGGREGATES} FROM \
             (SELECT DISTINCT c.receptionist_id, c.candidate_id FROM calls c \
              WHERE {WINDOW} AND c.candidate_id IS NOT NULL) w \
             JOIN candidates k ON k.id = w.candidate_id GROUP BY w.receptionist_id"
        );
        let total_sql = format!(
            "SELECT {CANDIDATE_AGGREGATES} FROM candidates k WHERE k.id IN \
             (SELECT c.candidate_id FROM calls c WHERE {WINDOW})"
        );
        let rows: WindowRows = on_pool!(
            self,
            read | pool | {
                let receptionists = sqlx::query_as(
                    "SELECT id, agent_name, phone_number FROM receptionists \
                 WHERE workspace_id = $1 AND ($2 IS NULL OR id = $2) ORDER BY created_at, id",
                )
                .bind(workspace_id)
                .bind(receptionist_id)
                .fetch_all(pool)
                .await?;
                if receptionist_id.is_some() && receptionists.is_empty() {
                    return Err(StoreError::NotFound);
                }
                let calls = sqlx::query_as(AssertSqlSafe(calls_sql.as_str()))
                    .bind(workspace_id)
                    .bind(from_ms)
                    .bind(to_ms)
                    .bind(receptionist_id)
                    .fetch_all(pool)
                    .await?;
                let drop_off = sqlx::query_as(AssertSqlSafe(drop_off_sql.as_str()))
                    .bind(workspace_id)
                    .bind(from_ms)
                    .bind(to_ms)
                    .bind(receptionist_id)
                    .fetch_all(pool)
                    .await?;
                let per_receptionist = sqlx::query_as(AssertSqlSafe(per_receptionist_sql.as_str()))
                    .bind(workspace_id)
                    .bind(from_ms)
                    .bind(to_ms)
                    .bind(receptionist_id)
                    .fetch_all(pool)
                    .await?;
                let total = sqlx::query_as(AssertSqlSafe(total_sql.as_str()))
                    .bind(workspace_id)
                    .bind(from_ms)
                    .bind(to_ms)
                    .bind(receptionist_id)
                    .fetch_one(pool)
                    .await?;
                WindowRows {
                    receptionists,
                    calls,
                    drop_off,
                    per_receptionist,
                    total,
                }
            }
        );
        let WindowRows {
            receptionists,
            calls,
            drop_off,
            per_receptionist,
            total,
        } = rows;

        let mut by_id: HashMap<String, AnalyticsMetrics> = receptionists
            .iter()
            .map(|(id, _, _)| (id.clone(), AnalyticsMetrics::default()))
            .collect();
        let mut total_metrics = AnalyticsMetrics::default();
        let (mut ended, mut duration_sum) = (0i64, 0i64);
        for row in calls {
            let sum = row.duration_sum_ms.unwrap_or(0);
            total_metrics.calls += row.calls;
            total_metrics.completed_calls += row.completed_calls;
            ended += row.ended_calls;
            duration_sum = duration_sum.saturating_add(sum);
            if let Some(m) = by_id.get_mut(&row.receptionist_id) {
                m.calls = row.calls;
                m.completed_calls = row.completed_calls;
                m.average_duration_ms = mean_ms(sum, row.ended_calls);
            }
        }
        total_metrics.average_duration_ms = mean_ms(duration_sum, ended);
        for (receptionist_id, step, n) in drop_off {
            *total_metrics.drop_off.entry(step.clone()).or_default() += n;
            if let Some(m) = by_id.get_mut(&receptionist_id) {
                m.drop_off.insert(step, n);
            }
        }
        for row in per_receptionist {
            if let Some(m) = by_id.get_mut(&row.receptionist_id) {
                row.aggregates.apply(m);
            }
        }
        total.apply(&mut total_metrics);

        let receptionists = receptionists
            .into_iter()
            .map(|(id, agent_name, phone_number)| ReceptionistAnalytics {
                metrics: by_id.remove(&id).unwrap_or_default(),
                receptionist_id: id,
                agent_name,
                phone_number,
            })
            .collect();
        Ok(Analytics {
            total: total_metrics,
            receptionists,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AnswerRecord, AnswerValue, DisclosureRecord, QuestionKind, TranscriptLine};
    use crate::testing::sample_settings;

    fn agent(text: &str, interrupted: bool) -> CallEvent {
        CallEvent::Transcript(TranscriptLine {
            speaker: Speaker::Agent,
            text: text.into(),
            start_ms: 0,
            end_ms: 1_000,
            interrupted,
            dtmf: false,
        })
    }

    fn disclosure(kind: DisclosureKind, text: &str, played_in_full: bool) -> CallEvent {
        CallEvent::Disclosure(DisclosureRecord {
            kind,
            text: text.into(),
            played_in_full,
        })
    }

    fn all_disclosures() -> Vec<CallEvent> {
        vec![
            agent("Hi, I'm Chloe.", false),
            disclosure(DisclosureKind::Ai, "I am an AI.", true),
            disclosure(DisclosureKind::Recording, "This call is recorded.", true),
            disclosure(DisclosureKind::EVerify, "We use E-Verify.", true),
        ]
    }

    fn name() -> CallEvent {
        CallEvent::Name {
            name: "John Smith".into(),
        }
    }

    fn location() -> CallEvent {
        CallEvent::Location {
            location: "Chicago".into(),
        }
    }

    fn answer(question_index: usize) -> CallEvent {
        CallEvent::Answer(AnswerRecord {
            question_index,
            question: "q".into(),
            kind: QuestionKind::YesNo,
            raw: "yes".into(),
            value: AnswerValue::Yes,
            attempts: 1,
            via_dtmf: false,
            meets_expected: None,
            dealbreaker_failed: false,
        })
    }

    fn step(events: &[CallEvent]) -> String {
        ended_step(&sample_settings(), events, EndReason::CallerHangup)
    }

    #[test]
    fn completed_calls_end_at_completed() {
        assert_eq!(
            ended_step(&sample_settings(), &[], EndReason::Completed),
            "completed"
        );
    }

    #[test]
    fn before_the_intro_was_heard() {
        assert_eq!(step(&[]), "intro");
        // Cut off during the intro: its line is flagged interrupted; the engine also records the
        // disclosures it never played.
        let events = [
            agent("Hi, I'm Chl", true),
            disclosure(DisclosureKind::Ai, "I am an AI.", false),
            disclosure(DisclosureKind::Recording, "This call is recorded.", false),
            disclosure(DisclosureKind::EVerify, "We use E-Verify.", false),
        ];
        assert_eq!(step(&events), "intro");
    }

    #[test]
    fn during_the_disclosures() {
        let mut events = all_disclosures();
        events[3] = disclosure(DisclosureKind::EVerify, "We use E-Verify.", false);
        assert_eq!(step(&events), "disclosures");
        // A carrier without mark echoes: unconfirmed, but the uninterrupted line shows it played.
        events.push(agent("We use E-Verify.", false));
        assert_eq!(step(&events), "name");
        // Only the configured disclosures matter.
        let mut settings = sample_settings();
        settings.disclose_e_verify = false;
        let events = &all_disclosures()[..3];
        assert_eq!(
            ended_step(&settings, events, EndReason::Silence),
            "name",
            "E-Verify not configured"
        );
        settings.disclose_ai = false;
        settings.disclose_recording = false;
        assert_eq!(
            ended_step(&settings, &[agent("Hi", false)], EndReason::Silence),
            "name"
        );
    }

    #[test]
    fn name_location_and_questions_in_order() {
        let mut events = all_disclosures();
        assert_eq!(step(&events), "name");
        events.push(name());
        assert_eq!(step(&events), "location");
        events.push(location());
        assert_eq!(step(&events), "question_1");
        events.push(answer(0));
        assert_eq!(step(&events), "question_2");
        let questions = sample_settings().questions.len();
        for i in 1..questions {
            events.push(answer(i));
        }
        assert_eq!(step(&events), "caller_questions");
        assert_eq!(
            ended_step(&sample_settings(), &events, EndReason::MaxDuration),
            "caller_questions"
        );
    }

    #[test]
    fn later_steps_outrank_missing_earlier_events() {
        // A name still unclear after the re-asks leaves no Name event; the dialogue moves on.
        let mut events = all_disclosures();
        events.push(location());
        assert_eq!(step(&events), "question_1");
        events.push(answer(0));
        assert_eq!(step(&events), "question_2");
        // Without location collection a name leads straight to the questions.
        let mut settings = sample_settings();
        settings.collect_location = false;
        let mut events = all_disclosures();
        events.push(name());
        assert_eq!(
            ended_step(&settings, &events, EndReason::Disconnected),
            "question_1"
        );
        // No questions configured: the caller's questions come next.
        settings.questions.clear();
        assert_eq!(
            ended_step(&settings, &events, EndReason::Disconnected),
            "caller_questions"
        );
        // An answer to a question index the settings do not have is ignored for the position.
        let mut settings = sample_settings();
        settings.questions.truncate(1);
        let mut events = all_disclosures();
        events.push(answer(5));
        assert_eq!(
            ended_step(&settings, &events, EndReason::Silence),
            "question_1"
        );
    }
}
