//! Tests of the carrier-neutral interface and of what every codec must do alike. Each carrier's
//! own module tests its protocol against the doc's sample messages.

use super::*;
use crate::engine::audio::g711;

/// The text messages in `out`, parsed as JSON (panics on a binary one or bad JSON).
pub(super) fn json_texts(out: &OutMsgs) -> Vec<serde_json::Value> {
    out.iter()
        .map(|m| match m {
            Msg::Text(t) => serde_json::from_str(t).unwrap_or_else(|e| panic!("{e}: {t}")),
            Msg::Binary(b) => panic!("binary message of {} bytes", b.len()),
        })
        .collect()
}

/// Decodes a base64 payload written by a codec.
pub(super) fn b64(v: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::new();
    decode_payload(v.as_str().expect("payload is a string"), &mut out).expect("valid base64");
    out
}

/// A minimal valid start message for each carrier, in `codec` where the carrier lets one choose.
pub(super) fn start_message(carrier: Carrier) -> (Msg<'static>, AudioCodec) {
    let l16 = |rate, order| AudioCodec::L16 { rate, order };
    match carrier {
        Carrier::Twilio => (
            Msg::Text(
                r#"{"event":"start","start":{"streamSid":"MZ1","callSid":"CA1","customParameters":{"callId":"c1"}}}"#,
            ),
            AudioCodec::Mulaw,
        ),
        Carrier::SignalWire => (
            Msg::Text(
                r#"{"event":"start","start":{"streamSid":"MZ1","callSid":"CA1","mediaFormat":{"encoding":"audio/x-l16","sampleRate":16000,"channels":1},"customParameters":{"callId":"c1"}}}"#,
            ),
            l16(16000, ByteOrder::Little),
        ),
        Carrier::Telnyx => (
            Msg::Text(
                r#"{"event":"start","start":{"call_control_id":"v2:1","media_format":{"encoding":"PCMA","sample_rate":8000,"channels":1},"custom_parameters":{"callId":"c1"}},"stream_id":"S1"}"#,
            ),
            AudioCodec::Alaw,
        ),
        Carrier::Plivo => (
            Msg::Text(
                r#"{"event":"start","start":{"callId":"P1","streamId":"S1","mediaFormat":{"encoding":"audio/x-l16","sampleRate":16000}},"extra_headers":"callId=c1"}"#,
            ),
            l16(16000, ByteOrder::Little),
        ),
        Carrier::Vonage => (
            Msg::Text(
                r#"{"event":"websocket:connected","content-type":"audio/l16;rate=16000","callId":"c1"}"#,
            ),
            l16(16000, ByteOrder::Little),
        ),
        Carrier::Exotel => (
            Msg::Text(
                r#"{"event":"start","stream_sid":"S1","start":{"stream_sid":"S1","call_sid":"CA1","custom_parameters":{"callId":"c1"},"media_format":{"encoding":"audio/x-raw","sample_rate":"8000","bit_rate":"16"}}}"#,
            ),
            l16(8000, ByteOrder::Little),
        ),
    }
}

#[test]
fn carrier_names() {
    for c in Carrier::ALL {
        assert_eq!(c.as_str().parse::<Carrier>().unwrap(), c);
        assert_eq!(c.to_string(), c.as_str());
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, format!("\"{}\"", c.as_str()));
        assert_eq!(serde_json::from_str::<Carrier>(&json).unwrap(), c);
        assert_eq!(Codec::new(c).carrier(), c);
    }
    assert_eq!(
        "SignalWire".parse::<Carrier>().unwrap(),
        Carrier::SignalWire
    );
    assert_eq!("TWILIO".parse::<Carrier>().unwrap(), Carrier::Twilio);
    let err = "bandwidth".parse::<Carrier>().unwrap_err();
    assert!(err.to_string().contains("bandwidth"));
    assert!(serde_json::from_str::<Carrier>("\"signal_wire\"").is_err());
    assert!("".parse::<Carrier>().is_err());
}

#[test]
fn only_vonage_goes_without_mark_echoes() {
    for c in Carrier::ALL {
        assert_eq!(Codec::new(c).echoes_marks(), c != Carrier::Vonage, "{c}");
    }
}

#[test]
fn out_msgs_keep_order_and_buffers() {
    let mut out = OutMsgs::new();
    assert!(out.is_empty());
    out.push_text(|s| s.push_str("one"));
    out.push_binary(&[1, 2, 3]);
    out.push_text(|s| s.push_str("two"));
    out.push_binary(&[]);
    assert_eq!(out.len(), 4);
    assert_eq!(
        out.iter().collect::<Vec<_>>(),
        [
            Msg::Text("one"),
            Msg::Binary(&[1, 2, 3]),
            Msg::Text("two"),
            Msg::Binary(&[])
        ]
    );
    out.clear();
    assert!(out.is_empty() && out.iter().next().is_none());
    // once grown to the messages' size (the binary buffer only on first use), they are reused
    out.push_text(|s| s.push_str("three"));
    out.push_binary(&[9; 100]);
    out.clear();
    let caps = (out.text.capacity(), out.binary.capacity());
    for _ in 0..100 {
        out.push_text(|s| s.push_str("three"));
        out.push_binary(&[9; 100]);
        out.clear();
    }
    assert_eq!((out.text.capacity(), out.binary.capacity()), caps);
}

#[test]
fn chunker_emits_exact_sizes_and_pads_on_flush() {
    let mut c = Chunker::new(4, 0xFF);
    let mut got: Vec<Vec<u8>> = Vec::new();
    c.push(&[1, 2, 3], |b| got.push(b.to_vec()));
    assert!(got.is_empty());
    assert_eq!(c.held(), 3);
    c.push(&[4, 5, 6, 7, 8, 9, 10, 11, 12, 13], |b| {
        got.push(b.to_vec())
    });
    assert_eq!(
        got,
        [vec![1, 2, 3, 4], vec![5, 6, 7, 8], vec![9, 10, 11, 12]]
    );
    c.flush(|b| got.push(b.to_vec()));
    assert_eq!(got[3], [13, 0xFF, 0xFF, 0xFF]);
    c.flush(|_| panic!("nothing held"));
    c.push(&[1], |_| panic!("not full"));
    c.clear();
    c.flush(|_| panic!("cleared"));
    c.reset(2, 0);
    c.push(&[7, 7, 7], |b| assert_eq!(b, [7, 7]));
    assert_eq!(c.held(), 1);
    c.push(&[], |_| panic!("nothing new"));
}

#[test]
fn payload_bytes() {
    let mut buf = Vec::with_capacity(8);
    assert_eq!(Payload::Raw(&[1, 2]).bytes(&mut buf).unwrap(), [1, 2]);
    assert_eq!(
        Payload::Base64(Cow::Borrowed("////"))
            .bytes(&mut buf)
            .unwrap(),
        [0xFF; 3]
    );
    assert!(matches!(
        Payload::Base64(Cow::Borrowed("!!")).bytes(&mut buf),
        Err(WireError::BadBase64)
    ));
    let big = vec![0u8; MAX_PAYLOAD_BYTES + 1];
    assert!(matches!(
        Payload::Raw(&big).bytes(&mut buf),
        Err(WireError::TooLarge)
    ));
}

#[test]
fn stream_start_debug_leaves_out_numbers_and_parameter_values() {
    let start = StreamStart {
        carrier: Carrier::Telnyx,
        stream_id: "S1".into(),
        call_id: Some("v2:1".into()),
        account_id: None,
        from: Some("+13122010094".into()),
        to: Some("+13122123456".into()),
        codec: AudioCodec::Mulaw,
        outbound_codec: AudioCodec::Mulaw,
        custom_parameters: [("token".to_string(), "s3cret".to_string())].into(),
    };
    let debug = format!("{start:?}");
    assert!(
        !debug.contains("+1312") && !debug.contains("s3cret"),
        "{debug}"
    );
    assert!(debug.contains("token") && debug.contains("v2:1"), "{debug}");
}

#[test]
fn every_codec_starts_with_its_sample_start() {
    for c in Carrier::ALL {
        let mut codec = Codec::new(c);
        let (msg, expected) = start_message(c);
        let Inbound::Start(start) = codec.parse(msg).unwrap() else {
            panic!("{c}: not a start")
        };
        assert_eq!(start.carrier, c);
        assert_eq!(start.codec, expected, "{c}");
        let outbound = if c == Carrier::Telnyx {
            AudioCodec::Mulaw
        } else {
            expected
        };
        assert_eq!(start.outbound_codec, outbound, "{c}");
        assert_eq!(start.custom_parameters["callId"], "c1", "{c}");
        InboundTranscoder::new(start.codec).unwrap();
        OutboundTranscoder::new(start.outbound_codec).unwrap();
    }
}

/// What a driver does with a whole call, for every carrier: start, caller audio through the
/// inbound transcoder, agent audio through the outbound transcoder and the writer, a mark and a
/// clear. Checks that one second of a tone arrives as one second of µ-law at the right level,
/// and that the agent's second leaves as whole messages carrying one second of audio.
#[test]
fn a_call_through_every_codec() {
    let tone: Vec<i16> = (0..8000)
        .map(|i| ((i as f64 * 2.0 * std::f64::consts::PI * 440.0 / 8000.0).sin() * 8000.0) as i16)
        .collect();
    let mulaw: Vec<u8> = tone.iter().map(|&s| g711::ulaw_encode(s)).collect();
    for c in Carrier::ALL {
        let mut codec = Codec::new(c);
        let (msg, _) = start_message(c);
        let Ok(Inbound::Start(start)) = codec.parse(msg) else {
            panic!("{c}")
        };
        // The carrier's side: the agent's µ-law turned into the carrier's wire format, framed
        // as that carrier frames caller audio.
        let mut wire_enc = OutboundTranscoder::new(start.codec).unwrap();
        let wire = wire_enc.encode(&mulaw).to_vec();
        let frame = start.codec.bytes_per_20ms().unwrap();
        let mut decoder = InboundTranscoder::new(start.codec).unwrap();
        let mut buf = Vec::new();
        let mut heard = Vec::new();
        let mut text = String::new();
        for (i, chunk) in wire.chunks(frame).enumerate() {
            text.clear();
            let msg = match c {
                Carrier::Vonage => Msg::Binary(chunk),
                Carrier::Telnyx | Carrier::Exotel => {
                    text.push_str(r#"{"event":"media","media":{"chunk":""#);
                    text.push_str(&(i + 1).to_string());
                    text.push_str(r#"","payload":""#);
                    wire::push_base64(&mut text, chunk);
                    text.push_str("\"}}");
                    Msg::Text(&text)
                }
                Carrier::Plivo => {
                    text.push_str(r#"{"event":"media","streamId":"S1","media":{"timestamp":""#);
                    text.push_str(&(1_705_312_200_000u64 + 20 * i as u64).to_string());
                    text.push_str(r#"","chunk":1,"payload":""#);
                    wire::push_base64(&mut text, chunk);
                    text.push_str("\"}}");
                    Msg::Text(&text)
                }
                Carrier::Twilio | Carrier::SignalWire => {
                    text.push_str(r#"{"event":"media","media":{"track":"inbound","timestamp":""#);
                    text.push_str(&(20 * i).to_string());
                    text.push_str(r#"","payload":""#);
                    wire::push_base64(&mut text, chunk);
                    text.push_str("\"}}");
                    Msg::Text(&text)
                }
            };
            let Inbound::Media {
                payload,
                timestamp_ms,
                ..
            } = codec.parse(msg).unwrap_or_else(|e| panic!("{c}: {e}"))
            else {
                panic!("{c}: not media")
            };
            if matches!(c, Carrier::Twilio | Carrier::SignalWire | Carrier::Plivo) {
                assert_eq!(timestamp_ms, Some(20 * i as u64), "{c}");
            }
            let bytes = payload.bytes(&mut buf).unwrap();
            heard.extend_from_slice(decoder.decode(bytes).unwrap());
        }
        assert!(
            heard.len().abs_diff(8000) <= 1,
            "{c}: {} bytes of µ-law",
            heard.len()
        );
        let level = heard[400..]
            .iter()
            .map(|&b| (g711::ulaw_decode(b) as f64).powi(2))
            .sum::<f64>()
            / (heard.len() - 400) as f64;
        let ratio = level.sqrt() / (8000.0 / 2f64.sqrt());
        assert!((0.9..1.1).contains(&ratio), "{c}: level {ratio}");

        // The agent speaks a second, with a mark every 200 ms, then is cleared.
        let mut enc = OutboundTranscoder::new(start.outbound_codec).unwrap();
        let mut out = OutMsgs::new();
        let mut sent = 0usize;
        let mut marks = 0;
        for (i, f) in mulaw.chunks(160).enumerate() {
            codec.write_media(enc.encode(f), &mut out);
            if i % 10 == 9 {
                codec.write_mark(&format!("s1f{}", i + 1), &mut out);
            }
            for m in out.iter() {
                match m {
                    Msg::Binary(b) => sent += b.len(),
                    Msg::Text(t) => {
                        let v: serde_json::Value = serde_json::from_str(t).unwrap();
                        let payload = &v["media"]["payload"];
                        if payload.is_string() {
                            sent += b64(payload).len();
                        } else {
                            marks += 1;
                        }
                    }
                }
            }
            out.clear();
        }
        let per_second = start.outbound_codec.bytes_per_20ms().unwrap() * 50;
        assert_eq!(sent, per_second, "{c}");
        assert_eq!(marks, if c == Carrier::Vonage { 0 } else { 5 }, "{c}");
        codec.write_clear(&mut out);
        enc.reset();
        assert_eq!(out.len(), 1, "{c}");
        assert!(matches!(out.iter().next(), Some(Msg::Text(_))), "{c}");
    }
}

#[test]
fn malformed_input_never_panics_any_codec() {
    let mut x = 0x2545_F491u32;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    const ALPHABET: &[u8] = b"{}[]\":,eventmdiarkstpconctdwbsk:payloadnm_-0123456789\\u ";
    for c in Carrier::ALL {
        for started in [false, true] {
            let mut codec = Codec::new(c);
            if started {
                codec.parse(start_message(c).0).unwrap();
            }
            for len in 0..400 {
                let s: String = (0..len)
                    .map(|_| ALPHABET[next() as usize % ALPHABET.len()] as char)
                    .collect();
                let _ = codec.parse(Msg::Text(&s));
                let b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                let _ = codec.parse(Msg::Binary(&b));
            }
            // Common malformed shapes are errors for every JSON carrier.
            for bad in [
                "",
                "{",
                "null",
                "[]",
                "42",
                "\"start\"",
                "{}",
                r#"{"event":5}"#,
            ] {
                assert!(codec.parse(Msg::Text(bad)).is_err(), "{c}: {bad}");
            }
            let huge = format!(
                r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
                "A".repeat(MAX_MESSAGE_BYTES)
            );
            assert!(
                matches!(codec.parse(Msg::Text(&huge)), Err(WireError::TooLarge)),
                "{c}"
            );
            // Writers accept anything the server might hand them, before or after start.
            let mut out = OutMsgs::new();
            codec.write_media(&[], &mut out);
            codec.write_media(&[0x7F; 999], &mut out);
            codec.write_mark("weird \"name\"\n\\", &mut out);
            codec.flush(&mut out);
            codec.write_clear(&mut out);
            for m in out.iter() {
                if let Msg::Text(t) = m {
                    serde_json::from_str::<serde_json::Value>(t)
                        .unwrap_or_else(|e| panic!("{c}: {e}: {t}"));
                }
            }
        }
    }
}

#[test]
fn unsupported_codecs_are_named_in_the_error() {
    let cases: [(Carrier, &str, &str); 6] = [
        (
            Carrier::Twilio,
            r#"{"event":"start","start":{"streamSid":"MZ","callSid":"CA","mediaFormat":{"encoding":"audio/x-l16","sampleRate":16000,"channels":1}}}"#,
            "audio/x-l16",
        ),
        (
            Carrier::Telnyx,
            r#"{"event":"start","start":{"call_control_id":"v2:1","media_format":{"encoding":"G722","sample_rate":8000}}}"#,
            "G722",
        ),
        (
            Carrier::Plivo,
            r#"{"event":"start","start":{"callId":"P","streamId":"S","mediaFormat":{"encoding":"audio/x-l16","sampleRate":44100}}}"#,
            "44100",
        ),
        (
            Carrier::Vonage,
            r#"{"event":"websocket:connected","content-type":"audio/l16;rate=11025"}"#,
            "11025",
        ),
        (
            Carrier::SignalWire,
            r#"{"event":"start","start":{"streamSid":"MZ","callSid":"CA","mediaFormat":{"encoding":"audio/G729","sampleRate":8000,"channels":1}}}"#,
            "G729",
        ),
        (
            Carrier::Exotel,
            r#"{"event":"start","start":{"stream_sid":"S","call_sid":"C","media_format":{"encoding":"audio/x-raw","sample_rate":"8000","bit_rate":"8"}}}"#,
            "8-bit",
        ),
    ];
    for (c, msg, needle) in cases {
        match Codec::new(c).parse(Msg::Text(msg)) {
            Err(WireError::UnsupportedCodec(what)) => {
                assert!(what.contains(needle), "{c}: {what}");
                let shown = WireError::UnsupportedCodec(what).to_string();
                assert!(shown.starts_with("unsupported codec: "), "{shown}");
            }
            other => panic!("{c}: {other:?}"),
        }
    }
}

#[test]
fn shared_helpers() {
    use wire::{audio_codec, params_from_value, shown};
    let le = ByteOrder::Little;
    assert_eq!(
        audio_codec("audio/l16;rate=24000", None, le, 16000).unwrap(),
        AudioCodec::L16 {
            rate: 24000,
            order: le
        }
    );
    assert_eq!(
        audio_codec("L16", Some(8000), ByteOrder::Big, 16000).unwrap(),
        AudioCodec::L16 {
            rate: 8000,
            order: ByteOrder::Big
        }
    );
    assert_eq!(
        audio_codec("Audio/X-MULAW", Some(8000), le, 8000).unwrap(),
        AudioCodec::Mulaw
    );
    assert_eq!(
        audio_codec("pcma", None, le, 8000).unwrap(),
        AudioCodec::Alaw
    );
    assert_eq!(
        audio_codec("OPUS", Some(16000), le, 8000).unwrap(),
        AudioCodec::Opus { rate: 16000 }
    );
    assert!(matches!(
        audio_codec("PCMU", Some(16000), le, 8000),
        Err(WireError::UnsupportedCodec(_))
    ));
    assert!(matches!(
        audio_codec("audio/l16;rate=fast", None, le, 8000),
        Err(WireError::BadValue("rate"))
    ));
    assert!(matches!(
        audio_codec("L16", Some(u64::MAX), le, 8000),
        Err(WireError::BadValue(_))
    ));
    assert!(matches!(
        audio_codec("", None, le, 8000),
        Err(WireError::UnsupportedCodec(_))
    ));

    let array = serde_json::json!([{"name":"a","value":"1"},{"name":"b","value":2},{"name":"c"}]);
    let map = params_from_value(Some(array)).unwrap();
    assert_eq!(
        map.into_iter().collect::<Vec<_>>(),
        [
            ("a".to_string(), "1".to_string()),
            ("b".into(), "2".into()),
            ("c".into(), "".into())
        ]
    );
    assert!(params_from_value(None).unwrap().is_empty());
    assert!(
        params_from_value(Some(serde_json::Value::Null))
            .unwrap()
            .is_empty()
    );
    for bad in [
        serde_json::json!("x"),
        serde_json::json!([1]),
        serde_json::json!([{"value":"no name"}]),
    ] {
        assert!(params_from_value(Some(bad)).is_err());
    }

    assert_eq!(shown("G722"), "G722");
    assert_eq!(shown("a\nb\u{1b}"), "a\\nb\\u{1b}");
    let long = "x".repeat(100);
    assert_eq!(shown(&long).chars().count(), 41);
}
