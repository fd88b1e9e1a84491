//! Real peer: sipsak (an independent C SIP client) authenticates a MESSAGE against the gate's
//! digest server side over loopback UDP (RFC 3261 §22.4: 401 challenge, retry with
//! Authorization), through the minimal edge in `common`.
//!
//! sipsak 0.9.8 speaks MD5 only and answers only the topmost challenge, so the policy holds
//! MD5 HA1s and `nonce::challenges` offers MD5 alone. Needs the `sipsak` Debian package;
//! the test says so and passes vacuously if it is absent.

#[path = "gate_edge/mod.rs"]
mod common;

use std::io::Write;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use dialback::gate::decide::Decision;
use dialback::gate::nonce::{AuthFailure, MessageAuth};

fn run(password: &str) -> Option<common::Outcome> {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
    let port = sock.local_addr().expect("addr").port();
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    write!(
        file,
        "MESSAGE sip:maint@127.0.0.1 SIP/2.0\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nMAINTAIN-1\r\n"
    )
    .expect("write message");
    let child = Command::new("sipsak")
        .arg("-f")
        .arg(file.path())
        .arg("-s")
        .arg(format!("sip:maint@127.0.0.1:{port}"))
        .args(["-u", "1001", "-a", password])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        eprintln!("sipsak not installed (Debian package sipsak): real-peer test skipped");
        return None;
    };
    let policy = common::policy(true, false, &[]);
    Some(common::serve(
        &policy,
        &sock,
        child,
        Duration::from_secs(10),
    ))
}

#[test]
fn sipsak_md5_digest_message_is_authenticated_and_allowed() {
    let Some(out) = run("alpha") else {
        return;
    };
    assert!(
        matches!(out.auths.as_slice(), [MessageAuth::Challenge { stale: false }, MessageAuth::Authenticated(id)] if id.as_str() == "1001"),
        "{:?}",
        out.auths
    );
    assert!(
        matches!(out.decisions.as_slice(), [Decision::Allow { .. }]),
        "{:?}",
        out.decisions
    );
    assert_eq!(out.algorithms, ["MD5"]);
    assert!(out.client_succeeded, "sipsak saw a final 200");
}

#[test]
fn sipsak_with_the_wrong_password_is_rejected() {
    let Some(out) = run("bravo") else {
        return;
    };
    assert!(
        matches!(
            out.auths.as_slice(),
            [
                MessageAuth::Challenge { stale: false },
                MessageAuth::Rejected {
                    failure: AuthFailure::BadResponse,
                    ..
                }
            ]
        ),
        "{:?}",
        out.auths
    );
    assert!(out.decisions.is_empty());
    assert!(!out.client_succeeded, "sipsak saw a final 403");
}
