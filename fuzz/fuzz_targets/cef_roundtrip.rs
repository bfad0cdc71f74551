//! Arbitrary strings in every mapped header and extension field, the agent
//! version and the portal URL: the encoded message must be one line, parse
//! as strict CEF, and give every field back (control characters aside).
#![no_main]

use libfuzzer_sys::fuzz_target;
// The same cases and expectations as the property tests.
use siem_agent::cef::cases::{encode_single, ActivityCase, AlertCase, CASE_STRINGS};
use siem_agent::cef::{Encoder, Mapping};
use siem_agent::syslog::{HeaderStyle, SyslogHeader};

type Input = ([String; CASE_STRINGS], String, String, [i64; 3], u64, bool);

fuzz_target!(|input: Input| {
    let (strings, version, portal, numbers, app_id, is_alert) = input;
    // Configuration never allows an empty version.
    let version = if version.is_empty() {
        "1".to_owned()
    } else {
        version
    };
    let header = SyslogHeader::new(HeaderStyle::Iso, None, 16).expect("valid header");
    let mut encoder = Encoder::new(&version, &portal, header, Mapping::Auto);
    let timestamp = numbers[0].rem_euclid(4_000_000_000_000);
    let message;
    let verdict = if is_alert {
        let mut strings = strings.to_vec();
        strings[1].push('t'); // a title, so the record is detected as an alert
        let case = AlertCase::from_strings(&strings, numbers, timestamp);
        message = encode_single(&mut encoder, &case.to_json()).unwrap_or_else(|why| panic!("{why}"));
        case.check(&message, &portal, &version)
    } else {
        let case = ActivityCase::from_strings(&strings, app_id, timestamp);
        message = encode_single(&mut encoder, &case.to_json()).unwrap_or_else(|why| panic!("{why}"));
        case.check(&message, &portal, &version)
    };
    if let Err(why) = verdict {
        panic!("{why}\nmessage: {message}");
    }
});
