//! Packaging: the container image, the compose stack and the systemd unit stay consistent with
//! the code and with each other (issue 6 items 3–5; DESIGN.md "Architecture", `docker/`).
//!
//! - `docker/dialplan.compose.json` passes `dialback check` with the trunk password variables
//!   set, and is refused without them.
//! - `docker/compose.yaml` validates: with `docker compose config` when the compose plugin is
//!   installed, otherwise it is parsed with PyYAML (`python3-yaml`) and its shape checked here
//!   (three services on one private network with fixed addresses, no host networking, every
//!   bind source and build file present, the dialplan mounted read-only where the image reads
//!   it). Without either tool the structural checks are skipped and the test says so.
//! - `dist/dialback.service` carries the hardening keys; `systemd-analyze verify` accepts it
//!   and `systemd-analyze security --offline=true` rates it at most 2.0 when systemd is
//!   installed.
//! - `docker/Dockerfile` copies only paths that exist and exposes the dialplan's ports.
//! - The compose stack without Docker: the `pbx` command line of `compose.yaml`, the compose
//!   dialplan and the admin phone's baresip config, with only the container addresses moved
//!   to loopback ports, register the gate's two trunks and phone 1001 at Kamailio, and the
//!   phone answers a call by itself.
//! - The Kamailio snippets of `docs/integration.md` pass `kamailio -c` on top of our PBX
//!   config, and its FreeSWITCH snippets are well-formed XML.

mod support;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::kamailio::parse_bindings;
use support::ports::{free_udp_port, free_udp_tcp_port};
use support::process::{peer_command, PeerProcess};

const PASSWORD_VARS: [&str; 3] = [
    "DIALBACK_USER_PASSWORD",
    "DIALBACK_ADMIN_PASSWORD",
    "DIALBACK_ORIGINATE_PASSWORD",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn compose_dialplan() -> Value {
    serde_json::from_str(&read("docker/dialplan.compose.json")).expect("dialplan is JSON")
}

fn dialback_check(file: &str, with_passwords: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dialback"));
    cmd.arg("check").arg(root().join(file));
    for var in PASSWORD_VARS {
        if with_passwords {
            cmd.env(var, "packaging-test-secret");
        } else {
            cmd.env_remove(var);
        }
    }
    cmd.output().expect("run dialback check")
}

/// `None` when the program is not installed (or cannot start).
fn try_run(program: &str, args: &[&str], dir: &Path) -> Option<Output> {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Host-side listen ports of the three trunks of the compose dialplan.
fn trunk_listen(plan: &Value) -> Vec<(String, u16)> {
    ["user", "admin", "originate"]
        .iter()
        .map(|t| {
            let listen = plan["trunks"][t]["listen"].as_str().expect("listen");
            let (ip, port) = listen.rsplit_once(':').expect("ip:port");
            (ip.to_owned(), port.parse().expect("port"))
        })
        .collect()
}

#[test]
fn compose_dialplan_passes_dialback_check_with_the_trunk_passwords_set() {
    let out = dialback_check("docker/dialplan.compose.json", true);
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // No warnings either: the shipped dialplan keeps secrets out of the file.
    assert_eq!(text(&out.stdout).trim(), "ok");
}

#[test]
fn compose_dialplan_is_refused_when_a_trunk_password_variable_is_missing() {
    let out = dialback_check("docker/dialplan.compose.json", false);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    for var in PASSWORD_VARS {
        assert!(err.contains(var), "{var} not named in: {err}");
    }
}

#[test]
fn compose_dialplan_keeps_state_and_audit_in_the_volume_and_trusts_only_the_pbx() {
    let plan = compose_dialplan();
    assert_eq!(
        plan["security"]["state_path"],
        "/var/lib/dialback/state.json"
    );
    assert_eq!(plan["audit"]["path"], "/var/lib/dialback/audit.jsonl");
    for (ip, _) in trunk_listen(&plan) {
        assert_eq!(ip, "172.30.89.20", "dialback's compose address");
    }
    assert_eq!(
        plan["trunks"]["originate"]["allow_sources"],
        serde_json::json!(["172.30.89.10:5060"]),
        "the originate trunk accepts packets from the PBX container only"
    );
}

// ---- compose -------------------------------------------------------------------------------

/// The compose file as JSON, through PyYAML; `None` when python3 or PyYAML is missing.
fn compose_as_json() -> Option<Value> {
    let script = "import json,sys,yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)";
    let out = try_run("python3", &["-c", script, "docker/compose.yaml"], &root())?;
    if !out.status.success() {
        let err = text(&out.stderr);
        if err.contains("No module named 'yaml'") {
            return None;
        }
        panic!("docker/compose.yaml is not valid YAML: {err}");
    }
    Some(serde_json::from_slice(&out.stdout).expect("PyYAML output is JSON"))
}

fn bind_mounts(service: &Value) -> BTreeMap<String, (String, bool)> {
    service["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "bind")
        .map(|v| {
            (
                v["target"].as_str().expect("target").to_owned(),
                (
                    v["source"].as_str().expect("source").to_owned(),
                    v["read_only"] == true,
                ),
            )
        })
        .collect()
}

fn check_compose_shape(compose: &Value) {
    let docker = root().join("docker");
    let services = compose["services"].as_object().expect("services");
    let names: Vec<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for name in ["pbx", "dialback", "admin-phone"] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    let subnet = compose["networks"]["voip"]["ipam"]["config"][0]["subnet"]
        .as_str()
        .expect("voip subnet");
    assert_eq!(subnet, "172.30.89.0/24");
    for (name, svc) in services {
        assert!(
            svc.get("network_mode").is_none(),
            "{name}: no host networking"
        );
        assert!(svc.get("ports").is_none(), "{name}: nothing published");
        let ip = svc["networks"]["voip"]["ipv4_address"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: fixed address on voip"));
        assert!(ip.starts_with("172.30.89."), "{name}: {ip}");
        // Every build file and bind source exists (paths are relative to docker/).
        let context = docker.join(svc["build"]["context"].as_str().expect("context"));
        let dockerfile = svc["build"]["dockerfile"].as_str().unwrap_or("Dockerfile");
        assert!(
            context.join(dockerfile).is_file(),
            "{name}: {}",
            context.join(dockerfile).display()
        );
        for (target, (source, read_only)) in bind_mounts(svc) {
            assert!(docker.join(&source).exists(), "{name}: {source} missing");
            assert!(read_only, "{name}: {target} must be read-only");
        }
    }

    let pbx = &services["pbx"];
    let mounts = bind_mounts(pbx);
    assert_eq!(
        mounts["/etc/kamailio/kamailio.cfg"].0,
        "./kamailio/kamailio.cfg"
    );
    let command: Vec<&str> = pbx["command"]
        .as_array()
        .expect("pbx command list")
        .iter()
        .map(|a| a.as_str().expect("string arg"))
        .collect();
    assert!(command.contains(&"/etc/kamailio/kamailio.cfg"));
    let pbx_ip = pbx["networks"]["voip"]["ipv4_address"]
        .as_str()
        .expect("ip");
    assert!(command.contains(&format!("LISTEN=udp:{pbx_ip}:5060").as_str()));
    assert!(
        command.contains(&"ALIAS=pbx"),
        "the dialplan names the PBX `pbx`"
    );

    let gate = &services["dialback"];
    assert_eq!(gate["build"]["dockerfile"], "docker/Dockerfile");
    assert_eq!(
        bind_mounts(gate)["/etc/dialback/dialplan.json"],
        ("./dialplan.compose.json".to_owned(), true)
    );
    let gate_ip = gate["networks"]["voip"]["ipv4_address"]
        .as_str()
        .expect("ip");
    for (ip, _) in trunk_listen(&compose_dialplan()) {
        assert_eq!(ip, gate_ip, "dialplan listen address = container address");
    }
    for var in PASSWORD_VARS {
        assert!(gate["environment"][var].is_string(), "{var} not passed");
    }
    assert_eq!(gate["read_only"], true);
    assert_eq!(gate["cap_drop"], serde_json::json!(["ALL"]));
}

#[test]
fn compose_file_validates() {
    let docker = root().join("docker");
    if let Some(v) = try_run("docker", &["compose", "version"], &docker) {
        if v.status.success() {
            let out = Command::new("docker")
                .args(["compose", "-f", "compose.yaml", "config", "--quiet"])
                .current_dir(&docker)
                .output()
                .expect("docker compose config");
            assert!(out.status.success(), "{}", text(&out.stderr));
        } else {
            eprintln!("docker compose plugin not installed: `docker compose config` skipped");
        }
    }
    match compose_as_json() {
        Some(compose) => check_compose_shape(&compose),
        None => eprintln!(
            "python3 with PyYAML (Debian package python3-yaml) not installed: \
             compose shape checks skipped"
        ),
    }
}

#[test]
fn compose_demo_passwords_match_the_pbx_subscriber_table() {
    // docker/kamailio/db/subscribers rows: user:0:0:password:0
    let table = read("docker/kamailio/db/subscribers");
    let subscribers: BTreeMap<&str, &str> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 5).then(|| (f[0], f[3]))
        })
        .collect();
    let compose = read("docker/compose.yaml");
    for (var, user) in PASSWORD_VARS
        .iter()
        .zip(["gate-user", "gate-admin", "gate-out"])
    {
        let default = format!("${{{var}:-{}}}", subscribers[user]);
        assert!(compose.contains(&default), "{default} not in compose.yaml");
    }
    let plan = compose_dialplan();
    for (trunk, user) in [
        ("user", "gate-user"),
        ("admin", "gate-admin"),
        ("originate", "gate-out"),
    ] {
        assert_eq!(plan["trunks"][trunk]["auth_username"], user);
    }
    // The admin phone registers as the first number of administrator 1 and uses the
    // subscriber's password.
    let accounts = read("docker/baresip/accounts");
    let account = accounts
        .lines()
        .find(|l| l.starts_with('<'))
        .expect("one account line");
    assert!(account.starts_with("<sip:1001@pbx;"));
    assert_eq!(plan["admins"][0]["numbers"][0], "sip:1001@pbx");
    assert!(account.contains(&format!("auth_pass={};", subscribers["1001"])));
    assert!(account.contains("answermode=auto"));
}

// ---- Dockerfile ----------------------------------------------------------------------------

/// Instruction lines with continuations joined.
fn dockerfile_instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && cur.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head);
                cur.push(' ');
            }
            None => {
                cur.push_str(line);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    out
}

#[test]
fn dockerfile_copies_existing_paths_and_runs_the_mounted_dialplan_as_non_root() {
    let instructions = dockerfile_instructions(&read("docker/Dockerfile"));
    let mut copies = 0;
    for ins in &instructions {
        let Some(args) = ins.strip_prefix("COPY ") else {
            continue;
        };
        if args.starts_with("--from=") {
            continue;
        }
        let words: Vec<&str> = args.split_whitespace().collect();
        // COPY src... dest: every source is relative to the build context (repo root).
        for src in &words[..words.len() - 1] {
            assert!(root().join(src).exists(), "COPY source {src} missing");
            copies += 1;
        }
    }
    assert!(copies >= 4, "Cargo.toml, Cargo.lock, src, benches at least");
    let has = |s: &str| instructions.iter().any(|i| i == s);
    assert!(has(r#"ENTRYPOINT ["dialback"]"#));
    assert!(has(
        r#"CMD ["run", "--config", "/etc/dialback/dialplan.json"]"#
    ));
    assert!(has("USER dialback:dialback"));
    assert!(has(r#"VOLUME ["/var/lib/dialback"]"#));
    assert!(instructions.iter().any(|i| i.starts_with("HEALTHCHECK ")
        && i.ends_with(r#"CMD ["dialback", "check", "/etc/dialback/dialplan.json"]"#)));
    assert!(instructions
        .iter()
        .any(|i| i.contains("cargo build --release --locked")));

    // EXPOSE lists exactly the compose dialplan's trunk ports and its RTP range.
    let plan = compose_dialplan();
    // Every trunk binds its port on UDP and TCP (README, "Running against a PBX").
    let mut expected: Vec<String> = trunk_listen(&plan)
        .into_iter()
        .flat_map(|(_, port)| [format!("{port}/udp"), format!("{port}/tcp")])
        .collect();
    let rtp = &plan["media"]["rtp_ports"];
    expected.push(format!("{}-{}/udp", rtp[0], rtp[1]));
    let exposed: Vec<String> = instructions
        .iter()
        .filter_map(|i| i.strip_prefix("EXPOSE "))
        .flat_map(|a| a.split_whitespace().map(str::to_owned))
        .collect();
    assert_eq!(exposed, expected);
}

#[test]
fn dockerignore_keeps_build_output_out_of_the_context() {
    let ignore = read(".dockerignore");
    for entry in ["target", ".git"] {
        assert!(
            ignore.lines().any(|l| l.trim_start_matches('/') == entry),
            "{entry} not ignored"
        );
    }
}

// ---- systemd -------------------------------------------------------------------------------

fn unit_keys(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn systemd_unit_has_the_hardening_keys() {
    let keys = unit_keys(&read("dist/dialback.service"));
    let value = |k: &str| -> Vec<&str> {
        keys.iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    for (key, want) in [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("StateDirectory", "dialback"),
        ("ConfigurationDirectory", "dialback"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("MemoryDenyWriteExecute", "yes"),
        ("LockPersonality", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictNamespaces", "yes"),
        ("Restart", "on-failure"),
        (
            "ExecStartPre",
            "/usr/bin/dialback check /etc/dialback/dialplan.json",
        ),
        (
            "ExecStart",
            "/usr/bin/dialback run --config /etc/dialback/dialplan.json",
        ),
    ] {
        assert_eq!(value(key), vec![want], "{key}");
    }
    assert_eq!(value("SystemCallFilter")[0], "@system-service");
    let creds = value("LoadCredential");
    for name in ["user-password", "admin-password", "originate-password"] {
        assert!(
            creds.iter().any(|c| c.starts_with(&format!("{name}:/"))),
            "LoadCredential {name}"
        );
    }
}

/// The unit with its ExecStart/ExecStartPre pointing at the binary under test, written to a
/// temp dir as `dialback.service` (verify checks that the commands are executable).
fn unit_for_verify(dir: &Path) -> PathBuf {
    let unit =
        read("dist/dialback.service").replace("/usr/bin/dialback", env!("CARGO_BIN_EXE_dialback"));
    let path = dir.join("dialback.service");
    std::fs::write(&path, unit).expect("write unit");
    path
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify_and_scores_at_most_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = unit_for_verify(dir.path());
    let unit_arg = unit.to_str().expect("utf-8 path");
    let Some(out) = try_run("systemd-analyze", &["verify", unit_arg], dir.path()) else {
        eprintln!("systemd-analyze not installed (Debian package systemd): verify skipped");
        return;
    };
    // verify returns 0 even for unknown keys; those show up on stderr.
    assert!(
        out.status.success() && text(&out.stderr).trim().is_empty(),
        "systemd-analyze verify: {}",
        text(&out.stderr)
    );
    let Some(out) = try_run(
        "systemd-analyze",
        &["security", "--offline=true", "--no-pager", unit_arg],
        dir.path(),
    ) else {
        return;
    };
    if !out.status.success() {
        eprintln!(
            "systemd-analyze security --offline unsupported here: {}",
            text(&out.stderr)
        );
        return;
    }
    let report = text(&out.stdout);
    let score: f64 = report
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for dialback.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {report}"));
    eprintln!("systemd-analyze security exposure: {score}");
    assert!(score <= 2.0, "exposure {score}:\n{report}");
}

#[test]
fn dialplan_with_systemd_credential_files_passes_check() {
    // dist/README.md: passwords come from $CREDENTIALS_DIRECTORY files named in
    // password_file with absolute paths. Same shape, with a temp dir standing in.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut plan = compose_dialplan();
    for trunk in ["user", "admin", "originate"] {
        let secret = dir.path().join(format!("{trunk}-password"));
        std::fs::write(&secret, format!("secret-{trunk}\n")).expect("write secret");
        let t = plan["trunks"][trunk].as_object_mut().expect("trunk object");
        t.remove("password_env");
        t.insert(
            "password_file".into(),
            Value::String(secret.to_str().expect("utf-8").to_owned()),
        );
    }
    let file = dir.path().join("dialplan.json");
    std::fs::write(&file, plan.to_string()).expect("write dialplan");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dialback"));
    cmd.arg("check").arg(&file);
    for var in PASSWORD_VARS {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("run dialback check");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "ok");
}

// ---- docs/integration.md -------------------------------------------------------------------

/// Fenced code blocks of a Markdown text with the given info string.
fn fenced(doc: &str, lang: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(info)) => {
                // A block in another language (or none) is consumed up to its closing
                // fence and dropped.
                current = Some(if info.trim() == lang {
                    String::new()
                } else {
                    "\u{0}skip".into()
                });
            }
            (Some(block), Some("")) => {
                if !block.starts_with('\u{0}') {
                    blocks.push(std::mem::take(block));
                }
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

#[test]
fn integration_doc_kamailio_snippets_pass_kamailio_config_check() {
    let doc = read("docs/integration.md");
    let blocks = fenced(&doc, "kamailio");
    assert_eq!(
        blocks.len(),
        3,
        "route, dispatcher modparams, dispatcher route"
    );
    let list = fenced(&doc, "text")
        .into_iter()
        .find(|b| b.starts_with("# setid destination"))
        .expect("dispatcher.list block");
    let dir = tempfile::tempdir().expect("temp dir");
    let list_path = dir.path().join("dispatcher.list");
    std::fs::write(&list_path, list).expect("write list");

    // Our test PBX configuration plus the documented pieces: the dispatcher module, the
    // DIALBACK route (with the dispatcher branch inside it) called before the location
    // lookup, and the failover route.
    let route = blocks[0].trim_end().strip_suffix('}').expect("route block");
    let (ds_branch, ds_failure) = blocks[2]
        .split_once("failure_route[DS_NEXT]")
        .expect("failure route");
    let ds_branch = ds_branch.split_once('\n').expect("comment line").1;
    let modules = blocks[1].replace(
        "/etc/kamailio/dispatcher.list",
        list_path.to_str().expect("utf-8"),
    );
    let base = read("docker/kamailio/kamailio.cfg");
    let cfg = base
        .replace(
            "####### Routing Logic ########",
            &format!("{modules}\n####### Routing Logic ########"),
        )
        .replace(
            "\troute(LOCATION);\n}",
            "\troute(DIALBACK);\n\troute(LOCATION);\n}",
        );
    assert_ne!(cfg, base);
    let cfg = format!("{cfg}\n{route}{ds_branch}}}\nfailure_route[DS_NEXT]{ds_failure}");
    let cfg_path = dir.path().join("kamailio.cfg");
    std::fs::write(&cfg_path, cfg).expect("write cfg");

    if !support::have_program("kamailio") {
        eprintln!("kamailio not installed (Debian package kamailio): config check skipped");
        return;
    }
    let subs = root().join("docker/kamailio/db");
    let Some(out) = try_run(
        "kamailio",
        &[
            "-c",
            "-f",
            cfg_path.to_str().expect("utf-8"),
            "-A",
            &format!("SUBS_DB=\"text://{}\"", subs.display()),
        ],
        dir.path(),
    ) else {
        eprintln!("kamailio not installed (Debian package kamailio): config check skipped");
        return;
    };
    assert!(
        out.status.success(),
        "kamailio -c: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn integration_doc_freeswitch_snippets_are_well_formed_xml() {
    let blocks = fenced(&read("docs/integration.md"), "xml");
    assert_eq!(
        blocks.len(),
        5,
        "2 directory users, gateway, public and callback dialplans"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let mut paths = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let path = dir.path().join(format!("{i}.xml"));
        std::fs::write(&path, block).expect("write xml");
        paths.push(path.to_str().expect("utf-8").to_owned());
    }
    let script = "import sys, xml.etree.ElementTree as ET\nfor p in sys.argv[1:]: ET.parse(p)";
    let mut args = vec!["-c", script];
    args.extend(paths.iter().map(String::as_str));
    let Some(out) = try_run("python3", &args, dir.path()) else {
        eprintln!("python3 not installed: XML well-formedness check skipped");
        return;
    };
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn integration_doc_allows_the_originate_account_only_the_admin_numbers() {
    // The numbers the callback rules allow are exactly those of administrator 1 in the doc's
    // example, in every PBX section: the security rule 1 example must not drift.
    let doc = read("docs/integration.md");
    let asterisk = fenced(&doc, "ini").join("");
    let callback_context = asterisk
        .split_once("[dialback-callback]")
        .expect("callback context")
        .1;
    let extens: Vec<&str> = callback_context
        .lines()
        .filter_map(|l| l.strip_prefix("exten => "))
        .map(|l| l.split(',').next().unwrap_or(""))
        .collect();
    assert_eq!(extens, ["1001", "+819012345678"]);
    assert!(callback_context
        .lines()
        .filter(|l| l.starts_with("exten => "))
        .all(|l| l.ends_with(",30,i)")));
    let kamailio = fenced(&doc, "kamailio").join("");
    assert!(kamailio.contains(r#"if ($rU != "1001" && $rU != "+819012345678")"#));
}

// ---- the compose stack, without Docker -----------------------------------------------------

/// The `pbx` service's `command:` list from compose.yaml, read as text (one `- "..."` per
/// line; YAML double-quoted strings with only `\"` escapes, which JSON reads the same way).
fn pbx_command_from_compose() -> Vec<String> {
    let compose = read("docker/compose.yaml");
    let mut args = Vec::new();
    let mut inside = false;
    for line in compose.lines() {
        if line == "    command:" {
            inside = true;
            continue;
        }
        if inside {
            match line.trim_start().strip_prefix("- ") {
                Some(item) if line.starts_with("      - ") => {
                    args.push(serde_json::from_str::<String>(item).expect("quoted argument"));
                }
                _ => break,
            }
        }
    }
    assert!(!args.is_empty(), "pbx command list not found");
    args
}

fn kamcmd_bindings(ctl: &Path, user: &str) -> usize {
    let out = Command::new("kamcmd")
        .arg("-s")
        .arg(format!("unix:{}", ctl.display()))
        .args(["ul.lookup", "location", &format!("s:{user}")])
        .output();
    match out {
        Ok(o) if o.status.success() => parse_bindings(&text(&o.stdout)).len(),
        _ => 0,
    }
}

fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

/// Sends an INVITE for `sip:1001@pbx` through the PBX and returns the final status code.
fn call_admin_phone(pbx_port: u16) -> Option<u16> {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind caller");
    let port = sock.local_addr().expect("addr").port();
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        port + 2
    );
    let invite = format!(
        "INVITE sip:1001@pbx SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};rport;branch=z9hG4bKpkg1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:tester@127.0.0.1:{port}>;tag=pkg\r\n\
         To: <sip:1001@pbx>\r\n\
         Call-ID: packaging-smoke-1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:tester@127.0.0.1:{port}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    sock.send_to(invite.as_bytes(), ("127.0.0.1", pbx_port))
        .expect("send INVITE");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let msg = String::from_utf8_lossy(&buf[..n]);
        let code: u16 = msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
        if code >= 200 {
            return Some(code);
        }
    }
    None
}

#[test]
fn compose_stack_without_docker_registers_the_gate_and_the_admin_phone_which_auto_answers() {
    if !support::have_program("kamailio") || !support::have_program("baresip") {
        eprintln!("kamailio or baresip not installed: compose smoke test skipped");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let tmp = dir.path();
    let pbx_port = free_udp_port().expect("pbx port");
    let pbx = format!("127.0.0.1:{pbx_port}");

    // pbx: the compose command line, container paths and address moved into the temp dir.
    let db = tmp.join("db");
    std::fs::create_dir(&db).expect("db dir");
    std::fs::copy(
        root().join("docker/kamailio/db/subscribers"),
        db.join("subscribers"),
    )
    .expect("copy subscribers");
    let ctl = tmp.join("kamailio_ctl");
    let mut k = peer_command("kamailio");
    for arg in pbx_command_from_compose() {
        k.arg(match arg.as_str() {
            "/etc/kamailio/kamailio.cfg" => root()
                .join("docker/kamailio/kamailio.cfg")
                .display()
                .to_string(),
            "LISTEN=udp:172.30.89.10:5060" => format!("LISTEN=udp:{pbx}"),
            "SUBS_DB=\"text:///etc/kamailio/db\"" => format!("SUBS_DB=\"text://{}\"", db.display()),
            "CTL_SOCK=\"unix:/run/kamailio/kamailio_ctl\"" => {
                format!("CTL_SOCK=\"unix:{}\"", ctl.display())
            }
            other => other.to_owned(),
        });
    }
    // The container's /run/kamailio tmpfs: the runtime and working directory.
    k.arg("-Y").arg(tmp).arg("-w").arg(tmp);
    let _kamailio = PeerProcess::spawn("kamailio", k, &tmp.join("kamailio.log")).expect("pbx");
    assert!(
        wait_for(Duration::from_secs(10), || ctl.exists()),
        "pbx did not start: {}",
        support::process::log_tail(&tmp.join("kamailio.log"), 30)
    );

    // dialback: the compose dialplan with its listen addresses and the PBX on loopback.
    let mut plan = compose_dialplan();
    for trunk in ["user", "admin", "originate"] {
        let port = free_udp_tcp_port().expect("trunk port");
        let t = &mut plan["trunks"][trunk];
        t["listen"] = Value::String(format!("127.0.0.1:{port}"));
        for key in ["registrar", "outbound_proxy", "proxy"] {
            if let Some(uri) = t[key].as_str() {
                t[key] = Value::String(uri.replace("pbx:5060", &pbx));
            }
        }
    }
    plan["trunks"]["originate"]["allow_sources"] = serde_json::json!([pbx]);
    plan["security"]["state_path"] = Value::String(tmp.join("state.json").display().to_string());
    plan["audit"]["path"] = Value::String(tmp.join("audit.jsonl").display().to_string());
    let plan_path = tmp.join("dialplan.json");
    std::fs::write(&plan_path, plan.to_string()).expect("write dialplan");
    let mut gate = peer_command(env!("CARGO_BIN_EXE_dialback"));
    gate.arg("run").arg("--config").arg(&plan_path);
    // The compose file's default passwords (checked against the subscriber table above).
    for (var, value) in
        PASSWORD_VARS
            .iter()
            .zip(["change-me-user", "change-me-admin", "change-me-out"])
    {
        gate.env(var, value);
    }
    let _gate = PeerProcess::spawn("dialback", gate, &tmp.join("dialback.log")).expect("gate");

    // admin-phone: docker/baresip with the proxy and the listen address moved.
    let phone_dir = tmp.join("baresip");
    std::fs::create_dir(&phone_dir).expect("baresip dir");
    let phone_port = free_udp_port().expect("phone port");
    for name in ["config", "accounts", "contacts"] {
        let text = read(&format!("docker/baresip/{name}"))
            .replace("0.0.0.0:5060", &format!("127.0.0.1:{phone_port}"))
            .replace("sip:pbx:5060", &format!("sip:{pbx}"));
        std::fs::write(phone_dir.join(name), text).expect("write baresip file");
    }
    let mut phone = peer_command("baresip");
    phone.arg("-f").arg(&phone_dir).env("HOME", tmp);
    let _phone = PeerProcess::spawn("baresip", phone, &tmp.join("baresip.log")).expect("phone");

    let registered =
        |user: &str| wait_for(Duration::from_secs(15), || kamcmd_bindings(&ctl, user) == 1);
    for user in ["gate-user", "gate-admin", "1001"] {
        assert!(
            registered(user),
            "{user} not registered\n--- dialback:\n{}\n--- baresip:\n{}",
            support::process::log_tail(&tmp.join("dialback.log"), 20),
            support::process::log_tail(&tmp.join("baresip.log"), 20)
        );
    }
    assert_eq!(
        kamcmd_bindings(&ctl, "gate-out"),
        0,
        "the originate trunk never registers"
    );
    assert_eq!(
        call_admin_phone(pbx_port),
        Some(200),
        "admin phone did not answer: {}",
        support::process::log_tail(&tmp.join("baresip.log"), 20)
    );
}

/// Every key path of the JSON Schema, as `scripts/dialplan-reference.py` names it.
fn schema_paths(node: &Value, prefix: &str, out: &mut Vec<String>) {
    let Some(props) = node.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, child) in props {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        out.push(path.clone());
        schema_paths(child, &path, out);
        if let Some(items) = child.get("items") {
            schema_paths(items, &format!("{path}[]"), out);
        }
        if let Some(extra) = child.get("additionalProperties").filter(|v| v.is_object()) {
            schema_paths(extra, &format!("{path}.*"), out);
        }
    }
}

#[test]
fn dialplan_reference_lists_every_key_of_the_schema() {
    let schema: Value = serde_json::from_str(&read("dialplans/dialplan.schema.json")).unwrap();
    let reference = read("dialplans/REFERENCE.md");
    let mut paths = Vec::new();
    schema_paths(&schema, "", &mut paths);
    assert!(
        paths.len() > 50,
        "schema walk found only {} keys",
        paths.len()
    );
    let missing: Vec<&String> = paths
        .iter()
        .filter(|p| !reference.contains(&format!("| `{p}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "dialplans/REFERENCE.md is stale (run python3 scripts/dialplan-reference.py); missing: {missing:?}"
    );
}
