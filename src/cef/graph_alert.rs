//! Microsoft Graph `security/alerts_v2` alerts as CEF lines.
//!
//! The line keeps the legacy alert line's header (vendor, product, version)
//! and its extension keys where Graph has a value for them, so SIEM content
//! written for the official agent keeps matching; the keys Graph has no
//! value for (`cn1`, `cs3`, `cs4`) are written empty, and the Graph-only
//! facts follow at the end (`rt`, `cat`, `act`, `cs5` incident, `cs6` MITRE
//! techniques). The field list and its order are fixed by the project's
//! spec (`graph-sources.md`); the golden tests hold the line to it.
//!
//! Like the legacy mapping, the record is read in one pass over its
//! top-level keys, and every value of the wrong type writes nothing.

use simd_json::prelude::ValueIntoString;
use simd_json::tape::Value;

use super::escape::{escape_extension, escape_header};
use super::mapping::{Prefixes, GENERIC_ALERT_CLASS};
use super::value::{
    is_empty_text, is_ipv4, is_ipv6, member, members, non_empty_str, record_fields, write_app_tag,
    write_extension, write_header, write_list, write_time,
};

/// Alert keys the mapping reads (top level unless noted).
pub mod field {
    /// The alert id.
    pub const ID: &str = "id";
    /// The alert name.
    pub const TITLE: &str = "title";
    /// Free text.
    pub const DESCRIPTION: &str = "description";
    /// `informational`, `low`, `medium`, `high` (or `unknown`).
    pub const SEVERITY: &str = "severity";
    /// `new`, `inProgress`, `resolved`, ...
    pub const STATUS: &str = "status";
    /// The MITRE tactic, e.g. `InitialAccess`.
    pub const CATEGORY: &str = "category";
    /// The detector (policy) that raised the alert.
    pub const DETECTOR_ID: &str = "detectorId";
    /// The incident the alert belongs to.
    pub const INCIDENT_ID: &str = "incidentId";
    /// The alert's page in the Defender portal.
    pub const ALERT_WEB_URL: &str = "alertWebUrl";
    /// When the alert was created (never changes).
    pub const CREATED: &str = "createdDateTime";
    /// When the alert last changed.
    pub const LAST_UPDATE: &str = "lastUpdateDateTime";
    /// The first activity the alert covers.
    pub const FIRST_ACTIVITY: &str = "firstActivityDateTime";
    /// The last activity the alert covers.
    pub const LAST_ACTIVITY: &str = "lastActivityDateTime";
    /// MITRE technique ids.
    pub const MITRE_TECHNIQUES: &str = "mitreTechniques";
    /// Evidence items, each with an `@odata.type`.
    pub const EVIDENCE: &str = "evidence";
    /// An evidence item's type.
    pub const ODATA_TYPE: &str = "@odata.type";
    /// `userEvidence.userAccount`.
    pub const USER_ACCOUNT: &str = "userAccount";
    /// `userAccount.userPrincipalName`.
    pub const USER_PRINCIPAL_NAME: &str = "userPrincipalName";
    /// `userAccount.accountName`.
    pub const ACCOUNT_NAME: &str = "accountName";
    /// `cloudApplicationEvidence.appId`.
    pub const APP_ID: &str = "appId";
    /// `cloudApplicationEvidence.displayName`.
    pub const DISPLAY_NAME: &str = "displayName";
    /// `ipEvidence.ipAddress`.
    pub const IP_ADDRESS: &str = "ipAddress";
}

/// Evidence `@odata.type` values the mapping uses.
mod evidence {
    pub(super) const USER: &str = "#microsoft.graph.security.userEvidence";
    pub(super) const CLOUD_APPLICATION: &str = "#microsoft.graph.security.cloudApplicationEvidence";
    pub(super) const IP: &str = "#microsoft.graph.security.ipEvidence";
}

/// CEF severity of an alert whose `severity` is missing or not one of the
/// four levels.
pub const DEFAULT_SEVERITY: u8 = 3;

/// CEF severity for a Graph `severity`: the legacy numbers for the same
/// words.
pub fn severity(value: Option<&str>) -> u8 {
    match value {
        Some("informational") => 1,
        Some("low") => 3,
        Some("medium") => 6,
        Some("high") => 8,
        _ => DEFAULT_SEVERITY,
    }
}

record_fields! {
    /// The top-level fields of one alert that the mapping reads.
    GraphAlertFields {
        id: field::ID,
        title: field::TITLE,
        description: field::DESCRIPTION,
        severity: field::SEVERITY,
        status: field::STATUS,
        category: field::CATEGORY,
        detector_id: field::DETECTOR_ID,
        incident_id: field::INCIDENT_ID,
        alert_web_url: field::ALERT_WEB_URL,
        created: field::CREATED,
        last_update: field::LAST_UPDATE,
        first_activity: field::FIRST_ACTIVITY,
        last_activity: field::LAST_ACTIVITY,
        mitre_techniques: field::MITRE_TECHNIQUES,
        evidence: field::EVIDENCE,
    }
}

impl<'t, 'i> GraphAlertFields<'t, 'i> {
    /// The CEF severity of the alert.
    pub fn severity(&self) -> u8 {
        severity(self.severity.and_then(|v| v.into_string()))
    }

    /// The time for the syslog header: when the alert was created (what
    /// the legacy alert's `timestamp` was), if it is a valid ISO time.
    pub fn created_ms(&self) -> Option<i64> {
        self.created
            .and_then(|v| v.into_string())
            .and_then(crate::clock::parse_iso_utc_ms)
    }
}

/// What the line needs of the evidence, found in one pass over it.
#[derive(Default)]
struct Evidence<'t, 'i> {
    /// The first user evidence.
    user: Option<Value<'t, 'i>>,
    /// The first cloud application evidence.
    app: Option<Value<'t, 'i>>,
    /// The first IPv4 address of the IP evidence.
    ipv4: Option<&'i str>,
    /// The first IPv6 address of the IP evidence.
    ipv6: Option<&'i str>,
}

/// The `@odata.type` of an evidence item.
fn evidence_type<'i>(item: Value<'_, 'i>) -> Option<&'i str> {
    member(Some(item), field::ODATA_TYPE).and_then(|t| t.into_string())
}

/// The evidence items of the alert, in order.
fn evidence_items<'t, 'i>(
    record: &GraphAlertFields<'t, 'i>,
) -> impl Iterator<Item = Value<'t, 'i>> {
    record
        .evidence
        .and_then(|e| e.as_array())
        .into_iter()
        .flat_map(|items| items.iter())
}

impl<'t, 'i> Evidence<'t, 'i> {
    fn scan(record: &GraphAlertFields<'t, 'i>) -> Self {
        let mut found = Self::default();
        for item in evidence_items(record) {
            match evidence_type(item) {
                Some(evidence::USER) => {
                    found.user.get_or_insert(item);
                }
                Some(evidence::CLOUD_APPLICATION) => {
                    found.app.get_or_insert(item);
                }
                Some(evidence::IP) => {
                    let address =
                        member(Some(item), field::IP_ADDRESS).and_then(|a| a.into_string());
                    if let Some(address) = address {
                        if found.ipv4.is_none() && is_ipv4(address) {
                            found.ipv4 = Some(address);
                        } else if found.ipv6.is_none() && is_ipv6(address) {
                            found.ipv6 = Some(address);
                        }
                    }
                }
                _ => {}
            }
        }
        found
    }
}

/// Appends the class id: the detector, else `ALERT_GENERIC`.
fn write_class(out: &mut Vec<u8>, record: &GraphAlertFields<'_, '_>) {
    escape_header(
        out,
        non_empty_str(record.detector_id).unwrap_or(GENERIC_ALERT_CLASS),
    );
}

/// Appends the seven header fields and the extension of a Graph alert.
pub fn write(out: &mut Vec<u8>, prefixes: &Prefixes, record: &GraphAlertFields<'_, '_>) {
    out.extend_from_slice(&prefixes.header);
    write_class(out, record);
    out.push(b'|');
    // An empty header field trips some parsers: fall back to the class id.
    match record.title.filter(|t| !is_empty_text(*t)) {
        Some(title) => write_header(out, title),
        None => write_class(out, record),
    }
    out.push(b'|');
    out.extend_from_slice(itoa::Buffer::new().format(record.severity()).as_bytes());
    out.push(b'|');

    out.extend_from_slice(b"externalId=");
    write_extension(out, record.id);
    out.extend_from_slice(b" start=");
    write_time(out, record.first_activity);
    out.extend_from_slice(b" end=");
    write_time(out, record.last_activity);
    out.extend_from_slice(b" msg=");
    write_extension(out, record.description);
    let evidence = Evidence::scan(record);
    out.extend_from_slice(b" suser=");
    // The first user evidence only, even when the name wanted is empty
    // there.
    if let Some(user) = evidence.user {
        let [principal, account] = members(
            member(Some(user), field::USER_ACCOUNT),
            [field::USER_PRINCIPAL_NAME, field::ACCOUNT_NAME],
        );
        match principal.filter(|p| !is_empty_text(*p)) {
            Some(principal) => write_extension(out, Some(principal)),
            None => write_extension(out, account),
        }
    }
    out.extend_from_slice(b" destinationServiceName=");
    write_extension(out, member(evidence.app, field::DISPLAY_NAME));
    out.extend_from_slice(b" cn1Label=riskScore cn1= cs1Label=portalURL cs1=");
    write_extension(out, record.alert_web_url);
    out.extend_from_slice(b" cs2Label=uniqueServiceAppIds cs2=");
    let mut first = true;
    let apps = evidence_items(record)
        .filter(|item| evidence_type(*item) == Some(evidence::CLOUD_APPLICATION));
    for app in apps {
        let before = out.len();
        if !first {
            out.push(b',');
        }
        let tag = out.len();
        write_app_tag(out, member(Some(app), field::APP_ID));
        if out.len() == tag {
            // No app id here: the item is skipped, comma and all.
            out.truncate(before);
        } else {
            first = false;
        }
    }
    out.extend_from_slice(b" cs3Label=relatedAudits cs3= cs4Label=policyIDs cs4=");
    if let Some(v4) = evidence.ipv4 {
        out.extend_from_slice(b" src=");
        escape_extension(out, v4);
    }
    if let Some(v6) = evidence.ipv6 {
        out.extend_from_slice(b" c6a1=");
        escape_extension(out, v6);
    }
    out.extend_from_slice(b" rt=");
    write_time(out, record.last_update);
    out.extend_from_slice(b" cat=");
    write_extension(out, record.category);
    out.extend_from_slice(b" act=");
    write_extension(out, record.status);
    out.extend_from_slice(b" cs5Label=incidentId cs5=");
    write_extension(out, record.incident_id);
    out.extend_from_slice(b" cs6Label=mitreTechniques cs6=");
    write_list(out, record.mitre_techniques, |out, technique| {
        write_extension(out, Some(technique));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_are_the_legacy_numbers() {
        let mapped: Vec<u8> = [
            Some("informational"),
            Some("low"),
            Some("medium"),
            Some("high"),
            Some("unknown"),
            Some("High"),
            None,
        ]
        .into_iter()
        .map(severity)
        .collect();
        assert_eq!(mapped, [1, 3, 6, 8, 3, 3, 3]);
    }
}
