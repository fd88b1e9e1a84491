//! Free port picking on 127.0.0.1.
//!
//! The operating system hands out an unused port when binding port 0; we note it, release it
//! and give it to the peer. Between the release and the peer's own bind another process may
//! take it, so callers retry on a bind failure (see `kamailio::Kamailio::start` and
//! `sipp::SippServer::start`). Ports handed out once are never handed out again by the same
//! test binary, so parallel tests in one binary cannot collide with each other.

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::{Mutex, OnceLock};

/// How many candidate ports to try before giving up.
const MAX_TRIES: usize = 64;

/// Which transports must be free on the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transports {
    Udp,
    UdpAndTcp,
}

/// A UDP port on 127.0.0.1 that nobody is bound to right now.
pub fn free_udp_port() -> io::Result<u16> {
    free_port(Transports::Udp)
}

/// A port on 127.0.0.1 free for both UDP and TCP (for peers that listen on both).
pub fn free_udp_tcp_port() -> io::Result<u16> {
    free_port(Transports::UdpAndTcp)
}

/// A port on 127.0.0.1 free for `transports`, not handed out before by this process.
pub fn free_port(transports: Transports) -> io::Result<u16> {
    for _ in 0..MAX_TRIES {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = udp.local_addr()?.port();
        if transports == Transports::UdpAndTcp
            && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err()
        {
            continue;
        }
        if claim(port) {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free port on 127.0.0.1 after {MAX_TRIES} tries"),
    ))
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// True when some process holds UDP `port` on 127.0.0.1 (our bind attempt fails).
///
/// Used as a readiness probe for peers that give no other sign of having bound their socket.
pub fn udp_port_in_use(port: u16) -> bool {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_err()
}

fn claim(port: u16) -> bool {
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let set = HANDED_OUT.get_or_init(|| Mutex::new(HashSet::new()));
    match set.lock() {
        Ok(mut set) => set.insert(port),
        // A test panicked while holding the lock; the set is still a valid set.
        Err(poisoned) => poisoned.into_inner().insert(port),
    }
}
