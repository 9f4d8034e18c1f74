//! Whisper, the offline default recogniser, on real speech: a generated call answer transcribed
//! through the library (whole, and from the decode started at the caller's pause), and a short
//! version of `scripts/accuracy` (held-out flite and espeak-ng voices, 8 kHz µ-law with
//! telephone-band noise, through `receptionist transcribe`) checking that Whisper beats
//! PocketSphinx and captures most answers.
//!
//! Needs the models (`scripts/install-models`, which `.ci/setup` runs) in `data/models` or
//! `RECEPTIONIST_MODELS_DIR`, and flite, espeak-ng and sox.

use std::path::{Path, PathBuf};
use std::process::Command;

use receptionist::backends::{SpeechToText, SttHint, SttSession, WhisperConfig, WhisperStt};
use receptionist::tools::transcribe::load_audio;

#[path = "common/cough.rs"]
mod cough;
use cough::cough;

fn models_dir() -> PathBuf {
    let dir = std::env::var_os("RECEPTIONIST_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("data/models"));
    assert!(
        receptionist::backends::whisper::installed(&dir),
        "the Whisper model is not in {} (run scripts/install-models, or set RECEPTIONIST_MODELS_DIR)",
        dir.display()
    );
    dir
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (flite, espeak-ng and sox must be installed)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `text` spoken by `voice` (`flite:NAME` or `espeak:NAME`) as a phone line carries it: 8 kHz,
/// -3 dBFS peak, 300 ms of quiet around it, with pink noise in the telephone band `snr` dB below
/// the speech when given.
fn utterance(dir: &Path, name: &str, voice: &str, text: &str, snr: Option<f64>) -> PathBuf {
    let raw = dir.join(format!("{name}.raw.wav"));
    let (engine, v) = voice.split_once(':').expect("engine:voice");
    match engine {
        "flite" => run(Command::new("flite")
            .args(["-voice", v, "-t", text, "-o"])
            .arg(&raw)),
        _ => run(Command::new("espeak-ng")
            .args(["-v", v, "-w"])
            .arg(&raw)
            .arg(text)),
    }
    let clean = dir.join(format!("{name}.clean.wav"));
    run(Command::new("sox")
        .arg("-R")
        .arg(&raw)
        .args(["-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer"])
        .arg(&clean)
        .args(["gain", "-n", "-3", "pad", "0.3", "0.3"]));
    let Some(snr) = snr else { return clean };
    let speech = receptionist::tools::read_wav(&clean).unwrap().1;
    let rms =
        |x: &[i16]| (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt();
    let noise = dir.join(format!("{name}.noise.wav"));
    let secs = speech.len() as f64 / 8000.0;
    run(Command::new("sox")
        .args(["-R", "-n", "-r", "8000", "-c", "1", "-b", "16"])
        .arg(&noise)
        .args([
            "synth",
            &format!("{secs:.4}"),
            "pinknoise",
            "sinc",
            "300-3400",
        ]));
    let noise_pcm = receptionist::tools::read_wav(&noise).unwrap().1;
    let gain = rms(&speech) / rms(&noise_pcm) * 10f64.powf(-snr / 20.0);
    let mixed: Vec<i16> = speech
        .iter()
        .zip(noise_pcm.iter().chain(std::iter::repeat(&0)))
        .map(|(&s, &n)| (f64::from(s) + f64::from(n) * gain).clamp(-32768.0, 32767.0) as i16)
        .collect();
    let out = dir.join(format!("{name}.wav"));
    receptionist::tools::write_wav_8k(&out, &mixed).unwrap();
    out
}

#[tokio::test]
async fn whisper_transcribes_a_call_answer_and_reuses_the_decode_started_at_the_pause() {
    let models = models_dir();
    let dir = tempfile::tempdir().unwrap();
    let wav = utterance(
        dir.path(),
        "houston",
        "flite:awb",
        "i live in houston",
        Some(20.0),
    );
    let pcm = load_audio(&wav, true).unwrap();
    let stt = WhisperStt::new(WhisperConfig::new(&models)).expect("whisper loads");
    let whole = stt.transcribe(pcm.clone()).await.unwrap();
    assert!(whole.contains("houston"), "{whole:?}");
    assert_eq!(stt.decodes(), 1);

    // as a call pushes it: 20 ms frames, then the end-of-turn silence; the pause in it starts a
    // decode, and finish takes that decode's transcript rather than decoding again
    let mut session = stt.start(SttHint::Location);
    for frame in pcm.chunks(320) {
        session.push(frame);
    }
    for _ in 0..35 {
        session.push(&[0; 320]);
    }
    let early = session.finish().await.unwrap();
    assert_eq!(early, whole);
    assert_eq!(stt.decodes(), 2, "one decode, started at the pause");

    // speech after the pause: the decode at the pause is not the answer
    let more = utterance(dir.path(), "state", "flite:awb", "in texas", Some(20.0));
    let more = load_audio(&more, true).unwrap();
    let mut session = stt.start(SttHint::Location);
    for frame in pcm.chunks(320) {
        session.push(frame);
    }
    session.push(&[0; 320 * 20]);
    for frame in more.chunks(320) {
        session.push(frame);
    }
    let both = session.finish().await.unwrap();
    assert!(
        both.contains("houston") && both.contains("texas"),
        "{both:?}"
    );

    // silence is nothing
    let mut session = stt.start(SttHint::Any);
    session.push(&[0; 16_000]);
    assert_eq!(session.finish().await.unwrap(), "");
}

/// Words as the accuracy script scores them: lowercase, numbers digit by digit.
fn words(text: &str) -> Vec<String> {
    const UNITS: [&str; 10] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ];
    let mut out = Vec::new();
    for w in text
        .to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
    {
        let w = w.trim_matches('\'');
        let w = if w == "oh" { "zero" } else { w };
        if let Some(d) = UNITS.iter().position(|u| *u == w) {
            out.push(d.to_string());
        } else if !w.is_empty() && w.chars().all(|c| c.is_ascii_digit()) {
            out.extend(w.chars().map(String::from));
        } else if !w.is_empty() {
            out.push(w.to_string());
        }
    }
    out
}

fn edits(reference: &[String], hypothesis: &[String]) -> usize {
    let mut d: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut prev = d[0];
        d[0] = i + 1;
        for (j, h) in hypothesis.iter().enumerate() {
            let cur = d[j + 1];
            d[j + 1] = (d[j + 1] + 1).min(d[j] + 1).min(prev + usize::from(r != h));
            prev = cur;
        }
    }
    d[hypothesis.len()]
}

fn captured(kind: &str, answer: &str, hypothesis: &str) -> bool {
    let w = words(hypothesis);
    let has = |x: &str| w.iter().any(|y| y == x);
    match kind {
        "yes" => has("yes") || has("yeah") || has("right"),
        "no" => has("no") || has("not"),
        "number" => {
            w.iter()
                .filter(|x| x.parse::<u8>().is_ok())
                .cloned()
                .collect::<String>()
                == answer
        }
        _ => answer.split(' ').all(has),
    }
}

/// (word error rate, answers captured) of one recogniser over `cases`.
fn score(
    files: &[PathBuf],
    cases: &[(&str, &str, &str)],
    stt: &str,
    models: &Path,
) -> (f64, usize) {
    let out = Command::new(env!("CARGO_BIN_EXE_receptionist"))
        .args([
            "transcribe",
            "--stt",
            stt,
            "--phone",
            "--jobs",
            "2",
            "--models-dir",
        ])
        .arg(models)
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), files.len(), "{text}");
    let (mut errors, mut total, mut right) = (0, 0, 0);
    for ((line, file), (kind, answer, said)) in lines.iter().zip(files).zip(cases.iter().cycle()) {
        let (name, hyp) = line.split_once('\t').expect("FILE<TAB>transcript");
        assert_eq!(name, file.display().to_string());
        let reference = words(said);
        errors += edits(&reference, &words(hyp));
        total += reference.len();
        right += usize::from(captured(kind, answer, hyp));
        eprintln!("{stt}\t{said}\t{hyp}");
    }
    (errors as f64 / total as f64, right)
}

#[test]
fn whisper_beats_pocketsphinx_on_held_out_voices_over_the_phone() {
    let models = models_dir();
    let dir = tempfile::tempdir().unwrap();
    // kind, the answer, what the caller says (none of them in audio-fixtures/)
    let cases = [
        ("name", "maria garcia", "my name is maria garcia"),
        ("name", "robert wilson", "robert wilson speaking"),
        ("name", "houston", "i live in houston"),
        ("name", "boston", "i'm calling from boston"),
        ("yes", "", "yes i do"),
        ("no", "", "no not really"),
        (
            "number",
            "5551234",
            "my number is five five five one two three four",
        ),
        ("name", "weekends", "can i work on weekends"),
    ];
    let voices = [
        ("flite:rms", Some(20.0)),
        ("flite:awb", None),
        ("espeak:en-us", Some(20.0)),
    ];
    let mut files = Vec::new();
    for (v, (voice, snr)) in voices.iter().enumerate() {
        for (i, (_, _, said)) in cases.iter().enumerate() {
            files.push(utterance(
                dir.path(),
                &format!("u{v}-{i}"),
                voice,
                said,
                *snr,
            ));
        }
    }
    let (sphinx_wer, sphinx_right) = score(&files, &cases, "sphinx", &models);
    let (whisper_wer, whisper_right) = score(&files, &cases, "whisper", &models);
    eprintln!(
        "sphinx: WER {:.0}%, {sphinx_right}/{n} answers; whisper: WER {:.0}%, {whisper_right}/{n} answers",
        sphinx_wer * 100.0,
        whisper_wer * 100.0,
        n = files.len()
    );
    assert!(
        whisper_wer + 0.10 < sphinx_wer,
        "whisper WER {whisper_wer:.2} vs sphinx {sphinx_wer:.2}"
    );
    assert!(whisper_wer < 0.35, "whisper WER {whisper_wer:.2}");
    assert!(
        whisper_right * 100 >= files.len() * 60,
        "whisper captured {whisper_right} of {} answers",
        files.len()
    );
}

/// Espeak-ng speaking `text` in `voice` (a language of its own), through the telephone path.
fn spoken_in(dir: &Path, name: &str, voice: &str, text: &str) -> Vec<i16> {
    load_audio(&utterance(dir, name, voice, text, None), true).unwrap()
}

#[tokio::test]
async fn the_multilingual_model_names_the_callers_language_and_tiny_en_names_none() {
    let models = models_dir();
    assert!(
        receptionist::backends::whisper::multilingual_installed(&models),
        "the multilingual Whisper model is not in {} (run scripts/install-models)",
        models.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let stt = WhisperStt::new(WhisperConfig::new(&models)).expect("whisper loads");
    assert!(stt.multilingual());
    let spanish = spoken_in(
        dir.path(),
        "es",
        "espeak:es",
        "Buenos días, quisiera información sobre el trabajo en Madrid.",
    );
    let french = spoken_in(
        dir.path(),
        "fr",
        "espeak:fr",
        "Bonjour, je voudrais des informations sur le travail à Paris.",
    );
    let english = spoken_in(
        dir.path(),
        "en",
        "espeak:en-us",
        "Hello, my name is Peter and I live in Boston.",
    );
    for (pcm, want, word) in [
        (&spanish, "es", "madrid"),
        (&french, "fr", "informations"),
        (&english, "en", "boston"),
    ] {
        let heard = stt.transcribe_in(pcm.clone(), true).await.unwrap();
        assert_eq!(heard.language.as_deref(), Some(want), "{heard:?}");
        assert!(heard.text.contains(word), "{heard:?}");
    }
    // a call not in multilingual mode is heard by tiny.en, which names no language
    let heard = stt.transcribe_in(spanish.clone(), false).await.unwrap();
    assert_eq!(heard.language, None, "{heard:?}");

    // as a call pushes it: the session reports the language, from the decode at the pause too
    let mut session = stt.start_in(SttHint::Any, true);
    for frame in spanish.chunks(320) {
        session.push(frame);
    }
    for _ in 0..35 {
        session.push(&[0; 320]);
    }
    let heard = session.finish_heard().await.unwrap();
    assert_eq!(heard.language.as_deref(), Some("es"), "{heard:?}");
    // silence names no language
    let mut session = stt.start_in(SttHint::Any, true);
    session.push(&[0; 16_000]);
    assert_eq!(
        session.finish_heard().await.unwrap(),
        receptionist::backends::Heard::default()
    );
}

#[tokio::test]
async fn a_multilingual_call_has_its_model_loaded_before_the_callers_first_words() {
    let models = models_dir();
    let stt = WhisperStt::new(WhisperConfig::new(&models)).expect("whisper loads");
    assert!(stt.multilingual());
    // an English call leaves it unloaded
    let _english = stt.open_call(false, &[]);
    assert!(!stt.multilingual_loaded());
    // a multilingual call starts the load at once, with no audio yet (it takes a few seconds;
    // the greeting and the first question take longer)
    let _call = stt.open_call(true, &[]).expect("a multilingual call");
    let waited = std::time::Instant::now();
    while !stt.multilingual_loaded() {
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(120),
            "the multilingual model did not load"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_multilingual_model_that_cannot_load_leaves_the_english_one_hearing_its_calls() {
    let models = models_dir();
    let dir = tempfile::tempdir().unwrap();
    // the multilingual model's directory is there but holds no model
    let broken = dir.path().join("whisper-base");
    std::fs::create_dir_all(&broken).unwrap();
    let config = WhisperConfig {
        multilingual_dir: Some(broken),
        ..WhisperConfig::new(&models)
    };
    let stt = WhisperStt::new(config).expect("tiny.en loads");
    assert!(stt.multilingual());
    let english = spoken_in(
        dir.path(),
        "en",
        "espeak:en-us",
        "Hello, my name is Peter and I live in Boston.",
    );
    // each utterance of a multilingual call is heard by tiny.en, which names no language
    for _ in 0..2 {
        let heard = stt.transcribe_in(english.clone(), true).await.unwrap();
        assert!(heard.text.contains("boston"), "{heard:?}");
        assert_eq!(heard.language, None, "{heard:?}");
    }
    let mut call = stt.open_call(true, &[]).expect("a multilingual call");
    let mut session = call.start(SttHint::Any);
    for frame in english.chunks(320) {
        session.push(frame);
    }
    let heard = session.finish_heard().await.unwrap();
    assert!(heard.text.contains("boston"), "{heard:?}");
}

/// An answer to a number question, heard as a call hears it: pushed in 20 ms frames with the
/// dialogue's hint, then finished.
async fn heard_as(stt: &WhisperStt, pcm: &[i16], hint: SttHint) -> String {
    heard_in(stt.start(hint), pcm).await
}

/// What a session makes of `pcm`, pushed in 20 ms frames, then finished.
async fn heard_in(mut session: Box<dyn SttSession>, pcm: &[i16]) -> String {
    for frame in pcm.chunks(320) {
        session.push(frame);
    }
    session.finish().await.unwrap()
}

#[tokio::test]
async fn told_a_number_is_expected_whisper_hears_numbers_it_misheard_and_invents_none() {
    let models = models_dir();
    let dir = tempfile::tempdir().unwrap();
    let stt = WhisperStt::new(WhisperConfig::new(&models)).expect("whisper loads");
    // an espeak-ng voice that tiny.en mishears numbers in ("Two years." as "who")
    let voice = "espeak:en-us+m3";
    let answers = [
        (2.0, "Two years."),
        (6.0, "Six months."),
        (12.0, "Twelve years."),
        (20.0, "Twenty years."),
        (5.0, "About five years."),
        (4.0, "I have four years of experience."),
    ];
    let mut right = [0, 0];
    for (i, (number, text)) in answers.iter().enumerate() {
        let pcm = spoken_in(dir.path(), &format!("n{i}"), voice, text);
        for (k, hint) in [SttHint::Any, SttHint::Number].into_iter().enumerate() {
            let heard = heard_as(&stt, &pcm, hint).await;
            eprintln!("{text:?} with {hint:?}: {heard:?}");
            if receptionist::engine::dialogue::understand::parse_number(&heard) == Some(*number) {
                right[k] += 1;
            }
        }
    }
    assert!(
        right[1] > right[0] && right[1] >= 4,
        "numbers right without the hint {}, with it {} (of {})",
        right[0],
        right[1],
        answers.len()
    );
    // what is not a number answer is not made one
    for (i, (voice, text)) in [
        ("espeak:en-gb+m1", "What does the job pay?"),
        ("espeak:en-us+m3", "No, thank you."),
        ("flite:kal", "I'm not sure."),
        ("espeak:en+f3", "Can you repeat the question?"),
    ]
    .into_iter()
    .enumerate()
    {
        let pcm = spoken_in(dir.path(), &format!("q{i}"), voice, text);
        let heard = heard_as(&stt, &pcm, SttHint::Number).await;
        assert_eq!(
            receptionist::engine::dialogue::understand::parse_number(&heard),
            None,
            "{text:?} ({voice}) heard as {heard:?}"
        );
    }
}

/// The `i`th synthetic cough of `ms` (300 ms of quiet around it), as a call hears it.
fn coughed(dir: &Path, i: usize, ms: usize, smooth: f32) -> Vec<i16> {
    let mut pcm8k = vec![0i16; 2400];
    pcm8k.extend(cough(ms, smooth, 0x2545_f491 + i as u32));
    pcm8k.extend(vec![0i16; 2400]);
    let path = dir.join(format!("cough{i}.wav"));
    receptionist::tools::write_wav_8k(&path, &pcm8k).unwrap();
    load_audio(&path, true).unwrap()
}

#[tokio::test]
async fn a_short_clear_answer_is_not_taken_for_silence_and_a_cough_is() {
    let models = models_dir();
    let dir = tempfile::tempdir().unwrap();
    let stt = WhisperStt::new(WhisperConfig::new(&models)).expect("whisper loads");
    // answers whose no-speech estimate on the utterance's own window is above Whisper's 0.6
    // (0.62 and 0.63 in scripts/accuracy's run) but below the 0.7 the recogniser now uses
    for (i, (voice, text, word)) in [
        ("espeak:en-gb-scotland", "no", "no"),
        ("espeak:en-gb", "four", "4"),
    ]
    .into_iter()
    .enumerate()
    {
        let pcm = spoken_in(dir.path(), &format!("s{i}"), voice, text);
        let heard = heard_as(&stt, &pcm, SttHint::Any).await;
        assert!(
            heard.split(' ').any(|w| w == word),
            "{voice} {text:?} heard as {heard:?}"
        );
    }
    // coughs and noise bursts (no-speech 0.78-0.93, words unsure) still give no words, also
    // where a yes or a no is expected (Whisper makes "i'm not a cop" of them)
    for (i, (ms, smooth)) in [(250, 0.0), (300, 0.5), (400, 0.7), (500, 0.3)]
        .into_iter()
        .enumerate()
    {
        let pcm = coughed(dir.path(), i, ms, smooth);
        for hint in [SttHint::Any, SttHint::YesNo] {
            let heard = heard_as(&stt, &pcm, hint).await;
            assert_eq!(heard, "", "a {ms} ms cough ({smooth}) with {hint:?}");
        }
    }
}

/// An utterance heard as a call hears it when the caller is asked where they live, with the
/// places of the receptionist's context as the recogniser's key terms.
async fn heard_with_places(stt: &WhisperStt, pcm: &[i16], places: &[String]) -> String {
    heard_in(stt.start_with_terms(SttHint::Location, false, places), pcm).await
}

#[tokio::test]
async fn told_the_places_of_the_positions_whisper_hears_the_city_and_invents_none() {
    let models = models_dir();
    let dir = tempfile::tempdir().unwrap();
    let stt = WhisperStt::new(WhisperConfig::new(&models)).expect("whisper loads");
    let places: Vec<String> = ["Phoenix", "Mesa", "Tempe", "Atlanta", "Marietta"]
        .map(String::from)
        .to_vec();
    // voices tiny.en mishears these cities in ("see next", "a plant of georgia")
    for (i, (voice, text, city)) in [
        ("espeak:en-us", "Phoenix.", "phoenix"),
        ("espeak:en-gb-scotland", "Phoenix.", "phoenix"),
        ("flite:awb", "Phoenix.", "phoenix"),
        ("espeak:en-us", "I live in Atlanta, Georgia.", "atlanta"),
    ]
    .into_iter()
    .enumerate()
    {
        let pcm = spoken_in(dir.path(), &format!("c{i}"), voice, text);
        let plain = heard_as(&stt, &pcm, SttHint::Location).await;
        assert!(
            !plain.split(' ').any(|w| w == city),
            "{voice} {text:?} is heard right unprimed ({plain:?}): no longer a test of priming"
        );
        let primed = heard_with_places(&stt, &pcm, &places).await;
        assert!(
            primed.split(' ').any(|w| w == city),
            "{voice} {text:?} heard as {primed:?} with the places"
        );
    }
    // a city that is not among them is not turned into one of them, nor is an answer that
    // names none
    for (i, (voice, text, keep)) in [
        ("flite:kal", "I live in Houston.", "houston"),
        ("espeak:en-us", "I work in a warehouse.", "warehouse"),
    ]
    .into_iter()
    .enumerate()
    {
        let pcm = spoken_in(dir.path(), &format!("o{i}"), voice, text);
        let primed = heard_with_places(&stt, &pcm, &places).await;
        let words: Vec<&str> = primed.split(' ').collect();
        assert!(words.contains(&keep), "{text:?} heard as {primed:?}");
        assert!(
            !places
                .iter()
                .any(|p| words.contains(&p.to_lowercase().as_str())),
            "{text:?} heard as {primed:?}"
        );
    }
    // coughs still give no words: the no-speech estimate is read unprimed (primed, it runs so
    // low that Whisper hears "i'm dead" in every one of them)
    for (i, (ms, smooth)) in [(150, 0.3), (250, 0.0), (400, 0.5), (700, 0.7)]
        .into_iter()
        .enumerate()
    {
        let pcm = coughed(dir.path(), i, ms, smooth);
        let heard = heard_with_places(&stt, &pcm, &places).await;
        assert_eq!(heard, "", "a {ms} ms cough ({smooth}) with the places");
    }
}

/// The first `ms` of speech in `pcm` (16 kHz), after 200 ms of the quiet before it: what a call's
/// barge-in check has heard of talk over the agent.
fn first_of_speech(pcm: &[i16], ms: usize) -> Vec<i16> {
    let onset = pcm
        .chunks(320)
        .position(|f| f.iter().any(|s| s.unsigned_abs() > 1_000))
        .expect("speech")
        * 320;
    pcm[onset.saturating_sub(3_200)..(onset + ms * 16).min(pcm.len())].to_vec()
}

/// What a barge-in check makes of `pcm` said over the agent, and whether it stops the agent.
async fn checked_over_agent(stt: &WhisperStt, pcm: &[i16]) -> (String, bool) {
    checked_over_agent_told(stt, SttHint::Any, pcm).await
}

/// The same, in a turn where the dialogue expects `hint`.
async fn checked_over_agent_told(stt: &WhisperStt, hint: SttHint, pcm: &[i16]) -> (String, bool) {
    let mut session = stt.start(hint);
    for frame in pcm.chunks(320) {
        session.push(frame);
    }
    let words = session
        .partial_over_agent()
        .expect("Whisper checks talk over the agent")
        .await
        .unwrap();
    let floor = receptionist::engine::dialogue::understand::takes_the_floor(&words);
    (words, floor)
}

/// A barge-in check's decode is primed with a hum and "Sorry" (`whisper::CHECK_PRIMER`): robotic
/// hums it made words of ("m a k", "and they can't") are heard as the hums they are, the first
/// 200 ms of an interruption opening with "Sorry" are heard as one, interruptions are still heard,
/// and the turn's own words are decoded without that primer.
#[tokio::test]
async fn a_barge_in_check_hears_hums_as_hums_and_an_interruption_as_one() {
    let models = models_dir();
    let dir = tempfile::tempdir().unwrap();
    let primed = WhisperStt::new(WhisperConfig::new(&models)).expect("whisper loads");
    let plain = WhisperStt::new(WhisperConfig {
        check_primer: Vec::new(),
        ..WhisperConfig::new(&models)
    })
    .expect("whisper loads");
    // (voice, what is said over the agent, ms of it heard, whether it should stop the agent)
    let cases = [
        ("espeak:en-us+m1", "Mhm.", 400, false),
        ("espeak:en-us+m7", "Mhm.", 400, false),
        ("flite:rms", "Mm-hmm.", 400, false),
        ("espeak:en-gb+m1", "Mm-hmm.", 400, false),
        (
            "espeak:en-gb+m1",
            "Sorry, which job is this for?",
            200,
            true,
        ),
        (
            "espeak:en-us+f5",
            "Sorry to interrupt, but I have a question.",
            200,
            true,
        ),
    ];
    for (i, (voice, text, ms, stops)) in cases.into_iter().enumerate() {
        let pcm = first_of_speech(&spoken_in(dir.path(), &format!("c{i}"), voice, text), ms);
        let (words, floor) = checked_over_agent(&primed, &pcm).await;
        assert_eq!(floor, stops, "{voice} {text:?} ({ms} ms): {words:?}");
        // without the primer each is read the other way: the primer is what does it
        let (unprimed, floor) = checked_over_agent(&plain, &pcm).await;
        assert_eq!(floor, !stops, "{voice} {text:?} unprimed: {unprimed:?}");
    }
    // interruptions that do not open with "sorry" are still heard
    for (i, (voice, text, ms)) in [
        ("espeak:en-us+m7", "Hello? Are you still there?", 200),
        ("espeak:en-us+m7", "Stop, I need to go.", 400),
        ("espeak:en-us+m3", "Sorry, which job is this for?", 200),
    ]
    .into_iter()
    .enumerate()
    {
        let pcm = first_of_speech(&spoken_in(dir.path(), &format!("i{i}"), voice, text), ms);
        let (words, floor) = checked_over_agent(&primed, &pcm).await;
        assert!(floor, "{voice} {text:?} ({ms} ms): {words:?}");
    }
    // a check's decode does not stand for the turn's words: they are decoded as a turn's
    let pcm = first_of_speech(
        &spoken_in(dir.path(), "turn", "espeak:en-us+m7", "Mhm."),
        400,
    );
    let mut session = primed.start(SttHint::Any);
    for frame in pcm.chunks(320) {
        session.push(frame);
    }
    let check = session.partial_over_agent().unwrap().await.unwrap();
    assert_eq!(check, "mm hmm");
    let turn = session.finish().await.unwrap();
    assert_eq!(turn, heard_in(plain.start(SttHint::Any), &pcm).await);
    assert_ne!(turn, check);
}

/// A barge-in check in a turn that expects a number reads the words as heard: the second decode
/// with only a number answer's tokens is for the turn's words, and a check's words only say
/// whether the caller takes the floor (forced into a number, "i do" came out "i'm two", and a
/// backchannel could come out a number that takes it).
#[tokio::test]
async fn a_barge_in_check_is_not_read_as_a_number_answer() {
    let models = models_dir();
    let dir = tempfile::tempdir().unwrap();
    let stt = WhisperStt::new(WhisperConfig::new(&models)).expect("whisper loads");
    for (i, voice) in ["espeak:en+f3", "espeak:en-gb+m1"].into_iter().enumerate() {
        let text = "Actually, I already applied.";
        let pcm = first_of_speech(&spoken_in(dir.path(), &format!("n{i}"), voice, text), 400);
        let (told_nothing, _) = checked_over_agent(&stt, &pcm).await;
        assert!(
            receptionist::engine::dialogue::understand::parse_number(&told_nothing).is_none(),
            "{voice}: {told_nothing:?}"
        );
        let (told_a_number, _) = checked_over_agent_told(&stt, SttHint::Number, &pcm).await;
        assert_eq!(told_a_number, told_nothing, "{voice}");
    }
}
