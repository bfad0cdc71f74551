//! The whole path in the steady state, socket to socket: the agent (in this
//! process, so that the counting allocator of [`super::alloc`] sees it)
//! backfills from the simulator over loopback HTTP, parses, encodes, and
//! delivers to rsyslog over TCP and over RELP. After a warm-up, ten more
//! pages cost no allocation in any thread of the pipeline, except the
//! per-request allocations of the HTTP client (`ureq`), which this test
//! measures beside the pipeline with `ureq` alone, the way the agent uses
//! it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;
use siem_agent::status::TenantStatus;
use std::time::{Duration, Instant};

use clap::Parser as _;
use siem_agent::config::{file, Cli, Command};
use siem_agent::pipeline::{self, Control};
use siem_agent::simulator::server::DEFAULT_TOKEN;
use siem_agent::simulator::{Simulator, SimulatorConfig};

use super::alloc::allocations_by_thread;
use super::support::rsyslog::{Input, Rsyslog};

/// Pages before the window: buffers, batches and the cursor grow to their
/// working sizes.
const WARM_UP_PAGES: u64 = 6;
/// Pages between two looks for the steady state, and how many looks at
/// most.
const STEADY_PAGES: u64 = 3;
const STEADY_TRIES: u64 = 8;
/// Pages in the window.
const WINDOW_PAGES: u64 = 10;
/// Records per page the simulator serves (a scan page is asked for with
/// the API's maximum).
const PAGE_RECORDS: u64 = 5_000;
/// How long the whole test may take before it fails.
const PATIENCE: Duration = Duration::from_secs(120);

/// Linux thread ids of this process, by name (`comm`, at most 15 bytes).
fn thread_names() -> HashMap<i32, String> {
    let mut names = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return names;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        if let Ok(name) = std::fs::read_to_string(task.path().join("comm")) {
            names.insert(tid, name.trim_end().to_owned());
        }
    }
    names
}

/// Whether `name` is one of the pipeline threads of tenants `tenants`.
fn is_pipeline_thread(name: &str, tenants: &[&str]) -> bool {
    name == "writer-syslog"
        || tenants.iter().any(|tenant| {
            ["fetch-", "encode-", "checkpoint-"].iter().any(|role| {
                let full = format!("{role}{tenant}");
                // `comm` keeps 15 bytes of a thread's name.
                name.starts_with(&full[..full.len().min(15)])
            })
        })
}

/// The pipeline threads' allocations so far, by thread id, with names.
fn pipeline_counts(
    tenants: &[&str],
    before: &HashMap<i32, String>,
) -> BTreeMap<i32, (String, u64)> {
    let names = thread_names();
    let counts = allocations_by_thread();
    names
        .into_iter()
        // A `writer-syslog` that ran before the agent started is another
        // test's.
        .filter(|(tid, name)| is_pipeline_thread(name, tenants) && !before.contains_key(tid))
        .map(|(tid, name)| (tid, (name, counts.get(&tid).copied().unwrap_or(0))))
        .collect()
}

/// The agent's `run` options for one tenant named `tenant` sending to
/// `daemon` with `protocol`.
fn run_args(
    sim: &Simulator,
    tenant: &str,
    daemon: &Rsyslog,
    protocol: &str,
    state: &str,
) -> Vec<String> {
    [
        "siem-agent",
        "run",
        "--tenant",
        tenant,
        "--api-url",
        &sim.url(),
        "--token",
        DEFAULT_TOKEN,
        "--data-types",
        "activities",
        "--state-dir",
        state,
        "--requests-per-minute",
        "0",
        "--backfill",
        "30d",
        "--header",
        "none",
        "--syslog-host",
        "127.0.0.1",
        "--syslog-port",
        &daemon.port.to_string(),
        "--syslog-protocol",
        protocol,
        "--log-level",
        "warn",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// Allocations of each of `count` requests made with `ureq` alone, the way
/// the agent makes them (its agent settings, a POST with the same headers
/// and a filter body, the answer read into a reused buffer), on this
/// thread, after two to warm up.
fn ureq_allocations(sim: &Simulator, count: usize) -> Vec<u64> {
    let settings = siem_agent::source::http::HttpSettings {
        proxy: None,
        ca_pem: None,
        connect_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(60),
    };
    let agent = siem_agent::source::http::agent(&settings).expect("agent");
    let url = format!("{}/api/v1/activities/", sim.url());
    let authorization = format!("Token {DEFAULT_TOKEN}");
    let body = r#"{"filters":{"date":{"range":{"gte":0,"lte":1}}},"sortField":"date","sortDirection":"asc","limit":100}"#;
    let mut page = Vec::new();
    let mut spent = Vec::new();
    for n in 0..count + 2 {
        let before = super::alloc::allocations_here();
        let mut response = agent
            .post(&url)
            .header("Authorization", &authorization)
            .header("Content-Type", "application/json")
            .send(body)
            .expect("answer");
        let mut reader = response.body_mut().with_config().limit(1 << 30).reader();
        siem_agent::source::http::read_body(&mut reader, &mut page).expect("body");
        drop(reader);
        drop(response);
        if n >= 2 {
            spent.push(super::alloc::allocations_here() - before);
        }
    }
    spent
}

/// The total of the pipeline threads whose names start with `role`.
fn role_total(counts: &BTreeMap<i32, (String, u64)>, role: &str) -> u64 {
    counts
        .values()
        .filter(|(name, _)| name.starts_with(role))
        .map(|(_, count)| count)
        .sum()
}

#[test]
fn ten_pages_from_http_to_tcp_and_relp_cost_no_allocation_in_any_pipeline_thread() {
    let before = thread_names();
    let tcp = Rsyslog::start("alloc-tcp", Input::TcpLf, None);
    let relp = Rsyslog::start("alloc-relp", Input::Relp, None);
    // Enough history for the two agents' longest warm-ups and windows.
    let pages = 2 * (WARM_UP_PAGES + STEADY_TRIES * STEADY_PAGES + WINDOW_PAGES + 4);
    let per_minute = 10_000;
    let minutes = pages * PAGE_RECORDS / per_minute + 1;
    let mut config = SimulatorConfig::new(
        siem_agent::clock::now_ms(),
        Duration::from_secs(minutes * 60),
    );
    config.requests_per_minute = None;
    config.activities.per_minute = per_minute;
    config.alerts.per_minute = 0;
    let sim = Simulator::start(config).expect("simulator");
    let per_request = ureq_allocations(&sim, 10);
    let dir = std::env::temp_dir().join(format!("siem-agent-alloc-path-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    // The tenants' status, for the writers' counts of batches made.
    let statuses: Arc<Mutex<Vec<Arc<TenantStatus>>>> = Arc::default();
    let mut agents = Vec::new();
    for (tenant, daemon, protocol) in [("ap-tcp", &tcp, "tcp"), ("ap-relp", &relp, "relp")] {
        let state = dir.join(tenant);
        let args = run_args(
            &sim,
            tenant,
            daemon,
            protocol,
            state.to_str().expect("utf-8"),
        );
        let cli = Cli::try_parse_from(args).expect("options");
        let run = match cli.command {
            Some(Command::Run(run)) => *run,
            _ => cli.run,
        };
        let (plan, _) = file::load(&run).expect("plan");
        let mut control = Control::default();
        let seen = Arc::clone(&statuses);
        control.on_tick = Some(Box::new(move |tenants: &[Arc<TenantStatus>]| {
            let mut seen = seen.lock();
            for tenant in tenants {
                if !seen.iter().any(|s| Arc::ptr_eq(s, tenant)) {
                    seen.push(Arc::clone(tenant));
                }
            }
        }));
        let stop = control.stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("serve-{tenant}"))
            .spawn(move || pipeline::serve(plan, control))
            .expect("service thread");
        agents.push((stop, thread));
    }

    let tenants = ["ap-tcp", "ap-relp"];
    let served = || sim.stats().pages.load(Ordering::Relaxed);
    let wait_for_pages = |count: u64| {
        let deadline = Instant::now() + PATIENCE;
        while served() < count {
            assert!(
                Instant::now() < deadline,
                "{} pages served of {count}",
                served()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    // Batches the encode threads have allocated: one more whenever more
    // are in flight at once than before (see `SinkCounters::batches_made`).
    let made = || -> u64 {
        statuses
            .lock()
            .iter()
            .filter_map(|status| status.sink.get())
            .map(|sink| sink.counters.batches_made.load(Ordering::Relaxed))
            .sum()
    };
    // The counts, and the batches made, read at one instant.
    let snapshot = || loop {
        let made_before = made();
        let counts = pipeline_counts(&tenants, &before);
        if made() == made_before {
            return (counts, made_before);
        }
    };
    // The steady state: the queues and the pool of batches have grown to
    // the depth the pipeline works at, which a few pages with no
    // allocation outside the fetch threads show.
    wait_for_pages(2 * WARM_UP_PAGES);
    let (mut start, mut made_at_start) = snapshot();
    for _ in 0..STEADY_TRIES {
        wait_for_pages(served() + 2 * STEADY_PAGES);
        let (now, made_now) = snapshot();
        let grew = |role| role_total(&now, role) != role_total(&start, role);
        let steady = !["encode-", "checkpoint-", "writer-"].into_iter().any(grew);
        (start, made_at_start) = (now, made_now);
        if steady {
            break;
        }
    }
    let requests_before = sim.stats().list_requests.load(Ordering::Relaxed);
    let window_start = served();
    wait_for_pages(window_start + 2 * WINDOW_PAGES);
    let (end, made_at_end) = snapshot();
    let requests = sim.stats().list_requests.load(Ordering::Relaxed) - requests_before;
    let batches_made = made_at_end - made_at_start;
    assert_eq!(statuses.lock().len(), 2, "both tenants' status seen");
    for (stop, thread) in agents {
        stop.stop();
        let _ = thread.join();
    }
    let _ = std::fs::remove_dir_all(&dir);

    let mut report = format!(
        "ureq alone, per request: {per_request:?}\nbatches made: {batches_made} (of {made_at_end})\n"
    );
    let mut fetch_allocations = 0;
    let mut encode_allocations = 0;
    let mut others = 0;
    for (tid, (name, after)) in &end {
        let Some((_, at_start)) = start.get(tid) else {
            continue;
        };
        let spent = after - at_start;
        report.push_str(&format!("{name} ({tid}): {spent}\n"));
        if name.starts_with("fetch-") {
            fetch_allocations += spent;
        } else if name.starts_with("encode-") && !name.ends_with('+') {
            encode_allocations += spent;
        } else {
            others += spent;
        }
    }
    for role in ["fetch-", "encode-", "checkpoint-", "writer-syslog"] {
        assert!(
            start
                .values()
                .filter(|(name, _)| name.starts_with(role))
                .count()
                >= 2,
            "no {role} thread for each tenant:\n{report}"
        );
    }
    assert!(
        start.values().any(|(name, _)| name.ends_with('+')),
        "no helper thread shared a scan page:\n{report}"
    );
    // A request received before the window and answered in it counts in
    // the pages, not the requests.
    assert!(requests + 2 >= 2 * WINDOW_PAGES, "{requests} requests");
    assert_eq!(others, 0, "allocations over {requests} requests:\n{report}");
    // The encode threads allocate nothing but a new batch when more are in
    // flight than ever before (rare once warm, and bounded).
    assert_eq!(
        encode_allocations, batches_made,
        "the encode threads' allocations over {requests} requests:\n{report}"
    );
    // The fetch threads allocate what ureq does for each request, and
    // nothing of their own. The window's edges fall inside requests (the
    // threads run on while the counts are read), so one request at each
    // edge of each thread's window may count in part.
    let (least, most) = (
        per_request.iter().min().copied().unwrap_or(0),
        per_request.iter().max().copied().unwrap_or(0),
    );
    let edges = 2 * tenants.len() as u64;
    assert!(
        (requests.saturating_sub(edges) * least..=(requests + edges) * most)
            .contains(&fetch_allocations),
        "the fetch threads allocated {fetch_allocations} times over {requests} requests, \
         ureq alone {least}-{most} a request:\n{report}"
    );
}
