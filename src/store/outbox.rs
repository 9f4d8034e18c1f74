//! The outbox: one table for every delivery (SMS, email, webhook) and post-call job, one worker
//! loop (`crate::delivery`), one retry policy.
//!
//! Producers queue rows inside their own transactions with [`enqueue_outbox!`] and
//! [`emit_event!`], so a row exists exactly when the change that caused it was committed. A worker
//! [claims](Store::claim_outbox) due rows under a lease (`claimed_by` is a random claim token,
//! `claimed_until` its expiry), then [settles](Store::settle_outbox) each one: sent, failed, or
//! back to pending with `next_attempt_at` pushed out. Settling is fenced by the claim token, so a
//! worker whose lease expired and was taken over cannot overwrite the newer claim's outcome.

use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;

use super::{Backend, Store, StoreError, StoreResult, new_id, on_pool, open_tx, parse_enum};

/// The kinds of work the outbox carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxKind {
    Sms,
    Email,
    Webhook,
    /// Post-call job: evaluate a candidate (`crate::pipeline::run_job`).
    Evaluate,
}

impl OutboxKind {
    /// The stored text (`sms`, `email`, `webhook`, `evaluate`).
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Sms => "sms",
            OutboxKind::Email => "email",
            OutboxKind::Webhook => "webhook",
            OutboxKind::Evaluate => "evaluate",
        }
    }
}

/// A text message to send through Twilio. `from` is one of the workspace's numbers (E.164).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SmsPayload {
    pub from: String,
    pub to: String,
    pub body: String,
}

/// A plain-text email; the sender is the server's `--smtp-from`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmailPayload {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// One row to queue. `payload` is the JSON text of [`SmsPayload`]/[`EmailPayload`]/the event
/// body/any job payload.
#[derive(Debug, Clone)]
pub struct NewOutbox {
    pub id: String,
    pub workspace_id: String,
    pub kind: OutboxKind,
    /// Queueing twice with the same key stores one row (the second enqueue is a no-op).
    pub dedupe_key: Option<String>,
    pub candidate_id: Option<String>,
    pub payload: String,
    /// Creation time; the row is due at once.
    pub now_ms: i64,
}

impl NewOutbox {
    pub fn sms(
        workspace_id: &str,
        candidate_id: Option<&str>,
        p: &SmsPayload,
        dedupe_key: Option<String>,
        now_ms: i64,
    ) -> Self {
        Self::new(
            workspace_id,
            OutboxKind::Sms,
            candidate_id,
            json_text(p),
            dedupe_key,
            now_ms,
        )
    }

    pub fn email(
        workspace_id: &str,
        candidate_id: Option<&str>,
        p: &EmailPayload,
        dedupe_key: Option<String>,
        now_ms: i64,
    ) -> Self {
        Self::new(
            workspace_id,
            OutboxKind::Email,
            candidate_id,
            json_text(p),
            dedupe_key,
            now_ms,
        )
    }

    /// A post-call job (`kind` is [`OutboxKind::Evaluate`] or a later job kind).
    pub fn job(
        workspace_id: &str,
        kind: OutboxKind,
        candidate_id: Option<&str>,
        payload: &serde_json::Value,
        dedupe_key: Option<String>,
        now_ms: i64,
    ) -> Self {
        Self::new(
            workspace_id,
            kind,
            candidate_id,
            payload.to_string(),
            dedupe_key,
            now_ms,
        )
    }

    fn new(
        workspace_id: &str,
        kind: OutboxKind,
        candidate_id: Option<&str>,
        payload: String,
        dedupe_key: Option<String>,
        now_ms: i64,
    ) -> Self {
        NewOutbox {
            id: new_id(),
            workspace_id: workspace_id.to_string(),
            kind,
            dedupe_key,
            candidate_id: candidate_id.map(str::to_string),
            payload,
            now_ms,
        }
    }
}

fn json_text<T: Serialize>(value: &T) -> String {
    // Invariant: the payload structs are plain strings, which always serialize.
    serde_json::to_string(value).expect("payload of strings serializes")
}

/// The event types an endpoint may subscribe to.
pub const EVENT_TYPES: [&str; 6] = [
    "call.ended",
    "candidate.evaluated",
    "candidate.approved",
    "candidate.rejected",
    "candidate.ingested",
    "sms.received",
];

/// Queue one outbox row on a connection or transaction:
/// `enqueue_outbox!(&mut *tx, &new_outbox)` evaluates to `Result<bool, sqlx::Error>`, true when
/// inserted, false when a row with the same `dedupe_key` already exists. Use it inside an
/// `on_pool!` body (it expands to backend-neutral SQL) so the row commits with the change that
/// caused it; [`Store::enqueue`] is the standalone form.
macro_rules! enqueue_outbox {
    ($conn:expr, $outbox:expr) => {{
        let o: &$crate::store::outbox::NewOutbox = $outbox;
        ::sqlx::query(
            "INSERT INTO outbox (id, workspace_id, kind, dedupe_key, candidate_id, payload, \
             status, attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7) \
             ON CONFLICT (dedupe_key) DO NOTHING",
        )
        .bind(&o.id)
        .bind(&o.workspace_id)
        .bind(o.kind.as_str())
        .bind(&o.dedupe_key)
        .bind(&o.candidate_id)
        .bind(&o.payload)
        .bind(o.now_ms)
        .execute($conn)
        .await
        .map(|done| done.rows_affected() == 1)
    }};
}
pub(crate) use enqueue_outbox;

/// Record an event and queue its webhook deliveries, inside a transaction:
/// `emit_event!(&mut *tx, workspace_id, event_type, &data_json_value, now_ms)` evaluates to
/// `Result<String, sqlx::Error>` (the event id, `evt_...`).
///
/// It inserts the `webhook_events` row and, for each live endpoint of the workspace subscribed
/// to `event_type`, an outbox row (kind `webhook`) whose payload is the exact body to send:
/// `{"id", "type", "created_at" (RFC 3339), "data"}`, fixed now so every retry sends the same
/// bytes. `$conn` is evaluated once (a `&mut` connection) and reborrowed for each statement. An
/// event type outside [`EVENT_TYPES`] is `sqlx::Error::InvalidArgument`.
macro_rules! emit_event {
    ($conn:expr, $workspace_id:expr, $event_type:expr, $data:expr, $now_ms:expr) => {{
        let conn = $conn;
        let workspace_id: &str = $workspace_id;
        let event_type: &str = $event_type;
        let data: &::serde_json::Value = $data;
        let now_ms: i64 = $now_ms;
        async {
            if !$crate::store::outbox::EVENT_TYPES.contains(&event_type) {
                return Err(::sqlx::Error::InvalidArgument(format!(
                    "unknown event type {event_type:?}"
                )));
            }
            let event_id = $crate::store::outbox::new_event_id();
            ::sqlx::query(
                "INSERT INTO webhook_events (id, workspace_id, type, data, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&event_id)
            .bind(workspace_id)
            .bind(event_type)
            .bind(data.to_string())
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
            let endpoints: Vec<(String, String)> = ::sqlx::query_as(
                "SELECT id, events FROM webhook_endpoints \
                 WHERE workspace_id = $1 AND deleted_at IS NULL ORDER BY created_at, id",
            )
            .bind(workspace_id)
            .fetch_all(&mut *conn)
            .await?;
            let body = $crate::store::outbox::event_body(&event_id, event_type, now_ms, data);
            for (endpoint_id, events) in endpoints {
                if !$crate::store::outbox::subscribes(&events, event_type) {
                    continue;
                }
                ::sqlx::query(
                    "INSERT INTO outbox (id, workspace_id, kind, endpoint_id, event_id, payload, \
                     status, attempts, next_attempt_at, created_at) \
                     VALUES ($1, $2, 'webhook', $3, $4, $5, 'pending', 0, $6, $6)",
                )
                .bind($crate::store::new_id())
                .bind(workspace_id)
                .bind(&endpoint_id)
                .bind(&event_id)
                .bind(&body)
                .bind(now_ms)
                .execute(&mut *conn)
                .await?;
            }
            Ok::<String, ::sqlx::Error>(event_id)
        }
        .await
    }};
}
pub(crate) use emit_event;

/// `evt_` and 32 hex digits.
pub(crate) fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::new_v4().simple())
}

/// The body every delivery of an event sends, fields in this order.
pub(crate) fn event_body(
    id: &str,
    event_type: &str,
    created_at_ms: i64,
    data: &serde_json::Value,
) -> String {
    #[derive(Serialize)]
    struct Body<'a> {
        id: &'a str,
        #[serde(rename = "type")]
        event_type: &'a str,
        created_at: String,
        data: &'a serde_json::Value,
    }
    json_text(&Body {
        id,
        event_type,
        created_at: rfc3339(created_at_ms),
        data,
    })
}

/// Whether an endpoint's stored `events` (a JSON array) includes `event_type`. Unreadable lists
/// subscribe to nothing.
pub(crate) fn subscribes(events_json: &str, event_type: &str) -> bool {
    serde_json::from_str::<Vec<String>>(events_json)
        .map(|list| list.iter().any(|e| e == event_type))
        .unwrap_or(false)
}

/// RFC 3339 UTC from epoch milliseconds.
pub(crate) fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// An outbox row's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    Pending,
    Sent,
    /// Gave up (retries exhausted) or refused (a permanent error).
    Failed,
}

/// A row a worker claimed: what it needs to deliver it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedOutbox {
    pub id: String,
    pub workspace_id: String,
    pub kind: OutboxKind,
    pub candidate_id: Option<String>,
    pub endpoint_id: Option<String>,
    pub event_id: Option<String>,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i64,
    pub created_at_ms: i64,
    /// The claim token; settling must present it.
    pub claim: String,
}

/// A full outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: String,
    pub workspace_id: String,
    pub kind: OutboxKind,
    pub dedupe_key: Option<String>,
    pub candidate_id: Option<String>,
    pub endpoint_id: Option<String>,
    pub event_id: Option<String>,
    pub payload: String,
    pub status: OutboxStatus,
    pub attempts: i64,
    pub next_attempt_at_ms: i64,
    pub claimed_by: Option<String>,
    pub claimed_until_ms: Option<i64>,
    pub last_error: Option<String>,
    /// The provider's id of what was sent (Twilio's message SID).
    pub provider_ref: Option<String>,
    pub created_at_ms: i64,
    pub sent_at_ms: Option<i64>,
}

/// One try at delivering a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first.
    pub attempt: i64,
    pub started_at_ms: i64,
    pub duration_ms: i64,
    /// HTTP status (or SMTP reply code) when the other side answered.
    pub status_code: Option<i64>,
    /// Why it did not succeed; `None` on success.
    pub error: Option<String>,
}

/// What an attempt made of a claimed row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Sent {
        provider_ref: Option<String>,
    },
    /// Permanent: no more attempts.
    Failed {
        error: String,
    },
    /// Back to pending, due again at `next_attempt_at_ms`.
    Retry {
        error: String,
        next_attempt_at_ms: i64,
    },
}

/// How one attempt went, as recorded in `outbox_attempts` (the number is assigned on settling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub started_at_ms: i64,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
}

const OUTBOX_COLUMNS: &str = "id, workspace_id, kind, dedupe_key, candidate_id, endpoint_id, \
    event_id, payload, status, attempts, next_attempt_at, claimed_by, claimed_until, last_error, \
    provider_ref, created_at, sent_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    workspace_id: String,
    kind: String,
    dedupe_key: Option<String>,
    candidate_id: Option<String>,
    endpoint_id: Option<String>,
    event_id: Option<String>,
    payload: String,
    status: String,
    attempts: i64,
    next_attempt_at: i64,
    claimed_by: Option<String>,
    claimed_until: Option<i64>,
    last_error: Option<String>,
    provider_ref: Option<String>,
    created_at: i64,
    sent_at: Option<i64>,
}

impl Row {
    fn into_row(self) -> StoreResult<OutboxRow> {
        Ok(OutboxRow {
            id: self.id,
            workspace_id: self.workspace_id,
            kind: parse_enum("outbox kind", &self.kind)?,
            dedupe_key: self.dedupe_key,
            candidate_id: self.candidate_id,
            endpoint_id: self.endpoint_id,
            event_id: self.event_id,
            payload: self.payload,
            status: parse_enum("outbox status", &self.status)?,
            attempts: self.attempts,
            next_attempt_at_ms: self.next_attempt_at,
            claimed_by: self.claimed_by,
            claimed_until_ms: self.claimed_until,
            last_error: self.last_error,
            provider_ref: self.provider_ref,
            created_at_ms: self.created_at,
            sent_at_ms: self.sent_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    attempt: i64,
    started_at: i64,
    duration_ms: i64,
    status_code: Option<i64>,
    error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: String,
    workspace_id: String,
    kind: String,
    candidate_id: Option<String>,
    endpoint_id: Option<String>,
    event_id: Option<String>,
    payload: String,
    attempts: i64,
    created_at: i64,
}

impl Store {
    /// Queue one row on its own; `false` when its `dedupe_key` was already queued.
    pub async fn enqueue(&self, o: &NewOutbox) -> StoreResult<bool> {
        let inserted = on_pool!(self, |pool| enqueue_outbox!(pool, o)?);
        if inserted {
            tracing::debug!(outbox_id = %o.id, kind = o.kind.as_str(), "queued");
        }
        Ok(inserted)
    }

    /// Record an event now and queue its deliveries (see [`emit_event!`]); returns its id.
    pub async fn emit_event(
        &self,
        workspace_id: &str,
        event_type: &str,
        data: &serde_json::Value,
    ) -> StoreResult<String> {
        let now = super::now_ms();
        let id = on_pool!(self, |pool, begin| {
            let mut tx = open_tx(pool, begin).await?;
            let id = emit_event!(&mut *tx, workspace_id, event_type, data, now)?;
            tx.commit().await?;
            id
        });
        tracing::debug!(event_id = %id, event_type, "event emitted");
        Ok(id)
    }

    /// Claim up to `limit` due rows for `lease_ms`: pending, `next_attempt_at <= now`, not under
    /// another live claim. Each gets `claimed_by = claim` and `claimed_until = now + lease_ms`.
    /// PostgreSQL skips rows another worker is claiming (`FOR UPDATE SKIP LOCKED`); SQLite runs
    /// the claim under `BEGIN IMMEDIATE`, which serializes claimers. Oldest due first.
    pub async fn claim_outbox(
        &self,
        claim: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<ClaimedOutbox>> {
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // `lock` is one of two constants: no injection.
        let sql = format!(
            "UPDATE outbox SET claimed_by = $1, claimed_until = $2 WHERE id IN (\
             SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= $3 \
             AND (claimed_until IS NULL OR claimed_until < $3) \
             ORDER BY next_attempt_at, id LIMIT $4{lock}) \
             RETURNING id, workspace_id, kind, candidate_id, endpoint_id, event_id, payload, \
             attempts, created_at"
        );
        let rows: Vec<ClaimRow> = on_pool!(self, |pool, begin| {
            let mut tx = open_tx(pool, begin).await?;
            let rows = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(claim)
                .bind(now_ms.saturating_add(lease_ms))
                .bind(now_ms)
                .bind(limit.max(0))
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            rows
        });
        let mut claimed = rows
            .into_iter()
            .map(|r| {
                Ok(ClaimedOutbox {
                    kind: parse_enum("outbox kind", &r.kind)?,
                    id: r.id,
                    workspace_id: r.workspace_id,
                    candidate_id: r.candidate_id,
                    endpoint_id: r.endpoint_id,
                    event_id: r.event_id,
                    payload: r.payload,
                    attempts: r.attempts,
                    created_at_ms: r.created_at,
                    claim: claim.to_string(),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        // RETURNING gives no order guarantee.
        claimed.sort_by(|a, b| a.created_at_ms.cmp(&b.created_at_ms).then(a.id.cmp(&b.id)));
        Ok(claimed)
    }

    /// When the next pending row can be claimed (ms): the earliest `next_attempt_at`, or the end of
    /// a live claim's lease if later; `None` when nothing is pending. A read, so that an idle
    /// worker can sleep until then instead of claiming (a write transaction) every second.
    pub async fn next_outbox_due(&self) -> StoreResult<Option<i64>> {
        let row: (Option<i64>,) = on_pool!(
            self,
            read | pool
                | {
                    sqlx::query_as(
                "SELECT MIN(CASE WHEN claimed_until IS NOT NULL AND claimed_until > next_attempt_at \
                 THEN claimed_until ELSE next_attempt_at END) FROM outbox WHERE status = 'pending'",
            )
            .fetch_one(pool)
            .await?
                }
        );
        Ok(row.0)
    }

    /// Pending rows by kind (`sms`, `email`, `webhook`, `evaluate`): the outbox's depth, for
    /// metrics. Reads the `outbox_due` index's range of pending rows.
    pub async fn pending_outbox_by_kind(&self) -> StoreResult<Vec<(String, i64)>> {
        let rows: Vec<(String, i64)> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(
                    "SELECT kind, COUNT(*) FROM outbox WHERE status = 'pending' GROUP BY kind \
                 ORDER BY kind",
                )
                .fetch_all(pool)
                .await?
            }
        );
        Ok(rows)
    }

    /// Settle a claimed row and record the attempt (when one was made: `attempt` is `None` for a
    /// row refused before sending, e.g. an opted-out number). Fenced by the claim token: `false`
    /// when the row is no longer pending under `claim` (the lease expired and another worker took
    /// it), in which case nothing is written.
    pub async fn settle_outbox(
        &self,
        id: &str,
        claim: &str,
        outcome: &Settlement,
        attempt: Option<&AttemptRecord>,
    ) -> StoreResult<bool> {
        let (status, error, next_at, provider_ref, sent_at) = match outcome {
            Settlement::Sent { provider_ref } => (
                OutboxStatus::Sent,
                None,
                None,
                provider_ref.as_deref(),
                attempt.map(|a| a.started_at_ms.saturating_add(a.duration_ms)),
            ),
            Settlement::Failed { error } => {
                (OutboxStatus::Failed, Some(error.as_str()), None, None, None)
            }
            Settlement::Retry {
                error,
                next_attempt_at_ms,
            } => (
                OutboxStatus::Pending,
                Some(error.as_str()),
                Some(*next_attempt_at_ms),
                None,
                None,
            ),
        };
        let sent_at = match (status, sent_at) {
            (OutboxStatus::Sent, None) => Some(super::now_ms()),
            (_, at) => at,
        };
        let increment: i64 = if attempt.is_some() { 1 } else { 0 };
        on_pool!(self, |pool, begin| {
            let mut tx = open_tx(pool, begin).await?;
            let updated: Option<(i64,)> = sqlx::query_as(
                "UPDATE outbox SET status = $3, attempts = attempts + $4, \
                 next_attempt_at = COALESCE($5, next_attempt_at), last_error = $6, \
                 provider_ref = COALESCE($7, provider_ref), sent_at = $8, \
                 claimed_by = NULL, claimed_until = NULL \
                 WHERE id = $1 AND claimed_by = $2 AND status = 'pending' RETURNING attempts",
            )
            .bind(id)
            .bind(claim)
            .bind(super::enum_str(&status))
            .bind(increment)
            .bind(next_at)
            .bind(error)
            .bind(provider_ref)
            .bind(sent_at)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((attempts,)) = updated else {
                return Ok(false);
            };
            if let Some(a) = attempt {
                sqlx::query(
                    "INSERT INTO outbox_attempts (outbox_id, attempt, started_at, duration_ms, \
                     status_code, error) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(id)
                .bind(attempts)
                .bind(a.started_at_ms)
                .bind(a.duration_ms.max(0))
                .bind(a.status_code)
                .bind(&a.error)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    /// One outbox row by id (any workspace: the worker's and tests' view).
    pub async fn get_outbox(&self, id: &str) -> StoreResult<OutboxRow> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1");
        let row: Option<Row> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(id)
                    .fetch_optional(pool)
                    .await?
            }
        );
        row.ok_or(StoreError::NotFound)?.into_row()
    }

    /// The row queued under a dedupe key, if any.
    pub async fn outbox_by_dedupe_key(&self, key: &str) -> StoreResult<Option<OutboxRow>> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE dedupe_key = $1");
        let row: Option<Row> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(key)
                    .fetch_optional(pool)
                    .await?
            }
        );
        row.map(Row::into_row).transpose()
    }

    /// A workspace's outbox rows, oldest first (at most `limit`, up to 1000).
    pub async fn list_outbox(&self, workspace_id: &str, limit: i64) -> StoreResult<Vec<OutboxRow>> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE workspace_id = $1 \
             ORDER BY created_at, id LIMIT $2"
        );
        let rows: Vec<Row> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(workspace_id)
                    .bind(limit.clamp(0, 1000))
                    .fetch_all(pool)
                    .await?
            }
        );
        rows.into_iter().map(Row::into_row).collect()
    }

    /// A row's attempts, first to last.
    pub async fn outbox_attempts(&self, id: &str) -> StoreResult<Vec<Attempt>> {
        let rows: Vec<AttemptRow> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(
                "SELECT attempt, started_at, duration_ms, status_code, error FROM outbox_attempts \
                 WHERE outbox_id = $1 ORDER BY attempt",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
            }
        );
        Ok(rows
            .into_iter()
            .map(|r| Attempt {
                attempt: r.attempt,
                started_at_ms: r.started_at,
                duration_ms: r.duration_ms,
                status_code: r.status_code,
                error: r.error,
            })
            .collect())
    }

    /// Whether `phone` replied STOP to this workspace (and has not opted back in).
    pub async fn is_opted_out(&self, workspace_id: &str, phone: &str) -> StoreResult<bool> {
        let row: Option<(i64,)> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(
                "SELECT created_at FROM sms_opt_outs WHERE workspace_id = $1 AND phone_number = $2",
            )
            .bind(workspace_id)
            .bind(phone)
            .fetch_optional(pool)
            .await?
            }
        );
        Ok(row.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_body_has_fixed_field_order() {
        let body = event_body(
            "evt_1",
            "call.ended",
            1_500,
            &serde_json::json!({"call_id": "c1"}),
        );
        assert_eq!(
            body,
            r#"{"id":"evt_1","type":"call.ended","created_at":"1970-01-01T00:00:01.5Z","data":{"call_id":"c1"}}"#
        );
    }

    #[test]
    fn subscriptions_read_the_stored_list() {
        assert!(subscribes(
            r#"["call.ended","sms.received"]"#,
            "sms.received"
        ));
        assert!(!subscribes(r#"["call.ended"]"#, "sms.received"));
        assert!(!subscribes("not json", "call.ended"));
    }

    #[test]
    fn kinds_match_their_stored_text() {
        for kind in [
            OutboxKind::Sms,
            OutboxKind::Email,
            OutboxKind::Webhook,
            OutboxKind::Evaluate,
        ] {
            assert_eq!(super::super::enum_str(&kind), kind.as_str());
        }
    }
}
