//! One trunk's SIP endpoint, sans-IO: datagrams and framed stream messages go in with `now`,
//! wire bytes come out of [`Endpoint::poll_transmit`], application events out of
//! [`Endpoint::poll_event`], and [`Endpoint::poll_timeout`] says when to call
//! [`Endpoint::handle_timeout`].
//!
//! Admission runs before parsing: an allowlist of source addresses (the originate trunk only
//! talks to its proxy) and a per-source token bucket. Then the request is validated (RFC 3261
//! §8.2, RFC 4475 outcomes), answered statelessly when the endpoint can decide alone (OPTIONS,
//! 4xx/5xx, 405/501, the originate trunk's 403), or handed to the application inside a server
//! transaction. Every table is capped; over the cap a request gets 503 with Retry-After.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::sip::build::{self, Extras, RequestParts};
use crate::sip::message::{parse_datagram, Limits, Message, Method, StartLine};
use crate::sip::ratelimit::SourceLimiter;
use crate::sip::transaction::{
    ClientTxn, ClientTxnId, Route, ServerKey, ServerTxn, ServerTxnId, T1, T2, T4,
};
use crate::sip::validate::{check_content, validate_request, RequestInfo};

/// RFC 3261 §8.1.1.7 magic cookie.
const MAGIC_COOKIE: &str = "z9hG4bK";

/// Methods we name in Allow.
const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, INFO";

/// Which trunk an endpoint serves (DESIGN.md, "The three trunks").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrunkKind {
    User,
    Admin,
    Originate,
}

impl TrunkKind {
    /// Name used in logs and audit records.
    pub fn as_str(&self) -> &'static str {
        match self {
            TrunkKind::User => "user",
            TrunkKind::Admin => "admin",
            TrunkKind::Originate => "originate",
        }
    }
}

/// A source the originate trunk admits: an exact address, or any port of an IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllowRule {
    Addr(SocketAddr),
    Ip(IpAddr),
}

impl AllowRule {
    fn admits(&self, src: SocketAddr) -> bool {
        match self {
            AllowRule::Addr(a) => *a == src,
            AllowRule::Ip(ip) => *ip == src.ip(),
        }
    }
}

/// Static settings of an endpoint.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    pub kind: TrunkKind,
    /// Our address as others reach it (Via sent-by, Contact).
    pub local: SocketAddr,
    pub limits: Limits,
    pub per_source_rate: u32,
    pub per_source_burst: u32,
    pub max_sources: usize,
    pub max_transactions: usize,
    /// Pending application events before new requests get 503.
    pub queue_depth: usize,
    /// `Some` restricts sources before parsing (the originate trunk).
    pub allow_sources: Option<Vec<AllowRule>>,
    /// `User-Agent` / `Server` value.
    pub user_agent: String,
    /// Seed for tags, branches and Call-IDs (tests pass a fixed one).
    pub rng_seed: u64,
}

/// Bytes to put on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub route: Route,
    pub bytes: Vec<u8>,
}

/// What the application is told.
#[derive(Debug)]
pub enum Event {
    /// A request for the application, inside server transaction `id`; answer with
    /// [`Endpoint::respond`].
    Request {
        id: ServerTxnId,
        route: Route,
        info: RequestInfo,
        msg: Box<Message>,
    },
    /// An ACK for a 2xx or otherwise outside a transaction (the dialog layer's business).
    Ack { route: Route, msg: Box<Message> },
    /// The caller cancelled request `id` (RFC 3261 §9.2); answer it with 487.
    Cancelled { id: ServerTxnId },
    /// A response to our client transaction `id` (provisional or final).
    Response { id: ClientTxnId, msg: Box<Message> },
    /// A response that matched no transaction (e.g. a retransmitted 2xx to INVITE).
    StrayResponse { route: Route, msg: Box<Message> },
    /// Our client transaction `id` got no final response (Timer B/F).
    Timeout { id: ClientTxnId },
    /// The originate trunk refused a request (logged at warn by the runtime, audited).
    Refused {
        route: Route,
        method: Method,
        call_id: String,
    },
}

/// Counters an operator can read (and the runtime logs periodically).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub received: u64,
    pub dropped_not_allowed: u64,
    pub dropped_rate: u64,
    pub dropped_malformed: u64,
    pub dropped_stray: u64,
    pub answered_stateless: u64,
    pub rejected_4xx: u64,
    pub refused_originate: u64,
    pub overload_503: u64,
    pub retransmissions_absorbed: u64,
    pub app_timeouts: u64,
}

/// A trunk's SIP endpoint.
pub struct Endpoint {
    cfg: EndpointConfig,
    rng: StdRng,
    tag_secret: u64,
    limiter: SourceLimiter,
    next_id: u64,
    /// Keyed by branch and CSeq method: a CANCEL shares its INVITE's branch (RFC 3261 §17.1.3).
    clients: HashMap<(String, Method), ClientTxn>,
    servers: HashMap<ServerKey, ServerTxn>,
    server_ids: HashMap<ServerTxnId, ServerKey>,
    dialogs: HashSet<String>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl Endpoint {
    /// A new endpoint with empty tables.
    pub fn new(cfg: EndpointConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(cfg.rng_seed);
        let tag_secret = rng.next_u64();
        Endpoint {
            limiter: SourceLimiter::new(cfg.per_source_rate, cfg.per_source_burst, cfg.max_sources),
            cfg,
            rng,
            tag_secret,
            next_id: 1,
            clients: HashMap::new(),
            servers: HashMap::new(),
            server_ids: HashMap::new(),
            dialogs: HashSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// The endpoint's settings.
    pub fn config(&self) -> &EndpointConfig {
        &self.cfg
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// A datagram arrived from `src`.
    pub fn handle_datagram(&mut self, now: Instant, src: SocketAddr, data: &[u8]) {
        self.stats.received += 1;
        if !self.admit(now, src) {
            return;
        }
        // RFC 5626 §4.4.1 keep-alive (CRLF on its own): nothing to do.
        if data.iter().all(|b| *b == b'\r' || *b == b'\n') {
            return;
        }
        match parse_datagram(data, &self.cfg.limits) {
            Ok(msg) => self.dispatch(
                now,
                Route {
                    addr: src,
                    conn: None,
                },
                msg,
            ),
            Err(_) => self.stats.dropped_malformed += 1,
        }
    }

    /// A message framed from stream connection `conn` (see `parse_stream`) arrived.
    pub fn handle_stream_message(
        &mut self,
        now: Instant,
        src: SocketAddr,
        conn: u64,
        msg: Message,
    ) {
        self.stats.received += 1;
        if !self.admit(now, src) {
            return;
        }
        self.dispatch(
            now,
            Route {
                addr: src,
                conn: Some(conn),
            },
            msg,
        );
    }

    /// Whether a stream connection from `src` may be accepted at all.
    pub fn admits_source(&self, src: SocketAddr) -> bool {
        match &self.cfg.allow_sources {
            Some(rules) => rules.iter().any(|r| r.admits(src)),
            None => true,
        }
    }

    /// A stream-level framing error on a connection from `src` (counted, the runtime closes it).
    pub fn note_malformed(&mut self) {
        self.stats.dropped_malformed += 1;
    }

    /// Answer server transaction `id`.
    pub fn respond(
        &mut self,
        now: Instant,
        id: ServerTxnId,
        req: &Message,
        code: u16,
        reason: &str,
        extras: &Extras<'_>,
    ) {
        let Some(key) = self.server_ids.get(&id).cloned() else {
            return;
        };
        let Some(txn) = self.servers.get_mut(&key) else {
            return;
        };
        if txn.final_sent {
            return;
        }
        let bytes = build::response(
            req,
            code,
            reason,
            Some(&txn.to_tag),
            &self.cfg.user_agent,
            extras,
        );
        txn.last_response = Some(bytes.clone());
        if code >= 200 {
            txn.final_sent = true;
            let unreliable = txn.route.unreliable();
            if key.method == Method::Invite {
                // RFC 3261 §17.2.1 (non-2xx, Timer G/H) and §13.3.1.4 (2xx retransmitted by
                // the UAS core until ACK): both are resent until an ACK or 64·T1.
                txn.retransmit_at = unreliable.then(|| now + T1);
                txn.interval = T1;
                txn.expires_at = Some(now + 64 * T1);
            } else {
                // §17.2.2 Timer J: 64·T1 on UDP, zero on reliable transports.
                txn.expires_at = Some(if unreliable { now + 64 * T1 } else { now });
            }
        }
        self.transmits.push_back(Transmit {
            route: txn.route,
            bytes,
        });
    }

    /// The To tag server transaction `id` puts on its responses (the UAS's dialog tag,
    /// RFC 3261 §12.1.1). `None` once the transaction is gone.
    pub fn server_to_tag(&self, id: ServerTxnId) -> Option<&str> {
        let key = self.server_ids.get(&id)?;
        self.servers.get(key).map(|t| t.to_tag.as_str())
    }

    /// Start a client transaction: builds the request, sends it, returns its id.
    pub fn send_request(
        &mut self,
        now: Instant,
        route: Route,
        parts: &OutgoingRequest<'_>,
        extras: &Extras<'_>,
    ) -> ClientTxnId {
        let id = ClientTxnId(self.fresh_id());
        let branch = format!("{MAGIC_COOKIE}{}", self.token());
        let transport = if route.conn.is_some() { "TCP" } else { "UDP" };
        let sent_by = self.cfg.local.to_string();
        let rp = RequestParts {
            method: parts.method,
            uri: parts.uri,
            via_sent_by: &sent_by,
            transport,
            branch: &branch,
            from: parts.from,
            from_tag: parts.from_tag,
            to: parts.to,
            to_tag: parts.to_tag,
            call_id: parts.call_id,
            cseq: parts.cseq,
            max_forwards: 70,
        };
        let bytes = build::request(&rp, &self.cfg.user_agent, extras);
        self.transmits.push_back(Transmit {
            route,
            bytes: bytes.clone(),
        });
        let txn = ClientTxn::new(id, branch.clone(), parts.method.clone(), route, bytes, now);
        self.clients.insert((branch, parts.method.clone()), txn);
        id
    }

    /// Cancel the pending INVITE client transaction `id` (RFC 3261 §9.1): a CANCEL with the
    /// INVITE's branch, Request-URI, Call-ID, From, To and CSeq number goes out in its own
    /// non-INVITE transaction, which the endpoint runs itself (no events). Before any
    /// provisional response the CANCEL is held until one arrives (§9.1 SHOULD NOT). The final
    /// response to the INVITE (normally 487) is then ACKed like any non-2xx (§17.1.1.3).
    /// Returns `false` if `id` is not a pending INVITE.
    pub fn cancel(&mut self, now: Instant, id: ClientTxnId) -> bool {
        let Some(key) = self
            .clients
            .iter()
            .find(|(_, t)| t.id == id && t.method == Method::Invite && t.completed_ack.is_none())
            .map(|(k, _)| k.clone())
        else {
            return false;
        };
        let proceeding = match self.clients.get_mut(&key) {
            Some(txn) if !txn.proceeding => {
                txn.cancel_wanted = true;
                false
            }
            Some(_) => true,
            None => false,
        };
        if proceeding {
            self.send_cancel(now, &key.0);
        }
        true
    }

    /// Send bytes outside any transaction (ACK for a 2xx, RFC 3261 §13.2.2.4).
    pub fn send_raw(&mut self, route: Route, bytes: Vec<u8>) {
        self.transmits.push_back(Transmit { route, bytes });
    }

    /// A fresh random token for tags, branches and Call-IDs (hex, 64 bits).
    pub fn token(&mut self) -> String {
        format!("{:016x}", self.rng.next_u64())
    }

    /// Mark a Call-ID as one of our dialogs: the originate trunk admits its in-dialog requests.
    pub fn add_dialog(&mut self, call_id: &str) {
        if self.dialogs.len() < self.cfg.max_transactions {
            self.dialogs.insert(call_id.to_string());
        }
    }

    /// Forget a dialog.
    pub fn remove_dialog(&mut self, call_id: &str) {
        self.dialogs.remove(call_id);
    }

    /// Next bytes to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next application event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let c = self.clients.values().map(ClientTxn::next_deadline).min();
        let s = self.servers.values().map(ServerTxn::next_deadline).min();
        match (c, s) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fire every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut timed_out = Vec::new();
        for (key, txn) in self.clients.iter_mut() {
            if txn.deadline <= now {
                timed_out.push(key.clone());
            } else if txn.retransmit_at.is_some_and(|r| r <= now) {
                self.transmits.push_back(Transmit {
                    route: txn.route,
                    bytes: txn.bytes.clone(),
                });
                txn.backoff(now);
            }
        }
        for key in timed_out {
            // Timer D ends a Completed INVITE quietly; the endpoint's own CANCEL has no
            // listener; everything else is Timer B/F, the application's business.
            if let Some(txn) = self.clients.remove(&key) {
                if txn.completed_ack.is_none() && !txn.internal {
                    self.events.push_back(Event::Timeout { id: txn.id });
                }
            }
        }
        let mut expired = Vec::new();
        let mut app_late = Vec::new();
        for (key, txn) in self.servers.iter_mut() {
            if txn.expires_at.is_some_and(|e| e <= now) {
                expired.push(key.clone());
                continue;
            }
            if !txn.final_sent && txn.app_deadline <= now {
                app_late.push(key.clone());
                continue;
            }
            if txn.retransmit_at.is_some_and(|r| r <= now) {
                if let Some(bytes) = &txn.last_response {
                    self.transmits.push_back(Transmit {
                        route: txn.route,
                        bytes: bytes.clone(),
                    });
                }
                txn.interval = (txn.interval * 2).min(T2);
                txn.retransmit_at = Some(now + txn.interval);
            }
        }
        for key in expired {
            if let Some(txn) = self.servers.remove(&key) {
                self.server_ids.remove(&txn.id);
            }
        }
        for key in app_late {
            // The application never answered: answer for it so the peer is not left hanging.
            if let Some(txn) = self.servers.get_mut(&key) {
                self.stats.app_timeouts += 1;
                txn.final_sent = true;
                let bytes = std::mem::take(&mut txn.fallback);
                txn.last_response = Some(bytes.clone());
                txn.expires_at = Some(now + 64 * T1);
                // RFC 3261 §17.2.1: a final answer to an INVITE is resent until ACKed.
                txn.retransmit_at =
                    (key.method == Method::Invite && txn.route.unreliable()).then(|| now + T1);
                txn.interval = T1;
                self.transmits.push_back(Transmit {
                    route: txn.route,
                    bytes,
                });
            }
        }
    }

    /// Number of live server and client transactions.
    pub fn transactions(&self) -> usize {
        self.servers.len() + self.clients.len()
    }

    fn admit(&mut self, now: Instant, src: SocketAddr) -> bool {
        if !self.admits_source(src) {
            self.stats.dropped_not_allowed += 1;
            return false;
        }
        if !self.limiter.admit(now, src.ip()) {
            self.stats.dropped_rate += 1;
            return false;
        }
        true
    }

    fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn dispatch(&mut self, now: Instant, route: Route, msg: Message) {
        if let StartLine::Response { code, .. } = msg.start {
            self.on_response(now, route, code, msg);
            return;
        }
        let is_ack = matches!(
            msg.start,
            StartLine::Request {
                method: Method::Ack,
                ..
            }
        );
        let info = match validate_request(&msg) {
            Ok(info) => info,
            Err(rej) => {
                if !is_ack {
                    self.stats.rejected_4xx += 1;
                    let extras = Extras {
                        headers: rej.extra.clone(),
                        body: None,
                    };
                    self.stateless(route, &msg, rej.code, rej.reason, &extras);
                }
                return;
            }
        };
        // Retransmission or ACK of a known server transaction.
        if self.absorb(now, route, &info) {
            return;
        }
        if info.method == Method::Ack {
            self.events.push_back(Event::Ack {
                route,
                msg: Box::new(msg),
            });
            return;
        }
        if self.cfg.kind == TrunkKind::Originate {
            let in_dialog = info.to_tag.is_some() && self.dialogs.contains(&info.call_id);
            // Only requests inside dialogs we started pass; REFER and INVITE (Replaces,
            // re-INVITE) are refused there too (issue: callback dialog is ours alone).
            if !in_dialog || matches!(info.method, Method::Refer | Method::Invite) {
                self.stats.refused_originate += 1;
                self.stateless(route, &msg, 403, "Forbidden", &Extras::default());
                self.events.push_back(Event::Refused {
                    route,
                    method: info.method.clone(),
                    call_id: info.call_id.clone(),
                });
                return;
            }
        }
        match &info.method {
            Method::Options => {
                self.stats.answered_stateless += 1;
                let extras = Extras {
                    headers: vec![
                        ("Allow", ALLOW.to_string()),
                        (
                            "Accept",
                            "application/sdp, text/plain, application/dtmf-relay".to_string(),
                        ),
                        ("Supported", String::new()),
                    ],
                    body: None,
                };
                self.stateless(route, &msg, 200, "OK", &extras);
            }
            Method::Cancel => self.on_cancel(route, &msg, &info),
            Method::Invite | Method::Message | Method::Info | Method::Bye => {
                let accepted: &[&str] = match info.method {
                    Method::Invite => &["application/sdp"],
                    Method::Message => &["text/plain"],
                    Method::Info => &["application/dtmf-relay", "application/dtmf"],
                    _ => &[],
                };
                if let Err(rej) = check_content(&msg, &info.method, accepted) {
                    self.stats.rejected_4xx += 1;
                    let extras = Extras {
                        headers: rej.extra.clone(),
                        body: None,
                    };
                    self.stateless(route, &msg, rej.code, rej.reason, &extras);
                    return;
                }
                self.hand_to_application(now, route, info, msg);
            }
            Method::Extension(_) => {
                self.stats.rejected_4xx += 1;
                self.stateless(route, &msg, 501, "Not Implemented", &allow_extras());
            }
            _ => {
                self.stats.rejected_4xx += 1;
                self.stateless(route, &msg, 405, "Method Not Allowed", &allow_extras());
            }
        }
    }

    fn hand_to_application(&mut self, now: Instant, route: Route, info: RequestInfo, msg: Message) {
        if self.servers.len() >= self.cfg.max_transactions
            || self.events.len() >= self.cfg.queue_depth
        {
            self.stats.overload_503 += 1;
            let extras = Extras {
                headers: vec![("Retry-After", "5".to_string())],
                body: None,
            };
            self.stateless(route, &msg, 503, "Service Unavailable", &extras);
            return;
        }
        let key = server_key(&info);
        let id = ServerTxnId(self.fresh_id());
        let to_tag = info.to_tag.clone().unwrap_or_else(|| self.token());
        let fallback = build::response(
            &msg,
            500,
            "Server Internal Error",
            Some(&to_tag),
            &self.cfg.user_agent,
            &Extras {
                headers: vec![("Retry-After", "30".to_string())],
                body: None,
            },
        );
        let app_wait = if info.method == Method::Invite {
            Duration::from_secs(300)
        } else {
            64 * T1
        };
        self.servers.insert(
            key.clone(),
            ServerTxn {
                id,
                key: key.clone(),
                route,
                to_tag,
                last_response: None,
                final_sent: false,
                retransmit_at: None,
                interval: T1,
                expires_at: None,
                app_deadline: now + app_wait,
                fallback,
            },
        );
        self.server_ids.insert(id, key);
        self.events.push_back(Event::Request {
            id,
            route,
            info,
            msg: Box::new(msg),
        });
    }

    /// Handle a retransmitted request or an ACK for one of our server transactions. Returns
    /// whether the request was consumed.
    fn absorb(&mut self, now: Instant, route: Route, info: &RequestInfo) -> bool {
        let key = server_key(info);
        if info.method == Method::Ack {
            // ACK for a non-2xx shares the INVITE's branch; ACK for a 2xx has its own, so
            // fall back to Call-ID + CSeq (RFC 3261 §17.2.3, §13.3.1.4).
            let found = self.servers.iter_mut().find(|(k, _)| {
                k.method == Method::Invite
                    && ((k.branch == key.branch
                        && k.sent_by == key.sent_by
                        && is_rfc3261(&k.branch))
                        || (k.call_id == key.call_id && k.cseq == key.cseq))
            });
            if let Some((_, txn)) = found {
                // An ACK for a 2xx is the dialog's business (RFC 3261 §13.3.1.4: the UAS core,
                // not the transaction, sees it, and it may carry the SDP answer): stop the
                // retransmissions here but still hand it up as `Event::Ack`.
                let acks_2xx = txn.final_sent
                    && txn
                        .last_response
                        .as_deref()
                        .is_some_and(|r| r.starts_with(b"SIP/2.0 2"));
                if txn.final_sent {
                    txn.retransmit_at = None;
                    // Timer I absorbs ACK retransmissions.
                    txn.expires_at = Some(
                        now + if route.unreliable() {
                            T4
                        } else {
                            Duration::ZERO
                        },
                    );
                }
                return !acks_2xx;
            }
            return false;
        }
        if let Some(txn) = self.servers.get(&key) {
            self.stats.retransmissions_absorbed += 1;
            if let Some(bytes) = &txn.last_response {
                self.transmits.push_back(Transmit {
                    route: txn.route,
                    bytes: bytes.clone(),
                });
            }
            return true;
        }
        false
    }

    fn on_cancel(&mut self, route: Route, msg: &Message, info: &RequestInfo) {
        let mut key = server_key(info);
        key.method = Method::Invite;
        match self.servers.get(&key) {
            Some(txn) => {
                let id = txn.id;
                let pending = !txn.final_sent;
                self.stateless(route, msg, 200, "OK", &Extras::default());
                if pending {
                    self.events.push_back(Event::Cancelled { id });
                }
            }
            None => self.stateless(
                route,
                msg,
                481,
                "Call/Transaction Does Not Exist",
                &Extras::default(),
            ),
        }
    }

    fn on_response(&mut self, now: Instant, route: Route, code: u16, msg: Message) {
        let branch = msg
            .header("via")
            .and_then(crate::sip::validate::parse_via)
            .and_then(|v| v.branch);
        let Some(branch) = branch else {
            self.stats.dropped_stray += 1;
            return;
        };
        let Some(method) = msg.method() else {
            self.stats.dropped_stray += 1;
            return;
        };
        let key = (branch, method);
        let Some(txn) = self.clients.get_mut(&key) else {
            if (200..300).contains(&code) {
                self.events.push_back(Event::StrayResponse {
                    route,
                    msg: Box::new(msg),
                });
            } else {
                self.stats.dropped_stray += 1;
            }
            return;
        };
        if let Some(ack) = &txn.completed_ack {
            // RFC 3261 §17.1.1.2 Completed: a retransmitted final response gets the ACK
            // again and is not passed up; late provisionals are dropped.
            if code >= 300 {
                self.stats.retransmissions_absorbed += 1;
                self.transmits.push_back(Transmit {
                    route: txn.route,
                    bytes: ack.clone(),
                });
            }
            return;
        }
        let id = txn.id;
        let internal = txn.internal;
        if code < 200 {
            txn.on_provisional(now);
            if txn.method == Method::Invite && txn.cancel_wanted {
                txn.cancel_wanted = false;
                self.send_cancel(now, &key.0);
            }
        } else if txn.method == Method::Invite && code >= 300 {
            // RFC 3261 §17.1.1.3: the transaction, not the application, ACKs a non-2xx.
            let to = msg.header("to").unwrap_or_default();
            let ack = parse_datagram(&txn.bytes, &self.cfg.limits)
                .ok()
                .and_then(|inv| {
                    build::same_transaction_request(&inv, &Method::Ack, to, &self.cfg.user_agent)
                });
            match ack {
                Some(ack) => {
                    self.transmits.push_back(Transmit {
                        route: txn.route,
                        bytes: ack.clone(),
                    });
                    txn.complete(now, ack);
                }
                // Unreachable for bytes we built ourselves; drop the entry rather than keep a
                // transaction that cannot answer retransmissions.
                None => {
                    self.clients.remove(&key);
                }
            }
        } else {
            self.clients.remove(&key);
        }
        if !internal {
            self.events.push_back(Event::Response {
                id,
                msg: Box::new(msg),
            });
        }
    }

    /// Send the CANCEL for the INVITE with `branch` in its own internal transaction.
    fn send_cancel(&mut self, now: Instant, branch: &str) {
        let cancel_key = (branch.to_string(), Method::Cancel);
        if self.clients.contains_key(&cancel_key) {
            return;
        }
        let Some(invite) = self.clients.get(&(branch.to_string(), Method::Invite)) else {
            return;
        };
        let route = invite.route;
        let built = parse_datagram(&invite.bytes, &self.cfg.limits)
            .ok()
            .and_then(|inv| {
                let to = inv.header("to")?.to_string();
                build::same_transaction_request(&inv, &Method::Cancel, &to, &self.cfg.user_agent)
            });
        let Some(bytes) = built else {
            return;
        };
        let id = ClientTxnId(self.fresh_id());
        self.transmits.push_back(Transmit {
            route,
            bytes: bytes.clone(),
        });
        let mut txn = ClientTxn::new(id, branch.to_string(), Method::Cancel, route, bytes, now);
        txn.internal = true;
        self.clients.insert(cancel_key, txn);
    }

    /// Answer without keeping state. The To-tag is derived from the request so that a
    /// retransmission gets the identical answer (RFC 3261 §8.2.7).
    fn stateless(
        &mut self,
        route: Route,
        req: &Message,
        code: u16,
        reason: &str,
        extras: &Extras<'_>,
    ) {
        if req.header("via").is_none() {
            self.stats.dropped_malformed += 1;
            return;
        }
        let tag = self.derived_tag(req);
        let bytes = build::response(req, code, reason, Some(&tag), &self.cfg.user_agent, extras);
        self.transmits.push_back(Transmit { route, bytes });
    }

    fn derived_tag(&self, req: &Message) -> String {
        // FNV-1a over a per-endpoint secret and the transaction-identifying fields.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ self.tag_secret;
        for part in [req.header("call-id"), req.header("via"), req.header("cseq")] {
            for b in part.unwrap_or("").bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{h:016x}")
    }
}

/// Fields of a request we originate (the endpoint adds Via, branch, Max-Forwards).
#[derive(Clone, Debug)]
pub struct OutgoingRequest<'a> {
    pub method: &'a Method,
    pub uri: &'a str,
    pub from: &'a str,
    pub from_tag: &'a str,
    pub to: &'a str,
    pub to_tag: Option<&'a str>,
    pub call_id: &'a str,
    pub cseq: u32,
}

fn allow_extras() -> Extras<'static> {
    Extras {
        headers: vec![("Allow", ALLOW.to_string())],
        body: None,
    }
}

fn is_rfc3261(branch: &str) -> bool {
    branch.starts_with(MAGIC_COOKIE)
}

fn server_key(info: &RequestInfo) -> ServerKey {
    let method = match info.method {
        Method::Ack => Method::Invite,
        ref m => m.clone(),
    };
    let branch = info.branch.clone().unwrap_or_default();
    if is_rfc3261(&branch) {
        ServerKey {
            branch,
            sent_by: info.sent_by.clone(),
            call_id: info.call_id.clone(),
            cseq: info.cseq,
            method,
        }
    } else {
        // RFC 2543 matching: no usable branch, identify by Call-ID, CSeq and From tag.
        ServerKey {
            branch: info.from_tag.clone().unwrap_or_default(),
            sent_by: info.sent_by.clone(),
            call_id: info.call_id.clone(),
            cseq: info.cseq,
            method,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::parse_datagram;
    use crate::sip::transaction::TIMER_D;

    fn cfg(kind: TrunkKind) -> EndpointConfig {
        EndpointConfig {
            kind,
            local: "127.0.0.1:5070".parse().expect("addr"),
            limits: Limits::default(),
            per_source_rate: 1000,
            per_source_burst: 1000,
            max_sources: 64,
            max_transactions: 4,
            queue_depth: 16,
            allow_sources: None,
            user_agent: "dialback/test".into(),
            rng_seed: 7,
        }
    }

    fn req(method: &str, branch: &str, extra: &str) -> Vec<u8> {
        format!(
            "{method} sip:gate@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch={branch}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:gate@127.0.0.1>{extra}\r\nCall-ID: c-{branch}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn status_of(t: &Transmit) -> u16 {
        parse_datagram(&t.bytes, &Limits::default())
            .expect("response parses")
            .status()
            .expect("is response")
    }

    #[test]
    fn options_is_answered_200_with_allow() {
        let mut ep = Endpoint::new(cfg(TrunkKind::User));
        let now = Instant::now();
        ep.handle_datagram(
            now,
            "127.0.0.1:9".parse().expect("a"),
            &req("OPTIONS", "z9hG4bK1", ""),
        );
        let t = ep.poll_transmit().expect("answer");
        assert_eq!(status_of(&t), 200);
        assert!(String::from_utf8_lossy(&t.bytes).contains("Allow: INVITE"));
    }

    #[test]
    fn unknown_method_gets_501_and_known_unsupported_gets_405() {
        let mut ep = Endpoint::new(cfg(TrunkKind::User));
        let now = Instant::now();
        let src = "127.0.0.1:9".parse().expect("a");
        ep.handle_datagram(now, src, &req("FOO", "z9hG4bK1", ""));
        assert_eq!(status_of(&ep.poll_transmit().expect("t")), 501);
        ep.handle_datagram(now, src, &req("SUBSCRIBE", "z9hG4bK2", ""));
        assert_eq!(status_of(&ep.poll_transmit().expect("t")), 405);
    }

    #[test]
    fn originate_trunk_refuses_requests_outside_its_dialogs() {
        let mut ep = Endpoint::new(cfg(TrunkKind::Originate));
        let now = Instant::now();
        let src = "127.0.0.1:9".parse().expect("a");
        for (i, m) in [
            "INVITE",
            "MESSAGE",
            "OPTIONS",
            "REGISTER",
            "SUBSCRIBE",
            "INFO",
        ]
        .iter()
        .enumerate()
        {
            ep.handle_datagram(now, src, &req(m, &format!("z9hG4bK{i}"), ""));
            assert_eq!(status_of(&ep.poll_transmit().expect("t")), 403, "{m}");
            assert!(matches!(ep.poll_event(), Some(Event::Refused { .. })));
        }
        // A BYE inside a dialog we started passes.
        ep.add_dialog("c-z9hG4bKbye");
        ep.handle_datagram(now, src, &req("BYE", "z9hG4bKbye", ";tag=x"));
        assert!(matches!(ep.poll_event(), Some(Event::Request { .. })));
    }

    #[test]
    fn originate_allowlist_drops_other_sources_before_parsing() {
        let mut c = cfg(TrunkKind::Originate);
        c.allow_sources = Some(vec![AllowRule::Addr("127.0.0.1:5060".parse().expect("a"))]);
        let mut ep = Endpoint::new(c);
        ep.handle_datagram(
            Instant::now(),
            "127.0.0.1:9".parse().expect("a"),
            &req("INVITE", "z9hG4bK1", ""),
        );
        assert!(ep.poll_transmit().is_none());
        assert_eq!(ep.stats().dropped_not_allowed, 1);
    }

    #[test]
    fn retransmitted_request_gets_the_stored_answer() {
        let mut ep = Endpoint::new(cfg(TrunkKind::Admin));
        let now = Instant::now();
        let src = "127.0.0.1:9".parse().expect("a");
        let m = req("MESSAGE", "z9hG4bKm", "");
        ep.handle_datagram(now, src, &m);
        let Some(Event::Request { id, msg, .. }) = ep.poll_event() else {
            panic!("expected a request");
        };
        ep.respond(now, id, &msg, 202, "Accepted", &Extras::default());
        let first = ep.poll_transmit().expect("t");
        ep.handle_datagram(now, src, &m);
        assert_eq!(ep.poll_transmit().expect("t"), first);
        assert!(ep.poll_event().is_none());
        // Timer J frees the entry.
        ep.handle_timeout(now + 64 * T1);
        assert_eq!(ep.transactions(), 0);
    }

    #[test]
    fn ack_for_a_2xx_stops_its_retransmission_and_is_handed_up_but_a_non_2xx_ack_is_not() {
        let mut ep = Endpoint::new(cfg(TrunkKind::Admin));
        let now = Instant::now();
        let src = "127.0.0.1:9".parse().expect("a");
        for (branch, code) in [("z9hG4bKok", 200), ("z9hG4bKno", 486)] {
            ep.handle_datagram(now, src, &req("INVITE", branch, ""));
            let Some(Event::Request { id, msg, .. }) = ep.poll_event() else {
                panic!("expected the INVITE");
            };
            ep.respond(now, id, &msg, code, "X", &Extras::default());
            let tag = ep.server_to_tag(id).expect("live transaction").to_string();
            assert!(
                String::from_utf8_lossy(&ep.poll_transmit().expect("t").bytes)
                    .contains(&format!("tag={tag}"))
            );
            // The 2xx ACK has its own branch (RFC 3261 §13.2.2.4), the non-2xx one the INVITE's.
            let ack_branch = if code == 200 { "z9hG4bKack" } else { branch };
            let ack = String::from_utf8_lossy(&req("ACK", ack_branch, &format!(";tag={tag}")))
                .replace(&format!("c-{ack_branch}"), &format!("c-{branch}"));
            ep.handle_datagram(now, src, ack.as_bytes());
            let handed_up = matches!(ep.poll_event(), Some(Event::Ack { .. }));
            assert_eq!(handed_up, code == 200, "code {code}");
        }
        // Neither final response is retransmitted after its ACK.
        ep.handle_timeout(now + 4 * T1);
        assert!(ep.poll_transmit().is_none());
    }

    #[test]
    fn application_that_never_answers_gets_a_500_sent_for_it() {
        let mut ep = Endpoint::new(cfg(TrunkKind::Admin));
        let now = Instant::now();
        let src = "127.0.0.1:9".parse().expect("a");
        ep.handle_datagram(now, src, &req("MESSAGE", "z9hG4bKlate", ""));
        assert!(matches!(ep.poll_event(), Some(Event::Request { .. })));
        assert!(ep.poll_transmit().is_none());
        ep.handle_timeout(now + 64 * T1);
        let t = ep
            .poll_transmit()
            .expect("500 sent for the silent application");
        assert_eq!(status_of(&t), 500);
        assert_eq!(ep.stats().app_timeouts, 1);
    }

    #[test]
    fn transaction_cap_answers_503() {
        let mut ep = Endpoint::new(cfg(TrunkKind::Admin));
        let now = Instant::now();
        let src = "127.0.0.1:9".parse().expect("a");
        for i in 0..4 {
            ep.handle_datagram(now, src, &req("MESSAGE", &format!("z9hG4bK{i}"), ""));
        }
        ep.handle_datagram(now, src, &req("MESSAGE", "z9hG4bKx", ""));
        let t = ep.poll_transmit().expect("503");
        assert_eq!(status_of(&t), 503);
        assert!(String::from_utf8_lossy(&t.bytes).contains("Retry-After"));
    }

    #[test]
    fn client_transaction_retransmits_then_times_out() {
        let mut ep = Endpoint::new(cfg(TrunkKind::User));
        let now = Instant::now();
        let route = Route {
            addr: "127.0.0.1:5060".parse().expect("a"),
            conn: None,
        };
        let id = ep.send_request(
            now,
            route,
            &OutgoingRequest {
                method: &Method::Register,
                uri: "sip:127.0.0.1:5060",
                from: "sip:u@h",
                from_tag: "f",
                to: "sip:u@h",
                to_tag: None,
                call_id: "c",
                cseq: 1,
            },
            &Extras::default(),
        );
        assert!(ep.poll_transmit().is_some());
        let mut t = now;
        let mut sends = 0;
        while let Some(next) = ep.poll_timeout() {
            t = next;
            ep.handle_timeout(t);
            while ep.poll_transmit().is_some() {
                sends += 1;
            }
        }
        assert_eq!(t, now + 64 * T1);
        assert!(sends >= 9, "E doubles to T2 then repeats: {sends}");
        assert!(matches!(ep.poll_event(), Some(Event::Timeout { id: got }) if got == id));
    }

    fn invite_route() -> Route {
        Route {
            addr: "127.0.0.1:5060".parse().expect("a"),
            conn: None,
        }
    }

    fn send_invite(ep: &mut Endpoint, now: Instant) -> (ClientTxnId, Message) {
        let id = ep.send_request(
            now,
            invite_route(),
            &OutgoingRequest {
                method: &Method::Invite,
                uri: "sip:1001@127.0.0.1",
                from: "sip:gate@127.0.0.1",
                from_tag: "ft",
                to: "sip:1001@127.0.0.1",
                to_tag: None,
                call_id: "inv-1",
                cseq: 3,
            },
            &Extras {
                headers: vec![("Route", "<sip:127.0.0.1:5060;lr>".to_string())],
                body: None,
            },
        );
        let t = ep.poll_transmit().expect("INVITE sent");
        (
            id,
            parse_datagram(&t.bytes, &Limits::default()).expect("parses"),
        )
    }

    /// A response to `req` as the far end would send it.
    fn answer(req: &Message, code: u16, reason: &str, cseq_method: &str) -> Vec<u8> {
        let via = req.header("via").expect("via");
        let from = req.header("from").expect("from");
        let to = req.header("to").expect("to");
        let cseq_n = req
            .header("cseq")
            .and_then(|v| v.split_whitespace().next())
            .expect("cseq");
        let tag = if code > 100 { ";tag=far" } else { "" };
        format!(
            "SIP/2.0 {code} {reason}\r\nVia: {via}\r\nFrom: {from}\r\nTo: {to}{tag}\r\nCall-ID: inv-1\r\nCSeq: {cseq_n} {cseq_method}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn non_2xx_to_invite_is_acked_by_the_transaction_with_the_invite_branch() {
        let mut ep = Endpoint::new(cfg(TrunkKind::Originate));
        let now = Instant::now();
        let (id, invite) = send_invite(&mut ep, now);
        let src = invite_route().addr;
        ep.handle_datagram(now, src, &answer(&invite, 486, "Busy Here", "INVITE"));
        let ack = ep.poll_transmit().expect("ACK sent");
        let ack = parse_datagram(&ack.bytes, &Limits::default()).expect("ACK parses");
        assert_eq!(ack.method(), Some(Method::Ack));
        let StartLine::Request { uri, .. } = &ack.start else {
            panic!("request");
        };
        assert_eq!(uri, "sip:1001@127.0.0.1");
        assert_eq!(ack.header("via"), invite.header("via"));
        assert_eq!(ack.header("from"), invite.header("from"));
        assert_eq!(ack.header("call-id"), Some("inv-1"));
        assert_eq!(ack.header("cseq"), Some("3 ACK"));
        assert_eq!(ack.header("to"), Some("<sip:1001@127.0.0.1>;tag=far"));
        assert_eq!(ack.header("route"), Some("<sip:127.0.0.1:5060;lr>"));
        assert!(matches!(ep.poll_event(), Some(Event::Response { id: got, .. }) if got == id));
        // A retransmitted 486 is absorbed: ACK again, no second event.
        ep.handle_datagram(now, src, &answer(&invite, 486, "Busy Here", "INVITE"));
        let again = ep.poll_transmit().expect("ACK resent");
        assert_eq!(
            parse_datagram(&again.bytes, &Limits::default())
                .expect("parses")
                .method(),
            Some(Method::Ack)
        );
        assert!(ep.poll_event().is_none());
        // Timer D (32 s on UDP) ends the transaction without a Timeout event.
        assert_eq!(ep.poll_timeout(), Some(now + TIMER_D));
        ep.handle_timeout(now + TIMER_D);
        assert_eq!(ep.transactions(), 0);
        assert!(ep.poll_event().is_none());
    }

    #[test]
    fn cancel_waits_for_a_provisional_then_copies_the_invite_and_the_487_is_acked() {
        let mut ep = Endpoint::new(cfg(TrunkKind::Originate));
        let now = Instant::now();
        let (id, invite) = send_invite(&mut ep, now);
        let src = invite_route().addr;
        assert!(ep.cancel(now, id));
        assert!(
            ep.poll_transmit().is_none(),
            "RFC 3261 §9.1: no CANCEL before a 1xx"
        );
        ep.handle_datagram(now, src, &answer(&invite, 180, "Ringing", "INVITE"));
        let cancel = ep.poll_transmit().expect("CANCEL sent after the 180");
        let cancel = parse_datagram(&cancel.bytes, &Limits::default()).expect("parses");
        assert_eq!(cancel.method(), Some(Method::Cancel));
        assert_eq!(cancel.header("via"), invite.header("via"));
        assert_eq!(cancel.header("to"), invite.header("to"));
        assert_eq!(cancel.header("cseq"), Some("3 CANCEL"));
        assert_eq!(cancel.header("route"), invite.header("route"));
        assert!(matches!(ep.poll_event(), Some(Event::Response { .. })));
        // The CANCEL's own 200 shares the branch but matches the CANCEL transaction only.
        ep.handle_datagram(now, src, &answer(&cancel, 200, "OK", "CANCEL"));
        assert!(
            ep.poll_event().is_none(),
            "CANCEL outcome is the endpoint's own"
        );
        assert!(ep.poll_transmit().is_none());
        ep.handle_datagram(
            now,
            src,
            &answer(&invite, 487, "Request Terminated", "INVITE"),
        );
        let ack = ep.poll_transmit().expect("487 ACKed");
        let ack = parse_datagram(&ack.bytes, &Limits::default()).expect("parses");
        assert_eq!(ack.header("cseq"), Some("3 ACK"));
        assert!(
            matches!(ep.poll_event(), Some(Event::Response { id: got, msg }) if got == id && msg.status() == Some(487))
        );
        // A second cancel of a completed INVITE is refused.
        assert!(!ep.cancel(now, id));
    }
}
