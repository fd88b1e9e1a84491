//! Self-synchronising scrambler and descrambler of ITU-T V.22 §5 / V.22bis §5.
//!
//! Generating polynomial 1 + x^-14 + x^-17, with the "64 consecutive ones" rule:
//! after 64 consecutive ones at the scrambler output the next input bit is inverted,
//! and the descrambler inverts the matching output bit. Pure bit manipulation: no
//! allocation, no IO; the receiver resynchronises by itself after 17 bits.

/// Number of consecutive ones after which the next bit is inverted (V.22bis §5).
const ONES_RUN_LIMIT: u32 = 64;

/// Transmit side of V.22bis §5.
#[derive(Debug, Clone, Default)]
pub struct Scrambler {
    reg: u32,
    ones: u32,
}

impl Scrambler {
    /// A scrambler with an all-zero shift register.
    pub fn new() -> Self {
        Self::default()
    }

    /// Scramble one bit (0 or 1; only the low bit is used).
    pub fn scramble(&mut self, bit: u8) -> u8 {
        let mut bit = bit & 1;
        // V.22bis §5: invert the input bit after 64 consecutive output ones.
        if self.ones >= ONES_RUN_LIMIT {
            bit ^= 1;
            self.ones = 0;
        }
        // Taps x^-14 and x^-17: bits 13 and 16 of the output history.
        let out = (bit ^ (self.reg >> 13) as u8 ^ (self.reg >> 16) as u8) & 1;
        self.reg = (self.reg << 1) | u32::from(out);
        if out == 1 {
            self.ones += 1;
        } else {
            self.ones = 0;
        }
        out
    }
}

/// Receive side of V.22bis §5.
#[derive(Debug, Clone, Default)]
pub struct Descrambler {
    reg: u32,
    ones: u32,
}

impl Descrambler {
    /// A descrambler with an all-zero shift register.
    pub fn new() -> Self {
        Self::default()
    }

    /// Descramble one received line bit.
    pub fn descramble(&mut self, bit: u8) -> u8 {
        let bit = bit & 1;
        let mut out = (bit ^ (self.reg >> 13) as u8 ^ (self.reg >> 16) as u8) & 1;
        self.reg = (self.reg << 1) | u32::from(bit);
        // V.22bis §5: mirror of the transmitter's 64-ones inversion.
        if self.ones >= ONES_RUN_LIMIT {
            out ^= 1;
            self.ones = 0;
        }
        if bit == 1 {
            self.ones += 1;
        } else {
            self.ones = 0;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descrambler_recovers_scrambled_stream_including_long_ones_runs() {
        let mut s = Scrambler::new();
        let mut d = Descrambler::new();
        let mut x: u32 = 12345;
        for i in 0..20_000u32 {
            // Mix long runs of ones (which trigger the 64-ones rule) with pseudo-random bits.
            let bit = if (i / 1000) % 2 == 0 {
                1
            } else {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                ((x >> 16) & 1) as u8
            };
            assert_eq!(d.descramble(s.scramble(bit)), bit, "bit {i}");
        }
    }

    #[test]
    fn descrambler_self_synchronises_after_17_bits() {
        let mut s = Scrambler::new();
        let mut d = Descrambler::new();
        for _ in 0..100 {
            s.scramble(0);
        }
        let mut wrong_after_sync = 0;
        for i in 0..200 {
            let out = d.descramble(s.scramble(0));
            if i >= 17 && out != 0 {
                wrong_after_sync += 1;
            }
        }
        assert_eq!(wrong_after_sync, 0);
    }

    #[test]
    fn scrambled_ones_never_stay_constant() {
        let mut s = Scrambler::new();
        let mut run = 0;
        let mut max_run = 0;
        for _ in 0..10_000 {
            if s.scramble(1) == 1 {
                run += 1;
                max_run = max_run.max(run);
            } else {
                run = 0;
            }
        }
        assert!(max_run <= 65, "max run {max_run}");
    }
}
