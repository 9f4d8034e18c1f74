//! Every carrier's HTTP side through the real router and a real socket, on SQLite and PostgreSQL:
//! a signed voice webhook gets that carrier's markup with a working stream URL and stores the
//! accepted call (carrier, carrier_call_id, forwarded-from); forged, missing and stale signatures
//! get 403 and store nothing; unknown and inactive numbers hear the closed message and a full node
//! the busy one; a forged upgrade gets 403; an authorised upgrade and the carrier's own `start`
//! (written here from docs/telephony-protocols.md with the parameters the answer gave) reach the
//! engine, whose first audio comes back in that carrier's format, and the carrier's stop ends it.

mod common;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use common::harness::{Harness, PUBLIC_URL, carrier_credentials, unique_phone};
use receptionist::engine::media::Carrier;
use receptionist::server::carriers::client::{
    CarrierAction, InboundCall, Request, StreamPlan, media_headers, parse_answer, voice_request,
};
use receptionist::server::carriers::{BUSY_MESSAGE, CLOSED_MESSAGE};
use receptionist::store::CallStatus;

both_databases!(
    signed_calls_stream_on_every_carrier,
    forged_signatures_are_refused_and_store_nothing,
    closed_and_busy_on_every_carrier,
    receptionists_record_their_carrier,
);

/// The harness's router on a real socket; its address.
async fn listen(h: &Harness) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = h.app.clone();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn now_secs() -> i64 {
    receptionist::store::now_ms() / 1000
}

/// Send a carrier's request to the server at `addr`: (status, body).
async fn send(addr: std::net::SocketAddr, req: &Request) -> (u16, String) {
    let url = format!("http://{addr}{}", req.path_and_query());
    let client = reqwest::Client::new();
    let mut builder = match req.method {
        "GET" => client.get(&url),
        _ => client.post(&url).body(req.body.clone()),
    };
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    let resp = builder.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// The stream URL as the test reaches it (the answer names the public URL).
fn local(url: &str, addr: std::net::SocketAddr) -> String {
    url.replacen(
        &PUBLIC_URL.replacen("http", "ws", 1),
        &format!("ws://{addr}"),
        1,
    )
}

async fn upgrade(
    addr: std::net::SocketAddr,
    carrier: Carrier,
    plan: &StreamPlan,
    url: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    u16,
> {
    let mut request = local(url, addr).into_client_request().unwrap();
    for (k, v) in media_headers(carrier, plan, &carrier_credentials()) {
        request.headers_mut().insert(
            k.parse::<axum::http::HeaderName>().unwrap(),
            v.parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("{carrier}: upgrade failed: {e}"),
    }
}

/// The carrier's opening messages, from the protocol doc, with the answer's parameters.
fn opening(carrier: Carrier, call: &InboundCall, plan: &StreamPlan) -> Vec<String> {
    let params = json!(plan.parameters);
    let id = &call.carrier_call_id;
    match carrier {
        Carrier::Twilio | Carrier::SignalWire => vec![
            json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}).to_string(),
            json!({"event": "start", "sequenceNumber": "1", "streamSid": "MZ0001",
                "start": {"accountSid": "AC0001", "streamSid": "MZ0001", "callSid": id,
                    "tracks": ["inbound"], "customParameters": params,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})
            .to_string(),
        ],
        Carrier::Telnyx => vec![
            json!({"event": "connected", "version": "1.0.0"}).to_string(),
            json!({"event": "start", "sequence_number": "1", "stream_id": "S-0001",
                "start": {"user_id": "U1", "call_control_id": id, "call_session_id": "CS1",
                    "from": call.from, "to": call.to, "custom_parameters": params,
                    "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1}}})
            .to_string(),
        ],
        Carrier::Plivo => {
            let extra = plan
                .parameters
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(";");
            vec![json!({"event": "start", "sequenceNumber": 1,
                "start": {"callId": id, "streamId": "S-0001", "accountId": "MA0001",
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000}},
                "extra_headers": extra})
            .to_string()]
        }
        Carrier::Vonage => {
            let mut first = json!({"event": "websocket:connected",
                "content-type": plan.audio.clone().unwrap()});
            for (k, v) in &plan.parameters {
                first[k] = json!(v);
            }
            vec![first.to_string()]
        }
        Carrier::Exotel => vec![
            json!({"event": "connected"}).to_string(),
            json!({"event": "start", "sequence_number": "1", "stream_sid": "S-0001",
                "start": {"stream_sid": "S-0001", "call_sid": id, "account_sid": "AC0001",
                    "from": call.from, "to": call.to, "custom_parameters": params,
                    "media_format": {"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16"}}})
            .to_string(),
        ],
    }
}

/// The carrier's way of ending the stream (Vonage has none: it closes the socket).
fn stop(carrier: Carrier, call: &InboundCall) -> Option<String> {
    let id = &call.carrier_call_id;
    Some(match carrier {
        Carrier::Twilio | Carrier::SignalWire => json!({"event": "stop", "sequenceNumber": "9",
            "streamSid": "MZ0001", "stop": {"accountSid": "AC0001", "callSid": id}})
        .to_string(),
        Carrier::Telnyx => json!({"event": "stop", "sequence_number": "9", "stream_id": "S-0001",
            "stop": {"user_id": "U1", "call_control_id": id}})
        .to_string(),
        Carrier::Plivo => json!({"event": "stop", "streamId": "S-0001"}).to_string(),
        Carrier::Exotel => {
            json!({"event": "stop", "sequence_number": "9", "stream_sid": "S-0001"}).to_string()
        }
        Carrier::Vonage => return None,
    })
}

/// Whether a message is agent audio in the carrier's format.
fn is_agent_audio(carrier: Carrier, msg: &Message) -> bool {
    match (carrier, msg) {
        (Carrier::Vonage, Message::Binary(b)) => b.len() == 640,
        (Carrier::Vonage, _) => false,
        (_, Message::Text(t)) => {
            let v: Value = serde_json::from_str(t).unwrap();
            let event = if carrier == Carrier::Plivo {
                "playAudio"
            } else {
                "media"
            };
            v["event"] == event
                && v["media"]["payload"]
                    .as_str()
                    .is_some_and(|p| !p.is_empty())
        }
        _ => false,
    }
}

async fn wait_for_status(
    h: &Harness,
    call_id: &str,
    done: impl Fn(CallStatus) -> bool,
) -> CallStatus {
    for _ in 0..200 {
        let status = h.store.call_by_id(call_id).await.unwrap().unwrap().status;
        if done(status) {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("call {call_id} did not reach the expected status");
}

async fn signed_calls_stream_on_every_carrier(h: Harness) {
    let addr = listen(&h).await;
    let (_, key) = h.workspace().await;
    let creds = carrier_credentials();
    for carrier in Carrier::ALL {
        let phone = unique_phone();
        h.receptionist(&key, &phone).await;
        let mut call = InboundCall::new(carrier, &phone, "+15557654321");
        if carrier != Carrier::Vonage {
            call.forwarded_from = Some("+15550009999".into());
        }
        let (status, body) = send(
            addr,
            &voice_request(carrier, PUBLIC_URL, &creds, &call, now_secs()),
        )
        .await;
        assert_eq!(status, 200, "{carrier}: {body}");
        let CarrierAction::Stream(plan) = parse_answer(carrier, status, &body).unwrap() else {
            panic!("{carrier}: not a stream: {body}")
        };
        match carrier {
            Carrier::Telnyx => {
                assert_eq!(plan.audio.as_deref(), Some("PCMU"));
                assert!(
                    body.contains(
                        r#"codec="PCMU" bidirectionalMode="rtp" bidirectionalCodec="PCMU""#
                    ),
                    "{body}"
                );
            }
            Carrier::Plivo => assert_eq!(plan.audio.as_deref(), Some("audio/x-mulaw;rate=8000")),
            Carrier::Vonage => assert_eq!(plan.audio.as_deref(), Some("audio/l16;rate=16000")),
            _ => {}
        }
        assert!(
            plan.url.contains(&format!("/{carrier}/media")),
            "{carrier}: {}",
            plan.url
        );

        // the stored call, through the API and its carrier_call_id search
        let path = format!(
            "/api/v1/calls?carrier_call_id={}",
            urlencode(&call.carrier_call_id)
        );
        let (st, list) = h.get(&path, &key).await;
        assert_eq!(st, 200);
        let rows = list["data"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{carrier}: {list}");
        let row = &rows[0];
        assert_eq!(row["carrier"], carrier.as_str());
        assert_eq!(row["carrier_call_id"], call.carrier_call_id.as_str());
        assert_eq!(row["status"], "accepted");
        assert_eq!(row["forwarded_from"], json!(call.forwarded_from));
        let call_id = row["id"].as_str().unwrap().to_string();
        let (_, detail) = h.get(&format!("/api/v1/calls/{call_id}"), &key).await;
        assert_eq!(detail["carrier_call_id"], call.carrier_call_id.as_str());

        // a forged upgrade: the right call with a wrong token, or no credential
        if carrier != Carrier::Twilio {
            let forged = plan.url.replace("token=", "token=0");
            assert_eq!(
                upgrade(addr, carrier, &plan, &forged).await.err(),
                Some(403),
                "{carrier}"
            );
            let bare = plan.url.split('?').next().unwrap().to_string();
            assert_eq!(
                upgrade(addr, carrier, &plan, &bare).await.err(),
                Some(403),
                "{carrier}"
            );
        } else {
            let mut unsigned = plan.clone();
            unsigned.url = "ws://rx.test/elsewhere".into();
            let signed_for_elsewhere = media_headers(carrier, &unsigned, &creds);
            let mut request = local(&plan.url, addr).into_client_request().unwrap();
            request.headers_mut().insert(
                "x-twilio-signature",
                signed_for_elsewhere[0].1.parse().unwrap(),
            );
            assert!(tokio_tungstenite::connect_async(request).await.is_err());
        }
        assert_eq!(
            h.store.call_by_id(&call_id).await.unwrap().unwrap().status,
            CallStatus::Accepted
        );

        // the real stream
        let mut ws = upgrade(addr, carrier, &plan, &plan.url.clone())
            .await
            .expect("upgrade");
        for m in opening(carrier, &call, &plan) {
            ws.send(Message::text(m)).await.unwrap();
        }
        wait_for_status(&h, &call_id, |s| s == CallStatus::InProgress).await;
        let first_audio = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let msg = ws.next().await.expect("socket open").expect("message");
                if is_agent_audio(carrier, &msg) {
                    return;
                }
            }
        })
        .await;
        assert!(first_audio.is_ok(), "{carrier}: no agent audio");
        match stop(carrier, &call) {
            Some(m) => ws.send(Message::text(m)).await.unwrap(),
            None => ws.close(None).await.unwrap(),
        }
        let end = wait_for_status(&h, &call_id, |s| s != CallStatus::InProgress).await;
        assert_eq!(end, CallStatus::Completed, "{carrier}");
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `req` with one header changed (or removed, with `None`).
fn with_header(req: &Request, name: &str, value: Option<&str>) -> Request {
    let mut r = req.clone();
    r.headers.retain(|(k, _)| k != name);
    if let Some(v) = value {
        r.headers.push((name.into(), v.into()));
    }
    r
}

async fn forged_signatures_are_refused_and_store_nothing(h: Harness) {
    let addr = listen(&h).await;
    let (_, key) = h.workspace().await;
    let phone = unique_phone();
    h.receptionist(&key, &phone).await;
    let creds = carrier_credentials();
    let mut wrong = carrier_credentials();
    wrong.twilio_auth_token = "wrong".into();
    wrong.telnyx_signing_key = [1; 32];
    wrong.plivo_auth_token = "wrong".into();
    wrong.vonage_signature_secret = "wrong".into();
    wrong.signalwire_signing_key = "wrong".into();
    wrong.exotel_stream_token = "wrong".into();
    for carrier in Carrier::ALL {
        let call = InboundCall::new(carrier, &phone, "+15557654321");
        let good = voice_request(carrier, PUBLIC_URL, &creds, &call, now_secs());
        // signed with another credential
        let mut forged = vec![voice_request(
            carrier,
            PUBLIC_URL,
            &wrong,
            &call,
            now_secs(),
        )];
        // signed for another URL (Telnyx, Vonage and Exotel do not sign the URL)
        if matches!(
            carrier,
            Carrier::Twilio | Carrier::Plivo | Carrier::SignalWire
        ) {
            forged.push(voice_request(
                carrier,
                "http://elsewhere.test",
                &creds,
                &call,
                now_secs(),
            ));
        }
        // no signature at all
        let mut bare = good.clone();
        bare.headers.retain(|(k, _)| k == "content-type");
        forged.push(bare);
        // a tampered body (or query) under a good signature
        let mut tampered = good.clone();
        if tampered.body.is_empty() {
            tampered.url = tampered
                .url
                .replace("uuid=", "uuid=1")
                .replace("CallSid=", "CallSid=1");
        } else {
            let body = String::from_utf8(tampered.body.clone()).unwrap();
            tampered.body = body.replacen("%2B1555", "%2B1556", 1).into_bytes();
        }
        if carrier != Carrier::Exotel && carrier != Carrier::Vonage {
            forged.push(tampered);
        }
        match carrier {
            Carrier::Telnyx => {
                // stale and future timestamps, signed correctly: well outside the 300 s window
                // (at 301 s, a second boundary crossed between signing and checking made the
                // future one 300 s away, inside it)
                forged.push(voice_request(
                    carrier,
                    PUBLIC_URL,
                    &creds,
                    &call,
                    now_secs() - 330,
                ));
                forged.push(voice_request(
                    carrier,
                    PUBLIC_URL,
                    &creds,
                    &call,
                    now_secs() + 330,
                ));
            }
            Carrier::Vonage => {
                forged.push(voice_request(
                    carrier,
                    PUBLIC_URL,
                    &creds,
                    &call,
                    now_secs() - 3600,
                ));
                forged.push(with_header(&good, "authorization", Some("Bearer a.b.c")));
            }
            Carrier::Plivo => {
                let nonce = good
                    .headers
                    .iter()
                    .find(|(k, _)| k == "x-plivo-signature-v3-nonce")
                    .unwrap()
                    .1
                    .clone();
                forged.push(with_header(
                    &good,
                    "x-plivo-signature-v3-nonce",
                    Some(&format!("{nonce}x")),
                ));
            }
            Carrier::Exotel => {
                forged.push(with_header(
                    &good,
                    "authorization",
                    Some("Basic ZXhvdGVsOndyb25n"),
                ));
            }
            _ => {}
        }
        for (i, req) in forged.iter().enumerate() {
            let (status, body) = send(addr, req).await;
            assert_eq!(status, 403, "{carrier} forgery {i}: {body}");
        }
        let path = format!(
            "/api/v1/calls?carrier_call_id={}",
            urlencode(&call.carrier_call_id)
        );
        let (_, list) = h.get(&path, &key).await;
        assert_eq!(
            list["data"],
            json!([]),
            "{carrier}: a forged webhook stored a call"
        );
        // and the genuine one goes through
        let (status, body) = send(addr, &good).await;
        assert_eq!(status, 200, "{carrier}: {body}");
    }
    // upgrades naming no accepted call are refused before any socket exists
    for carrier in Carrier::ALL {
        let plan = StreamPlan {
            url: format!("ws://rx.test/{carrier}/media?callId=nope&token=nope"),
            parameters: Default::default(),
            audio: None,
        };
        let mut request = local(&plan.url, addr).into_client_request().unwrap();
        if carrier == Carrier::Twilio {
            request
                .headers_mut()
                .insert("x-twilio-signature", "forged".parse().unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 403, "{carrier}")
            }
            other => panic!(
                "{carrier}: forged upgrade not refused: {:?}",
                other.map(|_| ())
            ),
        }
    }
}

async fn closed_and_busy_on_every_carrier(h: Harness) {
    let addr = listen(&h).await;
    let (_, key) = h.workspace().await;
    let creds = carrier_credentials();
    let inactive_phone = unique_phone();
    let r = h.receptionist(&key, &inactive_phone).await;
    let (st, _) = h
        .put(
            &format!("/api/v1/receptionists/{}", r["id"].as_str().unwrap()),
            &key,
            json!({"status": "inactive"}),
        )
        .await;
    assert_eq!(st, 200);
    let live_phone = unique_phone();
    h.receptionist(&key, &live_phone).await;

    let expect = |carrier: Carrier, action: CarrierAction, message: &str| {
        let spoken = if carrier == Carrier::Exotel {
            None
        } else {
            Some(message.to_string())
        };
        assert_eq!(
            action,
            CarrierAction::HangUp { message: spoken },
            "{carrier}"
        );
    };
    for carrier in Carrier::ALL {
        for phone in [unique_phone(), inactive_phone.clone()] {
            let call = InboundCall::new(carrier, &phone, "+15557654321");
            let (status, body) = send(
                addr,
                &voice_request(carrier, PUBLIC_URL, &creds, &call, now_secs()),
            )
            .await;
            if carrier == Carrier::Exotel {
                assert_eq!(status, 404, "{body}");
            }
            expect(
                carrier,
                parse_answer(carrier, status, &body).unwrap(),
                CLOSED_MESSAGE,
            );
        }
    }
    // a full node answers busy
    let mut held = Vec::new();
    while let Some(slot) = h.state.calls.try_acquire() {
        held.push(slot);
    }
    for carrier in Carrier::ALL {
        let call = InboundCall::new(carrier, &live_phone, "+15557654321");
        let (status, body) = send(
            addr,
            &voice_request(carrier, PUBLIC_URL, &creds, &call, now_secs()),
        )
        .await;
        if carrier == Carrier::Exotel {
            assert_eq!(status, 503, "{body}");
        }
        expect(
            carrier,
            parse_answer(carrier, status, &body).unwrap(),
            BUSY_MESSAGE,
        );
    }
    drop(held);
    let (_, list) = h.get("/api/v1/calls", &key).await;
    assert_eq!(list["data"], json!([]), "closed or busy calls were stored");
}

async fn receptionists_record_their_carrier(h: Harness) {
    let addr = listen(&h).await;
    let (_, key) = h.workspace().await;
    let phone = unique_phone();
    let r = h.receptionist(&key, &phone).await;
    assert_eq!(r["carrier"], "twilio", "the default");
    let path = format!("/api/v1/receptionists/{}", r["id"].as_str().unwrap());
    let (st, body) = h.put(&path, &key, json!({"carrier": "Telnyx"})).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["carrier"], "telnyx");
    let (st, body) = h.put(&path, &key, json!({"carrier": "skype"})).await;
    assert_eq!(st, 422, "{body}");
    assert_eq!(common::harness::error_field(&body), "carrier");
    let (_, body) = h.get(&path, &key).await;
    assert_eq!(
        body["carrier"], "telnyx",
        "a refused update changes nothing"
    );
    let mut created = common::harness::minimal(&unique_phone());
    created["carrier"] = json!("vonage");
    let (st, body) = h.post("/api/v1/receptionists", &key, created).await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["carrier"], "vonage");
    // a call on another carrier than the setting is still answered (and logged)
    let call = InboundCall::new(Carrier::Plivo, &phone, "+15557654321");
    let req = voice_request(
        Carrier::Plivo,
        PUBLIC_URL,
        &carrier_credentials(),
        &call,
        now_secs(),
    );
    let (status, body) = send(addr, &req).await;
    assert!(
        matches!(
            parse_answer(Carrier::Plivo, status, &body),
            Ok(CarrierAction::Stream(_))
        ),
        "{body}"
    );
}
