//! UDP delivery: one datagram per line, each confirmed once sent (UDP has
//! no acknowledgements); a refused datagram is counted as dropped and the
//! link shows a send error until a send succeeds again.

use std::io;

use super::link::{message, would_block, Failure, Link, Socket};
use super::Loop;
use crate::sink::{LinkState, SinkHealth};

impl Loop {
    pub(super) fn deliver_udp(&mut self) -> Result<(), Failure> {
        while let Some((index, start, end)) = self.next_line() {
            let Some(Link {
                socket: Socket::Udp(socket),
                writable,
                ..
            }) = &mut self.link
            else {
                return Ok(());
            };
            if !*writable {
                return Ok(());
            }
            let line = &self.pending[index].batch.bytes[start..end];
            let message = message(line, self.plan.max_message, &self.health);
            // An earlier datagram's ICMP error is reported on a later send,
            // which then did not go out: try it once more.
            let mut sent = socket.send(message);
            if matches!(&sent, Err(e) if e.kind() == io::ErrorKind::ConnectionRefused) {
                sent = socket.send(message);
            }
            match sent {
                Ok(_) => {
                    if self.udp_failing {
                        self.udp_failing = false;
                        if self.health.set(LinkState::Connected, None) {
                            tracing::info!(
                                "{}: syslog: {}: UDP sends succeed again",
                                self.label,
                                self.plan.target()
                            );
                        }
                    }
                }
                Err(e) if would_block(&e) => {
                    *writable = false;
                    return Ok(());
                }
                Err(e) => {
                    SinkHealth::count(&self.health.counters.dropped, 1);
                    // The error is formatted for the status (and logged)
                    // once per run of failures, not for every datagram.
                    let first = !self.udp_failing;
                    self.udp_failing = true;
                    if first
                        && self
                            .health
                            .set(LinkState::SendError, Some(format!("UDP: {e}")))
                    {
                        tracing::warn!(
                            "{}: syslog: {}: {}: {e}; UDP datagrams are being lost",
                            self.label,
                            LinkState::SendError.describe(),
                            self.plan.target()
                        );
                    }
                }
            }
            let seq = self.pending[index].seq;
            self.pending[index].framed = end;
            self.confirm(seq, end);
            self.release();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::time::Duration;

    use super::super::testing::{plan, Running};
    use crate::sink::{LinkState, Protocol};
    use crate::syslog::Framing;

    #[test]
    fn each_line_is_one_datagram_without_its_lf_and_long_ones_are_cut() {
        let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
        receiver
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let port = receiver.local_addr().expect("address").port();
        let mut udp = plan(Protocol::Udp, port, Framing::Lf);
        udp.max_message = Some(480);
        let writer = Running::start(udp);
        let long = "é".repeat(300); // 600 bytes: cut to 480 on a character boundary
        writer.send(7, &["first", &long, "third"]);

        let mut datagrams = Vec::new();
        let mut buffer = [0u8; 2048];
        for _ in 0..3 {
            let n = receiver.recv(&mut buffer).expect("a datagram");
            datagrams.push(String::from_utf8(buffer[..n].to_vec()).expect("whole characters"));
        }
        assert_eq!(
            datagrams,
            ["first".to_owned(), "é".repeat(240), "third".to_owned()]
        );
        assert_eq!(writer.confirmed().ticket, 7);
        assert_eq!(writer.count(|h| &h.counters.confirmed), 3);
        assert_eq!(writer.count(|h| &h.counters.truncated), 1);
        assert_eq!(writer.health.state().0, LinkState::Connected);
        writer.finish().expect("clean end");
    }
}
