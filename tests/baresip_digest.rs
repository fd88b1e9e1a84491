//! Real peer: baresip, the softphone an administrator would use (DESIGN.md step 2), sends the
//! start signal as a SIP MESSAGE and authenticates against the gate's digest challenge over
//! loopback UDP, through the minimal edge in `common`.
//!
//! Debian's baresip 1.0.0 knows MD5 only and gives up ("Function not implemented") as soon as
//! any challenge offered is SHA-256, whether listed first or second; so the policy here offers
//! MD5 alone (`PolicyInput::digest_algorithms = ["MD5"]`), the setting for such softphones.
//! Needs the `baresip` Debian package; the test says so and passes vacuously if it is absent.

#[path = "gate_edge/mod.rs"]
mod common;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use dialback::gate::decide::Decision;
use dialback::gate::nonce::MessageAuth;

fn run(algorithms: &[&str]) -> Option<common::Outcome> {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
    let port = sock.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("temp dir");
    let local = common::free_udp_port();
    let write = |name: &str, text: String| {
        std::fs::write(dir.path().join(name), text).expect("write baresip config");
    };
    write(
        "config",
        format!(
            "sip_listen 127.0.0.1:{local}\n\
             module_path /usr/lib/baresip/modules\n\
             module menu.so\n\
             module account.so\n\
             module g711.so\n\
             module_app contact.so\n"
        ),
    );
    write(
        "accounts",
        format!("<sip:1001@127.0.0.1:{port};transport=udp>;auth_pass=alpha;regint=0\n"),
    );
    write(
        "contacts",
        format!("\"Gate\" <sip:maint@127.0.0.1:{port}>\n"),
    );
    let child = Command::new("baresip")
        .arg("-f")
        .arg(dir.path())
        .args([
            "-t",
            "4",
            "-e",
            "/contact_next",
            "-e",
            "/message MAINTAIN-1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        eprintln!("baresip not installed (Debian package baresip): real-peer test skipped");
        return None;
    };
    let policy = common::policy(true, true, algorithms);
    Some(common::serve(
        &policy,
        &sock,
        child,
        Duration::from_secs(15),
    ))
}

#[test]
fn baresip_message_with_digest_starts_a_callback() {
    let Some(out) = run(&["MD5"]) else {
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
}

#[test]
fn baresip_never_gets_in_without_valid_credentials_under_the_default_order() {
    // SHA-256 offered: baresip 1.0 gives up; a newer one answers with either algorithm.
    // Either way nothing but an authenticated MESSAGE may reach a decision.
    let Some(out) = run(&[]) else {
        return;
    };
    assert!(matches!(
        out.auths.first(),
        Some(MessageAuth::Challenge { stale: false })
    ));
    for (auth, decision) in out.auths.iter().skip(1).zip(&out.decisions) {
        assert!(matches!(auth, MessageAuth::Authenticated(_)), "{auth:?}");
        assert!(matches!(decision, Decision::Allow { .. }), "{decision:?}");
    }
    eprintln!("baresip answered with algorithms {:?}", out.algorithms);
}
