//! `siem-agent completions` and `siem-agent man`: shell completions and
//! manual pages made from the same clap definitions as the options, so the
//! documentation cannot drift from the flags.

use std::io::{self, Write};
use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory as _;
use siem_agent::config::{Cli, CompletionsArgs, ManArgs};

/// Prints the completion script for the shell.
pub(crate) fn completions(args: &CompletionsArgs) -> anyhow::Result<()> {
    let mut command = Cli::command();
    let mut out = io::stdout().lock();
    clap_complete::generate(args.shell, &mut command, "siem-agent", &mut out);
    out.flush().context("writing the completion script")
}

/// Writes `siem-agent.1` to stdout, or it and one page per subcommand
/// (`siem-agent-run.1` ...) into a directory.
pub(crate) fn man(args: &ManArgs) -> anyhow::Result<()> {
    let command = Cli::command();
    let Some(dir) = &args.dir else {
        let mut out = io::stdout().lock();
        clap_mangen::Man::new(command)
            .render(&mut out)
            .context("writing the manual page")?;
        return out.flush().context("writing the manual page");
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_page(dir, "siem-agent", command.clone())?;
    for sub in command
        .get_subcommands()
        .filter(|sub| sub.get_name() != "help")
    {
        let name = format!("siem-agent-{}", sub.get_name());
        // The page's title and usage line name the full command.
        let usage = format!("siem-agent {}", sub.get_name());
        let sub = sub.clone().name(name.clone()).bin_name(usage);
        write_page(dir, &name, sub)?;
    }
    Ok(())
}

fn write_page(dir: &Path, name: &str, command: clap::Command) -> anyhow::Result<()> {
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut page)
        .with_context(|| format!("rendering {name}.1"))?;
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))
}
