//! Turn latency accounting: from the caller's last speech to the end of their turn, to the
//! transcript, to the first audio of the reply. A turn is counted when its reply starts playing.

use crate::model::TurnLatency;

#[derive(Debug, Clone, Copy)]
struct Pending {
    last_speech_ms: u64,
    endpoint_ms: u64,
    transcript_ms: Option<u64>,
    /// The language model's first result for the turn, and its last.
    model_first_ms: Option<u64>,
    model_done_ms: Option<u64>,
}

#[derive(Default)]
pub(super) struct Latency {
    pending: Option<Pending>,
    turns: u32,
}

impl Latency {
    /// The caller's turn ended at `endpoint_ms`; they last spoke at `last_speech_ms`.
    pub(super) fn handle_endpoint(&mut self, last_speech_ms: u64, endpoint_ms: u64) {
        self.pending = Some(Pending {
            last_speech_ms,
            endpoint_ms,
            transcript_ms: None,
            model_first_ms: None,
            model_done_ms: None,
        });
    }

    /// The turn's transcript arrived.
    pub(super) fn handle_transcript(&mut self, now_ms: u64) {
        if let Some(p) = self.pending.as_mut() {
            p.transcript_ms = Some(now_ms);
        }
    }

    /// A keypad answer: the turn ends and is understood at once.
    pub(super) fn handle_keypad(&mut self, now_ms: u64) {
        self.pending = Some(Pending {
            last_speech_ms: now_ms,
            endpoint_ms: now_ms,
            transcript_ms: Some(now_ms),
            model_first_ms: None,
            model_done_ms: None,
        });
    }

    /// A result from the language model: the first one of the turn, and `done` when the model has
    /// finished (before the reply's first audio; a streamed answer usually finishes after).
    pub(super) fn handle_model_result(&mut self, now_ms: u64, done: bool) {
        if let Some(p) = self.pending.as_mut() {
            p.model_first_ms.get_or_insert(now_ms);
            if done {
                p.model_done_ms.get_or_insert(now_ms);
            }
        }
    }

    /// The turn produced no reply (a sound with no words).
    pub(super) fn discard(&mut self) {
        self.pending = None;
    }

    /// The reply's first audio was sent at `now_ms`: the turn's latency, once.
    pub(super) fn handle_reply_audio(&mut self, now_ms: u64) -> Option<TurnLatency> {
        let p = self.pending.take()?;
        let transcript = p.transcript_ms.unwrap_or(p.endpoint_ms);
        // synthesis starts once the dialogue knows what to say: after the model, if consulted
        let said = p.model_first_ms.unwrap_or(transcript);
        self.turns += 1;
        Some(TurnLatency {
            turn: self.turns,
            endpointing_ms: p.endpoint_ms.saturating_sub(p.last_speech_ms),
            stt_ms: transcript.saturating_sub(p.endpoint_ms),
            llm_first_ms: p.model_first_ms.map(|m| m.saturating_sub(transcript)),
            llm_ms: p.model_done_ms.map(|m| m.saturating_sub(transcript)),
            tts_ms: now_ms.saturating_sub(said),
            total_ms: now_ms.saturating_sub(p.last_speech_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spoken_turn_splits_into_endpointing_recognition_and_synthesis() {
        let mut l = Latency::default();
        assert!(l.handle_reply_audio(0).is_none(), "the greeting is no turn");
        l.handle_endpoint(1_000, 1_700);
        l.handle_transcript(2_000);
        let t = l.handle_reply_audio(2_600).expect("a turn");
        assert_eq!(
            (t.turn, t.endpointing_ms, t.stt_ms, t.tts_ms, t.total_ms),
            (1, 700, 300, 600, 1_600)
        );
        assert!(l.handle_reply_audio(2_620).is_none(), "counted once");
    }

    #[test]
    fn keypad_turns_count_only_synthesis_and_discarded_turns_nothing() {
        let mut l = Latency::default();
        l.handle_keypad(5_000);
        let t = l.handle_reply_audio(5_400).expect("a turn");
        assert_eq!(
            (t.turn, t.endpointing_ms, t.stt_ms, t.tts_ms),
            (1, 0, 0, 400)
        );
        l.handle_endpoint(6_000, 6_700);
        l.discard();
        assert!(l.handle_reply_audio(7_000).is_none());
    }
}
