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
