//! The gate behind a real PBX, as most end-to-end tests set it up: Kamailio with the gate's
//! three trunk subscribers and phones, a dialplan built from `dialplans/example.json`'s admins
//! (demo secrets of `dialplans/README.md`) with the trunks on free loopback ports, and the
//! administrator's MESSAGE sent by sipsak through the PBX.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::dialback::{free_port, mentions, Gate};
use super::kamailio::Kamailio;
use super::sipp::{Sipp, SippRun};
use super::uac::{self, Register};

/// The PBX's subscribers: the gate's three trunks and three phones.
pub const SUBSCRIBERS: &[(&str, &str)] = &[
    ("gate-user", "user-pw"),
    ("gate-admin", "admin-pw"),
    ("gate-out", "out-pw"),
    ("1001", "phone-pw"),
    ("1002", "phone2-pw"),
    ("1003", "phone3-pw"),
];

/// The gate's three trunk subscribers alone (tests that add their own phones).
pub const TRUNK_SUBSCRIBERS: &[(&str, &str)] = &[
    ("gate-user", "user-pw"),
    ("gate-admin", "admin-pw"),
    ("gate-out", "out-pw"),
];

/// The trunk password variables the dialplan of [`dialplan`] names.
pub const ENV: &[(&str, &str)] = &[
    ("T_USER_PW", "user-pw"),
    ("T_ADMIN_PW", "admin-pw"),
    ("T_OUT_PW", "out-pw"),
];

/// Admin 1001 (digit 1) and 1002 (digit 2) of the example: (ID, SIP password, signal).
pub const ADMIN_1: (&str, &str, &str) = ("1001", "demo-secret-1", "MAINTAIN-1");
pub const ADMIN_2: (&str, &str, &str) = ("1002", "demo-secret-2", "MAINTAIN-2");

/// Every password the tests use; none may appear in the audit or the log.
pub const SECRETS: &[&str] = &[
    "demo-secret-1",
    "demo-secret-2",
    "user-pw",
    "admin-pw",
    "out-pw",
    "phone-pw",
    "phone2-pw",
    "phone3-pw",
];

/// The demo PINs: digits, so only counted when not part of a longer run (ports, times).
pub const PINS: &[&str] = &["2468", "1357"];

/// `dialplans/example.json`.
pub fn example_dialplan() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dialplans/example.json"
        ))
        .expect("example dialplan"),
    )
    .expect("example dialplan is JSON")
}

/// `dialplans/example.json`'s admins, admin 1 calling back `sip:1001@pbx` and admin 2
/// `sip:1002@pbx`.
pub fn example_admins(k: &Kamailio) -> Value {
    let mut admins = example_dialplan()["admins"].clone();
    admins[0]["numbers"] = json!([format!("sip:1001@127.0.0.1:{}", k.port())]);
    admins[1]["numbers"] = json!([format!("sip:1002@127.0.0.1:{}", k.port())]);
    admins
}

/// Merges `over` into `base`: objects key by key, anything else replaced.
pub fn merge(base: &mut Value, over: &Value) {
    match (base.as_object_mut(), over.as_object()) {
        (Some(b), Some(o)) => {
            for (key, v) in o {
                merge(b.entry(key.clone()).or_insert(Value::Null), v);
            }
        }
        _ => *base = over.clone(),
    }
}

/// The gate's dialplan behind `k`: both trunks register, the originate trunk authenticates to
/// the PBX, example admins, MD5 digest (sipsak), short callback timings; `over` is merged on
/// top (e.g. `json!({"callback": {"delay_ms": 0}})`).
pub fn dialplan(k: &Kamailio, over: Value) -> Value {
    dialplan_at(&k.sip_uri(), example_admins(k), over)
}

/// [`dialplan`] for a PBX at `pbx_uri`, with admin 1 calling back `admin1_numbers` only and
/// an answered callback held 1 s.
pub fn pbx_dialplan(pbx_uri: &str, admin1_numbers: &[String]) -> Value {
    let mut admins = example_dialplan()["admins"].clone();
    admins[0]["numbers"] = json!(admin1_numbers);
    dialplan_at(
        pbx_uri,
        admins,
        json!({ "callback": { "answered_hold_s": 1 } }),
    )
}

/// The dialplan of [`dialplan`] with the PBX at `pbx` and the given admins.
pub fn dialplan_at(pbx: &str, admins: Value, over: Value) -> Value {
    let mut plan = json!({
        "trunks": {
            "user": { "listen": format!("127.0.0.1:{}", free_port()), "registrar": pbx,
                      "aor": "sip:gate-user@127.0.0.1", "auth_username": "gate-user",
                      "password_env": "T_USER_PW", "expires_s": 60 },
            "admin": { "listen": format!("127.0.0.1:{}", free_port()), "registrar": pbx,
                       "aor": "sip:gate-admin@127.0.0.1", "auth_username": "gate-admin",
                       "password_env": "T_ADMIN_PW", "expires_s": 60 },
            "originate": { "listen": format!("127.0.0.1:{}", free_port()), "proxy": pbx,
                           "from": "sip:gate-out@127.0.0.1", "auth_username": "gate-out",
                           "password_env": "T_OUT_PW" }
        },
        "admins": admins,
        "security": { "digest_algorithms": ["MD5"] },
        "callback": { "delay_ms": 300, "ring_timeout_s": 5, "answered_hold_s": 2 },
        "modem": { "connect_timeout_s": 2 }
    });
    merge(&mut plan, &over);
    plan
}

/// Kamailio and a gate started with [`dialplan`]`(k, over)`, both trunks registered.
pub fn pbx_and_gate(over: Value) -> (Kamailio, Gate) {
    let k = Kamailio::start(SUBSCRIBERS).expect("kamailio");
    let gate = Gate::start(dialplan(&k, over), ENV).expect("dialback starts");
    for trunk in ["gate-admin", "gate-user"] {
        assert!(
            k.wait_registered(trunk, Duration::from_secs(10)),
            "{trunk} not registered: {}",
            gate.log()
        );
    }
    (k, gate)
}

/// A SIPp phone running `sipp`, registered at Kamailio as `user`.
pub fn phone(k: &Kamailio, sipp: Sipp, user: &str, password: &str) -> SippRun {
    let run = sipp.serve().expect("phone starts");
    uac::register(&Register::new(
        k.sip_addr(),
        user,
        password,
        &format!("sip:{user}@127.0.0.1:{}", run.port()),
    ))
    .expect("phone registers");
    run
}

/// Admin 1's phone for a modem callback: a socket of the test's own for the call's RTP (the
/// test runs a modem or plays audio on it) and SIPp `uas_answer_modem.xml` answering with
/// that port in its SDP, registered at Kamailio as 1001; SIPp gives up after `within`.
pub async fn modem_phone(
    k: &Kamailio,
    within: Duration,
) -> (std::sync::Arc<tokio::net::UdpSocket>, SippRun) {
    let rtp = std::sync::Arc::new(
        tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("rtp socket"),
    );
    let rtp_port = rtp.local_addr().expect("rtp address").port();
    let run = phone(
        k,
        Sipp::scenario("uas_answer_modem.xml")
            .var("modem_port", &rtp_port.to_string())
            .timeout(within),
        "1001",
        "phone-pw",
    );
    (rtp, run)
}

/// One administrator MESSAGE through the PBX.
pub struct Message<'a> {
    /// The gate trunk's user part: `gate-admin` or `gate-user`.
    pub to: &'a str,
    /// Digest username and password sipsak answers the 401 with (`None`: no `-a`).
    pub user: &'a str,
    pub password: Option<&'a str>,
    pub body: &'a str,
    /// The From user part (never an identity for the gate).
    pub from: &'a str,
    /// Extra header lines, each ending in `\r\n`.
    pub headers: &'a str,
}

impl<'a> Message<'a> {
    /// `(ID, password, body)` to the admin trunk from a roaming address.
    pub fn admin((user, password, body): (&'a str, &'a str, &'a str)) -> Self {
        Message {
            to: "gate-admin",
            user,
            password: Some(password),
            body,
            from: "roaming-admin",
            headers: "",
        }
    }
}

static MESSAGE_SEQ: AtomicU32 = AtomicU32::new(0);

/// Sends `m` through the PBX with sipsak (which answers the gate's 401 with the digest
/// password); a fresh Call-ID each time. Returns sipsak's exit code: 0 iff a 2xx came back.
pub fn send(k: &Kamailio, m: &Message) -> Option<i32> {
    send_to(k.sip_addr(), m)
}

/// Sends `m` to `to` (the PBX, or a gate trunk directly, as an attacker who found it would).
pub fn send_to(to: SocketAddr, m: &Message) -> Option<i32> {
    let mut file = tempfile::NamedTempFile::new().expect("temp");
    let n = MESSAGE_SEQ.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id();
    let (gate, from, headers, body) = (m.to, m.from, m.headers, m.body);
    write!(
        file,
        "MESSAGE sip:{gate}@{to} SIP/2.0\r\nFrom: <sip:{from}@127.0.0.1>;tag=m{pid}x{n}\r\nTo: <sip:{gate}@{to}>\r\nCall-ID: msg-{pid}-{n}@127.0.0.1\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n{headers}Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut cmd = Command::new("sipsak");
    cmd.arg("-f")
        .arg(file.path())
        .arg("-s")
        .arg(format!("sip:{gate}@{to}"))
        .args(["-u", m.user]);
    if let Some(pw) = m.password {
        cmd.args(["-a", pw]);
    }
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sipsak runs")
        .code()
}

/// `MAINTAIN-{digit}` style MESSAGE `(ID, password, body)` to the admin trunk.
pub fn maintain(k: &Kamailio, admin: (&str, &str, &str)) -> Option<i32> {
    send(k, &Message::admin(admin))
}

/// How many audit events equal `event` (`event` or `event:reason`).
pub fn count(events: &[String], event: &str) -> usize {
    events.iter().filter(|e| *e == event).count()
}

/// Waits until the gate's audit holds at least `n` events `event`.
pub fn wait_for_n(gate: &Gate, event: &str, n: usize, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if count(&gate.audit_events(), event) >= n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Waits until the gate's audit holds `event`.
pub fn wait_for(gate: &Gate, event: &str, within: Duration) -> bool {
    wait_for_n(gate, event, 1, within)
}

/// The audit file's text.
pub fn audit_text(gate: &Gate) -> String {
    std::fs::read_to_string(gate.dir().join("audit.jsonl")).unwrap_or_default()
}

/// Neither the audit nor the log holds a password of [`SECRETS`] or a PIN of [`PINS`].
pub fn assert_no_secret(audit: &str, log: &str) {
    let all = format!("{audit}\n{log}");
    for secret in SECRETS {
        assert!(!all.contains(secret), "{secret} leaked");
    }
    for pin in PINS {
        assert!(!mentions(&all, pin), "PIN {pin} leaked");
    }
}
