//! Fractionally spaced (T/2) complex LMS equaliser for the V.22/V.22bis receivers.
//!
//! V.22bis leaves the receiver design to the manufacturer; this is the usual adaptive transversal
//! filter with taps at T/2, trained decision-directed on the scrambled-ones segments of the
//! V.22bis §6.3 handshake and kept adapting during data. Fixed size, no allocation.

use super::qam::Cpx;

/// Number of T/2 taps (odd, with the reference tap in the middle on a symbol instant).
pub const EQ_TAPS: usize = 17;

/// The equaliser state.
#[derive(Debug, Clone)]
pub struct Equalizer {
    taps: [Cpx; EQ_TAPS],
    buf: [Cpx; EQ_TAPS],
    /// Index of the newest sample in `buf`.
    newest: usize,
}

impl Default for Equalizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Equalizer {
    /// A pass-through equaliser (unit centre tap).
    pub fn new() -> Self {
        let mut e = Self {
            taps: [Cpx::default(); EQ_TAPS],
            buf: [Cpx::default(); EQ_TAPS],
            newest: 0,
        };
        e.reset();
        e
    }

    /// Back to pass-through taps; the sample history is kept.
    pub fn reset(&mut self) {
        self.taps = [Cpx::default(); EQ_TAPS];
        self.taps[EQ_TAPS / 2] = Cpx::new(1.0, 0.0);
    }

    /// Append one T/2 sample.
    pub fn push(&mut self, x: Cpx) {
        self.newest = (self.newest + 1) % EQ_TAPS;
        self.buf[self.newest] = x;
    }

    /// Filter output for the sample `EQ_TAPS / 2` half-bauds ago.
    pub fn output(&self) -> Cpx {
        let mut acc = Cpx::default();
        let mut idx = self.newest;
        for tap in &self.taps {
            acc += *tap * self.buf[idx];
            idx = (idx + EQ_TAPS - 1) % EQ_TAPS;
        }
        acc
    }

    /// LMS step: `err` is (target − output) in the equaliser's own phase reference.
    pub fn update(&mut self, err: Cpx, mu: f32) {
        let e = err.scale(mu);
        let mut idx = self.newest;
        for tap in &mut self.taps {
            *tap += e * self.buf[idx].conj();
            idx = (idx + EQ_TAPS - 1) % EQ_TAPS;
        }
    }

    /// Sum of tap energies (a sanity measure: it explodes when adaptation diverges).
    pub fn energy(&self) -> f32 {
        self.taps.iter().map(|t| t.norm_sqr()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lms_learns_a_gain_and_phase() {
        let mut eq = Equalizer::new();
        let ch = Cpx::new(0.3, 0.4);
        let mut seed = 1u32;
        let mut sent = Vec::new();
        let mut err_energy = 0.0;
        for k in 0..3000 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let re = if seed & 0x10000 != 0 { 1.0 } else { -1.0 };
            let im = if seed & 0x20000 != 0 { 1.0 } else { -1.0 };
            let s = Cpx::new(re, im);
            sent.push(s);
            eq.push(Cpx::default());
            eq.push(s * ch);
            if k >= 4 {
                // The centre tap sits EQ_TAPS/2 half-bauds (4 symbols) back.
                let e = sent[k - 4] - eq.output();
                eq.update(e, 0.05);
                if k > 2500 {
                    err_energy += e.norm_sqr();
                }
            }
        }
        assert!(err_energy / 500.0 < 1e-4, "residual {err_energy}");
    }
}
