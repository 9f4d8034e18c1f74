//! Measures the voice activity detectors on the project's fixtures (flite speech through the
//! µ-law path, mixed with synthetic noise) and checks the default one.
//!
//! Print the table: `cargo test --lib engine::audio::vad_eval::measure -- --ignored --nocapture`.
//! Timings (meaningful only with optimised dependencies):
//! `cargo test --lib engine::audio::vad_eval::per_frame_timings -- --ignored --nocapture`.

use super::g711;
use super::resample::{Upsampler8To16, UpsamplerKind};
use super::vad::{EarshotVad, EnergyVad, VoiceDetector, level_dbfs};
use super::{InboundPipeline, SAMPLES_8K, SAMPLES_16K};

/// flite voices (slt, rms, awb) saying receptionist-call sentences, with pauses; µ-law, 8 kHz,
/// peak-normalised to -6 dBFS. See audio-fixtures/vad/README.md.
const FIXTURES: [(&str, &[u8]); 3] = [
    (
        "slt",
        include_bytes!("../../../audio-fixtures/vad/speech_slt_8k.ulaw"),
    ),
    (
        "rms",
        include_bytes!("../../../audio-fixtures/vad/speech_rms_8k.ulaw"),
    ),
    (
        "awb",
        include_bytes!("../../../audio-fixtures/vad/speech_awb_8k.ulaw"),
    ),
];

/// Deterministic noise (xorshift32), no dependency on `rand`.
struct Noise(u32);

impl Noise {
    fn uniform(&mut self) -> f32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        (x as f32 / u32::MAX as f32) * 2.0 - 1.0
    }
    /// Approximately Gaussian, unit variance (Irwin-Hall with 4 terms).
    fn gauss(&mut self) -> f32 {
        (self.uniform() + self.uniform() + self.uniform() + self.uniform()) * (3.0f32 / 4.0).sqrt()
    }
}

#[derive(Clone, Copy, Debug)]
enum NoiseKind {
    White,
    /// Paul Kellet's economy pink filter.
    Pink,
    /// Integrated white noise (low-frequency rumble).
    Brown,
    /// 60 Hz mains hum with harmonics.
    Hum,
}

/// `n` samples of noise at `dbfs` RMS (full-scale square wave = 0 dBFS).
fn noise(kind: NoiseKind, dbfs: f32, n: usize, seed: u32) -> Vec<f32> {
    let mut g = Noise(seed.max(1));
    let mut raw: Vec<f32> = match kind {
        NoiseKind::White => (0..n).map(|_| g.gauss()).collect(),
        NoiseKind::Pink => {
            let (mut b0, mut b1, mut b2) = (0.0f32, 0.0f32, 0.0f32);
            (0..n)
                .map(|_| {
                    let w = g.gauss();
                    b0 = 0.99765 * b0 + w * 0.0990460;
                    b1 = 0.96300 * b1 + w * 0.2965164;
                    b2 = 0.57000 * b2 + w * 1.0526913;
                    b0 + b1 + b2 + w * 0.1848
                })
                .collect()
        }
        NoiseKind::Brown => {
            let mut y = 0.0f32;
            (0..n)
                .map(|_| {
                    y = 0.995 * y + g.gauss();
                    y
                })
                .collect()
        }
        NoiseKind::Hum => (0..n)
            .map(|i| {
                let t = i as f32 / 8000.0;
                (1..=5)
                    .map(|h| (2.0 * std::f32::consts::PI * 60.0 * h as f32 * t).sin() / h as f32)
                    .sum::<f32>()
            })
            .collect(),
    };
    let rms = (raw.iter().map(|x| x * x).sum::<f32>() / n.max(1) as f32)
        .sqrt()
        .max(1e-9);
    let target = 32768.0 * 10f32.powf(dbfs / 20.0);
    raw.iter_mut().for_each(|x| *x *= target / rms);
    raw
}

fn mix_to_mulaw(speech: &[i16], noise: Option<&[f32]>) -> Vec<u8> {
    speech
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let n = noise.map_or(0.0, |n| n[i]);
            g711::ulaw_encode((s as f32 + n).round().clamp(-32768.0, 32767.0) as i16)
        })
        .collect()
}

/// Per-frame truth from the clean signal: above -55 dBFS, pauses under 200 ms bridged.
/// `None` = don't care (within 2 frames of a speech boundary).
fn labels(clean: &[i16]) -> Vec<Option<bool>> {
    let mut speech: Vec<bool> = clean
        .chunks_exact(SAMPLES_8K)
        .map(|f| level_dbfs(f) > -55.0)
        .collect();
    // Bridge short gaps between speech frames.
    let mut last_speech: Option<usize> = None;
    for i in 0..speech.len() {
        if speech[i] {
            if let Some(j) = last_speech
                && i - j > 1
                && i - j <= 10
            {
                speech[j..i].iter_mut().for_each(|s| *s = true);
            }
            last_speech = Some(i);
        }
    }
    let mut out: Vec<Option<bool>> = speech.iter().map(|&s| Some(s)).collect();
    for i in 1..speech.len() {
        if speech[i] != speech[i - 1] {
            let lo = i.saturating_sub(2);
            let hi = (i + 2).min(speech.len());
            out[lo..hi].iter_mut().for_each(|l| *l = None);
        }
    }
    out
}

/// Runs µ-law audio through decode → upsample (`kind`) → `vad`; one decision per 20 ms.
fn decide(mulaw: &[u8], kind: UpsamplerKind, vad: &mut dyn VoiceDetector) -> Vec<bool> {
    let mut up = Upsampler8To16::with_kind(kind);
    let mut pcm8 = [0i16; SAMPLES_8K];
    let mut pcm16 = [0i16; SAMPLES_16K];
    mulaw
        .chunks_exact(SAMPLES_8K)
        .map(|chunk| {
            g711::decode_into(chunk, &mut pcm8);
            up.process(&pcm8, &mut pcm16);
            vad.is_speech(&pcm16)
        })
        .collect()
}

#[derive(Default, Clone, Copy)]
struct Counts {
    tp: u32,
    fp: u32,
    fn_: u32,
    tn: u32,
}

impl Counts {
    fn add(&mut self, truth: &[Option<bool>], got: &[bool]) {
        for (t, &g) in truth.iter().zip(got) {
            match (t, g) {
                (Some(true), true) => self.tp += 1,
                (Some(true), false) => self.fn_ += 1,
                (Some(false), true) => self.fp += 1,
                (Some(false), false) => self.tn += 1,
                (None, _) => {}
            }
        }
    }
    fn precision(&self) -> f32 {
        self.tp as f32 / (self.tp + self.fp).max(1) as f32
    }
    fn recall(&self) -> f32 {
        self.tp as f32 / (self.tp + self.fn_).max(1) as f32
    }
    fn false_positive_rate(&self) -> f32 {
        self.fp as f32 / (self.fp + self.tn).max(1) as f32
    }
}

type Factory = fn() -> Box<dyn VoiceDetector>;

fn candidates() -> Vec<(&'static str, UpsamplerKind, Factory)> {
    vec![
        ("earshot (default)", UpsamplerKind::Fft, || {
            Box::new(EarshotVad::new())
        }),
        ("earshot no fold", UpsamplerKind::Fft, || {
            Box::new(EarshotVad::wideband(0.5))
        }),
        ("earshot no fold/cubic", UpsamplerKind::PolyCubic, || {
            Box::new(EarshotVad::wideband(0.5))
        }),
        ("earshot fold 0.2", UpsamplerKind::Fft, || {
            Box::new(EarshotVad::new().with_folding(0.2))
        }),
        ("earshot fold 1.0", UpsamplerKind::Fft, || {
            Box::new(EarshotVad::new().with_folding(1.0))
        }),
        ("earshot thr 0.3", UpsamplerKind::Fft, || {
            Box::new(EarshotVad::with_threshold(0.3))
        }),
        ("earshot thr 0.7", UpsamplerKind::Fft, || {
            Box::new(EarshotVad::with_threshold(0.7))
        }),
        ("energy -35", UpsamplerKind::Fft, || {
            Box::new(EnergyVad::new(-35.0))
        }),
        ("energy -35 hang 5", UpsamplerKind::Fft, || {
            Box::new(EnergyVad::with_hangover(-35.0, 5))
        }),
        ("energy -45 hang 5", UpsamplerKind::Fft, || {
            Box::new(EnergyVad::with_hangover(-45.0, 5))
        }),
        ("silero v5 8k thr 0.5", UpsamplerKind::Fft, || silero(0.5)),
        ("silero v5 8k thr 0.3", UpsamplerKind::Fft, || silero(0.3)),
    ]
}

/// Silero VAD v5 from the installed models (`scripts/install-models`).
fn silero(threshold: f32) -> Box<dyn VoiceDetector> {
    let models = crate::testing::installed_models_dir();
    Box::new(crate::backends::silero::SileroVad::load(&models, threshold).expect("silero loads"))
}

/// Speech conditions: (name, noise kind and level).
const SPEECH_CONDITIONS: [(&str, Option<(NoiseKind, f32)>); 6] = [
    ("clean", None),
    ("white -50", Some((NoiseKind::White, -50.0))),
    ("white -40", Some((NoiseKind::White, -40.0))),
    ("pink -40", Some((NoiseKind::Pink, -40.0))),
    ("white -30", Some((NoiseKind::White, -30.0))),
    ("brown -35", Some((NoiseKind::Brown, -35.0))),
];

/// Noise-only conditions (10 s each): every frame should be "not speech".
const NOISE_CONDITIONS: [(&str, Option<(NoiseKind, f32)>); 8] = [
    ("µ-law 0xFF", None),
    ("white -50", Some((NoiseKind::White, -50.0))),
    ("white -40", Some((NoiseKind::White, -40.0))),
    ("white -30", Some((NoiseKind::White, -30.0))),
    ("pink -40", Some((NoiseKind::Pink, -40.0))),
    ("pink -30", Some((NoiseKind::Pink, -30.0))),
    ("brown -35", Some((NoiseKind::Brown, -35.0))),
    ("hum -40", Some((NoiseKind::Hum, -40.0))),
];

struct Report {
    /// Per speech condition: counts summed over fixtures.
    speech: Vec<Counts>,
    /// Per noise condition: fraction of frames called speech.
    noise_fp: Vec<f32>,
}

fn evaluate(kind: UpsamplerKind, make: Factory) -> Report {
    let speech = SPEECH_CONDITIONS
        .iter()
        .enumerate()
        .map(|(ci, (_, cond))| {
            let mut counts = Counts::default();
            for (fi, (_, fixture)) in FIXTURES.iter().enumerate() {
                let clean: Vec<i16> = fixture.iter().map(|&b| g711::ulaw_decode(b)).collect();
                let n =
                    cond.map(|(k, db)| noise(k, db, clean.len(), 7 + ci as u32 * 31 + fi as u32));
                let mulaw = mix_to_mulaw(&clean, n.as_deref());
                let mut vad = make();
                let got = decide(&mulaw, kind, vad.as_mut());
                counts.add(&labels(&clean), &got);
            }
            counts
        })
        .collect();
    let silence = vec![0i16; 8000 * 10];
    let noise_fp = NOISE_CONDITIONS
        .iter()
        .enumerate()
        .map(|(ci, (_, cond))| {
            let mulaw = match cond {
                None => vec![0xFF; silence.len()],
                Some((k, db)) => mix_to_mulaw(
                    &silence,
                    Some(&noise(*k, *db, silence.len(), 99 + ci as u32)),
                ),
            };
            let mut vad = make();
            let got = decide(&mulaw, kind, vad.as_mut());
            // Skip the first 100 ms: detectors settle.
            let got = &got[5..];
            got.iter().filter(|&&g| g).count() as f32 / got.len() as f32
        })
        .collect();
    Report { speech, noise_fp }
}

#[test]
#[ignore = "measurement: prints the comparison table (slow without optimised dependencies)"]
fn measure_detectors() {
    println!(
        "\nVAD precision / recall on flite speech (3 voices, {} labelled frames per condition) through µ-law 8 kHz -> 16 kHz:",
        {
            FIXTURES
                .iter()
                .map(|(_, f)| f.len() / SAMPLES_8K)
                .sum::<usize>()
        }
    );
    print!("{:<22}", "detector");
    for (name, _) in SPEECH_CONDITIONS {
        print!(" | {name:^13}");
    }
    println!();
    let mut reports = Vec::new();
    for (name, kind, make) in candidates() {
        let r = evaluate(kind, make);
        print!("{name:<22}");
        for c in &r.speech {
            print!(" | P {:.2} R {:.2}", c.precision(), c.recall());
        }
        println!();
        reports.push((name, r));
    }
    println!(
        "\nFraction of noise-only frames called speech (10 s each; also: FPR on the speech fixtures' pauses, clean):"
    );
    print!("{:<22}", "detector");
    for (name, _) in NOISE_CONDITIONS {
        print!(" | {name:^10}");
    }
    println!(" | pauses");
    for (name, r) in &reports {
        print!("{name:<22}");
        for fp in &r.noise_fp {
            print!(" | {:>9.1}%", fp * 100.0);
        }
        println!(" | {:>5.1}%", r.speech[0].false_positive_rate() * 100.0);
    }
}

/// The default detector: what `InboundPipeline::with_default_vad` runs.
#[test]
fn default_vad_is_accurate_and_robust() {
    // The default (`EarshotVad::new()` after the Fft upsampler, i.e.
    // `InboundPipeline::with_default_vad`).
    let d = &evaluate(UpsamplerKind::Fft, || Box::new(EarshotVad::new()));
    let clean = d.speech[0];
    assert!(
        clean.recall() > 0.85 && clean.precision() > 0.9,
        "clean: P {} R {}",
        clean.precision(),
        clean.recall()
    );
    let white40 = d.speech[2];
    assert!(
        white40.recall() > 0.8 && white40.precision() > 0.9,
        "white -40: P {} R {}",
        white40.precision(),
        white40.recall()
    );
    // Silence and -40 dBFS white noise are not speech.
    assert_eq!(d.noise_fp[0], 0.0);
    assert!(d.noise_fp[2] < 0.02, "white -40: {}", d.noise_fp[2]);
    // Robust: no noise-only condition (up to -30 dBFS) is called speech in more than 2 % of frames.
    for (i, fp) in d.noise_fp.iter().enumerate() {
        assert!(*fp < 0.02, "{}: {fp}", NOISE_CONDITIONS[i].0);
    }
    for (i, c) in d.speech.iter().enumerate() {
        assert!(
            c.precision() > 0.9 && c.recall() > 0.85,
            "{}",
            SPEECH_CONDITIONS[i].0
        );
    }
}

/// The pipeline itself (not just `decide`) finds speech in a fixture and none in silence.
#[test]
fn default_pipeline_detects_speech_in_fixture() {
    let (_, fixture) = FIXTURES[0];
    let clean: Vec<i16> = fixture.iter().map(|&b| g711::ulaw_decode(b)).collect();
    let truth = labels(&clean);
    let (got, _) = decisions_of(InboundPipeline::with_default_vad(), fixture);
    let mut c = Counts::default();
    c.add(&truth, &got);
    assert!(c.recall() > 0.85, "{}", c.recall());
    assert!(c.precision() > 0.9, "{}", c.precision());
}

/// The pipeline upsamples only the frames the detector runs on (it keeps the history of line
/// noise it skips, and starts from silence after near-silence): its decisions are those of one
/// that upsamples every frame and runs the detector on the same frames, on speech with quiet and
/// digital silence between words.
#[test]
fn skipping_the_upsampler_on_quiet_frames_changes_no_decision() {
    let mut stream = Vec::new();
    for (_, fixture) in FIXTURES {
        stream.extend_from_slice(fixture);
        // a pause of digital silence, then one of line hiss just under the detector's gate
        stream.extend(std::iter::repeat_n(0xFFu8, 25 * SAMPLES_8K));
        let mut rng = Noise(7);
        stream
            .extend((0..25 * SAMPLES_8K).map(|_| g711::ulaw_encode((rng.uniform() * 12.0) as i16)));
        // and one of line noise above it (about -51 dBFS), which the detector soon skips
        stream.extend(
            (0..50 * SAMPLES_8K).map(|_| g711::ulaw_encode((rng.uniform() * 150.0) as i16)),
        );
    }
    let mut p = InboundPipeline::with_default_vad();
    let mut got = Vec::new();
    let mut ran = Vec::new();
    for chunk in stream.chunks(SAMPLES_8K) {
        p.push(chunk);
        let before = p.detector_frames();
        while let Some(f) = p.pop() {
            got.push(f.speech);
            ran.push(p.detector_frames() > before);
        }
    }
    // the reference: every frame upsampled (but for the near-silence below the gate, after
    // which both start from silence), the detector run on the same frames
    let mut up = Upsampler8To16::new();
    let mut vad = EarshotVad::new();
    let mut pcm8 = [0i16; SAMPLES_8K];
    let mut pcm16 = [0i16; SAMPLES_16K];
    let mut after_quiet = false;
    let want: Vec<bool> = stream
        .chunks_exact(SAMPLES_8K)
        .zip(&ran)
        .map(|(chunk, &ran)| {
            g711::decode_into(chunk, &mut pcm8);
            if level_dbfs(&pcm8) < super::VAD_GATE_DBFS {
                after_quiet = true;
                return false;
            }
            if std::mem::take(&mut after_quiet) {
                up.reset();
            }
            up.process(&pcm8, &mut pcm16);
            ran && vad.is_speech(&pcm16)
        })
        .collect();
    let noise_skipped = stream
        .chunks_exact(SAMPLES_8K)
        .zip(&ran)
        .filter(|(chunk, ran)| {
            g711::decode_into(chunk, &mut pcm8);
            !**ran && level_dbfs(&pcm8) >= super::VAD_GATE_DBFS
        })
        .count();
    assert!(noise_skipped > 40, "line noise skipped: {noise_skipped}");
    assert!(got.iter().filter(|&&s| s).count() > 100);
    assert_eq!(got, want);
}

/// Decisions of `p` on `mulaw`, fed a frame at a time, and how many frames its detector ran on.
fn decisions_of(mut p: InboundPipeline, mulaw: &[u8]) -> (Vec<bool>, u64) {
    let mut got = Vec::new();
    for chunk in mulaw.chunks(SAMPLES_8K) {
        p.push(chunk);
        while let Some(f) = p.pop() {
            got.push(f.speech);
        }
    }
    (got, p.detector_frames())
}

/// Decisions of the default pipeline (`InboundPipeline::with_default_vad`, the detector gated by
/// the line's noise floor), and the share of frames the detector ran on.
fn pipeline_decisions(mulaw: &[u8]) -> (Vec<bool>, f32) {
    let (got, ran) = decisions_of(InboundPipeline::with_default_vad(), mulaw);
    let share = ran as f32 / got.len().max(1) as f32;
    (got, share)
}

/// The pipeline runs the detector only where speech may be (a frame well above the line's noise
/// floor, until shortly after the last speech): on speech in every noise condition its decisions
/// score as running it on every frame does, and on noise alone it runs on almost no frame and
/// calls none speech.
#[test]
fn gating_the_detector_by_the_noise_floor_keeps_its_decisions() {
    for (ci, (name, cond)) in SPEECH_CONDITIONS.iter().enumerate() {
        let (mut gated, mut every) = (Counts::default(), Counts::default());
        let mut ran = 0.0;
        for (fi, (_, fixture)) in FIXTURES.iter().enumerate() {
            let clean: Vec<i16> = fixture.iter().map(|&b| g711::ulaw_decode(b)).collect();
            let n = cond.map(|(k, db)| noise(k, db, clean.len(), 7 + ci as u32 * 31 + fi as u32));
            let mulaw = mix_to_mulaw(&clean, n.as_deref());
            let truth = labels(&clean);
            let (got, share) = pipeline_decisions(&mulaw);
            gated.add(&truth, &got);
            ran += share / FIXTURES.len() as f32;
            let mut vad = EarshotVad::new();
            every.add(&truth, &decide(&mulaw, UpsamplerKind::HalfBand, &mut vad));
        }
        println!(
            "{name:<10} gated P {:.3} R {:.3} (detector on {:.0} % of frames) | every frame P {:.3} R {:.3}",
            gated.precision(),
            gated.recall(),
            ran * 100.0,
            every.precision(),
            every.recall()
        );
        assert!(
            gated.recall() >= every.recall() - 0.01
                && gated.precision() >= every.precision() - 0.01,
            "{name}: gated P {} R {}, every frame P {} R {}",
            gated.precision(),
            gated.recall(),
            every.precision(),
            every.recall()
        );
    }
    let silence = vec![0i16; 8000 * 10];
    for (ci, (name, cond)) in NOISE_CONDITIONS.iter().enumerate() {
        let Some((kind, db)) = cond else { continue };
        let n = noise(*kind, *db, silence.len(), 99 + ci as u32);
        let (got, ran) = pipeline_decisions(&mix_to_mulaw(&silence, Some(&n)));
        println!(
            "{name:<10} noise only: detector on {:.1} % of frames",
            ran * 100.0
        );
        // brown noise (rumble, which phone lines mostly filter out) swings by several dB from
        // one frame to the next, so it wakes the detector more often (11 % when measured)
        let bound = if matches!(kind, NoiseKind::Brown) {
            0.15
        } else {
            0.05
        };
        assert!(
            ran < bound,
            "{name}: the detector ran on {:.1} % of frames",
            ran * 100.0
        );
        assert!(!got[5..].contains(&true), "{name}: noise called speech");
    }
}

#[test]
#[ignore = "timing; run with optimised dependencies"]
fn per_frame_timings() {
    use std::hint::black_box;
    use std::time::Instant;
    let (_, fixture) = FIXTURES[1];
    let frames: Vec<&[u8]> = fixture.chunks_exact(SAMPLES_8K).collect();
    let n = frames.len();
    let reps = 20;
    let time = |label: &str, f: &mut dyn FnMut()| {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        let per = t.elapsed().as_nanos() as f64 / (reps * n) as f64;
        println!("{label:<28} {:>8.2} µs/frame", per / 1000.0);
    };
    let mut pcm8 = [0i16; SAMPLES_8K];
    let mut pcm16 = [0i16; SAMPLES_16K];
    time("g711 decode 160", &mut || {
        for f in &frames {
            g711::decode_into(black_box(f), &mut pcm8);
            black_box(&pcm8);
        }
    });
    let mut enc = [0u8; SAMPLES_8K];
    time("g711 encode 160", &mut || {
        for _ in &frames {
            g711::encode_into(black_box(&pcm8), &mut enc);
            black_box(&enc);
        }
    });
    for kind in [
        UpsamplerKind::Fft,
        UpsamplerKind::PolyCubic,
        UpsamplerKind::Linear,
    ] {
        let mut up = Upsampler8To16::with_kind(kind);
        time(&format!("upsample {kind:?}"), &mut || {
            for f in &frames {
                g711::decode_into(f, &mut pcm8);
                up.process(black_box(&pcm8), &mut pcm16);
                black_box(&pcm16);
            }
        });
    }
    let mut up = Upsampler8To16::new();
    let pcm16s: Vec<[i16; SAMPLES_16K]> = frames
        .iter()
        .map(|f| {
            g711::decode_into(f, &mut pcm8);
            up.process(&pcm8, &mut pcm16);
            pcm16
        })
        .collect();
    let mut earshot = EarshotVad::new();
    time("earshot (20 ms frame)", &mut || {
        for f in &pcm16s {
            black_box(earshot.is_speech(black_box(f)));
        }
    });
    let mut silero = silero(0.5);
    time("silero v5 8k (20 ms frame)", &mut || {
        for f in &pcm16s {
            black_box(silero.is_speech(black_box(f)));
        }
    });
    let mut energy = EnergyVad::default();
    time("energy", &mut || {
        for f in &pcm16s {
            black_box(energy.is_speech(black_box(f)));
        }
    });
    let mut p = InboundPipeline::with_default_vad();
    time("pipeline push+pop (default)", &mut || {
        for f in &frames {
            p.push(f);
            black_box(p.pop());
        }
    });
}

/// The caller fixtures the load generator's callers say, each alone and all in one stream (as a
/// call hears them: the detector's state carries from one to the next), on a −50 dBFS line.
fn caller_fixtures_on_a_noisy_line() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("audio-fixtures");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    paths.sort();
    let quiet = |secs: usize| std::iter::repeat_n(0i16, 8000 * secs);
    let mut streams = Vec::new();
    let mut all: Vec<i16> = Vec::new();
    for path in &paths {
        let speech = crate::tools::read_wav_8k(path).unwrap();
        let one: Vec<i16> = quiet(1)
            .chain(speech.iter().copied())
            .chain(quiet(2))
            .collect();
        all.extend(&one);
        streams.push((
            path.file_name().unwrap().to_string_lossy().into_owned(),
            one,
        ));
    }
    streams.push(("all, one after another".into(), all));
    streams
        .into_iter()
        .enumerate()
        .map(|(i, (name, pcm))| {
            let n = noise(NoiseKind::White, -50.0, pcm.len(), 5 + i as u32);
            (name, mix_to_mulaw(&pcm, Some(&n)))
        })
        .collect()
}

/// After the detector's tail (200 ms past the last speech) it runs within the hold only on frames
/// that rise above the line's noise. On the callers' fixtures on a noisy line that skips 35-60 %
/// of the frames it ran on, and changes no decision on any fixture alone; in one stream (the
/// detector's state carried from one utterance to the next) a few utterances end one frame
/// sooner or later, no more.
#[test]
fn the_detectors_tail_skips_the_quiet_hold_and_keeps_its_decisions() {
    let (mut ran_full, mut ran_tail) = (0, 0);
    for (name, mulaw) in caller_fixtures_on_a_noisy_line() {
        let (full, full_ran) =
            decisions_of(InboundPipeline::with_default_vad().with_full_hold(), &mulaw);
        let (tail, tail_ran) = decisions_of(InboundPipeline::with_default_vad(), &mulaw);
        let differ: Vec<usize> = (0..full.len()).filter(|&i| full[i] != tail[i]).collect();
        println!(
            "{name:<24} detector on {full_ran} → {tail_ran} frames; decisions differ at {differ:?}"
        );
        if name.ends_with(".wav") {
            assert!(differ.is_empty(), "{name}: decisions differ at {differ:?}");
            ran_full += full_ran;
            ran_tail += tail_ran;
        } else {
            // only where an utterance (or a pause in it) ends: the frame before was speech
            for &i in &differ {
                assert!(
                    full[i - 1] || tail[i - 1],
                    "{name}: frame {i} differs inside silence"
                );
            }
            assert!(differ.len() <= 8, "{name}: {} frames differ", differ.len());
        }
    }
    assert!(
        ran_tail * 10 < ran_full * 7,
        "the detector ran on {ran_tail} frames, {ran_full} with the full hold"
    );
}
