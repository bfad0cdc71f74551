//! The `siem-agent` binary: parse arguments, build the plan, run, exit.

use std::io::{self, IsTerminal as _};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use siem_agent::config::file::{self, LogPlan};
use siem_agent::config::{Cli, Command, ConfigError, DemoArgs, RunArgs, StatusArgs};
use siem_agent::simulator::{Simulator, SimulatorConfig};
use siem_agent::{logging, pipeline, replay, status};

/// Exit status for options that parse but do not make a valid plan (the same
/// status clap uses for a malformed command line).
const EXIT_BAD_OPTIONS: u8 = 2;

fn main() -> ExitCode {
    siem_agent::memory::bound_heap_growth();
    let cli = Cli::parse();
    match cli.command {
        None => run(cli.run),
        Some(Command::Run(args)) => run(*args),
        Some(Command::Status(args)) => show_status(&args),
        Some(Command::Replay(args)) => {
            let plan = match valid(args.build()) {
                Ok(plan) => plan,
                Err(code) => return code,
            };
            logging::init_stderr("info");
            let summary = replay::run(plan, &mut io::stdout().lock(), &mut io::stderr());
            ExitCode::from(summary.exit_code())
        }
        Some(Command::Demo(args)) => match demo(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("siem-agent: demo: {error:#}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Simulate(args)) => match valid(args.build()) {
            Ok(config) => match simulate(config, args.write_ca.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("siem-agent: simulate: {error:#}");
                    ExitCode::FAILURE
                }
            },
            Err(code) => code,
        },
    }
}

/// The built plan, or the exit status after reporting why the options do not
/// make one.
fn valid<T>(built: Result<T, ConfigError>) -> Result<T, ExitCode> {
    built.map_err(|error| {
        eprintln!("siem-agent: {error}");
        ExitCode::from(EXIT_BAD_OPTIONS)
    })
}

/// Runs the agent as a service: config file and flags, signals, reloads.
fn run(args: RunArgs) -> ExitCode {
    let (plan, log) = match valid(file::load(&args)) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    if let Err(error) = logging::init(&log) {
        eprintln!("siem-agent: {error}");
        return ExitCode::from(EXIT_BAD_OPTIONS);
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
    let first_log = log.clone();
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
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// Prints the status files of a state directory.
fn show_status(args: &StatusArgs) -> ExitCode {
    let reports = match status::read_reports(&args.state_dir) {
        Ok(reports) => reports,
        Err(error) => {
            eprintln!("siem-agent: status: {error}");
            return ExitCode::FAILURE;
        }
    };
    let now = siem_agent::clock::now_ms();
    let reports: Vec<_> = reports.into_iter().map(|r| r.at(now)).collect();
    if args.json {
        match simd_json::to_string_pretty(&reports) {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("siem-agent: status: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", status::render_text(&reports, now));
    }
    ExitCode::SUCCESS
}

/// Runs the simulator until the process is stopped.
fn simulate(config: SimulatorConfig, write_ca: Option<&std::path::Path>) -> anyhow::Result<()> {
    let listen = config.listen;
    let token = config.token.clone();
    let simulator =
        Simulator::start(config).with_context(|| format!("cannot listen on {listen}"))?;
    if let (Some(path), Some(pem)) = (write_ca, simulator.ca_pem()) {
        std::fs::write(path, pem)
            .with_context(|| format!("cannot write the CA to {}", path.display()))?;
        eprintln!(
            "siem-agent: simulate: CA certificate written to {}",
            path.display()
        );
    }
    eprintln!(
        "siem-agent: simulate: serving {} (token: {token}); stop with Ctrl-C",
        simulator.url()
    );
    loop {
        std::thread::park();
    }
}

/// Runs the agent against an in-process simulator, with throw-away state.
fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    let state = std::env::temp_dir().join(format!("siem-agent-demo-{}", std::process::id()));
    let (config, mut plan) = args.build(state.clone())?;
    let expected = config.expected_records(siem_agent::clock::now_ms());
    let simulator = Simulator::start(config).context("cannot start the simulator")?;
    for tenant in &mut plan.tenants {
        tenant.client.api_url = simulator.url();
    }
    let _ = logging::init(&LogPlan {
        directory: None,
        file_bytes: logging::MIN_LOG_FILE_BYTES,
        files: 0,
        level: "warn".into(),
    });
    eprintln!(
        "siem-agent: demo: simulated tenant at {}; backfilling {} of history",
        simulator.url(),
        humantime::format_duration(args.history)
    );
    let mut control = pipeline::Control::default();
    let show_bar = !args.quiet && io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(expected),
        if show_bar {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} backfill [{bar:30}] {human_pos}/{human_len} records, {eta} left",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let tick_bar = bar.clone();
    control.on_tick = Some(Box::new(move |tenants| {
        let fetched = tenants
            .iter()
            .flat_map(|t| {
                t.kinds
                    .iter()
                    .map(|&k| t.counters(k).fetched.load(Ordering::Relaxed))
            })
            .sum::<u64>();
        if fetched > tick_bar.length().unwrap_or(0) {
            tick_bar.set_length(fetched);
        }
        tick_bar.set_position(fetched);
    }));
    let result = pipeline::serve(plan, control);
    bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&state);
    let summary = result?;
    eprintln!(
        "siem-agent: demo: {} records in {} pages",
        summary.records, summary.pages
    );
    Ok(())
}
