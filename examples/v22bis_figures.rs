//! Impairment figures for the V.22/V.22bis modem, ours beside spandsp 0.0.6 where possible.
//!
//! `cargo run --release --example v22bis_figures [-- quick]`
//!
//! `cargo run --release --example v22bis_figures -- ber [quick]` prints only the BER table
//! (V.22 at 5.5 dB, V.22bis at 12.5 dB, V.21 at 4 dB), ours and spandsp's side by side.
//!
//! Noise model (issue 5, "AWGN in dBm0 after G.711"), the one spandsp's own test programs use:
//! SNR = transmit power of the modem in dBm0 − total power in dBm0 of white Gaussian noise over
//! the whole 0–4 kHz band. spandsp tests/v22bis_tests.c sets the modem level with
//! `v22bis_tx_power(-13)` and the noise with `-n LEVEL` (dBm0) into the line model;
//! spandsp-sim/line_model.c feeds it to `awgn_init_dbm0`, and src/awgn.c makes that a white
//! sequence of rms 10^((LEVEL − 6.16)/20) · 32768, i.e. LEVEL is the noise's full-band power
//! on the same dBm0 scale as the signal (full-scale square = +6.16 dBm0, see
//! `dialback::modem::level`). Here the signal power is measured (mean square of each modem's
//! transmit signal during data on a clean line), and the noise is added to each sample
//! before the G.711 encoder (spandsp's line model adds half before and half after its codec;
//! at these SNRs the noise is 30 dB above the G.711 quantising noise, so the split does not
//! matter). A 3 kHz-band SNR is 1.25 dB lower than this for the same line.
//!
//! BER is measured on a scrambled-ones pattern (V.14 idle) after CONNECT: every descrambled 0
//! is an error (one line bit error costs about three, V.22bis §5 descrambler taps 14 and 17),
//! for ours and for spandsp alike (tests/c/v22bis_harness.c counts the same way).
#[path = "../tests/modem_common/mod.rs"]
mod common;
#[path = "../tests/fsk_support/mod.rs"]
mod fsk_support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use common::{Law, Rng};
use dialback::modem::fsk::{FskConfig, FskMode, FskModem};
use dialback::modem::level;
use dialback::modem::v22bis::{ModemEvent, Rate, Role, V22Config, V22bisModem};
use dialback::modem::ModemEvent as FskEvent;

const FRAME: usize = 160;
/// Half length of the drift resampler's windowed-sinc interpolator.
const SINC_HALF: usize = 16;
/// RMS of our transmitter at the default -13 dBm0.
fn dbm0_power(dbm0: f64) -> f64 {
    (16_135.0 * 10f64.powf(dbm0 / 20.0)).powi(2)
}

/// One direction of the line: optional noise, clock drift and G.711. `snr_db` is the ratio of
/// `signal_power` to the noise's total power over 0–4 kHz (spandsp's definition, module doc).
struct Path1 {
    law: Law,
    noise_rms: f64,
    /// Noise is added only while true.
    noisy: bool,
    drift_ppm: f64,
    rng: Rng,
    /// Drift resampler state.
    hist: Vec<f64>,
    pos: f64,
}

impl Path1 {
    fn new(law: Law, signal_power: f64, snr_db: Option<f64>, drift_ppm: f64, seed: u64) -> Self {
        // Full-band noise power = signal power / SNR (see the module doc).
        let noise_rms = snr_db.map_or(0.0, |s| (signal_power / 10f64.powf(s / 10.0)).sqrt());
        Path1 {
            law,
            noise_rms,
            noisy: true,
            drift_ppm,
            rng: Rng::new(seed),
            hist: Vec::new(),
            pos: 0.0,
        }
    }

    /// Carry one frame. With drift the far clock runs (1 + ppm) fast (windowed-sinc resampling).
    fn carry(&mut self, input: &[i16; FRAME], out: &mut [i16; FRAME]) {
        let mut x = [0f64; FRAME];
        if self.drift_ppm == 0.0 {
            for (o, i) in x.iter_mut().zip(input) {
                *o = f64::from(*i);
            }
        } else {
            if self.hist.is_empty() {
                // Pre-pad so the interpolator has its left half-window from the start, plus a
                // backlog (150 ms of delay) so the faster-consuming direction never starves
                // within 10 minutes at 200 ppm.
                self.hist.resize(SINC_HALF + 1200, 0.0);
                self.pos = SINC_HALF as f64;
            }
            self.hist.extend(input.iter().map(|v| f64::from(*v)));
            let step = 1.0 + self.drift_ppm * 1e-6;
            for o in x.iter_mut() {
                // Windowed-sinc fractional delay (linear interpolation would modulate the
                // 2400 Hz carrier by several dB as the fraction slides).
                let i = self.pos.floor() as usize;
                let f = self.pos - i as f64;
                let mut acc = 0.0;
                for k in 0..2 * SINC_HALF {
                    let idx = (i + k + 1).wrapping_sub(SINC_HALF);
                    let t = k as f64 + 1.0 - SINC_HALF as f64 - f;
                    let w = 0.5 + 0.5 * (std::f64::consts::PI * t / SINC_HALF as f64).cos();
                    let sinc = if t.abs() < 1e-12 {
                        1.0
                    } else {
                        (std::f64::consts::PI * t).sin() / (std::f64::consts::PI * t)
                    };
                    acc += self.hist.get(idx).copied().unwrap_or(0.0) * sinc * w;
                }
                *o = acc;
                self.pos += step;
            }
            let used = (self.pos.floor() as usize).saturating_sub(SINC_HALF);
            self.hist.drain(..used);
            self.pos -= used as f64;
        }
        for (o, v) in out.iter_mut().zip(x) {
            let n = if self.noisy && self.noise_rms > 0.0 {
                self.rng.gauss() * self.noise_rms
            } else {
                0.0
            };
            let s = (v + n).round().clamp(-32768.0, 32767.0) as i16;
            *o = self.law.decode(self.law.encode(s));
        }
    }
}

#[derive(Default, Debug)]
struct Run {
    caller_rate: Option<u32>,
    answerer_rate: Option<u32>,
    connect_s: Option<f64>,
    carrier_lost: bool,
    retrains: u64,
    /// Caller receiver: bits, errors.
    bits: u64,
    errors: u64,
    echo_sent: usize,
    echo_ok: usize,
}

struct Scenario {
    caller_rate: Rate,
    answerer_rate: Rate,
    snr_db: Option<f64>,
    drift_ppm: f64,
    loss: f64,
    seconds: f64,
    answer_tone: bool,
    /// Echo traffic (bytes) instead of idle BER measurement.
    echo_bytes: usize,
    seed: u64,
}

fn ours_vs_ours(sc: &Scenario) -> Run {
    let law = Law::Ulaw;
    let ccfg = V22Config {
        max_rate: sc.caller_rate,
        answer_tone: false,
        ..V22Config::default()
    };
    let acfg = V22Config {
        max_rate: sc.answerer_rate,
        answer_tone: sc.answer_tone,
        ..V22Config::default()
    };
    let mut c = V22bisModem::new(Role::Caller, ccfg).expect("cfg");
    let mut a = V22bisModem::new(Role::Answerer, acfg).expect("cfg");
    let p = dbm0_power(-13.0);
    let mut to_a = Path1::new(law, p, sc.snr_db, sc.drift_ppm, sc.seed * 2 + 1);
    let mut to_c = Path1::new(law, p, sc.snr_db, -sc.drift_ppm, sc.seed * 2 + 2);
    let late = std::env::var_os("V22_NOISE_LATE").is_some();
    to_a.noisy = !late;
    to_c.noisy = !late;
    let mut rng = Rng::new(sc.seed + 77);
    let mut r = Run::default();
    let (mut cb, mut ab, mut cl, mut al) =
        ([0i16; FRAME], [0i16; FRAME], [0i16; FRAME], [0i16; FRAME]);
    let payload = rng.bytes(sc.echo_bytes);
    let mut written = 0;
    let mut echo = Vec::new();
    let mut got = Vec::new();
    let mut bits_at_connect = (0, 0);
    let frames = (sc.seconds * 50.0) as usize;
    for f in 0..frames {
        c.fill(&mut cb);
        a.fill(&mut ab);
        to_a.carry(&cb, &mut cl);
        to_c.carry(&ab, &mut al);
        if sc.loss > 0.0 && (rng.next_u64() % 1_000_000) as f64 / 1e6 < sc.loss {
            a.push_lost(FRAME);
        } else {
            a.push(&cl);
        }
        if sc.loss > 0.0 && (rng.next_u64() % 1_000_000) as f64 / 1e6 < sc.loss {
            c.push_lost(FRAME);
        } else {
            c.push(&al);
        }
        while let Some(e) = c.poll_event() {
            match e {
                ModemEvent::Connected { rate_bps } => {
                    if r.caller_rate.is_none() {
                        r.connect_s = Some((f + 1) as f64 / 50.0);
                        let st = c.stats();
                        bits_at_connect = (st.data_bits, st.zero_bits);
                    }
                    r.caller_rate = Some(rate_bps);
                    to_a.noisy = true;
                    to_c.noisy = true;
                }
                ModemEvent::Data(b) => got.push(b),
                ModemEvent::CarrierLost => r.carrier_lost = true,
                _ => {}
            }
        }
        while let Some(e) = a.poll_event() {
            match e {
                ModemEvent::Connected { rate_bps } => r.answerer_rate = Some(rate_bps),
                ModemEvent::Data(b) if sc.echo_bytes > 0 => echo.push(b),
                ModemEvent::CarrierLost => r.carrier_lost = true,
                _ => {}
            }
        }
        if !echo.is_empty() {
            let n = a.write(&echo);
            echo.drain(..n);
        }
        if r.caller_rate.is_some() && written < payload.len() {
            written += c.write(&payload[written..]);
        }
    }
    let st = c.stats();
    r.bits = st.data_bits - bits_at_connect.0;
    r.errors = st.zero_bits - bits_at_connect.1;
    r.retrains = st.retrains + a.stats().retrains;
    r.echo_sent = written;
    r.echo_ok = got.iter().zip(&payload).filter(|(x, y)| x == y).count();
    r
}

fn harness() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("v22figs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let bin = dir.join("v22bis_harness");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/v22bis_harness.c");
    let ok = Command::new("cc")
        .arg("-O2")
        .arg("-o")
        .arg(&bin)
        .arg(src)
        .args(["-lspandsp", "-lm"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "cc failed");
    bin
}

struct SpanRun {
    ours: Run,
    their_connect: Option<u32>,
    their_bits: u64,
    their_errors: u64,
}

/// Our modem in `role` against spandsp; spandsp's own transmit power is measured first.
// One call site per figure; a parameter struct would only rename the same eight values.
#[allow(clippy::too_many_arguments)]
fn ours_vs_spandsp(
    bin: &Path,
    role: Role,
    snr_db: Option<f64>,
    seconds: f64,
    seed: u64,
    their_power: f64,
    their_rate: u32,
    noise_after_connect: bool,
) -> SpanRun {
    let law = Law::Ulaw;
    let cfg = V22Config {
        answer_tone: false,
        max_rate: if their_rate == 1200 {
            Rate::R1200
        } else {
            Rate::R2400
        },
        ..V22Config::default()
    };
    let mut m = V22bisModem::new(role, cfg).expect("cfg");
    let their_role = if role == Role::Caller {
        "answerer"
    } else {
        "caller"
    };
    let log = std::env::temp_dir().join(format!("v22figs-{}-{seed}.log", std::process::id()));
    let mut child: Child = Command::new(bin)
        .args([their_role, &their_rate.to_string(), "ulaw", "0"])
        .env("V22_HARNESS_NOECHO", "1")
        .args(std::env::var_os("V22_FIG_LOG").map(|_| "log"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn");
    let mut to_them = Path1::new(law, dbm0_power(-13.0), snr_db, 0.0, seed * 3 + 1);
    let mut to_us = Path1::new(law, their_power, snr_db, 0.0, seed * 3 + 2);
    to_them.noisy = !noise_after_connect;
    to_us.noisy = !noise_after_connect;
    let mut rng = Rng::new(seed);
    let delay = rng.below(4000) as usize;
    let mut line = vec![0i16; delay];
    let mut r = Run::default();
    let mut at_connect = (0, 0);
    let (mut b, mut noisy, mut theirs, mut heard) =
        ([0i16; FRAME], [0i16; FRAME], [0i16; FRAME], [0i16; FRAME]);
    for f in 0..(seconds * 50.0) as usize {
        m.fill(&mut b);
        line.extend_from_slice(&b);
        let mut send = [0i16; FRAME];
        send.copy_from_slice(&line[..FRAME]);
        line.drain(..FRAME);
        to_them.carry(&send, &mut noisy);
        let mut bytes = [0u8; FRAME];
        // Path1 already applied G.711; re-encoding a decoded value is exact.
        for (o, s) in bytes.iter_mut().zip(noisy) {
            *o = law.encode(s);
        }
        let stdin = child.stdin.as_mut().expect("stdin");
        stdin.write_all(&bytes).expect("write");
        stdin.flush().expect("flush");
        child
            .stdout
            .as_mut()
            .expect("stdout")
            .read_exact(&mut bytes)
            .expect("read");
        for (t, x) in theirs.iter_mut().zip(bytes) {
            *t = law.decode(x);
        }
        to_us.carry(&theirs, &mut heard);
        m.push(&heard);
        while let Some(e) = m.poll_event() {
            match e {
                ModemEvent::Connected { rate_bps } => {
                    if r.caller_rate.is_none() {
                        r.connect_s = Some((f + 1) as f64 / 50.0);
                        let st = m.stats();
                        at_connect = (st.data_bits, st.zero_bits);
                    }
                    r.caller_rate = Some(rate_bps);
                    to_them.noisy = true;
                    to_us.noisy = true;
                }
                ModemEvent::CarrierLost => r.carrier_lost = true,
                _ => {}
            }
        }
    }
    drop(child.stdin.take());
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    if std::env::var_os("V22_FIG_LOG").is_some() {
        eprintln!("--- spandsp {their_role} seed {seed}:\n{text}");
    }
    let st = m.stats();
    r.bits = st.data_bits - at_connect.0;
    r.errors = st.zero_bits - at_connect.1;
    let their_connect = text
        .lines()
        .find_map(|l| l.strip_prefix("CONNECT "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok());
    let field = |k: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with("DONE"))
            .and_then(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(k))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    };
    SpanRun {
        ours: r,
        their_connect,
        their_bits: field("data_bits="),
        their_errors: field("zero_bits="),
    }
}

/// Mean square of spandsp's transmit signal during data (clean run, our modem answering it).
fn spandsp_power(bin: &Path) -> f64 {
    let mut child = Command::new(bin)
        .args(["caller", "2400", "ulaw"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut m = V22bisModem::new(
        Role::Answerer,
        V22Config {
            answer_tone: false,
            ..V22Config::default()
        },
    )
    .expect("cfg");
    let (mut b, mut t) = ([0i16; FRAME], [0i16; FRAME]);
    let mut acc = 0.0;
    let mut n = 0.0;
    for f in 0..300 {
        m.fill(&mut b);
        let bytes: Vec<u8> = b.iter().map(|s| Law::Ulaw.encode(*s)).collect();
        child
            .stdin
            .as_mut()
            .expect("stdin")
            .write_all(&bytes)
            .expect("w");
        let mut inb = [0u8; FRAME];
        child
            .stdout
            .as_mut()
            .expect("stdout")
            .read_exact(&mut inb)
            .expect("r");
        for (x, y) in t.iter_mut().zip(inb) {
            *x = Law::Ulaw.decode(y);
        }
        if f >= 200 {
            acc += t.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>();
            n += FRAME as f64;
        }
        m.push(&t);
    }
    drop(child.stdin.take());
    let _ = child.wait();
    acc / n
}

fn ber(bits: u64, errors: u64) -> String {
    if bits == 0 {
        "no data".into()
    } else {
        format!("{:.1e} ({errors}/{bits})", errors as f64 / bits as f64)
    }
}

fn main() {
    let rtf_only = std::env::args().any(|a| a == "rtf");
    if let Some(snr) = std::env::args().skip_while(|a| a != "debug").nth(1) {
        let bin = harness();
        let p = spandsp_power(&bin);
        let snr: f64 = snr.parse().unwrap_or(22.5);
        for role in [Role::Caller, Role::Answerer] {
            let s = ours_vs_spandsp(&bin, role, Some(snr), 5.0, 200, p, 2400, false);
            println!(
                "{role:?}: ours {:?} theirs {:?} bits {} errors {}",
                s.ours, s.their_connect, s.their_bits, s.their_errors
            );
        }
        return;
    }
    let quick = std::env::args().any(|a| a == "quick");
    if std::env::args().any(|a| a == "ber") {
        println!("| figure | target | ours (our receiver) | spandsp 0.0.6 (its receiver) |");
        println!("|---|---|---|---|");
        ber_table(&harness(), quick);
        return;
    }
    let loss_s = if quick { 60.0 } else { 600.0 };
    let seeds = if quick { 5 } else { 20 };
    // Each cell says what it measured (BER cells: "X of ours / Y of spandsp" is the
    // column's receiver hearing our transmitter / spandsp's).
    println!("| figure | target | ours | spandsp 0.0.6 |");
    println!("|---|---|---|---|");

    // Duplex real-time factor: two modems, each transmitting and receiving, joined directly
    // (no channel model), data flowing both ways. Best of three to dodge a busy machine.
    {
        let seconds = 600usize;
        let mut best = f64::MAX;
        let mut rate = None;
        for _ in 0..3 {
            let mut c = V22bisModem::new(
                Role::Caller,
                V22Config {
                    answer_tone: false,
                    ..V22Config::default()
                },
            )
            .expect("cfg");
            let mut a = V22bisModem::new(
                Role::Answerer,
                V22Config {
                    answer_tone: false,
                    ..V22Config::default()
                },
            )
            .expect("cfg");
            let (mut cb, mut ab) = ([0i16; FRAME], [0i16; FRAME]);
            let data = [0x5au8; 64];
            let t0 = Instant::now();
            for _ in 0..seconds * 50 {
                c.fill(&mut cb);
                a.fill(&mut ab);
                c.push(&ab);
                a.push(&cb);
                while let Some(e) = c.poll_event() {
                    if let ModemEvent::Connected { rate_bps } = e {
                        rate = Some(rate_bps);
                    }
                }
                while a.poll_event().is_some() {}
                c.write(&data);
                a.write(&data);
            }
            best = best.min(t0.elapsed().as_secs_f64());
        }
        println!(
            "| duplex real-time factor per modem (1 core) | ≥ 1500× | {:.0}× ({seconds} s audio × 2 modems in {best:.3} s, connected at {rate:?}, data both ways) | |",
            2.0 * seconds as f64 / best
        );
    }

    if rtf_only {
        return;
    }
    let bin = harness();
    let their_power = spandsp_power(&bin);
    eprintln!(
        "spandsp tx power {:.1} dBm0",
        10.0 * (their_power / dbm0_power(0.0)).log10()
    );

    ber_table(&bin, quick);

    // Start-up with noise from call start.
    {
        let mut ok = 0;
        // Per role: [both at 2400, connected at 1200, no connect].
        let mut span = [[0u32; 3]; 2];
        let classify = |s: &SpanRun| match (s.ours.caller_rate, s.their_connect) {
            (Some(2400), Some(2400)) => 0,
            (Some(_), Some(_)) => 1,
            _ => 2,
        };
        for seed in 0..seeds {
            let sc = Scenario {
                caller_rate: Rate::R2400,
                answerer_rate: Rate::R2400,
                snr_db: Some(22.5),
                drift_ppm: 0.0,
                loss: 0.0,
                seconds: 8.0,
                answer_tone: true,
                echo_bytes: 0,
                seed: 100 + seed,
            };
            if ours_vs_ours(&sc).caller_rate == Some(2400) {
                ok += 1;
            }
            let s = ours_vs_spandsp(
                &bin,
                Role::Caller,
                Some(22.5),
                5.0,
                200 + seed,
                their_power,
                2400,
                false,
            );
            span[0][classify(&s)] += 1;
            let s = ours_vs_spandsp(
                &bin,
                Role::Answerer,
                Some(22.5),
                5.0,
                300 + seed,
                their_power,
                2400,
                false,
            );
            span[1][classify(&s)] += 1;
        }
        println!("| start-up at 22.5 dB, noise from call start, connect at 2400 | ≥ 19/20 | {ok}/{seeds} (with 3.3 s ANS) | 2400/1200/none: our caller vs spandsp answerer {:?}; our answerer vs spandsp caller {:?} |", span[0], span[1]);
    }

    // Connect time after the answer tone.
    {
        let sc = Scenario {
            caller_rate: Rate::R2400,
            answerer_rate: Rate::R2400,
            snr_db: None,
            drift_ppm: 0.0,
            loss: 0.0,
            seconds: 8.0,
            answer_tone: true,
            echo_bytes: 0,
            seed: 3,
        };
        let r = ours_vs_ours(&sc);
        let after = r.connect_s.map(|t| t - 3.3 - 0.075);
        let s = ours_vs_spandsp(&bin, Role::Caller, None, 5.0, 11, their_power, 2400, false);
        println!("| CONNECT time after answer tone (2400) | ≤ 2.0 s | {} | vs spandsp answerer (no ANS; from first USB1): {:?} s |", after.map_or("no connect".into(), |t| format!("{t:.2} s")), s.ours.connect_s.map(|t| t - 0.075));
    }

    // Frame loss.
    {
        let sc = Scenario {
            caller_rate: Rate::R2400,
            answerer_rate: Rate::R2400,
            snr_db: None,
            drift_ppm: 0.0,
            loss: 0.01,
            seconds: loss_s,
            answer_tone: false,
            echo_bytes: 0,
            seed: 8,
        };
        let r = ours_vs_ours(&sc);
        println!("| 1 % random 20 ms frame loss, {loss_s} s, both directions | no carrier drop | carrier lost: {}, rate {:?}, retrains {}, BER {} (a lost frame costs ≥ 48 bits) | |", r.carrier_lost, r.caller_rate, r.retrains, ber(r.bits, r.errors));
    }

    // Clock drift.
    for ppm in [200.0, -200.0] {
        let sc = Scenario {
            caller_rate: Rate::R2400,
            answerer_rate: Rate::R2400,
            snr_db: None,
            drift_ppm: ppm,
            loss: 0.0,
            seconds: loss_s,
            answer_tone: false,
            echo_bytes: 0,
            seed: 9,
        };
        let r = ours_vs_ours(&sc);
        println!("| clock drift {ppm:+} ppm (both directions), {loss_s} s | connect, no errors | rate {:?}, carrier lost {}, retrains {}, BER {} | |", r.caller_rate, r.carrier_lost, r.retrains, ber(r.bits, r.errors));
    }
}

/// The BER rows: ≥ 2·10⁶ bits per receiver for V.22/V.22bis (quick: a tenth), 10⁵ bits per
/// channel for V.21 (quick: a fifth).
fn ber_table(bin: &Path, quick: bool) {
    let scale = if quick { 0.1 } else { 1.0 };
    ber_rows(bin, Rate::R1200, 5.5, 1700.0 * scale);
    ber_rows(bin, Rate::R2400, 12.5, 850.0 * scale);
    v21_row(4.0, if quick { 2500 } else { 12_500 });
}

// ------------------------------------------------------------------ BER side by side

/// Frame at which the BER runs switch their noise on and start counting: every pair has
/// connected on the clean line by then (spandsp cannot train in noise from call start, see
/// the start-up row), so all four receivers are measured over the same stretch of line.
const NOISE_ON_FRAME: usize = 500;

/// One end of a BER link: our modem or a spandsp harness process.
trait End {
    /// Hear one frame from the line, then send one frame.
    fn step(&mut self, heard: &[i16; FRAME], out: &mut [i16; FRAME]);
    /// Called once, just before frame [`NOISE_ON_FRAME`] is stepped.
    fn start_counting(&mut self);
    /// Rate reached, bits received since counting started, bit errors among them.
    fn finish(self: Box<Self>) -> EndResult;
}

#[derive(Debug, Default, Clone, Copy)]
struct EndResult {
    rate: Option<u32>,
    bits: u64,
    errors: u64,
    retrains: u64,
    carrier_lost: bool,
}

struct OurEnd {
    m: V22bisModem,
    rate: Option<u32>,
    carrier_lost: bool,
    at_start: (u64, u64),
}

impl OurEnd {
    fn new(role: Role, rate: Rate) -> Self {
        let cfg = V22Config {
            max_rate: rate,
            answer_tone: false,
            ..V22Config::default()
        };
        OurEnd {
            m: V22bisModem::new(role, cfg).expect("cfg"),
            rate: None,
            carrier_lost: false,
            at_start: (0, 0),
        }
    }
}

impl End for OurEnd {
    fn step(&mut self, heard: &[i16; FRAME], out: &mut [i16; FRAME]) {
        self.m.push(heard);
        while let Some(e) = self.m.poll_event() {
            match e {
                ModemEvent::Connected { rate_bps } => self.rate = Some(rate_bps),
                ModemEvent::CarrierLost => self.carrier_lost = true,
                _ => {}
            }
        }
        self.m.fill(out);
    }
    fn start_counting(&mut self) {
        let st = self.m.stats();
        self.at_start = (st.data_bits, st.zero_bits);
    }
    fn finish(self: Box<Self>) -> EndResult {
        let st = self.m.stats();
        EndResult {
            rate: self.rate,
            bits: st.data_bits - self.at_start.0,
            errors: st.zero_bits - self.at_start.1,
            retrains: st.retrains,
            carrier_lost: self.carrier_lost,
        }
    }
}

struct SpanEnd {
    child: Child,
    log: PathBuf,
    law: Law,
}

impl SpanEnd {
    fn new(bin: &Path, role: Role, rate: Rate, tag: &str) -> Self {
        let law = Law::Ulaw;
        let log = std::env::temp_dir().join(format!("v22ber-{}-{tag}.log", std::process::id()));
        let role = if role == Role::Caller {
            "caller"
        } else {
            "answerer"
        };
        let child = Command::new(bin)
            .args([role, &rate.bps().to_string(), law.name(), "0"])
            .env("V22_HARNESS_NOECHO", "1")
            .env("V22_HARNESS_COUNT_FROM", NOISE_ON_FRAME.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn");
        SpanEnd { child, log, law }
    }
}

impl End for SpanEnd {
    fn step(&mut self, heard: &[i16; FRAME], out: &mut [i16; FRAME]) {
        let mut bytes = [0u8; FRAME];
        // The line model already applied G.711; re-encoding a decoded value is exact.
        for (b, s) in bytes.iter_mut().zip(heard) {
            *b = self.law.encode(*s);
        }
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(&bytes).expect("write");
        stdin.flush().expect("flush");
        self.child
            .stdout
            .as_mut()
            .expect("stdout")
            .read_exact(&mut bytes)
            .expect("read");
        for (o, b) in out.iter_mut().zip(bytes) {
            *o = self.law.decode(b);
        }
    }
    fn start_counting(&mut self) {}
    fn finish(mut self: Box<Self>) -> EndResult {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        let field = |k: &str| -> u64 {
            text.lines()
                .find(|l| l.starts_with("DONE"))
                .and_then(|l| {
                    l.split_whitespace()
                        .find_map(|w| w.strip_prefix(k))
                        .and_then(|v| v.parse().ok())
                })
                .unwrap_or(0)
        };
        EndResult {
            rate: text
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("CONNECT "))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|v| v.parse().ok()),
            bits: field("data_bits="),
            errors: field("zero_bits="),
            retrains: text.lines().filter(|l| l.contains("retrain")).count() as u64,
            carrier_lost: text.contains("carrier_down"),
        }
    }
}

/// Run a caller and an answerer against each other: clean for [`NOISE_ON_FRAME`] frames,
/// then `seconds` with noise on both directions. `power` is the (caller, answerer) transmit
/// mean square the noise is referred to. Returns (caller, answerer) results and the transmit
/// mean squares measured on the clean line during data (frames 300..500, 6–10 s after call
/// start, taken from what each end sends, after its own G.711 for spandsp).
fn ber_link(
    mut caller: Box<dyn End>,
    mut answerer: Box<dyn End>,
    power: (f64, f64),
    snr_db: f64,
    seconds: f64,
    seed: u64,
) -> (EndResult, EndResult, (f64, f64)) {
    let law = Law::Ulaw;
    let mut to_a = Path1::new(law, power.0, Some(snr_db), 0.0, seed * 2 + 1);
    let mut to_c = Path1::new(law, power.1, Some(snr_db), 0.0, seed * 2 + 2);
    to_a.noisy = false;
    to_c.noisy = false;
    let (mut c_in, mut a_in) = ([0i16; FRAME], [0i16; FRAME]);
    let (mut c_out, mut a_out) = ([0i16; FRAME], [0i16; FRAME]);
    let mut meter = (0.0f64, 0.0f64);
    for f in 0..NOISE_ON_FRAME + (seconds * 50.0) as usize {
        if f == NOISE_ON_FRAME {
            caller.start_counting();
            answerer.start_counting();
            to_a.noisy = true;
            to_c.noisy = true;
        }
        caller.step(&c_in, &mut c_out);
        answerer.step(&a_in, &mut a_out);
        if (300..NOISE_ON_FRAME).contains(&f) {
            meter.0 += c_out.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>();
            meter.1 += a_out.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>();
        }
        to_a.carry(&c_out, &mut a_in);
        to_c.carry(&a_out, &mut c_in);
    }
    let n = ((NOISE_ON_FRAME - 300) * FRAME) as f64;
    (
        caller.finish(),
        answerer.finish(),
        (meter.0 / n, meter.1 / n),
    )
}

/// Both BER figures of one rate: ours and spandsp's receivers, each hearing our transmitter
/// and spandsp's, in both directions. Prints three table rows.
fn ber_rows(bin: &Path, rate: Rate, snr_db: f64, seconds: f64) {
    let name = match rate {
        Rate::R1200 => "V.22",
        Rate::R2400 => "V.22bis",
    };
    type Pair = (Box<dyn End + Send>, Box<dyn End + Send>);
    let ours = |role| -> Box<dyn End + Send> { Box::new(OurEnd::new(role, rate)) };
    let span = |role, tag: &str| -> Box<dyn End + Send> {
        Box::new(SpanEnd::new(bin, role, rate, &format!("{name}-{tag}")))
    };
    // Clean runs: each implementation's transmit power (both roles), as the line carries it.
    let (_, _, ours_p) = ber_link(
        ours(Role::Caller),
        ours(Role::Answerer),
        (1.0, 1.0),
        0.0,
        0.0,
        0,
    );
    let (_, _, span_p) = ber_link(
        span(Role::Caller, "pc"),
        span(Role::Answerer, "pa"),
        (1.0, 1.0),
        0.0,
        0.0,
        0,
    );
    let dbm0 = |p: f64| 10.0 * (p / f64::from(level::mean_square(0.0))).log10();
    eprintln!(
        "{name}: transmit levels: ours caller {:.2} / answerer {:.2} dBm0, spandsp caller {:.2} / answerer {:.2} dBm0",
        dbm0(ours_p.0),
        dbm0(ours_p.1),
        dbm0(span_p.0),
        dbm0(span_p.1)
    );
    let links: [(Pair, (f64, f64)); 4] = [
        ((ours(Role::Caller), ours(Role::Answerer)), ours_p),
        (
            (ours(Role::Caller), span(Role::Answerer, "a")),
            (ours_p.0, span_p.1),
        ),
        (
            (span(Role::Caller, "c"), ours(Role::Answerer)),
            (span_p.0, ours_p.1),
        ),
        (
            (span(Role::Caller, "cc"), span(Role::Answerer, "aa")),
            span_p,
        ),
    ];
    // The four links are independent: run them side by side.
    let res: Vec<(EndResult, EndResult)> = std::thread::scope(|s| {
        let handles: Vec<_> = links
            .into_iter()
            .enumerate()
            .map(|(i, ((c, a), p))| {
                s.spawn(move || {
                    let (c, a, _) = ber_link(c, a, p, snr_db, seconds, 10 + i as u64);
                    (c, a)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("link thread"))
            .collect()
    });
    let (oo, os, so, ss) = (res[0], res[1], res[2], res[3]);
    for (i, (_, r)) in [
        ("ours↔ours", oo),
        ("ours↔spandsp", os),
        ("spandsp↔ours", so),
        ("spandsp↔spandsp", ss),
    ]
    .iter()
    .enumerate()
    {
        let note = |e: &EndResult| {
            format!(
                "rate {:?}, retrains {}, carrier lost {}",
                e.rate, e.retrains, e.carrier_lost
            )
        };
        eprintln!(
            "  link {i} caller/answerer: {} | {}",
            note(&r.0),
            note(&r.1)
        );
    }
    let cell = |a: &EndResult, b: &EndResult| {
        format!(
            "{} of ours / {} of spandsp",
            ber(a.bits, a.errors),
            ber(b.bits, b.errors)
        )
    };
    // Rows: caller receiving (answerer's 2400 Hz channel), answerer receiving (1200 Hz).
    println!(
        "| {name} BER at {snr_db} dB, caller receives (2400 Hz channel) | ≤ 2e-5 | {} | {} |",
        cell(&oo.0, &os.0),
        cell(&so.0, &ss.0)
    );
    println!(
        "| {name} BER at {snr_db} dB, answerer receives (1200 Hz channel) | ≤ 2e-5 | {} | {} |",
        cell(&oo.1, &so.1),
        cell(&os.1, &ss.1)
    );
    let pool = |xs: [&EndResult; 4]| {
        let bits = xs.iter().map(|e| e.bits).sum();
        let errors = xs.iter().map(|e| e.errors).sum();
        ber(bits, errors)
    };
    println!(
        "| {name} BER at {snr_db} dB, all four links pooled | ≤ 2e-5 | {} | {} |",
        pool([&oo.0, &os.0, &oo.1, &so.1]),
        pool([&so.0, &ss.0, &os.1, &ss.1])
    );
}

/// V.21 async BER at `snr_db`: our transmitter through the noisy line into our receiver and
/// into spandsp's (whose characters come back on a clean line for counting), both channels.
/// A lost or extra character counts 8 bit errors (aligned as in tests/fsk_ber.rs).
fn v21_row(snr_db: f64, chars: usize) {
    let dir = std::env::temp_dir().join(format!("v21figs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let bin = dir.join("fsk_harness");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/fsk_harness.c");
    let ok = Command::new("cc")
        .arg("-O2")
        .arg("-o")
        .arg(&bin)
        .arg(src)
        .args(["-lspandsp", "-lm"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "cc fsk_harness failed");
    let law = Law::Ulaw;
    let mut ours = (0u64, 0u64);
    let mut theirs = (0u64, 0u64);
    // Characters delivered by our receiver and echoed by spandsp's.
    let mut counts = (0usize, 0usize);
    let mut levels = Vec::new();
    for (mode, partner, seed) in [
        (FskMode::V21Caller, FskMode::V21Answerer, 1u64),
        (FskMode::V21Answerer, FskMode::V21Caller, 2),
    ] {
        let mut rng = Rng::new(seed + 40);
        let sent = rng.bytes(chars);
        // Our transmitter's power during data, measured on a clean frame of marks.
        let power = {
            let mut m = FskModem::new(mode, FskConfig::default()).expect("cfg");
            let mut b = [0i16; FRAME];
            m.fill(&mut b);
            m.fill(&mut b);
            b.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / FRAME as f64
        };
        levels.push(10.0 * (power / f64::from(level::mean_square(0.0))).log10());
        // spandsp transmits on our receive channel and receives ours.
        let ch = partner.tx_channel();
        let mut child = Command::new(&bin)
            .args([
                law.name(),
                &(ch.mark_hz as i32).to_string(),
                &(ch.space_hz as i32).to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fsk_harness");
        let mut tx = FskModem::new(mode, FskConfig::default()).expect("cfg");
        let mut rx = FskModem::new(partner, FskConfig::default()).expect("cfg");
        let mut echo_rx = FskModem::new(mode, FskConfig::default()).expect("cfg");
        let mut line = Path1::new(law, power, Some(snr_db), 0.0, seed * 7);
        let (mut got, mut echoed) = (Vec::new(), Vec::new());
        let (mut b, mut noisy, mut back) = ([0i16; FRAME], [0i16; FRAME], [0i16; FRAME]);
        let mut written = 0;
        // 0.5 s of marks first, then the characters, then 2 s for the echo to drain.
        let frames = 25 + chars * 10 * 50 / 300 + 150;
        for f in 0..frames {
            if f >= 25 {
                written += tx.write(&sent[written..]);
            }
            tx.fill(&mut b);
            line.carry(&b, &mut noisy);
            rx.push(&noisy);
            while let Some(e) = rx.poll_event() {
                if let FskEvent::Data(x) = e {
                    got.push(x);
                }
            }
            let mut bytes = [0u8; FRAME];
            for (o, s) in bytes.iter_mut().zip(noisy) {
                *o = law.encode(s);
            }
            let stdin = child.stdin.as_mut().expect("stdin");
            stdin.write_all(&bytes).expect("write");
            stdin.flush().expect("flush");
            child
                .stdout
                .as_mut()
                .expect("stdout")
                .read_exact(&mut bytes)
                .expect("read");
            for (o, x) in back.iter_mut().zip(bytes) {
                *o = law.decode(x);
            }
            echo_rx.push(&back);
            while let Some(e) = echo_rx.poll_event() {
                if let FskEvent::Data(x) = e {
                    echoed.push(x);
                }
            }
        }
        drop(child.stdin.take());
        let _ = child.wait();
        ours.0 += fsk_support::aligned_bit_errors(&sent, &got);
        ours.1 += 8 * chars as u64;
        theirs.0 += fsk_support::aligned_bit_errors(&sent, &echoed);
        theirs.1 += 8 * chars as u64;
        counts.0 += got.len();
        counts.1 += echoed.len();
    }
    eprintln!(
        "V.21: our transmit levels ch1 {:.2} / ch2 {:.2} dBm0",
        levels[0], levels[1]
    );
    println!(
        "| V.21 async BER at {snr_db} dB (both channels) | ≤ 1e-4 | {} ({} of {} chars) | {} of ours ({} of {} chars) |",
        ber(ours.1, ours.0),
        counts.0,
        2 * chars,
        ber(theirs.1, theirs.0),
        counts.1,
        2 * chars
    );
}
