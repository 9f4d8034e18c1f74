//! The recruiter API and the store, against real databases: every test body runs once on SQLite
//! (a file in a temporary directory) and once on PostgreSQL (a fresh database per test, dropped
//! afterwards). PostgreSQL comes from `TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); when it is unreachable the PostgreSQL tests
//! fail, they do not skip.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use receptionist::model::{
    AnswerValue, CallEvent, CandidateStatus, DisclosureKind, DisclosureRecord, EndReason,
    QuestionKind, Speaker, TurnLatency,
};
use receptionist::store::{CallStatus, CandidateFilter, EventBatch, NewCall, Role, StoreError};

#[macro_use]
mod common;

use common::harness::*;

both_databases!(
    receptionist_crud,
    validation_errors_name_the_field,
    malformed_requests_use_the_error_shape,
    duplicate_phone_is_a_conflict,
    auth_roles,
    workspaces_are_isolated,
    call_lifecycle,
    interrupted_calls_are_closed_at_startup,
    candidate_pipeline_filters,
    recording_endpoint,
    concurrent_calls,
    events_of_many_calls_go_in_one_transaction,
    the_event_writer_keeps_one_calls_fault_from_the_others,
);

// ---------------------------------------------------------------------------------------------
// Receptionists
// ---------------------------------------------------------------------------------------------

async fn receptionist_crud(h: Harness) {
    let (ws, key) = h.workspace().await;
    let phone = unique_phone();
    let created = h.receptionist(&key, &phone).await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["workspace_id"], ws.as_str());
    assert_eq!(created["phone_number"], phone.as_str());
    // Defaults.
    assert_eq!(created["voice"], "slt");
    assert_eq!(created["language_mode"], "english");
    assert_eq!(created["disclose_ai"], true);
    assert_eq!(created["disclose_recording"], true);
    assert_eq!(created["disclose_e_verify"], true);
    assert_eq!(created["collect_location"], true);
    assert_eq!(created["manual_approval"], false);
    assert_eq!(created["score_threshold"], 70);
    assert_eq!(created["status"], "live");
    assert_eq!(created["questions"], json!([]));
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    let (status, got) = h.get(&format!("/api/v1/receptionists/{id}"), &key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, created);

    // Partial update: absent fields keep their values.
    let (status, updated) = h
        .put(
            &format!("/api/v1/receptionists/{id}"),
            &key,
            json!({
                "status": "inactive",
                "language_mode": "multilingual",
                "questions": [
                    {"text": "Are you 18 or older?", "kind": "yes_no", "expected": "yes", "dealbreaker": true},
                    {"text": "Years of experience?", "kind": "number", "expected": ">= 2", "weight": 2.5},
                    {"text": "Which shifts?", "kind": "free_text"}
                ],
                "score_threshold": 80
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["status"], "inactive");
    assert_eq!(updated["agent_name"], "Chloe");
    assert_eq!(updated["phone_number"], phone.as_str());
    assert_eq!(updated["score_threshold"], 80);
    assert_eq!(updated["questions"][0]["dealbreaker"], true);
    assert_eq!(updated["questions"][1]["weight"], 2.5);
    assert_eq!(updated["questions"][2]["weight"], 1.0);
    assert_eq!(updated["created_at"], created["created_at"]);

    // What GET returns can be sent back as is.
    let (status, echoed) = h
        .put(
            &format!("/api/v1/receptionists/{id}"),
            &key,
            updated.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{echoed}");
    assert_eq!(echoed["questions"], updated["questions"]);

    // Routing sees the new settings; the store keeps questions as typed values.
    let routed = h
        .store
        .receptionist_by_phone(&phone)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(routed.id, id);
    assert_eq!(routed.settings.questions.len(), 3);
    assert_eq!(routed.settings.questions[1].kind, QuestionKind::Number);
    assert!(
        h.store
            .receptionist_by_phone("+19999999999")
            .await
            .unwrap()
            .is_none()
    );

    let live = h.receptionist(&key, &unique_phone()).await;
    let (_, all) = h.get("/api/v1/receptionists", &key).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    let (_, lives) = h.get("/api/v1/receptionists?status=live", &key).await;
    let lives = lives["data"].as_array().unwrap();
    assert_eq!(lives.len(), 1);
    assert_eq!(lives[0]["id"], live["id"]);
    let warm = h.store.all_live_receptionists().await.unwrap();
    assert_eq!(warm.len(), 1);
    assert_eq!(warm[0].id, live["id"].as_str().unwrap());
    let (_, inactive) = h.get("/api/v1/receptionists?status=inactive", &key).await;
    assert_eq!(inactive["data"][0]["id"], id.as_str());
    let (status, body) = h.get("/api/v1/receptionists?status=paused", &key).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, _) = h.get("/api/v1/receptionists/no-such-id", &key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn validation_errors_name_the_field(h: Harness) {
    let (_, key) = h.workspace().await;
    let with = |patch: Value| {
        let mut body = minimal(&unique_phone());
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let q = |text: &str, kind: &str, expected: Value| json!({"text": text, "kind": kind, "expected": expected});
    let many: Vec<Value> = (0..21)
        .map(|i| q(&format!("Q{i}?"), "yes_no", Value::Null))
        .collect();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "long intro",
            with(json!({"intro_message": "x".repeat(801)})),
            "intro_message",
        ),
        (
            "empty intro",
            with(json!({"intro_message": "  "})),
            "intro_message",
        ),
        (
            "no plus",
            with(json!({"phone_number": "15551234567"})),
            "phone_number",
        ),
        (
            "leading zero",
            with(json!({"phone_number": "+05551234567"})),
            "phone_number",
        ),
        (
            "too long",
            with(json!({"phone_number": "+1234567890123456"})),
            "phone_number",
        ),
        (
            "letters",
            with(json!({"phone_number": "+1555CALLNOW"})),
            "phone_number",
        ),
        ("empty agent", with(json!({"agent_name": ""})), "agent_name"),
        (
            "empty question",
            with(
                json!({"questions": [q("ok?", "yes_no", Value::Null), q("ok?", "yes_no", Value::Null), q(" ", "yes_no", Value::Null)]}),
            ),
            "questions[2].text",
        ),
        (
            "yes_no expected",
            with(json!({"questions": [q("Q?", "yes_no", json!("maybe"))]})),
            "questions[0].expected",
        ),
        (
            "number expected",
            with(json!({"questions": [q("Q?", "number", json!("lots"))]})),
            "questions[0].expected",
        ),
        (
            "bad range",
            with(json!({"questions": [q("Q?", "number", json!("65-18"))]})),
            "questions[0].expected",
        ),
        (
            "non-ascii number",
            with(json!({"questions": [q("Q?", "number", json!("é-5"))]})),
            "questions[0].expected",
        ),
        (
            "negative weight",
            with(json!({"questions": [{"text": "Q?", "kind": "yes_no", "weight": -1}]})),
            "questions[0].weight",
        ),
        (
            "threshold",
            with(json!({"score_threshold": 101})),
            "score_threshold",
        ),
        (
            "negative threshold",
            with(json!({"score_threshold": -1})),
            "score_threshold",
        ),
        (
            "context",
            with(json!({"custom_context": "x".repeat(20_001)})),
            "custom_context",
        ),
        (
            "too many questions",
            with(json!({"questions": many})),
            "questions",
        ),
        (
            "missing kind",
            with(json!({"questions": [{"text": "Q?"}]})),
            "questions[0].kind",
        ),
        (
            "unknown enum",
            with(json!({"language_mode": "klingon"})),
            "language_mode",
        ),
        (
            "unknown kind",
            with(json!({"questions": [{"text": "Q?", "kind": "essay"}]})),
            "questions[0].kind",
        ),
        (
            "wrong type",
            with(json!({"manual_approval": "yes"})),
            "manual_approval",
        ),
        ("unknown field", with(json!({"intro": "hi"})), "intro"),
    ];
    for (what, body, field) in cases {
        let (status, resp) = h.post("/api/v1/receptionists", &key, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {resp}");
        assert_eq!(error_field(&resp), field, "{what}: {resp}");
        assert!(
            resp["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }
    for missing in ["phone_number", "agent_name", "intro_message"] {
        let mut body = minimal(&unique_phone());
        body.as_object_mut().unwrap().remove(missing);
        let (status, resp) = h.post("/api/v1/receptionists", &key, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{resp}");
        assert_eq!(error_field(&resp), missing);
    }
    // Limits are inclusive, and valid expectations pass.
    let ok = with(json!({
        "intro_message": "x".repeat(800),
        "custom_context": "y".repeat(20_000),
        "score_threshold": 100,
        "questions": [
            q("Adult?", "yes_no", json!("no")),
            q("Age?", "number", json!("18-65")),
            q("Years?", "number", json!("< 5")),
            q("Shifts?", "free_text", json!("nights, weekends"))
        ]
    }));
    let (status, resp) = h.post("/api/v1/receptionists", &key, ok).await;
    assert_eq!(status, StatusCode::CREATED, "{resp}");

    // Updates go through the same rules.
    let id = resp["id"].as_str().unwrap();
    let (status, resp) = h
        .put(
            &format!("/api/v1/receptionists/{id}"),
            &key,
            json!({"intro_message": "z".repeat(801)}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_field(&resp), "intro_message");
}

async fn malformed_requests_use_the_error_shape(h: Harness) {
    let (_, key) = h.workspace().await;
    let send = |content_type: &'static str, body: &'static str| {
        Request::builder()
            .method(Method::POST)
            .uri("/api/v1/receptionists")
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap()
    };
    for (content_type, body, expected) in [
        (
            "application/json",
            "{\"phone_number\": ",
            StatusCode::BAD_REQUEST,
        ),
        ("application/json", "not json", StatusCode::BAD_REQUEST),
        ("application/json", "{} {}", StatusCode::BAD_REQUEST),
        ("text/plain", "{}", StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ] {
        let (status, bytes) = h.raw(send(content_type, body)).await;
        assert_eq!(status, expected, "{body}");
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(value["error"]["message"].is_string(), "{value}");
    }
    let (status, body) = h.get("/api/v1/calls?limit=abc", &key).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].is_string());
    let (status, body) = h.get("/api/v1/calls?limit=0", &key).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_field(&body), "limit");
}

async fn duplicate_phone_is_a_conflict(h: Harness) {
    let (_, key) = h.workspace().await;
    let (_, other_key) = h.workspace().await;
    let phone = unique_phone();
    h.receptionist(&key, &phone).await;
    // Unique across the whole server, not only the workspace.
    for k in [&key, &other_key] {
        let (status, body) = h.post("/api/v1/receptionists", k, minimal(&phone)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(error_field(&body), "phone_number");
    }
    let second = h.receptionist(&key, &unique_phone()).await;
    let (status, body) = h
        .put(
            &format!("/api/v1/receptionists/{}", second["id"].as_str().unwrap()),
            &key,
            json!({"phone_number": phone}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_field(&body), "phone_number");
    // Keeping its own number is fine.
    let (status, _) = h
        .put(
            &format!("/api/v1/receptionists/{}", second["id"].as_str().unwrap()),
            &key,
            json!({"phone_number": second["phone_number"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

async fn auth_roles(h: Harness) {
    let (ws, key) = h.workspace().await;
    let viewer = h.store.create_api_key(&ws, Role::Viewer).await.unwrap();
    let r = h.receptionist(&key, &unique_phone()).await;
    let id = r["id"].as_str().unwrap();

    let (status, body) = h
        .send(Method::GET, "/api/v1/receptionists", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"]["message"].is_string());
    let (status, _) = h.get("/api/v1/receptionists", "rk_not-a-key").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let req = Request::builder()
        .uri("/api/v1/calls")
        .header(header::AUTHORIZATION, format!("Basic {key}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.raw(req).await.0, StatusCode::UNAUTHORIZED);

    for path in [
        "/api/v1/receptionists".to_string(),
        format!("/api/v1/receptionists/{id}"),
        "/api/v1/calls".into(),
        "/api/v1/candidates".into(),
    ] {
        let (status, body) = h.get(&path, &viewer).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (status, body) = h
        .post("/api/v1/receptionists", &viewer, minimal(&unique_phone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = h
        .put(
            &format!("/api/v1/receptionists/{id}"),
            &viewer,
            json!({"agent_name": "Eve"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, unchanged) = h.get(&format!("/api/v1/receptionists/{id}"), &key).await;
    assert_eq!(unchanged["agent_name"], "Chloe");

    assert_eq!(
        h.store.authenticate(&viewer).await.unwrap().unwrap().role,
        Role::Viewer
    );
}

async fn workspaces_are_isolated(h: Harness) {
    let (_, key_a) = h.workspace().await;
    let (_, key_b) = h.workspace().await;
    let r = h.receptionist(&key_a, &unique_phone()).await;
    let id = r["id"].as_str().unwrap();
    let call = accept(&h, &r, "+15550100100", "test-node").await;
    let started = h
        .store
        .start_call(&call.id, "MZ1", call.accepted_at_ms, "recordings/a.wav")
        .await
        .unwrap();

    for path in [
        format!("/api/v1/receptionists/{id}"),
        format!("/api/v1/calls/{}", call.id),
        format!("/api/v1/calls/{}/recording", call.id),
        format!("/api/v1/candidates/{}", started.candidate_id),
    ] {
        let (status, body) = h.get(&path, &key_b).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    let (status, _) = h
        .put(
            &format!("/api/v1/receptionists/{id}"),
            &key_b,
            json!({"agent_name": "Mallory"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for path in [
        "/api/v1/receptionists",
        "/api/v1/calls",
        "/api/v1/candidates",
    ] {
        let (_, body) = h.get(path, &key_b).await;
        assert_eq!(body["data"], json!([]), "{path}");
        let (_, body) = h.get(path, &key_a).await;
        assert_eq!(body["data"].as_array().unwrap().len(), 1, "{path}");
    }
}

// ---------------------------------------------------------------------------------------------
// Calls and candidates
// ---------------------------------------------------------------------------------------------

async fn call_lifecycle(h: Harness) {
    let (_, key) = h.workspace().await;
    let r = h.receptionist(&key, &unique_phone()).await;
    let caller = "+15550123456";
    let call = accept(&h, &r, caller, "test-node").await;

    // A retried webhook (same call SID) maps to the stored call and refreshes its token.
    let retry = NewCall {
        id: uuid::Uuid::new_v4().to_string(),
        carrier: "twilio".into(),
        token_hash: "hash-2".into(),
        ..call.clone()
    };
    assert_eq!(h.store.accept_call(&retry).await.unwrap(), call.id);
    let row = h.store.call_by_sid(&call.call_sid).await.unwrap().unwrap();
    assert_eq!(row.id, call.id);
    assert_eq!(row.token_hash, "hash-2");
    assert_eq!(row.status, CallStatus::Accepted);
    assert_eq!(row.settings, call.settings);
    assert!(h.store.call_by_sid("CAnope").await.unwrap().is_none());

    let t0 = call.accepted_at_ms + 500;
    let first = h
        .store
        .start_call(&call.id, "MZfirst", t0, "recordings/first.wav")
        .await
        .unwrap();
    assert!(!first.returning_caller);
    // Starting twice is refused.
    assert!(
        h.store
            .start_call(&call.id, "MZagain", t0, "x.wav")
            .await
            .is_err()
    );

    let events = vec![
        line(Speaker::Agent, "Hi, I'm Chloe.", 0, 1_200),
        CallEvent::Disclosure(DisclosureRecord {
            kind: DisclosureKind::Ai,
            text: "I am an AI assistant.".into(),
            played_in_full: true,
        }),
        line(Speaker::Caller, "My name is Ann Lee", 2_000, 3_100),
        CallEvent::Name {
            name: "Ann Lee".into(),
        },
        CallEvent::Location {
            location: "Austin".into(),
        },
        answer(0, "uh", AnswerValue::Unclear, 1),
    ];
    h.store.append_events(&call.id, 0, &events).await.unwrap();
    let more = vec![
        answer(0, "yes", AnswerValue::Yes, 2),
        answer(1, "no", AnswerValue::No, 1),
        CallEvent::Latency(TurnLatency {
            turn: 1,
            endpointing_ms: 400,
            stt_ms: 150,
            llm_first_ms: None,
            llm_ms: None,
            tts_ms: 200,
            total_ms: 750,
        }),
        line(Speaker::Agent, "Thanks, Ann!", 4_000, 5_000),
    ];
    h.store.append_events(&call.id, 6, &more).await.unwrap();
    // A retried batch is harmless.
    h.store.append_events(&call.id, 6, &more).await.unwrap();
    h.store
        .finish_call(&call.id, t0 + 5_200, 5_200, EndReason::Completed)
        .await
        .unwrap();
    // Finishing twice is a no-op.
    h.store
        .finish_call(&call.id, t0 + 9_999, 9_999, EndReason::Disconnected)
        .await
        .unwrap();

    let (status, detail) = h.get(&format!("/api/v1/calls/{}", call.id), &key).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["from_number"], caller);
    assert_eq!(detail["receptionist_id"], r["id"]);
    assert_eq!(detail["status"], "completed");
    assert_eq!(detail["end_reason"], "completed");
    assert_eq!(detail["duration_ms"], 5_200);
    assert_eq!(detail["candidate_id"], first.candidate_id.as_str());
    assert_eq!(detail["name"], "Ann Lee");
    assert_eq!(detail["location"], "Austin");
    assert!(detail["started_at"].is_string());
    assert_eq!(detail["has_recording"], false, "no file was written");
    let transcript = detail["transcript"].as_array().unwrap();
    assert_eq!(transcript.len(), 3);
    // a recording missing part of the call is flagged (the disk refused it or fell behind)
    assert_eq!(detail["recording_incomplete"], false);
    h.store.mark_recording_incomplete(&call.id).await.unwrap();
    h.store.mark_recording_incomplete(&call.id).await.unwrap();
    let (_, detail) = h.get(&format!("/api/v1/calls/{}", call.id), &key).await;
    assert_eq!(detail["recording_incomplete"], true, "{detail}");
    assert_eq!(
        detail["end_reason"], "completed",
        "the flag leaves the rest alone"
    );
    let (_, list) = h.get("/api/v1/calls", &key).await;
    let listed = list["data"].as_array().unwrap();
    let this = listed.iter().find(|c| c["id"] == call.id.as_str()).unwrap();
    assert_eq!(this["recording_incomplete"], true, "{list}");
    assert!(
        listed
            .iter()
            .filter(|c| c["id"] != call.id.as_str())
            .all(|c| c["recording_incomplete"] == false),
        "{list}"
    );
    assert_eq!(transcript[1]["speaker"], "caller");
    assert_eq!(transcript[1]["start_ms"], 2_000);
    assert_eq!(transcript[2]["text"], "Thanks, Ann!");
    let answers = detail["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 2, "latest per question");
    assert_eq!(answers[0]["value"]["type"], "yes");
    assert_eq!(answers[0]["attempts"], 2);
    assert_eq!(answers[1]["value"]["type"], "no");
    assert_eq!(detail["disclosures"][0]["kind"], "ai");
    assert_eq!(detail["latencies"][0]["total_ms"], 750);

    let (_, list) = h.get("/api/v1/calls", &key).await;
    assert_eq!(list["data"][0]["id"], call.id.as_str());
    assert_eq!(list["data"][0]["candidate_name"], "Ann Lee");

    // The candidate got the name and location.
    let (status, cand) = h
        .get(&format!("/api/v1/candidates/{}", first.candidate_id), &key)
        .await;
    assert_eq!(status, StatusCode::OK, "{cand}");
    assert_eq!(cand["name"], "Ann Lee");
    assert_eq!(cand["location"], "Austin");
    assert_eq!(cand["phone_number"], caller);
    assert_eq!(cand["status"], "awaiting_confirmation");
    assert_eq!(cand["receptionist_name"], "Chloe");
    assert_eq!(cand["calls"].as_array().unwrap().len(), 1);

    // A second call from the same number is the same, returning candidate.
    let second = accept(&h, &r, caller, "test-node").await;
    let again = h
        .store
        .start_call(&second.id, "MZsecond", t0 + 60_000, "recordings/second.wav")
        .await
        .unwrap();
    assert!(again.returning_caller);
    assert_eq!(again.candidate_id, first.candidate_id);
    h.store
        .finish_call(&second.id, t0 + 70_000, 10_000, EndReason::CallerHangup)
        .await
        .unwrap();
    let (_, cand) = h
        .get(&format!("/api/v1/candidates/{}", first.candidate_id), &key)
        .await;
    let calls = cand["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["id"], second.id.as_str(), "newest first");
    assert_eq!(cand["call_count"], 2);
    assert_eq!(cand["last_call_duration_ms"], 10_000);
    assert_eq!(cand["has_recording"], true);
    assert_eq!(cand["name"], "Ann Lee", "kept from the first call");

    // Callers without a usable number get a new candidate every call.
    let mut anonymous = Vec::new();
    for _ in 0..2 {
        let c = accept(&h, &r, "anonymous", "test-node").await;
        let s = h
            .store
            .start_call(&c.id, "MZanon", t0 + 90_000, "recordings/anon.wav")
            .await
            .unwrap();
        assert!(!s.returning_caller);
        anonymous.push(s.candidate_id);
    }
    assert_ne!(anonymous[0], anonymous[1]);
    let (_, cand) = h
        .get(&format!("/api/v1/candidates/{}", anonymous[0]), &key)
        .await;
    assert_eq!(cand["phone_number"], Value::Null);

    // Unknown calls.
    assert!(matches!(
        h.store.start_call("nope", "MZ", 0, "x.wav").await,
        Err(receptionist::store::StoreError::NotFound)
    ));
    assert!(matches!(
        h.store
            .finish_call("nope", 0, 0, EndReason::Completed)
            .await,
        Err(receptionist::store::StoreError::NotFound)
    ));
    assert!(matches!(
        h.store.mark_recording_incomplete("nope").await,
        Err(receptionist::store::StoreError::NotFound)
    ));
    let (status, _) = h.get("/api/v1/calls/nope", &key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn interrupted_calls_are_closed_at_startup(h: Harness) {
    let (_, key) = h.workspace().await;
    let r = h.receptionist(&key, &unique_phone()).await;

    let never_connected = accept(&h, &r, "+15550000001", "node-a").await;
    let talking = accept(&h, &r, "+15550000002", "node-a").await;
    let silent = accept(&h, &r, "+15550000003", "node-a").await;
    let other_node = accept(&h, &r, "+15550000004", "node-b").await;
    let done = accept(&h, &r, "+15550000005", "node-a").await;

    let start = talking.accepted_at_ms;
    h.store
        .start_call(&talking.id, "MZ2", start, "recordings/talking.wav")
        .await
        .unwrap();
    h.store
        .append_events(
            &talking.id,
            0,
            &[
                line(Speaker::Agent, "Hello", 0, 1_000),
                line(Speaker::Caller, "Hi", 1_500, 4_200),
            ],
        )
        .await
        .unwrap();
    h.store
        .start_call(&silent.id, "MZ3", start, "recordings/silent.wav")
        .await
        .unwrap();
    h.store
        .start_call(&done.id, "MZ5", start, "recordings/done.wav")
        .await
        .unwrap();
    h.store
        .finish_call(&done.id, start + 1_000, 1_000, EndReason::Completed)
        .await
        .unwrap();

    let now = start + 60_000;
    let mut closed = h
        .store
        .interrupt_unfinished_calls("node-a", now)
        .await
        .unwrap();
    closed.sort();
    let mut expected = vec![
        (never_connected.id.clone(), None),
        (
            talking.id.clone(),
            Some("recordings/talking.wav".to_string()),
        ),
        (silent.id.clone(), Some("recordings/silent.wav".to_string())),
    ];
    expected.sort();
    assert_eq!(closed, expected);

    let get = |id: String| {
        let store = h.store.clone();
        async move { store.call_by_id(&id).await.unwrap().unwrap() }
    };
    let t = get(talking.id.clone()).await;
    assert_eq!(t.status, CallStatus::Interrupted);
    assert_eq!(t.end_reason, Some(EndReason::ServerInterrupted));
    assert_eq!(t.duration_ms, Some(4_200), "from the events");
    let s = get(silent.id.clone()).await;
    assert_eq!(s.duration_ms, Some(60_000), "no events: until now");
    let n = get(never_connected.id.clone()).await;
    assert_eq!(n.status, CallStatus::Interrupted);
    assert_eq!(n.duration_ms, Some(0));
    assert_eq!(
        get(other_node.id.clone()).await.status,
        CallStatus::Accepted
    );
    let d = get(done.id.clone()).await;
    assert_eq!(d.status, CallStatus::Completed);
    assert_eq!(d.end_reason, Some(EndReason::Completed));

    // Nothing left to close.
    assert!(
        h.store
            .interrupt_unfinished_calls("node-a", now)
            .await
            .unwrap()
            .is_empty()
    );
    let (_, detail) = h.get(&format!("/api/v1/calls/{}", talking.id), &key).await;
    assert_eq!(detail["status"], "interrupted");
    assert_eq!(detail["end_reason"], "server_interrupted");
}

async fn candidate_pipeline_filters(h: Harness) {
    let (_, key) = h.workspace().await;
    let r1 = h.receptionist(&key, &unique_phone()).await;
    let r2 = h.receptionist(&key, &unique_phone()).await;
    let mut ids = Vec::new();
    for (i, (r, from, name)) in [
        (&r1, "+15557770001", "Ann Lee"),
        (&r1, "+15557770002", "Bob_Stone"),
        (&r2, "+15557770003", "Carla 100%"),
    ]
    .into_iter()
    .enumerate()
    {
        let c = accept(&h, r, from, "test-node").await;
        let s = h
            .store
            .start_call(
                &c.id,
                "MZ",
                1_000_000 + i as i64 * 1_000,
                "recordings/x.wav",
            )
            .await
            .unwrap();
        h.store
            .append_events(&c.id, 0, &[CallEvent::Name { name: name.into() }])
            .await
            .unwrap();
        ids.push(s.candidate_id);
    }
    let names = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, all) = h.get("/api/v1/candidates", &key).await;
    assert_eq!(
        names(&all),
        ["Carla 100%", "Bob_Stone", "Ann Lee"],
        "latest call first"
    );
    assert_eq!(all["data"][0]["evaluation_count"], 0);
    assert_eq!(all["data"][0]["receptionist_id"], r2["id"]);

    let (_, found) = h.get("/api/v1/candidates?q=ANN", &key).await;
    assert_eq!(names(&found), ["Ann Lee"]);
    let (_, found) = h.get("/api/v1/candidates?q=555-777-0002", &key).await;
    assert_eq!(names(&found), ["Bob_Stone"]);
    let (_, found) = h.get("/api/v1/candidates?q=_", &key).await;
    assert_eq!(names(&found), ["Bob_Stone"], "LIKE wildcards are literal");
    let (_, found) = h.get("/api/v1/candidates?q=%25", &key).await;
    assert_eq!(names(&found), ["Carla 100%"]);
    let (_, found) = h
        .get(
            &format!(
                "/api/v1/candidates?receptionist_id={}",
                r1["id"].as_str().unwrap()
            ),
            &key,
        )
        .await;
    assert_eq!(names(&found), ["Bob_Stone", "Ann Lee"]);
    let (_, found) = h.get("/api/v1/candidates?tab=approved", &key).await;
    assert!(names(&found).is_empty());
    assert_eq!(found["counts"]["all"], 3);
    assert_eq!(found["counts"]["approved"], 0);
    // cursor pages: newest first, one at a time, to the end
    let (_, first) = h
        .get(
            "/api/v1/candidates?status=awaiting_confirmation&limit=1",
            &key,
        )
        .await;
    assert_eq!(names(&first), ["Carla 100%"]);
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let (_, second) = h
        .get(
            &format!("/api/v1/candidates?status=awaiting_confirmation&limit=1&cursor={cursor}"),
            &key,
        )
        .await;
    assert_eq!(names(&second), ["Bob_Stone"]);
    let cursor = second["next_cursor"].as_str().unwrap().to_string();
    let (_, third) = h
        .get(&format!("/api/v1/candidates?limit=5&cursor={cursor}"), &key)
        .await;
    assert_eq!(names(&third), ["Ann Lee"]);
    assert!(third["next_cursor"].is_null());
    let (status, body) = h.get("/api/v1/candidates?cursor=garbage!", &key).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "cursor");
    let (status, _) = h.get("/api/v1/candidates?status=hired", &key).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = h.get("/api/v1/candidates?tab=hired", &key).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The store's filter directly.
    let ws = r1["workspace_id"].as_str().unwrap();
    let list = h
        .store
        .list_candidates(
            ws,
            &CandidateFilter {
                status: Some(CandidateStatus::AwaitingConfirmation),
                q: Some("lee".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].candidate.id, ids[0]);
    assert_eq!(list[0].call_count, 1);
}

async fn recording_endpoint(h: Harness) {
    let (_, key) = h.workspace().await;
    let r = h.receptionist(&key, &unique_phone()).await;
    let path = |id: &str| format!("/api/v1/calls/{id}/recording");

    // Accepted, never started: no recording.
    let unstarted = accept(&h, &r, "+15550200001", "test-node").await;
    let (status, body) = h.get(&path(&unstarted.id), &key).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // A path but no file yet.
    let call = accept(&h, &r, "+15550200002", "test-node").await;
    h.store
        .start_call(
            &call.id,
            "MZ",
            call.accepted_at_ms,
            "recordings/2024/call.wav",
        )
        .await
        .unwrap();
    let (status, _) = h.get(&path(&call.id), &key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The file exists: served as audio/wav.
    let wav: Vec<u8> = b"RIFF\x24\x00\x00\x00WAVEfmt "
        .iter()
        .copied()
        .chain((0..200_000u32).map(|i| (i % 251) as u8))
        .collect();
    let dir = h.data_dir.join("recordings/2024");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("call.wav"), &wav).unwrap();
    let req = Request::builder()
        .uri(path(&call.id))
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    let response = h.app.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "audio/wav");
    assert_eq!(
        response.headers()[header::CONTENT_LENGTH],
        wav.len().to_string().as_str()
    );
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(body.as_ref(), wav.as_slice());
    let (_, detail) = h.get(&format!("/api/v1/calls/{}", call.id), &key).await;
    assert_eq!(detail["has_recording"], true);

    // A stored path that leaves the data directory is never served, though the file exists.
    let outside = h.data_dir.parent().unwrap().join("secret.wav");
    std::fs::write(&outside, b"RIFFsecret").unwrap();
    for bad in [
        "../secret.wav".to_string(),
        "recordings/../../secret.wav".to_string(),
        outside.display().to_string(),
    ] {
        let c = accept(&h, &r, "+15550200003", "test-node").await;
        h.store
            .start_call(&c.id, "MZ", c.accepted_at_ms, &bad)
            .await
            .unwrap();
        let (status, _) = h.get(&path(&c.id), &key).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
    }
    #[cfg(unix)]
    {
        // Nor one that leaves it through a symlink.
        std::os::unix::fs::symlink(&outside, h.data_dir.join("recordings/link.wav")).unwrap();
        let c = accept(&h, &r, "+15550200004", "test-node").await;
        h.store
            .start_call(&c.id, "MZ", c.accepted_at_ms, "recordings/link.wav")
            .await
            .unwrap();
        let (status, _) = h.get(&path(&c.id), &key).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

/// Many calls starting and writing at once: no "database is locked", and callers from one number
/// share one candidate, exactly one of them new.
async fn concurrent_calls(h: Harness) {
    let (_, key) = h.workspace().await;
    let r = h.receptionist(&key, &unique_phone()).await;
    let mut calls = Vec::new();
    for i in 0..12 {
        let from = if i % 2 == 0 {
            "+15558880000".to_string()
        } else {
            format!("+1555888{i:04}")
        };
        calls.push(accept(&h, &r, &from, "test-node").await);
    }
    let tasks: Vec<_> = calls
        .iter()
        .cloned()
        .map(|c| {
            let store = h.store.clone();
            tokio::spawn(async move {
                let started = store
                    .start_call(&c.id, "MZ", c.accepted_at_ms, "recordings/c.wav")
                    .await
                    .unwrap();
                for seq in 0..5 {
                    store
                        .append_events(
                            &c.id,
                            seq * 2,
                            &[
                                line(Speaker::Caller, "hello", 0, 10),
                                CallEvent::Name {
                                    name: format!("Caller {seq}"),
                                },
                            ],
                        )
                        .await
                        .unwrap();
                }
                store
                    .finish_call(&c.id, c.accepted_at_ms + 10, 10, EndReason::Completed)
                    .await
                    .unwrap();
                (c.from_number, started)
            })
        })
        .collect();
    let mut shared = Vec::new();
    for task in tasks {
        let (from, started) = task.await.unwrap();
        if from == "+15558880000" {
            shared.push(started);
        } else {
            assert!(!started.returning_caller);
        }
    }
    assert_eq!(shared.iter().filter(|s| !s.returning_caller).count(), 1);
    assert!(
        shared
            .iter()
            .all(|s| s.candidate_id == shared[0].candidate_id)
    );
    let (_, list) = h.get("/api/v1/candidates", &key).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 7);
    let (_, detail) = h.get(&format!("/api/v1/calls/{}", calls[3].id), &key).await;
    assert_eq!(detail["transcript"].as_array().unwrap().len(), 5);
    assert_eq!(detail["name"], "Caller 4");
}

/// The server's event writer gathers every call's events into one transaction
/// (`Store::append_events_batch`): each call's as `append_events` stores them, all or nothing.
async fn events_of_many_calls_go_in_one_transaction(h: Harness) {
    let (_, key) = h.workspace().await;
    let r = h.receptionist(&key, &unique_phone()).await;
    let mut calls = Vec::new();
    for i in 0..3 {
        let c = accept(&h, &r, &format!("+1555777{i:04}"), "test-node").await;
        h.store
            .start_call(&c.id, "MZ", c.accepted_at_ms, "recordings/c.wav")
            .await
            .unwrap();
        calls.push(c);
    }
    // more rows than one multi-row insert takes (200), across calls
    let many: Vec<CallEvent> = (0..450)
        .map(|i| line(Speaker::Caller, &format!("line {i}"), i, i + 1))
        .collect();
    let named = |name: &str| {
        vec![
            line(Speaker::Caller, name, 0, 10),
            CallEvent::Name { name: name.into() },
        ]
    };
    let (ann, bo) = (named("Ann Lee"), named("Bo Chan"));
    let batch = [
        EventBatch {
            call_id: &calls[0].id,
            first_seq: 0,
            events: &ann,
        },
        EventBatch {
            call_id: &calls[1].id,
            first_seq: 0,
            events: &bo,
        },
        EventBatch {
            call_id: &calls[2].id,
            first_seq: 0,
            events: &many,
        },
    ];
    h.store.append_events_batch(&batch).await.unwrap();
    // retried: nothing changes, and a replayed name does not overwrite a later one
    let later = [CallEvent::Name {
        name: "Ann Marie Lee".into(),
    }];
    h.store
        .append_events(&calls[0].id, 2, &later)
        .await
        .unwrap();
    h.store.append_events_batch(&batch).await.unwrap();
    let detail = |i: usize| {
        let path = format!("/api/v1/calls/{}", calls[i].id);
        let (h, key) = (&h, &key);
        async move { h.get(&path, key).await.1 }
    };
    assert_eq!(detail(0).await["name"], "Ann Marie Lee");
    assert_eq!(detail(1).await["name"], "Bo Chan");
    let third = detail(2).await;
    let transcript = third["transcript"].as_array().unwrap();
    assert_eq!(transcript.len(), 450);
    assert_eq!(transcript[449]["text"], "line 449");

    // a batch naming an unknown call stores none of it
    let more = [line(Speaker::Caller, "after", 20, 30)];
    let refused = h
        .store
        .append_events_batch(&[
            EventBatch {
                call_id: &calls[1].id,
                first_seq: 2,
                events: &more,
            },
            EventBatch {
                call_id: "no-such-call",
                first_seq: 0,
                events: &more,
            },
        ])
        .await;
    assert!(matches!(refused, Err(StoreError::NotFound)), "{refused:?}");
    assert_eq!(detail(1).await["transcript"].as_array().unwrap().len(), 1);
    // the usual batch (lines only, one insert's worth) is one statement, stored once when retried
    let (one, two) = (
        [line(Speaker::Caller, "one", 20, 30)],
        [
            line(Speaker::Caller, "two", 20, 30),
            line(Speaker::Caller, "three", 30, 40),
        ],
    );
    let plain = [
        EventBatch {
            call_id: &calls[0].id,
            first_seq: 3,
            events: &one,
        },
        EventBatch {
            call_id: &calls[1].id,
            first_seq: 2,
            events: &two,
        },
    ];
    h.store.append_events_batch(&plain).await.unwrap();
    h.store.append_events_batch(&plain).await.unwrap();
    assert_eq!(detail(0).await["transcript"].as_array().unwrap().len(), 2);
    let second = detail(1).await;
    let transcript = second["transcript"].as_array().unwrap();
    assert_eq!(transcript.len(), 3);
    assert_eq!(transcript[2]["text"], "three");
    // an empty batch is nothing to do
    h.store.append_events_batch(&[]).await.unwrap();
}

/// The server's event writer (`server/persist.rs`): calls handing events over together share a
/// transaction; when one of them is refused (its call is unknown), the others still go in.
async fn the_event_writer_keeps_one_calls_fault_from_the_others(h: Harness) {
    use receptionist::server::persist::{EventWriter, GROUP_WINDOW};
    let (_, key) = h.workspace().await;
    let r = h.receptionist(&key, &unique_phone()).await;
    let c = accept(&h, &r, "+15557770100", "test-node").await;
    h.store
        .start_call(&c.id, "MZ", c.accepted_at_ms, "recordings/c.wav")
        .await
        .unwrap();
    let writer = EventWriter::start(h.store.clone());
    let events = || vec![line(Speaker::Caller, "hello", 0, 10)];
    let (known, unknown, again) = tokio::join!(
        writer.append(&c.id, 0, events(), false),
        writer.append("no-such-call", 0, events(), false),
        writer.append(&c.id, 0, events(), false),
    );
    known.unwrap();
    again.unwrap();
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");
    let (_, detail) = h.get(&format!("/api/v1/calls/{}", c.id), &key).await;
    assert_eq!(detail["transcript"].as_array().unwrap().len(), 1);
    // after its window, a lone call's events go in on their own
    let gathered = std::time::Instant::now();
    writer
        .append(&c.id, 1, vec![line(Speaker::Agent, "Hi.", 20, 30)], false)
        .await
        .unwrap();
    assert!(gathered.elapsed() >= GROUP_WINDOW);
    let (_, detail) = h.get(&format!("/api/v1/calls/{}", c.id), &key).await;
    assert_eq!(detail["transcript"].as_array().unwrap().len(), 2);
    // a call's last events (its end waits for them) do not wait out the window
    let last = std::time::Instant::now();
    writer
        .append(&c.id, 2, vec![line(Speaker::Agent, "Bye.", 40, 50)], true)
        .await
        .unwrap();
    assert!(
        last.elapsed() < GROUP_WINDOW,
        "the last events waited {:?}",
        last.elapsed()
    );
    let (_, detail) = h.get(&format!("/api/v1/calls/{}", c.id), &key).await;
    assert_eq!(detail["transcript"].as_array().unwrap().len(), 3);
}
