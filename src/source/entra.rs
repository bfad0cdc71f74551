//! Entra (Azure AD) client credentials: an application's secret exchanged
//! for a bearer token, cached until shortly before it expires. Both the
//! legacy API (when configured with an Entra app) and Microsoft Graph use
//! it, each with its own scope, so the logic lives once, here.
//!
//! Secrets are read from their file at every exchange, so a rotated secret
//! is picked up without a restart, and are never printed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use simd_json::prelude::*;

/// Refresh a token this long before it expires (or at half its lifetime,
/// for a token issued for less than twice this).
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// A token is kept at most this long, whatever lifetime the identity
/// provider claims (a hostile or broken one could claim centuries).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Lifetime assumed when the answer names none.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3599);

/// A secret given directly or read from a file on every use (so a rotated
/// value is picked up without a restart). Never printed.
#[derive(Clone)]
pub enum Secret {
    /// The value itself.
    Value(String),
    /// A file holding the value (surrounding whitespace ignored).
    File(PathBuf),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("Secret(<redacted>)"),
            Secret::File(path) => write!(f, "Secret(file {})", path.display()),
        }
    }
}

/// A secret file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}: {source}", path.display())]
pub struct SecretError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

impl Secret {
    /// Appends the current value to `out`, reusing its allocation (the
    /// legacy client reads its token file before every request).
    pub fn read_into(&self, out: &mut String) -> Result<(), SecretError> {
        match self {
            Secret::Value(value) => out.push_str(value),
            Secret::File(path) => {
                let start = out.len();
                std::fs::File::open(path)
                    .and_then(|mut file| std::io::Read::read_to_string(&mut file, out))
                    .map_err(|source| SecretError {
                        path: path.clone(),
                        source,
                    })?;
                // Editors on Windows may start the file with a byte order
                // mark; it is not part of the secret.
                let read = out[start..].trim_start_matches('\u{feff}');
                let leading = out.len() - start - read.trim_start().len();
                let kept = read.trim().len();
                out.drain(start..start + leading);
                out.truncate(start + kept);
            }
        }
        Ok(())
    }

    /// The current value.
    pub fn read(&self) -> Result<String, SecretError> {
        let mut value = String::new();
        self.read_into(&mut value)?;
        Ok(value)
    }
}

/// An Entra application that can sign in to a tenant.
#[derive(Clone, Debug)]
pub struct EntraApp {
    /// Login base URL (`https://login.microsoftonline.com`, or a national
    /// cloud's).
    pub login_url: String,
    /// Directory (tenant) id.
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: Secret,
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The secret's file could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The token endpoint could not be reached, refused, or answered
    /// something that is not a token.
    #[error("{url}: {reason}")]
    Exchange {
        /// The token endpoint.
        url: String,
        /// What happened.
        reason: String,
        /// The HTTP status, when there was an answer.
        status: Option<u16>,
    },
}

impl TokenError {
    /// The identity provider refused the application's credentials (400
    /// `invalid_client` and the like, or 401): retrying cannot help, it is
    /// like a wrong token.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            TokenError::Exchange {
                status: Some(400 | 401),
                ..
            }
        )
    }
}

/// A token for one application and scope, fetched when needed.
#[derive(Debug)]
pub struct TokenCache {
    app: EntraApp,
    scope: String,
    /// The token and when to replace it.
    cached: Option<(String, Instant)>,
}

impl TokenCache {
    /// A cache for `app`'s tokens for `scope` (e.g.
    /// `https://graph.microsoft.com/.default`); nothing fetched yet.
    pub fn new(app: EntraApp, scope: &str) -> Self {
        Self {
            app,
            scope: scope.to_owned(),
            cached: None,
        }
    }

    /// Drops the cached token (it was refused): the next call fetches one.
    pub fn forget(&mut self) {
        self.cached = None;
    }

    /// The `Authorization` header value, fetching a token through `agent`
    /// when there is none or it is about to expire (never per request).
    pub fn bearer(&mut self, agent: &ureq::Agent) -> Result<String, TokenError> {
        let mut header = String::new();
        self.write_bearer(agent, &mut header)?;
        Ok(header)
    }

    /// [`Self::bearer`] written into `header` (cleared first), which keeps
    /// its allocation from one request to the next.
    pub fn write_bearer(
        &mut self,
        agent: &ureq::Agent,
        header: &mut String,
    ) -> Result<(), TokenError> {
        header.clear();
        header.push_str("Bearer ");
        if let Some((token, refresh_at)) = &self.cached {
            if Instant::now() < *refresh_at {
                header.push_str(token);
                return Ok(());
            }
        }
        let app = &self.app;
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            app.login_url.trim_end_matches('/'),
            app.tenant_id
        );
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &app.client_id)
            .append_pair("client_secret", &app.client_secret.read()?)
            .append_pair("grant_type", "client_credentials")
            .append_pair("scope", &self.scope)
            .finish();
        let failed = |reason: String, status: Option<u16>| TokenError::Exchange {
            url: url.clone(),
            reason,
            status,
        };
        // Lifetimes count from the request, not the answer.
        let requested_at = Instant::now();
        let mut response = agent
            .post(&url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(form)
            .map_err(|e| failed(e.to_string(), None))?;
        let status = response.status().as_u16();
        let mut bytes = response
            .body_mut()
            .read_to_vec()
            .map_err(|e| failed(e.to_string(), Some(status)))?;
        if status != 200 {
            let text: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
            return Err(failed(format!("HTTP {status}: {text}"), Some(status)));
        }
        let reply = simd_json::to_owned_value(&mut bytes)
            .map_err(|e| failed(format!("reply is not JSON: {e}"), Some(status)))?;
        let token = reply
            .get_str("access_token")
            .ok_or_else(|| failed("reply has no access_token".into(), Some(status)))?
            .to_owned();
        let lifetime = reply
            .get_u64("expires_in")
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        header.push_str(&token);
        self.cached = Some((token, refresh_time(requested_at, lifetime)));
        Ok(())
    }
}

/// When a token of `lifetime`, requested at `requested_at`, should be
/// replaced: the refresh margin before it expires (half its lifetime for a
/// short one), with the lifetime capped so no arithmetic can overflow.
pub fn refresh_time(requested_at: Instant, lifetime: Duration) -> Instant {
    let lifetime = lifetime.min(MAX_TOKEN_LIFETIME);
    let margin = TOKEN_REFRESH_MARGIN.min(lifetime / 2);
    requested_at + (lifetime - margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_order_mark_is_not_part_of_a_secret_and_read_into_appends() {
        let path = crate::test_support::scratch_path("secret-file");
        std::fs::write(&path, "\u{feff}  s3cr\u{e9}t value \r\n\n").expect("written");
        let secret = Secret::File(path.clone());
        assert_eq!(secret.read().expect("read"), "s3cr\u{e9}t value");
        let mut header = String::from("Token ");
        secret.read_into(&mut header).expect("read");
        assert_eq!(header, "Token s3cr\u{e9}t value");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn refresh_comes_before_expiry_and_no_lifetime_overflows() {
        let now = Instant::now();
        assert_eq!(
            refresh_time(now, Duration::from_secs(3599)),
            now + Duration::from_secs(3299)
        );
        assert_eq!(
            refresh_time(now, Duration::from_secs(4)),
            now + Duration::from_secs(2)
        );
        assert_eq!(refresh_time(now, Duration::ZERO), now);
        // 2^64 - 1 seconds: kept a day at most, and no panic.
        assert_eq!(
            refresh_time(now, Duration::from_secs(u64::MAX)),
            now + MAX_TOKEN_LIFETIME - TOKEN_REFRESH_MARGIN
        );
    }

    #[test]
    fn a_secret_file_is_read_trimmed_and_its_error_names_it() {
        let dir = crate::test_support::scratch_path("secret");
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("secret");
        std::fs::write(&path, "  s3cret\n").expect("write");
        assert_eq!(Secret::File(path).read().expect("readable"), "s3cret");
        let missing = Secret::File(dir.join("missing"));
        let error = missing.read().expect_err("missing").to_string();
        assert!(
            error.starts_with("cannot read ") && error.contains("missing"),
            "{error}"
        );
        assert_eq!(
            format!("{:?}", Secret::Value("x".into())),
            "Secret(<redacted>)"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
