//! Deterministic, nearly free speech backends for load tests and end-to-end robustness tests.
//! They go through the same traits, sessions and bounded buffers as the real ones.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use super::{
    BackendError, BoxFuture, Speech, SpeechToText, SttHint, SttSession, TextToSpeech,
    UtteranceBuffer,
};

/// The transcripts [`ScriptedStt`] hands out, in order, cycling. Empty (the default): answer
/// what the dialogue expects (see [`ScriptedStt::answer_for`]), so any number of concurrent calls
/// each get a plausible conversation from any caller audio.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScriptedAnswers(pub Vec<String>);

impl<S: Into<String>, const N: usize> From<[S; N]> for ScriptedAnswers {
    fn from(answers: [S; N]) -> Self {
        Self(answers.into_iter().map(Into::into).collect())
    }
}

impl From<Vec<String>> for ScriptedAnswers {
    fn from(answers: Vec<String>) -> Self {
        Self(answers)
    }
}

/// Speech-to-text that returns, for each finished utterance that had any audio, the next answer
/// (cycling through the list; or, with no list, the answer the dialogue expects), and `""` for a
/// session that received no audio.
///
/// The position is shared by every session started from this value (and its clones), so with many
/// concurrent calls each call sees some interleaving of the answers; give each simulated call its
/// own `ScriptedStt` when the order matters.
#[derive(Debug, Clone)]
pub struct ScriptedStt {
    answers: Arc<[String]>,
    next: Arc<AtomicUsize>,
}

impl ScriptedStt {
    pub fn new(answers: ScriptedAnswers) -> Self {
        Self {
            answers: answers.0.into(),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// How many answers have been handed out.
    pub fn answered(&self) -> usize {
        self.next.load(Ordering::Relaxed)
    }
}

impl ScriptedStt {
    /// A plausible caller's answer to what the dialogue expects.
    pub fn answer_for(hint: SttHint) -> &'static str {
        match hint {
            SttHint::Name => "my name is john smith",
            SttHint::Location => "i live in chicago",
            SttHint::YesNo => "yes",
            SttHint::Number => "five",
            SttHint::FreeText => "i worked in a warehouse",
            SttHint::Question | SttHint::Any => "no thank you",
        }
    }
}

impl SpeechToText for ScriptedStt {
    fn start(&self, hint: SttHint) -> Box<dyn SttSession> {
        Box::new(ScriptedSession {
            stt: self.clone(),
            hint,
            buffer: UtteranceBuffer::default(),
        })
    }
}

struct ScriptedSession {
    stt: ScriptedStt,
    hint: SttHint,
    buffer: UtteranceBuffer,
}

impl SttSession for ScriptedSession {
    fn push(&mut self, pcm16k: &[i16]) {
        self.buffer.push(pcm16k);
    }

    fn push_phone(&mut self, mulaw: &[u8]) {
        self.buffer.push_phone(mulaw);
    }

    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<String, BackendError>> {
        let answer = if self.buffer.pushed() == 0 {
            String::new()
        } else if self.stt.answers.is_empty() {
            self.stt.next.fetch_add(1, Ordering::Relaxed);
            Self::answer_of(self.hint)
        } else {
            let i = self.stt.next.fetch_add(1, Ordering::Relaxed);
            self.stt.answers[i % self.stt.answers.len()].clone()
        };
        Box::pin(async move { Ok(answer) })
    }
}

impl ScriptedSession {
    fn answer_of(hint: SttHint) -> String {
        ScriptedStt::answer_for(hint).to_string()
    }
}

/// Milliseconds of scripted speech per character of text.
pub const SCRIPTED_MS_PER_CHAR: u64 = 60;
/// Longest scripted speech.
pub const SCRIPTED_MAX_MS: u64 = 8_000;
const SCRIPTED_RATE: u32 = 8_000;

/// Text-to-speech that returns a speech-shaped tone (a voiced buzz with syllable-rate loudness
/// changes) at 8 kHz lasting 60 ms per character (at most 8 s).
///
/// Every line is the start of one shared waveform ([`unfaded`], computed once), faded in and
/// out at its ends: a line costs a multiplication and a rounding a sample. Computing each line's
/// waveform from its sines cost about 5 ms of the calling thread for an 8 s line (a connection
/// thread, when a call has a line with the caller's name made ahead), about 3 % of the server's
/// CPU at 10 load-test calls (`perf record`, issue 9), and the lines were kept per text.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScriptedTts;

impl ScriptedTts {
    pub fn new() -> Self {
        Self
    }
}

/// The scripted waveform of the longest line before its fade-in and fade-out (8 s, 512 KiB,
/// computed on first use): a 140 Hz buzz with a few harmonics, 4 syllables per second, a little
/// breath noise.
fn unfaded() -> &'static [f64] {
    static WAVE: OnceLock<Box<[f64]>> = OnceLock::new();
    WAVE.get_or_init(|| {
        let n = (SCRIPTED_MAX_MS * u64::from(SCRIPTED_RATE) / 1000) as usize;
        let rate = f64::from(SCRIPTED_RATE);
        let mut noise: u32 = 0x1234_5678;
        (0..n)
            .map(|i| {
                let t = i as f64 / rate;
                let f0 = 140.0 * (1.0 + 0.05 * (2.0 * std::f64::consts::PI * 0.7 * t).sin());
                let phase = 2.0 * std::f64::consts::PI * f0 * t;
                let voiced = phase.sin() + 0.5 * (2.0 * phase).sin() + 0.3 * (3.0 * phase).sin();
                noise ^= noise << 13;
                noise ^= noise >> 17;
                noise ^= noise << 5;
                let breath = (noise as f64 / u32::MAX as f64) * 2.0 - 1.0;
                let syllable = (std::f64::consts::PI * 4.0 * t).sin().abs();
                (0.8 * voiced + 0.1 * breath) * syllable
            })
            .collect()
    })
}

/// The scripted waveform for `text`: the start of [`unfaded`], 20 ms fades at both ends.
fn tone(text: &str) -> Vec<i16> {
    let ms = (text.chars().count() as u64 * SCRIPTED_MS_PER_CHAR).min(SCRIPTED_MAX_MS);
    let n = (ms * u64::from(SCRIPTED_RATE) / 1000) as usize;
    let rate = f64::from(SCRIPTED_RATE);
    let secs = ms as f64 / 1000.0;
    unfaded()[..n]
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let t = i as f64 / rate;
            let fade = (t / 0.02).min(1.0) * ((secs - t) / 0.02).clamp(0.0, 1.0);
            (v * fade * 6_000.0).round().clamp(-32_768.0, 32_767.0) as i16
        })
        .collect()
}

impl TextToSpeech for ScriptedTts {
    fn synthesize(
        &self,
        text: &str,
        _voice: &str,
    ) -> BoxFuture<'static, Result<Speech, BackendError>> {
        let pcm = tone(text);
        Box::pin(async move {
            Ok(Speech {
                pcm,
                sample_rate: SCRIPTED_RATE,
                fallback: false,
            })
        })
    }

    fn voices(&self) -> Vec<String> {
        // The same names as the offline voices, so configurations validate against either.
        ["slt", "kal16", "rms", "awb", "kal"]
            .map(String::from)
            .to_vec()
    }
}
