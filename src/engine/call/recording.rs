//! The two-channel recording timeline: caller and agent audio placed in 20 ms slots of call time,
//! committed in order `recording_delay` after their time (so late frames still land) into
//! interleaved (caller, agent) chunks. Gapless by construction: a slot nobody wrote is silence.
//!
//! Everything the engine hears and sends is µ-law (the media layer transcodes every carrier's
//! codec to it), so the slots and the chunk being filled keep µ-law, half the memory of PCM and
//! the same audio; a chunk is handed to the recorder as µ-law and decoded to PCM as it is written.
//!
//! Caller frames wait in slots; agent audio, which may be sent seconds before it plays, waits as
//! spans of the synthesised audio it shares with the play-out (no copy), decoded into its slots
//! only when they are committed. The engine is woken once per chunk, not once per slot: slots are
//! committed whenever time is handled, and the deadline is when the chunk being filled is full.

use std::collections::VecDeque;
use std::time::Duration;

use super::{AgentAudio, FRAME, Output, echo};
use crate::engine::audio::SAMPLES_8K;

/// µ-law's zero.
const SILENCE: u8 = 0xFF;

/// A carrier's timestamp places its frame when it is within this of the call's time.
const TRUSTED_MS: i64 = 1_000;

/// How much later than it was heard a frame's timestamp may place it before the carrier's
/// timeline is taken to run ahead of the call's (timestamps jitter by a frame or so).
const EARLY_TOLERANCE_MS: i64 = 40;

/// Timestamped frames in a row that must say so before the timeline is moved back: one odd
/// timestamp moves nothing.
const EARLY_FRAMES: u8 = 5;

/// No frames in a row have landed after they were heard.
const NO_RUN: (u8, i64) = (0, i64::MAX);

/// Caller slots that may be pending at once: the recording delay plus a carrier's timestamp
/// jitter, with margin.
pub(crate) const MAX_PENDING_SLOTS: usize = 36;

/// Agent audio that plays from `slot` on, a frame per slot.
struct AgentSpan {
    slot: u64,
    audio: AgentAudio,
}

impl AgentSpan {
    fn end_slot(&self) -> u64 {
        self.slot + self.audio.len().div_ceil(SAMPLES_8K) as u64
    }
}
/// Interleaved samples per recording chunk: 12 slots (240 ms) of stereo audio (3.75 KiB of
/// µ-law, handed to the recorder as it is and decoded there as it is written); a whole number of
/// slots, so a chunk never outgrows its allocation. A call keeps the chunk it fills and its
/// chunks wait in the recorder's queue for up to its gathering window, so the chunk's length is
/// memory per call (500 ms chunks took about 4 KiB a call more) against the recorder's writes
/// (about four a second per call).
pub const RECORDING_CHUNK_SAMPLES: usize = 12 * SAMPLES_8K * 2;

/// Pending slots and the chunk being filled. Announces a full chunk with `Output::Recording`.
pub(super) struct Recording {
    base_slot: u64,
    /// Caller audio (µ-law) of the slots from `base_slot` on.
    slots: VecDeque<[u8; SAMPLES_8K]>,
    /// Agent audio not yet committed, in play order.
    agent: VecDeque<AgentSpan>,
    /// Agent audio committed in the last [`echo::AGENT_FRAMES`] slots before `base_slot`, kept
    /// (shared, not copied) for comparing with what the caller's line carries.
    played: VecDeque<AgentSpan>,
    dropped_late: u64,
    /// Interleaved µ-law, reused from chunk to chunk.
    chunk: Vec<u8>,
    /// `Output::Recording` was announced for the chunk and it was not taken yet: a time jump
    /// that commits more than a chunk's worth at once announces it once, not once per 25 slots
    /// (the driver takes everything committed at the first announcement).
    announced: bool,
    /// Where the next caller frame goes when the carrier gives no usable timestamp; `None` until
    /// the first frame, which goes where it is heard.
    caller_slot: Option<u64>,
    /// When the last caller frame was heard: frames heard at the same time came in one burst
    /// (one message cut in frames, or a backlog read at once), and only the first of them says
    /// where a stream without timestamps stands against the call's time.
    caller_heard_ms: Option<u64>,
    /// Added to the carrier's timestamps, decided by the first frame that has one: zero, unless
    /// that frame arrived later than the recording delay after its timestamp (a carrier whose
    /// timeline starts at its first media message, as Plivo's does once rebased, and whose first
    /// message came well after `start`); then the carrier's timeline is moved to when it was
    /// heard, where the engine placed it, instead of every frame being dropped as late.
    /// Lowered when [`EARLY_FRAMES`] timestamped frames in a row would land more than
    /// [`EARLY_TOLERANCE_MS`] after they were heard (see [`Recording::handle_caller_frame`]).
    timestamp_offset_ms: Option<i64>,
    /// Frames in a row that would land that much after they were heard, and the least of how
    /// much ([`NO_RUN`] when there are none); see [`Recording::early_run`].
    early: (u8, i64),
    delay_ms: u64,
}

impl Recording {
    pub(super) fn new(delay: Duration) -> Self {
        Self {
            base_slot: 0,
            slots: VecDeque::with_capacity(MAX_PENDING_SLOTS),
            agent: VecDeque::with_capacity(4),
            played: VecDeque::new(),
            dropped_late: 0,
            chunk: Vec::with_capacity(RECORDING_CHUNK_SAMPLES),
            announced: false,
            caller_slot: None,
            caller_heard_ms: None,
            timestamp_offset_ms: None,
            early: NO_RUN,
            delay_ms: delay.as_millis() as u64,
        }
    }

    /// One 20 ms caller frame. `timestamp_ms` (the carrier's, for the first frame of a message;
    /// moved by the call's timestamp offset, see `timestamp_offset_ms`) places it when it is
    /// within a second of `now_ms`; otherwise it follows the previous one (the first one, or
    /// one after a pause longer than the recording delay, goes where it is heard).
    pub(super) fn handle_caller_frame(
        &mut self,
        now_ms: u64,
        timestamp_ms: Option<u64>,
        mulaw: &[u8; SAMPLES_8K],
        out: &mut VecDeque<Output>,
    ) {
        let delay_ms = self.delay_ms as i64;
        let timestamp_ms = timestamp_ms.map(|ts| {
            // (a carrier's timestamp may be anything: saturated, never wrapped)
            let (ts, now) = (i64::try_from(ts).unwrap_or(i64::MAX), now_ms as i64);
            let mut offset = *self.timestamp_offset_ms.get_or_insert_with(|| {
                let lag = now.saturating_sub(ts);
                if lag >= delay_ms { lag } else { 0 }
            });
            // Frames that would land later than they were heard say the carrier's timeline
            // runs ahead of the call's: its stream began before the call's clock did and the
            // frames of that gap came at once when the call was set up. The timeline moves back
            // to when they are heard, where the engine's turns are timed, instead of every later
            // caller frame being recorded that much after the agent audio it answered.
            if let Some(least) = self.early_run(ts.saturating_add(offset) - now) {
                offset -= least;
                self.timestamp_offset_ms = Some(offset);
            }
            u64::try_from(ts.saturating_add(offset)).unwrap_or(u64::MAX)
        });
        let burst = self.caller_heard_ms.replace(now_ms) == Some(now_ms);
        const TRUSTED_SLOTS: u64 = TRUSTED_MS as u64 / FRAME;
        let slot = match (timestamp_ms, self.caller_slot) {
            (Some(ts), _)
                if ts / FRAME + TRUSTED_SLOTS >= now_ms / FRAME
                    && ts / FRAME <= now_ms / FRAME + TRUSTED_SLOTS =>
            {
                ts / FRAME
            }
            // no usable timestamp: the frame follows the previous one, unless the first of a
            // burst says the stream runs ahead of the call's time, as a stream without any does
            // when what it sent while the call was set up is read at once. That lead would
            // record every later caller frame after the agent audio it answered, and after the
            // turn the engine timed; the stream moves back to when its frames are heard, by
            // the least lead of a few bursts
            (ts, Some(next)) if next >= self.base_slot => {
                let lead = (next * FRAME) as i64 - now_ms as i64;
                let least = if ts.is_none() && !burst {
                    self.early_run(lead)
                } else {
                    None
                };
                least.map_or(next, |l| {
                    next.saturating_sub(l as u64 / FRAME).max(self.base_slot)
                })
            }
            // the first frame; or the stream paused for longer than the recording delay (its
            // next slot is already committed): it goes where it is heard, not in the past, where
            // every later frame would be late too
            _ => (now_ms / FRAME).max(self.base_slot),
        };
        self.caller_slot = Some(slot + 1);
        if let Some(s) = self.slot(slot, out) {
            *s = *mulaw;
        }
    }

    /// A frame would land `early_ms` after it was heard. A frame is never heard before its time,
    /// so [`EARLY_FRAMES`] in a row that would land more than [`EARLY_TOLERANCE_MS`] after (within
    /// the second a timeline is trusted for) say the carrier's timeline runs ahead of the call's:
    /// the least of their leads, by which to move it back (the least, so that jitter does not
    /// overshoot), once the run is complete.
    fn early_run(&mut self, early_ms: i64) -> Option<i64> {
        if early_ms > EARLY_TOLERANCE_MS && early_ms <= TRUSTED_MS {
            let (frames, least) = self.early;
            self.early = (frames + 1, least.min(early_ms));
            if self.early.0 >= EARLY_FRAMES {
                return Some(std::mem::replace(&mut self.early, NO_RUN).1);
            }
        } else {
            self.early = NO_RUN;
        }
        None
    }

    /// Agent audio (µ-law, whole frames) that plays from `play_at_ms`, a frame per slot. Audio
    /// for slots already committed is dropped (counted as late).
    pub(super) fn handle_agent_audio(&mut self, play_at_ms: u64, audio: &AgentAudio) {
        let slot = play_at_ms / FRAME;
        let skip = self.base_slot.saturating_sub(slot) as usize;
        if skip > 0 {
            self.dropped_late += skip.min(audio.len().div_ceil(SAMPLES_8K)) as u64;
        }
        let start = skip * SAMPLES_8K;
        if start >= audio.len() {
            return;
        }
        let audio = audio.suffix(start);
        let slot = slot.max(self.base_slot);
        // the play-out's next chunk of the same audio extends the span before it
        if let Some(last) = self.agent.back_mut()
            && last.end_slot() == slot
            && let Some(joined) = last.audio.joined(&audio)
        {
            last.audio = joined;
            return;
        }
        self.agent.push_back(AgentSpan { slot, audio });
    }

    /// The agent's audio that plays in `slot` (whole, or the last, short frame of a span), if
    /// it is not committed yet or was in the last [`echo::AGENT_FRAMES`] slots committed.
    pub(super) fn agent_played(&self, slot: u64) -> Option<&[u8]> {
        let span = self
            .played
            .iter()
            .chain(&self.agent)
            .find(|s| s.slot <= slot && slot < s.end_slot())?;
        let from = (slot - span.slot) as usize * SAMPLES_8K;
        span.audio
            .get(from..(from + SAMPLES_8K).min(span.audio.len()))
    }

    /// Erase agent audio at and after `from_ms` (it was cleared before playing).
    pub(super) fn erase_agent_from(&mut self, from_ms: u64) {
        let from_slot = (from_ms / FRAME).max(self.base_slot);
        while let Some(last) = self.agent.back_mut() {
            if last.slot >= from_slot {
                self.agent.pop_back();
            } else {
                if last.end_slot() > from_slot {
                    let frames = (from_slot - last.slot) as usize;
                    last.audio = last.audio.prefix(frames * SAMPLES_8K);
                }
                break;
            }
        }
    }

    /// Commit every slot older than the recording delay.
    pub(super) fn handle_time(&mut self, now_ms: u64, out: &mut VecDeque<Output>) {
        self.commit_until(now_ms.saturating_sub(self.delay_ms), out);
    }

    /// When the chunk being filled is due in full (slots are committed whenever time is handled;
    /// only announcing a full chunk needs a deadline).
    pub(super) fn poll_timeout(&self) -> Option<u64> {
        if self.slots.is_empty() && self.agent.is_empty() {
            return None;
        }
        let to_fill = (RECORDING_CHUNK_SAMPLES - self.chunk.len()).div_ceil(SAMPLES_8K * 2) as u64;
        Some((self.base_slot + to_fill) * FRAME + self.delay_ms)
    }

    /// The call ended at `now_ms`: agent audio after it never played; commit what there is and
    /// announce the last (partial) chunk.
    pub(super) fn finish(&mut self, now_ms: u64, out: &mut VecDeque<Output>) {
        self.erase_agent_from(now_ms.max(1));
        let last_slot = (self.base_slot + self.slots.len() as u64)
            .max(self.agent.back().map_or(0, AgentSpan::end_slot));
        let upto = (now_ms.div_ceil(FRAME)).max(last_slot.min(now_ms / FRAME + 1)) * FRAME;
        self.commit_until(upto, out);
        if !self.chunk.is_empty() && !self.announced {
            self.announced = true;
            out.push_back(Output::Recording);
        }
    }

    /// Hand over the samples committed so far, as µ-law.
    pub(super) fn take(&mut self) -> Vec<u8> {
        self.announced = false;
        // the recorder decodes it as it writes: half the bytes wait in its queue, and the
        // call's thread does not decode
        std::mem::replace(&mut self.chunk, Vec::with_capacity(RECORDING_CHUNK_SAMPLES))
    }

    /// Caller slots not yet committed.
    pub(super) fn pending_slots(&self) -> usize {
        self.slots.len()
    }

    /// Agent audio spans not yet committed.
    pub(super) fn agent_spans(&self) -> usize {
        self.agent.len()
    }

    /// Frames that arrived after their slot was committed.
    pub(super) fn late_frames(&self) -> u64 {
        self.dropped_late
    }

    /// Mutable caller slot `slot`, creating silent slots up to it; `None` when already committed.
    fn slot(&mut self, slot: u64, out: &mut VecDeque<Output>) -> Option<&mut [u8; SAMPLES_8K]> {
        if slot < self.base_slot {
            self.dropped_late += 1;
            return None;
        }
        while slot >= self.base_slot + MAX_PENDING_SLOTS as u64 {
            self.commit_one(out);
        }
        let idx = (slot - self.base_slot) as usize;
        while self.slots.len() <= idx {
            self.slots.push_back([SILENCE; SAMPLES_8K]);
        }
        self.slots.get_mut(idx)
    }

    /// The agent's audio in `slot` (the oldest uncommitted one), spans before it moved to the
    /// played ones.
    fn agent_frame(&mut self, slot: u64, mulaw: &mut [u8; SAMPLES_8K]) {
        while self.agent.front().is_some_and(|s| s.end_slot() <= slot) {
            self.played.extend(self.agent.pop_front());
        }
        let keep_from = slot.saturating_sub(echo::AGENT_FRAMES as u64);
        while self
            .played
            .front()
            .is_some_and(|s| s.end_slot() <= keep_from)
        {
            self.played.pop_front();
        }
        if let Some(span) = self.agent.front()
            && span.slot <= slot
        {
            let at = (slot - span.slot) as usize * SAMPLES_8K;
            let frame = &span.audio[at..(at + SAMPLES_8K).min(span.audio.len())];
            mulaw[..frame.len()].copy_from_slice(frame);
        }
    }

    fn commit_one(&mut self, out: &mut VecDeque<Output>) {
        let caller = self.slots.pop_front().unwrap_or([SILENCE; SAMPLES_8K]);
        let mut agent = [SILENCE; SAMPLES_8K];
        self.agent_frame(self.base_slot, &mut agent);
        // interleaved stereo, written in place (no per-sample capacity checks)
        let start = self.chunk.len();
        self.chunk.resize(start + 2 * SAMPLES_8K, SILENCE);
        for ((pair, c), a) in self.chunk[start..]
            .chunks_exact_mut(2)
            .zip(caller.iter())
            .zip(agent.iter())
        {
            pair[0] = *c;
            pair[1] = *a;
        }
        self.base_slot += 1;
        if self.chunk.len() >= RECORDING_CHUNK_SAMPLES && !self.announced {
            self.announced = true;
            out.push_back(Output::Recording);
        }
    }

    /// Commit every slot that ends at or before `upto_ms`.
    fn commit_until(&mut self, upto_ms: u64, out: &mut VecDeque<Output>) {
        while (self.base_slot + 1) * FRAME <= upto_ms {
            self.commit_one(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::audio::g711;

    /// Slots per recording chunk.
    const CHUNK_SLOTS: u64 = (RECORDING_CHUNK_SAMPLES / (2 * SAMPLES_8K)) as u64;

    /// What µ-law code `b` (the tests' caller frames are made of one) decodes to.
    fn d(b: u8) -> i16 {
        g711::ulaw_decode(b)
    }

    /// The call ends at `now_ms`: the rest of the recording is taken, and the caller's
    /// channel, a sample per slot (the tests' frames are made of one code), returned.
    fn finish_caller(
        rec: &mut Recording,
        now_ms: u64,
        out: &mut VecDeque<Output>,
        all: &mut Vec<i16>,
    ) -> Vec<i16> {
        rec.finish(now_ms, out);
        drain(rec, out, all);
        all.iter().step_by(2 * SAMPLES_8K).copied().collect()
    }

    /// A caller frame of code `b` heard at `now_ms`, the time handled, and what is committed
    /// taken.
    fn hear(
        rec: &mut Recording,
        now_ms: u64,
        timestamp_ms: u64,
        b: u8,
        out: &mut VecDeque<Output>,
        all: &mut Vec<i16>,
    ) {
        rec.handle_caller_frame(now_ms, Some(timestamp_ms), &[b; SAMPLES_8K], out);
        rec.handle_time(now_ms, out);
        drain(rec, out, all);
    }

    fn drain(rec: &mut Recording, out: &mut VecDeque<Output>, all: &mut Vec<i16>) {
        while let Some(o) = out.pop_front() {
            if matches!(o, Output::Recording) {
                all.extend(rec.take().into_iter().map(g711::ulaw_decode));
            }
        }
    }

    /// A stream without timestamps (Vonage, the browser) that pauses for longer than the
    /// recording delay resumes at the present: its frames are recorded, not all dropped as late.
    #[test]
    fn frames_without_timestamps_resume_at_the_present_after_a_pause() {
        let mut rec = Recording::new(Duration::from_millis(400));
        let mut out = VecDeque::new();
        let mut all = Vec::new();
        for i in 0..10 {
            rec.handle_caller_frame(i * 20, None, &[1; SAMPLES_8K], &mut out);
            rec.handle_time(i * 20, &mut out);
        }
        // a second with nothing from the carrier
        rec.handle_time(1_200, &mut out);
        for i in 0..10 {
            let now = 1_200 + i * 20;
            rec.handle_caller_frame(now, None, &[2; SAMPLES_8K], &mut out);
            rec.handle_time(now, &mut out);
        }
        assert_eq!(rec.late_frames(), 0);
        let caller = finish_caller(&mut rec, 1_400, &mut out, &mut all);
        assert_eq!(caller.len(), 70);
        assert_eq!(&caller[..10], &[d(1); 10]);
        assert!(
            caller[10..60].iter().all(|&s| s == 0),
            "the pause is silence"
        );
        assert_eq!(&caller[60..], &[d(2); 10], "resumed where it was heard");
    }

    /// Plivo's timestamps count from its first media message: when that message came 400 ms-1 s
    /// after `start`, every caller frame was placed in a slot already committed and dropped as
    /// late, and the recording's caller channel was silent for the whole call.
    #[test]
    fn a_carrier_timeline_that_starts_late_is_moved_to_when_it_was_heard() {
        let mut rec = Recording::new(Duration::from_millis(400));
        let mut out = VecDeque::new();
        let mut all = Vec::new();
        rec.handle_time(600, &mut out);
        for i in 0..20u64 {
            hear(&mut rec, 600 + i * 20, i * 20, 5, &mut out, &mut all);
        }
        assert_eq!(rec.late_frames(), 0);
        let caller = finish_caller(&mut rec, 1_000, &mut out, &mut all);
        assert_eq!(caller.len(), 50);
        assert!(
            caller[..30].iter().all(|&s| s == 0),
            "before the first frame"
        );
        assert_eq!(&caller[30..], &[d(5); 20], "heard from 600 ms on");
    }

    /// The carrier's stream began 560 ms before the call's clock (the call was being set up):
    /// its first 28 frames come at once when the call starts, and every later frame arrives 560
    /// ms before its timestamp says. The caller's audio is recorded when it was heard (where the
    /// engine times the caller's turns and places the agent's audio), not 560 ms after it.
    #[test]
    fn a_carrier_timeline_ahead_of_the_call_is_moved_back_to_when_it_was_heard() {
        let mut rec = Recording::new(Duration::from_millis(400));
        let mut out = VecDeque::new();
        let mut all = Vec::new();
        for i in 0..28u64 {
            rec.handle_caller_frame(0, Some(i * 20), &[1; SAMPLES_8K], &mut out);
        }
        rec.handle_time(0, &mut out);
        for i in 0..40u64 {
            let now = 20 + i * 20;
            // a word from 400 ms of the call's time to 600 ms
            let b = if (400..600).contains(&now) { 9 } else { 1 };
            hear(&mut rec, now + 3, 560 + now, b, &mut out, &mut all);
        }
        assert_eq!(rec.late_frames(), 0);
        let caller = finish_caller(&mut rec, 823, &mut out, &mut all);
        let word: Vec<usize> = (0..caller.len()).filter(|&i| caller[i] == d(9)).collect();
        // heard from slot 20 (400 ms); the timestamps place it up to the tolerance later (the
        // carrier's timeline, 560 ms ahead, would put it at slot 48)
        assert_eq!(word.len(), 10, "{word:?}");
        assert!((20..=22).contains(&word[0]), "{word:?}");
        assert_eq!(word[9] - word[0], 9, "{word:?}");
        assert_eq!(caller.len(), 42, "the recording is as long as the call");
    }

    /// One frame whose timestamp jumps half a second ahead (a carrier's glitch) moves nothing:
    /// the frames after it are recorded where their timestamps put them, none dropped as late.
    #[test]
    fn one_odd_timestamp_ahead_moves_nothing() {
        let mut rec = Recording::new(Duration::from_millis(400));
        let mut out = VecDeque::new();
        let mut all = Vec::new();
        for i in 0..40u64 {
            let now = i * 20;
            let ts = if i == 20 { now + 500 } else { now };
            hear(&mut rec, now + 5, ts, 7, &mut out, &mut all);
        }
        assert_eq!(rec.late_frames(), 0);
        let caller = finish_caller(&mut rec, 805, &mut out, &mut all);
        let quiet: Vec<usize> = (0..40).filter(|&i| caller[i] != d(7)).collect();
        assert_eq!(quiet, vec![20], "only the odd frame's own slot");
    }

    /// Ordinary network delay on the first frame moves nothing: the carrier's timeline stands.
    #[test]
    fn a_first_frame_a_little_late_keeps_the_carrier_timeline() {
        let mut rec = Recording::new(Duration::from_millis(400));
        let mut out = VecDeque::new();
        let mut all = Vec::new();
        for i in 0..5u64 {
            rec.handle_caller_frame(60 + i * 20, Some(i * 20), &[5; SAMPLES_8K], &mut out);
        }
        let caller = finish_caller(&mut rec, 160, &mut out, &mut all);
        assert_eq!(
            &caller[..5],
            &[d(5); 5],
            "placed by its timestamps, from slot 0"
        );
    }

    /// A stream without timestamps (Vonage) whose frames sent while the call was set up are read
    /// at once runs ahead of the call's time by that backlog: it moves back to when its frames
    /// are heard, where the engine times the caller's turns, within a few frames.
    #[test]
    fn frames_without_timestamps_running_ahead_move_back_to_when_they_are_heard() {
        let mut rec = Recording::new(Duration::from_millis(400));
        let mut out = VecDeque::new();
        let mut all = Vec::new();
        // 300 ms of backlog (code 1) read at once as the call starts, then frames in real time,
        // each made of the slot it is heard in
        for _ in 0..15 {
            rec.handle_caller_frame(0, None, &[1; SAMPLES_8K], &mut out);
        }
        for i in 1..=40u64 {
            rec.handle_caller_frame(i * FRAME, None, &[100 + i as u8; SAMPLES_8K], &mut out);
            rec.handle_time(i * FRAME, &mut out);
            drain(&mut rec, &mut out, &mut all);
        }
        let caller = finish_caller(&mut rec, 41 * FRAME, &mut out, &mut all);
        // from the sixth real-time frame on, each lands where it was heard
        for i in 6..=40u64 {
            assert_eq!(caller[i as usize], d(100 + i as u8), "slot {i}: {caller:?}");
        }
        assert_eq!(rec.late_frames(), 0);
    }

    /// ...but one message cut in frames is one burst: a stream without timestamps sending 160 ms
    /// messages in real time stays gapless, each message where it was heard.
    #[test]
    fn frames_without_timestamps_in_long_messages_stay_in_order() {
        let mut rec = Recording::new(Duration::from_millis(400));
        let mut out = VecDeque::new();
        let mut all = Vec::new();
        for m in 0..10u64 {
            let now = m * 8 * FRAME;
            for f in 0..8u64 {
                let code = (m * 8 + f) as u8;
                rec.handle_caller_frame(now, None, &[code; SAMPLES_8K], &mut out);
            }
            rec.handle_time(now, &mut out);
            drain(&mut rec, &mut out, &mut all);
        }
        let caller = finish_caller(&mut rec, 80 * FRAME, &mut out, &mut all);
        let expected: Vec<i16> = (0..80u8).map(d).collect();
        assert_eq!(&caller[..80], &expected[..]);
    }

    /// The first frame of a stream without timestamps is recorded when it is heard, not at the
    /// call's start.
    #[test]
    fn the_first_frame_without_a_timestamp_goes_where_it_is_heard() {
        let mut rec = Recording::new(Duration::from_millis(400));
        let mut out = VecDeque::new();
        let mut all = Vec::new();
        for i in 15..30u64 {
            rec.handle_caller_frame(i * FRAME, None, &[3; SAMPLES_8K], &mut out);
        }
        let caller = finish_caller(&mut rec, 30 * FRAME, &mut out, &mut all);
        assert_eq!(caller.len(), 30);
        assert!(caller[..15].iter().all(|&s| s == 0), "{caller:?}");
        assert!(caller[15..].iter().all(|&s| s == d(3)), "{caller:?}");
    }

    #[test]
    fn slots_commit_in_order_after_the_delay_with_silence_in_gaps() {
        let mut rec = Recording::new(Duration::from_millis(400));
        let mut out = VecDeque::new();
        // caller frames at slots 0, 1 and (a carrier timestamp) 5
        rec.handle_caller_frame(0, None, &[1; SAMPLES_8K], &mut out);
        rec.handle_caller_frame(20, None, &[2; SAMPLES_8K], &mut out);
        rec.handle_caller_frame(100, Some(100), &[3; SAMPLES_8K], &mut out);
        // woken when the first chunk is due, not for every slot
        assert_eq!(rec.poll_timeout(), Some(CHUNK_SLOTS * 20 + 400));
        rec.handle_time(419, &mut out);
        assert!(out.is_empty());
        assert_eq!(rec.poll_timeout(), Some(CHUNK_SLOTS * 20 + 400));
        let mut all = Vec::new();
        rec.finish(120, &mut out);
        drain(&mut rec, &mut out, &mut all);
        // six slots (0..=5), interleaved stereo
        assert_eq!(all.len(), 6 * SAMPLES_8K * 2);
        let caller: Vec<i16> = all.iter().step_by(2 * SAMPLES_8K).copied().collect();
        assert_eq!(caller, vec![d(1), d(2), 0, 0, 0, d(3)]);
    }

    #[test]
    fn a_timestamp_far_from_now_is_ignored_and_late_frames_are_counted() {
        let mut rec = Recording::new(Duration::from_millis(400));
        let mut out = VecDeque::new();
        rec.handle_caller_frame(0, Some(3_600_000), &[1; SAMPLES_8K], &mut out);
        assert_eq!(rec.poll_timeout(), Some(CHUNK_SLOTS * 20 + 400));
        rec.handle_time(1000, &mut out);
        assert_eq!(rec.poll_timeout(), None);
        rec.handle_caller_frame(1000, Some(0), &[1; SAMPLES_8K], &mut out);
        assert_eq!(rec.late_frames(), 1);
        // agent audio for slots already committed is late too; the rest is kept
        let audio = AgentAudio::whole(vec![0x80; 40 * SAMPLES_8K].into());
        rec.handle_agent_audio(0, &audio);
        assert_eq!(rec.late_frames(), 1 + 30);
        assert_eq!(rec.agent[0].slot, 30);
        assert_eq!(rec.agent[0].audio.len(), 10 * SAMPLES_8K);
    }

    /// Found by the engine fuzz target: a late tick that commits several chunks' worth at once
    /// announced each of them, and every announcement after the first took an empty chunk.
    #[test]
    fn a_time_jump_announces_the_committed_audio_once() {
        let mut rec = Recording::new(Duration::from_millis(400));
        let mut out = VecDeque::new();
        rec.handle_caller_frame(0, None, &[1; SAMPLES_8K], &mut out);
        rec.handle_time(3_000 + 400, &mut out);
        let announced = out
            .iter()
            .filter(|o| matches!(o, Output::Recording))
            .count();
        assert_eq!(announced, 1);
        out.clear();
        assert_eq!(rec.take().len(), 150 * SAMPLES_8K * 2);
        // the next full chunk is announced again, and the end's partial one
        rec.handle_time(3_500 + 400, &mut out);
        assert_eq!(out.len(), 1);
        out.clear();
        assert_eq!(rec.take().len(), 25 * SAMPLES_8K * 2);
        rec.finish(3_510, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(rec.take().len(), SAMPLES_8K * 2);
    }

    #[test]
    fn the_timeline_stays_gapless_across_a_barge_in() {
        let mut rec = Recording::new(Duration::from_millis(400));
        let mut out = VecDeque::new();
        let mut all = Vec::new();
        // agent audio sent ahead in two chunks: slots 0..20; the caller talks over it from slot 0
        let audio = AgentAudio::whole(vec![0x80; 20 * SAMPLES_8K].into());
        rec.handle_agent_audio(0, &audio.prefix(10 * SAMPLES_8K));
        rec.handle_agent_audio(10 * FRAME, &audio.suffix(10 * SAMPLES_8K));
        assert_eq!(
            rec.agent.len(),
            1,
            "the second chunk extends the first span"
        );
        for i in 0..10u64 {
            rec.handle_caller_frame(i * FRAME, None, &[7; SAMPLES_8K], &mut out);
        }
        // barge-in at 200 ms: the agent audio queued after it never played
        rec.erase_agent_from(200);
        for i in 10..40u64 {
            rec.handle_caller_frame(i * FRAME, None, &[7; SAMPLES_8K], &mut out);
            rec.handle_time(i * FRAME, &mut out);
            drain(&mut rec, &mut out, &mut all);
        }
        rec.finish(800, &mut out);
        drain(&mut rec, &mut out, &mut all);
        assert_eq!(all.len(), 40 * SAMPLES_8K * 2);
        for (slot, frame) in all.chunks(SAMPLES_8K * 2).enumerate() {
            assert!(
                frame.iter().step_by(2).all(|&c| c == d(7)),
                "caller slot {slot}"
            );
            let agent_silent = frame.iter().skip(1).step_by(2).all(|&a| a == 0);
            assert_eq!(agent_silent, slot >= 10, "agent slot {slot}");
        }
    }
}
