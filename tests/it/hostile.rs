//! What hostile configurations and surroundings do to the agent (issue
//! 17): each case here crashed or misbehaved before its fix, and must now
//! end with a clear error and the documented exit status, or not at all.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use siem_agent::simulator::Simulator;

use super::pull::{run_args, scratch, simulator, spawn};
use super::support::bin;

/// Runs the binary with `args` to the end, within `limit`; the status code
/// and stderr.
fn run(args: &[&str], limit: Duration) -> (Option<i32>, String) {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let dir = scratch(&format!(
        "hostile-run-{}",
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let err = dir.join("stderr");
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running after {limit:?}: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code(),
        std::fs::read_to_string(&err).unwrap_or_default(),
    )
}

#[test]
fn durations_the_clock_cannot_hold_are_refused_at_start_up() {
    let dir = scratch("hostile-durations");
    let state = dir.join("state");
    let state = state.to_str().expect("utf-8");
    for (flag, value) in [
        ("--poll-interval", "500000000000 years"),
        ("--shutdown-timeout", "500000000000 years"),
        ("--backfill", "11 years"),
        ("--retry-max-delay", "500000000000 years"),
    ] {
        let (code, stderr) = run(
            &[
                "run",
                "--api-url",
                "http://127.0.0.1:9",
                "--token",
                "t",
                "--state-dir",
                state,
                "--once",
                flag,
                value,
            ],
            Duration::from_secs(30),
        );
        assert_eq!(code, Some(2), "{flag}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains("at most 10 years"),
            "{flag}: {stderr}"
        );
    }
    // In the config file, the error points at the key.
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        "[[tenant]]\napi_url = \"http://127.0.0.1:9\"\ntoken = \"t\"\npoll_interval = \"500000000000 years\"\n",
    )
    .expect("config");
    let (code, stderr) = run(
        &[
            "run",
            "--config",
            config.to_str().expect("utf-8"),
            "--state-dir",
            state,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("agent.toml:4") && stderr.contains("poll_interval"),
        "{stderr}"
    );
}

#[test]
fn tenants_whose_state_files_would_collide_are_refused() {
    let dir = scratch("hostile-collide");
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        "[defaults]\napi_url = \"http://127.0.0.1:9\"\ntoken = \"t\"\n\
         [[tenant]]\nname = \"acme corp\"\n[[tenant]]\nname = \"acme_corp\"\n",
    )
    .expect("config");
    let state = dir.join("state");
    let (code, stderr) = run(
        &[
            "run",
            "--config",
            config.to_str().expect("utf-8"),
            "--state-dir",
            state.to_str().expect("utf-8"),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("\"acme corp\"")
            && stderr.contains("\"acme_corp\"")
            && stderr.contains(":7"),
        "{stderr}"
    );
    assert!(!state.exists(), "nothing was started");
}

#[test]
fn a_closed_stderr_does_not_take_the_agent_down() {
    let sim = Simulator::start(simulator(Duration::from_secs(600), 60)).expect("starts");
    let dir = scratch("hostile-stderr");
    let mut args = run_args(&sim, &dir);
    args.push("--once".into());
    let mut child = Command::new(bin())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    // The reader goes away before the agent writes its first log line.
    drop(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the agent did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?} (101 is a panic)");
}

/// A scripted HTTP server on loopback: each request's first line and body
/// go to `answer`, which returns the status line's rest, extra headers and
/// body; stops after `limit` connections. The requests are counted.
fn scripted_api(
    limit: usize,
    answer: impl Fn(&str, &[u8]) -> (String, String, String) + Send + 'static,
) -> (u16, Arc<AtomicUsize>) {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(limit) {
            let Ok(stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            counted.fetch_add(1, Ordering::SeqCst);
            let (status, headers, page) = answer(&request_line, &body);
            let text = format!(
                "HTTP/1.1 {status}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = reader.get_mut().write_all(text.as_bytes());
        }
    });
    (port, requests)
}

/// A server that answers every list request with a redirect to a page
/// that, fetched with GET, looks valid (the legacy agent followed it and
/// accepted the page).
fn redirecting_api(limit: usize) -> u16 {
    scripted_api(limit, |request_line, _| {
        if request_line.starts_with("POST") {
            (
                "302 Found".to_owned(),
                "Location: /elsewhere\r\n".to_owned(),
                String::new(),
            )
        } else {
            (
                "200 OK".to_owned(),
                String::new(),
                r#"{"data":[],"hasNext":false,"total":0}"#.to_owned(),
            )
        }
    })
    .0
}

#[test]
fn a_redirect_from_the_api_is_refused_with_a_clear_error() {
    let port = redirecting_api(50);
    let dir = scratch("hostile-redirect");
    let url = format!("http://127.0.0.1:{port}");
    let state = dir.join("state");
    let (code, stderr) = run(
        &[
            "run",
            "--api-url",
            &url,
            "--token",
            "t",
            "--state-dir",
            state.to_str().expect("utf-8"),
            "--data-types",
            "alerts",
            "--max-critical-errors",
            "1",
            "--once",
        ],
        Duration::from_secs(60),
    );
    // Too many critical errors (one allowed), and the log says why.
    assert_eq!(code, Some(75), "{stderr}");
    assert!(
        stderr.contains("redirect to /elsewhere") && stderr.contains("never redirects"),
        "{stderr}"
    );
    // Nothing was taken for a page: no checkpoint was written.
    let checkpoints = std::fs::read_dir(&state)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().contains("checkpoint"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(checkpoints, 0);
}

#[test]
fn a_number_out_of_the_config_formats_range_is_refused_not_dropped() {
    let dir = scratch("hostile-range");
    let state = dir.join("state");
    for (flag, value) in [
        ("--log-files", "9223372036854775808"),
        ("--log-file-bytes", "18446744073709551615"),
        ("--syslog-max-message", "9223372036854775808"),
        ("--relp-window", "9223372036854775808"),
    ] {
        let mut args = vec![
            "run",
            "--api-url",
            "http://127.0.0.1:9",
            "--token",
            "t",
            "--state-dir",
            state.to_str().expect("utf-8"),
            "--once",
            flag,
            value,
        ];
        if flag.starts_with("--syslog") || flag.starts_with("--relp") {
            args.extend(["--syslog-host", "127.0.0.1"]);
        }
        let (code, stderr) = run(&args, Duration::from_secs(30));
        assert_eq!(code, Some(2), "{flag}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains("larger than"),
            "{flag}: {stderr}"
        );
    }
    assert!(!state.exists(), "nothing was started");
}

#[test]
fn a_secret_the_identity_provider_refuses_is_a_rejected_credential_not_a_retry() {
    let config = simulator(Duration::from_secs(60), 60);
    let sim = Simulator::start(config.clone()).expect("starts");
    let dir = scratch("hostile-secret");
    let mut args = super::pull::entra_args(&sim, &config, &dir);
    // The secret file now holds a secret the application does not have.
    std::fs::write(dir.join("secret"), "an-expired-secret\n").expect("secret file");
    args.push("--once".into());
    let output = super::pull::run_to_end(&args, &dir.join("out.cef"), Duration::from_secs(60));
    let log = String::from_utf8_lossy(&output.stderr);
    // 77 like a rejected token: a service manager must not restart it.
    assert_eq!(output.status.code(), Some(77), "{log}");
    assert!(
        log.contains("refused the application's credentials"),
        "{log}"
    );
    assert!(
        !log.contains("an-expired-secret"),
        "the secret must not be logged"
    );
}

#[test]
fn an_alert_without_an_id_is_delivered_once_however_often_it_is_listed() {
    // Every poll lists the same alert, which has no `_id`, at the same
    // millisecond, and one from before the cursor (the request asked for
    // alerts from the cursor on).
    let now = siem_agent::clock::now_ms();
    let alert = format!(r#"{{"title":"No id","severityValue":2,"timestamp":{now},"entities":[]}}"#);
    let old = format!(
        r#"{{"_id":"old","title":"Old","severityValue":2,"timestamp":{},"entities":[]}}"#,
        now - 3 * 86_400_000
    );
    let (port, requests) = scripted_api(1_000, move |_, _| {
        (
            "200 OK".to_owned(),
            String::new(),
            format!(r#"{{"data":[{old},{alert}],"hasNext":false,"total":2}}"#),
        )
    });
    let dir = scratch("hostile-no-id");
    let (text, _) = tail_alerts(&dir, port, &requests);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("No id"), "{text}");
}

/// Runs the agent tailing alerts from a scripted API on `port` (50 ms
/// polls, no request limit) until it has made six requests, then stops it
/// with SIGTERM; its output and the output file (the log beside it).
fn tail_alerts(
    dir: &std::path::Path,
    port: u16,
    requests: &AtomicUsize,
) -> (String, std::path::PathBuf) {
    let url = format!("http://127.0.0.1:{port}");
    let args: Vec<String> = [
        "run",
        "--api-url",
        &url,
        "--token",
        "t",
        "--state-dir",
        dir.join("state").to_str().expect("utf-8"),
        "--data-types",
        "alerts",
        "--requests-per-minute",
        "0",
        "--poll-interval",
        "50ms",
        "--header",
        "none",
    ]
    .map(str::to_owned)
    .to_vec();
    let out = dir.join("out.cef");
    let child = spawn(&args, &out);
    let deadline = Instant::now() + Duration::from_secs(60);
    while requests.load(Ordering::SeqCst) < 6 {
        assert!(Instant::now() < deadline, "the agent stopped polling");
        std::thread::sleep(Duration::from_millis(20));
    }
    terminate(child);
    let text = std::fs::read_to_string(&out).expect("output");
    (text, out)
}

/// Waits (at most a minute) for `child` to exit; its status.
fn wait_exit(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM, then waits (at most a minute) for a clean exit.
fn terminate(mut child: std::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let status = wait_exit(&mut child, "the agent ignored SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[test]
fn an_api_repeating_one_page_with_has_next_stops_with_a_clear_error() {
    // hasNext forever, and always the same alert: the agent used to ask
    // thousands of times a second and emit the alert each time.
    let now = siem_agent::clock::now_ms();
    let alert = format!(
        r#"{{"_id":"a1","title":"Again","severityValue":2,"timestamp":{now},"entities":[]}}"#
    );
    let (port, requests) = scripted_api(10_000, move |_, _| {
        (
            "200 OK".to_owned(),
            String::new(),
            format!(r#"{{"data":[{alert}],"hasNext":true,"total":1000}}"#),
        )
    });
    let dir = scratch("hostile-no-progress");
    let url = format!("http://127.0.0.1:{port}");
    let out = dir.join("out.cef");
    let args: Vec<String> = [
        "run",
        "--api-url",
        &url,
        "--token",
        "t",
        "--state-dir",
        dir.join("state").to_str().expect("utf-8"),
        "--data-types",
        "alerts",
        "--requests-per-minute",
        "0",
        "--retry-attempts",
        "2",
        "--retry-max-delay",
        "100ms",
        "--poll-interval",
        "50ms",
        "--max-critical-errors",
        "2",
        "--header",
        "none",
        "--once",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut child = spawn(&args, &out);
    let status = wait_exit(&mut child, "--once never ended");
    let log = std::fs::read_to_string(out.with_extension("err")).expect("log");
    assert_eq!(status.code(), Some(75), "{log}");
    assert!(log.contains("does not move the cursor"), "{log}");
    let text = std::fs::read_to_string(&out).expect("output");
    assert_eq!(text.lines().count(), 1, "delivered once: {text}");
    // Two tries for each of two critical failures, after the first page.
    let asked = requests.load(Ordering::SeqCst);
    assert!(asked <= 10, "{asked} requests");
}

#[test]
fn sigterm_while_an_answer_trickles_in_keeps_the_shutdown_timeout() {
    use std::io::{BufRead as _, BufReader, Write as _};
    // Answers with headers, then one byte of body every 200 ms: the
    // request would run into its 120 s timeout. The agent used to wait for
    // it (117 s with --shutdown-timeout 5s).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let trickling = Arc::new(AtomicUsize::new(0));
    let started = Arc::clone(&trickling);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let started = Arc::clone(&started);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let mut stream = reader.into_inner();
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{";
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                started.fetch_add(1, Ordering::SeqCst);
                while stream.write_all(b" ").is_ok() {
                    std::thread::sleep(Duration::from_millis(200));
                }
            });
        }
    });
    let dir = scratch("hostile-trickle");
    let url = format!("http://127.0.0.1:{port}");
    let out = dir.join("out.cef");
    let args: Vec<String> = [
        "run",
        "--api-url",
        &url,
        "--token",
        "t",
        "--state-dir",
        dir.join("state").to_str().expect("utf-8"),
        "--data-types",
        "alerts",
        "--requests-per-minute",
        "0",
        "--shutdown-timeout",
        "2s",
    ]
    .map(str::to_owned)
    .to_vec();
    let child = spawn(&args, &out);
    let deadline = Instant::now() + Duration::from_secs(60);
    while trickling.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no request came");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Well within the request timeout (120 s): the shutdown must not wait
    // for the request.
    terminate(child);
    let log = std::fs::read_to_string(out.with_extension("err")).expect("log");
    assert!(
        log.contains("request to the API is still in progress"),
        "{log}"
    );
    assert!(!log.contains("receiver did not confirm"), "{log}");
}

#[test]
fn a_state_directory_that_takes_no_files_is_refused_before_anything_is_fetched() {
    // The simulator would answer: nothing may be fetched or written first.
    let sim = Simulator::start(simulator(Duration::from_secs(60), 60)).expect("simulator");
    let url = sim.url();
    // Even root cannot create files in /proc/self.
    let (code, stderr) = run(
        &[
            "run",
            "--api-url",
            &url,
            "--token",
            siem_agent::simulator::server::DEFAULT_TOKEN,
            "--state-dir",
            "/proc/self",
            "--once",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(73), "{stderr}");
    assert!(
        stderr.contains("state directory /proc/self: cannot write checkpoints"),
        "{stderr}"
    );
    assert_eq!(sim.stats().list_requests.load(Ordering::Relaxed), 0);
}

#[test]
fn a_fatal_error_is_logged_once() {
    let (code, stderr) = run(
        &[
            "run",
            "--api-url",
            "http://127.0.0.1:9",
            "--token",
            "t",
            "--state-dir",
            scratch("hostile-fatal-once")
                .join("state")
                .to_str()
                .expect("utf-8"),
            "--retry-attempts",
            "1",
            "--max-critical-errors",
            "1",
            "--once",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(75), "{stderr}");
    assert_eq!(
        stderr.matches("Too many critical errors").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn status_shows_the_healthy_tenants_beside_a_corrupt_status_file() {
    let dir = scratch("hostile-status");
    let status = siem_agent::status::TenantStatus::new("healthy", &[]);
    siem_agent::status::write_report(&dir, &status.report(0)).expect("written");
    std::fs::write(dir.join("broken.status.json"), b"{\"tenant\":").expect("written");
    let output = Command::new(bin())
        .args(["status", "--state-dir", dir.to_str().expect("utf-8")])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stdout.contains("healthy (pid"), "{stdout}");
    assert!(stderr.contains("broken.status.json"), "{stderr}");
}

#[test]
fn an_alert_dated_far_ahead_does_not_carry_the_cursor_past_todays_alerts() {
    // Every answer lists an alert dated 2100 beside a new alert of now.
    let future = r#"{"_id":"from-2100","title":"Ahead","severityValue":2,"timestamp":4102444800000,"entities":[]}"#;
    let (port, requests) = scripted_api(1_000, move |_, _| {
        let now = siem_agent::clock::now_ms();
        let current = format!(
            r#"{{"_id":"now-{now}","title":"Current","severityValue":2,"timestamp":{now},"entities":[]}}"#
        );
        (
            "200 OK".to_owned(),
            String::new(),
            format!(r#"{{"data":[{future},{current}],"hasNext":false,"total":2}}"#),
        )
    });
    let dir = scratch("hostile-ahead");
    let (text, out) = tail_alerts(&dir, port, &requests);
    assert_eq!(text.matches("externalId=from-2100").count(), 1, "{text}");
    let current = text.matches("externalId=now-").count();
    assert!(
        current >= 5,
        "today's alerts were skipped: {current}\n{text}"
    );
    let log = std::fs::read_to_string(out.with_extension("err")).expect("log");
    assert!(log.contains("ahead of the clock"), "{log}");
}

#[test]
fn a_proxy_that_refuses_the_tunnel_is_named_in_a_clear_error() {
    // Answers every CONNECT with 407 (it wants credentials we do not have).
    let (port, requests) = scripted_api(100, |_, _| {
        (
            "407 Proxy Authentication Required".to_owned(),
            "Proxy-Authenticate: Basic realm=\"corp\"\r\n".to_owned(),
            String::new(),
        )
    });
    let proxy = format!("127.0.0.1:{port}");
    let (code, stderr) = run(
        &[
            "run",
            "--api-url",
            "https://contoso.portal.cloudappsecurity.com",
            "--token",
            "t",
            "--proxy",
            &proxy,
            "--state-dir",
            scratch("hostile-proxy-407")
                .join("state")
                .to_str()
                .expect("utf-8"),
            "--retry-attempts",
            "1",
            "--max-critical-errors",
            "1",
            "--once",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(75), "{stderr}");
    assert!(
        requests.load(Ordering::SeqCst) >= 1,
        "the proxy was not asked"
    );
    assert!(
        stderr.contains("407") || stderr.to_lowercase().contains("proxy"),
        "{stderr}"
    );
}

#[test]
fn a_token_lifetime_beyond_any_clock_is_capped_not_a_crash() {
    // The token endpoint says the token lives 2^63 seconds: adding that to
    // the clock panicked the fetch thread (exit 70).
    let (port, requests) = scripted_api(100, |request_line, _| {
        let body = if request_line.contains("/oauth2/v2.0/token") {
            r#"{"token_type":"Bearer","expires_in":9223372036854775808,"access_token":"t"}"#
        } else {
            r#"{"data":[],"hasNext":false,"total":0}"#
        };
        ("200 OK".to_owned(), String::new(), body.to_owned())
    });
    let url = format!("http://127.0.0.1:{port}");
    let (code, stderr) = run(
        &[
            "run",
            "--api-url",
            &url,
            "--login-url",
            &url,
            "--tenant-id",
            "directory",
            "--client-id",
            "app",
            "--client-secret",
            "secret",
            "--state-dir",
            scratch("hostile-lifetime")
                .join("state")
                .to_str()
                .expect("utf-8"),
            "--data-types",
            "alerts",
            "--once",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{stderr}");
    // The token, then the page.
    assert!(requests.load(Ordering::SeqCst) >= 2, "{stderr}");
}

#[test]
fn a_record_and_a_value_too_large_to_be_real_are_skipped_not_held() {
    // One answer: 20 MiB of padding beside the records, a 20 MiB alert,
    // and an ordinary one. The ordinary alert is delivered; the huge one
    // is skipped as malformed and counted; the padding is never parsed.
    let now = siem_agent::clock::now_ms();
    let huge = format!(
        r#"{{"_id":"huge","title":"{}","severityValue":2,"timestamp":{now},"entities":[]}}"#,
        "x".repeat(20 << 20)
    );
    let normal = format!(
        r#"{{"_id":"normal","title":"Normal","severityValue":2,"timestamp":{now},"entities":[]}}"#
    );
    let page = format!(
        r#"{{"padding":"{}","data":[{huge},{normal}],"hasNext":false,"total":2}}"#,
        "p".repeat(20 << 20)
    );
    let (port, _requests) = scripted_api(100, move |_, _| {
        ("200 OK".to_owned(), String::new(), page.clone())
    });
    let dir = scratch("hostile-huge");
    let out = dir.join("out.cef");
    let url = format!("http://127.0.0.1:{port}");
    let args: Vec<String> = [
        "run",
        "--api-url",
        &url,
        "--token",
        "t",
        "--state-dir",
        dir.join("state").to_str().expect("utf-8"),
        "--data-types",
        "alerts",
        "--header",
        "none",
        "--once",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut child = spawn(&args, &out);
    let status = wait_exit(&mut child, "did not finish");
    let log = std::fs::read_to_string(out.with_extension("err")).expect("log");
    assert!(status.success(), "{log}");
    let text = std::fs::read_to_string(&out).expect("output");
    assert_eq!(text.lines().count(), 1, "{log}");
    assert!(text.contains("externalId=normal"));
    assert!(log.contains("over the 16 MiB limit"), "{log}");
}
