//! One carrier media stream glued to the engine, sans-IO: what a driver does per socket message
//! and per engine output, written once for the server, the engine tests, the bench and the tools.
//!
//! In: [`MediaSession::handle_message`] parses a message with the carrier's codec, decodes the
//! payload and transcodes it to µ-law 8 kHz, and hands the engine at most 160 bytes (20 ms) per
//! [`Input::CallerAudio`], later slices timestamped 20 ms later; DTMF, mark echoes and `stop`
//! become their inputs. Out: [`MediaSession::write`] transcodes an engine [`ToCaller`] to the
//! carrier's codec and writes it with the codec's writers into [`MediaSession::out`], which the
//! caller sends in order and then clears with [`MediaSession::clear_out`].
//!
//! Every buffer is reused: once warm, neither direction allocates per frame
//! (`tests/alloc_media.rs`).

use std::borrow::Cow;
use std::fmt;

use super::{
    AudioError, CarrierCodec, Codec, Inbound, InboundTranscoder, Msg, OutMsgs, OutboundTranscoder,
    StreamStart, WireError,
};
use crate::engine::{Input, ToCaller};

/// The engine takes at most this much caller audio (20 ms of µ-law 8 kHz) per input.
const FRAME_BYTES: usize = 160;

/// A message the session could not turn into engine inputs: the session should end.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The carrier broke its protocol (bad JSON, bad base64, wrong frame size, ...).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The payload was well-formed on the wire but is not audio in the stream's codec.
    #[error(transparent)]
    Audio(#[from] AudioError),
}

/// What a message was, beyond the engine inputs it produced: for the driver to log.
#[derive(Debug, PartialEq, Eq)]
pub enum Handled<'a> {
    /// Turned into engine inputs (or nothing to do: `connected`, a clear's confirmation).
    Done,
    /// A second `start` on the same stream: ignored.
    SecondStart,
    /// The carrier reported an error about something the server sent (Telnyx `error`).
    CarrierError { code: Option<u64> },
    /// An event this code does not use.
    Ignored(Cow<'a, str>),
}

/// A started carrier stream: its codec, its two transcoders and the buffers they reuse.
pub struct MediaSession {
    codec: Codec,
    inbound: InboundTranscoder,
    outbound: OutboundTranscoder,
    out: OutMsgs,
    /// A media message's payload, base64-decoded.
    payload: Vec<u8>,
}

impl fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaSession")
            .field("codec", &self.codec)
            .field("inbound", &self.inbound.codec())
            .field("outbound", &self.outbound.codec())
            .finish_non_exhaustive()
    }
}

impl MediaSession {
    /// The session of a stream whose `start` `codec` has parsed; refuses codecs this build
    /// cannot transcode.
    pub fn new(codec: Codec, start: &StreamStart) -> Result<Self, AudioError> {
        Ok(Self {
            codec,
            inbound: InboundTranscoder::new(start.codec)?,
            outbound: OutboundTranscoder::new(start.outbound_codec)?,
            out: OutMsgs::with_capacity(1024),
            // grows to the largest payload once (a call keeps it for its whole length: a 20 ms
            // µ-law payload is 160 bytes)
            payload: Vec::new(),
        })
    }

    /// The carrier's codec.
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// Whether the carrier echoes marks (if not, the engine times playback itself).
    pub fn echoes_marks(&self) -> bool {
        self.codec.echoes_marks()
    }

    /// How much agent audio the codec may hold back (ms); the engine paces this much further ahead.
    pub fn held_back_ms(&self) -> u64 {
        self.codec.held_back_ms()
    }

    /// Parses one message from the carrier and gives `input` the engine inputs it makes, in
    /// order. An `Err` is a protocol violation: the caller should end the session.
    pub fn handle_message<'a>(
        &mut self,
        msg: Msg<'a>,
        mut input: impl FnMut(Input<'_>),
    ) -> Result<Handled<'a>, SessionError> {
        match self.codec.parse(msg)? {
            Inbound::Media {
                payload,
                timestamp_ms,
                ..
            } => {
                let bytes = payload.bytes(&mut self.payload)?;
                let mulaw = self.inbound.decode(bytes)?;
                // the engine takes at most 20 ms per input; later slices are 20 ms later
                for (i, frame) in mulaw.chunks(FRAME_BYTES).enumerate() {
                    input(Input::CallerAudio {
                        timestamp_ms: timestamp_ms.map(|t| t + 20 * i as u64),
                        mulaw: frame,
                    });
                }
            }
            Inbound::Dtmf(digit) => input(Input::Dtmf(digit)),
            Inbound::Mark(name) => input(Input::MarkEchoed(&name)),
            Inbound::Stop => input(Input::CarrierStop),
            Inbound::Start(_) => return Ok(Handled::SecondStart),
            Inbound::CarrierError { code, .. } => return Ok(Handled::CarrierError { code }),
            Inbound::Connected | Inbound::Cleared => {}
            Inbound::Ignored(event) => return Ok(Handled::Ignored(event)),
        }
        Ok(Handled::Done)
    }

    /// Writes one engine output for the carrier into [`Self::out`].
    pub fn write(&mut self, msg: &ToCaller) {
        match msg {
            ToCaller::Media(frame) => {
                let audio = self.outbound.encode(frame);
                self.codec.write_media(audio, &mut self.out);
            }
            ToCaller::Mark(id) => {
                if id.last {
                    // the utterance ends: what the codec holds back goes out, padded (Exotel)
                    self.codec.flush(&mut self.out);
                }
                // a mark name is at most ~30 ASCII bytes: formatted on the stack
                let mut name = MarkName::default();
                let _ = fmt::write(&mut name, format_args!("{id}"));
                self.codec.write_mark(name.as_str(), &mut self.out);
            }
            ToCaller::Clear => {
                self.codec.write_clear(&mut self.out);
                self.outbound.reset();
            }
        }
    }

    /// Writes audio the codec holds back for the carrier's framing (Vonage, Exotel), padded
    /// with silence, and marks deferred behind it. [`Self::write`] does this before an
    /// utterance's last mark; call it when an utterance ends without one.
    pub fn flush(&mut self) {
        self.codec.flush(&mut self.out);
    }

    /// The messages written so far, to send in order.
    pub fn out(&self) -> &OutMsgs {
        &self.out
    }

    /// Forgets the messages written (after sending them), keeping the buffers.
    pub fn clear_out(&mut self) {
        self.out.clear();
    }
}

/// A mark's wire name, formatted without allocating.
struct MarkName {
    buf: [u8; 48],
    len: usize,
}

impl Default for MarkName {
    fn default() -> Self {
        Self {
            buf: [0; 48],
            len: 0,
        }
    }
}

impl MarkName {
    fn as_str(&self) -> &str {
        // only whole `&str`s are ever copied in
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for MarkName {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::call::MarkId;
    use crate::engine::media::{Carrier, twilio};

    fn twilio_session() -> MediaSession {
        let mut codec = Codec::new(Carrier::Twilio);
        let mut start = String::new();
        twilio::write_start(
            &twilio::StartInfo {
                stream_sid: "MZ1".into(),
                call_sid: "CA1".into(),
                account_sid: "AC1".into(),
                tracks: vec!["inbound".into()],
                encoding: twilio::ENCODING_MULAW.into(),
                sample_rate: 8000,
                channels: 1,
                custom_parameters: Default::default(),
            },
            1,
            &mut start,
        );
        let Ok(Inbound::Start(start)) = codec.parse(Msg::Text(&start)) else {
            panic!("start")
        };
        MediaSession::new(codec, &start).unwrap()
    }

    #[test]
    fn media_is_sliced_into_20ms_inputs_with_timestamps() {
        let mut s = twilio_session();
        let mut msg = String::new();
        twilio::write_inbound_media("MZ1", 2, 1, 100, &[0x7F; 400], &mut msg);
        let mut got = Vec::new();
        let handled = s
            .handle_message(Msg::Text(&msg), |i| match i {
                Input::CallerAudio {
                    timestamp_ms,
                    mulaw,
                } => got.push((timestamp_ms, mulaw.len())),
                other => panic!("{other:?}"),
            })
            .unwrap();
        assert_eq!(handled, Handled::Done);
        assert_eq!(
            got,
            vec![(Some(100), 160), (Some(120), 160), (Some(140), 80)]
        );
    }

    #[test]
    fn bad_payloads_are_errors_and_marks_round_trip() {
        let mut s = twilio_session();
        let bad = r#"{"event":"media","media":{"payload":"@@@"},"streamSid":"MZ1"}"#;
        assert!(s.handle_message(Msg::Text(bad), |_| {}).is_err());
        assert!(s.handle_message(Msg::Text("{"), |_| {}).is_err());

        let id = MarkId {
            speech: 12,
            frames: 340,
            last: true,
        };
        s.write(&ToCaller::Mark(id));
        s.write(&ToCaller::Clear);
        let msgs: Vec<_> = s.out().iter().collect();
        assert_eq!(msgs.len(), 2);
        let Msg::Text(mark) = msgs[0] else { panic!() };
        assert!(mark.contains("\"s12end340\""), "{mark}");
        s.clear_out();
        assert!(s.out().is_empty());

        let mut echo = String::new();
        twilio::write_inbound_mark("MZ1", 3, "s12end340", &mut echo);
        let mut marks = Vec::new();
        s.handle_message(Msg::Text(&echo), |i| {
            if let Input::MarkEchoed(m) = i {
                marks.push(m.to_owned());
            }
        })
        .unwrap();
        assert_eq!(marks, ["s12end340"]);
    }
}
