//! The `siem-agent` binary: parse arguments, build the plan, run, exit.

use std::io;
use std::process::ExitCode;

use clap::Parser;
use siem_agent::config::{Cli, Command};
use siem_agent::replay;

/// Exit status for options that parse but do not make a valid plan (the same
/// status clap uses for a malformed command line).
const EXIT_BAD_OPTIONS: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Replay(args) => {
            let plan = match args.build() {
                Ok(plan) => plan,
                Err(error) => {
                    eprintln!("siem-agent: {error}");
                    return ExitCode::from(EXIT_BAD_OPTIONS);
                }
            };
            let summary = replay::run(plan, &mut io::stdout().lock(), &mut io::stderr().lock());
            ExitCode::from(summary.exit_code())
        }
    }
}
