//! The audio hot path: G.711 µ-law and A-law, 8 → 16 kHz resampling, voice activity detection and
//! the framing of caller audio into exact 20 ms frames; and the conversion of each carrier's codec
//! (A-law, L16 at 8-48 kHz, Opus) to and from the engine's µ-law 8 kHz ([`transcode`]). Pure (no clock, no I/O) and, on the steady
//! path, allocation-free: every buffer is allocated in a constructor.

pub mod g711;
#[cfg(feature = "opus")]
pub mod opus;
mod pipeline;
pub mod rate;
pub mod resample;
pub mod transcode;
pub mod vad;
mod vad_front;

pub use pipeline::{InboundFrame, InboundPipeline, MAX_BUFFERED_FRAMES, VAD_GATE_DBFS};
pub use resample::{
    MulawWidener, Upsampler8To16, UpsamplerKind, mulaw_to_16k, resample, resample_to_8k,
};
pub use transcode::{AudioCodec, AudioError, ByteOrder, InboundTranscoder, OutboundTranscoder};
pub use vad::{EarshotVad, EnergyVad, VoiceDetector, level_dbfs};

/// Length of one frame of the hot path, in milliseconds.
pub const FRAME_MS: u64 = 20;
/// One 20 ms frame at 8 kHz (also: bytes of one 20 ms µ-law frame).
pub const SAMPLES_8K: usize = 160;
/// One 20 ms frame at 16 kHz.
pub const SAMPLES_16K: usize = 320;

#[cfg(test)]
mod vad_eval;
