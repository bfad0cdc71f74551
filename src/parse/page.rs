//! Splitting an API page into its records without parsing it whole.
//!
//! A scan page holds up to 5,000 records (about 6 MB of JSON). Parsed as
//! one document, simd-json's tape and buffers for it take about 40 MB, more
//! than the agent's whole memory budget. Split first, each record is parsed
//! on its own, in place, reusing buffers sized for one record (a few KB),
//! and the page's other fields (`hasNext`, `nextQueryFilters`) are parsed
//! from a copy of the page with the record array left out.
//!
//! The splitter checks the page's structure (an object whose `data` is an
//! array of objects, every string and bracket closed) and nothing else:
//! each record's own syntax is checked when it is parsed. A page cut off
//! in transfer fails here, before any of its records is used.

use std::ops::Range;

use super::blocks::record_end;

/// Values other than the records longer than this are left out of
/// [`SplitPage::rest`] (written `null`): the paging facts are a few bytes.
pub const MAX_REST_VALUE_BYTES: usize = 64 * 1024;

/// Why a page cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// The page is not a JSON object.
    #[error("not a JSON object")]
    NotAnObject,
    /// The page ends inside a string, object or array (cut off).
    #[error("cut off at byte {0}")]
    Truncated(usize),
    /// Something other than what JSON allows at this byte.
    #[error("unexpected {found:?} at byte {at}")]
    Unexpected {
        /// Byte offset.
        at: usize,
        /// The byte found there.
        found: char,
    },
    /// The page has no record array (`data`, or Graph's `value` or
    /// `results`).
    #[error("no {0} array")]
    NoData(&'static str),
    /// The record array is not an array of objects.
    #[error("{0} is not an array of objects")]
    DataNotRecords(&'static str),
}

/// A page split into record ranges and the rest.
#[derive(Debug, Default)]
pub struct SplitPage {
    /// Byte ranges of the records, in order.
    pub records: Vec<Range<usize>>,
    /// The page with its record array emptied (`"data":[]`), for reading
    /// the other fields.
    pub rest: Vec<u8>,
}

fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() && is_space(bytes[at]) {
        at += 1;
    }
    at
}

fn unexpected(bytes: &[u8], at: usize) -> SplitError {
    match bytes.get(at) {
        Some(&byte) => SplitError::Unexpected {
            at,
            found: char::from(byte),
        },
        None => SplitError::Truncated(at),
    }
}

/// `at` is an opening quote: the index just past the closing one.
fn string_end(bytes: &[u8], at: usize) -> Result<usize, SplitError> {
    let mut i = at + 1;
    loop {
        match memchr::memchr2(b'"', b'\\', &bytes[i.min(bytes.len())..]) {
            None => return Err(SplitError::Truncated(bytes.len())),
            Some(offset) => {
                let found = i + offset;
                if bytes[found] == b'"' {
                    return Ok(found + 1);
                }
                // A backslash escapes the next byte, whatever it is.
                i = found + 2;
                if i > bytes.len() {
                    return Err(SplitError::Truncated(bytes.len()));
                }
            }
        }
    }
}

/// `at` opens an object or array: the index just past its closing bracket.
/// Only the outer bracket kind is counted; in well-formed JSON the other
/// kind nests inside it, and a record with mismatched brackets fails when
/// it is parsed.
fn container_end(bytes: &[u8], at: usize) -> Result<usize, SplitError> {
    let (open, close) = match bytes[at] {
        b'{' => (b'{', b'}'),
        _ => (b'[', b']'),
    };
    let mut depth = 0usize;
    let mut i = at;
    loop {
        let Some(offset) = memchr::memchr3(b'"', open, close, &bytes[i..]) else {
            return Err(SplitError::Truncated(bytes.len()));
        };
        let found = i + offset;
        match bytes[found] {
            b'"' => i = string_end(bytes, found)?,
            byte if byte == open => {
                depth += 1;
                i = found + 1;
            }
            _ => {
                depth -= 1;
                i = found + 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
        }
    }
}

/// `at` starts a value: the index just past it.
fn value_end(bytes: &[u8], at: usize) -> Result<usize, SplitError> {
    match bytes.get(at) {
        None => Err(SplitError::Truncated(at)),
        Some(b'"') => string_end(bytes, at),
        Some(b'{' | b'[') => container_end(bytes, at),
        Some(b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
            let mut end = at + 1;
            while end < bytes.len()
                && !matches!(bytes[end], b',' | b'}' | b']')
                && !is_space(bytes[end])
            {
                end += 1;
            }
            Ok(end)
        }
        Some(_) => Err(unexpected(bytes, at)),
    }
}

impl SplitPage {
    /// Splits a legacy API page (records in `data`), reusing this value's
    /// allocations.
    pub fn split(&mut self, page: &[u8]) -> Result<(), SplitError> {
        self.split_at(page, super::PAGE_DATA)
    }

    /// Splits `page`, whose records are the array under `key`, reusing
    /// this value's allocations.
    pub fn split_at(&mut self, page: &[u8], key: &'static str) -> Result<(), SplitError> {
        self.records.clear();
        self.rest.clear();
        let mut at = skip_space(page, 0);
        if page.get(at) != Some(&b'{') {
            return Err(SplitError::NotAnObject);
        }
        at = skip_space(page, at + 1);
        let mut data = false;
        // The rest is copied as the walk goes: everything up to here is.
        let mut copied = 0;
        if page.get(at) == Some(&b'}') {
            return Err(SplitError::NoData(key));
        }
        loop {
            if page.get(at) != Some(&b'"') {
                return Err(unexpected(page, at));
            }
            let key_end = string_end(page, at)?;
            let is_data = &page[at + 1..key_end - 1] == key.as_bytes();
            at = skip_space(page, key_end);
            if page.get(at) != Some(&b':') {
                return Err(unexpected(page, at));
            }
            at = skip_space(page, at + 1);
            let end = if is_data {
                if page.get(at) != Some(&b'[') {
                    return Err(SplitError::DataNotRecords(key));
                }
                let end = self.split_records(page, at, key)?;
                self.rest.extend_from_slice(&page[copied..at]);
                self.rest.extend_from_slice(b"[]");
                copied = end;
                data = true;
                end
            } else {
                let end = value_end(page, at)?;
                if end - at > MAX_REST_VALUE_BYTES {
                    // No paging fact is this large: leaving it out keeps a
                    // page padded with junk from costing its size again
                    // (and simd-json's buffers for it) in the rest.
                    self.rest.extend_from_slice(&page[copied..at]);
                    self.rest.extend_from_slice(b"null");
                    copied = end;
                }
                end
            };
            at = skip_space(page, end);
            match page.get(at) {
                Some(b',') => at = skip_space(page, at + 1),
                Some(b'}') => break,
                _ => return Err(unexpected(page, at)),
            }
        }
        if skip_space(page, at + 1) != page.len() {
            return Err(unexpected(page, skip_space(page, at + 1)));
        }
        if !data {
            return Err(SplitError::NoData(key));
        }
        self.rest.extend_from_slice(&page[copied..]);
        Ok(())
    }

    /// The objects of the array that opens at `start`; the index just
    /// past the array.
    fn split_records(
        &mut self,
        page: &[u8],
        start: usize,
        key: &'static str,
    ) -> Result<usize, SplitError> {
        let mut at = skip_space(page, start + 1);
        if page.get(at) == Some(&b']') {
            return Ok(at + 1);
        }
        loop {
            if page.get(at) != Some(&b'{') {
                return Err(if at >= page.len() {
                    SplitError::Truncated(at)
                } else {
                    SplitError::DataNotRecords(key)
                });
            }
            let end = record_end(page, at).ok_or(SplitError::Truncated(page.len()))?;
            self.records.push(at..end);
            at = skip_space(page, end);
            match page.get(at) {
                Some(b',') => at = skip_space(page, at + 1),
                Some(b']') => return Ok(at + 1),
                _ => return Err(unexpected(page, at)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split(text: &str) -> Result<(Vec<String>, String), SplitError> {
        let mut page = SplitPage::default();
        page.split(text.as_bytes())?;
        let records = page
            .records
            .iter()
            .map(|r| text[r.clone()].to_owned())
            .collect();
        Ok((records, String::from_utf8(page.rest).expect("utf-8")))
    }

    #[test]
    fn a_huge_value_beside_the_records_is_left_out_of_the_rest() {
        let junk = "x".repeat(MAX_REST_VALUE_BYTES + 1);
        let page = format!(
            r#"{{"padding":"{junk}","data":[{{"_id":"a"}}],"hasNext":false,"nextQueryFilters":{{"date":{{"lte":5}}}}}}"#
        );
        let (records, rest) = split(&page).expect("splits");
        assert_eq!(records, [r#"{"_id":"a"}"#]);
        assert_eq!(
            rest,
            r#"{"padding":null,"data":[],"hasNext":false,"nextQueryFilters":{"date":{"lte":5}}}"#
        );
    }

    #[test]
    fn splits_records_and_keeps_the_rest() {
        let page = r#" { "hasNext" : true, "data" : [ {"_id":"a","t":"x}\"{"} ,{"n":[1,{"b":2}]} ], "nextQueryFilters":{"date":{"lte":5}} } "#;
        let (records, rest) = split(page).expect("splits");
        assert_eq!(
            records,
            [r#"{"_id":"a","t":"x}\"{"}"#, r#"{"n":[1,{"b":2}]}"#]
        );
        assert_eq!(
            rest,
            r#" { "hasNext" : true, "data" : [], "nextQueryFilters":{"date":{"lte":5}} } "#
        );
        assert_eq!(
            split(r#"{"data":[],"hasNext":false}"#)
                .expect("empty")
                .0
                .len(),
            0
        );
    }

    #[test]
    fn refuses_what_is_not_a_page() {
        assert_eq!(split("[1]").unwrap_err(), SplitError::NotAnObject);
        assert_eq!(
            split(r#"{"hasNext":true}"#).unwrap_err(),
            SplitError::NoData("data")
        );
        assert_eq!(
            split(r#"{"data":{"a":1}}"#).unwrap_err(),
            SplitError::DataNotRecords("data")
        );
        assert_eq!(
            split(r#"{"data":[1,2]}"#).unwrap_err(),
            SplitError::DataNotRecords("data")
        );
        assert!(matches!(
            split(r#"{"data":[{"a":1}] x"#),
            Err(SplitError::Unexpected { .. })
        ));
        assert!(matches!(
            split(r#"{"data":[{"a":1}{"b":2}]}"#),
            Err(SplitError::Unexpected { .. })
        ));
        assert!(split(r#"{"data":[{"a":1],"x":{}}"#).is_err());
        // Brackets that do not match inside a record are the record's
        // problem: it fails when parsed, the page's other records are kept.
        let (records, _) = split(r#"{"data":[{"a":[}],"hasNext":false}"#).expect("splits");
        assert_eq!(records, [r#"{"a":[}"#]);
    }

    #[test]
    fn every_cut_of_a_page_is_refused() {
        let page = r#"{"data":[{"_id":"a\"b","n":[1,2]},{"x":{"y":"}"}}],"hasNext":true}"#;
        split(page).expect("whole page splits");
        for cut in 0..page.len() {
            assert!(
                split(&page[..cut]).is_err(),
                "cut at {cut}: {:?}",
                &page[..cut]
            );
        }
    }

    proptest! {
        /// Any records serialized into a page come back as the same bytes.
        #[test]
        fn records_round_trip(values in prop::collection::vec(
            prop::collection::vec(("[a-z\"\\\\{}\\[\\],: ]{0,8}", any::<i32>()), 0..4), 0..6),
            has_next in any::<bool>()) {
            let records: Vec<String> = values
                .iter()
                .map(|fields| {
                    let body: Vec<String> = fields
                        .iter()
                        .enumerate()
                        .map(|(n, (text, number))| {
                            format!("\"k{n}\":[{:?},{number},{{\"s\":{:?}}}]", text, text)
                        })
                        .collect();
                    format!("{{{}}}", body.join(","))
                })
                .collect();
            let page = format!("{{\"data\":[{}],\"hasNext\":{has_next}}}", records.join(" , "));
            let (split_records, rest) = split(&page).expect("splits");
            prop_assert_eq!(split_records, records);
            prop_assert_eq!(rest, format!("{{\"data\":[],\"hasNext\":{has_next}}}"));
        }
    }
}
