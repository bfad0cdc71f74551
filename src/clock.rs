//! Wall-clock time and its text forms, shared by every stage: the record
//! times in syslog headers, the cursor's windows, the times in status
//! files and log lines.
//!
//! Dates are formatted here rather than through a date crate because the
//! header is written once per record on the hot path and must not
//! allocate: [`DayCache`] keeps the current day's text and only the time of
//! day is formatted per record. The calendar conversion is checked against
//! the `time` crate in the tests.

use std::time::{SystemTime, UNIX_EPOCH};

/// The last millisecond of year 9999: later (and negative) times cannot be
/// written in any of the formats here.
pub const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;

/// Milliseconds in a day.
const MS_PER_DAY: i64 = 86_400_000;

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// `"00" "01" ... "99"`: two digits per lookup instead of two divisions.
const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Two ASCII digits of `n % 100`.
fn digits_2(n: u32) -> [u8; 2] {
    let at = (n % 100) as usize * 2;
    [DIGIT_PAIRS[at], DIGIT_PAIRS[at + 1]]
}

/// The text of one UTC day in both formats, kept while the times written
/// stay on that day (records of a page mostly share one).
#[derive(Clone, Debug)]
pub struct DayCache {
    /// Days since 1970-01-01.
    day: i64,
    /// `2017-11-28`
    iso: [u8; 10],
    /// `Nov 28` (day padded with a space).
    bsd: [u8; 6],
}

impl Default for DayCache {
    fn default() -> Self {
        Self::of_day(0)
    }
}

impl DayCache {
    fn of_day(day: i64) -> Self {
        let (year, month, day_of_month) = civil_from_days(day);
        let year = year.clamp(0, 9999) as u32;
        let mut iso = *b"0000-00-00";
        iso[0..2].copy_from_slice(&digits_2(year / 100));
        iso[2..4].copy_from_slice(&digits_2(year));
        iso[5..7].copy_from_slice(&digits_2(month));
        iso[8..10].copy_from_slice(&digits_2(day_of_month));
        let mut bsd = *b"Mmm dd";
        bsd[0..3].copy_from_slice(MONTHS[(month - 1) as usize]);
        bsd[4..6].copy_from_slice(&digits_2(day_of_month));
        if day_of_month < 10 {
            bsd[4] = b' ';
        }
        Self { day, iso, bsd }
    }

    /// Moves the cache to the day of `ms`; the millisecond of that day.
    fn seek(&mut self, ms: i64) -> u32 {
        let day = ms.div_euclid(MS_PER_DAY);
        if self.day != day {
            *self = Self::of_day(day);
        }
        ms.rem_euclid(MS_PER_DAY) as u32
    }

    /// Appends `ms` (0 to [`MAX_TIMESTAMP_MS`]) as
    /// `2017-11-28T19:24:55.000Z`, built on the stack and appended at once.
    pub fn write_iso(&mut self, out: &mut Vec<u8>, ms: i64) {
        let ms_of_day = self.seek(ms);
        let mut text = *b"0000-00-00T00:00:00.000Z";
        text[0..10].copy_from_slice(&self.iso);
        text[11..19].copy_from_slice(&clock(ms_of_day));
        let millis = ms_of_day % 1000;
        text[20] = b'0' + (millis / 100) as u8;
        text[21..23].copy_from_slice(&digits_2(millis));
        out.extend_from_slice(&text);
    }

    /// Appends `ms` (0 to [`MAX_TIMESTAMP_MS`]) as `Nov 28 19:24:55`
    /// (RFC 3164: no year, UTC).
    pub fn write_bsd(&mut self, out: &mut Vec<u8>, ms: i64) {
        let ms_of_day = self.seek(ms);
        let mut text = *b"Mmm dd 00:00:00";
        text[0..6].copy_from_slice(&self.bsd);
        text[7..15].copy_from_slice(&clock(ms_of_day));
        out.extend_from_slice(&text);
    }
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31) in the proleptic
/// Gregorian calendar (the well-known era-based algorithm by H. Hinnant).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `HH:MM:SS` of a millisecond of the day.
fn clock(ms_of_day: u32) -> [u8; 8] {
    let mut text = *b"00:00:00";
    text[0..2].copy_from_slice(&digits_2(ms_of_day / 3_600_000));
    text[3..5].copy_from_slice(&digits_2(ms_of_day / 60_000 % 60));
    text[6..8].copy_from_slice(&digits_2(ms_of_day / 1000 % 60));
    text
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar
/// (the inverse of [`civil_from_days`], same algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = i64::from((month + 9) % 12);
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Days in `month` (1-12) of `year`.
fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `text` as epoch milliseconds, when it is an ISO 8601 UTC time as
/// Microsoft Graph writes them: `2021-04-27T12:19:27Z` or with a fraction of
/// any number of digits (`.7211305`), ending in `Z`. Digits beyond the
/// millisecond are cut off, never rounded. Anything else (another offset,
/// no `Z`, a date that does not exist, a year outside 0000-9999) is `None`.
///
/// Hand-written because it runs for several fields of every Graph record on
/// the hot path and must not allocate.
pub fn parse_iso_utc_ms(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = bytes.get(range)?;
        part.iter().try_fold(0u32, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if bytes.len() < 20 || separators.iter().any(|&(at, b)| bytes[at] != b) {
        return None;
    }
    let year = i64::from(digits(0..4)?);
    let month = digits(5..7)?;
    let day = digits(8..10)?;
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let millis = match &bytes[19..] {
        [b'Z'] => 0,
        [b'.', fraction @ .., b'Z'] if !fraction.is_empty() => {
            if !fraction.iter().all(u8::is_ascii_digit) {
                return None;
            }
            // The first three digits, padded: ".5" is 500 ms, ".0451" 45.
            let mut millis = 0;
            for position in 0..3 {
                let digit = fraction.get(position).map_or(0, |b| u32::from(b - b'0'));
                millis = millis * 10 + digit;
            }
            millis
        }
        _ => return None,
    };
    let seconds = i64::from(hour * 3600 + minute * 60 + second);
    Some(days_from_civil(year, month, day) * MS_PER_DAY + seconds * 1000 + i64::from(millis))
}

/// `ms` as `2017-11-28T19:24:55.000Z` (clamped to 0 to
/// [`MAX_TIMESTAMP_MS`]), for log lines and reports; the encoder uses a
/// [`DayCache`].
pub fn iso_string(ms: i64) -> String {
    let mut text = Vec::new();
    write_iso_time(&mut text, ms.clamp(0, MAX_TIMESTAMP_MS));
    String::from_utf8_lossy(&text).into_owned()
}

/// Appends `ms` (0 to [`MAX_TIMESTAMP_MS`]) as `2017-11-28T19:24:55.000Z`.
pub fn write_iso_time(out: &mut Vec<u8>, ms: i64) {
    DayCache::default().write_iso(out, ms);
}

/// Appends `ms` (0 to [`MAX_TIMESTAMP_MS`]) as `Nov 28 19:24:55`.
pub fn write_bsd_time(out: &mut Vec<u8>, ms: i64) {
    DayCache::default().write_bsd(out, ms);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::test_support::written as text;

    #[test]
    fn iso_strings_are_clamped_to_what_can_be_written() {
        assert_eq!(iso_string(-5), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_string(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(iso_string(1_511_897_095_000), "2017-11-28T19:24:55.000Z");
    }

    #[test]
    fn the_cache_follows_the_day_both_ways() {
        let mut cache = DayCache::default();
        for ms in [
            1_511_897_095_000,
            1_500_000_000_000,
            0,
            MAX_TIMESTAMP_MS,
            86_399_999,
        ] {
            let mut cached = Vec::new();
            cache.write_iso(&mut cached, ms);
            cache.write_bsd(&mut cached, ms);
            let mut fresh = Vec::new();
            write_iso_time(&mut fresh, ms);
            write_bsd_time(&mut fresh, ms);
            assert_eq!(cached, fresh, "{ms}");
        }
    }

    #[test]
    fn graph_times_parse_to_the_millisecond_cut_not_rounded() {
        assert_eq!(parse_iso_utc_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_iso_utc_ms("2021-04-27T12:19:27.7211305Z"),
            Some(1_619_525_967_721)
        );
        assert_eq!(
            parse_iso_utc_ms("2026-11-30T10:02:30.9999999Z"),
            Some(1_796_032_950_999)
        );
        assert_eq!(
            parse_iso_utc_ms("2026-11-30T09:59:12.4Z"),
            Some(1_796_032_752_400)
        );
        assert_eq!(
            parse_iso_utc_ms("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
        assert_eq!(
            parse_iso_utc_ms("9999-12-31T23:59:59.999Z"),
            Some(MAX_TIMESTAMP_MS)
        );
        for bad in [
            "",
            "2021-04-27",
            "2021-04-27T12:19:27",
            "2021-04-27T12:19:27+00:00",
            "2021-04-27T12:19:27.Z",
            "2021-04-27T12:19:27.12aZ",
            "2021-04-27 12:19:27Z",
            "2023-02-29T00:00:00Z",
            "2021-13-01T00:00:00Z",
            "2021-04-31T00:00:00Z",
            "2021-04-27T24:00:00Z",
            "2021-04-27T12:60:00Z",
            "2021-04-27T12:00:60Z",
            "-021-04-27T12:00:00Z",
            "2021-04-27T12:19:27Zjunk",
            "２０２１-04-27T12:19:27Z",
        ] {
            assert_eq!(parse_iso_utc_ms(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn graph_times_round_trip_through_the_writer(ms in 0..=MAX_TIMESTAMP_MS, extra in 0u32..10_000) {
            // What the writer prints, with up to four more fraction digits
            // (Graph sends seven), parses back to the millisecond.
            let mut text = text(|o| write_iso_time(o, ms));
            text.pop();
            text.push_str(&format!("{extra:04}Z"));
            prop_assert_eq!(parse_iso_utc_ms(&text), Some(ms));
        }

        #[test]
        fn graph_times_match_the_time_crate(text in "[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?Z") {
            let reference = time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                .ok()
                .map(|t| i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).expect("fits"));
            prop_assert_eq!(parse_iso_utc_ms(&text), reference, "{}", text);
        }

        #[test]
        fn calendar_matches_time_crate(ms in 0..=MAX_TIMESTAMP_MS) {
            let reference = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .expect("in range");
            let expected = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                reference.year(), u8::from(reference.month()), reference.day(),
                reference.hour(), reference.minute(), reference.second(), reference.millisecond()
            );
            prop_assert_eq!(text(|o| write_iso_time(o, ms)), expected);
        }

        #[test]
        fn bsd_time_matches_time_crate(ms in 0..=MAX_TIMESTAMP_MS) {
            let reference = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .expect("in range");
            let format = time::macros::format_description!(
                "[month repr:short] [day padding:space] [hour]:[minute]:[second]"
            );
            prop_assert_eq!(text(|o| write_bsd_time(o, ms)), reference.format(&format).expect("formats"));
        }
    }
}
