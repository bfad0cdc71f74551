//! The HTTPS client for Microsoft Graph: an Entra token for the Graph
//! scope, the tenant's request budget, and every answer that is not a
//! page turned into what the caller does next ([`super::request::classify`]).
//!
//! Throttling (429, 503, the hunting quotas) is waited out, as long as it
//! lasts, and never counted as a failure: Graph says when to come back. A
//! refused token is fetched again once before the failure is reported. A
//! window too heavy or too large for one answer comes back as
//! [`GraphError::Split`] for the cursor to split.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::request::{classify, GraphAnswer};
use crate::retry::Backoff;
use crate::shutdown::StopSignal;
use crate::source::budget::RequestBudget;
use crate::source::entra::{EntraApp, TokenCache, TokenError};
use crate::source::http::{self, read_body, HttpSettings};

/// Largest answer read (a hunting result is capped near 124 MB).
pub const MAX_ANSWER_BYTES: u64 = 192 * 1024 * 1024;
/// The hunting quotas are counted over cycles of this length.
pub const QUOTA_CYCLE: Duration = Duration::from_secs(15 * 60);
/// Largest error body read.
const MAX_ERROR_BYTES: u64 = 64 * 1024;

/// How to reach Graph for one tenant.
#[derive(Clone, Debug)]
pub struct GraphClientConfig {
    /// `https://graph.microsoft.com`, or a national cloud's.
    pub graph_url: String,
    /// The Entra application.
    pub app: EntraApp,
    /// HTTP proxy `host:port`, already validated.
    pub proxy: Option<String>,
    /// Extra CA certificate (PEM) to trust.
    pub ca_pem: Option<String>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout (a hunting query may take 3 minutes).
    pub request_timeout: Duration,
    /// Tries for a network or server error before it is reported.
    pub max_attempts: u32,
    /// First retry delay.
    pub backoff_base: Duration,
    /// Longest retry delay (and longest `Retry-After` honoured).
    pub backoff_cap: Duration,
}

/// Why a Graph request gave no answer to use.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The window is too much for one answer: split it, after waiting
    /// `wait` (the CPU quota's cycle).
    #[error("the window is too large for one answer")]
    Split {
        /// How long to wait before the next request.
        wait: Duration,
    },
    /// The token was refused twice in a row.
    #[error("{url}: the token was refused (HTTP 401) twice: {message}")]
    InvalidToken {
        /// The URL.
        url: String,
        /// Graph's message.
        message: String,
    },
    /// The application lacks the permission this endpoint needs.
    #[error(
        "{url}: HTTP 403, the application lacks the permission {permission}: grant it to the \
         Entra application (API permissions, Microsoft Graph, application permission) and have \
         an administrator consent; Graph said: {message}"
    )]
    Forbidden {
        /// The URL.
        url: String,
        /// The permission to grant.
        permission: &'static str,
        /// Graph's message.
        message: String,
    },
    /// Graph refused the request itself (a bug in the agent's request).
    #[error("{url}: {message}")]
    Rejected {
        /// The URL.
        url: String,
        /// Status and Graph's message.
        message: String,
    },
    /// Every try failed with a network or server error.
    #[error("{url}: gave up after {attempts} tries; last error: {last}")]
    GaveUp {
        /// The URL.
        url: String,
        /// Tries made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// No token could be had.
    #[error("credentials: {0}")]
    Credentials(#[from] TokenError),
    /// The HTTP client could not be set up.
    #[error("HTTP client: {0}")]
    Setup(String),
    /// The agent is shutting down.
    #[error("stopped")]
    Stopped,
}

/// Counters for status and metrics.
#[derive(Debug, Default)]
pub struct GraphStats {
    /// Requests sent.
    pub requests: AtomicU64,
    /// 429 and 503 answers waited out.
    pub throttled: AtomicU64,
    /// Of those, the ones naming a quota.
    pub quota_waits: AtomicU64,
    /// Answers that asked for the window to be split.
    pub splits: AtomicU64,
    /// Retries after network or server errors.
    pub retries: AtomicU64,
    /// Answer bytes read.
    pub bytes: AtomicU64,
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A Graph client for one tenant.
pub struct GraphClient {
    agent: ureq::Agent,
    config: GraphClientConfig,
    token: TokenCache,
    budget: Arc<RequestBudget>,
    stats: Arc<GraphStats>,
    stop: StopSignal,
}

/// A request: GET of a URL, or POST of a JSON body.
#[derive(Clone, Copy, Debug)]
pub enum Call<'a> {
    /// `GET url`.
    Get(&'a str),
    /// `POST url` with a JSON body.
    Post(&'a str, &'a str),
}

impl Call<'_> {
    fn url(&self) -> &str {
        match self {
            Call::Get(url) | Call::Post(url, _) => url,
        }
    }
}

impl GraphClient {
    /// A client sharing `budget` with the tenant's other data types.
    pub fn new(config: GraphClientConfig, budget: Arc<RequestBudget>) -> Result<Self, GraphError> {
        let agent = http::agent(&HttpSettings {
            proxy: config.proxy.as_deref(),
            ca_pem: config.ca_pem.as_deref(),
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
        })
        .map_err(GraphError::Setup)?;
        let scope = format!("{}/.default", config.graph_url.trim_end_matches('/'));
        Ok(Self {
            agent,
            token: TokenCache::new(config.app.clone(), &scope),
            config,
            budget,
            stats: Arc::default(),
            stop: StopSignal::new(),
        })
    }

    /// Makes every wait end early when `stop` is raised.
    pub fn with_stop(mut self, stop: StopSignal) -> Self {
        self.stop = stop;
        self
    }

    /// The client's counters.
    pub fn stats(&self) -> Arc<GraphStats> {
        Arc::clone(&self.stats)
    }

    /// The Graph base URL.
    pub fn graph_url(&self) -> &str {
        self.config.graph_url.trim_end_matches('/')
    }

    fn pause(&self, delay: Duration) -> Result<(), GraphError> {
        if self.stop.sleep(delay) {
            Err(GraphError::Stopped)
        } else {
            Ok(())
        }
    }

    /// Makes `call` (an endpoint needing `permission`) until Graph answers
    /// with a page, which is read into `page` (reusing its allocation).
    pub fn fetch(
        &mut self,
        call: Call<'_>,
        permission: &'static str,
        page: &mut Vec<u8>,
    ) -> Result<(), GraphError> {
        let url = call.url().to_owned();
        let mut backoff = Backoff::new(self.config.backoff_base, self.config.backoff_cap);
        let attempts = self.config.max_attempts.max(1);
        let mut failures = 0;
        let mut refreshed = false;
        let mut last = String::new();
        loop {
            if failures >= attempts {
                return Err(GraphError::GaveUp {
                    url,
                    attempts,
                    last,
                });
            }
            self.pause(self.budget.reserve())?;
            let authorization = self.token.bearer(&self.agent)?;
            count(&self.stats.requests);
            let sent = match call {
                Call::Get(url) => self
                    .agent
                    .get(url)
                    .header("Authorization", &authorization)
                    .header("Prefer", "include-unknown-enum-members")
                    .call(),
                Call::Post(url, body) => self
                    .agent
                    .post(url)
                    .header("Authorization", &authorization)
                    .header("Content-Type", "application/json")
                    .send(body),
            };
            let mut response = match sent {
                Ok(response) => response,
                Err(error) => {
                    failures += 1;
                    count(&self.stats.retries);
                    last = format!("network error: {error}");
                    self.pause(backoff.next_delay(None))?;
                    continue;
                }
            };
            let status = response.status().as_u16();
            if (300..400).contains(&status) {
                let location = response
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok());
                return Err(GraphError::Rejected {
                    url,
                    message: format!("HTTP {status}: {}", http::redirect_message(location)),
                });
            }
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let limit = if (200..300).contains(&status) {
                MAX_ANSWER_BYTES
            } else {
                MAX_ERROR_BYTES
            };
            let mut reader = response.body_mut().with_config().limit(limit).reader();
            let read = read_body(&mut reader, page);
            if let Ok(n) = read {
                self.stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            if (200..300).contains(&status) {
                match read {
                    Ok(_) => return Ok(()),
                    Err(error) => {
                        failures += 1;
                        count(&self.stats.retries);
                        last = format!("reading the answer failed: {error}");
                        self.pause(backoff.next_delay(None))?;
                        continue;
                    }
                }
            }
            match classify(status, retry_after, page, permission) {
                GraphAnswer::Wait { wait, quota } => {
                    count(&self.stats.throttled);
                    if quota {
                        count(&self.stats.quota_waits);
                    }
                    // Retry-After is honoured up to the retry settings' cap;
                    // a quota may ask for up to its 15-minute cycle.
                    let longest = if quota {
                        self.config.backoff_cap.max(QUOTA_CYCLE)
                    } else {
                        self.config.backoff_cap
                    };
                    let wait = if wait.is_zero() {
                        backoff.next_delay(None)
                    } else {
                        wait.min(longest)
                    };
                    self.pause(wait)?;
                }
                GraphAnswer::Split { wait } => {
                    count(&self.stats.splits);
                    return Err(GraphError::Split { wait });
                }
                GraphAnswer::Unauthorized(message) => {
                    self.token.forget();
                    if refreshed {
                        return Err(GraphError::InvalidToken { url, message });
                    }
                    refreshed = true;
                }
                GraphAnswer::Forbidden {
                    permission,
                    message,
                } => {
                    return Err(GraphError::Forbidden {
                        url,
                        permission,
                        message,
                    })
                }
                GraphAnswer::ServerError(message) => {
                    failures += 1;
                    count(&self.stats.retries);
                    last = message;
                    let told = retry_after.map(Duration::from_secs);
                    self.pause(backoff.next_delay(told))?;
                }
                GraphAnswer::Refused(message) => return Err(GraphError::Rejected { url, message }),
            }
        }
    }
}
