//! One call's data link: the modulations the dialplan lists, tried in order on the same call,
//! each by the start-up its recommendation prescribes for the role this end plays.
//!
//! Owns the choice and the switching, not the DSP (that is [`V22bisModem`] and [`FskModem`]).
//!
//! - **Caller (the gate on the callback).** V.22bis (V.22bis §6.3.1.1) and V.22 stay silent
//!   until the answerer's unscrambled ones; V.22bis falls back to V.22 inside its handshake
//!   (§6.3.1.2), so a `[v22bis, v22]` list is one attempt. V.21 and Bell 103 callers also
//!   stay silent until the answerer's carrier is heard (V.21 channel 2 / the Bell answer band;
//!   in the ITU-T V.25 sequence the answering station sends the answer tone, at least 75 ms of
//!   silence, then its modem signal, which the calling modem answers), and a 2100 Hz answer
//!   tone (V.25 ANS, which Bell 103's answer band would take for carrier) never counts as that
//!   carrier: CONNECT needs [`FSK_CONNECT_MS`] of carrier with no ANS and no start bit in it
//!   (an idle answering modem sends steady mark, binary 1; noise, speech, another modem's band
//!   leaking through the channel filter or fax HDLC flags make the receiver's UART see start
//!   bits, so they never qualify — the V.21/Bell analogue of V.22bis qualifying 155 ms of
//!   unscrambled ones).
//! - **Answerer (the administrator's side).** Only the first modulation: V.22bis/V.22 start
//!   with the V.25 answer tone (in [`V22bisModem`]); V.21 sends ANS for [`ANS_MS`] (V.25:
//!   2.6–4.0 s), [`POST_ANS_MS`] of silence (V.25: 75 ± 20 ms), then its channel-2 mark; Bell
//!   103 sends its answer-band mark at once (2225 Hz is the Bell answer tone itself).
//! - **Fallback.** An attempt that is not the last gives up, and the next starts on the same
//!   line, when it has not connected and the far end is not what it expects: for V.22bis/V.22,
//!   a V.25 answer tone ended [`AFTER_ANS_MS`] ago (a V.22bis answerer sends its unscrambled
//!   ones 75 ms after ANS and connects within about 2 s) or a Bell 2225 Hz tone has lasted
//!   [`BELL_TONE_MS`] (a Bell 103 answerer's mark, which never stops on its own), unless our
//!   caller already heard the answerer's unscrambled ones and joined the handshake; for V.21, a
//!   Bell tone, or an ended ANS with no carrier after it; for Bell 103, an ended ANS and no
//!   Bell tone. Any attempt gives up after [`ATTEMPT_MAX_MS`] in all. The last
//!   attempt runs until the session's `modem.connect_timeout_s`, which bounds the whole
//!   sequence from answer (the runtime's timer, not ours).
//!
//! Time is the count of samples produced by [`Link::fill`] (the steady transmit clock; the
//! receive side may stall when no RTP arrives). Pure: no clock, no IO; allocation only in
//! `new` and when an attempt starts (a few per call).

use std::collections::VecDeque;

use super::answer_tone::{AnswerTone, AnswerToneDetector, AnswerToneEvent, AnswerToneGenerator};
use super::fsk::{FskConfig, FskMode, FskModem};
use super::v22bis::{self, Rate, Role, V22Config, V22bisModem};
use super::{ModemError, ModemEvent as FskEvent};

/// Samples per millisecond at 8 kHz.
const PER_MS: u64 = 8;
/// V.25 answer tone sent by our V.21 answerer (2.6–4.0 s allowed).
pub const ANS_MS: u64 = 3300;
/// V.25: silence between the answer tone and the modem's signal.
pub const POST_ANS_MS: u64 = 75;
/// A V.22/V.22bis attempt gives up this long after the far end's ANS ended.
pub const AFTER_ANS_MS: u64 = 3000;
/// ... or once a Bell 2225 Hz tone has lasted this long.
pub const BELL_TONE_MS: u64 = 3000;
/// ... and any attempt that is not the last after this long in all.
pub const ATTEMPT_MAX_MS: u64 = 10_000;
/// An FSK caller connects once the far carrier has lasted this long as steady mark (no start
/// bit) with no ANS present (longer than the 500 ms the answer-tone detector needs to
/// recognise ANS).
pub const FSK_CONNECT_MS: u64 = 600;
/// Steady mark an FSK end sends before its first character (on CONNECT for the caller,
/// after the answer tone for the answerer): 60 bit times for the far end's carrier detector
/// and UART to settle, so the first character is not lost.
pub const FSK_PREAMBLE_MS: u64 = 200;
/// Most modulations a link tries.
pub const MAX_ATTEMPTS: usize = 4;
/// Events held before the oldest are dropped (the caller must poll each frame).
const EVENT_QUEUE: usize = 8192;

/// A modulation the dialplan may list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Modulation {
    V22bis,
    V22,
    V21,
    Bell103,
}

impl Modulation {
    /// The ITU-T / Bell name.
    pub fn name(self) -> &'static str {
        match self {
            Modulation::V22bis => "V.22bis",
            Modulation::V22 => "V.22",
            Modulation::V21 => "V.21",
            Modulation::Bell103 => "Bell 103",
        }
    }
}

/// What the link reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// An attempt with `modulation` started (the first at once, later ones on fallback).
    Trying { modulation: Modulation },
    /// Data flows both ways. `modulation` is what the line runs: V.22 when a V.22bis attempt
    /// fell back to 1200 bit/s in its handshake.
    Connected {
        modulation: Modulation,
        rate_bps: u32,
    },
    /// A received character (only after `Connected`).
    Data(u8),
    /// The far carrier went away after `Connected`.
    CarrierLost,
}

/// Why a link could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("no modulation to try")]
    NoModulation,
    #[error(transparent)]
    V22(#[from] v22bis::V22Error),
    #[error(transparent)]
    Fsk(#[from] ModemError),
}

/// Settings of a [`Link`].
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    pub role: Role,
    /// In order; at most [`MAX_ATTEMPTS`] are used. An answerer uses only the first.
    pub modulations: Vec<Modulation>,
    pub tx_level_dbm0: f32,
}

/// The modem of the current attempt.
enum Active {
    V22(Box<V22bisModem>),
    Fsk(Box<FskModem>),
}

/// What an FSK end transmits before its data signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FskTxStage {
    /// Caller: silent until CONNECT (the far carrier heard, in the right band).
    AwaitCarrier,
    /// Answerer: V.25 ANS, `left` samples.
    AnswerTone {
        left: u64,
    },
    /// Answerer: the V.25 gap, `left` samples.
    Gap {
        left: u64,
    },
    /// Mark only, `left` samples, data held back.
    Preamble {
        left: u64,
    },
    Signal,
}

/// The data link of one call. See the module doc.
pub struct Link {
    role: Role,
    tx_level_dbm0: f32,
    attempts: Vec<(Modulation, Rate)>,
    index: usize,
    active: Active,
    fsk_tx: FskTxStage,
    ans_gen: AnswerToneGenerator,
    /// Caller only: the far end's answer tone (fallback decisions, FSK connect guard).
    detector: AnswerToneDetector,
    /// Transmit clock: samples produced since the link started.
    now: u64,
    attempt_start: u64,
    ans_ended_at: Option<u64>,
    bell_since: Option<u64>,
    ans_present: bool,
    /// FSK caller: when the far carrier came up (while not yet connected).
    carrier_since: Option<u64>,
    /// V.22/V.22bis caller: it qualified the answerer's unscrambled ones and started its own
    /// part of the handshake, so the far end is a V.22 modem: the answer-tone rule no longer
    /// applies (a slow training under noise is not a reason to fall back).
    v22_answered: bool,
    connected: bool,
    events: VecDeque<LinkEvent>,
}

impl Link {
    pub fn new(cfg: &LinkConfig) -> Result<Self, LinkError> {
        let attempts = plan(cfg);
        let Some(&first) = attempts.first() else {
            return Err(LinkError::NoModulation);
        };
        let active = start(cfg.role, first, cfg.tx_level_dbm0)?;
        let mut events = VecDeque::with_capacity(64);
        events.push_back(LinkEvent::Trying {
            modulation: first.0,
        });
        Ok(Link {
            role: cfg.role,
            tx_level_dbm0: cfg.tx_level_dbm0,
            attempts,
            index: 0,
            active,
            fsk_tx: fsk_tx_start(cfg.role, first.0),
            ans_gen: AnswerToneGenerator::new(AnswerTone::Ans, cfg.tx_level_dbm0)?,
            detector: AnswerToneDetector::new(),
            now: 0,
            attempt_start: 0,
            ans_ended_at: None,
            bell_since: None,
            ans_present: false,
            carrier_since: None,
            v22_answered: false,
            connected: false,
            events,
        })
    }

    /// The modulation of the current attempt (before CONNECT) or the attempt that connected
    /// (see [`LinkEvent::Connected`] for V.22 within a V.22bis attempt).
    pub fn modulation(&self) -> Modulation {
        self.attempts
            .get(self.index)
            .map_or(Modulation::V22bis, |a| a.0)
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Queue bytes to send; returns how many were taken (back-pressure).
    pub fn write(&mut self, data: &[u8]) -> usize {
        match &mut self.active {
            Active::V22(m) => m.write(data),
            Active::Fsk(m) => m.write(data),
        }
    }

    /// Bytes accepted by [`Link::write`] and not yet on the line (a character in progress
    /// may follow).
    pub fn tx_pending(&self) -> usize {
        match &self.active {
            Active::V22(m) => m.pending(),
            Active::Fsk(m) => m.tx_pending(),
        }
    }

    /// Produce line samples; this is the link's clock.
    pub fn fill(&mut self, out: &mut [i16]) {
        match &mut self.active {
            Active::V22(m) => {
                m.fill(out);
                // V.22bis §6.3.1.1.1 b): the caller is silent until it has qualified the
                // answerer's unscrambled binary 1; any sound from it means it has.
                if self.role == Role::Caller && !self.v22_answered {
                    self.v22_answered = out.iter().any(|&s| s != 0);
                }
            }
            Active::Fsk(m) => fill_fsk(m, &mut self.fsk_tx, &mut self.ans_gen, out),
        }
        self.now += out.len() as u64;
        self.drain();
        self.check_fallback();
    }

    /// Take received samples.
    pub fn push(&mut self, samples: &[i16]) {
        if self.role == Role::Caller && !self.connected {
            self.detector.push(samples);
            self.drain_detector();
        }
        match &mut self.active {
            Active::V22(m) => m.push(samples),
            Active::Fsk(m) => m.push(samples),
        }
        self.drain();
    }

    /// Account for `n` samples that never arrived: the modem's timing runs on.
    pub fn push_lost(&mut self, n: usize) {
        match &mut self.active {
            Active::V22(m) => m.push_lost(n),
            Active::Fsk(m) => m.push_lost(n),
        }
        self.drain();
    }

    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    fn emit(&mut self, ev: LinkEvent) {
        if self.events.len() >= EVENT_QUEUE {
            self.events.pop_front();
        }
        self.events.push_back(ev);
    }

    fn drain_detector(&mut self) {
        while let Some(ev) = self.detector.poll_event() {
            // Positions count received samples; the fallback rules use the transmit clock,
            // which runs at the same rate, so "now" is close enough (within the jitter delay).
            match ev {
                AnswerToneEvent::Detected {
                    tone: AnswerTone::Bell,
                    ..
                } => self.bell_since = Some(self.now),
                AnswerToneEvent::Detected { .. } => {
                    self.ans_present = true;
                    self.ans_ended_at = None;
                }
                AnswerToneEvent::Ended {
                    tone: AnswerTone::Bell,
                    ..
                } => self.bell_since = None,
                AnswerToneEvent::Ended { .. } => {
                    self.ans_present = false;
                    self.ans_ended_at = Some(self.now);
                    // A carrier heard through the ANS (Bell 103's answer band, the edge of
                    // V.21 channel 2) must now prove itself as the modem signal that follows.
                    if self.carrier_since.is_some() {
                        self.carrier_since = Some(self.now);
                    }
                }
            }
        }
    }

    /// Move the active modem's events into ours.
    fn drain(&mut self) {
        let modulation = self.modulation();
        loop {
            let ev = match &mut self.active {
                Active::V22(m) => match m.poll_event() {
                    None => break,
                    Some(v22bis::ModemEvent::Connected { rate_bps }) => {
                        let modulation = if rate_bps == 1200 {
                            Modulation::V22
                        } else {
                            Modulation::V22bis
                        };
                        Some(LinkEvent::Connected {
                            modulation,
                            rate_bps,
                        })
                    }
                    Some(v22bis::ModemEvent::Data(b)) => Some(LinkEvent::Data(b)),
                    Some(v22bis::ModemEvent::CarrierLost) => Some(LinkEvent::CarrierLost),
                    Some(_) => None,
                },
                Active::Fsk(m) => match m.poll_event() {
                    None => break,
                    Some(FskEvent::CarrierUp) => {
                        self.carrier_since = Some(self.now);
                        None
                    }
                    Some(FskEvent::CarrierDown) => {
                        self.carrier_since = None;
                        Some(LinkEvent::CarrierLost)
                    }
                    // Before CONNECT a caller waits for the answerer's idle mark: a start
                    // bit (a character, framing or parity error) means the far signal is not
                    // a steady mark (noise, speech, a modem in another band leaking through
                    // the channel filter, fax flags), so the connect guard starts over.
                    Some(FskEvent::Data(_) | FskEvent::FramingError | FskEvent::ParityError)
                        if !self.connected && self.role == Role::Caller =>
                    {
                        if self.carrier_since.is_some() {
                            self.carrier_since = Some(self.now);
                        }
                        None
                    }
                    Some(FskEvent::Data(b)) => Some(LinkEvent::Data(b)),
                    Some(_) => None,
                },
            };
            match ev {
                Some(LinkEvent::Connected { .. }) if self.connected => {}
                Some(e @ LinkEvent::Connected { .. }) => {
                    self.connected = true;
                    self.emit(e);
                }
                // Before CONNECT, characters are line noise and a lost carrier is part of
                // the start-up (ANS then silence then the modem signal).
                Some(LinkEvent::Data(_)) | Some(LinkEvent::CarrierLost) if !self.connected => {}
                Some(e) => self.emit(e),
                None => {}
            }
        }
        // FSK CONNECT: the answerer on the caller's carrier at once; the caller once the far
        // carrier has lasted FSK_CONNECT_MS with no ANS in it.
        if !self.connected {
            if let (Active::Fsk(m), Some(since)) = (&self.active, self.carrier_since) {
                let ready = match self.role {
                    Role::Answerer => m.carrier(),
                    // V.21's channel 2 filter passes some of a Bell 2225 Hz mark, and the Bell
                    // answer band some of V.21's 1650/1850 Hz: the answer-tone detector tells
                    // them apart (an idle Bell answerer's mark is the Bell tone).
                    Role::Caller => {
                        let right_band = match modulation {
                            Modulation::Bell103 => self.bell_since.is_some(),
                            _ => self.bell_since.is_none(),
                        };
                        m.carrier()
                            && right_band
                            && !self.ans_present
                            && self.now.saturating_sub(since) >= FSK_CONNECT_MS * PER_MS
                    }
                };
                if ready {
                    self.connected = true;
                    if self.fsk_tx == FskTxStage::AwaitCarrier {
                        self.fsk_tx = FskTxStage::Preamble {
                            left: FSK_PREAMBLE_MS * PER_MS,
                        };
                    }
                    self.emit(LinkEvent::Connected {
                        modulation,
                        rate_bps: 300,
                    });
                }
            }
        }
    }

    fn check_fallback(&mut self) {
        if self.connected || self.role != Role::Caller || self.index + 1 >= self.attempts.len() {
            return;
        }
        let elapsed = self.now.saturating_sub(self.attempt_start);
        let after_ans = self
            .ans_ended_at
            .is_some_and(|t| self.now.saturating_sub(t) >= AFTER_ANS_MS * PER_MS);
        let bell = self
            .bell_since
            .is_some_and(|t| self.now.saturating_sub(t) >= BELL_TONE_MS * PER_MS);
        let wrong_far_end = match self.modulation() {
            Modulation::V22bis | Modulation::V22 => !self.v22_answered && (after_ans || bell),
            // A Bell answerer's mark, or an answer tone over with no carrier after it.
            Modulation::V21 => bell || (after_ans && self.carrier_since.is_none()),
            // An answer tone over and no Bell mark: a V.21 or V.22 answerer.
            Modulation::Bell103 => after_ans && self.bell_since.is_none(),
        };
        let give_up = wrong_far_end || elapsed >= ATTEMPT_MAX_MS * PER_MS;
        if !give_up {
            return;
        }
        // The next attempt; one that cannot be configured is skipped.
        while self.index + 1 < self.attempts.len() {
            self.index += 1;
            let Some(&next) = self.attempts.get(self.index) else {
                return;
            };
            if let Ok(active) = start(self.role, next, self.tx_level_dbm0) {
                self.active = active;
                self.fsk_tx = fsk_tx_start(self.role, next.0);
                self.attempt_start = self.now;
                // The far end's ANS belongs to the call, not the attempt: keep its end time
                // for the next attempt's rule but restart the clock it counts from.
                if self.ans_ended_at.is_some() {
                    self.ans_ended_at = Some(self.now);
                }
                self.carrier_since = None;
                self.v22_answered = false;
                self.emit(LinkEvent::Trying { modulation: next.0 });
                return;
            }
        }
    }
}

/// The attempts for a configuration: V.22 straight after V.22bis is part of V.22bis's own
/// handshake; duplicates are dropped; an answerer keeps only the first.
fn plan(cfg: &LinkConfig) -> Vec<(Modulation, Rate)> {
    let mut out: Vec<(Modulation, Rate)> = Vec::with_capacity(MAX_ATTEMPTS);
    for &m in &cfg.modulations {
        if out.iter().any(|a| a.0 == m) {
            continue;
        }
        if m == Modulation::V22 && out.last().is_some_and(|a| a.0 == Modulation::V22bis) {
            continue;
        }
        if out.len() == MAX_ATTEMPTS || (cfg.role == Role::Answerer && !out.is_empty()) {
            break;
        }
        let rate = if m == Modulation::V22bis {
            Rate::R2400
        } else {
            Rate::R1200
        };
        out.push((m, rate));
    }
    out
}

fn start(
    role: Role,
    (m, rate): (Modulation, Rate),
    tx_level_dbm0: f32,
) -> Result<Active, LinkError> {
    Ok(match m {
        Modulation::V22bis | Modulation::V22 => Active::V22(Box::new(V22bisModem::new(
            role,
            V22Config {
                max_rate: rate,
                tx_level_dbm0,
                ..V22Config::default()
            },
        )?)),
        Modulation::V21 | Modulation::Bell103 => {
            let mode = match (m, role) {
                (Modulation::V21, Role::Caller) => FskMode::V21Caller,
                (Modulation::V21, Role::Answerer) => FskMode::V21Answerer,
                (_, Role::Caller) => FskMode::Bell103Originate,
                (_, Role::Answerer) => FskMode::Bell103Answer,
            };
            let cfg = FskConfig {
                tx_level_dbm0,
                ..FskConfig::default()
            };
            Active::Fsk(Box::new(FskModem::new(mode, cfg)?))
        }
    })
}

fn fsk_tx_start(role: Role, m: Modulation) -> FskTxStage {
    match (role, m) {
        (Role::Caller, _) => FskTxStage::AwaitCarrier,
        (Role::Answerer, Modulation::V21) => FskTxStage::AnswerTone {
            left: ANS_MS * PER_MS,
        },
        (Role::Answerer, _) => FskTxStage::Preamble {
            left: FSK_PREAMBLE_MS * PER_MS,
        },
    }
}

/// FSK transmit with the start-up stages in front.
fn fill_fsk(
    m: &mut FskModem,
    stage: &mut FskTxStage,
    ans: &mut AnswerToneGenerator,
    out: &mut [i16],
) {
    let mut rest = out;
    while !rest.is_empty() {
        match *stage {
            // Left when the caller connects (see `drain`).
            FskTxStage::AwaitCarrier => {
                rest.fill(0);
                return;
            }
            FskTxStage::AnswerTone { left } => {
                let n = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let (now, later) = rest.split_at_mut(n);
                ans.fill(now);
                rest = later;
                *stage = match left - n as u64 {
                    0 => FskTxStage::Gap {
                        left: POST_ANS_MS * PER_MS,
                    },
                    l => FskTxStage::AnswerTone { left: l },
                };
            }
            FskTxStage::Gap { left } => {
                let n = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let (now, later) = rest.split_at_mut(n);
                now.fill(0);
                rest = later;
                *stage = match left - n as u64 {
                    0 => FskTxStage::Preamble {
                        left: FSK_PREAMBLE_MS * PER_MS,
                    },
                    l => FskTxStage::Gap { left: l },
                };
            }
            FskTxStage::Preamble { left } => {
                let n = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let (now, later) = rest.split_at_mut(n);
                m.fill_idle(now);
                rest = later;
                *stage = match left - n as u64 {
                    0 => FskTxStage::Signal,
                    l => FskTxStage::Preamble { left: l },
                };
            }
            FskTxStage::Signal => {
                m.fill(rest);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run two links against each other, frame by frame, until `until` says stop or `max_ms`.
    fn run(
        caller: &mut Link,
        answerer: &mut Link,
        max_ms: u64,
        mut until: impl FnMut(&[LinkEvent], &[LinkEvent]) -> bool,
    ) -> (Vec<LinkEvent>, Vec<LinkEvent>, u64) {
        let (mut ce, mut ae) = (Vec::new(), Vec::new());
        let mut a = [0i16; 160];
        let mut b = [0i16; 160];
        for ms in (0..max_ms).step_by(20) {
            caller.fill(&mut a);
            answerer.fill(&mut b);
            caller.push(&b);
            answerer.push(&a);
            while let Some(e) = caller.poll_event() {
                ce.push(e);
            }
            while let Some(e) = answerer.poll_event() {
                ae.push(e);
            }
            if until(&ce, &ae) {
                return (ce, ae, ms);
            }
        }
        (ce, ae, max_ms)
    }

    fn link(role: Role, modulations: &[Modulation]) -> Link {
        Link::new(&LinkConfig {
            role,
            modulations: modulations.to_vec(),
            tx_level_dbm0: -13.0,
        })
        .expect("link")
    }

    fn connected(ev: &[LinkEvent]) -> Option<(Modulation, u32)> {
        ev.iter().find_map(|e| match e {
            LinkEvent::Connected {
                modulation,
                rate_bps,
            } => Some((*modulation, *rate_bps)),
            _ => None,
        })
    }

    #[test]
    fn v22bis_caller_falls_back_to_v21_when_the_answerer_speaks_only_v21() {
        let mut c = link(Role::Caller, &[Modulation::V22bis, Modulation::V21]);
        let mut a = link(Role::Answerer, &[Modulation::V21]);
        let (ce, ae, ms) = run(&mut c, &mut a, 20_000, |c, a| {
            connected(c).is_some() && connected(a).is_some()
        });
        assert_eq!(connected(&ce), Some((Modulation::V21, 300)), "{ce:?}");
        assert_eq!(connected(&ae), Some((Modulation::V21, 300)), "{ae:?}");
        assert!(ce.contains(&LinkEvent::Trying {
            modulation: Modulation::V21
        }));
        // ANS 3.3 s, then AFTER_ANS_MS, then the V.21 connect guard.
        assert!((6_000..12_000).contains(&ms), "connected after {ms} ms");
    }

    #[test]
    fn v22bis_caller_falls_back_to_bell103_on_a_bell_answer_tone() {
        let mut c = link(
            Role::Caller,
            &[Modulation::V22bis, Modulation::V21, Modulation::Bell103],
        );
        let mut a = link(Role::Answerer, &[Modulation::Bell103]);
        let (ce, ae, _) = run(&mut c, &mut a, 30_000, |c, a| {
            connected(c).is_some() && connected(a).is_some()
        });
        assert_eq!(connected(&ce), Some((Modulation::Bell103, 300)), "{ce:?}");
        assert_eq!(connected(&ae), Some((Modulation::Bell103, 300)), "{ae:?}");
    }

    #[test]
    fn default_chain_reaches_bell103_quickly_past_v21() {
        use Modulation::*;
        let mut c = link(Role::Caller, &[V22bis, V22, V21, Bell103]);
        let mut a = link(Role::Answerer, &[Bell103]);
        let (ce, _, ms) = run(&mut c, &mut a, 20_000, |c, _| connected(c).is_some());
        assert_eq!(connected(&ce), Some((Bell103, 300)), "{ce:?}");
        assert!(ms < 6_000, "connected after {ms} ms: {ce:?}");
    }

    #[test]
    fn bell103_first_falls_to_v21_after_a_v25_answer_tone() {
        use Modulation::*;
        let mut c = link(Role::Caller, &[Bell103, V21]);
        let mut a = link(Role::Answerer, &[V21]);
        let (ce, ae, _) = run(&mut c, &mut a, 20_000, |c, a| {
            connected(c).is_some() && connected(a).is_some()
        });
        assert_eq!(connected(&ce), Some((V21, 300)), "{ce:?}");
        assert_eq!(connected(&ae), Some((V21, 300)), "{ae:?}");
    }

    #[test]
    fn v22bis_pair_connects_without_falling_back() {
        let mut c = link(Role::Caller, &[Modulation::V22bis, Modulation::V21]);
        let mut a = link(Role::Answerer, &[Modulation::V22bis]);
        let (ce, _, _) = run(&mut c, &mut a, 15_000, |c, _| connected(c).is_some());
        assert_eq!(connected(&ce), Some((Modulation::V22bis, 2400)), "{ce:?}");
        assert!(!ce.contains(&LinkEvent::Trying {
            modulation: Modulation::V21
        }));
    }

    #[test]
    fn v21_pair_carries_data_after_the_answer_tone() {
        let mut c = link(Role::Caller, &[Modulation::V21]);
        let mut a = link(Role::Answerer, &[Modulation::V21]);
        let (ce, _, ms) = run(&mut c, &mut a, 10_000, |c, _| connected(c).is_some());
        assert!(
            ms >= 3_300 + FSK_CONNECT_MS,
            "the caller waited for the modem signal after the answer tone: {ms} ms"
        );
        assert_eq!(connected(&ce), Some((Modulation::V21, 300)));
        // Written the moment the caller connects: the preamble keeps the first character.
        assert_eq!(c.write(b"hello"), 5);
        let (ce, ae, _) = run(&mut c, &mut a, 2_000, |_, _| false);
        assert!(
            !ce.contains(&LinkEvent::CarrierLost) && !ae.contains(&LinkEvent::CarrierLost),
            "{ce:?} {ae:?}"
        );
        let got: Vec<u8> = ae
            .iter()
            .filter_map(|e| match e {
                LinkEvent::Data(b) => Some(*b),
                _ => None,
            })
            .collect();
        assert_eq!(got, b"hello");
    }

    #[test]
    fn the_last_attempt_never_gives_up_by_itself() {
        let mut c = link(Role::Caller, &[Modulation::V22bis]);
        let mut silence = link(Role::Caller, &[Modulation::V21]);
        let (ce, _, _) = run(&mut c, &mut silence, 30_000, |_, _| false);
        assert_eq!(
            ce,
            vec![LinkEvent::Trying {
                modulation: Modulation::V22bis
            }]
        );
    }

    /// Seeded Gaussian-ish noise (sum of four uniforms), RMS about `rms`.
    fn noise(state: &mut u64, out: &mut [i16], rms: f32) {
        for s in out.iter_mut() {
            let mut sum = 0.0f32;
            for _ in 0..4 {
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                sum += (*state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            }
            // Four uniforms of variance 1/12 each: variance 1/3.
            *s = (sum * rms * 3f32.sqrt()).round() as i16;
        }
    }

    #[test]
    fn fsk_caller_does_not_connect_on_noise_in_its_receive_band() {
        // -20 dBm0 noise (RMS about 1160): plenty of power in V.21 channel 2 for the carrier
        // detector, but never the steady mark of an idle answerer.
        let mut c = link(Role::Caller, &[Modulation::V21]);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let (mut tx, mut rx) = ([0i16; 160], [0i16; 160]);
        let mut events = Vec::new();
        for _ in 0..500 {
            c.fill(&mut tx);
            noise(&mut state, &mut rx, 1160.0);
            c.push(&rx);
            while let Some(e) = c.poll_event() {
                events.push(e);
            }
        }
        assert_eq!(
            events,
            vec![LinkEvent::Trying {
                modulation: Modulation::V21
            }]
        );
    }

    #[test]
    fn plan_merges_v22_into_v22bis_and_keeps_the_order() {
        let cfg = |role, m: &[Modulation]| LinkConfig {
            role,
            modulations: m.to_vec(),
            tx_level_dbm0: -13.0,
        };
        use Modulation::*;
        assert_eq!(
            plan(&cfg(Role::Caller, &[V22bis, V22, V21, Bell103])),
            vec![
                (V22bis, Rate::R2400),
                (V21, Rate::R1200),
                (Bell103, Rate::R1200)
            ]
        );
        assert_eq!(
            plan(&cfg(Role::Caller, &[V22, V21, V22])),
            vec![(V22, Rate::R1200), (V21, Rate::R1200)]
        );
        assert_eq!(
            plan(&cfg(Role::Answerer, &[V21, V22bis])),
            vec![(V21, Rate::R1200)]
        );
        assert!(Link::new(&cfg(Role::Caller, &[])).is_err());
    }
}
