//! Command-line configuration, in two steps: clap parses the arguments into
//! plain structs, then `build()` validates them once into a plan whose
//! fields can be trusted for the rest of the run ("parse, don't validate").

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cef::{DataType, Encoder};
use simd_json::prelude::*;

use crate::pipeline::RunPlan;
use crate::simulator::data::StreamKind;
use crate::simulator::server::DEFAULT_TOKEN;
use crate::simulator::{Faults, SimulatorConfig};
use crate::sink::relp::DEFAULT_WINDOW;
use crate::sink::tls::{TlsClient, TlsOptions, TlsSetupError};
use crate::sink::{Destination, Protocol, SinkPlan};
use crate::source::client::{ClientConfig, Credentials, Secret};
use crate::syslog::{
    Framing, HeaderError, HeaderStyle, SyslogHeader, DEFAULT_FACILITY, DEFAULT_UDP_MESSAGE_BYTES,
    MAX_UDP_MESSAGE_BYTES, MIN_MESSAGE_BYTES,
};

/// Portal link base used when none is configured.
pub const DEFAULT_PORTAL_URL: &str = "https://portal.cloudappsecurity.com";
/// The agent version written into CEF headers by default.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The longest device version the CEF standard allows (characters).
pub const MAX_AGENT_VERSION_LEN: usize = 31;

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "siem-agent", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Turn saved API records (JSON pages, arrays, records or NDJSON) into
    /// CEF lines on stdout.
    Replay(ReplayArgs),
    /// Pull alerts and activities from the API and write them as CEF.
    Run(Box<RunArgs>),
    /// Run the agent against a built-in simulated tenant: no credentials
    /// needed. Prints the CEF lines of its backfill, then exits (or keeps
    /// tailing with --follow).
    Demo(DemoArgs),
    /// Serve a simulated Defender for Cloud Apps API on this machine, for
    /// trying the agent, tests and benchmarks without a tenant.
    Simulate(SimulateArgs),
}

/// Options of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The tenant's API base URL, e.g. `https://contoso.eu2.portal.cloudappsecurity.com`.
    #[arg(long, value_name = "URL")]
    pub api_url: String,
    /// API token (prefer --token-file: command lines are visible to other users).
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    pub token: Option<String>,
    /// File holding the API token; re-read on every request, so a rotated
    /// token is picked up without a restart.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Entra directory (tenant) id, for application credentials.
    #[arg(long, value_name = "ID", requires = "client_id")]
    pub tenant_id: Option<String>,
    /// Entra application (client) id.
    #[arg(long, value_name = "ID", requires = "tenant_id")]
    pub client_id: Option<String>,
    /// Entra client secret (prefer --client-secret-file).
    #[arg(long, value_name = "SECRET", conflicts_with = "client_secret_file")]
    pub client_secret: Option<String>,
    /// File holding the Entra client secret.
    #[arg(long, value_name = "FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// Entra login base URL (for sovereign clouds).
    #[arg(long, value_name = "URL", default_value = crate::source::client::DEFAULT_LOGIN_URL)]
    pub login_url: String,
    /// Data types to pull, comma-separated.
    #[arg(long, value_delimiter = ',', default_values = ["alerts", "activities"], value_parser = parse_kind)]
    pub data_types: Vec<StreamKind>,
    /// Directory for checkpoints (created, mode 0700).
    #[arg(long, value_name = "DIR", default_value = "siem-agent-state")]
    pub state_dir: PathBuf,
    /// How far back the first start reaches (e.g. 2d, 36h).
    #[arg(long, default_value = "2d", value_parser = parse_duration)]
    pub backfill: Duration,
    /// Wait between polls once caught up.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Requests per minute for this tenant, shared by all data types (the
    /// API allows 30; 0 means no limit, for simulators only).
    #[arg(long, default_value_t = crate::source::budget::DEFAULT_REQUESTS_PER_MINUTE, value_name = "N")]
    pub requests_per_minute: u32,
    /// HTTP proxy, as ADDRESS or ADDRESS:PORT (port 8080 when omitted).
    #[arg(long, value_name = "ADDRESS[:PORT]")]
    pub proxy: Option<String>,
    /// Extra CA certificate (PEM) to trust for the API.
    #[arg(long, value_name = "FILE")]
    pub api_ca: Option<PathBuf>,
    /// Extra API filters for activities (a JSON filter object, passed through).
    #[arg(long, value_name = "FILE")]
    pub activities_filter: Option<PathBuf>,
    /// Extra API filters for alerts.
    #[arg(long, value_name = "FILE")]
    pub alerts_filter: Option<PathBuf>,
    /// Where the CEF lines go; `-` is stdout.
    #[arg(long, value_name = "-", default_value = "-")]
    pub output: String,
    /// Tries per page (429, 5xx, network errors, malformed pages) before the
    /// failure counts as critical.
    #[arg(long, default_value_t = crate::source::client::DEFAULT_MAX_ATTEMPTS, value_name = "N")]
    pub retry_attempts: u32,
    /// Longest wait between two tries.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub retry_max_delay: Duration,
    /// Consecutive critical failures before giving up (exit 75).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub max_critical_errors: u32,
    /// Name for this tenant's checkpoint files (default: the API host).
    #[arg(long, value_name = "NAME")]
    pub tenant: Option<String>,
    /// Exit once every data type has caught up (one-shot export).
    #[arg(long)]
    pub once: bool,
    /// How the records are formatted.
    #[command(flatten)]
    pub format: FormatArgs,
    /// Where the lines go (stdout unless a syslog host is given).
    #[command(flatten)]
    pub syslog: SyslogArgs,
}

fn parse_kind(text: &str) -> Result<StreamKind, String> {
    match text.trim() {
        "activities" => Ok(StreamKind::Activities),
        "alerts" => Ok(StreamKind::Alerts),
        other => Err(format!("{other:?}: expected alerts or activities")),
    }
}

/// Options of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// History of the simulated tenant, all of it backfilled.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub history: Duration,
    /// Simulated activities per minute.
    #[arg(long, default_value_t = 600, value_name = "N")]
    pub activities_per_minute: u64,
    /// Keep tailing the live simulated tenant instead of exiting.
    #[arg(long)]
    pub follow: bool,
    /// How the records are formatted.
    #[command(flatten)]
    pub format: FormatArgs,
    /// Where the lines go (stdout unless a syslog host is given).
    #[command(flatten)]
    pub syslog: SyslogArgs,
}

impl DemoArgs {
    /// The simulator configuration and a run plan pointing at it; the
    /// caller fills in the simulator's URL once it listens.
    pub fn build(&self, state_dir: PathBuf) -> Result<(SimulatorConfig, RunPlan), ConfigError> {
        if self.activities_per_minute == 0 {
            return Err(ConfigError::ZeroRate("activities-per-minute"));
        }
        let mut simulator = SimulatorConfig::new(crate::syslog::now_ms(), self.history);
        simulator.requests_per_minute = None;
        simulator.activities.per_minute = self.activities_per_minute;
        simulator.activities.max_index_delay_ms = 30_000;
        let plan = RunPlan {
            tenant: "demo".to_owned(),
            client: ClientConfig {
                api_url: String::new(),
                credentials: Credentials::Token(Secret::Value(simulator.token.clone())),
                proxy: None,
                ca_pem: None,
                connect_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(60),
                max_attempts: crate::source::client::DEFAULT_MAX_ATTEMPTS,
                backoff_base: Duration::from_millis(200),
                backoff_cap: Duration::from_secs(5),
            },
            requests_per_minute: 0,
            kinds: vec![StreamKind::Alerts, StreamKind::Activities],
            filters: HashMap::new(),
            state_dir,
            backfill: self.history + Duration::from_secs(60),
            poll_interval: Duration::from_secs(5),
            max_critical_errors: 10,
            once: !self.follow,
            encoder: self.format.build()?,
            destination: self.syslog.build()?,
        };
        Ok((simulator, plan))
    }
}

/// Options of `simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Serve HTTPS with a freshly generated CA (see --write-ca).
    #[arg(long)]
    pub tls: bool,
    /// Write the CA certificate clients must trust to FILE (with --tls).
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub write_ca: Option<PathBuf>,
    /// The API token to accept.
    #[arg(long, default_value = DEFAULT_TOKEN)]
    pub token: String,
    /// How much history exists before now (e.g. 2d, 36h).
    #[arg(long, default_value = "2d", value_parser = parse_duration)]
    pub history: Duration,
    /// Activities per minute, in the history and live.
    #[arg(long, default_value_t = 600, value_name = "N")]
    pub activities_per_minute: u64,
    /// Alerts per minute, in the history and live.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub alerts_per_minute: u64,
    /// Longest delay between an activity and its indexing (`created`).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub max_index_delay: Duration,
    /// List requests allowed per minute; 0 turns the limit off.
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub requests_per_minute: u32,
    /// The window the request limit counts over; the API's is a minute.
    /// Benchmarks shorten it to compress time (30 per 6s is the real limit
    /// at ten times the speed).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub rate_window: Duration,
    /// Send `Retry-After: N` with 429 answers (the real API sends none).
    #[arg(long, value_name = "SECONDS")]
    pub retry_after: Option<u64>,
    /// Seed for the generated records and the fault decisions.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Probability (0-1) of answering a list request with 503.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub fault_5xx: f64,
    /// Probability of answering slowly (see --slow-delay).
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub fault_slow: f64,
    /// Delay of a slow answer.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub slow_delay: Duration,
    /// Probability of closing the connection without an answer.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub fault_drop: f64,
    /// Probability of cutting the body off halfway.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub fault_truncate: f64,
    /// Probability of a complete answer whose body is not valid JSON.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub fault_malformed: f64,
}

/// Parses durations such as `2d`, `36h`, `90s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|error| format!("{text:?}: {error}"))
}

/// Options of `replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Input files; `-` or none reads stdin.
    #[arg(value_name = "FILE|-")]
    pub files: Vec<PathBuf>,
    /// How the records are formatted.
    #[command(flatten)]
    pub format: FormatArgs,
    /// Where the lines go (stdout unless a syslog host is given).
    #[command(flatten)]
    pub syslog: SyslogArgs,
}

/// Options that shape each CEF line, shared by every command that emits them.
#[derive(Debug, Args, Clone)]
pub struct FormatArgs {
    /// Which mapping to use: per record (`auto`) or for all records.
    #[arg(long, value_enum, default_value_t = DataType::Auto)]
    pub data_type: DataType,
    /// Device version in the CEF header; pin it to what your parsers expect.
    #[arg(long, default_value = AGENT_VERSION, value_name = "V")]
    pub agent_version: String,
    /// Portal base URL for the links in `cs1`.
    #[arg(long, default_value = DEFAULT_PORTAL_URL, value_name = "URL")]
    pub portal_url: String,
    /// Syslog header style in front of each CEF line.
    #[arg(long, value_enum, default_value_t = HeaderStyle::Iso)]
    pub header: HeaderStyle,
    /// Host name in the header (default: none for `iso`, this machine's name
    /// for the RFC styles).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Syslog facility number for the PRI (0-23; 16 is local0).
    #[arg(long, default_value_t = DEFAULT_FACILITY, value_name = "N")]
    pub facility: u8,
}

/// Where the CEF lines go: a syslog receiver, or stdout when no host is
/// given.
#[derive(Debug, Args, Clone)]
pub struct SyslogArgs {
    /// Syslog receiver (host name or IP address); without it, lines go to
    /// stdout.
    #[arg(long, value_name = "HOST")]
    pub syslog_host: Option<String>,
    /// Receiver port [default: 514 for udp and tcp, 6514 for tls, 2514 for
    /// relp].
    #[arg(long, value_name = "PORT", requires = "syslog_host")]
    pub syslog_port: Option<u16>,
    /// Transport: udp (no delivery guarantee), tcp and tls (confirmed by the
    /// receiver's TCP stack), relp and relp-tls (confirmed by the receiver).
    #[arg(long, value_enum, value_name = "PROTOCOL", requires = "syslog_host")]
    pub syslog_protocol: Option<Protocol>,
    /// Framing on tcp and tls [default: lf for tcp, octet-counting for tls].
    #[arg(long, value_enum, value_name = "FRAMING", requires = "syslog_host")]
    pub syslog_framing: Option<Framing>,
    /// Longest message in bytes; longer ones are cut on a character boundary
    /// and counted [default: 2048 for udp, no limit otherwise].
    #[arg(long, value_name = "BYTES", requires = "syslog_host")]
    pub syslog_max_message: Option<usize>,
    /// CA certificates (PEM) to verify the receiver with, instead of the
    /// system's trust store (tls, relp-tls).
    #[arg(long, value_name = "FILE", requires = "syslog_host")]
    pub syslog_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, value_name = "FILE", requires = "syslog_client_key")]
    pub syslog_client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "syslog_client_cert")]
    pub syslog_client_key: Option<PathBuf>,
    /// RELP messages sent and not yet acknowledged, at most.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_WINDOW)]
    pub relp_window: usize,
}

impl SyslogArgs {
    /// Validates the options into a destination.
    pub fn build(&self) -> Result<Destination, ConfigError> {
        let Some(host) = &self.syslog_host else {
            if self.syslog_client_cert.is_some() || self.syslog_client_key.is_some() {
                return Err(ConfigError::Syslog(
                    "--syslog-client-cert and --syslog-client-key need --syslog-host".into(),
                ));
            }
            return Ok(Destination::Stdout);
        };
        let bad = |why: String| Err(ConfigError::Syslog(why));
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad(format!(
                "--syslog-host {host:?} is not a host name or address"
            ));
        }
        let protocol = self.syslog_protocol.unwrap_or(Protocol::Tcp);
        let port = self.syslog_port.unwrap_or(protocol.default_port());
        if port == 0 {
            return bad("--syslog-port must be 1-65535".into());
        }
        let framing = match (protocol, self.syslog_framing) {
            (Protocol::Tcp | Protocol::Tls, Some(framing)) => framing,
            (Protocol::Tcp, None) => Framing::Lf,
            (Protocol::Tls, None) => Framing::OctetCounting,
            (_, None) => Framing::Lf,
            (_, Some(_)) => {
                return bad("--syslog-framing applies to tcp and tls only (udp sends one message per datagram; RELP frames its own)".into())
            }
        };
        let max_message = match (protocol, self.syslog_max_message) {
            (Protocol::Udp, None) => Some(DEFAULT_UDP_MESSAGE_BYTES),
            (Protocol::Udp, Some(n)) if !(MIN_MESSAGE_BYTES..=MAX_UDP_MESSAGE_BYTES).contains(&n) => {
                return bad(format!(
                    "--syslog-max-message {n}: for udp it must be {MIN_MESSAGE_BYTES} to {MAX_UDP_MESSAGE_BYTES}"
                ))
            }
            (_, Some(n)) if n < MIN_MESSAGE_BYTES => {
                return bad(format!(
                    "--syslog-max-message {n}: must be at least {MIN_MESSAGE_BYTES}"
                ))
            }
            (_, limit) => limit,
        };
        let tls_options = TlsOptions {
            ca_file: self.syslog_ca.clone(),
            client_cert: self.syslog_client_cert.clone(),
            client_key: self.syslog_client_key.clone(),
        };
        let tls = if protocol.uses_tls() {
            Some(TlsClient::build(host, &tls_options)?)
        } else {
            if self.syslog_ca.is_some() || self.syslog_client_cert.is_some() {
                return bad(
                    "--syslog-ca and --syslog-client-cert need --syslog-protocol tls or relp-tls"
                        .into(),
                );
            }
            None
        };
        if self.relp_window == 0 || self.relp_window > 100_000 {
            return bad(format!(
                "--relp-window {} must be 1 to 100000",
                self.relp_window
            ));
        }
        Ok(Destination::Syslog(SinkPlan {
            host: host.to_owned(),
            port,
            protocol,
            framing,
            max_message,
            tls,
            relp_window: self.relp_window,
        }))
    }
}

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
}

/// Where `replay` reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    /// Standard input.
    Stdin,
    /// A file.
    File(PathBuf),
}

/// A validated `replay` run.
#[derive(Debug, Clone)]
pub struct ReplayPlan {
    /// Inputs in order.
    pub inputs: Vec<InputSource>,
    /// The encoder for every record.
    pub encoder: Encoder,
    /// Where the lines go.
    pub destination: Destination,
}

impl FormatArgs {
    /// Validates the options into an encoder.
    pub fn build(&self) -> Result<Encoder, ConfigError> {
        let version = &self.agent_version;
        if version.is_empty() || version.chars().count() > MAX_AGENT_VERSION_LEN {
            return Err(ConfigError::AgentVersion(version.clone()));
        }
        let portal = &self.portal_url;
        let has_host = portal
            .strip_prefix("https://")
            .or_else(|| portal.strip_prefix("http://"))
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
        if !has_host || portal.chars().any(char::is_control) {
            return Err(ConfigError::PortalUrl(portal.clone()));
        }
        let hostname = match (&self.hostname, self.header) {
            (Some(name), _) => Some(name.clone()),
            (None, HeaderStyle::Rfc3164 | HeaderStyle::Rfc5424) => machine_hostname(),
            (None, _) => None,
        };
        let header = SyslogHeader::new(self.header, hostname, self.facility)?;
        Ok(Encoder::new(version, portal, header, self.data_type))
    }
}

impl ReplayArgs {
    /// Validates the options into a plan.
    pub fn build(&self) -> Result<ReplayPlan, ConfigError> {
        let inputs = if self.files.is_empty() {
            vec![InputSource::Stdin]
        } else {
            self.files
                .iter()
                .map(|path| {
                    if path.as_os_str() == "-" {
                        InputSource::Stdin
                    } else {
                        InputSource::File(path.clone())
                    }
                })
                .collect()
        };
        Ok(ReplayPlan {
            inputs,
            encoder: self.format.build()?,
            destination: self.syslog.build()?,
        })
    }
}

impl RunArgs {
    /// Validates the options into a plan.
    pub fn build(&self) -> Result<RunPlan, ConfigError> {
        let api_url = self.api_url.trim_end_matches('/').to_owned();
        let host = api_url
            .strip_prefix("https://")
            .or_else(|| api_url.strip_prefix("http://"))
            .map(|rest| rest.split('/').next().unwrap_or(""))
            .filter(|host| !host.is_empty())
            .ok_or_else(|| ConfigError::ApiUrl(self.api_url.clone()))?
            .to_owned();
        if self.output != "-" {
            return Err(ConfigError::Output(self.output.clone()));
        }
        let credentials = match (
            &self.token,
            &self.token_file,
            &self.tenant_id,
            &self.client_id,
            &self.client_secret,
            &self.client_secret_file,
        ) {
            (Some(token), None, None, ..) => Credentials::Token(Secret::Value(token.clone())),
            (None, Some(file), None, ..) => Credentials::Token(Secret::File(file.clone())),
            (None, None, Some(tenant_id), Some(client_id), secret, secret_file) => {
                let client_secret = match (secret, secret_file) {
                    (Some(value), None) => Secret::Value(value.clone()),
                    (None, Some(file)) => Secret::File(file.clone()),
                    _ => return Err(ConfigError::NoCredentials),
                };
                Credentials::Entra {
                    login_url: self.login_url.clone(),
                    tenant_id: tenant_id.clone(),
                    client_id: client_id.clone(),
                    client_secret,
                }
            }
            _ => return Err(ConfigError::NoCredentials),
        };
        let proxy = self
            .proxy
            .as_deref()
            .map(crate::source::client::parse_proxy)
            .transpose()
            .map_err(ConfigError::Proxy)?;
        let read = |option: &'static str, path: &PathBuf| {
            std::fs::read(path).map_err(|error| ConfigError::File {
                option,
                path: path.clone(),
                reason: error.to_string(),
            })
        };
        let ca_pem = match &self.api_ca {
            Some(path) => Some(String::from_utf8_lossy(&read("--api-ca", path)?).into_owned()),
            None => None,
        };
        let mut filters = HashMap::new();
        for (option, path, kind) in [
            (
                "--activities-filter",
                &self.activities_filter,
                StreamKind::Activities,
            ),
            ("--alerts-filter", &self.alerts_filter, StreamKind::Alerts),
        ] {
            let Some(path) = path else { continue };
            let mut bytes = read(option, path)?;
            let value =
                simd_json::to_owned_value(&mut bytes).map_err(|error| ConfigError::File {
                    option,
                    path: path.clone(),
                    reason: format!("not JSON: {error}"),
                })?;
            if value.as_object().is_none() {
                return Err(ConfigError::File {
                    option,
                    path: path.clone(),
                    reason: "must be a JSON object of API filters".into(),
                });
            }
            filters.insert(kind, value);
        }
        let mut kinds = Vec::new();
        for kind in &self.data_types {
            if !kinds.contains(kind) {
                kinds.push(*kind);
            }
        }
        Ok(RunPlan {
            tenant: self.tenant.clone().unwrap_or(host),
            client: ClientConfig {
                api_url,
                credentials,
                proxy,
                ca_pem,
                connect_timeout: Duration::from_secs(10),
                request_timeout: Duration::from_secs(120),
                max_attempts: self.retry_attempts.max(1),
                backoff_base: Duration::from_millis(500).min(self.retry_max_delay),
                backoff_cap: self.retry_max_delay,
            },
            requests_per_minute: self.requests_per_minute,
            kinds,
            filters,
            state_dir: self.state_dir.clone(),
            backfill: self.backfill,
            poll_interval: self.poll_interval,
            max_critical_errors: self.max_critical_errors,
            once: self.once,
            encoder: self.format.build()?,
            destination: self.syslog.build()?,
        })
    }
}

impl SimulateArgs {
    /// Validates the options into a simulator configuration.
    pub fn build(&self) -> Result<SimulatorConfig, ConfigError> {
        for (name, p) in [
            ("fault-5xx", self.fault_5xx),
            ("fault-slow", self.fault_slow),
            ("fault-drop", self.fault_drop),
            ("fault-truncate", self.fault_truncate),
            ("fault-malformed", self.fault_malformed),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(ConfigError::Probability(name, p));
            }
        }
        if self.activities_per_minute == 0 {
            return Err(ConfigError::ZeroRate("activities-per-minute"));
        }
        if self.alerts_per_minute == 0 {
            return Err(ConfigError::ZeroRate("alerts-per-minute"));
        }
        let mut config = SimulatorConfig::new(crate::syslog::now_ms(), self.history);
        config.listen = self.listen;
        config.tls = self.tls;
        config.token = self.token.clone();
        config.requests_per_minute =
            (self.requests_per_minute > 0).then_some(self.requests_per_minute);
        config.retry_after_seconds = self.retry_after;
        config.rate_window = self.rate_window;
        config.fault_seed = self.seed;
        let delay = i64::try_from(self.max_index_delay.as_millis()).unwrap_or(i64::MAX / 4);
        for (stream, per_minute, salt) in [
            (&mut config.activities, self.activities_per_minute, 0),
            (&mut config.alerts, self.alerts_per_minute, 1),
        ] {
            stream.seed = self.seed.wrapping_mul(2).wrapping_add(salt);
            stream.per_minute = per_minute;
            stream.max_index_delay_ms = delay;
        }
        config.faults = Faults {
            server_error: self.fault_5xx,
            slow: self.fault_slow,
            slow_ms: u64::try_from(self.slow_delay.as_millis()).unwrap_or(u64::MAX),
            drop: self.fault_drop,
            truncate: self.fault_truncate,
            malformed: self.fault_malformed,
        };
        Ok(config)
    }
}

/// This machine's host name, if it is valid in a syslog header (the first
/// label only when the full name has characters syslog disallows).
fn machine_hostname() -> Option<String> {
    let name = gethostname::gethostname().into_string().ok()?;
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic());
    valid.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(args: &[&str]) -> Result<Encoder, ConfigError> {
        let mut argv = vec!["siem-agent", "replay"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("clap accepts the flags");
        let Command::Replay(replay) = cli.command else {
            panic!("parsed as replay")
        };
        replay.format.build()
    }

    #[test]
    fn defaults_build() {
        assert!(format(&[]).is_ok());
        assert!(format(&["--header", "rfc5424"]).is_ok());
    }

    #[test]
    fn rejects_bad_values() {
        assert!(matches!(
            format(&["--agent-version", ""]),
            Err(ConfigError::AgentVersion(_))
        ));
        assert!(matches!(
            format(&["--portal-url", "portal.example.com"]),
            Err(ConfigError::PortalUrl(_))
        ));
        assert!(matches!(
            format(&["--hostname", "two words"]),
            Err(ConfigError::Header(HeaderError::Hostname(_)))
        ));
        assert!(matches!(
            format(&["--facility", "24"]),
            Err(ConfigError::Header(HeaderError::Facility(24)))
        ));
    }

    #[test]
    fn dash_means_stdin() {
        let cli = Cli::try_parse_from(["siem-agent", "replay", "a.json", "-"]).expect("parses");
        let Command::Replay(replay) = cli.command else {
            panic!("parsed as replay")
        };
        let plan = replay.build().expect("valid");
        assert_eq!(
            plan.inputs,
            [InputSource::File("a.json".into()), InputSource::Stdin]
        );
    }
}
