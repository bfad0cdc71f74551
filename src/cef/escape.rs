//! CEF escaping for header fields and extension values.
//!
//! Every byte of every record passes through here, so the scan is the hot loop
//! of the whole agent. Clean text (the common case) is found eight bytes at a
//! time with SWAR bit tricks in safe code and copied with one `extend_from_slice`
//! per run; only the rare byte that needs escaping takes the slow path.
//!
//! Only ASCII bytes are ever replaced. UTF-8 continuation and lead bytes are
//! all `>= 0x80`, so they never match, and the output stays valid UTF-8 when
//! the input is.
//!
//! The rules (ArcSight CEF implementation standard, restricted to the subset
//! every parser we know of accepts):
//!
//! | byte            | header    | extension |
//! |-----------------|-----------|-----------|
//! | `\`             | `\\`      | `\\`      |
//! | `\|`            | `\\|`     | as is     |
//! | `=`             | as is     | `\=`      |
//! | LF              | space     | `\n`      |
//! | CR              | space     | `\r`      |
//! | other C0, DEL   | space     | space     |

/// Eight copies of `0x01`, one per byte lane.
const LANES_01: u64 = 0x0101_0101_0101_0101;
/// The high bit of every byte lane.
const LANES_80: u64 = 0x8080_8080_8080_8080;

/// Marks (with the lane's high bit) every lane of `word` equal to `byte`.
///
/// The classic "has zero byte" trick: a borrow can only falsely mark lanes
/// *above* a truly matching lane, so the lowest mark is always exact. That is
/// all the callers use (`trailing_zeros` on a little-endian load).
#[inline(always)]
fn lanes_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (LANES_01 * u64::from(byte));
    x.wrapping_sub(LANES_01) & !x & LANES_80
}

/// Marks every lane of `word` holding a byte below `limit` (`limit <= 0x80`).
/// Same lowest-mark-is-exact property as [`lanes_equal`].
#[inline(always)]
fn lanes_below(word: u64, limit: u8) -> u64 {
    word.wrapping_sub(LANES_01 * u64::from(limit)) & !word & LANES_80
}

/// Which bytes a context treats specially, and what it writes for them.
trait EscapeRules {
    /// Marks the lanes of `word` that need escaping (lowest mark exact).
    fn special_lanes(word: u64) -> u64;
    /// Whether a single byte needs escaping.
    fn is_special(byte: u8) -> bool;
    /// The bytes written in place of a special byte.
    fn replacement(byte: u8) -> &'static [u8];
}

/// Rules for the seven `|`-separated header fields.
struct Header;
/// Rules for extension values.
struct Extension;

impl EscapeRules for Header {
    #[inline(always)]
    fn special_lanes(word: u64) -> u64 {
        lanes_below(word, 0x20)
            | lanes_equal(word, 0x7f)
            | lanes_equal(word, b'\\')
            | lanes_equal(word, b'|')
    }

    #[inline(always)]
    fn is_special(byte: u8) -> bool {
        byte < 0x20 || byte == 0x7f || byte == b'\\' || byte == b'|'
    }

    #[inline]
    fn replacement(byte: u8) -> &'static [u8] {
        match byte {
            b'\\' => b"\\\\",
            b'|' => b"\\|",
            _ => b" ",
        }
    }
}

impl EscapeRules for Extension {
    #[inline(always)]
    fn special_lanes(word: u64) -> u64 {
        lanes_below(word, 0x20)
            | lanes_equal(word, 0x7f)
            | lanes_equal(word, b'\\')
            | lanes_equal(word, b'=')
    }

    #[inline(always)]
    fn is_special(byte: u8) -> bool {
        byte < 0x20 || byte == 0x7f || byte == b'\\' || byte == b'='
    }

    #[inline]
    fn replacement(byte: u8) -> &'static [u8] {
        match byte {
            b'\\' => b"\\\\",
            b'=' => b"\\=",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => b" ",
        }
    }
}

#[inline(always)]
fn escape_into<R: EscapeRules>(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    // Copied-up-to position and scan position.
    let mut copied = 0;
    let mut pos = 0;
    while let Some(chunk) = bytes[pos..].first_chunk::<8>() {
        let marks = R::special_lanes(u64::from_le_bytes(*chunk));
        if marks == 0 {
            pos += 8;
            continue;
        }
        let special = pos + (marks.trailing_zeros() / 8) as usize;
        out.extend_from_slice(&bytes[copied..special]);
        out.extend_from_slice(R::replacement(bytes[special]));
        copied = special + 1;
        pos = special + 1;
    }
    for (offset, &byte) in bytes[pos..].iter().enumerate() {
        if R::is_special(byte) {
            let special = pos + offset;
            out.extend_from_slice(&bytes[copied..special]);
            out.extend_from_slice(R::replacement(byte));
            copied = special + 1;
        }
    }
    out.extend_from_slice(&bytes[copied..]);
}

/// Appends `text` escaped for a CEF header field.
#[inline]
pub fn escape_header(out: &mut Vec<u8>, text: &str) {
    escape_into::<Header>(out, text);
}

/// Appends `text` escaped for a CEF extension value.
#[inline]
pub fn escape_extension(out: &mut Vec<u8>, text: &str) {
    escape_into::<Extension>(out, text);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Obviously-correct byte-at-a-time reference for the SWAR versions.
    fn reference<R: EscapeRules>(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in text.as_bytes() {
            if R::is_special(b) {
                out.extend_from_slice(R::replacement(b));
            } else {
                out.push(b);
            }
        }
        out
    }

    fn header(text: &str) -> String {
        let mut out = Vec::new();
        escape_header(&mut out, text);
        String::from_utf8(out).expect("escaping keeps UTF-8")
    }

    fn extension(text: &str) -> String {
        let mut out = Vec::new();
        escape_extension(&mut out, text);
        String::from_utf8(out).expect("escaping keeps UTF-8")
    }

    #[test]
    fn header_rules() {
        assert_eq!(header(r"a\b|c=d"), r"a\\b\|c=d");
        assert_eq!(header("l1\nl2\rl3\tx\u{0}y\u{7f}z"), "l1 l2 l3 x y z");
        assert_eq!(header("plain text, no change"), "plain text, no change");
    }

    #[test]
    fn extension_rules() {
        assert_eq!(extension(r"a\b|c=d"), r"a\\b|c\=d");
        assert_eq!(extension("l1\nl2\rl3\tx\u{0}y\u{7f}z"), r"l1\nl2\rl3 x y z");
        assert_eq!(extension("héllo wörld ✓ 日本"), "héllo wörld ✓ 日本");
    }

    #[test]
    fn every_position_and_length_matches_reference() {
        // Put each special byte at every offset of strings up to 40 bytes, so
        // both the 8-byte lanes and the tail loop see it everywhere.
        let specials = ['\\', '|', '=', '\n', '\r', '\t', '\0', '\u{1f}', '\u{7f}'];
        for len in 0..40 {
            for at in 0..len {
                for &s in &specials {
                    let text: String = (0..len).map(|i| if i == at { s } else { 'a' }).collect();
                    assert_eq!(header(&text).into_bytes(), reference::<Header>(&text));
                    assert_eq!(extension(&text).into_bytes(), reference::<Extension>(&text));
                }
            }
        }
    }

    #[test]
    fn neighbours_of_specials_are_not_matched() {
        // Bytes one above/below each special byte, and high bytes, must pass.
        let text = "[]<>{}~ !\u{80}\u{ff}\u{100}€";
        assert_eq!(header(text), text);
        assert_eq!(extension(text), text);
    }

    #[test]
    fn appends_without_clearing() {
        let mut out = b"prefix:".to_vec();
        escape_extension(&mut out, "a=b");
        assert_eq!(out, b"prefix:a\\=b");
    }
}
