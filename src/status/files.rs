//! Status files: one per tenant in the state directory, rewritten
//! atomically when a link's state changes and every few seconds, so that
//! `siem-agent status` (another process, perhaps another user) can read
//! them at any moment.

use std::path::{Path, PathBuf};

use super::model::StatusReport;
use crate::state::atomic::{write_atomically, AtomicWriteError};
use crate::state::names;

/// Why status files could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The file could not be written.
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
    /// The directory could not be listed or a file read.
    #[error("{path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A status file does not hold a report.
    #[error("{path}: not a status file: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The directory holds no status file.
    #[error("{0}: no status files (has the agent run with --state-dir {0}?)")]
    Empty(PathBuf),
}

/// The status file of `tenant` in `dir`.
pub fn status_path(dir: &Path, tenant: &str) -> PathBuf {
    dir.join(names::status_file(tenant))
}

/// Writes `report` to its file in `dir` (atomically, mode 0600).
pub fn write_report(dir: &Path, report: &StatusReport) -> Result<(), StatusError> {
    let text = simd_json::to_string_pretty(report).map_err(|error| StatusError::Corrupt {
        path: status_path(dir, &report.tenant),
        reason: error.to_string(),
    })?;
    write_atomically(dir, &status_path(dir, &report.tenant), text.as_bytes())?;
    Ok(())
}

/// What a state directory's status files held.
#[derive(Debug)]
pub struct StatusFiles {
    /// The readable reports, sorted by tenant.
    pub reports: Vec<StatusReport>,
    /// The files that could not be read or do not hold a report: one bad
    /// file does not hide the other tenants.
    pub unreadable: Vec<StatusError>,
}

/// Every status file in `dir`. Fails only when the directory cannot be
/// read or holds no status file at all.
pub fn read_reports(dir: &Path) -> Result<StatusFiles, StatusError> {
    let read_error = |path: &Path| {
        let path = path.to_owned();
        move |source| StatusError::Read { path, source }
    };
    let mut reports = Vec::new();
    let mut unreadable = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error(dir))? {
        let path = entry.map_err(read_error(dir))?.path();
        let is_status = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(names::STATUS_SUFFIX));
        if !is_status {
            continue;
        }
        let mut bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) => {
                unreadable.push(read_error(&path)(error));
                continue;
            }
        };
        match simd_json::from_slice::<StatusReport>(&mut bytes) {
            Ok(report) => reports.push(report),
            Err(error) => unreadable.push(StatusError::Corrupt {
                path: path.clone(),
                reason: error.to_string(),
            }),
        }
    }
    if reports.is_empty() && unreadable.is_empty() {
        return Err(StatusError::Empty(dir.to_owned()));
    }
    reports.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    Ok(StatusFiles {
        reports,
        unreadable,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::data_type::DataType;
    use crate::status::model::{Direction, State, TenantStatus};
    use crate::status::text::render_text;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn reports_round_trip_through_files_and_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("siem-agent-status-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let status = TenantStatus::new("a/b \"c\"", &[DataType::Alerts]);
        status.update(Direction::Api, |l| l.failed(1_000, "HTTP 503"));
        status
            .counters(DataType::Alerts)
            .sent
            .store(7, Ordering::Relaxed);
        let report = status.report(2_000);
        write_report(&dir, &report).expect("written");
        std::fs::write(status_path(&dir, "broken"), b"{\"tenant\":").expect("write");
        let files = read_reports(&dir).expect("read");
        assert_eq!(files.unreadable.len(), 1, "{:?}", files.unreadable);
        assert!(
            files.unreadable[0].to_string().contains("broken"),
            "the bad file is named"
        );
        let read = files.reports;
        assert_eq!(read, vec![report.clone()]);
        let mode = std::fs::metadata(status_path(&dir, &report.tenant))
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let later = read[0].clone().at(1_000 + 3 * HOUR);
        assert_eq!(
            later.api.as_ref().map(|l| l.state),
            Some(State::ConnectionError)
        );
        assert_eq!(later.graph, None, "no Graph data type");
        let text = render_text(&[later], 1_000 + 3 * HOUR);
        assert!(
            text.contains("api     Connection error, failing for 3h"),
            "{text}"
        );
        assert!(
            text.contains("last error (1970-01-01T00:00:01.000Z): HTTP 503"),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
