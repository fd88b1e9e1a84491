//! Bad input on the media port of a live maintenance call (issue 3, "Bad input": truncated
//! and garbage RTP, wrong payload types, SSRC changes, huge timestamp jumps: no panic, the
//! call survives or ends cleanly with a log line), and injection resistance (RFC 7362 §4
//! latching, `media::admit`): a stranger who sprays the gate's RTP port with RFC 4733 events
//! and in-band tones for wrong keys cannot type into the call.
//!
//! The latched caller itself sends a few garbage datagrams, changes SSRC with its clock 10 s
//! behind (keys then count only because a new source restarts the RFC 4733 receiver), and
//! jumps its clock without a new SSRC both ways (a step that reads as "back" made the gate
//! deaf to RFC 4733 keys for the rest of the call before `call_media` restarted its receiver
//! on it).
//!
//! The caller is `support::rawcall::Caller` straight to a running gate (trunks not
//! registered); its RTP socket is the one its SDP offer names, so it is the source the gate
//! latches onto. The stranger is a second UDP socket on 127.0.0.1. Keys are RFC 4733 events
//! built by `dialback::media::rfc4733::Sender`.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dialback::media::dtmf::Digit;
use dialback::media::g711::Law;
use dialback::media::rfc4733::{Sender, SenderConfig};
use dialback::media::rtp::{RtpHeader, RtpSendStream, Ssrc};
use serde_json::{json, Value};
use support::dialback::{free_port, Gate};
use support::kamailio::options_answered;
use support::rawcall::Caller;

/// The example dialplan's demo credentials: ID 1001, PIN 2468, signal `*6` PIN `*` digit 1
/// (dialplans/README.md).
const KEYS: &str = "1001#2468#*62468246*1#";
const AUDIO_PT: u8 = 0;
const EVENT_PT: u8 = 101;
const WARN: &str = "dropped RTP datagrams on a call's media port";

/// The example dialplan's admins, trunks on free ports, no registration; the originate proxy
/// is a free port nobody listens on (the callback is placed and fails).
fn dialplan() -> Value {
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dialplans/example.json"
        ))
        .expect("example dialplan"),
    )
    .expect("json");
    json!({
        "trunks": {
            "user": { "listen": format!("127.0.0.1:{}", free_port()), "register": false, "aor": "sip:gate-user@127.0.0.1" },
            "admin": { "listen": format!("127.0.0.1:{}", free_port()), "register": false, "aor": "sip:gate-admin@127.0.0.1" },
            "originate": { "listen": format!("127.0.0.1:{}", free_port()),
                           "proxy": format!("sip:127.0.0.1:{}", free_port()),
                           "from": "sip:gate-out@127.0.0.1" }
        },
        "admins": example["admins"].clone(),
        "media": { "first_digit_timeout_s": 30, "inter_digit_timeout_s": 10 },
        "callback": { "delay_ms": 300, "ring_timeout_s": 5, "answered_hold_s": 1 }
    })
}

/// xorshift64*: reproducible "random" bytes for the flood.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn rtp(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    RtpHeader {
        marker,
        payload_type: pt,
        sequence: seq,
        timestamp: ts,
        ssrc: Ssrc(ssrc),
    }
    .write(payload, &mut out)
    .expect("encodable");
    out
}

/// 20 ms of the in-band DTMF tone pair of `9` (852 Hz + 1477 Hz, Q.23) in μ-law.
fn inband_nine() -> Vec<u8> {
    (0..160)
        .map(|n| {
            let t = f64::from(n) / 8000.0;
            let s = 6000.0 * (2.0 * std::f64::consts::PI * 852.0 * t).sin()
                + 6000.0 * (2.0 * std::f64::consts::PI * 1477.0 * t).sin();
            Law::Ulaw.encode(s as i16)
        })
        .collect()
}

/// One datagram of the stranger's mix: garbage, truncated and malformed RTP, unknown payload
/// types, RTCP, and audio / RFC 4733 events for the wrong key `9` under random SSRCs with
/// huge timestamp jumps.
fn stranger_datagram(rng: &mut Rng, i: usize) -> Vec<u8> {
    let seq = i as u16;
    let nine = Digit::from_char('9').expect("digit");
    match i % 10 {
        0 => {
            let n = 1 + rng.below(200);
            rng.bytes(n)
        }
        1 => {
            // A header cut short: 1..=11 bytes of a valid-looking start.
            let mut p = rtp(AUDIO_PT, false, seq, rng.u32(), rng.u32(), &[]);
            p.truncate(1 + rng.below(11));
            p
        }
        2 => {
            // RTP version 1.
            let mut p = rtp(AUDIO_PT, false, seq, rng.u32(), rng.u32(), &[0xff; 160]);
            p[0] = (p[0] & 0x3f) | 0x40;
            p
        }
        3 => {
            // P bit set, padding count larger than the packet.
            let mut p = rtp(AUDIO_PT, false, seq, rng.u32(), rng.u32(), &[0xff; 20]);
            p[0] |= 0x20;
            if let Some(last) = p.last_mut() {
                *last = 250;
            }
            p
        }
        4 => {
            let pt = [18u8, 96, 127][rng.below(3)];
            rtp(pt, false, seq, rng.u32(), rng.u32(), &rng.bytes(160))
        }
        5 => {
            // RTCP receiver report (RFC 3550 §6.4.2), no report blocks.
            let mut p = vec![0x80, 201, 0, 1];
            p.extend_from_slice(&rng.u32().to_be_bytes());
            p
        }
        6 => rtp(AUDIO_PT, false, seq, rng.u32(), rng.u32(), &inband_nine()),
        7 | 8 => {
            let ev = dialback::media::rfc4733::TelephoneEvent {
                event: nine.event_code(),
                end: i % 10 == 8,
                volume: 10,
                duration: (rng.below(2000) as u16) + 160,
            };
            rtp(
                EVENT_PT,
                i % 20 == 7,
                seq,
                rng.u32(),
                rng.u32(),
                &ev.to_bytes(),
            )
        }
        _ => {
            // CSRC count 15 on a 14-byte datagram.
            let mut p = rtp(AUDIO_PT, false, seq, rng.u32(), rng.u32(), &[0xff, 0xff]);
            p[0] |= 0x0f;
            p
        }
    }
}

/// The stranger: a thread spraying `target` with `total` datagrams over `over`, or until
/// stopped; counts what it sent and what the gate sent back to it (nothing, if latching holds).
struct Stranger {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(usize, usize, Duration)>,
}

impl Stranger {
    fn spray(target: SocketAddr, total: usize, over: Duration, seed: u64) -> Stranger {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let sock = UdpSocket::bind("127.0.0.1:0").expect("stranger socket");
            sock.set_nonblocking(true).expect("nonblocking");
            let mut rng = Rng(seed);
            let started = Instant::now();
            let (mut sent, mut got) = (0, 0);
            let mut buf = [0u8; 2048];
            while sent < total && !flag.load(Ordering::Relaxed) {
                // Paced: datagram `sent` leaves at `sent / total` of `over`.
                let due = started + over.mul_f64(sent as f64 / total as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let _ = sock.send_to(&stranger_datagram(&mut rng, sent), target);
                sent += 1;
                while sock.recv_from(&mut buf).is_ok() {
                    got += 1;
                }
            }
            (sent, got, started.elapsed())
        });
        Stranger { stop, thread }
    }

    /// Stop it; (sent, received from the gate, how long it sprayed).
    fn stop(self) -> (usize, usize, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("stranger thread")
    }
}

/// The legitimate caller's media: 20 ms ticks of μ-law silence or RFC 4733 events on one RTP
/// stream, counting the gate's RTP and answering its BYE.
struct Legit {
    caller: Caller,
    gate_media: SocketAddr,
    stream: RtpSendStream,
    next_tick: Instant,
    received: usize,
    bye: bool,
}

impl Legit {
    /// Calls the admin trunk offering PCMU and telephone-event; asserts the 200.
    fn call(gate: &Gate) -> Legit {
        let mut caller = Caller::new(gate.admin_addr());
        let answer = caller.invite(
            "gate-admin",
            &format!("{AUDIO_PT} {EVENT_PT}"),
            &format!("a=rtpmap:0 PCMU/8000\r\na=rtpmap:{EVENT_PT} telephone-event/8000\r\n"),
        );
        assert_eq!(
            answer.status(),
            Some(200),
            "{}\n{}",
            answer.text,
            gate.log()
        );
        let gate_media = answer.media_addr().expect("media address in the answer");
        assert!(gate_media.ip().is_loopback(), "{gate_media}");
        caller.rtp.set_nonblocking(true).expect("nonblocking");
        caller.sip.set_nonblocking(true).expect("nonblocking");
        Legit {
            caller,
            gate_media,
            stream: RtpSendStream::new(Ssrc(0x1e91_7000), AUDIO_PT, 100, 1_000),
            next_tick: Instant::now(),
            received: 0,
            bye: false,
        }
    }

    fn send(&self, bytes: &[u8]) {
        let _ = self.caller.rtp.send_to(bytes, self.gate_media);
    }

    /// Wait for the next 20 ms tick, taking in what arrived meanwhile.
    fn tick(&mut self) {
        self.next_tick += Duration::from_millis(20);
        if let Some(wait) = self.next_tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let mut buf = [0u8; 2048];
        while self.caller.rtp.recv_from(&mut buf).is_ok() {
            self.received += 1;
        }
        while let Some(m) = self.caller.recv_sip() {
            self.bye |= self.caller.answer_bye(&m);
        }
    }

    /// `frames` × 20 ms of μ-law silence.
    fn audio(&mut self, frames: usize) {
        for _ in 0..frames {
            let mut p = Vec::new();
            self.stream
                .audio_header(160)
                .write(&[0xff; 160], &mut p)
                .expect("encodable");
            self.send(&p);
            self.tick();
        }
    }

    /// One key press as RFC 4733 events (100 ms, an update per 20 ms, three end packets,
    /// RFC 4733 §2.5.1), replacing the audio it covers; then 100 ms of audio.
    fn key(&mut self, key: char) {
        let digit = Digit::from_char(key).expect("a DTMF key");
        let cfg = SenderConfig {
            duration_samples: 800,
            volume: 10,
            update_samples: 160,
            end_spacing_samples: 160,
        };
        let mut ticks = 0;
        for ev in Sender::new(digit, self.stream.timestamp(), cfg) {
            let mut p = Vec::new();
            self.stream
                .other_header(EVENT_PT, ev.marker, ev.timestamp)
                .write(&ev.event.to_bytes(), &mut p)
                .expect("encodable");
            self.send(&p);
            self.tick();
            ticks += 1;
        }
        self.stream.skip(ticks * 160);
        self.audio(5);
    }

    /// Audio until the gate's BYE, at most `limit`.
    fn audio_until_bye(&mut self, limit: Duration) {
        let end = Instant::now() + limit;
        while !self.bye && Instant::now() < end {
            self.audio(1);
        }
    }
}

/// The gate's rate-limited warn lines about dropped datagrams.
fn warn_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(WARN)).collect()
}

/// The value of `field=N` in a log line.
fn counter(line: &str, field: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{field}=")))
        .and_then(|v| v.trim_end_matches(',').parse().ok())
        .unwrap_or(0)
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[test]
fn the_latched_caller_authenticates_through_a_flood_and_no_injected_key_is_taken() {
    let mut gate = Gate::start(dialplan(), &[]).expect("dialback starts");
    let mut legit = Legit::call(&gate);
    // Latch: the caller's audio arrives first (RFC 7362 §4).
    legit.audio(5);
    let stranger = Stranger::spray(
        legit.gate_media,
        20_000,
        Duration::from_secs(20),
        0x5eed_0001,
    );
    let mut rng = Rng(0x5eed_0002);
    for (i, key) in KEYS.chars().enumerate() {
        legit.key(key);
        match i {
            // Garbage from the latched address itself: dropped, the latch holds.
            2 => {
                for n in [1usize, 5, 11, 40] {
                    legit.send(&rng.bytes(n));
                }
                let mut v1 = rtp(AUDIO_PT, false, 7, 7, 0x1e91_7000, &[0xff; 160]);
                v1[0] = 0x40;
                legit.send(&v1);
            }
            // After the ID: the caller restarts its stream with a new SSRC (RFC 3550 §8.2),
            // its clock 10 s behind the old one: the keys that follow count only if the new
            // source restarts the RFC 4733 receiver (RFC 4733 §2.5.1.3).
            4 => {
                let behind = legit.stream.timestamp().wrapping_sub(80_000);
                legit.stream =
                    RtpSendStream::new(Ssrc(0x0bad_cafe), AUDIO_PT, rng.u32() as u16, behind);
            }
            // After the PIN, same SSRC: the clock jumps by 0x9000_0000, which serial-number
            // arithmetic (RFC 3550 §A.1) reads as 0x7000_0000 samples back.
            9 => legit.stream.skip(0x9000_0000),
            // Inside the signal: a huge jump forward (just under 2^31, still "newer").
            15 => legit.stream.skip(0x7000_0000),
            _ => {}
        }
    }
    legit.audio_until_bye(Duration::from_secs(10));
    let (sent, stolen, _) = stranger.stop();

    assert!(
        gate.wait_audit("callback.placed", Duration::from_secs(10)),
        "{:?}\n{}",
        gate.audit_events(),
        gate.log()
    );
    let records = gate.audit_records();
    let events = gate.audit_events();
    assert!(
        records
            .iter()
            .any(|r| r["event"] == "signal.ok" && r["admin"] == "1001"),
        "{events:?}\n{}",
        gate.log()
    );
    assert!(
        !events
            .iter()
            .any(|e| e.starts_with("auth.fail") || e.starts_with("signal.fail")),
        "an injected key was taken: {events:?}"
    );
    assert!(legit.bye, "the gate hung up after the signal");
    assert!(
        legit.received > 100,
        "the gate's audio reached the caller: {}",
        legit.received
    );
    assert_eq!(stolen, 0, "the stranger got none of the call's audio");
    assert!(sent > 1000, "the stranger sprayed {sent} datagrams");

    let log = gate.log();
    let lines = warn_lines(&log);
    eprintln!(
        "audit {events:?}\nwarn lines {lines:#?}\nstranger sent {sent}, caller got {}",
        legit.received
    );
    assert!(!lines.is_empty(), "warn line about drops\n{log}");
    assert!(lines.iter().all(|l| l.contains("WARN")), "{lines:?}");
    for field in ["malformed", "foreign_source", "unknown_payload_type"] {
        let most = lines.iter().map(|l| counter(l, field)).max().unwrap_or(0);
        assert!(most > 0, "{field} counted: {lines:?}");
    }
    assert!(!log.contains("panicked"), "{log}");
    assert!(gate.is_running(), "the gate survived\n{log}");
    assert!(
        options_answered(gate.user_addr()),
        "OPTIONS answered after the flood"
    );
}

#[test]
fn a_flood_on_the_media_port_leaves_the_call_up_with_bounded_logs_and_memory() {
    let mut gate = Gate::start(dialplan(), &[]).expect("dialback starts");
    let pid = gate.pid().expect("pid");
    let mut legit = Legit::call(&gate);
    legit.audio(50);
    let rss_before = rss_kib(pid);
    let stranger = Stranger::spray(legit.gate_media, 5_000, Duration::from_secs(5), 0x5eed_0003);
    // The caller keeps talking through the whole flood (so the latch never goes quiet),
    // then 1 s more.
    while !stranger.thread.is_finished() {
        legit.audio(1);
    }
    let (sent, stolen, sprayed) = stranger.stop();
    let received_during = legit.received;
    legit.audio(50);
    let rss_after = rss_kib(pid);

    assert_eq!(sent, 5_000, "the whole flood was sent");
    assert_eq!(stolen, 0, "the stranger got none of the call's audio");
    assert!(!legit.bye, "the call is still up\n{}", gate.log());
    assert!(
        legit.received > received_during + 30,
        "the gate still sends its audio to the caller after the flood: {} then {}",
        received_during,
        legit.received
    );
    let log = gate.log();
    let lines = warn_lines(&log);
    eprintln!("warn lines {lines:#?} over {sprayed:?}");
    // One line per 5 s at most (media::admit::REPORT_EVERY), plus the first.
    let allowed = 1 + (sprayed + Duration::from_millis(100)).as_secs() as usize / 5;
    assert!(
        !lines.is_empty() && lines.len() <= allowed,
        "{} warn lines over {sprayed:?} (at most {allowed}): {lines:?}",
        lines.len()
    );
    let last = lines.last().copied().unwrap_or("");
    let counted: u64 = ["malformed", "foreign_source", "unknown_payload_type"]
        .iter()
        .map(|f| counter(last, f))
        .sum();
    assert!(counted > 1000, "drops counted: {last}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(gate.is_running(), "the gate survived\n{log}");
    assert!(
        options_answered(gate.user_addr()),
        "OPTIONS answered after the flood"
    );
    let growth = rss_after.saturating_sub(rss_before);
    eprintln!("gate VmRSS {rss_before} KiB before the flood, {rss_after} KiB after");
    assert!(growth < 20 * 1024, "RSS grew {growth} KiB");
}
