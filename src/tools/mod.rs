//! The tools that run beside the server, not in it: `receptionist simulate` (one call, as a
//! carrier would place it, played from WAV files) and `receptionist loadgen` (many at once).
//! Both stream over the socket in the carrier's protocol through the sans-IO fake carrier
//! ([`crate::testing::FakeCarrier`]). What they share lives here: WAV files, random ids, and
//! [`place_call`], the HTTP side of placing a call, the one step that differs per carrier
//! outside the media stream.

pub mod loadgen;
pub mod simulate;

use std::path::Path;

use anyhow::{Context, bail};

use crate::engine::audio;
use crate::engine::media::Carrier;
use crate::server::twilio::signature;
use crate::testing::CallInfo;

/// `n` random lowercase hex digits (carrier-style ids).
pub fn random_hex(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16u32), 16).unwrap_or('0'))
        .collect()
}

/// A call to place: who calls whom, on which server.
#[derive(Debug, Clone)]
pub struct CallRequest<'a> {
    /// Where the server listens, e.g. `http://127.0.0.1:8080`.
    pub server: &'a str,
    /// The public base URL the server was configured with (what carriers sign).
    pub public: &'a str,
    /// The carrier credential the server checks signatures with, if any.
    pub auth_token: Option<&'a str>,
    pub to: &'a str,
    pub from: &'a str,
    pub forwarded_from: Option<&'a str>,
}

/// What the voice webhook answered.
#[derive(Debug, Clone)]
pub struct PlacedCall {
    /// The answer markup (TwiML, ...), as received.
    pub answer: String,
    /// The carrier's id for the call, as the webhook was told it.
    pub carrier_call_id: String,
    /// The media stream the answer asks for; `None` when the server did not connect one
    /// (closed or unknown number, busy).
    pub stream: Option<StreamTarget>,
}

/// Where and how to open the media stream.
#[derive(Debug, Clone)]
pub struct StreamTarget {
    /// The stream URL as the answer names it (what an upgrade signature covers).
    pub url: String,
    /// The same path on the server itself (the answer names the public host).
    pub connect_url: String,
    /// The ids and parameters the carrier's `start` will carry.
    pub info: CallInfo,
    /// Headers for the WebSocket upgrade (Twilio: its signature).
    pub headers: Vec<(String, String)>,
}

/// Why a call could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("carrier {0}: HTTP side not in this build yet")]
    NotInThisBuild(Carrier),
    #[error("the voice webhook answered {status}: {body}")]
    Webhook { status: u16, body: String },
    #[error("the voice webhook failed: {0}")]
    Http(#[from] reqwest::Error),
}

/// Whether [`place_call`] can place calls as `carrier` in this build.
pub fn http_side(carrier: Carrier) -> Result<(), PlaceError> {
    match carrier {
        Carrier::Twilio => Ok(()),
        other => Err(PlaceError::NotInThisBuild(other)),
    }
}

/// Places a call as `carrier` would: the signed voice webhook, the answer markup read for its
/// stream, and the upgrade's headers. Twilio only so far: the other carriers' HTTP sides come
/// with `server/carriers/`.
pub async fn place_call(
    http: &reqwest::Client,
    carrier: Carrier,
    req: &CallRequest<'_>,
) -> Result<PlacedCall, PlaceError> {
    http_side(carrier)?;
    let server = req.server.trim_end_matches('/');
    let public = req.public.trim_end_matches('/');
    let call_sid = format!("CA{}", random_hex(32));
    let account_sid = format!("AC{}", random_hex(32));
    let mut form: Vec<(String, String)> = vec![
        ("AccountSid".into(), account_sid.clone()),
        ("ApiVersion".into(), "2010-04-01".into()),
        ("CallSid".into(), call_sid.clone()),
        ("CallStatus".into(), "ringing".into()),
        ("Called".into(), req.to.into()),
        ("Caller".into(), req.from.into()),
        ("Direction".into(), "inbound".into()),
        ("From".into(), req.from.into()),
        ("To".into(), req.to.into()),
    ];
    if let Some(f) = req.forwarded_from {
        form.push(("ForwardedFrom".into(), f.into()));
    }
    let mut post = http.post(format!("{server}/twilio/voice")).form(&form);
    if let Some(token) = req.auth_token {
        post = post.header(
            "X-Twilio-Signature",
            signature(token, &format!("{public}/twilio/voice"), &form),
        );
    }
    let resp = post.send().await?;
    let status = resp.status();
    let answer = resp.text().await?;
    if !status.is_success() {
        return Err(PlaceError::Webhook {
            status: status.as_u16(),
            body: answer,
        });
    }
    let stream = parse_twiml_stream(&answer).map(|(url, params)| {
        let ws_server = server
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1);
        let connect_url = match url::Url::parse(&url) {
            Ok(u) => match u.query() {
                Some(q) => format!("{ws_server}{}?{q}", u.path()),
                None => format!("{ws_server}{}", u.path()),
            },
            Err(_) => url.clone(),
        };
        let headers = req
            .auth_token
            .map(|token| vec![("X-Twilio-Signature".into(), signature(token, &url, &[]))])
            .unwrap_or_default();
        StreamTarget {
            url,
            connect_url,
            info: CallInfo {
                stream_id: format!("MZ{}", random_hex(32)),
                call_id: call_sid.clone(),
                account_id: account_sid,
                from: req.from.into(),
                to: req.to.into(),
                custom_parameters: params.into_iter().collect(),
            },
            headers,
        }
    });
    Ok(PlacedCall {
        answer,
        carrier_call_id: call_sid,
        stream,
    })
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
    fn wav_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.wav");
        write_wav_8k(&p, &[1, -2, 3, 400]).unwrap();
        assert_eq!(read_wav_8k(&p).unwrap().len(), 4);
        std::fs::write(&p, b"garbage").unwrap();
        assert!(read_wav_8k(&p).is_err());
    }

    #[tokio::test]
    async fn other_carriers_are_not_placed_yet() {
        let http = reqwest::Client::new();
        let req = CallRequest {
            server: "http://127.0.0.1:9",
            public: "http://127.0.0.1:9",
            auth_token: None,
            to: "+15550001111",
            from: "+15555550100",
            forwarded_from: None,
        };
        for carrier in Carrier::ALL.into_iter().skip(1) {
            let e = place_call(&http, carrier, &req).await.unwrap_err();
            assert!(
                e.to_string().contains("HTTP side not in this build yet"),
                "{e}"
            );
        }
    }
}
