//! CEF encoding: one parsed record in, one CEF line (with its syslog header)
//! appended to a caller-owned buffer out.
//!
//! The hot path allocates nothing: every fixed part of the line is escaped
//! once when the [`Encoder`] is built, fields are borrowed from the parsed
//! tape, and numbers are formatted on the stack.

pub mod appid;
pub mod cases;
pub mod escape;
pub mod mapping;
pub mod strict;
pub mod value;

use simd_json::tape::Object;

pub use mapping::RecordKind;
use mapping::{Prefixes, RecordFields};

use crate::syslog::SyslogHeader;

/// Which mapping to apply to each record.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Mapping {
    /// Every record is an activity.
    Activities,
    /// Every record is an alert.
    Alerts,
    /// Decide per record: `title` plus `severityValue` or `entities` means an
    /// alert, anything else an activity.
    Auto,
}

/// Turns records into syslog messages carrying CEF lines. Each encoding
/// thread owns one (it caches the current day's date text).
#[derive(Clone, Debug)]
pub struct Encoder {
    prefixes: Prefixes,
    header: SyslogHeader,
    mapping: Mapping,
}

impl Encoder {
    /// An encoder writing `agent_version` as the CEF device version and
    /// links into `portal_url`, behind `header`.
    pub fn new(
        agent_version: &str,
        portal_url: &str,
        header: SyslogHeader,
        mapping: Mapping,
    ) -> Self {
        Self {
            prefixes: Prefixes::new(agent_version, portal_url),
            header,
            mapping,
        }
    }

    /// Appends one message (syslog header and CEF line, no line terminator)
    /// for `record` to `out`, and says which mapping it used.
    pub fn encode(&mut self, record: &Object<'_, '_>, out: &mut Vec<u8>) -> RecordKind {
        let fields = RecordFields::collect(record);
        let kind = match self.mapping {
            Mapping::Activities => RecordKind::Activity,
            Mapping::Alerts => RecordKind::Alert,
            Mapping::Auto => fields.detect_kind(),
        };
        self.header
            .write(out, fields.severity(kind), fields.timestamp_ms());
        match kind {
            RecordKind::Activity => mapping::write_activity(out, &self.prefixes, &fields),
            RecordKind::Alert => mapping::write_alert(out, &self.prefixes, &fields),
        }
        kind
    }
}
