//! `siem-agent run` (and no subcommand): the agent as a service, with its
//! config file and flags, signals (SIGTERM and SIGINT stop it cleanly, a
//! second one at once; SIGHUP reloads) and a watched config file.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use siem_agent::config::{file, RunArgs};
use siem_agent::{exit, logging, pipeline};

use super::valid;

/// Runs the service until it is stopped or fails; its exit status.
pub(crate) fn run(args: RunArgs) -> u8 {
    let (plan, log) = match valid(file::load(&args)) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    if let Err(error) = logging::init(&log) {
        eprintln!("siem-agent: {error}");
        return exit::BAD_OPTIONS;
    }
    let mut control = pipeline::Control::default();
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // A second signal while shutting down exits at once.
        let registered = signal_hook::flag::register_conditional_shutdown(
            signal,
            1,
            Arc::clone(&control.terminate),
        )
        .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&control.terminate)));
        if let Err(error) = registered {
            eprintln!("siem-agent: cannot handle signal {signal}: {error}");
        }
    }
    if let Err(error) =
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&control.reload))
    {
        eprintln!("siem-agent: cannot handle SIGHUP: {error}");
    }
    control.watch = file::config_path(&args).into_iter().collect();
    let first_log = log;
    control.rebuild = Some(Box::new(move || {
        let (plan, log) = file::load(&args).map_err(|error| error.to_string())?;
        if log != first_log {
            tracing::warn!("log settings changed: they take effect at the next start");
        }
        Ok(plan)
    }));
    let tenants = plan.tenants.len();
    tracing::info!(
        "siem-agent {} starting: {tenants} tenant(s), state in {}",
        env!("CARGO_PKG_VERSION"),
        plan.state_dir.display()
    );
    let stopped = control.terminate.clone();
    match pipeline::serve(plan, control) {
        Ok(summary) => {
            let why = if stopped.load(Ordering::SeqCst) {
                "stopped by signal"
            } else {
                "done"
            };
            tracing::info!(
                "{why}: {} records in {} pages",
                summary.records,
                summary.pages
            );
            exit::OK
        }
        Err(error) => {
            tracing::error!("{error}");
            error.exit_code()
        }
    }
}
