//! A simulated Twilio: places a call to a running server exactly as Twilio would (signed voice
//! webhook, TwiML, signed WebSocket upgrade, `connected`/`start`, 20 ms µ-law `media` frames with
//! Twilio-style sequence numbers, chunks and timestamps, `dtmf`, `stop`), plays the agent's audio on
//! a real-time playback clock, echoes marks when their audio has played (and every pending mark at
//! once on `clear`), and answers each agent turn with the next caller turn.
//!
//! Used by `receptionist simulate` and by the end-to-end tests.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::engine::audio::{self, g711};
use crate::engine::media::twilio::{self, Outbound, StartInfo};
use crate::server::twilio::signature;

/// One thing the caller does when the agent has finished speaking.
#[derive(Debug, Clone)]
pub enum CallerTurn {
    /// Speak: 8 kHz mono PCM.
    Audio { label: String, pcm8k: Vec<i16> },
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
    /// `key:1` → a key press; `silence:5` → 5 s silence; `hangup`; `drop`; anything else is a WAV file.
    pub fn parse(spec: &str) -> anyhow::Result<Self> {
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

/// Read a mono or stereo 16-bit WAV (any rate) as 8 kHz mono.
pub fn read_wav_8k(path: &Path) -> anyhow::Result<Vec<i16>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (rate, channels, data) =
        parse_wav(&bytes).with_context(|| format!("{} is not a 16-bit PCM WAV", path.display()))?;
    let mono: Vec<i16> = data
        .chunks_exact(channels as usize)
        .map(|c| (c.iter().map(|&s| s as i32).sum::<i32>() / channels as i32) as i16)
        .collect();
    Ok(audio::resample(&mono, rate, 8000))
}

fn parse_wav(bytes: &[u8]) -> anyhow::Result<(u32, u16, Vec<i16>)> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        bail!("no RIFF/WAVE header");
    }
    let mut pos = 12;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into()?) as usize;
        let body_start = pos + 8;
        let body_end = (body_start + len).min(bytes.len());
        let body = &bytes[body_start..body_end];
        if id == b"fmt " && body.len() >= 16 {
            fmt = Some((
                u16::from_le_bytes(body[0..2].try_into()?),
                u16::from_le_bytes(body[2..4].try_into()?),
                u32::from_le_bytes(body[4..8].try_into()?),
                u16::from_le_bytes(body[14..16].try_into()?),
            ));
        } else if id == b"data" {
            let (format, channels, rate, bits) = fmt.context("data before fmt")?;
            if !(format == 1 || format == 0xFFFE) || bits != 16 || channels == 0 || rate == 0 {
                bail!("only 16-bit PCM is supported (format {format}, {bits} bits)");
            }
            let samples = body
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            return Ok((rate, channels, samples));
        }
        pos = body_start + len + (len & 1);
    }
    bail!("no data chunk")
}

/// Write 8 kHz mono PCM as a WAV file.
pub fn write_wav_8k(path: &Path, pcm: &[i16]) -> anyhow::Result<()> {
    let data_len = (pcm.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + pcm.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&16000u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in pcm {
        out.extend_from_slice(&s.to_le_bytes());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    std::fs::write(path, out)?;
    Ok(())
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Where the server listens, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    /// The public base URL the server was configured with (what Twilio signs); default `server`.
    pub public_url: Option<String>,
    pub auth_token: Option<String>,
    pub to: String,
    pub from: String,
    pub forwarded_from: Option<String>,
    pub turns: Vec<CallerTurn>,
    /// The agent counts as finished after this much silence in its playback.
    pub reply_gap: Duration,
    /// Give up after this long.
    pub max_duration: Duration,
    /// Echo marks (a carrier that does not is simulated with `false`).
    pub echo_marks: bool,
    /// Print progress to stderr.
    pub verbose: bool,
    /// Told the server's call id as soon as the webhook answers.
    pub call_id_tx: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

impl SimOptions {
    pub fn new(server: &str, to: &str, turns: Vec<CallerTurn>) -> Self {
        Self {
            server: server.trim_end_matches('/').to_string(),
            public_url: None,
            auth_token: None,
            to: to.to_string(),
            from: "+15555550100".to_string(),
            forwarded_from: None,
            turns,
            reply_gap: Duration::from_millis(900),
            max_duration: Duration::from_secs(180),
            echo_marks: true,
            verbose: false,
            call_id_tx: None,
        }
    }
}

/// What happened.
#[derive(Debug, Default)]
pub struct SimOutcome {
    /// The TwiML the webhook answered.
    pub twiml: String,
    /// The server's call id (from the stream parameters), if the call was connected.
    pub call_id: Option<String>,
    pub call_sid: String,
    /// What the caller heard, 8 kHz mono.
    pub heard: Vec<i16>,
    pub media_received: u64,
    pub marks_echoed: u64,
    pub clears: u64,
    /// The server closed the socket (rather than the caller).
    pub server_hung_up: bool,
    /// Milliseconds from `start` to the first agent audio.
    pub first_audio_ms: Option<u64>,
    /// Messages from the server this simulator could not parse.
    pub protocol_errors: u64,
}

fn random_hex(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..n)
        .map(|_| format!("{:x}", rng.random_range(0..16u8)))
        .collect()
}

/// Pull `<Stream url>` and its `<Parameter>`s out of TwiML.
pub fn parse_twiml_stream(twiml: &str) -> Option<(String, Vec<(String, String)>)> {
    fn attr(tag: &str, name: &str) -> Option<String> {
        let key = format!("{name}=\"");
        let start = tag.find(&key)? + key.len();
        let end = tag[start..].find('"')? + start;
        Some(unescape(&tag[start..end]))
    }
    fn unescape(s: &str) -> String {
        s.replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    }
    let s = twiml.find("<Stream ")?;
    let tag_end = twiml[s..].find('>')? + s;
    let url = attr(&twiml[s..tag_end], "url")?;
    let mut params = Vec::new();
    let mut rest = &twiml[tag_end..];
    while let Some(p) = rest.find("<Parameter ") {
        let end = rest[p..].find("/>")? + p;
        let tag = &rest[p..end];
        if let (Some(n), Some(v)) = (attr(tag, "name"), attr(tag, "value")) {
            params.push((n, v));
        }
        rest = &rest[end..];
    }
    Some((url, params))
}

enum Playback {
    Audio([u8; audio::SAMPLES_8K]),
    Mark(String),
}

/// Place one simulated call and run it to its end.
pub async fn simulate_call(opts: SimOptions) -> anyhow::Result<SimOutcome> {
    let public = opts
        .public_url
        .clone()
        .unwrap_or_else(|| opts.server.clone());
    let public = public.trim_end_matches('/').to_string();
    let call_sid = format!("CA{}", random_hex(32));
    let account_sid = format!("AC{}", random_hex(32));
    let mut form: Vec<(String, String)> = vec![
        ("AccountSid".into(), account_sid.clone()),
        ("ApiVersion".into(), "2010-04-01".into()),
        ("CallSid".into(), call_sid.clone()),
        ("CallStatus".into(), "ringing".into()),
        ("Called".into(), opts.to.clone()),
        ("Caller".into(), opts.from.clone()),
        ("Direction".into(), "inbound".into()),
        ("From".into(), opts.from.clone()),
        ("To".into(), opts.to.clone()),
    ];
    if let Some(f) = &opts.forwarded_from {
        form.push(("ForwardedFrom".into(), f.clone()));
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut req = client
        .post(format!("{}/twilio/voice", opts.server))
        .form(&form);
    if let Some(token) = &opts.auth_token {
        req = req.header(
            "X-Twilio-Signature",
            signature(token, &format!("{public}/twilio/voice"), &form),
        );
    }
    let resp = req.send().await.context("posting the voice webhook")?;
    let status = resp.status();
    let twiml = resp.text().await?;
    if !status.is_success() {
        bail!("the voice webhook answered {status}: {twiml}");
    }
    let mut outcome = SimOutcome {
        twiml: twiml.clone(),
        call_sid: call_sid.clone(),
        ..Default::default()
    };
    let Some((stream_url, params)) = parse_twiml_stream(&twiml) else {
        if opts.verbose {
            eprintln!("the server did not connect a stream:\n{twiml}");
        }
        return Ok(outcome);
    };
    outcome.call_id = params
        .iter()
        .find(|(k, _)| k == "callId")
        .map(|(_, v)| v.clone());
    if let (Some(tx), Some(id)) = (&opts.call_id_tx, &outcome.call_id) {
        let _ = tx.send(id.clone());
    }

    // connect to the server itself, signing the public stream URL as Twilio does
    let ws_public_prefix = public
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    let ws_server = opts
        .server
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    let connect_url = if let Some(rest) = stream_url.strip_prefix(&ws_public_prefix) {
        format!("{ws_server}{rest}")
    } else {
        stream_url.clone()
    };
    let mut request = connect_url.as_str().into_client_request()?;
    if let Some(token) = &opts.auth_token {
        request.headers_mut().insert(
            "X-Twilio-Signature",
            signature(token, &stream_url, &[]).parse()?,
        );
    }
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .context("connecting the media stream")?;
    let (mut tx, mut rx) = ws.split();
    let stream_sid = format!("MZ{}", random_hex(32));
    let mut buf = String::with_capacity(512);
    twilio::write_connected(&mut buf);
    tx.send(Message::Text(buf.clone().into())).await?;
    let info = StartInfo {
        stream_sid: stream_sid.clone(),
        call_sid: call_sid.clone(),
        account_sid: account_sid.clone(),
        tracks: vec!["inbound".into()],
        encoding: "audio/x-mulaw".into(),
        sample_rate: 8000,
        channels: 1,
        custom_parameters: params.into_iter().collect(),
    };
    let mut seq: u64 = 1;
    buf.clear();
    twilio::write_start(&info, seq, &mut buf);
    tx.send(Message::Text(buf.clone().into())).await?;

    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut chunk: u64 = 0;
    let mut playback: VecDeque<Playback> = VecDeque::new();
    let mut turns: VecDeque<CallerTurn> = opts.turns.clone().into();
    let mut speaking: Option<(String, Vec<i16>, usize)> = None;
    let mut silence_until: Option<tokio::time::Instant> = None;
    let mut agent_idle_ms: u64 = 0;
    let mut agent_spoke_since_turn = false;
    let mut payload = Vec::with_capacity(1024);

    loop {
        if started.elapsed() > opts.max_duration {
            if opts.verbose {
                eprintln!("[simulator] time limit reached; hanging up");
            }
            break;
        }
        tokio::select! {
            msg = rx.next() => {
                let Some(msg) = msg else { outcome.server_hung_up = true; break };
                let msg = match msg {
                    Ok(m) => m,
                    Err(_) => { outcome.server_hung_up = true; break }
                };
                match msg {
                    Message::Text(t) => match twilio::parse_outbound(t.as_str()) {
                        Ok(Outbound::Media { payload: p }) => {
                            if twilio::decode_payload(p, &mut payload).is_err() {
                                outcome.protocol_errors += 1;
                                continue;
                            }
                            if outcome.first_audio_ms.is_none() {
                                outcome.first_audio_ms = Some(started.elapsed().as_millis() as u64);
                            }
                            for c in payload.chunks(audio::SAMPLES_8K) {
                                let mut f = [0xFFu8; audio::SAMPLES_8K];
                                f[..c.len()].copy_from_slice(c);
                                outcome.media_received += 1;
                                playback.push_back(Playback::Audio(f));
                            }
                        }
                        Ok(Outbound::Mark { name }) => playback.push_back(Playback::Mark(name.to_string())),
                        Ok(Outbound::Clear) => {
                            outcome.clears += 1;
                            // Twilio: drop buffered audio, echo every pending mark
                            let marks: Vec<String> = playback.drain(..).filter_map(|p| match p {
                                Playback::Mark(m) => Some(m),
                                Playback::Audio(_) => None,
                            }).collect();
                            for m in marks {
                                if opts.echo_marks {
                                    seq += 1;
                                    buf.clear();
                                    twilio::write_inbound_mark(&stream_sid, seq, &m, &mut buf);
                                    tx.send(Message::Text(buf.clone().into())).await?;
                                    outcome.marks_echoed += 1;
                                }
                            }
                        }
                        Ok(Outbound::Unknown { .. }) | Err(_) => outcome.protocol_errors += 1,
                    },
                    Message::Close(_) => { outcome.server_hung_up = true; break }
                    _ => {}
                }
            }
            _ = tick.tick() => {
                // play 20 ms of agent audio, then echo the marks it reached
                let mut played = false;
                if let Some(Playback::Audio(_)) = playback.front()
                    && let Some(Playback::Audio(f)) = playback.pop_front()
                {
                    for &b in f.iter() {
                        outcome.heard.push(g711::ulaw_decode(b));
                    }
                    played = true;
                }
                while let Some(Playback::Mark(_)) = playback.front() {
                    let Some(Playback::Mark(m)) = playback.pop_front() else { break };
                    if opts.echo_marks {
                        seq += 1;
                        buf.clear();
                        twilio::write_inbound_mark(&stream_sid, seq, &m, &mut buf);
                        tx.send(Message::Text(buf.clone().into())).await?;
                        outcome.marks_echoed += 1;
                    }
                }
                if played {
                    agent_idle_ms = 0;
                    agent_spoke_since_turn = true;
                } else {
                    // keep the heard track time-aligned
                    outcome.heard.extend_from_slice(&[0i16; audio::SAMPLES_8K]);
                    agent_idle_ms += 20;
                }
                // the caller's next move once the agent has finished
                if speaking.is_none()
                    && silence_until.is_none_or(|t| tokio::time::Instant::now() >= t)
                    && agent_spoke_since_turn
                    && agent_idle_ms >= opts.reply_gap.as_millis() as u64
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
                        Some(CallerTurn::Key(d)) => {
                            if opts.verbose {
                                eprintln!("[caller] presses {d}");
                            }
                            seq += 1;
                            buf.clear();
                            twilio::write_inbound_dtmf(&stream_sid, seq, d, &mut buf);
                            tx.send(Message::Text(buf.clone().into())).await?;
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
                            seq += 1;
                            buf.clear();
                            twilio::write_stop(&stream_sid, &account_sid, &call_sid, seq, &mut buf);
                            let _ = tx.send(Message::Text(buf.clone().into())).await;
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
                // 20 ms of caller audio (speech or silence), as Twilio sends continuously
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
                seq += 1;
                chunk += 1;
                buf.clear();
                twilio::write_inbound_media(&stream_sid, seq, chunk, (chunk - 1) * 20, &frame, &mut buf);
                if tx.send(Message::Text(buf.clone().into())).await.is_err() {
                    outcome.server_hung_up = true;
                    break;
                }
            }
        }
    }
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
    /// The Twilio auth token the server checks signatures with.
    #[arg(long, env = "TWILIO_AUTH_TOKEN")]
    pub auth_token: Option<String>,
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
    /// The caller's turns, in order: WAV files, `key:D`, `silence:SECS`, `hangup`, `drop`.
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
    opts.auth_token = args.auth_token.clone();
    opts.from = args.from.clone();
    opts.max_duration = Duration::from_secs(args.max_secs);
    opts.verbose = true;
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
        println!("{}", call.twiml);
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twiml_stream_and_parameters() {
        let t = r#"<?xml version="1.0"?><Response><Connect><Stream url="wss://x.example/twilio/media"><Parameter name="callId" value="abc"/><Parameter name="token" value="a&amp;b"/></Stream></Connect></Response>"#;
        let (url, p) = parse_twiml_stream(t).unwrap();
        assert_eq!(url, "wss://x.example/twilio/media");
        assert_eq!(
            p,
            vec![
                ("callId".into(), "abc".into()),
                ("token".into(), "a&b".into())
            ]
        );
        assert!(parse_twiml_stream("<Response><Say>closed</Say><Hangup/></Response>").is_none());
    }

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
    }

    #[test]
    fn wav_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.wav");
        write_wav_8k(&p, &[1, -2, 3, 400]).unwrap();
        assert_eq!(read_wav_8k(&p).unwrap().len(), 4);
        std::fs::write(&p, b"garbage").unwrap();
        assert!(read_wav_8k(&p).is_err());
    }
}
