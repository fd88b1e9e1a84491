//! The callback's policy with real peers (issue 4 points 4-6, DESIGN.md step 5): Kamailio as
//! the PBX, SIPp phones that redirect, divert or answer, sipsak as the administrator's SIP
//! client sending `MAINTAIN-{digit}`. Every test asserts on both sides: what `audit.jsonl`
//! says the gate did, and what the phone (or a bystander) received on the wire.
//!
//! - 3xx is never followed (RFC 3261 §8.1.3.4 allows recursion; issue 4 forbids it: the number
//!   comes from the dialplan only).
//! - A diverted callback (RFC 5806 Diversion or an RFC 7044 History-Info `mp` entry in the 2xx,
//!   or 181, RFC 3261 §21.1.3) is aborted: ACK + BYE once answered (RFC 3261 §13.2.2.4,
//!   §15.1.1), CANCEL while early (§9.1).
//! - One active callback per administrator; `max_per_admin_per_hour`.
//! - The originate trunk takes nothing in while a callback is in flight.
//! - The audit line for `callback.placed` is durable before the INVITE leaves: a SIGKILL right
//!   after it leaves whole lines only, and no secret is ever written.

mod support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::dialback::Gate;
use support::gate_pbx::{
    assert_no_secret, audit_text, count, dialplan, maintain, pbx_and_gate, phone, wait_for,
    wait_for_n, ADMIN_1, ADMIN_2, ENV, SUBSCRIBERS,
};
use support::kamailio::Kamailio;
use support::sipp::{Sipp, SippRun};
use support::uac::{self, Register};

/// Two MESSAGEs sent at the same time, each from its own sipsak.
fn maintain_at_once(
    k: &Kamailio,
    a: (&'static str, &'static str, &'static str),
    b: (&'static str, &'static str, &'static str),
) -> (Option<i32>, Option<i32>) {
    std::thread::scope(|s| {
        let ta = s.spawn(|| maintain(k, a));
        let tb = s.spawn(|| maintain(k, b));
        (
            ta.join().expect("sipsak thread"),
            tb.join().expect("sipsak thread"),
        )
    })
}

fn status_of(text: &str) -> Option<u16> {
    text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

#[test]
fn redirect_302_is_not_followed_and_fails_as_redirected() {
    let (k, gate) = pbx_and_gate(json!({}));
    // Where the 302 points: a phone that would answer if it were ever called.
    let elsewhere = Sipp::scenario("uas_answer.xml")
        .timeout(Duration::from_secs(6))
        .serve()
        .expect("bystander starts");
    let phone = phone(
        &k,
        Sipp::scenario("uas_redirect_302.xml").var("redirect_port", &elsewhere.port().to_string()),
        "1001",
        "phone-pw",
    );
    assert_eq!(maintain(&k, ADMIN_1), Some(0), "202\n{}", gate.log());
    assert!(
        wait_for(
            &gate,
            "callback.failed:all_numbers_failed",
            Duration::from_secs(15)
        ),
        "{:?}\n{}",
        gate.audit_events(),
        gate.log()
    );
    let outcome = phone.wait();
    assert!(
        outcome.passed(),
        "302 sent, ACK received: {}",
        outcome.report()
    );
    assert_eq!(outcome.received_requests("INVITE").len(), 1);
    let bystander = elsewhere.wait();
    assert!(
        bystander.received().is_empty(),
        "the 302's Contact was called: {}",
        bystander.report()
    );
    let events = gate.audit_events();
    assert_eq!(count(&events, "callback.placed"), 1, "{events:?}");
    assert_eq!(
        count(&events, "callback.failed:redirected"),
        1,
        "{events:?}"
    );
    assert_eq!(count(&events, "callback.answered"), 0, "{events:?}");
    assert_no_secret(&audit_text(&gate), &gate.log());
}

#[test]
fn answer_with_diversion_header_is_acked_then_hung_up_and_audited_aborted() {
    let (k, gate) = pbx_and_gate(json!({ "callback": { "on_diversion": "abort" } }));
    let phone = phone(
        &k,
        Sipp::scenario("uas_answer_diversion.xml"),
        "1001",
        "phone-pw",
    );
    assert_eq!(maintain(&k, ADMIN_1), Some(0), "202\n{}", gate.log());
    assert!(
        wait_for(&gate, "callback.aborted:diversion", Duration::from_secs(15)),
        "{:?}\n{}",
        gate.audit_events(),
        gate.log()
    );
    let outcome = phone.wait();
    assert!(
        outcome.passed(),
        "200 with Diversion, then ACK and BYE: {}",
        outcome.report()
    );
    assert_eq!(outcome.received_requests("INVITE").len(), 1);
    assert_eq!(outcome.received_requests("ACK").len(), 1);
    assert_eq!(outcome.received_requests("BYE").len(), 1);
    assert!(
        wait_for(&gate, "callback.failed:diversion", Duration::from_secs(5)),
        "{:?}",
        gate.audit_events()
    );
    let events = gate.audit_events();
    assert_eq!(count(&events, "callback.answered"), 0, "{events:?}");
    assert_eq!(count(&events, "session.start"), 0, "{events:?}");
    assert_no_secret(&audit_text(&gate), &gate.log());
}

#[test]
fn status_181_call_is_being_forwarded_is_cancelled_and_audited_aborted() {
    let (k, gate) = pbx_and_gate(json!({ "callback": { "on_diversion": "abort" } }));
    let phone = phone(
        &k,
        Sipp::scenario("uas_forwarded_181.xml"),
        "1001",
        "phone-pw",
    );
    assert_eq!(maintain(&k, ADMIN_1), Some(0), "202\n{}", gate.log());
    assert!(
        wait_for(&gate, "callback.aborted:diversion", Duration::from_secs(15)),
        "{:?}\n{}",
        gate.audit_events(),
        gate.log()
    );
    let outcome = phone.wait();
    assert!(
        outcome.passed(),
        "181, then CANCEL, 487, ACK: {}",
        outcome.report()
    );
    assert_eq!(outcome.received_requests("INVITE").len(), 1);
    assert_eq!(outcome.received_requests("CANCEL").len(), 1);
    let events = gate.audit_events();
    assert_eq!(count(&events, "callback.answered"), 0, "{events:?}");
}

#[test]
fn two_triggers_at_once_for_one_admin_place_one_callback() {
    let (k, gate) = pbx_and_gate(json!({}));
    let phone = phone(&k, Sipp::scenario("uas_answer.xml"), "1001", "phone-pw");
    let _ = maintain_at_once(&k, ADMIN_1, ADMIN_1);
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
    assert!(outcome.passed(), "{}", outcome.report());
    assert_eq!(outcome.received_requests("INVITE").len(), 1);
    // Let a second callback, if one were (wrongly) scheduled, reach the audit.
    std::thread::sleep(Duration::from_secs(1));
    let events = gate.audit_events();
    assert_eq!(count(&events, "signal.ok"), 1, "{events:?}");
    assert_eq!(
        count(&events, "signal.fail:callback_active"),
        1,
        "{events:?}"
    );
    assert_eq!(count(&events, "callback.placed"), 1, "{events:?}");
}

#[test]
fn two_admins_at_once_get_two_callbacks() {
    let (k, gate) = pbx_and_gate(json!({}));
    let phone1 = phone(&k, Sipp::scenario("uas_answer.xml"), "1001", "phone-pw");
    let phone2 = phone(&k, Sipp::scenario("uas_answer.xml"), "1002", "phone2-pw");
    let (a, b) = maintain_at_once(&k, ADMIN_1, ADMIN_2);
    assert_eq!((a, b), (Some(0), Some(0)), "{}", gate.log());
    assert!(
        wait_for_n(
            &gate,
            "session.end:modem_training_failed",
            2,
            Duration::from_secs(20)
        ),
        "{:?}\n{}",
        gate.audit_events(),
        gate.log()
    );
    for (name, p) in [("1001", phone1), ("1002", phone2)] {
        let outcome = p.wait();
        assert!(outcome.passed(), "phone {name}: {}", outcome.report());
        assert_eq!(outcome.received_requests("INVITE").len(), 1, "phone {name}");
    }
    let events = gate.audit_events();
    assert_eq!(count(&events, "signal.ok"), 2, "{events:?}");
    assert_eq!(count(&events, "callback.placed"), 2, "{events:?}");
    assert_no_secret(&audit_text(&gate), &gate.log());
}

#[test]
fn second_trigger_within_the_hour_is_rate_limited() {
    let (k, gate) = pbx_and_gate(json!({ "callback": { "max_per_admin_per_hour": 1 } }));
    let phone = phone(&k, Sipp::scenario("uas_answer.xml"), "1001", "phone-pw");
    assert_eq!(maintain(&k, ADMIN_1), Some(0), "202\n{}", gate.log());
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
    assert!(phone.wait().passed());
    // The callback is over (no longer "active"): only the hourly limit can refuse now.
    std::thread::sleep(Duration::from_millis(500));
    let _ = maintain(&k, ADMIN_1);
    assert!(
        wait_for(&gate, "signal.fail:rate_limited", Duration::from_secs(5)),
        "{:?}\n{}",
        gate.audit_events(),
        gate.log()
    );
    std::thread::sleep(Duration::from_millis(800));
    let events = gate.audit_events();
    assert_eq!(count(&events, "callback.placed"), 1, "{events:?}");
    assert_eq!(
        count(&events, "signal.fail:callback_active"),
        0,
        "{events:?}"
    );
}

#[test]
fn inbound_invite_on_the_originate_trunk_during_a_callback_is_refused_and_the_callback_completes() {
    let (k, gate) = pbx_and_gate(json!({ "callback": { "answered_hold_s": 4 } }));
    let phone = phone(&k, Sipp::scenario("uas_answer.xml"), "1001", "phone-pw");
    // 1003's binding points at the originate trunk, so an INVITE to 1003 reaches it from the
    // proxy's own address.
    let orig = gate.originate_addr();
    uac::register(&Register::new(
        k.sip_addr(),
        "1003",
        "phone3-pw",
        &format!("sip:gate-out@127.0.0.1:{}", orig.port()),
    ))
    .expect("1003 registers");
    assert_eq!(maintain(&k, ADMIN_1), Some(0), "202\n{}", gate.log());
    assert!(
        wait_for(&gate, "callback.answered", Duration::from_secs(15)),
        "{:?}\n{}",
        gate.audit_events(),
        gate.log()
    );
    let intruder = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = intruder.local_addr().expect("addr").port();
    let invite = |uri: &str, i: u32| {
        format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKintr{i}\r\nMax-Forwards: 70\r\nFrom: <sip:intruder@127.0.0.1>;tag=i{i}\r\nTo: <{uri}>\r\nCall-ID: intruder-{i}@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:intruder@127.0.0.1:{port}>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    intruder
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    // From elsewhere, straight to the trunk: nothing comes back.
    intruder
        .send_to(invite(&format!("sip:gate-out@{orig}"), 1).as_bytes(), orig)
        .expect("send");
    let mut buf = [0u8; 8192];
    intruder
        .set_read_timeout(Some(Duration::from_millis(700)))
        .expect("timeout");
    assert!(
        intruder.recv_from(&mut buf).is_err(),
        "the originate trunk answered a stranger"
    );
    // Through the PBX: the trunk answers 403 to the proxy, which relays it (after its 100).
    let target = format!("sip:1003@{}", k.sip_addr());
    intruder
        .send_to(invite(&target, 2).as_bytes(), k.sip_addr())
        .expect("send");
    intruder
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut finals = Vec::new();
    while let Ok((n, _)) = intruder.recv_from(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if status_of(&text).is_some_and(|c| c >= 200) {
            finals.push(text);
            break;
        }
    }
    assert_eq!(
        finals.first().and_then(|t| status_of(t)),
        Some(403),
        "{finals:?}\n{}",
        gate.log()
    );
    assert!(
        wait_for(
            &gate,
            "session.end:modem_training_failed",
            Duration::from_secs(15)
        ),
        "{:?}\n{}",
        gate.audit_events(),
        gate.log()
    );
    let outcome = phone.wait();
    assert!(outcome.passed(), "{}", outcome.report());
    let log = gate.log();
    assert!(
        log.contains("originate trunk refused inbound request"),
        "{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("request src=") && l.contains("intruder")),
        "an intruder's request reached the application:\n{log}"
    );
    let events = gate.audit_events();
    assert_eq!(count(&events, "callback.placed"), 1, "{events:?}");
}

#[test]
fn sigkill_right_after_callback_placed_leaves_whole_lines_and_no_secret() {
    let (k, mut gate) = pbx_and_gate(json!({}));
    let _phone = phone(
        &k,
        Sipp::scenario("uas_answer.xml").timeout(Duration::from_secs(5)),
        "1001",
        "phone-pw",
    );
    assert_eq!(maintain(&k, ADMIN_1), Some(0), "202\n{}", gate.log());
    let end = Instant::now() + Duration::from_secs(10);
    let path = gate.dir().join("audit.jsonl");
    let mut seen = false;
    while Instant::now() < end {
        if std::fs::read_to_string(&path)
            .unwrap_or_default()
            .contains("\"callback.placed\"")
        {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(seen, "{}", gate.log());
    gate.kill();
    assert!(!gate.is_running());
    let audit = audit_text(&gate);
    assert!(audit.ends_with('\n'), "a torn last line: {audit:?}");
    for line in audit.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("unparseable audit line {line:?}: {e}"));
        assert!(v["event"].is_string(), "{line}");
    }
    let events = gate.audit_events();
    assert_eq!(count(&events, "callback.placed"), 1, "{events:?}");
    assert_no_secret(&audit, &gate.log());
}

#[test]
fn after_a_302_the_next_dialplan_number_is_called_not_the_redirect_target() {
    let k = Kamailio::start(SUBSCRIBERS).expect("kamailio");
    let elsewhere = Sipp::scenario("uas_answer.xml")
        .timeout(Duration::from_secs(8))
        .serve()
        .expect("bystander starts");
    let first = phone(
        &k,
        Sipp::scenario("uas_redirect_302.xml").var("redirect_port", &elsewhere.port().to_string()),
        "1001",
        "phone-pw",
    );
    let second = phone(&k, Sipp::scenario("uas_answer.xml"), "1002", "phone2-pw");
    let mut dp = dialplan(&k, json!({}));
    dp["admins"][0]["numbers"] = json!([
        format!("sip:1001@127.0.0.1:{}", k.port()),
        format!("sip:1002@127.0.0.1:{}", k.port())
    ]);
    let gate = Gate::start(dp, ENV).expect("dialback starts");
    assert!(k.wait_registered("gate-admin", Duration::from_secs(10)));
    assert_eq!(maintain(&k, ADMIN_1), Some(0), "202\n{}", gate.log());
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
    assert!(first.wait().passed());
    let outcome = second.wait();
    assert!(outcome.passed(), "{}", outcome.report());
    assert_eq!(outcome.received_requests("INVITE").len(), 1);
    let bystander = elsewhere.wait();
    assert!(
        bystander.received().is_empty(),
        "the 302's Contact was called: {}",
        bystander.report()
    );
    let events = gate.audit_events();
    assert_eq!(count(&events, "callback.placed"), 2, "{events:?}");
    assert_eq!(
        count(&events, "callback.failed:redirected"),
        1,
        "{events:?}"
    );
    assert_eq!(count(&events, "callback.answered"), 1, "{events:?}");
}

/// A phone answering with the given History-Info value.
fn history_info_phone(k: &Kamailio, history_info: &str) -> SippRun {
    phone(
        k,
        Sipp::scenario("uas_answer_history_info.xml").var("history_info", history_info),
        "1001",
        "phone-pw",
    )
}

#[test]
fn answer_with_history_info_mapped_to_another_user_is_aborted() {
    let (k, gate) = pbx_and_gate(json!({ "callback": { "on_diversion": "abort" } }));
    // RFC 7044 §10.1 "mp": the call was mapped to another user (a diversion).
    let p = history_info_phone(
        &k,
        "<sip:1001@127.0.0.1>;index=1, <sip:1009@127.0.0.1>;index=1.1;mp=1",
    );
    assert_eq!(maintain(&k, ADMIN_1), Some(0), "202\n{}", gate.log());
    assert!(
        wait_for(&gate, "callback.aborted:diversion", Duration::from_secs(15)),
        "{:?}\n{}",
        gate.audit_events(),
        gate.log()
    );
    let outcome = p.wait();
    assert!(outcome.passed(), "{}", outcome.report());
    assert_eq!(outcome.received_requests("BYE").len(), 1);
    assert_eq!(count(&gate.audit_events(), "session.start"), 0);
}

#[test]
fn answer_with_history_info_of_a_plain_registrar_lookup_is_not_a_diversion() {
    let (k, gate) = pbx_and_gate(json!({ "callback": { "on_diversion": "abort" } }));
    let p = history_info_phone(
        &k,
        "<sip:1001@127.0.0.1>;index=1, <sip:phone@127.0.0.1>;index=1.1;rc=1",
    );
    assert_eq!(maintain(&k, ADMIN_1), Some(0), "202\n{}", gate.log());
    assert!(
        wait_for(
            &gate,
            "session.end:modem_training_failed",
            Duration::from_secs(15)
        ),
        "{:?}\n{}",
        gate.audit_events(),
        gate.log()
    );
    assert!(p.wait().passed());
    let events = gate.audit_events();
    assert_eq!(count(&events, "callback.answered"), 1, "{events:?}");
    assert_eq!(
        count(&events, "callback.aborted:diversion"),
        0,
        "{events:?}"
    );
}

#[test]
fn answered_callback_without_rtp_is_hung_up_and_audited_rtp_timeout() {
    let k = Kamailio::start(SUBSCRIBERS).expect("kamailio");
    // The phone answers and sends no RTP (uas_answer.xml). The modem would give up after
    // 20 s; the RTP timeout ends the call first.
    let p = phone(&k, Sipp::scenario("uas_answer.xml"), "1001", "phone-pw");
    let mut dp = dialplan(&k, json!({}));
    dp["modem"]["connect_timeout_s"] = json!(20);
    dp["media"] = json!({ "rtp_timeout_s": 2 });
    let gate = Gate::start(dp, ENV).expect("dialback starts");
    assert!(k.wait_registered("gate-admin", Duration::from_secs(10)));
    assert_eq!(maintain(&k, ADMIN_1), Some(0), "202\n{}", gate.log());
    assert!(
        wait_for(&gate, "callback.answered", Duration::from_secs(10)),
        "{:?}\n{}",
        gate.audit_events(),
        gate.log()
    );
    let answered = Instant::now();
    assert!(
        wait_for(&gate, "session.end:rtp_timeout", Duration::from_secs(10)),
        "{:?}\n{}",
        gate.audit_events(),
        gate.log()
    );
    assert!(answered.elapsed() < Duration::from_secs(8));
    let outcome = p.wait();
    assert!(outcome.passed(), "{}", outcome.report());
    assert_eq!(outcome.received_requests("BYE").len(), 1);
    let call_id = outcome
        .received_requests("INVITE")
        .first()
        .and_then(|m| support::sipp::header(m, "Call-ID"))
        .expect("the callback's Call-ID");
    let log = gate.log();
    let line = log
        .lines()
        .find(|l| l.contains("no RTP on the callback"))
        .unwrap_or_else(|| panic!("warn line\n{log}"));
    assert!(line.contains("WARN") && line.contains(&call_id), "{line}");
    let events = gate.audit_events();
    assert_eq!(
        count(&events, "session.end:modem_training_failed"),
        0,
        "{events:?}"
    );
}

#[test]
fn shutdown_while_a_callback_waits_out_its_delay_audits_it_aborted_and_never_dials() {
    let (k, mut gate) = pbx_and_gate(json!({ "callback": { "delay_ms": 60000 } }));
    let p = phone(
        &k,
        Sipp::scenario("uas_answer.xml").timeout(Duration::from_secs(5)),
        "1001",
        "phone-pw",
    );
    assert_eq!(maintain(&k, ADMIN_1), Some(0), "202\n{}", gate.log());
    assert!(wait_for(&gate, "signal.ok", Duration::from_secs(5)));
    assert_eq!(
        gate.terminate(Duration::from_secs(10)),
        Some(0),
        "{}",
        gate.log()
    );
    let events = gate.audit_events();
    assert_eq!(
        events,
        vec![
            "signal.ok".to_string(),
            "callback.aborted:shutdown".to_string()
        ],
        "{}",
        gate.log()
    );
    let line = audit_text(&gate)
        .lines()
        .last()
        .map(str::to_string)
        .unwrap_or_default();
    let v: Value = serde_json::from_str(&line).expect("audit line is JSON");
    assert_eq!(v["admin"], "1001");
    assert_eq!(v["trunk"], "originate");
    assert!(
        p.wait().received_requests("INVITE").is_empty(),
        "never dialled"
    );
}

#[test]
fn shutdown_during_an_answered_callback_hangs_up_and_audits_session_end_shutdown() {
    let k = Kamailio::start(SUBSCRIBERS).expect("kamailio");
    let p = phone(&k, Sipp::scenario("uas_answer.xml"), "1001", "phone-pw");
    let mut dp = dialplan(&k, json!({}));
    dp["modem"]["connect_timeout_s"] = json!(30);
    let mut gate = Gate::start(dp, ENV).expect("dialback starts");
    assert!(k.wait_registered("gate-admin", Duration::from_secs(10)));
    assert_eq!(maintain(&k, ADMIN_1), Some(0), "202\n{}", gate.log());
    assert!(
        wait_for(&gate, "callback.answered", Duration::from_secs(10)),
        "{:?}\n{}",
        gate.audit_events(),
        gate.log()
    );
    assert_eq!(
        gate.terminate(Duration::from_secs(10)),
        Some(0),
        "{}",
        gate.log()
    );
    let events = gate.audit_events();
    assert_eq!(
        events.last().map(String::as_str),
        Some("session.end:shutdown"),
        "{events:?}"
    );
    let outcome = p.wait();
    assert!(outcome.passed(), "{}", outcome.report());
    assert_eq!(outcome.received_requests("BYE").len(), 1);
}
