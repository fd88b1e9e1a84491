//! RFC 4733 keys from recorded RTP (issue 3, "a SIPp pcap-play of RFC 4733 events"), with the
//! whole call captured and read back by tshark (issue 3, "tshark reads a capture of these
//! calls with no malformed packets").
//!
//! The test writes a pcap of one RTP stream (PCMU silence, and `1001#2468#*62468246*1#` as
//! telephone-events from our `media::rfc4733::Sender`: 100 ms per key, updates every 20 ms,
//! three end packets, 100 ms of audio between keys); a SIPp caller dials the gate's admin
//! number through Kamailio and plays it (`tests/sipp/uac_call_pcap_play.xml`). The gate must
//! read exactly those keys (`signal.ok` for admin 1001 on the first try), hang up, and call
//! admin 1 back (a SIPp phone registered as 1001 answers). dumpcap records the SIP of both
//! calls (all through Kamailio's port) and all their RTP (the gate's private RTP port range).

mod support;

use std::time::Duration;

use dialback::media::dtmf::Digit;
use dialback::media::g711::Law;
use dialback::media::rfc4733::{Sender, SenderConfig};
use dialback::media::rtp::{RtpHeader, RtpSendStream, Ssrc};
use dialback::media::tones::SineGenerator;
use serde_json::json;
use support::dialback::{private_rtp_range, Gate};
use support::gate_pbx::{pbx_dialplan, ENV as TRUNK_ENV, TRUNK_SUBSCRIBERS};
use support::kamailio::Kamailio;
use support::pcap::{udp_pcap, Datagram};
use support::sipp::Sipp;
use support::tshark::{Capture, CaptureFile};
use support::uac::{self, Register};

const KEYS: &str = "1001#2468#*62468246*1#";
/// The telephone-event payload type offered by the scenario.
const PT_EVENT: u8 = 101;
/// PCMU (RFC 3551 Table 4).
const PT_PCMU: u8 = 0;
/// Samples per 20 ms packet.
const PACKET: u32 = 160;
/// μ-law silence (G.711: code 0xFF is +0).
const ULAW_SILENCE: u8 = 0xFF;

/// The RTP stream of a caller keying `keys`: 1 s of silence, then per key 100 ms of
/// telephone-events (start with M, updates, three ends, all on the key's start timestamp)
/// followed by 100 ms of silence, then 1 s of silence. Events stand in for the audio
/// (RFC 4733 §2.5.1.1): the media clock runs on under them.
fn keyed_stream(keys: &str) -> Vec<Datagram> {
    let mut w = StreamWriter {
        stream: RtpSendStream::new(Ssrc(0x0D1A_1BAC), PT_PCMU, 4711, 0x1234_5678),
        tick: 0,
        packets: Vec::new(),
    };
    w.silence(50);
    for key in keys.chars() {
        w.key(Digit::from_char(key).expect("a DTMF key"));
        w.silence(5);
    }
    w.silence(50);
    w.packets
}

/// One RTP stream laid out on a 20 ms packet clock.
struct StreamWriter {
    stream: RtpSendStream,
    /// The next 20 ms slot.
    tick: u64,
    packets: Vec<Datagram>,
}

impl StreamWriter {
    fn push(&mut self, tick: u64, payload: Vec<u8>) {
        self.packets.push(Datagram {
            at: Duration::from_millis(tick * 20),
            src: ([127, 0, 0, 1], 40_000),
            dst: ([127, 0, 0, 1], 40_002),
            payload,
        });
    }

    /// `n` packets of μ-law silence.
    fn silence(&mut self, n: u64) {
        for _ in 0..n {
            let mut out = Vec::new();
            self.stream
                .audio_header(PACKET)
                .write(&[ULAW_SILENCE; PACKET as usize], &mut out)
                .expect("audio packet");
            self.push(self.tick, out);
            self.tick += 1;
        }
    }

    /// One 100 ms key press as telephone-events, in the slots the audio would have used.
    fn key(&mut self, digit: Digit) {
        let config = SenderConfig {
            duration_samples: 800,
            volume: 10,
            update_samples: PACKET,
            end_spacing_samples: PACKET,
        };
        let mut last = 0;
        for p in Sender::new(digit, self.stream.timestamp(), config) {
            let slot = p.send_at_samples / u64::from(PACKET);
            let mut out = Vec::new();
            self.stream
                .other_header(PT_EVENT, p.marker, p.timestamp)
                .write(&p.event.to_bytes(), &mut out)
                .expect("event packet");
            self.push(self.tick + slot, out);
            last = slot;
        }
        // The media clock runs on under the events (RFC 4733 §2.5.1.1).
        self.stream.skip(PACKET * (last as u32 + 1));
        self.tick += last + 1;
    }
}

/// How one key is sent in [`quirky_stream`].
#[derive(Debug, Clone, Copy)]
struct Press {
    key: char,
    /// Key-down time in samples.
    samples: u32,
    /// Whether the audio carries the tones too (gateways that do not mute them).
    residue: bool,
}

/// [`KEYS`] the way carrier gateways send them: no marker bit on any event, silence
/// suppressed (no audio packets between keys; the RTP timestamps jump), ID and signal keys as
/// 65 ms presses 140 ms apart with the tones also in the audio, the `#` after the ID held for
/// 2 s (also in the audio), the PIN as 100 ms events alone.
fn quirky_stream() -> Vec<Datagram> {
    let mut presses = Vec::new();
    for (i, key) in KEYS.chars().enumerate() {
        let press = match i {
            4 => Press {
                key,
                samples: 16_000,
                residue: true,
            },
            5..=8 => Press {
                key,
                samples: 800,
                residue: false,
            },
            _ => Press {
                key,
                samples: 520,
                residue: true,
            },
        };
        presses.push(press);
    }
    let ssrc = Ssrc(0x0CA2_21E2);
    let base_ts: u32 = 0xFFFF_0000; // wraps during the call
                                    // (slot, packet without sequence number yet): header fields and payload.
    let mut slots: Vec<(u64, bool, u8, u32, Vec<u8>)> = Vec::new();
    let mut slot: u64 = 10;
    for p in &presses {
        let digit = Digit::from_char(p.key).expect("a DTMF key");
        let start_ts = base_ts.wrapping_add((slot * u64::from(PACKET)) as u32);
        let config = SenderConfig {
            duration_samples: p.samples,
            volume: 10,
            update_samples: PACKET,
            end_spacing_samples: PACKET,
        };
        let mut last = 0;
        for e in Sender::new(digit, start_ts, config) {
            let at = e.send_at_samples / u64::from(PACKET);
            // Quirk: the marker bit is never set.
            slots.push((
                slot + at,
                false,
                PT_EVENT,
                e.timestamp,
                e.event.to_bytes().to_vec(),
            ));
            last = at;
        }
        if p.residue {
            // The tones in the audio for the key-down time, silence to the end of the packet.
            let (low, high) = digit.frequencies();
            let mut a = SineGenerator::new(low, -10.0);
            let mut b = SineGenerator::new(high, -10.0);
            let packets = p.samples.div_ceil(PACKET);
            for n in 0..packets {
                let mut x = [0i16; PACKET as usize];
                let mut y = [0i16; PACKET as usize];
                let on = (p.samples - n * PACKET).min(PACKET) as usize;
                a.fill(&mut x[..on]);
                b.fill(&mut y[..on]);
                let payload: Vec<u8> = x
                    .iter()
                    .zip(&y)
                    .map(|(l, h)| Law::Ulaw.encode(l.saturating_add(*h)))
                    .collect();
                let ts = start_ts.wrapping_add(n * PACKET);
                // RFC 3551 §4.1: M on the first packet of a talkspurt.
                slots.push((slot + u64::from(n), n == 0, PT_PCMU, ts, payload));
            }
        }
        // Next key: 65 ms presses every 140 ms, longer ones after a 100 ms pause.
        slot += (last + 1).max(7) + if p.samples > 520 { 5 } else { 0 };
    }
    slots.sort_by_key(|s| s.0);
    let mut sequence: u16 = 65_500; // wraps too
    slots
        .into_iter()
        .map(|(at, marker, payload_type, timestamp, payload)| {
            let mut out = Vec::new();
            RtpHeader {
                marker,
                payload_type,
                sequence,
                timestamp,
                ssrc,
            }
            .write(&payload, &mut out)
            .expect("packet");
            sequence = sequence.wrapping_add(1);
            Datagram {
                at: Duration::from_millis(at * 20),
                src: ([127, 0, 0, 1], 40_000),
                dst: ([127, 0, 0, 1], 40_002),
                payload: out,
            }
        })
        .collect()
}

/// Kamailio, a SIPp phone registered as 1001, the gate (private RTP ports) and a capture;
/// a SIPp caller plays `stream` to the gate's admin number. Asserts that admin 1001's signal
/// was read on the first try and the phone was called back; returns the capture.
fn play_to_the_gate(stream: &[Datagram]) -> Option<CaptureFile> {
    for peer in ["kamailio", "sipp", "dumpcap", "tshark"] {
        if !support::have_program(peer) {
            return None;
        }
    }
    if !support::running_as_root() {
        return None;
    }
    let mut subscribers = TRUNK_SUBSCRIBERS.to_vec();
    subscribers.push(("1001", "phone-pw"));
    let k = Kamailio::start(&subscribers).expect("kamailio");
    let phone_media = support::ports::free_udp_port().expect("port");
    let phone = Sipp::scenario("uas_answer.xml")
        .args(["-mp".to_owned(), phone_media.to_string()])
        .serve()
        .expect("phone");
    uac::register(&Register::new(
        k.sip_addr(),
        "1001",
        "phone-pw",
        &format!("sip:1001@127.0.0.1:{}", phone.port()),
    ))
    .expect("phone registers as 1001");
    // The gate's RTP ports: a private range, so the capture filter can name them.
    let (rtp_low, rtp_high) = private_rtp_range();
    let mut plan = pbx_dialplan(&k.sip_uri(), &[format!("sip:1001@127.0.0.1:{}", k.port())]);
    plan["media"] = json!({ "rtp_ports": [rtp_low, rtp_high] });
    let capture = Capture::start(&format!(
        "udp and (port {} or portrange {rtp_low}-{rtp_high})",
        k.port()
    ))
    .expect("dumpcap captures on lo");
    let gate = Gate::start(plan, TRUNK_ENV).expect("dialback starts");
    for u in ["gate-user", "gate-admin"] {
        assert!(
            k.wait_registered(u, Duration::from_secs(10)),
            "{}",
            gate.log()
        );
    }

    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("rtp.pcap"), udp_pcap(stream)).expect("pcap");
    let media_port = support::ports::free_udp_port().expect("port");
    let caller = Sipp::scenario("uac_call_pcap_play.xml")
        .current_dir(dir.path())
        .args([
            "-s".to_owned(),
            "gate-admin".to_owned(),
            "-mp".to_owned(),
            media_port.to_string(),
        ])
        .timeout(Duration::from_secs(40))
        .run_call(k.sip_addr())
        .expect("sipp caller");
    assert!(
        caller.passed(),
        "answered, played the keys, got our BYE: {}\n{}",
        caller.report(),
        gate.log()
    );
    assert!(
        gate.wait_audit("session.end:modem_training_failed", Duration::from_secs(20)),
        "callback answered and ended: {:?}\n{}",
        gate.audit_events(),
        gate.log()
    );
    let outcome = phone.wait();
    assert!(
        outcome.passed(),
        "callback reached the phone: {}",
        outcome.report()
    );
    let records = gate.audit_records();
    assert_eq!(records[0]["event"], "signal.ok", "{records:?}");
    assert_eq!(records[0]["admin"], "1001", "{records:?}");
    let events = gate.audit_events();
    assert!(
        !events.iter().any(|e| e.starts_with("auth.fail")),
        "every key read exactly once on the first try: {events:?}"
    );
    assert!(
        events.iter().any(|e| e == "callback.answered"),
        "{events:?}"
    );

    Some(capture.stop())
}

#[test]
fn sipp_pcap_play_of_rfc4733_keys_calls_admin_1_back_and_the_capture_decodes_cleanly() {
    let Some(cap) = play_to_the_gate(&keyed_stream(KEYS)) else {
        return;
    };
    // What SIPp put on the wire: our events, unchanged (one start per key).
    let starts: String = cap
        .fields("rtpevent && rtp.marker == 1", &["rtpevent.event_id"])
        .iter()
        .filter_map(|row| row.first()?.parse::<usize>().ok())
        .filter_map(|code| "0123456789*#".chars().nth(code))
        .collect();
    assert_eq!(starts, KEYS, "keys on the wire");
    for (what, filter) in [
        ("SIP through the PBX", "sip"),
        ("SDP offers and answers", "sdp"),
        ("RTP", "rtp"),
        ("telephone-events", "rtpevent"),
        (
            "the callback INVITE",
            "sip.Method == \"INVITE\" && sip.from.user == \"gate-out\"",
        ),
        ("the gate's BYEs", "sip.Method == \"BYE\""),
    ] {
        assert!(cap.count(filter) > 0, "{what} ({filter}) in the capture");
    }
    let errors = cap.decode_errors();
    assert!(
        errors.is_empty(),
        "malformed or erroneous packets:\n{}\n{}",
        errors.join("\n"),
        cap.expert_summary()
    );
}

#[test]
fn carrier_quirks_no_marker_residue_long_press_short_keys_and_suppressed_silence_read_once() {
    let stream = quirky_stream();
    let Some(cap) = play_to_the_gate(&stream) else {
        return;
    };
    assert_eq!(
        cap.count("rtpevent.end_of_event == 1"),
        3 * KEYS.len(),
        "three ends per key on the wire"
    );
    assert_eq!(cap.count("rtpevent && rtp.marker == 1"), 0, "no marker bit");
    assert!(cap.count("rtp.p_type == 0") > 0, "audio on the wire");
    let errors = cap.decode_errors();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}
