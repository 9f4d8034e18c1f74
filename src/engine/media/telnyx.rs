//! Telnyx media streaming (Call Control `stream_url` or TeXML `<Stream>`, bidirectional mode
//! `rtp`), docs/telephony-protocols.md §2.
//!
//! Telnyx → server, JSON text with snake_case keys: `connected`, `start` (with `stream_id` at the
//! top level, `call_control_id`, `from`/`to`, `custom_parameters` and `media_format`), `media`
//! (base64 RTP payload, no RTP header), `dtmf`, `mark` (echo), `stop`, and `error` (Telnyx
//! rejected a frame we sent). Server → Telnyx: `media`, `mark` and `clear`, with no stream id.
//!
//! The caller's codec comes from `start.media_format.encoding`: PCMU, PCMA, L16 (big-endian, RFC
//! 2586) or OPUS (with the `opus` feature); G722 and AMR-WB are refused. The codec Telnyx expects
//! back is not announced on the socket: it is the `stream_bidirectional_codec` the server asked
//! for, given to [`TelnyxCodec::new`] (PCMU by default). Marks come back when played, or at once
//! when nothing is queued, and all pending marks on `clear`. Media may arrive out of order
//! (`chunk` tells).

use std::borrow::Cow;

use serde::Deserialize;

use super::wire::{
    Parsed, RawDtmf, RawMark, RawMedia, audio_codec, borrowed_or_owned, dtmf_event, lenient_u64,
    mark_event, media_event, params_from_value, parse_json, push_base64, push_str_field,
};
use super::{
    AudioCodec, ByteOrder, Carrier, CarrierCodec, Inbound, Msg, OutMsgs, StreamStart, WireError,
    check_codecs,
};

/// Telnyx's L16 is 16-bit PCM in network byte order (RFC 2586; as pipecat sends it).
pub const L16_ORDER: ByteOrder = ByteOrder::Big;

/// Telnyx behind [`CarrierCodec`].
#[derive(Debug)]
pub struct TelnyxCodec {
    outbound: AudioCodec,
}

impl TelnyxCodec {
    /// A codec for a stream requested with `stream_bidirectional_codec` = `outbound` (L16 is
    /// taken as big-endian whatever `outbound` says).
    pub fn new(outbound: AudioCodec) -> Self {
        let outbound = match outbound {
            AudioCodec::L16 { rate, .. } => AudioCodec::L16 {
                rate,
                order: L16_ORDER,
            },
            other => other,
        };
        Self { outbound }
    }
}

impl Default for TelnyxCodec {
    fn default() -> Self {
        Self::new(AudioCodec::Mulaw)
    }
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "borrowed_or_owned")]
    stream_id: Option<Cow<'a, str>>,
    #[serde(default)]
    start: Option<RawStart>,
    #[serde(default, borrow)]
    media: Option<RawMedia<'a>>,
    #[serde(default)]
    dtmf: Option<RawDtmf>,
    #[serde(default, borrow)]
    mark: Option<RawMark<'a>>,
    /// Only on `error`.
    #[serde(default)]
    payload: Option<RawError>,
}

#[derive(Deserialize)]
struct RawStart {
    #[serde(default)]
    call_control_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    custom_parameters: Option<serde_json::Value>,
    #[serde(default)]
    media_format: Option<RawFormat>,
}

#[derive(Deserialize)]
struct RawFormat {
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    sample_rate: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    channels: Option<u64>,
}

#[derive(Deserialize)]
struct RawError {
    #[serde(default, deserialize_with = "lenient_u64")]
    code: Option<u64>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

const EVENTS: [&str; 7] = [
    "connected",
    "start",
    "media",
    "dtmf",
    "mark",
    "stop",
    "error",
];

impl TelnyxCodec {
    fn start(
        &self,
        raw_stream_id: Option<Cow<'_, str>>,
        start: RawStart,
    ) -> Result<Inbound<'static>, WireError> {
        let call_id = start
            .call_control_id
            .ok_or(WireError::MissingField("start.call_control_id"))?;
        let format = start.media_format;
        let (encoding, rate, channels) = match format {
            Some(f) => (f.encoding, f.sample_rate, f.channels),
            None => (None, None, None),
        };
        if channels.is_some_and(|c| c != 1) {
            return Err(WireError::unsupported("more than one channel (mono only)"));
        }
        let codec = audio_codec(
            encoding.as_deref().unwrap_or("PCMU"),
            rate,
            L16_ORDER,
            16000,
        )?;
        check_codecs(codec, self.outbound)?;
        Ok(Inbound::Start(Box::new(StreamStart {
            carrier: Carrier::Telnyx,
            stream_id: raw_stream_id.map(Cow::into_owned).unwrap_or_default(),
            call_id: Some(call_id),
            account_id: start.user_id,
            from: start.from,
            to: start.to,
            codec,
            outbound_codec: self.outbound,
            custom_parameters: params_from_value(start.custom_parameters)?,
        })))
    }
}

impl CarrierCodec for TelnyxCodec {
    fn carrier(&self) -> Carrier {
        Carrier::Telnyx
    }

    fn parse<'a>(&mut self, msg: Msg<'a>) -> Result<Inbound<'a>, WireError> {
        let Msg::Text(text) = msg else {
            return Err(WireError::Unexpected("binary message on a JSON stream"));
        };
        let raw: Raw<'a> = match parse_json(text, &EVENTS)? {
            Parsed::Known(raw) => raw,
            Parsed::Unknown(event) => return Ok(Inbound::Ignored(Cow::Borrowed(event))),
        };
        match raw.event.as_ref() {
            "connected" => Ok(Inbound::Connected),
            "start" => {
                let start = raw.start.ok_or(WireError::MissingField("start"))?;
                self.start(raw.stream_id, start)
            }
            "media" => media_event(raw.media),
            "dtmf" => dtmf_event(raw.dtmf),
            "mark" => mark_event(raw.mark),
            "stop" => Ok(Inbound::Stop),
            "error" => {
                let e = raw.payload.ok_or(WireError::MissingField("payload"))?;
                let title = match (e.title, e.detail) {
                    (Some(t), Some(d)) => format!("{t}: {d}"),
                    (t, d) => t.or(d).unwrap_or_default(),
                };
                Ok(Inbound::CarrierError {
                    code: e.code,
                    title,
                })
            }
            _ => Ok(Inbound::Ignored(raw.event)),
        }
    }

    fn write_media(&mut self, audio: &[u8], out: &mut OutMsgs) {
        out.push_text(|s| {
            s.push_str("{\"event\":\"media\",\"media\":{\"payload\":\"");
            push_base64(s, audio);
            s.push_str("\"}}");
        });
    }

    fn write_mark(&mut self, name: &str, out: &mut OutMsgs) {
        out.push_text(|s| {
            s.push_str("{\"event\":\"mark\",\"mark\":{");
            push_str_field(s, "name", name);
            s.push_str("}}");
        });
    }

    fn write_clear(&mut self, out: &mut OutMsgs) {
        out.push_text(|s| s.push_str("{\"event\":\"clear\"}"));
    }

    fn echoes_marks(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::media::tests::{b64, json_texts};
    use crate::engine::media::{MAX_MESSAGE_BYTES, Payload};

    // The doc's sample messages (docs/telephony-protocols.md §2.2), verbatim but for the elided
    // ids ("...") and the placeholder payload, which are filled in.
    const DOC_CONNECTED: &str = r#"{ "event": "connected", "version": "1.0.0" }"#;
    const DOC_START: &str = r#"{
  "event": "start", "sequence_number": "1",
  "start": {
    "user_id": "3E6F995F-...", "call_control_id": "v2:T02llQx...", "call_session_id": "ff55a038-...",
    "from": "+13122010094", "to": "+13122123456", "tags": ["TAG1","TAG2"],
    "client_state": "aGF2ZSBh...", "custom_parameters": { "customer_id": "customer_123" },
    "media_format": { "encoding": "PCMU", "sample_rate": 8000, "channels": 1 }
  },
  "stream_id": "32DE0DEA-53CB-4B21-89A4-9E1819C043BC"
}"#;
    const DOC_MEDIA: &str = r#"{ "event": "media", "sequence_number": "4",
  "media": { "track": "inbound", "chunk": "2", "timestamp": "5", "payload": "/////w==" },
  "stream_id": "32DE0DEA-..." }"#;
    const DOC_DTMF: &str = r#"{ "event": "dtmf", "stream_id": "...", "occurred_at": "2025-06-05T08:54:19.698408Z",
  "sequence_number": "5", "dtmf": { "digit": "1" } }"#;
    const DOC_MARK: &str = r#"{ "event": "mark", "stream_id": "...", "sequence_number": "5", "mark": { "name": "some_mark_name" } }"#;
    const DOC_STOP: &str = r#"{ "event": "stop", "sequence_number": "5",
  "stop": { "user_id": "...", "call_control_id": "v2:..." }, "stream_id": "..." }"#;
    const DOC_ERROR: &str = r#"{ "event": "error", "payload": { "code": 100003, "title": "malformed_frame", "detail": "..." }, "stream_id": "..." }"#;

    fn parse(codec: &mut TelnyxCodec, text: &'static str) -> Result<Inbound<'static>, WireError> {
        codec.parse(Msg::Text(text))
    }

    #[test]
    fn parses_the_doc_samples() {
        let mut codec = TelnyxCodec::default();
        assert_eq!(codec.carrier(), Carrier::Telnyx);
        assert_eq!(
            parse(&mut codec, DOC_CONNECTED).unwrap(),
            Inbound::Connected
        );
        let Inbound::Start(start) = parse(&mut codec, DOC_START).unwrap() else {
            panic!()
        };
        assert_eq!(start.stream_id, "32DE0DEA-53CB-4B21-89A4-9E1819C043BC");
        assert_eq!(start.call_id.as_deref(), Some("v2:T02llQx..."));
        assert_eq!(start.account_id.as_deref(), Some("3E6F995F-..."));
        assert_eq!(start.from.as_deref(), Some("+13122010094"));
        assert_eq!(start.to.as_deref(), Some("+13122123456"));
        assert_eq!(start.codec, AudioCodec::Mulaw);
        assert_eq!(start.outbound_codec, AudioCodec::Mulaw);
        assert_eq!(start.custom_parameters["customer_id"], "customer_123");
        assert_eq!(start.custom_parameters.len(), 1);

        let Inbound::Media {
            payload,
            timestamp_ms,
            chunk,
        } = parse(&mut codec, DOC_MEDIA).unwrap()
        else {
            panic!()
        };
        assert_eq!((timestamp_ms, chunk), (Some(5), Some(2)));
        let mut buf = Vec::new();
        assert_eq!(payload.bytes(&mut buf).unwrap(), [0xFF; 4]);

        assert_eq!(parse(&mut codec, DOC_DTMF).unwrap(), Inbound::Dtmf('1'));
        assert_eq!(
            parse(&mut codec, DOC_MARK).unwrap(),
            Inbound::Mark(Cow::Borrowed("some_mark_name"))
        );
        assert_eq!(parse(&mut codec, DOC_STOP).unwrap(), Inbound::Stop);
        assert_eq!(
            parse(&mut codec, DOC_ERROR).unwrap(),
            Inbound::CarrierError {
                code: Some(100003),
                title: "malformed_frame: ...".into()
            }
        );
        assert_eq!(
            parse(&mut codec, r#"{"event":"streaming.future","media":7}"#).unwrap(),
            Inbound::Ignored(Cow::Borrowed("streaming.future"))
        );
    }

    #[test]
    fn media_borrows_its_payload() {
        let mut codec = TelnyxCodec::default();
        let Inbound::Media { payload, .. } = codec.parse(Msg::Text(DOC_MEDIA)).unwrap() else {
            panic!()
        };
        assert!(matches!(payload, Payload::Base64(Cow::Borrowed(_))));
        // An escaped payload (a JSON encoder that escapes '/') still parses, owned.
        let escaped = DOC_MEDIA.replace("/////w==", "\\/\\/\\/\\/\\/w==");
        let Inbound::Media { payload, .. } = codec.parse(Msg::Text(&escaped)).unwrap() else {
            panic!()
        };
        assert!(matches!(payload, Payload::Base64(Cow::Owned(_))));
        assert_eq!(payload.bytes(&mut Vec::new()).unwrap(), [0xFF; 4]);
        // The outbound track of a both_tracks stream is the agent, not the caller.
        let outbound = DOC_MEDIA.replace("\"inbound\"", "\"outbound\"");
        assert!(matches!(
            codec.parse(Msg::Text(&outbound)).unwrap(),
            Inbound::Ignored(_)
        ));
    }

    #[test]
    fn codecs_from_the_start_message() {
        let with = |encoding: &str, rate: &str| {
            DOC_START
                .replace("\"PCMU\"", &format!("\"{encoding}\""))
                .replace("\"sample_rate\": 8000", &format!("\"sample_rate\": {rate}"))
        };
        let codec_of =
            |outbound: AudioCodec, text: &str| -> Result<(AudioCodec, AudioCodec), WireError> {
                match TelnyxCodec::new(outbound).parse(Msg::Text(text))? {
                    Inbound::Start(s) => Ok((s.codec, s.outbound_codec)),
                    other => panic!("{other:?}"),
                }
            };
        let mulaw = AudioCodec::Mulaw;
        assert_eq!(
            codec_of(mulaw, &with("PCMA", "8000")).unwrap(),
            (AudioCodec::Alaw, mulaw)
        );
        let l16 = AudioCodec::L16 {
            rate: 16000,
            order: ByteOrder::Big,
        };
        assert_eq!(
            codec_of(mulaw, &with("L16", "16000")).unwrap(),
            (l16, mulaw)
        );
        // L16 back to Telnyx is big-endian whatever the caller said.
        let le = AudioCodec::L16 {
            rate: 16000,
            order: ByteOrder::Little,
        };
        assert_eq!(codec_of(le, &with("L16", "16000")).unwrap(), (l16, l16));
        // No media_format: PCMU.
        let bare = r#"{"event":"start","start":{"call_control_id":"v2:1"}}"#;
        assert_eq!(codec_of(mulaw, bare).unwrap(), (mulaw, mulaw));

        let opus = codec_of(mulaw, &with("OPUS", "16000"));
        if cfg!(feature = "opus") {
            assert_eq!(opus.unwrap(), (AudioCodec::Opus { rate: 16000 }, mulaw));
        } else {
            let Err(WireError::UnsupportedCodec(what)) = opus else {
                panic!("{opus:?}")
            };
            assert_eq!(what, "OPUS (build with --features opus)");
        }
        // Opus back to the carrier: there is no encoder.
        assert!(matches!(
            codec_of(AudioCodec::Opus { rate: 16000 }, DOC_START),
            Err(WireError::UnsupportedCodec(w)) if w.contains("no encoder")
        ));
        for (enc, rate) in [
            ("G722", "8000"),
            ("AMR-WB", "16000"),
            ("L16", "44100"),
            ("PCMU", "16000"),
        ] {
            assert!(
                matches!(
                    codec_of(mulaw, &with(enc, rate)),
                    Err(WireError::UnsupportedCodec(_))
                ),
                "{enc} {rate}"
            );
        }
        let stereo = DOC_START.replace("\"channels\": 1", "\"channels\": 2");
        assert!(matches!(
            codec_of(mulaw, &stereo),
            Err(WireError::UnsupportedCodec(_))
        ));
        // custom_parameters in the request's array shape.
        let array = DOC_START.replace(
            r#"{ "customer_id": "customer_123" }"#,
            r#"[{"name":"customer_id","value":"customer_123"}]"#,
        );
        let Inbound::Start(s) = TelnyxCodec::default().parse(Msg::Text(&array)).unwrap() else {
            panic!()
        };
        assert_eq!(s.custom_parameters["customer_id"], "customer_123");
    }

    #[test]
    fn writes_round_trip() {
        let mut codec = TelnyxCodec::default();
        codec.parse(Msg::Text(DOC_START)).unwrap();
        let mut out = OutMsgs::new();
        let audio: Vec<u8> = (0..=255).collect();
        codec.write_media(&audio, &mut out);
        codec.write_mark("s1f10", &mut out);
        codec.write_mark("odd \"name\"", &mut out);
        codec.write_clear(&mut out);
        codec.flush(&mut out);
        let msgs = json_texts(&out);
        assert_eq!(msgs.len(), 4);
        assert_eq!(msgs[0]["event"], "media");
        assert_eq!(b64(&msgs[0]["media"]["payload"]), audio);
        assert_eq!(
            msgs[1],
            serde_json::json!({"event": "mark", "mark": {"name": "s1f10"}})
        );
        assert_eq!(msgs[2]["mark"]["name"], "odd \"name\"");
        assert_eq!(msgs[3], serde_json::json!({"event": "clear"}));
        // No stream id on outbound frames.
        assert!(msgs.iter().all(|m| m.get("stream_id").is_none()));
        assert!(codec.echoes_marks());
    }

    #[test]
    fn malformed_input_is_an_error() {
        let mut codec = TelnyxCodec::default();
        for bad in [
            r#"{"event":"media"}"#,
            r#"{"event":"media","media":{}}"#,
            r#"{"event":"media","media":{"payload":5}}"#,
            r#"{"event":"media","media":{"payload":"AA==","chunk":"x"}}"#,
            r#"{"event":"start"}"#,
            r#"{"event":"start","start":{}}"#,
            r#"{"event":"start","start":{"call_control_id":"v2:1","custom_parameters":"x"}}"#,
            r#"{"event":"start","start":{"call_control_id":"v2:1","media_format":{"sample_rate":-1}}}"#,
            r#"{"event":"dtmf","dtmf":{"digit":"x"}}"#,
            r#"{"event":"dtmf"}"#,
            r#"{"event":"mark","mark":{}}"#,
            r#"{"event":"error"}"#,
            r#"{"event":"media","media":{"payload":"AA=="}} trailing"#,
        ] {
            assert!(codec.parse(Msg::Text(bad)).is_err(), "{bad}");
        }
        assert!(matches!(
            codec.parse(Msg::Binary(&[0; 160])),
            Err(WireError::Unexpected(_))
        ));
        let huge = format!(
            "{{\"event\":\"connected\",\"x\":\"{}\"}}",
            "a".repeat(MAX_MESSAGE_BYTES)
        );
        assert!(matches!(
            codec.parse(Msg::Text(&huge)),
            Err(WireError::TooLarge)
        ));
        // Bad base64 is found when the payload is decoded.
        let Inbound::Media { payload, .. } = codec
            .parse(Msg::Text(r#"{"event":"media","media":{"payload":"@@@@"}}"#))
            .unwrap()
        else {
            panic!()
        };
        assert!(matches!(
            payload.bytes(&mut Vec::new()),
            Err(WireError::BadBase64)
        ));
    }
}
