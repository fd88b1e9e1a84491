//! A minimal blocking SIP caller for tests that call a running gate directly (trunks not
//! registered) and need the RTP on their own socket: INVITE with an SDP offer, ACK for the 2xx
//! or the final error (RFC 3261 §13.2.2.4, §17.1.1.3), 200 to the gate's BYE. The gate's
//! media address comes from its SDP answer (RFC 4566 `c=` and `m=` lines).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::dialback::free_port;

/// One SIP message as text, split into start line, headers and body.
pub struct Sip {
    pub text: String,
}

impl Sip {
    pub fn start_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }
    pub fn status(&self) -> Option<u16> {
        self.start_line()
            .strip_prefix("SIP/2.0 ")?
            .get(..3)?
            .parse()
            .ok()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        let head = self.text.split("\r\n\r\n").next().unwrap_or("");
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
    pub fn body(&self) -> &str {
        self.text.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    /// Where the SDP body says media goes: the `c=IN IP4` address and the `m=audio` port.
    pub fn media_addr(&self) -> Option<SocketAddr> {
        let body = self.body();
        let ip: IpAddr = body
            .lines()
            .find_map(|l| l.trim().strip_prefix("c=IN IP4 "))?
            .trim()
            .parse()
            .ok()?;
        let port: u16 = body
            .lines()
            .find_map(|l| l.trim().strip_prefix("m=audio "))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(SocketAddr::new(ip, port))
    }
}

/// A blocking caller on 127.0.0.1 with its own SIP and RTP sockets (20 ms read timeouts).
pub struct Caller {
    pub sip: UdpSocket,
    pub rtp: UdpSocket,
    pub gate: SocketAddr,
    pub call_id: String,
    pub to_tag: Option<String>,
}

impl Caller {
    pub fn new(gate: SocketAddr) -> Caller {
        let sip = UdpSocket::bind("127.0.0.1:0").expect("sip socket");
        let rtp = UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
        rtp.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        sip.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let call_id = format!("raw-{}-{}@127.0.0.1", std::process::id(), free_port());
        Caller {
            sip,
            rtp,
            gate,
            call_id,
            to_tag: None,
        }
    }

    pub fn local(&self) -> SocketAddr {
        self.sip.local_addr().expect("addr")
    }

    /// Send an INVITE offering `formats` (e.g. `8 101`, with rtpmaps); returns the final
    /// response. A 2xx is ACKed (RFC 3261 §13.2.2.4); an error response too (§17.1.1.3).
    pub fn invite(&mut self, user: &str, formats: &str, rtpmaps: &str) -> Sip {
        let local = self.local();
        let rtp_port = self.rtp.local_addr().expect("rtp addr").port();
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {rtp_port} RTP/AVP {formats}\r\n{rtpmaps}a=ptime:20\r\na=sendrecv\r\n"
        );
        let invite = format!(
            "INVITE sip:{user}@{gate} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKinv{port}\r\nMax-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=c{port}\r\nTo: <sip:{user}@{gate}>\r\nCall-ID: {cid}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            gate = self.gate,
            port = local.port(),
            cid = self.call_id,
            len = sdp.len()
        );
        self.sip
            .send_to(invite.as_bytes(), self.gate)
            .expect("send INVITE");
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < end, "no final response to the INVITE");
            let Some(m) = self.recv_sip() else { continue };
            let Some(code) = m.status() else { continue };
            if code < 200 {
                continue;
            }
            let to = m.header("To").unwrap_or("").to_string();
            self.to_tag = to.split(";tag=").nth(1).map(str::to_string);
            // RFC 3261 §13.2.2.4 (2xx: new transaction) and §17.1.1.3 (error: same branch).
            let branch = if code < 300 {
                format!("z9hG4bKack{}", local.port())
            } else {
                format!("z9hG4bKinv{}", local.port())
            };
            let ack = format!(
                "ACK sip:{user}@{gate} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch}\r\nMax-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=c{port}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                gate = self.gate,
                port = local.port(),
                cid = self.call_id,
            );
            self.sip.send_to(ack.as_bytes(), self.gate).expect("ACK");
            return m;
        }
    }

    /// One SIP message, if one arrives within the read timeout.
    pub fn recv_sip(&self) -> Option<Sip> {
        let mut buf = [0u8; 8192];
        let (n, _) = self.sip.recv_from(&mut buf).ok()?;
        Some(Sip {
            text: String::from_utf8_lossy(&buf[..n]).into_owned(),
        })
    }

    /// If `m` is a BYE, answer it 200 (RFC 3261 §15.1.2) and return true.
    pub fn answer_bye(&self, m: &Sip) -> bool {
        if !m.start_line().starts_with("BYE ") {
            return false;
        }
        let ok = format!(
            "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
            m.header("Via").unwrap_or(""),
            m.header("From").unwrap_or(""),
            m.header("To").unwrap_or(""),
            m.header("Call-ID").unwrap_or(""),
            m.header("CSeq").unwrap_or(""),
        );
        self.sip.send_to(ok.as_bytes(), self.gate).expect("200");
        true
    }

    /// Collect RTP until the gate's BYE arrives (answered 200) or `limit` passes. Returns the
    /// packets and when the BYE came (if it did).
    pub fn rtp_until_bye(&self, limit: Duration) -> (Vec<Vec<u8>>, Option<Instant>) {
        let end = Instant::now() + limit;
        let mut packets = Vec::new();
        let mut buf = [0u8; 2048];
        while Instant::now() < end {
            while let Ok((n, _)) = self.rtp.recv_from(&mut buf) {
                packets.push(buf[..n].to_vec());
            }
            if let Some(m) = self.recv_sip() {
                if self.answer_bye(&m) {
                    return (packets, Some(Instant::now()));
                }
            }
        }
        (packets, None)
    }
}
