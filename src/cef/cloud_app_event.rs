//! Advanced hunting `CloudAppEvents` rows (Microsoft Graph
//! `security/runHuntingQuery`) as CEF lines.
//!
//! The line keeps the legacy activity line's header and extension keys,
//! filled from the row's columns where they have a counterpart, and adds
//! the row's own facts at the end (`act`, `cat`, `suid`, `cs5` country).
//! The portal link and the policy ids have no column and are written
//! empty. The field list and its order are fixed by the project's spec
//! (`graph-sources.md`); the golden tests hold the line to it.

use simd_json::prelude::ValueIntoString;
use simd_json::tape::Value;

use super::escape::{escape_extension, escape_header};
use super::mapping::{Prefixes, ACTIVITY_SEVERITY, UNSPECIFIED_ACTIVITY_CLASS};
use super::value::{
    is_empty_text, is_ipv4, is_ipv6, member, non_empty_str, record_fields, write_app_tag,
    write_extension, write_list,
};

/// Column names the mapping reads (top level unless noted).
pub mod field {
    /// When the event happened.
    pub const TIMESTAMP: &str = "Timestamp";
    /// The event's unique id.
    pub const REPORT_ID: &str = "ReportId";
    /// What was done, e.g. `FileDownloaded`.
    pub const ACTION_TYPE: &str = "ActionType";
    /// The kind of activity, e.g. `Download`.
    pub const ACTIVITY_TYPE: &str = "ActivityType";
    /// The app's name.
    pub const APPLICATION: &str = "Application";
    /// The app's id (the legacy app ids).
    pub const APPLICATION_ID: &str = "ApplicationId";
    /// The actor's Entra object id.
    pub const ACCOUNT_OBJECT_ID: &str = "AccountObjectId";
    /// The actor: a UPN, or sometimes an object id.
    pub const ACCOUNT_ID: &str = "AccountId";
    /// The actor's display name.
    pub const ACCOUNT_DISPLAY_NAME: &str = "AccountDisplayName";
    /// The client's address, IPv4 or IPv6.
    pub const IP_ADDRESS: &str = "IPAddress";
    /// The client's user agent.
    pub const USER_AGENT: &str = "UserAgent";
    /// The client's country.
    pub const COUNTRY_CODE: &str = "CountryCode";
    /// The main object acted on.
    pub const OBJECT_NAME: &str = "ObjectName";
    /// Every object acted on (`Name` inside each).
    pub const ACTIVITY_OBJECTS: &str = "ActivityObjects";
    /// `ActivityObjects[].Name`.
    pub const NAME: &str = "Name";
    /// The source event (`UserId` inside).
    pub const RAW_EVENT_DATA: &str = "RawEventData";
    /// `RawEventData.UserId`, often the UPN.
    pub const USER_ID: &str = "UserId";
}

record_fields! {
    /// The columns of one row that the mapping reads.
    CloudAppEventFields {
        timestamp: field::TIMESTAMP,
        report_id: field::REPORT_ID,
        action_type: field::ACTION_TYPE,
        activity_type: field::ACTIVITY_TYPE,
        application: field::APPLICATION,
        application_id: field::APPLICATION_ID,
        account_object_id: field::ACCOUNT_OBJECT_ID,
        account_id: field::ACCOUNT_ID,
        account_display_name: field::ACCOUNT_DISPLAY_NAME,
        ip_address: field::IP_ADDRESS,
        user_agent: field::USER_AGENT,
        country_code: field::COUNTRY_CODE,
        object_name: field::OBJECT_NAME,
        activity_objects: field::ACTIVITY_OBJECTS,
        raw_event_data: field::RAW_EVENT_DATA,
    }
}

impl<'t, 'i> CloudAppEventFields<'t, 'i> {
    /// The time for the syslog header: the event's `Timestamp`, if it is a
    /// valid ISO time.
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.timestamp
            .and_then(|v| v.into_string())
            .and_then(crate::clock::parse_iso_utc_ms)
    }
}

/// `value` when it is a string holding an `@` (a user principal name).
fn principal<'i>(value: Option<Value<'_, 'i>>) -> Option<&'i str> {
    value
        .and_then(|v| v.into_string())
        .filter(|text| text.contains('@'))
}

/// Appends the seven header fields and the extension of an event;
/// `time_ms` is [`CloudAppEventFields::timestamp_ms`], which the caller
/// already read for the syslog header.
pub fn write(
    out: &mut Vec<u8>,
    prefixes: &Prefixes,
    record: &CloudAppEventFields<'_, '_>,
    time_ms: Option<i64>,
) {
    out.extend_from_slice(&prefixes.header);
    // The class id and the name are both the action; neither may be empty.
    let class = non_empty_str(record.action_type).unwrap_or(UNSPECIFIED_ACTIVITY_CLASS);
    escape_header(out, class);
    out.push(b'|');
    escape_header(out, class);
    out.push(b'|');
    out.extend_from_slice(itoa::Buffer::new().format(ACTIVITY_SEVERITY).as_bytes());
    out.push(b'|');

    out.extend_from_slice(b"externalId=");
    write_extension(out, record.report_id);
    out.extend_from_slice(b" rt=");
    let time = out.len();
    if let Some(ms) = time_ms {
        out.extend_from_slice(itoa::Buffer::new().format(ms).as_bytes());
    }
    let time = time..out.len();
    out.extend_from_slice(b" start=");
    out.extend_from_within(time.clone());
    out.extend_from_slice(b" end=");
    out.extend_from_within(time);
    out.extend_from_slice(b" msg=");
    write_extension(out, record.action_type);
    if let Some(object) = record.object_name.filter(|o| !is_empty_text(*o)) {
        out.extend_from_slice(b": ");
        write_extension(out, Some(object));
    }
    out.extend_from_slice(b" suser=");
    let raw_user = || principal(member(record.raw_event_data, field::USER_ID));
    match principal(record.account_id).or_else(raw_user) {
        Some(upn) => escape_extension(out, upn),
        None => write_extension(out, record.account_display_name),
    }
    out.extend_from_slice(b" destinationServiceName=");
    write_extension(out, record.application);
    let address = record.ip_address.and_then(|v| v.into_string());
    out.extend_from_slice(b" dvc=");
    if let Some(v4) = address.filter(|a| is_ipv4(a)) {
        escape_extension(out, v4);
    }
    out.extend_from_slice(b" requestClientApplication=");
    write_extension(out, record.user_agent);
    out.extend_from_slice(b" cs1Label=portalURL cs1= cs2Label=uniqueServiceAppIds cs2=");
    write_app_tag(out, record.application_id);
    out.extend_from_slice(b" cs3Label=targetObjects cs3=");
    write_list(out, record.activity_objects, |out, object| {
        write_extension(out, member(Some(object), field::NAME));
    });
    out.extend_from_slice(b" cs4Label=policyIDs cs4= c6a1Label=\"Device IPv6 Address\" c6a1=");
    if let Some(v6) = address.filter(|a| is_ipv6(a)) {
        escape_extension(out, v6);
    }
    out.extend_from_slice(b" act=");
    write_extension(out, record.action_type);
    out.extend_from_slice(b" cat=");
    write_extension(out, record.activity_type);
    out.extend_from_slice(b" suid=");
    write_extension(out, record.account_object_id);
    out.extend_from_slice(b" cs5Label=countryCode cs5=");
    write_extension(out, record.country_code);
}
