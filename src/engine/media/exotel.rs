//! Exotel Voicebot applet / AgentStream, docs/telephony-protocols.md §6.
//!
//! Exotel → server, JSON text with snake_case keys: `connected`, `start` (with `stream_sid`,
//! `call_sid`, `from`/`to`, `custom_parameters` and `media_format`, whose `sample_rate` is a
//! string), `media` (about 100 ms each), `dtmf`, `mark` (echo) and `stop`. Server → Exotel:
//! `media`, `mark` and `clear`, carrying the stream sid under both `stream_sid` (Exotel's docs)
//! and `streamSid` (what pipecat sends): which one Exotel requires is unconfirmed, and the doc
//! says sending both is harmless.
//!
//! Audio is base64 16-bit little-endian PCM (`audio/x-raw`, "slin") at 8 kHz by default, 16 or
//! 24 kHz on request; `audio/x-mulaw` is also accepted. Agent audio goes back in the same codec,
//! in messages of at least 3.2 KB and a multiple of 320 bytes (Exotel plays shorter or ragged
//! chunks with gaps): [`ExotelCodec`] holds audio back until it has [`chunk_bytes`], and a mark
//! or [`CarrierCodec::flush`] pads what is held with silence to that size. The doc's "3.2 KB
//! (100 ms)" only agrees with itself at 16 kHz; at 8 kHz 3.2 KB is 200 ms, and the byte rule is
//! the one kept.

use std::borrow::Cow;

use serde::Deserialize;

use super::wire::{
    Parsed, RawDtmf, RawMark, RawMedia, audio_codec, borrowed_or_owned, dtmf_event, lenient_u64,
    mark_event, media_event, params_from_value, parse_json, push_base64, push_str_field,
};
use super::{
    AudioCodec, ByteOrder, Carrier, CarrierCodec, Chunker, Inbound, Msg, OutMsgs, StreamStart,
    WireError, check_codecs,
};

/// Exotel's PCM is little-endian.
pub const L16_ORDER: ByteOrder = ByteOrder::Little;
/// Smallest outbound media message Exotel plays without gaps.
pub const MIN_CHUNK_BYTES: usize = 3200;
/// Outbound media messages are a multiple of this.
pub const CHUNK_MULTIPLE: usize = 320;

/// Bytes per outbound media message for `codec`: at least [`MIN_CHUNK_BYTES`] and 100 ms, rounded
/// up to a multiple of [`CHUNK_MULTIPLE`] (8 and 16 kHz: 3200; 24 kHz: 4800).
pub fn chunk_bytes(codec: AudioCodec) -> usize {
    let per_100ms = codec.bytes_per_20ms().unwrap_or(0) * 5;
    MIN_CHUNK_BYTES.max(per_100ms).div_ceil(CHUNK_MULTIPLE) * CHUNK_MULTIPLE
}

const DEFAULT_CODEC: AudioCodec = AudioCodec::L16 {
    rate: 8000,
    order: L16_ORDER,
};

/// Exotel behind [`CarrierCodec`].
#[derive(Debug)]
pub struct ExotelCodec {
    stream_sid: String,
    started: bool,
    held: Chunker,
}

impl ExotelCodec {
    pub fn new() -> Self {
        Self {
            stream_sid: String::new(),
            started: false,
            held: Chunker::new(chunk_bytes(DEFAULT_CODEC), DEFAULT_CODEC.silence_byte()),
        }
    }
}

impl Default for ExotelCodec {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "borrowed_or_owned")]
    stream_sid: Option<Cow<'a, str>>,
    #[serde(default)]
    start: Option<RawStart>,
    #[serde(default, borrow)]
    media: Option<RawMedia<'a>>,
    #[serde(default)]
    dtmf: Option<RawDtmf>,
    #[serde(default, borrow)]
    mark: Option<RawMark<'a>>,
}

#[derive(Deserialize)]
struct RawStart {
    #[serde(default)]
    stream_sid: Option<String>,
    #[serde(default)]
    call_sid: Option<String>,
    #[serde(default)]
    account_sid: Option<String>,
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
    bit_rate: Option<u64>,
}

const EVENTS: [&str; 6] = ["connected", "start", "media", "dtmf", "mark", "stop"];

impl ExotelCodec {
    fn start(
        &mut self,
        top_sid: Option<Cow<'_, str>>,
        start: RawStart,
    ) -> Result<Inbound<'static>, WireError> {
        let stream_sid = start
            .stream_sid
            .or(top_sid.map(Cow::into_owned))
            .ok_or(WireError::MissingField("start.stream_sid"))?;
        let call_sid = start
            .call_sid
            .ok_or(WireError::MissingField("start.call_sid"))?;
        let codec = match start.media_format {
            None => DEFAULT_CODEC,
            Some(f) => {
                let encoding = f.encoding.as_deref().unwrap_or("audio/x-raw");
                let codec = audio_codec(encoding, f.sample_rate, L16_ORDER, 8000)?;
                if matches!(codec, AudioCodec::L16 { .. }) && f.bit_rate.is_some_and(|b| b != 16) {
                    return Err(WireError::unsupported(format_args!(
                        "{}-bit PCM (16-bit only)",
                        f.bit_rate.unwrap_or_default()
                    )));
                }
                codec
            }
        };
        check_codecs(codec, codec)?;
        if !self.started {
            self.started = true;
            self.stream_sid.clone_from(&stream_sid);
            self.held.reset(chunk_bytes(codec), codec.silence_byte());
        }
        Ok(Inbound::Start(Box::new(StreamStart {
            carrier: Carrier::Exotel,
            stream_id: stream_sid,
            call_id: Some(call_sid),
            account_id: start.account_sid,
            from: start.from,
            to: start.to,
            codec,
            outbound_codec: codec,
            custom_parameters: params_from_value(start.custom_parameters)?,
        })))
    }

    /// `{"event":"<event>","stream_sid":"..","streamSid":".."` — the caller closes the object.
    fn open(stream_sid: &str, event: &str, s: &mut String) {
        s.push_str("{\"event\":\"");
        s.push_str(event);
        s.push_str("\",");
        push_str_field(s, "stream_sid", stream_sid);
        s.push(',');
        push_str_field(s, "streamSid", stream_sid);
    }

    fn media_message(stream_sid: &str, audio: &[u8], out: &mut OutMsgs) {
        out.push_text(|s| {
            Self::open(stream_sid, "media", s);
            s.push_str(",\"media\":{\"payload\":\"");
            push_base64(s, audio);
            s.push_str("\"}}");
        });
    }
}

impl CarrierCodec for ExotelCodec {
    fn carrier(&self) -> Carrier {
        Carrier::Exotel
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
                self.start(raw.stream_sid, start)
            }
            "media" => media_event(raw.media),
            "dtmf" => dtmf_event(raw.dtmf),
            "mark" => mark_event(raw.mark),
            "stop" => Ok(Inbound::Stop),
            _ => Ok(Inbound::Ignored(raw.event)),
        }
    }

    fn write_media(&mut self, audio: &[u8], out: &mut OutMsgs) {
        let sid = &self.stream_sid;
        self.held
            .push(audio, |chunk| Self::media_message(sid, chunk, out));
    }

    fn write_mark(&mut self, name: &str, out: &mut OutMsgs) {
        self.flush(out);
        out.push_text(|s| {
            Self::open(&self.stream_sid, "mark", s);
            s.push_str(",\"mark\":{");
            push_str_field(s, "name", name);
            s.push_str("}}");
        });
    }

    fn write_clear(&mut self, out: &mut OutMsgs) {
        self.held.clear();
        out.push_text(|s| {
            Self::open(&self.stream_sid, "clear", s);
            s.push('}');
        });
    }

    fn flush(&mut self, out: &mut OutMsgs) {
        let sid = &self.stream_sid;
        self.held
            .flush(|chunk| Self::media_message(sid, chunk, out));
    }

    fn echoes_marks(&self) -> bool {
        true
    }
}
