//! RFC 4733 telephone-event payload (§2.3), a receiver that turns packets into key presses
//! exactly once (§2.5.2), and a sender that produces the packets for one key press (§2.5.1).
//!
//! The receiver is sans-IO: feed it packets with the arrival `now`, call
//! [`Receiver::handle_timeout`] at [`Receiver::poll_timeout`], drain [`Receiver::poll_event`].
//! It tolerates the quirks seen on carrier gateways:
//!
//! - the End bit repeated (§2.5.1.4 recommends three end packets): one press;
//! - a lost or never-set marker bit: a new event is detected by its new timestamp (§2.2.1:
//!   the timestamp is the event's start and names it; M, §2.2.2, is only a hint);
//! - long presses (§2.5.2.3): updates with the same timestamp for seconds, and durations
//!   beyond 0xFFFF split into segments with new timestamps, which continue the press;
//! - lost end packets: the next event, or [`ReceiverConfig::end_timeout`] of silence, closes it;
//! - reordered and duplicated packets: anything with a timestamp older than the current or
//!   last closed event is stale and dropped; timestamps compare with wrap-around (RFC 3550
//!   serial arithmetic), so events across the 2^32 wrap work.
//!
//! Per-stream: reset the receiver when the SSRC changes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::media::dtmf::Digit;
use crate::media::SAMPLE_RATE_HZ;

/// Size of one event report (§2.3, Figure 1).
pub const EVENT_LEN: usize = 4;
/// Largest value of the duration field before a long event must be segmented (§2.5.1.3).
pub const MAX_SEGMENT_DURATION: u32 = 0xFFFF;
/// Update interval the sender uses: 50 ms (§2.5.1.2 leaves the interval to the sender;
/// 50 ms is the common choice, some carriers use the 20 ms audio packet interval).
pub const DEFAULT_UPDATE_SAMPLES: u32 = 400;
/// The largest gap between updates we still accept as the same segment near its overflow.
const SEGMENT_SLACK_SAMPLES: u32 = 1600;
/// At most this many unread key presses are queued; older ones are dropped and counted.
const MAX_QUEUED_EVENTS: usize = 32;

/// Why a telephone-event payload cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Rfc4733Error {
    /// Payload shorter than one 4-octet event report.
    #[error("telephone-event payload of {len} bytes, need {EVENT_LEN}")]
    Truncated {
        /// Payload length.
        len: usize,
    },
}

/// One telephone-event report (§2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code (§3.2: 0-15 are DTMF keys).
    pub event: u8,
    /// E bit: this report ends the event.
    pub end: bool,
    /// Power level in -dBm0, 0..=63 (§2.3.4); 0 is loudest.
    pub volume: u8,
    /// Duration so far in timestamp units, samples at 8 kHz (§2.3.5).
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parse the first event report of a payload. Extra octets are ignored: packing several
    /// events into one packet (§2.5.1.5) is not supported; DTMF senders do not use it.
    pub fn parse(payload: &[u8]) -> Result<Self, Rfc4733Error> {
        let Some(&[event, flags, d0, d1]) = payload.first_chunk::<EVENT_LEN>() else {
            return Err(Rfc4733Error::Truncated { len: payload.len() });
        };
        Ok(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            // The R bit (0x40) is reserved; receivers ignore it (§2.3.3).
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// The 4-octet wire form; `volume` is masked to 6 bits.
    pub fn to_bytes(&self) -> [u8; EVENT_LEN] {
        let [d0, d1] = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3F),
            d0,
            d1,
        ]
    }
}

/// Why the receiver considered a key press finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// An end packet (E bit) arrived.
    EndBit,
    /// A new event started before any end packet arrived.
    NextEvent,
    /// No packet for [`ReceiverConfig::end_timeout`].
    Timeout,
}

/// One key press, reported once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPress {
    /// The key.
    pub digit: Digit,
    /// Estimated key-down instant: first arrival minus the duration it reported.
    pub start: Instant,
    /// Arrival of the packet that ended it (or the last packet, on timeout).
    pub end: Instant,
    /// Total duration in samples, over all segments.
    pub duration_samples: u32,
    /// How it ended.
    pub reason: EndReason,
}

/// Receiver settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// Close an event when no packet for it arrived for this long (lost end packets).
    pub end_timeout: Duration,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        // Senders update every 20-50 ms in practice; 250 ms is five missed 50 ms updates.
        Self {
            end_timeout: Duration::from_millis(250),
        }
    }
}

/// Counters for diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Packets whose timestamp belonged to an already closed or older event.
    pub stale: u64,
    /// Packets for events that are not DTMF keys (codes above 15), or that changed code
    /// under the same timestamp.
    pub ignored: u64,
    /// Key presses dropped because nobody drained [`Receiver::poll_event`].
    pub overflowed: u64,
}

#[derive(Debug, Clone, Copy)]
struct Active {
    code: u8,
    /// Timestamp of the current segment.
    ts: u32,
    /// Samples covered by earlier segments of this press.
    segment_base: u32,
    /// Largest duration seen in the current segment.
    duration: u32,
    start: Instant,
    last_seen: Instant,
    /// Already reported (a segment reopened after an early E bit); closing stays silent.
    reported: bool,
}

#[derive(Debug, Clone, Copy)]
struct Closed {
    code: u8,
    ts: u32,
    duration: u32,
    segment_base: u32,
    start: Instant,
}

/// RFC 4733 receiver for one RTP stream.
#[derive(Debug, Clone)]
pub struct Receiver {
    config: ReceiverConfig,
    active: Option<Active>,
    closed: Option<Closed>,
    events: VecDeque<KeyPress>,
    stats: ReceiverStats,
}

impl Receiver {
    /// A receiver with no event in progress.
    pub fn new(config: ReceiverConfig) -> Self {
        Self {
            config,
            active: None,
            closed: None,
            events: VecDeque::new(),
            stats: ReceiverStats::default(),
        }
    }

    /// Forget the stream (call on SSRC change). Queued key presses are kept.
    pub fn reset(&mut self) {
        self.active = None;
        self.closed = None;
    }

    /// Feed one telephone-event RTP packet: its M bit, timestamp and payload.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        _marker: bool,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<(), Rfc4733Error> {
        // The marker bit is deliberately unused: §2.2.1 identifies an event by timestamp,
        // and carriers lose or omit M. It stays in the signature so callers pass it and a
        // stricter policy can be added without changing them.
        let ev = TelephoneEvent::parse(payload)?;
        if Digit::from_event_code(ev.event).is_none() {
            self.stats.ignored += 1;
            return Ok(());
        }
        let duration = u32::from(ev.duration);

        if let Some(mut a) = self.active {
            if timestamp == a.ts {
                if ev.event != a.code {
                    self.stats.ignored += 1;
                    return Ok(());
                }
                a.duration = a.duration.max(duration);
                a.last_seen = now;
                self.active = Some(a);
                if ev.end {
                    self.close(now, EndReason::EndBit);
                }
                return Ok(());
            }
            if is_older(timestamp, a.ts) {
                self.stats.stale += 1;
                return Ok(());
            }
            if ev.event == a.code && is_next_segment(a.ts, a.duration, timestamp) {
                // §2.5.2.3: same event continued with a new timestamp after the duration
                // field ran out.
                a.segment_base = a.segment_base.saturating_add(timestamp.wrapping_sub(a.ts));
                a.ts = timestamp;
                a.duration = duration;
                a.last_seen = now;
                self.active = Some(a);
                if ev.end {
                    self.close(now, EndReason::EndBit);
                }
                return Ok(());
            }
            // A new event while the old one never saw an end packet.
            self.close(now, EndReason::NextEvent);
        } else if let Some(c) = self.closed {
            if timestamp == c.ts || is_older(timestamp, c.ts) {
                // Repeated end packets (§2.5.1.4) and late updates of a finished event.
                self.stats.stale += 1;
                return Ok(());
            }
            if ev.event == c.code && is_next_segment(c.ts, c.duration, timestamp) {
                // The sender set E on a segment boundary; the press continues but was
                // already reported.
                self.active = Some(Active {
                    code: c.code,
                    ts: timestamp,
                    segment_base: c.segment_base.saturating_add(timestamp.wrapping_sub(c.ts)),
                    duration,
                    start: c.start,
                    last_seen: now,
                    reported: true,
                });
                if ev.end {
                    self.close(now, EndReason::EndBit);
                }
                return Ok(());
            }
        }

        let start = now
            .checked_sub(samples_to_duration(duration))
            .unwrap_or(now);
        self.active = Some(Active {
            code: ev.event,
            ts: timestamp,
            segment_base: 0,
            duration,
            start,
            last_seen: now,
            reported: false,
        });
        if ev.end {
            // Only the end packets of this press arrived.
            self.close(now, EndReason::EndBit);
        }
        Ok(())
    }

    /// Close an event whose end packets were lost.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(deadline) = self.poll_timeout() {
            if now >= deadline {
                let last_seen = self.active.map_or(now, |a| a.last_seen);
                self.close(last_seen, EndReason::Timeout);
            }
        }
    }

    /// When [`Self::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.active
            .and_then(|a| a.last_seen.checked_add(self.config.end_timeout))
    }

    /// Next finished key press.
    pub fn poll_event(&mut self) -> Option<KeyPress> {
        self.events.pop_front()
    }

    /// Diagnostics counters.
    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    fn close(&mut self, end: Instant, reason: EndReason) {
        let Some(a) = self.active.take() else { return };
        self.closed = Some(Closed {
            code: a.code,
            ts: a.ts,
            duration: a.duration,
            segment_base: a.segment_base,
            start: a.start,
        });
        if a.reported {
            return;
        }
        let Some(digit) = Digit::from_event_code(a.code) else {
            return;
        };
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
            self.stats.overflowed += 1;
        }
        self.events.push_back(KeyPress {
            digit,
            start: a.start,
            end,
            duration_samples: a.segment_base.saturating_add(a.duration),
            reason,
        });
    }
}

impl Default for Receiver {
    fn default() -> Self {
        Self::new(ReceiverConfig::default())
    }
}

/// RFC 3550 serial-number comparison of timestamps: `a` is before `b`.
fn is_older(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// Whether `next_ts` starts the segment following one at `ts` that reached `duration`
/// (§2.5.2.3): the old segment must have been near the 0xFFFF limit and the new timestamp
/// must sit at its end.
fn is_next_segment(ts: u32, duration: u32, next_ts: u32) -> bool {
    let gap = next_ts.wrapping_sub(ts);
    duration + SEGMENT_SLACK_SAMPLES >= MAX_SEGMENT_DURATION
        && gap >= duration
        && gap <= MAX_SEGMENT_DURATION + SEGMENT_SLACK_SAMPLES
}

fn samples_to_duration(samples: u32) -> Duration {
    Duration::from_micros(u64::from(samples) * 1_000_000 / u64::from(SAMPLE_RATE_HZ))
}

/// Sender settings for one key press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderConfig {
    /// Key-down time in samples (e.g. 800 = 100 ms).
    pub duration_samples: u32,
    /// Volume field, -dBm0 (0..=63); 10 is a typical keypad level.
    pub volume: u8,
    /// Samples between updates.
    pub update_samples: u32,
    /// Samples between the repeated end packets.
    pub end_spacing_samples: u32,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            duration_samples: 800,
            volume: 10,
            update_samples: DEFAULT_UPDATE_SAMPLES,
            end_spacing_samples: 160,
        }
    }
}

/// One packet to send: RTP marker and timestamp, the payload, and when to send it in samples
/// after the key went down. The caller fills in sequence number and SSRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    /// RTP M bit (first packet of the press only).
    pub marker: bool,
    /// RTP timestamp (the segment's start).
    pub timestamp: u32,
    /// The report.
    pub event: TelephoneEvent,
    /// Send offset from key-down, in samples.
    pub send_at_samples: u64,
}

/// Produces the packets of one key press (§2.5.1): a start packet with M set, updates every
/// `update_samples`, segments when the duration passes 0xFFFF (§2.5.1.3), then three end
/// packets with the same timestamp and final duration (§2.5.1.4).
#[derive(Debug, Clone)]
pub struct Sender {
    digit: Digit,
    start_ts: u32,
    config: SenderConfig,
    /// Offset of the next update.
    next_update: u64,
    ends_sent: u8,
    first: bool,
}

/// End packets sent per press (§2.5.1.4).
pub const END_REPEATS: u8 = 3;

impl Sender {
    /// Packets for `digit` pressed at RTP timestamp `start_ts`.
    pub fn new(digit: Digit, start_ts: u32, config: SenderConfig) -> Self {
        Self {
            digit,
            start_ts,
            config,
            next_update: 0,
            ends_sent: 0,
            first: true,
        }
    }

    fn packet(&mut self, offset: u64, end: bool, send_at: u64) -> EventPacket {
        // Segment k starts at k * 0xFFFF samples; offset fits u64 and the quotient is small
        // (u32 durations), so the u32 casts below cannot truncate meaningfully.
        let segment_start =
            (offset / u64::from(MAX_SEGMENT_DURATION)) * u64::from(MAX_SEGMENT_DURATION);
        let (segment_start, in_segment) = if end && offset > 0 && offset == segment_start {
            // The final duration lands exactly on a boundary: report the full old segment.
            let s = segment_start - u64::from(MAX_SEGMENT_DURATION);
            (s, MAX_SEGMENT_DURATION as u64)
        } else {
            (segment_start, offset - segment_start)
        };
        let marker = std::mem::take(&mut self.first);
        EventPacket {
            marker,
            timestamp: self.start_ts.wrapping_add(segment_start as u32),
            event: TelephoneEvent {
                event: self.digit.event_code(),
                end,
                volume: self.config.volume & 0x3F,
                duration: in_segment.min(u64::from(MAX_SEGMENT_DURATION)) as u16,
            },
            send_at_samples: send_at,
        }
    }
}

impl Iterator for Sender {
    type Item = EventPacket;

    fn next(&mut self) -> Option<EventPacket> {
        let total = u64::from(self.config.duration_samples);
        if self.next_update < total {
            let at = self.next_update;
            self.next_update += u64::from(self.config.update_samples.max(1));
            return Some(self.packet(at, false, at));
        }
        if self.ends_sent < END_REPEATS {
            let send_at =
                total + u64::from(self.ends_sent) * u64::from(self.config.end_spacing_samples);
            self.ends_sent += 1;
            return Some(self.packet(total, true, send_at));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn payload(code: u8, end: bool, duration: u16) -> [u8; 4] {
        TelephoneEvent {
            event: code,
            end,
            volume: 10,
            duration,
        }
        .to_bytes()
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// Play a sender's packets into a receiver with `send_at` as arrival time; returns presses.
    fn play(rx: &mut Receiver, t0: Instant, packets: &[EventPacket]) -> Vec<KeyPress> {
        let mut out = Vec::new();
        for p in packets {
            let now = t0 + samples_to_duration(p.send_at_samples as u32);
            if let Some(d) = rx.poll_timeout() {
                if d <= now {
                    rx.handle_timeout(d);
                }
            }
            rx.handle_packet(now, p.marker, p.timestamp, &p.event.to_bytes())
                .unwrap();
            out.extend(std::iter::from_fn(|| rx.poll_event()));
        }
        out
    }

    fn drain_after(rx: &mut Receiver, now: Instant) -> Vec<KeyPress> {
        rx.handle_timeout(now);
        std::iter::from_fn(|| rx.poll_event()).collect()
    }

    #[test]
    fn payload_round_trips_and_rejects_short_input() {
        let ev = TelephoneEvent {
            event: 11,
            end: true,
            volume: 63,
            duration: 0xABCD,
        };
        assert_eq!(ev.to_bytes(), [11, 0xBF, 0xAB, 0xCD]);
        assert_eq!(TelephoneEvent::parse(&ev.to_bytes()), Ok(ev));
        assert_eq!(
            TelephoneEvent::parse(&[1, 2, 3]),
            Err(Rfc4733Error::Truncated { len: 3 })
        );
        // Reserved bit is ignored.
        assert_eq!(TelephoneEvent::parse(&[5, 0x40, 0, 1]).unwrap().volume, 0);
    }

    #[test]
    fn end_bit_repeated_three_times_counts_once() {
        let t0 = Instant::now();
        let mut rx = Receiver::default();
        let packets: Vec<_> = Sender::new(Digit::D5, 1000, SenderConfig::default()).collect();
        assert_eq!(packets.iter().filter(|p| p.event.end).count(), 3);
        let presses = play(&mut rx, t0, &packets);
        assert_eq!(presses.len(), 1);
        assert_eq!(presses[0].digit, Digit::D5);
        assert_eq!(presses[0].duration_samples, 800);
        assert_eq!(presses[0].reason, EndReason::EndBit);
        assert!(drain_after(&mut rx, ms(t0, 5000)).is_empty());
    }

    #[test]
    fn missing_marker_bit_still_detects_each_new_event() {
        let t0 = Instant::now();
        let mut rx = Receiver::default();
        let mut all = Vec::new();
        for (i, d) in [Digit::D1, Digit::D1, Digit::D2].into_iter().enumerate() {
            let start = i as u32 * 1200;
            for mut p in Sender::new(d, start, SenderConfig::default()) {
                p.marker = false;
                p.send_at_samples += u64::from(start);
                all.push(p);
            }
        }
        let presses = play(&mut rx, t0, &all);
        let digits: Vec<_> = presses.iter().map(|p| p.digit).collect();
        assert_eq!(digits, vec![Digit::D1, Digit::D1, Digit::D2]);
    }

    #[test]
    fn two_second_key_press_counts_once_with_its_full_duration() {
        let t0 = Instant::now();
        let mut rx = Receiver::default();
        let cfg = SenderConfig {
            duration_samples: 16_000,
            ..SenderConfig::default()
        };
        let packets: Vec<_> = Sender::new(Digit::Star, 42, cfg).collect();
        let presses = play(&mut rx, t0, &packets);
        assert_eq!(presses.len(), 1);
        assert_eq!(presses[0].duration_samples, 16_000);
    }

    #[test]
    fn duration_overflow_segments_continue_the_same_press() {
        // 20 s press: 160 000 samples = three segments (RFC 4733 §2.5.2.3).
        let t0 = Instant::now();
        let mut rx = Receiver::default();
        let cfg = SenderConfig {
            duration_samples: 160_000,
            ..SenderConfig::default()
        };
        let packets: Vec<_> = Sender::new(Digit::D0, u32::MAX - 1000, cfg).collect();
        let timestamps: std::collections::BTreeSet<_> =
            packets.iter().map(|p| p.timestamp).collect();
        assert_eq!(
            timestamps.len(),
            3,
            "three segments, across the timestamp wrap"
        );
        let presses = play(&mut rx, t0, &packets);
        assert_eq!(presses.len(), 1);
        assert_eq!(presses[0].duration_samples, 160_000);
    }

    #[test]
    fn end_bit_on_a_segment_boundary_does_not_double_count() {
        let t0 = Instant::now();
        let mut rx = Receiver::default();
        rx.handle_packet(ms(t0, 0), true, 0, &payload(3, false, 0))
            .unwrap();
        rx.handle_packet(ms(t0, 8190), false, 0, &payload(3, false, 65_400))
            .unwrap();
        rx.handle_packet(ms(t0, 8191), false, 0, &payload(3, true, 65_535))
            .unwrap();
        rx.handle_packet(ms(t0, 8200), false, 65_535, &payload(3, false, 80))
            .unwrap();
        rx.handle_packet(ms(t0, 8300), false, 65_535, &payload(3, true, 800))
            .unwrap();
        let presses = drain_after(&mut rx, ms(t0, 9000));
        assert_eq!(presses.len(), 1);
    }

    #[test]
    fn tone_65ms_pause_65ms_gives_every_digit() {
        let t0 = Instant::now();
        let mut rx = Receiver::default();
        let cfg = SenderConfig {
            duration_samples: 520,
            update_samples: 160,
            ..SenderConfig::default()
        };
        let digits = [
            Digit::D6,
            Digit::D6,
            Digit::D2,
            Digit::D4,
            Digit::D6,
            Digit::D6,
        ];
        let mut all = Vec::new();
        for (i, &d) in digits.iter().enumerate() {
            let start = i as u32 * 1040;
            for mut p in Sender::new(d, start, cfg) {
                p.send_at_samples += u64::from(start);
                all.push(p);
            }
        }
        all.sort_by_key(|p| p.send_at_samples);
        let presses = play(&mut rx, t0, &all);
        assert_eq!(presses.iter().map(|p| p.digit).collect::<Vec<_>>(), digits);
    }

    #[test]
    fn lost_end_packets_are_closed_by_the_next_event_or_timeout() {
        let t0 = Instant::now();
        let mut rx = Receiver::default();
        rx.handle_packet(ms(t0, 0), true, 0, &payload(7, false, 0))
            .unwrap();
        rx.handle_packet(ms(t0, 50), false, 0, &payload(7, false, 400))
            .unwrap();
        // Next event without any end packet for the first.
        rx.handle_packet(ms(t0, 300), true, 2400, &payload(8, false, 0))
            .unwrap();
        let first = rx.poll_event().unwrap();
        assert_eq!(
            (first.digit, first.reason),
            (Digit::D7, EndReason::NextEvent)
        );
        assert_eq!(rx.poll_timeout(), Some(ms(t0, 550)));
        assert!(drain_after(&mut rx, ms(t0, 549)).is_empty());
        let second = drain_after(&mut rx, ms(t0, 550));
        assert_eq!(second.len(), 1);
        assert_eq!(
            (second[0].digit, second[0].reason),
            (Digit::D8, EndReason::Timeout)
        );
        // The lost end packets arriving late do not resurrect it.
        rx.handle_packet(ms(t0, 600), false, 2400, &payload(8, true, 800))
            .unwrap();
        assert!(rx.poll_event().is_none());
    }

    #[test]
    fn reordered_and_duplicated_packets_count_once() {
        let t0 = Instant::now();
        let mut rx = Receiver::default();
        let mut packets: Vec<_> = Sender::new(Digit::D9, 5000, SenderConfig::default()).collect();
        // Swap start and first update, duplicate an update, move an update after the ends.
        packets.swap(0, 1);
        let dup = packets[2];
        packets.insert(3, dup);
        let late = packets.remove(1);
        packets.push(late);
        let presses = play(&mut rx, t0, &packets);
        assert_eq!(presses.len(), 1);
        assert!(rx.stats().stale >= 3);
    }

    #[test]
    fn stale_update_of_a_previous_event_does_not_start_a_new_one() {
        let t0 = Instant::now();
        let mut rx = Receiver::default();
        rx.handle_packet(ms(t0, 0), true, 1000, &payload(1, false, 0))
            .unwrap();
        rx.handle_packet(ms(t0, 100), true, 2000, &payload(2, false, 0))
            .unwrap();
        rx.handle_packet(ms(t0, 110), false, 1000, &payload(1, false, 400))
            .unwrap();
        rx.handle_packet(ms(t0, 200), false, 2000, &payload(2, true, 800))
            .unwrap();
        let presses = drain_after(&mut rx, ms(t0, 1000));
        assert_eq!(presses.len(), 2);
    }

    #[test]
    fn non_key_events_are_ignored() {
        let t0 = Instant::now();
        let mut rx = Receiver::default();
        rx.handle_packet(t0, true, 0, &payload(16, true, 800))
            .unwrap();
        assert!(drain_after(&mut rx, ms(t0, 1000)).is_empty());
        assert_eq!(rx.stats().ignored, 1);
    }

    #[test]
    fn sender_marks_only_the_first_packet_and_updates_every_50ms() {
        let packets: Vec<_> = Sender::new(Digit::Pound, 7, SenderConfig::default()).collect();
        assert_eq!(packets.len(), 2 + 3);
        assert!(packets[0].marker);
        assert!(packets[1..].iter().all(|p| !p.marker));
        assert!(packets
            .iter()
            .all(|p| p.timestamp == 7 && p.event.event == 11));
        assert_eq!(packets[1].send_at_samples, 400);
        assert_eq!(packets[1].event.duration, 400);
        assert!(packets[2..]
            .iter()
            .all(|p| p.event.end && p.event.duration == 800));
    }

    proptest! {
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = TelephoneEvent::parse(&bytes);
        }

        #[test]
        fn receiver_never_panics_on_arbitrary_packets(
            packets in proptest::collection::vec((any::<bool>(), any::<u32>(), proptest::collection::vec(any::<u8>(), 0..6), 0u64..500), 0..60)
        ) {
            let t0 = Instant::now();
            let mut rx = Receiver::default();
            let mut now = t0;
            for (m, ts, p, dt) in packets {
                now += Duration::from_millis(dt);
                rx.handle_timeout(now);
                let _ = rx.handle_packet(now, m, ts, &p);
                while rx.poll_event().is_some() {}
            }
        }

        /// Simulated network over a dialled sequence: each packet delayed 0-59 ms
        /// (reordering), some duplicated, end packets of some presses all lost. Every press
        /// is reported exactly once, in order.
        #[test]
        fn dialled_sequence_survives_reordering_duplicates_and_lost_ends(
            keys in proptest::collection::vec(0u8..16, 1..12),
            net in proptest::collection::vec((0u64..60, any::<bool>()), 200),
            lose_end in proptest::collection::vec(any::<bool>(), 12),
        ) {
            let t0 = Instant::now();
            let cfg = SenderConfig { duration_samples: 800, ..SenderConfig::default() };
            let mut arrivals: Vec<(u64, EventPacket)> = Vec::new();
            let mut n = 0;
            for (i, &key) in keys.iter().enumerate() {
                let digit = Digit::from_event_code(key).unwrap();
                // 100 ms tone, 200 ms pause: a press every 300 ms (2400 samples).
                let start = i as u32 * 2400;
                for mut p in Sender::new(digit, start.wrapping_add(0xFFFF_0000), cfg) {
                    if p.event.end && lose_end[i] {
                        continue;
                    }
                    p.send_at_samples += u64::from(start);
                    let (delay, dup) = net[n % net.len()];
                    n += 1;
                    let at = p.send_at_samples / 8 + delay;
                    arrivals.push((at, p));
                    if dup {
                        arrivals.push((at + 1, p));
                    }
                }
            }
            arrivals.sort_by_key(|(at, _)| *at);
            let mut rx = Receiver::default();
            let mut presses = Vec::new();
            for (at, p) in arrivals {
                let now = ms(t0, at);
                if let Some(d) = rx.poll_timeout().filter(|d| *d <= now) {
                    rx.handle_timeout(d);
                }
                rx.handle_packet(now, p.marker, p.timestamp, &p.event.to_bytes()).unwrap();
                presses.extend(std::iter::from_fn(|| rx.poll_event()));
            }
            presses.extend(drain_after(&mut rx, ms(t0, 1_000_000)));
            let got: Vec<u8> = presses.iter().map(|p| p.digit.event_code()).collect();
            prop_assert_eq!(got, keys);
        }

        #[test]
        fn any_press_length_counts_once(duration in 0u32..400_000, start_ts: u32, update in 80u32..800) {
            let t0 = Instant::now();
            let mut rx = Receiver::default();
            let cfg = SenderConfig { duration_samples: duration, update_samples: update, ..SenderConfig::default() };
            let packets: Vec<_> = Sender::new(Digit::A, start_ts, cfg).collect();
            let mut presses = play(&mut rx, t0, &packets);
            presses.extend(drain_after(&mut rx, t0 + Duration::from_secs(100)));
            prop_assert_eq!(presses.len(), 1);
            prop_assert_eq!(presses[0].duration_samples, duration);
        }
    }
}
