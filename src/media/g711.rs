//! ITU-T G.711 pulse code modulation: μ-law and A-law, encode and decode.
//!
//! Linear samples are 16-bit two's complement. G.711 itself is specified on 14-bit (μ-law,
//! Table 2a) and 13-bit (A-law, Table 1a) magnitudes; we scale by 4 and 8 respectively, which
//! is the usual 16-bit alignment (the largest decoder outputs are ±32124 and ±32256).
//!
//! Both directions are tables built at compile time: decoding a 256-entry table, encoding a
//! table indexed by the 14-bit (μ-law, 8 KiB) or 13-bit (A-law, 4 KiB) magnitude, filled by
//! an arithmetic encoder that finds the segment with `leading_zeros` rather than a search.
//! The sign is applied with a mask, so encoding has no data-dependent branch. Both laws are
//! sign-magnitude and symmetric: `encode(-x)` differs from `encode(x)` only in the sign bit.
//!
//! Bit inversion on the wire (the character-signal columns of G.711 Tables 1 and 2): μ-law
//! transmits all bits inverted; A-law inverts the even bits, i.e. XOR 0x55.
//!
//! This module owns no state and must stay allocation-free.

/// The μ-law code for linear 0 (positive zero).
pub const ULAW_SILENCE: u8 = 0xFF;
/// The A-law code closest to linear 0 (+8 after decoding; A-law has no zero level).
pub const ALAW_SILENCE: u8 = 0xD5;

/// μ-law bias added to the 14-bit magnitude so that every segment starts at a power of two
/// (G.711 Table 2a: segment end points 0, 31, 95, ... 8159 become 33, 64, 128, ... 8192 - 1).
const ULAW_BIAS: u32 = 33;
/// Largest 14-bit μ-law magnitude before the bias (G.711 Table 2a, last decision value 8159).
const ULAW_CLIP: u32 = 8158;
/// Largest 13-bit A-law magnitude (G.711 Table 1a, last decision value 4096).
const ALAW_CLIP: u32 = 4095;

static ULAW_TO_LINEAR: [i16; 256] = build_ulaw_table();
static ALAW_TO_LINEAR: [i16; 256] = build_alaw_table();

/// A G.711 companding law, as negotiated in SDP (PCMU = μ-law, PCMA = A-law).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Law {
    /// μ-law, RTP static payload type 0 (PCMU).
    Ulaw,
    /// A-law, RTP static payload type 8 (PCMA).
    Alaw,
}

impl Law {
    /// The RFC 3551 static payload type for this law.
    pub const fn payload_type(self) -> u8 {
        match self {
            Law::Ulaw => 0,
            Law::Alaw => 8,
        }
    }

    /// The code that decodes to (nearly) zero.
    pub const fn silence(self) -> u8 {
        match self {
            Law::Ulaw => ULAW_SILENCE,
            Law::Alaw => ALAW_SILENCE,
        }
    }

    /// Encode one linear sample.
    #[inline]
    pub fn encode(self, sample: i16) -> u8 {
        match self {
            Law::Ulaw => ulaw_encode(sample),
            Law::Alaw => alaw_encode(sample),
        }
    }

    /// Decode one code.
    #[inline]
    pub fn decode(self, code: u8) -> i16 {
        match self {
            Law::Ulaw => ulaw_decode(code),
            Law::Alaw => alaw_decode(code),
        }
    }

    /// Encode `input` into `output`, up to the shorter of the two; returns samples written.
    pub fn encode_slice(self, input: &[i16], output: &mut [u8]) -> usize {
        let n = input.len().min(output.len());
        match self {
            Law::Ulaw => {
                for (o, &i) in output.iter_mut().zip(input) {
                    *o = ulaw_encode(i);
                }
            }
            Law::Alaw => {
                for (o, &i) in output.iter_mut().zip(input) {
                    *o = alaw_encode(i);
                }
            }
        }
        n
    }

    /// Decode `input` into `output`, up to the shorter of the two; returns samples written.
    pub fn decode_slice(self, input: &[u8], output: &mut [i16]) -> usize {
        let n = input.len().min(output.len());
        let table = match self {
            Law::Ulaw => &ULAW_TO_LINEAR,
            Law::Alaw => &ALAW_TO_LINEAR,
        };
        for (o, &c) in output.iter_mut().zip(input) {
            *o = table[usize::from(c)];
        }
        n
    }
}

/// Decode a μ-law code to a 16-bit linear sample (G.711 Table 2a, scaled by 4).
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_TO_LINEAR[usize::from(code)]
}

/// Decode an A-law code to a 16-bit linear sample (G.711 Table 1a, scaled by 8).
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_TO_LINEAR[usize::from(code)]
}

/// Encode a 16-bit linear sample to μ-law (G.711 Table 2a).
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    // unsigned_abs() <= 32768, so the index is <= 8192 and in bounds.
    ULAW_FROM_MAGNITUDE[usize::from(sample.unsigned_abs() >> 2)] & sign_mask(sample)
}

/// Encode a 16-bit linear sample to A-law (G.711 Table 1a).
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    // unsigned_abs() <= 32768, so the index is <= 4096 and in bounds.
    ALAW_FROM_MAGNITUDE[usize::from(sample.unsigned_abs() >> 3)] & sign_mask(sample)
}

/// 0xFF for non-negative samples, 0x7F for negative ones. Both laws carry the sign in bit 7
/// and set it for positive values once the transmission inversion is applied (μ-law: sign 0
/// inverted; A-law: sign 1, and XOR 0x55 leaves bit 7 alone), so clearing bit 7 negates.
#[inline]
fn sign_mask(sample: i16) -> u8 {
    0x7F | (((!sample) >> 15) as u8 & 0x80)
}

/// Positive μ-law codes by 14-bit magnitude (|x| >> 2), 0..=8192.
static ULAW_FROM_MAGNITUDE: [u8; 8193] = build_ulaw_encode_table();
/// Positive A-law codes by 13-bit magnitude (|x| >> 3), 0..=4096.
static ALAW_FROM_MAGNITUDE: [u8; 4097] = build_alaw_encode_table();

/// The μ-law code of a positive 14-bit magnitude, by arithmetic: find the segment from the
/// bit length of the biased magnitude, take the next four bits as the step.
const fn ulaw_positive_code(magnitude14: u32) -> u8 {
    let clipped = if magnitude14 > ULAW_CLIP {
        ULAW_CLIP
    } else {
        magnitude14
    };
    let biased = clipped + ULAW_BIAS;
    // biased is in 33..=8191, i.e. 6 to 13 significant bits: segment 0..=7.
    let segment = 32 - biased.leading_zeros() - 6;
    let mantissa = (biased >> (segment + 1)) & 0x0F;
    // segment <= 7 and mantissa <= 15, so the casts cannot truncate.
    !(((segment as u8) << 4) | mantissa as u8)
}

/// The A-law code of a positive 13-bit magnitude.
const fn alaw_positive_code(magnitude13: u32) -> u8 {
    let m = if magnitude13 > ALAW_CLIP {
        ALAW_CLIP
    } else {
        magnitude13
    };
    // Segments 0 and 1 share the step of 2; above that the segment is the bit length - 5.
    let segment = 32 - (m | 0x1F).leading_zeros() - 5;
    let shift = if segment == 0 { 1 } else { segment };
    let mantissa = (m >> shift) & 0x0F;
    // A-law sign bit is 1 for positive values (G.711 Table 1a).
    (0x80 | ((segment as u8) << 4) | mantissa as u8) ^ 0x55
}

const fn build_ulaw_encode_table() -> [u8; 8193] {
    let mut table = [0u8; 8193];
    let mut m = 0;
    while m < table.len() {
        table[m] = ulaw_positive_code(m as u32);
        m += 1;
    }
    table
}

const fn build_alaw_encode_table() -> [u8; 4097] {
    let mut table = [0u8; 4097];
    let mut m = 0;
    while m < table.len() {
        table[m] = alaw_positive_code(m as u32);
        m += 1;
    }
    table
}

const fn build_ulaw_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut code = 0usize;
    while code < 256 {
        let u = !(code as u8);
        let segment = ((u >> 4) & 0x07) as u32;
        let mantissa = (u & 0x0F) as u32;
        // 14-bit output value y = ((2m + 33) << s) - 33 (G.711 Table 2a decoder outputs).
        let y14 = (((2 * mantissa) + ULAW_BIAS) << segment) - ULAW_BIAS;
        let y = (y14 * 4) as i16;
        table[code] = if u & 0x80 != 0 { -y } else { y };
        code += 1;
    }
    table
}

const fn build_alaw_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut code = 0usize;
    while code < 256 {
        let a = (code as u8) ^ 0x55;
        let segment = ((a >> 4) & 0x07) as u32;
        let mantissa = (a & 0x0F) as u32;
        // 13-bit output value (G.711 Table 1a): segment 0 is 2m + 1, others (2m + 33) << (s-1).
        let y13 = if segment == 0 {
            2 * mantissa + 1
        } else {
            (2 * mantissa + 33) << (segment - 1)
        };
        let y = (y13 * 8) as i16;
        table[code] = if a & 0x80 != 0 { y } else { -y };
        code += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// G.711 Table 2a, μ-law decoder output values (14-bit units) at the first and last code
    /// of each of the eight segments, for positive codes 0x80|s<<4|m after inversion.
    const ULAW_SEGMENT_ENDS_14BIT: [(u32, u32); 8] = [
        (0, 30),
        (33, 93),
        (99, 219),
        (231, 471),
        (495, 975),
        (1023, 1983),
        (2079, 3999),
        (4191, 8031),
    ];

    /// G.711 Table 1a, A-law decoder output values (13-bit units) at segment ends.
    const ALAW_SEGMENT_ENDS_13BIT: [(u32, u32); 8] = [
        (1, 31),
        (33, 63),
        (66, 126),
        (132, 252),
        (264, 504),
        (528, 1008),
        (1056, 2016),
        (2112, 4032),
    ];

    #[test]
    fn ulaw_decoder_matches_g711_segment_end_points() {
        for (segment, &(first, last)) in ULAW_SEGMENT_ENDS_14BIT.iter().enumerate() {
            // Positive value, segment s, mantissa m is transmitted as !(s<<4 | m).
            let first_code = !((segment as u8) << 4);
            let last_code = !(((segment as u8) << 4) | 0x0F);
            assert_eq!(
                ulaw_decode(first_code),
                (first * 4) as i16,
                "segment {segment}"
            );
            assert_eq!(
                ulaw_decode(last_code),
                (last * 4) as i16,
                "segment {segment}"
            );
            assert_eq!(ulaw_decode(first_code & 0x7F), -((first * 4) as i16));
            assert_eq!(ulaw_decode(last_code & 0x7F), -((last * 4) as i16));
        }
    }

    #[test]
    fn alaw_decoder_matches_g711_segment_end_points() {
        for (segment, &(first, last)) in ALAW_SEGMENT_ENDS_13BIT.iter().enumerate() {
            let first_code = (0x80 | ((segment as u8) << 4)) ^ 0x55;
            let last_code = (0x80 | ((segment as u8) << 4) | 0x0F) ^ 0x55;
            assert_eq!(
                alaw_decode(first_code),
                (first * 8) as i16,
                "segment {segment}"
            );
            assert_eq!(
                alaw_decode(last_code),
                (last * 8) as i16,
                "segment {segment}"
            );
            assert_eq!(alaw_decode(first_code ^ 0x80), -((first * 8) as i16));
            assert_eq!(alaw_decode(last_code ^ 0x80), -((last * 8) as i16));
        }
    }

    /// Sample pairs (16-bit linear, code) derived from G.711 Tables 1a/2a: each linear value is
    /// a decoder output, so the encoder must return exactly that code.
    const ULAW_PAIRS: [(i16, u8); 16] = [
        (0, 0xFF),
        (8, 0xFE),
        (120, 0xF0),
        (132, 0xEF),
        (372, 0xE0),
        (396, 0xDF),
        (876, 0xD0),
        (924, 0xCF),
        (1884, 0xC0),
        (3900, 0xB0),
        (7932, 0xA0),
        (15996, 0x90),
        (16764, 0x8F),
        (32124, 0x80),
        (-8, 0x7E),
        (-32124, 0x00),
    ];
    const ALAW_PAIRS: [(i16, u8); 16] = [
        (8, 0xD5),
        (24, 0xD4),
        (248, 0xDA),
        (264, 0xC5),
        (504, 0xCA),
        (528, 0xF5),
        (1008, 0xFA),
        (1056, 0xE5),
        (2016, 0xEA),
        (4032, 0x9A),
        (8064, 0x8A),
        (16128, 0xBA),
        (16896, 0xA5),
        (32256, 0xAA),
        (-8, 0x55),
        (-32256, 0x2A),
    ];

    #[test]
    fn ulaw_reference_pairs_encode_and_decode() {
        for &(linear, code) in &ULAW_PAIRS {
            assert_eq!(ulaw_decode(code), linear, "decode {code:#04x}");
            assert_eq!(ulaw_encode(linear), code, "encode {linear}");
        }
    }

    #[test]
    fn alaw_reference_pairs_encode_and_decode() {
        for &(linear, code) in &ALAW_PAIRS {
            assert_eq!(alaw_decode(code), linear, "decode {code:#04x}");
            assert_eq!(alaw_encode(linear), code, "encode {linear}");
        }
    }

    /// The arithmetic encoder written out independently of the tables (sign included).
    fn ulaw_by_formula(x: i16) -> u8 {
        let negative = u8::from(x < 0);
        let m = (u32::from(x.unsigned_abs()) >> 2).min(8158) + 33;
        let segment = 31 - m.leading_zeros() - 5;
        let mantissa = (m >> (segment + 1)) & 0x0F;
        !((negative << 7) | ((segment as u8) << 4) | mantissa as u8)
    }

    #[test]
    fn table_encoder_matches_the_formula_for_every_input() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(ulaw_encode(x), ulaw_by_formula(x), "ulaw {x}");
            let positive = alaw_positive_code(u32::from(x.unsigned_abs()) >> 3);
            let expected = if x < 0 { positive & 0x7F } else { positive };
            assert_eq!(alaw_encode(x), expected, "alaw {x}");
        }
    }

    #[test]
    fn silence_codes_decode_near_zero() {
        assert_eq!(ulaw_decode(ULAW_SILENCE), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(alaw_decode(ALAW_SILENCE), 8);
        assert_eq!(ulaw_encode(0), ULAW_SILENCE);
        assert_eq!(alaw_encode(0), ALAW_SILENCE);
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for code in 0..=255u8 {
            // μ-law has two zeros (0x7F and 0xFF); both decode to 0 which encodes to 0xFF.
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(ulaw_encode(ulaw_decode(code)), expected, "ulaw {code:#04x}");
            assert_eq!(alaw_encode(alaw_decode(code)), code, "alaw {code:#04x}");
        }
    }

    #[test]
    fn decoders_are_monotonic_over_magnitude() {
        for segment_mantissa in 1..128u8 {
            let prev = segment_mantissa - 1;
            assert!(ulaw_decode(!segment_mantissa) > ulaw_decode(!prev));
            assert!(
                alaw_decode((0x80 | segment_mantissa) ^ 0x55) > alaw_decode((0x80 | prev) ^ 0x55)
            );
        }
    }

    #[test]
    fn extreme_inputs_clip_to_the_last_code() {
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
    }

    #[test]
    fn slice_helpers_match_scalar_functions() {
        let input: Vec<i16> = (0..160).map(|i| (i * 409 - 32000) as i16).collect();
        for law in [Law::Ulaw, Law::Alaw] {
            let mut coded = [0u8; 160];
            assert_eq!(law.encode_slice(&input, &mut coded), 160);
            let mut decoded = [0i16; 160];
            assert_eq!(law.decode_slice(&coded, &mut decoded), 160);
            for i in 0..160 {
                assert_eq!(coded[i], law.encode(input[i]));
                assert_eq!(decoded[i], law.decode(coded[i]));
            }
        }
    }

    /// Half the quantisation step of the segment holding the decoded value `y`, in 16-bit
    /// units, plus what the 14/13-bit truncation of the input can add.
    fn max_error(law: Law, y: i16) -> i32 {
        let m = u32::from(y.unsigned_abs());
        match law {
            Law::Ulaw => {
                let seg = ULAW_SEGMENT_ENDS_14BIT
                    .iter()
                    .position(|&(first, last)| (first..=last).contains(&(m / 4)))
                    .unwrap_or(7);
                // 14-bit step 2^(s+1): half of it, times 4, plus up to 3 truncated LSBs.
                (1 << (seg + 2)) + 4
            }
            Law::Alaw => {
                let seg = ALAW_SEGMENT_ENDS_13BIT
                    .iter()
                    .position(|&(first, last)| (first..=last).contains(&(m / 8)))
                    .unwrap_or(7);
                // 13-bit step 2^max(s,1): half of it, times 8, plus up to 7 truncated LSBs.
                (1 << (seg.max(1) + 2)) + 8
            }
        }
    }

    #[test]
    fn round_trip_error_is_within_half_a_step_for_every_input() {
        for x in -32124i16..=32124 {
            for law in [Law::Ulaw, Law::Alaw] {
                let y = law.decode(law.encode(x));
                let err = (i32::from(y) - i32::from(x)).abs();
                assert!(err <= max_error(law, y), "{law:?} x={x} y={y} err={err}");
            }
        }
    }

    proptest! {
        #[test]
        fn encoding_is_sign_symmetric(x in 1i16..=i16::MAX) {
            prop_assert_eq!(ulaw_encode(x) ^ 0x80, ulaw_encode(-x));
            prop_assert_eq!(alaw_encode(x) ^ 0x80, alaw_encode(-x));
        }
    }
}
