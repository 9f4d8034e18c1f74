//! The candidate pipeline's transitions, each one transaction that also queues what it causes
//! (texts, emails, jobs, webhook events) in the outbox, so a restart loses nothing and a retry
//! repeats nothing:
//!
//! - [`Store::after_call`]: a finished call → `call.ended`, then a confirmation text (or confirmed
//!   at once when texting is off or impossible);
//! - [`Store::record_inbound_sms`]: a reply → YES confirms, STOP opts out, anything else is a
//!   correction with one acknowledgement;
//! - [`Store::begin_evaluation`] / [`Store::record_evaluation`]: `processing` → `evaluated`, then
//!   routing (never over a recruiter's decision);
//! - [`Store::review_candidate`], [`Store::ingest_candidate`], [`Store::add_note`],
//!   [`Store::update_candidate_details`]: the recruiter's actions, each kept in the history with
//!   its actor.

use serde::Serialize;
use serde_json::{Value, json};

use super::outbox::{EmailPayload, NewOutbox, OutboxKind, SmsPayload, emit_event, enqueue_outbox};
use super::{
    Store, StoreError, StoreResult, from_json, is_e164, new_id, on_pool, open_tx, parse_enum,
};
use crate::model::{AnswerRecord, CallEvent, Question, Review};
use crate::pipeline::evaluate::{Outcome, route};
use crate::pipeline::sms::Intent;

/// Texts at most one confirmation per candidate per this long.
pub const CONFIRMATION_INTERVAL_MS: i64 = 60 * 60 * 1000;
/// Acknowledgements of corrections at most once per candidate per this long (no loops with
/// auto-responders).
pub const ACKNOWLEDGEMENT_INTERVAL_MS: i64 = 10 * 60 * 1000;

/// Who did something to a candidate.
pub const SYSTEM: &str = "system";
pub const CALLER: &str = "caller";

/// Insert one history row; `$detail` is a `serde_json::Value`.
macro_rules! history {
    ($tx:expr, $candidate:expr, $kind:expr, $actor:expr, $detail:expr, $now:expr) => {
        sqlx::query(
            "INSERT INTO candidate_history (id, candidate_id, kind, actor, detail, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new_id())
        .bind($candidate)
        .bind($kind)
        .bind($actor)
        .bind(($detail).to_string())
        .bind($now)
        .execute($tx)
        .await
    };
}

/// Insert one `sms_messages` row: (id, workspace, candidate, direction, purpose, from, to, body,
/// provider sid, outbox id, now). Evaluates to the rows inserted (0 for a duplicate provider sid).
macro_rules! sms_row {
    ($tx:expr, $id:expr, $ws:expr, $cand:expr, $dir:expr, $purpose:expr, $from:expr, $to:expr,
     $body:expr, $sid:expr, $outbox:expr, $now:expr) => {
        sqlx::query(
            "INSERT INTO sms_messages (id, workspace_id, candidate_id, direction, purpose, \
             from_number, to_number, body, provider_sid, outbox_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (provider_sid) DO NOTHING",
        )
        .bind($id)
        .bind($ws)
        .bind($cand)
        .bind($dir)
        .bind($purpose)
        .bind($from)
        .bind($to)
        .bind($body)
        .bind($sid)
        .bind($outbox)
        .bind($now)
        .execute($tx)
        .await
        .map(|r| r.rows_affected())
    };
}

/// Queue an outbound text to a candidate: the message row and its delivery.
macro_rules! queue_sms {
    ($tx:expr, $ws:expr, $cand:expr, $purpose:expr, $from:expr, $to:expr, $body:expr,
     $dedupe:expr, $now:expr) => {{
        let payload = SmsPayload {
            from: $from.to_string(),
            to: $to.to_string(),
            body: $body.to_string(),
        };
        let outbox = NewOutbox::sms($ws, Some($cand), &payload, $dedupe, $now);
        let queued = enqueue_outbox!($tx, &outbox)?;
        if queued {
            sms_row!(
                $tx,
                new_id(),
                $ws,
                $cand,
                "out",
                $purpose,
                &payload.from,
                &payload.to,
                &payload.body,
                None::<String>,
                &outbox.id,
                $now
            )?;
        }
        queued
    }};
}

/// Mark a candidate confirmed and queue its evaluation.
macro_rules! confirm {
    ($tx:expr, $ws:expr, $cand:expr, $call:expr, $actor:expr, $reason:expr, $dedupe:expr,
     $now:expr) => {{
        sqlx::query(
            "UPDATE candidates SET status = 'confirmed', confirmed_at = $2, updated_at = $2 \
             WHERE id = $1",
        )
        .bind($cand)
        .bind($now)
        .execute($tx)
        .await?;
        history!($tx, $cand, "confirmed", $actor, json!({ "reason": $reason }), $now)?;
        let job = json!({
            "candidate_id": $cand,
            "call_id": $call,
            "evaluation_id": new_id(),
        });
        let outbox = NewOutbox::job($ws, OutboxKind::Evaluate, Some($cand), &job, $dedupe, $now);
        enqueue_outbox!($tx, &outbox)?;
    }};
}

/// Record a decision: the review, its actor and time, a history line with `$detail`, and (when
/// `$changed`) the `candidate.approved` / `candidate.rejected` event. `$event_sql` is
/// [`EVENT_SQL`].
macro_rules! decide {
    ($tx:expr, $ws:expr, $cand:expr, $decision:expr, $actor:expr, $detail:expr, $changed:expr,
     $event_sql:expr, $now:expr) => {{
        let decision: Review = $decision;
        sqlx::query(
            "UPDATE candidates SET review = $2, review_by = $3, reviewed_at = $4, \
             updated_at = $4 WHERE id = $1",
        )
        .bind($cand)
        .bind(decision.as_str())
        .bind($actor)
        .bind($now)
        .execute($tx)
        .await?;
        history!($tx, $cand, "review", $actor, $detail, $now)?;
        let event = match decision {
            Review::Approved => Some("candidate.approved"),
            Review::Rejected => Some("candidate.rejected"),
            Review::NeedsReview => None,
        };
        if let Some(event) = event.filter(|_| $changed) {
            let row: EventRow = sqlx::query_as($event_sql)
                .bind($cand)
                .fetch_one($tx)
                .await?;
            emit_event!(
                $tx,
                $ws,
                event,
                &json!({ "candidate": candidate_json(&row), "actor": $actor, "reason": $detail["reason"] }),
                $now
            )?;
        }
    }};
}

/// What a finished call needs to decide its after-call work.
#[derive(Debug, Clone)]
pub struct AfterCall {
    pub call_id: String,
    /// Where the dialogue ended (analytics' drop-off).
    pub ended_step: String,
    /// A name was captured on this call.
    pub has_name: bool,
    /// The confirmation text to send; `None` when this server cannot send texts.
    pub confirmation_text: Option<String>,
    pub now_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCallOutcome {
    /// Done before (a retry or a second sweep).
    AlreadyDone,
    /// The call never linked a candidate (it never started).
    NoCandidate,
    /// No name was captured: nothing to confirm.
    NoName,
    TextQueued,
    /// A confirmation text went out less than an hour ago: none now.
    TextRecentlySent,
    /// Texting is off, impossible or refused: confirmed and queued for evaluation.
    ConfirmedAtOnce,
}

/// An inbound text as the webhook received it.
#[derive(Debug, Clone)]
pub struct InboundSms {
    pub message_sid: String,
    pub from: String,
    pub to: String,
    pub body: String,
    pub intent: Intent,
    /// The acknowledgement to send to a correction.
    pub acknowledgement: String,
    pub now_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundOutcome {
    /// No receptionist has this number.
    UnknownNumber,
    /// Already stored (the carrier retried its webhook).
    Duplicate,
    Stored {
        candidate_id: Option<String>,
        /// What was done: `confirmed`, `opted_out`, `opted_in`, `correction`, `stored`.
        action: &'static str,
    },
}

/// What an evaluation needs, read when it starts.
#[derive(Debug, Clone)]
pub struct EvaluationContext {
    pub workspace_id: String,
    pub candidate_id: String,
    pub call_id: Option<String>,
    pub questions: Vec<Question>,
    pub answers: Vec<AnswerRecord>,
    pub name: Option<String>,
    pub location: Option<String>,
}

/// An evaluation to store.
#[derive(Debug, Clone)]
pub struct NewEvaluation {
    pub id: String,
    pub workspace_id: String,
    pub candidate_id: String,
    pub call_id: Option<String>,
    pub outcome: Outcome,
    pub evaluator: String,
    pub actor: String,
    pub now_ms: i64,
}

/// What storing an evaluation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvaluation {
    /// False when this evaluation id was stored before (a retried job).
    pub inserted: bool,
    pub review: Option<Review>,
    /// Routing approved the candidate: ingest into this default interviewer.
    pub ingest_into: Option<String>,
}

/// A stored evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvaluationRecord {
    pub id: String,
    pub candidate_id: String,
    pub call_id: Option<String>,
    pub receptionist_id: String,
    pub score: f64,
    pub dealbreaker_failed: bool,
    pub summary: String,
    pub questions: Value,
    pub evaluator: String,
    pub created_at_ms: i64,
}

/// One line of a candidate's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub id: String,
    pub kind: String,
    pub actor: String,
    pub detail: Value,
    pub created_at_ms: i64,
}

/// A text to or from a candidate, with its delivery state for outbound ones.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SmsRecord {
    pub id: String,
    pub direction: String,
    pub purpose: String,
    pub from_number: String,
    pub to_number: String,
    pub body: String,
    /// Outbound: `pending`, `sent` or `failed`; inbound: `received`.
    pub status: String,
    pub error: Option<String>,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    Ingested,
    /// Already ingested into this interviewer: nothing was sent again.
    AlreadyIngested,
}

/// One candidate's fields as a webhook event carries them ([`EventRow`]).
const EVENT_SQL: &str = "SELECT id, receptionist_id, name, phone_number, email, location, status, \
    review, latest_score, ingested_interviewer_id FROM candidates WHERE id = $1";

type EventRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<f64>,
    Option<String>,
);

fn candidate_json(r: &EventRow) -> Value {
    json!({
        "id": r.0,
        "receptionist_id": r.1,
        "name": r.2,
        "phone_number": r.3,
        "email": r.4,
        "location": r.5,
        "status": r.6,
        "review": r.7,
        "latest_score": r.8,
        "ingested_interviewer_id": r.9,
    })
}

/// `true` when `actor` is a recruiter's key (their decisions stand over routing).
fn is_recruiter(actor: Option<&str>) -> bool {
    actor.is_some_and(|a| a.starts_with("key:"))
}

impl Store {
    /// The after-call work of a finished call, once (later calls answer `AlreadyDone`).
    pub async fn after_call(&self, a: &AfterCall) -> StoreResult<AfterCallOutcome> {
        let now = a.now_ms;
        let call_id = a.call_id.as_str();
        on_pool!(self, |pool, begin| {
            let mut tx = open_tx(pool, begin).await?;
            type CallRow = (
                String,
                String,
                Option<String>,
                String,
                Option<i64>,
                Option<i64>,
                Option<String>,
                Option<i64>,
                Option<String>,
            );
            let call: Option<CallRow> = sqlx::query_as(
                "SELECT workspace_id, receptionist_id, candidate_id, to_number, after_call_at, \
                 duration_ms, end_reason, ended_at, recording_path FROM calls WHERE id = $1",
            )
            .bind(call_id)
            .fetch_optional(&mut *tx)
            .await?;
            let (ws, receptionist_id, candidate, to_number, done, duration, reason, ended, rec) =
                call.ok_or(StoreError::NotFound)?;
            if done.is_some() {
                return Ok(AfterCallOutcome::AlreadyDone);
            }
            sqlx::query("UPDATE calls SET ended_step = $2, after_call_at = $3 WHERE id = $1")
                .bind(call_id)
                .bind(&a.ended_step)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let data = json!({
                "call_id": call_id,
                "receptionist_id": receptionist_id,
                "candidate_id": candidate,
                "duration_ms": duration,
                "end_reason": reason,
                "ended_step": a.ended_step,
                "ended_at": ended.map(crate::server::api::rfc3339),
                "has_recording": rec.is_some(),
            });
            emit_event!(&mut *tx, &ws, "call.ended", &data, now)?;
            let Some(cand) = candidate else {
                tx.commit().await?;
                return Ok(AfterCallOutcome::NoCandidate);
            };
            if !a.has_name {
                history!(
                    &mut *tx,
                    &cand,
                    "call_ended",
                    SYSTEM,
                    json!({ "call_id": call_id, "note": "no name captured: nothing to confirm" }),
                    now
                )?;
                tx.commit().await?;
                return Ok(AfterCallOutcome::NoName);
            }
            history!(
                &mut *tx,
                &cand,
                "call_ended",
                SYSTEM,
                json!({ "call_id": call_id }),
                now
            )?;
            let (sms_confirmation,): (bool,) =
                sqlx::query_as("SELECT sms_confirmation FROM receptionists WHERE id = $1")
                    .bind(&receptionist_id)
                    .fetch_one(&mut *tx)
                    .await?;
            let (phone, last_text): (Option<String>, Option<i64>) = sqlx::query_as(
                "SELECT phone_number, confirmation_sms_at FROM candidates WHERE id = $1",
            )
            .bind(&cand)
            .fetch_one(&mut *tx)
            .await?;
            let phone = phone.filter(|p| is_e164(p));
            let opted_out = match &phone {
                Some(p) => sqlx::query_as::<_, (i64,)>(
                    "SELECT COUNT(*) FROM sms_opt_outs WHERE workspace_id = $1 AND phone_number = $2",
                )
                .bind(&ws)
                .bind(p)
                .fetch_one(&mut *tx)
                .await?
                .0 > 0,
                None => false,
            };
            let reason = if !sms_confirmation {
                Some("confirmation texts are off for this receptionist")
            } else if a.confirmation_text.is_none() {
                Some("this server cannot send texts")
            } else if phone.is_none() {
                Some("the caller's number cannot receive texts")
            } else if opted_out {
                Some("the caller opted out of texts")
            } else {
                None
            };
            let outcome = if let Some(reason) = reason {
                confirm!(
                    &mut *tx,
                    &ws,
                    &cand,
                    Some(call_id),
                    SYSTEM,
                    reason,
                    Some(format!("evaluate:call:{call_id}")),
                    now
                );
                AfterCallOutcome::ConfirmedAtOnce
            } else if last_text.is_some_and(|t| now - t < CONFIRMATION_INTERVAL_MS) {
                sqlx::query(
                    "UPDATE candidates SET status = 'awaiting_confirmation', updated_at = $2 \
                     WHERE id = $1",
                )
                .bind(&cand)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                history!(
                    &mut *tx,
                    &cand,
                    "confirmation_skipped",
                    SYSTEM,
                    json!({ "call_id": call_id, "reason": "a confirmation text was sent less than an hour ago" }),
                    now
                )?;
                AfterCallOutcome::TextRecentlySent
            } else {
                let body = a.confirmation_text.as_deref().unwrap_or_default();
                let to = phone.as_deref().unwrap_or_default();
                queue_sms!(
                    &mut *tx,
                    &ws,
                    &cand,
                    "confirmation",
                    &to_number,
                    to,
                    body,
                    Some(format!("confirmation:{call_id}")),
                    now
                );
                sqlx::query(
                    "UPDATE candidates SET status = 'awaiting_confirmation', \
                     confirmation_sms_at = $2, updated_at = $2 WHERE id = $1",
                )
                .bind(&cand)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                history!(
                    &mut *tx,
                    &cand,
                    "confirmation_sent",
                    SYSTEM,
                    json!({ "call_id": call_id }),
                    now
                )?;
                AfterCallOutcome::TextQueued
            };
            tx.commit().await?;
            tracing::info!(%call_id, candidate_id = %cand, outcome = ?outcome, "after-call work queued");
            Ok(outcome)
        })
    }

    /// Ended calls whose after-call work never ran (the server stopped in between).
    pub async fn calls_awaiting_after_call(&self) -> StoreResult<Vec<String>> {
        let rows: Vec<(String,)> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(
                    "SELECT id FROM calls WHERE status IN ('completed', 'interrupted') \
                 AND after_call_at IS NULL ORDER BY accepted_at LIMIT 1000",
                )
                .fetch_all(pool)
                .await?
            }
        );
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Store a text a caller sent to a receptionist number and act on it.
    pub async fn record_inbound_sms(&self, m: &InboundSms) -> StoreResult<InboundOutcome> {
        let now = m.now_ms;
        on_pool!(self, |pool, begin| {
            let mut tx = open_tx(pool, begin).await?;
            let receptionist: Option<(String, String)> = sqlx::query_as(
                "SELECT workspace_id, id FROM receptionists WHERE phone_number = $1",
            )
            .bind(&m.to)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((ws, receptionist_id)) = receptionist else {
                return Ok(InboundOutcome::UnknownNumber);
            };
            let candidate: Option<(String, String)> = sqlx::query_as(
                "SELECT id, status FROM candidates WHERE workspace_id = $1 AND phone_number = $2",
            )
            .bind(&ws)
            .bind(&m.from)
            .fetch_optional(&mut *tx)
            .await?;
            let cand_id = candidate.as_ref().map(|(id, _)| id.clone());
            let message_id = new_id();
            let inserted = sms_row!(
                &mut *tx,
                &message_id,
                &ws,
                &cand_id,
                "in",
                "reply",
                &m.from,
                &m.to,
                &m.body,
                Some(&m.message_sid),
                None::<String>,
                now
            )?;
            if inserted == 0 {
                return Ok(InboundOutcome::Duplicate);
            }
            let data = json!({
                "message_id": message_id,
                "message_sid": m.message_sid,
                "receptionist_id": receptionist_id,
                "candidate_id": cand_id,
                "from": m.from,
                "to": m.to,
                "body": m.body,
                "intent": m.intent.as_str(),
            });
            emit_event!(&mut *tx, &ws, "sms.received", &data, now)?;
            macro_rules! opt_in {
                () => {
                    sqlx::query(
                        "DELETE FROM sms_opt_outs WHERE workspace_id = $1 AND phone_number = $2",
                    )
                    .bind(&ws)
                    .bind(&m.from)
                    .execute(&mut *tx)
                    .await?
                };
            }
            let action = match (m.intent, &candidate) {
                (Intent::OptOut, _) => {
                    sqlx::query(
                        "INSERT INTO sms_opt_outs (workspace_id, phone_number, created_at) \
                         VALUES ($1, $2, $3) ON CONFLICT (workspace_id, phone_number) DO NOTHING",
                    )
                    .bind(&ws)
                    .bind(&m.from)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    if let Some(c) = &cand_id {
                        history!(
                            &mut *tx,
                            c,
                            "opted_out",
                            CALLER,
                            json!({ "message_id": message_id }),
                            now
                        )?;
                    }
                    "opted_out"
                }
                (Intent::OptIn, _) => {
                    opt_in!();
                    if let Some(c) = &cand_id {
                        history!(
                            &mut *tx,
                            c,
                            "opted_in",
                            CALLER,
                            json!({ "message_id": message_id }),
                            now
                        )?;
                    }
                    "opted_in"
                }
                (Intent::Confirm, Some((c, status))) => {
                    opt_in!();
                    if status == "awaiting_confirmation" {
                        confirm!(
                            &mut *tx,
                            &ws,
                            c,
                            None::<String>,
                            CALLER,
                            "the caller replied to confirm",
                            Some(format!("evaluate:sms:{}", m.message_sid)),
                            now
                        );
                        "confirmed"
                    } else {
                        history!(
                            &mut *tx,
                            c,
                            "reply",
                            CALLER,
                            json!({ "message_id": message_id, "note": "nothing awaited confirmation" }),
                            now
                        )?;
                        "stored"
                    }
                }
                (Intent::Other, Some((c, _))) => {
                    history!(
                        &mut *tx,
                        c,
                        "correction",
                        CALLER,
                        json!({ "message_id": message_id, "text": m.body }),
                        now
                    )?;
                    let (last_ack,): (Option<i64>,) = sqlx::query_as(
                        "SELECT MAX(created_at) FROM sms_messages WHERE candidate_id = $1 \
                         AND purpose = 'acknowledgement'",
                    )
                    .bind(c)
                    .fetch_one(&mut *tx)
                    .await?;
                    let (opted_out,): (i64,) = sqlx::query_as(
                        "SELECT COUNT(*) FROM sms_opt_outs WHERE workspace_id = $1 AND phone_number = $2",
                    )
                    .bind(&ws)
                    .bind(&m.from)
                    .fetch_one(&mut *tx)
                    .await?;
                    if opted_out == 0
                        && last_ack.is_none_or(|t| now - t >= ACKNOWLEDGEMENT_INTERVAL_MS)
                    {
                        queue_sms!(
                            &mut *tx,
                            &ws,
                            c,
                            "acknowledgement",
                            &m.to,
                            &m.from,
                            &m.acknowledgement,
                            Some(format!("ack:{}", m.message_sid)),
                            now
                        );
                    }
                    "correction"
                }
                _ => "stored",
            };
            tx.commit().await?;
            tracing::info!(message_id = %message_id, action, "inbound text stored");
            Ok(InboundOutcome::Stored {
                candidate_id: cand_id,
                action,
            })
        })
    }

    /// Start evaluating a candidate: status `processing`, and what to evaluate: `call_id`'s
    /// answers, or the latest ended call's (none: an empty set of answers). `workspace_id`
    /// scopes the lookup when a recruiter asks.
    pub async fn begin_evaluation(
        &self,
        workspace_id: Option<&str>,
        candidate_id: &str,
        call_id: Option<&str>,
    ) -> StoreResult<EvaluationContext> {
        let now = super::now_ms();
        let (ws, receptionist_id, call): (String, String, Option<String>) =
            on_pool!(self, |pool, begin| {
                let mut tx = open_tx(pool, begin).await?;
                let row: Option<(String, String)> = sqlx::query_as(
                    "SELECT workspace_id, receptionist_id FROM candidates WHERE id = $1 \
                 AND ($2 IS NULL OR workspace_id = $2)",
                )
                .bind(candidate_id)
                .bind(workspace_id)
                .fetch_optional(&mut *tx)
                .await?;
                let (ws, receptionist_id) = row.ok_or(StoreError::NotFound)?;
                let call: Option<(String,)> = sqlx::query_as(
                    "SELECT id FROM calls WHERE candidate_id = $1 AND ($2 IS NULL OR id = $2) \
                 AND status IN ('completed', 'interrupted') \
                 ORDER BY accepted_at DESC, id DESC LIMIT 1",
                )
                .bind(candidate_id)
                .bind(call_id)
                .fetch_optional(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE candidates SET status = 'processing', updated_at = $2 WHERE id = $1",
                )
                .bind(candidate_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                (ws, receptionist_id, call.map(|(id,)| id))
            });
        let mut ctx = EvaluationContext {
            workspace_id: ws.clone(),
            candidate_id: candidate_id.to_string(),
            call_id: call.clone(),
            questions: Vec::new(),
            answers: Vec::new(),
            name: None,
            location: None,
        };
        match call {
            Some(call_id) => {
                let row = self
                    .call_by_id(&call_id)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                ctx.questions = row.settings.questions;
                let mut answers = std::collections::BTreeMap::new();
                for event in self.load_events(&call_id).await? {
                    match event {
                        CallEvent::Name { name } => ctx.name = Some(name),
                        CallEvent::Location { location } => ctx.location = Some(location),
                        CallEvent::Answer(a) => {
                            answers.insert(a.question_index, a);
                        }
                        _ => {}
                    }
                }
                ctx.answers = answers.into_values().collect();
            }
            None => {
                ctx.questions = self
                    .get_receptionist(&ws, &receptionist_id)
                    .await?
                    .settings
                    .questions;
            }
        }
        // the candidate's own details (a recruiter may have corrected them) win
        let (name, location): (Option<String>, Option<String>) = on_pool!(
            self,
            read | pool | {
                sqlx::query_as("SELECT name, location FROM candidates WHERE id = $1")
                    .bind(candidate_id)
                    .fetch_one(pool)
                    .await?
            }
        );
        ctx.name = name.or(ctx.name);
        ctx.location = location.or(ctx.location);
        Ok(ctx)
    }

    /// Store an evaluation (once per id), mark the candidate evaluated and route it.
    pub async fn record_evaluation(&self, e: &NewEvaluation) -> StoreResult<RecordedEvaluation> {
        let now = e.now_ms;
        let details = json!({ "questions": e.outcome.questions }).to_string();
        on_pool!(self, |pool, begin| {
            let mut tx = open_tx(pool, begin).await?;
            let cand: Option<(String, Option<String>, Option<String>)> = sqlx::query_as(
                "SELECT receptionist_id, review, review_by FROM candidates WHERE id = $1 \
                 AND workspace_id = $2",
            )
            .bind(&e.candidate_id)
            .bind(&e.workspace_id)
            .fetch_optional(&mut *tx)
            .await?;
            let (receptionist_id, review, review_by) = cand.ok_or(StoreError::NotFound)?;
            let current: Option<Review> = review.map(|r| parse_enum("review", &r)).transpose()?;
            let inserted = sqlx::query(
                "INSERT INTO evaluations (id, candidate_id, call_id, receptionist_id, score, \
                 dealbreaker_failed, details, summary, created_at, evaluator) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&e.id)
            .bind(&e.candidate_id)
            .bind(&e.call_id)
            .bind(&receptionist_id)
            .bind(f64::from(e.outcome.score))
            .bind(e.outcome.dealbreaker_failed)
            .bind(&details)
            .bind(&e.outcome.summary)
            .bind(now)
            .bind(&e.evaluator)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !inserted {
                // a retried job: the evaluation stands; undo this run's `processing`
                sqlx::query(
                    "UPDATE candidates SET status = 'evaluated' WHERE id = $1 \
                     AND status = 'processing'",
                )
                .bind(&e.candidate_id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Ok(RecordedEvaluation {
                    inserted: false,
                    review: current,
                    ingest_into: None,
                });
            }
            sqlx::query(
                "UPDATE candidates SET status = 'evaluated', latest_score = $2, updated_at = $3 \
                 WHERE id = $1",
            )
            .bind(&e.candidate_id)
            .bind(f64::from(e.outcome.score))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            history!(
                &mut *tx,
                &e.candidate_id,
                "evaluated",
                &e.actor,
                json!({ "evaluation_id": e.id, "score": e.outcome.score, "dealbreaker_failed": e.outcome.dealbreaker_failed, "evaluator": e.evaluator }),
                now
            )?;
            type Routing = (bool, i64, Option<String>, String);
            let (manual, threshold, default_interviewer, interviewer_ids): Routing = sqlx::query_as(
                "SELECT manual_approval, score_threshold, default_interviewer_id, interviewer_ids \
                 FROM receptionists WHERE id = $1",
            )
            .bind(&receptionist_id)
            .fetch_one(&mut *tx)
            .await?;
            let evaluation = json!({
                "id": e.id,
                "score": e.outcome.score,
                "dealbreaker_failed": e.outcome.dealbreaker_failed,
                "summary": e.outcome.summary,
                "evaluator": e.evaluator,
            });
            let row: EventRow = sqlx::query_as(EVENT_SQL)
                .bind(&e.candidate_id)
                .fetch_one(&mut *tx)
                .await?;
            emit_event!(
                &mut *tx,
                &e.workspace_id,
                "candidate.evaluated",
                &json!({ "candidate": candidate_json(&row), "evaluation": evaluation }),
                now
            )?;
            let mut ingest_into = None;
            let mut review = current;
            if is_recruiter(review_by.as_deref()) {
                history!(
                    &mut *tx,
                    &e.candidate_id,
                    "routing_skipped",
                    SYSTEM,
                    json!({ "reason": "a recruiter already decided", "review": current }),
                    now
                )?;
            } else {
                let threshold = u8::try_from(threshold.clamp(0, 100)).unwrap_or(100);
                let decided = route(
                    manual,
                    threshold,
                    e.outcome.score,
                    e.outcome.dealbreaker_failed,
                );
                review = Some(decided);
                decide!(
                    &mut *tx,
                    &e.workspace_id,
                    &e.candidate_id,
                    decided,
                    SYSTEM,
                    json!({ "review": decided, "score": e.outcome.score, "threshold": threshold, "manual_approval": manual }),
                    current != Some(decided),
                    EVENT_SQL,
                    now
                );
                if decided == Review::Approved {
                    let allowed: Vec<String> = from_json("interviewer_ids", &interviewer_ids)?;
                    ingest_into = default_interviewer.filter(|d| allowed.contains(d));
                }
            }
            tx.commit().await?;
            tracing::info!(candidate_id = %e.candidate_id, evaluation_id = %e.id, score = e.outcome.score, "candidate evaluated");
            Ok(RecordedEvaluation {
                inserted: true,
                review,
                ingest_into,
            })
        })
    }

    /// A recruiter approves or rejects (a reason is kept with a rejection). Returns whether the
    /// decision changed; a decision taken again by a recruiter only takes ownership of it.
    pub async fn review_candidate(
        &self,
        workspace_id: &str,
        candidate_id: &str,
        decision: Review,
        reason: Option<&str>,
        actor: &str,
    ) -> StoreResult<bool> {
        let now = super::now_ms();
        on_pool!(self, |pool, begin| {
            let mut tx = open_tx(pool, begin).await?;
            let row: Option<(Option<String>,)> =
                sqlx::query_as("SELECT review FROM candidates WHERE id = $1 AND workspace_id = $2")
                    .bind(candidate_id)
                    .bind(workspace_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let (review,) = row.ok_or(StoreError::NotFound)?;
            let changed = review.as_deref() != Some(decision.as_str());
            decide!(
                &mut *tx,
                workspace_id,
                candidate_id,
                decision,
                actor,
                json!({ "review": decision, "reason": reason }),
                changed,
                EVENT_SQL,
                now
            );
            tx.commit().await?;
            Ok(changed)
        })
    }

    /// Send a candidate to one of its receptionist's interviewers: approved, ingested, and an
    /// invitation queued by text (E.164 phone) and by email (when known). Ingesting again into
    /// the same interviewer changes and sends nothing. An interviewer the receptionist may not
    /// ingest into is `Invalid { field: "interviewer_id" }`.
    pub async fn ingest_candidate(
        &self,
        workspace_id: &str,
        candidate_id: &str,
        interviewer_id: &str,
        actor: &str,
    ) -> StoreResult<IngestOutcome> {
        let now = super::now_ms();
        on_pool!(self, |pool, begin| {
            let mut tx = open_tx(pool, begin).await?;
            type Cand = (
                String,
                Option<String>,
                Option<String>,
                Option<String>,
                Option<String>,
            );
            let row: Option<Cand> = sqlx::query_as(
                "SELECT receptionist_id, review, ingested_interviewer_id, phone_number, email \
                 FROM candidates WHERE id = $1 AND workspace_id = $2",
            )
            .bind(candidate_id)
            .bind(workspace_id)
            .fetch_optional(&mut *tx)
            .await?;
            let (receptionist_id, review, ingested, phone, email) =
                row.ok_or(StoreError::NotFound)?;
            let (allowed, receptionist_phone): (String, String) = sqlx::query_as(
                "SELECT interviewer_ids, phone_number FROM receptionists WHERE id = $1",
            )
            .bind(&receptionist_id)
            .fetch_one(&mut *tx)
            .await?;
            let allowed: Vec<String> = from_json("interviewer_ids", &allowed)?;
            let interviewer: Option<(String, String, String)> = sqlx::query_as(
                "SELECT name, invitation_message, interview_link FROM interviewers \
                 WHERE id = $1 AND workspace_id = $2",
            )
            .bind(interviewer_id)
            .bind(workspace_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((interviewer_name, template, link)) =
                interviewer.filter(|_| allowed.iter().any(|a| a == interviewer_id))
            else {
                return Err(StoreError::Invalid {
                    field: "interviewer_id",
                    message:
                        "not one of the interviewers this candidate's receptionist may ingest into"
                            .into(),
                });
            };
            if ingested.as_deref() == Some(interviewer_id) {
                return Ok(IngestOutcome::AlreadyIngested);
            }
            if review.as_deref() != Some(Review::Approved.as_str()) {
                decide!(
                    &mut *tx,
                    workspace_id,
                    candidate_id,
                    Review::Approved,
                    actor,
                    json!({ "review": Review::Approved, "reason": "ingested" }),
                    true,
                    EVENT_SQL,
                    now
                );
            }
            sqlx::query(
                "UPDATE candidates SET ingested_interviewer_id = $2, ingested_at = $3, \
                 updated_at = $3 WHERE id = $1",
            )
            .bind(candidate_id)
            .bind(interviewer_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let row: EventRow = sqlx::query_as(EVENT_SQL)
                .bind(candidate_id)
                .fetch_one(&mut *tx)
                .await?;
            let name = row.2.clone().unwrap_or_else(|| "there".to_string());
            let (body, subject) =
                crate::pipeline::texts::invitation(&template, &name, &interviewer_name, &link);
            let mut channels = Vec::new();
            if let Some(phone) = phone.filter(|p| is_e164(p)) {
                queue_sms!(
                    &mut *tx,
                    workspace_id,
                    candidate_id,
                    "invitation",
                    &receptionist_phone,
                    &phone,
                    &body,
                    Some(format!("invite:{candidate_id}:{interviewer_id}:sms")),
                    now
                );
                channels.push("sms");
            }
            if let Some(email) = email.filter(|e| e.contains('@')) {
                let payload = EmailPayload {
                    to: email,
                    subject,
                    body: body.clone(),
                };
                let outbox = NewOutbox::email(
                    workspace_id,
                    Some(candidate_id),
                    &payload,
                    Some(format!("invite:{candidate_id}:{interviewer_id}:email")),
                    now,
                );
                enqueue_outbox!(&mut *tx, &outbox)?;
                channels.push("email");
            }
            history!(
                &mut *tx,
                candidate_id,
                "ingested",
                actor,
                json!({ "interviewer_id": interviewer_id, "interviewer_name": interviewer_name, "invitation": channels }),
                now
            )?;
            emit_event!(
                &mut *tx,
                workspace_id,
                "candidate.ingested",
                &json!({ "candidate": candidate_json(&row), "interviewer": { "id": interviewer_id, "name": interviewer_name }, "actor": actor, "invitation": channels }),
                now
            )?;
            tx.commit().await?;
            tracing::info!(%candidate_id, %interviewer_id, "candidate ingested");
            Ok(IngestOutcome::Ingested)
        })
    }

    /// A recruiter's note, kept in the history.
    pub async fn add_note(
        &self,
        workspace_id: &str,
        candidate_id: &str,
        text: &str,
        actor: &str,
    ) -> StoreResult<HistoryEntry> {
        let now = super::now_ms();
        let id = new_id();
        let detail = json!({ "text": text });
        on_pool!(self, |pool, begin| {
            let mut tx = open_tx(pool, begin).await?;
            let found: Option<(String,)> =
                sqlx::query_as("SELECT id FROM candidates WHERE id = $1 AND workspace_id = $2")
                    .bind(candidate_id)
                    .bind(workspace_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            found.ok_or(StoreError::NotFound)?;
            sqlx::query(
                "INSERT INTO candidate_history (id, candidate_id, kind, actor, detail, created_at) \
                 VALUES ($1, $2, 'note', $3, $4, $5)",
            )
            .bind(&id)
            .bind(candidate_id)
            .bind(actor)
            .bind(detail.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(HistoryEntry {
            id,
            kind: "note".into(),
            actor: actor.to_string(),
            detail,
            created_at_ms: now,
        })
    }

    /// A recruiter corrects a candidate's name, location or email (`Some("")` clears one).
    pub async fn update_candidate_details(
        &self,
        workspace_id: &str,
        candidate_id: &str,
        name: Option<&str>,
        location: Option<&str>,
        email: Option<&str>,
        actor: &str,
    ) -> StoreResult<()> {
        let now = super::now_ms();
        let clean = |v: Option<&str>| v.map(|v| v.trim().to_string());
        let (name, location, email) = (clean(name), clean(location), clean(email));
        let changed: Vec<&str> = [("name", &name), ("location", &location), ("email", &email)]
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| *k)
            .collect();
        on_pool!(self, |pool, begin| {
            let mut tx = open_tx(pool, begin).await?;
            let affected = sqlx::query(
                "UPDATE candidates SET \
                 name = CASE WHEN $3 IS NULL THEN name WHEN $3 = '' THEN NULL ELSE $3 END, \
                 location = CASE WHEN $4 IS NULL THEN location WHEN $4 = '' THEN NULL ELSE $4 END, \
                 email = CASE WHEN $5 IS NULL THEN email WHEN $5 = '' THEN NULL ELSE $5 END, \
                 updated_at = $6 WHERE id = $1 AND workspace_id = $2",
            )
            .bind(candidate_id)
            .bind(workspace_id)
            .bind(&name)
            .bind(&location)
            .bind(&email)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if affected == 0 {
                return Err(StoreError::NotFound);
            }
            history!(
                &mut *tx,
                candidate_id,
                "details_updated",
                actor,
                json!({ "fields": changed }),
                now
            )?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Newest first.
    pub async fn candidate_evaluations(
        &self,
        candidate_id: &str,
    ) -> StoreResult<Vec<EvaluationRecord>> {
        type Row = (
            String,
            String,
            Option<String>,
            String,
            f64,
            bool,
            String,
            String,
            String,
            i64,
        );
        let rows: Vec<Row> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(
                    "SELECT id, candidate_id, call_id, receptionist_id, score, dealbreaker_failed, \
                 details, summary, evaluator, created_at FROM evaluations WHERE candidate_id = $1 \
                 ORDER BY created_at DESC, id DESC",
                )
                .bind(candidate_id)
                .fetch_all(pool)
                .await?
            }
        );
        rows.into_iter()
            .map(|r| {
                let details: Value = from_json("evaluation details", &r.6)?;
                Ok(EvaluationRecord {
                    id: r.0,
                    candidate_id: r.1,
                    call_id: r.2,
                    receptionist_id: r.3,
                    score: r.4,
                    dealbreaker_failed: r.5,
                    questions: details
                        .get("questions")
                        .cloned()
                        .unwrap_or(Value::Array(vec![])),
                    summary: r.7,
                    evaluator: r.8,
                    created_at_ms: r.9,
                })
            })
            .collect()
    }

    /// Oldest first.
    pub async fn candidate_history(&self, candidate_id: &str) -> StoreResult<Vec<HistoryEntry>> {
        let rows: Vec<(String, String, String, String, i64)> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(
                    "SELECT id, kind, actor, detail, created_at FROM candidate_history \
                 WHERE candidate_id = $1 ORDER BY created_at, id",
                )
                .bind(candidate_id)
                .fetch_all(pool)
                .await?
            }
        );
        rows.into_iter()
            .map(|(id, kind, actor, detail, created_at_ms)| {
                Ok(HistoryEntry {
                    id,
                    kind,
                    actor,
                    detail: from_json("history detail", &detail)?,
                    created_at_ms,
                })
            })
            .collect()
    }

    /// Texts to and from a candidate, oldest first, with delivery state.
    pub async fn candidate_messages(&self, candidate_id: &str) -> StoreResult<Vec<SmsRecord>> {
        type Row = (
            String,
            String,
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            i64,
        );
        let rows: Vec<Row> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(
                    "SELECT m.id, m.direction, m.purpose, m.from_number, m.to_number, m.body, \
                 o.status, o.last_error, m.created_at FROM sms_messages m \
                 LEFT JOIN outbox o ON o.id = m.outbox_id \
                 WHERE m.candidate_id = $1 ORDER BY m.created_at, m.id",
                )
                .bind(candidate_id)
                .fetch_all(pool)
                .await?
            }
        );
        Ok(rows
            .into_iter()
            .map(|r| SmsRecord {
                status: if r.1 == "in" {
                    "received".into()
                } else {
                    r.6.unwrap_or_else(|| "pending".into())
                },
                id: r.0,
                direction: r.1,
                purpose: r.2,
                from_number: r.3,
                to_number: r.4,
                body: r.5,
                error: r.7,
                created_at_ms: r.8,
            })
            .collect())
    }
}

/// A queued delivery or job that concerns a candidate (texts, emails, evaluations).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxItem {
    pub id: String,
    pub kind: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub payload: String,
    pub created_at_ms: i64,
    pub sent_at_ms: Option<i64>,
}

impl Store {
    /// A candidate's deliveries and jobs, oldest first.
    pub async fn outbox_for_candidate(&self, candidate_id: &str) -> StoreResult<Vec<OutboxItem>> {
        type Row = (
            String,
            String,
            String,
            i64,
            Option<String>,
            String,
            i64,
            Option<i64>,
        );
        let rows: Vec<Row> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(
                    "SELECT id, kind, status, attempts, last_error, payload, created_at, sent_at \
                 FROM outbox WHERE candidate_id = $1 ORDER BY created_at, id",
                )
                .bind(candidate_id)
                .fetch_all(pool)
                .await?
            }
        );
        Ok(rows
            .into_iter()
            .map(|r| OutboxItem {
                id: r.0,
                kind: r.1,
                status: r.2,
                attempts: r.3,
                last_error: r.4,
                payload: r.5,
                created_at_ms: r.6,
                sent_at_ms: r.7,
            })
            .collect())
    }
}
