//! The hot path does not allocate once warm: parsing a Twilio media message, decoding its
//! payload, framing/decoding/upsampling/VAD of caller audio, and writing outbound media.
//!
//! Counted with a global allocator that tallies allocations made by the current thread.

use receptionist::engine::audio::{self, InboundPipeline, g711};
use receptionist::engine::media::twilio::{self, Inbound};

#[global_allocator]
static GLOBAL: receptionist::testing::CountingAllocator = receptionist::testing::CountingAllocator;

fn allocations<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = receptionist::testing::allocations_so_far();
    let r = f();
    (r, receptionist::testing::allocations_so_far() - before)
}

#[test]
fn media_hot_path_does_not_allocate_once_warm() {
    const SID: &str = "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
    // A second of a tone, µ-law.
    let tone: Vec<u8> = (0..8000)
        .map(|i| g711::ulaw_encode(((i as f32 * 0.3).sin() * 8000.0) as i16))
        .collect();
    let messages: Vec<String> = tone
        .chunks(audio::SAMPLES_8K)
        .enumerate()
        .map(|(i, c)| {
            let mut m = String::new();
            twilio::write_inbound_media(SID, i as u64 + 2, i as u64 + 1, i as u64 * 20, c, &mut m);
            m
        })
        .collect();

    let mut pipeline = InboundPipeline::with_default_vad();
    let mut payload = Vec::with_capacity(1024);
    let mut out = String::with_capacity(1024);
    let mut frames = 0u32;
    let mut step = |text: &str, out: &mut String| {
        let Ok(Inbound::Media { payload: b64, .. }) = twilio::parse(text) else {
            panic!("not media: {text}")
        };
        twilio::decode_payload(b64, &mut payload).expect("valid payload");
        pipeline.push(&payload);
        while let Some(frame) = pipeline.pop() {
            frames += 1;
            // Echo it back as outbound media (the shape of a loopback test).
            let mut mulaw = [0u8; audio::SAMPLES_8K];
            g711::encode_into(&frame.pcm8k, &mut mulaw);
            out.clear();
            twilio::write_media(SID, &mulaw, out);
            twilio::write_mark(SID, "resp-1", out);
        }
    };

    // Warm up.
    for m in &messages[..5] {
        step(m, &mut out);
    }
    let ((), n) = allocations(|| {
        for m in &messages[5..] {
            step(m, &mut out);
        }
    });
    assert_eq!(n, 0, "allocations on the steady path");
    assert_eq!(frames, 50);

    // Other events parse without allocating too, except `start` (owned strings, once per call).
    let mut text = String::with_capacity(256);
    twilio::write_inbound_mark(SID, 3, "resp-1", &mut text);
    let (r, n) =
        allocations(|| matches!(twilio::parse(&text), Ok(Inbound::Mark { name: "resp-1" })));
    assert!(r);
    assert_eq!(n, 0);
    text.clear();
    twilio::write_inbound_dtmf(SID, 4, '5', &mut text);
    let (r, n) =
        allocations(|| matches!(twilio::parse(&text), Ok(Inbound::Dtmf { digit: '5', .. })));
    assert!(r);
    assert_eq!(n, 0);
}

/// The carrier-neutral path a driver will run for every carrier: parse a media message, decode
/// its payload, transcode it to µ-law 8 kHz; transcode agent audio to the carrier's codec and
/// write it (with a mark every 10 frames). No allocation once warm, whatever the carrier.
#[test]
fn every_carrier_codec_is_allocation_free_once_warm() {
    use base64::Engine as _;
    use receptionist::engine::media::{
        Carrier, CarrierCodec, Codec, InboundTranscoder, Msg, OutMsgs, OutboundTranscoder,
    };

    let starts = [
        (
            Carrier::Twilio,
            r#"{"event":"start","start":{"streamSid":"MZ1","callSid":"CA1"}}"#,
        ),
        (
            Carrier::SignalWire,
            r#"{"event":"start","start":{"streamSid":"MZ1","callSid":"CA1","mediaFormat":{"encoding":"audio/x-l16","sampleRate":16000,"channels":1}}}"#,
        ),
        (
            Carrier::Telnyx,
            r#"{"event":"start","start":{"call_control_id":"v2:1","media_format":{"encoding":"L16","sample_rate":16000,"channels":1}},"stream_id":"S1"}"#,
        ),
        (
            Carrier::Plivo,
            r#"{"event":"start","start":{"callId":"P1","streamId":"S1","mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000}},"extra_headers":"a=b"}"#,
        ),
        (
            Carrier::Vonage,
            r#"{"event":"websocket:connected","content-type":"audio/l16;rate=16000"}"#,
        ),
        (
            Carrier::Exotel,
            r#"{"event":"start","start":{"stream_sid":"S1","call_sid":"CA1","media_format":{"encoding":"audio/x-raw","sample_rate":"8000","bit_rate":"16"}}}"#,
        ),
    ];
    let tone: Vec<u8> = (0..8000)
        .map(|i| g711::ulaw_encode(((i as f32 * 0.3).sin() * 8000.0) as i16))
        .collect();
    let marks: Vec<String> = (0..50).map(|i| format!("s1f{}", i + 1)).collect();
    for (carrier, start) in starts {
        let mut codec = Codec::new(carrier);
        let Ok(receptionist::engine::media::Inbound::Start(start)) = codec.parse(Msg::Text(start))
        else {
            panic!("{carrier}: no start")
        };
        // The carrier's messages for a second of caller audio, built beforehand.
        let mut wire_enc = OutboundTranscoder::new(start.codec).unwrap();
        let mut wire = Vec::new();
        wire_enc.encode(&tone, &mut wire);
        let frame = start.codec.bytes_per_20ms().unwrap();
        let messages: Vec<Vec<u8>> = wire
            .chunks(frame)
            .enumerate()
            .map(|(i, c)| {
                let b64 = base64::engine::general_purpose::STANDARD.encode(c);
                match carrier {
                    Carrier::Vonage => c.to_vec(),
                    Carrier::Twilio | Carrier::SignalWire => format!(
                        r#"{{"event":"media","sequenceNumber":"{}","media":{{"track":"inbound","chunk":"{}","timestamp":"{}","payload":"{b64}"}},"streamSid":"MZ1"}}"#,
                        i + 2,
                        i + 1,
                        i * 20
                    )
                    .into_bytes(),
                    Carrier::Plivo => format!(
                        r#"{{"event":"media","sequenceNumber":{},"streamId":"S1","media":{{"track":"inbound","timestamp":"{}","chunk":{},"payload":"{b64}"}},"extra_headers":"a=b"}}"#,
                        i + 2,
                        1_705_312_200_000u64 + i as u64 * 20,
                        i + 1
                    )
                    .into_bytes(),
                    Carrier::Telnyx | Carrier::Exotel => format!(
                        r#"{{"event":"media","sequence_number":"{}","stream_id":"S1","stream_sid":"S1","media":{{"track":"inbound","chunk":"{}","timestamp":"{}","payload":"{b64}"}}}}"#,
                        i + 2,
                        i + 1,
                        i * 20
                    )
                    .into_bytes(),
                }
            })
            .collect();

        let mut inbound = InboundTranscoder::new(start.codec).unwrap();
        let mut outbound = OutboundTranscoder::new(start.outbound_codec).unwrap();
        let mut payload = Vec::with_capacity(4096);
        let mut mulaw = Vec::with_capacity(4096);
        let mut agent = Vec::with_capacity(4096);
        let mut out = OutMsgs::with_capacity(16 * 1024);
        let mut sent = 0usize;
        let mut step = |i: usize, m: &[u8], sent: &mut usize| {
            let msg = match carrier {
                Carrier::Vonage => Msg::Binary(m),
                _ => Msg::Text(std::str::from_utf8(m).unwrap()),
            };
            let Ok(receptionist::engine::media::Inbound::Media { payload: p, .. }) =
                codec.parse(msg)
            else {
                panic!("{carrier}: not media")
            };
            let bytes = p.bytes(&mut payload).expect("valid payload");
            mulaw.clear();
            inbound.decode(bytes, &mut mulaw).expect("decodes");
            // Echo it back as agent audio, as a loopback would.
            for f in mulaw.chunks(160) {
                agent.clear();
                outbound.encode(f, &mut agent);
                codec.write_media(&agent, &mut out);
            }
            if i % 10 == 9 {
                codec.write_mark(&marks[i], &mut out);
            }
            *sent += out.len();
            out.clear();
        };
        for (i, m) in messages[..10].iter().enumerate() {
            step(i, m, &mut sent);
        }
        let ((), n) = allocations(|| {
            for (i, m) in messages.iter().enumerate().skip(10) {
                step(i, m, &mut sent);
            }
        });
        assert_eq!(n, 0, "{carrier}: allocations on the steady path");
        assert!(sent > 0, "{carrier}");
    }
}
