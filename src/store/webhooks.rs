//! Webhook endpoints (soft-deleted, scoped by workspace) and the deliveries the outbox made to
//! them, with their attempts.

use rand::RngCore;
use sqlx::AssertSqlSafe;

use super::outbox::{Attempt, OutboxStatus};
use super::{
    Store, StoreError, StoreResult, from_json, new_id, now_ms, on_pool, open_tx, parse_enum,
    to_json,
};

/// A registered receiver of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    pub id: String,
    pub workspace_id: String,
    pub url: String,
    /// Subscribed event types (a subset of `EVENT_TYPES`).
    pub events: Vec<String>,
    /// `whsec_` and 64 hex digits: the HMAC key of the signatures.
    pub secret: String,
    pub created_at_ms: i64,
    pub deleted_at_ms: Option<i64>,
}

/// One event's delivery to one endpoint: an outbox row of kind `webhook`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The outbox row id.
    pub id: String,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub status: OutboxStatus,
    pub attempts: Vec<Attempt>,
    pub last_error: Option<String>,
    /// When the next attempt is due (pending rows only).
    pub next_attempt_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub sent_at_ms: Option<i64>,
}

/// A new endpoint secret: `whsec_` and 64 hex digits (256 random bits).
fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("whsec_{hex}")
}

type EndpointRow = (String, String, String, String, String, i64, Option<i64>);

const ENDPOINT_COLUMNS: &str = "id, workspace_id, url, events, secret, created_at, deleted_at";

fn endpoint(row: EndpointRow) -> StoreResult<WebhookEndpoint> {
    let (id, workspace_id, url, events, secret, created_at_ms, deleted_at_ms) = row;
    Ok(WebhookEndpoint {
        events: from_json("webhook events", &events)?,
        id,
        workspace_id,
        url,
        secret,
        created_at_ms,
        deleted_at_ms,
    })
}

impl Store {
    /// Register an endpoint; its secret is generated here. The caller validates `url` and
    /// `events`.
    pub async fn create_webhook_endpoint(
        &self,
        workspace_id: &str,
        url: &str,
        events: &[String],
    ) -> StoreResult<WebhookEndpoint> {
        let e = WebhookEndpoint {
            id: new_id(),
            workspace_id: workspace_id.to_string(),
            url: url.to_string(),
            events: events.to_vec(),
            secret: generate_secret(),
            created_at_ms: now_ms(),
            deleted_at_ms: None,
        };
        let events_json = to_json(&e.events)?;
        let result = on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO webhook_endpoints (id, workspace_id, url, events, secret, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&e.id)
            .bind(&e.workspace_id)
            .bind(&e.url)
            .bind(&events_json)
            .bind(&e.secret)
            .bind(e.created_at_ms)
            .execute(pool)
            .await
            .map(|_| ())
        });
        match result {
            Ok(_) => {}
            Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
                return Err(StoreError::NotFound);
            }
            Err(err) => return Err(err.into()),
        }
        tracing::info!(%workspace_id, endpoint_id = %e.id, "webhook endpoint created");
        Ok(e)
    }

    /// A workspace's live endpoints, oldest first.
    pub async fn list_webhook_endpoints(
        &self,
        workspace_id: &str,
    ) -> StoreResult<Vec<WebhookEndpoint>> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints \
             WHERE workspace_id = $1 AND deleted_at IS NULL ORDER BY created_at, id"
        );
        let rows: Vec<EndpointRow> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(workspace_id)
                    .fetch_all(pool)
                    .await?
            }
        );
        rows.into_iter().map(endpoint).collect()
    }

    /// A live endpoint of this workspace; another workspace's or a deleted one is `NotFound`.
    pub async fn get_webhook_endpoint(
        &self,
        workspace_id: &str,
        id: &str,
    ) -> StoreResult<WebhookEndpoint> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints \
             WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL"
        );
        let row: Option<EndpointRow> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(workspace_id)
                    .bind(id)
                    .fetch_optional(pool)
                    .await?
            }
        );
        endpoint(row.ok_or(StoreError::NotFound)?)
    }

    /// An endpoint by id whatever its workspace or state (the delivery worker's view: a deleted
    /// endpoint comes back with `deleted_at_ms` set).
    pub async fn webhook_endpoint_by_id(&self, id: &str) -> StoreResult<Option<WebhookEndpoint>> {
        let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1");
        let row: Option<EndpointRow> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(id)
                    .fetch_optional(pool)
                    .await?
            }
        );
        row.map(endpoint).transpose()
    }

    /// Soft-delete an endpoint and cancel its pending deliveries (status `failed`, last error
    /// "endpoint deleted"), in one transaction. Returns how many deliveries were cancelled.
    /// `NotFound` for another workspace's endpoint or one already deleted.
    pub async fn delete_webhook_endpoint(&self, workspace_id: &str, id: &str) -> StoreResult<u64> {
        let now = now_ms();
        let cancelled = on_pool!(self, |pool, begin| {
            let mut tx = open_tx(pool, begin).await?;
            let deleted = sqlx::query(
                "UPDATE webhook_endpoints SET deleted_at = $3 \
                 WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL",
            )
            .bind(workspace_id)
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if deleted == 0 {
                return Err(StoreError::NotFound);
            }
            // A delivery in flight keeps its claim: its worker finds the endpoint deleted or
            // loses the fence when settling; either way nothing is sent after this commit
            // except what was already on the wire.
            let cancelled = sqlx::query(
                "UPDATE outbox SET status = 'failed', last_error = 'endpoint deleted', \
                 claimed_by = NULL, claimed_until = NULL \
                 WHERE endpoint_id = $1 AND status = 'pending'",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            cancelled
        });
        tracing::info!(%workspace_id, endpoint_id = %id, cancelled, "webhook endpoint deleted");
        Ok(cancelled)
    }

    /// Deliveries to a live endpoint of this workspace, newest first, each with its attempts.
    /// `before` is a cursor: the id of the last delivery of the previous page. `limit` is
    /// clamped to 1..=500.
    pub async fn list_deliveries(
        &self,
        workspace_id: &str,
        endpoint_id: &str,
        limit: i64,
        before: Option<&str>,
    ) -> StoreResult<Vec<Delivery>> {
        // Also checks the workspace: another workspace's endpoint is NotFound.
        self.get_webhook_endpoint(workspace_id, endpoint_id).await?;
        let cursor: Option<(i64, String)> = match before {
            None => None,
            Some(id) => {
                let row: Option<(i64, String)> = on_pool!(
                    self,
                    read | pool | {
                        sqlx::query_as(
                            "SELECT created_at, id FROM outbox WHERE id = $1 AND endpoint_id = $2",
                        )
                        .bind(id)
                        .bind(endpoint_id)
                        .fetch_optional(pool)
                        .await?
                    }
                );
                Some(row.ok_or(StoreError::NotFound)?)
            }
        };
        let (cursor_at, cursor_id) = match &cursor {
            Some((at, id)) => (Some(*at), Some(id.as_str())),
            None => (None, None),
        };
        type DeliveryRow = (
            String,
            Option<String>,
            Option<String>,
            String,
            Option<String>,
            i64,
            i64,
            Option<i64>,
        );
        let rows: Vec<DeliveryRow> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(
                    "SELECT o.id, o.event_id, e.type, o.status, o.last_error, o.next_attempt_at, \
                 o.created_at, o.sent_at FROM outbox o \
                 LEFT JOIN webhook_events e ON e.id = o.event_id \
                 WHERE o.workspace_id = $1 AND o.endpoint_id = $2 \
                 AND ($3 IS NULL OR o.created_at < $3 OR (o.created_at = $3 AND o.id < $4)) \
                 ORDER BY o.created_at DESC, o.id DESC LIMIT $5",
                )
                .bind(workspace_id)
                .bind(endpoint_id)
                .bind(cursor_at)
                .bind(cursor_id)
                .bind(limit.clamp(1, 500))
                .fetch_all(pool)
                .await?
            }
        );
        let mut out = Vec::with_capacity(rows.len());
        for (id, event_id, event_type, status, last_error, next_at, created_at, sent_at) in rows {
            let status: OutboxStatus = parse_enum("outbox status", &status)?;
            out.push(Delivery {
                attempts: self.outbox_attempts(&id).await?,
                id,
                event_id,
                event_type,
                status,
                last_error,
                next_attempt_at_ms: (status == OutboxStatus::Pending).then_some(next_at),
                created_at_ms: created_at,
                sent_at_ms: sent_at,
            });
        }
        Ok(out)
    }
}
