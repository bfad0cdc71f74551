//! TCP and TLS delivery: lines go out in chunks (straight from the batch
//! with LF framing, re-framed otherwise), and a chunk's lines are
//! confirmed once the receiver's TCP stack has acknowledged its last byte
//! (see [`crate::sink::outq`]).

use std::io;

use super::link::{message, would_block, Failure, Link};
use super::{Chunk, ChunkSource, Loop, Mark, ACK_POLL_MIN, CHUNK_BYTES};
use crate::sink::outq;
use crate::syslog::{write_octet_counted, Framing};

impl Loop {
    /// Writes chunks on TCP or TLS until the socket is full or nothing is
    /// left, leaving a mark behind each chunk that is completely out.
    pub(super) fn deliver_stream(&mut self) -> Result<(), Failure> {
        loop {
            if self.chunk.is_none() && !self.next_chunk() {
                return Ok(());
            }
            if !self.write_chunk()? {
                return Ok(());
            }
            let (Some(link), Some(chunk)) = (&self.link, self.chunk.take()) else {
                return Ok(());
            };
            self.marks.push_back(Mark {
                position: link.written,
                seq: chunk.seq,
                end: chunk.end,
            });
            self.ack_poll = ACK_POLL_MIN;
        }
    }

    /// Writes the rest of the current chunk (from its batch or from
    /// `frame`) and any TLS records it left; true when all of it is in the
    /// socket, false when the socket is full for now.
    pub(super) fn write_chunk(&mut self) -> Result<bool, Failure> {
        let (Some(link), Some(chunk)) = (&mut self.link, &mut self.chunk) else {
            return Ok(false);
        };
        let failed = |link: &Link, e: io::Error| {
            Failure::send(format!("{} ({}): {e}", self.plan.target(), link.address))
        };
        while chunk.done < chunk.len {
            if !link.writable {
                return Ok(false);
            }
            let data = match chunk.source {
                ChunkSource::Frame => &self.frame[chunk.done..chunk.len],
                ChunkSource::Batch { start } => {
                    let Some(front) = self.pending.front() else {
                        return Ok(false);
                    };
                    let index =
                        usize::try_from(chunk.seq.wrapping_sub(front.seq)).unwrap_or(usize::MAX);
                    let Some(pending) = self.pending.get(index) else {
                        return Ok(false);
                    };
                    &pending.batch.bytes[start + chunk.done..start + chunk.len]
                }
            };
            match link.write(data) {
                Ok(n) => {
                    chunk.done += n;
                    if n > 0 {
                        self.stuck_since.get_or_insert_with(std::time::Instant::now);
                    }
                }
                Err(e) if would_block(&e) => return Ok(false),
                Err(e) => return Err(failed(link, e)),
            }
        }
        link.flush().map_err(|e| failed(link, e))
    }

    /// Prepares the next chunk; false when every line has been handed over.
    pub(super) fn next_chunk(&mut self) -> bool {
        let Some(index) = self
            .pending
            .iter()
            .position(|p| p.framed < p.batch.bytes.len())
        else {
            return false;
        };
        let plain_lf = self.plan.framing == Framing::Lf && self.plan.max_message.is_none();
        let pending = &mut self.pending[index];
        let start = pending.framed;
        if plain_lf {
            let end = pending.batch.bytes.len();
            pending.framed = end;
            self.chunk = Some(Chunk {
                seq: pending.seq,
                end,
                source: ChunkSource::Batch { start },
                len: end - start,
                done: 0,
            });
            return true;
        }
        let seq = pending.seq;
        self.frame.clear();
        let mut at = start;
        while at < self.pending[index].batch.bytes.len() && self.frame.len() < CHUNK_BYTES {
            let bytes = &self.pending[index].batch.bytes;
            let end = memchr::memchr(b'\n', &bytes[at..]).map_or(bytes.len(), |n| at + n + 1);
            let message = message(&bytes[at..end], self.plan.max_message, &self.health);
            match self.plan.framing {
                Framing::Lf => {
                    self.frame.extend_from_slice(message);
                    self.frame.push(b'\n');
                }
                Framing::OctetCounting => write_octet_counted(&mut self.frame, message),
            }
            at = end;
        }
        self.pending[index].framed = at;
        self.chunk = Some(Chunk {
            seq,
            end: at,
            source: ChunkSource::Frame,
            len: self.frame.len(),
            done: 0,
        });
        true
    }

    /// Confirms every mark the receiver's TCP stack has acknowledged.
    pub(super) fn check_acknowledged(&mut self) -> Result<(), Failure> {
        if self.marks.is_empty() {
            return Ok(());
        }
        let Some(link) = &mut self.link else {
            return Ok(());
        };
        let written = link.written;
        let address = link.address;
        let Some(stream) = link.tcp() else {
            return Ok(());
        };
        let queued = outq::unacknowledged(stream)
            .map_err(|e| Failure::send(format!("{address}: send queue: {e}")))?;
        let acknowledged = written.saturating_sub(queued);
        if queued == 0 {
            self.stuck_since = None;
        }
        let mut moved = false;
        while let Some(mark) = self.marks.front() {
            if mark.position > acknowledged {
                break;
            }
            let (seq, end) = (mark.seq, mark.end);
            self.marks.pop_front();
            self.confirm(seq, end);
            moved = true;
        }
        if moved {
            if queued > 0 {
                // The receiver takes bytes: what waits now waits from here.
                self.stuck_since = Some(std::time::Instant::now());
            }
            self.ack_poll = ACK_POLL_MIN;
            self.release();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::thread::JoinHandle;
    use std::time::Duration;

    use super::super::testing::{plan, Running, PATIENCE};
    use crate::simulator::tls::TestPki;
    use crate::sink::tls::{TlsClient, TlsOptions};
    use crate::sink::{LinkState, Protocol};
    use crate::syslog::Framing;

    /// A receiver that takes one connection and returns all it read.
    fn receive_one(listener: TcpListener) -> JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("a connection");
            stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
            let mut bytes = Vec::new();
            stream.read_to_end(&mut bytes).expect("read to the end");
            bytes
        })
    }

    fn listener() -> (TcpListener, u16) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        (listener, port)
    }

    #[test]
    fn tcp_lines_arrive_in_order_and_each_batch_comes_back_confirmed() {
        let (listener, port) = listener();
        let received = receive_one(listener);
        let writer = Running::start(plan(Protocol::Tcp, port, Framing::Lf));
        writer.send(1, &["one", "two"]);
        writer.send(2, &["three"]);
        assert_eq!(writer.confirmed().ticket, 1);
        assert_eq!(writer.confirmed().ticket, 2);
        assert_eq!(writer.count(|h| &h.counters.confirmed), 3);
        assert_eq!(writer.count(|h| &h.counters.confirmed_bytes), 14);
        writer.finish().expect("clean end");
        assert_eq!(received.join().expect("receiver"), b"one\ntwo\nthree\n");
    }

    #[test]
    fn octet_counting_frames_every_message_and_cuts_long_ones() {
        let (listener, port) = listener();
        let received = receive_one(listener);
        let mut octets = plan(Protocol::Tcp, port, Framing::OctetCounting);
        octets.max_message = Some(480);
        let writer = Running::start(octets);
        let long = "x".repeat(500);
        writer.send(1, &["hello", "", &long]);
        assert_eq!(writer.confirmed().ticket, 1);
        assert_eq!(writer.count(|h| &h.counters.truncated), 1);
        writer.finish().expect("clean end");
        let expected = format!("5 hello0 480 {}", "x".repeat(480));
        assert_eq!(
            String::from_utf8(received.join().expect("receiver")).expect("text"),
            expected
        );
    }

    #[test]
    fn tls_lines_arrive_after_the_handshake() {
        let (listener, port) = listener();
        let pki = TestPki::generate().expect("pki");
        let server_config = pki.server_config().expect("server config");
        let received = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("a connection");
            stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
            let session = rustls::ServerConnection::new(Arc::clone(&server_config)).expect("tls");
            let mut tls = rustls::StreamOwned::new(session, stream);
            let mut bytes = Vec::new();
            // The writer ends with close_notify, which reads as the end.
            tls.read_to_end(&mut bytes).expect("read to the end");
            bytes
        });
        let dir = crate::test_support::scratch_path("writer-tls");
        std::fs::create_dir_all(&dir).expect("dir");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, pki.ca_pem()).expect("write");
        let mut tls = plan(Protocol::Tls, port, Framing::Lf);
        tls.host = "localhost".to_owned();
        tls.tls = Some(
            TlsClient::build(
                "localhost",
                &TlsOptions {
                    ca_file: Some(ca),
                    ..TlsOptions::default()
                },
            )
            .expect("client"),
        );
        let writer = Running::start(tls);
        writer.send(1, &["secret one", "secret two"]);
        assert_eq!(writer.confirmed().ticket, 1);
        writer.finish().expect("clean end");
        assert_eq!(
            received.join().expect("receiver"),
            b"secret one\nsecret two\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_receiver_that_is_down_is_a_connection_error_until_it_listens() {
        // A port nothing listens on (bound, read, released: nothing else
        // on this machine takes loopback ports at random in between).
        let (listener, port) = listener();
        drop(listener);
        let writer = Running::start(plan(Protocol::Tcp, port, Framing::Lf));
        writer.send(1, &["waits"]);
        let error = writer.wait_for_state(LinkState::ConnectionError);
        assert!(
            error.as_deref().is_some_and(|e| e.contains("127.0.0.1")),
            "{error:?}"
        );
        assert!(
            writer
                .confirmed_within(Duration::from_millis(200))
                .is_none(),
            "nothing is confirmed while the receiver is down"
        );
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("the port again");
        let received = receive_one(listener);
        assert_eq!(writer.confirmed().ticket, 1);
        assert_eq!(writer.health.state().0, LinkState::Connected);
        writer.finish().expect("clean end");
        assert_eq!(received.join().expect("receiver"), b"waits\n");
    }

    /// The next connection on `listener`, within [`PATIENCE`].
    fn accept_within(listener: &TcpListener) -> TcpStream {
        listener.set_nonblocking(true).expect("non-blocking");
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).expect("blocking");
                    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
                    return stream;
                }
                Err(_) => {
                    assert!(std::time::Instant::now() < deadline, "no connection");
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }

    #[test]
    fn lines_a_receiver_reset_unread_are_sent_again() {
        let (listener, port) = listener();
        let writer = Running::start(plan(Protocol::Tcp, port, Framing::Lf));
        writer.send(1, &["one", "two", "three"]);
        let first = accept_within(&listener);
        // The receiver's kernel acknowledges the lines, so they are
        // confirmed; its application never reads them, and closing with
        // bytes unread throws them away with a reset.
        assert_eq!(writer.confirmed().ticket, 1);
        drop(first);
        let mut second = accept_within(&listener);
        writer.send(2, &["four"]);
        assert_eq!(writer.confirmed().ticket, 2);
        assert_eq!(writer.count(|h| &h.counters.resent), 3);
        // Counted once, when first confirmed.
        assert_eq!(writer.count(|h| &h.counters.confirmed), 4);
        writer.finish().expect("clean end");
        let mut bytes = Vec::new();
        second.read_to_end(&mut bytes).expect("read");
        assert_eq!(String::from_utf8_lossy(&bytes), "one\ntwo\nthree\nfour\n");
    }

    #[test]
    fn lines_a_receiver_reset_unread_while_the_writer_closes_are_sent_again() {
        let (listener, port) = listener();
        let writer = Running::start(plan(Protocol::Tcp, port, Framing::Lf));
        let health = Arc::clone(&writer.health);
        writer.send(1, &["last", "lines"]);
        let first = accept_within(&listener);
        assert_eq!(writer.confirmed().ticket, 1);
        let finishing = std::thread::spawn(move || writer.finish());
        // Wait for the writer's end of stream without reading the lines.
        let mut first = mio::net::TcpStream::from_std(first);
        let mut poll = mio::Poll::new().expect("poll");
        poll.registry()
            .register(&mut first, mio::Token(0), mio::Interest::READABLE)
            .expect("register");
        let mut events = mio::Events::with_capacity(4);
        let deadline = std::time::Instant::now() + PATIENCE;
        while !events.iter().any(mio::event::Event::is_read_closed) {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never closed"
            );
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .expect("poll");
        }
        drop(first);
        let mut second = accept_within(&listener);
        let mut bytes = Vec::new();
        second.read_to_end(&mut bytes).expect("read");
        drop(second);
        finishing
            .join()
            .expect("the writer does not panic")
            .expect("clean end");
        assert_eq!(String::from_utf8_lossy(&bytes), "last\nlines\n");
        assert_eq!(
            health
                .counters
                .resent
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
    }

    #[test]
    fn a_receiver_that_hangs_up_is_noticed_and_the_next_connection_carries_the_lines() {
        let (listener, port) = listener();
        let writer = Running::start(plan(Protocol::Tcp, port, Framing::Lf));
        // The first connection is closed at once by the receiver; the
        // lines written into it may or may not have been acknowledged, so
        // the test only asks that the writer notices and reconnects.
        let (first, _) = listener.accept().expect("a connection");
        writer.wait_for_state(LinkState::Connected);
        drop(first);
        writer.send(1, &["after the close"]);
        let mut second = accept_within(&listener);
        assert_eq!(writer.confirmed().ticket, 1);
        assert_eq!(writer.count(|h| &h.counters.reconnects), 1);
        let (state, last_error, _) = writer.health.state();
        assert_eq!(state, LinkState::Connected);
        assert!(last_error.is_some(), "the failure is remembered");
        writer.finish().expect("clean end");
        let mut bytes = Vec::new();
        second.read_to_end(&mut bytes).expect("read");
        assert!(
            bytes.ends_with(b"after the close\n"),
            "{:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
}
