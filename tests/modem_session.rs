//! The callback's maintenance session with a `tcp:HOST:PORT` target, over real RTP on loopback:
//! the gate's session task (`runtime::session::run`, as the callback starts it) on our calling
//! modem, the administrator's answering modem in the test, and a TCP echo service on
//! 127.0.0.1 as the target. The administrator must log in again before any byte reaches the
//! target; then bytes flow both ways through the bounded bridge, and the session ends on the
//! target's close (after the line drained), on carrier loss, on the idle limit, or on failed
//! logins (the target never sees a connection).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dialback::config::{self, ModemTarget};
use dialback::gate::audit::Reason;
use dialback::gate::pin::hash_pin;
use dialback::gate::policy::{AdminId, Policy};
use dialback::gate::Secret;
use dialback::media::g711::Law;
use dialback::modem::v22bis::{Rate, Role};
use dialback::runtime::audit::AuditLog;
use dialback::runtime::modem_media::{self, LineEvent, LineModem, LineParams, ModemLine};
use dialback::runtime::session::{self, SessionSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

const PIN: &str = "2468";

/// A TCP service that greets, echoes, and closes after a line `bye`; counts connections.
async fn echo_service() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = s.write_all(b"echo ready\r\n").await;
                let mut buf = [0u8; 1024];
                let mut seen = Vec::new();
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if s.write_all(&buf[..n]).await.is_err() {
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

/// Settings as the callback builds them, from a parsed dialplan with one administrator.
fn settings(port: u16, dir: &std::path::Path) -> (AdminId, SessionSettings) {
    settings_with_idle(port, dir, 30)
}

fn settings_with_idle(port: u16, dir: &std::path::Path, idle_s: u32) -> (AdminId, SessionSettings) {
    let pin = hash_pin(&Secret::new(PIN), &mut rand::rngs::OsRng).expect("hash");
    let plan = serde_json::json!({
        "trunks": {
            // Only parsed: nothing listens on these.
            "user": { "listen": "127.0.0.1:1", "register": false, "aor": "sip:u@127.0.0.1" },
            "admin": { "listen": "127.0.0.1:2", "register": false, "aor": "sip:a@127.0.0.1" },
            "originate": { "listen": "127.0.0.1:3", "proxy": "sip:127.0.0.1:5060",
                           "from": "sip:gate-out@127.0.0.1" }
        },
        "admins": [{ "digit": 1, "id": "1001", "name": "Test Admin", "pin": pin,
                     "digest": { "realm": "dialback", "ha1_md5": "0123456789abcdef0123456789abcdef" },
                     "numbers": ["sip:admin@127.0.0.1"] }],
        "modem": { "modulations": ["v22bis"], "target": format!("tcp:127.0.0.1:{port}"),
                   "idle_s": idle_s, "max_s": 60, "login_tries": 2 },
        "audit": { "path": dir.join("audit.jsonl").display().to_string(), "fsync": false },
        "security": { "state_path": dir.join("state.json").display().to_string() }
    });
    let loaded = config::parse("test.json", &plan.to_string(), &|_| None, &|p| {
        std::fs::read_to_string(p)
    })
    .expect("dialplan");
    let d = loaded.dialplan;
    assert_eq!(
        d.modem.target,
        ModemTarget::Tcp {
            host: "127.0.0.1".into(),
            port
        }
    );
    let policy = Policy::parse(dialback::runtime::gate::policy_input(&d)).expect("policy");
    let audit = AuditLog::open(&d.audit.path, false).expect("audit");
    (
        AdminId::parse("1001").expect("id"),
        SessionSettings {
            modem: d.modem.clone(),
            policy: Arc::new(policy),
            audit: Some(audit),
        },
    )
}

/// The gate's calling line and the administrator's answering line, V.22bis over RTP.
async fn lines() -> (ModemLine, ModemLine) {
    let a = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let b = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let params = |remote, role| LineParams {
        remote,
        law: Law::Ulaw,
        payload_type: Law::Ulaw.payload_type(),
        modem: LineModem::V22bis,
        role,
        max_rate: Rate::R2400,
        tx_level_dbm0: -13.0,
        jitter: Duration::from_millis(60),
        rtp_timeout: None,
    };
    let gate = modem_media::spawn(
        a.clone(),
        params(b.local_addr().expect("addr"), Role::Caller),
    )
    .expect("gate line");
    let admin = modem_media::spawn(
        b.clone(),
        params(a.local_addr().expect("addr"), Role::Answerer),
    )
    .expect("admin line");
    (gate, admin)
}

/// What the administrator's terminal received, and how far the test has read it.
#[derive(Default)]
struct Screen {
    bytes: Vec<u8>,
    read: usize,
}

/// Read from the administrator's line until `needle` shows after what was read (20 s at most).
async fn expect(line: &mut ModemLine, screen: &mut Screen, needle: &[u8]) {
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(i) = screen.bytes[screen.read..]
            .windows(needle.len())
            .position(|w| w == needle)
        {
            screen.read += i + needle.len();
            return;
        }
        match tokio::time::timeout_at(end, line.events.recv()).await {
            Ok(Some(LineEvent::Data(d))) => screen.bytes.extend_from_slice(&d),
            Ok(Some(_)) => {}
            other => panic!(
                "{:?} never came ({other:?}); screen: {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&screen.bytes)
            ),
        }
    }
}

async fn send(line: &ModemLine, bytes: &[u8]) {
    for c in bytes.chunks(64) {
        line.tx.send(c.to_vec()).await.expect("admin tx");
    }
}

fn audit_events(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            format!(
                "{}:{}",
                v["event"].as_str().unwrap_or(""),
                v["reason"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dialback-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_target_is_reached_only_after_the_relogin_and_echoes_both_ways() {
    let dir = temp_dir("tcp-echo");
    let (port, accepted) = echo_service().await;
    let (admin, s) = settings(port, &dir);
    let (gate, mut line) = lines().await;
    let session = tokio::spawn(session::run(gate, admin, s));
    let mut screen = Screen::default();
    expect(&mut line, &mut screen, b"login: ").await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "no target before the login"
    );
    send(&line, b"1001\r").await;
    expect(&mut line, &mut screen, b"PIN: ").await;
    send(&line, format!("{PIN}\r").as_bytes()).await;
    expect(&mut line, &mut screen, b"welcome, 1001\r\n").await;
    expect(&mut line, &mut screen, b"echo ready\r\n").await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert!(
        !String::from_utf8_lossy(&screen.bytes).contains("dialback> "),
        "no console shell on a tcp target"
    );
    // 4 KiB both ways: more than every buffer on the path, so back-pressure must hold it.
    let bulk: Vec<u8> = (0..4096u32).map(|i| b'0' + (i % 43) as u8).collect();
    let mark = screen.bytes.len();
    send(&line, &bulk).await;
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    while screen.bytes.len() < mark + bulk.len() {
        match tokio::time::timeout_at(end, line.events.recv()).await {
            Ok(Some(LineEvent::Data(d))) => screen.bytes.extend_from_slice(&d),
            Ok(Some(_)) => {}
            other => panic!(
                "echo stopped at {} of {} bytes: {other:?}",
                screen.bytes.len() - mark,
                bulk.len()
            ),
        }
    }
    assert_eq!(
        &screen.bytes[mark..mark + bulk.len()],
        &bulk[..],
        "exact echo"
    );
    screen.read = mark + bulk.len();
    // The target closes: what it sent last reaches the line, then the session ends.
    send(&line, b"bye\r\n").await;
    expect(&mut line, &mut screen, b"closing\r\n").await;
    let reason = tokio::time::timeout(Duration::from_secs(30), session)
        .await
        .expect("session ends")
        .expect("join");
    assert_eq!(reason, Reason::Hangup);
    let events = audit_events(&dir);
    for e in ["modem.connect:v22bis", "session.start:"] {
        assert!(events.iter().any(|x| x == e), "{e} in {events:?}");
    }
    assert!(!std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap_or_default()
        .contains(PIN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_target_never_sees_a_connection_when_the_relogin_fails() {
    let dir = temp_dir("tcp-refused");
    let (port, accepted) = echo_service().await;
    let (admin, s) = settings(port, &dir);
    let (gate, mut line) = lines().await;
    let session = tokio::spawn(session::run(gate, admin, s));
    let mut screen = Screen::default();
    for _ in 0..2 {
        expect(&mut line, &mut screen, b"login: ").await;
        send(&line, b"1001\r").await;
        expect(&mut line, &mut screen, b"PIN: ").await;
        send(&line, b"0000\r").await;
        expect(&mut line, &mut screen, b"Login incorrect").await;
    }
    let reason = tokio::time::timeout(Duration::from_secs(30), session)
        .await
        .expect("session ends")
        .expect("join");
    assert_eq!(reason, Reason::ReauthFailed);
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    let events = audit_events(&dir);
    assert_eq!(
        events
            .iter()
            .filter(|e| *e == "auth.fail:reauth_failed")
            .count(),
        2,
        "{events:?}"
    );
    assert!(!events.iter().any(|e| e.starts_with("session.start")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carrier_loss_ends_the_tcp_bridge() {
    let dir = temp_dir("tcp-carrier");
    let (port, accepted) = echo_service().await;
    let (admin, s) = settings(port, &dir);
    let (gate, mut line) = lines().await;
    let session = tokio::spawn(session::run(gate, admin, s));
    let mut screen = Screen::default();
    expect(&mut line, &mut screen, b"login: ").await;
    send(&line, b"1001\r").await;
    expect(&mut line, &mut screen, b"PIN: ").await;
    send(&line, format!("{PIN}\r").as_bytes()).await;
    expect(&mut line, &mut screen, b"echo ready\r\n").await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    // The administrator's modem goes away mid-session.
    drop(line);
    let reason = tokio::time::timeout(Duration::from_secs(10), session)
        .await
        .expect("session ends")
        .expect("join");
    assert_eq!(reason, Reason::CarrierLost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_tcp_target_ends_the_session_with_a_notice() {
    let dir = temp_dir("tcp-unreachable");
    // A port nobody listens on: bind, note, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let (admin, s) = settings(port, &dir);
    let (gate, mut line) = lines().await;
    let session = tokio::spawn(session::run(gate, admin, s));
    let mut screen = Screen::default();
    expect(&mut line, &mut screen, b"login: ").await;
    send(&line, b"1001\r").await;
    expect(&mut line, &mut screen, b"PIN: ").await;
    send(&line, format!("{PIN}\r").as_bytes()).await;
    expect(&mut line, &mut screen, b"target unreachable\r\n").await;
    let reason = tokio::time::timeout(Duration::from_secs(30), session)
        .await
        .expect("session ends")
        .expect("join");
    assert_eq!(reason, Reason::TargetUnreachable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tcp_bridge_ends_with_idle_timeout() {
    let dir = temp_dir("tcp-idle");
    let (port, _) = echo_service().await;
    let (admin, s) = settings_with_idle(port, &dir, 2);
    let (gate, mut line) = lines().await;
    let session = tokio::spawn(session::run(gate, admin, s));
    let mut screen = Screen::default();
    expect(&mut line, &mut screen, b"login: ").await;
    send(&line, b"1001\r").await;
    expect(&mut line, &mut screen, b"PIN: ").await;
    send(&line, format!("{PIN}\r").as_bytes()).await;
    expect(&mut line, &mut screen, b"echo ready\r\n").await;
    let quiet = std::time::Instant::now();
    let reason = tokio::time::timeout(Duration::from_secs(15), session)
        .await
        .expect("session ends")
        .expect("join");
    assert_eq!(reason, Reason::IdleTimeout);
    assert!(
        quiet.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        quiet.elapsed()
    );
}
