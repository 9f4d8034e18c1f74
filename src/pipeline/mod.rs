//! After the call: what a finished call, a caller's reply and a confirmation set in motion. The
//! decisions are pure ([`evaluate`], [`sms`], [`texts`]); the transitions are store transactions
//! (`store/pipeline.rs`) that queue their effects in the outbox, which one worker delivers.

pub mod evaluate;
pub mod sms;
pub mod texts;

use crate::model::{CallEvent, EndReason};
use crate::store::pipeline::{
    AfterCall, AfterCallOutcome, NewEvaluation, RecordedEvaluation, SYSTEM,
};
use crate::store::{Store, StoreError, StoreResult, now_ms};

/// Queue a finished call's after-call work: the `call.ended` event, then the confirmation text
/// (when `can_text`, the server has a way to send texts) or an immediate confirmation.
pub async fn after_call(
    store: &Store,
    call_id: &str,
    can_text: bool,
) -> StoreResult<AfterCallOutcome> {
    let call = store
        .call_by_id(call_id)
        .await?
        .ok_or(StoreError::NotFound)?;
    let events = store.load_events(call_id).await?;
    let mut name = None;
    let mut location = None;
    let mut answers = std::collections::BTreeMap::new();
    for event in &events {
        match event {
            CallEvent::Name { name: n } => name = Some(n.clone()),
            CallEvent::Location { location: l } => location = Some(l.clone()),
            CallEvent::Answer(a) => {
                answers.insert(a.question_index, a.clone());
            }
            _ => {}
        }
    }
    let answers: Vec<_> = answers.into_values().collect();
    let reason = call.end_reason.unwrap_or(EndReason::ServerInterrupted);
    let step = crate::store::ended_step(&call.settings, &events, reason);
    let confirmation_text = match (&name, can_text) {
        (Some(n), true) => Some(texts::confirmation(
            &call.settings.agent_name,
            n,
            location.as_deref(),
            &answers,
        )),
        _ => None,
    };
    store
        .after_call(&AfterCall {
            call_id: call_id.to_string(),
            ended_step: step,
            has_name: name.is_some(),
            confirmation_text,
            now_ms: now_ms(),
        })
        .await
}

/// Evaluate a candidate (the answers of `call_id`, or of their latest call), store it and route
/// the candidate; an approval by routing ingests into the receptionist's default interviewer.
/// `evaluation_id` makes a retried job store one evaluation.
pub async fn evaluate_candidate(
    store: &Store,
    workspace_id: Option<&str>,
    candidate_id: &str,
    call_id: Option<&str>,
    evaluation_id: &str,
    actor: &str,
) -> StoreResult<RecordedEvaluation> {
    let ctx = store
        .begin_evaluation(workspace_id, candidate_id, call_id)
        .await?;
    let outcome = evaluate::evaluate(
        &ctx.questions,
        &ctx.answers,
        ctx.name.as_deref(),
        ctx.location.as_deref(),
    );
    let recorded = store
        .record_evaluation(&NewEvaluation {
            id: evaluation_id.to_string(),
            workspace_id: ctx.workspace_id.clone(),
            candidate_id: candidate_id.to_string(),
            call_id: ctx.call_id.clone(),
            outcome,
            evaluator: evaluate::DETERMINISTIC.to_string(),
            actor: actor.to_string(),
            now_ms: now_ms(),
        })
        .await?;
    if let Some(interviewer) = &recorded.ingest_into {
        store
            .ingest_candidate(&ctx.workspace_id, candidate_id, interviewer, SYSTEM)
            .await?;
    }
    Ok(recorded)
}

/// Why a job did not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// Worth trying again later (the outbox's retry policy).
    Retry(String),
    /// Will never work (an unreadable payload): the job fails at once.
    Permanent(String),
}

/// Run a queued job (the outbox worker's entry point for non-delivery kinds).
pub async fn run_job(
    store: &Store,
    kind: crate::store::outbox::OutboxKind,
    payload: &str,
) -> Result<(), JobError> {
    use crate::store::outbox::OutboxKind;
    match kind {
        OutboxKind::Evaluate => {
            #[derive(serde::Deserialize)]
            struct Job {
                candidate_id: String,
                call_id: Option<String>,
                evaluation_id: String,
            }
            let job: Job = serde_json::from_str(payload)
                .map_err(|e| JobError::Permanent(format!("bad evaluate job: {e}")))?;
            match evaluate_candidate(
                store,
                None,
                &job.candidate_id,
                job.call_id.as_deref(),
                &job.evaluation_id,
                SYSTEM,
            )
            .await
            {
                Ok(_) => Ok(()),
                // the candidate is gone (workspace deleted): nothing left to do
                Err(StoreError::NotFound) => Ok(()),
                Err(e) => Err(JobError::Retry(e.to_string())),
            }
        }
        other => Err(JobError::Permanent(format!("{other:?} is not a job"))),
    }
}
