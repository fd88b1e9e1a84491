//! `dialback dial-in` (issue 6 point 1) against a running gate through Kamailio: the
//! administrator's end registers as 1001, sends the start signal (SIP MESSAGE answering the
//! PBX's 407 and the gate's 401, or a call keying `1001#2468#*62468246*1#` as RFC 4733 events
//! or in-band tones), takes the callback from `gate-out` only, trains the answering modem and
//! pipes a script (`1001`, `2468`, `status`, `quit`) to the console; the console's `status`
//! output must reach stdout and the process exit 0. Wrong credentials: a non-zero exit with
//! the no-callback message, and the failure in the gate's audit.

mod support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::dialback::{free_port, Gate};
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
/// The example dialplan's administrator 1: SIP password and PIN.
const SIP_PASSWORD: &str = "demo-secret-1";
const PIN: &str = "2468";
const SCRIPT: &str = "1001\n2468\nstatus\nquit\n";

/// The gate behind Kamailio; admin 1's number is 1001 at the PBX (where dial-in registers).
fn dialplan(k: &Kamailio, modulation: &str) -> Value {
    gate_pbx::dialplan(
        k,
        json!({
            "callback": { "ring_timeout_s": 10 },
            "modem": { "modulations": [modulation], "target": "console", "idle_s": 30, "max_s": 120,
                       "login_tries": 2, "connect_timeout_s": 20 }
        }),
    )
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Run `dialback dial-in` with `args` and secrets in the environment, `input` on stdin;
/// killed after `limit`.
fn dial_in(args: &[String], env: &[(&str, &str)], input: &str, limit: Duration) -> Run {
    let started = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dialback"));
    cmd.arg("dial-in")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("dial-in starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_string();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    // Bytes, not `read_to_string`: line noise before CONNECT need not be UTF-8.
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        String::from_utf8_lossy(&b).into_owned()
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        String::from_utf8_lossy(&b).into_owned()
    });
    let code = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st.code();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = writer.join();
    Run {
        code,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
        took: started.elapsed(),
    }
}

/// Flags for dial-in registered as 1001 at `k`, signalling the gate's admin number.
fn args(k: &Kamailio, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "--registrar",
        &k.sip_uri(),
        "--user",
        "1001",
        "--gate",
        &format!("sip:gate-admin@{}", k.sip_addr()),
        "--admin-id",
        "1001",
        "--digit",
        "1",
        "--callback-from",
        "gate-out",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// At most two modem sessions of this binary at once: each runs a gate, Kamailio and two
/// modems in real time, and the machine (2 cores in CI) must keep their 20 ms clocks.
static SESSIONS: Sessions = Sessions {
    busy: Mutex::new(0),
    freed: Condvar::new(),
};
const MAX_SESSIONS: usize = 2;

struct Sessions {
    busy: Mutex<usize>,
    freed: Condvar,
}

struct SessionSlot;

impl Sessions {
    fn take(&'static self) -> SessionSlot {
        let mut n = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= MAX_SESSIONS {
            n = self.freed.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        *n += 1;
        SessionSlot
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut n = SESSIONS.busy.lock().unwrap_or_else(|p| p.into_inner());
        *n -= 1;
        SESSIONS.freed.notify_one();
    }
}

fn start(modulation: &str) -> Option<(SessionSlot, Kamailio, Gate)> {
    if !support::have_program("kamailio") {
        return None;
    }
    let slot = SESSIONS.take();
    let k = Kamailio::start(SUBSCRIBERS).expect("kamailio");
    let gate = Gate::start(dialplan(&k, modulation), ENV).expect("dialback starts");
    assert!(
        k.wait_registered("gate-admin", Duration::from_secs(10)),
        "{}",
        gate.log()
    );
    Some((slot, k, gate))
}

fn assert_session(run: &Run, gate: &Gate, connect: &str, status_line: &str) {
    let all = format!(
        "exit {:?} after {:?}\n--- stdout\n{}\n--- stderr\n{}\n--- gate\n{}",
        run.code,
        run.took,
        run.stdout,
        run.stderr,
        gate.log()
    );
    assert_eq!(run.code, Some(0), "{all}");
    assert!(run.stderr.contains(connect), "{connect:?}: {all}");
    assert!(
        run.stderr.contains("callback ringing from sip:gate-out@"),
        "{all}"
    );
    assert!(run.stdout.contains("login: "), "{all}");
    assert!(run.stdout.contains(status_line), "status output: {all}");
    assert!(run.stdout.contains("goodbye"), "{all}");
    assert!(
        !run.stdout.contains('\r'),
        "pipes get plain newlines: {all}"
    );
    for secret in [PIN, SIP_PASSWORD, "phone-pw"] {
        assert!(
            !run.stderr.contains(secret) && !run.stdout.contains(secret),
            "{secret} shown: {all}"
        );
    }
    let events = gate.audit_events();
    for e in ["signal.ok", "callback.answered", "session.start"] {
        assert!(events.iter().any(|x| x == e), "{e} in {events:?}");
    }
}

#[test]
fn dial_in_by_message_through_kamailio_reaches_the_console_status() {
    let Some((_slot, k, gate)) = start("v22bis") else {
        return;
    };
    let run = dial_in(
        &args(&k, &["--wait-s", "20"]),
        &[
            ("DIALBACK_DIALIN_PBX_PASSWORD", "phone-pw"),
            ("DIALBACK_DIALIN_PASSWORD", SIP_PASSWORD),
        ],
        SCRIPT,
        Duration::from_secs(60),
    );
    assert_session(
        &run,
        &gate,
        "CONNECT 2400 V.22bis",
        "session: admin 1001 over V.22bis 2400 bit/s",
    );
    assert!(
        run.stderr.contains("challenge 407 answered"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("challenge 401 answered"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("answered 202"), "{}", run.stderr);
}

#[test]
fn dial_in_by_rfc4733_call_through_kamailio_reaches_the_console_status() {
    let Some((_slot, k, gate)) = start("v22bis") else {
        return;
    };
    let run = dial_in(
        &args(&k, &["--via", "dtmf", "--wait-s", "30"]),
        &[
            ("DIALBACK_DIALIN_PBX_PASSWORD", "phone-pw"),
            ("DIALBACK_DIALIN_PIN", PIN),
        ],
        SCRIPT,
        Duration::from_secs(75),
    );
    assert_session(
        &run,
        &gate,
        "CONNECT 2400 V.22bis",
        "session: admin 1001 over V.22bis 2400 bit/s",
    );
    assert!(
        run.stderr.contains("keys sent (RFC 4733)"),
        "{}",
        run.stderr
    );
}

#[test]
fn dial_in_by_inband_tones_through_kamailio_reaches_the_console_status() {
    let Some((_slot, k, gate)) = start("v22bis") else {
        return;
    };
    let run = dial_in(
        &args(&k, &["--via", "dtmf", "--inband", "--wait-s", "30"]),
        &[
            ("DIALBACK_DIALIN_PBX_PASSWORD", "phone-pw"),
            ("DIALBACK_DIALIN_PIN", PIN),
        ],
        SCRIPT,
        Duration::from_secs(75),
    );
    assert_session(
        &run,
        &gate,
        "CONNECT 2400 V.22bis",
        "session: admin 1001 over V.22bis 2400 bit/s",
    );
    assert!(run.stderr.contains("keys sent (in-band)"), "{}", run.stderr);
}

#[test]
fn dial_in_with_v21_through_kamailio_reaches_the_console_status() {
    let Some((_slot, k, gate)) = start("v21") else {
        return;
    };
    let run = dial_in(
        &args(&k, &["--modulation", "v21", "--wait-s", "20"]),
        &[
            ("DIALBACK_DIALIN_PBX_PASSWORD", "phone-pw"),
            ("DIALBACK_DIALIN_PASSWORD", SIP_PASSWORD),
        ],
        SCRIPT,
        Duration::from_secs(90),
    );
    assert_session(
        &run,
        &gate,
        "CONNECT 300 V.21",
        "session: admin 1001 over V.21",
    );
}

#[test]
fn dial_in_with_bell103_through_kamailio_reaches_the_console_status() {
    let Some((_slot, k, gate)) = start("bell103") else {
        return;
    };
    let run = dial_in(
        &args(&k, &["--modulation", "bell103", "--wait-s", "20"]),
        &[
            ("DIALBACK_DIALIN_PBX_PASSWORD", "phone-pw"),
            ("DIALBACK_DIALIN_PASSWORD", SIP_PASSWORD),
        ],
        SCRIPT,
        Duration::from_secs(90),
    );
    assert_session(
        &run,
        &gate,
        "CONNECT 300 Bell 103",
        "session: admin 1001 over",
    );
}

#[test]
fn dial_in_with_a_wrong_password_reports_no_callback_and_the_gate_audits_it() {
    let Some((_slot, k, gate)) = start("v22bis") else {
        return;
    };
    let run = dial_in(
        &args(&k, &["--wait-s", "3"]),
        &[
            ("DIALBACK_DIALIN_PBX_PASSWORD", "phone-pw"),
            ("DIALBACK_DIALIN_PASSWORD", "not-the-password"),
        ],
        SCRIPT,
        Duration::from_secs(30),
    );
    let all = format!("{:?}\n{}\n{}", run.code, run.stdout, run.stderr);
    assert_eq!(run.code, Some(1), "{all}");
    assert!(run.stderr.contains("no callback within 3 s"), "{all}");
    assert!(run.took < Duration::from_secs(20), "{all}");
    assert!(!run.stderr.contains("not-the-password"), "{all}");
    let events = gate.audit_events();
    assert!(
        events.iter().any(|e| e.starts_with("auth.fail")),
        "{events:?}"
    );
    assert!(!events.iter().any(|e| e == "callback.placed"), "{events:?}");
}

#[test]
fn dial_in_with_a_wrong_pbx_password_says_the_registration_failed() {
    if !support::have_program("kamailio") {
        return;
    }
    let k = Kamailio::start(SUBSCRIBERS).expect("kamailio");
    let run = dial_in(
        &args(&k, &[]),
        &[
            ("DIALBACK_DIALIN_PBX_PASSWORD", "wrong-phone-pw"),
            ("DIALBACK_DIALIN_PASSWORD", SIP_PASSWORD),
        ],
        "",
        Duration::from_secs(30),
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("registration at the PBX failed"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("wrong-phone-pw"), "{}", run.stderr);
}

#[test]
fn dial_in_with_a_wrong_pin_by_dtmf_waits_out_and_reports_no_callback() {
    let Some((_slot, k, gate)) = start("v22bis") else {
        return;
    };
    let run = dial_in(
        &args(&k, &["--via", "dtmf", "--wait-s", "4"]),
        &[
            ("DIALBACK_DIALIN_PBX_PASSWORD", "phone-pw"),
            ("DIALBACK_DIALIN_PIN", "9999"),
        ],
        SCRIPT,
        Duration::from_secs(45),
    );
    let all = format!("{:?}\n{}\n{}", run.code, run.stdout, run.stderr);
    assert_eq!(run.code, Some(1), "{all}");
    assert!(run.stderr.contains("no callback within 4 s"), "{all}");
    let events = gate.audit_events();
    assert!(
        events.iter().any(|e| e.starts_with("auth.fail")),
        "{events:?}"
    );
}

/// PBX-less: dial-in listens on a fixed address; the gate's originate trunk uses it as its
/// proxy and admin 1's number, as in `dialback demo`.
#[test]
fn dial_in_without_a_pbx_listens_directly_and_takes_the_callback() {
    direct(false);
}

/// While dial-in waits, a call that claims the gate's From but comes from another address gets
/// 403; the gate's callback that follows is still taken.
#[test]
fn dial_in_refuses_a_call_that_is_not_the_gates_callback() {
    direct(true);
}

fn rogue_invite(to: &str) -> String {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let me = sock.local_addr().expect("addr");
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";
    let req = format!(
        "INVITE sip:1001@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKrogue1\r\nMax-Forwards: 70\r\nFrom: <sip:gate-out@127.0.0.1>;tag=r1\r\nTo: <sip:1001@{to}>\r\nCall-ID: rogue-1@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:prankster@{me}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    sock.send_to(req.as_bytes(), to).expect("send");
    let mut buf = [0u8; 4096];
    let mut last = String::new();
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        last = String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        if !last.contains(" 1") {
            break;
        }
    }
    last
}

fn direct(rogue: bool) {
    let _slot = SESSIONS.take();
    let me = format!("127.0.0.1:{}", free_port());
    let out_port = free_port();
    let admin_port = free_port();
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dialplans/example.json"
        ))
        .expect("example"),
    )
    .expect("json");
    let mut admins = example["admins"].clone();
    admins[0]["numbers"] = json!([format!("sip:1001@{me}")]);
    let plan = json!({
        "trunks": {
            "user": { "listen": format!("127.0.0.1:{}", free_port()), "register": false, "aor": "sip:gate-user@127.0.0.1" },
            "admin": { "listen": format!("127.0.0.1:{admin_port}"), "register": false, "aor": "sip:gate-admin@127.0.0.1" },
            "originate": { "listen": format!("127.0.0.1:{out_port}"), "proxy": format!("sip:{me}"),
                           "from": "sip:gate-out@127.0.0.1" }
        },
        "admins": admins,
        "callback": { "delay_ms": if rogue { 2500 } else { 200 }, "ring_timeout_s": 10 },
        "modem": { "modulations": ["v22bis"], "target": "console", "idle_s": 30, "max_s": 120 }
    });
    let gate = Gate::start(plan, &[]).expect("dialback starts");
    let rogue_answer = rogue.then(|| {
        let to = me.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1200));
            rogue_invite(&to)
        })
    });
    // Settings from all three sources (file, environment, flags); the password from a file.
    let dir = tempfile::tempdir().expect("tmp");
    let pw = dir.path().join("sip-password");
    std::fs::write(&pw, format!("{SIP_PASSWORD}\n")).expect("pw");
    let settings = dir.path().join("dial-in.json");
    let file = json!({
        "listen": me, "user": "1001", "admin_id": "1001", "digit": 1,
        "callback_from": "sip:gate-out@127.0.0.1",
        "callback_source": format!("127.0.0.1:{out_port}"),
        "password_file": pw, "wait_s": 5
    });
    std::fs::write(&settings, file.to_string()).expect("settings");
    let gate_uri = format!("sip:gate-admin@127.0.0.1:{admin_port}");
    let run = dial_in(
        &[
            "--config".to_string(),
            settings.display().to_string(),
            "--wait-s".into(),
            "20".into(),
        ],
        &[("DIALBACK_DIALIN_GATE", &gate_uri)],
        SCRIPT,
        Duration::from_secs(60),
    );
    assert_session(
        &run,
        &gate,
        "CONNECT 2400 V.22bis",
        "session: admin 1001 over V.22bis 2400 bit/s",
    );
    assert!(!run.stderr.contains("registered"), "{}", run.stderr);
    if let Some(t) = rogue_answer {
        let answer = t.join().expect("rogue");
        assert!(answer.contains("403"), "{answer}\n{}", run.stderr);
        assert!(
            run.stderr
                .contains("refused a call from sip:gate-out@127.0.0.1"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn dial_in_refuses_missing_settings_and_secrets_with_exit_2() {
    let run = dial_in(
        &["--user".into(), "1001".into()],
        &[],
        "",
        Duration::from_secs(10),
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("missing setting `gate`"),
        "{}",
        run.stderr
    );
    let run = dial_in(
        &[
            "--listen",
            "127.0.0.1:0",
            "--user",
            "1001",
            "--gate",
            "sip:gate-admin@127.0.0.1:9",
            "--admin-id",
            "1001",
            "--digit",
            "1",
            "--callback-from",
            "gate-out",
        ]
        .map(String::from),
        &[],
        "",
        Duration::from_secs(10),
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("DIALBACK_DIALIN_PASSWORD"),
        "{}",
        run.stderr
    );
}
