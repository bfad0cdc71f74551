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

use super::escape::{escape_extension, escape_header};

/// Largest float magnitude written as an integer: beyond 2^63 an `f64` can be
/// integral yet carry dozens of meaningless digits, so those keep the JSON
/// float notation instead.
const MAX_INTEGRAL_FLOAT: f64 = 9_223_372_036_854_775_807.0;

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

#[cfg(test)]
mod tests {
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
}
