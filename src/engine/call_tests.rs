//! Whole scripted calls in virtual time: no sockets, no sleeps. The engine talks to the fake
//! carrier (`testing::FakeCarrier`, Twilio unless a test picks another carrier and codec)
//! through the media session, as the driver does: the carrier plays the agent's audio on its own
//! clock and echoes marks with its own semantics; a simulated caller speaks (a loud tone the
//! energy VAD hears) when the agent has finished; a simulated recogniser answers each utterance
//! from a script.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::engine::audio::{EnergyVad, InboundPipeline, g711};
use crate::engine::dialogue::context::ContextMeanings;
use crate::engine::dialogue::model::{
    AnswerRequest, ModelRequest, UnderstandRequest, Understanding,
};
use crate::engine::media::{AudioCodec, Carrier, CarrierCodec, Inbound, MediaSession, Msg};
use crate::model::{AnswerValue, DisclosureKind, ReceptionistSettings};
use crate::testing::{CallInfo, FakeCarrier, carrier};

pub(crate) fn settings() -> ReceptionistSettings {
    crate::testing::sample_settings()
}

/// What the caller does next.
#[derive(Debug, Clone)]
enum Act {
    /// Wait until the agent has been silent for a while, then speak for `ms`; the recogniser
    /// returns `text` for it (`None`: recogniser fails).
    Say { ms: u64, text: Option<&'static str> },
    /// Speak `ms` after the agent starts speaking its next utterance (a barge-in attempt).
    SayOver {
        after_ms: u64,
        ms: u64,
        text: &'static str,
    },
    /// After `pause_ms` of silence since the caller stopped, go on talking for `ms` (the same
    /// turn: a pause in the middle of an answer).
    GoOn { pause_ms: u64, ms: u64 },
    /// The same, recognised as `text` (a second utterance, when the pause ended the first).
    GoOnSaying {
        pause_ms: u64,
        ms: u64,
        text: &'static str,
    },
    /// Press a key once the agent is silent.
    Key(char),
    /// Hang up after `ms` more.
    HangUp { after_ms: u64 },
}

struct Sim {
    engine: CallEngine,
    t0: Instant,
    now_ms: u64,
    // the carrier, and the server's side of its media stream
    carrier: FakeCarrier,
    session: MediaSession,
    // what happened
    events: Vec<CallEvent>,
    record: Vec<RecordFrame>,
    /// Agent frames sent.
    sent_media: usize,
    clears: usize,
    speaks: Vec<(u64, String)>,
    cancelled: Vec<u64>,
    ended: Option<EndReason>,
    // caller
    script: VecDeque<Act>,
    speaking_until: Option<u64>,
    agent_last_audio_ms: u64,
    /// Transcripts on their way: (due at, utterance, text).
    stt_pending: VecDeque<(u64, u64, Option<&'static str>)>,
    /// How long the recogniser takes after an utterance ends.
    stt_delay_ms: u64,
    current_utterance_text: Option<Option<&'static str>>,
    utterance_texts: std::collections::HashMap<u64, Option<&'static str>>,
    tts_fail: Vec<String>,
    stt_silent: bool,
    outputs_seen: usize,
    hangup_at: Option<u64>,
    /// The agent played audio since the caller last spoke (the caller waits for a reply).
    agent_replied: bool,
    /// The carrier's mark echoes never reach the engine.
    drop_echoes: bool,
    /// The agent's audio comes back on the caller's line this many ms after it played, at this
    /// gain (a line's hybrid, a speakerphone).
    line_echo: Option<(u64, f32)>,
    /// The agent's frames as the carrier plays them, with when (for `line_echo`); a clear
    /// drops what had not played.
    played: VecDeque<(u64, [u8; 160])>,
    marks_sent: usize,
    /// When the caller last stopped talking.
    caller_done_ms: u64,
    /// The language model, when the call consults one.
    model: Option<ScriptedModel>,
    /// The model's replies on their way: (due at, consultation, reply).
    model_due: VecDeque<(u64, u64, ModelReply)>,
    consulted: Vec<ModelRequest>,
    consults_cancelled: Vec<u64>,
    /// The end-of-turn model's verdicts, in order (`None`: no model); it answers 40 ms after it
    /// is asked, "complete" once the scripted ones run out.
    turn_verdicts: Option<VecDeque<bool>>,
    turn_due: VecDeque<(u64, u64, bool, Option<&'static str>)>,
    /// (when, utterance) of each end-of-turn question.
    turn_checks: Vec<(u64, u64)>,
    /// What the caller's last utterance is recognised as (kept for `GoOn`).
    last_text: Option<Option<&'static str>>,
    /// The recogniser's partial results: after this long (`None`: it has none).
    partial_ms: Option<u64>,
    partial_due: VecDeque<(u64, u64, &'static str)>,
    /// (when, utterance) of each partial result asked for.
    partials_asked: Vec<(u64, u64)>,
    /// Partial results before this many were asked hold no words (a recogniser that needs
    /// more of the utterance).
    partial_words_from: usize,
    /// When each `clear` went out, and when the caller started each talk over the agent.
    clear_times: Vec<u64>,
    talk_over_at: Vec<u64>,
    /// The frames after which the engine said the caller talks over the agent.
    over_agent_at: Vec<u64>,
    /// A streaming synthesiser: (bytes per piece, ms between pieces); `None`: whole audio at once.
    tts_stream: Option<(usize, u64)>,
    /// Texts whose stream breaks off after its first piece.
    tts_break: Vec<String>,
    /// The recogniser names this language with every transcript.
    caller_language: Option<&'static str>,
    /// The meanings transcripts come with.
    meaning_of: MeaningOf,
    /// Pieces on their way.
    tts_due: Vec<DuePiece>,
    /// (speech, agent frames sent by then) when each speech's last piece came.
    tts_ended: Vec<(u64, usize)>,
}

/// What each of the recogniser's transcripts means.
type MeaningOf = Vec<(&'static str, Vec<f32>)>;

/// A synthesiser's piece on its way: (due at, speech, audio, last); `None` audio: the stream
/// fails.
type DuePiece = (u64, u64, Option<Arc<[u8]>>, bool);

/// What a simulated call has beyond the carrier and the caller.
#[derive(Default)]
struct Extras {
    model: Option<ScriptedModel>,
    turn_verdicts: Option<VecDeque<bool>>,
    partial_ms: Option<u64>,
    tts_stream: Option<(usize, u64)>,
    /// The recogniser names this language with every transcript.
    caller_language: Option<&'static str>,
    speaks_languages: bool,
    /// The context by meaning, and the meanings the recogniser's words come with.
    meanings: Option<(Arc<ContextMeanings>, MeaningOf)>,
    /// The carrier's stream began this long before the call's clock: its timestamps run ahead.
    carrier_ahead_ms: u64,
}

/// What the scripted model does with a reading request.
enum ModelAct {
    Read(Understanding),
    Fail,
    /// Never answers.
    Silent,
}

type UnderstandFn = Box<dyn Fn(&UnderstandRequest) -> ModelAct>;
/// An answer's pieces, and whether the stream then ends (else it stalls).
type AnswerFn = Box<dyn Fn(&AnswerRequest) -> (Vec<&'static str>, bool)>;

/// A language model scripted by the test; it answers 200 ms after it is asked, a streamed
/// answer's pieces 20 ms apart.
struct ScriptedModel {
    understand: UnderstandFn,
    answer: AnswerFn,
}

enum ModelReply {
    Understood(Understanding),
    Failed,
    Text(&'static str),
    Done,
}

/// A message the fake carrier wrote, on its way to the engine.
enum Wire {
    Text(String),
    Binary(Vec<u8>),
}

/// Takes what the fake carrier wrote.
fn take_out(carrier: &mut FakeCarrier) -> Vec<Wire> {
    let msgs = carrier
        .out()
        .iter()
        .map(|m| match m {
            Msg::Text(t) => Wire::Text(t.to_owned()),
            Msg::Binary(b) => Wire::Binary(b.to_vec()),
        })
        .collect();
    carrier.clear_out();
    msgs
}

const TONE_AMPL: f32 = 8000.0;

fn tone_frame(n: u64) -> [u8; 160] {
    let mut f = [0u8; 160];
    for (i, b) in f.iter_mut().enumerate() {
        let t = (n * 160 + i as u64) as f32 / 8000.0;
        let s = (t * 2.0 * std::f32::consts::PI * 440.0).sin() * TONE_AMPL;
        *b = g711::ulaw_encode(s as i16);
    }
    f
}

impl Sim {
    fn new(settings: ReceptionistSettings, returning: bool, script: Vec<Act>) -> Self {
        Self::with_timing(settings, returning, script, Timing::default())
    }

    fn with_timing(
        settings: ReceptionistSettings,
        returning: bool,
        script: Vec<Act>,
        timing: Timing,
    ) -> Self {
        Self::on(
            Carrier::Twilio,
            AudioCodec::Mulaw,
            settings,
            returning,
            script,
            timing,
        )
    }

    /// A call on `carrier`, streaming `codec`.
    fn on(
        carrier: Carrier,
        codec: AudioCodec,
        settings: ReceptionistSettings,
        returning: bool,
        script: Vec<Act>,
        timing: Timing,
    ) -> Self {
        Self::build(
            carrier,
            codec,
            settings,
            returning,
            script,
            timing,
            Extras::default(),
        )
    }

    /// A Twilio call whose dialogue consults `model`.
    fn with_model(settings: ReceptionistSettings, script: Vec<Act>, model: ScriptedModel) -> Self {
        Self::build(
            Carrier::Twilio,
            AudioCodec::Mulaw,
            settings,
            false,
            script,
            Timing::default(),
            Extras {
                model: Some(model),
                ..Extras::default()
            },
        )
    }

    /// A Twilio call that asks an end-of-turn model, whose verdicts are `verdicts`.
    fn with_turn_model(script: Vec<Act>, verdicts: Vec<bool>) -> Self {
        Self::build(
            Carrier::Twilio,
            AudioCodec::Mulaw,
            settings(),
            false,
            script,
            Timing::default(),
            Extras {
                turn_verdicts: Some(verdicts.into()),
                ..Extras::default()
            },
        )
    }

    /// A call with an end-of-turn model (`verdicts`) whose recogniser also says what was said so
    /// far (the whole utterance's scripted text).
    fn with_turn_model_and_words(script: Vec<Act>, verdicts: Vec<bool>) -> Self {
        Self::build(
            Carrier::Twilio,
            AudioCodec::Mulaw,
            settings(),
            false,
            script,
            Timing::default(),
            Extras {
                turn_verdicts: Some(verdicts.into()),
                partial_ms: Some(100),
                ..Extras::default()
            },
        )
    }

    /// A Twilio call whose recogniser says what the caller said so far when they talk over the
    /// agent, `partial_ms` after it is asked.
    fn with_partials(script: Vec<Act>, partial_ms: u64) -> Self {
        Self::build(
            Carrier::Twilio,
            AudioCodec::Mulaw,
            settings(),
            false,
            script,
            Timing::default(),
            Extras {
                partial_ms: Some(partial_ms),
                ..Extras::default()
            },
        )
    }

    /// A Twilio call with `settings` and `extras`.
    fn twilio(settings: ReceptionistSettings, script: Vec<Act>, extras: Extras) -> Self {
        Self::build(
            Carrier::Twilio,
            AudioCodec::Mulaw,
            settings,
            false,
            script,
            Timing::default(),
            extras,
        )
    }

    /// A Twilio call whose synthesiser streams: `bytes` of audio every `every_ms`.
    fn with_streaming_voice(script: Vec<Act>, bytes: usize, every_ms: u64) -> Self {
        let extras = Extras {
            tts_stream: Some((bytes, every_ms)),
            ..Extras::default()
        };
        Self::twilio(settings(), script, extras)
    }

    fn build(
        carrier: Carrier,
        codec: AudioCodec,
        settings: ReceptionistSettings,
        returning: bool,
        script: Vec<Act>,
        timing: Timing,
        extras: Extras,
    ) -> Self {
        let Extras {
            model,
            turn_verdicts,
            partial_ms,
            tts_stream,
            caller_language,
            speaks_languages,
            meanings,
            carrier_ahead_ms,
        } = extras;
        let (context_meanings, meaning_of) = match meanings {
            Some((m, of)) => (Some(m), of),
            None => (None, Vec::new()),
        };
        let t0 = Instant::now();
        let mut carrier = FakeCarrier::new(carrier, codec, CallInfo::default(), t0).unwrap();
        carrier.skip_media_ms(carrier_ahead_ms);
        let mut codec = carrier.server_codec();
        carrier.connect();
        let start = take_out(&mut carrier)
            .iter()
            .find_map(|m| match m {
                Wire::Text(t) => match codec.parse(Msg::Text(t)).unwrap() {
                    Inbound::Start(s) => Some(s),
                    _ => None,
                },
                Wire::Binary(_) => None,
            })
            .expect("a start");
        let session = MediaSession::new(codec, &start).unwrap();
        let engine = CallEngine::with_pipeline(
            t0,
            EngineConfig {
                settings: Arc::new(settings),
                returning_caller: returning,
                timing,
                echoes_marks: true,
                language_model: model.is_some(),
                end_of_turn_model: turn_verdicts.is_some(),
                barge_in_words: partial_ms.is_some(),
                speaks_languages,
                context_meanings,
            },
            InboundPipeline::new(Box::new(EnergyVad::new(-35.0))),
        );
        let mut sim = Self {
            engine,
            t0,
            now_ms: 0,
            carrier,
            session,
            events: Vec::new(),
            record: Vec::new(),
            sent_media: 0,
            clears: 0,
            speaks: Vec::new(),
            cancelled: Vec::new(),
            ended: None,
            script: script.into(),
            speaking_until: None,
            agent_last_audio_ms: 0,
            stt_pending: VecDeque::new(),
            stt_delay_ms: 0,
            current_utterance_text: None,
            utterance_texts: Default::default(),
            tts_fail: Vec::new(),
            stt_silent: false,
            outputs_seen: 0,
            hangup_at: None,
            agent_replied: true,
            drop_echoes: false,
            line_echo: None,
            played: VecDeque::new(),
            marks_sent: 0,
            caller_done_ms: 0,
            model,
            model_due: VecDeque::new(),
            consulted: Vec::new(),
            consults_cancelled: Vec::new(),
            turn_verdicts,
            turn_due: VecDeque::new(),
            turn_checks: Vec::new(),
            last_text: None,
            partial_ms,
            partial_due: VecDeque::new(),
            partials_asked: Vec::new(),
            partial_words_from: 0,
            clear_times: Vec::new(),
            talk_over_at: Vec::new(),
            over_agent_at: Vec::new(),
            tts_stream,
            caller_language,
            meaning_of,
            tts_break: Vec::new(),
            tts_due: Vec::new(),
            tts_ended: Vec::new(),
        };
        sim.drain();
        sim
    }

    fn now(&self) -> Instant {
        self.t0 + Duration::from_millis(self.now_ms)
    }

    fn input(&mut self, input: Input<'_>) {
        let now = self.now();
        if self.engine.is_finished() {
            return;
        }
        self.engine.handle_input(now, input).unwrap();
        self.drain();
    }

    fn drain(&mut self) {
        let mut replies: Vec<(u64, String)> = Vec::new();
        let mut carrier_replies: Vec<Wire> = Vec::new();
        loop {
            self.outputs_seen += 1;
            assert!(self.outputs_seen < 10_000_000, "runaway outputs");
            match self.engine.poll_output() {
                Output::Timeout(t) => {
                    assert!(
                        t >= self.now() || self.engine.is_finished(),
                        "deadline in the past"
                    );
                    break;
                }
                Output::ToCaller(msg) => {
                    match &msg {
                        ToCaller::Media(audio) => {
                            self.sent_media += audio.frames().len();
                            let keep_from = self.now_ms.saturating_sub(2_000);
                            while self.played.front().is_some_and(|(t, _)| *t < keep_from) {
                                self.played.pop_front();
                            }
                            let mut at = self.played.back().map_or(0, |(t, _)| t + 20);
                            at = at.max(self.now_ms);
                            for f in audio.frames() {
                                let mut frame = [0xFFu8; 160];
                                frame[..f.len()].copy_from_slice(f);
                                self.played.push_back((at, frame));
                                at += 20;
                            }
                        }
                        ToCaller::Clear => {
                            self.clears += 1;
                            self.clear_times.push(self.now_ms);
                            let now = self.now_ms;
                            self.played.retain(|(t, _)| *t < now);
                        }
                        ToCaller::Mark(_) => self.marks_sent += 1,
                    }
                    self.session.write(&msg);
                    let now = self.now();
                    for m in self.session.out().iter() {
                        self.carrier.handle_message(now, m).unwrap();
                    }
                    self.session.clear_out();
                    // a mark with nothing queued, or a clear's echoes, come back at once
                    carrier_replies.extend(take_out(&mut self.carrier));
                }
                Output::Speak { speech, text } => {
                    self.speaks.push((speech, text.clone()));
                    replies.push((speech, text));
                }
                Output::CancelSpeech { speech } => self.cancelled.push(speech),
                Output::Consult { consult, request } => {
                    let model = self
                        .model
                        .as_ref()
                        .expect("a call without a model consulted one");
                    let due = self.now_ms + 200;
                    match &*request {
                        ModelRequest::Understand(r) => match (model.understand)(r) {
                            ModelAct::Read(u) => {
                                self.model_due
                                    .push_back((due, consult, ModelReply::Understood(u)));
                            }
                            ModelAct::Fail => {
                                self.model_due.push_back((due, consult, ModelReply::Failed))
                            }
                            ModelAct::Silent => {}
                        },
                        ModelRequest::Answer(r) => {
                            let (pieces, done) = (model.answer)(r);
                            let n = pieces.len() as u64;
                            for (i, p) in pieces.into_iter().enumerate() {
                                self.model_due.push_back((
                                    due + 20 * i as u64,
                                    consult,
                                    ModelReply::Text(p),
                                ));
                            }
                            if done {
                                self.model_due
                                    .push_back((due + 20 * n, consult, ModelReply::Done));
                            }
                        }
                    }
                    self.consulted.push(*request);
                }
                Output::CancelConsult { consult } => {
                    self.consults_cancelled.push(consult);
                    self.model_due.retain(|(_, c, _)| *c != consult);
                }
                Output::SttAudio => {
                    while let Some((utterance, _)) = self.engine.pop_stt_frame() {
                        if let Some(t) = self.current_utterance_text {
                            self.utterance_texts.entry(utterance).or_insert(t);
                        }
                    }
                }
                Output::SttFinish { utterance } => {
                    let text = self
                        .utterance_texts
                        .get(&utterance)
                        .copied()
                        .unwrap_or(Some(""));
                    self.stt_pending
                        .push_back((self.now_ms + self.stt_delay_ms, utterance, text));
                }
                Output::SttCancel { .. } => {}
                Output::SttPartial { utterance } => {
                    let after = self
                        .partial_ms
                        .expect("a call without partial results asked for one");
                    let text = self
                        .utterance_texts
                        .get(&utterance)
                        .copied()
                        .flatten()
                        .filter(|_| self.partials_asked.len() >= self.partial_words_from)
                        .unwrap_or("");
                    self.partials_asked.push((self.now_ms, utterance));
                    self.partial_due
                        .push_back((self.now_ms + after, utterance, text));
                }
                Output::CheckTurn { utterance } => {
                    let verdicts = self
                        .turn_verdicts
                        .as_mut()
                        .expect("a call without an end-of-turn model asked one");
                    let complete = verdicts.pop_front().unwrap_or(true);
                    self.turn_checks.push((self.now_ms, utterance));
                    // with partial results, the words so far come with the verdict
                    let text = self.partial_ms.map(|_| {
                        self.utterance_texts
                            .get(&utterance)
                            .copied()
                            .flatten()
                            .unwrap_or("")
                    });
                    self.turn_due
                        .push_back((self.now_ms + 40, utterance, complete, text));
                }
                Output::Recording => {
                    let chunk = self.engine.take_recording();
                    assert_eq!(chunk.len() % 320, 0, "whole 20 ms stereo slots");
                    for slot in chunk.chunks_exact(320) {
                        let mut f = RecordFrame {
                            slot: self.record.len() as u64,
                            caller: [0; 160],
                            agent: [0; 160],
                        };
                        for i in 0..160 {
                            f.caller[i] = g711::ulaw_decode(slot[2 * i]);
                            f.agent[i] = g711::ulaw_decode(slot[2 * i + 1]);
                        }
                        self.record.push(f);
                    }
                }
                Output::Event(e) => self.events.push(*e),
                Output::Ended(r) => {
                    assert!(self.ended.is_none(), "ended twice");
                    self.ended = Some(r);
                }
            }
        }
        self.feed_engine(carrier_replies);
        for (speech, text) in replies {
            if self.tts_fail.iter().any(|f| text.contains(f.as_str())) {
                self.input(Input::TtsFailed { speech });
            } else {
                // 25 ms of audio per character (a non-silent tone so recordings show it)
                let n = text.len() * 200;
                let audio: Vec<u8> = (0..n)
                    .map(|i| if i % 2 == 0 { 0x10 } else { 0x90 })
                    .collect();
                match self.tts_stream {
                    None => self.input(Input::TtsAudio {
                        speech,
                        mulaw: audio.into(),
                    }),
                    Some((bytes, every_ms)) => {
                        let breaks = self.tts_break.iter().any(|f| text.contains(f.as_str()));
                        let pieces: Vec<&[u8]> = audio.chunks(bytes).collect();
                        let n = pieces.len();
                        for (i, piece) in pieces.into_iter().enumerate() {
                            let due = self.now_ms + i as u64 * every_ms;
                            if breaks && i == 1 {
                                self.tts_due.push((due, speech, None, true));
                                break;
                            }
                            self.tts_due
                                .push((due, speech, Some(piece.into()), i + 1 == n));
                        }
                    }
                }
            }
        }
    }

    /// Feeds the carrier's messages to the engine through the media session.
    fn feed_engine(&mut self, msgs: Vec<Wire>) {
        for m in msgs {
            if self.engine.is_finished() {
                return;
            }
            let now = self.now();
            let engine = &mut self.engine;
            let drop_echoes = self.drop_echoes;
            let msg = match &m {
                Wire::Text(t) => Msg::Text(t),
                Wire::Binary(b) => Msg::Binary(b),
            };
            self.session
                .handle_message(msg, |input| {
                    if drop_echoes && matches!(input, Input::MarkEchoed(_)) {
                        return;
                    }
                    if !engine.is_finished() {
                        engine.handle_input(now, input).unwrap();
                    }
                })
                .unwrap();
            self.drain();
        }
    }

    /// Advance the carrier's playback to `now`, echoing marks as their audio finishes.
    fn carrier_play(&mut self) {
        let before = self.carrier.last_played();
        self.carrier.handle_timeout(self.now());
        if let Some(t) = self.carrier.last_played()
            && Some(t) != before
        {
            self.agent_last_audio_ms = (t - self.t0).as_millis() as u64;
            // audio cut off while the caller talks over it is no reply
            if self.speaking_until.is_none() && self.agent_last_audio_ms > self.caller_done_ms {
                self.agent_replied = true;
            }
        }
        let echoes = take_out(&mut self.carrier);
        self.feed_engine(echoes);
    }

    fn agent_silent_for(&self, ms: u64) -> bool {
        self.agent_replied && self.carrier.is_idle() && self.now_ms >= self.agent_last_audio_ms + ms
    }

    /// Run in 20 ms steps until the call ends or `limit_ms`.
    fn run(&mut self, limit_ms: u64) {
        let mut frame_n = 0u64;
        let mut over_started: Option<u64> = None;
        while self.ended.is_none() && self.now_ms < limit_ms {
            self.now_ms += 20;
            self.carrier_play();
            // the recogniser answers in the next frame after the end of an utterance, or after
            // its delay
            let now_ms = self.now_ms;
            if let Some((_, u, text)) = self.stt_pending.pop_front_if(|p| p.0 <= now_ms) {
                if self.stt_silent {
                    // never answers
                } else {
                    if let (Some(language), Some(_)) = (self.caller_language, text) {
                        self.input(Input::CallerLanguage(language));
                    }
                    if let Some((t, meaning)) = self
                        .meaning_of
                        .iter()
                        .find(|(t, _)| Some(*t) == text)
                        .cloned()
                    {
                        self.input(Input::CallerMeaning {
                            text: t,
                            meaning: meaning.into(),
                        });
                    }
                    match text {
                        Some(t) => self.input(Input::Transcript {
                            utterance: u,
                            text: t,
                        }),
                        None => self.input(Input::SttFailed { utterance: u }),
                    }
                }
            }
            // the model's replies that are due
            while self
                .model_due
                .front()
                .is_some_and(|(due, _, _)| *due <= self.now_ms)
            {
                let Some((_, consult, reply)) = self.model_due.pop_front() else {
                    break;
                };
                match reply {
                    ModelReply::Understood(understanding) => self.input(Input::Understood {
                        consult,
                        understanding,
                    }),
                    ModelReply::Failed => self.input(Input::ModelFailed { consult }),
                    ModelReply::Text(text) => self.input(Input::ModelText { consult, text }),
                    ModelReply::Done => self.input(Input::ModelDone { consult }),
                }
            }
            // the synthesiser's pieces that are due, in order
            while let Some(i) = self.tts_due.iter().position(|t| t.0 <= self.now_ms) {
                let (_, speech, audio, last) = self.tts_due.remove(i);
                match audio {
                    Some(mulaw) => {
                        if last {
                            self.tts_ended.push((speech, self.sent_media));
                        }
                        self.input(Input::TtsChunk {
                            speech,
                            mulaw,
                            last,
                        });
                    }
                    None => self.input(Input::TtsFailed { speech }),
                }
            }
            while self
                .partial_due
                .front()
                .is_some_and(|(due, _, _)| *due <= self.now_ms)
            {
                let Some((_, utterance, text)) = self.partial_due.pop_front() else {
                    break;
                };
                self.input(Input::PartialTranscript { utterance, text });
            }
            while self
                .turn_due
                .front()
                .is_some_and(|(due, _, _, _)| *due <= self.now_ms)
            {
                let Some((_, utterance, complete, text)) = self.turn_due.pop_front() else {
                    break;
                };
                self.input(Input::TurnChecked {
                    utterance,
                    complete: Some(complete),
                    text,
                });
            }
            // caller
            let speaking = self.speaking_until.is_some_and(|u| self.now_ms < u);
            if !speaking && self.speaking_until.is_some() {
                self.speaking_until = None;
                self.caller_done_ms = self.now_ms;
                self.current_utterance_text = None;
            }
            if self.speaking_until.is_none() {
                match self.script.front().cloned() {
                    Some(Act::Say { ms, text }) if self.agent_silent_for(600) => {
                        self.script.pop_front();
                        self.agent_replied = false;
                        self.speaking_until = Some(self.now_ms + ms);
                        self.current_utterance_text = Some(text);
                        self.last_text = Some(text);
                    }
                    Some(Act::GoOn { pause_ms, ms })
                        if self.now_ms >= self.caller_done_ms + pause_ms =>
                    {
                        self.script.pop_front();
                        self.speaking_until = Some(self.now_ms + ms);
                        self.current_utterance_text = self.last_text;
                    }
                    Some(Act::GoOnSaying { pause_ms, ms, text })
                        if self.now_ms >= self.caller_done_ms + pause_ms =>
                    {
                        self.script.pop_front();
                        self.speaking_until = Some(self.now_ms + ms);
                        self.current_utterance_text = Some(Some(text));
                        self.last_text = Some(Some(text));
                    }
                    Some(Act::SayOver { after_ms, ms, text }) => {
                        let agent_talking = !self.carrier.is_idle();
                        if agent_talking && over_started.is_none() {
                            over_started = Some(self.now_ms);
                        }
                        if over_started.is_some_and(|s| self.now_ms >= s + after_ms) {
                            self.script.pop_front();
                            over_started = None;
                            // having talked, the caller waits for the agent's reply
                            self.agent_replied = false;
                            self.speaking_until = Some(self.now_ms + ms);
                            self.current_utterance_text = Some(Some(text));
                            self.talk_over_at.push(self.now_ms);
                        }
                    }
                    Some(Act::Key(d)) if self.agent_silent_for(600) => {
                        self.script.pop_front();
                        self.agent_replied = false;
                        self.carrier.send_dtmf(d);
                        let msgs = take_out(&mut self.carrier);
                        self.feed_engine(msgs);
                    }
                    Some(Act::HangUp { after_ms }) => {
                        self.script.pop_front();
                        self.hangup_at = Some(self.now_ms + after_ms);
                    }
                    _ => {}
                }
            }
            if self.hangup_at.is_some_and(|h| self.now_ms >= h) {
                if self.carrier.send_stop() {
                    let msgs = take_out(&mut self.carrier);
                    self.feed_engine(msgs);
                } else {
                    // Vonage has no stop: the socket closes
                    self.input(Input::Disconnected);
                }
                break;
            }
            let mut frame = if self.speaking_until.is_some() {
                tone_frame(frame_n)
            } else {
                [0xFFu8; 160]
            };
            frame_n += 1;
            if let Some((delay, gain)) = self.line_echo {
                self.add_echo(&mut frame, delay, gain);
            }
            self.carrier.send_audio(&frame);
            let msgs = take_out(&mut self.carrier);
            self.feed_engine(msgs);
            if self.engine.caller_over_agent() {
                self.over_agent_at.push(self.now_ms);
            }
        }
    }

    /// The agent's audio that played `delay` ms ago, at `gain`, added to the caller's frame.
    fn add_echo(&mut self, frame: &mut [u8; 160], delay: u64, gain: f32) {
        let Some(at) = self.now_ms.checked_sub(delay) else {
            return;
        };
        while self
            .played
            .front()
            .is_some_and(|(t, _)| t + 20 <= at.saturating_sub(1000))
        {
            self.played.pop_front();
        }
        // the frames the echoed 20 ms fall in, sample by sample
        for (i, b) in frame.iter_mut().enumerate() {
            let t8 = at * 8 + i as u64;
            let agent = self
                .played
                .iter()
                .find(|(t, _)| t * 8 <= t8 && t8 < (t + 20) * 8)
                .map_or(0.0, |(t, f)| {
                    f32::from(g711::ulaw_decode(f[(t8 - t * 8) as usize]))
                });
            let mixed = f32::from(g711::ulaw_decode(*b)) + gain * agent;
            *b = g711::ulaw_encode(mixed.clamp(-32768.0, 32767.0) as i16);
        }
    }

    /// The names the call heard, in order.
    fn names(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                CallEvent::Name { name } => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    fn answers(&self) -> Vec<crate::model::AnswerRecord> {
        self.events
            .iter()
            .filter_map(|e| match e {
                CallEvent::Answer(a) => Some(a.clone()),
                _ => None,
            })
            .collect()
    }

    fn transcript(&self) -> Vec<TranscriptLine> {
        self.events
            .iter()
            .filter_map(|e| match e {
                CallEvent::Transcript(t) => Some(t.clone()),
                _ => None,
            })
            .collect()
    }

    fn disclosures(&self) -> Vec<DisclosureRecord> {
        self.events
            .iter()
            .filter_map(|e| match e {
                CallEvent::Disclosure(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }
}

fn happy_script() -> Vec<Act> {
    vec![
        Act::Say {
            ms: 800,
            text: Some("my name is john smith"),
        },
        Act::Say {
            ms: 600,
            text: Some("i live in chicago"),
        },
        Act::Say {
            ms: 400,
            text: Some("yes"),
        },
        Act::Say {
            ms: 500,
            text: Some("three years"),
        },
        Act::Say {
            ms: 700,
            text: Some("what is the pay"),
        },
        Act::Say {
            ms: 500,
            text: Some("no thank you"),
        },
    ]
}

#[test]
fn a_whole_call_completes_with_answers_disclosures_and_a_gapless_recording() {
    let mut sim = Sim::new(settings(), false, happy_script());
    sim.run(180_000);
    assert_eq!(
        sim.ended,
        Some(EndReason::Completed),
        "events: {:#?}",
        sim.events
    );

    assert_eq!(sim.names(), vec!["John Smith"]);
    assert!(sim.events.contains(&CallEvent::Location {
        location: "Chicago".into()
    }));
    let answers = sim.answers();
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0].value, AnswerValue::Yes);
    assert_eq!(answers[1].value, AnswerValue::Number(3.0));

    let d = sim.disclosures();
    assert_eq!(d.len(), 3);
    assert!(d.iter().all(|d| d.played_in_full), "{d:?}");
    assert_eq!(d[2].kind, DisclosureKind::EVerify);

    let t = sim.transcript();
    assert!(t[0].text.starts_with("Hi, I'm Chloe"));
    assert_eq!(t[0].speaker, Speaker::Agent);
    assert!(
        t.iter()
            .any(|l| l.speaker == Speaker::Caller && l.text == "what is the pay")
    );
    assert!(
        t.iter()
            .any(|l| l.speaker == Speaker::Agent && l.text.contains("$18 per hour"))
    );
    assert!(t.last().unwrap().text.contains("Goodbye"));
    // times are ordered per speaker
    for w in t.windows(2) {
        if w[0].speaker == w[1].speaker {
            assert!(w[0].start_ms <= w[1].start_ms);
        }
    }
    assert_eq!(sim.clears, 0);

    // the recording covers the whole call, agent and caller on their own channels
    let rec_ms = sim.record.len() as u64 * 20;
    assert!(
        rec_ms + 40 >= sim.now_ms,
        "recording {rec_ms} ms of {} ms",
        sim.now_ms
    );
    let agent_frames = sim
        .record
        .iter()
        .filter(|f| f.agent.iter().any(|&s| s != 0))
        .count();
    let caller_frames = sim
        .record
        .iter()
        .filter(|f| f.caller.iter().any(|&s| s.abs() > 100))
        .count();
    assert_eq!(
        agent_frames, sim.sent_media,
        "every agent frame sent is recorded once"
    );
    assert_eq!(
        caller_frames as u64,
        (800 + 600 + 400 + 500 + 700 + 500) / 20
    );

    // one latency record per answered turn, and they are small in virtual time
    let lat: Vec<_> = sim
        .events
        .iter()
        .filter_map(|e| match e {
            CallEvent::Latency(l) => Some(l.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(lat.len(), 6);
    for l in &lat {
        assert!(l.endpointing_ms >= 700 && l.endpointing_ms <= 1300, "{l:?}");
        assert!(l.total_ms >= l.endpointing_ms);
    }
}

/// The carrier's stream began 560 ms before the call's clock (a slow call set-up): every caller
/// turn's stored times still hold its audio in the recording, which before stop 49 put the
/// caller's channel 560 ms after the turns and the agent audio they answered.
#[test]
fn a_carrier_timeline_ahead_of_the_call_keeps_the_callers_turns_on_their_audio() {
    let extras = Extras {
        carrier_ahead_ms: 560,
        ..Extras::default()
    };
    let mut sim = Sim::twilio(settings(), happy_script(), extras);
    sim.run(180_000);
    assert_eq!(sim.ended, Some(EndReason::Completed));
    let voiced = |slot: &RecordFrame| slot.caller.iter().any(|&s| s.abs() > 100);
    let caller_frames = sim.record.iter().filter(|f| voiced(f)).count();
    assert_eq!(
        caller_frames as u64,
        (800 + 600 + 400 + 500 + 700 + 500) / 20
    );
    let turns: Vec<_> = sim
        .transcript()
        .into_iter()
        .filter(|l| l.speaker == Speaker::Caller && !l.dtmf)
        .collect();
    assert_eq!(turns.len(), 6, "{turns:?}");
    for l in turns {
        let slots = &sim.record[(l.start_ms / 20) as usize..(l.end_ms / 20) as usize];
        let heard = slots.iter().filter(|f| voiced(f)).count();
        assert!(
            heard * 10 >= slots.len() * 9,
            "{l:?}: {heard} of its {} slots voiced",
            slots.len()
        );
    }
}

#[test]
fn a_streamed_voice_plays_each_sentence_from_its_first_piece_without_gaps() {
    // 150 ms of audio every 60 ms: faster than it plays, as a streaming provider sends it
    let mut sim = Sim::with_streaming_voice(happy_script(), 1_200, 60);
    sim.run(180_000);
    assert_eq!(sim.ended, Some(EndReason::Completed));
    assert_eq!(sim.answers().len(), 2);
    assert!(sim.disclosures().iter().all(|d| d.played_in_full));
    assert_eq!(sim.clears, 0);
    // the greeting was playing long before its last piece came
    let (_, sent) = sim
        .tts_ended
        .iter()
        .find(|(speech, _)| *speech == 1)
        .expect("the greeting's last piece");
    assert!(
        *sent >= 10,
        "{sent} frames sent before the greeting's last piece"
    );
    // every line played back to back: as long as its audio (25 ms a character), no gaps
    let t = sim.transcript();
    for l in t.iter().filter(|l| l.speaker == Speaker::Agent) {
        let audio_ms = (l.text.len() as u64 * 200).div_ceil(160) * 20;
        assert_eq!(l.end_ms - l.start_ms, audio_ms, "{l:?}");
        assert!(!l.interrupted);
    }
    let agent_frames = sim
        .record
        .iter()
        .filter(|f| f.agent.iter().any(|&s| s != 0))
        .count();
    assert_eq!(
        agent_frames, sim.sent_media,
        "every frame sent is recorded once"
    );
    // the reply's first audio is its first piece, not its whole synthesis
    for l in latencies(&sim) {
        assert!(l.tts_ms <= 40, "{l:?}");
    }
}

#[test]
fn a_voice_stream_that_breaks_off_keeps_what_was_said_and_the_call_goes_on() {
    let mut sim = Sim::with_streaming_voice(happy_script(), 1_200, 60);
    sim.tts_break.push("Which city or area".into());
    sim.run(180_000);
    assert_eq!(sim.ended, Some(EndReason::Completed), "{:#?}", sim.events);
    assert_eq!(sim.answers().len(), 2);
    let t = sim.transcript();
    let cut: Vec<_> = t
        .iter()
        .filter(|l| l.speaker == Speaker::Agent && l.interrupted)
        .collect();
    assert_eq!(cut.len(), 1, "{t:#?}");
    assert!(cut[0].text.ends_with('…'));
    // 150 ms of it came and played
    assert_eq!(cut[0].end_ms - cut[0].start_ms, 160);
    assert!(sim.events.contains(&CallEvent::Location {
        location: "Chicago".into()
    }));
}

fn multilingual_call(language: &'static str, speaks_languages: bool) -> Sim {
    let settings = ReceptionistSettings {
        language_mode: crate::model::LanguageMode::Multilingual,
        ..settings()
    };
    let extras = Extras {
        caller_language: Some(language),
        speaks_languages,
        ..Extras::default()
    };
    Sim::twilio(settings, happy_script(), extras)
}

fn language_events(sim: &Sim) -> Vec<(String, bool)> {
    sim.events
        .iter()
        .filter_map(|e| match e {
            CallEvent::Language {
                language,
                answered_in,
            } => Some((language.clone(), *answered_in)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_caller_in_another_language_hears_once_that_the_call_goes_on_in_english() {
    let mut sim = multilingual_call("es", false);
    sim.run(180_000);
    assert_eq!(sim.ended, Some(EndReason::Completed));
    assert_eq!(sim.answers().len(), 2);
    assert_eq!(language_events(&sim), vec![("es".to_string(), false)]);
    let t = sim.transcript();
    let notices: Vec<usize> = t
        .iter()
        .enumerate()
        .filter(|(_, l)| l.speaker == Speaker::Agent && l.text == ENGLISH_ONLY)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(notices.len(), 1, "said once: {t:#?}");
    // right after the caller's first words, before the reply to them
    let first_caller = t.iter().position(|l| l.speaker == Speaker::Caller).unwrap();
    assert_eq!(notices[0], first_caller + 1, "{t:#?}");
    assert!(t[notices[0] + 1].speaker == Speaker::Agent);
}

#[test]
fn a_caller_in_another_language_is_answered_in_it_when_the_agent_can() {
    let mut sim = multilingual_call("es", true);
    sim.run(180_000);
    assert_eq!(sim.ended, Some(EndReason::Completed));
    // one change of language, no notice
    assert_eq!(language_events(&sim), vec![("es".to_string(), true)]);
    assert!(sim.transcript().iter().all(|l| l.text != ENGLISH_ONLY));
}

#[test]
fn an_english_only_receptionist_ignores_the_callers_language() {
    let extras = Extras {
        caller_language: Some("es"),
        ..Extras::default()
    };
    let mut sim = Sim::twilio(settings(), happy_script(), extras);
    sim.run(180_000);
    assert_eq!(sim.ended, Some(EndReason::Completed));
    assert!(language_events(&sim).is_empty());
    assert!(sim.transcript().iter().all(|l| l.text != ENGLISH_ONLY));
}

#[test]
fn an_english_speaking_caller_in_a_multilingual_call_changes_nothing() {
    let mut sim = multilingual_call("en", true);
    sim.run(180_000);
    assert_eq!(sim.ended, Some(EndReason::Completed));
    assert!(language_events(&sim).is_empty());
}

#[test]
fn a_question_is_answered_by_the_context_sentence_closest_in_meaning() {
    let mut settings = settings();
    settings.custom_context =
        "Pay is $18 per hour. Shifts run from 10 pm to 6 am. The warehouse is on Main Street."
            .into();
    // toy meanings: one direction per sentence
    let meanings = ContextMeanings {
        sentences: crate::engine::dialogue::context::sentences(&settings.custom_context),
        vectors: vec![
            vec![1.0, 0.0, 0.0],
            vec![0.0, 1.0, 0.0],
            vec![0.0, 0.0, 1.0],
        ],
    };
    let mut script = happy_script();
    // no word in common with any sentence: the words alone find nothing
    script[4] = Act::Say {
        ms: 700,
        text: Some("will i be up late"),
    };
    let extras = Extras {
        meanings: Some((
            Arc::new(meanings),
            vec![("will i be up late", vec![0.1, 0.95, 0.1])],
        )),
        ..Extras::default()
    };
    let mut sim = Sim::twilio(settings, script, extras);
    sim.run(180_000);
    assert_eq!(sim.ended, Some(EndReason::Completed));
    let t = sim.transcript();
    let asked = t
        .iter()
        .position(|l| l.speaker == Speaker::Caller && l.text == "will i be up late")
        .expect("the question");
    assert_eq!(
        t[asked + 1].text,
        "Shifts run from 10 pm to 6 am.",
        "{t:#?}"
    );
}

#[test]
fn without_a_meaning_close_enough_the_words_decide() {
    use crate::engine::dialogue::context::answer_by_meaning;
    let m = ContextMeanings {
        sentences: vec!["Pay is $18 per hour.".into(), "Shifts are at night".into()],
        vectors: vec![vec![1.0, 0.0], vec![0.0, 1.0]],
    };
    assert_eq!(
        answer_by_meaning(&m, &[0.0, 1.0]).as_deref(),
        Some("Shifts are at night.")
    );
    // two sentences as close: both, in the context's order
    let both = answer_by_meaning(&m, &[0.7, 0.7]);
    assert_eq!(
        both.as_deref(),
        Some("Pay is $18 per hour. Shifts are at night.")
    );
    // nothing close: none (the keyword matcher then answers, or "a recruiter will follow up")
    assert_eq!(answer_by_meaning(&m, &[0.2, -0.9]), None);
    // a meaning of another model's length is never compared
    assert_eq!(answer_by_meaning(&m, &[1.0, 0.0, 0.0]), None);
}

fn latencies(sim: &Sim) -> Vec<crate::model::TurnLatency> {
    sim.events
        .iter()
        .filter_map(|e| match e {
            CallEvent::Latency(l) => Some(l.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_end_of_turn_model_answers_a_finished_turn_after_a_short_pause() {
    let mut sim = Sim::with_turn_model(happy_script(), vec![]);
    sim.run(180_000);
    assert_eq!(sim.ended, Some(EndReason::Completed));
    assert_eq!(sim.answers().len(), 2);
    // each turn was asked about once, 200 ms into the caller's pause, and ended there (plus the
    // model's 40 ms) instead of after the 700 ms silence
    assert_eq!(sim.turn_checks.len(), 6, "{:?}", sim.turn_checks);
    let lat = latencies(&sim);
    assert_eq!(lat.len(), 6);
    for l in &lat {
        assert!(
            (200..=300).contains(&l.endpointing_ms),
            "ended {} ms after the caller's last word",
            l.endpointing_ms
        );
    }
}

#[test]
fn a_pause_the_model_calls_unfinished_does_not_cut_the_caller_off() {
    let mut sim = Sim::with_turn_model(
        vec![
            Act::Say {
                ms: 700,
                text: Some("my name is john smith"),
            },
            // a one-second pause inside the answer: the model says they have not finished
            Act::GoOn {
                pause_ms: 1000,
                ms: 600,
            },
            Act::HangUp { after_ms: 4000 },
        ],
        vec![false, true],
    );
    sim.run(60_000);
    // one caller turn spanning both parts, asked about at each pause
    let caller: Vec<_> = sim
        .transcript()
        .into_iter()
        .filter(|l| l.speaker == Speaker::Caller)
        .collect();
    assert_eq!(caller.len(), 1, "{caller:#?}");
    assert!(caller[0].end_ms - caller[0].start_ms >= 2000, "{caller:?}");
    assert_eq!(sim.turn_checks.len(), 2, "{:?}", sim.turn_checks);
    assert_eq!(sim.turn_checks[0].1, sim.turn_checks[1].1);
    assert!(
        latencies(&sim)[0].endpointing_ms < 400,
        "the second pause was judged complete"
    );
}

#[test]
fn words_that_lead_on_outweigh_a_model_that_calls_the_turn_complete() {
    // the model calls "my name is" (then a pause) complete; the words say it goes on
    let mut sim = Sim::with_turn_model_and_words(
        vec![
            Act::Say {
                ms: 600,
                text: Some("my name is"),
            },
            Act::GoOn {
                pause_ms: 1000,
                ms: 600,
            },
            Act::HangUp { after_ms: 4000 },
        ],
        vec![true, true],
    );
    sim.run(60_000);
    let caller: Vec<_> = sim
        .transcript()
        .into_iter()
        .filter(|l| l.speaker == Speaker::Caller)
        .collect();
    assert_eq!(caller.len(), 1, "cut off at the pause: {caller:#?}");
    assert_eq!(sim.turn_checks.len(), 2);
    // ... and after the second pause the words still lead on: the fallback silence ends it
    assert!(latencies(&sim)[0].endpointing_ms >= 1600);
}

#[test]
fn without_a_verdict_the_fallback_silence_ends_the_turn() {
    let mut sim = Sim::with_turn_model(
        vec![
            Act::Say {
                ms: 700,
                text: Some("my name is john smith"),
            },
            Act::HangUp { after_ms: 6000 },
        ],
        vec![false],
    );
    sim.run(60_000);
    let lat = latencies(&sim);
    assert_eq!(lat.len(), 1);
    assert!(
        (1600..=1700).contains(&lat[0].endpointing_ms),
        "{}",
        lat[0].endpointing_ms
    );
}

/// A call whose caller answers the name question with `first`, and after a 900 ms pause (the
/// end of that utterance) goes on with `then` for 1.4 s, to a recogniser that takes `stt_ms`.
fn goes_on_while_recognised(first: &'static str, then: &'static str, stt_ms: u64) -> Sim {
    let mut sim = Sim::new(
        settings(),
        false,
        vec![
            Act::Say {
                ms: 700,
                text: Some(first),
            },
            Act::GoOnSaying {
                pause_ms: 900,
                ms: 1_400,
                text: then,
            },
            Act::HangUp { after_ms: 4_000 },
        ],
    );
    sim.stt_delay_ms = stt_ms;
    sim.run(60_000);
    sim
}

#[test]
fn a_caller_who_goes_on_while_their_words_are_recognised_is_answered_once_and_not_talked_over() {
    // a slow recogniser: the caller's first words are still being recognised when they go on
    // (1.5 s: the transcript comes while they talk; 3 s: after they stopped again)
    for delay_ms in [1_500, 3_000] {
        let sim = goes_on_while_recognised("john", "smith", delay_ms);
        assert_eq!(sim.names(), vec!["John Smith"], "{delay_ms} ms");
        assert_eq!(sim.clears, 0, "{delay_ms} ms: the agent was talked over");
        let t = sim.transcript();
        let caller: Vec<&TranscriptLine> =
            t.iter().filter(|l| l.speaker == Speaker::Caller).collect();
        assert_eq!(caller.len(), 2, "{t:#?}");
        assert_eq!(
            (caller[0].text.as_str(), caller[1].text.as_str()),
            ("john", "smith")
        );
        // the reply came after both parts, once
        let first = t.iter().position(|l| l.speaker == Speaker::Caller).unwrap();
        assert_eq!(t[first + 1].speaker, Speaker::Caller, "{t:#?}");
        let reply = &t[first + 2];
        assert_eq!(reply.speaker, Speaker::Agent, "{t:#?}");
        assert!(reply.start_ms >= caller[1].end_ms, "{delay_ms} ms: {t:#?}");
        assert!(!reply.text.contains("didn't catch"), "{t:#?}");
    }
}

#[test]
fn what_a_caller_goes_on_with_is_no_words_the_words_before_it_are_answered() {
    // the second part is a sound the recogniser makes nothing of
    let sim = goes_on_while_recognised("my name is john smith", "", 1_500);
    assert!(sim.events.contains(&CallEvent::Name {
        name: "John Smith".into()
    }));
    assert_eq!(sim.clears, 0);
}

/// The agent's own voice on the caller's line, 10 dB down and 150 ms late (`Sim::line_echo`).
const LINE_ECHO: (u64, f32) = (150, 0.316);

/// The name, then "chicago" said over "Got it. Which city or area do you live in?", then a
/// hang-up.
fn chicago_over_the_agent() -> Vec<Act> {
    vec![
        Act::Say {
            ms: 800,
            text: Some("my name is john smith"),
        },
        Act::SayOver {
            after_ms: 300,
            ms: 800,
            text: "chicago",
        },
        Act::HangUp { after_ms: 3000 },
    ]
}

#[test]
fn barge_in_clears_and_keeps_only_what_was_heard() {
    // and the same over the agent's own echo on the line: the caller's voice is the caller's
    for line_echo in [None, Some(LINE_ECHO)] {
        let mut sim = Sim::new(settings(), false, chicago_over_the_agent());
        sim.line_echo = line_echo;
        sim.run(60_000);
        assert_eq!(sim.clears, 1, "one clear on barge-in ({line_echo:?})");
        assert!(!sim.cancelled.is_empty());
        let t = sim.transcript();
        let interrupted: Vec<_> = t.iter().filter(|l| l.interrupted).collect();
        assert_eq!(interrupted.len(), 1, "{t:#?}");
        assert!(interrupted[0].text.ends_with('…'));
        assert!(sim.events.contains(&CallEvent::Location {
            location: "Chicago".into()
        }));
        // the agent's recorded audio stops at the barge-in: nothing after the clear is recorded
        // as played beyond what the carrier had time to play
        assert_eq!(sim.ended, Some(EndReason::CallerHangup));
    }
}

#[test]
fn the_engine_says_when_the_caller_talks_over_the_agent() {
    // (the driver's connection thread then handles each frame at once, `server/threads.rs`)
    let mut sim = Sim::new(settings(), false, chicago_over_the_agent());
    sim.run(60_000);
    assert_eq!(sim.clears, 1);
    let (talk, clear) = (sim.talk_over_at[0], sim.clear_times[0]);
    let over = &sim.over_agent_at;
    // from the talk's onset (a few frames in) to the barge-in, frame by frame, and never else:
    // not while the caller answered with the floor, nor after the agent stopped
    let (first, last) = (over[0], *over.last().unwrap());
    assert!(first > talk && first <= talk + 100, "{talk} {over:?}");
    assert!(last < clear && last + 40 >= clear, "{clear} {over:?}");
    assert_eq!(over.len() as u64, (last - first) / 20 + 1, "{over:?}");
}

#[test]
fn the_agents_own_echo_neither_stops_it_nor_answers_for_the_caller() {
    for words_checked in [false, true] {
        let mut sim = if words_checked {
            Sim::with_partials(happy_script(), 150)
        } else {
            Sim::new(settings(), false, happy_script())
        };
        sim.line_echo = Some(LINE_ECHO);
        sim.run(120_000);
        assert_eq!(
            sim.clears, 0,
            "the echo stopped the agent ({words_checked})"
        );
        assert_eq!(sim.ended, Some(EndReason::Completed));
        assert_eq!(sim.names(), vec!["John Smith".to_string()]);
        assert_eq!(sim.answers().len(), 2);
        // the caller's turns are the script's, each once: no echo was taken for one
        let said: Vec<String> = sim
            .transcript()
            .iter()
            .filter(|l| l.speaker == Speaker::Caller)
            .map(|l| l.text.clone())
            .collect();
        let script: Vec<String> = happy_script()
            .into_iter()
            .filter_map(|a| match a {
                Act::Say { text, .. } => text.map(String::from),
                _ => None,
            })
            .collect();
        assert_eq!(said, script, "{words_checked}");
    }
}

/// The happy call with `over` said over the agent's second turn (after the name).
fn talked_over(over: Act) -> Vec<Act> {
    let mut script = happy_script();
    script.insert(1, over);
    script
}

#[test]
fn with_words_checked_a_backchannel_a_cough_or_noise_does_not_stop_the_agent() {
    for (text, ms) in [("uh huh", 500), ("okay", 400), ("", 350), ("", 700)] {
        let mut sim = Sim::with_partials(
            talked_over(Act::SayOver {
                after_ms: 100,
                ms,
                text,
            }),
            100,
        );
        sim.run(180_000);
        // asked after 200 ms of speech and every 200 ms more, and at 300 ms when the first
        // check heard no words and the sound goes on
        assert_eq!(
            sim.partials_asked.len() as u64,
            (ms / 200).max(1) + u64::from(text.is_empty() && ms > 300),
            "{text:?} {ms}"
        );
        assert_eq!(sim.clears, 0, "{text:?} {ms}: the agent was stopped");
        assert_eq!(sim.ended, Some(EndReason::Completed), "{text:?} {ms}");
        assert_eq!(sim.answers().len(), 2, "{text:?} {ms}");
    }
}

#[test]
fn the_rest_of_a_yes_said_over_the_reply_to_it_does_not_stop_the_agent() {
    // "Yes, ... I am": the yes ended the turn at once, and the rest comes over the reply; what
    // says more, or comes later, stops the agent as any talk over it does
    for (after_ms, text, stops) in [
        (100, "i am", false),
        (100, "i", false),
        (100, "i am not", true),
        (100, "but only on weekends", true),
        (900, "i am", true),
    ] {
        // the reply ("Thank you. How many years ...", 1.5 s) begins 700 ms after the yes; the
        // rest of the yes may begin until 1.5 s after it
        let mut script = happy_script();
        script.insert(
            3,
            Act::SayOver {
                after_ms,
                ms: 500,
                text,
            },
        );
        let mut sim = Sim::with_partials(script, 100);
        sim.run(180_000);
        assert_eq!(
            sim.clears, stops as usize,
            "{text:?} {after_ms} ms into the reply"
        );
        if !stops {
            assert_eq!(sim.ended, Some(EndReason::Completed), "{text:?}");
            let answers = sim.answers();
            assert_eq!(answers.len(), 2, "{answers:?}");
            assert_eq!(
                answers[0].value,
                crate::model::AnswerValue::Yes,
                "{answers:?}"
            );
            // the next question was asked once, and its answer is the caller's next turn
            assert_eq!(answers[1].value, crate::model::AnswerValue::Number(3.0));
            let said = |words: &str| {
                let lines = sim.transcript();
                lines.iter().filter(|l| l.text.contains(words)).count()
            };
            assert_eq!(said("warehouse experience"), 1, "{:?}", sim.transcript());
            assert_eq!(said("didn't catch"), 0, "{:?}", sim.transcript());
        }
    }
}

/// A call in which the caller says "Sorry, which job is this?" (1.5 s) over the agent's second
/// line, with a recogniser that answers checks of the words in `partial_ms`.
fn sorry_over_the_agent(partial_ms: u64) -> Sim {
    Sim::with_partials(
        talked_over(Act::SayOver {
            after_ms: 300,
            ms: 1500,
            text: "sorry which job is this",
        }),
        partial_ms,
    )
}

#[test]
fn with_words_checked_a_real_interruption_stops_the_agent_within_400_ms() {
    let mut sim = sorry_over_the_agent(100);
    sim.run(180_000);
    assert_eq!(sim.clears, 1);
    let took = sim.clear_times[0] - sim.talk_over_at[0];
    assert!(took <= 400, "stopped {took} ms after the caller started");
    // talk that goes on is an interruption even when the recogniser is too slow to say
    let mut sim = sorry_over_the_agent(5_000);
    sim.run(180_000);
    assert_eq!(sim.clears, 1);
    let took = sim.clear_times[0] - sim.talk_over_at[0];
    assert!(took <= 1000, "stopped {took} ms after the caller started");
}

/// [`sorry_over_the_agent`] whose first check makes nothing of the talk, run to the end of the
/// call, which stops the agent once; and when the words were asked for, from the talk's start.
fn sorry_not_heard_by_the_first_check(partial_ms: u64) -> (Sim, Vec<u64>) {
    let mut sim = sorry_over_the_agent(partial_ms);
    sim.partial_words_from = 1;
    sim.run(180_000);
    assert_eq!(sim.clears, 1);
    let asked = sim
        .partials_asked
        .iter()
        .map(|&(at, _)| at - sim.talk_over_at[0])
        .collect();
    (sim, asked)
}

#[test]
fn with_words_checked_a_first_check_that_heard_no_words_is_asked_again_half_a_step_later() {
    // the recogniser answers in 80 ms and makes nothing of the first 200 ms: the words are asked
    // for again at 300 ms of speech, not at 400, and the agent stops within 400 ms
    let (sim, asked) = sorry_not_heard_by_the_first_check(80);
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[1] - asked[0], 100, "{asked:?}");
    let took = sim.clear_times[0] - sim.talk_over_at[0];
    assert!(took <= 400, "stopped {took} ms after the caller started");
    // a first check that heard words (a backchannel) keeps the steps: 200 and 400 ms
    let mut sim = Sim::with_partials(
        talked_over(Act::SayOver {
            after_ms: 300,
            ms: 500,
            text: "okay",
        }),
        80,
    );
    sim.run(180_000);
    assert_eq!(sim.clears, 0);
    let asked: Vec<u64> = sim.partials_asked.iter().map(|&(at, _)| at).collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[1] - asked[0], 200, "{asked:?}");
}

#[test]
fn with_words_checked_talk_heard_while_its_words_were_decoded_is_asked_again_at_once() {
    // the recogniser takes 250 ms, more than a step of the check (200 ms), and makes nothing of
    // the first 200 ms: the words it has by the time it answers are asked for then, not at the
    // next step (600 ms of speech) nor left to the sure stop (800 ms)
    let (sim, asked) = sorry_not_heard_by_the_first_check(250);
    assert_eq!(asked.len(), 2, "{asked:?}");
    // when the first answer came (the simulation steps a frame at a time)
    assert!(
        (asked[0] + 250..=asked[0] + 250 + 20).contains(&asked[1]),
        "{asked:?}"
    );
    let took = sim.clear_times[0] - sim.talk_over_at[0];
    assert!(took <= 760, "stopped {took} ms after the caller started");
}

#[test]
fn a_backchannel_that_stops_the_agent_gets_the_sentence_again() {
    let mut script = vec![
        Act::Say {
            ms: 800,
            text: Some("my name is john smith"),
        },
        // "uh-huh" over "Thank you, John. Which city or area do you live in?"
        Act::SayOver {
            after_ms: 100,
            ms: 500,
            text: "uh huh",
        },
    ];
    script.extend(happy_script().into_iter().skip(1));
    let mut sim = Sim::new(settings(), false, script);
    sim.run(120_000);
    assert!(sim.clears >= 1, "the agent was stopped");
    assert_eq!(
        sim.ended,
        Some(EndReason::Completed),
        "{:#?}\n{:#?}",
        sim.speaks,
        sim.transcript()
    );
    // said again after the backchannel, then answered as usual
    let asked = sim
        .speaks
        .iter()
        .filter(|(_, t)| t == crate::engine::dialogue::LOCATION_QUESTION)
        .count();
    assert_eq!(asked, 2, "{:?}", sim.speaks);
    assert!(sim.events.contains(&CallEvent::Location {
        location: "Chicago".into()
    }));
    assert_eq!(sim.answers().len(), 2);
    // the backchannel is in the transcript, and was not taken for a city
    assert!(sim.transcript().iter().any(|l| l.text == "uh huh"));
}

#[test]
fn disclosures_cannot_be_interrupted() {
    let mut sim = Sim::new(
        settings(),
        false,
        vec![Act::SayOver {
            after_ms: 200,
            ms: 2000,
            text: "hello hello",
        }],
    );
    sim.run(15_000);
    assert_eq!(sim.clears, 0);
    let d = sim.disclosures();
    assert_eq!(d.len(), 3);
    assert!(d.iter().all(|d| d.played_in_full));
}

#[test]
fn keypad_answers_a_yes_no_question() {
    let mut s = settings();
    s.collect_location = false;
    let mut sim = Sim::new(
        s,
        false,
        vec![
            Act::Say {
                ms: 600,
                text: Some("i'm maria"),
            },
            Act::Key('2'),
            Act::HangUp { after_ms: 2000 },
        ],
    );
    sim.run(60_000);
    let a = sim.answers();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].value, AnswerValue::No);
    assert!(a[0].via_dtmf);
    assert!(a[0].dealbreaker_failed);
}

#[test]
fn silence_gets_reminders_then_a_polite_hang_up() {
    let mut sim = Sim::new(settings(), false, vec![]);
    sim.run(120_000);
    assert_eq!(sim.ended, Some(EndReason::Silence));
    let reminders = sim
        .speaks
        .iter()
        .filter(|(_, t)| t == "Are you still there?")
        .count();
    assert_eq!(reminders, 2);
    assert!(
        sim.speaks
            .last()
            .unwrap()
            .1
            .contains("I haven't heard anything")
    );
}

#[test]
fn a_failing_recogniser_gets_an_apology_not_dead_air() {
    let mut sim = Sim::new(
        settings(),
        false,
        vec![
            Act::Say {
                ms: 600,
                text: None,
            },
            Act::Say {
                ms: 600,
                text: Some("my name is john smith"),
            },
            Act::HangUp { after_ms: 3000 },
        ],
    );
    sim.run(60_000);
    assert!(
        sim.speaks
            .iter()
            .any(|(_, t)| t == crate::engine::dialogue::APOLOGY)
    );
    assert!(
        sim.events
            .iter()
            .any(|e| matches!(e, CallEvent::Name { .. }))
    );
}

#[test]
fn a_recogniser_that_never_answers_times_out_into_an_apology() {
    let mut sim = Sim::new(
        settings(),
        false,
        vec![Act::Say {
            ms: 600,
            text: Some("john"),
        }],
    );
    sim.stt_silent = true;
    sim.run(200_000);
    assert!(
        sim.speaks
            .iter()
            .any(|(_, t)| t == crate::engine::dialogue::APOLOGY)
    );
    // repeated silence after it still ends the call politely
    assert!(sim.ended.is_some());
}

#[test]
fn failing_synthesis_falls_back_to_an_apology() {
    let mut sim = Sim::new(
        settings(),
        false,
        vec![
            Act::Say {
                ms: 600,
                text: Some("my name is john smith"),
            },
            Act::HangUp { after_ms: 4000 },
        ],
    );
    sim.tts_fail.push("Which city".into());
    sim.run(60_000);
    assert!(
        sim.speaks
            .iter()
            .any(|(_, t)| t == crate::engine::dialogue::APOLOGY)
    );
}

#[test]
fn caller_hang_up_mid_sentence_keeps_answers_and_flushes_the_recording() {
    let mut sim = Sim::new(
        settings(),
        false,
        vec![
            Act::Say {
                ms: 800,
                text: Some("my name is john smith"),
            },
            // during "Thank you, John. Which city or area do you live in?"
            Act::HangUp { after_ms: 1800 },
        ],
    );
    sim.run(60_000);
    assert_eq!(sim.ended, Some(EndReason::CallerHangup));
    assert!(
        sim.events
            .iter()
            .any(|e| matches!(e, CallEvent::Name { .. }))
    );
    let rec_ms = sim.record.len() as u64 * 20;
    assert!(
        rec_ms + 40 >= sim.now_ms && rec_ms <= sim.now_ms + 40,
        "{rec_ms} vs {}",
        sim.now_ms
    );
    // the agent line being spoken at hang-up is kept as interrupted
    assert!(sim.transcript().iter().any(|l| l.interrupted));
}

#[test]
fn max_call_length_closes_the_call() {
    let timing = Timing {
        max_call: Duration::from_secs(12),
        silence_reminder: Duration::from_secs(60),
        ..Timing::default()
    };
    let mut sim = Sim::with_timing(settings(), false, vec![], timing);
    sim.run(120_000);
    assert_eq!(sim.ended, Some(EndReason::MaxDuration));
    assert!(
        sim.speaks
            .iter()
            .any(|(_, t)| t == crate::engine::dialogue::TIME_LIMIT_GOODBYE)
    );
}

/// Runs 20 ms at a time until `done` or `limit_ms`.
fn run_until(sim: &mut Sim, limit_ms: u64, mut done: impl FnMut(&Sim) -> bool) {
    while !done(sim) && sim.ended.is_none() && sim.now_ms < limit_ms {
        let next = sim.now_ms + 20;
        sim.run(next);
    }
}

#[test]
fn draining_stops_the_agent_says_goodbye_and_ends_the_call() {
    let mut sim = Sim::new(
        settings(),
        false,
        vec![Act::Say {
            ms: 800,
            text: Some("my name is john smith"),
        }],
    );
    // the agent is answering the name ("Thank you, John. Which city...")
    run_until(&mut sim, 60_000, |s| {
        s.events.iter().any(|e| matches!(e, CallEvent::Name { .. })) && !s.carrier.is_idle()
    });
    assert!(sim.ended.is_none());
    let clears = sim.clears;
    sim.input(Input::Drain);
    assert_eq!(
        sim.clears,
        clears + 1,
        "the reply is cleared at the carrier"
    );
    // a second drain while the goodbye plays changes nothing
    let until = sim.now_ms + 500;
    sim.run(until);
    sim.input(Input::Drain);
    sim.run(sim.now_ms + 30_000);
    assert_eq!(sim.ended, Some(EndReason::ServerShutdown));
    let goodbyes = sim
        .speaks
        .iter()
        .filter(|(_, t)| t == crate::engine::dialogue::DRAIN_GOODBYE)
        .count();
    assert_eq!(goodbyes, 1);
    let t = sim.transcript();
    let last = t.last().unwrap();
    assert_eq!(last.text, crate::engine::dialogue::DRAIN_GOODBYE);
    assert!(!last.interrupted, "the goodbye played to the end: {t:#?}");
    assert!(t.iter().any(|l| l.interrupted), "the reply it cut: {t:#?}");
    // the name captured before the drain is kept
    assert!(sim.events.contains(&CallEvent::Name {
        name: "John Smith".into()
    }));
}

#[test]
fn draining_while_the_caller_talks_drops_the_utterance_and_says_goodbye() {
    let mut sim = Sim::new(
        settings(),
        false,
        vec![Act::Say {
            ms: 3_000,
            text: Some("my name is john smith"),
        }],
    );
    run_until(&mut sim, 60_000, |s| s.speaking_until.is_some());
    let until = sim.now_ms + 1_000;
    sim.run(until);
    sim.input(Input::Drain);
    sim.run(sim.now_ms + 30_000);
    assert_eq!(sim.ended, Some(EndReason::ServerShutdown));
    assert!(
        !sim.events
            .iter()
            .any(|e| matches!(e, CallEvent::Name { .. })),
        "the utterance cut by the drain is not answered"
    );
    assert_eq!(
        sim.transcript().last().map(|l| l.text.as_str()),
        Some(crate::engine::dialogue::DRAIN_GOODBYE)
    );
}

#[test]
fn a_carrier_that_never_echoes_keeps_pending_marks_bounded_for_fifteen_minutes() {
    let timing = Timing {
        max_call: Duration::from_secs(15 * 60),
        ..Timing::default()
    };
    // through the questions, then "yes" ("Sure, what would you like to know?") until the time
    // limit: a turn every few seconds
    let mut script = happy_script()[..4].to_vec();
    script.extend((0..1_000).map(|_| Act::Say {
        ms: 400,
        text: Some("yes"),
    }));
    let mut sim = Sim::with_timing(settings(), false, script, timing);
    sim.drop_echoes = true;
    let (mut most, mut most_idle) = (0, 0);
    run_until(&mut sim, 17 * 60_000, |s| {
        most = most.max(s.engine.pending_marks());
        // a sentence the clock has ended takes its marks with it
        if s.carrier.is_idle() && s.now_ms >= s.agent_last_audio_ms + 200 {
            most_idle = most_idle.max(s.engine.pending_marks());
        }
        false
    });
    assert_eq!(sim.ended, Some(EndReason::MaxDuration));
    assert!(sim.now_ms >= 15 * 60_000);
    assert!(
        sim.marks_sent > 20 * playout::MAX_PENDING_MARKS,
        "{} marks sent",
        sim.marks_sent
    );
    assert!(most <= playout::MAX_PENDING_MARKS, "{most} marks pending");
    assert_eq!(most_idle, 0, "marks kept after their sentence ended");
    assert!(
        sim.transcript().len() > 300,
        "the call went on turn after turn"
    );
}

#[test]
fn a_carrier_that_never_echoes_marks_still_moves_on() {
    let mut sim = Sim::on(
        Carrier::Vonage,
        carrier::codecs(Carrier::Vonage)[0],
        settings(),
        false,
        happy_script(),
        Timing::default(),
    );
    sim.run(240_000);
    assert_eq!(sim.ended, Some(EndReason::Completed));
    // without echoes nothing is confirmed as played in full
    assert!(sim.disclosures().iter().all(|d| !d.played_in_full));
}

#[test]
fn garbage_marks_and_stray_inputs_are_ignored() {
    let mut sim = Sim::new(settings(), false, vec![]);
    sim.input(Input::MarkEchoed("nonsense"));
    sim.input(Input::MarkEchoed("s999f10"));
    sim.input(Input::Transcript {
        utterance: 42,
        text: "stale",
    });
    sim.input(Input::TtsAudio {
        speech: 999,
        mulaw: Arc::from(vec![0u8; 10]),
    });
    sim.input(Input::Dtmf('x'));
    sim.input(Input::CallerAudio {
        timestamp_ms: None,
        mulaw: &[],
    });
    sim.input(Input::CallerAudio {
        timestamp_ms: Some(u64::MAX),
        mulaw: &[0xFF; 7],
    });
    sim.run(5_000);
    assert!(sim.ended.is_none());
    assert!(
        sim.engine
            .handle_input(sim.now(), Input::Disconnected)
            .is_ok()
    );
    assert!(matches!(
        sim.engine.handle_input(sim.now(), Input::Tick),
        Err(CallError::Ended)
    ));
}

#[test]
fn returning_caller_is_welcomed_back() {
    let mut s = settings();
    s.custom_context = "If you already applied, expect a reply within 3 days.".into();
    let mut sim = Sim::new(
        s,
        true,
        vec![
            Act::Say {
                ms: 600,
                text: Some("my name is john smith"),
            },
            Act::HangUp { after_ms: 1000 },
        ],
    );
    sim.run(60_000);
    assert!(
        sim.speaks
            .iter()
            .any(|(_, t)| t.contains("already applied"))
    );
}

#[test]
fn mark_names_round_trip() {
    for id in [
        MarkId {
            speech: 3,
            frames: 10,
            last: false,
        },
        MarkId {
            speech: 12,
            frames: 57,
            last: true,
        },
    ] {
        assert_eq!(MarkId::parse(&id.to_string()), Some(id));
    }
    assert_eq!(MarkId::parse("bogus"), None);
}

/// A call with every kind of turn: a spoken answer, a barge-in, a key press, a hang-up.
fn whole_call_on(carrier: Carrier, codec: AudioCodec) -> Sim {
    let mut sim = Sim::on(
        carrier,
        codec,
        settings(),
        false,
        vec![
            Act::Say {
                ms: 800,
                text: Some("my name is john smith"),
            },
            Act::Say {
                ms: 600,
                text: Some("i live in chicago"),
            },
            // "Are you at least 18 years old?": 1 is yes
            Act::Key('1'),
            // talk over "How many years of warehouse experience do you have?"
            Act::SayOver {
                after_ms: 300,
                ms: 700,
                text: "three years",
            },
            Act::HangUp { after_ms: 3000 },
        ],
        Timing::default(),
    );
    sim.run(120_000);
    sim
}

fn check_whole_call(carrier: Carrier, codec: AudioCodec, sim: &Sim) {
    let what = format!("{carrier} {codec}");
    let hang_up = if carrier == Carrier::Vonage {
        // no `stop` on Vonage: the socket closes
        EndReason::Disconnected
    } else {
        EndReason::CallerHangup
    };
    assert_eq!(sim.ended, Some(hang_up), "{what}: {:#?}", sim.events);
    assert!(
        sim.events.contains(&CallEvent::Name {
            name: "John Smith".into()
        }),
        "{what}"
    );
    assert!(
        sim.events.contains(&CallEvent::Location {
            location: "Chicago".into()
        }),
        "{what}"
    );
    let a = sim.answers();
    assert_eq!(a.len(), 2, "{what}: {a:?}");
    assert_eq!(a[0].value, AnswerValue::Yes, "{what}");
    assert!(a[0].via_dtmf, "{what}");
    assert_eq!(a[1].value, AnswerValue::Number(3.0), "{what}");

    let d = sim.disclosures();
    assert_eq!(d.len(), 3, "{what}");
    // only a carrier that echoes marks can confirm that a disclosure played in full
    let echoes = carrier != Carrier::Vonage;
    assert!(
        d.iter().all(|d| d.played_in_full == echoes),
        "{what}: {d:?}"
    );

    assert_eq!(sim.clears, 1, "{what}: one clear on barge-in");
    assert_eq!(sim.carrier.clears(), 1, "{what}");
    let t = sim.transcript();
    assert!(t.iter().any(|l| l.interrupted), "{what}");
    // the caller heard the agent, and less than the carrier received (the barge-in's clear
    // dropped some) and than the engine sent (but on Exotel, which pads each utterance's end
    // to a whole chunk with silence)
    let heard = sim.carrier.heard().len() as u64;
    assert!(heard > 8000, "{what}: {heard} samples heard");
    let received = sim.carrier.samples_received();
    assert!(
        heard < received,
        "{what}: {heard} of {received} samples heard"
    );
    if carrier != Carrier::Exotel {
        assert!(
            heard < sim.sent_media as u64 * 160,
            "{what}: {heard} samples heard"
        );
    }
    if echoes {
        assert!(sim.carrier.marks_echoed() > 0, "{what}");
    }
}

#[test]
fn a_whole_call_on_twilio() {
    let sim = whole_call_on(Carrier::Twilio, AudioCodec::Mulaw);
    check_whole_call(Carrier::Twilio, AudioCodec::Mulaw, &sim);
}

#[test]
fn a_whole_call_on_telnyx() {
    let codec = carrier::codecs(Carrier::Telnyx)[0];
    check_whole_call(
        Carrier::Telnyx,
        codec,
        &whole_call_on(Carrier::Telnyx, codec),
    );
}

#[test]
fn a_whole_call_on_plivo() {
    let codec = carrier::codecs(Carrier::Plivo)[0];
    check_whole_call(Carrier::Plivo, codec, &whole_call_on(Carrier::Plivo, codec));
}

#[test]
fn a_whole_call_on_vonage_without_mark_echoes() {
    let codec = carrier::codecs(Carrier::Vonage)[0];
    let sim = whole_call_on(Carrier::Vonage, codec);
    check_whole_call(Carrier::Vonage, codec, &sim);
    assert_eq!(sim.carrier.marks_echoed(), 0);
}

#[test]
fn a_whole_call_on_signalwire() {
    let codec = carrier::codecs(Carrier::SignalWire)[0];
    check_whole_call(
        Carrier::SignalWire,
        codec,
        &whole_call_on(Carrier::SignalWire, codec),
    );
}

#[test]
fn a_whole_call_on_exotel() {
    let codec = carrier::codecs(Carrier::Exotel)[0];
    check_whole_call(
        Carrier::Exotel,
        codec,
        &whole_call_on(Carrier::Exotel, codec),
    );
}

/// Every other codec a carrier offers (A-law, L16 at 8 and 16 kHz, Opus with the feature).
#[test]
fn a_whole_call_in_every_codec() {
    for carrier in Carrier::ALL {
        for codec in carrier::codecs(carrier).into_iter().skip(1) {
            check_whole_call(carrier, codec, &whole_call_on(carrier, codec));
        }
    }
}

// ---- the language model in the dialogue ------------------------------------------------------

/// Reads the caller's words as a model would, from the words the tests use.
fn read(r: &UnderstandRequest) -> ModelAct {
    let mut u = Understanding::default();
    match r.utterance.as_str() {
        "it's maria lopez and i live in austin" => {
            u.name = Some("Maria Lopez".into());
            u.location = Some("austin".into());
        }
        "yes and i've got three years" => {
            u.answers = vec![(0, "yes".into()), (1, "3".into())];
        }
        "yes" => u.answers = vec![(0, "yes".into())],
        "i have three years" => u.answers = vec![(1, "3".into())],
        "how much does it pay" | "what's the pay" => {
            u.caller_question = Some("how much does it pay".into())
        }
        "where is the office" => u.caller_question = Some("where is the office".into()),
        "no that's all" => u.wants_to_end = true,
        // a model that invents: a name the caller never said
        "hello there" => u.name = Some("Robert Jones".into()),
        _ => {}
    }
    ModelAct::Read(u)
}

fn answer(r: &AnswerRequest) -> (Vec<&'static str>, bool) {
    match r.question.as_str() {
        // the second sentence invents a promise: never spoken, nor anything after it
        "how much does it pay" => (
            vec![
                "Pay is $18 ",
                "per hour. You are guaranteed ",
                "a raise. And free lunch.",
            ],
            true,
        ),
        // invented from the start: the caller hears that a recruiter will follow up
        "where is the office" => (vec!["It's at 12 Main Street."], true),
        _ => (vec![], true),
    }
}

fn scripted_model() -> ScriptedModel {
    ScriptedModel {
        understand: Box::new(read),
        answer: Box::new(answer),
    }
}

fn say(ms: u64, text: &'static str) -> Act {
    Act::Say {
        ms,
        text: Some(text),
    }
}

fn spoken(sim: &Sim, text: &str) -> usize {
    sim.speaks.iter().filter(|(_, t)| t == text).count()
}

#[test]
fn the_model_reads_answers_given_out_of_order_and_each_is_asked_once() {
    let mut sim = Sim::with_model(
        settings(),
        vec![
            say(1200, "it's maria lopez and i live in austin"),
            say(900, "yes and i've got three years"),
            say(700, "no that's all"),
        ],
        scripted_model(),
    );
    sim.run(120_000);
    assert_eq!(sim.ended, Some(EndReason::Completed));
    let names: Vec<_> = sim
        .events
        .iter()
        .filter_map(|e| match e {
            CallEvent::Name { name } => Some(name.as_str()),
            CallEvent::Location { location } => Some(location.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["Maria Lopez", "Austin"]);
    // the location was given with the name: never asked
    assert_eq!(spoken(&sim, crate::engine::dialogue::LOCATION_QUESTION), 0);
    let s = settings();
    assert_eq!(spoken(&sim, &s.questions[0].text), 1);
    assert_eq!(
        spoken(&sim, &s.questions[1].text),
        0,
        "answered with the first question"
    );
    let answers = sim.answers();
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0].value, AnswerValue::Yes);
    assert_eq!(answers[1].value, AnswerValue::Number(3.0));
    assert_eq!(answers[1].meets_expected, Some(true));
    assert!(answers.iter().all(|a| a.attempts == 1 && !a.via_dtmf));
    assert_eq!(sim.consulted.len(), 3, "one reading per caller turn");
    // the model's turns are timed: its first result 200 ms after the transcript
    let latencies: Vec<_> = sim
        .events
        .iter()
        .filter_map(|e| match e {
            CallEvent::Latency(l) => Some(l.clone()),
            _ => None,
        })
        .collect();
    assert!(!latencies.is_empty());
    assert!(
        latencies
            .iter()
            .all(|l| l.llm_first_ms == Some(200) && l.llm_ms == Some(200))
    );
}

#[test]
fn a_question_mid_screening_is_answered_then_the_question_asked_again() {
    let mut s = settings();
    s.collect_location = false;
    let mut sim = Sim::with_model(
        s.clone(),
        vec![
            say(1200, "it's maria lopez and i live in austin"),
            say(900, "how much does it pay"),
            say(500, "yes"),
            say(800, "i have three years"),
            say(700, "no that's all"),
        ],
        scripted_model(),
    );
    sim.run(120_000);
    assert_eq!(sim.ended, Some(EndReason::Completed));
    // the trusted sentence is said; the invented promise and all after it are not
    assert_eq!(spoken(&sim, "Pay is $18 per hour."), 1);
    assert!(
        !sim.speaks
            .iter()
            .any(|(_, t)| t.contains("guaranteed") || t.contains("lunch")),
        "{:?}",
        sim.speaks
    );
    assert!(
        !sim.speaks
            .iter()
            .any(|(_, t)| t == crate::engine::dialogue::model::NO_ANSWER),
        "something true was said"
    );
    // the screening question again after the answer, not counted as a re-ask
    assert_eq!(spoken(&sim, &s.questions[0].text), 2);
    let answers = sim.answers();
    assert_eq!(answers[0].value, AnswerValue::Yes);
    assert_eq!(answers[0].attempts, 1);
    assert_eq!(answers[1].value, AnswerValue::Number(3.0));
    // the answer stream was cut off once untrusted
    assert_eq!(sim.consults_cancelled.len(), 1);
}

#[test]
fn invented_facts_are_never_spoken_nor_invented_names_kept() {
    let mut sim = Sim::with_model(
        settings(),
        vec![
            say(700, "hello there"),
            say(1200, "it's maria lopez and i live in austin"),
            say(900, "yes and i've got three years"),
            say(900, "where is the office"),
            say(700, "no that's all"),
        ],
        scripted_model(),
    );
    sim.run(120_000);
    assert_eq!(sim.ended, Some(EndReason::Completed));
    assert!(
        !sim.events
            .iter()
            .any(|e| matches!(e, CallEvent::Name { name } if name.contains("Robert"))),
        "a name the caller never said"
    );
    assert!(!sim.speaks.iter().any(|(_, t)| t.contains("Main Street")));
    assert_eq!(
        spoken(&sim, crate::engine::dialogue::model::NO_ANSWER),
        1,
        "{:?}",
        sim.speaks
    );
}

#[test]
fn a_failing_or_silent_model_hands_the_call_to_the_rules() {
    for silent in [false, true] {
        let model = ScriptedModel {
            understand: Box::new(move |_| {
                if silent {
                    ModelAct::Silent
                } else {
                    ModelAct::Fail
                }
            }),
            answer: Box::new(answer),
        };
        let mut sim = Sim::with_model(settings(), happy_script(), model);
        sim.run(120_000);
        assert_eq!(sim.ended, Some(EndReason::Completed));
        assert_eq!(sim.consulted.len(), 1, "not asked again after it failed");
        // given up on (a model that never answers, at its deadline) and cancelled
        assert_eq!(sim.consults_cancelled, vec![1]);
        assert_eq!(sim.answers().len(), 2);
        assert!(
            sim.events
                .iter()
                .any(|e| matches!(e, CallEvent::Name { name } if name == "John Smith"))
        );
    }
}

#[test]
fn barge_in_during_a_streamed_answer_cancels_the_model() {
    let model = ScriptedModel {
        understand: Box::new(read),
        // a first long sentence, then the stream stalls
        answer: Box::new(|_| {
            (
                vec![
                    "Pay is $18 per hour and shifts start at 6 am, and that is the same for every shift that we run. ",
                ],
                false,
            )
        }),
    };
    let mut s = settings();
    s.questions.clear();
    s.collect_location = false;
    let mut sim = Sim::with_model(
        s,
        vec![
            say(1200, "it's maria lopez and i live in austin"),
            say(900, "what's the pay"),
            Act::SayOver {
                after_ms: 800,
                ms: 900,
                text: "no that's all",
            },
        ],
        model,
    );
    sim.run(120_000);
    assert!(sim.clears >= 1, "the agent was stopped");
    assert_eq!(
        sim.consults_cancelled.len(),
        1,
        "the stalled answer is cancelled"
    );
    assert_eq!(sim.ended, Some(EndReason::Completed));
}

#[test]
fn draining_while_the_model_thinks_cancels_the_consultation() {
    let model = ScriptedModel {
        understand: Box::new(|_| ModelAct::Silent),
        answer: Box::new(answer),
    };
    let mut sim = Sim::with_model(settings(), happy_script(), model);
    run_until(&mut sim, 60_000, |s| !s.consulted.is_empty());
    assert!(sim.consults_cancelled.is_empty(), "still thinking");
    sim.input(Input::Drain);
    sim.run(sim.now_ms + 30_000);
    assert_eq!(sim.consults_cancelled, vec![1]);
    assert_eq!(sim.ended, Some(EndReason::ServerShutdown));
    assert_eq!(spoken(&sim, crate::engine::dialogue::DRAIN_GOODBYE), 1);
}
