//! The dashboard in a real browser: headless Chromium (Debian's `/usr/bin/chromium`) driven by
//! Playwright for Python (`tests/browser/`), against the real server binary.
//!
//! This test starts `receptionist serve` (offline backends, so speech is really recognised; SQLite
//! in a temporary directory), creates keys, an interviewer and two receptionists through the API,
//! places a call through the Twilio path with the simulator (a signed webhook, the media
//! WebSocket, the caller's fixtures), waits until its candidate is evaluated, then runs the Python
//! tests with the server's URL, the keys and the ids in environment variables, and fails if they
//! fail. Screenshots of each page go to `<target>/browser-screenshots/`.
//!
//! The Python comes from the venv `.ci/setup` makes (`target/browser-venv`, or
//! `RECEPTIONIST_BROWSER_PYTHON`); without it this test fails (it does not skip).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::time::Instant;

use common::{create_workspace, free_port, wait_healthy};
use receptionist::tools::simulate::{CallerTurn, SimOptions, read_wav_8k, simulate_call};

const AUTH_TOKEN: &str = "browser-twilio-auth-token";

/// What the browser tests are given.
struct World {
    base: String,
    admin_key: String,
    viewer_key: String,
    interviewer_id: String,
    other_interviewer_id: String,
    web_receptionist_id: String,
    candidate_id: String,
    call_id: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let started = Instant::now();
    let python = browser_python();
    let target = target_dir();
    let screenshots = target.join("browser-screenshots");
    let _ = std::fs::remove_dir_all(&screenshots);
    std::fs::create_dir_all(&screenshots).unwrap();
    let fake_mic = fake_microphone_wav(&target);

    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let db_url = format!("sqlite://{}", data_dir.join("rx.db").display());
    let data_arg = data_dir.display().to_string();
    let bin = env!("CARGO_BIN_EXE_receptionist");

    let admin_key = create_workspace("Acme <b>Staffing</b>", &db_url, &data_dir);

    let port = free_port();
    let log_path = tmp.path().join("serve.log");
    let mut server = tokio::process::Command::new(bin)
        .args(["serve", "--database-url", db_url.as_str()])
        .args(["--data-dir", data_arg.as_str(), "--backends", "offline"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .env_remove("RECEPTIONIST_PUBLIC_URL")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        base: base.clone(),
        key: admin_key.clone(),
    };
    wait_healthy(&api.http, &base, &log_path).await;

    let world = setup(&api, &base, &admin_key).await;
    eprintln!(
        "browser: server and a Twilio call ready after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pytest = tokio::process::Command::new(&python);
    pytest
        .current_dir(repo)
        .args([
            "-m",
            "pytest",
            "tests/browser",
            "-v",
            "-p",
            "no:cacheprovider",
        ])
        .env("RX_BASE_URL", &world.base)
        .env("RX_ADMIN_KEY", &world.admin_key)
        .env("RX_VIEWER_KEY", &world.viewer_key)
        .env("RX_INTERVIEWER_ID", &world.interviewer_id)
        .env("RX_OTHER_INTERVIEWER_ID", &world.other_interviewer_id)
        .env("RX_WEB_RECEPTIONIST_ID", &world.web_receptionist_id)
        .env("RX_CANDIDATE_ID", &world.candidate_id)
        .env("RX_CALL_ID", &world.call_id)
        .env("RX_FAKE_MIC_WAV", &fake_mic)
        .env("RX_SCREENSHOTS", &screenshots)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true);
    let status = tokio::time::timeout(Duration::from_secs(300), pytest.status())
        .await
        .expect("the browser tests took more than 5 minutes")
        .expect("cannot run the browser tests' Python");
    let _ = server.kill().await;
    eprintln!(
        "browser: done after {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        screenshots.display()
    );
    assert!(
        status.success(),
        "the browser tests failed ({status}); server log:\n{}",
        tail(&std::fs::read_to_string(&log_path).unwrap_or_default(), 60)
    );
}

/// Keys, interviewers, two receptionists, and one evaluated candidate from a Twilio call.
async fn setup(api: &Api, base: &str, admin_key: &str) -> World {
    let viewer = api
        .post(
            "/api/v1/keys",
            json!({"role": "viewer", "name": "Read-only laptop"}),
        )
        .await;
    let interviewer = api
        .post(
            "/api/v1/interviewers",
            json!({"name": "Warehouse interview", "interview_link": "https://interview.example.com/w"}),
        )
        .await;
    let other = api
        .post(
            "/api/v1/interviewers",
            json!({"name": "Driver interview", "interview_link": "https://interview.example.com/d"}),
        )
        .await;
    // The intro is spoken and so lands in the transcript: it carries markup and a script that the
    // page must show as text.
    let phone = unique_phone();
    api.post(
            "/api/v1/receptionists",
            json!({
                "phone_number": phone,
                "agent_name": "Rex <i>the agent</i>",
                "intro_message": "Hi, this is <b>Rex</b> from Acme. <script>window.__xss = 1</script>",
                "disclose_ai": false,
                "disclose_recording": false,
                "disclose_e_verify": false,
                "collect_location": false,
                "manual_approval": true,
                "sms_confirmation": false,
                "interviewer_ids": [interviewer["id"]],
                "default_interviewer_id": interviewer["id"],
                "questions": [
                    {"text": "Are you at least eighteen years old?", "kind": "yes_no", "expected": "yes", "dealbreaker": true}
                ]
            }),
        )
        .await;
    let web = api
        .post(
            "/api/v1/receptionists",
            json!({
                "phone_number": unique_phone(),
                "agent_name": "Chloe",
                "intro_message": "Hi, I am Chloe from Acme.",
                // played in full only if the page echoes the server's marks as the audio plays
                "disclose_ai": true,
                "disclose_recording": false,
                "disclose_e_verify": false,
                "collect_location": false,
                "sms_confirmation": false
            }),
        )
        .await;

    // a call through the Twilio path: signed webhook, media WebSocket, the caller's recordings
    let fixture = |name: &str| CallerTurn::Audio {
        label: name.to_string(),
        pcm8k: read_wav_8k(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("audio-fixtures")
                .join(name),
        )
        .unwrap(),
    };
    let mut opts = SimOptions::new(
        base,
        &phone,
        vec![
            fixture("name.wav"),
            fixture("yes.wav"),
            fixture("no_questions.wav"),
        ],
    );
    opts.credentials = receptionist::server::carriers::client::Credentials {
        twilio_auth_token: AUTH_TOKEN.into(),
        ..receptionist::server::carriers::client::Credentials::test()
    };
    opts.from = unique_phone();
    opts.max_duration = Duration::from_secs(120);
    let out = simulate_call(opts).await.expect("the Twilio call");
    let call_id = out.call_id.expect("the call was connected");

    // the call ends, its caller becomes a candidate, is evaluated and (manual approval) waits
    let deadline = Instant::now() + Duration::from_secs(90);
    let (call, candidate) = loop {
        let call = api.get(&format!("/api/v1/calls/{call_id}")).await;
        if let Some(candidate_id) = call["candidate_id"].as_str() {
            let candidate = api.get(&format!("/api/v1/candidates/{candidate_id}")).await;
            if candidate["review"] == "needs_review" && call["ended_at"].is_string() {
                break (call, candidate);
            }
        }
        assert!(
            Instant::now() < deadline,
            "the call's candidate was never evaluated: {call}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let transcript = call["transcript"].to_string();
    assert!(
        transcript.contains("<script>window.__xss = 1</script>"),
        "{transcript}"
    );
    assert!(
        candidate["name"]
            .as_str()
            .is_some_and(|n| n.to_lowercase().contains("smith")),
        "the recogniser missed the name: {transcript}"
    );
    assert_eq!(call["has_recording"], true);
    let candidate_id = candidate["id"].as_str().unwrap().to_string();
    // a correction with markup in it, shown as text on the candidate's page
    api.patch(
        &format!("/api/v1/candidates/{candidate_id}"),
        json!({"location": "<img src=x onerror=\"window.__xss = 2\">Springfield"}),
    )
    .await;

    World {
        base: base.to_string(),
        admin_key: admin_key.to_string(),
        viewer_key: viewer["key"].as_str().unwrap().to_string(),
        interviewer_id: interviewer["id"].as_str().unwrap().to_string(),
        other_interviewer_id: other["id"].as_str().unwrap().to_string(),
        web_receptionist_id: web["id"].as_str().unwrap().to_string(),
        candidate_id,
        call_id,
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        if status == StatusCode::NO_CONTENT {
            return Value::Null;
        }
        serde_json::from_str(&text).unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> Value {
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }
}

/// The venv's Python (made by `.ci/setup`), with Playwright and pytest.
fn browser_python() -> PathBuf {
    let python = std::env::var_os("RECEPTIONIST_BROWSER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-venv/bin/python")
        });
    assert!(
        python.exists(),
        "{} is missing: run `bash .ci/setup` (it installs Chromium and the browser tests' venv)",
        python.display()
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: run `bash .ci/setup`"
    );
    python
}

/// Where cargo builds (the test binary lives in `<target>/<profile>/deps/`).
fn target_dir() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_receptionist"));
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Chromium's fake microphone plays this file in a loop: "my name is john smith", then silence,
/// as 48 kHz 16-bit PCM (what Chromium's file capture expects).
fn fake_microphone_wav(target: &Path) -> PathBuf {
    let out = target.join("browser-fixtures/name-then-silence.wav");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("audio-fixtures/name.wav");
    let status = std::process::Command::new("sox")
        .arg(&input)
        .args(["-r", "48000", "-b", "16", "-c", "1", "-e", "signed-integer"])
        .arg(&out)
        .args(["pad", "0.5", "5"])
        .status()
        .expect("sox (installed by .ci/setup) converts the fake microphone's WAV");
    assert!(status.success());
    out
}

fn unique_phone() -> String {
    format!("+1555{:07}", rand::random::<u32>() % 10_000_000)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
