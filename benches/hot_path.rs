//! The per-frame hot path, one 20 ms frame per iteration:
//!
//! - `inbound/*`: µ-law decode → 8 → 16 kHz upsampling → VAD (`InboundPipeline` push + pop), on
//!   speech (the detector runs), on quiet frames (below the pipeline's gate: it is skipped) and on
//!   a phone line's noise while the caller listens (below the line's noise floor: skipped);
//! - `call_inbound/<carrier>`: a call (`testing::call::CallRig`: engine ⇄ `MediaSession` ⇄ the
//!   fake carrier) in which the caller talks: the carrier's media message parsed, decoded and
//!   transcoded, then the engine's input, for each carrier's default codec (and Telnyx's Opus
//!   with `--features opus`);
//! - `call_outbound/<carrier>`: the same call with the agent speaking a long prompt: the engine's
//!   pacing, media and marks written in the carrier's protocol, mark echoes handled;
//! - `twilio/*`: parsing one inbound `media` message and decoding its payload; writing one.
//!
//! The fake carrier's own work (writing caller media, parsing the server's messages strictly, its
//! play-out clock) is timed apart and taken out: the figures are the server's side. Before each
//! benchmark, a counting allocator checks the routine does not allocate once warm and prints what
//! it saw (`alloc check: ...`; the `call_*` counts include the fake's, printed apart);
//! `tests/alloc_engine.rs` asserts the server's side allocates nothing over whole calls. Run:
//! `cargo bench --bench hot_path` (`benches/opus.rs` times Opus decode alone).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use receptionist::engine::audio::{EnergyVad, InboundPipeline, SAMPLES_8K, VAD_GATE_DBFS};
use receptionist::engine::call::Timing;
use receptionist::engine::media::twilio::{self, Inbound};
use receptionist::engine::media::{AudioCodec, Carrier};
use receptionist::testing::call::CallRig;
use receptionist::testing::carrier::codecs;

// ---- allocation counting ---------------------------------------------------------------------

#[global_allocator]
static GLOBAL: receptionist::testing::CountingAllocator = receptionist::testing::CountingAllocator;

fn allocs() -> u64 {
    receptionist::testing::allocations_so_far()
}

/// Runs `f` `warm` times, then `n` times counting allocations; prints and returns the count.
fn alloc_check(name: &str, warm: u32, n: u32, mut f: impl FnMut()) -> u64 {
    for _ in 0..warm {
        f();
    }
    let before = allocs();
    for _ in 0..n {
        f();
    }
    let count = allocs() - before;
    eprintln!("alloc check: {name}: {count} allocations in {n} iterations");
    count
}

// ---- fixtures --------------------------------------------------------------------------------

const SID: &str = "MZ00000000000000000000000000000000";

/// One 20 ms µ-law frame.
type Frame = [u8; SAMPLES_8K];

/// Frames loud enough to be speech (the detector runs on every one of them).
fn speech_frames() -> Vec<Frame> {
    receptionist::testing::vad_fixture_frames(|db| db >= -45.0)
}

/// The pauses between sentences (dithered near-silence, about -80 dBFS), below the gate.
fn quiet_frames() -> Vec<Frame> {
    receptionist::testing::vad_fixture_frames(|db| db < VAD_GATE_DBFS)
}

/// A second of a phone line's noise while the caller listens: white noise at -50 dBFS RMS (above
/// the detector's gate, so before the noise-floor gate the detector ran on every such frame).
fn line_noise_frames() -> Vec<Frame> {
    let noise = receptionist::testing::line_noise(-50.0, 50 * SAMPLES_8K);
    noise
        .chunks_exact(SAMPLES_8K)
        .map(|chunk| {
            std::array::from_fn(|i| receptionist::engine::audio::g711::ulaw_encode(chunk[i] as i16))
        })
        .collect()
}

// ---- inbound ---------------------------------------------------------------------------------

/// Pushes and pops the frames in a cycle; the state persists, as it does in a call.
struct InboundRig {
    pipeline: InboundPipeline,
    frames: Vec<Frame>,
    next: usize,
}

impl InboundRig {
    fn new(pipeline: InboundPipeline, frames: Vec<Frame>) -> Self {
        assert!(!frames.is_empty());
        Self {
            pipeline,
            frames,
            next: 0,
        }
    }

    #[inline]
    fn step(&mut self) -> bool {
        self.pipeline.push(&self.frames[self.next]);
        self.next = (self.next + 1) % self.frames.len();
        let frame = self.pipeline.pop().expect("a whole frame was pushed");
        black_box(&frame);
        frame.speech
    }

    /// Share of the frames the detector calls speech.
    fn speech_share(&mut self) -> f64 {
        let n = self.frames.len();
        let speech = (0..n).filter(|_| self.step()).count();
        speech as f64 / n as f64
    }
}

fn inbound(c: &mut Criterion) {
    let speech = speech_frames();
    let quiet = quiet_frames();
    let noise = line_noise_frames();
    eprintln!(
        "inbound fixtures: {} speech frames (>= -45 dBFS), {} quiet frames (< {VAD_GATE_DBFS} dBFS)",
        speech.len(),
        quiet.len()
    );

    let mut group = c.benchmark_group("inbound");
    group.throughput(Throughput::Elements(1));

    let cases = [
        ("speech_frame", InboundPipeline::with_default_vad(), &speech),
        ("silent_frame", InboundPipeline::with_default_vad(), &quiet),
        (
            "line_noise_frame",
            InboundPipeline::with_default_vad(),
            &noise,
        ),
        ("energy_vad_speech_frame", energy_pipeline(), &speech),
    ];
    for (name, pipeline, frames) in cases {
        let mut rig = InboundRig::new(pipeline, frames.clone());
        let share = rig.speech_share();
        eprintln!(
            "inbound/{name}: the detector called {:.0} % of frames speech",
            share * 100.0
        );
        alloc_check(&format!("inbound/{name}"), 100, 2000, || {
            rig.step();
        });
        group.bench_function(name, |b| b.iter(|| rig.step()));
    }
    group.finish();
}

fn energy_pipeline() -> InboundPipeline {
    InboundPipeline::new(Box::new(EnergyVad::default()))
}

// ---- whole calls, per carrier -----------------------------------------------------------------

/// `secs` of agent speech: the fixtures, looped.
fn prompt_audio(secs: usize) -> Arc<[u8]> {
    receptionist::testing::vad_fixture_frames(|_| true)
        .into_iter()
        .flatten()
        .cycle()
        .take(secs * 8000)
        .collect()
}

/// Steady phases: no reminder while the caller is silent, no cut while the caller talks.
fn steady_timing() -> Timing {
    Timing {
        silence_reminder: Duration::from_secs(3600),
        max_utterance: Duration::from_secs(3600),
        max_call: Duration::from_secs(3600),
        ..Timing::default()
    }
}

/// The carriers and codecs benched: each carrier's default, and Telnyx's Opus with the feature.
fn carrier_cases() -> Vec<(String, Carrier, AudioCodec)> {
    let mut cases: Vec<_> = Carrier::ALL
        .into_iter()
        .map(|c| (c.to_string(), c, codecs(c)[0]))
        .collect();
    if let Some(&opus) = codecs(Carrier::Telnyx)
        .iter()
        .find(|c| matches!(c, AudioCodec::Opus { .. }))
    {
        cases.push(("telnyx_opus".into(), Carrier::Telnyx, opus));
    }
    cases
}

/// Times `step` over `iters` 20 ms steps of fresh rigs made by `setup` (untimed), each good for
/// `budget` steps, with the fake carrier's own time taken out.
fn time_steps(
    iters: u64,
    budget: u64,
    mut setup: impl FnMut() -> CallRig,
    mut step: impl FnMut(&mut CallRig),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let mut rig = setup();
        let n = left.min(budget);
        let fake = rig.fake_time();
        let start = Instant::now();
        for _ in 0..n {
            step(&mut rig);
        }
        total += start.elapsed().saturating_sub(rig.fake_time() - fake);
        left -= n;
    }
    total
}

/// The caller talks and the agent listens: one 20 ms step is the carrier's media message parsed,
/// its payload decoded and transcoded to µ-law 8 kHz (`MediaSession`), and the engine's input
/// (VAD, recogniser feed, recording) with its ticks.
fn call_inbound(c: &mut Criterion) {
    let speech = speech_frames();
    let quiet = quiet_frames();
    let prompt = prompt_audio(1);
    let mut group = c.benchmark_group("call_inbound");
    group.throughput(Throughput::Elements(1));
    for (name, carrier, codec) in carrier_cases() {
        let setup = || {
            let mut rig = CallRig::new(carrier, codec, steady_timing(), prompt.clone())
                .expect("the carrier streams its codec");
            // the greeting plays out; then the agent listens
            while rig.now_ms() < rig.last_media_ms() + 2000 || !rig.carrier().is_idle() {
                rig.step(Some(&quiet[0]));
            }
            rig
        };
        let mut rig = setup();
        let mut next = 0;
        for _ in 0..100 {
            rig.step(Some(&speech[next % speech.len()]));
            next += 1;
        }
        let fake = rig.fake_allocs();
        let count = alloc_check(&format!("call_inbound/{name}"), 0, 1000, || {
            rig.step(Some(&speech[next % speech.len()]));
            next += 1;
        });
        eprintln!(
            "call_inbound/{name}: {} allocations by the server's side (recording chunks, one Vec \
             each by design), {} by the fake carrier",
            count - (rig.fake_allocs() - fake),
            rig.fake_allocs() - fake
        );
        group.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                let mut next = 0;
                time_steps(iters, 50_000, setup, |rig| {
                    rig.step(Some(black_box(&speech[next % speech.len()])));
                    next += 1;
                })
            })
        });
    }
    group.finish();
}

/// The agent speaks a long prompt: one 20 ms step is the engine's tick (pacing, marks,
/// recording), its media written by `MediaSession` in the carrier's protocol, and the mark
/// echoes handled as the carrier plays the audio out. No caller audio.
fn call_outbound(c: &mut Criterion) {
    const PROMPT_SECS: u64 = 60;
    let prompt = prompt_audio(PROMPT_SECS as usize);
    let mut group = c.benchmark_group("call_outbound");
    group.throughput(Throughput::Elements(1));
    for (name, carrier, codec) in carrier_cases() {
        let setup = || {
            let mut rig = CallRig::new(carrier, codec, steady_timing(), prompt.clone())
                .expect("the carrier streams its codec");
            assert!(rig.counts().speaks > 0, "the call starts by speaking");
            // past the first burst (the pacing lead) into one frame per tick
            for _ in 0..50 {
                rig.step(None);
            }
            rig
        };
        let budget = PROMPT_SECS * 50 - 100;
        let mut rig = setup();
        let (before, fake) = (rig.counts(), rig.fake_allocs());
        let count = alloc_check(&format!("call_outbound/{name}"), 0, 1000, || {
            rig.step(None);
        });
        let (counts, fake) = (rig.counts(), rig.fake_allocs() - fake);
        eprintln!(
            "call_outbound/{name}: {} media, {} marks, {} recording chunks (one Vec each, by \
             design) in 1000 steps; {} allocations by the server's side, {fake} by the fake carrier",
            counts.media - before.media,
            counts.marks - before.marks,
            counts.recording_chunks - before.recording_chunks,
            count - fake,
        );
        group.bench_function(&name, |b| {
            b.iter_custom(|iters| time_steps(iters, budget, setup, |rig| rig.step(None)))
        });
    }
    group.finish();
}

// ---- Twilio wire format ----------------------------------------------------------------------

fn wire(c: &mut Criterion) {
    let frames = speech_frames();
    let messages: Vec<String> = frames
        .iter()
        .take(50)
        .enumerate()
        .map(|(i, f)| {
            let mut m = String::new();
            let i = i as u64;
            twilio::write_inbound_media(SID, i + 2, i + 1, i * 20, f, &mut m);
            m
        })
        .collect();
    eprintln!(
        "twilio: one inbound media message is {} bytes",
        messages[0].len()
    );

    let mut payload = Vec::with_capacity(1024);
    let mut next = 0;
    let mut parse = || {
        let text = &messages[next];
        next = (next + 1) % messages.len();
        let Ok(Inbound::Media { payload: b64, .. }) = twilio::parse(black_box(text)) else {
            panic!("not a media message")
        };
        twilio::decode_payload(b64, &mut payload).expect("valid payload");
        black_box(&payload);
    };
    alloc_check("twilio/parse_media", 10, 1000, &mut parse);

    let mut out = String::with_capacity(512);
    let mut next = 0;
    let mut write = || {
        out.clear();
        twilio::write_media(SID, black_box(&frames[next]), &mut out);
        next = (next + 1) % frames.len();
        black_box(&out);
    };
    alloc_check("twilio/write_media", 10, 1000, &mut write);

    let mut group = c.benchmark_group("twilio");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_media", |b| b.iter(&mut parse));
    group.bench_function("write_media", |b| b.iter(&mut write));
    group.finish();
}

/// One decision of whether talk over the agent is its echo: the caller's last 160 ms correlated
/// with the agent's last 640 ms at every delay (`engine::call::echo`).
fn echo(c: &mut Criterion) {
    use receptionist::engine::audio::g711;
    use receptionist::engine::call::echo::Echo;
    let agent: Vec<u8> = prompt_audio(4).iter().copied().collect();
    let frame = |slot: u64| {
        let at = slot as usize * SAMPLES_8K;
        agent.get(at..at + SAMPLES_8K)
    };
    // the agent's own audio on the line, 10 dB down and 100 ms late, up to a slot where the
    // window is loud enough to decide about
    let mut echo = Echo::new();
    let mut now = 0u64;
    loop {
        let late: Vec<u8> = (0..SAMPLES_8K)
            .map(|i| {
                let n = (now as usize * SAMPLES_8K + i).checked_sub(800);
                let v = n
                    .and_then(|n| agent.get(n))
                    .map_or(0.0, |&b| f32::from(g711::ulaw_decode(b)));
                g711::ulaw_encode((v * 0.316) as i16)
            })
            .collect();
        echo.push_caller(&late);
        if now >= 32 && echo.correlation(now, frame) > 0.9 {
            break;
        }
        now += 1;
        assert!(now < 190, "the bench's echo is never one");
    }
    c.bench_function("echo/decision", |b| {
        b.iter(|| black_box(&echo).correlation(now, frame))
    });
}

criterion_group!(benches, inbound, call_inbound, call_outbound, wire, echo);
criterion_main!(benches);
