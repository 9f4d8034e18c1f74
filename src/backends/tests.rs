use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::flite::{MAX_TTS_CHARS, sanitize};
use super::sphinx::{fill_high_band, high_band_ratio};
use super::*;
use crate::engine::audio::{SAMPLES_8K, SAMPLES_16K, Upsampler8To16, g711};

// ---- helpers ----

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("audio-fixtures")
}

/// Reads a 16-bit PCM mono WAV file: (samples, sample rate).
fn read_wav(path: &std::path::Path) -> (Vec<i16>, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[0..4], b"RIFF", "{}", path.display());
    assert_eq!(&bytes[8..12], b"WAVE", "{}", path.display());
    let mut pos = 12;
    let mut rate = 0;
    let mut data = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = &bytes[pos + 8..(pos + 8 + len).min(bytes.len())];
        match id {
            b"fmt " => {
                assert_eq!(u16::from_le_bytes([body[0], body[1]]), 1, "PCM");
                assert_eq!(u16::from_le_bytes([body[2], body[3]]), 1, "mono");
                rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
                assert_eq!(u16::from_le_bytes([body[14], body[15]]), 16, "16-bit");
            }
            b"data" => data = Some(body),
            _ => {}
        }
        pos += 8 + len + (len & 1);
    }
    let data = data.expect("data chunk");
    (
        data.chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect(),
        rate,
    )
}

/// 8 kHz caller audio as the server hears it: µ-law on the wire, decoded, upsampled to 16 kHz by
/// the hot path's streaming upsampler in 20 ms frames.
fn telephone_path(pcm8k: &[i16]) -> Vec<Vec<i16>> {
    let mut up = Upsampler8To16::new();
    let mut frames = Vec::new();
    let mut ulaw = [0u8; SAMPLES_8K];
    let mut decoded = [0i16; SAMPLES_8K];
    // A trailing silent frame flushes the upsampler's delay.
    let padded: Vec<i16> = pcm8k
        .iter()
        .copied()
        .chain(std::iter::repeat_n(0, SAMPLES_8K))
        .collect();
    for chunk in padded.chunks(SAMPLES_8K) {
        let mut frame8 = [0i16; SAMPLES_8K];
        frame8[..chunk.len()].copy_from_slice(chunk);
        g711::encode_into(&frame8, &mut ulaw);
        g711::decode_into(&ulaw, &mut decoded);
        let mut out = [0i16; SAMPLES_16K];
        up.process(&decoded, &mut out);
        frames.push(out.to_vec());
    }
    frames
}

fn rms(pcm: &[i16]) -> f64 {
    (pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len().max(1) as f64).sqrt()
}

static SPHINX: OnceLock<SphinxStt> = OnceLock::new();

fn sphinx() -> &'static SphinxStt {
    SPHINX.get_or_init(|| {
        let t = Instant::now();
        let stt = SphinxStt::new(SphinxConfig::default()).expect("pocketsphinx loads");
        eprintln!(
            "pocketsphinx: {} decoders loaded in {:?}",
            SphinxConfig::default().pool_size,
            t.elapsed()
        );
        stt
    })
}

async fn transcribe_fixture(
    stt: &dyn SpeechToText,
    name: &str,
) -> (String, std::time::Duration, f64) {
    let (pcm, rate) = read_wav(&fixture_dir().join(name));
    assert_eq!(rate, 8000, "{name}: fixtures are 8 kHz");
    let mut session = stt.start(SttHint::Any);
    let frames = telephone_path(&pcm);
    let ratio = high_band_ratio(&frames.concat());
    assert!(
        ratio < super::sphinx::HIGH_BAND_EMPTY_RATIO,
        "{name}: telephone audio is narrowband ({ratio})"
    );
    for frame in frames {
        session.push(&frame);
    }
    let t = Instant::now();
    let text = session.finish().await.expect("transcribes");
    (text, t.elapsed(), pcm.len() as f64 / 8000.0)
}

// ---- plain helpers ----

#[test]
fn utterance_buffer_keeps_the_newest_30_seconds() {
    let mut b = UtteranceBuffer::default();
    let frame: Vec<i16> = (0..320).map(|i| i as i16).collect();
    for _ in 0..(MAX_UTTERANCE_SAMPLES / 320 + 10) {
        b.push(&frame);
    }
    assert_eq!(b.dropped(), 10 * 320);
    assert_eq!(b.pushed(), (MAX_UTTERANCE_SAMPLES + 3200) as u64);
    let v = b.into_vec();
    assert_eq!(v.len(), MAX_UTTERANCE_SAMPLES);
    assert_eq!(&v[..320], &frame[..]);

    let mut b = UtteranceBuffer::default();
    let huge = vec![7i16; MAX_UTTERANCE_SAMPLES + 5];
    b.push(&[1, 2, 3]);
    b.push(&huge);
    assert_eq!(b.dropped(), 8);
    assert_eq!(b.into_vec(), vec![7i16; MAX_UTTERANCE_SAMPLES]);
}

#[test]
fn telephone_audio_waits_as_mulaw_and_is_widened_as_the_call_path_widens_it() {
    use crate::engine::audio::{SAMPLES_8K, SAMPLES_16K, Upsampler8To16, g711, mulaw_to_16k};
    let mulaw: Vec<u8> = (0..SAMPLES_8K * 50)
        .map(|i| g711::ulaw_encode(((i as f32 * 0.07).sin() * 9000.0) as i16))
        .collect();
    let mut b = UtteranceBuffer::default();
    for frame in mulaw.chunks(SAMPLES_8K) {
        b.push_phone(frame);
    }
    assert_eq!(b.len(), 2 * mulaw.len());
    assert_eq!(b.pushed(), 2 * mulaw.len() as u64);
    // what the inbound path used to hand recognisers: each frame decoded and upsampled in turn
    let mut up = Upsampler8To16::new();
    let mut pcm = [0i16; SAMPLES_8K];
    let mut wide = [0i16; SAMPLES_16K];
    let mut want = Vec::new();
    for frame in mulaw.chunks(SAMPLES_8K) {
        g711::decode_into(frame, &mut pcm);
        up.process(&pcm, &mut wide);
        want.extend_from_slice(&wide);
    }
    assert_eq!(b.to_vec(), want);
    assert_eq!(b.into_vec(), want);
    // a piece shorter than a frame widens to twice its length
    assert_eq!(mulaw_to_16k(&mulaw[..100]), want[..200].to_vec());

    // 30 s are kept of telephone audio too, counted in 16 kHz samples
    let mut b = UtteranceBuffer::default();
    for _ in 0..(MAX_UTTERANCE_SAMPLES / SAMPLES_16K + 10) {
        b.push_phone(&mulaw[..SAMPLES_8K]);
    }
    assert_eq!(b.dropped(), 10 * SAMPLES_16K as u64);
    assert_eq!(b.len(), MAX_UTTERANCE_SAMPLES);
    assert_eq!(b.into_vec().len(), MAX_UTTERANCE_SAMPLES);

    // wideband audio after telephone audio: the whole is kept wideband, in order
    let mut b = UtteranceBuffer::default();
    b.push_phone(&mulaw[..SAMPLES_8K]);
    b.push(&[5; SAMPLES_16K]);
    b.push_phone(&mulaw[..SAMPLES_8K]);
    let v = b.into_vec();
    assert_eq!(v.len(), 3 * SAMPLES_16K);
    assert_eq!(&v[..SAMPLES_16K], &want[..SAMPLES_16K]);
    assert_eq!(&v[SAMPLES_16K..2 * SAMPLES_16K], &[5; SAMPLES_16K]);
    assert_eq!(&v[2 * SAMPLES_16K..], &want[..SAMPLES_16K]);
}

#[test]
fn transcripts_are_normalized() {
    assert_eq!(
        normalize_transcript("<s> Hello  WORLD(2) [noise] ++uh++ </s>"),
        "hello world"
    );
    assert_eq!(normalize_transcript(""), "");
}

#[test]
fn tts_text_is_sanitized() {
    assert_eq!(sanitize("a\0b\n\tc"), "a b c");
    assert_eq!(sanitize("José’s “café” — ok…"), "Jose's \"cafe\" - ok...");
    assert_eq!(sanitize("日本語 hi 🙂"), "hi");
    let long = "word ".repeat(1000);
    let s = sanitize(&long);
    assert!(
        s.len() <= MAX_TTS_CHARS && s.len() > MAX_TTS_CHARS - 10,
        "{}",
        s.len()
    );
    assert!(s.ends_with("word"));
    assert!(sanitize(&"x".repeat(5000)).len() == MAX_TTS_CHARS);
}

#[test]
fn high_band_fill_adds_quiet_noise_above_4k_only() {
    let mut silence = vec![0i16; 16_000];
    fill_high_band(&mut silence, -30.0);
    let level_db = 20.0 * (rms(&silence) / 32768.0).log10();
    assert!((-31.0..-29.0).contains(&level_db), "{level_db}");
    assert!(
        high_band_ratio(&silence) > 0.9,
        "{}",
        high_band_ratio(&silence)
    );
    // A 1 kHz tone has no energy above 4 kHz; white noise has half.
    let tone: Vec<i16> = (0..16_000)
        .map(|i| ((i as f64 * 2.0 * std::f64::consts::PI / 16.0).sin() * 8000.0) as i16)
        .collect();
    assert!(high_band_ratio(&tone) < 1e-6, "{}", high_band_ratio(&tone));
}

// ---- scripted ----

#[tokio::test]
async fn scripted_stt_cycles_answers_and_ignores_empty_sessions() {
    let stt = ScriptedStt::new(ScriptedAnswers::from(["one", "two"]));
    let mut got = Vec::new();
    for _ in 0..3 {
        let mut s = stt.start(SttHint::Any);
        s.push(&[0; 320]);
        got.push(s.finish().await.unwrap());
    }
    assert_eq!(got, ["one", "two", "one"]);
    assert_eq!(stt.start(SttHint::Any).finish().await.unwrap(), "");
    assert_eq!(stt.answered(), 3);
    assert!(ScriptedAnswers::default().0.is_empty());
    let by_hint = ScriptedStt::new(ScriptedAnswers::default());
    let mut s = by_hint.start(SttHint::Location);
    s.push(&[1; 320]);
    assert_eq!(s.finish().await.unwrap(), "i live in chicago");
}

#[tokio::test]
async fn scripted_tts_duration_follows_text_length() {
    let tts = ScriptedTts::new();
    let s = tts.synthesize("hello", "slt").await.unwrap();
    assert_eq!(s.sample_rate, 8000);
    assert_eq!(s.duration_ms(), 300);
    assert!(rms(&s.pcm) > 500.0);
    let long = tts.synthesize(&"x".repeat(1000), "slt").await.unwrap();
    assert_eq!(long.duration_ms(), 8000);
    assert_eq!(tts.synthesize("", "slt").await.unwrap().pcm.len(), 0);
}

/// Each line is the start of one shared waveform, faded at its ends, and sample for sample what
/// computing the line from its sines gives (the waveform before it was shared, issue 9).
#[tokio::test]
async fn scripted_tts_lines_are_the_waveform_computed_from_its_sines() {
    fn from_sines(ms: u64) -> Vec<i16> {
        let n = (ms * 8) as usize;
        let mut noise: u32 = 0x1234_5678;
        (0..n)
            .map(|i| {
                let t = i as f64 / 8000.0;
                let f0 = 140.0 * (1.0 + 0.05 * (2.0 * std::f64::consts::PI * 0.7 * t).sin());
                let phase = 2.0 * std::f64::consts::PI * f0 * t;
                let voiced = phase.sin() + 0.5 * (2.0 * phase).sin() + 0.3 * (3.0 * phase).sin();
                noise ^= noise << 13;
                noise ^= noise >> 17;
                noise ^= noise << 5;
                let breath = (noise as f64 / u32::MAX as f64) * 2.0 - 1.0;
                let syllable = (std::f64::consts::PI * 4.0 * t).sin().abs();
                let fade = (t / 0.02).min(1.0) * ((ms as f64 / 1000.0 - t) / 0.02).clamp(0.0, 1.0);
                let v = (0.8 * voiced + 0.1 * breath) * syllable * fade * 6_000.0;
                v.round().clamp(-32_768.0, 32_767.0) as i16
            })
            .collect()
    }
    let tts = ScriptedTts::new();
    for (text, ms) in [("hi", 120), ("hello there", 660), (&*"x".repeat(200), 8000)] {
        let line = tts.synthesize(text, "slt").await.unwrap();
        assert_eq!(line.pcm, from_sines(ms), "{ms} ms");
    }
    // a shorter line is not the start of a longer one where it fades out
    let short = tts.synthesize("hello", "slt").await.unwrap().pcm;
    let long = tts.synthesize("hello there", "slt").await.unwrap().pcm;
    assert_eq!(short[160..2000], long[160..2000]);
    assert_ne!(short[2300..], long[2300..2400]);
}

#[tokio::test]
async fn scripted_backends_build() {
    let b = Backends::scripted(ScriptedAnswers::default());
    assert_eq!(b.name, "scripted");
    let mut s = b.stt.start(SttHint::Name);
    s.push(&[1; 320]);
    assert_eq!(s.finish().await.unwrap(), "my name is john smith");
}

// ---- prompt cache ----

#[tokio::test]
async fn prompt_cache_returns_the_same_arc() {
    let cache = PromptCache::new(Arc::new(ScriptedTts::new()));
    assert!(cache.get("slt", "hello").is_none());
    let a = cache.speak("slt", "hello").await.unwrap();
    assert_eq!(a.len(), 2400); // 300 ms at 8 kHz, one byte per sample
    let b = cache.speak("slt", "hello").await.unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert!(Arc::ptr_eq(&a, &cache.get("slt", "hello").unwrap()));
    // Voice is part of the key, unambiguously.
    assert!(cache.get("sl", "thello").is_none());
    let texts: Vec<String> = (0..50).map(|i| format!("prompt {i}")).collect();
    cache.warm("awb", &texts).await;
    assert_eq!(cache.len(), 51);
    // `warm` can run in its own task with owned arguments.
    let (c2, voice) = (cache.clone(), String::from("kal"));
    tokio::spawn(async move { c2.warm(&voice, &texts).await })
        .await
        .unwrap();
    assert_eq!(cache.len(), 101);
}

/// A synthesiser with two engines (as the Piper voice has two sessions) whose warm-up work holds
/// its engine until the test opens `gate`; a text starting "live" is synthesised at once.
struct GatedTts {
    engines: Arc<lease::LeasePool<()>>,
    gate: Arc<tokio::sync::Semaphore>,
    started: Arc<std::sync::atomic::AtomicUsize>,
}

impl TextToSpeech for GatedTts {
    fn synthesize(
        &self,
        text: &str,
        _voice: &str,
    ) -> BoxFuture<'static, Result<Speech, BackendError>> {
        let (engines, gate, started) = (
            self.engines.clone(),
            self.gate.clone(),
            self.started.clone(),
        );
        let live = text.starts_with("live");
        Box::pin(async move {
            let _engine = engines.lease().await?;
            started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if !live {
                gate.acquire().await.expect("open").forget();
            }
            Ok(Speech {
                pcm: vec![1000; 800],
                sample_rate: 8000,
                fallback: false,
            })
        })
    }

    fn voices(&self) -> Vec<String> {
        vec!["v".into()]
    }
}

#[tokio::test]
async fn warming_prompts_leaves_an_engine_for_a_live_reply() {
    let tts = GatedTts {
        engines: lease::LeasePool::new("gated", vec![(), ()]),
        gate: Arc::new(tokio::sync::Semaphore::new(0)),
        started: Default::default(),
    };
    let (gate, started) = (tts.gate.clone(), tts.started.clone());
    let cache = PromptCache::new(Arc::new(tts));
    let texts: Vec<String> = (0..6).map(|i| format!("prompt {i}")).collect();
    let warming = tokio::spawn({
        let cache = cache.clone();
        async move { cache.warm("v", &texts).await }
    });
    while started.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    // A free engine is leased without waiting, so the reply is done in one poll; behind the
    // warm-up (both engines held) it would wait.
    let reply = futures_util::FutureExt::now_or_never(cache.speak("v", "live reply"));
    let reply = reply.expect("the live reply waited behind the warm-up");
    assert_eq!(reply.unwrap().len(), 800);
    assert_eq!(
        started.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "one warm-up job, one reply"
    );
    assert!(!warming.is_finished());
    gate.add_permits(6);
    warming.await.unwrap();
    assert_eq!(cache.len(), 7, "every prompt was still warmed");
}

#[tokio::test]
async fn prompt_cache_with_flite_is_8k_ulaw() {
    let tts: Arc<dyn TextToSpeech> = Arc::new(FliteTts::new().unwrap());
    let cache = PromptCache::new(tts);
    let a = cache.speak("slt", "Thanks for calling.").await.unwrap();
    let b = cache.speak("slt", "Thanks for calling.").await.unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    // About a second of audio at 8000 bytes per second, not silent.
    assert!((4000..24_000).contains(&a.len()), "{}", a.len());
    let mut pcm = vec![0i16; a.len()];
    g711::decode_into(&a, &mut pcm);
    assert!(rms(&pcm) > 500.0);
}

// ---- flite ----

#[tokio::test]
async fn flite_speaks_a_sentence() {
    let tts = FliteTts::new().unwrap();
    let voices = tts.voices();
    assert_eq!(voices[0], "slt");
    let sentence = "Hello, thanks for calling. May I have your full name, please?";
    for voice in &voices {
        let t = Instant::now();
        let s = tts.synthesize(sentence, voice).await.unwrap();
        let elapsed = t.elapsed();
        eprintln!(
            "flite {voice}: {} ms of audio at {} Hz in {elapsed:?}, rms {:.0}",
            s.duration_ms(),
            s.sample_rate,
            rms(&s.pcm)
        );
        assert!(
            (2_000..8_000).contains(&s.duration_ms()),
            "{voice}: {} ms",
            s.duration_ms()
        );
        assert!(rms(&s.pcm) > 300.0, "{voice} is silent");
        if s.sample_rate == 16_000 {
            // Wideband speech is not mistaken for upsampled telephone audio.
            let ratio = high_band_ratio(&s.pcm);
            eprintln!("flite {voice}: energy share above 4.5 kHz {ratio:.1e}");
            assert!(
                ratio > super::sphinx::HIGH_BAND_EMPTY_RATIO,
                "{voice}: {ratio}"
            );
        }
    }
    // Unknown voice → default; odd text does not break it.
    let s = tts.synthesize("Okay.", "nonexistent").await.unwrap();
    assert_eq!(s.sample_rate, 16_000);
    for odd in [
        "",
        "\0\0",
        "🙂🙂",
        "$$$ 123,456.78 %^&*",
        &"a".repeat(20_000),
        "Mr. O'Brien—Dr. Nuñez",
    ] {
        tts.synthesize(odd, "slt").await.unwrap();
    }
}

// ---- pocketsphinx on the telephone path ----

/// (fixture, words its transcript must contain)
const FIXTURES: &[(&str, &[&str])] = &[
    ("name.wav", &["john"]),
    ("location.wav", &["chicago"]),
    ("yes.wav", &["yes"]),
    ("no.wav", &["no"]),
    ("number_five.wav", &["five"]),
    ("number_three.wav", &["three"]),
    ("free_text.wav", &["warehouse"]),
    ("question_pay.wav", &["money"]),
    ("no_questions.wav", &["no"]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sphinx_transcribes_fixtures_over_the_telephone_path() {
    let stt = sphinx();
    let mut failures = Vec::new();
    for (name, words) in FIXTURES {
        let (text, took, secs) = transcribe_fixture(stt, name).await;
        eprintln!("{name}: {text:?} ({secs:.2} s of audio decoded in {took:?})");
        let heard: Vec<&str> = text.split(' ').collect();
        if !words.iter().all(|w| heard.contains(w)) {
            failures.push(format!("{name}: {text:?} lacks {words:?}"));
        }
    }
    let (mumble, _, _) = transcribe_fixture(stt, "mumble.wav").await;
    eprintln!("mumble.wav: {mumble:?}");
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sphinx_empty_session_is_empty_and_pool_survives_concurrency() {
    let stt = sphinx();
    assert_eq!(stt.start(SttHint::Any).finish().await.unwrap(), "");
    // More concurrent utterances than decoders: they queue for the pool.
    let (pcm, _) = read_wav(&fixture_dir().join("yes.wav"));
    let frames = telephone_path(&pcm);
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let mut s = stt.start(SttHint::Any);
        for f in &frames {
            s.push(f);
        }
        tasks.push(tokio::spawn(s.finish()));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap().unwrap());
    }
    eprintln!("{got:?}");
    for t in got {
        assert_eq!(t, "yes");
    }
}

// ---- piper ----

/// The Piper voice through the telephone band is understood by the offline recogniser: its words
/// are words, not just audible noise.
#[tokio::test]
async fn the_piper_voice_is_understood_through_the_phone() {
    let dir = crate::testing::installed_models_dir();
    let tts = super::piper::PiperTts::load(&dir, 1).unwrap();
    let t = Instant::now();
    let s = tts
        .synthesize("My name is John Smith, and I live in Chicago.", "joe")
        .await
        .unwrap();
    eprintln!(
        "piper: {} ms of audio at {} Hz in {:?}",
        s.duration_ms(),
        s.sample_rate,
        t.elapsed()
    );
    let phone = crate::engine::audio::resample(&s.pcm, s.sample_rate, 8000);
    let wide = crate::engine::audio::resample(&phone, 8000, 16_000);
    let heard = SphinxStt::new(SphinxConfig::default())
        .unwrap()
        .transcribe(wide)
        .await
        .unwrap();
    eprintln!("piper heard as: {heard}");
    let words = ["name", "john", "smith", "live", "chicago"];
    let got = words.iter().filter(|w| heard.contains(*w)).count();
    assert!(got >= 3, "{heard}");
}
