//! A minimal blocking SIP UAC over UDP for tests: one REGISTER flow with digest auth.
//!
//! RFC 3261 §10.2: same Call-ID and rising CSeq across the flow; 401/407 answered once per
//! challenge with (Proxy-)Authorization (RFC 3261 §22.2-§22.3, digest from `digest`); 423
//! answered by raising the expiry to Min-Expires (§10.2.8) unless told not to. Used to register
//! "phones" at Kamailio and to drive the SIPp registrars where SIPp itself cannot be the client
//! (SHA-256, misbehaving clients).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use super::digest;
use super::sipp::header;

/// Responses accepted before giving up (challenges and 423s included).
const MAX_ROUNDS: usize = 6;
/// Resends of an unanswered request (UDP, loopback: loss is not expected).
const RESENDS: usize = 3;
const RESPONSE_WAIT: Duration = Duration::from_secs(2);

/// One registration to perform.
#[derive(Debug, Clone)]
pub struct Register {
    pub registrar: SocketAddr,
    /// AOR user part and digest username.
    pub user: String,
    pub password: String,
    /// Contact URI to bind, e.g. `sip:1001@127.0.0.1:40000`.
    pub contact: String,
    pub expires: u32,
    /// Retry a 423 with Min-Expires (true) or with the same expiry again (a broken client).
    pub honour_min_expires: bool,
    /// Call-ID to use; `None` picks a fresh one. A refresh reuses the first flow's
    /// ([`Registered::call_id`]), RFC 3261 §10.2.4.
    pub call_id: Option<String>,
    /// CSeq of the first request; a refresh continues after [`Registered::last_cseq`].
    pub first_cseq: u32,
    /// Local UDP port to send from; `None` picks one. A refresh reuses the first flow's.
    pub local_port: Option<u16>,
}

impl Register {
    pub fn new(registrar: SocketAddr, user: &str, password: &str, contact: &str) -> Self {
        Self {
            registrar,
            user: user.to_owned(),
            password: password.to_owned(),
            contact: contact.to_owned(),
            expires: 60,
            honour_min_expires: true,
            call_id: None,
            first_cseq: 1,
            local_port: None,
        }
    }

    /// The same registration again on the same Call-ID with the next CSeq (a refresh).
    pub fn refresh_of(&self, done: &Registered) -> Self {
        Self {
            call_id: Some(done.call_id.clone()),
            first_cseq: done.last_cseq + 1,
            local_port: Some(done.local_port),
            ..self.clone()
        }
    }
}

/// How the flow ended.
#[derive(Debug, Clone)]
pub struct Registered {
    /// Status code of the last response (200 on success).
    pub status: u16,
    /// Every response received, in order.
    pub responses: Vec<String>,
    /// Every request sent, in order.
    pub requests: Vec<String>,
    pub call_id: String,
    pub last_cseq: u32,
    pub local_port: u16,
}

/// Runs the REGISTER flow from a socket on 127.0.0.1 (fresh, or `local_port` for a refresh).
pub fn register(reg: &Register) -> io::Result<Registered> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, reg.local_port.unwrap_or(0)))?;
    socket.set_read_timeout(Some(RESPONSE_WAIT))?;
    let local = socket.local_addr()?;
    let request_uri = format!("sip:{}", reg.registrar);
    let aor = format!("sip:{}@{}", reg.user, reg.registrar.ip());
    let call_id = reg
        .call_id
        .clone()
        .unwrap_or_else(|| format!("uac-{}-{}@127.0.0.1", std::process::id(), local.port()));
    let mut expires = reg.expires;
    let mut credentials: Option<(&'static str, String)> = None;
    let mut out = Registered {
        status: 0,
        responses: Vec::new(),
        requests: Vec::new(),
        call_id: call_id.clone(),
        last_cseq: reg.first_cseq,
        local_port: local.port(),
    };
    for cseq in (reg.first_cseq..).take(MAX_ROUNDS) {
        let auth_line = credentials
            .as_ref()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "REGISTER {request_uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-uac-{port}-{cseq};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <{aor}>;tag=uac{port}\r\n\
             To: <{aor}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: <{contact}>\r\n\
             Expires: {expires}\r\n\
             {auth_line}\
             User-Agent: dialback-test-uac\r\n\
             Content-Length: 0\r\n\r\n",
            port = local.port(),
            contact = reg.contact,
        );
        let response = exchange(&socket, reg.registrar, &request, cseq)?;
        out.requests.push(request);
        out.last_cseq = cseq;
        let status = status_code(&response).unwrap_or(0);
        out.status = status;
        out.responses.push(response.clone());
        match status {
            401 | 407 => {
                let (challenge_name, answer_name) = if status == 401 {
                    ("WWW-Authenticate", "Authorization")
                } else {
                    ("Proxy-Authenticate", "Proxy-Authorization")
                };
                let Some(challenge) = header(&response, challenge_name) else {
                    return Ok(out);
                };
                let stale = challenge.to_ascii_lowercase().contains("stale=true");
                // A second challenge right after credentials means they were wrong, unless
                // the nonce merely went stale (RFC 7616 §3.3).
                if credentials.is_some() && !stale && out.responses.len() >= 2 {
                    let previous = &out.responses[out.responses.len() - 2];
                    if status_code(previous) == Some(status) {
                        return Ok(out);
                    }
                }
                let Some(value) = digest::answer(
                    &challenge,
                    &reg.user,
                    &reg.password,
                    "REGISTER",
                    &request_uri,
                    b"",
                ) else {
                    return Ok(out);
                };
                credentials = Some((answer_name, value));
            }
            423 => {
                if reg.honour_min_expires {
                    let min = header(&response, "Min-Expires").and_then(|v| v.parse().ok());
                    expires = min.unwrap_or(expires).max(expires);
                }
            }
            _ => return Ok(out),
        }
    }
    Ok(out)
}

/// The status code of a response's status line.
pub fn status_code(response: &str) -> Option<u16> {
    response.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// Sends `request` and returns the first final response for CSeq `cseq` (1xx skipped).
fn exchange(socket: &UdpSocket, to: SocketAddr, request: &str, cseq: u32) -> io::Result<String> {
    let mut buf = vec![0u8; 65_535];
    let want = format!("{cseq} REGISTER");
    for _ in 0..RESENDS {
        socket.send_to(request.as_bytes(), to)?;
        loop {
            match socket.recv_from(&mut buf) {
                Ok((n, _)) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let final_for_us = status_code(&text).is_some_and(|s| s >= 200)
                        && header(&text, "CSeq").is_some_and(|c| c == want);
                    if final_for_us {
                        return Ok(text);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no final response from {to} to CSeq {want}"),
    ))
}
