//! Spoofing (issue 4 "Tests": From / P-Asserted-Identity naming an admin, caller ID spoofed to
//! an admin number, a MESSAGE body or header carrying some other number). Kamailio is the PBX
//! the callbacks go through; SIPp phones registered as the administrator's number and as a
//! stranger's number record whatever reaches them. Our test PBX itself refuses a From naming
//! one of its subscribers unless the digest user is that subscriber, so the caller-ID spoofs
//! are sent straight to the gate's admin trunk, as by an attacker who found its address or
//! came through a PBX that does not police From.
//!
//! The gate takes identity only from the digest username (RFC 7616 §3.4) and the number it
//! dials only from the dialplan (DESIGN.md "The flow", step 5), so each spoof ends in no
//! callback, or in a callback to the registered number alone, and one audit event.

mod support;

use std::time::Duration;

use serde_json::json;
use support::gate_pbx::{
    assert_no_secret, audit_text, count, pbx_and_gate, phone, send, send_to, wait_for, Message,
    ADMIN_1, ADMIN_2,
};
use support::sipp::Sipp;

/// A phone that would answer if it were ever called; `wait()` returns after `secs`.
fn bystander(secs: u64) -> Sipp {
    Sipp::scenario("uas_answer.xml").timeout(Duration::from_secs(secs))
}

#[test]
fn identity_comes_from_the_digest_username_never_from_from_pai_or_caller_id() {
    let (k, gate) = pbx_and_gate(json!({}));
    let admin_phone = phone(&k, bystander(8), "1001", "phone-pw");
    let spoofed_headers = "P-Asserted-Identity: <sip:1001@127.0.0.1>\r\nRemote-Party-ID: <sip:1001@127.0.0.1>;party=calling;screen=yes\r\n";
    // No credentials at all, every caller-ID field naming admin 1: sipsak answers the 401
    // with an empty password, which is refused like any wrong password.
    let anonymous = send_to(
        gate.admin_addr(),
        &Message {
            password: None,
            from: "1001",
            headers: spoofed_headers,
            ..Message::admin(("1001", "", "MAINTAIN-1"))
        },
    );
    assert_ne!(anonymous, Some(0), "no 2xx without credentials");
    // Admin 2's valid credentials, caller ID spoofed to admin 1, admin 1's digit: admin 2 is
    // authenticated, the digit is not theirs. 202 like any authenticated MESSAGE.
    let other_admin = send_to(
        gate.admin_addr(),
        &Message {
            from: "1001",
            headers: spoofed_headers,
            ..Message::admin((ADMIN_2.0, ADMIN_2.1, "MAINTAIN-1"))
        },
    );
    assert_eq!(
        other_admin,
        Some(0),
        "authenticated: 202 whatever the decision"
    );
    assert!(
        wait_for(&gate, "signal.fail:digit_not_owned", Duration::from_secs(5)),
        "{:?}\n{}",
        gate.audit_events(),
        gate.log()
    );
    let rang = admin_phone.wait();
    assert!(
        rang.received().is_empty(),
        "admin 1's phone was called: {}",
        rang.report()
    );
    assert_eq!(
        gate.audit_events(),
        vec!["auth.fail:bad_credentials", "signal.fail:digit_not_owned"],
        "one audit event per decision, no callback"
    );
    let audit = audit_text(&gate);
    assert!(
        audit.contains("\"admin\":\"1002\""),
        "the failure is charged to the digest identity: {audit}"
    );
    assert_no_secret(&audit, &gate.log());
}

#[test]
fn numbers_carried_in_the_message_are_never_dialled() {
    let (k, gate) = pbx_and_gate(json!({}));
    let stranger = phone(&k, bystander(12), "1003", "phone3-pw");
    let admin_phone = phone(&k, Sipp::scenario("uas_answer.xml"), "1001", "phone-pw");
    let stranger_uri = format!("sip:1003@127.0.0.1:{}", k.port());
    // A body naming another number is not the signal: authenticated, so 202, and nothing else.
    let body = format!("MAINTAIN-1 {stranger_uri}");
    assert_eq!(
        send(&k, &Message::admin((ADMIN_1.0, ADMIN_1.1, &body))),
        Some(0)
    );
    assert!(
        wait_for(&gate, "signal.fail:unknown_signal", Duration::from_secs(5)),
        "{:?}",
        gate.audit_events()
    );
    // The right signal, with every header that could carry a callback number pointing at the
    // stranger: the callback goes to the dialplan's number for admin 1 and nowhere else.
    let headers = format!(
        "Reply-To: <{stranger_uri}>\r\nRefer-To: <{stranger_uri}>\r\nDiversion: <{stranger_uri}>;reason=unconditional\r\nP-Asserted-Identity: <{stranger_uri}>\r\nCall-Info: <{stranger_uri}>;purpose=callback\r\n"
    );
    assert_eq!(
        send(
            &k,
            &Message {
                headers: &headers,
                ..Message::admin(ADMIN_1)
            }
        ),
        Some(0)
    );
    assert!(
        wait_for(&gate, "callback.answered", Duration::from_secs(15)),
        "{:?}\n{}",
        gate.audit_events(),
        gate.log()
    );
    let answered = admin_phone.wait();
    let invites = answered.received_requests("INVITE");
    assert_eq!(invites.len(), 1, "{}", answered.report());
    assert!(
        invites[0].starts_with("INVITE sip:1001@"),
        "the callback dials admin 1's registered number: {}",
        invites[0]
    );
    let stranger = stranger.wait();
    assert!(
        stranger.received().is_empty(),
        "a number from the MESSAGE was dialled: {}",
        stranger.report()
    );
    let events = gate.audit_events();
    assert_eq!(
        count(&events, "signal.fail:unknown_signal"),
        1,
        "{events:?}"
    );
    assert_eq!(count(&events, "signal.ok"), 1, "{events:?}");
    assert_eq!(count(&events, "callback.placed"), 1, "{events:?}");
    assert_no_secret(&audit_text(&gate), &gate.log());
}
