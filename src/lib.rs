//! siem-agent: pulls alerts and activities from Microsoft Defender for Cloud
//! Apps and streams them as ArcSight CEF over syslog.
//!
//! The modules follow the data: [`source`] pulls pages from the API,
//! [`parse`] turns input bytes into records, [`cef`] maps each record to a
//! CEF line behind a [`syslog`] header, [`sink`] delivers the lines, and
//! [`checkpoint`] remembers what was delivered. [`pipeline`] runs that chain
//! for the `run` command and [`replay`] drives it over files.

pub mod cef;
pub mod clock;
pub mod config;
pub mod data_type;
pub mod exit;
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
