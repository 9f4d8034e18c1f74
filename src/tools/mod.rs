//! The tools that run beside the server, not in it: `receptionist simulate` (one call, as a
//! carrier would place it, played from WAV files), `receptionist loadgen` (many at once) and
//! `receptionist transcribe` (what an offline recogniser hears in WAV files) and `receptionist
//! verify` (which calls' records are incomplete).
//! Both stream over the socket in the carrier's protocol through the sans-IO fake carrier
//! ([`crate::testing::FakeCarrier`]). What they share lives here: WAV files, random ids, and
//! [`place_call`], the HTTP side of placing a call, the one step that differs per carrier
//! outside the media stream.

pub mod loadgen;
pub mod simulate;
pub mod transcribe;
pub mod verify;

use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine as _;

use crate::engine::audio;
use crate::engine::media::Carrier;
use crate::server::carriers::client::{
    CarrierAction, Credentials, InboundCall, media_headers, parse_answer, voice_request,
};
use crate::testing::CallInfo;

/// `n` random lowercase hex digits (carrier-style ids).
pub fn random_hex(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16u32), 16).unwrap_or('0'))
        .collect()
}

/// The carriers' credentials the tools sign with: the same names as `serve`'s flags and
/// environment, the carrier's half of each (Telnyx: the private key whose public half the server
/// has). Unset ones are the test credentials ([`Credentials::test`]), which is what `loadgen`
/// gives a server it starts itself.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CarrierSecrets {
    /// Twilio auth token the server checks signatures with.
    #[arg(
        long = "twilio-auth-token",
        visible_alias = "auth-token",
        env = "TWILIO_AUTH_TOKEN",
        hide_env_values = true
    )]
    pub twilio_auth_token: Option<String>,
    /// Telnyx signing key: the base64 32-byte Ed25519 private key whose public key the server has
    /// as TELNYX_PUBLIC_KEY.
    #[arg(long, env = "TELNYX_SIGNING_KEY", hide_env_values = true)]
    pub telnyx_signing_key: Option<String>,
    /// Plivo auth token (X-Plivo-Signature-V3).
    #[arg(long, env = "PLIVO_AUTH_TOKEN", hide_env_values = true)]
    pub plivo_auth_token: Option<String>,
    /// Vonage signature secret (the webhook JWT).
    #[arg(long, env = "VONAGE_SIGNATURE_SECRET", hide_env_values = true)]
    pub vonage_signature_secret: Option<String>,
    /// SignalWire signing key (X-SignalWire-Signature).
    #[arg(long, env = "SIGNALWIRE_SIGNING_KEY", hide_env_values = true)]
    pub signalwire_signing_key: Option<String>,
    /// Exotel stream token (basic auth on the webhook, the token in the stream URL).
    #[arg(long, env = "EXOTEL_STREAM_TOKEN", hide_env_values = true)]
    pub exotel_stream_token: Option<String>,
}

impl CarrierSecrets {
    /// The credentials to sign with: the given ones over the test ones.
    pub fn credentials(&self) -> anyhow::Result<Credentials> {
        let test = Credentials::test();
        let telnyx_signing_key = match &self.telnyx_signing_key {
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .context("--telnyx-signing-key must be 32 bytes in base64")?,
            None => test.telnyx_signing_key,
        };
        let or = |given: &Option<String>, test: String| given.clone().unwrap_or(test);
        Ok(Credentials {
            twilio_auth_token: or(&self.twilio_auth_token, test.twilio_auth_token),
            telnyx_signing_key,
            plivo_auth_token: or(&self.plivo_auth_token, test.plivo_auth_token),
            vonage_signature_secret: or(
                &self.vonage_signature_secret,
                test.vonage_signature_secret,
            ),
            signalwire_signing_key: or(&self.signalwire_signing_key, test.signalwire_signing_key),
            exotel_stream_token: or(&self.exotel_stream_token, test.exotel_stream_token),
        })
    }
}

/// A call to place: who calls whom, on which server.
#[derive(Clone)]
pub struct CallRequest<'a> {
    /// Where the server listens, e.g. `http://127.0.0.1:8080`.
    pub server: &'a str,
    /// The public base URL the server was configured with (what carriers sign).
    pub public: &'a str,
    /// What the carrier signs with.
    pub credentials: &'a Credentials,
    pub to: &'a str,
    pub from: &'a str,
    pub forwarded_from: Option<&'a str>,
}

/// What the voice webhook answered.
#[derive(Debug, Clone)]
pub struct PlacedCall {
    /// The answer markup (TwiML, NCCO, ...), as received.
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

impl StreamTarget {
    /// The server's id for the call: a stream parameter, or in the stream URL's query (Plivo's
    /// `extraHeaders` carry only the token).
    pub fn call_id(&self) -> Option<String> {
        self.info
            .custom_parameters
            .get("callId")
            .cloned()
            .or_else(|| {
                let u = url::Url::parse(&self.url).ok()?;
                u.query_pairs()
                    .find(|(k, _)| k == "callId")
                    .map(|(_, v)| v.into_owned())
            })
    }
}

/// Why a call could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("the voice webhook answered {status}: {body}")]
    Webhook { status: u16, body: String },
    #[error("the voice webhook's answer is not what the carrier expects ({reason}): {body}")]
    Answer { reason: String, body: String },
    #[error("the voice webhook failed: {0}")]
    Http(#[from] reqwest::Error),
}

/// Places a call as `carrier` would: the signed voice webhook
/// ([`voice_request`]), its answer read as the carrier reads it ([`parse_answer`]), and the
/// stream to open with the upgrade's headers ([`media_headers`]).
pub async fn place_call(
    http: &reqwest::Client,
    carrier: Carrier,
    req: &CallRequest<'_>,
) -> Result<PlacedCall, PlaceError> {
    let server = req.server.trim_end_matches('/');
    let mut call = InboundCall::new(carrier, req.to, req.from);
    call.forwarded_from = req.forwarded_from.map(String::from);
    let now_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let signed = voice_request(carrier, req.public, req.credentials, &call, now_secs);
    let url = format!("{server}{}", signed.path_and_query());
    let mut builder = match signed.method {
        "GET" => http.get(&url),
        _ => http.post(&url).body(signed.body.clone()),
    };
    for (name, value) in &signed.headers {
        builder = builder.header(name, value);
    }
    let resp = builder.send().await?;
    let status = resp.status().as_u16();
    let answer = resp.text().await?;
    // a refused request (a bad signature) is an error, not the carrier's hang-up
    if (400..500).contains(&status) {
        return Err(PlaceError::Webhook {
            status,
            body: answer,
        });
    }
    let plan = match parse_answer(carrier, status, &answer) {
        Ok(CarrierAction::Stream(plan)) => plan,
        Ok(CarrierAction::HangUp { .. }) => {
            return Ok(PlacedCall {
                answer,
                carrier_call_id: call.carrier_call_id,
                stream: None,
            });
        }
        Err(_) if !(200..300).contains(&status) => {
            return Err(PlaceError::Webhook {
                status,
                body: answer,
            });
        }
        Err(reason) => {
            return Err(PlaceError::Answer {
                reason,
                body: answer,
            });
        }
    };
    let ws_server = server
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    let connect_url = match url::Url::parse(&plan.url) {
        Ok(u) => match u.query() {
            Some(q) => format!("{ws_server}{}?{q}", u.path()),
            None => format!("{ws_server}{}", u.path()),
        },
        Err(_) => plan.url.clone(),
    };
    let headers = media_headers(carrier, &plan, req.credentials);
    let stream = StreamTarget {
        connect_url,
        info: CallInfo {
            stream_id: format!("MZ{}", random_hex(32)),
            call_id: call.carrier_call_id.clone(),
            account_id: format!("AC{}", random_hex(32)),
            from: call.from.clone(),
            to: call.to.clone(),
            custom_parameters: plan.parameters.clone(),
        },
        headers,
        url: plan.url,
    };
    Ok(PlacedCall {
        answer,
        carrier_call_id: call.carrier_call_id,
        stream: Some(stream),
    })
}

/// Read a 16-bit WAV (any rate, channels averaged): its sample rate and mono samples.
pub fn read_wav(path: &Path) -> anyhow::Result<(u32, Vec<i16>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (rate, channels, data) =
        parse_wav(&bytes).with_context(|| format!("{} is not a 16-bit PCM WAV", path.display()))?;
    let mono: Vec<i16> = data
        .chunks_exact(channels as usize)
        .map(|c| (c.iter().map(|&s| s as i32).sum::<i32>() / channels as i32) as i16)
        .collect();
    Ok((rate, mono))
}

/// Read a mono or stereo 16-bit WAV (any rate) as 8 kHz mono.
pub fn read_wav_8k(path: &Path) -> anyhow::Result<Vec<i16>> {
    let (rate, mono) = read_wav(path)?;
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
    let out = crate::backends::wav::encode(pcm, 8000);
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
    fn wav_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.wav");
        write_wav_8k(&p, &[1, -2, 3, 400]).unwrap();
        assert_eq!(read_wav_8k(&p).unwrap().len(), 4);
        std::fs::write(&p, b"garbage").unwrap();
        assert!(read_wav_8k(&p).is_err());
    }

    #[test]
    fn secrets_default_to_the_test_credentials() {
        let mut secrets = CarrierSecrets {
            plivo_auth_token: Some("given".into()),
            ..Default::default()
        };
        let creds = secrets.credentials().unwrap();
        assert_eq!(creds.plivo_auth_token, "given");
        assert_eq!(
            creds.twilio_auth_token,
            Credentials::test().twilio_auth_token
        );
        assert_eq!(
            creds.telnyx_public_key(),
            Credentials::test().telnyx_public_key()
        );
        secrets.telnyx_signing_key =
            Some(base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
        assert_eq!(secrets.credentials().unwrap().telnyx_signing_key, [7u8; 32]);
        // the README's server example
        assert_eq!(
            Credentials::test().telnyx_public_key(),
            "GX9rI+FshTLGq8g4+s1ep4m+DHaykgM0A5v6iz02jWE="
        );
        secrets.telnyx_signing_key = Some("c2hvcnQ=".into());
        assert!(secrets.credentials().is_err());
    }
}
