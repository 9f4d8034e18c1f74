//! Agent speech on its way to the caller: the turn's segments (one per prompt, each waiting for
//! its synthesised audio), sending it ahead of real time ([`Pacing`]: in mark-sized chunks up to
//! [`BURST_LEAD`] ahead, or frame by frame `pacing_lead` ahead), marks, and the play-out clock
//! that says what the caller heard and when playback ends.
//!
//! What was heard comes from the carrier's mark echoes when it sends them (`echoes_marks`); a
//! segment ends when its last mark comes back, or `mark_grace` after its estimated end for a
//! carrier that silently stops echoing. A carrier without echoes (Vonage) is timed by the clock
//! alone: a segment has played when its estimated end has passed.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{AgentAudio, BURST_LEAD, FRAME, MarkId, Output, Pacing, Timing};
use crate::engine::audio::SAMPLES_8K;
use crate::engine::dialogue::{Prompt, PromptKind};
use crate::model::{CallEvent, DisclosureRecord, Speaker, TranscriptLine};

#[derive(Debug)]
struct Segment {
    speech: u64,
    text: String,
    interruptible: bool,
    kind: PromptKind,
    requested_ms: u64,
    audio: SegmentAudio,
    /// Bytes of audio sent.
    pos: usize,
    /// The piece being sent, and the bytes of it sent.
    piece: usize,
    piece_pos: usize,
    frames_sent: u32,
    /// Frames known to have played (echoed marks, or the clock).
    frames_heard: u32,
    first_play_ms: Option<u64>,
    /// Estimated time the last frame finishes playing.
    play_end_ms: u64,
    end_mark_sent: bool,
    /// Its synthesis broke off: its audio is only the start of its text.
    cut: bool,
}

/// A segment's synthesised audio as it arrives: whole-frame pieces (a streaming synthesiser's
/// chunks, or the whole audio at once), complete once the last one came.
#[derive(Debug, Default)]
struct SegmentAudio {
    pieces: Vec<Arc<[u8]>>,
    /// Bytes in `pieces`: whole frames.
    len: usize,
    /// The start of a frame that ended a piece, held for the next one.
    tail: Vec<u8>,
    complete: bool,
}

impl SegmentAudio {
    /// Some audio came (or the stream ended without any).
    fn arrived(&self) -> bool {
        !self.pieces.is_empty() || self.complete
    }

    /// Append `chunk`; `last` ends the audio, padding a frame it ends inside with silence.
    fn push(&mut self, chunk: Arc<[u8]>, last: bool) {
        if self.complete {
            return;
        }
        if self.tail.is_empty() && chunk.len().is_multiple_of(SAMPLES_8K) {
            // whole frames: kept as they are (the whole-audio case never copies)
            self.add(chunk);
        } else {
            let whole = (self.tail.len() + chunk.len()) / SAMPLES_8K * SAMPLES_8K;
            if whole > 0 {
                let mut piece = Vec::with_capacity(whole);
                piece.extend_from_slice(&self.tail);
                let take = whole - self.tail.len();
                piece.extend_from_slice(&chunk[..take]);
                self.tail.clear();
                self.tail.extend_from_slice(&chunk[take..]);
                self.add(piece.into());
            } else {
                self.tail.extend_from_slice(&chunk);
            }
        }
        if last {
            self.end();
        }
    }

    /// No more audio will come: what is held is padded to a whole frame.
    fn end(&mut self) {
        if !self.tail.is_empty() {
            let mut piece = std::mem::take(&mut self.tail);
            piece.resize(SAMPLES_8K, 0xFF);
            self.add(piece.into());
        }
        self.complete = true;
    }

    fn add(&mut self, piece: Arc<[u8]>) {
        if !piece.is_empty() {
            self.len += piece.len();
            self.pieces.push(piece);
        }
    }
}

impl Segment {
    /// Frames of its audio (so far, while it streams).
    fn total_frames(&self) -> u32 {
        (self.audio.len / SAMPLES_8K) as u32
    }
    /// Its audio started playing by `now_ms` (sent ahead is not yet heard).
    fn started_by(&self, now_ms: u64) -> bool {
        self.first_play_ms.is_some_and(|t| t <= now_ms)
    }
    /// Audio that came is not all sent yet.
    fn has_unsent(&self) -> bool {
        self.pos < self.audio.len
    }
}

/// Marks awaiting their echo, bounded. A carrier that echoes keeps up to a lead's worth in flight
/// (25 at [`BURST_LEAD`] with a mark every 200 ms); one that never echoes (or stopped) would grow
/// the queue for the whole call. Policy: past the bound the oldest mark that does not end a
/// segment is forgotten (a later echo confirms everything before it anyway; a segment's last mark
/// is kept, its echo ends the segment), and a segment the play-out clock ended takes its marks
/// with it. What such a carrier's caller heard is then the clock's estimate, as for a carrier
/// without echoes.
pub(crate) const MAX_PENDING_MARKS: usize = 64;

#[derive(Debug, Clone, Copy)]
struct PendingMark {
    id: MarkId,
    cleared: bool,
}

/// What to send to the carrier next.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Transmit {
    /// Whole frames of agent audio that play from `play_at_ms`; `first` when they start their
    /// segment; `mark` to send right after them.
    Media {
        audio: AgentAudio,
        play_at_ms: u64,
        first: bool,
        mark: Option<MarkId>,
    },
    /// The segment's last mark.
    Mark(MarkId),
}

pub(super) struct Playout {
    segments: VecDeque<Segment>,
    next_speech: u64,
    /// Call time at which audio already queued at the carrier finishes playing.
    play_cursor_ms: u64,
    pending_marks: VecDeque<PendingMark>,
    /// The carrier is expected to echo marks (configuration).
    echoes_marks: bool,
    /// Whether it does: unknown until the first echo or the first segment that finished without
    /// one.
    carrier_echoes: Option<bool>,
    lead_ms: u64,
    /// Frames per media message: 1, or a mark's worth.
    chunk_frames: u32,
    mark_every: u32,
    mark_grace_ms: u64,
    tts_timeout_ms: u64,
}

impl Playout {
    pub(super) fn new(timing: &Timing, echoes_marks: bool) -> Self {
        Self {
            segments: VecDeque::new(),
            next_speech: 1,
            play_cursor_ms: 0,
            pending_marks: VecDeque::with_capacity(MAX_PENDING_MARKS),
            echoes_marks,
            carrier_echoes: None,
            lead_ms: match timing.pacing {
                Pacing::Burst => BURST_LEAD.as_millis() as u64,
                Pacing::Frames => timing.pacing_lead.as_millis() as u64,
            },
            chunk_frames: match timing.pacing {
                Pacing::Burst => timing.mark_every_frames.max(1),
                Pacing::Frames => 1,
            },
            mark_every: timing.mark_every_frames.max(1),
            mark_grace_ms: timing.mark_grace.as_millis() as u64,
            tts_timeout_ms: timing.tts_timeout.as_millis() as u64,
        }
    }

    /// Queue a prompt; its audio is awaited under the returned speech id.
    pub(super) fn queue(&mut self, now_ms: u64, prompt: Prompt) -> u64 {
        let speech = self.next_speech;
        self.next_speech += 1;
        self.segments.push_back(Segment {
            speech,
            text: prompt.text,
            interruptible: prompt.interruptible,
            kind: prompt.kind,
            requested_ms: now_ms,
            audio: SegmentAudio::default(),
            pos: 0,
            piece: 0,
            piece_pos: 0,
            frames_sent: 0,
            frames_heard: 0,
            first_play_ms: None,
            play_end_ms: 0,
            end_mark_sent: false,
            cut: false,
        });
        speech
    }

    pub(super) fn pending_marks(&self) -> usize {
        self.pending_marks.len()
    }

    /// Speech segments queued or playing.
    pub(super) fn segments(&self) -> usize {
        self.segments.len()
    }

    /// What of the turn the caller has not heard in full, as prompts to say again: the segment
    /// playing (from its start) and every one queued after it.
    pub(super) fn unheard(&self) -> Vec<Prompt> {
        self.segments
            .iter()
            .filter(|s| !s.audio.complete || s.frames_heard < s.total_frames())
            .map(|s| Prompt {
                text: s.text.clone(),
                interruptible: s.interruptible,
                kind: s.kind,
            })
            .collect()
    }

    /// Nothing queued or playing.
    pub(super) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The caller may talk over what is queued: every segment is interruptible and the first one
    /// has its audio.
    pub(super) fn interruptible(&self) -> bool {
        self.segments
            .front()
            .is_some_and(|s| s.interruptible && s.audio.arrived())
            && self.segments.iter().all(|s| s.interruptible)
    }

    /// The whole synthesised audio for `speech`; unknown or already answered ids are ignored.
    /// Audio that ends mid-frame is padded with silence to a whole frame.
    pub(super) fn handle_tts_audio(&mut self, speech: u64, mulaw: Arc<[u8]>) {
        if let Some(seg) = self.segments.iter_mut().find(|s| s.speech == speech)
            && !seg.audio.arrived()
        {
            seg.audio.push(mulaw, true);
        }
    }

    /// More of the audio for `speech` from a streaming synthesiser (`last`: the end of it). It
    /// plays as it comes; a chunk may end mid-frame.
    pub(super) fn handle_tts_chunk(&mut self, speech: u64, mulaw: Arc<[u8]>, last: bool) {
        if let Some(seg) = self.segments.iter_mut().find(|s| s.speech == speech) {
            seg.audio.push(mulaw, last);
        }
    }

    /// The synthesis of `speech` failed after some of its audio came: the segment ends with what
    /// came (returns false when nothing came, and the failure is the caller's to handle).
    pub(super) fn cut_short(&mut self, speech: u64) -> bool {
        match self.segments.iter_mut().find(|s| s.speech == speech) {
            Some(seg)
                if !seg.audio.complete
                    && (!seg.audio.pieces.is_empty() || !seg.audio.tail.is_empty()) =>
            {
                seg.audio.end();
                seg.cut = true;
                true
            }
            _ => false,
        }
    }

    /// The kind of prompt `speech` is, while its audio is still awaited.
    pub(super) fn awaiting_audio(&self, speech: u64) -> Option<PromptKind> {
        self.segments
            .iter()
            .find(|s| s.speech == speech && !s.audio.arrived())
            .map(|s| s.kind)
    }

    /// The segment next in line whose audio is overdue.
    pub(super) fn tts_overdue(&self, now_ms: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| !s.end_mark_sent)
            .filter(|s| !s.audio.arrived() && now_ms >= s.requested_ms + self.tts_timeout_ms)
            .map(|s| s.speech)
    }

    /// The next thing to send by `now_ms`: up to a chunk of whole frames while what is queued at
    /// the carrier plays out no further than the lead ahead.
    pub(super) fn poll_transmit(&mut self, now_ms: u64) -> Option<Transmit> {
        // segments play back to back: the first one not fully sent
        let seg = self.segments.iter_mut().find(|s| !s.end_mark_sent)?;
        if !seg.has_unsent() {
            if !seg.audio.complete {
                return None; // more is on its way
            }
            seg.end_mark_sent = true;
            let id = MarkId {
                speech: seg.speech,
                frames: seg.frames_sent,
                last: true,
            };
            self.expect_echo(id);
            return Some(Transmit::Mark(id));
        }
        if self.play_cursor_ms > now_ms + self.lead_ms {
            return None;
        }
        // a chunk ends at the next mark, so a mark always follows whole chunks; and at the end
        // of its piece
        let to_mark = self.mark_every - seg.frames_sent % self.mark_every;
        let frames = self.chunk_frames.min(to_mark) as usize;
        let piece = &seg.audio.pieces[seg.piece];
        let end = (seg.piece_pos + frames * SAMPLES_8K).min(piece.len());
        let sent = (end - seg.piece_pos).div_ceil(SAMPLES_8K) as u32;
        let chunk = AgentAudio::new(piece.clone(), seg.piece_pos..end);
        seg.pos += end - seg.piece_pos;
        if end == piece.len() {
            seg.piece += 1;
            seg.piece_pos = 0;
        } else {
            seg.piece_pos = end;
        }
        let more = seg.has_unsent() || !seg.audio.complete;
        seg.frames_sent += sent;
        let play_at_ms = self.play_cursor_ms.max(now_ms);
        let first = seg.first_play_ms.is_none();
        if first {
            seg.first_play_ms = Some(play_at_ms);
        }
        self.play_cursor_ms = play_at_ms + sent as u64 * FRAME;
        seg.play_end_ms = self.play_cursor_ms;
        let mark = (seg.frames_sent.is_multiple_of(self.mark_every) && more).then_some(MarkId {
            speech: seg.speech,
            frames: seg.frames_sent,
            last: false,
        });
        if let Some(id) = mark {
            self.expect_echo(id);
        }
        Some(Transmit::Media {
            audio: chunk,
            play_at_ms,
            first,
            mark,
        })
    }

    /// The carrier echoed a mark. Returns true when the turn's audio has all played.
    pub(super) fn handle_mark(&mut self, name: &str, out: &mut VecDeque<Output>) -> bool {
        if !self.echoes_marks {
            return false;
        }
        let Some(id) = MarkId::parse(name) else {
            return false;
        };
        self.carrier_echoes = Some(true);
        let Some(pos) = self.pending_marks.iter().position(|m| m.id == id) else {
            return false;
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
            return false;
        }
        if let Some(seg) = self.segments.iter_mut().find(|s| s.speech == id.speech) {
            seg.frames_heard = seg.frames_heard.max(id.frames);
            if id.last {
                return self.segment_done(id.speech, true, out);
            }
        }
        false
    }

    /// Time passed: a segment whose end has passed without an echo is done (at once on a carrier
    /// without echoes, after the grace otherwise). Returns true when the turn's audio has all
    /// played.
    pub(super) fn handle_time(&mut self, now_ms: u64, out: &mut VecDeque<Output>) -> bool {
        self.advance_clock(now_ms);
        if let Some(seg) = self.segments.front()
            && seg.end_mark_sent
            && now_ms >= seg.play_end_ms + self.grace_ms()
        {
            let speech = seg.speech;
            if !self.echoes_marks {
                return self.segment_done(speech, true, out);
            }
            if self.carrier_echoes.is_none() {
                self.carrier_echoes = Some(false);
            }
            // its echoes (and those of every segment before it) will not be awaited any more
            self.pending_marks.retain(|m| m.id.speech > speech);
            return self.segment_done(speech, false, out);
        }
        false
    }

    /// The earliest of: the overdue-audio deadline, the next frame to send, the end of the
    /// segment playing.
    pub(super) fn poll_timeout(&self) -> Option<u64> {
        let mut d: Option<u64> = None;
        let mut min = |x: u64| d = Some(d.map_or(x, |d| d.min(x)));
        if let Some(seg) = self.segments.iter().find(|s| !s.end_mark_sent) {
            if !seg.audio.arrived() {
                min(seg.requested_ms + self.tts_timeout_ms);
            } else if seg.has_unsent() {
                min(self.play_cursor_ms.saturating_sub(self.lead_ms));
            }
        }
        if let Some(seg) = self.segments.front()
            && seg.end_mark_sent
        {
            min(seg.play_end_ms + self.grace_ms());
        }
        d
    }

    /// Stop at `now_ms`: clear the carrier's buffer if anything was sent, forget the marks in
    /// flight and drop every segment (what played of it goes to the transcript). Returns whether
    /// audio was cleared.
    pub(super) fn clear(&mut self, now_ms: u64, out: &mut VecDeque<Output>) -> bool {
        self.advance_clock(now_ms);
        let playing = self.segments.iter().any(|s| s.frames_sent > 0);
        if playing {
            out.push_back(Output::ToCaller(super::ToCaller::Clear));
            for m in self.pending_marks.iter_mut() {
                m.cleared = true;
            }
        }
        self.play_cursor_ms = self.play_cursor_ms.min(now_ms);
        self.drop_queued(now_ms, out);
        playing
    }

    /// Audio sent is still queued at the carrier by `now_ms`: replacing the turn must clear it.
    pub(super) fn sent_ahead(&self, now_ms: u64) -> bool {
        self.play_cursor_ms > now_ms && self.segments.iter().any(|s| s.frames_sent > 0)
    }

    /// Drop every segment, cancelling its synthesis (a new turn replaces what is queued). A
    /// segment that started playing by `now_ms` goes to the transcript.
    pub(super) fn drop_queued(&mut self, now_ms: u64, out: &mut VecDeque<Output>) {
        while let Some(seg) = self.segments.pop_back() {
            out.push_back(Output::CancelSpeech { speech: seg.speech });
            if seg.started_by(now_ms) {
                transcribe(&seg, true, out);
            }
        }
    }

    /// The call ended at `now_ms`: record what the caller heard of unfinished segments.
    pub(super) fn finish(&mut self, now_ms: u64, out: &mut VecDeque<Output>) {
        self.advance_clock(now_ms);
        while let Some(seg) = self.segments.pop_front() {
            if let PromptKind::Disclosure(kind) = seg.kind {
                out.push_back(Output::Event(Box::new(CallEvent::Disclosure(
                    DisclosureRecord {
                        kind,
                        text: seg.text.clone(),
                        played_in_full: false,
                    },
                ))));
            }
            if seg.started_by(now_ms) {
                let heard_all = seg.frames_heard >= seg.total_frames();
                transcribe(&seg, !heard_all, out);
            }
        }
    }

    fn expect_echo(&mut self, id: MarkId) {
        if !self.echoes_marks {
            return;
        }
        if self.pending_marks.len() >= MAX_PENDING_MARKS {
            // the oldest that does not end a segment (see [`MAX_PENDING_MARKS`])
            let oldest = self.pending_marks.iter().position(|m| !m.id.last);
            self.pending_marks.remove(oldest.unwrap_or(0));
        }
        self.pending_marks
            .push_back(PendingMark { id, cleared: false });
    }

    /// How long after a segment's estimated end to wait for its last mark.
    fn grace_ms(&self) -> u64 {
        match (self.echoes_marks, self.carrier_echoes) {
            (false, _) => 0,
            (true, Some(false)) => FRAME,
            (true, _) => self.mark_grace_ms,
        }
    }

    /// Without echoes (by design, or from a carrier found not to send them), the clock says how
    /// much of each started segment has played.
    fn advance_clock(&mut self, now_ms: u64) {
        if self.echoes_marks && self.carrier_echoes != Some(false) {
            return;
        }
        for seg in self.segments.iter_mut() {
            if let Some(start) = seg.first_play_ms {
                let played = (now_ms.saturating_sub(start) / FRAME) as u32;
                seg.frames_heard = seg.frames_heard.max(played.min(seg.frames_sent));
            }
        }
    }

    fn segment_done(&mut self, speech: u64, confirmed: bool, out: &mut VecDeque<Output>) -> bool {
        let Some(idx) = self.segments.iter().position(|s| s.speech == speech) else {
            return false;
        };
        // segments play in order: anything before it is done too
        for _ in 0..=idx {
            let Some(seg) = self.segments.pop_front() else {
                break;
            };
            let full = confirmed && seg.speech == speech && !seg.cut;
            if let PromptKind::Disclosure(kind) = seg.kind {
                out.push_back(Output::Event(Box::new(CallEvent::Disclosure(
                    DisclosureRecord {
                        kind,
                        text: seg.text.clone(),
                        played_in_full: full,
                    },
                ))));
            }
            transcribe(&seg, false, out);
        }
        self.segments.is_empty()
    }
}

/// The agent's transcript line for a segment that started playing.
fn transcribe(seg: &Segment, interrupted: bool, out: &mut VecDeque<Output>) {
    let Some(start_ms) = seg.first_play_ms else {
        return;
    };
    // what a cut segment would have lasted, from its text, at about 15 characters a second
    let total = if seg.cut {
        let said = (seg.text.chars().count() as u64 * 65).div_ceil(FRAME) as u32;
        seg.total_frames().max(said)
    } else {
        seg.total_frames()
    }
    .max(1);
    let interrupted = interrupted || seg.cut;
    let (text, end_ms) = if interrupted {
        let heard = seg.frames_heard.min(total);
        (
            heard_prefix(&seg.text, heard as f64 / total as f64),
            start_ms + heard as u64 * FRAME,
        )
    } else {
        (seg.text.clone(), seg.play_end_ms)
    };
    out.push_back(Output::Event(Box::new(CallEvent::Transcript(
        TranscriptLine {
            speaker: Speaker::Agent,
            text,
            start_ms,
            end_ms,
            interrupted,
            dtmf: false,
        },
    ))));
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
mod tests {
    use super::*;
    use crate::model::DisclosureKind;

    fn timing() -> Timing {
        Timing::default()
    }

    fn prompt(text: &str, kind: PromptKind) -> Prompt {
        Prompt {
            text: text.to_string(),
            interruptible: !matches!(kind, PromptKind::Disclosure(_)),
            kind,
        }
    }

    fn audio(frames: usize) -> Arc<[u8]> {
        Arc::from(vec![0x80u8; frames * SAMPLES_8K])
    }

    /// Everything due at `now_ms`, as (media frames, marks).
    fn pump(p: &mut Playout, now_ms: u64) -> (u32, Vec<MarkId>) {
        let (mut media, mut marks) = (0, Vec::new());
        while let Some(t) = p.poll_transmit(now_ms) {
            match t {
                Transmit::Media { audio, mark, .. } => {
                    media += audio.frames().len() as u32;
                    marks.extend(mark);
                }
                Transmit::Mark(id) => marks.push(id),
            }
        }
        (media, marks)
    }

    fn disclosures(out: &VecDeque<Output>) -> Vec<bool> {
        out.iter()
            .filter_map(|o| match o {
                Output::Event(e) => match &**e {
                    CallEvent::Disclosure(d) => Some(d.played_in_full),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    fn agent_lines(out: &VecDeque<Output>) -> Vec<TranscriptLine> {
        out.iter()
            .filter_map(|o| match o {
                Output::Event(e) => match &**e {
                    CallEvent::Transcript(l) => Some(l.clone()),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_burst_sends_chunks_up_to_the_lead_then_one_per_mark_as_they_play() {
        let mut p = Playout::new(&timing(), true);
        let speech = p.queue(0, prompt("hello there", PromptKind::Say));
        // 8 s of audio ending mid-frame: padded to a whole frame
        p.handle_tts_audio(speech, Arc::from(vec![0x80u8; 400 * SAMPLES_8K - 60]));
        let mut chunks = Vec::new();
        while let Some(t) = p.poll_transmit(0) {
            chunks.push(t);
        }
        // 5 s (the lead) and one more chunk go out at once, each chunk followed by its mark
        assert_eq!(chunks.len(), 26);
        for (i, t) in chunks.iter().enumerate() {
            let Transmit::Media {
                audio,
                play_at_ms,
                first,
                mark,
            } = t
            else {
                panic!("{t:?}")
            };
            assert_eq!(audio.len(), 10 * SAMPLES_8K);
            assert_eq!(*play_at_ms, i as u64 * 200);
            assert_eq!(*first, i == 0);
            assert_eq!(mark.map(|m| m.frames), Some(10 * (i as u32 + 1)));
        }
        // the rest, a chunk every 200 ms as it plays
        assert_eq!(p.poll_timeout(), Some(5_200 - 5_000));
        assert_eq!(pump(&mut p, 200).0, 10);
        assert_eq!(p.poll_timeout(), Some(400));
        let (frames, marks) = pump(&mut p, 3_000);
        assert_eq!(frames, 400 - 270);
        assert_eq!(marks.last().map(|m| m.to_string()), Some("s1end400".into()));
        assert_eq!(p.play_cursor_ms, 8_000);
    }

    #[test]
    fn a_streamed_segment_plays_its_pieces_as_they_come() {
        let mut p = Playout::new(&timing(), true);
        let speech = p.queue(0, prompt("one two three four", PromptKind::Say));
        assert!(!p.interruptible(), "nothing to talk over yet");
        // a first piece that ends inside its eighth frame: seven whole frames go out at once
        p.handle_tts_chunk(speech, Arc::from(vec![0x80u8; 7 * SAMPLES_8K + 40]), false);
        assert!(p.interruptible());
        let (frames, marks) = pump(&mut p, 0);
        assert_eq!((frames, marks.len()), (7, 0));
        // waiting for more is no deadline (no busy loop), and the segment is not over
        assert_eq!(p.poll_timeout(), None);
        assert_eq!(
            p.tts_overdue(10_000),
            None,
            "audio came: no synthesis deadline"
        );
        assert_eq!(p.unheard().len(), 1);
        // pieces of any length; the held bytes start the next frame
        p.handle_tts_chunk(speech, Arc::from(vec![0x80u8; 2 * SAMPLES_8K]), false);
        assert_eq!(pump(&mut p, 20).0, 2);
        p.handle_tts_chunk(speech, Arc::from(vec![0x80u8; 50]), true);
        // the last frame is the held 40 + 50 bytes and silence; then the end mark
        let (frames, marks) = pump(&mut p, 40);
        assert_eq!(frames, 1);
        assert_eq!(marks.last().map(|m| m.to_string()), Some("s1end10".into()));
        assert_eq!(
            p.play_cursor_ms, 200,
            "no gap: the pieces play back to back"
        );
        // a late piece after the end changes nothing
        p.handle_tts_chunk(speech, audio(5), true);
        assert_eq!(pump(&mut p, 60), (0, vec![]));
        let mut out = VecDeque::new();
        assert!(p.handle_mark("s1end10", &mut out));
        let lines = agent_lines(&out);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].text, "one two three four");
        assert!(!lines[0].interrupted);
    }

    #[test]
    fn a_stream_that_breaks_off_ends_its_segment_with_what_came() {
        let mut p = Playout::new(&timing(), true);
        let text = "This call may be recorded for quality and training purposes.";
        let speech = p.queue(
            0,
            prompt(text, PromptKind::Disclosure(DisclosureKind::Recording)),
        );
        assert!(
            !p.cut_short(speech),
            "nothing came: the failure is the caller's"
        );
        p.handle_tts_chunk(speech, audio(10), false);
        assert_eq!(pump(&mut p, 0).0, 10);
        assert!(p.cut_short(speech));
        assert!(!p.cut_short(speech), "once");
        let (frames, marks) = pump(&mut p, 0);
        assert_eq!(frames, 0);
        assert_eq!(marks.last().map(|m| m.to_string()), Some("s1end10".into()));
        let mut out = VecDeque::new();
        assert!(p.handle_mark("s1end10", &mut out));
        // all that came was heard, but not the whole text: not in full, and marked so
        assert_eq!(disclosures(&out), vec![false]);
        let lines = agent_lines(&out);
        assert!(lines[0].interrupted);
        assert!(lines[0].text.ends_with('…'), "{}", lines[0].text);
        assert!(lines[0].text.len() < text.len());
    }

    #[test]
    fn frame_pacing_keeps_about_the_lead_ahead_of_real_time() {
        let timing = Timing {
            pacing: Pacing::Frames,
            ..timing()
        };
        let mut p = Playout::new(&timing, true);
        let speech = p.queue(0, prompt("hello there", PromptKind::Say));
        assert_eq!(pump(&mut p, 0).0, 0, "nothing to send before the audio");
        assert_eq!(p.poll_timeout(), Some(4_000), "the synthesis deadline");
        p.handle_tts_audio(speech, audio(200));
        for now in (0..2_000).step_by(20) {
            pump(&mut p, now);
            let lead = p.play_cursor_ms - now;
            assert!((200..=220).contains(&lead), "lead {lead} ms at {now}");
            assert_eq!(p.poll_timeout(), Some(now + 20), "woken for the next frame");
        }
    }

    #[test]
    fn marks_go_out_in_order_and_the_last_echo_ends_the_segment() {
        let mut p = Playout::new(&timing(), true);
        let mut out = VecDeque::new();
        let speech = p.queue(
            0,
            prompt(
                "We record calls.",
                PromptKind::Disclosure(DisclosureKind::Recording),
            ),
        );
        p.handle_tts_audio(speech, audio(25));
        let mut marks = Vec::new();
        for now in (0..600).step_by(20) {
            marks.extend(pump(&mut p, now).1);
        }
        let names: Vec<String> = marks.iter().map(|m| m.to_string()).collect();
        assert_eq!(names, ["s1f10", "s1f20", "s1end25"]);
        // the carrier is still playing: the segment waits for its echo, not the estimate
        assert_eq!(p.poll_timeout(), Some(500 + 1_500));
        assert!(!p.handle_mark("s1f10", &mut out));
        assert!(!p.handle_mark("s1f20", &mut out));
        assert!(p.handle_mark("s1end25", &mut out), "the turn has played");
        assert_eq!(disclosures(&out), [true]);
        assert!(p.is_empty());
    }

    #[test]
    fn clear_drops_queued_audio_and_pending_marks() {
        let mut p = Playout::new(&timing(), true);
        let mut out = VecDeque::new();
        let a = p.queue(
            0,
            prompt("one two three four five six seven eight", PromptKind::Say),
        );
        let b = p.queue(0, prompt("and more", PromptKind::Say));
        p.handle_tts_audio(a, audio(40));
        p.handle_tts_audio(b, audio(10));
        for now in (0..=200).step_by(20) {
            pump(&mut p, now);
        }
        assert!(!p.handle_mark("s1f10", &mut out));
        assert!(out.is_empty(), "an echo mid-segment ends nothing");
        // the caller heard 10 of 40 frames when the agent is stopped
        assert!(p.clear(200, &mut out));
        assert!(matches!(
            out[0],
            Output::ToCaller(super::super::ToCaller::Clear)
        ));
        let cancelled: Vec<u64> = out
            .iter()
            .filter_map(|o| match o {
                Output::CancelSpeech { speech } => Some(*speech),
                _ => None,
            })
            .collect();
        assert_eq!(cancelled, [b, a]);
        let lines = agent_lines(&out);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].interrupted);
        assert_eq!(lines[0].text, "one two…");
        assert_eq!(lines[0].end_ms, 200);
        // nothing more goes out, and a late echo of a cleared mark confirms nothing
        assert!(p.is_empty());
        assert_eq!(pump(&mut p, 220), (0, vec![]));
        out.clear();
        assert!(!p.handle_mark("s1f20", &mut out));
        assert!(out.is_empty());
        assert_eq!(p.poll_timeout(), None);
    }

    #[test]
    fn a_carrier_that_stops_echoing_gets_the_grace_then_the_clock() {
        let mut p = Playout::new(&timing(), true);
        let mut out = VecDeque::new();
        let a = p.queue(
            0,
            prompt(
                "We record calls.",
                PromptKind::Disclosure(DisclosureKind::Recording),
            ),
        );
        p.handle_tts_audio(a, audio(5));
        pump(&mut p, 0);
        assert_eq!(p.poll_timeout(), Some(100 + 1_500));
        assert!(!p.handle_time(1_599, &mut out));
        assert!(p.handle_time(1_600, &mut out));
        assert_eq!(disclosures(&out), [false], "not confirmed: never echoed");
        // known silent now: the next segment waits one frame past its end
        let b = p.queue(1_600, prompt("Next.", PromptKind::Say));
        p.handle_tts_audio(b, audio(5));
        pump(&mut p, 1_600);
        assert_eq!(p.poll_timeout(), Some(1_700 + 20));
    }

    #[test]
    fn marks_awaiting_an_echo_are_bounded() {
        let mut p = Playout::new(&timing(), true);
        let mut out = VecDeque::new();
        let a = p.queue(0, prompt("a long answer", PromptKind::Say));
        p.handle_tts_audio(a, audio(3_000));
        for now in (0..60_000).step_by(20) {
            pump(&mut p, now);
        }
        assert_eq!(p.pending_marks.len(), MAX_PENDING_MARKS);
        // a late echo of a recent mark still confirms what was heard
        assert!(!p.handle_mark("s1f2990", &mut out));
        assert_eq!(p.segments[0].frames_heard, 2990);
        assert!(p.handle_mark("s1end3000", &mut out));
    }

    #[test]
    fn a_carrier_that_never_echoes_keeps_marks_bounded_for_a_whole_call() {
        // 15 minutes of agent turns of 3 to 21 s each, the caller's turn between them, and not
        // one mark echoed
        let mut p = Playout::new(&timing(), true);
        let mut out = VecDeque::new();
        let (mut now, mut turn, mut marks, mut most) = (0, 0, 0, 0);
        while now < 15 * 60_000 {
            let s = p.queue(now, prompt("one two three four", PromptKind::Say));
            p.handle_tts_audio(s, audio(150 + turn % 7 * 150));
            turn += 1;
            loop {
                marks += pump(&mut p, now).1.len();
                most = most.max(p.pending_marks.len());
                if p.handle_time(now, &mut out) {
                    break;
                }
                now += 20;
            }
            now += 1_000;
        }
        assert!(marks > 20 * MAX_PENDING_MARKS, "{marks} marks sent");
        assert!(most <= MAX_PENDING_MARKS, "{most} marks pending at most");
        assert!(
            p.pending_marks.is_empty(),
            "ended segments took their marks"
        );
        let lines = agent_lines(&out);
        assert_eq!(lines.len(), turn);
        assert!(lines.iter().all(|l| !l.interrupted));
        // known silent: what was heard of a stopped segment is the clock's, not nothing
        out.clear();
        let s = p.queue(now, prompt("one two three four", PromptKind::Say));
        p.handle_tts_audio(s, audio(40));
        pump(&mut p, now);
        assert!(p.clear(now + 400, &mut out));
        assert_eq!(agent_lines(&out)[0].text, "one two…");
    }

    #[test]
    fn without_echoes_the_clock_alone_times_playback() {
        let mut p = Playout::new(&timing(), false);
        let mut out = VecDeque::new();
        let a = p.queue(
            0,
            prompt(
                "We record calls.",
                PromptKind::Disclosure(DisclosureKind::Recording),
            ),
        );
        p.handle_tts_audio(a, audio(25));
        for now in (0..=300).step_by(20) {
            pump(&mut p, now);
        }
        // done exactly when its last frame has played: no grace, no echo awaited
        assert_eq!(p.poll_timeout(), Some(500));
        assert!(!p.handle_mark("s1end25", &mut out), "echoes are not used");
        assert!(!p.handle_time(499, &mut out));
        assert!(p.handle_time(500, &mut out));
        assert_eq!(disclosures(&out), [true]);
        assert_eq!(agent_lines(&out)[0].end_ms, 500);
        assert!(
            p.pending_marks.is_empty(),
            "no marks kept for echoes that never come"
        );
    }

    #[test]
    fn without_echoes_the_clock_says_what_was_heard_of_an_interrupted_segment() {
        let mut p = Playout::new(&timing(), false);
        let mut out = VecDeque::new();
        let a = p.queue(
            0,
            prompt("one two three four five six seven eight", PromptKind::Say),
        );
        p.handle_tts_audio(a, audio(40));
        for now in (0..=400).step_by(20) {
            pump(&mut p, now);
        }
        // 30 frames sent, 20 played by 400 ms
        assert!(p.clear(400, &mut out));
        let lines = agent_lines(&out);
        assert_eq!(lines[0].text, "one two three four…");
        assert_eq!(lines[0].end_ms, 400);
    }
}
