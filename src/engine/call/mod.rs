//! `CallEngine`: one call as a pure state machine. A thin coordinator (after quinn-proto's
//! `Connection`): it owns the phase of the conversation and small sub-machines, each with the same
//! grammar (`handle_*` with the time, `poll_*` for what follows, `poll_timeout` for its deadline)
//! and each tested alone: the inbound audio pipeline (decode → resample → VAD), turn-taking
//! (`dialogue::turn`: onset, barge-in, endpointing), `playout` (pacing, marks, what was heard),
//! `recording` (the two-channel timeline), `recognizer` (the feed to speech recognition),
//! `keypad`, `latency` and the dialogue. Sub-machines put the effects they produce straight into
//! the coordinator's output queue, so outputs keep the order they had before the split.
//!
//! Grammar (quinn/str0m): `handle_input(now, input)` mutates; then drain `poll_output()` until it
//! returns `Output::Timeout(deadline)`; call `handle_input(now, Input::Tick)` at that deadline.
//! The engine never reads the clock.
//!
//! Time is call time: milliseconds since the engine was created (the carrier's `start`).

pub mod echo;
mod keypad;
mod latency;
mod playout;
mod recognizer;
mod recording;

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::audio::{self, InboundPipeline, SAMPLES_8K};
use crate::engine::dialogue::model::{ModelRequest, SentenceSplitter, Understanding};
use crate::engine::dialogue::turn::{Floor, TurnEvent, TurnTaking, TurnTiming, Utterance, frames};
use crate::engine::dialogue::understand;
use crate::engine::dialogue::{Dialogue, Expect, Next, Prompt, PromptKind, Reply, Step, Turn};
use crate::model::{
    CallEvent, EndReason, LanguageMode, QuestionKind, ReceptionistSettings, Speaker, TranscriptLine,
};

// `call_tests.rs` takes this name from here (it predates the split).
#[cfg(test)]
use crate::model::DisclosureRecord;

use echo::Echo;
use keypad::Keypad;
use latency::Latency;
pub(crate) use playout::MAX_PENDING_MARKS;
use playout::{Playout, Transmit};
use recognizer::{Recognizer, STT_RING_FRAMES};
pub(crate) use recording::MAX_PENDING_SLOTS;
pub use recording::RECORDING_CHUNK_SAMPLES;
use recording::Recording;

const FRAME: u64 = audio::FRAME_MS;

/// Turn-taking and pacing knobs. Durations are rounded to 20 ms frames.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Consecutive speech needed to decide the caller started talking.
    pub speech_onset: Duration,
    /// Speech needed during interruptible agent speech before the agent stops (barge-in).
    pub barge_in: Duration,
    /// When the recogniser can say what was said so far (`EngineConfig::barge_in_words`): the
    /// speech after which it is asked (and again after as much more while the agent talks on),
    /// and the agent stops only for words that are not a backchannel ("uh-huh", "okay") and not
    /// nothing (a cough, noise, or too little speech yet for a word) ...
    pub barge_in_check: Duration,
    /// ... how often it is asked again after that (while the caller talks on) ...
    pub barge_in_check_every: Duration,
    /// ... how long its answer may take (past it the agent stops if the caller is still
    /// talking: a backchannel or a cough is over by then) ...
    pub partial_timeout: Duration,
    /// ... and the speech after which the agent stops whatever the words.
    pub barge_in_sure: Duration,
    /// Utterances shorter than this (clicks, coughs) are discarded.
    pub min_utterance: Duration,
    /// Silence that ends the caller's turn.
    pub endpoint: Duration,
    /// Longer silence allowed when a number or free text is expected (people pause mid-answer).
    pub endpoint_long: Duration,
    /// Longest caller utterance before it is cut and processed.
    pub max_utterance: Duration,
    /// With an end-of-turn model: the pause after which it is asked whether the caller has
    /// finished (a "complete" verdict ends the turn there) ...
    pub turn_check: Duration,
    /// ... and the silences that end the turn when it says they have not, or does not answer
    /// (instead of `endpoint` and `endpoint_long`).
    pub endpoint_fallback: Duration,
    pub endpoint_long_fallback: Duration,
    /// Audio captured before speech onset and sent to STT with the utterance.
    pub pre_roll: Duration,
    /// Silence after the agent finished before a reminder.
    pub silence_reminder: Duration,
    /// Waiting for keypad digits after the last one (numbers; `#` ends at once).
    pub dtmf_gap: Duration,
    /// Speech to text answer deadline after the end of the caller's turn.
    pub stt_timeout: Duration,
    /// Deadline for synthesised audio after it was requested.
    pub tts_timeout: Duration,
    /// Deadline for the language model: its reading of the caller's words, or the next piece of
    /// a streamed answer. Past it the rules take over, so the caller never waits on dead air.
    pub model_timeout: Duration,
    /// How agent audio goes out: in chunks as soon as it is synthesised (the default), or frame
    /// by frame in real time.
    pub pacing: Pacing,
    /// How far ahead of real time agent audio is sent with [`Pacing::Frames`].
    pub pacing_lead: Duration,
    /// A mark after every this many frames (for what-was-heard accounting).
    pub mark_every_frames: u32,
    /// When the carrier does not echo a segment's last mark, assume it played this long after its
    /// estimated end.
    pub mark_grace: Duration,
    /// Maximum call length.
    pub max_call: Duration,
    /// Recording frames are committed this long after their time, so late frames still land.
    pub recording_delay: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            speech_onset: Duration::from_millis(60),
            barge_in: Duration::from_millis(300),
            barge_in_check: Duration::from_millis(200),
            barge_in_check_every: Duration::from_millis(200),
            partial_timeout: Duration::from_millis(700),
            barge_in_sure: Duration::from_millis(800),
            min_utterance: Duration::from_millis(160),
            endpoint: Duration::from_millis(700),
            endpoint_long: Duration::from_millis(1200),
            max_utterance: Duration::from_secs(20),
            turn_check: Duration::from_millis(200),
            endpoint_fallback: Duration::from_millis(1600),
            endpoint_long_fallback: Duration::from_millis(2400),
            pre_roll: Duration::from_millis(200),
            silence_reminder: Duration::from_secs(8),
            dtmf_gap: Duration::from_millis(2500),
            stt_timeout: Duration::from_secs(6),
            tts_timeout: Duration::from_secs(4),
            model_timeout: Duration::from_secs(4),
            pacing: Pacing::Burst,
            pacing_lead: Duration::from_millis(200),
            mark_every_frames: 10,
            mark_grace: Duration::from_millis(1500),
            max_call: Duration::from_secs(900),
            recording_delay: Duration::from_millis(400),
        }
    }
}

/// How agent audio is sent to the carrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// A chunk per mark (`mark_every_frames`, 200 ms) as soon as the audio is synthesised, up to
    /// [`BURST_LEAD`] ahead of what plays. The carrier buffers what it is sent and `clear` empties
    /// that buffer, so barge-in still stops the agent at once; marks still say what was heard. A
    /// speaking agent costs a message per 200 ms and a wake-up per sentence, not one per frame.
    Burst,
    /// One 20 ms frame at a time, `pacing_lead` ahead of real time: for a peer that plays what it
    /// gets as it gets it.
    Frames,
}

/// How far ahead of what plays [`Pacing::Burst`] sends: longer speech goes out a chunk at a time
/// as it plays. Well under Vonage's outbound buffer (3,072 messages, about 60 s).
pub const BURST_LEAD: Duration = Duration::from_secs(5);

/// Whole 20 ms frames of agent µ-law audio: a slice of a synthesised segment, shared, not copied.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentAudio {
    audio: Arc<[u8]>,
    start: usize,
    end: usize,
}

impl AgentAudio {
    /// `audio[range]`; the range is clamped to the audio.
    pub fn new(audio: Arc<[u8]>, range: std::ops::Range<usize>) -> Self {
        let end = range.end.min(audio.len());
        let start = range.start.min(end);
        Self { audio, start, end }
    }

    /// The whole of `audio`.
    pub fn whole(audio: Arc<[u8]>) -> Self {
        let end = audio.len();
        Self {
            audio,
            start: 0,
            end,
        }
    }

    /// The 20 ms frames, the last one possibly short.
    pub fn frames(&self) -> std::slice::Chunks<'_, u8> {
        self.chunks(SAMPLES_8K)
    }

    /// The first `len` bytes.
    fn prefix(&self, len: usize) -> Self {
        Self::new(self.audio.clone(), self.start..self.start + len)
    }

    /// All but the first `skip` bytes.
    fn suffix(&self, skip: usize) -> Self {
        Self::new(self.audio.clone(), self.start + skip..self.end)
    }

    /// `self` then `next`, when `next` follows on in the same audio.
    fn joined(&self, next: &Self) -> Option<Self> {
        (Arc::ptr_eq(&self.audio, &next.audio) && self.end == next.start).then(|| Self {
            audio: self.audio.clone(),
            start: self.start,
            end: next.end,
        })
    }
}

impl std::ops::Deref for AgentAudio {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.audio[self.start..self.end]
    }
}

impl fmt::Debug for AgentAudio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgentAudio({} bytes)", self.len())
    }
}

/// Everything one call needs.
#[derive(Clone)]
pub struct EngineConfig {
    pub settings: Arc<ReceptionistSettings>,
    /// The caller is already a candidate in this workspace.
    pub returning_caller: bool,
    pub timing: Timing,
    /// The carrier echoes marks (`CarrierCodec::echoes_marks`). When false (Vonage) the play-out
    /// clock alone says what was heard and when playback ends; when true a mark echo does, with
    /// a fallback to the clock for a carrier that silently stops echoing.
    pub echoes_marks: bool,
    /// Consult a language model in the dialogue (`Output::Consult`); otherwise the rules alone.
    pub language_model: bool,
    /// Ask an end-of-turn model when the caller pauses (`Output::CheckTurn`); otherwise the
    /// silence windows alone end turns.
    pub end_of_turn_model: bool,
    /// The recogniser answers `Output::SttPartial`: talk over the agent stops it only when its
    /// words are more than a backchannel (or it goes on long enough).
    pub barge_in_words: bool,
    /// The agent can speak other languages than English (a language model translates what it
    /// says, and the synthesiser speaks any language): in multilingual mode it answers a caller
    /// in theirs (`Input::CallerLanguage`).
    pub speaks_languages: bool,
    /// The custom context's sentences by meaning: caller questions are matched to them by
    /// meaning (`Input::CallerMeaning`) before by words.
    pub context_meanings: Option<Arc<crate::engine::dialogue::context::ContextMeanings>>,
}

/// What the agent says, once, to a caller in another language when it can speak only English.
pub const ENGLISH_ONLY: &str =
    "I'm sorry, I can only speak English on this line, so I'll continue in English.";

/// Inputs to the engine.
#[derive(Debug)]
pub enum Input<'a> {
    /// Raw µ-law 8 kHz caller audio. `timestamp_ms`: the carrier's presentation time, if any.
    CallerAudio {
        timestamp_ms: Option<u64>,
        mulaw: &'a [u8],
    },
    /// A keypad digit.
    Dtmf(char),
    /// The recogniser heard the caller speak this language (an ISO 639-1 code), given before the
    /// `Transcript` it was heard in. In multilingual mode the agent answers in it when it can
    /// (`EngineConfig::speaks_languages`), else says once that it goes on in English.
    CallerLanguage(&'a str),
    /// The meaning of the caller's words `text` (a sentence embedding, `backends::meaning`),
    /// given before their `Transcript`: a question in them is answered from the context by
    /// meaning (`EngineConfig::context_meanings`).
    CallerMeaning {
        text: &'a str,
        meaning: Arc<[f32]>,
    },
    /// The carrier echoed a mark the engine sent.
    MarkEchoed(&'a str),
    /// Final transcript of an utterance (possibly empty).
    Transcript {
        utterance: u64,
        text: &'a str,
    },
    SttFailed {
        utterance: u64,
    },
    /// The whole audio of a speech request, µ-law 8 kHz.
    TtsAudio {
        speech: u64,
        mulaw: Arc<[u8]>,
    },
    /// A piece of the audio of a speech request from a streaming synthesiser, µ-law 8 kHz, any
    /// length; `last` ends it. It plays as it comes, so the caller hears the first piece while
    /// the rest is synthesised. A `TtsFailed` after some pieces ends the speech with them.
    TtsChunk {
        speech: u64,
        mulaw: Arc<[u8]>,
        last: bool,
    },
    TtsFailed {
        speech: u64,
    },
    /// The model's reading of the caller's words (`ModelRequest::Understand`).
    Understood {
        consult: u64,
        understanding: Understanding,
    },
    /// More of the model's streamed answer (`ModelRequest::Answer`): any piece of text.
    ModelText {
        consult: u64,
        text: &'a str,
    },
    /// The model's answer is complete.
    ModelDone {
        consult: u64,
    },
    /// The model failed (error, refusal, an answer outside its contract).
    ModelFailed {
        consult: u64,
    },
    /// What the recogniser made of `utterance` so far (`Output::SttPartial`); empty if nothing.
    PartialTranscript {
        utterance: u64,
        text: &'a str,
    },
    /// The verdict on the pause in `utterance` (`Output::CheckTurn`): the end-of-turn model's
    /// (`complete`) and what the recogniser made of the words so far (`text`), either missing
    /// if it did not come in time.
    TurnChecked {
        utterance: u64,
        complete: Option<bool>,
        text: Option<&'a str>,
    },
    /// The carrier said the call ended (`stop`).
    CarrierStop,
    /// The socket closed without `stop`.
    Disconnected,
    /// The driver gives up on the call (protocol violation, shutdown).
    Abort(EndReason),
    /// The server is shutting down and the call's time is up: say a short goodbye and hang up
    /// ([`EndReason::ServerShutdown`]), as at the time limit. A goodbye already under way stands.
    Drain,
    /// A deadline passed.
    Tick,
}

/// A mark's identity; its wire name is `s{speech}f{frames}` or `s{speech}end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkId {
    pub speech: u64,
    /// Frames of the segment sent before this mark.
    pub frames: u32,
    pub last: bool,
}

impl fmt::Display for MarkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.last {
            write!(f, "s{}end{}", self.speech, self.frames)
        } else {
            write!(f, "s{}f{}", self.speech, self.frames)
        }
    }
}

impl MarkId {
    pub fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_prefix('s')?;
        if let Some(pos) = rest.find("end") {
            return Some(Self {
                speech: rest[..pos].parse().ok()?,
                frames: rest[pos + 3..].parse().ok()?,
                last: true,
            });
        }
        let pos = rest.find('f')?;
        Some(Self {
            speech: rest[..pos].parse().ok()?,
            frames: rest[pos + 1..].parse().ok()?,
            last: false,
        })
    }
}

/// Messages for the carrier.
#[derive(Debug, Clone, PartialEq)]
pub enum ToCaller {
    /// Agent µ-law audio: whole 20 ms frames (one with [`Pacing::Frames`], up to a mark's worth
    /// with [`Pacing::Burst`]).
    Media(AgentAudio),
    Mark(MarkId),
    Clear,
}

/// One 20 ms slot of the two-channel recording, in order with no gaps.
#[derive(Debug, Clone, Copy)]
pub struct RecordFrame {
    pub slot: u64,
    pub caller: [i16; SAMPLES_8K],
    pub agent: [i16; SAMPLES_8K],
}

/// Effects for the driver to carry out.
#[derive(Debug)]
pub enum Output {
    ToCaller(ToCaller),
    /// Synthesise `text` and answer with `Input::TtsAudio` or `Input::TtsFailed`.
    Speak {
        speech: u64,
        text: String,
    },
    /// The speech is no longer wanted (barge-in); drop its audio if it arrives.
    CancelSpeech {
        speech: u64,
    },
    /// Ask the language model; answer with `Input::Understood` (for `Understand`), or
    /// `Input::ModelText` pieces and `Input::ModelDone` (for `Answer`), or `Input::ModelFailed`.
    Consult {
        consult: u64,
        request: Box<ModelRequest>,
    },
    /// The consultation is no longer wanted: cancel it; its results are ignored.
    CancelConsult {
        consult: u64,
    },
    /// Caller audio for recognisers is waiting: take it with [`CallEngine::pop_stt_frame`] until
    /// it returns `None` (each frame carries its utterance).
    SttAudio,
    /// The utterance ended: finish recognition, answer with `Input::Transcript` or `SttFailed`.
    SttFinish {
        utterance: u64,
    },
    /// Discard the utterance.
    SttCancel {
        utterance: u64,
    },
    /// The caller is talking over the agent: say what the recogniser makes of `utterance` so far
    /// with `Input::PartialTranscript` (the agent stops anyway if none comes in time).
    SttPartial {
        utterance: u64,
    },
    /// The caller paused in `utterance`: ask the end-of-turn model whether they finished (on the
    /// utterance's audio so far, as given to the recogniser), and the recogniser what they said so
    /// far, and answer with `Input::TurnChecked`. No answer is fine: the fallback silence ends the
    /// turn.
    CheckTurn {
        utterance: u64,
    },
    /// A chunk of the two-channel recording is ready: take it with
    /// [`CallEngine::take_recording`].
    Recording,
    /// Persist this. (Boxed, as a consultation's request: the driver's queue of outputs keeps
    /// its size for the whole call, and these are the large and rare ones: 88 → 48 bytes a slot.)
    Event(Box<CallEvent>),
    /// The call is over: close the carrier socket. Always the last output before `Timeout(far)`.
    Ended(EndReason),
    /// Nothing more until an input or this deadline.
    Timeout(Instant),
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the call has ended")]
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// The agent is speaking the current turn.
    Speaking,
    /// Waiting for the caller. `since_ms` restarts the silence timer.
    Listening { since_ms: u64 },
    /// The caller is talking.
    Capturing,
    /// Waiting for the transcript of the utterance the recogniser awaits.
    Transcribing,
    /// Waiting for the language model (its reading of the caller's words, or the first sentence
    /// of an answer when there was nothing to say before it).
    Thinking,
    /// Saying goodbye; hang up with the reason once it has played.
    Ended,
}

/// Sizes of what a [`CallEngine`] holds between inputs ([`CallEngine::footprint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footprint {
    pub pending_marks: usize,
    /// Speech segments queued or playing.
    pub segments: usize,
    /// Caller recording slots not yet committed.
    pub recording_slots: usize,
    /// Agent audio spans not yet committed to the recording.
    pub recording_spans: usize,
    /// Bytes of caller words carried over from a cancelled consultation.
    pub carried_words: usize,
    /// Outputs not yet polled.
    pub outputs: usize,
}

/// One call.
pub struct CallEngine {
    start: Instant,
    now_ms: u64,
    timing: Timing,
    settings: Arc<ReceptionistSettings>,
    dialogue: Dialogue,
    pipeline: InboundPipeline,
    out: VecDeque<Output>,
    phase: Phase,
    /// What follows the current turn once it has played.
    turn_next: Option<Next>,
    turn_taking: TurnTaking,
    playout: Playout,
    recognizer: Recognizer,
    recording: Recording,
    /// The caller's last frames and when the agent's audio last played: is talk over the agent
    /// its own echo (compared with the agent's audio the recording keeps)?
    echo: Echo,
    /// The utterance whose first audio is to be compared with the agent's (it began while the
    /// agent spoke or just after), and when.
    echo_check: Option<(u64, u64)>,
    keypad: Keypad,
    latency: Latency,
    /// The language model's consultation in progress.
    consult: Option<Consult>,
    consults: u64,
    /// The caller's words from a consultation cancelled because they went on talking: read
    /// again with what they added.
    carried_words: String,
    /// The turn the caller talked over, kept until their words show whether they meant to take
    /// the floor: a backchannel, or nothing at all, and the agent says it again.
    resume: Option<Resume>,
    /// The current turn is still growing (a model's answer streams in): it is not over when what
    /// was queued has played.
    turn_open: bool,
    /// Check the caller's words before a barge-in stops the agent.
    barge_in_words: bool,
    /// Talk over the agent whose words are awaited.
    barge_check: Option<BargeCheck>,
    /// The caller's last turn answered a yes-or-no question: what they say right after it, over
    /// the reply, may be only the rest of that answer.
    answered: Option<Answered>,
    /// Talk over the reply whose words so far only said that answer again: its transcript goes
    /// in the call's, and is not the next answer if it says no more.
    restating: Option<u64>,
    /// See `EngineConfig::speaks_languages`.
    speaks_languages: bool,
    /// The language the agent speaks, when not English.
    language: Option<String>,
    /// Whether the English-only notice is due in the next turn, and whether it was said.
    english_only_due: bool,
    english_only_said: bool,
    time_limit_hit: bool,
    finished: bool,
}

/// Talk over the agent whose words the recogniser was asked for.
#[derive(Debug)]
struct BargeCheck {
    utterance: u64,
    /// Unanswered by then, the agent stops only if the caller is still talking.
    deadline_ms: u64,
    /// More of the talk was heard while its words were awaited (a later step of the check):
    /// ask again when they come back without the floor, rather than wait for the next step.
    again: bool,
}

/// A yes or a no the caller just gave.
#[derive(Debug, Clone, Copy)]
struct Answered {
    yes: bool,
    /// The end of the answer's last speech.
    end_ms: u64,
}

/// Talk that begins this soon after a yes or a no, over the agent's reply to it, and only says
/// the answer again ("Yes, ... I am": a caller who paused at the comma, where a yes ends the
/// turn at once) does not stop the agent: the answer was heard, and the reply is to it.
const RESTATED_WITHIN_MS: u64 = 1500;

/// An utterance that may be the agent's echo is compared with the agent's audio this long after
/// its onset (the onset is 60 ms of speech in, so the window then is mostly the utterance's).
const ECHO_CHECK_AFTER_ONSET_MS: u64 = 100;

/// What the agent was saying when the caller talked over it.
struct Resume {
    /// From the sentence that was cut off.
    prompts: Vec<Prompt>,
    next: Next,
}

/// A consultation of the language model.
struct Consult {
    id: u64,
    /// An answer streaming in (else a reading of the caller's words).
    answer: bool,
    deadline_ms: u64,
    splitter: SentenceSplitter,
}

impl CallEngine {
    pub fn new(now: Instant, config: EngineConfig) -> Self {
        Self::with_pipeline(now, config, InboundPipeline::with_default_vad())
    }

    /// With a given inbound pipeline (tests choose the VAD).
    pub fn with_pipeline(now: Instant, config: EngineConfig, pipeline: InboundPipeline) -> Self {
        let t = &config.timing;
        let turn_timing = TurnTiming {
            onset: frames(t.speech_onset),
            barge_in: frames(if config.barge_in_words {
                t.barge_in_check
            } else {
                t.barge_in
            }),
            barge_in_every: frames(t.barge_in_check_every),
            barge_in_sure: if config.barge_in_words {
                frames(t.barge_in_sure)
            } else {
                0
            },
            // shorter than the duration: round up so that exactly the duration is kept
            min_utterance: (t.min_utterance.as_millis() as u64).div_ceil(FRAME) as u32,
            endpoint: frames(if config.end_of_turn_model {
                t.endpoint_fallback
            } else {
                t.endpoint
            }),
            endpoint_long: frames(if config.end_of_turn_model {
                t.endpoint_long_fallback
            } else {
                t.endpoint_long
            }),
            max_utterance: frames(t.max_utterance),
            pause: if config.end_of_turn_model {
                frames(t.turn_check)
            } else {
                0
            },
            pre_roll: frames(t.pre_roll),
            max_pre_roll: (STT_RING_FRAMES / 2) as u32,
        };
        let mut engine = Self {
            start: now,
            now_ms: 0,
            dialogue: Dialogue::with_model(
                config.settings.clone(),
                config.returning_caller,
                config.language_model,
            )
            .with_meanings(config.context_meanings.clone()),
            settings: config.settings,
            pipeline,
            out: VecDeque::with_capacity(32),
            phase: Phase::Speaking,
            turn_next: None,
            turn_taking: TurnTaking::new(turn_timing),
            playout: Playout::new(t, config.echoes_marks),
            recognizer: Recognizer::new(t.stt_timeout),
            recording: Recording::new(t.recording_delay),
            echo: Echo::new(),
            echo_check: None,
            keypad: Keypad::new(t.dtmf_gap),
            latency: Latency::default(),
            consult: None,
            consults: 0,
            carried_words: String::new(),
            resume: None,
            turn_open: false,
            barge_in_words: config.barge_in_words,
            barge_check: None,
            answered: None,
            restating: None,
            speaks_languages: config.speaks_languages,
            language: None,
            english_only_due: false,
            english_only_said: false,
            time_limit_hit: false,
            finished: false,
            timing: config.timing,
        };
        let turn = engine.dialogue.start();
        engine.play_turn(turn);
        engine
    }

    pub fn settings(&self) -> &ReceptionistSettings {
        &self.settings
    }

    /// Milliseconds since the call started.
    pub fn call_ms(&self) -> u64 {
        self.now_ms
    }

    /// Recording frames that arrived too late to place (diagnostics).
    pub fn late_frames(&self) -> u64 {
        self.recording.late_frames()
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The caller is talking over the agent's interruptible speech, or a check of their words
    /// is pending: whether the agent stops (a barge-in) depends on how soon each frame and each
    /// check's answer is handled, so the driver should not hold them back to batch its wake-ups.
    pub fn caller_over_agent(&self) -> bool {
        matches!(self.phase, Phase::Speaking)
            && (self.turn_taking.over_agent() || self.barge_check.is_some())
    }

    /// When the caller, quiet mid-turn, will have been quiet long enough for the turn's next
    /// decision (the pause that asks the end-of-turn model, or the turn's end) if they stay
    /// quiet: about when the frame that completes it arrives. `None` while no turn is being
    /// captured or the caller is talking. A driver that batches its wake-ups wakes by then, so
    /// that the reply is not held back (`server::threads`).
    pub fn turn_decision_due(&self) -> Option<Instant> {
        let frames = self.turn_taking.frames_to_decision()?;
        let due_ms = self.now_ms + u64::from(frames) * FRAME;
        Some(self.start + Duration::from_millis(due_ms))
    }

    /// What the dialogue is waiting for (a hint for recognisers).
    pub fn expecting(&self) -> Expect {
        self.dialogue.expect()
    }

    /// The next frame of caller audio for a recogniser (after `Output::SttAudio`), oldest first,
    /// with its utterance: µ-law at 8 kHz, as the call carries it (for
    /// [`crate::backends::SttSession::push_phone`]).
    pub fn pop_stt_frame(&mut self) -> Option<(u64, &[u8; SAMPLES_8K])> {
        self.recognizer.poll_frame()
    }

    /// Marks sent and still awaiting the carrier's echo (bounded: see `playout`).
    #[cfg(test)]
    pub(crate) fn pending_marks(&self) -> usize {
        self.playout.pending_marks()
    }

    /// What the engine holds between inputs, for the fuzz harness's memory bounds.
    pub(crate) fn footprint(&self) -> Footprint {
        Footprint {
            pending_marks: self.playout.pending_marks(),
            segments: self.playout.segments(),
            recording_slots: self.recording.pending_slots(),
            recording_spans: self.recording.agent_spans(),
            carried_words: self.carried_words.len(),
            outputs: self.out.len(),
        }
    }

    /// Recogniser audio lost because the driver did not take it in time.
    pub fn dropped_stt_frames(&self) -> u64 {
        self.recognizer.dropped()
    }

    /// The recording samples committed so far (after `Output::Recording`): interleaved
    /// (caller, agent), 8 kHz µ-law (the recorder decodes them as it writes), in order with no
    /// gaps since the previous chunk.
    pub fn take_recording(&mut self) -> Vec<u8> {
        self.recording.take()
    }

    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) -> Result<(), CallError> {
        if self.finished {
            return Err(CallError::Ended);
        }
        self.now_ms = self
            .now_ms
            .max(now.saturating_duration_since(self.start).as_millis() as u64);
        match input {
            Input::CallerAudio {
                timestamp_ms,
                mulaw,
            } => self.on_audio(timestamp_ms, mulaw),
            Input::Dtmf(d) => self.on_dtmf(d),
            Input::CallerLanguage(code) => self.on_caller_language(code),
            Input::CallerMeaning { text, meaning } => {
                self.dialogue.set_question_meaning(text, meaning)
            }
            Input::MarkEchoed(name) => {
                if self.playout.handle_mark(name, &mut self.out) {
                    self.turn_played();
                }
            }
            Input::Transcript { utterance, text } => self.on_transcript(utterance, text),
            Input::SttFailed { utterance } => {
                if self.transcribing(utterance) {
                    self.recognizer.handle_transcript();
                    // what the caller said next may still be understood
                    if !self.caller_goes_on("") {
                        self.stt_failed();
                    }
                }
            }
            Input::TtsAudio { speech, mulaw } => self.playout.handle_tts_audio(speech, mulaw),
            Input::TtsChunk {
                speech,
                mulaw,
                last,
            } => self.playout.handle_tts_chunk(speech, mulaw, last),
            Input::TtsFailed { speech } => self.on_tts_failed(speech),
            Input::Understood {
                consult,
                understanding,
            } => self.on_understood(consult, understanding),
            Input::ModelText { consult, text } => self.on_model_text(consult, text),
            Input::ModelDone { consult } => self.on_model_done(consult),
            Input::ModelFailed { consult } => self.on_model_failed(consult),
            Input::PartialTranscript { utterance, text } => {
                if let Some(check) = self.barge_check.take_if(|c| c.utterance == utterance) {
                    // words that take the floor stop the agent; a backchannel, a cough or noise
                    // (no words) do not
                    let speaking = matches!(self.phase, Phase::Speaking);
                    let floor = speaking && understand::takes_the_floor(text);
                    let restates = speaking && self.restates_answer(text);
                    if restates {
                        self.restating = Some(utterance);
                    }
                    if floor && !restates {
                        self.interrupt_agent(true);
                    } else if speaking
                        && check.again
                        && self.turn_taking.utterance() == Some(utterance)
                    {
                        // the caller went on while these words were decoded: hear what they
                        // have said by now
                        self.ask_barge_in_words(utterance);
                    } else if speaking && text.trim().is_empty() {
                        // no words yet in the first check: ask again before the next step
                        self.turn_taking.check_sooner(utterance);
                    }
                }
            }
            Input::TurnChecked {
                utterance,
                complete,
                text,
            } => {
                // words that lead on ("my name is", "and", "um") are no end, a yes to a yes-or-no
                // question is one; otherwise how it was said decides
                let expect = self.dialogue.expect();
                let done = text
                    .and_then(|t| understand::sounds_finished(t, expect))
                    .or(complete)
                    .unwrap_or(false);
                if done && self.turn_taking.end_now(utterance) {
                    self.on_turn_events(false);
                }
            }
            Input::CarrierStop => self.finish(EndReason::CallerHangup),
            Input::Disconnected => self.finish(EndReason::Disconnected),
            Input::Abort(reason) => self.finish(reason),
            Input::Drain => self.on_drain(),
            Input::Tick => {}
        }
        if !self.finished {
            self.on_time();
        }
        Ok(())
    }

    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.out.pop_front() {
            return o;
        }
        Output::Timeout(self.start + Duration::from_millis(self.next_deadline_ms()))
    }

    // ---- time ------------------------------------------------------------------------------

    fn on_time(&mut self) {
        let now = self.now_ms;
        // maximum call length: say goodbye once; force the end a little later
        if now >= self.timing.max_call.as_millis() as u64 && !self.time_limit_hit {
            self.time_limit_hit = true;
            self.interrupt_agent(false);
            self.cancel_consult();
            self.cancel_capture();
            let t = self.dialogue.on_time_limit();
            self.play_turn(t);
        }
        if now >= self.timing.max_call.as_millis() as u64 + 30_000 {
            self.finish(EndReason::MaxDuration);
            return;
        }
        // synthesis deadline
        if let Some(speech) = self.playout.tts_overdue(now) {
            self.on_tts_failed(speech);
        }
        // the recogniser did not say in time what the caller said over the agent: stop if they
        // are still talking
        if let Some(BargeCheck { utterance, .. }) =
            self.barge_check.take_if(|c| now >= c.deadline_ms)
            && self.turn_taking.utterance() == Some(utterance)
            && self.turn_taking.talking(5)
            && matches!(self.phase, Phase::Speaking)
        {
            self.interrupt_agent(true);
        }
        // the model's deadline
        if let Some(c) = &self.consult
            && now >= c.deadline_ms
        {
            let id = c.id;
            self.on_model_failed(id);
        }
        match self.phase {
            Phase::Listening { since_ms } => {
                if self.keypad.poll_timeout().is_some_and(|d| now >= d) {
                    self.submit_dtmf();
                } else if self.keypad.is_empty()
                    && now >= since_ms + self.timing.silence_reminder.as_millis() as u64
                {
                    let t = self.dialogue.on_silence();
                    self.play_turn(t);
                }
            }
            Phase::Transcribing => {
                if let Some(utterance) = self.recognizer.handle_timeout(now) {
                    self.out.push_back(Output::SttCancel { utterance });
                    if !self.caller_goes_on("") {
                        self.stt_failed();
                    }
                }
            }
            _ => {}
        }
        self.pump_audio();
        if self.playout.handle_time(now, &mut self.out) {
            self.turn_played();
        }
        self.recording.handle_time(now, &mut self.out);
    }

    fn on_drain(&mut self) {
        if matches!(self.phase, Phase::Ended) {
            return;
        }
        self.interrupt_agent(false);
        self.cancel_consult();
        self.cancel_capture();
        let t = self.dialogue.on_drain();
        self.play_turn(t);
    }

    fn next_deadline_ms(&self) -> u64 {
        if self.finished {
            return self.now_ms + 3_600_000;
        }
        let mut d = self.timing.max_call.as_millis() as u64;
        if self.time_limit_hit {
            d += 30_000;
        }
        let mut min = |x: Option<u64>| {
            if let Some(x) = x {
                d = d.min(x.max(self.now_ms));
            }
        };
        min(self.playout.poll_timeout());
        min(self.consult.as_ref().map(|c| c.deadline_ms));
        min(self.barge_check.as_ref().map(|c| c.deadline_ms));
        match self.phase {
            Phase::Listening { since_ms } => match self.keypad.poll_timeout() {
                None => min(Some(
                    since_ms + self.timing.silence_reminder.as_millis() as u64,
                )),
                gap => min(gap),
            },
            Phase::Transcribing => min(self.recognizer.poll_timeout()),
            _ => {}
        }
        min(self.recording.poll_timeout());
        d
    }

    // ---- agent speech ----------------------------------------------------------------------

    fn play_turn(&mut self, turn: Turn) {
        self.cancel_consult();
        self.turn_open = false;
        self.resume = None;
        for e in self.dialogue.take_events() {
            self.out.push_back(Output::Event(Box::new(e)));
        }
        // a new turn replaces anything still queued, and audio the carrier still holds
        if self.playout.sent_ahead(self.now_ms) {
            self.interrupt_agent(false);
        } else {
            self.playout.drop_queued(self.now_ms, &mut self.out);
        }
        if self.english_only_due && !turn.prompts.is_empty() {
            self.english_only_due = false;
            self.queue_prompt(Prompt {
                text: ENGLISH_ONLY.to_string(),
                interruptible: true,
                kind: PromptKind::Say,
            });
        }
        for p in turn.prompts {
            let text = p.text.clone();
            let speech = self.playout.queue(self.now_ms, p);
            self.out.push_back(Output::Speak { speech, text });
        }
        if let Next::HangUp(_) = turn.next {
            self.phase = Phase::Ended;
        } else {
            self.phase = Phase::Speaking;
        }
        self.turn_next = Some(turn.next);
        self.keypad.clear();
        if self.playout.is_empty() {
            self.turn_played();
        }
    }

    fn on_tts_failed(&mut self, speech: u64) {
        // a stream that broke off: what came of it plays, and the turn goes on
        if self.playout.cut_short(speech) {
            return;
        }
        let Some(kind) = self.playout.awaiting_audio(speech) else {
            return;
        };
        // an unspeakable goodbye: end the call (there is nothing else to say it with)
        if matches!(self.phase, Phase::Ended) || kind == PromptKind::Closing {
            let reason = match self.turn_next {
                Some(Next::HangUp(r)) => r,
                _ => EndReason::BackendFailure,
            };
            self.finish(reason);
            return;
        }
        let t = self.dialogue.on_backend_failure();
        self.play_turn(t);
    }

    /// Send the agent audio due by now (see [`Pacing`]).
    fn pump_audio(&mut self) {
        let now = self.now_ms;
        while let Some(t) = self.playout.poll_transmit(now) {
            match t {
                Transmit::Mark(id) => self.out.push_back(Output::ToCaller(ToCaller::Mark(id))),
                Transmit::Media {
                    audio,
                    play_at_ms,
                    first,
                    mark,
                } => {
                    // first audio of the reply: the turn's latency is known
                    if first && let Some(l) = self.latency.handle_reply_audio(now) {
                        self.out
                            .push_back(Output::Event(Box::new(CallEvent::Latency(l))));
                    }
                    self.recording.handle_agent_audio(play_at_ms, &audio);
                    self.out.push_back(Output::ToCaller(ToCaller::Media(audio)));
                    if let Some(id) = mark {
                        self.out.push_back(Output::ToCaller(ToCaller::Mark(id)));
                    }
                }
            }
        }
    }

    /// All of the turn's audio has played.
    fn turn_played(&mut self) {
        if self.turn_open {
            // more of the turn is on its way (a streamed answer): nothing is over yet
            if self.consult.is_some() {
                self.phase = Phase::Thinking;
            }
            return;
        }
        match self.turn_next.take() {
            Some(Next::HangUp(reason)) => self.finish(reason),
            Some(Next::Listen(_)) | None => {
                if self.turn_taking.utterance().is_none() {
                    self.phase = Phase::Listening {
                        since_ms: self.now_ms,
                    };
                } else {
                    self.phase = Phase::Capturing;
                }
            }
        }
    }

    /// Stop the agent: clear the carrier's buffer and cancel what is queued.
    fn interrupt_agent(&mut self, barge_in: bool) {
        // a whole turn the caller talks over is kept, to be said again if they did not mean it
        // (a streamed answer is not: its rest is cancelled)
        self.resume = match self.turn_next {
            Some(next) if barge_in && !self.turn_open => Some(Resume {
                prompts: self.playout.unheard(),
                next,
            })
            .filter(|r| !r.prompts.is_empty()),
            _ => None,
        };
        if self.playout.clear(self.now_ms, &mut self.out) {
            self.recording.erase_agent_from(self.now_ms);
        }
        if self.turn_open {
            // the rest of a streamed answer, and what was to follow it, are not wanted
            self.cancel_consult();
            self.dialogue.answer_abandoned();
            self.turn_open = false;
        }
        self.turn_next = None;
        if barge_in {
            self.phase = Phase::Capturing;
        }
    }

    fn current_interruptible(&self) -> bool {
        !matches!(self.phase, Phase::Ended) && self.playout.interruptible()
    }

    // ---- caller audio ----------------------------------------------------------------------

    fn on_audio(&mut self, timestamp_ms: Option<u64>, mulaw: &[u8]) {
        self.pipeline.push(mulaw);
        // the carrier's timestamp places the first frame of the message
        let mut timestamp_ms = timestamp_ms;
        while let Some(frame) = self.pipeline.pop() {
            self.recording.handle_caller_frame(
                self.now_ms,
                timestamp_ms.take(),
                &frame.mulaw,
                &mut self.out,
            );
            self.on_frame(&frame);
        }
    }

    fn on_frame(&mut self, frame: &audio::InboundFrame) {
        self.echo.push_caller(&frame.mulaw);
        let slot = self.now_ms / FRAME;
        if self.recording.agent_played(slot).is_some() {
            self.echo.agent_plays(slot);
        }
        let capturing = self.turn_taking.utterance();
        // the recogniser keeps a short pre-roll outside utterances
        self.recognizer
            .handle_frame(&frame.mulaw, capturing.unwrap_or(0), &mut self.out);
        let speaking = matches!(self.phase, Phase::Speaking);
        let listening = matches!(self.phase, Phase::Listening { .. });
        let floor = Floor {
            // while the last words are recognised the caller still has the floor: if they go
            // on, that is heard too (and the reply waits for it)
            listening: listening || matches!(self.phase, Phase::Transcribing),
            agent_speaking: speaking,
            agent_interruptible: speaking && self.current_interruptible(),
            long_pause: capturing.is_some()
                && matches!(
                    self.dialogue.expect(),
                    Expect::Answer(QuestionKind::Number)
                        | Expect::Answer(QuestionKind::FreeText)
                        | Expect::CallerQuestion
                ),
        };
        self.turn_taking
            .handle_frame(self.now_ms, frame.speech, floor);
        self.on_turn_events(listening);
        if let Some((utterance, at)) = self.echo_check
            && at <= self.now_ms
        {
            self.echo_check = None;
            if self.turn_taking.utterance() == Some(utterance) && self.hears_echo() {
                self.drop_echo(utterance);
            }
        }
    }

    /// Whether talk heard now may be the agent's echo and is: the agent's audio played lately
    /// and the caller's last frames correlate with it.
    fn hears_echo(&self) -> bool {
        let now = self.now_ms / FRAME;
        self.echo.agent_recent(now) && self.echo.is_echo(now, |s| self.recording.agent_played(s))
    }

    /// `utterance` was the agent's own echo: no turn, no barge-in, and a new one needs a whole
    /// onset again.
    fn drop_echo(&mut self, utterance: u64) {
        self.turn_taking.cancel_as_noise();
        if self
            .barge_check
            .as_ref()
            .is_some_and(|c| c.utterance == utterance)
        {
            self.barge_check = None;
        }
        self.discard_utterance(utterance);
    }

    /// What turn-taking decided; `listening`: the agent was waiting for the caller.
    fn on_turn_events(&mut self, listening: bool) {
        while let Some(event) = self.turn_taking.poll_event() {
            match event {
                TurnEvent::Onset {
                    utterance,
                    pre_roll,
                } => {
                    self.recognizer
                        .handle_onset(pre_roll, utterance, &mut self.out);
                    if listening {
                        self.phase = Phase::Capturing;
                    }
                    // talk that begins while the agent's audio may still come back is compared
                    // with it once a window of it is heard
                    if self.echo.agent_recent(self.now_ms / FRAME) {
                        self.echo_check =
                            Some((utterance, self.now_ms + ECHO_CHECK_AFTER_ONSET_MS));
                    }
                }
                TurnEvent::BargeIn { utterance, sure } => {
                    if self.hears_echo() {
                        self.drop_echo(utterance);
                    } else if sure || !self.barge_in_words {
                        self.barge_check = None;
                        self.interrupt_agent(true);
                    } else if let Some(check) = &mut self.barge_check {
                        check.again = true;
                    } else {
                        self.ask_barge_in_words(utterance);
                    }
                }
                TurnEvent::Discarded { utterance } => self.discard_utterance(utterance),
                TurnEvent::Ended(u) => self.end_utterance(u),
                TurnEvent::Paused { utterance } => {
                    // the caller has the floor (not talk over the agent, nor over an answer
                    // being prepared): is this the end of their turn?
                    if matches!(self.phase, Phase::Capturing) {
                        self.out.push_back(Output::CheckTurn { utterance });
                    }
                }
            }
        }
    }

    /// Words said over the agent, in talk that began right after the caller's yes or no, only
    /// say it again.
    fn restates_answer(&self, text: &str) -> bool {
        self.answered.is_some_and(|a| {
            self.turn_taking
                .started_ms()
                .is_some_and(|start| start <= a.end_ms + RESTATED_WITHIN_MS)
                && understand::restates_yes_no(a.yes, text)
        })
    }

    /// Ask the recogniser what the caller has said over the agent so far.
    fn ask_barge_in_words(&mut self, utterance: u64) {
        self.barge_check = Some(BargeCheck {
            utterance,
            deadline_ms: self.now_ms + self.timing.partial_timeout.as_millis() as u64,
            again: false,
        });
        self.out.push_back(Output::SttPartial { utterance });
    }

    fn cancel_capture(&mut self) {
        if let Some(utterance) = self.turn_taking.cancel() {
            self.out.push_back(Output::SttCancel { utterance });
        }
    }

    /// A click, a cough, or talk over the agent that never became a barge-in.
    fn discard_utterance(&mut self, utterance: u64) {
        self.out.push_back(Output::SttCancel { utterance });
        if let Some(r) = self.resume.take() {
            // the agent was stopped by a sound that was no turn: it goes on
            self.latency.discard();
            self.play_turn(Turn {
                prompts: r.prompts,
                next: r.next,
            });
            return;
        }
        if matches!(self.phase, Phase::Capturing) {
            // what the caller went on with was no words: what they said before is answered
            if !self.answer_carried() {
                self.phase = Phase::Listening {
                    since_ms: self.now_ms,
                };
            }
        }
    }

    fn end_utterance(&mut self, u: Utterance) {
        if matches!(self.phase, Phase::Speaking) {
            self.discard_utterance(u.id);
            return;
        }
        if matches!(self.phase, Phase::Thinking) {
            if self.turn_open {
                // a new question before the answer to the last one started: that answer is
                // not wanted any more
                self.cancel_consult();
                self.dialogue.answer_abandoned();
                self.turn_open = false;
            } else if self.consult.is_some() {
                // the caller went on before the model answered: read it all again, together
                self.cancel_consult();
                self.carried_words = self.dialogue.take_utterance();
            }
        }
        self.out.push_back(Output::SttFinish { utterance: u.id });
        self.latency.handle_endpoint(u.last_speech_ms, self.now_ms);
        if !matches!(self.phase, Phase::Transcribing) {
            // transcripts the call moved on without are not waited for
            self.recognizer.forget_awaited();
        }
        // (else the caller went on while their last words were recognised: this is awaited
        // after them, and answered together with them)
        self.recognizer
            .handle_end(self.now_ms, u.id, (u.start_ms, u.last_speech_ms + FRAME));
        self.phase = Phase::Transcribing;
    }

    /// The caller goes on talking (an utterance being captured, or one ended and awaiting its
    /// transcript) after the one whose transcript, or failure, just came: the reply waits for
    /// the rest. Whether it does; `words` are carried to be read with what follows.
    fn caller_goes_on(&mut self, words: &str) -> bool {
        let capturing = self.turn_taking.utterance().is_some();
        if !capturing && self.recognizer.awaiting().is_none() {
            return false;
        }
        self.carry(words);
        // what the caller says next makes the turn's latency
        self.latency.discard();
        if capturing && self.recognizer.awaiting().is_none() {
            self.phase = Phase::Capturing;
        }
        true
    }

    /// The recogniser's answer for `utterance` is the one awaited.
    fn transcribing(&self, utterance: u64) -> bool {
        matches!(self.phase, Phase::Transcribing) && self.recognizer.awaiting() == Some(utterance)
    }

    /// No words came for the caller's turn: words carried from before it are answered, or the
    /// caller hears an apology.
    fn stt_failed(&mut self) {
        if !self.answer_carried() {
            let t = self.dialogue.on_backend_failure();
            self.play_turn(t);
        }
    }

    /// Keep `words` to be read with what the caller says next.
    fn carry(&mut self, words: &str) {
        if words.is_empty() {
            return;
        }
        if !self.carried_words.is_empty() {
            self.carried_words.push(' ');
        }
        self.carried_words.push_str(words);
    }

    /// Answer the words carried from before the caller went on, if any; whether there were.
    fn answer_carried(&mut self) -> bool {
        if self.carried_words.is_empty() {
            return false;
        }
        let carried = std::mem::take(&mut self.carried_words);
        let step = self.dialogue.on_speech(&carried);
        self.take_step(step);
        true
    }

    fn on_transcript(&mut self, utterance: u64, text: &str) {
        if !self.transcribing(utterance) {
            return;
        }
        self.latency.handle_transcript(self.now_ms);
        let (start_ms, end_ms) = self
            .recognizer
            .handle_transcript()
            .unwrap_or((self.now_ms, self.now_ms));
        let mut text = text.trim();
        // the rest of a yes or a no, said over the reply to it: heard, and no new answer
        if self.restating.take_if(|u| *u == utterance).is_some()
            && self
                .answered
                .is_some_and(|a| understand::restates_yes_no(a.yes, text))
        {
            self.caller_line(text, start_ms, end_ms);
            text = "";
        }
        if self.resume.is_none() && self.caller_goes_on(text) {
            if !text.is_empty() {
                self.caller_line(text, start_ms, end_ms);
            }
            return;
        }
        if let Some(r) = self.resume.take() {
            // what was cut off was the turn's question: "yeah" or "okay" may answer it
            let cut_question = r.prompts.len() == 1 && matches!(r.next, Next::Listen(_));
            if understand::is_backchannel(text, !cut_question) || text.is_empty() {
                // the caller did not mean to take the floor: the agent says it again
                if !text.is_empty() {
                    self.caller_line(text, start_ms, end_ms);
                }
                self.latency.discard();
                self.play_turn(Turn {
                    prompts: r.prompts,
                    next: r.next,
                });
                return;
            }
        }
        if text.is_empty() {
            // a sound with no words: keep listening (the silence timer restarts)
            self.latency.discard();
            // words from before still wait for an answer
            if !self.answer_carried() {
                self.phase = Phase::Listening {
                    since_ms: self.now_ms,
                };
            }
            return;
        }
        self.caller_line(text, start_ms, end_ms);
        // with any words carried from before
        self.carry(text);
        self.answered = match self.dialogue.expect() {
            Expect::Answer(QuestionKind::YesNo) => {
                understand::parse_yes_no(&self.carried_words).map(|yes| Answered { yes, end_ms })
            }
            _ => None,
        };
        self.answer_carried();
    }

    /// What the caller said, for the transcript.
    fn caller_line(&mut self, text: &str, start_ms: u64, end_ms: u64) {
        self.out
            .push_back(Output::Event(Box::new(CallEvent::Transcript(
                TranscriptLine {
                    speaker: Speaker::Caller,
                    text: text.to_string(),
                    start_ms,
                    end_ms,
                    interrupted: false,
                    dtmf: false,
                },
            ))));
    }

    // ---- the language model ----------------------------------------------------------------

    fn take_step(&mut self, step: Step) {
        match step {
            Step::Turn(t) => self.play_turn(t),
            Step::Consult(request) => {
                for e in self.dialogue.take_events() {
                    self.out.push_back(Output::Event(Box::new(e)));
                }
                self.start_consult(request, false);
                self.phase = Phase::Thinking;
            }
            Step::Answer { before, request } => {
                self.play_turn(Turn {
                    prompts: before,
                    next: Next::Listen(Expect::CallerQuestion),
                });
                self.turn_next = None;
                self.turn_open = true;
                self.start_consult(request, true);
                if self.playout.is_empty() {
                    self.phase = Phase::Thinking;
                }
            }
        }
    }

    fn start_consult(&mut self, request: ModelRequest, answer: bool) {
        self.cancel_consult();
        self.consults += 1;
        let id = self.consults;
        self.consult = Some(Consult {
            id,
            answer,
            deadline_ms: self.now_ms + self.timing.model_timeout.as_millis() as u64,
            splitter: SentenceSplitter::default(),
        });
        self.out.push_back(Output::Consult {
            consult: id,
            request: Box::new(request),
        });
    }

    fn cancel_consult(&mut self) {
        if let Some(c) = self.consult.take() {
            self.out.push_back(Output::CancelConsult { consult: c.id });
        }
    }

    /// The consultation `id` is the one in progress, of the given kind.
    fn consulting(&self, id: u64, answer: bool) -> bool {
        self.consult
            .as_ref()
            .is_some_and(|c| c.id == id && c.answer == answer)
    }

    fn on_understood(&mut self, id: u64, understanding: Understanding) {
        if !self.consulting(id, false) || !matches!(self.phase, Phase::Thinking) {
            return;
        }
        self.consult = None;
        self.latency.handle_model_result(self.now_ms, true);
        let step = self.dialogue.on_understood(understanding);
        self.take_step(step);
    }

    fn on_model_text(&mut self, id: u64, text: &str) {
        if !self.consulting(id, true) {
            return;
        }
        self.latency.handle_model_result(self.now_ms, false);
        let deadline = self.now_ms + self.timing.model_timeout.as_millis() as u64;
        let sentences = match self.consult.as_mut() {
            Some(c) => {
                c.deadline_ms = deadline;
                c.splitter.push(text)
            }
            None => return,
        };
        for s in sentences {
            if self.answer_sentence(&s) {
                self.cancel_consult();
                self.close_answer(false);
                return;
            }
        }
    }

    fn on_model_done(&mut self, id: u64) {
        if !self.consulting(id, true) {
            return;
        }
        self.latency.handle_model_result(self.now_ms, true);
        let rest = self.consult.take().and_then(|mut c| c.splitter.finish());
        if let Some(s) = rest {
            self.answer_sentence(&s);
        }
        self.close_answer(false);
    }

    fn on_model_failed(&mut self, id: u64) {
        let Some(c) = self.consult.as_ref().filter(|c| c.id == id) else {
            return;
        };
        let answer = c.answer;
        self.cancel_consult();
        if answer {
            self.close_answer(true);
        } else if matches!(self.phase, Phase::Thinking) {
            let t = self.dialogue.on_model_failed();
            self.play_turn(t);
        }
    }

    /// Say a sentence of the model's answer, if the dialogue trusts it; whether the answer is over.
    fn answer_sentence(&mut self, sentence: &str) -> bool {
        let (prompt, stop) = self.dialogue.answer_sentence(sentence);
        if let Some(p) = prompt {
            self.queue_prompt(p);
        }
        stop
    }

    /// The caller speaks `code`: in multilingual mode, answer in it (when the agent can) or say
    /// once that the call goes on in English. Each change is a `CallEvent::Language`.
    fn on_caller_language(&mut self, code: &str) {
        if self.settings.language_mode != LanguageMode::Multilingual
            || self.language.as_deref().unwrap_or("en") == code
            || code.is_empty()
        {
            return;
        }
        if code == "en" || self.speaks_languages {
            self.language = (code != "en").then(|| code.to_string());
            self.out
                .push_back(Output::Event(Box::new(CallEvent::Language {
                    language: code.to_string(),
                    answered_in: true,
                })));
        } else if !self.english_only_said {
            self.english_only_said = true;
            self.english_only_due = true;
            self.out
                .push_back(Output::Event(Box::new(CallEvent::Language {
                    language: code.to_string(),
                    answered_in: false,
                })));
        }
    }

    /// Add a prompt to the turn being spoken.
    fn queue_prompt(&mut self, p: Prompt) {
        let text = p.text.clone();
        let speech = self.playout.queue(self.now_ms, p);
        self.out.push_back(Output::Speak { speech, text });
        if matches!(self.phase, Phase::Thinking) {
            self.phase = Phase::Speaking;
        }
    }

    /// The model's answer is over: what follows it closes the turn.
    fn close_answer(&mut self, failed: bool) {
        if !self.turn_open {
            return;
        }
        let t = if failed {
            self.dialogue.answer_failed()
        } else {
            self.dialogue.answer_done()
        };
        self.turn_open = false;
        for e in self.dialogue.take_events() {
            self.out.push_back(Output::Event(Box::new(e)));
        }
        for p in t.prompts {
            self.queue_prompt(p);
        }
        self.phase = match t.next {
            Next::HangUp(_) => Phase::Ended,
            Next::Listen(_) => Phase::Speaking,
        };
        self.turn_next = Some(t.next);
        if self.playout.is_empty() {
            self.turn_played();
        }
    }

    // ---- keypad ----------------------------------------------------------------------------

    fn on_dtmf(&mut self, digit: char) {
        if !Keypad::is_key(digit) {
            return;
        }
        let expect = self.dialogue.expect();
        let accepting = match self.phase {
            Phase::Listening { .. } | Phase::Capturing => true,
            Phase::Speaking => self.current_interruptible(),
            _ => false,
        };
        if !accepting
            || !matches!(
                expect,
                Expect::Answer(QuestionKind::YesNo | QuestionKind::Number)
            )
        {
            return;
        }
        if matches!(self.phase, Phase::Speaking) {
            self.interrupt_agent(false);
        }
        self.cancel_capture();
        self.keypad.handle_digit(self.now_ms, digit);
        self.phase = Phase::Listening {
            since_ms: self.now_ms,
        };
        if matches!(expect, Expect::Answer(QuestionKind::YesNo)) || digit == '#' {
            self.submit_dtmf();
        }
    }

    fn submit_dtmf(&mut self) {
        let Some((digits, last_ms)) = self.keypad.take() else {
            return;
        };
        self.out
            .push_back(Output::Event(Box::new(CallEvent::Transcript(
                TranscriptLine {
                    speaker: Speaker::Caller,
                    text: digits.clone(),
                    start_ms: last_ms,
                    end_ms: last_ms,
                    interrupted: false,
                    dtmf: true,
                },
            ))));
        self.latency.handle_keypad(self.now_ms);
        let t = self.dialogue.on_reply(Reply::Keypad(&digits));
        self.play_turn(t);
    }

    // ---- the end ---------------------------------------------------------------------------

    fn finish(&mut self, reason: EndReason) {
        if self.finished {
            return;
        }
        // what the caller heard of an unfinished segment
        self.playout.finish(self.now_ms, &mut self.out);
        self.cancel_capture();
        self.cancel_consult();
        for e in self.dialogue.take_events() {
            self.out.push_back(Output::Event(Box::new(e)));
        }
        // flush the recording up to now (the caller hung up: agent audio after now never played)
        self.recording.finish(self.now_ms, &mut self.out);
        self.out.push_back(Output::Ended(reason));
        self.phase = Phase::Ended;
        self.finished = true;
    }
}

#[cfg(test)]
mod clock_tests;
#[cfg(test)]
#[path = "../call_tests.rs"]
mod tests;
