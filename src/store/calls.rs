//! Calls and their append-only events: accept (webhook) → start (media stream) → events → finish,
//! and the start-up sweep that closes calls a crashed node left open.

use sqlx::AssertSqlSafe;
use std::collections::BTreeMap;

use crate::model::{CallEvent, CandidateStatus, EndReason};

use super::{
    CallDetail, CallRow, CallStatus, CallSummary, NewCall, StartedCall, Store, StoreError,
    StoreResult, enum_str, from_json, is_e164, new_id, now_ms, on_pool, open_tx, parse_enum,
    to_json,
};

/// One call's events for [`Store::append_events_batch`]: `events` numbered from `first_seq`.
#[derive(Debug, Clone, Copy)]
pub struct EventBatch<'a> {
    pub call_id: &'a str,
    pub first_seq: i64,
    pub events: &'a [CallEvent],
}

/// Rows per multi-row insert of events: 4 parameters each, well under SQLite's and PostgreSQL's
/// limits on parameters per statement.
const EVENT_ROWS_PER_INSERT: usize = 200;

/// One row of `call_events`: (call, seq, kind, payload).
type EventRow<'a> = (&'a str, i64, &'static str, String);

/// The multi-row insert of `rows` into `call_events`, a row already stored skipped, then `tail`.
fn insert_events<DB>(rows: &[EventRow<'_>], tail: &str) -> sqlx::QueryBuilder<DB>
where
    DB: sqlx::Database,
    DB::Arguments: Default,
    for<'t> &'t str: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    i64: for<'t> sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    let mut insert =
        sqlx::QueryBuilder::new("INSERT INTO call_events (call_id, seq, kind, payload) ");
    insert.push_values(rows, |mut row, (call_id, seq, kind, payload)| {
        row.push_bind(*call_id)
            .push_bind(*seq)
            .push_bind(*kind)
            .push_bind(payload.as_str());
    });
    insert.push(" ON CONFLICT (call_id, seq) DO NOTHING");
    insert.push(tail);
    insert
}

const CALL_COLUMNS: &str = "id, workspace_id, receptionist_id, carrier, carrier_call_sid, \
    stream_sid, from_number, to_number, forwarded_from, token_hash, node_id, status, accepted_at, \
    started_at, ended_at, duration_ms, end_reason, recording_path, recording_incomplete, \
    candidate_id, settings";

/// Columns of [`SummaryRow`], for `calls c LEFT JOIN candidates k`.
pub(super) const SUMMARY_COLUMNS: &str = "c.id, c.carrier, c.carrier_call_sid, c.receptionist_id, c.candidate_id, \
    k.name AS candidate_name, c.from_number, c.to_number, c.forwarded_from, c.status, \
    c.accepted_at, c.started_at, c.ended_at, c.duration_ms, c.end_reason, c.recording_path, \
    c.recording_incomplete";

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    workspace_id: String,
    receptionist_id: String,
    carrier: String,
    carrier_call_sid: String,
    stream_sid: Option<String>,
    from_number: String,
    to_number: String,
    forwarded_from: Option<String>,
    token_hash: String,
    node_id: String,
    status: String,
    accepted_at: i64,
    started_at: Option<i64>,
    ended_at: Option<i64>,
    duration_ms: Option<i64>,
    end_reason: Option<String>,
    recording_path: Option<String>,
    recording_incomplete: bool,
    candidate_id: Option<String>,
    settings: String,
}

impl Row {
    fn into_call(self) -> StoreResult<CallRow> {
        Ok(CallRow {
            id: self.id,
            workspace_id: self.workspace_id,
            receptionist_id: self.receptionist_id,
            carrier: self.carrier,
            call_sid: self.carrier_call_sid,
            stream_sid: self.stream_sid,
            from_number: self.from_number,
            to_number: self.to_number,
            forwarded_from: self.forwarded_from,
            token_hash: self.token_hash,
            node_id: self.node_id,
            status: parse_enum("call status", &self.status)?,
            accepted_at_ms: self.accepted_at,
            started_at_ms: self.started_at,
            ended_at_ms: self.ended_at,
            duration_ms: self.duration_ms,
            end_reason: self
                .end_reason
                .map(|r| parse_enum("end reason", &r))
                .transpose()?,
            recording_path: self.recording_path,
            recording_incomplete: self.recording_incomplete,
            candidate_id: self.candidate_id,
            settings: from_json("settings", &self.settings)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct SummaryRow {
    id: String,
    carrier: String,
    carrier_call_sid: String,
    receptionist_id: String,
    candidate_id: Option<String>,
    candidate_name: Option<String>,
    from_number: String,
    to_number: String,
    forwarded_from: Option<String>,
    status: String,
    accepted_at: i64,
    started_at: Option<i64>,
    ended_at: Option<i64>,
    duration_ms: Option<i64>,
    end_reason: Option<String>,
    recording_path: Option<String>,
    recording_incomplete: bool,
}

impl SummaryRow {
    pub(super) fn into_summary(self) -> StoreResult<CallSummary> {
        Ok(CallSummary {
            id: self.id,
            carrier: self.carrier,
            carrier_call_id: self.carrier_call_sid,
            receptionist_id: self.receptionist_id,
            candidate_id: self.candidate_id,
            candidate_name: self.candidate_name,
            from_number: self.from_number,
            to_number: self.to_number,
            forwarded_from: self.forwarded_from,
            status: parse_enum("call status", &self.status)?,
            accepted_at_ms: self.accepted_at,
            started_at_ms: self.started_at,
            ended_at_ms: self.ended_at,
            duration_ms: self.duration_ms,
            end_reason: self
                .end_reason
                .map(|r| parse_enum("end reason", &r))
                .transpose()?,
            recording_path: self.recording_path,
            recording_incomplete: self.recording_incomplete,
        })
    }
}

/// The `event` tag serde gives a call event (`transcript`, `name`, ...).
fn event_kind(event: &CallEvent) -> &'static str {
    match event {
        CallEvent::Transcript(_) => "transcript",
        CallEvent::Name { .. } => "name",
        CallEvent::Location { .. } => "location",
        CallEvent::Answer(_) => "answer",
        CallEvent::Disclosure(_) => "disclosure",
        CallEvent::Latency(_) => "latency",
        CallEvent::Language { .. } => "language",
    }
}

/// Parse a call's stored events; an unreadable one is skipped (and logged by id), so one bad row
/// never hides the rest of a call.
fn parse_events(call_id: &str, rows: Vec<(i64, String)>) -> Vec<CallEvent> {
    rows.into_iter()
        .filter_map(|(seq, payload)| match serde_json::from_str(&payload) {
            Ok(event) => Some(event),
            Err(e) => {
                // The error text may quote the payload (a transcript): log only where it broke.
                tracing::warn!(
                    %call_id,
                    seq,
                    category = ?e.classify(),
                    column = e.column(),
                    "skipping unreadable call event"
                );
                None
            }
        })
        .collect()
}

impl Store {
    /// Record a call the voice webhook accepted, and return the id of the stored call.
    ///
    /// Idempotent on the carrier's call SID: a retried webhook returns the id of the call already
    /// stored (not `c.id`). While that call has not started, the retry's `token_hash`, `node_id`
    /// and `accepted_at` replace the old ones, so the stream URL in the latest answer is the one
    /// that works; once started, the stored row is left alone.
    pub async fn accept_call(&self, c: &NewCall) -> StoreResult<String> {
        let settings = to_json(&c.settings)?;
        let id: String = on_pool!(self, |pool, begin| {
            let mut tx = open_tx(pool, begin).await?;
            sqlx::query(
                "INSERT INTO calls (id, workspace_id, receptionist_id, carrier, carrier_call_sid, \
                 from_number, to_number, forwarded_from, token_hash, node_id, status, accepted_at, \
                 settings) \
                 VALUES ($1, $2, $3, $12, $4, $5, $6, $7, $8, $9, 'accepted', $10, $11) \
                 ON CONFLICT (carrier_call_sid) DO UPDATE SET token_hash = excluded.token_hash, \
                 node_id = excluded.node_id, accepted_at = excluded.accepted_at \
                 WHERE calls.status = 'accepted'",
            )
            .bind(&c.id)
            .bind(&c.workspace_id)
            .bind(&c.receptionist_id)
            .bind(&c.call_sid)
            .bind(&c.from_number)
            .bind(&c.to_number)
            .bind(&c.forwarded_from)
            .bind(&c.token_hash)
            .bind(&c.node_id)
            .bind(c.accepted_at_ms)
            .bind(&settings)
            .bind(&c.carrier)
            .execute(&mut *tx)
            .await?;
            let (id, carrier): (String, String) =
                sqlx::query_as("SELECT id, carrier FROM calls WHERE carrier_call_sid = $1")
                    .bind(&c.call_sid)
                    .fetch_one(&mut *tx)
                    .await?;
            // carriers' call ids do not collide in practice (their formats differ); if two ever
            // did, the second carrier's call must not be handed the first one's row
            if carrier != c.carrier {
                return Err(StoreError::Conflict {
                    field: "carrier_call_id",
                    message: "already recorded for another carrier".into(),
                });
            }
            tx.commit().await?;
            id
        });
        if id != c.id {
            tracing::info!(call_id = %id, "retried webhook for an accepted call");
        }
        Ok(id)
    }

    pub async fn call_by_sid(&self, call_sid: &str) -> StoreResult<Option<CallRow>> {
        let sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE carrier_call_sid = $1");
        let row: Option<Row> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(call_sid)
                    .fetch_optional(pool)
                    .await?
            }
        );
        row.map(Row::into_call).transpose()
    }

    /// A call by id, in any workspace (the media driver's view).
    pub async fn call_by_id(&self, call_id: &str) -> StoreResult<Option<CallRow>> {
        let sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = $1");
        let row: Option<Row> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(call_id)
                    .fetch_optional(pool)
                    .await?
            }
        );
        row.map(Row::into_call).transpose()
    }

    /// Mark the call connected and link its candidate: one per workspace and E.164 phone number
    /// (an existing one makes `returning_caller` true); a caller without a usable number
    /// ("anonymous", a short code) gets a new candidate with no phone on every call.
    ///
    /// `NotFound` for an unknown call; `Conflict { field: "status" }` if it already started or
    /// ended.
    pub async fn start_call(
        &self,
        call_id: &str,
        stream_sid: &str,
        started_at_ms: i64,
        recording_path: &str,
    ) -> StoreResult<StartedCall> {
        let now = now_ms();
        on_pool!(self, |pool, begin| {
            let mut tx = open_tx(pool, begin).await?;
            let call: Option<(String, String, String, String)> = sqlx::query_as(
                "SELECT workspace_id, receptionist_id, from_number, status FROM calls WHERE id = $1",
            )
            .bind(call_id)
            .fetch_optional(&mut *tx)
            .await?;
            let (workspace_id, receptionist_id, from_number, status) =
                call.ok_or(StoreError::NotFound)?;
            if status != "accepted" {
                return Err(StoreError::Conflict {
                    field: "status",
                    message: format!("call is {status}, not accepted"),
                });
            }
            let phone = is_e164(&from_number).then_some(from_number);
            let new_candidate = new_id();
            let inserted = sqlx::query(
                "INSERT INTO candidates (id, workspace_id, receptionist_id, phone_number, status, \
                 created_at, updated_at, last_call_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $7) \
                 ON CONFLICT (workspace_id, phone_number) DO NOTHING",
            )
            .bind(&new_candidate)
            .bind(&workspace_id)
            .bind(&receptionist_id)
            .bind(&phone)
            .bind(CandidateStatus::AwaitingConfirmation.as_str())
            .bind(now)
            .bind(started_at_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let (candidate_id, returning_caller) = if inserted == 1 {
                (new_candidate, false)
            } else {
                let (id,): (String,) = sqlx::query_as(
                    "SELECT id FROM candidates WHERE workspace_id = $1 AND phone_number = $2",
                )
                .bind(&workspace_id)
                .bind(&phone)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE candidates SET last_call_at = $2, updated_at = $3 WHERE id = $1",
                )
                .bind(&id)
                .bind(started_at_ms)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                (id, true)
            };
            sqlx::query(
                "UPDATE calls SET status = 'in_progress', stream_sid = $2, started_at = $3, \
                 recording_path = $4, candidate_id = $5 WHERE id = $1",
            )
            .bind(call_id)
            .bind(stream_sid)
            .bind(started_at_ms)
            .bind(recording_path)
            .bind(&candidate_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            tracing::info!(%call_id, %candidate_id, returning_caller, "call started");
            Ok(StartedCall {
                candidate_id,
                returning_caller,
            })
        })
    }

    /// Append events `first_seq, first_seq + 1, ...` in one transaction. A retried batch (same
    /// call and seq) is a no-op for the rows already stored. Name and Location events newly stored
    /// also update the call's candidate.
    pub async fn append_events(
        &self,
        call_id: &str,
        first_seq: i64,
        events: &[CallEvent],
    ) -> StoreResult<()> {
        self.append_events_batch(&[EventBatch {
            call_id,
            first_seq,
            events,
        }])
        .await
    }

    /// Several calls' events in one transaction, all or nothing, each batch as
    /// [`Store::append_events`] stores it. `NotFound` when any of the calls is unknown. The
    /// transaction is four statements however many calls and events it carries (the calls, the
    /// events as multi-row inserts, the commit), plus one per name or location newly stored, and
    /// one statement alone when there is neither and the events fit one insert: the server
    /// gathers every call's events for a moment into one of these (`server/persist.rs`).
    pub async fn append_events_batch(&self, batches: &[EventBatch<'_>]) -> StoreResult<()> {
        // (call, seq, kind, payload) of every event, in order
        let mut rows: Vec<EventRow<'_>> = Vec::new();
        for b in batches {
            for (i, event) in b.events.iter().enumerate() {
                rows.push((
                    b.call_id,
                    b.first_seq + i as i64,
                    event_kind(event),
                    to_json(event)?,
                ));
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        // The usual batch (no name or location, one insert's worth of rows) is one statement and
        // no transaction: a statement is all or nothing on its own, and an unknown call is
        // refused by the events' foreign key. One round trip to the database instead of four
        // (begin, the calls, the events, commit): at 10 calls, most of what SQLite's worker and
        // the runtime woke for each second. Whatever it refuses goes the full way below, which
        // tells an unknown call (`NotFound`) from other faults.
        let updates_candidates = batches
            .iter()
            .flat_map(|b| b.events)
            .any(|e| matches!(e, CallEvent::Name { .. } | CallEvent::Location { .. }));
        if !updates_candidates && rows.len() <= EVENT_ROWS_PER_INSERT {
            let inserted = on_pool!(self, |pool| {
                insert_events(&rows, "")
                    .build()
                    .execute(pool)
                    .await
                    .map(|_| ())
            });
            if inserted.is_ok() {
                return Ok(());
            }
        }
        let mut calls: Vec<&str> = batches
            .iter()
            .filter(|b| !b.events.is_empty())
            .map(|b| b.call_id)
            .collect();
        calls.sort_unstable();
        calls.dedup();
        let now = now_ms();
        on_pool!(self, |pool, begin| {
            let mut tx = open_tx(pool, begin).await?;
            let mut select =
                sqlx::QueryBuilder::new("SELECT id, candidate_id FROM calls WHERE id IN (");
            let mut ids = select.separated(", ");
            for c in &calls {
                ids.push_bind(*c);
            }
            select.push(")");
            let candidates: BTreeMap<String, Option<String>> = select
                .build_query_as::<(String, Option<String>)>()
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
            if candidates.len() != calls.len() {
                return Err(StoreError::NotFound);
            }
            let mut inserted: std::collections::HashSet<(String, i64)> = Default::default();
            for chunk in rows.chunks(EVENT_ROWS_PER_INSERT) {
                inserted.extend(
                    insert_events(chunk, " RETURNING call_id, seq")
                        .build_query_as::<(String, i64)>()
                        .fetch_all(&mut *tx)
                        .await?,
                );
            }
            // A replayed event (not inserted again) must not overwrite what later events set.
            for b in batches {
                let Some(Some(candidate_id)) = candidates.get(b.call_id) else {
                    continue;
                };
                for (i, event) in b.events.iter().enumerate() {
                    let update = match event {
                        CallEvent::Name { name } => ("name", name),
                        CallEvent::Location { location } => ("location", location),
                        _ => continue,
                    };
                    if !inserted.contains(&(b.call_id.to_string(), b.first_seq + i as i64)) {
                        continue;
                    }
                    let (column, value) = update;
                    // `column` is one of two constants above: no injection.
                    sqlx::query(AssertSqlSafe(format!(
                        "UPDATE candidates SET {column} = $2, updated_at = $3 WHERE id = $1"
                    )))
                    .bind(candidate_id)
                    .bind(value)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Close a call. `ServerInterrupted` makes it `interrupted`, any other reason `completed`.
    /// Finishing a call that already ended is a no-op; `NotFound` for an unknown call.
    pub async fn finish_call(
        &self,
        call_id: &str,
        ended_at_ms: i64,
        duration_ms: i64,
        reason: EndReason,
    ) -> StoreResult<()> {
        let status = if reason == EndReason::ServerInterrupted {
            CallStatus::Interrupted
        } else {
            CallStatus::Completed
        };
        let affected = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE calls SET status = $2, ended_at = $3, duration_ms = $4, end_reason = $5 \
                 WHERE id = $1 AND status IN ('accepted', 'in_progress')",
            )
            .bind(call_id)
            .bind(enum_str(&status))
            .bind(ended_at_ms)
            .bind(duration_ms.max(0))
            .bind(reason.as_str())
            .execute(pool)
            .await?
            .rows_affected()
        });
        if affected == 0 && self.call_by_id(call_id).await?.is_none() {
            return Err(StoreError::NotFound);
        }
        tracing::info!(%call_id, reason = reason.as_str(), "call finished");
        Ok(())
    }

    /// Flag the call's recording as missing part of the call (the disk refused a write or could
    /// not keep up). Idempotent; `NotFound` for an unknown call.
    pub async fn mark_recording_incomplete(&self, call_id: &str) -> StoreResult<()> {
        let affected = on_pool!(self, |pool| {
            sqlx::query("UPDATE calls SET recording_incomplete = TRUE WHERE id = $1")
                .bind(call_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if affected == 0 {
            return Err(StoreError::NotFound);
        }
        tracing::warn!(%call_id, "call's recording flagged incomplete");
        Ok(())
    }

    /// At start-up: this node's calls still `accepted` or `in_progress` become `interrupted`
    /// (end reason `server_interrupted`). The duration is the end of the last transcript line when
    /// there is one, else the time from start to `now_ms` (0 for a call that never connected).
    /// Returns `(call_id, recording_path)` of each so the caller can repair the files.
    pub async fn interrupt_unfinished_calls(
        &self,
        node_id: &str,
        now_ms: i64,
    ) -> StoreResult<Vec<(String, Option<String>)>> {
        let open: Vec<(String, Option<i64>, Option<String>)> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(
                    "SELECT id, started_at, recording_path FROM calls \
                 WHERE node_id = $1 AND status IN ('accepted', 'in_progress') ORDER BY accepted_at",
                )
                .bind(node_id)
                .fetch_all(pool)
                .await?
            }
        );
        let mut closed = Vec::with_capacity(open.len());
        for (call_id, started_at, recording_path) in open {
            let events = self.load_events(&call_id).await?;
            let heard_until = events
                .iter()
                .filter_map(|e| match e {
                    CallEvent::Transcript(line) => Some(line.end_ms),
                    _ => None,
                })
                .max()
                .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX));
            let (duration_ms, ended_at_ms) = match (started_at, heard_until) {
                (Some(start), Some(ms)) => (ms, start.saturating_add(ms)),
                (Some(start), None) => ((now_ms - start).max(0), now_ms),
                (None, _) => (0, now_ms),
            };
            self.finish_call(
                &call_id,
                ended_at_ms,
                duration_ms,
                EndReason::ServerInterrupted,
            )
            .await?;
            closed.push((call_id, recording_path));
        }
        if !closed.is_empty() {
            tracing::warn!(%node_id, count = closed.len(), "closed calls interrupted by a restart");
        }
        Ok(closed)
    }

    /// A call's events in order.
    pub async fn load_events(&self, call_id: &str) -> StoreResult<Vec<CallEvent>> {
        let rows: Vec<(i64, String)> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(
                    "SELECT seq, payload FROM call_events WHERE call_id = $1 ORDER BY seq",
                )
                .bind(call_id)
                .fetch_all(pool)
                .await?
            }
        );
        Ok(parse_events(call_id, rows))
    }

    /// Newest first; only the call with this carrier call id when one is given.
    pub async fn list_calls(
        &self,
        workspace_id: &str,
        carrier_call_id: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<CallSummary>> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM calls c LEFT JOIN candidates k ON k.id = c.candidate_id \
             WHERE c.workspace_id = $1 AND ($4 IS NULL OR c.carrier_call_sid = $4) \
             ORDER BY c.accepted_at DESC, c.id DESC LIMIT $2 OFFSET $3"
        );
        let rows: Vec<SummaryRow> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(workspace_id)
                    .bind(limit.clamp(0, 500))
                    .bind(offset.max(0))
                    .bind(carrier_call_id)
                    .fetch_all(pool)
                    .await?
            }
        );
        rows.into_iter().map(SummaryRow::into_summary).collect()
    }

    /// A call of this workspace with everything its events say.
    pub async fn get_call(&self, workspace_id: &str, id: &str) -> StoreResult<CallDetail> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM calls c LEFT JOIN candidates k ON k.id = c.candidate_id \
             WHERE c.workspace_id = $1 AND c.id = $2"
        );
        let row: Option<SummaryRow> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(workspace_id)
                    .bind(id)
                    .fetch_optional(pool)
                    .await?
            }
        );
        let summary = row.ok_or(StoreError::NotFound)?.into_summary()?;
        let events = self.load_events(id).await?;
        let mut detail = CallDetail {
            summary,
            transcript: Vec::new(),
            name: None,
            location: None,
            answers: Vec::new(),
            disclosures: Vec::new(),
            latencies: Vec::new(),
            caller_language: None,
            agent_language: "en".into(),
        };
        let mut answers = BTreeMap::new();
        for event in events {
            match event {
                CallEvent::Transcript(line) => detail.transcript.push(line),
                CallEvent::Name { name } => detail.name = Some(name),
                CallEvent::Location { location } => detail.location = Some(location),
                CallEvent::Answer(answer) => {
                    answers.insert(answer.question_index, answer);
                }
                CallEvent::Disclosure(d) => detail.disclosures.push(d),
                CallEvent::Latency(l) => detail.latencies.push(l),
                CallEvent::Language {
                    language,
                    answered_in,
                } => {
                    if answered_in {
                        detail.agent_language = language.clone();
                    }
                    detail.caller_language = Some(language);
                }
            }
        }
        detail.answers = answers.into_values().collect();
        Ok(detail)
    }
}

/// What `receptionist verify` checks of one call: its state and how many events it has.
#[derive(Debug, Clone, PartialEq)]
pub struct CallAudit {
    pub id: String,
    pub status: String,
    pub started_at: Option<i64>,
    pub duration_ms: Option<i64>,
    pub end_reason: Option<String>,
    pub recording_path: Option<String>,
    pub after_call_done: bool,
    pub events: i64,
    /// The highest event sequence number, -1 without events.
    pub max_seq: i64,
}

impl Store {
    /// Every call (oldest first) with its event count: what `receptionist verify` reads.
    pub async fn audit_calls(&self) -> StoreResult<Vec<CallAudit>> {
        type Row = (
            String,
            String,
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<i64>,
            i64,
            i64,
        );
        let rows: Vec<Row> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(
                    "SELECT c.id, c.status, c.started_at, c.duration_ms, c.end_reason, \
                 c.recording_path, c.after_call_at, \
                 (SELECT COUNT(*) FROM call_events e WHERE e.call_id = c.id), \
                 (SELECT COALESCE(MAX(e.seq), -1) FROM call_events e WHERE e.call_id = c.id) \
                 FROM calls c ORDER BY c.accepted_at, c.id",
                )
                .fetch_all(pool)
                .await?
            }
        );
        Ok(rows
            .into_iter()
            .map(
                |(
                    id,
                    status,
                    started_at,
                    duration_ms,
                    end_reason,
                    recording_path,
                    after,
                    events,
                    max_seq,
                )| {
                    CallAudit {
                        id,
                        status,
                        started_at,
                        duration_ms,
                        end_reason,
                        recording_path,
                        after_call_done: after.is_some(),
                        events,
                        max_seq,
                    }
                },
            )
            .collect())
    }
}
