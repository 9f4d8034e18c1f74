//! Plain-text email through an SMTP server (lettre's async transport on tokio, TLS by rustls),
//! configured by `--smtp-url` and `--smtp-from`. One connection per message.
//!
//! A permanent reply (5xx) or an unusable address fails the row at once; a transient reply
//! (4xx), a timeout or a connection error is retried.

use std::time::Duration;

use anyhow::Context;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{AttemptResult, truncate};
use crate::config::ServeConfig;
use crate::store::EmailPayload;

const TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone)]
pub(super) struct Mailer {
    /// `None` when `--smtp-url` or `--smtp-from` is missing.
    inner: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
}

impl Mailer {
    pub(super) fn new(config: &ServeConfig) -> anyhow::Result<Self> {
        let (Some(url), Some(from)) = (&config.smtp_url, &config.smtp_from) else {
            return Ok(Mailer { inner: None });
        };
        // The URL may hold a password: never quote it in the error.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
            .map_err(|_| {
                anyhow::anyhow!(
                    "--smtp-url must be smtp://host[:port][?tls=required|opportunistic] or smtps://[user:password@]host[:port]"
                )
            })?
            .timeout(Some(TIMEOUT))
            .build();
        let from: Mailbox = from
            .parse()
            .context("--smtp-from must be an email address, e.g. Hiring <jobs@example.com>")?;
        Ok(Mailer {
            inner: Some((transport, from)),
        })
    }

    pub(super) async fn send(&self, p: &EmailPayload) -> AttemptResult {
        let Some((transport, from)) = &self.inner else {
            return AttemptResult::permanent(None, "SMTP is not configured");
        };
        let Ok(to) = p.to.parse::<Mailbox>() else {
            return AttemptResult::permanent(None, "invalid recipient address");
        };
        let message = match Message::builder()
            .from(from.clone())
            .to(to)
            .subject(p.subject.as_str())
            .header(ContentType::TEXT_PLAIN)
            .body(p.body.clone())
        {
            Ok(m) => m,
            Err(e) => return AttemptResult::permanent(None, format!("cannot build message: {e}")),
        };
        match transport.send(message).await {
            Ok(response) => AttemptResult::Delivered {
                status_code: Some(i64::from(u16::from(response.code()))),
                provider_ref: None,
            },
            Err(e) => {
                let code = e.status().map(|c| i64::from(u16::from(c)));
                let error = truncate(&format!("SMTP: {e}"), 300);
                if e.is_permanent() {
                    AttemptResult::permanent(code, error)
                } else if e.is_timeout() {
                    AttemptResult::retry(code, "timed out")
                } else {
                    AttemptResult::retry(code, error)
                }
            }
        }
    }
}
