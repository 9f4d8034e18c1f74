//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs`, run with `scripts/fuzz`), here so
//! that a stable test (`tests/fuzz_regressions.rs`) replays the committed corpora and crashes
//! through the same code. Each takes the fuzzer's bytes, must not panic on any of them, and
//! panics when an invariant breaks:
//!
//! - [`twilio_message`]: the Twilio media-stream parser (and the session behind it) on arbitrary
//!   text; what parses writes back and parses again to the same thing.
//! - [`webhook_form`]: the webhook's form parsing and `X-Twilio-Signature` check on arbitrary
//!   bodies, URLs, tokens and headers; a signature made for a form validates (also in any order,
//!   also with the URL's default port added or removed), any other does not.
//! - [`wav_repair`]: [`crate::recording::repair`] on arbitrary files, and on a recording cut at an
//!   arbitrary byte; the result is a valid WAV whose data is the input's, cut to whole frames.
//! - [`engine`]: a [`CallEngine`] fed an arbitrary sequence of inputs in virtual time, with the
//!   ids it hands out; no panic, bounded queues, well-formed outputs, a gapless recording as long
//!   as the call.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};

use crate::engine::audio::{EnergyVad, InboundPipeline, SAMPLES_8K};
use crate::engine::call::{MAX_PENDING_MARKS, MAX_PENDING_SLOTS, MarkId, Pacing, Timing};
use crate::engine::dialogue::model::Understanding;
use crate::engine::media::{
    Carrier, CarrierCodec, Codec, Inbound, MAX_PAYLOAD_BYTES, MediaSession, Msg, decode_payload,
    twilio,
};
use crate::engine::{CallEngine, EngineConfig, Input, Output, ToCaller};
use crate::model::{CallEvent, EndReason};
use crate::server::carriers::twilio as twilio_http;

// ---------------------------------------------------------------------------------------------
// Twilio media streams

/// Parses `data` (as text) as a message from Twilio and from the server, checks that what parses
/// round-trips through the writers, then feeds its lines, one message each, to a Twilio codec and
/// the media session its first `start` opens.
pub fn twilio_message(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    twilio_one(&text);
    let _ = twilio::parse_outbound(&text);

    let mut codec = Codec::new(Carrier::Twilio);
    let mut session: Option<MediaSession> = None;
    for line in text.lines() {
        let msg = Msg::Text(line);
        if let Some(s) = session.as_mut() {
            let result = s.handle_message(msg, |input| match input {
                Input::CallerAudio { mulaw, .. } => {
                    assert!(!mulaw.is_empty() && mulaw.len() <= SAMPLES_8K, "frame size");
                }
                Input::Dtmf(d) => assert!(d.is_ascii_alphanumeric() || d == '*' || d == '#'),
                Input::MarkEchoed(_) | Input::CarrierStop => {}
                other => panic!("the session made {other:?}"),
            });
            let _ = result;
        } else if let Ok(Inbound::Start(start)) = codec.parse(msg) {
            let c = std::mem::replace(&mut codec, Codec::new(Carrier::Twilio));
            session = Some(MediaSession::new(c, &start).expect("Twilio's start is µ-law"));
        }
    }
}

fn twilio_one(text: &str) {
    let Ok(msg) = twilio::parse(text) else {
        return;
    };
    let mut out = String::new();
    match msg {
        twilio::Inbound::Start(info) => {
            twilio::write_start(&info, 1, &mut out);
            match twilio::parse(&out) {
                Ok(twilio::Inbound::Start(again)) => assert_eq!(again, info, "{out}"),
                other => panic!("start did not round-trip: {other:?} from {out}"),
            }
        }
        twilio::Inbound::Media { payload, .. } => {
            let mut audio = Vec::new();
            if decode_payload(payload, &mut audio).is_ok() {
                assert!(audio.len() <= MAX_PAYLOAD_BYTES);
                twilio::write_inbound_media("MZ1", 2, 1, 20, &audio, &mut out);
                let Ok(twilio::Inbound::Media { payload, .. }) = twilio::parse(&out) else {
                    panic!("media did not round-trip: {out}");
                };
                let mut again = Vec::new();
                decode_payload(payload, &mut again).expect("our own base64");
                assert_eq!(again, audio);
            }
        }
        twilio::Inbound::Dtmf { digit, .. } => {
            twilio::write_inbound_dtmf("MZ1", 3, digit, &mut out);
            match twilio::parse(&out) {
                Ok(twilio::Inbound::Dtmf { digit: d, .. }) => assert_eq!(d, digit),
                other => panic!("dtmf did not round-trip: {other:?} from {out}"),
            }
        }
        twilio::Inbound::Mark { name } => {
            twilio::write_inbound_mark("MZ1", 4, name, &mut out);
            match twilio::parse(&out) {
                Ok(twilio::Inbound::Mark { name: n }) => assert_eq!(n, name),
                other => panic!("mark did not round-trip: {other:?} from {out}"),
            }
            // the server's own mark message carries the same name
            out.clear();
            twilio::write_mark("MZ1", name, &mut out);
            assert!(matches!(
                twilio::parse_outbound(&out),
                Ok(twilio::Outbound::Mark { name: n }) if n == name
            ));
        }
        twilio::Inbound::Connected { .. }
        | twilio::Inbound::Stop { .. }
        | twilio::Inbound::Unknown { .. } => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Webhook form and signature

/// What [`webhook_form`] makes of its bytes.
#[derive(Debug, Arbitrary)]
struct WebhookCase<'a> {
    token: &'a str,
    url: &'a str,
    header: &'a [u8],
    body: &'a [u8],
    /// Rotates the pairs before signing again (order must not matter).
    rotate: u8,
}

/// Parses a form body as the webhooks do and checks signatures over it.
pub fn webhook_form(data: &[u8]) {
    let Ok(case) = WebhookCase::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(case.body).into_owned().collect();
    for (k, v) in &params {
        if let Some(got) = crate::server::carriers::form_field(&params, k) {
            assert!(!got.is_empty());
            assert_eq!(got.len(), got.trim().len());
        } else {
            // the first pair with this key is the one read
            let first = params.iter().find(|(key, _)| key == k).map(|(_, v)| v);
            assert!(first.is_some_and(|f| f.trim().is_empty()), "{v:?}");
        }
    }

    let sig = twilio_http::signature(case.token, case.url, &params);
    assert!(twilio_http::validate(case.token, case.url, &params, &sig));
    let mut rotated = params.clone();
    if !rotated.is_empty() {
        let n = case.rotate as usize % rotated.len();
        rotated.rotate_left(n);
    }
    assert!(twilio_http::validate(case.token, case.url, &rotated, &sig));
    // a signature is exactly 28 base64 characters: any change breaks it
    let mut bad = sig.clone().into_bytes();
    let at = case.rotate as usize % bad.len();
    bad[at] ^= 1;
    let bad = String::from_utf8(bad).expect("base64 is ASCII");
    assert!(!twilio_http::validate(case.token, case.url, &params, &bad));
    assert!(!twilio_http::validate(case.token, case.url, &params, ""));

    // the URL with its default port spelled out (or left out) validates too, as Twilio's helpers
    // do; another port does not
    if let Some((scheme @ ("https" | "http"), rest)) = case.url.split_once("://") {
        let port = if scheme == "https" { "443" } else { "80" };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if !authority.contains([':', '@', '[']) && !authority.is_empty() {
            let with_port = format!("{scheme}://{authority}:{port}{path}");
            let other_port = format!("{scheme}://{authority}:8443{path}");
            assert!(twilio_http::validate(case.token, &with_port, &params, &sig));
            assert!(!twilio_http::validate(
                case.token,
                &other_port,
                &params,
                &sig
            ));
            let sig_port = twilio_http::signature(case.token, &with_port, &params);
            assert!(twilio_http::validate(
                case.token, case.url, &params, &sig_port
            ));
        }
    }

    // the header as a carrier sends it, whatever its bytes
    let mut headers = axum::http::HeaderMap::new();
    if let Ok(v) = axum::http::HeaderValue::from_bytes(case.header) {
        headers.insert("x-twilio-signature", v);
    }
    let given = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok());
    let checked = twilio_http::check_hmac_sha1(
        &headers,
        "x-twilio-signature",
        case.token,
        case.url,
        &params,
    );
    match given {
        None => assert!(checked.is_err()),
        Some(g) => assert_eq!(
            checked.is_ok(),
            twilio_http::validate(case.token, case.url, &params, g)
        ),
    }
    headers.insert(
        "x-twilio-signature",
        axum::http::HeaderValue::from_str(&sig).expect("base64 is a header value"),
    );
    assert!(
        twilio_http::check_hmac_sha1(
            &headers,
            "x-twilio-signature",
            case.token,
            case.url,
            &params
        )
        .is_ok()
    );
}

// ---------------------------------------------------------------------------------------------
// WAV repair

const WAV_HEADER: usize = 44;
const WAV_FRAME: usize = 4;

/// A file per thread, in memory where the system has a tmpfs (the repair syncs).
fn scratch_file() -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    dir.join(format!(
        "receptionist-fuzz-{}-{thread}.wav",
        std::process::id()
    ))
}

/// Removes the scratch file when the case is over.
struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// First byte even: `data[1..]` is a file left by a crash. Odd: the rest are chunks written
/// with [`crate::recording::WavWriter`] and a cut point, the file cut there as a crash would.
/// Either way, [`crate::recording::repair`] must leave a valid WAV holding the data before the
/// cut, to the last whole frame, and a second repair must change nothing.
pub fn wav_repair(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let scratch = Scratch(scratch_file());
    let path = &scratch.0;
    let file: Vec<u8> = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        let mut u = Unstructured::new(rest);
        let Ok(chunks) = Vec::<(u8, Vec<i16>)>::arbitrary(&mut u) else {
            return;
        };
        let cut = u.arbitrary::<u16>().unwrap_or(u16::MAX) as usize;
        let mut w = crate::recording::WavWriter::create(path).expect("scratch file");
        let mut scratch_buf = Vec::new();
        let mut expected = Vec::new();
        for (gap, samples) in &chunks {
            let gap = *gap as usize;
            w.append_after_gap(gap, samples, &mut scratch_buf)
                .expect("write");
            expected.extend(std::iter::repeat_n(0u8, gap * 2));
            expected.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
        }
        w.finish().expect("finish");
        let written = std::fs::read(path).expect("read back");
        assert_eq!(written.len(), WAV_HEADER + expected.len());
        assert_eq!(&written[WAV_HEADER..], &expected[..]);
        check_header(&written, expected.len() as u32);
        written[..cut.min(written.len())].to_vec()
    };
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(&file))
        .expect("scratch file");

    let repaired = crate::recording::repair(path);
    let after = std::fs::read(path).expect("read back");
    if file.len() < WAV_HEADER {
        assert_eq!(repaired.expect("a short file is made empty"), 0);
        assert_eq!(after.len(), WAV_HEADER);
        check_header(&after, 0);
        return;
    }
    if &file[..4] != b"RIFF" {
        assert!(repaired.is_err(), "a file that is not RIFF is refused");
        assert_eq!(after, file, "and left alone");
        return;
    }
    let data_len = (file.len() - WAV_HEADER) / WAV_FRAME * WAV_FRAME;
    assert_eq!(repaired.expect("repair") as usize, data_len);
    assert_eq!(after.len(), WAV_HEADER + data_len);
    assert_eq!(
        &after[WAV_HEADER..],
        &file[WAV_HEADER..WAV_HEADER + data_len]
    );
    check_header(&after, data_len as u32);
    assert_eq!(
        crate::recording::repair(path).expect("again") as usize,
        data_len
    );
    assert_eq!(std::fs::read(path).expect("read back"), after, "idempotent");
}

fn check_header(file: &[u8], data_len: u32) {
    let u32_at = |i: usize| u32::from_le_bytes(file[i..i + 4].try_into().expect("4 bytes"));
    let u16_at = |i: usize| u16::from_le_bytes(file[i..i + 2].try_into().expect("2 bytes"));
    assert_eq!(&file[0..4], b"RIFF");
    assert_eq!(u32_at(4), 36 + data_len);
    assert_eq!(&file[8..16], b"WAVEfmt ");
    assert_eq!((u32_at(16), u16_at(20), u16_at(22)), (16, 1, 2));
    assert_eq!(
        (u32_at(24), u32_at(28), u16_at(32), u16_at(34)),
        (8000, 32000, 4, 16)
    );
    assert_eq!(&file[36..40], b"data");
    assert_eq!(u32_at(40), data_len);
}

// ---------------------------------------------------------------------------------------------
// The engine

/// How the call is set up.
#[derive(Debug, Arbitrary)]
pub struct EngineSetup {
    pub returning_caller: bool,
    pub echoes_marks: bool,
    pub language_model: bool,
    pub end_of_turn_model: bool,
    pub barge_in_words: bool,
    pub frame_pacing: bool,
    /// A short call limit (seconds, at least 1) so that the time limit is reached.
    pub max_call_s: Option<u8>,
}

/// Which id an input refers to: one the engine handed out (by position, newest first), or any.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Pick {
    Known(u8),
    Raw(u64),
}

/// Words for the recogniser's and the model's answers: phrases the dialogue reacts to, or any.
#[derive(Debug, Arbitrary)]
pub enum Words {
    Phrase(u8),
    Any(String),
}

const PHRASES: &[&str] = &[
    "",
    "yes",
    "no",
    "uh-huh",
    "my name is Ann Lee",
    "I live in Springfield",
    "five years",
    "12",
    "what is the pay?",
    "no more questions, bye",
    "and um",
    "okay",
    "repeat that please",
    "can I talk to a person",
    "Ann. Lee! In Paris? 3 yes no.",
];

impl Words {
    fn text(&self) -> &str {
        match self {
            Words::Phrase(i) => PHRASES[*i as usize % PHRASES.len()],
            Words::Any(s) => s,
        }
    }
}

/// One thing that happens to the call.
#[derive(Debug, Arbitrary)]
pub enum Action {
    /// Time passes (ms), in 20 ms steps of caller audio when `audio` (loud: speech to the VAD)
    /// and deadlines met on time as they fall.
    Wait {
        ms: u16,
        audio: Option<bool>,
    },
    /// Straight to the engine's next deadline.
    ToDeadline,
    /// Raw caller audio; a timestamp offset from now (ms) if any.
    Audio {
        ts: Option<i32>,
        len: u8,
        level: u8,
    },
    Dtmf(char),
    /// Echo a mark the engine sent (by position, oldest first), or any name.
    EchoMark(u8),
    EchoName(String),
    Transcript(Pick, Words),
    SttFailed(Pick),
    /// Synthesised audio of `frames` 20 ms frames (plus `extra` bytes).
    TtsAudio {
        speech: Pick,
        frames: u8,
        extra: u8,
    },
    TtsFailed(Pick),
    Understood {
        consult: Pick,
        name: Option<Words>,
        location: Option<Words>,
        answers: Vec<(u8, Words)>,
        question: Option<Words>,
        wants_to_end: bool,
    },
    ModelText(Pick, Words),
    ModelDone(Pick),
    ModelFailed(Pick),
    Partial(Pick, Words),
    TurnChecked {
        utterance: Pick,
        complete: Option<bool>,
        text: Option<Words>,
    },
    /// Take the recogniser's queued audio (else it waits, and the oldest is dropped).
    TakeStt,
    CarrierStop,
    Disconnected,
    Abort(u8),
    Drain,
    /// A piece of a streaming synthesiser's audio, any length.
    TtsChunk {
        speech: Pick,
        len: u16,
        last: bool,
    },
    /// The recogniser names the caller's language.
    CallerLanguage(u8),
    /// What the caller's words mean: `text`, and a vector of any length and values.
    CallerMeaning(Words, Vec<i8>),
}

/// A whole call: its setup and what happens.
#[derive(Debug, Arbitrary)]
pub struct EngineCase {
    pub setup: EngineSetup,
    pub actions: Vec<Action>,
}

/// Runs a [`CallEngine`] through an arbitrary [`EngineCase`] and checks its invariants after every
/// input. See [`EngineRun`].
pub fn engine(data: &[u8]) {
    let Ok(case) = EngineCase::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    engine_case(&case);
}

/// [`engine`] on a case already built.
pub fn engine_case(case: &EngineCase) {
    let mut run = EngineRun::new(&case.setup);
    for action in case.actions.iter().take(4_000) {
        if run.ended.is_some() {
            break;
        }
        run.act(action);
    }
    // whatever happened, the call can be ended, and then its recording is as long as the call
    if run.ended.is_none() {
        run.input(Input::CarrierStop);
    }
    run.check_end();
}

/// Longest virtual call time a case may reach (ms): past the default limit and its grace.
const MAX_VIRTUAL_MS: u64 = 2 * 3_600_000;

/// The driver's side of a fuzzed call: the ids the engine handed out, what it sent, and the
/// recording taken so far.
struct EngineRun {
    engine: CallEngine,
    t0: Instant,
    now_ms: u64,
    deadline_ms: u64,
    /// Consecutive inputs at the same time whose next deadline was that time (a busy loop).
    stuck: u32,
    speeches: VecDeque<u64>,
    consults: VecDeque<u64>,
    utterances: VecDeque<u64>,
    marks: VecDeque<MarkId>,
    last_speech: u64,
    last_consult: u64,
    recorded_samples: u64,
    ended: Option<EndReason>,
    events: usize,
    audio_seq: u64,
}

impl EngineRun {
    fn new(setup: &EngineSetup) -> Self {
        let mut timing = Timing::default();
        if setup.frame_pacing {
            timing.pacing = Pacing::Frames;
        }
        if let Some(s) = setup.max_call_s {
            timing.max_call = Duration::from_secs(u64::from(s.max(1)));
        }
        let t0 = Instant::now();
        let engine = CallEngine::with_pipeline(
            t0,
            EngineConfig {
                settings: Arc::new(crate::model::ReceptionistSettings {
                    language_mode: crate::model::LanguageMode::Multilingual,
                    ..super::sample_settings()
                }),
                returning_caller: setup.returning_caller,
                timing,
                echoes_marks: setup.echoes_marks,
                language_model: setup.language_model,
                end_of_turn_model: setup.end_of_turn_model,
                barge_in_words: setup.barge_in_words,
                speaks_languages: setup.language_model,
                // toy meanings, one direction per context sentence (`Action::CallerMeaning`)
                context_meanings: Some(Arc::new({
                    let sentences = crate::engine::dialogue::context::sentences(
                        &super::sample_settings().custom_context,
                    );
                    let n = sentences.len();
                    crate::engine::dialogue::context::ContextMeanings {
                        vectors: (0..n)
                            .map(|i| (0..n).map(|j| f32::from(u8::from(i == j))).collect())
                            .collect(),
                        sentences,
                    }
                })),
            },
            InboundPipeline::new(Box::new(EnergyVad::new(EnergyVad::DEFAULT_THRESHOLD_DBFS))),
        );
        let mut run = Self {
            engine,
            t0,
            now_ms: 0,
            deadline_ms: 0,
            stuck: 0,
            speeches: VecDeque::new(),
            consults: VecDeque::new(),
            utterances: VecDeque::new(),
            marks: VecDeque::new(),
            last_speech: 0,
            last_consult: 0,
            recorded_samples: 0,
            ended: None,
            events: 0,
            audio_seq: 0,
        };
        run.drain();
        run
    }

    fn pick(known: &VecDeque<u64>, p: Pick) -> u64 {
        match p {
            Pick::Known(i) => known
                .iter()
                .rev()
                .nth(i as usize % known.len().max(1))
                .copied()
                .unwrap_or(1),
            Pick::Raw(id) => id,
        }
    }

    fn act(&mut self, action: &Action) {
        match action {
            Action::Wait { ms, audio } => {
                let end = self.now_ms + u64::from(*ms);
                while self.now_ms < end && self.ended.is_none() {
                    let step = match audio {
                        // at most 5 s of audio per action (each frame is an input)
                        Some(_) if self.now_ms + 5_000 < end => {
                            self.now_ms = end - 5_000;
                            20
                        }
                        Some(_) => 20,
                        None => end - self.now_ms,
                    };
                    let to = (self.now_ms + step).min(end);
                    // deadlines on the way are met on time
                    while self.deadline_ms < to && self.ended.is_none() {
                        self.now_ms = self.now_ms.max(self.deadline_ms);
                        self.input(Input::Tick);
                    }
                    self.now_ms = to;
                    if let Some(loud) = audio {
                        let frame = tone(self.audio_seq, *loud);
                        self.audio_seq += 1;
                        self.input(Input::CallerAudio {
                            timestamp_ms: Some(self.now_ms),
                            mulaw: &frame,
                        });
                    } else {
                        self.input(Input::Tick);
                    }
                }
            }
            Action::ToDeadline => {
                if self.deadline_ms < MAX_VIRTUAL_MS {
                    self.now_ms = self.now_ms.max(self.deadline_ms);
                    self.input(Input::Tick);
                }
            }
            Action::Audio { ts, len, level } => {
                let frame: Vec<u8> = (0..*len as usize + 1)
                    .map(|i| level.wrapping_add((i as u8).wrapping_mul(37)))
                    .collect();
                let timestamp_ms = ts.map(|d| self.now_ms.saturating_add_signed(i64::from(d)));
                self.input(Input::CallerAudio {
                    timestamp_ms,
                    mulaw: &frame,
                });
            }
            Action::Dtmf(d) => self.input(Input::Dtmf(*d)),
            Action::EchoMark(i) => {
                if !self.marks.is_empty() {
                    let i = *i as usize % self.marks.len();
                    let id = self.marks.remove(i).expect("in range");
                    self.input(Input::MarkEchoed(&id.to_string()));
                }
            }
            Action::EchoName(name) => self.input(Input::MarkEchoed(name)),
            Action::Transcript(p, w) => {
                let utterance = Self::pick(&self.utterances, *p);
                self.input(Input::Transcript {
                    utterance,
                    text: w.text(),
                });
            }
            Action::SttFailed(p) => {
                let utterance = Self::pick(&self.utterances, *p);
                self.input(Input::SttFailed { utterance });
            }
            Action::TtsAudio {
                speech,
                frames,
                extra,
            } => {
                let speech = Self::pick(&self.speeches, *speech);
                let len = *frames as usize * SAMPLES_8K + *extra as usize % SAMPLES_8K;
                let mulaw: Arc<[u8]> = (0..len).map(|i| (i % 251) as u8).collect();
                self.input(Input::TtsAudio { speech, mulaw });
            }
            Action::TtsFailed(p) => {
                let speech = Self::pick(&self.speeches, *p);
                self.input(Input::TtsFailed { speech });
            }
            Action::CallerMeaning(words, v) => {
                let meaning: Arc<[f32]> = v.iter().map(|x| f32::from(*x) / 64.0).collect();
                self.input(Input::CallerMeaning {
                    text: words.text(),
                    meaning,
                });
            }
            Action::CallerLanguage(n) => {
                let code = ["en", "es", "fr", "", "zz"][*n as usize % 5];
                self.input(Input::CallerLanguage(code));
            }
            Action::TtsChunk { speech, len, last } => {
                let speech = Self::pick(&self.speeches, *speech);
                let mulaw: Arc<[u8]> = (0..*len as usize % 8_000)
                    .map(|i| (i % 251) as u8)
                    .collect();
                self.input(Input::TtsChunk {
                    speech,
                    mulaw,
                    last: *last,
                });
            }
            Action::Understood {
                consult,
                name,
                location,
                answers,
                question,
                wants_to_end,
            } => {
                let consult = Self::pick(&self.consults, *consult);
                let understanding = Understanding {
                    name: name.as_ref().map(|w| w.text().to_owned()),
                    location: location.as_ref().map(|w| w.text().to_owned()),
                    answers: answers
                        .iter()
                        .map(|(q, w)| (*q as usize % 8, w.text().to_owned()))
                        .collect(),
                    caller_question: question.as_ref().map(|w| w.text().to_owned()),
                    wants_to_end: *wants_to_end,
                };
                self.input(Input::Understood {
                    consult,
                    understanding,
                });
            }
            Action::ModelText(p, w) => {
                let consult = Self::pick(&self.consults, *p);
                self.input(Input::ModelText {
                    consult,
                    text: w.text(),
                });
            }
            Action::ModelDone(p) => {
                let consult = Self::pick(&self.consults, *p);
                self.input(Input::ModelDone { consult });
            }
            Action::ModelFailed(p) => {
                let consult = Self::pick(&self.consults, *p);
                self.input(Input::ModelFailed { consult });
            }
            Action::Partial(p, w) => {
                let utterance = Self::pick(&self.utterances, *p);
                self.input(Input::PartialTranscript {
                    utterance,
                    text: w.text(),
                });
            }
            Action::TurnChecked {
                utterance,
                complete,
                text,
            } => {
                let utterance = Self::pick(&self.utterances, *utterance);
                self.input(Input::TurnChecked {
                    utterance,
                    complete: *complete,
                    text: text.as_ref().map(Words::text),
                });
            }
            Action::TakeStt => while self.engine.pop_stt_frame().is_some() {},
            Action::CarrierStop => self.input(Input::CarrierStop),
            Action::Disconnected => self.input(Input::Disconnected),
            Action::Abort(r) => {
                let reasons = [
                    EndReason::ProtocolError,
                    EndReason::BackendFailure,
                    EndReason::ServerShutdown,
                    EndReason::ServerInterrupted,
                ];
                self.input(Input::Abort(reasons[*r as usize % reasons.len()]));
            }
            Action::Drain => self.input(Input::Drain),
        }
    }

    fn input(&mut self, input: Input<'_>) {
        let now = self.t0 + Duration::from_millis(self.now_ms);
        let result = self.engine.handle_input(now, input);
        assert_eq!(
            result.is_err(),
            self.ended.is_some(),
            "inputs are refused exactly after the end"
        );
        if result.is_ok() {
            self.drain();
        }
    }

    /// Takes every output and checks it and the engine's state.
    fn drain(&mut self) {
        loop {
            match self.engine.poll_output() {
                Output::Timeout(at) => {
                    let at = at.saturating_duration_since(self.t0).as_millis() as u64;
                    if self.ended.is_some() {
                        assert!(
                            at >= self.now_ms + 3_600_000,
                            "an ended call has no deadline"
                        );
                    } else if at <= self.now_ms {
                        // due now: the driver ticks at once; that must not go on for ever
                        self.stuck += 1;
                        assert!(self.stuck < 8, "the deadline stays at {at} ms: a busy loop");
                    } else {
                        self.stuck = 0;
                    }
                    self.deadline_ms = at.max(self.now_ms);
                    break;
                }
                out => self.check_output(out),
            }
        }
        let f = self.engine.footprint();
        assert_eq!(f.outputs, 0);
        assert!(f.pending_marks <= MAX_PENDING_MARKS, "{f:?}");
        assert!(f.recording_slots <= MAX_PENDING_SLOTS, "{f:?}");
        assert!(f.recording_spans <= 64, "{f:?}");
        assert!(f.segments <= 64, "{f:?}");
        assert!(self.marks.len() <= 4 * MAX_PENDING_MARKS);
        assert_eq!(self.engine.call_ms(), self.now_ms);
        assert_eq!(self.engine.is_finished(), self.ended.is_some());
        // what has been recorded never runs ahead of the call
        let slots = self.recorded_samples / (2 * SAMPLES_8K as u64);
        assert!(
            slots * 20 <= self.now_ms + 20,
            "{slots} slots recorded at {} ms",
            self.now_ms
        );
    }

    fn check_output(&mut self, out: Output) {
        assert!(self.ended.is_none(), "{out:?} after the end");
        match out {
            Output::ToCaller(ToCaller::Media(audio)) => {
                assert!(!audio.is_empty());
                assert!(audio.len() <= BURST_BYTES, "{} bytes at once", audio.len());
            }
            Output::ToCaller(ToCaller::Mark(id)) => {
                let name = id.to_string();
                assert!(name.len() <= 48 && name.is_ascii());
                assert_eq!(MarkId::parse(&name), Some(id));
                assert!(id.speech <= self.last_speech, "mark of unknown speech");
                self.marks.push_back(id);
                if self.marks.len() > 4 * MAX_PENDING_MARKS {
                    self.marks.pop_front();
                }
            }
            Output::ToCaller(ToCaller::Clear) => {}
            Output::Speak { speech, text } => {
                assert!(speech > self.last_speech, "speech ids increase");
                self.last_speech = speech;
                assert!(!text.trim().is_empty(), "empty speech");
                remember(&mut self.speeches, speech);
            }
            Output::CancelSpeech { speech } => {
                assert!(speech <= self.last_speech, "cancel of unknown speech");
            }
            Output::Consult { consult, .. } => {
                assert!(consult > self.last_consult, "consult ids increase");
                self.last_consult = consult;
                remember(&mut self.consults, consult);
            }
            Output::CancelConsult { consult } => {
                assert!(consult <= self.last_consult);
            }
            Output::SttAudio => {}
            Output::SttFinish { utterance }
            | Output::SttCancel { utterance }
            | Output::SttPartial { utterance }
            | Output::CheckTurn { utterance } => {
                if !self.utterances.contains(&utterance) {
                    remember(&mut self.utterances, utterance);
                }
            }
            Output::Recording => {
                let chunk = self.engine.take_recording();
                assert!(!chunk.is_empty(), "an empty recording chunk");
                assert_eq!(chunk.len() % (2 * SAMPLES_8K), 0, "whole stereo frames");
                self.recorded_samples += chunk.len() as u64;
            }
            Output::Event(e) => {
                self.events += 1;
                check_event(&e);
            }
            Output::Ended(reason) => self.ended = Some(reason),
            Output::Timeout(_) => unreachable!(),
        }
    }

    /// After the end: the recording covers the whole call, to the frame.
    fn check_end(&mut self) {
        assert!(self.ended.is_some(), "the call did not end");
        assert!(self.engine.is_finished());
        let now = self.t0 + Duration::from_millis(self.now_ms);
        assert!(self.engine.handle_input(now, Input::Tick).is_err());
        // the call's length is the engine's: a call past its maximum length ends at that length
        // even when the next input came later (the stored duration is the same figure)
        let call_ms = self.engine.call_ms();
        assert!(call_ms <= self.now_ms, "the call ended in the future");
        let slots = self.recorded_samples / (2 * SAMPLES_8K as u64);
        assert!(
            slots >= call_ms.div_ceil(20) && slots <= call_ms / 20 + 1,
            "{slots} slots recorded for a call of {call_ms} ms"
        );
    }
}

/// The most agent audio sent in one message: the burst lead (5 s) and a mark's worth.
const BURST_BYTES: usize = 6 * 8000;

/// Keeps the newest few ids.
fn remember(ids: &mut VecDeque<u64>, id: u64) {
    ids.push_back(id);
    if ids.len() > 16 {
        ids.pop_front();
    }
}

/// An event must serialise and read back as itself (it is stored as JSON).
fn check_event(e: &CallEvent) {
    let json = serde_json::to_string(e).expect("an event serialises");
    let back: CallEvent = serde_json::from_str(&json).expect("and reads back");
    assert_eq!(&back, e, "{json}");
}

/// A 20 ms µ-law frame: a 440 Hz tone (loud: speech to the VAD) or near silence.
fn tone(n: u64, loud: bool) -> [u8; SAMPLES_8K] {
    let mut f = [0u8; SAMPLES_8K];
    let ampl = if loud { 8000.0 } else { 20.0 };
    for (i, b) in f.iter_mut().enumerate() {
        let t = (n * SAMPLES_8K as u64 + i as u64) as f32 / 8000.0;
        let s = (t * 2.0 * std::f32::consts::PI * 440.0).sin() * ampl;
        *b = crate::engine::audio::g711::ulaw_encode(s as i16);
    }
    f
}
