//! A fake carrier, sans-IO: the carrier side of each of the six media-stream protocols
//! (docs/telephony-protocols.md), for the engine tests, the allocation tests, the bench,
//! `simulate`, `loadgen` and the end-to-end tests.
//!
//! It writes what the carrier sends (`connected`/`start`, caller media with each carrier's
//! counters and timestamps, DTMF, mark echoes, `stop`) into [`FakeCarrier::out`], and parses what
//! the server sends strictly: anything malformed, on the wrong stream or in the wrong framing is
//! an `Err`, so a bad server writer fails its test. Agent audio is decoded to PCM and queued; a
//! play-out clock driven by the `now` arguments plays it in real time: a mark is echoed once the
//! audio before it has played (at once when nothing is queued), and a clear drops the queue with
//! the carrier's own semantics (Twilio, SignalWire, Telnyx and Exotel echo every pending mark;
//! Plivo answers `clearedAudio`; Vonage `websocket:cleared`). What played is kept
//! ([`FakeCarrier::heard`]): the agent's audio as the caller heard it.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::engine::audio::g711;
use crate::engine::media::telnyx::TelnyxCodec;
use crate::engine::media::wire::{push_base64, push_json_str, push_str_field, push_u64_str_field};
use crate::engine::media::{
    AudioCodec, ByteOrder, Carrier, Codec, InboundTranscoder, Msg, OutMsgs, OutboundTranscoder,
    decode_payload, exotel, twilio,
};

/// Agent audio the fake queues at most (10 minutes at 8 kHz): a server that sends far ahead of
/// real time fails instead of growing the queue without bound.
pub const MAX_QUEUED_SAMPLES: usize = 8000 * 600;

/// Plivo's media timestamps are Unix milliseconds; the fake's stream starts at this one.
const PLIVO_EPOCH_MS: u64 = 1_705_312_200_000;

/// A message from the server that the real carrier would reject or misplay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{carrier}: {what}")]
pub struct FakeCarrierError {
    pub carrier: Carrier,
    pub what: String,
}

/// Who the fake call is: the ids and parameters its `start` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    pub stream_id: String,
    pub call_id: String,
    pub account_id: String,
    pub from: String,
    pub to: String,
    /// Twilio/SignalWire `<Parameter>`s, Telnyx and Exotel `custom_parameters`, Plivo
    /// `extra_headers`, Vonage NCCO `headers`.
    pub custom_parameters: BTreeMap<String, String>,
}

impl Default for CallInfo {
    fn default() -> Self {
        Self {
            stream_id: "MZ00000000000000000000000000000001".into(),
            call_id: "CA00000000000000000000000000000001".into(),
            account_id: "AC00000000000000000000000000000001".into(),
            from: "+15005550006".into(),
            to: "+15550001111".into(),
            custom_parameters: BTreeMap::new(),
        }
    }
}

/// The codecs a carrier can stream, per the protocol doc, with its L16 byte order; the first is
/// its default.
pub fn codecs(carrier: Carrier) -> Vec<AudioCodec> {
    let l16 = |rate, order| AudioCodec::L16 { rate, order };
    let le = ByteOrder::Little;
    match carrier {
        Carrier::Twilio => vec![AudioCodec::Mulaw],
        Carrier::Telnyx => {
            let mut c = vec![
                AudioCodec::Mulaw,
                AudioCodec::Alaw,
                l16(16000, ByteOrder::Big),
                l16(8000, ByteOrder::Big),
            ];
            if cfg!(feature = "opus") {
                c.push(AudioCodec::Opus { rate: 48000 });
            }
            c
        }
        Carrier::Plivo => vec![AudioCodec::Mulaw, l16(8000, le), l16(16000, le)],
        Carrier::Vonage => vec![l16(16000, le), l16(8000, le)],
        Carrier::SignalWire => vec![
            AudioCodec::Mulaw,
            AudioCodec::Alaw,
            l16(8000, le),
            l16(16000, le),
        ],
        Carrier::Exotel => vec![l16(8000, le), l16(16000, le), AudioCodec::Mulaw],
    }
}

#[derive(Debug)]
enum Queued {
    /// Agent audio: this many 8 kHz samples at the front of `pending`.
    Audio(usize),
    Mark(String),
}

/// Caller audio (µ-law 8 kHz) → the stream's codec.
enum CallerEncoder {
    Transcode(OutboundTranscoder),
    #[cfg(feature = "opus")]
    Opus(Box<opus::Encoder>),
}

/// One fake call's carrier side. See the module doc.
pub struct FakeCarrier {
    carrier: Carrier,
    codec: AudioCodec,
    outbound: AudioCodec,
    info: CallInfo,
    epoch: Instant,
    out: OutMsgs,
    sequence: u64,
    chunk: u64,
    media_ms: u64,
    encoder: CallerEncoder,
    decoder: InboundTranscoder,
    /// Reused: caller audio in the stream's codec; agent payload bytes (the decoder keeps the
    /// agent's µ-law).
    wire: Vec<u8>,
    payload: Vec<u8>,
    queue: VecDeque<Queued>,
    pending: VecDeque<i16>,
    /// The play-out head, in µs since `epoch`.
    clock_us: u64,
    last_played_us: Option<u64>,
    heard: Vec<i16>,
    keep_heard: bool,
    media_received: u64,
    samples_received: u64,
    marks_echoed: u64,
    clears: u64,
}

impl std::fmt::Debug for FakeCarrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCarrier")
            .field("carrier", &self.carrier)
            .field("codec", &self.codec)
            .field("outbound", &self.outbound)
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl FakeCarrier {
    /// A carrier streaming caller audio in `codec` (L16's byte order is the carrier's, whatever
    /// `codec` says). Agent audio comes back in the same codec, except Telnyx with Opus, whose
    /// bidirectional codec is PCMU. `now` is the stream's time zero. Codecs the carrier does not
    /// offer ([`codecs`]) are an error.
    pub fn new(
        carrier: Carrier,
        codec: AudioCodec,
        info: CallInfo,
        now: Instant,
    ) -> Result<Self, FakeCarrierError> {
        let err = |what: String| FakeCarrierError { carrier, what };
        let codec = codecs(carrier)
            .into_iter()
            .find(|c| same_codec(*c, codec))
            .ok_or_else(|| err(format!("does not stream {codec}")))?;
        let outbound = match codec {
            AudioCodec::Opus { .. } => AudioCodec::Mulaw,
            other => other,
        };
        let encoder = match codec {
            #[cfg(feature = "opus")]
            AudioCodec::Opus { .. } => CallerEncoder::Opus(Box::new(
                opus::Encoder::new(8000, opus::Channels::Mono, opus::Application::Voip)
                    .map_err(|e| err(format!("opus encoder: {e}")))?,
            )),
            other => CallerEncoder::Transcode(
                OutboundTranscoder::new(other).map_err(|e| err(e.to_string()))?,
            ),
        };
        let decoder = InboundTranscoder::new(outbound).map_err(|e| err(e.to_string()))?;
        Ok(Self {
            carrier,
            codec,
            outbound,
            info,
            epoch: now,
            out: OutMsgs::with_capacity(4096),
            sequence: 0,
            chunk: 0,
            media_ms: 0,
            encoder,
            decoder,
            wire: Vec::with_capacity(1024),
            payload: Vec::with_capacity(4096),
            queue: VecDeque::with_capacity(256),
            pending: VecDeque::with_capacity(8000),
            clock_us: 0,
            last_played_us: None,
            heard: Vec::new(),
            keep_heard: true,
            media_received: 0,
            samples_received: 0,
            marks_echoed: 0,
            clears: 0,
        })
    }

    /// The fake with the carrier's default codec and call.
    pub fn with_defaults(carrier: Carrier, now: Instant) -> Self {
        let codec = codecs(carrier)[0];
        match Self::new(carrier, codec, CallInfo::default(), now) {
            Ok(c) => c,
            Err(e) => unreachable!("a carrier's default codec is its own: {e}"),
        }
    }

    pub fn carrier(&self) -> Carrier {
        self.carrier
    }

    /// What the fake streams.
    pub fn codec(&self) -> AudioCodec {
        self.codec
    }

    /// What the fake expects back.
    pub fn outbound_codec(&self) -> AudioCodec {
        self.outbound
    }

    pub fn info(&self) -> &CallInfo {
        &self.info
    }

    /// The server's codec for this stream, as the server would have requested it (Telnyx: with
    /// the bidirectional codec).
    pub fn server_codec(&self) -> Codec {
        match self.carrier {
            Carrier::Telnyx => Codec::Telnyx(TelnyxCodec::new(self.outbound)),
            other => Codec::new(other),
        }
    }

    /// Stops keeping what was heard (the load generator's calls are long).
    pub fn forget_heard(&mut self) {
        self.keep_heard = false;
        self.heard = Vec::new();
    }

    // ---- carrier → server ------------------------------------------------------------------

    /// The messages written so far, to send in order.
    pub fn out(&self) -> &OutMsgs {
        &self.out
    }

    /// Forgets the messages written (after sending them), keeping the buffers.
    pub fn clear_out(&mut self) {
        self.out.clear();
    }

    fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    /// The stream's opening: `connected` (where the carrier sends one) and `start` (Vonage: its
    /// `websocket:connected`, which is both).
    pub fn connect(&mut self) {
        self.write_connected();
        self.write_start();
    }

    /// The call's ids and parameters, to change before [`Self::write_start`] (a test's wrong
    /// `start`). The stream id is what server messages are checked against.
    pub fn info_mut(&mut self) -> &mut CallInfo {
        &mut self.info
    }

    /// `connected` alone, for a test that sends something else before `start`. Plivo and
    /// Vonage send no separate one: writes nothing and returns false.
    pub fn write_connected(&mut self) -> bool {
        match self.carrier {
            Carrier::Twilio | Carrier::SignalWire => self.out.push_text(twilio::write_connected),
            Carrier::Telnyx => self
                .out
                .push_text(|s| s.push_str(r#"{"event":"connected","version":"1.0.0"}"#)),
            Carrier::Exotel => self
                .out
                .push_text(|s| s.push_str(r#"{"event":"connected"}"#)),
            Carrier::Plivo | Carrier::Vonage => return false,
        }
        true
    }

    /// `start` with [`Self::info`] (Vonage: `websocket:connected`).
    pub fn write_start(&mut self) {
        let info = &self.info;
        match self.carrier {
            Carrier::Twilio | Carrier::SignalWire => {
                let (encoding, rate) = match self.codec {
                    AudioCodec::Alaw => ("audio/x-alaw", 8000),
                    AudioCodec::L16 { rate, .. } => ("audio/x-l16", rate),
                    _ => (twilio::ENCODING_MULAW, 8000),
                };
                let start = twilio::StartInfo {
                    stream_sid: info.stream_id.clone(),
                    call_sid: info.call_id.clone(),
                    account_sid: info.account_id.clone(),
                    tracks: vec!["inbound".into()],
                    encoding: encoding.into(),
                    sample_rate: rate,
                    channels: 1,
                    custom_parameters: info.custom_parameters.clone(),
                };
                let seq = self.next_sequence();
                self.out.push_text(|s| twilio::write_start(&start, seq, s));
            }
            Carrier::Telnyx => {
                let seq = self.next_sequence();
                let (codec, info) = (self.codec, &self.info);
                self.out.push_text(|s| {
                    s.push_str("{\"event\":\"start\",");
                    push_u64_str_field(s, "sequence_number", seq);
                    s.push_str(",\"start\":{");
                    push_str_field(s, "user_id", &info.account_id);
                    s.push(',');
                    push_str_field(s, "call_control_id", &info.call_id);
                    s.push(',');
                    push_str_field(s, "from", &info.from);
                    s.push(',');
                    push_str_field(s, "to", &info.to);
                    s.push_str(",\"custom_parameters\":");
                    push_object(s, &info.custom_parameters);
                    s.push_str(",\"media_format\":{");
                    push_str_field(s, "encoding", codec.name());
                    let _ = write!(
                        s,
                        ",\"sample_rate\":{},\"channels\":1}}}},",
                        codec.sample_rate()
                    );
                    push_str_field(s, "stream_id", &info.stream_id);
                    s.push('}');
                });
            }
            Carrier::Plivo => {
                let seq = self.next_sequence();
                let (codec, info) = (self.codec, &self.info);
                self.out.push_text(|s| {
                    let _ = write!(s, "{{\"event\":\"start\",\"sequenceNumber\":{seq},");
                    s.push_str("\"start\":{");
                    push_str_field(s, "callId", &info.call_id);
                    s.push(',');
                    push_str_field(s, "streamId", &info.stream_id);
                    s.push(',');
                    push_str_field(s, "accountId", &info.account_id);
                    s.push_str(",\"tracks\":[\"inbound\"],\"mediaFormat\":{");
                    push_str_field(s, "encoding", plivo_content_type(codec));
                    let _ = write!(s, ",\"sampleRate\":{}}}}},", codec.sample_rate());
                    let mut headers = String::new();
                    for (i, (k, v)) in info.custom_parameters.iter().enumerate() {
                        if i > 0 {
                            headers.push(';');
                        }
                        let _ = write!(headers, "{k}={v}");
                    }
                    push_str_field(s, "extra_headers", &headers);
                    s.push('}');
                });
            }
            Carrier::Vonage => {
                let (codec, info) = (self.codec, &self.info);
                self.out.push_text(|s| {
                    s.push_str("{\"event\":\"websocket:connected\",");
                    let _ = write!(
                        s,
                        "\"content-type\":\"audio/l16;rate={}\"",
                        codec.sample_rate()
                    );
                    for (k, v) in &info.custom_parameters {
                        s.push(',');
                        push_str_field(s, k, v);
                    }
                    s.push('}');
                });
            }
            Carrier::Exotel => {
                let seq = self.next_sequence();
                let (codec, info) = (self.codec, &self.info);
                self.out.push_text(|s| {
                    s.push_str("{\"event\":\"start\",");
                    push_u64_str_field(s, "sequence_number", seq);
                    s.push(',');
                    push_str_field(s, "stream_sid", &info.stream_id);
                    s.push_str(",\"start\":{");
                    push_str_field(s, "stream_sid", &info.stream_id);
                    s.push(',');
                    push_str_field(s, "call_sid", &info.call_id);
                    s.push(',');
                    push_str_field(s, "account_sid", &info.account_id);
                    s.push(',');
                    push_str_field(s, "from", &info.from);
                    s.push(',');
                    push_str_field(s, "to", &info.to);
                    s.push_str(",\"custom_parameters\":");
                    push_object(s, &info.custom_parameters);
                    s.push_str(",\"media_format\":{");
                    let encoding = match codec {
                        AudioCodec::Mulaw => "audio/x-mulaw",
                        _ => "audio/x-raw",
                    };
                    push_str_field(s, "encoding", encoding);
                    s.push(',');
                    push_u64_str_field(s, "sample_rate", u64::from(codec.sample_rate()));
                    s.push_str(",\"bit_rate\":\"16\"}}}");
                });
            }
        }
    }

    /// The caller's media timestamps go on from `ms` (as if the stream had begun that long
    /// before the first frame sent from now on).
    pub fn skip_media_ms(&mut self, ms: u64) {
        self.media_ms += ms;
    }

    /// Caller audio, µ-law 8 kHz: one media message per 20 ms (a short last slice is padded
    /// with silence), with the carrier's counters and timestamps.
    pub fn send_audio(&mut self, mulaw: &[u8]) {
        for frame in mulaw.chunks(160) {
            let mut padded = [0xFFu8; 160];
            padded[..frame.len()].copy_from_slice(frame);
            self.send_frame(&padded);
        }
    }

    fn send_frame(&mut self, mulaw: &[u8; 160]) {
        self.wire.clear();
        match &mut self.encoder {
            CallerEncoder::Transcode(t) => self.wire.extend_from_slice(t.encode(mulaw)),
            #[cfg(feature = "opus")]
            CallerEncoder::Opus(enc) => {
                let mut pcm = [0i16; 160];
                g711::decode_into(mulaw, &mut pcm);
                self.wire.resize(1275, 0);
                let n = enc.encode(&pcm, &mut self.wire).unwrap_or(0);
                self.wire.truncate(n);
            }
        }
        self.chunk += 1;
        let (chunk, ts) = (self.chunk, self.media_ms);
        self.media_ms += 20;
        let seq = self.next_sequence();
        let (audio, sid) = (&self.wire, &self.info.stream_id);
        match self.carrier {
            Carrier::Twilio | Carrier::SignalWire => self
                .out
                .push_text(|s| twilio::write_inbound_media(sid, seq, chunk, ts, audio, s)),
            Carrier::Telnyx => self.out.push_text(|s| {
                s.push_str("{\"event\":\"media\",");
                push_u64_str_field(s, "sequence_number", seq);
                s.push_str(",\"media\":{\"track\":\"inbound\",");
                push_u64_str_field(s, "chunk", chunk);
                s.push(',');
                push_u64_str_field(s, "timestamp", ts);
                s.push_str(",\"payload\":\"");
                push_base64(s, audio);
                s.push_str("\"},");
                push_str_field(s, "stream_id", sid);
                s.push('}');
            }),
            Carrier::Plivo => self.out.push_text(|s| {
                let _ = write!(s, "{{\"event\":\"media\",\"sequenceNumber\":{seq},");
                push_str_field(s, "streamId", sid);
                s.push_str(",\"media\":{\"track\":\"inbound\",");
                push_u64_str_field(s, "timestamp", PLIVO_EPOCH_MS + ts);
                let _ = write!(s, ",\"chunk\":{chunk},\"payload\":\"");
                push_base64(s, audio);
                s.push_str("\"}}");
            }),
            Carrier::Vonage => self.out.push_binary(audio),
            Carrier::Exotel => self.out.push_text(|s| {
                s.push_str("{\"event\":\"media\",");
                push_u64_str_field(s, "sequence_number", seq);
                s.push(',');
                push_str_field(s, "stream_sid", sid);
                s.push_str(",\"media\":{");
                push_u64_str_field(s, "chunk", chunk);
                s.push(',');
                push_u64_str_field(s, "timestamp", ts);
                s.push_str(",\"payload\":\"");
                push_base64(s, audio);
                s.push_str("\"}}");
            }),
        }
    }

    /// A key press.
    pub fn send_dtmf(&mut self, digit: char) {
        let seq = self.next_sequence();
        let sid = &self.info.stream_id;
        let mut buf = [0u8; 4];
        let d = digit.encode_utf8(&mut buf);
        match self.carrier {
            Carrier::Twilio | Carrier::SignalWire => self
                .out
                .push_text(|s| twilio::write_inbound_dtmf(sid, seq, digit, s)),
            Carrier::Telnyx => self.out.push_text(|s| {
                s.push_str("{\"event\":\"dtmf\",");
                push_str_field(s, "stream_id", sid);
                s.push(',');
                push_u64_str_field(s, "sequence_number", seq);
                s.push_str(",\"dtmf\":{");
                push_str_field(s, "digit", d);
                s.push_str("}}");
            }),
            Carrier::Plivo => self.out.push_text(|s| {
                s.push_str("{\"event\":\"dtmf\",");
                push_str_field(s, "streamId", sid);
                s.push_str(",\"dtmf\":{");
                push_str_field(s, "digit", d);
                s.push_str("}}");
            }),
            Carrier::Vonage => self.out.push_text(|s| {
                s.push_str("{\"event\":\"websocket:dtmf\",");
                push_str_field(s, "digit", d);
                s.push_str(",\"duration\":250}");
            }),
            Carrier::Exotel => self.out.push_text(|s| {
                s.push_str("{\"event\":\"dtmf\",");
                push_u64_str_field(s, "sequence_number", seq);
                s.push(',');
                push_str_field(s, "stream_sid", sid);
                s.push_str(",\"dtmf\":{");
                push_str_field(s, "digit", d);
                s.push_str(",\"duration\":\"100\"}}");
            }),
        }
    }

    /// The call ended: `stop`. Vonage has none (it closes the socket): writes nothing and
    /// returns false.
    pub fn send_stop(&mut self) -> bool {
        let seq = self.next_sequence();
        let info = &self.info;
        match self.carrier {
            Carrier::Twilio | Carrier::SignalWire => self.out.push_text(|s| {
                twilio::write_stop(&info.stream_id, &info.account_id, &info.call_id, seq, s)
            }),
            Carrier::Telnyx => self.out.push_text(|s| {
                s.push_str("{\"event\":\"stop\",");
                push_u64_str_field(s, "sequence_number", seq);
                s.push_str(",\"stop\":{");
                push_str_field(s, "user_id", &info.account_id);
                s.push(',');
                push_str_field(s, "call_control_id", &info.call_id);
                s.push_str("},");
                push_str_field(s, "stream_id", &info.stream_id);
                s.push('}');
            }),
            Carrier::Plivo => self.out.push_text(|s| {
                let _ = write!(s, "{{\"event\":\"stop\",\"sequenceNumber\":{seq},");
                push_str_field(s, "streamId", &info.stream_id);
                s.push_str(",\"stop\":{");
                push_str_field(s, "callId", &info.call_id);
                s.push_str("}}");
            }),
            Carrier::Vonage => return false,
            Carrier::Exotel => self.out.push_text(|s| {
                s.push_str("{\"event\":\"stop\",");
                push_u64_str_field(s, "sequence_number", seq);
                s.push(',');
                push_str_field(s, "stream_sid", &info.stream_id);
                s.push('}');
            }),
        }
        true
    }

    fn echo_mark(&mut self, name: &str) {
        self.marks_echoed += 1;
        let seq = self.next_sequence();
        let sid = &self.info.stream_id;
        match self.carrier {
            Carrier::Twilio | Carrier::SignalWire => self
                .out
                .push_text(|s| twilio::write_inbound_mark(sid, seq, name, s)),
            Carrier::Telnyx | Carrier::Exotel => {
                let sid_key = if self.carrier == Carrier::Telnyx {
                    "stream_id"
                } else {
                    "stream_sid"
                };
                self.out.push_text(|s| {
                    s.push_str("{\"event\":\"mark\",");
                    push_u64_str_field(s, "sequence_number", seq);
                    s.push(',');
                    push_str_field(s, sid_key, sid);
                    s.push_str(",\"mark\":{");
                    push_str_field(s, "name", name);
                    s.push_str("}}");
                });
            }
            Carrier::Plivo => self.out.push_text(|s| {
                let _ = write!(s, "{{\"event\":\"playedStream\",\"sequenceNumber\":{seq},");
                push_str_field(s, "streamId", sid);
                s.push(',');
                push_str_field(s, "name", name);
                s.push('}');
            }),
            // the server writes no marks on Vonage; one that did is caught in `handle_message`
            Carrier::Vonage => {}
        }
    }

    // ---- server → carrier ------------------------------------------------------------------

    /// One message from the server, at `now`. Errors on anything the carrier would reject.
    pub fn handle_message(&mut self, now: Instant, msg: Msg<'_>) -> Result<(), FakeCarrierError> {
        self.play(now);
        let result = self.parse(now, msg);
        self.play(now);
        result.map_err(|what| FakeCarrierError {
            carrier: self.carrier,
            what,
        })
    }

    fn parse(&mut self, now: Instant, msg: Msg<'_>) -> Result<(), String> {
        use serde_json::Value;
        let text = match (self.carrier, msg) {
            (Carrier::Vonage, Msg::Binary(frame)) => {
                let expected = self.outbound.bytes_per_20ms().unwrap_or(0);
                if frame.len() != expected {
                    return Err(format!(
                        "binary frame of {} bytes (exactly {expected})",
                        frame.len()
                    ));
                }
                self.payload.clear();
                self.payload.extend_from_slice(frame);
                return self.queue_payload();
            }
            (_, Msg::Binary(_)) => return Err("binary message on a JSON stream".into()),
            (_, Msg::Text(text)) => text,
        };
        let v: Value = serde_json::from_str(text).map_err(|e| format!("bad JSON: {e}"))?;
        let str_at = |path: &[&str]| -> Result<String, String> {
            let mut at = &v;
            for key in path {
                at = at
                    .get(key)
                    .ok_or_else(|| format!("missing {}", path.join(".")))?;
            }
            at.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{} is not a string", path.join(".")))
        };
        if self.carrier == Carrier::Vonage {
            return match str_at(&["action"])?.as_str() {
                "clear" => {
                    self.clear(now);
                    self.out
                        .push_text(|s| s.push_str(r#"{"event":"websocket:cleared"}"#));
                    Ok(())
                }
                other => Err(format!("unknown action {other:?}")),
            };
        }
        let event = str_at(&["event"])?;
        let sid_key = match self.carrier {
            Carrier::Twilio | Carrier::SignalWire => Some("streamSid"),
            Carrier::Plivo => Some("streamId"),
            Carrier::Exotel => Some("stream_sid"),
            Carrier::Telnyx | Carrier::Vonage => None,
        };
        if let Some(key) = sid_key
            && str_at(&[key])? != self.info.stream_id
        {
            return Err(format!("{event} on another stream ({key})"));
        }
        let (media, mark, clear) = match self.carrier {
            Carrier::Plivo => ("playAudio", "checkpoint", "clearAudio"),
            _ => ("media", "mark", "clear"),
        };
        if event == media {
            if self.carrier == Carrier::Plivo {
                let content_type = str_at(&["media", "contentType"])?;
                let rate = v["media"]["sampleRate"].as_u64();
                if content_type != plivo_content_type(self.outbound)
                    || rate != Some(u64::from(self.outbound.sample_rate()))
                {
                    return Err(format!(
                        "playAudio in {content_type} at {rate:?} Hz on a {} stream",
                        self.outbound
                    ));
                }
            }
            let b64 = str_at(&["media", "payload"])?;
            decode_payload(&b64, &mut self.payload).map_err(|e| format!("media payload: {e}"))?;
            if self.carrier == Carrier::Exotel
                && !self.payload.len().is_multiple_of(exotel::CHUNK_MULTIPLE)
            {
                return Err(format!(
                    "media of {} bytes (a multiple of {} plays without gaps)",
                    self.payload.len(),
                    exotel::CHUNK_MULTIPLE
                ));
            }
            self.queue_payload()
        } else if event == mark {
            let name = if self.carrier == Carrier::Plivo {
                str_at(&["name"])?
            } else {
                str_at(&["mark", "name"])?
            };
            self.queue.push_back(Queued::Mark(name));
            Ok(())
        } else if event == clear {
            self.clear(now);
            Ok(())
        } else {
            Err(format!("unknown event {event:?}"))
        }
    }

    fn queue_payload(&mut self) -> Result<(), String> {
        let mulaw = self
            .decoder
            .decode(&self.payload)
            .map_err(|e| format!("agent audio: {e}"))?;
        if self.pending.len() + mulaw.len() > MAX_QUEUED_SAMPLES {
            return Err("more than 10 minutes of agent audio queued".into());
        }
        self.media_received += 1;
        self.samples_received += mulaw.len() as u64;
        self.pending
            .extend(mulaw.iter().map(|&b| g711::ulaw_decode(b)));
        self.queue.push_back(Queued::Audio(mulaw.len()));
        Ok(())
    }

    /// Drops the queue; pending marks are echoed where the carrier does so.
    fn clear(&mut self, now: Instant) {
        self.clears += 1;
        self.pending.clear();
        let echo = matches!(
            self.carrier,
            Carrier::Twilio | Carrier::SignalWire | Carrier::Telnyx | Carrier::Exotel
        );
        while let Some(item) = self.queue.pop_front() {
            if let (Queued::Mark(name), true) = (item, echo) {
                self.echo_mark(&name);
            }
        }
        if self.carrier == Carrier::Plivo {
            let seq = self.next_sequence();
            let sid = &self.info.stream_id;
            self.out.push_text(|s| {
                s.push_str("{\"event\":\"clearedAudio\",");
                push_str_field(s, "streamId", sid);
                let _ = write!(s, ",\"sequenceNumber\":{seq}}}");
            });
        }
        self.clock_us = self.us(now);
    }

    // ---- the play-out clock ----------------------------------------------------------------

    fn us(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// Plays the queue up to `now`: audio in real time from when it arrived (or when the audio
    /// before it ended), marks echoed as playback reaches them.
    fn play(&mut self, now: Instant) {
        let now_us = self.us(now);
        loop {
            match self.queue.front() {
                Some(Queued::Audio(samples)) => {
                    let samples = *samples;
                    let end = self.clock_us + samples as u64 * 125;
                    if end > now_us {
                        break;
                    }
                    self.clock_us = end;
                    self.last_played_us = Some(end);
                    let n = samples.min(self.pending.len());
                    if self.keep_heard {
                        self.heard.extend(self.pending.drain(..n));
                    } else {
                        self.pending.drain(..n);
                    }
                    self.queue.pop_front();
                }
                Some(Queued::Mark(_)) => {
                    if let Some(Queued::Mark(name)) = self.queue.pop_front() {
                        self.echo_mark(&name);
                    }
                }
                None => break,
            }
        }
        if self.queue.is_empty() {
            self.clock_us = self.clock_us.max(now_us);
        }
    }

    /// When the audio playing now ends (the next mark echo may follow it); `None` when idle.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queue.iter().find_map(|q| match q {
            Queued::Audio(samples) => {
                Some(self.epoch + Duration::from_micros(self.clock_us + *samples as u64 * 125))
            }
            Queued::Mark(_) => None,
        })
    }

    /// Advances the play-out clock to `now`, writing the mark echoes that fall due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.play(now);
    }

    // ---- what happened ---------------------------------------------------------------------

    /// The agent audio sample (8 kHz) that plays at `at`, 0 when nothing does: what a line that
    /// echoes the agent's voice carries back. Exact from the last [`Self::handle_timeout`] on
    /// (the queue), and before it back to the last time the queue ran dry (what was heard).
    pub fn playing_at(&self, at: Instant) -> i16 {
        let t = self.us(at);
        if t < self.clock_us {
            let Some(end) = self.last_played_us.filter(|&end| t < end) else {
                return 0;
            };
            let back = ((end - t) / 125) as usize + 1;
            return self
                .heard
                .len()
                .checked_sub(back)
                .map_or(0, |i| self.heard[i]);
        }
        // the queued chunks play back to back from the clock: `pending` holds their samples
        let queued: usize = self
            .queue
            .iter()
            .map(|q| match q {
                Queued::Audio(n) => *n,
                Queued::Mark(_) => 0,
            })
            .sum();
        let i = ((t - self.clock_us) / 125) as usize;
        if i < queued {
            self.pending.get(i).copied().unwrap_or(0)
        } else {
            0
        }
    }

    /// Whether agent audio is queued or playing.
    pub fn is_playing(&self) -> bool {
        self.queue.iter().any(|q| matches!(q, Queued::Audio(_)))
    }

    /// Whether nothing at all (audio or mark) is queued.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// When the last agent audio finished playing.
    pub fn last_played(&self) -> Option<Instant> {
        self.last_played_us
            .map(|us| self.epoch + Duration::from_micros(us))
    }

    /// The agent's audio as played to the caller: PCM 8 kHz (empty after
    /// [`Self::forget_heard`]).
    pub fn heard(&self) -> &[i16] {
        &self.heard
    }

    /// Media messages received from the server.
    pub fn media_received(&self) -> u64 {
        self.media_received
    }

    /// Agent audio received, in 8 kHz samples (160 per 20 ms).
    pub fn samples_received(&self) -> u64 {
        self.samples_received
    }

    /// Marks echoed (played or cleared).
    pub fn marks_echoed(&self) -> u64 {
        self.marks_echoed
    }

    /// Clears received.
    pub fn clears(&self) -> u64 {
        self.clears
    }
}

/// Codecs equal up to L16's byte order and Opus's nominal rate.
fn same_codec(a: AudioCodec, b: AudioCodec) -> bool {
    match (a, b) {
        (AudioCodec::L16 { rate: x, .. }, AudioCodec::L16 { rate: y, .. }) => x == y,
        (AudioCodec::Opus { .. }, AudioCodec::Opus { .. }) => true,
        _ => a == b,
    }
}

fn plivo_content_type(codec: AudioCodec) -> &'static str {
    match codec {
        AudioCodec::L16 { .. } => "audio/x-l16",
        _ => "audio/x-mulaw",
    }
}

/// A JSON object of strings.
fn push_object(out: &mut String, map: &BTreeMap<String, String>) {
    out.push('{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        push_json_str(out, k);
        out.push_str("\":\"");
        push_json_str(out, v);
        out.push('"');
    }
    out.push('}');
}

#[cfg(test)]
mod tests;
