//! `receptionist transcribe [--stt NAME] [--phone] [--multilingual] FILE.wav...`: what an offline
//! recogniser makes of each file, one `FILE<TAB>transcript` line per file (with
//! `--multilingual`, `FILE<TAB>transcript<TAB>language`, the language it heard or `-`), so that
//! a user can try a recogniser on their own recordings and the accuracy test
//! (`scripts/accuracy`) is reproducible.
//!
//! Files at any sample rate are resampled to 16 kHz with the project's resampler; `--phone` first
//! takes them through a call's telephone path: 8 kHz, G.711 µ-law, pushed into the recogniser as
//! the call's µ-law (which it widens to 16 kHz as it would in a call). Audio is pushed into a
//! recogniser session in 20 ms frames, as a call pushes it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;

use crate::backends::select::{OfflineStt, offline_stt};
use crate::backends::{Heard, SpeechToText, SttHint, WhisperConfig, WhisperStt};
use crate::config::SttChoice;
use crate::engine::audio::{self, SAMPLES_8K, SAMPLES_16K, g711};

#[derive(clap::Args, Debug, Clone)]
pub struct TranscribeArgs {
    /// The recogniser: offline (the best installed: whisper, else sphinx), whisper or sphinx.
    #[arg(long, value_enum, default_value = "offline")]
    pub stt: SttChoice,
    /// Pass the audio through the telephone path first (8 kHz µ-law, as a call carries it).
    #[arg(long)]
    pub phone: bool,
    /// Hear each file as a call in multilingual mode does: any language (Whisper's multilingual
    /// model, when installed), and print the language heard after the transcript.
    #[arg(long)]
    pub multilingual: bool,
    /// What the dialogue would expect of the caller at this point (a call's recogniser is told
    /// it): with `number`, Whisper decodes a transcript that holds no number again with only the
    /// words of a number answer, as in a call.
    #[arg(long, value_enum, default_value = "any")]
    pub hint: SttHint,
    /// Words the caller is likely to say, comma-separated (a call passes the places of the
    /// receptionist's positions when it asks where the caller lives): a recogniser that can be
    /// biased toward words is (Whisper: as the text said before the utterance).
    #[arg(long, value_delimiter = ',')]
    pub terms: Vec<String>,
    /// Directory of the offline neural models. Default: `./data/models`.
    #[arg(long, env = "RECEPTIONIST_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Files transcribed at once (each on its own decoder).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Print each file's recognition time (from the end of its audio) to stderr, and a summary.
    #[arg(long)]
    pub timing: bool,
    /// Play each file in real time, as a caller speaks, followed by 700 ms of silence (the
    /// engine's end of turn), so that Whisper's decode at a pause can run; `--timing` then
    /// measures what a call waits after the end of the turn.
    #[arg(long)]
    pub realtime: bool,
    /// Read each file as a call's barge-in check reads talk over the agent (the recogniser's
    /// check of the words so far, which with Whisper reads a backchannel the check cut short as
    /// one), and also print whether those words would stop the agent (`floor`) or not (`-`:
    /// nothing heard, or only backchannels, fillers and politeness); `scripts/barge-in-words`
    /// measures it.
    #[arg(long)]
    pub floor: bool,
    /// Whisper: no decode at pauses (only at the end).
    #[arg(long, hide = true)]
    pub no_early: bool,
    /// Whisper: encode a 30 s window, as Whisper was trained, not only the utterance's frames.
    #[arg(long, hide = true)]
    pub pad_30s: bool,
    /// Whisper: the shortest window encoded, in seconds (default: the server's).
    #[arg(long, hide = true, conflicts_with = "pad_30s")]
    pub min_window_secs: Option<usize>,
    /// Whisper, with `--floor`: how much less likely (nats per token) a backchannel decoded
    /// again from a check's words may be and still be read (default: the server's).
    #[arg(long, hide = true)]
    pub backchannel_margin: Option<f64>,
    /// Whisper, with `--floor`: read a check's words as heard (no second decode for a
    /// backchannel).
    #[arg(long, hide = true, conflicts_with = "backchannel_margin")]
    pub no_backchannel_reading: bool,
    /// Whisper, with `--floor`: what a check's decode is primed with, comma-separated
    /// (default: the server's, "Mm-hmm, Sorry").
    #[arg(long, hide = true, value_delimiter = ',')]
    pub check_primer: Option<Vec<String>>,
    /// Whisper, with `--floor`: a check's decode is not primed.
    #[arg(long, hide = true, conflicts_with = "check_primer")]
    pub no_check_primer: bool,
    /// Whisper: threads per decode.
    #[arg(long, hide = true, default_value_t = 1)]
    pub threads: usize,
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// 16 kHz mono audio of a file, through the telephone path when `phone`.
pub fn load_audio(path: &Path, phone: bool) -> anyhow::Result<Vec<i16>> {
    let (rate, mono) = super::read_wav(path)?;
    if mono.is_empty() {
        bail!("{} holds no audio", path.display());
    }
    if !phone {
        return Ok(audio::resample(&mono, rate, 16_000));
    }
    Ok(telephone_16k(&audio::resample(&mono, rate, 8000)))
}

/// 8 kHz audio as a call carries it: G.711 µ-law, in whole 20 ms frames (the last one padded
/// with silence).
pub fn telephone_mulaw(pcm8k: &[i16]) -> Vec<u8> {
    let mut mulaw = vec![0u8; pcm8k.len().div_ceil(SAMPLES_8K) * SAMPLES_8K];
    let mut input = [0i16; SAMPLES_8K];
    for (chunk, out) in pcm8k.chunks(SAMPLES_8K).zip(mulaw.chunks_mut(SAMPLES_8K)) {
        input.fill(0);
        input[..chunk.len()].copy_from_slice(chunk);
        g711::encode_into(&input, out);
    }
    mulaw
}

/// 8 kHz audio as a recogniser hears it after a call carried it: µ-law encoded, decoded, upsampled
/// to 16 kHz in 20 ms frames.
pub fn telephone_16k(pcm8k: &[i16]) -> Vec<i16> {
    audio::mulaw_to_16k(&telephone_mulaw(pcm8k))
}

/// A file's audio as it is pushed into a recogniser.
enum Audio {
    /// 16 kHz PCM.
    Wide(Vec<i16>),
    /// µ-law at 8 kHz, as a call carries it.
    Phone(Vec<u8>),
}

fn load(path: &Path, phone: bool) -> anyhow::Result<Audio> {
    let (rate, mono) = super::read_wav(path)?;
    if mono.is_empty() {
        bail!("{} holds no audio", path.display());
    }
    Ok(if phone {
        Audio::Phone(telephone_mulaw(&audio::resample(&mono, rate, 8000)))
    } else {
        Audio::Wide(audio::resample(&mono, rate, 16_000))
    })
}

fn recogniser(args: &TranscribeArgs) -> anyhow::Result<Arc<dyn SpeechToText>> {
    let models_dir = args
        .models_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("./data/models"));
    let choice = offline_stt(args.stt, &models_dir)
        .map_err(anyhow::Error::msg)?
        .with_context(|| {
            format!(
                "transcribe runs the offline recognisers (offline, whisper, sphinx), not {}",
                args.stt.as_str()
            )
        })?;
    Ok(match choice {
        OfflineStt::Whisper(dir) => {
            let mut config = WhisperConfig::new(&dir);
            if args.pad_30s {
                config.min_window_secs = crate::backends::whisper::TRAINED_WINDOW_SECS;
            }
            if let Some(secs) = args.min_window_secs {
                config.min_window_secs = secs;
            }
            config.threads_per_decode = args.threads.max(1);
            if args.no_backchannel_reading {
                config.backchannel_margin = None;
            } else if let Some(margin) = args.backchannel_margin {
                config.backchannel_margin = Some(margin);
            }
            if args.no_check_primer {
                config.check_primer.clear();
            } else if let Some(words) = &args.check_primer {
                config.check_primer = words.iter().map(|w| w.trim().to_string()).collect();
            }
            config.early_decode = args.realtime && !args.no_early;
            config.pool_size = config.pool_size.max(args.jobs);
            Arc::new(WhisperStt::new(config)?)
        }
        other => other.build()?,
    })
}

/// Push `audio` into a session in 20 ms frames (in real time when `realtime`, then 700 ms of
/// silence) and finish it: the transcript and the time from the end of the audio to it.
async fn run_one(
    stt: Arc<dyn SpeechToText>,
    audio: Audio,
    realtime: bool,
    multilingual: bool,
    hint: SttHint,
    terms: &[String],
    over_agent: bool,
) -> anyhow::Result<(Heard, Duration)> {
    let mut session = stt.start_with_terms(hint, multilingual, terms);
    let frames = match &audio {
        Audio::Wide(pcm) => pcm.len().div_ceil(SAMPLES_16K),
        Audio::Phone(mulaw) => mulaw.len().div_ceil(SAMPLES_8K),
    };
    // 700 ms of silence after the audio when in real time
    let silence = if realtime { 35 } else { 0 };
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for i in 0..frames + silence {
        if realtime {
            tick.tick().await;
        }
        match &audio {
            Audio::Wide(pcm) => {
                let at = (i * SAMPLES_16K).min(pcm.len());
                let frame = pcm.get(at..(at + SAMPLES_16K).min(pcm.len()));
                session.push(frame.filter(|f| !f.is_empty()).unwrap_or(&[0; SAMPLES_16K]));
            }
            Audio::Phone(mulaw) => {
                let at = (i * SAMPLES_8K).min(mulaw.len());
                let frame = mulaw.get(at..(at + SAMPLES_8K).min(mulaw.len()));
                session.push_phone(
                    frame
                        .filter(|f| !f.is_empty())
                        .unwrap_or(&[0xFF; SAMPLES_8K]),
                );
            }
        }
    }
    if realtime {
        tick.tick().await;
    }
    let start = Instant::now();
    // as a call's barge-in check reads the words so far, when the recogniser has such checks
    if over_agent && let Some(partial) = session.partial_over_agent() {
        let text = partial.await?;
        return Ok((
            Heard {
                text,
                language: None,
            },
            start.elapsed(),
        ));
    }
    let heard = session.finish_heard().await?;
    Ok((heard, start.elapsed()))
}

pub async fn run(args: TranscribeArgs) -> anyhow::Result<()> {
    let stt = recogniser(&args)?;
    let jobs = args.jobs.max(1);
    let terms: Vec<String> = args
        .terms
        .iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    let results = futures_util::stream::iter(args.files.iter().cloned())
        .map(|path| {
            let stt = stt.clone();
            let terms = terms.clone();
            let (phone, realtime, multilingual, hint, floor) = (
                args.phone,
                args.realtime,
                args.multilingual,
                args.hint,
                args.floor,
            );
            async move {
                let outcome = match load(&path, phone) {
                    Ok(audio) => {
                        run_one(stt, audio, realtime, multilingual, hint, &terms, floor).await
                    }
                    Err(e) => Err(e),
                };
                (path, outcome)
            }
        })
        .buffered(jobs);
    futures_util::pin_mut!(results);
    let mut failed = 0;
    let mut times = Vec::new();
    while let Some((path, outcome)) = results.next().await {
        match outcome {
            Ok((heard, took)) => {
                let mut line = format!("{}\t{}", path.display(), heard.text);
                if args.multilingual {
                    line.push('\t');
                    line.push_str(heard.language.as_deref().unwrap_or("-"));
                }
                if args.floor {
                    let floor = crate::engine::dialogue::understand::takes_the_floor(&heard.text);
                    line.push_str(if floor { "\tfloor" } else { "\t-" });
                }
                println!("{line}");
                if args.timing {
                    eprintln!("{}\t{} ms", path.display(), took.as_millis());
                }
                times.push(took);
            }
            Err(e) => {
                failed += 1;
                eprintln!("{}: {e:#}", path.display());
            }
        }
    }
    if args.timing && !times.is_empty() {
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mean = times.iter().map(|&d| ms(d)).sum::<f64>() / times.len() as f64;
        let pct = |p: f64| ms(times[((times.len() - 1) as f64 * p).round() as usize]);
        eprintln!(
            "recognition after the end of the audio: {} files, mean {mean:.0} ms, p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
            times.len(),
            pct(0.5),
            pct(0.95),
            pct(1.0)
        );
    }
    if failed > 0 {
        bail!(
            "{failed} of {} files could not be transcribed",
            args.files.len()
        );
    }
    Ok(())
}
