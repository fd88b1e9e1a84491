//! Fuzz the answer-tone detector (ANS, ANS/PR, ANSam, ANSam/PR, Bell 2225 Hz) with arbitrary
//! samples in uneven chunks. Nothing may panic; every `Ended` follows a `Detected`.
#![no_main]

use dialback::modem::answer_tone::{AnswerToneDetector, AnswerToneEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let samples: Vec<i16> = rest
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let mut det = AnswerToneDetector::new();
    let chunk = usize::from(ctl).max(1);
    let mut present = false;
    // Repeat the input so a tone can last past the 500 ms detection time.
    for _ in 0..(1 + usize::from(ctl & 7)) {
        for c in samples.chunks(chunk) {
            det.push(c);
            while let Some(ev) = det.poll_event() {
                match ev {
                    AnswerToneEvent::Detected { .. } => present = true,
                    AnswerToneEvent::Ended { .. } => {
                        assert!(present, "Ended without Detected");
                        present = false;
                    }
                }
            }
        }
    }
    let _ = det.tone();
});
