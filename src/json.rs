//! Writing the agent's own small JSON documents (API request bodies,
//! checkpoints) into reused buffers, field by field: building a JSON tree
//! for each allocated a dozen times a request or a save, and both happen
//! once a page.

/// Appends `text` as a JSON string (quoted, with `"`, `\` and control
/// characters escaped).
pub fn write_string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for byte in text.bytes() {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x00..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            }
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

/// Appends an integer.
pub fn write_int(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Appends an optional integer (`null` when absent).
pub fn write_optional_int(out: &mut Vec<u8>, value: Option<i64>) {
    match value {
        Some(value) => write_int(out, value),
        None => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use simd_json::prelude::*;

    proptest! {
        #[test]
        fn any_text_round_trips_through_a_json_parser(text in any::<String>()) {
            let mut out = Vec::new();
            write_string(&mut out, &text);
            let parsed = simd_json::to_owned_value(&mut out).expect("valid JSON");
            prop_assert_eq!(parsed.as_str(), Some(text.as_str()));
        }
    }

    #[test]
    fn integers_and_absent_ones() {
        let mut out = Vec::new();
        write_int(&mut out, -42i64);
        out.push(b',');
        write_optional_int(&mut out, None);
        out.push(b',');
        write_optional_int(&mut out, Some(i64::MAX));
        assert_eq!(out, b"-42,null,9223372036854775807");
    }
}
