//! One connection to the receiver: the socket (TCP or UDP), the TLS
//! session over it, the phase it is in, and the byte counts the
//! confirmation of TCP and TLS lines depends on.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::{TcpStream, UdpSocket};

use super::READ_BYTES;
use crate::sink::{relp, LinkState, SinkHealth, CONNECT_TIMEOUT};
use crate::syslog::truncate_message;

pub(super) enum Phase {
    /// TCP connect in progress; `rest` are the addresses still to try.
    Connecting { rest: Vec<SocketAddr> },
    /// TLS handshake in progress.
    Handshaking,
    /// RELP `open` sent, answer awaited.
    RelpOpening,
    /// Delivering.
    Ready,
}

pub(super) enum Socket {
    Tcp(TcpStream),
    Udp(UdpSocket),
}

/// One connection to the receiver.
pub(super) struct Link {
    pub(super) socket: Socket,
    pub(super) tls: Option<rustls::ClientConnection>,
    pub(super) phase: Phase,
    pub(super) deadline: Instant,
    pub(super) address: SocketAddr,
    /// The socket can take more bytes (until the next `WouldBlock`).
    pub(super) writable: bool,
    /// Bytes written to the socket on this connection (ciphertext for TLS).
    pub(super) written: u64,
    /// Next RELP transaction number.
    pub(super) txnr: u32,
}

/// Why a connection is given up.
pub(super) struct Failure {
    pub(super) state: LinkState,
    pub(super) message: String,
}

impl Failure {
    pub(super) fn connect(message: impl Into<String>) -> Self {
        Self {
            state: LinkState::ConnectionError,
            message: message.into(),
        }
    }

    pub(super) fn send(message: impl Into<String>) -> Self {
        Self {
            state: LinkState::SendError,
            message: message.into(),
        }
    }
}

/// The message of a line: without its LF, cut to the size limit (and
/// counted when cut).
pub(super) fn message<'a>(line: &'a [u8], max: Option<usize>, health: &SinkHealth) -> &'a [u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    match max {
        Some(max) if line.len() > max => {
            SinkHealth::count(&health.counters.truncated, 1);
            truncate_message(line, max)
        }
        _ => line,
    }
}

pub(super) fn would_block(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::WouldBlock
}

impl Link {
    /// A new connection in `phase`. A UDP socket can send at once; a TCP
    /// connect has `CONNECT_TIMEOUT` to finish (with its handshakes).
    pub(super) fn new(socket: Socket, address: SocketAddr, phase: Phase) -> Self {
        let udp = matches!(socket, Socket::Udp(_));
        Self {
            socket,
            tls: None,
            phase,
            deadline: Instant::now() + CONNECT_TIMEOUT,
            address,
            writable: udp,
            written: 0,
            txnr: 1,
        }
    }

    pub(super) fn tcp(&mut self) -> Option<&mut TcpStream> {
        match &mut self.socket {
            Socket::Tcp(stream) => Some(stream),
            Socket::Udp(_) => None,
        }
    }

    /// Writes pending TLS records; true when none are left.
    pub(super) fn flush(&mut self) -> io::Result<bool> {
        let Some(tls) = &mut self.tls else {
            return Ok(true);
        };
        let Socket::Tcp(stream) = &mut self.socket else {
            return Ok(true);
        };
        while tls.wants_write() {
            match tls.write_tls(stream) {
                Ok(n) => self.written += n as u64,
                Err(e) if would_block(&e) => {
                    self.writable = false;
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Hands bytes to the connection; returns how many it took, or
    /// `WouldBlock` when it can take none now.
    pub(super) fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.tls.is_none() {
            let Socket::Tcp(stream) = &mut self.socket else {
                return Err(io::Error::other("not a stream"));
            };
            return match stream.write(data) {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "socket took nothing",
                )),
                Ok(n) => {
                    self.written += n as u64;
                    Ok(n)
                }
                Err(e) => {
                    if would_block(&e) {
                        self.writable = false;
                    }
                    Err(e)
                }
            };
        }
        for _ in 0..2 {
            let taken = match &mut self.tls {
                Some(tls) => tls.writer().write(data)?,
                None => 0,
            };
            let flushed = self.flush()?;
            if taken > 0 {
                return Ok(taken);
            }
            if !flushed {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the TLS session takes no more data",
        ))
    }

    /// Reads what the receiver sent; plaintext goes to `into`. `Ok(false)`
    /// means the receiver closed the connection.
    pub(super) fn read(&mut self, into: &mut Vec<u8>) -> Result<bool, String> {
        let mut scratch = [0u8; READ_BYTES];
        loop {
            match (&mut self.socket, &mut self.tls) {
                (Socket::Tcp(stream), None) => match stream.read(&mut scratch) {
                    Ok(0) => return Ok(false),
                    Ok(n) => {
                        if into.len() + n > relp::MAX_RESPONSE_FRAME * 4 {
                            return Err("the receiver sends more than it should".into());
                        }
                        into.extend_from_slice(&scratch[..n]);
                    }
                    Err(e) if would_block(&e) => return Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.to_string()),
                },
                (Socket::Tcp(stream), Some(tls)) => {
                    match tls.read_tls(stream) {
                        Ok(0) => return Ok(false),
                        Ok(_) => {}
                        Err(e) if would_block(&e) => return Ok(true),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e.to_string()),
                    }
                    let state = tls.process_new_packets().map_err(|e| format!("TLS: {e}"))?;
                    let mut plaintext = state.plaintext_bytes_to_read();
                    while plaintext > 0 {
                        let n = tls.reader().read(&mut scratch).map_err(|e| e.to_string())?;
                        if n == 0 {
                            break;
                        }
                        into.extend_from_slice(&scratch[..n]);
                        plaintext = plaintext.saturating_sub(n);
                    }
                    if state.peer_has_closed() {
                        return Ok(false);
                    }
                    // Handshake replies and alerts.
                    self.flush().map_err(|e| e.to_string())?;
                }
                (Socket::Udp(socket), _) => {
                    // Only ICMP errors arrive here; they surface on send.
                    return match socket.recv(&mut scratch) {
                        Ok(_) => Ok(true),
                        Err(e) if would_block(&e) => Ok(true),
                        Err(_) => Ok(true),
                    };
                }
            }
        }
    }
}
