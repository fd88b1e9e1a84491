//! Fuzz the answer-tone detector (ANS, ANS/PR, ANSam, ANSam/PR, Bell 2225 Hz). The input is a
//! script of segments, each 4 bytes: which tone (or none), its level, how long, and how much
//! noise from the following bytes rides on it; so the detector sees real tones that start,
//! stop, reverse, fade and break up, not only noise. Pushed in uneven chunks. Nothing may
//! panic, and every `Ended` follows a `Detected`.
#![no_main]

use dialback::modem::answer_tone::{
    AnswerTone, AnswerToneDetector, AnswerToneEvent, AnswerToneGenerator,
};
use libfuzzer_sys::fuzz_target;

/// Longest segment: 2.55 s (a tone must last 500 ms to be reported).
const SEGMENT_UNIT: usize = 80; // 10 ms
/// Segments per input: up to ~20 s of line, so a run stays fast.
const MAX_SEGMENTS: usize = 8;

fuzz_target!(|data: &[u8]| {
    let mut det = AnswerToneDetector::new();
    let mut present = false;
    let mut buf = vec![0i16; 255 * SEGMENT_UNIT];
    for (s, seg) in data.chunks(4).take(MAX_SEGMENTS).enumerate() {
        let [kind, level, len, noise] = [0, 1, 2, 3].map(|i| seg.get(i).copied().unwrap_or(0));
        let tone = match kind % 6 {
            0 => Some(AnswerTone::Ans),
            1 => Some(AnswerTone::AnsPr),
            2 => Some(AnswerTone::AnsAm),
            3 => Some(AnswerTone::AnsAmPr),
            4 => Some(AnswerTone::Bell),
            _ => None,
        };
        let n = usize::from(len) * SEGMENT_UNIT;
        let out = &mut buf[..n];
        out.fill(0);
        // Levels from 0 down to -60 dBm0 (the generator refuses what it cannot make).
        if let Some(t) = tone {
            if let Ok(mut g) = AnswerToneGenerator::new(t, -f32::from(level % 61)) {
                g.fill(out);
            }
        }
        for (k, v) in out.iter_mut().enumerate() {
            let b = data.get((s * 4 + k) % data.len()).copied().unwrap_or(0);
            *v = v.saturating_add(i16::from(b as i8) * i16::from(noise >> 2));
        }
        let chunk = usize::from(kind >> 3).max(1) * 7;
        for c in out.chunks(chunk) {
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
    let _ = det.position();
});
