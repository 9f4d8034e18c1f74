//! A whole call on a carrier that echoes no marks, in virtual time: with `echoes_marks: false` the
//! play-out clock ends each segment the moment its last frame has played; with `echoes_marks: true`
//! the same silent carrier costs the first segment its grace.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::tests::settings;
use super::*;
use crate::engine::audio::EnergyVad;

struct Run {
    /// Each event with the call time it came out.
    events: Vec<(u64, CallEvent)>,
    ended: Option<EndReason>,
}

/// The agent speaks to a caller who says nothing; the carrier plays everything and echoes nothing.
fn silent_call(echoes_marks: bool) -> Run {
    let t0 = Instant::now();
    let mut engine = CallEngine::with_pipeline(
        t0,
        EngineConfig {
            settings: Arc::new(settings()),
            returning_caller: false,
            timing: Timing::default(),
            echoes_marks,
            language_model: false,
            end_of_turn_model: false,
            barge_in_words: false,
            speaks_languages: false,
            context_meanings: None,
        },
        InboundPipeline::new(Box::new(EnergyVad::new(-35.0))),
    );
    let mut run = Run {
        events: Vec::new(),
        ended: None,
    };
    let mut now_ms = 0;
    let mut speak = Vec::new();
    loop {
        let deadline = loop {
            match engine.poll_output() {
                Output::Speak { speech, text } => speak.push((speech, text)),
                Output::Event(e) => run.events.push((now_ms, *e)),
                Output::Ended(r) => run.ended = Some(r),
                Output::SttAudio => while engine.pop_stt_frame().is_some() {},
                Output::Recording => drop(engine.take_recording()),
                Output::Timeout(t) => break t,
                _ => {}
            }
        };
        if run.ended.is_some() {
            return run;
        }
        let input = if let Some((speech, text)) = speak.pop() {
            // a frame of speech per character, synthesised at once
            Input::TtsAudio {
                speech,
                mulaw: Arc::from(vec![0x80u8; text.len() * SAMPLES_8K]),
            }
        } else {
            now_ms = deadline.duration_since(t0).as_millis() as u64;
            Input::Tick
        };
        assert!(now_ms < 600_000, "the call never ended");
        engine
            .handle_input(t0 + Duration::from_millis(now_ms), input)
            .expect("the call is live");
    }
}

/// (emitted at, end of the line) of the agent's transcript lines.
fn agent_lines(run: &Run) -> Vec<(u64, u64)> {
    run.events
        .iter()
        .filter_map(|(at, e)| match e {
            CallEvent::Transcript(l) if l.speaker == Speaker::Agent => Some((*at, l.end_ms)),
            _ => None,
        })
        .collect()
}

fn disclosures_in_full(run: &Run) -> Vec<bool> {
    run.events
        .iter()
        .filter_map(|(_, e)| match e {
            CallEvent::Disclosure(d) => Some(d.played_in_full),
            _ => None,
        })
        .collect()
}

#[test]
fn without_mark_echoes_the_clock_ends_each_segment_when_it_has_played() {
    let run = silent_call(false);
    assert!(run.ended.is_some());
    let lines = agent_lines(&run);
    assert!(
        lines.len() >= 3,
        "intro, disclosures, a question: {lines:?}"
    );
    for (at, end) in &lines {
        assert_eq!(
            at, end,
            "a segment ends the moment its last frame has played"
        );
    }
    let disclosures = disclosures_in_full(&run);
    assert!(!disclosures.is_empty());
    assert!(disclosures.iter().all(|&full| full), "played by the clock");
}

#[test]
fn a_carrier_that_should_echo_but_does_not_costs_the_grace_once() {
    let run = silent_call(true);
    assert!(run.ended.is_some());
    let lines = agent_lines(&run);
    let grace = Timing::default().mark_grace.as_millis() as u64;
    assert_eq!(lines[0].0, lines[0].1 + grace, "the first echo is awaited");
    for pair in lines.windows(2) {
        let ((prev_at, _), (at, end)) = (pair[0], pair[1]);
        // segments end in order: one frame past the estimate, or with the one before
        assert_eq!(at, (end + FRAME).max(prev_at), "{lines:?}");
    }
    assert!(disclosures_in_full(&run).iter().all(|&full| !full));
}
