//! The whole loop up to the console (issues 4 and 5): MAINTAIN-1 through Kamailio → callback
//! to the phone registered as admin 1's number → the gate's calling V.22bis modem trains with
//! our answering modem running on the phone's RTP socket → the console asks for a login again
//! (the callback leg is never trusted on a bare answer) → `status` → `quit` → BYE. Also: a
//! login with another admin's valid credentials is refused.

mod support;

use std::time::Duration;

use dialback::media::g711::Law;
use dialback::modem::v22bis::{Rate, Role};
use dialback::runtime::modem_media::{self, LineEvent, LineParams, ModemLine};
use serde_json::{json, Value};
use support::dialback::Gate;
use support::gate_pbx;
use support::kamailio::Kamailio;

const SUBSCRIBERS: &[(&str, &str)] = &[
    ("gate-user", "user-pw"),
    ("gate-admin", "admin-pw"),
    ("gate-out", "out-pw"),
    ("1001", "phone-pw"),
];
const ENV: &[(&str, &str)] = &[
    ("T_USER_PW", "user-pw"),
    ("T_ADMIN_PW", "admin-pw"),
    ("T_OUT_PW", "out-pw"),
];

fn dialplan(k: &Kamailio) -> Value {
    gate_pbx::dialplan(
        k,
        json!({
            "callback": { "ring_timeout_s": 5 },
            "modem": { "modulations": ["v22bis"], "target": "console", "idle_s": 30, "max_s": 120,
                       "login_tries": 2, "connect_timeout_s": 20 }
        }),
    )
}

fn maintain(k: &Kamailio) -> Option<i32> {
    gate_pbx::maintain(k, gate_pbx::ADMIN_1)
}

/// Read from the line until `needle` has appeared; returns everything read.
async fn read_until(line: &mut ModemLine, needle: &str, within: Duration) -> String {
    let mut seen = String::new();
    let end = tokio::time::Instant::now() + within;
    while !seen.contains(needle) {
        match tokio::time::timeout_at(end, line.events.recv()).await {
            Ok(Some(LineEvent::Data(d))) => seen.push_str(&String::from_utf8_lossy(&d)),
            Ok(Some(LineEvent::Connected { .. })) => {}
            other => panic!("waiting for {needle:?}: {other:?}; so far {seen:?}"),
        }
    }
    seen
}

async fn session(pin: &str, id: &str) -> (Gate, support::sipp::SippOutcome, String) {
    let k = Kamailio::start(SUBSCRIBERS).expect("kamailio");
    let (rtp, phone) = gate_pbx::modem_phone(&k, Duration::from_secs(90)).await;
    let gate = Gate::start(dialplan(&k), ENV).expect("dialback starts");
    assert!(
        k.wait_registered("gate-admin", Duration::from_secs(10)),
        "{}",
        gate.log()
    );
    assert_eq!(maintain(&k), Some(0), "{}", gate.log());
    // The administrator's answering modem on the phone's RTP socket; the far address is
    // learned from the gate's first packets (symmetric RTP).
    let mut line = modem_media::spawn(
        rtp,
        LineParams {
            remote: "0.0.0.0:0".parse().expect("addr"),
            law: Law::Ulaw,
            payload_type: 0,
            modem: dialback::runtime::modem_media::LineModem::V22bis,
            role: Role::Answerer,
            max_rate: Rate::R2400,
            tx_level_dbm0: -13.0,
            jitter: Duration::from_millis(60),
            rtp_timeout: None,
        },
    )
    .expect("answerer");
    let mut transcript = read_until(&mut line, "login: ", Duration::from_secs(30)).await;
    line.tx
        .send(format!("{id}\r").into_bytes())
        .await
        .expect("tx");
    transcript += &read_until(&mut line, "PIN: ", Duration::from_secs(10)).await;
    line.tx
        .send(format!("{pin}\r").into_bytes())
        .await
        .expect("tx");
    if pin == "2468" && id == "1001" {
        transcript += &read_until(&mut line, "dialback> ", Duration::from_secs(15)).await;
        line.tx.send(b"status\r".to_vec()).await.expect("tx");
        transcript += &read_until(&mut line, "dialback> ", Duration::from_secs(15)).await;
        line.tx.send(b"quit\r".to_vec()).await.expect("tx");
    } else {
        transcript += &read_until(&mut line, "Login incorrect", Duration::from_secs(15)).await;
        for _ in 0..2 {
            if let Ok(Some(LineEvent::Data(d))) =
                tokio::time::timeout(Duration::from_secs(5), line.events.recv()).await
            {
                transcript.push_str(&String::from_utf8_lossy(&d));
            }
            line.tx
                .send(format!("{id}\r{pin}\r").into_bytes())
                .await
                .expect("tx");
        }
    }
    let outcome = tokio::task::spawn_blocking(move || phone.wait())
        .await
        .expect("join");
    (gate, outcome, transcript)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_trains_v22bis_and_the_console_logs_in_again_then_quits() {
    let (gate, outcome, transcript) = session("2468", "1001").await;
    assert!(transcript.contains("CONNECT 2400"), "{transcript}");
    assert!(
        transcript.contains("V.22bis 2400"),
        "status output: {transcript}"
    );
    assert!(
        !transcript.contains("2468"),
        "the PIN is not echoed: {transcript}"
    );
    assert!(
        outcome.passed(),
        "the gate hung up after quit: {}",
        outcome.report()
    );
    let events = gate.audit_events();
    for e in [
        "signal.ok",
        "callback.placed",
        "callback.answered",
        "modem.connect:v22bis",
        "session.start",
        "session.end:hangup",
    ] {
        assert!(events.iter().any(|x| x == e), "{e} in {events:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_console_refuses_another_admins_credentials() {
    let (gate, outcome, transcript) = session("1357", "1002").await;
    assert!(transcript.contains("Login incorrect"), "{transcript}");
    assert!(!transcript.contains("dialback> "), "no shell: {transcript}");
    assert!(
        outcome.passed(),
        "hung up after the tries: {}",
        outcome.report()
    );
    let events = gate.audit_events();
    assert!(
        events.iter().any(|x| x == "auth.fail:reauth_failed"),
        "{events:?}"
    );
    assert!(!events.iter().any(|x| x == "session.start"), "{events:?}");
}
