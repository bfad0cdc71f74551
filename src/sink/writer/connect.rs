//! Getting a connection up: resolving the host (again at every attempt),
//! a non-blocking TCP connect over each address in turn, the TLS
//! handshake, the RELP `open`, each bounded by the connect timeout; and
//! what the loop does when the receiver sends something or hangs up.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Instant;

use mio::net::{TcpStream, UdpSocket};
use mio::Interest;

use super::link::{Failure, Link, Phase, Socket};
use super::{Chunk, Loop, CHUNK_BYTES, SOCKET};
use crate::sink::{relp, LinkState, Protocol, SinkHealth};

impl Loop {
    /// Resolves the host (again, every time) and starts connecting.
    pub(super) fn connect(&mut self) -> Result<(), Failure> {
        let target = self.plan.target();
        let addresses: Vec<SocketAddr> = (self.plan.host.as_str(), self.plan.port)
            .to_socket_addrs()
            .map_err(|e| Failure::connect(format!("{target}: cannot resolve: {e}")))?
            .collect();
        if addresses.is_empty() {
            return Err(Failure::connect(format!("{target}: no address")));
        }
        if self.plan.protocol == Protocol::Udp {
            return self.open_udp(&addresses);
        }
        self.start_tcp(addresses)
    }

    pub(super) fn open_udp(&mut self, addresses: &[SocketAddr]) -> Result<(), Failure> {
        let mut last = String::new();
        for &address in addresses {
            let local: SocketAddr = if address.is_ipv4() {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let opened = UdpSocket::bind(local).and_then(|mut socket| {
                socket.connect(address)?;
                self.poll.registry().register(
                    &mut socket,
                    SOCKET,
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                Ok(socket)
            });
            match opened {
                Ok(socket) => {
                    self.link = Some(Link::new(Socket::Udp(socket), address, Phase::Ready));
                    self.on_ready();
                    return Ok(());
                }
                Err(e) => last = format!("{address}: {e}"),
            }
        }
        Err(Failure::connect(format!("{}: {last}", self.plan.target())))
    }

    /// Starts a non-blocking connect to the first address; the others are
    /// tried in turn if it fails.
    pub(super) fn start_tcp(&mut self, mut addresses: Vec<SocketAddr>) -> Result<(), Failure> {
        addresses.reverse();
        let mut last = String::new();
        while let Some(address) = addresses.pop() {
            let started = TcpStream::connect(address).and_then(|mut stream| {
                self.poll.registry().register(
                    &mut stream,
                    SOCKET,
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                Ok(stream)
            });
            match started {
                Ok(stream) => {
                    let phase = Phase::Connecting { rest: addresses };
                    self.link = Some(Link::new(Socket::Tcp(stream), address, phase));
                    return Ok(());
                }
                Err(e) => last = format!("{address}: {e}"),
            }
        }
        Err(Failure::connect(format!("{}: {last}", self.plan.target())))
    }

    /// Moves the connection along: connect, handshakes, then delivery.
    pub(super) fn progress(&mut self) -> Result<(), Failure> {
        let Some(link) = &mut self.link else {
            return Ok(());
        };
        if !matches!(link.phase, Phase::Ready) && Instant::now() >= link.deadline {
            return Err(Failure::connect(format!(
                "{} ({}): timed out connecting",
                self.plan.target(),
                link.address
            )));
        }
        if let Phase::Connecting { rest } = &mut link.phase {
            if !link.writable {
                return Ok(());
            }
            let Socket::Tcp(stream) = &mut link.socket else {
                return Ok(());
            };
            let outcome = match stream.take_error() {
                Ok(Some(error)) | Err(error) => Err(error),
                Ok(None) => stream.peer_addr().map(|_| ()),
            };
            match outcome {
                Ok(()) => {}
                // Not connected yet: a spurious wake-up.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    link.writable = false;
                    return Ok(());
                }
                Err(e) => {
                    let rest = std::mem::take(rest);
                    let message = format!("{} ({}): {e}", self.plan.target(), link.address);
                    self.drop_link();
                    if rest.is_empty() {
                        return Err(Failure::connect(message));
                    }
                    return self.start_tcp(rest);
                }
            }
            let _ = stream.set_nodelay(true);
            if let Some(client) = &self.plan.tls {
                let mut tls = rustls::ClientConnection::new(
                    client.config.clone(),
                    client.server_name.clone(),
                )
                .map_err(|e| Failure::connect(format!("TLS: {e}")))?;
                tls.set_buffer_limit(Some(CHUNK_BYTES * 2));
                link.tls = Some(tls);
                link.phase = Phase::Handshaking;
            } else {
                self.after_transport()?;
            }
        }
        let Some(link) = &mut self.link else {
            return Ok(());
        };
        if matches!(link.phase, Phase::Handshaking) {
            link.flush()
                .map_err(|e| Failure::connect(format!("TLS: {e}")))?;
            if link.tls.as_ref().is_some_and(|tls| !tls.is_handshaking()) {
                self.after_transport()?;
            } else {
                return Ok(());
            }
        }
        let Some(link) = &mut self.link else {
            return Ok(());
        };
        match link.phase {
            Phase::RelpOpening => {
                link.flush().map_err(|e| Failure::connect(e.to_string()))?;
                self.write_frames()
                    .map_err(|f| Failure::connect(f.message))?;
                Ok(())
            }
            Phase::Ready => self.deliver(),
            _ => Ok(()),
        }
    }

    /// The byte stream is up (TCP connected, TLS handshake done).
    pub(super) fn after_transport(&mut self) -> Result<(), Failure> {
        let relp = matches!(self.plan.protocol, Protocol::Relp | Protocol::RelpTls);
        let Some(link) = &mut self.link else {
            return Ok(());
        };
        if relp {
            self.frame.clear();
            relp::write_frame(&mut self.frame, 1, "open", relp::OPEN_OFFERS.as_bytes());
            link.txnr = relp::next_txnr(1);
            link.phase = Phase::RelpOpening;
            self.chunk = Some(Chunk::relp_frames(self.frame.len()));
            return self.write_frames().map_err(|f| Failure::connect(f.message));
        }
        link.phase = Phase::Ready;
        self.on_ready();
        Ok(())
    }

    pub(super) fn on_ready(&mut self) {
        let Some(link) = &self.link else { return };
        // The reconnect backoff is not reset here but when a line is
        // confirmed: a receiver that accepts and then closes at once would
        // otherwise get a reconnect (and a resend of everything pending)
        // every few hundred milliseconds.
        if self.connected_before {
            SinkHealth::count(&self.health.counters.reconnects, 1);
        }
        self.connected_before = true;
        if self.health.set(LinkState::Connected, None) {
            tracing::info!(
                "{}: syslog: connected to {} ({}, {:?})",
                self.label,
                self.plan.target(),
                link.address,
                self.plan.protocol
            );
        }
    }

    pub(super) fn on_readable(&mut self) -> Result<(), Failure> {
        let Some(link) = &mut self.link else {
            return Ok(());
        };
        if matches!(link.phase, Phase::Connecting { .. }) {
            // The connect's outcome is read in `progress`.
            link.writable = true;
            return Ok(());
        }
        // Failing before the link is up (a TLS handshake refused, say) is a
        // connection error; after that, a send error.
        let failure = if matches!(link.phase, Phase::Ready) {
            Failure::send
        } else {
            Failure::connect
        };
        let open = link
            .read(&mut self.read_buffer)
            .map_err(|e| failure(format!("{} ({}): {e}", self.plan.target(), link.address)))?;
        let relp = matches!(self.plan.protocol, Protocol::Relp | Protocol::RelpTls);
        if relp {
            self.on_relp_answers()?;
        } else {
            // A syslog receiver has nothing to say; ignore what it sends.
            self.read_buffer.clear();
        }
        if !open {
            let address = self.link.as_ref().map(|l| l.address);
            return Err(failure(format!(
                "{} ({}): the receiver closed the connection",
                self.plan.target(),
                address.map(|a| a.to_string()).unwrap_or_default()
            )));
        }
        Ok(())
    }
}
