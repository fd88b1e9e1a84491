//! The inbound call: one INVITE dialog on the user or admin trunk answered by us as UAS
//! (RFC 3261 §12.1.1, §13.3, §14.2, §15), sans-IO. DESIGN.md "The flow" step 2: an
//! administrator calls in, the gate answers, reads ID, PIN and start signal as DTMF (RFC 4733,
//! SIP INFO, in-band) and hangs up; the callback then goes out on the originate trunk.
//!
//! Driving shape (as [`crate::sip::call::OutgoingCall`]): the trunk's [`Endpoint`] keeps the
//! transactions (INVITE server transaction, 2xx retransmission until ACK, BYE client
//! transaction, CANCEL matching) and this type keeps the dialog (tags, remote target, route
//! set, CSeq numbers, the offer/answer). The runtime hands an initial INVITE
//! (`Event::Request`) to [`IncomingCall::accept`] (or [`IncomingCall::ring`] then
//! [`IncomingCall::answer`]), offers every later endpoint event to
//! [`IncomingCall::handle_event`] (it returns whether the event was the call's), calls
//! [`IncomingCall::handle_timeout`] at [`IncomingCall::poll_timeout`] and drains
//! [`IncomingCall::poll_event`].
//!
//! Policy choices, each with its clause:
//! - SDP: an offer in the INVITE is answered in the 200 with [`sdp::answer`]; an offer we
//!   cannot use gets 488 (RFC 3261 §21.4.26) before the dialog exists. An INVITE without SDP
//!   gets our offer in the 200 and the answer is taken from the ACK (RFC 3264 §4, RFC 3261
//!   §13.2.1); an ACK without a usable answer ends the call with BYE.
//! - The 200 copies Record-Route (§12.1.1) and carries our Contact (the trunk address), Allow
//!   and Supported (§13.3.1.4). The route set is the Record-Route list in received order.
//! - No ACK 64·T1 after the 200: the session is ended with BYE (§13.3.1.4).
//! - We never renegotiate: a re-INVITE is answered 488 (§14.2 lets a UAS refuse a
//!   modification and keep the old session). We send no re-INVITE, so 491 glare cannot arise.
//! - A request with a CSeq lower than the last one gets 500 (§12.2.2).
//! - BYE from us waits for the ACK (§15: the callee must not BYE a dialog before the ACK or the
//!   server transaction timing out).
//! - INFO with `application/dtmf-relay` or `application/dtmf` is answered 200 and reported as
//!   [`IncomingEvent::Dtmf`]; other bodies get the code [`crate::media::info`] names (415 for
//!   another type, 400 for a bad body). The endpoint already refuses other Content-Types 415.
//!
//! In-dialog requests go to the first Route (or the remote target) when that URI holds an IP
//! literal, otherwise back to where the INVITE came from.

use std::collections::VecDeque;
use std::time::Instant;

use thiserror::Error;

use crate::media::info::{parse_info_body, InfoError};
use crate::sdp::{self, LocalMedia, NegotiatedMedia, SdpError};
use crate::sip::build::Extras;
use crate::sip::call::{dialog_request_target, name_addr_uri, uri_socket_addr};
use crate::sip::endpoint::{Endpoint, Event, OutgoingRequest};
use crate::sip::message::{Message, Method};
use crate::sip::transaction::{ClientTxnId, Route, ServerTxnId, T1};
use crate::sip::validate::{parse_cseq, parse_name_addr, split_list, RequestInfo};

/// Methods we name in Allow on the inbound dialog.
const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, INFO, OPTIONS";

/// Why an INVITE was not taken. [`IncomingCall::accept`] has already answered the INVITE with
/// [`Reject::status`] when it returns one of these (except for API misuse, where there is
/// nothing to answer).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Reject {
    /// The peer offered SDP we cannot use (no PCMU/PCMA, malformed, no address): 488.
    #[error("SDP offer not acceptable: {0}")]
    NotAcceptable(#[source] SdpError),
    /// API misuse: the request is not an initial INVITE (it has a To tag or another method).
    #[error("request is not an initial INVITE")]
    NotInitialInvite,
    /// API misuse: the endpoint no longer knows server transaction `id`.
    #[error("server transaction {0} is unknown to the endpoint")]
    UnknownTransaction(u64),
    /// The INVITE lacks a From tag or a From / To URI (the endpoint validates these, so this
    /// is a defensive 400).
    #[error("INVITE lacks {field}")]
    Malformed { field: &'static str },
}

impl Reject {
    /// The status code the INVITE was answered with (0: not answered, API misuse).
    pub fn status(&self) -> u16 {
        match self {
            Reject::NotAcceptable(_) => 488,
            Reject::Malformed { .. } => 400,
            Reject::NotInitialInvite | Reject::UnknownTransaction(_) => 0,
        }
    }
}

/// Why a call failed after it was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// No ACK for our 200 within 64·T1 (RFC 3261 §13.3.1.4); we sent BYE.
    NoAck,
    /// The INVITE had no SDP and the ACK brought no usable answer to our offer.
    BadAnswer(SdpError),
}

/// What the call reports. Exactly one terminal event, `Ended` or `Failed`, ends each call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncomingEvent {
    /// The ACK for our 200 arrived: media may flow both ways.
    Confirmed,
    /// A key from an in-dialog INFO (answered 200).
    Dtmf {
        digit: char,
        duration_ms: Option<u32>,
    },
    /// The call is over: by the caller's BYE or CANCEL (`by_remote`) or by our hangup.
    Ended { by_remote: bool },
    /// The call could not be completed.
    Failed { reason: FailReason },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// 180 sent, 200 not yet: CANCEL still applies.
    Ringing,
    /// 200 sent, waiting for the ACK.
    WaitAck,
    Confirmed,
    /// BYE sent.
    Terminating,
    Done,
}

/// The terminal event held back while BYE is answered.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Ended { by_remote: bool },
    Failed(FailReason),
}

/// One inbound call: a UAS INVITE dialog.
#[derive(Debug)]
pub struct IncomingCall {
    state: State,
    /// The INVITE and its server transaction, kept while a final response may still be due.
    invite: Box<Message>,
    invite_id: ServerTxnId,
    invite_cseq: u32,
    /// Where the INVITE came from (fallback next hop).
    source: Route,
    call_id: String,
    local_tag: String,
    remote_tag: String,
    /// Our URI (the INVITE's To) and the caller's (its From), for in-dialog requests.
    local_uri: String,
    remote_uri: String,
    /// The caller's Contact URI (RFC 3261 §12.1.1).
    remote_target: String,
    /// Record-Route values in received order: the UAS's route set (RFC 3261 §12.1.1).
    route_set: Vec<String>,
    remote_cseq: u32,
    local_cseq: u32,
    local_media: LocalMedia,
    /// `Some` once offer/answer is complete.
    media: Option<NegotiatedMedia>,
    /// The 200's SDP (our answer, or our offer when the INVITE had none).
    local_sdp: Vec<u8>,
    /// We offered in the 200: the ACK holds the answer.
    offered: bool,
    ack_deadline: Option<Instant>,
    /// hangup() was asked for before the ACK: BYE goes out when it comes (or times out).
    bye_after_ack: bool,
    bye: Option<ClientTxnId>,
    pending: Option<Outcome>,
    events: VecDeque<IncomingEvent>,
}

impl IncomingCall {
    /// Take an initial INVITE and answer it 200 at once (see [`IncomingCall::ring`] for a call
    /// that rings first). On `Err` the INVITE has been answered with [`Reject::status`].
    pub fn accept(
        now: Instant,
        ep: &mut Endpoint,
        id: ServerTxnId,
        route: Route,
        msg: &Message,
        local: &LocalMedia,
    ) -> Result<IncomingCall, Reject> {
        let mut call = Self::ring_inner(now, ep, id, route, msg, local, false)?;
        call.answer(now, ep);
        Ok(call)
    }

    /// Take an initial INVITE and answer 180 Ringing; [`IncomingCall::answer`] sends the 200.
    /// Until then the caller may CANCEL (answered 487, then `Ended { by_remote: true }`). The
    /// SDP offer is checked now, so an unusable one is refused 488 before ringing.
    pub fn ring(
        now: Instant,
        ep: &mut Endpoint,
        id: ServerTxnId,
        route: Route,
        msg: &Message,
        local: &LocalMedia,
    ) -> Result<IncomingCall, Reject> {
        Self::ring_inner(now, ep, id, route, msg, local, true)
    }

    fn ring_inner(
        now: Instant,
        ep: &mut Endpoint,
        id: ServerTxnId,
        route: Route,
        msg: &Message,
        local: &LocalMedia,
        send_180: bool,
    ) -> Result<IncomingCall, Reject> {
        let to_tag = ep
            .server_to_tag(id)
            .ok_or(Reject::UnknownTransaction(id.0))?
            .to_string();
        if msg.method() != Some(Method::Invite) || !msg.is_request() {
            return Err(Reject::NotInitialInvite);
        }
        let to = msg.header("to").and_then(parse_name_addr);
        if to.as_ref().is_some_and(|t| t.tag.is_some()) {
            return Err(Reject::NotInitialInvite);
        }
        let refuse = |ep: &mut Endpoint, r: Reject| {
            let extras = Extras::default();
            let reason = if r.status() == 488 {
                "Not Acceptable Here"
            } else {
                "Bad Request"
            };
            ep.respond(now, id, msg, r.status(), reason, &extras);
            Err(r)
        };
        let from = msg.header("from").and_then(parse_name_addr);
        let (Some(from), Some(to)) = (from, to) else {
            return refuse(ep, Reject::Malformed { field: "From/To" });
        };
        let Some(remote_tag) = from.tag else {
            return refuse(ep, Reject::Malformed { field: "From tag" });
        };
        let Some((cseq, _)) = msg.header("cseq").and_then(parse_cseq) else {
            return refuse(ep, Reject::Malformed { field: "CSeq" });
        };
        let call_id = msg.header("call-id").unwrap_or_default().to_string();
        // RFC 3264 §5 / §6: answer the offer now, or offer ourselves when there is none.
        let (local_sdp, media, offered) = if msg.body.is_empty() {
            (sdp::offer(local), None, true)
        } else {
            match sdp::answer(&msg.body, local) {
                Ok(a) => (a.sdp, Some(a.media), false),
                Err(e) => return refuse(ep, Reject::NotAcceptable(e)),
            }
        };
        // RFC 3261 §12.1.1: remote target from Contact; without one (broken, but seen) the
        // From URI is the best we have to address the BYE.
        let remote_target = msg
            .header("contact")
            .and_then(|v| split_list(v).first().copied().and_then(parse_name_addr))
            .map(|n| n.uri)
            .unwrap_or_else(|| from.uri.clone());
        let route_set: Vec<String> = msg
            .headers("record-route")
            .flat_map(split_list)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let call = IncomingCall {
            state: State::Ringing,
            invite: Box::new(msg.clone()),
            invite_id: id,
            invite_cseq: cseq,
            source: route,
            call_id,
            local_tag: to_tag,
            remote_tag,
            local_uri: to.uri,
            remote_uri: from.uri,
            remote_target,
            route_set,
            remote_cseq: cseq,
            local_cseq: 0,
            local_media: local.clone(),
            media,
            local_sdp,
            offered,
            ack_deadline: None,
            bye_after_ack: false,
            bye: None,
            pending: None,
            events: VecDeque::new(),
        };
        if send_180 {
            let extras = Extras {
                headers: call.dialog_headers(ep),
                body: None,
            };
            ep.respond(now, id, msg, 180, "Ringing", &extras);
        }
        Ok(call)
    }

    /// Send the 200 OK with our SDP (RFC 3261 §13.3.1.4) and start waiting for the ACK. Does
    /// nothing unless the call is ringing.
    pub fn answer(&mut self, now: Instant, ep: &mut Endpoint) {
        if self.state != State::Ringing {
            return;
        }
        let mut headers = self.dialog_headers(ep);
        headers.push(("Allow", ALLOW.to_string()));
        headers.push(("Supported", String::new()));
        let extras = Extras {
            headers,
            body: Some(("application/sdp", &self.local_sdp)),
        };
        ep.respond(now, self.invite_id, &self.invite, 200, "OK", &extras);
        self.state = State::WaitAck;
        self.ack_deadline = Some(now + 64 * T1);
    }

    /// Offer an endpoint event; returns whether it belonged to this call.
    pub fn handle_event(&mut self, now: Instant, ep: &mut Endpoint, event: &Event) -> bool {
        match event {
            Event::Cancelled { id } if *id == self.invite_id => {
                // RFC 3261 §9.2: a CANCEL only matters before the final response.
                if self.state == State::Ringing {
                    let none = Extras::default();
                    ep.respond(now, *id, &self.invite, 487, "Request Terminated", &none);
                    self.finish(Outcome::Ended { by_remote: true });
                }
                true
            }
            Event::Ack { msg, .. } if msg.header("call-id") == Some(self.call_id.as_str()) => {
                self.on_ack(now, ep, msg);
                true
            }
            Event::Request { id, info, msg, .. }
                if info.call_id == self.call_id
                    && info.to_tag.as_deref() == Some(self.local_tag.as_str()) =>
            {
                self.on_request(now, ep, *id, info, msg);
                true
            }
            Event::Response { id, msg } if self.bye == Some(*id) => {
                // Whatever the final answer, the dialog is over for us (RFC 3261 §15.1.1).
                if msg.status().is_some_and(|c| c >= 200) {
                    self.bye = None;
                    let outcome = self
                        .pending
                        .take()
                        .unwrap_or(Outcome::Ended { by_remote: false });
                    self.finish(outcome);
                }
                true
            }
            Event::Timeout { id } if self.bye == Some(*id) => {
                self.bye = None;
                let outcome = self
                    .pending
                    .take()
                    .unwrap_or(Outcome::Ended { by_remote: false });
                self.finish(outcome);
                true
            }
            _ => false,
        }
    }

    /// Fire the call's timer due at `now`: no ACK within 64·T1 of the 200.
    pub fn handle_timeout(&mut self, now: Instant, ep: &mut Endpoint) {
        if self.state == State::WaitAck && self.ack_deadline.is_some_and(|d| d <= now) {
            self.ack_deadline = None;
            // RFC 3261 §13.3.1.4: the dialog is confirmed but the session SHOULD be ended
            // with BYE. A hangup asked for meanwhile ends the same way.
            self.pending = Some(Outcome::Failed(FailReason::NoAck));
            self.send_bye(now, ep);
        }
    }

    /// When [`IncomingCall::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::WaitAck => self.ack_deadline,
            _ => None,
        }
    }

    /// Hang up: 480 while ringing, BYE once confirmed (after the ACK if it is still due).
    /// Ends with `Ended { by_remote: false }` when the BYE is answered or times out.
    pub fn hangup(&mut self, now: Instant, ep: &mut Endpoint) {
        match self.state {
            State::Ringing => {
                let none = Extras::default();
                ep.respond(
                    now,
                    self.invite_id,
                    &self.invite,
                    480,
                    "Temporarily Unavailable",
                    &none,
                );
                self.finish(Outcome::Ended { by_remote: false });
            }
            // RFC 3261 §15: not before the ACK (or the 64·T1 timeout).
            State::WaitAck => self.bye_after_ack = true,
            State::Confirmed => {
                self.pending = Some(Outcome::Ended { by_remote: false });
                self.send_bye(now, ep);
            }
            State::Terminating | State::Done => {}
        }
    }

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<IncomingEvent> {
        self.events.pop_front()
    }

    /// The media both sides agreed, once offer/answer is complete (at once for an INVITE with
    /// SDP, at the ACK for one without).
    pub fn media(&self) -> Option<&NegotiatedMedia> {
        self.media.as_ref()
    }

    /// The Call-ID.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Our tag (the To tag of our responses) and the caller's (the From tag).
    pub fn tags(&self) -> (&str, &str) {
        (&self.local_tag, &self.remote_tag)
    }

    /// The caller's URI (From), e.g. for the audit log.
    pub fn remote_uri(&self) -> &str {
        &self.remote_uri
    }

    /// Whether the terminal event has been queued.
    pub fn is_finished(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the ACK came and the call is not being torn down.
    pub fn is_confirmed(&self) -> bool {
        self.state == State::Confirmed
    }

    /// Contact (and Record-Route copies, RFC 3261 §12.1.1) for our 18x/2xx.
    fn dialog_headers(&self, ep: &Endpoint) -> Vec<(&'static str, String)> {
        let transport = if self.source.conn.is_some() {
            ";transport=tcp"
        } else {
            ""
        };
        let mut h: Vec<(&'static str, String)> = self
            .route_set
            .iter()
            .map(|r| ("Record-Route", r.clone()))
            .collect();
        h.push(("Contact", format!("<sip:{}{transport}>", ep.config().local)));
        h
    }

    fn on_ack(&mut self, now: Instant, ep: &mut Endpoint, msg: &Message) {
        let cseq = msg.header("cseq").and_then(parse_cseq).map(|(n, _)| n);
        if self.state != State::WaitAck || cseq != Some(self.invite_cseq) {
            // A retransmitted ACK, or one for nothing we sent: absorbed (RFC 3261 §17.2.1).
            return;
        }
        self.ack_deadline = None;
        if self.offered {
            // RFC 3264 §4 / RFC 3261 §13.2.1: our offer was in the 200, the answer is here.
            match sdp::accept_answer(&self.local_media, &msg.body) {
                Ok(m) => self.media = Some(m),
                Err(e) => {
                    self.state = State::Confirmed;
                    self.pending = Some(Outcome::Failed(FailReason::BadAnswer(e)));
                    self.send_bye(now, ep);
                    return;
                }
            }
        }
        self.state = State::Confirmed;
        self.events.push_back(IncomingEvent::Confirmed);
        if self.bye_after_ack {
            self.pending = Some(Outcome::Ended { by_remote: false });
            self.send_bye(now, ep);
        }
    }

    fn on_request(
        &mut self,
        now: Instant,
        ep: &mut Endpoint,
        id: ServerTxnId,
        info: &RequestInfo,
        msg: &Message,
    ) {
        let none = Extras::default();
        if info.from_tag.as_deref() != Some(self.remote_tag.as_str())
            || self.state == State::Done
            || self.state == State::Ringing
        {
            ep.respond(now, id, msg, 481, "Call/Transaction Does Not Exist", &none);
            return;
        }
        // RFC 3261 §12.2.2: CSeq must grow within the dialog.
        if info.cseq < self.remote_cseq {
            ep.respond(now, id, msg, 500, "Server Internal Error", &none);
            return;
        }
        self.remote_cseq = info.cseq;
        match info.method {
            Method::Bye => {
                ep.respond(now, id, msg, 200, "OK", &none);
                // Our own BYE crossing theirs: the dialog is over either way.
                let outcome = self
                    .pending
                    .take()
                    .unwrap_or(Outcome::Ended { by_remote: true });
                self.bye = None;
                self.finish(outcome);
            }
            Method::Info => self.on_info(now, ep, id, msg),
            Method::Invite => {
                // RFC 3261 §14.2: we keep the session as it is; no renegotiation.
                let allow = Extras {
                    headers: vec![("Allow", ALLOW.to_string())],
                    body: None,
                };
                ep.respond(now, id, msg, 488, "Not Acceptable Here", &allow);
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

    /// INFO DTMF (application/dtmf-relay, application/dtmf); an empty INFO is answered 200
    /// without an event (RFC 6086 §4.2.1 leaves bodiless INFO legal).
    fn on_info(&mut self, now: Instant, ep: &mut Endpoint, id: ServerTxnId, msg: &Message) {
        if msg.body.is_empty() {
            ep.respond(now, id, msg, 200, "OK", &Extras::default());
            return;
        }
        let ct = msg.header("content-type").unwrap_or_default();
        match parse_info_body(ct, &msg.body) {
            Ok(d) => {
                ep.respond(now, id, msg, 200, "OK", &Extras::default());
                self.events.push_back(IncomingEvent::Dtmf {
                    digit: d.digit.as_char(),
                    duration_ms: d.duration_ms,
                });
            }
            Err(e) => {
                let (reason, extras) = match &e {
                    InfoError::UnsupportedMediaType { .. } => (
                        "Unsupported Media Type",
                        Extras {
                            headers: vec![(
                                "Accept",
                                "application/dtmf-relay, application/dtmf".to_string(),
                            )],
                            body: None,
                        },
                    ),
                    _ => ("Bad Request", Extras::default()),
                };
                ep.respond(now, id, msg, e.status_code(), reason, &extras);
            }
        }
    }

    /// BYE inside the dialog (RFC 3261 §15.1.1): CSeq + 1, route set, remote target.
    fn send_bye(&mut self, now: Instant, ep: &mut Endpoint) {
        self.local_cseq += 1;
        let (uri, routes) = dialog_request_target(&self.remote_target, &self.route_set);
        let route = self.next_hop();
        let extras = Extras {
            headers: routes.into_iter().map(|r| ("Route", r)).collect(),
            body: None,
        };
        let id = ep.send_request(
            now,
            route,
            &OutgoingRequest {
                method: &Method::Bye,
                uri: &uri,
                from: &self.local_uri,
                from_tag: &self.local_tag,
                to: &self.remote_uri,
                to_tag: Some(&self.remote_tag),
                call_id: &self.call_id,
                cseq: self.local_cseq,
            },
            &extras,
        );
        self.bye = Some(id);
        self.state = State::Terminating;
    }

    /// Where in-dialog requests go: the next-hop URI's address when it is an IP literal, else
    /// back to where the INVITE came from (keeping its connection).
    fn next_hop(&self) -> Route {
        let uri = match self.route_set.first() {
            Some(r) => name_addr_uri(r),
            None => self.remote_target.as_str(),
        };
        match uri_socket_addr(uri) {
            Some(addr) if addr != self.source.addr => Route { addr, conn: None },
            _ => self.source,
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        if self.state == State::Done {
            return;
        }
        self.state = State::Done;
        self.ack_deadline = None;
        self.events.push_back(match outcome {
            Outcome::Ended { by_remote } => IncomingEvent::Ended { by_remote },
            Outcome::Failed(reason) => IncomingEvent::Failed { reason },
        });
    }
}
