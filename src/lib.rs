//! siem-agent: pulls alerts and activities from Microsoft Defender for Cloud
//! Apps and streams them as ArcSight CEF over syslog.
//!
//! The modules follow the data: [`parse`] turns input bytes into records,
//! [`cef`] maps each record to a CEF line behind a [`syslog`] header, and
//! [`replay`] drives that chain over files for the `replay` command.

pub mod cef;
pub mod checkpoint;
pub mod config;
pub mod parse;
pub mod pipeline;
pub mod replay;
pub mod simulator;
pub mod source;
pub mod syslog;
