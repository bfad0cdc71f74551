//! The `siem-agent` binary: parse the arguments, hand them to the command,
//! exit with the status it returns (see [`siem_agent::exit`]).
//!
//! Each command lives in its own file here; what they run is the library's.
//! This is the only place `anyhow` is used, for errors that end a helper
//! command with one line of text.

mod demo;
mod docs;
mod service;
mod simulate;
mod status;

use std::io;
use std::process::ExitCode;

use clap::Parser as _;
use siem_agent::config::{Cli, Command, ConfigError};
use siem_agent::{exit, logging, pipeline};

fn main() -> ExitCode {
    siem_agent::memory::bound_heap_growth();
    let cli = Cli::parse();
    ExitCode::from(match cli.command {
        None => service::run(cli.run),
        Some(Command::Run(args)) => service::run(*args),
        Some(Command::Status(args)) => status::show(&args),
        Some(Command::Replay(args)) => match valid(args.build()) {
            Ok(plan) => {
                logging::init_stderr("info");
                pipeline::replay::run(plan, &mut io::stdout().lock(), &mut io::stderr()).exit_code()
            }
            Err(code) => code,
        },
        Some(Command::Demo(args)) => demo::run(&args),
        Some(Command::Completions(args)) => helper_outcome("completions", docs::completions(&args)),
        Some(Command::Man(args)) => helper_outcome("man", docs::man(&args)),
        Some(Command::Simulate(args)) => simulate::run(&args),
    })
}

/// The built plan, or the exit status after reporting why the options do not
/// make one.
fn valid<T>(built: Result<T, ConfigError>) -> Result<T, u8> {
    built.map_err(|error| {
        eprintln!("siem-agent: {error}");
        exit::BAD_OPTIONS
    })
}

/// The exit status of a helper command that ended with `result`.
fn helper_outcome(command: &str, result: anyhow::Result<()>) -> u8 {
    match result {
        Ok(()) => exit::OK,
        Err(error) => {
            eprintln!("siem-agent: {command}: {error:#}");
            exit::FAILURE
        }
    }
}
