//! A real rsyslog daemon on loopback for the delivery tests: started with
//! the configuration in `tests/rsyslog/` (the placeholders filled in here),
//! writing every message it takes, exactly as received (`%rawmsg%`), one
//! per line, to a file the test reads.
//!
//! `scripts/install-test-deps` (run by `scripts/test`) installs rsyslog and
//! its RELP and TLS modules from Debian.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use siem_agent::simulator::tls::TestPki;

/// What the daemon listens with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Input {
    /// Plain TCP, LF framing only. (By default imtcp reads a message that
    /// starts with a digit as octet-counted, and the default `iso` header
    /// starts with the year: such lines are lost with a framing error.)
    TcpLf,
    /// Plain TCP, octet-counted framing recognised.
    TcpOctetCounted,
    /// Plain TCP on `::1`, LF framing.
    TcpIpv6,
    /// UDP.
    Udp,
    /// RELP (imrelp).
    Relp,
    /// RELP over TLS (imrelp with librelp's TLS). With certificates
    /// configured, librelp requires one from the client too: this is mutual
    /// TLS, the client's certificate checked against the test CA.
    RelpTls,
    /// TLS (imtcp with the gtls driver); with `client_auth`, a client
    /// certificate signed by the test CA is required.
    Tls {
        /// Require mutual TLS.
        client_auth: bool,
    },
}

/// A running rsyslogd.
pub(crate) struct Rsyslog {
    dir: PathBuf,
    conf: PathBuf,
    child: Option<Child>,
    input: Input,
    /// Where it listens for `Input`.
    pub port: u16,
    output: PathBuf,
}

/// A file from `tests/rsyslog/`.
fn config_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/rsyslog")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Tries at picking a free port for imudp and imrelp.
const PORT_ATTEMPTS: u32 = 5;

/// A loopback port free a moment ago (closed again at once; the daemon
/// binds it next, and [`Rsyslog::start`] tries another if it was taken).
fn free_port(udp: bool) -> u16 {
    if udp {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("binds");
        socket.local_addr().expect("address").port()
    } else {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        listener.local_addr().expect("address").port()
    }
}

fn rsyslogd() -> &'static str {
    for path in ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"] {
        if Path::new(path).exists() {
            return path;
        }
    }
    panic!("rsyslogd is not installed: run scripts/install-test-deps (scripts/test does)");
}

impl Rsyslog {
    /// Starts a daemon in a fresh directory named after the test.
    pub(crate) fn start(name: &str, input: Input, pki: Option<&TestPki>) -> Self {
        let dir =
            std::env::temp_dir().join(format!("siem-agent-rsyslog-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let output = dir.join("received.log");
        let main_port_file = dir.join("main.port");
        if matches!(input, Input::Tls { .. } | Input::RelpTls) {
            let pki = pki.expect("TLS needs the test PKI");
            let server = pki.server_identity();
            std::fs::write(dir.join("ca.pem"), pki.ca_pem()).expect("write");
            std::fs::write(dir.join("server.pem"), server.cert_pem).expect("write");
            std::fs::write(dir.join("server.key"), server.key_pem).expect("write");
        }
        let imtcp = match input {
            Input::Tls { client_auth: true } => {
                config_file("imtcp-gtls.conf").replace("@AUTHMODE@", "x509/certvalid")
            }
            Input::Tls { client_auth: false } => {
                config_file("imtcp-gtls.conf").replace("@AUTHMODE@", "anon")
            }
            _ => config_file("imtcp-plain.conf"),
        };
        // TCP inputs listen on port 0 and write the port to a file; imudp
        // and imrelp cannot, so their port is picked here, and another
        // one tried when something took it in between.
        let (input_conf, pick) = match input {
            Input::TcpLf => (
                config_file("input-tcp-lf.conf").replace("@ADDRESS@", "127.0.0.1"),
                None,
            ),
            Input::TcpIpv6 => (
                config_file("input-tcp-lf.conf").replace("@ADDRESS@", "::1"),
                None,
            ),
            Input::TcpOctetCounted | Input::Tls { .. } => {
                (config_file("input-tcp-octet.conf"), None)
            }
            Input::Udp => (config_file("input-udp.conf"), Some(true)),
            Input::Relp => (config_file("input-relp.conf"), Some(false)),
            Input::RelpTls => (config_file("input-relp-tls.conf"), Some(false)),
        };
        let conf_path = dir.join("rsyslog.conf");
        let mut daemon = Self {
            dir,
            conf: conf_path,
            child: None,
            input,
            port: 0,
            output,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            daemon.port = pick.map_or(0, free_port);
            let conf = config_file("receiver.conf")
                .replace("@IMTCP@", &imtcp)
                .replace("@INPUT@", &input_conf)
                .replace("@PORT@", &daemon.port.to_string())
                .replace("@DIR@", &daemon.dir.display().to_string());
            std::fs::write(&daemon.conf, conf).expect("write config");
            if daemon.spawn() {
                break;
            }
            assert!(
                attempt < PORT_ATTEMPTS,
                "rsyslogd could not listen on a free port; its log:\n{}",
                daemon.own_log()
            );
            daemon.kill();
        }
        if daemon.port == 0 {
            daemon.port = read_port(&main_port_file);
        }
        daemon
    }

    /// Starts the daemon; false when its input could not bind its port
    /// (taken since it was picked).
    fn spawn(&mut self) -> bool {
        let ready = self.dir.join("ready.port");
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::File::create(self.dir.join("rsyslogd.out")).expect("log file");
        let child = Command::new(rsyslogd())
            .arg("-n")
            .arg("-f")
            .arg(&self.conf)
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("rsyslogd starts");
        self.child = Some(child);
        read_port(&ready);
        if matches!(self.input, Input::Relp | Input::RelpTls) {
            // The RELP listener comes up with the others; make sure.
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                if Instant::now() > deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // imudp reports a failed bind in the daemon's own log.
        let log = self.own_log().to_ascii_lowercase();
        !(log.contains("address already in use") || log.contains("could not bind"))
    }

    /// The daemon's own messages (for failure reports).
    pub(crate) fn own_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("rsyslogd.out")).unwrap_or_default()
    }

    /// Complete lines received so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.output).unwrap_or_default();
        let complete = match text.rfind('\n') {
            Some(end) => &text[..=end],
            None => "",
        };
        complete.lines().map(str::to_owned).collect()
    }

    /// Waits (bounded) until at least `count` lines have arrived.
    pub(crate) fn wait_for_lines(&self, count: usize, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            let lines = self.lines();
            if lines.len() >= count || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> String {
        self.child
            .as_ref()
            .map(|c| c.id().to_string())
            .expect("running")
    }

    /// Sends a signal (`STOP`, `CONT`) to the daemon.
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name}");
    }

    /// `kill -9`, and waits for it to be gone.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the daemon the ordinary way (SIGTERM: it writes out what it
    /// received), and waits for it to be gone. A daemon stopped with
    /// `STOP` is resumed to see its SIGTERM.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            for signal in ["-TERM", "-CONT"] {
                let _ = Command::new("kill")
                    .args([signal, &child.id().to_string()])
                    .status();
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the daemon again with the same configuration and ports.
    pub(crate) fn restart(&mut self) {
        self.kill();
        // A TCP input listened on a port of the system's choosing: it must
        // come back on the same one, where the agent reconnects.
        // (Only the main input's: the readiness input keeps port 0.)
        if let Ok(conf) = std::fs::read_to_string(&self.conf) {
            let main = conf.find("main.port").unwrap_or(0);
            if let Some(at) = conf[..main].rfind("port=\"0\"") {
                let fixed = format!(
                    "{}port=\"{}\"{}",
                    &conf[..at],
                    self.port,
                    &conf[at + "port=\"0\"".len()..]
                );
                std::fs::write(&self.conf, fixed).expect("rewrite config");
            }
        }
        assert!(
            self.spawn(),
            "rsyslogd could not listen again on port {}; its log:\n{}",
            self.port,
            self.own_log()
        );
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // SIGKILL ends a stopped process too; resuming first lets it
            // go the ordinary way.
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .status();
        }
        self.kill();
        // KEEP_RSYSLOG=1 keeps the daemon's directory (config, log, output)
        // for a look after a failure.
        if std::env::var_os("KEEP_RSYSLOG").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Waits (bounded) for rsyslog to write a listen-port file.
fn read_port(file: &Path) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(port) = std::fs::read_to_string(file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
        {
            return port;
        }
        assert!(
            Instant::now() < deadline,
            "rsyslogd did not start listening; its log:\n{}",
            std::fs::read_to_string(file.with_file_name("rsyslogd.out")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
