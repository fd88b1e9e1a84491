//! Fuzz the V.21 / Bell 103 receivers (issue 5, "a fuzz target feeds arbitrary samples to each
//! receiver"): the first byte picks the mode and the chunking, the rest are 16-bit samples
//! pushed in uneven chunks with occasional lost frames. Nothing may panic; events stay bounded.
#![no_main]

use dialback::modem::fsk::{FskConfig, FskMode, FskModem};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let mode = match ctl & 3 {
        0 => FskMode::V21Caller,
        1 => FskMode::V21Answerer,
        2 => FskMode::Bell103Originate,
        _ => FskMode::Bell103Answer,
    };
    let Ok(mut modem) = FskModem::new(mode, FskConfig::default()) else {
        return;
    };
    let samples: Vec<i16> = rest
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let chunk = usize::from(ctl >> 2).max(1);
    let mut out = vec![0i16; chunk];
    for (i, c) in samples.chunks(chunk).enumerate() {
        if ctl & 0x80 != 0 && i % 7 == 3 {
            modem.push_lost(c.len());
        } else {
            modem.push(c);
        }
        modem.fill(&mut out);
        let _ = modem.write(&[ctl]);
        while modem.poll_event().is_some() {}
    }
    let _ = modem.carrier();
});
