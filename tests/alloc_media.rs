//! The hot path does not allocate once warm: parsing a Twilio media message, decoding its
//! payload, framing/decoding/upsampling/VAD of caller audio, and writing outbound media.
//!
//! Counted with a global allocator that tallies allocations made by the current thread.

use receptionist::engine::AgentAudio;
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
/// The media session (the driver's glue) in every carrier's protocol and codec: the fake
/// carrier's messages (built beforehand) parsed, decoded and sliced into engine inputs, and agent
/// audio and marks written back.
#[test]
fn every_carrier_media_session_is_allocation_free_once_warm() {
    use receptionist::engine::ToCaller;
    use receptionist::engine::call::MarkId;
    use receptionist::engine::media::{Carrier, CarrierCodec, Inbound, MediaSession, Msg};
    use receptionist::testing::carrier::{CallInfo, FakeCarrier, codecs};

    enum Wire {
        Text(String),
        Binary(Vec<u8>),
    }
    fn take(fake: &mut FakeCarrier) -> Vec<Wire> {
        let msgs = fake
            .out()
            .iter()
            .map(|m| match m {
                Msg::Text(t) => Wire::Text(t.to_owned()),
                Msg::Binary(b) => Wire::Binary(b.to_vec()),
            })
            .collect();
        fake.clear_out();
        msgs
    }
    fn msg(w: &Wire) -> Msg<'_> {
        match w {
            Wire::Text(t) => Msg::Text(t),
            Wire::Binary(b) => Msg::Binary(b),
        }
    }

    let tone: Vec<u8> = (0..8000)
        .map(|i| g711::ulaw_encode(((i as f32 * 0.3).sin() * 8000.0) as i16))
        .collect();
    for carrier in Carrier::ALL {
        for codec in codecs(carrier) {
            let what = format!("{carrier} {codec}");
            let t0 = std::time::Instant::now();
            let mut fake = FakeCarrier::new(carrier, codec, CallInfo::default(), t0).unwrap();
            let mut server = fake.server_codec();
            fake.connect();
            let start = take(&mut fake)
                .iter()
                .find_map(|m| match server.parse(msg(m)) {
                    Ok(Inbound::Start(s)) => Some(s),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{what}: no start"));
            let mut session = MediaSession::new(server, &start).unwrap();
            // a second of caller audio, as the carrier sends it
            fake.send_audio(&tone);
            let messages = take(&mut fake);
            assert_eq!(messages.len(), 50, "{what}");

            let mut inputs = 0usize;
            let mut sent = 0usize;
            // agent audio shares its synthesised buffer: sending a slice of it allocates nothing
            let agent: std::sync::Arc<[u8]> = tone.clone().into();
            let mut step = |i: usize, m: &Wire, session: &mut MediaSession| {
                let mut n = 0;
                session
                    .handle_message(msg(m), |input| {
                        if let receptionist::engine::Input::CallerAudio { .. } = input {
                            n += 1;
                        }
                    })
                    .expect("valid media");
                inputs += n;
                // as much agent audio back, as a loopback would
                let at = (i * 160) % (agent.len() - 640);
                session.write(&ToCaller::Media(AgentAudio::new(
                    agent.clone(),
                    at..at + n.min(4) * 160,
                )));
                if i % 10 == 9 {
                    session.write(&ToCaller::Mark(MarkId {
                        speech: 1,
                        frames: i as u32 + 1,
                        last: false,
                    }));
                }
                sent += session.out().len();
                session.clear_out();
            };
            // warm: 400 ms, so that Exotel's µ-law chunk (400 ms) has grown the buffers once
            for (i, m) in messages[..20].iter().enumerate() {
                step(i, m, &mut session);
            }
            let ((), n) = allocations(|| {
                for (i, m) in messages.iter().enumerate().skip(20) {
                    step(i, m, &mut session);
                }
            });
            assert_eq!(n, 0, "{what}: allocations on the steady path");
            assert!(inputs >= 45, "{what}: {inputs} inputs");
            assert!(sent > 0, "{what}");
        }
    }
}
