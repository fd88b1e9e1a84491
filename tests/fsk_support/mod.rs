//! Test-only helpers shared by the FSK integration tests: a small G.711 codec (ITU-T G.711
//! segment tables, written for the tests; src/media/g711.rs is the product codec), WAV files
//! and a seeded Gaussian noise source.
#![allow(dead_code)]

/// Which G.711 law a test line uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    Mu,
    A,
}

impl Law {
    pub fn encode(self, x: i16) -> u8 {
        match self {
            Law::Mu => ulaw_encode(x),
            Law::A => alaw_encode(x),
        }
    }

    pub fn decode(self, b: u8) -> i16 {
        match self {
            Law::Mu => ulaw_decode(b),
            Law::A => alaw_decode(b),
        }
    }

    /// Pass samples through the codec in place (the line).
    pub fn line(self, s: &mut [i16]) {
        for x in s {
            *x = self.decode(self.encode(*x));
        }
    }

    /// WAVE format tag (RFC 2361: 6 = A-law, 7 = mu-law).
    fn wav_tag(self) -> u16 {
        match self {
            Law::Mu => 7,
            Law::A => 6,
        }
    }
}

/// G.711 §3 mu-law: bias 132, 8 segments of 16 steps.
pub fn ulaw_encode(x: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let v = i32::from(x);
    let sign = if v < 0 { 0x80 } else { 0 };
    let m = (v.abs().min(CLIP)) + BIAS;
    let mut exp = 7;
    while exp > 0 && m & (0x80 << exp) == 0 {
        exp -= 1;
    }
    let mant = (m >> (exp + 3)) & 0x0f;
    !((sign | (exp << 4) | mant) as u8)
}

pub fn ulaw_decode(b: u8) -> i16 {
    let u = !b;
    let exp = (u >> 4) & 7;
    let mant = i32::from(u & 0x0f);
    let m = (((mant << 3) + 0x84) << exp) - 0x84;
    (if u & 0x80 != 0 { -m } else { m }) as i16
}

/// G.711 §2 A-law on the 13-bit magnitude, even bits inverted (xor 0x55).
pub fn alaw_encode(x: i16) -> u8 {
    let mut v = i32::from(x) >> 3;
    let mask: u8 = if v >= 0 {
        0xd5
    } else {
        v = -v - 1;
        0x55
    };
    const SEG_END: [i32; 8] = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff];
    let Some(seg) = SEG_END.iter().position(|&e| v <= e) else {
        return 0x7f ^ mask;
    };
    let q = if seg < 2 {
        (v >> 1) & 0xf
    } else {
        (v >> seg) & 0xf
    };
    (((seg as i32) << 4) | q) as u8 ^ mask
}

pub fn alaw_decode(b: u8) -> i16 {
    let a = b ^ 0x55;
    let mut t = i32::from(a & 0x0f) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// Write 8 kHz mono G.711 WAV (WAVE_FORMAT_MULAW / ALAW with a fact chunk).
pub fn write_g711_wav(path: &std::path::Path, law: Law, samples: &[i16]) {
    let data: Vec<u8> = samples.iter().map(|&s| law.encode(s)).collect();
    let mut w = Vec::new();
    let n = data.len() as u32;
    w.extend(b"RIFF");
    w.extend((4 + 26 + 12 + 8 + n + (n & 1)).to_le_bytes());
    w.extend(b"WAVEfmt ");
    w.extend(18u32.to_le_bytes());
    w.extend(law.wav_tag().to_le_bytes());
    w.extend(1u16.to_le_bytes()); // mono
    w.extend(8000u32.to_le_bytes());
    w.extend(8000u32.to_le_bytes()); // bytes/s
    w.extend(1u16.to_le_bytes()); // block align
    w.extend(8u16.to_le_bytes()); // bits/sample
    w.extend(0u16.to_le_bytes()); // cbSize
    w.extend(b"fact");
    w.extend(4u32.to_le_bytes());
    w.extend(n.to_le_bytes());
    w.extend(b"data");
    w.extend(n.to_le_bytes());
    w.extend(&data);
    if n & 1 == 1 {
        w.push(0);
    }
    std::fs::write(path, w).unwrap();
}

/// Read a 16-bit PCM mono WAV; returns (sample rate, samples).
pub fn read_pcm16_wav(path: &std::path::Path) -> (u32, Vec<i16>) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[0..4], b"RIFF");
    assert_eq!(&b[8..12], b"WAVE");
    let mut i = 12;
    let mut rate = 0;
    while i + 8 <= b.len() {
        let id = &b[i..i + 4];
        let len = u32::from_le_bytes(b[i + 4..i + 8].try_into().unwrap()) as usize;
        let body = &b[i + 8..(i + 8 + len).min(b.len())];
        if id == b"fmt " {
            let tag = u16::from_le_bytes([body[0], body[1]]);
            let ch = u16::from_le_bytes([body[2], body[3]]);
            let bits = u16::from_le_bytes([body[14], body[15]]);
            assert!(tag == 1 || tag == 0xfffe, "PCM expected, tag {tag}");
            assert_eq!((ch, bits), (1, 16));
            rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
        } else if id == b"data" {
            let s = body
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return (rate, s);
        }
        i += 8 + len + (len & 1);
    }
    panic!("no data chunk in {}", path.display());
}

/// Seeded Gaussian noise (xorshift64* + Box-Muller); tests stay deterministic.
pub struct Noise {
    state: u64,
    spare: Option<f64>,
}

impl Noise {
    pub fn new(seed: u64) -> Self {
        Noise {
            state: seed.max(1),
            spare: None,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// One N(0, 1) sample.
    pub fn gaussian(&mut self) -> f64 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        let r = (-2.0 * self.uniform().ln()).sqrt();
        let t = std::f64::consts::TAU * self.uniform();
        self.spare = Some(r * t.sin());
        r * t.cos()
    }
}

/// Bit errors after aligning `got` to `sent` (banded edit distance: substitutions cost
/// their Hamming distance, a lost or extra character costs 8 bits).
pub fn aligned_bit_errors(sent: &[u8], got: &[u8]) -> u64 {
    const BAND: usize = 64;
    const GAP: u64 = 8;
    let inf = u64::MAX / 4;
    let w = 2 * BAND + 1;
    // row i holds columns j = i - BAND ..= i + BAND.
    let mut prev = vec![inf; w];
    let mut cur = vec![inf; w];
    for (k, c) in prev.iter_mut().enumerate() {
        if k >= BAND {
            *c = GAP * (k - BAND) as u64;
        }
    }
    for i in 1..=sent.len() {
        for k in 0..w {
            let j = (i + k) as i64 - BAND as i64;
            cur[k] = inf;
            if j < 0 || j as usize > got.len() {
                continue;
            }
            let j = j as usize;
            let mut best = inf;
            if j == 0 {
                best = GAP * i as u64;
            } else {
                // diagonal: prev row same k
                let d = (sent[i - 1] ^ got[j - 1]).count_ones() as u64;
                best = best.min(prev[k].saturating_add(d));
                // left: same row k-1
                if k > 0 {
                    best = best.min(cur[k - 1].saturating_add(GAP));
                }
            }
            // up: prev row k+1 (same j)
            if k + 1 < w {
                best = best.min(prev[k + 1].saturating_add(GAP));
            }
            cur[k] = best;
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    let k = got.len() as i64 - sent.len() as i64 + BAND as i64;
    if k < 0 || k as usize >= w {
        return 8 * sent.len().max(got.len()) as u64;
    }
    prev[k as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_round_trip_stays_within_a_quantisation_step() {
        for law in [Law::Mu, Law::A] {
            for x in (-32_000i32..32_000).step_by(7) {
                let x = x as i16;
                let y = law.decode(law.encode(x));
                let tol = (i32::from(x).abs() / 16).max(16);
                assert!(
                    (i32::from(x) - i32::from(y)).abs() <= tol,
                    "{law:?} {x} {y}"
                );
            }
        }
        assert_eq!(ulaw_encode(0), 0xff);
        assert_eq!(alaw_encode(0), 0xd5);
    }
}
