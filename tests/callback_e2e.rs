//! The whole MESSAGE path of issue 4 with real peers: Kamailio as the PBX (the gate's user and
//! admin trunks registered, the originate trunk authenticating with 407), a SIPp phone
//! registered as administrator 1's first number, and sipsak as the administrator's SIP
//! client. `MAINTAIN-1` with admin 1's digest credentials → 202 → audit → callback INVITE from
//! the originate trunk through Kamailio → the phone answers → media → BYE after the hold time.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::dialback::Gate;
use support::gate_pbx::{self, assert_no_secret, audit_text, wait_for, Message, ENV, SUBSCRIBERS};
use support::kamailio::Kamailio;
use support::sipp::Sipp;
use support::uac::{self, Register};

/// The shared PBX dialplan with admin 1 calling back `numbers` in order.
fn dialplan(k: &Kamailio, numbers: Vec<String>) -> Value {
    let mut plan = gate_pbx::dialplan(k, json!({}));
    plan["admins"][0]["numbers"] = json!(numbers);
    plan
}

/// The administrator's MESSAGE through the PBX to `gate_user@pbx`; sipsak answers the gate's
/// 401 with `password`. Returns sipsak's exit code.
fn maintain(k: &Kamailio, gate_user: &str, user: &str, password: &str, body: &str) -> Option<i32> {
    gate_pbx::send(
        k,
        &Message {
            to: gate_user,
            ..Message::admin((user, password, body))
        },
    )
}

fn callback_reaches_the_phone(gate_user: &str) {
    let k = Kamailio::start(SUBSCRIBERS).expect("kamailio");
    let phone = Sipp::scenario("uas_answer.xml").serve().expect("phone");
    uac::register(&Register::new(
        k.sip_addr(),
        "1001",
        "phone-pw",
        &format!("sip:1001@127.0.0.1:{}", phone.port()),
    ))
    .expect("phone registers as 1001");
    let gate = Gate::start(
        dialplan(&k, vec![format!("sip:1001@127.0.0.1:{}", k.port())]),
        ENV,
    )
    .expect("dialback starts");
    for u in ["gate-user", "gate-admin"] {
        assert!(
            k.wait_registered(u, Duration::from_secs(10)),
            "{}",
            gate.log()
        );
    }
    assert_eq!(
        maintain(&k, gate_user, "1001", "demo-secret-1", "MAINTAIN-1"),
        Some(0),
        "202 through the PBX\n{}",
        gate.log()
    );
    assert!(
        wait_for(
            &gate,
            "session.end:modem_training_failed",
            Duration::from_secs(20)
        ),
        "{:?}\n{}",
        gate.audit_events(),
        gate.log()
    );
    let outcome = phone.wait();
    assert!(
        outcome.passed(),
        "the phone was called, answered and hung up: {}",
        outcome.report()
    );
    let events = gate.audit_events();
    // The phone answers without a modem: the callback is ended as a training failure and no
    // maintenance session starts (tests/callback_modem.rs covers a real modem).
    let order: Vec<&str> = [
        "signal.ok",
        "callback.placed",
        "callback.answered",
        "session.end:modem_training_failed",
    ]
    .to_vec();
    let mut pos = 0;
    for e in &events {
        if order.get(pos) == Some(&e.as_str()) {
            pos += 1;
        }
    }
    assert_eq!(pos, order.len(), "audit order {events:?}");
    let invites = outcome.received_requests("INVITE");
    assert_eq!(invites.len(), 1, "one callback INVITE");
    assert!(
        invites[0].contains("gate-out"),
        "from the originate trunk: {}",
        invites[0]
    );
    assert_no_secret(&audit_text(&gate), &gate.log());
}

#[test]
fn maintain_message_on_the_admin_trunk_calls_admin_1_back() {
    callback_reaches_the_phone("gate-admin");
}

#[test]
fn maintain_message_on_the_user_trunk_calls_admin_1_back() {
    callback_reaches_the_phone("gate-user");
}

#[test]
fn unreachable_first_number_falls_back_to_the_second() {
    let k = Kamailio::start(SUBSCRIBERS).expect("kamailio");
    let phone = Sipp::scenario("uas_answer.xml").serve().expect("phone");
    uac::register(&Register::new(
        k.sip_addr(),
        "1002",
        "phone2-pw",
        &format!("sip:1002@127.0.0.1:{}", phone.port()),
    ))
    .expect("second phone registers");
    // 1001 is not registered: Kamailio answers 404; the gate tries the next number.
    let numbers = vec![
        format!("sip:1001@127.0.0.1:{}", k.port()),
        format!("sip:1002@127.0.0.1:{}", k.port()),
    ];
    let gate = Gate::start(dialplan(&k, numbers), ENV).expect("dialback starts");
    assert!(k.wait_registered("gate-admin", Duration::from_secs(10)));
    assert_eq!(
        maintain(&k, "gate-admin", "1001", "demo-secret-1", "MAINTAIN-1"),
        Some(0)
    );
    assert!(
        wait_for(
            &gate,
            "session.end:modem_training_failed",
            Duration::from_secs(25)
        ),
        "{:?}\n{}",
        gate.audit_events(),
        gate.log()
    );
    let events = gate.audit_events();
    assert!(
        events.iter().any(|e| e.starts_with("callback.failed")),
        "{events:?}"
    );
    assert_eq!(
        events.iter().filter(|e| *e == "callback.placed").count(),
        2,
        "{events:?}"
    );
    assert!(phone.wait().passed());
}

#[test]
fn wrong_password_or_foreign_digit_places_no_callback() {
    let k = Kamailio::start(SUBSCRIBERS).expect("kamailio");
    let gate = Gate::start(
        dialplan(&k, vec![format!("sip:1001@127.0.0.1:{}", k.port())]),
        ENV,
    )
    .expect("dialback starts");
    assert!(k.wait_registered("gate-admin", Duration::from_secs(10)));
    assert_ne!(
        maintain(&k, "gate-admin", "1001", "wrong", "MAINTAIN-1"),
        Some(0)
    );
    assert_eq!(
        maintain(&k, "gate-admin", "1001", "demo-secret-1", "MAINTAIN-2"),
        Some(0)
    );
    std::thread::sleep(Duration::from_secs(1));
    let events = gate.audit_events();
    assert!(
        !events.iter().any(|e| e.starts_with("callback")),
        "{events:?}"
    );
    assert_eq!(
        events,
        vec!["auth.fail:bad_credentials", "signal.fail:digit_not_owned"]
    );
}
