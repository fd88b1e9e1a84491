//! The DTMF paths of issues 3 and 4 on live calls with real peers, all through Kamailio:
//!
//! - baresip (a softphone registered as 2001) calls the gate's admin or user number and keys
//!   `1001#2468#*62468246*1#` as RFC 4733 telephone-events → the gate reads exactly those
//!   keys (`signal.ok` for admin 1001, no failed try), hangs up, and calls admin 1 back;
//!   dumpcap records both calls, and tshark finds each key once on the wire and no malformed
//!   packet;
//! - the same with the keys as in-band tones: a WAV made with sox (100 ms tone / 100 ms gap)
//!   is baresip's audio source, and the PBX strips telephone-event from the offer, so the
//!   gate's answer has none and only its Goertzel detector can read them (μ-law on the admin
//!   trunk, A-law on the user trunk); the capture shows audio and no telephone-event;
//! - the admin's callback phone is baresip too (registered as 1001, auto-answer): it rings
//!   from the originate trunk and answers, also after a MESSAGE `MAINTAIN-1` sent by sipsak.
//!   baresip has no modem, so the gate ends the callback after `modem.connect_timeout_s`.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::baresip::{Baresip, BaresipOptions};
use support::dialback::{private_rtp_range, Gate};
use support::gate_pbx::{pbx_dialplan, ENV as TRUNK_ENV, TRUNK_SUBSCRIBERS};
use support::kamailio::{Kamailio, KamailioOptions};
use support::tshark::Capture;

/// ID `#`, PIN `#`, then the start signal for digit 1 (example dialplan, admin 1).
const KEYS: &str = "1001#2468#*62468246*1#";
/// The phones: admin 1's registered number and the roaming caller.
const PHONES: &[(&str, &str)] = &[("1001", "phone-pw"), ("2001", "caller-pw")];

/// The PBX, the callback phone (1001, auto-answer) and the gate, all registered.
struct Site {
    kamailio: Kamailio,
    phone: Baresip,
    gate: Gate,
    /// The gate's private `media.rtp_ports`.
    rtp_ports: (u16, u16),
}

impl Site {
    fn start(strip_telephone_event: bool) -> Option<Site> {
        if !support::have_program("baresip") || !support::have_program("kamailio") {
            return None;
        }
        let mut subscribers: Vec<(&str, &str)> = TRUNK_SUBSCRIBERS.to_vec();
        subscribers.extend_from_slice(PHONES);
        let mut options = KamailioOptions::new(&subscribers);
        options.strip_telephone_event = strip_telephone_event;
        let kamailio = Kamailio::start_with(options).expect("kamailio");
        let phone = Baresip::start(
            BaresipOptions::new("1001", "phone-pw", kamailio.sip_addr()).auto_answer(),
        )
        .expect("baresip phone");
        let number = format!("sip:1001@127.0.0.1:{}", kamailio.port());
        let rtp_ports = private_rtp_range();
        let mut plan = pbx_dialplan(&kamailio.sip_uri(), &[number]);
        plan["media"] = json!({ "rtp_ports": [rtp_ports.0, rtp_ports.1] });
        let gate = Gate::start(plan, TRUNK_ENV).expect("dialback starts");
        for user in ["gate-user", "gate-admin", "1001"] {
            assert!(
                kamailio.wait_registered(user, Duration::from_secs(10)),
                "{user} registered\n{}\n{}",
                gate.log(),
                phone.log_tail()
            );
        }
        Some(Site {
            kamailio,
            phone,
            gate,
            rtp_ports,
        })
    }

    /// A second baresip, registered as 2001, playing `source` (silence when `None`), offering
    /// `codecs` (PCMU and PCMA when `None`).
    fn caller(&self, source: Option<&Path>, codecs: Option<&str>) -> Baresip {
        let mut options = BaresipOptions::new("2001", "caller-pw", self.kamailio.sip_addr());
        if let Some(wav) = source {
            options = options.audio_source(wav);
        }
        if let Some(codecs) = codecs {
            options = options.codecs(codecs);
        }
        let caller = Baresip::start(options).expect("baresip caller");
        assert!(
            self.kamailio
                .wait_registered("2001", Duration::from_secs(10)),
            "caller registered\n{}",
            caller.log_tail()
        );
        caller
    }

    /// A capture of this site's calls: all SIP passes the PBX, and the gate is one end of all
    /// RTP.
    fn capture(&self) -> Capture {
        Capture::start(&format!(
            "udp and (port {} or portrange {}-{})",
            self.kamailio.port(),
            self.rtp_ports.0,
            self.rtp_ports.1
        ))
        .expect("dumpcap captures on lo")
    }

    /// `sip:gate-admin@PBX` or `sip:gate-user@PBX`.
    fn gate_uri(&self, trunk_user: &str) -> String {
        format!("sip:{trunk_user}@{}", self.kamailio.sip_addr())
    }

    fn report(&self, caller: &Baresip) -> String {
        format!(
            "audit {:?}\n--- dialback ---\n{}\n--- caller ---\n{}\n--- phone ---\n{}",
            self.gate.audit_events(),
            self.gate.log(),
            caller.log_tail(),
            self.phone.log_tail()
        )
    }

    /// After a call: admin 1001's signal was read right the first time, the callback rang the
    /// baresip phone from the originate trunk, was answered, and was ended by the gate.
    fn assert_called_back(&mut self, caller: &Baresip) {
        assert!(
            self.gate
                .wait_audit("session.end:modem_training_failed", Duration::from_secs(20)),
            "callback answered and ended\n{}",
            self.report(caller)
        );
        let records = self.gate.audit_records();
        let first = records.first().cloned().unwrap_or(Value::Null);
        assert_eq!(first["event"], "signal.ok", "{}", self.report(caller));
        assert_eq!(first["admin"], "1001", "{}", self.report(caller));
        let events = self.gate.audit_events();
        assert!(
            !events.iter().any(|e| e.starts_with("auth.fail")),
            "every key read exactly once on the first try: {events:?}"
        );
        let order = [
            "signal.ok",
            "callback.placed",
            "callback.answered",
            "session.end:modem_training_failed",
        ];
        let mut at = 0;
        for e in &events {
            if order.get(at) == Some(&e.as_str()) {
                at += 1;
            }
        }
        assert_eq!(at, order.len(), "audit order {events:?}");
        let answered = self
            .phone
            .wait_event("CALL_ESTABLISHED", Duration::from_secs(1))
            .unwrap_or_default();
        assert!(
            answered["peeruri"]
                .as_str()
                .is_some_and(|u| u.contains("gate-out")),
            "the phone answered a call from the originate trunk: {answered} {:?}",
            self.phone.event_types()
        );
        assert!(
            self.phone
                .wait_event("CALL_CLOSED", Duration::from_secs(5))
                .is_some(),
            "the gate hung up the callback: {:?}",
            self.phone.event_types()
        );
        assert!(
            !support::dialback::mentions(&self.gate.log(), "2468"),
            "the PIN never reaches the log"
        );
    }
}

/// The caller dials the gate, waits for the answer, and (with `rfc4733`) keys [`KEYS`]; then
/// waits for the gate to hang up.
fn call_the_gate(site: &Site, caller: &mut Baresip, trunk_user: &str, rfc4733: bool) {
    caller.dial(&site.gate_uri(trunk_user)).expect("dial");
    assert!(
        caller
            .wait_event("CALL_ESTABLISHED", Duration::from_secs(10))
            .is_some(),
        "the gate answered\n{}",
        site.report(caller)
    );
    if rfc4733 {
        caller.send_digits(KEYS).expect("sndcode");
    }
    assert!(
        caller
            .wait_event("CALL_CLOSED", Duration::from_secs(25))
            .is_some(),
        "the gate hung up after the signal\n{}",
        site.report(caller)
    );
}

fn rfc4733_keys_call_admin_1_back(trunk_user: &str) {
    if !support::have_program("dumpcap")
        || !support::have_program("tshark")
        || !support::running_as_root()
    {
        return;
    }
    let Some(mut site) = Site::start(false) else {
        return;
    };
    let mut caller = site.caller(None, None);
    let capture = site.capture();
    call_the_gate(&site, &mut caller, trunk_user, true);
    // The gate took telephone-event from baresip's offer (baresip sends keys only then).
    let answer = caller.sdp_answer().unwrap_or_default();
    assert!(
        answer.contains("telephone-event/8000"),
        "answer with telephone-event:\n{answer}"
    );
    site.assert_called_back(&caller);
    let cap = capture.stop();
    // Each key went out once, as one event (a start with M set, RFC 4733 §2.5.1.2).
    let starts: String = cap
        .fields("rtpevent && rtp.marker == 1", &["rtpevent.event_id"])
        .iter()
        .filter_map(|row| row.first()?.parse::<usize>().ok())
        .filter_map(|code| "0123456789*#".chars().nth(code))
        .collect();
    assert_eq!(starts, KEYS, "keys on the wire");
    assert!(
        cap.count("sip") > 0 && cap.count("rtp") > 0,
        "SIP and RTP captured"
    );
    let errors = cap.decode_errors();
    assert!(
        errors.is_empty(),
        "malformed or erroneous packets:\n{}\n{}",
        errors.join("\n"),
        cap.expert_summary()
    );
}

#[test]
fn baresip_rfc4733_keys_on_the_admin_trunk_call_admin_1_back() {
    rfc4733_keys_call_admin_1_back("gate-admin");
}

#[test]
fn baresip_rfc4733_keys_on_the_user_trunk_call_admin_1_back() {
    rfc4733_keys_call_admin_1_back("gate-user");
}

/// [`KEYS`] as DTMF tones, 8 kHz mono 16-bit: 1 s of silence (the call settles), then each key
/// 100 ms on / 100 ms off, then silence until the gate hangs up. Made with sox: each key is
/// its two Q.23 frequencies mixed to one channel at about −10 dBm0 per tone.
fn dtmf_wav(dir: &Path, keys: &str) -> std::path::PathBuf {
    let sox = |args: &[&str]| {
        let out = Command::new("sox").args(args).output().expect("sox runs");
        assert!(
            out.status.success(),
            "sox {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let fmt = ["-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer"];
    let silence = |name: &str, secs: &str| {
        let path = dir.join(name);
        let p = path.to_str().expect("utf-8 temp path").to_owned();
        let mut args = vec!["-n"];
        args.extend_from_slice(&fmt);
        args.extend_from_slice(&[&p, "trim", "0", secs]);
        sox(&args);
        p
    };
    let lead = silence("lead.wav", "1.0");
    let gap = silence("gap.wav", "0.1");
    let tail = silence("tail.wav", "20");
    let mut parts = vec![lead];
    for key in keys.chars() {
        let (low, high) = dtmf_pair(key);
        let path = dir.join(format!("key-{}.wav", key as u32));
        let p = path.to_str().expect("utf-8 temp path").to_owned();
        if !path.exists() {
            // One sine per channel, mixed to one (`remix -` averages: each tone at half
            // scale), then `vol 0.45`: each tone peaks at 0.225 of full scale, about
            // −10 dBm0 (a full-scale sine is +3.17 dBm0, G.711 Table 5).
            sox(&[
                "-n",
                "-r",
                "8000",
                "-c",
                "1",
                "-b",
                "16",
                &p,
                "synth",
                "0.1",
                "sine",
                &low.to_string(),
                "sine",
                &high.to_string(),
                "remix",
                "-",
                "vol",
                "0.45",
            ]);
        }
        parts.push(p);
        parts.push(gap.clone());
    }
    parts.push(tail);
    let out = dir.join("keys.wav");
    let out_s = out.to_str().expect("utf-8 temp path").to_owned();
    let mut args: Vec<&str> = parts.iter().map(String::as_str).collect();
    args.push(&out_s);
    sox(&args);
    out
}

/// ITU-T Q.23 frequency pair of a key.
fn dtmf_pair(key: char) -> (u32, u32) {
    const LOW: [u32; 4] = [697, 770, 852, 941];
    const HIGH: [u32; 4] = [1209, 1336, 1477, 1633];
    const PAD: [&str; 4] = ["123A", "456B", "789C", "*0#D"];
    for (row, keys) in PAD.iter().enumerate() {
        if let Some(col) = keys.find(key) {
            return (LOW[row], HIGH[col]);
        }
    }
    panic!("not a DTMF key: {key}");
}

/// `codec` is the only one offered: `"PCMU"` or `"PCMA"` (G.711 μ-law or A-law).
fn inband_keys_call_admin_1_back(trunk_user: &str, codec: &str) {
    if !support::have_program("sox")
        || !support::have_program("dumpcap")
        || !support::have_program("tshark")
        || !support::running_as_root()
    {
        return;
    }
    let Some(mut site) = Site::start(true) else {
        return;
    };
    let wavs = tempfile::tempdir().expect("temp dir");
    let wav = dtmf_wav(wavs.path(), KEYS);
    let mut caller = site.caller(Some(&wav), Some(codec));
    let capture = site.capture();
    call_the_gate(&site, &mut caller, trunk_user, false);
    // baresip offered telephone-event; the PBX took it out, so the gate's answer has none.
    let answer = caller.sdp_answer().unwrap_or_default();
    assert!(
        answer.contains("m=audio") && !answer.contains("telephone-event"),
        "answer without telephone-event:\n{answer}"
    );
    assert!(
        answer.contains(&format!("{codec}/8000")),
        "{codec} answered:\n{answer}"
    );
    assert!(
        !caller.log().contains("send DTMF digit"),
        "no key went out as an event"
    );
    site.assert_called_back(&caller);
    let cap = capture.stop();
    let pt = if codec == "PCMA" { 8 } else { 0 };
    assert!(
        cap.count(&format!("rtp.p_type == {pt}")) > 0,
        "{codec} audio on the wire"
    );
    assert_eq!(cap.count("rtpevent"), 0, "no telephone-event on the wire");
    let errors = cap.decode_errors();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn baresip_inband_mu_law_keys_on_the_admin_trunk_call_admin_1_back() {
    inband_keys_call_admin_1_back("gate-admin", "PCMU");
}

#[test]
fn baresip_inband_a_law_keys_on_the_user_trunk_call_admin_1_back() {
    inband_keys_call_admin_1_back("gate-user", "PCMA");
}

#[test]
fn maintain_message_rings_the_baresip_phone_which_answers() {
    if !support::have_program("sipsak") {
        return;
    }
    let Some(mut site) = Site::start(false) else {
        return;
    };
    assert_eq!(
        support::sipsak::message(
            site.kamailio.sip_addr(),
            "gate-admin",
            "1001",
            "demo-secret-1",
            "MAINTAIN-1"
        ),
        Some(0),
        "202 through the PBX\n{}",
        site.gate.log()
    );
    assert!(
        site.gate
            .wait_audit("session.end:modem_training_failed", Duration::from_secs(20)),
        "{:?}\n{}\n{}",
        site.gate.audit_events(),
        site.gate.log(),
        site.phone.log_tail()
    );
    let answered = site
        .phone
        .wait_event("CALL_ESTABLISHED", Duration::from_secs(1))
        .unwrap_or_default();
    assert!(
        answered["peeruri"]
            .as_str()
            .is_some_and(|u| u.contains("gate-out")),
        "answered a call from the originate trunk: {answered} {:?}",
        site.phone.event_types()
    );
    assert!(site
        .phone
        .wait_event("CALL_CLOSED", Duration::from_secs(5))
        .is_some());
    let events = site.gate.audit_events();
    assert!(
        events.iter().any(|e| e == "callback.answered"),
        "{events:?}"
    );
}
