//! After the call, against real databases (every test on SQLite and PostgreSQL): confirmation
//! texts, signed SMS replies (YES, STOP, corrections), evaluation and routing, review, ingest,
//! interviewers, API keys, and the isolation and viewer matrices over every route.
//!
//! The outbox is inspected, not delivered, here (tests/delivery.rs and tests/e2e.rs deliver it);
//! evaluation jobs are run through `pipeline::run_job`, the worker's entry point.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};

use receptionist::model::{AnswerRecord, AnswerValue, CallEvent, EndReason, QuestionKind};
use receptionist::pipeline;
use receptionist::store::outbox::OutboxKind;
use receptionist::store::pipeline::AfterCallOutcome;

#[macro_use]
mod common;

use common::harness::*;

both_databases!(
    confirmed_by_yes_then_evaluated_approved_and_ingested,
    manual_approval_waits_for_review_and_recruiters_override,
    failed_dealbreaker_is_rejected,
    confirmation_off_or_impossible_confirms_at_once,
    stop_opts_out_and_is_honoured,
    corrections_are_kept_and_acknowledged_once,
    one_confirmation_text_per_hour,
    forged_unknown_and_repeated_texts,
    ingest_rules,
    notes_reviews_and_details_keep_their_actor,
    keys_api,
    interviewers_api,
    receptionist_names_its_interviewers,
    every_route_is_isolated_and_read_only_for_viewers,
    after_call_work_resumes_at_startup,
);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const CALLER: &str = "+15557654321";

/// A receptionist with two screening questions (a yes/no dealbreaker and a number), an
/// interviewer it ingests into by default, and the given routing settings.
async fn screening_receptionist(h: &Harness, key: &str, extra: Value) -> (Value, Value) {
    let (status, interviewer) = h
        .post(
            "/api/v1/interviewers",
            key,
            json!({
                "name": "Warehouse interview",
                "invitation_message": "Hi {candidate_name}, book your {interviewer_name} here:",
                "interview_link": "https://interview.example/w/1",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{interviewer}");
    let mut body = json!({
        "phone_number": unique_phone(),
        "agent_name": "Chloe",
        "intro_message": "Hi, I'm Chloe from ABC Staffing.",
        "questions": [
            {"text": "Are you at least 18 years old?", "kind": "yes_no", "expected": "yes", "dealbreaker": true},
            {"text": "How many years of warehouse experience do you have?", "kind": "number", "expected": ">= 1", "weight": 2},
        ],
        "score_threshold": 60,
        "interviewer_ids": [interviewer["id"]],
        "default_interviewer_id": interviewer["id"],
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, r) = h.post("/api/v1/receptionists", key, body).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    (r, interviewer)
}

fn answer(i: usize, kind: QuestionKind, raw: &str, value: AnswerValue, meets: bool) -> CallEvent {
    CallEvent::Answer(AnswerRecord {
        question_index: i,
        question: match i {
            0 => "Are you at least 18 years old?".into(),
            _ => "How many years of warehouse experience do you have?".into(),
        },
        kind,
        raw: raw.into(),
        value,
        attempts: 1,
        via_dtmf: false,
        meets_expected: Some(meets),
        dealbreaker_failed: i == 0 && !meets,
    })
}

/// Name, location and both answers (`adult` decides the dealbreaker).
fn good_call(adult: bool) -> Vec<CallEvent> {
    vec![
        CallEvent::Name {
            name: "John Smith".into(),
        },
        CallEvent::Location {
            location: "Chicago".into(),
        },
        answer(
            0,
            QuestionKind::YesNo,
            if adult { "yes" } else { "no" },
            if adult {
                AnswerValue::Yes
            } else {
                AnswerValue::No
            },
            adult,
        ),
        answer(
            1,
            QuestionKind::Number,
            "three years",
            AnswerValue::Number(3.0),
            true,
        ),
    ]
}

/// A call from `from` to `r` that produced `events` and ended with `reason`; returns
/// `(call id, candidate id)`. The after-call work is not run.
async fn finished_call(
    h: &Harness,
    r: &Value,
    from: &str,
    events: &[CallEvent],
    reason: EndReason,
) -> (String, String) {
    let call = accept(h, r, from, "test-node").await;
    let started = h
        .store
        .start_call(
            &call.id,
            "MZ1",
            receptionist::store::now_ms(),
            "recordings/none.wav",
        )
        .await
        .unwrap();
    h.store.append_events(&call.id, 0, events).await.unwrap();
    h.store
        .finish_call(&call.id, receptionist::store::now_ms(), 61_000, reason)
        .await
        .unwrap();
    (call.id, started.candidate_id)
}

async fn after(h: &Harness, call_id: &str) -> AfterCallOutcome {
    pipeline::after_call(&h.store, call_id, true).await.unwrap()
}

/// Run the candidate's queued evaluation jobs as the worker would; returns how many ran.
async fn run_evaluations(h: &Harness, candidate_id: &str) -> usize {
    let jobs: Vec<_> = h
        .store
        .outbox_for_candidate(candidate_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.kind == "evaluate" && o.status == "pending")
        .collect();
    for job in &jobs {
        pipeline::run_job(&h.store, OutboxKind::Evaluate, &job.payload)
            .await
            .unwrap();
    }
    jobs.len()
}

/// Post a signed inbound text as Twilio does.
async fn text(h: &Harness, from: &str, to: &str, body: &str, sid: &str) -> (StatusCode, String) {
    let params: Vec<(String, String)> = [
        ("MessageSid", sid),
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("From", from),
        ("To", to),
        ("Body", body),
        ("NumMedia", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let url = format!("{PUBLIC_URL}/twilio/sms");
    let signature = receptionist::server::twilio::signature(TWILIO_TOKEN, &url, &params);
    let form: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    let req = Request::builder()
        .method(Method::POST)
        .uri("/twilio/sms")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", signature)
        .body(Body::from(form))
        .unwrap();
    let (status, bytes) = h.raw(req).await;
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn sid() -> String {
    format!("SM{}", uuid::Uuid::new_v4().simple())
}

async fn candidate(h: &Harness, key: &str, id: &str) -> Value {
    let (status, body) = h.get(&format!("/api/v1/candidates/{id}"), key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn messages<'a>(c: &'a Value, purpose: &str) -> Vec<&'a Value> {
    c["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["purpose"] == purpose)
        .collect()
}

fn history_kinds(c: &Value) -> Vec<String> {
    c["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["kind"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The whole flow
// ---------------------------------------------------------------------------------------------

async fn confirmed_by_yes_then_evaluated_approved_and_ingested(h: Harness) {
    let (_, key) = h.workspace().await;
    let (r, interviewer) = screening_receptionist(&h, &key, json!({})).await;
    let to = r["phone_number"].as_str().unwrap();
    let (call_id, cand) =
        finished_call(&h, &r, CALLER, &good_call(true), EndReason::Completed).await;
    assert_eq!(after(&h, &call_id).await, AfterCallOutcome::TextQueued);
    assert_eq!(
        after(&h, &call_id).await,
        AfterCallOutcome::AlreadyDone,
        "once per call"
    );

    let c = candidate(&h, &key, &cand).await;
    assert_eq!(c["status"], "awaiting_confirmation");
    assert!(c["review"].is_null());
    let confirmation = messages(&c, "confirmation");
    assert_eq!(confirmation.len(), 1);
    let body = confirmation[0]["body"].as_str().unwrap();
    assert_eq!(confirmation[0]["from_number"], to);
    assert_eq!(confirmation[0]["to_number"], CALLER);
    assert_eq!(confirmation[0]["status"], "pending");
    for expected in [
        "Hi John",
        "Name: John Smith",
        "Location: Chicago",
        "18 years old? yes",
        "experience do you have? 3",
        "Reply YES",
    ] {
        assert!(body.contains(expected), "{expected:?} in {body:?}");
    }
    assert_eq!(
        c["calls"][0]["ended_step"],
        Value::Null,
        "not exposed as a call field"
    );

    // nothing is evaluated before the caller confirms
    assert_eq!(run_evaluations(&h, &cand).await, 0);

    let (status, twiml) = text(&h, CALLER, to, " Yes! ", &sid()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(twiml.contains("<Response></Response>"), "{twiml}");
    let c = candidate(&h, &key, &cand).await;
    assert_eq!(c["status"], "confirmed");
    assert!(c["confirmed_at"].is_string());

    assert_eq!(run_evaluations(&h, &cand).await, 1);
    // a retried job stores nothing twice
    assert_eq!(run_evaluations(&h, &cand).await, 1);
    let c = candidate(&h, &key, &cand).await;
    assert_eq!(c["status"], "evaluated");
    assert_eq!(c["evaluation_count"], 1);
    assert_eq!(c["latest_score"], 100.0);
    assert_eq!(c["review"], "approved");
    assert_eq!(c["review_by"], "system");
    assert_eq!(c["ingested"]["interviewer_id"], interviewer["id"]);
    assert_eq!(c["ingested"]["interviewer_name"], "Warehouse interview");
    let evaluation = &c["evaluations"][0];
    assert_eq!(evaluation["score"], 100.0);
    assert_eq!(evaluation["dealbreaker_failed"], false);
    assert_eq!(evaluation["evaluator"], "deterministic");
    assert_eq!(evaluation["questions"].as_array().unwrap().len(), 2);
    assert_eq!(evaluation["questions"][0]["result"], "pass");
    assert!(
        evaluation["summary"]
            .as_str()
            .unwrap()
            .contains("John Smith, from Chicago.")
    );
    let invitation = messages(&c, "invitation");
    assert_eq!(invitation.len(), 1);
    assert_eq!(
        invitation[0]["body"],
        "Hi John Smith, book your Warehouse interview here:\nhttps://interview.example/w/1"
    );
    let kinds = history_kinds(&c);
    for k in [
        "call_ended",
        "confirmation_sent",
        "confirmed",
        "evaluated",
        "review",
        "ingested",
    ] {
        assert!(kinds.contains(&k.to_string()), "{k} in {kinds:?}");
    }
    // the pipeline tabs
    let (_, list) = h.get("/api/v1/candidates?tab=approved", &key).await;
    assert_eq!(list["data"][0]["id"], cand.as_str());
    assert_eq!(list["data"][0]["latest_score"], 100.0);
    assert_eq!(list["counts"]["approved"], 1);
    assert_eq!(list["counts"]["evaluated"], 1);
    assert_eq!(list["counts"]["needs_review"], 0);
    let (_, list) = h.get("/api/v1/candidates?tab=rejected", &key).await;
    assert!(list["data"].as_array().unwrap().is_empty());
    let (_, evals) = h
        .get(&format!("/api/v1/candidates/{cand}/evaluations"), &key)
        .await;
    assert_eq!(evals["data"].as_array().unwrap().len(), 1);
}

async fn manual_approval_waits_for_review_and_recruiters_override(h: Harness) {
    let (_, key) = h.workspace().await;
    let (r, _) = screening_receptionist(&h, &key, json!({ "manual_approval": true })).await;
    let to = r["phone_number"].as_str().unwrap().to_string();
    let (call_id, cand) =
        finished_call(&h, &r, CALLER, &good_call(true), EndReason::Completed).await;
    after(&h, &call_id).await;
    text(&h, CALLER, &to, "yes", &sid()).await;
    run_evaluations(&h, &cand).await;
    let c = candidate(&h, &key, &cand).await;
    assert_eq!(c["status"], "evaluated");
    assert_eq!(c["review"], "needs_review");
    assert!(
        c["ingested"].is_null(),
        "manual approval never ingests by itself"
    );
    let (_, list) = h.get("/api/v1/candidates?tab=needs_review", &key).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    // the recruiter rejects, with a reason; a re-evaluation keeps their decision
    let (status, body) = h
        .post(
            &format!("/api/v1/candidates/{cand}/reject"),
            &key,
            json!({ "reason": "no forklift licence" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["review"], "rejected");
    assert!(body["review_by"].as_str().unwrap().starts_with("key:"));
    let (status, evaluation) = h
        .send(
            Method::POST,
            &format!("/api/v1/candidates/{cand}/evaluate"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{evaluation}");
    assert_eq!(evaluation["score"], 100.0);
    let c = candidate(&h, &key, &cand).await;
    assert_eq!(
        c["review"], "rejected",
        "routing never overrides a recruiter"
    );
    assert_eq!(c["evaluation_count"], 2);
    let evals = c["evaluations"].as_array().unwrap();
    assert_eq!(evals[0]["id"], evaluation["id"], "newest first");
    assert!(history_kinds(&c).contains(&"routing_skipped".to_string()));
    // and the recruiter can change their mind
    let (status, body) = h
        .send(
            Method::POST,
            &format!("/api/v1/candidates/{cand}/approve"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["review"], "approved");
}

async fn failed_dealbreaker_is_rejected(h: Harness) {
    let (_, key) = h.workspace().await;
    let (r, _) = screening_receptionist(&h, &key, json!({ "score_threshold": 0 })).await;
    let to = r["phone_number"].as_str().unwrap().to_string();
    let (call_id, cand) =
        finished_call(&h, &r, CALLER, &good_call(false), EndReason::Completed).await;
    after(&h, &call_id).await;
    text(&h, CALLER, &to, "YES", &sid()).await;
    run_evaluations(&h, &cand).await;
    let c = candidate(&h, &key, &cand).await;
    assert_eq!(c["review"], "rejected");
    assert!(c["ingested"].is_null());
    let e = &c["evaluations"][0];
    assert_eq!(e["dealbreaker_failed"], true);
    // (0 × 1 + 100 × 2) / 3
    assert_eq!(e["score"], 67.0);
    assert!(
        e["summary"]
            .as_str()
            .unwrap()
            .contains("Failed dealbreaker")
    );
    assert!(messages(&c, "invitation").is_empty());
}

async fn confirmation_off_or_impossible_confirms_at_once(h: Harness) {
    let (_, key) = h.workspace().await;
    let (r, _) = screening_receptionist(&h, &key, json!({ "sms_confirmation": false })).await;
    assert_eq!(r["sms_confirmation"], false);
    let (call_id, cand) =
        finished_call(&h, &r, CALLER, &good_call(true), EndReason::Completed).await;
    assert_eq!(after(&h, &call_id).await, AfterCallOutcome::ConfirmedAtOnce);
    let c = candidate(&h, &key, &cand).await;
    assert_eq!(c["status"], "confirmed");
    assert!(c["messages"].as_array().unwrap().is_empty(), "no text");
    assert_eq!(run_evaluations(&h, &cand).await, 1);
    assert_eq!(candidate(&h, &key, &cand).await["status"], "evaluated");

    // a server that cannot text, and a caller with no textable number
    let (r2, _) = screening_receptionist(&h, &key, json!({})).await;
    let (call_id, _) = finished_call(
        &h,
        &r2,
        "+15550009999",
        &good_call(true),
        EndReason::Completed,
    )
    .await;
    assert_eq!(
        pipeline::after_call(&h.store, &call_id, false)
            .await
            .unwrap(),
        AfterCallOutcome::ConfirmedAtOnce
    );
    let (call_id, cand) =
        finished_call(&h, &r2, "anonymous", &good_call(true), EndReason::Completed).await;
    assert_eq!(after(&h, &call_id).await, AfterCallOutcome::ConfirmedAtOnce);
    assert_eq!(candidate(&h, &key, &cand).await["status"], "confirmed");

    // no name captured: nothing to confirm, nothing sent, and where the call ended is kept
    let (call_id, cand) =
        finished_call(&h, &r2, "+15550008888", &[], EndReason::CallerHangup).await;
    assert_eq!(after(&h, &call_id).await, AfterCallOutcome::NoName);
    let c = candidate(&h, &key, &cand).await;
    assert_eq!(c["status"], "awaiting_confirmation");
    assert!(c["messages"].as_array().unwrap().is_empty());
}

async fn stop_opts_out_and_is_honoured(h: Harness) {
    let (_, key) = h.workspace().await;
    let (r, _) = screening_receptionist(&h, &key, json!({})).await;
    let to = r["phone_number"].as_str().unwrap().to_string();
    let (call_id, cand) =
        finished_call(&h, &r, CALLER, &good_call(true), EndReason::Completed).await;
    assert_eq!(after(&h, &call_id).await, AfterCallOutcome::TextQueued);
    let (status, _) = text(&h, CALLER, &to, "STOP", &sid()).await;
    assert_eq!(status, StatusCode::OK);
    let c = candidate(&h, &key, &cand).await;
    assert_eq!(
        c["status"], "awaiting_confirmation",
        "STOP confirms nothing"
    );
    assert!(history_kinds(&c).contains(&"opted_out".to_string()));
    assert!(
        messages(&c, "acknowledgement").is_empty(),
        "no reply to STOP"
    );

    // an hour later the caller calls again: no text goes to an opted-out number
    let (call_id, _) = finished_call(&h, &r, CALLER, &good_call(true), EndReason::Completed).await;
    assert_eq!(after(&h, &call_id).await, AfterCallOutcome::ConfirmedAtOnce);
    let c = candidate(&h, &key, &cand).await;
    assert_eq!(messages(&c, "confirmation").len(), 1);
    // a correction gets no acknowledgement either
    text(&h, CALLER, &to, "my name is Jon", &sid()).await;
    assert!(messages(&candidate(&h, &key, &cand).await, "acknowledgement").is_empty());

    // START opts back in
    text(&h, CALLER, &to, "start", &sid()).await;
    text(&h, CALLER, &to, "it is Jon with no h", &sid()).await;
    assert_eq!(
        messages(&candidate(&h, &key, &cand).await, "acknowledgement").len(),
        1
    );
}

async fn corrections_are_kept_and_acknowledged_once(h: Harness) {
    let (_, key) = h.workspace().await;
    let (r, _) = screening_receptionist(&h, &key, json!({})).await;
    let to = r["phone_number"].as_str().unwrap().to_string();
    let (call_id, cand) =
        finished_call(&h, &r, CALLER, &good_call(true), EndReason::Completed).await;
    after(&h, &call_id).await;
    text(&h, CALLER, &to, "Yes but my name is Jon Smyth", &sid()).await;
    text(&h, CALLER, &to, "and I live in Evanston <b>now</b>", &sid()).await;
    let c = candidate(&h, &key, &cand).await;
    assert_eq!(
        c["status"], "awaiting_confirmation",
        "a correction is not a confirmation"
    );
    let corrections = c["corrections"].as_array().unwrap();
    assert_eq!(corrections.len(), 2);
    assert_eq!(
        corrections[0]["detail"]["text"],
        "Yes but my name is Jon Smyth"
    );
    assert_eq!(corrections[0]["actor"], "caller");
    let acks = messages(&c, "acknowledgement");
    assert_eq!(acks.len(), 1, "one acknowledgement, not one per message");
    assert_eq!(acks[0]["to_number"], CALLER);
    assert_eq!(acks[0]["from_number"], to.as_str());
    assert_eq!(messages(&c, "reply").len(), 2);
    assert!(
        messages(&c, "reply")
            .iter()
            .all(|m| m["status"] == "received")
    );
    // then the recruiter fixes the details and the caller confirms
    let (status, body) = h
        .send(
            Method::PATCH,
            &format!("/api/v1/candidates/{cand}"),
            Some(&key),
            Some(json!({ "name": "Jon Smyth", "location": "Evanston" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "Jon Smyth");
    text(&h, CALLER, &to, "yes", &sid()).await;
    run_evaluations(&h, &cand).await;
    let c = candidate(&h, &key, &cand).await;
    assert!(
        c["evaluations"][0]["summary"]
            .as_str()
            .unwrap()
            .starts_with("Jon Smyth, from Evanston.")
    );
}

async fn one_confirmation_text_per_hour(h: Harness) {
    let (_, key) = h.workspace().await;
    let (r, _) = screening_receptionist(&h, &key, json!({})).await;
    let (first, cand) = finished_call(&h, &r, CALLER, &good_call(true), EndReason::Completed).await;
    let (second, same) =
        finished_call(&h, &r, CALLER, &good_call(true), EndReason::Completed).await;
    assert_eq!(cand, same, "one candidate per number");
    assert_eq!(after(&h, &first).await, AfterCallOutcome::TextQueued);
    assert_eq!(after(&h, &second).await, AfterCallOutcome::TextRecentlySent);
    let c = candidate(&h, &key, &cand).await;
    assert_eq!(messages(&c, "confirmation").len(), 1);
    assert_eq!(c["call_count"], 2);
    assert_eq!(c["calls"].as_array().unwrap().len(), 2);
    // one YES confirms; the evaluation takes the latest call
    text(
        &h,
        CALLER,
        r["phone_number"].as_str().unwrap(),
        "yes",
        &sid(),
    )
    .await;
    run_evaluations(&h, &cand).await;
    let c = candidate(&h, &key, &cand).await;
    assert_eq!(c["evaluations"][0]["call_id"], second.as_str());
}

async fn forged_unknown_and_repeated_texts(h: Harness) {
    let (_, key) = h.workspace().await;
    let (r, _) = screening_receptionist(&h, &key, json!({})).await;
    let to = r["phone_number"].as_str().unwrap().to_string();
    let (call_id, cand) =
        finished_call(&h, &r, CALLER, &good_call(true), EndReason::Completed).await;
    after(&h, &call_id).await;
    // forged: a wrong signature changes nothing
    let form = format!(
        "MessageSid={}&From=%2B15557654321&To={}&Body=YES",
        sid(),
        to.replace('+', "%2B")
    );
    for signature in [None, Some("AAAAAAAAAAAAAAAAAAAAAAAAAAA=")] {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri("/twilio/sms")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(s) = signature {
            req = req.header("X-Twilio-Signature", s);
        }
        let (status, _) = h.raw(req.body(Body::from(form.clone())).unwrap()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let c = candidate(&h, &key, &cand).await;
    assert_eq!(c["status"], "awaiting_confirmation");
    assert!(messages(&c, "reply").is_empty());
    // malformed
    let (status, _) = text(&h, CALLER, &to, "yes", "not-a-sid").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // to a number no receptionist has: answered, nothing stored
    let (status, _) = text(&h, CALLER, "+15550000000", "yes", &sid()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        candidate(&h, &key, &cand).await["status"],
        "awaiting_confirmation"
    );
    // the same message delivered twice is acted on once
    let message = sid();
    text(&h, CALLER, &to, "wrong name", &message).await;
    text(&h, CALLER, &to, "wrong name", &message).await;
    let c = candidate(&h, &key, &cand).await;
    assert_eq!(messages(&c, "reply").len(), 1);
    assert_eq!(c["corrections"].as_array().unwrap().len(), 1);
    // from someone who never called: kept for the record, nobody confirmed
    let (status, _) = text(&h, "+15550001234", &to, "yes", &sid()).await;
    assert_eq!(status, StatusCode::OK);
}

async fn ingest_rules(h: Harness) {
    let (ws, key) = h.workspace().await;
    let (r, interviewer) =
        screening_receptionist(&h, &key, json!({ "manual_approval": true })).await;
    let (_, other) = h
        .post(
            "/api/v1/interviewers",
            &key,
            json!({ "name": "Driver interview", "interview_link": "https://interview.example/d" }),
        )
        .await;
    let (call_id, cand) =
        finished_call(&h, &r, CALLER, &good_call(true), EndReason::Completed).await;
    after(&h, &call_id).await;
    let path = format!("/api/v1/candidates/{cand}/ingest");
    // an interviewer the receptionist may not ingest into, or none at all
    let (status, body) = h
        .post(&path, &key, json!({ "interviewer_id": other["id"] }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "interviewer_id");
    let (status, body) = h.post(&path, &key, json!({ "interviewer_id": "" })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "interviewer_id");
    let (status, _) = h
        .post(&path, &key, json!({ "interviewer": interviewer["id"] }))
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown fields are refused"
    );
    // with an email known, the invitation goes by text and email
    let (status, body) = h
        .send(
            Method::PATCH,
            &format!("/api/v1/candidates/{cand}"),
            Some(&key),
            Some(json!({ "email": "not an email" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "email");
    h.send(
        Method::PATCH,
        &format!("/api/v1/candidates/{cand}"),
        Some(&key),
        Some(json!({ "email": "john@example.com" })),
    )
    .await;
    let (status, body) = h
        .post(&path, &key, json!({ "interviewer_id": interviewer["id"] }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["review"], "approved", "ingest approves");
    assert_eq!(body["ingested"]["interviewer_id"], interviewer["id"]);
    // twice: idempotent, nothing sent again
    let (status, again) = h
        .post(&path, &key, json!({ "interviewer_id": interviewer["id"] }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["ingested"]["at"], body["ingested"]["at"]);
    let c = candidate(&h, &key, &cand).await;
    assert_eq!(messages(&c, "invitation").len(), 1);
    let emails = c["emails"].as_array().unwrap();
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0]["to"], "john@example.com");
    assert_eq!(emails[0]["subject"], "Your invitation: Warehouse interview");
    let kinds = history_kinds(&c);
    assert_eq!(kinds.iter().filter(|k| *k == "ingested").count(), 1);
    // viewers cannot ingest; another workspace cannot see the candidate
    let viewer = h
        .store
        .create_api_key(&ws, receptionist::store::Role::Viewer)
        .await
        .unwrap();
    let (status, _) = h
        .post(
            &path,
            &viewer,
            json!({ "interviewer_id": interviewer["id"] }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, stranger) = h.workspace().await;
    let (status, _) = h
        .post(
            &path,
            &stranger,
            json!({ "interviewer_id": interviewer["id"] }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn notes_reviews_and_details_keep_their_actor(h: Harness) {
    let (ws, key) = h.workspace().await;
    let (r, _) = screening_receptionist(&h, &key, json!({})).await;
    let (_, cand) = finished_call(&h, &r, CALLER, &good_call(true), EndReason::Completed).await;
    let (status, created) = h
        .post(
            "/api/v1/keys",
            &key,
            json!({ "role": "admin", "name": "Dana" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let dana = created["key"].as_str().unwrap();
    let (status, note) = h
        .post(
            &format!("/api/v1/candidates/{cand}/notes"),
            dana,
            json!({ "text": "  Great on the phone.  " }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{note}");
    assert_eq!(note["detail"]["text"], "Great on the phone.");
    assert_eq!(
        note["actor"],
        format!("key:{}", created["id"].as_str().unwrap())
    );
    for bad in [
        json!({ "text": "  " }),
        json!({ "text": "x".repeat(5001) }),
        json!({}),
    ] {
        let (status, body) = h
            .post(&format!("/api/v1/candidates/{cand}/notes"), dana, bad)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    let (status, _) = h
        .post(
            &format!("/api/v1/candidates/{cand}/approve"),
            &key,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = h
        .post(
            &format!("/api/v1/candidates/{cand}/reject"),
            &key,
            json!({ "reason": 7 }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "reason");
    let c = candidate(&h, &key, &cand).await;
    assert_eq!(c["notes"].as_array().unwrap().len(), 1);
    let reviews: Vec<&Value> = c["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["kind"] == "review")
        .collect();
    assert_eq!(reviews.len(), 1);
    assert!(reviews[0]["actor"].as_str().unwrap().starts_with("key:"));
    assert!(reviews[0]["created_at"].is_string());
    let _ = ws;
}

async fn keys_api(h: Harness) {
    let (_, key) = h.workspace().await;
    let (status, created) = h
        .post(
            "/api/v1/keys",
            &key,
            json!({ "role": "viewer", "name": "Auditor" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let viewer = created["key"].as_str().unwrap().to_string();
    assert!(viewer.starts_with("rk_"));
    assert_eq!(created["role"], "viewer");
    let (status, me) = h.get("/api/v1/me", &viewer).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["role"], "viewer");
    assert_eq!(me["key"]["name"], "Auditor");
    assert_eq!(me["workspace"]["name"], "Acme Staffing");
    let (status, list) = h.get("/api/v1/keys", &viewer).await;
    assert_eq!(status, StatusCode::OK);
    let keys = list["data"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(
        !list.to_string().contains(&viewer),
        "keys are never shown again"
    );
    assert!(
        keys.iter()
            .all(|k| k.get("key").is_none() && k.get("key_hash").is_none())
    );
    // viewers change nothing
    let (status, _) = h
        .post("/api/v1/keys", &viewer, json!({ "role": "admin" }))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = h
        .send(
            Method::DELETE,
            &format!("/api/v1/keys/{}", created["id"].as_str().unwrap()),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // bad input
    for (body, field) in [
        (json!({ "role": "owner" }), "role"),
        (json!({ "name": "x" }), "body"),
        (json!({ "role": "viewer", "name": "x".repeat(101) }), "name"),
        (json!({ "role": "viewer", "scopes": [] }), "body"),
    ] {
        let (status, err) = h.post("/api/v1/keys", &key, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        let _ = field;
    }
    // revoke: the key stops working at once
    let (status, _) = h
        .send(
            Method::DELETE,
            &format!("/api/v1/keys/{}", created["id"].as_str().unwrap()),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h.get("/api/v1/keys", &viewer).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // the last admin key cannot be revoked
    let (_, list) = h.get("/api/v1/keys", &key).await;
    let admin_id = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "admin")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = h
        .send(
            Method::DELETE,
            &format!("/api/v1/keys/{admin_id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = h
        .send(Method::DELETE, "/api/v1/keys/nope", Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn interviewers_api(h: Harness) {
    let (_, key) = h.workspace().await;
    for (body, field) in [
        (json!({ "interview_link": "https://x.example" }), "name"),
        (json!({ "name": "A" }), "interview_link"),
        (
            json!({ "name": "A", "interview_link": "javascript:alert(1)" }),
            "interview_link",
        ),
        (
            json!({ "name": " ", "interview_link": "https://x.example" }),
            "name",
        ),
        (
            json!({ "name": "A", "interview_link": "https://x.example", "invitation_message": "x".repeat(1001) }),
            "invitation_message",
        ),
    ] {
        let (status, err) = h.post("/api/v1/interviewers", &key, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        assert_eq!(err["error"]["field"], field);
    }
    let (status, created) = h
        .post(
            "/api/v1/interviewers",
            &key,
            json!({ "name": "Forklift interview", "interview_link": "https://x.example/f" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["id"].as_str().unwrap();
    let (status, updated) = h
        .put(
            &format!("/api/v1/interviewers/{id}"),
            &key,
            json!({ "invitation_message": "Hi {candidate_name}" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"], "Forklift interview", "PUT merges");
    assert_eq!(updated["invitation_message"], "Hi {candidate_name}");
    let (_, list) = h.get("/api/v1/interviewers", &key).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

async fn receptionist_names_its_interviewers(h: Harness) {
    let (_, key) = h.workspace().await;
    let (r, interviewer) = screening_receptionist(&h, &key, json!({})).await;
    assert_eq!(r["interviewer_ids"], json!([interviewer["id"]]));
    assert_eq!(r["default_interviewer_id"], interviewer["id"]);
    assert_eq!(r["sms_confirmation"], true);
    let path = format!("/api/v1/receptionists/{}", r["id"].as_str().unwrap());
    let (status, body) = h
        .put(
            &path,
            &key,
            json!({ "interviewer_ids": [interviewer["id"], "nope"] }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "interviewer_ids[1]");
    let (status, body) = h.put(&path, &key, json!({ "interviewer_ids": [] })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "default_interviewer_id");
    let (status, body) = h
        .put(
            &path,
            &key,
            json!({ "interviewer_ids": [], "default_interviewer_id": "" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["default_interviewer_id"].is_null());
    // another workspace's interviewer is not one of ours
    let (_, stranger) = h.workspace().await;
    let (_, theirs) = h
        .post(
            "/api/v1/interviewers",
            &stranger,
            json!({ "name": "T", "interview_link": "https://t.example" }),
        )
        .await;
    let (status, body) = h
        .put(&path, &key, json!({ "interviewer_ids": [theirs["id"]] }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

async fn every_route_is_isolated_and_read_only_for_viewers(h: Harness) {
    let (ws, key) = h.workspace().await;
    let (r, interviewer) = screening_receptionist(&h, &key, json!({})).await;
    let (call_id, cand) =
        finished_call(&h, &r, CALLER, &good_call(true), EndReason::Completed).await;
    let (_, created) = h
        .post(
            "/api/v1/keys",
            &key,
            json!({ "role": "admin", "name": "second" }),
        )
        .await;
    let key_id = created["id"].as_str().unwrap().to_string();
    let rid = r["id"].as_str().unwrap().to_string();
    let iid = interviewer["id"].as_str().unwrap().to_string();
    let (_, stranger) = h.workspace().await;
    let viewer = h
        .store
        .create_api_key(&ws, receptionist::store::Role::Viewer)
        .await
        .unwrap();

    let reads = [
        format!("/api/v1/receptionists/{rid}"),
        format!("/api/v1/calls/{call_id}"),
        format!("/api/v1/candidates/{cand}"),
        format!("/api/v1/candidates/{cand}/evaluations"),
        format!("/api/v1/interviewers/{iid}"),
    ];
    for path in &reads {
        let (status, _) = h.get(path, &stranger).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "another workspace reads {path}"
        );
        let (status, _) = h.get(path, &viewer).await;
        assert_eq!(status, StatusCode::OK, "a viewer reads {path}");
    }
    for path in [
        "/api/v1/receptionists",
        "/api/v1/calls",
        "/api/v1/candidates",
        "/api/v1/interviewers",
        "/api/v1/keys",
    ] {
        let (status, body) = h.get(path, &stranger).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body["data"].as_array().unwrap().len() <= 1,
            "{path}: only the stranger's own rows"
        );
        assert!(
            !body.to_string().contains(&rid) && !body.to_string().contains(cand.as_str()),
            "{path}"
        );
        let (status, _) = h.get(path, &viewer).await;
        assert_eq!(status, StatusCode::OK);
    }
    let writes: Vec<(Method, String, Value)> = vec![
        (
            Method::PUT,
            format!("/api/v1/receptionists/{rid}"),
            json!({ "agent_name": "X" }),
        ),
        (
            Method::PATCH,
            format!("/api/v1/candidates/{cand}"),
            json!({ "name": "X" }),
        ),
        (
            Method::POST,
            format!("/api/v1/candidates/{cand}/approve"),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/v1/candidates/{cand}/reject"),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/v1/candidates/{cand}/notes"),
            json!({ "text": "x" }),
        ),
        (
            Method::POST,
            format!("/api/v1/candidates/{cand}/ingest"),
            json!({ "interviewer_id": iid }),
        ),
        (
            Method::POST,
            format!("/api/v1/candidates/{cand}/evaluate"),
            json!({}),
        ),
        (
            Method::PUT,
            format!("/api/v1/interviewers/{iid}"),
            json!({ "name": "X" }),
        ),
        (
            Method::DELETE,
            format!("/api/v1/keys/{key_id}"),
            Value::Null,
        ),
    ];
    for (method, path, body) in &writes {
        let body = (!body.is_null()).then(|| body.clone());
        let (status, _) = h
            .send(method.clone(), path, Some(&stranger), body.clone())
            .await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "another workspace: {method} {path}"
        );
        let (status, _) = h.send(method.clone(), path, Some(&viewer), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "viewer: {method} {path}");
    }
    for (path, body) in [
        ("/api/v1/receptionists", json!({})),
        ("/api/v1/interviewers", json!({})),
        ("/api/v1/keys", json!({ "role": "viewer" })),
        (
            "/api/v1/webhooks",
            json!({ "url": "https://x.example", "events": ["call.ended"] }),
        ),
    ] {
        let (status, _) = h.post(path, &viewer, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "viewer: POST {path}");
    }
    // nothing changed
    let c = candidate(&h, &key, &cand).await;
    assert_eq!(c["name"], "John Smith");
    assert!(c["review"].is_null());
    assert!(c["notes"].as_array().unwrap().is_empty());
}

async fn after_call_work_resumes_at_startup(h: Harness) {
    let (_, key) = h.workspace().await;
    let (r, _) = screening_receptionist(&h, &key, json!({})).await;
    // the server stopped between ending the call and queueing its after-call work
    let (_, cand) = finished_call(&h, &r, CALLER, &good_call(true), EndReason::Completed).await;
    assert!(
        candidate(&h, &key, &cand).await["messages"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    receptionist::server::recover(&h.store, &h.state.config)
        .await
        .unwrap();
    let c = candidate(&h, &key, &cand).await;
    assert_eq!(messages(&c, "confirmation").len(), 1);
    // and once only
    receptionist::server::recover(&h.store, &h.state.config)
        .await
        .unwrap();
    assert_eq!(
        messages(&candidate(&h, &key, &cand).await, "confirmation").len(),
        1
    );
}
