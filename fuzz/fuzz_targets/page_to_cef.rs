//! Arbitrary bytes as an input page: no panic, and every message emitted is
//! one line of strict CEF.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siem_agent::cef::{strict, Mapping, Encoder};
use siem_agent::parse::{InputReader, Item};
use siem_agent::syslog::{HeaderStyle, SyslogHeader};

fuzz_target!(|data: &[u8]| {
    let header = SyslogHeader::new(HeaderStyle::Rfc5424, Some("fuzz".into()), 16).expect("valid");
    let mut encoder = Encoder::new("1.0", "https://portal.example", header, Mapping::Auto);
    let mut message = Vec::new();
    InputReader::new()
        .read(data, |item| {
            if let Item::Record(record) = item {
                message.clear();
                encoder.encode(record, &mut message);
                let text = std::str::from_utf8(&message).expect("output is UTF-8");
                assert!(
                    !text.contains(['\n', '\r']),
                    "message spans lines: {text:?}"
                );
                let cef = strict::strip_syslog_header(text).expect("has CEF");
                if let Err(error) = strict::parse(cef) {
                    panic!("not strict CEF ({error}): {text:?}");
                }
            }
        })
        .expect("reading from memory");
});
