//! Arbitrary bytes as an API page for the splitter: no panic; whatever it
//! accepts is well-formed (ordered record ranges that open and close an
//! object); and on any page simd-json reads as an object whose `data` is an
//! array of objects, the split gives back exactly those records and the
//! page's other fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siem_agent::parse::page::SplitPage;
use simd_json::prelude::*;

/// A value as text with object keys sorted at every level, so two parses of
/// the same JSON compare equal whatever order their maps iterate in.
fn canonical(value: &simd_json::OwnedValue, out: &mut String) {
    if let Some(object) = value.as_object() {
        let mut entries: Vec<_> = object.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        out.push('{');
        for (key, item) in entries {
            out.push_str(&format!("{key:?}:"));
            canonical(item, out);
            out.push(',');
        }
        out.push('}');
    } else if let Some(array) = value.as_array() {
        out.push('[');
        for item in array {
            canonical(item, out);
            out.push(',');
        }
        out.push(']');
    } else {
        out.push_str(&value.encode());
    }
}

fn text_of(value: &simd_json::OwnedValue) -> String {
    let mut out = String::new();
    canonical(value, &mut out);
    out
}

fuzz_target!(|data: &[u8]| {
    let mut page = SplitPage::default();
    let split = page.split(data);
    if split.is_ok() {
        let mut last_end = 0;
        for range in &page.records {
            assert!(range.start >= last_end && range.end <= data.len());
            assert_eq!(data[range.start], b'{');
            assert_eq!(data[range.end - 1], b'}');
            last_end = range.end;
        }
    }
    let Ok(whole) = simd_json::to_owned_value(&mut data.to_vec()) else {
        return;
    };
    let Some(records) = whole.get("data").and_then(|d| d.as_array()) else {
        return;
    };
    if records.iter().any(|r| r.as_object().is_none()) {
        return;
    }
    // Duplicate keys make "the" data array ambiguous; skip such pages.
    let text = String::from_utf8_lossy(data);
    if text.matches("\"data\"").count() != 1 {
        return;
    }
    split.unwrap_or_else(|e| panic!("a valid page was refused: {e}"));
    assert_eq!(page.records.len(), records.len());
    for (range, expected) in page.records.iter().zip(records) {
        let record = simd_json::to_owned_value(&mut data[range.clone()].to_vec())
            .expect("a record of a valid page parses alone");
        // Compared as canonical text: maps with a key given twice do not
        // compare equal as values, not even to themselves.
        assert_eq!(text_of(&record), text_of(expected));
    }
    let mut rest = simd_json::to_owned_value(&mut page.rest.clone()).expect("the rest parses");
    // With a key given twice, which value counts is the parser's choice.
    let keys: Vec<&str> = whole
        .as_object()
        .map(|o| o.keys().map(|k| k.as_ref()).collect())
        .unwrap_or_default();
    let unique: std::collections::HashSet<&str> = keys.iter().copied().collect();
    if unique.len() != keys.len() {
        return;
    }
    let mut without = whole.clone();
    if let (Some(rest), Some(without)) = (rest.as_object_mut(), without.as_object_mut()) {
        rest.remove("data");
        without.remove("data");
    }
    assert_eq!(text_of(&rest), text_of(&without), "the other fields are kept");
});
