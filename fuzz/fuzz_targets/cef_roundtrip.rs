//! Arbitrary strings in every mapped header and extension field, the agent
//! version and the portal URL: the encoded message must be one line, parse
//! as strict CEF, and give every field back (control characters aside).
#![no_main]

use libfuzzer_sys::fuzz_target;
use siem_agent::cef::{Mapping, Encoder};
use siem_agent::syslog::{HeaderStyle, SyslogHeader};

// The same cases and expectations as the property tests.
#[path = "../../tests/it/support/cases.rs"]
#[allow(dead_code)]
mod cases;

use cases::{encode_single, ActivityCase, AlertCase, CASE_STRINGS};

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
        message = encode_single(&mut encoder, &case.to_json());
        case.check(&message, &portal, &version)
    } else {
        let case = ActivityCase::from_strings(&strings, app_id, timestamp);
        message = encode_single(&mut encoder, &case.to_json());
        case.check(&message, &portal, &version)
    };
    if let Err(why) = verdict {
        panic!("{why}\nmessage: {message}");
    }
});
