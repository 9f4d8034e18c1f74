//! receptionist: an AI phone receptionist for recruiting teams.
//!
//! A carrier streams a call's audio over a WebSocket; a per-call driver (in [`server`]) feeds it to a
//! pure, sans-IO [`engine::CallEngine`] and carries out the effects the engine returns.

/// Speech-to-text, text-to-speech and prompt cache behind narrow traits; offline defaults.
pub mod backends;
/// Typed configuration from flags and environment; secrets redacted in `Debug`.
pub mod config;
/// The outbox worker: delivers queued SMS (Twilio), email (SMTP), signed webhooks and post-call
/// jobs under one retry policy.
pub mod delivery;
/// PURE call engine: carrier wire formats, the audio hot path, the dialogue; no I/O, no clock.
pub mod engine;
/// Plain data shared by every layer: receptionist settings, call events, answers.
pub mod model;
/// After the call: confirmation texts, evaluation, routing; pure decisions, store transitions.
pub mod pipeline;
/// Call recordings: crash-safe two-channel WAV files.
pub mod recording;
/// All I/O: HTTP routes, carrier webhooks, the media WebSocket, the per-call driver.
pub mod server;
/// The only module that touches the database (SQLite or PostgreSQL).
pub mod store;
/// Test support: a counting allocator, a sample receptionist and the sans-IO fake carrier (for
/// tests, benches and tools).
#[doc(hidden)]
pub mod testing;
/// The tools beside the server: `simulate` and `loadgen`, speaking any carrier's protocol.
pub mod tools;
