//! `CallEngine`: one call as a pure state machine. It composes the inbound audio pipeline
//! (decode → resample → VAD), turn-taking (endpointing, barge-in, silence), outbound pacing with
//! carrier marks, the two-channel recording timeline and the dialogue.
//!
//! Grammar (quinn/str0m): `handle_input(now, input)` mutates; then drain `poll_output()` until it
//! returns `Output::Timeout(deadline)`; call `handle_input(now, Input::Tick)` at that deadline.
//! The engine never reads the clock.
//!
//! Time is call time: milliseconds since the engine was created (the carrier's `start`).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::audio::{self, InboundPipeline, SAMPLES_8K, SAMPLES_16K, g711};
use crate::engine::dialogue::{Dialogue, Expect, Next, PromptKind, Reply, Turn};
use crate::model::{
    CallEvent, DisclosureRecord, EndReason, QuestionKind, ReceptionistSettings, Speaker,
    TranscriptLine, TurnLatency,
};

const FRAME: u64 = audio::FRAME_MS;

/// Turn-taking and pacing knobs. Durations are rounded to 20 ms frames.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Consecutive speech needed to decide the caller started talking.
    pub speech_onset: Duration,
    /// Speech needed during interruptible agent speech before the agent stops (barge-in).
    pub barge_in: Duration,
    /// Utterances shorter than this (clicks, coughs) are discarded.
    pub min_utterance: Duration,
    /// Silence that ends the caller's turn.
    pub endpoint: Duration,
    /// Longer silence allowed when a number or free text is expected (people pause mid-answer).
    pub endpoint_long: Duration,
    /// Longest caller utterance before it is cut and processed.
    pub max_utterance: Duration,
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
    /// How far ahead of real time agent audio is sent to the carrier.
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
            min_utterance: Duration::from_millis(160),
            endpoint: Duration::from_millis(700),
            endpoint_long: Duration::from_millis(1200),
            max_utterance: Duration::from_secs(20),
            pre_roll: Duration::from_millis(200),
            silence_reminder: Duration::from_secs(8),
            dtmf_gap: Duration::from_millis(2500),
            stt_timeout: Duration::from_secs(6),
            tts_timeout: Duration::from_secs(4),
            pacing_lead: Duration::from_millis(200),
            mark_every_frames: 10,
            mark_grace: Duration::from_millis(1500),
            max_call: Duration::from_secs(900),
            recording_delay: Duration::from_millis(400),
        }
    }
}

/// Everything one call needs.
#[derive(Clone)]
pub struct EngineConfig {
    pub settings: Arc<ReceptionistSettings>,
    /// The caller is already a candidate in this workspace.
    pub returning_caller: bool,
    pub timing: Timing,
}

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
    TtsFailed {
        speech: u64,
    },
    /// The carrier said the call ended (`stop`).
    CarrierStop,
    /// The socket closed without `stop`.
    Disconnected,
    /// The driver gives up on the call (protocol violation, shutdown).
    Abort(EndReason),
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
    /// 20 ms of µ-law agent audio.
    Media([u8; SAMPLES_8K]),
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
    /// A chunk of the two-channel recording is ready: take it with
    /// [`CallEngine::take_recording`].
    Recording,
    /// Persist this.
    Event(CallEvent),
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

#[derive(Debug)]
struct Segment {
    speech: u64,
    text: String,
    interruptible: bool,
    kind: PromptKind,
    requested_ms: u64,
    audio: Option<Arc<[u8]>>,
    /// Bytes of audio sent.
    pos: usize,
    frames_sent: u32,
    /// Frames the carrier confirmed played.
    frames_heard: u32,
    first_play_ms: Option<u64>,
    /// Estimated time the last frame finishes playing.
    play_end_ms: u64,
    end_mark_sent: bool,
}

impl Segment {
    fn total_frames(&self) -> u32 {
        self.audio
            .as_ref()
            .map(|a| a.len().div_ceil(SAMPLES_8K) as u32)
            .unwrap_or(0)
    }
    fn all_sent(&self) -> bool {
        self.audio.as_ref().is_some_and(|a| self.pos >= a.len())
    }
}

#[derive(Debug, Clone, Copy)]
struct PendingMark {
    id: MarkId,
    cleared: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// The agent is speaking the current turn.
    Speaking,
    /// Waiting for the caller. `since_ms` restarts the silence timer.
    Listening { since_ms: u64 },
    /// The caller is talking.
    Capturing,
    /// Waiting for the transcript of `utterance`.
    Transcribing { utterance: u64, since_ms: u64 },
    /// Saying goodbye; hang up with the reason once it has played.
    Ended,
}

#[derive(Debug, Default)]
struct Capture {
    utterance: u64,
    start_ms: u64,
    last_speech_ms: u64,
    speech_frames: u32,
    silence_frames: u32,
    frames: u32,
    /// Started while the agent spoke (a possible barge-in).
    during_agent: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Latency {
    last_speech_ms: u64,
    endpoint_ms: u64,
    transcript_ms: Option<u64>,
}

/// Pending recording slots, committed in order after `recording_delay` into interleaved
/// (caller, agent) chunks.
struct Recorder {
    base_slot: u64,
    slots: VecDeque<RecordFrame>,
    dropped_late: u64,
    chunk: Vec<i16>,
}

/// Slots that may be pending at once: the recording delay plus the pacing lead, with margin.
const MAX_PENDING_SLOTS: usize = 36;
/// Interleaved samples per recording chunk: 12 slots (240 ms) of stereo audio; a whole number of
/// slots, so a chunk never outgrows its allocation.
pub const RECORDING_CHUNK_SAMPLES: usize = 12 * SAMPLES_8K * 2;

impl Recorder {
    fn new() -> Self {
        Self {
            base_slot: 0,
            slots: VecDeque::with_capacity(MAX_PENDING_SLOTS),
            dropped_late: 0,
            chunk: Vec::with_capacity(RECORDING_CHUNK_SAMPLES),
        }
    }

    /// Hand over the samples committed so far.
    fn take(&mut self) -> Vec<i16> {
        std::mem::replace(&mut self.chunk, Vec::with_capacity(RECORDING_CHUNK_SAMPLES))
    }

    /// Mutable slot `slot`, creating silent slots up to it; `None` when already committed.
    fn slot(&mut self, slot: u64, out: &mut VecDeque<Output>) -> Option<&mut RecordFrame> {
        if slot < self.base_slot {
            self.dropped_late += 1;
            return None;
        }
        while slot >= self.base_slot + MAX_PENDING_SLOTS as u64 {
            self.commit_one(out);
        }
        let idx = (slot - self.base_slot) as usize;
        while self.slots.len() <= idx {
            let s = self.base_slot + self.slots.len() as u64;
            self.slots.push_back(RecordFrame {
                slot: s,
                caller: [0; SAMPLES_8K],
                agent: [0; SAMPLES_8K],
            });
        }
        self.slots.get_mut(idx)
    }

    fn commit_one(&mut self, out: &mut VecDeque<Output>) {
        match self.slots.pop_front() {
            Some(frame) => {
                for (c, a) in frame.caller.iter().zip(frame.agent.iter()) {
                    self.chunk.push(*c);
                    self.chunk.push(*a);
                }
            }
            None => self.chunk.extend_from_slice(&[0; SAMPLES_8K * 2]),
        }
        self.base_slot += 1;
        if self.chunk.len() >= RECORDING_CHUNK_SAMPLES {
            out.push_back(Output::Recording);
        }
    }

    /// Commit every slot that ends at or before `upto_ms`.
    fn commit_until(&mut self, upto_ms: u64, out: &mut VecDeque<Output>) {
        while (self.base_slot + 1) * FRAME <= upto_ms {
            self.commit_one(out);
        }
    }

    /// Erase agent audio at and after `from_ms` (it was cleared before playing).
    fn erase_agent_from(&mut self, from_ms: u64) {
        let from_slot = from_ms / FRAME;
        for f in self.slots.iter_mut() {
            if f.slot >= from_slot {
                f.agent = [0; SAMPLES_8K];
            }
        }
    }
}

/// Recent caller audio at 16 kHz: the pre-roll before speech onset, and captured frames waiting
/// for the driver. Fixed size, allocated once; when the driver falls behind, the oldest
/// undelivered frames are lost and counted.
struct SttRing {
    frames: Box<[[i16; SAMPLES_16K]; STT_RING_FRAMES]>,
    /// Utterance of each frame; 0 for audio outside any utterance.
    tags: [u64; STT_RING_FRAMES],
    next: usize,
    filled: usize,
    undelivered: usize,
    dropped: u64,
}

const STT_RING_FRAMES: usize = 16;

impl SttRing {
    fn new() -> Self {
        Self {
            frames: Box::new([[0; SAMPLES_16K]; STT_RING_FRAMES]),
            tags: [0; STT_RING_FRAMES],
            next: 0,
            filled: 0,
            undelivered: 0,
            dropped: 0,
        }
    }

    /// Keep a frame; `utterance` 0 keeps it only as pre-roll.
    fn push(&mut self, pcm: &[i16; SAMPLES_16K], utterance: u64) {
        self.frames[self.next] = *pcm;
        self.tags[self.next] = utterance;
        self.next = (self.next + 1) % STT_RING_FRAMES;
        self.filled = (self.filled + 1).min(STT_RING_FRAMES);
        if utterance != 0 {
            self.deliver(1);
        }
    }

    /// Give the last `n` frames (the pre-roll) to `utterance`.
    fn claim_last(&mut self, n: usize, utterance: u64) {
        let n = n.min(self.filled).min(STT_RING_FRAMES - self.undelivered);
        for i in 0..n {
            let idx = (self.next + STT_RING_FRAMES - 1 - i) % STT_RING_FRAMES;
            self.tags[idx] = utterance;
        }
        self.deliver(n);
    }

    fn deliver(&mut self, n: usize) {
        self.undelivered += n;
        if self.undelivered > STT_RING_FRAMES {
            self.dropped += (self.undelivered - STT_RING_FRAMES) as u64;
            self.undelivered = STT_RING_FRAMES;
        }
    }

    fn pop(&mut self) -> Option<(u64, &[i16; SAMPLES_16K])> {
        if self.undelivered == 0 {
            return None;
        }
        let idx = (self.next + STT_RING_FRAMES - self.undelivered) % STT_RING_FRAMES;
        self.undelivered -= 1;
        Some((self.tags[idx], &self.frames[idx]))
    }
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
    segments: VecDeque<Segment>,
    next_speech: u64,
    /// Call time at which audio already queued at the carrier finishes playing.
    play_cursor_ms: u64,
    pending_marks: VecDeque<PendingMark>,
    /// Speech ids cancelled by barge-in; late audio for them is dropped.
    cancelled_below: u64,
    capture: Option<Capture>,
    next_utterance: u64,
    stt_ring: SttRing,
    /// An `Output::SttAudio` is queued and not yet drained.
    stt_signalled: bool,
    speech_run: u32,
    caller_slot: u64,
    recorder: Recorder,
    dtmf: String,
    dtmf_last_ms: u64,
    turn_count: u32,
    latency: Option<Latency>,
    /// Start and end of the caller utterance being transcribed.
    pending_caller_line: Option<(u64, u64)>,
    time_limit_hit: bool,
    /// Whether this carrier echoes marks: unknown until the first echo or the first segment
    /// that finished without one.
    carrier_echoes: Option<bool>,
    ended: Option<EndReason>,
    finished: bool,
}

fn frames(d: Duration) -> u32 {
    (d.as_millis() as u64 / FRAME).max(1) as u32
}

impl CallEngine {
    pub fn new(now: Instant, config: EngineConfig) -> Self {
        Self::with_pipeline(now, config, InboundPipeline::with_default_vad())
    }

    /// With a given inbound pipeline (tests choose the VAD).
    pub fn with_pipeline(now: Instant, config: EngineConfig, pipeline: InboundPipeline) -> Self {
        let mut engine = Self {
            start: now,
            now_ms: 0,
            dialogue: Dialogue::new(config.settings.clone(), config.returning_caller),
            settings: config.settings,
            timing: config.timing,
            pipeline,
            out: VecDeque::with_capacity(32),
            phase: Phase::Speaking,
            turn_next: None,
            segments: VecDeque::new(),
            next_speech: 1,
            play_cursor_ms: 0,
            pending_marks: VecDeque::new(),
            cancelled_below: 0,
            capture: None,
            next_utterance: 1,
            stt_ring: SttRing::new(),
            stt_signalled: false,
            speech_run: 0,
            caller_slot: 0,
            recorder: Recorder::new(),
            dtmf: String::new(),
            dtmf_last_ms: 0,
            turn_count: 0,
            latency: None,
            pending_caller_line: None,
            time_limit_hit: false,
            carrier_echoes: None,
            ended: None,
            finished: false,
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
        self.recorder.dropped_late
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// What the dialogue is waiting for (a hint for recognisers).
    pub fn expecting(&self) -> Expect {
        self.dialogue.expect()
    }

    /// The next frame of caller audio for a recogniser (after `Output::SttAudio`), oldest first,
    /// with its utterance.
    pub fn pop_stt_frame(&mut self) -> Option<(u64, &[i16; SAMPLES_16K])> {
        let frame = self.stt_ring.pop();
        if frame.is_none() {
            self.stt_signalled = false;
        }
        frame
    }

    /// Recogniser audio lost because the driver did not take it in time.
    pub fn dropped_stt_frames(&self) -> u64 {
        self.stt_ring.dropped
    }

    /// The recording samples committed so far (after `Output::Recording`): interleaved
    /// (caller, agent), 8 kHz, in order with no gaps since the previous chunk.
    pub fn take_recording(&mut self) -> Vec<i16> {
        self.recorder.take()
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
            Input::MarkEchoed(name) => self.on_mark(name),
            Input::Transcript { utterance, text } => self.on_transcript(utterance, text),
            Input::SttFailed { utterance } => {
                if matches!(self.phase, Phase::Transcribing { utterance: u, .. } if u == utterance)
                {
                    let t = self.dialogue.on_backend_failure();
                    self.play_turn(t);
                }
            }
            Input::TtsAudio { speech, mulaw } => self.on_tts_audio(speech, mulaw),
            Input::TtsFailed { speech } => self.on_tts_failed(speech),
            Input::CarrierStop => self.finish(EndReason::CallerHangup),
            Input::Disconnected => self.finish(EndReason::Disconnected),
            Input::Abort(reason) => self.finish(reason),
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
            self.cancel_capture();
            let t = self.dialogue.on_time_limit();
            self.play_turn(t);
        }
        if now >= self.timing.max_call.as_millis() as u64 + 30_000 {
            self.finish(EndReason::MaxDuration);
            return;
        }
        // synthesis deadline
        if let Some(seg) = self.segments.iter().find(|s| !s.end_mark_sent)
            && seg.audio.is_none()
            && now >= seg.requested_ms + self.timing.tts_timeout.as_millis() as u64
        {
            let speech = seg.speech;
            self.on_tts_failed(speech);
        }
        match self.phase {
            Phase::Listening { since_ms } => {
                if !self.dtmf.is_empty()
                    && now >= self.dtmf_last_ms + self.timing.dtmf_gap.as_millis() as u64
                {
                    self.submit_dtmf();
                } else if self.dtmf.is_empty()
                    && now >= since_ms + self.timing.silence_reminder.as_millis() as u64
                {
                    let t = self.dialogue.on_silence();
                    self.play_turn(t);
                }
            }
            Phase::Transcribing {
                since_ms,
                utterance,
            } if now >= since_ms + self.timing.stt_timeout.as_millis() as u64 => {
                self.out.push_back(Output::SttCancel { utterance });
                let t = self.dialogue.on_backend_failure();
                self.play_turn(t);
            }
            _ => {}
        }
        self.pump_audio();
        self.check_segment_done();
        self.recorder.commit_until(
            now.saturating_sub(self.timing.recording_delay.as_millis() as u64),
            &mut self.out,
        );
    }

    fn next_deadline_ms(&self) -> u64 {
        if self.finished {
            return self.now_ms + 3_600_000;
        }
        let mut d = self.timing.max_call.as_millis() as u64;
        if self.time_limit_hit {
            d += 30_000;
        }
        let mut min = |x: u64| d = d.min(x.max(self.now_ms));
        if let Some(seg) = self.segments.iter().find(|s| !s.end_mark_sent) {
            if seg.audio.is_none() {
                min(seg.requested_ms + self.timing.tts_timeout.as_millis() as u64);
            } else if !seg.all_sent() {
                min(self
                    .play_cursor_ms
                    .saturating_sub(self.timing.pacing_lead.as_millis() as u64));
            }
        }
        if let Some(seg) = self.segments.front()
            && seg.end_mark_sent
        {
            min(seg.play_end_ms + self.mark_grace_ms());
        }
        match self.phase {
            Phase::Listening { since_ms } => {
                if self.dtmf.is_empty() {
                    min(since_ms + self.timing.silence_reminder.as_millis() as u64);
                } else {
                    min(self.dtmf_last_ms + self.timing.dtmf_gap.as_millis() as u64);
                }
            }
            Phase::Transcribing { since_ms, .. } => {
                min(since_ms + self.timing.stt_timeout.as_millis() as u64)
            }
            _ => {}
        }
        if !self.recorder.slots.is_empty() {
            min((self.recorder.base_slot + 1) * FRAME
                + self.timing.recording_delay.as_millis() as u64);
        }
        d
    }

    // ---- agent speech ----------------------------------------------------------------------

    fn play_turn(&mut self, turn: Turn) {
        for e in self.dialogue.take_events() {
            self.out.push_back(Output::Event(e));
        }
        // a new turn replaces anything still queued
        self.drop_queued_segments();
        for p in turn.prompts {
            let speech = self.next_speech;
            self.next_speech += 1;
            self.out.push_back(Output::Speak {
                speech,
                text: p.text.clone(),
            });
            self.segments.push_back(Segment {
                speech,
                text: p.text,
                interruptible: p.interruptible,
                kind: p.kind,
                requested_ms: self.now_ms,
                audio: None,
                pos: 0,
                frames_sent: 0,
                frames_heard: 0,
                first_play_ms: None,
                play_end_ms: 0,
                end_mark_sent: false,
            });
        }
        if let Next::HangUp(_) = turn.next {
            self.phase = Phase::Ended;
        } else {
            self.phase = Phase::Speaking;
        }
        self.turn_next = Some(turn.next);
        self.dtmf.clear();
        if self.segments.is_empty() {
            self.turn_played();
        }
    }

    /// Drop segments not yet started (keeps nothing: used when a new turn begins).
    fn drop_queued_segments(&mut self) {
        while let Some(seg) = self.segments.pop_back() {
            self.out
                .push_back(Output::CancelSpeech { speech: seg.speech });
            self.cancelled_below = self.cancelled_below.max(seg.speech + 1);
            if seg.first_play_ms.is_some() {
                self.transcribe_agent(&seg, true);
            }
        }
    }

    fn on_tts_audio(&mut self, speech: u64, mulaw: Arc<[u8]>) {
        if let Some(seg) = self.segments.iter_mut().find(|s| s.speech == speech)
            && seg.audio.is_none()
        {
            seg.audio = Some(mulaw);
        }
    }

    fn on_tts_failed(&mut self, speech: u64) {
        let Some(idx) = self.segments.iter().position(|s| s.speech == speech) else {
            return;
        };
        if self.segments[idx].audio.is_some() {
            return;
        }
        let kind = self.segments[idx].kind;
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

    /// Send agent frames due by now (paced ~`pacing_lead` ahead of real time).
    fn pump_audio(&mut self) {
        let lead = self.timing.pacing_lead.as_millis() as u64;
        let every = self.timing.mark_every_frames.max(1);
        loop {
            let now = self.now_ms;
            // segments play back to back: the first one not fully sent
            let Some(idx) = self.segments.iter().position(|s| !s.end_mark_sent) else {
                return;
            };
            let seg = &mut self.segments[idx];
            let Some(audio) = seg.audio.clone() else {
                return;
            };
            if seg.pos >= audio.len() {
                if !seg.end_mark_sent {
                    seg.end_mark_sent = true;
                    let id = MarkId {
                        speech: seg.speech,
                        frames: seg.frames_sent,
                        last: true,
                    };
                    self.pending_marks
                        .push_back(PendingMark { id, cleared: false });
                    self.out.push_back(Output::ToCaller(ToCaller::Mark(id)));
                }
                continue;
            }
            if self.play_cursor_ms > now + lead {
                return;
            }
            let end = (seg.pos + SAMPLES_8K).min(audio.len());
            let mut frame = [0xFFu8; SAMPLES_8K];
            frame[..end - seg.pos].copy_from_slice(&audio[seg.pos..end]);
            seg.pos = end;
            seg.frames_sent += 1;
            let play_at = self.play_cursor_ms.max(now);
            if seg.first_play_ms.is_none() {
                seg.first_play_ms = Some(play_at);
                // first audio of the reply: the turn's latency is known
                if let Some(l) = self.latency.take() {
                    let transcript = l.transcript_ms.unwrap_or(l.endpoint_ms);
                    self.turn_count += 1;
                    self.out
                        .push_back(Output::Event(CallEvent::Latency(TurnLatency {
                            turn: self.turn_count,
                            endpointing_ms: l.endpoint_ms.saturating_sub(l.last_speech_ms),
                            stt_ms: transcript.saturating_sub(l.endpoint_ms),
                            tts_ms: now.saturating_sub(transcript),
                            total_ms: now.saturating_sub(l.last_speech_ms),
                        })));
                }
            }
            self.play_cursor_ms = play_at + FRAME;
            seg.play_end_ms = self.play_cursor_ms;
            let frames_sent = seg.frames_sent;
            let speech = seg.speech;
            if let Some(slot) = self.recorder.slot(play_at / FRAME, &mut self.out) {
                g711::decode_into(&frame, &mut slot.agent);
            }
            self.out.push_back(Output::ToCaller(ToCaller::Media(frame)));
            if frames_sent.is_multiple_of(every) && end < audio.len() {
                let id = MarkId {
                    speech,
                    frames: frames_sent,
                    last: false,
                };
                self.pending_marks
                    .push_back(PendingMark { id, cleared: false });
                self.out.push_back(Output::ToCaller(ToCaller::Mark(id)));
            }
        }
    }

    fn on_mark(&mut self, name: &str) {
        let Some(id) = MarkId::parse(name) else {
            return;
        };
        self.carrier_echoes = Some(true);
        let Some(pos) = self.pending_marks.iter().position(|m| m.id == id) else {
            return;
        };
        let mut played = false;
        for _ in 0..=pos {
            if let Some(m) = self.pending_marks.pop_front()
                && m.id == id
            {
                played = !m.cleared;
            }
        }
        if !played {
            return;
        }
        if let Some(seg) = self.segments.iter_mut().find(|s| s.speech == id.speech) {
            seg.frames_heard = seg.frames_heard.max(id.frames);
            if id.last {
                self.segment_done(id.speech, true);
            }
        }
    }

    /// The front segment finished playing without an end-mark echo (carrier that sends none).
    fn check_segment_done(&mut self) {
        if let Some(seg) = self.segments.front()
            && seg.end_mark_sent
            && self.now_ms >= seg.play_end_ms + self.mark_grace_ms()
        {
            let speech = seg.speech;
            if self.carrier_echoes.is_none() {
                self.carrier_echoes = Some(false);
            }
            self.segment_done(speech, false);
        }
    }

    /// How long after a segment's estimated end to wait for its mark echo.
    fn mark_grace_ms(&self) -> u64 {
        match self.carrier_echoes {
            Some(false) => FRAME,
            _ => self.timing.mark_grace.as_millis() as u64,
        }
    }

    fn segment_done(&mut self, speech: u64, confirmed: bool) {
        let Some(idx) = self.segments.iter().position(|s| s.speech == speech) else {
            return;
        };
        // segments play in order: anything before it is done too
        for _ in 0..=idx {
            let Some(seg) = self.segments.pop_front() else {
                break;
            };
            let full = confirmed && seg.speech == speech;
            if let PromptKind::Disclosure(kind) = seg.kind {
                self.out
                    .push_back(Output::Event(CallEvent::Disclosure(DisclosureRecord {
                        kind,
                        text: seg.text.clone(),
                        played_in_full: full,
                    })));
            }
            self.transcribe_agent(&seg, false);
        }
        if self.segments.is_empty() {
            self.turn_played();
        }
    }

    fn transcribe_agent(&mut self, seg: &Segment, interrupted: bool) {
        let Some(start_ms) = seg.first_play_ms else {
            return;
        };
        let total = seg.total_frames().max(1);
        let (text, end_ms) = if interrupted {
            let heard = seg.frames_heard.min(total);
            (
                heard_prefix(&seg.text, heard as f64 / total as f64),
                start_ms + heard as u64 * FRAME,
            )
        } else {
            (seg.text.clone(), seg.play_end_ms)
        };
        self.out
            .push_back(Output::Event(CallEvent::Transcript(TranscriptLine {
                speaker: Speaker::Agent,
                text,
                start_ms,
                end_ms,
                interrupted,
                dtmf: false,
            })));
    }

    /// All of the turn's audio has played.
    fn turn_played(&mut self) {
        match self.turn_next.take() {
            Some(Next::HangUp(reason)) => self.finish(reason),
            Some(Next::Listen(_)) | None => {
                if self.capture.is_none() {
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
        let playing = self.segments.iter().any(|s| s.frames_sent > 0);
        if playing {
            self.out.push_back(Output::ToCaller(ToCaller::Clear));
            for m in self.pending_marks.iter_mut() {
                m.cleared = true;
            }
            self.recorder.erase_agent_from(self.now_ms);
        }
        self.play_cursor_ms = self.play_cursor_ms.min(self.now_ms);
        self.drop_queued_segments();
        self.turn_next = None;
        if barge_in {
            self.phase = Phase::Capturing;
        }
    }

    fn current_interruptible(&self) -> bool {
        !matches!(self.phase, Phase::Ended)
            && self
                .segments
                .front()
                .is_some_and(|s| s.interruptible && s.audio.is_some())
            && self.segments.iter().all(|s| s.interruptible)
    }

    // ---- caller audio ----------------------------------------------------------------------

    fn on_audio(&mut self, timestamp_ms: Option<u64>, mulaw: &[u8]) {
        self.pipeline.push(mulaw);
        let mut first = true;
        while let Some(frame) = self.pipeline.pop() {
            // place the frame on the recording timeline: the carrier's timestamp when it is sane
            let slot = match timestamp_ms {
                Some(ts)
                    if first
                        && ts / FRAME + 50 >= self.now_ms / FRAME
                        && ts / FRAME <= self.now_ms / FRAME + 50 =>
                {
                    ts / FRAME
                }
                _ => self.caller_slot,
            };
            first = false;
            self.caller_slot = slot + 1;
            if let Some(s) = self.recorder.slot(slot, &mut self.out) {
                s.caller = frame.pcm8k;
            }
            self.on_frame(&frame);
        }
    }

    fn on_frame(&mut self, frame: &audio::InboundFrame) {
        let now = self.now_ms;
        self.speech_run = if frame.speech { self.speech_run + 1 } else { 0 };
        let listening = matches!(self.phase, Phase::Listening { .. });
        let agent_interruptible =
            matches!(self.phase, Phase::Speaking) && self.current_interruptible();

        if let Some(cap) = self.capture.as_mut() {
            cap.frames += 1;
            if frame.speech {
                cap.speech_frames += 1;
                cap.silence_frames = 0;
                cap.last_speech_ms = now;
            } else {
                cap.silence_frames += 1;
            }
            let utterance = cap.utterance;
            self.stt_ring.push(&frame.pcm16k, utterance);
            self.signal_stt();
            let cap = self.capture.as_ref().expect("capture checked above");
            // barge-in: enough speech over interruptible agent audio
            if cap.during_agent
                && matches!(self.phase, Phase::Speaking)
                && cap.speech_frames >= frames(self.timing.barge_in)
            {
                self.interrupt_agent(true);
            }
            let cap = self.capture.as_ref().expect("capture checked above");
            let endpoint = match self.dialogue.expect() {
                Expect::Answer(QuestionKind::Number)
                | Expect::Answer(QuestionKind::FreeText)
                | Expect::CallerQuestion => self.timing.endpoint_long,
                _ => self.timing.endpoint,
            };
            if cap.silence_frames >= frames(endpoint)
                || cap.frames >= frames(self.timing.max_utterance)
            {
                self.end_capture();
            }
            return;
        }

        // not capturing: the ring keeps a short pre-roll
        self.stt_ring.push(&frame.pcm16k, 0);
        if self.speech_run >= frames(self.timing.speech_onset) && (listening || agent_interruptible)
        {
            let utterance = self.next_utterance;
            self.next_utterance += 1;
            let onset = self.speech_run as u64 * FRAME;
            let pre_roll = (frames(self.timing.pre_roll) as usize)
                .max(self.speech_run as usize)
                .min(STT_RING_FRAMES / 2);
            self.capture = Some(Capture {
                utterance,
                start_ms: now.saturating_sub(onset),
                last_speech_ms: now,
                speech_frames: self.speech_run,
                silence_frames: 0,
                frames: pre_roll as u32,
                during_agent: agent_interruptible,
            });
            self.stt_ring.claim_last(pre_roll, utterance);
            self.signal_stt();
            if listening {
                self.phase = Phase::Capturing;
            }
        }
    }

    fn signal_stt(&mut self) {
        if !self.stt_signalled {
            self.stt_signalled = true;
            self.out.push_back(Output::SttAudio);
        }
    }

    fn cancel_capture(&mut self) {
        if let Some(cap) = self.capture.take() {
            self.out.push_back(Output::SttCancel {
                utterance: cap.utterance,
            });
        }
    }

    fn end_capture(&mut self) {
        let Some(cap) = self.capture.take() else {
            return;
        };
        let speech_ms = cap.speech_frames as u64 * FRAME;
        let agent_still_speaking = matches!(self.phase, Phase::Speaking);
        if speech_ms < self.timing.min_utterance.as_millis() as u64 || agent_still_speaking {
            // a click, a cough, or talk over the agent that never became a barge-in
            self.out.push_back(Output::SttCancel {
                utterance: cap.utterance,
            });
            if matches!(self.phase, Phase::Capturing) {
                self.phase = Phase::Listening {
                    since_ms: self.now_ms,
                };
            }
            return;
        }
        self.out.push_back(Output::SttFinish {
            utterance: cap.utterance,
        });
        self.latency = Some(Latency {
            last_speech_ms: cap.last_speech_ms,
            endpoint_ms: self.now_ms,
            transcript_ms: None,
        });
        self.pending_caller_line = Some((cap.start_ms, cap.last_speech_ms + FRAME));
        self.phase = Phase::Transcribing {
            utterance: cap.utterance,
            since_ms: self.now_ms,
        };
    }

    fn on_transcript(&mut self, utterance: u64, text: &str) {
        if !matches!(self.phase, Phase::Transcribing { utterance: u, .. } if u == utterance) {
            return;
        }
        if let Some(l) = self.latency.as_mut() {
            l.transcript_ms = Some(self.now_ms);
        }
        let (start_ms, end_ms) = self
            .pending_caller_line
            .take()
            .unwrap_or((self.now_ms, self.now_ms));
        let text = text.trim();
        if text.is_empty() {
            // a sound with no words: keep listening (the silence timer restarts)
            self.latency = None;
            self.phase = Phase::Listening {
                since_ms: self.now_ms,
            };
            return;
        }
        self.out
            .push_back(Output::Event(CallEvent::Transcript(TranscriptLine {
                speaker: Speaker::Caller,
                text: text.to_string(),
                start_ms,
                end_ms,
                interrupted: false,
                dtmf: false,
            })));
        let t = self.dialogue.on_reply(Reply::Speech(text));
        self.play_turn(t);
    }

    // ---- keypad ----------------------------------------------------------------------------

    fn on_dtmf(&mut self, digit: char) {
        if !(digit.is_ascii_digit() || digit == '#' || digit == '*') {
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
        if self.dtmf.len() < 16 {
            self.dtmf.push(digit);
        }
        self.dtmf_last_ms = self.now_ms;
        self.phase = Phase::Listening {
            since_ms: self.now_ms,
        };
        if matches!(expect, Expect::Answer(QuestionKind::YesNo)) || digit == '#' {
            self.submit_dtmf();
        }
    }

    fn submit_dtmf(&mut self) {
        let digits = std::mem::take(&mut self.dtmf);
        if digits.is_empty() {
            return;
        }
        self.out
            .push_back(Output::Event(CallEvent::Transcript(TranscriptLine {
                speaker: Speaker::Caller,
                text: digits.clone(),
                start_ms: self.dtmf_last_ms,
                end_ms: self.dtmf_last_ms,
                interrupted: false,
                dtmf: true,
            })));
        self.latency = Some(Latency {
            last_speech_ms: self.now_ms,
            endpoint_ms: self.now_ms,
            transcript_ms: Some(self.now_ms),
        });
        let t = self.dialogue.on_reply(Reply::Keypad(&digits));
        self.play_turn(t);
    }

    // ---- the end ---------------------------------------------------------------------------

    fn finish(&mut self, reason: EndReason) {
        if self.finished {
            return;
        }
        self.ended = Some(reason);
        // what the caller heard of an unfinished segment
        while let Some(seg) = self.segments.pop_front() {
            if let PromptKind::Disclosure(kind) = seg.kind {
                self.out
                    .push_back(Output::Event(CallEvent::Disclosure(DisclosureRecord {
                        kind,
                        text: seg.text.clone(),
                        played_in_full: false,
                    })));
            }
            if seg.first_play_ms.is_some() {
                let heard_all = seg.frames_heard >= seg.total_frames();
                self.transcribe_agent(&seg, !heard_all);
            }
        }
        self.cancel_capture();
        for e in self.dialogue.take_events() {
            self.out.push_back(Output::Event(e));
        }
        // flush the recording up to now (the caller hung up: agent audio after now never played)
        self.recorder.erase_agent_from(self.now_ms.max(1));
        let last_slot = self.recorder.base_slot + self.recorder.slots.len() as u64;
        let upto =
            (self.now_ms.div_ceil(FRAME)).max(last_slot.min(self.now_ms / FRAME + 1)) * FRAME;
        self.recorder.commit_until(upto, &mut self.out);
        if !self.recorder.chunk.is_empty() {
            self.out.push_back(Output::Recording);
        }
        self.out.push_back(Output::Ended(reason));
        self.phase = Phase::Ended;
        self.finished = true;
    }
}

/// The first `fraction` of `text`, cut at a word boundary, with an ellipsis.
fn heard_prefix(text: &str, fraction: f64) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let n = ((words.len() as f64) * fraction.clamp(0.0, 1.0)).floor() as usize;
    if n >= words.len() {
        return text.to_string();
    }
    let mut s = words[..n].join(" ");
    s.push('…');
    s
}

#[cfg(test)]
#[path = "call_tests.rs"]
mod tests;
