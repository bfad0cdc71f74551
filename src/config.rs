//! Command-line configuration, in two steps: clap parses the arguments into
//! plain structs, then `build()` validates them once into a plan whose
//! fields can be trusted for the rest of the run ("parse, don't validate").

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cef::{DataType, Encoder};
use crate::simulator::server::DEFAULT_TOKEN;
use crate::simulator::{Faults, SimulatorConfig};
use crate::syslog::{HeaderError, HeaderStyle, SyslogHeader, DEFAULT_FACILITY};

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
    /// Serve a simulated Defender for Cloud Apps API on this machine, for
    /// trying the agent, tests and benchmarks without a tenant.
    Simulate(SimulateArgs),
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

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The syslog header options do not fit together.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The agent version must be 1-31 characters (CEF device version).
    #[error("--agent-version {0:?} must be 1 to 31 characters")]
    AgentVersion(String),
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
