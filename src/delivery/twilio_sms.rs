//! Text messages through Twilio's Messages REST API:
//! `POST {api_base}/2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP basic auth (account SID,
//! auth token), form fields `To`, `From`, `Body`. Twilio answers 201 with the message resource
//! (its `sid` is kept as the row's `provider_ref`); errors are JSON
//! `{"code", "message", "more_info", "status"}`.
//!
//! A 4xx other than 408 and 429 is permanent (a bad number, an unverified sender, bad
//! credentials); 408, 429, 5xx, timeouts and connection errors are retried.

use std::time::Duration;

use serde::Deserialize;

use super::{AttemptResult, read_limited, truncate};
use crate::config::{Secret, ServeConfig};
use crate::store::SmsPayload;

const TIMEOUT: Duration = Duration::from_secs(15);
const MAX_RESPONSE_BYTES: usize = 16 * 1024;

#[derive(Clone)]
pub(super) struct TwilioSms {
    http: reqwest::Client,
    api_base: String,
    /// Account SID and auth token; `None` when either is missing.
    credentials: Option<(String, Secret)>,
}

#[derive(Deserialize)]
struct MessageResource {
    sid: Option<String>,
}

#[derive(Deserialize)]
struct TwilioError {
    code: Option<i64>,
    message: Option<String>,
}

impl TwilioSms {
    pub(super) fn new(config: &ServeConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .build()?;
        let credentials = match (&config.twilio_account_sid, &config.twilio_auth_token) {
            (Some(sid), Some(token)) if !sid.trim().is_empty() && !token.expose().is_empty() => {
                Some((sid.trim().to_string(), token.clone()))
            }
            _ => None,
        };
        Ok(TwilioSms {
            http,
            api_base: config.twilio_api_base.trim_end_matches('/').to_string(),
            credentials,
        })
    }

    pub(super) async fn send(&self, p: &SmsPayload) -> AttemptResult {
        let Some((sid, token)) = &self.credentials else {
            return AttemptResult::permanent(None, "SMS is not configured");
        };
        let url = format!("{}/2010-04-01/Accounts/{sid}/Messages.json", self.api_base);
        let result = self
            .http
            .post(url)
            .basic_auth(sid, Some(token.expose()))
            .form(&[
                ("To", p.to.as_str()),
                ("From", p.from.as_str()),
                ("Body", p.body.as_str()),
            ])
            .send()
            .await;
        let response = match result {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return AttemptResult::retry(None, "timed out"),
            Err(e) if e.is_connect() => return AttemptResult::retry(None, "connection failed"),
            Err(e) => {
                return AttemptResult::retry(None, truncate(&e.without_url().to_string(), 300));
            }
        };
        let status = response.status();
        let code = Some(i64::from(status.as_u16()));
        let body = read_limited(response, MAX_RESPONSE_BYTES).await;
        if status.is_success() {
            // Accepted. Without a readable SID the message still went out: never resend it.
            let sid = serde_json::from_slice::<MessageResource>(&body)
                .ok()
                .and_then(|m| m.sid);
            return AttemptResult::Delivered {
                status_code: code,
                provider_ref: sid,
            };
        }
        let detail = match serde_json::from_slice::<TwilioError>(&body) {
            Ok(TwilioError { code, message }) => format!(
                "Twilio error {}: {}",
                code.map_or_else(|| "?".to_string(), |c| c.to_string()),
                truncate(message.as_deref().unwrap_or(""), 300)
            ),
            Err(_) => "unreadable Twilio error".to_string(),
        };
        let error = format!("HTTP {}: {detail}", status.as_u16());
        let permanent =
            status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429;
        if permanent {
            AttemptResult::permanent(code, error)
        } else {
            AttemptResult::retry(code, error)
        }
    }
}
