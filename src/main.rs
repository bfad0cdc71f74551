//! The `siem-agent` binary: parse arguments, build the plan, run, exit.

use std::io;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use siem_agent::config::{Cli, Command, ConfigError, DemoArgs};
use siem_agent::simulator::{Simulator, SimulatorConfig};
use siem_agent::{pipeline, replay};

/// Exit status for options that parse but do not make a valid plan (the same
/// status clap uses for a malformed command line).
const EXIT_BAD_OPTIONS: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Replay(args) => {
            let plan = match valid(args.build()) {
                Ok(plan) => plan,
                Err(code) => return code,
            };
            let summary = replay::run(plan, &mut io::stdout().lock(), &mut io::stderr());
            ExitCode::from(summary.exit_code())
        }
        Command::Run(args) => {
            let plan = match valid(args.build()) {
                Ok(plan) => plan,
                Err(code) => return code,
            };
            match pipeline::run(plan, &mut io::stderr()) {
                Ok(_) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("siem-agent: {error}");
                    ExitCode::from(error.exit_code())
                }
            }
        }
        Command::Demo(args) => match demo(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("siem-agent: demo: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::Simulate(args) => match valid(args.build()) {
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
    let simulator = Simulator::start(config).context("cannot start the simulator")?;
    plan.client.api_url = simulator.url();
    eprintln!(
        "siem-agent: demo: simulated tenant at {}; backfilling {} of history",
        simulator.url(),
        humantime::format_duration(args.history)
    );
    let result = pipeline::run(plan, &mut io::stderr());
    let _ = std::fs::remove_dir_all(&state);
    let summary = result?;
    eprintln!(
        "siem-agent: demo: {} records in {} pages",
        summary.records, summary.pages
    );
    Ok(())
}
