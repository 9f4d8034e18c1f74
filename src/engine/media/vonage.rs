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
