//! `dialback demo` — the README's first command — runs the whole loop on loopback and exits 0:
//! MESSAGE with digest, callback INVITE, V.22bis (V.22, V.21, Bell 103) training over RTP, console login,
//! `status`, `quit`, hang-up, and the audit trail.

use std::process::Command;
use std::time::Duration;

fn demo(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dialback"))
        .arg("demo")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = std::time::Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn demo_runs_the_whole_loop_and_exits_zero() {
    let (code, out) = demo(&[]);
    assert_eq!(code, Some(0), "{out}");
    for needle in [
        "401 Unauthorized",
        "202 Accepted",
        "INVITE sip:admin@",
        "CONNECT 2400 V.22bis",
        "session: admin 1001 over V.22bis 2400 bit/s",
        "\"event\":\"session.start\"",
        "\"event\":\"session.end\"",
    ] {
        assert!(out.contains(needle), "{needle:?} missing from:\n{out}");
    }
    assert!(!out.contains("2468"), "the PIN is never shown:\n{out}");
}

#[test]
fn demo_with_v22_trains_at_1200() {
    let (code, out) = demo(&["--modulation", "v22"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("CONNECT 1200 V.22"), "{out}");
}

#[test]
fn demo_refuses_an_unknown_modulation() {
    let (code, out) = demo(&["--modulation", "v34"]);
    assert_eq!(code, Some(2), "{out}");
}

#[test]
fn demo_with_v21_runs_the_console_at_300() {
    let (code, out) = demo(&["--modulation", "v21"]);
    assert_eq!(code, Some(0), "{out}");
    for needle in [
        "CONNECT 300 V.21",
        "session: admin 1001 over V.21 300 bit/s",
        "\"event\":\"modem.connect\"",
        "\"reason\":\"v21\"",
    ] {
        assert!(out.contains(needle), "{needle:?} missing from:\n{out}");
    }
}

#[test]
fn demo_with_bell103_runs_the_console_at_300() {
    let (code, out) = demo(&["--modulation", "bell103"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("session: admin 1001 over Bell 103 300 bit/s"),
        "{out}"
    );
    assert!(out.contains("\"reason\":\"bell103\""), "{out}");
}
