//! Signed webhook deliveries: `POST` of the event body fixed when the event was emitted, with
//! `X-Receptionist-Signature: t=UNIX_SECONDS,v1=HEX`, HEX being the lowercase hex HMAC-SHA256,
//! keyed with the endpoint's whole secret (`whsec_...`, as UTF-8 bytes), of `"{t}.{body}"`.
//! The signature is computed at each attempt, so `t` is the attempt's time and receivers can
//! refuse replays older than a few minutes.
//!
//! No redirects are followed; at most 4 KiB of the answer is read; 10 s per request. Any 2xx
//! is delivered; any other status, a timeout or a connection error is retried.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{AttemptResult, read_limited, truncate};

/// The signature header's name.
pub const SIGNATURE_HEADER: &str = "X-Receptionist-Signature";

const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_RESPONSE_BYTES: usize = 4096;

/// The `X-Receptionist-Signature` value for `body` sent at `t` (Unix seconds) to an endpoint
/// with `secret`: `t={t},v1={lowercase hex HMAC-SHA256(secret, "{t}.{body}")}`.
pub fn sign_webhook(secret: &str, t: i64, body: &str) -> String {
    // Invariant: HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

#[derive(Clone)]
pub(super) struct WebhookSender {
    http: reqwest::Client,
}

impl WebhookSender {
    pub(super) fn new() -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .user_agent(concat!("receptionist-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WebhookSender { http })
    }

    /// One attempt at `now_ms` (the signature's `t`).
    pub(super) async fn send(
        &self,
        url: &str,
        secret: &str,
        body: &str,
        now_ms: i64,
    ) -> AttemptResult {
        let t = now_ms.div_euclid(1000);
        let result = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sign_webhook(secret, t, body))
            .body(body.to_string())
            .send()
            .await;
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out".to_string()
                } else if e.is_connect() {
                    "connection failed".to_string()
                } else {
                    truncate(&e.without_url().to_string(), 300)
                };
                return AttemptResult::retry(None, what);
            }
        };
        let status = response.status();
        let code = Some(i64::from(status.as_u16()));
        // Read (a little of) the answer so the connection can be reused.
        let answer = read_limited(response, MAX_RESPONSE_BYTES).await;
        if status.is_success() {
            AttemptResult::Delivered {
                status_code: code,
                provider_ref: None,
            }
        } else {
            let snippet = truncate(String::from_utf8_lossy(&answer).trim(), 200);
            let error = if snippet.is_empty() {
                format!("HTTP {}", status.as_u16())
            } else {
                format!("HTTP {}: {snippet}", status.as_u16())
            };
            AttemptResult::retry(code, error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_t_dot_body() {
        // Reference value computed independently:
        // printf '1700000000.{"id":"evt_1"}' | openssl dgst -sha256 -hmac whsec_test
        let sig = sign_webhook("whsec_test", 1_700_000_000, r#"{"id":"evt_1"}"#);
        assert_eq!(
            sig,
            "t=1700000000,v1=c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925"
        );
    }

    #[test]
    fn signature_depends_on_every_input() {
        let base = sign_webhook("whsec_a", 1, "{}");
        assert_ne!(base, sign_webhook("whsec_b", 1, "{}"));
        assert_ne!(base, sign_webhook("whsec_a", 2, "{}"));
        assert_ne!(base, sign_webhook("whsec_a", 1, "{ }"));
        assert!(base.starts_with("t=1,v1="));
        let hex = base.trim_start_matches("t=1,v1=");
        assert_eq!(hex.len(), 64);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }
}
