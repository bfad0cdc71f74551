//! Pieces the Rust benchmarks share: the agent's default encoder, the plain
//! `writev` loop that is the machine's ceiling, and CPU time read from
//! `/proc`.

// Each bench binary includes this module and uses part of it.
#![allow(dead_code)]

pub(crate) mod harness;

use std::io::{self, IoSlice, Write};
use std::net::TcpStream;
use std::time::Duration;

use siem_agent::cef::{Encoder, Mapping};
use siem_agent::syslog::{HeaderStyle, SyslogHeader};

/// The encoder `siem-agent run` uses with default settings (ISO header
/// without a host, this version, the default portal, per-record mapping).
pub(crate) fn default_encoder() -> Encoder {
    let header = SyslogHeader::new(HeaderStyle::Iso, None, 16).expect("header");
    Encoder::new(
        env!("CARGO_PKG_VERSION"),
        "https://portal.cloudappsecurity.com",
        header,
        Mapping::Auto,
    )
}

/// Slices handed to one `writev` call by the ceiling loops.
pub(crate) const SLICES_PER_CALL: usize = 4;

/// Writes `slices` completely with one `writev` and, for the rest of a
/// short write (rare on loopback), plain writes. Returns the bytes written.
pub(crate) fn write_all_vectored(
    stream: &mut TcpStream,
    slices: &[IoSlice<'_>],
) -> io::Result<usize> {
    let mut done = stream.write_vectored(slices)?;
    let mut skip = done;
    for slice in slices {
        if skip >= slice.len() {
            skip -= slice.len();
            continue;
        }
        stream.write_all(&slice[skip..])?;
        done += slice.len() - skip;
        skip = 0;
    }
    Ok(done)
}

/// User plus system CPU time from a `/proc/.../stat` file:
/// `/proc/self/stat` for this process, `/proc/thread-self/stat` for the
/// calling thread. Zero when the file cannot be read.
pub(crate) fn cpu_time(stat_path: &str) -> Duration {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    // CLK_TCK is 100 on Linux.
    Duration::from_millis(ticks * 10)
}
