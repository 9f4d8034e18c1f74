//! The per-frame hot path, one 20 ms frame per iteration:
//!
//! - `inbound/*`: µ-law decode → 8 → 16 kHz upsampling → VAD (`InboundPipeline` push + pop), on
//!   speech (the detector runs) and on quiet frames (below the pipeline's gate: it is skipped);
//! - `outbound/frame`: `CallEngine` pacing of a long prompt (one `Tick` every 20 ms, marks echoed as
//!   a carrier would, recording chunks taken) + `twilio::write_media` into a reused `String`;
//! - `twilio/*`: parsing one inbound `media` message and decoding its payload; writing one.
//!
//! Before each benchmark, a counting allocator checks the routine does not allocate once warm and
//! prints what it saw (`alloc check: ...`); `tests/alloc_engine.rs` asserts the same over a whole
//! call. Run: `cargo bench --bench hot_path`.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use receptionist::engine::audio::{EnergyVad, InboundPipeline, SAMPLES_8K, VAD_GATE_DBFS};
use receptionist::engine::call::{MarkId, Timing};
use receptionist::engine::media::twilio::{self, Inbound};
use receptionist::engine::{CallEngine, EngineConfig, Input, Output, ToCaller};
use receptionist::model::ReceptionistSettings;

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

// ---- outbound --------------------------------------------------------------------------------

fn settings() -> ReceptionistSettings {
    receptionist::testing::sample_settings()
}

/// `secs` of agent speech: the fixtures, looped.
fn prompt_audio(secs: usize) -> Arc<[u8]> {
    receptionist::testing::vad_fixture_frames(|_| true)
        .into_iter()
        .flatten()
        .cycle()
        .take(secs * 8000)
        .collect()
}

/// A call in which the agent speaks long prompts and the carrier echoes marks as it plays them.
struct OutboundRig {
    engine: CallEngine,
    t0: Instant,
    now_ms: u64,
    /// Marks sent, with the call time at which the carrier will have played them.
    marks: VecDeque<(u64, MarkId)>,
    name: String,
    wire: String,
    prompt: Arc<[u8]>,
    /// Agent frames the engine was given and has not yet sent.
    frames_left: u64,
    media: u64,
    recording_chunks: u64,
}

/// How far ahead of real time the engine sends audio (the default `Timing::pacing_lead`).
const LEAD_MS: u64 = 200;

impl OutboundRig {
    fn new(prompt: &Arc<[u8]>) -> Self {
        let t0 = Instant::now();
        let engine = CallEngine::new(
            t0,
            EngineConfig {
                settings: Arc::new(settings()),
                returning_caller: false,
                timing: Timing::default(),
                echoes_marks: true,
            },
        );
        let mut rig = Self {
            engine,
            t0,
            now_ms: 0,
            marks: VecDeque::with_capacity(64),
            name: String::with_capacity(64),
            wire: String::with_capacity(512),
            prompt: prompt.clone(),
            frames_left: 0,
            media: 0,
            recording_chunks: 0,
        };
        rig.drain();
        assert!(rig.frames_left > 0, "the call starts by speaking");
        // Warm up: past the first burst (the pacing lead) into one frame per tick.
        for _ in 0..50 {
            rig.step();
        }
        rig
    }

    fn now(&self) -> Instant {
        self.t0 + Duration::from_millis(self.now_ms)
    }

    /// Frames that can still be stepped with the agent speaking throughout.
    fn budget(&self) -> u64 {
        self.frames_left.saturating_sub(20)
    }

    /// One 20 ms tick: echo the marks played by now, then `Tick`. Returns media frames sent.
    #[inline]
    fn step(&mut self) -> u64 {
        let media = self.media;
        self.now_ms += 20;
        while let Some(&(due, id)) = self.marks.front()
            && due <= self.now_ms
        {
            self.marks.pop_front();
            self.name.clear();
            write!(self.name, "{id}").expect("writing to a String cannot fail");
            let now = self.now();
            self.engine
                .handle_input(now, Input::MarkEchoed(&self.name))
                .expect("call in progress");
            self.drain();
        }
        let now = self.now();
        self.engine
            .handle_input(now, Input::Tick)
            .expect("call in progress");
        self.drain();
        self.media - media
    }

    fn drain(&mut self) {
        loop {
            match self.engine.poll_output() {
                Output::Timeout(_) => break,
                Output::ToCaller(ToCaller::Media(frame)) => {
                    self.wire.clear();
                    twilio::write_media(SID, &frame, &mut self.wire);
                    black_box(&self.wire);
                    self.media += 1;
                    self.frames_left -= 1;
                }
                Output::ToCaller(ToCaller::Mark(id)) => {
                    self.name.clear();
                    write!(self.name, "{id}").expect("writing to a String cannot fail");
                    self.wire.clear();
                    twilio::write_mark(SID, &self.name, &mut self.wire);
                    black_box(&self.wire);
                    self.marks.push_back((self.now_ms + LEAD_MS, id));
                }
                Output::Speak { speech, .. } => {
                    self.frames_left += self.prompt.len().div_ceil(SAMPLES_8K) as u64;
                    let now = self.now();
                    self.engine
                        .handle_input(
                            now,
                            Input::TtsAudio {
                                speech,
                                mulaw: self.prompt.clone(),
                            },
                        )
                        .expect("call in progress");
                }
                Output::SttAudio => while self.engine.pop_stt_frame().is_some() {},
                Output::Recording => {
                    black_box(self.engine.take_recording());
                    self.recording_chunks += 1;
                }
                Output::Ended(reason) => panic!("the call ended: {reason:?}"),
                _ => {}
            }
        }
    }
}

fn outbound(c: &mut Criterion) {
    let prompt = prompt_audio(60);

    let mut rig = OutboundRig::new(&prompt);
    let (media, chunks) = (rig.media, rig.recording_chunks);
    let n = 1000;
    let count = alloc_check("outbound/frame", 0, n, || {
        rig.step();
    });
    eprintln!(
        "outbound/frame: {} media frames and {} recording chunks (one Vec each, by design) in \
         {n} ticks; {} other allocations",
        rig.media - media,
        rig.recording_chunks - chunks,
        count.saturating_sub(rig.recording_chunks - chunks)
    );

    let mut group = c.benchmark_group("outbound");
    group.throughput(Throughput::Elements(1));
    group.bench_function("frame", |b| {
        // One tick per iteration; a fresh call (set up untimed) whenever the prompts run out.
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let mut rig = OutboundRig::new(&prompt);
                let n = left.min(rig.budget());
                let start = Instant::now();
                for _ in 0..n {
                    black_box(rig.step());
                }
                total += start.elapsed();
                left -= n;
            }
            total
        })
    });
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

criterion_group!(benches, inbound, outbound, wire);
criterion_main!(benches);
