//! Why a run of the service stopped, and the exit status each reason
//! maps to (see [`crate::exit`]).

use std::io;

use crate::exit;
use crate::sink::SinkError;
use crate::state::checkpoint::CheckpointError;

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An upstream rejected the credentials (or lacks a permission)
    /// before it answered anything.
    #[error("{tenant}: {message}")]
    InvalidToken {
        /// The tenant.
        tenant: String,
        /// The rejection, as the upstream's client worded it.
        message: String,
    },
    /// An HTTP client could not be built from the configuration.
    #[error("{tenant}: cannot set up the {upstream} client: {reason}")]
    ClientSetup {
        /// The tenant.
        tenant: String,
        /// `API` or `Graph`.
        upstream: &'static str,
        /// Why.
        reason: String,
    },
    /// Consecutive critical failures reached the configured limit.
    #[error("{tenant}: Too many critical errors: {count} consecutive failures; the last: {last}")]
    TooManyCriticalErrors {
        /// The tenant.
        tenant: String,
        /// How many.
        count: u32,
        /// The last one.
        last: String,
    },
    /// A checkpoint could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The output failed.
    #[error(transparent)]
    Output(SinkError),
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Spawn(io::Error),
    /// A thread panicked (a bug: please report it).
    #[error("internal error: the {0} thread panicked")]
    Panicked(&'static str),
    /// The metrics address cannot be listened on.
    #[error("--metrics-listen {address}: {reason}")]
    Metrics {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
}

impl RunError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::InvalidToken { .. } => exit::INVALID_TOKEN,
            RunError::ClientSetup { .. } | RunError::Metrics { .. } => exit::CLIENT_SETUP,
            RunError::TooManyCriticalErrors { .. } => exit::TOO_MANY_ERRORS,
            RunError::Checkpoint(_) => exit::CHECKPOINT,
            RunError::Output(_) | RunError::Spawn(_) => exit::OUTPUT,
            RunError::Panicked(_) => exit::INTERNAL,
        }
    }
}
