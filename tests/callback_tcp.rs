//! The live callback through Kamailio with the dialplan's fallback list and a `tcp:` target
//! (issue 5 points 3 and 5): MAINTAIN-1 → callback to the phone registered as admin 1's number
//! → the gate's link tries `["v22bis", "v21"]` against an answering modem that speaks only
//! V.21 (answer tone, then channel 2), falls back on the same call, connects at 300 bit/s →
//! the administrator logs in again over the modem → only then does the gate connect to the
//! TCP echo service on 127.0.0.1 → bytes echo through the modem → the service closes → the
//! gate drains the line and hangs up (BYE). Audited: `modem.connect:v21`, `session.start`,
//! `session.end:hangup`.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dialback::media::g711::Law;
use dialback::modem::v22bis::{Rate, Role};
use dialback::runtime::modem_media::{self, LineEvent, LineModem, LineParams, ModemLine};
use serde_json::{json, Value};
use support::dialback::Gate;
use support::gate_pbx;
use support::kamailio::Kamailio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

fn dialplan(k: &Kamailio, target_port: u16) -> Value {
    gate_pbx::dialplan(
        k,
        json!({
            "callback": { "ring_timeout_s": 5 },
            "modem": { "modulations": ["v22bis", "v21"], "target": format!("tcp:127.0.0.1:{target_port}"),
                       "idle_s": 30, "max_s": 120, "login_tries": 2, "connect_timeout_s": 20 }
        }),
    )
}

fn maintain(k: &Kamailio) -> Option<i32> {
    gate_pbx::maintain(k, gate_pbx::ADMIN_1)
}

/// A TCP service that greets, echoes, and closes after a line `bye`; counts connections.
async fn echo_service() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = s.write_all(b"echo ready\r\n").await;
                let mut buf = [0u8; 256];
                let mut seen = Vec::new();
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if seen.windows(5).any(|w| w == b"bye\r\n") {
                        let _ = s.write_all(b"closing\r\n").await;
                        return;
                    }
                }
            });
        }
    });
    (port, accepted)
}

/// Read from the line until `needle` has appeared; returns everything read.
async fn read_until(line: &mut ModemLine, needle: &str, within: Duration, gate: &Gate) -> String {
    let mut seen = String::new();
    let end = tokio::time::Instant::now() + within;
    while !seen.contains(needle) {
        match tokio::time::timeout_at(end, line.events.recv()).await {
            Ok(Some(LineEvent::Data(d))) => seen.push_str(&String::from_utf8_lossy(&d)),
            Ok(Some(LineEvent::Connected { .. })) => {}
            other => panic!(
                "waiting for {needle:?}: {other:?}; so far {seen:?}; gate log:\n{}",
                gate.log()
            ),
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_falls_back_to_v21_and_bridges_to_the_tcp_target_after_relogin() {
    let (target_port, accepted) = echo_service().await;
    let k = Kamailio::start(SUBSCRIBERS).expect("kamailio");
    let (rtp, phone) = gate_pbx::modem_phone(&k, Duration::from_secs(90)).await;
    let gate = Gate::start(dialplan(&k, target_port), ENV).expect("dialback starts");
    assert!(
        k.wait_registered("gate-admin", Duration::from_secs(10)),
        "{}",
        gate.log()
    );
    assert_eq!(maintain(&k), Some(0), "{}", gate.log());
    // The administrator's modem speaks only V.21; the far address is learned from the gate's
    // first packets (symmetric RTP).
    let mut line = modem_media::spawn(
        rtp,
        LineParams {
            remote: "0.0.0.0:0".parse().expect("addr"),
            law: Law::Ulaw,
            payload_type: 0,
            modem: LineModem::V21,
            role: Role::Answerer,
            max_rate: Rate::R1200,
            tx_level_dbm0: -13.0,
            jitter: Duration::from_millis(60),
            rtp_timeout: None,
        },
    )
    .expect("answerer");
    let mut transcript = read_until(&mut line, "login: ", Duration::from_secs(30), &gate).await;
    assert!(transcript.contains("CONNECT 300"), "{transcript}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "no target before the login"
    );
    line.tx.send(b"1001\r".to_vec()).await.expect("tx");
    transcript += &read_until(&mut line, "PIN: ", Duration::from_secs(10), &gate).await;
    line.tx.send(b"2468\r".to_vec()).await.expect("tx");
    transcript += &read_until(&mut line, "echo ready\r\n", Duration::from_secs(15), &gate).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    line.tx
        .send(b"hello target\r\n".to_vec())
        .await
        .expect("tx");
    transcript += &read_until(
        &mut line,
        "hello target\r\n",
        Duration::from_secs(10),
        &gate,
    )
    .await;
    line.tx.send(b"bye\r\n".to_vec()).await.expect("tx");
    transcript += &read_until(&mut line, "closing\r\n", Duration::from_secs(10), &gate).await;
    assert!(!transcript.contains("2468"), "the PIN is not echoed");
    let outcome = tokio::task::spawn_blocking(move || phone.wait())
        .await
        .expect("join");
    assert!(
        outcome.passed(),
        "the gate hung up after the target closed: {}",
        outcome.report()
    );
    let events = gate.audit_events();
    for e in [
        "callback.answered",
        "modem.connect:v21",
        "session.start",
        "session.end:hangup",
    ] {
        assert!(events.iter().any(|x| x == e), "{e} in {events:?}");
    }
}
