//! Tone generation: the audible cues we play to callers (beep, confirmation, error) and DTMF
//! key tones (ITU-T Q.23 frequencies, configurable level, twist, frequency offset and timing
//! for testing detectors against Q.24 limits).
//!
//! Generators are phase-continuous across `fill` calls and across segment changes, so the
//! output does not depend on how the caller chunks it, and a frequency change makes no
//! click from a phase jump. No allocation happens in `fill`.
//!
//! # Level reference
//!
//! G.711 defines the digital milliwatt so that a full-scale sine is +3.17 dBm0 for μ-law
//! (+3.14 dBm0 for A-law; we use 3.17 for both, a 0.03 dB difference). With 16-bit samples a
//! sine of peak 32767 is therefore +3.17 dBm0, and a level of `L` dBm0 has peak
//! `32767 * 10^((L - 3.17) / 20)`: 0 dBm0 is a peak of 22 748.

use std::f64::consts::TAU;

use crate::media::dtmf::Digit;
use crate::media::SAMPLE_RATE_HZ;

/// Level, in dBm0, of a full-scale 16-bit sine: G.711's theoretical load capacity, +3.17 dBm0
/// for μ-law (+3.14 dBm0 for A-law).
pub const FULL_SCALE_SINE_DBM0: f64 = 3.17;
/// Default cue level.
pub const DEFAULT_CUE_DBM0: f64 = -10.0;

/// Peak amplitude of a sine at `level_dbm0` in 16-bit units.
pub fn dbm0_to_peak(level_dbm0: f64) -> f64 {
    32767.0 * 10f64.powf((level_dbm0 - FULL_SCALE_SINE_DBM0) / 20.0)
}

/// Convert milliseconds to samples at 8 kHz.
pub const fn ms_to_samples(ms: u32) -> u32 {
    ms * (SAMPLE_RATE_HZ / 1000)
}

/// A single continuous sine, phase-continuous across calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SineGenerator {
    /// Phase in cycles, `0.0..1.0`.
    phase: f64,
    /// Cycles per sample.
    step: f64,
    /// Peak amplitude.
    amplitude: f64,
}

impl SineGenerator {
    /// A sine of `freq_hz` at `level_dbm0`.
    pub fn new(freq_hz: f64, level_dbm0: f64) -> Self {
        Self {
            phase: 0.0,
            step: freq_hz / f64::from(SAMPLE_RATE_HZ),
            amplitude: dbm0_to_peak(level_dbm0),
        }
    }

    /// Change frequency without a phase jump.
    pub fn set_frequency(&mut self, freq_hz: f64) {
        self.step = freq_hz / f64::from(SAMPLE_RATE_HZ);
    }

    /// Fill `out` with the next samples.
    pub fn fill(&mut self, out: &mut [i16]) {
        for o in out.iter_mut() {
            *o = to_i16(self.next_value());
        }
    }

    fn next_value(&mut self) -> f64 {
        let v = self.amplitude * (TAU * self.phase).sin();
        self.phase += self.step;
        self.phase -= self.phase.floor();
        v
    }
}

/// One piece of a tone sequence: up to two sines (or silence) for a number of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// Frequencies of the two oscillators (Hz).
    pub freqs: [f64; 2],
    /// Peak amplitudes (0 for an unused oscillator or silence).
    pub peaks: [f64; 2],
    /// Length in samples.
    pub samples: u32,
}

impl Segment {
    /// One sine.
    pub fn tone(freq_hz: f64, level_dbm0: f64, ms: u32) -> Self {
        Self {
            freqs: [freq_hz, 0.0],
            peaks: [dbm0_to_peak(level_dbm0), 0.0],
            samples: ms_to_samples(ms),
        }
    }

    /// Silence.
    pub fn silence(ms: u32) -> Self {
        Self {
            freqs: [0.0; 2],
            peaks: [0.0; 2],
            samples: ms_to_samples(ms),
        }
    }
}

/// A finite sequence of segments; after the end it writes silence.
#[derive(Debug, Clone, PartialEq)]
pub struct ToneSequence {
    segments: Vec<Segment>,
    index: usize,
    position: u32,
    phases: [f64; 2],
}

impl ToneSequence {
    /// A sequence playing `segments` in order.
    pub fn new(segments: Vec<Segment>) -> Self {
        Self {
            segments,
            index: 0,
            position: 0,
            phases: [0.0; 2],
        }
    }

    /// Total length in samples.
    pub fn len_samples(&self) -> u64 {
        self.segments.iter().map(|s| u64::from(s.samples)).sum()
    }

    /// Whether every segment has been written.
    pub fn is_done(&self) -> bool {
        let position = u64::from(self.position);
        self.segments
            .iter()
            .skip(self.index)
            .map(|s| u64::from(s.samples))
            .sum::<u64>()
            <= position
    }

    /// Fill `out`; returns how many samples belonged to the sequence (the rest are zero).
    pub fn fill(&mut self, out: &mut [i16]) -> usize {
        let mut written = 0;
        for o in out.iter_mut() {
            // Skip finished (or empty) segments.
            while let Some(seg) = self.segments.get(self.index) {
                if self.position < seg.samples {
                    break;
                }
                self.index += 1;
                self.position = 0;
            }
            let Some(seg) = self.segments.get(self.index) else {
                *o = 0;
                continue;
            };
            let mut v = 0.0;
            for k in 0..2 {
                v += seg.peaks[k] * (TAU * self.phases[k]).sin();
                self.phases[k] += seg.freqs[k] / f64::from(SAMPLE_RATE_HZ);
                self.phases[k] -= self.phases[k].floor();
            }
            *o = to_i16(v);
            self.position += 1;
            written += 1;
        }
        written
    }
}

/// The cues played to a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cue {
    /// Prompt beep: 1000 Hz for 200 ms (the ITU-T O.41/G.711 1 kHz reference tone family).
    Beep,
    /// Accepted: a rising pair, 800 Hz then 1200 Hz, 120 ms each.
    Confirm,
    /// Refused: three short low tones, 400 Hz 120 ms on, 80 ms off.
    Error,
}

impl Cue {
    /// The cue as a sequence at `level_dbm0`.
    pub fn sequence(self, level_dbm0: f64) -> ToneSequence {
        let segments = match self {
            Cue::Beep => vec![Segment::tone(1000.0, level_dbm0, 200)],
            Cue::Confirm => vec![
                Segment::tone(800.0, level_dbm0, 120),
                Segment::tone(1200.0, level_dbm0, 120),
            ],
            Cue::Error => {
                let mut s = Vec::with_capacity(6);
                for _ in 0..3 {
                    s.push(Segment::tone(400.0, level_dbm0, 120));
                    s.push(Segment::silence(80));
                }
                s
            }
        };
        ToneSequence::new(segments)
    }
}

/// How to generate DTMF tones (Q.23 pairs, with the knobs a detector test needs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DtmfToneSpec {
    /// Level of the low-group tone, dBm0.
    pub low_level_dbm0: f64,
    /// High-group level minus low-group level, dB (positive: "standard" twist).
    pub twist_db: f64,
    /// Frequency offset applied to both tones, percent (Q.24 tolerates ±1.5 %... ±1.8 %).
    pub freq_offset_pct: f64,
    /// Tone duration.
    pub on_ms: u32,
    /// Pause after each tone.
    pub off_ms: u32,
}

impl Default for DtmfToneSpec {
    fn default() -> Self {
        Self {
            low_level_dbm0: -8.0,
            twist_db: 2.0,
            freq_offset_pct: 0.0,
            on_ms: 100,
            off_ms: 100,
        }
    }
}

/// DTMF tones for `digits`, each followed by its pause.
pub fn dtmf_sequence(digits: &[Digit], spec: DtmfToneSpec) -> ToneSequence {
    let scale = 1.0 + spec.freq_offset_pct / 100.0;
    let low_peak = dbm0_to_peak(spec.low_level_dbm0);
    let high_peak = dbm0_to_peak(spec.low_level_dbm0 + spec.twist_db);
    let mut segments = Vec::with_capacity(digits.len() * 2);
    for d in digits {
        let (low, high) = d.frequencies();
        segments.push(Segment {
            freqs: [low * scale, high * scale],
            peaks: [low_peak, high_peak],
            samples: ms_to_samples(spec.on_ms),
        });
        segments.push(Segment::silence(spec.off_ms));
    }
    ToneSequence::new(segments)
}

fn to_i16(v: f64) -> i16 {
    // Saturating float-to-int conversion: clamps and maps NaN to 0.
    v.round() as i16
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Power of `freq` in `samples` by the Goertzel algorithm, normalised to peak amplitude.
    fn goertzel_amplitude(samples: &[i16], freq: f64) -> f64 {
        let w = TAU * freq / f64::from(SAMPLE_RATE_HZ);
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for &x in samples {
            let s = f64::from(x) + coeff * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        2.0 * power.sqrt() / samples.len() as f64
    }

    #[test]
    fn zero_dbm0_has_the_g711_peak() {
        assert!((dbm0_to_peak(0.0) - 22_748.0).abs() < 1.0);
        assert!((dbm0_to_peak(FULL_SCALE_SINE_DBM0) - 32_767.0).abs() < 1e-6);
    }

    #[test]
    fn sine_generator_has_the_requested_frequency_and_level() {
        let mut g = SineGenerator::new(1000.0, -10.0);
        let mut out = [0i16; 800];
        g.fill(&mut out);
        let expected = dbm0_to_peak(-10.0);
        let at = goertzel_amplitude(&out, 1000.0);
        assert!(
            (at - expected).abs() / expected < 0.01,
            "{at} vs {expected}"
        );
        assert!(goertzel_amplitude(&out, 1400.0) < expected * 0.01);
    }

    #[test]
    fn cues_have_their_documented_lengths() {
        assert_eq!(Cue::Beep.sequence(-10.0).len_samples(), 1600);
        assert_eq!(Cue::Confirm.sequence(-10.0).len_samples(), 1920);
        assert_eq!(Cue::Error.sequence(-10.0).len_samples(), 4800);
    }

    #[test]
    fn confirm_cue_rises_in_pitch() {
        let mut s = Cue::Confirm.sequence(-10.0);
        let mut out = vec![0i16; 1920];
        assert_eq!(s.fill(&mut out), 1920);
        assert!(s.is_done());
        assert!(goertzel_amplitude(&out[..960], 800.0) > 1000.0);
        assert!(goertzel_amplitude(&out[960..], 1200.0) > 1000.0);
        assert!(goertzel_amplitude(&out[960..], 800.0) < 300.0);
    }

    #[test]
    fn error_cue_is_three_bursts_then_silence() {
        let mut s = Cue::Error.sequence(-10.0);
        let mut out = vec![1i16; 5000];
        assert_eq!(s.fill(&mut out), 4800);
        let bursts = (0..3)
            .filter(|k| goertzel_amplitude(&out[k * 1600..k * 1600 + 960], 400.0) > 1000.0)
            .count();
        assert_eq!(bursts, 3);
        assert!(out[4800..].iter().all(|&x| x == 0));
        assert!(out[960..1600].iter().all(|&x| x == 0));
    }

    #[test]
    fn dtmf_tones_carry_both_q23_frequencies_with_the_requested_twist() {
        let spec = DtmfToneSpec {
            twist_db: 4.0,
            ..DtmfToneSpec::default()
        };
        let mut s = dtmf_sequence(&[Digit::D5], spec);
        let mut out = vec![0i16; 800];
        s.fill(&mut out);
        let low = goertzel_amplitude(&out, 770.0);
        let high = goertzel_amplitude(&out, 1336.0);
        let twist = 20.0 * (high / low).log10();
        assert!((twist - 4.0).abs() < 0.2, "twist {twist}");
        assert!((low - dbm0_to_peak(-8.0)).abs() / low < 0.02);
    }

    #[test]
    fn dtmf_frequency_offset_moves_both_tones() {
        let spec = DtmfToneSpec {
            freq_offset_pct: 2.0,
            on_ms: 200,
            ..DtmfToneSpec::default()
        };
        let mut out = vec![0i16; 1600];
        dtmf_sequence(&[Digit::D1], spec).fill(&mut out);
        assert!(goertzel_amplitude(&out, 697.0 * 1.02) > 3.0 * goertzel_amplitude(&out, 697.0));
    }

    proptest! {
        #[test]
        fn output_does_not_depend_on_chunking(chunks in proptest::collection::vec(1usize..300, 1..40)) {
            let digits = [Digit::D1, Digit::Star, Digit::D9];
            let mut whole = vec![0i16; 5000];
            dtmf_sequence(&digits, DtmfToneSpec::default()).fill(&mut whole);
            let mut seq = dtmf_sequence(&digits, DtmfToneSpec::default());
            let mut pieces = Vec::with_capacity(5000);
            for c in chunks.iter().cycle() {
                if pieces.len() >= 5000 { break; }
                let mut buf = vec![0i16; (*c).min(5000 - pieces.len())];
                seq.fill(&mut buf);
                pieces.extend(buf);
            }
            prop_assert_eq!(whole, pieces);
        }

        #[test]
        fn sine_generator_is_chunking_independent(a in 1usize..500, b in 1usize..500) {
            let mut g1 = SineGenerator::new(425.0, 0.0);
            let mut g2 = g1;
            let mut whole = vec![0i16; a + b];
            g1.fill(&mut whole);
            let mut split = vec![0i16; a + b];
            g2.fill(&mut split[..a]);
            g2.fill(&mut split[a..]);
            prop_assert_eq!(whole, split);
        }
    }
}
