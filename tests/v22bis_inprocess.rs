//! Our V.22bis caller against our V.22bis answerer, through a simulated G.711 trunk.
mod common;

use common::{Law, Rng};
use dialback::modem::v22bis::{ModemEvent, Rate, Role, V22Config, V22bisModem};

const FRAME: usize = 160;

struct Outcome {
    caller_rate: Option<u32>,
    answerer_rate: Option<u32>,
    /// Samples from the answerer's first sample to the caller's Connected.
    connect_samples: Option<usize>,
    echoed: Vec<u8>,
    sent: Vec<u8>,
    carrier_lost: bool,
}

/// The caller sends `payload` once connected; the answerer echoes every byte it receives.
fn run(
    law: Law,
    caller: V22Config,
    answerer: V22Config,
    payload: &[u8],
    max_seconds: usize,
    delay_samples: usize,
) -> Outcome {
    let mut c = V22bisModem::new(Role::Caller, caller).expect("caller config");
    let mut a = V22bisModem::new(Role::Answerer, answerer).expect("answerer config");
    let mut out = Outcome {
        caller_rate: None,
        answerer_rate: None,
        connect_samples: None,
        echoed: Vec::new(),
        sent: payload.to_vec(),
        carrier_lost: false,
    };
    let mut cbuf = [0i16; FRAME];
    let mut abuf = [0i16; FRAME];
    let mut written = 0;
    let mut echo_backlog: Vec<u8> = Vec::new();
    // A random start delay of the answerer relative to the caller (sub-frame offset too).
    let mut a_delay = vec![0i16; delay_samples];
    for frame in 0..max_seconds * 50 {
        c.fill(&mut cbuf);
        a.fill(&mut abuf);
        law.tandem(&mut cbuf);
        law.tandem(&mut abuf);
        // Delay line on the answerer→caller path.
        a_delay.extend_from_slice(&abuf);
        let delayed: Vec<i16> = a_delay.drain(..FRAME).collect();
        c.push(&delayed);
        a.push(&cbuf);
        while let Some(e) = c.poll_event() {
            match e {
                ModemEvent::Connected { rate_bps } => {
                    out.caller_rate = Some(rate_bps);
                    out.connect_samples.get_or_insert((frame + 1) * FRAME);
                }
                ModemEvent::Data(b) => out.echoed.push(b),
                ModemEvent::CarrierLost => out.carrier_lost = true,
                _ => {}
            }
        }
        while let Some(e) = a.poll_event() {
            match e {
                ModemEvent::Connected { rate_bps } => out.answerer_rate = Some(rate_bps),
                ModemEvent::Data(b) => echo_backlog.push(b),
                ModemEvent::CarrierLost => out.carrier_lost = true,
                _ => {}
            }
        }
        if !echo_backlog.is_empty() {
            let n = a.write(&echo_backlog);
            echo_backlog.drain(..n);
        }
        if out.caller_rate.is_some() && written < payload.len() {
            written += c.write(&payload[written..]);
        }
        if out.echoed.len() >= payload.len() && out.caller_rate.is_some() {
            break;
        }
    }
    out
}

fn cfg(max_rate: Rate) -> V22Config {
    V22Config {
        max_rate,
        answer_tone: false,
        ..V22Config::default()
    }
}

#[test]
fn caller_and_answerer_connect_at_2400_and_echo_exactly_through_ulaw_and_alaw() {
    let mut rng = Rng::new(1);
    for law in [Law::Ulaw, Law::Alaw] {
        let payload = rng.bytes(600);
        let o = run(law, cfg(Rate::R2400), cfg(Rate::R2400), &payload, 12, 37);
        assert_eq!(o.caller_rate, Some(2400), "{}", law.name());
        assert_eq!(o.answerer_rate, Some(2400), "{}", law.name());
        assert!(!o.carrier_lost);
        assert_eq!(o.echoed, o.sent, "{}", law.name());
        eprintln!(
            "{}: connected after {:?} samples, echoed {} bytes",
            law.name(),
            o.connect_samples,
            o.echoed.len()
        );
    }
}

#[test]
fn v22_caller_and_v22bis_answerer_fall_back_to_1200_and_echo() {
    let payload = Rng::new(2).bytes(200);
    let o = run(
        Law::Ulaw,
        cfg(Rate::R1200),
        cfg(Rate::R2400),
        &payload,
        10,
        5,
    );
    assert_eq!(o.caller_rate, Some(1200));
    assert_eq!(o.answerer_rate, Some(1200));
    assert_eq!(o.echoed, o.sent);
}

#[test]
fn v22bis_caller_and_v22_answerer_fall_back_to_1200_and_echo() {
    let payload = Rng::new(3).bytes(200);
    let o = run(
        Law::Alaw,
        cfg(Rate::R2400),
        cfg(Rate::R1200),
        &payload,
        10,
        91,
    );
    assert_eq!(o.caller_rate, Some(1200));
    assert_eq!(o.answerer_rate, Some(1200));
    assert_eq!(o.echoed, o.sent);
}

#[test]
fn handshake_after_a_v25_answer_tone_connects_at_2400() {
    let payload = Rng::new(4).bytes(100);
    let answerer = V22Config {
        answer_tone: true,
        ..V22Config::default()
    };
    let o = run(Law::Ulaw, cfg(Rate::R2400), answerer, &payload, 12, 0);
    assert_eq!(o.caller_rate, Some(2400));
    assert_eq!(o.echoed, o.sent);
    // 3.3 s tone + 75 ms + handshake; V.22bis connects within about 2 s after the tone.
    let t = o.connect_samples.expect("connected") as f64 / 8000.0;
    assert!(t < 3.375 + 2.0, "connect after {t:.2} s");
}
