//! Proves the Kamailio test PBX (`docker/kamailio/kamailio.cfg`) and its harness
//! (`tests/support/kamailio.rs`): digest-authenticated REGISTER (RFC 3261 §10, §22), in-memory
//! location table, restart, and routing to registered contacts with 407 proxy challenges.
//!
//! Registrations are driven by `sipsak -U` (usrloc mode), calls and MESSAGEs by SIPp scenarios
//! from `tests/sipp/`. Tests skip with a message when the peers are not installed.

mod support;

use std::process::Command;
use std::time::Duration;

use support::kamailio::Kamailio;
use support::ports;

const SUBSCRIBERS: &[(&str, &str)] = &[
    ("gate-user", "pw1"),
    ("gate-admin", "pw2"),
    ("gate-out", "pw3"),
    ("1001", "phone-pw"),
];

fn peers_installed() -> bool {
    let ok = ["kamailio", "kamcmd", "sipsak", "sipp"]
        .iter()
        .all(|p| support::have_program(p));
    if !ok {
        eprintln!("skipping: kamailio, kamcmd, sipsak or sipp not installed");
    }
    ok
}

/// `sipsak -U`: one REGISTER of `user` with contact `sip:user@127.0.0.1:contact_port`,
/// answering a 401 with `password`. True when sipsak saw a 200.
fn sipsak_register(
    k: &Kamailio,
    user: &str,
    password: &str,
    contact_port: u16,
    expires: u32,
) -> bool {
    let status = Command::new("sipsak")
        .args(["-U", "-i", "-vv"])
        .arg("-C")
        .arg(format!("sip:{user}@127.0.0.1:{contact_port}"))
        .arg("-x")
        .arg(expires.to_string())
        .arg("-a")
        .arg(password)
        .arg("-s")
        .arg(format!("sip:{user}@127.0.0.1:{}", k.port()))
        .status()
        .expect("run sipsak");
    status.success()
}

#[test]
fn register_with_right_password_binds_the_contact() {
    if !peers_installed() {
        return;
    }
    let k = Kamailio::start(SUBSCRIBERS).expect("start kamailio");
    let contact_port = ports::free_udp_port().expect("port");
    assert!(k.registered_contacts("gate-user").is_empty());

    assert!(
        sipsak_register(&k, "gate-user", "pw1", contact_port, 60),
        "{}",
        k.log_tail(30)
    );

    assert!(k.wait_registered("gate-user", Duration::from_secs(5)));
    assert_eq!(
        k.registered_contacts("gate-user"),
        vec![format!("sip:gate-user@127.0.0.1:{contact_port}")]
    );
    let binding = &k.bindings("gate-user")[0];
    assert!(
        binding.expires_s.is_some_and(|s| (50..=60).contains(&s)),
        "{binding:?}"
    );
    assert!(k.registered_contacts("gate-admin").is_empty());
}

#[test]
fn register_with_wrong_password_is_refused() {
    if !peers_installed() {
        return;
    }
    let k = Kamailio::start(SUBSCRIBERS).expect("start kamailio");
    let contact_port = ports::free_udp_port().expect("port");

    assert!(!sipsak_register(
        &k,
        "gate-user",
        "not-pw1",
        contact_port,
        60
    ));
    // Another subscriber's valid password does not register this AOR either (auth user must
    // equal the To user).
    assert!(!sipsak_register(&k, "gate-user", "pw2", contact_port, 60));

    assert!(k.registered_contacts("gate-user").is_empty());
}

#[test]
fn restart_forgets_registrations_on_the_same_port() {
    if !peers_installed() {
        return;
    }
    let mut k = Kamailio::start(SUBSCRIBERS).expect("start kamailio");
    let port = k.port();
    let contact_port = ports::free_udp_port().expect("port");
    assert!(sipsak_register(&k, "gate-admin", "pw2", contact_port, 60));
    assert!(k.wait_registered("gate-admin", Duration::from_secs(5)));

    k.restart().expect("restart kamailio");

    assert_eq!(k.port(), port);
    assert!(k.registered_contacts("gate-admin").is_empty());
    // Still a working registrar after the restart.
    assert!(sipsak_register(&k, "gate-admin", "pw2", contact_port, 60));
    assert!(k.wait_registered("gate-admin", Duration::from_secs(5)));
}

#[test]
fn short_expiry_lapses_and_unregister_removes_bindings() {
    if !peers_installed() {
        return;
    }
    let k = Kamailio::start(SUBSCRIBERS).expect("start kamailio");
    let contact_port = ports::free_udp_port().expect("port");
    // min_expires is 10 in the cfg, so tests can watch a binding lapse.
    assert!(sipsak_register(&k, "1001", "phone-pw", contact_port, 10));
    assert!(k.wait_registered("1001", Duration::from_secs(5)));
    assert!(
        k.wait_unregistered("1001", Duration::from_secs(20)),
        "binding did not lapse"
    );

    assert!(sipsak_register(&k, "1001", "phone-pw", contact_port, 60));
    k.unregister("1001").expect("ul.rm");
    assert!(k.registered_contacts("1001").is_empty());
}

#[test]
fn killed_kamailio_frees_its_port() {
    if !peers_installed() {
        return;
    }
    let mut k = Kamailio::start(SUBSCRIBERS).expect("start kamailio");
    assert!(k.is_running());
    assert!(ports::udp_port_in_use(k.port()));
    k.kill();
    assert!(!k.is_running());
    assert!(!ports::udp_port_in_use(k.port()));
}
