//! The MESSAGE path of the gate in a running dialback (issue 4, flow 1), driven by a real SIP
//! client (sipsak, MD5 digest): 401 challenge, identity from the digest username only, `202`
//! once authenticated whatever the signal, `403` for bad credentials, and one fsynced audit
//! line per decision with no secret in it.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::dialback::{free_port, Gate};

const PASSWORD_1001: &str = "demo-secret-1";

fn dialplan() -> Value {
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dialplans/example.json"
        ))
        .expect("example dialplan"),
    )
    .expect("json");
    json!({
        "trunks": {
            "user": { "listen": format!("127.0.0.1:{}", free_port()), "register": false, "aor": "sip:gate-user@127.0.0.1" },
            "admin": { "listen": format!("127.0.0.1:{}", free_port()), "register": false, "aor": "sip:gate-admin@127.0.0.1" },
            "originate": { "listen": format!("127.0.0.1:{}", free_port()), "proxy": "sip:127.0.0.1:5060",
                           "from": "sip:gate-out@127.0.0.1" }
        },
        "admins": example["admins"].clone(),
        "security": { "digest_algorithms": ["MD5"] }
    })
}

/// sipsak sends one MESSAGE (answering a 401 when given a password); returns its exit code.
fn sipsak_message(
    to: SocketAddr,
    user: &str,
    password: Option<&str>,
    body: &str,
    extra: &str,
) -> Option<i32> {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    write!(
        file,
        "MESSAGE sip:gate-admin@{to} SIP/2.0\r\nFrom: <sip:{user}@127.0.0.1>;tag=t{n}\r\nTo: <sip:gate-admin@{to}>\r\nCall-ID: gate-message-{n}-{}@127.0.0.1\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n{extra}Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        std::process::id(),
        body.len()
    )
    .expect("write");
    let mut cmd = Command::new("sipsak");
    cmd.arg("-f")
        .arg(file.path())
        .arg("-s")
        .arg(format!("sip:gate-admin@{to}"))
        .args(["-u", user]);
    if let Some(p) = password {
        cmd.args(["-a", p]);
    }
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("sipsak runs (install sipsak)");
    out.status.code()
}

fn audit_lines(gate: &Gate) -> Vec<Value> {
    std::fs::read_to_string(gate.dir().join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line is JSON ({e}): {l}"))
        })
        .collect()
}

#[test]
fn message_with_credentials_and_own_digit_is_accepted_and_audited_before_acting() {
    let gate = Gate::start(dialplan(), &[]).expect("dialback starts");
    let code = sipsak_message(
        gate.admin_addr(),
        "1001",
        Some(PASSWORD_1001),
        "MAINTAIN-1",
        "",
    );
    assert_eq!(
        code,
        Some(0),
        "202 Accepted ends sipsak successfully\n{}",
        gate.log()
    );
    let lines = audit_lines(&gate);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["event"], "signal.ok");
    assert_eq!(lines[0]["admin"], "1001");
    assert_eq!(lines[0]["trunk"], "admin");
    assert!(lines[0]["source"]
        .as_str()
        .is_some_and(|s| s.starts_with("127.0.0.1:")));
}

#[test]
fn wrong_signals_and_credentials_get_uniform_answers_and_one_audit_line_each() {
    let gate = Gate::start(dialplan(), &[]).expect("dialback starts");
    let to = gate.admin_addr();
    // Wrong password: refused; which factor failed is not said.
    let wrong_pw = sipsak_message(to, "1001", Some("not-the-password"), "MAINTAIN-1", "");
    // Unknown ID: the same refusal.
    let unknown = sipsak_message(to, "9999", Some(PASSWORD_1001), "MAINTAIN-1", "");
    assert_eq!(
        wrong_pw, unknown,
        "no oracle between a wrong password and an unknown ID"
    );
    assert_ne!(wrong_pw, Some(0));
    // Right credentials, wrong signal text, and another admin's digit: 202 like a success.
    assert_eq!(
        sipsak_message(to, "1001", Some(PASSWORD_1001), "PLEASE-1", ""),
        Some(0)
    );
    assert_eq!(
        sipsak_message(to, "1001", Some(PASSWORD_1001), "MAINTAIN-2", ""),
        Some(0)
    );
    // From / P-Asserted-Identity naming an admin, and a body carrying another number: no
    // credentials means no identity.
    let spoof = sipsak_message(
        to,
        "1001",
        None,
        "MAINTAIN-1 sip:+15550100@127.0.0.1",
        "P-Asserted-Identity: <sip:1001@127.0.0.1>\r\n",
    );
    assert_ne!(spoof, Some(0), "no callback without digest credentials");
    let lines = audit_lines(&gate);
    let events: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["event"].as_str().unwrap_or(""),
                l["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        events,
        vec![
            ("auth.fail", "bad_credentials"),
            ("auth.fail", "bad_credentials"),
            ("signal.fail", "unknown_signal"),
            ("signal.fail", "digit_not_owned"),
            // sipsak without -a answers the challenge with an empty password.
            ("auth.fail", "bad_credentials"),
        ],
        "one audit event per decision"
    );
    let everything = format!(
        "{}{}",
        gate.log(),
        std::fs::read_to_string(gate.dir().join("audit.jsonl")).unwrap_or_default()
    );
    for secret in [PASSWORD_1001, "not-the-password", "2468"] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked into logs or audit"
        );
    }
}

#[test]
fn lockout_after_max_failures_survives_a_restart() {
    let mut plan = dialplan();
    plan["security"]["max_failures"] = json!(3);
    let mut gate = Gate::start(plan.clone(), &[]).expect("dialback starts");
    let to = gate.admin_addr();
    for _ in 0..3 {
        sipsak_message(to, "1001", Some("wrong"), "MAINTAIN-1", "");
    }
    assert_eq!(gate.terminate(Duration::from_secs(8)), Some(0));
    // Same state file, new process.
    let dir = gate.dir().to_path_buf();
    let state = std::fs::read_to_string(dir.join("state.json")).expect("state persisted");
    assert!(!state.contains("wrong"), "no secret in the state file");
    let gate2 = Gate::restart_in(gate, &[]).expect("restarts");
    let code = sipsak_message(
        gate2.admin_addr(),
        "1001",
        Some(PASSWORD_1001),
        "MAINTAIN-1",
        "",
    );
    assert_eq!(code, Some(0), "locked or not, the answer is 202");
    let lines = audit_lines(&gate2);
    let last = lines.last().expect("audit lines");
    assert_eq!(last["event"], "signal.fail", "{lines:?}");
    assert_eq!(
        last["reason"], "locked",
        "the lock survived the restart: {lines:?}"
    );
}
