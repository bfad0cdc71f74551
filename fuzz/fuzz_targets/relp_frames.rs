//! RELP answers from a server are untrusted input to the writer.
//!
//! Properties: any byte string either parses into frames that each use a
//! positive number of bytes within the input, or stops with "need more"
//! or an error, never a panic; and an answer we frame ourselves from the
//! input's bytes (as a `rsp 200` with that text) parses back to the same
//! transaction number and code, whole, even when split at any point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siem_agent::sink::relp::{parse_frame, write_frame, ServerFrame, MAX_TXNR};

fuzz_target!(|data: &[u8]| {
    // Arbitrary bytes: a sequence of frames, then a stop.
    let mut at = 0;
    while let Ok(Some((_, used))) = parse_frame(&data[at..]) {
        assert!(used > 0 && at + used <= data.len(), "a frame uses bytes it has");
        at += used;
    }

    // A well-formed answer carrying the input as its text.
    let txnr = data
        .iter()
        .take(4)
        .fold(0u32, |n, &b| n.wrapping_mul(251).wrapping_add(u32::from(b)))
        % MAX_TXNR
        + 1;
    let mut text = b"200 OK ".to_vec();
    text.extend(data.iter().take(4000));
    let mut frame = Vec::new();
    write_frame(&mut frame, txnr, "rsp", &text);
    let (parsed, used) = parse_frame(&frame)
        .expect("our own frame is valid")
        .expect("and complete");
    assert_eq!(used, frame.len());
    match parsed {
        ServerFrame::Response { txnr: got, code, .. } => {
            assert_eq!((got, code), (txnr, 200));
        }
        ServerFrame::ServerClose => panic!("a response parsed as serverclose"),
    }
    // Any cut short of the end asks for more bytes; never a wrong frame.
    let cut = data.first().map_or(0, |&b| usize::from(b)) % frame.len();
    assert_eq!(parse_frame(&frame[..cut]), Ok(None));
});
