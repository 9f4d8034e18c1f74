//! The outbox worker: one loop that delivers every queued row (SMS through Twilio, email through
//! SMTP, signed webhooks, post-call jobs) under one retry policy.
//!
//! A [`Worker`] claims due rows under a lease (see `store::outbox`), processes them concurrently
//! (at most [`CONCURRENCY`] at once, each under its own timeout) and settles each one: sent,
//! failed for good, or pending again after a backoff ([`RetryPolicy`]). Delivery is
//! at-least-once: a worker that dies after sending but before settling leaves the row to be sent
//! again when its lease expires. Webhook receivers de-duplicate on the event `id`.
//!
//! Time is an argument: [`Worker::run_once`] takes `now_ms`, so tests drive retries over days of
//! virtual time without sleeping. [`Worker::spawn`] is the production loop on the real clock.
//!
//! Logs carry outbox ids, kinds, attempt numbers and status codes; never numbers, addresses,
//! bodies or provider error texts (which may quote them).

mod smtp;
mod twilio_sms;
mod webhook;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use crate::config::ServeConfig;
use crate::store::{
    AttemptRecord, ClaimedOutbox, EmailPayload, OutboxKind, Settlement, SmsPayload, Store, now_ms,
};

pub use webhook::{SIGNATURE_HEADER, sign_webhook};

/// Rows processed at once by one worker; also the size of one claim.
pub const CONCURRENCY: usize = 16;
/// Budget of one SMS, email or webhook attempt (the HTTP and SMTP clients have shorter ones).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Budget of one post-call job attempt.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(300);

/// The longest an idle outbox worker sleeps before looking again: rows another node queued on a
/// shared database, or a lease that ran out on a node that died, wait at most this long.
pub const IDLE_POLL: Duration = Duration::from_secs(5);

/// How long to sleep for a row due at `due_ms` (none: [`IDLE_POLL`]); at least 50 ms, so that
/// a due row another worker holds locked (PostgreSQL skips it) is not polled in a tight loop.
fn until_due(due_ms: Option<i64>, now_ms: i64) -> Duration {
    match due_ms {
        Some(due) => Duration::from_millis(due.saturating_sub(now_ms).clamp(50, 5_000) as u64),
        None => IDLE_POLL,
    }
}
/// How long a claim holds a row. Longer than any attempt's budget, so a live worker's row is
/// never taken over; a dead worker's rows are claimable again after it.
pub const LEASE_MS: i64 = 360_000;

/// When to try again: exponential backoff from `first_delay_ms`, doubling up to `max_delay_ms`,
/// each delay shortened by a random fraction of at most `jitter` (so retries of rows that failed
/// together spread out, and a delay never exceeds its nominal value); a row older than
/// `give_up_after_ms` that fails again is failed for good.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub first_delay_ms: i64,
    pub max_delay_ms: i64,
    pub give_up_after_ms: i64,
    /// 0.0 (none) to 1.0.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// 10 s, 20 s, 40 s, ... capped at 1 h, up to 20 % jitter, give up after 26 h (webhooks
    /// promise at least a day of retries).
    fn default() -> Self {
        RetryPolicy {
            first_delay_ms: 10_000,
            max_delay_ms: 3_600_000,
            give_up_after_ms: 26 * 3_600_000,
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The nominal delay after `failed_attempts` (1 for the first failure) failures.
    pub fn nominal_delay_ms(&self, failed_attempts: i64) -> i64 {
        let doublings = (failed_attempts.max(1) - 1).min(40) as u32;
        self.first_delay_ms
            .saturating_mul(1_i64 << doublings)
            .min(self.max_delay_ms)
    }

    /// The delay with jitter; `u` is uniform in `[0, 1)`.
    pub fn delay_ms(&self, failed_attempts: i64, u: f64) -> i64 {
        let nominal = self.nominal_delay_ms(failed_attempts);
        let cut = (nominal as f64 * self.jitter.clamp(0.0, 1.0) * u.clamp(0.0, 1.0)) as i64;
        (nominal - cut).max(1)
    }

    /// After a retryable failure at `now_ms` of a row created at `created_at_ms`: when to try
    /// again, or `None` to give up.
    pub fn next_attempt_at(
        &self,
        created_at_ms: i64,
        now_ms: i64,
        failed_attempts: i64,
        u: f64,
    ) -> Option<i64> {
        if now_ms.saturating_sub(created_at_ms) >= self.give_up_after_ms {
            return None;
        }
        Some(now_ms.saturating_add(self.delay_ms(failed_attempts, u)))
    }
}

/// What one attempt at the far side produced.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AttemptResult {
    Delivered {
        status_code: Option<i64>,
        provider_ref: Option<String>,
    },
    Failed {
        /// No retry can help (a 4xx, an SMTP 5xx, a missing configuration).
        permanent: bool,
        status_code: Option<i64>,
        error: String,
    },
}

impl AttemptResult {
    fn retry(status_code: Option<i64>, error: impl Into<String>) -> Self {
        AttemptResult::Failed {
            permanent: false,
            status_code,
            error: error.into(),
        }
    }

    fn permanent(status_code: Option<i64>, error: impl Into<String>) -> Self {
        AttemptResult::Failed {
            permanent: true,
            status_code,
            error: error.into(),
        }
    }
}

/// What processing a row came to before settling.
enum Step {
    /// Something was attempted (sent, or tried and failed): recorded as an attempt.
    Attempted(AttemptResult),
    /// Refused before anything was sent (an opted-out number, a deleted endpoint): failed with
    /// this reason, no attempt recorded.
    Refused(String),
}

/// Delivers the outbox. Cheap to clone (shared inside).
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    node_id: String,
    policy: RetryPolicy,
    sms: twilio_sms::TwilioSms,
    mail: smtp::Mailer,
    webhooks: webhook::WebhookSender,
    /// Where delivery lag is observed (`receptionist_delivery_lag_seconds`), when serving.
    metrics: Option<Arc<crate::server::metrics::Metrics>>,
}

impl Worker {
    /// A worker over `store` with the senders `config` describes. Senders that are not
    /// configured (no Twilio account SID or auth token, no SMTP URL or sender) fail their rows
    /// permanently; a configuration that is present but malformed (an SMTP URL lettre cannot
    /// read, an unparsable `--smtp-from`) is an error here, at start.
    pub fn new(store: Store, config: &ServeConfig, node_id: &str) -> anyhow::Result<Worker> {
        Ok(Worker {
            inner: Arc::new(Inner {
                store,
                node_id: node_id.to_string(),
                policy: RetryPolicy::default(),
                sms: twilio_sms::TwilioSms::new(config)?,
                mail: smtp::Mailer::new(config)?,
                webhooks: webhook::WebhookSender::new()?,
                metrics: None,
            }),
        })
    }

    /// The same worker, observing each delivery's lag (queued → delivered) in `metrics`.
    pub fn with_metrics(self, metrics: Arc<crate::server::metrics::Metrics>) -> Worker {
        let inner = &self.inner;
        Worker {
            inner: Arc::new(Inner {
                store: inner.store.clone(),
                node_id: inner.node_id.clone(),
                policy: inner.policy,
                sms: inner.sms.clone(),
                mail: inner.mail.clone(),
                webhooks: inner.webhooks.clone(),
                metrics: Some(metrics),
            }),
        }
    }

    /// The same worker with another retry policy.
    pub fn with_policy(self, policy: RetryPolicy) -> Worker {
        let inner = &self.inner;
        Worker {
            inner: Arc::new(Inner {
                store: inner.store.clone(),
                node_id: inner.node_id.clone(),
                policy,
                sms: inner.sms.clone(),
                mail: inner.mail.clone(),
                webhooks: inner.webhooks.clone(),
                metrics: inner.metrics.clone(),
            }),
        }
    }

    /// Claim up to [`CONCURRENCY`] rows due at `now_ms`, process them concurrently and wait for
    /// all of them; returns how many were processed. Never fails: a database error is logged
    /// and counts as nothing processed; one row's failure or panic does not affect the others.
    pub async fn run_once(&self, now_ms: i64) -> usize {
        let claim = self.inner.new_claim();
        let rows = match self
            .inner
            .store
            .claim_outbox(&claim, now_ms, LEASE_MS, CONCURRENCY as i64)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "outbox claim failed");
                return 0;
            }
        };
        let count = rows.len();
        let mut tasks = JoinSet::new();
        for row in rows {
            let inner = self.inner.clone();
            tasks.spawn(async move { inner.process(row, now_ms).await });
        }
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "outbox delivery task failed");
            }
        }
        count
    }

    /// The production loop on the real clock: claim as many due rows as there are free slots
    /// (of [`CONCURRENCY`]), start each at once, then wait for `notify` (something was queued),
    /// a slot freeing, or 1 s. Unlike a loop over [`Worker::run_once`], a slow receiver holds
    /// only its own slot: rows queued meanwhile are claimed and sent without waiting for it.
    pub fn spawn(self, notify: Arc<Notify>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(CONCURRENCY));
            let freed = Arc::new(Notify::new());
            tracing::info!(node_id = %self.inner.node_id, "outbox worker started");
            loop {
                let free = slots.available_permits();
                if free > 0 {
                    let claim = self.inner.new_claim();
                    let claimed = self
                        .inner
                        .store
                        .claim_outbox(&claim, now_ms(), LEASE_MS, free as i64)
                        .await;
                    match claimed {
                        Ok(rows) => {
                            let full = rows.len() == free;
                            for row in rows {
                                // Only this loop takes slots and it claimed at most `free`.
                                let Ok(slot) = slots.clone().try_acquire_owned() else {
                                    break;
                                };
                                let inner = self.inner.clone();
                                let freed = freed.clone();
                                tokio::spawn(async move {
                                    inner.process(row, now_ms()).await;
                                    drop(slot);
                                    freed.notify_one();
                                });
                            }
                            if full {
                                // Maybe more are due: claim again once a slot frees.
                                continue;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "outbox claim failed"),
                    }
                }
                // sleep until the next row comes due (its retry time, or a lease running out),
                // unless this node queues one first; at most IDLE_POLL, for rows other nodes
                // queue on a shared database
                let wait = match self.inner.store.next_outbox_due().await {
                    // every slot busy: a freed one wakes the loop
                    Ok(_) if slots.available_permits() == 0 => IDLE_POLL,
                    Ok(due) => until_due(due, now_ms()),
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox due time unknown");
                        Duration::from_secs(1)
                    }
                };
                tokio::select! {
                    _ = notify.notified() => {}
                    _ = freed.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        })
    }
}

impl Inner {
    fn new_claim(&self) -> String {
        format!("{}:{}", self.node_id, uuid::Uuid::new_v4().simple())
    }

    /// Attempt one claimed row and settle it.
    async fn process(&self, row: ClaimedOutbox, now_ms: i64) {
        let budget = match row.kind {
            OutboxKind::Evaluate => JOB_TIMEOUT,
            OutboxKind::Sms | OutboxKind::Email | OutboxKind::Webhook => DELIVERY_TIMEOUT,
        };
        let started = Instant::now();
        let step = match tokio::time::timeout(budget, self.attempt(&row, now_ms)).await {
            Ok(step) => step,
            Err(_) => Step::Attempted(AttemptResult::retry(None, "timed out")),
        };
        let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let attempt_no = row.attempts + 1;
        let kind = row.kind.as_str();
        let (settlement, record) = match step {
            Step::Refused(reason) => {
                tracing::info!(outbox_id = %row.id, kind, reason = %reason, "refused");
                (Settlement::Failed { error: reason }, None)
            }
            Step::Attempted(result) => {
                let (status_code, error) = match &result {
                    AttemptResult::Delivered { status_code, .. } => (*status_code, None),
                    AttemptResult::Failed {
                        status_code, error, ..
                    } => (*status_code, Some(error.clone())),
                };
                let record = AttemptRecord {
                    started_at_ms: now_ms,
                    duration_ms,
                    status_code,
                    error,
                };
                let settlement = match result {
                    AttemptResult::Delivered { provider_ref, .. } => {
                        tracing::info!(outbox_id = %row.id, kind, attempt = attempt_no, status_code, "delivered");
                        if let Some(m) = &self.metrics {
                            let lag_ms = crate::store::now_ms() - row.created_at_ms;
                            m.delivered(row.kind, lag_ms.max(0) as f64 / 1000.0);
                        }
                        Settlement::Sent { provider_ref }
                    }
                    AttemptResult::Failed {
                        permanent: true,
                        error,
                        ..
                    } => {
                        tracing::warn!(outbox_id = %row.id, kind, attempt = attempt_no, status_code, "failed permanently");
                        Settlement::Failed { error }
                    }
                    AttemptResult::Failed { error, .. } => {
                        let u: f64 = rand::random();
                        match self
                            .policy
                            .next_attempt_at(row.created_at_ms, now_ms, attempt_no, u)
                        {
                            Some(next_attempt_at_ms) => {
                                tracing::info!(outbox_id = %row.id, kind, attempt = attempt_no, status_code, next_attempt_at_ms, "attempt failed, will retry");
                                Settlement::Retry {
                                    error,
                                    next_attempt_at_ms,
                                }
                            }
                            None => {
                                tracing::warn!(outbox_id = %row.id, kind, attempt = attempt_no, status_code, "gave up");
                                Settlement::Failed {
                                    error: format!("gave up after {attempt_no} attempts: {error}"),
                                }
                            }
                        }
                    }
                };
                (settlement, Some(record))
            }
        };
        match self
            .store
            .settle_outbox(&row.id, &row.claim, &settlement, record.as_ref())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(outbox_id = %row.id, kind, "claim lost before settling (lease expired or row cancelled)")
            }
            // The row stays claimed; it is retried when the lease expires.
            Err(e) => {
                tracing::error!(outbox_id = %row.id, kind, error = %e, "cannot settle outbox row")
            }
        }
    }

    /// Deliver one row; never panics on bad input.
    async fn attempt(&self, row: &ClaimedOutbox, now_ms: i64) -> Step {
        match row.kind {
            OutboxKind::Sms => {
                let Ok(p) = serde_json::from_str::<SmsPayload>(&row.payload) else {
                    return Step::Refused("unreadable SMS payload".into());
                };
                match self.store.is_opted_out(&row.workspace_id, &p.to).await {
                    Ok(true) => return Step::Refused("recipient opted out".into()),
                    Ok(false) => {}
                    Err(e) => {
                        return Step::Attempted(AttemptResult::retry(
                            None,
                            format!("cannot check opt-outs: {e}"),
                        ));
                    }
                }
                Step::Attempted(self.sms.send(&p).await)
            }
            OutboxKind::Email => {
                let Ok(p) = serde_json::from_str::<EmailPayload>(&row.payload) else {
                    return Step::Refused("unreadable email payload".into());
                };
                Step::Attempted(self.mail.send(&p).await)
            }
            OutboxKind::Webhook => {
                let Some(endpoint_id) = row.endpoint_id.as_deref() else {
                    return Step::Refused("webhook row without an endpoint".into());
                };
                let endpoint = match self.store.webhook_endpoint_by_id(endpoint_id).await {
                    Ok(Some(e)) if e.deleted_at_ms.is_none() => e,
                    Ok(_) => return Step::Refused("endpoint deleted".into()),
                    Err(e) => {
                        return Step::Attempted(AttemptResult::retry(
                            None,
                            format!("cannot load endpoint: {e}"),
                        ));
                    }
                };
                Step::Attempted(
                    self.webhooks
                        .send(&endpoint.url, &endpoint.secret, &row.payload, now_ms)
                        .await,
                )
            }
            kind @ OutboxKind::Evaluate => {
                match crate::pipeline::run_job(&self.store, kind, &row.payload).await {
                    Ok(()) => Step::Attempted(AttemptResult::Delivered {
                        status_code: None,
                        provider_ref: None,
                    }),
                    Err(crate::pipeline::JobError::Retry(e)) => {
                        Step::Attempted(AttemptResult::retry(None, e))
                    }
                    Err(crate::pipeline::JobError::Permanent(e)) => Step::Refused(e),
                }
            }
        }
    }
}

/// Read at most `max` bytes of a response body (the rest is dropped unread).
async fn read_limited(mut response: reqwest::Response, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < max {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(max - out.len());
                out.extend_from_slice(&chunk[..take]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    out
}

/// Cut an error text to `max` characters (stored error texts stay small).
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_idle_worker_sleeps_until_the_next_row_is_due() {
        use super::{IDLE_POLL, until_due};
        use std::time::Duration;
        assert_eq!(until_due(None, 1_000), IDLE_POLL);
        assert_eq!(until_due(Some(1_300), 1_000), Duration::from_millis(300));
        assert_eq!(until_due(Some(900), 1_000), Duration::from_millis(50));
        assert_eq!(until_due(Some(60_000), 1_000), IDLE_POLL);
    }

    use super::*;

    #[test]
    fn backoff_doubles_from_ten_seconds_to_an_hour() {
        let p = RetryPolicy::default();
        let nominal: Vec<i64> = (1..=11).map(|n| p.nominal_delay_ms(n) / 1000).collect();
        assert_eq!(
            nominal,
            [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(p.nominal_delay_ms(1_000), 3_600_000);
        assert_eq!(p.nominal_delay_ms(0), 10_000);
    }

    #[test]
    fn jitter_only_shortens_and_by_at_most_a_fifth() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay_ms(3, 0.0), 40_000);
        assert_eq!(p.delay_ms(3, 0.5), 36_000);
        assert!((32_000..32_010).contains(&p.delay_ms(3, 0.999_999)));
        for i in 0..100 {
            let u = f64::from(i) / 100.0;
            let d = p.delay_ms(12, u);
            assert!((2_880_000..=3_600_000).contains(&d), "{d}");
        }
    }

    #[test]
    fn gives_up_only_once_older_than_26_hours() {
        let p = RetryPolicy::default();
        let hour = 3_600_000;
        assert_eq!(p.next_attempt_at(0, 10, 1, 0.0), Some(10_010));
        assert_eq!(p.next_attempt_at(0, 25 * hour, 30, 0.0), Some(26 * hour));
        assert_eq!(
            p.next_attempt_at(0, 26 * hour - 1, 30, 0.0),
            Some(27 * hour - 1)
        );
        assert_eq!(p.next_attempt_at(0, 26 * hour, 31, 0.0), None);
        // Retries over a day: the schedule with no jitter passes 24 h before giving up.
        let (mut now, mut n) = (0, 0);
        while let Some(next) = p.next_attempt_at(0, now, n + 1, 0.0) {
            now = next;
            n += 1;
        }
        assert!(now >= 26 * hour && now < 27 * hour, "{now}");
        assert!((30..40).contains(&n), "{n} retries");
    }

    #[test]
    fn truncation_keeps_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("hi", 5), "hi");
    }
}
