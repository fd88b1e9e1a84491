//! A minimal UDP edge for real-peer tests of the gate's MESSAGE path: it receives requests from
//! a SIP client process on loopback, echoes Via/From/To/Call-ID/CSeq, and answers with what
//! the pure gate decides (401 with `nonce::challenges`, 200 on allow, 403 otherwise). Not a
//! SIP parser: it reads the plain output of sipsak and baresip only. The runtime replaces it.

#![allow(dead_code)]

use std::net::UdpSocket;
use std::process::Child;
use std::time::{Duration, Instant};

use dialback::gate::decide::{decide, Credentials, Decision, GateState, SignalSeen, StartRequest};
use dialback::gate::nonce::{
    authenticate_message, challenges, issue_nonce, MessageAuth, MessageRequest, NonceKey,
    ReplayTable,
};
use dialback::gate::pin::digest_ha1s;
use dialback::gate::policy::{AdminInput, Policy, PolicyInput};
use dialback::gate::signal::{match_message, TextSignal};
use dialback::gate::{Secret, WallTime};

pub const REALM: &str = "gate.example";

/// One administrator 1001 (digit 1, password "alpha") with the HA1s asked for, and the
/// given digest algorithm order.
pub fn policy(md5: bool, sha256: bool, algorithms: &[&str]) -> Policy {
    let (ha1_md5, ha1_sha256) = digest_ha1s("1001", REALM, &Secret::new("alpha"));
    Policy::parse(PolicyInput {
        realm: REALM.into(),
        admins: vec![AdminInput {
            digit: 1,
            id: "1001".into(),
            name: "Ann".into(),
            numbers: vec!["sip:ann-desk@pbx.example".into()],
            pin_hash: None,
            ha1_realm: Some(REALM.into()),
            ha1_md5: md5.then_some(ha1_md5),
            ha1_sha256: sha256.then_some(ha1_sha256),
        }],
        signal: Default::default(),
        callback: Default::default(),
        security: Default::default(),
        digest_algorithms: algorithms.iter().map(|a| a.to_string()).collect(),
    })
    .expect("policy")
}

pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

struct Rng(u64);
impl rand_core::RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1);
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            *b = (self.next_u64() >> 56) as u8;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

struct Request {
    method: String,
    uri: String,
    echo: Vec<String>,
    branch: String,
    authorization: Option<String>,
    body: Vec<u8>,
}

fn parse(datagram: &[u8]) -> Option<Request> {
    let text = String::from_utf8_lossy(datagram);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let uri = request_line.next()?.to_owned();
    let mut req = Request {
        method,
        uri,
        echo: Vec::new(),
        branch: String::new(),
        authorization: None,
        body: body.as_bytes().to_vec(),
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let lname = name.trim().to_ascii_lowercase();
        match lname.as_str() {
            "via" | "v" | "from" | "f" | "to" | "t" | "call-id" | "i" | "cseq" => {
                if lname.starts_with('v') {
                    req.branch = value
                        .split(';')
                        .find_map(|p| p.trim().strip_prefix("branch="))
                        .unwrap_or("")
                        .to_owned();
                }
                req.echo.push(line.to_owned());
            }
            "authorization" => req.authorization = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    Some(req)
}

fn response(status: &str, req: &Request, extra: &[String]) -> String {
    let mut r = format!("SIP/2.0 {status}\r\n");
    for h in req.echo.iter().chain(extra) {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("Content-Length: 0\r\n\r\n");
    r
}

/// What happened during one client run.
pub struct Outcome {
    pub auths: Vec<MessageAuth>,
    pub decisions: Vec<Decision>,
    /// The algorithm named in each Authorization received.
    pub algorithms: Vec<String>,
    pub client_succeeded: bool,
}

/// Serves MESSAGEs on `sock` until `child` exits (or `limit` passes, then kills it).
pub fn serve(policy: &Policy, sock: &UdpSocket, mut child: Child, limit: Duration) -> Outcome {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let key = NonceKey::new([3; 32]);
    let mut replay = ReplayTable::new(16);
    let mut state = GateState::new();
    let mut rng = Rng(5);
    let now = WallTime(1_764_000_000);
    let mut out = Outcome {
        auths: Vec::new(),
        decisions: Vec::new(),
        algorithms: Vec::new(),
        client_succeeded: false,
    };
    let mut last: Option<(String, String)> = None;
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 65_535];
    loop {
        if let Some(status) = child.try_wait().expect("wait client") {
            out.client_succeeded = status.success();
            return out;
        }
        if Instant::now() > deadline {
            // Our own child, by its handle.
            let _ = child.kill();
            let _ = child.wait();
            return out;
        }
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Some(req) = parse(&buf[..n]) else {
            continue;
        };
        if req.method != "MESSAGE" {
            continue;
        }
        // A UDP retransmission gets the same answer (RFC 3261 §17.2.2), not a second check.
        if let Some((branch, resp)) = &last {
            if *branch == req.branch {
                sock.send_to(resp.as_bytes(), from).expect("send");
                continue;
            }
        }
        if let Some(a) = &req.authorization {
            let alg = a
                .split(',')
                .find_map(|p| p.trim().strip_prefix("algorithm="))
                .unwrap_or("(none)")
                .trim_matches('"')
                .to_owned();
            out.algorithms.push(alg);
        }
        let auth = authenticate_message(
            policy,
            &key,
            &mut replay,
            &MessageRequest {
                authorization: req.authorization.as_deref(),
                method: "MESSAGE",
                request_uri: &req.uri,
                body: &req.body,
            },
            now,
        );
        let resp = match &auth {
            MessageAuth::Challenge { stale } => {
                let nonce = issue_nonce(&key, now, &mut rng);
                let hdrs: Vec<String> = challenges(policy, &nonce, *stale)
                    .into_iter()
                    .map(|c| format!("WWW-Authenticate: {c}"))
                    .collect();
                response("401 Unauthorized", &req, &hdrs)
            }
            MessageAuth::Authenticated(id) => {
                let signal = match match_message(policy.signal(), &req.body) {
                    TextSignal::Start(d) => SignalSeen::Matched(d),
                    _ => SignalSeen::Unmatched,
                };
                let d = decide(
                    policy,
                    &StartRequest {
                        source: from.ip(),
                        credentials: Credentials::Valid(id.clone()),
                        signal,
                        authenticated_at: now,
                        audit_available: true,
                    },
                    now,
                    &mut state,
                );
                let status = if matches!(d, Decision::Allow { .. }) {
                    "200 OK"
                } else {
                    "403 Forbidden"
                };
                out.decisions.push(d);
                response(status, &req, &[])
            }
            MessageAuth::Rejected { .. } => response("403 Forbidden", &req, &[]),
        };
        out.auths.push(auth);
        sock.send_to(resp.as_bytes(), from).expect("send");
        last = Some((req.branch, resp));
    }
}
