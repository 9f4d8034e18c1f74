//! The recogniser feed: caller audio as the call carries it (µ-law, 8 kHz) in a fixed ring (the
//! pre-roll before speech onset, then the utterance's frames until the driver takes them),
//! announced with one
//! `Output::SttAudio` per batch; and the utterances awaiting their transcripts, oldest first, the
//! oldest with its deadline (a caller who goes on talking while their last words are recognised
//! has a second utterance end before the first one's transcript came).

use std::collections::VecDeque;
use std::time::Duration;

use super::Output;
use crate::engine::audio::SAMPLES_8K;

/// Frames the ring holds (320 ms, 2.5 KiB: µ-law is a byte a sample at 8 kHz, where 16 kHz PCM
/// took four times that; recognisers widen the audio when they need to).
pub(super) const STT_RING_FRAMES: usize = 16;

/// An ended utterance waiting for its transcript.
#[derive(Debug, Clone, Copy)]
struct Awaiting {
    utterance: u64,
    since_ms: u64,
    /// Start and end of the caller's speech, for the transcript line.
    line: (u64, u64),
}

/// Fixed size, allocated once; when the driver falls behind, the oldest undelivered frames are
/// lost and counted.
pub(super) struct Recognizer {
    frames: Box<[[u8; SAMPLES_8K]; STT_RING_FRAMES]>,
    /// Utterance of each frame; 0 for audio outside any utterance.
    tags: [u64; STT_RING_FRAMES],
    next: usize,
    filled: usize,
    undelivered: usize,
    dropped: u64,
    /// An `Output::SttAudio` is queued and not yet drained.
    signalled: bool,
    /// Oldest first; empty until a second utterance ends before a transcript (no allocation).
    awaiting: VecDeque<Awaiting>,
    timeout_ms: u64,
}

impl Recognizer {
    pub(super) fn new(stt_timeout: Duration) -> Self {
        Self {
            frames: Box::new([[0xFF; SAMPLES_8K]; STT_RING_FRAMES]),
            tags: [0; STT_RING_FRAMES],
            next: 0,
            filled: 0,
            undelivered: 0,
            dropped: 0,
            signalled: false,
            awaiting: VecDeque::new(),
            timeout_ms: stt_timeout.as_millis() as u64,
        }
    }

    /// Keep a frame; `utterance` 0 keeps it only as pre-roll, any other id delivers it.
    pub(super) fn handle_frame(
        &mut self,
        mulaw: &[u8; SAMPLES_8K],
        utterance: u64,
        out: &mut VecDeque<Output>,
    ) {
        self.frames[self.next] = *mulaw;
        self.tags[self.next] = utterance;
        self.next = (self.next + 1) % STT_RING_FRAMES;
        self.filled = (self.filled + 1).min(STT_RING_FRAMES);
        if utterance != 0 {
            self.deliver(1);
            self.signal(out);
        }
    }

    /// Speech started: give the last `n` frames (the pre-roll) to `utterance`.
    pub(super) fn handle_onset(&mut self, n: usize, utterance: u64, out: &mut VecDeque<Output>) {
        let n = n.min(self.filled).min(STT_RING_FRAMES - self.undelivered);
        for i in 0..n {
            let idx = (self.next + STT_RING_FRAMES - 1 - i) % STT_RING_FRAMES;
            self.tags[idx] = utterance;
        }
        self.deliver(n);
        self.signal(out);
    }

    /// The next frame for a recogniser, oldest first, with its utterance; `None` re-arms the
    /// `SttAudio` signal.
    pub(super) fn poll_frame(&mut self) -> Option<(u64, &[u8; SAMPLES_8K])> {
        if self.undelivered == 0 {
            self.signalled = false;
            return None;
        }
        let idx = (self.next + STT_RING_FRAMES - self.undelivered) % STT_RING_FRAMES;
        self.undelivered -= 1;
        Some((self.tags[idx], &self.frames[idx]))
    }

    /// Frames lost because the driver did not take them in time.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// `utterance` ended at `now_ms`; its transcript is awaited, after those of utterances that
    /// ended before it. `line`: its start and end.
    pub(super) fn handle_end(&mut self, now_ms: u64, utterance: u64, line: (u64, u64)) {
        self.awaiting.push_back(Awaiting {
            utterance,
            since_ms: now_ms,
            line,
        });
    }

    /// The utterance whose transcript is awaited first, if any.
    pub(super) fn awaiting(&self) -> Option<u64> {
        self.awaiting.front().map(|a| a.utterance)
    }

    /// The transcript of the first awaited utterance arrived (or failed): its line's start and
    /// end. The next utterance, if any, is awaited from now on.
    pub(super) fn handle_transcript(&mut self) -> Option<(u64, u64)> {
        self.awaiting.pop_front().map(|a| a.line)
    }

    /// When the first awaited transcript is overdue.
    pub(super) fn poll_timeout(&self) -> Option<u64> {
        self.awaiting.front().map(|a| a.since_ms + self.timeout_ms)
    }

    /// The first awaited transcript is overdue at `now_ms`: give up on it and return its
    /// utterance.
    pub(super) fn handle_timeout(&mut self, now_ms: u64) -> Option<u64> {
        let a = *self.awaiting.front()?;
        if now_ms < a.since_ms + self.timeout_ms {
            return None;
        }
        self.awaiting.pop_front();
        Some(a.utterance)
    }

    /// Forget every awaited transcript (the call moves on without them).
    pub(super) fn forget_awaited(&mut self) {
        self.awaiting.clear();
    }

    fn deliver(&mut self, n: usize) {
        self.undelivered += n;
        if self.undelivered > STT_RING_FRAMES {
            self.dropped += (self.undelivered - STT_RING_FRAMES) as u64;
            self.undelivered = STT_RING_FRAMES;
        }
    }

    fn signal(&mut self, out: &mut VecDeque<Output>) {
        if !self.signalled {
            self.signalled = true;
            out.push_back(Output::SttAudio);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(v: u8) -> [u8; SAMPLES_8K] {
        [v; SAMPLES_8K]
    }

    #[test]
    fn onset_delivers_the_pre_roll_then_the_utterance_with_one_signal() {
        let mut rec = Recognizer::new(Duration::from_secs(6));
        let mut out = VecDeque::new();
        for v in 1..=5 {
            rec.handle_frame(&frame(v), 0, &mut out);
        }
        assert!(out.is_empty(), "pre-roll alone is not announced");
        assert!(rec.poll_frame().is_none());
        rec.handle_onset(3, 7, &mut out);
        rec.handle_frame(&frame(6), 7, &mut out);
        assert_eq!(out.len(), 1);
        let got: Vec<(u64, u8)> =
            std::iter::from_fn(|| rec.poll_frame().map(|(u, f)| (u, f[0]))).collect();
        assert_eq!(got, vec![(7, 3), (7, 4), (7, 5), (7, 6)]);
        // drained: the next frame is announced again
        rec.handle_frame(&frame(7), 7, &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn a_driver_that_falls_behind_loses_the_oldest_frames_counted() {
        let mut rec = Recognizer::new(Duration::from_secs(6));
        let mut out = VecDeque::new();
        for v in 0..(STT_RING_FRAMES as u8 + 4) {
            rec.handle_frame(&frame(v), 1, &mut out);
        }
        assert_eq!(rec.dropped(), 4);
        assert_eq!(rec.poll_frame().map(|(_, f)| f[0]), Some(4));
    }

    #[test]
    fn the_awaited_transcript_has_a_deadline() {
        let mut rec = Recognizer::new(Duration::from_secs(6));
        assert_eq!(rec.poll_timeout(), None);
        rec.handle_end(1_000, 3, (200, 900));
        assert_eq!(rec.awaiting(), Some(3));
        assert_eq!(rec.poll_timeout(), Some(7_000));
        assert_eq!(rec.handle_timeout(6_999), None);
        assert_eq!(rec.handle_transcript(), Some((200, 900)));
        assert_eq!(rec.poll_timeout(), None);
        rec.handle_end(8_000, 4, (7_500, 7_900));
        assert_eq!(rec.handle_timeout(14_000), Some(4));
        assert_eq!(rec.awaiting(), None);
    }

    #[test]
    fn an_utterance_that_ends_before_the_last_ones_transcript_is_awaited_after_it() {
        let mut rec = Recognizer::new(Duration::from_secs(6));
        rec.handle_end(1_000, 3, (200, 900));
        rec.handle_end(2_500, 4, (1_300, 2_000));
        assert_eq!(rec.awaiting(), Some(3));
        assert_eq!(rec.poll_timeout(), Some(7_000));
        assert_eq!(rec.handle_transcript(), Some((200, 900)));
        // the second keeps its own deadline
        assert_eq!(rec.awaiting(), Some(4));
        assert_eq!(rec.poll_timeout(), Some(8_500));
        assert_eq!(rec.handle_timeout(8_499), None);
        assert_eq!(rec.handle_timeout(8_500), Some(4));
        assert_eq!(rec.awaiting(), None);
    }
}
