//! The recordings disk made full or slow under calls, on the real binary (scripted backends) with
//! real Twilio-protocol calls from `receptionist loadgen --server`, on SQLite and PostgreSQL.
//! Each test runs two servers at the same time with the same calls: one whose recordings disk is
//! faulty, one on a healthy disk (the baseline, under the same machine load), and checks that
//!
//! - every call on both completes, with no protocol error, its end reason and transcript stored;
//! - the audio callers hear on the faulty server is as timely as on the healthy one: as much agent
//!   audio arrives (at least 85 %), and the gaps between agent frames (p99) and the silences
//!   heard inside agent speech stay within a margin of the baseline's (a call waiting on the disk
//!   would fall behind in its speech);
//! - every call on the faulty server is stored with `recording_incomplete` (and none on the
//!   healthy one), and the log says why, once per call, not once per chunk.
//!
//! Full: a 256 KiB tmpfs mounted on the data directory's `recordings/` (this needs root or
//! `sudo -n`, as CI has; without either the test fails saying so). A recording takes 32 KiB a second, so the four
//! calls fill it within seconds and every write after that fails with "no space".
//! Slow: the recorder sleeps 300 ms before each write (`--recorder-delay-ms`, a fault-test flag)
//! with a queue of 4 chunks (`--recorder-queue`): four calls make 16 chunks a second, the
//! recorder takes about 3, the rest find the queue full and are written as silence.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use common::{Backend, TestDatabase, create_workspace, free_port, wait_healthy};

const BIN: &str = env!("CARGO_BIN_EXE_receptionist");
const AUTH_TOKEN: &str = "faults-twilio-auth-token";
const CALLS: usize = 4;

macro_rules! both_databases {
    ($($name:ident),* $(,)?) => {
        $(mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await;
            }
        })*
    };
}

both_databases!(a_full_recordings_disk, a_slow_recordings_disk);

async fn a_full_recordings_disk(backend: Backend) {
    let (faulty, healthy) = run_both(backend, Fault::Full).await;
    let log = &faulty.log;
    let full_lines = log.matches("recordings disk full").count();
    assert!(
        (1..=2 * CALLS).contains(&full_lines),
        "one clear line per call, not one per chunk: {full_lines}\n{log}"
    );
    // the files hold what fitted, and their headers say so
    assert!(
        faulty.problems("recording_unfinished") == 0,
        "{}",
        faulty.report
    );
    assert_eq!(healthy.problems("recording_incomplete"), 0);
}

async fn a_slow_recordings_disk(backend: Backend) {
    let (faulty, healthy) = run_both(backend, Fault::Slow).await;
    let log = &faulty.log;
    assert!(
        log.contains("the recorder could not keep up"),
        "the log says why:\n{log}"
    );
    // what was missed is silence in place: the recordings are as long as the calls
    assert_eq!(
        faulty.problems("recording_length_mismatch"),
        0,
        "{}",
        faulty.report
    );
    assert_eq!(healthy.problems("recording_incomplete"), 0);
}

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    Full,
    Slow,
}

struct Run {
    /// loadgen's JSON report.
    report: Value,
    /// Every call as the API lists it.
    calls: Vec<Value>,
    log: String,
}

impl Run {
    fn problems(&self, kind: &str) -> u64 {
        self.report["records_problems"][kind].as_u64().unwrap_or(0)
    }
}

/// The same calls on a faulty and a healthy server at once; the common checks.
async fn run_both(backend: Backend, fault: Fault) -> (Run, Run) {
    let (faulty, healthy) =
        tokio::join!(one_server(backend, fault), one_server(backend, Fault::None));
    for (run, name) in [(&faulty, "faulty"), (&healthy, "healthy")] {
        let r = &run.report;
        assert_eq!(r["calls_completed"], CALLS, "{name}: {r}\n{}", run.log);
        assert_eq!(r["calls_failed"], 0, "{name}: {r}");
        assert_eq!(r["protocol_errors"], 0, "{name}: {r}");
        assert_eq!(r["records_checked"], CALLS, "{name}: {r}");
        for kind in [
            "not_found",
            "not_completed",
            "no_end_reason",
            "no_transcript",
        ] {
            assert_eq!(run.problems(kind), 0, "{name}: {kind}: {r}");
        }
        assert_eq!(run.calls.len(), CALLS, "{name}");
    }
    let flagged = |run: &Run| {
        run.calls
            .iter()
            .filter(|c| c["recording_incomplete"] == true)
            .count()
    };
    assert_eq!(flagged(&faulty), CALLS, "{:?}", faulty.calls);
    assert_eq!(flagged(&healthy), 0, "{:?}", healthy.calls);
    assert_eq!(
        healthy.report["records_incomplete"], 0,
        "{}",
        healthy.report
    );
    // the callers heard the faulty server's audio as timely as the healthy one's
    let ms = |r: &Value, k: &str| r[k].as_f64().unwrap_or(0.0);
    let (f, h) = (&faulty.report, &healthy.report);
    let figures = |r: &Value| {
        [
            "agent_frames_received",
            "jitter_gap_ms_p99",
            "playout_gaps",
            "playout_gap_ms_max",
            "first_greeting_ms_p99",
        ]
        .map(|k| format!("{k} {}", r[k]))
        .join(", ")
    };
    eprintln!("faulty:  {}\nhealthy: {}", figures(f), figures(h));
    // a call held up by its recording would fall behind in its speech (pauses over 500 ms are
    // not counted as gaps, so the audio delivered is what shows it)
    assert!(
        ms(f, "agent_frames_received") >= 0.85 * ms(h, "agent_frames_received"),
        "agent audio fell behind: faulty {f}\nhealthy {h}"
    );
    assert!(
        ms(f, "jitter_gap_ms_p99") <= 2.0 * ms(h, "jitter_gap_ms_p99") + 30.0,
        "frame gaps changed: faulty {f}\nhealthy {h}"
    );
    assert!(
        ms(f, "playout_gap_ms_max") <= ms(h, "playout_gap_ms_max") + 100.0,
        "silences inside agent speech: faulty {f}\nhealthy {h}"
    );
    (faulty, healthy)
}

/// `mount` and `umount` as root: directly, or through `sudo -n` (as `.ci/setup` allows).
fn as_root(program: &str) -> std::process::Command {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if root {
        std::process::Command::new(program)
    } else {
        let mut sudo = std::process::Command::new("sudo");
        sudo.args(["-n", program]);
        sudo
    }
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let out = as_root("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "mounting a small tmpfs as the recordings disk needs root (or sudo -n): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = as_root("umount").arg("-l").arg(&self.0).status();
    }
}

/// A server (with `fault`), four calls from loadgen, the stored calls.
async fn one_server(backend: Backend, fault: Fault) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let db = TestDatabase::create(backend, &data_dir).await;
    let _mount = (fault == Fault::Full).then(|| Mount::tmpfs(&data_dir.join("recordings"), "256k"));
    let key = create_workspace("Acme Staffing", &db.url, &data_dir);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log_path = tmp.path().join("serve.log");
    let mut serve = tokio::process::Command::new(BIN);
    serve
        .arg("serve")
        .args(["--database-url", &db.url])
        .arg("--data-dir")
        .arg(&data_dir)
        .args([
            "--backends",
            "scripted",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--twilio-auth-token", AUTH_TOKEN]);
    if fault == Fault::Slow {
        serve.args(["--recorder-delay-ms", "300", "--recorder-queue", "4"]);
    }
    let mut child = serve
        .env_remove("RECEPTIONIST_PUBLIC_URL")
        .env_remove("RECEPTIONIST_BACKENDS")
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    wait_healthy(&http, &base, &log_path).await;
    let phone = format!("+1555{:07}", rand::random::<u32>() % 10_000_000);
    let created = http
        .post(format!("{base}/api/v1/receptionists"))
        .bearer_auth(&key)
        .json(&json!({
            "phone_number": phone,
            "agent_name": "Chloe",
            "intro_message": "Hi, I am Chloe from ABC Staffing. Thanks for calling about our warehouse jobs.",
            "collect_location": true,
            "questions": [
                {"text": "Are you at least 18 years old?", "kind": "yes_no", "expected": "yes"}
            ]
        }))
        .send()
        .await
        .unwrap();
    assert!(
        created.status().is_success(),
        "{}",
        created.text().await.unwrap()
    );

    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/audio-fixtures");
    let pid = child.id().unwrap().to_string();
    let out = tokio::process::Command::new(BIN)
        .args([
            "loadgen",
            "--server",
            &base,
            "--server-pid",
            &pid,
            "--to",
            &phone,
        ])
        .args([
            "--twilio-auth-token",
            AUTH_TOKEN,
            "--api-key",
            &key,
            "--verify",
        ])
        .args(["--calls", &CALLS.to_string(), "--ramp-secs", "0.5"])
        .args([
            "--duration-secs",
            "10",
            "--max-secs",
            "90",
            "--threads",
            "1",
        ])
        .args(["--fixtures", fixtures])
        .env_remove("RECEPTIONIST_API_KEY")
        .output()
        .await
        .expect("loadgen runs");
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loadgen failed:\n{stderr}\n{log}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    // the flag lands once the recorder has closed the file, after the call: wait for it (bounded)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let calls = loop {
        let list: Value = http
            .get(format!("{base}/api/v1/calls?limit=50"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let calls = list["data"].as_array().cloned().unwrap_or_default();
        let settled = calls.iter().all(|c| {
            c["status"] == "completed"
                && (fault == Fault::None || c["recording_incomplete"] == true)
        });
        if settled || tokio::time::Instant::now() >= deadline {
            break calls;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = child.kill().await;
    drop(_mount);
    db.drop_database().await;
    Run {
        report,
        calls,
        log: strip_ansi(&log),
    }
}

fn strip_ansi(log: &str) -> String {
    common::binary::strip_ansi(log)
}
