//! The whole MESSAGE path of issue 4 with real peers: Kamailio as the PBX (the gate's user and
//! admin trunks registered, the originate trunk authenticating with 407), a SIPp phone
//! registered as administrator 1's first number, and sipsak as the administrator's SIP
//! client. `MAINTAIN-1` with admin 1's digest credentials → 202 → audit → callback INVITE from
//! the originate trunk through Kamailio → the phone answers → media → BYE after the hold time.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::dialback::{free_port, Gate};
use support::kamailio::Kamailio;
use support::sipp::Sipp;
use support::uac::{self, Register};

const SUBSCRIBERS: &[(&str, &str)] = &[
    ("gate-user", "user-pw"),
    ("gate-admin", "admin-pw"),
    ("gate-out", "out-pw"),
    ("1001", "phone-pw"),
    ("1002", "phone2-pw"),
];

fn dialplan(k: &Kamailio, numbers: Vec<String>) -> Value {
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dialplans/example.json"
        ))
        .expect("example dialplan"),
    )
    .expect("json");
    let mut admins = example["admins"].clone();
    admins[0]["numbers"] = json!(numbers);
    admins[1]["numbers"] = json!([format!("sip:1002@127.0.0.1:{}", k.port())]);
    let pbx = k.sip_uri();
    json!({
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
    })
}

const ENV: &[(&str, &str)] = &[
    ("T_USER_PW", "user-pw"),
    ("T_ADMIN_PW", "admin-pw"),
    ("T_OUT_PW", "out-pw"),
];

/// The administrator's MESSAGE through the PBX to `gate_user@pbx`; sipsak answers the gate's
/// 401 with admin 1001's digest password. Returns sipsak's exit code.
fn maintain(k: &Kamailio, gate_user: &str, user: &str, password: &str, body: &str) -> Option<i32> {
    let mut file = tempfile::NamedTempFile::new().expect("temp");
    let to = k.sip_addr();
    write!(
        file,
        "MESSAGE sip:{gate_user}@{to} SIP/2.0\r\nFrom: <sip:roaming-admin@127.0.0.1>;tag=m{}\r\nTo: <sip:{gate_user}@{to}>\r\nCall-ID: maintain-{}-{gate_user}@127.0.0.1\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        std::process::id(),
        std::process::id(),
        body.len()
    )
    .expect("write");
    Command::new("sipsak")
        .arg("-f")
        .arg(file.path())
        .arg("-s")
        .arg(format!("sip:{gate_user}@{to}"))
        .args(["-u", user, "-a", password])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sipsak runs")
        .code()
}

fn wait_for(gate: &Gate, event: &str, within: Duration) -> bool {
    let end = std::time::Instant::now() + within;
    while std::time::Instant::now() < end {
        if gate.audit_events().iter().any(|e| e == event) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn callback_reaches_the_phone(gate_user: &str) {
    let k = Kamailio::start(SUBSCRIBERS).expect("kamailio");
    let phone = Sipp::scenario("uas_answer.xml").serve().expect("phone");
    uac::register(&Register::new(
        k.sip_addr(),
        "1001",
        "phone-pw",
        &format!("sip:1001@127.0.0.1:{}", phone.port()),
    ))
    .expect("phone registers as 1001");
    let gate = Gate::start(
        dialplan(&k, vec![format!("sip:1001@127.0.0.1:{}", k.port())]),
        ENV,
    )
    .expect("dialback starts");
    for u in ["gate-user", "gate-admin"] {
        assert!(
            k.wait_registered(u, Duration::from_secs(10)),
            "{}",
            gate.log()
        );
    }
    assert_eq!(
        maintain(&k, gate_user, "1001", "demo-secret-1", "MAINTAIN-1"),
        Some(0),
        "202 through the PBX\n{}",
        gate.log()
    );
    assert!(
        wait_for(
            &gate,
            "session.end:modem_training_failed",
            Duration::from_secs(20)
        ),
        "{:?}\n{}",
        gate.audit_events(),
        gate.log()
    );
    let outcome = phone.wait();
    assert!(
        outcome.passed(),
        "the phone was called, answered and hung up: {}",
        outcome.report()
    );
    let events = gate.audit_events();
    // The phone answers without a modem: the callback is ended as a training failure and no
    // maintenance session starts (tests/callback_modem.rs covers a real modem).
    let order: Vec<&str> = [
        "signal.ok",
        "callback.placed",
        "callback.answered",
        "session.end:modem_training_failed",
    ]
    .to_vec();
    let mut pos = 0;
    for e in &events {
        if order.get(pos) == Some(&e.as_str()) {
            pos += 1;
        }
    }
    assert_eq!(pos, order.len(), "audit order {events:?}");
    let invites = outcome.received_requests("INVITE");
    assert_eq!(invites.len(), 1, "one callback INVITE");
    assert!(
        invites[0].contains("gate-out"),
        "from the originate trunk: {}",
        invites[0]
    );
    let all = format!(
        "{}{}",
        gate.log(),
        std::fs::read_to_string(gate.dir().join("audit.jsonl")).unwrap_or_default()
    );
    for secret in ["demo-secret-1", "out-pw", "admin-pw", "user-pw"] {
        assert!(!all.contains(secret), "{secret} leaked");
    }
}

#[test]
fn maintain_message_on_the_admin_trunk_calls_admin_1_back() {
    callback_reaches_the_phone("gate-admin");
}

#[test]
fn maintain_message_on_the_user_trunk_calls_admin_1_back() {
    callback_reaches_the_phone("gate-user");
}

#[test]
fn unreachable_first_number_falls_back_to_the_second() {
    let k = Kamailio::start(SUBSCRIBERS).expect("kamailio");
    let phone = Sipp::scenario("uas_answer.xml").serve().expect("phone");
    uac::register(&Register::new(
        k.sip_addr(),
        "1002",
        "phone2-pw",
        &format!("sip:1002@127.0.0.1:{}", phone.port()),
    ))
    .expect("second phone registers");
    // 1001 is not registered: Kamailio answers 404; the gate tries the next number.
    let numbers = vec![
        format!("sip:1001@127.0.0.1:{}", k.port()),
        format!("sip:1002@127.0.0.1:{}", k.port()),
    ];
    let gate = Gate::start(dialplan(&k, numbers), ENV).expect("dialback starts");
    assert!(k.wait_registered("gate-admin", Duration::from_secs(10)));
    assert_eq!(
        maintain(&k, "gate-admin", "1001", "demo-secret-1", "MAINTAIN-1"),
        Some(0)
    );
    assert!(
        wait_for(
            &gate,
            "session.end:modem_training_failed",
            Duration::from_secs(25)
        ),
        "{:?}\n{}",
        gate.audit_events(),
        gate.log()
    );
    let events = gate.audit_events();
    assert!(
        events.iter().any(|e| e.starts_with("callback.failed")),
        "{events:?}"
    );
    assert_eq!(
        events.iter().filter(|e| *e == "callback.placed").count(),
        2,
        "{events:?}"
    );
    assert!(phone.wait().passed());
}

#[test]
fn wrong_password_or_foreign_digit_places_no_callback() {
    let k = Kamailio::start(SUBSCRIBERS).expect("kamailio");
    let gate = Gate::start(
        dialplan(&k, vec![format!("sip:1001@127.0.0.1:{}", k.port())]),
        ENV,
    )
    .expect("dialback starts");
    assert!(k.wait_registered("gate-admin", Duration::from_secs(10)));
    assert_ne!(
        maintain(&k, "gate-admin", "1001", "wrong", "MAINTAIN-1"),
        Some(0)
    );
    assert_eq!(
        maintain(&k, "gate-admin", "1001", "demo-secret-1", "MAINTAIN-2"),
        Some(0)
    );
    std::thread::sleep(Duration::from_secs(1));
    let events = gate.audit_events();
    assert!(
        !events.iter().any(|e| e.starts_with("callback")),
        "{events:?}"
    );
    assert_eq!(
        events,
        vec!["auth.fail:bad_credentials", "signal.fail:digit_not_owned"]
    );
}
