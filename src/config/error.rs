//! Why a configuration was rejected: one error for every way the flags or
//! the config file can fail to make a plan, each naming the option (and,
//! for the config file, the file, line and key) so the person reading it
//! knows what to change.

use std::path::PathBuf;

use crate::sink::tls::TlsSetupError;
use crate::syslog::HeaderError;

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The syslog header options do not fit together.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The agent version must be 1-31 characters (CEF device version).
    #[error("--agent-version {0:?} must be 1 to 31 characters")]
    AgentVersion(String),
    /// The proxy is not `host[:port]`.
    #[error("{0}")]
    Proxy(String),
    /// No usable credentials were given.
    #[error(
        "give --token, --token-file, or --tenant-id with --client-id and --client-secret(-file)"
    )]
    NoCredentials,
    /// A file named by an option could not be read or parsed.
    #[error("{option} {path}: {reason}")]
    File {
        /// The option.
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The syslog options do not fit together.
    #[error("{0}")]
    Syslog(String),
    /// The syslog TLS settings cannot be used.
    #[error(transparent)]
    SyslogTls(#[from] TlsSetupError),
    /// `--output` names stdout only; a syslog receiver is given with
    /// `--syslog-host`.
    #[error("--output {0:?}: only `-` (stdout) is supported; use --syslog-host for syslog")]
    Output(String),
    /// A Graph data type needs an Entra application.
    #[error(
        "graph-alerts and cloud-app-events need an Entra application: give --tenant-id, \
         --client-id and --client-secret (or --client-secret-file)"
    )]
    GraphCredentials,
    /// The Graph URL must be http(s).
    #[error("--graph-url {0:?} is not an http:// or https:// URL")]
    GraphUrl(String),
    /// The hunting page size is out of range.
    #[error("--cloud-app-events-page-size {0}: must be 1 to 100000")]
    HuntingRows(u32),
    /// The API URL must be http(s).
    #[error("--api-url {0:?} is not an http:// or https:// URL")]
    ApiUrl(String),
    /// A fault probability must be between 0 and 1.
    #[error("--{0} {1} is not a probability between 0 and 1")]
    Probability(&'static str, f64),
    /// A rate must be at least one record a minute.
    #[error("--{0} must be at least 1")]
    ZeroRate(&'static str),
    /// The portal URL must be an absolute http(s) URL.
    #[error("--portal-url {0:?} is not an http:// or https:// URL")]
    PortalUrl(String),
    /// An error in the config file, with where it is.
    #[error("{}{}{}{message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default(), if key.is_empty() { ": ".to_owned() } else { format!(": {key}: ") })]
    InFile {
        /// The file.
        path: PathBuf,
        /// The line (1-based), when known.
        line: Option<usize>,
        /// The key, as a dotted path (`tenant[0].syslog.port`).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A required option is missing.
    #[error("no {key}: set `{key}` in the config file (--config) or pass {flag}")]
    Missing {
        /// The config file key.
        key: &'static str,
        /// The flag.
        flag: &'static str,
    },
    /// A flag that names one tenant was given with several tenants.
    #[error("{flag} cannot be given on the command line: the config file lists {tenants} tenants; set it in their [[tenant]] tables")]
    IdentityFlag {
        /// The flag.
        flag: String,
        /// How many tenants.
        tenants: usize,
    },
    /// Two tenants have the same name.
    #[error("two tenants are named {0:?} (the name defaults to the API host); give each a different `name`")]
    DuplicateTenant(String),
    /// Two tenants' names give the same state file names, so they would
    /// share checkpoints.
    #[error("tenants {first:?} and {second:?} would share the state files {stem}.*: names differing only in characters a file name cannot hold are the same name here; give one of them another `name`")]
    TenantFilesCollide {
        /// The tenant named first.
        first: String,
        /// The tenant named second.
        second: String,
        /// The file name stem both give.
        stem: String,
    },
    /// A duration longer than any the agent can wait.
    #[error("{option} {value}: at most {limit} (the agent cannot wait longer)")]
    DurationTooLong {
        /// The option (flag spelling).
        option: &'static str,
        /// The value given.
        value: String,
        /// The longest allowed.
        limit: String,
    },
    /// Both a filter file and filters in the config file were given.
    #[error("{0}: give filters either as a file or in the config file, not both")]
    TwoFilters(&'static str),
    /// Filters that cannot be turned into JSON.
    #[error("filters: {0}")]
    Filter(String),
    /// The data type list is empty.
    #[error("data_types is empty: give alerts, activities or both")]
    NoDataTypes,
    /// Not a log level.
    #[error("log level {0:?}: expected error, warn, info, debug or trace")]
    LogLevel(String),
    /// The layers did not combine (a bug: the parts were checked alone).
    #[error("cannot combine the config file with the flags: {0}")]
    Merge(String),
}

impl ConfigError {
    /// The tenant option (config file key, dotted) this error is about.
    pub fn key(&self) -> Option<&'static str> {
        Some(match self {
            ConfigError::Header(HeaderError::Hostname(_)) => "format.hostname",
            ConfigError::Header(HeaderError::Facility(_)) => "format.facility",
            ConfigError::Header(_) => "format.header",
            ConfigError::AgentVersion(_) => "format.agent_version",
            ConfigError::PortalUrl(_) => "format.portal_url",
            ConfigError::Proxy(_) => "proxy",
            ConfigError::File { option, .. } => match *option {
                "--api-ca" => "api_ca",
                "--activities-filter" => "activities_filter",
                "--alerts-filter" => "alerts_filter",
                _ => return None,
            },
            // Syslog messages start with the option they are about.
            ConfigError::Syslog(message) => {
                const KEYS: [(&str, &str); 10] = [
                    ("--syslog-host", "syslog.host"),
                    ("--syslog-port", "syslog.port"),
                    ("--syslog-protocol", "syslog.protocol"),
                    ("--syslog-framing", "syslog.framing"),
                    ("--syslog-max-message", "syslog.max_message"),
                    ("--syslog-ca", "syslog.ca"),
                    ("--syslog-client-cert", "syslog.client_cert"),
                    ("--syslog-client-key", "syslog.client_key"),
                    ("--relp-window", "syslog.relp_window"),
                    ("--syslog-resend-bytes", "syslog.resend_bytes"),
                ];
                let flag = message.split([' ', ':']).next().unwrap_or("");
                KEYS.iter()
                    .find(|(name, _)| *name == flag)
                    .map_or("syslog", |(_, key)| *key)
            }
            ConfigError::SyslogTls(_) => "syslog",
            ConfigError::Output(_) => "output",
            ConfigError::ApiUrl(_) => "api_url",
            ConfigError::GraphUrl(_) => "graph_url",
            ConfigError::HuntingRows(_) => "cloud_app_events_page_size",
            ConfigError::GraphCredentials => "tenant_id",
            ConfigError::Missing { key, .. } => key,
            ConfigError::DuplicateTenant(_) | ConfigError::TenantFilesCollide { .. } => "name",
            ConfigError::DurationTooLong { option, .. } => match *option {
                "--backfill" => "backfill",
                "--poll-interval" => "poll_interval",
                "--retry-max-delay" => "retry_max_delay",
                "--graph-settle" => "graph_settle",
                "--graph-late-window" => "graph_late_window",
                _ => return None,
            },
            ConfigError::TwoFilters(_) | ConfigError::Filter(_) => "filters",
            ConfigError::NoDataTypes => "data_types",
            _ => return None,
        })
    }
}
