//! The user and admin trunks register at a real Kamailio (digest auth), stay registered
//! (refresh before expiry), come back after Kamailio restarts, and remove their bindings on a
//! clean shutdown. Verified from Kamailio's side with `kamcmd ul.lookup`.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::dialback::{free_port, Gate};
use support::kamailio::Kamailio;

const SUBSCRIBERS: &[(&str, &str)] = &[
    ("gate-user", "user-secret-1"),
    ("gate-admin", "admin-secret-2"),
    ("gate-out", "out-secret-3"),
];

fn gate_for(k: &Kamailio, expires_s: u32) -> Gate {
    let registrar = k.sip_uri();
    let dialplan = json!({
        "trunks": {
            "user": { "listen": format!("127.0.0.1:{}", free_port()), "registrar": registrar,
                      "aor": "sip:gate-user@127.0.0.1", "auth_username": "gate-user",
                      "password_env": "T_USER_PW", "expires_s": expires_s },
            "admin": { "listen": format!("127.0.0.1:{}", free_port()), "registrar": registrar,
                       "aor": "sip:gate-admin@127.0.0.1", "auth_username": "gate-admin",
                       "password_env": "T_ADMIN_PW", "expires_s": expires_s },
            "originate": { "listen": format!("127.0.0.1:{}", free_port()), "proxy": registrar,
                           "from": "sip:gate-out@127.0.0.1", "auth_username": "gate-out",
                           "password_env": "T_OUT_PW" }
        }
    });
    Gate::start(
        dialplan,
        &[
            ("T_USER_PW", "user-secret-1"),
            ("T_ADMIN_PW", "admin-secret-2"),
            ("T_OUT_PW", "out-secret-3"),
        ],
    )
    .expect("dialback starts")
}

fn port_of(addr: std::net::SocketAddr) -> String {
    format!(":{}", addr.port())
}

#[test]
fn both_trunks_register_and_clean_shutdown_removes_the_bindings() {
    let k = Kamailio::start(SUBSCRIBERS).expect("kamailio starts");
    let mut gate = gate_for(&k, 60);
    for (user, addr) in [
        ("gate-user", gate.user_addr()),
        ("gate-admin", gate.admin_addr()),
    ] {
        assert!(
            k.wait_registered(user, Duration::from_secs(10)),
            "{user} registered:\n{}\n{}",
            gate.log(),
            k.log_tail(30)
        );
        let contacts = k.registered_contacts(user);
        assert!(
            contacts.iter().any(|c| c.contains(&port_of(addr))),
            "{user} contact points at its own trunk socket: {contacts:?}"
        );
    }
    assert!(
        k.registered_contacts("gate-out").is_empty(),
        "the originate trunk never registers"
    );
    let log = gate.log();
    assert!(
        !log.contains("user-secret-1") && !log.contains("admin-secret-2"),
        "no password in logs"
    );
    assert_eq!(
        gate.terminate(Duration::from_secs(8)),
        Some(0),
        "clean exit on SIGTERM"
    );
    for user in ["gate-user", "gate-admin"] {
        assert!(
            k.wait_unregistered(user, Duration::from_secs(5)),
            "{user} binding removed by Expires: 0"
        );
    }
}

#[test]
fn registration_is_refreshed_before_it_expires() {
    let k = Kamailio::start(SUBSCRIBERS).expect("kamailio starts");
    let gate = gate_for(&k, 10);
    assert!(
        k.wait_registered("gate-user", Duration::from_secs(10)),
        "{}",
        gate.log()
    );
    let first_call_id = k.bindings("gate-user").first().map(|b| b.call_id.clone());
    let first_cseq = k.bindings("gate-user").first().and_then(|b| b.cseq);
    // Watch for three expiry periods: the binding must never lapse.
    let start = Instant::now();
    let mut min_left = u64::MAX;
    while start.elapsed() < Duration::from_secs(30) {
        let b = k.bindings("gate-user");
        assert_eq!(
            b.len(),
            1,
            "binding present at {:?}: {}",
            start.elapsed(),
            gate.log()
        );
        if let Some(left) = b[0].expires_s {
            min_left = min_left.min(left);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let last = k.bindings("gate-user");
    assert_eq!(
        last[0].call_id,
        first_call_id.unwrap_or_default(),
        "same registration Call-ID"
    );
    assert!(last[0].cseq > first_cseq, "CSeq advanced with refreshes");
    assert!(
        min_left >= 1,
        "refresh came before expiry (least seconds left: {min_left})"
    );
    let refreshes = gate
        .log()
        .matches("registered aor=\"sip:gate-user@127.0.0.1\"")
        .count()
        + gate
            .log()
            .matches("aor=sip:gate-user@127.0.0.1 expires_s")
            .count();
    println!("least seconds left before refresh: {min_left}; registered lines: {refreshes}");
}

#[test]
fn trunks_register_again_after_kamailio_restarts() {
    let mut k = Kamailio::start(SUBSCRIBERS).expect("kamailio starts");
    let gate = gate_for(&k, 10);
    for user in ["gate-user", "gate-admin"] {
        assert!(
            k.wait_registered(user, Duration::from_secs(10)),
            "{}",
            gate.log()
        );
    }
    k.kill();
    std::thread::sleep(Duration::from_secs(3));
    k.restart().expect("kamailio restarts on the same port");
    assert!(
        k.registered_contacts("gate-user").is_empty(),
        "in-memory location was lost"
    );
    let t0 = Instant::now();
    for user in ["gate-user", "gate-admin"] {
        // Bound: one refresh interval plus the largest backoff step (60 s).
        assert!(
            k.wait_registered(user, Duration::from_secs(70)),
            "{user} registered again:\n{}",
            gate.log()
        );
    }
    println!(
        "re-registered {:.1} s after the restart",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn trunks_register_over_tcp_when_the_dialplan_says_so() {
    let mut opts = support::kamailio::KamailioOptions::new(SUBSCRIBERS);
    opts.tcp = true;
    let k = Kamailio::start_with(opts).expect("kamailio starts with TCP");
    let registrar = k.sip_uri();
    let dialplan = json!({
        "trunks": {
            "user": { "listen": format!("127.0.0.1:{}", free_port()), "registrar": registrar,
                      "transport": "tcp",
                      "aor": "sip:gate-user@127.0.0.1", "auth_username": "gate-user",
                      "password_env": "T_USER_PW", "expires_s": 60 },
            "admin": { "listen": format!("127.0.0.1:{}", free_port()), "register": false,
                       "aor": "sip:gate-admin@127.0.0.1" },
            "originate": { "listen": format!("127.0.0.1:{}", free_port()), "proxy": registrar,
                           "from": "sip:gate-out@127.0.0.1" }
        }
    });
    let mut gate =
        Gate::start(dialplan, &[("T_USER_PW", "user-secret-1")]).expect("dialback starts");
    assert!(
        k.wait_registered("gate-user", Duration::from_secs(10)),
        "{}\n{}",
        gate.log(),
        k.log_tail(30)
    );
    let contacts = k.registered_contacts("gate-user");
    assert!(
        contacts.iter().any(|c| c.contains("transport=tcp")),
        "{contacts:?}"
    );
    let log = gate.log();
    assert!(
        log.contains("sip out") && !log.contains("udp send"),
        "{log}"
    );
    assert_eq!(gate.terminate(Duration::from_secs(8)), Some(0));
    assert!(
        k.wait_unregistered("gate-user", Duration::from_secs(5)),
        "un-REGISTER over TCP"
    );
}
