//! Analytics (`GET /api/v1/analytics`), where calls end (`ended_step`), and range requests on
//! recordings, against real databases: every test body runs once on SQLite and once on PostgreSQL
//! (a fresh database per test, dropped afterwards), as in tests/api.rs.
//!
//! Rows are built through the store's public functions; only the candidate columns and the
//! evaluations that the after-call pipeline will write are set with raw SQL.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use sqlx::Connection;
use tower::ServiceExt;

use receptionist::model::{
    CallEvent, DisclosureKind, DisclosureRecord, EndReason, Speaker, TranscriptLine,
};
use receptionist::store::{self, NewCall, Role, StoreError};

#[macro_use]
mod common;

use common::harness::Harness;

both_databases!(
    totals_and_per_receptionist,
    window_boundaries,
    ended_steps_are_recorded_for_drop_off,
    validation_errors,
    workspaces_are_isolated_and_viewers_read,
    recording_ranges,
);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// 2024-05-01T00:00:00Z.
const MAY_1: i64 = 1_714_521_600_000;
const HOUR: i64 = 60 * 60 * 1000;
const DAY: i64 = 24 * HOUR;

impl Harness {
    async fn request(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        headers: &[(header::HeaderName, &str)],
    ) -> Response {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        for (name, value) in headers {
            req = req.header(name, *value);
        }
        self.app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    /// A receptionist with `questions` yes/no questions (all three disclosures, location on).
    async fn receptionist_with(&self, key: &str, agent_name: &str, questions: usize) -> Value {
        let questions: Vec<Value> = (1..=questions)
            .map(|i| json!({"text": format!("Question {i}?"), "kind": "yes_no"}))
            .collect();
        let response = self
            .app
            .clone()
            .oneshot(
                Request::builder()
                    .method(Method::POST)
                    .uri("/api/v1/receptionists")
                    .header(header::AUTHORIZATION, format!("Bearer {key}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(
                        json!({
                            "phone_number": unique_phone(),
                            "agent_name": agent_name,
                            "intro_message": "Hi, thanks for calling!",
                            "questions": questions,
                        })
                        .to_string(),
                    ))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        serde_json::from_slice(&body_bytes(response).await).unwrap()
    }

    /// Accept a call from `from` to `r` at `accepted_at_ms`.
    async fn accept_at(&self, r: &Value, from: &str, accepted_at_ms: i64) -> NewCall {
        let settings = self
            .store
            .receptionist_by_phone(r["phone_number"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap()
            .settings;
        let call = NewCall {
            id: uuid::Uuid::new_v4().to_string(),
            carrier: "twilio".into(),
            workspace_id: r["workspace_id"].as_str().unwrap().into(),
            receptionist_id: r["id"].as_str().unwrap().into(),
            call_sid: format!("CA{}", uuid::Uuid::new_v4().simple()),
            from_number: from.into(),
            to_number: settings.phone_number.clone(),
            forwarded_from: None,
            token_hash: "hash".into(),
            node_id: "test-node".into(),
            accepted_at_ms,
            settings,
        };
        assert_eq!(self.store.accept_call(&call).await.unwrap(), call.id);
        call
    }

    /// Accept and start a call; returns it and its candidate's id.
    async fn start(&self, r: &Value, from: &str, accepted_at_ms: i64) -> (NewCall, String) {
        let call = self.accept_at(r, from, accepted_at_ms).await;
        let started = self
            .store
            .start_call(&call.id, "MZ", accepted_at_ms + 500, "recordings/c.wav")
            .await
            .unwrap();
        (call, started.candidate_id)
    }

    /// Store `events`, finish the call, and record where it ended as the lead's pipeline does
    /// (unless `record_step` is false: a call finished before steps were recorded). Returns the
    /// step.
    async fn finish(
        &self,
        call: &NewCall,
        events: &[CallEvent],
        reason: EndReason,
        duration_ms: i64,
        record_step: bool,
    ) -> String {
        self.store.append_events(&call.id, 0, events).await.unwrap();
        self.store
            .finish_call(
                &call.id,
                call.accepted_at_ms + duration_ms,
                duration_ms,
                reason,
            )
            .await
            .unwrap();
        let row = self.store.call_by_id(&call.id).await.unwrap().unwrap();
        let stored = self.store.load_events(&call.id).await.unwrap();
        let step = store::ended_step(&row.settings, &stored, reason);
        if record_step {
            self.store
                .set_call_ended_step(&call.id, &step)
                .await
                .unwrap();
        }
        step
    }

    /// Statements on a separate connection: the after-call pipeline's columns.
    async fn sql(&self, statements: &[String]) {
        match self.store.backend() {
            store::Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.db_url).await.unwrap();
                for s in statements {
                    sqlx::query(sqlx::AssertSqlSafe(s.as_str()))
                        .execute(&mut conn)
                        .await
                        .unwrap();
                }
                conn.close().await.unwrap();
            }
            store::Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.db_url).await.unwrap();
                for s in statements {
                    sqlx::query(sqlx::AssertSqlSafe(s.as_str()))
                        .execute(&mut conn)
                        .await
                        .unwrap();
                }
                conn.close().await.unwrap();
            }
        }
    }

    /// Set a candidate's pipeline columns (`column = value` SQL fragments) and optionally add an
    /// evaluation of it.
    async fn pipeline(&self, candidate_id: &str, r: &Value, set: &str, evaluated: Option<f64>) {
        let mut statements = vec![format!(
            "UPDATE candidates SET {set} WHERE id = '{candidate_id}'"
        )];
        if let Some(score) = evaluated {
            statements.push(format!(
                "INSERT INTO evaluations (id, candidate_id, receptionist_id, score, \
                 dealbreaker_failed, details, summary, created_at) VALUES \
                 ('{}', '{candidate_id}', '{}', {score}, FALSE, '[]', '', {MAY_1})",
                uuid::Uuid::new_v4(),
                r["id"].as_str().unwrap(),
            ));
        }
        self.sql(&statements).await;
    }
}

async fn body_bytes(response: Response) -> Vec<u8> {
    axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec()
}

fn unique_phone() -> String {
    format!("+1555{:07}", rand::random::<u32>() % 10_000_000)
}

fn agent(text: &str) -> CallEvent {
    CallEvent::Transcript(TranscriptLine {
        speaker: Speaker::Agent,
        text: text.into(),
        start_ms: 0,
        end_ms: 1_000,
        interrupted: false,
        dtmf: false,
    })
}

fn disclosures(played_in_full: bool) -> Vec<CallEvent> {
    [
        (DisclosureKind::Ai, "I am an AI."),
        (DisclosureKind::Recording, "This call is recorded."),
        (DisclosureKind::EVerify, "We use E-Verify."),
    ]
    .into_iter()
    .map(|(kind, text)| {
        CallEvent::Disclosure(DisclosureRecord {
            kind,
            text: text.into(),
            played_in_full,
        })
    })
    .collect()
}

/// Intro and disclosures heard, name and location given: the call is at its first question.
fn up_to_questions() -> Vec<CallEvent> {
    let mut events = vec![agent("Hi, thanks for calling!")];
    events.extend(disclosures(true));
    events.push(CallEvent::Name {
        name: "Ann Lee".into(),
    });
    events.push(CallEvent::Location {
        location: "Chicago".into(),
    });
    events
}

/// The metrics object for `receptionist_id` in an analytics response.
fn row<'a>(body: &'a Value, receptionist_id: &str) -> &'a Value {
    body["receptionists"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["receptionist_id"] == receptionist_id)
        .unwrap_or_else(|| panic!("{receptionist_id} not listed: {body}"))
}

/// Only the metric fields of an object (drops the receptionist's identity).
fn metrics(v: &Value) -> Value {
    let mut m = v.clone();
    let obj = m.as_object_mut().unwrap();
    for k in ["receptionist_id", "agent_name", "phone_number"] {
        obj.remove(k);
    }
    m
}

fn zeros() -> Value {
    json!({
        "calls": 0, "completed_calls": 0, "average_duration_ms": null, "candidates": 0,
        "confirmed": 0, "evaluated": 0, "approved": 0, "rejected": 0, "ingested": 0,
        "average_score": null, "drop_off": {},
    })
}

/// The fixed data set of workspace A, in May 2024. Returns (admin key, [r1, r2, r3] ids).
///
/// | call | receptionist | caller | accepted | end | duration | step |
/// | 1 | R1 | A | May 1 00:00:00.000 | completed | 60 s | completed |
/// | 2 | R1 | B | May 2 10:00 | caller hang-up | 30 s | question_1 |
/// | 3 | R1 | A | May 3 10:00 | silence | 20 s | NULL (unknown) |
/// | 4 | R1 | C | May 3 12:00 | (in progress) | | |
/// | 5 | R1 | (never started) | May 4 23:59:59.999 | | | |
/// | 6 | R2 | B | May 2 12:00 | completed | 90 s | completed |
/// | 7 | R2 | D | Apr 30 23:59:59.999 | completed | 40 s | completed |
/// | 8 | R2 | E | May 5 00:00:00.000 | disconnected | 10 s | intro |
///
/// R3 has no calls. Candidates: A confirmed, evaluated, approved, ingested, score 80; B
/// confirmed, evaluated, rejected, score 60; C nothing; D confirmed, score 10; E score 100.
async fn data_set(h: &Harness) -> (String, [String; 3]) {
    let (_, key) = h.workspace().await;
    let r1 = h.receptionist_with(&key, "Chloe", 1).await;
    let r2 = h.receptionist_with(&key, "Max", 2).await;
    let r3 = h.receptionist_with(&key, "Idle", 0).await;

    let (c1, a) = h.start(&r1, "+15550000001", MAY_1).await;
    let step = h
        .finish(&c1, &up_to_questions(), EndReason::Completed, 60_000, true)
        .await;
    assert_eq!(step, "completed");
    let (c2, b) = h.start(&r1, "+15550000002", MAY_1 + DAY + 10 * HOUR).await;
    let step = h
        .finish(
            &c2,
            &up_to_questions(),
            EndReason::CallerHangup,
            30_000,
            true,
        )
        .await;
    assert_eq!(step, "question_1");
    let (c3, a_again) = h
        .start(&r1, "+15550000001", MAY_1 + 2 * DAY + 10 * HOUR)
        .await;
    assert_eq!(a_again, a);
    h.finish(&c3, &[], EndReason::Silence, 20_000, false).await;
    let (_c4, _c) = h
        .start(&r1, "+15550000003", MAY_1 + 2 * DAY + 12 * HOUR)
        .await;
    h.accept_at(&r1, "+15550000009", MAY_1 + 4 * DAY - 1).await;

    let (c6, b_again) = h.start(&r2, "+15550000002", MAY_1 + DAY + 12 * HOUR).await;
    assert_eq!(b_again, b);
    h.finish(&c6, &[], EndReason::Completed, 90_000, true).await;
    let (c7, d) = h.start(&r2, "+15550000004", MAY_1 - 1).await;
    h.finish(&c7, &[], EndReason::Completed, 40_000, true).await;
    let (c8, e) = h.start(&r2, "+15550000005", MAY_1 + 4 * DAY).await;
    let step = h
        .finish(&c8, &[], EndReason::Disconnected, 10_000, true)
        .await;
    assert_eq!(step, "intro");

    h.pipeline(
        &a,
        &r1,
        "confirmed_at = 1, review = 'approved', ingested_at = 2, latest_score = 80, \
         status = 'evaluated'",
        Some(80.0),
    )
    .await;
    h.pipeline(
        &b,
        &r1,
        "confirmed_at = 1, review = 'rejected', latest_score = 60, status = 'evaluated'",
        Some(60.0),
    )
    .await;
    h.pipeline(&d, &r2, "confirmed_at = 1, latest_score = 10", None)
        .await;
    h.pipeline(&e, &r2, "latest_score = 100", None).await;

    let id = |r: &Value| r["id"].as_str().unwrap().to_string();
    (key, [id(&r1), id(&r2), id(&r3)])
}

// ---------------------------------------------------------------------------------------------
// Analytics
// ---------------------------------------------------------------------------------------------

async fn totals_and_per_receptionist(h: Harness) {
    let (key, [r1, r2, r3]) = data_set(&h).await;
    let (status, body) = h
        .get("/api/v1/analytics?from=2024-05-01&to=2024-05-04", &key)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["from"], "2024-05-01T00:00:00Z");
    assert_eq!(body["to"], "2024-05-04T23:59:59.999Z");

    // Calls 1-6.
    assert_eq!(
        body["total"],
        json!({
            "calls": 6, "completed_calls": 2, "average_duration_ms": 50_000,
            "candidates": 3, "confirmed": 2, "evaluated": 2, "approved": 1, "rejected": 1,
            "ingested": 1, "average_score": 70.0,
            "drop_off": {"completed": 2, "question_1": 1, "unknown": 1},
        })
    );
    let receptionists = body["receptionists"].as_array().unwrap();
    assert_eq!(receptionists.len(), 3);
    assert_eq!(
        receptionists[0]["receptionist_id"],
        r1.as_str(),
        "oldest first"
    );
    let first = row(&body, &r1);
    assert_eq!(first["agent_name"], "Chloe");
    assert!(first["phone_number"].as_str().unwrap().starts_with("+1555"));
    assert_eq!(
        metrics(first),
        json!({
            "calls": 5, "completed_calls": 1, "average_duration_ms": 36_667,
            "candidates": 3, "confirmed": 2, "evaluated": 2, "approved": 1, "rejected": 1,
            "ingested": 1, "average_score": 70.0,
            "drop_off": {"completed": 1, "question_1": 1, "unknown": 1},
        })
    );
    // B called both receptionists: counted under each, once in the total.
    assert_eq!(
        metrics(row(&body, &r2)),
        json!({
            "calls": 1, "completed_calls": 1, "average_duration_ms": 90_000,
            "candidates": 1, "confirmed": 1, "evaluated": 1, "approved": 0, "rejected": 1,
            "ingested": 0, "average_score": 60.0,
            "drop_off": {"completed": 1},
        })
    );
    assert_eq!(metrics(row(&body, &r3)), zeros(), "listed with zeros");

    // One receptionist: the same row, and the total is that row.
    let (status, one) = h
        .get(
            &format!("/api/v1/analytics?from=2024-05-01&to=2024-05-04&receptionist_id={r2}"),
            &key,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["receptionists"].as_array().unwrap().len(), 1);
    assert_eq!(one["receptionists"][0], *row(&body, &r2));
    assert_eq!(one["total"], metrics(row(&body, &r2)));
}

async fn window_boundaries(h: Harness) {
    let (key, [r1, r2, _]) = data_set(&h).await;
    let calls = |body: &Value, r: &str| row(body, r)["calls"].as_i64().unwrap();

    // Whole days, both inclusive: May 1 00:00:00.000 and May 4 23:59:59.999 are in.
    let (_, body) = h
        .get("/api/v1/analytics?from=2024-05-01&to=2024-05-04", &key)
        .await;
    assert_eq!((calls(&body, &r1), calls(&body, &r2)), (5, 1));
    // A millisecond later on each side.
    let (_, body) = h
        .get(
            "/api/v1/analytics?from=2024-05-01T00:00:00.001Z&to=2024-05-04T23:59:59.998Z",
            &key,
        )
        .await;
    assert_eq!((calls(&body, &r1), calls(&body, &r2)), (3, 1));
    assert_eq!(body["total"]["candidates"], 3, "A still called on May 3");
    // RFC 3339 ends are inclusive too: call 7 at 23:59:59.999 and call 8 at 00:00.
    let (_, body) = h
        .get(
            "/api/v1/analytics?from=2024-04-30T23:59:59.999Z&to=2024-05-05T00:00:00Z",
            &key,
        )
        .await;
    assert_eq!((calls(&body, &r1), calls(&body, &r2)), (5, 3));
    assert_eq!(
        body["total"]["drop_off"],
        json!({"completed": 3, "question_1": 1, "unknown": 1, "intro": 1})
    );
    assert_eq!(body["total"]["candidates"], 5);
    assert_eq!(body["total"]["average_score"], json!(250.0 / 4.0));
    // A single day.
    let (_, body) = h
        .get("/api/v1/analytics?from=2024-05-02&to=2024-05-02", &key)
        .await;
    assert_eq!((calls(&body, &r1), calls(&body, &r2)), (1, 1));
    assert_eq!(body["total"]["candidates"], 1, "B, once");
    // Only `to`: the 30 days before it.
    let (_, body) = h.get("/api/v1/analytics?to=2024-05-01", &key).await;
    assert_eq!(body["from"], "2024-04-01T23:59:59.999Z");
    assert_eq!((calls(&body, &r1), calls(&body, &r2)), (1, 1));
    // Only `from`: up to now.
    let (_, body) = h.get("/api/v1/analytics?from=2024-05-03", &key).await;
    assert_eq!((calls(&body, &r1), calls(&body, &r2)), (3, 1));
    // Default: the last 30 days, in which this data set has nothing.
    let (status, body) = h.get("/api/v1/analytics", &key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["total"], zeros());
    assert_eq!(body["receptionists"].as_array().unwrap().len(), 3);
    let from = time::OffsetDateTime::parse(
        body["from"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let to = time::OffsetDateTime::parse(
        body["to"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(to - from, time::Duration::days(30));
    assert!((time::OffsetDateTime::now_utc() - to).abs() < time::Duration::minutes(5));
}

async fn ended_steps_are_recorded_for_drop_off(h: Harness) {
    let (_, key) = h.workspace().await;
    let r = h.receptionist_with(&key, "Chloe", 2).await;
    let now = store::now_ms();
    let mut expected = Vec::new();

    // Hung up during the intro: the engine records the unplayed disclosures too.
    let (call, _) = h.start(&r, "+15550000001", now - 9_000).await;
    let mut events = vec![CallEvent::Transcript(TranscriptLine {
        speaker: Speaker::Agent,
        text: "Hi, thanks".into(),
        start_ms: 0,
        end_ms: 800,
        interrupted: true,
        dtmf: false,
    })];
    events.extend(disclosures(false));
    expected.push(
        h.finish(&call, &events, EndReason::CallerHangup, 1_000, true)
            .await,
    );
    // During the disclosures.
    let (call, _) = h.start(&r, "+15550000002", now - 8_000).await;
    let mut events = vec![agent("Hi, thanks for calling!")];
    events.extend(disclosures(false));
    expected.push(
        h.finish(&call, &events, EndReason::CallerHangup, 5_000, true)
            .await,
    );
    // At the name, the location, each question, the caller's questions.
    let mut events = vec![agent("Hi, thanks for calling!")];
    events.extend(disclosures(true));
    let (call, _) = h.start(&r, "+15550000003", now - 7_000).await;
    expected.push(
        h.finish(&call, &events, EndReason::Silence, 9_000, true)
            .await,
    );
    let events = &up_to_questions()[..5];
    let (call, _) = h.start(&r, "+15550000004", now - 6_000).await;
    expected.push(
        h.finish(&call, events, EndReason::Disconnected, 9_000, true)
            .await,
    );
    let mut events = up_to_questions();
    for i in 0..3 {
        let (call, _) = h.start(&r, &format!("+1555000001{i}"), now - 5_000).await;
        expected.push(
            h.finish(&call, &events, EndReason::MaxDuration, 9_000, true)
                .await,
        );
        events.push(CallEvent::Answer(receptionist::model::AnswerRecord {
            question_index: i,
            question: format!("Question {}?", i + 1),
            kind: receptionist::model::QuestionKind::YesNo,
            raw: "yes".into(),
            value: receptionist::model::AnswerValue::Yes,
            attempts: 1,
            via_dtmf: false,
            meets_expected: None,
            dealbreaker_failed: false,
        }));
    }
    let (call, _) = h.start(&r, "+15550000020", now - 4_000).await;
    expected.push(
        h.finish(&call, &events, EndReason::Completed, 9_000, true)
            .await,
    );
    // Not ended: not in the drop-off.
    h.start(&r, "+15550000021", now - 3_000).await;
    assert_eq!(
        expected,
        [
            "intro",
            "disclosures",
            "name",
            "location",
            "question_1",
            "question_2",
            "caller_questions",
            "completed"
        ]
    );

    let (status, body) = h.get("/api/v1/analytics", &key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"]["calls"], 9);
    assert_eq!(
        body["total"]["drop_off"],
        json!({
            "intro": 1, "disclosures": 1, "name": 1, "location": 1, "question_1": 1,
            "question_2": 1, "caller_questions": 1, "completed": 1,
        })
    );

    assert!(matches!(
        h.store.set_call_ended_step("no-such-call", "intro").await,
        Err(StoreError::NotFound)
    ));
}

async fn validation_errors(h: Harness) {
    let (_, key) = h.workspace().await;
    h.receptionist_with(&key, "Chloe", 0).await;
    for (query, field) in [
        ("from=yesterday", "from"),
        ("to=2024-02-30", "to"),
        ("to=2024-05-01T00:00:00", "to"),
        ("from=1714521600000", "from"),
        ("from=2024-05-02&to=2024-05-01", "from"),
        (
            "from=2024-05-01T00:00:00.001Z&to=2024-05-01T00:00:00Z",
            "from",
        ),
    ] {
        let (status, body) = h.get(&format!("/api/v1/analytics?{query}"), &key).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid", "{query}");
        assert_eq!(body["error"]["field"], field, "{query}");
    }
    let (status, body) = h.get("/api/v1/analytics?form=2024-05-01", &key).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "bad_request");
    let (status, body) = h.get("/api/v1/analytics?receptionist_id=nope", &key).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let response = h.request(Method::GET, "/api/v1/analytics", None, &[]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // Empty values count as absent.
    let (status, body) = h
        .get("/api/v1/analytics?from=&to=&receptionist_id=", &key)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn workspaces_are_isolated_and_viewers_read(h: Harness) {
    let (ws_a, key_a) = h.workspace().await;
    let (_, key_b) = h.workspace().await;
    let viewer_a = h.store.create_api_key(&ws_a, Role::Viewer).await.unwrap();
    let ra = h.receptionist_with(&key_a, "Chloe", 0).await;
    let rb = h.receptionist_with(&key_b, "Bob", 0).await;
    let now = store::now_ms();
    let (call, _) = h.start(&ra, "+15550000001", now - 60_000).await;
    h.finish(&call, &[], EndReason::Completed, 30_000, true)
        .await;
    for _ in 0..2 {
        h.accept_at(&rb, "+15550000002", now - 30_000).await;
    }

    let (status, a) = h.get("/api/v1/analytics", &key_a).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(a["total"]["calls"], 1);
    assert_eq!(a["receptionists"].as_array().unwrap().len(), 1);
    let (status, b) = h.get("/api/v1/analytics", &key_b).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(b["total"]["calls"], 2);
    assert_eq!(b["total"]["candidates"], 0, "never started");
    assert_eq!(b["receptionists"][0]["receptionist_id"], rb["id"]);
    assert_eq!(b["receptionists"].as_array().unwrap().len(), 1);

    // Another workspace's receptionist is not found.
    for (key, other) in [(&key_b, &ra), (&key_a, &rb)] {
        let (status, body) = h
            .get(
                &format!(
                    "/api/v1/analytics?receptionist_id={}",
                    other["id"].as_str().unwrap()
                ),
                key,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"]["code"], "not_found");
    }

    // A viewer key reads the same numbers.
    let (status, v) = h.get("/api/v1/analytics", &viewer_a).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["total"], a["total"]);
    assert_eq!(v["receptionists"], a["receptionists"]);
}

// ---------------------------------------------------------------------------------------------
// Recordings: range requests
// ---------------------------------------------------------------------------------------------

async fn recording_ranges(h: Harness) {
    let (ws, key) = h.workspace().await;
    let viewer = h.store.create_api_key(&ws, Role::Viewer).await.unwrap();
    let (_, other_key) = h.workspace().await;
    let r = h.receptionist_with(&key, "Chloe", 0).await;
    let (call, _) = h.start(&r, "+15550000001", store::now_ms()).await;
    let wav: Vec<u8> = b"RIFF\x24\x00\x00\x00WAVEfmt "
        .iter()
        .copied()
        .chain((0..200_000u32).map(|i| (i % 251) as u8))
        .collect();
    let len = wav.len();
    std::fs::create_dir_all(h.data_dir.join("recordings")).unwrap();
    std::fs::write(h.data_dir.join("recordings/c.wav"), &wav).unwrap();
    let path = format!("/api/v1/calls/{}/recording", call.id);
    let disposition = format!("inline; filename=\"call-{}.wav\"", call.id);
    let get = |range: Option<&'static str>, method: Method| {
        let (h, path, key) = (h.clone(), path.clone(), key.clone());
        async move {
            let headers: Vec<_> = range.map(|r| (header::RANGE, r)).into_iter().collect();
            let response = h.request(method, &path, Some(&key), &headers).await;
            let status = response.status();
            let headers: HeaderMap = response.headers().clone();
            (status, headers, body_bytes(response).await)
        }
    };

    // No Range: the whole file, and a note that ranges work.
    let (status, headers, body) = get(None, Method::GET).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::ACCEPT_RANGES], "bytes");
    assert_eq!(headers[header::CONTENT_TYPE], "audio/wav");
    assert_eq!(headers[header::CONTENT_DISPOSITION], disposition.as_str());
    assert_eq!(headers[header::CONTENT_LENGTH], len.to_string().as_str());
    assert_eq!(body, wav);

    // A closed range.
    let (status, headers, body) = get(Some("bytes=100-1099"), Method::GET).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        headers[header::CONTENT_RANGE],
        format!("bytes 100-1099/{len}").as_str()
    );
    assert_eq!(headers[header::CONTENT_LENGTH], "1000");
    assert_eq!(headers[header::CONTENT_TYPE], "audio/wav");
    assert_eq!(headers[header::CONTENT_DISPOSITION], disposition.as_str());
    assert_eq!(body, &wav[100..1100]);

    // Open-ended and suffix ranges.
    let (status, headers, body) = get(Some("bytes=199990-"), Method::GET).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        headers[header::CONTENT_RANGE],
        format!("bytes 199990-{}/{len}", len - 1).as_str()
    );
    assert_eq!(body, &wav[199_990..]);
    let (status, headers, body) = get(Some("bytes=-500"), Method::GET).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        headers[header::CONTENT_RANGE],
        format!("bytes {}-{}/{len}", len - 500, len - 1).as_str()
    );
    assert_eq!(body, &wav[len - 500..]);

    // Unsatisfiable: past the end, or several ranges at once (not served).
    for range in ["bytes=300000-", "bytes=0-1,5-6"] {
        let (status, headers, _) = get(Some(range), Method::GET).await;
        assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(
            headers[header::CONTENT_RANGE],
            format!("bytes */{len}").as_str(),
            "{range}"
        );
        assert!(headers.get(header::CONTENT_TYPE).is_none(), "{range}");
    }

    // HEAD: the headers of GET, no body.
    let (status, headers, body) = get(None, Method::HEAD).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::ACCEPT_RANGES], "bytes");
    assert_eq!(headers[header::CONTENT_TYPE], "audio/wav");
    assert_eq!(headers[header::CONTENT_LENGTH], len.to_string().as_str());
    assert!(body.is_empty());
    let (status, headers, body) = get(Some("bytes=0-43"), Method::HEAD).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        headers[header::CONTENT_RANGE],
        format!("bytes 0-43/{len}").as_str()
    );
    assert!(body.is_empty());

    // Viewers may listen; other workspaces may not.
    let response = h
        .request(
            Method::GET,
            &path,
            Some(&viewer),
            &[(header::RANGE, "bytes=0-3")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(body_bytes(response).await, b"RIFF");
    let response = h
        .request(
            Method::GET,
            &path,
            Some(&other_key),
            &[(header::RANGE, "bytes=0-3")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
