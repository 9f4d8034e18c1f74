//! Opus decode of one 20 ms packet (Telnyx and browser audio), mono, at 48 and 16 kHz.
//!
//! Built only with the `opus` feature: `cargo bench --features opus --bench opus`.
//! A test signal (the speech fixtures, upsampled) is encoded once in setup; the loop decodes the
//! packets in order, as a call would. A counting allocator checks the decode allocates nothing on
//! the Rust side (libopus decodes on the stack: C `malloc` is not seen by it).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use receptionist::engine::audio::opus::OpusDecoder;
use receptionist::engine::audio::{g711, resample};

#[global_allocator]
static GLOBAL: receptionist::testing::CountingAllocator = receptionist::testing::CountingAllocator;

const FIXTURES: [&[u8]; 3] = [
    include_bytes!("../audio-fixtures/vad/speech_slt_8k.ulaw"),
    include_bytes!("../audio-fixtures/vad/speech_rms_8k.ulaw"),
    include_bytes!("../audio-fixtures/vad/speech_awb_8k.ulaw"),
];

/// The speech fixtures as PCM at `rate`.
fn speech(rate: u32) -> Vec<i16> {
    let mulaw: Vec<u8> = FIXTURES.iter().flat_map(|f| f.iter().copied()).collect();
    let mut pcm = vec![0i16; mulaw.len()];
    g711::decode_into(&mulaw, &mut pcm);
    resample(&pcm, 8000, rate)
}

/// 20 ms packets of `pcm` at `rate`, as a VoIP encoder at 32 kb/s makes them.
fn encode(rate: u32, pcm: &[i16]) -> Vec<Vec<u8>> {
    let mut enc = opus::Encoder::new(rate, opus::Channels::Mono, opus::Application::Voip)
        .expect("encoder for a supported rate");
    enc.set_bitrate(opus::Bitrate::Bits(32_000))
        .expect("valid bitrate");
    pcm.chunks_exact(rate as usize / 50)
        .map(|c| enc.encode_vec(c, 1500).expect("encode"))
        .collect()
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("opus");
    group.throughput(Throughput::Elements(1));
    for (name, rate) in [("decode_20ms_48k", 48_000u32), ("decode_20ms_16k", 16_000)] {
        let packets = encode(rate, &speech(rate));
        let mean = packets.iter().map(Vec::len).sum::<usize>() / packets.len();
        eprintln!(
            "opus/{name}: {} packets, {mean} bytes on average",
            packets.len()
        );
        let mut decoder = OpusDecoder::new(rate).expect("decoder");
        let mut out = vec![0i16; decoder.max_samples()];
        let mut next = 0;
        let mut step = || {
            let n = decoder
                .decode(black_box(&packets[next]), &mut out)
                .expect("valid packet");
            next = (next + 1) % packets.len();
            black_box(&out[..n]);
        };
        let before = receptionist::testing::allocations_so_far();
        for _ in 0..packets.len() {
            step();
        }
        let allocs = receptionist::testing::allocations_so_far() - before;
        eprintln!(
            "alloc check: opus/{name}: {allocs} allocations in {} packets",
            packets.len()
        );
        group.bench_function(name, |b| b.iter(&mut step));
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
