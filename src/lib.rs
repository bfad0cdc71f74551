//! siem-agent: pulls alerts and activities from Microsoft Defender for Cloud
//! Apps and streams them as ArcSight CEF over syslog, losing nothing and
//! repeating only what a receiver had not confirmed.
//!
//! The modules follow the data, one per stage:
//!
//! ```text
//!   source ──body──▶ parse ──record──▶ cef + syslog ──lines──▶ sink ──▶ SIEM
//!  (HTTPS,        (split pages,       (one mapping per         (UDP, TCP, TLS,
//!   cursors)       simd-json)          record family, header)   RELP; confirms)
//!      ▲                                                           │
//!      └──────────── state (checkpoints) ◀── confirmed pages ──────┘
//! ```
//!
//! - [`source`]: the upstream APIs (one folder each), their HTTP clients,
//!   request budgets and cursors.
//! - [`parse`]: bytes into records (API pages split without being parsed
//!   whole; files and NDJSON for `replay`).
//! - [`cef`]: records into CEF lines, escaped, with no allocation per
//!   record; [`syslog`]: the header in front of each line and the framing
//!   of messages on a stream.
//! - [`sink`]: the writer that delivers lines and says when each is
//!   confirmed.
//! - [`state`]: checkpoints (where to resume) and the files beside them.
//! - [`pipeline`]: the only module that starts threads and makes
//!   channels: one group of threads per tenant, the supervisor, `replay`.
//! - [`config`]: flags and the config file, built once into plans;
//!   [`status`]: what state each tenant is in, for people and monitoring;
//!   [`logging`]: where log lines go.
//!
//! Shared by every stage: [`data_type`] (what a stream of records is
//! called), [`clock`] (time and its text), [`exit`] (every exit status),
//! [`retry`] (backoff), [`shutdown`] (the stop signal threads wait on) and
//! [`memory`] (keeping the process's memory bounded). The [`simulator`] of
//! the upstream API is built on the crate, never the other way round.

pub mod cef;
pub mod clock;
pub mod config;
pub mod data_type;
pub mod exit;
pub mod json;
pub mod logging;
pub mod memory;
pub mod parse;
pub mod pipeline;
pub mod retry;
pub mod shutdown;
pub mod simulator;
pub mod sink;
pub mod source;
pub mod state;
pub mod status;
pub mod syslog;
#[cfg(test)]
mod test_support;
