//! The service: starts a group of threads per tenant, watches them, logs
//! their state transitions, writes their status files, reloads the
//! configuration (SIGHUP or a changed file) and shuts down cleanly.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tracing::{error, info, warn};

use super::metrics::spawn_metrics;
use super::tenant::{start_tenant, TenantRun};
use super::{RunError, RunSummary};
use crate::config::{RunPlan, ServicePlan};
use crate::shutdown::StopSignal;
use crate::state::checkpoint::CheckpointStore;
use crate::status::{self, State, TenantStatus};

/// How often the service looks at its tenants, signals and config file.
pub const SUPERVISE_EVERY: Duration = Duration::from_millis(250);
/// A status file is rewritten at least this often (its `updated` time
/// tells a reader the agent is alive).
pub const STATUS_REFRESH: Duration = Duration::from_secs(10);

/// What the service is told from outside while it runs.
#[derive(Default)]
pub struct Control {
    /// Raised to shut down.
    pub stop: StopSignal,
    /// Set by a signal handler to shut down (SIGTERM, SIGINT): the
    /// supervisor raises `stop` when it sees it.
    pub terminate: Arc<AtomicBool>,
    /// Set to ask for a reload (SIGHUP); the service clears it.
    pub reload: Arc<AtomicBool>,
    /// Files whose change triggers a reload (the config file).
    pub watch: Vec<PathBuf>,
    /// Builds the plan again from the configuration.
    #[allow(clippy::type_complexity)]
    pub rebuild: Option<Box<dyn FnMut() -> Result<ServicePlan, String> + Send>>,
    /// Called at every supervision tick with the tenants' status (the demo
    /// draws its progress bar from it).
    #[allow(clippy::type_complexity)]
    pub on_tick: Option<Box<dyn FnMut(&[Arc<TenantStatus>]) + Send>>,
}

/// A file's identity and contents' age, to notice changes by polling.
fn file_stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

/// The service's supervisor state.
struct Supervisor {
    store: CheckpointStore,
    once: bool,
    shutdown_timeout: Duration,
    running: Vec<TenantRun>,
    /// Tenants being stopped for a reconfiguration, and the plan each
    /// restarts with (`None`: removed).
    stopping: Vec<(TenantRun, Option<RunPlan>)>,
    registry: Arc<RwLock<Vec<Arc<TenantStatus>>>>,
    summary: RunSummary,
    /// What the supervisor sleeps on between rounds: the service's stop
    /// signal, nudged by tenants whose threads end, so a one-shot run
    /// exits when its work is done rather than at the next round.
    wake: StopSignal,
}

/// Runs the service: every tenant of `plan` until `control.stop` is raised
/// (or, with `once`, until all have caught up and everything fetched is
/// confirmed).
pub fn serve(plan: ServicePlan, mut control: Control) -> Result<RunSummary, RunError> {
    let store = CheckpointStore::open(&plan.state_dir)?;
    let registry = Arc::new(RwLock::new(Vec::new()));
    let _metrics = match plan.metrics_listen {
        Some(address) => Some(spawn_metrics(address, Arc::clone(&registry))?.0),
        None => None,
    };
    let mut supervisor = Supervisor {
        store,
        once: plan.once,
        shutdown_timeout: plan.shutdown_timeout,
        running: Vec::new(),
        stopping: Vec::new(),
        registry,
        summary: RunSummary::default(),
        wake: control.stop.clone(),
    };
    for tenant in plan.tenants {
        match start_tenant(tenant, &supervisor.store, plan.once, &supervisor.wake) {
            Ok(run) => supervisor.running.push(run),
            Err(error) => {
                // The start-up error is the one to report.
                let _ = supervisor.shutdown(&mut control);
                return Err(error);
            }
        }
    }
    supervisor.publish();
    let mut stamps: Vec<_> = control.watch.iter().map(|p| file_stamp(p)).collect();
    let mut last_trim = Instant::now();
    let mut nudges = 0;
    loop {
        if control.terminate.load(Ordering::SeqCst) {
            control.stop.stop();
        }
        let stopped = control.stop.sleep_or_nudge(SUPERVISE_EVERY, &mut nudges);
        supervisor.report(&mut control, false);
        if stopped {
            info!("shutting down: no new requests; waiting for the receivers to confirm what was sent");
            return supervisor.shutdown(&mut control);
        }
        if let Err(error) = supervisor.reap() {
            // The tenant's error is the one to report (by the caller, which
            // logs it once).
            let _ = supervisor.shutdown(&mut control);
            return Err(error);
        }
        if supervisor.once && supervisor.running.is_empty() && supervisor.stopping.is_empty() {
            return Ok(supervisor.summary);
        }
        if last_trim.elapsed() >= STATUS_REFRESH {
            crate::memory::release_free_memory();
            last_trim = Instant::now();
        }
        let changed: Vec<_> = control.watch.iter().map(|p| file_stamp(p)).collect();
        let hangup = control.reload.swap(false, Ordering::SeqCst);
        if hangup || changed != stamps {
            stamps = changed;
            let why = if hangup { "SIGHUP" } else { "the file changed" };
            if let Some(rebuild) = &mut control.rebuild {
                match rebuild() {
                    Ok(new_plan) => {
                        info!("configuration reloaded ({why})");
                        supervisor.reconfigure(new_plan);
                    }
                    Err(reason) => error!(
                        "configuration reload ({why}) failed; the running configuration stays: {reason}"
                    ),
                }
            }
        }
    }
}

impl Supervisor {
    /// Makes the running tenants visible to metrics.
    fn publish(&self) {
        let mut tenants: Vec<_> = self
            .running
            .iter()
            .chain(self.stopping.iter().map(|(run, _)| run))
            .map(|run| Arc::clone(&run.status))
            .collect();
        tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        *self.registry.write() = tenants;
    }

    /// Logs state transitions, refreshes status files (all of them with
    /// `force`), calls `on_tick`.
    fn report(&mut self, control: &mut Control, force: bool) {
        let now = crate::clock::now_ms();
        for run in self
            .running
            .iter_mut()
            .chain(self.stopping.iter_mut().map(|(run, _)| run))
        {
            let report = run.status.report(now);
            for (direction, link) in report.links() {
                let last = &mut run.logged[direction as usize];
                if *last != link.state {
                    let detail = match (&link.link.last_error, link.state) {
                        (Some(error), State::ConnectionError | State::Disconnected) => {
                            format!(" (last error: {error})")
                        }
                        _ => String::new(),
                    };
                    info!(
                        "{}: {}: {} -> {}{detail}",
                        run.name,
                        direction.as_str(),
                        last,
                        link.state
                    );
                    *last = link.state;
                }
            }
            // Rewritten at once when a link's state or error changes, and
            // every STATUS_REFRESH for the counters and success times.
            let stale = force
                || run.written.as_ref().is_none_or(|(old, at)| {
                    let moved = |a: &status::LinkReport, b: &status::LinkReport| {
                        a.state != b.state
                            || a.link.last_error != b.link.last_error
                            || a.link.failing_since_ms != b.link.failing_since_ms
                    };
                    at.elapsed() >= STATUS_REFRESH
                        || old
                            .links()
                            .zip(report.links())
                            .any(|((_, a), (_, b))| moved(a, b))
                });
            if stale {
                if let Err(error) = status::write_report(self.store.dir(), &report) {
                    warn!("{}: cannot write the status file: {error}", run.name);
                }
                run.written = Some((report, Instant::now()));
            }
        }
        if let Some(on_tick) = &mut control.on_tick {
            on_tick(&self.registry.read());
        }
    }

    /// Writes the status file of a tenant whose threads have ended.
    fn write_final_status(&self, run: &TenantRun) {
        let report = run.status.report(crate::clock::now_ms());
        if let Err(error) = status::write_report(self.store.dir(), &report) {
            warn!("{}: cannot write the status file: {error}", run.name);
        }
    }

    /// Joins tenants whose threads have ended; starts the replacement of a
    /// reconfigured tenant once its old threads are done.
    fn reap(&mut self) -> Result<(), RunError> {
        let mut index = 0;
        while index < self.running.len() {
            if self.running[index].finished() {
                let mut run = self.running.swap_remove(index);
                self.write_final_status(&run);
                let summary = run.join()?;
                self.summary += summary;
                if !self.once {
                    info!("{}: stopped", run.name);
                }
                self.publish();
            } else {
                index += 1;
            }
        }
        let mut index = 0;
        while index < self.stopping.len() {
            if self.stopping[index].0.delivery_finished() {
                let (mut run, next) = self.stopping.swap_remove(index);
                self.write_final_status(&run);
                self.summary += run.join()?;
                match next {
                    Some(plan) => {
                        info!("{}: restarting with the new configuration", plan.tenant);
                        self.running
                            .push(start_tenant(plan, &self.store, self.once, &self.wake)?);
                    }
                    None => info!("{}: removed from the configuration; stopped", run.name),
                }
                self.publish();
            } else {
                index += 1;
            }
        }
        Ok(())
    }

    /// Applies a reloaded plan: unchanged tenants keep running; changed
    /// ones stop cleanly (everything sent is confirmed and checkpointed)
    /// and start again from their checkpoints with the new settings, so no
    /// record is lost or repeated; removed ones stop; new ones start.
    fn reconfigure(&mut self, plan: ServicePlan) {
        if plan.state_dir != self.store.dir() {
            warn!(
                "state_dir changed to {}: takes effect at the next start",
                plan.state_dir.display()
            );
        }
        let mut wanted: HashMap<String, RunPlan> = plan
            .tenants
            .into_iter()
            .map(|t| (t.tenant.clone(), t))
            .collect();
        let mut index = 0;
        while index < self.running.len() {
            let run = &self.running[index];
            match wanted.remove(&run.name) {
                Some(next) if next.fingerprint == run.fingerprint => index += 1,
                next => {
                    let run = self.running.swap_remove(index);
                    if next.is_some() {
                        info!(
                            "{}: configuration changed; stopping to restart from the checkpoint",
                            run.name
                        );
                    } else {
                        info!("{}: removed from the configuration; stopping", run.name);
                    }
                    run.stop.stop();
                    self.stopping.push((run, next));
                }
            }
        }
        // A tenant already stopping takes the newest plan.
        for (run, next) in &mut self.stopping {
            if let Some(plan) = wanted.remove(&run.name) {
                *next = Some(plan);
            }
        }
        for (name, plan) in wanted {
            info!("{name}: added to the configuration; starting");
            match start_tenant(plan, &self.store, self.once, &self.wake) {
                Ok(run) => self.running.push(run),
                Err(error) => error!("{name}: cannot start: {error}"),
            }
        }
        self.publish();
    }

    /// Stops every tenant: no new requests, then waits (at most the
    /// shutdown timeout) for their receivers to confirm what was sent.
    fn shutdown(&mut self, control: &mut Control) -> Result<RunSummary, RunError> {
        let mut all: Vec<TenantRun> = self.running.drain(..).collect();
        all.extend(self.stopping.drain(..).map(|(run, _)| run));
        for run in &all {
            run.stop.stop();
        }
        let deadline = Instant::now() + self.shutdown_timeout;
        let mut abandoned = false;
        // Delivery is what a shutdown waits for; a fetch thread in a slow
        // request is left behind (TenantRun::join).
        while all.iter().any(|run| !run.delivery_finished()) {
            if !abandoned && Instant::now() >= deadline {
                abandoned = true;
                for run in all.iter().filter(|run| !run.delivery_finished()) {
                    warn!(
                        "{}: the receiver did not confirm everything within {}; \
                         the unconfirmed records are sent again at the next start",
                        run.name,
                        humantime::format_duration(self.shutdown_timeout)
                    );
                    if let Some(sink) = run.status.sink.get() {
                        sink.abandon();
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.running = all;
        self.report(control, true);
        let mut first_error = None;
        for mut run in std::mem::take(&mut self.running) {
            match run.join() {
                Ok(summary) => self.summary += summary,
                // The first error is returned (and logged by the caller);
                // the others are logged here, once each.
                Err(error) if first_error.is_some() => error!("{error}"),
                Err(error) => first_error = Some(error),
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(self.summary),
        }
    }
}
