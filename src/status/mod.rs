//! What state each tenant is in, for people (`siem-agent status`), for
//! monitoring (Prometheus text on `--metrics-listen`) and for the log.
//!
//! The vendor's portal showed four states per agent, and users have
//! alerting built on their meaning, so we keep them: `Created` (never
//! connected), `Connected`, `Connection error` (failing for more than two
//! hours) and `Disconnected` (failing for more than twelve). We keep them
//! per tenant and per direction (the API upstream, the syslog receiver
//! downstream), because "which side is broken" is the first question.
//!
//! A link records facts (when it last worked, since when it fails, the
//! last error); the state is derived from them at the moment it is asked
//! for, so a status file read long after it was written still tells the
//! truth about how long a link has been failing.
//!
//! [`model`] holds the live state, [`files`] the status files, [`text`]
//! the table `siem-agent status` prints and [`metrics`] what monitoring
//! scrapes.

pub mod files;
pub mod metrics;
pub mod model;
pub mod text;

pub use files::{read_reports, status_path, write_report, StatusError, StatusFiles};
pub use metrics::render_metrics;
pub use model::{
    Direction, KindCounters, KindReport, Link, LinkReport, State, StatusReport, TenantStatus,
    CONNECTION_ERROR_AFTER, DISCONNECTED_AFTER, MAX_ERROR_CHARS,
};
pub use text::render_text;
