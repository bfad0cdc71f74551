//! Where log lines go: stderr always (journald picks it up under systemd),
//! and files under `--logsDirectory` when given, rotated by size with a
//! bounded number kept, so the disk use is bounded: at most
//! `(files + 1) * file_bytes`, plus one line.
//!
//! Nothing the agent logs carries a token or secret: credentials are
//! wrapped in [`Secret`](crate::source::entra::Secret), whose `Debug`
//! prints no value, and no error message quotes a request's headers.

use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use tracing_subscriber::fmt::writer::MakeWriterExt as _;
use tracing_subscriber::EnvFilter;

/// The log file's name in the logs directory (rotated ones get `.1`, `.2`...).
pub const LOG_FILE_NAME: &str = "siem-agent.log";
/// Smallest rotation size accepted.
pub const MIN_LOG_FILE_BYTES: u64 = 4096;

/// Log settings, fixed at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPlan {
    /// Directory for log files, if any.
    pub directory: Option<PathBuf>,
    /// Size at which a file is rotated.
    pub file_bytes: u64,
    /// Rotated files kept.
    pub files: usize,
    /// Level filter (`info`, `debug`, ...).
    pub level: String,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The logs directory could not be created.
    #[error("--logsDirectory {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The rotation size is too small.
    #[error("log_file_bytes {0} must be at least {MIN_LOG_FILE_BYTES}")]
    FileBytes(u64),
    /// A logger was already installed (a bug).
    #[error("logging was set up twice")]
    Twice,
}

/// Installs the global logger for `plan`. `RUST_LOG`, when set, overrides
/// the level (for debugging one module).
pub fn init(plan: &LogPlan) -> Result<(), LogError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&plan.level));
    let stderr = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        // A closed stderr (`... 2>&1 | head`) must not take the agent down:
        // with internal errors logged, the subscriber reports a failed
        // write with `eprintln!`, which panics when stderr is gone.
        .log_internal_errors(false)
        .with_timer(tracing_subscriber::fmt::time::SystemTime);
    let installed = match &plan.directory {
        None => stderr.with_writer(std::io::stderr).try_init(),
        Some(directory) => {
            if plan.file_bytes < MIN_LOG_FILE_BYTES {
                return Err(LogError::FileBytes(plan.file_bytes));
            }
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(directory)
                .map_err(|source| LogError::Directory {
                    path: directory.clone(),
                    source,
                })?;
            let mut options = OpenOptions::new();
            options.read(true).create(true).append(true).mode(0o600);
            let files = FileRotate::new(
                directory.join(LOG_FILE_NAME),
                AppendCount::new(plan.files),
                ContentLimit::BytesSurpassed(
                    usize::try_from(plan.file_bytes).unwrap_or(usize::MAX),
                ),
                Compression::None,
                Some(options),
            );
            let files = std::sync::Mutex::new(files);
            stderr.with_writer(std::io::stderr.and(files)).try_init()
        }
    };
    installed.map_err(|_| LogError::Twice)
}

/// Logging for the short-lived commands (replay, demo): stderr only.
pub fn init_stderr(level: &str) {
    let _ = init(&LogPlan {
        directory: None,
        file_bytes: MIN_LOG_FILE_BYTES,
        files: 0,
        level: level.to_owned(),
    });
}
