//! Input parsing: bytes from the API or a file into records, with simd-json.
//!
//! Accepted shapes, all of which the APIs or users' exports produce:
//! an API page `{"data": [...], "hasNext": ...}`, a Microsoft Graph list
//! `{"value": [...]}` or hunting result `{"results": [...]}`, a JSON array
//! of records, a single record, or NDJSON where each line is any of those. The shape is
//! told from the first non-blank line: if it leaves an object or array open,
//! the whole input is one (pretty-printed) document; otherwise the input is
//! NDJSON and is streamed line by line, a bad line (the first one included)
//! reported and skipped.
//!
//! Parsing reuses everything: the input buffer, simd-json's [`Buffers`] and
//! the tape, so after warm-up a record costs no allocation. Records are
//! handed to a callback as borrowed [`Object`]s, which the encoder reads in
//! place.
//!
//! Bad input never stops the stream: each problem is reported through the
//! callback with its line and record number, and parsing goes on with the
//! next line or file. A malformed document is reported whole, because no
//! record in it can be trusted.

mod blocks;
pub mod page;

use std::fmt;
use std::io::{self, BufRead};
use std::ops::Range;

use simd_json::prelude::TypedValue;
use simd_json::tape::{Object, Value};
use simd_json::{Buffers, ErrorType, Tape, ValueType, INPUT_PADDING};

/// Key of the record array in an API page.
pub const PAGE_DATA: &str = "data";
/// Keys of the record array in Microsoft Graph answers: a list
/// (`alerts_v2`) and a hunting query's result (`runHuntingQuery`).
pub const GRAPH_RECORD_ARRAYS: [&str; 2] = ["value", "results"];
/// Key every record has; an object without it that has `data` is a page.
pub const RECORD_ID: &str = "_id";
/// Keys a Graph record has (an alert's `id`, a hunting row's `ReportId`):
/// an object with one of them is a record, whatever else it holds.
const GRAPH_RECORD_IDS: [&str; 2] = ["id", "ReportId"];

/// What is wrong with a piece of input.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The bytes are not valid JSON (or not valid UTF-8).
    #[error("invalid JSON: {0}")]
    Json(String),
    /// A record position holds something other than a JSON object.
    #[error("not a JSON object (found {0})")]
    NotAnObject(&'static str),
    /// A page's `data` member is not an array.
    #[error("the page's \"data\" member is not an array (found {0})")]
    DataNotArray(&'static str),
}

/// Where in the input a problem is: the line (1-based) where its document or
/// NDJSON line starts, or for a whole-document JSON error the line of the
/// error; and the record's 1-based position within its document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// 1-based line number.
    pub line: usize,
    /// 1-based record number within the document or NDJSON line, when the
    /// problem is one record.
    pub record: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(record) = self.record {
            write!(f, ", record {record}")?;
        }
        Ok(())
    }
}

/// A problem found in the input, with where it is.
#[derive(Debug)]
pub struct Problem {
    /// Where.
    pub location: Location,
    /// What.
    pub error: InputError,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.error)
    }
}

/// Counts for one input.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InputStats {
    /// Records handed to the callback.
    pub records: u64,
    /// Problems reported.
    pub problems: u64,
    /// Input bytes read.
    pub bytes: u64,
}

/// Parses JSON documents into records, reusing its buffers between calls.
pub struct Parser {
    buffers: Buffers,
    /// Kept between documents so its allocation is reused; `Tape::reset`
    /// re-ties it to each new input's lifetime once it is empty.
    tape: Option<Tape<'static>>,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Parser {
    /// A parser with empty buffers; they grow to the largest input seen.
    pub fn new() -> Self {
        Self {
            buffers: Buffers::default(),
            tape: None,
        }
    }

    /// Parses one JSON document (rewriting `input` in place) and hands its
    /// root to `inspect`, reusing the parser's tape; the JSON error when it
    /// does not parse.
    pub fn inspect<R>(
        &mut self,
        input: &mut [u8],
        inspect: impl FnOnce(Value<'_, '_>) -> R,
    ) -> Result<R, InputError> {
        let mut tape = self.tape.take().unwrap_or_else(Tape::null).reset();
        let filled = simd_json::fill_tape(input, &mut self.buffers, &mut tape);
        self.finish(tape, filled, inspect)
    }

    /// [`Self::inspect`] for the document at `range` of `bytes`, parsed
    /// where it lies when the bytes after it can serve as simd-json's
    /// padding (at least [`INPUT_PADDING`] of them; they are read, never
    /// changed), else through a copy. A page's records are parsed this way,
    /// which saves copying each one (7% of a backfill's CPU in `perf`).
    pub fn inspect_at<R>(
        &mut self,
        bytes: &mut [u8],
        range: Range<usize>,
        inspect: impl FnOnce(Value<'_, '_>) -> R,
    ) -> Result<R, InputError> {
        let len = range.len();
        let input = &mut bytes[range.start..];
        if input.len() - len < INPUT_PADDING {
            return self.inspect(&mut input[..len], inspect);
        }
        let mut tape = self.tape.take().unwrap_or_else(Tape::null).reset();
        let filled = simd_json::fill_tape_padded(input, len, &mut self.buffers, &mut tape);
        self.finish(tape, filled, inspect)
    }

    /// Hands a filled tape to `inspect` and keeps its allocation.
    fn finish<'de, R>(
        &mut self,
        tape: Tape<'de>,
        filled: simd_json::Result<()>,
        inspect: impl FnOnce(Value<'_, '_>) -> R,
    ) -> Result<R, InputError> {
        let result = match filled {
            Ok(()) => Ok(inspect(tape.as_value())),
            Err(error) => Err(InputError::Json(describe(error.error()))),
        };
        self.tape = Some(tape.reset());
        result
    }

    /// Parses one JSON document (simd-json rewrites `input` in place) and
    /// calls `on_record` for each record in it, in order, or with the
    /// problem for a position that is not a record. Returns the JSON error
    /// and its byte offset when the document does not parse, in which case
    /// `on_record` was not called.
    pub fn parse_document<F>(
        &mut self,
        input: &mut [u8],
        mut on_record: F,
    ) -> Result<(), (InputError, usize)>
    where
        F: FnMut(Result<&Object<'_, '_>, (usize, InputError)>),
    {
        let mut tape = self.tape.take().unwrap_or_else(Tape::null).reset();
        let result = match simd_json::fill_tape(input, &mut self.buffers, &mut tape) {
            Ok(()) => {
                walk_document(tape.as_value(), &mut on_record);
                Ok(())
            }
            Err(error) => Err((InputError::Json(describe(error.error())), error.index())),
        };
        self.tape = Some(tape.reset());
        result
    }
}

impl Parser {
    /// Parses each line of `block[..end]` (whole NDJSON lines; the last
    /// may lack its LF) as [`InputReader`] parses NDJSON: a blank line is
    /// skipped, a line that is not JSON is one problem. Records and problems
    /// go to `on_item` in order, their lines numbered from `first_line`.
    /// Returns how many lines there are. Each line is parsed where it lies,
    /// the bytes after it serving as simd-json's padding (the block should
    /// have [`INPUT_PADDING`] bytes past `end`; without them the last line
    /// is parsed through a copy). Replay's threads read their pieces of a
    /// file this way.
    pub fn parse_lines<F>(
        &mut self,
        block: &mut [u8],
        end: usize,
        first_line: usize,
        stats: &mut InputStats,
        mut on_item: F,
    ) -> usize
    where
        F: FnMut(Item<'_, '_, '_>),
    {
        let mut start = 0;
        let mut lines = 0;
        while start < end {
            let line_end =
                memchr::memchr(b'\n', &block[start..end]).map_or(end, |at| start + at + 1);
            let line_number = first_line + lines;
            lines += 1;
            stats.bytes += (line_end - start) as u64;
            let range = start..line_end;
            start = line_end;
            if is_blank(&block[range.clone()]) {
                continue;
            }
            let parsed = self.inspect_at(block, range, |root| {
                walk_document(root, &mut |result| {
                    deliver(result, line_number, stats, &mut on_item)
                });
            });
            if let Err(error) = parsed {
                stats.problems += 1;
                on_item(Item::Problem(Problem {
                    location: Location {
                        line: line_number,
                        record: None,
                    },
                    error,
                }));
            }
        }
        lines
    }

    /// Whether an input whose first non-blank line is `line` is NDJSON
    /// (as [`InputReader::read`] decides): the line is JSON on its own, or
    /// it is not but leaves no object or array open. Parses a copy.
    pub fn starts_ndjson(&mut self, line: &[u8]) -> bool {
        let mut copy = line.to_vec();
        self.parse_document(&mut copy, |_| {}).is_ok() || !opens_a_document(line)
    }
}

/// Calls `on_record` for each record of a parsed document.
fn walk_document<F>(root: Value<'_, '_>, on_record: &mut F)
where
    F: FnMut(Result<&Object<'_, '_>, (usize, InputError)>),
{
    match root.value_type() {
        ValueType::Array => walk_records(root, on_record),
        ValueType::Object => {
            let Some(object) = root.as_object() else {
                return;
            };
            if object.get(RECORD_ID).is_some() {
                return on_record(Ok(&object));
            }
            if let Some(data) = object.get(PAGE_DATA) {
                return if data.value_type() == ValueType::Array {
                    walk_records(data, on_record);
                } else {
                    on_record(Err((1, InputError::DataNotArray(kind_name(data)))));
                };
            }
            let graph_list = GRAPH_RECORD_ARRAYS
                .iter()
                .filter_map(|key| object.get(key))
                .find(|list| list.value_type() == ValueType::Array)
                .filter(|_| GRAPH_RECORD_IDS.iter().all(|id| object.get(id).is_none()));
            match graph_list {
                Some(list) => walk_records(list, on_record),
                None => on_record(Ok(&object)),
            }
        }
        _ => on_record(Err((1, InputError::NotAnObject(kind_name(root))))),
    }
}

fn walk_records<F>(array: Value<'_, '_>, on_record: &mut F)
where
    F: FnMut(Result<&Object<'_, '_>, (usize, InputError)>),
{
    let Some(items) = array.as_array() else {
        return;
    };
    for (index, item) in items.iter().enumerate() {
        match item.as_object() {
            Some(object) => on_record(Ok(&object)),
            None => on_record(Err((index + 1, InputError::NotAnObject(kind_name(item))))),
        }
    }
}

/// "a string", "an array" ... for messages.
fn kind_name(value: Value<'_, '_>) -> &'static str {
    match value.value_type() {
        ValueType::Null => "null",
        ValueType::Bool => "a boolean",
        ValueType::String => "a string",
        ValueType::Array => "an array",
        ValueType::Object => "an object",
        _ => "a number",
    }
}

/// A readable reason for a simd-json error.
fn describe(error: &ErrorType) -> String {
    match error {
        ErrorType::InvalidUtf8 => "invalid UTF-8".to_owned(),
        ErrorType::Eof => "unexpected end of input".to_owned(),
        ErrorType::TrailingData => "more data after the end of the document".to_owned(),
        ErrorType::InvalidEscape => "invalid escape sequence in a string".to_owned(),
        ErrorType::InvalidNumber => "invalid number".to_owned(),
        ErrorType::InvalidUnicodeCodepoint => "invalid \\u escape".to_owned(),
        ErrorType::UnterminatedString => "unterminated string".to_owned(),
        ErrorType::Syntax | ErrorType::UnexpectedCharacter => "syntax error".to_owned(),
        ErrorType::InvalidUnicodeEscape => "invalid \\u escape".to_owned(),
        ErrorType::ExpectedNull | ErrorType::ExpectedTrue | ErrorType::ExpectedFalse => {
            "invalid literal (not true, false or null)".to_owned()
        }
        ErrorType::DepthLimitExceeded => "nested too deeply".to_owned(),
        other => format!("{other:?}"),
    }
}

/// Whether a first line that is not JSON on its own opens a document that
/// goes on over the next lines: an object or array left open. Anything
/// else (a closed object that is malformed, text that is not JSON at all)
/// is a bad line of NDJSON, and the lines after it are read as such.
fn opens_a_document(line: &[u8]) -> bool {
    let Some(start) = line.iter().position(|b| !b.is_ascii_whitespace()) else {
        return false;
    };
    match line[start] {
        b'{' => blocks::record_end(line, start).is_none(),
        b'[' => line.trim_ascii_end().last() != Some(&b']'),
        _ => false,
    }
}

/// Reads an input stream in either shape and reports records and problems.
#[derive(Default)]
pub struct InputReader {
    parser: Parser,
    line: Vec<u8>,
    document: Vec<u8>,
}

/// What the reader hands to its callback.
pub enum Item<'a, 't, 'i> {
    /// One record, to encode.
    Record(&'a Object<'t, 'i>),
    /// A piece of input that was skipped, and why.
    Problem(Problem),
}

impl InputReader {
    /// A reader with empty buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `source` to its end, calling `on_item` for every record and
    /// every problem in input order. Only I/O errors end it early.
    pub fn read<R, F>(&mut self, mut source: R, mut on_item: F) -> io::Result<InputStats>
    where
        R: BufRead,
        F: FnMut(Item<'_, '_, '_>),
    {
        let mut stats = InputStats::default();
        let mut line_number = 0;
        // Find the first non-blank line.
        loop {
            self.line.clear();
            if source.read_until(b'\n', &mut self.line)? == 0 {
                return Ok(stats);
            }
            line_number += 1;
            stats.bytes += self.line.len() as u64;
            if !is_blank(&self.line) {
                break;
            }
        }
        let first_line = line_number;
        // Keep an untouched copy in case this line starts a larger document:
        // simd-json rewrites its input while parsing.
        self.document.clear();
        self.document.extend_from_slice(&self.line);
        let first = self.parse_line(first_line, &mut stats, &mut on_item);
        match first {
            Ok(()) => return self.read_ndjson(source, line_number, stats, on_item),
            Err(problem) if !opens_a_document(&self.document) => {
                // A whole value on its line that is not valid JSON: a bad
                // NDJSON line, reported; the lines after it still count.
                stats.problems += 1;
                on_item(Item::Problem(problem));
                return self.read_ndjson(source, line_number, stats, on_item);
            }
            Err(_) => {}
        }
        let more = source.read_to_end(&mut self.document)?;
        stats.bytes += more as u64;
        if is_blank(&self.document[self.line.len()..]) {
            // A single line that is not JSON: report it as that line.
            self.document.truncate(0);
            let error = self.parse_line(first_line, &mut stats, &mut |_| {}).err();
            if let Some(problem) = error {
                stats.problems += 1;
                on_item(Item::Problem(problem));
            }
            return Ok(stats);
        }
        self.read_document(first_line, &mut stats, &mut on_item);
        Ok(stats)
    }

    fn read_ndjson<R, F>(
        &mut self,
        mut source: R,
        mut line_number: usize,
        mut stats: InputStats,
        mut on_item: F,
    ) -> io::Result<InputStats>
    where
        R: BufRead,
        F: FnMut(Item<'_, '_, '_>),
    {
        loop {
            self.line.clear();
            if source.read_until(b'\n', &mut self.line)? == 0 {
                return Ok(stats);
            }
            line_number += 1;
            stats.bytes += self.line.len() as u64;
            if is_blank(&self.line) {
                continue;
            }
            if let Err(problem) = self.parse_line(line_number, &mut stats, &mut on_item) {
                stats.problems += 1;
                on_item(Item::Problem(problem));
            }
        }
    }

    /// Parses `self.line` as one document starting at `line_number`;
    /// records and per-record problems go to `on_item`, a JSON error is
    /// returned (and nothing was reported).
    fn parse_line<F>(
        &mut self,
        line_number: usize,
        stats: &mut InputStats,
        on_item: &mut F,
    ) -> Result<(), Problem>
    where
        F: FnMut(Item<'_, '_, '_>),
    {
        self.parser
            .parse_document(&mut self.line, |result| {
                deliver(result, line_number, stats, on_item)
            })
            .map_err(|(error, _)| Problem {
                location: Location {
                    line: line_number,
                    record: None,
                },
                error,
            })
    }

    /// Parses `self.document` as one multi-line document.
    fn read_document<F>(&mut self, first_line: usize, stats: &mut InputStats, on_item: &mut F)
    where
        F: FnMut(Item<'_, '_, '_>),
    {
        let result = self.parser.parse_document(&mut self.document, |result| {
            deliver(result, first_line, stats, on_item)
        });
        if let Err((error, offset)) = result {
            // The offset is into the document as read; parsing may have
            // rewritten escapes before it, which never adds line breaks
            // except from `\n` escapes, so the count is a close hint.
            let end = offset.min(self.document.len());
            let newlines = self.document[..end].iter().filter(|&&b| b == b'\n').count();
            stats.problems += 1;
            on_item(Item::Problem(Problem {
                location: Location {
                    line: first_line + newlines,
                    record: None,
                },
                error,
            }));
        }
    }
}

fn deliver<F>(
    result: Result<&Object<'_, '_>, (usize, InputError)>,
    line: usize,
    stats: &mut InputStats,
    on_item: &mut F,
) where
    F: FnMut(Item<'_, '_, '_>),
{
    match result {
        Ok(record) => {
            stats.records += 1;
            on_item(Item::Record(record));
        }
        Err((record, error)) => {
            stats.problems += 1;
            on_item(Item::Problem(Problem {
                location: Location {
                    line,
                    record: Some(record),
                },
                error,
            }));
        }
    }
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use simd_json::prelude::ValueAsScalar;

    #[test]
    fn records_parse_in_place_with_the_next_bytes_as_padding() {
        // Escapes make simd-json rewrite strings in place; each record must
        // read the same in place as from a copy, and leave the bytes after
        // it (the next record) intact. The last record has too few bytes
        // after it and goes through a copy.
        let records: Vec<String> = (0..40)
            .map(|i| {
                format!(
                    r#"{{"_id":"r{i}","d":"a\"b\\c\u00e9{}"}}"#,
                    "x".repeat(i * 7)
                )
            })
            .collect();
        let mut page = records.join(",").into_bytes();
        let mut ranges = Vec::new();
        let mut at = 0;
        for record in &records {
            ranges.push(at..at + record.len());
            at += record.len() + 1;
        }
        let read = |value: Value<'_, '_>| {
            let object = value.as_object().expect("an object");
            let text = |key| object.get(key).and_then(|v| v.as_str().map(str::to_owned));
            (text("_id"), text("d"))
        };
        let mut parser = Parser::new();
        for (record, range) in records.iter().zip(ranges) {
            let mut copy = record.clone().into_bytes();
            let expected = parser.inspect(&mut copy, read).expect("parses");
            let in_place = parser.inspect_at(&mut page, range, read).expect("parses");
            assert_eq!(in_place, expected);
            assert!(expected.1.is_some_and(|d| d.starts_with("a\"b\\c\u{e9}")));
        }
        let mut broken = br#"{"_id":"x","d":"unterminated}    "#.to_vec();
        broken.extend_from_slice(&[b' '; 80]);
        assert!(parser.inspect_at(&mut broken, 0..33, read).is_err());
    }

    /// Reads `input` and lists records by `_id` and problems by text.
    fn read(input: &str) -> (Vec<String>, InputStats) {
        let mut seen = Vec::new();
        let stats = InputReader::new()
            .read(input.as_bytes(), |item| match item {
                Item::Record(record) => seen.push(
                    record
                        .get("_id")
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                ),
                Item::Problem(problem) => seen.push(format!("! {problem}")),
            })
            .expect("reading from memory");
        (seen, stats)
    }

    #[test]
    fn page_array_single_and_ndjson() {
        assert_eq!(
            read(r#"{"data":[{"_id":"a"},{"_id":"b"}],"hasNext":false}"#).0,
            ["a", "b"]
        );
        assert_eq!(
            read("[\n {\"_id\": \"a\"},\n {\"_id\": \"b\"}\n]\n").0,
            ["a", "b"]
        );
        assert_eq!(read("{\n  \"_id\": \"a\",\n  \"data\": [1]\n}").0, ["a"]);
        let ndjson =
            "{\"_id\":\"a\"}\n\n{\"data\":[{\"_id\":\"b\"},{\"_id\":\"c\"}]}\r\n[{\"_id\":\"d\"}]";
        assert_eq!(read(ndjson).0, ["a", "b", "c", "d"]);
    }

    #[test]
    fn a_bad_first_line_of_ndjson_is_one_problem_not_the_whole_input() {
        for first in [
            "{\"_id\":\"x\",}",
            "{\"_id\": nope}",
            "not json at all",
            "[{\"_id\":\"x\"},]",
        ] {
            let input = format!("{first}\n{{\"_id\":\"a\"}}\n{{\"_id\":\"b\"}}\n");
            let (seen, stats) = read(&input);
            assert_eq!(seen.len(), 3, "{first}: {seen:?}");
            assert!(seen[0].starts_with("! line 1: "), "{first}: {seen:?}");
            assert_eq!(seen[1..], ["a", "b"], "{first}");
            assert_eq!((stats.records, stats.problems), (2, 1), "{first}");
        }
        // An object or array left open on the first line starts a document.
        assert_eq!(read("{\"data\": [\n{\"_id\":\"a\"}\n]}\n").0, ["a"]);
        assert_eq!(read("[\n{\"_id\":\"a\"}\n]\n").0, ["a"]);
    }

    #[test]
    fn empty_input_has_no_records() {
        let (seen, stats) = read(" \n\n ");
        assert!(seen.is_empty());
        assert_eq!(stats.records, 0);
    }

    #[test]
    fn numbers_past_64_bits_keep_their_record_and_numbers_past_any_float_do_not() {
        // An integer too large for 64 bits is read as a float (the
        // record is kept, the field written as that number); a number no
        // float can hold is not valid JSON to any finite-number parser:
        // its record is reported and skipped, the others are kept.
        let input = "{\"_id\":\"a\",\"timestamp\":123456789012345678901234567890}\n\
                     {\"_id\":\"b\",\"timestamp\":1e400}\n\
                     {\"_id\":\"c\",\"timestamp\":18446744073709551615}\n";
        let (seen, stats) = read(input);
        assert_eq!(seen[0], "a");
        assert!(seen[1].starts_with("! line 2: "), "{seen:?}");
        assert_eq!(seen[2], "c");
        assert_eq!((stats.records, stats.problems), (2, 1));
    }

    #[test]
    fn problems_are_located_and_the_rest_survives() {
        let ndjson = "{\"_id\":\"a\"}\n{\"_id\":\n[{\"_id\":\"b\"},7,\"x\"]\n{\"data\":5}\n{\"_id\":\"c\"}\n";
        let (seen, stats) = read(ndjson);
        assert_eq!(
            seen,
            [
                "a",
                "! line 2: invalid JSON: syntax error",
                "b",
                "! line 3, record 2: not a JSON object (found a number)",
                "! line 3, record 3: not a JSON object (found a string)",
                "! line 4, record 1: the page's \"data\" member is not an array (found a number)",
                "c",
            ]
        );
        assert_eq!(stats.records, 3);
        assert_eq!(stats.problems, 4);
    }

    #[test]
    fn broken_document_is_reported_with_a_line() {
        let (seen, _) = read("[\n {\"_id\": \"a\"},\n {\"_id\": \"b\",,}\n]\n");
        assert_eq!(seen.len(), 1);
        assert!(seen[0].starts_with("! line 3: invalid JSON"), "{seen:?}");
    }

    #[test]
    fn invalid_utf8_is_named() {
        let mut seen = Vec::new();
        InputReader::new()
            .read(&b"{\"_id\":\"\xff\"}\n{\"_id\":\"ok\"}\n"[..], |item| {
                if let Item::Problem(p) = item {
                    seen.push(p.to_string());
                }
            })
            .expect("in memory");
        assert_eq!(seen, ["line 1: invalid JSON: invalid UTF-8"]);
    }

    #[test]
    fn single_bad_line() {
        assert_eq!(
            read("not json\n\n").0,
            ["! line 1: invalid JSON: invalid literal (not true, false or null)"]
        );
    }
}
