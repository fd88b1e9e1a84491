//! Fuzz the call's data link (`modem::link`): the caller trying V.22bis, V.21 and Bell 103 in
//! turn, or an answerer, fed arbitrary samples with lost frames, so the fallback rules, the
//! answer-tone guard and every modem's receive path see hostile input across attempt
//! switches. Nothing may panic; at most `MAX_ATTEMPTS` attempts start.
#![no_main]

use dialback::modem::link::{Link, LinkConfig, LinkEvent, Modulation, MAX_ATTEMPTS};
use dialback::modem::v22bis::Role;
use libfuzzer_sys::fuzz_target;

const FRAME: usize = 160;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let all = [
        Modulation::V22bis,
        Modulation::V22,
        Modulation::V21,
        Modulation::Bell103,
    ];
    // The order of the list comes from the control byte.
    let modulations: Vec<Modulation> = (0..4)
        .map(|i| all[usize::from((ctl >> (2 * i)) & 3)])
        .collect();
    let role = if ctl & 0x80 == 0 {
        Role::Caller
    } else {
        Role::Answerer
    };
    let Ok(mut link) = Link::new(&LinkConfig {
        role,
        modulations,
        tx_level_dbm0: -13.0,
    }) else {
        return;
    };
    let samples: Vec<i16> = rest
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let mut out = [0i16; FRAME];
    let mut tried = 0;
    // The input repeats to fill ~25 s of line, long enough for every fallback rule.
    for f in 0..1250usize {
        link.fill(&mut out);
        if samples.is_empty() {
            link.push(&[0; FRAME]);
        } else if f % 17 == 9 {
            link.push_lost(FRAME);
        } else {
            let mut frame = [0i16; FRAME];
            for (k, s) in frame.iter_mut().enumerate() {
                *s = samples[(f * FRAME + k) % samples.len()];
            }
            link.push(&frame);
        }
        if f % 50 == 0 {
            let _ = link.write(b"x");
        }
        while let Some(ev) = link.poll_event() {
            if matches!(ev, LinkEvent::Trying { .. }) {
                tried += 1;
                assert!(tried <= MAX_ATTEMPTS);
            }
        }
    }
    let _ = (link.modulation(), link.is_connected(), link.tx_pending());
});
