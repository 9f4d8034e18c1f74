//! Plain data shared by the engine, the store and the API: receptionist settings and what a call
//! produces. No I/O here; every type is serde-serialisable so the store keeps it as JSON and the API
//! returns it as is.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What kind of answer a screening question expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuestionKind {
    YesNo,
    Number,
    FreeText,
}

/// One screening question as the recruiter configured it.
///
/// `expected` is, by kind: `yes` or `no`; a number, a comparison (`>= 18`, `<= 40`, `> 2`, `< 5`)
/// or a range (`18-65`); for free text, comma-separated keywords of which one must appear.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Question {
    pub text: String,
    pub kind: QuestionKind,
    #[serde(default)]
    pub expected: Option<String>,
    #[serde(default)]
    pub dealbreaker: bool,
    #[serde(default = "default_weight")]
    pub weight: f64,
}

fn default_weight() -> f64 {
    1.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LanguageMode {
    #[default]
    English,
    Multilingual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReceptionistStatus {
    #[default]
    Live,
    Inactive,
}

/// Everything a call needs to know about its receptionist (a snapshot taken when the call starts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReceptionistSettings {
    pub phone_number: String,
    pub agent_name: String,
    pub voice: String,
    pub intro_message: String,
    pub language_mode: LanguageMode,
    pub manual_approval: bool,
    pub disclose_ai: bool,
    pub disclose_recording: bool,
    pub disclose_e_verify: bool,
    pub collect_location: bool,
    pub enforce_job_location_match: bool,
    pub custom_context: String,
    pub questions: Vec<Question>,
    pub score_threshold: u8,
    pub status: ReceptionistStatus,
    /// Text the caller after the call to confirm what was captured; off: confirmed at once.
    #[serde(default = "default_true")]
    pub sms_confirmation: bool,
    /// Interviewers this receptionist may ingest candidates into.
    #[serde(default)]
    pub interviewer_ids: Vec<String>,
    /// Where automatically approved candidates are ingested (one of `interviewer_ids`).
    #[serde(default)]
    pub default_interviewer_id: Option<String>,
}

fn default_true() -> bool {
    true
}

/// Pipeline progress of a candidate (product.md, "After the call"): a text asks the caller to
/// confirm what was captured, then the candidate is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CandidateStatus {
    AwaitingConfirmation,
    Confirmed,
    Processing,
    Evaluated,
}

impl CandidateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingConfirmation => "awaiting_confirmation",
            Self::Confirmed => "confirmed",
            Self::Processing => "processing",
            Self::Evaluated => "evaluated",
        }
    }
}

/// The decision on a candidate: set by routing after an evaluation, or by a recruiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Review {
    NeedsReview,
    Approved,
    Rejected,
}

impl Review {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NeedsReview => "needs_review",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
        }
    }
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The dialogue reached its polite close.
    Completed,
    /// The carrier sent `stop` (the caller hung up).
    CallerHangup,
    /// The socket closed without `stop`.
    Disconnected,
    /// Repeated silence from the caller.
    Silence,
    /// The maximum call length was reached.
    MaxDuration,
    /// Backends failed repeatedly; the agent apologised and ended the call.
    BackendFailure,
    /// The media session broke the protocol (bad frames, no valid `start`).
    ProtocolError,
    /// The server stopped during the call; found and closed at the next start.
    ServerInterrupted,
    /// The server was shutting down and the call outlasted its drain period: the agent said
    /// goodbye and ended it.
    ServerShutdown,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::CallerHangup => "caller_hangup",
            Self::Disconnected => "disconnected",
            Self::Silence => "silence",
            Self::MaxDuration => "max_duration",
            Self::BackendFailure => "backend_failure",
            Self::ProtocolError => "protocol_error",
            Self::ServerInterrupted => "server_interrupted",
            Self::ServerShutdown => "server_shutdown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    Agent,
    Caller,
}

/// One line of the transcript. Times are milliseconds since the media stream started.
/// For the agent, `text` is what the caller actually heard (cut at the barge-in point when
/// `interrupted`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TranscriptLine {
    pub speaker: Speaker,
    pub text: String,
    pub start_ms: u64,
    pub end_ms: u64,
    #[serde(default)]
    pub interrupted: bool,
    /// Keypad input rather than speech.
    #[serde(default)]
    pub dtmf: bool,
}

/// The understood value of an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum AnswerValue {
    Yes,
    No,
    Number(f64),
    Text(String),
    /// Still unclear after the allowed re-asks.
    Unclear,
}

/// The answer to one screening question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AnswerRecord {
    pub question_index: usize,
    pub question: String,
    pub kind: QuestionKind,
    /// What the caller said (or keyed) on the attempt that settled the answer.
    pub raw: String,
    pub value: AnswerValue,
    /// How many times the question was asked (1 to 3).
    pub attempts: u8,
    pub via_dtmf: bool,
    /// Whether the answer matches `expected`; `None` when no expectation is configured or unclear.
    pub meets_expected: Option<bool>,
    pub dealbreaker_failed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DisclosureKind {
    Ai,
    Recording,
    EVerify,
}

/// Whether a legal disclosure was played in full: confirmed by the carrier's mark echo, or on a
/// carrier without echoes (Vonage, `EngineConfig::echoes_marks` false) by the engine's play-out clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DisclosureRecord {
    pub kind: DisclosureKind,
    pub text: String,
    pub played_in_full: bool,
}

/// Latency of one caller-turn → agent-reply, by stage, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TurnLatency {
    pub turn: u32,
    /// Silence waited after the caller's last speech before deciding the turn ended.
    pub endpointing_ms: u64,
    /// End of turn → transcript.
    pub stt_ms: u64,
    /// Transcript → the language model's first result (its reading of the caller's words, or the
    /// first piece of its answer); absent without a model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_first_ms: Option<u64>,
    /// Transcript → the language model done, when it finished before the reply's first audio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_ms: Option<u64>,
    /// What to say known (transcript, or the model's first result) → reply audio ready (TTS or
    /// the prompt cache).
    pub tts_ms: u64,
    /// Caller's last speech → first agent audio frame sent (voice to voice, server side).
    pub total_ms: u64,
}

/// What a call produces as it goes; the driver persists each event as it is emitted so that a crash
/// or a drop keeps everything so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CallEvent {
    Transcript(TranscriptLine),
    Name {
        name: String,
    },
    Location {
        location: String,
    },
    Answer(AnswerRecord),
    Disclosure(DisclosureRecord),
    Latency(TurnLatency),
    /// The recogniser heard the caller speak `language` (ISO 639-1) in a multilingual call;
    /// `answered_in`: the agent speaks it from then on (else it went on in English, and said so).
    Language {
        language: String,
        answered_in: bool,
    },
}
