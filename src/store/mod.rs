//! Storage: the only module that touches sqlx. Works on SQLite (the embedded default) and
//! PostgreSQL, chosen by the URL scheme; migrations are embedded and run at [`Store::connect`].
//!
//! # Why an enum over two native pools rather than sqlx's `Any` driver
//!
//! [`Store`] holds either a `SqlitePool` or a `PgPool`, and each query is written once, as portable
//! SQL with `$N` placeholders (which sqlx's SQLite driver accepts too), and expanded for both pools
//! by the private `on_pool!` macro. Compared with `Any`:
//! - each backend keeps its native driver: native types (`BOOLEAN`, `BIGINT`, `DOUBLE PRECISION`),
//!   its own connect options (SQLite: create the file, WAL, foreign keys, busy timeout) and its own
//!   embedded migrations (`migrations/sqlite`, `migrations/postgres`) with no runtime driver
//!   registry to install;
//! - unique-violation detection (`Conflict`) goes through each driver's real error codes;
//! - the cost is that every query body is compiled twice, which the macro hides.
//!
//! Conventions: times are epoch milliseconds (`BIGINT`), JSON is stored as `TEXT`, ids are UUID
//! strings. Nothing here logs phone numbers, names or transcripts: log lines carry ids only.

mod analytics;
mod calls;
mod candidates;
mod interviewers;
pub mod outbox;
pub mod pipeline;
mod receptionists;
pub mod webhooks;
mod workspaces;

pub use analytics::{Analytics, AnalyticsMetrics, ReceptionistAnalytics, ended_step};
pub use calls::{CallAudit, EventBatch};
pub use interviewers::{Interviewer, InterviewerInput};
pub use outbox::{
    Attempt, AttemptRecord, ClaimedOutbox, EVENT_TYPES, EmailPayload, NewOutbox, OutboxKind,
    OutboxRow, OutboxStatus, Settlement, SmsPayload,
};
pub use workspaces::ApiKeyInfo;
// For producers' transactions (`crate::store::enqueue_outbox!`); the after-call pipeline uses them.
#[allow(unused_imports)]
pub(crate) use outbox::{emit_event, enqueue_outbox};
pub use webhooks::{Delivery, WebhookEndpoint};

use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::model::{
    AnswerRecord, CandidateStatus, DisclosureRecord, EndReason, ReceptionistSettings,
    ReceptionistStatus, Review, TranscriptLine, TurnLatency,
};

pub type StoreResult<T> = Result<T, StoreError>;

/// What can go wrong in the store. The HTTP layer maps these (server/error.rs).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such row (or not in the caller's workspace).
    #[error("not found")]
    NotFound,
    /// A uniqueness or state rule was violated; `field` names what collided.
    #[error("conflict on {field}: {message}")]
    Conflict {
        field: &'static str,
        message: String,
    },
    /// A request that breaks a rule only the database can check (e.g. an id that must belong
    /// to a list); `field` names the input at fault.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The URL is neither `sqlite:` nor `postgres:`/`postgresql:`.
    #[error("unsupported database URL scheme {0:?} (expected sqlite: or postgres:)")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be understood (bad enum text, bad JSON).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Clone, Debug)]
enum Pool {
    Sqlite(SqlitePools),
    Postgres(PgPool),
}

/// SQLite's connections: one writer and a few readers.
///
/// SQLite lets one connection write at a time. With every connection allowed to write, a burst of
/// writers (hundreds of calls ending together) all took `BEGIN IMMEDIATE` at once; all but one
/// slept in SQLite's busy handler, whose back-off sleeps grow to 100 ms, while holding their
/// pooled connections, so the pool ran dry and everything queued behind the sleepers (up to 9.5 s
/// in the 30-minute soak at 300 calls, `sqlx::pool::acquire` warnings). One writing connection
/// makes writers queue in the pool's FIFO instead and each takes the lock the moment the last one
/// commits; reads (in WAL mode they never wait for the writer) run on their own read-only
/// connections. An in-memory database is one connection for both.
#[derive(Clone, Debug)]
struct SqlitePools {
    write: SqlitePool,
    read: SqlitePool,
}

/// Expands `$body` once per backend with `$pool` bound to the native pool. The second form also
/// binds `$begin`, the statement that opens a write transaction: `BEGIN IMMEDIATE` on SQLite, so
/// a transaction that reads before it writes takes the write lock up front and waits (busy
/// timeout) instead of failing with "database is locked" when it would upgrade its lock.
///
/// On SQLite the first two forms run on the single writing connection ([`SqlitePools`]); the
/// `read` form, for statements that only read, on the read-only ones. A read left in a plain form
/// still works, queued with the writes.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pool {
            crate::store::Pool::Sqlite(pools) => {
                let $pool = &pools.write;
                $body
            }
            crate::store::Pool::Postgres($pool) => $body,
        }
    };
    ($store:expr, read |$pool:ident| $body:expr) => {
        match &$store.pool {
            crate::store::Pool::Sqlite(pools) => {
                let $pool = &pools.read;
                $body
            }
            crate::store::Pool::Postgres($pool) => $body,
        }
    };
    ($store:expr, |$pool:ident, $begin:ident| $body:expr) => {
        match &$store.pool {
            crate::store::Pool::Sqlite(pools) => {
                let $pool = &pools.write;
                let $begin: &'static str = "BEGIN IMMEDIATE";
                $body
            }
            crate::store::Pool::Postgres($pool) => {
                let $begin: &'static str = "BEGIN";
                $body
            }
        }
    };
}
pub(crate) use on_pool;

/// `pool.begin_with(statement)` (the `begin` of [`on_pool!`]), boxed. sqlx's `begin_with` future
/// is about 3 KiB on SQLite and 14.6 KiB on Postgres (it may open a connection inline); awaited
/// inline, it made every transactional method's future that large, and every task awaiting one
/// held it for its whole life: each call's driver task (`start_call`) and event writer
/// (`append_events`) kept about 15 KiB apiece (`rustc -Zprint-type-sizes`). Boxed, it costs one
/// short-lived allocation per transaction.
pub(crate) fn open_tx<'p, DB: sqlx::Database>(
    pool: &'p sqlx::Pool<DB>,
    statement: &'static str,
) -> futures_util::future::BoxFuture<'p, Result<sqlx::Transaction<'static, DB>, sqlx::Error>> {
    Box::pin(pool.begin_with(statement))
}

/// The database handle. Cheap to clone (a pool inside).
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
}

/// Which backend a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// `PRAGMA cache_size` of SQLite's one writing connection: 256 KiB (see [`Store::connect`]).
const WRITER_CACHE: &str = "-256";
/// `PRAGMA synchronous` of SQLite's writing connection: `NORMAL`, what SQLite recommends for WAL
/// mode. A commit is in the write-ahead log when it returns, so a crashed or killed server loses
/// nothing and the database is consistent after any failure. The log is flushed to the disk at
/// each checkpoint instead of at each commit, so a power cut or a kernel crash can roll back the
/// last commits before it (Linux writes them out within about 30 s by default). With `FULL`
/// (SQLite's default) each commit waited for a disk flush: at 10 calls that was one `fsync` a
/// second for the events alone, about a third of SQLite's worker's CPU (README: stop 55), and the
/// one writing connection was held, in front of every other write, for as long as the disk took.
const WRITER_SYNCHRONOUS: SqliteSynchronous = SqliteSynchronous::Normal;

impl Store {
    /// Connect by URL scheme (`sqlite:` or `postgres:`/`postgresql:`) and run the migrations.
    /// SQLite: the file and its directory are created if missing; WAL mode; foreign keys on.
    pub async fn connect(url: &str) -> StoreResult<Store> {
        let scheme = url.split(':').next().unwrap_or_default();
        let pool = match scheme {
            "sqlite" => {
                let options = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10));
                let file = options.get_filename();
                let in_memory = url.contains(":memory:") || url.contains("mode=memory");
                if !in_memory
                    && let Some(dir) = file.parent()
                    && !dir.as_os_str().is_empty()
                {
                    tokio::fs::create_dir_all(dir).await?;
                }
                // no ping before each use: an embedded connection cannot have dropped, and the
                // ping was a round trip to SQLite's worker thread (a context switch each way) per
                // transaction
                // the writer's page cache: 256 KiB instead of SQLite's 2 MB (negative: KiB). It
                // appends events and rows at each call's place in the indexes; what falls out
                // is read back from the OS's cache. Measured at 100 calls (`receptionist
                // loadgen --calls 100 --line-noise-dbfs -50`, two alternated pairs): RSS per
                // call 99.8 / 100.7 -> 94.5 / 96.3 KiB, CPU the same.
                let write = SqlitePoolOptions::new()
                    .max_connections(1)
                    .test_before_acquire(false)
                    .connect_with(
                        options
                            .clone()
                            .pragma("cache_size", WRITER_CACHE)
                            .synchronous(WRITER_SYNCHRONOUS),
                    )
                    .await?;
                sqlx::migrate!("migrations/sqlite").run(&write).await?;
                let read = if in_memory {
                    write.clone()
                } else {
                    SqlitePoolOptions::new()
                        .max_connections(8)
                        .test_before_acquire(false)
                        .connect_with(options.read_only(true))
                        .await?
                };
                Pool::Sqlite(SqlitePools { write, read })
            }
            "postgres" | "postgresql" => {
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await?;
                sqlx::migrate!("migrations/postgres").run(&pool).await?;
                Pool::Postgres(pool)
            }
            other => return Err(StoreError::UnsupportedUrl(other.to_string())),
        };
        Ok(Store { pool })
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Whether the database answers a trivial query (readiness).
    pub async fn ping(&self) -> StoreResult<()> {
        on_pool!(
            self,
            read | pool | {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
        );
        Ok(())
    }

    /// Close every pooled connection (tests drop their database afterwards).
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(pools) => {
                pools.read.close().await;
                pools.write.close().await;
            }
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Public records
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub created_at_ms: i64,
}

/// An API key's role: admin may write, viewer reads only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
}

/// Who is calling the recruiter API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub workspace_id: String,
    pub role: Role,
    /// The API key's id (never the key): who made a change, in a candidate's history.
    pub key_id: String,
    /// The key's name (may be empty).
    pub key_name: String,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// How this principal is named as the actor of a change.
    pub fn actor(&self) -> String {
        format!("key:{}", self.key_id)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Receptionist {
    pub id: String,
    pub workspace_id: String,
    /// The carrier its number is on (`twilio` by default; see `engine::media::Carrier`).
    pub carrier: String,
    pub settings: ReceptionistSettings,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// What the voice webhook records when it accepts a call.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub id: String,
    /// `twilio`, or `web` for a test call from the dashboard.
    pub carrier: String,
    pub workspace_id: String,
    pub receptionist_id: String,
    pub call_sid: String,
    pub from_number: String,
    pub to_number: String,
    pub forwarded_from: Option<String>,
    /// SHA-256 of the one-time media stream token.
    pub token_hash: String,
    pub node_id: String,
    pub accepted_at_ms: i64,
    pub settings: ReceptionistSettings,
}

/// A call's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    /// The webhook answered; the media stream has not started.
    Accepted,
    InProgress,
    Completed,
    /// The server stopped during the call.
    Interrupted,
}

/// A full `calls` row.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRow {
    pub id: String,
    pub workspace_id: String,
    pub receptionist_id: String,
    pub carrier: String,
    pub call_sid: String,
    pub stream_sid: Option<String>,
    pub from_number: String,
    pub to_number: String,
    pub forwarded_from: Option<String>,
    pub token_hash: String,
    pub node_id: String,
    pub status: CallStatus,
    pub accepted_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub end_reason: Option<EndReason>,
    /// Relative to the data directory.
    pub recording_path: Option<String>,
    /// Part of the call is missing from its recording (see [`CallSummary::recording_incomplete`]).
    pub recording_incomplete: bool,
    pub candidate_id: Option<String>,
    /// The receptionist's settings as they were when the call was accepted.
    pub settings: ReceptionistSettings,
}

/// What [`Store::start_call`] decided about the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedCall {
    pub candidate_id: String,
    /// The workspace already had a candidate with this phone number.
    pub returning_caller: bool,
}

/// One row of the calls list.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSummary {
    pub id: String,
    /// `twilio`, `telnyx`, `plivo`, `vonage`, `signalwire`, `exotel`, or `web` (a test call
    /// from the dashboard).
    pub carrier: String,
    /// The carrier's own id for the call (Twilio's CallSid, Telnyx's call control id, ...).
    pub carrier_call_id: String,
    pub receptionist_id: String,
    pub candidate_id: Option<String>,
    pub candidate_name: Option<String>,
    pub from_number: String,
    pub to_number: String,
    pub forwarded_from: Option<String>,
    pub status: CallStatus,
    pub accepted_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub end_reason: Option<EndReason>,
    /// Relative to the data directory; the file may be missing if the call never produced audio.
    pub recording_path: Option<String>,
    /// Part of the call is missing from its recording: the disk refused a write (full, an I/O
    /// error) or could not keep up (silence in place of what was missed).
    pub recording_incomplete: bool,
}

/// A call with everything it produced, assembled from its events.
#[derive(Debug, Clone, PartialEq)]
pub struct CallDetail {
    pub summary: CallSummary,
    pub transcript: Vec<TranscriptLine>,
    /// The latest name the caller gave on this call.
    pub name: Option<String>,
    pub location: Option<String>,
    /// The latest answer per question, ordered by question index.
    pub answers: Vec<AnswerRecord>,
    pub disclosures: Vec<DisclosureRecord>,
    pub latencies: Vec<TurnLatency>,
    /// The caller's language, when a multilingual call's recogniser named one (ISO 639-1).
    pub caller_language: Option<String>,
    /// The language the agent spoke last (`en` unless it answered in the caller's).
    pub agent_language: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: String,
    pub workspace_id: String,
    /// The receptionist the candidate first called.
    pub receptionist_id: String,
    pub phone_number: Option<String>,
    pub name: Option<String>,
    pub location: Option<String>,
    pub email: Option<String>,
    pub status: CandidateStatus,
    pub review: Option<Review>,
    /// `system` (routing) or `key:<id>` (a recruiter).
    pub review_by: Option<String>,
    pub reviewed_at_ms: Option<i64>,
    pub ingested_interviewer_id: Option<String>,
    pub ingested_at_ms: Option<i64>,
    pub confirmed_at_ms: Option<i64>,
    pub confirmation_sms_at_ms: Option<i64>,
    /// Score of the newest evaluation.
    pub latest_score: Option<f64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub last_call_at_ms: i64,
}

/// One row of the candidate pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateSummary {
    pub candidate: Candidate,
    /// The receptionist's agent name.
    pub receptionist_name: String,
    pub ingested_interviewer_name: Option<String>,
    pub call_count: i64,
    pub evaluation_count: i64,
    /// Duration of the latest call, if it ended.
    pub last_call_duration_ms: Option<i64>,
    pub has_recording: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CandidateDetail {
    pub summary: CandidateSummary,
    /// Newest first.
    pub calls: Vec<CallSummary>,
}

/// A tab of the candidate pipeline.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Tab {
    #[default]
    All,
    /// Status `evaluated` (whatever the decision).
    Evaluated,
    NeedsReview,
    Approved,
    Rejected,
}

/// How many candidates each tab holds (same search and receptionist filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, utoipa::ToSchema)]
pub struct TabCounts {
    pub all: i64,
    pub evaluated: i64,
    pub needs_review: i64,
    pub approved: i64,
    pub rejected: i64,
}

/// Filters of the candidate pipeline; all optional. Newest (latest call) first.
#[derive(Debug, Clone, Default)]
pub struct CandidateFilter {
    pub tab: Tab,
    /// Continue after this `(last_call_at, id)` (the previous page's last row).
    pub after: Option<(i64, String)>,
    pub status: Option<CandidateStatus>,
    pub receptionist_id: Option<String>,
    /// Case-insensitive substring of name, email or phone number.
    pub q: Option<String>,
    /// Default 50, at most 500.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the query files
// ---------------------------------------------------------------------------------------------

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The snake_case name serde gives a unit enum variant.
pub(crate) fn enum_str<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        other => unreachable!("enum_str on a non-unit enum: {other:?}"),
    }
}

/// Parse a stored enum text back through serde.
pub(crate) fn parse_enum<T: DeserializeOwned>(what: &str, s: &str) -> StoreResult<T> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| StoreError::Corrupt(format!("unknown {what} {s:?}")))
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("cannot serialize: {e}")))
}

pub(crate) fn from_json<T: DeserializeOwned>(what: &str, s: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("bad {what} JSON: {e}")))
}

/// Map a unique violation to `Conflict { field }`, anything else to `Database`.
pub(crate) fn unique_to_conflict(e: sqlx::Error, field: &'static str, message: &str) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        return StoreError::Conflict {
            field,
            message: message.to_string(),
        };
    }
    StoreError::Database(e)
}

/// A phone number in E.164: `+`, then 2 to 15 digits, the first not 0.
pub fn is_e164(phone: &str) -> bool {
    let Some(digits) = phone.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

pub(crate) fn receptionist_status_str(s: ReceptionistStatus) -> String {
    enum_str(&s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164() {
        assert!(is_e164("+15551234567"));
        assert!(is_e164("+44"));
        assert!(!is_e164("+4"));
        assert!(!is_e164("+0123"));
        assert!(!is_e164("15551234567"));
        assert!(!is_e164("anonymous"));
        assert!(!is_e164("+1234567890123456"));
    }

    #[test]
    fn enums_round_trip_through_text() {
        assert_eq!(enum_str(&EndReason::CallerHangup), "caller_hangup");
        let r: EndReason = parse_enum("end reason", "server_interrupted").unwrap();
        assert_eq!(r, EndReason::ServerInterrupted);
        assert_eq!(enum_str(&CallStatus::InProgress), "in_progress");
        assert!(parse_enum::<CallStatus>("status", "nope").is_err());
    }

    /// The writer's durability is what the README says it is: WAL, commits flushed at checkpoints.
    #[tokio::test]
    async fn sqlite_writes_ahead_and_flushes_at_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("rx.db").display()))
            .await
            .unwrap();
        let Pool::Sqlite(pools) = &store.pool else {
            unreachable!("a sqlite URL")
        };
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&pools.write)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&pools.write)
            .await
            .unwrap();
        assert_eq!(synchronous, 1, "NORMAL");
        store.close().await;
    }

    #[tokio::test]
    async fn sqlite_creates_file_and_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/deeper/rx.db");
        let store = Store::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        assert!(path.exists());
        let (ws, key) = store.create_workspace("Acme").await.unwrap();
        let p = store.authenticate(&key).await.unwrap().unwrap();
        assert_eq!(p.workspace_id, ws.id);
        assert_eq!(p.role, Role::Admin);
        assert!(store.authenticate("rk_wrong").await.unwrap().is_none());
        store.close().await;
    }
}
