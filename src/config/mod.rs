//! Configuration, in two steps: clap (and serde, for the config file)
//! parse the arguments into plain structs, then `build()` validates them
//! once into a plan whose fields can be trusted for the rest of the run
//! ("parse, don't validate"). [`mod@file`] reads the config file and lays the
//! flags over it.

pub mod file;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cef::{Encoder, Mapping};
use simd_json::prelude::*;

use serde::{Deserialize, Serialize};

use crate::data_type::DataType;
use crate::pipeline::{RunPlan, ServicePlan};
use crate::simulator::server::DEFAULT_TOKEN;
use crate::simulator::{Faults, SimulatorConfig};
use crate::sink::relp::DEFAULT_WINDOW;
use crate::sink::tls::{TlsClient, TlsOptions, TlsSetupError};
use crate::sink::{Destination, Protocol, SinkPlan};
use crate::source::cas::client::{ClientConfig, Credentials, Secret};
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

/// The command line. Without a subcommand it runs the agent, so the
/// vendor agent's start-up line (`--token TOKEN [--proxy ADDRESS[:PORT]]
/// [--logsDirectory DIRNAME]`) works with the program name swapped.
#[derive(Debug, Parser)]
#[command(
    name = "siem-agent",
    version,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do (default: run the agent).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of the default command, `run`.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pull alerts and activities from the API and deliver them as CEF
    /// (the default when no subcommand is given).
    Run(Box<RunArgs>),
    /// Print the state of each tenant from the status files of a state
    /// directory.
    Status(StatusArgs),
    /// Turn saved API records (JSON pages, arrays, records or NDJSON) into
    /// CEF lines on stdout.
    Replay(ReplayArgs),
    /// Run the agent against a built-in simulated tenant: no credentials
    /// needed. Prints the CEF lines of its backfill, then exits (or keeps
    /// tailing with --follow).
    Demo(DemoArgs),
    /// Serve a simulated Defender for Cloud Apps API on this machine, for
    /// trying the agent, tests and benchmarks without a tenant.
    Simulate(SimulateArgs),
}

/// Options of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The agent's state directory.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// State directory used when none is configured.
pub const DEFAULT_STATE_DIR: &str = "siem-agent-state";
/// Config file read when `--config` is not given and the file exists.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/siem-agent/siem-agent.toml";
/// How long a shutdown waits for receivers by default.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of `run` (and of the bare command line).
#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    /// Config file (TOML); flags override it [default:
    /// /etc/siem-agent/siem-agent.toml when it exists].
    #[arg(long, short = 'c', value_name = "FILE", env = "SIEM_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Options of the whole process.
    #[command(flatten)]
    pub service: ServiceOptions,
    /// Options of the tenant (of every tenant, for the delivery and format
    /// options, when the config file lists several).
    #[command(flatten)]
    pub tenant: TenantOptions,
}

/// Options of the whole process (the top level of the config file).
#[derive(Debug, Args, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceOptions {
    /// Directory for checkpoints and status files (created, mode 0700)
    /// [default: siem-agent-state].
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    /// Also write logs to files in DIRNAME, rotated by size.
    #[arg(
        long = "logsDirectory",
        alias = "logs-directory",
        value_name = "DIRNAME"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs_directory: Option<PathBuf>,
    /// Size at which a log file is rotated [default: 10 MiB].
    #[arg(long, value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_file_bytes: Option<u64>,
    /// Rotated log files kept besides the current one [default: 5].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_files: Option<usize>,
    /// Log level: error, warn, info, debug or trace [default: info].
    #[arg(long, value_name = "LEVEL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Serve Prometheus metrics on /metrics and health on /healthz.
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// How long a shutdown waits for receivers to confirm what was sent
    /// [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub shutdown_timeout: Option<Duration>,
    /// Exit once every data type has caught up (one-shot export).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub once: bool,
}

/// Options of one tenant: a `[[tenant]]` table of the config file, the
/// `[defaults]` table, or flags.
#[derive(Debug, Args, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantOptions {
    /// Name for this tenant's checkpoint and status files, metrics and logs
    /// [default: the API host].
    #[arg(long = "tenant", value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The tenant's API base URL, e.g. `https://contoso.eu2.portal.cloudappsecurity.com`.
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// API token (prefer --token-file: command lines are visible to other users).
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// File holding the API token; re-read on every request, so a rotated
    /// token is picked up without a restart.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Entra directory (tenant) id, for application credentials.
    #[arg(long, value_name = "ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Entra application (client) id.
    #[arg(long, value_name = "ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Entra client secret (prefer --client-secret-file).
    #[arg(long, value_name = "SECRET", conflicts_with = "client_secret_file")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// File holding the Entra client secret.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    /// Entra login base URL, for sovereign clouds [default:
    /// `https://login.microsoftonline.com`].
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_url: Option<String>,
    /// Data types to pull, comma-separated [default: alerts,activities].
    #[arg(long, value_delimiter = ',', value_parser = parse_kind)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_types: Option<Vec<DataType>>,
    /// How far back the first start reaches, e.g. 2d or 36h [default: 2d].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub backfill: Option<Duration>,
    /// Wait between polls once caught up [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub poll_interval: Option<Duration>,
    /// Requests per minute for this tenant, shared by all data types (the
    /// API allows 30; 0 means no limit, for simulators only) [default: 25].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// HTTP proxy, as ADDRESS or ADDRESS:PORT (port 8080 when omitted).
    #[arg(long, value_name = "ADDRESS[:PORT]")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Extra CA certificate (PEM) to trust for the API.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_ca: Option<PathBuf>,
    /// File with extra API filters for activities (a JSON filter object).
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activities_filter: Option<PathBuf>,
    /// File with extra API filters for alerts.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts_filter: Option<PathBuf>,
    /// API filters written in the config file (`[tenant.filters.activities]`).
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Filters::is_empty")]
    pub filters: Filters,
    /// Where the CEF lines go without a syslog host; `-` is stdout.
    #[arg(long, value_name = "-")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Tries per page (429, 5xx, network errors, malformed pages) before the
    /// failure counts as critical [default: 8].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_attempts: Option<u32>,
    /// Longest wait between two tries [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_max_delay: Option<Duration>,
    /// Consecutive critical failures before giving up (exit 75) [default: 10].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_critical_errors: Option<u32>,
    /// How the records are formatted.
    #[command(flatten)]
    #[serde(default, skip_serializing_if = "FormatOptions::is_empty")]
    pub format: FormatOptions,
    /// Where the lines go (stdout unless a syslog host is given).
    #[command(flatten)]
    #[serde(default, skip_serializing_if = "SyslogOptions::is_empty")]
    pub syslog: SyslogOptions,
}

/// API filters per data type, as TOML tables (the API's JSON filter
/// objects, written in TOML).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    /// Filters for activities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activities: Option<toml::Table>,
    /// Filters for alerts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts: Option<toml::Table>,
}

impl Filters {
    fn is_empty(&self) -> bool {
        self.activities.is_none() && self.alerts.is_none()
    }
}

fn parse_kind(text: &str) -> Result<DataType, String> {
    match text.trim() {
        "activities" => Ok(DataType::Activities),
        "alerts" => Ok(DataType::Alerts),
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
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// How the records are formatted.
    #[command(flatten)]
    pub format: FormatOptions,
    /// Where the lines go (stdout unless a syslog host is given).
    #[command(flatten)]
    pub syslog: SyslogOptions,
}

impl DemoArgs {
    /// The simulator configuration and a plan pointing at it; the caller
    /// fills in the simulator's URL once it listens.
    pub fn build(&self, state_dir: PathBuf) -> Result<(SimulatorConfig, ServicePlan), ConfigError> {
        if self.activities_per_minute == 0 {
            return Err(ConfigError::ZeroRate("activities-per-minute"));
        }
        let mut simulator = SimulatorConfig::new(crate::clock::now_ms(), self.history);
        simulator.requests_per_minute = None;
        simulator.activities.per_minute = self.activities_per_minute;
        simulator.activities.max_index_delay_ms = 30_000;
        let tenant = RunPlan {
            tenant: "demo".to_owned(),
            fingerprint: String::new(),
            client: ClientConfig {
                api_url: String::new(),
                credentials: Credentials::Token(Secret::Value(simulator.token.clone())),
                proxy: None,
                ca_pem: None,
                connect_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(60),
                max_attempts: crate::source::cas::client::DEFAULT_MAX_ATTEMPTS,
                backoff_base: Duration::from_millis(200),
                backoff_cap: Duration::from_secs(5),
            },
            requests_per_minute: 0,
            kinds: vec![DataType::Alerts, DataType::Activities],
            filters: HashMap::new(),
            backfill: self.history + Duration::from_secs(60),
            poll_interval: Duration::from_secs(5),
            max_critical_errors: 10,
            encoder: self.format.build()?,
            destination: self.syslog.build()?,
        };
        let plan = ServicePlan {
            tenants: vec![tenant],
            state_dir,
            once: !self.follow,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            metrics_listen: None,
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
    /// Render the whole history at start-up and serve stored bytes
    /// (about 1.3 KB of memory per record): for benchmarks, so that the
    /// simulator leaves the CPU to the agent.
    #[arg(long)]
    pub pregenerate: bool,
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
    pub format: FormatOptions,
    /// Where the lines go (stdout unless a syslog host is given).
    #[command(flatten)]
    pub syslog: SyslogOptions,
}

/// Options that shape each CEF line, shared by every command that emits
/// them (the `[format]` table of a tenant in the config file).
#[derive(Debug, Args, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatOptions {
    /// Which mapping to use: per record (`auto`) or for all records
    /// [default: auto].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_type: Option<Mapping>,
    /// Device version in the CEF header; pin it to what your parsers expect
    /// [default: this agent's version].
    #[arg(long, value_name = "V")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// Portal base URL for the links in `cs1` [default:
    /// `https://portal.cloudappsecurity.com`].
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portal_url: Option<String>,
    /// Syslog header style in front of each CEF line [default: iso].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderStyle>,
    /// Host name in the header (default: none for `iso`, this machine's name
    /// for the RFC styles).
    #[arg(long, value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Syslog facility number for the PRI (0-23; 16 is local0) [default: 16].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facility: Option<u8>,
}

impl FormatOptions {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Where the CEF lines go: a syslog receiver, or stdout when no host is
/// given (the `[syslog]` table of a tenant in the config file).
#[derive(Debug, Args, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogOptions {
    /// Syslog receiver (host name or IP address); without it, lines go to
    /// stdout.
    #[arg(long = "syslog-host", value_name = "HOST")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Receiver port [default: 514 for udp and tcp, 6514 for tls, 2514 for
    /// relp].
    #[arg(long = "syslog-port", value_name = "PORT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Transport: udp (no delivery guarantee), tcp and tls (confirmed by the
    /// receiver's TCP stack), relp and relp-tls (confirmed by the receiver)
    /// [default: tcp].
    #[arg(long = "syslog-protocol", value_enum, value_name = "PROTOCOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Framing on tcp and tls [default: lf for tcp, octet-counting for tls].
    #[arg(long = "syslog-framing", value_enum, value_name = "FRAMING")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub framing: Option<Framing>,
    /// Longest message in bytes; longer ones are cut on a character boundary
    /// and counted [default: 2048 for udp, no limit otherwise].
    #[arg(long = "syslog-max-message", value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_message: Option<usize>,
    /// CA certificates (PEM) to verify the receiver with, instead of the
    /// system's trust store (tls, relp-tls).
    #[arg(long = "syslog-ca", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long = "syslog-client-cert", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long = "syslog-client-key", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
    /// RELP messages sent and not yet acknowledged, at most [default: 128].
    #[arg(long = "relp-window", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relp_window: Option<usize>,
}

impl SyslogOptions {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl SyslogOptions {
    /// Validates the options into a destination.
    pub fn build(&self) -> Result<Destination, ConfigError> {
        let Some(host) = &self.host else {
            let without_host = [
                ("--syslog-port", self.port.is_some()),
                ("--syslog-protocol", self.protocol.is_some()),
                ("--syslog-framing", self.framing.is_some()),
                ("--syslog-max-message", self.max_message.is_some()),
                ("--syslog-ca", self.ca.is_some()),
                ("--syslog-client-cert", self.client_cert.is_some()),
                ("--syslog-client-key", self.client_key.is_some()),
                ("--relp-window", self.relp_window.is_some()),
            ];
            if let Some((option, _)) = without_host.iter().find(|(_, set)| *set) {
                return Err(ConfigError::Syslog(format!("{option} needs --syslog-host")));
            }
            return Ok(Destination::Stdout);
        };
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(ConfigError::Syslog(
                "--syslog-client-cert and --syslog-client-key go together".into(),
            ));
        }
        let bad = |why: String| Err(ConfigError::Syslog(why));
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad(format!(
                "--syslog-host {host:?} is not a host name or address"
            ));
        }
        let protocol = self.protocol.unwrap_or(Protocol::Tcp);
        let port = self.port.unwrap_or(protocol.default_port());
        if port == 0 {
            return bad("--syslog-port must be 1-65535".into());
        }
        let framing = match (protocol, self.framing) {
            (Protocol::Tcp | Protocol::Tls, Some(framing)) => framing,
            (Protocol::Tcp, None) => Framing::Lf,
            (Protocol::Tls, None) => Framing::OctetCounting,
            (_, None) => Framing::Lf,
            (_, Some(_)) => {
                return bad("--syslog-framing applies to tcp and tls only (udp sends one message per datagram; RELP frames its own)".into())
            }
        };
        let max_message = match (protocol, self.max_message) {
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
            ca_file: self.ca.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
        };
        let tls = if protocol.uses_tls() {
            Some(TlsClient::build(host, &tls_options)?)
        } else {
            if self.ca.is_some() || self.client_cert.is_some() {
                return bad(
                    "--syslog-ca and --syslog-client-cert need --syslog-protocol tls or relp-tls"
                        .into(),
                );
            }
            None
        };
        let relp_window = self.relp_window.unwrap_or(DEFAULT_WINDOW);
        if relp_window == 0 || relp_window > 100_000 {
            return bad(format!("--relp-window {relp_window} must be 1 to 100000"));
        }
        Ok(Destination::Syslog(SinkPlan {
            host: host.to_owned(),
            port,
            protocol,
            framing,
            max_message,
            tls,
            relp_window,
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
                const KEYS: [(&str, &str); 9] = [
                    ("--syslog-host", "syslog.host"),
                    ("--syslog-port", "syslog.port"),
                    ("--syslog-protocol", "syslog.protocol"),
                    ("--syslog-framing", "syslog.framing"),
                    ("--syslog-max-message", "syslog.max_message"),
                    ("--syslog-ca", "syslog.ca"),
                    ("--syslog-client-cert", "syslog.client_cert"),
                    ("--syslog-client-key", "syslog.client_key"),
                    ("--relp-window", "syslog.relp_window"),
                ];
                let flag = message.split([' ', ':']).next().unwrap_or("");
                KEYS.iter()
                    .find(|(name, _)| *name == flag)
                    .map_or("syslog", |(_, key)| *key)
            }
            ConfigError::SyslogTls(_) => "syslog",
            ConfigError::Output(_) => "output",
            ConfigError::ApiUrl(_) => "api_url",
            ConfigError::Missing { key, .. } => key,
            ConfigError::DuplicateTenant(_) => "name",
            ConfigError::TwoFilters(_) | ConfigError::Filter(_) => "filters",
            ConfigError::NoDataTypes => "data_types",
            _ => return None,
        })
    }
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

impl FormatOptions {
    /// Validates the options into an encoder.
    pub fn build(&self) -> Result<Encoder, ConfigError> {
        let version = self.agent_version.as_deref().unwrap_or(AGENT_VERSION);
        if version.is_empty() || version.chars().count() > MAX_AGENT_VERSION_LEN {
            return Err(ConfigError::AgentVersion(version.to_owned()));
        }
        let portal = self.portal_url.as_deref().unwrap_or(DEFAULT_PORTAL_URL);
        let has_host = portal
            .strip_prefix("https://")
            .or_else(|| portal.strip_prefix("http://"))
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
        if !has_host || portal.chars().any(char::is_control) {
            return Err(ConfigError::PortalUrl(portal.to_owned()));
        }
        let style = self.header.unwrap_or(HeaderStyle::Iso);
        let hostname = match (&self.hostname, style) {
            (Some(name), _) => Some(name.clone()),
            (None, HeaderStyle::Rfc3164 | HeaderStyle::Rfc5424) => machine_hostname(),
            (None, _) => None,
        };
        let facility = self.facility.unwrap_or(DEFAULT_FACILITY);
        let header = SyslogHeader::new(style, hostname, facility)?;
        Ok(Encoder::new(
            version,
            portal,
            header,
            self.data_type.unwrap_or(Mapping::Auto),
        ))
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
        let mut config = SimulatorConfig::new(crate::clock::now_ms(), self.history);
        config.listen = self.listen;
        config.tls = self.tls;
        config.token = self.token.clone();
        config.requests_per_minute =
            (self.requests_per_minute > 0).then_some(self.requests_per_minute);
        config.retry_after_seconds = self.retry_after;
        config.rate_window = self.rate_window;
        config.fault_seed = self.seed;
        config.pregenerate = self.pregenerate;
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
        let Some(Command::Replay(replay)) = cli.command else {
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
        let Some(Command::Replay(replay)) = cli.command else {
            panic!("parsed as replay")
        };
        let plan = replay.build().expect("valid");
        assert_eq!(
            plan.inputs,
            [InputSource::File("a.json".into()), InputSource::Stdin]
        );
    }
}
