//! The offline neural models, per use on this machine (one thread each, as the server runs them):
//! Whisper tiny.en and Smart Turn on one caller utterance (the audio's features and the model), the
//! Piper voice on one reply sentence, and Silero VAD on one 20 ms frame (against earshot, the call
//! path's VAD, in `hot_path`'s `inbound/speech_frame`). Needs the models: `scripts/install-models`.
//!
//! `cargo bench --bench neural`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use receptionist::backends::piper::PiperTts;
use receptionist::backends::silero::SileroVad;
use receptionist::backends::smart_turn::SmartTurn;
use receptionist::backends::whisper::{WhisperConfig, WhisperStt};
use receptionist::engine::audio::{EarshotVad, VoiceDetector, g711, resample};

/// Three seconds of a real voice, through the phone band, at 16 kHz.
fn utterance() -> Vec<i16> {
    let mulaw = include_bytes!("../audio-fixtures/vad/speech_slt_8k.ulaw");
    let mut pcm = vec![0i16; mulaw.len()];
    g711::decode_into(mulaw, &mut pcm);
    pcm.truncate(3 * 8000);
    resample(&pcm, 8000, 16_000)
}

fn neural(c: &mut Criterion) {
    // candle splits its products for this many threads, as `receptionist` sets it
    // SAFETY: no other thread runs yet
    unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    let dir = receptionist::testing::installed_models_dir();
    let whisper = WhisperStt::new(WhisperConfig::new(&dir)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("whisper_tiny_en");
    g.sample_size(20);
    g.bench_function("3s_utterance", |b| {
        b.iter(|| black_box(runtime.block_on(whisper.transcribe(utterance())).unwrap()))
    });
    g.finish();
    let turn = SmartTurn::load(&dir, 1).unwrap();
    let audio = utterance();
    c.bench_function("smart_turn/3s_utterance", |b| {
        b.iter(|| black_box(turn.complete_here(black_box(&audio)).unwrap()))
    });
    // one 20 ms frame at a time, as a call feeds its detector (the frames cycle through the
    // utterance, so the detector's state follows real speech)
    let frames: Vec<[i16; 320]> = audio
        .chunks_exact(320)
        .map(|f| f.try_into().unwrap())
        .collect();
    let mut g = c.benchmark_group("vad_speech_frame");
    let mut silero = SileroVad::load(&dir, SileroVad::DEFAULT_THRESHOLD).unwrap();
    let mut i = 0;
    g.bench_function("silero_v5_8k", |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            black_box(silero.is_speech(black_box(&frames[i])))
        })
    });
    let mut earshot = EarshotVad::new();
    g.bench_function("earshot", |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            black_box(earshot.is_speech(black_box(&frames[i])))
        })
    });
    g.finish();
    let piper = PiperTts::load(&dir, 1).unwrap();
    let mut g = c.benchmark_group("piper");
    g.sample_size(10);
    g.bench_function("sentence", |b| {
        b.iter(|| {
            black_box(
                piper
                    .synthesize_blocking(black_box(
                        "Thanks, Maria. Which city or area do you live in?",
                    ))
                    .unwrap(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, neural);
criterion_main!(benches);
