//! The pure call engine. Nothing in here reads the clock, touches a socket or spawns a task: time is
//! an argument, effects are returned as values.

/// The audio hot path: G.711, resampling, voice activity detection, framing.
pub mod audio;
/// `CallEngine`: composes audio, turn-taking, pacing, recording and the dialogue.
pub mod call;
/// The receptionist script as a state machine and the understanding of answers.
pub mod dialogue;
/// Carrier wire formats parsed into typed events and serialised back (parse/serialise only).
pub mod media;

pub use call::{
    AgentAudio, CallEngine, CallError, EngineConfig, Input, Output, Pacing, RecordFrame, ToCaller,
};
