//! Test-only helpers: a tiny G.711 codec (ITU-T G.711 μ-law and A-law) and a seeded PRNG.
#![allow(dead_code)]

/// Companding law of the simulated trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    Ulaw,
    Alaw,
}

impl Law {
    pub fn encode(self, x: i16) -> u8 {
        match self {
            Law::Ulaw => ulaw_encode(x),
            Law::Alaw => alaw_encode(x),
        }
    }
    pub fn decode(self, b: u8) -> i16 {
        match self {
            Law::Ulaw => ulaw_decode(b),
            Law::Alaw => alaw_decode(b),
        }
    }
    /// Encode then decode: what the far end hears.
    pub fn tandem(self, buf: &mut [i16]) {
        for s in buf.iter_mut() {
            *s = self.decode(self.encode(*s));
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Law::Ulaw => "ulaw",
            Law::Alaw => "alaw",
        }
    }
}

pub fn ulaw_encode(x: i16) -> u8 {
    let sign = if x < 0 { 0x80u8 } else { 0 };
    let m = (i32::from(x).abs().min(32635) + 0x84) as u32;
    let exp = (31 - m.leading_zeros()) - 7;
    let mant = (m >> (exp + 3)) & 0x0f;
    !(sign | ((exp as u8) << 4) | mant as u8)
}

pub fn ulaw_decode(b: u8) -> i16 {
    let u = !b;
    let exp = (u >> 4) & 7;
    let mant = i32::from(u & 0x0f);
    let t = (((mant << 3) + 0x84) << exp) - 0x84;
    (if u & 0x80 != 0 { -t } else { t }) as i16
}

pub fn alaw_encode(x: i16) -> u8 {
    let (sign, a) = if x >= 0 {
        (0x80u8, i32::from(x))
    } else {
        (0u8, -i32::from(x) - 1)
    };
    let mag = (a >> 3) as u32;
    let (exp, mant) = if mag < 32 {
        (0u32, mag >> 1)
    } else {
        let e = (31 - mag.leading_zeros()) - 4;
        (e, (mag >> e) & 0x0f)
    };
    (sign | ((exp as u8) << 4) | mant as u8) ^ 0x55
}

pub fn alaw_decode(b: u8) -> i16 {
    let a = b ^ 0x55;
    let exp = (a >> 4) & 7;
    let mant = i32::from(a & 0x0f);
    let t = if exp == 0 {
        (mant << 4) + 8
    } else {
        ((mant << 4) + 0x108) << (exp - 1)
    };
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// xorshift64* PRNG for reproducible test data and impairments.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
    /// Standard normal deviate (Box-Muller).
    pub fn gauss(&mut self) -> f64 {
        let u1 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let u2 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (-2.0 * u1.max(1e-300).ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

#[test]
fn g711_round_trips_are_monotonic_and_close() {
    for law in [Law::Ulaw, Law::Alaw] {
        let mut prev = i16::MIN;
        for x in (-32768i32..32768).step_by(7) {
            let y = law.decode(law.encode(x as i16));
            assert!(y >= prev, "{law:?} not monotonic at {x}");
            prev = y;
            let err = (i32::from(y) - x).abs();
            assert!(err <= (x.abs() / 16).max(16) + 8, "{law:?} {x} -> {y}");
        }
        for b in 0..=255u8 {
            if law == Law::Ulaw && b == 0x7f {
                continue; // μ-law has two zeros; 0x7f ("-0") encodes back as 0xff.
            }
            assert_eq!(law.encode(law.decode(b)), b, "{law:?} code {b:#x}");
        }
    }
}
