//! 300 bit/s binary FSK: ITU-T V.21 and Bell System 103, transmitter, receiver and the
//! full-duplex modem that pairs them.
//!
//! - V.21 (characteristic frequencies): channel 1 (calling modem sends) F_A mark 980 Hz / F_Z space 1180 Hz; channel 2
//!   (answering modem sends) mark 1650 Hz / space 1850 Hz. Modulation rate up to 300 bd.
//! - Bell 103: originate sends mark 1270 / space 1070 Hz, answer sends mark 2225 / space 2025.
//! - V.21 (received line signal detector, circuit 109): ON for levels above -43 dBm, OFF
//!   below -48 dBm, hysteresis of at least 2 dB. Our defaults use those thresholds in dBm0.
//!
//! Transmitter: phase-continuous (one phase accumulator, so no phase jump and no splatter at
//! the bit change), level in dBm0 (default -12), idle = continuous mark. Receiver: a
//! 6th-order band-pass (three resonators on the channel centre, ~18 dB down on the other
//! channel, so our own echoed transmission does not swamp the far end), then a
//! quadrature correlator per tone over a sliding one-bit window (non-coherent matched filter),
//! the larger energy decides the bit per sample, the summed in-band energy drives the carrier
//! detector, and [`UartRx`](super::uart::UartRx) deframes the decisions. All integer
//! correlation with exact running sums, so results do not depend on how input is chunked.
//! No IO, no clock, no allocation after `new`.

use std::collections::VecDeque;

use super::level;
use super::uart::{UartConfig, UartRx, UartTx};
use super::{ModemError, ModemEvent, SAMPLE_RATE_HZ};

/// Frequencies and rate of one direction of an FSK link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FskChannel {
    pub mark_hz: f32,
    pub space_hz: f32,
    pub baud: u32,
}

/// V.21 channel 1: sent by the calling modem.
pub const V21_CH1: FskChannel = FskChannel {
    mark_hz: 980.0,
    space_hz: 1180.0,
    baud: 300,
};
/// V.21 channel 2: sent by the answering modem.
pub const V21_CH2: FskChannel = FskChannel {
    mark_hz: 1650.0,
    space_hz: 1850.0,
    baud: 300,
};
/// Bell 103 originate band: sent by the calling modem.
pub const BELL103_ORIGINATE: FskChannel = FskChannel {
    mark_hz: 1270.0,
    space_hz: 1070.0,
    baud: 300,
};
/// Bell 103 answer band: sent by the answering modem.
pub const BELL103_ANSWER: FskChannel = FskChannel {
    mark_hz: 2225.0,
    space_hz: 2025.0,
    baud: 300,
};

/// Which end of which FSK standard a [`FskModem`] plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FskMode {
    V21Caller,
    V21Answerer,
    Bell103Originate,
    Bell103Answer,
}

impl FskMode {
    /// The channel this end transmits on.
    pub fn tx_channel(self) -> FskChannel {
        match self {
            FskMode::V21Caller => V21_CH1,
            FskMode::V21Answerer => V21_CH2,
            FskMode::Bell103Originate => BELL103_ORIGINATE,
            FskMode::Bell103Answer => BELL103_ANSWER,
        }
    }

    /// The channel this end receives on.
    pub fn rx_channel(self) -> FskChannel {
        match self {
            FskMode::V21Caller => V21_CH2,
            FskMode::V21Answerer => V21_CH1,
            FskMode::Bell103Originate => BELL103_ANSWER,
            FskMode::Bell103Answer => BELL103_ORIGINATE,
        }
    }
}

/// Default transmit level (a common PSTN modem level; V.2 caps data signals at -9 dBm0 mean).
pub const DEFAULT_TX_LEVEL_DBM0: f32 = -12.0;
/// V.21: circuit 109 ON threshold.
pub const CARRIER_ON_DBM0: f32 = -43.0;
/// V.21: circuit 109 OFF threshold.
pub const CARRIER_OFF_DBM0: f32 = -48.0;
/// Loudest level accepted (a full-scale sine is +3.14 dBm0, see [`level`]).
pub const MAX_TX_LEVEL_DBM0: f32 = 0.0;
pub const MIN_TX_LEVEL_DBM0: f32 = -60.0;
/// Largest transmit queue accepted by [`FskConfig::tx_queue_len`].
pub const MAX_TX_QUEUE_LEN: usize = 65_536;
/// Receiver events held before the oldest are kept and new ones counted as overflow
/// (~2 minutes of characters at 300 bit/s).
pub const EVENT_QUEUE_LEN: usize = 4096;
/// In-band power must stay above the ON threshold this long before carrier is declared.
pub const CARRIER_ON_SAMPLES: u32 = 80; // 10 ms
/// ... and below the OFF threshold this long before carrier is dropped.
pub const CARRIER_OFF_SAMPLES: u32 = 320; // 40 ms

/// Settings of a [`FskModem`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FskConfig {
    pub tx_level_dbm0: f32,
    pub uart: UartConfig,
    pub carrier_on_dbm0: f32,
    pub carrier_off_dbm0: f32,
    /// Bytes `write` accepts before applying back-pressure.
    pub tx_queue_len: usize,
}

impl Default for FskConfig {
    fn default() -> Self {
        FskConfig {
            tx_level_dbm0: DEFAULT_TX_LEVEL_DBM0,
            uart: UartConfig::default(),
            carrier_on_dbm0: CARRIER_ON_DBM0,
            carrier_off_dbm0: CARRIER_OFF_DBM0,
            tx_queue_len: 256,
        }
    }
}

/// A full-duplex FSK modem: transmits on one channel, receives on the other.
#[derive(Debug, Clone)]
pub struct FskModem {
    mode: FskMode,
    tx: FskTx,
    rx: FskRx,
    queue: VecDeque<u8>,
    queue_len: usize,
}

impl FskModem {
    pub fn new(mode: FskMode, cfg: FskConfig) -> Result<Self, ModemError> {
        if cfg.tx_queue_len == 0 || cfg.tx_queue_len > MAX_TX_QUEUE_LEN {
            return Err(ModemError::TxQueueLen {
                len: cfg.tx_queue_len,
                max: MAX_TX_QUEUE_LEN,
            });
        }
        Ok(FskModem {
            mode,
            tx: FskTx::new(mode.tx_channel(), cfg.tx_level_dbm0, cfg.uart)?,
            rx: FskRx::new(
                mode.rx_channel(),
                cfg.uart,
                cfg.carrier_on_dbm0,
                cfg.carrier_off_dbm0,
            )?,
            queue: VecDeque::with_capacity(cfg.tx_queue_len),
            queue_len: cfg.tx_queue_len,
        })
    }

    pub fn mode(&self) -> FskMode {
        self.mode
    }

    /// Queue bytes for transmission; returns how many were accepted (the queue is bounded).
    pub fn write(&mut self, data: &[u8]) -> usize {
        let room = self.queue_len - self.queue.len();
        let n = room.min(data.len());
        self.queue.extend(&data[..n]);
        n
    }

    /// Bytes queued or partly on the line.
    pub fn tx_pending(&self) -> usize {
        self.queue.len() + usize::from(self.tx.uart.busy())
    }

    /// Produce transmit samples; idle mark when nothing is queued.
    pub fn fill(&mut self, out: &mut [i16]) {
        let queue = &mut self.queue;
        self.tx.fill(out, || queue.pop_front());
    }

    /// Produce idle mark, leaving queued bytes queued (a preamble before the first character,
    /// so the far receiver's carrier detector and UART settle on a steady mark first).
    pub fn fill_idle(&mut self, out: &mut [i16]) {
        self.tx.fill(out, || None);
    }

    /// Take received samples.
    pub fn push(&mut self, samples: &[i16]) {
        self.rx.push(samples);
    }

    /// Account for `n` lost samples (e.g. a missing RTP packet): bit timing runs on.
    pub fn push_lost(&mut self, n: usize) {
        self.rx.push_lost(n);
    }

    pub fn poll_event(&mut self) -> Option<ModemEvent> {
        self.rx.poll_event()
    }

    /// Received line signal detector (circuit 109) state.
    pub fn carrier(&self) -> bool {
        self.rx.carrier()
    }

    /// Events dropped because nobody drained `poll_event`.
    pub fn overflowed_events(&self) -> u64 {
        self.rx.overflowed
    }
}

const TABLE_BITS: u32 = 10;
const TABLE_LEN: usize = 1 << TABLE_BITS;
/// Correlator reference amplitude (Q14).
const REF_SCALE: f32 = 16384.0;
/// Right shift of each correlator product, keeping a window sum within i32
/// (2^15 * 2^14 >> 8 = 2^21 per product, times MAX_WINDOW 64 = 2^27).
const PRODUCT_SHIFT: u32 = 8;
/// Longest bit window (baud down to 125 bit/s).
const MAX_WINDOW: usize = 64;
/// One-pole smoothing of the in-band power: 1/32 per sample (~4 ms).
const POWER_SMOOTHING: f32 = 1.0 / 32.0;

/// Rejects channels the fixed-point clocks and tables cannot represent.
fn check_channel(c: FskChannel) -> Result<(), ModemError> {
    let tone_ok = |hz: f32| (100.0..=3900.0).contains(&hz);
    if tone_ok(c.mark_hz) && tone_ok(c.space_hz) && (50..=2000).contains(&c.baud) {
        Ok(())
    } else {
        Err(ModemError::Channel {
            mark_hz: c.mark_hz,
            space_hz: c.space_hz,
            baud: c.baud,
        })
    }
}

fn phase_step(hz: f32) -> u32 {
    // Phase is a u32 turn fraction; hz < sample rate keeps the product below 2^32.
    ((f64::from(hz) / f64::from(SAMPLE_RATE_HZ)) * 4_294_967_296.0) as u32
}

fn table_index(phase: u32) -> usize {
    (phase >> (32 - TABLE_BITS)) as usize
}

fn sine_table(peak: f32) -> [i16; TABLE_LEN] {
    let mut t = [0i16; TABLE_LEN];
    for (i, v) in t.iter_mut().enumerate() {
        let x = (i as f32) * std::f32::consts::TAU / TABLE_LEN as f32;
        *v = (peak * x.sin()).round() as i16;
    }
    t
}

/// Phase-continuous FSK transmitter.
#[derive(Debug, Clone)]
pub struct FskTx {
    table: [i16; TABLE_LEN],
    phase: u32,
    mark_step: u32,
    space_step: u32,
    baud: u32,
    /// Bit clock: +baud per sample, a new bit every SAMPLE_RATE_HZ.
    clock: u32,
    mark: bool,
    uart: UartTx,
}

impl FskTx {
    pub fn new(channel: FskChannel, level_dbm0: f32, uart: UartConfig) -> Result<Self, ModemError> {
        check_channel(channel)?;
        if !(MIN_TX_LEVEL_DBM0..=MAX_TX_LEVEL_DBM0).contains(&level_dbm0) {
            return Err(ModemError::TxLevel {
                dbm0: level_dbm0,
                min: MIN_TX_LEVEL_DBM0,
                max: MAX_TX_LEVEL_DBM0,
            });
        }
        Ok(FskTx {
            table: sine_table(level::sine_peak(level_dbm0)),
            phase: 0,
            mark_step: phase_step(channel.mark_hz),
            space_step: phase_step(channel.space_hz),
            baud: channel.baud,
            // The first sample starts the first bit.
            clock: SAMPLE_RATE_HZ - channel.baud,
            mark: true,
            uart: UartTx::new(uart),
        })
    }

    /// Fill `out`, taking characters from `next_char` at frame boundaries.
    pub fn fill(&mut self, out: &mut [i16], mut next_char: impl FnMut() -> Option<u8>) {
        for s in out.iter_mut() {
            self.clock += self.baud;
            if self.clock >= SAMPLE_RATE_HZ {
                self.clock -= SAMPLE_RATE_HZ;
                self.mark = self.uart.next_bit(&mut next_char);
            }
            *s = self.table[table_index(self.phase)];
            self.phase = self.phase.wrapping_add(if self.mark {
                self.mark_step
            } else {
                self.space_step
            });
        }
    }
}

/// FSK receiver: correlator discriminator, carrier detector, UART.
#[derive(Debug, Clone)]
pub struct FskRx {
    /// Band filter ahead of the correlators: rejects our own transmit band (echo) and
    /// out-of-band noise.
    band: [Biquad; BAND_SECTIONS],
    band_gain: f32,
    cos: [i16; TABLE_LEN],
    window: usize,
    /// Per sample in the window: mark I, mark Q, space I, space Q products.
    ring: [[i32; 4]; MAX_WINDOW],
    pos: usize,
    sums: [i32; 4],
    mark_phase: u32,
    space_phase: u32,
    mark_step: u32,
    space_step: u32,
    /// Converts summed correlator energy into mean square (sample units squared).
    energy_scale: f32,
    power: f32,
    on_ms: f32,
    off_ms: f32,
    carrier: bool,
    count: u32,
    mark: bool,
    /// Samples after a loss during which the UART free-runs on the held decision.
    holdoff: usize,
    uart: UartRx,
    events: VecDeque<ModemEvent>,
    overflowed: u64,
}

impl FskRx {
    pub fn new(
        channel: FskChannel,
        uart: UartConfig,
        carrier_on_dbm0: f32,
        carrier_off_dbm0: f32,
    ) -> Result<Self, ModemError> {
        check_channel(channel)?;
        if carrier_on_dbm0.is_nan()
            || carrier_off_dbm0.is_nan()
            || carrier_on_dbm0 <= carrier_off_dbm0
        {
            return Err(ModemError::CarrierThresholds {
                on_dbm0: carrier_on_dbm0,
                off_dbm0: carrier_off_dbm0,
            });
        }
        let window = ((SAMPLE_RATE_HZ + channel.baud / 2) / channel.baud.max(1)) as usize;
        let window = window.clamp(8, MAX_WINDOW);
        // A tone of peak A gives |sum|^2 = (A * window / 2 * REF_SCALE / 2^PRODUCT_SHIFT)^2;
        // its mean square is A^2 / 2.
        let gain = window as f32 / 2.0 * REF_SCALE / (1u32 << PRODUCT_SHIFT) as f32;
        let centre = (channel.mark_hz + channel.space_hz) / 2.0;
        let section = Biquad::bandpass(centre, centre / BAND_SECTION_WIDTH_HZ);
        // Unity gain at the tones, so levels (carrier thresholds) are unchanged.
        let at_tones =
            (section.gain_at(channel.mark_hz) * section.gain_at(channel.space_hz)).sqrt();
        let band_gain = 1.0 / at_tones.powi(BAND_SECTIONS as i32).max(1e-3);
        Ok(FskRx {
            band: [section; BAND_SECTIONS],
            band_gain,
            cos: sine_table(REF_SCALE - 1.0),
            window,
            ring: [[0; 4]; MAX_WINDOW],
            pos: 0,
            sums: [0; 4],
            mark_phase: 0,
            space_phase: 0,
            mark_step: phase_step(channel.mark_hz),
            space_step: phase_step(channel.space_hz),
            energy_scale: 1.0 / (2.0 * gain * gain),
            power: 0.0,
            on_ms: level::mean_square(carrier_on_dbm0),
            off_ms: level::mean_square(carrier_off_dbm0),
            carrier: false,
            count: 0,
            mark: true,
            holdoff: 0,
            uart: UartRx::new(uart, channel.baud.max(1), SAMPLE_RATE_HZ),
            events: VecDeque::with_capacity(EVENT_QUEUE_LEN),
            overflowed: 0,
        })
    }

    pub fn push(&mut self, samples: &[i16]) {
        const QUARTER: u32 = 1 << 30; // sin table read a quarter turn ahead is cos
        for &x in samples {
            let mut y = f32::from(x) * self.band_gain;
            for b in self.band.iter_mut() {
                y = b.run(y);
            }
            // Saturating float-to-int cast keeps the product bounds of PRODUCT_SHIFT.
            let x = i32::from(y.round() as i16);
            let p = [
                (x * i32::from(self.cos[table_index(self.mark_phase.wrapping_add(QUARTER))]))
                    >> PRODUCT_SHIFT,
                (x * i32::from(self.cos[table_index(self.mark_phase)])) >> PRODUCT_SHIFT,
                (x * i32::from(self.cos[table_index(self.space_phase.wrapping_add(QUARTER))]))
                    >> PRODUCT_SHIFT,
                (x * i32::from(self.cos[table_index(self.space_phase)])) >> PRODUCT_SHIFT,
            ];
            self.mark_phase = self.mark_phase.wrapping_add(self.mark_step);
            self.space_phase = self.space_phase.wrapping_add(self.space_step);
            let old = self.ring[self.pos];
            for k in 0..4 {
                self.sums[k] += p[k] - old[k];
            }
            self.ring[self.pos] = p;
            self.pos += 1;
            if self.pos == self.window {
                self.pos = 0;
            }
            let e_mark = sq(self.sums[0]) + sq(self.sums[1]);
            let e_space = sq(self.sums[2]) + sq(self.sums[3]);
            self.mark = e_mark >= e_space;
            let inst = (e_mark + e_space) as f32 * self.energy_scale;
            self.power += (inst - self.power) * POWER_SMOOTHING;
            self.detect_carrier();
            if self.holdoff > 0 {
                self.holdoff -= 1;
                self.push_lost_bit();
            } else {
                self.clock_uart();
            }
        }
    }

    /// `n` samples were lost: keep the bit clock running on the last decision, leave the
    /// carrier detector as it was, and restart the correlation window.
    pub fn push_lost(&mut self, n: usize) {
        self.ring = [[0; 4]; MAX_WINDOW];
        self.sums = [0; 4];
        // The window must refill (and the band filter settle) before decisions mean anything.
        self.holdoff = self.window + LOSS_SETTLE_SAMPLES;
        if !self.carrier {
            return;
        }
        for _ in 0..n {
            self.push_lost_bit();
        }
    }

    fn push_lost_bit(&mut self) {
        if !self.carrier {
            return;
        }
        if let Some(e) = self.uart.push_lost_bit(self.mark) {
            self.emit(e);
        }
    }

    pub fn poll_event(&mut self) -> Option<ModemEvent> {
        self.events.pop_front()
    }

    pub fn carrier(&self) -> bool {
        self.carrier
    }

    /// Smoothed in-band power in dBm0.
    pub fn power_dbm0(&self) -> f32 {
        level::dbm0_of_mean_square(self.power)
    }

    fn detect_carrier(&mut self) {
        let crossing = if self.carrier {
            self.power < self.off_ms
        } else {
            self.power > self.on_ms
        };
        if !crossing {
            self.count = 0;
            return;
        }
        self.count += 1;
        let needed = if self.carrier {
            CARRIER_OFF_SAMPLES
        } else {
            CARRIER_ON_SAMPLES
        };
        if self.count >= needed {
            self.count = 0;
            self.carrier = !self.carrier;
            if !self.carrier {
                self.uart.reset();
            }
            self.emit(if self.carrier {
                ModemEvent::CarrierUp
            } else {
                ModemEvent::CarrierDown
            });
        }
    }

    /// The UART runs whenever in-band power is above the OFF threshold (a squelch with no
    /// delay), so a start bit sent only a few bits after the carrier starts (minimodem
    /// leads with two mark bits) is framed; characters are delivered only while carrier is
    /// declared.
    fn clock_uart(&mut self) {
        if !self.carrier && self.power <= self.off_ms {
            self.uart.reset();
            return;
        }
        if let Some(e) = self.uart.push_bit(self.mark) {
            if self.carrier {
                self.emit(e);
            }
        }
    }

    fn emit(&mut self, e: ModemEvent) {
        if self.events.len() < EVENT_QUEUE_LEN {
            self.events.push_back(e);
        } else {
            self.overflowed += 1;
        }
    }
}

/// Extra samples after a loss for the band filter to settle.
const LOSS_SETTLE_SAMPLES: usize = 8;
/// Cascaded band-pass sections of the receive filter.
const BAND_SECTIONS: usize = 3;
/// -3 dB width of each section: the tones lose < 0.5 dB per section before normalisation,
/// the other channel's band (670 Hz away for V.21) is ~18 dB down over the cascade, and the
/// correlator's window adds its own selectivity.
const BAND_SECTION_WIDTH_HZ: f32 = 600.0;
/// Keeps filter states out of the subnormal range in silence (negligible next to 1 LSB).
const ANTI_DENORMAL: f32 = 1e-15;

/// Second-order band-pass section (RBJ audio-EQ cookbook form, 0 dB peak), transposed
/// direct form II.
#[derive(Debug, Clone, Copy)]
struct Biquad {
    b0: f32,
    a1: f32,
    a2: f32,
    z1: f32,
    z2: f32,
}

impl Biquad {
    fn bandpass(centre_hz: f32, q: f32) -> Self {
        let w0 = std::f32::consts::TAU * centre_hz / SAMPLE_RATE_HZ as f32;
        let alpha = w0.sin() / (2.0 * q);
        let a0 = 1.0 + alpha;
        Biquad {
            b0: alpha / a0,
            a1: -2.0 * w0.cos() / a0,
            a2: (1.0 - alpha) / a0,
            z1: 0.0,
            z2: 0.0,
        }
    }

    /// |H| at `hz` (b1 = 0, b2 = -b0).
    fn gain_at(&self, hz: f32) -> f32 {
        let w = std::f32::consts::TAU * hz / SAMPLE_RATE_HZ as f32;
        let (c1, s1, c2, s2) = (w.cos(), w.sin(), (2.0 * w).cos(), (2.0 * w).sin());
        let num = (self.b0 * (1.0 - c2)).hypot(self.b0 * s2);
        let den = (1.0 + self.a1 * c1 + self.a2 * c2).hypot(self.a1 * s1 + self.a2 * s2);
        num / den.max(1e-9)
    }

    fn run(&mut self, x: f32) -> f32 {
        let x = x + ANTI_DENORMAL;
        let y = self.b0 * x + self.z1;
        self.z1 = -self.a1 * y + self.z2;
        self.z2 = -self.b0 * x - self.a2 * y;
        y
    }
}

fn sq(v: i32) -> i64 {
    i64::from(v) * i64::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pair(a: FskMode, b: FskMode) -> (FskModem, FskModem) {
        (
            FskModem::new(a, FskConfig::default()).unwrap(),
            FskModem::new(b, FskConfig::default()).unwrap(),
        )
    }

    /// Run both modems in lock-step 20 ms frames for `frames`; collect what each received.
    fn run(
        a: &mut FskModem,
        b: &mut FskModem,
        frames: usize,
    ) -> (Vec<ModemEvent>, Vec<ModemEvent>) {
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        let mut fa = [0i16; 160];
        let mut fb = [0i16; 160];
        for _ in 0..frames {
            a.fill(&mut fa);
            b.fill(&mut fb);
            a.push(&fb);
            b.push(&fa);
            ea.extend(std::iter::from_fn(|| a.poll_event()));
            eb.extend(std::iter::from_fn(|| b.poll_event()));
        }
        (ea, eb)
    }

    fn data(ev: &[ModemEvent]) -> Vec<u8> {
        ev.iter()
            .filter_map(|e| match e {
                ModemEvent::Data(b) => Some(*b),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn v21_caller_and_answerer_exchange_bytes_full_duplex() {
        let (mut a, mut b) = pair(FskMode::V21Caller, FskMode::V21Answerer);
        run(&mut a, &mut b, 10);
        assert!(a.carrier() && b.carrier());
        let msg_a: Vec<u8> = (0..=255u8).collect();
        let msg_b: Vec<u8> = (0..=255u8).rev().collect();
        assert_eq!(a.write(&msg_a), 256);
        assert_eq!(b.write(&msg_b), 256);
        let (ea, eb) = run(&mut a, &mut b, 480);
        assert_eq!(data(&eb), msg_a);
        assert_eq!(data(&ea), msg_b);
    }

    #[test]
    fn bell103_originate_and_answer_exchange_bytes() {
        let (mut a, mut b) = pair(FskMode::Bell103Originate, FskMode::Bell103Answer);
        run(&mut a, &mut b, 10);
        a.write(b"hello from originate");
        b.write(b"hello from answer");
        let (ea, eb) = run(&mut a, &mut b, 50);
        assert_eq!(data(&eb), b"hello from originate");
        assert_eq!(data(&ea), b"hello from answer");
    }

    #[test]
    fn carrier_comes_up_once_and_drops_when_the_far_end_stops() {
        let (mut a, mut b) = pair(FskMode::V21Caller, FskMode::V21Answerer);
        let (_, eb) = run(&mut a, &mut b, 25);
        assert_eq!(eb, [ModemEvent::CarrierUp]);
        for _ in 0..5 {
            b.push(&[0; 160]);
        }
        assert_eq!(b.poll_event(), Some(ModemEvent::CarrierDown));
        assert!(!b.carrier());
    }

    #[test]
    fn carrier_detect_has_hysteresis_between_minus_43_and_minus_48_dbm0() {
        let level_of = |dbm0: f32| {
            let cfg = FskConfig {
                tx_level_dbm0: dbm0,
                ..FskConfig::default()
            };
            let mut tx = FskModem::new(FskMode::V21Caller, cfg).unwrap();
            let mut rx = FskModem::new(FskMode::V21Answerer, FskConfig::default()).unwrap();
            let mut f = [0i16; 160];
            for _ in 0..25 {
                tx.fill(&mut f);
                rx.push(&f);
            }
            rx.carrier()
        };
        assert!(level_of(-40.0));
        assert!(!level_of(-46.0));
        // Up at -40, then fading to -46 (between thresholds) keeps it up; -51 drops it.
        let mut rx = FskModem::new(FskMode::V21Answerer, FskConfig::default()).unwrap();
        let mut f = [0i16; 160];
        for (dbm0, want) in [(-40.0, true), (-46.0, true), (-51.0, false)] {
            let cfg = FskConfig {
                tx_level_dbm0: dbm0,
                ..FskConfig::default()
            };
            let mut tx = FskModem::new(FskMode::V21Caller, cfg).unwrap();
            for _ in 0..25 {
                tx.fill(&mut f);
                rx.push(&f);
            }
            assert_eq!(rx.carrier(), want, "{dbm0}");
        }
    }

    #[test]
    fn write_applies_back_pressure_at_the_queue_bound() {
        let cfg = FskConfig {
            tx_queue_len: 8,
            ..FskConfig::default()
        };
        let mut m = FskModem::new(FskMode::V21Caller, cfg).unwrap();
        assert_eq!(m.write(&[0u8; 20]), 8);
        assert_eq!(m.write(b"x"), 0);
        let mut f = [0i16; 160];
        m.fill(&mut f);
        assert_eq!(m.write(b"xyz"), 1, "one byte left the queue");
    }

    #[test]
    fn transmitter_is_phase_continuous_at_bit_changes() {
        let mut m = FskModem::new(FskMode::V21Caller, FskConfig::default()).unwrap();
        m.write(&[0x55; 32]);
        let mut f = vec![0i16; 8000];
        m.fill(&mut f);
        // Largest step between samples of a 1180 Hz sine of peak A is A*2*pi*1180/8000.
        let peak = level::sine_peak(DEFAULT_TX_LEVEL_DBM0);
        let bound = peak * std::f32::consts::TAU * 1180.0 / 8000.0 * 1.05;
        let worst = f
            .windows(2)
            .map(|w| (w[1] as f32 - w[0] as f32).abs())
            .fold(0.0, f32::max);
        assert!(worst <= bound, "{worst} > {bound}");
        let lvl = level::dbm0_of(&f);
        assert!((lvl - DEFAULT_TX_LEVEL_DBM0).abs() < 0.2, "{lvl}");
    }

    #[test]
    fn a_lost_20ms_frame_keeps_carrier_and_costs_at_most_a_few_characters() {
        // The gap falls at every phase of the 10-bit character period across these runs.
        for gap in 0..12 {
            let (mut a, mut b) = pair(FskMode::V21Caller, FskMode::V21Answerer);
            run(&mut a, &mut b, 10);
            let msg: Vec<u8> = (0..200u8).collect();
            a.write(&msg);
            let mut f = [0i16; 160];
            let mut ev = Vec::new();
            for i in 0..400 {
                a.fill(&mut f);
                if i == 100 + gap * 7 {
                    b.push_lost(160);
                } else {
                    b.push(&f);
                }
                ev.extend(std::iter::from_fn(|| b.poll_event()));
            }
            assert!(!ev.contains(&ModemEvent::CarrierDown));
            let got = data(&ev);
            // A 20 ms gap spans 6 bits: at most 2 characters are hit, nothing after it.
            let ok = longest_common_subsequence(&msg, &got);
            assert!(
                ok >= 198 && got.len() <= 201,
                "gap {gap}: {} {ok}",
                got.len()
            );
        }
    }

    /// Far caller at `far_dbm0`; our own transmission leaks back `echo_db` below -12 dBm0.
    fn with_echo(echo_db: f32, far_dbm0: f32) -> (usize, usize) {
        let far_cfg = FskConfig {
            tx_level_dbm0: far_dbm0,
            ..FskConfig::default()
        };
        let mut far = FskModem::new(FskMode::V21Caller, far_cfg).unwrap();
        let mut near = FskModem::new(FskMode::V21Answerer, FskConfig::default()).unwrap();
        let msg: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
        let mut f = [0i16; 160];
        let mut e = [0i16; 160];
        let mut got = Vec::new();
        let g = level::db_to_amplitude(-echo_db);
        for i in 0..450 {
            if i == 20 {
                far.write(&msg);
            }
            near.write(&[0x3c; 4]);
            far.fill(&mut f);
            near.fill(&mut e);
            for (a, b) in f.iter_mut().zip(e.iter()) {
                *a = (f32::from(*a) + g * f32::from(*b)) as i16;
            }
            near.push(&f);
            while let Some(ev) = near.poll_event() {
                if let ModemEvent::Data(b) = ev {
                    got.push(b);
                }
            }
        }
        let ok = msg.iter().zip(&got).filter(|(a, b)| a == b).count();
        (ok, got.len())
    }

    #[test]
    fn receiver_rejects_its_own_transmit_band_echoed_above_the_far_signal() {
        // Echo at -22 dBm0 against a far signal at -30 and -40 dBm0 (8 and 18 dB stronger).
        assert_eq!(with_echo(10.0, -30.0), (200, 200));
        assert_eq!(with_echo(10.0, -40.0), (200, 200));
        assert_eq!(with_echo(6.0, -20.0), (200, 200));
    }

    #[test]
    fn receiver_tolerates_16_hz_frequency_offset_and_1_percent_fast_bit_rate() {
        for (offset, baud) in [(16.0, 303), (-16.0, 297)] {
            let ch = FskChannel {
                mark_hz: V21_CH1.mark_hz + offset,
                space_hz: V21_CH1.space_hz + offset,
                baud,
            };
            let mut tx = FskTx::new(ch, -20.0, UartConfig::default()).unwrap();
            let mut rx = FskModem::new(FskMode::V21Answerer, FskConfig::default()).unwrap();
            let msg: Vec<u8> = (0..=255u8).collect();
            let mut q: VecDeque<u8> = VecDeque::new();
            let mut f = [0i16; 160];
            let mut ev = Vec::new();
            for i in 0..700 {
                if i == 10 {
                    q.extend(&msg);
                }
                tx.fill(&mut f, || q.pop_front());
                rx.push(&f);
                ev.extend(std::iter::from_fn(|| rx.poll_event()));
            }
            assert_eq!(data(&ev), msg, "offset {offset} Hz, {baud} bit/s");
        }
    }

    fn longest_common_subsequence(a: &[u8], b: &[u8]) -> usize {
        let mut row = vec![0usize; b.len() + 1];
        for &x in a {
            let mut diag = 0;
            for (j, &y) in b.iter().enumerate() {
                let up = row[j + 1];
                row[j + 1] = if x == y { diag + 1 } else { up.max(row[j]) };
                diag = up;
            }
        }
        row[b.len()]
    }

    #[test]
    fn bad_configuration_is_an_error_not_a_panic() {
        let cfg = FskConfig {
            tx_level_dbm0: 6.0,
            ..FskConfig::default()
        };
        assert!(matches!(
            FskModem::new(FskMode::V21Caller, cfg),
            Err(ModemError::TxLevel { .. })
        ));
        let cfg = FskConfig {
            carrier_on_dbm0: -50.0,
            ..FskConfig::default()
        };
        assert!(matches!(
            FskModem::new(FskMode::V21Caller, cfg),
            Err(ModemError::CarrierThresholds { .. })
        ));
        let cfg = FskConfig {
            tx_queue_len: 0,
            ..FskConfig::default()
        };
        assert!(FskModem::new(FskMode::V21Caller, cfg).is_err());
        let silly = FskChannel {
            mark_hz: 980.0,
            space_hz: 1180.0,
            baud: 9600,
        };
        assert!(matches!(
            FskTx::new(silly, -12.0, UartConfig::default()),
            Err(ModemError::Channel { baud: 9600, .. })
        ));
        let nan = FskChannel {
            mark_hz: f32::NAN,
            ..V21_CH1
        };
        assert!(FskRx::new(nan, UartConfig::default(), -43.0, -48.0).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn receiver_output_does_not_depend_on_chunking(
            cuts in proptest::collection::vec(1usize..700, 1..40),
            msg in proptest::collection::vec(any::<u8>(), 1..24),
        ) {
            let mut tx = FskModem::new(FskMode::Bell103Answer, FskConfig::default()).unwrap();
            let mut audio = vec![0i16; 8000 * 3 / 2];
            tx.fill(&mut audio[400..2000]); // 200 ms of mark before data
            tx.write(&msg);
            tx.fill(&mut audio[2000..]);
            let whole = {
                let mut rx = FskModem::new(FskMode::Bell103Originate, FskConfig::default()).unwrap();
                rx.push(&audio);
                std::iter::from_fn(|| rx.poll_event()).collect::<Vec<_>>()
            };
            let mut rx = FskModem::new(FskMode::Bell103Originate, FskConfig::default()).unwrap();
            let mut rest = &audio[..];
            let mut ev = Vec::new();
            for c in cuts.iter().cycle() {
                if rest.is_empty() { break; }
                let (head, tail) = rest.split_at((*c).min(rest.len()));
                rx.push(head);
                ev.extend(std::iter::from_fn(|| rx.poll_event()));
                rest = tail;
            }
            prop_assert_eq!(&ev, &whole);
            prop_assert_eq!(data(&whole), msg);
        }

        #[test]
        fn receiver_never_panics_on_arbitrary_samples(s in proptest::collection::vec(any::<i16>(), 0..4000)) {
            let mut rx = FskModem::new(FskMode::V21Caller, FskConfig::default()).unwrap();
            rx.push(&s);
            rx.push_lost(s.len());
            while rx.poll_event().is_some() {}
        }
    }
}
