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
