//! Typed server configuration from flags and environment (clap reads both). Secrets are redacted in
//! `Debug` so a config can be logged.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Which speech backends serve calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendSet {
    /// The best offline voice (Piper, else flite) and recogniser (Whisper, else PocketSphinx)
    /// installed on this machine: no cloud account needed.
    Offline,
    /// Canned transcripts and cached tone audio: no model cost, for load tests.
    Scripted,
}

/// `--max-calls` when the calls' speech runs elsewhere (a provider) or is scripted.
pub const DEFAULT_MAX_CALLS: usize = 200;

/// Calls a core holds when this machine runs the speech models (Whisper, Smart Turn, Piper):
/// measured on a 2-core machine (`receptionist loadgen --backends offline --levels 16,24,32`;
/// README, "Capacity on the neural offline defaults"), 24 concurrent calls kept voice to voice
/// under 0.75 s at p99 in every run, 32 under 1.2 s in one run of three (1.4 and 1.8 s in the
/// others), 40 and more went to seconds.
pub const MODEL_CALLS_PER_CORE: usize = 12;

/// Which speech-to-text serves calls (`--stt`); overrides `--backends`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SttChoice {
    /// The best recogniser installed on this machine: Whisper when its model is in the models
    /// directory, else PocketSphinx.
    Offline,
    /// Whisper tiny.en on this machine (its model installed by `scripts/install-models`).
    Whisper,
    /// PocketSphinx on this machine.
    Sphinx,
    /// Deepgram's streaming API (`DEEPGRAM_API_KEY`).
    Deepgram,
    /// An OpenAI-compatible `/audio/transcriptions` endpoint (`OPENAI_API_KEY`).
    Openai,
    /// Canned transcripts, for load tests.
    Scripted,
}

impl SttChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            SttChoice::Offline => "offline",
            SttChoice::Whisper => "whisper",
            SttChoice::Sphinx => "sphinx",
            SttChoice::Deepgram => "deepgram",
            SttChoice::Openai => "openai",
            SttChoice::Scripted => "scripted",
        }
    }
}

/// Which text-to-speech serves calls (`--tts`); overrides `--backends`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TtsChoice {
    /// The best voice on this machine: Piper when its voice is installed, else flite.
    Offline,
    /// The Piper voice in the models directory (espeak-ng for its phonemes).
    Piper,
    /// flite.
    Flite,
    /// An OpenAI-compatible `/audio/speech` endpoint (`OPENAI_API_KEY`).
    Openai,
    /// ElevenLabs' streaming WebSocket API (`ELEVENLABS_API_KEY`).
    Elevenlabs,
    /// A speech-shaped tone, for load tests.
    Scripted,
}

impl TtsChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            TtsChoice::Offline => "offline",
            TtsChoice::Piper => "piper",
            TtsChoice::Flite => "flite",
            TtsChoice::Openai => "openai",
            TtsChoice::Elevenlabs => "elevenlabs",
            TtsChoice::Scripted => "scripted",
        }
    }
}

/// How the caller's turn is judged over (`--end-of-turn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EndOfTurnChoice {
    /// Smart Turn (an ONNX model in the models directory) when the caller pauses; the silence
    /// windows as the fallback.
    Smart,
    /// Silence windows alone.
    Silence,
}

/// Which language model the dialogue may consult (`--llm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LlmChoice {
    /// None: the rule-based policy.
    #[value(name = "none")]
    Off,
    /// An OpenAI-compatible `/chat/completions` endpoint (`OPENAI_API_KEY`).
    Openai,
}

impl LlmChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            LlmChoice::Off => "none",
            LlmChoice::Openai => "openai",
        }
    }
}

/// The audio Telnyx streams to the server (TeXML `<Stream codec>`). Agent audio always goes back as
/// PCMU (`bidirectionalCodec`), the engine's own format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TelnyxStreamCodec {
    /// G.711 µ-law 8 kHz: what the engine works in; nothing to transcode.
    #[value(name = "PCMU")]
    Pcmu,
    /// G.711 A-law 8 kHz.
    #[value(name = "PCMA")]
    Pcma,
    /// 16-bit linear PCM, 16 kHz.
    #[value(name = "L16")]
    L16,
    /// Opus (16 kHz); needs a build with the `opus` feature.
    #[value(name = "OPUS")]
    Opus,
}

impl TelnyxStreamCodec {
    /// The name TeXML takes.
    pub fn as_str(self) -> &'static str {
        match self {
            TelnyxStreamCodec::Pcmu => "PCMU",
            TelnyxStreamCodec::Pcma => "PCMA",
            TelnyxStreamCodec::L16 => "L16",
            TelnyxStreamCodec::Opus => "OPUS",
        }
    }
}

#[derive(Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "RECEPTIONIST_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Database URL: `sqlite://path` or `postgres://...`. Default: a SQLite file in the data directory.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Directory for recordings and the default SQLite database.
    #[arg(long, env = "RECEPTIONIST_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Directory of the offline neural models (`scripts/install-models` fills it). Default: the
    /// data directory's `models/`.
    #[arg(long, env = "RECEPTIONIST_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,

    /// The public base URL the carrier reaches (e.g. `https://rx.example.com`). Used to build the
    /// media stream URL and to check Twilio signatures. Default: `http://<listen>`.
    #[arg(long, env = "RECEPTIONIST_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Twilio auth token, used to check `X-Twilio-Signature` and, with the account SID, to send
    /// text messages.
    #[arg(long, env = "TWILIO_AUTH_TOKEN")]
    pub twilio_auth_token: Option<Secret>,

    /// Twilio account SID (`AC...`) that sends text messages, with the auth token. Without it,
    /// queued texts fail with "SMS is not configured".
    #[arg(long, env = "TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,

    /// Base URL of Twilio's REST API (tests point it at a local fake).
    #[arg(
        long,
        env = "TWILIO_API_BASE",
        default_value = "https://api.twilio.com"
    )]
    pub twilio_api_base: String,

    /// SMTP server that sends email: `smtp://host:port` (plain), `smtp://host?tls=required`
    /// (STARTTLS) or `smtps://user:password@host` (TLS); credentials in the URL, percent-encoded.
    /// Without it, queued email fails with "SMTP is not configured".
    #[arg(long, env = "RECEPTIONIST_SMTP_URL")]
    pub smtp_url: Option<Secret>,

    /// The `From` of outgoing email, e.g. `Hiring <jobs@example.com>`.
    #[arg(long, env = "RECEPTIONIST_SMTP_FROM")]
    pub smtp_from: Option<String>,

    /// Telnyx's webhook public key (base64 Ed25519, from the Telnyx portal), used to check
    /// `telnyx-signature-ed25519`. Without it, Telnyx's requests are refused.
    #[arg(long, env = "TELNYX_PUBLIC_KEY")]
    pub telnyx_public_key: Option<Secret>,

    /// The audio Telnyx streams in (`<Stream codec>`): asking for one rather than the call's own
    /// keeps a call whose leg is G.722 or AMR-WB (which the server does not decode) answerable.
    #[arg(long, env = "TELNYX_STREAM_CODEC", value_enum, default_value = "PCMU")]
    pub telnyx_stream_codec: TelnyxStreamCodec,

    /// Plivo auth token, used to check `X-Plivo-Signature-V3`. Without it, Plivo's requests are
    /// refused.
    #[arg(long, env = "PLIVO_AUTH_TOKEN")]
    pub plivo_auth_token: Option<Secret>,

    /// Vonage signature secret, used to check the signed webhook's `Authorization: Bearer` JWT.
    /// Without it, Vonage's requests are refused.
    #[arg(long, env = "VONAGE_SIGNATURE_SECRET")]
    pub vonage_signature_secret: Option<Secret>,

    /// SignalWire signing key, used to check `X-SignalWire-Signature`. Without it, SignalWire's
    /// requests are refused.
    #[arg(long, env = "SIGNALWIRE_SIGNING_KEY")]
    pub signalwire_signing_key: Option<Secret>,

    /// The token Exotel presents to the Voicebot applet's URL endpoint (as the Basic-auth password
    /// or `?token=`). Without it, Exotel's requests are refused.
    #[arg(long, env = "EXOTEL_STREAM_TOKEN")]
    pub exotel_stream_token: Option<Secret>,

    /// Accept unsigned carrier requests when that carrier's credential is not set (local
    /// development only). Media streams still need the per-call credential of the answer.
    #[arg(
        long,
        env = "RECEPTIONIST_INSECURE_NO_SIGNATURE",
        default_value_t = false
    )]
    pub insecure_no_signature: bool,

    /// Maximum concurrent calls on this node; more are refused with a busy message. Default:
    /// [`DEFAULT_MAX_CALLS`], or [`MODEL_CALLS_PER_CORE`] a core when this machine runs the
    /// speech models itself (see [`ServeConfig::settle_max_calls`]).
    #[arg(long, env = "RECEPTIONIST_MAX_CALLS")]
    pub max_calls: Option<usize>,

    /// Recording chunks (240 ms of one call each) that may wait for the recordings disk, all
    /// calls together; a chunk that finds the queue full is written as silence later and the
    /// call's recording is flagged incomplete (`recording_incomplete`).
    #[arg(long, env = "RECEPTIONIST_RECORDER_QUEUE", default_value_t = 8192)]
    pub recorder_queue: usize,

    /// Fault testing: the recorder sleeps this long before each write, as a slow disk would.
    #[arg(long, hide = true, default_value_t = 0)]
    pub recorder_delay_ms: u64,

    /// Maximum length of one call, in seconds.
    #[arg(long, env = "RECEPTIONIST_MAX_CALL_SECS", default_value_t = 900)]
    pub max_call_secs: u64,

    /// On SIGTERM or SIGINT, how long calls in progress may go on (no new calls are taken) before
    /// the rest are ended with a goodbye, in seconds.
    #[arg(long, env = "RECEPTIONIST_DRAIN_SECS", default_value_t = 300)]
    pub drain_secs: u64,

    /// Speech backends, both at once: a shorthand for `--stt X --tts X` (either of which, when
    /// given, overrides it).
    #[arg(
        long,
        env = "RECEPTIONIST_BACKENDS",
        value_enum,
        default_value = "offline"
    )]
    pub backends: BackendSet,

    /// Threads serving connections (calls and HTTP requests); default: one per core. Calls are
    /// packed onto the first threads (see `server/threads.rs`).
    #[arg(long, env = "RECEPTIONIST_CONNECTION_THREADS")]
    pub connection_threads: Option<usize>,

    /// Shortest time between two wake-ups of a connection thread, in milliseconds: what arrives
    /// meanwhile is handled together (0: wake at once for everything).
    #[arg(long, env = "RECEPTIONIST_WAKE_INTERVAL_MS", default_value_t = crate::server::threads::WAKE_INTERVAL.as_millis() as u64)]
    pub wake_interval_ms: u64,

    /// Speech-to-text: offline (default: whisper when installed, else sphinx), whisper, sphinx,
    /// deepgram, openai or scripted.
    #[arg(long, env = "RECEPTIONIST_STT", value_enum)]
    pub stt: Option<SttChoice>,

    /// Text-to-speech: offline (default: piper when installed, else flite), piper, flite, openai,
    /// elevenlabs or scripted.
    #[arg(long, env = "RECEPTIONIST_TTS", value_enum)]
    pub tts: Option<TtsChoice>,

    /// End of the caller's turn: smart (the Smart Turn model, when the caller pauses) or silence
    /// (a fixed silence). Default: smart when its model is installed, except with scripted
    /// speech-to-text.
    #[arg(long, env = "RECEPTIONIST_END_OF_TURN", value_enum)]
    pub end_of_turn: Option<EndOfTurnChoice>,

    /// Language model: none (default: the rule-based policy) or openai.
    #[arg(long, env = "RECEPTIONIST_LLM", value_enum, default_value = "none")]
    pub llm: LlmChoice,

    /// Deepgram API key (for `--stt deepgram`).
    #[arg(long, env = "DEEPGRAM_API_KEY", hide_env_values = true)]
    pub deepgram_api_key: Option<Secret>,

    /// Deepgram's streaming endpoint.
    #[arg(
        long,
        env = "DEEPGRAM_URL",
        default_value = "wss://api.deepgram.com/v1/listen"
    )]
    pub deepgram_url: String,

    /// API key of the OpenAI-compatible server (for `--stt openai`, `--tts openai`, `--llm openai`).
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<Secret>,

    /// Base URL of the OpenAI-compatible server (OpenAI, llama.cpp, vLLM, Ollama...).
    #[arg(
        long,
        env = "OPENAI_BASE_URL",
        default_value = "https://api.openai.com/v1"
    )]
    pub openai_base_url: String,

    /// Chat model for `--llm openai` (default gpt-4o-mini).
    #[arg(long, env = "RECEPTIONIST_LLM_MODEL")]
    pub llm_model: Option<String>,

    /// Speech-to-text model: `whisper-1` by default for openai; Deepgram's default model unless set.
    #[arg(long, env = "RECEPTIONIST_STT_MODEL")]
    pub stt_model: Option<String>,

    /// Text-to-speech model: `tts-1` by default for openai, `eleven_flash_v2_5` for elevenlabs.
    #[arg(long, env = "RECEPTIONIST_TTS_MODEL")]
    pub tts_model: Option<String>,

    /// ElevenLabs API key (for `--tts elevenlabs`).
    #[arg(long, env = "ELEVENLABS_API_KEY", hide_env_values = true)]
    pub elevenlabs_api_key: Option<Secret>,

    /// ElevenLabs' WebSocket base URL.
    #[arg(
        long,
        env = "ELEVENLABS_URL",
        default_value = "wss://api.elevenlabs.io"
    )]
    pub elevenlabs_url: String,

    /// This node's identity; a restart marks only this node's unfinished calls as interrupted.
    #[arg(long, env = "RECEPTIONIST_NODE_ID", default_value = "node-1")]
    pub node_id: String,
}

impl ServeConfig {
    /// The configured database URL, or a SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("receptionist.db").display()
            ),
        }
    }

    /// Public base URL without a trailing slash.
    pub fn public_url(&self) -> String {
        let url = match &self.public_url {
            Some(url) => url.clone(),
            None => format!("http://{}", self.listen),
        };
        url.trim_end_matches('/').to_string()
    }

    /// Whether this server can send texts (a Twilio account SID and auth token are set).
    pub fn can_text(&self) -> bool {
        self.twilio_account_sid
            .as_deref()
            .is_some_and(|s| !s.is_empty())
            && self.twilio_auth_token.is_some()
    }

    /// Concurrent calls this node takes: `--max-calls`, else [`DEFAULT_MAX_CALLS`] (see
    /// [`Self::settle_max_calls`]).
    pub fn max_calls(&self) -> usize {
        self.max_calls.unwrap_or(DEFAULT_MAX_CALLS)
    }

    /// Without `--max-calls`, when `speech_models_here` (an offline recogniser or the Piper voice
    /// serves the calls), the node takes [`MODEL_CALLS_PER_CORE`] for each of this machine's
    /// cores: past that every call's replies slow down together, so a caller more hears the busy
    /// message instead. What [`Self::max_calls`] says from then on.
    pub fn settle_max_calls(&mut self, speech_models_here: bool) {
        if self.max_calls.is_none() && speech_models_here {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            self.max_calls = Some(MODEL_CALLS_PER_CORE * cores);
        }
    }

    /// Where the offline neural models are: `--models-dir`, else the data directory's `models/`.
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("models"))
    }

    pub fn recordings_dir(&self) -> PathBuf {
        self.data_dir.join("recordings")
    }

    /// Call records waiting for the database (`server/persist.rs`).
    pub fn journal_dir(&self) -> PathBuf {
        self.data_dir.join("journal")
    }

    /// Connection threads: as configured, else one per core.
    pub fn connection_threads(&self) -> usize {
        self.connection_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .clamp(1, 256)
    }

    pub fn wake_interval(&self) -> Duration {
        Duration::from_millis(self.wake_interval_ms.min(100))
    }

    /// How long a drain lets calls in progress go on.
    pub fn drain_period(&self) -> Duration {
        Duration::from_secs(self.drain_secs)
    }

    pub fn max_call_length(&self) -> Duration {
        Duration::from_secs(self.max_call_secs.max(30))
    }

    /// The speech-to-text in effect: `--stt`, else the one `--backends` implies.
    pub fn stt_choice(&self) -> SttChoice {
        self.stt.unwrap_or(match self.backends {
            BackendSet::Offline => SttChoice::Offline,
            BackendSet::Scripted => SttChoice::Scripted,
        })
    }

    /// The text-to-speech in effect: `--tts`, else the one `--backends` implies.
    pub fn tts_choice(&self) -> TtsChoice {
        self.tts.unwrap_or(match self.backends {
            BackendSet::Offline => TtsChoice::Offline,
            BackendSet::Scripted => TtsChoice::Scripted,
        })
    }
}

impl fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeConfig")
            .field("listen", &self.listen)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("data_dir", &self.data_dir)
            .field("models_dir", &self.models_dir)
            .field("public_url", &self.public_url)
            .field("twilio_auth_token", &self.twilio_auth_token)
            .field("twilio_account_sid", &self.twilio_account_sid)
            .field("twilio_api_base", &self.twilio_api_base)
            .field("smtp_url", &self.smtp_url)
            .field("smtp_from", &self.smtp_from)
            .field("telnyx_public_key", &self.telnyx_public_key)
            .field("plivo_auth_token", &self.plivo_auth_token)
            .field("vonage_signature_secret", &self.vonage_signature_secret)
            .field("signalwire_signing_key", &self.signalwire_signing_key)
            .field("exotel_stream_token", &self.exotel_stream_token)
            .field("insecure_no_signature", &self.insecure_no_signature)
            .field("max_calls", &self.max_calls)
            .field("max_call_secs", &self.max_call_secs)
            .field("drain_secs", &self.drain_secs)
            .field("recorder_queue", &self.recorder_queue)
            .field("recorder_delay_ms", &self.recorder_delay_ms)
            .field("backends", &self.backends)
            .field("connection_threads", &self.connection_threads)
            .field("wake_interval_ms", &self.wake_interval_ms)
            .field("stt", &self.stt)
            .field("tts", &self.tts)
            .field("llm", &self.llm)
            .field("deepgram_api_key", &self.deepgram_api_key)
            .field("deepgram_url", &redact_url(&self.deepgram_url))
            .field("openai_api_key", &self.openai_api_key)
            .field("openai_base_url", &redact_url(&self.openai_base_url))
            .field("llm_model", &self.llm_model)
            .field("stt_model", &self.stt_model)
            .field("tts_model", &self.tts_model)
            .field("elevenlabs_api_key", &self.elevenlabs_api_key)
            .field("elevenlabs_url", &redact_url(&self.elevenlabs_url))
            .field("node_id", &self.node_id)
            .finish()
    }
}

/// Hide a password in a database URL.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// A secret string: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(
            redact_url("postgres://u:pw@localhost/db"),
            "postgres://u:***@localhost/db"
        );
    }
}
