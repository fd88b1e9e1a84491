//! Test-only helpers for the in-band DTMF tests: a G.711 codec (ITU-T G.711 §2, μ-law and
//! A-law segment tables written from the spec), a Q.23 signal generator with per-tone level
//! and frequency offset, a seeded noise source, and the spandsp `dtmf_rx` harness.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use dialback::media::inband::{
    InbandConfig, InbandDetector, InbandEvent, COL_HZ, DBM0_PEAK, ROW_HZ,
};

pub const DIGITS: &str = "123A456B789C*0#D";

/// Companding law for the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    Ulaw,
    Alaw,
}

impl Law {
    pub fn name(self) -> &'static str {
        match self {
            Law::Ulaw => "PCMU",
            Law::Alaw => "PCMA",
        }
    }

    /// Encode and decode every sample, as an RTP G.711 hop does.
    pub fn channel(self, pcm: &[i16]) -> Vec<i16> {
        pcm.iter()
            .map(|&x| match self {
                Law::Ulaw => ulaw_decode(ulaw_encode(x)),
                Law::Alaw => alaw_decode(alaw_encode(x)),
            })
            .collect()
    }
}

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

/// G.711 μ-law: bias 132, 8 segments of 16 steps, bits inverted on the line.
pub fn ulaw_encode(x: i16) -> u8 {
    let (sign, mag) = if x < 0 {
        (0x80, -i32::from(x))
    } else {
        (0x00, i32::from(x))
    };
    let v = mag.min(ULAW_CLIP) + ULAW_BIAS;
    // v is in 132..=32767: its top bit is bit 7..=14, giving segment 0..=7.
    let exp = (31 - v.leading_zeros() as i32) - 7;
    let mant = (v >> (exp + 3)) & 0x0F;
    !((sign | (exp << 4) | mant) as u8)
}

pub fn ulaw_decode(code: u8) -> i16 {
    let u = !code;
    let exp = i32::from((u >> 4) & 0x07);
    let mant = i32::from(u & 0x0F);
    let mag = (((mant << 3) + ULAW_BIAS) << exp) - ULAW_BIAS;
    (if u & 0x80 != 0 { -mag } else { mag }) as i16
}

/// G.711 A-law: 13-bit magnitude, segment 0 linear, even bits inverted on the line.
pub fn alaw_encode(x: i16) -> u8 {
    let v = i32::from(x) >> 3;
    let (sign, mag) = if v >= 0 { (0x80, v) } else { (0x00, -v - 1) };
    let (seg, mant) = if mag < 32 {
        (0, mag >> 1)
    } else {
        let seg = ((31 - mag.leading_zeros() as i32) - 4).min(7);
        (seg, (mag >> seg) & 0x0F)
    };
    ((sign | (seg << 4) | mant) as u8) ^ 0x55
}

pub fn alaw_decode(code: u8) -> i16 {
    let a = code ^ 0x55;
    let seg = i32::from((a >> 4) & 0x07);
    let mant = i32::from(a & 0x0F);
    let mag = if seg == 0 {
        (mant << 4) + 8
    } else {
        ((mant << 4) + 0x108) << (seg - 1)
    };
    (if a & 0x80 != 0 { mag } else { -mag }) as i16
}

/// Nominal (row, column) frequencies of a digit.
pub fn digit_hz(digit: char) -> (f64, f64) {
    let i = DIGITS.find(digit).expect("DTMF digit");
    (f64::from(ROW_HZ[i / 4]), f64::from(COL_HZ[i % 4]))
}

/// One Q.23 tone pair.
#[derive(Debug, Clone, Copy)]
pub struct Pair {
    pub row_hz: f64,
    pub col_hz: f64,
    pub row_dbm0: f64,
    pub col_dbm0: f64,
}

impl Pair {
    pub fn digit(digit: char, dbm0: f64) -> Self {
        let (row_hz, col_hz) = digit_hz(digit);
        Self {
            row_hz,
            col_hz,
            row_dbm0: dbm0,
            col_dbm0: dbm0,
        }
    }
}

/// Append `samples` of the pair (phases start at 0 at the pair's first sample).
pub fn push_pair(out: &mut Vec<i16>, pair: Pair, samples: usize) {
    let ar = f64::from(DBM0_PEAK) * 10f64.powf(pair.row_dbm0 / 20.0);
    let ac = f64::from(DBM0_PEAK) * 10f64.powf(pair.col_dbm0 / 20.0);
    let tau = 2.0 * std::f64::consts::PI;
    for n in 0..samples {
        let t = n as f64 / 8000.0;
        let v = ar * (tau * pair.row_hz * t).sin() + ac * (tau * pair.col_hz * t).sin();
        out.push(v.round().clamp(-32768.0, 32767.0) as i16);
    }
}

pub fn push_silence(out: &mut Vec<i16>, samples: usize) {
    out.extend(std::iter::repeat_n(0, samples));
}

pub fn ms(ms: u32) -> usize {
    ms as usize * 8
}

/// Seeded xorshift64* with Box–Muller Gaussian output (deterministic across platforms).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in (0, 1].
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    pub fn gauss(&mut self) -> f64 {
        let (u1, u2) = (self.unit(), self.unit());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Add white Gaussian noise of mean power `dbm0` (over 0–4 kHz).
pub fn add_noise(pcm: &mut [i16], dbm0: f64, rng: &mut Rng) {
    let rms = f64::from(DBM0_PEAK) / 2f64.sqrt() * 10f64.powf(dbm0 / 20.0);
    for v in pcm.iter_mut() {
        let x = f64::from(*v) + rms * rng.gauss();
        *v = x.round().clamp(-32768.0, 32767.0) as i16;
    }
}

/// Run our detector with the default config over `pcm` in 20 ms frames.
pub fn detect(pcm: &[i16]) -> Vec<InbandEvent> {
    detect_with(pcm, InbandConfig::default())
}

pub fn detect_with(pcm: &[i16], cfg: InbandConfig) -> Vec<InbandEvent> {
    let mut det = InbandDetector::new(cfg).expect("valid config");
    let mut events = Vec::new();
    for frame in pcm.chunks(160) {
        det.push(frame);
        while let Some(e) = det.poll_event() {
            events.push(e);
        }
    }
    det.finish();
    while let Some(e) = det.poll_event() {
        events.push(e);
    }
    events
}

pub fn digits(events: &[InbandEvent]) -> String {
    events.iter().map(|e| e.digit).collect()
}

/// Directory for generated reports and caches: `<target>/inband`.
pub fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("inband");
    std::fs::create_dir_all(&dir).expect("create target/inband");
    dir
}

/// Print a report and keep it under `target/inband/<name>.txt`.
pub fn report(name: &str, text: &str) {
    println!("{text}");
    std::fs::write(out_dir().join(format!("{name}.txt")), text).expect("write report");
}

/// The spandsp harness binary, built once per test process; `None` (with a message) when the
/// C compiler or spandsp headers are missing.
pub fn spandsp_harness() -> Option<&'static Path> {
    static HARNESS: OnceLock<Option<PathBuf>> = OnceLock::new();
    HARNESS
        .get_or_init(|| {
            let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/dtmf_rx_harness.c");
            let bin = out_dir().join(format!("dtmf_rx_harness-{}", std::process::id()));
            let status = Command::new("cc")
                .args(["-O2", "-o"])
                .arg(&bin)
                .arg(&src)
                .args(["-lspandsp", "-lm"])
                .status();
            match status {
                Ok(s) if s.success() => Some(bin),
                Ok(s) => {
                    eprintln!(
                        "SKIP spandsp comparison: cc failed ({s}); spandsp headers missing? \
                         (apt-get install libspandsp-dev)"
                    );
                    None
                }
                Err(e) => {
                    eprintln!("SKIP spandsp comparison: cannot run cc ({e})");
                    None
                }
            }
        })
        .as_deref()
}

/// Digits spandsp's `dtmf_rx` reports on `pcm`, or `None` when the harness is unavailable.
pub fn spandsp_digits(pcm: &[i16]) -> Option<String> {
    let bin = spandsp_harness()?;
    let mut bytes = Vec::with_capacity(pcm.len() * 2);
    for s in pcm {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    let input = out_dir().join(format!(
        "harness-in-{}-{:?}.raw",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&input, &bytes).expect("write harness input");
    let out = Command::new(bin).arg(&input).output().expect("run harness");
    let _ = std::fs::remove_file(&input);
    assert!(out.status.success(), "harness failed: {:?}", out);
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter_map(|l| l.strip_prefix("digit "))
            .filter_map(|l| l.chars().next())
            .collect(),
    )
}
