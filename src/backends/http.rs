//! What every provider request shares: a timeout per attempt, bounded retries with exponential
//! backoff on 429, 5xx and connection failures (never on other 4xx), and errors mapped to
//! [`BackendError`] without echoing credentials.

use std::time::Duration;

use super::BackendError;

/// Timeouts and retries of one provider's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Longest one attempt may take (connect, send, and the whole response).
    pub timeout: Duration,
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Longest wait between attempts (also caps a server's `Retry-After`).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(6),
            attempts: 3,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based), or the server's `Retry-After`, capped.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .backoff
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        retry_after.unwrap_or(exp).min(self.max_backoff)
    }
}

/// Whether a status is worth another attempt.
pub fn retryable(status: reqwest::StatusCode) -> bool {
    status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// A provider's HTTP client: rustls, no proxy surprises, one connection pool per backend.
pub fn client() -> Result<reqwest::Client, BackendError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| BackendError::Unavailable(format!("HTTP client: {e}")))
}

/// Send the request `build` makes, retrying as `policy` says; returns the first successful (2xx)
/// response. `what` names the request in errors ("OpenAI transcription").
pub async fn send(
    what: &str,
    policy: &RetryPolicy,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, BackendError> {
    let attempts = policy.attempts.max(1);
    let mut last = BackendError::Unavailable(format!("{what}: not attempted"));
    for attempt in 1..=attempts {
        let mut retry_after = None;
        match build().timeout(policy.timeout).send().await {
            Ok(response) if response.status().is_success() => return Ok(response),
            Ok(response) => {
                let status = response.status();
                retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                // the provider's own message helps ("model not found"), except on an auth failure,
                // where it may quote part of the key
                let body = response.text().await.unwrap_or_default();
                let detail = if matches!(status.as_u16(), 401 | 403) {
                    String::new()
                } else {
                    body.chars().take(300).collect::<String>()
                };
                let err = format!("{what}: HTTP {status}: {}", detail.trim());
                if !retryable(status) {
                    return Err(BackendError::Failed(err));
                }
                last = BackendError::Unavailable(err);
            }
            Err(e) if e.is_timeout() => last = BackendError::Timeout,
            Err(e) if e.is_connect() || e.is_request() => {
                last = BackendError::Unavailable(format!("{what}: {}", without_url(&e)));
            }
            Err(e) => return Err(BackendError::Failed(format!("{what}: {}", without_url(&e)))),
        }
        if attempt < attempts {
            let delay = policy.delay(attempt, retry_after);
            tracing::debug!(what, attempt, delay_ms = delay.as_millis() as u64, error = %last, "retrying");
            tokio::time::sleep(delay).await;
        }
    }
    Err(last)
}

/// A reqwest error's text without its URL (a URL may carry a token in its query).
pub fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Join a base URL (`https://api.openai.com/v1`, with or without a trailing slash) and a path.
pub fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// `request` with an `X-Request-Id` header when there is an id (see
/// [`super::with_request_id`]).
pub fn with_request_id(
    request: reqwest::RequestBuilder,
    id: Option<&str>,
) -> reqwest::RequestBuilder {
    match id {
        Some(id) => request.header("x-request-id", id),
        None => request,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy {
            timeout: Duration::from_secs(1),
            attempts: 5,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
        };
        assert_eq!(p.delay(1, None), Duration::from_millis(100));
        assert_eq!(p.delay(2, None), Duration::from_millis(200));
        assert_eq!(p.delay(3, None), Duration::from_millis(350));
        assert_eq!(p.delay(40, None), Duration::from_millis(350));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(30))),
            Duration::from_millis(350)
        );
        assert!(retryable(reqwest::StatusCode::TOO_MANY_REQUESTS));
        assert!(retryable(reqwest::StatusCode::BAD_GATEWAY));
        assert!(!retryable(reqwest::StatusCode::UNAUTHORIZED));
        assert!(!retryable(reqwest::StatusCode::BAD_REQUEST));
        assert_eq!(
            join("http://x/v1/", "/audio/speech"),
            "http://x/v1/audio/speech"
        );
    }
}
