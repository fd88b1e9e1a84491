//! A trunk: one [`Endpoint`] (one socket's worth of SIP) plus, for the user and admin trunks,
//! the [`Registration`] that keeps its AOR bound at the PBX. Sans-IO glue: registration asks
//! for REGISTERs, the endpoint runs their transactions, outcomes flow back.

use std::net::SocketAddr;
use std::time::Instant;

use crate::sip::build::Extras;
use crate::sip::endpoint::{Endpoint, EndpointConfig, Event, OutgoingRequest, Transmit};
use crate::sip::message::{Message, Method};
use crate::sip::register::{RegEvent, RegState, Registration, RegistrationConfig};
use crate::sip::transaction::{ClientTxnId, Route};

/// What a trunk reports to the runtime.
#[derive(Debug)]
pub enum TrunkEvent {
    /// An endpoint event for the application (requests, responses to its own requests, ...).
    App(Event),
    /// A registration state change.
    Registration(RegEvent),
}

/// Registration settings of a trunk that registers.
#[derive(Clone, Debug)]
pub struct TrunkRegistration {
    pub config: RegistrationConfig,
    /// Where REGISTERs go: the outbound proxy if configured, else the registrar.
    pub destination: SocketAddr,
}

struct RegSlot {
    reg: Registration,
    dest: Route,
    call_id: String,
    from_tag: String,
    txn: Option<ClientTxnId>,
    /// Registration goes over a stream connection; hold REGISTERs until one is up.
    stream_required: bool,
}

/// One trunk's SIP state.
pub struct Trunk {
    ep: Endpoint,
    reg: Option<RegSlot>,
    events: std::collections::VecDeque<TrunkEvent>,
}

impl Trunk {
    /// A trunk; registration starts at the first [`Trunk::handle_timeout`] or input.
    pub fn new(endpoint: EndpointConfig, registration: Option<TrunkRegistration>) -> Self {
        let seed = endpoint.rng_seed;
        let mut ep = Endpoint::new(endpoint);
        let reg = registration.map(|r| {
            let host = ep.config().local.to_string();
            RegSlot {
                reg: Registration::new(r.config, seed.rotate_left(32) ^ 0x5bd1_e995),
                dest: Route {
                    addr: r.destination,
                    conn: None,
                },
                call_id: format!("{}@{}", ep.token(), host),
                from_tag: ep.token(),
                txn: None,
                stream_required: false,
            }
        });
        Trunk {
            ep,
            reg,
            events: Default::default(),
        }
    }

    /// The endpoint, for the application's answers and requests.
    pub fn endpoint(&mut self) -> &mut Endpoint {
        &mut self.ep
    }

    /// Send registrations over stream connection `conn` (`None`: UDP or no connection yet).
    pub fn set_registration_conn(&mut self, conn: Option<u64>) {
        if let Some(slot) = self.reg.as_mut() {
            slot.dest.conn = conn;
        }
    }

    /// Register over a stream connection only: REGISTERs wait for
    /// [`Trunk::set_registration_conn`].
    pub fn require_registration_stream(&mut self) {
        if let Some(slot) = self.reg.as_mut() {
            slot.stream_required = true;
        }
    }

    /// Registration state, if this trunk registers.
    pub fn registration_state(&self) -> Option<RegState> {
        self.reg.as_ref().map(|r| r.reg.state())
    }

    /// A datagram arrived.
    pub fn handle_datagram(&mut self, now: Instant, src: SocketAddr, data: &[u8]) {
        self.ep.handle_datagram(now, src, data);
        self.pump(now);
    }

    /// A framed stream message arrived on connection `conn`.
    pub fn handle_stream_message(
        &mut self,
        now: Instant,
        src: SocketAddr,
        conn: u64,
        msg: Message,
    ) {
        self.ep.handle_stream_message(now, src, conn, msg);
        self.pump(now);
    }

    /// Timers due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
        if let Some(slot) = self.reg.as_mut() {
            slot.reg.handle_timeout(now);
        }
        self.pump(now);
    }

    /// Start removing the binding (clean shutdown).
    pub fn unregister(&mut self, now: Instant) {
        if let Some(slot) = self.reg.as_mut() {
            slot.reg.unregister();
        }
        self.pump(now);
    }

    /// Whether an un-REGISTER is still in flight.
    pub fn unregistering(&self) -> bool {
        self.reg
            .as_ref()
            .is_some_and(|s| s.reg.state() == RegState::Unregistering)
    }

    /// Next bytes to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.ep.poll_transmit()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<TrunkEvent> {
        self.events.pop_front()
    }

    /// Next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let e = self.ep.poll_timeout();
        let r = self.reg.as_ref().and_then(|s| s.reg.poll_timeout());
        match (e, r) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn pump(&mut self, now: Instant) {
        while let Some(ev) = self.ep.poll_event() {
            let ours = |id: &ClientTxnId, slot: &Option<RegSlot>| {
                slot.as_ref().is_some_and(|s| s.txn == Some(*id))
            };
            match ev {
                Event::Response { id, msg } if ours(&id, &self.reg) => {
                    if let Some(slot) = self.reg.as_mut() {
                        if msg.status().is_some_and(|c| c >= 200) {
                            slot.txn = None;
                        }
                        slot.reg.handle_response(now, &msg);
                    }
                }
                Event::Timeout { id } if ours(&id, &self.reg) => {
                    if let Some(slot) = self.reg.as_mut() {
                        slot.txn = None;
                        slot.reg.handle_transaction_timeout(now);
                    }
                }
                other => self.events.push_back(TrunkEvent::App(other)),
            }
        }
        let Some(slot) = self.reg.as_mut() else {
            return;
        };
        let can_send = !slot.stream_required || slot.dest.conn.is_some();
        while let Some(req) = can_send.then(|| slot.reg.poll_request()).flatten() {
            let cfg = slot.reg.config().clone();
            let mut headers = vec![
                (
                    "Contact",
                    format!("<{}>;expires={}", cfg.contact, req.expires_s),
                ),
                ("Expires", req.expires_s.to_string()),
                (
                    "Allow",
                    "INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, INFO".to_string(),
                ),
            ];
            if let Some((name, value)) = req.authorization {
                headers.push((name, value));
            }
            let extras = Extras {
                headers,
                body: None,
            };
            let id = self.ep.send_request(
                now,
                slot.dest,
                &OutgoingRequest {
                    method: &Method::Register,
                    uri: &cfg.registrar_uri,
                    from: &cfg.aor,
                    from_tag: &slot.from_tag,
                    to: &cfg.aor,
                    to_tag: None,
                    call_id: &slot.call_id,
                    cseq: req.cseq,
                },
                &extras,
            );
            slot.txn = Some(id);
        }
        while let Some(ev) = slot.reg.poll_event() {
            self.events.push_back(TrunkEvent::Registration(ev));
        }
    }
}
