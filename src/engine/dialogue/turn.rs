//! Turn-taking from the voice activity detector's verdicts, one per 20 ms frame: when the caller
//! starts talking (speech onset), whether their talk over the agent is a barge-in, and when their
//! turn ends (endpointing: enough silence, or an utterance too long). It knows nothing of audio or
//! the dialogue: the call engine says who has the floor and whether a long pause is allowed.

use std::collections::VecDeque;
use std::time::Duration;

use crate::engine::audio::FRAME_MS;

/// Turn-taking thresholds, in frames.
#[derive(Debug, Clone, Copy)]
pub struct TurnTiming {
    /// Consecutive speech frames that start an utterance.
    pub onset: u32,
    /// Speech frames over interruptible agent audio that stop the agent (or, with
    /// `barge_in_sure`, frames from the onset after which, and after every as many more, it asks
    /// what the caller said, if they are talking then).
    pub barge_in: u32,
    /// With `barge_in_sure`: frames between the words' later checks, after the first at
    /// `barge_in` (0: `barge_in`).
    pub barge_in_every: u32,
    /// Speech frames after which talk over the agent stops it whatever the words (0: no second
    /// signal).
    pub barge_in_sure: u32,
    /// Shorter utterances (clicks, coughs) are discarded.
    pub min_utterance: u32,
    /// Silence frames that end the turn, and the longer pause allowed mid-answer.
    pub endpoint: u32,
    pub endpoint_long: u32,
    /// Frames after which an utterance is cut.
    pub max_utterance: u32,
    /// Silence frames after which a pause is reported ([`TurnEvent::Paused`]) so that an
    /// end-of-turn model can end the turn early; 0: never (the silence windows alone decide).
    pub pause: u32,
    /// Frames before the onset that belong to the utterance, at most `max_pre_roll`.
    pub pre_roll: u32,
    pub max_pre_roll: u32,
}

impl TurnTiming {
    /// Frames from the onset to the first check of the words over the agent, and between the
    /// later ones.
    fn barge_in_steps(&self) -> (u32, u32) {
        let first = self.barge_in.max(1);
        let every = if self.barge_in_every > 0 {
            self.barge_in_every
        } else {
            first
        };
        (first, every)
    }
}

/// Whole frames in `d`, at least one.
pub fn frames(d: Duration) -> u32 {
    (d.as_millis() as u64 / FRAME_MS).max(1) as u32
}

/// Who has the floor when a frame arrives.
#[derive(Debug, Clone, Copy, Default)]
pub struct Floor {
    /// The agent waits for the caller.
    pub listening: bool,
    /// The agent is speaking.
    pub agent_speaking: bool,
    /// ... and may be talked over.
    pub agent_interruptible: bool,
    /// A number or free text is expected: allow the longer pause.
    pub long_pause: bool,
}

/// A caller utterance that ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utterance {
    pub id: u64,
    pub start_ms: u64,
    pub last_speech_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnEvent {
    /// The caller started talking; the last `pre_roll` frames belong to the utterance.
    Onset { utterance: u64, pre_roll: usize },
    /// The caller talked over the agent long enough: stop the agent (`sure`), or, when words
    /// are checked first, see what they said.
    BargeIn { utterance: u64, sure: bool },
    /// The utterance ended with too little speech to be words.
    Discarded { utterance: u64 },
    /// The caller's turn ended.
    Ended(Utterance),
    /// The caller has paused for `pause` frames (once per pause, while they have the floor):
    /// ask whether the turn is complete; [`TurnTaking::end_now`] ends it if so.
    Paused { utterance: u64 },
}

#[derive(Debug)]
struct Capture {
    utterance: u64,
    start_ms: u64,
    last_speech_ms: u64,
    speech_frames: u32,
    silence_frames: u32,
    frames: u32,
    /// Started while the agent spoke (a possible barge-in).
    during_agent: bool,
    /// Barge-in signals given short of sure (one per `barge_in` frames of speech), and whether
    /// the sure one was.
    barge_signals: u32,
    barge_sure: bool,
    /// A check between the first two, at this many frames from the onset: the first check
    /// heard no words ([`TurnTaking::check_sooner`]).
    barge_sooner: Option<u32>,
}

pub struct TurnTaking {
    timing: TurnTiming,
    /// Consecutive speech frames.
    speech_run: u32,
    capture: Option<Capture>,
    next_utterance: u64,
    /// At most two events per frame; drained after each.
    events: VecDeque<TurnEvent>,
}

impl TurnTaking {
    pub fn new(timing: TurnTiming) -> Self {
        Self {
            timing,
            speech_run: 0,
            capture: None,
            next_utterance: 1,
            events: VecDeque::with_capacity(4),
        }
    }

    /// The utterance being captured, if any.
    pub fn utterance(&self) -> Option<u64> {
        self.capture.as_ref().map(|c| c.utterance)
    }

    /// When the utterance being captured began (its first speech), if one is.
    pub fn started_ms(&self) -> Option<u64> {
        self.capture.as_ref().map(|c| c.start_ms)
    }

    /// One frame's verdict at `now_ms` (the frame's end). Drain [`Self::poll_event`] after it.
    pub fn handle_frame(&mut self, now_ms: u64, speech: bool, floor: Floor) {
        self.speech_run = if speech { self.speech_run + 1 } else { 0 };
        let t = self.timing;
        if let Some(cap) = self.capture.as_mut() {
            cap.frames += 1;
            if speech {
                cap.speech_frames += 1;
                cap.silence_frames = 0;
                cap.last_speech_ms = now_ms;
            } else {
                cap.silence_frames += 1;
                if t.pause > 0
                    && cap.silence_frames == t.pause
                    && !floor.agent_speaking
                    && cap.speech_frames >= t.min_utterance
                {
                    self.events.push_back(TurnEvent::Paused {
                        utterance: cap.utterance,
                    });
                }
            }
            if cap.during_agent && floor.agent_speaking {
                let sure = cap.speech_frames
                    >= if t.barge_in_sure > 0 {
                        t.barge_in_sure
                    } else {
                        t.barge_in
                    };
                // the words are asked for by the clock from the onset, each time while the
                // caller is talking: what they said before a pause counts ("Sorry, which job"
                // is not held back by its comma), and talk that has stopped (a backchannel
                // over) is not asked about again
                let frames = (now_ms.saturating_sub(cap.start_ms) / FRAME_MS) as u32;
                let step = if speech {
                    let (first, every) = t.barge_in_steps();
                    frames
                        .checked_sub(first)
                        .map_or(0, |after| 1 + after / every)
                } else {
                    cap.barge_signals
                };
                // the check asked for sooner, while the caller is talking, unless the next step
                // asks anyway
                let sooner = speech
                    && step == cap.barge_signals
                    && cap.barge_sooner.is_some_and(|at| frames >= at);
                if sure && !cap.barge_sure {
                    cap.barge_sure = true;
                    self.events.push_back(TurnEvent::BargeIn {
                        utterance: cap.utterance,
                        sure: true,
                    });
                } else if !sure && (step > cap.barge_signals || sooner) {
                    cap.barge_signals = step;
                    cap.barge_sooner = None;
                    self.events.push_back(TurnEvent::BargeIn {
                        utterance: cap.utterance,
                        sure: false,
                    });
                }
            }
            let endpoint = if floor.long_pause {
                t.endpoint_long
            } else {
                t.endpoint
            };
            if cap.silence_frames >= endpoint || cap.frames >= t.max_utterance {
                self.end();
            }
            return;
        }
        let agent_interruptible = floor.agent_speaking && floor.agent_interruptible;
        if self.speech_run >= t.onset && (floor.listening || agent_interruptible) {
            let utterance = self.next_utterance;
            self.next_utterance += 1;
            let onset_ms = self.speech_run as u64 * FRAME_MS;
            let pre_roll = t.pre_roll.max(self.speech_run).min(t.max_pre_roll);
            self.capture = Some(Capture {
                utterance,
                start_ms: now_ms.saturating_sub(onset_ms),
                last_speech_ms: now_ms,
                speech_frames: self.speech_run,
                silence_frames: 0,
                frames: pre_roll,
                during_agent: agent_interruptible,
                barge_signals: 0,
                barge_sure: false,
                barge_sooner: None,
            });
            self.events.push_back(TurnEvent::Onset {
                utterance,
                pre_roll: pre_roll as usize,
            });
        }
    }

    /// Drop the utterance being captured (the caller keyed an answer, the call ends); its id.
    pub fn cancel(&mut self) -> Option<u64> {
        self.capture.take().map(|c| c.utterance)
    }

    /// Drop the utterance being captured as no speech at all (the agent's echo): a new one
    /// needs a whole onset of speech again. Its id.
    pub fn cancel_as_noise(&mut self) -> Option<u64> {
        self.speech_run = 0;
        self.cancel()
    }

    /// End `utterance` now if it is still being captured and the caller is still silent (an
    /// end-of-turn model said they finished); the `Ended` event follows. Whether it ended.
    pub fn end_now(&mut self, utterance: u64) -> bool {
        match &self.capture {
            Some(c) if c.utterance == utterance && c.silence_frames > 0 => {
                self.end();
                true
            }
            _ => false,
        }
    }

    /// The first check of `utterance`'s words over the agent heard none (its first 200 ms are
    /// often too little for the recogniser): ask again half a step after it (at 300 ms of speech
    /// by default), not only at the next step. Later checks keep the steps.
    pub fn check_sooner(&mut self, utterance: u64) {
        let (first, every) = self.timing.barge_in_steps();
        if let Some(cap) = self
            .capture
            .as_mut()
            .filter(|c| c.utterance == utterance && c.barge_signals == 1 && !c.barge_sure)
        {
            cap.barge_sooner = Some(first + (every / 2).max(1));
        }
    }

    /// Frames of quiet still to come, if the caller stays quiet, before the turn's next decision:
    /// the pause that asks an end-of-turn model, or the end of the turn (the shorter window, then
    /// the longer one allowed mid-answer, once the shorter has passed). `None` while no
    /// utterance is captured, the caller is talking (nothing can be decided before they are
    /// quiet), or every window has passed.
    pub fn frames_to_decision(&self) -> Option<u32> {
        let cap = self.capture.as_ref().filter(|c| c.silence_frames > 0)?;
        let t = self.timing;
        [t.pause, t.endpoint, t.endpoint_long]
            .into_iter()
            .filter(|&window| window > cap.silence_frames)
            .min()
            .map(|window| window - cap.silence_frames)
    }

    /// An utterance is being captured that began while the agent spoke (a possible barge-in).
    pub fn over_agent(&self) -> bool {
        self.capture.as_ref().is_some_and(|c| c.during_agent)
    }

    /// The caller is talking now: an utterance is being captured and its last speech was less
    /// than `frames` frames ago.
    pub fn talking(&self, frames: u32) -> bool {
        self.capture
            .as_ref()
            .is_some_and(|c| c.silence_frames < frames)
    }

    pub fn poll_event(&mut self) -> Option<TurnEvent> {
        self.events.pop_front()
    }

    fn end(&mut self) {
        let Some(cap) = self.capture.take() else {
            return;
        };
        self.events
            .push_back(if cap.speech_frames < self.timing.min_utterance {
                TurnEvent::Discarded {
                    utterance: cap.utterance,
                }
            } else {
                TurnEvent::Ended(Utterance {
                    id: cap.utterance,
                    start_ms: cap.start_ms,
                    last_speech_ms: cap.last_speech_ms,
                })
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> TurnTiming {
        TurnTiming {
            onset: 3,
            barge_in: 15,
            barge_in_every: 0,
            barge_in_sure: 0,
            min_utterance: 8,
            endpoint: 35,
            endpoint_long: 60,
            max_utterance: 1000,
            pause: 0,
            pre_roll: 10,
            max_pre_roll: 8,
        }
    }

    const LISTENING: Floor = Floor {
        listening: true,
        agent_speaking: false,
        agent_interruptible: false,
        long_pause: false,
    };

    #[test]
    fn the_next_decision_is_due_after_the_quiet_still_to_come() {
        let mut t = TurnTaking::new(TurnTiming {
            pause: 10,
            ..timing()
        });
        let mut ms = 0;
        assert_eq!(t.frames_to_decision(), None, "no turn");
        feed(&mut t, &mut ms, 20, true, LISTENING);
        assert_eq!(t.frames_to_decision(), None, "the caller is talking");
        feed(&mut t, &mut ms, 4, false, LISTENING);
        assert_eq!(
            t.frames_to_decision(),
            Some(6),
            "the pause that asks the model"
        );
        feed(&mut t, &mut ms, 10, false, LISTENING);
        assert_eq!(t.frames_to_decision(), Some(21), "the turn's end");
        let mid_answer = Floor {
            long_pause: true,
            ..LISTENING
        };
        feed(&mut t, &mut ms, 30, false, mid_answer);
        assert_eq!(
            t.frames_to_decision(),
            Some(16),
            "the longer window mid-answer"
        );
        let ev = feed(&mut t, &mut ms, 16, false, mid_answer);
        assert!(ev.iter().any(|e| matches!(e, TurnEvent::Ended(_))));
        assert_eq!(t.frames_to_decision(), None, "the turn has ended");
    }

    /// Feed `n` frames from `*ms` on, collecting events.
    fn feed(
        t: &mut TurnTaking,
        ms: &mut u64,
        n: u32,
        speech: bool,
        floor: Floor,
    ) -> Vec<TurnEvent> {
        let mut ev = Vec::new();
        for _ in 0..n {
            *ms += FRAME_MS;
            t.handle_frame(*ms, speech, floor);
            ev.extend(std::iter::from_fn(|| t.poll_event()));
        }
        ev
    }

    #[test]
    fn the_turn_ends_after_the_configured_silence() {
        let mut t = TurnTaking::new(timing());
        let mut ms = 0;
        assert!(feed(&mut t, &mut ms, 2, true, LISTENING).is_empty());
        let ev = feed(&mut t, &mut ms, 1, true, LISTENING);
        assert_eq!(
            ev,
            vec![TurnEvent::Onset {
                utterance: 1,
                pre_roll: 8
            }]
        );
        feed(&mut t, &mut ms, 20, true, LISTENING);
        let last_speech = ms;
        assert!(feed(&mut t, &mut ms, 34, false, LISTENING).is_empty());
        let ev = feed(&mut t, &mut ms, 1, false, LISTENING);
        assert_eq!(
            ev,
            vec![TurnEvent::Ended(Utterance {
                id: 1,
                start_ms: 0,
                last_speech_ms: last_speech
            })]
        );
        assert_eq!(t.utterance(), None);
    }

    #[test]
    fn a_longer_pause_is_allowed_when_asked() {
        let mut t = TurnTaking::new(timing());
        let floor = Floor {
            long_pause: true,
            ..LISTENING
        };
        let mut ms = 0;
        feed(&mut t, &mut ms, 20, true, floor);
        assert!(feed(&mut t, &mut ms, 59, false, floor).is_empty());
        assert!(matches!(
            feed(&mut t, &mut ms, 1, false, floor)[..],
            [TurnEvent::Ended(_)]
        ));
    }

    #[test]
    fn a_click_is_discarded() {
        let mut t = TurnTaking::new(timing());
        let mut ms = 0;
        feed(&mut t, &mut ms, 4, true, LISTENING);
        let ev = feed(&mut t, &mut ms, 35, false, LISTENING);
        assert_eq!(ev, vec![TurnEvent::Discarded { utterance: 1 }]);
    }

    #[test]
    fn barge_in_only_over_interruptible_agent_speech() {
        let speaking = Floor {
            listening: false,
            agent_speaking: true,
            agent_interruptible: false,
            long_pause: false,
        };
        // a disclosure: talk over it starts nothing
        let mut t = TurnTaking::new(timing());
        let mut ms = 0;
        assert!(feed(&mut t, &mut ms, 100, true, speaking).is_empty());
        // interruptible: onset at once, barge-in after `barge_in` speech frames, once
        let interruptible = Floor {
            agent_interruptible: true,
            ..speaking
        };
        let mut t = TurnTaking::new(timing());
        let mut ms = 0;
        let ev = feed(&mut t, &mut ms, 3, true, interruptible);
        assert!(matches!(ev[..], [TurnEvent::Onset { utterance: 1, .. }]));
        assert!(feed(&mut t, &mut ms, 11, true, interruptible).is_empty());
        let ev = feed(&mut t, &mut ms, 1, true, interruptible);
        assert_eq!(
            ev,
            vec![TurnEvent::BargeIn {
                utterance: 1,
                sure: true
            }]
        );
        // the agent stopped: the caller has the floor, no second barge-in
        let after = Floor {
            agent_speaking: false,
            ..interruptible
        };
        assert!(feed(&mut t, &mut ms, 10, true, after).is_empty());
    }

    #[test]
    fn a_pause_is_reported_once_and_a_model_may_end_the_turn_there() {
        let mut t = TurnTaking::new(TurnTiming {
            pause: 10,
            ..timing()
        });
        let mut ms = 0;
        feed(&mut t, &mut ms, 20, true, LISTENING);
        assert!(feed(&mut t, &mut ms, 9, false, LISTENING).is_empty());
        assert_eq!(
            feed(&mut t, &mut ms, 1, false, LISTENING),
            vec![TurnEvent::Paused { utterance: 1 }]
        );
        assert!(feed(&mut t, &mut ms, 5, false, LISTENING).is_empty());
        // the caller goes on: a later pause is asked about again
        feed(&mut t, &mut ms, 5, true, LISTENING);
        let ev = feed(&mut t, &mut ms, 10, false, LISTENING);
        assert_eq!(ev, vec![TurnEvent::Paused { utterance: 1 }]);
        // a verdict for another utterance, or one that came while they talk again, ends nothing
        assert!(!t.end_now(2));
        feed(&mut t, &mut ms, 1, true, LISTENING);
        assert!(!t.end_now(1));
        feed(&mut t, &mut ms, 3, false, LISTENING);
        assert!(t.end_now(1));
        assert!(matches!(
            t.poll_event(),
            Some(TurnEvent::Ended(Utterance { id: 1, .. }))
        ));
        assert_eq!(t.utterance(), None);
        // a click is never asked about
        feed(&mut t, &mut ms, 4, true, LISTENING);
        assert!(
            !feed(&mut t, &mut ms, 20, false, LISTENING)
                .contains(&TurnEvent::Paused { utterance: 2 })
        );
    }

    /// Turn-taking that asks for the words every 10 frames and is sure at 50, and the floor of
    /// an agent speaking interruptibly.
    fn words_checked() -> (TurnTaking, Floor) {
        let t = TurnTaking::new(TurnTiming {
            barge_in: 10,
            barge_in_sure: 50,
            ..timing()
        });
        let speaking = Floor {
            listening: false,
            agent_speaking: true,
            agent_interruptible: true,
            long_pause: false,
        };
        (t, speaking)
    }

    #[test]
    fn with_words_checked_barge_in_signals_every_step_then_is_sure() {
        let (mut t, speaking) = words_checked();
        let mut ms = 0;
        let ev = feed(&mut t, &mut ms, 60, true, speaking);
        let barges: Vec<_> = ev
            .into_iter()
            .filter(|e| matches!(e, TurnEvent::BargeIn { .. }))
            .collect();
        let not_sure = TurnEvent::BargeIn {
            utterance: 1,
            sure: false,
        };
        let sure = TurnEvent::BargeIn {
            utterance: 1,
            sure: true,
        };
        // at 10, 20, 30 and 40 frames of speech, then sure at 50
        assert_eq!(barges, vec![not_sure, not_sure, not_sure, not_sure, sure]);
    }

    #[test]
    fn with_words_checked_more_often_the_first_check_waits_as_long() {
        let (_, speaking) = words_checked();
        let mut t = TurnTaking::new(TurnTiming {
            barge_in: 10,
            barge_in_every: 5,
            barge_in_sure: 50,
            ..timing()
        });
        let mut ms = 0;
        // onset after 3 frames; nothing asked before 10 frames of speech
        let ev = feed(&mut t, &mut ms, 9, true, speaking);
        assert!(!ev.iter().any(|e| matches!(e, TurnEvent::BargeIn { .. })));
        let ev = feed(&mut t, &mut ms, 51, true, speaking);
        let steps = ev
            .iter()
            .filter(|e| matches!(e, TurnEvent::BargeIn { sure: false, .. }))
            .count();
        // at 10, 15, 20, … 45 frames of speech, then sure at 50
        assert_eq!(steps, 8);
        assert_eq!(
            ev.iter()
                .filter(|e| matches!(e, TurnEvent::BargeIn { sure: true, .. }))
                .count(),
            1
        );
    }

    #[test]
    fn with_words_checked_a_pause_defers_the_next_step_only_while_it_lasts() {
        let (mut t, speaking) = words_checked();
        let barges = |ev: Vec<TurnEvent>| {
            ev.iter()
                .filter(|e| matches!(e, TurnEvent::BargeIn { .. }))
                .count()
        };
        let mut ms = 0;
        // "Sorry," (15 frames): asked at 10
        assert_eq!(barges(feed(&mut t, &mut ms, 15, true, speaking)), 1);
        // its comma's pause (8 frames) spans the step at 20: not asked while silent
        assert_eq!(barges(feed(&mut t, &mut ms, 8, false, speaking)), 0);
        // "which": asked at its first frame (24 frames from the onset, 16 of speech), not
        // after 20 frames of speech
        assert_eq!(barges(feed(&mut t, &mut ms, 1, true, speaking)), 1);
        assert_eq!(barges(feed(&mut t, &mut ms, 5, true, speaking)), 0);
        // and at 30 frames from the onset
        assert_eq!(barges(feed(&mut t, &mut ms, 1, true, speaking)), 1);
    }

    #[test]
    fn cancel_drops_the_capture() {
        let mut t = TurnTaking::new(timing());
        let mut ms = 0;
        feed(&mut t, &mut ms, 5, true, LISTENING);
        assert_eq!(t.cancel(), Some(1));
        assert_eq!(t.cancel(), None);
        assert!(feed(&mut t, &mut ms, 40, false, LISTENING).is_empty());
    }
}
