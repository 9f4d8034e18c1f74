//! The backends `serve` runs with, from `--stt`, `--tts`, `--llm` (or the `--backends`
//! shorthand) and the providers' keys and URLs. [`plan`] checks everything without I/O, so a
//! missing key is an error at start-up rather than on the first call; [`build`] then makes the
//! backends (loading the offline models, which every provider falls back to).
//!
//! The offline recogniser is Whisper when its model is installed in the models directory, else
//! PocketSphinx: `--stt offline` (the default) and every provider's fallback take that one;
//! `--stt whisper` and `--stt sphinx` choose one explicitly.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::chat::{ChatClient, ChatConfig};
use super::deepgram::{DeepgramConfig, DeepgramStt};
use super::elevenlabs::{ElevenLabsConfig, ElevenLabsTts};
use super::http::RetryPolicy;
use super::openai::{DEFAULT_STT_MODEL, DEFAULT_TTS_MODEL, OpenAiConfig, OpenAiStt, OpenAiTts};
use super::piper::PiperTts;
use super::{
    BackendError, Backends, FallbackStt, FallbackTts, FliteTts, ScriptedAnswers, ScriptedStt,
    ScriptedTts, SpeechToText, SphinxConfig, SphinxStt, TextToSpeech, WhisperConfig, WhisperStt,
    whisper,
};
use crate::config::{EndOfTurnChoice, LlmChoice, Secret, ServeConfig, SttChoice, TtsChoice};

/// Default chat model for `--llm openai`.
pub const DEFAULT_LLM_MODEL: &str = "gpt-4o-mini";
/// Longest wait for a provider's transcript before the offline recogniser takes over.
pub const STT_BUDGET: Duration = Duration::from_secs(6);
/// Longest wait for a provider's speech before the offline synthesiser takes over.
pub const TTS_BUDGET: Duration = Duration::from_secs(5);
/// How long a failed speech provider is skipped.
pub const TTS_COOLDOWN: Duration = Duration::from_secs(30);

/// An offline recogniser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfflineStt {
    /// Whisper, its model in this models directory.
    Whisper(PathBuf),
    Sphinx,
}

impl OfflineStt {
    /// The best one installed: Whisper when `models_dir` holds its model, else PocketSphinx.
    pub fn best(models_dir: &Path) -> Self {
        if whisper::installed(models_dir) {
            Self::Whisper(models_dir.to_path_buf())
        } else {
            Self::Sphinx
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Whisper(_) => "whisper",
            Self::Sphinx => "sphinx",
        }
    }

    /// Load it.
    pub fn build(&self) -> Result<Arc<dyn SpeechToText>, BackendError> {
        Ok(match self {
            Self::Whisper(dir) => Arc::new(WhisperStt::new(WhisperConfig::new(dir))?),
            Self::Sphinx => Arc::new(SphinxStt::new(SphinxConfig::default())?),
        })
    }
}

/// The offline recogniser `choice` names (`offline`: the best installed), or why it cannot run.
/// `None` for the providers and `scripted`.
pub fn offline_stt(choice: SttChoice, models_dir: &Path) -> Result<Option<OfflineStt>, String> {
    Ok(match choice {
        SttChoice::Offline => Some(OfflineStt::best(models_dir)),
        SttChoice::Sphinx => Some(OfflineStt::Sphinx),
        SttChoice::Whisper if whisper::installed(models_dir) => {
            Some(OfflineStt::Whisper(models_dir.to_path_buf()))
        }
        SttChoice::Whisper => {
            return Err(format!(
                "--stt whisper: the Whisper model is not installed in {} (run scripts/install-models, \
                 or point --models-dir at the directory holding {}/)",
                models_dir.join(whisper::MODEL_SUBDIR).display(),
                whisper::MODEL_SUBDIR
            ));
        }
        SttChoice::Deepgram | SttChoice::Openai | SttChoice::Scripted => None,
    })
}

/// The speech-to-text to build.
#[derive(Debug, Clone)]
pub enum SttPlan {
    /// The best offline recogniser (`--stt offline`, the default).
    Offline,
    /// `--stt whisper`.
    Whisper,
    /// `--stt sphinx`.
    Sphinx,
    Scripted,
    Deepgram(DeepgramConfig),
    OpenAi(OpenAiConfig),
}

/// The text-to-speech to build.
#[derive(Debug, Clone)]
pub enum TtsPlan {
    /// The offline voice: Piper when [`Plan::piper`] says so, else flite.
    Offline,
    Scripted,
    OpenAi(OpenAiConfig),
    ElevenLabs(ElevenLabsConfig),
}

/// Every backend choice, checked.
#[derive(Debug, Clone)]
pub struct Plan {
    pub stt: SttPlan,
    /// The offline recogniser: the one `stt` runs when offline, every provider's fallback.
    pub offline_stt: OfflineStt,
    pub tts: TtsPlan,
    /// `--llm openai`: the chat model's configuration.
    pub llm: Option<ChatConfig>,
    /// The models directory to load the end-of-turn model from (`None`: silence windows).
    pub end_of_turn: Option<std::path::PathBuf>,
    /// Where the sentence encoder is, when it is used.
    pub meaning: Option<std::path::PathBuf>,
    /// The models directory to load the Piper voice from, the offline voice (`None`: flite).
    pub piper: Option<std::path::PathBuf>,
}

fn key(value: &Option<Secret>, env: &str, flag: &str, choice: &str) -> Result<Secret, String> {
    match value {
        Some(k) if !k.expose().trim().is_empty() => Ok(Secret::new(k.expose().trim())),
        _ => Err(format!(
            "{flag} {choice} needs {env} (the provider's API key), which is not set"
        )),
    }
}

fn http_url(url: &str, env: &str) -> Result<String, String> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(url.trim_end_matches('/').into()),
        Ok(_) => Err(format!("{env} must be an http:// or https:// URL")),
        Err(e) => Err(format!("{env} is not a valid URL: {e}")),
    }
}

fn ws_url(url: &str, env: &str) -> Result<String, String> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "ws" | "wss") => Ok(url.into()),
        Ok(_) => Err(format!("{env} must be a ws:// or wss:// URL")),
        Err(e) => Err(format!("{env} is not a valid URL: {e}")),
    }
}

fn model(value: &Option<String>, default: &str) -> String {
    value
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .unwrap_or(default)
        .to_string()
}

/// Check the configuration's backend choices: keys present, URLs well-formed.
pub fn plan(config: &ServeConfig) -> Result<Plan, String> {
    let openai = |flag: &str, choice: &str, model: String, retry: RetryPolicy| {
        Ok::<_, String>(OpenAiConfig {
            base_url: http_url(&config.openai_base_url, "OPENAI_BASE_URL")?,
            api_key: key(&config.openai_api_key, "OPENAI_API_KEY", flag, choice)?,
            model,
            retry,
        })
    };
    let models_dir = config.models_dir();
    let offline_stt = offline_stt(config.stt_choice(), &models_dir)?
        .unwrap_or_else(|| OfflineStt::best(&models_dir));
    let stt = match config.stt_choice() {
        SttChoice::Offline => SttPlan::Offline,
        SttChoice::Whisper => SttPlan::Whisper,
        SttChoice::Sphinx => SttPlan::Sphinx,
        SttChoice::Scripted => SttPlan::Scripted,
        SttChoice::Deepgram => {
            let mut c = DeepgramConfig::new(
                ws_url(&config.deepgram_url, "DEEPGRAM_URL")?,
                key(
                    &config.deepgram_api_key,
                    "DEEPGRAM_API_KEY",
                    "--stt",
                    "deepgram",
                )?,
            );
            c.model = config
                .stt_model
                .as_deref()
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(String::from);
            SttPlan::Deepgram(c)
        }
        SttChoice::Openai => SttPlan::OpenAi(openai(
            "--stt",
            "openai",
            model(&config.stt_model, DEFAULT_STT_MODEL),
            RetryPolicy {
                timeout: Duration::from_secs(5),
                ..RetryPolicy::default()
            },
        )?),
    };
    let models = models_dir.clone();
    // the offline voice, spoken when chosen and when a provider fails: Piper when installed
    let piper = match config.tts_choice() {
        TtsChoice::Flite | TtsChoice::Scripted => None,
        TtsChoice::Piper if !super::piper::installed(&models) => {
            return Err(format!(
                "--tts piper needs the Piper voice ({}) and ONNX Runtime in {}, and espeak-ng \
                 (run .ci/setup, or scripts/install-models and apt-get install espeak-ng)",
                super::piper::VOICE_FILE,
                models.display()
            ));
        }
        _ => super::piper::installed(&models).then(|| models.clone()),
    };
    let tts = match config.tts_choice() {
        TtsChoice::Offline | TtsChoice::Piper | TtsChoice::Flite => TtsPlan::Offline,
        TtsChoice::Scripted => TtsPlan::Scripted,
        TtsChoice::Openai => TtsPlan::OpenAi(openai(
            "--tts",
            "openai",
            model(&config.tts_model, DEFAULT_TTS_MODEL),
            RetryPolicy {
                timeout: Duration::from_secs(4),
                ..RetryPolicy::default()
            },
        )?),
        TtsChoice::Elevenlabs => {
            let mut c = ElevenLabsConfig::new(
                ws_url(&config.elevenlabs_url, "ELEVENLABS_URL")?,
                key(
                    &config.elevenlabs_api_key,
                    "ELEVENLABS_API_KEY",
                    "--tts",
                    "elevenlabs",
                )?,
            );
            c.model = model(&config.tts_model, super::elevenlabs::DEFAULT_MODEL);
            TtsPlan::ElevenLabs(c)
        }
    };
    let llm = match config.llm {
        LlmChoice::Off => None,
        LlmChoice::Openai => {
            let c = openai(
                "--llm",
                "openai",
                model(&config.llm_model, DEFAULT_LLM_MODEL),
                RetryPolicy {
                    timeout: Duration::from_secs(30),
                    ..RetryPolicy::default()
                },
            )?;
            Some(ChatConfig {
                base_url: c.base_url,
                api_key: c.api_key,
                model: c.model,
                retry: c.retry,
            })
        }
    };
    let end_of_turn = match config.end_of_turn {
        Some(EndOfTurnChoice::Silence) => None,
        Some(EndOfTurnChoice::Smart) if super::smart_turn::installed(&models) => Some(models),
        Some(EndOfTurnChoice::Smart) => {
            return Err(format!(
                "--end-of-turn smart needs {} and ONNX Runtime in {} (run scripts/install-models)",
                super::smart_turn::MODEL_FILE,
                models.display()
            ));
        }
        None if matches!(stt, SttPlan::Scripted) => None,
        None => super::smart_turn::installed(&models).then_some(models),
    };
    // the sentence encoder: with the offline stack installed (not for load tests' scripted
    // recogniser, whose words are the script's)
    let meaning = (!matches!(stt, SttPlan::Scripted) && super::meaning::installed(&models_dir))
        .then(|| models_dir.clone());
    Ok(Plan {
        stt,
        tts,
        llm,
        end_of_turn,
        meaning,
        piper,
        offline_stt,
    })
}

impl Plan {
    pub fn stt_name(&self) -> &'static str {
        match self.stt {
            SttPlan::Offline => "offline",
            SttPlan::Whisper => "whisper",
            SttPlan::Sphinx => "sphinx",
            SttPlan::Scripted => "scripted",
            SttPlan::Deepgram(_) => "deepgram",
            SttPlan::OpenAi(_) => "openai",
        }
    }

    /// Whether this machine runs the calls' speech models itself (an offline recogniser, or the
    /// Piper voice): what one machine holds is then bounded by its cores.
    pub fn speech_models_here(&self) -> bool {
        matches!(
            self.stt,
            SttPlan::Offline | SttPlan::Whisper | SttPlan::Sphinx
        ) || self.tts_name() == "piper"
    }

    pub fn tts_name(&self) -> &'static str {
        match self.tts {
            TtsPlan::Offline if self.piper.is_some() => "piper",
            TtsPlan::Offline => "flite",
            TtsPlan::Scripted => "scripted",
            TtsPlan::OpenAi(_) => "openai",
            TtsPlan::ElevenLabs(_) => "elevenlabs",
        }
    }

    /// The models asked for, for the start-up log (`None`: the provider's default or offline).
    pub fn models(&self) -> (Option<&str>, Option<&str>, Option<&str>) {
        let stt = match &self.stt {
            SttPlan::Deepgram(c) => c.model.as_deref(),
            SttPlan::OpenAi(c) => Some(c.model.as_str()),
            _ => None,
        };
        let tts = match &self.tts {
            TtsPlan::OpenAi(c) => Some(c.model.as_str()),
            TtsPlan::ElevenLabs(c) => Some(c.model.as_str()),
            _ => None,
        };
        (stt, tts, self.llm.as_ref().map(|c| c.model.as_str()))
    }
}

/// Concurrent runs of each offline model: one per core.
fn sessions() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The backends `plan` describes, and the chat client for `--llm openai`. Every provider is
/// wrapped to fall back to the offline backend, whose models are loaded here.
pub fn build(plan: &Plan) -> Result<(Backends, Option<ChatClient>), BackendError> {
    let needs_offline_stt = !matches!(plan.stt, SttPlan::Scripted);
    let needs_flite = !matches!(plan.tts, TtsPlan::Scripted);
    let offline: Option<Arc<dyn SpeechToText>> = if needs_offline_stt {
        let stt = plan.offline_stt.build()?;
        match &plan.offline_stt {
            OfflineStt::Whisper(dir) => tracing::info!(
                recogniser = "whisper",
                models_dir = %dir.display(),
                multilingual = if whisper::multilingual_installed(dir) {
                    "whisper-base"
                } else {
                    "none (multilingual calls are heard in English)"
                },
                "offline speech recogniser: Whisper tiny.en"
            ),
            OfflineStt::Sphinx => tracing::info!(
                recogniser = "sphinx",
                "offline speech recogniser: PocketSphinx (install the Whisper model with \
                 scripts/install-models for better accuracy)"
            ),
        }
        Some(stt)
    } else {
        None
    };
    let flite: Option<Arc<dyn TextToSpeech>> = if needs_flite {
        let flite: Arc<dyn TextToSpeech> = Arc::new(FliteTts::new()?);
        match &plan.piper {
            // Piper, with flite when it fails (espeak-ng gone, a bad voice file)
            Some(dir) => Some(Arc::new(FallbackTts::new(
                "piper",
                Arc::new(PiperTts::load(dir, sessions())?),
                flite,
                TTS_BUDGET,
                TTS_COOLDOWN,
            ))),
            None => Some(flite),
        }
    } else {
        None
    };
    let offline_stt = || offline.clone().expect("loaded above");
    let offline_tts = || flite.clone().expect("loaded above");
    let stt: Arc<dyn SpeechToText> = match &plan.stt {
        SttPlan::Offline | SttPlan::Whisper | SttPlan::Sphinx => offline_stt(),
        SttPlan::Scripted => Arc::new(ScriptedStt::new(ScriptedAnswers::default())),
        SttPlan::Deepgram(c) => Arc::new(FallbackStt::new(
            "deepgram",
            Arc::new(DeepgramStt::new(c.clone())?),
            offline_stt(),
            STT_BUDGET,
        )),
        SttPlan::OpenAi(c) => Arc::new(FallbackStt::new(
            "openai",
            Arc::new(OpenAiStt::new(c.clone())?),
            offline_stt(),
            STT_BUDGET,
        )),
    };
    let tts: Arc<dyn TextToSpeech> = match &plan.tts {
        TtsPlan::Offline => offline_tts(),
        TtsPlan::Scripted => Arc::new(ScriptedTts::new()),
        TtsPlan::OpenAi(c) => Arc::new(FallbackTts::new(
            "openai",
            Arc::new(OpenAiTts::new(c.clone())?),
            offline_tts(),
            TTS_BUDGET,
            TTS_COOLDOWN,
        )),
        TtsPlan::ElevenLabs(c) => Arc::new(FallbackTts::new(
            "elevenlabs",
            Arc::new(ElevenLabsTts::new(c.clone())?),
            offline_tts(),
            TTS_BUDGET,
            TTS_COOLDOWN,
        )),
    };
    let name = match (plan.stt_name(), plan.tts_name()) {
        ("offline", "flite" | "piper") => "offline",
        ("scripted", "scripted") => "scripted",
        // once per process: the name of a mix lives as long as the server
        (stt, tts) => Box::leak(format!("{stt}+{tts}").into_boxed_str()),
    };
    let llm = plan.llm.clone().map(ChatClient::new).transpose()?;
    let end_of_turn = match &plan.end_of_turn {
        Some(dir) => Some(Arc::new(super::smart_turn::SmartTurn::load(
            dir,
            sessions(),
        )?)),
        None => None,
    };
    let meaning = plan
        .meaning
        .as_deref()
        .and_then(super::meaning::load_if_installed);
    Ok((
        Backends {
            stt,
            tts,
            name,
            end_of_turn,
            meaning,
        },
        llm,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeConfig,
    }

    fn config(args: &[&str]) -> ServeConfig {
        Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .unwrap()
            .serve
    }

    #[test]
    fn backends_shorthand_and_overrides() {
        let p = plan(&config(&["--models-dir", "/nonexistent"])).unwrap();
        assert_eq!((p.stt_name(), p.tts_name()), ("offline", "flite"));
        assert!(p.llm.is_none());
        assert!(p.end_of_turn.is_none());
        let p = plan(&config(&["--backends", "scripted"])).unwrap();
        assert_eq!((p.stt_name(), p.tts_name()), ("scripted", "scripted"));
        let p = plan(&config(&[
            "--backends",
            "scripted",
            "--stt",
            "deepgram",
            "--deepgram-api-key",
            "dg-key",
        ]))
        .unwrap();
        assert_eq!((p.stt_name(), p.tts_name()), ("deepgram", "scripted"));
        let SttPlan::Deepgram(c) = &p.stt else {
            panic!()
        };
        assert_eq!(c.url, "wss://api.deepgram.com/v1/listen");
        assert_eq!(c.model, None);
    }

    #[test]
    fn a_machine_running_the_speech_models_takes_twelve_calls_a_core_unless_told() {
        use crate::config::{DEFAULT_MAX_CALLS, MODEL_CALLS_PER_CORE};
        let cores = std::thread::available_parallelism().unwrap().get();
        let models = crate::testing::installed_models_dir();
        let models = models.to_str().unwrap();
        let cases: [(&[&str], bool); 6] = [
            (&["--models-dir", models], true),
            (&["--models-dir", "/nonexistent"], true),
            (&["--backends", "scripted"], false),
            (
                &[
                    "--backends",
                    "scripted",
                    "--tts",
                    "piper",
                    "--models-dir",
                    models,
                ],
                true,
            ),
            (
                &[
                    "--backends",
                    "scripted",
                    "--stt",
                    "deepgram",
                    "--deepgram-api-key",
                    "k",
                ],
                false,
            ),
            (
                &[
                    "--models-dir",
                    models,
                    "--stt",
                    "deepgram",
                    "--deepgram-api-key",
                    "k",
                    "--tts",
                    "flite",
                ],
                false,
            ),
        ];
        for (args, here) in cases {
            let mut c = config(args);
            let p = plan(&c).unwrap();
            assert_eq!(p.speech_models_here(), here, "{args:?}");
            let want = if here {
                MODEL_CALLS_PER_CORE * cores
            } else {
                DEFAULT_MAX_CALLS
            };
            c.settle_max_calls(p.speech_models_here());
            assert_eq!(c.max_calls(), want, "{args:?}");
            // what the operator says wins
            let told: Vec<&str> = args.iter().copied().chain(["--max-calls", "7"]).collect();
            let mut c = config(&told);
            c.settle_max_calls(here);
            assert_eq!(c.max_calls(), 7, "{args:?}");
        }
    }

    #[test]
    fn the_offline_default_takes_the_neural_models_when_installed() {
        let dir = crate::testing::installed_models_dir();
        let dir_arg = dir.to_str().unwrap();
        let p = plan(&config(&["--models-dir", dir_arg])).unwrap();
        assert_eq!(p.tts_name(), "piper");
        assert_eq!(p.piper.as_deref(), Some(dir.as_path()));
        assert_eq!(p.end_of_turn.as_deref(), Some(dir.as_path()));
        // chosen explicitly
        let p = plan(&config(&[
            "--models-dir",
            dir_arg,
            "--tts",
            "flite",
            "--end-of-turn",
            "silence",
        ]))
        .unwrap();
        assert_eq!(p.tts_name(), "flite");
        assert!(p.piper.is_none() && p.end_of_turn.is_none());
        // a provider falls back to the best offline voice
        let p = plan(&config(&[
            "--models-dir",
            dir_arg,
            "--tts",
            "openai",
            "--openai-api-key",
            "sk",
        ]))
        .unwrap();
        assert!(p.piper.is_some());
        // load tests keep the fixed silence
        let p = plan(&config(&[
            "--models-dir",
            dir_arg,
            "--backends",
            "scripted",
        ]))
        .unwrap();
        assert!(p.piper.is_none() && p.end_of_turn.is_none());
        // asked for but not installed: a clear error at start-up
        for flag in ["--tts", "--end-of-turn"] {
            let value = if flag == "--tts" { "piper" } else { "smart" };
            let e = plan(&config(&["--models-dir", "/nonexistent", flag, value])).unwrap_err();
            assert!(
                e.contains("scripts/install-models") && e.contains("/nonexistent"),
                "{e}"
            );
        }
    }

    #[test]
    fn providers_take_their_keys_urls_and_models() {
        let c = config(&[
            "--stt",
            "openai",
            "--tts",
            "elevenlabs",
            "--llm",
            "openai",
            "--openai-api-key",
            "sk-1",
            "--openai-base-url",
            "http://127.0.0.1:8000/v1/",
            "--elevenlabs-api-key",
            "xi-1",
            "--tts-model",
            "eleven_turbo_v2_5",
            "--llm-model",
            "llama-3",
        ]);
        let p = plan(&c).unwrap();
        let SttPlan::OpenAi(stt) = &p.stt else {
            panic!()
        };
        assert_eq!(stt.base_url, "http://127.0.0.1:8000/v1");
        assert_eq!(stt.model, DEFAULT_STT_MODEL);
        let TtsPlan::ElevenLabs(tts) = &p.tts else {
            panic!()
        };
        assert_eq!(tts.url, "wss://api.elevenlabs.io");
        assert_eq!(tts.model, "eleven_turbo_v2_5");
        assert_eq!(p.llm.as_ref().unwrap().model, "llama-3");
        assert_eq!(
            p.models(),
            (
                Some("whisper-1"),
                Some("eleven_turbo_v2_5"),
                Some("llama-3")
            )
        );
        // no key in any Debug output
        let debug = format!("{c:?} {p:?}");
        assert!(
            !debug.contains("sk-1") && !debug.contains("xi-1"),
            "{debug}"
        );
    }

    #[test]
    fn offline_picks_whisper_when_installed_and_whisper_without_its_model_is_refused() {
        let empty = tempfile::tempdir().unwrap();
        let models = tempfile::tempdir().unwrap();
        let whisper_dir = models.path().join(whisper::MODEL_SUBDIR);
        std::fs::create_dir_all(&whisper_dir).unwrap();
        std::fs::write(whisper_dir.join("model.bin"), b"").unwrap();
        std::fs::write(whisper_dir.join("vocabulary.txt"), b"").unwrap();
        let dir = |d: &tempfile::TempDir| d.path().to_str().unwrap().to_string();

        let p = plan(&config(&["--models-dir", &dir(&models)])).unwrap();
        assert_eq!(p.stt_name(), "offline");
        assert_eq!(p.offline_stt, OfflineStt::Whisper(models.path().into()));
        let p = plan(&config(&["--models-dir", &dir(&empty)])).unwrap();
        assert_eq!(p.offline_stt, OfflineStt::Sphinx);

        let p = plan(&config(&["--models-dir", &dir(&models), "--stt", "sphinx"])).unwrap();
        assert_eq!((p.stt_name(), p.offline_stt.name()), ("sphinx", "sphinx"));
        let p = plan(&config(&[
            "--models-dir",
            &dir(&models),
            "--stt",
            "whisper",
        ]))
        .unwrap();
        assert_eq!((p.stt_name(), p.offline_stt.name()), ("whisper", "whisper"));
        let err = plan(&config(&["--models-dir", &dir(&empty), "--stt", "whisper"])).unwrap_err();
        assert!(
            err.contains(&dir(&empty)) && err.contains("scripts/install-models"),
            "{err}"
        );

        // a provider falls back to the best offline recogniser
        let p = plan(&config(&[
            "--models-dir",
            &dir(&models),
            "--stt",
            "deepgram",
            "--deepgram-api-key",
            "k",
        ]))
        .unwrap();
        assert_eq!(p.offline_stt.name(), "whisper");
    }

    #[test]
    fn a_chosen_provider_without_its_key_is_refused() {
        for (args, env) in [
            (&["--stt", "deepgram"][..], "DEEPGRAM_API_KEY"),
            (&["--stt", "openai"][..], "OPENAI_API_KEY"),
            (&["--tts", "openai"][..], "OPENAI_API_KEY"),
            (&["--tts", "elevenlabs"][..], "ELEVENLABS_API_KEY"),
            (&["--llm", "openai"][..], "OPENAI_API_KEY"),
            (
                &["--tts", "elevenlabs", "--elevenlabs-api-key", " "][..],
                "ELEVENLABS_API_KEY",
            ),
        ] {
            if std::env::var_os(env).is_some() {
                continue; // this machine's environment supplies it
            }
            let err = plan(&config(args)).unwrap_err();
            assert!(err.contains(env), "{args:?}: {err}");
        }
        let err = plan(&config(&[
            "--stt",
            "deepgram",
            "--deepgram-api-key",
            "k",
            "--deepgram-url",
            "https://api.deepgram.com/v1/listen",
        ]))
        .unwrap_err();
        assert!(err.contains("DEEPGRAM_URL"), "{err}");
    }
}
