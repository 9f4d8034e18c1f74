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
//! chunks with gaps): [`ExotelCodec`] holds audio back until it has [`chunk_bytes`]. A mark
//! written while audio is held back is deferred and written right after the chunk that holds
//! its position, so marks never pad speech with silence mid-utterance; only
//! [`CarrierCodec::flush`] pads what is held, which the media session calls at the end of an
//! utterance (before its last mark). The doc's "3.2 KB (100 ms)" only agrees with itself at
//! 16 kHz; at 8 kHz 3.2 KB is 200 ms of PCM (400 ms of µ-law), and the byte rule is the one kept
//! by default ([`ExotelCodec::with_min_chunk_bytes`] changes it). Holding back a chunk means the
//! engine must send more than a chunk ahead of real time on Exotel, or the carrier's buffer runs
//! dry between chunks, and a mark's echo comes up to a chunk late.

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
/// Marks deferred behind held-back audio at most; one more pads the held audio to a chunk and
/// writes them (the engine marks every 200 ms, so a 400 ms chunk defers two).
pub const MAX_DEFERRED_MARKS: usize = 16;

/// Bytes per outbound media message for `codec`: at least `min` and 100 ms, rounded up to a
/// multiple of [`CHUNK_MULTIPLE`] (with [`MIN_CHUNK_BYTES`], 8 and 16 kHz: 3200; 24 kHz: 4800).
pub fn chunk_bytes(codec: AudioCodec, min: usize) -> usize {
    let per_100ms = codec.bytes_per_20ms().unwrap_or(0) * 5;
    min.max(per_100ms).max(1).div_ceil(CHUNK_MULTIPLE) * CHUNK_MULTIPLE
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
    min_chunk: usize,
    held: Chunker,
    /// Marks written while audio was held back, in order: their names end to end in
    /// `deferred_names`, each one's end in `deferred_ends`. Written after the next chunk.
    deferred_names: String,
    deferred_ends: Vec<usize>,
    /// How long one outbound chunk plays, in ms (what may be held back).
    chunk_ms: u64,
}

impl ExotelCodec {
    pub fn new() -> Self {
        Self::with_min_chunk_bytes(MIN_CHUNK_BYTES)
    }

    /// With outbound messages of at least `min` bytes instead of [`MIN_CHUNK_BYTES`] (still at
    /// least 100 ms and a multiple of [`CHUNK_MULTIPLE`]): 3.2 KB is 200 ms at 8 kHz, which the
    /// doc's own "(100 ms)" contradicts; 1600 would hold back half as much.
    pub fn with_min_chunk_bytes(min: usize) -> Self {
        Self {
            stream_sid: String::new(),
            started: false,
            min_chunk: min,
            held: Chunker::new(
                chunk_bytes(DEFAULT_CODEC, min),
                DEFAULT_CODEC.silence_byte(),
            ),
            deferred_names: String::with_capacity(32 * MAX_DEFERRED_MARKS),
            deferred_ends: Vec::with_capacity(MAX_DEFERRED_MARKS),
            chunk_ms: chunk_ms(DEFAULT_CODEC, min),
        }
    }
}

/// How long a chunk of [`chunk_bytes`] plays, in ms.
fn chunk_ms(codec: AudioCodec, min: usize) -> u64 {
    let per_20ms = codec.bytes_per_20ms().unwrap_or(160).max(1);
    (chunk_bytes(codec, min) * 20 / per_20ms) as u64
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
            self.held
                .reset(chunk_bytes(codec, self.min_chunk), codec.silence_byte());
            self.chunk_ms = chunk_ms(codec, self.min_chunk);
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

    fn mark_message(stream_sid: &str, name: &str, out: &mut OutMsgs) {
        out.push_text(|s| {
            Self::open(stream_sid, "mark", s);
            s.push_str(",\"mark\":{");
            push_str_field(s, "name", name);
            s.push_str("}}");
        });
    }

    /// Writes the deferred marks, in order, and forgets them.
    fn write_deferred(
        stream_sid: &str,
        names: &mut String,
        ends: &mut Vec<usize>,
        out: &mut OutMsgs,
    ) {
        let mut start = 0;
        for &end in ends.iter() {
            Self::mark_message(stream_sid, &names[start..end], out);
            start = end;
        }
        names.clear();
        ends.clear();
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
        let (sid, names, ends) = (
            &self.stream_sid,
            &mut self.deferred_names,
            &mut self.deferred_ends,
        );
        self.held.push(audio, |chunk| {
            Self::media_message(sid, chunk, out);
            // every deferred mark's position lies in the first chunk completed
            if !ends.is_empty() {
                Self::write_deferred(sid, names, ends, out);
            }
        });
    }

    /// Writes the mark at once when no audio is held back; otherwise defers it until the chunk
    /// holding its position is written (by [`CarrierCodec::write_media`] or
    /// [`CarrierCodec::flush`]), so that marks do not pad speech with silence.
    fn write_mark(&mut self, name: &str, out: &mut OutMsgs) {
        if self.held.is_empty() {
            Self::mark_message(&self.stream_sid, name, out);
            return;
        }
        if self.deferred_ends.len() >= MAX_DEFERRED_MARKS {
            self.flush(out);
            Self::mark_message(&self.stream_sid, name, out);
            return;
        }
        self.deferred_names.push_str(name);
        self.deferred_ends.push(self.deferred_names.len());
    }

    /// Drops what is held; marks deferred behind it follow the clear, so they are echoed as
    /// cleared ones are.
    fn write_clear(&mut self, out: &mut OutMsgs) {
        self.held.clear();
        out.push_text(|s| {
            Self::open(&self.stream_sid, "clear", s);
            s.push('}');
        });
        Self::write_deferred(
            &self.stream_sid,
            &mut self.deferred_names,
            &mut self.deferred_ends,
            out,
        );
    }

    fn flush(&mut self, out: &mut OutMsgs) {
        let sid = &self.stream_sid;
        self.held
            .flush(|chunk| Self::media_message(sid, chunk, out));
        Self::write_deferred(sid, &mut self.deferred_names, &mut self.deferred_ends, out);
    }

    fn echoes_marks(&self) -> bool {
        true
    }

    fn held_back_ms(&self) -> u64 {
        self.chunk_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::media::Payload;
    use crate::engine::media::tests::{b64, json_texts};

    // The doc's sample messages (docs/telephony-protocols.md §6), with the placeholder payload
    // and mark name filled in.
    const DOC_CONNECTED: &str = r#"{ "event": "connected" }"#;
    const DOC_START: &str = r#"{ "event": "start", "sequence_number": "1", "stream_sid": "MZ...",
  "start": { "stream_sid": "MZ...", "call_sid": "CA...", "account_sid": "AC...",
             "from": "+919876543210", "to": "+918047491899",
             "custom_parameters": { "key1": "value1" },
             "media_format": { "encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16" } } }"#;
    const DOC_MEDIA: &str = r#"{ "event": "media", "sequence_number": "3", "stream_sid": "MZ...",
  "media": { "chunk": "2", "timestamp": "200", "payload": "AAD/fw==" } }"#;
    const DOC_DTMF: &str = r#"{ "event": "dtmf", "sequence_number": "7", "stream_sid": "MZ...", "dtmf": { "digit": "5", "duration": "100" } }"#;
    const DOC_MARK: &str = r#"{ "event": "mark", "sequence_number": "15", "stream_sid": "MZ...", "mark": { "name": "s1f10" } }"#;
    const DOC_STOP: &str = r#"{ "event": "stop", "sequence_number": "16", "stream_sid": "MZ..." }"#;

    const PCM8K: AudioCodec = AudioCodec::L16 {
        rate: 8000,
        order: ByteOrder::Little,
    };

    #[test]
    fn parses_the_doc_samples() {
        let mut codec = ExotelCodec::new();
        assert_eq!(codec.carrier(), Carrier::Exotel);
        assert_eq!(
            codec.parse(Msg::Text(DOC_CONNECTED)).unwrap(),
            Inbound::Connected
        );
        let Inbound::Start(start) = codec.parse(Msg::Text(DOC_START)).unwrap() else {
            panic!()
        };
        assert_eq!(start.stream_id, "MZ...");
        assert_eq!(start.call_id.as_deref(), Some("CA..."));
        assert_eq!(start.account_id.as_deref(), Some("AC..."));
        assert_eq!(start.from.as_deref(), Some("+919876543210"));
        assert_eq!(start.to.as_deref(), Some("+918047491899"));
        assert_eq!((start.codec, start.outbound_codec), (PCM8K, PCM8K));
        assert_eq!(start.custom_parameters["key1"], "value1");
        let Inbound::Media {
            payload,
            timestamp_ms,
            chunk,
        } = codec.parse(Msg::Text(DOC_MEDIA)).unwrap()
        else {
            panic!()
        };
        assert_eq!((timestamp_ms, chunk), (Some(200), Some(2)));
        assert_eq!(payload, Payload::Base64(Cow::Borrowed("AAD/fw==")));
        assert_eq!(payload.bytes(&mut Vec::new()).unwrap(), [0, 0, 0xFF, 0x7F]);
        assert_eq!(
            codec.parse(Msg::Text(DOC_DTMF)).unwrap(),
            Inbound::Dtmf('5')
        );
        assert_eq!(
            codec.parse(Msg::Text(DOC_MARK)).unwrap(),
            Inbound::Mark(Cow::Borrowed("s1f10"))
        );
        assert_eq!(codec.parse(Msg::Text(DOC_STOP)).unwrap(), Inbound::Stop);
    }

    #[test]
    fn formats() {
        let with = |encoding: &str, rate: &str, bits: &str| {
            let text = DOC_START
                .replace("audio/x-raw", encoding)
                .replace(
                    "\"sample_rate\": \"8000\"",
                    &format!("\"sample_rate\": {rate}"),
                )
                .replace("\"bit_rate\": \"16\"", &format!("\"bit_rate\": {bits}"));
            match ExotelCodec::new().parse(Msg::Text(&text))? {
                Inbound::Start(s) => Ok(s.codec),
                other => panic!("{other:?}"),
            }
        };
        let l16 = |rate| AudioCodec::L16 {
            rate,
            order: ByteOrder::Little,
        };
        assert_eq!(
            with("audio/x-raw", "\"16000\"", "\"16\"").unwrap(),
            l16(16000)
        );
        assert_eq!(with("audio/x-raw", "24000", "16").unwrap(), l16(24000));
        assert_eq!(with("audio/L16", "\"8000\"", "\"16\"").unwrap(), l16(8000));
        assert_eq!(
            with("audio/x-mulaw", "\"8000\"", "\"8\"").unwrap(),
            AudioCodec::Mulaw
        );
        for (enc, rate, bits) in [
            ("audio/x-raw", "\"8000\"", "\"8\""),
            ("audio/x-raw", "\"44100\"", "\"16\""),
            ("audio/ogg", "\"8000\"", "\"16\""),
        ] {
            assert!(
                matches!(with(enc, rate, bits), Err(WireError::UnsupportedCodec(_))),
                "{enc} {rate} {bits}"
            );
        }
        assert!(matches!(
            with("audio/x-raw", "\"fast\"", "\"16\""),
            Err(WireError::Json(_))
        ));
        // No media_format: the default, 16-bit PCM at 8 kHz; the stream sid from the top level.
        let bare = r#"{"event":"start","stream_sid":"S9","start":{"call_sid":"C"}}"#;
        let Inbound::Start(s) = ExotelCodec::new().parse(Msg::Text(bare)).unwrap() else {
            panic!()
        };
        assert_eq!((s.codec, s.stream_id.as_str()), (PCM8K, "S9"));
        assert_eq!(chunk_bytes(PCM8K, MIN_CHUNK_BYTES), 3200);
        assert_eq!(chunk_bytes(l16(16000), MIN_CHUNK_BYTES), 3200);
        assert_eq!(chunk_bytes(l16(24000), MIN_CHUNK_BYTES), 4800);
        assert_eq!(chunk_ms(PCM8K, MIN_CHUNK_BYTES), 200);
        assert_eq!(chunk_ms(l16(16000), MIN_CHUNK_BYTES), 100);
        assert_eq!(chunk_ms(AudioCodec::Mulaw, MIN_CHUNK_BYTES), 400);
        assert_eq!(ExotelCodec::new().held_back_ms(), 200);
        assert_eq!(chunk_bytes(AudioCodec::Mulaw, MIN_CHUNK_BYTES), 3200);
        assert_eq!(chunk_bytes(PCM8K, 1600), 1600);
        assert_eq!(chunk_bytes(PCM8K, 0), 1600);
        assert_eq!(chunk_bytes(AudioCodec::Mulaw, 0), 960);
        assert_eq!(chunk_bytes(l16(16000), 1000), 3200);
    }

    #[test]
    fn writes_chunks_of_at_least_3200_bytes() {
        let mut codec = ExotelCodec::new();
        codec.parse(Msg::Text(DOC_START)).unwrap();
        let mut out = OutMsgs::new();
        // 20 ms frames of 16-bit PCM at 8 kHz: nothing until 3200 bytes (10 frames).
        let frame: Vec<u8> = (0..320u32).map(|i| i as u8).collect();
        for _ in 0..9 {
            codec.write_media(&frame, &mut out);
        }
        assert!(out.is_empty());
        codec.write_media(&frame, &mut out);
        let msgs = json_texts(&out);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0]["event"], "media");
        assert_eq!(msgs[0]["stream_sid"], "MZ...");
        assert_eq!(msgs[0]["streamSid"], "MZ...");
        let sent = b64(&msgs[0]["media"]["payload"]);
        assert_eq!(sent.len(), 3200);
        assert_eq!(&sent[..320], &frame[..]);
        out.clear();

        // A mark behind held-back audio waits for the chunk that holds its position; only
        // `flush` (the end of an utterance) pads.
        codec.write_media(&frame[..100], &mut out);
        codec.write_mark("s1f10", &mut out);
        assert!(out.is_empty());
        codec.flush(&mut out);
        let msgs = json_texts(&out);
        assert_eq!(msgs.len(), 2);
        let sent = b64(&msgs[0]["media"]["payload"]);
        assert_eq!(sent.len(), 3200);
        assert_eq!(&sent[..100], &frame[..100]);
        assert!(sent[100..].iter().all(|&b| b == 0));
        assert_eq!(
            msgs[1],
            serde_json::json!({"event": "mark", "stream_sid": "MZ...", "streamSid": "MZ...", "mark": {"name": "s1f10"}})
        );
        out.clear();
        // With nothing held, a mark goes out at once.
        codec.write_mark("s1end", &mut out);
        assert_eq!(json_texts(&out)[0]["mark"]["name"], "s1end");
        out.clear();

        // A clear drops what is held.
        codec.write_media(&frame, &mut out);
        codec.write_clear(&mut out);
        codec.flush(&mut out);
        let msgs = json_texts(&out);
        assert_eq!(
            msgs,
            [serde_json::json!({"event": "clear", "stream_sid": "MZ...", "streamSid": "MZ..."})]
        );
        out.clear();

        // A large write leaves as several whole chunks and a held remainder.
        codec.write_media(&vec![1u8; 10_000], &mut out);
        let sizes: Vec<usize> = json_texts(&out)
            .iter()
            .map(|m| b64(&m["media"]["payload"]).len())
            .collect();
        assert_eq!(sizes, [3200, 3200, 3200]);
        assert!(sizes.iter().all(|s| s % CHUNK_MULTIPLE == 0));
        out.clear();
        codec.flush(&mut out);
        assert_eq!(b64(&json_texts(&out)[0]["media"]["payload"]).len(), 3200);

        // A smaller minimum, for 100 ms chunks at 8 kHz.
        let mut codec = ExotelCodec::with_min_chunk_bytes(1600);
        codec.parse(Msg::Text(DOC_START)).unwrap();
        out.clear();
        codec.write_media(&[1; 1600], &mut out);
        assert_eq!(b64(&json_texts(&out)[0]["media"]["payload"]).len(), 1600);

        // µ-law pads with µ-law silence.
        let mut codec = ExotelCodec::new();
        let mulaw = DOC_START.replace("audio/x-raw", "audio/x-mulaw");
        codec.parse(Msg::Text(&mulaw)).unwrap();
        out.clear();
        codec.write_media(&[0x00; 160], &mut out);
        codec.flush(&mut out);
        let sent = b64(&json_texts(&out)[0]["media"]["payload"]);
        assert_eq!(sent.len(), 3200);
        assert!(sent[160..].iter().all(|&b| b == 0xFF));
        assert!(codec.echoes_marks());
    }

    /// What `out` holds: media as its length, marks as their name.
    fn summary(out: &OutMsgs) -> Vec<String> {
        json_texts(out)
            .iter()
            .map(|m| match m["event"].as_str().unwrap() {
                "media" => b64(&m["media"]["payload"]).len().to_string(),
                "mark" => m["mark"]["name"].as_str().unwrap().to_owned(),
                other => other.to_owned(),
            })
            .collect()
    }

    #[test]
    fn marks_never_pad_speech() {
        // µ-law at 8 kHz: a 3.2 KB chunk is 400 ms, the engine marks every 200 ms.
        let mut codec = ExotelCodec::new();
        codec
            .parse(Msg::Text(
                &DOC_START.replace("audio/x-raw", "audio/x-mulaw"),
            ))
            .unwrap();
        let mut out = OutMsgs::new();
        let mut marks_after = Vec::new();
        let mut sent = 0;
        // 1.1 s of speech in 20 ms frames, a mark every 10 frames
        for i in 1..=55 {
            codec.write_media(&[0x10; 160], &mut out);
            if i % 10 == 0 {
                codec.write_mark(&format!("s1f{i}"), &mut out);
            }
            for m in json_texts(&out) {
                if m["event"] == "media" {
                    let audio = b64(&m["media"]["payload"]);
                    assert!(audio.iter().all(|&b| b == 0x10), "no silence mid-utterance");
                    sent += audio.len();
                } else {
                    // each mark follows the chunk holding its position, and no later one
                    let at: usize = m["mark"]["name"].as_str().unwrap()[3..].parse().unwrap();
                    assert!(sent >= at * 160 && sent < at * 160 + 3200, "{at}: {sent}");
                    marks_after.push(at);
                }
            }
            out.clear();
        }
        assert_eq!(marks_after, [10, 20, 30, 40]);
        assert_eq!(sent, 6400);
        // the utterance's end: the session flushes before its last mark
        codec.flush(&mut out);
        codec.write_mark("s1end55", &mut out);
        assert_eq!(summary(&out), ["3200", "s1f50", "s1end55"]);
        let padded = b64(&json_texts(&out)[0]["media"]["payload"]);
        assert_eq!(
            padded.iter().filter(|&&b| b == 0x10).count(),
            55 * 160 - 6400
        );
        assert!(padded[55 * 160 - 6400..].iter().all(|&b| b == 0xFF));
    }

    #[test]
    fn a_clear_drops_held_audio_and_then_writes_its_deferred_marks() {
        let mut codec = ExotelCodec::new();
        codec.parse(Msg::Text(DOC_START)).unwrap();
        let mut out = OutMsgs::new();
        codec.write_media(&[1; 640], &mut out);
        codec.write_mark("s1f2", &mut out);
        codec.write_media(&[1; 640], &mut out);
        codec.write_mark("s1f4", &mut out);
        assert!(out.is_empty());
        codec.write_clear(&mut out);
        // Twilio-like: the marks come back after the clear, which the engine reads as not played
        assert_eq!(summary(&out), ["clear", "s1f2", "s1f4"]);
        out.clear();
        codec.flush(&mut out);
        assert!(out.is_empty(), "nothing held or deferred after a clear");
    }

    #[test]
    fn deferred_marks_are_bounded() {
        let mut codec = ExotelCodec::new();
        codec.parse(Msg::Text(DOC_START)).unwrap();
        let mut out = OutMsgs::new();
        codec.write_media(&[1; 2], &mut out);
        for i in 0..MAX_DEFERRED_MARKS {
            codec.write_mark(&format!("m{i}"), &mut out);
        }
        assert!(out.is_empty());
        // one more pads the held audio and writes them all
        codec.write_mark("last", &mut out);
        let s = summary(&out);
        assert_eq!(s.len(), MAX_DEFERRED_MARKS + 2);
        assert_eq!(s[0], "3200");
        assert_eq!(s[1], "m0");
        assert_eq!(s[MAX_DEFERRED_MARKS + 1], "last");
    }

    #[test]
    fn malformed_input_is_an_error() {
        let mut codec = ExotelCodec::new();
        for bad in [
            r#"{"event":"start"}"#,
            r#"{"event":"start","start":{"call_sid":"C"}}"#,
            r#"{"event":"start","start":{"stream_sid":"S"}}"#,
            r#"{"event":"start","start":{"stream_sid":"S","call_sid":"C","custom_parameters":[1]}}"#,
            r#"{"event":"media","media":{"timestamp":"200"}}"#,
            r#"{"event":"media","media":{"payload":"AA==","timestamp":"-5"}}"#,
            r#"{"event":"dtmf","dtmf":{"duration":"100"}}"#,
            r#"{"event":"mark","mark":{"name":null}}"#,
            r#"{"event":"mark","mark":"s1"}"#,
        ] {
            assert!(codec.parse(Msg::Text(bad)).is_err(), "{bad}");
        }
        assert!(matches!(
            codec.parse(Msg::Binary(&[0; 3200])),
            Err(WireError::Unexpected(_))
        ));
    }
}
