//! The outbox: every delivery (SMS, email, webhook) and post-call job, queued in the same
//! transaction as the change that causes it. (Contract only; the worker side lands separately.)

use serde::{Deserialize, Serialize};

use super::{Store, StoreResult, new_id, now_ms, on_pool};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxKind {
    Sms,
    Email,
    Webhook,
    Evaluate,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SmsPayload {
    pub from: String,
    pub to: String,
    pub body: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmailPayload {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// One row to queue.
#[derive(Debug, Clone)]
pub struct NewOutbox {
    pub id: String,
    pub workspace_id: String,
    pub kind: OutboxKind,
    pub dedupe_key: Option<String>,
    pub candidate_id: Option<String>,
    pub payload: String,
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
            serde_json::to_string(p).unwrap_or_default(),
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
            serde_json::to_string(p).unwrap_or_default(),
            dedupe_key,
            now_ms,
        )
    }
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

pub const EVENT_TYPES: [&str; 6] = [
    "call.ended",
    "candidate.evaluated",
    "candidate.approved",
    "candidate.rejected",
    "candidate.ingested",
    "sms.received",
];

macro_rules! enqueue_outbox {
    ($tx:expr, $o:expr) => {{
        let o: &$crate::store::outbox::NewOutbox = $o;
        sqlx::query(
            "INSERT INTO outbox (id, workspace_id, kind, dedupe_key, candidate_id, payload, status, \
             attempts, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7) \
             ON CONFLICT (dedupe_key) DO NOTHING",
        )
        .bind(&o.id)
        .bind(&o.workspace_id)
        .bind($crate::store::enum_str(&o.kind))
        .bind(&o.dedupe_key)
        .bind(&o.candidate_id)
        .bind(&o.payload)
        .bind(o.now_ms)
        .execute($tx)
        .await
        .map(|r| r.rows_affected() == 1)
    }};
}
pub(crate) use enqueue_outbox;

macro_rules! emit_event {
    ($tx:expr, $workspace_id:expr, $event_type:expr, $data:expr, $now:expr) => {{
        let event_id = format!("evt_{}", uuid::Uuid::new_v4().simple());
        let data: &serde_json::Value = $data;
        sqlx::query(
            "INSERT INTO webhook_events (id, workspace_id, type, data, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&event_id)
        .bind($workspace_id)
        .bind($event_type)
        .bind(data.to_string())
        .bind($now)
        .execute($tx)
        .await
        .map(|_| event_id)
    }};
}
pub(crate) use emit_event;

impl Store {
    pub async fn enqueue(&self, o: &NewOutbox) -> StoreResult<bool> {
        Ok(on_pool!(self, |pool| enqueue_outbox!(pool, o)?))
    }

    pub async fn emit_event(
        &self,
        workspace_id: &str,
        event_type: &str,
        data: &serde_json::Value,
    ) -> StoreResult<String> {
        let now = now_ms();
        Ok(on_pool!(self, |pool| emit_event!(
            pool,
            workspace_id,
            event_type,
            data,
            now
        )?))
    }
}
