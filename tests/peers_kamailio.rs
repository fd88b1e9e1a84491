//! Proves the Kamailio test PBX (`docker/kamailio/kamailio.cfg`) and its harness
//! (`tests/support/kamailio.rs`): digest-authenticated REGISTER (RFC 3261 §10, §22), in-memory
//! location table, restart, and routing to registered contacts with 407 proxy challenges.
//!
//! Registrations are driven by `sipsak -U` (usrloc mode), calls and MESSAGEs by SIPp scenarios
//! from `tests/sipp/`. Tests skip with a message when the peers are not installed.

mod support;

use std::process::Command;
use std::time::Duration;

use support::kamailio::{parse_bindings, Kamailio, KamailioOptions};
use support::ports;
use support::sipp::{Sipp, SippOutcome};
use support::uac::{self, Register};

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
    let output = Command::new("sipsak")
        .args(["-U", "-i", "-vv"])
        .arg("-C")
        .arg(format!("sip:{user}@127.0.0.1:{contact_port}"))
        .arg("-x")
        .arg(expires.to_string())
        .arg("-a")
        .arg(password)
        .arg("-s")
        .arg(format!("sip:{user}@127.0.0.1:{}", k.port()))
        .output()
        .expect("run sipsak");
    output.status.success()
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

/// Registers `sip:user@127.0.0.1:port` at Kamailio with the test UAC; asserts a 200.
fn register_contact(k: &Kamailio, user: &str, password: &str, port: u16) {
    let reg = Register::new(
        k.sip_addr(),
        user,
        password,
        &format!("sip:{user}@127.0.0.1:{port}"),
    );
    let result = uac::register(&reg).expect("register");
    assert_eq!(
        result.status,
        200,
        "{:?}\n{}",
        result.responses,
        k.log_tail(30)
    );
}

/// Places a call from `from` to `to` through Kamailio with `uac_call.xml`.
fn call(k: &Kamailio, from: &str, to: &str, auth: Option<(&str, &str)>) -> SippOutcome {
    let mut sipp = Sipp::scenario("uac_call.xml")
        .args(["-s", to, "-d", "200"])
        .var("from", from)
        .timeout(Duration::from_secs(10));
    if let Some((user, password)) = auth {
        sipp = sipp.args(["-au", user, "-ap", password]);
    }
    sipp.run_call(k.sip_addr()).expect("run caller")
}

#[test]
fn originate_trunk_call_is_challenged_then_reaches_registered_phone() {
    if !peers_installed() {
        return;
    }
    let k = Kamailio::start(SUBSCRIBERS).expect("start kamailio");
    let phone = Sipp::scenario("uas_answer.xml").serve().expect("phone");
    register_contact(&k, "1001", "phone-pw", phone.port());

    let caller = call(&k, "gate-out", "1001", Some(("gate-out", "pw3")));
    let phone = phone.wait();

    assert!(caller.passed(), "{}\n{}", caller.report(), k.log_tail(30));
    assert!(phone.passed(), "{}", phone.report());
    let responses = caller.received();
    assert!(
        responses[0..2].iter().any(|m| m.starts_with("SIP/2.0 407")),
        "{responses:?}"
    );
    assert!(caller.received_requests("INVITE").is_empty());
    // The dialog runs through the proxy: record-routed INVITE, in-dialog BYE via Kamailio.
    let invite = &phone.received_requests("INVITE")[0];
    assert!(invite.contains("Record-Route:"), "{invite}");
    assert!(
        !invite.contains("Proxy-Authorization"),
        "credentials consumed: {invite}"
    );
    let bye = &phone.received_requests("BYE")[0];
    assert!(bye.contains(&format!("127.0.0.1:{}", k.port())), "{bye}");
}

#[test]
fn originate_trunk_with_wrong_password_never_reaches_the_phone() {
    if !peers_installed() {
        return;
    }
    let k = Kamailio::start(SUBSCRIBERS).expect("start kamailio");
    let phone = Sipp::scenario("uas_answer.xml")
        .timeout(Duration::from_secs(3))
        .serve()
        .expect("phone");
    register_contact(&k, "1001", "phone-pw", phone.port());

    let caller = call(&k, "gate-out", "1001", Some(("gate-out", "wrong")));
    let phone = phone.wait();

    assert!(!caller.passed());
    assert!(
        phone.received_requests("INVITE").is_empty(),
        "{}",
        phone.report()
    );
}

#[test]
fn phone_calls_the_gate_trunk_through_the_proxy() {
    if !peers_installed() {
        return;
    }
    let k = Kamailio::start(SUBSCRIBERS).expect("start kamailio");
    let gate = Sipp::scenario("uas_answer.xml")
        .serve()
        .expect("gate stand-in");
    register_contact(&k, "gate-admin", "pw2", gate.port());

    let caller = call(&k, "1001", "gate-admin", Some(("1001", "phone-pw")));
    let gate = gate.wait();

    assert!(caller.passed(), "{}\n{}", caller.report(), k.log_tail(30));
    assert!(gate.passed(), "{}", gate.report());
}

#[test]
fn unauthenticated_outside_caller_reaches_registered_user_without_challenge() {
    if !peers_installed() {
        return;
    }
    // Like a call from a carrier gateway: the From user is no subscriber, so no 407.
    let k = Kamailio::start(SUBSCRIBERS).expect("start kamailio");
    let gate = Sipp::scenario("uas_answer.xml")
        .serve()
        .expect("gate stand-in");
    register_contact(&k, "gate-user", "pw1", gate.port());

    let caller = call(&k, "+4930123456", "gate-user", None);
    let gate = gate.wait();

    assert!(caller.passed(), "{}\n{}", caller.report(), k.log_tail(30));
    assert!(gate.passed(), "{}", gate.report());
    assert!(!caller
        .received()
        .iter()
        .any(|m| m.starts_with("SIP/2.0 407")));
}

#[test]
fn message_from_originate_trunk_is_delivered_after_challenge() {
    if !peers_installed() {
        return;
    }
    let k = Kamailio::start(SUBSCRIBERS).expect("start kamailio");
    let phone = Sipp::scenario("uas_message.xml").serve().expect("phone");
    register_contact(&k, "1001", "phone-pw", phone.port());

    let sender = Sipp::scenario("uac_message.xml")
        .args(["-s", "1001", "-au", "gate-out", "-ap", "pw3"])
        .var("from", "gate-out")
        .var("body", "new PIN follows")
        .timeout(Duration::from_secs(10))
        .run_call(k.sip_addr())
        .expect("sender");
    let phone = phone.wait();

    assert!(sender.passed(), "{}\n{}", sender.report(), k.log_tail(30));
    assert!(
        sender.received()[0].starts_with("SIP/2.0 407"),
        "{}",
        sender.report()
    );
    let message = &phone.received_requests("MESSAGE")[0];
    assert!(message.contains("new PIN follows"), "{message}");
}

#[test]
fn request_to_unregistered_user_gets_404() {
    if !peers_installed() {
        return;
    }
    let k = Kamailio::start(SUBSCRIBERS).expect("start kamailio");
    let sender = Sipp::scenario("uac_message.xml")
        .args(["-s", "1001", "-au", "gate-out", "-ap", "pw3"])
        .var("from", "gate-out")
        .var("body", "hello")
        .timeout(Duration::from_secs(5))
        .run_call(k.sip_addr())
        .expect("sender");
    assert!(!sender.passed());
    assert!(
        sender
            .received()
            .iter()
            .any(|m| m.starts_with("SIP/2.0 404")),
        "{}",
        sender.report()
    );
}

#[test]
fn auth_all_option_challenges_outside_callers_too() {
    if !peers_installed() {
        return;
    }
    let mut options = KamailioOptions::new(SUBSCRIBERS);
    options.auth_all = true;
    let k = Kamailio::start_with(options).expect("start kamailio");
    let gate = Sipp::scenario("uas_answer.xml")
        .timeout(Duration::from_secs(3))
        .serve()
        .expect("gate stand-in");
    register_contact(&k, "gate-user", "pw1", gate.port());

    let caller = call(&k, "+4930123456", "gate-user", None);

    assert!(!caller.passed());
    assert!(
        caller
            .received()
            .iter()
            .any(|m| m.starts_with("SIP/2.0 407")),
        "{}",
        caller.report()
    );
    assert!(gate.wait().received_requests("INVITE").is_empty());
}

#[test]
fn tcp_option_listens_on_the_same_port() {
    if !peers_installed() {
        return;
    }
    let mut options = KamailioOptions::new(SUBSCRIBERS);
    options.tcp = true;
    let k = Kamailio::start_with(options).expect("start kamailio");
    assert!(
        std::net::TcpStream::connect(k.sip_addr()).is_ok(),
        "{}",
        k.log_tail(20)
    );

    let plain = Kamailio::start(SUBSCRIBERS).expect("start kamailio");
    assert!(std::net::TcpStream::connect(plain.sip_addr()).is_err());
}

#[test]
fn request_for_a_foreign_domain_is_not_relayed() {
    if !peers_installed() {
        return;
    }
    let k = Kamailio::start(SUBSCRIBERS).expect("start kamailio");
    // `-rsa` sends to Kamailio while the Request-URI names another host.
    let sender = Sipp::scenario("uac_message.xml")
        .args(["-s", "1001", "-au", "gate-out", "-ap", "pw3", "-rsa"])
        .args([k.sip_addr().to_string()])
        .var("from", "gate-out")
        .var("body", "hello")
        .timeout(Duration::from_secs(5))
        .run_call("192.0.2.1:5060".parse().expect("addr"))
        .expect("sender");
    assert!(
        sender
            .received()
            .iter()
            .any(|m| m.starts_with("SIP/2.0 403")),
        "{}\n{}",
        sender.report(),
        k.log_tail(20)
    );
}

#[test]
fn password_change_takes_effect_and_survives_restart() {
    if !peers_installed() {
        return;
    }
    let mut k = Kamailio::start(SUBSCRIBERS).expect("start kamailio");
    let contact_port = ports::free_udp_port().expect("port");
    k.set_password("gate-user", "rotated")
        .expect("set password");
    assert!(!sipsak_register(&k, "gate-user", "pw1", contact_port, 60));
    assert!(sipsak_register(
        &k,
        "gate-user",
        "rotated",
        contact_port,
        60
    ));

    k.restart().expect("restart");
    assert!(sipsak_register(
        &k,
        "gate-user",
        "rotated",
        contact_port,
        60
    ));
}

#[test]
fn sha256_option_challenges_with_sha256_and_accepts_it() {
    if !peers_installed() {
        return;
    }
    let mut options = KamailioOptions::new(SUBSCRIBERS);
    options.algorithm = "SHA-256".to_owned();
    let k = Kamailio::start_with(options).expect("start kamailio");
    let reg = Register::new(
        k.sip_addr(),
        "gate-user",
        "pw1",
        "sip:gate-user@127.0.0.1:5998",
    );

    let result = uac::register(&reg).expect("register");

    assert_eq!(
        result.status,
        200,
        "{:?}\n{}",
        result.responses,
        k.log_tail(30)
    );
    assert!(
        result.responses[0].contains("algorithm=SHA-256"),
        "{}",
        result.responses[0]
    );
    assert!(result.requests[1].contains("algorithm=SHA-256"));
    assert_eq!(
        k.registered_contacts("gate-user"),
        vec!["sip:gate-user@127.0.0.1:5998"]
    );
}

#[test]
fn ul_lookup_output_parses_to_live_bindings_only() {
    let out = "{\n\tAoR: 1001\n\tContacts: {\n\t\tContact: {\n\t\t\tAddress: sip:1001@127.0.0.1:5070\n\
               \t\t\tExpires: 57\n\t\t\tCall-ID: a@b\n\t\t\tCSeq: 2\n\t\t\tUser-Agent: x y\n\t\t}\n\
               \t\tContact: {\n\t\t\tAddress: sip:1001@127.0.0.1:5071\n\t\t\tExpires: expired\n\t\t}\n\
               \t\tContact: {\n\t\t\tAddress: sip:1001@127.0.0.1:5072\n\t\t\tExpires: permanent\n\t\t}\n\t}\n}\n";
    let bindings = parse_bindings(out);
    assert_eq!(bindings.len(), 2);
    assert_eq!(bindings[0].address, "sip:1001@127.0.0.1:5070");
    assert_eq!(bindings[0].expires_s, Some(57));
    assert_eq!(bindings[0].cseq, Some(2));
    assert_eq!(bindings[0].user_agent, "x y");
    assert_eq!(bindings[1].expires_s, None);
    assert!(parse_bindings("error: 500 - AOR not found in location table\n").is_empty());
}
