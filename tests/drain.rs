//! Graceful drain and the operational routes, on the real binary (scripted speech backends) with
//! real Twilio calls from the simulator (signed webhook, signed upgrade, media both ways), on
//! SQLite and PostgreSQL:
//!
//! - SIGTERM while calls are in progress: every carrier's voice webhook answers its busy markup,
//!   `/readyz` is 503 `draining`, a new media upgrade is refused with 503, the calls go on to
//!   their normal end and are stored with their after-call work, and the process exits 0;
//! - a call still going when a short `--drain-secs` runs out hears the goodbye and is stored
//!   `server_shutdown`, and the process exits 0;
//! - `/metrics` after a call: the call counters and the turn latency histogram moved;
//! - the database unreachable (PostgreSQL behind a proxy that is cut; SQLite write-locked) for
//!   two minutes (`RECEPTIONIST_TEST_OUTAGE_SECS`) from the middle of a call to past its end: the
//!   call goes on, its records wait in the journal, and once the database is back every transcript
//!   line, answer and the end are stored, in order, once; `receptionist verify` finds nothing;
//! - the server killed (SIGKILL) while the database is away: at the next start the journal is
//!   replayed and nothing the call said is lost.
//!
//! Nothing sleeps for a fixed time: every wait polls for what it waits for, with a bound.

mod common;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use receptionist::engine::dialogue::DRAIN_GOODBYE;
use receptionist::engine::media::Carrier;
use receptionist::model::{CallEvent, EndReason, Speaker};
use receptionist::server::carriers::client::{
    CarrierAction, Credentials, InboundCall, parse_answer, voice_request,
};
use receptionist::server::twilio::{BUSY_MESSAGE, signature, xml_escape};
use receptionist::store::{CallStatus, Store};
use receptionist::tools::simulate::{
    CallerTurn, SimOptions, SimOutcome, read_wav_8k, simulate_call,
};

use common::outage::Outage;
use common::{Backend, TestDatabase, create_workspace, free_port, trials, wait_healthy};

const AUTH_TOKEN: &str = "drain-twilio-auth-token";

/// What every carrier signs with: Twilio with [`AUTH_TOKEN`], the others with the test ones.
fn credentials() -> Credentials {
    Credentials {
        twilio_auth_token: AUTH_TOKEN.into(),
        ..Credentials::test()
    }
}

/// This binary's tests (`harness = false`, see `common::trials`): each body on SQLite and on
/// PostgreSQL.
fn main() -> std::process::ExitCode {
    let mut tests = Vec::new();
    macro_rules! both_databases {
        ($($name:ident),* $(,)?) => {$(
            tests.extend(trials::on_both_databases(stringify!($name), |b| Box::pin(run(b, $name))));
        )*};
    }
    // the longest first
    both_databases!(
        a_database_outage_mid_call_loses_nothing,
        killed_during_an_outage_the_journal_replays_at_restart,
        sigterm_refuses_new_calls_and_lets_calls_finish,
        calls_past_the_drain_period_hear_a_goodbye,
        metrics_count_a_call,
    );
    trials::main(tests)
}

/// How long the database stays away in the outage test (the issue's two minutes by default).
fn outage_length() -> Duration {
    let secs = std::env::var("RECEPTIONIST_TEST_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    Duration::from_secs(secs)
}

/// A receptionist with two screening questions (a yes/no and a number).
async fn screening_receptionist(server: &Server) -> String {
    server
        .receptionist_with(json!({
            "questions": [
                {"text": "Are you at least eighteen years old?", "kind": "yes_no", "expected": "yes"},
                {"text": "How many years of warehouse experience do you have?", "kind": "number", "expected": ">= 1"}
            ]
        }))
        .await
}

/// The database goes away after the caller gives their name and stays away past the end of the
/// call (two minutes in all): the caller is screened as usual, the records wait in the journal,
/// and after the database is back everything is stored in order, once.
async fn a_database_outage_mid_call_loses_nothing(db: Db) {
    let (mut outage, url) = Outage::new(db.backend, &db.url).await;
    let mut server = Server::start_on(&db, &url, &[]).await;
    let phone = screening_receptionist(&server).await;
    let mut turns = fixtures(&["name.wav"]);
    // the outage starts while the agent thanks the caller and asks the first question
    turns.push(CallerTurn::Silence(Duration::from_millis(100)));
    turns.extend(fixtures(&[
        "yes.wav",
        "number_three.wav",
        "no_questions.wav",
    ]));
    let (id, sim) = server.call(&phone, turns);
    let id = id.await;
    server.wait_caller_spoke(&id).await;
    let began = Instant::now();
    outage.cut().await;

    // the call goes on to its end with the database away
    let out = tokio::time::timeout(Duration::from_secs(90), sim)
        .await
        .expect("the call ended")
        .unwrap()
        .unwrap();
    assert!(out.server_hung_up, "the agent closed the call");
    assert_eq!(out.protocol_errors, 0);
    server
        .wait_until("the call's records are journaled", || async {
            let text = server.metrics().await;
            metric(&text, "receptionist_journal_calls") == Some(1.0)
                && metric(&text, "receptionist_calls_active") == Some(0.0)
        })
        .await;
    let journaled = metric(&server.metrics().await, "receptionist_journal_bytes").unwrap();
    assert!(journaled > 0.0);
    let journal = std::fs::read_to_string(db.dir.join(format!("journal/{id}.jsonl"))).unwrap();
    assert!(journal.contains(r#""record":"finish""#), "{journal}");

    let left = outage_length().saturating_sub(began.elapsed());
    tokio::time::sleep(left).await;
    outage.restore().await;
    server
        .wait_until("the journal is replayed", || async {
            metric(&server.metrics().await, "receptionist_journal_calls") == Some(0.0)
        })
        .await;
    assert_eq!(
        metric(&server.metrics().await, "receptionist_journal_bytes"),
        Some(0.0)
    );
    assert!(!db.dir.join(format!("journal/{id}.jsonl")).exists());
    let log = server.log();
    assert!(log.contains("go to its journal"), "{log}");
    assert!(!log.contains("+1555"), "no phone number in the log");

    let store = Store::connect(&db.url).await.unwrap();
    let call = store.call_by_id(&id).await.unwrap().unwrap();
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.end_reason, Some(EndReason::Completed));
    assert!(call.candidate_id.is_some(), "the after-call work ran");
    let events = store.load_events(&id).await.unwrap();
    let answers = answered_questions(&events);
    assert_eq!(
        answers,
        vec![0, 1],
        "each answer once, in order: {events:#?}"
    );
    let agent: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            CallEvent::Transcript(l) if l.speaker == Speaker::Agent => Some(l.text.as_str()),
            _ => None,
        })
        .collect();
    for question in [
        "Are you at least eighteen years old?",
        "How many years of warehouse experience do you have?",
    ] {
        let asked = agent.iter().filter(|l| l.contains(question)).count();
        assert_eq!(asked, 1, "{question:?} stored once: {agent:#?}");
    }
    let caller_lines = events
        .iter()
        .filter(|e| matches!(e, CallEvent::Transcript(l) if l.speaker == Speaker::Caller))
        .count();
    assert_eq!(
        caller_lines, 4,
        "the name, yes, three, no questions: {events:#?}"
    );
    let mut starts = events.iter().filter_map(|e| match e {
        CallEvent::Transcript(l) => Some(l.start_ms),
        _ => None,
    });
    let mut last = 0;
    assert!(
        starts.all(|t| std::mem::replace(&mut last, t) <= t),
        "the transcript in order: {events:#?}"
    );
    let (speaker, text, _) = last_line(&events);
    assert_eq!(speaker, Speaker::Agent);
    assert!(text.contains("Goodbye"), "{events:#?}");
    store.close().await;
    verify_finds_nothing(&db);

    server.signal("TERM");
    assert!(server.exit_status().await.success());
}

/// The database goes away mid-call; the caller answers; the server is killed before the database
/// comes back. At the next start (database back) the journal is replayed: the answer given
/// during the outage is stored, and the call is marked interrupted.
async fn killed_during_an_outage_the_journal_replays_at_restart(db: Db) {
    let (mut outage, url) = Outage::new(db.backend, &db.url).await;
    let mut server = Server::start_on(&db, &url, &[]).await;
    let phone = screening_receptionist(&server).await;
    let mut turns = fixtures(&["name.wav"]);
    turns.push(CallerTurn::Silence(Duration::from_millis(100)));
    turns.extend(fixtures(&["yes.wav"]));
    turns.push(CallerTurn::Silence(Duration::from_secs(60)));
    let (id, _sim) = server.call(&phone, turns);
    let id = id.await;
    server.wait_caller_spoke(&id).await;
    outage.cut().await;
    let path = db.dir.join(format!("journal/{id}.jsonl"));
    server
        .wait_until("the yes is journaled", || async {
            std::fs::read_to_string(&path).is_ok_and(|j| j.contains(r#""event":"answer""#))
        })
        .await;
    server.kill().await;
    outage.restore().await;

    let server = Server::start_on(&db, &url, &[]).await;
    assert!(!path.exists(), "the journal was replayed at start-up");
    assert!(
        server
            .log()
            .contains("call journal replayed into the database"),
        "{}",
        server.log()
    );
    let store = Store::connect(&db.url).await.unwrap();
    let call = store.call_by_id(&id).await.unwrap().unwrap();
    assert_eq!(call.status, CallStatus::Interrupted);
    let events = store.load_events(&id).await.unwrap();
    let answers = answered_questions(&events);
    assert_eq!(
        answers,
        vec![0],
        "the answer given during the outage: {events:#?}"
    );
    assert!(events.contains(&CallEvent::Name {
        name: "John Smith".into()
    }));
    store.close().await;
    verify_finds_nothing(&db);
}

/// `receptionist verify` on the test's database and data directory: exit 0, nothing reported.
fn verify_finds_nothing(db: &Db) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_receptionist"))
        .args(["verify", "--database-url", db.url.as_str(), "--data-dir"])
        .arg(&db.dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verify: {stdout}\n{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("0 incomplete"), "{stderr}");
}

/// SIGTERM during twenty calls: new calls are refused on every carrier, `/readyz` fails, the twenty
/// calls finish normally and are stored, the process exits 0.
async fn sigterm_refuses_new_calls_and_lets_calls_finish(db: Db) {
    let mut server = Server::start(&db, &["--drain-secs", "120"]).await;
    let phone = server.receptionist().await;
    let turns = || fixtures(&["name.wav", "no_questions.wav"]);
    let calls: Vec<_> = (0..20).map(|_| server.call(&phone, turns())).collect();
    let mut ids = Vec::new();
    let mut sims = Vec::new();
    for (id, sim) in calls {
        ids.push(id.await);
        sims.push(sim);
    }
    for id in &ids {
        server.wait_in_progress(id).await;
    }
    assert_eq!(
        server.ready().await,
        (StatusCode::OK, json!({"status": "ready"}))
    );

    server.signal("TERM");
    server
        .wait_until("the server is draining", || async {
            server.ready().await.0 == StatusCode::SERVICE_UNAVAILABLE
        })
        .await;
    assert_eq!(
        server.ready().await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "draining"})
        )
    );
    let healthz = server.http.get(format!("{}/healthz", server.base)).send();
    assert_eq!(
        healthz.await.unwrap().status(),
        StatusCode::OK,
        "still alive"
    );
    // a new call on any carrier hears the busy message (Exotel: 503, its flow goes on)
    for carrier in Carrier::ALL {
        let (status, body) = server.voice(carrier, &phone).await;
        let action = parse_answer(carrier, status.as_u16(), &body).unwrap();
        let message = (carrier != Carrier::Exotel).then(|| BUSY_MESSAGE.to_string());
        assert_eq!(
            action,
            CarrierAction::HangUp { message },
            "{carrier:?}: {body}"
        );
        if carrier == Carrier::Twilio {
            let busy = format!("<Say>{}</Say><Hangup/>", xml_escape(BUSY_MESSAGE));
            assert!(body.contains(&busy), "{body}");
        }
    }
    // and a new media stream is refused before it is upgraded
    assert_eq!(
        server.twilio_upgrade().await,
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    // the refused calls never became calls
    let listed = server.get("/api/v1/calls").await;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        ids.len(),
        "{listed}"
    );

    // the calls in progress go on to their normal end
    for sim in sims {
        let out = tokio::time::timeout(Duration::from_secs(90), sim)
            .await
            .expect("the call ended")
            .unwrap()
            .unwrap();
        assert!(out.server_hung_up, "the agent closed the call");
    }
    let status = server.exit_status().await;
    assert!(status.success(), "exit {status:?}:\n{}", server.log());
    let log = server.log();
    assert!(log.contains("draining"), "{log}");
    assert!(
        log.contains("every call has ended and been stored"),
        "{log}"
    );

    let store = Store::connect(&db.url).await.unwrap();
    for id in &ids {
        let call = store.call_by_id(id).await.unwrap().unwrap();
        assert_eq!(call.status, CallStatus::Completed);
        assert_eq!(call.end_reason, Some(EndReason::Completed));
        assert!(
            call.candidate_id.is_some(),
            "the after-call work ran before the exit"
        );
        let events = store.load_events(id).await.unwrap();
        assert!(
            events.contains(&CallEvent::Name {
                name: "John Smith".into()
            }),
            "{events:#?}"
        );
        let last = last_line(&events);
        assert_eq!(last.0, Speaker::Agent);
        assert!(last.1.contains("Goodbye"), "{events:#?}");
    }
    store.close().await;
}

/// `--drain-secs 1`: a caller who is still on the line when the drain period ends hears the
/// goodbye; the call is stored `server_shutdown` with the goodbye in its transcript.
async fn calls_past_the_drain_period_hear_a_goodbye(db: Db) {
    let mut server = Server::start(&db, &["--drain-secs", "1"]).await;
    let phone = server.receptionist().await;
    let mut turns = fixtures(&["name.wav"]);
    turns.push(CallerTurn::Silence(Duration::from_secs(60)));
    let (id, sim) = server.call(&phone, turns);
    let id = id.await;
    server.wait_in_progress(&id).await;
    // the caller has given their name: the call is well under way
    server.wait_caller_spoke(&id).await;

    server.signal("TERM");
    let out: SimOutcome = tokio::time::timeout(Duration::from_secs(60), sim)
        .await
        .expect("the call was ended")
        .unwrap()
        .unwrap();
    assert!(out.server_hung_up, "the server ended the call");
    let status = server.exit_status().await;
    assert!(status.success(), "exit {status:?}:\n{}", server.log());

    let store = Store::connect(&db.url).await.unwrap();
    let call = store.call_by_id(&id).await.unwrap().unwrap();
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.end_reason, Some(EndReason::ServerShutdown));
    let events = store.load_events(&id).await.unwrap();
    let last = last_line(&events);
    assert_eq!(
        last,
        (Speaker::Agent, DRAIN_GOODBYE.to_string(), false),
        "the goodbye, heard to the end: {events:#?}"
    );
    assert!(events.contains(&CallEvent::Name {
        name: "John Smith".into()
    }));
    store.close().await;
}

/// `/metrics` after a call: the call was counted by carrier and end reason, its turn latency
/// observed, and nothing is active; `/readyz` is 200 while serving; an idle server drains at once.
async fn metrics_count_a_call(db: Db) {
    let mut server = Server::start(&db, &[]).await;
    let phone = server.receptionist().await;
    let before = server.metrics().await;
    assert_eq!(
        metric(&before, "receptionist_calls_active"),
        Some(0.0),
        "{before}"
    );
    assert_eq!(
        metric(&before, "receptionist_draining"),
        Some(0.0),
        "{before}"
    );

    let mut turns = fixtures(&["name.wav"]);
    turns.push(CallerTurn::HangUp);
    let (id, sim) = server.call(&phone, turns);
    let id = id.await;
    sim.await.unwrap().unwrap();
    server
        .wait_until("the call's end is counted", || async {
            // active until its records are stored, a moment after its end is counted
            let text = server.metrics().await;
            metric(
                &text,
                r#"receptionist_calls_ended_total{reason="caller_hangup"}"#,
            ) == Some(1.0)
                && metric(&text, "receptionist_calls_active") == Some(0.0)
        })
        .await;
    let text = server.metrics().await;
    for (name, value) in [
        (r#"receptionist_calls_started_total{carrier="twilio"}"#, 1.0),
        ("receptionist_calls_active", 0.0),
        ("receptionist_stt_frames_dropped_total", 0.0),
        ("receptionist_draining", 0.0),
    ] {
        assert_eq!(metric(&text, name), Some(value), "{name} in:\n{text}");
    }
    // one turn (the name), every stage observed
    for stage in ["endpointing", "stt", "tts", "total"] {
        let count = format!(r#"receptionist_turn_latency_seconds_count{{stage="{stage}"}}"#);
        assert_eq!(metric(&text, &count), Some(1.0), "{count} in:\n{text}");
    }
    assert!(
        text.contains("# TYPE receptionist_turn_latency_seconds histogram"),
        "{text}"
    );
    // the call's caller audio arrived about every 20 ms (two at a time once steady)
    let gaps = metric(&text, "receptionist_inbound_frame_gap_seconds_count").unwrap();
    let gap_sum = metric(&text, "receptionist_inbound_frame_gap_seconds_sum").unwrap();
    assert!(gaps > 50.0, "{text}");
    assert!((0.01..0.05).contains(&(gap_sum / gaps)), "{text}");
    assert!(
        !text.contains(&phone[1..]),
        "no phone number in the metrics"
    );
    let call = server.get(&format!("/api/v1/calls/{id}")).await;
    assert_eq!(call["end_reason"], "caller_hangup", "{call}");

    // SIGINT with nothing in progress: out at once
    server.signal("INT");
    let status = server.exit_status().await;
    assert!(status.success(), "exit {status:?}:\n{}", server.log());
}

// ---------------------------------------------------------------------------------------------
// The server under test: the real binary
// ---------------------------------------------------------------------------------------------

/// A test's database.
struct Db {
    backend: Backend,
    url: String,
    dir: PathBuf,
}

/// A fresh database (and a temporary directory) for `body`; the PostgreSQL database is dropped
/// afterwards, whatever happened, and a failure re-raised.
async fn run<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let db = TestDatabase::create(backend, &data_dir).await;
    let outcome = tokio::spawn(body(Db {
        backend,
        url: db.url.clone(),
        dir: data_dir,
    }))
    .await;
    db.drop_database().await;
    drop(tmp);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

struct Server {
    child: tokio::process::Child,
    base: String,
    port: u16,
    key: String,
    http: reqwest::Client,
    log: PathBuf,
}

impl Server {
    /// `receptionist serve` on a free port with scripted backends, every carrier's test
    /// credential and `extra` flags; a workspace and its admin key.
    async fn start(db: &Db, extra: &[&str]) -> Self {
        Self::start_on(db, &db.url, extra).await
    }

    /// The same, the server reaching its database at `url` (a proxy in front of it).
    async fn start_on(db: &Db, url: &str, extra: &[&str]) -> Self {
        let bin = env!("CARGO_BIN_EXE_receptionist");
        let data = db.dir.display().to_string();
        let key = create_workspace("Acme Staffing", &db.url, &db.dir);
        let port = free_port();
        let log = db.dir.join(format!("serve-{port}.log"));
        let child = tokio::process::Command::new(bin)
            .args(["serve", "--database-url", url, "--data-dir", data.as_str()])
            .args([
                "--backends",
                "scripted",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(credentials().server_flags())
            .args(extra)
            .env_remove("RECEPTIONIST_PUBLIC_URL")
            .env_remove("RECEPTIONIST_DRAIN_SECS")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
            key,
            http: reqwest::Client::new(),
            log,
        };
        wait_healthy(&server.http, &server.base, &server.log).await;
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A live receptionist with a short script (a one-line intro, the name, caller questions);
    /// its number.
    async fn receptionist(&self) -> String {
        self.receptionist_with(json!({})).await
    }

    /// The same, with `more` fields.
    async fn receptionist_with(&self, more: Value) -> String {
        let phone = format!("+1555{:07}", rand::random::<u32>() % 10_000_000);
        let response = self
            .http
            .post(format!("{}/api/v1/receptionists", self.base))
            .bearer_auth(&self.key)
            .json(&{
                let mut body = json!({
                    "phone_number": phone,
                    "agent_name": "Chloe",
                    "intro_message": "Hi, this is Chloe.",
                    "disclose_ai": false,
                    "disclose_recording": false,
                    "disclose_e_verify": false,
                    "collect_location": false,
                });
                if let (Some(body), Value::Object(more)) = (body.as_object_mut(), more) {
                    body.extend(more);
                }
                body
            })
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        phone
    }

    /// A simulated Twilio caller: its call id (once the webhook answered) and the whole call.
    fn call(
        &self,
        phone: &str,
        turns: Vec<CallerTurn>,
    ) -> (
        impl Future<Output = String> + use<>,
        tokio::task::JoinHandle<anyhow::Result<SimOutcome>>,
    ) {
        let (id_tx, mut id_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut opts = SimOptions::new(&self.base, phone, turns);
        opts.credentials = credentials();
        opts.call_id_tx = Some(id_tx);
        opts.max_duration = Duration::from_secs(90);
        let sim = tokio::spawn(simulate_call(opts));
        let id = async move { id_rx.recv().await.expect("the call was accepted") };
        (id, sim)
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.json().await.unwrap()
    }

    async fn wait_in_progress(&self, id: &str) {
        self.wait_until("the call's stream started", || async {
            self.get(&format!("/api/v1/calls/{id}")).await["status"] == "in_progress"
        })
        .await;
    }

    /// Until the call's transcript has a line from the caller.
    async fn wait_caller_spoke(&self, id: &str) {
        self.wait_until("the caller has spoken", || async {
            self.get(&format!("/api/v1/calls/{id}")).await["transcript"]
                .as_array()
                .is_some_and(|t| t.iter().any(|l| l["speaker"] == "caller"))
        })
        .await;
    }

    async fn ready(&self) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn metrics(&self) -> String {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        response.text().await.unwrap()
    }

    /// `carrier`'s signed voice webhook for a new call to `phone`: the status and body.
    async fn voice(&self, carrier: Carrier, phone: &str) -> (StatusCode, String) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let call = InboundCall::new(carrier, phone, "+15550100099");
        let req = voice_request(carrier, &self.base, &credentials(), &call, now);
        let method = reqwest::Method::from_bytes(req.method.as_bytes()).unwrap();
        let mut builder = self
            .http
            .request(method, format!("{}{}", self.base, req.path_and_query()));
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        let response = builder.body(req.body.clone()).send().await.unwrap();
        let status = response.status();
        (status, response.text().await.unwrap())
    }

    /// A signed Twilio media upgrade: the HTTP status it was refused with, `None` if upgraded.
    async fn twilio_upgrade(&self) -> Option<StatusCode> {
        let url = format!("ws://127.0.0.1:{}/twilio/media", self.port);
        let mut request = url.as_str().into_client_request().unwrap();
        let sig = signature(AUTH_TOKEN, &url, &[]);
        request
            .headers_mut()
            .insert("x-twilio-signature", sig.parse().unwrap());
        match tokio_tungstenite::connect_async(request).await {
            Ok(_) => None,
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Some(StatusCode::from_u16(response.status().as_u16()).unwrap())
            }
            Err(e) => panic!("upgrade failed otherwise: {e}"),
        }
    }

    /// SIGKILL: the process dies at once.
    async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }

    /// Send the server SIGTERM (`TERM`) or SIGINT (`INT`).
    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("the server is running");
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (up to 120 s) for the process to exit.
    async fn exit_status(&mut self) -> std::process::ExitStatus {
        match tokio::time::timeout(Duration::from_secs(120), self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("the server did not exit:\n{}", self.log()),
        }
    }

    /// Polls `done` every 50 ms for up to 60 s.
    async fn wait_until<F, Fut>(&self, what: &str, mut done: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done().await {
            assert!(
                Instant::now() < deadline,
                "timed out waiting: {what}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A sample's value in a Prometheus text exposition: the line `{series} {value}`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The question indexes of the call's answers, in the order they were stored.
fn answered_questions(events: &[CallEvent]) -> Vec<usize> {
    events
        .iter()
        .filter_map(|e| match e {
            CallEvent::Answer(a) => Some(a.question_index),
            _ => None,
        })
        .collect()
}

/// The last transcript line: speaker, text, interrupted.
fn last_line(events: &[CallEvent]) -> (Speaker, String, bool) {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            CallEvent::Transcript(l) => Some((l.speaker, l.text.clone(), l.interrupted)),
            _ => None,
        })
        .expect("a transcript")
}

fn fixtures(names: &[&str]) -> Vec<CallerTurn> {
    names
        .iter()
        .map(|n| CallerTurn::Audio {
            label: n.to_string(),
            pcm8k: read_wav_8k(
                &Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("audio-fixtures")
                    .join(n),
            )
            .unwrap(),
        })
        .collect()
}
