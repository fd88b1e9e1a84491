//! Dialplan knobs of the maintenance call, against a running dialback (trunks not registered,
//! calls sent straight to them):
//!
//! - `media.prompts`: the WAV prompts the dialplan names are what the caller hears, in the
//!   call's negotiated law (a PCM16 WAV on a PCMA call, a μ-law WAV on a PCMU call), as 20 ms
//!   RTP frames (160 samples, sequence +1, timestamps +160), byte for byte; a cue without a
//!   prompt keeps its tone (the 1 kHz ID beep) (issue 3 point 5, issue 4 flow 2).
//! - `media.rtp_timeout_s`: a SIPp caller that sends no RTP is hung up after the timeout, long
//!   before the digit timeouts would end the call, with a warn line naming the Call-ID
//!   (issue 3 point 2).
//! - `routes.*.call: false`: an INVITE gets the route's `otherwise` (a reject code, or a 302 to
//!   the redirect URI), as a MESSAGE does.
//!
//! The caller of the prompt and route tests is the minimal blocking SIP UA of
//! `support::rawcall` (RFC 3261 §13.2: INVITE, ACK for the 2xx or the final error, 200 to the
//! BYE), so the test can read the RTP that arrives on its own socket.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use dialback::media::g711::Law;
use serde_json::{json, Value};
use support::dialback::{free_port, Gate};
use support::rawcall::Caller;
use support::sipp::Sipp;

/// The example dialplan's admins (so the gate runs), trunks on free ports, no registration;
/// `media` and `routes` as given.
fn dialplan(media: Value, routes: Value) -> Value {
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
            "originate": { "listen": format!("127.0.0.1:{}", free_port()), "proxy": "sip:127.0.0.1:5060",
                           "from": "sip:gate-out@127.0.0.1" }
        },
        "admins": example["admins"].clone(),
        "media": media,
        "routes": routes
    })
}

/// A 16-bit mono 8 kHz WAV of a sine at `hz`, `samples` long; returns the samples.
fn write_wav(path: &Path, hz: f64, amplitude: f64, samples: usize) -> Vec<i16> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("wav");
    let pcm: Vec<i16> = (0..samples)
        .map(|n| {
            let t = n as f64 / 8000.0;
            (amplitude * (2.0 * std::f64::consts::PI * hz * t).sin()).round() as i16
        })
        .collect();
    for s in &pcm {
        w.write_sample(*s).expect("sample");
    }
    w.finalize().expect("wav written");
    pcm
}

/// Where `needle` starts in `hay`, if it occurs.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A G.711 μ-law WAV (`WAVE_FORMAT_MULAW`, tag 7) holding `codes`.
fn write_mulaw_wav(path: &Path, codes: &[u8]) {
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(4 + 26 + 8 + codes.len() as u32).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&18u32.to_le_bytes());
    b.extend_from_slice(&7u16.to_le_bytes()); // WAVE_FORMAT_MULAW
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&8000u32.to_le_bytes());
    b.extend_from_slice(&8000u32.to_le_bytes()); // bytes per second
    b.extend_from_slice(&1u16.to_le_bytes()); // block align
    b.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
    b.extend_from_slice(&0u16.to_le_bytes()); // cbSize
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(codes.len() as u32).to_le_bytes());
    b.extend_from_slice(codes);
    std::fs::write(path, b).expect("wav");
}

/// Calls the gate offering only `law` and returns the RTP payload it sent until its BYE (the
/// RTP timeout), after checking the packets are 20 ms frames on the RTP clock.
fn received_payload(gate: &Gate, law: Law) -> Vec<u8> {
    let (pt, rtpmap) = match law {
        Law::Alaw => (8u8, "a=rtpmap:8 PCMA/8000\r\n"),
        Law::Ulaw => (0u8, "a=rtpmap:0 PCMU/8000\r\n"),
    };
    let mut caller = Caller::new(gate.user_addr());
    let answer = caller.invite(
        "gate-user",
        &format!("{pt} 101"),
        &format!("{rtpmap}a=rtpmap:101 telephone-event/8000\r\n"),
    );
    assert_eq!(
        answer.status(),
        Some(200),
        "{}\n{}",
        answer.text,
        gate.log()
    );
    assert!(
        answer.body().contains(&format!("RTP/AVP {pt} ")),
        "{law:?} negotiated: {}",
        answer.body()
    );
    let (packets, bye) = caller.rtp_until_bye(Duration::from_secs(10));
    assert!(
        bye.is_some(),
        "the RTP timeout ended the call\n{}",
        gate.log()
    );
    let log = gate.log();
    assert!(
        log.contains("no RTP on the maintenance call") && log.contains(&caller.call_id),
        "{log}"
    );
    // 20 ms frames on the RTP clock: 160 payload bytes, sequence +1, timestamp +160.
    assert!(packets.len() > 40, "{} packets", packets.len());
    let mut payload = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        assert_eq!(p.len(), 12 + 160, "packet {i}");
        assert_eq!(p[1] & 0x7f, pt, "payload type of packet {i}");
        if i > 0 {
            let prev = &packets[i - 1];
            let seq = |p: &[u8]| u16::from_be_bytes([p[2], p[3]]);
            let ts = |p: &[u8]| u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
            assert_eq!(seq(p), seq(prev).wrapping_add(1), "sequence at {i}");
            assert_eq!(ts(p), ts(prev).wrapping_add(160), "timestamp at {i}");
        }
        payload.extend_from_slice(&p[12..]);
    }
    payload
}

fn encode(law: Law, pcm: &[i16]) -> Vec<u8> {
    pcm.iter().map(|s| law.encode(*s)).collect()
}

#[test]
fn named_pcm_wav_prompts_are_sent_as_a_law_byte_for_byte_in_20ms_frames() {
    let wavs = tempfile::tempdir().expect("temp");
    // Lengths on 20 ms frame boundaries; distinct tones so each prompt is recognisable.
    let welcome = write_wav(&wavs.path().join("welcome.wav"), 440.0, 9000.0, 3200);
    let enter_id = write_wav(&wavs.path().join("id.wav"), 1300.0, 6000.0, 2400);
    let media = json!({
        "rtp_timeout_s": 3,
        "prompts": {
            "welcome": wavs.path().join("welcome.wav"),
            "enter_id": wavs.path().join("id.wav")
        }
    });
    let gate = Gate::start(dialplan(media, json!({})), &[]).expect("dialback starts");
    let payload = received_payload(&gate, Law::Alaw);
    // The prompts' samples, A-law encoded, byte for byte: welcome first, then enter_id.
    let at_welcome =
        find(&payload, &encode(Law::Alaw, &welcome)).expect("welcome prompt on the wire");
    let at_id = find(&payload, &encode(Law::Alaw, &enter_id)).expect("enter_id prompt on the wire");
    assert_eq!(at_welcome % 160, 0, "a prompt starts on a frame boundary");
    assert_eq!(
        at_id,
        at_welcome + welcome.len(),
        "enter_id follows welcome at once"
    );
}

#[test]
fn a_mu_law_wav_prompt_reaches_a_pcmu_call_unchanged_and_unnamed_cues_stay_tones() {
    let wavs = tempfile::tempdir().expect("temp");
    let pcm: Vec<i16> = (0..4000)
        .map(|n| (7000.0 * (2.0 * std::f64::consts::PI * 700.0 * n as f64 / 8000.0).sin()) as i16)
        .collect();
    let codes = encode(Law::Ulaw, &pcm);
    write_mulaw_wav(&wavs.path().join("welcome.wav"), &codes);
    let media = json!({
        "rtp_timeout_s": 3,
        "prompts": { "welcome": wavs.path().join("welcome.wav") }
    });
    let gate = Gate::start(dialplan(media, json!({})), &[]).expect("dialback starts");
    let payload = received_payload(&gate, Law::Ulaw);
    let at = find(&payload, &codes).expect("the WAV's μ-law codes on the wire");
    // No enter_id prompt named: the ID prompt is the 1 kHz beep (200 ms) right after.
    // The next sound starts on the next frame boundary.
    let next = (at + codes.len()).div_ceil(160) * 160;
    let after = &payload[next..next + 1600];
    let beep: Vec<f64> = after
        .iter()
        .map(|c| f64::from(dialback::media::g711::Law::Ulaw.decode(*c)))
        .collect();
    let goertzel = |hz: f64| {
        let w = 2.0 * std::f64::consts::PI * hz / 8000.0;
        let (mut s1, mut s2) = (0.0, 0.0);
        for x in &beep {
            let s = x + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2
    };
    assert!(
        goertzel(1000.0) > 100.0 * goertzel(700.0),
        "beep at 1 kHz after the prompt: {} vs {}",
        goertzel(1000.0),
        goertzel(700.0)
    );
}

#[test]
fn a_caller_sending_no_rtp_is_hung_up_after_rtp_timeout_s() {
    let media = json!({ "rtp_timeout_s": 2, "first_digit_timeout_s": 30 });
    let gate = Gate::start(dialplan(media, json!({})), &[]).expect("dialback starts");
    let started = Instant::now();
    let caller = Sipp::scenario("uac_call_no_rtp.xml")
        .args(["-s", "gate-user"])
        .timeout(Duration::from_secs(20))
        .call(gate.user_addr())
        .expect("sipp caller");
    let outcome = caller.wait();
    let took = started.elapsed();
    assert!(outcome.passed(), "{}\n{}", outcome.report(), gate.log());
    assert_eq!(outcome.received_requests("BYE").len(), 1);
    // Ended by the RTP timeout (2 s), not the 30 s first-digit timeout.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let call_id = outcome
        .sent()
        .iter()
        .find(|m| m.starts_with("INVITE"))
        .and_then(|m| support::sipp::header(m, "Call-ID"))
        .expect("SIPp's Call-ID");
    let log = gate.log();
    let line = log
        .lines()
        .find(|l| l.contains("no RTP on the maintenance call"))
        .unwrap_or_else(|| panic!("warn line\n{log}"));
    assert!(line.contains("WARN") && line.contains(&call_id), "{line}");
}

#[test]
fn calls_on_a_route_without_calls_get_the_routes_otherwise_answer() {
    let routes = json!({
        "user": { "call": false, "otherwise": { "reject": 404 } },
        "admin": { "call": false, "otherwise": { "redirect": "sip:operator@127.0.0.1" } }
    });
    let gate = Gate::start(dialplan(json!({}), routes), &[]).expect("dialback starts");
    let formats = "0 101";
    let maps = "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    let r = Caller::new(gate.user_addr()).invite("gate-user", formats, maps);
    assert_eq!(r.status(), Some(404), "{}", r.text);
    let r = Caller::new(gate.admin_addr()).invite("gate-admin", formats, maps);
    assert_eq!(r.status(), Some(302), "{}", r.text);
    assert_eq!(r.header("Contact"), Some("<sip:operator@127.0.0.1>"));

    // Without `otherwise`, the defaults: 404 on the user trunk, 403 on the admin trunk.
    let routes = json!({ "user": { "call": false }, "admin": { "call": false } });
    let gate = Gate::start(dialplan(json!({}), routes), &[]).expect("dialback starts");
    let r = Caller::new(gate.user_addr()).invite("gate-user", formats, maps);
    assert_eq!(r.status(), Some(404), "{}", r.text);
    let r = Caller::new(gate.admin_addr()).invite("gate-admin", formats, maps);
    assert_eq!(r.status(), Some(403), "{}", r.text);
}
