//! The byte pump between the callback modem and a `tcp:HOST:PORT` target (issue 5 point 5:
//! "back-pressure both ways (a 300 bit/s line cannot be flooded by a fast target), idle and
//! total-time limits, orderly end (drain, then hang up), carrier loss ends the session").
//!
//! Sans-IO: the runtime owns the modem and the TCP socket and moves bytes through here. Each
//! direction is a bounded buffer: `push_*` accepts only what fits and returns how much it took
//! (the caller keeps or stops reading the rest), and [`Bridge::read_target`] /
//! [`Bridge::read_line`] say whether the runtime should read its source at all (false once a
//! buffer is at its high-water mark, true again once it drained below it). No sockets, no clock
//! reads: `now: Instant` is passed in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::gate::audit::Reason;

/// Sizes of the two buffers; the runtime builds it from the dialplan's modem settings.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// Most bytes waiting for the modem (target → line).
    pub to_line_cap: usize,
    /// Most bytes waiting for the TCP target (line → target).
    pub to_target_cap: usize,
    /// Hang up after this long without a byte in either direction (`Modem::idle_s`).
    pub idle: Duration,
    /// Hang up this long after the bridge started (`Modem::max_s`).
    pub max: Duration,
}

impl BridgeConfig {
    /// Buffers for a modem line: 1 KiB towards the line (about 34 s at 300 bit/s), 4 KiB
    /// towards the target.
    pub fn for_line(idle: Duration, max: Duration) -> Self {
        BridgeConfig {
            to_line_cap: 1024,
            to_target_cap: 4096,
            idle,
            max,
        }
    }
}

/// What the runtime must act on, drained with [`Bridge::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeEvent {
    /// Close the TCP connection to the target; bytes still owed to it are dropped (the
    /// session is ending).
    CloseTarget,
    /// Everything owed to the line was taken (or [`super::DRAIN_MAX`] passed): hang up.
    Hangup { reason: Reason },
    /// The session ended: audit `EventCode::SessionEnd` with `reason`.
    Ended { reason: Reason },
}

/// The byte pump of one callback session to a TCP target.
#[derive(Debug)]
pub struct Bridge {
    cfg: BridgeConfig,
    to_line: VecDeque<u8>,
    to_target: VecDeque<u8>,
    /// Reading the target paused until `to_line` drains below half its capacity (hysteresis,
    /// so a full buffer does not flap the socket interest on every byte).
    target_paused: bool,
    line_paused: bool,
    state: State,
    last_activity: Instant,
    max_deadline: Instant,
    events: VecDeque<BridgeEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// The target closed or a limit hit: send what is owed to the line, then hang up.
    Draining {
        reason: Reason,
        deadline: Instant,
    },
    Closed,
}

impl Bridge {
    pub fn new(cfg: BridgeConfig, now: Instant) -> Self {
        let max_deadline = super::later(now, cfg.max);
        Bridge {
            to_line: VecDeque::with_capacity(cfg.to_line_cap),
            to_target: VecDeque::with_capacity(cfg.to_target_cap),
            cfg,
            target_paused: false,
            line_paused: false,
            state: State::Open,
            last_activity: now,
            max_deadline,
            events: VecDeque::new(),
        }
    }

    /// Bytes from the modem for the target; returns how many were accepted (the rest did not
    /// fit, or the bridge is no longer open).
    pub fn push_from_line(&mut self, now: Instant, bytes: &[u8]) -> usize {
        if self.state != State::Open {
            return 0;
        }
        let n = push_bounded(&mut self.to_target, self.cfg.to_target_cap, bytes);
        if n > 0 {
            self.last_activity = now;
        }
        if self.to_target.len() >= self.cfg.to_target_cap {
            self.line_paused = true;
        }
        n
    }

    /// Bytes from the target for the modem; returns how many were accepted.
    pub fn push_from_target(&mut self, now: Instant, bytes: &[u8]) -> usize {
        if self.state != State::Open {
            return 0;
        }
        let n = push_bounded(&mut self.to_line, self.cfg.to_line_cap, bytes);
        if n > 0 {
            self.last_activity = now;
        }
        if self.to_line.len() >= self.cfg.to_line_cap {
            self.target_paused = true;
        }
        n
    }

    /// Up to `max` bytes for the modem, in order.
    pub fn pull_to_line(&mut self, max: usize) -> Vec<u8> {
        let n = max.min(self.to_line.len());
        let out: Vec<u8> = self.to_line.drain(..n).collect();
        if self.to_line.len() <= self.cfg.to_line_cap / 2 {
            self.target_paused = false;
        }
        if let State::Draining { reason, .. } = self.state {
            if self.to_line.is_empty() {
                self.finish(reason);
            }
        }
        out
    }

    /// Up to `max` bytes for the target, in order.
    pub fn pull_to_target(&mut self, max: usize) -> Vec<u8> {
        let n = max.min(self.to_target.len());
        let out: Vec<u8> = self.to_target.drain(..n).collect();
        if self.to_target.len() <= self.cfg.to_target_cap / 2 {
            self.line_paused = false;
        }
        out
    }

    /// Whether the runtime should read the TCP socket now (false while the line side is at
    /// its high-water mark, and once the bridge is no longer open).
    pub fn read_target(&self) -> bool {
        self.state == State::Open && !self.target_paused
    }

    /// Whether the runtime should take bytes from the modem now.
    pub fn read_line(&self) -> bool {
        self.state == State::Open && !self.line_paused
    }

    /// The target closed its side: drain what is owed to the line, then hang up.
    pub fn target_closed(&mut self, now: Instant) {
        self.drain_then_hang_up(now, Reason::Hangup);
    }

    /// Carrier lost, the call ended or the runtime shuts down: close at once.
    pub fn end(&mut self, reason: Reason) {
        if self.state == State::Closed {
            return;
        }
        if self.state == State::Open {
            // A draining bridge already asked for the close.
            self.events.push_back(BridgeEvent::CloseTarget);
        }
        self.to_line.clear();
        self.to_target.clear();
        self.state = State::Closed;
        self.events.push_back(BridgeEvent::Ended { reason });
    }

    pub fn poll_event(&mut self) -> Option<BridgeEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Open => Some(self.idle_deadline().min(self.max_deadline)),
            State::Draining { deadline, .. } => Some(deadline),
            State::Closed => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Open => {
                if now >= self.max_deadline {
                    self.drain_then_hang_up(now, Reason::DurationLimit);
                } else if now >= self.idle_deadline() {
                    self.drain_then_hang_up(now, Reason::IdleTimeout);
                }
            }
            State::Draining { reason, deadline } if now >= deadline => {
                self.to_line.clear();
                self.finish(reason);
            }
            State::Draining { .. } | State::Closed => {}
        }
    }

    /// Bytes waiting for the modem; at most `to_line_cap`.
    pub fn to_line_len(&self) -> usize {
        self.to_line.len()
    }

    /// Bytes waiting for the target; at most `to_target_cap`.
    pub fn to_target_len(&self) -> usize {
        self.to_target.len()
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    fn drain_then_hang_up(&mut self, now: Instant, reason: Reason) {
        if self.state != State::Open {
            return;
        }
        self.events.push_back(BridgeEvent::CloseTarget);
        self.to_target.clear();
        if self.to_line.is_empty() {
            self.finish(reason);
        } else {
            self.state = State::Draining {
                reason,
                deadline: super::later(now, super::DRAIN_MAX),
            };
        }
    }

    fn finish(&mut self, reason: Reason) {
        self.state = State::Closed;
        self.events.push_back(BridgeEvent::Hangup { reason });
        self.events.push_back(BridgeEvent::Ended { reason });
    }

    fn idle_deadline(&self) -> Instant {
        super::later(self.last_activity, self.cfg.idle)
    }
}

/// Appends what fits of `bytes` under `cap`; returns how many.
fn push_bounded(buf: &mut VecDeque<u8>, cap: usize, bytes: &[u8]) -> usize {
    let n = cap.saturating_sub(buf.len()).min(bytes.len());
    buf.extend(bytes.iter().take(n));
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(to_line: usize, to_target: usize) -> BridgeConfig {
        BridgeConfig {
            to_line_cap: to_line,
            to_target_cap: to_target,
            idle: Duration::from_secs(60),
            max: Duration::from_secs(600),
        }
    }

    fn events(b: &mut Bridge) -> Vec<BridgeEvent> {
        std::iter::from_fn(|| b.poll_event()).collect()
    }

    #[test]
    fn fast_target_is_held_at_the_line_capacity_and_resumes_below_half() {
        let t0 = Instant::now();
        let mut b = Bridge::new(cfg(100, 100), t0);
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        assert_eq!(b.push_from_target(t0, &data), 100);
        assert_eq!(b.to_line_len(), 100);
        assert!(!b.read_target());
        assert_eq!(b.push_from_target(t0, &data[100..]), 0);
        assert_eq!(b.pull_to_line(30), data[..30]);
        assert!(!b.read_target(), "70 left is above the low-water mark");
        assert_eq!(b.pull_to_line(20), data[30..50]);
        assert!(b.read_target());
    }

    #[test]
    fn both_directions_deliver_everything_in_order_through_small_buffers() {
        let t0 = Instant::now();
        let mut b = Bridge::new(cfg(16, 8), t0);
        let down: Vec<u8> = (0..500u32).map(|i| (i * 7) as u8).collect();
        let up: Vec<u8> = (0..300u32).map(|i| (i * 13) as u8).collect();
        let (mut got_down, mut got_up) = (Vec::new(), Vec::new());
        let (mut d, mut u) = (0, 0);
        while got_down.len() < down.len() || got_up.len() < up.len() {
            d += b.push_from_target(t0, &down[d..]);
            u += b.push_from_line(t0, &up[u..]);
            assert!(b.to_line_len() <= 16 && b.to_target_len() <= 8);
            got_down.extend(b.pull_to_line(3));
            got_up.extend(b.pull_to_target(5));
        }
        assert_eq!(got_down, down);
        assert_eq!(got_up, up);
    }

    #[test]
    fn target_close_drains_the_line_then_hangs_up() {
        let t0 = Instant::now();
        let mut b = Bridge::new(cfg(64, 64), t0);
        b.push_from_target(t0, b"bye from target\r\n");
        b.target_closed(t0);
        assert_eq!(events(&mut b), vec![BridgeEvent::CloseTarget]);
        assert!(!b.read_target() && !b.read_line());
        assert_eq!(b.pull_to_line(5), b"bye f");
        assert_eq!(events(&mut b), vec![]);
        assert_eq!(b.pull_to_line(100), b"rom target\r\n");
        let reason = Reason::Hangup;
        assert_eq!(
            events(&mut b),
            vec![
                BridgeEvent::Hangup { reason },
                BridgeEvent::Ended { reason }
            ]
        );
        assert!(b.is_closed());
    }

    #[test]
    fn idle_without_traffic_hangs_up_and_traffic_defers_it() {
        let t0 = Instant::now();
        let mut b = Bridge::new(cfg(64, 64), t0);
        assert_eq!(b.poll_timeout(), Some(t0 + Duration::from_secs(60)));
        b.push_from_line(t0 + Duration::from_secs(50), b"x");
        b.handle_timeout(t0 + Duration::from_secs(60));
        assert_eq!(events(&mut b), vec![]);
        let t = b.poll_timeout().unwrap();
        assert_eq!(t, t0 + Duration::from_secs(110));
        b.handle_timeout(t);
        let reason = Reason::IdleTimeout;
        assert_eq!(
            events(&mut b),
            vec![
                BridgeEvent::CloseTarget,
                BridgeEvent::Hangup { reason },
                BridgeEvent::Ended { reason }
            ]
        );
    }

    #[test]
    fn duration_limit_ends_even_a_busy_bridge_and_a_stuck_line_is_cut_after_the_drain_limit() {
        let t0 = Instant::now();
        let mut b = Bridge::new(cfg(64, 64), t0);
        let mut t = t0;
        while t < t0 + Duration::from_secs(600) {
            t += Duration::from_secs(30);
            b.push_from_target(t, b"tick");
            b.pull_to_line(2);
            b.handle_timeout(t);
        }
        assert_eq!(events(&mut b), vec![BridgeEvent::CloseTarget]);
        let deadline = b.poll_timeout().unwrap();
        assert_eq!(deadline, t + crate::console::DRAIN_MAX);
        b.handle_timeout(deadline);
        let reason = Reason::DurationLimit;
        assert_eq!(
            events(&mut b),
            vec![
                BridgeEvent::Hangup { reason },
                BridgeEvent::Ended { reason }
            ]
        );
        assert_eq!(b.poll_timeout(), None);
    }

    #[test]
    fn carrier_loss_ends_at_once() {
        let t0 = Instant::now();
        let mut b = Bridge::new(cfg(64, 64), t0);
        b.push_from_target(t0, b"pending");
        b.end(Reason::CarrierLost);
        let reason = Reason::CarrierLost;
        assert_eq!(
            events(&mut b),
            vec![BridgeEvent::CloseTarget, BridgeEvent::Ended { reason }]
        );
        assert!(b.pull_to_line(100).is_empty());
        assert_eq!(b.push_from_line(t0, b"late"), 0);
    }

    proptest! {
        #[test]
        fn what_is_accepted_comes_out_in_order_whatever_the_chunking(
            ops in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..50), 0usize..40), 0..80),
            cap in 1usize..64,
        ) {
            let t0 = Instant::now();
            let mut b = Bridge::new(cfg(cap, cap), t0);
            let (mut accepted_down, mut accepted_up) = (Vec::new(), Vec::new());
            let (mut got_down, mut got_up) = (Vec::new(), Vec::new());
            for (down, bytes, max) in &ops {
                if *down {
                    let n = b.push_from_target(t0, bytes);
                    accepted_down.extend_from_slice(&bytes[..n]);
                    got_up.extend(b.pull_to_target(*max));
                } else {
                    let n = b.push_from_line(t0, bytes);
                    accepted_up.extend_from_slice(&bytes[..n]);
                    got_down.extend(b.pull_to_line(*max));
                }
            }
            got_down.extend(b.pull_to_line(usize::MAX));
            got_up.extend(b.pull_to_target(usize::MAX));
            prop_assert_eq!(got_down, accepted_down);
            prop_assert_eq!(got_up, accepted_up);
        }

        #[test]
        fn buffers_never_exceed_their_caps(
            ops in proptest::collection::vec((0u8..6, proptest::collection::vec(any::<u8>(), 0..200), 0usize..300), 0..60),
            line_cap in 0usize..128,
            target_cap in 0usize..128,
        ) {
            let t0 = Instant::now();
            let mut b = Bridge::new(cfg(line_cap, target_cap), t0);
            for (i, (op, bytes, max)) in ops.iter().enumerate() {
                let now = t0 + Duration::from_secs(i as u64 * 7);
                match op {
                    0 => { b.push_from_line(now, bytes); }
                    1 => { b.push_from_target(now, bytes); }
                    2 => { prop_assert!(b.pull_to_line(*max).len() <= *max); }
                    3 => { prop_assert!(b.pull_to_target(*max).len() <= *max); }
                    4 => b.handle_timeout(now),
                    _ => b.target_closed(now),
                }
                prop_assert!(b.to_line_len() <= line_cap);
                prop_assert!(b.to_target_len() <= target_cap);
                prop_assert!(b.events.len() <= 4);
            }
        }
    }
}
