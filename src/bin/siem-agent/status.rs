//! `siem-agent status`: prints the status files of a state directory, as
//! a table or as JSON.

use siem_agent::config::StatusArgs;
use siem_agent::{clock, exit, status};

/// Prints the reports; the exit status (a failure when any status file
/// could not be read, after printing the others).
pub(crate) fn show(args: &StatusArgs) -> u8 {
    let files = match status::read_reports(&args.state_dir) {
        Ok(files) => files,
        Err(error) => {
            eprintln!("siem-agent: status: {error}");
            return exit::FAILURE;
        }
    };
    let now = clock::now_ms();
    let reports: Vec<_> = files.reports.into_iter().map(|r| r.at(now)).collect();
    if args.json {
        match simd_json::to_string_pretty(&reports) {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("siem-agent: status: {error}");
                return exit::FAILURE;
            }
        }
    } else {
        print!("{}", status::render_text(&reports, now));
    }
    for error in &files.unreadable {
        eprintln!("siem-agent: status: {error}");
    }
    if files.unreadable.is_empty() {
        exit::OK
    } else {
        exit::FAILURE
    }
}
