//! Twilio Media Streams (bidirectional `<Connect><Stream>`), docs/telephony-protocols.md §1.4-1.6.
//!
//! Server side: [`parse`] what Twilio sends, [`write_media`], [`write_mark`], [`write_clear`] what
//! the server sends; [`TwilioCodec`] puts them behind the carrier-neutral
//! [`super::CarrierCodec`]. Carrier side (tests, simulator, load generator): the `write_connected` ..
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
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use super::wire::shown;
pub use super::wire::{MAX_MESSAGE_BYTES, MAX_PAYLOAD_BYTES, WireError, decode_payload};
use super::wire::{
    borrowed_or_owned, lenient_digit, lenient_u64, push_json_str, push_str_field,
    push_u64_str_field, string_map, unknown_event,
};
use super::{AudioCodec, Carrier, CarrierCodec, Msg, OutMsgs, Payload, StreamStart, check_codecs};

/// Twilio's `start.mediaFormat.encoding` for µ-law.
pub const ENCODING_MULAW: &str = "audio/x-mulaw";

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
            let custom_parameters = string_map(start.custom_parameters.unwrap_or_default());
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

// ---------------------------------------------------------------------------------------------
// Writing. Every function appends to `out`, a reusable buffer: no allocation once it is warm.

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

// ---------------------------------------------------------------------------------------------
// The carrier-neutral interface ([`super::CarrierCodec`]), shared with SignalWire.

/// Twilio behind [`CarrierCodec`]: [`parse`] and the writers above, with the stream sid from
/// `start`. Marks are echoed when played, and all pending marks on `clear`.
#[derive(Debug, Default)]
pub struct TwilioCodec {
    stream: TwilioLikeStream,
}

impl TwilioCodec {
    pub fn new() -> Self {
        Self::default()
    }
}

impl CarrierCodec for TwilioCodec {
    fn carrier(&self) -> Carrier {
        Carrier::Twilio
    }
    fn parse<'a>(&mut self, msg: Msg<'a>) -> Result<super::Inbound<'a>, WireError> {
        self.stream.parse(Carrier::Twilio, msg, twilio_codec)
    }
    fn write_media(&mut self, audio: &[u8], out: &mut OutMsgs) {
        self.stream.write_media(audio, out);
    }
    fn write_mark(&mut self, name: &str, out: &mut OutMsgs) {
        self.stream.write_mark(name, out);
    }
    fn write_clear(&mut self, out: &mut OutMsgs) {
        self.stream.write_clear(out);
    }
    fn echoes_marks(&self) -> bool {
        true
    }
}

/// Twilio sends µ-law 8 kHz mono and nothing else.
fn twilio_codec(info: &StartInfo) -> Result<AudioCodec, WireError> {
    if info.is_mulaw_8k_mono() {
        Ok(AudioCodec::Mulaw)
    } else {
        Err(WireError::unsupported(format_args!(
            "{} at {} Hz, {} channel(s) (Twilio streams are audio/x-mulaw, 8000 Hz, mono)",
            shown(&info.encoding),
            info.sample_rate,
            info.channels
        )))
    }
}

/// The per-call state of a Twilio-protocol stream (Twilio, SignalWire).
#[derive(Debug, Default)]
pub(super) struct TwilioLikeStream {
    stream_sid: String,
    started: bool,
}

impl TwilioLikeStream {
    /// Parses with [`parse`] and maps to the carrier-neutral events; `codec_of` reads the start's
    /// media format.
    pub(super) fn parse<'a>(
        &mut self,
        carrier: Carrier,
        msg: Msg<'a>,
        codec_of: fn(&StartInfo) -> Result<AudioCodec, WireError>,
    ) -> Result<super::Inbound<'a>, WireError> {
        let Msg::Text(text) = msg else {
            return Err(WireError::Unexpected("binary message on a JSON stream"));
        };
        Ok(match parse(text)? {
            Inbound::Connected { .. } => super::Inbound::Connected,
            Inbound::Start(info) => {
                let codec = codec_of(&info)?;
                check_codecs(codec, codec)?;
                if !self.started {
                    self.started = true;
                    self.stream_sid.clone_from(&info.stream_sid);
                }
                super::Inbound::Start(Box::new(StreamStart {
                    carrier,
                    stream_id: info.stream_sid,
                    call_id: Some(info.call_sid),
                    account_id: Some(info.account_sid).filter(|a| !a.is_empty()),
                    from: None,
                    to: None,
                    codec,
                    outbound_codec: codec,
                    custom_parameters: info.custom_parameters,
                }))
            }
            // A unidirectional both-tracks fork also carries the agent's audio: not the caller's.
            Inbound::Media {
                track: Some("outbound"),
                ..
            } => super::Inbound::Ignored(Cow::Borrowed("media (outbound track)")),
            Inbound::Media {
                chunk,
                timestamp_ms,
                payload,
                ..
            } => super::Inbound::Media {
                payload: Payload::Base64(Cow::Borrowed(payload)),
                timestamp_ms,
                chunk,
            },
            Inbound::Dtmf { digit, .. } => super::Inbound::Dtmf(digit),
            Inbound::Mark { name } => super::Inbound::Mark(Cow::Borrowed(name)),
            Inbound::Stop { .. } => super::Inbound::Stop,
            Inbound::Unknown { event } => super::Inbound::Ignored(Cow::Borrowed(event)),
        })
    }

    pub(super) fn write_media(&self, audio: &[u8], out: &mut OutMsgs) {
        out.push_text(|s| write_media(&self.stream_sid, audio, s));
    }

    pub(super) fn write_mark(&self, name: &str, out: &mut OutMsgs) {
        out.push_text(|s| write_mark(&self.stream_sid, name, s));
    }

    pub(super) fn write_clear(&self, out: &mut OutMsgs) {
        out.push_text(|s| write_clear(&self.stream_sid, s));
    }
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

    // ---- TwilioCodec: the same protocol behind the carrier-neutral interface ------------------

    #[test]
    fn codec_parses_the_doc_samples() {
        use crate::engine::media::Inbound as In;
        let mut codec = TwilioCodec::new();
        assert_eq!(codec.carrier(), Carrier::Twilio);
        assert_eq!(
            codec.parse(Msg::Text(DOC_CONNECTED)).unwrap(),
            In::Connected
        );
        let In::Start(start) = codec.parse(Msg::Text(DOC_START)).unwrap() else {
            panic!()
        };
        assert_eq!(start.carrier, Carrier::Twilio);
        assert_eq!(start.stream_id, SID);
        assert_eq!(
            start.call_id.as_deref(),
            Some("CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX")
        );
        assert_eq!(
            start.account_id.as_deref(),
            Some("ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX")
        );
        assert_eq!(
            (start.codec, start.outbound_codec),
            (AudioCodec::Mulaw, AudioCodec::Mulaw)
        );
        assert_eq!(start.custom_parameters, sample_start().custom_parameters);
        assert_eq!((start.from.as_deref(), start.to.as_deref()), (None, None));

        let In::Media {
            payload,
            timestamp_ms,
            chunk,
        } = codec.parse(Msg::Text(DOC_MEDIA)).unwrap()
        else {
            panic!()
        };
        assert_eq!((timestamp_ms, chunk), (Some(5), Some(2)));
        // The doc's payload is elided ("..."): not base64.
        assert_eq!(payload, Payload::Base64(Cow::Borrowed("no+JhoaJjpzS...")));
        let mut buf = Vec::new();
        assert!(matches!(payload.bytes(&mut buf), Err(WireError::BadBase64)));

        assert_eq!(codec.parse(Msg::Text(DOC_DTMF)).unwrap(), In::Dtmf('1'));
        assert_eq!(
            codec.parse(Msg::Text(DOC_MARK)).unwrap(),
            In::Mark(Cow::Borrowed("my label"))
        );
        assert_eq!(codec.parse(Msg::Text(DOC_STOP)).unwrap(), In::Stop);
        assert_eq!(
            codec
                .parse(Msg::Text(r#"{"event":"transcription"}"#))
                .unwrap(),
            In::Ignored(Cow::Borrowed("transcription"))
        );
    }

    #[test]
    fn codec_writes_with_the_stream_sid_from_start() {
        let mut codec = TwilioCodec::new();
        codec.parse(Msg::Text(DOC_START)).unwrap();
        // A second start does not change the stream the writers address.
        let second = DOC_START.replace(SID, "MZother");
        codec.parse(Msg::Text(&second)).unwrap();
        let mut out = OutMsgs::new();
        codec.write_media(&[0xFF; 160], &mut out);
        codec.write_mark("s1f10", &mut out);
        codec.write_clear(&mut out);
        codec.flush(&mut out);
        assert!(codec.echoes_marks());
        let msgs: Vec<serde_json::Value> = out
            .iter()
            .map(|m| match m {
                Msg::Text(t) => serde_json::from_str(t).unwrap(),
                Msg::Binary(_) => panic!("binary"),
            })
            .collect();
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0]["event"], "media");
        assert_eq!(msgs[0]["streamSid"], SID);
        let mut audio = Vec::new();
        decode_payload(msgs[0]["media"]["payload"].as_str().unwrap(), &mut audio).unwrap();
        assert_eq!(audio, [0xFF; 160]);
        assert_eq!(msgs[1]["mark"]["name"], "s1f10");
        assert_eq!(msgs[1]["streamSid"], SID);
        assert_eq!(
            msgs[2],
            serde_json::json!({"event": "clear", "streamSid": SID})
        );
    }

    #[test]
    fn codec_refuses_what_twilio_never_sends() {
        let mut codec = TwilioCodec::new();
        assert!(matches!(
            codec.parse(Msg::Binary(&[0; 160])),
            Err(WireError::Unexpected(_))
        ));
        let l16 = DOC_START.replace("audio/x-mulaw", "audio/x-l16");
        let Err(WireError::UnsupportedCodec(what)) = codec.parse(Msg::Text(&l16)) else {
            panic!()
        };
        assert!(what.contains("audio/x-l16"), "{what}");
        let stereo = DOC_START.replace("\"channels\": 1", "\"channels\": 2");
        assert!(matches!(
            codec.parse(Msg::Text(&stereo)),
            Err(WireError::UnsupportedCodec(_))
        ));
        // The agent's own track on a both-tracks fork is not caller audio.
        let outbound = DOC_MEDIA.replace("\"track\": \"inbound\"", "\"track\": \"outbound\"");
        assert!(matches!(
            codec.parse(Msg::Text(&outbound)).unwrap(),
            crate::engine::media::Inbound::Ignored(_)
        ));
    }
}
