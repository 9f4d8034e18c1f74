//! The load generator: `receptionist loadgen` opens N concurrent calls in one carrier's protocol
//! (`--carrier`, Twilio by default) to a server on loopback and reports, as one JSON line on
//! stdout, how the server held up.
//!
//! Each call does what the carrier does: [`super::place_call`] (signed voice webhook, answer
//! markup, signed WebSocket upgrade), then the fake carrier ([`FakeCarrier`]) streams `connected`,
//! `start` and one 20 ms `media` message every 20 ms (caller speech from `audio-fixtures/` or
//! silence) with the carrier's counters, plays the agent's audio out on a real-time clock, and
//! echoes marks as the carrier does (once the audio before them has played; on `clear`, per the
//! carrier). When the agent has been idle for `--reply-gap-ms` after speaking, the caller answers
//! with the next fixture utterance (cycling).
//!
//! Calls start spread over `--ramp-secs`, each lasts until the server ends it or `--duration-secs`
//! after its `start` (then `stop` and close), and the whole run is cut at `--max-secs`.
//!
//! Without `--server`, the generator starts the server itself (this same binary, `serve --backends
//! scripted`, or `offline` on the installed models with `--backends offline`, on a free loopback
//! port, in a temporary data directory), creates a workspace and a receptionist, and stops it at
//! the end. Only loopback servers are ever targeted.
//! `--levels 10,100,500` makes one such run per level, each on a fresh server, one JSON line each.
//!
//! What it measures (all in the JSON line):
//! - calls started / completed / failed (with reasons) and protocol errors;
//! - server CPU seconds per call-second, from `/proc/PID/stat` (utime + stime in clock ticks, read
//!   with `getconf CLK_TCK`, 100 if that fails), over the steady-state window from "every call has
//!   started" to "the first call ended" (the whole run when that window is under 5 s);
//! - server RSS (`VmRSS` sampled every 500 ms, `VmHWM`) and RSS per concurrent call; and the
//!   same for its anonymous memory alone (`RssAnon`: the heap and stacks, without the pages of
//!   the program and its libraries that the first calls read in, which a figure per call at low
//!   concurrency would otherwise share out among a few calls);
//! - the silences a caller hears inside agent speech (`playout_gaps`): agent audio that arrived
//!   after what was queued at the carrier had finished playing, up to 500 ms later (longer are
//!   turn boundaries);
//! - the gaps between agent media messages received while the agent speaks (gaps over 500 ms are
//!   turn boundaries and excluded), and how many exceed 40 ms (`late_frames`): what matters for
//!   audio sent in real time, frame by frame; audio sent ahead in bursts arrives in uneven
//!   messages that the carrier's buffer smooths, and only `playout_gaps` are heard;
//! - the caller-side response latency (last utterance frame sent → first agent frame received,
//!   which includes the server's endpointing silence; also from the utterance's last frame with
//!   speech, since the recordings end with about 0.4 s of silence), and the server-side figure from
//!   `GET /api/v1/calls/{id}` (`total_ms − endpointing_ms` per turn) when an API key is known;
//! - `start` → first agent audio;
//! - the generator's own CPU and how late its 20 ms ticks fired (if they are late, the
//!   generator, not the server, is the bottleneck and the timing figures are suspect).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::{CallRequest, CarrierSecrets, PlaceError, place_call, random_hex, read_wav_8k};
use crate::config::BackendSet;
use crate::engine::audio::{SAMPLES_8K, g711};
use crate::engine::media::{Carrier, Msg};
use crate::server::carriers::client::Credentials;
use crate::testing::FakeCarrier;
use crate::testing::carrier::codecs;

/// The caller's utterances, in the order they are spoken (then again from the first).
pub const FIXTURES: [&str; 6] = [
    "name.wav",
    "location.wav",
    "yes.wav",
    "number_three.wav",
    "question_pay.wav",
    "no_questions.wav",
];

/// One 20 ms frame.
const FRAME: Duration = Duration::from_millis(20);
/// Gaps between agent frames longer than this are turn boundaries, not jitter.
const TURN_GAP: Duration = Duration::from_millis(500);
/// A gap longer than this is a late frame.
const LATE_GAP: Duration = Duration::from_millis(40);
/// The steady-state window must be at least this long to be used.
const MIN_WINDOW: Duration = Duration::from_secs(5);
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// A frame with a sample louder than this (about −41 dBFS) has speech in it.
const VOICED_LEVEL: u16 = 300;

/// `receptionist loadgen`.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadgenArgs {
    /// A running server (loopback only). Default: start one for this run (`--backends`).
    #[arg(long)]
    pub server: Option<String>,
    /// The started server's speech backends: `scripted` (canned transcripts and tones: the
    /// server's own cost) or `offline` (the neural defaults from `--models-dir`: Whisper, Piper,
    /// Smart Turn, as a self-hosted deployment runs them). Not with `--server`.
    #[arg(
        long,
        value_enum,
        default_value = "scripted",
        conflicts_with = "server"
    )]
    pub backends: BackendSet,
    /// Where the started server finds the offline models (`--backends offline`).
    #[arg(long, default_value = "data/models", conflicts_with = "server")]
    pub models_dir: PathBuf,
    /// The running server's process id, for its CPU and memory (`/proc/PID`).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The public URL the running server signs with (default: --server).
    #[arg(long)]
    pub public_url: Option<String>,
    /// The receptionist's number (required with --server).
    #[arg(long)]
    pub to: Option<String>,
    /// The carriers' credentials the running server checks (unset: the test credentials, which a
    /// server started here is given).
    #[command(flatten)]
    pub secrets: CarrierSecrets,
    /// Workspace API key of the running server: adds the server-measured latencies.
    #[arg(long, env = "RECEPTIONIST_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Number of calls.
    #[arg(long, default_value_t = 10)]
    pub calls: usize,
    /// Several runs, one after another, of this many calls each (comma-separated, e.g.
    /// `10,100,500`), each on a fresh server of its own so that no level inherits another's
    /// memory: one JSON line per level (with `"level"`), then a summary table on stderr.
    /// `--max-secs` and `--server-log` (suffixed `.N`) apply to each level.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["calls", "server"])]
    pub levels: Option<Vec<usize>>,
    /// Spread the calls' starts over this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub ramp_secs: f64,
    /// Hang up each call this many seconds after its `start` unless the server ends it first.
    #[arg(long, default_value_t = 40.0)]
    pub duration_secs: f64,
    /// Stop everything after this many seconds, whatever happens (default: duration + ramp + 60).
    #[arg(long)]
    pub max_secs: Option<f64>,
    /// Directory with the caller recordings.
    #[arg(long, default_value = "audio-fixtures")]
    pub fixtures: PathBuf,
    /// The caller answers once the agent has been silent this long after speaking.
    #[arg(long, default_value_t = 700)]
    pub reply_gap_ms: u64,
    /// Every Nth answer of each caller (from its third on) is said over the agent: it starts
    /// 600 ms into the agent's line instead of after it, and the report gives how soon the agent
    /// stopped (`barge_in_clear_ms_p50`/`_p99`, from the caller's first voiced frame to the
    /// `clear`). 0: callers never talk over the agent.
    #[arg(long, default_value_t = 0)]
    pub barge_in_every: usize,
    /// White noise at this RMS level (dBFS, -90 to -20; -50 is a typical phone line) on every
    /// caller's line, under their speech and between their utterances, as a real line has.
    /// Default: digital silence between utterances.
    #[arg(long, allow_negative_numbers = true)]
    pub line_noise_dbfs: Option<f32>,
    /// Threads placing the calls, each with a single-threaded runtime (one keeps up with about
    /// 500 calls on this project's 2-core reference machine).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// The carrier whose protocol the calls speak: twilio, telnyx, plivo, vonage, signalwire or
    /// exotel.
    #[arg(long, default_value = "twilio")]
    pub carrier: Carrier,
    /// Keep the started server's log here (default: discarded with its temporary directory).
    #[arg(long)]
    pub server_log: Option<PathBuf>,
    /// Start the server with `--llm openai` pointed at a local OpenAI-compatible stand-in
    /// (`testing::providers::FakeOpenAi`) that reads every caller turn and answers questions at
    /// once: the language model path's own added latency and CPU, without a model's.
    #[arg(long, conflicts_with = "server")]
    pub llm_stand_in: bool,
    /// The stand-in's delay before each answer's first byte (a model's time to first token).
    #[arg(long, default_value_t = 0, requires = "llm_stand_in")]
    pub llm_stand_in_delay_ms: u64,
    /// Start the server with `--stt openai` pointed at a local OpenAI-compatible stand-in
    /// whose transcription hears what the dialogue expects (from the request's hint prompt):
    /// each utterance goes up as a WAV file and its transcript comes back over HTTP, so `stt`
    /// in `server_stage_latency_ms` is that path's added latency.
    #[arg(long, conflicts_with = "server")]
    pub stt_stand_in: bool,
    /// Start the server with `--tts elevenlabs` pointed at a local stand-in of ElevenLabs'
    /// input-streaming socket (`testing::providers::FakeElevenLabs`): what is not cached is
    /// synthesised over a socket per line and played from its first piece, so `tts` in
    /// `server_stage_latency_ms` is that path's time to first audio.
    #[arg(long, conflicts_with = "server")]
    pub tts_stand_in: bool,
    /// The stand-in's wait between its audio messages (200 ms of audio each): how fast it
    /// synthesises. 0 sends all at once.
    #[arg(long, default_value_t = 0, requires = "tts_stand_in")]
    pub tts_stand_in_pace_ms: u64,
    /// Soak: keep `--calls` calls going for this many seconds (each call that ends, by the
    /// server or after `--duration-secs`, is replaced by a new one until then; the last ones run
    /// to their end), sample the server every `--sample-secs` into a curve, judge whether memory
    /// per call stayed flat, and check every completed call's records (implies `--verify`).
    #[arg(long, conflicts_with = "levels")]
    pub soak_secs: Option<f64>,
    /// Soak: the curve's spacing (time, active calls, RSS, RSS per call, CPU).
    #[arg(long, default_value_t = 10.0)]
    pub sample_secs: f64,
    /// Soak: the memory verdict ignores the curve before this many seconds (default: ramp +
    /// duration, when every first call has been replaced once).
    #[arg(long)]
    pub warmup_secs: Option<f64>,
    /// Soak: memory is flat when the mean RSS per call over the last third of the steady part
    /// of the curve is within this many percent of the first third's.
    #[arg(long, default_value_t = 10.0)]
    pub flat_pct: f64,
    /// After the run, check through the server's API that every completed call has its records:
    /// ended with a reason, transcript lines, its recording present (and not flagged
    /// incomplete) with a length matching the call's within 1 s + 2%.
    #[arg(long)]
    pub verify: bool,
}

/// The stages of a turn's latency the server stores (`TurnLatency`), reported by percentile.
const LATENCY_STAGES: [&str; 6] = [
    "endpointing_ms",
    "stt_ms",
    "llm_first_ms",
    "llm_ms",
    "tts_ms",
    "total_ms",
];

// ---------------------------------------------------------------------------------------------
// Loopback only

/// The server URL, if it is `http://` on a loopback address (127.0.0.0/8, ::1, `localhost`).
pub fn loopback_url(server: &str) -> anyhow::Result<url::Url> {
    let url =
        url::Url::parse(server).with_context(|| format!("--server {server:?} is not a URL"))?;
    if url.scheme() != "http" {
        bail!("--server must be an http:// URL on loopback, not {server:?}");
    }
    let ok = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if !ok {
        bail!(
            "refusing to load {server:?}: the load generator only targets loopback \
             (127.0.0.0/8, ::1, localhost)"
        );
    }
    if url.port_or_known_default().is_none() {
        bail!("--server {server:?} has no port");
    }
    Ok(url)
}

/// `localhost` must resolve to loopback addresses only.
async fn check_resolves_to_loopback(url: &url::Url) -> anyhow::Result<()> {
    if let Some(url::Host::Domain(d)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<_> = tokio::net::lookup_host((d, port)).await?.collect();
        if addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()) {
            bail!("{d} resolves to {addrs:?}, not only loopback addresses: refusing");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Statistics

/// Nearest-rank percentile of sorted values (`p` in 0..=100).
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

const FINE_LIMIT_US: u64 = 100_000;
const FINE_US: u64 = 10;
const COARSE_US: u64 = 1_000;
const LIMIT_US: u64 = 120_000_000;
const FINE_BUCKETS: usize = (FINE_LIMIT_US / FINE_US) as usize;
const BUCKETS: usize = FINE_BUCKETS + ((LIMIT_US - FINE_LIMIT_US) / COARSE_US) as usize;

/// A lock-free histogram of durations: 10 µs buckets below 100 ms, 1 ms buckets up to 120 s
/// (larger values land in the last bucket; the maximum is kept exactly).
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    max_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
        }
    }

    fn index(us: u64) -> usize {
        if us < FINE_LIMIT_US {
            (us / FINE_US) as usize
        } else {
            FINE_BUCKETS + ((us.min(LIMIT_US - 1) - FINE_LIMIT_US) / COARSE_US) as usize
        }
    }

    fn upper_us(index: usize) -> u64 {
        if index < FINE_BUCKETS {
            (index as u64 + 1) * FINE_US
        } else {
            FINE_LIMIT_US + ((index - FINE_BUCKETS) as u64 + 1) * COARSE_US
        }
    }

    pub fn record(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        self.buckets[Self::index(us)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Nearest-rank percentile in microseconds: the upper edge of the bucket holding it (never
    /// above the maximum recorded).
    pub fn percentile_us(&self, p: f64) -> Option<u64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = (((p / 100.0) * n as f64).ceil() as u64).clamp(1, n);
        let max = self.max_us.load(Ordering::Relaxed);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                return Some(Self::upper_us(i).min(max));
            }
        }
        Some(max)
    }

    pub fn max_us(&self) -> Option<u64> {
        (self.count() > 0).then(|| self.max_us.load(Ordering::Relaxed))
    }

    fn ms(us: Option<u64>) -> Value {
        us.map_or(Value::Null, |us| json!(round3(us as f64 / 1000.0)))
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

// ---------------------------------------------------------------------------------------------
// /proc

/// utime + stime (clock ticks) from the text of `/proc/PID/stat`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    // the command name (field 2) may hold spaces and parentheses: fields restart after the last ')'
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11); // field 3 (state) is index 0; utime is field 14
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `Key:   1234 kB` line of `/proc/PID/status`, in KiB.
pub fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        v.split_whitespace().next()?.parse().ok()
    })
}

fn cpu_ticks(pid: &str) -> Option<u64> {
    parse_stat_cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `/proc/PID/status`, read once for all the figures taken from it at one time.
fn read_status(pid: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status")).ok()
}

fn status_kib(pid: &str, key: &str) -> Option<u64> {
    parse_status_kib(&read_status(pid)?, key)
}

fn clock_ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    /// The server's CPU (0 when its pid is unknown).
    cpu_ticks: u64,
    rss_kib: u64,
    /// `RssAnon`: the part of `rss_kib` that is not file pages.
    anon_kib: u64,
    /// The generator's own CPU.
    self_ticks: u64,
    /// Every process on the machine: busy time summed over CPUs.
    machine_ticks: u64,
    /// The generator's calls connected at the time.
    active: usize,
}

/// Busy clock ticks of all CPUs (user, nice, system, irq, softirq, steal) from `/proc/stat`.
pub fn parse_proc_stat_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    Some([0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum())
}

fn machine_busy_ticks() -> Option<u64> {
    parse_proc_stat_busy(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn take_sample(pid: Option<&str>) -> Option<Sample> {
    let (server_ticks, rss_kib, anon_kib) = match pid {
        Some(p) => {
            let status = read_status(p)?;
            (
                cpu_ticks(p)?,
                parse_status_kib(&status, "VmRSS")?,
                parse_status_kib(&status, "RssAnon").unwrap_or(0),
            )
        }
        None => (0, 0, 0),
    };
    Some(Sample {
        at: Instant::now(),
        cpu_ticks: server_ticks,
        rss_kib,
        anon_kib,
        self_ticks: cpu_ticks("self").unwrap_or(0),
        machine_ticks: machine_busy_ticks().unwrap_or(0),
        active: 0,
    })
}

// ---------------------------------------------------------------------------------------------
// Caller audio

/// The fixture utterances as 20 ms µ-law frames, decoded once and shared by every call.
struct Utterances {
    frames: Vec<Vec<[u8; SAMPLES_8K]>>,
    /// Per utterance, the index of its first and of its last frame with speech in it (the
    /// recordings end with about 0.4 s of silence).
    first_voiced: Vec<usize>,
    last_voiced: Vec<usize>,
    /// What the line carries between utterances, in turn: digital silence, or a second of line
    /// noise (`--line-noise-dbfs`).
    quiet: Vec<[u8; SAMPLES_8K]>,
}

/// Frames of line noise, repeated (a second).
const NOISE_FRAMES: usize = 50;

impl Utterances {
    fn load(dir: &Path, noise_dbfs: Option<f32>) -> anyhow::Result<Self> {
        if let Some(db) = noise_dbfs {
            anyhow::ensure!(
                (-90.0..=-20.0).contains(&db),
                "--line-noise-dbfs must be between -90 and -20, not {db}"
            );
        }
        let noise = noise_dbfs.map(|db| crate::testing::line_noise(db, NOISE_FRAMES * SAMPLES_8K));
        let noisy = |i: usize, s: i16| match &noise {
            Some(n) => (s as f32 + n[i % n.len()]).round().clamp(-32768.0, 32767.0) as i16,
            None => s,
        };
        let mut frames = Vec::new();
        let mut first_voiced = Vec::new();
        let mut last_voiced = Vec::new();
        for name in FIXTURES {
            let path = dir.join(name);
            let pcm = read_wav_8k(&path)
                .with_context(|| format!("loading caller audio {}", path.display()))?;
            first_voiced.push(
                pcm.chunks(SAMPLES_8K)
                    .position(|c| c.iter().any(|s| s.unsigned_abs() > VOICED_LEVEL))
                    .unwrap_or(0),
            );
            last_voiced.push(
                pcm.chunks(SAMPLES_8K)
                    .rposition(|c| c.iter().any(|s| s.unsigned_abs() > VOICED_LEVEL))
                    .unwrap_or(0),
            );
            let utterance = pcm
                .chunks(SAMPLES_8K)
                .enumerate()
                .map(|(k, chunk)| {
                    let mut frame = [0xFFu8; SAMPLES_8K];
                    for (i, (f, s)) in frame.iter_mut().zip(chunk).enumerate() {
                        *f = g711::ulaw_encode(noisy(k * SAMPLES_8K + i, *s));
                    }
                    frame
                })
                .collect();
            frames.push(utterance);
        }
        let quiet = match &noise {
            Some(_) => (0..NOISE_FRAMES)
                .map(|k| std::array::from_fn(|i| g711::ulaw_encode(noisy(k * SAMPLES_8K + i, 0))))
                .collect(),
            None => vec![[0xFF; SAMPLES_8K]],
        };
        Ok(Self {
            frames,
            first_voiced,
            last_voiced,
            quiet,
        })
    }

    fn frame(&self, utterance: usize, index: usize) -> Option<&[u8; SAMPLES_8K]> {
        self.frames[utterance].get(index)
    }

    /// The line between utterances, at the call's `n`th frame.
    fn quiet(&self, n: u64) -> &[u8; SAMPLES_8K] {
        &self.quiet[(n % self.quiet.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------------------------
// Shared state of a run

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The voice webhook failed or answered an error.
    Webhook,
    /// The TwiML did not connect a stream (closed or busy).
    Refused,
    /// The WebSocket upgrade failed.
    Connect,
    /// The socket broke before the call ended.
    Socket,
    /// The call ended without a single frame of agent audio.
    NoAudio,
    /// Still running at `--max-secs`.
    Cutoff,
}

const FAILURES: [(Failure, &str); 6] = [
    (Failure::Webhook, "webhook"),
    (Failure::Refused, "refused"),
    (Failure::Connect, "connect"),
    (Failure::Socket, "socket"),
    (Failure::NoAudio, "no_audio"),
    (Failure::Cutoff, "cutoff"),
];

#[derive(Default)]
struct Metrics {
    started: AtomicUsize,
    /// Calls that sent `start` or failed before it.
    settled: AtomicUsize,
    connected: AtomicUsize,
    active: AtomicUsize,
    peak_active: AtomicUsize,
    completed: AtomicUsize,
    failed: [AtomicUsize; FAILURES.len()],
    protocol_errors: AtomicU64,
    agent_frames: AtomicU64,
    marks_echoed: AtomicU64,
    clears: AtomicU64,
    /// Talk over the agent (`--barge-in-every`): from its first voiced frame to the `clear`,
    /// and how many got none while the agent went on speaking to the end of the caller's talk.
    barge_in_clear: Histogram,
    barge_ins_unstopped: AtomicU64,
    late_frames: AtomicU64,
    gaps: Histogram,
    playout_gaps: Histogram,
    response: Histogram,
    response_from_speech: Histogram,
    first_audio: Histogram,
    tick_lag: Histogram,
    webhook_error_told: std::sync::atomic::AtomicBool,
    all_started_at: OnceLock<Instant>,
    first_end_at: OnceLock<Instant>,
}

impl Metrics {
    fn fail(&self, f: Failure) {
        let i = FAILURES.iter().position(|(x, _)| *x == f).unwrap_or(0);
        self.failed[i].fetch_add(1, Ordering::Relaxed);
    }

    fn failed_total(&self) -> usize {
        self.failed.iter().map(|f| f.load(Ordering::Relaxed)).sum()
    }

    fn settle(&self, calls: usize) {
        if self.settled.fetch_add(1, Ordering::SeqCst) + 1 == calls {
            let _ = self.all_started_at.set(Instant::now());
        }
    }
}

struct Ctx {
    /// Where requests go: `http://host:port` (loopback).
    server: String,
    /// What signatures cover.
    public: String,
    credentials: Credentials,
    to: String,
    carrier: Carrier,
    calls: usize,
    duration: Duration,
    reply_gap_ms: u64,
    barge_in_every: usize,
    hard_deadline: Instant,
    audio: Utterances,
    m: Metrics,
}

#[derive(Debug, Default)]
struct CallResult {
    call_id: Option<String>,
    /// From `start` sent to the end.
    connected: Option<(Instant, Instant)>,
    completed: bool,
}

// ---------------------------------------------------------------------------------------------
// One call

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How a connected session ended.
enum End {
    /// The server closed the stream.
    ByServer,
    /// `--duration-secs` passed: we sent `stop`.
    ByUs,
    Socket,
    Cutoff,
}

/// One load thread: its calls on a single-threaded runtime (one thread waking for all its
/// sockets and timers is much cheaper than work-stealing workers waking each other). With
/// `replace_until` (a soak), each start is a slot that places a new call whenever its call ends,
/// until then.
fn run_shard(
    ctx: Arc<Ctx>,
    starts: Vec<Instant>,
    replace_until: Option<Instant>,
) -> anyhow::Result<Vec<CallResult>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let handles: Vec<_> = starts
            .into_iter()
            .map(|at| {
                let ctx = ctx.clone();
                let http = http.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    let mut done = vec![run_call(ctx.clone(), http.clone()).await];
                    while let Some(until) = replace_until {
                        let now = Instant::now();
                        if now >= until || now >= ctx.hard_deadline {
                            break;
                        }
                        // a call refused at once must not spin: at most one attempt a second
                        let last = done.last().and_then(|r: &CallResult| r.connected);
                        if last.is_none() {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        done.push(run_call(ctx.clone(), http.clone()).await);
                    }
                    done
                })
            })
            .collect();
        let mut results = Vec::with_capacity(handles.len());
        for h in handles {
            let abort = h.abort_handle();
            match tokio::time::timeout_at(ctx.hard_deadline + Duration::from_secs(5), h).await {
                Ok(Ok(r)) => results.extend(r),
                _ => {
                    abort.abort();
                    ctx.m.fail(Failure::Cutoff);
                    results.push(CallResult::default());
                }
            }
        }
        Ok(results)
    })
}

async fn run_call(ctx: Arc<Ctx>, http: reqwest::Client) -> CallResult {
    let mut result = CallResult::default();
    ctx.m.started.fetch_add(1, Ordering::Relaxed);
    let fail = |f: Failure| ctx.m.fail(f);
    let connect = tokio::time::timeout_at(ctx.hard_deadline, open_stream(&ctx, &http)).await;
    let (mut ws, fake, call_id) = match connect {
        Err(_) => {
            fail(Failure::Cutoff);
            ctx.m.settle(ctx.calls);
            return result;
        }
        Ok(Err((f, call_id))) => {
            result.call_id = call_id;
            fail(f);
            ctx.m.settle(ctx.calls);
            return result;
        }
        Ok(Ok(x)) => x,
    };
    result.call_id = call_id;
    let started = Instant::now();
    ctx.m.settle(ctx.calls);
    ctx.m.connected.fetch_add(1, Ordering::Relaxed);
    let now_active = ctx.m.active.fetch_add(1, Ordering::SeqCst) + 1;
    ctx.m.peak_active.fetch_max(now_active, Ordering::SeqCst);

    let mut session = Session {
        ctx: &ctx,
        fake,
        last_played: None,
        agent_idle_ms: 0,
        agent_spoke: false,
        speaking: None,
        next_utterance: 0,
        awaiting_reply: None,
        speech_end: None,
        replied_early: false,
        answers: 0,
        agent_playing_ms: 0,
        barging: None,
        started,
        first_audio: false,
        last_media_at: None,
        frames_received: 0,
        frames_sent: 0,
        hung_up_at: None,
    };
    let end = session.run(&mut ws).await;
    let frames = session.frames_received;
    // a call we hung up ended then, not after the close handshake that follows
    let ended = session.hung_up_at.unwrap_or_else(Instant::now);
    ctx.m.active.fetch_sub(1, Ordering::SeqCst);
    let _ = ctx.m.first_end_at.set(ended);
    result.connected = Some((started, ended));
    match end {
        End::Cutoff => fail(Failure::Cutoff),
        End::Socket => fail(Failure::Socket),
        End::ByServer | End::ByUs if frames == 0 => fail(Failure::NoAudio),
        End::ByServer | End::ByUs => {
            result.completed = true;
            ctx.m.completed.fetch_add(1, Ordering::Relaxed);
        }
    }
    result
}

/// Webhook, answer markup, signed upgrade, `connected` and `start`.
async fn open_stream(
    ctx: &Ctx,
    http: &reqwest::Client,
) -> Result<(Ws, FakeCarrier, Option<String>), (Failure, Option<String>)> {
    let from = format!("+1555{:07}", rand::random_range(0..10_000_000u32));
    let req = CallRequest {
        server: &ctx.server,
        public: &ctx.public,
        credentials: &ctx.credentials,
        to: &ctx.to,
        from: &from,
        forwarded_from: None,
    };
    let placed = match place_call(http, ctx.carrier, &req).await {
        Ok(p) => p,
        Err(e) => {
            if !ctx.m.webhook_error_told.swap(true, Ordering::Relaxed) {
                let hint = if matches!(e, PlaceError::Webhook { status: 403, .. }) {
                    " (the server checks signatures against its public URL; see --twilio-auth-token \
                     (and the other carriers' secrets) and --public-url)"
                } else {
                    ""
                };
                eprintln!("[loadgen] {e}{hint}");
            }
            return Err((Failure::Webhook, None));
        }
    };
    let Some(stream) = placed.stream else {
        return Err((Failure::Refused, None));
    };
    let call_id = stream.call_id();
    let Ok(mut request) = stream.connect_url.as_str().into_client_request() else {
        return Err((Failure::Connect, call_id));
    };
    for (name, value) in &stream.headers {
        if let (Ok(name), Ok(value)) = (
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()),
            value.parse(),
        ) {
            request.headers_mut().insert(name, value);
        }
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096);
    let mut ws =
        match tokio_tungstenite::connect_async_with_config(request, Some(config), true).await {
            Ok((ws, _)) => ws,
            Err(_) => return Err((Failure::Connect, call_id)),
        };
    let codec = codecs(ctx.carrier)[0];
    let Ok(mut fake) = FakeCarrier::new(ctx.carrier, codec, stream.info, Instant::now().into_std())
    else {
        return Err((Failure::Connect, call_id));
    };
    fake.forget_heard();
    fake.connect();
    if send_out(&mut fake, &mut ws).await.is_err() {
        return Err((Failure::Socket, call_id));
    }
    Ok((ws, fake, call_id))
}

/// Sends what the fake carrier wrote, in order.
async fn send_out(fake: &mut FakeCarrier, ws: &mut Ws) -> Result<(), ()> {
    super::simulate::send_out(fake, ws).await.map_err(|_| ())
}

struct Session<'a> {
    ctx: &'a Ctx,
    fake: FakeCarrier,
    /// When the fake last finished playing agent audio, as of the last tick.
    last_played: Option<std::time::Instant>,
    agent_idle_ms: u64,
    agent_spoke: bool,
    /// (utterance, next frame)
    speaking: Option<(usize, usize)>,
    next_utterance: usize,
    /// When the caller's last utterance frame was sent, until the agent's next audio arrives.
    awaiting_reply: Option<Instant>,
    /// When the utterance's last frame with speech was sent, likewise.
    speech_end: Option<Instant>,
    /// The agent's reply began while the caller's utterance was still being sent (in the silence
    /// after its speech): its response time is 0, not the wait for the agent's next line.
    replied_early: bool,
    /// Utterances the caller has started.
    answers: usize,
    /// How long the agent's audio has been playing without a break, as of the last tick.
    agent_playing_ms: u64,
    /// The utterance being said over the agent (`--barge-in-every`) until its `clear` or its
    /// end: when its first voiced frame was sent, once it was.
    barging: Option<Option<Instant>>,
    started: Instant,
    first_audio: bool,
    last_media_at: Option<Instant>,
    frames_received: u64,
    /// Caller frames sent so far.
    frames_sent: u64,
    /// When we sent `stop` (`--duration-secs` passed).
    hung_up_at: Option<Instant>,
}

impl Session<'_> {
    async fn run(&mut self, ws: &mut Ws) -> End {
        let call_deadline = self.started + self.ctx.duration;
        let cutoff = tokio::time::sleep_until(self.ctx.hard_deadline);
        tokio::pin!(cutoff);
        // Burst: a late tick is made up at once, so the caller's stream keeps real-time rate
        // and its timestamps stay true to the clock, as Twilio's do.
        let mut tick = tokio::time::interval_at(self.started + FRAME, FRAME);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        loop {
            tokio::select! {
                msg = ws.next() => {
                    let msg = match msg {
                        None => return End::ByServer,
                        Some(Err(_)) => return End::Socket,
                        Some(Ok(m)) => m,
                    };
                    let sent = match &msg {
                        Message::Text(t) => self.on_message(Msg::Text(t.as_str()), ws).await,
                        Message::Binary(b) => self.on_message(Msg::Binary(b), ws).await,
                        Message::Close(_) => return End::ByServer,
                        _ => Ok(()),
                    };
                    if sent.is_err() {
                        return closed_or_broken(ws).await;
                    }
                }
                at = tick.tick() => {
                    let now = Instant::now();
                    self.ctx.m.tick_lag.record(now.saturating_duration_since(at));
                    if now >= call_deadline {
                        self.hung_up_at = Some(now);
                        // Vonage has no stop: closing is the hang-up
                        self.fake.send_stop();
                        let _ = send_out(&mut self.fake, ws).await;
                        // close, then read until the server's close: closing a socket with
                        // unread data resets the connection, and the server would see a drop
                        let _ = tokio::time::timeout(Duration::from_secs(2), async {
                            let _ = ws.close(None).await;
                            while let Some(Ok(_)) = ws.next().await {}
                        })
                        .await;
                        return End::ByUs;
                    }
                    if self.on_tick(ws).await.is_err() {
                        return closed_or_broken(ws).await;
                    }
                }
                _ = &mut cutoff => return End::Cutoff,
            }
        }
    }

    /// A message from the server, through the fake carrier; sends its answers (mark echoes).
    async fn on_message(&mut self, msg: Msg<'_>, ws: &mut Ws) -> Result<(), ()> {
        let m = &self.ctx.m;
        let (media, samples, marks, clears) = (
            self.fake.media_received(),
            self.fake.samples_received(),
            self.fake.marks_echoed(),
            self.fake.clears(),
        );
        let now = Instant::now();
        // play out to now first, so that audio arriving after the queue ran dry starts now
        self.fake.handle_timeout(now.into_std());
        let ran_dry_at = match self.fake.is_playing() {
            true => None,
            false => self.fake.last_played(),
        };
        if self.fake.handle_message(now.into_std(), msg).is_err() {
            m.protocol_errors.fetch_add(1, Ordering::Relaxed);
        }
        if self.fake.media_received() > media {
            if !self.first_audio {
                self.first_audio = true;
                m.first_audio.record(now - self.started);
            }
            if let Some(sent) = self.awaiting_reply.take() {
                m.response.record(now - sent);
            } else if self.speaking.is_some() && self.barging.is_none() {
                // (the caller starts only once the agent has been quiet a while: this is a reply)
                self.replied_early = true;
            }
            if let Some(sent) = self.speech_end.take() {
                m.response_from_speech.record(now - sent);
            }
            if let Some(prev) = self.last_media_at {
                let gap = now - prev;
                if gap <= TURN_GAP {
                    m.gaps.record(gap);
                    if gap > LATE_GAP {
                        m.late_frames.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            self.last_media_at = Some(now);
            if let Some(dry) = ran_dry_at {
                let silence = now.into_std().saturating_duration_since(dry);
                if silence <= TURN_GAP {
                    m.playout_gaps.record(silence);
                }
            }
            let frames = (self.fake.samples_received() - samples).div_ceil(SAMPLES_8K as u64);
            self.frames_received += frames;
            m.agent_frames.fetch_add(frames, Ordering::Relaxed);
        }
        m.marks_echoed
            .fetch_add(self.fake.marks_echoed() - marks, Ordering::Relaxed);
        m.clears
            .fetch_add(self.fake.clears() - clears, Ordering::Relaxed);
        if self.fake.clears() > clears
            && let Some(Some(voiced)) = self.barging
        {
            m.barge_in_clear.record(now - voiced);
            self.barging = None;
        }
        send_out(&mut self.fake, ws).await
    }

    /// 20 ms: echo the marks whose audio has played, play one frame, maybe start the next
    /// utterance, send one caller frame.
    async fn on_tick(&mut self, ws: &mut Ws) -> Result<(), ()> {
        let marks = self.fake.marks_echoed();
        self.fake.handle_timeout(std::time::Instant::now());
        self.ctx
            .m
            .marks_echoed
            .fetch_add(self.fake.marks_echoed() - marks, Ordering::Relaxed);
        let played = self.fake.is_playing() || self.fake.last_played() != self.last_played;
        self.last_played = self.fake.last_played();
        if played {
            self.agent_idle_ms = 0;
            self.agent_playing_ms += 20;
            self.agent_spoke = true;
        } else {
            self.agent_idle_ms += 20;
            self.agent_playing_ms = 0;
        }
        // this answer is said over the agent's line, 600 ms into it (past the first answers,
        // whose turns hold the disclosures that cannot be interrupted)
        let every = self.ctx.barge_in_every;
        let barge = every > 0
            && self.answers >= 2
            && (self.answers - 2) % every == every - 1
            && self.agent_playing_ms >= 600;
        if self.speaking.is_none()
            && self.agent_spoke
            && (barge || self.agent_idle_ms >= self.ctx.reply_gap_ms)
        {
            self.speaking = Some((self.next_utterance, 0));
            self.next_utterance = (self.next_utterance + 1) % FIXTURES.len();
            self.answers += 1;
            self.agent_spoke = false;
            self.replied_early = false;
            self.barging = barge.then_some(None);
        }
        let audio = &self.ctx.audio;
        let mut last_of_utterance = false;
        let mut last_voiced = false;
        let frame = match self.speaking.as_mut() {
            Some((u, i)) => {
                let f = audio
                    .frame(*u, *i)
                    .unwrap_or_else(|| audio.quiet(self.frames_sent));
                last_voiced = *i == audio.last_voiced[*u];
                if *i == audio.first_voiced[*u]
                    && let Some(voiced @ None) = &mut self.barging
                {
                    *voiced = Some(Instant::now());
                }
                *i += 1;
                if audio.frame(*u, *i).is_none() {
                    last_of_utterance = true;
                }
                f
            }
            None => audio.quiet(self.frames_sent),
        };
        self.frames_sent += 1;
        self.fake.send_audio(frame);
        send_out(&mut self.fake, ws).await?;
        if last_voiced && self.barging.is_none() {
            self.speech_end = Some(Instant::now());
        }
        if last_of_utterance {
            self.speaking = None;
            if let Some(clear_due) = self.barging.take() {
                // talk over the agent: its reply is not timed. Without a `clear` by its end, the
                // agent talked over the caller if it is still speaking (a line that ended by
                // itself first needed none)
                self.replied_early = false;
                if clear_due.is_some() && self.fake.is_playing() {
                    self.ctx
                        .m
                        .barge_ins_unstopped
                        .fetch_add(1, Ordering::Relaxed);
                }
            } else if std::mem::take(&mut self.replied_early) {
                self.ctx.m.response.record(Duration::ZERO);
            } else {
                self.awaiting_reply = Some(Instant::now());
            }
        }
        Ok(())
    }
}

/// A send failed: if the server's close frame is on its way, the server ended the call.
async fn closed_or_broken(ws: &mut Ws) -> End {
    let wait = async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Close(_)) => return End::ByServer,
                Ok(_) => {}
                Err(_) => return End::Socket,
            }
        }
        End::ByServer
    };
    tokio::time::timeout(Duration::from_secs(1), wait)
        .await
        .unwrap_or(End::Socket)
}

// ---------------------------------------------------------------------------------------------
// A server of our own

struct OwnServer {
    child: tokio::process::Child,
    dir: PathBuf,
    log: PathBuf,
    /// The language model's and the recogniser's stand-in, served for as long as the server
    /// runs.
    _stand_in: Option<crate::testing::providers::FakeOpenAi>,
    /// The synthesiser's stand-in, likewise.
    _tts_stand_in: Option<crate::testing::providers::FakeElevenLabs>,
}

impl OwnServer {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Target {
    server: String,
    public: String,
    pid: Option<u32>,
    to: String,
    credentials: Credentials,
    api_key: Option<String>,
    own: Option<OwnServer>,
}

/// The language model's stand-in for load runs (`--llm-stand-in`): reads the scripted
/// recogniser's answers into `record_turn` as a model would, and answers a question from the
/// receptionist's context.
fn stand_in_model(body: &Value) -> String {
    use crate::testing::providers::{sse_text, sse_tool_call};
    if body.get("tools").is_none() {
        return sse_text(&["Pay is 18 dollars per hour. ", "Shifts start at 6 am."]);
    }
    let said = body["messages"][1]["content"].as_str().unwrap_or_default();
    let system = body["messages"][0]["content"].as_str().unwrap_or_default();
    // the question asked now: the first open one the prompt lists
    let open_question = system
        .lines()
        .find_map(|l| l.strip_prefix("- question "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    let arguments = if let Some(name) = said.strip_prefix("my name is ") {
        json!({"name": name, "answers": []})
    } else if let Some(place) = said.strip_prefix("i live in ") {
        json!({"location": place, "answers": []})
    } else if said == "no thank you" {
        json!({"answers": [], "wants_to_end": true})
    } else if let Some(i) = open_question {
        json!({"answers": [{"question": i, "answer": said}]})
    } else {
        json!({"answers": []})
    };
    sse_tool_call("record_turn", &arguments.to_string())
}

/// The recogniser's stand-in for load runs (`--stt-stand-in`): hears what the hint prompt says
/// the dialogue expects, as the scripted recogniser answers its hint.
fn stand_in_transcript(fields: &Value) -> String {
    let prompt = fields["prompt"].as_str().unwrap_or_default();
    let text = match crate::backends::openai::hint_of_prompt(prompt) {
        crate::backends::SttHint::Name => "My name is Maria Lopez.",
        crate::backends::SttHint::Location => "I live in Chicago.",
        crate::backends::SttHint::YesNo => "Yes.",
        crate::backends::SttHint::Number => "Three years.",
        _ => "No, thank you.",
    };
    text.to_string()
}

async fn start_own_server(
    args: &LoadgenArgs,
    http: &reqwest::Client,
    deadline: Instant,
) -> anyhow::Result<Target> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let dir = std::env::temp_dir().join(format!(
        "receptionist-loadgen-{}-{}",
        std::process::id(),
        random_hex(8)
    ));
    std::fs::create_dir_all(&dir)?;
    let db_url = format!(
        "sqlite://{}?mode=rwc",
        dir.join("receptionist.db").display()
    );
    let credentials = args.secrets.credentials()?;
    let created = tokio::process::Command::new(&exe)
        .args([
            "workspace",
            "create",
            "Load Test",
            "--database-url",
            &db_url,
        ])
        .arg("--data-dir")
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("running `workspace create`")?;
    if !created.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        bail!(
            "`workspace create` failed: {}",
            String::from_utf8_lossy(&created.stderr)
        );
    }
    let api_key = String::from_utf8(created.stdout)?.trim().to_string();

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log = args
        .server_log
        .clone()
        .unwrap_or_else(|| dir.join("server.log"));
    let log_file = std::fs::File::create(&log)
        .with_context(|| format!("creating the server log {}", log.display()))?;
    let mut serve = tokio::process::Command::new(&exe);
    serve.args(["serve", "--database-url", &db_url]);
    match args.backends {
        BackendSet::Scripted => {
            serve.args(["--backends", "scripted"]);
        }
        BackendSet::Offline => {
            let models = std::path::absolute(&args.models_dir)
                .with_context(|| format!("--models-dir {}", args.models_dir.display()))?;
            serve
                .args(["--backends", "offline", "--models-dir"])
                .arg(models);
        }
    }
    // one OpenAI-compatible stand-in serves the model and the transcriptions (they share
    // OPENAI_BASE_URL)
    let stand_in = if args.llm_stand_in || args.stt_stand_in {
        let fake = crate::testing::providers::FakeOpenAi::start(&[]).await;
        serve
            .env("OPENAI_API_KEY", &fake.api_key)
            .env("OPENAI_BASE_URL", &fake.url);
        if args.llm_stand_in {
            fake.chat_responder(stand_in_model);
            fake.chat_delay(Duration::from_millis(args.llm_stand_in_delay_ms));
            serve.args(["--llm", "openai"]);
        }
        if args.stt_stand_in {
            fake.transcription_responder(stand_in_transcript);
            serve.args(["--stt", "openai"]);
        }
        Some(fake)
    } else {
        None
    };
    let tts_stand_in = if args.tts_stand_in {
        let fake = crate::testing::providers::FakeElevenLabs::start().await;
        fake.pace(Duration::from_millis(args.tts_stand_in_pace_ms));
        serve
            .args(["--tts", "elevenlabs"])
            .env("ELEVENLABS_API_KEY", &fake.api_key)
            .env("ELEVENLABS_URL", &fake.url);
        Some(fake)
    } else {
        None
    };
    let child = serve
        .arg("--data-dir")
        .arg(&dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        // replaced calls start as soon as theirs end, before the server has let go of them
        .args([
            "--max-calls",
            &(args.calls + 10.max(args.calls / 5)).to_string(),
        ])
        .args(credentials.server_flags())
        .env_remove("RECEPTIONIST_PUBLIC_URL")
        .env_remove("RECEPTIONIST_INSECURE_NO_SIGNATURE")
        .env_remove("RECEPTIONIST_MAX_CALL_SECS")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .context("starting the server")?;
    let pid = child.id();
    let own = OwnServer {
        child,
        dir,
        log,
        _stand_in: stand_in,
        _tts_stand_in: tts_stand_in,
    };
    let server = format!("http://127.0.0.1:{port}");

    let healthy_by = deadline.min(Instant::now() + Duration::from_secs(30));
    loop {
        if let Ok(r) = http.get(format!("{server}/healthz")).send().await
            && r.status().is_success()
        {
            break;
        }
        if Instant::now() >= healthy_by {
            bail!("the server never became healthy:\n{}", own.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let to = "+15550001111".to_string();
    let body = json!({
        "phone_number": to,
        "agent_name": "Chloe",
        "intro_message": "Hi, I am Chloe from ABC Staffing. Thanks for calling about our warehouse jobs.",
        "collect_location": true,
        "custom_context": "We are hiring warehouse associates in Chicago. Pay is 18 dollars per hour. Shifts start at 6 am.",
        "questions": [
            {"text": "Are you at least 18 years old?", "kind": "yes_no", "expected": "yes", "dealbreaker": true},
            {"text": "How many years of warehouse experience do you have?", "kind": "number", "expected": ">= 1"}
        ]
    });
    let resp = http
        .post(format!("{server}/api/v1/receptionists"))
        .bearer_auth(&api_key)
        .json(&body)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!(
            "creating the receptionist answered {}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    // its fixed prompts are synthesised in the background (scripted: milliseconds; Piper: about
    // a third of a second each, on every core)
    tokio::time::sleep(match args.backends {
        BackendSet::Scripted => Duration::from_millis(500),
        BackendSet::Offline => Duration::from_secs(5),
    })
    .await;
    Ok(Target {
        public: server.clone(),
        server,
        pid,
        to,
        credentials,
        api_key: Some(api_key),
        own: Some(own),
    })
}

// ---------------------------------------------------------------------------------------------
// The run

/// Run `receptionist loadgen`: print the report as one JSON line on stdout (one per level with
/// `--levels`, and their summary table on stderr).
pub async fn run(args: LoadgenArgs) -> anyhow::Result<()> {
    let Some(levels) = levels(&args)? else {
        let report = run_report(args).await?;
        println!("{report}");
        return Ok(());
    };
    let mut reports = Vec::with_capacity(levels.len());
    for level in levels {
        let mut one = args.clone();
        one.levels = None;
        one.calls = level;
        one.server_log = args
            .server_log
            .as_ref()
            .map(|p| PathBuf::from(format!("{}.{level}", p.display())));
        eprintln!("[loadgen] level {level}: {level} calls on a fresh server");
        match run_report(one).await {
            Ok(mut report) => {
                report["level"] = json!(level);
                if let Some(previous) = reports.last() {
                    let added = per_added_call(previous, &report);
                    if let Value::Object(map) = &mut report {
                        merge(map, added);
                    }
                }
                println!("{report}");
                reports.push(report);
            }
            Err(e) => {
                eprint!("{}", summary(&reports));
                return Err(e.context(format!("level {level}")));
            }
        }
    }
    eprint!("{}", summary(&reports));
    Ok(())
}

/// What each call a level added over the level before it cost in memory: the rise of the
/// server's peak over its idle size at this level, less that at the previous level (each on a
/// fresh server), divided by the calls added. What the first calls grow once (pools, caches,
/// the program's pages read in) is in both rises and cancels out, so this is the cost of a call,
/// where `rss_per_call_kib` shares the one-time growth out among however many calls there were.
fn per_added_call(previous: &Value, this: &Value) -> Value {
    let growth =
        |r: &Value, peak: &str, baseline: &str| Some(r[peak].as_f64()? - r[baseline].as_f64()?);
    let per_added = |peak: &str, baseline: &str| {
        let added = this["calls"].as_f64()? - previous["calls"].as_f64()?;
        let rise = growth(this, peak, baseline)? - growth(previous, peak, baseline)?;
        (added > 0.0).then(|| (rise / added * 10.0).round() / 10.0)
    };
    json!({
        "rss_per_added_call_kib": per_added("server_rss_peak_kib", "server_rss_baseline_kib"),
        "rss_anon_per_added_call_kib":
            per_added("server_rss_anon_peak_kib", "server_rss_anon_baseline_kib"),
    })
}

/// The `--levels` to run, if any: each at least one call, only on servers started here (a
/// running server would carry one level's memory and state into the next).
fn levels(args: &LoadgenArgs) -> anyhow::Result<Option<Vec<usize>>> {
    let Some(levels) = &args.levels else {
        return Ok(None);
    };
    anyhow::ensure!(
        args.server.is_none(),
        "--levels runs each level on a fresh server of its own: it cannot be used with --server"
    );
    anyhow::ensure!(
        !levels.is_empty(),
        "--levels needs at least one number of calls"
    );
    anyhow::ensure!(
        levels.iter().all(|&n| n > 0),
        "--levels: every level must be at least 1 call"
    );
    Ok(Some(levels.clone()))
}

/// A level whose generator ticks fired this late (p99) was limited by the generator itself.
const LAGGING_TICK_MS: f64 = 20.0;

/// The levels' reports as a table for people, with a warning under each level where the
/// generator, not the server, was the bottleneck.
fn summary(reports: &[Value]) -> String {
    let cell = |v: &Value| match v {
        Value::Number(n) => n.to_string(),
        _ => "-".to_string(),
    };
    let mut out = format!(
        "{:>6} {:>9} {:>6} {:>15} {:>13} {:>14} {:>15} {:>13} {:>16} {:>13}\n",
        "calls",
        "completed",
        "failed",
        "cpu_s/call_s",
        "rss_kib/call",
        "anon_kib/call",
        "kib/added_call",
        "playout_gaps",
        "playout_gap_max",
        "loadgen_cores"
    );
    let mut warnings = String::new();
    for r in reports {
        out += &format!(
            "{:>6} {:>9} {:>6} {:>15} {:>13} {:>14} {:>15} {:>13} {:>16} {:>13}\n",
            cell(&r["calls"]),
            cell(&r["calls_completed"]),
            cell(&r["calls_failed"]),
            cell(&r["server_cpu_s_per_call_s"]),
            cell(&r["rss_per_call_kib"]),
            cell(&r["rss_anon_per_call_kib"]),
            cell(&r["rss_per_added_call_kib"]),
            cell(&r["playout_gaps"]),
            cell(&r["playout_gap_ms_max"]),
            cell(&r["loadgen_cpu_cores_in_window"]),
        );
        if let Some(lag) = r["loadgen_tick_lag_ms_p99"]
            .as_f64()
            .filter(|&lag| lag > LAGGING_TICK_MS)
        {
            warnings += &format!(
                "warning: at {} calls the load generator's ticks lagged (p99 {lag} ms): the \
                 generator, not the server, was the bottleneck; its timing figures are suspect\n",
                cell(&r["calls"])
            );
        }
    }
    out + &warnings
}

/// Run the load and return the report.
pub async fn run_report(args: LoadgenArgs) -> anyhow::Result<Value> {
    let begun = Instant::now();
    anyhow::ensure!(args.calls > 0, "--calls must be at least 1");
    anyhow::ensure!(
        args.ramp_secs >= 0.0 && args.ramp_secs.is_finite(),
        "--ramp-secs must be 0 or more"
    );
    anyhow::ensure!(
        args.duration_secs > 0.0 && args.duration_secs.is_finite(),
        "--duration-secs must be positive"
    );
    if let Some(soak) = args.soak_secs {
        anyhow::ensure!(
            soak > 0.0 && soak.is_finite(),
            "--soak-secs must be positive"
        );
        anyhow::ensure!(
            args.sample_secs >= 0.5 && args.sample_secs.is_finite(),
            "--sample-secs must be at least 0.5"
        );
    }
    let max_secs = args.max_secs.unwrap_or(
        args.duration_secs + args.ramp_secs + args.soak_secs.map_or(60.0, |s| s + 120.0),
    );
    anyhow::ensure!(
        max_secs > 0.0 && max_secs.is_finite(),
        "--max-secs must be positive"
    );
    let hard_deadline = begun + Duration::from_secs_f64(max_secs);
    // run from elsewhere than the source tree: the recordings this binary was built with
    let fixtures = if args.fixtures.is_relative() && !args.fixtures.exists() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(&args.fixtures)
    } else {
        args.fixtures.clone()
    };
    let audio = Utterances::load(&fixtures, args.line_noise_dbfs)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()?;

    let mut target = match &args.server {
        Some(server) => {
            let url = loopback_url(server)?;
            check_resolves_to_loopback(&url).await?;
            let to = args
                .to
                .clone()
                .context("--to (the receptionist's number) is required with --server")?;
            if let Some(pid) = args.server_pid {
                anyhow::ensure!(
                    cpu_ticks(&pid.to_string()).is_some(),
                    "cannot read /proc/{pid}/stat"
                );
            } else {
                eprintln!("[loadgen] no --server-pid: server CPU and memory are not measured");
            }
            let server = server.trim_end_matches('/').to_string();
            Target {
                public: args
                    .public_url
                    .clone()
                    .unwrap_or_else(|| server.clone())
                    .trim_end_matches('/')
                    .to_string(),
                server,
                pid: args.server_pid,
                to,
                credentials: args.secrets.credentials()?,
                api_key: args.api_key.clone(),
                own: None,
            }
        }
        None => {
            eprintln!(
                "[loadgen] starting a server ({} backends)",
                match args.backends {
                    BackendSet::Scripted => "scripted",
                    BackendSet::Offline => "offline",
                }
            );
            start_own_server(&args, &http, hard_deadline).await?
        }
    };
    let result = drive(&args, &target, http, audio, begun, hard_deadline).await;
    if let Some(own) = target.own.take() {
        if result.is_err() {
            eprintln!("[loadgen] server log tail:\n{}", own.log_tail());
        }
        own.stop().await;
    }
    result
}

async fn drive(
    args: &LoadgenArgs,
    target: &Target,
    http: reqwest::Client,
    audio: Utterances,
    begun: Instant,
    hard_deadline: Instant,
) -> anyhow::Result<Value> {
    let clk_tck = clock_ticks_per_sec();
    let pid = target.pid.map(|p| p.to_string());
    let self_cpu_before = cpu_ticks("self");
    let baseline_status = pid.as_deref().and_then(read_status);
    let baseline_kib = baseline_status
        .as_deref()
        .and_then(|s| parse_status_kib(s, "VmRSS"));
    let baseline_anon_kib = baseline_status
        .as_deref()
        .and_then(|s| parse_status_kib(s, "RssAnon"));

    let ctx = Arc::new(Ctx {
        server: target.server.clone(),
        public: target.public.clone(),
        credentials: target.credentials.clone(),
        to: target.to.clone(),
        carrier: args.carrier,
        calls: args.calls,
        duration: Duration::from_secs_f64(args.duration_secs),
        reply_gap_ms: args.reply_gap_ms,
        barge_in_every: args.barge_in_every,
        hard_deadline,
        audio,
        m: Metrics::default(),
    });

    // server CPU and memory, every 500 ms
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let sampler = {
        let samples = samples.clone();
        let pid = pid.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SAMPLE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                // the server gone: stop sampling
                let Some(mut s) = take_sample(pid.as_deref()) else {
                    break;
                };
                s.active = ctx.m.active.load(Ordering::SeqCst);
                samples.lock().unwrap_or_else(|e| e.into_inner()).push(s);
            }
        })
    };

    // progress on stderr
    let soak = args.soak_secs.map(Duration::from_secs_f64);
    let progress_every = Duration::from_secs(if soak.is_some() { 30 } else { 5 });
    let progress = {
        let ctx = ctx.clone();
        let samples = samples.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(progress_every);
            every.tick().await;
            loop {
                every.tick().await;
                let m = &ctx.m;
                let rss = samples
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .last()
                    .map(|s| format!(", server RSS {} MiB", s.rss_kib / 1024))
                    .unwrap_or_default();
                eprintln!(
                    "[loadgen] {:.0} s: {} started, {} active (peak {}), {} completed, {} failed, gap p99 {} ms{rss}",
                    begun.elapsed().as_secs_f64(),
                    m.started.load(Ordering::Relaxed),
                    m.active.load(Ordering::Relaxed),
                    m.peak_active.load(Ordering::Relaxed),
                    m.completed.load(Ordering::Relaxed),
                    m.failed_total(),
                    Histogram::ms(m.gaps.percentile_us(99.0)),
                );
            }
        })
    };

    eprintln!(
        "[loadgen] {} calls to {} over {} s, {} s each{}",
        args.calls,
        target.server,
        args.ramp_secs,
        args.duration_secs,
        soak.map(|s| format!(", replaced as they end for {} s", s.as_secs_f64()))
            .unwrap_or_default()
    );
    let t0 = Instant::now();
    let replace_until = soak.map(|s| t0 + s);
    let ramp = Duration::from_secs_f64(args.ramp_secs);
    let threads = args.threads.clamp(1, args.calls);
    let mut shards = Vec::with_capacity(threads);
    for t in 0..threads {
        // call i starts at t0 + ramp * i / calls, on thread i % threads
        let starts: Vec<Instant> = (t..args.calls)
            .step_by(threads)
            .map(|i| t0 + ramp.mul_f64(i as f64 / args.calls as f64))
            .collect();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let ctx = ctx.clone();
        std::thread::Builder::new()
            .name(format!("loadgen-{t}"))
            .spawn(move || {
                let _ = tx.send(run_shard(ctx, starts, replace_until));
            })
            .context("starting a load thread")?;
        shards.push(rx);
    }
    let mut results = Vec::with_capacity(args.calls);
    for (t, rx) in shards.into_iter().enumerate() {
        match tokio::time::timeout_at(hard_deadline + Duration::from_secs(10), rx).await {
            Ok(Ok(Ok(r))) => results.extend(r),
            Ok(Ok(Err(e))) => bail!("load thread {t}: {e:#}"),
            _ => eprintln!("[loadgen] load thread {t} did not finish in time"),
        }
    }
    // calls that never reported (a stuck thread) were cut off
    for _ in results.len()..args.calls {
        ctx.m.fail(Failure::Cutoff);
    }
    let calls_done = Instant::now();
    progress.abort();
    sampler.abort();
    let final_sample = take_sample(pid.as_deref());
    let hwm_kib = pid.as_deref().and_then(|p| status_kib(p, "VmHWM"));
    let mut samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|e| e.into_inner()));
    samples.extend(final_sample);

    // server-side latencies from the API
    let mut server_added: Vec<f64> = Vec::new();
    // per stage, as the server measured each turn (`TurnLatency`)
    let mut stages: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    let mut end_reasons: BTreeMap<String, u64> = BTreeMap::new();
    if let Some(key) = &target.api_key {
        let ids: Vec<String> = results.iter().filter_map(|r| r.call_id.clone()).collect();
        // a soak's thousands of calls get time of their own, past the calls' deadline
        let fetch_by = match soak {
            Some(_) => Instant::now() + Duration::from_secs(60) + FETCH_PER_CALL * ids.len() as u32,
            None => hard_deadline.min(Instant::now() + Duration::from_secs(60)),
        };
        // let the server persist the calls' last events
        tokio::time::sleep(Duration::from_millis(500).min(fetch_by - Instant::now())).await;
        let fetches = futures_util::stream::iter(ids.into_iter().map(|id| {
            let http = http.clone();
            let url = format!("{}/api/v1/calls/{id}", target.server);
            let key = key.clone();
            async move {
                let r = http.get(url).bearer_auth(key).send().await.ok()?;
                r.json::<Value>().await.ok()
            }
        }))
        .buffer_unordered(8)
        .collect::<Vec<_>>();
        if let Ok(details) = tokio::time::timeout_at(fetch_by, fetches).await {
            for d in details.into_iter().flatten() {
                if let Some(lat) = d["latencies"].as_array() {
                    for l in lat {
                        if let (Some(t), Some(e)) =
                            (l["total_ms"].as_u64(), l["endpointing_ms"].as_u64())
                        {
                            server_added.push(t.saturating_sub(e) as f64);
                        }
                        for stage in LATENCY_STAGES {
                            if let Some(v) = l[stage].as_u64() {
                                stages.entry(stage).or_default().push(v as f64);
                            }
                        }
                    }
                }
                let reason = d["end_reason"].as_str().unwrap_or("unfinished").to_string();
                *end_reasons.entry(reason).or_default() += 1;
            }
        } else {
            eprintln!("[loadgen] fetching the server's call records ran out of time");
        }
    }
    // every completed call's records, through the API
    let records = match (&target.api_key, args.verify || soak.is_some()) {
        (Some(key), true) => Some(verify_records(&target.server, key, &http, &results).await),
        (None, true) => {
            eprintln!("[loadgen] no API key: the calls' records are not checked");
            None
        }
        _ => None,
    };
    // the soak's curve and the memory verdict
    let soak_report = soak.map(|soak| {
        let points = curve(
            &samples,
            t0,
            Duration::from_secs_f64(args.sample_secs),
            baseline_kib.filter(|_| pid.is_some()),
            clk_tck,
        );
        let warmup = args
            .warmup_secs
            .unwrap_or(args.ramp_secs + args.duration_secs);
        let verdict = memory_verdict(&points, warmup, soak.as_secs_f64(), args.flat_pct);
        json!({
            "soak_secs": soak.as_secs_f64(),
            "sample_secs": args.sample_secs,
            "curve": points.iter().map(CurvePoint::to_json).collect::<Vec<_>>(),
            "memory": verdict,
        })
    });
    server_added.sort_by(f64::total_cmp);
    let mut stage_report = serde_json::Map::new();
    for (stage, mut v) in stages {
        v.sort_by(f64::total_cmp);
        stage_report.insert(
            stage.to_string(),
            json!({"n": v.len(), "p50": percentile(&v, 50.0), "p99": percentile(&v, 99.0)}),
        );
    }

    // the CPU window: steady state, else the whole run
    let connected: Vec<(Instant, Instant)> = results.iter().filter_map(|r| r.connected).collect();
    let whole = (
        connected.iter().map(|c| c.0).min().unwrap_or(t0),
        connected.iter().map(|c| c.1).max().unwrap_or(calls_done),
    );
    let steady = match (ctx.m.all_started_at.get(), ctx.m.first_end_at.get()) {
        (Some(&a), Some(&b)) if b > a && b - a >= MIN_WINDOW => Some((a, b)),
        _ => None,
    };
    let (window, steady_state) = match steady {
        Some(w) => (w, true),
        None => (whole, false),
    };
    let cpu = cpu_over(&samples, window, &connected, clk_tck);
    let server_cpu = cpu.as_ref().filter(|_| pid.is_some());

    let m = &ctx.m;
    let peak_active = m.peak_active.load(Ordering::SeqCst);
    let peak_kib = samples
        .iter()
        .map(|s| s.rss_kib)
        .max()
        .filter(|_| pid.is_some());
    let per_call = |peak: Option<u64>, baseline: Option<u64>| match (peak, baseline) {
        (Some(p), Some(b)) if peak_active > 0 => {
            Some(round3(p.saturating_sub(b) as f64 / peak_active as f64))
        }
        _ => None,
    };
    let rss_per_call = per_call(peak_kib, baseline_kib);
    let peak_anon_kib = samples
        .iter()
        .map(|s| s.anon_kib)
        .max()
        .filter(|_| pid.is_some());
    let anon_per_call = per_call(peak_anon_kib, baseline_anon_kib);
    let self_cpu = match (self_cpu_before, cpu_ticks("self")) {
        (Some(a), Some(b)) => Some(round3(b.saturating_sub(a) as f64 / clk_tck as f64)),
        _ => None,
    };
    let failures: BTreeMap<&str, usize> = FAILURES
        .iter()
        .enumerate()
        .map(|(i, (_, name))| (*name, m.failed[i].load(Ordering::Relaxed)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let secs = |i: Instant| round3(i.saturating_duration_since(t0).as_secs_f64());
    let mut report = serde_json::Map::new();
    merge(
        &mut report,
        json!({
            "calls": args.calls,
            "calls_started": m.started.load(Ordering::Relaxed),
            "calls_connected": m.connected.load(Ordering::Relaxed),
            "calls_completed": m.completed.load(Ordering::Relaxed),
            "calls_failed": m.failed_total(),
            "failures": failures,
            "protocol_errors": m.protocol_errors.load(Ordering::Relaxed),
            "peak_concurrent_calls": peak_active,
            "ramp_secs": args.ramp_secs,
            "duration_secs": args.duration_secs,
            "run_secs": round3((calls_done - t0).as_secs_f64()),
            "server": target.server,
        }),
    );
    merge(
        &mut report,
        json!({
            "server_pid": target.pid,
            "clk_tck": clk_tck,
            "server_cpu_s_per_call_s": server_cpu.map(|c| c.per_call_s),
            "cpu_window_start_s": cpu.as_ref().map(|c| secs(c.start)),
            "cpu_window_end_s": cpu.as_ref().map(|c| secs(c.end)),
            "cpu_window_steady_state": steady_state,
            "cpu_window_server_cpu_s": server_cpu.map(|c| c.cpu_s),
            "cpu_window_call_s": cpu.as_ref().map(|c| c.call_s),
            "server_cpu_cores_in_window": server_cpu.map(|c| c.cores(c.cpu_s)),
            "loadgen_cpu_cores_in_window": cpu.as_ref().map(|c| c.cores(c.self_s)),
            "machine_busy_cores_in_window": cpu.as_ref().map(|c| c.cores(c.machine_s)),
            "machine_cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "server_rss_baseline_kib": baseline_kib,
            "server_rss_peak_kib": peak_kib,
            "server_hwm_kib": hwm_kib,
            "server_rss_anon_baseline_kib": baseline_anon_kib,
            "server_rss_anon_peak_kib": peak_anon_kib,
        }),
    );
    merge(
        &mut report,
        json!({
            "rss_per_call_kib": rss_per_call,
            "rss_anon_per_call_kib": anon_per_call,
            "agent_frames_received": m.agent_frames.load(Ordering::Relaxed),
            "marks_echoed": m.marks_echoed.load(Ordering::Relaxed),
            "clears": m.clears.load(Ordering::Relaxed),
            "jitter_gaps": m.gaps.count(),
            "jitter_gap_ms_p50": Histogram::ms(m.gaps.percentile_us(50.0)),
            "jitter_gap_ms_p99": Histogram::ms(m.gaps.percentile_us(99.0)),
            "jitter_gap_ms_max": Histogram::ms(m.gaps.max_us()),
            "late_frames": m.late_frames.load(Ordering::Relaxed),
            "playout_gaps": m.playout_gaps.count(),
            "playout_gap_ms_max": Histogram::ms(m.playout_gaps.max_us()),
            "response_latency_n": m.response.count(),
            "response_latency_ms_p50": Histogram::ms(m.response.percentile_us(50.0)),
            "response_latency_ms_p99": Histogram::ms(m.response.percentile_us(99.0)),
        }),
    );
    merge(
        &mut report,
        json!({
            "response_latency_ms_max": Histogram::ms(m.response.max_us()),
            "barge_ins": m.barge_in_clear.count() + m.barge_ins_unstopped.load(Ordering::Relaxed),
            "barge_ins_unstopped": m.barge_ins_unstopped.load(Ordering::Relaxed),
            "barge_in_clear_ms_p50": Histogram::ms(m.barge_in_clear.percentile_us(50.0)),
            "barge_in_clear_ms_p99": Histogram::ms(m.barge_in_clear.percentile_us(99.0)),
            "response_from_speech_end_ms_p50": Histogram::ms(m.response_from_speech.percentile_us(50.0)),
            "response_from_speech_end_ms_p99": Histogram::ms(m.response_from_speech.percentile_us(99.0)),
            "server_added_latency_n": server_added.len(),
            "server_added_latency_ms_p50": percentile(&server_added, 50.0),
            "server_added_latency_ms_p99": percentile(&server_added, 99.0),
            "server_added_latency_ms_max": server_added.last(),
            "server_stage_latency_ms": stage_report,
            "server_end_reasons": end_reasons,
            "first_greeting_n": m.first_audio.count(),
            "first_greeting_ms_p50": Histogram::ms(m.first_audio.percentile_us(50.0)),
            "first_greeting_ms_p99": Histogram::ms(m.first_audio.percentile_us(99.0)),
            "first_greeting_ms_max": Histogram::ms(m.first_audio.max_us()),
            "loadgen_cpu_s": self_cpu,
            "loadgen_threads": args.threads.clamp(1, args.calls),
            "loadgen_tick_lag_ms_p99": Histogram::ms(m.tick_lag.percentile_us(99.0)),
        }),
    );
    merge(
        &mut report,
        json!({
            "loadgen_tick_lag_ms_max": Histogram::ms(m.tick_lag.max_us()),
        }),
    );
    if let Some(records) = records {
        merge(&mut report, records);
    }
    if let Some(soak) = soak_report {
        merge(&mut report, soak);
    }
    let report = Value::Object(report);
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// Soak: records, curve, verdict

/// Time allowed per call for fetching a soak's records, on top of a minute.
const FETCH_PER_CALL: Duration = Duration::from_millis(20);
/// Problems reported that do not make a call's records incomplete: the stored duration is
/// counted from when the server took the stream's `start`, which a saturated machine can take
/// seconds late while the caller's audio (and so the recording) began on time.
pub const NOTE_ONLY: [&str; 1] = ["duration_mismatch"];

/// Bytes of recording per millisecond: 8 kHz, two channels, 16 bits.
const WAV_BYTES_PER_MS: u64 = 32;

/// What is missing from a completed call's records, given its `GET /api/v1/calls/{id}` body,
/// the recording's WAV header (`data` length, and the file's length) and how long the generator
/// had the call connected. Empty when complete. The recording's length is held against the
/// caller's side of the call (how long the generator had it connected) when known, else the
/// stored `duration_ms`; a stored duration off the caller's is [`NOTE_ONLY`], not a gap in the
/// records.
pub fn record_problems(
    detail: &Value,
    wav: Option<(u64, u64)>,
    connected_ms: Option<f64>,
) -> Vec<&'static str> {
    let mut problems = Vec::new();
    if detail["status"] != "completed" {
        problems.push("not_completed");
    }
    if detail["end_reason"].is_null() {
        problems.push("no_end_reason");
    }
    if detail["transcript"].as_array().is_none_or(|t| t.is_empty()) {
        problems.push("no_transcript");
    }
    if detail["recording_incomplete"] == true {
        problems.push("recording_incomplete");
    }
    let duration_ms = detail["duration_ms"].as_f64();
    if duration_ms.is_none() {
        problems.push("no_duration");
    }
    if detail["has_recording"] != true {
        problems.push("no_recording");
    } else {
        match wav {
            None => problems.push("recording_unreadable"),
            Some((data_len, file_len)) => {
                if file_len != 44 + data_len {
                    // the header was not rewritten at the end: the recording was never finished
                    problems.push("recording_unfinished");
                }
                if let Some(d) = connected_ms.or(duration_ms) {
                    let wav_ms = (data_len / WAV_BYTES_PER_MS) as f64;
                    if (wav_ms - d).abs() > 1000.0 + 0.02 * d {
                        problems.push("recording_length_mismatch");
                    }
                }
            }
        }
    }
    if let (Some(d), Some(c)) = (duration_ms, connected_ms)
        && (d - c).abs() > 2000.0 + 0.02 * c
    {
        problems.push("duration_mismatch");
    }
    problems
}

/// The call's detail and its recording's WAV header (`data` length, file length), read with a
/// range request for the 44 header bytes.
async fn fetch_records(
    http: &reqwest::Client,
    server: &str,
    key: &str,
    id: &str,
) -> Option<(Value, Option<(u64, u64)>)> {
    let r = http
        .get(format!("{server}/api/v1/calls/{id}"))
        .bearer_auth(key)
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    let detail: Value = r.json().await.ok()?;
    let Some(url) = detail["recording_url"].as_str() else {
        return Some((detail, None));
    };
    let wav = async {
        let r = http
            .get(format!("{server}{url}"))
            .bearer_auth(key)
            .header(reqwest::header::RANGE, "bytes=0-43")
            .send()
            .await
            .ok()?;
        // `bytes 0-43/LEN`, or the whole file when it is that small
        let file_len = match r.headers().get(reqwest::header::CONTENT_RANGE) {
            Some(v) => v.to_str().ok()?.rsplit('/').next()?.parse().ok()?,
            None => r.content_length()?,
        };
        let head = r.bytes().await.ok()?;
        if head.len() < 44 || &head[0..4] != b"RIFF" {
            return None;
        }
        let data_len = u32::from_le_bytes(head[40..44].try_into().ok()?) as u64;
        Some((data_len, file_len))
    }
    .await;
    Some((detail, wav))
}

/// Every completed call's records checked (calls still missing something are looked at again,
/// twice, 2 s apart, as the last records may still be landing): counts, problems by kind, and
/// the first few incomplete calls.
async fn verify_records(
    server: &str,
    key: &str,
    http: &reqwest::Client,
    results: &[CallResult],
) -> Value {
    let mut pending: Vec<(String, Option<f64>)> = results
        .iter()
        .filter(|r| r.completed)
        .filter_map(|r| {
            let ms = r.connected.map(|(a, b)| (b - a).as_secs_f64() * 1000.0);
            Some((r.call_id.clone()?, ms))
        })
        .collect();
    let unidentified = results
        .iter()
        .filter(|r| r.completed && r.call_id.is_none())
        .count();
    let checked = pending.len();
    eprintln!("[loadgen] checking the records of {checked} completed calls");
    // (call, problems, what was measured)
    let mut problems: Vec<(String, Vec<&'static str>, Value)> = Vec::new();
    // calls complete but for a note
    let mut notes: Vec<(String, Vec<&'static str>, Value)> = Vec::new();
    for pass in 0..3 {
        if pass > 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let found = futures_util::stream::iter(pending.iter().map(|(id, ms)| async move {
            let (problems, seen) = match fetch_records(http, server, key, id).await {
                Some((detail, wav)) => {
                    let seen = json!({
                        "duration_ms": detail["duration_ms"],
                        "connected_ms": ms.map(|ms| ms.round()),
                        "recording_ms": wav.map(|(data, _)| data / WAV_BYTES_PER_MS),
                        "recording_file_bytes": wav.map(|(_, len)| len),
                        "end_reason": detail["end_reason"],
                        "transcript_lines": detail["transcript"].as_array().map(Vec::len),
                    });
                    (record_problems(&detail, wav, *ms), seen)
                }
                None => (vec!["not_found"], Value::Null),
            };
            (id.clone(), *ms, problems, seen)
        }))
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
        pending.clear();
        problems.clear();
        for (id, ms, p, seen) in found {
            if p.iter().any(|k| !NOTE_ONLY.contains(k)) {
                pending.push((id.clone(), ms));
                problems.push((id, p, seen));
            } else if !p.is_empty() {
                notes.push((id, p, seen));
            }
        }
        if pending.is_empty() {
            break;
        }
    }
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    // the notes of calls otherwise complete are counted too
    for (_, p, _) in problems.iter().chain(&notes) {
        for k in p {
            *by_kind.entry(k).or_default() += 1;
        }
    }
    problems.sort_by(|a, b| a.0.cmp(&b.0));
    json!({
        "records_checked": checked,
        "records_incomplete": problems.len() + unidentified,
        "records_problems": by_kind,
        "records_incomplete_calls": problems
            .iter()
            .take(10)
            .map(|(id, p, seen)| json!({"call_id": id, "problems": p, "seen": seen}))
            .collect::<Vec<_>>(),
        "records_noted_calls": notes
            .iter()
            .take(5)
            .map(|(id, p, seen)| json!({"call_id": id, "notes": p, "seen": seen}))
            .collect::<Vec<_>>(),
    })
}

/// One point of the soak's curve.
#[derive(Debug, Clone, PartialEq)]
pub struct CurvePoint {
    pub t_s: f64,
    pub active: usize,
    pub rss_kib: u64,
    /// (RSS − the server's RSS before the run) / active calls.
    pub rss_per_call_kib: Option<f64>,
    /// Server CPU since the previous point, in cores.
    pub server_cpu_cores: Option<f64>,
    pub loadgen_cpu_cores: Option<f64>,
}

impl CurvePoint {
    fn to_json(&self) -> Value {
        json!({
            "t_s": self.t_s,
            "active": self.active,
            "rss_kib": self.rss_kib,
            "rss_per_call_kib": self.rss_per_call_kib,
            "server_cpu_cores": self.server_cpu_cores,
            "loadgen_cpu_cores": self.loadgen_cpu_cores,
        })
    }
}

/// The samples thinned to one every `every` from `t0` (the first sample at or after each mark).
fn curve(
    samples: &[Sample],
    t0: Instant,
    every: Duration,
    baseline_kib: Option<u64>,
    clk_tck: u64,
) -> Vec<CurvePoint> {
    let mut points = Vec::new();
    let mut prev: Option<&Sample> = None;
    let mut next_mark = t0;
    for s in samples.iter().filter(|s| s.at >= t0) {
        if s.at < next_mark {
            continue;
        }
        while next_mark <= s.at {
            next_mark += every;
        }
        let cores = |a: u64, b: u64, p: &Sample| {
            let secs = (s.at - p.at).as_secs_f64();
            (secs > 0.0).then(|| round3(b.saturating_sub(a) as f64 / clk_tck as f64 / secs))
        };
        points.push(CurvePoint {
            t_s: round3((s.at - t0).as_secs_f64()),
            active: s.active,
            rss_kib: s.rss_kib,
            rss_per_call_kib: baseline_kib
                .filter(|_| s.active > 0)
                .map(|b| round3(s.rss_kib.saturating_sub(b) as f64 / s.active as f64)),
            server_cpu_cores: prev
                .filter(|_| baseline_kib.is_some())
                .and_then(|p| cores(p.cpu_ticks, s.cpu_ticks, p)),
            loadgen_cpu_cores: prev.and_then(|p| cores(p.self_ticks, s.self_ticks, p)),
        });
        prev = Some(s);
    }
    points
}

/// Whether memory per call stayed flat: over the curve's steady part (after `warmup_s`, up to
/// `steady_end_s` when calls stop being replaced), the mean RSS per call of the last third
/// against the first third's. `flat` is null with fewer than 6 points.
pub fn memory_verdict(
    points: &[CurvePoint],
    warmup_s: f64,
    steady_end_s: f64,
    flat_pct: f64,
) -> Value {
    let steady: Vec<&CurvePoint> = points
        .iter()
        .filter(|p| p.t_s >= warmup_s && p.t_s <= steady_end_s && p.rss_per_call_kib.is_some())
        .collect();
    let third = steady.len() / 3;
    let mean = |ps: &[&CurvePoint], f: &dyn Fn(&CurvePoint) -> f64| {
        round3(ps.iter().map(|p| f(p)).sum::<f64>() / ps.len() as f64)
    };
    if steady.len() < 6 {
        return json!({
            "warmup_s": warmup_s,
            "steady_points": steady.len(),
            "flat_limit_pct": flat_pct,
            "flat": null,
        });
    }
    let (first, last) = (&steady[..third], &steady[steady.len() - third..]);
    let per_call = |p: &CurvePoint| p.rss_per_call_kib.unwrap_or(0.0);
    let rss = |p: &CurvePoint| p.rss_kib as f64;
    let active = |p: &CurvePoint| p.active as f64;
    let (a, b) = (mean(first, &per_call), mean(last, &per_call));
    let growth = if a > 0.0 {
        round3((b / a - 1.0) * 100.0)
    } else {
        0.0
    };
    json!({
        "warmup_s": warmup_s,
        "steady_points": steady.len(),
        "first_third_rss_per_call_kib": a,
        "last_third_rss_per_call_kib": b,
        "first_third_rss_kib": mean(first, &rss),
        "last_third_rss_kib": mean(last, &rss),
        "first_third_active": mean(first, &active),
        "last_third_active": mean(last, &active),
        "growth_pct": growth,
        "flat_limit_pct": flat_pct,
        "flat": growth <= flat_pct,
    })
}

/// (The report is built in parts: one `json!` of it all overflows the macro recursion limit.)
fn merge(report: &mut serde_json::Map<String, Value>, part: Value) {
    if let Value::Object(o) = part {
        report.extend(o);
    }
}

struct CpuWindow {
    start: Instant,
    end: Instant,
    cpu_s: f64,
    call_s: f64,
    per_call_s: f64,
    self_s: f64,
    machine_s: f64,
}

impl CpuWindow {
    /// CPU seconds over the window → cores busy on average.
    fn cores(&self, cpu_s: f64) -> f64 {
        round3(cpu_s / (self.end - self.start).as_secs_f64())
    }
}

/// Server CPU over the samples that bound `window` most tightly from inside, per second of
/// connected call within those samples.
fn cpu_over(
    samples: &[Sample],
    window: (Instant, Instant),
    calls: &[(Instant, Instant)],
    clk_tck: u64,
) -> Option<CpuWindow> {
    let a = samples.iter().find(|s| s.at >= window.0)?;
    let b = samples.iter().rev().find(|s| s.at <= window.1)?;
    if b.at <= a.at {
        return None;
    }
    let call_s: f64 = calls
        .iter()
        .map(|&(s, e)| {
            let s = s.max(a.at);
            let e = e.min(b.at);
            e.saturating_duration_since(s).as_secs_f64()
        })
        .sum();
    if call_s <= 0.0 {
        return None;
    }
    let secs = |a: u64, b: u64| b.saturating_sub(a) as f64 / clk_tck as f64;
    let cpu_s = secs(a.cpu_ticks, b.cpu_ticks);
    Some(CpuWindow {
        start: a.at,
        end: b.at,
        cpu_s: round3(cpu_s),
        call_s: round3(call_s),
        per_call_s: (cpu_s / call_s * 1e7).round() / 1e7,
        self_s: round3(secs(a.self_ticks, b.self_ticks)),
        machine_s: round3(secs(a.machine_ticks, b.machine_ticks)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_noise_is_at_its_level_under_speech_and_between_utterances() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("audio-fixtures");
        let level = |frame: &[u8; SAMPLES_8K]| {
            let mut pcm = [0i16; SAMPLES_8K];
            g711::decode_into(frame, &mut pcm);
            crate::engine::audio::level_dbfs(&pcm)
        };
        let quiet = Utterances::load(&fixtures, None).unwrap();
        assert_eq!(
            quiet.quiet(7),
            &[0xFF; SAMPLES_8K],
            "digital silence by default"
        );
        let noisy = Utterances::load(&fixtures, Some(-50.0)).unwrap();
        for n in 0..NOISE_FRAMES as u64 {
            let db = level(noisy.quiet(n));
            assert!((-51.5..-48.5).contains(&db), "frame {n}: {db} dBFS");
        }
        // the recordings' own silence (their first frame) now carries the line's noise
        let db = level(noisy.frame(0, 0).unwrap());
        assert!((-51.5..-48.5).contains(&db), "under speech: {db} dBFS");
        for bad in [-10.0, -120.0, f32::NAN] {
            let err = Utterances::load(&fixtures, Some(bad))
                .err()
                .expect("refused");
            assert!(err.to_string().contains("--line-noise-dbfs"), "{err}");
        }
    }

    #[test]
    fn only_loopback_servers() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3:80/",
            "http://localhost:8080",
            "http://LOCALHOST:1",
            "http://[::1]:8080",
        ] {
            assert!(loopback_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1:8080",
            "http://192.168.1.2:8080",
            "http://example.com:8080",
            "http://localhost.example.com:8080",
            "http://[::2]:8080",
            "http://0.0.0.0:8080",
            "https://127.0.0.1:8443",
            "ws://127.0.0.1:8080",
            "127.0.0.1:8080",
            "not a url",
        ] {
            assert!(loopback_url(bad).is_err(), "{bad}");
        }
        let e = loopback_url("http://203.0.113.9:8080")
            .unwrap_err()
            .to_string();
        assert!(e.contains("only targets loopback"), "{e}");
    }

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: LoadgenArgs,
    }

    fn parse(argv: &[&str]) -> Result<LoadgenArgs, clap::Error> {
        use clap::Parser;
        Cli::try_parse_from(std::iter::once("loadgen").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn levels_are_parsed_and_checked() {
        let a = parse(&["--levels", "10,100,500"]).unwrap();
        assert_eq!(levels(&a).unwrap(), Some(vec![10, 100, 500]));
        let a = parse(&["--levels", "3"]).unwrap();
        assert_eq!(levels(&a).unwrap(), Some(vec![3]));
        // without --levels: the one run of --calls
        let a = parse(&["--calls", "7"]).unwrap();
        assert_eq!(levels(&a).unwrap(), None);
        assert_eq!(a.calls, 7);
        // not numbers, or an empty one
        for bad in ["10,x", "10,,500", "-1", "1.5", ""] {
            assert!(parse(&["--levels", bad]).is_err(), "{bad}");
        }
        // zero calls parses, and is refused
        let a = parse(&["--levels", "10,0"]).unwrap();
        let e = levels(&a).unwrap_err().to_string();
        assert!(e.contains("at least 1"), "{e}");
        // either --levels or --calls
        let e = parse(&["--levels", "10", "--calls", "5"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict, "{e}");
        // each level on a fresh server of its own: never a running one
        let e = parse(&["--levels", "10", "--server", "http://127.0.0.1:8080"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict, "{e}");
        // (and when built without clap)
        let mut a = parse(&["--levels", "10"]).unwrap();
        a.server = Some("http://127.0.0.1:8080".into());
        let e = levels(&a).unwrap_err().to_string();
        assert!(e.contains("--server"), "{e}");
        a.server = None;
        a.levels = Some(vec![]);
        assert!(levels(&a).is_err());
    }

    #[test]
    fn summary_has_a_row_per_level_and_flags_a_lagging_generator() {
        let row = |calls: u64, lag: f64| {
            json!({
                "calls": calls,
                "calls_completed": calls,
                "calls_failed": 0,
                "server_cpu_s_per_call_s": 0.0125,
                "rss_per_call_kib": 180.5,
                "rss_anon_per_call_kib": 90.25,
                "playout_gaps": 3,
                "playout_gap_ms_max": 21.0,
                "loadgen_cpu_cores_in_window": null,
                "loadgen_tick_lag_ms_p99": lag,
            })
        };
        let s = summary(&[row(10, 1.5), row(500, 35.0)]);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 4, "{s}");
        assert!(lines[0].contains("cpu_s/call_s"), "{s}");
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "10", "10", "0", "0.0125", "180.5", "90.25", "-", "3", "21.0", "-"
            ]
        );
        assert!(lines[2].starts_with("   500"), "{s}");
        assert!(lines[3].starts_with("warning: at 500 calls"), "{s}");
        assert!(lines[3].contains("p99 35 ms"), "{s}");
        assert_eq!(summary(&[row(10, 1.5)]).lines().count(), 2);
    }

    #[test]
    fn memory_per_added_call_leaves_out_what_the_first_calls_grow_once() {
        // 10 calls grew the server 1,000 KiB over its idle size, 100 calls 7,300: the 90 calls
        // added cost 70 KiB each, though each level's own figure (100 and 73) shares out a
        // one-time 300 KiB
        let level = |calls: u64, baseline: u64, peak: u64, anon_peak: u64| {
            json!({
                "calls": calls,
                "server_rss_baseline_kib": baseline,
                "server_rss_peak_kib": peak,
                "server_rss_anon_baseline_kib": 100,
                "server_rss_anon_peak_kib": anon_peak,
            })
        };
        let ten = level(10, 30_000, 31_000, 700);
        let hundred = level(100, 30_500, 37_800, 6_100);
        let added = per_added_call(&ten, &hundred);
        assert_eq!(added["rss_per_added_call_kib"], json!(70.0));
        assert_eq!(added["rss_anon_per_added_call_kib"], json!(60.0));
        // a level without memory figures (no /proc) has none
        let added = per_added_call(&json!({"calls": 10}), &hundred);
        assert_eq!(added["rss_per_added_call_kib"], Value::Null);
        // nor does a level that adds no calls
        let added = per_added_call(&hundred, &hundred);
        assert_eq!(added["rss_per_added_call_kib"], Value::Null);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), Some(2.0));
        assert_eq!(percentile(&v, 51.0), Some(3.0));
    }

    #[test]
    fn histogram_matches_exact_percentiles_within_a_bucket() {
        let h = Histogram::new();
        assert_eq!(h.percentile_us(50.0), None);
        assert_eq!(h.max_us(), None);
        // 1..=1000 ms in 1 ms steps, then 990 values of 20 ms
        let mut exact: Vec<f64> = Vec::new();
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
            exact.push((ms * 1000) as f64);
        }
        for _ in 0..990 {
            h.record(Duration::from_micros(20_003));
        }
        exact.extend(std::iter::repeat_n(20_003.0, 990));
        exact.sort_by(f64::total_cmp);
        assert_eq!(h.count(), 1990);
        for p in [1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 100.0] {
            let want = percentile(&exact, p).unwrap();
            let got = h.percentile_us(p).unwrap() as f64;
            let resolution = if want < FINE_LIMIT_US as f64 {
                10.0
            } else {
                1000.0
            };
            assert!(
                got >= want && got - want <= resolution,
                "p{p}: {got} vs {want}"
            );
        }
        assert_eq!(h.max_us(), Some(1_000_000));
        assert_eq!(h.percentile_us(50.0), Some(20_010));
        // beyond the last bucket: counted, the maximum exact
        h.record(Duration::from_secs(1000));
        assert_eq!(h.max_us(), Some(1_000_000_000));
        assert_eq!(h.percentile_us(100.0), Some(LIMIT_US));
    }

    #[test]
    fn proc_fields() {
        let stat =
            "1234 (tokio (rt) x) S 1 1234 1234 0 -1 4194560 5000 0 0 0 250 75 0 0 20 0 4 0 100 0 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        let status = "Name:\treceptionist\nVmHWM:\t   52000 kB\nVmRSS:\t   48123 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(48123));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(52000));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        let proc_stat = "cpu  100 5 50 1000 7 3 2 1 0 0\ncpu0 50 2 25 500 3 1 1 0 0 0\n";
        assert_eq!(parse_proc_stat_busy(proc_stat), Some(161));
        assert!(machine_busy_ticks().is_some());
        // our own process is readable
        assert!(cpu_ticks("self").is_some());
        assert!(status_kib("self", "VmRSS").is_some());
        assert!(status_kib("self", "RssAnon").is_some());
    }

    #[test]
    fn cpu_window_uses_inside_samples_and_overlapping_call_time() {
        let t = Instant::now();
        let s = |secs: u64, ticks: u64| Sample {
            at: t + Duration::from_secs(secs),
            cpu_ticks: ticks,
            rss_kib: 0,
            anon_kib: 0,
            self_ticks: ticks / 2,
            machine_ticks: ticks * 2,
            active: 0,
        };
        let samples = [s(0, 0), s(2, 100), s(4, 300), s(6, 500), s(8, 900)];
        // two calls: one over the whole window, one only half of it
        let calls = [
            (t, t + Duration::from_secs(10)),
            (t + Duration::from_secs(4), t + Duration::from_secs(10)),
        ];
        let w = cpu_over(
            &samples,
            (t + Duration::from_secs(1), t + Duration::from_secs(7)),
            &calls,
            100,
        )
        .unwrap();
        // samples at 2 s and 6 s: 4 CPU seconds over 4 + 2 call-seconds
        assert_eq!(w.cpu_s, 4.0);
        assert_eq!(w.call_s, 6.0);
        assert!((w.per_call_s - 4.0 / 6.0).abs() < 1e-6);
        assert_eq!(w.cores(w.cpu_s), 1.0);
        assert_eq!(w.cores(w.self_s), 0.5);
        assert_eq!(w.cores(w.machine_s), 2.0);
        assert!(cpu_over(&samples, (t, t), &calls, 100).is_none());
    }

    /// Samples every 500 ms thinned to one per `every`; RSS per call over the baseline; CPU
    /// in cores between points.
    #[test]
    fn soak_curve_thins_samples_and_divides_by_active_calls() {
        let t = Instant::now();
        let samples: Vec<Sample> = (0..40u64)
            .map(|i| Sample {
                at: t + Duration::from_millis(500 * i),
                cpu_ticks: 50 * i, // one core at 100 ticks a second
                rss_kib: 10_000 + 100 * i,
                anon_kib: 4_000 + 100 * i,
                self_ticks: 25 * i,
                machine_ticks: 0,
                active: if i == 0 { 0 } else { 10 },
            })
            .collect();
        let points = curve(&samples, t, Duration::from_secs(5), Some(10_000), 100);
        let times: Vec<f64> = points.iter().map(|p| p.t_s).collect();
        assert_eq!(times, [0.0, 5.0, 10.0, 15.0]);
        assert_eq!(points[0].rss_per_call_kib, None, "no call active");
        assert_eq!(points[0].server_cpu_cores, None, "no previous point");
        // at 5 s (sample 10): 1,000 KiB over the baseline, 10 calls
        assert_eq!(points[1].rss_kib, 11_000);
        assert_eq!(points[1].rss_per_call_kib, Some(100.0));
        assert_eq!(points[1].server_cpu_cores, Some(1.0));
        assert_eq!(points[1].loadgen_cpu_cores, Some(0.5));
        // no server pid: no baseline, no per call or server CPU figures
        let points = curve(&samples, t, Duration::from_secs(5), None, 100);
        assert!(points.iter().all(|p| p.rss_per_call_kib.is_none()));
        assert!(points.iter().all(|p| p.server_cpu_cores.is_none()));
    }

    #[test]
    fn memory_verdict_compares_the_thirds_after_warm_up() {
        let point = |t: f64, per_call: f64| CurvePoint {
            t_s: t,
            active: 100,
            rss_kib: 50_000 + (per_call * 100.0) as u64,
            rss_per_call_kib: Some(per_call),
            server_cpu_cores: None,
            loadgen_cpu_cores: None,
        };
        // warm-up (ignored) much lower, then 200 KiB per call growing 1 KiB per point
        let mut points: Vec<CurvePoint> = (0..3).map(|i| point(i as f64, 50.0)).collect();
        points.extend((3..12).map(|i| point(i as f64, 197.0 + i as f64)));
        // after the steady end (calls draining): ignored too
        points.push(point(20.0, 900.0));
        let v = memory_verdict(&points, 3.0, 11.0, 10.0);
        assert_eq!(v["steady_points"], 9);
        assert_eq!(v["first_third_rss_per_call_kib"], 201.0);
        assert_eq!(v["last_third_rss_per_call_kib"], 207.0);
        assert_eq!(v["growth_pct"], 2.985);
        assert_eq!(v["flat"], true);
        assert_eq!(memory_verdict(&points, 3.0, 11.0, 2.0)["flat"], false);
        // a leak: per call doubling over the steady part
        let leak: Vec<CurvePoint> = (0..9)
            .map(|i| point(i as f64, 100.0 + 20.0 * i as f64))
            .collect();
        let v = memory_verdict(&leak, 0.0, 100.0, 10.0);
        assert_eq!(v["flat"], false, "{v}");
        // too short to judge
        assert_eq!(
            memory_verdict(&leak[..5], 0.0, 100.0, 10.0)["flat"],
            Value::Null
        );
    }

    #[test]
    fn record_problems_name_what_is_missing() {
        let complete = json!({
            "status": "completed",
            "end_reason": "caller_hangup",
            "duration_ms": 60_000,
            "transcript": [{"speaker": "agent", "text": "Hi"}],
            "has_recording": true,
            "recording_incomplete": false,
        });
        let wav = |ms: u64| Some((ms * WAV_BYTES_PER_MS, 44 + ms * WAV_BYTES_PER_MS));
        assert!(record_problems(&complete, wav(60_000), Some(60_100.0)).is_empty());
        // within 1 s + 2 %
        assert!(record_problems(&complete, wav(62_100), None).is_empty());
        assert_eq!(
            record_problems(&complete, wav(57_000), None),
            ["recording_length_mismatch"]
        );
        // the recording against the caller's side of the call when known
        assert!(
            record_problems(&complete, wav(65_000), Some(65_000.0)).contains(&"duration_mismatch")
        );
        assert_eq!(
            record_problems(&complete, wav(60_000), Some(65_000.0)),
            ["recording_length_mismatch", "duration_mismatch"]
        );
        assert_eq!(
            record_problems(&complete, Some((32_000, 44 + 64_000)), None),
            ["recording_unfinished", "recording_length_mismatch"]
        );
        assert_eq!(
            record_problems(&complete, None, None),
            ["recording_unreadable"]
        );
        assert_eq!(
            record_problems(&complete, wav(30_000), Some(30_000.0)),
            ["duration_mismatch"]
        );
        let mut flagged = complete.clone();
        flagged["recording_incomplete"] = json!(true);
        assert_eq!(
            record_problems(&flagged, wav(60_000), None),
            ["recording_incomplete"]
        );
        let bare = json!({
            "status": "in_progress",
            "end_reason": null,
            "duration_ms": null,
            "transcript": [],
            "has_recording": false,
        });
        assert_eq!(
            record_problems(&bare, None, None),
            [
                "not_completed",
                "no_end_reason",
                "no_transcript",
                "no_duration",
                "no_recording"
            ]
        );
    }
}
