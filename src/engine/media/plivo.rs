//! Plivo Audio Streams (`<Stream bidirectional="true">`), docs/telephony-protocols.md §3.
//!
//! Plivo → server, JSON text with camelCase keys (`streamId`, `callId`) and numeric counters:
//! `start` first (no `connected`), `media`, `dtmf`, `playedStream` (the echo of a checkpoint),
//! `clearedAudio` (the answer to a clear) and `stop`. Server → Plivo: `playAudio` (with the
//! codec and rate of the stream), `checkpoint` and `clearAudio`.
//!
//! Codecs: `audio/x-mulaw` at 8 kHz, or `audio/x-l16` at 8 or 16 kHz (little-endian assumed,
//! [`L16_ORDER`]); agent audio goes back in the same codec, which Plivo asks not to change
//! mid-stream. `media.timestamp` is Unix milliseconds: it is rebased on the first media message.
//! A checkpoint is echoed only once its audio has played; checkpoints discarded by a clear are not
//! documented as echoed (the engine treats a missing echo after a clear as "not heard" anyway).
//! `extra_headers` (`k=v` pairs separated by `;` or `,`) become the custom parameters.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;

use super::wire::{
    Parsed, RawDtmf, RawMedia, audio_codec, borrowed_or_owned, dtmf_event, lenient_u64,
    media_event, parse_json, push_base64, push_str_field, shown,
};
use super::{
    AudioCodec, ByteOrder, Carrier, CarrierCodec, Inbound, Msg, OutMsgs, StreamStart, WireError,
    check_codecs,
};

/// Byte order of Plivo's L16: not documented; little-endian assumed.
pub const L16_ORDER: ByteOrder = ByteOrder::Little;

/// Plivo behind [`CarrierCodec`].
#[derive(Debug)]
pub struct PlivoCodec {
    stream_id: String,
    codec: AudioCodec,
    started: bool,
    /// The first media message's timestamp: Plivo's are Unix time.
    timestamp_base: Option<u64>,
}

impl PlivoCodec {
    pub fn new() -> Self {
        Self {
            stream_id: String::new(),
            codec: AudioCodec::Mulaw,
            started: false,
            timestamp_base: None,
        }
    }
}

impl Default for PlivoCodec {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(default)]
    start: Option<RawStart>,
    #[serde(default, borrow)]
    media: Option<RawMedia<'a>>,
    #[serde(default)]
    dtmf: Option<RawDtmf>,
    /// `playedStream`: the checkpoint's name.
    #[serde(default, borrow, deserialize_with = "borrowed_or_owned")]
    name: Option<Cow<'a, str>>,
    #[serde(
        default,
        rename = "extra_headers",
        borrow,
        deserialize_with = "borrowed_or_owned"
    )]
    extra_headers: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStart {
    #[serde(default)]
    call_id: Option<String>,
    #[serde(default)]
    stream_id: Option<String>,
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    media_format: Option<RawFormat>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFormat {
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    sample_rate: Option<u64>,
}

const EVENTS: [&str; 6] = [
    "start",
    "media",
    "dtmf",
    "playedStream",
    "clearedAudio",
    "stop",
];

/// `userId=12345;sessionId=abc-xyz` (or comma-separated) → a map. Pairs without `=` are kept with
/// an empty value.
fn extra_headers(s: &str) -> BTreeMap<String, String> {
    s.split([';', ','])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim().to_owned(), v.trim().to_owned()),
            None => (p.to_owned(), String::new()),
        })
        .collect()
}

impl PlivoCodec {
    fn start(
        &mut self,
        start: RawStart,
        headers: Option<Cow<'_, str>>,
    ) -> Result<Inbound<'static>, WireError> {
        let stream_id = start
            .stream_id
            .ok_or(WireError::MissingField("start.streamId"))?;
        let call_id = start
            .call_id
            .ok_or(WireError::MissingField("start.callId"))?;
        let (encoding, rate) = match start.media_format {
            Some(f) => (f.encoding, f.sample_rate),
            None => (None, None),
        };
        let encoding = encoding.as_deref().unwrap_or("audio/x-mulaw");
        let codec = audio_codec(encoding, rate, L16_ORDER, 8000)?;
        if !matches!(codec, AudioCodec::Mulaw | AudioCodec::L16 { .. }) {
            return Err(WireError::unsupported(format_args!(
                "{} (Plivo streams are audio/x-mulaw or audio/x-l16)",
                shown(encoding)
            )));
        }
        check_codecs(codec, codec)?;
        if !self.started {
            self.started = true;
            self.stream_id.clone_from(&stream_id);
            self.codec = codec;
        }
        Ok(Inbound::Start(Box::new(StreamStart {
            carrier: Carrier::Plivo,
            stream_id,
            call_id: Some(call_id),
            account_id: start.account_id,
            from: None,
            to: None,
            codec,
            outbound_codec: codec,
            custom_parameters: headers.map(|h| extra_headers(&h)).unwrap_or_default(),
        })))
    }
}

impl CarrierCodec for PlivoCodec {
    fn carrier(&self) -> Carrier {
        Carrier::Plivo
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
            "start" => {
                let start = raw.start.ok_or(WireError::MissingField("start"))?;
                self.start(start, raw.extra_headers)
            }
            "media" => {
                let mut event = media_event(raw.media)?;
                if let Inbound::Media { timestamp_ms, .. } = &mut event
                    && let Some(ts) = *timestamp_ms
                {
                    let base = *self.timestamp_base.get_or_insert(ts);
                    *timestamp_ms = Some(ts.saturating_sub(base));
                }
                Ok(event)
            }
            "dtmf" => dtmf_event(raw.dtmf),
            "playedStream" => {
                let name = raw.name.ok_or(WireError::MissingField("name"))?;
                Ok(Inbound::Mark(name))
            }
            "clearedAudio" => Ok(Inbound::Cleared),
            "stop" => Ok(Inbound::Stop),
            _ => Ok(Inbound::Ignored(raw.event)),
        }
    }

    fn write_media(&mut self, audio: &[u8], out: &mut OutMsgs) {
        let content_type = match self.codec {
            AudioCodec::L16 { .. } => "audio/x-l16",
            _ => "audio/x-mulaw",
        };
        let rate = self.codec.sample_rate();
        out.push_text(|s| {
            s.push_str("{\"event\":\"playAudio\",");
            push_str_field(s, "streamId", &self.stream_id);
            s.push_str(",\"media\":{");
            push_str_field(s, "contentType", content_type);
            // Writing to a String cannot fail.
            let _ = write!(s, ",\"sampleRate\":{rate},\"payload\":\"");
            push_base64(s, audio);
            s.push_str("\"}}");
        });
    }

    fn write_mark(&mut self, name: &str, out: &mut OutMsgs) {
        out.push_text(|s| {
            s.push_str("{\"event\":\"checkpoint\",");
            push_str_field(s, "streamId", &self.stream_id);
            s.push(',');
            push_str_field(s, "name", name);
            s.push('}');
        });
    }

    fn write_clear(&mut self, out: &mut OutMsgs) {
        out.push_text(|s| {
            s.push_str("{\"event\":\"clearAudio\",");
            push_str_field(s, "streamId", &self.stream_id);
            s.push('}');
        });
    }

    fn echoes_marks(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::media::Payload;
    use crate::engine::media::tests::{b64, json_texts};

    // The doc's sample messages (docs/telephony-protocols.md §3.2), with the placeholder payload
    // filled in.
    const DOC_START: &str = r#"{ "event": "start", "sequenceNumber": 1,
  "start": { "callId": "12345678-...", "streamId": "87654321-...", "accountId": "MAXXXXXXXXXXXXXXXXXX",
             "tracks": ["inbound"], "mediaFormat": { "encoding": "audio/x-mulaw", "sampleRate": 8000 } },
  "extra_headers": "userId=12345;sessionId=abc-xyz" }"#;
    const DOC_MEDIA: &str = r#"{ "event": "media", "sequenceNumber": 42, "streamId": "87654321-...",
  "media": { "track": "inbound", "timestamp": "1705312200000", "chunk": 41, "payload": "////" },
  "extra_headers": "..." }"#;
    const DOC_DTMF: &str = r#"{ "event": "dtmf", "streamId": "...", "dtmf": { "digit": "5" } }"#;
    const DOC_PLAYED: &str =
        r#"{ "event": "playedStream", "streamId": "...", "name": "customer greeting audio" }"#;
    const DOC_CLEARED: &str =
        r#"{ "event": "clearedAudio", "streamId": "...", "sequenceNumber": 0 }"#;

    #[test]
    fn parses_the_doc_samples() {
        let mut codec = PlivoCodec::new();
        assert_eq!(codec.carrier(), Carrier::Plivo);
        let Inbound::Start(start) = codec.parse(Msg::Text(DOC_START)).unwrap() else {
            panic!()
        };
        assert_eq!(start.stream_id, "87654321-...");
        assert_eq!(start.call_id.as_deref(), Some("12345678-..."));
        assert_eq!(start.account_id.as_deref(), Some("MAXXXXXXXXXXXXXXXXXX"));
        assert_eq!(
            (start.codec, start.outbound_codec),
            (AudioCodec::Mulaw, AudioCodec::Mulaw)
        );
        assert_eq!(
            start.custom_parameters.into_iter().collect::<Vec<_>>(),
            [
                ("sessionId".to_string(), "abc-xyz".to_string()),
                ("userId".into(), "12345".into())
            ]
        );

        let Inbound::Media {
            payload,
            timestamp_ms,
            chunk,
        } = codec.parse(Msg::Text(DOC_MEDIA)).unwrap()
        else {
            panic!()
        };
        // Unix milliseconds, rebased on the first media message.
        assert_eq!((timestamp_ms, chunk), (Some(0), Some(41)));
        assert_eq!(payload, Payload::Base64(Cow::Borrowed("////")));
        let later = DOC_MEDIA.replace("1705312200000", "1705312200020");
        let Inbound::Media { timestamp_ms, .. } = codec.parse(Msg::Text(&later)).unwrap() else {
            panic!()
        };
        assert_eq!(timestamp_ms, Some(20));
        let earlier = DOC_MEDIA.replace("1705312200000", "1705312199000");
        let Inbound::Media { timestamp_ms, .. } = codec.parse(Msg::Text(&earlier)).unwrap() else {
            panic!()
        };
        assert_eq!(timestamp_ms, Some(0));

        assert_eq!(
            codec.parse(Msg::Text(DOC_DTMF)).unwrap(),
            Inbound::Dtmf('5')
        );
        assert_eq!(
            codec.parse(Msg::Text(DOC_PLAYED)).unwrap(),
            Inbound::Mark(Cow::Borrowed("customer greeting audio"))
        );
        assert_eq!(
            codec.parse(Msg::Text(DOC_CLEARED)).unwrap(),
            Inbound::Cleared
        );
        assert_eq!(
            codec.parse(Msg::Text(r#"{"event":"stop"}"#)).unwrap(),
            Inbound::Stop
        );
        assert_eq!(
            codec
                .parse(Msg::Text(r#"{"event":"played","name":5}"#))
                .unwrap(),
            Inbound::Ignored(Cow::Borrowed("played"))
        );
    }

    #[test]
    fn l16_streams_and_the_codecs_plivo_does_not_send() {
        let with = |encoding: &str, rate: u32| {
            DOC_START
                .replace("audio/x-mulaw", encoding)
                .replace("\"sampleRate\": 8000", &format!("\"sampleRate\": {rate}"))
        };
        for rate in [8000, 16000] {
            let Inbound::Start(s) = PlivoCodec::new()
                .parse(Msg::Text(&with("audio/x-l16", rate)))
                .unwrap()
            else {
                panic!()
            };
            let l16 = AudioCodec::L16 {
                rate,
                order: ByteOrder::Little,
            };
            assert_eq!((s.codec, s.outbound_codec), (l16, l16));
        }
        for (enc, rate) in [
            ("audio/x-alaw", 8000),
            ("audio/opus", 16000),
            ("audio/x-l16", 22050),
            ("audio/x-mulaw", 16000),
            ("audio/mpeg", 8000),
        ] {
            let text = with(enc, rate);
            let r = PlivoCodec::new().parse(Msg::Text(&text));
            assert!(
                matches!(r, Err(WireError::UnsupportedCodec(_))),
                "{enc}: {r:?}"
            );
        }
        // No mediaFormat: µ-law 8 kHz; no extra_headers: no parameters.
        let bare = r#"{"event":"start","start":{"callId":"c","streamId":"s"}}"#;
        let Inbound::Start(s) = PlivoCodec::new().parse(Msg::Text(bare)).unwrap() else {
            panic!()
        };
        assert_eq!(s.codec, AudioCodec::Mulaw);
        assert!(s.custom_parameters.is_empty());
        // The XML attribute's comma form.
        assert_eq!(
            extra_headers("tenantId=t123,callToken=abc, flag ,=x;"),
            [
                ("".to_string(), "x".to_string()),
                ("callToken".into(), "abc".into()),
                ("flag".into(), "".into()),
                ("tenantId".into(), "t123".into())
            ]
            .into()
        );
    }

    #[test]
    fn writes_round_trip() {
        let mut codec = PlivoCodec::new();
        let l16 = DOC_START
            .replace("audio/x-mulaw", "audio/x-l16")
            .replace("\"sampleRate\": 8000", "\"sampleRate\": 16000");
        codec.parse(Msg::Text(&l16)).unwrap();
        let mut out = OutMsgs::new();
        let audio = vec![0x12u8; 640];
        codec.write_media(&audio, &mut out);
        codec.write_mark("customer greeting audio", &mut out);
        codec.write_clear(&mut out);
        codec.flush(&mut out);
        let msgs = json_texts(&out);
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0]["event"], "playAudio");
        assert_eq!(msgs[0]["streamId"], "87654321-...");
        assert_eq!(msgs[0]["media"]["contentType"], "audio/x-l16");
        assert_eq!(msgs[0]["media"]["sampleRate"], 16000);
        assert_eq!(b64(&msgs[0]["media"]["payload"]), audio);
        assert_eq!(
            msgs[1],
            serde_json::json!({"event": "checkpoint", "streamId": "87654321-...", "name": "customer greeting audio"})
        );
        assert_eq!(
            msgs[2],
            serde_json::json!({"event": "clearAudio", "streamId": "87654321-..."})
        );
        assert!(codec.echoes_marks());

        // µ-law, as in the doc's example.
        let mut codec = PlivoCodec::new();
        codec.parse(Msg::Text(DOC_START)).unwrap();
        out.clear();
        codec.write_media(&[0xFF; 160], &mut out);
        let msgs = json_texts(&out);
        assert_eq!(msgs[0]["media"]["contentType"], "audio/x-mulaw");
        assert_eq!(msgs[0]["media"]["sampleRate"], 8000);
    }

    #[test]
    fn malformed_input_is_an_error() {
        let mut codec = PlivoCodec::new();
        for bad in [
            r#"{"event":"start"}"#,
            r#"{"event":"start","start":{"streamId":"s"}}"#,
            r#"{"event":"start","start":{"callId":"c"}}"#,
            r#"{"event":"start","start":{"callId":"c","streamId":"s","mediaFormat":{"sampleRate":"fast"}}}"#,
            r#"{"event":"media","media":{"chunk":41}}"#,
            r#"{"event":"media","media":{"payload":"AA==","timestamp":"yesterday"}}"#,
            r#"{"event":"dtmf","dtmf":{"digit":"55"}}"#,
            r#"{"event":"playedStream"}"#,
            r#"{"event":"playedStream","name":7}"#,
            "{\"event\":\"media\"",
        ] {
            assert!(codec.parse(Msg::Text(bad)).is_err(), "{bad}");
        }
        assert!(matches!(
            codec.parse(Msg::Binary(b"{}")),
            Err(WireError::Unexpected(_))
        ));
    }
}
