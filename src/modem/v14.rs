//! ITU-T V.14 asynchronous-to-synchronous conversion for the V.22/V.22bis data phase.
//!
//! Start-stop characters (default 8N1: one start bit 0, eight data bits LSB first, one stop
//! bit 1) are carried on the synchronous bit stream; between characters the line idles at
//! binary 1 (V.14 §3.1, the stop polarity). The receiver hunts for a start bit, collects the
//! data bits and checks the stop bit (V.14 §4); a character whose stop bit is 0 is a framing
//! error and is dropped, the hunt restarting at the next 1→0 transition. No allocation,
//! no IO.

/// Character framing (data bits 5..=8, 1 or 2 stop bits, no parity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CharFormat {
    /// Data bits per character, 5..=8.
    pub data_bits: u8,
    /// Stop bits per character, 1 or 2.
    pub stop_bits: u8,
}

impl Default for CharFormat {
    fn default() -> Self {
        Self {
            data_bits: 8,
            stop_bits: 1,
        }
    }
}

impl CharFormat {
    fn clamped(self) -> Self {
        Self {
            data_bits: self.data_bits.clamp(5, 8),
            stop_bits: self.stop_bits.clamp(1, 2),
        }
    }
}

/// Serialises characters into the synchronous bit stream.
#[derive(Debug, Clone)]
pub struct V14Tx {
    format: CharFormat,
    /// Bits of the character being sent, LSB first; 0 when idle.
    shift: u16,
    /// Bits left in `shift`.
    left: u8,
}

impl V14Tx {
    /// A transmitter idling at binary 1.
    pub fn new(format: CharFormat) -> Self {
        Self {
            format: format.clamped(),
            shift: 0,
            left: 0,
        }
    }

    /// True when no character is in progress (the next bit may start a new one).
    pub fn idle(&self) -> bool {
        self.left == 0
    }

    /// The next line bit. `next_char` is asked for a character only between characters;
    /// `None` sends an idle 1 (V.14 §3.1).
    pub fn next_bit(&mut self, next_char: impl FnOnce() -> Option<u8>) -> u8 {
        if self.left == 0 {
            let Some(c) = next_char() else { return 1 };
            let data_mask = (1u16 << self.format.data_bits) - 1;
            let stop = ((1u16 << self.format.stop_bits) - 1) << (self.format.data_bits + 1);
            // start bit 0 in bit 0, data in bits 1..=n, stop bits above.
            self.shift = ((u16::from(c) & data_mask) << 1) | stop;
            self.left = 1 + self.format.data_bits + self.format.stop_bits;
        }
        let bit = (self.shift & 1) as u8;
        self.shift >>= 1;
        self.left -= 1;
        bit
    }
}

/// Recovers characters from the synchronous bit stream.
#[derive(Debug, Clone)]
pub struct V14Rx {
    format: CharFormat,
    /// None while hunting for a start bit, else bits collected after the start bit.
    collected: Option<u8>,
    value: u16,
    framing_errors: u64,
}

impl V14Rx {
    /// A receiver hunting for a start bit.
    pub fn new(format: CharFormat) -> Self {
        Self {
            format: format.clamped(),
            collected: None,
            value: 0,
            framing_errors: 0,
        }
    }

    /// Characters dropped because their stop bit was 0.
    pub fn framing_errors(&self) -> u64 {
        self.framing_errors
    }

    /// Resume the hunt for a start bit (after a retrain or carrier loss).
    pub fn reset(&mut self) {
        self.collected = None;
        self.value = 0;
    }

    /// Feed one line bit; returns a character when its stop bit arrives.
    pub fn push_bit(&mut self, bit: u8) -> Option<u8> {
        let bit = bit & 1;
        match self.collected {
            None => {
                if bit == 0 {
                    self.collected = Some(0);
                    self.value = 0;
                }
                None
            }
            Some(n) if n < self.format.data_bits => {
                self.value |= u16::from(bit) << n;
                self.collected = Some(n + 1);
                None
            }
            Some(_) => {
                // V.14 §4: only the first stop bit is checked; a second stop bit may be
                // deleted by the far transmitter for rate adaption.
                self.collected = None;
                if bit == 1 {
                    Some((self.value & 0xff) as u8)
                } else {
                    self.framing_errors += 1;
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_round_trip_with_idle_ones_between_them() {
        let mut tx = V14Tx::new(CharFormat::default());
        let mut rx = V14Rx::new(CharFormat::default());
        let data: Vec<u8> = (0..=255u8).collect();
        let mut it = data.iter().copied();
        let mut out = Vec::new();
        for i in 0..10_000 {
            let bit = if i % 37 < 5 && tx.idle() {
                tx.next_bit(|| None)
            } else {
                tx.next_bit(|| it.next())
            };
            if let Some(c) = rx.push_bit(bit) {
                out.push(c);
            }
        }
        assert_eq!(out, data);
        assert_eq!(rx.framing_errors(), 0);
    }

    #[test]
    fn idle_line_is_all_ones_and_yields_nothing() {
        let mut tx = V14Tx::new(CharFormat::default());
        let mut rx = V14Rx::new(CharFormat::default());
        for _ in 0..100 {
            let b = tx.next_bit(|| None);
            assert_eq!(b, 1);
            assert_eq!(rx.push_bit(b), None);
        }
    }

    #[test]
    fn zero_stop_bit_is_a_framing_error() {
        let mut rx = V14Rx::new(CharFormat::default());
        for _ in 0..10 {
            assert_eq!(rx.push_bit(0), None);
        }
        assert_eq!(rx.framing_errors(), 1);
    }

    #[test]
    fn seven_bit_two_stop_format_round_trips() {
        let f = CharFormat {
            data_bits: 7,
            stop_bits: 2,
        };
        let mut tx = V14Tx::new(f);
        let mut rx = V14Rx::new(f);
        let data = b"Hello, V.14";
        let mut it = data.iter().copied();
        let mut out = Vec::new();
        for _ in 0..200 {
            if let Some(c) = rx.push_bit(tx.next_bit(|| it.next())) {
                out.push(c);
            }
        }
        assert_eq!(out, data);
    }
}
