//! Twilio Media Streams (bidirectional `<Connect><Stream>`), docs/telephony-protocols.md §1.4-1.6.
//!
//! Server side: [`parse`] what Twilio sends, [`write_media`], [`write_mark`], [`write_clear`] what
//! the server sends. Carrier side (tests, simulator, load generator): the `write_connected` ..
//! `write_stop` helpers and [`parse_outbound`].
//!
//! Parsing is lenient where carriers differ (counters as strings or numbers, unknown events,
//! unknown fields) and strict where it matters (missing required fields, bad base64, size).
//! Media messages are parsed without allocating: strings borrow from the input text. A borrowed
//! string cannot hold a JSON escape sequence, so an event name, track, media payload or mark
//! name that contains one (`\"`, `\/`, `\u00e9`, ...) is rejected with [`WireError::Json`];
//! Twilio sends none there, and the server should name its marks with plain ASCII.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::push_json_str;

/// Largest decoded media payload accepted (64 KiB, about 8 s of µ-law).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Largest message text accepted by [`parse`] and [`parse_outbound`].
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Twilio's `start.mediaFormat.encoding` for µ-law.
pub const ENCODING_MULAW: &str = "audio/x-mulaw";

/// Why a message was rejected. Never contains audio.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("malformed message: {0}")]
    Json(#[from] serde_json::Error),
    /// A field this event requires is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// The media payload is not valid base64.
    #[error("media payload is not valid base64")]
    BadBase64,
    /// A field is present but its value is unusable.
    #[error("bad value for `{0}`")]
    BadValue(&'static str),
    /// The message or its decoded payload exceeds the size limit.
    #[error("message too large")]
    TooLarge,
}

/// The `start` message: who the stream belongs to and its audio format.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StartInfo {
    pub stream_sid: String,
    pub call_sid: String,
    pub account_sid: String,
    pub tracks: Vec<String>,
    pub encoding: String,
    pub sample_rate: u32,
    pub channels: u32,
    pub custom_parameters: BTreeMap<String, String>,
}

impl StartInfo {
    /// True for the format Twilio always sends: µ-law, 8 kHz, mono.
    pub fn is_mulaw_8k_mono(&self) -> bool {
        self.encoding.eq_ignore_ascii_case(ENCODING_MULAW)
            && self.sample_rate == 8000
            && self.channels == 1
    }
}

/// A message from Twilio to the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound<'a> {
    /// First frame on the socket.
    Connected {
        protocol: Option<&'a str>,
        version: Option<&'a str>,
    },
    /// Exactly once, after `connected`.
    Start(StartInfo),
    /// Caller audio: base64 µ-law, borrowed from the message text (see [`decode_payload`]).
    Media {
        sequence: Option<u64>,
        chunk: Option<u64>,
        timestamp_ms: Option<u64>,
        track: Option<&'a str>,
        payload: &'a str,
    },
    /// A key press: `0`-`9`, `*`, `#`, `A`-`D`.
    Dtmf { digit: char, track: Option<&'a str> },
    /// Echo of a mark the server sent: playback reached it, or it was cleared.
    Mark { name: &'a str },
    /// The stream stopped or the call ended.
    Stop { call_sid: Option<String> },
    /// An event this code does not know; carriers add new ones, so this is not an error.
    Unknown { event: &'a str },
}

/// A message from the server to Twilio, as the carrier side sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound<'a> {
    Media { payload: &'a str },
    Mark { name: &'a str },
    Clear,
    Unknown { event: &'a str },
}

// ---------------------------------------------------------------------------------------------
// Parsing

#[derive(Deserialize)]
struct RawInbound<'a> {
    #[serde(borrow)]
    event: &'a str,
    #[serde(rename = "sequenceNumber", default, deserialize_with = "lenient_u64")]
    sequence_number: Option<u64>,
    /// Borrowed unless it contains escapes: a media message must not allocate.
    #[serde(
        rename = "streamSid",
        default,
        borrow,
        deserialize_with = "borrowed_or_owned"
    )]
    stream_sid: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    protocol: Option<&'a str>,
    #[serde(default, borrow)]
    version: Option<&'a str>,
    #[serde(default)]
    start: Option<RawStart>,
    #[serde(default, borrow)]
    media: Option<RawMedia<'a>>,
    #[serde(default, borrow)]
    dtmf: Option<RawDtmf<'a>>,
    #[serde(default, borrow)]
    mark: Option<RawMark<'a>>,
    #[serde(default)]
    stop: Option<RawStop>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStart {
    #[serde(default)]
    account_sid: Option<String>,
    #[serde(default)]
    stream_sid: Option<String>,
    #[serde(default)]
    call_sid: Option<String>,
    #[serde(default)]
    tracks: Option<Vec<String>>,
    #[serde(default)]
    media_format: Option<RawMediaFormat>,
    #[serde(default)]
    custom_parameters: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMediaFormat {
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    sample_rate: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    channels: Option<u64>,
}

#[derive(Deserialize)]
struct RawMedia<'a> {
    #[serde(default, borrow)]
    track: Option<&'a str>,
    #[serde(default, deserialize_with = "lenient_u64")]
    chunk: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    timestamp: Option<u64>,
    #[serde(default, borrow)]
    payload: Option<&'a str>,
}

#[derive(Deserialize)]
struct RawDtmf<'a> {
    #[serde(default, borrow)]
    track: Option<&'a str>,
    #[serde(default, deserialize_with = "lenient_digit")]
    digit: Option<char>,
}

#[derive(Deserialize)]
struct RawMark<'a> {
    #[serde(default, borrow)]
    name: Option<&'a str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStop {
    #[serde(default)]
    call_sid: Option<String>,
}

#[derive(Deserialize)]
struct RawOutbound<'a> {
    #[serde(borrow)]
    event: &'a str,
    #[serde(default, borrow)]
    media: Option<RawMedia<'a>>,
    #[serde(default, borrow)]
    mark: Option<RawMark<'a>>,
}

/// Just the discriminator, to classify messages whose body does not parse.
#[derive(Deserialize)]
struct EventOnly<'a> {
    #[serde(borrow)]
    event: &'a str,
}

const INBOUND_EVENTS: [&str; 6] = ["connected", "start", "media", "dtmf", "mark", "stop"];
const OUTBOUND_EVENTS: [&str; 3] = ["media", "mark", "clear"];

/// Parses a message from Twilio. Media messages do not allocate.
pub fn parse(text: &str) -> Result<Inbound<'_>, WireError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge);
    }
    let raw: RawInbound<'_> = match serde_json::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            return unknown_event(text, &INBOUND_EVENTS, e).map(|event| Inbound::Unknown { event });
        }
    };
    match raw.event {
        "connected" => Ok(Inbound::Connected {
            protocol: raw.protocol,
            version: raw.version,
        }),
        "start" => {
            let start = raw.start.ok_or(WireError::MissingField("start"))?;
            let stream_sid = start
                .stream_sid
                .or(raw.stream_sid.map(Cow::into_owned))
                .ok_or(WireError::MissingField("start.streamSid"))?;
            let call_sid = start
                .call_sid
                .ok_or(WireError::MissingField("start.callSid"))?;
            let format = start.media_format;
            let (encoding, sample_rate, channels) = match format {
                Some(f) => (f.encoding, f.sample_rate, f.channels),
                None => (None, None, None),
            };
            let sample_rate = u32::try_from(sample_rate.unwrap_or(8000))
                .map_err(|_| WireError::BadValue("start.mediaFormat.sampleRate"))?;
            let channels = u32::try_from(channels.unwrap_or(1))
                .map_err(|_| WireError::BadValue("start.mediaFormat.channels"))?;
            let custom_parameters = start
                .custom_parameters
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect();
            Ok(Inbound::Start(StartInfo {
                stream_sid,
                call_sid,
                account_sid: start.account_sid.unwrap_or_default(),
                tracks: start.tracks.unwrap_or_default(),
                encoding: encoding.unwrap_or_else(|| ENCODING_MULAW.to_owned()),
                sample_rate,
                channels,
                custom_parameters,
            }))
        }
        "media" => {
            let media = raw.media.ok_or(WireError::MissingField("media"))?;
            let payload = media
                .payload
                .ok_or(WireError::MissingField("media.payload"))?;
            Ok(Inbound::Media {
                sequence: raw.sequence_number,
                chunk: media.chunk,
                timestamp_ms: media.timestamp,
                track: media.track,
                payload,
            })
        }
        "dtmf" => {
            let dtmf = raw.dtmf.ok_or(WireError::MissingField("dtmf"))?;
            let digit = dtmf.digit.ok_or(WireError::MissingField("dtmf.digit"))?;
            Ok(Inbound::Dtmf {
                digit,
                track: dtmf.track,
            })
        }
        "mark" => {
            let mark = raw.mark.ok_or(WireError::MissingField("mark"))?;
            let name = mark.name.ok_or(WireError::MissingField("mark.name"))?;
            Ok(Inbound::Mark { name })
        }
        "stop" => Ok(Inbound::Stop {
            call_sid: raw.stop.and_then(|s| s.call_sid),
        }),
        event => Ok(Inbound::Unknown { event }),
    }
}

/// Parses a message from the server, as the carrier side (simulator, tests) sees it.
pub fn parse_outbound(text: &str) -> Result<Outbound<'_>, WireError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge);
    }
    let raw: RawOutbound<'_> = match serde_json::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            return unknown_event(text, &OUTBOUND_EVENTS, e)
                .map(|event| Outbound::Unknown { event });
        }
    };
    match raw.event {
        "media" => {
            let media = raw.media.ok_or(WireError::MissingField("media"))?;
            let payload = media
                .payload
                .ok_or(WireError::MissingField("media.payload"))?;
            Ok(Outbound::Media { payload })
        }
        "mark" => {
            let mark = raw.mark.ok_or(WireError::MissingField("mark"))?;
            let name = mark.name.ok_or(WireError::MissingField("mark.name"))?;
            Ok(Outbound::Mark { name })
        }
        "clear" => Ok(Outbound::Clear),
        event => Ok(Outbound::Unknown { event }),
    }
}

/// The full parse failed. If the text is an object whose event this code does not know, the
/// shape of its body is none of our business: return the event name (reported as `Unknown`).
fn unknown_event<'a>(
    text: &'a str,
    known: &[&str],
    err: serde_json::Error,
) -> Result<&'a str, WireError> {
    match serde_json::from_str::<EventOnly<'a>>(text) {
        Ok(e) if !known.contains(&e.event) => Ok(e.event),
        _ => Err(WireError::Json(err)),
    }
}

/// Decodes a base64 media payload into `out` (cleared first; no allocation once `out` has
/// grown to the payload size). Rejects bad base64 and payloads over [`MAX_PAYLOAD_BYTES`].
pub fn decode_payload(b64: &str, out: &mut Vec<u8>) -> Result<(), WireError> {
    out.clear();
    // 4 characters per 3 bytes, padded.
    if b64.len() > MAX_PAYLOAD_BYTES.div_ceil(3) * 4 {
        return Err(WireError::TooLarge);
    }
    if LENIENT_B64.decode_vec(b64.as_bytes(), out).is_err() {
        out.clear();
        return Err(WireError::BadBase64);
    }
    if out.len() > MAX_PAYLOAD_BYTES {
        out.clear();
        return Err(WireError::TooLarge);
    }
    Ok(())
}

/// Standard alphabet; padding optional on input (some carriers and tools omit it).
const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

// ---------------------------------------------------------------------------------------------
// Lenient scalars: Twilio sends counters as strings, other carriers as numbers.

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a non-negative integer, as a number or a string")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map(Some)
                .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.fract() == 0.0 && (0.0..9.0e15).contains(&v) {
                Ok(Some(v as u64))
            } else {
                Err(E::invalid_value(de::Unexpected::Float(v), &self))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            v.trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }
    d.deserialize_option(V)
}

/// `Option<Cow<str>>` that borrows when the JSON string has no escapes (serde's own `Cow`
/// impl always allocates when wrapped in `Option`).
fn borrowed_or_owned<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_str(V)
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
    }
    d.deserialize_option(V)
}

fn lenient_digit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<char>, D::Error> {
    struct V;
    impl V {
        fn check<E: de::Error>(c: char) -> Result<Option<char>, E> {
            let c = c.to_ascii_uppercase();
            if c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D') {
                Ok(Some(c))
            } else {
                Err(E::invalid_value(de::Unexpected::Char(c), &"a DTMF digit"))
            }
        }
    }
    impl<'de> Visitor<'de> for V {
        type Value = Option<char>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a DTMF digit: 0-9, *, #, A-D")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            match char::from_digit(v.min(10) as u32, 10) {
                Some(c) => Ok(Some(c)),
                None => Err(E::invalid_value(de::Unexpected::Unsigned(v), &self)),
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let mut chars = v.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Self::check(c),
                _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
            }
        }
    }
    d.deserialize_option(V)
}

// ---------------------------------------------------------------------------------------------
// Writing. Every function appends to `out`, a reusable buffer: no allocation once it is warm.

fn push_str_field(out: &mut String, key: &str, value: &str) {
    out.push('"');
    out.push_str(key);
    out.push_str("\":\"");
    push_json_str(out, value);
    out.push('"');
}

fn push_u64_str_field(out: &mut String, key: &str, value: u64) {
    out.push('"');
    out.push_str(key);
    // Writing to a String cannot fail.
    let _ = write!(out, "\":\"{value}\"");
}

/// Server → Twilio: agent audio (raw µ-law, no header).
pub fn write_media(stream_sid: &str, mulaw: &[u8], out: &mut String) {
    out.push_str("{\"event\":\"media\",");
    push_str_field(out, "streamSid", stream_sid);
    out.push_str(",\"media\":{\"payload\":\"");
    STANDARD.encode_string(mulaw, out);
    out.push_str("\"}}");
}

/// Server → Twilio: a mark, echoed when playback reaches it (or on `clear`).
pub fn write_mark(stream_sid: &str, name: &str, out: &mut String) {
    out.push_str("{\"event\":\"mark\",");
    push_str_field(out, "streamSid", stream_sid);
    out.push_str(",\"mark\":{");
    push_str_field(out, "name", name);
    out.push_str("}}");
}

/// Server → Twilio: drop all buffered agent audio.
pub fn write_clear(stream_sid: &str, out: &mut String) {
    out.push_str("{\"event\":\"clear\",");
    push_str_field(out, "streamSid", stream_sid);
    out.push('}');
}

/// Carrier side: the first frame.
pub fn write_connected(out: &mut String) {
    out.push_str("{\"event\":\"connected\",\"protocol\":\"Call\",\"version\":\"1.0.0\"}");
}

/// Carrier side: the `start` frame (`sequence` is normally 1).
pub fn write_start(info: &StartInfo, sequence: u64, out: &mut String) {
    out.push_str("{\"event\":\"start\",");
    push_u64_str_field(out, "sequenceNumber", sequence);
    out.push_str(",\"start\":{");
    push_str_field(out, "accountSid", &info.account_sid);
    out.push(',');
    push_str_field(out, "streamSid", &info.stream_sid);
    out.push(',');
    push_str_field(out, "callSid", &info.call_sid);
    out.push_str(",\"tracks\":[");
    for (i, t) in info.tracks.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        push_json_str(out, t);
        out.push('"');
    }
    out.push_str("],\"mediaFormat\":{");
    push_str_field(out, "encoding", &info.encoding);
    let _ = write!(
        out,
        ",\"sampleRate\":{},\"channels\":{}}}",
        info.sample_rate, info.channels
    );
    out.push_str(",\"customParameters\":{");
    for (i, (k, v)) in info.custom_parameters.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        push_json_str(out, k);
        out.push_str("\":\"");
        push_json_str(out, v);
        out.push('"');
    }
    out.push_str("}},");
    push_str_field(out, "streamSid", &info.stream_sid);
    out.push('}');
}

/// Carrier side: caller audio on the inbound track.
pub fn write_inbound_media(
    stream_sid: &str,
    sequence: u64,
    chunk: u64,
    timestamp_ms: u64,
    mulaw: &[u8],
    out: &mut String,
) {
    out.push_str("{\"event\":\"media\",");
    push_u64_str_field(out, "sequenceNumber", sequence);
    out.push_str(",\"media\":{\"track\":\"inbound\",");
    push_u64_str_field(out, "chunk", chunk);
    out.push(',');
    push_u64_str_field(out, "timestamp", timestamp_ms);
    out.push_str(",\"payload\":\"");
    STANDARD.encode_string(mulaw, out);
    out.push_str("\"},");
    push_str_field(out, "streamSid", stream_sid);
    out.push('}');
}

/// Carrier side: a key press (`dtmf.track` is `inbound_track`, unlike media's `inbound`).
pub fn write_inbound_dtmf(stream_sid: &str, sequence: u64, digit: char, out: &mut String) {
    out.push_str("{\"event\":\"dtmf\",");
    push_str_field(out, "streamSid", stream_sid);
    out.push(',');
    push_u64_str_field(out, "sequenceNumber", sequence);
    out.push_str(",\"dtmf\":{\"track\":\"inbound_track\",");
    let mut buf = [0u8; 4];
    push_str_field(out, "digit", digit.encode_utf8(&mut buf));
    out.push_str("}}");
}

/// Carrier side: the echo of a mark.
pub fn write_inbound_mark(stream_sid: &str, sequence: u64, name: &str, out: &mut String) {
    out.push_str("{\"event\":\"mark\",");
    push_u64_str_field(out, "sequenceNumber", sequence);
    out.push(',');
    push_str_field(out, "streamSid", stream_sid);
    out.push_str(",\"mark\":{");
    push_str_field(out, "name", name);
    out.push_str("}}");
}

/// Carrier side: the stream stopped.
pub fn write_stop(
    stream_sid: &str,
    account_sid: &str,
    call_sid: &str,
    sequence: u64,
    out: &mut String,
) {
    out.push_str("{\"event\":\"stop\",");
    push_u64_str_field(out, "sequenceNumber", sequence);
    out.push_str(",\"stop\":{");
    push_str_field(out, "accountSid", account_sid);
    out.push(',');
    push_str_field(out, "callSid", call_sid);
    out.push_str("},");
    push_str_field(out, "streamSid", stream_sid);
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";

    // The doc's sample messages, verbatim (docs/telephony-protocols.md §1.4-1.5).
    const DOC_CONNECTED: &str =
        r#"{ "event": "connected", "protocol": "Call", "version": "1.0.0" }"#;
    const DOC_START: &str = r#"{
  "event": "start",
  "sequenceNumber": "1",
  "start": {
    "accountSid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    "callSid": "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    "tracks": ["inbound"],
    "mediaFormat": { "encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1 },
    "customParameters": { "tenantId": "t_123", "callToken": "opaque-per-call-token" }
  },
  "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
}"#;
    const DOC_MEDIA: &str = r#"{
  "event": "media",
  "sequenceNumber": "4",
  "media": { "track": "inbound", "chunk": "2", "timestamp": "5", "payload": "no+JhoaJjpzS..." },
  "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
}"#;
    const DOC_DTMF: &str = r#"{ "event": "dtmf", "streamSid": "MZ...", "sequenceNumber": "5",
  "dtmf": { "track": "inbound_track", "digit": "1" } }"#;
    const DOC_MARK: &str = r#"{ "event": "mark", "sequenceNumber": "4", "streamSid": "MZ...", "mark": { "name": "my label" } }"#;
    const DOC_STOP: &str = r#"{ "event": "stop", "sequenceNumber": "5",
  "stop": { "accountSid": "AC...", "callSid": "CA..." },
  "streamSid": "MZ..." }"#;
    const DOC_OUT_MEDIA: &str = r#"{ "event": "media", "streamSid": "MZ...", "media": { "payload": "<base64 mu-law 8k>" } }"#;
    const DOC_OUT_MARK: &str =
        r#"{ "event": "mark",  "streamSid": "MZ...", "mark":  { "name": "resp-42" } }"#;
    const DOC_OUT_CLEAR: &str = r#"{ "event": "clear", "streamSid": "MZ..." }"#;

    fn sample_start() -> StartInfo {
        StartInfo {
            stream_sid: SID.into(),
            call_sid: "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX".into(),
            account_sid: "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX".into(),
            tracks: vec!["inbound".into()],
            encoding: ENCODING_MULAW.into(),
            sample_rate: 8000,
            channels: 1,
            custom_parameters: [
                ("tenantId", "t_123"),
                ("callToken", "opaque-per-call-token"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        }
    }

    #[test]
    fn doc_samples_parse() {
        assert_eq!(
            parse(DOC_CONNECTED).unwrap(),
            Inbound::Connected {
                protocol: Some("Call"),
                version: Some("1.0.0")
            }
        );
        let Inbound::Start(start) = parse(DOC_START).unwrap() else {
            panic!()
        };
        assert_eq!(start, sample_start());
        assert!(start.is_mulaw_8k_mono());
        assert_eq!(
            parse(DOC_MEDIA).unwrap(),
            Inbound::Media {
                sequence: Some(4),
                chunk: Some(2),
                timestamp_ms: Some(5),
                track: Some("inbound"),
                payload: "no+JhoaJjpzS...",
            }
        );
        assert_eq!(
            parse(DOC_DTMF).unwrap(),
            Inbound::Dtmf {
                digit: '1',
                track: Some("inbound_track")
            }
        );
        assert_eq!(parse(DOC_MARK).unwrap(), Inbound::Mark { name: "my label" });
        assert_eq!(
            parse(DOC_STOP).unwrap(),
            Inbound::Stop {
                call_sid: Some("CA...".into())
            }
        );
        assert_eq!(
            parse_outbound(DOC_OUT_MEDIA).unwrap(),
            Outbound::Media {
                payload: "<base64 mu-law 8k>"
            }
        );
        assert_eq!(
            parse_outbound(DOC_OUT_MARK).unwrap(),
            Outbound::Mark { name: "resp-42" }
        );
        assert_eq!(parse_outbound(DOC_OUT_CLEAR).unwrap(), Outbound::Clear);
    }

    #[test]
    fn every_message_round_trips() {
        let mut out = String::new();
        let audio: Vec<u8> = (0..=255u8).chain(0..=255).collect();
        let mut decoded = Vec::new();

        write_connected(&mut out);
        assert_eq!(
            parse(&out).unwrap(),
            Inbound::Connected {
                protocol: Some("Call"),
                version: Some("1.0.0")
            }
        );

        out.clear();
        let mut info = sample_start();
        info.custom_parameters
            .insert("odd \"key\"\n".into(), "va\\lue é".into());
        info.tracks.push("out\"bound".into());
        write_start(&info, 1, &mut out);
        assert_eq!(parse(&out).unwrap(), Inbound::Start(info.clone()));

        out.clear();
        write_inbound_media(SID, 4, 2, 40, &audio, &mut out);
        let Inbound::Media {
            sequence,
            chunk,
            timestamp_ms,
            track,
            payload,
        } = parse(&out).unwrap()
        else {
            panic!("{out}")
        };
        assert_eq!(
            (sequence, chunk, timestamp_ms, track),
            (Some(4), Some(2), Some(40), Some("inbound"))
        );
        decode_payload(payload, &mut decoded).unwrap();
        assert_eq!(decoded, audio);

        for digit in ['0', '9', '*', '#', 'A', 'D'] {
            out.clear();
            write_inbound_dtmf(SID, 5, digit, &mut out);
            assert_eq!(
                parse(&out).unwrap(),
                Inbound::Dtmf {
                    digit,
                    track: Some("inbound_track")
                }
            );
        }

        out.clear();
        write_inbound_mark(SID, 6, "resp-42", &mut out);
        assert_eq!(parse(&out).unwrap(), Inbound::Mark { name: "resp-42" });

        out.clear();
        write_stop(SID, "AC1", "CA1", 7, &mut out);
        assert_eq!(
            parse(&out).unwrap(),
            Inbound::Stop {
                call_sid: Some("CA1".into())
            }
        );

        // Server → carrier.
        out.clear();
        write_media(SID, &audio, &mut out);
        let Outbound::Media { payload } = parse_outbound(&out).unwrap() else {
            panic!("{out}")
        };
        decode_payload(payload, &mut decoded).unwrap();
        assert_eq!(decoded, audio);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["streamSid"], SID);

        out.clear();
        write_mark(SID, "resp-42", &mut out);
        assert_eq!(
            parse_outbound(&out).unwrap(),
            Outbound::Mark { name: "resp-42" }
        );
        out.clear();
        write_clear(SID, &mut out);
        assert_eq!(parse_outbound(&out).unwrap(), Outbound::Clear);
        assert_eq!(out, format!(r#"{{"event":"clear","streamSid":"{SID}"}}"#));
    }

    #[test]
    fn written_messages_match_the_doc_shapes() {
        let mut out = String::new();
        write_media("MZ1", &[0xFF, 0xFF, 0xFF], &mut out);
        assert_eq!(
            out,
            r#"{"event":"media","streamSid":"MZ1","media":{"payload":"////"}}"#
        );
        out.clear();
        write_mark("MZ1", "resp-42", &mut out);
        assert_eq!(
            out,
            r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"resp-42"}}"#
        );
        out.clear();
        write_inbound_media("MZ1", 4, 2, 5, &[0xFF; 3], &mut out);
        assert_eq!(
            out,
            r#"{"event":"media","sequenceNumber":"4","media":{"track":"inbound","chunk":"2","timestamp":"5","payload":"////"},"streamSid":"MZ1"}"#
        );
        out.clear();
        write_inbound_dtmf("MZ1", 5, '1', &mut out);
        assert_eq!(
            out,
            r#"{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}"#
        );
        out.clear();
        write_start(&sample_start(), 1, &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let doc: serde_json::Value = serde_json::from_str(DOC_START).unwrap();
        assert_eq!(v, doc);
        out.clear();
        write_stop("MZ...", "AC...", "CA...", 5, &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v,
            serde_json::from_str::<serde_json::Value>(DOC_STOP).unwrap()
        );
    }

    #[test]
    fn strings_from_the_network_are_escaped() {
        let evil = "x\",\"event\":\"clear\\\u{1}\n";
        let mut out = String::new();
        write_mark(evil, evil, &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["event"], "mark");
        assert_eq!(v["streamSid"], evil);
        assert_eq!(v["mark"]["name"], evil);
        out.clear();
        write_inbound_dtmf(evil, 1, '"', &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["dtmf"]["digit"], "\"");
        // A mark name with an escape cannot be borrowed: an error, not a panic.
        out.clear();
        write_inbound_mark("MZ", 1, "a\"b", &mut out);
        assert!(matches!(parse(&out), Err(WireError::Json(_))));
    }

    #[test]
    fn numbers_are_accepted_as_strings_or_numbers() {
        let m = r#"{"event":"media","sequenceNumber":4,"media":{"chunk":2,"timestamp":" 5 ","payload":""}}"#;
        assert_eq!(
            parse(m).unwrap(),
            Inbound::Media {
                sequence: Some(4),
                chunk: Some(2),
                timestamp_ms: Some(5),
                track: None,
                payload: ""
            }
        );
        let m = r#"{"event":"media","sequenceNumber":null,"media":{"chunk":2.0,"payload":"AA=="}}"#;
        assert!(matches!(
            parse(m).unwrap(),
            Inbound::Media {
                sequence: None,
                chunk: Some(2),
                ..
            }
        ));
        let s = r#"{"event":"start","start":{"streamSid":"MZ","callSid":"CA","mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":"8000","channels":"1"},"customParameters":{"n":5,"b":true,"z":null}}}"#;
        let Inbound::Start(info) = parse(s).unwrap() else {
            panic!()
        };
        assert_eq!((info.sample_rate, info.channels), (8000, 1));
        assert_eq!(info.custom_parameters["n"], "5");
        assert_eq!(info.custom_parameters["b"], "true");
        assert_eq!(info.custom_parameters["z"], "");
        // streamSid only at top level, no mediaFormat: defaults to µ-law 8 kHz mono.
        let s = r#"{"event":"start","streamSid":"MZtop","start":{"callSid":"CA"}}"#;
        let Inbound::Start(info) = parse(s).unwrap() else {
            panic!()
        };
        assert_eq!(info.stream_sid, "MZtop");
        let s = r#"{"event":"start","streamSid":"MZ\/top","start":{"callSid":"CA"}}"#;
        let Inbound::Start(info) = parse(s).unwrap() else {
            panic!()
        };
        assert_eq!(info.stream_sid, "MZ/top");
        assert!(info.is_mulaw_8k_mono());
        let d = r#"{"event":"dtmf","dtmf":{"digit":7}}"#;
        assert_eq!(
            parse(d).unwrap(),
            Inbound::Dtmf {
                digit: '7',
                track: None
            }
        );
        let d = r#"{"event":"dtmf","dtmf":{"digit":"b"}}"#;
        assert_eq!(
            parse(d).unwrap(),
            Inbound::Dtmf {
                digit: 'B',
                track: None
            }
        );
    }

    #[test]
    fn unknown_events_are_not_errors() {
        assert_eq!(
            parse(r#"{"event":"transcription","data":[1,2]}"#).unwrap(),
            Inbound::Unknown {
                event: "transcription"
            }
        );
        // Even when its body clashes with a known field's shape.
        assert_eq!(
            parse(r#"{"event":"future","media":17,"start":"x"}"#).unwrap(),
            Inbound::Unknown { event: "future" }
        );
        assert_eq!(
            parse_outbound(r#"{"event":"sendDigits","media":[]}"#).unwrap(),
            Outbound::Unknown {
                event: "sendDigits"
            }
        );
        // Unknown fields on known events are ignored.
        assert!(matches!(
            parse(r#"{"event":"mark","extra":{"a":[1]},"mark":{"name":"n","x":1}}"#).unwrap(),
            Inbound::Mark { name: "n" }
        ));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let bad = [
            "",
            "null",
            "[]",
            "42",
            "\"media\"",
            "{",
            "{}",
            r#"{"event":5}"#,
            r#"{"event":null}"#,
            r#"{"event":"media"}"#,
            r#"{"event":"media","media":{}}"#,
            r#"{"event":"media","media":{"payload":5}}"#,
            r#"{"event":"media","media":{"payload":"AA==","chunk":"x"}}"#,
            r#"{"event":"media","media":{"payload":"AA==","chunk":-1}}"#,
            r#"{"event":"media","media":{"payload":"AA==","chunk":"18446744073709551616"}}"#,
            r#"{"event":"media","sequenceNumber":1.5,"media":{"payload":"AA=="}}"#,
            r#"{"event":"start"}"#,
            r#"{"event":"start","start":{"callSid":"CA"}}"#,
            r#"{"event":"start","start":{"streamSid":"MZ"}}"#,
            r#"{"event":"start","start":{"streamSid":"MZ","callSid":"CA","mediaFormat":{"sampleRate":99999999999}}}"#,
            r#"{"event":"start","start":{"streamSid":"MZ","callSid":"CA","tracks":"inbound"}}"#,
            r#"{"event":"dtmf"}"#,
            r#"{"event":"dtmf","dtmf":{}}"#,
            r#"{"event":"dtmf","dtmf":{"digit":"12"}}"#,
            r#"{"event":"dtmf","dtmf":{"digit":"x"}}"#,
            r#"{"event":"dtmf","dtmf":{"digit":10}}"#,
            r#"{"event":"mark"}"#,
            r#"{"event":"mark","mark":{}}"#,
            r#"{"event":"media","media":{"payload":"AA=="}} trailing"#,
            r#"{"event":"media","event":"media","media":{"payload":"AA=="}}"#,
            "{\"event\":\"media\",\"media\":{\"payload\":\"\\ud800\"}}",
        ];
        for text in bad {
            assert!(parse(text).is_err(), "{text}");
        }
        for text in [
            "",
            "{}",
            r#"{"event":"media"}"#,
            r#"{"event":"mark","mark":{}}"#,
            r#"{"event":"media","media":{}}"#,
        ] {
            assert!(parse_outbound(text).is_err(), "{text}");
        }
        assert!(matches!(
            parse(r#"{"event":"mark"}"#),
            Err(WireError::MissingField("mark"))
        ));
        assert!(matches!(
            parse(r#"{"event":"media","media":{}}"#),
            Err(WireError::MissingField("media.payload"))
        ));
        let huge = format!(
            r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
            "A".repeat(MAX_MESSAGE_BYTES)
        );
        assert!(matches!(parse(&huge), Err(WireError::TooLarge)));
        assert!(matches!(parse_outbound(&huge), Err(WireError::TooLarge)));
        // Arbitrary bytes never panic.
        let mut x = 12345u32;
        for len in 0..300 {
            let s: String = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    const ALPHABET: &[u8] = b"{}[]\":,event media mark 0123456789\\u";
                    ALPHABET[x as usize % ALPHABET.len()] as char
                })
                .collect();
            let _ = parse(&s);
            let _ = parse_outbound(&s);
        }
    }

    #[test]
    fn payload_decoding() {
        let mut out = vec![9u8; 3];
        decode_payload("////", &mut out).unwrap();
        assert_eq!(out, [0xFF; 3]);
        decode_payload("AA==", &mut out).unwrap();
        assert_eq!(out, [0]);
        decode_payload("AA", &mut out).unwrap(); // padding optional
        assert_eq!(out, [0]);
        decode_payload("", &mut out).unwrap();
        assert!(out.is_empty());
        for bad in [
            "A",
            "AA=A",
            "####",
            "AAA=A",
            "no+JhoaJjpzS...",
            " AAAA",
            "AAAA\n",
        ] {
            out = vec![1];
            assert!(
                matches!(decode_payload(bad, &mut out), Err(WireError::BadBase64)),
                "{bad}"
            );
            assert!(out.is_empty());
        }
        let max = STANDARD.encode(vec![0u8; MAX_PAYLOAD_BYTES]);
        decode_payload(&max, &mut out).unwrap();
        assert_eq!(out.len(), MAX_PAYLOAD_BYTES);
        let over = STANDARD.encode(vec![0u8; MAX_PAYLOAD_BYTES + 1]);
        assert!(matches!(
            decode_payload(&over, &mut out),
            Err(WireError::TooLarge)
        ));
        let over_unpadded = "A".repeat(MAX_PAYLOAD_BYTES.div_ceil(3) * 4);
        assert!(matches!(
            decode_payload(&over_unpadded, &mut out),
            Err(WireError::TooLarge)
        ));
    }

    #[test]
    fn writers_reuse_the_buffer() {
        let mut out = String::with_capacity(2048);
        let cap = out.capacity();
        for i in 0..100 {
            out.clear();
            write_media(SID, &[0x7F; 160], &mut out);
            write_mark(SID, "resp-1", &mut out);
            write_clear(SID, &mut out);
            write_inbound_media(SID, i, i, i * 20, &[0xFF; 160], &mut out);
        }
        assert_eq!(out.capacity(), cap);
    }
}
