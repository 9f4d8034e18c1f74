//! Carrier media-stream wire formats ⇄ typed events. Parse and serialise only: no I/O, no clock,
//! no policy. One sans-IO codec per carrier (`docs/telephony-protocols.md`) behind
//! [`CarrierCodec`]; [`Codec`] holds any of them by value (no `dyn`, no box per call). Turning the
//! carrier's audio into the engine's µ-law 8 kHz and back is not the codec's job but the
//! transcoders' ([`InboundTranscoder`], [`OutboundTranscoder`]): the wire format and the audio
//! format vary independently (Telnyx's two directions can even differ).
//!
//! How a driver uses it, per call: `Codec::new(carrier)`, then [`CarrierCodec::parse`] every
//! socket message (`Err` = protocol violation: end the session). On [`Inbound::Start`], check the
//! stream's `custom_parameters`/`call_id` and build the two transcoders from `start.codec` and
//! `start.outbound_codec` (a start whose codecs this build cannot serve is already an `Err`); drop
//! media before it. On [`Inbound::Media`]: [`Payload::bytes`] into a reused buffer, transcode, and
//! feed the engine at most 160 bytes (20 ms) per input. Engine output: transcode each frame, then
//! `write_media` / `write_mark` / `write_clear` into an [`OutMsgs`], send its messages in order
//! and clear it. If [`CarrierCodec::echoes_marks`] is false (Vonage), the engine must time
//! playback with its own clock from the start. [`MediaSession`] is that glue, written once for
//! the driver, the engine tests and the tools.

pub mod exotel;
pub mod plivo;
pub mod session;
pub mod signalwire;
pub mod telnyx;
pub mod twilio;
pub mod vonage;
pub(crate) mod wire;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

pub use crate::engine::audio::transcode::{
    AudioCodec, AudioError, ByteOrder, InboundTranscoder, OutboundTranscoder,
};
pub use session::{Handled, MediaSession, SessionError};
pub use wire::{MAX_MESSAGE_BYTES, MAX_PAYLOAD_BYTES, WireError, decode_payload};

/// The carriers whose media streams the server terminates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Carrier {
    Twilio,
    Telnyx,
    Plivo,
    Vonage,
    SignalWire,
    Exotel,
}

impl Carrier {
    /// Every carrier, in a stable order.
    pub const ALL: [Carrier; 6] = [
        Carrier::Twilio,
        Carrier::Telnyx,
        Carrier::Plivo,
        Carrier::Vonage,
        Carrier::SignalWire,
        Carrier::Exotel,
    ];

    /// The lowercase name used in URLs, configuration and the `calls.carrier` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Carrier::Twilio => "twilio",
            Carrier::Telnyx => "telnyx",
            Carrier::Plivo => "plivo",
            Carrier::Vonage => "vonage",
            Carrier::SignalWire => "signalwire",
            Carrier::Exotel => "exotel",
        }
    }
}

impl fmt::Display for Carrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A carrier name that is not one of [`Carrier::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown carrier `{0}` (expected twilio, telnyx, plivo, vonage, signalwire or exotel)")]
pub struct UnknownCarrier(pub String);

impl FromStr for Carrier {
    type Err = UnknownCarrier;

    /// Case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Carrier::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownCarrier(s.to_owned()))
    }
}

/// One WebSocket message, as received or as to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// The `start` of a stream: whose it is, and its audio in both directions.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamStart {
    pub carrier: Carrier,
    /// The carrier's stream id (Twilio and SignalWire `streamSid`, Telnyx `stream_id`, Plivo
    /// `streamId`, Exotel `stream_sid`); empty for Vonage, which has none.
    pub stream_id: String,
    /// The carrier's call id (Twilio, SignalWire and Exotel `call_sid`, Telnyx
    /// `call_control_id`, Plivo `callId`); `None` for Vonage, whose socket does not say.
    pub call_id: Option<String>,
    /// The carrier account, where the start message names it.
    pub account_id: Option<String>,
    /// Caller and called numbers, where the start message carries them (Telnyx, Exotel).
    pub from: Option<String>,
    pub to: Option<String>,
    /// What the carrier sends.
    pub codec: AudioCodec,
    /// What the carrier expects back: the same as `codec` except on Telnyx, whose bidirectional
    /// codec is chosen when the stream is requested ([`telnyx::TelnyxCodec::new`]).
    pub outbound_codec: AudioCodec,
    /// Parameters the server attached when it asked for the stream (Twilio `<Parameter>`,
    /// Telnyx and Exotel `custom_parameters`, Plivo `extraHeaders`, Vonage NCCO `headers`).
    pub custom_parameters: BTreeMap<String, String>,
}

impl fmt::Debug for StreamStart {
    /// Phone numbers and parameter values (which carry tokens) are left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("StreamStart")
            .field("carrier", &self.carrier)
            .field("stream_id", &self.stream_id)
            .field("call_id", &self.call_id)
            .field("account_id", &self.account_id)
            .field("from", &redacted(&self.from))
            .field("to", &redacted(&self.to))
            .field("codec", &self.codec)
            .field("outbound_codec", &self.outbound_codec)
            .field(
                "custom_parameters",
                &self.custom_parameters.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Caller audio as it came off the wire, in the call's codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload<'a> {
    /// The bytes of a binary frame (Vonage).
    Raw(&'a [u8]),
    /// Base64 text from a JSON message; borrowed unless the JSON string had escapes.
    Base64(Cow<'a, str>),
}

impl Payload<'_> {
    /// The payload's bytes: borrowed for a binary frame; for base64, decoded into `buf` (cleared
    /// first; no allocation once it has grown). Bad base64 and oversize payloads are errors.
    pub fn bytes<'b>(&'b self, buf: &'b mut Vec<u8>) -> Result<&'b [u8], WireError> {
        match self {
            Payload::Raw(bytes) => {
                if bytes.len() > MAX_PAYLOAD_BYTES {
                    return Err(WireError::TooLarge);
                }
                Ok(bytes)
            }
            Payload::Base64(b64) => {
                decode_payload(b64, buf)?;
                Ok(buf)
            }
        }
    }
}

/// A message from the carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// The socket is up; the stream's format comes with [`Inbound::Start`].
    Connected,
    /// Once per stream (Vonage: its `websocket:connected` message, which carries the format).
    /// Boxed so that the `Inbound` of every media message stays small.
    Start(Box<StreamStart>),
    /// Caller audio in `start.codec`.
    Media {
        payload: Payload<'a>,
        /// Milliseconds since the stream started, where the carrier says (Plivo's Unix-time
        /// stamps are rebased on its first media message).
        timestamp_ms: Option<u64>,
        /// The carrier's media counter (Telnyx may deliver out of order: this tells).
        chunk: Option<u64>,
    },
    /// The echo of a mark the server wrote: playback reached it, or (Twilio, Telnyx, Exotel) it
    /// was cleared.
    Mark(Cow<'a, str>),
    /// A key press: `0`-`9`, `*`, `#`, `A`-`D`.
    Dtmf(char),
    /// The carrier confirms a clear (Plivo `clearedAudio`, Vonage `websocket:cleared`).
    Cleared,
    /// The stream stopped or the call ended.
    Stop,
    /// The carrier rejected something the server sent (Telnyx `error`). Informational.
    CarrierError { code: Option<u64>, title: String },
    /// An event this code does not need (or know); carriers add events, so not an error.
    Ignored(Cow<'a, str>),
}

/// Messages written for the carrier, in order, in reused buffers: text frames in one `String`,
/// binary frames in one `Vec<u8>`. Writers append; the driver sends [`OutMsgs::iter`] in order
/// and then calls [`OutMsgs::clear`]. No allocation once the buffers have grown.
#[derive(Debug, Default)]
pub struct OutMsgs {
    text: String,
    binary: Vec<u8>,
    frames: Vec<Frame>,
}

#[derive(Debug, Clone, Copy)]
enum Frame {
    Text { start: usize, end: usize },
    Binary { start: usize, end: usize },
}

impl OutMsgs {
    pub fn new() -> Self {
        Self::with_capacity(1024)
    }

    /// With room for about `bytes` of text messages; the binary buffer grows on first use (most
    /// carriers speak only text, and a call keeps its buffers for its whole length).
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            text: String::with_capacity(bytes),
            binary: Vec::new(),
            frames: Vec::with_capacity(16),
        }
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Forgets the messages, keeping the buffers.
    pub fn clear(&mut self) {
        self.text.clear();
        self.binary.clear();
        self.frames.clear();
    }

    /// The messages, in the order written.
    pub fn iter(&self) -> impl Iterator<Item = Msg<'_>> + '_ {
        self.frames.iter().map(|f| match *f {
            Frame::Text { start, end } => Msg::Text(&self.text[start..end]),
            Frame::Binary { start, end } => Msg::Binary(&self.binary[start..end]),
        })
    }

    /// Appends one text message, written by `write` (which appends to the string it is given).
    pub(crate) fn push_text(&mut self, write: impl FnOnce(&mut String)) {
        let start = self.text.len();
        write(&mut self.text);
        let end = self.text.len();
        self.frames.push(Frame::Text { start, end });
    }

    /// Appends one binary message.
    pub(crate) fn push_binary(&mut self, bytes: &[u8]) {
        let start = self.binary.len();
        self.binary.extend_from_slice(bytes);
        let end = self.binary.len();
        self.frames.push(Frame::Binary { start, end });
    }
}

/// One carrier's media-stream protocol, as the server sees it. Stateful per call: it remembers
/// the stream id and codec from `start` for the writers, and holds back audio that the carrier
/// wants in larger or exact-size messages.
///
/// Writers are meant for after `start`; before it they write with an empty stream id and the
/// carrier's default codec. They never fail: their input is the server's own.
pub trait CarrierCodec {
    fn carrier(&self) -> Carrier;

    /// Parses one message from the carrier. Never panics; malformed, oversize or unexpected
    /// messages are `Err`. Media messages do not allocate.
    fn parse<'a>(&mut self, msg: Msg<'a>) -> Result<Inbound<'a>, WireError>;

    /// Writes agent audio, already in `start.outbound_codec`, as zero or more messages.
    fn write_media(&mut self, audio: &[u8], out: &mut OutMsgs);

    /// Writes a mark after the audio written so far. A codec holding audio back either flushes
    /// it (Vonage: less than 20 ms) or defers the mark until the audio before it is written
    /// (Exotel: padding there would put silence into speech). Writes nothing on a carrier that
    /// does not echo marks.
    fn write_mark(&mut self, name: &str, out: &mut OutMsgs);

    /// Writes a clear: the carrier drops the audio it has queued, and the codec drops what it
    /// held back.
    fn write_clear(&mut self, out: &mut OutMsgs);

    /// Writes audio held back to meet the carrier's framing, padded with silence to the
    /// smallest size the carrier accepts, and any marks deferred behind it: at the end of an
    /// utterance ([`MediaSession::write`] calls it before an utterance's last mark).
    fn flush(&mut self, out: &mut OutMsgs) {
        let _ = out;
    }

    /// Whether the carrier echoes marks. When false, the engine must time playback itself.
    fn echoes_marks(&self) -> bool;

    /// The most agent audio, in milliseconds, this codec may hold back before it sends a message
    /// (Exotel's minimum chunk). The engine paces this much further ahead, so that a chunk
    /// reaches the carrier as early before it plays as a 20 ms frame does elsewhere.
    fn held_back_ms(&self) -> u64 {
        0
    }
}

/// Any carrier's codec, without boxing: what a driver holds per call.
#[derive(Debug)]
pub enum Codec {
    Twilio(twilio::TwilioCodec),
    Telnyx(telnyx::TelnyxCodec),
    Plivo(plivo::PlivoCodec),
    Vonage(vonage::VonageCodec),
    SignalWire(signalwire::SignalWireCodec),
    Exotel(exotel::ExotelCodec),
}

impl Codec {
    /// The carrier's codec with its defaults (Telnyx: PCMU back to the carrier).
    pub fn new(carrier: Carrier) -> Self {
        match carrier {
            Carrier::Twilio => Codec::Twilio(twilio::TwilioCodec::new()),
            Carrier::Telnyx => Codec::Telnyx(telnyx::TelnyxCodec::new(AudioCodec::Mulaw)),
            Carrier::Plivo => Codec::Plivo(plivo::PlivoCodec::new()),
            Carrier::Vonage => Codec::Vonage(vonage::VonageCodec::new()),
            Carrier::SignalWire => Codec::SignalWire(signalwire::SignalWireCodec::new()),
            Carrier::Exotel => Codec::Exotel(exotel::ExotelCodec::new()),
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            Codec::Twilio($c) => $e,
            Codec::Telnyx($c) => $e,
            Codec::Plivo($c) => $e,
            Codec::Vonage($c) => $e,
            Codec::SignalWire($c) => $e,
            Codec::Exotel($c) => $e,
        }
    };
}

impl CarrierCodec for Codec {
    fn carrier(&self) -> Carrier {
        dispatch!(self, c => c.carrier())
    }
    fn parse<'a>(&mut self, msg: Msg<'a>) -> Result<Inbound<'a>, WireError> {
        dispatch!(self, c => c.parse(msg))
    }
    fn write_media(&mut self, audio: &[u8], out: &mut OutMsgs) {
        dispatch!(self, c => c.write_media(audio, out))
    }
    fn write_mark(&mut self, name: &str, out: &mut OutMsgs) {
        dispatch!(self, c => c.write_mark(name, out))
    }
    fn write_clear(&mut self, out: &mut OutMsgs) {
        dispatch!(self, c => c.write_clear(out))
    }
    fn flush(&mut self, out: &mut OutMsgs) {
        dispatch!(self, c => c.flush(out))
    }
    fn echoes_marks(&self) -> bool {
        dispatch!(self, c => c.echoes_marks())
    }
    fn held_back_ms(&self) -> u64 {
        dispatch!(self, c => c.held_back_ms())
    }
}

/// Rejects a start whose codecs this build cannot serve, with the reason in the error.
pub(crate) fn check_codecs(inbound: AudioCodec, outbound: AudioCodec) -> Result<(), WireError> {
    inbound.check_inbound().map_err(unsupported)?;
    outbound.check_outbound().map_err(unsupported)
}

fn unsupported(e: AudioError) -> WireError {
    match e {
        AudioError::Unsupported(what) => WireError::unsupported(what),
        other => WireError::unsupported(other),
    }
}

/// Audio held back until it fills messages of exactly `size` bytes (Vonage: one 20 ms frame;
/// Exotel: at least 3.2 KB). Allocated once per call.
#[derive(Debug)]
pub(crate) struct Chunker {
    buf: Vec<u8>,
    size: usize,
    silence: u8,
}

impl Chunker {
    pub(crate) fn new(size: usize, silence: u8) -> Self {
        let size = size.max(1);
        Self {
            buf: Vec::with_capacity(size),
            size,
            silence,
        }
    }

    /// Changes the message size and silence byte, dropping anything held (at `start`).
    pub(crate) fn reset(&mut self, size: usize, silence: u8) {
        self.size = size.max(1);
        self.silence = silence;
        self.buf.clear();
        self.buf.reserve(self.size);
    }

    /// Adds `audio`, calling `emit` for each full message.
    pub(crate) fn push(&mut self, mut audio: &[u8], mut emit: impl FnMut(&[u8])) {
        if !self.buf.is_empty() {
            let take = (self.size - self.buf.len()).min(audio.len());
            self.buf.extend_from_slice(&audio[..take]);
            audio = &audio[take..];
            if self.buf.len() < self.size {
                return;
            }
            emit(&self.buf);
            self.buf.clear();
        }
        let mut chunks = audio.chunks_exact(self.size);
        for chunk in chunks.by_ref() {
            emit(chunk);
        }
        self.buf.extend_from_slice(chunks.remainder());
    }

    /// Emits what is held, padded with silence to a full message.
    pub(crate) fn flush(&mut self, emit: impl FnOnce(&[u8])) {
        if self.buf.is_empty() {
            return;
        }
        self.buf.resize(self.size, self.silence);
        emit(&self.buf);
        self.buf.clear();
    }

    /// Drops what is held.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
    }

    /// Whether nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests;
