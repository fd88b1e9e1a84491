//! Fuzz the RTP/RTCP demultiplexer and feed whatever parses into a jitter buffer.
#![no_main]

use std::time::{Duration, Instant};

use dialback::media::jitter::{JitterBuffer, JitterConfig};
use dialback::media::rtp::{parse, Datagram};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(t0, JitterConfig::default());
    // Treat the input as several datagrams separated by a length byte.
    let mut rest = data;
    let mut now = t0;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (datagram, tail) = tail.split_at(len);
        rest = tail;
        now += Duration::from_millis(7);
        if let Ok(Datagram::Rtp(p)) = parse(datagram) {
            let _ = p.csrcs().count();
            jb.push(now, &p);
        }
        jb.handle_timeout(now);
        while jb.poll_frame(now).is_some() {}
        while jb.poll_event().is_some() {}
    }
});
