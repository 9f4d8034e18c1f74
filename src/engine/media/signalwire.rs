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
