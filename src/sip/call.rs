//! The callback call: one outgoing INVITE dialog (RFC 3261 §12, §13, §15) to one number, as a
//! sans-IO UAC state machine. DESIGN.md "The flow" step 5 and issue 4 point 4 set the policy:
//! the number comes only from the dialplan ([`CallConfig::target_uri`]), digest auth answers the
//! proxy's 401/407 (RFC 3261 §22.2), 3xx is never followed, 181 or a Diversion (RFC 5806) /
//! History-Info (RFC 7044) header means the call went somewhere else (abort or flag), and the
//! far end may end the dialog with BYE but may not re-INVITE, Replace (RFC 3891) or REFER
//! (RFC 3515) it.
//!
//! Driving shape: the call talks to the originate trunk's [`Endpoint`] through `&mut Endpoint`
//! arguments, so the endpoint keeps the transactions (Timers A/B, the ACK for a non-2xx,
//! CANCEL) and the call keeps the dialog (route set, remote target, CSeq, the ACK for a 2xx).
//! The runtime feeds every endpoint event to [`OutgoingCall::handle_event`] first (it returns
//! whether the event was the call's), calls [`OutgoingCall::handle_timeout`] at
//! [`OutgoingCall::poll_timeout`], and drains [`OutgoingCall::poll_event`]. Passing the
//! endpoint in, rather than a glue type as `trunk.rs` has, keeps several attempts (one per
//! dialplan number, one after the other) on one endpoint without a second owner of it.
//!
//! No clock, socket or RNG here: `now` is passed in and random tokens (branches, cnonces) come
//! from the endpoint's seeded RNG. In-dialog requests (ACK for the 2xx, BYE) go to the first
//! Route's address when that URI holds an IP literal, otherwise to the proxy the INVITE went to:
//! the originate trunk admits datagrams from its proxy only, so a direct request to the remote
//! target could never see its answer (the proxy acts as outbound proxy, RFC 3261 §8.1.2). The
//! first Route's URI is available from [`OutgoingCall::next_hop_uri`] for a runtime that
//! resolves names.

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::sip::build::{self, Extras, RequestParts};
use crate::sip::digest::{self, ClientCredentials, ResponseParams};
use crate::sip::endpoint::{Endpoint, Event, OutgoingRequest};
use crate::sip::message::{Message, Method};
use crate::sip::transaction::{ClientTxnId, Route, ServerTxnId, T1};
use crate::sip::validate::{parse_name_addr, split_list, RequestInfo};

/// Methods we name in Allow on the callback dialog.
const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, INFO";

/// Delay between the ACK for a 2xx and a BYE we owe right away (abort on diversion, CANCEL
/// crossing the 2xx): enough for the ACK to leave a proxy's queue first.
const BYE_AFTER_ACK: Duration = Duration::from_millis(200);

/// Challenges answered per request before giving up (a wrong password is not retried forever).
const MAX_AUTH_TRIES: u32 = 2;

/// Longest URI we put on a request line.
const MAX_URI_LEN: usize = 512;

/// Extra answered branches of a forked INVITE we ACK and BYE; more are ignored (bounded state).
const MAX_FORKS: usize = 8;

/// What to do when the call is diverted (DESIGN.md issue 4 point 4, config `on_diversion`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDiversion {
    /// CANCEL if early, BYE if answered; the attempt fails with [`FailReason::Diverted`].
    Abort,
    /// Only report [`CallEvent::Diverted`] and carry on.
    Flag,
}

/// Settings of one callback attempt.
#[derive(Clone)]
pub struct CallConfig {
    /// Request-URI and To: from the dialplan only, never from a received request.
    pub target_uri: String,
    pub from_uri: String,
    pub contact_uri: String,
    pub auth_username: String,
    pub password: String,
    pub sdp_offer: Vec<u8>,
    /// From sending the INVITE to giving up with CANCEL.
    pub ring_timeout: Duration,
    pub on_diversion: OnDiversion,
}

impl fmt::Debug for CallConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallConfig")
            .field("target_uri", &self.target_uri)
            .field("from_uri", &self.from_uri)
            .field("contact_uri", &self.contact_uri)
            .field("auth_username", &self.auth_username)
            .field("password", &"REDACTED")
            .field("sdp_offer_len", &self.sdp_offer.len())
            .field("ring_timeout", &self.ring_timeout)
            .field("on_diversion", &self.on_diversion)
            .finish()
    }
}

/// Why an attempt did not reach an answered call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailReason {
    /// A final 4xx/5xx/6xx (401/407 after the credentials were refused).
    Status(u16),
    /// A 3xx: redirects are never followed.
    Redirect(u16),
    /// Ring timeout: we cancelled.
    NoAnswer,
    /// No final response (Timer B) or no answer to our CANCEL/BYE.
    Timeout,
    /// Diverted with [`OnDiversion::Abort`].
    Diverted,
}

/// What the call reports. Exactly one terminal event, `Failed` or `Ended`, ends each call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallEvent {
    Trying,
    Ringing,
    /// 181, or a Diversion / History-Info header (`header` is the status line or header line).
    Diverted {
        header: String,
    },
    Answered {
        remote_sdp: Vec<u8>,
    },
    Failed {
        reason: FailReason,
    },
    Ended {
        by_remote: bool,
    },
    /// An in-dialog INFO (answered 200), e.g. DTMF relay.
    Info {
        body: Vec<u8>,
    },
}

/// API misuse by the caller (the peer's misbehaviour is never an error: it ends the call).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CallError {
    #[error("the call was already started")]
    AlreadyStarted,
    #[error("{field} {value:?} is not a sip:/sips: URI fit for a request line")]
    BadUri { field: &'static str, value: String },
    #[error("{field} {value:?} is empty or holds whitespace or control characters")]
    BadToken { field: &'static str, value: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    /// INVITE sent, no provisional yet.
    Calling,
    /// A provisional response arrived.
    Early,
    /// CANCEL asked for; waiting for the INVITE's final response.
    Cancelling,
    Confirmed,
    /// BYE sent.
    Terminating,
    Done,
}

/// A dialog from another branch of a forked INVITE, being ended.
#[derive(Debug)]
struct Fork {
    tag: Option<String>,
    ack: Option<(Route, Vec<u8>)>,
    bye: Option<ClientTxnId>,
}

/// The terminal event held back while CANCEL or BYE cleans up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Failed(FailReason),
    Ended { by_remote: bool },
}

/// One callback attempt: a UAC INVITE dialog.
#[derive(Debug)]
pub struct OutgoingCall {
    cfg: CallConfig,
    call_id: String,
    from_tag: String,
    state: State,
    /// Where the INVITE went (the originate trunk's proxy).
    proxy: Route,
    cseq: u32,
    invite_cseq: u32,
    invite: Option<ClientTxnId>,
    invite_auth: Option<(&'static str, String)>,
    invite_auth_tries: u32,
    bye: Option<ClientTxnId>,
    bye_auth_tries: u32,
    ring_deadline: Option<Instant>,
    /// RFC 3261 §9.1: after CANCEL, give the INVITE 64·T1 to end.
    cancel_deadline: Option<Instant>,
    /// A BYE that waits a moment after its ACK, so a multi-worker proxy cannot deliver it
    /// first (the far end would see a BYE for a dialog it thinks is unconfirmed).
    bye_due: Option<Instant>,
    pending: Option<Outcome>,
    diverted: bool,
    remote_tag: Option<String>,
    remote_target: Option<String>,
    /// Route set, already in request order (Record-Route reversed, RFC 3261 §12.1.2).
    route_set: Vec<String>,
    /// The ACK for the 2xx, resent for each retransmitted 2xx (RFC 3261 §13.2.2.4).
    ack: Option<(Route, Vec<u8>)>,
    /// Other branches of a forked INVITE that answered too, ACKed and BYEd.
    forks: Vec<Fork>,
    events: VecDeque<CallEvent>,
}

impl OutgoingCall {
    /// A call not yet started. `call_id` and `from_tag` come from the caller's RNG.
    pub fn new(cfg: CallConfig, call_id: String, from_tag: String) -> Self {
        OutgoingCall {
            cfg,
            call_id,
            from_tag,
            state: State::Idle,
            proxy: Route {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                conn: None,
            },
            cseq: 0,
            invite_cseq: 0,
            invite: None,
            invite_auth: None,
            invite_auth_tries: 0,
            bye: None,
            bye_auth_tries: 0,
            ring_deadline: None,
            cancel_deadline: None,
            bye_due: None,
            pending: None,
            diverted: false,
            remote_tag: None,
            remote_target: None,
            route_set: Vec::new(),
            ack: None,
            forks: Vec::new(),
            events: VecDeque::new(),
        }
    }

    /// Send the INVITE to `route` (the proxy) and start the ring timer.
    pub fn start(
        &mut self,
        now: Instant,
        ep: &mut Endpoint,
        route: Route,
    ) -> Result<(), CallError> {
        if self.state != State::Idle {
            return Err(CallError::AlreadyStarted);
        }
        check_uri("target_uri", &self.cfg.target_uri)?;
        check_uri("from_uri", &self.cfg.from_uri)?;
        check_uri("contact_uri", &self.cfg.contact_uri)?;
        check_token("call_id", &self.call_id)?;
        check_token("from_tag", &self.from_tag)?;
        self.proxy = route;
        // The originate trunk admits in-dialog requests only for dialogs it knows.
        ep.add_dialog(&self.call_id);
        self.send_invite(now, ep);
        self.state = State::Calling;
        self.ring_deadline = Some(now + self.cfg.ring_timeout);
        Ok(())
    }

    /// Offer an endpoint event; returns whether it belonged to this call.
    pub fn handle_event(&mut self, now: Instant, ep: &mut Endpoint, event: &Event) -> bool {
        match event {
            Event::Response { id, msg } if self.invite == Some(*id) => {
                self.on_invite_response(now, ep, msg);
                true
            }
            Event::Response { id, msg } if self.bye == Some(*id) => {
                self.on_bye_response(now, ep, msg);
                true
            }
            Event::Timeout { id } if self.invite == Some(*id) => {
                self.invite = None;
                if matches!(
                    self.state,
                    State::Calling | State::Early | State::Cancelling
                ) {
                    let outcome = self
                        .pending
                        .take()
                        .unwrap_or(Outcome::Failed(FailReason::Timeout));
                    self.finish(ep, outcome);
                }
                true
            }
            Event::Timeout { id } if self.bye == Some(*id) => {
                self.bye = None;
                let outcome = self
                    .pending
                    .take()
                    .unwrap_or(Outcome::Ended { by_remote: false });
                self.finish(ep, outcome);
                true
            }
            // The BYE ending a fork: nothing more to do whatever its outcome.
            Event::Response { id, .. } | Event::Timeout { id }
                if self.forks.iter().any(|f| f.bye == Some(*id)) =>
            {
                true
            }
            Event::StrayResponse { msg, .. } if self.owns(msg) => {
                self.on_stray_2xx(now, ep, msg);
                true
            }
            Event::Request { id, info, msg, .. } if info.call_id == self.call_id => {
                self.on_request(now, ep, *id, info, msg);
                true
            }
            // The originate endpoint already answered 403 (REFER, re-INVITE, Replaces).
            Event::Refused { call_id, .. } => *call_id == self.call_id,
            // ACK for a non-2xx we (or the endpoint, statelessly) sent on this Call-ID: the
            // UAC side owes nothing back (RFC 3261 §17.2.1).
            Event::Ack { msg, .. } => msg.header("call-id") == Some(self.call_id.as_str()),
            _ => false,
        }
    }

    /// Fire the call's timers due at `now` (ring timeout, CANCEL guard, deferred BYE).
    pub fn handle_timeout(&mut self, now: Instant, ep: &mut Endpoint) {
        if self.bye_due.is_some_and(|t| t <= now) {
            self.bye_due = None;
            self.send_bye(now, ep, None);
        }
        match self.state {
            State::Calling | State::Early if self.ring_deadline.is_some_and(|d| d <= now) => {
                self.ring_deadline = None;
                self.cancel(now, ep, Outcome::Failed(FailReason::NoAnswer));
            }
            State::Cancelling if self.cancel_deadline.is_some_and(|d| d <= now) => {
                // RFC 3261 §9.1: no final response 64·T1 after CANCEL: consider the INVITE
                // transaction gone.
                let outcome = self
                    .pending
                    .take()
                    .unwrap_or(Outcome::Failed(FailReason::Timeout));
                // `invite` stays: a 2xx may still come and must be ACKed and ended.
                self.finish(ep, outcome);
            }
            _ => {}
        }
    }

    /// When [`OutgoingCall::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let state_timer = match self.state {
            State::Calling | State::Early => self.ring_deadline,
            State::Cancelling => self.cancel_deadline,
            _ => None,
        };
        match (state_timer, self.bye_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Hang up: CANCEL while early, BYE once answered. Ends with `Ended { by_remote: false }`.
    pub fn hangup(&mut self, now: Instant, ep: &mut Endpoint) {
        match self.state {
            State::Idle => {
                self.state = State::Done;
                self.events.push_back(CallEvent::Ended { by_remote: false });
            }
            State::Calling | State::Early => {
                self.cancel(now, ep, Outcome::Ended { by_remote: false });
            }
            State::Confirmed => {
                self.pending = Some(Outcome::Ended { by_remote: false });
                self.send_bye(now, ep, None);
            }
            State::Cancelling | State::Terminating | State::Done => {}
        }
    }

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    /// Whether the terminal event has been queued.
    pub fn is_finished(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the call is answered and not being torn down.
    pub fn is_answered(&self) -> bool {
        self.state == State::Confirmed
    }

    /// The Call-ID of this attempt.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The far end's To tag once answered.
    pub fn remote_tag(&self) -> Option<&str> {
        self.remote_tag.as_deref()
    }

    /// URI in-dialog requests are sent towards: the first Route; `None` means the proxy the
    /// INVITE went to.
    pub fn next_hop_uri(&self) -> Option<&str> {
        self.route_set.first().map(|r| name_addr_uri(r))
    }

    fn send_invite(&mut self, now: Instant, ep: &mut Endpoint) {
        self.cseq += 1;
        self.invite_cseq = self.cseq;
        let mut headers = vec![
            ("Contact", format!("<{}>", self.cfg.contact_uri)),
            ("Allow", ALLOW.to_string()),
        ];
        if let Some((name, value)) = &self.invite_auth {
            headers.push((name, value.clone()));
        }
        let extras = Extras {
            headers,
            body: Some(("application/sdp", &self.cfg.sdp_offer)),
        };
        let id = ep.send_request(
            now,
            self.proxy,
            &OutgoingRequest {
                method: &Method::Invite,
                uri: &self.cfg.target_uri,
                from: &self.cfg.from_uri,
                from_tag: &self.from_tag,
                to: &self.cfg.target_uri,
                to_tag: None,
                call_id: &self.call_id,
                cseq: self.cseq,
            },
            &extras,
        );
        self.invite = Some(id);
    }

    fn on_invite_response(&mut self, now: Instant, ep: &mut Endpoint, msg: &Message) {
        let Some(code) = msg.status() else { return };
        if code >= 200 {
            self.invite = None;
        }
        if self.state == State::Done {
            if (200..300).contains(&code) {
                self.on_late_answer(now, ep, msg);
            }
            return;
        }
        let diversion = diversion_of(msg, code);
        if let Some(header) = &diversion {
            if !self.diverted {
                self.diverted = true;
                self.events.push_back(CallEvent::Diverted {
                    header: header.clone(),
                });
            }
        }
        let abort = diversion.is_some() && self.cfg.on_diversion == OnDiversion::Abort;
        match code {
            100..=199 => {
                if self.state == State::Calling {
                    self.state = State::Early;
                }
                match code {
                    100 => self.events.push_back(CallEvent::Trying),
                    180 | 183 => self.events.push_back(CallEvent::Ringing),
                    _ => {}
                }
                if abort && self.state == State::Early {
                    self.cancel(now, ep, Outcome::Failed(FailReason::Diverted));
                }
            }
            200..=299 => self.on_answer(now, ep, msg, abort),
            401 | 407 if self.pending.is_none() && self.state != State::Done => {
                match self.answer_challenge(ep, msg, code, "INVITE", &self.cfg.target_uri.clone()) {
                    Some(auth) if self.invite_auth_tries < MAX_AUTH_TRIES => {
                        self.invite_auth_tries += 1;
                        self.invite_auth = Some(auth);
                        self.send_invite(now, ep);
                    }
                    _ => self.finish(ep, Outcome::Failed(FailReason::Status(code))),
                }
            }
            _ => {
                // RFC 3261 §8.1.3.4 lets a UAC recurse on 3xx; issue 4 forbids it: the number
                // dialled comes from the dialplan only. The endpoint already ACKed.
                let own = if (300..400).contains(&code) {
                    FailReason::Redirect(code)
                } else {
                    FailReason::Status(code)
                };
                let outcome = self.pending.take().unwrap_or(Outcome::Failed(own));
                self.finish(ep, outcome);
            }
        }
    }

    /// A 2xx to the INVITE: the dialog is confirmed (RFC 3261 §12.1.2, §13.2.2.4).
    fn on_answer(&mut self, now: Instant, ep: &mut Endpoint, msg: &Message, abort: bool) {
        if self.state == State::Done || self.ack.is_some() {
            return;
        }
        self.take_dialog(msg);
        self.send_ack(ep);
        self.ring_deadline = None;
        self.cancel_deadline = None;
        if self.pending.is_some() {
            // CANCEL crossed the 2xx (RFC 3261 §9.1): the call is up, so end it with BYE.
            self.bye_due = Some(now + BYE_AFTER_ACK);
        } else if abort {
            self.pending = Some(Outcome::Failed(FailReason::Diverted));
            self.bye_due = Some(now + BYE_AFTER_ACK);
        } else {
            self.state = State::Confirmed;
            self.events.push_back(CallEvent::Answered {
                remote_sdp: msg.body.clone(),
            });
        }
    }

    /// A 2xx after the attempt already ended (CANCEL guard or Timer B gave up first): the
    /// far end is off-hook and retransmits until ACKed, so ACK it and BYE it at once, quietly
    /// (the terminal event was already reported).
    fn on_late_answer(&mut self, now: Instant, ep: &mut Endpoint, msg: &Message) {
        if self.ack.is_some() {
            return;
        }
        self.take_dialog(msg);
        self.send_ack(ep);
        self.send_bye(now, ep, None);
        self.state = State::Done;
    }

    /// Dialog state from a 2xx (RFC 3261 §12.1.2): remote tag, remote target, route set.
    fn take_dialog(&mut self, msg: &Message) {
        self.remote_tag = msg
            .header("to")
            .and_then(parse_name_addr)
            .and_then(|n| n.tag);
        // A 2xx without a usable Contact is broken; fall back to the dialled URI so the call
        // can still be ended. The peer's URI goes on our request line, so it is checked like
        // our own.
        self.remote_target = Some(
            msg.header("contact")
                .and_then(|v| split_list(v).first().copied().and_then(parse_name_addr))
                .map(|n| n.uri)
                .filter(|u| check_uri("contact", u).is_ok())
                .unwrap_or_else(|| self.cfg.target_uri.clone()),
        );
        let mut rr: Vec<String> = msg
            .headers("record-route")
            .flat_map(split_list)
            .filter(|s| check_uri("record-route", name_addr_uri(s)).is_ok())
            .map(str::to_string)
            .collect();
        rr.reverse();
        self.route_set = rr;
    }

    fn on_bye_response(&mut self, now: Instant, ep: &mut Endpoint, msg: &Message) {
        let Some(code) = msg.status() else { return };
        if code < 200 {
            return;
        }
        self.bye = None;
        if self.state == State::Done {
            // A late or glare BYE: the terminal event is out already.
            return;
        }
        if code == 401 || code == 407 {
            let uri = self.request_target().0;
            if self.bye_auth_tries < MAX_AUTH_TRIES {
                if let Some(auth) = self.answer_challenge(ep, msg, code, "BYE", &uri) {
                    self.bye_auth_tries += 1;
                    self.send_bye(now, ep, Some(auth));
                    return;
                }
            }
        }
        // Whatever the answer, the dialog is over for us (RFC 3261 §15.1.1).
        let outcome = self
            .pending
            .take()
            .unwrap_or(Outcome::Ended { by_remote: false });
        self.finish(ep, outcome);
    }

    fn on_stray_2xx(&mut self, now: Instant, ep: &mut Endpoint, msg: &Message) {
        if self.state == State::Done && self.ack.is_none() {
            self.on_late_answer(now, ep, msg);
            return;
        }
        let tag = msg
            .header("to")
            .and_then(parse_name_addr)
            .and_then(|n| n.tag);
        if tag.is_none() {
            return;
        }
        if tag == self.remote_tag {
            if let Some((route, bytes)) = &self.ack {
                ep.send_raw(*route, bytes.clone());
            }
            return;
        }
        match self.forks.iter().find(|f| f.tag == tag) {
            Some(fork) => {
                if let Some((route, bytes)) = &fork.ack {
                    ep.send_raw(*route, bytes.clone());
                }
            }
            None if self.ack.is_some() => self.end_fork(now, ep, msg),
            None => {}
        }
    }

    /// A 2xx from a second branch of a forked INVITE (RFC 3261 §13.2.2.4): ACK it, then end
    /// that dialog with BYE; only the first answer is the callback. The dialog fields are
    /// borrowed for the fork and restored.
    fn end_fork(&mut self, now: Instant, ep: &mut Endpoint, msg: &Message) {
        if self.forks.len() >= MAX_FORKS {
            return;
        }
        let saved = (
            self.remote_tag.take(),
            self.remote_target.take(),
            std::mem::take(&mut self.route_set),
            self.ack.take(),
            self.bye.take(),
            self.state,
            self.cseq,
        );
        self.cseq = self.invite_cseq;
        self.take_dialog(msg);
        self.send_ack(ep);
        self.send_bye(now, ep, None);
        self.forks.push(Fork {
            tag: self.remote_tag.take(),
            ack: self.ack.take(),
            bye: self.bye.take(),
        });
        (
            self.remote_tag,
            self.remote_target,
            self.route_set,
            self.ack,
            self.bye,
            self.state,
            self.cseq,
        ) = saved;
    }

    fn on_request(
        &mut self,
        now: Instant,
        ep: &mut Endpoint,
        id: ServerTxnId,
        info: &RequestInfo,
        msg: &Message,
    ) {
        let in_dialog = matches!(self.state, State::Confirmed | State::Terminating)
            && info.to_tag.as_deref() == Some(self.from_tag.as_str())
            && info.from_tag.is_some()
            && info.from_tag == self.remote_tag;
        let none = Extras::default();
        match info.method {
            // Issue 4: the callback dialog is ours alone: no re-INVITE, Replaces or REFER.
            Method::Invite | Method::Refer => ep.respond(now, id, msg, 403, "Forbidden", &none),
            Method::Bye if in_dialog => {
                ep.respond(now, id, msg, 200, "OK", &none);
                // BYE glare (both hung up): our BYE's answer is still consumed, quietly.
                let outcome = self
                    .pending
                    .take()
                    .unwrap_or(Outcome::Ended { by_remote: true });
                self.finish(ep, outcome);
            }
            Method::Info if in_dialog => {
                ep.respond(now, id, msg, 200, "OK", &none);
                self.events.push_back(CallEvent::Info {
                    body: msg.body.clone(),
                });
            }
            Method::Bye | Method::Info => {
                ep.respond(now, id, msg, 481, "Call/Transaction Does Not Exist", &none)
            }
            _ => {
                let allow = Extras {
                    headers: vec![("Allow", ALLOW.to_string())],
                    body: None,
                };
                ep.respond(now, id, msg, 405, "Method Not Allowed", &allow);
            }
        }
    }

    fn cancel(&mut self, now: Instant, ep: &mut Endpoint, outcome: Outcome) {
        if self.pending.is_none() {
            self.pending = Some(outcome);
        }
        if let Some(id) = self.invite {
            ep.cancel(now, id);
        }
        self.state = State::Cancelling;
        self.cancel_deadline = Some(now + 64 * T1);
    }

    /// The ACK for a 2xx: its own transaction-less request with a new branch, the INVITE's
    /// CSeq number and credentials, sent along the route set (RFC 3261 §13.2.2.4, §12.2.1.1).
    fn send_ack(&mut self, ep: &mut Endpoint) {
        let (uri, routes) = self.request_target();
        let route = self.next_hop();
        let branch = format!("z9hG4bK{}", ep.token());
        let local = ep.config().local.to_string();
        let mut headers: Vec<(&str, String)> = routes.into_iter().map(|r| ("Route", r)).collect();
        if let Some((name, value)) = &self.invite_auth {
            headers.push((name, value.clone()));
        }
        let extras = Extras {
            headers,
            body: None,
        };
        let bytes = build::request(
            &RequestParts {
                method: &Method::Ack,
                uri: &uri,
                via_sent_by: &local,
                transport: if route.conn.is_some() { "TCP" } else { "UDP" },
                branch: &branch,
                from: &self.cfg.from_uri,
                from_tag: &self.from_tag,
                to: &self.cfg.target_uri,
                to_tag: self.remote_tag.as_deref(),
                call_id: &self.call_id,
                cseq: self.invite_cseq,
                max_forwards: 70,
            },
            &ep.config().user_agent,
            &extras,
        );
        ep.send_raw(route, bytes.clone());
        self.ack = Some((route, bytes));
    }

    /// BYE inside the dialog (RFC 3261 §15.1.1): CSeq + 1, route set, remote target.
    fn send_bye(&mut self, now: Instant, ep: &mut Endpoint, auth: Option<(&'static str, String)>) {
        self.cseq += 1;
        let (uri, routes) = self.request_target();
        let route = self.next_hop();
        let mut headers: Vec<(&str, String)> = routes.into_iter().map(|r| ("Route", r)).collect();
        if let Some((name, value)) = auth {
            headers.push((name, value));
        }
        let extras = Extras {
            headers,
            body: None,
        };
        let id = ep.send_request(
            now,
            route,
            &OutgoingRequest {
                method: &Method::Bye,
                uri: &uri,
                from: &self.cfg.from_uri,
                from_tag: &self.from_tag,
                to: &self.cfg.target_uri,
                to_tag: self.remote_tag.as_deref(),
                call_id: &self.call_id,
                cseq: self.cseq,
            },
            &extras,
        );
        self.bye = Some(id);
        self.state = State::Terminating;
    }

    /// Request-URI and Route header values for an in-dialog request (RFC 3261 §12.2.1.1):
    /// loose routing when the first route has `;lr`, strict routing otherwise.
    fn request_target(&self) -> (String, Vec<String>) {
        let target = self
            .remote_target
            .as_deref()
            .unwrap_or(&self.cfg.target_uri);
        dialog_request_target(target, &self.route_set)
    }

    /// Where in-dialog requests go: the first Route's address when it is an IP literal
    /// (keeping the proxy's connection if it is the proxy), else the proxy.
    fn next_hop(&self) -> Route {
        match self.next_hop_uri().and_then(uri_socket_addr) {
            Some(addr) if addr != self.proxy.addr => Route { addr, conn: None },
            _ => self.proxy,
        }
    }

    /// Credentials answering the challenge in `msg` (RFC 3261 §22.2), or `None` if there is
    /// no usable one.
    fn answer_challenge(
        &self,
        ep: &mut Endpoint,
        msg: &Message,
        code: u16,
        method: &str,
        uri: &str,
    ) -> Option<(&'static str, String)> {
        let (offer, answer) = if code == 401 {
            ("www-authenticate", "Authorization")
        } else {
            ("proxy-authenticate", "Proxy-Authorization")
        };
        let offers: Vec<&str> = msg.headers(offer).collect();
        let ch = digest::select_challenge(&offers)?;
        let cnonce = ep.token();
        let body: &[u8] = if method == "INVITE" {
            &self.cfg.sdp_offer
        } else {
            &[]
        };
        let value = digest::authorization(
            &ch,
            &ClientCredentials {
                username: &self.cfg.auth_username,
                password: &self.cfg.password,
            },
            &ResponseParams {
                method,
                uri,
                body,
                nc: 1,
                cnonce: &cnonce,
            },
        );
        Some((answer, value))
    }

    fn finish(&mut self, ep: &mut Endpoint, outcome: Outcome) {
        if self.state == State::Done {
            return;
        }
        self.state = State::Done;
        self.ring_deadline = None;
        self.cancel_deadline = None;
        ep.remove_dialog(&self.call_id);
        self.events.push_back(match outcome {
            Outcome::Failed(reason) => CallEvent::Failed { reason },
            Outcome::Ended { by_remote } => CallEvent::Ended { by_remote },
        });
    }

    /// A stray 2xx to our INVITE (a retransmission after the transaction ended).
    fn owns(&self, msg: &Message) -> bool {
        msg.header("call-id") == Some(self.call_id.as_str())
            && msg.method() == Some(Method::Invite)
            && msg.status().is_some_and(|c| (200..300).contains(&c))
    }
}

/// The diversion indication in a response, if any: 181 (RFC 3261 §21.1.3), Diversion
/// (RFC 5806) or History-Info (RFC 7044).
fn diversion_of(msg: &Message, code: u16) -> Option<String> {
    if code == 181 {
        return Some("181 Call Is Being Forwarded".to_string());
    }
    if let Some(v) = msg.header("diversion") {
        return Some(format!("Diversion: {v}"));
    }
    // RFC 7044 §10.1: an entry tagged `rc` only records a registrar's retargeting to the
    // registered contact, which every PBX does; a diversion is an entry tagged `mp` (mapped to
    // another user) or one carrying a `cause` (RFC 4458) in its URI.
    msg.headers("history-info")
        .flat_map(crate::sip::validate::split_list)
        .find(|entry| history_entry_is_diversion(entry))
        .map(|v| format!("History-Info: {v}"))
}

fn history_entry_is_diversion(entry: &str) -> bool {
    let lower = entry.to_ascii_lowercase();
    let params_after_uri = lower.rsplit_once('>').map_or("", |(_, p)| p);
    let tagged_mp = params_after_uri
        .split(';')
        .map(str::trim)
        .any(|p| p == "mp" || p.starts_with("mp="));
    tagged_mp || lower.contains("cause=") || lower.contains("cause%3d")
}

/// Request-URI and Route header values for an in-dialog request to remote `target` along
/// `route_set` (already in request order), RFC 3261 §12.2.1.1: loose routing when the first
/// route has `;lr`, strict routing (first route as Request-URI, target last) otherwise.
pub(crate) fn dialog_request_target(target: &str, route_set: &[String]) -> (String, Vec<String>) {
    match route_set.first() {
        None => (target.to_string(), Vec::new()),
        Some(first) if is_loose(name_addr_uri(first)) => (target.to_string(), route_set.to_vec()),
        Some(first) => {
            let mut routes: Vec<String> = route_set.iter().skip(1).cloned().collect();
            routes.push(format!("<{target}>"));
            (name_addr_uri(first).to_string(), routes)
        }
    }
}

/// The URI inside a `<...>` name-addr (or the value itself).
pub(crate) fn name_addr_uri(v: &str) -> &str {
    let v = v.trim();
    match (v.find('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => v.get(a + 1..b).unwrap_or(v),
        _ => v,
    }
}

/// Whether a route URI has the `lr` parameter (RFC 3261 §19.1.1, loose routing).
fn is_loose(uri: &str) -> bool {
    let params = uri.split('?').next().unwrap_or("");
    params.split(';').skip(1).any(|p| {
        let name = p.split('=').next().unwrap_or("").trim();
        name.eq_ignore_ascii_case("lr")
    })
}

/// The socket address of a `sip:`/`sips:` URI whose host is an IP literal (default port 5060,
/// 5061 for sips, RFC 3263 §4.2 without DNS). `None` for a host name.
pub fn uri_socket_addr(uri: &str) -> Option<SocketAddr> {
    let uri = uri.trim();
    let lower = uri
        .get(..5)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let (rest, default_port) = if lower.starts_with("sips:") {
        (uri.get(5..)?, 5061)
    } else if lower.starts_with("sip:") {
        (uri.get(4..)?, 5060)
    } else {
        return None;
    };
    let end = rest.find([';', '?', '>']).unwrap_or(rest.len());
    let hostport = rest.get(..end)?;
    let hostport = match hostport.rfind('@') {
        Some(i) => hostport.get(i + 1..)?,
        None => hostport,
    };
    if let Some(v6) = hostport.strip_prefix('[') {
        let close = v6.find(']')?;
        let ip: IpAddr = v6.get(..close)?.parse().ok()?;
        let port = match v6.get(close + 1..)?.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        return Some(SocketAddr::new(ip, port));
    }
    let (host, port) = match hostport.split_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (hostport, default_port),
    };
    let ip: IpAddr = host.parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// A URI we put on a request line: `sip:`/`sips:`, bounded, no whitespace, controls, quotes or
/// angle brackets (so a dialplan value cannot inject header lines).
fn check_uri(field: &'static str, value: &str) -> Result<(), CallError> {
    let lower = value
        .get(..5)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let scheme_ok = lower.starts_with("sip:") || lower.starts_with("sips:");
    let chars_ok = value
        .chars()
        .all(|c| !c.is_whitespace() && !c.is_control() && !matches!(c, '<' | '>' | '"'));
    if scheme_ok && chars_ok && value.len() <= MAX_URI_LEN && value.len() > 4 {
        Ok(())
    } else {
        Err(CallError::BadUri {
            field,
            value: value.to_string(),
        })
    }
}

fn check_token(field: &'static str, value: &str) -> Result<(), CallError> {
    let ok = !value.is_empty()
        && value.len() <= 256
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"' | ';' | ','));
    if ok {
        Ok(())
    } else {
        Err(CallError::BadToken {
            field,
            value: value.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::endpoint::{EndpointConfig, TrunkKind};
    use crate::sip::message::{parse_datagram, Limits, StartLine};

    const A: &str = "127.0.0.1:5070";
    const B: &str = "127.0.0.1:5080";
    const SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    const REALM: &str = "dialback.test";

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn ep_cfg(kind: TrunkKind, local: &str, seed: u64) -> EndpointConfig {
        EndpointConfig {
            kind,
            local: addr(local),
            limits: Limits::default(),
            per_source_rate: 1000,
            per_source_burst: 1000,
            max_sources: 16,
            max_transactions: 64,
            queue_depth: 64,
            allow_sources: None,
            user_agent: "dialback/test".into(),
            rng_seed: seed,
        }
    }

    fn call_cfg(on_diversion: OnDiversion) -> CallConfig {
        CallConfig {
            target_uri: "sip:1001@127.0.0.1:5080".into(),
            from_uri: "sip:gate-out@dialback.test".into(),
            contact_uri: "sip:gate-out@127.0.0.1:5070".into(),
            auth_username: "gate-out".into(),
            password: "s3cret".into(),
            sdp_offer: SDP.to_vec(),
            ring_timeout: Duration::from_secs(30),
            on_diversion,
        }
    }

    /// Our endpoint `a` running the call, and a far-end endpoint `b` (the proxy and phone in
    /// one) that the test drives by hand; datagrams cross instantly on a fake clock.
    struct World {
        a: Endpoint,
        b: Endpoint,
        call: OutgoingCall,
        now: Instant,
        sent_by_a: Vec<Message>,
        sent_by_b: Vec<Vec<u8>>,
        far: VecDeque<Event>,
        events: Vec<CallEvent>,
        /// Drop the next datagram from `a` (simulated loss).
        drop_next_from_a: bool,
    }

    impl World {
        fn new(on_diversion: OnDiversion) -> World {
            World::with(call_cfg(on_diversion))
        }

        fn with(cfg: CallConfig) -> World {
            let mut w = World {
                a: Endpoint::new(ep_cfg(TrunkKind::Originate, A, 1)),
                b: Endpoint::new(ep_cfg(TrunkKind::User, B, 2)),
                call: OutgoingCall::new(cfg, "cb-1@gate".into(), "ft1".into()),
                now: Instant::now(),
                sent_by_a: Vec::new(),
                sent_by_b: Vec::new(),
                far: VecDeque::new(),
                events: Vec::new(),
                drop_next_from_a: false,
            };
            let route = Route {
                addr: addr(B),
                conn: None,
            };
            w.call
                .start(w.now, &mut w.a, route)
                .expect("valid config starts");
            w.pump();
            w
        }

        fn pump(&mut self) {
            loop {
                let mut moved = false;
                while let Some(t) = self.a.poll_transmit() {
                    moved = true;
                    if let Ok(m) = parse_datagram(&t.bytes, &Limits::default()) {
                        self.sent_by_a.push(m);
                    }
                    if std::mem::take(&mut self.drop_next_from_a) {
                        continue;
                    }
                    if t.route.addr == addr(B) {
                        self.b.handle_datagram(self.now, addr(A), &t.bytes);
                    }
                }
                while let Some(t) = self.b.poll_transmit() {
                    moved = true;
                    self.sent_by_b.push(t.bytes.clone());
                    if t.route.addr == addr(A) {
                        self.a.handle_datagram(self.now, addr(B), &t.bytes);
                    }
                }
                while let Some(ev) = self.a.poll_event() {
                    moved = true;
                    let used = self.call.handle_event(self.now, &mut self.a, &ev);
                    assert!(used, "event not the call's: {ev:?}");
                }
                while let Some(ev) = self.b.poll_event() {
                    moved = true;
                    self.far.push_back(ev);
                }
                while let Some(e) = self.call.poll_event() {
                    self.events.push(e);
                }
                if !moved {
                    break;
                }
            }
        }

        fn advance(&mut self, to: Instant) {
            self.now = to;
            self.a.handle_timeout(to);
            self.b.handle_timeout(to);
            self.call.handle_timeout(to, &mut self.a);
            self.pump();
        }

        /// The next request the far end received (other events are skipped).
        fn far_request(&mut self, method: Method) -> (ServerTxnId, Box<Message>) {
            while let Some(ev) = self.far.pop_front() {
                if let Event::Request { id, msg, info, .. } = ev {
                    if info.method == method {
                        return (id, msg);
                    }
                }
            }
            panic!("far end got no {method}");
        }

        fn far_respond(&mut self, id: ServerTxnId, req: &Message, code: u16, extra: Extras<'_>) {
            let reason = match code {
                180 => "Ringing",
                181 => "Call Is Being Forwarded",
                200 => "OK",
                302 => "Moved Temporarily",
                407 => "Proxy Authentication Required",
                486 => "Busy Here",
                487 => "Request Terminated",
                _ => "Whatever",
            };
            self.b.respond(self.now, id, req, code, reason, &extra);
            self.pump();
        }

        fn sent(&self, method: Method) -> Vec<&Message> {
            self.sent_by_a
                .iter()
                .filter(|m| m.is_request() && m.method() == Some(method.clone()))
                .collect()
        }

        fn far_to_tag(&self) -> String {
            self.call.remote_tag().expect("answered").to_string()
        }

        /// The far end sends an in-dialog request to our Contact.
        fn far_sends(&mut self, method: Method, cseq: u32, extras: &Extras<'_>) -> Message {
            let to_tag = self.far_to_tag();
            self.b.send_request(
                self.now,
                Route {
                    addr: addr(A),
                    conn: None,
                },
                &OutgoingRequest {
                    method: &method,
                    uri: "sip:gate-out@127.0.0.1:5070",
                    from: "sip:1001@127.0.0.1:5080",
                    from_tag: &to_tag,
                    to: "sip:gate-out@dialback.test",
                    to_tag: Some("ft1"),
                    call_id: "cb-1@gate",
                    cseq,
                },
                extras,
            );
            let before = self.sent_by_b.len();
            self.pump();
            let resp = self
                .sent_by_b
                .len()
                .checked_sub(before)
                .filter(|n| *n > 0)
                .map(|_| ());
            assert!(resp.is_some(), "request went out");
            let mut answer = None;
            while let Some(ev) = self.far.pop_front() {
                if let Event::Response { msg, .. } = ev {
                    answer = Some(*msg);
                }
            }
            answer.expect("far end got an answer")
        }
    }

    fn challenge() -> Extras<'static> {
        Extras {
            headers: vec![(
                "Proxy-Authenticate",
                format!("Digest realm=\"{REALM}\", nonce=\"n0nce\", qop=\"auth\", algorithm=MD5"),
            )],
            body: None,
        }
    }

    fn answer_200(record_route: bool) -> Extras<'static> {
        let mut headers = vec![("Contact", "<sip:1001@127.0.0.1:5080>".to_string())];
        if record_route {
            headers.push(("Record-Route", "<sip:127.0.0.1:5080;lr>".to_string()));
        }
        Extras {
            headers,
            body: Some(("application/sdp", SDP)),
        }
    }

    fn uri_of(m: &Message) -> &str {
        match &m.start {
            StartLine::Request { uri, .. } => uri,
            StartLine::Response { .. } => "",
        }
    }

    fn top_branch(m: &Message) -> Option<String> {
        m.header("via")
            .and_then(crate::sip::validate::parse_via)
            .and_then(|v| v.branch)
    }

    #[test]
    fn answered_after_407_then_ended_by_remote_bye() {
        let mut w = World::new(OnDiversion::Abort);
        let (id, inv1) = w.far_request(Method::Invite);
        assert_eq!(uri_of(&inv1), "sip:1001@127.0.0.1:5080");
        assert_eq!(inv1.header("content-type"), Some("application/sdp"));
        assert_eq!(inv1.body, SDP);
        assert!(inv1.header("contact").is_some() && inv1.header("allow").is_some());
        assert!(inv1.header("replaces").is_none());
        w.far_respond(id, &inv1, 407, challenge());
        // The endpoint ACKed the 407; the call re-sent the INVITE with credentials.
        assert_eq!(w.sent(Method::Ack).len(), 1);
        let (id, inv2) = w.far_request(Method::Invite);
        assert_eq!(inv2.header("cseq"), Some("2 INVITE"));
        assert_eq!(inv2.header("call-id"), inv1.header("call-id"));
        assert_eq!(inv2.header("from"), inv1.header("from"));
        let cred = inv2.header("proxy-authorization").expect("credentials");
        let auth = digest::parse_authorization(cred).expect("parses");
        let ha1 = digest::ha1_hex(digest::Algorithm::Md5, "gate-out", REALM, "s3cret");
        assert!(digest::verify(&auth, &ha1, "INVITE", SDP));
        w.far_respond(id, &inv2, 180, Extras::default());
        assert_eq!(w.events, vec![CallEvent::Ringing]);
        w.far_respond(id, &inv2, 200, answer_200(true));
        assert_eq!(
            w.events.last(),
            Some(&CallEvent::Answered {
                remote_sdp: SDP.to_vec()
            })
        );
        let ack = *w.sent(Method::Ack).last().expect("ACK for 2xx");
        assert_eq!(uri_of(ack), "sip:1001@127.0.0.1:5080");
        assert_eq!(ack.header("cseq"), Some("2 ACK"));
        assert_eq!(ack.header("route"), Some("<sip:127.0.0.1:5080;lr>"));
        assert_ne!(
            top_branch(ack),
            top_branch(&inv2),
            "2xx ACK has its own branch"
        );
        assert!(w.call.is_answered());
        let resp = w.far_sends(Method::Bye, 1, &Extras::default());
        assert_eq!(resp.status(), Some(200));
        assert_eq!(w.events.last(), Some(&CallEvent::Ended { by_remote: true }));
        assert!(w.call.is_finished());
    }

    #[test]
    fn busy_fails_and_the_endpoint_acks_with_the_invite_branch() {
        let mut w = World::new(OnDiversion::Abort);
        let (id, inv) = w.far_request(Method::Invite);
        w.far_respond(id, &inv, 486, Extras::default());
        assert_eq!(
            w.events,
            vec![CallEvent::Failed {
                reason: FailReason::Status(486)
            }]
        );
        let acks = w.sent(Method::Ack);
        assert_eq!(acks.len(), 1);
        assert_eq!(top_branch(acks[0]), top_branch(&inv));
        assert_eq!(acks[0].header("cseq"), Some("1 ACK"));
    }

    #[test]
    fn redirect_is_never_followed() {
        let mut w = World::new(OnDiversion::Abort);
        let (id, inv) = w.far_request(Method::Invite);
        let contact = Extras {
            headers: vec![("Contact", "<sip:attacker@192.0.2.66>".to_string())],
            body: None,
        };
        w.far_respond(id, &inv, 302, contact);
        assert_eq!(
            w.events,
            vec![CallEvent::Failed {
                reason: FailReason::Redirect(302)
            }]
        );
        assert_eq!(w.sent(Method::Ack).len(), 1);
        w.advance(w.now + Duration::from_secs(60));
        assert_eq!(
            w.sent(Method::Invite).len(),
            1,
            "no INVITE to the 3xx Contact"
        );
        assert!(w.sent_by_a.iter().all(|m| !uri_of(m).contains("attacker")));
    }

    #[test]
    fn status_181_is_diversion_and_cancels_the_attempt() {
        let mut w = World::new(OnDiversion::Abort);
        let (id, inv) = w.far_request(Method::Invite);
        w.far_respond(id, &inv, 181, Extras::default());
        assert_eq!(
            w.events,
            vec![CallEvent::Diverted {
                header: "181 Call Is Being Forwarded".into()
            }]
        );
        let cancels = w.sent(Method::Cancel);
        assert_eq!(cancels.len(), 1);
        assert_eq!(top_branch(cancels[0]), top_branch(&inv));
        // The far end's endpoint answered the CANCEL 200 and told the test; it ends the INVITE.
        assert!(w.far.iter().any(|e| matches!(e, Event::Cancelled { .. })));
        w.far_respond(id, &inv, 487, Extras::default());
        assert_eq!(w.sent(Method::Ack).len(), 1);
        assert_eq!(
            w.events.last(),
            Some(&CallEvent::Failed {
                reason: FailReason::Diverted
            })
        );
    }

    #[test]
    fn diversion_header_on_200_is_acked_then_byed() {
        let mut w = World::new(OnDiversion::Abort);
        let (id, inv) = w.far_request(Method::Invite);
        let mut extras = answer_200(false);
        extras.headers.push((
            "Diversion",
            "<sip:1001@127.0.0.1>;reason=unconditional".into(),
        ));
        w.far_respond(id, &inv, 200, extras);
        w.advance(w.now + BYE_AFTER_ACK);
        assert!(
            matches!(&w.events[0], CallEvent::Diverted { header } if header.starts_with("Diversion:"))
        );
        let ack_at = w
            .sent_by_a
            .iter()
            .position(|m| m.method() == Some(Method::Ack))
            .expect("ACK");
        let bye_at = w
            .sent_by_a
            .iter()
            .position(|m| m.method() == Some(Method::Bye))
            .expect("BYE");
        assert!(ack_at < bye_at);
        assert!(!w
            .events
            .iter()
            .any(|e| matches!(e, CallEvent::Answered { .. })));
        let (bid, bye) = w.far_request(Method::Bye);
        assert_eq!(bye.header("cseq"), Some("2 BYE"));
        w.far_respond(bid, &bye, 200, Extras::default());
        assert_eq!(
            w.events.last(),
            Some(&CallEvent::Failed {
                reason: FailReason::Diverted
            })
        );
    }

    #[test]
    fn flagged_diversion_keeps_the_call() {
        let mut w = World::new(OnDiversion::Flag);
        let (id, inv) = w.far_request(Method::Invite);
        let mut extras = answer_200(false);
        extras.headers.push((
            "History-Info",
            "<sip:1001@127.0.0.1>;index=1, <sip:1009@127.0.0.1>;index=1.1;mp=1".into(),
        ));
        w.far_respond(id, &inv, 200, extras);
        assert!(matches!(&w.events[0], CallEvent::Diverted { .. }));
        assert!(matches!(&w.events[1], CallEvent::Answered { .. }));
        assert!(w.sent(Method::Bye).is_empty());
    }

    #[test]
    fn ring_timeout_cancels_then_487_is_acked_and_fails_no_answer() {
        let mut w = World::new(OnDiversion::Abort);
        let (id, inv) = w.far_request(Method::Invite);
        w.far_respond(id, &inv, 180, Extras::default());
        assert_eq!(w.call.poll_timeout(), Some(w.now + Duration::from_secs(30)));
        w.advance(w.now + Duration::from_secs(30));
        assert_eq!(w.sent(Method::Cancel).len(), 1);
        w.far_respond(id, &inv, 487, Extras::default());
        assert_eq!(w.sent(Method::Ack).len(), 1);
        assert_eq!(
            w.events.last(),
            Some(&CallEvent::Failed {
                reason: FailReason::NoAnswer
            })
        );
    }

    #[test]
    fn refer_and_reinvite_in_the_dialog_are_refused_403() {
        let mut w = World::new(OnDiversion::Abort);
        let (id, inv) = w.far_request(Method::Invite);
        w.far_respond(id, &inv, 200, answer_200(false));
        let refer = Extras {
            headers: vec![("Refer-To", "<sip:attacker@192.0.2.66>".to_string())],
            body: None,
        };
        assert_eq!(w.far_sends(Method::Refer, 1, &refer).status(), Some(403));
        let replaces = Extras {
            headers: vec![("Replaces", "cb-1@gate;to-tag=ft1;from-tag=x".to_string())],
            body: Some(("application/sdp", SDP)),
        };
        assert_eq!(
            w.far_sends(Method::Invite, 2, &replaces).status(),
            Some(403)
        );
        assert!(w.call.is_answered(), "the call itself goes on");
    }

    #[test]
    fn in_dialog_info_is_answered_and_handed_up() {
        let mut w = World::new(OnDiversion::Abort);
        let (id, inv) = w.far_request(Method::Invite);
        w.far_respond(id, &inv, 200, answer_200(false));
        let info = Extras {
            headers: vec![],
            body: Some(("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n")),
        };
        assert_eq!(w.far_sends(Method::Info, 1, &info).status(), Some(200));
        assert!(
            matches!(w.events.last(), Some(CallEvent::Info { body }) if body.starts_with(b"Signal=5"))
        );
    }

    #[test]
    fn lost_ack_gets_the_retransmitted_200_acked_again() {
        let mut w = World::new(OnDiversion::Abort);
        let (id, inv) = w.far_request(Method::Invite);
        w.drop_next_from_a = true;
        w.far_respond(id, &inv, 200, answer_200(false));
        assert_eq!(w.sent(Method::Ack).len(), 1);
        // The far end's UAS core retransmits the 2xx after T1 (RFC 3261 §13.3.1.4).
        w.advance(w.now + T1);
        let acks = w.sent(Method::Ack);
        assert_eq!(acks.len(), 2);
        assert_eq!(
            acks[0]
                .header("via")
                .and_then(crate::sip::validate::parse_via),
            acks[1]
                .header("via")
                .and_then(crate::sip::validate::parse_via),
            "the same ACK is resent"
        );
        // The far end saw the second ACK: no more 2xx retransmissions.
        let before = w.sent_by_b.len();
        w.advance(w.now + 4 * T1);
        assert_eq!(w.sent_by_b.len(), before);
        assert_eq!(
            w.events
                .iter()
                .filter(|e| matches!(e, CallEvent::Answered { .. }))
                .count(),
            1
        );
    }

    #[test]
    fn local_hangup_sends_bye_with_next_cseq_and_ends() {
        let mut w = World::new(OnDiversion::Abort);
        let (id, inv) = w.far_request(Method::Invite);
        w.far_respond(id, &inv, 200, answer_200(true));
        w.call.hangup(w.now, &mut w.a);
        w.pump();
        let (bid, bye) = w.far_request(Method::Bye);
        assert_eq!(bye.header("cseq"), Some("2 BYE"));
        assert_eq!(bye.header("route"), Some("<sip:127.0.0.1:5080;lr>"));
        w.far_respond(bid, &bye, 200, Extras::default());
        assert_eq!(
            w.events.last(),
            Some(&CallEvent::Ended { by_remote: false })
        );
    }

    #[test]
    fn no_response_at_all_fails_timeout() {
        // Ring timeout beyond Timer B (32 s), so the transaction gives up first.
        let mut cfg = call_cfg(OnDiversion::Abort);
        cfg.ring_timeout = Duration::from_secs(60);
        let mut w = World::with(cfg);
        w.b = Endpoint::new(ep_cfg(TrunkKind::User, "127.0.0.1:5999", 3));
        w.far.clear();
        while let Some(t) = w.a.poll_timeout() {
            w.advance(t);
            if w.call.is_finished() {
                break;
            }
        }
        assert_eq!(
            w.events.last(),
            Some(&CallEvent::Failed {
                reason: FailReason::Timeout
            })
        );
    }

    #[test]
    fn bad_target_uri_is_refused_before_anything_is_sent() {
        let mut ep = Endpoint::new(ep_cfg(TrunkKind::Originate, A, 1));
        let mut cfg = call_cfg(OnDiversion::Abort);
        cfg.target_uri = "sip:1001@x\r\nReplaces: y".into();
        let mut call = OutgoingCall::new(cfg, "c".into(), "t".into());
        let route = Route {
            addr: addr(B),
            conn: None,
        };
        assert!(matches!(
            call.start(Instant::now(), &mut ep, route),
            Err(CallError::BadUri {
                field: "target_uri",
                ..
            })
        ));
        assert!(ep.poll_transmit().is_none());
    }

    #[test]
    fn uri_socket_addr_reads_ip_literals_only() {
        assert_eq!(
            uri_socket_addr("sip:127.0.0.1:5080;lr"),
            Some(addr("127.0.0.1:5080"))
        );
        assert_eq!(
            uri_socket_addr("sip:u@10.0.0.1"),
            Some(addr("10.0.0.1:5060"))
        );
        assert_eq!(uri_socket_addr("sips:[::1]"), Some(addr("[::1]:5061")));
        assert_eq!(uri_socket_addr("sip:proxy.example.com;lr"), None);
        assert_eq!(uri_socket_addr("tel:+123"), None);
        assert_eq!(uri_socket_addr("sip:"), None);
    }

    #[test]
    fn hangup_while_ringing_cancels_and_a_crossing_200_is_acked_then_byed() {
        let mut w = World::new(OnDiversion::Abort);
        let (id, inv) = w.far_request(Method::Invite);
        w.far_respond(id, &inv, 180, Extras::default());
        w.call.hangup(w.now, &mut w.a);
        w.pump();
        assert_eq!(w.sent(Method::Cancel).len(), 1);
        // The phone answered before it saw the CANCEL (RFC 3261 §9.1 race): 200, not 487.
        w.far_respond(id, &inv, 200, answer_200(false));
        assert_eq!(w.sent(Method::Ack).len(), 1);
        w.advance(w.now + BYE_AFTER_ACK);
        let (bid, bye) = w.far_request(Method::Bye);
        w.far_respond(bid, &bye, 200, Extras::default());
        assert!(!w
            .events
            .iter()
            .any(|e| matches!(e, CallEvent::Answered { .. })));
        assert_eq!(
            w.events.last(),
            Some(&CallEvent::Ended { by_remote: false })
        );
    }

    #[test]
    fn every_final_answer_ends_the_attempt_with_exactly_one_terminal_event() {
        for code in [
            200, 299, 300, 302, 399, 400, 401, 403, 404, 407, 480, 486, 487, 500, 503, 600, 603,
            699,
        ] {
            for provisional in [None, Some(100), Some(180), Some(181), Some(183)] {
                let mut w = World::new(OnDiversion::Abort);
                let (id, inv) = w.far_request(Method::Invite);
                if let Some(p) = provisional {
                    w.far_respond(id, &inv, p, Extras::default());
                }
                let extras = if code == 200 || code == 299 {
                    answer_200(true)
                } else {
                    Extras::default()
                };
                w.far_respond(id, &inv, code, extras);
                // Answer whatever the call sends next (BYE) and let every timer run out.
                for _ in 0..200 {
                    while let Some(ev) = w.far.pop_front() {
                        if let Event::Request { id, msg, .. } = ev {
                            w.b.respond(w.now, id, &msg, 200, "OK", &Extras::default());
                        }
                    }
                    w.pump();
                    if w.call.is_answered() {
                        w.call.hangup(w.now, &mut w.a);
                        w.pump();
                        continue;
                    }
                    let next = [
                        w.a.poll_timeout(),
                        w.call.poll_timeout(),
                        w.b.poll_timeout(),
                    ]
                    .into_iter()
                    .flatten()
                    .min();
                    match next {
                        Some(t) => w.advance(t.max(w.now)),
                        None => break,
                    }
                }
                let terminal = w
                    .events
                    .iter()
                    .filter(|e| matches!(e, CallEvent::Failed { .. } | CallEvent::Ended { .. }))
                    .count();
                assert_eq!(terminal, 1, "{provisional:?} then {code}: {:?}", w.events);
                assert!(w.call.is_finished());
                assert_eq!(
                    w.sent(Method::Invite).len(),
                    1,
                    "{code}: nothing re-dialled"
                );
            }
        }
    }

    #[test]
    fn a_contact_unfit_for_a_request_line_falls_back_to_the_dialled_uri() {
        let mut w = World::new(OnDiversion::Abort);
        let (id, inv) = w.far_request(Method::Invite);
        let extras = Extras {
            headers: vec![("Contact", "<sip:evil@1.2.3.4 SIP/2.0>".to_string())],
            body: Some(("application/sdp", SDP)),
        };
        w.far_respond(id, &inv, 200, extras);
        let ack = *w.sent(Method::Ack).last().expect("ACK");
        assert_eq!(uri_of(ack), "sip:1001@127.0.0.1:5080");
    }

    #[test]
    fn a_200_after_the_attempt_gave_up_is_acked_and_byed_quietly() {
        let mut w = World::new(OnDiversion::Abort);
        let (id, inv) = w.far_request(Method::Invite);
        w.far_respond(id, &inv, 180, Extras::default());
        w.advance(w.now + Duration::from_secs(30));
        assert_eq!(w.sent(Method::Cancel).len(), 1);
        // The phone ignores the CANCEL; after 64·T1 the call gives up on its own.
        w.advance(w.now + 64 * T1);
        assert_eq!(
            w.events.last(),
            Some(&CallEvent::Failed {
                reason: FailReason::NoAnswer
            })
        );
        let seen = w.events.len();
        w.far_respond(id, &inv, 200, answer_200(false));
        assert_eq!(w.sent(Method::Ack).len(), 1);
        let (bid, bye) = w.far_request(Method::Bye);
        w.far_respond(bid, &bye, 200, Extras::default());
        assert_eq!(w.events.len(), seen, "no second terminal event");
    }

    #[test]
    fn a_second_forked_200_is_acked_and_byed_and_the_first_call_goes_on() {
        let mut w = World::new(OnDiversion::Abort);
        let (id, inv) = w.far_request(Method::Invite);
        w.far_respond(id, &inv, 200, answer_200(false));
        assert!(w.call.is_answered());
        // A second phone of the forked AOR answers too: same transaction, another To tag.
        let via = inv.header("via").expect("via");
        let forked = format!(
            "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {}\r\nTo: <sip:1001@127.0.0.1:5080>;tag=fork2\r\nCall-ID: cb-1@gate\r\nCSeq: 1 INVITE\r\nContact: <sip:1001@127.0.0.1:5080;fork=2>\r\nContent-Length: 0\r\n\r\n",
            inv.header("from").expect("from")
        );
        w.a.handle_datagram(w.now, addr(B), forked.as_bytes());
        w.pump();
        let acks = w.sent(Method::Ack);
        assert_eq!(acks.len(), 2);
        assert!(acks[1]
            .header("to")
            .is_some_and(|t| t.contains("tag=fork2")));
        let byes = w.sent(Method::Bye);
        assert_eq!(byes.len(), 1);
        assert_eq!(uri_of(byes[0]), "sip:1001@127.0.0.1:5080;fork=2");
        assert_eq!(byes[0].header("cseq"), Some("2 BYE"));
        // Retransmission of the fork's 200: ACKed again, no second BYE.
        w.a.handle_datagram(w.now, addr(B), forked.as_bytes());
        w.pump();
        assert_eq!(w.sent(Method::Ack).len(), 3);
        assert_eq!(w.sent(Method::Bye).len(), 1);
        assert!(
            w.call.is_answered(),
            "the first answer is still the callback"
        );
        // The main dialog's own BYE continues its CSeq at 2.
        w.call.hangup(w.now, &mut w.a);
        w.pump();
        let byes = w.sent(Method::Bye);
        assert_eq!(byes.len(), 2);
        assert_eq!(byes[1].header("cseq"), Some("2 BYE"));
        assert!(byes[1].header("to").is_some_and(|t| !t.contains("fork2")));
    }

    #[test]
    fn bye_glare_ends_once_and_our_bye_answer_is_still_consumed() {
        let mut w = World::new(OnDiversion::Abort);
        let (id, inv) = w.far_request(Method::Invite);
        w.far_respond(id, &inv, 200, answer_200(false));
        w.call.hangup(w.now, &mut w.a);
        w.pump();
        let (bid, bye) = w.far_request(Method::Bye);
        // The phone hangs up at the same moment.
        assert_eq!(
            w.far_sends(Method::Bye, 1, &Extras::default()).status(),
            Some(200)
        );
        // Our BYE's 200 arrives after the dialog ended; the harness asserts it is consumed.
        w.far_respond(bid, &bye, 200, Extras::default());
        let terminal: Vec<&CallEvent> = w
            .events
            .iter()
            .filter(|e| matches!(e, CallEvent::Ended { .. } | CallEvent::Failed { .. }))
            .collect();
        assert_eq!(terminal, vec![&CallEvent::Ended { by_remote: false }]);
    }
}
