//! The status as a table for people: what `siem-agent status` prints.

use std::fmt::Write as _;
use std::time::Duration;

use super::model::StatusReport;

fn ago(now_ms: i64, ms: i64) -> String {
    let seconds = u64::try_from((now_ms - ms) / 1000).unwrap_or(0);
    humantime::format_duration(Duration::from_secs(seconds)).to_string()
}

/// The reports as a table for people.
pub fn render_text(reports: &[StatusReport], now_ms: i64) -> String {
    let mut out = String::new();
    for report in reports {
        let _ = writeln!(
            out,
            "{} (pid {}, updated {} ago)",
            report.tenant,
            report.pid,
            ago(now_ms, report.updated_ms)
        );
        for (direction, link) in report.links() {
            let _ = write!(out, "  {:<7} {}", direction.as_str(), link.state);
            if let Some(since) = link.link.failing_since_ms {
                let _ = write!(out, ", failing for {}", ago(now_ms, since));
            } else if let Some(ok) = link.link.last_success_ms {
                let _ = write!(out, ", last success {} ago", ago(now_ms, ok));
            }
            out.push('\n');
            if let (Some(error), Some(at)) = (&link.link.last_error, link.link.last_error_ms) {
                let _ = writeln!(
                    out,
                    "          last error ({}): {error}",
                    crate::clock::iso_string(at)
                );
            }
        }
        for kind in &report.data_types {
            let _ = write!(
                out,
                "  {:<16} fetched {}, sent {}",
                kind.data_type, kind.fetched, kind.sent
            );
            if kind.dropped > 0 {
                let _ = write!(out, ", {} malformed skipped", kind.dropped);
            }
            if kind.late > 0 {
                let _ = write!(out, ", {} caught late", kind.late);
            }
            match kind.checkpoint_ms {
                Some(ms) => {
                    let _ = writeln!(out, ", delivered up to {}", crate::clock::iso_string(ms));
                }
                None => out.push('\n'),
            }
        }
    }
    out
}
