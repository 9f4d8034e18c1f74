//! What every carrier's parser and writer share: the error type, size limits, base64 payloads,
//! lenient scalars (carriers disagree on strings versus numbers), and JSON string writing.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::{AudioCodec, ByteOrder, Inbound, Payload};

/// Largest decoded media payload accepted (64 KiB, about 8 s of µ-law).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Largest text message any carrier parser accepts.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Why a message was rejected. Never contains audio.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("malformed message: {0}")]
    Json(#[from] serde_json::Error),
    /// A field this event requires is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// The media payload is not valid base64.
    #[error("media payload is not valid base64")]
    BadBase64,
    /// A field is present but its value is unusable.
    #[error("bad value for `{0}`")]
    BadValue(&'static str),
    /// The message or its decoded payload exceeds the size limit.
    #[error("message too large")]
    TooLarge,
    /// The start message names a codec this build cannot handle (the text says which, and
    /// what would make it work).
    #[error("unsupported codec: {0}")]
    UnsupportedCodec(String),
    /// A binary audio frame of the wrong size (Vonage sends exactly one 20 ms frame each).
    #[error("binary frame of {len} bytes, expected {expected}")]
    FrameSize { len: usize, expected: usize },
    /// A message this carrier never sends at this point (binary on a JSON protocol, audio
    /// before the stream's format is known).
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
}

impl WireError {
    /// A codec the carrier named that this build does not handle.
    pub(crate) fn unsupported(what: impl fmt::Display) -> Self {
        WireError::UnsupportedCodec(what.to_string())
    }
}

/// Just the discriminator, to classify messages whose body does not parse.
#[derive(Deserialize)]
pub(crate) struct EventOnly<'a> {
    #[serde(borrow)]
    pub(crate) event: &'a str,
}

/// The full parse failed. If the text is an object whose event this code does not know, the
/// shape of its body is none of our business: return the event name (reported as `Unknown`).
pub(crate) fn unknown_event<'a>(
    text: &'a str,
    known: &[&str],
    err: serde_json::Error,
) -> Result<&'a str, WireError> {
    match serde_json::from_str::<EventOnly<'a>>(text) {
        Ok(e) if !known.contains(&e.event) => Ok(e.event),
        _ => Err(WireError::Json(err)),
    }
}

/// Decodes a base64 media payload into `out` (cleared first; no allocation once `out` has
/// grown to the payload size). Rejects bad base64 and payloads over [`MAX_PAYLOAD_BYTES`].
pub fn decode_payload(b64: &str, out: &mut Vec<u8>) -> Result<(), WireError> {
    out.clear();
    // 4 characters per 3 bytes, padded.
    if b64.len() > MAX_PAYLOAD_BYTES.div_ceil(3) * 4 {
        return Err(WireError::TooLarge);
    }
    if LENIENT_B64.decode_vec(b64.as_bytes(), out).is_err() {
        out.clear();
        return Err(WireError::BadBase64);
    }
    if out.len() > MAX_PAYLOAD_BYTES {
        out.clear();
        return Err(WireError::TooLarge);
    }
    Ok(())
}

/// Standard alphabet; padding optional on input (some carriers and tools omit it).
const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

// ---------------------------------------------------------------------------------------------
// Lenient scalars: Twilio sends counters as strings, other carriers as numbers.

pub(crate) fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a non-negative integer, as a number or a string")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map(Some)
                .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.fract() == 0.0 && (0.0..9.0e15).contains(&v) {
                Ok(Some(v as u64))
            } else {
                Err(E::invalid_value(de::Unexpected::Float(v), &self))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            v.trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }
    d.deserialize_option(V)
}

/// `Option<Cow<str>>` that borrows when the JSON string has no escapes (serde's own `Cow`
/// impl always allocates when wrapped in `Option`).
pub(crate) fn borrowed_or_owned<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_str(V)
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
    }
    d.deserialize_option(V)
}

pub(crate) fn lenient_digit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<char>, D::Error> {
    struct V;
    impl V {
        fn check<E: de::Error>(c: char) -> Result<Option<char>, E> {
            let c = c.to_ascii_uppercase();
            if c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D') {
                Ok(Some(c))
            } else {
                Err(E::invalid_value(de::Unexpected::Char(c), &"a DTMF digit"))
            }
        }
    }
    impl<'de> Visitor<'de> for V {
        type Value = Option<char>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a DTMF digit: 0-9, *, #, A-D")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            match char::from_digit(v.min(10) as u32, 10) {
                Some(c) => Ok(Some(c)),
                None => Err(E::invalid_value(de::Unexpected::Unsigned(v), &self)),
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let mut chars = v.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Self::check(c),
                _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
            }
        }
    }
    d.deserialize_option(V)
}

pub(crate) fn push_str_field(out: &mut String, key: &str, value: &str) {
    out.push('"');
    out.push_str(key);
    out.push_str("\":\"");
    push_json_str(out, value);
    out.push('"');
}

pub(crate) fn push_u64_str_field(out: &mut String, key: &str, value: u64) {
    out.push('"');
    out.push_str(key);
    // Writing to a String cannot fail.
    let _ = write!(out, "\":\"{value}\"");
}

/// Appends base64 (standard alphabet, padded) of `bytes` to `out`.
pub(crate) fn push_base64(out: &mut String, bytes: &[u8]) {
    base64::engine::general_purpose::STANDARD.encode_string(bytes, out);
}

/// A text message parsed into `T`, or the name of an event outside `known` whose body did not fit
/// `T` (carriers add events; their shape is none of our business).
pub(crate) enum Parsed<'a, T> {
    Known(T),
    Unknown(&'a str),
}

/// Parses a carrier's JSON text message: size limit, then `T`, then the unknown-event fallback.
pub(crate) fn parse_json<'a, T: Deserialize<'a>>(
    text: &'a str,
    known: &[&str],
) -> Result<Parsed<'a, T>, WireError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge);
    }
    match serde_json::from_str::<T>(text) {
        Ok(v) => Ok(Parsed::Known(v)),
        Err(e) => unknown_event(text, known, e).map(Parsed::Unknown),
    }
}

/// Custom parameters as strings: numbers and booleans as their JSON text, null as empty.
pub(crate) fn string_map(
    map: impl IntoIterator<Item = (String, serde_json::Value)>,
) -> std::collections::BTreeMap<String, String> {
    map.into_iter().map(|(k, v)| (k, value_string(v))).collect()
}

/// A JSON value as a parameter string: strings as themselves, null as empty, others as JSON.
fn value_string(v: serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

// ---- Message parts several carriers share (Telnyx, Plivo, Exotel) ------------------------

#[derive(Deserialize)]
pub(crate) struct RawMedia<'a> {
    #[serde(default, borrow, deserialize_with = "borrowed_or_owned")]
    pub(crate) track: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub(crate) chunk: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub(crate) timestamp: Option<u64>,
    #[serde(default, borrow, deserialize_with = "borrowed_or_owned")]
    pub(crate) payload: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(crate) struct RawDtmf {
    #[serde(default, deserialize_with = "lenient_digit")]
    pub(crate) digit: Option<char>,
}

#[derive(Deserialize)]
pub(crate) struct RawMark<'a> {
    #[serde(default, borrow, deserialize_with = "borrowed_or_owned")]
    pub(crate) name: Option<Cow<'a, str>>,
}

/// The media message's audio, unless it is the agent's own track echoed back (a stream started
/// with `both_tracks`), which is not caller audio.
pub(crate) fn media_event<'a>(media: Option<RawMedia<'a>>) -> Result<Inbound<'a>, WireError> {
    let media = media.ok_or(WireError::MissingField("media"))?;
    let payload = media
        .payload
        .ok_or(WireError::MissingField("media.payload"))?;
    if media.track.as_deref() == Some("outbound") {
        return Ok(Inbound::Ignored(Cow::Borrowed("media (outbound track)")));
    }
    Ok(Inbound::Media {
        payload: Payload::Base64(payload),
        timestamp_ms: media.timestamp,
        chunk: media.chunk,
    })
}

pub(crate) fn dtmf_event<'a>(dtmf: Option<RawDtmf>) -> Result<Inbound<'a>, WireError> {
    let dtmf = dtmf.ok_or(WireError::MissingField("dtmf"))?;
    let digit = dtmf.digit.ok_or(WireError::MissingField("dtmf.digit"))?;
    Ok(Inbound::Dtmf(digit))
}

pub(crate) fn mark_event<'a>(mark: Option<RawMark<'a>>) -> Result<Inbound<'a>, WireError> {
    let mark = mark.ok_or(WireError::MissingField("mark"))?;
    let name = mark.name.ok_or(WireError::MissingField("mark.name"))?;
    Ok(Inbound::Mark(name))
}

/// Reads a codec as carriers name it: RTP names (`PCMU`, `PCMA`, `L16`, `OPUS`), MIME types
/// (`audio/x-mulaw`, `audio/x-l16`, `audio/x-raw`, `audio/l16;rate=16000`), any case. `rate` is
/// the stated sample rate, if any (a `rate=` parameter in the name wins); L16 without one is at
/// `default_rate`, in byte order `order`. Codecs this code does not know (G722, AMR-WB, ...) are
/// [`WireError::UnsupportedCodec`]; whether this build can use a known one is checked later
/// ([`super::check_codecs`]).
pub(crate) fn audio_codec(
    name: &str,
    rate: Option<u64>,
    order: ByteOrder,
    default_rate: u32,
) -> Result<AudioCodec, WireError> {
    let mut parts = name.split(';');
    let base = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let mut rate = rate;
    for param in parts {
        if let Some((k, v)) = param.split_once('=')
            && k.trim().eq_ignore_ascii_case("rate")
        {
            rate = Some(v.trim().parse().map_err(|_| WireError::BadValue("rate"))?);
        }
    }
    let rate = rate
        .map(|r| u32::try_from(r).map_err(|_| WireError::BadValue("sample rate")))
        .transpose()?;
    let base = base.strip_prefix("audio/").unwrap_or(&base);
    let base = base.strip_prefix("x-").unwrap_or(base);
    let g711 = |codec: AudioCodec| match rate {
        None | Some(8000) => Ok(codec),
        Some(other) => Err(WireError::unsupported(format_args!(
            "{} at {other} Hz (G.711 is 8000 Hz)",
            shown(name)
        ))),
    };
    match base {
        "mulaw" | "ulaw" | "pcmu" => g711(AudioCodec::Mulaw),
        "alaw" | "pcma" => g711(AudioCodec::Alaw),
        "l16" | "raw" | "slin" => Ok(AudioCodec::L16 {
            rate: rate.unwrap_or(default_rate),
            order,
        }),
        "opus" => Ok(AudioCodec::Opus {
            rate: rate.unwrap_or(48000),
        }),
        _ => Err(WireError::unsupported(format_args!(
            "{} (supported: PCMU, PCMA, L16, OPUS)",
            shown(name)
        ))),
    }
}

/// Custom parameters from JSON: an object of name → value, or (Telnyx's request shape) an array
/// of `{"name": .., "value": ..}`; `null` or absent is empty.
pub(crate) fn params_from_value(
    value: Option<serde_json::Value>,
) -> Result<std::collections::BTreeMap<String, String>, WireError> {
    use serde_json::Value;
    match value {
        None | Some(Value::Null) => Ok(Default::default()),
        Some(Value::Object(map)) => Ok(string_map(map)),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::Object(mut o) => match (o.remove("name"), o.remove("value")) {
                    (Some(Value::String(name)), value) => {
                        Ok((name, value_string(value.unwrap_or(Value::Null))))
                    }
                    _ => Err(WireError::BadValue("custom_parameters")),
                },
                _ => Err(WireError::BadValue("custom_parameters")),
            })
            .collect(),
        Some(_) => Err(WireError::BadValue("custom_parameters")),
    }
}

/// A carrier-supplied string fit for an error message or a log line: escaped, at most 40
/// characters.
pub(crate) fn shown(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(40)
        .collect::<String>()
        .escape_debug()
        .collect();
    if s.chars().nth(40).is_some() {
        out.push('…');
    }
    out
}

/// Appends `s` to `out` as the body of a JSON string (without the quotes), escaping `"`, `\` and
/// control characters. Carriers echo strings we send (stream sids, mark names) and strings they
/// send may come from untrusted configuration, so every string written goes through this.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0C => "\\f",
            0x00..=0x1F => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xF) as usize] as char);
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_round_trip_through_serde_json() {
        for s in [
            "plain",
            "quo\"te",
            "back\\slash",
            "nl\nx\r\t",
            "\u{0}\u{1}\u{1f}\u{7f}",
            "é€😀",
            "</script>",
            "",
        ] {
            let mut out = String::from("\"");
            push_json_str(&mut out, s);
            out.push('"');
            let back: String = serde_json::from_str(&out).unwrap();
            assert_eq!(back, s);
        }
    }
}
