//! Turning JSON values from a parsed record into CEF text.
//!
//! The upstream API is loose about types: a field may be missing, null, a
//! number where a string was expected, or an integer sent as a float
//! (`1.5e12`). None of that may drop a record, so every accessor here is
//! total: a value of the wrong kind simply writes nothing, which the encoder
//! turns into an empty `key=`.

use simd_json::prelude::{TypedValue, ValueAsScalar, ValueIntoString};
use simd_json::tape::Value;
use simd_json::ValueType;

use super::appid;
use super::escape::{escape_extension, escape_header};

/// Largest float magnitude written as an integer: beyond 2^63 an `f64` can be
/// integral yet carry dozens of meaningless digits, so those keep the JSON
/// float notation instead.
const MAX_INTEGRAL_FLOAT: f64 = 9_223_372_036_854_775_807.0;
/// Key of the id in an object that stands for an id in a list.
const ENTITY_ID: &str = "id";

/// The value as a signed integer: JSON integers, and floats that are exactly
/// integral (`1.5e12`), are accepted; anything else is `None`.
pub fn as_integer(value: Value<'_, '_>) -> Option<i64> {
    match value.value_type() {
        ValueType::I64 => value.as_i64(),
        ValueType::U64 => value.as_u64().and_then(|n| i64::try_from(n).ok()),
        ValueType::F64 => value.as_f64().and_then(integral_float),
        _ => None,
    }
}

/// The value as an unsigned integer (ids): JSON integers and exactly
/// integral floats that are not negative.
pub fn as_unsigned(value: Value<'_, '_>) -> Option<u64> {
    match value.value_type() {
        ValueType::U64 => value.as_u64(),
        _ => as_integer(value).and_then(|n| u64::try_from(n).ok()),
    }
}

/// `float` as an `i64` when it is exactly integral and in range.
fn integral_float(float: f64) -> Option<i64> {
    if float.fract() == 0.0 && float.abs() < MAX_INTEGRAL_FLOAT {
        // Exact: the value is integral and strictly inside the i64 range.
        Some(float as i64)
    } else {
        None
    }
}

/// The value as a string slice, if it is a non-empty JSON string.
pub fn non_empty_str<'input>(value: Option<Value<'_, 'input>>) -> Option<&'input str> {
    value
        .and_then(|v| v.into_string())
        .filter(|s| !s.is_empty())
}

/// Appends a scalar's text through `escape`: strings escaped, numbers as
/// digits, booleans as `true`/`false`; null, arrays and objects write nothing.
#[inline]
fn write_scalar(out: &mut Vec<u8>, value: Value<'_, '_>, escape: fn(&mut Vec<u8>, &str)) {
    match value.value_type() {
        ValueType::String => {
            if let Some(text) = value.as_str() {
                escape(out, text);
            }
        }
        ValueType::I64 => {
            if let Some(n) = value.as_i64() {
                out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            }
        }
        ValueType::U64 => {
            if let Some(n) = value.as_u64() {
                out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            }
        }
        ValueType::F64 => {
            if let Some(float) = value.as_f64() {
                write_float(out, float);
            }
        }
        ValueType::Bool => {
            if let Some(flag) = value.as_bool() {
                out.extend_from_slice(if flag { b"true" } else { b"false" });
            }
        }
        _ => {}
    }
}

/// Appends a float as an integer when exact, else in shortest round-trip
/// notation (the digits JSON carried, up to formatting).
fn write_float(out: &mut Vec<u8>, float: f64) {
    match integral_float(float) {
        Some(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        // JSON has no NaN or infinity, so a parsed float is always finite.
        None => out.extend_from_slice(ryu::Buffer::new().format_finite(float).as_bytes()),
    }
}

/// Appends an optional value as an extension value (nothing when absent).
#[inline]
pub fn write_extension(out: &mut Vec<u8>, value: Option<Value<'_, '_>>) {
    if let Some(value) = value {
        write_scalar(out, value, escape_extension);
    }
}

/// Appends an optional value as a header field (nothing when absent).
#[inline]
pub fn write_header(out: &mut Vec<u8>, value: Value<'_, '_>) {
    write_scalar(out, value, escape_header);
}

/// Declares a struct holding the listed top-level fields of a record
/// (absent keys are `None`; values of any type are kept as they are) and
/// its `collect`, which reads them in one pass over the record's keys (a
/// lookup in a parsed tape is a linear scan; the first occurrence of a
/// duplicated key wins).
macro_rules! record_fields {
    ($(#[$doc:meta])* $name:ident { $($field:ident: $key:path),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default)]
        pub struct $name<'t, 'i> {
            $($field: Option<simd_json::tape::Value<'t, 'i>>,)*
        }

        impl<'t, 'i> $name<'t, 'i> {
            /// Reads the fields of `record` in one pass.
            pub fn collect(record: &simd_json::tape::Object<'t, 'i>) -> Self {
                let mut fields = Self::default();
                for (key, value) in record.iter() {
                    let slot = match key {
                        $($key => &mut fields.$field,)*
                        _ => continue,
                    };
                    if slot.is_none() {
                        *slot = Some(value);
                    }
                }
                fields
            }
        }
    };
}
pub(super) use record_fields;

/// Appends a Microsoft Graph time (an ISO 8601 UTC string) as epoch
/// milliseconds; nothing when it is absent, not a string, or not such a
/// time (see [`crate::clock::parse_iso_utc_ms`]).
pub fn write_time(out: &mut Vec<u8>, value: Option<Value<'_, '_>>) {
    let ms = value
        .and_then(|v| v.into_string())
        .and_then(crate::clock::parse_iso_utc_ms);
    if let Some(ms) = ms {
        out.extend_from_slice(itoa::Buffer::new().format(ms).as_bytes());
    }
}

/// Looks up `key` when `value` is an object.
#[inline(always)]
pub fn member<'t, 'i>(value: Option<Value<'t, 'i>>, key: &str) -> Option<Value<'t, 'i>> {
    let [found] = members(value, [key]);
    found
}

/// Looks up several keys of an object in one pass over it (the first
/// occurrence of a key wins, and the scan stops once every key is found);
/// all `None` when `value` is not an object.
/// Always inlined, so the constant keys of each call site become inline
/// comparisons instead of `memcmp` calls.
#[inline(always)]
pub fn members<'t, 'i, const N: usize>(
    value: Option<Value<'t, 'i>>,
    keys: [&str; N],
) -> [Option<Value<'t, 'i>>; N] {
    let mut found = [None; N];
    if let Some(object) = value.and_then(|v| v.as_object()) {
        let mut missing = N;
        for (key, member) in object.iter() {
            if let Some(index) = keys.iter().position(|k| *k == key) {
                if found[index].is_none() {
                    found[index] = Some(member);
                    missing -= 1;
                    if missing == 0 {
                        // Every key found: the rest of the object cannot
                        // change the answer (the first occurrence wins).
                        break;
                    }
                }
            }
        }
    }
    found
}

/// Appends the elements of an array value joined by commas, each written by
/// `write_one`; a scalar counts as a one-element list, anything else as none.
pub fn write_list<'t, 'i>(
    out: &mut Vec<u8>,
    value: Option<Value<'t, 'i>>,
    mut write_one: impl FnMut(&mut Vec<u8>, Value<'t, 'i>),
) {
    let Some(value) = value else { return };
    match value.as_array() {
        Some(items) => {
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_one(out, item);
            }
        }
        None if value.value_type() != ValueType::Object => write_one(out, value),
        None => {}
    }
}

/// An id list element: a scalar as it is, an object by its `id`.
pub fn write_id(out: &mut Vec<u8>, item: Value<'_, '_>) {
    if item.value_type() == ValueType::Object {
        write_extension(out, member(Some(item), ENTITY_ID));
    } else {
        write_extension(out, Some(item));
    }
}

/// Appends the app id tag for an app id given as a number or a string.
pub fn write_app_tag(out: &mut Vec<u8>, app_id: Option<Value<'_, '_>>) {
    let Some(app_id) = app_id else { return };
    if let Some(number) = as_unsigned(app_id) {
        appid::write_tag(out, number);
    } else if let Some(text) = non_empty_str(Some(app_id)) {
        match text.parse::<u64>() {
            Ok(number) => appid::write_tag(out, number),
            Err(_) => {
                out.extend_from_slice(appid::TAG_PREFIX);
                escape_extension(out, text);
            }
        }
    }
}

/// Whether `text` is a dotted-quad IPv4 address, by the same rules as
/// `std::net::Ipv4Addr` (no leading zeros, each part 0-255), which a unit
/// test checks. Hand-written because this runs for every activity and the
/// general parser was a tenth of the encoding time.
pub fn is_ipv4(text: &str) -> bool {
    let bytes = text.as_bytes();
    if !(7..=15).contains(&bytes.len()) {
        return false;
    }
    let (mut dots, mut digits, mut part) = (0, 0, 0u32);
    for &byte in bytes {
        match byte {
            b'0'..=b'9' => {
                if digits > 0 && part == 0 {
                    return false; // leading zero
                }
                part = part * 10 + u32::from(byte - b'0');
                digits += 1;
                if part > 255 {
                    return false;
                }
            }
            b'.' if digits > 0 => {
                dots += 1;
                digits = 0;
                part = 0;
            }
            _ => return false,
        }
    }
    dots == 3 && digits > 0
}

/// Whether `text` is an IPv6 address, by the same rules as
/// `std::net::Ipv6Addr` (groups of 1-4 hex digits, one `::` standing for
/// at least one group, an IPv4 address as the last two groups), which
/// property tests check. Hand-written for the same reason as
/// [`is_ipv4`]: the general parser was a tenth of a Graph alert's time.
pub fn is_ipv6(text: &str) -> bool {
    let bytes = text.as_bytes();
    if !(2..=45).contains(&bytes.len()) || !bytes.contains(&b':') {
        return false;
    }
    // The groups before a `::`, then (if there is one) those after it.
    let Some((head, at, head_ipv4)) = ipv6_groups(bytes, 0, 8) else {
        return false;
    };
    if head == 8 {
        return at == bytes.len();
    }
    // An IPv4 part cannot come before a `::`.
    if head_ipv4 {
        return false;
    }
    if bytes.get(at..at + 2) != Some(b"::") {
        return false;
    }
    // `::` stands for at least one group.
    let limit = 8 - (head + 1);
    matches!(ipv6_groups(bytes, at + 2, limit), Some((_, end, _)) if end == bytes.len())
}

/// Reads up to `limit` groups from `at` (a group after the first follows a
/// `:`; an IPv4 address counts as two and ends the groups): how many,
/// where reading stopped, and whether an IPv4 address ended them. `None`
/// when the text cannot be an address.
fn ipv6_groups(bytes: &[u8], mut at: usize, limit: usize) -> Option<(usize, usize, bool)> {
    let mut count = 0;
    while count < limit {
        let start = if count == 0 {
            at
        } else if bytes.get(at) == Some(&b':') && bytes.get(at + 1) != Some(&b':') {
            at + 1
        } else {
            break;
        };
        // An IPv4 address fits only where two groups are left.
        if count + 1 < limit {
            let end = bytes[start..]
                .iter()
                .position(|&b| !(b.is_ascii_digit() || b == b'.'))
                .map_or(bytes.len(), |n| start + n);
            if bytes[start..end].contains(&b'.') {
                let text = std::str::from_utf8(&bytes[start..end]).ok()?;
                if !is_ipv4(text) {
                    return None;
                }
                return Some((count + 2, end, true));
            }
        }
        let digits = bytes[start..]
            .iter()
            .take(5)
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if digits == 0 {
            if count == 0 {
                // No first group: a `::` may follow.
                return Some((0, at, false));
            }
            // A `:` followed by no group: not ours to take.
            break;
        }
        if digits > 4 {
            return None;
        }
        at = start + digits;
        count += 1;
    }
    Some((count, at, false))
}

/// Null, an array or object, or an empty string: no text to write.
pub fn is_empty_text(value: Value<'_, '_>) -> bool {
    match value.value_type() {
        ValueType::String => value.as_str().is_none_or(str::is_empty),
        ValueType::Null | ValueType::Array | ValueType::Object => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn with_value<R>(json: &str, f: impl FnOnce(Value<'_, '_>) -> R) -> R {
        let mut bytes = json.as_bytes().to_vec();
        let tape = simd_json::to_tape(&mut bytes).expect("test JSON is valid");
        f(tape.as_value())
    }

    fn ext(json: &str) -> String {
        with_value(json, |v| {
            let mut out = Vec::new();
            write_extension(&mut out, Some(v));
            String::from_utf8(out).expect("utf-8")
        })
    }

    #[test]
    fn scalars() {
        assert_eq!(ext(r#""a=b""#), r"a\=b");
        assert_eq!(ext("1511373004000"), "1511373004000");
        assert_eq!(ext("-5"), "-5");
        assert_eq!(ext("18446744073709551615"), "18446744073709551615");
        assert_eq!(ext("1.5e12"), "1500000000000");
        assert_eq!(ext("2.0"), "2");
        assert_eq!(ext("0.25"), "0.25");
        assert_eq!(ext("1e300"), "1e300");
        assert_eq!(ext("true"), "true");
        assert_eq!(ext("false"), "false");
        assert_eq!(ext("null"), "");
        assert_eq!(ext("[1,2]"), "");
        assert_eq!(ext(r#"{"a":1}"#), "");
    }

    #[test]
    fn integers() {
        assert_eq!(with_value("42", as_integer), Some(42));
        assert_eq!(with_value("4.2e1", as_integer), Some(42));
        assert_eq!(with_value("4.25", as_integer), None);
        assert_eq!(with_value("18446744073709551615", as_integer), None);
        assert_eq!(with_value(r#""42""#, as_integer), None);
        assert_eq!(
            with_value("18446744073709551615", as_unsigned),
            Some(u64::MAX)
        );
        assert_eq!(with_value("7.0", as_unsigned), Some(7));
        assert_eq!(with_value("-7", as_unsigned), None);
    }

    #[test]
    fn ipv4_edge_cases_match_std() {
        for text in [
            "1.2.3.4",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.1.1.1",
            "1.1.1",
            "1.1.1.1.",
            ".1.1.1.1",
            "1..1.1",
            "1.1.1.1 ",
            "a.b.c.d",
            "1.1.1.01",
            "10.0.0.0",
            "1.2.3.4:80",
            "::ffff:1.2.3.4",
            "",
            "1234.1.1.1",
            "100.200.250.255",
        ] {
            assert_eq!(
                is_ipv4(text),
                text.parse::<std::net::Ipv4Addr>().is_ok(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn ipv6_edge_cases_match_std() {
        for text in [
            "::",
            ":",
            "::1",
            "1::",
            "1:2:3:4:5:6:7::",
            "1:2:3:4:5:6:7:8::",
            "::1:2:3:4:5:6:7",
            "::1:2:3:4:5:6:7:8",
            "1::2::3",
            ":::",
            "1:::2",
            "::ffff:1.2.3.4",
            "::1.2.3.4",
            "1.2.3.4::",
            "1:2:3:4:5:6:1.2.3.4",
            "1:2:3:4:5:6:7:1.2.3.4",
            "::1:2:3:4:5:6:1.2.3.4",
            "1::1.2.3.4",
            "fe80::1%eth0",
            "12345::",
            "0000:0000::",
            "1:2",
            ":1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8:",
            "1:2:3:4:5:6:7:8",
            "::1.2.3",
            "::1.2.3.04",
            "::256.1.1.1",
            "1::2:",
            ":1::",
            "::0:0:0:0:0:0:0",
            "0:0:0:0:0:0:0::",
            "2001:db8::1.2.3.4.5",
            "2001:DB8::A",
            "1:2:3:4:5::1.2.3.4",
            "1:2:3:4:5:6::1.2.3.4",
            "::.",
            "::1.",
            "1.2.3.4",
            "a:b",
        ] {
            assert_eq!(
                is_ipv6(text),
                text.parse::<std::net::Ipv6Addr>().is_ok(),
                "{text:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn ipv4_matches_std(text in "[0-9.]{0,16}") {
            prop_assert_eq!(is_ipv4(&text), text.parse::<std::net::Ipv4Addr>().is_ok());
        }

        #[test]
        fn ipv4_accepts_every_address(octets in any::<[u8; 4]>()) {
            prop_assert!(is_ipv4(&std::net::Ipv4Addr::from(octets).to_string()));
        }

        #[test]
        fn ipv6_matches_std_on_text_made_of_its_characters(
            text in "[0-9a-fA-F:.]{0,46}",
        ) {
            prop_assert_eq!(
                is_ipv6(&text),
                text.parse::<std::net::Ipv6Addr>().is_ok(),
                "{:?}", text
            );
        }

        #[test]
        fn ipv6_matches_std_on_addresses_and_their_mutations(
            groups in any::<[u16; 8]>(),
            zeros in 0usize..8,
            v4 in any::<bool>(),
            cut in 0usize..48,
            insert in prop::sample::select(vec!["", ":", "::", ".", "0", "g", "1.2.3.4", "00000"]),
        ) {
            let mut groups = groups;
            for group in groups.iter_mut().skip(zeros).take(3) {
                *group = 0;
            }
            let address = std::net::Ipv6Addr::from(groups);
            let mut text = if v4 {
                let [a, b, c, d, e, f, g, h] = groups;
                format!(
                    "{a:x}:{b:x}:{c:x}:{d:x}:{e:x}:{f:x}:{}.{}.{}.{}",
                    g >> 8, g & 0xff, h >> 8, h & 0xff
                )
            } else {
                address.to_string()
            };
            prop_assert!(is_ipv6(&text), "{:?}", text);
            let at = cut.min(text.len());
            text.insert_str(at, insert);
            prop_assert_eq!(
                is_ipv6(&text),
                text.parse::<std::net::Ipv6Addr>().is_ok(),
                "{:?}", text
            );
        }
    }
}
