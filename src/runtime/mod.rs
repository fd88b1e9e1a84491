//! The tokio edge: one task and one socket pair (UDP, optionally TCP) per trunk, driving the
//! sans-IO [`Trunk`] with wall-clock `Instant`s, plus signal-driven graceful shutdown
//! (un-REGISTER, bounded wait). Nothing here decides anything about SIP.
//!
//! The administrator's end lives here too: [`admin`] is its SIP user agent (signal by MESSAGE
//! or DTMF call, callback filter, answering modem), shared by `dialback dial-in` ([`dialin`])
//! and `dialback demo` ([`demo`]).

pub mod admin;
pub mod audit;
pub mod call_media;
pub mod callback;
pub mod demo;
pub mod dialin;
pub mod gate;
pub mod incoming;
pub mod modem_media;
pub mod plan;
pub mod prompts;
pub mod session;
pub mod state;
mod tcp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn, Instrument};

use crate::gate::policy::AdminId;
use crate::sip::build::Extras;
use crate::sip::endpoint::{EndpointConfig, Event, Stats, TrunkKind};
use crate::sip::message::{Message, Method};
use crate::sip::register::RegEvent;
use crate::sip::transaction::ServerTxnId;
use crate::sip::trunk::{Trunk, TrunkEvent, TrunkRegistration};

/// How long a clean shutdown waits for un-REGISTER answers.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How often non-zero drop counters are logged.
const STATS_EVERY: Duration = Duration::from_secs(10);

/// Errors at the edge (bind failures and the like): exit code 1.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot bind {transport} {addr} for the {trunk} trunk: {source}")]
    Bind {
        trunk: &'static str,
        transport: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("trunk task failed: {0}")]
    Task(String),
}

/// Everything a trunk task needs.
#[derive(Clone, Debug)]
pub struct TrunkSpec {
    pub endpoint: EndpointConfig,
    /// Bind this address (UDP, and TCP when `tcp`).
    pub listen: SocketAddr,
    pub tcp: bool,
    pub max_tcp_connections: usize,
    pub registration: Option<TrunkRegistration>,
    /// Register over TCP (one persistent connection to the registrar) instead of UDP.
    pub register_tcp: bool,
    /// The originate trunk's callback settings.
    pub callbacks: Option<callback::CallbackSettings>,
    /// User/admin trunks: how inbound maintenance calls are taken.
    pub inbound: Option<InboundSpec>,
}

/// Inbound-call settings of a user or admin trunk.
#[derive(Clone, Debug)]
pub struct InboundSpec {
    /// Whether the dialplan route admits calls on this trunk.
    pub allow_calls: bool,
    pub rtp_ports: (u16, u16),
    pub inband: crate::media::inband::InbandConfig,
    pub first_digit_timeout: Duration,
    pub inter_digit_timeout: Duration,
    /// `media.max_digits`: most keys in one entry of the call flow.
    pub max_digits: usize,
    /// `media.rtp_timeout_s`.
    pub rtp_timeout: Duration,
    /// The dialplan's WAV prompts (loaded once, shared by both trunks).
    pub prompts: Arc<prompts::PromptSet>,
    /// What a call gets when the route does not admit calls (`routes.*.otherwise`).
    pub otherwise: crate::config::Otherwise,
}

/// Run all trunks until `shutdown` flips to true, then unregister and return. With a gate,
/// MESSAGEs on the user and admin trunks go to it; without one they get 480.
pub async fn run(
    trunks: Vec<TrunkSpec>,
    gate: Option<gate::Gate>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RuntimeError> {
    let mut bound = Vec::new();
    for spec in trunks {
        let name = spec.endpoint.kind.as_str();
        let udp = bind_udp(spec.listen).map_err(|source| RuntimeError::Bind {
            trunk: name,
            transport: "udp",
            addr: spec.listen,
            source,
        })?;
        let tcp = if spec.tcp {
            let l = tokio::net::TcpListener::bind(spec.listen)
                .await
                .map_err(|source| RuntimeError::Bind {
                    trunk: name,
                    transport: "tcp",
                    addr: spec.listen,
                    source,
                })?;
            Some(l)
        } else {
            None
        };
        info!(trunk = name, listen = %spec.listen, tcp = spec.tcp, "trunk listening");
        bound.push((spec, udp, tcp));
    }
    let (order_tx, order_rx) = mpsc::channel::<callback::CallbackOrder>(64);
    let (finished_tx, finished_rx) = mpsc::channel::<AdminId>(64);
    let (dtmf_tx, dtmf_rx) = mpsc::channel::<gate::DtmfRequest>(gate::GATE_QUEUE);
    let audit = gate.as_ref().map(|g| g.audit_log());
    let flow = gate.as_ref().map(|g| g.flow_config());
    let policy = gate.as_ref().map(|g| g.policy());
    let with_gate = gate.is_some();
    let app = gate.map(|g| {
        let (tx, rx) = mpsc::channel(gate::GATE_QUEUE);
        tokio::spawn(
            g.serve(rx, dtmf_rx, order_tx, finished_rx)
                .instrument(tracing::info_span!("gate")),
        );
        tx
    });
    let mut order_rx = Some(order_rx);
    let mut tasks = Vec::new();
    for (spec, udp, tcp) in bound {
        let name = spec.endpoint.kind.as_str();
        let rx = shutdown.clone();
        let app = match spec.endpoint.kind {
            TrunkKind::User | TrunkKind::Admin => app.clone(),
            TrunkKind::Originate => None,
        };
        let orders = match (spec.endpoint.kind, &spec.callbacks, with_gate) {
            (TrunkKind::Originate, Some(settings), true) => order_rx.take().map(|rx| {
                let mut settings = settings.clone();
                // Every target (console or tcp:) starts with the re-login on the modem.
                if let Some(policy) = &policy {
                    settings.session = Some(session::SessionSettings {
                        modem: settings.modem.clone(),
                        policy: policy.clone(),
                        audit: audit.clone(),
                    });
                }
                (
                    rx,
                    callback::Callbacks::new(settings, audit.clone(), finished_tx.clone()),
                )
            }),
            _ => None,
        };
        let incoming = match (&spec.inbound, &flow) {
            (Some(ib), Some(flow)) if ib.allow_calls => {
                let mut flow = flow.clone();
                flow.first_digit_timeout = ib.first_digit_timeout;
                flow.inter_digit_timeout = ib.inter_digit_timeout;
                flow.max_digits_per_prompt = ib.max_digits;
                Some(incoming::IncomingCalls::new(incoming::IncomingSettings {
                    kind: spec.endpoint.kind,
                    rtp_ip: spec.listen.ip(),
                    sdp_ip: spec.endpoint.local.ip(),
                    rtp_ports: ib.rtp_ports,
                    flow,
                    inband: ib.inband,
                    gate: dtmf_tx.clone(),
                    prompts: ib.prompts.clone(),
                    rtp_timeout: ib.rtp_timeout,
                }))
            }
            _ => None,
        };
        tasks.push(tokio::spawn(
            trunk_task(spec, udp, tcp, rx, app, orders, incoming)
                .instrument(tracing::info_span!("trunk", name)),
        ));
    }
    for t in tasks {
        t.await.map_err(|e| RuntimeError::Task(e.to_string()))?;
    }
    Ok(())
}

async fn trunk_task(
    spec: TrunkSpec,
    udp: UdpSocket,
    tcp: Option<tokio::net::TcpListener>,
    mut shutdown: watch::Receiver<bool>,
    app_tx: Option<mpsc::Sender<gate::AppRequest>>,
    orders: Option<(mpsc::Receiver<callback::CallbackOrder>, callback::Callbacks)>,
    mut incoming: Option<incoming::IncomingCalls>,
) {
    let (mut key_rx, mut decision_rx) = match incoming.as_mut().and_then(|ic| ic.take_receivers()) {
        Some((d, k)) => (Some(d), Some(k)),
        None => (None, None),
    };
    let (mut order_rx, mut callbacks) = match orders {
        Some((rx, cb)) => (Some(rx), Some(cb)),
        None => (None, None),
    };
    let mut session_done_rx = callbacks.as_mut().and_then(|c| c.take_session_done());
    let kind = spec.endpoint.kind;
    let limits = spec.endpoint.limits;
    let aor = spec.registration.as_ref().map(|r| r.config.aor.clone());
    let mut trunk = Trunk::new(spec.endpoint.clone(), spec.registration.clone());
    let (reply_tx, mut reply_rx) = mpsc::channel::<gate::AppReply>(64);
    let mut app = app_tx.map(|tx| AppLink {
        tx,
        reply_tx,
        pending: HashMap::new(),
    });
    let udp = Arc::new(udp);
    // Stream connections: framed messages in through one bounded channel, writers by id.
    let (in_tx, mut in_rx) = mpsc::channel::<tcp::Inbound>(256);
    let mut writers: HashMap<u64, mpsc::Sender<Vec<u8>>> = HashMap::new();
    if let Some(listener) = tcp {
        let admit = spec.endpoint.allow_sources.clone();
        tokio::spawn(tcp::accept_loop(
            listener,
            limits,
            spec.max_tcp_connections,
            admit,
            in_tx.clone(),
        ));
    }
    let mut reg_conn: Option<u64> = None;
    if let (true, Some(reg)) = (spec.register_tcp, spec.registration.as_ref()) {
        trunk.require_registration_stream();
        tokio::spawn(tcp::connect_loop(reg.destination, limits, in_tx.clone()));
    }
    let mut buf = vec![0u8; 65_536];
    let mut stopping: Option<Instant> = None;
    let mut last_stats = Stats::default();
    let mut stats_tick = tokio::time::interval(STATS_EVERY);
    stats_tick.tick().await;
    trunk.handle_timeout(Instant::now());
    loop {
        flush(&mut trunk, &udp, &mut writers).await;
        let invites = handle_events(
            &mut trunk,
            kind,
            aor.as_deref(),
            &mut app,
            &mut callbacks,
            &mut incoming,
        );
        for (id, route, msg) in invites {
            match incoming.as_mut() {
                Some(ic) => {
                    ic.invite(Instant::now(), trunk.endpoint(), id, route, &msg)
                        .await
                }
                None => refuse_call(&mut trunk, spec.inbound.as_ref(), id, &msg),
            }
        }
        if let Some(cb) = callbacks.as_mut() {
            cb.drive(Instant::now(), trunk.endpoint()).await;
        }
        flush(&mut trunk, &udp, &mut writers).await;
        if let Some(since) = stopping {
            // Wait (bounded) for the un-REGISTER and for our calls to end cleanly, so their
            // BYEs are answered and their ends audited.
            let calls_done = callbacks.as_ref().is_none_or(|c| c.is_idle())
                && incoming.as_ref().is_none_or(|c| c.is_idle());
            if (!trunk.unregistering() && calls_done) || since.elapsed() > SHUTDOWN_GRACE {
                break;
            }
        }
        let cb_due = callbacks.as_ref().and_then(|c| c.poll_timeout());
        let in_due = incoming.as_ref().and_then(|c| c.poll_timeout());
        let deadline = [trunk.poll_timeout(), cb_due, in_due]
            .into_iter()
            .flatten()
            .min()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            r = udp.recv_from(&mut buf) => match r {
                Ok((n, src)) => {
                    let now = Instant::now();
                    receive(&mut trunk, now, src, buf.get(..n).unwrap_or(&[]));
                    // Drain what else is already queued before answering: one wake-up per
                    // burst instead of one per datagram.
                    for _ in 0..RECV_BATCH {
                        match udp.try_recv_from(&mut buf) {
                            Ok((n, src)) => receive(&mut trunk, now, src, buf.get(..n).unwrap_or(&[])),
                            Err(_) => break,
                        }
                    }
                }
                Err(e) => debug!(error = %e, "udp receive error"),
            },
            Some(inb) = in_rx.recv() => match inb {
                tcp::Inbound::Opened { conn, writer, outbound } => {
                    writers.insert(conn, writer);
                    if outbound {
                        reg_conn = Some(conn);
                        trunk.set_registration_conn(Some(conn));
                        trunk.handle_timeout(Instant::now());
                    }
                }
                tcp::Inbound::Message { conn, src, msg } => trunk.handle_stream_message(Instant::now(), src, conn, *msg),
                tcp::Inbound::Malformed { conn } => { trunk.endpoint().note_malformed(); writers.remove(&conn); }
                tcp::Inbound::Closed { conn } => {
                    writers.remove(&conn);
                    if reg_conn == Some(conn) {
                        reg_conn = None;
                        trunk.set_registration_conn(None);
                    }
                }
            },
            Some(order) = async { order_rx.as_mut()?.recv().await }, if order_rx.is_some() => {
                if let Some(cb) = callbacks.as_mut() {
                    cb.order(Instant::now(), order);
                }
            }
            Some((key, reason)) = async { session_done_rx.as_mut()?.recv().await }, if session_done_rx.is_some() => {
                if let Some(cb) = callbacks.as_mut() {
                    cb.session_done(Instant::now(), key, reason);
                }
            }
            Some(r) = reply_rx.recv() => {
                if let Some(msg) = app.as_mut().and_then(|l| l.pending.remove(&r.id)) {
                    let extras = Extras { headers: r.headers, body: None };
                    trunk.endpoint().respond(Instant::now(), r.id, &msg, r.code, r.reason, &extras);
                }
            }
            Some((key, d)) = async { key_rx.as_mut()?.recv().await }, if key_rx.is_some() => {
                if let Some(ic) = incoming.as_mut() {
                    ic.media_event(Instant::now(), trunk.endpoint(), key, d);
                }
            }
            Some((key, d)) = async { decision_rx.as_mut()?.recv().await }, if decision_rx.is_some() => {
                if let Some(ic) = incoming.as_mut() {
                    ic.decided(Instant::now(), trunk.endpoint(), key, d);
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let now = Instant::now();
                trunk.handle_timeout(now);
                if let Some(ic) = incoming.as_mut() {
                    ic.handle_timeout(now, trunk.endpoint());
                }
            }
            _ = stats_tick.tick() => {
                let s = trunk.endpoint().stats();
                if s != last_stats {
                    info!(received = s.received, rate_dropped = s.dropped_rate, not_allowed = s.dropped_not_allowed,
                        malformed = s.dropped_malformed, rejected = s.rejected_4xx, refused = s.refused_originate,
                        overload = s.overload_503, "sip counters");
                    last_stats = s;
                }
            }
            r = shutdown.changed(), if stopping.is_none() => {
                if r.is_err() || *shutdown.borrow() {
                    info!("shutting down");
                    if let Some(cb) = callbacks.as_mut() {
                        cb.hangup_all(Instant::now(), trunk.endpoint());
                    }
                    if let Some(ic) = incoming.as_mut() {
                        ic.hangup_all(Instant::now(), trunk.endpoint());
                    }
                    trunk.unregister(Instant::now());
                    stopping = Some(Instant::now());
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(100)), if stopping.is_some() => {}
        }
    }
    info!("trunk stopped");
}

/// Answer an INVITE no maintenance call takes: per the route's `otherwise` when the route
/// does not admit calls (the same answer a MESSAGE gets, RFC 3261 §21.3.3 for the 302), 480
/// when no gate runs (no administrator in the dialplan).
fn refuse_call(trunk: &mut Trunk, inbound: Option<&InboundSpec>, id: ServerTxnId, msg: &Message) {
    let now = Instant::now();
    match inbound {
        Some(ib) if !ib.allow_calls => {
            let (code, reason, extras) = gate::otherwise_answer(&ib.otherwise);
            trunk
                .endpoint()
                .respond(now, id, msg, code, reason, &extras);
        }
        _ => trunk.endpoint().respond(
            now,
            id,
            msg,
            480,
            "Temporarily Unavailable",
            &Extras::default(),
        ),
    }
}

/// Most datagrams taken from the socket per wake-up.
const RECV_BATCH: usize = 64;
/// Socket buffers sized for bursts (the kernel caps them at net.core.[rw]mem_max).
const SOCKET_BUFFER_BYTES: usize = 4 << 20;

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer only means earlier drops under a burst.
    let _ = sock.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = sock.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

fn receive(trunk: &mut Trunk, now: Instant, src: SocketAddr, data: &[u8]) {
    let before = trunk.endpoint().stats();
    trunk.handle_datagram(now, src, data);
    // One line per admitted message; floods dropped before parsing stay quiet.
    let after = trunk.endpoint().stats();
    if after.dropped_rate == before.dropped_rate
        && after.dropped_not_allowed == before.dropped_not_allowed
    {
        debug!(%src, len = data.len(), first_line = %first_line(data), "sip in");
    }
}

async fn flush(
    trunk: &mut Trunk,
    udp: &UdpSocket,
    writers: &mut HashMap<u64, mpsc::Sender<Vec<u8>>>,
) {
    while let Some(t) = trunk.poll_transmit() {
        debug!(dst = %t.route.addr, len = t.bytes.len(), first_line = %first_line(&t.bytes), "sip out");
        match t.route.conn {
            None => {
                let sent = match udp.try_send_to(&t.bytes, t.route.addr) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        udp.send_to(&t.bytes, t.route.addr).await
                    }
                    other => other,
                };
                if let Err(e) = sent {
                    debug!(dst = %t.route.addr, error = %e, "udp send failed");
                }
            }
            Some(conn) => {
                if let Some(w) = writers.get(&conn) {
                    if w.try_send(t.bytes).is_err() {
                        debug!(conn, "tcp writer full or closed; dropping connection");
                        writers.remove(&conn);
                    }
                }
            }
        }
    }
}

/// The start line of a SIP message for a log line (never a header: those may carry
/// credentials).
fn first_line(data: &[u8]) -> String {
    let end = data
        .iter()
        .position(|b| *b == b'\r' || *b == b'\n')
        .unwrap_or(data.len())
        .min(200);
    String::from_utf8_lossy(data.get(..end).unwrap_or(&[])).into_owned()
}

/// Application side until the maintenance gate is wired in: answer what the trunk handed up.
/// The link from a trunk task to the gate actor.
struct AppLink {
    tx: mpsc::Sender<gate::AppRequest>,
    reply_tx: mpsc::Sender<gate::AppReply>,
    /// Requests waiting for the gate's answer (bounded by the endpoint's transaction cap).
    pending: HashMap<ServerTxnId, Box<Message>>,
}

fn handle_events(
    trunk: &mut Trunk,
    kind: TrunkKind,
    aor: Option<&str>,
    app: &mut Option<AppLink>,
    callbacks: &mut Option<callback::Callbacks>,
    incoming: &mut Option<incoming::IncomingCalls>,
) -> Vec<(ServerTxnId, crate::sip::transaction::Route, Box<Message>)> {
    let mut invites = Vec::new();
    while let Some(ev) = trunk.poll_event() {
        if let (TrunkEvent::App(e), Some(cb)) = (&ev, callbacks.as_mut()) {
            if cb.handle_event(Instant::now(), trunk.endpoint(), e) {
                continue;
            }
        }
        if let (TrunkEvent::App(e), Some(ic)) = (&ev, incoming.as_mut()) {
            if ic.handle_event(Instant::now(), trunk.endpoint(), e) {
                continue;
            }
        }
        if let TrunkEvent::App(Event::Request {
            id,
            info,
            msg,
            route,
        }) = &ev
        {
            if info.method == Method::Invite && info.to_tag.is_none() {
                invites.push((*id, *route, msg.clone()));
                continue;
            }
        }
        match ev {
            TrunkEvent::Registration(RegEvent::Registered { expires_s }) => {
                info!(aor = aor.unwrap_or("-"), expires_s, "registered");
            }
            TrunkEvent::Registration(RegEvent::Failed { reason, retry_in }) => {
                warn!(
                    aor = aor.unwrap_or("-"),
                    reason,
                    retry_in_ms = retry_in.as_millis() as u64,
                    "registration failed"
                );
            }
            TrunkEvent::Registration(RegEvent::Unregistered) => {
                info!(aor = aor.unwrap_or("-"), "unregistered");
            }
            TrunkEvent::App(Event::Refused {
                route,
                method,
                call_id,
            }) => {
                warn!(trunk = kind.as_str(), src = %route.addr, method = %method, call_id, "originate trunk refused inbound request");
            }
            TrunkEvent::App(Event::Request {
                id,
                info,
                msg,
                route,
            }) => {
                debug!(src = %route.addr, method = %info.method, call_id = info.call_id, "request");
                if let (Method::Message, Some(link)) = (&info.method, app.as_mut()) {
                    let req = gate::AppRequest {
                        trunk: kind,
                        src: route.addr,
                        tcp: route.conn.is_some(),
                        id,
                        request_uri: info.uri.clone(),
                        authorization: msg.header("authorization").map(str::to_string),
                        body: msg.body.clone(),
                        reply: link.reply_tx.clone(),
                    };
                    if link.tx.try_send(req).is_ok() {
                        link.pending.insert(id, msg);
                    } else {
                        let extras = Extras {
                            headers: vec![("Retry-After", "5".to_string())],
                            body: None,
                        };
                        trunk.endpoint().respond(
                            Instant::now(),
                            id,
                            &msg,
                            503,
                            "Service Unavailable",
                            &extras,
                        );
                    }
                    continue;
                }
                let (code, reason) = match info.method {
                    Method::Bye | Method::Info => (481, "Call/Transaction Does Not Exist"),
                    _ => (480, "Temporarily Unavailable"),
                };
                trunk.endpoint().respond(
                    Instant::now(),
                    id,
                    &msg,
                    code,
                    reason,
                    &Extras::default(),
                );
            }
            TrunkEvent::App(other) => debug!(event = ?other, "unhandled event"),
        }
    }
    invites
}

/// Resolves on SIGINT or SIGTERM (Ctrl-C elsewhere): how `run` and `dial-in` are told to stop.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
