//! Issue 5, "Bad input": the gate's calling modem link on a callback answered by something
//! that is not the administrator's modem — silence, noise, speech, DTMF, a fax machine (CED
//! then V.21 channel-2 HDLC flags, or its CNG), a wrong-band modem (another V.21 caller, a
//! Bell 103 originate modem), or a real V.22bis or V.21 answerer that hangs up mid handshake.
//! No panic, no CONNECT, bounded queues: the session's
//! `modem.connect_timeout_s` timer then ends the call with `session.end:modem_training_failed`.
//!
//! - `pure_link_*`: the pure [`Link`] (default list `[v22bis, v22, v21, bell103]`, the gate's
//!   -12 dBm0) fed 20 ms frames through G.711 μ-law for the 20 s connect window plus 5 s,
//!   simulated time. `cargo test --release --test modem_bad_line -- --nocapture` prints the
//!   table (case, outcome, attempts with their times, time of the last event).
//! - `live_*`: a real callback through Kamailio answered by a SIPp phone whose RTP the test
//!   plays (espeak-ng speech with `modem.connect_timeout_s` 5; a fax answerer, CED then V.21
//!   flags, with 10): the audit's `session.end:modem_training_failed` within the bound, no
//!   `modem.connect`, and the phone gets the BYE.
//!
//! The fax answerer's flags sit in V.21 channel 2, the band the V.21 attempt listens to: before
//! this test the link connected to them (and to -20 dBm0 noise, and to V.21 channel-1 or Bell
//! 103 originate callers leaking through the channel filter) as V.21. The link now requires
//! the far carrier to be steady mark (no start bit) for its connect guard, so none of them
//! connects; genuine V.21 and Bell 103 answerers (controls) still do.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dialback::media::dtmf::Digit;
use dialback::media::g711::Law;
use dialback::media::rtp::{RtpSendStream, Ssrc};
use dialback::media::tones::{self, dtmf_sequence, DtmfToneSpec, Segment, SineGenerator};
use dialback::modem::fsk::{FskChannel, FskTx, BELL103_ORIGINATE, V21_CH1, V21_CH2};
use dialback::modem::link::{Link, LinkConfig, LinkEvent, Modulation};
use dialback::modem::uart::UartConfig;
use dialback::modem::v22bis::Role;
use serde_json::json;
use support::gate_pbx;

/// 20 ms at 8 kHz.
const FRAME: usize = 160;
/// The default `modem.connect_timeout_s` (20 s) plus 5 s of margin.
const WINDOW_MS: u64 = 25_000;
/// The gate's default transmit level (`modem.tx_level_dbm0`).
const GATE_TX_DBM0: f32 = -12.0;
/// Largest transmit queue of any modem the link runs (`v22bis::TX_QUEUE_BYTES`).
const TX_QUEUE_MAX: usize = 4096;

/// The far end: given what the gate sent this frame, what the gate hears.
type Far = Box<dyn FnMut(&[i16], &mut [i16])>;

/// The gate's link: the dialplan's default modulations, calling.
fn gate_link() -> Link {
    use Modulation::*;
    Link::new(&LinkConfig {
        role: Role::Caller,
        modulations: vec![V22bis, V22, V21, Bell103],
        tx_level_dbm0: GATE_TX_DBM0,
    })
    .expect("the default link builds")
}

/// What one run saw.
struct Run {
    /// (ms, event), `Data` counted instead of listed.
    events: Vec<(u64, LinkEvent)>,
    data_bytes: usize,
    max_tx_pending: usize,
}

impl Run {
    fn connected(&self) -> Option<(u64, Modulation, u32)> {
        self.events.iter().find_map(|(t, e)| match e {
            LinkEvent::Connected {
                modulation,
                rate_bps,
            } => Some((*t, *modulation, *rate_bps)),
            _ => None,
        })
    }

    fn carrier_lost(&self) -> bool {
        self.events
            .iter()
            .any(|(_, e)| matches!(e, LinkEvent::CarrierLost))
    }

    fn outcome(&self) -> String {
        match self.connected() {
            Some((t, m, r)) => format!("CONNECT {} {r} at {t} ms", m.name()),
            None if self.carrier_lost() => "carrier lost, no CONNECT".to_owned(),
            None => "no carrier (no CONNECT)".to_owned(),
        }
    }

    fn attempts(&self) -> String {
        self.events
            .iter()
            .filter_map(|(t, e)| match e {
                LinkEvent::Trying { modulation } => Some(format!("{}@{t}", modulation.name())),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn last_event_ms(&self) -> u64 {
        self.events.last().map_or(0, |(t, _)| *t)
    }
}

/// Run the gate's link against `far` for `ms`, through μ-law both ways, writing console
/// output into the link every frame (as a source would: only what `write` takes is taken).
fn run(mut far: Far, ms: u64) -> Run {
    let mut link = gate_link();
    let mut tx = [0i16; FRAME];
    let mut rx = [0i16; FRAME];
    let mut out = Run {
        events: Vec::new(),
        data_bytes: 0,
        max_tx_pending: 0,
    };
    let law = Law::Ulaw;
    let junk = [b'x'; 64];
    for frame in 0..ms / 20 {
        let now = (frame + 1) * 20;
        link.write(&junk);
        link.fill(&mut tx);
        for s in tx.iter_mut() {
            *s = law.decode(law.encode(*s));
        }
        far(&tx, &mut rx);
        for s in rx.iter_mut() {
            *s = law.decode(law.encode(*s));
        }
        link.push(&rx);
        out.max_tx_pending = out.max_tx_pending.max(link.tx_pending());
        while let Some(e) = link.poll_event() {
            match e {
                LinkEvent::Data(_) => out.data_bytes += 1,
                e => out.events.push((now, e)),
            }
        }
    }
    out
}

// ---- far ends ------------------------------------------------------------------------------

fn silence() -> Far {
    Box::new(|_, out| out.fill(0))
}

/// Gaussian white noise at `dbm0` (RMS), seeded xorshift + Box–Muller.
fn white_noise(dbm0: f64, seed: u64) -> Far {
    let rms = tones::dbm0_to_peak(dbm0) / std::f64::consts::SQRT_2;
    let mut state = seed | 1;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    Box::new(move |_, out| {
        for s in out.iter_mut() {
            let (u1, u2) = (uniform(), uniform());
            let g = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            *s = (g * rms).round().clamp(-32767.0, 32767.0) as i16;
        }
    })
}

/// `far` plus white noise at `dbm0`.
fn noisy(mut far: Far, dbm0: f64) -> Far {
    let mut noise = white_noise(dbm0, 0x0dd5);
    let mut n = [0i16; FRAME];
    Box::new(move |heard, out| {
        far(heard, out);
        noise(heard, &mut n[..out.len()]);
        for (o, x) in out.iter_mut().zip(n.iter()) {
            *o = o.saturating_add(*x);
        }
    })
}

/// Loop `pcm` forever.
fn looped(pcm: Vec<i16>) -> Far {
    assert!(!pcm.is_empty());
    let mut at = 0usize;
    Box::new(move |_, out| {
        for s in out.iter_mut() {
            *s = pcm[at];
            at = (at + 1) % pcm.len();
        }
    })
}

/// English speech from espeak-ng (22.05 kHz WAV), resampled to 8 kHz 16-bit by sox.
fn speech() -> Vec<i16> {
    const TEXT: &str = "Hello, this is the front desk of the maintenance centre. \
        Nobody here is expecting a modem call, I am afraid. Could you tell me who is calling \
        and what number you were trying to reach? Our office hours are from nine to five, \
        Monday to Friday. If this is about the backup system, please call back tomorrow \
        morning and ask for extension four two one seven. Hello? Are you still there? \
        I can hear some clicking on the line. I am going to hang up now. Goodbye.";
    let dir = tempfile::tempdir().expect("temp dir");
    let wav = dir.path().join("speech.wav");
    let raw = dir.path().join("speech.raw");
    let ok = Command::new("espeak-ng")
        .args(["-v", "en", "-s", "160", "-w"])
        .arg(&wav)
        .arg(TEXT)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "espeak-ng failed or missing (apt-get install espeak-ng)"
    );
    let ok = Command::new("sox")
        .arg(&wav)
        .args([
            "-t",
            "raw",
            "-r",
            "8000",
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed-integer",
        ])
        .arg(&raw)
        .args(["norm", "-3"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "sox failed or missing (apt-get install sox)");
    let bytes = std::fs::read(&raw).expect("read speech");
    let pcm: Vec<i16> = bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert!(
        pcm.len() > 8000 * 10,
        "speech too short: {} samples",
        pcm.len()
    );
    pcm
}

/// All sixteen DTMF digits, 100 ms on / 100 ms off, -8 dBm0 low group (Q.23 pairs).
fn dtmf() -> Vec<i16> {
    let digits: Vec<Digit> = "123A456B789C*0#D"
        .chars()
        .filter_map(Digit::from_char)
        .collect();
    let mut seq = dtmf_sequence(&digits, DtmfToneSpec::default());
    let mut pcm = vec![0i16; seq.len_samples() as usize];
    seq.fill(&mut pcm);
    pcm
}

/// T.30 CNG: 1100 Hz, 0.5 s on, 3 s off.
fn fax_cng() -> Vec<i16> {
    let mut seq = tones::ToneSequence::new(vec![
        Segment::tone(1100.0, -12.0, 500),
        Segment::silence(3000),
    ]);
    let mut pcm = vec![0i16; seq.len_samples() as usize];
    seq.fill(&mut pcm);
    pcm
}

/// Synchronous FSK of a repeating bit pattern (HDLC has no start/stop bits), phase-continuous.
struct SyncFsk {
    sine: SineGenerator,
    channel: FskChannel,
    bits: Vec<bool>,
    index: usize,
    clock: u32,
}

impl SyncFsk {
    fn new(channel: FskChannel, dbm0: f64, byte: u8) -> Self {
        // HDLC sends each octet least significant bit first.
        let bits = (0..8).map(|i| byte >> i & 1 == 1).collect();
        let mut s = SyncFsk {
            sine: SineGenerator::new(f64::from(channel.mark_hz), dbm0),
            channel,
            bits,
            index: 0,
            clock: 0,
        };
        s.retune();
        s
    }

    fn retune(&mut self) {
        let hz = if self.bits[self.index] {
            self.channel.mark_hz
        } else {
            self.channel.space_hz
        };
        self.sine.set_frequency(f64::from(hz));
    }

    fn fill(&mut self, out: &mut [i16]) {
        for s in out.iter_mut() {
            self.sine.fill(std::slice::from_mut(s));
            self.clock += self.channel.baud;
            if self.clock >= 8000 {
                self.clock -= 8000;
                self.index = (self.index + 1) % self.bits.len();
                self.retune();
            }
        }
    }
}

/// A fax answerer (T.30): CED 2100 Hz for 3 s, 75 ms of silence, then V.21 channel-2 HDLC
/// flags 0x7E at 300 bit/s, synchronous (`sync`) or, as our UART would send them, with
/// start and stop bits.
fn fax_answerer(sync: bool) -> Far {
    let ced = 3000 * 8;
    let gap = 75 * 8;
    let mut ced_tone = SineGenerator::new(2100.0, -12.0);
    let mut flags = SyncFsk::new(V21_CH2, -12.0, 0x7e);
    let mut uart = FskTx::new(V21_CH2, -12.0, UartConfig::default()).expect("V.21 transmitter");
    let mut n = 0usize;
    Box::new(move |_, out| {
        for s in out.iter_mut() {
            let one = std::slice::from_mut(s);
            if n < ced {
                ced_tone.fill(one);
            } else if n < ced + gap {
                one[0] = 0;
            } else if sync {
                flags.fill(one);
            } else {
                uart.fill(one, || Some(0x7e));
            }
            n += 1;
        }
    })
}

/// Another calling modem on `channel`, typing at once (async 8N1 characters).
fn fsk_caller(channel: FskChannel) -> Far {
    let mut tx = FskTx::new(channel, -12.0, UartConfig::default()).expect("transmitter");
    let text = b"ATZ\rAT&F\rATDT5551234\r".to_vec();
    let mut at = 0usize;
    Box::new(move |_, out| {
        tx.fill(out, || {
            let c = text[at];
            at = (at + 1) % text.len();
            Some(c)
        })
    })
}

/// A genuine V.22bis answering link that hears the gate and goes silent (hangs up) after
/// `hang_up_ms`; `None`: never.
fn v22bis_answerer(hang_up_ms: Option<u64>) -> Far {
    answerer(Modulation::V22bis, hang_up_ms)
}

/// A genuine answering link of `modulation`, hanging up after `hang_up_ms`.
fn answerer(modulation: Modulation, hang_up_ms: Option<u64>) -> Far {
    let mut a = Link::new(&LinkConfig {
        role: Role::Answerer,
        modulations: vec![modulation],
        tx_level_dbm0: -13.0,
    })
    .expect("answerer");
    let mut elapsed = 0u64;
    Box::new(move |heard, out| {
        if hang_up_ms.is_some_and(|h| elapsed >= h) {
            out.fill(0);
        } else {
            a.push(heard);
            a.fill(out);
            while a.poll_event().is_some() {}
        }
        elapsed += (out.len() / 8) as u64;
    })
}

// ---- the table -----------------------------------------------------------------------------

#[test]
fn pure_link_bad_lines_never_connect_and_stay_bounded() {
    let started = Instant::now();
    let speech = speech();
    let cases: Vec<(&str, Far)> = vec![
        ("silence", silence()),
        ("white noise -20 dBm0", white_noise(-20.0, 0x5eed)),
        ("speech (espeak-ng en)", looped(speech)),
        ("DTMF 16 digits", looped(dtmf())),
        ("fax CNG 1100 Hz", looped(fax_cng())),
        ("V.21 ch1 caller", fsk_caller(V21_CH1)),
        ("Bell 103 originate", fsk_caller(BELL103_ORIGINATE)),
        ("V.22bis hangs up 2.5 s", v22bis_answerer(Some(2_500))),
        ("V.22bis hangs up 4.0 s", v22bis_answerer(Some(4_000))),
        ("V.22bis hangs up 4.6 s", v22bis_answerer(Some(4_600))),
        ("fax CED + sync flags", fax_answerer(true)),
        ("fax CED + async 0x7E", fax_answerer(false)),
        (
            "V.21 hangs up 3.0 s",
            answerer(Modulation::V21, Some(3_000)),
        ),
        (
            "V.21 hangs up 3.5 s",
            answerer(Modulation::V21, Some(3_500)),
        ),
        // In the gate's V.21 connect guard (its V.21 attempt starts at 6.34 s).
        (
            "V.21 hangs up 6.6 s",
            answerer(Modulation::V21, Some(6_600)),
        ),
        // Controls: the same harness with a modem that stays connects.
        ("control: V.22bis answerer", v22bis_answerer(None)),
        ("control: V.21 answerer", answerer(Modulation::V21, None)),
        (
            "control: Bell 103 answerer",
            answerer(Modulation::Bell103, None),
        ),
        // The steady-mark guard under line noise (answerers at -13 dBm0).
        (
            "control: V.21 answerer + noise -30 dBm0",
            noisy(answerer(Modulation::V21, None), -30.0),
        ),
        (
            "control: Bell 103 answerer + noise -30 dBm0",
            noisy(answerer(Modulation::Bell103, None), -30.0),
        ),
        (
            "control: V.21 answerer + noise -20 dBm0",
            noisy(answerer(Modulation::V21, None), -20.0),
        ),
        (
            "control: Bell 103 answerer + noise -20 dBm0",
            noisy(answerer(Modulation::Bell103, None), -20.0),
        ),
    ];
    println!(
        "{:<44} {:<34} {:<40} {:>8} {:>6}",
        "case", "outcome", "attempts (ms)", "last ms", "data"
    );
    let mut failures = Vec::new();
    for (name, far) in cases {
        let r = run(far, WINDOW_MS);
        println!(
            "{:<44} {:<34} {:<40} {:>8} {:>6}",
            name,
            r.outcome(),
            r.attempts(),
            r.last_event_ms(),
            r.data_bytes
        );
        if r.max_tx_pending > TX_QUEUE_MAX {
            failures.push(format!("{name}: tx_pending reached {}", r.max_tx_pending));
        }
        let trying = r
            .events
            .iter()
            .filter(|(_, e)| matches!(e, LinkEvent::Trying { .. }))
            .count();
        // [v22bis, v22] is one attempt: three in all.
        if trying > 3 {
            failures.push(format!("{name}: {trying} attempts"));
        }
        let connected = r.connected();
        if let Some(want) = name.strip_prefix("control: ") {
            match connected {
                Some((_, m, _)) if want.starts_with(m.name()) => {}
                _ => failures.push(format!("{name}: the control did not connect")),
            }
        } else if let Some((t, m, rate)) = connected {
            failures.push(format!("{name}: CONNECT {} {rate} at {t} ms", m.name()));
        }
        if connected.is_none() && r.data_bytes > 0 {
            failures.push(format!("{name}: data without CONNECT"));
        }
    }
    println!(
        "(simulated {} s per case, {:?} wall)",
        WINDOW_MS / 1000,
        started.elapsed()
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

// ---- live: a callback answered by speech ---------------------------------------------------

/// What the talking phone saw of the gate's RTP.
struct Heard {
    /// The gate's first RTP packet (the call is answered, its link started).
    first: Option<Instant>,
    /// Its last packet.
    last: Option<Instant>,
    sent: usize,
}

/// Play `pcm` (looped) as 20 ms PCMU packets to whoever sends RTP to `socket` first, until
/// that peer has been silent for 1.5 s or `max` has passed.
async fn talk(socket: Arc<tokio::net::UdpSocket>, pcm: Vec<i16>, max: Duration) -> Heard {
    let mut heard = Heard {
        first: None,
        last: None,
        sent: 0,
    };
    let mut buf = [0u8; 2048];
    let end = tokio::time::Instant::now() + max;
    let Ok(Ok((_, peer))) = tokio::time::timeout_at(end, socket.recv_from(&mut buf)).await else {
        return heard;
    };
    heard.first = Some(Instant::now());
    heard.last = heard.first;
    let mut send = RtpSendStream::new(Ssrc(0x5bee_c400), 0, 1000, 160_000);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut at = 0usize;
    while tokio::time::Instant::now() < end {
        tokio::select! {
            _ = tick.tick() => {
                if heard.last.is_some_and(|t| t.elapsed() > Duration::from_millis(1500)) {
                    break;
                }
                let mut payload = [0u8; FRAME];
                for b in payload.iter_mut() {
                    *b = Law::Ulaw.encode(pcm[at]);
                    at = (at + 1) % pcm.len();
                }
                let mut pkt = Vec::with_capacity(12 + FRAME);
                send.audio_header(FRAME as u32).write(&payload, &mut pkt).expect("rtp");
                socket.send_to(&pkt, peer).await.expect("send rtp");
                heard.sent += 1;
            }
            r = socket.recv_from(&mut buf) => {
                if matches!(r, Ok((_, from)) if from == peer) {
                    heard.last = Some(Instant::now());
                }
            }
        }
    }
    heard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_callback_answered_by_speech_ends_training_failed_within_the_bound_with_a_bye() {
    live_bad_answer("speech", speech(), 5).await;
}

/// 10 s: the gate's V.21 attempt starts at about 6 s, when the flags are on the line (before
/// the steady-mark guard the gate connected to them as V.21 at about 6.6 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_callback_answered_by_a_fax_ends_training_failed_within_the_bound_with_a_bye() {
    let mut far = fax_answerer(true);
    let mut pcm = vec![0i16; 8000 * 30];
    far(&[], &mut pcm);
    live_bad_answer("fax CED + V.21 flags", pcm, 10).await;
}

/// A callback through Kamailio answered by a phone playing `pcm`: the audit says
/// `session.end:modem_training_failed` `connect_timeout_s` after the answer (no
/// `modem.connect`), and the phone gets the gate's BYE.
async fn live_bad_answer(what: &str, pcm: Vec<i16>, connect_timeout_s: u64) {
    let (k, gate) = gate_pbx::pbx_and_gate(json!({
        "modem": { "connect_timeout_s": connect_timeout_s }
    }));
    let (rtp, phone) = gate_pbx::modem_phone(&k, Duration::from_secs(30)).await;
    let talker = tokio::spawn(talk(rtp, pcm, Duration::from_secs(25)));
    assert_eq!(
        gate_pbx::maintain(&k, gate_pbx::ADMIN_1),
        Some(0),
        "{}",
        gate.log()
    );
    let ended = tokio::task::block_in_place(|| {
        gate.wait_audit(
            "session.end:modem_training_failed",
            Duration::from_secs(connect_timeout_s + 10),
        )
    });
    let seen_at = Instant::now();
    let heard = talker.await.expect("talker");
    let outcome = tokio::task::spawn_blocking(move || phone.wait())
        .await
        .expect("join");
    let events = gate.audit_events();
    assert!(ended, "{events:?}\n{}", gate.log());
    let first = heard
        .first
        .expect("the gate sent RTP on the answered callback");
    let after = seen_at.saturating_duration_since(first);
    println!(
        "{what} answerer: session.end:modem_training_failed {after:?} after the gate's first \
         RTP; {} packets sent; gate RTP for {:?}",
        heard.sent,
        heard.last.map(|l| l.saturating_duration_since(first))
    );
    let bound = Duration::from_secs(connect_timeout_s);
    assert!(
        after >= bound - Duration::from_millis(500) && after <= bound + Duration::from_secs(3),
        "ended {after:?} after answer, bound {bound:?}"
    );
    assert!(heard.sent > 100, "the phone talked: {} packets", heard.sent);
    assert!(
        !events.iter().any(|e| e.starts_with("modem.connect")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e == "callback.answered"),
        "{events:?}"
    );
    assert!(
        outcome.passed(),
        "the phone got the gate's BYE: {}",
        outcome.report()
    );
}
