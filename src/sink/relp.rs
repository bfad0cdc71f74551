//! The client side of RELP, rsyslog's Reliable Event Logging Protocol.
//!
//! RELP is why a collector crash loses nothing: the receiver answers every
//! `syslog` frame with `rsp 200` once it has taken the message, and only
//! that answer moves our checkpoint. Frames are
//! `TXNR SP COMMAND SP DATALEN [SP DATA] LF`; transaction numbers count up
//! from 1 and wrap after 999,999,999. A window of unanswered messages keeps
//! the link busy instead of waiting a round trip per message.
//!
//! This module only frames and parses; the writer thread owns the socket.

/// Largest transaction number before it wraps to 1.
pub const MAX_TXNR: u32 = 999_999_999;
/// Default window of unanswered `syslog` frames (librelp's default).
pub const DEFAULT_WINDOW: usize = 128;
/// Longest frame accepted from the server (answers are short).
pub const MAX_RESPONSE_FRAME: usize = 64 * 1024;
/// Digits allowed in a transaction number or a data length.
const MAX_DIGITS: usize = 9;

/// The data of our `open` offer.
pub const OPEN_OFFERS: &str = concat!(
    "relp_version=0\nrelp_software=siem-agent,",
    env!("CARGO_PKG_VERSION"),
    ",https://github.com/siem-agent/siem-agent\ncommands=syslog"
);

/// Appends one frame.
pub fn write_frame(out: &mut Vec<u8>, txnr: u32, command: &str, data: &[u8]) {
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(digits.format(txnr).as_bytes());
    out.push(b' ');
    out.extend_from_slice(command.as_bytes());
    out.push(b' ');
    out.extend_from_slice(digits.format(data.len()).as_bytes());
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
}

/// The transaction number after `txnr`.
pub fn next_txnr(txnr: u32) -> u32 {
    if txnr >= MAX_TXNR {
        1
    } else {
        txnr + 1
    }
}

/// A frame from the server, borrowing its text from the bytes it was
/// parsed from: the writer parses one answer per line it delivers, and
/// only a refusal's text is ever copied (into its error message).
#[derive(Debug, PartialEq, Eq)]
pub enum ServerFrame<'a> {
    /// An answer to our frame `txnr`, with its status code and text.
    Response {
        /// The transaction answered.
        txnr: u32,
        /// 200 means taken; anything else is a refusal.
        code: u16,
        /// The rest of the answer (human message and offers), trimmed,
        /// as the server sent it (not necessarily UTF-8).
        text: &'a [u8],
    },
    /// The server is closing the session (`serverclose`).
    ServerClose,
}

/// Why the server's bytes are not RELP.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RelpError {
    /// The frame header is not `TXNR SP COMMAND SP DATALEN`.
    #[error("malformed RELP frame from the server: {0}")]
    Malformed(&'static str),
    /// A frame longer than we accept from a server.
    #[error("RELP frame from the server is too long ({0} bytes)")]
    TooLong(usize),
    /// A command a client never receives.
    #[error("unexpected RELP command from the server: {0}")]
    UnexpectedCommand(String),
}

/// Parses the first complete frame in `buffer`; returns it and the bytes it
/// used, or `None` when more bytes are needed.
pub fn parse_frame(buffer: &[u8]) -> Result<Option<(ServerFrame<'_>, usize)>, RelpError> {
    let mut at = 0;
    let Some((txnr, b' ')) = number(buffer, &mut at)? else {
        return if at < buffer.len() {
            Err(RelpError::Malformed("transaction number"))
        } else {
            Ok(None)
        };
    };
    let Some(command) = token(buffer, &mut at)? else {
        return Ok(None);
    };
    let Some((length, separator)) = number(buffer, &mut at)? else {
        return Ok(None);
    };
    let length = usize::try_from(length).map_err(|_| RelpError::Malformed("data length"))?;
    if length > MAX_RESPONSE_FRAME {
        return Err(RelpError::TooLong(length));
    }
    let data = match (length, separator) {
        (0, b'\n') => &buffer[at..at],
        (0, _) => return Err(RelpError::Malformed("data after a zero length")),
        (_, b'\n') => return Err(RelpError::Malformed("no data after a length")),
        _ => {
            let Some(data) = buffer.get(at..at + length) else {
                return Ok(None);
            };
            at += length;
            data
        }
    };
    match buffer.get(at) {
        None => return Ok(None),
        Some(b'\n') => at += 1,
        Some(_) => return Err(RelpError::Malformed("missing trailer")),
    }
    let frame = match command {
        b"rsp" => {
            let code = data
                .get(..3)
                .filter(|digits| digits.iter().all(u8::is_ascii_digit))
                .map(|digits| {
                    digits
                        .iter()
                        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'))
                })
                .ok_or(RelpError::Malformed("response without a status code"))?;
            ServerFrame::Response {
                txnr: u32::try_from(txnr).map_err(|_| RelpError::Malformed("txnr"))?,
                code,
                text: data.get(3..).unwrap_or_default().trim_ascii(),
            }
        }
        b"serverclose" => ServerFrame::ServerClose,
        other => {
            return Err(RelpError::UnexpectedCommand(
                String::from_utf8_lossy(other).into_owned(),
            ))
        }
    };
    Ok(Some((frame, at)))
}

/// Reads decimal digits at `*at` and the separator after them (SP, or LF
/// which ends a frame without data). An SP is consumed; an LF is left for
/// the caller, who checks it as the trailer.
fn number(buffer: &[u8], at: &mut usize) -> Result<Option<(u64, u8)>, RelpError> {
    let start = *at;
    let mut value: u64 = 0;
    loop {
        let Some(&byte) = buffer.get(*at) else {
            return Ok(None);
        };
        match byte {
            b'0'..=b'9' if *at - start < MAX_DIGITS => {
                value = value * 10 + u64::from(byte - b'0');
                *at += 1;
            }
            b' ' if *at > start => {
                *at += 1;
                return Ok(Some((value, b' ')));
            }
            b'\n' if *at > start => return Ok(Some((value, b'\n'))),
            _ => return Err(RelpError::Malformed("bad number")),
        }
    }
}

/// Reads a command name (ASCII letters) and the SP after it.
fn token<'a>(buffer: &'a [u8], at: &mut usize) -> Result<Option<&'a [u8]>, RelpError> {
    let start = *at;
    loop {
        let Some(&byte) = buffer.get(*at) else {
            return Ok(None);
        };
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' if *at - start < 32 => *at += 1,
            b' ' if *at > start => {
                *at += 1;
                return Ok(Some(&buffer[start..*at - 1]));
            }
            _ => return Err(RelpError::Malformed("bad command")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(txnr: u32, command: &str, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame(&mut out, txnr, command, data);
        out
    }

    #[test]
    fn frames_are_written_as_librelp_expects() {
        assert_eq!(frame(2, "syslog", b"hello"), b"2 syslog 5 hello\n");
        assert_eq!(frame(7, "close", b""), b"7 close 0\n");
        assert_eq!(
            frame(1, "open", OPEN_OFFERS.as_bytes())
                .strip_prefix(b"1 open ".as_slice())
                .map(<[u8]>::len),
            Some(OPEN_OFFERS.len().to_string().len() + 1 + OPEN_OFFERS.len() + 1)
        );
    }

    #[test]
    fn responses_parse_and_partial_input_waits() {
        let data = "200 OK\nrelp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog";
        let answer = format!("1 rsp {} {data}\n", data.len());
        let answer = answer.as_bytes();
        let (parsed, used) = parse_frame(answer).expect("valid").expect("complete");
        assert_eq!(used, answer.len());
        let ServerFrame::Response { txnr, code, text } = parsed else {
            panic!("a response")
        };
        assert_eq!((txnr, code), (1, 200));
        assert!(text.starts_with(b"OK\nrelp_version=0"), "{text:?}");
        for cut in 0..answer.len() {
            assert_eq!(parse_frame(&answer[..cut]), Ok(None), "cut at {cut}");
        }
        let two = b"5 rsp 6 200 OK\n6 rsp 6 500 no\n";
        let (first, used) = parse_frame(two).expect("valid").expect("complete");
        assert_eq!(
            first,
            ServerFrame::Response {
                txnr: 5,
                code: 200,
                text: b"OK"
            }
        );
        let (second, _) = parse_frame(&two[used..]).expect("valid").expect("complete");
        assert!(matches!(
            second,
            ServerFrame::Response {
                txnr: 6,
                code: 500,
                ..
            }
        ));
        assert_eq!(
            parse_frame(b"0 serverclose 0\n"),
            Ok(Some((ServerFrame::ServerClose, 16)))
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_hang() {
        for bad in [
            &b"x rsp 6 200 OK\n"[..],
            b"1 rsp 6 200 OK!",
            b"1 syslog 2 hi\n",
            b"1 rsp 3 abc\n",
            b"1 rsp 99999999 ",
            b"1234567890 rsp 0\n",
            b"1 rsp 2x",
        ] {
            assert!(
                parse_frame(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn transaction_numbers_wrap() {
        assert_eq!(next_txnr(1), 2);
        assert_eq!(next_txnr(MAX_TXNR), 1);
    }
}
