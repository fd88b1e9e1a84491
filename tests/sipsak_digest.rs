//! Real peer: sipsak (an independent C SIP client) authenticates a MESSAGE against the gate's
//! digest server side over loopback UDP (RFC 3261 §22.4: 401 challenge, retry with
//! Authorization). The test harness here is the minimal UDP edge the runtime will replace:
//! it echoes Via/From/To/Call-ID/CSeq and answers with what the pure gate decides.
//!
//! sipsak 0.9.8 speaks MD5 only and answers only the topmost challenge, so the policy holds
//! MD5 HA1s and `nonce::challenges` offers MD5 alone. Needs the `sipsak` Debian package;
//! the test says so and passes vacuously if it is absent.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dialback::gate::decide::{decide, Credentials, Decision, GateState, SignalSeen, StartRequest};
use dialback::gate::nonce::{
    authenticate_message, challenges, issue_nonce, AuthFailure, MessageAuth, MessageRequest,
    NonceKey, ReplayTable,
};
use dialback::gate::pin::digest_ha1s;
use dialback::gate::policy::{AdminInput, Policy, PolicyInput};
use dialback::gate::signal::{match_message, TextSignal};
use dialback::gate::{Secret, WallTime};

const REALM: &str = "gate.example";

fn policy() -> Policy {
    let (md5, _sha256) = digest_ha1s("1001", REALM, &Secret::new("alpha"));
    Policy::parse(PolicyInput {
        realm: REALM.into(),
        admins: vec![AdminInput {
            digit: 1,
            id: "1001".into(),
            name: "Ann".into(),
            numbers: vec!["sip:ann-desk@pbx.example".into()],
            pin_hash: None,
            ha1_realm: Some(REALM.into()),
            ha1_md5: Some(md5),
            ha1_sha256: None,
        }],
        signal: Default::default(),
        callback: Default::default(),
        security: Default::default(),
        digest_algorithms: Vec::new(),
    })
    .expect("policy")
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

/// The parts of a request this harness needs. Not a SIP parser: sipsak's own output only.
struct Request {
    uri: String,
    echo: Vec<String>,
    branch: String,
    authorization: Option<String>,
    body: Vec<u8>,
}

fn parse(datagram: &[u8]) -> Request {
    let text = String::from_utf8_lossy(datagram);
    let (head, body) = text.split_once("\r\n\r\n").expect("header/body separator");
    let mut lines = head.split("\r\n");
    let request_line = lines.next().expect("request line");
    let uri = request_line
        .split(' ')
        .nth(1)
        .expect("request-uri")
        .to_owned();
    let mut req = Request {
        uri,
        echo: Vec::new(),
        branch: String::new(),
        authorization: None,
        body: body.as_bytes().to_vec(),
    };
    for line in lines {
        let (name, value) = line.split_once(':').expect("header line");
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
    req
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

fn spawn_sipsak(port: u16, password: &str, msg: &std::path::Path) -> Option<Child> {
    Command::new("sipsak")
        .arg("-f")
        .arg(msg)
        .arg("-s")
        .arg(format!("sip:maint@127.0.0.1:{port}"))
        .args(["-u", "1001", "-a", password])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()
}

/// Serves one sipsak run; returns the decisions made and sipsak's exit success.
fn serve(password: &str) -> Option<(Vec<MessageAuth>, Vec<Decision>, bool)> {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let port = sock.local_addr().expect("addr").port();
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    write!(
        file,
        "MESSAGE sip:maint@127.0.0.1 SIP/2.0\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nMAINTAIN-1\r\n"
    )
    .expect("write message");
    let Some(mut child) = spawn_sipsak(port, password, file.path()) else {
        eprintln!("sipsak not installed (Debian package sipsak): real-peer test skipped");
        return None;
    };

    let p = policy();
    let key = NonceKey::new([3; 32]);
    let mut replay = ReplayTable::new(16);
    let mut state = GateState::new();
    let mut rng = Rng(5);
    let now = WallTime(1_764_000_000);
    let (mut auths, mut decisions) = (Vec::new(), Vec::new());
    let mut last: Option<(String, String)> = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 65_535];
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait sipsak") {
            break status;
        }
        assert!(Instant::now() < deadline, "sipsak did not finish");
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let req = parse(&buf[..n]);
        let from: SocketAddr = from;
        // A UDP retransmission gets the same answer (RFC 3261 §17.2.2), not a second check.
        if let Some((branch, resp)) = &last {
            if *branch == req.branch {
                sock.send_to(resp.as_bytes(), from).expect("send");
                continue;
            }
        }
        let auth = authenticate_message(
            &p,
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
                let hdrs: Vec<String> = challenges(&p, &nonce, *stale)
                    .into_iter()
                    .map(|c| format!("WWW-Authenticate: {c}"))
                    .collect();
                response("401 Unauthorized", &req, &hdrs)
            }
            MessageAuth::Authenticated(id) => {
                let signal = match match_message(p.signal(), &req.body) {
                    TextSignal::Start(d) => SignalSeen::Matched(d),
                    _ => SignalSeen::Unmatched,
                };
                let d = decide(
                    &p,
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
                decisions.push(d);
                response(status, &req, &[])
            }
            MessageAuth::Rejected { .. } => response("403 Forbidden", &req, &[]),
        };
        auths.push(auth);
        sock.send_to(resp.as_bytes(), from).expect("send");
        last = Some((req.branch, resp));
    };
    Some((auths, decisions, status.success()))
}

#[test]
fn sipsak_md5_digest_message_is_authenticated_and_allowed() {
    let Some((auths, decisions, ok)) = serve("alpha") else {
        return;
    };
    assert!(
        matches!(auths.as_slice(), [MessageAuth::Challenge { stale: false }, MessageAuth::Authenticated(id)] if id.as_str() == "1001"),
        "{auths:?}"
    );
    assert!(
        matches!(decisions.as_slice(), [Decision::Allow { .. }]),
        "{decisions:?}"
    );
    assert!(ok, "sipsak saw a final 200");
}

#[test]
fn sipsak_with_the_wrong_password_is_rejected() {
    let Some((auths, decisions, ok)) = serve("bravo") else {
        return;
    };
    assert!(
        matches!(
            auths.as_slice(),
            [
                MessageAuth::Challenge { stale: false },
                MessageAuth::Rejected {
                    failure: AuthFailure::BadResponse,
                    ..
                }
            ]
        ),
        "{auths:?}"
    );
    assert!(decisions.is_empty());
    assert!(!ok, "sipsak saw a final 403");
}
