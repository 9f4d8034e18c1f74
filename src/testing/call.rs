//! A whole call in virtual time, engine ⇄ [`MediaSession`] ⇄ [`FakeCarrier`], stepped 20 ms at a
//! time as the server's driver would run it: for the allocation test and the bench, which need
//! the server's side of a real carrier protocol without the engine tests' scripted caller.
//!
//! Every agent `Speak` is answered at once with the same prompt audio; recogniser audio and
//! recording chunks are drained and dropped. The fake carrier's own work (writing caller media,
//! parsing what the server sends strictly, its play-out clock) is timed and its allocations
//! counted apart ([`CallRig::fake_allocs`], [`CallRig::fake_time`]), so that a caller can take
//! them out of what it measures: the fake parses with `serde_json::Value` and allocates.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::allocations_so_far;
use super::carrier::{CallInfo, FakeCarrier, FakeCarrierError};
use crate::engine::audio::SAMPLES_8K;
use crate::engine::call::Timing;
use crate::engine::media::{AudioCodec, Carrier, CarrierCodec, Inbound, MediaSession, Msg};
use crate::engine::{CallEngine, EngineConfig, Input, Output, ToCaller};

/// What the call did so far (counts since the rig was made).
#[derive(Debug, Default, Clone, Copy)]
pub struct RigCounts {
    /// 20 ms steps.
    pub frames: u64,
    /// Agent media frames the engine sent.
    pub media: u64,
    /// Marks the engine sent.
    pub marks: u64,
    pub clears: u64,
    pub speaks: u64,
    pub stt_frames: u64,
    pub recording_chunks: u64,
    /// Allocations made by `take_recording` (one `Vec` per chunk, by design).
    pub recording_allocs: u64,
    /// Outputs other than the above (events, recogniser control).
    pub other_outputs: u64,
}

/// Copies of the fake carrier's messages, fed to the session one by one (reused buffers).
#[derive(Debug, Default)]
struct Inbox {
    text: String,
    binary: Vec<u8>,
    frames: Vec<(bool, usize, usize)>,
}

impl Inbox {
    fn fill(&mut self, from: &FakeCarrier) {
        self.text.clear();
        self.binary.clear();
        self.frames.clear();
        for m in from.out().iter() {
            match m {
                Msg::Text(t) => {
                    let start = self.text.len();
                    self.text.push_str(t);
                    self.frames.push((false, start, self.text.len()));
                }
                Msg::Binary(b) => {
                    let start = self.binary.len();
                    self.binary.extend_from_slice(b);
                    self.frames.push((true, start, self.binary.len()));
                }
            }
        }
    }

    fn get(&self, i: usize) -> Msg<'_> {
        match self.frames[i] {
            (false, s, e) => Msg::Text(&self.text[s..e]),
            (true, s, e) => Msg::Binary(&self.binary[s..e]),
        }
    }
}

/// One call on one carrier. See the module doc.
pub struct CallRig {
    engine: CallEngine,
    carrier: FakeCarrier,
    session: MediaSession,
    t0: Instant,
    now_ms: u64,
    deadline_ms: u64,
    prompt: Arc<[u8]>,
    inbox: Inbox,
    counts: RigCounts,
    last_media_ms: u64,
    fake_allocs: u64,
    fake_time: Duration,
}

impl std::fmt::Debug for CallRig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallRig")
            .field("carrier", &self.carrier)
            .field("now_ms", &self.now_ms)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl CallRig {
    /// A call on `carrier` streaming `codec`, with the sample receptionist, answering every
    /// `Speak` with `prompt`. The engine echoes marks as the carrier does.
    pub fn new(
        carrier: Carrier,
        codec: AudioCodec,
        timing: Timing,
        prompt: Arc<[u8]>,
    ) -> Result<Self, FakeCarrierError> {
        let t0 = Instant::now();
        let mut fake = FakeCarrier::new(carrier, codec, CallInfo::default(), t0)?;
        let mut codec = fake.server_codec();
        fake.connect();
        let mut start = None;
        for m in fake.out().iter() {
            if let Ok(Inbound::Start(s)) = codec.parse(m) {
                start = Some(s);
            }
        }
        fake.clear_out();
        let err = |what: String| FakeCarrierError { carrier, what };
        let start = start.ok_or_else(|| err("the server parsed no start".into()))?;
        let session = MediaSession::new(codec, &start).map_err(|e| err(e.to_string()))?;
        let engine = CallEngine::new(
            t0,
            EngineConfig {
                settings: Arc::new(super::sample_settings()),
                returning_caller: false,
                timing,
                echoes_marks: session.echoes_marks(),
                language_model: false,
                end_of_turn_model: false,
                barge_in_words: false,
                speaks_languages: false,
                context_meanings: None,
            },
        );
        let mut rig = Self {
            engine,
            carrier: fake,
            session,
            t0,
            now_ms: 0,
            deadline_ms: 0,
            prompt,
            inbox: Inbox::default(),
            counts: RigCounts::default(),
            last_media_ms: 0,
            fake_allocs: 0,
            fake_time: Duration::ZERO,
        };
        rig.drain();
        Ok(rig)
    }

    /// The same with the carrier's default codec.
    pub fn with_defaults(carrier: Carrier, timing: Timing, prompt: Arc<[u8]>) -> Self {
        let codec = super::carrier::codecs(carrier)[0];
        match Self::new(carrier, codec, timing, prompt) {
            Ok(rig) => rig,
            Err(e) => unreachable!("a carrier's default codec is its own: {e}"),
        }
    }

    pub fn carrier(&self) -> &FakeCarrier {
        &self.carrier
    }

    pub fn counts(&self) -> RigCounts {
        self.counts
    }

    /// Call time, in ms.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Call time of the last agent frame the engine sent.
    pub fn last_media_ms(&self) -> u64 {
        self.last_media_ms
    }

    /// Allocations made by the fake carrier's steps (with the counting allocator installed).
    pub fn fake_allocs(&self) -> u64 {
        self.fake_allocs
    }

    /// Time spent in the fake carrier's steps.
    pub fn fake_time(&self) -> Duration {
        self.fake_time
    }

    fn now(&self) -> Instant {
        self.t0 + Duration::from_millis(self.now_ms)
    }

    /// Runs one of the fake carrier's steps, counting its allocations and time apart.
    fn fake<R>(&mut self, f: impl FnOnce(&mut FakeCarrier, &mut Inbox) -> R) -> R {
        let (allocs, start) = (allocations_so_far(), Instant::now());
        let r = f(&mut self.carrier, &mut self.inbox);
        self.fake_time += start.elapsed();
        self.fake_allocs += allocations_so_far() - allocs;
        r
    }

    /// 20 ms of call: ticks at the engine's deadlines within it (the carrier playing out and
    /// echoing marks meanwhile), then one message of caller audio if `caller` is given.
    pub fn step(&mut self, caller: Option<&[u8; SAMPLES_8K]>) {
        let target = self.now_ms + 20;
        let mut ticks = 0;
        while self.deadline_ms <= target && ticks < 8 {
            self.now_ms = self.now_ms.max(self.deadline_ms);
            self.play_out();
            self.input(Input::Tick);
            ticks += 1;
        }
        self.now_ms = target;
        self.play_out();
        if let Some(frame) = caller {
            self.fake(|c, _| c.send_audio(frame));
            self.feed();
        }
        self.counts.frames += 1;
    }

    /// The carrier plays its queue up to now; its mark echoes go to the engine.
    fn play_out(&mut self) {
        let now = self.now();
        self.fake(|c, _| c.handle_timeout(now));
        self.feed();
    }

    fn input(&mut self, input: Input<'_>) {
        let now = self.now();
        self.engine
            .handle_input(now, input)
            .expect("call in progress");
        self.drain();
    }

    /// Hands what the carrier wrote to the session, and its inputs to the engine.
    fn feed(&mut self) {
        while !self.carrier.out().is_empty() {
            self.fake(|c, inbox| {
                inbox.fill(c);
                c.clear_out();
            });
            let inbox = std::mem::take(&mut self.inbox);
            for i in 0..inbox.frames.len() {
                let now = self.now();
                let engine = &mut self.engine;
                self.session
                    .handle_message(inbox.get(i), |input| {
                        engine.handle_input(now, input).expect("call in progress");
                    })
                    .expect("the fake carrier's messages parse");
                self.drain();
            }
            self.inbox = inbox;
        }
    }

    fn drain(&mut self) {
        loop {
            match self.engine.poll_output() {
                Output::Timeout(t) => {
                    self.deadline_ms = t.saturating_duration_since(self.t0).as_millis() as u64;
                    break;
                }
                Output::ToCaller(msg) => {
                    match &msg {
                        ToCaller::Media(audio) => {
                            self.counts.media += audio.frames().len() as u64;
                            self.last_media_ms = self.now_ms;
                        }
                        ToCaller::Mark(_) => self.counts.marks += 1,
                        ToCaller::Clear => self.counts.clears += 1,
                    }
                    self.session.write(&msg);
                    let now = self.now();
                    let (carrier, session) = (&mut self.carrier, &self.session);
                    let (allocs, start) = (allocations_so_far(), Instant::now());
                    for m in session.out().iter() {
                        carrier
                            .handle_message(now, m)
                            .expect("the server's messages are the carrier's protocol");
                    }
                    self.fake_time += start.elapsed();
                    self.fake_allocs += allocations_so_far() - allocs;
                    self.session.clear_out();
                }
                Output::Speak { speech, .. } => {
                    self.counts.speaks += 1;
                    let now = self.now();
                    let mulaw = self.prompt.clone();
                    self.engine
                        .handle_input(now, Input::TtsAudio { speech, mulaw })
                        .expect("call in progress");
                }
                Output::SttAudio => {
                    while let Some((_, pcm)) = self.engine.pop_stt_frame() {
                        std::hint::black_box(pcm);
                        self.counts.stt_frames += 1;
                    }
                }
                Output::Recording => {
                    let before = allocations_so_far();
                    let chunk = self.engine.take_recording();
                    self.counts.recording_allocs += allocations_so_far() - before;
                    self.counts.recording_chunks += 1;
                    drop(std::hint::black_box(chunk));
                }
                Output::Ended(reason) => panic!("the call ended: {reason:?}"),
                _ => self.counts.other_outputs += 1,
            }
        }
    }
}
