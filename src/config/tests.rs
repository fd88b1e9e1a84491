//! Tests of parsing and validation: every rejection rule, error locations, warnings, secret
//! redaction, and the shipped example dialplan.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Value};

use super::*;

const EXAMPLE: &str = include_str!("../../dialplans/example.json");
const EXAMPLE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dialplans/example.json");

fn demo_env(name: &str) -> Option<String> {
    let vars: HashMap<&str, &str> = [
        ("DIALBACK_USER_PASSWORD", "user-pw"),
        ("DIALBACK_ADMIN_PASSWORD", "admin-pw"),
        ("DIALBACK_ORIGINATE_PASSWORD", "out-pw"),
    ]
    .into_iter()
    .collect();
    vars.get(name).map(|v| v.to_string())
}

fn no_files(p: &Path) -> std::io::Result<String> {
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("{} not found", p.display()),
    ))
}

fn parse_str(text: &str) -> Result<Loaded, ConfigErrors> {
    parse("conf/dp.json", text, &demo_env, &no_files)
}

fn parse_value(v: &Value) -> Result<Loaded, ConfigErrors> {
    parse_str(&serde_json::to_string_pretty(v).unwrap())
}

/// The smallest valid dialplan: trunks only, everything else defaulted.
fn minimal() -> Value {
    json!({
        "trunks": {
            "user": { "listen": "127.0.0.1:5070", "registrar": "sip:127.0.0.1:5060",
                      "aor": "sip:gate-user@127.0.0.1", "auth_username": "gate-user",
                      "password_env": "DIALBACK_USER_PASSWORD" },
            "admin": { "listen": "127.0.0.1:5071", "registrar": "sip:127.0.0.1:5060",
                       "aor": "sip:gate-admin@127.0.0.1" },
            "originate": { "listen": "127.0.0.1:5072", "proxy": "sip:127.0.0.1:5060",
                           "from": "sip:gate-out@127.0.0.1" }
        }
    })
}

fn admin(digit: i64, id: &str) -> Value {
    json!({
        "digit": digit, "id": id, "name": "x",
        "pin": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
        "digest": { "ha1_md5": "6fc1deb8adfee3f85e78653dfeec5abb" },
        "numbers": ["sip:1001@127.0.0.1"]
    })
}

fn with_admins(admins: Vec<Value>) -> Value {
    let mut v = minimal();
    v["admins"] = Value::Array(admins);
    v
}

/// Sets `value` at a `/`-separated pointer, creating objects on the way.
fn set(mut v: Value, pointer: &str, value: Value) -> Value {
    let mut cur = &mut v;
    for part in pointer.trim_start_matches('/').split('/') {
        cur = match cur {
            Value::Array(a) => &mut a[part.parse::<usize>().unwrap()],
            other => {
                if !other.is_object() {
                    *other = json!({});
                }
                other
                    .as_object_mut()
                    .unwrap()
                    .entry(part)
                    .or_insert(Value::Null)
            }
        };
    }
    *cur = value;
    v
}

fn error_lines(result: Result<Loaded, ConfigErrors>) -> Vec<String> {
    match result {
        Ok(_) => panic!("expected the dialplan to be rejected"),
        Err(e) => e.to_string().lines().map(str::to_owned).collect(),
    }
}

/// Asserts rejection with a semantic error at `path` whose message contains `needle`.
#[track_caller]
fn assert_rejected_at(v: &Value, path: &str, needle: &str) {
    let lines = error_lines(parse_value(v));
    let prefix = format!("conf/dp.json: at {path}: ");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&prefix) && l.contains(needle)),
        "no error at {path} containing {needle:?} in {lines:#?}"
    );
}

// ---- the example and defaults ---------------------------------------------------------------

#[test]
fn example_dialplan_is_accepted_with_prompts_checked() {
    let read_file = |p: &Path| std::fs::read_to_string(p);
    let read_bytes = |p: &Path| std::fs::read(p);
    let loaded =
        parse_with_prompts(EXAMPLE_PATH, EXAMPLE, &demo_env, &read_file, &read_bytes).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let dp = loaded.dialplan;
    assert_eq!(dp.admins.len(), 2);
    assert_eq!(dp.admins[0].digit.value(), 1);
    assert_eq!(dp.admins[0].numbers.len(), 3);
    assert_eq!(
        dp.trunks.user.password.as_ref().map(Secret::expose),
        Some("user-pw")
    );
    assert_eq!(
        dp.trunks.originate.allow_sources,
        vec!["127.0.0.1:5060".parse().unwrap()]
    );
    assert_eq!(dp.modem.target, ModemTarget::Console);
    assert!(dp.media.prompts["welcome"].ends_with("dialplans/prompts/welcome.wav"));
    assert!(dp.audit.path.ends_with("dialplans/audit.jsonl"));
}

#[test]
fn example_hashes_match_the_documented_demo_secrets() {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    use md5::{Digest as _, Md5};
    use sha2::Sha256;
    let dp = parse(EXAMPLE_PATH, EXAMPLE, &demo_env, &no_files)
        .unwrap()
        .dialplan;
    for (admin, pin, password) in [
        (&dp.admins[0], "2468", "demo-secret-1"),
        (&dp.admins[1], "1357", "demo-secret-2"),
    ] {
        let phc = PasswordHash::new(admin.pin.expose()).unwrap();
        assert!(argon2::Argon2::default()
            .verify_password(pin.as_bytes(), &phc)
            .is_ok());
        // RFC 7616 §3.4.2: A1 = username ":" realm ":" passwd.
        let a1 = format!("{}:{}:{}", admin.id, admin.digest.realm, password);
        let md5_hex: String = Md5::digest(a1.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let sha_hex: String = Sha256::digest(a1.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(admin.digest.ha1_md5.as_ref().unwrap().expose(), md5_hex);
        assert_eq!(admin.digest.ha1_sha256.as_ref().unwrap().expose(), sha_hex);
    }
}

#[test]
fn load_names_a_file_it_cannot_read() {
    // `load` uses the real environment; only the missing-file path is deterministic here.
    let err = load(Path::new("/nonexistent/dp.json")).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("/nonexistent/dp.json: cannot read:"));
}

#[test]
fn omitted_sections_take_documented_defaults() {
    let dp = parse_value(&minimal()).unwrap().dialplan;
    let user = &dp.trunks.user;
    assert_eq!(user.transport, Transport::Udp);
    assert_eq!(user.expires_s, 300);
    assert!(user.register);
    assert_eq!(dp.limits.max_message_bytes, 8192);
    assert!(dp.admins.is_empty());
    assert_eq!(
        dp.signal.text.render(AdminDigit::new(3).unwrap()),
        "MAINTAIN-3"
    );
    assert_eq!(
        dp.signal.dtmf.render(AdminDigit::new(7).unwrap()),
        "*62468246*7#"
    );
    assert_eq!(dp.signal.window_s, 120);
    assert_eq!(dp.routes.user.otherwise, Otherwise::Reject(404));
    assert_eq!(dp.routes.admin.otherwise, Otherwise::Reject(403));
    assert_eq!(dp.callback.on_diversion, OnDiversion::Abort);
    assert_eq!(dp.security.realm, "dialback");
    assert_eq!(dp.security.state_path, Path::new("conf/state.json"));
    assert_eq!(dp.audit.path, Path::new("conf/audit.jsonl"));
    assert_eq!(dp.media.rtp_ports, (20000, 20999));
    assert_eq!(
        dp.modem.modulations,
        vec![
            Modulation::V22bis,
            Modulation::V22,
            Modulation::V21,
            Modulation::Bell103
        ]
    );
    assert_eq!(dp.modem.tx_level_dbm0, -12);
    // Originate defaults its allowed source to the proxy's IP literal and port.
    assert_eq!(
        dp.trunks.originate.allow_sources,
        vec!["127.0.0.1:5060".parse().unwrap()]
    );
}

#[test]
fn signal_patterns_round_trip_between_render_and_digit_in() {
    let signal = parse_value(&minimal()).unwrap().dialplan.signal;
    for d in 0..=9 {
        let digit = AdminDigit::new(d).unwrap();
        assert_eq!(
            signal.text.digit_in(&signal.text.render(digit)),
            Some(digit)
        );
        assert_eq!(
            signal.dtmf.digit_in(&signal.dtmf.render(digit)),
            Some(digit)
        );
    }
    for not in [
        "MAINTAIN-",
        "MAINTAIN-12",
        "MAINTAIN-x",
        "maintain-1",
        "XMAINTAIN-1",
        "",
    ] {
        assert_eq!(signal.text.digit_in(not), None, "{not:?}");
    }
    assert_eq!(signal.dtmf.digit_in("*62468246*1"), None);
    assert_eq!(signal.dtmf.digit_in("*62468246*#"), None);
}

#[test]
fn admins_are_found_by_digit_and_id() {
    let dp = parse(EXAMPLE_PATH, EXAMPLE, &demo_env, &no_files)
        .unwrap()
        .dialplan;
    assert_eq!(dp.admin(AdminDigit::new(2).unwrap()).unwrap().id, "1002");
    assert!(dp.admin(AdminDigit::new(3).unwrap()).is_none());
    assert_eq!(dp.admin_by_id("1001").unwrap().digit.value(), 1);
    assert!(dp.admin_by_id("9999").is_none());
}

#[test]
fn digest_realm_defaults_to_the_security_realm() {
    let v = set(
        with_admins(vec![admin(1, "1001")]),
        "/security/realm",
        json!("gate"),
    );
    let dp = parse_value(&v).unwrap().dialplan;
    assert_eq!(dp.admins[0].digest.realm, "gate");
}

#[test]
fn schema_defaults_are_the_defaults_the_parser_applies() {
    // Guards dialplans/dialplan.schema.json against drift: every key the schema gives a
    // default for must be known to the parser, and writing that default out explicitly must
    // produce the same dialplan as leaving it out.
    let schema: Value =
        serde_json::from_str(include_str!("../../dialplans/dialplan.schema.json")).unwrap();
    fn walk(schema: &Value, pointer: String, out: &mut Vec<(String, Value)>) {
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        for (key, sub) in props {
            let p = format!("{pointer}/{key}");
            match sub.get("default") {
                Some(d) => out.push((p, d.clone())),
                None => walk(sub, p, out),
            }
        }
    }
    let mut defaults = Vec::new();
    walk(&schema, String::new(), &mut defaults);
    assert!(
        defaults.len() > 50,
        "only {} defaults found",
        defaults.len()
    );
    let implicit = format!("{:?}", parse_value(&minimal()).unwrap().dialplan);
    let mut explicit = minimal();
    for (pointer, value) in &defaults {
        explicit = set(explicit, pointer, value.clone());
    }
    let explicit = format!("{:?}", parse_value(&explicit).unwrap().dialplan);
    assert_eq!(implicit, explicit);
}

#[test]
fn schema_lists_exactly_the_keys_the_example_uses_per_section() {
    let schema: Value =
        serde_json::from_str(include_str!("../../dialplans/dialplan.schema.json")).unwrap();
    let example: Value = serde_json::from_str(EXAMPLE).unwrap();
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    for section in [
        "limits", "signal", "callback", "security", "audit", "media", "modem",
    ] {
        assert_eq!(
            keys(&schema["properties"][section]["properties"]),
            keys(&example[section]),
            "section {section}"
        );
    }
    assert_eq!(keys(&schema["properties"]), keys(&example));
}

// ---- error locations ------------------------------------------------------------------------

#[test]
fn syntax_error_is_reported_with_line_and_column() {
    let text = "{\n  \"trunks\": {\n    \"user\": { \"listen\": \"127.0.0.1:5070\",, }\n";
    let lines = error_lines(parse_str(text));
    assert_eq!(lines.len(), 1);
    assert!(
        // The second comma of `"127.0.0.1:5070",,` is at column 42.
        lines[0] == "conf/dp.json:3:42: key must be a string",
        "{}",
        lines[0]
    );
    assert!(!lines[0].contains(" at line "), "{}", lines[0]);
}

#[test]
fn unknown_key_is_reported_with_line_column_and_path() {
    let text = r#"{
  "trunks": {
    "user": { "listen": "127.0.0.1:5070", "registrar": "sip:127.0.0.1:5060",
              "aor": "sip:u@127.0.0.1", "expire_s": 60 },
    "admin": { "listen": "127.0.0.1:5071", "registrar": "sip:127.0.0.1:5060", "aor": "sip:a@127.0.0.1" },
    "originate": { "listen": "127.0.0.1:5072", "proxy": "sip:127.0.0.1:5060", "from": "sip:o@127.0.0.1" }
  }
}"#;
    let lines = error_lines(parse_str(text));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0]
            .starts_with("conf/dp.json:4:50: at $.trunks.user.expire_s: unknown field `expire_s`"),
        "{}",
        lines[0]
    );
}

#[test]
fn unknown_top_level_section_is_rejected() {
    let v = set(minimal(), "/dialplan", json!({}));
    let lines = error_lines(parse_value(&v));
    assert!(lines[0].contains("unknown field `dialplan`"), "{lines:?}");
}

#[test]
fn wrong_type_is_reported_with_its_json_path() {
    let v = set(minimal(), "/limits/max_dialogs", json!("many"));
    let lines = error_lines(parse_value(&v));
    assert!(
        lines[0].contains(": at $.limits.max_dialogs: invalid type: string \"many\""),
        "{lines:?}"
    );
    let v = set(minimal(), "/modem/modulations", json!(["v34"]));
    let lines = error_lines(parse_value(&v));
    assert!(
        lines[0].contains("at $.modem.modulations[0]: unknown variant `v34`"),
        "{lines:?}"
    );
}

#[test]
fn missing_trunks_section_is_a_located_error() {
    let lines = error_lines(parse_str("{}"));
    assert!(
        lines[0].starts_with("conf/dp.json:1:2: at $: missing field `trunks`"),
        "{lines:?}"
    );
}

#[test]
fn trailing_garbage_after_the_document_is_a_syntax_error() {
    let text = serde_json::to_string(&minimal()).unwrap() + " x";
    let lines = error_lines(parse_str(&text));
    assert!(lines[0].contains("trailing characters"), "{lines:?}");
}

#[test]
fn all_semantic_errors_are_reported_one_per_line_with_paths() {
    let mut bad_admin = admin(12, "1001");
    bad_admin["pin"] = json!("2468");
    bad_admin["numbers"] = json!([]);
    let v = set(with_admins(vec![bad_admin]), "/signal/window_s", json!(0));
    let lines = error_lines(parse_value(&v));
    let expected = [
        "conf/dp.json: at $.admins[0].digit: digit 12 is outside 0..=9",
        "conf/dp.json: at $.admins[0].pin: must be an argon2id PHC hash",
        "conf/dp.json: at $.admins[0].numbers: must not be empty",
        "conf/dp.json: at $.signal.window_s: 0 is outside 1..=3600",
    ];
    for e in expected {
        assert!(
            lines.iter().any(|l| l.starts_with(e)),
            "{e} not in {lines:#?}"
        );
    }
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
}

// ---- issue 4 rejection rules ----------------------------------------------------------------

#[test]
fn duplicate_digits_are_rejected() {
    let v = with_admins(vec![admin(1, "1001"), admin(1, "1002")]);
    assert_rejected_at(&v, "$.admins[1].digit", "also used by $.admins[0]");
}

#[test]
fn duplicate_ids_are_rejected() {
    let v = with_admins(vec![admin(1, "1001"), admin(2, "1001")]);
    assert_rejected_at(&v, "$.admins[1].id", "\"1001\" is also used by $.admins[0]");
}

#[test]
fn digits_outside_zero_to_nine_are_rejected() {
    for d in [-1, 10, 300] {
        let v = with_admins(vec![admin(d, "1001")]);
        assert_rejected_at(&v, "$.admins[0].digit", "outside 0..=9");
    }
    for d in [0, 9] {
        assert!(parse_value(&with_admins(vec![admin(d, "1001")])).is_ok());
    }
}

#[test]
fn numbers_that_are_not_sip_or_tel_uris_are_rejected() {
    for bad in [
        "+819012345678",
        "mailto:a@b",
        "sip:",
        "sip:a b@host",
        "tel:abc",
    ] {
        let v = set(
            with_admins(vec![admin(1, "1001")]),
            "/admins/0/numbers",
            json!(["tel:+81", bad]),
        );
        assert_rejected_at(&v, "$.admins[0].numbers[1]", "is not a valid URI");
    }
}

#[test]
fn empty_numbers_list_is_rejected() {
    let v = set(
        with_admins(vec![admin(1, "1001")]),
        "/admins/0/numbers",
        json!([]),
    );
    assert_rejected_at(&v, "$.admins[0].numbers", "must not be empty");
}

#[test]
fn signal_without_digit_placeholder_is_rejected_unless_separate_digit() {
    let v = set(minimal(), "/signal/text", json!("MAINTAIN"));
    assert_rejected_at(&v, "$.signal.text", "must contain {digit}");
    let v = set(minimal(), "/signal/dtmf", json!("*62468246#"));
    assert_rejected_at(&v, "$.signal.dtmf", "must contain {digit}");

    let v = set(
        set(
            set(minimal(), "/signal/text", json!("MAINTAIN")),
            "/signal/dtmf",
            json!("*624#"),
        ),
        "/signal/separate_digit",
        json!(true),
    );
    let signal = parse_value(&v).unwrap().dialplan.signal;
    assert_eq!(signal.text.suffix, None);
    assert_eq!(signal.text.render(AdminDigit::new(1).unwrap()), "MAINTAIN");
    // With separate_digit the placeholder would be ambiguous.
    let v = set(v, "/signal/text", json!("M-{digit}"));
    assert_rejected_at(&v, "$.signal.text", "separate_digit is true");
}

#[test]
fn signal_with_repeated_or_bare_placeholder_is_rejected() {
    let v = set(minimal(), "/signal/text", json!("{digit}-{digit}"));
    assert_rejected_at(&v, "$.signal.text", "2 times");
    let v = set(minimal(), "/signal/dtmf", json!("{digit}"));
    assert_rejected_at(&v, "$.signal.dtmf", "must not be empty");
}

#[test]
fn dtmf_pattern_allows_only_dtmf_characters() {
    for bad in ["*62x*{digit}#", "*62 {digit}#", "a{digit}"] {
        let v = set(minimal(), "/signal/dtmf", json!(bad));
        assert_rejected_at(&v, "$.signal.dtmf", "is not one of 0-9 * # A-D");
    }
    let v = set(minimal(), "/signal/dtmf", json!("ABCD*#0123456789{digit}"));
    assert!(parse_value(&v).is_ok());
}

#[test]
fn window_must_be_between_one_second_and_one_hour() {
    for bad in [0, 3601] {
        let v = set(minimal(), "/signal/window_s", json!(bad));
        assert_rejected_at(&v, "$.signal.window_s", "outside 1..=3600");
    }
    for ok in [1, 3600] {
        assert!(parse_value(&set(minimal(), "/signal/window_s", json!(ok))).is_ok());
    }
}

#[test]
fn plaintext_pin_is_rejected() {
    let v = set(
        with_admins(vec![admin(1, "1001")]),
        "/admins/0/pin",
        json!("2468"),
    );
    assert_rejected_at(&v, "$.admins[0].pin", "argon2id");
    let v = set(
        v,
        "/admins/0/pin",
        json!("$argon2i$v=19$m=16,t=2,p=1$c2FsdA$aGFzaA"),
    );
    assert_rejected_at(&v, "$.admins[0].pin", "argon2id");
}

#[test]
fn ha1_values_must_be_lowercase_hex_of_the_right_length() {
    let base = with_admins(vec![admin(1, "1001")]);
    for bad in [
        "demo-secret-1",
        "6FC1DEB8ADFEE3F85E78653DFEEC5ABB",
        "6fc1deb8adfee3f85e78653dfeec5ab",
    ] {
        let v = set(base.clone(), "/admins/0/digest/ha1_md5", json!(bad));
        assert_rejected_at(&v, "$.admins[0].digest.ha1_md5", "32 lowercase hex");
    }
    let v = set(
        base.clone(),
        "/admins/0/digest/ha1_sha256",
        json!("6fc1deb8adfee3f85e78653dfeec5abb"),
    );
    assert_rejected_at(&v, "$.admins[0].digest.ha1_sha256", "64 lowercase hex");
}

#[test]
fn at_least_one_ha1_is_required() {
    let v = set(
        with_admins(vec![admin(1, "1001")]),
        "/admins/0/digest",
        json!({ "realm": "dialback" }),
    );
    assert_rejected_at(
        &v,
        "$.admins[0].digest",
        "at least one of ha1_md5 and ha1_sha256",
    );
}

#[test]
fn trunk_listen_addresses_must_be_distinct() {
    let v = set(
        minimal(),
        "/trunks/originate/listen",
        json!("127.0.0.1:5070"),
    );
    assert_rejected_at(
        &v,
        "$.trunks.originate.listen",
        "127.0.0.1:5070 is also used by $.trunks.user.listen",
    );
}

#[test]
fn wildcard_listen_needs_an_advertised_address() {
    let v = set(minimal(), "/trunks/user/listen", json!("0.0.0.0:5070"));
    assert_rejected_at(
        &v,
        "$.trunks.user.listen",
        "0.0.0.0:5070 is a wildcard address: set advertise",
    );
    let v = set(minimal(), "/trunks/originate/listen", json!("[::]:5072"));
    assert_rejected_at(&v, "$.trunks.originate.listen", "is a wildcard address");
    let v = set(
        set(minimal(), "/trunks/user/listen", json!("0.0.0.0:5070")),
        "/trunks/user/advertise",
        json!("192.0.2.10:5070"),
    );
    let loaded = parse_value(&v).expect("advertise makes a wildcard listen usable");
    let user = &loaded.dialplan.trunks.user;
    assert_eq!(user.listen.to_string(), "0.0.0.0:5070");
    assert_eq!(user.advertise.to_string(), "192.0.2.10:5070");
    // Without advertise, the listen address is what others are told.
    assert_eq!(
        loaded.dialplan.trunks.admin.advertise,
        loaded.dialplan.trunks.admin.listen
    );
}

#[test]
fn advertise_must_be_a_concrete_socket_address() {
    let v = set(minimal(), "/trunks/admin/advertise", json!("0.0.0.0:5071"));
    assert_rejected_at(&v, "$.trunks.admin.advertise", "not a wildcard");
    let v = set(
        minimal(),
        "/trunks/originate/advertise",
        json!("gate.example"),
    );
    assert_rejected_at(
        &v,
        "$.trunks.originate.advertise",
        "is not a socket address",
    );
}

#[test]
fn listen_must_be_a_socket_address() {
    for bad in ["localhost:5070", "127.0.0.1", "::1:5070"] {
        let v = set(minimal(), "/trunks/admin/listen", json!(bad));
        assert_rejected_at(&v, "$.trunks.admin.listen", "is not a socket address");
    }
    let v = set(minimal(), "/trunks/admin/listen", json!("[::1]:5071"));
    assert!(parse_value(&v).is_ok());
}

// ---- trunks ---------------------------------------------------------------------------------

#[test]
fn registrar_is_required_when_registering() {
    let mut v = minimal();
    v["trunks"]["user"]
        .as_object_mut()
        .unwrap()
        .remove("registrar");
    assert_rejected_at(
        &v,
        "$.trunks.user.registrar",
        "required when register is true",
    );
    let v = set(v, "/trunks/user/register", json!(false));
    let dp = parse_value(&v).unwrap().dialplan;
    assert_eq!(dp.trunks.user.registrar, None);
}

#[test]
fn expires_below_ten_seconds_is_rejected() {
    let v = set(minimal(), "/trunks/user/expires_s", json!(9));
    assert_rejected_at(&v, "$.trunks.user.expires_s", "below the minimum 10");
    assert!(parse_value(&set(minimal(), "/trunks/user/expires_s", json!(10))).is_ok());
}

#[test]
fn aor_and_proxies_must_be_sip_uris() {
    let v = set(minimal(), "/trunks/user/aor", json!("tel:+81"));
    assert_rejected_at(&v, "$.trunks.user.aor", "must start with sip: or sips:");
    let v = set(
        minimal(),
        "/trunks/admin/outbound_proxy",
        json!("127.0.0.1"),
    );
    assert_rejected_at(&v, "$.trunks.admin.outbound_proxy", "is not a valid URI");
    let v = set(minimal(), "/trunks/originate/proxy", json!("sip:"));
    assert_rejected_at(&v, "$.trunks.originate.proxy", "host part is empty");
}

#[test]
fn transport_must_be_udp_or_tcp() {
    let v = set(minimal(), "/trunks/user/transport", json!("tcp"));
    assert_eq!(
        parse_value(&v).unwrap().dialplan.trunks.user.transport,
        Transport::Tcp
    );
    let v = set(minimal(), "/trunks/user/transport", json!("sctp"));
    let lines = error_lines(parse_value(&v));
    assert!(
        lines[0].contains("at $.trunks.user.transport: unknown variant `sctp`"),
        "{lines:?}"
    );
}

#[test]
fn unset_password_env_is_an_error() {
    let v = set(minimal(), "/trunks/admin/password_env", json!("NOPE_UNSET"));
    let v = set(v, "/trunks/admin/auth_username", json!("gate-admin"));
    assert_rejected_at(
        &v,
        "$.trunks.admin.password_env",
        "environment variable NOPE_UNSET is not set",
    );
}

#[test]
fn password_file_is_read_relative_to_the_dialplan_and_trimmed() {
    let v = set(
        minimal(),
        "/trunks/originate/password_file",
        json!("secrets/out"),
    );
    let v = set(v, "/trunks/originate/auth_username", json!("gate-out"));
    let read = |p: &Path| {
        assert_eq!(p, Path::new("conf/secrets/out"));
        Ok("s3cret\n".to_owned())
    };
    let text = serde_json::to_string(&v).unwrap();
    let dp = parse("conf/dp.json", &text, &demo_env, &read)
        .unwrap()
        .dialplan;
    assert_eq!(
        dp.trunks.originate.password.as_ref().map(Secret::expose),
        Some("s3cret")
    );
    // Unreadable and empty files are errors naming the file.
    assert_rejected_at(&v, "$.trunks.originate.password_file", "conf/secrets/out");
    let empty = |_: &Path| Ok("\n".to_owned());
    let err = parse("conf/dp.json", &text, &demo_env, &empty).unwrap_err();
    assert!(err.to_string().contains("is empty"), "{err}");
}

#[test]
fn auth_username_without_password_source_is_rejected() {
    let v = set(
        minimal(),
        "/trunks/admin/auth_username",
        json!("gate-admin"),
    );
    assert_rejected_at(&v, "$.trunks.admin", "no password");
}

#[test]
fn more_than_one_password_source_is_rejected() {
    let v = set(minimal(), "/trunks/user/password", json!("x"));
    assert_rejected_at(&v, "$.trunks.user", "at most one of password");
}

#[test]
fn inline_password_is_accepted_with_a_warning() {
    let v = set(minimal(), "/trunks/admin/password", json!("plain"));
    let v = set(v, "/trunks/admin/auth_username", json!("gate-admin"));
    let loaded = parse_value(&v).unwrap();
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        vec!["inline password in trunks.admin; prefer password_env or password_file"]
    );
    assert_eq!(
        loaded
            .dialplan
            .trunks
            .admin
            .password
            .as_ref()
            .map(Secret::expose),
        Some("plain")
    );
}

#[test]
fn registrar_without_registration_is_a_warning() {
    let v = set(minimal(), "/trunks/admin/register", json!(false));
    let loaded = parse_value(&v).unwrap();
    assert_eq!(
        loaded.warnings,
        vec![ConfigWarning::UnusedRegistrar {
            path: "trunks.admin.registrar".into()
        }]
    );
}

#[test]
fn digest_realm_other_than_the_challenge_realm_is_a_warning() {
    let v = set(
        with_admins(vec![admin(1, "1001")]),
        "/admins/0/digest/realm",
        json!("other"),
    );
    let warnings: Vec<String> = parse_value(&v)
        .unwrap()
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        warnings,
        vec!["admins[0].digest.realm is \"other\" but the gate challenges with security.realm \"dialback\"; these HA1 values can never verify"]
    );
}

#[test]
fn admin_id_that_cannot_be_dialled_is_a_warning() {
    let loaded = parse_value(&with_admins(vec![admin(1, "alice")])).unwrap();
    assert_eq!(
        loaded.warnings,
        vec![ConfigWarning::IdNotDialable {
            path: "admins[0].id".into()
        }]
    );
}

#[test]
fn duplicate_listen_is_reported_alongside_other_trunk_errors() {
    let v = set(minimal(), "/trunks/admin/listen", json!("127.0.0.1:5070"));
    let v = set(v, "/trunks/admin/aor", json!("nope"));
    let lines = error_lines(parse_value(&v));
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].contains("$.trunks.admin.listen: listen address 127.0.0.1:5070"));
    assert!(lines[1].contains("$.trunks.admin.aor"));
}

#[test]
fn originate_allow_sources_needs_an_ip_proxy_or_an_explicit_list() {
    let v = set(
        minimal(),
        "/trunks/originate/proxy",
        json!("sip:pbx.example.net"),
    );
    assert_rejected_at(
        &v,
        "$.trunks.originate.allow_sources",
        "\"pbx.example.net\"",
    );
    let v = set(
        v,
        "/trunks/originate/allow_sources",
        json!(["192.0.2.1:5060"]),
    );
    let dp = parse_value(&v).unwrap().dialplan;
    assert_eq!(
        dp.trunks.originate.allow_sources,
        vec!["192.0.2.1:5060".parse().unwrap()]
    );
    // Default port of an IPv6 sips: proxy is 5061 (RFC 3263 §4.2).
    let v = set(minimal(), "/trunks/originate/proxy", json!("sips:[::1]"));
    let dp = parse_value(&v).unwrap().dialplan;
    assert_eq!(
        dp.trunks.originate.allow_sources,
        vec!["[::1]:5061".parse().unwrap()]
    );
    let v = set(
        minimal(),
        "/trunks/originate/allow_sources",
        json!(["pbx:5060"]),
    );
    assert_rejected_at(
        &v,
        "$.trunks.originate.allow_sources[0]",
        "not a socket address",
    );
}

// ---- routes, modem, media, limits -----------------------------------------------------------

#[test]
fn otherwise_is_a_4xx_or_6xx_reject_or_a_sip_redirect() {
    for bad in [200, 302, 500, 399, 700] {
        let v = set(
            minimal(),
            "/routes/user/otherwise",
            json!({ "reject": bad }),
        );
        assert_rejected_at(&v, "$.routes.user.otherwise.reject", "not a 4xx or 6xx");
    }
    let v = set(
        minimal(),
        "/routes/user/otherwise",
        json!({ "reject": 603 }),
    );
    assert_eq!(
        parse_value(&v).unwrap().dialplan.routes.user.otherwise,
        Otherwise::Reject(603)
    );
    let v = set(
        minimal(),
        "/routes/admin/otherwise",
        json!({ "redirect": "sip:operator@127.0.0.1" }),
    );
    let routes = parse_value(&v).unwrap().dialplan.routes;
    assert!(
        matches!(routes.admin.otherwise, Otherwise::Redirect(ref u) if u.as_str() == "sip:operator@127.0.0.1")
    );
    let v = set(
        minimal(),
        "/routes/admin/otherwise",
        json!({ "redirect": "operator" }),
    );
    assert_rejected_at(&v, "$.routes.admin.otherwise.redirect", "not a valid URI");
    let v = set(
        minimal(),
        "/routes/admin/otherwise",
        json!({ "reject": 403, "redirect": "sip:a@b" }),
    );
    assert!(parse_value(&v).is_err());
}

#[test]
fn modem_target_is_console_or_tcp_host_port() {
    for (target, expected) in [
        ("console", ModemTarget::Console),
        (
            "tcp:127.0.0.1:2323",
            ModemTarget::Tcp {
                host: "127.0.0.1".into(),
                port: 2323,
            },
        ),
        (
            "tcp:[::1]:23",
            ModemTarget::Tcp {
                host: "::1".into(),
                port: 23,
            },
        ),
    ] {
        let v = set(minimal(), "/modem/target", json!(target));
        assert_eq!(parse_value(&v).unwrap().dialplan.modem.target, expected);
    }
    for bad in [
        "shell",
        "tcp:host",
        "tcp::23",
        "tcp:host:0",
        "tcp:host:70000",
        "udp:h:1",
    ] {
        let v = set(minimal(), "/modem/target", json!(bad));
        assert_rejected_at(&v, "$.modem.target", "neither");
    }
}

#[test]
fn modulations_must_be_non_empty_and_unique() {
    let v = set(minimal(), "/modem/modulations", json!([]));
    assert_rejected_at(&v, "$.modem.modulations", "must not be empty");
    let v = set(
        minimal(),
        "/modem/modulations",
        json!(["v21", "bell103", "v21"]),
    );
    assert_rejected_at(&v, "$.modem.modulations[2]", "v21 is listed twice");
}

#[test]
fn tx_level_must_be_within_minus_43_and_minus_6_dbm0() {
    for bad in [-44, -5, 0, 200] {
        let v = set(minimal(), "/modem/tx_level_dbm0", json!(bad));
        assert_rejected_at(&v, "$.modem.tx_level_dbm0", "outside -43..=-6");
    }
    for ok in [-43, -6] {
        let v = set(minimal(), "/modem/tx_level_dbm0", json!(ok));
        assert_eq!(
            parse_value(&v).unwrap().dialplan.modem.tx_level_dbm0,
            ok as i8
        );
    }
}

#[test]
fn numeric_limits_are_range_checked() {
    for (pointer, value, path, needle) in [
        (
            "/limits/max_message_bytes",
            100,
            "$.limits.max_message_bytes",
            "below the minimum 1024",
        ),
        (
            "/limits/max_dialogs",
            0,
            "$.limits.max_dialogs",
            "below the minimum 1",
        ),
        (
            "/limits/per_source_burst",
            10,
            "$.limits.per_source_burst",
            "per_source_rate",
        ),
        (
            "/callback/ring_timeout_s",
            0,
            "$.callback.ring_timeout_s",
            "outside 1..=300",
        ),
        (
            "/security/lock_s",
            0,
            "$.security.lock_s",
            "below the minimum 1",
        ),
        (
            "/media/max_digits",
            0,
            "$.media.max_digits",
            "outside 1..=256",
        ),
        (
            "/media/dtmf_min_tone_ms",
            5,
            "$.media.dtmf_min_tone_ms",
            "outside 20..=200",
        ),
        ("/modem/max_s", 10, "$.modem.max_s", "idle_s"),
    ] {
        assert_rejected_at(&set(minimal(), pointer, json!(value)), path, needle);
    }
    let v = set(minimal(), "/media/rtp_ports", json!([20001, 20999]));
    assert_rejected_at(&v, "$.media.rtp_ports", "must be even");
    let v = set(minimal(), "/media/rtp_ports", json!([20000, 20000]));
    assert_rejected_at(&v, "$.media.rtp_ports", "below high port");
    let v = set(minimal(), "/security/realm", json!(""));
    assert_rejected_at(&v, "$.security.realm", "must not be empty");
    // The default DTMF signal `*62468246*{digit}#` is 12 keys: max_digits must admit it.
    let v = set(minimal(), "/media/max_digits", json!(11));
    assert_rejected_at(
        &v,
        "$.media.max_digits",
        "11 must not be below the keys of signal.dtmf (12)",
    );
    assert!(parse_value(&set(minimal(), "/media/max_digits", json!(12))).is_ok());
}

#[test]
fn prompts_must_exist_and_be_8khz_mono_pcm_or_g711() {
    let v = set(
        minimal(),
        "/media/prompts",
        json!({ "welcome": "p/welcome.wav", "goodbye": "p/bye.wav", "error": "p/gone.wav", "hello": "p/welcome.wav" }),
    );
    let text = serde_json::to_string(&v).unwrap();
    let read_bytes = |p: &Path| match p.to_str() {
        Some("conf/p/welcome.wav") => Ok(wav::test_wav(7, 1, 8000, 8, &[0xff; 8])),
        Some("conf/p/bye.wav") => Ok(wav::test_wav(1, 2, 44100, 16, &[0; 8])),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "No such file",
        )),
    };
    let lines = error_lines(parse_with_prompts(
        "conf/dp.json",
        &text,
        &demo_env,
        &no_files,
        &read_bytes,
    ));
    assert_eq!(
        lines,
        vec![
            "conf/dp.json: at $.media.prompts.error: prompt conf/p/gone.wav cannot be read: No such file",
            "conf/dp.json: at $.media.prompts.goodbye: prompt conf/p/bye.wav is not usable: 2 channels; need mono",
            "conf/dp.json: at $.media.prompts.hello: prompt name \"hello\" is not one of welcome, enter_id, enter_pin, enter_signal, enter_digit, ok, error, goodbye",
        ]
    );
    // `parse` resolves prompt paths without opening them.
    let v = set(
        minimal(),
        "/media/prompts",
        json!({ "welcome": "p/welcome.wav", "goodbye": "p/bye.wav" }),
    );
    let text = serde_json::to_string(&v).unwrap();
    let dp = parse_str(&text).unwrap().dialplan;
    assert_eq!(dp.media.prompts["welcome"], Path::new("conf/p/welcome.wav"));
}

// ---- secrets --------------------------------------------------------------------------------

#[test]
fn secrets_print_redacted_in_debug_and_display() {
    let s = Secret::new("hunter2");
    assert_eq!(format!("{s:?}"), "REDACTED");
    assert_eq!(format!("{s}"), "REDACTED");
    assert_eq!(s.expose(), "hunter2");

    let v = set(minimal(), "/trunks/admin/password", json!("inline-pw-123"));
    let v = set(v, "/trunks/admin/auth_username", json!("gate-admin"));
    let mut v = set(v, "/admins", json!([admin(1, "1001")]));
    v["admins"][0]["digest"]["ha1_sha256"] =
        json!("3b2cc8e847a68e971ee094cea9690f543676f0bd2c9ae962ad1513cb34a83454");
    let loaded = parse_value(&v).unwrap();
    let debug = format!("{loaded:?}");
    for secret in [
        "inline-pw-123",
        "user-pw",
        "$argon2id$",
        "6fc1deb8adfee3f85e78653dfeec5abb",
        "3b2cc8e847a68e971ee094cea9690f54",
    ] {
        assert!(!debug.contains(secret), "{secret} leaked in Debug output");
    }
    assert!(debug.contains("REDACTED"));
}

#[test]
fn errors_never_echo_secret_values() {
    // A misplaced secret in a wrongly typed field must not be echoed by our own messages.
    let v = set(minimal(), "/trunks/user/password_env", json!("MISSING_VAR"));
    let err = parse_value(&v).unwrap_err().to_string();
    assert!(err.contains("MISSING_VAR"));
    let v = set(
        with_admins(vec![admin(1, "1001")]),
        "/admins/0/digest/ha1_md5",
        json!("my-plain-password"),
    );
    let err = parse_value(&v).unwrap_err().to_string();
    assert!(!err.contains("my-plain-password"), "{err}");
    let v = set(
        with_admins(vec![admin(1, "1001")]),
        "/admins/0/pin",
        json!("2468"),
    );
    let err = parse_value(&v).unwrap_err().to_string();
    assert!(!err.contains("2468"), "{err}");
    // serde's type errors quote the value; for secret fields the message is withheld.
    let v = set(minimal(), "/trunks/user/password", json!(918273));
    let err = parse_value(&v).unwrap_err().to_string();
    assert!(!err.contains("918273"), "{err}");
    assert!(err.contains("at $.trunks.user.password: "), "{err}");
}

#[test]
#[ignore = "prints the demo hashes used in dialplans/example.json"]
fn print_demo_hashes() {
    use argon2::password_hash::{PasswordHasher, SaltString};
    for (pin, salt) in [
        ("2468", "ZGlhbGJhY2stZGVtby0x"),
        ("1357", "ZGlhbGJhY2stZGVtby0y"),
    ] {
        let salt = SaltString::from_b64(salt).unwrap();
        let hash = argon2::Argon2::default()
            .hash_password(pin.as_bytes(), &salt)
            .unwrap();
        println!("{pin} {hash}");
    }
}

#[test]
fn load_reads_password_files_and_prompts_relative_to_the_dialplan() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("prompts")).unwrap();
    std::fs::write(
        dir.path().join("prompts/hello.wav"),
        wav::test_wav(1, 1, 8000, 16, &[0; 16]),
    )
    .unwrap();
    std::fs::write(dir.path().join("out.secret"), "from-file\n").unwrap();
    let v = set(
        minimal(),
        "/media/prompts",
        json!({ "welcome": "prompts/hello.wav" }),
    );
    let mut v = set(v, "/trunks/originate/password_file", json!("out.secret"));
    // `load` sees the real environment, so use no password_env here.
    v["trunks"]["user"]
        .as_object_mut()
        .unwrap()
        .remove("password_env");
    v["trunks"]["user"]["password_file"] = json!("out.secret");
    let path = dir.path().join("dp.json");
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let dp = load(&path).unwrap().dialplan;
    assert_eq!(
        dp.trunks.originate.password.as_ref().map(Secret::expose),
        Some("from-file")
    );
    assert_eq!(
        dp.media.prompts["welcome"],
        dir.path().join("prompts/hello.wav")
    );

    // A prompt that is not 8 kHz mono fails `load` with the file named.
    std::fs::write(
        dir.path().join("prompts/hello.wav"),
        wav::test_wav(1, 1, 16000, 16, &[0; 16]),
    )
    .unwrap();
    let err = load(&path).unwrap_err().to_string();
    assert!(
        err.contains("prompts/hello.wav is not usable: 16000 Hz; need 8000 Hz"),
        "{err}"
    );
}

proptest::proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = parse_str(&text);
    }

    #[test]
    fn corrupted_example_never_panics_and_errors_name_the_file(
        at in 0usize..EXAMPLE.len(),
        len in 0usize..8,
        with in "[\\[\\]{}:,\"0-9a-z$ -]{0,4}",
    ) {
        let mut text = EXAMPLE.to_owned();
        if text.is_char_boundary(at) && text.is_char_boundary((at + len).min(text.len())) {
            text.replace_range(at..(at + len).min(text.len()), &with);
        }
        if let Err(e) = parse("dp.json", &text, &demo_env, &no_files) {
            for line in e.to_string().lines() {
                proptest::prop_assert!(line.starts_with("dp.json:"), "{}", line);
            }
        }
    }
}
