//! Calls to the user and admin trunks (issue 4 flow 2): answer, prompt with the dialplan's WAV
//! prompts or tone cues ([`PromptSet`]), read ID `#`, PIN `#` and the DTMF start signal
//! through the pure [`CallFlow`], hand the attempt to the gate actor, play the same cue
//! whatever the decision, and hang up once it has played. The callback, if allowed, follows
//! on the originate trunk after `callback.delay_ms`. A call on which no RTP arrives for
//! `media.rtp_timeout_s` is hung up (issue 3 point 2).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::gate::decide::Decision;
use crate::gate::signal::{Action, CallFlow, FlowConfig};
use crate::media::g711::Law;
use crate::media::inband::InbandConfig;
use crate::runtime::call_media::{self, CallMedia, MediaCmd, MediaEvent, MediaParams};
use crate::runtime::gate::DtmfRequest;
use crate::runtime::prompts::{PromptSet, Sound};
use crate::sdp::{Codec, LocalMedia};
use crate::sip::endpoint::{Endpoint, Event, TrunkKind};
use crate::sip::incall::{IncomingCall, IncomingEvent};
use crate::sip::message::Message;
use crate::sip::transaction::{Route, ServerTxnId};

/// Margin after the last sound's computed end before the BYE (the peer's jitter buffer).
const PLAYOUT_MARGIN: Duration = Duration::from_millis(300);
/// Longest wait for queued sounds to play out before the BYE.
const MAX_PLAYOUT_WAIT: Duration = Duration::from_secs(20);

/// Most simultaneous inbound maintenance calls per trunk.
const MAX_CALLS: usize = 16;

/// Keys and RTP timeouts from the calls' media, tagged with the call's key.
pub type KeyReceiver = mpsc::Receiver<(u64, MediaEvent)>;
/// Gate decisions, tagged with the call's key.
pub type DecisionReceiver = mpsc::Receiver<(u64, Decision)>;

/// Settings for inbound calls on one trunk.
#[derive(Clone)]
pub struct IncomingSettings {
    pub kind: TrunkKind,
    pub rtp_ip: IpAddr,
    /// The address put in the SDP `c=` line (the trunk's `advertise`).
    pub sdp_ip: IpAddr,
    pub rtp_ports: (u16, u16),
    pub flow: FlowConfig,
    pub inband: InbandConfig,
    pub gate: mpsc::Sender<DtmfRequest>,
    /// The dialplan's prompts, shared by every call.
    pub prompts: Arc<PromptSet>,
    /// `media.rtp_timeout_s`.
    pub rtp_timeout: Duration,
}

struct InCall {
    key: u64,
    call: IncomingCall,
    media: Option<CallMedia>,
    flow: CallFlow,
    src: SocketAddr,
    tcp: bool,
    waiting: bool,
    /// Hang up once the goodbye cue has played.
    hangup_at: Option<Instant>,
    /// When what was asked of the media task has played out.
    playing_until: Instant,
    /// Tell the flow then that its prompt has played (the first-digit wait starts there).
    prompt_done_at: Option<Instant>,
}

/// Inbound maintenance calls on one trunk.
pub struct IncomingCalls {
    settings: IncomingSettings,
    calls: Vec<InCall>,
    next_key: u64,
    digits_tx: mpsc::Sender<(u64, MediaEvent)>,
    digits_rx: Option<mpsc::Receiver<(u64, MediaEvent)>>,
    decisions_tx: mpsc::Sender<(u64, Decision)>,
    decisions_rx: Option<mpsc::Receiver<(u64, Decision)>>,
}

impl IncomingCalls {
    pub fn new(settings: IncomingSettings) -> Self {
        let (digits_tx, digits_rx) = mpsc::channel(256);
        let (decisions_tx, decisions_rx) = mpsc::channel(64);
        IncomingCalls {
            settings,
            calls: Vec::new(),
            next_key: 1,
            digits_tx,
            digits_rx: Some(digits_rx),
            decisions_tx,
            decisions_rx: Some(decisions_rx),
        }
    }

    /// The receivers the runtime waits on: keys from the calls' media, gate decisions.
    pub fn take_receivers(&mut self) -> Option<(KeyReceiver, DecisionReceiver)> {
        Some((self.digits_rx.take()?, self.decisions_rx.take()?))
    }

    /// A new INVITE handed up by the endpoint: answer it and start the flow.
    pub async fn invite(
        &mut self,
        now: Instant,
        ep: &mut Endpoint,
        id: ServerTxnId,
        route: Route,
        msg: &Message,
    ) {
        if self.calls.len() >= MAX_CALLS {
            let extras = crate::sip::build::Extras {
                headers: vec![("Retry-After", "30".to_string())],
                body: None,
            };
            ep.respond(now, id, msg, 486, "Busy Here", &extras);
            return;
        }
        let s = &self.settings;
        let Ok((socket, port)) = crate::runtime::callback::bind_rtp(s.rtp_ip, s.rtp_ports).await
        else {
            warn!("no RTP port free for an inbound call");
            ep.respond(
                now,
                id,
                msg,
                503,
                "Service Unavailable",
                &Default::default(),
            );
            return;
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
        let call = match IncomingCall::accept(now, ep, id, route, msg, &local) {
            Ok(c) => c,
            Err(e) => {
                info!(error = %e, "inbound call refused");
                return;
            }
        };
        let key = self.next_key;
        self.next_key += 1;
        let media = call.media().map(|m| {
            call_media::spawn(
                Arc::new(socket),
                MediaParams {
                    remote: m.remote_addr,
                    law: match m.codec {
                        Codec::Pcma => Law::Alaw,
                        _ => Law::Ulaw,
                    },
                    payload_type: m.payload_type,
                    telephone_event_pt: m.telephone_event_pt,
                    inband: self.settings.inband,
                    rtp_timeout: self.settings.rtp_timeout,
                },
                key,
                self.digits_tx.clone(),
            )
        });
        info!(call_id = call.call_id(), src = %route.addr, "maintenance call answered");
        let mut c = InCall {
            key,
            call,
            media,
            flow: CallFlow::new(self.settings.flow.clone(), now),
            src: route.addr,
            tcp: route.conn.is_some(),
            waiting: false,
            hangup_at: None,
            playing_until: now,
            prompt_done_at: None,
        };
        if let Some(welcome) = self.settings.prompts.welcome() {
            play(&mut c, now, welcome);
        }
        self.run_actions(now, ep, &mut c);
        self.calls.push(c);
    }

    /// Offer an endpoint event to the calls.
    pub fn handle_event(&mut self, now: Instant, ep: &mut Endpoint, ev: &Event) -> bool {
        let mut taken = false;
        for c in &mut self.calls {
            if c.call.handle_event(now, ep, ev) {
                taken = true;
                break;
            }
        }
        if taken {
            self.after(now, ep);
        }
        taken
    }

    /// A key or an RTP timeout from a call's media.
    pub fn media_event(&mut self, now: Instant, ep: &mut Endpoint, key: u64, ev: MediaEvent) {
        if let Some(i) = self.calls.iter().position(|c| c.key == key) {
            let mut c = self.calls.swap_remove(i);
            match ev {
                MediaEvent::Digit(d) => {
                    c.flow.handle_digit(now, d);
                    self.run_actions(now, ep, &mut c);
                }
                MediaEvent::RtpTimeout => {
                    warn!(
                        call_id = c.call.call_id(),
                        timeout_s = self.settings.rtp_timeout.as_secs(),
                        "no RTP on the maintenance call: hanging up"
                    );
                    c.hangup_at = None;
                    c.call.hangup(now, ep);
                }
            }
            self.calls.push(c);
        }
        self.after(now, ep);
    }

    /// The gate decided on a call's attempt.
    pub fn decided(&mut self, now: Instant, ep: &mut Endpoint, key: u64, d: Decision) {
        if let Some(i) = self.calls.iter().position(|c| c.key == key) {
            let mut c = self.calls.swap_remove(i);
            c.waiting = false;
            c.flow.decided(now, &d);
            self.run_actions(now, ep, &mut c);
            self.calls.push(c);
        }
        self.after(now, ep);
    }

    /// Timers.
    pub fn handle_timeout(&mut self, now: Instant, ep: &mut Endpoint) {
        let mut calls = std::mem::take(&mut self.calls);
        for c in &mut calls {
            if c.hangup_at.is_some_and(|t| t <= now) {
                c.hangup_at = None;
                c.call.hangup(now, ep);
            }
            c.call.handle_timeout(now, ep);
            if c.prompt_done_at.is_some_and(|t| t <= now) {
                c.prompt_done_at = None;
                c.flow.prompt_played(now);
            }
            if c.flow.poll_timeout().is_some_and(|t| t <= now) {
                c.flow.handle_timeout(now);
            }
            self.run_actions(now, ep, c);
        }
        self.calls = calls;
        self.after(now, ep);
    }

    /// Earliest deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.calls
            .iter()
            .flat_map(|c| {
                [
                    c.call.poll_timeout(),
                    c.flow.poll_timeout(),
                    c.hangup_at,
                    c.prompt_done_at,
                ]
            })
            .flatten()
            .min()
    }

    /// Whether no call is in progress.
    pub fn is_idle(&self) -> bool {
        self.calls.is_empty()
    }

    /// Hang up every call (shutdown).
    pub fn hangup_all(&mut self, now: Instant, ep: &mut Endpoint) {
        for c in &mut self.calls {
            c.call.hangup(now, ep);
        }
    }

    fn run_actions(&self, now: Instant, ep: &mut Endpoint, c: &mut InCall) {
        while let Some(a) = c.flow.poll_action() {
            match a {
                Action::PlayCue(cue) => play(c, now, self.settings.prompts.sound(cue)),
                Action::Submit(attempt) => {
                    let (tx, rx) = oneshot::channel();
                    let req = DtmfRequest {
                        trunk: self.settings.kind,
                        src: c.src,
                        tcp: c.tcp,
                        attempt,
                        reply: tx,
                    };
                    if self.settings.gate.try_send(req).is_ok() {
                        c.waiting = true;
                        let key = c.key;
                        let out = self.decisions_tx.clone();
                        tokio::spawn(async move {
                            if let Ok(d) = rx.await {
                                let _ = out.send((key, d)).await;
                            }
                        });
                    } else {
                        warn!("gate busy: inbound call hung up");
                        c.call.hangup(now, ep);
                    }
                }
                // Let the goodbye cue be heard before the BYE.
                Action::Hangup => {
                    let played = c.playing_until.max(now) + PLAYOUT_MARGIN;
                    c.hangup_at = Some(played.min(now + MAX_PLAYOUT_WAIT));
                }
            }
        }
    }

    /// Drain call events (INFO digits, ends) and forget finished calls.
    fn after(&mut self, now: Instant, ep: &mut Endpoint) {
        let mut calls = std::mem::take(&mut self.calls);
        for c in &mut calls {
            while let Some(ev) = c.call.poll_event() {
                match ev {
                    IncomingEvent::Dtmf { digit, .. } => {
                        if let Some(m) = &c.media {
                            let _ = m.cmds.try_send(MediaCmd::InfoDigit(digit));
                        }
                    }
                    IncomingEvent::Ended { by_remote } => {
                        info!(
                            call_id = c.call.call_id(),
                            by_remote, "maintenance call ended"
                        );
                    }
                    IncomingEvent::Failed { reason } => {
                        info!(call_id = c.call.call_id(), reason = ?reason, "maintenance call failed");
                    }
                    IncomingEvent::Confirmed => {}
                }
            }
            self.run_actions(now, ep, c);
        }
        calls.retain(|c| !c.call.is_finished());
        self.calls = calls;
    }
}

/// Queue `sound` on the call's media and account for its length, so the BYE waits for it.
fn play(c: &mut InCall, now: Instant, sound: Sound) {
    let Some(m) = &c.media else { return };
    let samples = u64::try_from(sound.len_samples()).unwrap_or(u64::MAX);
    if m.cmds.try_send(MediaCmd::Play(sound)).is_ok() {
        // 8000 samples per second (G.711).
        let length = Duration::from_micros(samples.saturating_mul(125));
        c.playing_until = c.playing_until.max(now) + length;
        c.prompt_done_at = Some(c.playing_until);
    }
}
