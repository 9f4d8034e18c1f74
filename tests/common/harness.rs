//! The API test harness: a store on a fresh database (SQLite or PostgreSQL), the whole HTTP router
//! over it (recruiter API and carrier webhooks, with Twilio signatures checked against
//! [`TWILIO_TOKEN`] and the other carriers' against [`carrier_credentials`]), a data directory,
//! and helpers to call it as a client would.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use receptionist::backends::{Backends, ScriptedAnswers};
use receptionist::model::{
    AnswerRecord, AnswerValue, CallEvent, QuestionKind, Speaker, TranscriptLine,
};
use receptionist::server::AppState;
use receptionist::store::{NewCall, Store};

use super::{Backend, TestDatabase};

/// The Twilio auth token the harness's server checks signatures with.
pub const TWILIO_TOKEN: &str = "harness-twilio-token";
/// The public URL the harness's server believes it has (signatures are over it).
pub const PUBLIC_URL: &str = "http://rx.test";

/// The credentials every carrier signs with in these tests (Twilio's is [`TWILIO_TOKEN`]).
pub fn carrier_credentials() -> receptionist::server::carriers::client::Credentials {
    receptionist::server::carriers::client::Credentials {
        twilio_auth_token: TWILIO_TOKEN.into(),
        ..receptionist::server::carriers::client::Credentials::test()
    }
}

/// One test's world: a store on a fresh database, the router over it, a data directory.
#[derive(Clone)]
pub struct Harness {
    pub app: Router,
    pub store: Store,
    /// The server's data directory: `<tmp>/data`, so that `<tmp>/secret.wav` is `../secret.wav`.
    pub data_dir: std::path::PathBuf,
    /// The test database's URL (for statements a test makes on its own connection).
    pub db_url: String,
    /// The server state behind `app` (config, outbox notifier...).
    pub state: AppState,
    _tmp: Arc<tempfile::TempDir>,
}

pub async fn harness(backend: Backend) -> (Harness, TestDatabase) {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let db = TestDatabase::create(backend, &data_dir).await;
    let store = Store::connect(&db.url).await.unwrap();
    let data_dir_arg = data_dir.display().to_string();
    let carrier_flags = carrier_credentials().server_flags();
    let mut args = vec![
        "--data-dir",
        data_dir_arg.as_str(),
        "--node-id",
        "test-node",
        "--database-url",
        db.url.as_str(),
        "--twilio-auth-token",
        TWILIO_TOKEN,
        "--twilio-account-sid",
        "AC00000000000000000000000000000000",
        "--public-url",
        PUBLIC_URL,
    ];
    // the other carriers' credentials (Twilio's is already there)
    args.extend(
        carrier_flags
            .iter()
            .map(String::as_str)
            .skip_while(|f| *f != "--telnyx-public-key"),
    );
    let config = super::serve_config(&args);
    let backends = Backends::scripted(ScriptedAnswers::default());
    let state = AppState::new(store.clone(), config, backends);
    let app = receptionist::server::router(state.clone());
    (
        Harness {
            app,
            store,
            data_dir,
            db_url: db.url.clone(),
            state,
            _tmp: Arc::new(tmp),
        },
        db,
    )
}

/// Run `body` on a fresh harness; always drop the PostgreSQL database, then re-raise a failure.
pub async fn run<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(Harness) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (h, db) = harness(backend).await;
    let store = h.store.clone();
    let outcome = tokio::spawn(body(h)).await;
    store.close().await;
    db.drop_database().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// `#[tokio::test]`s named `<name>_sqlite` and `<name>_postgres` running the same body.
#[macro_export]
macro_rules! both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::common::harness::run($crate::common::Backend::Sqlite, super::$name).await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::common::harness::run($crate::common::Backend::Postgres, super::$name).await;
            })*
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

impl Harness {
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let req = match body {
            Some(body) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let (status, bytes) = self.raw(req).await;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("non-JSON body: {}", String::from_utf8_lossy(&bytes)))
        };
        (status, value)
    }

    pub async fn raw(&self, req: Request<Body>) -> (StatusCode, Vec<u8>) {
        let response = self.app.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, bytes.to_vec())
    }

    pub async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, Some(key), None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, Some(key), Some(body)).await
    }

    pub async fn put(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::PUT, path, Some(key), Some(body)).await
    }

    /// A workspace and its admin key.
    pub async fn workspace(&self) -> (String, String) {
        let (ws, key) = self.store.create_workspace("Acme Staffing").await.unwrap();
        (ws.id, key)
    }

    /// Create a receptionist through the API; returns its JSON.
    pub async fn receptionist(&self, key: &str, phone: &str) -> Value {
        let (status, body) = self
            .post("/api/v1/receptionists", key, minimal(phone))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }
}

pub fn minimal(phone: &str) -> Value {
    json!({
        "phone_number": phone,
        "agent_name": "Chloe",
        "intro_message": "Hi, I'm Chloe from ABC Staffing. Thanks for calling!",
    })
}

pub fn error_field(body: &Value) -> &str {
    body["error"]["field"].as_str().unwrap_or("<none>")
}

pub fn unique_phone() -> String {
    // E.164 with a random tail, so parallel tests never collide.
    format!("+1555{:07}", rand::random::<u32>() % 10_000_000)
}

pub fn line(speaker: Speaker, text: &str, start_ms: u64, end_ms: u64) -> CallEvent {
    CallEvent::Transcript(TranscriptLine {
        speaker,
        text: text.into(),
        start_ms,
        end_ms,
        interrupted: false,
        dtmf: false,
    })
}

pub fn answer(index: usize, raw: &str, value: AnswerValue, attempts: u8) -> CallEvent {
    CallEvent::Answer(AnswerRecord {
        question_index: index,
        question: format!("question {index}"),
        kind: QuestionKind::YesNo,
        raw: raw.into(),
        value,
        attempts,
        via_dtmf: false,
        meets_expected: None,
        dealbreaker_failed: false,
    })
}

/// Accept a call from `from` to the receptionist `r` (API JSON) on `node`.
pub async fn accept(h: &Harness, r: &Value, from: &str, node: &str) -> NewCall {
    let settings = h
        .store
        .receptionist_by_phone(r["phone_number"].as_str().unwrap())
        .await
        .unwrap()
        .expect("routed by phone")
        .settings;
    let call = NewCall {
        id: uuid::Uuid::new_v4().to_string(),
        carrier: "twilio".into(),
        workspace_id: r["workspace_id"].as_str().unwrap().into(),
        receptionist_id: r["id"].as_str().unwrap().into(),
        call_sid: format!("CA{}", uuid::Uuid::new_v4().simple()),
        from_number: from.into(),
        to_number: settings.phone_number.clone(),
        forwarded_from: None,
        token_hash: "hash-1".into(),
        node_id: node.into(),
        accepted_at_ms: receptionist::store::now_ms(),
        settings,
    };
    assert_eq!(h.store.accept_call(&call).await.unwrap(), call.id);
    call
}
