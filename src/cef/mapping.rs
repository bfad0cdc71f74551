//! Which record fields go where in the CEF line, for activities and alerts.
//!
//! The order and spelling of every key is part of the contract with SIEM
//! content written for the official agent; the golden tests
//! (`tests/it/golden.rs`) hold it to the agent's published lines. A record is read in one pass over its top-level keys
//! ([`RecordFields::collect`]) instead of one lookup per field, because a
//! lookup in a parsed tape is a linear scan.

use simd_json::prelude::{ValueAsScalar, ValueIntoString};
use simd_json::tape::{Object, Value};

use super::escape::{escape_extension, escape_header};
use super::value::{
    as_integer, is_empty_text, is_ipv4, is_ipv6, member, members, non_empty_str, write_app_tag,
    write_extension, write_header, write_id, write_list,
};

/// Record keys the mapping reads (top level unless noted).
pub mod field {
    /// Record id, both kinds.
    pub const ID: &str = "_id";
    /// Event time in epoch ms, both kinds.
    pub const TIMESTAMP: &str = "timestamp";
    /// Free text, both kinds.
    pub const DESCRIPTION: &str = "description";
    /// Activity class, e.g. `EVENT_CATEGORY_LOGIN`.
    pub const EVENT_TYPE_NAME: &str = "eventTypeName";
    /// Activity actor object (`userName` inside).
    pub const USER: &str = "user";
    /// `user.userName`.
    pub const USER_NAME: &str = "userName";
    /// Activity app name.
    pub const APP_NAME: &str = "appName";
    /// Activity app id.
    pub const APP_ID: &str = "appId";
    /// Activity device object (`clientIP`, `userAgent` inside).
    pub const DEVICE: &str = "device";
    /// `device.clientIP`.
    pub const CLIENT_IP: &str = "clientIP";
    /// `device.userAgent`.
    pub const USER_AGENT: &str = "userAgent";
    /// Activity details (`prettyOperationName`, `eventObjects` inside).
    pub const MAIN_INFO: &str = "mainInfo";
    /// `mainInfo.prettyOperationName`.
    pub const PRETTY_OPERATION_NAME: &str = "prettyOperationName";
    /// `mainInfo.eventObjects`.
    pub const EVENT_OBJECTS: &str = "eventObjects";
    /// Name of an event object or entity.
    pub const NAME: &str = "name";
    /// Activity policy ids.
    pub const POLICIES: &str = "policies";
    /// Alert title (usually the policy name).
    pub const TITLE: &str = "title";
    /// Alert portal link.
    pub const URL: &str = "URL";
    /// Alert severity, 0-3.
    pub const SEVERITY_VALUE: &str = "severityValue";
    /// Alert risk score.
    pub const THREAT_SCORE: &str = "threatScore";
    /// Alert related activity ids.
    pub const AUDITS: &str = "audits";
    /// Alert policy object (`policyType` inside).
    pub const POLICY: &str = "policy";
    /// `policy.policyType`.
    pub const POLICY_TYPE: &str = "policyType";
    /// Alert entities.
    pub const ENTITIES: &str = "entities";
    /// Entity kind.
    pub const TYPE: &str = "type";
    /// Entity id (app id for services, address for ips).
    pub const ENTITY_ID: &str = "id";
    /// Entity display label.
    pub const LABEL: &str = "label";
    /// Account entity principal.
    pub const PRINCIPAL: &str = "pa";
}

/// Entity `type` values the alert mapping uses.
mod entity {
    pub(super) const USER: &str = "user";
    pub(super) const ACCOUNT: &str = "account";
    pub(super) const SERVICE: &str = "service";
    pub(super) const POLICY_RULE: &str = "policyRule";
    pub(super) const IP: &str = "ip";
}

/// Fixed header text.
pub const CEF_PREFIX: &str = "CEF:0|";
/// Device vendor, as SIEM content expects it.
pub const DEVICE_VENDOR: &str = "MCAS";
/// Device product, as SIEM content expects it.
pub const DEVICE_PRODUCT: &str = "SIEM_Agent";
/// Activity class id when the record has none.
pub const UNSPECIFIED_ACTIVITY_CLASS: &str = "EVENT_CATEGORY_UNSPECIFIED";
/// Alert class id prefix, followed by the policy type.
pub const ALERT_CLASS_PREFIX: &str = "ALERT_CABINET_EVENT_MATCH_";
/// Alert class id when the alert has no policy type.
pub const GENERIC_ALERT_CLASS: &str = "ALERT_GENERIC";
/// CEF severity of every activity.
pub const ACTIVITY_SEVERITY: u8 = 0;
/// CEF severity of an alert with a missing or unknown `severityValue`.
pub const DEFAULT_ALERT_SEVERITY: u8 = 3;

/// CEF severity for an alert's `severityValue` (0 low, 1 medium, 2 high,
/// 3 informational).
pub fn alert_severity(severity_value: Option<i64>) -> u8 {
    match severity_value {
        Some(0) => 3,
        Some(1) => 6,
        Some(2) => 8,
        Some(3) => 1,
        _ => DEFAULT_ALERT_SEVERITY,
    }
}

/// The kind of a record: which mapping writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A legacy API activity (audit event).
    Activity,
    /// A legacy API alert.
    Alert,
    /// A Microsoft Graph `alerts_v2` alert.
    GraphAlert,
    /// An advanced hunting `CloudAppEvents` row.
    CloudAppEvent,
}

/// Keys only a Graph alert has at its top level (a legacy record has none).
const GRAPH_ALERT_KEYS: [&str; 8] = [
    "createdDateTime",
    "lastUpdateDateTime",
    "alertWebUrl",
    "detectorId",
    "evidence",
    "incidentId",
    "mitreTechniques",
    "@odata.type",
];
/// Keys only a `CloudAppEvents` row has (column names are PascalCase).
const CLOUD_APP_EVENT_KEYS: [&str; 3] = ["ReportId", "ActionType", "Timestamp"];

/// The top-level fields of one record that the mapping reads, gathered in
/// one pass. Absent keys are `None`; values of any type are kept as they are.
#[derive(Clone, Copy, Default)]
pub struct RecordFields<'t, 'i> {
    id: Option<Value<'t, 'i>>,
    timestamp: Option<Value<'t, 'i>>,
    description: Option<Value<'t, 'i>>,
    event_type_name: Option<Value<'t, 'i>>,
    user: Option<Value<'t, 'i>>,
    app_name: Option<Value<'t, 'i>>,
    app_id: Option<Value<'t, 'i>>,
    device: Option<Value<'t, 'i>>,
    main_info: Option<Value<'t, 'i>>,
    policies: Option<Value<'t, 'i>>,
    title: Option<Value<'t, 'i>>,
    url: Option<Value<'t, 'i>>,
    severity_value: Option<Value<'t, 'i>>,
    threat_score: Option<Value<'t, 'i>>,
    audits: Option<Value<'t, 'i>>,
    policy: Option<Value<'t, 'i>>,
    entities: Option<Value<'t, 'i>>,
    /// A Graph record's kind, when one of its keys gave it away.
    graph: Option<RecordKind>,
}

impl<'t, 'i> RecordFields<'t, 'i> {
    /// Reads the fields of `record` in one pass. The first occurrence of a
    /// duplicated key wins.
    pub fn collect(record: &Object<'t, 'i>) -> Self {
        let mut fields = Self::default();
        for (key, value) in record.iter() {
            let slot = match key {
                field::ID => &mut fields.id,
                field::TIMESTAMP => &mut fields.timestamp,
                field::DESCRIPTION => &mut fields.description,
                field::EVENT_TYPE_NAME => &mut fields.event_type_name,
                field::USER => &mut fields.user,
                field::APP_NAME => &mut fields.app_name,
                field::APP_ID => &mut fields.app_id,
                field::DEVICE => &mut fields.device,
                field::MAIN_INFO => &mut fields.main_info,
                field::POLICIES => &mut fields.policies,
                field::TITLE => &mut fields.title,
                field::URL => &mut fields.url,
                field::SEVERITY_VALUE => &mut fields.severity_value,
                field::THREAT_SCORE => &mut fields.threat_score,
                field::AUDITS => &mut fields.audits,
                field::POLICY => &mut fields.policy,
                field::ENTITIES => &mut fields.entities,
                other => {
                    // Legacy records start with `_id`: once it is seen, no
                    // key needs a second look.
                    if fields.graph.is_none() && fields.id.is_none() {
                        fields.graph = if CLOUD_APP_EVENT_KEYS.contains(&other) {
                            Some(RecordKind::CloudAppEvent)
                        } else if GRAPH_ALERT_KEYS.contains(&other) {
                            Some(RecordKind::GraphAlert)
                        } else {
                            None
                        };
                    }
                    continue;
                }
            };
            if slot.is_none() {
                *slot = Some(value);
            }
        }
        fields
    }

    /// Guesses the kind: a record with the legacy `_id` is a legacy record;
    /// one without it is a Graph record when it has a key only Graph
    /// records have (a column such as `ReportId`, or `createdDateTime`);
    /// otherwise a `title` together with `severityValue` or `entities`
    /// means an alert, and anything else is an activity.
    pub fn detect_kind(&self) -> RecordKind {
        if let (None, Some(graph)) = (self.id, self.graph) {
            return graph;
        }
        if self.title.is_some() && (self.severity_value.is_some() || self.entities.is_some()) {
            RecordKind::Alert
        } else {
            RecordKind::Activity
        }
    }

    /// The event time in epoch ms, when the record has a usable one (an
    /// integer, an integral float, or a string of digits).
    pub fn timestamp_ms(&self) -> Option<i64> {
        let value = self.timestamp?;
        as_integer(value).or_else(|| value.as_str().and_then(|s| s.parse().ok()))
    }

    /// The CEF severity this record gets.
    pub fn severity(&self, kind: RecordKind) -> u8 {
        match kind {
            RecordKind::Alert => alert_severity(self.severity_value.and_then(as_integer)),
            _ => ACTIVITY_SEVERITY,
        }
    }
}

/// Fixed per-run parts of the line, escaped once at start-up.
#[derive(Clone, Debug)]
pub struct Prefixes {
    /// `CEF:0|MCAS|SIEM_Agent|<version>|`
    pub header: Vec<u8>,
    /// ` cs1Label=portalURL cs1=<portal>/#/audits?activity.id\=eq(`
    pub activity_link: Vec<u8>,
    /// ` cs1Label=portalURL cs1=<portal>/#/alerts/`
    pub alert_link: Vec<u8>,
}

impl Prefixes {
    /// Escapes the configured agent version and portal URL (trailing slashes
    /// removed) into the fixed parts of every line.
    pub fn new(agent_version: &str, portal_url: &str) -> Self {
        let portal = portal_url.trim_end_matches('/');
        let mut header = Vec::new();
        header.extend_from_slice(CEF_PREFIX.as_bytes());
        escape_header(&mut header, DEVICE_VENDOR);
        header.push(b'|');
        escape_header(&mut header, DEVICE_PRODUCT);
        header.push(b'|');
        escape_header(&mut header, agent_version);
        header.push(b'|');
        let mut activity_link = b" cs1Label=portalURL cs1=".to_vec();
        escape_extension(&mut activity_link, portal);
        escape_extension(&mut activity_link, "/#/audits?activity.id=eq(");
        let mut alert_link = b" cs1Label=portalURL cs1=".to_vec();
        escape_extension(&mut alert_link, portal);
        escape_extension(&mut alert_link, "/#/alerts/");
        Self {
            header,
            activity_link,
            alert_link,
        }
    }
}

/// Appends the seven header fields and the activity extension.
pub fn write_activity(out: &mut Vec<u8>, prefixes: &Prefixes, record: &RecordFields<'_, '_>) {
    out.extend_from_slice(&prefixes.header);
    // Class id.
    let class = non_empty_str(record.event_type_name).unwrap_or(UNSPECIFIED_ACTIVITY_CLASS);
    escape_header(out, class);
    out.push(b'|');
    // Name: pretty operation name, else the description up to its first
    // colon, else the class id.
    let [pretty_operation_name, event_objects] = members(
        record.main_info,
        [field::PRETTY_OPERATION_NAME, field::EVENT_OBJECTS],
    );
    let [client_ip, user_agent] = members(record.device, [field::CLIENT_IP, field::USER_AGENT]);
    let client_ip = client_ip.and_then(|v| v.into_string());
    let description = non_empty_str(record.description);
    let name = non_empty_str(pretty_operation_name)
        .or_else(|| {
            description
                .map(|d| d.split_once(':').map_or(d, |(head, _)| head))
                .filter(|head| !head.is_empty())
        })
        .unwrap_or(class);
    escape_header(out, name);
    // Activities always have severity 0 (`ACTIVITY_SEVERITY`).
    out.extend_from_slice(b"|0|externalId=");
    write_extension(out, record.id);
    out.extend_from_slice(b" rt=");
    let time = out.len();
    write_extension(out, record.timestamp);
    let time = time..out.len();
    out.extend_from_slice(b" start=");
    out.extend_from_within(time.clone());
    out.extend_from_slice(b" end=");
    out.extend_from_within(time);
    out.extend_from_slice(b" msg=");
    write_extension(out, record.description);
    out.extend_from_slice(b" suser=");
    write_extension(out, member(record.user, field::USER_NAME));
    out.extend_from_slice(b" destinationServiceName=");
    write_extension(out, record.app_name);
    out.extend_from_slice(b" dvc=");
    if let Some(ip) = client_ip.filter(|ip| is_ipv4(ip)) {
        escape_extension(out, ip);
    }
    out.extend_from_slice(b" requestClientApplication=");
    write_extension(out, user_agent);
    out.extend_from_slice(&prefixes.activity_link);
    write_extension(out, record.id);
    out.extend_from_slice(b",) cs2Label=uniqueServiceAppIds cs2=");
    write_app_tag(out, record.app_id);
    out.extend_from_slice(b" cs3Label=targetObjects cs3=");
    write_list(out, event_objects, |out, object| {
        write_extension(out, member(Some(object), field::NAME))
    });
    out.extend_from_slice(b" cs4Label=policyIDs cs4=");
    write_list(out, record.policies, write_id);
    out.extend_from_slice(b" c6a1Label=\"Device IPv6 Address\" c6a1=");
    if let Some(ip) = client_ip.filter(|ip| is_ipv6(ip)) {
        escape_extension(out, ip);
    }
}

/// The alert's entities of one `type`, in order.
fn entities_of<'t, 'i>(
    record: &RecordFields<'t, 'i>,
    kind: &'static str,
) -> impl Iterator<Item = Value<'t, 'i>> {
    record
        .entities
        .and_then(|e| e.as_array())
        .into_iter()
        .flat_map(|items| items.iter())
        .filter(move |e| member(Some(*e), field::TYPE).and_then(|t| t.into_string()) == Some(kind))
}

/// Appends the alert class id: `ALERT_CABINET_EVENT_MATCH_<policyType>`, or
/// `ALERT_GENERIC` for an alert without a policy type.
fn write_alert_class(out: &mut Vec<u8>, record: &RecordFields<'_, '_>) {
    match non_empty_str(member(record.policy, field::POLICY_TYPE)) {
        Some(policy_type) => {
            escape_header(out, ALERT_CLASS_PREFIX);
            escape_header(out, policy_type);
        }
        None => escape_header(out, GENERIC_ALERT_CLASS),
    }
}

/// Appends the seven header fields and the alert extension.
pub fn write_alert(out: &mut Vec<u8>, prefixes: &Prefixes, record: &RecordFields<'_, '_>) {
    out.extend_from_slice(&prefixes.header);
    write_alert_class(out, record);
    out.push(b'|');
    // An empty header field trips some parsers: fall back to the class id.
    match record.title.filter(|t| !is_empty_text(*t)) {
        Some(title) => write_header(out, title),
        None => write_alert_class(out, record),
    }
    out.push(b'|');
    let severity = record.severity(RecordKind::Alert);
    out.extend_from_slice(itoa::Buffer::new().format(severity).as_bytes());
    out.push(b'|');

    out.extend_from_slice(b"externalId=");
    write_extension(out, record.id);
    out.extend_from_slice(b" start=");
    let time = out.len();
    write_extension(out, record.timestamp);
    out.extend_from_slice(b" end=");
    out.extend_from_within(time..out.len() - b" end=".len());
    out.extend_from_slice(b" msg=");
    write_extension(out, record.description);
    out.extend_from_slice(b" suser=");
    match entities_of(record, entity::USER).next() {
        Some(user) => write_extension(out, member(Some(user), field::LABEL)),
        None => write_extension(
            out,
            entities_of(record, entity::ACCOUNT)
                .next()
                .and_then(|a| member(Some(a), field::PRINCIPAL)),
        ),
    }
    out.extend_from_slice(b" destinationServiceName=");
    write_extension(
        out,
        entities_of(record, entity::SERVICE)
            .next()
            .and_then(|s| member(Some(s), field::LABEL)),
    );
    out.extend_from_slice(b" cn1Label=riskScore cn1=");
    write_extension(out, record.threat_score);
    match record.url.filter(|u| !is_empty_text(*u)) {
        Some(url) => {
            out.extend_from_slice(b" cs1Label=portalURL cs1=");
            write_extension(out, Some(url));
        }
        None => {
            out.extend_from_slice(&prefixes.alert_link);
            write_extension(out, record.id);
        }
    }
    out.extend_from_slice(b" cs2Label=uniqueServiceAppIds cs2=");
    for (index, service) in entities_of(record, entity::SERVICE).enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_app_tag(out, member(Some(service), field::ENTITY_ID));
    }
    out.extend_from_slice(b" cs3Label=relatedAudits cs3=");
    write_list(out, record.audits, write_id);
    out.extend_from_slice(b" cs4Label=policyIDs cs4=");
    for (index, rule) in entities_of(record, entity::POLICY_RULE).enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_extension(out, member(Some(rule), field::ENTITY_ID));
    }
    let addresses = || {
        entities_of(record, entity::IP)
            .filter_map(|ip| member(Some(ip), field::ENTITY_ID).and_then(|id| id.into_string()))
    };
    if let Some(v4) = addresses().find(|a| is_ipv4(a)) {
        out.extend_from_slice(b" src=");
        escape_extension(out, v4);
    }
    if let Some(v6) = addresses().find(|a| is_ipv6(a)) {
        out.extend_from_slice(b" c6a1=");
        escape_extension(out, v6);
    }
}
