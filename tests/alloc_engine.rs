//! A whole call does not allocate per frame on the server's steady path, on every carrier.
//!
//! The call runs in virtual time as the server's driver runs it (`testing::call::CallRig`): the
//! fake carrier in each carrier's default codec sends caller media every 20 ms, the server's
//! `MediaSession` parses and transcodes it for the `CallEngine`, `Input::Tick` comes at each
//! deadline, agent speech comes back as `Input::TtsAudio`, the session writes the engine's media,
//! marks and clears in the carrier's protocol, and the fake plays them out and echoes the marks.
//! A counting global allocator tallies this thread's allocations over 30 s (1,500 frames) of each
//! steady phase, after a warm-up:
//!
//! - (a) the agent speaks a long prompt while the caller listens (pacing, marks, recording);
//! - (b) the agent listens while the caller is silent (inbound pipeline, recording);
//! - (c) the caller talks while the agent listens (VAD on every frame, recogniser audio).
//!
//! The fake carrier allocates (it parses the server's messages strictly, as `serde_json::Value`,
//! and keeps mark names as `String`s): the rig counts the allocations of its steps apart and they
//! are taken out. Everything else is counted: the session and the engine in both directions, and
//! the rig's own glue. `take_recording` hands over a new `Vec` per recording chunk (240 ms) by
//! design (one allocation per 12 frames); those are counted separately. The rest must be (close
//! to) zero. Run with `--nocapture` to see the counts.

use std::sync::Arc;
use std::time::Duration;

use receptionist::engine::audio::SAMPLES_8K;
use receptionist::engine::call::Timing;
use receptionist::engine::media::Carrier;
use receptionist::testing::call::{CallRig, RigCounts};

#[global_allocator]
static GLOBAL: receptionist::testing::CountingAllocator = receptionist::testing::CountingAllocator;

fn allocs() -> u64 {
    receptionist::testing::allocations_so_far()
}

/// Counts over a stretch of call, the fake carrier's allocations taken out.
#[derive(Debug, Clone, Copy)]
struct Phase {
    rig: RigCounts,
    /// Allocations outside the fake carrier's steps, recording chunks included.
    allocs: u64,
}

impl Phase {
    /// Allocations other than the recording chunks handed over.
    fn per_frame_allocs(&self) -> u64 {
        self.allocs - self.rig.recording_allocs
    }
}

fn since(rig: &CallRig, before: (RigCounts, u64, u64)) -> Phase {
    let (counts, total, fake) = before;
    let now = rig.counts();
    Phase {
        rig: RigCounts {
            frames: now.frames - counts.frames,
            media: now.media - counts.media,
            marks: now.marks - counts.marks,
            clears: now.clears - counts.clears,
            speaks: now.speaks - counts.speaks,
            stt_frames: now.stt_frames - counts.stt_frames,
            recording_chunks: now.recording_chunks - counts.recording_chunks,
            recording_allocs: now.recording_allocs - counts.recording_allocs,
            other_outputs: now.other_outputs - counts.other_outputs,
        },
        allocs: (allocs() - total) - (rig.fake_allocs() - fake),
    }
}

const WARM_FRAMES: usize = 150;
const MEASURED_FRAMES: usize = 1500;

/// Steps `WARM_FRAMES` then `MEASURED_FRAMES` frames of `caller` audio (cycled) and returns the
/// counts over the measured frames.
fn phase(rig: &mut CallRig, name: &str, caller: &[[u8; SAMPLES_8K]]) -> Phase {
    let mut next = 0;
    let mut frame = || {
        let f = &caller[next % caller.len()];
        next += 1;
        f
    };
    for _ in 0..WARM_FRAMES {
        rig.step(Some(frame()));
    }
    let before = (rig.counts(), allocs(), rig.fake_allocs());
    for _ in 0..MEASURED_FRAMES {
        rig.step(Some(frame()));
    }
    let p = since(rig, before);
    let c = p.rig;
    println!(
        "{} {name}: {} frames: {} allocations = {} recording chunks ({} allocations) + {} other; \
         {} media, {} marks, {} recogniser frames, {} other outputs",
        rig.carrier().carrier(),
        c.frames,
        p.allocs,
        c.recording_chunks,
        c.recording_allocs,
        p.per_frame_allocs(),
        c.media,
        c.marks,
        c.stt_frames,
        c.other_outputs
    );
    p
}

/// At most this many allocations outside recording chunks in 1,500 frames: no per-frame
/// allocation (one would show as >= 1,500).
const SLACK: u64 = 2;

fn steady_call(carrier: Carrier, prompt: &Arc<[u8]>) {
    let quiet = receptionist::testing::vad_fixture_frames(|db| {
        db < receptionist::engine::audio::VAD_GATE_DBFS
    });
    let speech = receptionist::testing::vad_fixture_frames(|db| db >= -45.0);
    assert!(quiet.len() > 50 && speech.len() > 50);

    let timing = Timing {
        // Steady phases of 30 s: no reminder while the caller is silent, no cut while the
        // caller talks.
        silence_reminder: Duration::from_secs(600),
        max_utterance: Duration::from_secs(600),
        endpoint: Duration::from_secs(5),
        endpoint_long: Duration::from_secs(5),
        ..Timing::default()
    };
    let mut rig = CallRig::with_defaults(carrier, timing, prompt.clone());
    assert!(
        rig.counts().speaks >= 1,
        "{carrier}: the call starts by speaking"
    );

    // (a) The agent speaks; the caller listens.
    let a = phase(&mut rig, "(a) agent speaking", &quiet);
    assert!(
        a.rig.media >= MEASURED_FRAMES as u64 - 1,
        "{carrier}: the agent spoke throughout: {a:?}"
    );
    if carrier != Carrier::Vonage {
        assert!(a.rig.marks > 0, "{carrier}: marks: {a:?}");
    }

    // Let the opening turn play out until the agent listens.
    let mut guard = 0;
    while rig.now_ms() < rig.last_media_ms() + 2000 || !rig.carrier().is_idle() {
        rig.step(Some(&quiet[0]));
        guard += 1;
        assert!(
            guard < 100_000,
            "{carrier}: the agent never stopped speaking"
        );
    }

    // (b) The agent listens; the caller is silent.
    let b = phase(&mut rig, "(b) agent listening, caller silent", &quiet);
    assert_eq!(b.rig.media, 0, "{carrier}: the agent is silent: {b:?}");

    // (c) The caller talks; the agent listens and streams it to the recogniser.
    let c = phase(&mut rig, "(c) agent listening, caller talking", &speech);
    assert!(
        c.rig.stt_frames >= MEASURED_FRAMES as u64 - 1,
        "{carrier}: the caller's audio went to the recogniser: {c:?}"
    );

    for (name, p) in [("a", a), ("b", b), ("c", c)] {
        // A recording chunk per RECORDING_CHUNK_SAMPLES (stereo, 320 per frame), one allocation each.
        let frames_per_chunk = receptionist::engine::call::RECORDING_CHUNK_SAMPLES / 320;
        let max_chunks = (MEASURED_FRAMES / frames_per_chunk + 1) as u64;
        assert!(
            p.rig.recording_chunks <= max_chunks && p.rig.recording_allocs <= max_chunks,
            "{carrier} ({name}) recording: {p:?}"
        );
        assert!(
            p.per_frame_allocs() <= SLACK,
            "{carrier} ({name}) {} allocations beyond recording chunks in {} frames: {p:?}",
            p.per_frame_allocs(),
            p.rig.frames
        );
    }
}

#[test]
fn a_steady_call_does_not_allocate_per_frame_on_any_carrier() {
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
    for carrier in Carrier::ALL {
        steady_call(carrier, &prompt);
    }
}
