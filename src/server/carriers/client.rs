//! The carrier's side of the HTTP exchanges, for tests and tools (the simulator and load
//! generator place calls through every carrier with it): build a voice-webhook request as that
//! carrier would send it, signed with [`Credentials`]; read the server's answer into what the
//! carrier would then do ([`CarrierAction`]); and authorise the media upgrade. The socket side
//! (`start`, media, marks) is the codecs' business, not this module's.
//!
//! ```text
//! let creds = Credentials::test();            // its server_flags() go to the server
//! let req = voice_request(Carrier::Plivo, public_url, &creds, &call, now_secs);
//! // send req.method to base + req.path_and_query() with req.headers and req.body, then:
//! let action = parse_answer(Carrier::Plivo, status, &body)?;
//! // CarrierAction::Stream(plan): connect to plan.url with media_headers(..), present
//! // plan.parameters in the carrier's start; CarrierAction::HangUp: the caller hears a message.
//! ```

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Value, json};

use super::{plivo, twilio, vonage};
use crate::engine::media::Carrier;

/// Every carrier's credential, as the carrier holds it (Telnyx: the signing key whose public
/// half the server is given).
#[derive(Clone)]
pub struct Credentials {
    pub twilio_auth_token: String,
    pub telnyx_signing_key: [u8; 32],
    pub plivo_auth_token: String,
    pub vonage_signature_secret: String,
    pub signalwire_signing_key: String,
    pub exotel_stream_token: String,
}

/// Secrets stay out of logs: only that they are there.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

impl Credentials {
    /// Fixed test credentials (never use them for a real account).
    pub fn test() -> Self {
        Self {
            twilio_auth_token: "test-twilio-auth-token".into(),
            telnyx_signing_key: [42; 32],
            plivo_auth_token: "test-plivo-auth-token".into(),
            vonage_signature_secret: "test-vonage-signature-secret".into(),
            signalwire_signing_key: "test-signalwire-signing-key".into(),
            exotel_stream_token: "test-exotel-stream-token".into(),
        }
    }

    /// `TELNYX_PUBLIC_KEY`: the base64 public key of [`Credentials::telnyx_signing_key`].
    pub fn telnyx_public_key(&self) -> String {
        let key = ed25519_dalek::SigningKey::from_bytes(&self.telnyx_signing_key);
        base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes())
    }

    /// The `serve` flags that make a server check these credentials.
    pub fn server_flags(&self) -> Vec<String> {
        [
            ("--twilio-auth-token", self.twilio_auth_token.clone()),
            ("--telnyx-public-key", self.telnyx_public_key()),
            ("--plivo-auth-token", self.plivo_auth_token.clone()),
            (
                "--vonage-signature-secret",
                self.vonage_signature_secret.clone(),
            ),
            (
                "--signalwire-signing-key",
                self.signalwire_signing_key.clone(),
            ),
            ("--exotel-stream-token", self.exotel_stream_token.clone()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .collect()
    }
}

/// A call as the carrier sees it when it asks the server what to do.
#[derive(Debug, Clone)]
pub struct InboundCall {
    pub to: String,
    pub from: String,
    pub forwarded_from: Option<String>,
    /// The carrier's id for the call.
    pub carrier_call_id: String,
}

impl InboundCall {
    /// A call with a fresh id in the carrier's format.
    pub fn new(carrier: Carrier, to: &str, from: &str) -> Self {
        let hex = uuid::Uuid::new_v4().simple().to_string();
        let uuid = uuid::Uuid::new_v4().to_string();
        let carrier_call_id = match carrier {
            Carrier::Twilio => format!("CA{hex}"),
            Carrier::Telnyx => format!("v3:{hex}"),
            Carrier::Exotel => hex,
            Carrier::Plivo | Carrier::Vonage | Carrier::SignalWire => uuid,
        };
        Self {
            to: to.into(),
            from: from.into(),
            forwarded_from: None,
            carrier_call_id,
        }
    }
}

/// An HTTP request as a carrier would send it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The full public URL (what the carrier signed).
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The URL's path and query, to send to wherever the server really listens.
    pub fn path_and_query(&self) -> &str {
        let after_scheme = self.url.split_once("://").map_or(&*self.url, |(_, r)| r);
        after_scheme.find('/').map_or("/", |i| &after_scheme[i..])
    }
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
        .into_bytes()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The voice webhook `carrier` sends to a server at `public_url` for `call`, signed (`now_secs`
/// is the time it is signed at: Telnyx and Vonage put it in the signature).
pub fn voice_request(
    carrier: Carrier,
    public_url: &str,
    creds: &Credentials,
    call: &InboundCall,
    now_secs: i64,
) -> Request {
    let url = format!(
        "{}/{}/voice",
        public_url.trim_end_matches('/'),
        carrier.as_str()
    );
    let fwd = call.forwarded_from.as_deref();
    let form_ct = (
        "content-type".to_string(),
        "application/x-www-form-urlencoded".to_string(),
    );
    match carrier {
        Carrier::Twilio | Carrier::SignalWire => {
            let mut pairs = vec![
                ("CallSid", call.carrier_call_id.as_str()),
                ("To", &call.to),
                ("From", &call.from),
                ("CallStatus", "ringing"),
                ("Direction", "inbound"),
            ];
            if let Some(f) = fwd {
                pairs.push(("ForwardedFrom", f));
            }
            let (header, key) = if carrier == Carrier::Twilio {
                ("x-twilio-signature", &creds.twilio_auth_token)
            } else {
                ("x-signalwire-signature", &creds.signalwire_signing_key)
            };
            let sig = twilio::signature(key, &url, &owned(&pairs));
            Request {
                method: "POST",
                url,
                headers: vec![form_ct, (header.into(), sig)],
                body: form(&pairs),
            }
        }
        Carrier::Telnyx => {
            let mut pairs = vec![
                ("CallSid", call.carrier_call_id.as_str()),
                ("CallControlId", &call.carrier_call_id),
                ("To", &call.to),
                ("From", &call.from),
                ("CallStatus", "ringing"),
            ];
            if let Some(f) = fwd {
                pairs.push(("ForwardedFrom", f));
            }
            let body = form(&pairs);
            let ts = now_secs.to_string();
            let mut message = format!("{ts}|").into_bytes();
            message.extend_from_slice(&body);
            use ed25519_dalek::Signer;
            let key = ed25519_dalek::SigningKey::from_bytes(&creds.telnyx_signing_key);
            let sig =
                base64::engine::general_purpose::STANDARD.encode(key.sign(&message).to_bytes());
            Request {
                method: "POST",
                url,
                headers: vec![
                    form_ct,
                    ("telnyx-signature-ed25519".into(), sig),
                    ("telnyx-timestamp".into(), ts),
                ],
                body,
            }
        }
        Carrier::Plivo => {
            let mut pairs = vec![
                ("CallUUID", call.carrier_call_id.as_str()),
                ("To", &call.to),
                ("From", &call.from),
                ("Direction", "inbound"),
            ];
            if let Some(f) = fwd {
                pairs.push(("ForwardedFrom", f));
            }
            let nonce = uuid::Uuid::new_v4().simple().to_string();
            let sig = plivo::signature_v3(&creds.plivo_auth_token, &url, &owned(&pairs), &nonce);
            Request {
                method: "POST",
                url,
                headers: vec![
                    form_ct,
                    ("x-plivo-signature-v3".into(), sig),
                    ("x-plivo-signature-v3-nonce".into(), nonce),
                ],
                body: form(&pairs),
            }
        }
        Carrier::Vonage => {
            // Vonage's default: GET with the fields as the query, numbers without `+`
            let query = form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("uuid", call.carrier_call_id.as_str()),
                    ("conversation_uuid", "CON-test"),
                    ("to", call.to.trim_start_matches('+')),
                    ("from", call.from.trim_start_matches('+')),
                ])
                .finish();
            let jwt = vonage::sign_jwt(
                &creds.vonage_signature_secret,
                &json!({
                    "iat": now_secs,
                    "exp": now_secs + 300,
                    "jti": uuid::Uuid::new_v4().to_string(),
                    "api_key": "test",
                }),
            );
            Request {
                method: "GET",
                url: format!("{url}?{query}"),
                headers: vec![("authorization".into(), format!("Bearer {jwt}"))],
                body: Vec::new(),
            }
        }
        Carrier::Exotel => {
            let mut pairs = vec![
                ("CallSid", call.carrier_call_id.as_str()),
                ("CallTo", &call.to),
                ("CallFrom", &call.from),
            ];
            if let Some(f) = fwd {
                pairs.push(("ForwardedFrom", f));
            }
            let basic = base64::engine::general_purpose::STANDARD
                .encode(format!("exotel:{}", creds.exotel_stream_token));
            let query = String::from_utf8(form(&pairs)).unwrap_or_default();
            Request {
                method: "GET",
                url: format!("{url}?{query}"),
                headers: vec![("authorization".into(), format!("Basic {basic}"))],
                body: Vec::new(),
            }
        }
    }
}

/// What the carrier does with the server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CarrierAction {
    /// Open the media stream.
    Stream(StreamPlan),
    /// Hang up, after speaking `message` (Exotel: none; its flow goes on to its next applet).
    HangUp { message: Option<String> },
}

/// The media stream the answer asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPlan {
    /// The `ws(s)://` URL to connect to (public; its query is part of it).
    pub url: String,
    /// What the carrier hands back in its `start` (Twilio, SignalWire and Telnyx `<Parameter>`s,
    /// Plivo `extraHeaders`, Vonage NCCO `headers`, Exotel the URL's query).
    pub parameters: BTreeMap<String, String>,
    /// The audio asked for, in the carrier's own words (Telnyx `codec`, else `bidirectionalCodec`; Plivo
    /// `contentType`, Vonage `content-type`); `None` where the carrier's default applies.
    pub audio: Option<String>,
}

/// Read the server's answer (`status`, `body`) to `carrier`'s voice webhook.
pub fn parse_answer(carrier: Carrier, status: u16, body: &str) -> Result<CarrierAction, String> {
    match carrier {
        Carrier::Exotel => {
            if !(200..300).contains(&status) {
                return Ok(CarrierAction::HangUp { message: None });
            }
            let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
            let url = v["url"].as_str().ok_or("no url")?.to_string();
            let parameters = query_params(&url);
            Ok(CarrierAction::Stream(StreamPlan {
                url,
                parameters,
                audio: None,
            }))
        }
        Carrier::Vonage => {
            if status != 200 {
                return Err(format!("status {status}"));
            }
            let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
            let action = v.get(0).ok_or("empty NCCO")?;
            match action["action"].as_str() {
                Some("talk") => Ok(CarrierAction::HangUp {
                    message: action["text"].as_str().map(String::from),
                }),
                Some("connect") => {
                    let ep = &action["endpoint"][0];
                    if ep["type"] != "websocket" {
                        return Err("connect to something other than a websocket".into());
                    }
                    let parameters = ep["headers"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                                .collect()
                        })
                        .unwrap_or_default();
                    Ok(CarrierAction::Stream(StreamPlan {
                        url: ep["uri"].as_str().ok_or("no uri")?.to_string(),
                        parameters,
                        audio: ep["content-type"].as_str().map(String::from),
                    }))
                }
                other => Err(format!("unexpected NCCO action {other:?}")),
            }
        }
        Carrier::Twilio | Carrier::SignalWire | Carrier::Telnyx | Carrier::Plivo => {
            if status != 200 {
                return Err(format!("status {status}"));
            }
            parse_xml(carrier, body)
        }
    }
}

fn query_params(url: &str) -> BTreeMap<String, String> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn parse_xml(carrier: Carrier, body: &str) -> Result<CarrierAction, String> {
    let doc = roxmltree::Document::parse(body).map_err(|e| format!("not XML: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "Response" {
        return Err("not a <Response>".into());
    }
    let spoken = ["Say", "Speak"];
    let mut message = None;
    for node in root.children().filter(|n| n.is_element()) {
        let name = node.tag_name().name();
        if spoken.contains(&name) {
            message = node.text().map(String::from);
        } else if name == "Hangup" {
            return Ok(CarrierAction::HangUp { message });
        } else if name == "Connect" || (carrier == Carrier::Plivo && name == "Stream") {
            let stream = if name == "Stream" {
                node
            } else {
                node.children()
                    .find(|n| n.has_tag_name("Stream"))
                    .ok_or("<Connect> without <Stream>")?
            };
            if carrier == Carrier::Plivo {
                let parameters = stream
                    .attribute("extraHeaders")
                    .unwrap_or("")
                    .split([',', ';'])
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect();
                return Ok(CarrierAction::Stream(StreamPlan {
                    url: stream.text().unwrap_or("").trim().to_string(),
                    parameters,
                    audio: stream.attribute("contentType").map(String::from),
                }));
            }
            let parameters = stream
                .children()
                .filter(|n| n.has_tag_name("Parameter"))
                .filter_map(|n| {
                    Some((
                        n.attribute("name")?.to_string(),
                        n.attribute("value")?.to_string(),
                    ))
                })
                .collect();
            return Ok(CarrierAction::Stream(StreamPlan {
                url: stream
                    .attribute("url")
                    .ok_or("<Stream> without url")?
                    .to_string(),
                parameters,
                audio: stream
                    .attribute("codec")
                    .or(stream.attribute("bidirectionalCodec"))
                    .map(String::from),
            }));
        }
    }
    Err("neither a stream nor a hang-up".into())
}

/// Headers the carrier sends with the media upgrade: Twilio's signature of the stream URL (no
/// parameters); the other carriers send none (the URL carries the call's credential).
pub fn media_headers(
    carrier: Carrier,
    plan: &StreamPlan,
    creds: &Credentials,
) -> Vec<(String, String)> {
    match carrier {
        Carrier::Twilio => vec![(
            "x-twilio-signature".into(),
            twilio::signature(&creds.twilio_auth_token, &plan.url, &[]),
        )],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_read_back() {
        let twiml = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Connect><Stream url="wss://rx.example.com/telnyx/media?callId=c&amp;token=t" bidirectionalMode="rtp" bidirectionalCodec="PCMU"><Parameter name="callId" value="c"/><Parameter name="token" value="t"/></Stream></Connect></Response>"#;
        let CarrierAction::Stream(plan) = parse_answer(Carrier::Telnyx, 200, twiml).unwrap() else {
            panic!("not a stream")
        };
        assert_eq!(
            plan.url,
            "wss://rx.example.com/telnyx/media?callId=c&token=t"
        );
        assert_eq!(plan.parameters["token"], "t");
        assert_eq!(plan.audio.as_deref(), Some("PCMU"));
        let plivo = r#"<Response><Speak>Closed.</Speak><Hangup/></Response>"#;
        assert_eq!(
            parse_answer(Carrier::Plivo, 200, plivo).unwrap(),
            CarrierAction::HangUp {
                message: Some("Closed.".into())
            }
        );
        assert_eq!(
            parse_answer(Carrier::Exotel, 503, "busy").unwrap(),
            CarrierAction::HangUp { message: None }
        );
        assert!(parse_answer(Carrier::Twilio, 200, "<Response/>").is_err());
        assert!(parse_answer(Carrier::Vonage, 200, "[]").is_err());
        let req = Request {
            method: "GET",
            url: "http://rx.test/vonage/voice?a=1".into(),
            headers: vec![],
            body: vec![],
        };
        assert_eq!(req.path_and_query(), "/vonage/voice?a=1");
    }
}
