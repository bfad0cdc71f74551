//! Arbitrary strings in every mapped column of a `CloudAppEvents` row, any
//! app id, times across the range: the encoded message must be one line,
//! parse as strict CEF, and give every field back in the spec's order
//! (control characters aside), including the `msg` and `suser` rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siem_agent::cef::cases::encode_single;
use siem_agent::cef::graph_cases::{CloudAppEventCase, GRAPH_CASE_STRINGS};
use siem_agent::cef::{Encoder, Mapping};
use siem_agent::syslog::{HeaderStyle, SyslogHeader};

type Input = ([String; GRAPH_CASE_STRINGS], u64, (i64, u16), bool);

fuzz_target!(|input: Input| {
    let (strings, app_id, time, detect) = input;
    let header = SyslogHeader::new(HeaderStyle::Iso, None, 16).expect("valid header");
    let mapping = if detect {
        Mapping::Auto
    } else {
        Mapping::CloudAppEvents
    };
    let mut encoder = Encoder::new("1.0", "https://portal.example", header, mapping);
    let case = CloudAppEventCase::from_strings(&strings, app_id, time);
    let message = encode_single(&mut encoder, &case.to_json()).unwrap_or_else(|why| panic!("{why}"));
    if let Err(why) = case.check(&message, "1.0") {
        panic!("{why}\nmessage: {message}");
    }
});
