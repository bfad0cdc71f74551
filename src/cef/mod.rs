//! CEF encoding: one parsed record in, one CEF line (with its syslog header)
//! appended to a caller-owned buffer out.
//!
//! The hot path allocates nothing: every fixed part of the line is escaped
//! once when the [`Encoder`] is built, fields are borrowed from the parsed
//! tape, and numbers are formatted on the stack.

pub mod appid;
pub mod cases;
pub mod cloud_app_event;
pub mod escape;
pub mod graph_alert;
pub mod graph_cases;
pub mod mapping;
pub mod strict;
pub mod value;

use simd_json::tape::Object;

use cloud_app_event::CloudAppEventFields;
use graph_alert::GraphAlertFields;
pub use mapping::RecordKind;
use mapping::{Prefixes, RecordFields};

use crate::syslog::SyslogHeader;

/// Which mapping to apply to each record.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Mapping {
    /// Every record is a legacy API activity.
    Activities,
    /// Every record is a legacy API alert.
    Alerts,
    /// Every record is a Microsoft Graph `alerts_v2` alert.
    GraphAlerts,
    /// Every record is an advanced hunting `CloudAppEvents` row.
    CloudAppEvents,
    /// Decide per record: a record without the legacy `_id` that has a key
    /// only Graph records have is a Graph alert or event; otherwise `title`
    /// plus `severityValue` or `entities` means an alert, anything else an
    /// activity.
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

    /// The mapping it applies.
    pub fn mapping(&self) -> Mapping {
        self.mapping
    }

    /// Applies `mapping` from now on (a stage encoding several data types
    /// sets each page's).
    pub fn set_mapping(&mut self, mapping: Mapping) {
        self.mapping = mapping;
    }

    /// Appends one message (syslog header and CEF line, no line terminator)
    /// for `record` to `out`, and says which mapping it used.
    pub fn encode(&mut self, record: &Object<'_, '_>, out: &mut Vec<u8>) -> RecordKind {
        let kind = match self.mapping {
            Mapping::Activities => RecordKind::Activity,
            Mapping::Alerts => RecordKind::Alert,
            Mapping::GraphAlerts => RecordKind::GraphAlert,
            Mapping::CloudAppEvents => RecordKind::CloudAppEvent,
            Mapping::Auto => {
                let fields = RecordFields::collect(record);
                let kind = fields.detect_kind();
                if let RecordKind::Activity | RecordKind::Alert = kind {
                    self.write_legacy(kind, &fields, out);
                    return kind;
                }
                kind
            }
        };
        match kind {
            RecordKind::Activity | RecordKind::Alert => {
                self.write_legacy(kind, &RecordFields::collect(record), out);
            }
            RecordKind::GraphAlert => {
                let fields = GraphAlertFields::collect(record);
                self.header
                    .write(out, fields.severity(), fields.created_ms());
                graph_alert::write(out, &self.prefixes, &fields);
            }
            RecordKind::CloudAppEvent => {
                let fields = CloudAppEventFields::collect(record);
                let time_ms = fields.timestamp_ms();
                self.header.write(out, mapping::ACTIVITY_SEVERITY, time_ms);
                cloud_app_event::write(out, &self.prefixes, &fields, time_ms);
            }
        }
        kind
    }

    /// Appends a legacy activity or alert.
    fn write_legacy(&mut self, kind: RecordKind, fields: &RecordFields<'_, '_>, out: &mut Vec<u8>) {
        self.header
            .write(out, fields.severity(kind), fields.timestamp_ms());
        if kind == RecordKind::Alert {
            mapping::write_alert(out, &self.prefixes, fields);
        } else {
            mapping::write_activity(out, &self.prefixes, fields);
        }
    }
}
