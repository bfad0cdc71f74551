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

    proptest! {
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
