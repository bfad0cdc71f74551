//! RELP delivery: `syslog` frames up to the window, each line confirmed by
//! the receiver's `rsp 200` (the protocol's framing and parsing are
//! [`crate::sink::relp`]'s).

use super::link::{message, Failure, Phase};
use super::{Chunk, Loop, RelpInFlight};
use crate::sink::relp::{self, ServerFrame};

impl Loop {
    pub(super) fn on_relp_answers(&mut self) -> Result<(), Failure> {
        let mut used = 0;
        loop {
            let frame = relp::parse_frame(&self.read_buffer[used..])
                .map_err(|e| Failure::send(e.to_string()))?;
            let Some((frame, length)) = frame else { break };
            used += length;
            let opening = self
                .link
                .as_ref()
                .is_some_and(|link| matches!(link.phase, Phase::RelpOpening));
            // Only a refusal copies the answer's text, into its message.
            let txnr = match frame {
                ServerFrame::ServerClose => {
                    return Err(Failure::send("the receiver closed the RELP session"));
                }
                ServerFrame::Response { txnr, code, text } => {
                    let text = || String::from_utf8_lossy(text);
                    if opening && (txnr != 1 || code != 200) {
                        return Err(Failure::connect(format!(
                            "RELP open refused: {code} {}",
                            text()
                        )));
                    }
                    if code != 200 {
                        return Err(Failure::send(format!(
                            "the receiver refused a message: {code} {}",
                            text()
                        )));
                    }
                    txnr
                }
            };
            let Some(link) = &mut self.link else { break };
            if opening {
                link.phase = Phase::Ready;
                self.on_ready();
                continue;
            }
            let Some(entry) = self.relp_inflight.iter_mut().find(|m| m.txnr == txnr) else {
                // The answer to our `close`, or a stray: nothing to confirm.
                continue;
            };
            entry.answered = true;
            // The receiver is answering: the wait starts over.
            self.relp_answer_due = Some(std::time::Instant::now() + self.plan.relp_answer_timeout);
        }
        self.read_buffer.drain(..used);
        while self.relp_inflight.front().is_some_and(|m| m.answered) {
            if let Some(done) = self.relp_inflight.pop_front() {
                self.confirm(done.seq, done.end);
            }
        }
        if self.relp_inflight.is_empty() {
            self.relp_answer_due = None;
        }
        self.release();
        Ok(())
    }

    /// Fails the connection when frames have waited too long for an
    /// answer.
    pub(super) fn check_relp_answers(&self, now: std::time::Instant) -> Result<(), Failure> {
        match self.relp_answer_due {
            Some(due) if now >= due && !self.relp_inflight.is_empty() => {
                Err(Failure::connect(format!(
                    "no RELP answer for {} s to {} message(s) sent",
                    self.plan.relp_answer_timeout.as_secs(),
                    self.relp_inflight.len()
                )))
            }
            _ => Ok(()),
        }
    }

    /// Frames RELP `syslog` messages up to the window, once the previous
    /// frames are all written.
    pub(super) fn frame_relp(&mut self) {
        if self.chunk.is_some() {
            return;
        }
        self.frame.clear();
        while self.relp_inflight.len() < self.plan.relp_window.max(1) {
            let Some((index, start, end)) = self.next_line() else {
                break;
            };
            let Some(link) = &mut self.link else { return };
            let txnr = link.txnr;
            link.txnr = relp::next_txnr(txnr);
            let line = &self.pending[index].batch.bytes[start..end];
            let message = message(line, self.plan.max_message, &self.health);
            relp::write_frame(&mut self.frame, txnr, "syslog", message);
            let pending = &mut self.pending[index];
            pending.framed = end;
            if self.relp_inflight.is_empty() {
                self.relp_answer_due =
                    Some(std::time::Instant::now() + self.plan.relp_answer_timeout);
            }
            self.relp_inflight.push_back(RelpInFlight {
                txnr,
                seq: pending.seq,
                end,
                answered: false,
            });
        }
        if !self.frame.is_empty() {
            self.chunk = Some(Chunk::relp_frames(self.frame.len()));
        }
    }

    /// Writes the framed RELP bytes in `frame`, and frames more while the
    /// window has room.
    pub(super) fn write_frames(&mut self) -> Result<(), Failure> {
        while self.chunk.is_some() && self.write_chunk()? {
            self.chunk = None;
            if !self
                .link
                .as_ref()
                .is_some_and(|l| matches!(l.phase, Phase::Ready))
            {
                break;
            }
            self.frame_relp();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};
    use std::thread::JoinHandle;
    use std::time::Duration;

    use crossbeam_channel::Receiver;

    use super::super::testing::{plan, Running, PATIENCE};
    use crate::sink::{LinkState, Protocol};
    use crate::syslog::Framing;

    /// A frame the client sent: transaction number, command, data.
    type ClientFrame = (u32, String, Vec<u8>);

    /// Reads one client frame (`TXNR SP COMMAND SP DATALEN [SP DATA] LF`);
    /// `None` at the end of the stream.
    fn read_frame(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<ClientFrame> {
        loop {
            if let Some(frame) = parse(buffer) {
                return Some(frame);
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn parse(buffer: &mut Vec<u8>) -> Option<ClientFrame> {
        let text = buffer.clone();
        let mut fields = text.splitn(3, |&b| b == b' ');
        let txnr: u32 = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
        let command = String::from_utf8(fields.next()?.to_vec()).ok()?;
        let rest = fields.next()?;
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let length: usize = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
        let data_start = if length == 0 { digits } else { digits + 1 };
        let end = data_start + length;
        if rest.len() <= end {
            return None;
        }
        assert_eq!(rest[end], b'\n', "a frame ends with LF");
        let data = rest[data_start..end].to_vec();
        let used = text.len() - rest.len() + end + 1;
        buffer.drain(..used);
        Some((txnr, command, data))
    }

    fn answer(stream: &mut TcpStream, txnr: u32, code: u16, text: &str) {
        let body = format!("{code} {text}");
        let frame = format!("{txnr} rsp {} {body}\n", body.len());
        stream.write_all(frame.as_bytes()).expect("answer");
    }

    /// A RELP receiver for one connection: opens the session, then for
    /// each `syslog` frame waits for a go from `answers` (the code to
    /// answer with) and records the message. Returns the messages.
    fn relp_server(listener: TcpListener, answers: Receiver<u16>) -> JoinHandle<Vec<String>> {
        std::thread::spawn(move || serve(&listener, &answers))
    }

    fn serve(listener: &TcpListener, answers: &Receiver<u16>) -> Vec<String> {
        let (mut stream, _) = listener.accept().expect("a connection");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let mut buffer = Vec::new();
        let mut messages = Vec::new();
        while let Some((txnr, command, data)) = read_frame(&mut stream, &mut buffer) {
            match command.as_str() {
                "open" => answer(
                    &mut stream,
                    txnr,
                    200,
                    "OK\nrelp_version=0\ncommands=syslog",
                ),
                "syslog" => {
                    let code = answers.recv_timeout(PATIENCE).unwrap_or(200);
                    if code == 200 {
                        messages.push(String::from_utf8(data).expect("text"));
                    }
                    answer(
                        &mut stream,
                        txnr,
                        code,
                        if code == 200 { "OK" } else { "NO" },
                    );
                }
                "close" => {
                    answer(&mut stream, txnr, 200, "OK");
                    break;
                }
                other => panic!("unexpected command {other}"),
            }
        }
        messages
    }

    #[test]
    fn a_line_is_confirmed_by_its_answer_not_by_its_sending() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (go, answers) = crossbeam_channel::unbounded();
        let server = relp_server(listener, answers);
        let writer = Running::start(plan(Protocol::Relp, port, Framing::Lf));
        writer.send(3, &["alpha", "beta"]);
        writer.wait_for_state(LinkState::Connected);
        assert!(
            writer
                .confirmed_within(Duration::from_millis(300))
                .is_none(),
            "confirmed before the receiver answered"
        );
        go.send(200).expect("server");
        assert!(
            writer
                .confirmed_within(Duration::from_millis(300))
                .is_none(),
            "confirmed with one of two answers"
        );
        go.send(200).expect("server");
        assert_eq!(writer.confirmed().ticket, 3);
        assert_eq!(writer.count(|h| &h.counters.confirmed), 2);
        writer.finish().expect("clean end");
        assert_eq!(server.join().expect("server"), ["alpha", "beta"]);
    }

    #[test]
    fn a_receiver_that_stops_answering_is_a_connection_error_not_a_silent_stall() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        // Opens the session, then reads every frame and answers none.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut buffer = Vec::new();
                while let Some((txnr, command, _)) = read_frame(&mut stream, &mut buffer) {
                    if command == "open" {
                        answer(
                            &mut stream,
                            txnr,
                            200,
                            "OK\nrelp_version=0\ncommands=syslog",
                        );
                    }
                }
            }
        });
        let writer = Running::start(plan(Protocol::Relp, port, Framing::Lf));
        writer.send(1, &["unanswered"]);
        let error = writer.wait_for_state(LinkState::ConnectionError);
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains("no RELP answer")),
            "{error:?}"
        );
        assert_eq!(writer.count(|h| &h.counters.confirmed), 0);
    }

    #[test]
    fn a_receiver_that_refuses_every_message_gets_ever_slower_reconnects() {
        // Opens each session and refuses the first message. Before the
        // fix, every successful open reset the backoff, and the writer
        // reconnected and resent every 0.1-0.2 s forever.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut buffer = Vec::new();
                while let Some((txnr, command, _)) = read_frame(&mut stream, &mut buffer) {
                    match command.as_str() {
                        "open" => answer(
                            &mut stream,
                            txnr,
                            200,
                            "OK\nrelp_version=0\ncommands=syslog",
                        ),
                        _ => {
                            answer(&mut stream, txnr, 500, "NO");
                            break;
                        }
                    }
                }
            }
        });
        let writer = Running::start(plan(Protocol::Relp, port, Framing::Lf));
        writer.send(1, &["refused"; 10]);
        let deadline = std::time::Instant::now() + PATIENCE;
        while writer.count(|h| &h.counters.failures_in_a_row) < 4 {
            assert!(
                std::time::Instant::now() < deadline,
                "failures never added up: {} in a row after {} reconnects",
                writer.count(|h| &h.counters.failures_in_a_row),
                writer.count(|h| &h.counters.reconnects)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(writer.count(|h| &h.counters.reconnects) >= 3);
        assert_eq!(writer.count(|h| &h.counters.confirmed), 0);
    }

    #[test]
    fn a_refused_message_ends_the_session_and_is_sent_again() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (go, answers) = crossbeam_channel::unbounded();
        let server = std::thread::spawn(move || {
            // First session: the first message is refused.
            let first = serve(&listener, &answers);
            // Second session: everything is taken.
            let second = serve(&listener, &answers);
            (first, second)
        });
        for code in [500, 200, 200, 200, 200] {
            go.send(code).expect("server");
        }
        let writer = Running::start(plan(Protocol::Relp, port, Framing::Lf));
        writer.send(1, &["one", "two"]);
        assert_eq!(writer.confirmed().ticket, 1);
        let (_, last_error, _) = writer.health.state();
        assert!(
            last_error.as_deref().is_some_and(|e| e.contains("refused")),
            "{last_error:?}"
        );
        assert!(writer.count(|h| &h.counters.resent) >= 1);
        assert_eq!(writer.count(|h| &h.counters.reconnects), 1);
        writer.finish().expect("clean end");
        let (first, second) = server.join().expect("server");
        // The receiver may have taken "two" in the first session before the
        // writer gave it up: RELP delivers at least once, never less.
        assert!(!first.contains(&"one".to_owned()), "{first:?}");
        assert_eq!(
            second,
            ["one", "two"],
            "everything from the refused line on"
        );
    }
}
