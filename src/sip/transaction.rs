//! RFC 3261 §17 transaction state, kept as plain tables with deadlines so the endpoint stays
//! sans-IO: every entry carries the next instant it needs attention and the endpoint's
//! `handle_timeout(now)` walks them.
//!
//! Only what dialback needs is modelled: non-INVITE client transactions (REGISTER, MESSAGE),
//! INVITE client transactions (the callback), and server transactions for requests handed to
//! the application (retransmissions are absorbed and answered from the stored response).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::sip::message::Method;

/// RFC 3261 §17.1.1.1 timer values.
pub const T1: Duration = Duration::from_millis(500);
pub const T2: Duration = Duration::from_secs(4);
pub const T4: Duration = Duration::from_secs(5);
/// RFC 3261 §17.1.1.2 Timer D on an unreliable transport ("at least 32 seconds").
pub const TIMER_D: Duration = Duration::from_secs(32);

/// Identifies a client transaction (our request).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientTxnId(pub u64);

/// Identifies a server transaction (a request handed to the application).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerTxnId(pub u64);

/// Where a message goes: an address and, on TCP, the connection it arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    pub addr: SocketAddr,
    /// `Some` for a stream connection (runtime's id), `None` for UDP.
    pub conn: Option<u64>,
}

impl Route {
    /// Whether retransmission timers apply (unreliable transport, RFC 3261 §17.1.1.2).
    pub fn unreliable(&self) -> bool {
        self.conn.is_none()
    }
}

/// A client transaction in flight.
#[derive(Debug)]
pub struct ClientTxn {
    pub id: ClientTxnId,
    pub branch: String,
    pub method: Method,
    pub route: Route,
    pub bytes: Vec<u8>,
    /// Next retransmission (Timer A/E), if any.
    pub retransmit_at: Option<Instant>,
    pub interval: Duration,
    /// Timer B/F: give up.
    pub deadline: Instant,
    /// A provisional response was seen (INVITE: stop retransmitting, RFC 3261 §17.1.1.2).
    pub proceeding: bool,
    /// INVITE in the Completed state (RFC 3261 §17.1.1.3): the ACK we sent for the final
    /// non-2xx, resent for each retransmission of that response until Timer D (`deadline`).
    pub completed_ack: Option<Vec<u8>>,
    /// INVITE: the application asked to cancel before any provisional response; RFC 3261
    /// §9.1 holds the CANCEL until one arrives.
    pub cancel_wanted: bool,
    /// The endpoint's own transaction (a CANCEL): its outcome raises no application event.
    pub internal: bool,
}

impl ClientTxn {
    /// Start a client transaction at `now` (Timer A/E = T1, Timer B/F = 64·T1).
    pub fn new(
        id: ClientTxnId,
        branch: String,
        method: Method,
        route: Route,
        bytes: Vec<u8>,
        now: Instant,
    ) -> Self {
        let retransmit_at = route.unreliable().then(|| now + T1);
        ClientTxn {
            id,
            branch,
            method,
            route,
            bytes,
            retransmit_at,
            interval: T1,
            deadline: now + 64 * T1,
            proceeding: false,
            completed_ack: None,
            cancel_wanted: false,
            internal: false,
        }
    }

    /// Next instant this transaction needs attention.
    pub fn next_deadline(&self) -> Instant {
        match self.retransmit_at {
            Some(r) if r < self.deadline => r,
            _ => self.deadline,
        }
    }

    /// Advance the retransmission timer after a resend (E doubles up to T2; A doubles).
    pub fn backoff(&mut self, now: Instant) {
        self.interval = if self.method == Method::Invite {
            self.interval * 2
        } else {
            (self.interval * 2).min(T2)
        };
        self.retransmit_at = Some(now + self.interval);
    }

    /// A final non-2xx response to this INVITE arrived and `ack` was sent: enter Completed
    /// and absorb retransmissions until Timer D (RFC 3261 §17.1.1.2: at least 32 s on an
    /// unreliable transport, zero on a reliable one).
    pub fn complete(&mut self, now: Instant, ack: Vec<u8>) {
        self.completed_ack = Some(ack);
        self.retransmit_at = None;
        self.cancel_wanted = false;
        self.deadline = if self.route.unreliable() {
            now + TIMER_D
        } else {
            now
        };
    }

    /// A provisional response arrived.
    pub fn on_provisional(&mut self, now: Instant) {
        self.proceeding = true;
        if self.method == Method::Invite {
            // RFC 3261 §17.1.1.2: no more retransmissions; Timer B still bounds the wait
            // for a final answer, extended by the application's ring timeout.
            self.retransmit_at = None;
            self.deadline = self.deadline.max(now + Duration::from_secs(180));
        } else if self.route.unreliable() {
            // §17.1.2.2: in Proceeding, retransmit every T2.
            self.interval = T2;
            self.retransmit_at = Some(now + T2);
        }
    }
}

/// Key that matches a request to its server transaction (RFC 3261 §17.2.3; the RFC 2543
/// fallback uses Call-ID, CSeq and From tag when the branch lacks the magic cookie).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerKey {
    pub branch: String,
    pub sent_by: String,
    pub call_id: String,
    pub cseq: u32,
    /// ACK matches the INVITE transaction, so INVITE and ACK share `Invite` here.
    pub method: Method,
}

/// A server transaction for a request handed to the application.
#[derive(Debug)]
pub struct ServerTxn {
    pub id: ServerTxnId,
    pub key: ServerKey,
    pub route: Route,
    /// Our to-tag for this request (responses and retransmissions use the same one).
    pub to_tag: String,
    /// Last response sent, for retransmitted requests and Timer G.
    pub last_response: Option<Vec<u8>>,
    pub final_sent: bool,
    /// INVITE: Timer G retransmission of a final non-2xx until ACK.
    pub retransmit_at: Option<Instant>,
    pub interval: Duration,
    /// When the entry is dropped (Timer H, I or J); `None` while waiting for the application.
    pub expires_at: Option<Instant>,
    /// Bound on how long the application may take before we answer 500 ourselves.
    pub app_deadline: Instant,
    /// The `500` sent for the application if it misses `app_deadline` (built up front, so
    /// the request itself need not be kept).
    pub fallback: Vec<u8>,
}

impl ServerTxn {
    /// Next instant this transaction needs attention.
    pub fn next_deadline(&self) -> Instant {
        let mut d = self.expires_at.unwrap_or(self.app_deadline);
        if let Some(r) = self.retransmit_at {
            d = d.min(r);
        }
        d
    }
}
