//! Graceful drain, and readiness (`GET /readyz`).
//!
//! On SIGTERM or SIGINT the server stops taking calls and lets the calls in progress finish:
//!
//! 1. It closes to new calls ([`super::CallSlots::close`]): every carrier's voice webhook answers
//!    the busy markup it gives at the call limit (TwiML `<Say>` and `<Hangup/>`, NCCO `talk`,
//!    Exotel's 503, ...), new media WebSocket upgrades are refused with 503 (a call this node
//!    accepted just before, whose stream has yet to connect, still gets in), test calls from the
//!    browser are refused, and `/readyz` answers 503 so a load balancer sends new calls elsewhere.
//!    HTTP goes on being served: the API, the webhooks, `/healthz` and `/metrics`.
//! 2. Calls in progress go on for up to the drain period (`--drain-secs`, default 300 s).
//! 3. Then each remaining call is ended politely: the engine gets `Input::Drain` (the agent stops,
//!    says a short goodbye and hangs up, `server_shutdown`). A second signal skips straight to
//!    this step.
//! 4. Every call's driver flushes its recording and its events (and the after-call work) to the
//!    store before giving its slot back; once every slot is back (or [`END_GRACE`] has passed)
//!    the connection threads stop taking connections, finish the requests in progress (10 s at
//!    most), and the process exits 0. Outbox rows not yet delivered stay in the database for the
//!    next start.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::AppState;

/// After the drain period, how long the calls told to end get to say goodbye and be stored.
/// A goodbye takes a few seconds; persisting retries for up to about a minute when the database
/// is failing.
pub const END_GRACE: Duration = Duration::from_secs(75);

/// How long `/readyz` waits for the database.
const READY_DB_TIMEOUT: Duration = Duration::from_secs(2);

/// Completes on SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Drain the node (see the module docs): returns once every call has ended and been stored, or
/// the drain period and [`END_GRACE`] have passed.
pub async fn drain(state: &AppState, period: Duration) {
    state.calls.close();
    state.metrics.set_draining(true);
    tracing::info!(
        calls = state.calls.active(),
        drain_secs = period.as_secs(),
        "draining: no new calls; calls in progress may finish"
    );
    let finished = tokio::select! {
        finished = tokio::time::timeout(period, state.calls.wait_idle()) => finished.is_ok(),
        () = signal() => {
            tracing::info!("second signal: ending calls now");
            false
        }
    };
    if !finished {
        tracing::info!(
            calls = state.calls.active(),
            "ending the remaining calls with a goodbye"
        );
        state.calls.end_calls();
        if tokio::time::timeout(END_GRACE, state.calls.wait_idle())
            .await
            .is_err()
        {
            tracing::warn!(
                calls = state.calls.active(),
                "calls still in progress at exit"
            );
            return;
        }
    }
    tracing::info!("drained: every call has ended and been stored");
}

/// Why the server is or is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    /// Taking calls.
    Ready,
    /// Shutting down: no new calls; calls in progress are finishing.
    Draining,
    /// The database did not answer a trivial query within 2 s.
    DatabaseUnavailable,
}

/// `/readyz`'s answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub status: ReadyStatus,
}

/// Readiness: 200 while the server takes calls (its database answers and it is not draining);
/// 503 otherwise, saying why.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "meta",
    responses(
        (status = 200, description = "Ready to take calls", body = Readiness, example = json!({"status": "ready"})),
        (status = 503, description = "Not ready: draining, or the database does not answer", body = Readiness, example = json!({"status": "draining"})),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let status = if state.calls.is_closed() {
        ReadyStatus::Draining
    } else {
        match tokio::time::timeout(READY_DB_TIMEOUT, state.store.ping()).await {
            Ok(Ok(())) => ReadyStatus::Ready,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "not ready: the database does not answer");
                ReadyStatus::DatabaseUnavailable
            }
            Err(_) => {
                tracing::warn!("not ready: the database did not answer in time");
                ReadyStatus::DatabaseUnavailable
            }
        }
    };
    let code = match status {
        ReadyStatus::Ready => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, Json(Readiness { status }))
}
