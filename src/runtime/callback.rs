//! The callback on the originate trunk (DESIGN.md step 5, issue 4 point 4): after the gate
//! allows a start, wait `delay_ms`, then call the administrator's registered numbers in order,
//! one [`OutgoingCall`] at a time, until one answers. Every step is audited before it is acted
//! on ("callback.placed" is on disk before the INVITE leaves). The number dialled comes only
//! from the dialplan, through the gate's decision.
//!
//! Until the modem is wired in, an answered callback runs media (G.711 silence, 20 ms packets,
//! received RTP counted and dropped) for `callback.answered_hold_s` and is then hung up.
//!
//! An answered callback on which no RTP arrives for `media.rtp_timeout_s` is hung up and
//! audited `session.end:rtp_timeout`. A callback still waiting out its delay when the gate
//! shuts down is never dialled and is audited `callback.aborted:shutdown`; one answered then
//! ends as `session.end:shutdown`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::gate::audit::{AuditRecord, EventCode, Reason, Transport, Trunk as AuditTrunk};
use crate::gate::policy::AdminId;
use crate::gate::WallTime;
use crate::media::g711::Law;
use crate::media::rtp::{RtpSendStream, Ssrc};
use crate::modem::v22bis::{Rate, Role};
use crate::runtime::audit::AuditLog;
use crate::runtime::modem_media::{self, LineModem, LineParams};
use crate::runtime::session::{self, SessionSettings};
use crate::sdp::{self, Codec, LocalMedia};
use crate::sip::call::{CallConfig, CallEvent, FailReason, OnDiversion, OutgoingCall};
use crate::sip::endpoint::{Endpoint, Event};
use crate::sip::transaction::Route;

/// A callback the gate decided on.
#[derive(Debug, Clone)]
pub struct CallbackOrder {
    pub admin: AdminId,
    /// In priority order, from the dialplan.
    pub numbers: Vec<String>,
}

/// Settings of the originate side.
#[derive(Clone)]
pub struct CallbackSettings {
    pub proxy: SocketAddr,
    pub from_uri: String,
    pub contact_uri: String,
    pub auth_username: String,
    pub password: String,
    pub delay: Duration,
    pub ring_timeout: Duration,
    pub on_diversion: OnDiversion,
    pub answered_hold: Duration,
    /// Local address for RTP and the port range to bind in.
    pub rtp_ip: IpAddr,
    /// The address put in the SDP `c=` line (the trunk's `advertise`).
    pub sdp_ip: IpAddr,
    pub rtp_ports: (u16, u16),
    /// The modem and console session on answer; `None` holds the line with silence instead.
    pub session: Option<SessionSettings>,
    pub jitter: Duration,
    /// `media.rtp_timeout_s`: an answered callback with no RTP for this long is ended.
    pub rtp_timeout: Duration,
    /// The dialplan's modem section (the runtime builds `session` from it and the gate).
    pub modem: crate::config::Modem,
}

impl std::fmt::Debug for CallbackSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackSettings")
            .field("proxy", &self.proxy)
            .field("from_uri", &self.from_uri)
            .field("auth_username", &self.auth_username)
            .field("password", &"REDACTED")
            .field("delay", &self.delay)
            .field("ring_timeout", &self.ring_timeout)
            .finish_non_exhaustive()
    }
}

enum Phase {
    /// Waiting until the delay has passed (or between numbers).
    Waiting(Instant),
    Calling {
        call: Box<OutgoingCall>,
        media: Option<Media>,
        hangup_at: Option<Instant>,
    },
    /// Never dialled (shutdown): audit `callback.aborted` with this reason, then done.
    Aborted(Reason),
    Done,
}

struct Media {
    socket: std::sync::Arc<UdpSocket>,
    local: LocalMedia,
    task: Option<JoinHandle<()>>,
}

struct Active {
    key: u64,
    /// Why the maintenance session ended, once it has.
    session_end: Option<Reason>,
    order: CallbackOrder,
    next: usize,
    phase: Phase,
}

/// All callbacks in progress on the originate trunk.
pub struct Callbacks {
    settings: CallbackSettings,
    audit: Option<AuditLog>,
    finished: mpsc::Sender<AdminId>,
    active: Vec<Active>,
    next_key: u64,
    session_done_tx: mpsc::Sender<(u64, Reason)>,
    session_done_rx: Option<mpsc::Receiver<(u64, Reason)>>,
}

impl Callbacks {
    pub fn new(
        settings: CallbackSettings,
        audit: Option<AuditLog>,
        finished: mpsc::Sender<AdminId>,
    ) -> Self {
        let (session_done_tx, session_done_rx) = mpsc::channel(16);
        Callbacks {
            settings,
            audit,
            finished,
            active: Vec::new(),
            next_key: 1,
            session_done_tx,
            session_done_rx: Some(session_done_rx),
        }
    }

    /// The channel on which finished maintenance sessions report (the runtime waits on it).
    pub fn take_session_done(&mut self) -> Option<mpsc::Receiver<(u64, Reason)>> {
        self.session_done_rx.take()
    }

    /// A session ended (or its media saw no RTP): hang the callback up now.
    pub fn session_done(&mut self, now: Instant, key: u64, reason: Reason) {
        for a in &mut self.active {
            if a.key == key {
                a.session_end = Some(reason);
                if let Phase::Calling {
                    hangup_at, call, ..
                } = &mut a.phase
                {
                    if reason == Reason::RtpTimeout {
                        warn!(
                            call_id = call.call_id(),
                            admin = %a.order.admin.as_str(),
                            timeout_s = self.settings.rtp_timeout.as_secs(),
                            "no RTP on the callback: hanging up"
                        );
                    }
                    *hangup_at = Some(now);
                }
            }
        }
    }

    /// A new order from the gate.
    pub fn order(&mut self, now: Instant, order: CallbackOrder) {
        info!(admin = %order.admin.as_str(), numbers = order.numbers.len(), delay_ms = self.settings.delay.as_millis() as u64, "callback scheduled");
        let key = self.next_key;
        self.next_key += 1;
        self.active.push(Active {
            key,
            session_end: None,
            order,
            next: 0,
            phase: Phase::Waiting(now + self.settings.delay),
        });
    }

    /// Offer an endpoint event to the calls; true when one took it.
    pub fn handle_event(&mut self, now: Instant, ep: &mut Endpoint, ev: &Event) -> bool {
        self.active.iter_mut().any(|a| match &mut a.phase {
            Phase::Calling { call, .. } => call.handle_event(now, ep, ev),
            _ => false,
        })
    }

    /// Earliest instant something is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.active
            .iter()
            .filter_map(|a| match &a.phase {
                Phase::Waiting(t) => Some(*t),
                Phase::Aborted(_) => Some(Instant::now()),
                Phase::Calling {
                    call, hangup_at, ..
                } => match (call.poll_timeout(), hangup_at) {
                    (Some(x), Some(y)) => Some(x.min(*y)),
                    (x, y) => x.or(*y),
                },
                Phase::Done => None,
            })
            .min()
    }

    /// Drive timers and call events; audits before each action.
    pub async fn drive(&mut self, now: Instant, ep: &mut Endpoint) {
        for i in 0..self.active.len() {
            let Some(a) = self.active.get_mut(i) else {
                continue;
            };
            match &mut a.phase {
                Phase::Waiting(t) if *t <= now => {
                    let Some(number) = a.order.numbers.get(a.next).cloned() else {
                        a.phase = Phase::Done;
                        continue;
                    };
                    a.next += 1;
                    let admin = a.order.admin.clone();
                    // Audited and fsynced before the INVITE leaves (issue 4 point 6).
                    if !record(&self.audit, EventCode::CallbackPlaced, &admin, None).await {
                        if let Some(a) = self.active.get_mut(i) {
                            a.phase = Phase::Done;
                        }
                        continue;
                    }
                    let phase = self.place(now, ep, &admin, &number).await;
                    if let Some(a) = self.active.get_mut(i) {
                        a.phase = phase;
                    }
                }
                Phase::Aborted(reason) => {
                    let (admin, reason) = (a.order.admin.clone(), *reason);
                    info!(admin = %admin.as_str(), reason = ?reason, "callback aborted before dialling");
                    record(
                        &self.audit,
                        EventCode::CallbackAborted,
                        &admin,
                        Some(reason),
                    )
                    .await;
                    if let Some(a) = self.active.get_mut(i) {
                        a.phase = Phase::Done;
                    }
                }
                Phase::Calling {
                    call, hangup_at, ..
                } => {
                    if hangup_at.is_some_and(|t| t <= now) {
                        *hangup_at = None;
                        call.hangup(now, ep);
                    }
                    call.handle_timeout(now, ep);
                }
                _ => {}
            }
            self.drain_call_events(i, now).await;
        }
        let mut done = Vec::new();
        self.active.retain(|a| {
            let keep = !matches!(a.phase, Phase::Done);
            if !keep {
                done.push(a.order.admin.clone());
            }
            keep
        });
        for admin in done {
            info!(admin = %admin.as_str(), "callback finished");
            let _ = self.finished.send(admin).await;
        }
    }

    /// Whether no callback is in progress.
    pub fn is_idle(&self) -> bool {
        self.active.is_empty()
    }

    /// Hang up everything (shutdown).
    pub fn hangup_all(&mut self, now: Instant, ep: &mut Endpoint) {
        for a in &mut self.active {
            match &mut a.phase {
                Phase::Calling { call, .. } => {
                    // An answered callback's session ends because we stop.
                    a.session_end.get_or_insert(Reason::Shutdown);
                    call.hangup(now, ep);
                }
                // Not dialled yet: never dial once shutting down; audited by `drive`.
                Phase::Waiting(_) => a.phase = Phase::Aborted(Reason::Shutdown),
                Phase::Aborted(_) | Phase::Done => {}
            }
        }
    }

    async fn place(
        &mut self,
        now: Instant,
        ep: &mut Endpoint,
        admin: &AdminId,
        number: &str,
    ) -> Phase {
        let s = &self.settings;
        let (socket, port) = match bind_rtp(s.rtp_ip, s.rtp_ports).await {
            Ok(x) => x,
            Err(e) => {
                error!(error = %e, "no RTP port free for the callback");
                record(
                    &self.audit,
                    EventCode::CallbackFailed,
                    admin,
                    Some(Reason::Timeout),
                )
                .await;
                return Phase::Waiting(now);
            }
        };
        let local = LocalMedia {
            addr: s.sdp_ip,
            rtp_port: port,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            telephone_event: true,
            ptime_ms: 20,
            session_id: rand::random::<u64>() >> 1,
            session_version: 1,
        };
        let cfg = CallConfig {
            target_uri: number.to_string(),
            from_uri: s.from_uri.clone(),
            contact_uri: s.contact_uri.clone(),
            auth_username: s.auth_username.clone(),
            password: s.password.clone(),
            sdp_offer: sdp::offer(&local),
            ring_timeout: s.ring_timeout,
            on_diversion: s.on_diversion,
        };
        let call_id = format!("{}@{}", ep.token(), s.sdp_ip);
        let from_tag = ep.token();
        let mut call = OutgoingCall::new(cfg, call_id, from_tag);
        let route = Route {
            addr: s.proxy,
            conn: None,
        };
        if let Err(e) = call.start(now, ep, route) {
            warn!(error = %e, admin = %admin.as_str(), "callback number cannot be dialled");
            record(&self.audit, EventCode::CallbackFailed, admin, None).await;
            return Phase::Waiting(now);
        }
        info!(admin = %admin.as_str(), number, "callback INVITE sent");
        Phase::Calling {
            call: Box::new(call),
            media: Some(Media {
                socket: std::sync::Arc::new(socket),
                local,
                task: None,
            }),
            hangup_at: None,
        }
    }

    async fn drain_call_events(&mut self, i: usize, now: Instant) {
        loop {
            let Some(a) = self.active.get_mut(i) else {
                return;
            };
            let admin = a.order.admin.clone();
            let key = a.key;
            let session_end = a.session_end;
            let more = a.next < a.order.numbers.len();
            let Phase::Calling {
                call,
                media,
                hangup_at,
            } = &mut a.phase
            else {
                return;
            };
            let Some(ev) = call.poll_event() else { return };
            let hold = self.settings.answered_hold;
            let (code, reason, next_phase) = match ev {
                CallEvent::Trying | CallEvent::Info { .. } => continue,
                CallEvent::Ringing => (EventCode::CallbackRinging, None, None),
                CallEvent::Diverted { header } => {
                    warn!(admin = %admin.as_str(), header, "callback diverted");
                    (EventCode::CallbackAborted, Some(Reason::Diversion), None)
                }
                CallEvent::Answered { remote_sdp } => {
                    let mut session = false;
                    if let Some(m) = media.as_mut() {
                        match sdp::accept_answer(&m.local, &remote_sdp) {
                            Ok(neg) => {
                                let law = match neg.codec {
                                    Codec::Pcma => Law::Alaw,
                                    _ => Law::Ulaw,
                                };
                                m.task = Some(match &self.settings.session {
                                    Some(ss) => {
                                        session = true;
                                        start_session(
                                            m.socket.clone(),
                                            neg.remote_addr,
                                            law,
                                            neg.payload_type,
                                            self.settings.jitter,
                                            self.settings.rtp_timeout,
                                            admin.clone(),
                                            ss.clone(),
                                            key,
                                            self.session_done_tx.clone(),
                                        )
                                    }
                                    None => tokio::spawn(run_media(
                                        m.socket.clone(),
                                        neg.remote_addr,
                                        law,
                                        neg.payload_type,
                                        self.settings.rtp_timeout,
                                        key,
                                        self.session_done_tx.clone(),
                                    )),
                                });
                            }
                            Err(e) => warn!(error = %e, "callback answer SDP unusable; no media"),
                        }
                    }
                    info!(admin = %admin.as_str(), session, "callback answered");
                    if session {
                        // The session ends the call; its own limits bound it, this is a backstop.
                        let max =
                            self.settings.session.as_ref().map_or(hold, |s| {
                                Duration::from_secs(u64::from(s.modem.max_s) + 60)
                            });
                        *hangup_at = Some(now + max);
                        (EventCode::CallbackAnswered, None, None)
                    } else {
                        *hangup_at = Some(now + hold);
                        record(&self.audit, EventCode::CallbackAnswered, &admin, None).await;
                        (EventCode::SessionStart, None, None)
                    }
                }
                CallEvent::Failed { reason } => {
                    if let Some(t) = media.as_mut().and_then(|m| m.task.take()) {
                        t.abort();
                    }
                    let r = match reason {
                        FailReason::Status(486) | FailReason::Status(600) => Reason::Busy,
                        FailReason::Status(603) => Reason::Declined,
                        FailReason::Status(_) => Reason::NoAnswer,
                        FailReason::Redirect(_) => Reason::Redirected,
                        FailReason::NoAnswer => Reason::NoAnswer,
                        FailReason::Timeout => Reason::Timeout,
                        FailReason::Diverted => Reason::Diversion,
                    };
                    info!(admin = %admin.as_str(), reason = ?reason, more, "callback attempt failed");
                    let next = if more {
                        Phase::Waiting(now)
                    } else {
                        Phase::Done
                    };
                    (EventCode::CallbackFailed, Some(r), Some(next))
                }
                CallEvent::Ended { by_remote } => {
                    if let Some(t) = media.as_mut().and_then(|m| m.task.take()) {
                        t.abort();
                    }
                    info!(admin = %admin.as_str(), by_remote, "callback ended");
                    (
                        EventCode::SessionEnd,
                        Some(session_end.unwrap_or(Reason::Hangup)),
                        Some(Phase::Done),
                    )
                }
            };
            if let Some(p) = next_phase {
                if let Some(a) = self.active.get_mut(i) {
                    a.phase = p;
                }
            }
            record(&self.audit, code, &admin, reason).await;
            if matches!(code, EventCode::CallbackFailed) && !more {
                record(
                    &self.audit,
                    EventCode::CallbackFailed,
                    &admin,
                    Some(Reason::AllNumbersFailed),
                )
                .await;
            }
        }
    }
}

/// Append an audit line; false (logged at error) when it could not be made durable.
pub(crate) async fn record(
    audit: &Option<AuditLog>,
    event: EventCode,
    admin: &AdminId,
    reason: Option<Reason>,
) -> bool {
    let Some(log) = audit else { return true };
    let rec = AuditRecord {
        event,
        time: WallTime(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        ),
        trunk: AuditTrunk::Originate,
        transport: Transport::Udp,
        source: None,
        admin: Some(admin.clone()),
        reason,
    };
    match log.record(&rec).await {
        Ok(()) => true,
        Err(e) => {
            error!(error = %e, "audit write failed: callback stopped (fail closed)");
            false
        }
    }
}

/// Bind an even RTP port in the configured range (RFC 3550 §11).
pub(crate) async fn bind_rtp(
    ip: IpAddr,
    (low, high): (u16, u16),
) -> std::io::Result<(UdpSocket, u16)> {
    let span = u32::from(high.saturating_sub(low)) / 2 + 1;
    let start = rand::random::<u32>() % span.max(1);
    for k in 0..span {
        let port = low.saturating_add((((start + k) % span) * 2) as u16);
        if let Ok(s) = UdpSocket::bind(SocketAddr::new(ip, port)).await {
            return Ok((s, port));
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free even port in {low}..={high}"),
    ))
}

/// Start the calling modem and the console session; report `key` when it ends.
#[allow(clippy::too_many_arguments)]
fn start_session(
    socket: std::sync::Arc<UdpSocket>,
    remote: SocketAddr,
    law: Law,
    pt: u8,
    jitter: Duration,
    rtp_timeout: Duration,
    admin: AdminId,
    ss: SessionSettings,
    key: u64,
    done: mpsc::Sender<(u64, Reason)>,
) -> JoinHandle<()> {
    use crate::config::Modulation;
    // The first modulation the dialplan lists; V.22bis falls back to V.22 in its handshake.
    let (modem, max_rate) = match ss.modem.modulations.first() {
        Some(Modulation::V22) => (LineModem::V22bis, Rate::R1200),
        Some(Modulation::V21) => (LineModem::V21, Rate::R1200),
        Some(Modulation::Bell103) => (LineModem::Bell103, Rate::R1200),
        _ => (LineModem::V22bis, Rate::R2400),
    };
    let params = LineParams {
        remote,
        law,
        payload_type: pt,
        modem,
        role: Role::Caller,
        max_rate,
        tx_level_dbm0: f32::from(ss.modem.tx_level_dbm0),
        jitter,
        rtp_timeout: Some(rtp_timeout),
    };
    tokio::spawn(async move {
        let reason = match modem_media::spawn(socket, params) {
            Ok(line) => {
                let reason = session::run(line, admin.clone(), ss).await;
                info!(admin = %admin.as_str(), reason = ?reason, "maintenance session over");
                reason
            }
            Err(e) => {
                warn!(error = %e, "modem configuration refused");
                Reason::ModemTrainingFailed
            }
        };
        let _ = done.send((key, reason)).await;
    })
}

/// Send G.711 silence every 20 ms and drain what arrives, until aborted; report `key` once
/// when no RTP arrived for `rtp_timeout`.
async fn run_media(
    socket: std::sync::Arc<UdpSocket>,
    remote: SocketAddr,
    law: Law,
    pt: u8,
    rtp_timeout: Duration,
    key: u64,
    done: mpsc::Sender<(u64, Reason)>,
) {
    let mut stream = RtpSendStream::new(Ssrc(rand::random()), pt, rand::random(), rand::random());
    let payload = [law.silence(); 160];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut buf = vec![0u8; 2048];
    let (mut sent, mut received) = (0u64, 0u64);
    let mut last_rtp = Instant::now();
    let mut timed_out = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let mut pkt = Vec::with_capacity(172);
                if stream.audio_header(160).write(&payload, &mut pkt).is_ok()
                    && !remote.ip().is_unspecified()
                    && socket.send_to(&pkt, remote).await.is_ok()
                {
                    sent += 1;
                }
                if sent % 500 == 0 {
                    tracing::debug!(sent, received, "callback media");
                }
                if !timed_out && last_rtp.elapsed() >= rtp_timeout {
                    timed_out = true;
                    let _ = done.send((key, Reason::RtpTimeout)).await;
                }
            }
            r = socket.recv_from(&mut buf) => {
                if let Ok((n, _)) = r {
                    if matches!(crate::media::rtp::parse(buf.get(..n).unwrap_or(&[])), Ok(crate::media::rtp::Datagram::Rtp(_))) {
                        received += 1;
                        last_rtp = Instant::now();
                    }
                }
            }
        }
    }
}
