//! Signal space and pulse shaping shared by the V.22 and V.22bis modems.
//!
//! * Signal space: ITU-T V.22bis §2.5 Fig. 2 / Table 2. 16 points (±1|±3, ±1|±3); the first two
//!   bits of a quadbit select a quadrant change (V.22 Table 1 / V.22bis Table 1: 00 → +90°,
//!   01 → 0°, 11 → +270°, 10 → +180°), the last two the point inside the quadrant. At 1200 bit/s
//!   (V.22, V.22bis §2.5.2.2) only the "01" point of each quadrant is used.
//! * Pulse shaping: V.22 §2.4 asks for a square-root raised-cosine spectrum with 75 % roll-off,
//!   split equally between transmitter and receiver. 8000/600 = 40/3 samples per symbol, so the
//!   transmit pulse is tabulated at T/40 and each output sample advances it by exactly 3 steps.
//!   The receive filter is tabulated at 1/`RX_SUBSAMPLE` of a sample and evaluated at arbitrary
//!   instants, which is how the symbol clock is steered.
//!
//! Pure arithmetic: tables are built once at construction, nothing allocates afterwards.

use std::f32::consts::PI;
use std::ops::{Add, AddAssign, Mul, Sub};

/// Sample rate of the line signal (G.711), Hz.
pub const SAMPLE_RATE_HZ: f32 = 8000.0;
/// Modulation rate, symbols per second (V.22 §2.3, V.22bis §2.3).
pub const BAUD: f32 = 600.0;
/// Roll-off of the overall raised-cosine channel (V.22 §2.4).
pub const ROLL_OFF: f32 = 0.75;
/// Transmit pulse table resolution per symbol.
const TX_PHASES: usize = 40;
/// Output samples advance the transmit pulse by this many T/40 steps (8000 · 3 = 600 · 40).
const TX_PHASE_STEP: usize = 3;
/// Span of the transmit pulse, symbols.
const TX_SPAN_SYMBOLS: usize = 8;
/// Half span of the receive filter, samples (4 symbols).
const RX_HALF_SPAN: usize = 54;
/// Receive filter table resolution per sample.
const RX_SUBSAMPLE: usize = 16;
/// Baseband history kept by the receiver (power of two > 2 · `RX_HALF_SPAN`).
const RX_RING: usize = 128;
/// Nominal T/2 interval in samples.
pub const HALF_BAUD_SAMPLES: f64 = 20.0 / 3.0;
/// Both carriers (1200 and 2400 Hz) are periodic over this many samples at 8 kHz.
const CARRIER_PERIOD: usize = 20;

/// A complex value (baseband sample, constellation point, filter tap).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cpx {
    /// In-phase part.
    pub re: f32,
    /// Quadrature part.
    pub im: f32,
}

impl Cpx {
    /// `re + j·im`.
    pub const fn new(re: f32, im: f32) -> Self {
        Self { re, im }
    }
    /// `e^{jθ}`.
    pub fn expj(theta: f32) -> Self {
        Self::new(theta.cos(), theta.sin())
    }
    /// Complex conjugate.
    pub fn conj(self) -> Self {
        Self::new(self.re, -self.im)
    }
    /// `|z|²`.
    pub fn norm_sqr(self) -> f32 {
        self.re * self.re + self.im * self.im
    }
    /// Multiply by a real scalar.
    pub fn scale(self, k: f32) -> Self {
        Self::new(self.re * k, self.im * k)
    }
}

impl Add for Cpx {
    type Output = Cpx;
    fn add(self, o: Cpx) -> Cpx {
        Cpx::new(self.re + o.re, self.im + o.im)
    }
}
impl AddAssign for Cpx {
    fn add_assign(&mut self, o: Cpx) {
        self.re += o.re;
        self.im += o.im;
    }
}
impl Sub for Cpx {
    type Output = Cpx;
    fn sub(self, o: Cpx) -> Cpx {
        Cpx::new(self.re - o.re, self.im - o.im)
    }
}
impl Mul for Cpx {
    type Output = Cpx;
    fn mul(self, o: Cpx) -> Cpx {
        Cpx::new(
            self.re * o.re - self.im * o.im,
            self.re * o.im + self.im * o.re,
        )
    }
}

/// Points of the first quadrant indexed by the last two bits of a quadbit (V.22bis Fig. 2):
/// 00 → (1,1), 01 → (3,1), 10 → (1,3), 11 → (3,3). Other quadrants are rotations by k·90°.
const QUADRANT0: [Cpx; 4] = [
    Cpx::new(1.0, 1.0),
    Cpx::new(3.0, 1.0),
    Cpx::new(1.0, 3.0),
    Cpx::new(3.0, 3.0),
];

/// Within-quadrant bits used at 1200 bit/s (V.22bis §2.5.2.2).
pub const BITS_1200: u8 = 0b01;

/// Average energy of the signal space (both the 4-point and the 16-point set).
pub const MEAN_POINT_ENERGY: f32 = 10.0;

/// Quadrant advance (units of 90°) for a dibit, V.22 Table 1: 00→1, 01→0, 10→2, 11→3.
pub fn phase_step(dibit: u8) -> u8 {
    [1, 0, 2, 3][usize::from(dibit & 3)]
}

/// Inverse of [`phase_step`].
pub fn dibit_of_step(step: u8) -> u8 {
    [0b01, 0b00, 0b10, 0b11][usize::from(step & 3)]
}

/// The signal point for an absolute quadrant (0 = +re +im, counting anticlockwise) and the
/// within-quadrant bits.
pub fn point(quadrant: u8, bits: u8) -> Cpx {
    let p = QUADRANT0[usize::from(bits & 3)];
    rotate_quadrants(p, quadrant)
}

fn rotate_quadrants(p: Cpx, quadrant: u8) -> Cpx {
    match quadrant & 3 {
        0 => p,
        1 => Cpx::new(-p.im, p.re),
        2 => Cpx::new(-p.re, -p.im),
        _ => Cpx::new(p.im, -p.re),
    }
}

/// Nearest 16-QAM point: (quadrant, within-quadrant bits, point).
pub fn slice16(z: Cpx) -> (u8, u8, Cpx) {
    let quadrant = match (z.re >= 0.0, z.im >= 0.0) {
        (true, true) => 0,
        (false, true) => 1,
        (false, false) => 2,
        (true, false) => 3,
    };
    // Rotate back into the first quadrant and split each axis at 2.
    let p0 = rotate_quadrants(z, (4 - quadrant) & 3);
    let bits = (u8::from(p0.im > 2.0) << 1) | u8::from(p0.re > 2.0);
    (quadrant, bits, point(quadrant, bits))
}

/// Nearest point of the 1200 bit/s set (the "01" point of each quadrant).
pub fn slice4(z: Cpx) -> (u8, Cpx) {
    // (3,1) lies at atan(1/3) = 18.43°; rotating by a further 26.57° puts it on the diagonal,
    // where the quadrant is read from the signs.
    const TO_DIAGONAL: Cpx = Cpx::new(0.894_427_2, 0.447_213_6);
    let r = z * TO_DIAGONAL;
    let quadrant = match (r.re >= 0.0, r.im >= 0.0) {
        (true, true) => 0,
        (false, true) => 1,
        (false, false) => 2,
        (true, false) => 3,
    };
    (quadrant, point(quadrant, BITS_1200))
}

/// Square-root raised-cosine impulse response at `t` symbols, roll-off `beta`, peak 1 − β + 4β/π.
pub fn rrc(t: f32, beta: f32) -> f32 {
    if t.abs() < 1e-6 {
        return 1.0 - beta + 4.0 * beta / PI;
    }
    let edge = 1.0 / (4.0 * beta);
    if (t.abs() - edge).abs() < 1e-5 {
        let a = PI / (4.0 * beta);
        return beta / 2f32.sqrt() * ((1.0 + 2.0 / PI) * a.sin() + (1.0 - 2.0 / PI) * a.cos());
    }
    let num = (PI * t * (1.0 - beta)).sin() + 4.0 * beta * t * (PI * t * (1.0 + beta)).cos();
    let den = PI * t * (1.0 - (4.0 * beta * t).powi(2));
    num / den
}

/// Raised-cosine window that tapers a truncated pulse to zero at ±`half_span`.
fn taper(t: f32, half_span: f32) -> f32 {
    if t.abs() >= half_span {
        0.0
    } else {
        0.5 + 0.5 * (PI * t / half_span).cos()
    }
}

/// Carrier samples `e^{j2πfn/8000}` over one period of 20 samples.
fn carrier_table(freq_hz: f32) -> [Cpx; CARRIER_PERIOD] {
    let mut t = [Cpx::default(); CARRIER_PERIOD];
    for (n, c) in t.iter_mut().enumerate() {
        *c = Cpx::expj(2.0 * PI * freq_hz * n as f32 / SAMPLE_RATE_HZ);
    }
    t
}

/// Baseband-to-line transmitter: RRC shaping and modulation of a carrier that is a multiple
/// of 400 Hz (1200 or 2400 Hz).
#[derive(Debug, Clone)]
pub struct TxShaper {
    pulse: Vec<f32>,
    history: [Cpx; TX_SPAN_SYMBOLS],
    newest: usize,
    baud_phase: usize,
    carrier: [Cpx; CARRIER_PERIOD],
    carrier_idx: usize,
    /// Mean power of the real line signal per unit point energy.
    unit_power: f32,
}

impl TxShaper {
    /// A shaper for the given carrier (must make a whole number of cycles in 20 samples).
    pub fn new(carrier_hz: f32) -> Self {
        let len = TX_PHASES * TX_SPAN_SYMBOLS;
        let half = (TX_SPAN_SYMBOLS / 2) as f32;
        let pulse: Vec<f32> = (0..len)
            .map(|i| {
                let t = i as f32 / TX_PHASES as f32 - half;
                rrc(t, ROLL_OFF) * taper(t, half)
            })
            .collect();
        // Each output sample sees one tap per symbol; averaged over the 40 phases the sum of
        // squares is Σg²/40, and the real line signal carries half the complex power.
        let unit_power = pulse.iter().map(|g| g * g).sum::<f32>() / TX_PHASES as f32 / 2.0;
        Self {
            pulse,
            history: [Cpx::default(); TX_SPAN_SYMBOLS],
            newest: 0,
            baud_phase: 0,
            carrier: carrier_table(carrier_hz),
            carrier_idx: 0,
            unit_power,
        }
    }

    /// Line power (mean square) produced by symbols of unit mean energy.
    pub fn unit_power(&self) -> f32 {
        self.unit_power
    }

    /// Advance one output sample; true when a new symbol must be supplied with
    /// [`TxShaper::push_symbol`] before [`TxShaper::sample`].
    pub fn advance(&mut self) -> bool {
        self.baud_phase += TX_PHASE_STEP;
        if self.baud_phase >= TX_PHASES {
            self.baud_phase -= TX_PHASES;
            true
        } else {
            false
        }
    }

    /// Supply the next symbol.
    pub fn push_symbol(&mut self, s: Cpx) {
        self.newest = (self.newest + 1) % TX_SPAN_SYMBOLS;
        self.history[self.newest] = s;
    }

    /// True when every symbol in the pulse span is zero (nothing audible left).
    pub fn quiet(&self) -> bool {
        self.history.iter().all(|s| s.re == 0.0 && s.im == 0.0)
    }

    /// The current line sample (before level scaling).
    pub fn sample(&mut self) -> f32 {
        let mut x = Cpx::default();
        let mut idx = self.newest;
        for age in 0..TX_SPAN_SYMBOLS {
            // Invariant: baud_phase < 40 and age < span, so the index is < pulse.len().
            let g = self.pulse[self.baud_phase + TX_PHASES * age];
            x += self.history[idx].scale(g);
            idx = (idx + TX_SPAN_SYMBOLS - 1) % TX_SPAN_SYMBOLS;
        }
        let c = self.carrier[self.carrier_idx];
        self.carrier_idx = (self.carrier_idx + 1) % CARRIER_PERIOD;
        x.re * c.re - x.im * c.im
    }
}

/// Line-to-baseband receiver front end: mixes the carrier down and evaluates the matched RRC
/// filter at instants spaced T/2 apart, steered by [`RxFront::adjust`].
#[derive(Debug, Clone)]
pub struct RxFront {
    /// Polyphase taps: `RX_SUBSAMPLE + 1` phases of `RX_TAPS` taps each, oldest sample first.
    phases: Vec<f32>,
    /// Baseband history, written twice (at `i` and `i + RX_RING`) so that the filter window
    /// is always one contiguous slice.
    ring_re: [f32; 2 * RX_RING],
    ring_im: [f32; 2 * RX_RING],
    newest: usize,
    carrier: [Cpx; CARRIER_PERIOD],
    carrier_idx: usize,
    /// Samples until the next T/2 output instant.
    countdown: f64,
}

/// Dot product with four independent partial sums, so the compiler can use SIMD lanes.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 4];
    let ca = a.chunks_exact(4);
    let cb = b.chunks_exact(4);
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    acc[0] + acc[1] + acc[2] + acc[3] + tail
}

/// Taps of the receive filter at one phase (2 · half span + 1).
const RX_TAPS: usize = 2 * RX_HALF_SPAN + 1;

impl RxFront {
    /// A front end for the given carrier.
    pub fn new(carrier_hz: f32) -> Self {
        let len = 2 * RX_HALF_SPAN * RX_SUBSAMPLE + 1;
        let half_sym = RX_HALF_SPAN as f32 * BAUD / SAMPLE_RATE_HZ;
        let mut filter: Vec<f32> = (0..len)
            .map(|k| {
                let t_samples = k as f32 / RX_SUBSAMPLE as f32 - RX_HALF_SPAN as f32;
                let t = t_samples * BAUD / SAMPLE_RATE_HZ;
                rrc(t, ROLL_OFF) * taper(t, half_sym)
            })
            .collect();
        // Unit gain at DC for one phase: a carrier of amplitude A comes out as A/2.
        let dc: f32 = filter.iter().step_by(RX_SUBSAMPLE).sum();
        if dc > 0.0 {
            for h in &mut filter {
                *h /= dc;
            }
        }
        // Phase `off` (the instant lies off/P of a sample before the newest sample): the tap
        // for the sample m samples old is h(m - off/P - D), table index m·P - off.
        let mut phases = vec![0.0; (RX_SUBSAMPLE + 1) * RX_TAPS];
        for off in 0..=RX_SUBSAMPLE {
            for m in 0..RX_TAPS {
                let tap = (m * RX_SUBSAMPLE)
                    .checked_sub(off)
                    .and_then(|k| filter.get(k))
                    .copied()
                    .unwrap_or(0.0);
                // Oldest first: position RX_TAPS - 1 - m.
                phases[off * RX_TAPS + RX_TAPS - 1 - m] = tap;
            }
        }
        let mut carrier = carrier_table(carrier_hz);
        for c in &mut carrier {
            *c = c.conj();
        }
        Self {
            phases,
            ring_re: [0.0; 2 * RX_RING],
            ring_im: [0.0; 2 * RX_RING],
            newest: 0,
            carrier,
            carrier_idx: 0,
            countdown: HALF_BAUD_SAMPLES,
        }
    }

    /// Feed one line sample; returns a T/2-spaced matched-filter output when one falls due.
    pub fn push(&mut self, x: f32) -> Option<Cpx> {
        self.newest = (self.newest + 1) & (RX_RING - 1);
        let b = self.carrier[self.carrier_idx].scale(x);
        self.carrier_idx = (self.carrier_idx + 1) % CARRIER_PERIOD;
        self.ring_re[self.newest] = b.re;
        self.ring_re[self.newest + RX_RING] = b.re;
        self.ring_im[self.newest] = b.im;
        self.ring_im[self.newest + RX_RING] = b.im;
        self.countdown -= 1.0;
        if self.countdown > 0.0 {
            return None;
        }
        // The instant lies `-countdown` samples before the newest sample (0 ≤ -countdown < 1
        // unless the timing loop just jumped; clamp to stay inside the table).
        let frac = (-self.countdown).clamp(0.0, 1.0);
        let off = ((frac * RX_SUBSAMPLE as f64).round() as usize).min(RX_SUBSAMPLE);
        // Invariant: RX_TAPS ≤ RX_RING, so the window [end - RX_TAPS, end) lies inside the
        // doubled buffer, and off ≤ RX_SUBSAMPLE keeps the phase slice in bounds.
        let end = self.newest + RX_RING + 1;
        let re = &self.ring_re[end - RX_TAPS..end];
        let im = &self.ring_im[end - RX_TAPS..end];
        let taps = &self.phases[off * RX_TAPS..(off + 1) * RX_TAPS];
        self.countdown += HALF_BAUD_SAMPLES;
        Some(Cpx::new(dot(re, taps), dot(im, taps)))
    }

    /// Move the next output instant by `samples` (positive = later).
    pub fn adjust(&mut self, samples: f64) {
        self.countdown += samples.clamp(-0.5, 0.5);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_slices_to_itself() {
        for q in 0..4 {
            for b in 0..4 {
                let p = point(q, b);
                assert_eq!(slice16(p), (q, b, p));
            }
            let p = point(q, BITS_1200);
            assert_eq!(slice4(p), (q, p));
        }
    }

    #[test]
    fn phase_steps_follow_v22_table_1() {
        assert_eq!(phase_step(0b00), 1);
        assert_eq!(phase_step(0b01), 0);
        assert_eq!(phase_step(0b11), 3);
        assert_eq!(phase_step(0b10), 2);
        for d in 0..4 {
            assert_eq!(dibit_of_step(phase_step(d)), d);
        }
    }

    #[test]
    fn quadrant_rotation_matches_signal_space() {
        // V.22bis Fig. 2: 1200 bit/s points (3,1), (-1,3), (-3,-1), (1,-3).
        assert_eq!(point(0, 1), Cpx::new(3.0, 1.0));
        assert_eq!(point(1, 1), Cpx::new(-1.0, 3.0));
        assert_eq!(point(2, 1), Cpx::new(-3.0, -1.0));
        assert_eq!(point(3, 1), Cpx::new(1.0, -3.0));
    }

    #[test]
    fn shaped_symbols_come_back_through_the_matched_filter() {
        // Tx then Rx without impairment: sampled at the right T/2 phase, the symbol instants
        // must reproduce the transmitted points up to one common gain and phase.
        let mut tx = TxShaper::new(1200.0);
        let mut rx = RxFront::new(1200.0);
        let mut sent = Vec::new();
        let mut got = Vec::new();
        let mut seed = 7u32;
        for _ in 0..8000 {
            if tx.advance() {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let p = point((seed >> 16) as u8 & 3, (seed >> 20) as u8 & 3);
                sent.push(p);
                tx.push_symbol(p);
            }
            if let Some(y) = rx.push(tx.sample()) {
                got.push(y);
            }
        }
        // Find the best T/2 phase and delay by correlation.
        let mut best = (0.0f32, 0usize, 0usize);
        for phase in 0..2 {
            for delay in 0..30 {
                let mut c = Cpx::default();
                let mut e = 0.0;
                for k in 100..400 {
                    let y = got[2 * k + phase];
                    let s = sent[k - delay.min(k)];
                    c += y * s.conj();
                    e += y.norm_sqr();
                }
                let score = c.norm_sqr() / e.max(1e-9);
                if score > best.0 {
                    best = (score, phase, delay);
                }
            }
        }
        let (_, phase, delay) = best;
        let mut c = Cpx::default();
        let mut p = 0.0;
        for k in 100..400 {
            c += got[2 * k + phase] * sent[k - delay].conj();
            p += sent[k - delay].norm_sqr();
        }
        let g = c.scale(1.0 / p);
        let mut err = 0.0;
        let mut sig = 0.0;
        for k in 100..400 {
            let y = got[2 * k + phase];
            let e = y - sent[k - delay] * g;
            err += e.norm_sqr();
            sig += y.norm_sqr();
        }
        let snr_db = 10.0 * (sig / err).log10();
        // Best of two fixed T/2 phases is at most T/4 off; expect a usable eye anyway.
        assert!(snr_db > 10.0, "snr {snr_db}");
    }
}
