//! The OpenAPI document the server serves at `GET /api/v1/openapi.json`, fetched through the real
//! router (SQLite; the document does not depend on the database):
//!
//! - it is OpenAPI 3.1: `openapi: 3.1.x`, valid against the official OpenAPI 3.1 JSON Schema with
//!   its Schema Object dialect (`tests/fixtures/oas-3.1/`, see the README there), and readable as
//!   a typed OpenAPI 3.1 model (the `oas3` crate); every `$ref` resolves, path parameters match
//!   their templates, operation ids are unique, security requirements name a defined scheme;
//! - it and the router agree: [`ROUTES`] (every route the server answers) is exactly the set of
//!   documented operations; each documented operation is answered by its handler (never the
//!   router's own empty 404 or its 405), with a status the operation documents; other methods on a
//!   documented path get the router's 405;
//! - the roles it states are the handlers': an operation that asks for `["admin"]` answers 403 to
//!   a viewer key, the others do not;
//! - real answers match it: a scripted tour of the API (receptionists, a call and its recording,
//!   the candidate's whole pipeline, interviewers, keys, analytics, webhooks, the carrier
//!   webhooks) checks every answer's status, content type and body against the operation's
//!   documented response (JSON Schema 2020-12, formats checked), and that no body carries a
//!   field its schema does not describe. Every documented operation must be answered with a
//!   documented 2xx at least once (the media WebSocket excepted: it needs a real upgrade).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};

use receptionist::model::{AnswerValue, CallEvent, EndReason, Speaker};
use receptionist::store::Role;

mod common;

use common::Backend;
use common::harness::*;

/// Every route the server answers, as `(method, path template)`. A new route is a line here; the
/// test fails until the document has it too, and the other way round.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/openapi.json"),
    ("POST", "/twilio/voice"),
    ("POST", "/twilio/sms"),
    ("GET", "/twilio/media"),
    ("POST", "/telnyx/voice"),
    ("GET", "/telnyx/media"),
    ("POST", "/plivo/voice"),
    ("GET", "/plivo/media"),
    ("GET", "/vonage/voice"),
    ("POST", "/vonage/voice"),
    ("GET", "/vonage/media"),
    ("POST", "/signalwire/voice"),
    ("GET", "/signalwire/media"),
    ("GET", "/exotel/voice"),
    ("POST", "/exotel/voice"),
    ("GET", "/exotel/media"),
    ("GET", "/web/call"),
    ("GET", "/api/v1/receptionists"),
    ("POST", "/api/v1/receptionists"),
    ("GET", "/api/v1/receptionists/{id}"),
    ("PUT", "/api/v1/receptionists/{id}"),
    ("POST", "/api/v1/receptionists/{id}/web-calls"),
    ("GET", "/api/v1/calls"),
    ("GET", "/api/v1/calls/{id}"),
    ("GET", "/api/v1/calls/{id}/recording"),
    ("GET", "/api/v1/candidates"),
    ("GET", "/api/v1/candidates/{id}"),
    ("PATCH", "/api/v1/candidates/{id}"),
    ("POST", "/api/v1/candidates/{id}/approve"),
    ("POST", "/api/v1/candidates/{id}/reject"),
    ("POST", "/api/v1/candidates/{id}/notes"),
    ("POST", "/api/v1/candidates/{id}/ingest"),
    ("GET", "/api/v1/candidates/{id}/evaluations"),
    ("POST", "/api/v1/candidates/{id}/evaluate"),
    ("GET", "/api/v1/interviewers"),
    ("POST", "/api/v1/interviewers"),
    ("GET", "/api/v1/interviewers/{id}"),
    ("PUT", "/api/v1/interviewers/{id}"),
    ("GET", "/api/v1/me"),
    ("GET", "/api/v1/keys"),
    ("POST", "/api/v1/keys"),
    ("DELETE", "/api/v1/keys/{id}"),
    ("GET", "/api/v1/analytics"),
    ("GET", "/api/v1/voices"),
    ("GET", "/api/v1/webhooks"),
    ("POST", "/api/v1/webhooks"),
    ("GET", "/api/v1/webhooks/{id}"),
    ("DELETE", "/api/v1/webhooks/{id}"),
    ("GET", "/api/v1/webhooks/{id}/deliveries"),
];

/// Operations a test cannot answer with a 2xx through `Router::oneshot`.
const NOT_TOURED: &[(&str, &str)] = &[
    ("GET", "/twilio/media"),
    ("GET", "/telnyx/media"),
    ("GET", "/plivo/media"),
    ("GET", "/vonage/media"),
    ("GET", "/signalwire/media"),
    ("GET", "/exotel/media"),
    ("GET", "/web/call"),
];

const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// An id no resource has.
const FAKE_ID: &str = "00000000-0000-0000-0000-000000000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_is_openapi_3_1() {
    run(Backend::Sqlite, |h| async move {
        let doc = fetch_document(&h).await;
        let version = doc["openapi"].as_str().unwrap();
        let mut parts = version.split('.');
        assert_eq!(
            (parts.next(), parts.next()),
            (Some("3"), Some("1")),
            "openapi: {version}"
        );
        assert!(parts.next().is_some_and(|p| p.parse::<u32>().is_ok()));

        // The official OpenAPI 3.1 JSON Schema, with its dialect for Schema Objects.
        let fixture = |name: &str| -> Value {
            let path = format!(
                "{}/tests/fixtures/oas-3.1/{name}.json",
                env!("CARGO_MANIFEST_DIR")
            );
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
        };
        let (schema, base, dialect, meta) = (
            fixture("schema"),
            fixture("schema-base"),
            fixture("dialect"),
            fixture("meta"),
        );
        let id = |v: &Value| v["$id"].as_str().unwrap().to_string();
        let registry = jsonschema::Registry::new()
            .add(id(&schema), schema.clone())
            .unwrap()
            .add(id(&dialect), dialect.clone())
            .unwrap()
            .add(id(&meta), meta.clone())
            .unwrap()
            .prepare()
            .unwrap();
        let validator = jsonschema::options()
            .offline()
            .with_registry(&registry)
            .should_validate_formats(true)
            .build(&base)
            .unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "not valid against the OpenAPI 3.1 schema:\n{}",
            errors.join("\n")
        );
        // The schema finds errors at all (the check above is not vacuous).
        let mut broken = doc.clone();
        broken["paths"]["/healthz"]["get"]["responses"]["200"] = json!({ "content": {} });
        assert!(
            !validator.is_valid(&broken),
            "a response without description"
        );

        // A typed OpenAPI 3.1 model reads it.
        let spec = oas3::from_json(doc.to_string()).expect("oas3 reads the document");
        assert_eq!(spec.validate_version().unwrap().minor, 1);
        assert_eq!(spec.operations().count(), ROUTES.len());

        // Every `$ref` resolves inside the document.
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(refs.len() > 50, "{} refs", refs.len());
        for r in &refs {
            assert!(resolve(&doc, r).is_some(), "unresolved $ref {r}");
        }

        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        let tags: BTreeSet<&str> = doc["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        let mut ids = BTreeSet::new();
        for (template, method, op) in operations(&doc) {
            let what = format!("{method} {template}");
            assert!(
                ids.insert(op["operationId"].as_str().unwrap()),
                "{what}: id"
            );
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{what}: summary"
            );
            for tag in op["tags"].as_array().unwrap() {
                assert!(tags.contains(tag.as_str().unwrap()), "{what}: tag {tag}");
            }
            // Path parameters are exactly the template's.
            let in_template: BTreeSet<&str> = template
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .map(|p| {
                            assert_eq!(p["required"], true, "{what}: path parameters are required");
                            p["name"].as_str().unwrap()
                        })
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(in_template, declared, "{what}: path parameters");
            // The recruiter API is behind the bearer scheme; the rest is not.
            let security = op["security"].as_array();
            if template.starts_with("/api/v1/") && template != "/api/v1/openapi.json" {
                let security = security.unwrap_or_else(|| panic!("{what}: no security"));
                assert_eq!(security.len(), 1, "{what}");
                for name in security[0].as_object().unwrap().keys() {
                    assert!(schemes.contains_key(name), "{what}: scheme {name}");
                }
                let roles = &security[0]["bearer"];
                let admin = method != Method::GET;
                assert_eq!(
                    roles,
                    &if admin { json!(["admin"]) } else { json!([]) },
                    "{what}: reads take any key, writes an admin key"
                );
            } else {
                assert!(security.is_none(), "{what}: not behind an API key");
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_and_router_agree() {
    run(Backend::Sqlite, |h| async move {
        let doc = fetch_document(&h).await;
        let documented: BTreeSet<(String, String)> = operations(&doc)
            .map(|(template, method, _)| (method.to_string(), template.to_string()))
            .collect();
        let listed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(ROUTES.len(), listed.len(), "ROUTES has duplicates");
        let undocumented: Vec<_> = listed.difference(&documented).collect();
        let unlisted: Vec<_> = documented.difference(&listed).collect();
        assert!(
            undocumented.is_empty(),
            "served but not documented: {undocumented:?}"
        );
        assert!(
            unlisted.is_empty(),
            "documented but not in ROUTES: {unlisted:?}"
        );

        let api = Api::new(&h, doc.clone());
        let paths: BTreeSet<&str> = ROUTES.iter().map(|(_, p)| *p).collect();
        for template in paths {
            let path = template.replace("{id}", FAKE_ID);
            for method in METHODS {
                let is_documented =
                    doc["paths"][template][method.as_str().to_lowercase()].is_object();
                let send = if is_documented {
                    probe_body(&doc, &method, template)
                } else {
                    Send::Nothing
                };
                let (status, bytes, content_type) =
                    api.request(method.clone(), &path, None, send).await;
                let what = format!("{method} {path}");
                if is_documented {
                    assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{what}: not routed");
                    assert!(
                        !(status == StatusCode::NOT_FOUND && bytes.is_empty()),
                        "{what}: the router's own 404"
                    );
                    api.check(&method, template, status, content_type.as_deref(), &bytes);
                } else {
                    assert_eq!(
                        status,
                        StatusCode::METHOD_NOT_ALLOWED,
                        "{what} is answered but not documented"
                    );
                }
            }
        }
        // And a path nobody serves is the router's 404.
        let (status, bytes, _) = api
            .request(Method::GET, "/api/v1/nothing-here", None, Send::Nothing)
            .await;
        assert_eq!((status, bytes.len()), (StatusCode::NOT_FOUND, 0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_roles_are_the_handlers() {
    run(Backend::Sqlite, |h| async move {
        let doc = fetch_document(&h).await;
        let (ws, _admin) = h.workspace().await;
        let viewer = h.store.create_api_key(&ws, Role::Viewer).await.unwrap();
        let api = Api::new(&h, doc.clone());
        for (template, method, op) in operations(&doc) {
            let Some(security) = op["security"].as_array() else {
                continue;
            };
            let admin_only = security[0]["bearer"] == json!(["admin"]);
            let path = template.replace("{id}", FAKE_ID);
            let send = probe_body(&doc, &method, template);
            let (status, bytes, content_type) = api
                .request(method.clone(), &path, Some(&viewer), send)
                .await;
            let what = format!("{method} {template} with a viewer key");
            api.check(&method, template, status, content_type.as_deref(), &bytes);
            if admin_only {
                assert_eq!(status, StatusCode::FORBIDDEN, "{what}");
            } else {
                assert!(
                    status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
                    "{what}: {status}"
                );
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_the_document() {
    run(Backend::Sqlite, |h| async move {
        let doc = fetch_document(&h).await;
        let api = Api::new(&h, doc);
        let (_, key) = h.workspace().await;
        let key = key.as_str();

        // Keys and the key in use.
        api.json(Method::GET, "/api/v1/me", "/api/v1/me", key, None, 200).await;
        let second = api
            .json(Method::POST, "/api/v1/keys", "/api/v1/keys", key,
                Some(json!({ "role": "viewer", "name": "reporting" })), 201)
            .await;
        api.json(Method::GET, "/api/v1/keys", "/api/v1/keys", key, None, 200).await;
        let second_id = second["id"].as_str().unwrap();
        api.json(Method::DELETE, "/api/v1/keys/{id}", &format!("/api/v1/keys/{second_id}"), key, None, 204)
            .await;
        let me = api.json(Method::GET, "/api/v1/me", "/api/v1/me", key, None, 200).await;
        let my_key = me["key"]["id"].as_str().unwrap();
        api.json(Method::DELETE, "/api/v1/keys/{id}", &format!("/api/v1/keys/{my_key}"), key, None, 409)
            .await;

        // Interviewers.
        let interviewer = api
            .json(Method::POST, "/api/v1/interviewers", "/api/v1/interviewers", key,
                Some(json!({
                    "name": "Warehouse interview",
                    "invitation_message": "Hi {candidate_name}, book here:",
                    "interview_link": "https://interview.example/w/1",
                })), 201)
            .await;
        let iid = interviewer["id"].as_str().unwrap();
        let ipath = format!("/api/v1/interviewers/{iid}");
        api.json(Method::GET, "/api/v1/interviewers/{id}", &ipath, key, None, 200).await;
        api.json(Method::PUT, "/api/v1/interviewers/{id}", &ipath, key,
            Some(json!({ "name": "Warehouse interview (day shift)" })), 200)
            .await;
        api.json(Method::GET, "/api/v1/interviewers", "/api/v1/interviewers", key, None, 200).await;

        // Receptionists, and their error answers.
        let phone = unique_phone();
        let r = api
            .json(Method::POST, "/api/v1/receptionists", "/api/v1/receptionists", key,
                Some(json!({
                    "phone_number": phone,
                    "agent_name": "Chloe",
                    "intro_message": "Hi, I'm Chloe from ABC Staffing.",
                    "questions": [
                        {"text": "Are you at least 18 years old?", "kind": "yes_no", "expected": "yes", "dealbreaker": true},
                        {"text": "How many years of warehouse experience do you have?", "kind": "number", "expected": ">= 1", "weight": 2},
                        {"text": "Which shifts suit you?", "kind": "free_text"},
                    ],
                    "manual_approval": true,
                    "interviewer_ids": [iid],
                })), 201)
            .await;
        let rid = r["id"].as_str().unwrap();
        let rpath = format!("/api/v1/receptionists/{rid}");
        api.json(Method::GET, "/api/v1/receptionists/{id}", &rpath, key, None, 200).await;
        let echoed = api
            .json(Method::GET, "/api/v1/receptionists/{id}", &rpath, key, None, 200)
            .await;
        api.json(Method::PUT, "/api/v1/receptionists/{id}", &rpath, key, Some(echoed), 200).await;
        api.json(
            Method::POST,
            "/api/v1/receptionists/{id}/web-calls",
            &format!("{rpath}/web-calls"),
            key,
            Some(json!({})),
            201,
        )
        .await;
        api.json(Method::GET, "/api/v1/receptionists", "/api/v1/receptionists?status=live", key, None, 200)
            .await;
        let invalid = api
            .json(Method::POST, "/api/v1/receptionists", "/api/v1/receptionists", key,
                Some(json!({ "phone_number": unique_phone(), "agent_name": "C", "intro_message": "" })), 422)
            .await;
        assert_eq!(invalid["error"]["field"], "intro_message");
        api.json(Method::POST, "/api/v1/receptionists", "/api/v1/receptionists", key,
            Some(json!({ "phone_number": phone, "agent_name": "C", "intro_message": "Hi" })), 409)
            .await;
        api.json(Method::GET, "/api/v1/receptionists", "/api/v1/receptionists?status=asleep", key, None, 400)
            .await;
        let (status, bytes, content_type) = api
            .request(Method::POST, "/api/v1/receptionists", Some(key),
                Send::Raw("application/json", "{\"agent_name\": ".into()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        api.check(&Method::POST, "/api/v1/receptionists", status, content_type.as_deref(), &bytes);
        let (status, bytes, content_type) = api
            .request(Method::POST, "/api/v1/receptionists", Some(key),
                Send::Raw("text/plain", "{}".into()))
            .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        api.check(&Method::POST, "/api/v1/receptionists", status, content_type.as_deref(), &bytes);

        // The carrier: a signed voice webhook for the receptionist's number.
        let caller = "+15557654321";
        let (status, twiml) = api
            .signed_form("/twilio/voice", &[
                ("CallSid", &format!("CA{}", uuid::Uuid::new_v4().simple())),
                ("From", caller),
                ("To", &phone),
            ])
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(twiml.contains("<Connect>"), "{twiml}");
        // every other carrier's voice webhook, signed as that carrier signs it
        {
            use receptionist::engine::media::Carrier;
            use receptionist::server::carriers::client::{InboundCall, Request, voice_request};
            let creds = carrier_credentials();
            let now = receptionist::store::now_ms() / 1000;
            for carrier in [Carrier::Telnyx, Carrier::Plivo, Carrier::Vonage, Carrier::SignalWire, Carrier::Exotel] {
                let call = InboundCall::new(carrier, &phone, caller);
                let req = voice_request(carrier, PUBLIC_URL, &creds, &call, now);
                let template = format!("/{carrier}/voice");
                let (status, body) = api.carrier_request(&template, &req).await;
                assert_eq!(status, StatusCode::OK, "{carrier}: {body}");
            }
            // Vonage's answer URL as a POST with a JSON body (hashed into the JWT)
            let body = json!({"uuid": uuid::Uuid::new_v4().to_string(), "to": phone.trim_start_matches('+'), "from": "15557654321"}).to_string();
            let hash: String = {
                use sha2::Digest;
                sha2::Sha256::digest(body.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
            };
            let jwt = receptionist::server::carriers::vonage::sign_jwt(
                &creds.vonage_signature_secret,
                &json!({"iat": now, "payload_hash": hash}),
            );
            let req = Request {
                method: "POST",
                url: format!("{PUBLIC_URL}/vonage/voice"),
                headers: vec![
                    ("content-type".into(), "application/json".into()),
                    ("authorization".into(), format!("Bearer {jwt}")),
                ],
                body: body.into_bytes(),
            };
            let (status, body) = api.carrier_request("/vonage/voice", &req).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            // Exotel's endpoint as a POST with the passthru form and the token in the query
            let form = form_urlencoded::Serializer::new(String::new())
                .extend_pairs([("CallSid", uuid::Uuid::new_v4().simple().to_string()), ("CallTo", phone.clone()), ("CallFrom", caller.to_string())])
                .finish();
            let req = Request {
                method: "POST",
                url: format!("{PUBLIC_URL}/exotel/voice?token={}", creds.exotel_stream_token),
                headers: vec![("content-type".into(), "application/x-www-form-urlencoded".into())],
                body: form.into_bytes(),
            };
            let (status, body) = api.carrier_request("/exotel/voice", &req).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }

        // A call that produced everything, with a recording, and its after-call work.
        let call = accept(&h, &r, caller, "test-node").await;
        let recording = format!("recordings/{}.wav", call.id);
        std::fs::create_dir_all(h.data_dir.join("recordings")).unwrap();
        std::fs::write(h.data_dir.join(&recording), vec![7u8; 4_000]).unwrap();
        let started = h
            .store
            .start_call(&call.id, "MZ1", call.accepted_at_ms + 300, &recording)
            .await
            .unwrap();
        let cand = started.candidate_id;
        let events = vec![
            line(Speaker::Agent, "Hi, I'm Chloe.", 0, 1_200),
            CallEvent::Disclosure(receptionist::model::DisclosureRecord {
                kind: receptionist::model::DisclosureKind::Ai,
                text: "I am an AI assistant.".into(),
                played_in_full: true,
            }),
            line(Speaker::Caller, "my name is john smith", 2_000, 3_100),
            CallEvent::Name { name: "John Smith".into() },
            CallEvent::Location { location: "Chicago".into() },
            answer(0, "yes", AnswerValue::Yes, 1),
            answer(1, "three years", AnswerValue::Number(3.0), 2),
            answer(2, "mornings", AnswerValue::Text("mornings".into()), 1),
            answer(2, "uh", AnswerValue::Unclear, 3),
            CallEvent::Latency(receptionist::model::TurnLatency {
                turn: 1,
                endpointing_ms: 700,
                stt_ms: 800,
                llm_first_ms: None,
                llm_ms: None,
                tts_ms: 46,
                total_ms: 1_546,
            }),
        ];
        h.store.append_events(&call.id, 0, &events).await.unwrap();
        h.store
            .finish_call(&call.id, call.accepted_at_ms + 60_000, 59_700, EndReason::Completed)
            .await
            .unwrap();
        receptionist::pipeline::after_call(&h.store, &call.id, true).await.unwrap();
        // The caller corrects the details in reply to the confirmation text.
        let (status, _) = api
            .signed_form("/twilio/sms", &[
                ("MessageSid", &format!("SM{}", uuid::Uuid::new_v4().simple())),
                ("From", caller),
                ("To", &phone),
                ("Body", "My name is Jon Smith"),
            ])
            .await;
        assert_eq!(status, StatusCode::OK);

        let cpath = format!("/api/v1/calls/{}", call.id);
        api.json(Method::GET, "/api/v1/calls", "/api/v1/calls?limit=10", key, None, 200).await;
        api.json(Method::GET, "/api/v1/calls", "/api/v1/calls?limit=0", key, None, 422).await;
        let detail = api.json(Method::GET, "/api/v1/calls/{id}", &cpath, key, None, 200).await;
        assert_eq!(detail["has_recording"], true);
        let rec = format!("{cpath}/recording");
        let (status, _) = api.raw(Method::GET, "/api/v1/calls/{id}/recording", &rec, key, None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, bytes) = api
            .raw(Method::GET, "/api/v1/calls/{id}/recording", &rec, key, Some(("range", "bytes=0-99")))
            .await;
        assert_eq!((status, bytes.len()), (StatusCode::PARTIAL_CONTENT, 100));
        let (status, _) = api
            .raw(Method::GET, "/api/v1/calls/{id}/recording", &format!("/api/v1/calls/{FAKE_ID}/recording"), key, None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // The candidate's pipeline.
        let kpath = format!("/api/v1/candidates/{cand}");
        api.json(Method::GET, "/api/v1/candidates", &format!("/api/v1/candidates?tab=all&q=john&receptionist_id={rid}&limit=1"), key, None, 200)
            .await;
        api.json(Method::GET, "/api/v1/candidates", "/api/v1/candidates?cursor=garbage", key, None, 422)
            .await;
        api.json(Method::GET, "/api/v1/candidates", "/api/v1/candidates?colour=red", key, None, 400)
            .await;
        api.json(Method::PATCH, "/api/v1/candidates/{id}", &kpath, key,
            Some(json!({ "email": "john@example.com" })), 200)
            .await;
        api.json(Method::POST, "/api/v1/candidates/{id}/notes", &format!("{kpath}/notes"), key,
            Some(json!({ "text": "Strong forklift experience." })), 201)
            .await;
        api.json(Method::POST, "/api/v1/candidates/{id}/evaluate", &format!("{kpath}/evaluate"), key,
            Some(json!({ "call_id": call.id })), 201)
            .await;
        api.json(Method::GET, "/api/v1/candidates/{id}/evaluations", &format!("{kpath}/evaluations"), key, None, 200)
            .await;
        api.json(Method::POST, "/api/v1/candidates/{id}/reject", &format!("{kpath}/reject"), key,
            Some(json!({ "reason": "Prefers nights" })), 200)
            .await;
        api.json(Method::POST, "/api/v1/candidates/{id}/approve", &format!("{kpath}/approve"), key, None, 200)
            .await;
        api.json(Method::POST, "/api/v1/candidates/{id}/ingest", &format!("{kpath}/ingest"), key,
            Some(json!({ "interviewer_id": iid })), 200)
            .await;
        let c = api.json(Method::GET, "/api/v1/candidates/{id}", &kpath, key, None, 200).await;
        for list in ["calls", "evaluations", "notes", "corrections", "messages", "emails", "history"] {
            assert!(!c[list].as_array().unwrap().is_empty(), "the tour fills {list}: {c}");
        }

        // Analytics.
        api.json(Method::GET, "/api/v1/analytics", "/api/v1/analytics", key, None, 200).await;
        let voices = api.json(Method::GET, "/api/v1/voices", "/api/v1/voices", key, None, 200).await;
        assert_eq!(voices["default"], voices["voices"][0], "{voices}");
        api.json(Method::GET, "/api/v1/analytics", &format!("/api/v1/analytics?from=2024-01-01&receptionist_id={rid}"), key, None, 200)
            .await;
        api.json(Method::GET, "/api/v1/analytics", "/api/v1/analytics?from=yesterday", key, None, 422)
            .await;
        api.json(Method::GET, "/api/v1/analytics", &format!("/api/v1/analytics?receptionist_id={FAKE_ID}"), key, None, 404)
            .await;

        // Webhooks.
        let endpoint = api
            .json(Method::POST, "/api/v1/webhooks", "/api/v1/webhooks", key,
                Some(json!({ "url": "https://hooks.example/rx", "events": ["call.ended", "candidate.approved"] })), 201)
            .await;
        assert!(endpoint["secret"].as_str().unwrap().starts_with("whsec_"));
        let wpath = format!("/api/v1/webhooks/{}", endpoint["id"].as_str().unwrap());
        api.json(Method::GET, "/api/v1/webhooks", "/api/v1/webhooks", key, None, 200).await;
        api.json(Method::GET, "/api/v1/webhooks/{id}", &wpath, key, None, 200).await;
        api.json(Method::GET, "/api/v1/webhooks/{id}/deliveries", &format!("{wpath}/deliveries?limit=5"), key, None, 200)
            .await;
        api.json(Method::POST, "/api/v1/webhooks", "/api/v1/webhooks", key,
            Some(json!({ "url": "https://hooks.example/rx", "events": ["call.started"] })), 422)
            .await;
        api.json(Method::DELETE, "/api/v1/webhooks/{id}", &wpath, key, None, 204).await;

        // Meta.
        api.raw(Method::GET, "/healthz", "/healthz", key, None).await;
        api.raw(Method::GET, "/readyz", "/readyz", key, None).await;
        api.raw(Method::GET, "/metrics", "/metrics", key, None).await;
        api.raw(Method::GET, "/api/v1/openapi.json", "/api/v1/openapi.json", key, None).await;

        // Another workspace sees none of it.
        let (_, stranger) = h.workspace().await;
        api.json(Method::GET, "/api/v1/candidates/{id}", &kpath, &stranger, None, 404).await;

        let answered = api.answered_2xx.lock().unwrap().clone();
        for (method, template) in ROUTES {
            assert!(
                NOT_TOURED.contains(&(*method, *template))
                    || answered.contains(&(method.to_string(), template.to_string())),
                "{method} {template}: no documented 2xx answer checked"
            );
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// The document, and answers checked against it
// ---------------------------------------------------------------------------------------------

async fn fetch_document(h: &Harness) -> Value {
    let request = Request::get("/api/v1/openapi.json")
        .body(Body::empty())
        .unwrap();
    let (status, bytes) = h.raw(request).await;
    assert_eq!(status, StatusCode::OK, "served without a key");
    serde_json::from_slice(&bytes).expect("the document is JSON")
}

/// Every operation: `(path template, method, operation)`.
fn operations(doc: &Value) -> impl Iterator<Item = (&str, Method, &Value)> {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(template, item)| {
            item.as_object()
                .unwrap()
                .iter()
                .filter_map(move |(method, op)| {
                    let method = Method::from_bytes(method.to_uppercase().as_bytes()).ok()?;
                    METHODS
                        .contains(&method)
                        .then_some((template.as_str(), method, op))
                })
        })
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// A local `$ref` (`#/components/...`) in `doc`.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    doc.pointer(pointer)
}

/// What a probe sends: `{}` to a JSON body, an empty form to a form.
fn probe_body(doc: &Value, method: &Method, template: &str) -> Send {
    let op = &doc["paths"][template][method.as_str().to_lowercase()];
    match op["requestBody"]["content"].as_object() {
        Some(content) if content.contains_key("application/json") => Send::Json(json!({})),
        Some(content) => Send::Raw(
            if content.contains_key("application/x-www-form-urlencoded") {
                "application/x-www-form-urlencoded"
            } else {
                "application/octet-stream"
            },
            String::new(),
        ),
        None => Send::Nothing,
    }
}

enum Send {
    Nothing,
    Json(Value),
    Raw(&'static str, String),
}

/// The router with the document in hand: every answer it gets through [`Api::check`] must be
/// one its operation documents.
struct Api<'a> {
    h: &'a Harness,
    doc: Value,
    /// `(method, template)` answered with a documented 2xx.
    answered_2xx: Mutex<BTreeSet<(String, String)>>,
}

impl<'a> Api<'a> {
    fn new(h: &'a Harness, doc: Value) -> Self {
        Api {
            h,
            doc,
            answered_2xx: Mutex::new(BTreeSet::new()),
        }
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        send: Send,
    ) -> (StatusCode, Vec<u8>, Option<String>) {
        self.request_with(method, path, key, send, None).await
    }

    async fn request_with(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        send: Send,
        header: Option<(&str, &str)>,
    ) -> (StatusCode, Vec<u8>, Option<String>) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        if let Some((name, value)) = header {
            req = req.header(name, value);
        }
        let req = match send {
            Send::Nothing => req.body(Body::empty()),
            Send::Json(v) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string())),
            Send::Raw(content_type, body) => req
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from(body)),
        }
        .unwrap();
        let response = tower::ServiceExt::oneshot(self.h.app.clone(), req)
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, bytes.to_vec(), content_type)
    }

    /// A JSON API call that must answer `expect`; checked against the document.
    #[allow(clippy::too_many_arguments)]
    async fn json(
        &self,
        method: Method,
        template: &str,
        path: &str,
        key: &str,
        body: Option<Value>,
        expect: u16,
    ) -> Value {
        let send = body.map(Send::Json).unwrap_or(Send::Nothing);
        let (status, bytes, content_type) =
            self.request(method.clone(), path, Some(key), send).await;
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(status.as_u16(), expect, "{method} {path}: {text}");
        self.check(&method, template, status, content_type.as_deref(), &bytes);
        if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        }
    }

    /// Any call (one optional header); checked against the document.
    async fn raw(
        &self,
        method: Method,
        template: &str,
        path: &str,
        key: &str,
        header: Option<(&str, &str)>,
    ) -> (StatusCode, Vec<u8>) {
        let (status, bytes, content_type) = self
            .request_with(method.clone(), path, Some(key), Send::Nothing, header)
            .await;
        self.check(&method, template, status, content_type.as_deref(), &bytes);
        (status, bytes)
    }

    /// A carrier's request (from the carrier client) for the operation at `template`.
    async fn carrier_request(
        &self,
        template: &str,
        r: &receptionist::server::carriers::client::Request,
    ) -> (StatusCode, String) {
        let method = Method::from_bytes(r.method.as_bytes()).unwrap();
        let mut req = Request::builder()
            .method(method.clone())
            .uri(r.path_and_query());
        for (k, v) in &r.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req.body(Body::from(r.body.clone())).unwrap();
        let response = tower::ServiceExt::oneshot(self.h.app.clone(), req)
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        self.check(&method, template, status, content_type.as_deref(), &bytes);
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// A form posted and signed as Twilio does.
    async fn signed_form(&self, path: &str, params: &[(&str, &str)]) -> (StatusCode, String) {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let url = format!("{PUBLIC_URL}{path}");
        let signature = receptionist::server::twilio::signature(TWILIO_TOKEN, &url, &params);
        let form: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        let (status, bytes, content_type) = self
            .request_with(
                Method::POST,
                path,
                None,
                Send::Raw("application/x-www-form-urlencoded", form),
                Some(("X-Twilio-Signature", &signature)),
            )
            .await;
        self.check(&Method::POST, path, status, content_type.as_deref(), &bytes);
        (status, String::from_utf8(bytes).unwrap())
    }

    /// The answer is one the operation documents: its status, its content type, and a body valid
    /// against the documented schema with no undocumented field.
    fn check(
        &self,
        method: &Method,
        template: &str,
        status: StatusCode,
        content_type: Option<&str>,
        bytes: &[u8],
    ) {
        let what = format!("{method} {template} answered {status}");
        let text = String::from_utf8_lossy(bytes);
        let op = &self.doc["paths"][template][method.as_str().to_lowercase()];
        assert!(op.is_object(), "{what}: not documented");
        let mut response = &op["responses"][status.as_str()];
        if let Some(reference) = response["$ref"].as_str() {
            response = resolve(&self.doc, reference).unwrap();
        }
        assert!(
            response.is_object(),
            "{what}, a status it does not document: {text}"
        );
        if status.is_success() {
            self.answered_2xx
                .lock()
                .unwrap()
                .insert((method.to_string(), template.to_string()));
        }
        let content = response["content"].as_object().filter(|c| !c.is_empty());
        let Some(content) = content else {
            assert!(
                bytes.is_empty(),
                "{what} with a body it does not document: {text}"
            );
            return;
        };
        let mime = content_type
            .and_then(|c| c.split(';').next())
            .map(|c| c.trim().to_ascii_lowercase())
            .unwrap_or_else(|| panic!("{what} without a content type"));
        let media = content
            .get(&mime)
            .unwrap_or_else(|| panic!("{what} as {mime}, not one of {:?}", content.keys()));
        if mime == "application/json" {
            let body: Value = serde_json::from_slice(bytes)
                .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
            let schema = &media["schema"];
            assert!(schema.is_object(), "{what}: no schema for JSON");
            self.validate(&what, schema, &body);
        } else if media["schema"]["type"] == "string" {
            assert!(std::str::from_utf8(bytes).is_ok(), "{what}: not text");
        }
    }

    fn validate(&self, what: &str, schema: &Value, body: &Value) {
        // The schema with the document's components beside it, so its `#/components/...`
        // references resolve.
        let wrapper = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::options()
            .offline()
            .should_validate_formats(true)
            .build(&wrapper)
            .unwrap_or_else(|e| panic!("{what}: the schema does not compile: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{what}: {}\n{body:#}", errors.join("\n"));
        let mut extra = Vec::new();
        self.undocumented_fields(schema, body, "", &mut extra);
        assert!(
            extra.is_empty(),
            "{what}: undocumented fields {extra:?}\n{body:#}"
        );
    }

    /// Object keys of `value` that no property of `schema` (through `$ref`, `allOf`, `oneOf`,
    /// `anyOf`) names, where the schema does not allow additional properties.
    fn undocumented_fields(&self, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
        let schemas = self.flatten(schema);
        match value {
            Value::Object(map) => {
                // Free-form unless some schema names its properties and none allows more.
                let open = !schemas.iter().any(|s| s.get("properties").is_some())
                    || schemas.iter().any(|s| {
                        s.get("additionalProperties")
                            .is_some_and(|a| a != &json!(false))
                    });
                let mut by_key: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
                for s in &schemas {
                    if let Some(props) = s["properties"].as_object() {
                        for (k, v) in props {
                            by_key.entry(k.as_str()).or_default().push(v);
                        }
                    }
                    if let Some(extra) = s.get("additionalProperties").filter(|a| a.is_object()) {
                        for k in map.keys() {
                            if !by_key.contains_key(k.as_str()) {
                                self.undocumented_fields(extra, &map[k], &format!("{at}/{k}"), out);
                            }
                        }
                    }
                }
                for (k, v) in map {
                    match by_key.get(k.as_str()) {
                        Some(subs) => {
                            for sub in subs {
                                self.undocumented_fields(sub, v, &format!("{at}/{k}"), out);
                            }
                        }
                        None if open => {}
                        None => out.push(format!("{at}/{k}")),
                    }
                }
            }
            Value::Array(items) => {
                for s in &schemas {
                    if let Some(item_schema) = s.get("items") {
                        for (i, item) in items.iter().enumerate() {
                            self.undocumented_fields(item_schema, item, &format!("{at}/{i}"), out);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// `schema` and every schema it is made of (references followed).
    fn flatten<'s>(&'s self, schema: &'s Value) -> Vec<&'s Value> {
        let mut out = vec![];
        let mut stack = vec![schema];
        while let Some(s) = stack.pop() {
            if let Some(reference) = s["$ref"].as_str() {
                stack.push(resolve(&self.doc, reference).unwrap());
            }
            for key in ["allOf", "oneOf", "anyOf"] {
                if let Some(items) = s[key].as_array() {
                    stack.extend(items);
                }
            }
            out.push(s);
        }
        out
    }
}
