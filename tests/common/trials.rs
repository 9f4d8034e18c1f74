//! A harness for the test binaries whose tests mostly wait (`harness = false` in Cargo.toml): e2e,
//! drain and providers place real-time calls against a server, so a test spends most of its
//! time waiting for the caller's audio to play out (e2e used 14 % of one core over its 280 s with
//! libtest's default of one test per core). These binaries run [`THREADS`] tests at once instead.
//! Everything else is libtest's: the same arguments (a name filter, `--exact`, `--list`,
//! `--test-threads`, `--ignored`), a panic fails its test, and the binary fails if any test did.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

use libtest_mimic::{Arguments, Trial};

/// Tests at once, unless `--test-threads` or `RUST_TEST_THREADS` says otherwise.
pub const THREADS: usize = 8;

/// A test's body: one `async` function, run on its own runtime as `#[tokio::test(flavor =
/// "multi_thread", worker_threads = 2)]` would.
pub type Body = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A test named `name` running `body`.
pub fn test(name: impl Into<String>, body: impl FnOnce() -> Body + Send + 'static) -> Trial {
    Trial::test(name, move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(body());
        Ok(())
    })
}

/// `name::sqlite` and `name::postgres`: `body` on each database.
pub fn on_both_databases(name: &str, body: fn(super::Backend) -> Body) -> [Trial; 2] {
    [super::Backend::Sqlite, super::Backend::Postgres]
        .map(|backend| test(format!("{name}::{}", backend.name()), move || body(backend)))
}

/// Runs `tests` (in this order: put the longest first) as the command line asks.
pub fn main(tests: Vec<Trial>) -> ExitCode {
    let mut args = Arguments::from_args();
    let from_env = std::env::var("RUST_TEST_THREADS")
        .ok()
        .and_then(|n| n.parse().ok());
    args.test_threads = args.test_threads.or(from_env).or(Some(THREADS));
    libtest_mimic::run(&args, tests).exit_code()
}
