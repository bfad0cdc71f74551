//! The Graph mappings' contract, written as data, like [`super::cases`]
//! for the legacy ones: a Graph alert and a `CloudAppEvents` row built from
//! arbitrary strings, and what their CEF line must say field by field
//! (the spec's order, empty keys included). Shared by the property tests
//! and the `graph_alert_roundtrip` and `cloud_app_event_roundtrip` fuzz
//! targets; the agent itself never calls it.

use std::net::{Ipv4Addr, Ipv6Addr};

use simd_json::json;
use simd_json::prelude::Writable;

use super::cases::{app_tag, check_one_line, ext, head, take};
use crate::clock::{write_iso_time, MAX_TIMESTAMP_MS};

/// Number of strings a Graph case is built from.
pub const GRAPH_CASE_STRINGS: usize = 16;

/// A time as Graph writes it: `ms` (clamped to what ISO text can hold) with
/// `extra` appended as four more fraction digits, seven in all.
pub fn graph_time(ms: i64, extra: u16) -> String {
    let mut text = Vec::new();
    write_iso_time(&mut text, ms.clamp(0, MAX_TIMESTAMP_MS));
    text.pop(); // the `Z`
    let mut text = String::from_utf8_lossy(&text).into_owned();
    text.push_str(&format!("{:04}Z", extra % 10_000));
    text
}

/// The epoch milliseconds the line must carry for `graph_time(ms, _)`.
fn time_text(ms: i64) -> String {
    ms.clamp(0, MAX_TIMESTAMP_MS).to_string()
}

fn expect_fields(
    message: &str,
    version: &str,
    header: [&str; 3],
    expected: &[(&str, String)],
) -> Result<(), String> {
    let line = check_one_line(message)?;
    let want = |what: &str, got: &str, wanted: &str| {
        if got == wanted {
            Ok(())
        } else {
            Err(format!("{what}: got {got:?}, expected {wanted:?}"))
        }
    };
    want("vendor", &line.header[1], "MCAS")?;
    want("product", &line.header[2], "SIEM_Agent")?;
    want("version", &line.header[3], &head(version))?;
    want("class id", &line.header[4], header[0])?;
    want("name", &line.header[5], header[1])?;
    want("severity", &line.header[6], header[2])?;
    let keys: Vec<&str> = expected.iter().map(|(k, _)| *k).collect();
    if line.keys() != keys {
        return Err(format!("keys {:?}, expected {keys:?}", line.keys()));
    }
    for ((key, got), (_, wanted)) in line.extension.iter().zip(expected) {
        want(key, got, wanted)?;
    }
    Ok(())
}

/// A Graph alert whose mapped fields come from arbitrary strings.
#[derive(Debug, Clone)]
pub struct GraphAlertCase {
    /// `id`.
    pub id: String,
    /// `title`.
    pub title: String,
    /// `description`.
    pub description: String,
    /// `detectorId`.
    pub detector_id: String,
    /// `status`.
    pub status: String,
    /// `category`.
    pub category: String,
    /// `incidentId`.
    pub incident_id: String,
    /// `alertWebUrl`.
    pub alert_web_url: String,
    /// The first user evidence's `userPrincipalName`.
    pub user_principal_name: String,
    /// The first user evidence's `accountName`.
    pub account_name: String,
    /// The first app evidence's `displayName`.
    pub app_name: String,
    /// The two `mitreTechniques`.
    pub mitre_techniques: [String; 2],
    /// The two IP evidence items' `ipAddress`.
    pub ip_addresses: [String; 2],
    /// `severity`.
    pub severity: String,
    /// The `appId` of each of two app evidence items (`None`: absent).
    pub app_ids: [Option<u64>; 2],
    /// `firstActivityDateTime`, `lastActivityDateTime`,
    /// `lastUpdateDateTime`, `createdDateTime`: ms and extra digits.
    pub times: [(i64, u16); 4],
}

impl GraphAlertCase {
    /// Builds a case from up to [`GRAPH_CASE_STRINGS`] strings (missing
    /// ones are empty); slots 6 and 9 are the IP addresses.
    pub fn from_strings(
        strings: &[String],
        severity: String,
        app_ids: [Option<u64>; 2],
        times: [(i64, u16); 4],
    ) -> Self {
        Self {
            id: take(strings, 0),
            title: take(strings, 1),
            description: take(strings, 2),
            detector_id: take(strings, 3),
            status: take(strings, 4),
            category: take(strings, 5),
            ip_addresses: [take(strings, 6), take(strings, 9)],
            incident_id: take(strings, 7),
            alert_web_url: take(strings, 8),
            user_principal_name: take(strings, 10),
            account_name: take(strings, 11),
            app_name: take(strings, 12),
            mitre_techniques: [take(strings, 13), take(strings, 14)],
            severity,
            app_ids,
            times,
        }
    }

    /// The alert as `alerts_v2` would send it.
    pub fn to_json(&self) -> String {
        let time = |n: usize| graph_time(self.times[n].0, self.times[n].1);
        let app = |n: usize| match self.app_ids[n] {
            Some(id) => json!({"@odata.type": "#microsoft.graph.security.cloudApplicationEvidence",
                "appId": id, "displayName": self.app_name.clone()}),
            None => json!({"@odata.type": "#microsoft.graph.security.cloudApplicationEvidence",
                "displayName": self.app_name.clone()}),
        };
        json!({
            "id": self.id.clone(),
            "title": self.title.clone(),
            "description": self.description.clone(),
            "detectorId": self.detector_id.clone(),
            "severity": self.severity.clone(),
            "status": self.status.clone(),
            "category": self.category.clone(),
            "incidentId": self.incident_id.clone(),
            "alertWebUrl": self.alert_web_url.clone(),
            "firstActivityDateTime": time(0),
            "lastActivityDateTime": time(1),
            "lastUpdateDateTime": time(2),
            "createdDateTime": time(3),
            "mitreTechniques": [self.mitre_techniques[0].clone(), self.mitre_techniques[1].clone()],
            "evidence": [
                {"@odata.type": "#microsoft.graph.security.ipEvidence", "ipAddress": self.ip_addresses[0].clone()},
                {"@odata.type": "#microsoft.graph.security.userEvidence", "userAccount": {
                    "userPrincipalName": self.user_principal_name.clone(),
                    "accountName": self.account_name.clone()}},
                app(0),
                {"@odata.type": "#microsoft.graph.security.userEvidence", "userAccount": {
                    "userPrincipalName": "second@example.com"}},
                app(1),
                {"@odata.type": "#microsoft.graph.security.ipEvidence", "ipAddress": self.ip_addresses[1].clone()}
            ]
        })
        .encode()
    }

    /// Checks an encoded message against the case, encoded with device
    /// version `version`.
    pub fn check(&self, message: &str, version: &str) -> Result<(), String> {
        let class = if self.detector_id.is_empty() {
            "ALERT_GENERIC".to_owned()
        } else {
            head(&self.detector_id)
        };
        let name = if self.title.is_empty() {
            class.clone()
        } else {
            head(&self.title)
        };
        let severity = match self.severity.as_str() {
            "informational" => "1",
            "low" => "3",
            "medium" => "6",
            "high" => "8",
            _ => "3",
        };
        let user = if self.user_principal_name.is_empty() {
            &self.account_name
        } else {
            &self.user_principal_name
        };
        let tags: Vec<String> = self
            .app_ids
            .iter()
            .flatten()
            .map(|&id| app_tag(id))
            .collect();
        let mut expected: Vec<(&str, String)> = vec![
            ("externalId", ext(&self.id)),
            ("start", time_text(self.times[0].0)),
            ("end", time_text(self.times[1].0)),
            ("msg", ext(&self.description)),
            ("suser", ext(user)),
            ("destinationServiceName", ext(&self.app_name)),
            ("cn1Label", "riskScore".into()),
            ("cn1", String::new()),
            ("cs1Label", "portalURL".into()),
            ("cs1", ext(&self.alert_web_url)),
            ("cs2Label", "uniqueServiceAppIds".into()),
            ("cs2", tags.join(",")),
            ("cs3Label", "relatedAudits".into()),
            ("cs3", String::new()),
            ("cs4Label", "policyIDs".into()),
            ("cs4", String::new()),
        ];
        if let Some(v4) = self
            .ip_addresses
            .iter()
            .find(|a| a.parse::<Ipv4Addr>().is_ok())
        {
            expected.push(("src", v4.clone()));
        }
        if let Some(v6) = self
            .ip_addresses
            .iter()
            .find(|a| a.parse::<Ipv6Addr>().is_ok())
        {
            expected.push(("c6a1", v6.clone()));
        }
        expected.extend([
            ("rt", time_text(self.times[2].0)),
            ("cat", ext(&self.category)),
            ("act", ext(&self.status)),
            ("cs5Label", "incidentId".into()),
            ("cs5", ext(&self.incident_id)),
            ("cs6Label", "mitreTechniques".into()),
            (
                "cs6",
                format!(
                    "{},{}",
                    ext(&self.mitre_techniques[0]),
                    ext(&self.mitre_techniques[1])
                ),
            ),
        ]);
        expect_fields(message, version, [&class, &name, severity], &expected)
    }
}

/// A `CloudAppEvents` row whose mapped columns come from arbitrary strings.
#[derive(Debug, Clone)]
pub struct CloudAppEventCase {
    /// `ReportId`.
    pub report_id: String,
    /// `ActionType`.
    pub action_type: String,
    /// `ActivityType`.
    pub activity_type: String,
    /// `Application`.
    pub application: String,
    /// `AccountObjectId`.
    pub account_object_id: String,
    /// `AccountId`.
    pub account_id: String,
    /// `IPAddress`.
    pub ip_address: String,
    /// `AccountDisplayName`.
    pub account_display_name: String,
    /// `RawEventData.UserId`.
    pub raw_user_id: String,
    /// `CountryCode`.
    pub country_code: String,
    /// `UserAgent`.
    pub user_agent: String,
    /// `ObjectName`.
    pub object_name: String,
    /// The two `ActivityObjects[].Name`.
    pub object_names: [String; 2],
    /// `ApplicationId`.
    pub application_id: u64,
    /// `Timestamp`: ms and extra digits.
    pub timestamp: (i64, u16),
}

impl CloudAppEventCase {
    /// Builds a case from up to [`GRAPH_CASE_STRINGS`] strings (missing
    /// ones are empty); slot 6 is the IP address.
    pub fn from_strings(strings: &[String], application_id: u64, timestamp: (i64, u16)) -> Self {
        Self {
            report_id: take(strings, 0),
            action_type: take(strings, 1),
            activity_type: take(strings, 2),
            application: take(strings, 3),
            account_object_id: take(strings, 4),
            account_id: take(strings, 5),
            ip_address: take(strings, 6),
            account_display_name: take(strings, 7),
            raw_user_id: take(strings, 8),
            country_code: take(strings, 9),
            user_agent: take(strings, 10),
            object_name: take(strings, 11),
            object_names: [take(strings, 12), take(strings, 13)],
            application_id,
            timestamp,
        }
    }

    /// The row as `runHuntingQuery` would send it.
    pub fn to_json(&self) -> String {
        json!({
            "Timestamp": graph_time(self.timestamp.0, self.timestamp.1),
            "ReportId": self.report_id.clone(),
            "ActionType": self.action_type.clone(),
            "ActivityType": self.activity_type.clone(),
            "Application": self.application.clone(),
            "ApplicationId": self.application_id,
            "AccountObjectId": self.account_object_id.clone(),
            "AccountId": self.account_id.clone(),
            "AccountDisplayName": self.account_display_name.clone(),
            "IPAddress": self.ip_address.clone(),
            "UserAgent": self.user_agent.clone(),
            "CountryCode": self.country_code.clone(),
            "ObjectName": self.object_name.clone(),
            "ActivityObjects": [
                {"Type": "File", "Name": self.object_names[0].clone()},
                {"Type": "Folder", "Name": self.object_names[1].clone()}
            ],
            "RawEventData": {"UserId": self.raw_user_id.clone()}
        })
        .encode()
    }

    /// Checks an encoded message against the case, encoded with device
    /// version `version`.
    pub fn check(&self, message: &str, version: &str) -> Result<(), String> {
        let class = if self.action_type.is_empty() {
            "EVENT_CATEGORY_UNSPECIFIED".to_owned()
        } else {
            head(&self.action_type)
        };
        let time = time_text(self.timestamp.0);
        let mut msg = ext(&self.action_type);
        if !self.object_name.is_empty() {
            msg.push_str(": ");
            msg.push_str(&ext(&self.object_name));
        }
        let user = if self.account_id.contains('@') {
            &self.account_id
        } else if self.raw_user_id.contains('@') {
            &self.raw_user_id
        } else {
            &self.account_display_name
        };
        let address = |ok: bool| {
            if ok {
                self.ip_address.clone()
            } else {
                String::new()
            }
        };
        let expected: Vec<(&str, String)> = vec![
            ("externalId", ext(&self.report_id)),
            ("rt", time.clone()),
            ("start", time.clone()),
            ("end", time),
            ("msg", msg),
            ("suser", ext(user)),
            ("destinationServiceName", ext(&self.application)),
            ("dvc", address(self.ip_address.parse::<Ipv4Addr>().is_ok())),
            ("requestClientApplication", ext(&self.user_agent)),
            ("cs1Label", "portalURL".into()),
            ("cs1", String::new()),
            ("cs2Label", "uniqueServiceAppIds".into()),
            ("cs2", app_tag(self.application_id)),
            ("cs3Label", "targetObjects".into()),
            (
                "cs3",
                format!(
                    "{},{}",
                    ext(&self.object_names[0]),
                    ext(&self.object_names[1])
                ),
            ),
            ("cs4Label", "policyIDs".into()),
            ("cs4", String::new()),
            ("c6a1Label", "\"Device IPv6 Address\"".into()),
            ("c6a1", address(self.ip_address.parse::<Ipv6Addr>().is_ok())),
            ("act", ext(&self.action_type)),
            ("cat", ext(&self.activity_type)),
            ("suid", ext(&self.account_object_id)),
            ("cs5Label", "countryCode".into()),
            ("cs5", ext(&self.country_code)),
        ];
        expect_fields(message, version, [&class, &class, "0"], &expected)
    }
}
