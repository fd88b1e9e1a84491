//! Registration against SIPp registrars that challenge the way real PBXs and carriers do:
//! `qop="auth,auth-int"`, `algorithm=SHA-256`, 407 instead of 401, a stale nonce, and
//! 423 Interval Too Brief with Min-Expires. Each scenario exits 0 only if the flow ends in a
//! 200 to a correctly authorised REGISTER.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::dialback::{free_port, Gate};

fn run_registrar(scenario: &str) {
    let port = free_port();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sipp").join(scenario);
    let dir = tempfile::tempdir().expect("tmp");
    let mut sipp = Command::new("sipp")
        .current_dir(dir.path())
        .arg("-sf")
        .arg(&path)
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-m", "1", "-timeout", "30s"])
        .args(["-nostdin", "-trace_err", "-trace_msg"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp runs (install sip-tester)");
    std::thread::sleep(Duration::from_millis(300));
    let dialplan = json!({
        "trunks": {
            "user": { "listen": format!("127.0.0.1:{}", free_port()),
                      "registrar": format!("sip:127.0.0.1:{port}"),
                      "aor": "sip:gate-user@127.0.0.1", "auth_username": "gate-user",
                      "password_env": "T_USER_PW", "expires_s": 60 },
            "admin": { "listen": format!("127.0.0.1:{}", free_port()), "register": false,
                       "aor": "sip:gate-admin@127.0.0.1" },
            "originate": { "listen": format!("127.0.0.1:{}", free_port()),
                           "proxy": format!("sip:127.0.0.1:{port}"),
                           "from": "sip:gate-out@127.0.0.1", "auth_username": "gate-out",
                           "password_env": "T_USER_PW" }
        }
    });
    let gate = Gate::start(dialplan, &[("T_USER_PW", "secret")]).expect("dialback starts");
    let deadline = Instant::now() + Duration::from_secs(25);
    let status = loop {
        if let Ok(Some(st)) = sipp.try_wait() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = sipp.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut sipp_logs = String::new();
    if let Ok(rd) = std::fs::read_dir(dir.path()) {
        for e in rd.flatten() {
            sipp_logs.push_str(&format!("--- {}\n", e.path().display()));
            sipp_logs.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    assert!(
        status.is_some_and(|s| s.success()),
        "{scenario}: SIPp registrar flow completed (status {status:?})\n{sipp_logs}\n--- dialback\n{}",
        gate.log()
    );
    assert!(gate.log().contains("registered"), "{}", gate.log());
}

#[test]
fn registers_through_qop_auth_and_auth_int_challenge() {
    run_registrar("reg_qop_auth_authint.xml");
}

#[test]
fn registers_through_sha256_challenge() {
    run_registrar("reg_sha256.xml");
}

#[test]
fn registers_through_407_proxy_challenge() {
    run_registrar("reg_407.xml");
}

#[test]
fn registers_again_after_stale_nonce() {
    run_registrar("reg_stale.xml");
}

#[test]
fn honours_423_min_expires() {
    run_registrar("reg_423.xml");
}
