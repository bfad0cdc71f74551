//! Syslog message headers in front of each CEF line.
//!
//! The official agent wrote `<ISO time> [host ]CEF:...` with no PRI; that is
//! the default here too, because SIEM parsers were tuned to it. The RFC 3164
//! and RFC 5424 styles exist for collectors that insist on a proper syslog
//! header. The time in every style is the record's own event time, so a
//! backlog replayed hours later still lands at the right place in the SIEM.
//!
//! This module owns the header styles and the framing of messages on a
//! stream (LF or RFC 6587 octet counting, and cutting to a maximum size);
//! the time text comes from [`crate::clock`], the sockets are the sink's.

use crate::clock::{now_ms, DayCache, MAX_TIMESTAMP_MS};

/// The syslog facility used when none is configured: local0.
pub const DEFAULT_FACILITY: u8 = 16;
/// The largest valid syslog facility number (local7).
pub const MAX_FACILITY: u8 = 23;
/// RFC 5424 APP-NAME field.
pub const APP_NAME: &str = "siem-agent";
/// Longest host name RFC 5424 allows in the HOSTNAME field.
pub const MAX_HOSTNAME_LEN: usize = 255;

/// How each message starts.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum HeaderStyle {
    /// `2017-11-28T19:24:55.000Z [host ]CEF:...`, the official agent's style.
    Iso,
    /// `<134>Nov 28 19:24:55 host CEF:...` (BSD syslog).
    Rfc3164,
    /// `<134>1 2017-11-28T19:24:55.000Z host siem-agent - - - CEF:...`.
    Rfc5424,
    /// The bare CEF line.
    None,
}

/// A validated header configuration; build it with [`SyslogHeader::new`].
///
/// It keeps the last day it formatted: the records of a page nearly always
/// share a day, and the calendar arithmetic was a tenth of encoding time.
/// That is why [`SyslogHeader::write`] takes `&mut self`; each encoding
/// thread owns its header.
#[derive(Clone, Debug)]
pub struct SyslogHeader {
    style: HeaderStyle,
    hostname: Option<String>,
    facility: u8,
    day: DayCache,
}

/// Why a header configuration was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    /// Facility numbers run from 0 (kern) to 23 (local7).
    #[error("syslog facility {0} is out of range (0-23)")]
    Facility(u8),
    /// Syslog host names are printable ASCII without spaces, 1-255 bytes.
    #[error(
        "host name {0:?} is not valid in a syslog header (printable ASCII, no spaces, 1-255 bytes)"
    )]
    Hostname(String),
    /// The RFC styles need a host name and none was configured or found.
    #[error(
        "the {0:?} header style needs a host name and this machine's could not be read; set one"
    )]
    NoHostname(HeaderStyle),
}

impl SyslogHeader {
    /// Validates the configuration. `hostname` is written as given; the RFC
    /// styles require one (callers default it to the machine's name).
    pub fn new(
        style: HeaderStyle,
        hostname: Option<String>,
        facility: u8,
    ) -> Result<Self, HeaderError> {
        if facility > MAX_FACILITY {
            return Err(HeaderError::Facility(facility));
        }
        if let Some(name) = &hostname {
            let valid = !name.is_empty()
                && name.len() <= MAX_HOSTNAME_LEN
                && name.bytes().all(|b| b.is_ascii_graphic());
            if !valid {
                return Err(HeaderError::Hostname(name.clone()));
            }
        }
        if hostname.is_none() && matches!(style, HeaderStyle::Rfc3164 | HeaderStyle::Rfc5424) {
            return Err(HeaderError::NoHostname(style));
        }
        Ok(Self {
            style,
            hostname,
            facility,
            day: DayCache::default(),
        })
    }

    /// The configured style.
    pub fn style(&self) -> HeaderStyle {
        self.style
    }

    /// Appends the header for a record with CEF severity `cef_severity`
    /// (0-10) and event time `timestamp_ms`; `None`, or a time no header can
    /// show, uses the current time.
    pub fn write(&mut self, out: &mut Vec<u8>, cef_severity: u8, timestamp_ms: Option<i64>) {
        if self.style == HeaderStyle::None {
            return;
        }
        let timestamp_ms = timestamp_ms
            .filter(|ms| (0..=MAX_TIMESTAMP_MS).contains(ms))
            .unwrap_or_else(now_ms);
        let host = self.hostname.as_deref().map(str::as_bytes);
        match self.style {
            HeaderStyle::Iso => {
                self.day.write_iso(out, timestamp_ms);
                out.push(b' ');
                if let Some(host) = host {
                    out.extend_from_slice(host);
                    out.push(b' ');
                }
            }
            HeaderStyle::Rfc3164 => {
                self.write_pri(out, cef_severity);
                self.day.write_bsd(out, timestamp_ms);
                out.push(b' ');
                out.extend_from_slice(host.unwrap_or(b"-"));
                out.push(b' ');
            }
            HeaderStyle::Rfc5424 => {
                self.write_pri(out, cef_severity);
                out.extend_from_slice(b"1 ");
                self.day.write_iso(out, timestamp_ms);
                out.push(b' ');
                out.extend_from_slice(host.unwrap_or(b"-"));
                out.push(b' ');
                out.extend_from_slice(APP_NAME.as_bytes());
                // PROCID, MSGID and STRUCTURED-DATA are all nil.
                out.extend_from_slice(b" - - - ");
            }
            HeaderStyle::None => {}
        }
    }

    fn write_pri(&self, out: &mut Vec<u8>, cef_severity: u8) {
        let pri = u16::from(self.facility) * 8 + u16::from(syslog_severity(cef_severity));
        out.push(b'<');
        out.extend_from_slice(itoa::Buffer::new().format(pri).as_bytes());
        out.push(b'>');
    }
}

/// Maps a CEF severity (0-10) to a syslog severity: 0-3 informational (6),
/// 4-6 warning (4), 7-8 error (3), 9-10 critical (2).
pub fn syslog_severity(cef_severity: u8) -> u8 {
    match cef_severity {
        0..=3 => 6,
        4..=6 => 4,
        7..=8 => 3,
        _ => 2,
    }
}

/// How messages are delimited on a byte stream (TCP, TLS).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// Each message ends with LF: what rsyslog, syslog-ng's `network()`,
    /// Splunk and most collectors expect on plain TCP.
    Lf,
    /// RFC 6587 octet counting, `<length> <message>`: syslog-ng's
    /// `syslog()` driver and RFC 5425 (syslog over TLS).
    OctetCounting,
}

/// Smallest message size limit accepted for UDP: room for a header and a
/// useful part of a CEF line.
pub const MIN_MESSAGE_BYTES: usize = 480;
/// Default largest UDP message: RFC 5426 says receivers should accept 2048.
pub const DEFAULT_UDP_MESSAGE_BYTES: usize = 2048;
/// Largest UDP payload IPv4 can carry (65535 - 8 - 20).
pub const MAX_UDP_MESSAGE_BYTES: usize = 65_507;

/// `message` cut to at most `max` bytes on a UTF-8 character boundary and
/// never inside a CEF escape (a cut that would leave a lone trailing `\`
/// drops that backslash too, so the line still parses). Returns the whole
/// message when it fits.
pub fn truncate_message(message: &[u8], max: usize) -> &[u8] {
    if message.len() <= max {
        return message;
    }
    let mut end = max;
    // Back up over UTF-8 continuation bytes to the start of a character.
    while end > 0 && (message[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    // An odd run of backslashes before the cut means the last one starts an
    // escape whose second character was cut off.
    let backslashes = message[..end]
        .iter()
        .rev()
        .take_while(|&&b| b == b'\\')
        .count();
    if backslashes % 2 == 1 {
        end -= 1;
    }
    &message[..end]
}

/// Appends `message` with RFC 6587 octet-counting framing.
pub fn write_octet_counted(out: &mut Vec<u8>, message: &[u8]) {
    out.extend_from_slice(itoa::Buffer::new().format(message.len()).as_bytes());
    out.push(b' ');
    out.extend_from_slice(message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::write_iso_time;

    use crate::test_support::written as text;

    #[test]
    fn truncation_keeps_characters_and_escapes_whole() {
        assert_eq!(truncate_message(b"abc", 3), b"abc");
        assert_eq!(truncate_message(b"abcd", 3), b"abc");
        // "é" is two bytes: a cut through it drops it.
        assert_eq!(truncate_message("aé".as_bytes(), 2), b"a");
        // A 4-byte character cut anywhere inside.
        for max in 1..5 {
            assert_eq!(truncate_message("a😀".as_bytes(), max), b"a");
        }
        // `x\=` cut after the backslash would leave a dangling escape.
        assert_eq!(truncate_message(br"ab\=c", 3), b"ab");
        // An escaped backslash (two of them) is a whole escape: kept.
        assert_eq!(truncate_message(br"ab\\c", 4), br"ab\\");
        assert_eq!(truncate_message(br"ab\\\=", 5), br"ab\\");
        assert_eq!(truncate_message(b"", 0), b"");
    }

    #[test]
    fn octet_counting() {
        let mut out = Vec::new();
        write_octet_counted(&mut out, b"hello");
        write_octet_counted(&mut out, "é".as_bytes());
        assert_eq!(out, "5 hello2 é".as_bytes());
    }

    #[test]
    fn styles() {
        let ts = Some(1_511_897_095_000);
        let mut iso = SyslogHeader::new(HeaderStyle::Iso, None, 16).expect("valid");
        assert_eq!(text(|o| iso.write(o, 0, ts)), "2017-11-28T19:24:55.000Z ");
        let mut iso_host =
            SyslogHeader::new(HeaderStyle::Iso, Some("LAB-EUW-ARCTEST".into()), 16).expect("valid");
        assert_eq!(
            text(|o| iso_host.write(o, 0, ts)),
            "2017-11-28T19:24:55.000Z LAB-EUW-ARCTEST "
        );
        let mut bsd =
            SyslogHeader::new(HeaderStyle::Rfc3164, Some("h1".into()), 16).expect("valid");
        assert_eq!(text(|o| bsd.write(o, 8, ts)), "<131>Nov 28 19:24:55 h1 ");
        assert_eq!(
            text(|o| bsd.write(o, 0, Some(1_500_000_000_000))),
            "<134>Jul 14 02:40:00 h1 "
        );
        let mut rfc5424 =
            SyslogHeader::new(HeaderStyle::Rfc5424, Some("h1".into()), 4).expect("ok");
        assert_eq!(
            text(|o| rfc5424.write(o, 10, ts)),
            "<34>1 2017-11-28T19:24:55.000Z h1 siem-agent - - - "
        );
        let mut none = SyslogHeader::new(HeaderStyle::None, None, 16).expect("valid");
        assert_eq!(text(|o| none.write(o, 3, ts)), "");
    }

    #[test]
    fn the_day_cache_follows_the_records() {
        let mut header = SyslogHeader::new(HeaderStyle::Iso, None, 16).expect("valid");
        let times = [
            1_511_897_095_000, // 2017-11-28
            1_511_897_095_001,
            1_500_000_000_000, // 2017-07-14, going back
            1_511_897_095_000,
            0,
            MAX_TIMESTAMP_MS,
        ];
        for ms in times {
            let mut cached = Vec::new();
            header.write(&mut cached, 0, Some(ms));
            let mut fresh = Vec::new();
            write_iso_time(&mut fresh, ms);
            fresh.push(b' ');
            assert_eq!(cached, fresh, "{ms}");
        }
    }

    #[test]
    fn severity_mapping() {
        let mapped: Vec<u8> = (0..=10).map(syslog_severity).collect();
        assert_eq!(mapped, [6, 6, 6, 6, 4, 4, 4, 3, 3, 2, 2]);
    }

    #[test]
    fn rejects_bad_config() {
        assert_eq!(
            SyslogHeader::new(HeaderStyle::Iso, None, 24).err(),
            Some(HeaderError::Facility(24))
        );
        assert!(SyslogHeader::new(HeaderStyle::Iso, Some("a b".into()), 16).is_err());
        assert!(SyslogHeader::new(HeaderStyle::Iso, Some(String::new()), 16).is_err());
        assert_eq!(
            SyslogHeader::new(HeaderStyle::Rfc5424, None, 16).err(),
            Some(HeaderError::NoHostname(HeaderStyle::Rfc5424))
        );
    }

    #[test]
    fn out_of_range_time_uses_now() {
        let mut iso = SyslogHeader::new(HeaderStyle::Iso, None, 16).expect("valid");
        let before = now_ms();
        let written = text(|o| iso.write(o, 0, Some(-1)));
        let year: i64 = written[..4].parse().expect("year");
        let expected_year = 1970 + before / (365_i64 * 86_400_000);
        assert!((year - expected_year).abs() <= 1, "{written}");
    }
}
