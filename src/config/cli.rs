//! The command line: clap definitions for every subcommand, and the option
//! structs that the config file shares with the flags (they derive both
//! clap's `Args` and serde's traits, so a flag and a key cannot drift
//! apart). Nothing here is validated; [`super::build`] does that.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

use crate::cef::Mapping;
use crate::data_type::DataType;
use crate::sink::Protocol;
use crate::syslog::{Framing, HeaderStyle};

/// The API token the simulator accepts unless told otherwise (the demo
/// uses it too).
pub const DEFAULT_SIMULATOR_TOKEN: &str =
    "simulator-token-0123456789abcdef0123456789abcdef0123456789abcdef0123";

/// This build's version and the commit it was built from (see `build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SIEM_AGENT_COMMIT"),
    ")"
);

/// The command line. Without a subcommand it runs the agent, so the
/// vendor agent's start-up line (`--token TOKEN [--proxy ADDRESS[:PORT]]
/// [--logsDirectory DIRNAME]`) works with the program name swapped.
#[derive(Debug, Parser)]
#[command(
    name = "siem-agent",
    version = VERSION,
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
    /// Print a shell completion script (bash, zsh, fish, elvish or
    /// powershell) to stdout.
    Completions(CompletionsArgs),
    /// Write the manual pages (siem-agent.1 and one per subcommand), made
    /// from the same definitions as the options.
    Man(ManArgs),
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
    #[arg(long, value_name = "BYTES", value_parser = in_config_range::<u64>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_file_bytes: Option<u64>,
    /// Rotated log files kept besides the current one [default: 5].
    #[arg(long, value_name = "N", value_parser = in_config_range::<usize>)]
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
    /// Data types to pull, comma-separated: alerts, activities (the legacy
    /// API), graph-alerts, cloud-app-events (Microsoft Graph) [default:
    /// alerts,activities].
    #[arg(long, value_delimiter = ',', value_parser = parse_kind)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_types: Option<Vec<DataType>>,
    /// Microsoft Graph base URL, for national clouds [default:
    /// `https://graph.microsoft.com`].
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graph_url: Option<String>,
    /// Graph data types: a time window is asked for once this long has
    /// passed its end, so records that show up a little late are in it
    /// [default: 10m].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub graph_settle: Option<Duration>,
    /// Graph data types: every poll asks again for this span before the
    /// new window, to catch records that showed up later still; records
    /// later than settle + late window are missed [default: 1h].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub graph_late_window: Option<Duration>,
    /// graph-alerts: `new` for one line per alert (windows over the
    /// creation time), `all` for one line per version (over the update
    /// time) [default: new].
    #[arg(long, value_name = "new|all")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graph_alerts_versions: Option<AlertVersionsOption>,
    /// graph-alerts: an OData filter ANDed into every request; "" for the
    /// alerts of every product [default: serviceSource eq
    /// 'microsoftDefenderForCloudApps'].
    #[arg(long, value_name = "FILTER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graph_alerts_filter: Option<String>,
    /// cloud-app-events: rows a hunting query asks for (`take`); a full
    /// answer splits its window [default: 10000, at most 100000].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_app_events_page_size: Option<u32>,
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
    let text = text.trim();
    DataType::from_name(text).ok_or_else(|| {
        format!("{text:?}: expected alerts, activities, graph-alerts or cloud-app-events")
    })
}

/// `graph_alerts_versions`: which alert versions become lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertVersionsOption {
    /// One line per alert, when it is created.
    New,
    /// One line per version: again each time the alert is updated.
    All,
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
    /// Data types to show, comma-separated: alerts, activities,
    /// graph-alerts, cloud-app-events.
    #[arg(long, value_delimiter = ',', value_parser = parse_kind, default_value = "alerts,activities")]
    pub data_types: Vec<DataType>,
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
    #[arg(long, default_value = DEFAULT_SIMULATOR_TOKEN)]
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

/// The largest number an option may have: the config file (TOML) holds
/// integers up to `i64::MAX`, and flags are laid over the file's values in
/// that format.
pub const MAX_OPTION_NUMBER: u64 = i64::MAX as u64;

/// Parses a count or size that must fit the config format.
fn in_config_range<T: TryFrom<u64>>(text: &str) -> Result<T, String> {
    let number: u64 = text
        .trim()
        .parse()
        .map_err(|error| format!("{text:?}: {error}"))?;
    if number > MAX_OPTION_NUMBER {
        return Err(format!("{number} is larger than {MAX_OPTION_NUMBER}"));
    }
    T::try_from(number).map_err(|_| format!("{number} is too large"))
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
    /// Threads that parse and encode NDJSON input, 1-256; the lines come
    /// out in input order whatever the number [default: the cores
    /// available].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
}

/// Options of `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Options of `man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory the pages are written to (created if missing); without
    /// it, siem-agent.1 goes to stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
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
    #[arg(long = "syslog-max-message", value_name = "BYTES", value_parser = in_config_range::<usize>)]
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
    #[arg(long = "relp-window", value_name = "N", value_parser = in_config_range::<usize>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relp_window: Option<usize>,
    /// tcp and tls: when a busy connection ends, the lines it acknowledged
    /// in its last 10 s are sent again, up to this many bytes, since the
    /// receiver may not have read them; 0 sends none again
    /// [default: 4194304].
    #[arg(long = "syslog-resend-bytes", value_name = "BYTES", value_parser = in_config_range::<usize>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resend_bytes: Option<usize>,
}

impl SyslogOptions {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}
