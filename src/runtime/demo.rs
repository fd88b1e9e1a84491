//! `dialback demo`: the whole loop on loopback with no PBX and no setup. The gate runs with
//! `dialplans/demo.json` (direct trunks; embedded, so it works from any directory) filled in
//! with free ports, freshly generated demo secrets and a temp dir for audit and state; the
//! administrator's side ([`crate::runtime::admin`], the same code as `dialback dial-in`) runs
//! in the same process on its own socket: it sends `MAINTAIN-1` by SIP MESSAGE (answering the
//! digest challenge), takes the callback, trains the answering modem over real RTP, logs in to
//! the console again, runs `status` and quits. A ladder of the SIP messages and the timings
//! are printed as it goes.

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::watch;

use crate::gate::pin::{digest_ha1s, hash_pin};
use crate::gate::Secret;
use crate::modem::v22bis::Rate;
use crate::runtime::admin::{self, AdminUa, CallbackFilter, Progress, SignalCredentials, UaConfig};
use crate::runtime::modem_media::{LineEvent, LineModem, ModemLine};
use crate::sdp::Codec;

/// The demo's dialplan template (valid as it stands: `dialback check dialplans/demo.json`).
pub const DEMO_DIALPLAN: &str = include_str!("../../dialplans/demo.json");

const ADMIN_ID: &str = "1001";
/// Bound on the whole demo.
const DEMO_LIMIT: Duration = Duration::from_secs(90);

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo setup: {0}")]
    Setup(String),
    #[error("{0}")]
    Step(String),
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
}

fn free_port() -> Result<u16, DemoError> {
    StdUdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| DemoError::Setup(e.to_string()))
}

/// Secrets generated for one demo run (never printed).
struct DemoSecrets {
    sip_password: Secret,
    pin: Secret,
}

impl DemoSecrets {
    fn generate() -> Self {
        let mut rng = rand::rngs::OsRng;
        let sip: String = (0..16)
            .map(|_| char::from(b"abcdefghjkmnpqrstuvwxyz23456789"[rng.gen_range(0..31)]))
            .collect();
        let pin: String = (0..6)
            .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
            .collect();
        DemoSecrets {
            sip_password: Secret::new(sip),
            pin: Secret::new(pin),
        }
    }
}

/// Fill the template: ports, the administrator's number, secrets, modulation, file paths.
fn demo_plan(
    ports: (u16, u16, u16),
    admin_addr: SocketAddr,
    secrets: &DemoSecrets,
    modulation: &str,
    dir: &std::path::Path,
) -> Result<serde_json::Value, DemoError> {
    let mut plan: serde_json::Value =
        serde_json::from_str(DEMO_DIALPLAN).map_err(|e| DemoError::Setup(e.to_string()))?;
    let (user_port, gate_admin_port, out_port) = ports;
    let pin_hash = hash_pin(&secrets.pin, &mut rand::rngs::OsRng)
        .map_err(|e| DemoError::Setup(e.to_string()))?;
    let realm = plan["admins"][0]["digest"]["realm"]
        .as_str()
        .unwrap_or("dialback")
        .to_string();
    let (ha1_md5, ha1_sha256) = digest_ha1s(ADMIN_ID, &realm, &secrets.sip_password);
    let t = &mut plan["trunks"];
    t["user"]["listen"] = format!("127.0.0.1:{user_port}").into();
    t["admin"]["listen"] = format!("127.0.0.1:{gate_admin_port}").into();
    t["originate"]["listen"] = format!("127.0.0.1:{out_port}").into();
    t["originate"]["proxy"] = format!("sip:{admin_addr}").into();
    let a = &mut plan["admins"][0];
    a["id"] = ADMIN_ID.into();
    a["pin"] = pin_hash.into();
    a["digest"]["ha1_md5"] = ha1_md5.into();
    a["digest"]["ha1_sha256"] = ha1_sha256.into();
    a["numbers"] = serde_json::json!([format!("sip:admin@{admin_addr}")]);
    plan["modem"]["modulations"] = serde_json::json!([modulation]);
    plan["audit"]["path"] = dir.join("audit.jsonl").display().to_string().into();
    plan["security"]["state_path"] = dir.join("state.json").display().to_string().into();
    Ok(plan)
}

/// Run the demo with `modem` (V.22bis, V.22 when `max_rate` is 1200, V.21, Bell 103).
pub async fn run(modem: LineModem, max_rate: Rate) -> Result<(), DemoError> {
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("dialback-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| DemoError::Setup(e.to_string()))?;
    let secrets = DemoSecrets::generate();
    let ladder: admin::Report = Arc::new(|p| match p {
        Progress::Sip {
            outgoing: true,
            start_line,
            cseq,
            ..
        } => println!("  admin  ──▶ gate   {start_line}   ({cseq})"),
        Progress::Sip {
            outgoing: false,
            start_line,
            cseq,
            ..
        } => println!("  admin ◀──  gate   {start_line}   ({cseq})"),
        _ => {}
    });
    let ua = AdminUa::bind(
        UaConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            registration: None,
            contact_user: "admin".into(),
            user_agent: format!("dialback-demo-admin/{}", env!("CARGO_PKG_VERSION")),
        },
        ladder,
    )
    .await?;
    let admin_addr = ua.local_addr();
    let (user_port, gate_admin_port, out_port) = (free_port()?, free_port()?, free_port()?);
    let modulation = match (modem, max_rate) {
        (LineModem::V21, _) => "v21",
        (LineModem::Bell103, _) => "bell103",
        (_, Rate::R1200) => "v22",
        _ => "v22bis",
    };
    let plan = demo_plan(
        (user_port, gate_admin_port, out_port),
        admin_addr,
        &secrets,
        modulation,
        &dir,
    )?;
    let path = dir.join("demo.json");
    let text = serde_json::to_string_pretty(&plan).map_err(|e| DemoError::Setup(e.to_string()))?;
    std::fs::write(&path, &text).map_err(|e| DemoError::Setup(e.to_string()))?;
    let loaded = crate::config::load(&path).map_err(|e| DemoError::Setup(e.to_string()))?;
    let specs = crate::runtime::plan::trunk_specs(&loaded.dialplan)
        .await
        .map_err(|e| DemoError::Setup(e.to_string()))?;
    let gate = crate::runtime::gate::Gate::from_dialplan(&loaded.dialplan)
        .map_err(|e| DemoError::Setup(e.to_string()))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate_task = tokio::spawn(crate::runtime::run(specs, gate, stop_rx));
    println!("dialback demo: gate on 127.0.0.1 (user :{user_port}, admin :{gate_admin_port}, originate :{out_port}); administrator at {admin_addr}");
    println!(
        "dialplan: {} (from dialplans/demo.json, demo secrets generated for this run)",
        path.display()
    );
    let result = tokio::time::timeout(
        DEMO_LIMIT,
        admin_side(
            ua,
            SocketAddr::from(([127, 0, 0, 1], gate_admin_port)),
            SocketAddr::from(([127, 0, 0, 1], out_port)),
            &secrets,
            started,
            modem,
            max_rate,
        ),
    )
    .await
    .unwrap_or_else(|_| {
        Err(DemoError::Step(format!(
            "the demo did not finish within {DEMO_LIMIT:?}"
        )))
    });
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), gate_task).await;
    if let Ok(audit) = std::fs::read_to_string(dir.join("audit.jsonl")) {
        println!("audit ({}):", dir.join("audit.jsonl").display());
        for l in audit.lines() {
            println!("  {l}");
        }
    }
    result
}

async fn admin_side(
    mut ua: AdminUa,
    gate_admin: SocketAddr,
    gate_originate: SocketAddr,
    secrets: &DemoSecrets,
    started: Instant,
    modem: LineModem,
    max_rate: Rate,
) -> Result<(), DemoError> {
    // 1. MAINTAIN-1 by SIP MESSAGE, answering the digest challenge.
    println!("1. administrator sends MAINTAIN-1 to the admin trunk");
    let me = ua.local_addr();
    let signal_at = Instant::now();
    ua.send_message(
        &format!("sip:gate-admin@{gate_admin}"),
        &format!("sip:{ADMIN_ID}@{me}"),
        b"MAINTAIN-1",
        &SignalCredentials {
            admin_id: ADMIN_ID.into(),
            gate_password: Some(secrets.sip_password.clone()),
            pbx: None,
        },
    )
    .await?;
    // 2. The callback, only from the gate's originate trunk.
    println!("2. waiting for the callback from the originate trunk");
    let filter = CallbackFilter {
        from: Some("gate-out".into()),
        source: Some(gate_originate),
    };
    let cb = ua
        .wait_callback(
            &filter,
            Duration::from_secs(20),
            &[Codec::Pcmu, Codec::Pcma],
        )
        .await?;
    println!(
        "   signal → callback INVITE: {:.0} ms (includes the 500 ms callback delay)",
        signal_at.elapsed().as_secs_f64() * 1000.0
    );
    let answered_at = Instant::now();
    println!(
        "3. answered; answering modem on RTP :{} ↔ {}",
        cb.rtp.local_addr().map(|a| a.port()).unwrap_or(0),
        cb.media.remote_addr
    );
    let mut line = admin::start_modem(&cb, modem, max_rate)?;
    let mut active = ua.keep_call(cb.call);
    let connect = admin::wait_connect(&mut line, Duration::from_secs(30)).await?;
    let name = admin::modulation_name(modem, connect);
    println!(
        "4. CONNECT {connect} {name} ({:.1} s after answer)",
        answered_at.elapsed().as_secs_f64()
    );
    let mut screen = String::new();
    expect(&mut line, &mut screen, "login: ").await?;
    send(&line, ADMIN_ID).await?;
    expect(&mut line, &mut screen, "PIN: ").await?;
    send(&line, secrets.pin.expose()).await?;
    expect(&mut line, &mut screen, "dialback> ").await?;
    send(&line, "status").await?;
    expect(&mut line, &mut screen, "dialback> ").await?;
    send(&line, "quit").await?;
    // Read the farewell; after it the gate hangs up and the line carries only noise.
    let _ = expect(&mut line, &mut screen, "goodbye").await;
    drop(line);
    println!("5. console session over the modem link:");
    for l in screen.lines() {
        let shown: String = l.chars().filter(|c| !c.is_control()).collect();
        println!("   | {shown}");
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), active.ended()).await;
    let _ = active.finish(Duration::from_secs(2)).await;
    println!(
        "6. done in {:.1} s: signal → callback → {name} → login → status → quit → hang-up",
        started.elapsed().as_secs_f64()
    );
    if !screen.contains(name) {
        return Err(DemoError::Step("status did not show the session".into()));
    }
    Ok(())
}

async fn expect(line: &mut ModemLine, screen: &mut String, needle: &str) -> Result<(), DemoError> {
    let start = screen.len();
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    while !screen.get(start..).is_some_and(|s| s.contains(needle)) {
        match tokio::time::timeout_at(end, line.events.recv()).await {
            Ok(Some(LineEvent::Data(d))) => screen.push_str(&String::from_utf8_lossy(&d)),
            Ok(Some(LineEvent::Connected { .. })) => {}
            _ => return Err(DemoError::Step(format!("console did not show {needle:?}"))),
        }
    }
    Ok(())
}

async fn send(line: &ModemLine, text: &str) -> Result<(), DemoError> {
    line.tx
        .send(format!("{text}\r").into_bytes())
        .await
        .map_err(|_| DemoError::Step("modem line closed".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_template_fills_in_ports_numbers_and_fresh_secrets() {
        let dir = std::env::temp_dir();
        let s = DemoSecrets::generate();
        let plan = demo_plan(
            (5001, 5002, 5003),
            "127.0.0.1:5004".parse().unwrap(),
            &s,
            "v22",
            &dir,
        )
        .unwrap();
        assert_eq!(plan["trunks"]["admin"]["listen"], "127.0.0.1:5002");
        assert_eq!(plan["trunks"]["originate"]["proxy"], "sip:127.0.0.1:5004");
        assert_eq!(plan["admins"][0]["numbers"][0], "sip:admin@127.0.0.1:5004");
        assert_eq!(plan["modem"]["modulations"][0], "v22");
        let template: serde_json::Value = serde_json::from_str(DEMO_DIALPLAN).unwrap();
        assert_ne!(plan["admins"][0]["pin"], template["admins"][0]["pin"]);
        assert_ne!(
            plan["admins"][0]["digest"]["ha1_md5"],
            template["admins"][0]["digest"]["ha1_md5"]
        );
        assert_eq!(s.pin.expose().len(), 6);
    }
}
