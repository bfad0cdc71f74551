//! Records built from arbitrary strings, and what their CEF line must say.
//!
//! The encoder's contract, written as data: shared by the property tests
//! and the `cef_roundtrip` fuzz target, so both hold the encoder to the
//! same rules: the line is one line, parses strictly ([`super::strict`]),
//! and every mapped field reads back as the input, except for the
//! documented replacement of control characters by spaces. It is part of
//! the library (like the strict parser) so that both can reach it; the
//! agent itself never calls it.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{strict, Encoder};
use crate::parse::{InputReader, Item};
use simd_json::json;
use simd_json::prelude::Writable;

/// Number of strings a case is built from.
pub const CASE_STRINGS: usize = 12;

/// Control characters CEF cannot carry become spaces; in the extension CR
/// and LF survive (escaped), in the header they become spaces too.
pub fn cleaned(text: &str, keep_line_breaks: bool) -> String {
    text.chars()
        .map(|c| {
            let line_break = c == '\n' || c == '\r';
            if (c.is_ascii_control() && !(keep_line_breaks && line_break)) || c == '\u{7f}' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

pub(crate) fn ext(text: &str) -> String {
    cleaned(text, true)
}

pub(crate) fn head(text: &str) -> String {
    cleaned(text, false)
}

pub(crate) fn take(strings: &[String], index: usize) -> String {
    strings.get(index).cloned().unwrap_or_default()
}

/// An activity whose mapped fields all come from arbitrary strings.
#[derive(Debug, Clone)]
pub struct ActivityCase {
    /// The record's `_id`.
    pub id: String,
    /// `eventTypeName`.
    pub event_type_name: String,
    /// `mainInfo.prettyOperationName`.
    pub pretty_operation_name: String,
    /// `description`.
    pub description: String,
    /// `user.userName`.
    pub user_name: String,
    /// `appName`.
    pub app_name: String,
    /// `device.clientIP`.
    pub client_ip: String,
    /// `device.userAgent`.
    pub user_agent: String,
    /// The names of the two `mainInfo.eventObjects`.
    pub object_names: Vec<String>,
    /// The two `policies`.
    pub policies: Vec<String>,
    /// `appId`.
    pub app_id: u64,
    /// `timestamp` (epoch ms).
    pub timestamp: i64,
}

impl ActivityCase {
    /// Builds a case from up to [`CASE_STRINGS`] strings (missing ones are
    /// empty) and two numbers.
    pub fn from_strings(strings: &[String], app_id: u64, timestamp: i64) -> Self {
        Self {
            id: take(strings, 0),
            event_type_name: take(strings, 1),
            pretty_operation_name: take(strings, 2),
            description: take(strings, 3),
            user_name: take(strings, 4),
            app_name: take(strings, 5),
            client_ip: take(strings, 6),
            user_agent: take(strings, 7),
            object_names: vec![take(strings, 8), take(strings, 9)],
            policies: vec![take(strings, 10), take(strings, 11)],
            app_id,
            timestamp,
        }
    }

    /// The record as the API would send it.
    pub fn to_json(&self) -> String {
        json!({
            "_id": self.id.clone(),
            "timestamp": self.timestamp,
            "eventTypeName": self.event_type_name.clone(),
            "description": self.description.clone(),
            "appId": self.app_id,
            "appName": self.app_name.clone(),
            "user": {"userName": self.user_name.clone()},
            "device": {"clientIP": self.client_ip.clone(), "userAgent": self.user_agent.clone()},
            "mainInfo": {
                "prettyOperationName": self.pretty_operation_name.clone(),
                "eventObjects": [
                    {"name": self.object_names[0].clone()},
                    {"name": self.object_names[1].clone()}
                ]
            },
            "policies": [self.policies[0].clone(), self.policies[1].clone()]
        })
        .encode()
    }

    /// Checks an encoded message (syslog header included) against the case,
    /// encoded with links into `portal` and device version `version`.
    pub fn check(&self, message: &str, portal: &str, version: &str) -> Result<(), String> {
        let line = check_common_header(message, version)?;
        let portal = ext(portal.trim_end_matches('/'));
        let class = if self.event_type_name.is_empty() {
            "EVENT_CATEGORY_UNSPECIFIED".to_owned()
        } else {
            head(&self.event_type_name)
        };
        let before_colon = self.description.split(':').next().unwrap_or_default();
        let name = if !self.pretty_operation_name.is_empty() {
            head(&self.pretty_operation_name)
        } else if !before_colon.is_empty() {
            head(before_colon)
        } else {
            class.clone()
        };
        expect_eq("class id", &line.header[4], &class)?;
        expect_eq("name", &line.header[5], &name)?;
        expect_eq("severity", &line.header[6], "0")?;
        let ts = self.timestamp.to_string();
        let ipv4 = self.client_ip.parse::<Ipv4Addr>().is_ok();
        let ipv6 = self.client_ip.parse::<Ipv6Addr>().is_ok();
        let expected: Vec<(&str, String)> = vec![
            ("externalId", ext(&self.id)),
            ("rt", ts.clone()),
            ("start", ts.clone()),
            ("end", ts),
            ("msg", ext(&self.description)),
            ("suser", ext(&self.user_name)),
            ("destinationServiceName", ext(&self.app_name)),
            (
                "dvc",
                if ipv4 {
                    self.client_ip.clone()
                } else {
                    String::new()
                },
            ),
            ("requestClientApplication", ext(&self.user_agent)),
            ("cs1Label", "portalURL".into()),
            (
                "cs1",
                format!("{portal}/#/audits?activity.id=eq({},)", ext(&self.id)),
            ),
            ("cs2Label", "uniqueServiceAppIds".into()),
            ("cs2", app_tag(self.app_id)),
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
            (
                "cs4",
                format!("{},{}", ext(&self.policies[0]), ext(&self.policies[1])),
            ),
            ("c6a1Label", "\"Device IPv6 Address\"".into()),
            (
                "c6a1",
                if ipv6 {
                    self.client_ip.clone()
                } else {
                    String::new()
                },
            ),
        ];
        expect_extension(&line, &expected)
    }
}

/// An alert whose mapped fields all come from arbitrary strings.
#[derive(Debug, Clone)]
pub struct AlertCase {
    /// The record's `_id`.
    pub id: String,
    /// `title`.
    pub title: String,
    /// `description`.
    pub description: String,
    /// `URL`.
    pub url: String,
    /// `policy.policyType`.
    pub policy_type: String,
    /// The `user` entity's label.
    pub user_label: String,
    /// The `service` entity's label.
    pub service_label: String,
    /// The one entry of `audits`.
    pub audit: String,
    /// The `policyRule` entity's id.
    pub rule_id: String,
    /// The `ip` entity's id.
    pub ip: String,
    /// `severityValue`.
    pub severity_value: i64,
    /// `threatScore`.
    pub threat_score: i64,
    /// The `service` entity's id.
    pub app_id: u64,
    /// `timestamp` (epoch ms).
    pub timestamp: i64,
}

impl AlertCase {
    /// Builds a case from up to [`CASE_STRINGS`] strings and three numbers.
    pub fn from_strings(strings: &[String], numbers: [i64; 3], timestamp: i64) -> Self {
        Self {
            id: take(strings, 0),
            title: take(strings, 1),
            description: take(strings, 2),
            url: take(strings, 3),
            policy_type: take(strings, 4),
            user_label: take(strings, 5),
            service_label: take(strings, 6),
            audit: take(strings, 7),
            rule_id: take(strings, 8),
            ip: take(strings, 9),
            severity_value: numbers[0],
            threat_score: numbers[1],
            app_id: numbers[2].unsigned_abs(),
            timestamp,
        }
    }

    /// The record as the API would send it.
    pub fn to_json(&self) -> String {
        json!({
            "_id": self.id.clone(),
            "timestamp": self.timestamp,
            "title": self.title.clone(),
            "description": self.description.clone(),
            "URL": self.url.clone(),
            "severityValue": self.severity_value,
            "threatScore": self.threat_score,
            "audits": [self.audit.clone()],
            "policy": {"policyType": self.policy_type.clone()},
            "entities": [
                {"type": "policyRule", "id": self.rule_id.clone()},
                {"type": "service", "id": self.app_id, "label": self.service_label.clone()},
                {"type": "user", "id": "x", "label": self.user_label.clone()},
                {"type": "ip", "id": self.ip.clone()}
            ]
        })
        .encode()
    }

    /// Checks an encoded message against the case, like
    /// [`ActivityCase::check`].
    pub fn check(&self, message: &str, portal: &str, version: &str) -> Result<(), String> {
        let line = check_common_header(message, version)?;
        let portal = ext(portal.trim_end_matches('/'));
        let class = if self.policy_type.is_empty() {
            "ALERT_GENERIC".to_owned()
        } else {
            format!("ALERT_CABINET_EVENT_MATCH_{}", head(&self.policy_type))
        };
        let name = if self.title.is_empty() {
            class.clone()
        } else {
            head(&self.title)
        };
        let severity = match self.severity_value {
            0 => "3",
            1 => "6",
            2 => "8",
            3 => "1",
            _ => "3",
        };
        expect_eq("class id", &line.header[4], &class)?;
        expect_eq("name", &line.header[5], &name)?;
        expect_eq("severity", &line.header[6], severity)?;
        let ts = self.timestamp.to_string();
        let url = if self.url.is_empty() {
            format!("{portal}/#/alerts/{}", ext(&self.id))
        } else {
            ext(&self.url)
        };
        let mut expected: Vec<(&str, String)> = vec![
            ("externalId", ext(&self.id)),
            ("start", ts.clone()),
            ("end", ts),
            ("msg", ext(&self.description)),
            ("suser", ext(&self.user_label)),
            ("destinationServiceName", ext(&self.service_label)),
            ("cn1Label", "riskScore".into()),
            ("cn1", self.threat_score.to_string()),
            ("cs1Label", "portalURL".into()),
            ("cs1", url),
            ("cs2Label", "uniqueServiceAppIds".into()),
            ("cs2", app_tag(self.app_id)),
            ("cs3Label", "relatedAudits".into()),
            ("cs3", ext(&self.audit)),
            ("cs4Label", "policyIDs".into()),
            ("cs4", ext(&self.rule_id)),
        ];
        if self.ip.parse::<Ipv4Addr>().is_ok() {
            expected.push(("src", self.ip.clone()));
        }
        if self.ip.parse::<Ipv6Addr>().is_ok() {
            expected.push(("c6a1", self.ip.clone()));
        }
        expect_extension(&line, &expected)
    }
}

/// The app id tag the encoder must write, computed independently of its
/// table for the ids the spec names.
pub fn app_tag(app_id: u64) -> String {
    let name = match app_id {
        11161 => "O365".to_owned(),
        20893 => "OUTLOOK".to_owned(),
        20892 => "SHAREPOINT".to_owned(),
        15600 => "ONEDRIVE".to_owned(),
        28375 => "TEAMS".to_owned(),
        10489 => "BOX".to_owned(),
        11114 => "SALESFORCE".to_owned(),
        14509 => "SERVICENOW".to_owned(),
        11627 => "DROPBOX".to_owned(),
        11599 => "AWS".to_owned(),
        12260 => "AZURE".to_owned(),
        10980 => "OKTA".to_owned(),
        other => other.to_string(),
    };
    format!("APPID_{name}")
}

/// Parses `json`, which must hold exactly one valid record, and returns its
/// encoded message; an error says why the input or output was not as
/// expected.
pub fn encode_single(encoder: &mut Encoder, json: &str) -> Result<String, String> {
    let mut out = Vec::new();
    let mut records = 0;
    let mut problems = Vec::new();
    InputReader::new()
        .read(json.as_bytes(), |item| match item {
            Item::Record(record) => {
                records += 1;
                encoder.encode(record, &mut out);
            }
            Item::Problem(problem) => problems.push(problem.to_string()),
        })
        .map_err(|error| format!("reading from memory: {error}"))?;
    if let Some(problem) = problems.first() {
        return Err(format!("generated JSON rejected: {problem}"));
    }
    if records != 1 {
        return Err(format!("{records} records in {json}, expected one"));
    }
    String::from_utf8(out).map_err(|error| format!("output is not UTF-8: {error}"))
}

/// A message must be exactly one line and parse strictly.
pub fn check_one_line(message: &str) -> Result<strict::CefLine, String> {
    if message.contains(['\n', '\r']) {
        return Err(format!("message spans lines: {message:?}"));
    }
    let cef = strict::strip_syslog_header(message).map_err(|e| format!("{e}: {message:?}"))?;
    strict::parse(cef).map_err(|e| format!("not strict CEF ({e}): {cef:?}"))
}

/// One strict line whose vendor, product and version are as configured.
fn check_common_header(message: &str, version: &str) -> Result<strict::CefLine, String> {
    let line = check_one_line(message)?;
    expect_eq("vendor", &line.header[1], "MCAS")?;
    expect_eq("product", &line.header[2], "SIEM_Agent")?;
    expect_eq("version", &line.header[3], &head(version))?;
    Ok(line)
}

fn expect_eq(what: &str, actual: &str, expected: &str) -> Result<(), String> {
    if actual == expected {
        Ok(())
    } else {
        Err(format!("{what}: got {actual:?}, expected {expected:?}"))
    }
}

fn expect_extension(line: &strict::CefLine, expected: &[(&str, String)]) -> Result<(), String> {
    let keys: Vec<&str> = expected.iter().map(|(k, _)| *k).collect();
    if line.keys() != keys {
        return Err(format!("keys {:?}, expected {keys:?}", line.keys()));
    }
    for ((key, actual), (_, wanted)) in line.extension.iter().zip(expected) {
        expect_eq(key, actual, wanted)?;
    }
    Ok(())
}
