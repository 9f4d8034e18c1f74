//! Support shared by the project's tests, benches and tools: a counting allocator, a sample
//! receptionist, the sans-IO fake carrier ([`carrier::FakeCarrier`]) and a whole call through it
//! in virtual time ([`call::CallRig`]). Not part of the server's API.

pub mod call;
pub mod carrier;
pub mod fuzz;
pub mod providers;

pub use carrier::{CallInfo, FakeCarrier, FakeCarrierError};

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use crate::engine::audio::{SAMPLES_8K, g711, level_dbfs};

use crate::model::{
    LanguageMode, Question, QuestionKind, ReceptionistSettings, ReceptionistStatus,
};

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

/// A global allocator that counts the allocations (and reallocations) made by the current
/// thread, so other test threads do not disturb a count. Install it in a test or bench binary:
///
/// ```ignore
/// #[global_allocator]
/// static GLOBAL: receptionist::testing::CountingAllocator = receptionist::testing::CountingAllocator;
/// ```
pub struct CountingAllocator;

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// thread-local `Cell` with a const initialiser, which never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's layout contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: as for `dealloc`, with the caller's new size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations made by this thread so far (with [`CountingAllocator`] installed).
pub fn allocations_so_far() -> u64 {
    ALLOCS.with(|c| c.get())
}

/// A typical live receptionist: intro, all three disclosures, location, a yes/no dealbreaker and a
/// number question, a little custom context.
pub fn sample_settings() -> ReceptionistSettings {
    ReceptionistSettings {
        phone_number: "+15550001111".into(),
        agent_name: "Chloe".into(),
        voice: "slt".into(),
        intro_message: "Hi, I'm Chloe from ABC Staffing.".into(),
        language_mode: LanguageMode::English,
        manual_approval: false,
        disclose_ai: true,
        disclose_recording: true,
        disclose_e_verify: true,
        collect_location: true,
        enforce_job_location_match: false,
        custom_context: "Pay is $18 per hour. Shifts start at 6 am.".into(),
        questions: vec![
            Question {
                text: "Are you at least 18 years old?".into(),
                kind: QuestionKind::YesNo,
                expected: Some("yes".into()),
                dealbreaker: true,
                weight: 1.0,
            },
            Question {
                text: "How many years of warehouse experience do you have?".into(),
                kind: QuestionKind::Number,
                expected: Some(">= 1".into()),
                dealbreaker: false,
                weight: 1.0,
            },
        ],
        score_threshold: 70,
        status: ReceptionistStatus::Live,
        sms_confirmation: true,
        interviewer_ids: Vec::new(),
        default_interviewer_id: None,
    }
}

/// The VAD fixtures: synthetic speech with pauses (flite voices, µ-law 8 kHz; see
/// audio-fixtures/vad/README.md).
pub const VAD_FIXTURES: [&str; 3] = [
    "speech_slt_8k.ulaw",
    "speech_rms_8k.ulaw",
    "speech_awb_8k.ulaw",
];

/// `n` samples of a phone line's white noise at `dbfs` RMS (full-scale square wave = 0 dBFS), the
/// same every run: the load generator's `--line-noise-dbfs` and the hot-path bench's noise frames.
pub fn line_noise(dbfs: f32, n: usize) -> Vec<f32> {
    let rms = 32768.0 * 10f32.powf(dbfs / 20.0);
    // uniform in [-1, 1] has an RMS of 1/sqrt(3)
    let scale = rms * 3f32.sqrt();
    let mut x = 0x9E37_79B9u32;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Every whole 20 ms µ-law frame of the VAD fixtures whose level (dBFS) satisfies `keep`.
pub fn vad_fixture_frames(keep: impl Fn(f32) -> bool) -> Vec<[u8; SAMPLES_8K]> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("audio-fixtures/vad");
    let mut frames = Vec::new();
    for name in VAD_FIXTURES {
        let bytes = std::fs::read(dir.join(name))
            .unwrap_or_else(|e| panic!("reading the VAD fixture {name}: {e}"));
        for chunk in bytes.chunks_exact(SAMPLES_8K) {
            let mut pcm = [0i16; SAMPLES_8K];
            g711::decode_into(chunk, &mut pcm);
            if keep(level_dbfs(&pcm)) {
                let mut frame = [0u8; SAMPLES_8K];
                frame.copy_from_slice(chunk);
                frames.push(frame);
            }
        }
    }
    frames
}

/// The models directory the tests use: `RECEPTIONIST_MODELS_DIR`, else the checkout's
/// `data/models` (where `.ci/setup` runs `scripts/install-models`).
pub fn models_dir() -> std::path::PathBuf {
    std::env::var_os("RECEPTIONIST_MODELS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/models"))
}

/// [`models_dir`], failing with the fix when the models are not installed.
pub fn installed_models_dir() -> std::path::PathBuf {
    let dir = models_dir();
    assert!(
        dir.join(".pins").is_file(),
        "the offline models are not installed in {}: run scripts/install-models (or .ci/setup)",
        dir.display()
    );
    dir
}
