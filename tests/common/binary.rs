//! The real `receptionist serve` as a process on a free port, with its own SQLite database, data
//! directory and workspace: for tests that must run the binary as a user does (flags, start-up
//! checks, the log).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::time::Instant;

use receptionist::server::carriers::client::Credentials;
use receptionist::tools::simulate::{CallerTurn, SimOptions};

use super::{create_workspace, free_port, wait_healthy};

pub const BIN: &str = env!("CARGO_BIN_EXE_receptionist");
pub const AUTH_TOKEN: &str = "binary-twilio-auth-token";

pub fn unique_phone() -> String {
    format!("+1555{:07}", rand::random::<u32>() % 10_000_000)
}

/// A `serve` command with no backend or provider configuration inherited from this environment.
pub fn serve_command(data_dir: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .env("RUST_LOG", "info,receptionist::backends::deepgram=debug");
    for var in [
        "RECEPTIONIST_BACKENDS",
        "RECEPTIONIST_STT",
        "RECEPTIONIST_TTS",
        "RECEPTIONIST_LLM",
        "RECEPTIONIST_END_OF_TURN",
        "RECEPTIONIST_MODELS_DIR",
        "DEEPGRAM_API_KEY",
        "DEEPGRAM_URL",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ELEVENLABS_API_KEY",
        "ELEVENLABS_URL",
        "RECEPTIONIST_PUBLIC_URL",
        "DATABASE_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// The log without its terminal colours.
pub fn strip_ansi(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters final-letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A running `receptionist serve`.
pub struct Served {
    pub base: String,
    /// The workspace's admin key.
    pub key: String,
    pub http: reqwest::Client,
    log_path: PathBuf,
    server: tokio::process::Child,
    _tmp: tempfile::TempDir,
}

impl Served {
    /// Start `serve` with `flags` and `env` and wait until it is healthy.
    pub async fn start(flags: &[&str], env: &[(&str, &str)]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let db_url = format!("sqlite://{}?mode=rwc", data_dir.join("rx.db").display());
        std::fs::create_dir_all(&data_dir).unwrap();
        let key = create_workspace("Acme Staffing", &db_url, &data_dir);
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let log_path = tmp.path().join("serve.log");
        let mut serve = serve_command(&data_dir);
        serve
            .args([
                "--database-url",
                &db_url,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(flags)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .kill_on_drop(true);
        for (k, v) in env {
            serve.env(k, v);
        }
        let server = serve.spawn().unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        wait_healthy(&http, &base, &log_path).await;
        Self {
            base,
            key,
            http,
            log_path,
            server,
            _tmp: tmp,
        }
    }

    /// Create a receptionist from `body` (its `phone_number` is set here); its number.
    pub async fn receptionist(&self, mut body: Value) -> String {
        let phone = unique_phone();
        body["phone_number"] = Value::String(phone.clone());
        let response = self
            .http
            .post(format!("{}/api/v1/receptionists", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        phone
    }

    /// A Twilio call to `to` whose caller plays `turns`.
    pub fn sim(&self, to: &str, turns: Vec<CallerTurn>) -> SimOptions {
        let mut opts = SimOptions::new(&self.base, to, turns);
        opts.credentials = Credentials {
            twilio_auth_token: AUTH_TOKEN.into(),
            ..Credentials::test()
        };
        opts.from = unique_phone();
        opts.max_duration = Duration::from_secs(120);
        opts
    }

    /// The call as stored, once it has ended (waits up to 60 s).
    pub async fn ended_call(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let call: Value = self
                .http
                .get(format!("{}/api/v1/calls/{id}", self.base))
                .bearer_auth(&self.key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if call["status"] != "in_progress" && call["end_reason"].is_string() {
                return call;
            }
            assert!(Instant::now() < deadline, "the call never ended: {call}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The log so far, without colours.
    pub fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log_path).unwrap_or_default())
    }

    pub async fn stop(mut self) -> String {
        self.server.kill().await.unwrap();
        self.log()
    }
}
