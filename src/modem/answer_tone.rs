//! Answer tones and the calling tone: generators and a detector that says which tone it heard.
//!
//! - ITU-T V.25: answer tone ANS, 2100 ± 15 Hz, with phase reversals every 450 ± 25 ms
//!   (ANS/PR) when echo cancellers are to be disabled; calling tone CT 1300 Hz, on 0.5-0.7 s,
//!   off 1.5-2.0 s (we send 0.6 s / 2.0 s).
//! - ITU-T V.8 (ANSam): the 2100 Hz tone amplitude-modulated by a 15 Hz sine, modulation
//!   depth 20 ± 5 %, optionally with the V.25 phase reversals (ANSam/PR).
//! - Bell 103/212A answer tone: 2225 Hz (the Bell 103 answer-band mark).
//!
//! The detector works on 10 ms blocks: a DFT bin at 2100 Hz (exactly 21 cycles per 80
//! samples, so the bin phase is stable from block to block) and one at 2225 Hz against the
//! block energy. The 2100 Hz bin phase two blocks apart reveals reversals; the bin magnitude
//! sampled at 100 Hz is the envelope whose 15 Hz component over 200 ms (3 whole periods)
//! gives the AM depth. A tone is reported once it has lasted [`DETECT_MS`] (longer than one
//! reversal interval, so ANS/PR is told from ANS), and its end when it has been absent for
//! more than [`GAP_MS`]. Timeouts belong to the caller, counted in samples.
//! No IO, no clock, no allocation after `new`.

use std::collections::VecDeque;

use super::level;
use super::{ModemError, SAMPLE_RATE_HZ};

/// Which answer tone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerTone {
    /// V.25 2100 Hz.
    Ans,
    /// V.25 2100 Hz with phase reversals every 450 ms.
    AnsPr,
    /// V.8 2100 Hz, 15 Hz AM.
    AnsAm,
    /// V.8 2100 Hz, 15 Hz AM, with phase reversals.
    AnsAmPr,
    /// Bell 2225 Hz.
    Bell,
}

impl AnswerTone {
    pub fn frequency_hz(self) -> f32 {
        match self {
            AnswerTone::Bell => BELL_ANSWER_HZ,
            _ => ANS_HZ,
        }
    }

    fn reverses(self) -> bool {
        matches!(self, AnswerTone::AnsPr | AnswerTone::AnsAmPr)
    }

    fn modulated(self) -> bool {
        matches!(self, AnswerTone::AnsAm | AnswerTone::AnsAmPr)
    }
}

/// What the detector reports. `at` is a sample index counted from the first pushed sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerToneEvent {
    /// `tone` has been present since sample `at`.
    Detected { tone: AnswerTone, at: u64 },
    /// `tone` stopped at sample `at` (to block resolution).
    Ended { tone: AnswerTone, at: u64 },
}

pub const ANS_HZ: f32 = 2100.0;
pub const BELL_ANSWER_HZ: f32 = 2225.0;
/// V.25: 450 ms between phase reversals.
pub const PHASE_REVERSAL_SAMPLES: u64 = 3600;
/// V.8: ANSam modulation frequency and depth.
pub const ANSAM_AM_HZ: f32 = 15.0;
pub const ANSAM_DEPTH: f32 = 0.2;
/// V.25: calling tone frequency and the cadence we send (0.6 s on, 2.0 s off).
pub const CALLING_TONE_HZ: f32 = 1300.0;
pub const CALLING_TONE_ON_SAMPLES: u64 = 4800;
pub const CALLING_TONE_OFF_SAMPLES: u64 = 16_000;
/// Tone must last this long before it is reported (> one reversal interval).
pub const DETECT_MS: u32 = 500;
/// Blocks missing from a tone before it counts as ended (a reversal can null one block).
pub const GAP_MS: u32 = 30;
/// Weakest tone detected (same as the V.21 circuit 109 ON level).
pub const MIN_LEVEL_DBM0: f32 = -43.0;
/// Share of block energy that must fall in the tone's bin.
const MIN_TONE_SHARE: f32 = 0.5;
/// AM depth at or above which a 2100 Hz tone is ANSam (20 % nominal, 15 % minimum, less
/// a margin for noise and G.711).
const MIN_AM_DEPTH: f32 = 0.1;

const BLOCK: usize = 80; // 10 ms
const BLOCK_MS: u32 = 10;
const ENV_BLOCKS: usize = 20; // 200 ms = 3 periods of 15 Hz

/// Generates one answer tone continuously; the caller decides how long (V.25: 2.6-4.0 s).
#[derive(Debug, Clone)]
pub struct AnswerToneGenerator {
    tone: AnswerTone,
    peak: f32,
    phase: f64,
    step: f64,
    n: u64,
}

impl AnswerToneGenerator {
    pub fn new(tone: AnswerTone, level_dbm0: f32) -> Result<Self, ModemError> {
        check_level(level_dbm0)?;
        Ok(AnswerToneGenerator {
            tone,
            peak: level::sine_peak(level_dbm0),
            phase: 0.0,
            step: f64::from(tone.frequency_hz()) / f64::from(SAMPLE_RATE_HZ),
            n: 0,
        })
    }

    pub fn fill(&mut self, out: &mut [i16]) {
        let am_step = f64::from(ANSAM_AM_HZ) / f64::from(SAMPLE_RATE_HZ);
        for s in out.iter_mut() {
            if self.tone.reverses() && self.n > 0 && self.n.is_multiple_of(PHASE_REVERSAL_SAMPLES) {
                self.phase += 0.5;
            }
            let mut a = self.peak;
            if self.tone.modulated() {
                let am = (std::f64::consts::TAU * am_step * self.n as f64).sin() as f32;
                a *= 1.0 + ANSAM_DEPTH * am;
            }
            *s = (a * (std::f64::consts::TAU * self.phase).sin() as f32)
                .round()
                .clamp(-32767.0, 32767.0) as i16;
            self.phase = (self.phase + self.step).fract();
            self.n += 1;
        }
    }
}

/// V.25 calling tone: 1300 Hz, 0.6 s on, 2.0 s off, repeating.
#[derive(Debug, Clone)]
pub struct CallingToneGenerator {
    peak: f32,
    phase: f64,
    n: u64,
}

impl CallingToneGenerator {
    pub fn new(level_dbm0: f32) -> Result<Self, ModemError> {
        check_level(level_dbm0)?;
        Ok(CallingToneGenerator {
            peak: level::sine_peak(level_dbm0),
            phase: 0.0,
            n: 0,
        })
    }

    pub fn fill(&mut self, out: &mut [i16]) {
        let step = f64::from(CALLING_TONE_HZ) / f64::from(SAMPLE_RATE_HZ);
        let cycle = CALLING_TONE_ON_SAMPLES + CALLING_TONE_OFF_SAMPLES;
        for s in out.iter_mut() {
            *s = if self.n % cycle < CALLING_TONE_ON_SAMPLES {
                let v = self.peak * (std::f64::consts::TAU * self.phase).sin() as f32;
                self.phase = (self.phase + step).fract();
                v.round() as i16
            } else {
                0
            };
            self.n += 1;
        }
    }
}

fn check_level(dbm0: f32) -> Result<(), ModemError> {
    // Leave room for the +20 % AM peak below full scale.
    const MAX: f32 = -2.0;
    const MIN: f32 = -60.0;
    if (MIN..=MAX).contains(&dbm0) {
        Ok(())
    } else {
        Err(ModemError::TxLevel {
            dbm0,
            min: MIN,
            max: MAX,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Ans,
    Bell,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum DetState {
    Idle,
    Candidate {
        family: Family,
        start: u64,
        blocks: u32,
        missed: u32,
    },
    Reported {
        tone: AnswerTone,
        missed: u32,
        first_missed: u64,
    },
}

/// Detects ANS, ANS/PR, ANSam, ANSam/PR and the Bell 2225 Hz tone.
#[derive(Debug, Clone)]
pub struct AnswerToneDetector {
    ans_ref: [(f32, f32); BLOCK],
    bell_ref: [(f32, f32); BLOCK],
    n: u64,
    pos: usize,
    ans_acc: (f32, f32),
    bell_acc: (f32, f32),
    energy: f32,
    min_ms: f32,
    state: DetState,
    /// Last three 2100 Hz bins of present blocks (oldest first).
    history: [(f32, f32); 3],
    history_len: usize,
    reversal: bool,
    envelope: [f32; ENV_BLOCKS],
    env_len: usize,
    env_max: f32,
    events: VecDeque<AnswerToneEvent>,
}

impl Default for AnswerToneDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl AnswerToneDetector {
    pub fn new() -> Self {
        let reference = |hz: f32| {
            let mut t = [(0.0, 0.0); BLOCK];
            for (n, v) in t.iter_mut().enumerate() {
                let w =
                    std::f64::consts::TAU * f64::from(hz) * n as f64 / f64::from(SAMPLE_RATE_HZ);
                *v = (w.cos() as f32, -(w.sin() as f32));
            }
            t
        };
        AnswerToneDetector {
            ans_ref: reference(ANS_HZ),
            bell_ref: reference(BELL_ANSWER_HZ),
            n: 0,
            pos: 0,
            ans_acc: (0.0, 0.0),
            bell_acc: (0.0, 0.0),
            energy: 0.0,
            min_ms: level::mean_square(MIN_LEVEL_DBM0),
            state: DetState::Idle,
            history: [(0.0, 0.0); 3],
            history_len: 0,
            reversal: false,
            envelope: [0.0; ENV_BLOCKS],
            env_len: 0,
            env_max: 0.0,
            events: VecDeque::with_capacity(8),
        }
    }

    pub fn push(&mut self, samples: &[i16]) {
        for &x in samples {
            let x = f32::from(x);
            let (c, s) = self.ans_ref[self.pos];
            self.ans_acc.0 += x * c;
            self.ans_acc.1 += x * s;
            let (c, s) = self.bell_ref[self.pos];
            self.bell_acc.0 += x * c;
            self.bell_acc.1 += x * s;
            self.energy += x * x;
            self.pos += 1;
            self.n += 1;
            if self.pos == BLOCK {
                self.end_block();
            }
        }
    }

    pub fn poll_event(&mut self) -> Option<AnswerToneEvent> {
        self.events.pop_front()
    }

    /// Samples pushed so far: the caller's clock for its own timeouts (e.g. give up when
    /// no answer tone was detected by sample N).
    pub fn position(&self) -> u64 {
        self.n
    }

    /// The tone currently reported as present, if any.
    pub fn tone(&self) -> Option<AnswerTone> {
        match self.state {
            DetState::Reported { tone, .. } => Some(tone),
            _ => None,
        }
    }

    fn end_block(&mut self) {
        let block_start = self.n - BLOCK as u64;
        let z = self.ans_acc;
        // Bin of a tone with peak A has |z| = A * BLOCK / 2; its mean square is A^2 / 2.
        let norm = 2.0 / (BLOCK as f32 * BLOCK as f32);
        let ans_ms = (z.0 * z.0 + z.1 * z.1) * norm;
        let bell_ms =
            (self.bell_acc.0 * self.bell_acc.0 + self.bell_acc.1 * self.bell_acc.1) * norm;
        let block_ms = self.energy / BLOCK as f32;
        self.pos = 0;
        self.ans_acc = (0.0, 0.0);
        self.bell_acc = (0.0, 0.0);
        self.energy = 0.0;

        let present = |ms: f32| ms >= self.min_ms && ms >= MIN_TONE_SHARE * block_ms;
        let heard = if present(ans_ms) {
            Some(Family::Ans)
        } else if present(bell_ms) {
            Some(Family::Bell)
        } else {
            None
        };
        let max_missed = GAP_MS / BLOCK_MS;
        let detect_blocks = DETECT_MS / BLOCK_MS;

        match self.state {
            DetState::Idle => {
                if let Some(family) = heard {
                    self.history_len = 0;
                    self.env_len = 0;
                    self.env_max = 0.0;
                    self.reversal = false;
                    self.track(family, z, ans_ms);
                    self.state = DetState::Candidate {
                        family,
                        start: block_start,
                        blocks: 1,
                        missed: 0,
                    };
                }
            }
            DetState::Candidate {
                family,
                start,
                blocks,
                missed,
            } => {
                let (blocks, missed) = if heard == Some(family) {
                    self.track(family, z, ans_ms);
                    (blocks + 1, 0)
                } else {
                    (blocks, missed + 1)
                };
                self.state = if missed > max_missed {
                    DetState::Idle
                } else if blocks >= detect_blocks {
                    let tone = self.classify(family);
                    self.events
                        .push_back(AnswerToneEvent::Detected { tone, at: start });
                    DetState::Reported {
                        tone,
                        missed: 0,
                        first_missed: 0,
                    }
                } else {
                    DetState::Candidate {
                        family,
                        start,
                        blocks,
                        missed,
                    }
                };
            }
            DetState::Reported {
                tone,
                missed,
                first_missed,
            } => {
                let family = if tone == AnswerTone::Bell {
                    Family::Bell
                } else {
                    Family::Ans
                };
                self.state = if heard == Some(family) {
                    DetState::Reported {
                        tone,
                        missed: 0,
                        first_missed: 0,
                    }
                } else {
                    let first_missed = if missed == 0 {
                        block_start
                    } else {
                        first_missed
                    };
                    if missed + 1 > max_missed {
                        if self.events.len() < self.events.capacity() {
                            self.events.push_back(AnswerToneEvent::Ended {
                                tone,
                                at: first_missed,
                            });
                        }
                        DetState::Idle
                    } else {
                        DetState::Reported {
                            tone,
                            missed: missed + 1,
                            first_missed,
                        }
                    }
                };
            }
        }
    }

    /// Record a present block of the candidate tone: reversal check and envelope.
    fn track(&mut self, family: Family, z: (f32, f32), ms: f32) {
        if family != Family::Ans {
            return;
        }
        if self.history_len == 3 {
            // Predict this block's bin from two blocks back, rotated by the per-block drift
            // measured on the two blocks before that (a tone 15 Hz off 2100 Hz turns 54
            // degrees per block). A reversal inside the previous block leaves the bin ~180
            // degrees from the prediction.
            let [a, b, _] = self.history;
            let drift = mul(b, conj(a));
            let predicted = mul(b, mul(drift, drift));
            let re = z.0 * predicted.0 + z.1 * predicted.1;
            let mag = z.0.hypot(z.1) * predicted.0.hypot(predicted.1);
            if re < -0.5 * mag {
                self.reversal = true;
            }
            self.history.rotate_left(1);
            self.history[2] = z;
        } else {
            self.history[self.history_len] = z;
            self.history_len += 1;
        }
        // Envelope: a reversal can null a block; AM at 20 % never goes below 0.67 of its
        // peak, so hold the previous value for blocks under half the peak seen.
        let mut e = ms.sqrt();
        self.env_max = self.env_max.max(e);
        if e < 0.5 * self.env_max && self.env_len > 0 {
            e = self.envelope[(self.env_len - 1) % ENV_BLOCKS];
        }
        self.envelope[self.env_len % ENV_BLOCKS] = e;
        self.env_len += 1;
    }

    fn classify(&self, family: Family) -> AnswerTone {
        if family == Family::Bell {
            return AnswerTone::Bell;
        }
        let am = self.env_len >= ENV_BLOCKS && self.am_depth() >= MIN_AM_DEPTH;
        match (am, self.reversal) {
            (false, false) => AnswerTone::Ans,
            (false, true) => AnswerTone::AnsPr,
            (true, false) => AnswerTone::AnsAm,
            (true, true) => AnswerTone::AnsAmPr,
        }
    }

    /// AM depth of the last 200 ms envelope at 15 Hz: 2 |E(15 Hz)| / E(0).
    fn am_depth(&self) -> f32 {
        let mut re = 0.0f32;
        let mut im = 0.0f32;
        let mut dc = 0.0f32;
        for k in 0..ENV_BLOCKS {
            let e = self.envelope[k];
            let w = std::f32::consts::TAU * ANSAM_AM_HZ * (k as f32) * BLOCK_MS as f32 / 1000.0;
            re += e * w.cos();
            im += e * w.sin();
            dc += e;
        }
        if dc <= 0.0 {
            return 0.0;
        }
        2.0 * re.hypot(im) / dc
    }
}

fn mul(a: (f32, f32), b: (f32, f32)) -> (f32, f32) {
    (a.0 * b.0 - a.1 * b.1, a.0 * b.1 + a.1 * b.0)
}

fn conj(a: (f32, f32)) -> (f32, f32) {
    (a.0, -a.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn detect(audio: &[i16]) -> Vec<AnswerToneEvent> {
        let mut d = AnswerToneDetector::new();
        let mut ev = Vec::new();
        for c in audio.chunks(160) {
            d.push(c);
            ev.extend(std::iter::from_fn(|| d.poll_event()));
        }
        ev
    }

    /// 300 ms silence, `ms` of the tone, 300 ms silence.
    fn tone_burst(tone: AnswerTone, dbm0: f32, ms: usize) -> Vec<i16> {
        let mut g = AnswerToneGenerator::new(tone, dbm0).unwrap();
        let mut v = vec![0i16; 2400 + ms * 8 + 2400];
        g.fill(&mut v[2400..2400 + ms * 8]);
        v
    }

    #[test]
    fn each_answer_tone_is_reported_as_itself_with_its_start_and_end() {
        for tone in [
            AnswerTone::Ans,
            AnswerTone::AnsPr,
            AnswerTone::AnsAm,
            AnswerTone::AnsAmPr,
            AnswerTone::Bell,
        ] {
            let ev = detect(&tone_burst(tone, -15.0, 3000));
            assert_eq!(ev.len(), 2, "{tone:?}: {ev:?}");
            assert_eq!(ev[0], AnswerToneEvent::Detected { tone, at: 2400 });
            match ev[1] {
                AnswerToneEvent::Ended { tone: t, at } => {
                    assert_eq!(t, tone);
                    assert!((26_400..=26_480).contains(&at), "{tone:?} ended at {at}");
                }
                e => panic!("{e:?}"),
            }
        }
    }

    #[test]
    fn weak_tones_are_detected_down_to_minus_40_dbm0_and_not_below_minus_46() {
        assert_eq!(detect(&tone_burst(AnswerTone::AnsAm, -40.0, 1000)).len(), 2);
        assert!(detect(&tone_burst(AnswerTone::Ans, -46.0, 1000)).is_empty());
    }

    #[test]
    fn short_tone_bursts_are_not_answer_tones() {
        assert!(detect(&tone_burst(AnswerTone::Ans, -10.0, 300)).is_empty());
    }

    #[test]
    fn v21_and_calling_tone_are_not_answer_tones() {
        let mut ct = CallingToneGenerator::new(-10.0).unwrap();
        let mut v = vec![0i16; 8000 * 6];
        ct.fill(&mut v);
        assert!(detect(&v).is_empty());
        let mut m = super::super::fsk::FskModem::new(
            super::super::fsk::FskMode::V21Answerer,
            Default::default(),
        )
        .unwrap();
        m.write(&[0x33; 64]);
        m.fill(&mut v);
        assert!(detect(&v).is_empty());
    }

    #[test]
    fn calling_tone_has_v25_cadence() {
        let mut ct = CallingToneGenerator::new(-10.0).unwrap();
        let mut v = vec![0i16; 2 * 20_800];
        ct.fill(&mut v);
        let on = |r: std::ops::Range<usize>| v[r].iter().any(|&s| s != 0);
        assert!(on(0..4800) && !on(4800..20_800) && on(20_800..25_600));
    }

    #[test]
    fn ansam_envelope_depth_is_twenty_percent() {
        let mut g = AnswerToneGenerator::new(AnswerTone::AnsAm, -12.0).unwrap();
        let mut v = vec![0i16; 8000];
        g.fill(&mut v);
        let max = v.iter().map(|s| s.unsigned_abs()).max().unwrap() as f32;
        let want = level::sine_peak(-12.0) * 1.2;
        assert!((max - want).abs() / want < 0.01, "{max} {want}");
    }

    #[test]
    fn tone_under_noise_at_10_db_snr_is_still_classified() {
        let mut v = tone_burst(AnswerTone::AnsAmPr, -20.0, 2000);
        let mut seed = 0x1234_5678u32;
        let sigma = level::mean_square(-30.0).sqrt();
        for s in v.iter_mut() {
            // Sum of 4 uniforms ~ Gaussian (sans-IO, seeded).
            let mut g = 0.0f32;
            for _ in 0..4 {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                g += (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            }
            *s = (f32::from(*s) + g * sigma * 1.732).round() as i16;
        }
        let ev = detect(&v);
        assert!(
            matches!(
                ev.first(),
                Some(AnswerToneEvent::Detected {
                    tone: AnswerTone::AnsAmPr,
                    ..
                })
            ),
            "{ev:?}"
        );
    }

    #[test]
    fn tones_15_hz_off_nominal_keep_their_classification() {
        for tone in [
            AnswerTone::Ans,
            AnswerTone::AnsPr,
            AnswerTone::AnsAm,
            AnswerTone::AnsAmPr,
        ] {
            for offset in [-15.0, 15.0] {
                let mut g = AnswerToneGenerator::new(tone, -20.0).unwrap();
                g.step = f64::from(ANS_HZ + offset) / f64::from(SAMPLE_RATE_HZ);
                let mut v = vec![0i16; 2400 + 16_000];
                g.fill(&mut v[2400..]);
                let ev = detect(&v);
                assert_eq!(
                    ev.first(),
                    Some(&AnswerToneEvent::Detected { tone, at: 2400 }),
                    "{tone:?} {offset}"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn detection_does_not_depend_on_chunking(cuts in proptest::collection::vec(1usize..900, 1..30)) {
            let audio = tone_burst(AnswerTone::AnsPr, -20.0, 1200);
            let whole = detect(&audio);
            let mut d = AnswerToneDetector::new();
            let mut ev = Vec::new();
            let mut rest = &audio[..];
            for c in cuts.iter().cycle() {
                if rest.is_empty() { break; }
                let (h, t) = rest.split_at((*c).min(rest.len()));
                d.push(h);
                ev.extend(std::iter::from_fn(|| d.poll_event()));
                rest = t;
            }
            prop_assert_eq!(ev, whole);
        }

        #[test]
        fn detector_never_panics(s in proptest::collection::vec(any::<i16>(), 0..3000)) {
            let mut d = AnswerToneDetector::new();
            d.push(&s);
            while d.poll_event().is_some() {}
        }
    }
}
