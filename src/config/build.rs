//! The second step of configuration: options (flags, the config file)
//! validated once into plans whose fields the rest of the run can trust
//! ("parse, don't validate"). The plan types live here; the pipeline only
//! reads them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use simd_json::prelude::*;
use simd_json::OwnedValue;

use super::cli::{AlertVersionsOption, FormatOptions, ReplayArgs, SyslogOptions, TenantOptions};
use super::ConfigError;
use crate::cef::{Encoder, Mapping};
use crate::data_type::DataType;
use crate::sink::relp::DEFAULT_WINDOW;
use crate::sink::tls::{TlsClient, TlsOptions};
use crate::sink::{Destination, Protocol, SinkPlan};
use crate::source::cas::client::{ClientConfig, Credentials, Secret, DEFAULT_LOGIN_URL};
use crate::source::entra::EntraApp;
use crate::source::graph::client::GraphClientConfig;
use crate::source::graph::request::{AlertVersions, DEFAULT_HUNTING_ROWS, MAX_HUNTING_ROWS};
use crate::source::graph::window::WindowPlan;
use crate::syslog::{
    Framing, HeaderStyle, SyslogHeader, DEFAULT_FACILITY, DEFAULT_UDP_MESSAGE_BYTES,
    MAX_UDP_MESSAGE_BYTES, MIN_MESSAGE_BYTES,
};

/// Microsoft Graph's base URL unless configured.
pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com";
/// How long after its end a Graph window is asked for, unless configured.
pub const DEFAULT_GRAPH_SETTLE: Duration = Duration::from_secs(10 * 60);
/// How far back each Graph poll asks again, unless configured.
pub const DEFAULT_GRAPH_LATE_WINDOW: Duration = Duration::from_secs(3600);
/// The alerts filter unless configured: Defender for Cloud Apps' alerts.
pub const DEFAULT_GRAPH_ALERTS_FILTER: &str = "serviceSource eq 'microsoftDefenderForCloudApps'";
/// Connect timeout of both upstreams.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Whole-request timeout of the legacy API.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Whole-request timeout of Graph (a hunting query may run 3 minutes).
const GRAPH_REQUEST_TIMEOUT: Duration = Duration::from_secs(240);

/// Portal link base used when none is configured.
pub const DEFAULT_PORTAL_URL: &str = "https://portal.cloudappsecurity.com";
/// The agent version written into CEF headers by default.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The longest device version the CEF standard allows (characters).
pub const MAX_AGENT_VERSION_LEN: usize = 31;

/// One tenant, validated.
#[derive(Debug)]
pub struct RunPlan {
    /// Name used for checkpoint and status files, metrics and logs.
    pub tenant: String,
    /// Everything the plan was built from, to tell whether a reloaded
    /// configuration changed this tenant (no secrets in it).
    pub fingerprint: String,
    /// How to reach the legacy API, when a legacy data type is pulled.
    pub client: Option<ClientConfig>,
    /// How to reach Microsoft Graph, when a Graph data type is pulled.
    pub graph: Option<GraphPlan>,
    /// Requests per minute for the tenant (0: unlimited).
    pub requests_per_minute: u32,
    /// Data types to pull, in turn order.
    pub kinds: Vec<DataType>,
    /// Extra API filters per data type.
    pub filters: HashMap<DataType, OwnedValue>,
    /// How far back a first start (or a return from a long stop) reaches.
    pub backfill: Duration,
    /// Wait between polls once a data type has caught up.
    pub poll_interval: Duration,
    /// Consecutive critical failures tolerated.
    pub max_critical_errors: u32,
    /// The CEF encoder.
    pub encoder: Encoder,
    /// Where the lines go.
    pub destination: Destination,
}

/// The Graph data types' settings for one tenant.
#[derive(Debug, Clone)]
pub struct GraphPlan {
    /// How to reach Graph.
    pub client: GraphClientConfig,
    /// How far the windows trail the clock.
    pub windows: WindowPlan,
    /// Which alert versions become lines.
    pub versions: AlertVersions,
    /// OData filter ANDed into every alerts request (may be empty).
    pub alerts_filter: String,
    /// Rows a hunting query asks for.
    pub hunting_rows: u32,
}

/// The whole service, validated.
#[derive(Debug)]
pub struct ServicePlan {
    /// The tenants, names unique.
    pub tenants: Vec<RunPlan>,
    /// Where checkpoints and status files live.
    pub state_dir: PathBuf,
    /// Stop once every data type of every tenant has caught up.
    pub once: bool,
    /// How long a shutdown waits for the receivers to confirm what was
    /// sent before giving up (what is unconfirmed is sent again at the
    /// next start).
    pub shutdown_timeout: Duration,
    /// Where to serve metrics and `/healthz`.
    pub metrics_listen: Option<std::net::SocketAddr>,
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
    /// Threads that parse and encode NDJSON input (1: this thread alone).
    pub threads: usize,
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
                ("--syslog-resend-bytes", self.resend_bytes.is_some()),
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
        let resend_bytes = match (protocol, self.resend_bytes) {
            (Protocol::Tcp | Protocol::Tls, None) => crate::sink::DEFAULT_RESEND_BYTES,
            (Protocol::Tcp | Protocol::Tls, Some(n)) if n > crate::sink::MAX_RESEND_BYTES => {
                return bad(format!(
                    "--syslog-resend-bytes {n}: must be at most {}",
                    crate::sink::MAX_RESEND_BYTES
                ))
            }
            (Protocol::Tcp | Protocol::Tls, Some(n)) => n,
            (_, None) => 0,
            (_, Some(_)) => {
                return bad("--syslog-resend-bytes applies to tcp and tls only (RELP confirms what the receiver stored; UDP confirms nothing)".into())
            }
        };
        Ok(Destination::Syslog(SinkPlan {
            host: host.to_owned(),
            port,
            protocol,
            framing,
            max_message,
            tls,
            relp_window,
            relp_answer_timeout: crate::sink::RELP_ANSWER_TIMEOUT,
            resend_bytes,
        }))
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
            threads: match self.threads {
                Some(threads) => usize::from(threads),
                None => std::thread::available_parallelism().map_or(1, usize::from),
            },
        })
    }
}

/// This machine's host name, if it is valid in a syslog header (the first
/// label only when the full name has characters syslog disallows).
fn machine_hostname() -> Option<String> {
    let name = gethostname::gethostname().into_string().ok()?;
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic());
    valid.then_some(name)
}

/// The longest duration any option may give: waits are added to the
/// clock, and a duration the clock cannot hold would crash a thread.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 366 * 86_400);

/// `value` when it is at most [`MAX_DURATION`].
pub fn bounded(option: &'static str, value: Duration) -> Result<Duration, ConfigError> {
    if value <= MAX_DURATION {
        Ok(value)
    } else {
        Err(ConfigError::DurationTooLong {
            option,
            value: humantime::format_duration(value).to_string(),
            limit: "10 years".to_owned(),
        })
    }
}

/// Validates one tenant's merged options into its plan.
pub fn build_tenant(options: &TenantOptions, fingerprint: String) -> Result<RunPlan, ConfigError> {
    let mut kinds = Vec::new();
    for kind in options
        .data_types
        .clone()
        .unwrap_or_else(|| vec![DataType::Alerts, DataType::Activities])
    {
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    if kinds.is_empty() {
        return Err(ConfigError::NoDataTypes);
    }
    if let Some(output) = &options.output {
        if output != "-" {
            return Err(ConfigError::Output(output.clone()));
        }
    }
    let retry_max_delay = bounded(
        "--retry-max-delay",
        options.retry_max_delay.unwrap_or(Duration::from_secs(60)),
    )?;
    let connection = Connection {
        proxy: options
            .proxy
            .as_deref()
            .map(crate::source::cas::client::parse_proxy)
            .transpose()
            .map_err(ConfigError::Proxy)?,
        ca_pem: match &options.api_ca {
            Some(path) => Some(String::from_utf8_lossy(&read_file("--api-ca", path)?).into_owned()),
            None => None,
        },
        max_attempts: options
            .retry_attempts
            .unwrap_or(crate::source::cas::client::DEFAULT_MAX_ATTEMPTS)
            .max(1),
        backoff_base: Duration::from_millis(500).min(retry_max_delay),
        backoff_cap: retry_max_delay,
    };
    let entra = entra_app(options)?;
    let legacy = kinds.iter().any(|kind| !kind.is_graph());
    let (client, api_host) = if legacy {
        let (client, host) = legacy_client(options, entra.as_ref(), &connection)?;
        (Some(client), Some(host))
    } else {
        (None, None)
    };
    let graph = if kinds.iter().any(|kind| kind.is_graph()) {
        let Some(app) = entra else {
            return Err(ConfigError::GraphCredentials);
        };
        Some(graph_plan(options, app, &connection)?)
    } else {
        None
    };
    let backfill = bounded(
        "--backfill",
        options.backfill.unwrap_or(Duration::from_secs(2 * 86_400)),
    )?;
    let poll_interval = bounded(
        "--poll-interval",
        options.poll_interval.unwrap_or(Duration::from_secs(30)),
    )?;
    let tenant = match (&options.name, api_host, &options.tenant_id) {
        (Some(name), ..) => name.clone(),
        (None, Some(host), _) => host,
        (None, None, Some(directory)) => directory.clone(),
        (None, None, None) => return Err(ConfigError::GraphCredentials),
    };
    Ok(RunPlan {
        tenant,
        fingerprint,
        client,
        graph,
        requests_per_minute: options
            .requests_per_minute
            .unwrap_or(crate::source::budget::DEFAULT_REQUESTS_PER_MINUTE),
        filters: legacy_filters(options)?,
        kinds,
        backfill,
        poll_interval,
        max_critical_errors: options.max_critical_errors.unwrap_or(10),
        encoder: options.format.build()?,
        destination: options.syslog.build()?,
    })
}

/// Connection settings both upstreams' clients share.
struct Connection {
    proxy: Option<String>,
    ca_pem: Option<String>,
    max_attempts: u32,
    backoff_base: Duration,
    backoff_cap: Duration,
}

fn read_file(option: &'static str, path: &PathBuf) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|error| ConfigError::File {
        option,
        path: path.clone(),
        reason: error.to_string(),
    })
}

/// The Entra application, when its three settings are given.
fn entra_app(options: &TenantOptions) -> Result<Option<EntraApp>, ConfigError> {
    let (Some(tenant_id), Some(client_id)) = (&options.tenant_id, &options.client_id) else {
        if options.client_id.is_some()
            || options.client_secret.is_some()
            || options.client_secret_file.is_some()
        {
            return Err(ConfigError::NoCredentials);
        }
        return Ok(None);
    };
    let client_secret = match (&options.client_secret, &options.client_secret_file) {
        (Some(value), None) => Secret::Value(value.clone()),
        (None, Some(file)) => Secret::File(file.clone()),
        _ => return Err(ConfigError::NoCredentials),
    };
    Ok(Some(EntraApp {
        login_url: options
            .login_url
            .clone()
            .unwrap_or_else(|| DEFAULT_LOGIN_URL.to_owned()),
        tenant_id: tenant_id.clone(),
        client_id: client_id.clone(),
        client_secret,
    }))
}

/// The legacy API client's settings, and the API host (the tenant's
/// default name).
fn legacy_client(
    options: &TenantOptions,
    entra: Option<&EntraApp>,
    connection: &Connection,
) -> Result<(ClientConfig, String), ConfigError> {
    let Some(raw_url) = &options.api_url else {
        return Err(ConfigError::Missing {
            key: "api_url",
            flag: "--api-url",
        });
    };
    let api_url = raw_url.trim_end_matches('/').to_owned();
    let host = url_host(&api_url)
        .ok_or_else(|| ConfigError::ApiUrl(raw_url.clone()))?
        .to_owned();
    // A token is the legacy API's own credential; without one, the Entra
    // application (which Graph needs anyway) serves both.
    let credentials = match (&options.token, &options.token_file, entra) {
        (Some(token), None, _) => Credentials::Token(Secret::Value(token.clone())),
        (None, Some(file), _) => Credentials::Token(Secret::File(file.clone())),
        (None, None, Some(app)) => Credentials::Entra {
            login_url: app.login_url.clone(),
            tenant_id: app.tenant_id.clone(),
            client_id: app.client_id.clone(),
            client_secret: app.client_secret.clone(),
        },
        _ => return Err(ConfigError::NoCredentials),
    };
    Ok((
        ClientConfig {
            api_url,
            credentials,
            proxy: connection.proxy.clone(),
            ca_pem: connection.ca_pem.clone(),
            connect_timeout: CONNECT_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            max_attempts: connection.max_attempts,
            backoff_base: connection.backoff_base,
            backoff_cap: connection.backoff_cap,
        },
        host,
    ))
}

/// The host of an `http://` or `https://` URL.
fn url_host(url: &str) -> Option<&str> {
    url.strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .map(|rest| rest.split('/').next().unwrap_or(""))
        .filter(|host| !host.is_empty())
}

/// The Graph data types' settings.
fn graph_plan(
    options: &TenantOptions,
    app: EntraApp,
    connection: &Connection,
) -> Result<GraphPlan, ConfigError> {
    let raw_url = options.graph_url.as_deref().unwrap_or(DEFAULT_GRAPH_URL);
    let graph_url = raw_url.trim_end_matches('/').to_owned();
    if url_host(&graph_url).is_none() {
        return Err(ConfigError::GraphUrl(raw_url.to_owned()));
    }
    let millis = |option: &'static str, value: Option<Duration>, default: Duration| {
        let value = bounded(option, value.unwrap_or(default))?;
        Ok::<_, ConfigError>(i64::try_from(value.as_millis()).unwrap_or(i64::MAX))
    };
    let windows = WindowPlan {
        settle_ms: millis("--graph-settle", options.graph_settle, DEFAULT_GRAPH_SETTLE)?,
        late_ms: millis(
            "--graph-late-window",
            options.graph_late_window,
            DEFAULT_GRAPH_LATE_WINDOW,
        )?,
    };
    let hunting_rows = options
        .cloud_app_events_page_size
        .unwrap_or(DEFAULT_HUNTING_ROWS);
    if !(1..=MAX_HUNTING_ROWS).contains(&hunting_rows) {
        return Err(ConfigError::HuntingRows(hunting_rows));
    }
    Ok(GraphPlan {
        client: GraphClientConfig {
            graph_url,
            app,
            proxy: connection.proxy.clone(),
            ca_pem: connection.ca_pem.clone(),
            connect_timeout: CONNECT_TIMEOUT,
            // A hunting query may run for 3 minutes.
            request_timeout: GRAPH_REQUEST_TIMEOUT,
            max_attempts: connection.max_attempts,
            backoff_base: connection.backoff_base,
            backoff_cap: connection.backoff_cap,
        },
        windows,
        versions: match options.graph_alerts_versions {
            None | Some(AlertVersionsOption::New) => AlertVersions::New,
            Some(AlertVersionsOption::All) => AlertVersions::All,
        },
        alerts_filter: options
            .graph_alerts_filter
            .clone()
            .unwrap_or_else(|| DEFAULT_GRAPH_ALERTS_FILTER.to_owned()),
        hunting_rows,
    })
}

/// The legacy API's extra filters per data type, from files or the config
/// file.
fn legacy_filters(options: &TenantOptions) -> Result<HashMap<DataType, OwnedValue>, ConfigError> {
    let mut filters = HashMap::new();
    for (option, path, kind) in [
        (
            "--activities-filter",
            &options.activities_filter,
            DataType::Activities,
        ),
        ("--alerts-filter", &options.alerts_filter, DataType::Alerts),
    ] {
        let Some(path) = path else { continue };
        let mut bytes = read_file(option, path)?;
        let value = simd_json::to_owned_value(&mut bytes).map_err(|error| ConfigError::File {
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
    for (kind, table) in [
        (DataType::Activities, &options.filters.activities),
        (DataType::Alerts, &options.filters.alerts),
    ] {
        let Some(table) = table else { continue };
        if filters.contains_key(&kind) {
            return Err(ConfigError::TwoFilters(kind.name()));
        }
        let value = simd_json::serde::to_owned_value(table)
            .map_err(|error| ConfigError::Filter(error.to_string()))?;
        filters.insert(kind, value);
    }
    Ok(filters)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::config::cli::{Cli, Command};
    use crate::syslog::HeaderError;

    /// `replay` with `args`, as clap parses them.
    fn replay(args: &[&str]) -> crate::config::cli::ReplayArgs {
        let mut argv = vec!["siem-agent", "replay"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("clap accepts the flags");
        let Some(Command::Replay(replay)) = cli.command else {
            panic!("parsed as replay")
        };
        replay
    }

    fn format(args: &[&str]) -> Result<Encoder, ConfigError> {
        replay(args).format.build()
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

    fn resend_bytes(args: &[&str]) -> Result<usize, String> {
        match replay(args).syslog.build() {
            Ok(Destination::Syslog(plan)) => Ok(plan.resend_bytes),
            Ok(Destination::Stdout) => Err("stdout".into()),
            Err(error) => Err(error.to_string()),
        }
    }

    #[test]
    fn lines_are_sent_again_after_a_reset_over_tcp_and_tls_only() {
        let host = ["--syslog-host", "127.0.0.1"];
        let with = |more: &[&str]| {
            let mut args = host.to_vec();
            args.extend_from_slice(more);
            resend_bytes(&args)
        };
        assert_eq!(with(&[]), Ok(crate::sink::DEFAULT_RESEND_BYTES));
        assert_eq!(with(&["--syslog-resend-bytes", "0"]), Ok(0));
        assert_eq!(
            with(&["--syslog-protocol", "tls", "--syslog-resend-bytes", "65536"]),
            Ok(65536)
        );
        // RELP and UDP keep nothing; asking them to is an error that names
        // the option.
        assert_eq!(with(&["--syslog-protocol", "relp"]), Ok(0));
        assert_eq!(with(&["--syslog-protocol", "udp"]), Ok(0));
        for protocol in ["udp", "relp", "relp-tls"] {
            let error = with(&["--syslog-protocol", protocol, "--syslog-resend-bytes", "1"])
                .expect_err(protocol);
            assert!(
                error.contains("--syslog-resend-bytes applies to tcp and tls only"),
                "{error}"
            );
        }
        let error = with(&["--syslog-resend-bytes", "67108865"]).expect_err("too much");
        assert!(error.contains("must be at most 67108864"), "{error}");
        let error = resend_bytes(&["--syslog-resend-bytes", "1"]).expect_err("no host");
        assert!(
            error.contains("--syslog-resend-bytes needs --syslog-host"),
            "{error}"
        );
    }

    fn graph_tenant() -> TenantOptions {
        TenantOptions {
            data_types: Some(vec![DataType::CloudAppEvents, DataType::GraphAlerts]),
            tenant_id: Some("directory".into()),
            client_id: Some("app".into()),
            client_secret: Some("secret".into()),
            ..TenantOptions::default()
        }
    }

    #[test]
    fn a_graph_only_tenant_needs_no_api_url_but_an_entra_application() {
        let plan = build_tenant(&graph_tenant(), String::new()).expect("valid");
        assert!(plan.client.is_none());
        assert_eq!(plan.tenant, "directory", "named after the directory");
        let graph = plan.graph.expect("Graph settings");
        assert_eq!(graph.client.app.login_url, DEFAULT_LOGIN_URL);
        assert_eq!(graph.versions, AlertVersions::New);
        // A token serves the legacy API only.
        let token_only = TenantOptions {
            tenant_id: None,
            client_id: None,
            client_secret: None,
            token: Some("t".into()),
            ..graph_tenant()
        };
        assert!(matches!(
            build_tenant(&token_only, String::new()),
            Err(ConfigError::GraphCredentials)
        ));
        // With a legacy type too, the legacy API uses the token and Graph
        // the application.
        let mixed = TenantOptions {
            data_types: Some(vec![DataType::Alerts, DataType::GraphAlerts]),
            api_url: Some("https://contoso.portal.cloudappsecurity.com".into()),
            token: Some("t".into()),
            ..graph_tenant()
        };
        let plan = build_tenant(&mixed, String::new()).expect("valid");
        assert!(matches!(
            plan.client.map(|c| c.credentials),
            Some(Credentials::Token(_))
        ));
        assert!(plan.graph.is_some());
    }

    #[test]
    fn graph_settings_out_of_range_are_refused_by_name() {
        for (options, flag) in [
            (
                TenantOptions {
                    cloud_app_events_page_size: Some(100_001),
                    ..graph_tenant()
                },
                "--cloud-app-events-page-size",
            ),
            (
                TenantOptions {
                    cloud_app_events_page_size: Some(0),
                    ..graph_tenant()
                },
                "--cloud-app-events-page-size",
            ),
            (
                TenantOptions {
                    graph_url: Some("graph.microsoft.com".into()),
                    ..graph_tenant()
                },
                "--graph-url",
            ),
            (
                TenantOptions {
                    graph_late_window: Some(Duration::from_secs(u64::MAX / 2)),
                    ..graph_tenant()
                },
                "--graph-late-window",
            ),
        ] {
            let error = build_tenant(&options, String::new()).expect_err(flag);
            assert!(error.to_string().contains(flag), "{error}");
        }
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
