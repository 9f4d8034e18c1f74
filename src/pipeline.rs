//! Post-call jobs (evaluation and later job kinds) run by the outbox worker. A placeholder: the
//! lead fills it in (this file is replaced on merge).

use crate::store::{OutboxKind, Store};

/// Run one queued job. `Err` means "try again later" under the outbox's retry policy.
pub async fn run_job(
    store: &Store,
    kind: OutboxKind,
    payload: &serde_json::Value,
) -> Result<(), String> {
    let _ = (store, kind, payload);
    Ok(())
}
