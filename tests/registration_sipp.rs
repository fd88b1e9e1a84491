//! Registration against SIPp registrars that challenge the way real PBXs and carriers do:
//! `qop="auth,auth-int"`, `algorithm=SHA-256`, 407 instead of 401, a stale nonce, 423 Interval
//! Too Brief with Min-Expires, and a short grant that must be refreshed on the same Call-ID.
//! Each scenario passes only if the flow ends in a 200 to a correctly authorised REGISTER;
//! where SIPp cannot check the digest itself (SHA-256, Proxy-Authorization) the test checks
//! it from SIPp's message trace.

mod support;

use serde_json::json;
use support::dialback::{free_port, Gate};
use support::sipp::Sipp;

const USER: &str = "gate-user";
const PASSWORD: &str = "registrar-secret-9";

fn register_against(scenario: &str, check_digest: bool) {
    let registrar = Sipp::registrar(scenario, USER, PASSWORD)
        .serve()
        .expect("sipp registrar starts");
    let dialplan = json!({
        "trunks": {
            "user": { "listen": format!("127.0.0.1:{}", free_port()),
                      "registrar": registrar.uri(),
                      "aor": "sip:gate-user@127.0.0.1", "auth_username": USER,
                      "password_env": "T_USER_PW", "expires_s": 60 },
            "admin": { "listen": format!("127.0.0.1:{}", free_port()), "register": false,
                       "aor": "sip:gate-admin@127.0.0.1" },
            "originate": { "listen": format!("127.0.0.1:{}", free_port()),
                           "proxy": registrar.uri(),
                           "from": "sip:gate-out@127.0.0.1", "auth_username": "gate-out",
                           "password_env": "T_USER_PW" }
        }
    });
    let gate = Gate::start(dialplan, &[("T_USER_PW", PASSWORD)]).expect("dialback starts");
    let outcome = registrar.wait();
    assert!(
        outcome.passed(),
        "{scenario}: {}\n--- dialback\n{}",
        outcome.report(),
        gate.log()
    );
    if check_digest {
        let n = outcome
            .verify_digest("REGISTER", PASSWORD)
            .unwrap_or_else(|e| panic!("{scenario}: digest wrong: {e}\n{}", outcome.report()));
        assert!(n >= 1, "{scenario}: at least one authorised REGISTER");
    }
    let log = gate.log();
    assert!(log.contains("registered"), "{log}");
    assert!(
        !log.contains(PASSWORD),
        "the password never reaches the log"
    );
}

#[test]
fn registers_through_qop_auth_and_auth_int_challenge() {
    register_against("reg_qop_auth_authint.xml", true);
}

#[test]
fn registers_through_sha256_challenge() {
    register_against("reg_sha256.xml", true);
}

#[test]
fn registers_through_407_proxy_challenge() {
    register_against("reg_407.xml", true);
}

#[test]
fn registers_again_after_stale_nonce() {
    register_against("reg_stale.xml", true);
}

#[test]
fn honours_423_min_expires() {
    register_against("reg_423.xml", true);
}

#[test]
fn refreshes_a_short_grant_on_the_same_call_id() {
    register_against("reg_refresh.xml", true);
}
