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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::Codec;
    use crate::sip::endpoint::{EndpointConfig, TrunkKind};
    use crate::sip::message::{parse_datagram, Limits, StartLine};
    use std::net::SocketAddr;
    use std::time::Duration;

    const GATE: &str = "127.0.0.1:5060";
    const CALLER: &str = "127.0.0.1:5062";
    const CALLER_TAG: &str = "caller1";
    const CALL_ID: &str = "incall-test-1";

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn offer(m_line: &str) -> String {
        format!(
            "v=0\r\no=admin 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{m_line}"
        )
    }

    fn pcmu_offer() -> String {
        offer("m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")
    }

    fn local() -> LocalMedia {
        LocalMedia {
            addr: "127.0.0.1".parse().expect("ip"),
            rtp_port: 30000,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            telephone_event: true,
            ptime_ms: 20,
            session_id: 7,
            session_version: 1,
        }
    }

    /// The gate's admin-trunk endpoint, a caller that speaks raw SIP to it over a fake network,
    /// and a fake clock.
    struct World {
        ep: Endpoint,
        call: Option<IncomingCall>,
        rejected: Option<Reject>,
        ring_first: bool,
        t0: Instant,
        now: Instant,
        /// Everything the gate sent, parsed.
        sent: Vec<(Route, Message)>,
        events: Vec<IncomingEvent>,
        branch: u32,
    }

    impl World {
        fn new(ring_first: bool) -> World {
            let t0 = Instant::now();
            World {
                ep: Endpoint::new(EndpointConfig {
                    kind: TrunkKind::Admin,
                    local: addr(GATE),
                    limits: Limits::default(),
                    per_source_rate: 1000,
                    per_source_burst: 1000,
                    max_sources: 16,
                    max_transactions: 64,
                    queue_depth: 64,
                    allow_sources: None,
                    user_agent: "dialback/test".into(),
                    rng_seed: 11,
                }),
                call: None,
                rejected: None,
                ring_first,
                t0,
                now: t0,
                sent: Vec::new(),
                events: Vec::new(),
                branch: 0,
            }
        }

        /// The caller sends a request; returns its bytes (to resend as a retransmission).
        fn caller_sends(
            &mut self,
            method: &str,
            cseq: u32,
            to_tag: Option<&str>,
            headers: &[&str],
            body: Option<(&str, &str)>,
        ) -> Vec<u8> {
            self.branch += 1;
            // CANCEL reuses the INVITE's branch (RFC 3261 §9.1).
            let branch = if method == "CANCEL" { 1 } else { self.branch };
            let to = match to_tag {
                Some(t) => format!("<sip:gate@127.0.0.1>;tag={t}"),
                None => "<sip:gate@127.0.0.1>".to_string(),
            };
            let mut s = format!(
                "{method} sip:gate@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bKc{branch}\r\nMax-Forwards: 70\r\nFrom: <sip:admin@127.0.0.1>;tag={CALLER_TAG}\r\nTo: {to}\r\nCall-ID: {CALL_ID}\r\nCSeq: {cseq} {method}\r\nContact: <sip:admin@{CALLER}>\r\n"
            );
            for h in headers {
                s.push_str(h);
                s.push_str("\r\n");
            }
            match body {
                Some((ct, b)) => s.push_str(&format!(
                    "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{b}",
                    b.len()
                )),
                None => s.push_str("Content-Length: 0\r\n\r\n"),
            }
            let bytes = s.into_bytes();
            self.deliver(&bytes);
            bytes
        }

        fn deliver(&mut self, bytes: &[u8]) {
            self.ep.handle_datagram(self.now, addr(CALLER), bytes);
            self.pump();
        }

        fn invite(&mut self, headers: &[&str], sdp: Option<&str>) {
            self.caller_sends(
                "INVITE",
                1,
                None,
                headers,
                sdp.map(|b| ("application/sdp", b)),
            );
        }

        fn pump(&mut self) {
            loop {
                let mut progressed = false;
                while let Some(t) = self.ep.poll_transmit() {
                    progressed = true;
                    let msg =
                        parse_datagram(&t.bytes, &Limits::default()).expect("gate output parses");
                    self.sent.push((t.route, msg));
                }
                while let Some(ev) = self.ep.poll_event() {
                    progressed = true;
                    let claimed = match self.call.as_mut() {
                        Some(c) => c.handle_event(self.now, &mut self.ep, &ev),
                        None => false,
                    };
                    if claimed {
                        continue;
                    }
                    if let Event::Request {
                        id,
                        route,
                        info,
                        msg,
                    } = &ev
                    {
                        if info.method == Method::Invite && info.to_tag.is_none() {
                            let r = if self.ring_first {
                                IncomingCall::ring(
                                    self.now,
                                    &mut self.ep,
                                    *id,
                                    *route,
                                    msg,
                                    &local(),
                                )
                            } else {
                                IncomingCall::accept(
                                    self.now,
                                    &mut self.ep,
                                    *id,
                                    *route,
                                    msg,
                                    &local(),
                                )
                            };
                            match r {
                                Ok(c) => self.call = Some(c),
                                Err(e) => self.rejected = Some(e),
                            }
                        }
                    }
                }
                if let Some(c) = self.call.as_mut() {
                    while let Some(e) = c.poll_event() {
                        progressed = true;
                        self.events.push(e);
                    }
                }
                if !progressed {
                    break;
                }
            }
        }

        /// Jump the clock to `to`, firing every endpoint and call deadline on the way.
        fn advance(&mut self, to: Instant) {
            loop {
                let next = [
                    self.ep.poll_timeout(),
                    self.call.as_ref().and_then(IncomingCall::poll_timeout),
                ]
                .into_iter()
                .flatten()
                .min();
                match next {
                    Some(t) if t <= to => {
                        self.now = self.now.max(t);
                        self.ep.handle_timeout(self.now);
                        if let Some(c) = self.call.as_mut() {
                            c.handle_timeout(self.now, &mut self.ep);
                        }
                        self.pump();
                    }
                    _ => break,
                }
            }
            self.now = to;
        }

        fn call(&mut self) -> &mut IncomingCall {
            self.call.as_mut().expect("call accepted")
        }

        fn hangup(&mut self) {
            let now = self.now;
            if let Some(c) = self.call.as_mut() {
                c.hangup(now, &mut self.ep);
            }
            self.pump();
        }

        fn responses(&self, code: u16, method: Method) -> Vec<&Message> {
            self.sent
                .iter()
                .map(|(_, m)| m)
                .filter(|m| m.status() == Some(code) && m.method() == Some(method.clone()))
                .collect()
        }

        fn requests(&self, method: Method) -> Vec<(Route, &Message)> {
            self.sent
                .iter()
                .filter(|(_, m)| m.is_request() && m.method() == Some(method.clone()))
                .map(|(r, m)| (*r, m))
                .collect()
        }

        fn our_tag(&mut self) -> String {
            self.call().tags().0.to_string()
        }

        /// The caller answers the gate's last request of `method` with `code`.
        fn caller_answers(&mut self, method: Method, code: u16) {
            let (_, req) = self.requests(method).pop().expect("request sent");
            let mut s = format!("SIP/2.0 {code} OK\r\n");
            for v in req.headers("via") {
                s.push_str(&format!("Via: {v}\r\n"));
            }
            for h in ["from", "to", "call-id", "cseq"] {
                s.push_str(&format!("{h}: {}\r\n", req.header(h).unwrap_or_default()));
            }
            s.push_str("Content-Length: 0\r\n\r\n");
            self.deliver(s.as_bytes());
        }
    }

    fn answered() -> World {
        let mut w = World::new(false);
        let sdp = pcmu_offer();
        w.invite(&[], Some(&sdp));
        w
    }

    fn confirmed() -> World {
        let mut w = answered();
        let tag = w.our_tag();
        w.caller_sends("ACK", 1, Some(&tag), &[], None);
        w
    }

    #[test]
    fn answer_then_ack_confirms_and_remote_bye_ends_the_call() {
        let mut w = World::new(false);
        let sdp = pcmu_offer();
        w.invite(&["Record-Route: <sip:127.0.0.1:5062;lr>"], Some(&sdp));
        let tag = w.our_tag();
        let ok = w.responses(200, Method::Invite);
        assert_eq!(ok.len(), 1);
        let ok = ok[0];
        let to = parse_name_addr(ok.header("to").expect("To")).expect("name-addr");
        assert_eq!(to.tag.as_deref(), Some(tag.as_str()));
        assert_eq!(ok.header("contact"), Some("<sip:127.0.0.1:5060>"));
        assert_eq!(ok.header("record-route"), Some("<sip:127.0.0.1:5062;lr>"));
        assert!(ok.header("allow").is_some_and(|a| a.contains("INFO")));
        assert!(ok.header("supported").is_some());
        assert_eq!(ok.header("content-type"), Some("application/sdp"));
        assert!(String::from_utf8_lossy(&ok.body).contains("m=audio 30000 RTP/AVP 0 101"));
        let media = w.call().media().expect("negotiated at once").clone();
        assert_eq!(media.codec, Codec::Pcmu);
        assert_eq!(media.remote_addr, addr("127.0.0.1:4000"));
        assert_eq!(media.telephone_event_pt, Some(101));

        w.caller_sends("ACK", 1, Some(&tag), &[], None);
        assert_eq!(w.events, vec![IncomingEvent::Confirmed]);
        // The ACK stopped the endpoint's 2xx retransmissions (RFC 3261 §13.3.1.4).
        let t = w.now + Duration::from_secs(10);
        w.advance(t);
        assert_eq!(w.responses(200, Method::Invite).len(), 1);

        w.caller_sends("BYE", 2, Some(&tag), &[], None);
        assert_eq!(w.responses(200, Method::Bye).len(), 1);
        assert_eq!(
            w.events,
            vec![
                IncomingEvent::Confirmed,
                IncomingEvent::Ended { by_remote: true }
            ]
        );
        assert!(w.call().is_finished());
    }

    #[test]
    fn our_hangup_sends_bye_in_the_dialog_and_ends_on_its_200() {
        let mut w = World::new(false);
        let sdp = pcmu_offer();
        w.invite(
            &["Record-Route: <sip:127.0.0.1:5070;lr>, <sip:127.0.0.1:5071;lr>"],
            Some(&sdp),
        );
        let tag = w.our_tag();
        w.caller_sends("ACK", 1, Some(&tag), &[], None);
        w.hangup();
        let byes = w.requests(Method::Bye);
        assert_eq!(byes.len(), 1);
        let (route, bye) = byes[0];
        // First Route is an IP literal: the BYE goes there (RFC 3261 §12.2.1.1 loose routing).
        assert_eq!(route.addr, addr("127.0.0.1:5070"));
        match &bye.start {
            StartLine::Request { uri, .. } => assert_eq!(uri, &format!("sip:admin@{CALLER}")),
            StartLine::Response { .. } => panic!("BYE is a request"),
        }
        let routes: Vec<&str> = bye.headers("route").collect();
        assert_eq!(
            routes,
            vec!["<sip:127.0.0.1:5070;lr>", "<sip:127.0.0.1:5071;lr>"]
        );
        assert_eq!(bye.header("cseq"), Some("1 BYE"));
        let from = parse_name_addr(bye.header("from").expect("From")).expect("from");
        let to = parse_name_addr(bye.header("to").expect("To")).expect("to");
        assert_eq!(from.tag.as_deref(), Some(tag.as_str()));
        assert_eq!(from.uri, "sip:gate@127.0.0.1");
        assert_eq!(to.tag.as_deref(), Some(CALLER_TAG));
        assert_eq!(to.uri, "sip:admin@127.0.0.1");
        assert_eq!(bye.header("call-id"), Some(CALL_ID));
        assert_eq!(w.events, vec![IncomingEvent::Confirmed]);

        w.caller_answers(Method::Bye, 200);
        assert_eq!(
            w.events,
            vec![
                IncomingEvent::Confirmed,
                IncomingEvent::Ended { by_remote: false }
            ]
        );
    }

    #[test]
    fn unanswered_bye_still_ends_the_call_after_timer_f() {
        let mut w = confirmed();
        w.hangup();
        let t = w.now + 64 * T1;
        w.advance(t);
        assert!(
            w.requests(Method::Bye).len() > 1,
            "BYE retransmitted over UDP"
        );
        assert_eq!(
            w.events.last(),
            Some(&IncomingEvent::Ended { by_remote: false })
        );
    }

    #[test]
    fn info_dtmf_relay_is_answered_200_and_reported_as_a_key() {
        let mut w = confirmed();
        let tag = w.our_tag();
        w.caller_sends(
            "INFO",
            2,
            Some(&tag),
            &[],
            Some(("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n")),
        );
        w.caller_sends("INFO", 3, Some(&tag), &[], Some(("application/dtmf", "11")));
        assert_eq!(w.responses(200, Method::Info).len(), 2);
        assert_eq!(
            w.events,
            vec![
                IncomingEvent::Confirmed,
                IncomingEvent::Dtmf {
                    digit: '5',
                    duration_ms: Some(160)
                },
                IncomingEvent::Dtmf {
                    digit: '#',
                    duration_ms: None
                },
            ]
        );
    }

    #[test]
    fn info_of_another_type_is_415_and_a_bad_relay_body_is_400() {
        let mut w = confirmed();
        let tag = w.our_tag();
        w.caller_sends("INFO", 2, Some(&tag), &[], Some(("text/plain", "hello")));
        w.caller_sends(
            "INFO",
            3,
            Some(&tag),
            &[],
            Some(("application/dtmf-relay", "Duration=160\r\n")),
        );
        assert_eq!(w.responses(415, Method::Info).len(), 1);
        assert_eq!(w.responses(400, Method::Info).len(), 1);
        assert_eq!(w.events, vec![IncomingEvent::Confirmed]);
    }

    #[test]
    fn cancel_while_ringing_is_answered_487_and_ends_by_remote() {
        let mut w = World::new(true);
        let sdp = pcmu_offer();
        w.invite(&[], Some(&sdp));
        assert_eq!(w.responses(180, Method::Invite).len(), 1);
        assert!(w.responses(200, Method::Invite).is_empty());
        w.caller_sends("CANCEL", 1, None, &[], None);
        assert_eq!(w.responses(200, Method::Cancel).len(), 1);
        assert_eq!(w.responses(487, Method::Invite).len(), 1);
        assert_eq!(w.events, vec![IncomingEvent::Ended { by_remote: true }]);
        // answer() after the end sends nothing.
        let now = w.now;
        if let Some(c) = w.call.as_mut() {
            c.answer(now, &mut w.ep);
        }
        w.pump();
        assert!(w.responses(200, Method::Invite).is_empty());
    }

    #[test]
    fn ring_then_answer_sends_180_then_200_with_the_same_tag() {
        let mut w = World::new(true);
        let sdp = pcmu_offer();
        w.invite(&[], Some(&sdp));
        let now = w.now;
        if let Some(c) = w.call.as_mut() {
            c.answer(now, &mut w.ep);
        }
        w.pump();
        let tag_of =
            |m: &Message| parse_name_addr(m.header("to").unwrap_or("")).and_then(|n| n.tag);
        let ringing = tag_of(w.responses(180, Method::Invite)[0]);
        let ok = tag_of(w.responses(200, Method::Invite)[0]);
        assert!(ringing.is_some());
        assert_eq!(ringing, ok);
    }

    #[test]
    fn no_ack_means_200_retransmitted_then_bye_at_64_t1() {
        let mut w = answered();
        let t = w.t0 + 64 * T1 - Duration::from_millis(1);
        w.advance(t);
        assert!(
            w.responses(200, Method::Invite).len() > 5,
            "2xx resent until ACK"
        );
        assert!(w.requests(Method::Bye).is_empty());
        let t = w.t0 + 64 * T1;
        w.advance(t);
        assert_eq!(w.requests(Method::Bye).len(), 1);
        assert_eq!(w.t0 + Duration::from_secs(32), w.now);
        w.caller_answers(Method::Bye, 200);
        assert_eq!(
            w.events,
            vec![IncomingEvent::Failed {
                reason: FailReason::NoAck
            }]
        );
    }

    #[test]
    fn offer_without_pcmu_or_pcma_is_refused_488() {
        let mut w = World::new(false);
        let sdp = offer("m=audio 4000 RTP/AVP 9 18\r\n");
        w.invite(&[], Some(&sdp));
        assert!(w.call.is_none());
        assert_eq!(
            w.rejected,
            Some(Reject::NotAcceptable(SdpError::NoAcceptableCodec))
        );
        assert_eq!(w.responses(488, Method::Invite).len(), 1);
        assert!(w.responses(200, Method::Invite).is_empty());
    }

    #[test]
    fn reinvite_is_refused_488_and_the_call_goes_on() {
        let mut w = confirmed();
        let tag = w.our_tag();
        let sdp = pcmu_offer();
        w.caller_sends(
            "INVITE",
            2,
            Some(&tag),
            &[],
            Some(("application/sdp", &sdp)),
        );
        assert_eq!(w.responses(488, Method::Invite).len(), 1);
        assert!(w.call().is_confirmed());
        w.caller_sends("BYE", 3, Some(&tag), &[], None);
        assert_eq!(
            w.events.last(),
            Some(&IncomingEvent::Ended { by_remote: true })
        );
    }

    #[test]
    fn offerless_invite_gets_our_offer_and_the_answer_from_the_ack() {
        let mut w = World::new(false);
        w.invite(&[], None);
        let tag = w.our_tag();
        let ok = w.responses(200, Method::Invite)[0];
        assert!(String::from_utf8_lossy(&ok.body).contains("m=audio 30000 RTP/AVP 0 8 101"));
        assert!(w.call().media().is_none());
        let ans = offer("m=audio 4002 RTP/AVP 8\r\n");
        w.caller_sends("ACK", 1, Some(&tag), &[], Some(("application/sdp", &ans)));
        assert_eq!(w.events, vec![IncomingEvent::Confirmed]);
        let media = w.call().media().expect("answer taken from the ACK");
        assert_eq!(media.codec, Codec::Pcma);
        assert_eq!(media.remote_addr, addr("127.0.0.1:4002"));
    }

    #[test]
    fn offerless_invite_with_ack_lacking_an_answer_is_byed_and_fails() {
        let mut w = World::new(false);
        w.invite(&[], None);
        let tag = w.our_tag();
        w.caller_sends("ACK", 1, Some(&tag), &[], None);
        assert_eq!(w.requests(Method::Bye).len(), 1);
        w.caller_answers(Method::Bye, 200);
        assert!(matches!(
            w.events.as_slice(),
            [IncomingEvent::Failed {
                reason: FailReason::BadAnswer(_)
            }]
        ));
    }

    #[test]
    fn hangup_before_the_ack_waits_for_it_then_byes() {
        let mut w = answered();
        w.hangup();
        assert!(
            w.requests(Method::Bye).is_empty(),
            "RFC 3261 §15: no BYE before the ACK"
        );
        let tag = w.our_tag();
        w.caller_sends("ACK", 1, Some(&tag), &[], None);
        assert_eq!(w.requests(Method::Bye).len(), 1);
        w.caller_answers(Method::Bye, 200);
        assert_eq!(
            w.events,
            vec![
                IncomingEvent::Confirmed,
                IncomingEvent::Ended { by_remote: false }
            ]
        );
    }

    #[test]
    fn in_dialog_request_with_a_lower_cseq_is_500_and_a_wrong_from_tag_is_481() {
        let mut w = confirmed();
        let tag = w.our_tag();
        w.caller_sends("INFO", 5, Some(&tag), &[], None);
        w.caller_sends("INFO", 4, Some(&tag), &[], None);
        assert_eq!(w.responses(200, Method::Info).len(), 1);
        assert_eq!(w.responses(500, Method::Info).len(), 1);
        let bye = format!(
            "BYE sip:gate@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bKx9\r\nMax-Forwards: 70\r\nFrom: <sip:admin@127.0.0.1>;tag=intruder\r\nTo: <sip:gate@127.0.0.1>;tag={tag}\r\nCall-ID: {CALL_ID}\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        w.deliver(bye.as_bytes());
        assert_eq!(w.responses(481, Method::Bye).len(), 1);
        assert!(w.call().is_confirmed());
    }

    #[test]
    fn retransmitted_invite_gets_the_same_200_and_no_second_call() {
        let mut w = World::new(false);
        let sdp = pcmu_offer();
        let bytes = w.caller_sends("INVITE", 1, None, &[], Some(("application/sdp", &sdp)));
        w.deliver(&bytes);
        let oks = w.responses(200, Method::Invite);
        assert_eq!(oks.len(), 2);
        assert_eq!(oks[0].header("to"), oks[1].header("to"));
    }
    #[test]
    fn cancel_after_the_200_changes_nothing() {
        let mut w = answered();
        w.caller_sends("CANCEL", 1, None, &[], None);
        // RFC 3261 §9.2: the endpoint answers the CANCEL 200; the INVITE already has its 2xx.
        assert_eq!(w.responses(200, Method::Cancel).len(), 1);
        assert!(w.responses(487, Method::Invite).is_empty());
        let tag = w.our_tag();
        w.caller_sends("ACK", 1, Some(&tag), &[], None);
        assert_eq!(w.events, vec![IncomingEvent::Confirmed]);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_offers_and_info_bodies_never_panic(
            sdp in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            info in "[ -~\r\n]{0,80}",
        ) {
            let mut w = World::new(false);
            let body = String::from_utf8_lossy(&sdp).into_owned();
            w.invite(&[], Some(&body));
            if w.call.is_some() {
                let tag = w.our_tag();
                w.caller_sends("ACK", 1, Some(&tag), &[], None);
                w.caller_sends("INFO", 2, Some(&tag), &[], Some(("application/dtmf-relay", &info)));
                w.hangup();
                let t = w.now + 64 * T1;
                w.advance(t);
                proptest::prop_assert!(w.call().is_finished());
            } else {
                proptest::prop_assert_eq!(w.responses(488, Method::Invite).len(), 1);
            }
        }
    }
}
