//! A simulated carrier: places a call to a running server as the carrier would ([`place_call`]:
//! signed voice webhook, answer markup, authorised WebSocket upgrade), then streams in the
//! carrier's protocol through the fake carrier ([`FakeCarrier`]: `connected`/`start`, 20 ms caller
//! media, DTMF, `stop`; the agent's audio on a real-time play-out clock, marks echoed and clears
//! honoured as the carrier does), and answers each agent turn with the next caller turn (or
//! speaks over the agent: [`CallerTurn::BargeIn`]).
//!
//! Used by `receptionist simulate` and by the end-to-end tests.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{Sink, SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{CallRequest, place_call};
use crate::engine::audio::{self, g711};
use crate::engine::media::{AudioCodec, Carrier, Msg};
use crate::server::carriers::client::Credentials;
use crate::testing::{FakeCarrier, FakeCarrierError};

pub use super::{read_wav_8k, write_wav_8k};

/// One thing the caller does when the agent has finished speaking.
#[derive(Debug, Clone)]
pub enum CallerTurn {
    /// Speak: 8 kHz mono PCM.
    Audio { label: String, pcm8k: Vec<i16> },
    /// Speak over the agent: start `after` into its next speech rather than waiting for it to
    /// finish (when that speech is shorter, this is an ordinary answer).
    BargeIn {
        after: Duration,
        label: String,
        pcm8k: Vec<i16>,
    },
    /// Press a key.
    Key(char),
    /// Stay silent for this long (then go on with the next turn).
    Silence(Duration),
    /// Hang up: send `stop` and close.
    HangUp,
    /// The network drops: close the socket without `stop`.
    Drop,
}

impl CallerTurn {
    /// `key:1` → a key press; `silence:5` → 5 s silence; `barge:0.5:FILE.wav` → FILE spoken
    /// 0.5 s into the agent's next speech; `hangup`; `drop`; anything else is a WAV file.
    pub fn parse(spec: &str) -> anyhow::Result<Self> {
        if let Some(rest) = spec.strip_prefix("barge:") {
            let (secs, path) = rest.split_once(':').context("barge:SECONDS:FILE.wav")?;
            let secs: f64 = secs.parse().context("barge:SECONDS:FILE.wav")?;
            return Ok(Self::BargeIn {
                after: Duration::from_secs_f64(secs.clamp(0.0, 600.0)),
                label: path.to_string(),
                pcm8k: read_wav_8k(Path::new(path))?,
            });
        }
        if let Some(k) = spec.strip_prefix("key:") {
            let mut c = k.chars();
            match (c.next(), c.next()) {
                (Some(d), None) if d.is_ascii_digit() || d == '*' || d == '#' => {
                    return Ok(Self::Key(d));
                }
                _ => bail!("key:{k} is not a single keypad digit"),
            }
        }
        if let Some(s) = spec.strip_prefix("silence:") {
            let secs: f64 = s.parse().context("silence:SECONDS")?;
            return Ok(Self::Silence(Duration::from_secs_f64(
                secs.clamp(0.0, 600.0),
            )));
        }
        match spec {
            "hangup" => Ok(Self::HangUp),
            "drop" => Ok(Self::Drop),
            path => Ok(Self::Audio {
                label: path.to_string(),
                pcm8k: read_wav_8k(Path::new(path))?,
            }),
        }
    }
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Where the server listens, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    /// The public base URL the server was configured with (what carriers sign); default `server`.
    pub public_url: Option<String>,
    /// What the carrier signs with.
    pub credentials: Credentials,
    pub to: String,
    pub from: String,
    pub forwarded_from: Option<String>,
    pub turns: Vec<CallerTurn>,
    /// The agent counts as finished after this much silence in its playback.
    pub reply_gap: Duration,
    /// Give up after this long.
    pub max_duration: Duration,
    /// The carrier to be.
    pub carrier: Carrier,
    /// The audio codec it streams (`None`: the carrier's default).
    pub codec: Option<AudioCodec>,
    /// Print progress to stderr.
    pub verbose: bool,
    /// The agent's voice comes back on the caller's line this late and at this gain (a line's
    /// hybrid, a speakerphone), added to what the caller sends.
    pub line_echo: Option<(Duration, f32)>,
    /// Told the server's call id as soon as the webhook answers.
    pub call_id_tx: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

impl SimOptions {
    pub fn new(server: &str, to: &str, turns: Vec<CallerTurn>) -> Self {
        Self {
            server: server.trim_end_matches('/').to_string(),
            public_url: None,
            credentials: Credentials::test(),
            to: to.to_string(),
            from: "+15555550100".to_string(),
            forwarded_from: None,
            turns,
            reply_gap: Duration::from_millis(900),
            max_duration: Duration::from_secs(180),
            carrier: Carrier::Twilio,
            codec: None,
            verbose: false,
            line_echo: None,
            call_id_tx: None,
        }
    }
}

/// What happened.
#[derive(Debug, Default)]
pub struct SimOutcome {
    /// The answer markup (TwiML, NCCO, ...) the webhook answered.
    pub answer: String,
    /// The stream the answer asked for (URL, parameters, upgrade headers), if it connected one.
    pub stream: Option<super::StreamTarget>,
    /// The server's call id (from the stream parameters), if the call was connected.
    pub call_id: Option<String>,
    /// The carrier's id for the call (Twilio's CallSid, Telnyx's call control id, ...).
    pub carrier_call_id: String,
    /// What the caller heard, 8 kHz mono.
    pub heard: Vec<i16>,
    pub media_received: u64,
    pub marks_echoed: u64,
    pub clears: u64,
    /// When each `clear` arrived, and when the caller started each barge-in (ms into the call).
    pub clears_at_ms: Vec<u64>,
    pub barge_ins_at_ms: Vec<u64>,
    /// The server closed the socket (rather than the caller).
    pub server_hung_up: bool,
    /// Milliseconds from `start` to the first agent audio.
    pub first_audio_ms: Option<u64>,
    /// Messages from the server the carrier would have rejected.
    pub protocol_errors: u64,
}

/// Sends what the fake carrier wrote, in order (also the end-to-end tests' hand-driven streams).
pub async fn send_out<S>(fake: &mut FakeCarrier, tx: &mut S) -> Result<(), S::Error>
where
    S: Sink<Message> + Unpin,
{
    if fake.out().is_empty() {
        return Ok(());
    }
    for m in fake.out().iter() {
        let m = match m {
            Msg::Text(t) => Message::Text(t.to_owned().into()),
            Msg::Binary(b) => Message::Binary(b.to_vec().into()),
        };
        tx.feed(m).await?;
    }
    fake.clear_out();
    tx.flush().await
}

/// Hands what the server sent (`rx.next()`) to the fake at `now`: `None` once the socket is
/// closed, else what the fake made of it (pings and pongs are nothing to it).
pub fn receive(
    fake: &mut FakeCarrier,
    now: std::time::Instant,
    msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> Option<Result<(), FakeCarrierError>> {
    match msg?.ok()? {
        Message::Text(t) => Some(fake.handle_message(now, Msg::Text(t.as_str()))),
        Message::Binary(b) => Some(fake.handle_message(now, Msg::Binary(&b))),
        Message::Close(_) => None,
        _ => Some(Ok(())),
    }
}

/// Place one simulated call and run it to its end.
pub async fn simulate_call(opts: SimOptions) -> anyhow::Result<SimOutcome> {
    let public = opts.public_url.as_deref().unwrap_or(&opts.server);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let placed = place_call(
        &client,
        opts.carrier,
        &CallRequest {
            server: &opts.server,
            public,
            credentials: &opts.credentials,
            to: &opts.to,
            from: &opts.from,
            forwarded_from: opts.forwarded_from.as_deref(),
        },
    )
    .await
    .context("placing the call")?;
    let mut outcome = SimOutcome {
        answer: placed.answer.clone(),
        stream: placed.stream.clone(),
        carrier_call_id: placed.carrier_call_id.clone(),
        ..Default::default()
    };
    let Some(stream) = placed.stream else {
        if opts.verbose {
            eprintln!("the server did not connect a stream:\n{}", placed.answer);
        }
        return Ok(outcome);
    };
    outcome.call_id = stream.call_id();
    if let (Some(tx), Some(id)) = (&opts.call_id_tx, &outcome.call_id) {
        let _ = tx.send(id.clone());
    }

    let mut request = stream.connect_url.as_str().into_client_request()?;
    for (name, value) in &stream.headers {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())?,
            value.parse()?,
        );
    }
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .context("connecting the media stream")?;
    let (mut tx, mut rx) = ws.split();
    let codec = opts
        .codec
        .unwrap_or(crate::testing::carrier::codecs(opts.carrier)[0]);
    let started = tokio::time::Instant::now();
    let mut fake = FakeCarrier::new(opts.carrier, codec, stream.info, started.into_std())?;
    fake.connect();
    send_out(&mut fake, &mut tx).await?;

    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut turns: VecDeque<CallerTurn> = opts.turns.clone().into();
    let mut speaking: Option<(String, Vec<i16>, usize)> = None;
    let mut silence_until: Option<tokio::time::Instant> = None;
    let mut agent_idle_ms: u64 = 0;
    let mut agent_spoke_since_turn = false;
    // since when the agent has been speaking without a pause (for a barge-in)
    let mut agent_speaking_since: Option<tokio::time::Instant> = None;
    // the agent's audio as it played, a sample per 125 µs up to the last tick (for line_echo)
    let mut line: VecDeque<i16> = VecDeque::new();
    let mut line_clock: Option<std::time::Instant> = None;

    loop {
        if started.elapsed() > opts.max_duration {
            if opts.verbose {
                eprintln!("[simulator] time limit reached; hanging up");
            }
            break;
        }
        tokio::select! {
            msg = rx.next() => {
                let Some(handled) = receive(&mut fake, std::time::Instant::now(), msg) else {
                    outcome.server_hung_up = true;
                    break;
                };
                if fake.clears() > outcome.clears_at_ms.len() as u64 {
                    outcome.clears_at_ms.push(started.elapsed().as_millis() as u64);
                }
                if let Err(e) = handled {
                    outcome.protocol_errors += 1;
                    if opts.verbose {
                        eprintln!("[simulator] {e}");
                    }
                }
                if outcome.first_audio_ms.is_none() && fake.media_received() > 0 {
                    outcome.first_audio_ms = Some(started.elapsed().as_millis() as u64);
                }
                // a mark with nothing queued, or a clear's echoes
                send_out(&mut fake, &mut tx).await?;
            }
            _ = tick.tick() => {
                // play agent audio up to now, echoing the marks it reached
                let now = std::time::Instant::now();
                if let Some((delay, _)) = opts.line_echo {
                    // the next 20 ms of what played, on a clock of its own that moves 20 ms a
                    // tick as the caller's frames do (a late tick does not skip or repeat any)
                    let from = line_clock.get_or_insert(now);
                    for i in 0..audio::SAMPLES_8K as u32 {
                        line.push_back(fake.playing_at(*from + Duration::from_micros(125 * u64::from(i))));
                    }
                    *from += Duration::from_millis(20);
                    let keep = (delay.as_micros() / 125) as usize + audio::SAMPLES_8K;
                    while line.len() > keep {
                        line.pop_front();
                    }
                }
                let before = fake.heard().len();
                fake.handle_timeout(now);
                send_out(&mut fake, &mut tx).await?;
                let played = fake.heard().len() > before;
                outcome.heard.extend_from_slice(&fake.heard()[before..]);
                if played {
                    agent_idle_ms = 0;
                    agent_speaking_since.get_or_insert_with(tokio::time::Instant::now);
                    // what plays while the caller talks over it is not the agent's reply
                    if speaking.is_none() {
                        agent_spoke_since_turn = true;
                    }
                } else {
                    // keep the heard track time-aligned
                    outcome.heard.extend_from_slice(&[0i16; audio::SAMPLES_8K]);
                    if !fake.is_playing() {
                        agent_idle_ms += 20;
                    }
                    // a frame late is jitter; a pause is the end of the agent's speech
                    if agent_idle_ms >= 300 {
                        agent_speaking_since = None;
                    }
                }
                // the caller's next move once the agent has finished (or, barging in, while it speaks)
                let barge_now = matches!(
                    turns.front(),
                    Some(CallerTurn::BargeIn { after, .. })
                        if agent_speaking_since.is_some_and(|t| t.elapsed() >= *after)
                );
                if speaking.is_none()
                    && silence_until.is_none_or(|t| tokio::time::Instant::now() >= t)
                    && (barge_now
                        || (agent_spoke_since_turn
                            && agent_idle_ms >= opts.reply_gap.as_millis() as u64))
                {
                    silence_until = None;
                    match turns.pop_front() {
                        Some(CallerTurn::Audio { label, pcm8k }) => {
                            if opts.verbose {
                                eprintln!("[caller] plays {label} ({:.1} s)", pcm8k.len() as f64 / 8000.0);
                            }
                            speaking = Some((label, pcm8k, 0));
                            agent_spoke_since_turn = false;
                        }
                        Some(CallerTurn::BargeIn { label, pcm8k, .. }) => {
                            if opts.verbose {
                                eprintln!("[caller] speaks over the agent: {label}");
                            }
                            outcome.barge_ins_at_ms.push(started.elapsed().as_millis() as u64);
                            speaking = Some((label, pcm8k, 0));
                            agent_spoke_since_turn = false;
                        }
                        Some(CallerTurn::Key(d)) => {
                            if opts.verbose {
                                eprintln!("[caller] presses {d}");
                            }
                            fake.send_dtmf(d);
                            send_out(&mut fake, &mut tx).await?;
                            agent_spoke_since_turn = false;
                        }
                        Some(CallerTurn::Silence(d)) => {
                            if opts.verbose {
                                eprintln!("[caller] stays silent for {:.1} s", d.as_secs_f64());
                            }
                            silence_until = Some(tokio::time::Instant::now() + d);
                        }
                        Some(CallerTurn::HangUp) => {
                            if opts.verbose {
                                eprintln!("[caller] hangs up");
                            }
                            // Vonage has no stop: closing is the hang-up
                            fake.send_stop();
                            let _ = send_out(&mut fake, &mut tx).await;
                            let _ = tx.send(Message::Close(None)).await;
                            break;
                        }
                        Some(CallerTurn::Drop) => {
                            if opts.verbose {
                                eprintln!("[caller] the line drops");
                            }
                            break;
                        }
                        None => {}
                    }
                }
                // 20 ms of caller audio (speech or silence), as carriers send continuously
                let mut frame = [0xFFu8; audio::SAMPLES_8K];
                if let Some((_, pcm, pos)) = speaking.as_mut() {
                    let end = (*pos + audio::SAMPLES_8K).min(pcm.len());
                    for (i, s) in pcm[*pos..end].iter().enumerate() {
                        frame[i] = g711::ulaw_encode(*s);
                    }
                    *pos = end;
                    if *pos >= pcm.len() {
                        speaking = None;
                    }
                }
                if let Some((delay, gain)) = opts.line_echo {
                    // the line carries what played `delay` ago
                    let back = (delay.as_micros() / 125) as usize + audio::SAMPLES_8K;
                    let from = line.len().saturating_sub(back);
                    // through a path that smears it a little, as a line's hybrid does
                    let at = |i: usize| line.get(i).map_or(0.0, |&v| f32::from(v));
                    for (i, b) in frame.iter_mut().enumerate() {
                        let n = from + i;
                        let agent = at(n)
                            - 0.4 * n.checked_sub(3).map_or(0.0, at)
                            + 0.2 * n.checked_sub(9).map_or(0.0, at);
                        let mixed = f32::from(g711::ulaw_decode(*b)) + gain * agent;
                        *b = g711::ulaw_encode(mixed.clamp(-32768.0, 32767.0) as i16);
                    }
                }
                fake.send_audio(&frame);
                if send_out(&mut fake, &mut tx).await.is_err() {
                    outcome.server_hung_up = true;
                    break;
                }
            }
        }
    }
    outcome.media_received = fake.media_received();
    outcome.marks_echoed = fake.marks_echoed();
    outcome.clears = fake.clears();
    Ok(outcome)
}

/// `receptionist simulate`.
#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// The running server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// The server's public URL, which signatures cover (default: --server).
    #[arg(long, env = "RECEPTIONIST_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The carriers' credentials the server checks (unset: the test credentials).
    #[command(flatten)]
    pub secrets: super::CarrierSecrets,
    /// The carrier to simulate: twilio, telnyx, plivo, vonage, signalwire or exotel.
    #[arg(long, default_value = "twilio")]
    pub carrier: Carrier,
    /// The receptionist's phone number (the number called).
    #[arg(long)]
    pub to: String,
    /// The caller's number.
    #[arg(long, default_value = "+15555550100")]
    pub from: String,
    /// A workspace API key: prints the conversation as it happens from the server's transcript.
    #[arg(long, env = "RECEPTIONIST_API_KEY")]
    pub api_key: Option<String>,
    /// Where to save what the caller heard (8 kHz WAV).
    #[arg(long, default_value = "heard.wav")]
    pub out: PathBuf,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 240)]
    pub max_secs: u64,
    /// The agent's voice comes back on the caller's line this many ms late (with
    /// --line-echo-db), as a line's hybrid or a speakerphone can send it.
    #[arg(long, requires = "line_echo_db")]
    pub line_echo_ms: Option<u64>,
    /// ... this many dB below what the agent sent (e.g. -12).
    #[arg(long, requires = "line_echo_ms", allow_hyphen_values = true)]
    pub line_echo_db: Option<f32>,
    /// The caller's turns, in order: WAV files, `key:D`, `silence:SECS`, `barge:SECS:FILE.wav`,
    /// `hangup`, `drop`.
    pub turns: Vec<String>,
}

/// Run `receptionist simulate`.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let turns = args
        .turns
        .iter()
        .map(|t| CallerTurn::parse(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut opts = SimOptions::new(&args.server, &args.to, turns);
    opts.public_url = args.public_url.clone();
    opts.credentials = args.secrets.credentials()?;
    opts.from = args.from.clone();
    opts.carrier = args.carrier;
    opts.max_duration = Duration::from_secs(args.max_secs);
    opts.verbose = true;
    if let (Some(ms), Some(db)) = (args.line_echo_ms, args.line_echo_db) {
        anyhow::ensure!(db <= 0.0, "--line-echo-db is a loss: 0 or below, not {db}");
        opts.line_echo = Some((Duration::from_millis(ms), 10f32.powf(db / 20.0)));
    }
    let server = opts.server.clone();
    let api_key = args.api_key.clone();
    let (id_tx, mut id_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    opts.call_id_tx = Some(id_tx);
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    // the conversation as the server transcribed it, printed as it happens
    let printer = tokio::spawn(async move {
        let Some(key) = api_key else { return };
        let Some(id) = id_rx.recv().await else { return };
        let client = reqwest::Client::new();
        let mut printed = 0usize;
        let mut stopping = false;
        loop {
            if !stopping && stop_rx.try_recv().is_ok() {
                stopping = true;
            }
            if let Ok(resp) = client
                .get(format!("{server}/api/v1/calls/{id}"))
                .bearer_auth(&key)
                .send()
                .await
                && let Ok(v) = resp.json::<serde_json::Value>().await
            {
                let lines = v["transcript"].as_array().cloned().unwrap_or_default();
                for l in lines.iter().skip(printed) {
                    let who = if l["speaker"] == "agent" {
                        "agent "
                    } else {
                        "caller"
                    };
                    let t = l["start_ms"].as_u64().unwrap_or(0) as f64 / 1000.0;
                    let cut = if l["interrupted"] == true {
                        " [interrupted]"
                    } else {
                        ""
                    };
                    let keypad = if l["dtmf"] == true { " [keypad]" } else { "" };
                    println!(
                        "{t:7.2}s {who}: {}{cut}{keypad}",
                        l["text"].as_str().unwrap_or("")
                    );
                }
                printed = printed.max(lines.len());
                let status = v["status"].as_str().unwrap_or("");
                if status != "in_progress" && status != "accepted" && !status.is_empty() {
                    println!(
                        "call ended: {} after {:.1} s",
                        v["end_reason"].as_str().unwrap_or("?"),
                        v["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0
                    );
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    });
    let call = simulate_call(opts).await?;
    let _ = stop_tx.send(());
    if call.call_id.is_none() {
        println!("{}", call.answer);
    }
    let _ = tokio::time::timeout(Duration::from_secs(15), printer).await;
    write_wav_8k(&args.out, &call.heard)?;
    eprintln!(
        "[simulator] {} agent frames heard, {} marks echoed, {} clears; first audio after {} ms; saved {}",
        call.media_received,
        call.marks_echoed,
        call.clears,
        call.first_audio_ms
            .map(|m| m.to_string())
            .unwrap_or("-".into()),
        args.out.display()
    );
    // how soon each talk over the agent stopped it (the first clear after it began)
    for (n, &began) in call.barge_ins_at_ms.iter().enumerate() {
        let end = call.barge_ins_at_ms.get(n + 1).copied().unwrap_or(u64::MAX);
        match call.clears_at_ms.iter().find(|&&c| c >= began && c < end) {
            Some(c) => eprintln!(
                "[simulator] barge-in {}: clear {} ms after the caller began",
                n + 1,
                c - began
            ),
            None => eprintln!("[simulator] barge-in {}: no clear", n + 1),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_turn_specs() {
        assert!(matches!(
            CallerTurn::parse("key:1").unwrap(),
            CallerTurn::Key('1')
        ));
        assert!(CallerTurn::parse("key:12").is_err());
        assert!(matches!(
            CallerTurn::parse("hangup").unwrap(),
            CallerTurn::HangUp
        ));
        assert!(matches!(
            CallerTurn::parse("silence:2").unwrap(),
            CallerTurn::Silence(_)
        ));
        assert!(CallerTurn::parse("/no/such/file.wav").is_err());
        assert!(CallerTurn::parse("barge:x:/no/such/file.wav").is_err());
        let yes = concat!(env!("CARGO_MANIFEST_DIR"), "/audio-fixtures/yes.wav");
        assert!(matches!(
            CallerTurn::parse(&format!("barge:0.5:{yes}")).unwrap(),
            CallerTurn::BargeIn { after, .. } if after == Duration::from_millis(500)
        ));
    }
}
