//! Fuzz the V.21 / Bell 103 receivers (issue 5, "a fuzz target feeds arbitrary samples to each
//! receiver"). The first byte picks the mode, the chunking, lost frames, and whether the
//! input is the line itself (16-bit samples) or noise added to a well-formed far-end FSK
//! signal that carries the input bytes as characters (so the UART and carrier detector see
//! real start bits, gaps and level steps, not only noise). Nothing may panic.
#![no_main]

use dialback::modem::fsk::{FskConfig, FskMode, FskModem};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let (mode, far_mode) = match ctl & 3 {
        0 => (FskMode::V21Caller, FskMode::V21Answerer),
        1 => (FskMode::V21Answerer, FskMode::V21Caller),
        2 => (FskMode::Bell103Originate, FskMode::Bell103Answer),
        _ => (FskMode::Bell103Answer, FskMode::Bell103Originate),
    };
    let Ok(mut modem) = FskModem::new(mode, FskConfig::default()) else {
        return;
    };
    let Ok(mut far) = FskModem::new(far_mode, FskConfig::default()) else {
        return;
    };
    let samples: Vec<i16> = rest
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let with_far_end = ctl & 0x40 != 0;
    let chunk = usize::from((ctl >> 2) & 0x0f) * 13 + 1;
    let mut line = vec![0i16; chunk];
    let mut out = vec![0i16; chunk];
    let mut written = 0usize;
    // At most this many characters from the far end (about 2 s of line), so runs stay fast.
    let chars = rest.get(..rest.len().min(64)).unwrap_or(&[]);
    let blocks = if with_far_end {
        // Enough line time for every character (~267 samples each).
        (chars.len() * 280).div_ceil(chunk) + 8
    } else {
        samples.len().div_ceil(chunk)
    };
    for i in 0..blocks {
        if with_far_end {
            written += far.write(chars.get(written..).unwrap_or(&[]));
            far.fill(&mut line);
            for (k, s) in line.iter_mut().enumerate() {
                let n = samples.get((i * chunk + k) % samples.len().max(1)).copied();
                // The noise toggles on and off with the input's own bits: bursts and gaps.
                if n.is_some_and(|n| n & 1 == 1) {
                    *s = s.saturating_add(n.unwrap_or(0) >> 2);
                }
            }
        } else {
            let from = i * chunk;
            let to = (from + chunk).min(samples.len());
            line.clear();
            line.extend_from_slice(samples.get(from..to).unwrap_or(&[]));
        }
        if ctl & 0x80 != 0 && i % 7 == 3 {
            modem.push_lost(line.len());
        } else {
            modem.push(&line);
        }
        if with_far_end {
            line.resize(chunk, 0);
        }
        modem.fill(&mut out);
        let _ = modem.write(&[ctl]);
        while modem.poll_event().is_some() {}
    }
    let _ = modem.carrier();
});
