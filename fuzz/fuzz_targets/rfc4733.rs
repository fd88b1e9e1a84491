//! Fuzz the telephone-event parser and the once-per-press receiver state machine.
#![no_main]

use std::time::{Duration, Instant};

use dialback::media::rfc4733::{Receiver, TelephoneEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = TelephoneEvent::parse(data);
    // Records of 10 bytes: marker/dt (1), timestamp (4), payload (4), payload length (1).
    let t0 = Instant::now();
    let mut rx = Receiver::default();
    let mut now = t0;
    for rec in data.chunks(10) {
        let Some(&flags) = rec.first() else { continue };
        now += Duration::from_millis(u64::from(flags & 0x7F) * 4);
        let ts = rec
            .get(1..5)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let len = rec.get(9).map_or(4, |&l| usize::from(l % 6));
        let payload = rec.get(5..5 + len.min(4)).unwrap_or(&[]);
        rx.handle_timeout(now);
        let _ = rx.handle_packet(now, flags & 0x80 != 0, ts, payload);
        while rx.poll_event().is_some() {}
    }
});
