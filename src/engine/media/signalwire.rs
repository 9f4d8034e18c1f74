//! SignalWire (cXML `<Connect><Stream>`), docs/telephony-protocols.md §5: Twilio's Media Streams
//! protocol message for message ([`super::twilio`]), except that the stream's `codec` attribute
//! can choose PCMA or L16 (`L16`, `L16@16000h`, `L16@24000h`) instead of PCMU, announced in
//! `start.mediaFormat`. Agent audio goes back in the same codec.
//!
//! Assumptions the doc leaves open (verify in staging): the `mediaFormat.encoding` names (read
//! leniently: `audio/x-mulaw`, `audio/x-alaw`, `audio/x-l16`, `L16`, `PCMA`, ...), L16 byte order
//! (taken as little-endian, [`L16_ORDER`]), and that marks are echoed, including on `clear`, as on
//! Twilio.

use super::twilio::{StartInfo, TwilioLikeStream};
use super::wire::{audio_codec, shown};
use super::{AudioCodec, ByteOrder, Carrier, CarrierCodec, Inbound, Msg, OutMsgs, WireError};

/// Byte order of SignalWire's L16 payloads: not documented; little-endian assumed.
pub const L16_ORDER: ByteOrder = ByteOrder::Little;

/// SignalWire behind [`CarrierCodec`].
#[derive(Debug, Default)]
pub struct SignalWireCodec {
    stream: TwilioLikeStream,
}

impl SignalWireCodec {
    pub fn new() -> Self {
        Self::default()
    }
}

/// The codec of a SignalWire start: PCMU (the default), PCMA or L16 at the stated rate; mono.
fn signalwire_codec(info: &StartInfo) -> Result<AudioCodec, WireError> {
    if info.channels != 1 {
        return Err(WireError::unsupported(format_args!(
            "{} with {} channels (mono only)",
            shown(&info.encoding),
            info.channels
        )));
    }
    audio_codec(
        &info.encoding,
        Some(u64::from(info.sample_rate)),
        L16_ORDER,
        8000,
    )
}

impl CarrierCodec for SignalWireCodec {
    fn carrier(&self) -> Carrier {
        Carrier::SignalWire
    }
    fn parse<'a>(&mut self, msg: Msg<'a>) -> Result<Inbound<'a>, WireError> {
        self.stream
            .parse(Carrier::SignalWire, msg, signalwire_codec)
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

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::engine::media::tests::{b64, json_texts};
    use crate::engine::media::{OutMsgs, Payload};

    /// Twilio's `start` sample (§1.4): SignalWire sends the same messages (§5).
    const START: &str = r#"{
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
    const SID: &str = "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";

    fn start_with(encoding: &str, rate: u32, channels: u32) -> Result<AudioCodec, WireError> {
        let text = START
            .replace("audio/x-mulaw", encoding)
            .replace("\"sampleRate\": 8000", &format!("\"sampleRate\": {rate}"))
            .replace("\"channels\": 1", &format!("\"channels\": {channels}"));
        match SignalWireCodec::new().parse(Msg::Text(&text))? {
            Inbound::Start(s) => {
                assert_eq!(s.codec, s.outbound_codec);
                Ok(s.codec)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_twilio_messages_and_the_codec_attribute() {
        let mut codec = SignalWireCodec::new();
        assert_eq!(codec.carrier(), Carrier::SignalWire);
        let Inbound::Start(start) = codec.parse(Msg::Text(START)).unwrap() else {
            panic!()
        };
        assert_eq!(start.carrier, Carrier::SignalWire);
        assert_eq!(start.stream_id, SID);
        assert_eq!(start.codec, AudioCodec::Mulaw);
        assert_eq!(start.custom_parameters["tenantId"], "t_123");
        let media = r#"{"event":"media","sequenceNumber":"4","media":{"track":"inbound","chunk":"2","timestamp":"5","payload":"AAEC"},"streamSid":"MZ"}"#;
        assert_eq!(
            codec.parse(Msg::Text(media)).unwrap(),
            Inbound::Media {
                payload: Payload::Base64(Cow::Borrowed("AAEC")),
                timestamp_ms: Some(5),
                chunk: Some(2)
            }
        );
        let dtmf = r#"{"event":"dtmf","streamSid":"MZ","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}"#;
        assert_eq!(codec.parse(Msg::Text(dtmf)).unwrap(), Inbound::Dtmf('1'));
        let mark =
            r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZ","mark":{"name":"my label"}}"#;
        assert_eq!(
            codec.parse(Msg::Text(mark)).unwrap(),
            Inbound::Mark(Cow::Borrowed("my label"))
        );

        // PCMA and L16 at the rates of the `codec` attribute.
        assert_eq!(
            start_with("audio/x-alaw", 8000, 1).unwrap(),
            AudioCodec::Alaw
        );
        assert_eq!(start_with("PCMA", 8000, 1).unwrap(), AudioCodec::Alaw);
        for rate in [8000, 16000, 24000] {
            for name in ["audio/x-l16", "L16", "audio/L16"] {
                assert_eq!(
                    start_with(name, rate, 1).unwrap(),
                    AudioCodec::L16 {
                        rate,
                        order: L16_ORDER
                    },
                    "{name} {rate}"
                );
            }
        }
        for (name, rate, channels) in [
            ("audio/G729", 8000, 1),
            ("audio/x-l16", 44100, 1),
            ("audio/x-mulaw", 8000, 2),
            ("audio/x-mulaw", 16000, 1),
        ] {
            assert!(
                matches!(
                    start_with(name, rate, channels),
                    Err(WireError::UnsupportedCodec(_))
                ),
                "{name} {rate} {channels}"
            );
        }
    }

    #[test]
    fn writes_twilio_messages() {
        let mut codec = SignalWireCodec::new();
        codec.parse(Msg::Text(START)).unwrap();
        let mut out = OutMsgs::new();
        codec.write_media(&[1, 2, 3], &mut out);
        codec.write_mark("s1end", &mut out);
        codec.write_clear(&mut out);
        let msgs = json_texts(&out);
        assert_eq!(msgs[0]["streamSid"], SID);
        assert_eq!(b64(&msgs[0]["media"]["payload"]), [1, 2, 3]);
        assert_eq!(
            msgs[1],
            serde_json::json!({"event": "mark", "streamSid": SID, "mark": {"name": "s1end"}})
        );
        assert_eq!(
            msgs[2],
            serde_json::json!({"event": "clear", "streamSid": SID})
        );
        assert!(codec.echoes_marks());
    }

    #[test]
    fn malformed_input_is_an_error() {
        let mut codec = SignalWireCodec::new();
        for bad in [
            r#"{"event":"start","start":{"streamSid":"MZ"}}"#,
            r#"{"event":"media","media":{}}"#,
            r#"{"event":"mark"}"#,
            "not json",
        ] {
            assert!(codec.parse(Msg::Text(bad)).is_err(), "{bad}");
        }
        assert!(matches!(
            codec.parse(Msg::Binary(&[1, 2])),
            Err(WireError::Unexpected(_))
        ));
    }
}
