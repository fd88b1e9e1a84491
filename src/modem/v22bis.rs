//! ITU-T V.22 (1200 bit/s DPSK) and V.22bis (2400 bit/s 16-QAM) duplex modem, both roles.
//!
//! Owns: the transmitter (V.22bis §2: carriers 1200 Hz low channel / 2400 Hz high channel,
//! 600 baud, RRC shaping with 75 % roll-off, optional 550/1800 Hz guard tone from the
//! answerer), the receiver (matched filter, Gardner symbol timing, T/2 LMS equaliser,
//! decision-directed carrier PLL, V.22bis §5 descrambler), the start-up and retrain handshake
//! of V.22bis §6.3 (with the §6.3.1.2 fallback to V.22 when the far end sends no S1), the V.25
//! answer tone (2100 Hz, 3.3 s, optional) and V.14 start-stop framing of the data.
//!
//! Sans-IO: 8 kHz `i16` samples in through [`V22bisModem::push`] / [`V22bisModem::push_lost`],
//! out through [`V22bisModem::fill`]; time is counted in samples and symbols only. Results do
//! not depend on how the sample stream is chunked. Nothing allocates after construction.

use std::collections::VecDeque;
use std::f32::consts::PI;

use thiserror::Error;

use super::equalizer::Equalizer;
use super::qam::{
    dibit_of_step, phase_step, point, slice16, slice4, Cpx, RxFront, TxShaper, BITS_1200,
    MEAN_POINT_ENERGY, SAMPLE_RATE_HZ,
};
use super::scrambler::{Descrambler, Scrambler};
use super::v14::{CharFormat, V14Rx, V14Tx};

/// Low channel carrier (calling modem transmits), V.22bis §2.1.
pub const LOW_CARRIER_HZ: f32 = 1200.0;
/// High channel carrier (answering modem transmits), V.22bis §2.1.
pub const HIGH_CARRIER_HZ: f32 = 2400.0;
/// V.25 answer tone.
pub const ANSWER_TONE_HZ: f32 = 2100.0;

const fn ms_to_symbols(ms: u32) -> u32 {
    ms * 600 / 1000
}
const fn ms_to_samples(ms: u32) -> u32 {
    ms * 8
}

/// V.25: answer tone (ANS) duration 3.3 s.
const ANSWER_TONE_SAMPLES: u32 = ms_to_samples(3300);
/// V.25: 75 ms silence between the answer tone and the modem signal.
const POST_ANSWER_TONE_SAMPLES: u32 = ms_to_samples(75);
/// V.22bis §6.3.1.1.1 b): 155 ms of unscrambled binary 1 qualifies the answerer.
const USB1_DETECT_SYMBOLS: u32 = ms_to_symbols(155);
/// V.22bis §6.3.1.1.1 b): then 456 ms of silence before the caller transmits.
const CALLER_SILENCE_SYMBOLS: u32 = ms_to_symbols(456);
/// V.22bis §6.3.1.1: S1 lasts 100 ms.
const S1_SYMBOLS: u32 = ms_to_symbols(100);
/// Alternations of 00/11 needed to accept S1 during the handshake (about 60 are sent; the
/// answerer loses some to acquisition).
const S1_MIN_REPEATS: u32 = 12;
/// Alternations needed to accept S1 as a retrain request during data (random data makes long
/// 00/11 alternations vanishingly rare).
const S1_RETRAIN_REPEATS: u32 = 30;
/// V.22bis §6.3.1.1.1 d): 600 ms after circuit 112 ON, scrambled ones at 2400 bit/s.
const TO_2400_SYMBOLS: u32 = ms_to_symbols(600);
/// V.22bis §6.3.1.1.1 d): 16-way decisions may begin 450 ms after circuit 112 ON.
const SIXTEEN_WAY_SYMBOLS: u32 = ms_to_symbols(450);
/// V.22bis §6.3.1.1.1 e): 200 ms of scrambled ones at 2400 bit/s.
const ONES_2400_SYMBOLS: u32 = ms_to_symbols(200);
/// V.22bis §6.3.1.1.1 f): 32 consecutive ones at 2400 bit/s mean the far end is in data.
const ONES_TO_CONNECT: u32 = 32;
/// V.22bis §6.3.1.2: 270 ms of scrambled 1 (or 0) at 1200 bit/s without S1 → V.22.
const V22_DETECT_SYMBOLS: u32 = ms_to_symbols(270);
/// V.22bis §6.3.1.2: 765 ms of scrambled ones before data at 1200 bit/s.
const V22_TAIL_SYMBOLS: u32 = ms_to_symbols(765);
/// Retrains that may fail in a row before the link is reported lost.
const MAX_RETRAIN_ATTEMPTS: u32 = 2;
/// Give up waiting for the far end's 2400 bit/s ones after this long and enter data anyway.
const WAIT_2400_TIMEOUT_SYMBOLS: u32 = ms_to_symbols(1500);

/// Circuit 109 thresholds of V.22/V.22bis: ON above -43 dBm0, OFF below -48 dBm0.
const CARRIER_ON_DBM0: f32 = -43.0;
const CARRIER_OFF_DBM0: f32 = -48.0;
/// Silence shorter than this is bridged (a gap, not a hang-up); longer means carrier lost.
const CARRIER_OFF_HOLD_MS: u32 = 300;
/// RMS of a 0 dBm0 signal in 16-bit linear samples (full-scale square = +6.16 dBm0, G.711).
const DBM0_RMS: f32 = 16_135.0;

/// A rise of the in-band power by this factor (9 dB) before the handshake restarts acquisition.
const ONSET_POWER_RATIO: f32 = 8.0;
/// A received level more than 3 dB off the AGC's for this long (100 ms) is taken as the new
/// line level rather than a fade.
const LEVEL_STEP_HALF_BAUDS: u32 = 120;
/// Symbols after carrier-on with fast timing/phase/gain acquisition.
const ACQUISITION_SYMBOLS: u32 = 40;
/// Equaliser LMS step sizes (signal normalised to mean point energy 10, 17 taps).
const EQ_MU_TRAIN: f32 = 0.003;
const EQ_MU_DATA: f32 = 0.0003;
/// Gardner loop gains, samples of correction per unit normalised timing error.
const TIMING_STEP_ACQ: f64 = 0.5;
const TIMING_GAIN_TRACK: f64 = 0.02;
const TIMING_INTEGRAL: f64 = 0.0005;
/// Carrier PLL gains (proportional, integral) per symbol.
const PLL_ACQ: (f32, f32) = (0.25, 0.01);
const PLL_TRACK: (f32, f32) = (0.03, 0.000_3);
/// Normalised mean square decision error above which a 2400 bit/s link asks for a retrain,
/// once it has lasted `RETRAIN_POOR_SYMBOLS` (300 ms).
const RETRAIN_MSE: f32 = 0.08;
const RETRAIN_POOR_SYMBOLS: u32 = ms_to_symbols(300);

/// Bytes accepted by [`V22bisModem::write`] before back-pressure.
pub const TX_QUEUE_BYTES: usize = 4096;
/// Events held before the oldest are dropped (the caller must poll).
const EVENT_QUEUE: usize = 8192;

/// Which end of the call this modem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Originating modem: transmits in the low channel (1200 Hz).
    Caller,
    /// Answering modem: transmits in the high channel (2400 Hz).
    Answerer,
}

/// Data signalling rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// V.22 / V.22bis fallback, 4-phase DPSK.
    R1200,
    /// V.22bis 16-QAM.
    R2400,
}

impl Rate {
    /// Bits per second.
    pub fn bps(self) -> u32 {
        match self {
            Rate::R1200 => 1200,
            Rate::R2400 => 2400,
        }
    }
}

/// Answerer guard tone (V.22/V.22bis guard tones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GuardTone {
    /// No guard tone (default).
    #[default]
    None,
    /// 550 Hz, 3 dB below the data signal.
    Hz550,
    /// 1800 Hz, 6 dB below the data signal.
    Hz1800,
}

/// Modem configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct V22Config {
    /// Highest rate offered; `R1200` behaves as a V.22 modem (no S1).
    pub max_rate: Rate,
    /// Guard tone sent by the answerer.
    pub guard_tone: GuardTone,
    /// Total transmit level, dBm0 (-43..=0).
    pub tx_level_dbm0: f32,
    /// Answerer only: send the V.25 answer tone before the handshake (off when the harness
    /// or the telephony layer already did).
    pub answer_tone: bool,
    /// V.14 character format.
    pub char_format: CharFormat,
}

impl Default for V22Config {
    fn default() -> Self {
        Self {
            max_rate: Rate::R2400,
            guard_tone: GuardTone::None,
            tx_level_dbm0: -13.0,
            answer_tone: true,
            char_format: CharFormat::default(),
        }
    }
}

/// What the modem reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModemEvent {
    /// The far carrier was detected.
    CarrierUp,
    /// Handshake complete, data flows both ways (circuit 109 ON and 106 ready).
    Connected {
        /// 1200 or 2400.
        rate_bps: u32,
    },
    /// A received character.
    Data(u8),
    /// A retrain started (either end asked); data pauses until `Connected` again.
    Retrain,
    /// The far carrier stayed below the off threshold for too long.
    CarrierLost,
}

/// Configuration errors of the modem layer.
#[derive(Debug, Error, PartialEq)]
pub enum V22Error {
    /// The transmit level is outside what G.711 can carry sensibly.
    #[error("transmit level {dbm0} dBm0 outside -43..=0 dBm0")]
    TxLevelOutOfRange {
        /// The level asked for.
        dbm0: f32,
    },
}

/// Transmitter segments of the V.22bis §6.3 sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxSeg {
    Silence,
    AnswerTone {
        left: u32,
    },
    PostAnswerTone {
        left: u32,
    },
    /// Caller's timed silence after qualifying USB1.
    Wait {
        left: u32,
    },
    UnscrambledOnes,
    S1 {
        left: u32,
    },
    Ones1200 {
        left: Option<u32>,
    },
    Ones2400 {
        left: u32,
    },
    Data,
}

/// Receiver stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RxStage {
    /// No carrier.
    Idle,
    /// Caller: looking for 155 ms of unscrambled ones.
    HuntUsb1,
    /// Caller: waiting for the unscrambled ones to end.
    Usb1Sustain {
        history: u8,
    },
    /// Looking for S1 or for scrambled ones at 1200 bit/s (V.22).
    Hunt1200 {
        symbols: u32,
    },
    /// Circuit 112 ON: counting to the 16-way decision point.
    After112 {
        symbols: u32,
    },
    /// Waiting for 32 ones at 2400 bit/s.
    WaitOnes2400 {
        symbols: u32,
    },
    /// V.22 answerer: timed scrambled ones before data.
    WaitV22 {
        left: u32,
    },
    Data,
}

/// A V.22bis (and V.22) modem.
#[derive(Debug)]
pub struct V22bisModem {
    role: Role,
    cfg: V22Config,
    /// Negotiated rate (1200 until S1 is exchanged).
    rate: Rate,
    connected: bool,
    /// Set once `CarrierLost` was reported: silent and deaf from then on.
    finished: bool,
    events: VecDeque<ModemEvent>,
    tx: Tx,
    rx: Rx,
    tx_queue: VecDeque<u8>,
    stats: RxStats,
}

/// Receive counters, for diagnostics and bit-error measurements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxStats {
    /// Descrambled bits delivered to the V.14 layer while connected.
    pub data_bits: u64,
    /// How many of those were 0. While the far end idles (V.14 idle is binary 1, scrambled
    /// on the line) this is the bit error count of a scrambled-ones test pattern.
    pub zero_bits: u64,
    /// Retrains started by either end.
    pub retrains: u64,
}

#[derive(Debug)]
struct Tx {
    seg: TxSeg,
    /// Segment that follows S1.
    after_s1: TxSeg,
    shaper: TxShaper,
    gain: f32,
    quadrant: u8,
    s1_phase: bool,
    scrambler: Scrambler,
    v14: V14Tx,
    ans_table: Vec<f32>,
    ans_idx: usize,
    guard_table: Vec<f32>,
    guard_idx: usize,
}

#[derive(Debug)]
struct Rx {
    front: RxFront,
    eq: Equalizer,
    stage: RxStage,
    carrier_on: bool,
    off_half_bauds: u32,
    det_power: f32,
    fast_power: f32,
    level_step_half_bauds: u32,
    mid_power: f32,
    level_ref: f32,
    poor_symbols: u32,
    sym_power: f32,
    agc_gain: f32,
    /// True when the next T/2 sample is a symbol instant.
    on_symbol: bool,
    prev_sym: Cpx,
    mid: Cpx,
    timing_integral: f64,
    theta: f32,
    freq: f32,
    quadrant: u8,
    sixteen_way: bool,
    descrambler: Descrambler,
    v14: V14Rx,
    symbols_since_carrier: u32,
    last_dibit: u8,
    s1_run: u32,
    same_dibit_run: u32,
    ones_run: u32,
    zeros_run: u32,
    /// T/2 samples still affected by a lost-frame fill (no adaptation, no detection).
    erased: u32,
    mse: f32,
    /// This end sent S1 and waits for the far end's S1 (caller, or retrain initiator).
    awaiting_s1: bool,
    retraining: bool,
    failed_retrains: u32,
}

impl V22bisModem {
    /// A modem in its initial state: the answerer starts with the answer tone (or unscrambled
    /// ones), the caller listens.
    pub fn new(role: Role, cfg: V22Config) -> Result<Self, V22Error> {
        if !(-43.0..=0.0).contains(&cfg.tx_level_dbm0) {
            return Err(V22Error::TxLevelOutOfRange {
                dbm0: cfg.tx_level_dbm0,
            });
        }
        let (tx_carrier, rx_carrier) = match role {
            Role::Caller => (LOW_CARRIER_HZ, HIGH_CARRIER_HZ),
            Role::Answerer => (HIGH_CARRIER_HZ, LOW_CARRIER_HZ),
        };
        let shaper = TxShaper::new(tx_carrier);
        let total_power = (DBM0_RMS * 10f32.powf(cfg.tx_level_dbm0 / 20.0)).powi(2);
        // Guard tone 3 dB (550 Hz) or 6 dB (1800 Hz) below the data signal (V.22bis), the
        // total staying at the nominal level.
        let guard = if role == Role::Answerer {
            cfg.guard_tone
        } else {
            GuardTone::None
        };
        let (guard_hz, guard_rel) = match guard {
            GuardTone::None => (0.0, 0.0),
            GuardTone::Hz550 => (550.0, 10f32.powf(-0.3)),
            GuardTone::Hz1800 => (1800.0, 10f32.powf(-0.6)),
        };
        let signal_power = total_power / (1.0 + guard_rel);
        let gain = (signal_power / (MEAN_POINT_ENERGY * shaper.unit_power())).sqrt();
        let guard_amp = (2.0 * signal_power * guard_rel).sqrt();
        // 550 Hz repeats every 160 samples, 1800 Hz every 40, 2100 Hz every 80.
        let guard_table = if guard_hz > 0.0 {
            tone_table(guard_hz, 160, guard_amp)
        } else {
            Vec::new()
        };
        let ans_table = tone_table(ANSWER_TONE_HZ, 80, (2.0 * total_power).sqrt());
        let seg = match role {
            Role::Caller => TxSeg::Silence,
            Role::Answerer if cfg.answer_tone => TxSeg::AnswerTone {
                left: ANSWER_TONE_SAMPLES,
            },
            Role::Answerer => TxSeg::PostAnswerTone {
                left: POST_ANSWER_TONE_SAMPLES,
            },
        };
        Ok(Self {
            role,
            cfg,
            rate: Rate::R1200,
            connected: false,
            finished: false,
            events: VecDeque::with_capacity(EVENT_QUEUE),
            tx: Tx {
                seg,
                after_s1: TxSeg::Ones1200 { left: None },
                shaper,
                gain,
                quadrant: 0,
                s1_phase: false,
                scrambler: Scrambler::new(),
                v14: V14Tx::new(cfg.char_format),
                ans_table,
                ans_idx: 0,
                guard_table,
                guard_idx: 0,
            },
            rx: Rx {
                front: RxFront::new(rx_carrier),
                eq: Equalizer::new(),
                stage: RxStage::Idle,
                carrier_on: false,
                off_half_bauds: 0,
                det_power: 0.0,
                fast_power: 0.0,
                level_step_half_bauds: 0,
                mid_power: 0.0,
                level_ref: 0.0,
                poor_symbols: 0,
                sym_power: 0.0,
                agc_gain: 1.0,
                on_symbol: false,
                prev_sym: Cpx::default(),
                mid: Cpx::default(),
                timing_integral: 0.0,
                theta: 0.0,
                freq: 0.0,
                quadrant: 0,
                sixteen_way: false,
                descrambler: Descrambler::new(),
                v14: V14Rx::new(cfg.char_format),
                symbols_since_carrier: 0,
                last_dibit: 0,
                s1_run: 0,
                same_dibit_run: 0,
                ones_run: 0,
                zeros_run: 0,
                erased: 0,
                mse: 0.0,
                awaiting_s1: false,
                retraining: false,
                failed_retrains: 0,
            },
            tx_queue: VecDeque::with_capacity(TX_QUEUE_BYTES),
            stats: RxStats::default(),
        })
    }

    /// The negotiated rate once connected.
    pub fn rate(&self) -> Option<Rate> {
        self.connected.then_some(self.rate)
    }

    /// Queue bytes for transmission; returns how many were accepted (back-pressure when the
    /// queue is full).
    pub fn write(&mut self, data: &[u8]) -> usize {
        let room = TX_QUEUE_BYTES - self.tx_queue.len();
        let n = room.min(data.len());
        self.tx_queue.extend(&data[..n]);
        n
    }

    /// Receive counters.
    pub fn stats(&self) -> RxStats {
        self.stats
    }

    /// Bytes queued but not yet sent.
    pub fn pending(&self) -> usize {
        self.tx_queue.len()
    }

    /// Next event, if any.
    pub fn poll_event(&mut self) -> Option<ModemEvent> {
        self.events.pop_front()
    }

    /// Ask the far end for a retrain (V.22bis: S1 sent during data, then the §6.3 sequence).
    pub fn request_retrain(&mut self) {
        if self.connected && self.rate == Rate::R2400 {
            self.start_retrain(true);
        }
    }

    /// Generate line samples.
    pub fn fill(&mut self, out: &mut [i16]) {
        for o in out.iter_mut() {
            let v = self.tx_sample();
            *o = v.round().clamp(-32768.0, 32767.0) as i16;
        }
        self.check_connected();
    }

    /// Process received line samples.
    pub fn push(&mut self, samples: &[i16]) {
        for &s in samples {
            if let Some(y) = self.rx.front.push(f32::from(s)) {
                self.half_baud(y);
            }
        }
        self.check_connected();
    }

    /// Account for `n_samples` that never arrived (a lost RTP frame): the symbol clock and
    /// carrier phase keep running, nothing adapts and the carrier is not declared lost.
    pub fn push_lost(&mut self, n_samples: usize) {
        // The matched filter spans 108 samples (16 T/2 intervals) beyond the hole.
        let n = u32::try_from(n_samples).unwrap_or(u32::MAX);
        self.rx.erased = self.rx.erased.saturating_add(n / 6 + 18);
        for _ in 0..n_samples {
            if let Some(y) = self.rx.front.push(0.0) {
                self.half_baud(y);
            }
        }
        self.check_connected();
    }

    fn emit(&mut self, ev: ModemEvent) {
        if self.events.len() >= EVENT_QUEUE {
            self.events.pop_front();
        }
        self.events.push_back(ev);
    }

    fn check_connected(&mut self) {
        if !self.connected && self.rx.stage == RxStage::Data && self.tx.seg == TxSeg::Data {
            self.connected = true;
            self.rx.retraining = false;
            self.emit(ModemEvent::Connected {
                rate_bps: self.rate.bps(),
            });
        }
    }

    // ---------------------------------------------------------------- transmitter

    fn tx_sample(&mut self) -> f32 {
        match self.tx.seg {
            TxSeg::AnswerTone { left } => {
                self.tx.seg = if left <= 1 {
                    TxSeg::PostAnswerTone {
                        left: POST_ANSWER_TONE_SAMPLES,
                    }
                } else {
                    TxSeg::AnswerTone { left: left - 1 }
                };
                let v = self
                    .tx
                    .ans_table
                    .get(self.tx.ans_idx)
                    .copied()
                    .unwrap_or(0.0);
                self.tx.ans_idx = (self.tx.ans_idx + 1) % self.tx.ans_table.len().max(1);
                return v;
            }
            TxSeg::PostAnswerTone { left } => {
                // V.22bis §6.3.1.1.2 a): after the answer sequence, unscrambled binary 1.
                self.tx.seg = if left <= 1 {
                    TxSeg::UnscrambledOnes
                } else {
                    TxSeg::PostAnswerTone { left: left - 1 }
                };
                return 0.0;
            }
            _ => {}
        }
        if self.tx.shaper.advance() {
            let s = self.tx_symbol();
            self.tx.shaper.push_symbol(s);
        }
        let mut v = self.tx.shaper.sample() * self.tx.gain;
        if !self.tx.guard_table.is_empty() && !self.tx.shaper.quiet() {
            v += self.tx.guard_table[self.tx.guard_idx];
            self.tx.guard_idx = (self.tx.guard_idx + 1) % self.tx.guard_table.len();
        }
        v
    }

    fn scrambled_bits(&mut self, n: u32) -> u8 {
        let mut bits = 0u8;
        for _ in 0..n {
            let b = if self.tx.seg == TxSeg::Data {
                let queue = &mut self.tx_queue;
                self.tx.v14.next_bit(|| queue.pop_front())
            } else {
                1
            };
            bits = (bits << 1) | self.tx.scrambler.scramble(b);
        }
        bits
    }

    /// The next transmitted symbol, advancing the V.22bis §6.3 segment sequence.
    fn tx_symbol(&mut self) -> Cpx {
        match self.tx.seg {
            TxSeg::Silence | TxSeg::AnswerTone { .. } | TxSeg::PostAnswerTone { .. } => {
                Cpx::default()
            }
            TxSeg::Wait { left } => {
                self.tx.seg = if left > 1 {
                    TxSeg::Wait { left: left - 1 }
                } else if self.cfg.max_rate == Rate::R2400 {
                    self.tx.after_s1 = TxSeg::Ones1200 { left: None };
                    self.rx.awaiting_s1 = true;
                    TxSeg::S1 { left: S1_SYMBOLS }
                } else {
                    TxSeg::Ones1200 { left: None }
                };
                Cpx::default()
            }
            TxSeg::UnscrambledOnes => {
                // Dibit 11 → +270° every symbol.
                self.tx.quadrant = (self.tx.quadrant + phase_step(0b11)) & 3;
                point(self.tx.quadrant, BITS_1200)
            }
            TxSeg::S1 { left } => {
                // Unscrambled double dibit 00, 11 (V.22bis §6.3.1.1.1 b).
                let dibit = if self.tx.s1_phase { 0b11 } else { 0b00 };
                self.tx.s1_phase = !self.tx.s1_phase;
                self.tx.quadrant = (self.tx.quadrant + phase_step(dibit)) & 3;
                self.tx.seg = if left > 1 {
                    TxSeg::S1 { left: left - 1 }
                } else {
                    self.tx.after_s1
                };
                point(self.tx.quadrant, BITS_1200)
            }
            TxSeg::Ones1200 { left } => {
                let dibit = self.scrambled_bits(2);
                self.tx.quadrant = (self.tx.quadrant + phase_step(dibit)) & 3;
                if let Some(left) = left {
                    self.tx.seg = if left > 1 {
                        TxSeg::Ones1200 {
                            left: Some(left - 1),
                        }
                    } else if self.rate == Rate::R2400 {
                        TxSeg::Ones2400 {
                            left: ONES_2400_SYMBOLS,
                        }
                    } else {
                        TxSeg::Data
                    };
                }
                point(self.tx.quadrant, BITS_1200)
            }
            TxSeg::Ones2400 { left } => {
                let dibit = self.scrambled_bits(2);
                let bits = self.scrambled_bits(2);
                self.tx.quadrant = (self.tx.quadrant + phase_step(dibit)) & 3;
                self.tx.seg = if left > 1 {
                    TxSeg::Ones2400 { left: left - 1 }
                } else {
                    TxSeg::Data
                };
                point(self.tx.quadrant, bits)
            }
            TxSeg::Data => {
                let dibit = self.scrambled_bits(2);
                self.tx.quadrant = (self.tx.quadrant + phase_step(dibit)) & 3;
                let bits = if self.rate == Rate::R2400 {
                    self.scrambled_bits(2)
                } else {
                    BITS_1200
                };
                point(self.tx.quadrant, bits)
            }
        }
    }

    // ---------------------------------------------------------------- receiver

    fn half_baud(&mut self, y_raw: Cpx) {
        // V.25: the answerer listens only once its answer sequence is over. After the link
        // was lost this modem is finished.
        if self.finished
            || matches!(
                self.tx.seg,
                TxSeg::AnswerTone { .. } | TxSeg::PostAnswerTone { .. }
            )
        {
            return;
        }
        let erased = self.rx.erased > 0;
        if erased {
            self.rx.erased -= 1;
        } else {
            self.carrier_detect(y_raw);
        }
        if self.rx.stage == RxStage::Idle {
            return;
        }
        // A fade (the start of a gap, or its end) must not train anything: compare a short
        // power average with the AGC's long one.
        self.rx.fast_power += (y_raw.norm_sqr() - self.rx.fast_power) / 4.0;
        // Line noise above the -43 dBm0 threshold turns the detector on before the far
        // modem starts; its real onset is then a large power step. Re-acquire on it while
        // still looking for the first signal of the handshake.
        if !erased
            && self.rx.fast_power > ONSET_POWER_RATIO * self.rx.sym_power
            && matches!(self.rx.stage, RxStage::HuntUsb1 | RxStage::Hunt1200 { .. })
            && !self.rx.retraining
            && !self.rx.awaiting_s1
        {
            self.carrier_up(y_raw);
        }
        // A level step that persists is a new line level, not a fade: re-level the AGC. The
        // 32-interval average is steady enough to compare against 3 dB.
        self.rx.mid_power += (y_raw.norm_sqr() - self.rx.mid_power) / 32.0;
        let ratio = self.rx.fast_power / self.rx.sym_power.max(1e-6);
        let mid_ratio = self.rx.mid_power / self.rx.sym_power.max(1e-6);
        let mid_dbm0 = 10.0
            * (2.0 * self.rx.mid_power / (DBM0_RMS * DBM0_RMS))
                .max(1e-12)
                .log10();
        if !erased
            && self.rx.off_half_bauds == 0
            && mid_dbm0 > CARRIER_ON_DBM0
            && !(0.5..=2.0).contains(&mid_ratio)
        {
            // The new level must also hold still: a decaying one is a gap starting.
            let drift = self.rx.mid_power / self.rx.level_ref.max(1e-6);
            if self.rx.level_step_half_bauds == 0 || !(0.7..=1.4).contains(&drift) {
                self.rx.level_ref = self.rx.mid_power;
                self.rx.level_step_half_bauds = 0;
            }
            self.rx.level_step_half_bauds += 1;
            if self.rx.level_step_half_bauds >= LEVEL_STEP_HALF_BAUDS {
                self.rx.sym_power = self.rx.mid_power.max(1e-6);
                self.rx.agc_gain = (MEAN_POINT_ENERGY / self.rx.sym_power).sqrt();
                self.rx.level_step_half_bauds = 0;
                self.rx.mse = 0.0;
            }
        } else {
            self.rx.level_step_half_bauds = 0;
        }
        let present = !erased
            && self.rx.off_half_bauds == 0
            && (self.rx.symbols_since_carrier < ACQUISITION_SYMBOLS || ratio > 0.25);
        let y = y_raw.scale(self.rx.agc_gain);
        self.rx.eq.push(y);
        self.rx.on_symbol = !self.rx.on_symbol;
        if !self.rx.on_symbol {
            self.rx.mid = y;
            return;
        }
        let acquiring = self.rx.symbols_since_carrier < ACQUISITION_SYMBOLS;
        self.rx.symbols_since_carrier = self.rx.symbols_since_carrier.saturating_add(1);
        if present {
            // AGC on the symbol instants: fast while acquiring, slow once 16-way decisions run.
            let a = if acquiring {
                0.1
            } else if self.rx.sixteen_way {
                1.0 / 2048.0
            } else {
                1.0 / 256.0
            };
            self.rx.sym_power += a * (y_raw.norm_sqr() - self.rx.sym_power);
            if self.rx.sym_power > 0.0 {
                self.rx.agc_gain = (MEAN_POINT_ENERGY / self.rx.sym_power).sqrt();
            }
            // Gardner timing error detector on the T/2 samples (normalised by the AGC target).
            let e = (y - self.rx.prev_sym) * self.rx.mid.conj();
            let ted = f64::from(e.re / MEAN_POINT_ENERGY).clamp(-2.0, 2.0);
            // A positive error means we sample late: bring the next instant forward. While
            // acquiring, a fixed-size (sign) step leaves the unstable mid-symbol equilibrium
            // quickly, as S1 has an equilibrium there too.
            let n = self.rx.symbols_since_carrier;
            let step = if n < ACQUISITION_SYMBOLS / 2 {
                TIMING_STEP_ACQ * ted.signum()
            } else if acquiring {
                0.3 * TIMING_STEP_ACQ * ted.signum()
            } else {
                self.rx.timing_integral =
                    (self.rx.timing_integral + TIMING_INTEGRAL * ted).clamp(-0.05, 0.05);
                TIMING_GAIN_TRACK * ted + self.rx.timing_integral
            };
            self.rx.front.adjust(-step);
        }
        self.rx.prev_sym = y;

        let z = self.rx.eq.output() * Cpx::expj(-self.rx.theta);
        let (quadrant, bits, target) = if self.rx.sixteen_way {
            slice16(z)
        } else {
            let (q, p) = slice4(z);
            (q, BITS_1200, p)
        };
        let err = target - z;
        if present {
            let (kp, ki) = if acquiring { PLL_ACQ } else { PLL_TRACK };
            let pe = (z.im * target.re - z.re * target.im) / target.norm_sqr().max(1e-6);
            self.rx.freq = (self.rx.freq + ki * pe).clamp(-0.2, 0.2);
            self.rx.theta += kp * pe + self.rx.freq;
            if self.rx.theta > PI {
                self.rx.theta -= 2.0 * PI;
            } else if self.rx.theta < -PI {
                self.rx.theta += 2.0 * PI;
            }
            if !acquiring && self.eq_adapts() {
                let mu = if self.rx.stage == RxStage::Data {
                    EQ_MU_DATA
                } else {
                    EQ_MU_TRAIN
                };
                self.rx.eq.update(err * Cpx::expj(self.rx.theta), mu);
            }
            self.rx.mse += (err.norm_sqr() / MEAN_POINT_ENERGY - self.rx.mse) / 64.0;
        }
        let step = quadrant.wrapping_sub(self.rx.quadrant) & 3;
        self.rx.quadrant = quadrant;
        self.rx_symbol(dibit_of_step(step), bits, present);
    }

    fn eq_adapts(&self) -> bool {
        !matches!(
            self.rx.stage,
            RxStage::Idle | RxStage::HuntUsb1 | RxStage::Usb1Sustain { .. }
        )
    }

    fn carrier_detect(&mut self, y_raw: Cpx) {
        // Mean square of the matched-filter output is half the in-band line power.
        self.rx.det_power += (y_raw.norm_sqr() - self.rx.det_power) / 24.0;
        let line_dbm0 = 10.0
            * (2.0 * self.rx.det_power / (DBM0_RMS * DBM0_RMS))
                .max(1e-12)
                .log10();
        if !self.rx.carrier_on {
            if line_dbm0 > CARRIER_ON_DBM0 {
                self.rx.carrier_on = true;
                self.rx.off_half_bauds = 0;
                self.carrier_up(y_raw);
            }
            return;
        }
        if line_dbm0 < CARRIER_OFF_DBM0 {
            self.rx.off_half_bauds += 1;
            if self.rx.off_half_bauds >= CARRIER_OFF_HOLD_MS * 6 / 5 {
                self.carrier_down();
            }
        } else {
            self.rx.off_half_bauds = 0;
        }
    }

    fn carrier_up(&mut self, y_raw: Cpx) {
        let rx = &mut self.rx;
        rx.eq.reset();
        rx.theta = 0.0;
        rx.freq = 0.0;
        rx.timing_integral = 0.0;
        let reacquire = rx.stage != RxStage::Idle;
        rx.sym_power = y_raw.norm_sqr().max(rx.fast_power).max(1.0);
        rx.fast_power = rx.sym_power;
        rx.mid_power = rx.sym_power;
        rx.agc_gain = (MEAN_POINT_ENERGY / rx.sym_power).sqrt();
        rx.symbols_since_carrier = 0;
        rx.sixteen_way = false;
        rx.s1_run = 0;
        rx.same_dibit_run = 0;
        rx.ones_run = 0;
        rx.zeros_run = 0;
        rx.mse = 0.0;
        rx.v14.reset();
        rx.stage = match self.role {
            Role::Caller => RxStage::HuntUsb1,
            Role::Answerer => RxStage::Hunt1200 { symbols: 0 },
        };
        if !reacquire {
            self.emit(ModemEvent::CarrierUp);
        }
    }

    /// The far modem is there but the link cannot be restored: report it as lost.
    fn link_failed(&mut self) {
        self.finished = true;
        self.rx.stage = RxStage::Idle;
        self.rx.retraining = false;
        self.connected = false;
        self.tx.seg = TxSeg::Silence;
        self.emit(ModemEvent::CarrierLost);
    }

    fn carrier_down(&mut self) {
        self.rx.carrier_on = false;
        self.rx.off_half_bauds = 0;
        self.rx.stage = RxStage::Idle;
        if self.connected || self.rx.retraining {
            // The call is over for this modem: stop talking (a new call needs a new modem).
            self.finished = true;
            self.connected = false;
            self.rx.retraining = false;
            self.tx.seg = TxSeg::Silence;
            self.emit(ModemEvent::CarrierLost);
        } else {
            // The handshake never completed: start it again from the top (caller silent and
            // listening, answerer sending unscrambled ones), V.22bis §6.3.1.1 a).
            self.rate = Rate::R1200;
            self.rx.awaiting_s1 = false;
            self.rx.sixteen_way = false;
            match self.role {
                Role::Caller => self.tx.seg = TxSeg::Silence,
                Role::Answerer => {
                    if !matches!(
                        self.tx.seg,
                        TxSeg::AnswerTone { .. } | TxSeg::PostAnswerTone { .. }
                    ) {
                        self.tx.seg = TxSeg::UnscrambledOnes;
                    }
                }
            }
        }
    }

    fn start_retrain(&mut self, initiator: bool) {
        // V.22bis retrain: S1, scrambled ones at 1200 bit/s, then as in the §6.3 start-up. Timing,
        // equaliser and carrier phase are kept: they are still close.
        self.stats.retrains += 1;
        self.connected = false;
        self.rx.retraining = true;
        self.rx.v14.reset();
        self.tx.s1_phase = false;
        self.tx.seg = TxSeg::S1 { left: S1_SYMBOLS };
        if initiator {
            // The far end keeps sending data until it has seen our S1: stay on 16-way
            // decisions (S1 is still recognisable from the quadrant changes).
            self.tx.after_s1 = TxSeg::Ones1200 { left: None };
            self.rx.awaiting_s1 = true;
            self.rx.stage = RxStage::Hunt1200 { symbols: 0 };
        } else {
            self.tx.after_s1 = TxSeg::Ones1200 {
                left: Some(TO_2400_SYMBOLS - S1_SYMBOLS),
            };
            self.rx.awaiting_s1 = false;
            self.rx.sixteen_way = false;
            self.rx.stage = RxStage::After112 { symbols: 0 };
        }
        self.emit(ModemEvent::Retrain);
    }

    /// Per-symbol handshake logic and data delivery.
    fn rx_symbol(&mut self, dibit: u8, bits: u8, present: bool) {
        // Descramble every bit so the descrambler is in sync whenever data starts.
        let nbits = if self.rx.sixteen_way { 4 } else { 2 };
        let quad = (u16::from(dibit) << 2) | u16::from(bits);
        let mut out = [0u8; 4];
        for (i, o) in out.iter_mut().enumerate().take(nbits) {
            let line = if nbits == 4 {
                (quad >> (3 - i)) & 1
            } else {
                (u16::from(dibit) >> (1 - i)) & 1
            };
            let b = self.rx.descrambler.descramble(line as u8);
            *o = b;
            if b == 1 {
                self.rx.ones_run += 1;
                self.rx.zeros_run = 0;
            } else {
                self.rx.zeros_run += 1;
                self.rx.ones_run = 0;
            }
        }
        // S1: alternating dibits 00/11 (XOR = 11).
        let mut s1_ended = 0;
        if (self.rx.last_dibit ^ dibit) == 0b11 {
            self.rx.s1_run += 1;
        } else {
            if self.rx.last_dibit == 0b00 || self.rx.last_dibit == 0b11 {
                s1_ended = self.rx.s1_run;
            }
            self.rx.s1_run = 0;
        }
        if dibit == self.rx.last_dibit {
            self.rx.same_dibit_run += 1;
        } else {
            self.rx.same_dibit_run = 0;
        }
        self.rx.last_dibit = dibit;

        // Caller: the answerer went back to unscrambled binary 1 (it lost our carrier and
        // restarted, V.22bis §6.3.1.1.2 a): follow it into a new handshake.
        if self.role == Role::Caller
            && self.rx.same_dibit_run >= USB1_DETECT_SYMBOLS
            && (dibit == 0b11 || dibit == 0b00)
            && matches!(
                self.rx.stage,
                RxStage::Hunt1200 { .. }
                    | RxStage::After112 { .. }
                    | RxStage::WaitOnes2400 { .. }
                    | RxStage::Data
            )
        {
            if self.connected {
                self.connected = false;
                self.emit(ModemEvent::Retrain);
            }
            self.rate = Rate::R1200;
            self.rx.sixteen_way = false;
            self.rx.awaiting_s1 = false;
            self.rx.retraining = false;
            self.rx.v14.reset();
            self.tx.seg = TxSeg::Wait {
                left: CALLER_SILENCE_SYMBOLS,
            };
            self.rx.stage = RxStage::Usb1Sustain { history: 0 };
            return;
        }
        match self.rx.stage {
            RxStage::Idle => {}
            RxStage::HuntUsb1 => {
                // Unscrambled 1 (or 0): the same dibit 11 (or 00) every symbol.
                if present
                    && (dibit == 0b11 || dibit == 0b00)
                    && self.rx.same_dibit_run >= USB1_DETECT_SYMBOLS
                {
                    self.tx.seg = TxSeg::Wait {
                        left: CALLER_SILENCE_SYMBOLS,
                    };
                    self.rx.stage = RxStage::Usb1Sustain { history: 0 };
                }
            }
            RxStage::Usb1Sustain { history } => {
                let history = ((history << 1) | u8::from(self.rx.same_dibit_run == 0)) & 0x0f;
                self.rx.stage = if history.count_ones() >= 2 {
                    RxStage::Hunt1200 { symbols: 0 }
                } else {
                    RxStage::Usb1Sustain { history }
                };
            }
            RxStage::Hunt1200 { symbols } => {
                let symbols = symbols + 1;
                self.rx.stage = RxStage::Hunt1200 { symbols };
                if s1_ended >= S1_MIN_REPEATS && self.cfg.max_rate == Rate::R2400 {
                    // Circuit 112 ON at the end of S1.
                    self.rate = Rate::R2400;
                    if self.rx.awaiting_s1 {
                        self.tx.seg = TxSeg::Ones1200 {
                            left: Some(TO_2400_SYMBOLS),
                        };
                    } else {
                        // V.22bis §6.3.1.1.2 b): answer with S1, then scrambled ones.
                        self.tx.s1_phase = false;
                        self.tx.seg = TxSeg::S1 { left: S1_SYMBOLS };
                        self.tx.after_s1 = TxSeg::Ones1200 {
                            left: Some(TO_2400_SYMBOLS - S1_SYMBOLS),
                        };
                    }
                    self.rx.awaiting_s1 = false;
                    self.rx.sixteen_way = false;
                    self.rx.stage = RxStage::After112 { symbols: 0 };
                } else if symbols >= V22_DETECT_SYMBOLS
                    && !self.rx.retraining
                    && self.rx.s1_run < 4
                    && self.rx.same_dibit_run < 10
                    && (self.rx.ones_run >= ONES_TO_CONNECT
                        || (self.role == Role::Answerer && self.rx.zeros_run >= ONES_TO_CONNECT))
                {
                    // V.22bis §6.3.1.2: the far end is a V.22 modem.
                    self.rate = Rate::R1200;
                    self.rx.awaiting_s1 = false;
                    self.tx.seg = TxSeg::Ones1200 {
                        left: Some(V22_TAIL_SYMBOLS),
                    };
                    self.rx.stage = match self.role {
                        Role::Caller => RxStage::Data,
                        Role::Answerer => RxStage::WaitV22 {
                            left: V22_TAIL_SYMBOLS,
                        },
                    };
                }
            }
            RxStage::After112 { symbols } => {
                let symbols = symbols + 1;
                if symbols >= SIXTEEN_WAY_SYMBOLS {
                    self.rx.sixteen_way = true;
                    self.rx.stage = RxStage::WaitOnes2400 { symbols: 0 };
                } else {
                    self.rx.stage = RxStage::After112 { symbols };
                }
            }
            RxStage::WaitOnes2400 { symbols } => {
                let symbols = symbols + 1;
                // Unscrambled ones also descramble to ones: insist on a scrambled line signal.
                if self.rx.ones_run >= ONES_TO_CONNECT && self.rx.same_dibit_run < 8 {
                    self.rx.failed_retrains = 0;
                    self.rx.stage = RxStage::Data;
                } else if symbols < WAIT_2400_TIMEOUT_SYMBOLS {
                    self.rx.stage = RxStage::WaitOnes2400 { symbols };
                } else if !self.rx.retraining {
                    // Start-up: the far end may simply have missed the 32 ones; go ahead.
                    self.rx.stage = RxStage::Data;
                } else if self.rx.failed_retrains < MAX_RETRAIN_ATTEMPTS {
                    // The far end never came back at 2400 bit/s: ask again.
                    self.rx.failed_retrains += 1;
                    self.start_retrain(true);
                } else {
                    // Delivering 16-way decisions of whatever it sends would be garbage.
                    self.link_failed();
                }
            }
            RxStage::WaitV22 { left } => {
                self.rx.stage = if left > 1 {
                    RxStage::WaitV22 { left: left - 1 }
                } else {
                    RxStage::Data
                };
            }
            RxStage::Data => {
                if self.rate == Rate::R2400 && s1_ended >= S1_RETRAIN_REPEATS {
                    self.start_retrain(false);
                    return;
                }
                if self.connected {
                    for &b in out.iter().take(nbits) {
                        self.stats.data_bits += 1;
                        self.stats.zero_bits += u64::from(b == 0);
                        if let Some(c) = self.rx.v14.push_bit(b) {
                            self.emit(ModemEvent::Data(c));
                        }
                    }
                    // Only a lasting bad eye asks for a retrain; not while a level step is
                    // being taken up (the AGC fixes that by itself, and a retrain started with
                    // the wrong gain can miss the far end's S1).
                    if present && self.rx.mse > RETRAIN_MSE {
                        self.rx.poor_symbols += 1;
                    } else {
                        self.rx.poor_symbols = 0;
                    }
                    if self.rate == Rate::R2400
                        && self.rx.level_step_half_bauds == 0
                        && self.rx.poor_symbols >= RETRAIN_POOR_SYMBOLS
                        && self.tx.seg == TxSeg::Data
                    {
                        self.rx.mse = 0.0;
                        self.rx.poor_symbols = 0;
                        self.start_retrain(true);
                    }
                }
            }
        }
    }
}

fn tone_table(freq_hz: f32, period: usize, amplitude: f32) -> Vec<f32> {
    (0..period)
        .map(|n| amplitude * (2.0 * PI * freq_hz * n as f32 / SAMPLE_RATE_HZ).sin())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_pair(
        caller_cfg: V22Config,
        answerer_cfg: V22Config,
        seconds: u32,
    ) -> (V22bisModem, V22bisModem, Vec<ModemEvent>, Vec<ModemEvent>) {
        let mut c = V22bisModem::new(Role::Caller, caller_cfg).unwrap();
        let mut a = V22bisModem::new(Role::Answerer, answerer_cfg).unwrap();
        let mut ce = Vec::new();
        let mut ae = Vec::new();
        let mut buf_c = [0i16; 160];
        let mut buf_a = [0i16; 160];
        for _ in 0..seconds * 50 {
            c.fill(&mut buf_c);
            a.fill(&mut buf_a);
            c.push(&buf_a);
            a.push(&buf_c);
            while let Some(e) = c.poll_event() {
                ce.push(e);
            }
            while let Some(e) = a.poll_event() {
                ae.push(e);
            }
        }
        (c, a, ce, ae)
    }

    #[test]
    fn linear_pair_connects_at_2400() {
        let cfg = V22Config {
            answer_tone: false,
            ..V22Config::default()
        };
        let (_, _, ce, ae) = run_pair(cfg, cfg, 6);
        assert!(
            ce.contains(&ModemEvent::Connected { rate_bps: 2400 }),
            "caller {ce:?}"
        );
        assert!(
            ae.contains(&ModemEvent::Connected { rate_bps: 2400 }),
            "answerer {ae:?}"
        );
    }

    #[test]
    fn out_of_range_level_is_rejected() {
        let cfg = V22Config {
            tx_level_dbm0: 3.0,
            ..V22Config::default()
        };
        assert_eq!(
            V22bisModem::new(Role::Caller, cfg).err(),
            Some(V22Error::TxLevelOutOfRange { dbm0: 3.0 })
        );
    }
}
