//! Turn latency accounting: from the caller's last speech to the end of their turn, to the
//! transcript, to the first audio of the reply. A turn is counted when its reply starts playing.

use crate::model::TurnLatency;

#[derive(Debug, Clone, Copy)]
struct Pending {
    last_speech_ms: u64,
    endpoint_ms: u64,
    transcript_ms: Option<u64>,
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
        });
    }

    /// The turn produced no reply (a sound with no words).
    pub(super) fn discard(&mut self) {
        self.pending = None;
    }

    /// The reply's first audio was sent at `now_ms`: the turn's latency, once.
    pub(super) fn handle_reply_audio(&mut self, now_ms: u64) -> Option<TurnLatency> {
        let p = self.pending.take()?;
        let transcript = p.transcript_ms.unwrap_or(p.endpoint_ms);
        self.turns += 1;
        Some(TurnLatency {
            turn: self.turns,
            endpointing_ms: p.endpoint_ms.saturating_sub(p.last_speech_ms),
            stt_ms: transcript.saturating_sub(p.endpoint_ms),
            tts_ms: now_ms.saturating_sub(transcript),
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
