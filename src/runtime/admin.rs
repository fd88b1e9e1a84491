//! The administrator's user agent: the other end of the loop (DESIGN.md "The flow", steps 1–3
//! and 6 seen from the administrator). One UDP socket and one sans-IO [`Trunk`] (endpoint plus
//! an optional registration of the administrator's number at a PBX, RFC 3261 §10). It sends the
//! start signal either as a SIP MESSAGE answering the digest challenges (RFC 3261 §22.2: 407
//! from a PBX with the PBX credentials, 401 from the gate with the gate credentials), or as a
//! call that carries `ID # PIN # signal` as RFC 4733 events or in-band DTMF (ITU-T Q.23) in
//! G.711 audio. Then it waits for the callback, answers only the gate's originate trunk
//! (RFC 3261 §21.4.4 403 for anyone else, 486 while busy), and hands the negotiated media to
//! the answering modem ([`crate::runtime::modem_media`]).
//!
//! Used by `dialback dial-in` ([`crate::runtime::dialin`]) and `dialback demo`
//! ([`crate::runtime::demo`]), so there is one copy. Runtime code: it owns sockets and reads
//! the clock; the SIP logic stays in `sip/` ([`Trunk`], [`OutgoingCall`], [`IncomingCall`]).
//! Progress is reported through a [`Report`] callback, never printed here.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::gate::Secret;
use crate::media::dtmf::Digit;
use crate::media::g711::Law;
use crate::media::rfc4733::{EventPacket, Sender as EventSender, SenderConfig};
use crate::media::rtp::{RtpSendStream, Ssrc};
use crate::media::tones::{dtmf_sequence, DtmfToneSpec, ToneSequence};
use crate::modem::v22bis::{Rate, Role};
use crate::runtime::modem_media::{self, LineEvent, LineModem, LineParams, ModemLine};
use crate::sdp::{self, Codec, LocalMedia, NegotiatedMedia};
use crate::sip::build::Extras;
use crate::sip::call::{CallConfig, CallEvent, FailReason, OnDiversion, OutgoingCall};
use crate::sip::digest::{self, ClientCredentials, ResponseParams};
use crate::sip::endpoint::{Endpoint, EndpointConfig, Event, OutgoingRequest, TrunkKind};
use crate::sip::incall::{IncomingCall, IncomingEvent};
use crate::sip::message::{parse_datagram, Limits, Message, Method};
use crate::sip::register::{RegEvent, RegistrationConfig};
use crate::sip::transaction::Route;
use crate::sip::trunk::{Trunk, TrunkEvent, TrunkRegistration};
use crate::sip::validate::parse_name_addr;

/// Samples per 20 ms G.711 frame.
const FRAME: usize = 160;
/// Challenges answered for one MESSAGE before the credentials count as refused (one from the
/// PBX, one from the gate, one stale retry).
const MAX_CHALLENGES: u32 = 3;
/// Wait for any final answer to a MESSAGE (Timer F is 32 s; a live gate answers in ms).
const MESSAGE_ANSWER_WITHIN: Duration = Duration::from_secs(35);
/// Silence after the gate answers our call before the first key (its prompt beep plays).
const FIRST_KEY_AFTER: Duration = Duration::from_millis(1000);
/// Key-down time and gap of each key (Q.24 asks for at least 40 ms of each).
const KEY_MS: u32 = 100;
const GAP_MS: u32 = 120;
/// After the last key: how long the gate may take to check and hang up before we do.
const GATE_HANGUP_WITHIN: Duration = Duration::from_secs(8);
/// The gate gives no oracle, so neither can we: the reasons a callback may not come.
const NO_CALLBACK_HINT: &str = "; the gate does not say why: a wrong ID, password, PIN or \
     digit, a locked or rate-limited administrator, or a callback that could not reach this \
     number (the gate's audit log has the reason)";
/// No RTP from the gate for this long ends the session (`LineEvent::RtpTimeout`).
const RTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Level of our in-band keys (low group; the high group is 2 dB louder).
const INBAND_LEVEL_DBM0: f64 = -8.0;

/// What the user agent reports as it goes (the caller prints it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// One SIP message on the wire: its start line and CSeq.
    Sip {
        outgoing: bool,
        peer: SocketAddr,
        start_line: String,
        cseq: String,
    },
    Registered {
        aor: String,
        expires_s: u32,
    },
    /// The signal went out: `how` is `MESSAGE` or `call`.
    SignalSent {
        how: &'static str,
        to: String,
    },
    /// A 401/407 was answered with credentials for `realm`.
    ChallengeAnswered {
        status: u16,
        realm: String,
    },
    /// The final answer to the MESSAGE.
    SignalAnswered {
        status: u16,
    },
    /// The gate answered our call.
    GateAnswered,
    /// All keys went out (`how`: `RFC 4733` or `in-band`).
    KeysSent {
        count: usize,
        how: &'static str,
    },
    /// Our call to the gate is over.
    GateCallEnded {
        by_gate: bool,
    },
    CallbackRinging {
        from: String,
        source: SocketAddr,
    },
    CallbackRejected {
        from: String,
        source: SocketAddr,
        status: u16,
    },
    CallbackAnswered {
        rtp_port: u16,
        remote: SocketAddr,
        codec: &'static str,
    },
}

/// Where progress goes.
pub type Report = Arc<dyn Fn(Progress) + Send + Sync>;

/// Why the administrator's side failed. Each variant is one clear message for the user.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("registration at the PBX failed: {reason}")]
    Registration { reason: String },
    #[error("no answer from the PBX registrar within {within_s} s")]
    RegistrationTimeout { within_s: u64 },
    #[error("the MESSAGE got no final answer within {within_s} s (check the gate's or the PBX's address)")]
    MessageTimeout { within_s: u64 },
    #[error("the MESSAGE was refused: {status} (check the PBX credentials and the gate's URI)")]
    MessageRefused { status: u16 },
    #[error("the call to the gate failed: {reason}")]
    GateCall { reason: String },
    #[error("no callback within {wait_s} s{hint}")]
    NoCallback { wait_s: u64, hint: String },
    #[error("cannot answer the callback: {reason}")]
    Answer { reason: String },
    #[error("the modems did not train within {within_s} s")]
    Training { within_s: u64 },
    /// Not shown: the keys hold the PIN.
    #[error("the ID, PIN or signal holds a character that is not a DTMF key (0-9 * # A-D)")]
    BadKeys,
}

/// Registration of the administrator's number at a PBX.
#[derive(Clone, Debug)]
pub struct UaRegistration {
    /// Request-URI of the REGISTER, e.g. `sip:127.0.0.1:5060`.
    pub registrar_uri: String,
    /// Where REGISTERs (and our other out-of-dialog requests) go.
    pub destination: SocketAddr,
    /// The administrator's number as an AOR, e.g. `sip:1001@127.0.0.1`.
    pub aor: String,
    pub auth_username: String,
    pub password: Secret,
    pub expires_s: u32,
}

/// Settings of the user agent.
#[derive(Clone, Debug)]
pub struct UaConfig {
    /// Local SIP address to bind (port 0: any free port).
    pub bind: SocketAddr,
    /// `Some`: register at a PBX; `None`: listen directly (PBX-less use).
    pub registration: Option<UaRegistration>,
    /// User part of our Contact (the administrator's number).
    pub contact_user: String,
    pub user_agent: String,
}

/// Credentials for the two challengers of a signal: the PBX (407, RFC 3261 §22.3) and the
/// gate (401 with the administrator's ID as username).
#[derive(Clone, Debug)]
pub struct SignalCredentials {
    /// The gate's digest username: the administrator's ID.
    pub admin_id: String,
    /// The administrator's SIP password at the gate (MESSAGE path).
    pub gate_password: Option<Secret>,
    /// The PBX's credentials (`None`: no PBX challenge expected).
    pub pbx: Option<(String, Secret)>,
}

/// Which calls count as the gate's callback.
#[derive(Clone, Debug, Default)]
pub struct CallbackFilter {
    /// The user part of the From URI the gate's originate trunk uses (e.g. `gate-out`), or the
    /// whole URI.
    pub from: Option<String>,
    /// Source IP (and port, when not 0) the INVITE must come from: the PBX, or the gate's
    /// originate trunk when direct.
    pub source: Option<SocketAddr>,
}

impl CallbackFilter {
    /// Whether an INVITE with `from_uri` from `source` is the gate's callback.
    pub fn admits(&self, from_uri: &str, source: SocketAddr) -> bool {
        let from_ok = match self.from.as_deref() {
            None => true,
            Some(f) if f.contains(':') => uri_eq_ignoring_params(f, from_uri),
            Some(f) => uri_user(from_uri) == Some(f),
        };
        let source_ok = match self.source {
            None => true,
            Some(s) if s.port() == 0 => s.ip() == source.ip(),
            Some(s) => s == source,
        };
        from_ok && source_ok
    }
}

/// How keys go to the gate on a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyMode {
    /// RFC 4733 telephone-events (falls back to in-band when the gate offers none).
    Rfc4733,
    /// Q.23 tone pairs inside the G.711 audio.
    InBand,
}

/// The callback, answered: the dialog, its RTP socket and the agreed media.
pub struct Callback {
    pub call: IncomingCall,
    pub rtp: Arc<UdpSocket>,
    pub media: NegotiatedMedia,
    pub from: String,
    pub source: SocketAddr,
}

impl Callback {
    /// The G.711 law of the agreed codec.
    pub fn law(&self) -> Law {
        if self.media.codec == Codec::Pcma {
            Law::Alaw
        } else {
            Law::Ulaw
        }
    }
}

/// The administrator's SIP user agent.
pub struct AdminUa {
    sock: Arc<UdpSocket>,
    trunk: Trunk,
    local: SocketAddr,
    outbound: Option<SocketAddr>,
    aor: Option<String>,
    contact_user: String,
    registered: bool,
    report: Report,
    /// Initial INVITEs that arrived while we were busy with something else.
    stash: VecDeque<Event>,
    buf: Vec<u8>,
}

/// What one turn of the pump produced.
// One value per turn, moved straight into a match: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Pumped {
    Event(TrunkEvent),
    /// A timer ran (the caller runs its dialog timers).
    Tick,
    /// The caller's deadline passed.
    Expired,
}

impl AdminUa {
    /// Bind the SIP socket; registration (if any) starts with the first pump.
    pub async fn bind(cfg: UaConfig, report: Report) -> Result<AdminUa, AdminError> {
        let sock = UdpSocket::bind(cfg.bind)
            .await
            .map_err(|source| AdminError::Bind {
                addr: cfg.bind,
                source,
            })?;
        let local = sock.local_addr().map_err(|source| AdminError::Bind {
            addr: cfg.bind,
            source,
        })?;
        let contact = format!("sip:{}@{local}", cfg.contact_user);
        let contact_user = cfg.contact_user.clone();
        let outbound = cfg.registration.as_ref().map(|r| r.destination);
        let aor = cfg.registration.as_ref().map(|r| r.aor.clone());
        let registration = cfg.registration.map(|r| TrunkRegistration {
            config: RegistrationConfig {
                registrar_uri: r.registrar_uri,
                aor: r.aor,
                contact,
                auth_username: r.auth_username,
                password: r.password.expose().to_string(),
                expires_s: r.expires_s,
            },
            destination: r.destination,
        });
        let registers = registration.is_some();
        let trunk = Trunk::new(
            EndpointConfig {
                kind: TrunkKind::User,
                local,
                limits: Limits::default(),
                per_source_rate: 1_000,
                per_source_burst: 1_000,
                max_sources: 64,
                max_transactions: 64,
                queue_depth: 64,
                allow_sources: None,
                user_agent: cfg.user_agent,
                rng_seed: rand::random(),
            },
            registration,
        );
        Ok(AdminUa {
            sock: Arc::new(sock),
            trunk,
            local,
            outbound,
            aor,
            contact_user,
            registered: !registers,
            report,
            stash: VecDeque::new(),
            buf: vec![0u8; 65_536],
        })
    }

    /// Our SIP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Wait until the registration is bound (immediately when not registering).
    pub async fn register(&mut self, within: Duration) -> Result<(), AdminError> {
        let end = tokio::time::Instant::now() + within;
        self.trunk.handle_timeout(Instant::now());
        while !self.registered {
            match self.pump(None, end).await {
                Pumped::Event(TrunkEvent::Registration(RegEvent::Failed { reason, .. })) => {
                    return Err(AdminError::Registration { reason });
                }
                Pumped::Event(TrunkEvent::App(ev)) => self.refuse(ev),
                Pumped::Event(_) | Pumped::Tick => {}
                Pumped::Expired => {
                    return Err(AdminError::RegistrationTimeout {
                        within_s: within.as_secs(),
                    })
                }
            }
        }
        Ok(())
    }

    /// Remove the registration (`Expires: 0`), waiting at most `within` for the answer.
    pub async fn unregister(&mut self, within: Duration) {
        if self.outbound.is_none() || !self.registered {
            return;
        }
        self.trunk.unregister(Instant::now());
        let end = tokio::time::Instant::now() + within;
        while self.trunk.unregistering() {
            match self.pump(None, end).await {
                Pumped::Expired => break,
                Pumped::Event(TrunkEvent::App(ev)) => self.refuse(ev),
                _ => {}
            }
        }
        self.flush().await;
    }

    /// Send `body` to `target` by SIP MESSAGE, answering 407 with the PBX credentials and 401
    /// with the gate's (RFC 3261 §22.2, §22.3). Returns the final 2xx status.
    pub async fn send_message(
        &mut self,
        target: &str,
        from: &str,
        body: &[u8],
        creds: &SignalCredentials,
    ) -> Result<u16, AdminError> {
        let route = Route {
            addr: self.next_hop(target)?,
            conn: None,
        };
        let call_id = format!("{}@{}", self.ep().token(), self.local.ip());
        let from_tag = self.ep().token();
        (self.report)(Progress::SignalSent {
            how: "MESSAGE",
            to: target.to_string(),
        });
        // The latest challenge of each kind and its nonce count: every request answers both
        // afresh (RFC 7616 §3.4: a new nc per request, so neither the PBX nor the gate sees a
        // replayed count).
        let mut pbx_ch: Option<(digest::Challenge, u32)> = None;
        let mut gate_ch: Option<(digest::Challenge, u32)> = None;
        let end = tokio::time::Instant::now() + MESSAGE_ANSWER_WITHIN;
        for cseq in 1..=MAX_CHALLENGES + 1 {
            let mut headers = vec![];
            for (name, slot, user, password) in [
                (
                    "Proxy-Authorization",
                    &mut pbx_ch,
                    creds.pbx.as_ref().map(|(u, _)| u.as_str()),
                    creds.pbx.as_ref().map(|(_, p)| p.expose()),
                ),
                (
                    "Authorization",
                    &mut gate_ch,
                    Some(creds.admin_id.as_str()),
                    creds.gate_password.as_ref().map(|p| p.expose()),
                ),
            ] {
                if let (Some((ch, nc)), Some(user), Some(password)) =
                    (slot.as_mut(), user, password)
                {
                    *nc += 1;
                    let cnonce = self.trunk.endpoint().token();
                    headers.push((
                        name,
                        digest::authorization(
                            ch,
                            &ClientCredentials {
                                username: user,
                                password,
                            },
                            &ResponseParams {
                                method: "MESSAGE",
                                uri: target,
                                body,
                                nc: *nc,
                                cnonce: &cnonce,
                            },
                        ),
                    ));
                }
            }
            let extras = Extras {
                headers,
                body: Some(("text/plain", body)),
            };
            let id = self.ep().send_request(
                Instant::now(),
                route,
                &OutgoingRequest {
                    method: &Method::Message,
                    uri: target,
                    from,
                    from_tag: &from_tag,
                    to: target,
                    to_tag: None,
                    call_id: &call_id,
                    cseq,
                },
                &extras,
            );
            let msg = loop {
                match self.pump(None, end).await {
                    Pumped::Event(TrunkEvent::App(Event::Response { id: rid, msg }))
                        if rid == id && msg.status().is_some_and(|s| s >= 200) =>
                    {
                        break msg
                    }
                    Pumped::Event(TrunkEvent::App(Event::Timeout { id: rid })) if rid == id => {
                        // RFC 3261 §17.1.2.2 Timer F: 64·T1.
                        return Err(AdminError::MessageTimeout {
                            within_s: (64 * crate::sip::transaction::T1).as_secs(),
                        });
                    }
                    Pumped::Event(TrunkEvent::App(ev)) => self.keep_or_refuse(ev),
                    Pumped::Expired => {
                        return Err(AdminError::MessageTimeout {
                            within_s: MESSAGE_ANSWER_WITHIN.as_secs(),
                        })
                    }
                    _ => {}
                }
            };
            let status = msg.status().unwrap_or(0);
            let (header, slot, have_creds) = match status {
                407 => ("proxy-authenticate", &mut pbx_ch, creds.pbx.is_some()),
                401 => (
                    "www-authenticate",
                    &mut gate_ch,
                    creds.gate_password.is_some(),
                ),
                s if (200..300).contains(&s) => {
                    (self.report)(Progress::SignalAnswered { status: s });
                    return Ok(s);
                }
                s => {
                    (self.report)(Progress::SignalAnswered { status: s });
                    return Err(AdminError::MessageRefused { status: s });
                }
            };
            let offers: Vec<&str> = msg.headers(header).collect();
            let Some(ch) = digest::select_challenge(&offers).filter(|_| have_creds) else {
                (self.report)(Progress::SignalAnswered { status });
                return Err(AdminError::MessageRefused { status });
            };
            (self.report)(Progress::ChallengeAnswered {
                status,
                realm: ch.realm.clone(),
            });
            *slot = Some((ch, 0));
        }
        Err(AdminError::MessageRefused { status: 401 })
    }

    /// Call `target`, send `keys` (e.g. `1001#2468#*62468246*1#`) as RFC 4733 events or
    /// in-band tones once the gate answers, and end the call (the gate's BYE, or ours).
    pub async fn call_with_keys(
        &mut self,
        target: &str,
        from: &str,
        keys: &str,
        mode: KeyMode,
        creds: &SignalCredentials,
        ring_within: Duration,
    ) -> Result<(), AdminError> {
        let digits: Vec<Digit> = keys
            .chars()
            .map(Digit::from_char)
            .collect::<Option<_>>()
            .ok_or(AdminError::BadKeys)?;
        let hop = self.next_hop(target)?;
        let rtp = Arc::new(
            UdpSocket::bind(SocketAddr::new(self.local.ip(), 0))
                .await
                .map_err(|source| AdminError::Bind {
                    addr: SocketAddr::new(self.local.ip(), 0),
                    source,
                })?,
        );
        let rtp_port = rtp.local_addr().map(|a| a.port()).unwrap_or(0);
        let local = LocalMedia {
            addr: self.local.ip(),
            rtp_port,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            telephone_event: true,
            ptime_ms: 20,
            session_id: rand::random::<u64>() >> 1,
            session_version: 1,
        };
        let (auth_username, password) = creds
            .pbx
            .as_ref()
            .map(|(u, p)| (u.clone(), p.expose().to_string()))
            .unwrap_or_default();
        let cfg = CallConfig {
            target_uri: target.to_string(),
            from_uri: from.to_string(),
            contact_uri: format!("sip:{}@{}", self.contact_user, self.local),
            auth_username,
            password,
            sdp_offer: sdp::offer(&local),
            ring_timeout: ring_within,
            on_diversion: OnDiversion::Flag,
        };
        let call_id = format!("{}@{}", self.ep().token(), self.local.ip());
        let from_tag = self.ep().token();
        let mut call = OutgoingCall::new(cfg, call_id, from_tag);
        call.start(
            Instant::now(),
            self.ep(),
            Route {
                addr: hop,
                conn: None,
            },
        )
        .map_err(|e| AdminError::GateCall {
            reason: e.to_string(),
        })?;
        (self.report)(Progress::SignalSent {
            how: "call",
            to: target.to_string(),
        });
        // Up to answer (bounded by the call's ring timer and Timer B).
        let end = tokio::time::Instant::now() + ring_within + Duration::from_secs(35);
        let neg = loop {
            match self.pump(call.poll_timeout(), end).await {
                Pumped::Event(TrunkEvent::App(ev)) => {
                    if !call.handle_event(Instant::now(), self.ep(), &ev) {
                        self.keep_or_refuse(ev);
                    }
                }
                Pumped::Event(_) => {}
                Pumped::Tick => call.handle_timeout(Instant::now(), self.ep()),
                Pumped::Expired => {
                    call.hangup(Instant::now(), self.ep());
                    self.flush().await;
                    return Err(AdminError::GateCall {
                        reason: "no answer".into(),
                    });
                }
            }
            // Every event the turn produced (a 100 and the 200 may come together).
            let mut answered = None;
            while let Some(ev) = call.poll_event() {
                match ev {
                    CallEvent::Answered { remote_sdp } => answered = Some(remote_sdp),
                    CallEvent::Failed { reason } => {
                        return Err(AdminError::GateCall {
                            reason: match reason {
                                FailReason::Status(c) | FailReason::Redirect(c) => {
                                    format!("answered {c}")
                                }
                                FailReason::NoAnswer => "no answer".into(),
                                FailReason::Timeout => "no response (timeout)".into(),
                                FailReason::Diverted => "diverted".into(),
                            },
                        })
                    }
                    CallEvent::Ended { .. } => {
                        return Err(AdminError::GateCall {
                            reason: "ended before answer".into(),
                        })
                    }
                    _ => {}
                }
            }
            if let Some(remote_sdp) = answered {
                break sdp::accept_answer(&local, &remote_sdp).map_err(|e| {
                    AdminError::GateCall {
                        reason: format!("the gate's SDP answer is unusable: {e}"),
                    }
                })?;
            }
        };
        self.flush().await;
        (self.report)(Progress::GateAnswered);
        let mode = if mode == KeyMode::Rfc4733 && neg.telephone_event_pt.is_none() {
            KeyMode::InBand
        } else {
            mode
        };
        let (done_tx, mut done_rx) = oneshot::channel();
        let media = tokio::spawn(send_keys(rtp, neg.clone(), digits.clone(), mode, done_tx));
        // Keep SIP running while the keys play; then wait for the gate's BYE.
        let mut keys_done = false;
        let mut hangup_at: Option<tokio::time::Instant> = None;
        let end = tokio::time::Instant::now() + Duration::from_secs(120);
        let mut by_gate = true;
        while !call.is_finished() {
            let wake = hangup_at.map(|t| t.into_std());
            let wake = match (wake, call.poll_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                r = &mut done_rx, if !keys_done => {
                    keys_done = true;
                    if r.is_ok() {
                        (self.report)(Progress::KeysSent {
                            count: digits.len(),
                            how: if mode == KeyMode::Rfc4733 { "RFC 4733" } else { "in-band" },
                        });
                    }
                    hangup_at = Some(tokio::time::Instant::now() + GATE_HANGUP_WITHIN);
                }
                p = self.pump(wake, end) => match p {
                    Pumped::Event(TrunkEvent::App(ev)) => {
                        if !call.handle_event(Instant::now(), self.ep(), &ev) {
                            self.keep_or_refuse(ev);
                        }
                    }
                    Pumped::Event(_) => {}
                    Pumped::Tick => {
                        let now = Instant::now();
                        if hangup_at.is_some_and(|t| t.into_std() <= now) {
                            hangup_at = None;
                            by_gate = false;
                            call.hangup(now, self.ep());
                        }
                        call.handle_timeout(now, self.ep());
                    }
                    Pumped::Expired => break,
                }
            }
            while call.poll_event().is_some() {}
        }
        media.abort();
        self.flush().await;
        (self.report)(Progress::GateCallEnded { by_gate });
        Ok(())
    }

    /// Wait for the gate's callback and answer it; other calls are refused 403. `Err` with
    /// [`AdminError::NoCallback`] when none comes within `within`.
    pub async fn wait_callback(
        &mut self,
        filter: &CallbackFilter,
        within: Duration,
        codecs: &[Codec],
    ) -> Result<Callback, AdminError> {
        let end = tokio::time::Instant::now() + within;
        loop {
            let ev = match self.stash.pop_front() {
                Some(ev) => ev,
                None => match self.pump(None, end).await {
                    Pumped::Event(TrunkEvent::App(ev)) => ev,
                    Pumped::Event(_) | Pumped::Tick => continue,
                    Pumped::Expired => {
                        return Err(AdminError::NoCallback {
                            wait_s: within.as_secs(),
                            hint: NO_CALLBACK_HINT.into(),
                        })
                    }
                },
            };
            let Event::Request {
                id,
                route,
                info,
                msg,
            } = ev
            else {
                continue;
            };
            if info.to_tag.is_some() {
                // A leftover of an ended dialog (RFC 3261 §12.2.2).
                self.respond(id, &msg, 481, "Call/Transaction Does Not Exist");
                continue;
            }
            if info.method != Method::Invite {
                self.refuse(Event::Request {
                    id,
                    route,
                    info,
                    msg,
                });
                continue;
            }
            let from = msg
                .header("from")
                .and_then(parse_name_addr)
                .map(|n| n.uri)
                .unwrap_or_default();
            if !filter.admits(&from, route.addr) {
                self.respond(id, &msg, 403, "Forbidden");
                (self.report)(Progress::CallbackRejected {
                    from,
                    source: route.addr,
                    status: 403,
                });
                self.flush().await;
                continue;
            }
            (self.report)(Progress::CallbackRinging {
                from: from.clone(),
                source: route.addr,
            });
            let bind = SocketAddr::new(self.local.ip(), 0);
            let rtp = Arc::new(
                UdpSocket::bind(bind)
                    .await
                    .map_err(|source| AdminError::Bind { addr: bind, source })?,
            );
            let rtp_port = rtp.local_addr().map(|a| a.port()).unwrap_or(0);
            let local = LocalMedia {
                addr: self.local.ip(),
                rtp_port,
                codecs: codecs.to_vec(),
                telephone_event: false,
                ptime_ms: 20,
                session_id: rand::random::<u64>() >> 1,
                session_version: 1,
            };
            let call = IncomingCall::accept(Instant::now(), self.ep(), id, route, &msg, &local)
                .map_err(|e| AdminError::Answer {
                    reason: e.to_string(),
                });
            self.flush().await;
            let call = call?;
            let media = call.media().cloned().ok_or_else(|| AdminError::Answer {
                reason: "no media agreed".into(),
            })?;
            (self.report)(Progress::CallbackAnswered {
                rtp_port,
                remote: media.remote_addr,
                codec: if media.codec == Codec::Pcma {
                    "PCMA"
                } else {
                    "PCMU"
                },
            });
            return Ok(Callback {
                call,
                rtp,
                media,
                from,
                source: route.addr,
            });
        }
    }

    /// Keep the callback's dialog running in a task (BYE, retransmissions, refreshes; other
    /// calls get 486) until it ends or [`ActiveCall::finish`] is called.
    pub fn keep_call(self, call: IncomingCall) -> ActiveCall {
        let (ended_tx, ended_rx) = oneshot::channel();
        let (hangup_tx, hangup_rx) = oneshot::channel();
        let task = tokio::spawn(keep(self, call, ended_tx, hangup_rx));
        ActiveCall {
            ended: ended_rx,
            hangup: Some(hangup_tx),
            task,
        }
    }

    fn ep(&mut self) -> &mut Endpoint {
        self.trunk.endpoint()
    }

    /// Where an out-of-dialog request to `uri` goes: the PBX when registered, else the URI's
    /// own address (an IP literal; no DNS here).
    fn next_hop(&self, uri: &str) -> Result<SocketAddr, AdminError> {
        self.outbound
            .or_else(|| crate::sip::call::uri_socket_addr(uri))
            .ok_or_else(|| AdminError::GateCall {
                reason: format!("{uri} names no IP address and no PBX is configured"),
            })
    }

    fn respond(
        &mut self,
        id: crate::sip::transaction::ServerTxnId,
        msg: &Message,
        code: u16,
        reason: &str,
    ) {
        self.ep()
            .respond(Instant::now(), id, msg, code, reason, &Extras::default());
    }

    /// An initial INVITE is kept for [`AdminUa::wait_callback`]; other requests are refused.
    fn keep_or_refuse(&mut self, ev: Event) {
        if let Event::Request { info, .. } = &ev {
            if info.method == Method::Invite && info.to_tag.is_none() && self.stash.len() < 4 {
                self.stash.push_back(ev);
                return;
            }
        }
        self.refuse(ev);
    }

    /// Requests outside what we are doing get 486 (INVITE) or 403.
    fn refuse(&mut self, ev: Event) {
        if let Event::Request { id, info, msg, .. } = ev {
            if info.method == Method::Invite {
                self.respond(id, &msg, 486, "Busy Here");
            } else {
                self.respond(id, &msg, 403, "Forbidden");
            }
        }
    }

    async fn flush(&mut self) {
        while let Some(t) = self.trunk.poll_transmit() {
            self.note(&t.bytes, true, t.route.addr);
            let _ = self.sock.send_to(&t.bytes, t.route.addr).await;
        }
    }

    fn note(&self, data: &[u8], outgoing: bool, peer: SocketAddr) {
        let Ok(m) = parse_datagram(data, &Limits::default()) else {
            return;
        };
        let start_line =
            String::from_utf8_lossy(data.split(|b| *b == b'\r').next().unwrap_or(&[])).into_owned();
        (self.report)(Progress::Sip {
            outgoing,
            peer,
            start_line,
            cseq: m.header("cseq").unwrap_or("").to_string(),
        });
    }

    /// One turn: send what is queued, hand out a queued event, or wait for a datagram or a
    /// timer (the trunk's, or `wake` for the caller's dialog) until `end`.
    async fn pump(&mut self, wake: Option<Instant>, end: tokio::time::Instant) -> Pumped {
        loop {
            self.flush().await;
            if let Some(ev) = self.trunk.poll_event() {
                if let TrunkEvent::Registration(RegEvent::Registered { expires_s }) = &ev {
                    if !self.registered {
                        self.registered = true;
                        (self.report)(Progress::Registered {
                            aor: self.aor.clone().unwrap_or_default(),
                            expires_s: *expires_s,
                        });
                    }
                }
                return Pumped::Event(ev);
            }
            let next = [self.trunk.poll_timeout(), wake]
                .into_iter()
                .flatten()
                .min()
                .map(tokio::time::Instant::from_std)
                .map_or(end, |t| t.min(end));
            let sock = self.sock.clone();
            tokio::select! {
                r = sock.recv_from(&mut self.buf) => {
                    if let Ok((n, src)) = r {
                        let data = self.buf.get(..n).unwrap_or(&[]).to_vec();
                        self.note(&data, false, src);
                        self.trunk.handle_datagram(Instant::now(), src, &data);
                    }
                }
                _ = tokio::time::sleep_until(next) => {
                    if tokio::time::Instant::now() >= end {
                        return Pumped::Expired;
                    }
                    self.trunk.handle_timeout(Instant::now());
                    return Pumped::Tick;
                }
            }
        }
    }
}

/// The answered callback's dialog, running in its own task.
pub struct ActiveCall {
    ended: oneshot::Receiver<bool>,
    hangup: Option<oneshot::Sender<()>>,
    task: JoinHandle<AdminUa>,
}

impl ActiveCall {
    /// Resolves when the dialog ends: `true` when the gate hung up.
    pub async fn ended(&mut self) -> bool {
        (&mut self.ended).await.unwrap_or(false)
    }

    /// Hang up (if not over yet) and get the user agent back, within `within`.
    pub async fn finish(mut self, within: Duration) -> Option<AdminUa> {
        if let Some(h) = self.hangup.take() {
            let _ = h.send(());
        }
        match tokio::time::timeout(within, &mut self.task).await {
            Ok(Ok(ua)) => Some(ua),
            _ => {
                self.task.abort();
                None
            }
        }
    }
}

async fn keep(
    mut ua: AdminUa,
    mut call: IncomingCall,
    ended: oneshot::Sender<bool>,
    mut hangup: oneshot::Receiver<()>,
) -> AdminUa {
    let mut ended = Some(ended);
    let mut asked = false;
    let far_future = tokio::time::Instant::now() + Duration::from_secs(86_400);
    loop {
        tokio::select! {
            r = &mut hangup, if !asked => {
                asked = true;
                // Asked to, or the owner dropped its handle: either way the call ends.
                let _ = r;
                call.hangup(Instant::now(), ua.ep());
            }
            p = ua.pump(call.poll_timeout(), far_future) => match p {
                Pumped::Event(TrunkEvent::App(ev)) => {
                    if !call.handle_event(Instant::now(), ua.ep(), &ev) {
                        ua.refuse(ev);
                    }
                }
                Pumped::Event(_) | Pumped::Expired => {}
                Pumped::Tick => call.handle_timeout(Instant::now(), ua.ep()),
            }
        }
        while let Some(e) = call.poll_event() {
            match e {
                IncomingEvent::Ended { by_remote } => {
                    if let Some(t) = ended.take() {
                        let _ = t.send(by_remote);
                    }
                }
                IncomingEvent::Failed { .. } => {
                    if let Some(t) = ended.take() {
                        let _ = t.send(false);
                    }
                }
                _ => {}
            }
        }
        if call.is_finished() {
            ua.flush().await;
            return ua;
        }
    }
}

/// Send 20 ms G.711 frames to the gate: silence, then each key as RFC 4733 events or as
/// in-band tones; reports on `done` when the last key has gone out. Keeps sending silence after
/// that (the gate's in-band detector and symmetric RTP expect a live stream) until aborted.
async fn send_keys(
    sock: Arc<UdpSocket>,
    neg: NegotiatedMedia,
    digits: Vec<Digit>,
    mode: KeyMode,
    done: oneshot::Sender<()>,
) {
    let law = if neg.codec == Codec::Pcma {
        Law::Alaw
    } else {
        Law::Ulaw
    };
    let mut stream = RtpSendStream::new(
        Ssrc(rand::random()),
        neg.payload_type,
        rand::random(),
        rand::random(),
    );
    let lead_frames = (FIRST_KEY_AFTER.as_millis() / 20) as u64;
    let per_key_samples = u64::from((KEY_MS + GAP_MS) * 8);
    let key_cfg = SenderConfig {
        duration_samples: KEY_MS * 8,
        ..SenderConfig::default()
    };
    let mut tones: Option<ToneSequence> = None;
    // RFC 4733: (key-down sample, RTP timestamp at key-down, its packets).
    let mut events: VecDeque<(u64, u32, VecDeque<EventPacket>)> = VecDeque::new();
    let mut keys_left = digits.len();
    let mut next_key = 0usize;
    let mut done = Some(done);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut pcm = [0i16; FRAME];
    let mut frame = [0u8; FRAME];
    let mut sent_frames: u64 = 0;
    let mut pkt = Vec::with_capacity(12 + FRAME);
    loop {
        tick.tick().await;
        let t = sent_frames * FRAME as u64;
        if sent_frames == lead_frames {
            match mode {
                KeyMode::InBand => {
                    tones = Some(dtmf_sequence(
                        &digits,
                        DtmfToneSpec {
                            low_level_dbm0: INBAND_LEVEL_DBM0,
                            on_ms: KEY_MS,
                            off_ms: GAP_MS,
                            ..DtmfToneSpec::default()
                        },
                    ))
                }
                KeyMode::Rfc4733 => {}
            }
        }
        // Schedule RFC 4733 presses as their key-down time comes.
        if mode == KeyMode::Rfc4733 && sent_frames >= lead_frames {
            let start = lead_frames * FRAME as u64;
            while let Some(d) = digits.get(next_key) {
                let down = start + next_key as u64 * per_key_samples;
                if down > t {
                    break;
                }
                let ts = stream.timestamp();
                events.push_back((down, ts, EventSender::new(*d, ts, key_cfg).collect()));
                next_key += 1;
            }
        }
        pcm.fill(0);
        if let Some(s) = tones.as_mut() {
            if s.fill(&mut pcm) < FRAME {
                tones = None;
                keys_left = 0;
            }
        }
        for (o, s) in frame.iter_mut().zip(pcm.iter()) {
            *o = law.encode(*s);
        }
        pkt.clear();
        if stream
            .audio_header(FRAME as u32)
            .write(&frame, &mut pkt)
            .is_ok()
        {
            let _ = sock.send_to(&pkt, neg.remote_addr).await;
        }
        sent_frames += 1;
        // RFC 4733 §2.5.1: packets of each press as their send time comes.
        let now_samples = sent_frames * FRAME as u64;
        if let Some(pt) = neg.telephone_event_pt {
            for (down, ts, packets) in events.iter_mut() {
                while packets
                    .front()
                    .is_some_and(|p| *down + p.send_at_samples < now_samples)
                {
                    if let Some(p) = packets.pop_front() {
                        pkt.clear();
                        let h = stream.other_header(pt, p.marker, *ts);
                        if h.write(&p.event.to_bytes(), &mut pkt).is_ok() {
                            let _ = sock.send_to(&pkt, neg.remote_addr).await;
                        }
                    }
                }
            }
            let before = events.len();
            events.retain(|(_, _, p)| !p.is_empty());
            if mode == KeyMode::Rfc4733 {
                keys_left = keys_left.saturating_sub(before - events.len());
            }
        }
        if keys_left == 0 {
            if let Some(d) = done.take() {
                let _ = d.send(());
            }
        }
    }
}

/// Start the answering modem on the callback's RTP (the administrator's end answers: V.25
/// answer tone first, then the modulation's training; V.22bis §6.3.1).
pub fn start_modem(
    cb: &Callback,
    modem: LineModem,
    max_rate: Rate,
) -> Result<ModemLine, AdminError> {
    modem_media::spawn(
        cb.rtp.clone(),
        LineParams {
            remote: cb.media.remote_addr,
            law: cb.law(),
            payload_type: cb.media.payload_type,
            modem,
            role: Role::Answerer,
            max_rate,
            tx_level_dbm0: -13.0,
            jitter: Duration::from_millis(60),
            // A gate whose RTP stops has gone: the session ends as on carrier loss.
            rtp_timeout: Some(RTP_TIMEOUT),
        },
    )
    .map_err(|e| AdminError::Answer {
        reason: e.to_string(),
    })
}

/// Wait for the modems to train; returns the rate. Data before CONNECT is dropped (line noise).
pub async fn wait_connect(line: &mut ModemLine, within: Duration) -> Result<u32, AdminError> {
    let end = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(end, line.events.recv()).await {
            Ok(Some(LineEvent::Connected { rate_bps })) => return Ok(rate_bps),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                return Err(AdminError::Training {
                    within_s: within.as_secs(),
                })
            }
        }
    }
}

/// The name a CONNECT line shows for `modem` at `rate_bps`.
pub fn modulation_name(modem: LineModem, rate_bps: u32) -> &'static str {
    match (modem, rate_bps) {
        (LineModem::V21, _) => "V.21",
        (LineModem::Bell103, _) => "Bell 103",
        (_, 2400) => "V.22bis",
        _ => "V.22",
    }
}

/// The user part of a SIP URI (`sip:user@host` → `user`).
fn uri_user(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let at = rest.find('@')?;
    rest.get(..at).map(|u| u.split(';').next().unwrap_or(u))
}

/// Two URIs equal up to their parameters (`;transport=udp`) and the scheme's case.
fn uri_eq_ignoring_params(a: &str, b: &str) -> bool {
    let base = |u: &str| u.split(';').next().unwrap_or(u).trim().to_ascii_lowercase();
    base(a) == base(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn callback_filter_admits_only_the_gate_trunk_user_and_source() {
        let f = CallbackFilter {
            from: Some("gate-out".into()),
            source: Some(addr("127.0.0.1:0")),
        };
        assert!(f.admits("sip:gate-out@127.0.0.1", addr("127.0.0.1:5060")));
        assert!(!f.admits("sip:prankster@127.0.0.1", addr("127.0.0.1:5060")));
        assert!(!f.admits("sip:gate-out@127.0.0.1", addr("127.0.0.2:5060")));
        let exact = CallbackFilter {
            from: Some("sip:gate-out@pbx.example".into()),
            source: Some(addr("127.0.0.1:5060")),
        };
        assert!(exact.admits(
            "SIP:gate-out@pbx.example;user=phone",
            addr("127.0.0.1:5060")
        ));
        assert!(!exact.admits("sip:gate-out@other.example", addr("127.0.0.1:5060")));
        assert!(!exact.admits("sip:gate-out@pbx.example", addr("127.0.0.1:5061")));
    }

    /// Run [`send_keys`] towards a local socket and decode what arrives both ways.
    async fn keys_heard(mode: KeyMode) -> (String, String) {
        use crate::media::inband::{InbandConfig, InbandDetector};
        use crate::media::rfc4733::Receiver;
        use crate::media::rtp::{self, Datagram};
        let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let tx = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let neg = NegotiatedMedia {
            remote_addr: rx.local_addr().unwrap(),
            codec: Codec::Pcmu,
            payload_type: 0,
            telephone_event_pt: Some(101),
            ptime_ms: 20,
            direction: crate::sdp::Direction::SendRecv,
            on_hold: false,
        };
        let keys: Vec<Digit> = "1001#9*".chars().filter_map(Digit::from_char).collect();
        let (done_tx, mut done_rx) = oneshot::channel();
        let task = tokio::spawn(send_keys(tx, neg, keys, mode, done_tx));
        let mut events = Receiver::default();
        let mut inband = InbandDetector::new(InbandConfig::default()).unwrap();
        let (mut by_event, mut by_tone) = (String::new(), String::new());
        let mut buf = [0u8; 2048];
        let mut done_at: Option<tokio::time::Instant> = None;
        let end = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if done_at.is_none() && done_rx.try_recv().is_ok() {
                done_at = Some(tokio::time::Instant::now() + Duration::from_millis(300));
            }
            let stop = done_at.unwrap_or(end).min(end);
            let Ok(Ok((n, _))) = tokio::time::timeout_at(stop, rx.recv_from(&mut buf)).await else {
                break;
            };
            let now = Instant::now();
            if let Ok(Datagram::Rtp(pkt)) = rtp::parse(&buf[..n]) {
                if pkt.payload_type == 101 {
                    let _ = events.handle_packet(now, pkt.marker, pkt.timestamp, pkt.payload);
                } else {
                    let pcm: Vec<i16> = pkt.payload.iter().map(|b| Law::Ulaw.decode(*b)).collect();
                    inband.push(&pcm);
                }
            }
            while let Some(k) = events.poll_event() {
                by_event.push(k.digit.as_char());
            }
            while let Some(e) = inband.poll_event() {
                by_tone.push(e.digit);
            }
        }
        task.abort();
        (by_event, by_tone)
    }

    #[tokio::test]
    async fn keys_go_out_as_rfc4733_events_once_each_and_no_tones() {
        let (events, tones) = keys_heard(KeyMode::Rfc4733).await;
        assert_eq!(events, "1001#9*");
        assert_eq!(tones, "", "silence under the events");
    }

    #[tokio::test]
    async fn keys_go_out_as_inband_tones_a_q24_detector_reads() {
        let (events, tones) = keys_heard(KeyMode::InBand).await;
        assert_eq!(tones, "1001#9*");
        assert_eq!(events, "");
    }

    #[test]
    fn uri_user_reads_the_user_part() {
        assert_eq!(uri_user("sip:gate-out@127.0.0.1:5060"), Some("gate-out"));
        assert_eq!(uri_user("sips:1001;x=y@h"), Some("1001"));
        assert_eq!(uri_user("sip:127.0.0.1"), None);
        assert_eq!(uri_user("tel:+1"), None);
    }
}
