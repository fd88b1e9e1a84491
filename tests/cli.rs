//! The command line as an operator meets it: help and version, `check` on good and bad
//! dialplans (located errors, exit 2), `hash-secret`, and `run`'s exit codes.

mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use support::dialback::free_port;

fn dialback(args: &[&str], envs: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dialback"));
    cmd.args(args)
        .env_remove("DIALBACK_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn dialback");
    if let Some(mut sin) = child.stdin.take() {
        let _ = sin.write_all(stdin.unwrap_or("").as_bytes());
    }
    child.wait_with_output().expect("wait")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const EXAMPLE_ENV: &[(&str, &str)] = &[
    ("DIALBACK_USER_PASSWORD", "u"),
    ("DIALBACK_ADMIN_PASSWORD", "a"),
    ("DIALBACK_ORIGINATE_PASSWORD", "o"),
];

#[test]
fn every_subcommand_has_help_and_version_is_printed() {
    let v = dialback(&["--version"], &[], None);
    assert!(v.status.success());
    assert!(text(&v).contains(env!("CARGO_PKG_VERSION")));
    for sub in ["run", "check", "hash-secret"] {
        let h = dialback(&[sub, "--help"], &[], None);
        assert!(h.status.success(), "{sub} --help");
        assert!(text(&h).contains("Usage"), "{sub}: {}", text(&h));
    }
    let bad = dialback(&["no-such-command"], &[], None);
    assert_eq!(bad.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn check_accepts_the_example_dialplan() {
    let o = dialback(&["check", "dialplans/example.json"], EXAMPLE_ENV, None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout)
        .lines()
        .any(|l| l == "ok"));
}

#[test]
fn check_names_file_line_and_column_of_a_syntax_error_and_exits_2() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("bad.json");
    std::fs::write(
        &p,
        "{\n  \"trunks\": {\n    \"user\": { \"listen\": 5 ,, }\n  }\n}\n",
    )
    .expect("write");
    let o = dialback(&["check", p.to_str().expect("utf8")], &[], None);
    assert_eq!(o.status.code(), Some(2));
    let t = text(&o);
    assert!(t.contains("bad.json:3:"), "file:line:col in {t}");
}

#[test]
fn check_reports_unknown_keys_with_their_path() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("unknown.json");
    std::fs::write(
        &p,
        r#"{"trunks": {"user": {"listen": "127.0.0.1:5070", "aor": "sip:u@h", "register": false, "colour": "red"},
            "admin": {"listen": "127.0.0.1:5071", "aor": "sip:a@h", "register": false},
            "originate": {"listen": "127.0.0.1:5072", "proxy": "sip:127.0.0.1:5060", "from": "sip:o@h"}}}"#,
    )
    .expect("write");
    let o = dialback(&["check", p.to_str().expect("utf8")], &[], None);
    assert_eq!(o.status.code(), Some(2));
    let t = text(&o);
    assert!(t.contains("colour") && t.contains("trunks.user"), "{t}");
}

#[test]
fn run_refuses_a_bad_dialplan_with_exit_2_and_a_busy_port_with_exit_1() {
    let o = dialback(
        &["run", "--config", "/nonexistent/dialplan.json"],
        &[],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("/nonexistent/dialplan.json"));

    let busy = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("busy.json");
    let plan = serde_json::json!({"trunks": {
        "user": {"listen": format!("127.0.0.1:{port}"), "aor": "sip:u@127.0.0.1", "register": false},
        "admin": {"listen": format!("127.0.0.1:{}", free_port()), "aor": "sip:a@127.0.0.1", "register": false},
        "originate": {"listen": format!("127.0.0.1:{}", free_port()), "proxy": "sip:127.0.0.1:5060", "from": "sip:o@127.0.0.1"}}});
    std::fs::write(&p, plan.to_string()).expect("write");
    let o = dialback(&["run", "--config", p.to_str().expect("utf8")], &[], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("127.0.0.1:{port}")),
        "{}",
        text(&o)
    );
}

#[test]
fn hash_secret_prints_argon2id_for_a_pin_and_ha1_values_for_a_password() {
    let o = dialback(&["hash-secret"], &[], Some("2468\n"));
    assert!(o.status.success(), "{}", text(&o));
    let phc = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
    assert!(!text(&o).contains("2468"), "the PIN is never echoed");

    let o = dialback(
        &["hash-secret", "--realm", "dialback", "--user", "1001"],
        &[],
        Some("demo-secret-1\n"),
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    // HA1 = MD5("1001:dialback:demo-secret-1"), RFC 2617 §3.2.2.2.
    assert_eq!(v["ha1_md5"], "6fc1deb8adfee3f85e78653dfeec5abb");
    assert_eq!(v["ha1_sha256"].as_str().map(str::len), Some(64));

    let short = dialback(&["hash-secret"], &[], Some("12\n"));
    assert_eq!(short.status.code(), Some(2), "a PIN too short is refused");
}
