//! Self-test of the SIPp registrar scenarios in `tests/sipp/` and of the test-side digest code:
//! each registrar is driven by a client that does it right (must pass) and by one that does
//! it wrong (must fail), so a dialback test that points the gate at a registrar can trust
//! the verdict.
//!
//! Clients: SIPp with `uac_register.xml` (MD5, qop auth / auth-int, 423, stale) and the
//! test-side UAC in `support::uac` (SHA-256, which SIPp 3.6 cannot compute, and a client
//! that ignores Min-Expires).

mod support;

use std::time::Duration;

use support::digest::{self, Algorithm, DigestInput};
use support::sipp::{Sipp, SippOutcome};
use support::uac::{self, Register};

const USER: &str = "gate-user";
const PASSWORD: &str = "pw1";

fn sipp_installed() -> bool {
    let ok = support::have_program("sipp");
    if !ok {
        eprintln!("skipping: sipp not installed");
    }
    ok
}

/// Runs `registrar` as a server and `uac_register.xml` against it with `password`.
fn sipp_against_sipp(registrar: &str, password: &str, expires: u32) -> (SippOutcome, SippOutcome) {
    let server = Sipp::registrar(registrar, USER, PASSWORD)
        .serve()
        .expect("start registrar");
    let client = Sipp::scenario("uac_register.xml")
        .args(["-s", USER, "-au", USER, "-ap", password])
        .var("expires", &expires.to_string())
        .run_call(server.addr())
        .expect("run client");
    (server.wait(), client)
}

/// Runs `registrar` as a server and the test-side UAC against it.
fn uac_against_sipp(
    registrar: &str,
    reg: impl FnOnce(&mut Register),
) -> (SippOutcome, uac::Registered) {
    let server = Sipp::registrar(registrar, USER, PASSWORD)
        .serve()
        .expect("start registrar");
    let mut register = Register::new(
        server.addr(),
        USER,
        PASSWORD,
        "sip:gate-user@127.0.0.1:5999",
    );
    reg(&mut register);
    let result = uac::register(&register).expect("register flow");
    (server.wait(), result)
}

#[test]
fn digest_matches_rfc_2617_and_rfc_7616_examples() {
    // RFC 2617 §3.5.
    let md5 = DigestInput {
        algorithm: Algorithm::Md5,
        username: "Mufasa",
        realm: "testrealm@host.com",
        password: "Circle Of Life",
        method: "GET",
        uri: "/dir/index.html",
        nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        qop: Some("auth"),
        nc: "00000001",
        cnonce: "0a4f113b",
        body: b"",
    };
    assert_eq!(digest::response(&md5), "6629fae49393a05397450978507c4ef1");
    // RFC 7616 §3.9.1.
    let sha = DigestInput {
        algorithm: Algorithm::Sha256,
        username: "Mufasa",
        realm: "http-auth@example.org",
        password: "Circle of Life",
        method: "GET",
        uri: "/dir/index.html",
        nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        qop: Some("auth"),
        nc: "00000001",
        cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        body: b"",
    };
    assert_eq!(
        digest::response(&sha),
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
}

#[test]
fn digest_answer_verifies_and_wrong_password_does_not() {
    let challenge = r#"Digest realm="sipp.test", nonce="abc", opaque="xyz", algorithm=SHA-256, qop="auth,auth-int""#;
    let answer =
        digest::answer(challenge, "u", "pw", "REGISTER", "sip:127.0.0.1", b"").expect("answer");
    assert!(
        answer.contains("algorithm=SHA-256")
            && answer.contains("qop=auth,")
            && answer.contains(r#"opaque="xyz""#)
    );
    assert_eq!(digest::verify(&answer, "REGISTER", "pw", b""), Ok(()));
    assert!(digest::verify(&answer, "REGISTER", "other", b"").is_err());
    assert!(digest::verify(&answer, "INVITE", "pw", b"").is_err());
}

#[test]
fn qop_auth_authint_registrar_accepts_right_md5_digest() {
    if !sipp_installed() {
        return;
    }
    let (server, client) = sipp_against_sipp("reg_qop_auth_authint.xml", PASSWORD, 60);
    assert!(server.passed(), "{}", server.report());
    assert!(client.passed(), "{}", client.report());
    // SIPp answers qop="auth,auth-int" with auth-int; our verifier agrees with verifyauth.
    let register = server.received_requests("REGISTER");
    assert!(register[1].contains("qop=auth-int"), "{}", register[1]);
    assert_eq!(server.verify_digest("REGISTER", PASSWORD), Ok(1));
    let ok = server.sent().pop().expect("a response");
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(
        ok.contains(";expires=60") && ok.contains("Expires: 60"),
        "{ok}"
    );
}

#[test]
fn qop_auth_authint_registrar_rejects_wrong_password() {
    if !sipp_installed() {
        return;
    }
    let (server, client) = sipp_against_sipp("reg_qop_auth_authint.xml", "wrong", 60);
    assert!(!server.passed(), "{}", server.report());
    assert!(!client.passed());
    assert!(server.sent().iter().any(|m| m.starts_with("SIP/2.0 403")));
}

#[test]
fn proxy_407_registrar_gets_proxy_authorization() {
    if !sipp_installed() {
        return;
    }
    let (server, client) = sipp_against_sipp("reg_407.xml", PASSWORD, 60);
    assert!(server.passed(), "{}", server.report());
    assert!(client.passed(), "{}", client.report());
    assert!(server.received_requests("REGISTER")[1].contains("Proxy-Authorization:"));
    assert_eq!(server.verify_digest("REGISTER", PASSWORD), Ok(1));
}

#[test]
fn proxy_407_wrong_password_is_caught_by_verify_digest() {
    if !sipp_installed() {
        return;
    }
    // SIPp cannot check Proxy-Authorization itself: the flow completes, the digest check fails.
    let (server, _) = sipp_against_sipp("reg_407.xml", "wrong", 60);
    assert!(server.verify_digest("REGISTER", PASSWORD).is_err());
}

#[test]
fn stale_registrar_requires_retry_with_new_nonce() {
    if !sipp_installed() {
        return;
    }
    let (server, client) = sipp_against_sipp("reg_stale.xml", PASSWORD, 60);
    assert!(server.passed(), "{}", server.report());
    assert!(client.passed(), "{}", client.report());
    let register = server.received_requests("REGISTER");
    assert_eq!(register.len(), 3);
    assert!(register[2].contains(r#"nonce="c0ffee02e2b2cad5""#));
    assert_eq!(server.verify_digest("REGISTER", PASSWORD), Ok(2));
}

#[test]
fn stale_registrar_rejects_wrong_password_before_going_stale() {
    if !sipp_installed() {
        return;
    }
    let (server, _) = sipp_against_sipp("reg_stale.xml", "wrong", 60);
    assert!(!server.passed(), "{}", server.report());
}

#[test]
fn registrar_423_accepts_client_raising_expiry_to_min_expires() {
    if !sipp_installed() {
        return;
    }
    let (server, client) = sipp_against_sipp("reg_423.xml", PASSWORD, 60);
    assert!(server.passed(), "{}", server.report());
    assert!(client.passed(), "{}", client.report());
    let register = server.received_requests("REGISTER");
    assert!(register[1].contains("Expires: 120") && register[2].contains("Expires: 120"));
    assert!(server
        .sent()
        .pop()
        .is_some_and(|m| m.contains(";expires=120")));
}

#[test]
fn registrar_423_fails_client_that_ignores_min_expires() {
    if !sipp_installed() {
        return;
    }
    let (server, result) = uac_against_sipp("reg_423.xml", |r| r.honour_min_expires = false);
    assert!(!server.passed(), "{}", server.report());
    assert_ne!(result.status, 200);
}

#[test]
fn registrar_423_accepts_test_uac() {
    if !sipp_installed() {
        return;
    }
    let (server, result) = uac_against_sipp("reg_423.xml", |_| {});
    assert!(server.passed(), "{}", server.report());
    assert_eq!(result.status, 200);
}

#[test]
fn sha256_registrar_accepts_right_sha256_digest() {
    if !sipp_installed() {
        return;
    }
    let (server, result) = uac_against_sipp("reg_sha256.xml", |_| {});
    assert!(server.passed(), "{}", server.report());
    assert_eq!(result.status, 200);
    let register = server.received_requests("REGISTER");
    assert!(register[1].contains("algorithm=SHA-256"), "{}", register[1]);
    assert_eq!(server.verify_digest("REGISTER", PASSWORD), Ok(1));
}

#[test]
fn sha256_registrar_fails_md5_answer_and_wrong_password_is_caught() {
    if !sipp_installed() {
        return;
    }
    // SIPp 3.6 cannot answer a SHA-256 challenge at all; the registrar must not pass a flow
    // that stops there (it fails on its global timeout, shortened here).
    let server = Sipp::registrar("reg_sha256.xml", USER, PASSWORD)
        .timeout(Duration::from_secs(3))
        .serve()
        .expect("start registrar");
    let client = Sipp::scenario("uac_register.xml")
        .args(["-s", USER, "-au", USER, "-ap", PASSWORD])
        .var("expires", "60")
        .timeout(Duration::from_secs(3))
        .run_call(server.addr())
        .expect("run client");
    assert!(!client.passed());
    let server = server.wait();
    assert!(!server.passed(), "{}", server.report());

    let (server, _) = uac_against_sipp("reg_sha256.xml", |r| r.password = "wrong".to_owned());
    assert!(server.verify_digest("REGISTER", PASSWORD).is_err());
}

#[test]
fn registrar_refuses_zero_expiry() {
    if !sipp_installed() {
        return;
    }
    // Expires: 0 would be a removal (RFC 3261 §10.2.2); these registrars only accept bindings.
    let (server, _) = sipp_against_sipp("reg_qop_auth_authint.xml", PASSWORD, 0);
    assert!(!server.passed(), "{}", server.report());
}

#[test]
fn options_responder_answers_one_options() {
    if !sipp_installed() {
        return;
    }
    let server = Sipp::scenario("uas_options.xml")
        .serve()
        .expect("start responder");
    assert!(support::kamailio::options_answered(server.addr()));
    let outcome = server.wait();
    assert!(outcome.passed(), "{}", outcome.report());
    assert_eq!(outcome.received_requests("OPTIONS").len(), 1);
}

#[test]
fn refresh_registrar_accepts_refresh_on_same_call_id_within_granted_expiry() {
    if !sipp_installed() {
        return;
    }
    let server = Sipp::registrar("reg_refresh.xml", USER, PASSWORD)
        .serve()
        .expect("start registrar");
    let register = Register::new(
        server.addr(),
        USER,
        PASSWORD,
        "sip:gate-user@127.0.0.1:5999",
    );
    let first = uac::register(&register).expect("first flow");
    assert_eq!(first.status, 200);
    assert!(first
        .responses
        .last()
        .is_some_and(|r| r.contains(";expires=10")));

    // A refresh without credentials is challenged again with a new nonce, then accepted.
    let refresh = uac::register(&register.refresh_of(&first)).expect("refresh");
    let server = server.wait();

    assert_eq!(refresh.status, 200, "{:?}", refresh.responses);
    assert!(server.passed(), "{}", server.report());
    let requests = server.received_requests("REGISTER");
    assert_eq!(requests.len(), 4);
    assert!(requests[3].contains(r#"nonce="c0ffee02e2b2cad5""#));
    assert_eq!(server.verify_digest("REGISTER", PASSWORD), Ok(2));
}

#[test]
fn refresh_registrar_fails_client_that_never_refreshes() {
    if !sipp_installed() {
        return;
    }
    let server = Sipp::registrar("reg_refresh.xml", USER, PASSWORD)
        .timeout(Duration::from_secs(15))
        .serve()
        .expect("start registrar");
    let register = Register::new(
        server.addr(),
        USER,
        PASSWORD,
        "sip:gate-user@127.0.0.1:5999",
    );
    assert_eq!(uac::register(&register).expect("first flow").status, 200);

    let server = server.wait();
    assert!(!server.passed(), "{}", server.report());
}
