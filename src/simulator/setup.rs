//! Turning the `demo` and `simulate` options into a simulator (and, for the
//! demo, a plan that points the agent at it). Here rather than in
//! [`crate::config`] because the simulator depends on the crate, never the
//! other way round.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::{Faults, SimulatorConfig};
use crate::config::cli::DEFAULT_SHUTDOWN_TIMEOUT;
use crate::config::{ConfigError, DemoArgs, GraphPlan, RunPlan, ServicePlan, SimulateArgs};
use crate::source::cas::client::{ClientConfig, Credentials, Secret, DEFAULT_MAX_ATTEMPTS};
use crate::source::entra::EntraApp;
use crate::source::graph::client::GraphClientConfig;
use crate::source::graph::request::{AlertVersions, DEFAULT_HUNTING_ROWS};
use crate::source::graph::window::WindowPlan;

/// The demo's Graph windows settle for as long as the simulated records
/// may take to become visible.
const DEMO_SETTLE_MS: i64 = 30_000;

/// The simulator configuration and a plan pointing at it for `demo`; the
/// caller fills in the simulator's URL once it listens.
pub fn demo(
    args: &DemoArgs,
    state_dir: PathBuf,
) -> Result<(SimulatorConfig, ServicePlan), ConfigError> {
    if args.activities_per_minute == 0 {
        return Err(ConfigError::ZeroRate("activities-per-minute"));
    }
    let mut simulator = SimulatorConfig::new(crate::clock::now_ms(), args.history);
    simulator.requests_per_minute = None;
    simulator.activities.per_minute = args.activities_per_minute;
    simulator.activities.max_index_delay_ms = 30_000;
    let connection = (
        Duration::from_secs(5),
        Duration::from_millis(200),
        Duration::from_secs(5),
    );
    let mut kinds = Vec::new();
    for &kind in &args.data_types {
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    if kinds.is_empty() {
        return Err(ConfigError::NoDataTypes);
    }
    let client = kinds.iter().any(|k| !k.is_graph()).then(|| ClientConfig {
        api_url: String::new(),
        credentials: Credentials::Token(Secret::Value(simulator.token.clone())),
        proxy: None,
        ca_pem: None,
        connect_timeout: connection.0,
        request_timeout: Duration::from_secs(60),
        max_attempts: DEFAULT_MAX_ATTEMPTS,
        backoff_base: connection.1,
        backoff_cap: connection.2,
    });
    let graph = kinds.iter().any(|k| k.is_graph()).then(|| GraphPlan {
        client: GraphClientConfig {
            graph_url: String::new(),
            app: EntraApp {
                login_url: String::new(),
                tenant_id: "demo".to_owned(),
                client_id: simulator.client_id.clone(),
                client_secret: Secret::Value(simulator.client_secret.clone()),
            },
            proxy: None,
            ca_pem: None,
            connect_timeout: connection.0,
            request_timeout: Duration::from_secs(60),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_base: connection.1,
            backoff_cap: connection.2,
        },
        // The simulated records become visible up to 30 s late.
        windows: WindowPlan {
            settle_ms: DEMO_SETTLE_MS,
            late_ms: 4 * DEMO_SETTLE_MS,
        },
        versions: AlertVersions::New,
        alerts_filter: String::new(),
        hunting_rows: DEFAULT_HUNTING_ROWS,
    });
    let tenant = RunPlan {
        tenant: "demo".to_owned(),
        fingerprint: String::new(),
        client,
        graph,
        requests_per_minute: 0,
        kinds,
        filters: HashMap::new(),
        backfill: args.history + Duration::from_secs(60),
        poll_interval: Duration::from_secs(5),
        max_critical_errors: 10,
        encoder: args.format.build()?,
        destination: args.syslog.build()?,
    };
    let plan = ServicePlan {
        tenants: vec![tenant],
        state_dir,
        once: !args.follow,
        shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        metrics_listen: None,
    };
    Ok((simulator, plan))
}

/// Validates the options of `simulate` into a simulator configuration.
pub fn simulate(args: &SimulateArgs) -> Result<SimulatorConfig, ConfigError> {
    for (name, p) in [
        ("fault-5xx", args.fault_5xx),
        ("fault-slow", args.fault_slow),
        ("fault-drop", args.fault_drop),
        ("fault-truncate", args.fault_truncate),
        ("fault-malformed", args.fault_malformed),
    ] {
        if !(0.0..=1.0).contains(&p) {
            return Err(ConfigError::Probability(name, p));
        }
    }
    if args.activities_per_minute == 0 {
        return Err(ConfigError::ZeroRate("activities-per-minute"));
    }
    if args.alerts_per_minute == 0 {
        return Err(ConfigError::ZeroRate("alerts-per-minute"));
    }
    let mut config = SimulatorConfig::new(crate::clock::now_ms(), args.history);
    config.listen = args.listen;
    config.tls = args.tls;
    config.token = args.token.clone();
    config.requests_per_minute = (args.requests_per_minute > 0).then_some(args.requests_per_minute);
    config.retry_after_seconds = args.retry_after;
    config.rate_window = args.rate_window;
    config.fault_seed = args.seed;
    config.pregenerate = args.pregenerate;
    let delay = i64::try_from(args.max_index_delay.as_millis()).unwrap_or(i64::MAX / 4);
    for (stream, per_minute, salt) in [
        (&mut config.activities, args.activities_per_minute, 0),
        (&mut config.alerts, args.alerts_per_minute, 1),
    ] {
        stream.seed = args.seed.wrapping_mul(2).wrapping_add(salt);
        stream.per_minute = per_minute;
        stream.max_index_delay_ms = delay;
    }
    config.faults = Faults {
        server_error: args.fault_5xx,
        slow: args.fault_slow,
        slow_ms: u64::try_from(args.slow_delay.as_millis()).unwrap_or(u64::MAX),
        drop: args.fault_drop,
        truncate: args.fault_truncate,
        malformed: args.fault_malformed,
    };
    Ok(config)
}
