//! The HTTPS client for the list endpoints: credentials, retries, timeouts,
//! the shared request budget, and an optional HTTP proxy.
//!
//! Every failure is classified once, here. A rejected token is reported at
//! once (retrying cannot fix it); 429, 5xx, network errors and pages that do
//! not parse are retried with backoff; other 4xx answers mean the request
//! itself is wrong (a bad filter) and are reported with the server's words.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::data_type::DataType;
use crate::retry::Backoff;
use crate::shutdown::StopSignal;
use crate::source::budget::RequestBudget;
pub use crate::source::entra::Secret;
use crate::source::entra::{EntraApp, SecretError, TokenCache, TokenError};
use crate::source::http::{self, read_body, HttpSettings};

/// Entra scope for the Defender for Cloud Apps API.
pub const ENTRA_SCOPE: &str = "05a65629-4c1b-48c1-a78b-804c4abdd4af/.default";
/// Entra login host used unless configured (tests point it elsewhere).
pub const DEFAULT_LOGIN_URL: &str = "https://login.microsoftonline.com";
/// Largest response body read (a 5,000-record scan page is about 6 MB).
pub const MAX_BODY_BYTES: u64 = 128 * 1024 * 1024;
/// Tries per page before a failure is reported as critical.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;

/// How the agent authenticates.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// `Authorization: Token <token>`.
    Token(Secret),
    /// Entra client credentials, exchanged for a bearer token.
    Entra {
        /// Login base URL.
        login_url: String,
        /// Directory (tenant) id.
        tenant_id: String,
        /// Application (client) id.
        client_id: String,
        /// Client secret.
        client_secret: Secret,
    },
}

/// Why a page could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The API rejected the credentials (401 or 403).
    #[error(
        "Invalid token: {url} answered HTTP {status}. The token is wrong, expired or revoked: \
         create a new API token in the portal (Settings, API tokens) and pass it with --token \
         or --token-file"
    )]
    InvalidToken {
        /// The URL that answered.
        url: String,
        /// 401 or 403.
        status: u16,
    },
    /// The API refused the request itself (a 4xx other than 401, 403, 429).
    #[error("{url} rejected the request with HTTP {status}: {message}")]
    Rejected {
        /// The URL that answered.
        url: String,
        /// The status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// Every try failed with a retryable error.
    #[error("{url}: gave up after {attempts} tries; last error: {last}")]
    GaveUp {
        /// The URL.
        url: String,
        /// Tries made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// Credentials could not be read or exchanged.
    #[error("credentials: {0}")]
    Credentials(String),
    /// The identity provider refused the Entra application's credentials
    /// (a wrong or expired secret, a wrong client or tenant id): like a
    /// rejected token, retrying cannot fix it.
    #[error(
        "the identity provider refused the application's credentials: {0}. Check --tenant-id \
         and --client-id, and the client secret (it may have expired: create a new one under \
         the Entra application's Certificates & secrets)"
    )]
    CredentialsRejected(String),
    /// The agent is shutting down; the page was not fetched.
    #[error("stopped")]
    Stopped,
}

/// Connection settings.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Base URL of the tenant's API (`https://tenant.region.portal...`).
    pub api_url: String,
    /// Credentials.
    pub credentials: Credentials,
    /// HTTP proxy `host:port`, already validated.
    pub proxy: Option<String>,
    /// Extra CA certificate (PEM) to trust, for private CAs and tests.
    pub ca_pem: Option<String>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Tries per page.
    pub max_attempts: u32,
    /// First retry delay.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_cap: Duration,
}

impl From<SecretError> for FetchError {
    fn from(error: SecretError) -> Self {
        FetchError::Credentials(error.to_string())
    }
}

impl From<TokenError> for FetchError {
    fn from(error: TokenError) -> Self {
        if error.is_rejection() {
            FetchError::CredentialsRejected(error.to_string())
        } else {
            FetchError::Credentials(error.to_string())
        }
    }
}

/// Counters for status and metrics, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Requests sent.
    pub requests: AtomicU64,
    /// 429 answers.
    pub throttled: AtomicU64,
    /// Retries made.
    pub retries: AtomicU64,
    /// Response bytes read.
    pub bytes: AtomicU64,
}

fn count(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// A client for one tenant.
pub struct ApiClient {
    agent: ureq::Agent,
    config: ClientConfig,
    budget: Arc<RequestBudget>,
    /// The Entra application's token, cached until shortly before it
    /// expires (`None` with an API token).
    entra: Option<TokenCache>,
    stats: Arc<ClientStats>,
    stop: StopSignal,
    /// Each data type's list URL, by [`DataType::index`].
    list_urls: Vec<String>,
    /// The `Authorization` header, rewritten before each request.
    authorization: String,
}

impl ApiClient {
    /// Builds the client; the proxy and CA were validated with the config.
    pub fn new(config: ClientConfig, budget: Arc<RequestBudget>) -> Result<Self, FetchError> {
        let agent = http::agent(&HttpSettings {
            proxy: config.proxy.as_deref(),
            ca_pem: config.ca_pem.as_deref(),
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
        })
        .map_err(FetchError::Credentials)?;
        let list_base = list_base(&config.api_url);
        let entra = match &config.credentials {
            Credentials::Entra {
                login_url,
                tenant_id,
                client_id,
                client_secret,
            } => Some(TokenCache::new(
                EntraApp {
                    login_url: login_url.clone(),
                    tenant_id: tenant_id.clone(),
                    client_id: client_id.clone(),
                    client_secret: client_secret.clone(),
                },
                ENTRA_SCOPE,
            )),
            Credentials::Token(_) => None,
        };
        let list_urls = DataType::ALL
            .iter()
            .map(|kind| format!("{list_base}/{}/", kind.name()))
            .collect();
        Ok(Self {
            agent,
            list_urls,
            authorization: String::new(),
            config,
            budget,
            entra,
            stats: Arc::default(),
            stop: StopSignal::new(),
        })
    }

    /// Makes every wait of the client (request budget, backoff) end early
    /// when `stop` is raised; the fetch then fails with
    /// [`FetchError::Stopped`].
    pub fn with_stop(mut self, stop: StopSignal) -> Self {
        self.stop = stop;
        self
    }

    /// The client's counters, updated as it works.
    pub fn stats(&self) -> Arc<ClientStats> {
        Arc::clone(&self.stats)
    }

    fn pause(&self, delay: Duration) -> Result<(), FetchError> {
        if self.stop.sleep(delay) {
            Err(FetchError::Stopped)
        } else {
            Ok(())
        }
    }

    /// The list URL for a data type.
    pub fn list_url(&self, kind: DataType) -> String {
        self.list_urls[kind.index()].clone()
    }

    /// POSTs `body` to the list endpoint of `kind`, reads the response
    /// body into `page` (reusing its allocation) and hands it to `accept`,
    /// retrying (with backoff, within the budget) on 429, 5xx, network
    /// errors, and bodies `accept` rejects.
    pub fn fetch<T>(
        &mut self,
        kind: DataType,
        body: &[u8],
        page: &mut Vec<u8>,
        mut accept: impl FnMut(&mut Vec<u8>) -> Result<T, String>,
    ) -> Result<T, FetchError> {
        let mut backoff = Backoff::new(self.config.backoff_base, self.config.backoff_cap);
        let mut last = String::new();
        for attempt in 1..=self.config.max_attempts.max(1) {
            if attempt > 1 {
                count(&self.stats.retries, 1);
            }
            // The budget may sleep for a while: take the token afterwards so
            // it cannot expire in between.
            self.pause(self.budget.reserve())?;
            self.write_authorization()?;
            count(&self.stats.requests, 1);
            let result = self
                .agent
                .post(&self.list_urls[kind.index()])
                .header("Authorization", &self.authorization)
                .header("Content-Type", "application/json")
                .send(body);
            let mut response = match result {
                Ok(response) => response,
                Err(error) => {
                    last = format!("network error: {error}");
                    self.pause(backoff.next_delay(None))?;
                    continue;
                }
            };
            let status = response.status().as_u16();
            // Copied only for a redirect, which ends the fetch.
            let response_location = (300..400).contains(&status).then(|| {
                response
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            });
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let mut reader = response
                .body_mut()
                .with_config()
                .limit(MAX_BODY_BYTES)
                .reader();
            let read = read_body(&mut reader, page).map(|n| {
                count(&self.stats.bytes, n as u64);
                std::mem::take(page)
            });
            match status {
                200..=299 => match read {
                    Ok(mut bytes) => match accept(&mut bytes) {
                        Ok(value) => {
                            *page = bytes;
                            return Ok(value);
                        }
                        Err(reason) => {
                            *page = bytes;
                            last = format!("malformed page: {reason}");
                        }
                    },
                    Err(error) => last = format!("reading the page failed: {error}"),
                },
                401 | 403 => {
                    // A cached Entra token may have been revoked: drop it so
                    // the next call fetches a new one.
                    if let Some(token) = &mut self.entra {
                        token.forget();
                    }
                    return Err(FetchError::InvalidToken {
                        url: self.list_url(kind),
                        status,
                    });
                }
                429 => {
                    count(&self.stats.throttled, 1);
                    last = "HTTP 429 (request limit)".to_owned();
                    self.pause(backoff.next_delay(retry_after))?;
                    continue;
                }
                300..=399 => {
                    let location = response_location.flatten();
                    page.clear();
                    return Err(FetchError::Rejected {
                        url: self.list_url(kind),
                        status,
                        message: http::redirect_message(location.as_deref()),
                    });
                }
                500..=599 => last = format!("HTTP {status}"),
                _ => {
                    let message = read
                        .ok()
                        .map(|bytes| String::from_utf8_lossy(&bytes).chars().take(500).collect())
                        .unwrap_or_default();
                    page.clear();
                    return Err(FetchError::Rejected {
                        url: self.list_url(kind),
                        status,
                        message,
                    });
                }
            }
            self.pause(backoff.next_delay(retry_after))?;
        }
        Err(FetchError::GaveUp {
            url: self.list_url(kind),
            attempts: self.config.max_attempts.max(1),
            last,
        })
    }

    /// Writes the `Authorization` header value, reading a token file again
    /// and refreshing an Entra token when it is close to expiry (never per
    /// request).
    fn write_authorization(&mut self) -> Result<(), FetchError> {
        let header = &mut self.authorization;
        match &self.config.credentials {
            Credentials::Token(secret) => {
                header.clear();
                header.push_str("Token ");
                secret.read_into(header)?;
                Ok(())
            }
            Credentials::Entra { .. } => {
                let Some(token) = &mut self.entra else {
                    return Err(FetchError::Credentials("no Entra application".into()));
                };
                Ok(token.write_bearer(&self.agent, header)?)
            }
        }
    }
}

/// `https://host` -> `https://host/api/v1`; a URL that already names the API
/// path (`.../api/v1` or the older `.../cas/api/v1`) is kept.
pub fn list_base(api_url: &str) -> String {
    let trimmed = api_url.trim_end_matches('/');
    if trimmed.ends_with("/api/v1") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/api/v1")
    }
}

/// Checks a `--proxy ADDRESS[:PORT]` value (an optional `http://` prefix is
/// accepted) and returns it as `host:port`.
pub fn parse_proxy(value: &str) -> Result<String, String> {
    let invalid = || format!("Invalid proxy address: {value}");
    let rest = value
        .strip_prefix("http://")
        .unwrap_or(value)
        .trim_end_matches('/');
    if rest.is_empty() || rest.contains(['/', '@', ' ']) {
        return Err(invalid());
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(invalid)?;
        let port = match after.strip_prefix(':') {
            Some(port) => port,
            None if after.is_empty() => "8080",
            None => return Err(invalid()),
        };
        (format!("[{host}]"), port)
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port),
            None => (rest.to_owned(), "8080"),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .trim_matches(|c| c == '[' || c == ']')
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    match port.parse::<u16>() {
        Ok(port) if port > 0 && host_ok => Ok(format!("{host}:{port}")),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_addresses() {
        assert_eq!(parse_proxy("proxy.corp:3128"), Ok("proxy.corp:3128".into()));
        assert_eq!(
            parse_proxy("http://10.0.0.1:8080/"),
            Ok("10.0.0.1:8080".into())
        );
        assert_eq!(parse_proxy("proxy"), Ok("proxy:8080".into()));
        assert_eq!(parse_proxy("[::1]:3128"), Ok("[::1]:3128".into()));
        for bad in [
            "",
            "proxy:0",
            "proxy:99999",
            "proxy:abc",
            "a b:1",
            "user@proxy:1",
            "https://x/y",
        ] {
            assert_eq!(
                parse_proxy(bad),
                Err(format!("Invalid proxy address: {bad}")),
                "{bad}"
            );
        }
    }

    #[test]
    fn api_paths() {
        assert_eq!(
            list_base("https://t.eu2.portal.cloudappsecurity.com/"),
            "https://t.eu2.portal.cloudappsecurity.com/api/v1"
        );
        assert_eq!(
            list_base("https://t.portal.cloudappsecurity.com/cas/api/v1"),
            "https://t.portal.cloudappsecurity.com/cas/api/v1"
        );
    }

    #[test]
    fn secrets_are_not_printed() {
        let secret = Secret::Value("hunter2".into());
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
