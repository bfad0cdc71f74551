//! `siem-agent demo`: the agent's main job on an embedded default, with
//! no credentials: an in-process simulator serves a tenant's history, the
//! agent backfills it and prints (or sends) the CEF lines.

use std::io::{self, IsTerminal as _};
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use siem_agent::config::DemoArgs;
use siem_agent::logging::{self, LogPlan};
use siem_agent::simulator::{self, Simulator};
use siem_agent::{clock, pipeline};

use super::helper_outcome;

/// Runs the demo; its exit status.
pub(crate) fn run(args: &DemoArgs) -> u8 {
    helper_outcome("demo", demo(args))
}

/// Runs the agent against an in-process simulator, with throw-away state.
fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    let state = std::env::temp_dir().join(format!("siem-agent-demo-{}", std::process::id()));
    let (config, mut plan) = simulator::setup::demo(args, state.clone())?;
    let expected = config.expected_records(clock::now_ms());
    let simulator = Simulator::start(config).context("cannot start the simulator")?;
    for tenant in &mut plan.tenants {
        if let Some(client) = &mut tenant.client {
            client.api_url = simulator.url();
        }
        if let Some(graph) = &mut tenant.graph {
            graph.client.graph_url = simulator.url();
            graph.client.app.login_url = simulator.url();
        }
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
