//! How many bytes written to a TCP socket the peer has not acknowledged.
//!
//! A successful `write` only means the kernel took the bytes. Whatever is
//! still in the send queue when a connection dies is lost unless the sender
//! resends it, so the writer counts a byte as delivered only once the
//! receiver's TCP stack has acknowledged it: bytes written minus the
//! socket's unsent-plus-unacknowledged queue, which Linux reports through
//! the `SIOCOUTQ` ioctl. No safe wrapper in a well-kept crate exposes it,
//! hence the one `unsafe` call below.

use std::io;
use std::os::fd::AsRawFd;

/// Bytes in the socket's send queue: not yet sent, or sent and not yet
/// acknowledged by the peer.
#[cfg(target_os = "linux")]
pub fn unacknowledged(socket: &impl AsRawFd) -> io::Result<u64> {
    let mut queued: libc::c_int = 0;
    // SAFETY: `SIOCOUTQ` (the same request number as `TIOCOUTQ` on Linux,
    // see `sockios.h`) writes one `int` through the pointer, which points
    // at a live, aligned `c_int` on our stack for the whole call. The file
    // descriptor is borrowed from a socket that outlives the call; a stale
    // or wrong descriptor makes the call fail with EBADF/ENOTTY, which is
    // returned as an error, not undefined behaviour.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::try_from(queued).unwrap_or(0))
}

/// Elsewhere the queue cannot be read: bytes count as delivered once
/// written (a weaker guarantee, documented in the README).
#[cfg(not(target_os = "linux"))]
pub fn unacknowledged(_socket: &impl AsRawFd) -> io::Result<u64> {
    Ok(0)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    #[test]
    fn counts_bytes_the_peer_has_not_taken_then_drains() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let mut sender =
            TcpStream::connect(listener.local_addr().expect("addr")).expect("connects");
        let (mut receiver, _) = listener.accept().expect("accepts");
        assert_eq!(unacknowledged(&sender).expect("ioctl"), 0);
        // The receiver does not read: its window fills, and what is left
        // waits unacknowledged in our send queue.
        sender.set_nonblocking(true).expect("non-blocking");
        let chunk = vec![b'x'; 64 * 1024];
        let mut written = 0usize;
        loop {
            match sender.write(&chunk) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        let queued = unacknowledged(&sender).expect("ioctl");
        assert!(queued > 0, "a full window leaves bytes queued");
        assert!(queued <= written as u64);
        // Once the receiver reads everything, the queue empties.
        receiver
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut sink = vec![0; 1 << 20];
        let mut read = 0usize;
        let deadline = Instant::now() + Duration::from_secs(20);
        while read < written && Instant::now() < deadline {
            if let Ok(n) = receiver.read(&mut sink) {
                read += n;
            }
        }
        assert_eq!(read, written);
        let deadline = Instant::now() + Duration::from_secs(20);
        while unacknowledged(&sender).expect("ioctl") > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(unacknowledged(&sender).expect("ioctl"), 0);
    }

    #[test]
    fn a_closed_descriptor_is_an_error() {
        struct Bogus;
        impl AsRawFd for Bogus {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                -1
            }
        }
        assert!(unacknowledged(&Bogus).is_err());
    }
}
