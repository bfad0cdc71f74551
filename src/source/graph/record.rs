//! What the Graph cursor needs of each record: the time that places it in
//! a window, and the key that tells a record seen before from a new one.
//!
//! Both come from the record the encoder has already parsed, so reading
//! them costs two lookups on the tape; the key is written into a buffer
//! the caller reuses, since only the records that turn out to be new need
//! their key kept.

use simd_json::prelude::*;
use simd_json::tape::Object;

use super::request::{AlertVersions, ALERTS_PERMISSION, HUNTING_PERMISSION, MAX_ALERTS_PAGE};
use crate::clock::parse_iso_utc_ms;
use crate::data_type::DataType;

/// The alert's id.
pub const ALERT_ID: &str = "id";
/// When the alert was last updated.
pub const ALERT_UPDATED: &str = "lastUpdateDateTime";
/// The hunting row's id.
pub const EVENT_ID: &str = "ReportId";
/// The hunting row's time.
pub const EVENT_TIME: &str = "Timestamp";
/// The array of an `alerts_v2` page's alerts.
pub const ALERTS_ARRAY: &str = "value";
/// The array of a hunting result's rows.
pub const EVENTS_ARRAY: &str = "results";

/// One Graph data type, with the settings that decide its windows and
/// keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphSource {
    /// `alerts_v2`, one line per alert or per version.
    Alerts(AlertVersions),
    /// `runHuntingQuery` over `CloudAppEvents`.
    Events,
}

/// Why a record cannot be placed by the cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The time field is missing, not a string, or not ISO 8601 UTC.
    #[error("no valid {0}")]
    Time(&'static str),
    /// The id is missing or empty.
    #[error("no {0}")]
    Key(&'static str),
}

impl GraphSource {
    /// The data type it serves.
    pub fn kind(self) -> DataType {
        match self {
            GraphSource::Alerts(_) => DataType::GraphAlerts,
            GraphSource::Events => DataType::CloudAppEvents,
        }
    }

    /// The application permission its endpoint needs.
    pub fn permission(self) -> &'static str {
        match self {
            GraphSource::Alerts(_) => ALERTS_PERMISSION,
            GraphSource::Events => HUNTING_PERMISSION,
        }
    }

    /// The key of the answer's record array.
    pub fn records_key(self) -> &'static str {
        match self {
            GraphSource::Alerts(_) => ALERTS_ARRAY,
            GraphSource::Events => EVENTS_ARRAY,
        }
    }

    /// The record field the windows are over.
    pub fn time_field(self) -> &'static str {
        match self {
            GraphSource::Alerts(versions) => versions.time_field(),
            GraphSource::Events => EVENT_TIME,
        }
    }

    /// Largest number of records one answer may hold.
    pub fn max_page(self) -> u32 {
        match self {
            GraphSource::Alerts(_) => MAX_ALERTS_PAGE,
            GraphSource::Events => super::request::MAX_HUNTING_ROWS,
        }
    }

    /// The record's time (epoch ms), with its dedupe key written into
    /// `key` (cleared first): the alert id (with its update time when
    /// every version is a line) or the `ReportId`.
    pub fn record_facts(
        self,
        record: &Object<'_, '_>,
        key: &mut String,
    ) -> Result<i64, RecordError> {
        key.clear();
        let text = |field: &'static str| {
            record
                .get(field)
                .and_then(|value| value.into_string())
                .filter(|text| !text.is_empty())
        };
        let time_field = self.time_field();
        let time = text(time_field)
            .and_then(parse_iso_utc_ms)
            .ok_or(RecordError::Time(time_field))?;
        let id_field = match self {
            GraphSource::Alerts(_) => ALERT_ID,
            GraphSource::Events => EVENT_ID,
        };
        key.push_str(text(id_field).ok_or(RecordError::Key(id_field))?);
        if self == GraphSource::Alerts(AlertVersions::All) {
            // The window's own time field: one key per version.
            key.push('@');
            key.push_str(text(ALERT_UPDATED).unwrap_or_default());
        }
        Ok(time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(source: GraphSource, json: &str) -> Result<(i64, String), RecordError> {
        let mut bytes = json.as_bytes().to_vec();
        let tape = simd_json::to_tape(&mut bytes).expect("JSON");
        let record = tape.as_value().as_object().expect("object");
        let mut key = "left over".to_owned();
        source
            .record_facts(&record, &mut key)
            .map(|time| (time, key))
    }

    #[test]
    fn each_source_reads_its_own_time_and_key() {
        let alert = r#"{"id":"da1","createdDateTime":"2026-12-01T10:00:00.1234567Z",
            "lastUpdateDateTime":"2026-12-01T11:00:00Z"}"#;
        let created = 1_796_119_200_123;
        assert_eq!(
            facts(GraphSource::Alerts(AlertVersions::New), alert),
            Ok((created, "da1".to_owned()))
        );
        assert_eq!(
            facts(GraphSource::Alerts(AlertVersions::All), alert),
            Ok((1_796_122_800_000, "da1@2026-12-01T11:00:00Z".to_owned()))
        );
        let row = r#"{"ReportId":"r9","Timestamp":"2026-12-01T10:00:00.1234567Z"}"#;
        assert_eq!(
            facts(GraphSource::Events, row),
            Ok((created, "r9".to_owned()))
        );
    }

    #[test]
    fn a_record_without_time_or_id_is_refused_by_name() {
        let events = GraphSource::Events;
        assert_eq!(
            facts(events, r#"{"ReportId":"r","Timestamp":"2026-12-01 10:00"}"#),
            Err(RecordError::Time("Timestamp"))
        );
        assert_eq!(
            facts(events, r#"{"ReportId":"r","Timestamp":5}"#),
            Err(RecordError::Time("Timestamp"))
        );
        assert_eq!(
            facts(
                events,
                r#"{"ReportId":"","Timestamp":"2026-12-01T10:00:00Z"}"#
            ),
            Err(RecordError::Key("ReportId"))
        );
        assert_eq!(
            facts(
                GraphSource::Alerts(AlertVersions::New),
                r#"{"createdDateTime":"2026-12-01T10:00:00Z"}"#
            ),
            Err(RecordError::Key("id"))
        );
    }
}
