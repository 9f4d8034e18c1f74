//! End to end: the real server (axum on 127.0.0.1:0 in this process, or the real binary where a
//! process must die) and a real WebSocket client acting as the carrier (the fake carrier, driven by
//! the simulator or by hand: every carrier in `call_on_every_carrier`, Twilio elsewhere), on real
//! databases.
//!
//! - Call-flow tests run once on SQLite (a file in a temporary directory) and once on PostgreSQL
//!   (a fresh database per test, dropped afterwards; `TEST_POSTGRES_URL`, default
//!   `postgres://postgres@127.0.0.1:5432/postgres`; the PostgreSQL tests fail when it is down).
//! - Every carrier request is signed with that carrier's credential ([`credentials`]).
//! - Full calls use the offline backends (flite + PocketSphinx, loaded once per test binary) and
//!   the caller recordings in `audio-fixtures/`; robustness tests use the scripted backends.
//! - Calls run in real time (agent audio is paced at real-time speed). Nothing here sleeps to wait
//!   for something that can be awaited; the end of a call is polled from the API with a bound.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use receptionist::backends::{
    BackendError, Backends, BoxFuture, ScriptedAnswers, ScriptedTts, SpeechToText, SttSession,
};
use receptionist::engine::audio::g711;
use receptionist::engine::dialogue::{APOLOGY, FAILURE_GOODBYE};
use receptionist::engine::media::Carrier;
use receptionist::server::carriers::client::{
    CarrierAction, Credentials, InboundCall, parse_answer, voice_request,
};
use receptionist::server::twilio::{BUSY_MESSAGE, CLOSED_MESSAGE, signature};
use receptionist::server::{AppState, router};
use receptionist::store::{CallStatus, Store};
use receptionist::testing::{CallInfo, FakeCarrier};
use receptionist::tools::simulate::{
    CallerTurn, SimOptions, read_wav_8k, receive, send_out, simulate_call,
};

use common::{Backend, TestDatabase, create_workspace, free_port, trials, wait_healthy};

const AUTH_TOKEN: &str = "e2e-twilio-auth-token";

/// What every carrier signs with here: Twilio with [`AUTH_TOKEN`], the others with the test ones.
fn credentials() -> Credentials {
    Credentials {
        twilio_auth_token: AUTH_TOKEN.into(),
        ..Credentials::test()
    }
}
/// 20 ms of µ-law 8 kHz.
const FRAME: usize = 160;
const SILENCE: [u8; FRAME] = [0xFF; FRAME];

/// flite + PocketSphinx, loaded once for the whole binary (about 0.5 s and 200 MB).
static OFFLINE: LazyLock<Backends> =
    LazyLock::new(|| Backends::offline().expect("flite and PocketSphinx must load"));

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// This binary's tests (`harness = false`, see `common::trials`): for each body `name(Backend)`,
/// `name::sqlite` and `name::postgres`, and the tests of no database.
fn main() -> std::process::ExitCode {
    let mut tests = Vec::new();
    macro_rules! both_databases {
        ($($name:ident),* $(,)?) => {$(
            tests.extend(trials::on_both_databases(stringify!($name), |b| Box::pin($name(b))));
        )*};
    }
    // the two long full calls (about 100 s each) first, so that nothing waits behind them
    both_databases!(
        // the call flow
        answered_to_the_end_then_welcomed_back,
        after_the_call_texts_confirms_evaluates_ingests_and_tells,
        caller_hangs_up_mid_sentence,
        call_on_every_carrier,
        dropped_socket_is_disconnected,
        failing_speech_recognition_apologises,
        // the voice webhook
        webhook_signatures_and_routing,
        busy_at_max_calls,
        // the dashboard's test call
        browser_call_runs_the_same_engine,
        // the media socket
        broken_sessions_end_alone,
        media_before_start_and_unknown_events,
        start_must_match_an_accepted_call,
    );
    tests.push(trials::test(
        "server_killed_mid_call_is_interrupted_on_restart",
        || Box::pin(server_killed_mid_call_is_interrupted_on_restart()),
    ));
    tests.push(trials::test(
        "silent_socket_is_closed_after_the_start_timeout",
        || Box::pin(silent_socket_is_closed_after_the_start_timeout()),
    ));
    trials::main(tests)
}

/// After a call through the Twilio media path: the confirmation text reaches Twilio's Messages
/// API, the caller replies YES on the signed SMS webhook, the candidate is confirmed, evaluated,
/// approved and ingested (invitation by text and email), and every step reaches a webhook
/// endpoint with a signature the test verifies itself.
async fn after_the_call_texts_confirms_evaluates_ingests_and_tells(backend: Backend) {
    let answers = ["my name is john smith", "yes", "three", "no thank you"];
    run(backend, Setup::scripted(answers), |s| async move {
        let receiver = common::fakes::WebhookReceiver::start().await;
        let (status, endpoint) = s
            .send(
                reqwest::Method::POST,
                "/api/v1/webhooks",
                json!({ "url": format!("{}/hooks", receiver.url), "events": [
                    "call.ended", "candidate.evaluated", "candidate.approved",
                    "candidate.rejected", "candidate.ingested", "sms.received"
                ]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{endpoint}");
        let secret = endpoint["secret"].as_str().unwrap().to_string();
        let (status, interviewer) = s
            .send(
                reqwest::Method::POST,
                "/api/v1/interviewers",
                json!({ "name": "Warehouse interview", "interview_link": "https://i.example/w" }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{interviewer}");
        let phone = unique_phone();
        let mut body = fast_receptionist(&phone);
        body["questions"] = json!([
            {"text": "Are you at least eighteen years old?", "kind": "yes_no", "expected": "yes", "dealbreaker": true},
            {"text": "How many years of warehouse experience do you have?", "kind": "number", "expected": ">= 1"}
        ]);
        body["score_threshold"] = json!(60);
        body["interviewer_ids"] = json!([interviewer["id"]]);
        body["default_interviewer_id"] = interviewer["id"].clone();
        s.receptionist(body).await;

        let caller = unique_phone();
        let mut opts = s.sim(
            &phone,
            fixtures(&["name.wav", "yes.wav", "number_three.wav", "no_questions.wav"]),
        );
        opts.from = caller.clone();
        let out = simulate_call(opts).await.unwrap();
        let call_id = out.call_id.clone().expect("the call was connected");
        let call = s.wait_for_end(&call_id).await;
        assert_eq!(call["end_reason"], "completed", "{}", transcript_text(&call));
        let candidate_id = call["candidate_id"].as_str().unwrap().to_string();

        // the confirmation text went out through Twilio's Messages API
        s.twilio.wait_for_messages(1, Duration::from_secs(30)).await;
        let text = s.twilio.messages()[0].clone();
        assert_eq!(text.to, caller);
        assert_eq!(text.from, phone);
        assert!(text.body.contains("Name: John Smith"), "{}", text.body);
        assert!(text.body.contains("Reply YES"), "{}", text.body);
        let path = format!("/api/v1/candidates/{candidate_id}");
        let (_, c) = s.get(&path).await;
        assert_eq!(c["status"], "awaiting_confirmation");
        // the recruiter adds the email the caller gave; the caller confirms
        let (status, _) = s
            .send(reqwest::Method::PATCH, &path, json!({ "email": "john@example.com" }))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(s.text(&caller, &phone, "Yes").await, StatusCode::OK);

        s.wait_until("approved and ingested", || async {
            let (_, c) = s.get(&path).await;
            c["ingested"]["interviewer_id"] == interviewer["id"]
        })
        .await;
        let (_, c) = s.get(&path).await;
        assert_eq!(c["status"], "evaluated");
        assert_eq!(c["review"], "approved");
        assert_eq!(c["evaluations"][0]["score"], 100.0);
        assert!(c["confirmed_at"].is_string());
        // the invitation, by text and by email
        s.twilio.wait_for_messages(2, Duration::from_secs(30)).await;
        let invitation = s.twilio.messages()[1].clone();
        assert_eq!(invitation.to, caller);
        assert!(invitation.body.contains("https://i.example/w"), "{}", invitation.body);
        s.smtp.wait_for_mails(1, Duration::from_secs(30)).await;
        let mail = s.smtp.mails()[0].clone();
        assert!(mail.body().contains("https://i.example/w"), "{}", mail.body());
        s.wait_until("delivery states are recorded", || async {
            let (_, c) = s.get(&path).await;
            c["messages"].as_array().unwrap().iter().filter(|m| m["status"] == "sent").count() == 2
        })
        .await;

        // every event, once, signed with the endpoint's secret
        let expected = ["call.ended", "sms.received", "candidate.evaluated", "candidate.approved", "candidate.ingested"];
        receiver.wait_for_arrivals(expected.len(), Duration::from_secs(30)).await;
        let requests = receiver.requests();
        let mut types = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for r in &requests {
            let header = r.header("x-receptionist-signature").expect("signed");
            let (t, v1) = parse_signature(header);
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
            assert!((now - t).abs() < 300, "fresh timestamp");
            use hmac::{Hmac, Mac};
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(format!("{t}.{}", r.body).as_bytes());
            let expected_sig: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(v1, expected_sig, "signature of {}", r.body);
            let event: Value = serde_json::from_str(&r.body).unwrap();
            assert!(ids.insert(event["id"].as_str().unwrap().to_string()), "unique ids");
            assert!(event["created_at"].is_string());
            types.push(event["type"].as_str().unwrap().to_string());
            if event["type"] == "candidate.ingested" {
                assert_eq!(event["data"]["candidate"]["id"], candidate_id.as_str());
                assert_eq!(event["data"]["interviewer"]["id"], interviewer["id"]);
            }
            if event["type"] == "call.ended" {
                assert_eq!(event["data"]["call_id"], call_id.as_str());
                assert_eq!(event["data"]["ended_step"], "completed");
            }
        }
        for e in expected {
            assert_eq!(types.iter().filter(|t| *t == e).count(), 1, "{e} in {types:?}");
        }
        let (_, deliveries) = s
            .get(&format!("/api/v1/webhooks/{}/deliveries", endpoint["id"].as_str().unwrap()))
            .await;
        assert_eq!(deliveries["data"].as_array().unwrap().len(), expected.len(), "{deliveries}");
    })
    .await;
}

/// The dashboard's test call: a one-use token from the API, PCM16 over a WebSocket both ways,
/// marks echoed, live transcript lines, a hang-up, and the call stored like a phone call.
async fn browser_call_runs_the_same_engine(backend: Backend) {
    run(backend, Setup::scripted(["my name is john smith"]), |s| async move {
        let phone = unique_phone();
        let r = s.receptionist(fast_receptionist(&phone)).await;
        let path = format!("/api/v1/receptionists/{}/web-calls", r["id"].as_str().unwrap());
        let (status, created) = s.send(reqwest::Method::POST, &path, json!({})).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["sample_rate"], 8000);
        let ws_path = created["ws_path"].as_str().unwrap().to_string();
        assert!(!ws_path.contains(&s.key), "never the API key in a URL");
        // a wrong token is refused before the upgrade
        let forged = ws_path.replace(created["token"].as_str().unwrap(), "00");
        assert!(tokio_tungstenite::connect_async(format!("ws://{}{forged}", s.addr)).await.is_err());

        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}{ws_path}", s.addr))
            .await
            .unwrap();
        let mut started = false;
        let mut agent_frames = 0usize;
        let mut caller_heard = None;
        let mut sent_name = false;
        let mut last_agent = Instant::now();
        let name = fixture("name.wav");
        let mut to_send: VecDeque<Vec<u8>> = VecDeque::new();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let deadline = Instant::now() + Duration::from_secs(60);
        let ended = loop {
            assert!(Instant::now() < deadline, "the browser call never ended");
            tokio::select! {
                msg = ws.next() => {
                    let Some(Ok(msg)) = msg else { panic!("socket closed before `ended`") };
                    match msg {
                        Message::Binary(pcm) => {
                            assert_eq!(pcm.len(), 320, "20 ms of PCM16 at 8 kHz");
                            agent_frames += 1;
                            last_agent = Instant::now();
                        }
                        Message::Text(text) => {
                            let v: Value = serde_json::from_str(text.as_str()).unwrap();
                            match v["type"].as_str().unwrap() {
                                "started" => {
                                    started = true;
                                    assert!(v["call_id"].is_string());
                                }
                                // echo each mark as its audio "plays"
                                "mark" => ws.send(Message::Text(text)).await.unwrap(),
                                "transcript" if v["speaker"] == "caller" => {
                                    caller_heard = Some(v["text"].as_str().unwrap().to_string());
                                    ws.send(Message::Text(r#"{"type":"hangup"}"#.into())).await.unwrap();
                                }
                                "transcript" | "clear" => {}
                                "ended" => break v,
                                other => panic!("unexpected message {other}: {v}"),
                            }
                        }
                        _ => {}
                    }
                }
                _ = tick.tick() => {
                    // once the agent has asked for the name, say it (20 ms frames, real time)
                    if !sent_name && agent_frames > 0 && last_agent.elapsed() > Duration::from_millis(600) {
                        sent_name = true;
                        for chunk in name.chunks(160).chain(std::iter::repeat_n(&[0i16; 160][..], 75)) {
                            to_send.push_back(chunk.iter().flat_map(|s| s.to_le_bytes()).collect());
                        }
                    }
                    let frame = to_send.pop_front().unwrap_or_else(|| vec![0u8; 320]);
                    if started {
                        ws.send(Message::Binary(frame.into())).await.unwrap();
                    }
                }
            }
        };
        assert!(started);
        assert_eq!(ended["reason"], "caller_hangup");
        assert_eq!(caller_heard.as_deref(), Some("my name is john smith"));
        assert!(agent_frames > 50, "the agent's audio reached the browser");

        let call_id = created["call_id"].as_str().unwrap();
        let call = s.wait_for_end(call_id).await;
        assert_eq!(call["carrier"], "web");
        assert!(call["from_number"].as_str().unwrap().starts_with("web:"));
        assert_eq!(call["name"], "John Smith");
        assert!(transcript_text(&call).contains("my name is john smith"), "{}", transcript_text(&call));
        let (status, _) = s.get_bytes(&format!("/api/v1/calls/{call_id}/recording")).await;
        assert_eq!(status, StatusCode::OK);
        // the token was used: it opens nothing again
        assert!(tokio_tungstenite::connect_async(format!("ws://{}{ws_path}", s.addr)).await.is_err());
    })
    .await;
}

/// `t=…,v1=…` of the webhook signature header.
fn parse_signature(header: &str) -> (i64, String) {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse().ok(),
            Some(("v1", v)) => v1 = Some(v.to_string()),
            _ => {}
        }
    }
    (t.expect("t="), v1.expect("v1="))
}

/// 1 and 2: a whole call with the offline backends, then the same caller again.
async fn answered_to_the_end_then_welcomed_back(backend: Backend) {
    run(backend, Setup::offline(), |s| async move {
        let phone = unique_phone();
        let receptionist = s
            .receptionist(json!({
                "phone_number": phone,
                "agent_name": "Chloe",
                "intro_message": "Hi, I'm Chloe from ABC Staffing. Thanks for calling!",
                "custom_context": "The pay is eighteen dollars an hour. Shifts are days or nights.",
                "questions": [
                    {"text": "Are you at least eighteen years old?", "kind": "yes_no", "expected": "yes"},
                    {"text": "How many years of warehouse experience do you have?", "kind": "number", "expected": ">= 1"}
                ]
            }))
            .await;
        let caller = unique_phone();
        let mut opts = s.sim(
            &phone,
            // the load generator's caller: name, location, yes, a number, a question, done
            fixtures(&receptionist::tools::loadgen::FIXTURES),
        );
        opts.from = caller.clone();
        opts.max_duration = Duration::from_secs(200);
        let out = simulate_call(opts).await.unwrap();

        // the webhook answered with a stream to this server, carrying the call's id and token
        let stream = format!(
            "<Connect><Stream url=\"ws://127.0.0.1:{}/twilio/media\">",
            s.addr.port()
        );
        assert!(out.answer.contains(&stream), "{}", out.answer);
        let (_, params) = twilio_stream(&out.answer);
        let names: Vec<&str> = params.keys().map(String::as_str).collect();
        assert_eq!(names, ["callId", "token"], "{}", out.answer);
        assert!(params.values().all(|v| !v.is_empty()));
        // the carrier side saw a clean session
        assert!(out.first_audio_ms.is_some(), "no agent audio arrived");
        assert!(out.marks_echoed > 0, "no marks were echoed");
        assert_eq!(out.protocol_errors, 0);
        assert!(out.server_hung_up, "the agent should end a completed call");

        let id = out.call_id.clone().expect("the call was connected");
        let call = s.wait_for_end(&id).await;
        let transcript = transcript_text(&call);
        assert_eq!(call["end_reason"], "completed", "{transcript}");
        assert_eq!(call["status"], "completed");
        assert_eq!(call["from_number"], caller.as_str());
        assert_eq!(call["to_number"], phone.as_str());
        assert_eq!(call["receptionist_id"], receptionist["id"]);
        assert!(call["started_at"].as_str().is_some_and(|t| t.ends_with('Z')));
        let duration_ms = call["duration_ms"].as_i64().unwrap();
        assert!(duration_ms > 10_000, "{duration_ms}");

        let lines = call["transcript"].as_array().unwrap();
        for speaker in ["agent", "caller"] {
            assert!(
                lines.iter().any(|l| l["speaker"] == speaker),
                "no {speaker} line:\n{transcript}"
            );
        }
        for l in lines {
            let (start, end) = (l["start_ms"].as_i64().unwrap(), l["end_ms"].as_i64().unwrap());
            assert!(start <= end && end <= duration_ms + 1000, "{l}");
        }
        assert!(
            call["name"].as_str().is_some_and(|n| !n.trim().is_empty()),
            "no name:\n{transcript}"
        );
        assert_eq!(call["location"], "Chicago", "{transcript}");
        let answers = call["answers"].as_array().unwrap();
        assert_eq!(answers.len(), 2, "{transcript}\n{answers:?}");
        assert_eq!(answers[0]["question_index"], 0);
        assert_eq!(answers[0]["kind"], "yes_no");
        assert_eq!(answers[0]["value"], json!({"type": "yes"}), "{transcript}");
        assert_eq!(answers[0]["meets_expected"], true);
        assert_eq!(answers[1]["question_index"], 1);
        assert_eq!(answers[1]["kind"], "number");
        assert_eq!(
            answers[1]["value"],
            json!({"type": "number", "value": 3.0}),
            "{transcript}"
        );
        let disclosures = call["disclosures"].as_array().unwrap();
        let kinds: Vec<&str> = disclosures
            .iter()
            .map(|d| d["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["ai", "recording", "e_verify"]);
        assert!(
            disclosures.iter().all(|d| d["played_in_full"] == true),
            "{disclosures:?}"
        );
        assert!(!call["latencies"].as_array().unwrap().is_empty());
        assert_eq!(call["has_recording"], true);

        // the recording: both channels, as long as the call
        let (status, wav) = s.get_bytes(&format!("/api/v1/calls/{id}/recording")).await;
        assert_eq!(status, StatusCode::OK);
        let wav = Wav::parse(&wav);
        let recorded_ms = wav.duration_ms() as i64;
        assert!(
            (recorded_ms - duration_ms).abs() <= 1000,
            "recording {recorded_ms} ms, call {duration_ms} ms"
        );
        for l in lines {
            let (start, end) = (l["start_ms"].as_u64().unwrap(), l["end_ms"].as_u64().unwrap());
            if l["speaker"] == "caller" {
                let rms = wav.rms(0, start, end);
                assert!(rms > 300.0, "caller channel quiet ({rms:.0}) during {l}");
            } else if end > start + 200 {
                let rms = wav.rms(1, start, end);
                assert!(rms > 300.0, "agent channel quiet ({rms:.0}) during {l}");
            }
        }

        // the caller became a candidate awaiting confirmation
        let (_, candidates) = s.get("/api/v1/candidates").await;
        let list = candidates["data"].as_array().unwrap();
        assert_eq!(list.len(), 1, "{candidates}");
        assert_eq!(list[0]["status"], "awaiting_confirmation");
        assert_eq!(list[0]["phone_number"], caller.as_str());
        assert_eq!(list[0]["id"], call["candidate_id"]);
        let candidate_id = list[0]["id"].clone();

        // 2. the same number calls again: same candidate, welcomed back
        let mut opts = s.sim(&phone, fixtures(&["name.wav"]));
        opts.turns.push(CallerTurn::HangUp);
        opts.from = caller.clone();
        let again = simulate_call(opts).await.unwrap();
        let id2 = again.call_id.clone().unwrap();
        assert_ne!(id2, id);
        let call2 = s.wait_for_end(&id2).await;
        let transcript2 = transcript_text(&call2);
        assert_eq!(call2["end_reason"], "caller_hangup", "{transcript2}");
        assert_eq!(call2["candidate_id"], candidate_id);
        assert!(
            call2["transcript"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["speaker"] == "agent"
                    && l["text"].as_str().unwrap().starts_with("Welcome back")),
            "no welcome back:\n{transcript2}"
        );
        let (_, candidates) = s.get("/api/v1/candidates").await;
        let list = candidates["data"].as_array().unwrap();
        assert_eq!(list.len(), 1, "{candidates}");
        assert_eq!(list[0]["id"], candidate_id);
        assert_eq!(list[0]["call_count"], 2);
    })
    .await;
}

/// 3: webhook signatures, routing by `To`, `ForwardedFrom`.
async fn webhook_signatures_and_routing(backend: Backend) {
    run(
        backend,
        Setup::scripted(["my name is john smith"]),
        |s| async move {
            let live = unique_phone();
            s.receptionist(fast_receptionist(&live)).await;
            let inactive = unique_phone();
            let mut body = fast_receptionist(&inactive);
            body["status"] = json!("inactive");
            s.receptionist(body).await;

            // unsigned, badly signed, signed for other parameters or another URL: 403
            let form = voice_form(&live, "+15550100001", None);
            let mut tampered = form.clone();
            tampered.iter_mut().find(|(k, _)| k == "To").unwrap().1 = "+15550100999".into();
            let (url, elsewhere) = (s.voice_url(), "http://127.0.0.1:1/twilio/voice");
            for (form, sig) in [
                (&form, None),
                (&form, Some(signature("not-the-token", &url, &form))),
                (&form, Some(signature(AUTH_TOKEN, elsewhere, &form))),
                (&tampered, Some(s.sign_voice(&form))),
            ] {
                assert_eq!(s.webhook(form, sig).await.0, StatusCode::FORBIDDEN);
            }
            // nothing was accepted
            let (_, calls) = s.get("/api/v1/calls").await;
            assert_eq!(calls["data"], json!([]));

            // a number with no receptionist, and an inactive one: closed message, hang up
            for to in [unique_phone(), inactive.clone()] {
                let (status, twiml) = s.voice(&voice_form(&to, "+15550100002", None)).await;
                assert_eq!(status, StatusCode::OK);
                assert!(
                    twiml.contains(&format!("<Say>{}</Say><Hangup/>", xml(CLOSED_MESSAGE))),
                    "{twiml}"
                );
                assert!(!twiml.contains("<Connect>"), "{twiml}");
            }
            let (_, calls) = s.get("/api/v1/calls").await;
            assert_eq!(calls["data"], json!([]));

            // a forwarded call keeps the number it was forwarded from
            let form = voice_form(&live, "+15550100003", Some("+15550109999"));
            let (status, twiml) = s.voice(&form).await;
            assert_eq!(status, StatusCode::OK);
            let (url, params) = twilio_stream(&twiml);
            assert_eq!(
                url,
                format!("ws://127.0.0.1:{}/twilio/media", s.addr.port())
            );
            let id = &params["callId"];
            let (_, call) = s.get(&format!("/api/v1/calls/{id}")).await;
            assert_eq!(call["status"], "accepted");
            assert_eq!(call["forwarded_from"], "+15550109999");
            assert_eq!(call["from_number"], "+15550100003");
            let row = s.store.call_by_id(id).await.unwrap().unwrap();
            assert_eq!(row.forwarded_from.as_deref(), Some("+15550109999"));
            assert!(form.contains(&("CallSid".into(), row.call_sid)));
            assert_eq!(row.status, CallStatus::Accepted);
        },
    )
    .await;
}

/// 3: at `max_calls` a second concurrent call hears the busy message; the slot comes back when
/// the first call ends.
async fn busy_at_max_calls(backend: Backend) {
    let setup = Setup::scripted(["my name is john smith"]).max_calls(1);
    run(backend, setup, |s| async move {
        let phone = unique_phone();
        s.receptionist(fast_receptionist(&phone)).await;
        let (id_tx, mut id_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut opts = s.sim(&phone, vec![CallerTurn::HangUp]);
        opts.call_id_tx = Some(id_tx);
        let first = tokio::spawn(simulate_call(opts));
        let first_id = id_rx.recv().await.expect("the first call was accepted");

        let (status, twiml) = s.voice(&voice_form(&phone, "+15550100004", None)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            twiml.contains(&format!("<Say>{}</Say><Hangup/>", xml(BUSY_MESSAGE))),
            "{twiml}"
        );
        assert!(!twiml.contains("<Connect>"), "{twiml}");

        let out = first.await.unwrap().unwrap();
        assert_eq!(out.call_id.as_deref(), Some(first_id.as_str()));
        let call = s.wait_for_end(&first_id).await;
        assert_eq!(
            call["end_reason"],
            "caller_hangup",
            "{}",
            transcript_text(&call)
        );
        s.wait_until("the first call's slot is returned", || {
            let calls = s.state.calls.clone();
            async move { calls.active() == 0 }
        })
        .await;
        let (_, twiml) = s.voice(&voice_form(&phone, "+15550100005", None)).await;
        assert!(twiml.contains("<Connect><Stream"), "{twiml}");
    })
    .await;
}

/// 4: bad JSON, bad base64, a binary message and an oversized message each end their own session
/// with `protocol_error`, while another call on the same server goes on to its normal end.
async fn broken_sessions_end_alone(backend: Backend) {
    let setup = Setup::scripted(["my name is john smith", "no thank you"]);
    run(backend, setup, |s| async move {
        let phone = unique_phone();
        s.receptionist(fast_receptionist(&phone)).await;
        let healthy = tokio::spawn(simulate_call(
            s.sim(&phone, fixtures(&["name.wav", "no_questions.wav"])),
        ));

        let oversized = format!(
            "{{\"event\":\"media\",\"media\":{{\"payload\":\"{}\"}}}}",
            "A".repeat(70 * 1024)
        );
        let bad: Vec<(&str, Message)> = vec![
            (
                "bad JSON",
                Message::text("{\"event\":\"media\",\"media\":{\"payload\":"),
            ),
            (
                "bad base64",
                Message::text(
                    "{\"event\":\"media\",\"media\":{\"track\":\"inbound\",\"payload\":\"%%% not base64 %%%\"}}",
                ),
            ),
            ("binary", Message::binary(vec![0xFFu8; FRAME])),
            ("oversized", Message::text(oversized)),
        ];
        let mut broken = Vec::new();
        for (what, msg) in bad {
            let s = s.clone();
            let phone = phone.clone();
            broken.push(tokio::spawn(async move {
                let (mut stream, id) = RawStream::accepted(&s, &phone).await;
                stream.send_start(&id).await;
                stream.until_agent_speaks().await;
                stream.send(msg).await;
                assert!(
                    stream.until_closed(Duration::from_secs(10)).await,
                    "{what}: the server kept the session open"
                );
                let call = s.wait_for_end(&id).await;
                assert_eq!(call["end_reason"], "protocol_error", "{what}");
                assert_eq!(call["status"], "completed", "{what}");
            }));
        }
        for b in broken {
            b.await.unwrap();
        }

        let out = healthy.await.unwrap().unwrap();
        assert!(out.server_hung_up);
        assert_eq!(out.protocol_errors, 0);
        let call = s.wait_for_end(out.call_id.as_deref().unwrap()).await;
        assert_eq!(call["end_reason"], "completed", "{}", transcript_text(&call));
        assert_eq!(call["name"], "John Smith");
    })
    .await;
}

/// 4: media before `start` is dropped, unknown events are ignored, and the call works.
async fn media_before_start_and_unknown_events(backend: Backend) {
    run(backend, Setup::scripted(["my name is john smith"]), |s| async move {
        let phone = unique_phone();
        s.receptionist(fast_receptionist(&phone)).await;
        let (mut stream, id) = RawStream::accepted(&s, &phone).await;
        // a second of speech before `start`
        let speech = fixture("name.wav");
        stream.say(&speech[..8000]).await;
        stream.send_start(&id).await;
        stream.await_agent_turn().await;
        let unknown = format!(
            "{{\"event\":\"transcription\",\"streamSid\":\"{}\",\"transcription\":{{\"text\":\"hi\"}}}}",
            stream.fake.info().stream_id
        );
        stream.send(Message::text(unknown.clone())).await;
        stream.say(&speech).await;
        stream.send(Message::text(unknown)).await;
        stream.await_agent_turn().await;
        stream.hang_up().await;

        let call = s.wait_for_end(&id).await;
        let transcript = transcript_text(&call);
        assert_eq!(call["end_reason"], "caller_hangup", "{transcript}");
        assert_eq!(call["name"], "John Smith", "{transcript}");
        let caller_lines: Vec<&Value> = call["transcript"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["speaker"] == "caller")
            .collect();
        // only the speech after `start` became an utterance
        assert_eq!(caller_lines.len(), 1, "{transcript}");
        assert!(
            transcript.contains("agent: Thank you, John."),
            "{transcript}"
        );
    })
    .await;
}

/// 4: the upgrade must be signed; `start` must name an accepted call with its token and call sid;
/// a refused session starts nothing, and the call can still connect properly.
async fn start_must_match_an_accepted_call(backend: Backend) {
    run(
        backend,
        Setup::scripted(["my name is john smith"]),
        |s| async move {
            let phone = unique_phone();
            s.receptionist(fast_receptionist(&phone)).await;
            let url = s.media_url();

            // the upgrade: unsigned or badly signed → 403
            for sig in [None, Some(signature("not-the-token", &url, &[]))] {
                let mut request = url.as_str().into_client_request().unwrap();
                if let Some(sig) = sig {
                    request
                        .headers_mut()
                        .insert("X-Twilio-Signature", sig.parse().unwrap());
                }
                match tokio_tungstenite::connect_async(request).await {
                    Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                        assert_eq!(response.status(), 403)
                    }
                    Err(e) => panic!("expected 403, got {e}"),
                    Ok(_) => panic!("an unsigned media upgrade was accepted"),
                }
            }

            let info = s.accept(&phone).await;
            let call_sid = info.call_id.clone();
            let id = info.custom_parameters["callId"].clone();
            let token = info.custom_parameters["token"].clone();
            let other_sid = format!("CA{}", uuid::Uuid::new_v4().simple());
            let unknown_id = uuid::Uuid::new_v4().to_string();
            let wrong_token = "0".repeat(token.len());
            for (what, sid, call_id, tok) in [
                ("unknown callId", &call_sid, &unknown_id, &token),
                ("wrong token", &call_sid, &id, &wrong_token),
                ("wrong call sid", &other_sid, &id, &token),
                ("no token", &call_sid, &id, &String::new()),
            ] {
                let other = CallInfo {
                    call_id: sid.clone(),
                    ..CallInfo::default()
                };
                let mut stream = RawStream::connect(&s, other).await;
                stream
                    .send_start_with(&[("callId", call_id.as_str()), ("token", tok.as_str())])
                    .await;
                assert!(
                    stream.until_closed(Duration::from_secs(10)).await,
                    "{what}: the session was not closed"
                );
                assert_eq!(stream.fake.media_received(), 0, "{what}: the agent spoke");
                let row = s.store.call_by_id(&id).await.unwrap().unwrap();
                assert_eq!(row.status, CallStatus::Accepted, "{what}");
                assert_eq!(row.stream_sid, None, "{what}");
            }
            assert_eq!(
                s.state.calls.active(),
                1,
                "only the accepted call holds a slot"
            );

            // the real stream still connects
            let mut stream = RawStream::connect(&s, info).await;
            stream.send_start(&id).await;
            stream.until_agent_speaks().await;
            stream.hang_up().await;
            let call = s.wait_for_end(&id).await;
            assert_eq!(call["end_reason"], "caller_hangup");
            let (_, calls) = s.get("/api/v1/calls").await;
            assert_eq!(calls["data"].as_array().unwrap().len(), 1);
        },
    )
    .await;
}

/// 5: `stop` while the agent is talking: `caller_hangup`, the answers so far kept, the recording
/// playable up to that moment and the cut agent line marked interrupted.
async fn caller_hangs_up_mid_sentence(backend: Backend) {
    run(backend, Setup::scripted(["my name is john smith", "yes"]), |s| async move {
        let phone = unique_phone();
        let mut body = fast_receptionist(&phone);
        body["questions"] = json!([
            {"text": "Are you at least eighteen years old?", "kind": "yes_no", "expected": "yes"}
        ]);
        let receptionist = s.receptionist(body).await;
        let voice = receptionist["voice"].as_str().unwrap().to_string();
        let (mut stream, id) = RawStream::accepted(&s, &phone).await;
        stream.send_start(&id).await;
        stream.await_agent_turn().await;
        stream.say(&fixture("name.wav")).await;
        stream.await_agent_turn().await;
        // the goodbye's line with the caller's name was synthesised once the name was heard,
        // long before the goodbye (which this caller never hears)
        let goodbye = "Thank you for calling, John.";
        for _ in 0..250 {
            if s.state.prompts.get(&voice, goodbye).is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(s.state.prompts.get(&voice, goodbye).is_some());
        stream.say(&fixture("yes.wav")).await;
        // "Thank you." then the caller-questions prompt: hang up half a second into it
        stream.until_agent_speaks().await;
        for _ in 0..25 {
            stream.step(&SILENCE).await;
        }
        assert!(stream.fake.is_playing(), "the agent should still be talking");
        stream.hang_up().await;

        let call = s.wait_for_end(&id).await;
        let transcript = transcript_text(&call);
        assert_eq!(call["end_reason"], "caller_hangup", "{transcript}");
        assert_eq!(call["name"], "John Smith");
        let answers = call["answers"].as_array().unwrap();
        assert_eq!(answers.len(), 1, "{transcript}");
        assert_eq!(answers[0]["value"], json!({"type": "yes"}));
        let last = call["transcript"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["speaker"], "agent", "{transcript}");
        assert_eq!(last["interrupted"], true, "{transcript}");

        let duration_ms = call["duration_ms"].as_i64().unwrap();
        let (status, bytes) = s.get_bytes(&format!("/api/v1/calls/{id}/recording")).await;
        assert_eq!(status, StatusCode::OK);
        let wav = Wav::parse(&bytes);
        let recorded_ms = wav.duration_ms() as i64;
        assert!(
            (recorded_ms - duration_ms).abs() <= 1000,
            "recording {recorded_ms} ms, call {duration_ms} ms"
        );
        let file = s.data_dir.join(format!("recordings/{id}.wav"));
        assert_eq!(std::fs::read(file).unwrap(), bytes);
    })
    .await;
}

/// A whole call on each carrier at once, through the real server and a WebSocket client speaking
/// that carrier's protocol (the simulator on the fake carrier): signed webhook, answer markup,
/// authorised upgrade, `start`, media both ways, a keypad answer, a barge-in (the server sends the
/// carrier's clear; the cut agent line is marked interrupted), the caller's hang-up (`stop`; a
/// closed socket on Vonage); stored completed with the carrier, its call id, answers and recording.
async fn call_on_every_carrier(backend: Backend) {
    // no script: each utterance gets the answer its question expects, whatever the interleaving
    run(backend, Setup::scripted::<0>([]), |s| async move {
        let phone = unique_phone();
        let mut body = fast_receptionist(&phone);
        body["questions"] = json!([
            {"text": "Are you at least eighteen years old?", "kind": "yes_no", "expected": "yes"},
            {"text": "How many years of warehouse experience do you have?", "kind": "number", "expected": ">= 1"}
        ]);
        s.receptionist(body).await;
        let calls = Carrier::ALL.map(|carrier| {
            let mut opts = s.sim(
                &phone,
                vec![
                    CallerTurn::Audio {
                        label: "name.wav".into(),
                        pcm8k: fixture("name.wav"),
                    },
                    // the yes/no question, on the keypad
                    CallerTurn::Key('1'),
                    // over the number question
                    CallerTurn::BargeIn {
                        after: Duration::from_millis(700),
                        label: "number_three.wav".into(),
                        pcm8k: fixture("number_three.wav"),
                    },
                    CallerTurn::HangUp,
                ],
            );
            opts.carrier = carrier;
            async move { (carrier, simulate_call(opts).await) }
        });
        for (carrier, out) in futures_util::future::join_all(calls).await {
            let out = out.unwrap_or_else(|e| panic!("{carrier}: {e:#}"));
            let id = out.call_id.clone().unwrap_or_else(|| panic!("{carrier}: no call id"));
            let call = s.wait_for_end(&id).await;
            let transcript = transcript_text(&call);
            let context = format!(
                "{carrier} ({} clears, {} marks echoed):\n{transcript}",
                out.clears, out.marks_echoed
            );
            let stream = out.stream.as_ref().unwrap_or_else(|| panic!("{carrier}: {}", out.answer));
            assert!(stream.url.contains(&format!("/{carrier}/media")), "{carrier}: {}", stream.url);
            assert!(out.first_audio_ms.is_some(), "{carrier}: no agent audio");
            assert!(out.media_received > 0, "{context}");
            if carrier != Carrier::Vonage {
                assert!(out.marks_echoed > 0, "{carrier}: no marks echoed");
            }
            assert!(out.clears > 0, "the barge-in sent no clear: {context}");
            assert_eq!(out.protocol_errors, 0, "{context}");
            assert!(!out.server_hung_up, "{carrier}: the caller hangs up");

            assert_eq!(call["status"], "completed", "{context}");
            assert_eq!(call["end_reason"], "caller_hangup", "{context}");
            assert_eq!(call["carrier"], carrier.as_str(), "{context}");
            assert_eq!(call["carrier_call_id"], out.carrier_call_id.as_str(), "{context}");
            assert_eq!(call["name"], "John Smith", "{context}");
            let answers = call["answers"].as_array().unwrap();
            assert_eq!(answers.len(), 2, "{context}");
            assert_eq!(answers[0]["value"], json!({"type": "yes"}), "{context}");
            assert_eq!(answers[1]["value"]["type"], "number", "{context}");
            let lines = call["transcript"].as_array().unwrap();
            assert!(lines.iter().any(|l| l["dtmf"] == true), "{context}");
            assert!(
                lines.iter().any(|l| l["speaker"] == "agent" && l["interrupted"] == true),
                "no interrupted agent line: {context}"
            );
            assert_eq!(call["has_recording"], true, "{context}");

            // the recording has the caller's speech on its channel
            let duration_ms = call["duration_ms"].as_i64().unwrap();
            let (status, bytes) = s.get_bytes(&format!("/api/v1/calls/{id}/recording")).await;
            assert_eq!(status, StatusCode::OK, "{carrier}");
            let wav = Wav::parse(&bytes);
            let recorded_ms = wav.duration_ms() as i64;
            assert!(
                (recorded_ms - duration_ms).abs() <= 1000,
                "{carrier}: recording {recorded_ms} ms, call {duration_ms} ms"
            );
            // each caller turn's stored times hold its audio (a carrier stream that began
            // before the call's clock did, as a busy test run's do, is recorded when heard)
            for l in lines {
                if l["speaker"] == "agent" || l["dtmf"] == true {
                    continue;
                }
                let (start, end) = (l["start_ms"].as_u64().unwrap(), l["end_ms"].as_u64().unwrap());
                let rms = wav.rms(0, start, end);
                assert!(rms > 300.0, "{carrier}: caller channel quiet ({rms:.0}) during {l}");
            }
        }
        let (_, calls) = s.get("/api/v1/calls").await;
        assert_eq!(calls["data"].as_array().unwrap().len(), Carrier::ALL.len());
    })
    .await;
}

/// 5: the network drops (the socket closes without `stop`): `disconnected`.
async fn dropped_socket_is_disconnected(backend: Backend) {
    run(
        backend,
        Setup::scripted(["my name is john smith"]),
        |s| async move {
            let phone = unique_phone();
            s.receptionist(fast_receptionist(&phone)).await;
            // the simulator drops the TCP connection without a close frame
            let out = simulate_call(s.sim(&phone, vec![CallerTurn::Drop]))
                .await
                .unwrap();
            let call = s.wait_for_end(out.call_id.as_deref().unwrap()).await;
            assert_eq!(
                call["end_reason"],
                "disconnected",
                "{}",
                transcript_text(&call)
            );
            // a clean WebSocket close without `stop`, mid-sentence
            let (mut stream, id) = RawStream::accepted(&s, &phone).await;
            stream.send_start(&id).await;
            stream.until_agent_speaks().await;
            stream.send(Message::Close(None)).await;
            let call = s.wait_for_end(&id).await;
            assert_eq!(
                call["end_reason"],
                "disconnected",
                "{}",
                transcript_text(&call)
            );
            let bytes = std::fs::read(s.data_dir.join(format!("recordings/{id}.wav"))).unwrap();
            Wav::parse(&bytes);
        },
    )
    .await;
}

/// 7: speech recognition fails on every utterance: the agent apologises and asks again (never dead
/// air), then ends the call politely, and the call is stored.
async fn failing_speech_recognition_apologises(backend: Backend) {
    let setup = Setup {
        backends: Backends {
            stt: Arc::new(FailingStt),
            tts: Arc::new(ScriptedTts::new()),
            name: "failing-stt",
            end_of_turn: None,
            meaning: None,
        },
        max_calls: 10,
    };
    run(backend, setup, |s| async move {
        let phone = unique_phone();
        s.receptionist(fast_receptionist(&phone)).await;
        let mut opts = s.sim(&phone, fixtures(&["name.wav", "name.wav", "name.wav"]));
        opts.max_duration = Duration::from_secs(90);
        let out = simulate_call(opts).await.unwrap();
        assert!(out.server_hung_up);
        let call = s.wait_for_end(out.call_id.as_deref().unwrap()).await;
        let transcript = transcript_text(&call);
        assert_eq!(call["end_reason"], "backend_failure", "{transcript}");
        let agent: Vec<&str> = call["transcript"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["speaker"] == "agent")
            .map(|l| l["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            agent.iter().filter(|t| **t == APOLOGY).count(),
            2,
            "{transcript}"
        );
        assert_eq!(agent.last(), Some(&FAILURE_GOODBYE), "{transcript}");
        // every failure was answered at once, not by the silence reminder
        assert!(!transcript.contains("Are you still there?"), "{transcript}");
        assert!(call["duration_ms"].as_i64().unwrap() > 0);
    })
    .await;
}

/// A socket that never sends `start` is closed after the start timeout, and nothing is stored.
async fn silent_socket_is_closed_after_the_start_timeout() {
    run(
        Backend::Sqlite,
        Setup::scripted(["hello"]),
        |s| async move {
            let mut stream = RawStream::connect(&s, CallInfo::default()).await;
            let first = tokio::time::timeout(
                receptionist::server::driver::START_TIMEOUT + Duration::from_secs(10),
                stream.ws.next(),
            )
            .await
            .expect("the silent socket was never closed");
            assert!(
                matches!(first, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
                "unexpected message before start: {first:?}"
            );
            let (_, calls) = s.get("/api/v1/calls").await;
            assert_eq!(calls["data"], json!([]));
        },
    )
    .await;
}

/// 6: `kill -9` during a call; the restarted server marks it interrupted and leaves a playable
/// recording.
async fn server_killed_mid_call_is_interrupted_on_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let db_url = format!("sqlite://{}", data_dir.join("rx.db").display());
    let data_arg = data_dir.display().to_string();
    let bin = env!("CARGO_BIN_EXE_receptionist");

    let key = create_workspace("Acme Staffing", &db_url, &data_dir);

    let serve = |log: &str| {
        let port = free_port();
        let log = std::fs::File::create(tmp.path().join(log)).unwrap();
        let child = tokio::process::Command::new(bin)
            .args(["serve", "--database-url", db_url.as_str()])
            .args(["--data-dir", data_arg.as_str(), "--backends", "scripted"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
            .env_remove("RECEPTIONIST_PUBLIC_URL")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        (child, format!("http://127.0.0.1:{port}"))
    };
    let http = reqwest::Client::new();
    let (mut server, base) = serve("serve-1.log");
    wait_healthy(&http, &base, &tmp.path().join("serve-1.log")).await;

    let phone = unique_phone();
    let response = http
        .post(format!("{base}/api/v1/receptionists"))
        .bearer_auth(&key)
        .json(&fast_receptionist(&phone))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    let (id_tx, mut id_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut opts = SimOptions::new(
        &base,
        &phone,
        vec![CallerTurn::Silence(Duration::from_secs(60))],
    );
    opts.credentials = credentials();
    opts.call_id_tx = Some(id_tx);
    opts.max_duration = Duration::from_secs(90);
    let call = tokio::spawn(simulate_call(opts));
    let id = id_rx.recv().await.expect("the call was accepted");

    // a few seconds into the call (three one-second chunks recorded), kill -9
    let recording = data_dir.join(format!("recordings/{id}.wav"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&recording).map_or(0, |m| m.len()) < 44 + 3 * 32_000 {
        assert!(Instant::now() < deadline, "the call never recorded 3 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.kill().await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the simulated call noticed the dead server")
        .unwrap()
        .unwrap();
    assert!(out.server_hung_up);

    let (mut server, base) = serve("serve-2.log");
    wait_healthy(&http, &base, &tmp.path().join("serve-2.log")).await;
    let call: Value = http
        .get(format!("{base}/api/v1/calls/{id}"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(call["status"], "interrupted", "{call}");
    assert_eq!(call["end_reason"], "server_interrupted", "{call}");
    let bytes = std::fs::read(&recording).unwrap();
    let wav = Wav::parse(&bytes);
    assert!(wav.duration_ms() >= 3000, "{} ms", wav.duration_ms());
    let served = http
        .get(format!("{base}/api/v1/calls/{id}/recording"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.bytes().await.unwrap().as_ref(), bytes.as_slice());
    server.kill().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------------------------

struct Setup {
    backends: Backends,
    max_calls: usize,
}

impl Setup {
    fn offline() -> Self {
        Self {
            backends: OFFLINE.clone(),
            max_calls: 10,
        }
    }

    /// Scripted backends; each server gets its own transcript sequence.
    fn scripted<const N: usize>(answers: [&str; N]) -> Self {
        Self {
            backends: Backends::scripted(ScriptedAnswers::from(answers)),
            max_calls: 10,
        }
    }

    fn max_calls(mut self, n: usize) -> Self {
        self.max_calls = n;
        self
    }
}

/// One test's server: listening on 127.0.0.1, a fresh database, a workspace and its admin key.
struct Server {
    /// Twilio's Messages API and an SMTP server, which the server's outbox worker delivers to.
    twilio: common::fakes::FakeTwilio,
    smtp: common::fakes::FakeSmtp,
    addr: SocketAddr,
    base: String,
    state: AppState,
    store: Store,
    data_dir: PathBuf,
    key: String,
    http: reqwest::Client,
    _tmp: tempfile::TempDir,
}

/// Start a server on `backend`, run `body`, then stop it and drop the database; a failure in
/// `body` is re-raised after the cleanup.
async fn run<F, Fut>(backend: Backend, setup: Setup, body: F)
where
    F: FnOnce(Arc<Server>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let db = TestDatabase::create(backend, &data_dir).await;
    let store = Store::connect(&db.url).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (listen, data, max_calls) = (
        addr.to_string(),
        data_dir.display().to_string(),
        setup.max_calls.to_string(),
    );
    let twilio = common::fakes::FakeTwilio::start_with_token(AUTH_TOKEN).await;
    let smtp = common::fakes::FakeSmtp::start().await;
    // every carrier's credential (Twilio's is given below)
    let carrier_flags = credentials().server_flags();
    let mut args = vec![
        "--listen",
        &listen,
        "--data-dir",
        &data,
        "--database-url",
        &db.url,
        "--node-id",
        "e2e-node",
        "--twilio-auth-token",
        AUTH_TOKEN,
        "--max-calls",
        &max_calls,
        "--twilio-account-sid",
        &twilio.account_sid,
        "--twilio-api-base",
        &twilio.url,
        "--smtp-url",
        &smtp.url,
        "--smtp-from",
        "Hiring <jobs@e2e.example>",
    ];
    args.extend(
        carrier_flags
            .iter()
            .map(String::as_str)
            .skip_while(|f| *f != "--telnyx-public-key"),
    );
    let mut config = common::serve_config(&args);
    config.public_url = None;
    config.insecure_no_signature = false;
    let worker = receptionist::delivery::Worker::new(store.clone(), &config, "e2e-node").unwrap();
    let state = AppState::new(store.clone(), config, setup.backends);
    let outbox = worker.spawn(state.outbox_notify.clone());
    let app = router(state.clone());
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });
    let (_, key) = store.create_workspace("E2E Staffing").await.unwrap();
    let server = Arc::new(Server {
        twilio,
        smtp,
        addr,
        base: format!("http://{addr}"),
        state,
        store: store.clone(),
        data_dir,
        key,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        _tmp: tmp,
    });
    let outcome = tokio::spawn(body(server.clone())).await;
    serving.abort();
    outbox.abort();
    store.close().await;
    db.drop_database().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

impl Server {
    fn voice_url(&self) -> String {
        format!("{}/twilio/voice", self.base)
    }

    fn media_url(&self) -> String {
        format!("ws://{}/twilio/media", self.addr)
    }

    fn sign_voice(&self, form: &[(String, String)]) -> String {
        signature(AUTH_TOKEN, &self.voice_url(), form)
    }

    /// The simulator, signing as Twilio with this server's token.
    fn sim(&self, to: &str, turns: Vec<CallerTurn>) -> SimOptions {
        let mut opts = SimOptions::new(&self.base, to, turns);
        opts.credentials = credentials();
        opts.from = unique_phone();
        opts.max_duration = Duration::from_secs(120);
        opts
    }

    /// The voice webhook, validly signed.
    async fn voice(&self, form: &[(String, String)]) -> (StatusCode, String) {
        self.webhook(form, Some(self.sign_voice(form))).await
    }

    /// The voice webhook with this `X-Twilio-Signature` (or none).
    async fn webhook(
        &self,
        form: &[(String, String)],
        sig: Option<String>,
    ) -> (StatusCode, String) {
        let mut req = self.http.post(self.voice_url()).form(form);
        if let Some(sig) = sig {
            req = req.header("X-Twilio-Signature", sig);
        }
        let response = req.send().await.unwrap();
        let status = response.status();
        (status, response.text().await.unwrap())
    }

    /// A call placed as Twilio places it (the tools' placer) that must connect a stream; who its
    /// `start` names (CallSid, stream parameters).
    async fn accept(&self, to: &str) -> CallInfo {
        let creds = credentials();
        let req = receptionist::tools::CallRequest {
            server: &self.base,
            public: &self.base,
            credentials: &creds,
            to,
            from: &unique_phone(),
            forwarded_from: None,
        };
        let placed = receptionist::tools::place_call(&self.http, Carrier::Twilio, &req)
            .await
            .unwrap();
        placed.stream.expect(&placed.answer).info
    }

    async fn receptionist(&self, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/api/v1/receptionists", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let value: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{value}");
        value
    }

    /// A recruiter API call with the admin key and a JSON body.
    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// An inbound text, signed as Twilio signs it.
    async fn text(&self, from: &str, to: &str, body: &str) -> StatusCode {
        let form: Vec<(String, String)> = [
            ("MessageSid", format!("SM{}", uuid::Uuid::new_v4().simple())),
            ("AccountSid", self.twilio.account_sid.clone()),
            ("From", from.to_string()),
            ("To", to.to_string()),
            ("Body", body.to_string()),
            ("NumMedia", "0".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let url = format!("{}/twilio/sms", self.base);
        let response = self
            .http
            .post(&url)
            .header("X-Twilio-Signature", signature(AUTH_TOKEN, &url, &form))
            .form(&form)
            .send()
            .await
            .unwrap();
        response.status()
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (status, bytes) = self.get_bytes(path).await;
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("non-JSON body: {}", String::from_utf8_lossy(&bytes)));
        (status, value)
    }

    async fn get_bytes(&self, path: &str) -> (StatusCode, Vec<u8>) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.bytes().await.unwrap().to_vec())
    }

    /// Poll `cond` every 100 ms for at most 60 s.
    async fn wait_until<F, Fut>(&self, what: &str, mut cond: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond().await {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The call as the API shows it once it has ended (polled, at most 60 s).
    async fn wait_for_end(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, call) = self.get(&format!("/api/v1/calls/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{call}");
            if !call["end_reason"].is_null() {
                return call;
            }
            assert!(
                Instant::now() < deadline,
                "call {id} never ended: {}",
                transcript_text(&call)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A short script: a one-line intro, no disclosures, no location, no questions unless added.
fn fast_receptionist(phone: &str) -> Value {
    json!({
        "phone_number": phone,
        "agent_name": "Chloe",
        "intro_message": "Hi, this is Chloe.",
        "disclose_ai": false,
        "disclose_recording": false,
        "disclose_e_verify": false,
        "collect_location": false,
    })
}

/// The voice webhook form Twilio posts for an inbound call (as the tools' placer posts it).
fn voice_form(to: &str, from: &str, forwarded_from: Option<&str>) -> Vec<(String, String)> {
    let mut call = InboundCall::new(Carrier::Twilio, to, from);
    call.forwarded_from = forwarded_from.map(String::from);
    let req = voice_request(Carrier::Twilio, "http://e2e", &credentials(), &call, 0);
    form_urlencoded::parse(&req.body).into_owned().collect()
}

/// The stream a Twilio answer asks for: its URL and `<Parameter>`s (read as Twilio reads it).
fn twilio_stream(twiml: &str) -> (String, BTreeMap<String, String>) {
    match parse_answer(Carrier::Twilio, 200, twiml) {
        Ok(CarrierAction::Stream(plan)) => (plan.url, plan.parameters),
        other => panic!("no stream ({other:?}): {twiml}"),
    }
}

fn xml(s: &str) -> String {
    receptionist::server::twilio::xml_escape(s)
}

fn unique_phone() -> String {
    format!("+1555{:07}", rand::random::<u32>() % 10_000_000)
}

fn fixture(name: &str) -> Vec<i16> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("audio-fixtures")
        .join(name);
    read_wav_8k(&path).unwrap()
}

fn fixtures(names: &[&str]) -> Vec<CallerTurn> {
    names
        .iter()
        .map(|n| CallerTurn::Audio {
            label: n.to_string(),
            pcm8k: fixture(n),
        })
        .collect()
}

/// The transcript as text, for failure messages.
fn transcript_text(call: &Value) -> String {
    let mut out = String::new();
    for l in call["transcript"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:>6} {}: {}\n",
            l["start_ms"],
            l["speaker"].as_str().unwrap_or("?"),
            l["text"].as_str().unwrap_or("")
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// A hand-driven Twilio media stream (for what the simulator does not do on purpose)
// ---------------------------------------------------------------------------------------------

/// One Twilio media WebSocket on the fake carrier, driven 20 ms at a time: every step plays the
/// agent's audio up to now (echoing the marks it reached, and every pending mark on `clear`, as
/// Twilio does) and sends one caller frame.
struct RawStream {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    fake: FakeCarrier,
    closed: bool,
    tick: tokio::time::Interval,
}

impl RawStream {
    /// Connect a signed media stream for `info`'s call and send `connected` (not `start`).
    async fn connect(s: &Server, info: CallInfo) -> RawStream {
        let url = s.media_url();
        let mut request = url.as_str().into_client_request().unwrap();
        request.headers_mut().insert(
            "X-Twilio-Signature",
            signature(AUTH_TOKEN, &url, &[]).parse().unwrap(),
        );
        let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut fake = FakeCarrier::with_defaults(Carrier::Twilio, std::time::Instant::now());
        *fake.info_mut() = info;
        let mut stream = RawStream {
            ws,
            fake,
            closed: false,
            tick,
        };
        stream.fake.write_connected();
        stream.flush().await;
        stream
    }

    /// A call accepted by a signed webhook, its stream connected (not started); and its call id.
    async fn accepted(s: &Server, to: &str) -> (RawStream, String) {
        let info = s.accept(to).await;
        let id = info.custom_parameters["callId"].clone();
        (RawStream::connect(s, info).await, id)
    }

    /// Sends what the fake wrote.
    async fn flush(&mut self) {
        if send_out(&mut self.fake, &mut self.ws).await.is_err() {
            self.closed = true;
        }
    }

    async fn send(&mut self, msg: Message) {
        if self.ws.send(msg).await.is_err() {
            self.closed = true;
        }
    }

    /// `start` with the parameters the webhook gave (`call_id` is checked against them).
    async fn send_start(&mut self, call_id: &str) {
        assert_eq!(self.fake.info().custom_parameters["callId"], call_id);
        self.fake.write_start();
        self.flush().await;
    }

    /// `start` with these parameters instead.
    async fn send_start_with(&mut self, params: &[(&str, &str)]) {
        self.fake.info_mut().custom_parameters = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.fake.write_start();
        self.flush().await;
    }

    /// One 20 ms step: take in what the server sent until the tick, play the agent's audio up to
    /// now, send `frame`. True if agent audio played.
    async fn step(&mut self, frame: &[u8; FRAME]) -> bool {
        loop {
            tokio::select! {
                _ = self.tick.tick() => break,
                msg = self.ws.next(), if !self.closed => {
                    match receive(&mut self.fake, std::time::Instant::now(), msg) {
                        Some(handled) => handled.unwrap_or_else(|e| panic!("from the server: {e}")),
                        None => self.closed = true,
                    }
                    self.flush().await;
                }
            }
        }
        if self.closed {
            return false;
        }
        let before = self.fake.heard().len();
        self.fake.handle_timeout(std::time::Instant::now());
        let played = self.fake.heard().len() > before;
        self.fake.send_audio(frame);
        self.flush().await;
        played
    }

    /// Say `pcm8k` (8 kHz) in real time.
    async fn say(&mut self, pcm8k: &[i16]) {
        for chunk in pcm8k.chunks(FRAME) {
            let mut frame = SILENCE;
            g711::encode_into(chunk, &mut frame[..chunk.len()]);
            self.step(&frame).await;
        }
    }

    /// Silence until agent audio plays (at most 30 s).
    async fn until_agent_speaks(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.step(&SILENCE).await {
            assert!(!self.closed, "the server closed the stream");
            assert!(Instant::now() < deadline, "the agent never spoke");
        }
    }

    /// Silence until the agent has spoken and then been quiet for 900 ms (its turn is over).
    async fn await_agent_turn(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut spoke, mut idle_ms) = (false, 0);
        loop {
            let played = self.step(&SILENCE).await;
            assert!(!self.closed, "the server closed the stream");
            assert!(Instant::now() < deadline, "the agent never finished a turn");
            if played {
                spoke = true;
                idle_ms = 0;
            } else {
                idle_ms += 20;
            }
            if spoke && idle_ms >= 900 {
                return;
            }
        }
    }

    /// Silence until the server closes the stream; false if it is still open after `limit`.
    async fn until_closed(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.closed && Instant::now() < deadline {
            self.step(&SILENCE).await;
        }
        self.closed
    }

    /// `stop`, then close, as Twilio does when the caller hangs up.
    async fn hang_up(&mut self) {
        self.fake.send_stop();
        self.flush().await;
        self.send(Message::Close(None)).await;
    }
}

/// Speech recognition whose every session fails.
struct FailingStt;

struct FailingSession;

impl SpeechToText for FailingStt {
    fn start(&self, _hint: receptionist::backends::SttHint) -> Box<dyn SttSession> {
        Box::new(FailingSession)
    }
}

impl SttSession for FailingSession {
    fn push(&mut self, _pcm16k: &[i16]) {}

    fn push_phone(&mut self, _mulaw: &[u8]) {}

    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<String, BackendError>> {
        Box::pin(async { Err(BackendError::Failed("recogniser crashed".into())) })
    }
}

// ---------------------------------------------------------------------------------------------
// Recordings
// ---------------------------------------------------------------------------------------------

/// A call recording, its header checked: PCM, 2 channels (caller, agent), 8 kHz, 16-bit, and the
/// RIFF and data sizes matching the file.
struct Wav {
    samples: Vec<i16>,
}

impl Wav {
    fn parse(bytes: &[u8]) -> Wav {
        assert!(bytes.len() >= 44, "{} bytes", bytes.len());
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
        let u16_at = |i: usize| u16::from_le_bytes(bytes[i..i + 2].try_into().unwrap());
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(u32_at(4) as usize, bytes.len() - 8, "RIFF size");
        assert_eq!(&bytes[8..16], b"WAVEfmt ");
        assert_eq!(u32_at(16), 16, "fmt size");
        assert_eq!(u16_at(20), 1, "PCM");
        assert_eq!(u16_at(22), 2, "channels");
        assert_eq!(u32_at(24), 8000, "sample rate");
        assert_eq!(u32_at(28), 8000 * 2 * 2, "byte rate");
        assert_eq!(u16_at(32), 4, "block align");
        assert_eq!(u16_at(34), 16, "bits per sample");
        assert_eq!(&bytes[36..40], b"data");
        let data_len = u32_at(40) as usize;
        assert_eq!(data_len, bytes.len() - 44, "data size");
        assert_eq!(data_len % 4, 0, "whole sample frames");
        Wav {
            samples: bytes[44..]
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect(),
        }
    }

    fn duration_ms(&self) -> u64 {
        (self.samples.len() / 2) as u64 * 1000 / 8000
    }

    /// RMS of `channel` (0 caller, 1 agent) between two call times.
    fn rms(&self, channel: usize, from_ms: u64, to_ms: u64) -> f64 {
        let frames = self.samples.len() / 2;
        let from = ((from_ms * 8) as usize).min(frames);
        let to = ((to_ms * 8) as usize).min(frames);
        if to <= from {
            return 0.0;
        }
        let sum: f64 = (from..to)
            .map(|i| {
                let s = f64::from(self.samples[i * 2 + channel]);
                s * s
            })
            .sum();
        (sum / (to - from) as f64).sqrt()
    }
}
