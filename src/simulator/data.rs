//! Deterministic, seeded records for the API simulator.
//!
//! A record is a pure function of its stream, the seed and its index: nothing
//! is stored, so a simulated tenant with years of history costs no memory,
//! and a test can compute exactly which records the agent must deliver.
//!
//! Within a stream, event times never decrease with the index. Ingestion
//! times (`created`) add a per-record delay of up to `max_index_delay_ms`, so
//! records are indexed out of event order, as the real service does. Every
//! `burst_every`-th group of `burst_size` records shares one millisecond, and
//! every `hostile_every`-th record carries Unicode and the characters CEF must
//! escape.

use std::fmt::Write as _;

use crate::data_type::{DataType, Family};

/// How a stream's records are spread over time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    /// What the records are.
    pub kind: DataType,
    /// Seed for every pseudo-random choice.
    pub seed: u64,
    /// Event time of record 0, epoch ms.
    pub start_ms: i64,
    /// Records per minute of event time (at least 1).
    pub per_minute: u64,
    /// Largest delay between event and ingestion time.
    pub max_index_delay_ms: i64,
    /// Every this many records a burst starts (0: no bursts).
    pub burst_every: u64,
    /// Records in a burst that share the burst's first millisecond.
    pub burst_size: u64,
    /// Every this many records one is hostile (0: never).
    pub hostile_every: u64,
}

/// Apps the generator draws from: `(app id, name)`.
pub const APPS: &[(u64, &str)] = &[
    (15600, "Microsoft OneDrive for Business"),
    (20893, "Microsoft Exchange Online"),
    (20892, "Microsoft SharePoint Online"),
    (28375, "Microsoft Teams"),
    (11114, "Salesforce"),
    (14509, "ServiceNow"),
    (10489, "Box"),
    (11770, "Google Workspace"),
];

/// Operations for activities: `(event type name, pretty operation name)`.
const OPERATIONS: &[(&str, &str)] = &[
    ("EVENT_CATEGORY_DOWNLOAD_FILE", "Download file"),
    ("EVENT_CATEGORY_LOGIN", "Log on"),
    ("EVENT_CATEGORY_SEND_MAIL", "Send mail"),
    ("EVENT_CATEGORY_DELETE_OBJECT", "Delete object"),
    ("EVENT_CATEGORY_VIEW_REPORT", "View report"),
    ("EVENT_CATEGORY_SHARE_FILE", "Share file"),
];

/// Text with every character class the encoder treats specially.
const HOSTILE_TEXT: &str =
    "Ünïcødé ✓ 日本語 𝄞 a=b c|d back\\slash line1\nline2\r\ttab \u{0}nul \u{7f}del \"quoted\"";

/// SplitMix64: a small, well-distributed hash of (seed, index, salt).
pub fn mix(seed: u64, index: u64, salt: u64) -> u64 {
    let mut z = seed
        .wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(salt.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl StreamConfig {
    /// Event time of record `index` (non-decreasing in `index`).
    pub fn timestamp(&self, index: u64) -> i64 {
        let index = match (self.burst_every, self.burst_size) {
            (0, _) | (_, 0) => index,
            (every, size) => {
                let offset = index % every;
                if offset < size {
                    index - offset
                } else {
                    index
                }
            }
        };
        let per_minute = self.per_minute.max(1);
        // i128: no overflow for any index a test or benchmark can reach.
        let ms = i128::from(index) * 60_000 / i128::from(per_minute);
        self.start_ms + i64::try_from(ms).unwrap_or(i64::MAX - self.start_ms)
    }

    /// Ingestion time of record `index`: its event time plus a delay.
    pub fn created(&self, index: u64) -> i64 {
        let delay = match self.max_index_delay_ms {
            d if d <= 0 => 0,
            d => (mix(self.seed, index, 1) % (d as u64 + 1)) as i64,
        };
        self.timestamp(index) + delay
    }

    /// The smallest index whose event time is at least `ms`.
    pub fn first_index_at_or_after(&self, ms: i64) -> u64 {
        if ms <= self.start_ms {
            return 0;
        }
        // Event times grow by at least 60000/per_minute per index outside
        // bursts, so this bound is past the answer; then binary search.
        let per_minute = self.per_minute.max(1) as i128;
        let estimate = (i128::from(ms - self.start_ms) * per_minute / 60_000) as u64;
        let mut high = estimate.saturating_add(self.burst_size).saturating_add(2);
        while self.timestamp(high) < ms {
            high = high.saturating_mul(2).max(1);
        }
        let mut low = 0;
        while low < high {
            let middle = low + (high - low) / 2;
            if self.timestamp(middle) < ms {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }

    /// The app (id, name) of record `index`.
    pub fn app(&self, index: u64) -> (u64, &'static str) {
        APPS[(mix(self.seed, index, 2) % APPS.len() as u64) as usize]
    }

    /// The app id of record `index`.
    pub fn app_id(&self, index: u64) -> u64 {
        self.app(index).0
    }

    /// Whether record `index` carries hostile text.
    pub fn is_hostile(&self, index: u64) -> bool {
        self.hostile_every > 0 && index % self.hostile_every == self.hostile_every - 1
    }

    /// The `_id` of record `index`: unique within the stream.
    pub fn write_id(&self, index: u64, out: &mut String) {
        match self.kind.family() {
            Family::Activity => {
                let _ = write!(
                    out,
                    "{}_{}_{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                    self.timestamp(index),
                    self.app_id(index),
                    mix(self.seed, index, 3) as u32,
                    (mix(self.seed, index, 4) & 0xffff) as u16,
                    mix(self.seed, index, 5) & 0xfff,
                    mix(self.seed, index, 6) & 0xfff,
                    index & 0xffff_ffff_ffff,
                );
            }
            Family::Alert => {
                let _ = write!(out, "{:08x}{:016x}", self.seed as u32, index);
            }
        }
    }

    /// The `_id` of record `index` as a new string.
    pub fn id(&self, index: u64) -> String {
        let mut id = String::new();
        self.write_id(index, &mut id);
        id
    }

    /// Appends record `index` as compact JSON.
    pub fn write_record(&self, index: u64, out: &mut Vec<u8>) {
        match self.kind.family() {
            Family::Activity => self.write_activity(index, out),
            Family::Alert => self.write_alert(index, out),
        }
    }

    fn write_activity(&self, index: u64, out: &mut Vec<u8>) {
        let mut text = String::with_capacity(1536);
        let (app_id, app_name) = self.app(index);
        let (event_type, operation) =
            OPERATIONS[(mix(self.seed, index, 7) % OPERATIONS.len() as u64) as usize];
        let user = mix(self.seed, index, 8) % 5000;
        let ip = mix(self.seed, index, 9);
        let object = if self.is_hostile(index) {
            HOSTILE_TEXT.to_owned()
        } else {
            format!("report-{index}.xlsx")
        };
        let client_ip = if ip.is_multiple_of(10) {
            format!("2001:db8::{:x}:{:x}", (ip >> 16) & 0xffff, ip & 0xffff)
        } else {
            format!("203.0.{}.{}", (ip >> 8) & 0xff, ip & 0xff)
        };
        text.push_str("{\"_id\":");
        let mut id = String::new();
        self.write_id(index, &mut id);
        json_string(&mut text, &id);
        let _ = write!(
            text,
            ",\"tenantId\":97134000,\"appId\":{app_id},\"saasId\":{app_id},\"appName\":"
        );
        json_string(&mut text, app_name);
        let _ = write!(
            text,
            ",\"timestamp\":{ts},\"created\":{created},\"eventTypeName\":\"{event_type}\",\
             \"eventTypeValue\":\"EVENT_GENERIC\",\"description\":",
            ts = self.timestamp(index),
            created = self.created(index),
        );
        json_string(&mut text, &format!("{operation}: {object}"));
        let _ = write!(
            text,
            ",\"severity\":\"INFO\",\"confidenceLevel\":20,\"source\":2,\
             \"device\":{{\"clientIP\":\"{client_ip}\",\"userAgent\":\"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36 Edg/131.0\",\"countryCode\":\"NL\"}},\
             \"location\":{{\"countryCode\":\"NL\",\"city\":\"Amsterdam\",\"region\":\"North Holland\",\"latitude\":52.3676,\"longitude\":4.9041,\"anonymousProxy\":false,\"category\":0}},\
             \"user\":{{\"userName\":\"user{user}@contoso.com\",\"userTags\":[\"5f01dbbc68df27c17aa6ca81\"]}},\
             \"userAgent\":{{\"family\":\"EDGE\",\"name\":\"Edge\",\"os\":\"WINDOWS\",\"browser\":\"EDGE\",\"deviceType\":\"DESKTOP\",\"version\":\"131.0\"}},\
             \"mainInfo\":{{\"eventObjects\":[{{\"id\":\"obj-{index}\",\"name\":"
        );
        json_string(&mut text, &object);
        let _ = write!(
            text,
            ",\"objType\":3,\"role\":3,\"tags\":[]}},{{\"id\":\"user{user}@contoso.com\",\"name\":\"User {user}\",\"objType\":21,\"role\":4,\"resolved\":true,\"tags\":[]}}],\
             \"prettyOperationName\":\"{operation}\",\"rawOperationName\":\"Op{index}\",\"type\":\"basic\"}},\
             \"internals\":{{\"otherIPs\":[\"{client_ip}\"]}},\"policies\":[]}}"
        );
        out.extend_from_slice(text.as_bytes());
    }

    fn write_alert(&self, index: u64, out: &mut Vec<u8>) {
        let mut text = String::with_capacity(1024);
        let (app_id, app_name) = self.app(index);
        let user = mix(self.seed, index, 8) % 5000;
        let severity = mix(self.seed, index, 10) % 4;
        let title = if self.is_hostile(index) {
            HOSTILE_TEXT.to_owned()
        } else {
            format!("Mass download by a single user ({})", index % 7)
        };
        let mut id = String::new();
        self.write_id(index, &mut id);
        text.push_str("{\"_id\":");
        json_string(&mut text, &id);
        let _ = write!(
            text,
            ",\"idValue\":{index},\"timestamp\":{ts},\"title\":",
            ts = self.timestamp(index)
        );
        json_string(&mut text, &title);
        text.push_str(",\"description\":");
        json_string(
            &mut text,
            &format!("Activity policy '{title}' was triggered by 'user{user}@contoso.com'"),
        );
        let _ = write!(
            text,
            ",\"URL\":\"https://tenant.portal.cloudappsecurity.com/#/alerts/{id}\",\
             \"severityValue\":{severity},\"statusValue\":0,\"resolutionStatusValue\":0,\
             \"threatScore\":{score},\"stories\":[0],\"isSystemAlert\":false,\
             \"audits\":[\"{ts}_{app_id}_{audit:012x}\"],\
             \"policy\":{{\"id\":\"5f01dce13de79160fbec{policy:04x}\",\"label\":\"Policy\",\"policyType\":\"AUDIT\",\"type\":\"policyRule\"}},\
             \"entities\":[{{\"id\":\"5f01dce13de79160fbec{policy:04x}\",\"label\":\"Policy\",\"policyType\":\"AUDIT\",\"type\":\"policyRule\"}},\
             {{\"id\":{app_id},\"label\":\"{app_name}\",\"type\":\"service\"}},\
             {{\"id\":\"user{user}@contoso.com\",\"label\":\"user{user}@contoso.com\",\"type\":\"user\"}},\
             {{\"id\":\"203.0.113.{octet}\",\"label\":\"203.0.113.{octet}\",\"type\":\"ip\"}}]}}",
            score = mix(self.seed, index, 11) % 100,
            ts = self.timestamp(index),
            audit = mix(self.seed, index, 12) & 0xffff_ffff_ffff,
            policy = index % 0xffff,
            octet = user % 250,
        );
        out.extend_from_slice(text.as_bytes());
    }
}

/// Appends `text` as a JSON string literal.
pub fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use simd_json::prelude::*;

    fn stream(kind: DataType) -> StreamConfig {
        StreamConfig {
            kind,
            seed: 7,
            start_ms: 1_700_000_000_000,
            per_minute: 10_000,
            max_index_delay_ms: 300_000,
            burst_every: 1000,
            burst_size: 50,
            hostile_every: 97,
        }
    }

    #[test]
    fn event_times_never_decrease_and_bursts_share_a_millisecond() {
        let s = stream(DataType::Activities);
        for i in 0..20_000 {
            assert!(s.timestamp(i) <= s.timestamp(i + 1), "{i}");
            assert!(s.created(i) >= s.timestamp(i));
            assert!(s.created(i) <= s.timestamp(i) + s.max_index_delay_ms);
        }
        assert_eq!(s.timestamp(1000), s.timestamp(1049));
        assert!(s.timestamp(1049) < s.timestamp(1050));
    }

    #[test]
    fn index_search_is_exact() {
        let s = stream(DataType::Activities);
        for ms in [
            s.start_ms - 5,
            s.start_ms,
            s.start_ms + 1,
            s.start_ms + 6_000,
            s.start_ms + 86_400_000,
        ] {
            let i = s.first_index_at_or_after(ms);
            assert!(s.timestamp(i) >= ms, "{ms}");
            assert!(i == 0 || s.timestamp(i - 1) < ms, "{ms}");
        }
    }

    #[test]
    fn records_are_valid_json_with_unique_ids() {
        for kind in [DataType::Activities, DataType::Alerts] {
            let s = stream(kind);
            let mut ids = std::collections::HashSet::new();
            for i in 0..2_000 {
                let mut out = Vec::new();
                s.write_record(i, &mut out);
                let value = simd_json::to_owned_value(&mut out).expect("valid JSON");
                let id = value.get_str("_id").expect("has an id").to_owned();
                assert_eq!(id, s.id(i));
                assert!(ids.insert(id), "duplicate id at {i}");
                assert_eq!(value.get_i64("timestamp"), Some(s.timestamp(i)));
                if kind == DataType::Activities {
                    assert_eq!(value.get_i64("created"), Some(s.created(i)));
                }
            }
        }
    }

    #[test]
    fn hostile_records_round_trip_their_text() {
        let s = stream(DataType::Activities);
        let mut out = Vec::new();
        s.write_record(96, &mut out);
        let value = simd_json::to_owned_value(&mut out).expect("valid JSON");
        let description = value.get_str("description").expect("has one");
        assert!(description.ends_with(HOSTILE_TEXT), "{description:?}");
    }

    #[test]
    fn activities_are_realistic_in_size() {
        let s = stream(DataType::Activities);
        let mut out = Vec::new();
        s.write_record(1, &mut out);
        assert!((1000..1800).contains(&out.len()), "{}", out.len());
    }
}
