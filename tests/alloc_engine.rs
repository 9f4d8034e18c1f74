//! A whole `CallEngine` call does not allocate per frame on its steady path.
//!
//! The call runs in virtual time as the server's driver runs it: caller audio every 20 ms
//! (`Input::CallerAudio`), `Input::Tick` at each deadline, agent speech as `Input::TtsAudio`, marks
//! echoed by a simulated carrier once "played", every output drained (`pop_stt_frame` until `None`
//! after `SttAudio`, `take_recording` after `Recording`). A counting global allocator tallies this
//! thread's allocations over 30 s (1,500 frames) of each steady phase, after a warm-up:
//!
//! - (a) the agent speaks a long prompt while the caller listens (pacing, marks, recording);
//! - (b) the agent listens while the caller is silent (inbound pipeline, recording);
//! - (c) the caller talks while the agent listens (VAD on every frame, recogniser audio).
//!
//! `take_recording` hands over a new `Vec` per half second of recording by design (one allocation
//! per 25 frames); those are counted separately. Everything else must be (close to) zero.
//! Run with `--nocapture` to see the counts.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use receptionist::engine::audio::SAMPLES_8K;
use receptionist::engine::call::{MarkId, Timing};
use receptionist::engine::{CallEngine, EngineConfig, Input, Output, ToCaller};
use receptionist::model::ReceptionistSettings;

// ---- allocation counting ---------------------------------------------------------------------

#[global_allocator]
static GLOBAL: receptionist::testing::CountingAllocator = receptionist::testing::CountingAllocator;

fn allocs() -> u64 {
    receptionist::testing::allocations_so_far()
}

// ---- audio -----------------------------------------------------------------------------------

// ---- the call --------------------------------------------------------------------------------

fn settings() -> ReceptionistSettings {
    receptionist::testing::sample_settings()
}

/// Marks are echoed this long after they were sent (the audio before them has played).
const ECHO_AFTER_MS: u64 = 200;

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    frames: u64,
    allocs: u64,
    recording_allocs: u64,
    recording_chunks: u64,
    media: u64,
    marks: u64,
    stt_frames: u64,
    other_outputs: u64,
}

impl Counts {
    fn since(&self, before: &Counts) -> Counts {
        Counts {
            frames: self.frames - before.frames,
            allocs: self.allocs - before.allocs,
            recording_allocs: self.recording_allocs - before.recording_allocs,
            recording_chunks: self.recording_chunks - before.recording_chunks,
            media: self.media - before.media,
            marks: self.marks - before.marks,
            stt_frames: self.stt_frames - before.stt_frames,
            other_outputs: self.other_outputs - before.other_outputs,
        }
    }

    /// Allocations other than the recording chunks handed over.
    fn per_frame_allocs(&self) -> u64 {
        self.allocs - self.recording_allocs
    }
}

struct Call {
    engine: CallEngine,
    t0: Instant,
    now_ms: u64,
    deadline_ms: u64,
    marks: VecDeque<(u64, MarkId)>,
    name: String,
    /// Audio for every `Speak`.
    prompt: Arc<[u8]>,
    /// Speech ids given audio.
    speaks: u64,
    /// Call time of the last agent frame sent.
    last_media_ms: u64,
    counts: Counts,
}

impl Call {
    fn new(prompt: Arc<[u8]>) -> Self {
        let t0 = Instant::now();
        let timing = Timing {
            // Steady phases of 30 s: no reminder while the caller is silent, no cut while the
            // caller talks.
            silence_reminder: Duration::from_secs(600),
            max_utterance: Duration::from_secs(600),
            endpoint: Duration::from_secs(5),
            endpoint_long: Duration::from_secs(5),
            ..Timing::default()
        };
        let engine = CallEngine::new(
            t0,
            EngineConfig {
                settings: Arc::new(settings()),
                returning_caller: false,
                timing,
                echoes_marks: true,
            },
        );
        let mut call = Self {
            engine,
            t0,
            now_ms: 0,
            deadline_ms: 0,
            marks: VecDeque::with_capacity(64),
            name: String::with_capacity(64),
            prompt,
            speaks: 0,
            last_media_ms: 0,
            counts: Counts::default(),
        };
        call.drain();
        call
    }

    fn counts(&self) -> Counts {
        Counts {
            allocs: allocs(),
            ..self.counts
        }
    }

    fn input(&mut self, input: Input<'_>) {
        let now = self.t0 + Duration::from_millis(self.now_ms);
        self.engine
            .handle_input(now, input)
            .expect("call in progress");
        self.drain();
    }

    fn echo_marks(&mut self) {
        while let Some(&(due, id)) = self.marks.front()
            && due <= self.now_ms
        {
            self.marks.pop_front();
            let mut name = std::mem::take(&mut self.name);
            name.clear();
            write!(name, "{id}").expect("writing to a String cannot fail");
            self.input(Input::MarkEchoed(&name));
            self.name = name;
        }
    }

    /// 20 ms of call: ticks at the deadlines within it, then one frame of caller audio.
    fn step(&mut self, caller: &[u8; SAMPLES_8K]) {
        let target = self.now_ms + 20;
        let mut ticks = 0;
        while self.deadline_ms <= target && ticks < 8 {
            self.now_ms = self.now_ms.max(self.deadline_ms);
            self.echo_marks();
            self.input(Input::Tick);
            ticks += 1;
        }
        self.now_ms = target;
        self.echo_marks();
        self.input(Input::CallerAudio {
            timestamp_ms: Some(target - 20),
            mulaw: caller,
        });
        self.counts.frames += 1;
    }

    fn drain(&mut self) {
        loop {
            match self.engine.poll_output() {
                Output::Timeout(t) => {
                    self.deadline_ms = t.saturating_duration_since(self.t0).as_millis() as u64;
                    break;
                }
                Output::ToCaller(ToCaller::Media(frame)) => {
                    std::hint::black_box(&frame);
                    self.counts.media += 1;
                    self.last_media_ms = self.now_ms;
                }
                Output::ToCaller(ToCaller::Mark(id)) => {
                    self.counts.marks += 1;
                    self.marks.push_back((self.now_ms + ECHO_AFTER_MS, id));
                }
                Output::ToCaller(ToCaller::Clear) => {
                    // Twilio echoes every pending mark at once.
                    for m in self.marks.iter_mut() {
                        m.0 = self.now_ms;
                    }
                }
                Output::Speak { speech, .. } => {
                    self.speaks += 1;
                    let now = self.t0 + Duration::from_millis(self.now_ms);
                    let mulaw = self.prompt.clone();
                    self.engine
                        .handle_input(now, Input::TtsAudio { speech, mulaw })
                        .expect("call in progress");
                }
                Output::SttAudio => {
                    while let Some((_, pcm)) = self.engine.pop_stt_frame() {
                        std::hint::black_box(pcm);
                        self.counts.stt_frames += 1;
                    }
                }
                Output::Recording => {
                    let before = allocs();
                    let chunk = self.engine.take_recording();
                    self.counts.recording_allocs += allocs() - before;
                    self.counts.recording_chunks += 1;
                    drop(chunk);
                }
                Output::Ended(reason) => panic!("the call ended: {reason:?}"),
                _ => self.counts.other_outputs += 1,
            }
        }
    }
}

const WARM_FRAMES: usize = 150;
const MEASURED_FRAMES: usize = 1500;

/// Steps `WARM_FRAMES` then `MEASURED_FRAMES` frames of `caller` audio (cycled) and returns the
/// counts over the measured frames.
fn phase(call: &mut Call, name: &str, caller: &[[u8; SAMPLES_8K]]) -> Counts {
    let mut next = 0;
    let mut frame = || {
        let f = &caller[next % caller.len()];
        next += 1;
        f
    };
    for _ in 0..WARM_FRAMES {
        call.step(frame());
    }
    let before = call.counts();
    for _ in 0..MEASURED_FRAMES {
        call.step(frame());
    }
    let c = call.counts().since(&before);
    println!(
        "{name}: {} frames: {} allocations = {} recording chunks ({} allocations) + {} other; \
         {} media, {} marks, {} recogniser frames, {} other outputs",
        c.frames,
        c.allocs,
        c.recording_chunks,
        c.recording_allocs,
        c.per_frame_allocs(),
        c.media,
        c.marks,
        c.stt_frames,
        c.other_outputs
    );
    c
}

/// At most this many allocations outside recording chunks in 1,500 frames: no per-frame
/// allocation (one would show as >= 1,500).
const SLACK: u64 = 2;

#[test]
fn a_steady_call_does_not_allocate_per_frame() {
    // The counter sees this thread's allocations.
    let before = allocs();
    drop(std::hint::black_box(vec![0u8; 16]));
    assert_eq!(allocs() - before, 1, "the counting allocator counts");

    // Each prompt lasts 45 s: phase (a) is one prompt from start to end.
    let prompt: Arc<[u8]> = receptionist::testing::vad_fixture_frames(|_| true)
        .into_iter()
        .flatten()
        .cycle()
        .take(45 * 8000)
        .collect();
    let quiet = receptionist::testing::vad_fixture_frames(|db| {
        db < receptionist::engine::audio::VAD_GATE_DBFS
    });
    let speech = receptionist::testing::vad_fixture_frames(|db| db >= -45.0);
    assert!(quiet.len() > 50 && speech.len() > 50);

    let mut call = Call::new(prompt);
    assert!(call.speaks >= 1, "the call starts by speaking");

    // (a) The agent speaks; the caller listens.
    let a = phase(&mut call, "(a) agent speaking", &quiet);
    assert!(
        a.media >= MEASURED_FRAMES as u64 - 1,
        "the agent spoke throughout: {a:?}"
    );

    // Let the opening turn play out until the agent listens.
    let mut guard = 0;
    while call.now_ms < call.last_media_ms + 2000 || !call.marks.is_empty() {
        call.step(&quiet[0]);
        guard += 1;
        assert!(guard < 100_000, "the agent never stopped speaking");
    }

    // (b) The agent listens; the caller is silent.
    let b = phase(&mut call, "(b) agent listening, caller silent", &quiet);
    assert_eq!(b.media, 0, "the agent is silent: {b:?}");

    // (c) The caller talks; the agent listens and streams it to the recogniser.
    let c = phase(&mut call, "(c) agent listening, caller talking", &speech);
    assert!(
        c.stt_frames >= MEASURED_FRAMES as u64 - 1,
        "the caller's audio went to the recogniser: {c:?}"
    );

    for (name, counts) in [("a", a), ("b", b), ("c", c)] {
        // A recording chunk per RECORDING_CHUNK_SAMPLES (stereo, 320 per frame), one allocation each.
        let frames_per_chunk = receptionist::engine::call::RECORDING_CHUNK_SAMPLES / 320;
        let max_chunks = (MEASURED_FRAMES / frames_per_chunk + 1) as u64;
        assert!(
            counts.recording_chunks <= max_chunks && counts.recording_allocs <= max_chunks,
            "({name}) recording: {counts:?}"
        );
        assert!(
            counts.per_frame_allocs() <= SLACK,
            "({name}) {} allocations beyond recording chunks in {} frames: {counts:?}",
            counts.per_frame_allocs(),
            counts.frames
        );
    }
}
