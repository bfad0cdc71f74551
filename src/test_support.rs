//! Helpers for the unit tests beside the code (the integration tests have
//! their own in `tests/it/support`).

use std::path::PathBuf;

/// A path under the system's temporary directory for one test, unique to
/// this process, with nothing left at it from an earlier run.
pub(crate) fn scratch_path(test: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("siem-agent-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    let _ = std::fs::remove_file(&path);
    path
}

/// What `write` appends to an empty buffer, as text.
pub(crate) fn written(write: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut out = Vec::new();
    write(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}
