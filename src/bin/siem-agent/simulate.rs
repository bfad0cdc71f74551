//! `siem-agent simulate`: serves the built-in API simulator until the
//! process is stopped.

use std::path::Path;

use anyhow::Context as _;
use siem_agent::config::SimulateArgs;
use siem_agent::simulator::{self, Simulator, SimulatorConfig};

use super::{helper_outcome, valid};

/// Runs the simulator; the exit status if it cannot start.
pub(crate) fn run(args: &SimulateArgs) -> u8 {
    match valid(simulator::setup::simulate(args)) {
        Ok(config) => helper_outcome("simulate", serve(config, args.write_ca.as_deref())),
        Err(code) => code,
    }
}

/// Serves until the process is stopped.
fn serve(config: SimulatorConfig, write_ca: Option<&Path>) -> anyhow::Result<()> {
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
