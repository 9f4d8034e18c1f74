//! Helpers shared by the integration tests: a fresh database per test (SQLite in a temporary
//! directory, or a new PostgreSQL database dropped afterwards) and a `ServeConfig` from flags.
//!
//! PostgreSQL comes from `TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! when it is unreachable the PostgreSQL tests fail, they do not skip.

#![allow(dead_code)] // each test binary uses a different subset

pub mod binary;
pub mod cough;
pub mod fakes;
pub mod harness;
pub mod outage;
pub mod trials;

use std::path::Path;

use clap::Parser;
use sqlx::Connection;

use receptionist::config::ServeConfig;

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A TCP port free on 127.0.0.1 right now, for a server started as a process.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `receptionist workspace create NAME` on the real binary against `db_url` and `data_dir`: the
/// new workspace's admin key.
pub fn create_workspace(name: &str, db_url: &str, data_dir: &Path) -> String {
    let created = std::process::Command::new(env!("CARGO_BIN_EXE_receptionist"))
        .args(["workspace", "create", name, "--database-url", db_url])
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let key = String::from_utf8(created.stdout)
        .unwrap()
        .trim()
        .to_string();
    assert!(!key.is_empty());
    key
}

/// Waits (up to 60 s) until the server at `base` answers `/healthz`; fails with its log if not.
pub async fn wait_healthy(http: &reqwest::Client, base: &str, log: &Path) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status() == reqwest::StatusCode::OK
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server never became healthy:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// As a test's name says it: `sqlite` or `postgres`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A database created for one test.
pub struct TestDatabase {
    pub url: String,
    /// PostgreSQL only: where to drop it from.
    pg: Option<PgDatabase>,
}

struct PgDatabase {
    admin_url: String,
    name: String,
}

impl TestDatabase {
    /// SQLite: `<dir>/db/receptionist.db`. PostgreSQL: a new, uniquely named database.
    pub async fn create(backend: Backend, dir: &Path) -> TestDatabase {
        match backend {
            Backend::Sqlite => TestDatabase {
                url: format!("sqlite://{}", dir.join("db/receptionist.db").display()),
                pg: None,
            },
            Backend::Postgres => {
                let admin_url = std::env::var("TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_string());
                let name = format!("rx_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "PostgreSQL at TEST_POSTGRES_URL / {DEFAULT_POSTGRES_URL} is required: {e}"
                        )
                    });
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.unwrap();
                let mut url = url::Url::parse(&admin_url).unwrap();
                url.set_path(&format!("/{name}"));
                TestDatabase {
                    url: url.to_string(),
                    pg: Some(PgDatabase { admin_url, name }),
                }
            }
        }
    }

    /// Drop a PostgreSQL database (closing whatever is still connected); SQLite files go with
    /// their temporary directory.
    pub async fn drop_database(self) {
        if let Some(pg) = self.pg {
            let mut conn = sqlx::PgConnection::connect(&pg.admin_url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                pg.name
            )))
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    serve: ServeConfig,
}

/// A server configuration from command-line flags (environment variables apply as in `serve`).
pub fn serve_config(args: &[&str]) -> ServeConfig {
    Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
        .unwrap()
        .serve
}
