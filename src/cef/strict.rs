//! A strict CEF line parser, for checking output rather than ingesting it.
//!
//! It accepts only the subset of CEF that every SIEM parser we know of agrees
//! on, which is exactly what the encoder promises to emit: the tests, the
//! property tests and the fuzz targets all hold the encoder to it, and it is
//! public so that users can check lines from other sources the same way.
//!
//! Rejected: a raw CR, LF, TAB or any other control character; in the header,
//! any escape other than `\\` and `\|`, an empty field, a severity outside
//! 0-10; in the extension, any escape other than `\\`, `\=`, `\n`, `\r`, a
//! raw `=` inside a value, a key that is not alphanumeric, and separators
//! other than one space.

/// The fixed start of every line this agent writes.
pub const CEF_START: &str = "CEF:0|";
/// Fields in the header, counting the version `0`.
pub const HEADER_FIELDS: usize = 7;
/// Highest CEF severity.
pub const MAX_SEVERITY: u8 = 10;

/// Why a line is not strict CEF. Positions are byte offsets into the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrictError {
    /// The line does not start with `CEF:0|` (after the syslog header).
    #[error("no `CEF:0|` at the start of the line")]
    NotCef,
    /// A raw control character (CR, LF, TAB, NUL, DEL ...).
    #[error("raw control character {byte:#04x} at byte {at}")]
    ControlCharacter {
        /// The offending byte.
        byte: u8,
        /// Where it is.
        at: usize,
    },
    /// An escape the context does not allow, or a lone trailing `\`.
    #[error("escape `\\{escaped}` not allowed in the {context} at byte {at}")]
    BadEscape {
        /// The character after the backslash (`\0` at end of line).
        escaped: char,
        /// `header` or `extension`.
        context: &'static str,
        /// Where the backslash is.
        at: usize,
    },
    /// Fewer than seven `|`-terminated header fields.
    #[error("the header has {0} fields; CEF needs 7")]
    TruncatedHeader(usize),
    /// A header field is empty.
    #[error("header field {0} is empty")]
    EmptyHeaderField(usize),
    /// The severity is not an integer from 0 to 10.
    #[error("severity {0:?} is not an integer from 0 to 10")]
    Severity(String),
    /// An unescaped `=` that does not end a ` key`.
    #[error("raw `=` inside a value, or a key that is not alphanumeric, at byte {0}")]
    RawEquals(usize),
    /// Text in the extension before the first key.
    #[error("the extension does not start with a key")]
    NoLeadingKey,
}

/// A parsed line with every escape undone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CefLine {
    /// The seven header fields, starting with the version `0`.
    pub header: Vec<String>,
    /// The extension pairs in line order.
    pub extension: Vec<(String, String)>,
}

impl CefLine {
    /// The value of the first pair named `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.extension
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The extension keys in order.
    pub fn keys(&self) -> Vec<&str> {
        self.extension.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// Skips a syslog header: returns the line from its `CEF:0|` on.
pub fn strip_syslog_header(message: &str) -> Result<&str, StrictError> {
    message
        .find(CEF_START)
        .map(|at| &message[at..])
        .ok_or(StrictError::NotCef)
}

/// Parses one CEF line (without syslog header or terminator) strictly.
pub fn parse(line: &str) -> Result<CefLine, StrictError> {
    if let Some((at, &byte)) = line
        .as_bytes()
        .iter()
        .enumerate()
        .find(|(_, &b)| b < 0x20 || b == 0x7f)
    {
        return Err(StrictError::ControlCharacter { byte, at });
    }
    if !line.starts_with(CEF_START) {
        return Err(StrictError::NotCef);
    }
    let (header, extension_start) = parse_header(line)?;
    let extension = parse_extension(line, extension_start)?;
    Ok(CefLine { header, extension })
}

fn bad_escape(line: &str, at: usize, context: &'static str) -> StrictError {
    StrictError::BadEscape {
        escaped: line[at + 1..].chars().next().unwrap_or('\0'),
        context,
        at,
    }
}

/// The seven header fields and the offset where the extension starts.
fn parse_header(line: &str) -> Result<(Vec<String>, usize), StrictError> {
    let bytes = line.as_bytes();
    let mut fields = Vec::with_capacity(HEADER_FIELDS);
    let mut current = Vec::new();
    // Skip "CEF:"; the version is the first field.
    let mut at = "CEF:".len();
    while fields.len() < HEADER_FIELDS {
        match bytes.get(at) {
            None => return Err(StrictError::TruncatedHeader(fields.len())),
            Some(b'\\') => match bytes.get(at + 1) {
                Some(&escaped @ (b'\\' | b'|')) => {
                    current.push(escaped);
                    at += 2;
                }
                _ => return Err(bad_escape(line, at, "header")),
            },
            Some(b'|') => {
                if current.is_empty() {
                    return Err(StrictError::EmptyHeaderField(fields.len()));
                }
                // Only ASCII was removed from valid UTF-8, so this cannot fail.
                fields.push(String::from_utf8_lossy(&current).into_owned());
                current.clear();
                at += 1;
            }
            Some(&byte) => {
                current.push(byte);
                at += 1;
            }
        }
    }
    let severity = &fields[HEADER_FIELDS - 1];
    match severity.parse::<u8>() {
        Ok(level) if level <= MAX_SEVERITY && !severity.starts_with('+') => {}
        _ => return Err(StrictError::Severity(severity.clone())),
    }
    Ok((fields, at))
}

fn parse_extension(line: &str, start: usize) -> Result<Vec<(String, String)>, StrictError> {
    let bytes = line.as_bytes();
    // Offsets of every unescaped `=`, checking escapes on the way.
    let mut equals = Vec::new();
    let mut at = start;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => match bytes.get(at + 1) {
                Some(b'\\' | b'=' | b'n' | b'r') => at += 2,
                _ => return Err(bad_escape(line, at, "extension")),
            },
            b'=' => {
                equals.push(at);
                at += 1;
            }
            _ => at += 1,
        }
    }
    if equals.is_empty() {
        return if start == bytes.len() {
            Ok(Vec::new())
        } else {
            Err(StrictError::NoLeadingKey)
        };
    }
    // Each `=` ends a key: the alphanumeric run before it, which must start
    // the extension or follow the single space that ends the previous value.
    let mut key_spans = Vec::with_capacity(equals.len());
    for &eq in &equals {
        let key_start = bytes[start..eq]
            .iter()
            .rposition(|b| !b.is_ascii_alphanumeric())
            .map_or(start, |p| start + p + 1);
        let key_ok = key_start < eq
            && if key_spans.is_empty() {
                key_start == start
            } else {
                bytes[key_start - 1] == b' '
            };
        if !key_ok {
            return Err(if key_spans.is_empty() && key_start != start {
                StrictError::NoLeadingKey
            } else {
                StrictError::RawEquals(eq)
            });
        }
        key_spans.push((key_start, eq));
    }
    let mut pairs = Vec::with_capacity(key_spans.len());
    for (index, &(key_start, eq)) in key_spans.iter().enumerate() {
        let value_end = key_spans
            .get(index + 1)
            .map_or(bytes.len(), |&(next_key, _)| next_key - 1);
        if value_end < eq + 1 {
            // `a= b=`: the value of `a` would need a negative length; only
            // possible when a key directly follows `=` without a value and
            // without a separating space.
            return Err(StrictError::RawEquals(eq));
        }
        pairs.push((
            line[key_start..eq].to_owned(),
            unescape_extension(&line[eq + 1..value_end]),
        ));
    }
    Ok(pairs)
}

/// Undoes extension escaping; the escapes were validated already.
fn unescape_extension(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_unescapes() {
        let line = r"CEF:0|V\|x|P\\y|1.0|C|N a|3|a=1 msg=x\=y \\ z\nw|v c6a1Label=Device IPv6 Address empty= last=end ";
        let parsed = parse(line).expect("valid");
        assert_eq!(parsed.header, ["0", "V|x", r"P\y", "1.0", "C", "N a", "3"]);
        assert_eq!(parsed.get("a"), Some("1"));
        assert_eq!(parsed.get("msg"), Some("x=y \\ z\nw|v"));
        assert_eq!(parsed.get("c6a1Label"), Some("Device IPv6 Address"));
        assert_eq!(parsed.get("empty"), Some(""));
        assert_eq!(parsed.get("last"), Some("end "));
        assert_eq!(parsed.keys(), ["a", "msg", "c6a1Label", "empty", "last"]);
    }

    #[test]
    fn rejects_outside_subset() {
        let cases = [
            ("CEF:0|V|P|1|C|N|3|a=b\tc", "tab"),
            ("CEF:0|V|P|1|C|N|3|a=b\nc", "raw LF"),
            ("CEF:0|V|P|1|C|N|3|a=b\rc", "raw CR"),
            (r"CEF:0|V|P|1|C|N|3|a=b\|c", r"\| in extension"),
            (r"CEF:0|V|P|1|C|N|3|a=b\tc", r"\t in extension"),
            (r"CEF:0|V|P|1|C|N|3|a=b\", "trailing backslash"),
            (r"CEF:0|V|P\=|1|C|N|3|a=b", r"\= in header"),
            (r"CEF:0|V|P\n|1|C|N|3|a=b", r"\n in header"),
            ("CEF:0|V|P|1|C|N|3|a=b=c", "raw = in value"),
            ("CEF:0|V|P|1|C|N|3|a=b c.d=e", "non-alnum key"),
            ("CEF:0|V|P|1|C|N|3|a=b  =c", "raw = after space"),
            ("CEF:0|V|P|1|C|N|3| a=b", "leading space"),
            ("CEF:0|V|P|1|C|N|3|junk", "no key"),
            ("CEF:0|V||1|C|N|3|a=b", "empty header field"),
            ("CEF:0|V|P|1|C|N|11|a=b", "severity 11"),
            ("CEF:0|V|P|1|C|N|x|a=b", "severity x"),
            ("CEF:0|V|P|1|C|N", "short header"),
            ("CEF:1|V|P|1|C|N|3|a=b", "CEF version"),
        ];
        for (line, why) in cases {
            assert!(parse(line).is_err(), "accepted {why}: {line}");
        }
    }

    #[test]
    fn empty_extension_is_fine() {
        assert_eq!(parse("CEF:0|V|P|1|C|N|3|").expect("valid").extension, []);
    }

    #[test]
    fn strips_syslog_header() {
        assert_eq!(
            strip_syslog_header("2017-11-28T19:24:55.000Z host CEF:0|a"),
            Ok("CEF:0|a")
        );
        assert_eq!(strip_syslog_header("nope"), Err(StrictError::NotCef));
    }
}
