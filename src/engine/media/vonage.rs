//! Vonage Voice API WebSocket (NCCO `connect` to a `websocket` endpoint),
//! docs/telephony-protocols.md §4.
//!
//! Vonage → server: first a text message `{"event":"websocket:connected","content-type":
//! "audio/l16;rate=16000", ..}` with the NCCO's `headers` flattened into it (they become the
//! custom parameters); then binary frames of 16-bit little-endian PCM, exactly one 20 ms frame
//! each (320, 640 or 960 bytes at 8, 16 or 24 kHz: any other size is an error); DTMF as text
//! `websocket:dtmf` (the digit under `digit`, or under `dtmf`, as a string, number or object:
//! implementations disagree); `websocket:cleared` after a clear.
//!
//! Server → Vonage: binary frames of exactly 20 ms in the same format (the codec holds back a
//! partial frame until it is full, and pads it with silence on [`CarrierCodec::flush`] or before
//! a mark), and text `{"action":"clear"}`.
//!
//! No marks: Vonage's `notify` action (echoed as `websocket:notify`) is reported by independent
//! implementations but not confirmed by its documentation, so this codec writes no mark and
//! [`CarrierCodec::echoes_marks`] is false: the engine times playback with its own clock. Vonage
//! buffers at most 3072 outbound frames (about 60 s), far more than the engine sends ahead.

use std::borrow::Cow;

use super::wire::{MAX_MESSAGE_BYTES, audio_codec, shown, string_map};
use super::{
    AudioCodec, ByteOrder, Carrier, CarrierCodec, Chunker, Inbound, Msg, OutMsgs, Payload,
    StreamStart, WireError, check_codecs,
};

/// Vonage's PCM is little-endian.
pub const L16_ORDER: ByteOrder = ByteOrder::Little;

const DEFAULT_CODEC: AudioCodec = AudioCodec::L16 {
    rate: 16000,
    order: L16_ORDER,
};

/// Vonage behind [`CarrierCodec`].
#[derive(Debug)]
pub struct VonageCodec {
    /// One 20 ms frame in the stream's format, once `websocket:connected` has said which.
    frame_bytes: Option<usize>,
    held: Chunker,
}

impl VonageCodec {
    pub fn new() -> Self {
        let frame = DEFAULT_CODEC.bytes_per_20ms().unwrap_or(640);
        Self {
            frame_bytes: None,
            held: Chunker::new(frame, 0),
        }
    }

    fn connected(
        &mut self,
        mut fields: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Inbound<'static>, WireError> {
        let content_type = match fields.remove("content-type") {
            Some(serde_json::Value::String(s)) => s,
            Some(_) => return Err(WireError::BadValue("content-type")),
            None => return Err(WireError::MissingField("content-type")),
        };
        let codec = audio_codec(&content_type, None, L16_ORDER, 16000)?;
        let AudioCodec::L16 { rate, .. } = codec else {
            return Err(WireError::unsupported(format_args!(
                "{} (Vonage streams are audio/l16)",
                shown(&content_type)
            )));
        };
        if !matches!(rate, 8000 | 16000 | 24000) {
            return Err(WireError::unsupported(format_args!(
                "audio/l16 at {rate} Hz (Vonage: 8000, 16000 or 24000)"
            )));
        }
        check_codecs(codec, codec)?;
        let frame = codec.bytes_per_20ms().unwrap_or(640);
        if self.frame_bytes.is_none() {
            self.frame_bytes = Some(frame);
            self.held.reset(frame, 0);
        }
        fields.remove("event");
        Ok(Inbound::Start(Box::new(StreamStart {
            carrier: Carrier::Vonage,
            stream_id: String::new(),
            call_id: None,
            account_id: None,
            from: None,
            to: None,
            codec,
            outbound_codec: codec,
            custom_parameters: string_map(fields),
        })))
    }
}

impl Default for VonageCodec {
    fn default() -> Self {
        Self::new()
    }
}

/// A DTMF digit from `digit` or `dtmf`: a string or number, or an object with `digit`/`digits`.
fn dtmf_digit(fields: &serde_json::Map<String, serde_json::Value>) -> Result<char, WireError> {
    use serde_json::Value;
    let value = match (fields.get("digit"), fields.get("dtmf")) {
        (Some(v), _) => v,
        (None, Some(Value::Object(o))) => o
            .get("digit")
            .or_else(|| o.get("digits"))
            .ok_or(WireError::MissingField("dtmf.digit"))?,
        (None, Some(v)) => v,
        (None, None) => return Err(WireError::MissingField("digit")),
    };
    let c = match value {
        Value::String(s) => {
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => c,
                _ => return Err(WireError::BadValue("digit")),
            }
        }
        Value::Number(n) => match n.as_u64() {
            Some(d @ 0..=9) => char::from(b'0' + d as u8),
            _ => return Err(WireError::BadValue("digit")),
        },
        _ => return Err(WireError::BadValue("digit")),
    };
    let c = c.to_ascii_uppercase();
    if c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D') {
        Ok(c)
    } else {
        Err(WireError::BadValue("digit"))
    }
}

impl CarrierCodec for VonageCodec {
    fn carrier(&self) -> Carrier {
        Carrier::Vonage
    }

    fn parse<'a>(&mut self, msg: Msg<'a>) -> Result<Inbound<'a>, WireError> {
        let text = match msg {
            Msg::Binary(frame) => {
                let Some(expected) = self.frame_bytes else {
                    return Err(WireError::Unexpected("audio before websocket:connected"));
                };
                if frame.len() != expected {
                    return Err(WireError::FrameSize {
                        len: frame.len(),
                        expected,
                    });
                }
                return Ok(Inbound::Media {
                    payload: Payload::Raw(frame),
                    timestamp_ms: None,
                    chunk: None,
                });
            }
            Msg::Text(text) => text,
        };
        // Control messages only: rare, so parsed into a map.
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(WireError::TooLarge);
        }
        let mut fields: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)?;
        let event = match fields.get("event") {
            Some(serde_json::Value::String(e)) => e.as_str(),
            Some(_) => return Err(WireError::BadValue("event")),
            None => return Err(WireError::MissingField("event")),
        };
        match event {
            "websocket:connected" => self.connected(fields),
            "websocket:dtmf" => dtmf_digit(&fields).map(Inbound::Dtmf),
            "websocket:cleared" => Ok(Inbound::Cleared),
            _ => {
                let Some(serde_json::Value::String(event)) = fields.remove("event") else {
                    return Err(WireError::MissingField("event"));
                };
                Ok(Inbound::Ignored(Cow::Owned(event)))
            }
        }
    }

    fn write_media(&mut self, audio: &[u8], out: &mut OutMsgs) {
        self.held.push(audio, |frame| out.push_binary(frame));
    }

    /// No mark on Vonage: only the audio held back is flushed, so that it is not delayed.
    fn write_mark(&mut self, _name: &str, out: &mut OutMsgs) {
        self.flush(out);
    }

    fn write_clear(&mut self, out: &mut OutMsgs) {
        self.held.clear();
        out.push_text(|s| s.push_str("{\"action\":\"clear\"}"));
    }

    fn flush(&mut self, out: &mut OutMsgs) {
        self.held.flush(|frame| out.push_binary(frame));
    }

    fn echoes_marks(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::media::MAX_MESSAGE_BYTES;

    /// The doc's first message (§4.2) with the NCCO headers of §4.1 flattened into it.
    const DOC_CONNECTED: &str = r#"{"event":"websocket:connected","content-type":"audio/l16;rate=16000","tenantId":"t_123","caller":"+447700900001"}"#;

    fn connected(codec: &mut VonageCodec, rate: u32) -> Box<StreamStart> {
        let text = DOC_CONNECTED.replace("16000", &rate.to_string());
        match codec.parse(Msg::Text(&text)).unwrap() {
            Inbound::Start(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_the_doc_samples() {
        let mut codec = VonageCodec::new();
        assert_eq!(codec.carrier(), Carrier::Vonage);
        let start = connected(&mut codec, 16000);
        let l16 = AudioCodec::L16 {
            rate: 16000,
            order: ByteOrder::Little,
        };
        assert_eq!((start.codec, start.outbound_codec), (l16, l16));
        assert_eq!(start.stream_id, "");
        assert_eq!(start.call_id, None);
        assert_eq!(
            start.custom_parameters.into_iter().collect::<Vec<_>>(),
            [
                ("caller".to_string(), "+447700900001".to_string()),
                ("tenantId".into(), "t_123".into())
            ]
        );
        let frame = [7u8; 640];
        assert_eq!(
            codec.parse(Msg::Binary(&frame)).unwrap(),
            Inbound::Media {
                payload: Payload::Raw(&frame),
                timestamp_ms: None,
                chunk: None
            }
        );
        for dtmf in [
            r#"{"event":"websocket:dtmf","digit":"5","duration":260}"#,
            r#"{"event":"websocket:dtmf","dtmf":"5"}"#,
            r#"{"event":"websocket:dtmf","dtmf":5}"#,
            r#"{"event":"websocket:dtmf","dtmf":{"digit":"5","duration":260}}"#,
            r#"{"event":"websocket:dtmf","dtmf":{"digits":"5"}}"#,
        ] {
            assert_eq!(
                codec.parse(Msg::Text(dtmf)).unwrap(),
                Inbound::Dtmf('5'),
                "{dtmf}"
            );
        }
        assert_eq!(
            codec
                .parse(Msg::Text(r##"{"event":"websocket:dtmf","digit":"#"}"##))
                .unwrap(),
            Inbound::Dtmf('#')
        );
        assert_eq!(
            codec
                .parse(Msg::Text(r#"{"event":"websocket:cleared"}"#))
                .unwrap(),
            Inbound::Cleared
        );
        assert_eq!(
            codec
                .parse(Msg::Text(
                    r#"{"event":"websocket:notify","payload":{"a":1}}"#
                ))
                .unwrap(),
            Inbound::Ignored(Cow::Borrowed("websocket:notify"))
        );
    }

    #[test]
    fn binary_frames_must_be_one_20ms_frame() {
        for (rate, size) in [(8000, 320usize), (16000, 640), (24000, 960)] {
            let mut codec = VonageCodec::new();
            assert!(matches!(
                codec.parse(Msg::Binary(&vec![0; size])),
                Err(WireError::Unexpected(_))
            ));
            connected(&mut codec, rate);
            assert!(codec.parse(Msg::Binary(&vec![0; size])).is_ok());
            for wrong in [0, 1, size - 1, size + 1, size - 2, 2 * size, 64 * 1024] {
                match codec.parse(Msg::Binary(&vec![0; wrong])) {
                    Err(WireError::FrameSize { len, expected }) => {
                        assert_eq!((len, expected), (wrong, size));
                    }
                    other => panic!("{rate} Hz, {wrong} bytes: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn content_types() {
        for bad in [
            r#"{"event":"websocket:connected","content-type":"audio/l16;rate=44100"}"#,
            r#"{"event":"websocket:connected","content-type":"audio/l16;rate=48000"}"#,
            r#"{"event":"websocket:connected","content-type":"audio/pcmu"}"#,
            r#"{"event":"websocket:connected","content-type":"audio/ogg"}"#,
        ] {
            assert!(
                matches!(
                    VonageCodec::new().parse(Msg::Text(bad)),
                    Err(WireError::UnsupportedCodec(_))
                ),
                "{bad}"
            );
        }
        for bad in [
            r#"{"event":"websocket:connected"}"#,
            r#"{"event":"websocket:connected","content-type":16000}"#,
            r#"{"event":"websocket:connected","content-type":"audio/l16;rate=x"}"#,
        ] {
            assert!(VonageCodec::new().parse(Msg::Text(bad)).is_err(), "{bad}");
        }
        // No rate: 16 kHz.
        let text = r#"{"event":"websocket:connected","content-type":"audio/L16"}"#;
        let Inbound::Start(s) = VonageCodec::new().parse(Msg::Text(text)).unwrap() else {
            panic!()
        };
        assert_eq!(s.codec.sample_rate(), 16000);
    }

    #[test]
    fn writes_exact_frames_and_no_marks() {
        let mut codec = VonageCodec::new();
        connected(&mut codec, 16000);
        assert!(!codec.echoes_marks());
        let mut out = OutMsgs::new();
        let audio: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        codec.write_media(&audio, &mut out);
        assert_eq!(out.iter().collect::<Vec<_>>(), [Msg::Binary(&audio[..640])]);
        out.clear();
        // The mark writes nothing but flushes the partial frame, padded with silence.
        codec.write_mark("s1end", &mut out);
        let msgs: Vec<_> = out.iter().collect();
        assert_eq!(msgs.len(), 1);
        let Msg::Binary(frame) = msgs[0] else {
            panic!()
        };
        assert_eq!(frame.len(), 640);
        assert_eq!(&frame[..360], &audio[640..]);
        assert!(frame[360..].iter().all(|&b| b == 0));
        out.clear();
        codec.flush(&mut out);
        assert!(out.is_empty());
        // A clear drops what is held and tells Vonage.
        codec.write_media(&audio[..100], &mut out);
        assert!(out.is_empty());
        codec.write_clear(&mut out);
        assert_eq!(
            out.iter().collect::<Vec<_>>(),
            [Msg::Text(r#"{"action":"clear"}"#)]
        );
        out.clear();
        codec.flush(&mut out);
        assert!(out.is_empty());
        // 8 kHz streams get 320-byte frames back.
        let mut codec = VonageCodec::new();
        connected(&mut codec, 8000);
        codec.write_media(&[1; 640], &mut out);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|m| m == Msg::Binary(&[1; 320])));
    }

    #[test]
    fn malformed_input_is_an_error() {
        let mut codec = VonageCodec::new();
        connected(&mut codec, 16000);
        for bad in [
            "",
            "{",
            "[]",
            "{}",
            r#"{"event":null}"#,
            r#"{"event":"websocket:dtmf"}"#,
            r#"{"event":"websocket:dtmf","digit":"55"}"#,
            r#"{"event":"websocket:dtmf","digit":"x"}"#,
            r#"{"event":"websocket:dtmf","digit":12}"#,
            r#"{"event":"websocket:dtmf","digit":true}"#,
            r#"{"event":"websocket:dtmf","dtmf":{}}"#,
        ] {
            assert!(codec.parse(Msg::Text(bad)).is_err(), "{bad}");
        }
        let huge = format!(r#"{{"event":"x","y":"{}"}}"#, "a".repeat(MAX_MESSAGE_BYTES));
        assert!(matches!(
            codec.parse(Msg::Text(&huge)),
            Err(WireError::TooLarge)
        ));
    }
}
