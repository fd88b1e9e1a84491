//! `dialback demo`: the whole loop on loopback with no PBX and no setup. The gate runs with a
//! generated dialplan (direct trunks, fresh demo secrets, audit and state in a temp dir); the
//! administrator's side runs in the same process on its own socket: it sends `MAINTAIN-1` by
//! SIP MESSAGE (answering the digest challenge), takes the callback, trains the answering
//! modem over real RTP, logs in to the console again, runs `status` and quits. A ladder of
//! the SIP messages and the timings are printed as it goes.

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::gate::pin::{digest_ha1s, hash_pin};
use crate::gate::Secret;
use crate::media::g711::Law;
use crate::modem::v22bis::{Rate, Role};
use crate::runtime::modem_media::{self, LineEvent, LineModem, LineParams, ModemLine};
use crate::sdp::{Codec, LocalMedia};
use crate::sip::build::Extras;
use crate::sip::digest::{self, ClientCredentials, ResponseParams};
use crate::sip::endpoint::{Endpoint, EndpointConfig, Event, OutgoingRequest, TrunkKind};
use crate::sip::incall::{IncomingCall, IncomingEvent};
use crate::sip::message::{parse_datagram, Limits, Method};
use crate::sip::transaction::Route;

const ADMIN_ID: &str = "1001";
const PIN: &str = "2468";
const SIP_PASSWORD: &str = "demo-secret-1";
const REALM: &str = "dialback";
/// Bound on the whole demo.
const DEMO_LIMIT: Duration = Duration::from_secs(90);

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo setup: {0}")]
    Setup(String),
    #[error("{0}")]
    Step(String),
}

fn free_port() -> Result<u16, DemoError> {
    StdUdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| DemoError::Setup(e.to_string()))
}

/// Run the demo; `max_rate` chooses V.22bis (2400) or V.22 (1200).
pub async fn run(modem: LineModem, max_rate: Rate) -> Result<(), DemoError> {
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("dialback-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| DemoError::Setup(e.to_string()))?;
    let admin_sock = Arc::new(
        UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(|e| DemoError::Setup(e.to_string()))?,
    );
    let admin_addr = admin_sock
        .local_addr()
        .map_err(|e| DemoError::Setup(e.to_string()))?;
    let (user_port, gate_admin_port, out_port) = (free_port()?, free_port()?, free_port()?);
    let pin_hash = hash_pin(&Secret::new(PIN), &mut rand::rngs::OsRng)
        .map_err(|e| DemoError::Setup(e.to_string()))?;
    let (ha1_md5, ha1_sha256) = digest_ha1s(ADMIN_ID, REALM, &Secret::new(SIP_PASSWORD));
    let modulation = match (modem, max_rate) {
        (LineModem::V21, _) => "v21",
        (LineModem::Bell103, _) => "bell103",
        (LineModem::V22bis, Rate::R1200) => "v22",
        (LineModem::V22bis, _) => "v22bis",
    };
    let plan = serde_json::json!({
        "trunks": {
            "user": { "listen": format!("127.0.0.1:{user_port}"), "register": false, "aor": "sip:gate-user@127.0.0.1" },
            "admin": { "listen": format!("127.0.0.1:{gate_admin_port}"), "register": false, "aor": "sip:gate-admin@127.0.0.1" },
            "originate": { "listen": format!("127.0.0.1:{out_port}"), "proxy": format!("sip:{admin_addr}"),
                           "from": "sip:gate-out@127.0.0.1" }
        },
        "admins": [{ "digit": 1, "id": ADMIN_ID, "name": "Demo Admin", "pin": pin_hash,
                     "digest": { "realm": REALM, "ha1_md5": ha1_md5, "ha1_sha256": ha1_sha256 },
                     "numbers": [format!("sip:admin@{admin_addr}")] }],
        "callback": { "delay_ms": 500, "ring_timeout_s": 10 },
        "modem": { "modulations": [modulation], "target": "console", "idle_s": 60, "max_s": 120 },
        "audit": { "path": dir.join("audit.jsonl").display().to_string(), "fsync": true },
        "security": { "state_path": dir.join("state.json").display().to_string() }
    });
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
    println!("dialplan: {}", path.display());
    let result = tokio::time::timeout(
        DEMO_LIMIT,
        admin_side(
            admin_sock,
            admin_addr,
            SocketAddr::from(([127, 0, 0, 1], gate_admin_port)),
            started,
            modem,
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

/// The administrator's user agent: a sans-IO endpoint on its own socket.
struct Ua {
    sock: Arc<UdpSocket>,
    ep: Endpoint,
    gate: SocketAddr,
}

impl Ua {
    async fn flush(&mut self) {
        while let Some(t) = self.ep.poll_transmit() {
            ladder("admin", &t.bytes, true);
            let _ = self.sock.send_to(&t.bytes, t.route.addr).await;
        }
    }

    /// Receive until an event arrives (or the deadline).
    async fn next_event(&mut self, within: Duration) -> Result<Event, DemoError> {
        let end = tokio::time::Instant::now() + within;
        let mut buf = vec![0u8; 65_536];
        loop {
            self.flush().await;
            if let Some(ev) = self.ep.poll_event() {
                return Ok(ev);
            }
            let wake = self
                .ep
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .map_or(end, |t| t.min(end));
            tokio::select! {
                r = self.sock.recv_from(&mut buf) => {
                    if let Ok((n, src)) = r {
                        let data = buf.get(..n).unwrap_or(&[]);
                        ladder("admin", data, false);
                        self.ep.handle_datagram(Instant::now(), src, data);
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= end {
                        return Err(DemoError::Step("no answer from the gate".into()));
                    }
                    self.ep.handle_timeout(Instant::now());
                }
            }
        }
    }
}

/// One line per SIP message, from the administrator's point of view.
fn ladder(_who: &str, data: &[u8], outgoing: bool) {
    let Ok(m) = parse_datagram(data, &Limits::default()) else {
        return;
    };
    let line =
        String::from_utf8_lossy(data.split(|b| *b == b'\r').next().unwrap_or(&[])).into_owned();
    let cseq = m.header("cseq").unwrap_or("");
    if outgoing {
        println!("  admin  ──▶ gate   {line}   ({cseq})");
    } else {
        println!("  admin ◀──  gate   {line}   ({cseq})");
    }
}

async fn admin_side(
    sock: Arc<UdpSocket>,
    me: SocketAddr,
    gate_admin: SocketAddr,
    started: Instant,
    modem: LineModem,
) -> Result<(), DemoError> {
    let mut ua = Ua {
        sock: sock.clone(),
        ep: Endpoint::new(EndpointConfig {
            kind: TrunkKind::User,
            local: me,
            limits: Limits::default(),
            per_source_rate: 10_000,
            per_source_burst: 10_000,
            max_sources: 16,
            max_transactions: 64,
            queue_depth: 64,
            allow_sources: None,
            user_agent: format!("dialback-demo-admin/{}", env!("CARGO_PKG_VERSION")),
            rng_seed: rand::random(),
        }),
        gate: gate_admin,
    };
    // 1. MAINTAIN-1 by SIP MESSAGE, answering the digest challenge.
    println!("1. administrator sends MAINTAIN-1 to the admin trunk");
    let uri = format!("sip:gate-admin@{gate_admin}");
    let from = format!("sip:{ADMIN_ID}@{me}");
    let call_id = format!("{}@demo", ua.ep.token());
    let from_tag = ua.ep.token();
    let body = b"MAINTAIN-1";
    let route = Route {
        addr: ua.gate,
        conn: None,
    };
    let mut auth: Option<String> = None;
    let signal_at = Instant::now();
    for cseq in 1..=3u32 {
        let mut headers = vec![];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.clone()));
        }
        let extras = Extras {
            headers,
            body: Some(("text/plain", body)),
        };
        ua.ep.send_request(
            Instant::now(),
            route,
            &OutgoingRequest {
                method: &Method::Message,
                uri: &uri,
                from: &from,
                from_tag: &from_tag,
                to: &uri,
                to_tag: None,
                call_id: &call_id,
                cseq,
            },
            &extras,
        );
        let Event::Response { msg, .. } = ua.ep_response().await? else {
            return Err(DemoError::Step("unexpected event".into()));
        };
        match msg.status() {
            Some(401) => {
                let offers: Vec<&str> = msg.headers("www-authenticate").collect();
                let ch = digest::select_challenge(&offers)
                    .ok_or_else(|| DemoError::Step("no usable challenge".into()))?;
                auth = Some(digest::authorization(
                    &ch,
                    &ClientCredentials {
                        username: ADMIN_ID,
                        password: SIP_PASSWORD,
                    },
                    &ResponseParams {
                        method: "MESSAGE",
                        uri: &uri,
                        body,
                        nc: 1,
                        cnonce: &ua.ep.token(),
                    },
                ));
            }
            Some(202) => break,
            other => {
                return Err(DemoError::Step(format!(
                    "MESSAGE answered {other:?}: no callback will follow"
                )))
            }
        }
    }
    // 2. The callback.
    println!("2. waiting for the callback from the originate trunk");
    let (mut call, rtp) = loop {
        let ev = ua.next_event(Duration::from_secs(20)).await?;
        if let Event::Request {
            id,
            route,
            msg,
            info,
        } = ev
        {
            if info.method == Method::Invite {
                let rtp = Arc::new(
                    UdpSocket::bind("127.0.0.1:0")
                        .await
                        .map_err(|e| DemoError::Step(e.to_string()))?,
                );
                let port = rtp
                    .local_addr()
                    .map_err(|e| DemoError::Step(e.to_string()))?
                    .port();
                let local = LocalMedia {
                    addr: me.ip(),
                    rtp_port: port,
                    codecs: vec![Codec::Pcmu, Codec::Pcma],
                    telephone_event: false,
                    ptime_ms: 20,
                    session_id: 1,
                    session_version: 1,
                };
                println!(
                    "   signal → callback INVITE: {:.0} ms (includes the 500 ms callback delay)",
                    signal_at.elapsed().as_secs_f64() * 1000.0
                );
                let call =
                    IncomingCall::accept(Instant::now(), &mut ua.ep, id, route, &msg, &local)
                        .map_err(|e| DemoError::Step(format!("cannot answer the callback: {e}")))?;
                break (call, rtp);
            }
        }
    };
    ua.flush().await;
    let neg = call
        .media()
        .cloned()
        .ok_or_else(|| DemoError::Step("no media negotiated".into()))?;
    let answered_at = Instant::now();
    println!(
        "3. answered; answering modem on RTP :{} ↔ {}",
        rtp.local_addr().map(|a| a.port()).unwrap_or(0),
        neg.remote_addr
    );
    let mut line = modem_media::spawn(
        rtp,
        LineParams {
            remote: neg.remote_addr,
            law: if neg.codec == Codec::Pcma {
                Law::Alaw
            } else {
                Law::Ulaw
            },
            payload_type: neg.payload_type,
            modem,
            role: Role::Answerer,
            max_rate: Rate::R2400,
            tx_level_dbm0: -13.0,
            jitter: Duration::from_millis(60),
            rtp_timeout: None,
        },
    )
    .map_err(|e| DemoError::Step(e.to_string()))?;
    // Keep the SIP side running while the modem works.
    let (bye_tx, mut bye_rx) = tokio::sync::oneshot::channel::<()>();
    let sip = tokio::spawn(async move {
        let mut bye_tx = Some(bye_tx);
        loop {
            let Ok(ev) = ua.next_event(Duration::from_secs(120)).await else {
                break;
            };
            call.handle_event(Instant::now(), &mut ua.ep, &ev);
            ua.flush().await;
            while let Some(e) = call.poll_event() {
                if matches!(e, IncomingEvent::Ended { .. }) {
                    if let Some(t) = bye_tx.take() {
                        let _ = t.send(());
                    }
                }
            }
            if call.is_finished() {
                break;
            }
        }
    });
    let connect = loop {
        match tokio::time::timeout(Duration::from_secs(30), line.events.recv()).await {
            Ok(Some(LineEvent::Connected { rate_bps })) => break rate_bps,
            Ok(Some(_)) => {}
            _ => return Err(DemoError::Step("the modems did not train".into())),
        }
    };
    let name = match (modem, connect) {
        (LineModem::V21, _) => "V.21",
        (LineModem::Bell103, _) => "Bell 103",
        (_, 2400) => "V.22bis",
        _ => "V.22",
    };
    println!(
        "4. CONNECT {connect} {name} ({:.1} s after answer)",
        answered_at.elapsed().as_secs_f64()
    );
    let mut screen = String::new();
    expect(&mut line, &mut screen, "login: ").await?;
    send(&line, ADMIN_ID).await?;
    expect(&mut line, &mut screen, "PIN: ").await?;
    send(&line, PIN).await?;
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
    let _ = tokio::time::timeout(Duration::from_secs(10), &mut bye_rx).await;
    sip.abort();
    println!(
        "6. done in {:.1} s: signal → callback → {name} → login → status → quit → hang-up",
        started.elapsed().as_secs_f64()
    );
    if !screen.contains(name) {
        return Err(DemoError::Step("status did not show the session".into()));
    }
    Ok(())
}

impl Ua {
    async fn ep_response(&mut self) -> Result<Event, DemoError> {
        loop {
            let ev = self.next_event(Duration::from_secs(10)).await?;
            if matches!(ev, Event::Response { .. }) {
                return Ok(ev);
            }
        }
    }
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
