//! [`WebhookSender`]: POSTs a rendered message, reads the answer, and retries what may
//! succeed later.
//!
//! One send is: render with the clock's current time → POST with a per-attempt timeout
//! (connect, send and read the answer) → [`classify`]. A retryable failure waits a jittered
//! exponential back-off (`backoff_base_ms · 2^(retry−1)`, capped at `backoff_cap_ms`, then
//! jittered down by up to half, so the hub's bots do not hammer a recovering service in
//! lockstep) and tries again, up to `max_attempts` in all. A permanent failure stops at once.
//! The answer is a [`DeliveryReport`]; `send` never returns an error of its own.
//!
//! Cancellation: dropping the future of [`WebhookSender::send`] abandons the send between or
//! during attempts; nothing is left half-done on the hub's side.
//!
//! TLS is rustls with the `ring` provider. reqwest's rustls backend takes the process-wide
//! default provider and, without one, would panic (it is built without aws-lc), so
//! [`WebhookSender::new`] installs `ring` as the default when none is installed yet.
//! Certificates are checked against the system's store (rustls-platform-verifier).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;
use tracing::{debug, error, info, warn};

use super::classify::{DeliveryError, classify};
use super::config::{WebhookConfig, WebhookKind};
use super::message::Message;
use super::render::{Rendered, render};

/// How much of an answer is read: the bots answer with a few dozen bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Whether requests go through the proxy named by the environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyPolicy {
    /// `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` apply: hubs on government networks (政务外网)
    /// often reach the internet only through a proxy.
    FromEnvironment,
    /// Always connect directly (tests against a local server; networks without a proxy).
    Direct,
}

/// The HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    /// reqwest refused the client configuration (TLS set-up, for one).
    #[error("cannot build the webhook HTTP client: {detail}")]
    Client {
        /// The error and its causes.
        detail: String,
    },
}

/// How one send ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The service accepted the message (its code was 0, or a 2xx for `generic`).
    Delivered,
    /// Every attempt failed, or one failed permanently.
    Failed {
        /// The last attempt's error.
        error: DeliveryError,
        /// Whether that error may clear later: the attempts ran out on a retryable error, and
        /// the caller may queue the notice again. False means an operator has to act.
        retryable: bool,
    },
}

/// What one [`WebhookSender::send`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a failed delivery should be reported or queued again"]
pub struct DeliveryReport {
    /// Attempts made, the first included (at least 1).
    pub attempts: u32,
    /// Delivered, or the last error.
    pub outcome: Outcome,
    /// The HTTP status of the last attempt, if it got an answer (not after a timeout or a
    /// connection error).
    pub last_status: Option<u16>,
    /// From the first attempt's start to the end, back-offs included.
    pub elapsed_ms: u64,
}

impl DeliveryReport {
    /// Whether the message was delivered.
    pub fn is_delivered(&self) -> bool {
        self.outcome == Outcome::Delivered
    }
}

/// Sends [`Message`]s to group-chat bots. Cheap to clone (one shared connection pool); one per
/// hub is enough, whatever the number of webhooks.
#[derive(Clone, Debug)]
pub struct WebhookSender {
    client: reqwest::Client,
    /// Milliseconds since the Unix epoch, for signatures. A seam for tests.
    clock: fn() -> i64,
}

impl WebhookSender {
    /// A sender with its own connection pool. Installs rustls's `ring` provider as the process
    /// default if there is none yet (see the module docs).
    pub fn new(proxy: ProxyPolicy) -> Result<Self, SenderError> {
        infra::tls::install_default_provider();
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("hub/", env!("CARGO_PKG_VERSION")))
            // The bots never redirect; a redirect means a wrong URL, which an operator should
            // see rather than have a POST silently turned into a GET.
            .redirect(reqwest::redirect::Policy::none());
        if proxy == ProxyPolicy::Direct {
            builder = builder.no_proxy();
        }
        let client = builder.build().map_err(|e| SenderError::Client {
            detail: describe(e),
        })?;
        Ok(Self {
            client,
            clock: system_now_ms,
        })
    }

    /// The same sender reading time from `clock` (ms since the Unix epoch) to sign requests.
    pub fn with_clock(mut self, clock: fn() -> i64) -> Self {
        self.clock = clock;
        self
    }

    /// Sends `msg` to the bot `cfg` describes, retrying as `cfg` says. `cfg` should have
    /// passed [`WebhookConfig::validate`].
    pub async fn send(&self, cfg: &WebhookConfig, msg: &Message) -> DeliveryReport {
        let started = Instant::now();
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let max_attempts = cfg.max_attempts.max(1);
        let mut rng = Rng::new(&(cfg.id.as_str(), msg.case_id.as_str()));
        let mut attempts = 0;
        loop {
            attempts += 1;
            let rendered = render(cfg, msg, (self.clock)());
            let (status, result) = self.attempt(&rendered, cfg.kind, timeout).await;
            let report = |outcome| DeliveryReport {
                attempts,
                outcome,
                last_status: status,
                elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            };
            let error = match result {
                Ok(()) => {
                    info!(
                        message = "Webhook delivered.",
                        webhook = %cfg.id,
                        kind = cfg.kind.name(),
                        case = %msg.case_id,
                        attempts,
                    );
                    return report(Outcome::Delivered);
                }
                Err(error) => error,
            };
            let retryable = error.is_retryable();
            if !retryable {
                error!(
                    message = "Webhook refused the message; fix the webhook's config or the bot.",
                    webhook = %cfg.id,
                    kind = cfg.kind.name(),
                    case = %msg.case_id,
                    attempts,
                    status,
                    %error,
                );
                return report(Outcome::Failed { error, retryable });
            }
            if attempts >= max_attempts {
                warn!(
                    message = "Webhook delivery failed; attempts exhausted.",
                    webhook = %cfg.id,
                    kind = cfg.kind.name(),
                    case = %msg.case_id,
                    attempts,
                    status,
                    %error,
                );
                return report(Outcome::Failed { error, retryable });
            }
            let delay = backoff_delay(
                cfg.backoff_base_ms,
                cfg.backoff_cap_ms,
                attempts,
                rng.next(),
            );
            warn!(
                message = "Webhook attempt failed; retrying.",
                webhook = %cfg.id,
                kind = cfg.kind.name(),
                case = %msg.case_id,
                attempt = attempts,
                status,
                %error,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One POST: the answer's status (if one came) and what it means.
    async fn attempt(
        &self,
        rendered: &Rendered,
        kind: WebhookKind,
        timeout: Duration,
    ) -> (Option<u16>, Result<(), DeliveryError>) {
        let url = match reqwest::Url::parse(&rendered.url) {
            Ok(url) => url,
            Err(e) => {
                let detail = format!("the webhook URL does not parse: {e}");
                return (None, Err(DeliveryError::InvalidRequest { detail }));
            }
        };
        let mut request = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .body(rendered.body_bytes());
        for (name, value) in &rendered.headers {
            request = request.header(*name, value.as_str());
        }
        let exchange = async {
            let mut response = request.send().await.map_err(|e| (None, e))?;
            let status = response.status().as_u16();
            let body = read_head(&mut response)
                .await
                .map_err(|e| (Some(status), e))?;
            Ok::<_, (Option<u16>, reqwest::Error)>((status, body))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Err(_elapsed) => {
                let after_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
                (None, Err(DeliveryError::Timeout { after_ms }))
            }
            Ok(Err((status, e))) if e.is_builder() => {
                let detail = describe(e);
                (status, Err(DeliveryError::InvalidRequest { detail }))
            }
            Ok(Err((status, e))) => {
                let detail = describe(e);
                (status, Err(DeliveryError::Transport { detail }))
            }
            Ok(Ok((status, body))) => {
                debug!(
                    message = "Webhook answered.",
                    status,
                    body = %String::from_utf8_lossy(&body),
                );
                (Some(status), classify(kind, status, &body))
            }
        }
    }
}

/// Up to [`MAX_ANSWER_BYTES`] of the body; the rest is dropped with the connection.
async fn read_head(response: &mut reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while body.len() < MAX_ANSWER_BYTES {
        match response.chunk().await? {
            Some(chunk) => body.extend_from_slice(&chunk),
            None => break,
        }
    }
    body.truncate(MAX_ANSWER_BYTES);
    Ok(body)
}

/// A reqwest error with its causes, without the URL (its query holds the bot's key): reqwest's
/// own message is "error sending request"; the causes say what actually happened.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The pause before retry number `retry` (1 for the pause after the first attempt):
/// `base · 2^(retry−1)` capped at `cap`, less a jitter of up to half drawn from `random`.
pub(crate) fn backoff_delay(base_ms: u64, cap_ms: u64, retry: u32, random: u64) -> Duration {
    let doubling = retry.saturating_sub(1).min(30);
    let full = base_ms
        .saturating_mul(1 << doubling)
        .min(cap_ms.max(base_ms));
    let jitter = random % (full / 2 + 1);
    Duration::from_millis(full - jitter)
}

fn system_now_ms() -> i64 {
    protocol::UtcMillis::now().0
}

/// xorshift64*: plenty for spreading retries, and no dependency.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    /// Seeded from `seed` and the process's random hasher keys, so two hubs (or two sends of
    /// one case) do not draw the same pauses.
    fn new(seed: &impl std::hash::Hash) -> Self {
        Self(RandomState::new().hash_one(seed) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_the_cap_and_jitters_down_by_at_most_half() {
        let mut rng = Rng::new(&"x");
        for (retry, full) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (9, 1000)] {
            for _ in 0..50 {
                let d = backoff_delay(100, 1000, retry, rng.next()).as_millis() as u64;
                assert!(d <= full && d >= full / 2, "retry {retry}: {d} for {full}");
            }
        }
        assert_eq!(backoff_delay(100, 1000, 1, 0), Duration::from_millis(100));
        assert_eq!(backoff_delay(100, 1000, 1, 50), Duration::from_millis(50));
        // Huge retry counts and a cap below the base do not overflow or go below the base.
        assert_eq!(
            backoff_delay(100, 10, u32::MAX, 0),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn back_off_is_jittered() {
        let mut rng = Rng::new(&"y");
        let spread: std::collections::HashSet<_> = (0..20)
            .map(|_| backoff_delay(1000, 30_000, 3, rng.next()))
            .collect();
        assert!(spread.len() > 1, "no jitter: {spread:?}");
    }

    #[test]
    fn the_system_clock_reads_milliseconds_since_the_epoch() {
        // After 2024-01-01 and before 2100: catches seconds-versus-milliseconds mistakes.
        let now = system_now_ms();
        assert!(
            (1_704_067_200_000..4_102_444_800_000).contains(&now),
            "{now}"
        );
    }
}
