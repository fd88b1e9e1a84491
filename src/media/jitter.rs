//! Fixed-delay playout buffer: RTP packets in (arrival `Instant` passed in), 20 ms frames of
//! 160 samples out on a steady sample clock (RFC 3550 §6.4.1 describes the jitter such a
//! buffer absorbs; we do not adapt the delay, because the modem on the far side wants a
//! constant latency more than a small one).
//!
//! - The first packet fixes the mapping: its timestamp plays `playout_delay` after it arrived.
//!   From then on a frame is due every 20 ms and [`JitterBuffer::poll_frame`] returns
//!   [`Frame::Audio`] or [`Frame::Lost`]; missing audio is reported, never skipped, so the
//!   modem keeps its timing.
//! - Samples are stored by timestamp in a ring of `capacity_frames * 160` samples allocated
//!   once. Packets of any length (10, 20, 30 ms ...) and any alignment fill it.
//! - A packet already played is *late*; one whose samples are all present is a *duplicate*;
//!   both are dropped and counted.
//! - A new SSRC, or a timestamp more than the ring's span away from the playout point
//!   (a jump, RFC 3550 A.1 calls it a restart), resyncs: the ring is cleared and the new
//!   timestamp again plays `playout_delay` after arrival, on the same output clock. A packet
//!   delayed by more than the ring's span (a network stall of over a second at the default
//!   size) is therefore indistinguishable from a backward jump and resyncs too; the modem
//!   has lost carrier by then anyway.
//! - RFC 3389 comfort noise (PT 13) and other payload types carry no samples for us: they
//!   count as activity and are otherwise ignored.
//! - [`JitterEvent::Inactive`] fires once when no RTP arrived for `inactivity_timeout`
//!   (RFC 3550 §6.3.5 uses the same idea for member timeout).
//!
//! The caller drives it: `push` on each packet, then at `poll_timeout` call `handle_timeout`
//! and drain `poll_frame` / `poll_event`. Memory is fixed after `new`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::media::g711::Law;
use crate::media::rtp::{RtpPacket, Ssrc};
use crate::media::FRAME_SAMPLES;

/// Duration of one output frame.
pub const FRAME_DURATION: Duration = Duration::from_millis(20);
/// Fewest frames the ring may hold: 200 ms.
pub const MIN_CAPACITY_FRAMES: usize = 10;
/// Longest playout delay accepted; larger configured values are clamped.
pub const MAX_PLAYOUT_DELAY: Duration = Duration::from_secs(4);
/// Most frames the ring may hold: 10 s (bounds memory whatever the configuration says).
pub const MAX_CAPACITY_FRAMES: usize = 500;
const MAX_QUEUED_EVENTS: usize = 16;

/// One 20 ms output frame.
// 322 bytes by value is intended: boxing the samples would allocate every 20 ms.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// 160 samples; samples of a partly received frame that are missing are zero.
    Audio([i16; FRAME_SAMPLES]),
    /// No sample of this frame arrived in time.
    Lost,
}

/// Why the buffer resynchronised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncReason {
    /// The sender's SSRC changed.
    SsrcChanged,
    /// A timestamp far outside the ring's span.
    TimestampJump,
}

/// Events for the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitterEvent {
    /// No RTP for the configured timeout.
    Inactive {
        /// Arrival of the last packet (or creation of the buffer).
        last_activity: Instant,
    },
    /// Playout was restarted for a new stream position.
    Resynced {
        /// The stream now played.
        ssrc: Ssrc,
        /// Why.
        reason: ResyncReason,
    },
}

/// Settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Delay between a packet's arrival and its playout, fixed at the first packet (at most
    /// [`MAX_PLAYOUT_DELAY`]).
    pub playout_delay: Duration,
    /// Ring size in 20 ms frames; raised to at least twice the playout delay plus
    /// [`MIN_CAPACITY_FRAMES`], capped at [`MAX_CAPACITY_FRAMES`].
    pub capacity_frames: usize,
    /// Raise [`JitterEvent::Inactive`] after this long without RTP.
    pub inactivity_timeout: Duration,
    /// The negotiated codec.
    pub law: Law,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self {
            playout_delay: Duration::from_millis(60),
            capacity_frames: 50,
            inactivity_timeout: Duration::from_secs(10),
            law: Law::Ulaw,
        }
    }
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Audio packets accepted (fully or partly).
    pub accepted: u64,
    /// Packets that arrived after their playout time.
    pub late: u64,
    /// Packets whose samples were all present already.
    pub duplicates: u64,
    /// Comfort noise packets (PT 13).
    pub comfort_noise: u64,
    /// Packets of another payload type.
    pub other_payload: u64,
    /// Resyncs (SSRC change or timestamp jump).
    pub resyncs: u64,
    /// Frames reported as [`Frame::Lost`].
    pub lost_frames: u64,
    /// Frames with some, not all, samples.
    pub partial_frames: u64,
    /// Frames with all samples.
    pub full_frames: u64,
}

#[derive(Debug, Clone, Copy)]
struct Playout {
    ssrc: Ssrc,
    /// RTP timestamp of the first sample of the next output frame.
    play_ts: u32,
    /// When the next output frame is due.
    next_due: Instant,
    /// Ring index of `play_ts`.
    read_index: usize,
}

/// The playout buffer for one call's incoming audio.
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    config: JitterConfig,
    samples: Vec<i16>,
    present: Vec<bool>,
    playout: Option<Playout>,
    last_activity: Instant,
    inactive_reported: bool,
    events: VecDeque<JitterEvent>,
    stats: JitterStats,
}

impl JitterBuffer {
    /// A buffer created at `now` (the inactivity timer starts here).
    pub fn new(now: Instant, config: JitterConfig) -> Self {
        let config = JitterConfig {
            playout_delay: config.playout_delay.min(MAX_PLAYOUT_DELAY),
            ..config
        };
        // The ring must hold the playout delay twice over (a burst arriving after a stall),
        // otherwise in-time packets would look like timestamp jumps.
        let delay_frames = usize::try_from(
            config
                .playout_delay
                .as_micros()
                .div_ceil(FRAME_DURATION.as_micros()),
        )
        .unwrap_or(usize::MAX);
        let capacity_frames = config
            .capacity_frames
            .max(MIN_CAPACITY_FRAMES)
            .max(
                delay_frames
                    .saturating_mul(2)
                    .saturating_add(MIN_CAPACITY_FRAMES),
            )
            .min(MAX_CAPACITY_FRAMES);
        let config = JitterConfig {
            capacity_frames,
            ..config
        };
        let len = capacity_frames * FRAME_SAMPLES;
        Self {
            config,
            samples: vec![0; len],
            present: vec![false; len],
            playout: None,
            last_activity: now,
            inactive_reported: false,
            events: VecDeque::new(),
            stats: JitterStats::default(),
        }
    }

    /// Feed a parsed RTP packet that arrived at `now`. G.711 of the configured law is
    /// decoded; comfort noise and other payload types only count as activity.
    pub fn push(&mut self, now: Instant, packet: &RtpPacket<'_>) {
        self.touch(now);
        if packet.is_comfort_noise() {
            self.stats.comfort_noise += 1;
            return;
        }
        if packet.payload_type != self.config.law.payload_type() {
            self.stats.other_payload += 1;
            return;
        }
        let law = self.config.law;
        let payload = packet.payload;
        self.write(now, packet.ssrc, packet.timestamp, payload.len(), |i| {
            payload.get(i).map_or(0, |&c| law.decode(c))
        });
    }

    /// Feed already decoded samples (for tests and other codecs) that arrived at `now`.
    pub fn push_samples(&mut self, now: Instant, ssrc: Ssrc, timestamp: u32, samples: &[i16]) {
        self.touch(now);
        self.write(now, ssrc, timestamp, samples.len(), |i| {
            samples.get(i).copied().unwrap_or(0)
        });
    }

    /// The next frame, if one is due at `now`. Call until `None`.
    pub fn poll_frame(&mut self, now: Instant) -> Option<Frame> {
        let mut p = self.playout?;
        if now < p.next_due {
            return None;
        }
        let cap = self.samples.len();
        let mut out = [0i16; FRAME_SAMPLES];
        let mut count = 0usize;
        for (k, o) in out.iter_mut().enumerate() {
            let idx = (p.read_index + k) % cap;
            if self.present[idx] {
                *o = self.samples[idx];
                count += 1;
            }
            self.present[idx] = false;
        }
        p.read_index = (p.read_index + FRAME_SAMPLES) % cap;
        p.play_ts = p.play_ts.wrapping_add(FRAME_SAMPLES as u32);
        p.next_due = after(p.next_due, FRAME_DURATION);
        self.playout = Some(p);
        Some(match count {
            0 => {
                self.stats.lost_frames += 1;
                Frame::Lost
            }
            FRAME_SAMPLES => {
                self.stats.full_frames += 1;
                Frame::Audio(out)
            }
            _ => {
                self.stats.partial_frames += 1;
                Frame::Audio(out)
            }
        })
    }

    /// Fire the inactivity timer if it expired.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.inactive_reported && now >= self.inactivity_deadline() {
            self.inactive_reported = true;
            self.queue(JitterEvent::Inactive {
                last_activity: self.last_activity,
            });
        }
    }

    /// The earliest of the next frame's due time and the inactivity deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let inactivity = (!self.inactive_reported).then(|| self.inactivity_deadline());
        match (self.playout.map(|p| p.next_due), inactivity) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<JitterEvent> {
        self.events.pop_front()
    }

    /// Counters.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Ring capacity in samples (fixed at construction).
    pub fn capacity_samples(&self) -> usize {
        self.samples.len()
    }

    fn inactivity_deadline(&self) -> Instant {
        self.last_activity
            .checked_add(self.config.inactivity_timeout)
            .unwrap_or(self.last_activity)
    }

    fn touch(&mut self, now: Instant) {
        self.last_activity = self.last_activity.max(now);
        self.inactive_reported = false;
    }

    fn queue(&mut self, event: JitterEvent) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    fn write(
        &mut self,
        now: Instant,
        ssrc: Ssrc,
        timestamp: u32,
        len: usize,
        sample: impl Fn(usize) -> i16,
    ) {
        let cap = self.samples.len();
        // A packet longer than the ring cannot be played whole; keep its start.
        let len = len.min(cap);
        if len == 0 {
            return;
        }
        let p = match self.playout {
            None => {
                let p = Playout {
                    ssrc,
                    play_ts: timestamp,
                    next_due: after(now, self.config.playout_delay),
                    read_index: 0,
                };
                self.playout = Some(p);
                p
            }
            Some(p) if p.ssrc != ssrc => {
                self.resync(now, ssrc, timestamp, len, ResyncReason::SsrcChanged)
            }
            Some(p) => {
                let delta = i64::from(timestamp.wrapping_sub(p.play_ts) as i32);
                let far_behind = delta < -(cap as i64);
                let far_ahead = delta + len as i64 > cap as i64;
                if far_behind || far_ahead {
                    self.resync(now, ssrc, timestamp, len, ResyncReason::TimestampJump)
                } else {
                    p
                }
            }
        };
        let delta = i64::from(timestamp.wrapping_sub(p.play_ts) as i32);
        if delta + len as i64 <= 0 {
            self.stats.late += 1;
            return;
        }
        // Skip the part that is already played; delta + len <= cap was ensured above.
        let skip = usize::try_from(-delta).unwrap_or(0);
        let first = usize::try_from(delta).unwrap_or(0);
        let mut new_samples = 0usize;
        for i in skip..len {
            let idx = (p.read_index + first + (i - skip)) % cap;
            if !self.present[idx] {
                self.present[idx] = true;
                self.samples[idx] = sample(i);
                new_samples += 1;
            }
        }
        if new_samples == 0 {
            self.stats.duplicates += 1;
        } else if skip > 0 {
            self.stats.late += 1;
            self.stats.accepted += 1;
        } else {
            self.stats.accepted += 1;
        }
    }

    /// Restart playout so that `timestamp` plays about `playout_delay` after `now`, keeping
    /// the output clock (frames stay 20 ms apart).
    fn resync(
        &mut self,
        now: Instant,
        ssrc: Ssrc,
        timestamp: u32,
        len: usize,
        reason: ResyncReason,
    ) -> Playout {
        self.present.iter_mut().for_each(|p| *p = false);
        self.stats.resyncs += 1;
        let next_due = self.playout.map_or(now, |p| p.next_due);
        let target = after(now, self.config.playout_delay);
        let wait = target.saturating_duration_since(next_due);
        let frames_until = wait.as_micros().div_ceil(FRAME_DURATION.as_micros());
        // The packet must fit in the ring after the frames before it.
        let room = (self.samples.len().saturating_sub(len) / FRAME_SAMPLES) as u128;
        let frames_until = frames_until.min(room) as u32;
        let p = Playout {
            ssrc,
            play_ts: timestamp.wrapping_sub(frames_until * FRAME_SAMPLES as u32),
            next_due,
            read_index: 0,
        };
        self.playout = Some(p);
        self.queue(JitterEvent::Resynced { ssrc, reason });
        p
    }
}

/// `t + d`, saturating instead of panicking at the end of `Instant`'s range.
fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::{parse_rtp, RtpHeader};
    use proptest::prelude::*;

    const SSRC: Ssrc = Ssrc(0x1234);

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// A frame whose samples all equal `n` (to recognise it at the output).
    fn frame_of(n: i16) -> [i16; FRAME_SAMPLES] {
        [n; FRAME_SAMPLES]
    }

    fn buffer(t0: Instant) -> JitterBuffer {
        JitterBuffer::new(t0, JitterConfig::default())
    }

    /// Poll every frame due up to `now`.
    fn drain(jb: &mut JitterBuffer, now: Instant) -> Vec<Frame> {
        std::iter::from_fn(|| jb.poll_frame(now)).collect()
    }

    fn marks(frames: &[Frame]) -> Vec<i16> {
        frames
            .iter()
            .map(|f| match f {
                Frame::Audio(s) => s[0],
                Frame::Lost => -1,
            })
            .collect()
    }

    #[test]
    fn in_order_stream_plays_after_the_fixed_delay() {
        let t0 = Instant::now();
        let mut jb = buffer(t0);
        assert_eq!(jb.poll_frame(t0), None);
        for k in 0..10u32 {
            jb.push_samples(
                ms(t0, 20 * u64::from(k)),
                SSRC,
                1000 + 160 * k,
                &frame_of(k as i16),
            );
        }
        assert!(drain(&mut jb, ms(t0, 59)).is_empty());
        let frames = drain(&mut jb, ms(t0, 60 + 9 * 20));
        assert_eq!(marks(&frames), (0..10).collect::<Vec<_>>());
        assert_eq!(jb.stats().full_frames, 10);
    }

    #[test]
    fn reordering_within_the_delay_loses_nothing() {
        let t0 = Instant::now();
        let mut jb = buffer(t0);
        for (k, at) in [(0u32, 0u64), (2, 20), (1, 30), (4, 60), (3, 70)] {
            jb.push_samples(ms(t0, at), SSRC, 160 * k, &frame_of(k as i16));
        }
        assert_eq!(marks(&drain(&mut jb, ms(t0, 140))), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn missing_packet_is_reported_lost_and_timing_continues() {
        let t0 = Instant::now();
        let mut jb = buffer(t0);
        for k in [0u32, 1, 3] {
            jb.push_samples(
                ms(t0, 20 * u64::from(k)),
                SSRC,
                160 * k,
                &frame_of(k as i16),
            );
        }
        assert_eq!(marks(&drain(&mut jb, ms(t0, 120))), vec![0, 1, -1, 3]);
        assert_eq!(jb.stats().lost_frames, 1);
    }

    #[test]
    fn duplicates_and_late_packets_are_dropped_and_counted() {
        let t0 = Instant::now();
        let mut jb = buffer(t0);
        jb.push_samples(t0, SSRC, 0, &frame_of(1));
        jb.push_samples(ms(t0, 1), SSRC, 0, &frame_of(9));
        assert_eq!(jb.stats().duplicates, 1);
        assert_eq!(marks(&drain(&mut jb, ms(t0, 80))), vec![1, -1]);
        // Frame 1 (ts 160) was already played as Lost.
        jb.push_samples(ms(t0, 85), SSRC, 160, &frame_of(2));
        assert_eq!(jb.stats().late, 1);
        jb.push_samples(ms(t0, 85), SSRC, 320, &frame_of(3));
        assert_eq!(marks(&drain(&mut jb, ms(t0, 100))), vec![3]);
    }

    #[test]
    fn packet_sizes_other_than_20ms_fill_frames_correctly() {
        let t0 = Instant::now();
        let mut jb = buffer(t0);
        let audio: Vec<i16> = (0..480).map(|i| i as i16).collect();
        // 30 ms packets (240 samples) covering three 20 ms frames.
        jb.push_samples(t0, SSRC, 0, &audio[..240]);
        jb.push_samples(ms(t0, 30), SSRC, 240, &audio[240..]);
        let frames = drain(&mut jb, ms(t0, 100));
        let mut flat = Vec::new();
        for f in &frames[..3] {
            let Frame::Audio(s) = f else { panic!("lost") };
            flat.extend_from_slice(s);
        }
        assert_eq!(flat, audio);
    }

    #[test]
    fn ssrc_change_resyncs_on_the_same_output_clock() {
        let t0 = Instant::now();
        let mut jb = buffer(t0);
        jb.push_samples(t0, SSRC, 0, &frame_of(1));
        assert_eq!(marks(&drain(&mut jb, ms(t0, 60))), vec![1]);
        jb.push_samples(ms(t0, 70), Ssrc(99), 777_777, &frame_of(2));
        assert_eq!(
            jb.poll_event(),
            Some(JitterEvent::Resynced {
                ssrc: Ssrc(99),
                reason: ResyncReason::SsrcChanged
            })
        );
        // Frames keep coming every 20 ms; the new packet plays ~60 ms after its arrival.
        let frames = drain(&mut jb, ms(t0, 160));
        assert_eq!(frames.len(), 5);
        assert_eq!(marks(&frames), vec![-1, -1, -1, 2, -1]);
    }

    #[test]
    fn huge_timestamp_jump_resyncs_without_growing_memory() {
        let t0 = Instant::now();
        let mut jb = buffer(t0);
        let cap = jb.capacity_samples();
        jb.push_samples(t0, SSRC, 0, &frame_of(1));
        jb.push_samples(ms(t0, 20), SSRC, 2_000_000_000, &frame_of(2));
        jb.push_samples(ms(t0, 40), SSRC, 2_000_000_160, &frame_of(3));
        assert_eq!(jb.stats().resyncs, 1);
        assert_eq!(jb.capacity_samples(), cap);
        // The old frame is dropped; the jumped stream plays 60 ms after it arrived.
        assert_eq!(marks(&drain(&mut jb, ms(t0, 100))), vec![-1, 2, 3]);
    }

    #[test]
    fn timestamps_wrapping_past_u32_max_play_seamlessly() {
        let t0 = Instant::now();
        let mut jb = buffer(t0);
        let start = u32::MAX - 319;
        for k in 0..5u32 {
            jb.push_samples(
                ms(t0, 20 * u64::from(k)),
                SSRC,
                start.wrapping_add(160 * k),
                &frame_of(k as i16),
            );
        }
        assert_eq!(marks(&drain(&mut jb, ms(t0, 140))), vec![0, 1, 2, 3, 4]);
        assert_eq!(jb.stats().resyncs, 0);
    }

    #[test]
    fn inactivity_fires_once_and_rearms_on_traffic() {
        let t0 = Instant::now();
        let mut jb = buffer(t0);
        assert_eq!(jb.poll_timeout(), Some(ms(t0, 10_000)));
        jb.handle_timeout(ms(t0, 9_999));
        assert_eq!(jb.poll_event(), None);
        jb.handle_timeout(ms(t0, 10_000));
        assert_eq!(
            jb.poll_event(),
            Some(JitterEvent::Inactive { last_activity: t0 })
        );
        jb.handle_timeout(ms(t0, 20_000));
        assert_eq!(jb.poll_event(), None);
        assert_eq!(jb.poll_timeout(), None);
        // Comfort noise counts as activity but carries no audio.
        let mut bytes = Vec::new();
        RtpHeader {
            marker: false,
            payload_type: 13,
            sequence: 1,
            timestamp: 0,
            ssrc: SSRC,
        }
        .write(&[40], &mut bytes)
        .unwrap();
        jb.push(ms(t0, 20_000), &parse_rtp(&bytes).unwrap());
        assert_eq!(jb.stats().comfort_noise, 1);
        assert_eq!(jb.poll_timeout(), Some(ms(t0, 30_000)));
        assert_eq!(jb.poll_frame(ms(t0, 40_000)), None);
    }

    #[test]
    fn ring_is_sized_for_the_playout_delay_and_capped() {
        let t0 = Instant::now();
        let cfg = JitterConfig {
            playout_delay: Duration::from_millis(1000),
            capacity_frames: 1,
            ..JitterConfig::default()
        };
        assert_eq!(
            JitterBuffer::new(t0, cfg).capacity_samples(),
            110 * FRAME_SAMPLES
        );
        let cfg = JitterConfig {
            playout_delay: Duration::MAX,
            capacity_frames: usize::MAX,
            ..JitterConfig::default()
        };
        let mut jb = JitterBuffer::new(t0, cfg);
        assert_eq!(jb.capacity_samples(), MAX_CAPACITY_FRAMES * FRAME_SAMPLES);
        // Absurd delays are clamped, and do not panic.
        jb.push_samples(t0, SSRC, 0, &frame_of(1));
        assert_eq!(jb.poll_frame(ms(t0, 3999)), None);
        assert_eq!(jb.poll_frame(ms(t0, 4000)), Some(Frame::Audio(frame_of(1))));
    }

    #[test]
    fn pcmu_packets_are_decoded() {
        let t0 = Instant::now();
        let mut jb = buffer(t0);
        let mut bytes = Vec::new();
        RtpHeader {
            marker: true,
            payload_type: 0,
            sequence: 1,
            timestamp: 0,
            ssrc: SSRC,
        }
        .write(&[0x80; 160], &mut bytes)
        .unwrap();
        jb.push(t0, &parse_rtp(&bytes).unwrap());
        assert_eq!(jb.poll_frame(ms(t0, 60)), Some(Frame::Audio([32124; 160])));
    }

    proptest! {
        #[test]
        fn output_does_not_depend_on_packet_size(sizes in proptest::collection::vec(1usize..400, 1..40)) {
            let t0 = Instant::now();
            let audio: Vec<i16> = (0..3200).map(|i| (i % 1000) as i16 + 1).collect();
            let mut whole = buffer(t0);
            whole.push_samples(t0, SSRC, 0, &audio[..1600]);
            whole.push_samples(t0, SSRC, 1600, &audio[1600..]);
            let mut split = buffer(t0);
            let mut pos = 0;
            for s in sizes.iter().cycle() {
                if pos >= audio.len() { break; }
                let end = (pos + s).min(audio.len());
                split.push_samples(t0, SSRC, pos as u32, &audio[pos..end]);
                pos = end;
            }
            let a = drain(&mut whole, ms(t0, 500));
            let b = drain(&mut split, ms(t0, 500));
            prop_assert_eq!(a, b);
        }

        /// Simulated network: every packet delayed by up to 39 ms (reordering), some
        /// duplicated, some dropped. With a 60 ms playout delay nothing is late, every
        /// dropped packet is exactly one Lost frame and every other frame is exact.
        #[test]
        fn jitter_below_the_delay_is_absorbed_and_drops_map_to_lost_frames(
            net in proptest::collection::vec((0u64..40, any::<bool>(), 0u8..10), 20..120)
        ) {
            let t0 = Instant::now();
            let mut jb = buffer(t0);
            let mut arrivals: Vec<(u64, u32)> = Vec::new();
            let mut expected = Vec::new();
            for (k, &(delay, dup, drop)) in net.iter().enumerate() {
                let k = k as u32;
                // Never drop the first packet: it anchors playout.
                if drop == 0 && k > 0 {
                    expected.push(-1);
                    continue;
                }
                expected.push(k as i16);
                let at = 20 * u64::from(k) + if k == 0 { 0 } else { delay };
                arrivals.push((at, k));
                if dup {
                    arrivals.push((at + 5, k));
                }
            }
            arrivals.sort();
            let mut frames = Vec::new();
            for (at, k) in arrivals {
                frames.extend(drain(&mut jb, ms(t0, at)));
                jb.push_samples(ms(t0, at), SSRC, 160 * k, &frame_of(k as i16));
            }
            let end = 60 + 20 * (net.len() as u64 - 1);
            frames.extend(drain(&mut jb, ms(t0, end)));
            prop_assert_eq!(marks(&frames), expected);
            prop_assert_eq!(jb.stats().late, 0);
        }

        #[test]
        fn arbitrary_traffic_never_panics_and_keeps_memory_fixed(
            ops in proptest::collection::vec((any::<u32>(), any::<u8>(), 0usize..500, 0u64..100, any::<bool>()), 0..100)
        ) {
            let t0 = Instant::now();
            let mut jb = buffer(t0);
            let cap = jb.capacity_samples();
            let mut now = t0;
            let samples = [7i16; 500];
            for (ts, ssrc, len, dt, poll) in ops {
                now += Duration::from_millis(dt);
                jb.push_samples(now, Ssrc(u32::from(ssrc % 3)), ts, &samples[..len]);
                if poll {
                    jb.handle_timeout(now);
                    while jb.poll_frame(now).is_some() {}
                    while jb.poll_event().is_some() {}
                }
            }
            prop_assert_eq!(jb.capacity_samples(), cap);
        }
    }
}
