//! Test support for the real-peer tests: starting Kamailio and SIPp on loopback.
//!
//! Included by each integration test with `mod support;`. Every peer runs as a child process
//! bound to `127.0.0.1` on a port picked by [`ports`], with its files (config data, logs,
//! control socket) in a temporary directory that is removed when the handle drops. Handles kill
//! their process group on drop, so a failing test leaves no peer behind.
//!
//! | module     | owns                                                                 |
//! |------------|----------------------------------------------------------------------|
//! | `digest`   | SIP digest (RFC 7616) to answer challenges and check credentials     |
//! | `ports`    | free UDP/TCP port picking on 127.0.0.1, unique within the test binary |
//! | `kamailio` | the test PBX (`docker/kamailio/kamailio.cfg`): start, query, restart  |
//! | `sipp`     | SIPp scenarios from `tests/sipp/` as a server or as a client          |
//! | `uac`      | a blocking REGISTER-with-digest client (phones, misbehaving clients)  |
//! | `tshark`   | dumpcap captures on `lo` and tshark queries of them (malformed, fields) |
//! | `process`  | child-process plumbing shared by the above: groups, kill, log tails   |
//! | `gate_pbx` | the gate behind Kamailio: dialplan from the example, MESSAGE by sipsak |
//! | `baresip`  | baresip 1.0 softphones driven over `ctrl_tcp` (dial, RFC 4733 keys)    |
//! | `pcap`     | classic pcap files of Ethernet/IPv4/UDP frames (SIPp `play_pcap_audio`) |
//! | `sipsak`   | one MESSAGE with digest credentials through the PBX (the admin client) |
//! | `rawcall`  | a blocking SIP caller straight to the gate, RTP on its own socket      |
//!
//! # Using it from a test
//!
//! ```ignore
//! mod support;
//! use support::{kamailio::Kamailio, sipp::Sipp, uac};
//!
//! // The PBX: subscribers are (user, password); a free UDP port of 127.0.0.1, temp dir.
//! let k = Kamailio::start(&[("gate-user", "pw1"), ("gate-admin", "pw2"),
//!                           ("gate-out", "pw3"), ("1001", "phone-pw")])?;
//! // dialplan: "registrar": k.sip_uri(), "proxy": k.sip_uri(); realm k.realm().
//! assert!(k.wait_registered("gate-user", Duration::from_secs(5)));
//! assert_eq!(k.registered_contacts("gate-user"), vec!["sip:gate-user@127.0.0.1:P1"]);
//! k.restart()?; // same port, every binding gone (usrloc db_mode 0)
//!
//! // A phone for the callback: answers one INVITE, registered as 1001 at Kamailio.
//! let phone = Sipp::scenario("uas_answer.xml").serve()?;
//! uac::register(&uac::Register::new(k.sip_addr(), "1001", "phone-pw",
//!                                   &format!("sip:1001@127.0.0.1:{}", phone.port())))?;
//! let outcome = phone.wait(); // after dialback called and hung up
//! assert!(outcome.passed(), "{}", outcome.report());
//!
//! // A registrar with an awkward challenge instead of Kamailio:
//! let registrar = Sipp::registrar("reg_sha256.xml", "gate-user", "pw1").serve()?;
//! // dialplan: "registrar": registrar.uri()
//! let outcome = registrar.wait();
//! assert!(outcome.passed(), "{}", outcome.report());
//! assert!(outcome.verify_digest("REGISTER", "pw1").is_ok()); // SHA-256 / 407 cases
//! ```
//!
//! Peers missing from `PATH` make a test skip on a developer machine, but fail under CI
//! (`CI` set), where `.ci/run` installs them: a skipped peer test would prove nothing.
#![allow(dead_code)]

pub mod baresip;
pub mod dialback;
pub mod digest;
pub mod gate_pbx;
pub mod kamailio;
pub mod pcap;
pub mod ports;
pub mod process;
pub mod rawcall;
pub mod sipp;
pub mod sipsak;
pub mod tshark;
pub mod uac;

use std::path::PathBuf;

/// The crate root (where `Cargo.toml` lives); peer configs are found relative to it.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// True when `program` can be found on `PATH`; tests skip (with a message) when a peer is
/// missing rather than fail with a confusing spawn error.
pub fn have_program(program: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found || std::env::var_os("CI").is_none(),
        "{program} is not installed, and CI must run every peer test (see .ci/run)"
    );
    found
}

/// True when the tests run as root, which capturing (`dumpcap`) and SIPp's `play_pcap_audio`
/// (a raw socket) need. Outside CI a non-root run skips those tests with a message; under CI
/// (`CI` set) it fails, since CI runs them as root.
pub fn running_as_root() -> bool {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    assert!(
        root || std::env::var_os("CI").is_none(),
        "packet capture and SIPp pcap play need root, and CI must run them"
    );
    if !root {
        eprintln!("not root: capture / pcap-play test skipped");
    }
    root
}
