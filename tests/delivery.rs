//! The outbox and its worker against real databases and real local servers: a fake Twilio over
//! HTTP, a real SMTP conversation over TCP, webhook receivers. Every test body runs once on SQLite
//! and once on PostgreSQL (a fresh database per test, dropped afterwards; `TEST_POSTGRES_URL`,
//! default `postgres://postgres@127.0.0.1:5432/postgres`).
//!
//! Retries are driven in virtual time: `Worker::run_once(now_ms)` with a synthetic clock, so a
//! day of backoff takes milliseconds. No test sleeps; waits have deadlines.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tower::ServiceExt;

use receptionist::backends::{Backends, ScriptedAnswers};
use receptionist::config::ServeConfig;
use receptionist::delivery::{LEASE_MS, RetryPolicy, SIGNATURE_HEADER, Worker};
use receptionist::server::AppState;
use receptionist::store::{
    EmailPayload, NewOutbox, OutboxKind, OutboxRow, OutboxStatus, Role, Settlement, SmsPayload,
    Store, now_ms,
};

mod common;

use common::fakes::{FakeSmtp, FakeTwilio, WebhookReceiver};
use common::{Backend, TestDatabase};

const HOUR: i64 = 3_600_000;
const WAIT: Duration = Duration::from_secs(10);
const SENDER: &str = "+15550001111";

/// One test's world: a store on a fresh database, a workspace, a fake Twilio and SMTP server,
/// a configuration pointing at them, and the recruiter API over the same store.
struct World {
    store: Store,
    backend: Backend,
    db_url: String,
    twilio: FakeTwilio,
    smtp: FakeSmtp,
    config: ServeConfig,
    workspace_id: String,
    admin_key: String,
    app: Router,
    data_dir: String,
    _tmp: tempfile::TempDir,
}

fn config(data_dir: &str, db_url: &str, extra: &[&str]) -> ServeConfig {
    let mut args = vec![
        "--data-dir",
        data_dir,
        "--database-url",
        db_url,
        "--node-id",
        "test-node",
    ];
    args.extend_from_slice(extra);
    common::serve_config(&args)
}

async fn world(backend: Backend) -> (World, TestDatabase) {
    let tmp = tempfile::tempdir().unwrap();
    let db = TestDatabase::create(backend, tmp.path()).await;
    let store = Store::connect(&db.url).await.unwrap();
    let twilio = FakeTwilio::start().await;
    let smtp = FakeSmtp::start().await;
    let data_dir = tmp.path().join("data").display().to_string();
    let config = config(
        &data_dir,
        &db.url,
        &[
            "--twilio-account-sid",
            &twilio.account_sid,
            "--twilio-auth-token",
            &twilio.auth_token,
            "--twilio-api-base",
            &twilio.url,
            "--smtp-url",
            &smtp.url,
            "--smtp-from",
            "Hiring <jobs@example.com>",
        ],
    );
    let (ws, admin_key) = store.create_workspace("Acme Staffing").await.unwrap();
    let state = AppState::new(
        store.clone(),
        config.clone(),
        Backends::scripted(ScriptedAnswers::default()),
    );
    let app = receptionist::server::api::router().with_state(state);
    let world = World {
        store,
        backend,
        db_url: db.url.clone(),
        twilio,
        smtp,
        config,
        workspace_id: ws.id,
        admin_key,
        app,
        data_dir,
        _tmp: tmp,
    };
    (world, db)
}

/// Run `body` in a fresh world; always drop the PostgreSQL database, then re-raise a failure.
async fn run<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(World) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (w, db) = world(backend).await;
    let store = w.store.clone();
    let outcome = tokio::spawn(body(w)).await;
    store.close().await;
    db.drop_database().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// `#[tokio::test]`s named `<name>` in modules `sqlite` and `postgres` running the same body.
macro_rules! both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::run(super::Backend::Sqlite, super::$name).await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::run(super::Backend::Postgres, super::$name).await;
            })*
        }
    };
}

both_databases!(
    sms_is_delivered_with_form_and_auth,
    sms_server_error_then_success_is_delivered_once,
    sms_rate_limit_is_retried,
    sms_bad_request_fails_without_retry,
    outage_then_restart_delivers_once,
    opted_out_numbers_are_never_sent_to,
    email_goes_through_smtp,
    unconfigured_senders_fail_at_once,
    jobs_run_through_the_pipeline,
    webhook_signature_verifies,
    webhook_retries_past_a_day_then_gives_up,
    slow_receiver_does_not_delay_another_row,
    spawned_worker_delivers_around_a_stalled_receiver,
    dedupe_key_makes_a_second_enqueue_a_no_op,
    two_workers_send_each_row_once,
    webhooks_api,
);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

impl World {
    fn worker(&self) -> Worker {
        Worker::new(self.store.clone(), &self.config, "test-node").unwrap()
    }

    async fn enqueue_sms(&self, to: &str, body: &str, now: i64) -> String {
        let p = SmsPayload {
            from: SENDER.into(),
            to: to.into(),
            body: body.into(),
        };
        let o = NewOutbox::sms(&self.workspace_id, None, &p, None, now);
        assert!(self.store.enqueue(&o).await.unwrap());
        o.id
    }

    async fn row(&self, id: &str) -> OutboxRow {
        self.store.get_outbox(id).await.unwrap()
    }

    /// The webhook outbox rows of an event, by endpoint id.
    async fn deliveries_of(&self, event_id: &str) -> HashMap<String, OutboxRow> {
        self.store
            .list_outbox(&self.workspace_id, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.event_id.as_deref() == Some(event_id))
            .map(|r| (r.endpoint_id.clone().unwrap(), r))
            .collect()
    }

    async fn endpoint(&self, url: &str, events: &[&str]) -> receptionist::store::WebhookEndpoint {
        let events: Vec<String> = events.iter().map(|e| e.to_string()).collect();
        self.store
            .create_webhook_endpoint(&self.workspace_id, url, &events)
            .await
            .unwrap()
    }

    /// Insert an opt-out directly (the STOP handling that writes it is not this module's).
    async fn opt_out(&self, workspace_id: &str, phone: &str) {
        let sql = "INSERT INTO sms_opt_outs (workspace_id, phone_number, created_at) \
                   VALUES ($1, $2, $3)";
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.db_url).await.unwrap();
                sqlx::query(sql)
                    .bind(workspace_id)
                    .bind(phone)
                    .bind(now_ms())
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.db_url).await.unwrap();
                sqlx::query(sql)
                    .bind(workspace_id)
                    .bind(phone)
                    .bind(now_ms())
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
            }
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {key}"));
        let req = match body {
            Some(body) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let response = self.app.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, value)
    }
}

/// Wait (polling, with a deadline) until `check` holds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Check `X-Receptionist-Signature` with our own HMAC; returns its `t`.
fn verify_signature(secret: &str, header: &str, body: &str) -> i64 {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = Some(v.to_string()),
            _ => {}
        }
    }
    let (t, v1) = (t.expect("t="), v1.expect("v1="));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v1, expected, "signature of {body}");
    t
}

// ---------------------------------------------------------------------------------------------
// SMS
// ---------------------------------------------------------------------------------------------

async fn sms_is_delivered_with_form_and_auth(w: World) {
    let t0 = now_ms();
    let id = w
        .enqueue_sms("+15557654321", "Thanks for calling ABC Staffing & co!", t0)
        .await;
    let worker = w.worker();
    assert_eq!(worker.run_once(t0).await, 1);

    let sent = w.twilio.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, "+15557654321");
    assert_eq!(sent[0].from, SENDER);
    assert_eq!(sent[0].body, "Thanks for calling ABC Staffing & co!");
    assert!(sent[0].sid.starts_with("SM"));

    let row = w.row(&id).await;
    assert_eq!(row.status, OutboxStatus::Sent);
    assert_eq!(row.provider_ref.as_deref(), Some(sent[0].sid.as_str()));
    assert_eq!(row.attempts, 1);
    assert!(row.claimed_by.is_none());
    assert!(row.sent_at_ms.is_some());
    let attempts = w.store.outbox_attempts(&id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].attempt, 1);
    assert_eq!(attempts[0].status_code, Some(201));
    assert_eq!(attempts[0].started_at_ms, t0);
    assert_eq!(attempts[0].error, None);

    // Nothing is due any more.
    assert_eq!(worker.run_once(t0 + 48 * HOUR).await, 0);
    assert_eq!(w.twilio.request_count(), 1);
}

async fn sms_server_error_then_success_is_delivered_once(w: World) {
    let t0 = now_ms();
    w.twilio.fail_next(1, 500);
    let id = w.enqueue_sms("+15557654321", "hello", t0).await;
    let worker = w.worker();
    assert_eq!(worker.run_once(t0).await, 1);

    let row = w.row(&id).await;
    assert_eq!(row.status, OutboxStatus::Pending);
    assert_eq!(row.attempts, 1);
    assert!(
        row.last_error.as_deref().unwrap().contains("500"),
        "{row:?}"
    );
    let delay = row.next_attempt_at_ms - t0;
    assert!(
        (8_000..=10_000).contains(&delay),
        "first retry after {delay} ms"
    );
    assert!(w.twilio.messages().is_empty());

    // Not before it is due.
    assert_eq!(worker.run_once(row.next_attempt_at_ms - 1).await, 0);
    assert_eq!(worker.run_once(row.next_attempt_at_ms).await, 1);
    let row = w.row(&id).await;
    assert_eq!(row.status, OutboxStatus::Sent);
    assert_eq!(row.attempts, 2);
    assert_eq!(w.twilio.messages().len(), 1);
    assert_eq!(w.twilio.request_count(), 2);
    let codes: Vec<Option<i64>> = w
        .store
        .outbox_attempts(&id)
        .await
        .unwrap()
        .iter()
        .map(|a| a.status_code)
        .collect();
    assert_eq!(codes, [Some(500), Some(201)]);
    assert_eq!(worker.run_once(t0 + 48 * HOUR).await, 0);
}

async fn sms_rate_limit_is_retried(w: World) {
    let t0 = now_ms();
    w.twilio.fail_next(2, 429);
    let id = w.enqueue_sms("+15557654321", "hello", t0).await;
    let worker = w.worker();
    let policy = RetryPolicy::default();
    let mut now = t0;
    for failed in 1..=2 {
        assert_eq!(worker.run_once(now).await, 1);
        let row = w.row(&id).await;
        assert_eq!(row.status, OutboxStatus::Pending);
        assert!(
            row.last_error.as_deref().unwrap().contains("20429"),
            "{row:?}"
        );
        let nominal = policy.nominal_delay_ms(failed);
        let delay = row.next_attempt_at_ms - now;
        assert!(
            delay <= nominal && delay >= nominal * 4 / 5,
            "delay {delay} after {failed} failures"
        );
        now = row.next_attempt_at_ms;
    }
    assert_eq!(worker.run_once(now).await, 1);
    assert_eq!(w.row(&id).await.status, OutboxStatus::Sent);
    assert_eq!(w.twilio.messages().len(), 1);
    assert_eq!(w.twilio.request_count(), 3);
}

async fn sms_bad_request_fails_without_retry(w: World) {
    let t0 = now_ms();
    w.twilio.fail_next(1, 400);
    let id = w.enqueue_sms("+15557654321", "hello", t0).await;
    let worker = w.worker();
    assert_eq!(worker.run_once(t0).await, 1);
    let row = w.row(&id).await;
    assert_eq!(row.status, OutboxStatus::Failed);
    assert_eq!(row.attempts, 1);
    let error = row.last_error.unwrap();
    assert!(
        error.contains("HTTP 400") && error.contains("21211"),
        "{error}"
    );
    assert_eq!(worker.run_once(t0 + 48 * HOUR).await, 0);
    assert_eq!(w.twilio.request_count(), 1);
    assert!(w.twilio.messages().is_empty());
}

async fn outage_then_restart_delivers_once(w: World) {
    // Twilio unreachable: a port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let down = config(
        &w.data_dir,
        &w.db_url,
        &[
            "--twilio-account-sid",
            &w.twilio.account_sid,
            "--twilio-auth-token",
            &w.twilio.auth_token,
            "--twilio-api-base",
            &dead,
        ],
    );
    let t0 = now_ms();
    let id = w.enqueue_sms("+15557654321", "hello", t0).await;
    let first = Worker::new(w.store.clone(), &down, "node-a").unwrap();
    assert_eq!(first.run_once(t0).await, 1);
    let row = w.row(&id).await;
    assert_eq!(row.status, OutboxStatus::Pending);
    assert_eq!(row.last_error.as_deref(), Some("connection failed"));
    assert_eq!(
        w.store.outbox_attempts(&id).await.unwrap()[0].status_code,
        None
    );
    drop(first);

    // A new worker instance (the restarted server) picks the row up when it is due.
    let second = w.worker();
    assert_eq!(second.run_once(row.next_attempt_at_ms - 1).await, 0);
    assert_eq!(second.run_once(row.next_attempt_at_ms).await, 1);
    assert_eq!(w.row(&id).await.status, OutboxStatus::Sent);
    assert_eq!(second.run_once(t0 + 48 * HOUR).await, 0);
    assert_eq!(w.twilio.messages().len(), 1);

    // A worker that died holding a claim: the row waits for the lease, then goes out once.
    let t1 = now_ms();
    let id2 = w.enqueue_sms("+15557654321", "second", t1).await;
    let claimed = w
        .store
        .claim_outbox("dead-node:1", t1, LEASE_MS, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, id2);
    assert_eq!(second.run_once(t1 + 1_000).await, 0);
    assert_eq!(second.run_once(t1 + LEASE_MS + 1).await, 1);
    assert_eq!(w.row(&id2).await.status, OutboxStatus::Sent);
    // The dead worker's late outcome is fenced off.
    let late = w
        .store
        .settle_outbox(
            &id2,
            "dead-node:1",
            &Settlement::Failed {
                error: "late".into(),
            },
            None,
        )
        .await
        .unwrap();
    assert!(!late);
    assert_eq!(w.row(&id2).await.status, OutboxStatus::Sent);
    let bodies: Vec<String> = w.twilio.messages().into_iter().map(|m| m.body).collect();
    assert_eq!(bodies, ["hello", "second"]);
}

async fn opted_out_numbers_are_never_sent_to(w: World) {
    let t0 = now_ms();
    w.opt_out(&w.workspace_id, "+15550000001").await;
    let (other_ws, _) = w.store.create_workspace("Other").await.unwrap();
    // Opt-outs are per workspace.
    w.opt_out(&other_ws.id, "+15550000002").await;
    assert!(
        w.store
            .is_opted_out(&w.workspace_id, "+15550000001")
            .await
            .unwrap()
    );
    assert!(
        !w.store
            .is_opted_out(&w.workspace_id, "+15550000002")
            .await
            .unwrap()
    );

    let blocked = w.enqueue_sms("+15550000001", "you said STOP", t0).await;
    let allowed = w.enqueue_sms("+15550000002", "hello", t0).await;
    let worker = w.worker();
    assert_eq!(worker.run_once(t0).await, 2);

    let row = w.row(&blocked).await;
    assert_eq!(row.status, OutboxStatus::Failed);
    assert_eq!(row.last_error.as_deref(), Some("recipient opted out"));
    assert_eq!(row.attempts, 0);
    assert_eq!(w.row(&allowed).await.status, OutboxStatus::Sent);
    let to: Vec<String> = w.twilio.messages().into_iter().map(|m| m.to).collect();
    assert_eq!(to, ["+15550000002"]);
    assert_eq!(w.twilio.request_count(), 1);
}

// ---------------------------------------------------------------------------------------------
// Email, unconfigured senders, jobs
// ---------------------------------------------------------------------------------------------

async fn email_goes_through_smtp(w: World) {
    let t0 = now_ms();
    let p = EmailPayload {
        to: "jane@example.com".into(),
        subject: "Your interview".into(),
        body: "Hello Jane,\n.a line starting with a dot\nSee you soon.".into(),
    };
    let o = NewOutbox::email(&w.workspace_id, None, &p, None, t0);
    w.store.enqueue(&o).await.unwrap();
    let worker = w.worker();
    assert_eq!(worker.run_once(t0).await, 1);

    let row = w.row(&o.id).await;
    assert_eq!(row.status, OutboxStatus::Sent, "{row:?}");
    assert_eq!(
        w.store.outbox_attempts(&o.id).await.unwrap()[0].status_code,
        Some(250)
    );
    let mails = w.smtp.mails();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.mail_from, "jobs@example.com");
    assert_eq!(mail.rcpt_to, ["jane@example.com"]);
    assert_eq!(mail.header("Subject").as_deref(), Some("Your interview"));
    assert!(mail.header("From").unwrap().contains("jobs@example.com"));
    assert_eq!(mail.header("To").as_deref(), Some("jane@example.com"));
    assert!(
        mail.header("Content-Type")
            .unwrap()
            .starts_with("text/plain")
    );
    let body = mail.body();
    assert!(body.contains("Hello Jane,"), "{body:?}");
    assert!(
        body.contains("\r\n.a line starting with a dot\r\n"),
        "{body:?}"
    );

    // A permanent refusal fails at once; a transient one is retried.
    let permanent = NewOutbox::email(&w.workspace_id, None, &p, None, t0);
    w.store.enqueue(&permanent).await.unwrap();
    w.smtp.reject_next_rcpt(1, 550);
    assert_eq!(worker.run_once(t0).await, 1);
    let row = w.row(&permanent.id).await;
    assert_eq!(row.status, OutboxStatus::Failed, "{row:?}");
    assert_eq!(
        w.store.outbox_attempts(&permanent.id).await.unwrap()[0].status_code,
        Some(550)
    );

    let transient = NewOutbox::email(&w.workspace_id, None, &p, None, t0);
    w.store.enqueue(&transient).await.unwrap();
    w.smtp.reject_next_rcpt(1, 451);
    assert_eq!(worker.run_once(t0).await, 1);
    let row = w.row(&transient.id).await;
    assert_eq!(row.status, OutboxStatus::Pending, "{row:?}");
    assert_eq!(worker.run_once(row.next_attempt_at_ms).await, 1);
    assert_eq!(w.row(&transient.id).await.status, OutboxStatus::Sent);
    assert_eq!(w.smtp.mails().len(), 2);
}

async fn unconfigured_senders_fail_at_once(w: World) {
    let bare = config(&w.data_dir, &w.db_url, &[]);
    let worker = Worker::new(w.store.clone(), &bare, "test-node").unwrap();
    let t0 = now_ms();
    let sms = w.enqueue_sms("+15557654321", "hello", t0).await;
    let email = NewOutbox::email(
        &w.workspace_id,
        None,
        &EmailPayload {
            to: "jane@example.com".into(),
            subject: "s".into(),
            body: "b".into(),
        },
        None,
        t0,
    );
    w.store.enqueue(&email).await.unwrap();
    assert_eq!(worker.run_once(t0).await, 2);
    let sms = w.row(&sms).await;
    assert_eq!(sms.status, OutboxStatus::Failed);
    assert_eq!(sms.last_error.as_deref(), Some("SMS is not configured"));
    let email = w.row(&email.id).await;
    assert_eq!(email.status, OutboxStatus::Failed);
    assert_eq!(email.last_error.as_deref(), Some("SMTP is not configured"));
    assert_eq!(w.twilio.request_count(), 0);
    assert!(w.smtp.mails().is_empty());

    // A malformed configuration is refused at start.
    let bad = config(
        &w.data_dir,
        &w.db_url,
        &["--smtp-url", "gopher://x", "--smtp-from", "a@b.c"],
    );
    assert!(Worker::new(w.store.clone(), &bad, "n").is_err());
    // TLS forms build (rustls with one crypto provider).
    for url in [
        "smtps://user:p%40ss@mail.example.com",
        "smtp://mail.example.com:587?tls=required",
    ] {
        let tls = config(
            &w.data_dir,
            &w.db_url,
            &["--smtp-url", url, "--smtp-from", "jobs@example.com"],
        );
        assert!(Worker::new(w.store.clone(), &tls, "n").is_ok(), "{url}");
    }
}

async fn jobs_run_through_the_pipeline(w: World) {
    let t0 = now_ms();
    let job = NewOutbox::job(
        &w.workspace_id,
        OutboxKind::Evaluate,
        None,
        &json!({"call_id": "c1"}),
        Some("evaluate:c1".into()),
        t0,
    );
    assert!(w.store.enqueue(&job).await.unwrap());
    assert_eq!(w.worker().run_once(t0).await, 1);
    let row = w.row(&job.id).await;
    assert_eq!(row.kind, OutboxKind::Evaluate);
    // a job that can never run fails at once instead of retrying for a day
    assert_eq!(row.status, OutboxStatus::Failed, "{row:?}");
    assert!(
        row.last_error
            .as_deref()
            .unwrap()
            .contains("bad evaluate job")
    );
    // one whose candidate is gone has nothing left to do
    let gone = NewOutbox::job(
        &w.workspace_id,
        OutboxKind::Evaluate,
        None,
        &json!({"candidate_id": "nobody", "call_id": null, "evaluation_id": "e1"}),
        None,
        t0,
    );
    w.store.enqueue(&gone).await.unwrap();
    assert_eq!(w.worker().run_once(t0).await, 1);
    assert_eq!(w.row(&gone.id).await.status, OutboxStatus::Sent);
}

// ---------------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------------

async fn webhook_signature_verifies(w: World) {
    let receiver = WebhookReceiver::start().await;
    let endpoint = w
        .endpoint(
            &format!("{}/hooks/rx?src=test", receiver.url),
            &["call.ended"],
        )
        .await;
    let ignoring = WebhookReceiver::start().await;
    w.endpoint(&ignoring.url, &["sms.received"]).await;

    let data = json!({"call_id": "c1", "duration_ms": 72856});
    let event_id = w
        .store
        .emit_event(&w.workspace_id, "call.ended", &data)
        .await
        .unwrap();
    assert!(event_id.starts_with("evt_"));
    let rows = w.deliveries_of(&event_id).await;
    assert_eq!(
        rows.len(),
        1,
        "only the subscribed endpoint gets a delivery"
    );
    let row = &rows[&endpoint.id];

    let now = row.created_at_ms + 1_234;
    assert_eq!(w.worker().run_once(now).await, 1);
    let got = receiver.requests();
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(req.method, Method::POST);
    assert_eq!(req.path, "/hooks/rx?src=test");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.body, row.payload);
    let t = verify_signature(
        &endpoint.secret,
        req.header(SIGNATURE_HEADER).expect("signed"),
        &req.body,
    );
    assert_eq!(t, now / 1000);

    let body: Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(body["id"], event_id.as_str());
    assert_eq!(body["type"], "call.ended");
    assert_eq!(body["data"], data);
    let created = time::OffsetDateTime::parse(
        body["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(
        (created.unix_timestamp_nanos() / 1_000_000) as i64,
        row.created_at_ms
    );
    assert_eq!(w.row(&row.id).await.status, OutboxStatus::Sent);
    assert_eq!(ignoring.arrived(), 0);

    // Unknown event types are refused.
    assert!(
        w.store
            .emit_event(&w.workspace_id, "call.started", &data)
            .await
            .is_err()
    );
}

async fn webhook_retries_past_a_day_then_gives_up(w: World) {
    let receiver = WebhookReceiver::start().await;
    receiver.set_status(503);
    let endpoint = w.endpoint(&receiver.url, &["candidate.evaluated"]).await;
    let event_id = w
        .store
        .emit_event(
            &w.workspace_id,
            "candidate.evaluated",
            &json!({"candidate_id": "k1", "score": 82}),
        )
        .await
        .unwrap();
    let row = w
        .deliveries_of(&event_id)
        .await
        .remove(&endpoint.id)
        .unwrap();
    let created = row.created_at_ms;
    let worker = w.worker();
    let policy = RetryPolicy::default();

    let mut now = created;
    let mut times = Vec::new();
    let last = loop {
        assert_eq!(
            worker.run_once(now).await,
            1,
            "attempt at +{} ms",
            now - created
        );
        times.push(now);
        let row = w.row(&row.id).await;
        if row.status != OutboxStatus::Pending {
            break row;
        }
        assert_eq!(worker.run_once(row.next_attempt_at_ms - 1).await, 0);
        now = row.next_attempt_at_ms;
    };

    // The backoff: 10 s doubling to a 1 h cap, shortened by at most 20 % jitter.
    for (i, pair) in times.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let nominal = policy.nominal_delay_ms(i as i64 + 1);
        assert!(
            gap <= nominal && gap >= nominal * 4 / 5,
            "gap {i}: {gap} ms, nominal {nominal} ms"
        );
    }
    assert!(
        times.iter().any(|t| t - created > 24 * HOUR),
        "retried past a day"
    );
    let final_at = *times.last().unwrap() - created;
    assert!(
        (26 * HOUR..27 * HOUR).contains(&final_at),
        "gave up at +{final_at} ms"
    );
    assert!(times[times.len() - 2] - created < 26 * HOUR);
    assert_eq!(last.status, OutboxStatus::Failed);
    assert_eq!(last.attempts, times.len() as i64);
    let error = last.last_error.unwrap();
    assert!(
        error.starts_with(&format!("gave up after {} attempts: HTTP 503", times.len())),
        "{error}"
    );
    assert_eq!(worker.run_once(created + 100 * HOUR).await, 0);

    // Every attempt sent the same bytes, each signed at its own time.
    let got = receiver.requests();
    assert_eq!(got.len(), times.len());
    for (req, at) in got.iter().zip(&times) {
        assert_eq!(req.body, row.payload);
        let t = verify_signature(
            &endpoint.secret,
            req.header(SIGNATURE_HEADER).unwrap(),
            &req.body,
        );
        assert_eq!(t, at / 1000);
    }
    let attempts = w.store.outbox_attempts(&row.id).await.unwrap();
    assert_eq!(attempts.len(), times.len());
    assert!(attempts.iter().all(|a| a.status_code == Some(503)));
}

async fn slow_receiver_does_not_delay_another_row(w: World) {
    let slow = WebhookReceiver::start().await;
    slow.stall_next(1);
    let fast = WebhookReceiver::start().await;
    let a = w.endpoint(&slow.url, &["call.ended"]).await;
    let b = w.endpoint(&fast.url, &["call.ended"]).await;
    let event_id = w
        .store
        .emit_event(&w.workspace_id, "call.ended", &json!({"call_id": "c1"}))
        .await
        .unwrap();
    let rows = w.deliveries_of(&event_id).await;
    let (slow_row, fast_row) = (rows[&a.id].id.clone(), rows[&b.id].id.clone());

    let worker = w.worker();
    let now = now_ms();
    let batch = tokio::spawn(async move { worker.run_once(now).await });
    slow.wait_for_arrivals(1, WAIT).await;
    let (world, fast_id) = (&w, &fast_row);
    eventually("the fast delivery to be settled", || async move {
        world.row(fast_id).await.status == OutboxStatus::Sent
    })
    .await;
    // ... while the slow one is still on the wire.
    assert!(!batch.is_finished());
    assert!(slow.requests().is_empty());
    assert_eq!(w.row(&slow_row).await.status, OutboxStatus::Pending);

    slow.release();
    assert_eq!(batch.await.unwrap(), 2);
    assert_eq!(w.row(&slow_row).await.status, OutboxStatus::Sent);
}

async fn spawned_worker_delivers_around_a_stalled_receiver(w: World) {
    let slow = WebhookReceiver::start().await;
    slow.stall_next(1);
    let fast = WebhookReceiver::start().await;
    w.endpoint(&slow.url, &["call.ended"]).await;
    w.endpoint(&fast.url, &["sms.received"]).await;
    let notify = Arc::new(tokio::sync::Notify::new());
    let running = w.worker().spawn(notify.clone());

    w.store
        .emit_event(&w.workspace_id, "call.ended", &json!({"call_id": "c1"}))
        .await
        .unwrap();
    notify.notify_one();
    slow.wait_for_arrivals(1, WAIT).await;

    // Queued while the first delivery hangs: goes out without waiting for it.
    w.store
        .emit_event(
            &w.workspace_id,
            "sms.received",
            &json!({"message_id": "m1"}),
        )
        .await
        .unwrap();
    notify.notify_one();
    fast.wait_for_arrivals(1, WAIT).await;
    assert!(
        slow.requests().is_empty(),
        "the slow delivery is still hanging"
    );

    slow.release();
    running.abort();
}

async fn dedupe_key_makes_a_second_enqueue_a_no_op(w: World) {
    let t0 = now_ms();
    let p = |body: &str| SmsPayload {
        from: SENDER.into(),
        to: "+15557654321".into(),
        body: body.into(),
    };
    let key = || Some("confirmation:candidate-1".to_string());
    let first = NewOutbox::sms(&w.workspace_id, Some("candidate-1"), &p("first"), key(), t0);
    let second = NewOutbox::sms(
        &w.workspace_id,
        Some("candidate-1"),
        &p("second"),
        key(),
        t0,
    );
    assert!(w.store.enqueue(&first).await.unwrap());
    assert!(!w.store.enqueue(&second).await.unwrap());
    let stored = w
        .store
        .outbox_by_dedupe_key("confirmation:candidate-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.id, first.id);
    assert_eq!(stored.candidate_id.as_deref(), Some("candidate-1"));

    assert_eq!(w.worker().run_once(t0).await, 1);
    // Still a no-op once the first was sent.
    assert!(!w.store.enqueue(&second).await.unwrap());
    assert_eq!(w.worker().run_once(t0 + HOUR).await, 0);
    let bodies: Vec<String> = w.twilio.messages().into_iter().map(|m| m.body).collect();
    assert_eq!(bodies, ["first"]);
    // Rows without a key never collide.
    w.enqueue_sms("+15557654321", "a", t0).await;
    w.enqueue_sms("+15557654321", "a", t0).await;
}

async fn two_workers_send_each_row_once(w: World) {
    const ROWS: usize = 200;
    let t0 = now_ms();
    for i in 0..ROWS {
        w.enqueue_sms("+15557654321", &format!("message {i}"), t0)
            .await;
    }
    // Two stores on the same database: two servers.
    let other_store = Store::connect(&w.db_url).await.unwrap();
    let a = w.worker();
    let b = Worker::new(other_store.clone(), &w.config, "node-b").unwrap();
    let drain = |worker: Worker| async move {
        let mut total = 0;
        loop {
            let n = worker.run_once(t0).await;
            if n == 0 {
                return total;
            }
            total += n;
        }
    };
    let (done_a, done_b) = tokio::join!(tokio::spawn(drain(a)), tokio::spawn(drain(b)));
    let (done_a, done_b) = (done_a.unwrap(), done_b.unwrap());
    other_store.close().await;
    assert_eq!(done_a + done_b, ROWS);
    assert!(done_a > 0 && done_b > 0, "both worked: {done_a} + {done_b}");

    let mut bodies: Vec<String> = w.twilio.messages().into_iter().map(|m| m.body).collect();
    assert_eq!(bodies.len(), ROWS);
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), ROWS, "each message exactly once");
    let rows = w.store.list_outbox(&w.workspace_id, 1000).await.unwrap();
    assert_eq!(rows.len(), ROWS);
    assert!(
        rows.iter()
            .all(|r| r.status == OutboxStatus::Sent && r.attempts == 1)
    );
}

// ---------------------------------------------------------------------------------------------
// The webhooks API
// ---------------------------------------------------------------------------------------------

async fn webhooks_api(w: World) {
    let key = w.admin_key.clone();
    let viewer = w
        .store
        .create_api_key(&w.workspace_id, Role::Viewer)
        .await
        .unwrap();
    let (_, other) = w.store.create_workspace("Other Staffing").await.unwrap();
    let receiver = WebhookReceiver::start().await;
    let url = format!("{}/hooks", receiver.url);

    // Validation names the field.
    let long = format!("https://example.com/{}", "a".repeat(2048));
    let cases: Vec<(Value, &str)> = vec![
        (json!({"events": ["call.ended"]}), "url"),
        (json!({"url": "", "events": ["call.ended"]}), "url"),
        (
            json!({"url": "ftp://example.com/x", "events": ["call.ended"]}),
            "url",
        ),
        (json!({"url": "/relative", "events": ["call.ended"]}), "url"),
        (json!({"url": long, "events": ["call.ended"]}), "url"),
        (json!({"url": url}), "events"),
        (json!({"url": url, "events": []}), "events"),
        (json!({"url": url, "events": "call.ended"}), "events"),
        (
            json!({"url": url, "events": ["call.ended", "sms.received", "call.started"]}),
            "events[2]",
        ),
    ];
    for (body, field) in cases {
        let (status, got) = w
            .send(Method::POST, "/api/v1/webhooks", &key, Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {got}");
        assert_eq!(got["error"]["field"], field, "{body} → {got}");
    }
    let (status, _) = w
        .send(
            Method::POST,
            "/api/v1/webhooks",
            &key,
            Some(json!({"url": url, "events": ["call.ended"], "secret": "mine"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Viewers read, never write.
    let create = json!({"url": url, "events": ["call.ended", "call.ended", "candidate.approved"]});
    let (status, _) = w
        .send(
            Method::POST,
            "/api/v1/webhooks",
            &viewer,
            Some(create.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, created) = w
        .send(Method::POST, "/api/v1/webhooks", &key, Some(create))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["url"], url.as_str());
    assert_eq!(
        created["events"],
        json!(["call.ended", "candidate.approved"])
    );
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(
        secret.starts_with("whsec_") && secret.len() == 70,
        "{secret}"
    );
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    let (status, list) = w.send(Method::GET, "/api/v1/webhooks", &viewer, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["id"], id.as_str());
    assert!(list["data"][0].get("secret").is_none());
    let path = format!("/api/v1/webhooks/{id}");
    let (status, got) = w.send(Method::GET, &path, &viewer, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(got.get("secret").is_none());
    assert_eq!(got["events"], created["events"]);

    // Another workspace sees nothing.
    let deliveries = format!("{path}/deliveries");
    for (method, p) in [
        (Method::GET, &path),
        (Method::DELETE, &path),
        (Method::GET, &deliveries),
    ] {
        let (status, _) = w.send(method.clone(), p, &other, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {p}");
    }
    let (_, others) = w.send(Method::GET, "/api/v1/webhooks", &other, None).await;
    assert_eq!(others["data"], json!([]));

    // Deliveries, newest first, with their attempts.
    let worker = w.worker();
    receiver.respond_with(&[500]);
    let first = w
        .store
        .emit_event(&w.workspace_id, "call.ended", &json!({"call_id": "c1"}))
        .await
        .unwrap();
    assert_eq!(worker.run_once(now_ms()).await, 1);
    let second = w
        .store
        .emit_event(
            &w.workspace_id,
            "candidate.approved",
            &json!({"candidate_id": "k1"}),
        )
        .await
        .unwrap();
    assert_eq!(worker.run_once(now_ms()).await, 1);
    let (status, got) = w.send(Method::GET, &deliveries, &viewer, None).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    let data = got["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let (newest, oldest) = (&data[0], &data[1]);
    assert_eq!(newest["event_id"], second.as_str());
    assert_eq!(newest["event_type"], "candidate.approved");
    assert_eq!(newest["status"], "sent");
    assert_eq!(newest["next_attempt_at"], Value::Null);
    assert!(newest["sent_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(newest["attempts"][0]["attempt"], 1);
    assert_eq!(newest["attempts"][0]["status_code"], 200);
    assert_eq!(newest["attempts"][0]["error"], Value::Null);
    assert!(newest["attempts"][0]["duration_ms"].as_i64().unwrap() >= 0);
    assert_eq!(oldest["event_id"], first.as_str());
    assert_eq!(oldest["event_type"], "call.ended");
    assert_eq!(oldest["status"], "pending");
    assert!(oldest["next_attempt_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(oldest["sent_at"], Value::Null);
    assert_eq!(oldest["attempts"][0]["status_code"], 500);
    assert!(
        oldest["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .starts_with("HTTP 500")
    );
    assert!(
        oldest["attempts"][0]["started_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    let (_, page) = w
        .send(Method::GET, &format!("{deliveries}?limit=1"), &key, None)
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["data"][0]["id"], newest["id"]);
    let cursor = newest["id"].as_str().unwrap();
    let (_, page) = w
        .send(
            Method::GET,
            &format!("{deliveries}?limit=1&before={cursor}"),
            &key,
            None,
        )
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["data"][0]["id"], oldest["id"]);
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("before=nope", "before"),
    ] {
        let (status, got) = w
            .send(Method::GET, &format!("{deliveries}?{query}"), &key, None)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {got}");
        assert_eq!(got["error"]["field"], field);
    }

    // Deleting cancels what is still pending.
    let (status, _) = w.send(Method::DELETE, &path, &viewer, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = w.send(Method::DELETE, &path, &key, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, Value::Null);
    let pending = w.row(oldest["id"].as_str().unwrap()).await;
    assert_eq!(pending.status, OutboxStatus::Failed);
    assert_eq!(pending.last_error.as_deref(), Some("endpoint deleted"));
    assert_eq!(worker.run_once(now_ms() + 48 * HOUR).await, 0);
    for method in [Method::GET, Method::DELETE] {
        let (status, _) = w.send(method, &path, &key, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (_, list) = w.send(Method::GET, "/api/v1/webhooks", &key, None).await;
    assert_eq!(list["data"], json!([]));
    // A later event has nowhere to go.
    let later = w
        .store
        .emit_event(&w.workspace_id, "call.ended", &json!({"call_id": "c2"}))
        .await
        .unwrap();
    assert!(w.deliveries_of(&later).await.is_empty());
    assert_eq!(receiver.requests().len(), 2);
}
