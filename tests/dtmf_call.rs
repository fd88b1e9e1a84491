//! The DTMF path of issue 4 with real peers: a caller (SIPp) dials the gate's admin or user
//! number through Kamailio, the gate answers, reads ID `#`, PIN `#` and `*62468246*1#` sent as
//! SIP INFO `application/dtmf-relay` inside the dialog, hangs up, and calls administrator 1
//! back on the originate trunk (the SIPp phone registered as 1001 answers).

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::dialback::{free_port, Gate};
use support::kamailio::Kamailio;
use support::sipp::Sipp;
use support::uac::{self, Register};

const SUBSCRIBERS: &[(&str, &str)] = &[
    ("gate-user", "user-pw"),
    ("gate-admin", "admin-pw"),
    ("gate-out", "out-pw"),
    ("1001", "phone-pw"),
];
const ENV: &[(&str, &str)] = &[
    ("T_USER_PW", "user-pw"),
    ("T_ADMIN_PW", "admin-pw"),
    ("T_OUT_PW", "out-pw"),
];

/// A SIPp caller scenario: INVITE with SDP, ACK, one INFO per key, then wait for our BYE.
fn caller_scenario(keys: &str) -> String {
    let mut x = String::from(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="dtmf caller">
  <send retrans="500"><![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:roaming-admin@[local_ip]:[local_port]>;tag=[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:roaming-admin@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
  ]]></send>
  <recv response="100" optional="true" />
  <recv response="180" optional="true" />
  <recv response="200" rrs="true" />
  <send><![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:roaming-admin@[local_ip]:[local_port]>;tag=[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      [routes]
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <pause milliseconds="500" />
"#,
    );
    for (i, k) in keys.chars().enumerate() {
        let cseq = i + 2;
        let body = format!("Signal={k}\r\nDuration=160\r\n");
        x.push_str(&format!(
            r#"  <send retrans="500"><![CDATA[
      INFO [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:roaming-admin@[local_ip]:[local_port]>;tag=[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} INFO
      [routes]
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      {body}
]]></send>
  <recv response="200" />
  <pause milliseconds="150" />
"#,
            body = body.trim_end().replace("\r\n", "\n      ")
        ));
    }
    x.push_str(
        r#"  <recv request="BYE" timeout="20000" />
  <send><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

  ]]></send>
</scenario>
"#,
    );
    x
}

fn dialplan(k: &Kamailio) -> Value {
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dialplans/example.json"
        ))
        .expect("example"),
    )
    .expect("json");
    let mut admins = example["admins"].clone();
    admins[0]["numbers"] = json!([format!("sip:1001@127.0.0.1:{}", k.port())]);
    let pbx = k.sip_uri();
    json!({
        "trunks": {
            "user": { "listen": format!("127.0.0.1:{}", free_port()), "registrar": pbx,
                      "aor": "sip:gate-user@127.0.0.1", "auth_username": "gate-user", "password_env": "T_USER_PW" },
            "admin": { "listen": format!("127.0.0.1:{}", free_port()), "registrar": pbx,
                       "aor": "sip:gate-admin@127.0.0.1", "auth_username": "gate-admin", "password_env": "T_ADMIN_PW" },
            "originate": { "listen": format!("127.0.0.1:{}", free_port()), "proxy": pbx,
                           "from": "sip:gate-out@127.0.0.1", "auth_username": "gate-out", "password_env": "T_OUT_PW" }
        },
        "admins": admins,
        "callback": { "delay_ms": 500, "ring_timeout_s": 5, "answered_hold_s": 1 },
        "modem": { "connect_timeout_s": 2 }
    })
}

fn dial_in(k: &Kamailio, service: &str, keys: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("caller.xml");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(caller_scenario(keys).as_bytes()))
        .expect("scenario");
    let out = Command::new("sipp")
        .current_dir(dir.path())
        .arg("-sf")
        .arg(&path)
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-mp",
            &free_port().to_string(),
        ])
        .args([
            "-s",
            service,
            "-m",
            "1",
            "-timeout",
            "40s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .arg(k.sip_addr().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("sipp runs");
    let mut logs = String::from_utf8_lossy(&out.stderr).into_owned();
    if let Ok(rd) = std::fs::read_dir(dir.path()) {
        for e in rd.flatten() {
            if e.path().extension().is_some_and(|x| x == "log") {
                logs.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    (out.status.success(), logs)
}

fn dtmf_path_calls_back(service: &str) {
    let k = Kamailio::start(SUBSCRIBERS).expect("kamailio");
    let phone = Sipp::scenario("uas_answer.xml").serve().expect("phone");
    uac::register(&Register::new(
        k.sip_addr(),
        "1001",
        "phone-pw",
        &format!("sip:1001@127.0.0.1:{}", phone.port()),
    ))
    .expect("phone registers");
    let gate = Gate::start(dialplan(&k), ENV).expect("dialback starts");
    for u in ["gate-user", "gate-admin"] {
        assert!(
            k.wait_registered(u, Duration::from_secs(10)),
            "{}",
            gate.log()
        );
    }
    let (ok, logs) = dial_in(&k, service, "1001#2468#*62468246*1#");
    assert!(
        ok,
        "the caller got answered, sent its keys and was hung up on:\n{logs}\n{}",
        gate.log()
    );
    let outcome = phone.wait();
    assert!(
        outcome.passed(),
        "callback reached the phone: {}\n{}",
        outcome.report(),
        gate.log()
    );
    let events = gate.audit_events();
    assert!(
        events.first().is_some_and(|e| e == "signal.ok"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e == "callback.answered"),
        "{events:?}"
    );
    // The PIN as a token of its own: a longer run of digits (a timestamp, a port) is not it.
    let log = gate.log();
    let pin_hits = log.match_indices("2468").filter(|(i, _)| {
        let before = log[..*i].chars().next_back();
        let after = log[i + 4..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    });
    assert_eq!(pin_hits.count(), 0, "the PIN never reaches the log");
}

#[test]
fn dtmf_call_on_the_admin_trunk_with_info_digits_calls_admin_1_back() {
    dtmf_path_calls_back("gate-admin");
}

#[test]
fn dtmf_call_on_the_user_trunk_with_info_digits_calls_admin_1_back() {
    dtmf_path_calls_back("gate-user");
}

#[test]
fn wrong_pin_on_a_call_places_no_callback_and_hangs_up() {
    let k = Kamailio::start(SUBSCRIBERS).expect("kamailio");
    let mut plan = dialplan(&k);
    // After the failed attempt the gate prompts again; silence then ends the call.
    plan["media"] = json!({ "first_digit_timeout_s": 2, "inter_digit_timeout_s": 2 });
    let gate = Gate::start(plan, ENV).expect("dialback starts");
    assert!(
        k.wait_registered("gate-admin", Duration::from_secs(10)),
        "{}",
        gate.log()
    );
    let (ok, logs) = dial_in(&k, "gate-admin", "1001#0000#*62468246*1#");
    assert!(
        ok,
        "hung up after the failed try and the silence:\n{logs}\n{}",
        gate.log()
    );
    let events = gate.audit_events();
    assert!(
        !events.iter().any(|e| e.starts_with("callback")),
        "{events:?}"
    );
    assert!(
        events.iter().filter(|e| e.starts_with("auth.fail")).count() >= 1,
        "{events:?}"
    );
}
