//! The DTMF digit type and the merge of the three ways a key press reaches us: RFC 4733
//! telephone-events, SIP INFO bodies and in-band tones (ITU-T Q.23/Q.24, detected elsewhere).
//!
//! Carriers often send the same key twice: as RFC 4733 events *and* as residual in-band tones
//! (RFC 4733 §3.2 says the sender SHOULD mute the audio, but gateways do not always), or as
//! SIP INFO *and* RFC 4733. [`DtmfMerger`] turns the observations into one digit stream.
//!
//! # The merge rule
//!
//! Every observation is an interval `[start, end]` of one digit from one source. An
//! observation is a duplicate, and dropped, when an already reported digit
//!
//! 1. has the same digit,
//! 2. came from a *different* source, and has not yet absorbed an observation from this
//!    observation's source (each press absorbs at most one observation per other source, so
//!    "5 5" typed quickly stays two digits), and
//! 3. overlaps it in time once widened by a slack on both sides: [`MergeConfig::media_slack`]
//!    between RFC 4733 and in-band (both clocked by the same audio path), or
//!    [`MergeConfig::info_slack`] when either side is SIP INFO (signalling path, different
//!    delay, `Duration` often absent).
//!
//! Among several candidates the earliest one absorbs. Two observations from the *same*
//! source are never merged: each source's own receiver already reports a press once.
//! Otherwise the observation is a new digit, reported immediately. History is a fixed ring
//! of [`HISTORY`] entries, so memory is bounded whatever the peer sends.

use std::time::{Duration, Instant};

use crate::media::SAMPLE_RATE_HZ;

/// How many reported digits the merger remembers for duplicate matching.
pub const HISTORY: usize = 16;

/// A DTMF key: 0-9, *, #, A-D (ITU-T Q.23 Table 1; RFC 4733 §3.2 event codes 0-15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Digit {
    /// 0
    D0,
    /// 1
    D1,
    /// 2
    D2,
    /// 3
    D3,
    /// 4
    D4,
    /// 5
    D5,
    /// 6
    D6,
    /// 7
    D7,
    /// 8
    D8,
    /// 9
    D9,
    /// *
    Star,
    /// #
    Pound,
    /// A
    A,
    /// B
    B,
    /// C
    C,
    /// D
    D,
}

const ALL_DIGITS: [Digit; 16] = [
    Digit::D0,
    Digit::D1,
    Digit::D2,
    Digit::D3,
    Digit::D4,
    Digit::D5,
    Digit::D6,
    Digit::D7,
    Digit::D8,
    Digit::D9,
    Digit::Star,
    Digit::Pound,
    Digit::A,
    Digit::B,
    Digit::C,
    Digit::D,
];

impl Digit {
    /// All sixteen keys in RFC 4733 event code order.
    pub const ALL: [Digit; 16] = ALL_DIGITS;

    /// Parse a keypad character; letters are case-insensitive.
    pub fn from_char(c: char) -> Option<Digit> {
        Some(match c.to_ascii_uppercase() {
            '0'..='9' => ALL_DIGITS[(c as u8 - b'0') as usize],
            '*' => Digit::Star,
            '#' => Digit::Pound,
            'A' => Digit::A,
            'B' => Digit::B,
            'C' => Digit::C,
            'D' => Digit::D,
            _ => return None,
        })
    }

    /// The keypad character (upper-case letters).
    pub fn as_char(self) -> char {
        b"0123456789*#ABCD"[self.event_code() as usize] as char
    }

    /// RFC 4733 §3.2 Table 3 event code (0-9, * = 10, # = 11, A-D = 12-15).
    pub fn event_code(self) -> u8 {
        self as u8
    }

    /// The key for an RFC 4733 event code; codes above 15 are not keys (flash, tones, ...).
    pub fn from_event_code(code: u8) -> Option<Digit> {
        ALL_DIGITS.get(usize::from(code)).copied()
    }

    /// Q.23 frequency pair `(low, high)` in Hz.
    pub fn frequencies(self) -> (f64, f64) {
        const LOW: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
        const HIGH: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
        // Keypad (row, column) of each key, Q.23 Table 1.
        let (row, col) = match self {
            Digit::D1 => (0, 0),
            Digit::D2 => (0, 1),
            Digit::D3 => (0, 2),
            Digit::A => (0, 3),
            Digit::D4 => (1, 0),
            Digit::D5 => (1, 1),
            Digit::D6 => (1, 2),
            Digit::B => (1, 3),
            Digit::D7 => (2, 0),
            Digit::D8 => (2, 1),
            Digit::D9 => (2, 2),
            Digit::C => (2, 3),
            Digit::Star => (3, 0),
            Digit::D0 => (3, 1),
            Digit::Pound => (3, 2),
            Digit::D => (3, 3),
        };
        (LOW[row], HIGH[col])
    }
}

impl std::fmt::Display for Digit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

/// Where a DTMF observation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtmfSource {
    /// RFC 4733 telephone-event packets.
    Rfc4733,
    /// A SIP INFO request body.
    Info,
    /// The in-band tone detector.
    InBand,
}

impl DtmfSource {
    const fn bit(self) -> u8 {
        match self {
            DtmfSource::Rfc4733 => 1,
            DtmfSource::Info => 2,
            DtmfSource::InBand => 4,
        }
    }
}

/// One key press as seen by one source. For in-band detections the caller converts sample
/// positions to instants; for INFO, `start` is the arrival and `end` is `start + Duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// The key.
    pub digit: Digit,
    /// Which path it came by.
    pub source: DtmfSource,
    /// When the key went down (best estimate).
    pub start: Instant,
    /// When it went up (best estimate; equal to `start` when unknown).
    pub end: Instant,
}

impl Observation {
    /// An observation whose times are sample positions at 8 kHz counted from `origin` (the
    /// instant of sample 0), as the in-band detector reports them.
    pub fn from_samples(
        digit: Digit,
        source: DtmfSource,
        origin: Instant,
        start_sample: u64,
        end_sample: u64,
    ) -> Self {
        let at = |sample: u64| {
            let micros = sample.saturating_mul(1_000_000) / u64::from(SAMPLE_RATE_HZ);
            origin
                .checked_add(Duration::from_micros(micros))
                .unwrap_or(origin)
        };
        Self {
            digit,
            source,
            start: at(start_sample),
            end: at(end_sample),
        }
    }
}

/// A digit reported by the merger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergedDigit {
    /// The key.
    pub digit: Digit,
    /// The source whose observation was first.
    pub source: DtmfSource,
    /// Start of that observation.
    pub start: Instant,
}

/// Overlap windows of the merge rule (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeConfig {
    /// Slack between RFC 4733 and in-band observations.
    pub media_slack: Duration,
    /// Slack when either observation came by SIP INFO.
    pub info_slack: Duration,
}

impl Default for MergeConfig {
    fn default() -> Self {
        Self {
            // Q.24 lets a tone be as short as 40 ms; a gateway's RFC 4733 start and the
            // detector's start differ by one or two 20 ms frames plus detector latency.
            media_slack: Duration::from_millis(60),
            // SIP signalling and RTP take different paths; a few hundred ms skew is common,
            // but below the ~100 ms minimum inter-digit pause plus one press (Q.24) times 2.
            info_slack: Duration::from_millis(300),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    digit: Digit,
    source: DtmfSource,
    start: Instant,
    end: Instant,
    /// Sources seen for this press (bit set, [`DtmfSource::bit`]).
    sources: u8,
}

/// Merges DTMF observations from all sources into one digit stream per call.
#[derive(Debug, Clone)]
pub struct DtmfMerger {
    config: MergeConfig,
    history: [Option<Entry>; HISTORY],
    next_slot: usize,
    duplicates: u64,
}

impl DtmfMerger {
    /// A merger with the given windows.
    pub fn new(config: MergeConfig) -> Self {
        Self {
            config,
            history: [None; HISTORY],
            next_slot: 0,
            duplicates: 0,
        }
    }

    /// Offer one observation; returns the digit when it is a new key press.
    pub fn observe(&mut self, obs: Observation) -> Option<MergedDigit> {
        let (start, end) = if obs.end >= obs.start {
            (obs.start, obs.end)
        } else {
            (obs.end, obs.start)
        };
        let bit = obs.source.bit();
        let mut best: Option<usize> = None;
        for (i, slot) in self.history.iter().enumerate() {
            let Some(e) = slot else { continue };
            if e.digit != obs.digit || e.sources & bit != 0 {
                continue;
            }
            let slack = if e.source == DtmfSource::Info || obs.source == DtmfSource::Info {
                self.config.info_slack
            } else {
                self.config.media_slack
            };
            if overlaps(e.start, e.end, start, end, slack) {
                let earlier = best
                    .and_then(|b| self.history[b])
                    .is_none_or(|b| e.start < b.start);
                if earlier {
                    best = Some(i);
                }
            }
        }
        if let Some(entry) = best.and_then(|i| self.history[i].as_mut()) {
            entry.sources |= bit;
            self.duplicates += 1;
            return None;
        }
        self.history[self.next_slot] = Some(Entry {
            digit: obs.digit,
            source: obs.source,
            start,
            end,
            sources: bit,
        });
        self.next_slot = (self.next_slot + 1) % HISTORY;
        Some(MergedDigit {
            digit: obs.digit,
            source: obs.source,
            start,
        })
    }

    /// Observations dropped as duplicates so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

impl Default for DtmfMerger {
    fn default() -> Self {
        Self::new(MergeConfig::default())
    }
}

/// Whether `[a0 - slack, a1 + slack]` and `[b0, b1]` intersect.
fn overlaps(a0: Instant, a1: Instant, b0: Instant, b1: Instant, slack: Duration) -> bool {
    let a0_widened = a0.checked_sub(slack).unwrap_or(a0);
    let a1_widened = a1.checked_add(slack).unwrap_or(a1);
    b0 <= a1_widened && a0_widened <= b1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn obs(t0: Instant, d: char, source: DtmfSource, start_ms: u64, end_ms: u64) -> Observation {
        Observation {
            digit: Digit::from_char(d).unwrap(),
            source,
            start: at(t0, start_ms),
            end: at(t0, end_ms),
        }
    }

    #[test]
    fn digit_chars_and_event_codes_round_trip() {
        for (code, d) in Digit::ALL.iter().enumerate() {
            assert_eq!(Digit::from_event_code(code as u8), Some(*d));
            assert_eq!(d.event_code(), code as u8);
            assert_eq!(Digit::from_char(d.as_char()), Some(*d));
        }
        assert_eq!(Digit::from_char('*'), Some(Digit::Star));
        assert_eq!(Digit::from_char('#').map(Digit::event_code), Some(11));
        assert_eq!(Digit::from_char('b'), Some(Digit::B));
        assert_eq!(Digit::from_char('E'), None);
        assert_eq!(Digit::from_event_code(16), None);
        assert_eq!(Digit::D5.frequencies(), (770.0, 1336.0));
        assert_eq!(Digit::Pound.to_string(), "#");
    }

    #[test]
    fn rfc4733_with_in_band_residue_is_reported_once() {
        let t0 = Instant::now();
        let mut m = DtmfMerger::default();
        assert!(m
            .observe(obs(t0, '5', DtmfSource::Rfc4733, 0, 100))
            .is_some());
        assert!(m
            .observe(obs(t0, '5', DtmfSource::InBand, 30, 110))
            .is_none());
        assert_eq!(m.duplicates(), 1);
    }

    #[test]
    fn info_and_rfc4733_for_the_same_press_are_reported_once_in_either_order() {
        let t0 = Instant::now();
        let mut m = DtmfMerger::default();
        assert!(m
            .observe(obs(t0, '7', DtmfSource::Info, 250, 250))
            .is_some());
        assert!(m
            .observe(obs(t0, '7', DtmfSource::Rfc4733, 0, 100))
            .is_none());
    }

    #[test]
    fn quick_repeated_key_via_two_sources_stays_two_digits() {
        // 65 ms tone / 65 ms pause, "55", both RFC 4733 and in-band residue.
        let t0 = Instant::now();
        let mut m = DtmfMerger::default();
        let mut out = Vec::new();
        for (s, e) in [(0, 65), (130, 195)] {
            out.extend(m.observe(obs(t0, '5', DtmfSource::Rfc4733, s, e)));
            out.extend(m.observe(obs(t0, '5', DtmfSource::InBand, s + 20, e + 20)));
        }
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn in_band_arriving_before_rfc4733_for_two_presses_still_pairs_up() {
        let t0 = Instant::now();
        let mut m = DtmfMerger::default();
        let mut out = Vec::new();
        out.extend(m.observe(obs(t0, '5', DtmfSource::InBand, 0, 65)));
        out.extend(m.observe(obs(t0, '5', DtmfSource::InBand, 130, 195)));
        out.extend(m.observe(obs(t0, '5', DtmfSource::Rfc4733, 0, 65)));
        out.extend(m.observe(obs(t0, '5', DtmfSource::Rfc4733, 130, 195)));
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|d| d.source == DtmfSource::InBand));
    }

    #[test]
    fn in_band_sample_positions_convert_to_instants() {
        let t0 = Instant::now();
        let o = Observation::from_samples(Digit::D3, DtmfSource::InBand, t0, 800, 1600);
        assert_eq!((o.start, o.end), (at(t0, 100), at(t0, 200)));
        let mut m = DtmfMerger::default();
        assert!(m
            .observe(obs(t0, '3', DtmfSource::Rfc4733, 90, 190))
            .is_some());
        assert!(m.observe(o).is_none());
    }

    #[test]
    fn same_source_repeats_are_never_merged() {
        let t0 = Instant::now();
        let mut m = DtmfMerger::default();
        assert!(m.observe(obs(t0, '1', DtmfSource::Info, 0, 0)).is_some());
        assert!(m.observe(obs(t0, '1', DtmfSource::Info, 0, 0)).is_some());
    }

    #[test]
    fn different_digits_or_distant_times_are_not_merged() {
        let t0 = Instant::now();
        let mut m = DtmfMerger::default();
        assert!(m
            .observe(obs(t0, '1', DtmfSource::Rfc4733, 0, 100))
            .is_some());
        assert!(m
            .observe(obs(t0, '2', DtmfSource::InBand, 0, 100))
            .is_some());
        assert!(m
            .observe(obs(t0, '1', DtmfSource::InBand, 400, 500))
            .is_some());
    }

    /// Full path: RFC 4733 sender -> RTP bytes -> lossy, reordering net -> parser ->
    /// receiver -> merger, with in-band residue and SIP INFO copies of every press.
    #[test]
    fn scenario_carrier_sending_all_three_sources_yields_each_digit_once() {
        use crate::media::rfc4733::{Receiver, Sender, SenderConfig};
        use crate::media::rtp::{parse, Datagram, RtpHeader, Ssrc};

        let t0 = Instant::now();
        let typed = "*62468246*1#";
        let cfg = SenderConfig {
            duration_samples: 640, // 80 ms
            ..SenderConfig::default()
        };
        // (arrival ms, datagram)
        let mut wire: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut seq: u16 = 65_500; // wraps during the sequence
        let mut inband = Vec::new();
        let mut info = Vec::new();
        for (i, c) in typed.chars().enumerate() {
            let digit = Digit::from_char(c).unwrap();
            let start_ms = i as u64 * 200;
            let start_ts = (u32::MAX - 4000).wrapping_add(start_ms as u32 * 8);
            for (k, p) in Sender::new(digit, start_ts, cfg).enumerate() {
                seq = seq.wrapping_add(1);
                // Carrier quirks: no marker bit at all; every third press loses its end packets.
                if p.event.end && i % 3 == 2 {
                    continue;
                }
                let mut bytes = Vec::new();
                RtpHeader {
                    marker: false,
                    payload_type: 101,
                    sequence: seq,
                    timestamp: p.timestamp,
                    ssrc: Ssrc(7),
                }
                .write(&p.event.to_bytes(), &mut bytes)
                .unwrap();
                // Jitter: odd packets arrive 30 ms late (reordering), the first is duplicated.
                let at = start_ms + p.send_at_samples / 8 + if k % 2 == 1 { 30 } else { 0 };
                if k == 0 {
                    wire.push((at + 1, bytes.clone()));
                }
                wire.push((at, bytes));
            }
            inband.push((
                start_ms + 40,
                obs(t0, c, DtmfSource::InBand, start_ms + 5, start_ms + 85),
            ));
            info.push((
                start_ms + 150,
                obs(t0, c, DtmfSource::Info, start_ms + 150, start_ms + 230),
            ));
        }
        wire.sort_by_key(|(at, _)| *at);

        let mut rx = Receiver::default();
        let mut merger = DtmfMerger::default();
        let mut out = String::new();
        let mut side: Vec<(u64, Observation)> = inband.into_iter().chain(info).collect();
        side.sort_by_key(|(at, _)| *at);
        let mut side = side.into_iter().peekable();
        for (arrival, bytes) in &wire {
            let now = at(t0, *arrival);
            while let Some((_, o)) = side.next_if(|(s, _)| s <= arrival) {
                out.extend(merger.observe(o).map(|d| d.digit.as_char()));
            }
            if let Some(deadline) = rx.poll_timeout().filter(|d| *d <= now) {
                rx.handle_timeout(deadline);
            }
            let Ok(Datagram::Rtp(p)) = parse(bytes) else {
                panic!("bad datagram")
            };
            rx.handle_packet(now, p.marker, p.timestamp, p.payload)
                .unwrap();
            while let Some(k) = rx.poll_event() {
                let o = Observation {
                    digit: k.digit,
                    source: DtmfSource::Rfc4733,
                    start: k.start,
                    end: k.end,
                };
                out.extend(merger.observe(o).map(|d| d.digit.as_char()));
            }
        }
        for (_, o) in side {
            out.extend(merger.observe(o).map(|d| d.digit.as_char()));
        }
        rx.handle_timeout(at(t0, 100_000));
        while let Some(k) = rx.poll_event() {
            let o = Observation {
                digit: k.digit,
                source: DtmfSource::Rfc4733,
                start: k.start,
                end: k.end,
            };
            out.extend(merger.observe(o).map(|d| d.digit.as_char()));
        }
        assert_eq!(out, typed);
        assert_eq!(merger.duplicates(), 2 * typed.len() as u64);
    }

    #[test]
    fn history_is_bounded() {
        let t0 = Instant::now();
        let mut m = DtmfMerger::default();
        for i in 0..1000u64 {
            assert!(m
                .observe(obs(t0, '9', DtmfSource::Rfc4733, i * 200, i * 200 + 80))
                .is_some());
        }
        assert_eq!(m.history.iter().flatten().count(), HISTORY);
    }
}
